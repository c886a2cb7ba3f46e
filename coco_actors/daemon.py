"""``coco serve``: one open wallet, served over a Unix socket (HTTP with JSON bodies).

The daemon holds the wallet's data directory (the store's lock makes a second
daemon refuse), runs recovery at start, keeps the watcher running, and answers
the CLI on ``DIR/control.sock`` (socket 0600 in a 0700 directory). Endpoints::

    GET  /status                        daemon, mints, balances, operations not at rest
    GET  /balance[?mint=URL]            per mint: spendable, reserved, pending, total
    GET  /mints                         trusted mints
    POST /mints          {url, restore} trust a mint (and restore from it, when supported)
    GET  /mints/info?url=URL            the mint's NUT-06 info
    POST /mint/quote     {mint_url, amount}        a bolt11 quote; the daemon mints it once paid
    POST /mint/wait      {operation_id, timeout}   long poll until that mint is over
    POST /send/prepare   {mint_url, amount}        reserve proofs; the operation
    GET  /send/pending                  sends not at rest
    GET  /send/ID                       one send (with its token while pending)
    POST /send/ID/execute               {operation, token}
    POST /send/ID/rollback              the operation
    POST /receive        {token}        the receive operation
    GET  /history[?limit=N]             newest first
    GET  /events[?follow=1]             newline-delimited JSON: recent events, then live ones
    POST /stop                          graceful shutdown, as SIGTERM

Errors are ``{"error": {"type": "InsufficientFundsError", "message": ...}}`` with a
4xx status (5xx only for a bug). Shutdown (SIGTERM, SIGINT, ``POST /stop``) stops
accepting requests, lets the ones in flight finish, closes the wallet (actors in
reverse order, every operation at a persisted state) and removes the socket.

Threads: the main thread waits for a signal; the server thread accepts; each
request runs on a thread of its own; event handlers run on the EventBus thread.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import logging
import os
import queue
import re
import signal
import socket
import socketserver
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from coco_actors.coco import Coco
from coco_actors.control import SOCKET_NAME, serve_hint
from coco_actors.errors import (
    ActorTimeoutError,
    CocoError,
    CryptoError,
    InsufficientFundsError,
    InvalidInputError,
    InvalidStateError,
    MintError,
    MintRejectedError,
    MintUnreachableError,
    NotFoundError,
)
from coco_actors.events import EVENTS
from coco_actors.mint_client import normalize_mint_url
from coco_actors.records import Operation, OpState
from coco_actors.store import Store

log = logging.getLogger(__name__)

#: Seconds the requests in flight get to finish once a shutdown starts.
SHUTDOWN_GRACE = 60.0
#: Events kept for ``GET /events`` without ``follow``.
RECENT_EVENTS = 200
#: Seconds between keep-alive blank lines of a followed event stream.
HEARTBEAT = 15.0
#: One ``redeem`` call of a quote waiter; it also bounds how long a waiter outlives a shutdown.
REDEEM_SLICE = 5.0
#: Give up on a quote not paid this long after it was created (when it has no expiry).
QUOTE_MAX_AGE_S = 24 * 3600
#: Longest long poll of ``POST /mint/wait``.
MAX_WAIT = 30.0
MAX_BODY = 1 << 20
#: ``sun_path`` holds 108 bytes on Linux (104 on macOS), the terminating NUL included.
MAX_SOCKET_PATH = 103


class DaemonError(CocoError):
    """The daemon cannot start (no wallet, socket path too long, ...)."""


class NoWalletError(DaemonError):
    """The data directory holds no wallet yet."""


class WalletExistsError(DaemonError):
    """``coco init`` on a data directory that already holds a wallet."""


class BadRequestError(InvalidInputError):
    """The control request itself is malformed (not the wallet's input)."""


# --- the wallet without a daemon: coco init -----------------------------------------------


def has_wallet(data_dir: Path) -> bool:
    """True when ``data_dir`` holds a wallet (a stored seed). Raises WalletLockedError
    when a daemon has it open."""
    if not data_dir.is_dir():
        return False
    store = Store(data_dir)
    try:
        return store.get_setting("mnemonic") is not None
    finally:
        store.close()


@dataclass(frozen=True, slots=True)
class InitResult:
    data_dir: Path
    mnemonic: str
    mints: list[str] = field(default_factory=list)
    restored: dict[str, Any] = field(default_factory=dict)
    restore_supported: bool = False
    #: mints that could not be added (or restored from), with why: the wallet exists anyway
    errors: dict[str, str] = field(default_factory=dict)


def init_wallet(data_dir: Path, *, mnemonic: str | None = None,
                mints: tuple[str, ...] = ()) -> InitResult:
    """Create the wallet of ``data_dir`` (a fresh seed unless ``mnemonic``), trust ``mints``
    and, for a restored seed, restore from each when the library supports it."""
    if has_wallet(data_dir):
        raise WalletExistsError(f"{data_dir} already holds a wallet; choose another --data-dir")
    _private_dir(data_dir)
    coco = Coco.open(data_dir, mnemonic, recover=False, watcher=False)
    try:
        added: list[str] = []
        restored: dict[str, Any] = {}
        errors: dict[str, str] = {}
        can_restore = hasattr(coco, "restore")
        for url in mints:
            try:
                added.append(coco.mints.add(url).url)
                if mnemonic is not None and can_restore:
                    restored[added[-1]] = _jsonable(coco.restore(added[-1]))  # type: ignore[attr-defined]
            except CocoError as exc:  # the seed is stored: it must still reach the user
                errors[url] = str(exc)
        return InitResult(data_dir, coco.mnemonic, added, restored, can_restore, errors)
    finally:
        coco.close()


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


# --- JSON views of library values -------------------------------------------------------


def op_view(op: Operation, *, token: bool = False) -> dict[str, Any]:
    """``Operation.public()``, without the token unless asked (only sends show it)."""
    view = op.public()
    if not token:
        view.pop("token", None)
    return view


def _jsonable(value: Any) -> Any:
    if isinstance(value, Operation):
        return op_view(value)
    if is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
        if hasattr(value, "total"):  # MintBalance
            out["total"] = value.total
        out.pop("v", None)
        return out
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


# --- events -----------------------------------------------------------------------------


class EventHub:
    """Every wallet event, kept (the last few) and fanned out to followers.

    ``publish`` runs on the EventBus thread; each follower reads its own queue on
    its request thread. Tokens never go into the stream.
    """

    def __init__(self, keep: int = RECENT_EVENTS) -> None:
        self._lock = threading.Lock()
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._followers: set[queue.SimpleQueue[dict[str, Any] | None]] = set()
        self._closed = False

    def attach(self, coco: Coco) -> None:
        for name in sorted(EVENTS):
            coco.on(name, functools.partial(self.publish, name))

    def publish(self, name: str, payload: dict[str, Any]) -> None:
        op = payload.get("operation")
        entry = {"time": int(time.time() * 1000), "event": name,
                 "operation_id": payload.get("operation_id"),
                 "mint_url": payload.get("mint_url"),
                 "operation": op_view(op) if isinstance(op, Operation) else None}
        with self._lock:
            self._recent.append(entry)
            for q in self._followers:
                q.put(entry)

    @contextlib.contextmanager
    def follow(self) -> Iterator[tuple[list[dict[str, Any]],
                                       queue.SimpleQueue[dict[str, Any] | None]]]:
        """The recent events and a queue of the later ones (none lost, none twice)."""
        q: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        with self._lock:
            if self._closed:
                q.put(None)
            self._followers.add(q)
            recent = list(self._recent)
        try:
            yield recent, q
        finally:
            with self._lock:
                self._followers.discard(q)

    def close(self) -> None:
        """End every followed stream (a ``None`` in each queue)."""
        with self._lock:
            self._closed = True
            for q in self._followers:
                q.put(None)


# --- mint quotes ------------------------------------------------------------------------


@dataclass
class _QuoteWaiter:
    op_id: str
    quote_id: str
    give_up_at: float
    done: threading.Event = field(default_factory=threading.Event)


class QuoteKeeper:
    """Mints every open quote once it is paid, whether or not a CLI is waiting.

    One thread per open quote calls ``coco.mint.redeem`` in short slices (which also
    hands the quote to the watcher) until the operation is over, the quote is too old,
    or the daemon stops. After a restart, :meth:`resume` picks up the open quotes.
    """

    def __init__(self, coco: Coco) -> None:
        self._coco = coco
        self._lock = threading.Lock()
        self._waiters: dict[str, _QuoteWaiter] = {}
        self._stopping = threading.Event()

    def resume(self) -> int:
        n = 0
        for entry in self._coco.history.get_history():
            if entry.type == "mint" and entry.state in (OpState.PREPARED, OpState.EXECUTING):
                op = self._coco.mint.get_operation(entry.operation_id)
                if op is not None and op.quote_id:
                    self.watch(op, None)
                    n += 1
        return n

    def watch(self, op: Operation, expiry: int | None) -> _QuoteWaiter:
        give_up = float(expiry) if expiry else op.created_at / 1000 + QUOTE_MAX_AGE_S
        with self._lock:
            waiter = self._waiters.get(op.id)
            if waiter is None:
                waiter = _QuoteWaiter(op.id, op.quote_id or "", give_up)
                self._waiters[op.id] = waiter
                threading.Thread(target=self._run, args=(waiter,), daemon=True,
                                 name=f"coco-quote {op.id[:8]}").start()
        return waiter

    def wait(self, op_id: str, timeout: float) -> Operation:
        """Wait (at most ``timeout`` s) for the mint operation to be over; return it."""
        op = self._coco.mint.get_operation(op_id)
        if op is None:
            raise NotFoundError(f"unknown mint operation {op_id}")
        if not op.state.terminal:
            self.watch(op, None).done.wait(timeout)
            op = self._coco.mint.get_operation(op_id) or op
        return op

    def stop(self) -> None:
        """Stop the waiters; a ``wait`` in flight returns at once (the op as it stands)."""
        self._stopping.set()
        with self._lock:
            for waiter in self._waiters.values():
                waiter.done.set()

    def _run(self, w: _QuoteWaiter) -> None:
        try:
            while not self._stopping.is_set():
                if time.time() > w.give_up_at:
                    log.info("mint %s: quote not paid in time; no longer watched", w.op_id)
                    return
                try:
                    op = self._coco.mint.redeem(w.quote_id, timeout=REDEEM_SLICE)
                except ActorTimeoutError:
                    continue  # not paid yet
                except NotFoundError:
                    return  # no open operation for it any more: over
                except CocoError as exc:
                    log.warning("mint %s: %s; trying again", w.op_id, exc)
                    self._stopping.wait(REDEEM_SLICE)
                    continue
                if op.state.terminal:
                    return
        except Exception:
            if not self._stopping.is_set():  # after a shutdown, the wallet is gone: expected
                log.exception("mint %s: quote waiter failed", w.op_id)
        finally:
            w.done.set()
            with self._lock:
                self._waiters.pop(w.op_id, None)


# --- the control API --------------------------------------------------------------------


class ShuttingDownError(CocoError):
    """The daemon is stopping and takes no new requests."""


class ControlApi:
    """The endpoints: each parses its input, calls the wallet, returns JSON-able data."""

    def __init__(self, coco: Coco, data_dir: Path, events: EventHub, quotes: QuoteKeeper,
                 request_stop: Callable[[], None]) -> None:
        self.coco = coco
        self.data_dir = data_dir
        self.events = events
        self.quotes = quotes
        self._request_stop = request_stop
        self.started_at = time.time()
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Any]]] = [
            (m, re.compile(p + r"\Z"), h) for m, p, h in (
                ("GET", r"/status", self.status),
                ("GET", r"/balance", self.balance),
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
                ("POST", r"/receive", self.receive),
                ("GET", r"/history", self.history),
                ("POST", r"/stop", self.stop),
            )]

    def route(self, method: str, path: str) -> tuple[Callable[..., Any], dict[str, str]] | None:
        allowed = False
        for m, pattern, handler in self.routes:
            match = pattern.match(path)
            if match:
                if m == method:
                    return handler, {k: unquote(v) for k, v in match.groupdict().items()}
                allowed = True
        if allowed:
            raise BadRequestError(f"{method} is not allowed on {path}")
        return None

    # --- endpoints (query: single-valued query parameters; body: the JSON object) -------

    def status(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        pending = [_jsonable(e) for e in self.coco.history.get_history()
                   if e.state not in (OpState.COMPLETED, OpState.ROLLED_BACK)]
        return {
            "daemon": {"pid": os.getpid(), "data_dir": str(self.data_dir),
                       "socket": str(self.data_dir / SOCKET_NAME), "version": _version(),
                       "started_at": int(self.started_at * 1000),
                       "uptime_s": round(time.time() - self.started_at, 1)},
            "mints": _jsonable(self.coco.mints.list()),
            "balances": _jsonable(self.coco.balance()),
            "pending": pending,
        }

    def balance(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        balances = self.coco.balance()
        mint = query.get("mint")
        if mint:
            url = normalize_mint_url(mint)
            if url not in balances:
                raise NotFoundError(f"unknown mint {mint}; add it first: coco mint add {mint}")
            balances = {url: balances[url]}
        return _jsonable(balances)

    def mints(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        return _jsonable(self.coco.mints.list())

    def add_mint(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        url = _field(body, "url", str)
        restore = bool(body.get("restore", False))
        if restore and not hasattr(self.coco, "restore"):
            raise InvalidInputError("this version of coco-actors cannot restore from a mint yet"
                                    " (NUT-09); add the mint without --restore")
        rec = self.coco.mints.add(url)
        out: dict[str, Any] = {"mint": _jsonable(rec)}
        if restore:
            out["restored"] = _jsonable(self.coco.restore(rec.url))  # type: ignore[attr-defined]
        return out

    def mint_info(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        url = _field(query, "url", str)
        info = self.coco.mints.info(url)
        return {"url": normalize_mint_url(url), "name": info.name, "version": info.version,
                "pubkey": info.pubkey, "description": info.raw.get("description"),
                "nuts": sorted(info.nuts, key=lambda n: int(n) if n.isdigit() else 1 << 30),
                "info": info.raw}

    def mint_quote(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        url = _field(body, "mint_url", str)
        amount = _field(body, "amount", int)
        quote = self.coco.mint.create_quote(url, amount)
        op = self._mint_op_for(quote.quote)
        if op is not None:
            self.quotes.watch(op, quote.expiry)
        return {"quote": quote.quote, "request": quote.request, "amount": quote.amount,
                "unit": quote.unit, "state": quote.state.value, "expiry": quote.expiry,
                "operation_id": op.id if op else None}

    def _mint_op_for(self, quote_id: str) -> Operation | None:
        for entry in self.coco.history.get_history():  # newest first: it is near the top
            if entry.type == "mint":
                op = self.coco.mint.get_operation(entry.operation_id)
                if op is not None and op.quote_id == quote_id:
                    return op
        return None

    def mint_wait(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        op_id = _field(body, "operation_id", str)
        timeout = min(max(float(body.get("timeout", 1.0)), 0.0), MAX_WAIT)
        op = self.quotes.wait(op_id, timeout)
        return {"done": op.state.terminal, "operation": op_view(op)}

    def send_prepare(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        op = self.coco.send.prepare_send(_field(body, "mint_url", str), _field(body, "amount", int))
        return op_view(op)

    def send_pending(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        ops = sorted(self.coco.send.get_pending_operations(), key=lambda o: (o.created_at, o.id))
        return [op_view(op) for op in ops]

    def send_show(self, query: dict[str, str], body: dict[str, Any], op_id: str) -> Any:
        op = self.coco.send.get_operation(op_id)
        if op is None:
            raise NotFoundError(f"unknown send operation {op_id}")
        return op_view(op, token=op.state == OpState.PENDING)

    def send_execute(self, query: dict[str, str], body: dict[str, Any], op_id: str) -> Any:
        op, token = self.coco.send.execute_prepared_send(op_id)
        return {"operation": op_view(op), "token": token}

    def send_rollback(self, query: dict[str, str], body: dict[str, Any], op_id: str) -> Any:
        return op_view(self.coco.send.rollback(op_id))

    def receive(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        return op_view(self.coco.receive(_field(body, "token", str).strip()))

    def history(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        limit = query.get("limit")
        n = None
        if limit is not None:
            if not limit.isdigit() or int(limit) < 1:
                raise BadRequestError(f"limit must be a positive integer, got {limit!r}")
            n = int(limit)
        return _jsonable(self.coco.history.get_history(n))

    def stop(self, query: dict[str, str], body: dict[str, Any]) -> Any:
        self._request_stop()
        return {"stopping": True, "pid": os.getpid()}


def _field(d: dict[str, Any], name: str, kind: type) -> Any:
    value = d.get(name)
    if value is None:
        raise BadRequestError(f"missing {name!r}")
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise BadRequestError(f"{name!r} must be {kind.__name__}, got {value!r}")
    return value


def _version() -> str:
    try:
        return metadata.version("coco-actors")
    except metadata.PackageNotFoundError:
        return "unknown"


#: HTTP status per error class, most specific first: what the caller can do about it.
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (NotFoundError, 404),
    (InsufficientFundsError, 409),
    (InvalidStateError, 409),
    (InvalidInputError, 400),
    (CryptoError, 422),
    (MintRejectedError, 422),
    (MintUnreachableError, 424),  # the mint, not the daemon, did not answer
    (MintError, 424),
    (ActorTimeoutError, 408),
    (ShuttingDownError, 409),
    (CocoError, 400),
)


def error_body(exc: BaseException) -> tuple[int, dict[str, Any]]:
    status = next((s for cls, s in _STATUS if isinstance(exc, cls)), 500)
    err: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, MintError):
        err["mint_url"] = exc.mint_url
    if isinstance(exc, MintRejectedError):
        err["code"] = exc.code
    if isinstance(exc, InsufficientFundsError):
        err.update(needed=exc.needed, available=exc.available)
    if status == 500:
        err = {"type": "InternalError", "message": f"{type(exc).__name__}: {exc}"}
    return status, {"error": err}


# --- HTTP over a Unix socket ------------------------------------------------------------


class ControlServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` bound to an ``AF_UNIX`` socket created with mode 0600."""

    address_family = socket.AF_UNIX
    allow_reuse_address = False
    daemon_threads = True

    def __init__(self, path: Path, daemon: Daemon) -> None:
        self.daemon = daemon
        self.path = path
        super().__init__(str(path), ControlHandler)  # type: ignore[arg-type] # typeshed: inet

    def server_bind(self) -> None:
        old = os.umask(0o177)  # the socket is born 0600
        try:
            socketserver.TCPServer.server_bind(self)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self.server_name, self.server_port = "coco", 0


class ControlHandler(BaseHTTPRequestHandler):
    server: ControlServer
    server_version = "coco-daemon"

    def address_string(self) -> str:
        return "control"  # a Unix socket peer has no address

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base signature)
        log.debug("control: " + format, *args)  # paths only: bodies hold tokens

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        daemon = self.server.daemon
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if method == "GET" and url.path == "/events":
            self._events(daemon.events, query.get("follow") in ("1", "true", "yes"))
            return
        try:
            with daemon.request():
                found = daemon.api.route(method, url.path)
                if found is None:
                    self._send(404, {"error": {"type": "UnknownEndpoint",
                                               "message": f"no endpoint {method} {url.path}"}})
                    return
                handler, args = found
                result = handler(query, self._body(), **args)
        except Exception as exc:
            status, body = error_body(exc)
            if status == 500:
                log.exception("control: %s %s failed", method, url.path)
            self._send(status, body)
            return
        self._send(200, result)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise BadRequestError(f"request body over {MAX_BODY} bytes")
        if not length:
            return {}
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            raise BadRequestError("request body is not JSON") from None
        if not isinstance(body, dict):
            raise BadRequestError("request body must be a JSON object")
        return body

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(data)

    def _events(self, hub: EventHub, follow: bool) -> None:
        """Recent events, then (``follow``) live ones until the client or the daemon goes."""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()  # HTTP/1.0 without a length: the body ends when we close
        try:
            with hub.follow() as (recent, q):
                for entry in recent:
                    self._line(entry)
                while follow:
                    try:
                        live = q.get(timeout=HEARTBEAT)
                    except queue.Empty:
                        self.wfile.write(b"\n")  # keep-alive; also notices a gone client
                        self.wfile.flush()
                        continue
                    if live is None:
                        return
                    self._line(live)
        except (BrokenPipeError, ConnectionResetError):
            return

    def _line(self, entry: dict[str, Any]) -> None:
        self.wfile.write(json.dumps(entry).encode() + b"\n")
        self.wfile.flush()


# --- the daemon -------------------------------------------------------------------------


class Daemon:
    """The wallet of one data directory and its control server.

    ``start`` opens the wallet (recovery runs), resumes open quotes and binds the
    socket; ``wait`` blocks until a stop is requested; ``close`` shuts down.
    """

    def __init__(self, data_dir: Path, *, rollback_prepared_after: float | None = None) -> None:
        self.data_dir = data_dir
        self.rollback_prepared_after = rollback_prepared_after
        self.socket = data_dir / SOCKET_NAME
        self._stop_requested = threading.Event()
        self._inflight = 0
        self._idle = threading.Condition()
        self._accepting = False
        self.coco: Coco | None = None
        self.events = EventHub()
        self.quotes: QuoteKeeper | None = None
        self.api: ControlApi
        self._server: ControlServer | None = None
        self._server_thread: threading.Thread | None = None
        self._socket_id: tuple[int, int] | None = None

    def start(self) -> None:
        if len(os.fsencode(self.socket)) > MAX_SOCKET_PATH:
            raise DaemonError(
                f"the control socket path {self.socket} is longer than {MAX_SOCKET_PATH} bytes,"
                " the limit of a Unix socket; choose a shorter --data-dir")
        if not has_wallet(self.data_dir):  # may raise WalletLockedError: a daemon runs
            raise NoWalletError(f"no wallet in {self.data_dir}; create one with:"
                                f" coco init --data-dir {self.data_dir}")
        _private_dir(self.data_dir)
        log.info("opening the wallet in %s (recovery runs first)", self.data_dir)
        self.coco = Coco.open(self.data_dir,
                              rollback_prepared_after=self.rollback_prepared_after)
        recovered = getattr(self.coco, "last_recovery", None)
        if recovered:
            log.info("recovery: %s", ", ".join(f"{n} {s}" for s, n in sorted(recovered.items())))
        self.events.attach(self.coco)
        self.quotes = QuoteKeeper(self.coco)
        resumed = self.quotes.resume()
        if resumed:
            log.info("watching %d open mint quote(s)", resumed)
        self.api = ControlApi(self.coco, self.data_dir, self.events, self.quotes,
                              self._stop_requested.set)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()  # stale, from a daemon that was killed: we hold the lock
        self._server = ControlServer(self.socket, self)
        st = os.stat(self.socket)
        self._socket_id = (st.st_dev, st.st_ino)
        self._accepting = True
        self._server_thread = threading.Thread(target=self._server.serve_forever, args=(0.1,),
                                               name="coco-control", daemon=True)
        self._server_thread.start()
        log.info("coco daemon %d ready: wallet %s, control socket %s", os.getpid(),
                 self.data_dir, self.socket)

    def wait(self) -> None:
        """Block until ``POST /stop`` (signals interrupt it with an exception)."""
        self._stop_requested.wait()

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Count a request in flight; refuse new ones once a shutdown has begun."""
        with self._idle:
            if not self._accepting:
                raise ShuttingDownError("the daemon is stopping")
            self._inflight += 1
        try:
            yield
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    def close(self) -> None:
        """Stop accepting, let requests in flight finish, close the wallet, remove the socket."""
        with self._idle:
            self._accepting = False
        self.events.close()
        if self.quotes is not None:
            self.quotes.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._idle:
            if not self._idle.wait_for(lambda: self._inflight == 0, timeout=SHUTDOWN_GRACE):
                log.warning("%d request(s) still running after %.0f s; closing anyway",
                            self._inflight, SHUTDOWN_GRACE)
        if self.coco is not None:
            self.coco.close()  # actors in reverse order; every operation at a persisted state
            self.coco = None
        self._remove_socket()

    def _remove_socket(self) -> None:
        if self._socket_id is None:
            return
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(self.socket)
            if (st.st_dev, st.st_ino) == self._socket_id:  # not a successor's socket
                self.socket.unlink()
        self._socket_id = None


# --- coco serve ---------------------------------------------------------------------------


class _StopSignal(BaseException):
    """Raised in the main thread by the first SIGTERM or SIGINT."""


def configure_logging(*, log_file: Path | None = None, verbose: bool = False,
                      as_json: bool = False) -> None:
    """Logs to stderr (and ``log_file``): one line per operation transition, no secrets."""
    formatter: logging.Formatter = (_JsonFormatter() if as_json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        handlers.append(logging.FileHandler(log_file))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        h.setFormatter(formatter)
        root.addHandler(h)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "httpcore", "websocket", "pykka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"time": self.formatTime(record), "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def serve(data_dir: Path, *, rollback_prepared_after: float | None = None) -> None:
    """Run the daemon in the foreground until SIGTERM, SIGINT or ``POST /stop``.

    Must run in the main thread (signal handlers). Raises :class:`CocoError` when
    the daemon cannot start (no wallet, another daemon on ``data_dir``, ...).
    """
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            log.info("%s: already stopping", signal.Signals(signum).name)
            return
        stopping = True
        log.info("%s: stopping", signal.Signals(signum).name)
        raise _StopSignal

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    daemon = Daemon(data_dir, rollback_prepared_after=rollback_prepared_after)
    try:
        try:
            daemon.start()
            daemon.wait()
            stopping = True
            log.info("stop requested over the control socket: stopping")
        except _StopSignal:
            pass
        finally:
            stopping = True
            daemon.close()
        log.info("coco daemon %d stopped", os.getpid())
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


__all__ = ["ControlApi", "ControlServer", "Daemon", "DaemonError", "EventHub", "InitResult",
           "NoWalletError", "QuoteKeeper", "WalletExistsError", "configure_logging",
           "has_wallet", "init_wallet", "serve", "serve_hint"]
