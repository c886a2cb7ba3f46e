"""``coco.requests``: payment requests (NUT-18/26) issued and paid by this wallet.

Runs on the caller's thread. A claim is validated here, then persisted as an attempt
by the ledger (its mailbox is the check-and-set that serializes every claim) with
the id its receive will have, then received with the receive saga under that id,
then credited to its request in one ledger transaction. So whatever point a crash
or an unknown answer stops it at, the attempt finds its receive (or knows none was
recorded) and follows that receive's recovery: the same proofs are never received
twice. The attempt's key is a hash of the payload's sorted proof Ys, so the same
payload claimed twice (or after a restart) is credited once and answered alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from coco_actors.actors import wait
from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.crypto.nut11 import parse_secret
from coco_actors.errors import (
    CocoError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    PaymentRequestError,
)
from coco_actors.mint_client import normalize_mint_url
from coco_actors.payreq import (
    HTTP_POST,
    Nut10Option,
    PaymentPayload,
    PaymentRequest,
    Transport,
    decode_payload,
    decode_request,
    encode_creq_a,
    encode_creq_b,
    encode_payload,
)
from coco_actors.records import (
    AttemptState,
    OperationId,
    OpState,
    PaymentAttempt,
    RequestRecord,
    RequestState,
    new_operation_id,
)
from coco_actors.tokens import Token, decode, encode_v4

if TYPE_CHECKING:
    from coco_actors.coco import Coco

log = logging.getLogger(__name__)

MAX_DESCRIPTION = 500
LEDGER_TIMEOUT = 30.0
#: How long a repeat claim waits for its receive's recovery (it may talk to the mint).
RECOVERY_TIMEOUT = 60.0
POST_TIMEOUT = 30.0
MAX_POST_RESPONSE = 65_536


class PaymentPostError(PaymentRequestError):
    """The payload could not be delivered to the request's HTTP transport. The send
    ``operation_id`` is pending: ``coco.send.rollback(operation_id)`` reclaims it."""

    def __init__(self, message: str, *, operation_id: str) -> None:
        super().__init__(message)
        self.operation_id = operation_id


@dataclass(slots=True)
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


def attempt_key(payload: PaymentPayload) -> str:
    ys = sorted(secret_to_y(p.secret) for p in payload.proofs)
    return hashlib.sha256("".join(ys).encode()).hexdigest()


class RequestsApi:
    """Create, list, cancel, claim and pay payment requests (``coco.requests``)."""

    def __init__(self, coco: Coco) -> None:
        self._coco = coco
        self._guard = threading.Lock()
        self._running: dict[str, _Slot] = {}  # attempt key -> its lock

    # --- the merchant side -----------------------------------------------------------

    def create(self, amount: int | None = None, unit: str = "sat", mints: Sequence[str] = (),
               description: str | None = None, single_use: bool = True, p2pk: bool = False,
               transport_url: str | None = None) -> RequestRecord:
        """A new open request, persisted before it is returned.

        ``transport_url`` is a base URL: payers POST to ``<transport_url>/payments/<id>``
        (None: in-band, the payload reaches :meth:`claim` by other means).
        """
        coco = self._coco
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)
                                   or amount <= 0):
            raise InvalidInputError(f"amount must be a positive integer or None, got {amount!r}")
        if not isinstance(unit, str) or not unit:
            raise InvalidInputError("unit must be a non-empty string")
        if isinstance(mints, str) or not mints:
            raise InvalidInputError("mints must be a non-empty list of mint URLs")
        known = {m.url for m in coco.mints.list()}
        urls = tuple(dict.fromkeys(normalize_mint_url(m) for m in mints))
        unknown = [u for u in urls if u not in known]
        if unknown:
            raise NotFoundError(f"unknown mint(s) {unknown}; add them first")
        if description is not None and (not isinstance(description, str)
                                        or len(description) > MAX_DESCRIPTION):
            raise InvalidInputError(f"description must be text of at most {MAX_DESCRIPTION} "
                                    "characters")
        if transport_url is not None and (not isinstance(transport_url, str) or not
                                          transport_url.startswith(("http://", "https://"))):
            raise InvalidInputError("transport_url must be an http(s) URL")
        rid = uuid.uuid4().hex[:16]
        pubkey = coco.keys.new() if p2pk else None
        url = None if transport_url is None else f"{transport_url.rstrip('/')}/payments/{rid}"
        req = PaymentRequest(
            id=rid, amount=amount, unit=unit, single_use=bool(single_use), mints=urls,
            description=description,
            transports=() if url is None else (Transport(HTTP_POST, url),),
            nut10=None if pubkey is None else Nut10Option("P2PK", pubkey))
        rec = RequestRecord(id=rid, encoded=encode_creq_a(req), encoded_b=encode_creq_b(req),
                            state=RequestState.OPEN, unit=unit, mints=urls,
                            single_use=bool(single_use), amount=amount,
                            description=description, pubkey=pubkey, transport_url=url)
        # request:created is committed with the record (the ledger's outbox)
        return wait(coco._ledger.create_request(rec), LEDGER_TIMEOUT, "ProofLedger")

    def get(self, request_id: str) -> RequestRecord:
        rec = wait(self._coco._ledger.get_request(str(request_id)), LEDGER_TIMEOUT,
                   "ProofLedger")
        if rec is None:
            raise NotFoundError(f"unknown payment request {request_id!r}")
        return rec

    def list(self) -> list[RequestRecord]:
        return wait(self._coco._ledger.requests(), LEDGER_TIMEOUT, "ProofLedger")

    def cancel(self, request_id: str) -> RequestRecord:
        """An open request only (``InvalidStateError`` otherwise)."""
        return wait(self._coco._ledger.cancel_request(str(request_id)), LEDGER_TIMEOUT,
                    "ProofLedger")  # request:cancelled is committed with it

    def claim(self, payload: PaymentPayload | bytes | str | dict[str, Any]) -> dict[str, Any]:
        """Receive a payload for one of our requests; the answer is
        ``{"request_id", "amount" (received), "operation_id", "state"}``, the same for
        the same payload claimed again. Refused (``PaymentRequestError``) before
        anything changed: unknown or closed request, wrong mint, unit, amount, lock."""
        coco = self._coco
        p = payload if isinstance(payload, PaymentPayload) else decode_payload(payload)
        if p.id is None:
            raise PaymentRequestError("payment payload names no request (field 'id')")
        rec = wait(coco._ledger.get_request(p.id), LEDGER_TIMEOUT, "ProofLedger")
        if rec is None:
            raise PaymentRequestError(f"unknown payment request {p.id!r}")
        key = attempt_key(p)
        known = wait(coco._ledger.get_attempt(key), LEDGER_TIMEOUT, "ProofLedger")
        if known is not None:  # the same payload again: follow what it started
            return self._run(known)
        mint = normalize_mint_url(p.mint)
        if mint not in rec.mints:
            raise PaymentRequestError(f"payment request {rec.id} does not take ecash of {mint}")
        if p.unit != rec.unit:
            raise PaymentRequestError(f"payment request {rec.id} is in {rec.unit}, not {p.unit}")
        if rec.amount is not None and p.amount < rec.amount:
            raise PaymentRequestError(f"payment of {p.amount} is less than the {rec.amount} "
                                      f"requested by {rec.id}")
        if rec.pubkey is not None:
            for proof in p.proofs:
                secret = parse_secret(proof.secret)
                if secret is None or secret.kind != "P2PK" or secret.data != rec.pubkey:
                    raise PaymentRequestError(f"payment request {rec.id} asks for ecash locked "
                                              "to its key")
        if rec.state != RequestState.OPEN:
            raise PaymentRequestError(f"payment request {rec.id} is {rec.state.value}")
        attempt = PaymentAttempt(key=key, request_id=rec.id, mint_url=mint, unit=p.unit,
                                 proofs=p.proofs, operation_id=new_operation_id())
        attempt, _new = wait(coco._ledger.begin_attempt(attempt), LEDGER_TIMEOUT,
                             "ProofLedger")
        return self._run(attempt)

    @contextlib.contextmanager
    def _exclusive(self, key: str) -> Iterator[None]:
        """One thread at a time follows an attempt (claims of the same payload at once)."""
        with self._guard:
            slot = self._running.setdefault(key, _Slot())
            slot.users += 1
        try:
            with slot.lock:
                yield
        finally:
            with self._guard:
                slot.users -= 1
                if slot.users == 0:
                    del self._running[key]

    def _run(self, attempt: PaymentAttempt) -> dict[str, Any]:
        """Follow an accepted attempt to its end: its receive (started under the id the
        attempt committed, never a second one), then the credit. Also on recovery and
        for a repeat claim after an unknown outcome."""
        with self._exclusive(attempt.key):
            return self._follow(attempt.key)

    def _follow(self, key: str) -> dict[str, Any]:
        coco = self._coco
        ledger = coco._ledger
        att = wait(ledger.get_attempt(key), LEDGER_TIMEOUT, "ProofLedger")
        if att is None:  # refused meanwhile (a claim of the same payload at once)
            raise PaymentRequestError("this payment was refused; nothing was received")
        if att.state == AttemptState.COMPLETED:
            return _answer(att)
        op_id = att.operation_id
        if op_id is None:  # never expected: every attempt is stored with its receive's id
            raise InvalidStateError(f"payment attempt for {att.request_id} has no receive")
        op = wait(ledger.get_operation(op_id), LEDGER_TIMEOUT, "ProofLedger")
        try:
            if op is None:  # no receive was recorded yet: start it under the committed id
                token = Token(mint=att.mint_url, proofs=att.proofs, unit=att.unit)
                op = coco._receive(encode_v4(token), op_id)
            elif not op.state.terminal:  # interrupted or unknown outcome: its recovery row
                actor = coco._ask(coco._supervisor.receive_actor(op_id))
                op = wait(actor.recover(), RECOVERY_TIMEOUT, "receive operation")
        except CocoError as exc:
            after = wait(ledger.get_operation(op_id), LEDGER_TIMEOUT, "ProofLedger")
            if after is not None and not after.state.terminal:
                raise  # outcome unknown: the attempt and its receive stay, claim again later
            if after is None or after.state != OpState.COMPLETED:
                wait(ledger.drop_attempt(key), LEDGER_TIMEOUT, "ProofLedger")
                raise PaymentRequestError(f"payment refused: {exc}") from exc
            op = after
        if op.state == OpState.COMPLETED:
            return self._credit(att, op.id, op.amount)  # net of the fee
        if op.state == OpState.ROLLED_BACK:
            wait(ledger.drop_attempt(key), LEDGER_TIMEOUT, "ProofLedger")
            raise PaymentRequestError(f"the payment for {att.request_id} was not received "
                                      f"({op.error or 'rolled back'})")
        raise InvalidStateError(f"the receive {op.id} of this payment is {op.state.value} at "
                                "the mint: claim it again later")

    def _credit(self, attempt: PaymentAttempt, op_id: OperationId, received: int
                ) -> dict[str, Any]:
        coco = self._coco
        # request:paid is committed with the credit, once
        att, _rec = wait(coco._ledger.finish_attempt(attempt.key, op_id, received),
                         LEDGER_TIMEOUT, "ProofLedger")
        return _answer(att)

    def resume(self) -> int:
        """Finish every attempt left mid-way (run by ``Coco.open`` after recovery)."""
        n = 0
        for att in wait(self._coco._ledger.attempts(), LEDGER_TIMEOUT, "ProofLedger"):
            if att.state == AttemptState.COMPLETED:
                continue
            try:
                self._run(att)
                n += 1
            except CocoError as exc:
                _log_resume(att, exc)
        return n

    # --- the payer side --------------------------------------------------------------

    def pay(self, creq: str, mint_url: str | None = None, amount: int | None = None
            ) -> dict[str, Any]:
        """Pay ``creq``: POST the payload to its HTTP transport (``{"posted": url,
        "status", "response", "operation_id"}``), or return it for in-band delivery
        (``{"payload": ..., "operation_id"}``)."""
        coco = self._coco
        req = decode_request(creq)
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)
                                   or amount <= 0):
            raise InvalidInputError(f"amount must be a positive integer, got {amount!r}")
        if req.amount is not None and amount is not None and amount != req.amount:
            raise PaymentRequestError(f"the request is for {req.amount}, not {amount}")
        value = req.amount if req.amount is not None else amount
        if value is None:
            raise PaymentRequestError("the request names no amount: pass amount=")
        if req.unit not in (None, "sat"):
            raise PaymentRequestError(f"this wallet pays in sat, the request asks {req.unit}")
        if req.nut10 is not None and req.p2pk_pubkey is None:
            raise PaymentRequestError(f"cannot meet a {req.nut10.kind} lock")
        allowed = {normalize_mint_url(m) for m in req.mints}
        balances = coco.balance()
        ours = [normalize_mint_url(mint_url)] if mint_url is not None else list(balances)
        candidates = [m for m in ours if not allowed or m in allowed]
        if not candidates:
            raise PaymentRequestError("none of our mints is one the request takes")
        funded = [m for m in candidates if m in balances and balances[m].spendable >= value]
        mint = (funded or candidates)[0]
        op = coco.send.prepare_send(mint, value, p2pk=req.p2pk_pubkey)
        op, token = coco.send.execute_prepared_send(op.id)
        sent = decode(token)
        payload = PaymentPayload(mint=sent.mint, unit=sent.unit, proofs=sent.proofs, id=req.id)
        body = encode_payload(payload)
        url = req.post_url
        if url is None:
            return {"payload": body, "operation_id": op.id}
        try:
            with httpx.Client(timeout=POST_TIMEOUT) as http, \
                    http.stream("POST", url, json=body) as resp:
                raw = b""
                for chunk in resp.iter_bytes():
                    raw += chunk
                    if len(raw) > MAX_POST_RESPONSE:
                        break
        except httpx.HTTPError as exc:
            raise PaymentPostError(f"could not POST the payment ({type(exc).__name__}); send "
                                   f"{op.id} is pending: coco.send.rollback reclaims it",
                                   operation_id=op.id) from None
        if resp.status_code >= 300:
            raise PaymentPostError(f"the payee answered {resp.status_code}; send {op.id} is "
                                   "pending: coco.send.rollback reclaims it",
                                   operation_id=op.id)
        return {"posted": url, "status": resp.status_code,
                "response": raw[:MAX_POST_RESPONSE].decode("utf-8", "replace"),
                "operation_id": op.id}


def _answer(att: PaymentAttempt) -> dict[str, Any]:
    return {"request_id": att.request_id, "amount": att.received,
            "operation_id": att.operation_id, "state": att.state.value}


def _log_resume(att: PaymentAttempt, exc: BaseException) -> None:
    log.warning("payment attempt %r not finished: %s", att, exc)


__all__ = ["PaymentPostError", "RequestsApi", "attempt_key"]

