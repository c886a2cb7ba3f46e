"""The public payments listener (``coco serve --payments-listen``): NUT-18 payment requests
paid over HTTP POST.

Two halves. A hostile stranger, in-process: a real :class:`PaymentsServer` on a
loopback TCP port, raw bytes on the wire, a stand-in ``claim``: it answers nothing but
``POST /payments/<id>`` (every control path 404, other methods 405), a body over the
limit is a 413 answered before the body is sent, a slow client is cut, an over-budget
client gets a 429. Then real daemons and the real mint (fees 0 and 100): a request
created by a daemon with ``--payments-listen`` and paid by a second wallet's
``coco pay creqA...``, to the sat; the same payload twice, wrong mint / unit / amount,
8 concurrent payers, a single-use request paid twice, and a SIGKILL of the receiving
daemon between the accepted POST and the mint's answer to its swap.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import Wallet, exchange, read_all

from coco_actors.control.events import EventHub
from coco_actors.control.payments import (
    MAX_PAYMENT_BODY,
    PaymentsServer,
    RequestBudget,
    parse_listen,
)
from coco_actors.errors import InvalidInputError, NotFoundError
from coco_actors.payreq import (
    HTTP_POST,
    PaymentRequest,
    Transport,
    decode_request,
    encode_creq_a,
)
from devtools.devmint import free_port
from tests.support.proxy import FaultProxy

#: How long a test waits for what must happen at once (a bound, not a pause).
BOUND = 10.0
REQUEST_TIMEOUT = 1.0


# --- a stranger on the wire (in-process, no mint) ------------------------------------------


@dataclass
class _Listener:
    srv: PaymentsServer
    claims: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self.srv.server_address[1])


def _listen(**kwargs: Any) -> Iterator[_Listener]:
    holder: list[_Listener] = []

    def claim(request_id: str, body: dict[str, object]) -> object:
        holder[0].claims.append((request_id, body))
        if request_id == "unknown":
            raise NotFoundError("unknown payment request unknown")
        return {"request_id": request_id, "amount": 1, "operation_id": "op"}

    listener = _Listener(PaymentsServer(("127.0.0.1", 0), claim, **kwargs))
    holder.append(listener)
    thread = threading.Thread(target=listener.srv.serve_until, args=(listener.stop,),
                              daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        listener.stop.set()
        thread.join(BOUND)
        listener.srv.server_close()


@pytest.fixture
def listener() -> Iterator[_Listener]:
    yield from _listen(request_timeout=REQUEST_TIMEOUT, rate=10_000)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=BOUND)


def _request(method: str, path: str, body: bytes = b"") -> bytes:
    return (f"{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def _error(answer: tuple[int, dict[str, str], Any], status: int) -> dict[str, Any]:
    got, _, body = answer
    assert got == status, (got, body)
    err = body["error"]
    assert isinstance(err["type"], str) and isinstance(err["message"], str)
    assert "Traceback" not in err["message"]
    return err  # type: ignore[no-any-return]


def _control_paths() -> list[tuple[str, str]]:
    """Every endpoint of the control socket, path parameters filled in, and /events."""
    from coco_actors.control.api import ControlApi

    api = ControlApi(None, Path("/nonexistent"), EventHub(), lambda: None)  # type: ignore[arg-type]
    paths = [(m, re.sub(r"\(\?P<\w+>[^)]*\)", "abc", p.pattern.removesuffix(r"\Z")))
             for m, p, _ in api.routes]
    return [*paths, ("GET", "/events"), ("GET", "/events?follow=1")]


def test_every_control_path_is_a_404_there(listener):
    paths = _control_paths()
    assert ("POST", "/stop") in paths and ("GET", "/status") in paths and len(paths) > 30
    for method, path in paths:
        for m in {method, "GET", "POST"}:
            err = _error(exchange(listener.port, _request(m, path, b"{}")), 404)
            assert err["type"] == "UnknownEndpoint", (m, path)
    for path in ["/", "/payments", "/payments/", "/payments/abc/x", "/payment/abc",
                 "/PAYMENTS/abc", "/payments/abc/", "/payments/abc/../../stop"]:
        _error(exchange(listener.port, _request("POST", path, b"{}")), 404)
    assert listener.claims == []  # nothing reached the wallet


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD",
                                    "TRACE", "BREW", "post"])
def test_another_method_on_the_route_is_a_405(listener, method):
    status, headers, body = exchange(listener.port, _request(method, "/payments/abc", b"{}"))
    assert status == 405 and headers["allow"] == "POST", body
    assert body["error"]["type"] == "MethodNotAllowedError"
    assert listener.claims == []


def test_a_payment_reaches_claim_and_its_answer_comes_back(listener):
    payload = {"id": "abc", "mint": "http://m", "unit": "sat", "proofs": []}
    status, _, body = exchange(listener.port, _request(
        "POST", "/payments/abc?x=1", json.dumps(payload).encode()))
    assert (status, body) == (200, {"request_id": "abc", "amount": 1, "operation_id": "op"})
    assert listener.claims == [("abc", payload)]
    _error(exchange(listener.port, _request("POST", "/payments/unknown", b'{"a": 1}')), 404)
    for bad in [b"", b"[1]", b"{not json", b'{"a": 1, "a": 2}']:  # JSON objects only
        _error(exchange(listener.port, _request("POST", "/payments/abc", bad)), 400)
    _error(exchange(listener.port, _request("POST", "/payments/" + "a" * 200, b'{"a": 1}')),
           404)
    assert len(listener.claims) == 2


def test_a_body_over_the_limit_is_a_413_before_it_is_sent(listener):
    """Only the head goes: the answer comes from Content-Length, the body is never awaited."""
    start = time.monotonic()
    head = (f"POST /payments/abc HTTP/1.0\r\nContent-Length: {10 * MAX_PAYMENT_BODY}\r\n\r\n"
            ).encode()
    err = _error(exchange(listener.port, head, shut=False), 413)
    assert err["type"] == "PayloadTooLargeError" and f"over {MAX_PAYMENT_BODY}" in err["message"]
    assert time.monotonic() - start < REQUEST_TIMEOUT  # not the deadline: at once
    at_limit = b'{"a": "' + b"x" * (MAX_PAYMENT_BODY - 9) + b'"}'
    assert len(at_limit) == MAX_PAYMENT_BODY
    assert exchange(listener.port, _request("POST", "/payments/abc", at_limit))[0] == 200
    _error(exchange(listener.port, _request("POST", "/payments/abc", at_limit + b" ")), 413)


def test_a_slow_client_is_cut_at_the_deadline(listener):
    """One byte at a time, each well within any per-read timeout: the whole is bounded."""
    raw = _request("POST", "/payments/abc", b'{"a": "' + b"x" * 2000 + b'"}')
    start = time.monotonic()
    answer = b""
    with _connect(listener.port) as sock:
        for byte in raw:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.05)  # the pace of the trickle
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            break
        assert answer, "the listener let the trickle run to its end"
        answer += read_all(sock)
    assert answer.startswith(b"HTTP/1.0 408 ")
    assert time.monotonic() - start < REQUEST_TIMEOUT + 3
    assert listener.claims == []
    assert listener.srv.wait_connections(0, BOUND)


def test_over_the_budget_is_a_429_with_retry_after():
    for listener in _listen(rate=3):
        answers = [exchange(listener.port, _request("POST", "/payments/abc", b'{"a": 1}'))
                   for _ in range(5)]
        assert [a[0] for a in answers[:3]] == [200, 200, 200]  # the burst
        limited = [a for a in answers[3:] if a[0] == 429]
        assert limited, [a[0] for a in answers]
        assert limited[0][2]["error"]["type"] == "TooManyRequestsError"
        assert int(limited[0][1]["retry-after"]) >= 1
        assert len(listener.claims) == 5 - len(limited)  # refused before the wallet
        # a 404 costs the same: a prober is limited too
        assert exchange(listener.port, _request("GET", "/status"))[0] == 429


def test_the_budget_is_per_client_and_refills():
    now = [0.0]
    budget = RequestBudget(2, clock=lambda: now[0], max_clients=2)
    assert [budget.take("a") for _ in range(3)][:2] == [0.0, 0.0]
    assert budget.take("a") == pytest.approx(0.5)  # one token in half a second
    assert budget.take("b") == 0.0  # another client, its own bucket
    now[0] += 0.5
    assert budget.take("a") == 0.0
    budget.take("c")  # a third client: the least recently seen ("b") is forgotten
    assert budget.take("b") == 0.0 and budget.take("b") == 0.0


@pytest.mark.parametrize("text, expected", [
    ("8080", ("127.0.0.1", 8080)), ("127.0.0.1:0", ("127.0.0.1", 0)),
    ("0.0.0.0:9", ("0.0.0.0", 9)), ("[::1]:80", ("::1", 80))])
def test_listen_addresses_are_loopback_unless_given(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["", "x", "host:", ":80", "1:70000", "1:-1", "1:8o"])
def test_a_bad_listen_address_is_refused(text):
    with pytest.raises(InvalidInputError):
        parse_listen(text)


# --- real daemons, the real mint ----------------------------------------------------------


def _receive_fee(ppk: int, n_proofs: int) -> int:
    return -(-ppk * n_proofs // 1000)


def _proofs_of(amount: int) -> int:
    return bin(amount).count("1")  # the payer sends the exact denominations


def _merchant(daemons: Any, mint_url: str, *serve: str, port: int = 0) -> Wallet:
    d = daemons("merchant", "--payments-listen", f"127.0.0.1:{port}", *serve)
    w = Wallet(d.data_dir, d)
    w.cli("mint", "add", mint_url)
    return w


def _payments_url(w: Wallet) -> str:
    with w.client() as client:
        return str(client.get("/status")["payments"]["url"])


def _in_band(w: Wallet, creq: str, amount: int | None = None) -> dict[str, Any]:
    """A payload for ``creq`` without its transport: the payer hands it over (the test
    posts it), so the test holds the very bytes a payer would send."""
    req = decode_request(creq)
    bare = encode_creq_a(dataclasses.replace(req, transports=()))
    body: dict[str, Any] = {"creq": bare}
    if amount is not None:
        body["amount"] = amount
    with w.client() as client:
        answer = client.post("/request/pay", body)
    payload = answer["payload"]
    assert isinstance(payload, dict) and payload["proofs"], answer
    assert payload["id"] == req.id and isinstance(answer["operation_id"], str), answer
    return payload


def _post(url: str, payload: dict[str, Any]) -> httpx.Response:
    return httpx.post(url, json=payload, timeout=60.0)


def _coco_request(w: Wallet, *args: str) -> dict[str, Any]:
    return w.json("request", *args)  # type: ignore[no-any-return]


def test_a_request_is_paid_over_http_post_by_another_daemon(daemons, wallet, mint):
    url, ppk = mint.url, mint.input_fee_ppk
    m = _merchant(daemons, url)
    rec = _coco_request(m, "new", "100", "--mint", url, "--description", "coffee")
    assert rec["state"] == "open" and rec["encoded"].startswith("creqA")
    assert rec["transport_url"] == f"{_payments_url(m)}/payments/{rec['id']}"
    assert decode_request(rec["encoded"]).post_url == rec["transport_url"]
    p = wallet("payer", url)
    p.fund(url, 1000)

    shown = p.cli("pay", rec["encoded"], "--yes")
    assert "100 sat" in shown.stderr and url in shown.stderr and "coffee" in shown.stderr
    assert rec["transport_url"] in shown.stderr
    assert f"{rec['transport_url']}" in shown.stdout and "200 {" in shown.stdout  # its answer
    fee = _receive_fee(ppk, _proofs_of(100))
    after = _coco_request(m, "show", rec["id"])
    assert (after["state"], after["received"]) == ("paid", 100 - fee)
    assert m.balance(url) == {"spendable": 100 - fee, "reserved": 0, "pending": 0,
                              "total": 100 - fee}
    send = next(h for h in p.json("history") if h["type"] == "send")
    assert send["amount"] == 100 and send["state"] in ("pending", "completed")
    assert p.spendable(url) == 1000 - 100 - send["fee"]
    paid = m.wait_event("request:paid", None, skip=())
    assert paid["operation_id"] in after["operation_ids"]
    assert [r["id"] for r in _coco_request(m, "list")] == [rec["id"]]


def test_the_same_payload_twice_is_credited_once_with_the_same_answer(daemons, wallet, mint):
    url, ppk = mint.url, mint.input_fee_ppk
    m = _merchant(daemons, url)
    rec = _coco_request(m, "new", "64", "--mint", url, "--multi-use")
    p = wallet("payer", url)
    p.fund(url, 500)
    payload = _in_band(p, rec["encoded"])
    first = _post(rec["transport_url"], payload)
    second = _post(rec["transport_url"], payload)
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json() == second.json()
    assert first.json()["request_id"] == rec["id"]
    assert first.json()["amount"] == 64 - _receive_fee(ppk, 1)
    assert m.spendable(url) == 64 - _receive_fee(ppk, 1)
    after = _coco_request(m, "show", rec["id"])
    assert (after["state"], after["received"], after["payments"]) == (
        "open", 64 - _receive_fee(ppk, 1), 1)


def test_wrong_mint_unit_amount_or_request_are_refused_and_change_nothing(daemons, wallet,
                                                                        mint):
    url = mint.url
    m = _merchant(daemons, url)
    rec = _coco_request(m, "new", "100", "--mint", url)
    other = _coco_request(m, "new", "100", "--mint", url)
    p = wallet("payer", url)
    p.fund(url, 500)
    too_small = _in_band(p, encode_creq_a(dataclasses.replace(
        decode_request(rec["encoded"]), amount=50)))
    exact = _in_band(p, rec["encoded"])
    for bad in [{**exact, "mint": "http://127.0.0.1:1"}, {**exact, "unit": "usd"}, too_small,
                {**exact, "id": other["id"]},  # the path names another request
                {**exact, "proofs": []}]:
        answer = _post(rec["transport_url"], bad)
        assert 400 <= answer.status_code < 500, (bad.get("mint"), answer.text)
        assert answer.json()["error"]["message"]
    unknown = _post(rec["transport_url"].rsplit("/", 1)[0] + "/nope", exact)
    assert unknown.status_code == 404, unknown.text
    assert m.balance(url)["total"] == 0
    assert _coco_request(m, "show", rec["id"])["state"] == "open"
    assert _coco_request(m, "show", other["id"])["state"] == "open"
    assert _post(rec["transport_url"], exact).status_code == 200  # the right one still goes


def test_eight_concurrent_payers_of_a_multi_use_request_are_all_credited_once(
        daemons, wallet, mint):
    url, ppk = mint.url, mint.input_fee_ppk
    m = _merchant(daemons, url)
    rec = _coco_request(m, "new", "10", "--mint", url, "--multi-use")
    p = wallet("payer", url)
    p.fund(url, 500)
    payloads = [_in_band(p, rec["encoded"]) for _ in range(8)]
    gate = threading.Barrier(8, timeout=BOUND)
    answers: list[httpx.Response] = []

    def pay(payload: dict[str, Any]) -> None:
        gate.wait()
        answers.append(_post(rec["transport_url"], payload))

    threads = [threading.Thread(target=pay, args=(pl,)) for pl in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    assert len({a.json()["operation_id"] for a in answers}) == 8
    each = 10 - _receive_fee(ppk, _proofs_of(10))
    after = _coco_request(m, "show", rec["id"])
    assert (after["state"], after["received"], after["payments"]) == ("open", 8 * each, 8)
    assert m.spendable(url) == 8 * each


def test_a_single_use_request_paid_twice_refuses_the_second(daemons, wallet, mint):
    url, ppk = mint.url, mint.input_fee_ppk
    m = _merchant(daemons, url)
    rec = _coco_request(m, "new", "32", "--mint", url)
    p = wallet("payer", url)
    p.fund(url, 500)
    first, second = _in_band(p, rec["encoded"]), _in_band(p, rec["encoded"])
    assert _post(rec["transport_url"], first).status_code == 200
    refused = _post(rec["transport_url"], second)
    assert 400 <= refused.status_code < 500, refused.text
    assert m.spendable(url) == 32 - _receive_fee(ppk, 1)
    assert _coco_request(m, "show", rec["id"])["payments"] == 1
    cancelled = _coco_request(m, "new", "32", "--mint", url)
    assert _coco_request(m, "cancel", cancelled["id"])["state"] == "cancelled"
    assert 400 <= _post(cancelled["transport_url"], {**second, "id": cancelled["id"]}
                        ).status_code < 500


def test_the_real_listener_answers_no_control_path(daemons, mint_fee0):
    m = _merchant(daemons, mint_fee0.url, "--payments-rate", "1000")
    base = _payments_url(m)
    for method, path in _control_paths():
        answer = httpx.request(method, base + path, json={}, timeout=BOUND)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["error"]["type"] == "UnknownEndpoint"
    assert m.daemon.proc is not None and m.daemon.proc.poll() is None  # /stop did nothing
    limited = _merchant_limited(daemons, mint_fee0.url)
    gate = threading.Barrier(30, timeout=BOUND)
    codes: list[int] = []

    def probe() -> None:  # all at once: the refill (10 per second) cannot keep up
        gate.wait()
        codes.append(httpx.post(f"{limited}/payments/x", json={"a": 1},
                                timeout=BOUND).status_code)

    probes = [threading.Thread(target=probe) for _ in range(30)]
    for t in probes:
        t.start()
    for t in probes:
        t.join(2 * BOUND)
    assert len(codes) == 30, codes
    # the default budget: a burst of 10, then 10 per second; the burst always goes through
    assert 429 in codes and len([c for c in codes if c != 429]) >= 10, codes


def _merchant_limited(daemons: Any, mint_url: str) -> str:
    d = daemons("limited", "--payments-listen", "127.0.0.1:0")
    w = Wallet(d.data_dir, d)
    return _payments_url(w)


def test_a_merchant_killed_between_the_post_and_the_swap_answer_credits_once(daemons, wallet,
                                                                              mint):
    """SIGKILL while the mint's answer to the claim's swap is held: restarted, the attempt
    (persisted before the swap) completes by recovery, and the payer's retry gets the
    same answer."""
    url, ppk = mint.url, mint.input_fee_ppk
    proxy = FaultProxy(url)
    try:
        m = _merchant(daemons, proxy.url, port=free_port())  # its URL outlives the kill
        rec = _coco_request(m, "new", "100", "--mint", proxy.url)
        p = wallet("payer", proxy.url)
        p.fund(proxy.url, 500)
        payload = _in_band(p, rec["encoded"])
        hold = proxy.hold("POST", "/v1/swap")
        posted: list[BaseException | httpx.Response] = []

        def post() -> None:
            try:
                posted.append(_post(rec["transport_url"], payload))
            except httpx.HTTPError as exc:
                posted.append(exc)

        poster = threading.Thread(target=post, daemon=True)
        poster.start()
        assert hold.wait(60), "the claim's swap never reached the mint"
        hold.forward()  # the mint swaps; its answer is held
        m.daemon.kill()
        hold.drop()
        poster.join(BOUND)
        assert posted and isinstance(posted[0], httpx.HTTPError)  # the payer saw no answer
        m.daemon.start()
        fee = _receive_fee(ppk, _proofs_of(100))
        again = _post(rec["transport_url"], payload)  # the payer retries the same payload
        assert again.status_code == 200, again.text
        assert again.json()["amount"] == 100 - fee
        after = _coco_request(m, "show", rec["id"])
        assert (after["state"], after["received"], after["payments"]) == ("paid", 100 - fee, 1)
        assert m.balance(proxy.url) == {"spendable": 100 - fee, "reserved": 0, "pending": 0,
                                        "total": 100 - fee}
        assert len([e for e in proxy.seen("POST", "/v1/swap") if e.status == 200]) >= 1
    finally:
        proxy.stop()


def test_a_payment_whose_post_fails_stays_a_pending_send_that_rollback_reclaims(wallet, mint):
    url, ppk = mint.url, mint.input_fee_ppk
    dead = f"http://127.0.0.1:{free_port()}/payments/r1"  # nobody listens there
    creq = encode_creq_a(PaymentRequest(id="r1", amount=100, unit="sat", single_use=True,
                                        mints=(url,), transports=(Transport(HTTP_POST, dead),)))
    p = wallet("payer", url)
    p.fund(url, 500)
    failed = p.cli("pay", creq, "--yes", "--json", code=1)
    err = json.loads(failed.stdout)["error"]
    assert err["type"] == "PaymentPostError", err
    send = next(h for h in p.json("history") if h["type"] == "send")
    assert send["state"] == "pending" and send["amount"] == 100
    assert send["operation_id"] in err["message"]  # the message names the send to reclaim
    assert p.balance(url)["spendable"] == 500 - 100 - send["fee"]
    assert p.json("send", "rollback", send["operation_id"])["state"] == "rolled_back"
    assert p.balance(url) == {"spendable": 500 - send["fee"] - _receive_fee(ppk, _proofs_of(100)),
                              "reserved": 0, "pending": 0,
                              "total": 500 - send["fee"] - _receive_fee(ppk, _proofs_of(100))}
