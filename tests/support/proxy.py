"""A loopback proxy between the wallet and a mint, for failure and crash tests.

HTTP requests are read one at a time (keep-alive connections carry several), so a
fault can target one request by method and path, and by count ("the 2nd
``POST /v1/swap`` from now"):

- :meth:`FaultProxy.inject` a :class:`Fault`: answer 500, reset the connection,
  forward and drop the answer, or delay it; ``forward`` says whether the mint
  sees the request first (then it did the work and the wallet cannot know);
- :meth:`FaultProxy.tamper` with the mint's answer: forward the request (the mint
  does the work), then answer with what an edit makes of the answer's JSON (a
  lying mint: see :class:`Tamper` and the ready-made edits below it), or with a
  huge body (:class:`Filler`);
- :meth:`FaultProxy.hold` a request and let the test decide. The test is told
  when it arrives; then it kills the wallet while the request has not left and
  calls :meth:`Hold.drop`; or calls :meth:`Hold.forward` (the mint processes it,
  the answer stays held), kills the wallet and drops it; or lets it through
  with :meth:`Hold.release`.

Every request is recorded as an :class:`Exchange` (method, path, status and
bodies), so a test knows exactly what the mint processed: that record is the
crash tests' ground truth. Websocket upgrades (``/v1/ws``) are relayed as raw
bytes; they can be refused (``refuse_ws``) or cut (:meth:`cut_websockets`).

For rate-limit tests the proxy can pose as a reverse proxy: with ``forwarded_for`` set,
each request reaches the mint with that ``X-Forwarded-For`` (Nutshell's limiter then
counts it, where it exempts 127.0.0.1), and with ``retry_after`` set, a 429 from the
mint reaches the wallet with that ``Retry-After``. ``Exchange.at`` is when a request
arrived (``time.monotonic``).

127.0.0.1 only; every thread it starts ends with :meth:`FaultProxy.stop`.
"""

from __future__ import annotations

import contextlib
import enum
import json
import queue
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

#: How long the proxy waits on the mint for one answer.
UPSTREAM_TIMEOUT = 60.0
_MAX_HEAD = 65536


class Fault(enum.Enum):
    ERROR_500 = "500"          # answer HTTP 500 without a NUT error code
    RESET = "reset"            # reset the connection (RST) instead of answering
    DROP_RESPONSE = "drop"     # forward, then close the connection without answering
    DELAY = "delay"            # wait ``delay`` s, then answer (a client timeout, if longer)


@dataclass
class Exchange:
    """One HTTP request the proxy saw, and what the mint answered (if it was asked)."""

    method: str
    path: str
    request: bytes
    status: int | None = None      # the mint's status; None: the mint never answered
    response: bytes | None = None  # the mint's body, decoded (de-chunked, gunzipped)
    fault: str | None = None       # what the proxy did instead of a plain relay
    forwarded: bool = False        # the request was sent to the mint
    at: float = field(default_factory=time.monotonic)  # when it arrived at the proxy

    def request_json(self) -> Any:
        return _json(self.request)

    def response_json(self) -> Any:
        return _json(self.response) if self.response is not None else None

    @property
    def error_code(self) -> int | None:
        """The NUT error code of a failed answer from the mint, if it carried one."""
        if self.status is None or self.status < 400:
            return None
        body = self.response_json()
        code = body.get("code") if isinstance(body, dict) else None
        return code if isinstance(code, int) else None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


class Rule:
    """Matches the ``nth`` request with ``method`` and ``path`` seen after it was added.

    ``path`` is exact, or a prefix when it ends with ``*``. A rule fires once, on
    one request; ``n`` rules added with ``nth=1`` take the next ``n`` requests.
    """

    def __init__(self, method: str, path: str, *, nth: int = 1) -> None:
        if nth < 1:
            raise ValueError("nth counts from 1")
        self.method = method.upper()
        self.path = path
        self._skip = nth - 1
        self.fired = threading.Event()

    def _matches(self, method: str, path: str) -> bool:
        if method != self.method:
            return False
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def _offer(self, method: str, path: str) -> bool:
        """Called under the proxy's lock for every request, in arrival order: counts it,
        and says whether this rule is due. Each rule counts on its own; when several
        are due, the first added takes the request and the others wait for the next."""
        if self.fired.is_set() or not self._matches(method, path):
            return False
        if self._skip:
            self._skip -= 1
            return False
        return True


