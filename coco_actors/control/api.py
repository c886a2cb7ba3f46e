"""ControlApi: the daemon's endpoints, each request -> one ``Coco`` call -> a JSON view.

Endpoints (HTTP with JSON bodies, served by :mod:`coco_actors.control.server`)::

    GET  /status                        daemon, mints, balances, operations not at rest
    GET  /balance[?mint=URL&unit=U]     per mint: spendable, reserved, pending, total (in U,
                                        default sat)
    GET  /balance/total                 the same in sat, summed over every mint
    GET  /balance/units[?mint=URL]      {mints: per mint per unit, totals: per unit}
    GET  /mints                         trusted mints
    POST /mints          {url, restore} trust a mint (and restore from it, NUT-09)
    GET  /mints/info?url=URL            the mint's NUT-06 info
    POST /mint/quote     {mint_url, amount, unit?} a bolt11 quote; the wallet mints it once paid
    POST /mint/wait      {operation_id, timeout}   long poll (at most 30 s) until that mint is over
    POST /send/prepare   {mint_url, amount, p2pk?, n_sigs?, locktime?, refund?, unit?}
                                        reserve proofs (locked to p2pk keys: NUT-11); the operation
    GET  /keys                          the wallet's P2PK keys handed out
    POST /keys                          a fresh P2PK key {index, public, created_at}
    GET  /send/pending                  sends not at rest
    GET  /send/ID                       one send (with its token while pending)
    POST /send/ID/execute               {operation, token}
    POST /send/ID/rollback              the operation
    POST /melt/prepare   {mint_url, invoice, swap?, unit?}  a melt quote, inputs held; the operation
    GET  /melt/pending                  melts not at rest
    GET  /melt/ID                       one melt
    POST /melt/ID/execute {timeout?}    pay (the mint may take timeout s, at most 120):
                                        the operation, completed or pending
    POST /melt/ID/rollback              the operation
    POST /melt/wait      {operation_id, timeout}   long poll (at most 30 s) until that melt is over
    POST /transfer/prepare {mint_url, to_mint_url, amount}  a mint quote at to_mint_url and
                                        the melt paying it at mint_url (the source); the operation
    GET  /transfer/pending              transfers not at rest
    GET  /transfer/ID                   one transfer
    POST /transfer/ID/execute {timeout?}  melt, then redeem (within timeout s, at most 120):
                                        the operation, completed, pending or rolled_back
    POST /transfer/ID/rollback          the operation
    POST /transfer/wait  {operation_id, timeout}   long poll (at most 30 s) until that transfer
                                        is over
    POST /receive        {token, into?} the receive operation; with into (a mint URL):
                                        the transfer moving its value there, executed
    POST /receive/prepare {token, into} that transfer, prepared (its fees); nothing spent
    POST /receive/ID/execute {timeout?} execute it (timeout at most 120 s): the transfer
    POST /receive/ID/rollback           forget a prepared one (the transfer)
    POST /request/new    {amount?, unit?, mints, description?, single_use?, p2pk?}
                                        a payment request (NUT-18 creqA, NUT-26 creqB); with
                                        --payments-listen its transport is the listener's URL
    GET  /request/list                  every payment request (also GET /requests)
    GET  /request/ID                    one payment request
    POST /request/ID/cancel             cancel an open request
    POST /request/claim  {payload}      a payment payload received by other means (in-band)
    POST /request/decode {creq}         what a creqA/creqB asks for (nothing is paid)
    POST /request/pay    {creq, mint_url?, amount?}  pay it: POSTed to its transport, or the
                                        payload returned for in-band delivery
    GET  /history[?limit=N&cursor=C&mint=URL&kind=K&state=S&paged=1]
                                        newest first: the bare list, or (paged=1, or with a
                                        cursor) a page {items, next_cursor}
    GET  /operations[?limit=N&cursor=C&mint=URL&kind=K&state=S]
                                        the operations not at rest (every kind): a page
    POST /consolidate    {mint_url, max_fee_fraction?}  swap the mint's proofs into the
                                        fewest: {skipped, operation, inputs, outputs, fee, ...}
    GET  /audit[?mint=URL]              the solvency report (NUT-07 per mint and unit); changes
                                        nothing
    POST /audit/fix      {mint_url?}    the same, removing the ready proofs the mint says are
                                        spent and no operation holds (the report's ``fixed``)
    GET  /webhooks                      per webhook: url, last delivered seq, pending, attempts
                                        of the current event, last error, next retry (no secret)
    GET  /openapi.json                  the OpenAPI 3.1 document of all of this
    GET  /events[?follow=1]             newline-delimited JSON: recent events, then live ones
    GET  /events?after=SEQ[&follow=1]   every stored event with seq > SEQ in order (the
                                        outbox), then live ones: none twice, none lost; each
                                        line has its seq; headers Coco-Events-Oldest (oldest
                                        kept seq), Coco-Events-Pruned (N after SEQ pruned);
                                        a bad SEQ is a 400
    POST /stop                          graceful shutdown, as SIGTERM

Every mutating POST takes an ``Idempotency-Key`` header (1..255 printable ASCII): a
repeat with the same key and request answers what the first did (an execute has its
own key); the same key with another request is a 409 ``IdempotencyConflictError``.

Input is checked here for its JSON *shape* only, by the request types of
:mod:`~coco_actors.control.schema` (types, required fields: :class:`BadRequestError`);
what a value means (a positive amount, a known mint, a valid token) is checked once,
by the ``Coco`` facade. Each handler's :func:`~.schema.endpoint` mark says what the
OpenAPI document shows of it. ``/events`` is the server's own (a stream, not a JSON
answer).

Threads: every endpoint runs on the request's own thread; ``Coco`` is thread-safe.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote

from msgspec import UnsetType

from coco_actors.coco import Coco
from coco_actors.control.errors import BadRequestError
from coco_actors.control.events import EventHub, wait_for_end
from coco_actors.control.openapi import openapi_document
from coco_actors.control.paths import socket_path
from coco_actors.control.schema import (
    AddMint,
    AuditFix,
    AuditQuery,
    Balance,
    BalanceQuery,
    Consolidate,
    Execute,
    HistoryPage,
    HistoryQuery,
    JsonObject,
    MeltPrepare,
    MintInfoQuery,
    MintQuote,
    NoBody,
    OperationsPage,
    OperationsQuery,
    Receive,
    ReceivePrepare,
    RequestClaim,
    RequestDecode,
    RequestNew,
    RequestPay,
    SendPrepare,
    TransferPrepare,
    UnitBalances,
    UnitBalancesQuery,
    Wait,
    body_of,
    endpoint,
    query_of,
)
from coco_actors.control.views import audit_view, claim_view, jsonable, op_view
from coco_actors.errors import ActorTimeoutError, MintError, NotFoundError
from coco_actors.mint_client import normalize_mint_url
from coco_actors.payreq import decode_payload, decode_request
from coco_actors.records import HistoryEntry, Operation, OpState

log = logging.getLogger(__name__)

#: Longest long poll of ``POST /mint/wait``.
MAX_WAIT = 30.0
#: Longest wait for the mint's answer to a melt request (``POST /melt/ID/execute``), and
#: for a transfer's melt and redeem (``POST /transfer/ID/execute``).
MAX_EXECUTE_WAIT = 120.0
#: The events that end a mint operation, a melt, and a transfer.
MINT_ENDS = frozenset({"mint:finalized", "mint:rolled-back"})
MELT_ENDS = frozenset({"melt:finalized", "melt:rolled-back"})
TRANSFER_ENDS = frozenset({"transfer:finalized", "transfer:rolled-back"})


@dataclass(frozen=True, slots=True)
class Request:
    """One control request as an endpoint sees it (the server parsed the HTTP)."""

    query: dict[str, str]      # single-valued query parameters
    body: dict[str, object]    # the JSON object ({} without a body)
    params: dict[str, str]     # path parameters, unquoted
    #: the ``Idempotency-Key`` header (checked by the ``Coco`` call it is passed to)
    idempotency_key: str | None = None


Handler = Callable[[Request], object]


class ControlApi:
    """The endpoints of one open wallet; ``route`` finds the one for a request."""

    def __init__(self, coco: Coco, data_dir: Path, events: EventHub,
                 request_stop: Callable[[], None], *,
                 payments: Mapping[str, object] | None = None) -> None:
        self.coco = coco
        #: the payments listener (:func:`~.payments.describe`), if the daemon runs one
        self.payments = payments
        self.data_dir = data_dir
        self.events = events
        self._request_stop = request_stop
        self.started_at = time.time()
        self._openapi: dict[str, object] | None = None
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            (m, re.compile(p + r"\Z"), h) for m, p, h in (
                ("GET", r"/status", self.status),
                ("GET", r"/balance", self.balance),
                ("GET", r"/balance/total", self.total_balance),
                ("GET", r"/balance/units", self.unit_balances),
                ("GET", r"/mints", self.mints),
                ("POST", r"/mints", self.add_mint),
                ("GET", r"/mints/info", self.mint_info),
                ("POST", r"/mint/quote", self.mint_quote),
                ("POST", r"/mint/wait", self.mint_wait),
                ("POST", r"/send/prepare", self.send_prepare),
                ("GET", r"/send/pending", self.send_pending),
                ("GET", r"/send/(?P<op_id>[^/]+)", self.send_show),
                ("POST", r"/send/(?P<op_id>[^/]+)/execute", self.send_execute),
                ("POST", r"/send/(?P<op_id>[^/]+)/rollback", self.send_rollback),
                ("POST", r"/melt/prepare", self.melt_prepare),
                ("POST", r"/melt/wait", self.melt_wait),
                ("GET", r"/melt/pending", self.melt_pending),
                ("GET", r"/melt/(?P<op_id>[^/]+)", self.melt_show),
                ("POST", r"/melt/(?P<op_id>[^/]+)/execute", self.melt_execute),
                ("POST", r"/melt/(?P<op_id>[^/]+)/rollback", self.melt_rollback),
                ("POST", r"/transfer/prepare", self.transfer_prepare),
                ("POST", r"/transfer/wait", self.transfer_wait),
                ("GET", r"/transfer/pending", self.transfer_pending),
                ("GET", r"/transfer/(?P<op_id>[^/]+)", self.transfer_show),
                ("POST", r"/transfer/(?P<op_id>[^/]+)/execute", self.transfer_execute),
                ("POST", r"/transfer/(?P<op_id>[^/]+)/rollback", self.transfer_rollback),
                ("POST", r"/receive", self.receive),
                ("GET", r"/keys", self.keys_list),
                ("POST", r"/keys", self.keys_new),
                ("POST", r"/receive/prepare", self.receive_prepare),
                ("POST", r"/receive/(?P<op_id>[^/]+)/execute", self.receive_execute),
                ("POST", r"/receive/(?P<op_id>[^/]+)/rollback", self.receive_rollback),
                ("POST", r"/request/new", self.request_new),
                ("GET", r"/request/list", self.request_list),
                ("GET", r"/requests", self.request_list),
                ("POST", r"/request/claim", self.request_claim),
                ("POST", r"/request/decode", self.request_decode),
                ("POST", r"/request/pay", self.request_pay),
                ("GET", r"/request/(?P<op_id>[^/]+)", self.request_show),
                ("POST", r"/request/(?P<op_id>[^/]+)/cancel", self.request_cancel),
                ("GET", r"/history", self.history),
                ("GET", r"/audit", self.audit),
                ("POST", r"/audit/fix", self.audit_fix),
                ("POST", r"/consolidate", self.consolidate),
                ("GET", r"/operations", self.operations),
                ("GET", r"/openapi\.json", self.openapi),
                ("GET", r"/webhooks", self.webhooks),
                ("POST", r"/stop", self.stop),
            )]

    def route(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        """The endpoint and its path parameters; None for an unknown path."""
        allowed = False
        for m, pattern, handler in self.routes:
            match = pattern.match(path)
            if match:
                if m == method:
                    return handler, {k: _op_id(unquote(v)) for k, v in match.groupdict().items()}
                allowed = True
        if allowed:  # a served method, on the wrong path: the caller's mistake (400)
            raise BadRequestError(f"{method} is not allowed on {path}")
        return None

    # --- the daemon and its mints ---------------------------------------------------

    @endpoint("daemon, mints, balances, operations not at rest")
    def status(self, req: Request) -> object:
        pending = [jsonable(e) for e in self.coco.history.get_history()
                   if not OpState(e.state).terminal]
        return {
            "daemon": {"pid": os.getpid(), "data_dir": str(self.data_dir),
                       "socket": str(socket_path(self.data_dir)), "version": _version(),
                       "started_at": int(self.started_at * 1000),
                       "uptime_s": round(time.time() - self.started_at, 1)},
            "payments": self.payments,
            "mints": jsonable(self.coco.mints.list()),
            "balances": jsonable(self.coco.balance()),
            "pending": pending,
        }

    @endpoint("per mint: spendable, reserved, pending, total", query=BalanceQuery,
              answer=dict[str, Balance])
    def balance(self, req: Request) -> object:
        query = query_of(BalanceQuery, req.query)
        mint = query.mint
        balances = self.coco.balance().unit(query.unit)
        if mint:
            url = normalize_mint_url(mint)
            if url not in balances:
                raise NotFoundError(f"unknown mint {mint}; add it first: coco mint add {mint}")
            return jsonable({url: balances[url]})
        return jsonable(balances)

    @endpoint("per mint and unit, and per unit over every mint", query=UnitBalancesQuery,
              answer=UnitBalances)
    def unit_balances(self, req: Request) -> object:
        mint = query_of(UnitBalancesQuery, req.query).mint
        balances = self.coco.balance()
        per_mint = balances.units
        if mint:
            url = normalize_mint_url(mint)
            if url not in per_mint:
                raise NotFoundError(f"unknown mint {mint}; add it first: coco mint add {mint}")
            per_mint = {url: per_mint[url]}
            totals = per_mint[url]
        else:
            totals = balances.totals()
        return {"mints": jsonable(per_mint), "totals": jsonable(totals)}

    @endpoint("the balance summed over every mint", answer=Balance)
    def total_balance(self, req: Request) -> object:
        return jsonable(self.coco.total_balance())

    @endpoint("trusted mints", answer=list[JsonObject])
    def mints(self, req: Request) -> object:
        return jsonable(self.coco.mints.list())

    @endpoint("trust a mint (and restore from it, NUT-09)", body=AddMint)
    def add_mint(self, req: Request) -> object:
        body = body_of(AddMint, req.body)
        rec = self.coco.mints.add(body.url)
        out: dict[str, object] = {"mint": jsonable(rec)}
        if body.restore:
            out["restored"] = jsonable(self.coco.restore(rec.url))
        return out

    @endpoint("the mint's NUT-06 info", query=MintInfoQuery)
    def mint_info(self, req: Request) -> object:
        url = query_of(MintInfoQuery, req.query).url
        info = self.coco.mints.info(url)
        return {"url": normalize_mint_url(url), "name": info.name, "version": info.version,
                "pubkey": info.pubkey, "description": info.raw.get("description"),
                "nuts": sorted(info.nuts, key=lambda n: int(n) if n.isdigit() else 1 << 30),
                "info": info.raw}

    # --- minting --------------------------------------------------------------------

    @endpoint("a bolt11 quote; the wallet mints it once paid", body=MintQuote,
              idempotency_key=True)
    def mint_quote(self, req: Request) -> object:
        body = body_of(MintQuote, req.body)
        quote = self.coco.mint.create_quote(body.mint_url, body.amount, unit=body.unit,
                                            idempotency_key=req.idempotency_key)
        op = self.coco.mint.open_operation_for(quote.quote)  # the Watcher has its quote
        return {"quote": quote.quote, "request": quote.request, "amount": quote.amount,
                "unit": quote.unit, "state": quote.state.value, "expiry": quote.expiry,
                "operation_id": op.id if op else None}

    @endpoint("long poll (at most 30 s) until that mint operation is over", body=Wait)
    def mint_wait(self, req: Request) -> object:
        """Wait (at most ``timeout`` s, capped) until the mint operation is over.

        The Watcher mints a paid quote on its own; this only waits for the event
        that says so. A shutdown ends the wait at once (the hub closes).
        """
        body = body_of(Wait, req.body)
        op_id = _op_id(body.operation_id)
        timeout = min(max(body.timeout, 0.0), MAX_WAIT)
        with self.events.follow() as (_, feed):  # before the nudge: its end is not missed
            op = self._mint_op(op_id)
            if not op.state.terminal and not self._nudge(op).state.terminal:
                wait_for_end(feed, op.id, MINT_ENDS, timeout)
            op = self._mint_op(op_id)
        return {"done": op.state.terminal, "operation": jsonable(op)}

    def _mint_op(self, op_id: str) -> Operation:
        return _known(self.coco.mint.get_operation(op_id), "mint", op_id)

    def _nudge(self, op: Operation) -> Operation:
        """Check the quote once, mint it if paid, and make sure the Watcher has it.

        A zero-timeout ``redeem`` does exactly that and does not wait. A mint that
        does not answer now is not an error of this request: the Watcher (or the
        next wait) tries again.
        """
        if op.quote_id is None:
            return op
        try:
            return self.coco.mint.redeem(op.quote_id, timeout=0)
        except ActorTimeoutError:
            return op  # not paid yet; watched from now on
        except NotFoundError:
            return self._mint_op(op.id)  # over meanwhile
        except MintError as exc:
            log.warning("mint %s: quote not checked now: %s", op.id, exc)
            return op

    # --- sending and receiving ------------------------------------------------------

    @endpoint("reserve proofs for a send (locked to p2pk keys: NUT-11); the operation",
              body=SendPrepare, idempotency_key=True)
    def send_prepare(self, req: Request) -> object:
        body = body_of(SendPrepare, req.body)
        return jsonable(self.coco.send.prepare_send(
            body.mint_url, body.amount, p2pk=_keys(body.p2pk),
            n_sigs=1 if body.n_sigs is None else body.n_sigs,
            locktime=body.locktime, refund=_keys(body.refund), unit=body.unit,
            idempotency_key=req.idempotency_key))

    # --- keys ------------------------------------------------------------------------

    @endpoint("the wallet's P2PK keys handed out", answer=list[JsonObject])
    def keys_list(self, req: Request) -> object:
        return jsonable(self.coco.keys.list())

    @endpoint("a fresh P2PK key {index, public, created_at}", body=NoBody)
    def keys_new(self, req: Request) -> object:
        public = self.coco.keys.new()
        return jsonable(next(k for k in self.coco.keys.list() if k.public == public))

    @endpoint("sends not at rest", answer=list[JsonObject])
    def send_pending(self, req: Request) -> object:
        ops = sorted(self.coco.send.get_pending_operations(), key=lambda o: (o.created_at, o.id))
        return jsonable(ops)

    @endpoint("one send (with its token while pending)")
    def send_show(self, req: Request) -> object:
        op_id = req.params["op_id"]
        op = self.coco.send.get_operation(op_id)
        if op is None:
            raise NotFoundError(f"unknown send operation {op_id}")
        return op_view(op, token=op.state == OpState.PENDING)

    @endpoint("execute a prepared send: {operation, token}", body=NoBody,
              idempotency_key=True)
    def send_execute(self, req: Request) -> object:
        op, token = self.coco.send.execute_prepared_send(
            req.params["op_id"], idempotency_key=req.idempotency_key)
        return {"operation": jsonable(op), "token": token}

    @endpoint("roll a send back (reclaim its proofs); the operation", body=NoBody,
              idempotency_key=True)
    def send_rollback(self, req: Request) -> object:
        return jsonable(self.coco.send.rollback(req.params["op_id"],
                                                  idempotency_key=req.idempotency_key))

    @endpoint("receive a token: the receive operation; with into (a mint URL), the"
              " transfer moving its value there, executed", body=Receive, idempotency_key=True)
    def receive(self, req: Request) -> object:
        body = body_of(Receive, req.body)
        token = body.token.strip()
        if body.into is None:
            return jsonable(self.coco.receive(token, idempotency_key=req.idempotency_key))
        return jsonable(self.coco.receive(token, into=body.into,
                                          timeout=MAX_EXECUTE_WAIT,
                                          idempotency_key=req.idempotency_key))

    @endpoint("the transfer moving a token's value into a mint, prepared (its fees);"
              " nothing spent", body=ReceivePrepare, idempotency_key=True)
    def receive_prepare(self, req: Request) -> object:
        body = body_of(ReceivePrepare, req.body)
        return jsonable(self.coco.receive.prepare(body.token.strip(),
                                                  into=body.into,
                                                  idempotency_key=req.idempotency_key))

    @endpoint("execute a prepared receive-into (timeout at most 120 s): the transfer",
              body=Execute, idempotency_key=True)
    def receive_execute(self, req: Request) -> object:
        timeout = _execute_timeout(req.body, MAX_EXECUTE_WAIT)
        return jsonable(self.coco.receive.execute(req.params["op_id"], timeout,
                                                  idempotency_key=req.idempotency_key))

    @endpoint("forget a prepared receive-into (the transfer)", body=NoBody,
              idempotency_key=True)
    def receive_rollback(self, req: Request) -> object:
        return jsonable(self.coco.receive.rollback(req.params["op_id"],
                                                  idempotency_key=req.idempotency_key))

    # --- paying invoices (melts) ------------------------------------------------------

    @endpoint("a melt quote for an invoice, inputs held; the operation", body=MeltPrepare,
              idempotency_key=True)
    def melt_prepare(self, req: Request) -> object:
        body = body_of(MeltPrepare, req.body)
        return jsonable(self.coco.melt.prepare_melt(body.mint_url,
                                                    body.invoice,
                                                    swap=body.swap, unit=body.unit,
                                                    idempotency_key=req.idempotency_key))

    @endpoint("melts not at rest", answer=list[JsonObject])
    def melt_pending(self, req: Request) -> object:
        ops = sorted(self.coco.melt.get_pending_operations(), key=lambda o: (o.created_at, o.id))
        return jsonable(ops)

    @endpoint("one melt")
    def melt_show(self, req: Request) -> object:
        return jsonable(self._melt_op(req.params["op_id"]))

    @endpoint("pay (the mint may take timeout s, at most 120): the operation, completed"
              " or pending", body=Execute, idempotency_key=True)
    def melt_execute(self, req: Request) -> object:
        """Pay; the mint may hold the answer up to ``timeout`` s (capped). A payment still
        in flight then comes back ``pending``: the Watcher follows it to its end."""
        timeout = _execute_timeout(req.body, 60.0)
        return jsonable(self.coco.melt.execute_prepared_melt(
            req.params["op_id"], timeout, idempotency_key=req.idempotency_key))

    @endpoint("roll a melt back; the operation", body=NoBody, idempotency_key=True)
    def melt_rollback(self, req: Request) -> object:
        return jsonable(self.coco.melt.rollback(req.params["op_id"],
                                                  idempotency_key=req.idempotency_key))

    @endpoint("long poll (at most 30 s) until that melt is over", body=Wait)
    def melt_wait(self, req: Request) -> object:
        """Wait (at most ``timeout`` s, capped) until the melt is completed or rolled back.

        The Watcher settles a pending melt on its own; this only waits for the event
        that says so. A shutdown ends the wait at once (the hub closes).
        """
        return self._wait_end(req, self._melt_op, MELT_ENDS)

    def _wait_end(self, req: Request, lookup: Callable[[str], Operation],
                  ends: frozenset[str]) -> object:
        """``{done, operation}`` once the operation in the body ended (one of the ``ends``
        events), or once ``timeout`` (capped) has passed."""
        body = body_of(Wait, req.body)
        op_id = _op_id(body.operation_id)
        timeout = min(max(body.timeout, 0.0), MAX_WAIT)
        with self.events.follow() as (_, feed):  # before the look: its end is not missed
            if not lookup(op_id).state.terminal:
                wait_for_end(feed, op_id, ends, timeout)
            op = lookup(op_id)
        return {"done": op.state.terminal, "operation": jsonable(op)}

    def _melt_op(self, op_id: str) -> Operation:
        return _known(self.coco.melt.get_operation(op_id), "melt", op_id)

    # --- transfers between mints --------------------------------------------------------

    @endpoint("a mint quote at to_mint_url and the melt paying it at mint_url; the"
              " operation", body=TransferPrepare, idempotency_key=True)
    def transfer_prepare(self, req: Request) -> object:
        body = body_of(TransferPrepare, req.body)
        return jsonable(self.coco.transfer.prepare(body.mint_url,
                                                   body.to_mint_url,
                                                   body.amount,
                                                   idempotency_key=req.idempotency_key))

    @endpoint("transfers not at rest", answer=list[JsonObject])
    def transfer_pending(self, req: Request) -> object:
        ops = sorted(self.coco.transfer.get_pending_operations(),
                     key=lambda o: (o.created_at, o.id))
        return jsonable(ops)

    @endpoint("one transfer")
    def transfer_show(self, req: Request) -> object:
        return jsonable(self._transfer_op(req.params["op_id"]))

    @endpoint("melt, then redeem (within timeout s, at most 120): the operation,"
              " completed, pending or rolled_back", body=Execute, idempotency_key=True)
    def transfer_execute(self, req: Request) -> object:
        """Melt, then redeem; within ``timeout`` s (capped) it comes back completed,
        rolled_back, or ``pending``: the Watcher then follows it to its end."""
        timeout = _execute_timeout(req.body, MAX_EXECUTE_WAIT)
        return jsonable(self.coco.transfer.execute(req.params["op_id"], timeout,
                                                   idempotency_key=req.idempotency_key))

    @endpoint("roll a transfer back; the operation", body=NoBody, idempotency_key=True)
    def transfer_rollback(self, req: Request) -> object:
        return jsonable(self.coco.transfer.rollback(req.params["op_id"],
                                                  idempotency_key=req.idempotency_key))

    @endpoint("long poll (at most 30 s) until that transfer is over", body=Wait)
    def transfer_wait(self, req: Request) -> object:
        """Wait (at most ``timeout`` s, capped) until the transfer is completed or rolled
        back; as ``/melt/wait``, this only follows the events."""
        return self._wait_end(req, self._transfer_op, TRANSFER_ENDS)

    def _transfer_op(self, op_id: str) -> Operation:
        return _known(self.coco.transfer.get_operation(op_id), "transfer", op_id)

    # --- payment requests (NUT-18, NUT-26) ---------------------------------------------

    @endpoint("a payment request (NUT-18 creqA, NUT-26 creqB); with --payments-listen its"
              " transport is the listener's URL", body=RequestNew, idempotency_key=True)
    def request_new(self, req: Request) -> object:
        body = body_of(RequestNew, req.body)
        url = self.payments.get("url") if self.payments else None
        return jsonable(self.coco.requests.create(
            amount=body.amount, unit=body.unit, mints=list(body.mints),
            description=body.description, single_use=body.single_use, p2pk=body.p2pk,
            transport_url=url if isinstance(url, str) else None,
            idempotency_key=req.idempotency_key))

    @endpoint("every payment request", answer=list[JsonObject])
    def request_list(self, req: Request) -> object:
        return jsonable(self.coco.requests.list())

    @endpoint("one payment request")
    def request_show(self, req: Request) -> object:
        return jsonable(self.coco.requests.get(req.params["op_id"]))

    @endpoint("cancel an open payment request", body=NoBody)
    def request_cancel(self, req: Request) -> object:
        return jsonable(self.coco.requests.cancel(req.params["op_id"]))

    @endpoint("claim a payment payload received by other means (in-band)",
              body=RequestClaim)
    def request_claim(self, req: Request) -> object:
        return self.claim_payment(None, body_of(RequestClaim, req.body).payload)

    def claim_payment(self, request_id: str | None, body: Mapping[str, object]) -> object:
        """One payment payload -> ``coco.requests.claim`` -> its answer (request id, amount
        received, operation id): the same answer for the same payload again.

        ``request_id``: the request the payer POSTed to (the payments listener's path):
        unknown, a 404; a payload naming another one is refused (400), one naming none
        is taken as for it.
        Threads: a control request's, or a payments listener connection's.
        """
        payload = decode_payload(dict(body))
        if request_id is not None:
            self.coco.requests.get(request_id)  # the path names no request of ours: 404
            if payload.id is None:
                payload = dataclasses.replace(payload, id=request_id)
            elif payload.id != request_id:
                raise BadRequestError(f"the payload is for request {payload.id[:128]!r},"
                                      f" not {request_id!r}")
        return claim_view(self.coco.requests.claim(payload))

    @endpoint("what a creqA/creqB asks for (nothing is paid)", body=RequestDecode)
    def request_decode(self, req: Request) -> object:
        return jsonable(decode_request(body_of(RequestDecode, req.body).creq.strip()))

    @endpoint("pay a payment request: POSTed to its transport, or the payload returned"
              " for in-band delivery", body=RequestPay, idempotency_key=True)
    def request_pay(self, req: Request) -> object:
        body = body_of(RequestPay, req.body)
        return jsonable(self.coco.requests.pay(
            body.creq.strip(),
            mint_url=body.mint_url,
            amount=body.amount, idempotency_key=req.idempotency_key))

    @endpoint("every operation, newest first: the bare list, or with paged=1 (or a"
              " cursor) a page {items, next_cursor}", query=HistoryQuery,
              answer=list[HistoryEntry] | HistoryPage)
    def history(self, req: Request) -> object:
        q = query_of(HistoryQuery, req.query)
        page = self.coco.history(limit=q.limit, cursor=q.cursor, mint_url=q.mint,
                                 kind=q.kind, state=q.state)
        if q.paged or q.cursor is not None:
            return jsonable(page)
        return jsonable(page.items)

    # --- the solvency report ------------------------------------------------------------

    @endpoint("the solvency report: the wallet's proofs checked at its mints (NUT-07);"
              " changes nothing", query=AuditQuery)
    def audit(self, req: Request) -> object:
        return audit_view(self.coco.audit(query_of(AuditQuery, req.query).mint))

    @endpoint("the solvency report, removing the ready proofs the mint says are spent and"
              " no operation holds", body=AuditFix)
    def audit_fix(self, req: Request) -> object:
        return audit_view(self.coco.audit(body_of(AuditFix, req.body).mint_url, fix=True))

    # --- consolidation (issue 13) ---------------------------------------------------------

    @endpoint("swap a mint's proofs (inactive keysets first, then the smallest; at most"
              " 1000) into the fewest: {mint_url, skipped, operation, inputs, outputs,"
              " input_amount, amount, fee}; skipped (nothing changed) when there is nothing"
              " to gain or the fee is above max_fee_fraction", body=Consolidate,
              idempotency_key=True)
    def consolidate(self, req: Request) -> object:
        body = body_of(Consolidate, req.body)
        return jsonable(self.coco.consolidate(body.mint_url,
                                              max_fee_fraction=body.max_fee_fraction,
                                              idempotency_key=req.idempotency_key))

    @endpoint("the operations not at rest (every kind), newest first: a page"
              " {items, next_cursor}", query=OperationsQuery, answer=OperationsPage)
    def operations(self, req: Request) -> object:
        q = query_of(OperationsQuery, req.query)
        return jsonable(self.coco.history.active(limit=q.limit, cursor=q.cursor,
                                                 mint_url=q.mint, kind=q.kind, state=q.state))

    @endpoint("this document: OpenAPI 3.1, generated from the routes and request types")
    def openapi(self, req: Request) -> object:
        if self._openapi is None:
            self._openapi = openapi_document(self.routes, version=_version())
        return self._openapi

    @endpoint("per webhook: url, last delivered seq, pending, attempts of the current"
              " event, last error, next retry (never its secret)")
    def webhooks(self, req: Request) -> object:
        return jsonable(self.coco.webhooks.status())

    @endpoint("graceful shutdown, as SIGTERM", body=NoBody)
    def stop(self, req: Request) -> object:
        self._request_stop()
        return {"stopping": True, "pid": os.getpid()}


# --- what the request types do not say ---------------------------------------------------


#: Longest operation id in a path (ids are 32 hex digits; a store key holds 511 bytes).
MAX_OP_ID = 128


def _op_id(value: str) -> str:
    """A path parameter: bounded, so a hostile one never reaches the store as a bad key."""
    if not value or len(value) > MAX_OP_ID or not value.isprintable():
        raise NotFoundError(f"no operation {value[:MAX_OP_ID]!r}")
    return value


def _keys(value: str | list[str] | None) -> list[str] | None:
    """A public key or a list of them, as the list the facade takes (it checks the keys)."""
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _execute_timeout(body: Mapping[str, object], default: float) -> float:
    """An execute's ``timeout`` (s), capped at :data:`MAX_EXECUTE_WAIT`; what a non-positive
    one means is the wallet's to say (it refuses it)."""
    given = body_of(Execute, body).timeout
    timeout = default if isinstance(given, UnsetType) else given
    return min(timeout, MAX_EXECUTE_WAIT) if timeout > 0 else timeout


def _version() -> str:
    try:
        return metadata.version("coco-actors")
    except metadata.PackageNotFoundError:
        return "unknown"


def _known(op: Operation | None, what: str, op_id: str) -> Operation:
    """The operation a lookup found, else the 404 the caller sees."""
    if op is None:
        raise NotFoundError(f"unknown {what} operation {op_id}")
    return op
