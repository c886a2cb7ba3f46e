"""Idempotency keys over the daemon's HTTP API and the CLI, against a real mint (fees 0
and 100): the ``Idempotency-Key`` header makes a retried call the first one, also when
the client gave up before the daemon answered and after the daemon was SIGKILLed; the
same key with another request is a 409."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from cli_support import Wallet

from coco_actors.control.client import ControlClient, DaemonTimeout, RequestFailed, op_path
from coco_actors.mint_client import normalize_mint_url
from coco_actors.tokens import decode
from devtools.devmint import DevMint
from tests.support.proxy import FaultProxy

SWAP = ("POST", "/v1/swap")
HOLD_TIMEOUT = 30.0
CALL_TIMEOUT = 60.0


def _prepare(client: ControlClient, url: str, amount: int, key: str) -> dict[str, Any]:
    return client.post("/send/prepare", {"mint_url": url, "amount": amount},  # type: ignore[no-any-return]
                       idempotency_key=key)


def _execute(client: ControlClient, op_id: str, key: str | None,
             timeout: float | None = None) -> dict[str, Any]:
    return client.post(op_path("/send", op_id, "/execute"),  # type: ignore[no-any-return]
                       idempotency_key=key, timeout=timeout)


def _held_funds(w: Wallet, url: str) -> tuple[int, int, int]:
    b = w.balance(url)
    return b["spendable"], b["reserved"], b["pending"]


def _sends(w: Wallet) -> list[str]:
    return [h["operation_id"] for h in w.json("history") if h["type"] == "send"]


def test_same_key_over_http_is_one_send_and_another_request_is_409(
        wallet: Callable[..., Wallet], mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    w = wallet("w", url)
    w.fund(url, 1000)
    with w.client() as client:
        op = _prepare(client, url, 100, "order-7")
        assert _prepare(client, url, 100, "order-7")["id"] == op["id"]
        held = op["input_amount"]
        assert _held_funds(w, url) == (1000 - held, held, 0)

        with pytest.raises(RequestFailed) as err:
            _prepare(client, url, 200, "order-7")
        assert err.value.status == 409 and err.value.type == "IdempotencyConflictError"
        assert err.value.error["operation_id"] == op["id"]
        with pytest.raises(RequestFailed) as bad:
            _prepare(client, url, 100, "k" * 256)  # too long: refused, 400
        assert bad.value.status == 400
        assert _held_funds(w, url) == (1000 - held, held, 0)

        first = _execute(client, op["id"], "order-7-exec")
        again = _execute(client, op["id"], "order-7-exec")
        assert again["token"] == first["token"] and decode(first["token"]).amount == 100
        assert again["operation"]["id"] == op["id"]
        with pytest.raises(RequestFailed) as no_key:  # without the key: as before
            _execute(client, op["id"], None)
        assert no_key.value.status == 409 and no_key.value.type == "InvalidStateError"
    assert _held_funds(w, url) == (1000 - 100 - op["fee"], 0, 100)
    assert _sends(w) == [op["id"]]


def test_cli_send_with_a_key_twice_prints_the_same_token(
        wallet: Callable[..., Wallet], mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    w = wallet("w", url)
    w.fund(url, 1000)
    args = ("send", "100", "--mint", url, "--yes", "--idempotency-key", "cli-1")
    first = w.json(*args)
    again = w.json(*args)
    assert again["token"] == first["token"]
    assert again["operation"]["id"] == first["operation"]["id"]
    fee = first["operation"]["fee"]
    assert _held_funds(w, url) == (1000 - 100 - fee, 0, 100)
    other = w.cli("send", "101", "--mint", url, "--yes", "--idempotency-key", "cli-1",
                  "--json", code=None)
    assert other.exit_code != 0 and "IdempotencyConflictError" in other.stdout
    assert _held_funds(w, url) == (1000 - 100 - fee, 0, 100)
    assert _sends(w) == [first["operation"]["id"]]


def test_a_retry_after_the_client_gave_up_waits_for_the_first_and_gets_its_token(
        wallet: Callable[..., Wallet], mint: DevMint,
        proxy_for: Callable[[str], FaultProxy]) -> None:
    proxy = proxy_for(mint.url)
    url = normalize_mint_url(proxy.url)
    w = wallet("w", url)
    w.fund(url, 1000)
    with w.client() as client:
        op = _prepare(client, url, 100, "p")
        swaps = len(proxy.seen(*SWAP))
        hold = proxy.hold(*SWAP)
        with pytest.raises(DaemonTimeout):  # the daemon is still in the swap
            _execute(client, op["id"], "e", timeout=1.0)
        assert hold.wait(HOLD_TIMEOUT)
        got: list[dict[str, Any]] = []
        done = threading.Event()

        def retry() -> None:
            with w.client() as again:
                got.append(_execute(again, op["id"], "e", timeout=CALL_TIMEOUT))
            done.set()

        threading.Thread(target=retry, daemon=True).start()  # waits for the first call
        assert not done.wait(0.5)  # still behind the held swap (bounded wait, no sleep)
        hold.release()
        assert done.wait(CALL_TIMEOUT) and got
        token = got[0]["token"]
        assert decode(token).amount == 100 and got[0]["operation"]["state"] == "pending"
        assert _execute(client, op["id"], "e")["token"] == token
    assert len(proxy.seen(*SWAP)) - swaps == 1
    assert _held_funds(w, url) == (1000 - 100 - op["fee"], 0, 100)
    assert _sends(w) == [op["id"]]


def test_sigkill_after_prepare_and_in_the_swap_gives_one_send_and_the_same_token(
        wallet: Callable[..., Wallet], mint: DevMint,
        proxy_for: Callable[[str], FaultProxy]) -> None:
    proxy = proxy_for(mint.url)
    url = normalize_mint_url(proxy.url)
    w = wallet("w", url)
    w.fund(url, 1000)
    with w.client() as client:
        op = _prepare(client, url, 100, "p")
    held = op["input_amount"]
    w.daemon.kill()  # after prepare was committed
    w.daemon.start()
    with w.client() as client:
        assert _prepare(client, url, 100, "p")["id"] == op["id"]
    assert _held_funds(w, url) == (1000 - held, held, 0)

    # killed in the swap: the mint did it, its answer never reached the daemon
    swaps = len(proxy.seen(*SWAP))
    hold = proxy.hold(*SWAP)
    failed = threading.Event()

    def execute() -> None:
        try:
            with w.client() as c:
                _execute(c, op["id"], "e", timeout=CALL_TIMEOUT)
        except Exception:  # the daemon dies under it: any error of the control channel
            failed.set()

    threading.Thread(target=execute, daemon=True).start()
    assert hold.wait(HOLD_TIMEOUT)
    hold.forward()
    w.daemon.kill()
    hold.drop()
    assert failed.wait(CALL_TIMEOUT)
    w.daemon.start()  # recovery finishes the keyed send forward: restored, pending
    with w.client() as client:
        res = _execute(client, op["id"], "e")
        token = res["token"]
        assert res["operation"]["state"] == "pending" and decode(token).amount == 100
        assert _execute(client, op["id"], "e")["token"] == token
    assert len(proxy.seen(*SWAP)) - swaps == 1
    assert _held_funds(w, url) == (1000 - 100 - op["fee"], 0, 100)
    w.daemon.kill()
    w.daemon.start()
    with w.client() as client:  # the key is on disk
        assert _execute(client, op["id"], "e")["token"] == token
    assert _sends(w) == [op["id"]]


def test_cli_receive_with_a_key_twice_is_one_receive(
        wallet: Callable[..., Wallet], mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice, bob = wallet("alice", url), wallet("bob", url)
    alice.fund(url, 1000)
    _, token = alice.send(url, 100)
    first = bob.json("receive", token, "--idempotency-key", "in-1")
    again = bob.json("receive", token, "--idempotency-key", "in-1")  # not TokenSpentError
    assert again["id"] == first["id"] and again["state"] == "completed"
    fee = first["fee"]
    assert _held_funds(bob, url) == (100 - fee, 0, 0)
    spent = bob.cli("receive", token, "--json", code=None)  # without the key: as before
    assert spent.exit_code != 0 and "TokenSpentError" in spent.stdout
    assert _held_funds(bob, url) == (100 - fee, 0, 0)
