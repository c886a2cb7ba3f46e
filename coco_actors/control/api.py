"""ControlApi: the daemon's endpoints, each request -> one ``Coco`` call -> a JSON view.

Endpoints (HTTP with JSON bodies, served by :mod:`coco_actors.control.server`)::

    GET  /status                        daemon, mints, balances, operations not at rest
    GET  /balance[?mint=URL]            per mint: spendable, reserved, pending, total
    GET  /balance/total                 the same, summed over every mint
    GET  /mints                         trusted mints
    POST /mints          {url, restore} trust a mint (and restore from it, NUT-09)
    GET  /mints/info?url=URL            the mint's NUT-06 info
    POST /mint/quote     {mint_url, amount}        a bolt11 quote; the wallet mints it once paid
    POST /mint/wait      {operation_id, timeout}   long poll (at most 30 s) until that mint is over
    POST /send/prepare   {mint_url, amount, p2pk?, n_sigs?, locktime?, refund?}
                                        reserve proofs (locked to p2pk keys: NUT-11); the operation
    GET  /keys                          the wallet's P2PK keys handed out
    POST /keys                          a fresh P2PK key {index, public, created_at}
    GET  /send/pending                  sends not at rest
    GET  /send/ID                       one send (with its token while pending)
    POST /send/ID/execute               {operation, token}
    POST /send/ID/rollback              the operation
    POST /melt/prepare   {mint_url, invoice, swap?}  a melt quote, inputs held; the operation
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
    GET  /history[?limit=N]             newest first
    GET  /webhooks                      per webhook: url, last delivered seq, pending, attempts
                                        of the current event, last error, next retry (no secret)
    GET  /events[?follow=1]             newline-delimited JSON: recent events, then live ones
    GET  /events?after=SEQ[&follow=1]   every stored event with seq > SEQ in order (the
                                        outbox), then live ones: none twice, none lost; each
                                        line has its seq; headers Coco-Events-Oldest (oldest
                                        kept seq), Coco-Events-Pruned (N after SEQ pruned);
                                        a bad SEQ is a 400
    POST /stop                          graceful shutdown, as SIGTERM

Input is checked here for its JSON *shape* only (types, required fields:
:class:`BadRequestError`); what a value means (a positive amount, a known mint, a
valid token) is checked once, by the ``Coco`` facade. ``/events`` is the server's
own (a stream, not a JSON answer).

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

import httpx

from coco_actors.coco import Coco
from coco_actors.control.errors import BadRequestError
from coco_actors.control.events import EventHub, wait_for_end
from coco_actors.control.paths import socket_path
from coco_actors.control.views import claim_view, jsonable, op_view
from coco_actors.errors import ActorTimeoutError, MintError, NotFoundError
from coco_actors.mint_client import normalize_mint_url
from coco_actors.payreq import decode_payload, decode_request
from coco_actors.records import Operation, OpState

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
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            (m, re.compile(p + r"\Z"), h) for m, p, h in (
                ("GET", r"/status", self.status),
                ("GET", r"/balance", self.balance),
                ("GET", r"/balance/total", self.total_balance),
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

    def balance(self, req: Request) -> object:
        balances = self.coco.balance()
        mint = req.query.get("mint")
        if mint:
            url = normalize_mint_url(_url(req.query, "mint"))
            if url not in balances:
                raise NotFoundError(f"unknown mint {mint}; add it first: coco mint add {mint}")
            return jsonable({url: balances[url]})
        return jsonable(balances)

    def total_balance(self, req: Request) -> object:
        return jsonable(self.coco.total_balance())

    def mints(self, req: Request) -> object:
        return jsonable(self.coco.mints.list())

    def add_mint(self, req: Request) -> object:
        url = _url(req.body, "url")
        restore = _flag(req.body, "restore")
        rec = self.coco.mints.add(url)
        out: dict[str, object] = {"mint": jsonable(rec)}
        if restore:
            out["restored"] = jsonable(self.coco.restore(rec.url))
        return out

    def mint_info(self, req: Request) -> object:
        url = _url(req.query, "url")
        info = self.coco.mints.info(url)
        return {"url": normalize_mint_url(url), "name": info.name, "version": info.version,
                "pubkey": info.pubkey, "description": info.raw.get("description"),
                "nuts": sorted(info.nuts, key=lambda n: int(n) if n.isdigit() else 1 << 30),
                "info": info.raw}

    # --- minting --------------------------------------------------------------------

    def mint_quote(self, req: Request) -> object:
        quote = self.coco.mint.create_quote(_url(req.body, "mint_url"),
                                            _int(req.body, "amount"))
        op = self.coco.mint.open_operation_for(quote.quote)  # the Watcher has its quote
        return {"quote": quote.quote, "request": quote.request, "amount": quote.amount,
                "unit": quote.unit, "state": quote.state.value, "expiry": quote.expiry,
                "operation_id": op.id if op else None}

    def mint_wait(self, req: Request) -> object:
        """Wait (at most ``timeout`` s, capped) until the mint operation is over.

        The Watcher mints a paid quote on its own; this only waits for the event
        that says so. A shutdown ends the wait at once (the hub closes).
        """
        op_id = _op_id(_str(req.body, "operation_id"))
        timeout = min(max(_number(req.body, "timeout", 1.0), 0.0), MAX_WAIT)
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

    def send_prepare(self, req: Request) -> object:
        body = req.body
        n_sigs = _optional_int(body, "n_sigs")
        return jsonable(self.coco.send.prepare_send(
            _url(body, "mint_url"), _int(body, "amount"), p2pk=_keys(body, "p2pk"),
            n_sigs=1 if n_sigs is None else n_sigs,
            locktime=_optional_int(body, "locktime"), refund=_keys(body, "refund")))

    # --- keys ------------------------------------------------------------------------

    def keys_list(self, req: Request) -> object:
        return jsonable(self.coco.keys.list())

    def keys_new(self, req: Request) -> object:
        public = self.coco.keys.new()
        return jsonable(next(k for k in self.coco.keys.list() if k.public == public))

    def send_pending(self, req: Request) -> object:
        ops = sorted(self.coco.send.get_pending_operations(), key=lambda o: (o.created_at, o.id))
        return jsonable(ops)

    def send_show(self, req: Request) -> object:
        op_id = req.params["op_id"]
        op = self.coco.send.get_operation(op_id)
        if op is None:
            raise NotFoundError(f"unknown send operation {op_id}")
        return op_view(op, token=op.state == OpState.PENDING)

    def send_execute(self, req: Request) -> object:
        op, token = self.coco.send.execute_prepared_send(req.params["op_id"])
        return {"operation": jsonable(op), "token": token}

    def send_rollback(self, req: Request) -> object:
        return jsonable(self.coco.send.rollback(req.params["op_id"]))

    def receive(self, req: Request) -> object:
        token = _str(req.body, "token").strip()
        if req.body.get("into") is None:
            return jsonable(self.coco.receive(token))
        return jsonable(self.coco.receive(token, into=_url(req.body, "into"),
                                          timeout=MAX_EXECUTE_WAIT))

    def receive_prepare(self, req: Request) -> object:
        return jsonable(self.coco.receive.prepare(_str(req.body, "token").strip(),
                                                  into=_url(req.body, "into")))

    def receive_execute(self, req: Request) -> object:
        timeout = _execute_timeout(req.body, MAX_EXECUTE_WAIT)
        return jsonable(self.coco.receive.execute(req.params["op_id"], timeout))

    def receive_rollback(self, req: Request) -> object:
        return jsonable(self.coco.receive.rollback(req.params["op_id"]))

    # --- paying invoices (melts) ------------------------------------------------------

    def melt_prepare(self, req: Request) -> object:
        return jsonable(self.coco.melt.prepare_melt(_url(req.body, "mint_url"),
                                                    _str(req.body, "invoice"),
                                                    swap=_optional_flag(req.body, "swap")))

    def melt_pending(self, req: Request) -> object:
        ops = sorted(self.coco.melt.get_pending_operations(), key=lambda o: (o.created_at, o.id))
        return jsonable(ops)

    def melt_show(self, req: Request) -> object:
        return jsonable(self._melt_op(req.params["op_id"]))

    def melt_execute(self, req: Request) -> object:
        """Pay; the mint may hold the answer up to ``timeout`` s (capped). A payment still
        in flight then comes back ``pending``: the Watcher follows it to its end."""
        timeout = _execute_timeout(req.body, 60.0)
        return jsonable(self.coco.melt.execute_prepared_melt(req.params["op_id"], timeout))

    def melt_rollback(self, req: Request) -> object:
        return jsonable(self.coco.melt.rollback(req.params["op_id"]))

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
        op_id = _op_id(_str(req.body, "operation_id"))
        timeout = min(max(_number(req.body, "timeout", 1.0), 0.0), MAX_WAIT)
        with self.events.follow() as (_, feed):  # before the look: its end is not missed
            if not lookup(op_id).state.terminal:
                wait_for_end(feed, op_id, ends, timeout)
            op = lookup(op_id)
        return {"done": op.state.terminal, "operation": jsonable(op)}

    def _melt_op(self, op_id: str) -> Operation:
        return _known(self.coco.melt.get_operation(op_id), "melt", op_id)

    # --- transfers between mints --------------------------------------------------------

    def transfer_prepare(self, req: Request) -> object:
        return jsonable(self.coco.transfer.prepare(_url(req.body, "mint_url"),
                                                   _url(req.body, "to_mint_url"),
                                                   _int(req.body, "amount")))

    def transfer_pending(self, req: Request) -> object:
        ops = sorted(self.coco.transfer.get_pending_operations(),
                     key=lambda o: (o.created_at, o.id))
        return jsonable(ops)

    def transfer_show(self, req: Request) -> object:
        return jsonable(self._transfer_op(req.params["op_id"]))

    def transfer_execute(self, req: Request) -> object:
        """Melt, then redeem; within ``timeout`` s (capped) it comes back completed,
        rolled_back, or ``pending``: the Watcher then follows it to its end."""
        timeout = _execute_timeout(req.body, MAX_EXECUTE_WAIT)
        return jsonable(self.coco.transfer.execute(req.params["op_id"], timeout))

    def transfer_rollback(self, req: Request) -> object:
        return jsonable(self.coco.transfer.rollback(req.params["op_id"]))

    def transfer_wait(self, req: Request) -> object:
        """Wait (at most ``timeout`` s, capped) until the transfer is completed or rolled
        back; as ``/melt/wait``, this only follows the events."""
        return self._wait_end(req, self._transfer_op, TRANSFER_ENDS)

    def _transfer_op(self, op_id: str) -> Operation:
        return _known(self.coco.transfer.get_operation(op_id), "transfer", op_id)

    # --- payment requests (NUT-18, NUT-26) ---------------------------------------------

    def request_new(self, req: Request) -> object:
        body = req.body
        mints = body.get("mints")
        if not isinstance(mints, list) or not all(isinstance(m, str) for m in mints):
            raise BadRequestError("'mints' must be a list of mint URLs")
        unit = body.get("unit", "sat")
        description = body.get("description")
        if not isinstance(unit, str) or not isinstance(description, str | None):
            raise BadRequestError("'unit' and 'description' must be strings")
        single_use = body.get("single_use", True)
        if not isinstance(single_use, bool):
            raise BadRequestError(f"'single_use' must be true or false, got {single_use!r}")
        url = self.payments.get("url") if self.payments else None
        return jsonable(self.coco.requests.create(
            amount=_optional_int(body, "amount"), unit=unit, mints=list(mints),
            description=description, single_use=single_use, p2pk=_flag(body, "p2pk"),
            transport_url=url if isinstance(url, str) else None))

    def request_list(self, req: Request) -> object:
        return jsonable(self.coco.requests.list())

    def request_show(self, req: Request) -> object:
        return jsonable(self.coco.requests.get(req.params["op_id"]))

    def request_cancel(self, req: Request) -> object:
        return jsonable(self.coco.requests.cancel(req.params["op_id"]))

    def request_claim(self, req: Request) -> object:
        payload = _present(req.body, "payload")
        if not isinstance(payload, dict):
            raise BadRequestError("'payload' must be a JSON object (a NUT-18 payment payload)")
        return self.claim_payment(None, payload)

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

    def request_decode(self, req: Request) -> object:
        return jsonable(decode_request(_str(req.body, "creq").strip()))

    def request_pay(self, req: Request) -> object:
        mint_url = req.body.get("mint_url")
        return jsonable(self.coco.requests.pay(
            _str(req.body, "creq").strip(),
            mint_url=None if mint_url is None else _url(req.body, "mint_url"),
            amount=_optional_int(req.body, "amount")))

    def history(self, req: Request) -> object:
        limit = req.query.get("limit")
        n = None
        if limit is not None:
            if not re.fullmatch(r"[0-9]{1,9}", limit, re.ASCII) or int(limit) < 1:
                raise BadRequestError(f"limit must be a positive integer, got {limit!r}")
            n = int(limit)
        return jsonable(self.coco.history.get_history(n))

    def webhooks(self, req: Request) -> object:
        return jsonable(self.coco.webhooks.status())

    def stop(self, req: Request) -> object:
        self._request_stop()
        return {"stopping": True, "pid": os.getpid()}


# --- the shape of the input: present, and of the right JSON type ---------------------


#: Longest operation id in a path (ids are 32 hex digits; a store key holds 511 bytes).
MAX_OP_ID = 128


def _op_id(value: str) -> str:
    """A path parameter: bounded, so a hostile one never reaches the store as a bad key."""
    if not value or len(value) > MAX_OP_ID or not value.isprintable():
        raise NotFoundError(f"no operation {value[:MAX_OP_ID]!r}")
    return value


def _present(source: Mapping[str, object], name: str) -> object:
    value = source.get(name)
    if value is None:
        raise BadRequestError(f"missing {name!r}")
    return value


def _str(source: Mapping[str, object], name: str) -> str:
    value = _present(source, name)
    if not isinstance(value, str):
        raise BadRequestError(f"{name!r} must be a string, got {value!r}")
    return value


def _url(source: Mapping[str, object], name: str) -> str:
    """A string httpx can use as a URL: parsed, and a host it can look up (IDNA labels).

    Whether it names a mint is the wallet's to say; this keeps an unusable one from
    surfacing as httpx's (or the idna codec's) own exception.
    """
    value = _str(source, name)
    try:
        httpx.URL(value.strip()).host.encode("idna")
    except (httpx.InvalidURL, UnicodeError):
        raise BadRequestError(f"{name!r} is not a usable URL") from None
    return value


def _int(source: Mapping[str, object], name: str) -> int:
    value = _present(source, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequestError(f"{name!r} must be an integer, got {value!r}")
    return value


def _optional_int(source: Mapping[str, object], name: str) -> int | None:
    value = source.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise BadRequestError(f"{name!r} must be an integer, got {value!r}")
    return value


def _keys(source: Mapping[str, object], name: str) -> list[str] | None:
    """A public key or a list of them (shape only: the facade checks the keys)."""
    value = source.get(name)
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(k, str) for k in items):
        raise BadRequestError(f"{name!r} must be a public key or a list of them")
    return list(items)


def _execute_timeout(body: Mapping[str, object], default: float) -> float:
    """An execute's ``timeout`` (s), capped at :data:`MAX_EXECUTE_WAIT`; what a non-positive
    one means is the wallet's to say (it refuses it)."""
    timeout = _number(body, "timeout", default)
    return min(timeout, MAX_EXECUTE_WAIT) if timeout > 0 else timeout


def _number(source: Mapping[str, object], name: str, default: float) -> float:
    value = source.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequestError(f"{name!r} must be a number, got {value!r}")
    return float(value)


def _flag(source: Mapping[str, object], name: str) -> bool:
    value = source.get(name, False)
    if not isinstance(value, bool):
        raise BadRequestError(f"{name!r} must be true or false, got {value!r}")
    return value


def _optional_flag(source: Mapping[str, object], name: str) -> bool | None:
    value = source.get(name)
    if value is not None and not isinstance(value, bool):
        raise BadRequestError(f"{name!r} must be true, false or null, got {value!r}")
    return value


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
