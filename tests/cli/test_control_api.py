"""The endpoints without a daemon process: shape checks, and the mint wait on events.

A stand-in for ``Coco`` records what the endpoints pass on: the real facade is
exercised by the daemon tests (``test_cli_commands.py``); here it stands for what a
FakeWallet mint never does (a quote that stays unpaid).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from coco_actors.control.api import ControlApi, Request
from coco_actors.control.errors import BadRequestError
from coco_actors.control.events import EventHub
from coco_actors.errors import ActorTimeoutError, NotFoundError
from coco_actors.records import Operation, OperationId, OpState, OpType

MINT_URL = "http://127.0.0.1:1"


class _Mint:
    """``coco.mint``: one open quote, never paid unless the test says so."""

    def __init__(self) -> None:
        self.op = Operation(id=OperationId("op1"), type=OpType.MINT, mint_url=MINT_URL,
                            amount=64, state=OpState.PREPARED, quote_id="q1")
        self.redeemed: list[tuple[str, float]] = []
        self.nudged = threading.Event()

    def get_operation(self, op_id: str) -> Operation | None:
        return self.op if op_id == self.op.id else None

    def redeem(self, quote_id: str, timeout: float = 60.0) -> Operation:
        self.redeemed.append((quote_id, timeout))
        self.nudged.set()
        raise ActorTimeoutError(f"quote {quote_id} not paid within {timeout:g} s")


class _Send:
    def __init__(self) -> None:
        self.prepared: list[tuple[str, int]] = []

    def prepare_send(self, mint_url: str, amount: int) -> Operation:
        self.prepared.append((mint_url, amount))
        return Operation(id=OperationId("s1"), type=OpType.SEND, mint_url=mint_url,
                         amount=amount, state=OpState.PREPARED)


class _Coco:
    def __init__(self) -> None:
        self.mint = _Mint()
        self.send = _Send()

    def receive(self, token: str) -> Operation:
        raise AssertionError("a malformed request reached the wallet")


@pytest.fixture
def api() -> ControlApi:
    return ControlApi(_Coco(), Path("/nowhere"), EventHub(), lambda: None)  # type: ignore[arg-type]


def _call(api: ControlApi, method: str, path: str, body: dict[str, Any]) -> Any:
    found = api.route(method, path)
    assert found is not None
    handler, params = found
    return handler(Request({}, body, params))


@pytest.mark.parametrize("body, complaint", [
    ({"mint_url": MINT_URL}, "missing 'amount'"),
    ({"mint_url": MINT_URL, "amount": "5"}, "'amount' must be an integer"),
    ({"mint_url": MINT_URL, "amount": True}, "'amount' must be an integer"),
    ({"mint_url": MINT_URL, "amount": 1.5}, "'amount' must be an integer"),
    ({"mint_url": 7, "amount": 5}, "'mint_url' must be a string"),
])
def test_the_daemon_checks_the_shape_of_the_input(api, body, complaint):
    with pytest.raises(BadRequestError, match=complaint):
        _call(api, "POST", "/send/prepare", body)
    assert api.coco.send.prepared == []  # nothing reached the wallet


@pytest.mark.parametrize("amount", [0, -3])
def test_what_an_amount_means_is_left_to_the_wallet(api, amount):
    op = _call(api, "POST", "/send/prepare", {"mint_url": MINT_URL, "amount": amount})
    assert api.coco.send.prepared == [(MINT_URL, amount)]  # Coco is the one domain check
    assert op["amount"] == amount and "token" not in op


@pytest.mark.parametrize("path, body, complaint", [
    ("/mint/wait", {"operation_id": "op1", "timeout": "x"}, "'timeout' must be a number"),
    ("/mint/wait", {"operation_id": 5}, "'operation_id' must be a string"),
    ("/mints", {"url": MINT_URL, "restore": "yes"}, "'restore' must be true or false"),
    ("/receive", {}, "missing 'token'"),
])
def test_other_shapes(api, path, body, complaint):
    with pytest.raises(BadRequestError, match=complaint):
        _call(api, "POST", path, body)


def test_a_wrong_method_is_a_bad_request(api):
    with pytest.raises(BadRequestError, match="GET is not allowed on /receive"):
        api.route("GET", "/receive")
    assert api.route("GET", "/nothing/here") is None


def test_mint_wait_times_out_when_nothing_happens(api):
    res = _call(api, "POST", "/mint/wait", {"operation_id": "op1", "timeout": 0.2})
    assert res["done"] is False and res["operation"]["state"] == "prepared"
    assert api.coco.mint.redeemed == [("q1", 0)]  # checked once, handed to the watcher


def _wait_in_thread(api: ControlApi, timeout: float) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(_call(
        api, "POST", "/mint/wait", {"operation_id": "op1", "timeout": timeout})), daemon=True)
    thread.start()
    return thread, out


def test_mint_wait_returns_when_the_watcher_mints(api):
    thread, out = _wait_in_thread(api, 30)
    assert api.coco.mint.nudged.wait(10)  # the wait follows the events from here on
    minted = replace(api.coco.mint.op, state=OpState.COMPLETED)
    api.coco.mint.op = minted
    api.events.publish("send:finalized", {"operation_id": "op1", "mint_url": MINT_URL})
    api.events.publish("mint:finalized", {"operation_id": "op1", "mint_url": MINT_URL,
                                          "operation": minted})
    thread.join(10)  # well before the 30 s of the wait
    assert not thread.is_alive()
    assert out[0]["done"] is True and out[0]["operation"]["state"] == "completed"


def test_mint_wait_ends_at_once_when_the_daemon_stops(api):
    thread, out = _wait_in_thread(api, 30)
    assert api.coco.mint.nudged.wait(10)
    api.events.close()
    thread.join(10)
    assert not thread.is_alive()
    assert out[0]["done"] is False


def test_mint_wait_of_an_unknown_operation(api):
    with pytest.raises(NotFoundError, match="unknown mint operation nope"):
        _call(api, "POST", "/mint/wait", {"operation_id": "nope"})
