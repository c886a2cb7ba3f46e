"""The public payments listener: NUT-18's HTTP POST transport, ``POST /payments/<request id>``.

``coco serve --payments-listen [HOST:]PORT`` starts it beside the control socket.
Unlike the socket (0600, the wallet's owner only), anyone who can reach the port
talks to it, so it serves one route and bounds everything before the wallet sees
a byte:

- ``POST /payments/<request id>`` only: every other path is a 404 (every control
  path too: the endpoints of :mod:`.api` are not routed here at all), another
  method on the route a 405;
- a body of at most :data:`MAX_PAYMENT_BODY` bytes, else 413, answered from the
  ``Content-Length`` before the body is read (never waited for); JSON bodies only;
- the whole request within :data:`PAYMENT_REQUEST_TIMEOUT` s (a client that sends
  slowly is cut off: 408), at most :data:`PAYMENT_CONNECTIONS` connections at once;
- a request budget per client address (:class:`RequestBudget`, a token bucket:
  :data:`DEFAULT_RATE` per second), over it 429 with ``Retry-After``;
- every answer JSON; a bug is a 500 that says nothing of its cause (the log has it).

The bounds are the control server's own (:class:`~.server.BoundedServer`); only the
limits and the route differ. What a payload means is the wallet's to decide: the
handler hands the request id and the body to ``claim`` (the daemon's
:meth:`~.api.ControlApi.claim_payment`, i.e. ``coco.requests.claim``) and answers
its result (the same result again for the same payload).

It binds 127.0.0.1 unless a host is given explicitly (``--payments-listen
0.0.0.0:8080``): put it behind a TLS reverse proxy then, and give its public URL
with ``--payments-url`` (it goes into every request the daemon creates).

Threads: :meth:`~.server.BoundedServer.serve_until` is the accept loop (the daemon
runs it on a supervised thread); each connection runs on a thread of its own.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from coco_actors.control.errors import (
    BadRequestError,
    MethodNotAllowedError,
    PayloadTooLargeError,
    TooManyRequestsError,
)
from coco_actors.control.server import BoundedHandler, BoundedServer
from coco_actors.errors import ERROR_CODES, InvalidInputError, NotFoundError

#: Largest payment body, in bytes (a payload of a few hundred proofs fits).
MAX_PAYMENT_BODY = 64 * 1024
#: Seconds a client may take, in total, to send its request.
PAYMENT_REQUEST_TIMEOUT = 5.0
#: Connections served at once; more wait in the listen backlog.
PAYMENT_CONNECTIONS = 64
#: Requests per second per client address (also the burst a quiet client may send at once).
DEFAULT_RATE = 10.0
#: Client addresses whose budgets are remembered; beyond it the least recently seen go.
MAX_CLIENTS = 4096
#: The host bound when ``--payments-listen`` gives only a port.
DEFAULT_HOST = "127.0.0.1"
#: The one route; a request id is short and URL-safe.
_ROUTE = re.compile(r"/payments/(?P<request_id>[^/]*)\Z")
_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,128}", re.ASCII)

#: ``claim(request_id, body)``: the JSON answer to one payment (raises a CocoError).
Claim = Callable[[str, dict[str, object]], object]


def parse_listen(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT`` as ``(host, port)``; loopback unless a
    host is given. Raises :class:`InvalidInputError`."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host = DEFAULT_HOST
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not re.fullmatch(r"[0-9]{1,5}", port, re.ASCII) or int(port) > 65535:
        raise InvalidInputError(f"{text!r} is not PORT or HOST:PORT (a port up to 65535)")
    return host, int(port)


class RequestBudget:
    """A token bucket per client address: ``rate`` requests per second, ``burst`` at once.

    The buckets of at most ``max_clients`` addresses are kept (the least recently
    seen go first), so a flood of addresses bounds memory, not service.
    Threads: any connection's thread; one lock.
    """

    def __init__(self, rate: float = DEFAULT_RATE, burst: float | None = None, *,
                 max_clients: int = MAX_CLIENTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise InvalidInputError(f"the request budget must be positive, got {rate}")
        self.rate = rate
        self.burst = max(1.0, rate if burst is None else burst)
        self._max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def take(self, client: str) -> float:
        """Spend one request of ``client``: 0 when it may go, else the seconds until it may."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[client] = (tokens - 1 if not wait else tokens, now)
            while len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
            return wait


class PaymentsServer(BoundedServer):
    """The public listener (TCP) of one daemon: its bounds, its budget, its ``claim``."""

    name = "payments"
    allow_reuse_address = True  # a restarted daemon binds its port again at once

    def __init__(self, address: tuple[str, int], claim: Claim, *,
                 rate: float = DEFAULT_RATE,
                 request_timeout: float = PAYMENT_REQUEST_TIMEOUT,
                 max_connections: int = PAYMENT_CONNECTIONS,
                 max_body: int = MAX_PAYMENT_BODY) -> None:
        self.claim = claim
        self.budget = RequestBudget(rate)
        self.address_family = _family(address[0])
        super().__init__(address, PaymentsHandler, request_timeout=request_timeout,
                         max_connections=max_connections, max_body=max_body)

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` as bound (the port the OS chose, for port 0)."""
        host, port = self.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://[{text}]:{port}" if ":" in text else f"http://{text}:{port}"


def _family(host: str) -> socket.AddressFamily:
    try:
        return (socket.AF_INET6 if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
                else socket.AF_INET)
    except ValueError:  # a name (localhost): resolved as IPv4, as DEFAULT_HOST
        return socket.AF_INET


class PaymentsHandler(BoundedHandler):
    """One payment (or a stranger's probe), on its connection's own thread."""

    server: PaymentsServer
    methods = None  # any method reaches the route: 404 off it, 405 on it
    too_large = PayloadTooLargeError
    expose_bugs = False

    def address_string(self) -> str:
        return str(self.client_address[0])

    def _dispatch(self, body: dict[str, object]) -> None:
        try:
            wait = self.server.budget.take(self.address_string())
            if wait:
                raise TooManyRequestsError(
                    f"over the budget of {self.server.budget.rate:g} requests per second;"
                    f" retry in {wait:.2f} s", retry_after=wait)
            path = urlsplit(self.path).path
            match = _ROUTE.match(path)
            if match is None:
                message = f"no endpoint {self.command[:20]} {path[:200]}"
                self._send(404, {"error": {"type": "UnknownEndpoint",
                                           "code": ERROR_CODES["UnknownEndpoint"],
                                           "message": message}})
                return
            request_id = unquote(match["request_id"])
            if not _REQUEST_ID.fullmatch(request_id):
                raise NotFoundError(f"no payment request {request_id[:128]!r}")
            if self.command != "POST":
                raise MethodNotAllowedError(f"{self.command[:20]} is not served; use POST",
                                            allow=("POST",))
            if not body:
                raise BadRequestError("send the payment payload (NUT-18) as the JSON body")
            with self.server.admit():
                result = self.server.claim(request_id, body)
        except Exception as exc:
            self._fail(exc)
            return
        self._send(200, result)


def describe(server: PaymentsServer, public_url: str | None) -> dict[str, Any]:
    """The listener as ``/status`` shows it."""
    return {"listen": server.url, "url": public_url or server.url,
            "rate": server.budget.rate, "max_body": server.max_body,
            "request_timeout": server.request_timeout,
            "max_connections": server.max_connections}