class FaultRule(Rule):
    def __init__(self, method: str, path: str, fault: Fault, *, nth: int = 1,
                 forward: bool = False, delay: float = 0.0) -> None:
        super().__init__(method, path, nth=nth)
        if fault == Fault.DROP_RESPONSE and not forward:
            raise ValueError("DROP_RESPONSE always forwards the request")
        self.fault = fault
        self.forward = forward
        self.delay = delay


class Hold(Rule):
    """A request kept at the proxy until the test decides what happens to it.

    ``arrived`` is set when the request is held (``wake``, if given, too).
    Then exactly one of: :meth:`release`; :meth:`drop` (possibly after
    :meth:`forward`). :meth:`FaultProxy.stop` drops whatever is still held.
    """

    def __init__(self, method: str, path: str, *, nth: int = 1,
                 wake: threading.Event | None = None) -> None:
        super().__init__(method, path, nth=nth)
        self.arrived = threading.Event()
        self.exchange: Exchange | None = None
        self._wake = wake
        self._orders: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._forwarded = threading.Event()
        self._done = threading.Event()
        self._proxy: FaultProxy | None = None

    def wait(self, timeout: float) -> bool:
        """Whether the request arrived (and is held) within ``timeout`` seconds."""
        return self.arrived.wait(timeout)

    def forward(self, timeout: float = UPSTREAM_TIMEOUT) -> Exchange:
        """Send the request to the mint and wait for its full answer, still held."""
        self._orders.put("forward")
        if not self._forwarded.wait(timeout):
            raise TimeoutError(f"{self.method} {self.path}: no answer from the mint")
        assert self.exchange is not None
        return self.exchange

    def release(self, timeout: float = UPSTREAM_TIMEOUT) -> None:
        """Pass the exchange on (forwarding it first if needed), as if never held."""
        self._orders.put("release")
        if not self._done.wait(timeout):
            raise TimeoutError(f"{self.method} {self.path}: release did not finish")

    def drop(self, timeout: float = 10.0) -> None:
        """Close the wallet's connection; an unforwarded request never reaches the mint.

        On a hold that has not fired yet, this withdraws it.
        """
        self._orders.put("drop")
        if self._proxy is not None and self._proxy._withdraw(self):
            return
        if not self._done.wait(timeout):
            raise TimeoutError(f"{self.method} {self.path}: drop did not finish")

    def _arrive(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.arrived.set()
        if self._wake is not None:
            self._wake.set()


@dataclass(frozen=True)
class Filler:
    """An answer body of ``size`` bytes of JSON whitespace, written as it is sent."""

    size: int


#: What an edit returns: the new answer's JSON value, raw bytes, or a :class:`Filler`.
Edit = Callable[[Any], Any]


class Tamper(Rule):
    """Forward the request, then answer with ``edit(the mint's JSON answer)`` instead.

    The status stays the mint's (``status`` overrides it). ``original`` and ``sent``
    record what the mint said and what the wallet got, for the test's ground truth.
    """

    def __init__(self, method: str, path: str, edit: Edit, *, nth: int = 1,
                 status: int | None = None) -> None:
        super().__init__(method, path, nth=nth)
        self.edit = edit
        self.status = status
        self.original: Any = None
        self.sent: Any = None
        self.error: str | None = None  # the edit failed on this answer (the wallet saw a reset)


def forge_signature(answer: Any) -> Any:
    """The first signature's ``C_`` replaced by another valid point; its DLEQ left as is."""
    sigs = _signature_list(answer)
    sigs[0]["C_"] = G_HEX if sigs[0]["C_"].lower() != G_HEX else H_HEX
    return answer


def strip_dleq(answer: Any) -> Any:
    """Every signature (and change entry) without its DLEQ proof, as ``null``."""
    for sig in _signature_list(answer):
        sig["dleq"] = None
    return answer


def drop_signature(answer: Any) -> Any:
    """The last signature left out."""
    _signature_list(answer).pop()
    return answer


def double_amount(answer: Any) -> Any:
    """The first signature claims twice its amount (a key the wallet has)."""
    sigs = _signature_list(answer)
    sigs[0]["amount"] *= 2
    return answer


def as_array(answer: Any) -> Any:
    return [answer]


def as_string(answer: Any) -> Any:
    return "ok"


def as_number(answer: Any) -> Any:
    return 42


def as_null(answer: Any) -> Any:
    return None


def not_json(answer: Any) -> Any:
    return b"<html>not json</html>"


def huge(size: int = 64 * 1024 * 1024) -> Edit:
    return lambda answer: Filler(size)


def set_fee(ppk: int) -> Edit:
    """``/v1/keysets``: every keyset listed with input fee ``ppk`` (its id says otherwise)."""
    def edit(answer: Any) -> Any:
        for ks in answer["keysets"]:
            ks["input_fee_ppk"] = ppk
        return answer
    return edit


G_HEX = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
H_HEX = "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5"  # 2*G


def _signature_list(answer: Any) -> list[dict[str, Any]]:
    for key in ("signatures", "promises", "change"):
        found = answer.get(key) if isinstance(answer, dict) else None
        if isinstance(found, list) and found:
            return found
    raise ValueError("the mint's answer carries no signatures to tamper with")


@dataclass
class _Message:
    head: bytes                    # start line and headers, with the blank line
    body: bytes                    # as sent on the wire (maybe chunked)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def raw(self) -> bytes:
        return self.head + self.body

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


class _Closed(Exception):
    """The peer closed the connection before a whole message arrived."""


class _Conn:
    """A socket with a read buffer, for reading HTTP messages off it."""

    def __init__(self, sock: socket.socket, buf: bytes = b"") -> None:
        self.sock = sock
        self.buf = buf

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            raise _Closed
        self.buf += chunk

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if len(self.buf) > _MAX_HEAD:
                raise _Closed
            self._fill()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_eof(self) -> bytes:
        with contextlib.suppress(_Closed):
            while True:
                self._fill()
        out, self.buf = self.buf, b""
        return out

    def read_message(self, *, response_to: str | None = None) -> tuple[_Message, bytes]:
        """One HTTP message; returns it and its body decoded (de-chunked, gunzipped)."""
        head = self.read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        no_body = False
        if response_to is not None:
            status = int(lines[0].split()[1])
            no_body = response_to == "HEAD" or status in (204, 304) or 100 <= status < 200
        if no_body:
            body = decoded = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body, decoded = self._read_chunked()
        elif "content-length" in headers:
            body = decoded = self.read_exact(int(headers["content-length"]))
        elif response_to is not None:
            body = decoded = self.read_to_eof()
            headers["connection"] = "close"
        else:
            body = decoded = b""
        encoding = headers.get("content-encoding", "").lower()
        if encoding in ("gzip", "deflate") and decoded:
            with contextlib.suppress(zlib.error):
                decoded = zlib.decompress(decoded, 47 if encoding == "gzip" else 15)
        return _Message(head, body, headers), decoded

    def _read_chunked(self) -> tuple[bytes, bytes]:
        raw, data = b"", b""
        while True:
            size_line = self.read_until(b"\r\n")
            raw += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    line = self.read_until(b"\r\n")
                    raw += line
                    if line == b"\r\n":
                        return raw, data
            chunk = self.read_exact(size + 2)
            raw += chunk
            data += chunk[:-2]


class FaultProxy:
    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.refuse_ws = False
        self.forwarded_for: str | None = None  # sent to the mint as X-Forwarded-For
        self.retry_after: str | None = None    # added to the mint's 429 answers
        self.ws_attempts = 0
        self.ws_accepted = 0
        self.ws_attempted = threading.Event()   # set on every upgrade attempt
        self.exchanges: list[Exchange] = []
        self._rules: list[Rule] = []
        self._holds: list[Hold] = []
        self._lock = threading.Lock()
        self._ws_socks: list[socket.socket] = []
        self._all_socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        self._in_flight = 0                   # requests sent to the mint, answer not read yet
        self._settled = threading.Condition(self._lock)
        self._spawn(self._accept_loop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- what a test asks for --------------------------------------------------------------

    def inject(self, method: str, path: str, fault: Fault, *, nth: int = 1,
               forward: bool = False, delay: float = 0.0) -> FaultRule:
        """Apply ``fault`` to the ``nth`` matching request from now on (once)."""
        return self._add(FaultRule(method, path, fault, nth=nth, forward=forward, delay=delay))

    def hold(self, method: str, path: str, *, nth: int = 1,
             wake: threading.Event | None = None) -> Hold:
        """Hold the ``nth`` matching request from now on, until the test decides."""
        return self._add(Hold(method, path, nth=nth, wake=wake))

    def tamper(self, method: str, path: str, edit: Edit, *, nth: int = 1,
               status: int | None = None) -> Tamper:
        """Answer the ``nth`` matching request from now on with ``edit`` of the mint's
        answer (once); the request reaches the mint, which does the work."""
        rule: Tamper = self._add(Tamper(method, path, edit, nth=nth, status=status))
        return rule

    def remove(self, rule: Rule) -> bool:
        """Withdraw a rule; False when it has fired already (then it is taking effect)."""
        return self._withdraw(rule)

    def _withdraw(self, rule: Rule) -> bool:
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)
                return True
            return False

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def seen(self, method: str | None = None, path: str | None = None) -> list[Exchange]:
        """The exchanges recorded so far (for ``method`` and ``path``, when given)."""
        with self._lock:
            return [e for e in self.exchanges
                    if (method is None or e.method == method.upper())
                    and (path is None or e.path == path)]

    def wait_settled(self, timeout: float = UPSTREAM_TIMEOUT) -> bool:
        """Wait until every request sent to the mint has its answer recorded (a killed
        wallet may leave one in flight that the mint still processes)."""
        with self._settled:
            return self._settled.wait_for(lambda: self._in_flight == 0, timeout)

    def _add(self, rule: Any) -> Any:
        with self._lock:
            self._rules.append(rule)
            if isinstance(rule, Hold):
                rule._proxy = self
                self._holds.append(rule)
        return rule

    # --- plumbing ------------------------------------------------------------------------

    def _spawn(self, fn: Any, *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True, name="fault-proxy")
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._all_socks.add(sock)
        if self._stopped.is_set():  # stop() ran meanwhile: do not outlive it
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._all_socks.discard(sock)
        sock.close()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._track(client)
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        conn = _Conn(client)
        try:
            while not self._stopped.is_set():
                try:
                    request, body = conn.read_message()
                except (_Closed, ValueError, IndexError):
                    return
                start = request.head.split(b"\r\n", 1)[0].decode("latin-1").split()
                method, target = start[0].upper(), start[1] if len(start) > 1 else "/"
                path = urlsplit(target).path
                if request.headers.get("upgrade", "").lower() == "websocket" or \
                        path.startswith("/v1/ws"):
                    self._relay_websocket(client, request.raw + conn.buf)
                    return
                exchange = Exchange(method, path, body)
                with self._lock:
                    self.exchanges.append(exchange)
                    due = [r for r in self._rules if r._offer(method, path)]
                    rule = due[0] if due else None
                    if rule is not None:
                        rule.fired.set()
                        self._rules.remove(rule)
                if not self._handle(client, request, exchange, rule):
                    return
        finally:
            self._forget(client)

    def _handle(self, client: socket.socket, request: _Message, exchange: Exchange,
                rule: Rule | None) -> bool:
        """Serve one request; False when the client connection must end."""
        if isinstance(rule, Hold):
            return self._held(client, request, exchange, rule)
        if rule is None:
            answer = self._forward(request, exchange)
            return self._answer(client, answer, request)
        if isinstance(rule, Tamper):
            return self._tampered(client, request, exchange, rule)
        assert isinstance(rule, FaultRule)
        exchange.fault = rule.fault.value
        if rule.fault == Fault.DELAY:
            answer = self._forward(request, exchange) if rule.forward else None
            self._stopped.wait(rule.delay)
            if answer is None:
                answer = self._forward(request, exchange)
            return self._answer(client, answer, request)
        if rule.forward:
            self._forward(request, exchange)
        if rule.fault == Fault.ERROR_500:
            body = b'{"detail":"fault injected by the test proxy"}'
            answer = _Message(b"HTTP/1.1 500 Internal Server Error\r\n"
                              b"content-type: application/json\r\n"
                              + f"content-length: {len(body)}\r\n\r\n".encode(), body)
            return self._answer(client, answer, request)
        if rule.fault == Fault.RESET:
            _reset(client)
        return False  # DROP_RESPONSE, RESET: the connection ends without an answer

    def _tampered(self, client: socket.socket, request: _Message, exchange: Exchange,
                  rule: Tamper) -> bool:
        exchange.fault = "tamper"
        answer = self._forward(request, exchange)
        if answer is None or exchange.status is None:
            return self._answer(client, None, request)
        rule.original = exchange.response_json()
        try:
            rule.sent = rule.edit(json.loads(json.dumps(rule.original)))  # a deep copy
        except Exception as exc:  # the edit did not fit the answer: reset, and say why
            rule.error = f"{type(exc).__name__}: {exc}"
            _reset(client)
            return False
        status = rule.status or exchange.status
        sent = rule.sent
        size = sent.size if isinstance(sent, Filler) else 0
        body = (b"" if isinstance(sent, Filler) else sent if isinstance(sent, bytes)
                else json.dumps(sent).encode())
        head = (f"HTTP/1.1 {status} Tampered\r\ncontent-type: application/json\r\n"
                f"content-length: {size or len(body)}\r\n\r\n").encode()
        try:
            client.sendall(head + body)
            chunk = b" " * 65536
            for _ in range(size // len(chunk)):
                if self._stopped.is_set():
                    return False
                client.sendall(chunk)
            client.sendall(b" " * (size % len(chunk)))
        except OSError:  # the wallet stopped reading: what a bounded client does
            return False
        return request.keep_alive

    def _held(self, client: socket.socket, request: _Message, exchange: Exchange,
              hold: Hold) -> bool:
        exchange.fault = "hold"
        hold._arrive(exchange)
        answer: _Message | None = None
        try:
            while True:
                try:
                    order = hold._orders.get(timeout=0.2)
                except queue.Empty:
                    if self._stopped.is_set():
                        return False
                    continue
                if order == "drop":
                    return False
                if answer is None:
                    answer = self._forward(request, exchange)
                    hold._forwarded.set()
                if order == "release":
                    return self._answer(client, answer, request)
        finally:
            hold._forwarded.set()
            hold._done.set()

    def _forward(self, request: _Message, exchange: Exchange) -> _Message | None:
        """Send one request to the mint on a connection of its own; read the whole answer."""
        exchange.forwarded = True
        with self._lock:
            self._in_flight += 1
        try:
            return self._exchange(request, exchange)
        finally:
            with self._settled:
                self._in_flight -= 1
                self._settled.notify_all()

    def _exchange(self, request: _Message, exchange: Exchange) -> _Message | None:
        try:
            upstream = socket.create_connection(self._upstream, timeout=5)
        except OSError:
            return None
        self._track(upstream)
        try:
            upstream.settimeout(UPSTREAM_TIMEOUT)
            upstream.sendall(_with_header(request, "X-Forwarded-For", self.forwarded_for).raw)
            answer, decoded = _Conn(upstream).read_message(response_to=exchange.method)
        except (OSError, _Closed, ValueError, IndexError):
            return None
        finally:
            self._forget(upstream)
        exchange.status = int(answer.head.split(b" ", 2)[1])
        exchange.response = decoded
        if exchange.status == 429:
            answer = _with_header(answer, "Retry-After", self.retry_after)
        return answer

    @staticmethod
    def _answer(client: socket.socket, answer: _Message | None, request: _Message) -> bool:
        if answer is None:  # the mint could not be reached: the wallet sees a reset
            _reset(client)
            return False
        try:
            client.sendall(answer.raw)
        except OSError:
            return False
        return answer.keep_alive and request.keep_alive

    # --- websockets: raw relay -----------------------------------------------------------

    def _relay_websocket(self, client: socket.socket, head: bytes) -> None:
        with self._lock:
            self.ws_attempts += 1
        self.ws_attempted.set()
        if self.refuse_ws:
            with contextlib.suppress(OSError):
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                               b"Connection: close\r\n\r\n")
            return
        try:
            upstream = socket.create_connection(self._upstream, timeout=5)
            upstream.settimeout(None)
        except OSError:
            return
        self._track(upstream)
        with self._lock:
            self.ws_accepted += 1
            self._ws_socks.extend([client, upstream])
        try:
            upstream.sendall(head)
        except OSError:
            self._forget(upstream)
            return
        self._spawn(self._pump, upstream, client)
        self._pump(client, upstream)
        self._forget(upstream)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut_websockets(self) -> None:
        """Reset every websocket connection now open (as a network failure would)."""
        with self._lock:
            socks, self._ws_socks = self._ws_socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):  # wakes the accept() of the accept loop
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            socks = list(self._all_socks)
            holds, self._holds = self._holds, []
            self._rules.clear()
        for h in holds:
            h._orders.put("drop")
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(timeout=5)


def _with_header(message: _Message, name: str, value: str | None) -> _Message:
    """``message`` with the header ``name: value`` added (as it is when ``value`` is None)."""
    if value is None:
        return message
    head = message.head[:-2] + f"{name}: {value}\r\n\r\n".encode("latin-1")
    return _Message(head, message.body, {**message.headers, name.lower(): value})


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN, as a crashed peer or a middlebox would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
