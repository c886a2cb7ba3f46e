"""HTTP over the daemon's Unix socket: parse, bound, route, answer JSON, never a traceback.

The socket is created 0600 (in the 0700 data directory). A request body is at
most :data:`MAX_BODY` bytes of one JSON object; a malformed request is a 400,
every error is ``{"error": {"type": ..., "message": ...}}`` with a 4xx status
split by what the caller can do (5xx only for a bug, whose traceback goes to the
log, never to the caller). The endpoints are :mod:`coco_actors.control.api`'s;
``GET /events`` (a stream) is served here, from the :class:`EventHub`.

Threads: :meth:`ControlServer.serve_until` is the accept loop (the daemon runs it
on a supervised thread); each request runs on a thread of its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import socketserver
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from coco_actors.control.api import Handler, Request
from coco_actors.control.errors import BadRequestError, ShuttingDownError
from coco_actors.control.events import Entry, EventHub
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

log = logging.getLogger(__name__)

#: Largest request body, in bytes.
MAX_BODY = 1 << 20
#: Seconds a connection may take to send its request (headers and body).
REQUEST_TIMEOUT = 60.0
#: Seconds between keep-alive blank lines of a followed event stream.
HEARTBEAT = 15.0
#: Seconds the accept loop waits for a connection before it looks at its stop event.
ACCEPT_POLL = 0.1


class Router(Protocol):
    """What the server needs of the endpoints (:class:`~coco_actors.control.api.ControlApi`)."""

    def route(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None: ...


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


def error_body(exc: BaseException) -> tuple[int, dict[str, object]]:
    """The status and JSON body of an error answer; a bug says only its class and message."""
    status = next((s for cls, s in _STATUS if isinstance(exc, cls)), 500)
    err: dict[str, object] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, MintError):
        err["mint_url"] = exc.mint_url
    if isinstance(exc, MintRejectedError):
        err["code"] = exc.code
    if isinstance(exc, InsufficientFundsError):
        err.update(needed=exc.needed, available=exc.available)
    if status == 500:
        err = {"type": "InternalError", "message": f"{type(exc).__name__}: {exc}"}
    return status, {"error": err}


class ControlServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` on an ``AF_UNIX`` socket created with mode 0600.

    It also counts the requests in flight, so a shutdown can refuse new ones and
    let the running ones finish (:meth:`refuse_new`, :meth:`drain`).
    """

    address_family = socket.AF_UNIX
    allow_reuse_address = False
    daemon_threads = True
    timeout = ACCEPT_POLL  # of handle_request: how often the accept loop looks up

    def __init__(self, path: Path, router: Router, events: EventHub) -> None:
        self.path = path
        self.router = router
        self.events = events
        self._gate = threading.Condition()
        self._accepting = True
        self._inflight = 0
        super().__init__(str(path), ControlHandler)  # type: ignore[arg-type] # typeshed: inet

    def server_bind(self) -> None:
        old = os.umask(0o177)  # the socket is born 0600
        try:
            socketserver.TCPServer.server_bind(self)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self.server_name, self.server_port = "coco", 0

    def serve_until(self, stop: threading.Event) -> None:
        """The accept loop: hand each connection to a thread of its own until ``stop``."""
        while not stop.is_set():
            self.handle_request()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request that failed outside an endpoint: a peer that went is no news, a bug is."""
        if isinstance(sys.exc_info()[1], OSError):
            log.debug("control: connection dropped", exc_info=True)
        else:
            log.exception("control: a request failed")

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
        with self._gate:
            self._accepting = False

    def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for the requests in flight; how many are still running."""
        with self._gate:
            self._gate.wait_for(lambda: self._inflight == 0, timeout=timeout)
            return self._inflight


class ControlHandler(BaseHTTPRequestHandler):
    """One connection, one request (HTTP/1.0), on its own thread."""

    server: ControlServer
    server_version = "coco-daemon"
    timeout = REQUEST_TIMEOUT

    def address_string(self) -> str:
        return "control"  # a Unix socket peer has no address

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base signature)
        log.debug("control: " + format, *args)  # paths only: bodies hold tokens

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """The base class's own errors (bad request line, unsupported method) as JSON too."""
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        self._send(code, {"error": {"type": "BadRequestError" if code < 500 else "HTTPError",
                                    "message": message or explain or f"HTTP {code}"}})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if method == "GET" and url.path == "/events":
            self._events(query.get("follow") in ("1", "true", "yes"))
            return
        try:
            with self.server.admit():
                found = self.server.router.route(method, url.path)
                if found is None:
                    self._send(404, {"error": {"type": "UnknownEndpoint",
                                               "message": f"no endpoint {method} {url.path}"}})
                    return
                handler, params = found
                result = handler(Request(query, self._body(), params))
        except Exception as exc:
            status, body = error_body(exc)
            if status == 500:
                log.exception("control: %s %s failed", method, url.path)
            self._send(status, body)
            return
        self._send(200, result)

    def _body(self) -> dict[str, object]:
        length_header = (self.headers.get("Content-Length") or "0").strip()
        if not length_header.isdigit():
            raise BadRequestError(f"bad Content-Length {length_header!r}")
        length = int(length_header)
        if length > MAX_BODY:
            raise BadRequestError(f"request body over {MAX_BODY} bytes")
        if not length:
            return {}
        try:
            raw = self.rfile.read(length)
        except OSError:  # a timeout too: the body never came
            raise BadRequestError("request body incomplete") from None
        try:
            body = json.loads(raw, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise BadRequestError("request body is not JSON") from None
        if not isinstance(body, dict):
            raise BadRequestError("request body must be a JSON object")
        return body

    def _send(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        with contextlib.suppress(OSError):  # the caller went (or stopped reading)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def _events(self, follow: bool) -> None:
        """Recent events, then (``follow``) live ones until the client or the daemon goes."""
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.end_headers()  # HTTP/1.0 without a length: the body ends when we close
            with self.server.events.follow() as (recent, feed):
                for entry in recent:
                    self._line(entry)
                while follow:
                    try:
                        live = feed.get(timeout=HEARTBEAT)
                    except queue.Empty:
                        self.wfile.write(b"\n")  # keep-alive; also notices a gone client
                        self.wfile.flush()
                        continue
                    if live is None:
                        return
                    self._line(live)
        except OSError:  # the follower went (or stopped reading)
            return

    def _line(self, entry: Entry) -> None:
        self.wfile.write(json.dumps(entry).encode() + b"\n")
        self.wfile.flush()


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")
