"""Payment requests against the real mint (fees 0 and 100): create/get/list/cancel, an
in-band payment claimed by the merchant (balance exact, event fired), the same payload
claimed twice (credited once, same answer), and refusals that change nothing."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from coco_actors import Coco
from coco_actors.actors import wait
from coco_actors.crypto.nut11 import parse_secret
from coco_actors.errors import InvalidStateError, MintError, NotFoundError, PaymentRequestError
from coco_actors.mint_client import normalize_mint_url
from coco_actors.payreq import decode_payload, decode_request
from coco_actors.records import PaymentAttempt, new_operation_id
from coco_actors.requests import PaymentPostError, attempt_key
from coco_actors.tokens import Token, encode_v4
from tests.support.proxy import Fault, FaultProxy

from .helpers import balance_of, fee_of, fund, snapshot

EVENT_TIMEOUT = 10.0


def paid_seq(coco: Coco, request_id: str) -> int:
    """The seq of the one stored ``request:paid`` of ``request_id`` (the outbox)."""
    (seq,) = [r.seq for r in coco.events.since(0)
              if r.event == "request:paid" and r.data["request_id"] == request_id]
    return seq


def test_create_get_list_cancel(wallet: Any, mint: Any) -> None:
    url = normalize_mint_url(mint.url)
    shop = wallet("shop", url)
    req = shop.requests.create(21, mints=[url], description="coffee")
    assert req.state == "open" and req.amount == 21 and req.mints == (url,)
    for text in (req.encoded, req.encoded_b):
        decoded = decode_request(text)
        assert decoded.id == req.id and decoded.amount == 21 and decoded.mints == (url,)
        assert decoded.single_use is True and decoded.transports == ()
    assert shop.requests.get(req.id) == req
    assert [r.id for r in shop.requests.list()] == [req.id]
    assert shop.requests.cancel(req.id).state == "cancelled"
    with pytest.raises(InvalidStateError):
        shop.requests.cancel(req.id)
    with pytest.raises(NotFoundError):
        shop.requests.get("nope")
    with pytest.raises(NotFoundError):
        shop.requests.create(5, mints=["http://127.0.0.1:1/unknown"])
    posted = shop.requests.create(5, mints=[url], transport_url="http://127.0.0.1:9/")
    assert decode_request(posted.encoded).post_url == f"http://127.0.0.1:9/payments/{posted.id}"


def test_in_band_payment_claimed_once(wallet: Any, mint: Any) -> None:
    url = normalize_mint_url(mint.url)
    shop, customer = wallet("shop", url), wallet("customer", url)
    fund(customer, url, 200)
    req = shop.requests.create(64, mints=[url])
    paid = threading.Event()
    events: list[dict[str, Any]] = []

    def on_paid(p: dict[str, Any]) -> None:
        events.append(p)
        paid.set()

    shop.on("request:paid", on_paid)
    out = customer.requests.pay(req.encoded_b)
    payload = decode_payload(out["payload"])
    assert payload.id == req.id and payload.amount == 64
    fee = fee_of(mint.input_fee_ppk, len(payload.proofs))
    answer = shop.requests.claim(out["payload"])
    assert answer["amount"] == 64 - fee and answer["request_id"] == req.id
    assert balance_of(shop, url) == (64 - fee, 0, 0)
    assert paid.wait(10)
    assert events == [{"request_id": req.id, "amount": 64 - fee,
                       "operation_id": answer["operation_id"], "seq": paid_seq(shop, req.id)}]
    assert shop.requests.claim(out["payload"]) == answer  # the same payload: same answer
    assert balance_of(shop, url) == (64 - fee, 0, 0)
    rec = shop.requests.get(req.id)
    assert rec.state == "paid" and rec.received == 64 - fee
    # single use: a second, different payload is refused and changes nothing
    again = customer.requests.pay(req.encoded)
    with pytest.raises(PaymentRequestError):
        shop.requests.claim(again["payload"])
    assert balance_of(shop, url) == (64 - fee, 0, 0)


def test_refusals_change_nothing(wallet: Any, mint: Any) -> None:
    url = normalize_mint_url(mint.url)
    shop, customer = wallet("shop", url), wallet("customer", url)
    fund(customer, url, 200)
    small = shop.requests.create(10, mints=[url], single_use=False)
    other = customer.requests.pay(small.encoded, amount=10)["payload"]
    bad: Any
    for bad in ({**other, "unit": "usd"}, {**other, "id": "unknown"},
                {**other, "mint": "http://127.0.0.1:1"}, {"proofs": []}, b"{"):
        with pytest.raises(PaymentRequestError):
            shop.requests.claim(bad)
    big = shop.requests.create(50, mints=[url])
    with pytest.raises(PaymentRequestError):
        shop.requests.claim({**other, "id": big.id})  # too small
    assert balance_of(shop, url) == (0, 0, 0)
    shop.requests.cancel(big.id)
    with pytest.raises(PaymentRequestError):
        shop.requests.claim({**other, "id": big.id})
    assert balance_of(shop, url) == (0, 0, 0)


# --- helpers of the tests below ---------------------------------------------------------------


class Paid:
    """``request:paid`` events of one wallet, in order (the bus thread appends)."""

    def __init__(self, coco: Coco) -> None:
        self._coco = coco
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        coco.on("request:paid", self._on)

    def _on(self, payload: dict[str, Any]) -> None:
        with self._cond:
            self.events.append(payload)
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = EVENT_TIMEOUT) -> list[dict[str, Any]]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.events) >= n, timeout), self.events
            return list(self.events)

    def flush(self) -> list[dict[str, Any]]:
        """A round trip to the bus: every event emitted before has been recorded."""
        def noop(payload: dict[str, Any]) -> None:
            pass

        self._coco.on("request:cancelled", noop)
        self._coco.off("request:cancelled", noop)
        with self._cond:
            return list(self.events)


def send_fee(coco: Coco, op_id: str) -> int:
    op = coco.send.get_operation(op_id)
    assert op is not None
    return op.fee


class Payee:
    """A small HTTP listener on 127.0.0.1 that hands every POSTed body to ``claim`` (or
    answers ``status`` without reading it): the payee side of an HTTP POST transport."""

    def __init__(self, shop: Coco, status: int | None = None) -> None:
        outer = self
        self.bodies: list[bytes] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.bodies.append(body)
                if status is not None:
                    code, answer = status, {"error": "no"}
                else:
                    try:
                        code, answer = 200, shop.requests.claim(body)
                    except PaymentRequestError as exc:
                        code, answer = 400, {"error": str(exc)}
                raw = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


def closed_port_url() -> str:
    """The URL of a port on 127.0.0.1 that nothing listens on (bound, then freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


# --- many payers at once, P2PK, HTTP POST ------------------------------------------------------


def test_eight_concurrent_payers_of_a_multi_use_request(wallet: Any, mint: Any) -> None:
    url = normalize_mint_url(mint.url)
    shop, customer = wallet("shop", url), wallet("customer", url)
    fund(customer, url, 1000)
    req = shop.requests.create(16, mints=[url], single_use=False)
    paid = Paid(shop)
    start = threading.Barrier(8)
    answers: list[dict[str, Any]] = []
    sends: list[tuple[str, int]] = []  # (send id, number of proofs)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def payer() -> None:
        try:
            start.wait(10)
            out = customer.requests.pay(req.encoded)
            n = len(decode_payload(out["payload"]).proofs)
            answer = shop.requests.claim(out["payload"])
            with lock:
                answers.append(answer)
                sends.append((out["operation_id"], n))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=payer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(answers) == 8 and len({a["operation_id"] for a in answers}) == 8
    fees = [fee_of(mint.input_fee_ppk, n) for _, n in sends]
    received = 8 * 16 - sum(fees)
    assert sorted(a["amount"] for a in answers) == sorted(16 - f for f in fees)
    assert balance_of(shop, url) == (received, 0, 0)
    rec = shop.requests.get(req.id)
    assert rec.state == "open" and rec.payments == 8 and rec.received == received
    assert sorted(rec.operation_ids) == sorted(a["operation_id"] for a in answers)
    events = paid.wait_for(8)
    assert sorted(e["operation_id"] for e in paid.flush()) == sorted(rec.operation_ids)
    assert len(events) == 8
    spent = sum(send_fee(customer, op_id) for op_id, _ in sends)
    assert balance_of(customer, url) == (1000 - 8 * 16 - spent, 0, 8 * 16)


def test_p2pk_request_is_paid_locked_to_its_key(wallet: Any, mint: Any) -> None:
    url = normalize_mint_url(mint.url)
    shop, customer = wallet("shop", url), wallet("customer", url)
    fund(customer, url, 300)
    req = shop.requests.create(40, mints=[url], p2pk=True)
    assert req.pubkey is not None and req.pubkey in [k.public for k in shop.keys.list()]
    decoded = decode_request(req.encoded_b)
    assert decoded.p2pk_pubkey == req.pubkey
    # a payload that is not locked to the request's key is refused, nothing changes
    plain = shop.requests.create(40, mints=[url])
    unlocked = customer.requests.pay(plain.encoded)
    before = snapshot(shop)
    with pytest.raises(PaymentRequestError):
        shop.requests.claim({**unlocked["payload"], "id": req.id})
    assert snapshot(shop) == before and balance_of(shop, url) == (0, 0, 0)
    assert shop.requests.get(req.id).received == 0 and shop.requests.get(req.id).state == "open"
    # the payer locks to the request's key; the merchant's claim signs and receives it
    out = customer.requests.pay(req.encoded)
    payload = decode_payload(out["payload"])
    for proof in payload.proofs:
        secret = parse_secret(proof.secret)
        assert secret is not None and secret.kind == "P2PK" and secret.data == req.pubkey
    fee = fee_of(mint.input_fee_ppk, len(payload.proofs))
    answer = shop.requests.claim(out["payload"])
    assert answer["amount"] == 40 - fee
    assert balance_of(shop, url) == (40 - fee, 0, 0)
    assert shop.requests.get(req.id).state == "paid"
    spent = send_fee(customer, unlocked["operation_id"]) + send_fee(customer, out["operation_id"])
    assert balance_of(customer, url) == (300 - 80 - spent, 0, 80)


def test_pay_posts_to_the_http_transport(wallet: Any, mint: Any) -> None:
    url = normalize_mint_url(mint.url)
    shop, customer = wallet("shop", url), wallet("customer", url)
    fund(customer, url, 200)
    payee = Payee(shop)
    try:
        req = shop.requests.create(30, mints=[url], transport_url=payee.url)
        out = customer.requests.pay(req.encoded_b)
        assert out["posted"] == f"{payee.url}/payments/{req.id}" and out["status"] == 200
        answer = json.loads(out["response"])
        payload = decode_payload(payee.bodies[0])
        fee = fee_of(mint.input_fee_ppk, len(payload.proofs))
        assert answer["amount"] == 30 - fee and answer["request_id"] == req.id
        assert balance_of(shop, url) == (30 - fee, 0, 0)
        assert shop.requests.get(req.id).state == "paid"
        spent = send_fee(customer, out["operation_id"])
        assert balance_of(customer, url) == (200 - 30 - spent, 0, 30)
    finally:
        payee.stop()


@pytest.mark.parametrize("down", [False, True], ids=["answers-500", "down"])
def test_a_failed_post_leaves_a_pending_send_to_reclaim(wallet: Any, mint: Any,
                                                        down: bool) -> None:
    url = normalize_mint_url(mint.url)
    shop, customer = wallet("shop", url), wallet("customer", url)
    fund(customer, url, 200)
    payee = None if down else Payee(shop, status=500)
    try:
        base = closed_port_url() if payee is None else payee.url
        req = shop.requests.create(30, mints=[url], transport_url=base)
        with pytest.raises(PaymentPostError) as info:
            customer.requests.pay(req.encoded)
        op_id = info.value.operation_id
        assert op_id in str(info.value)
        op = customer.send.get_operation(op_id)
        assert op is not None and op.state == "pending"
        spent = send_fee(customer, op_id)
        assert balance_of(customer, url) == (200 - 30 - spent, 0, 30)
        token_proofs = len(op.send_proofs)
        customer.send.rollback(op_id)
        reclaim = fee_of(mint.input_fee_ppk, token_proofs)
        assert balance_of(customer, url) == (200 - spent - reclaim, 0, 0)
        assert balance_of(shop, url) == (0, 0, 0)
        assert shop.requests.get(req.id).state == "open"
        if payee is not None:
            assert len(payee.bodies) == 1  # it was posted once, and not claimed
    finally:
        if payee is not None:
            payee.stop()


# --- unknown outcomes, crashes and recovery ----------------------------------------------------

SWAP = ("POST", "/v1/swap")


def _shop_and_payload(wallet: Any, url: str, ppk: int, amount: int = 48
                      ) -> tuple[Coco, Any, dict[str, Any], int]:
    """A merchant and a customer at ``url`` (a proxy), one in-band payload for an open
    single-use request; the receive fee of that payload."""
    shop, customer = wallet("shop", url), wallet("customer", url)
    fund(customer, url, 200)
    req = shop.requests.create(amount, mints=[url])
    out = customer.requests.pay(req.encoded)
    fee = fee_of(ppk, len(decode_payload(out["payload"]).proofs))
    return shop, req, out["payload"], fee


@pytest.mark.parametrize("processed", [True, False], ids=["answer-dropped", "never-arrived"])
def test_a_repeat_claim_follows_the_receive_of_an_unknown_outcome(
        wallet: Any, mint: Any, proxy_for: Callable[[str], FaultProxy], processed: bool) -> None:
    """The swap's answer is lost (the mint did it, or never saw it): the claim raises and
    the attempt stays; claiming again follows that receive's recovery, never a second
    swap of the same proofs when the first one was processed."""
    proxy = proxy_for(mint.url)
    url = normalize_mint_url(proxy.url)
    shop, req, payload, fee = _shop_and_payload(wallet, url, mint.input_fee_ppk)
    paid = Paid(shop)
    swaps = len(proxy.seen(*SWAP))
    proxy.inject(*SWAP, Fault.DROP_RESPONSE if processed else Fault.RESET, forward=processed)
    with pytest.raises(MintError):
        shop.requests.claim(payload)
    assert balance_of(shop, url) == (0, 0, 0)
    assert shop.requests.get(req.id).state == "open" and paid.flush() == []
    answer = shop.requests.claim(payload)
    assert answer["amount"] == 48 - fee and answer["state"] == "completed"
    assert balance_of(shop, url) == (48 - fee, 0, 0)
    # the proofs went to the mint once if it processed them, else twice (the retry)
    assert len(proxy.seen(*SWAP)) - swaps == (1 if processed else 2)
    rec = shop.requests.get(req.id)
    assert rec.state == "paid" and rec.received == 48 - fee and rec.payments == 1
    assert paid.wait_for(1) == [{"request_id": req.id, "amount": 48 - fee,
                                 "operation_id": answer["operation_id"],
                                 "seq": paid_seq(shop, req.id)}]
    assert shop.requests.claim(payload) == answer
    assert paid.flush() == paid.events[:1] and balance_of(shop, url) == (48 - fee, 0, 0)


def _reopen_and_resume(wallet: Any, url: str) -> tuple[Coco, Paid, int]:
    """Reopen the merchant without recovery, listen, then recover and resume, so the
    ``request:paid`` of the resume is seen."""
    shop = wallet("shop", recover=False)
    paid = Paid(shop)
    shop.recover()
    return shop, paid, shop.requests.resume()


def test_a_claim_interrupted_at_the_swap_is_credited_once_after_reopen(
        wallet: Any, mint: Any, proxy_for: Callable[[str], FaultProxy]) -> None:
    proxy = proxy_for(mint.url)
    url = normalize_mint_url(proxy.url)
    shop, req, payload, fee = _shop_and_payload(wallet, url, mint.input_fee_ppk)
    swaps = len(proxy.seen(*SWAP))
    proxy.inject(*SWAP, Fault.DROP_RESPONSE, forward=True)
    with pytest.raises(MintError):
        shop.requests.claim(payload)
    shop.close()
    shop, paid, resumed = _reopen_and_resume(wallet, url)
    assert resumed == 1
    events = paid.wait_for(1)
    rec = shop.requests.get(req.id)
    assert rec.state == "paid" and rec.received == 48 - fee and rec.payments == 1
    assert events == [{"request_id": req.id, "amount": 48 - fee,
                       "operation_id": rec.operation_ids[0], "seq": paid_seq(shop, req.id)}]
    assert balance_of(shop, url) == (48 - fee, 0, 0)
    assert len(proxy.seen(*SWAP)) - swaps == 1
    answer = shop.requests.claim(payload)  # the same payload after the restart
    assert answer["amount"] == 48 - fee and answer["operation_id"] == rec.operation_ids[0]
    assert paid.flush() == events and balance_of(shop, url) == (48 - fee, 0, 0)
    assert shop.requests.resume() == 0


@pytest.mark.parametrize("stop_at", ["attempt-stored", "receive-completed"])
def test_a_crash_between_the_attempt_and_the_credit_is_credited_once(
        wallet: Any, mint: Any, proxy_for: Callable[[str], FaultProxy], stop_at: str) -> None:
    """The stored state of a crash right after the attempt was committed (its receive
    not started) and right after its receive completed (the request not credited):
    built with the ledger and the receive under the attempt's committed id."""
    proxy = proxy_for(mint.url)
    url = normalize_mint_url(proxy.url)
    shop, req, payload, fee = _shop_and_payload(wallet, url, mint.input_fee_ppk)
    p = decode_payload(payload)
    attempt = PaymentAttempt(key=attempt_key(p), request_id=req.id, mint_url=url, unit="sat",
                             proofs=p.proofs, operation_id=new_operation_id())
    stored, new = wait(shop._ledger.begin_attempt(attempt), 10, "ProofLedger")
    assert new and stored.operation_id == attempt.operation_id
    swaps = len(proxy.seen(*SWAP))
    if stop_at == "receive-completed":
        op = shop._receive(encode_v4(Token(mint=url, proofs=p.proofs, unit="sat")),
                           attempt.operation_id)
        assert op.id == attempt.operation_id and op.state == "completed"
        assert balance_of(shop, url) == (48 - fee, 0, 0)
        assert shop.requests.get(req.id).received == 0
    shop.close()
    shop, paid, resumed = _reopen_and_resume(wallet, url)
    assert resumed == 1
    assert paid.wait_for(1) == [{"request_id": req.id, "amount": 48 - fee,
                                 "operation_id": attempt.operation_id,
                                 "seq": paid_seq(shop, req.id)}]
    rec = shop.requests.get(req.id)
    assert rec.state == "paid" and rec.received == 48 - fee
    assert rec.operation_ids == (attempt.operation_id,)
    assert balance_of(shop, url) == (48 - fee, 0, 0)
    assert len(proxy.seen(*SWAP)) - swaps == 1  # one swap of these proofs, ever
    assert shop.requests.claim(payload)["operation_id"] == attempt.operation_id
    assert len(paid.flush()) == 1
