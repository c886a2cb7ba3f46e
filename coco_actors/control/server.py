"""HTTP over the daemon's Unix socket: parse, bound, route, answer JSON, never a traceback.

The socket is created 0600 (in the 0700 data directory). Every client is
untrusted, so what it sends is bounded before anything else looks at it:

- one request per connection (HTTP/1.0), ``GET`` and ``POST`` only (else 405);
- the whole request (line, headers, body) within :data:`REQUEST_TIMEOUT` seconds
  in total, not per read (else 408, or a plain close when not even a request line
  came), so a client that stalls or trickles holds a thread for a bounded time;
- a body framed by one ASCII ``Content-Length`` of at most :data:`MAX_BODY` bytes
  (no ``Transfer-Encoding``: 411), received in full (else 400);
- one JSON object, nested at most :data:`MAX_DEPTH` deep, without duplicate keys,
  non-finite numbers, out-of-range integers or lone surrogates (else 400).

Every error is ``{"error": {"type": ..., "code": ..., "message": ...}}`` with a 4xx status
split by what the caller can do (5xx only for a bug, whose traceback goes to the
log, never to the caller). The endpoints are :mod:`coco_actors.control.api`'s;
``GET /events`` (a stream) is served here, from the :class:`EventHub`. A stream
and a long poll are not bound by the request timeout (only each write is, by
:data:`WRITE_TIMEOUT`); a follower that hangs up frees its thread within
:data:`FOLLOW_POLL` seconds.

The bounds (:class:`BoundedServer`, :class:`BoundedHandler`) are shared with the
public payments listener (:mod:`coco_actors.control.payments`), which sets its own
limits and answers its one route, and with the same API on a TCP port
(:class:`TcpControlServer`, ``coco serve --listen``), where every request must carry
the bearer token (:mod:`coco_actors.control.auth`) before anything else is looked at.

Threads: :meth:`BoundedServer.serve_until` is the accept loop (the daemon runs it
on a supervised thread); each connection runs on a thread of its own, at most
:data:`MAX_CONNECTIONS` at once (more wait in the listen backlog of
:data:`LISTEN_BACKLOG`). A shutdown (:meth:`BoundedServer.refuse_new`) cuts the
connections still sending their request, so none of them holds it up.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import queue
import re
import select
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import httpx

from coco_actors.control.api import Handler, Request
from coco_actors.control.errors import (
    BadRequestError,
    LengthRequiredError,
    MethodNotAllowedError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ShuttingDownError,
    TooManyRequestsError,
    UnauthorizedError,
)
from coco_actors.control.events import Entry, EventHub, entry_of
from coco_actors.errors import (
    ERROR_CODES,
    ActorTimeoutError,
    CocoError,
    CryptoError,
    IdempotencyConflictError,
    InsufficientFundsError,
    InvalidInputError,
    InvalidStateError,
    MintError,
    MintRejectedError,
    MintUnreachableError,
    NotFoundError,
    RateLimitedError,
    error_code,
)
from coco_actors.events import MAX_SEQ

log = logging.getLogger(__name__)

#: Largest request body, in bytes.
MAX_BODY = 1 << 20
#: Deepest nesting of the JSON body (the endpoints take flat objects).
MAX_DEPTH = 32
#: Integers of the JSON body fit in 64 bits (amounts, timeouts).
INT_RANGE = range(-(1 << 63), 1 << 64)
#: Seconds a connection may take, in total, to send its request (line, headers, body).
REQUEST_TIMEOUT = 10.0
#: Seconds one write of an answer (or of a streamed line) may block on a client that
#: does not read.
WRITE_TIMEOUT = 30.0
#: Seconds between keep-alive blank lines of a followed event stream.
HEARTBEAT = 15.0
#: Seconds between two looks of a followed stream at whether its client hung up.
FOLLOW_POLL = 0.5
#: Seconds the accept loop waits for a connection before it looks at its stop event.
ACCEPT_POLL = 0.1
#: Connections the kernel queues for the accept loop (socketserver's default is 5).
LISTEN_BACKLOG = 128
#: Connections served at once, one thread each; more wait in the listen backlog.
MAX_CONNECTIONS = 256
#: Connections the control API on a TCP port serves at once: any local user can open
#: one, and one without a token is answered at once (or cut at the request deadline).
TCP_CONNECTIONS = 64
#: The methods served; any other is a 405.
METHODS = ("GET", "POST")
#: After an answer sent before the request's body was read (a 413, 405, 401...): how
#: long, and how many bytes, the rest the client is still sending is read and dropped
#: before the connection closes, so the close does not reset it before the client has
#: read the answer (a "lingering close"; the answer itself is never delayed).
DRAIN_SECONDS = 2.0
DRAIN_BYTES = 4 << 20
#: A Content-Length read as a number: ASCII digits, few enough ("²".isdigit() is True).
_DIGITS = re.compile(r"[0-9]{1,12}", re.ASCII)
#: ``GET /events?after=SEQ``: a seq, ASCII digits; at most :data:`MAX_SEQ`.
_SEQ = re.compile(r"[0-9]{1,19}", re.ASCII)
#: Events a replay reads from the outbox at once.
REPLAY_PAGE = 500


class Router(Protocol):
    """What the server needs of the endpoints (:class:`~coco_actors.control.api.ControlApi`)."""

    def route(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None: ...


#: HTTP status per error class, most specific first: what the caller can do about it.
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (UnauthorizedError, 401),
    (MethodNotAllowedError, 405),
    (PayloadTooLargeError, 413),
    (TooManyRequestsError, 429),
    (LengthRequiredError, 411),
    (RequestTimeoutError, 408),
    (httpx.InvalidURL, 400),  # a URL the caller gave that httpx cannot even parse
    (NotFoundError, 404),
    (IdempotencyConflictError, 409),  # before InvalidInputError, its base
    (InsufficientFundsError, 409),
    (InvalidStateError, 409),
    (InvalidInputError, 400),
    (CryptoError, 422),
    (MintRejectedError, 422),
    (MintUnreachableError, 424),  # the mint, not the daemon, did not answer
    (RateLimitedError, 429),  # the mint is limiting us: nothing done, try again later
    (MintError, 424),
    (ActorTimeoutError, 408),
    (ShuttingDownError, 409),
    (CocoError, 400),
)


def error_body(exc: BaseException) -> tuple[int, dict[str, object]]:
    """The status and JSON body of an error answer: its class name, its stable ``code``
    (:data:`~coco_actors.errors.ERROR_CODES`) and message; a bug says only its class and
    message. A mint's own NUT error code is ``nut_code``."""
    status = next((s for cls, s in _STATUS if isinstance(exc, cls)), 500)
    err: dict[str, object] = {"type": type(exc).__name__, "code": error_code(exc),
                              "message": str(exc)}
    if isinstance(exc, MintError):
        err["mint_url"] = exc.mint_url
    if isinstance(exc, MintRejectedError):
        err["nut_code"] = exc.code
    if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
        err["retry_after"] = exc.retry_after
    if isinstance(exc, InsufficientFundsError):
        err.update(needed=exc.needed, available=exc.available)
    if isinstance(exc, IdempotencyConflictError):
        err["operation_id"] = exc.operation_id
    if status == 500:
        err = {"type": "InternalError", "code": ERROR_CODES["InternalError"],
               "message": f"{type(exc).__name__}: {exc}"}
    return status, {"error": err}


class BoundedServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` whose every client is untrusted: the bounds both the
    control socket and the public payments listener (:mod:`.payments`) keep.

    It counts the connections (at most ``max_connections`` served at once), the
    requests in flight (so a shutdown can refuse new ones and let the running ones
    finish: :meth:`refuse_new`, :meth:`drain`), and knows the connections still
    sending their request (a shutdown cuts them). Each request must arrive within
    ``request_timeout`` s and carry at most ``max_body`` bytes.
    """

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG
    timeout = ACCEPT_POLL  # of handle_request: how often the accept loop looks up
    #: The name of the listener in the log.
    name = "control"

    def __init__(self, address: Any, handler: type[BoundedHandler], *,
                 request_timeout: float = REQUEST_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS, max_body: int = MAX_BODY) -> None:
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.max_body = max_body
        self._gate = threading.Condition()
        self._accepting = True
        self._inflight = 0
        self._connections = 0
        self._reading: set[socket.socket] = set()
        super().__init__(address, handler)

    def serve_until(self, stop: threading.Event) -> None:
        """The accept loop: hand each connection to a thread of its own until ``stop``.

        With ``max_connections`` served, it accepts no more until one ends: the
        next ones wait in the listen backlog, not on a thread.
        """
        while not stop.is_set():
            with self._gate:
                if not self._gate.wait_for(
                        lambda: self._connections < self.max_connections, timeout=ACCEPT_POLL):
                    continue
            self.handle_request()

    def process_request(self, request: Any, client_address: Any) -> None:
        """(accept loop) Count the connection, then start its thread."""
        with self._gate:
            self._connections += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._ended()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """(the connection's thread) Serve it; count it gone however it ends."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._ended()

    def _ended(self) -> None:
        with self._gate:
            self._connections -= 1
            self._gate.notify_all()

    def connections(self) -> int:
        """How many connections are being served now."""
        with self._gate:
            return self._connections

    def wait_connections(self, at_most: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s until at most ``at_most`` connections are served."""
        with self._gate:
            return self._gate.wait_for(lambda: self._connections <= at_most, timeout=timeout)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request that failed outside an endpoint: a peer that went is no news, a bug is."""
        if isinstance(sys.exc_info()[1], OSError):
            log.debug("%s: connection dropped", self.name, exc_info=True)
        else:
            log.exception("%s: a request failed", self.name)

    @contextlib.contextmanager
    def reading(self, conn: socket.socket) -> Iterator[None]:
        """(a connection's thread) While it receives its request: a shutdown cuts it."""
        with self._gate:
            self._reading.add(conn)
            cut = not self._accepting
        if cut:
            _cut(conn)
        try:
            yield
        finally:
            with self._gate:
                self._reading.discard(conn)

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Count a request in flight; refuse it once a shutdown has begun."""
        with self._gate:
            if not self._accepting:
                raise ShuttingDownError("the daemon is stopping")
            self._inflight += 1
        try:
            yield
        finally:
            with self._gate:
                self._inflight -= 1
                self._gate.notify_all()

    def refuse_new(self) -> None:
        """Take no new request; cut the connections still sending theirs."""
        with self._gate:
            self._accepting = False
            reading = list(self._reading)
        for conn in reading:
            _cut(conn)

    def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for the requests in flight; how many are still running."""
        with self._gate:
            self._gate.wait_for(lambda: self._inflight == 0, timeout=timeout)
            return self._inflight


class ControlServer(BoundedServer):
    """The control socket: a :class:`BoundedServer` on an ``AF_UNIX`` socket created 0600."""

    address_family = socket.AF_UNIX
    allow_reuse_address = False

    def __init__(self, path: Path, router: Router, events: EventHub, *,
                 request_timeout: float = REQUEST_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.path = path
        self.router = router
        self.events = events
        super().__init__(str(path), ControlHandler, request_timeout=request_timeout,
                         max_connections=max_connections)

    def server_bind(self) -> None:
        old = os.umask(0o177)  # the socket is born 0600
        try:
            socketserver.TCPServer.server_bind(self)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self.server_name, self.server_port = "coco", 0


def _cut(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already gone
        conn.shutdown(socket.SHUT_RDWR)


class _DeadlineReader(io.RawIOBase):
    """The reads of one connection, each given only what is left of one deadline.

    A socket timeout alone bounds each read, so a client trickling a byte at a time
    could hold a thread for ever; this bounds the whole request.
    """

    def __init__(self, conn: socket.socket, left: Callable[[], float]) -> None:
        super().__init__()
        self._conn = conn
        self._left = left

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._left()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._conn.settimeout(left)
        return self._conn.recv_into(buffer)


class BoundedHandler(BaseHTTPRequestHandler):
    """One connection, one request (HTTP/1.0), on its own thread: received within the
    server's bounds, then dispatched (:meth:`_dispatch`); every error a JSON answer."""

    server: BoundedServer
    server_version = "coco-daemon"
    timeout = WRITE_TIMEOUT  # the socket's; reads get what is left of the request's deadline
    #: The methods served (any other is a 405 before the body is read); None: any method
    #: (the subclass answers it).
    methods: tuple[str, ...] | None = METHODS
    #: What a body over the server's ``max_body`` raises.
    too_large: type[BadRequestError] = BadRequestError
    #: Whether a bug's answer names its exception (a local caller's), or says only
    #: "internal error" (a public one's).
    expose_bugs = True

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        deadline = time.monotonic() + self.server.request_timeout
        self.rfile = io.BufferedReader(
            _DeadlineReader(self.connection, lambda: deadline - time.monotonic()))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base signature)
        log.debug(self.server.name + ": " + format, *args)  # paths only: bodies hold tokens

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """The base class's own errors (bad request line, headers) as JSON too, and 4xx:
        what it would call a 5xx (an HTTP version it does not speak) is the client's."""
        code = 400 if code >= 500 else code
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        self._send(code, {"error": {"type": "BadRequestError",
                                    "code": ERROR_CODES["BadRequestError"],
                                    "message": message or explain or f"HTTP {code}"}})

    def handle_one_request(self) -> None:
        """Receive the whole request within the deadline, then answer it."""
        self.close_connection = True
        self.requestline, self.request_version, self.command = "", "HTTP/1.0", ""
        try:
            with self.server.reading(self.connection):
                if not self._read_head():
                    return
                body = self._read_body()
        except TimeoutError:
            self._fail(RequestTimeoutError(
                f"the request did not arrive within {self.server.request_timeout:g} s"))
            return
        except BadRequestError as exc:
            self._fail(exc)
            self._drain()  # the body may still be on its way: read, never waited for
            return
        except OSError:  # the client went, or a shutdown cut it
            return
        self._dispatch(body)

    def _drain(self) -> None:
        """(the connection's thread) Half-close, then drop what the client still sends,
        at most :data:`DRAIN_SECONDS` and :data:`DRAIN_BYTES`, until it closes: a close
        with unread data would reset the connection, and the client could lose the
        answer it was sent first."""
        deadline = time.monotonic() + DRAIN_SECONDS
        dropped = 0
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            with self.server.reading(self.connection):  # a server shutdown cuts it too
                while dropped < DRAIN_BYTES and (left := deadline - time.monotonic()) > 0:
                    self.connection.settimeout(left)
                    chunk = self.connection.recv(65536)
                    if not chunk:
                        return
                    dropped += len(chunk)
        except OSError:  # gone, timed out, or cut by a shutdown: nothing more to do
            return

    def _read_head(self) -> bool:
        """The request line and headers; False when answered already (or nothing came)."""
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline:
            return False
        if len(self.raw_requestline) > 65536:
            self.send_error(414, "request line too long")
            return False
        if not self.parse_request():  # it answered
            return False
        if self.request_version == "HTTP/0.9":  # a bare "GET /path" line
            raise BadRequestError("HTTP/0.9 is not spoken: send HTTP/1.0 or later")
        self._check_head()
        if self.methods is not None and self.command not in self.methods:
            raise MethodNotAllowedError(
                f"{self.command[:20]} is not served; use {' or '.join(self.methods)}",
                allow=self.methods)
        return True

    def _check_head(self) -> None:
        """The headers arrived, nothing else was looked at: a subclass may refuse the
        request here (raise a BadRequestError), before its method, path or body."""

    def _read_body(self) -> dict[str, object]:
        if self.headers.get_all("Transfer-Encoding"):
            raise LengthRequiredError("Transfer-Encoding is not supported: send a Content-Length")
        lengths = {v.strip() for v in self.headers.get_all("Content-Length") or ()}
        if len(lengths) > 1:
            raise BadRequestError("conflicting Content-Length headers")
        text = lengths.pop() if lengths else "0"
        if not re.fullmatch(r"[0-9]+", text, re.ASCII):
            raise BadRequestError(f"bad Content-Length {text[:40]!r}")
        limit = self.server.max_body
        length = int(text) if _DIGITS.fullmatch(text) else limit + 1
        if length > limit:  # answered now: the body is never waited for
            raise self.too_large(f"request body over {limit} bytes")
        if not length:
            return {}
        raw = self.rfile.read(length)
        if len(raw) < length:
            raise BadRequestError(f"request body incomplete: {len(raw)} of {length} bytes")
        return parse_body(raw)

    def _fail(self, exc: BaseException) -> None:
        status, body = error_body(exc)
        if status == 500:
            log.exception("%s: %s %s failed", self.server.name, self.command, self.path[:200])
            if not self.expose_bugs:
                body = {"error": {"type": "InternalError",
                                  "code": ERROR_CODES["InternalError"],
                                  "message": "internal error"}}
        headers = {}
        if isinstance(exc, MethodNotAllowedError):
            headers["Allow"] = ", ".join(exc.allow)
        if isinstance(exc, TooManyRequestsError):
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        if isinstance(exc, UnauthorizedError):
            headers["WWW-Authenticate"] = exc.challenge
        self._send(status, body, headers)

    def _send(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        if self.request_version == "HTTP/0.9":  # never spoken: the status line always goes
            self.request_version = "HTTP/1.0"
        with contextlib.suppress(OSError):  # the caller went (or stopped reading)
            self.connection.settimeout(WRITE_TIMEOUT)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    def _dispatch(self, body: dict[str, object]) -> None:
        """Answer the request whose body arrived (within the bounds)."""
        raise NotImplementedError

class ControlHandler(BoundedHandler):
    """A request of the control socket: routed to :class:`Router`, or the event stream."""

    server: ControlServer

    def address_string(self) -> str:
        return "control"  # a Unix socket peer has no address

    def _dispatch(self, body: dict[str, object]) -> None:
        try:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query, max_num_fields=100).items()}
        except ValueError:
            self._fail(BadRequestError("malformed request target"))
            return
        if self.command == "GET" and url.path == "/events":
            self._events(query.get("follow") in ("1", "true", "yes"), query.get("after"))
            return
        try:
            with self.server.admit():
                found = self.server.router.route(self.command, url.path)
                if found is None:
                    message = f"no endpoint {self.command} {url.path[:200]}"
                    self._send(404, {"error": {"type": "UnknownEndpoint",
                                               "code": ERROR_CODES["UnknownEndpoint"],
                                               "message": message}})
                    return
                handler, params = found
                result = handler(Request(query, body, params,
                                         idempotency_key=self.headers.get("Idempotency-Key")))
        except Exception as exc:
            self._fail(exc)
            return
        self._send(200, result)

    def _events(self, follow: bool, after: str | None = None) -> None:
        """Recent events, then (``follow``) live ones until the client or the daemon goes.

        With ``after`` (a seq): every stored event after it, then (``follow``) each one
        committed later, read from the outbox (none twice, none lost); see
        :meth:`_replay`. A bad ``after`` is a 400 before the stream starts.
        """
        if after is not None:
            if not _SEQ.fullmatch(after) or int(after) > MAX_SEQ:
                self._fail(BadRequestError("after must be a non-negative integer: the seq of "
                                           "the last event seen (0 for every event)"))
                return
            self._replay(int(after), follow)
            return
        try:
            self.connection.settimeout(WRITE_TIMEOUT)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.end_headers()  # HTTP/1.0 without a length: the body ends when we close
            with self.server.events.follow() as (recent, feed):
                for entry in recent:
                    self._line(entry)
                beat = time.monotonic() + HEARTBEAT
                while follow:
                    try:
                        live = feed.get(timeout=FOLLOW_POLL)
                    except queue.Empty:
                        if self._hung_up():
                            return
                        if time.monotonic() >= beat:
                            self.wfile.write(b"\n")  # keep-alive; also notices a gone client
                            self.wfile.flush()
                            beat = time.monotonic() + HEARTBEAT
                        continue
                    if live is None:
                        return
                    self._line(live)
        except OSError:  # the follower went (or stopped reading)
            return

    def _replay(self, after: int, follow: bool) -> None:
        """Every stored event with ``seq > after`` in order, then (``follow``) the later ones
        as they are committed: the outbox is read from a cursor, so the switch from replay
        to live leaves no gap and repeats nothing.

        Headers: ``Coco-Events-Oldest`` is the oldest kept seq (0: none yet); events older
        than the retention window are pruned, and ``Coco-Events-Pruned: N`` says that the
        N events after ``after`` up to the oldest kept one are gone (seqs have no gaps).
        """
        hub = self.server.events
        outbox = hub.log
        try:
            if outbox is None or hub.closed:
                raise ShuttingDownError("the daemon is stopping")
            oldest = outbox.oldest_seq()
        except CocoError as exc:
            self._fail(exc)
            return
        headers = {"Coco-Events-Oldest": str(oldest)}
        if oldest and after < oldest - 1:
            headers["Coco-Events-Pruned"] = str(oldest - 1 - after)
        cursor = after
        try:
            self.connection.settimeout(WRITE_TIMEOUT)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()  # HTTP/1.0 without a length: the body ends when we close
            batch = outbox.since(cursor, REPLAY_PAGE)
            beat = time.monotonic() + HEARTBEAT
            while batch or follow:
                for rec in batch:
                    self._line(entry_of(rec))
                    cursor = rec.seq
                if len(batch) == REPLAY_PAGE:  # more may be stored: read on, no wait
                    batch = outbox.since(cursor, REPLAY_PAGE)
                    continue
                if not follow or hub.closed or self._hung_up():
                    return
                batch = outbox.wait(cursor, FOLLOW_POLL, REPLAY_PAGE)
                if batch:
                    beat = time.monotonic() + HEARTBEAT
                elif time.monotonic() >= beat:
                    self.wfile.write(b"\n")  # keep-alive; also notices a gone client
                    self.wfile.flush()
                    beat = time.monotonic() + HEARTBEAT
        except (OSError, CocoError):  # the follower went, or the wallet closed
            return

    def _hung_up(self) -> bool:
        """True when the follower closed its end (it sends nothing after its request)."""
        poller = select.poll()
        poller.register(self.connection, select.POLLIN)
        events = poller.poll(0)
        if not events:
            return False
        if events[0][1] & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
            return True
        try:
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return peeked == b""

    def _line(self, entry: Entry) -> None:
        self.wfile.write(json.dumps(entry).encode() + b"\n")
        self.wfile.flush()


class Budget(Protocol):
    """A request budget per client address (:class:`~.payments.RequestBudget`)."""

    def take(self, client: str) -> float: ...


class Tokens(Protocol):
    """The bearer token a TCP listener accepts (:class:`~.auth.TokenFile`)."""

    def check(self, values: list[str] | None) -> None: ...


class TcpControlServer(ControlServer):
    """The control API on a TCP port (``coco serve --listen``): the socket's router, event
    stream and bounds, but every request needs the bearer token ``tokens`` accepts (checked
    once the headers are in, before its method, path or body are looked at), a body over
    the limit is a 413, and the requests without a valid token of one client address
    spend ``failures`` (over it: 429)."""

    name = "control-tcp"
    allow_reuse_address = True  # a restarted daemon binds its port again at once

    def __init__(self, address: tuple[str, int], router: Router, events: EventHub,
                 tokens: Tokens, *, failures: Budget | None = None,
                 request_timeout: float = REQUEST_TIMEOUT,
                 max_connections: int = TCP_CONNECTIONS, max_body: int = MAX_BODY) -> None:
        self.router = router
        self.events = events
        self.tokens = tokens
        self.failures = failures
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        BoundedServer.__init__(self, address, TcpControlHandler,
                               request_timeout=request_timeout,
                               max_connections=max_connections, max_body=max_body)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's: no reverse DNS lookup
        self.server_name, self.server_port = "coco", int(self.server_address[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` as bound (the port the OS chose, for port 0)."""
        host, port = self.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://[{text}]:{port}" if ":" in text else f"http://{text}:{port}"


class TcpControlHandler(ControlHandler):
    """A request of the control API on a TCP port: the bearer token first, then as the
    socket's (:class:`ControlHandler`), headers and all."""

    server: TcpControlServer
    too_large = PayloadTooLargeError
    expose_bugs = False  # the port may be reached from afar: a bug's cause stays in the log

    def address_string(self) -> str:
        return str(self.client_address[0])

    def _check_head(self) -> None:
        try:
            self.server.tokens.check(self.headers.get_all("Authorization"))
        except UnauthorizedError:
            budget = self.server.failures
            wait = budget.take(self.address_string()) if budget is not None else 0.0
            if wait:
                raise TooManyRequestsError(
                    f"too many requests without a valid token; retry in {wait:.2f} s",
                    retry_after=wait) from None
            raise


def parse_body(raw: bytes) -> dict[str, object]:
    """A request body: one JSON object within the bounds, else :class:`BadRequestError`."""
    try:
        body = json.loads(raw, parse_constant=_no_constant, parse_float=_finite,
                          object_pairs_hook=_no_duplicates)
    except BadRequestError:
        raise
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
        raise BadRequestError("request body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequestError("request body must be a JSON object")
    _check_bounds(body)
    return body


def _check_bounds(body: dict[str, object]) -> None:
    """Depth, integer range and text of a parsed body, without recursion."""
    stack: list[tuple[object, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise BadRequestError(f"request body nested deeper than {MAX_DEPTH}")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, str):
            _check_text(value)
        elif isinstance(value, int) and not isinstance(value, bool) and value not in INT_RANGE:
            raise BadRequestError("request body holds an integer out of range")


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequestError("request body holds text that is not UTF-8 (a lone surrogate)"
                              ) from None


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    body = dict(pairs)
    if len(body) != len(pairs):
        raise BadRequestError("request body has duplicate keys")
    return body


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")
