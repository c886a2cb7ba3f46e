"""A hostile client of the control socket, in-process: a real ControlServer on a Unix socket,
raw bytes on the wire, a stand-in for the wallet's endpoints.

Every malformed request gets a 4xx with the JSON error body (never a 5xx, an HTML page,
a traceback or a hang); a client that stalls holds neither a thread nor a shutdown; 64
clients at once are all served; the client tells a busy daemon from a missing one.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_support import read_all

from coco_actors.control import (
    ControlClient,
    DaemonBusy,
    DaemonUnavailable,
)
from coco_actors.control import client as client_module
from coco_actors.control.api import Request
from coco_actors.control.events import EventHub
from coco_actors.control.server import LISTEN_BACKLOG, MAX_BODY, MAX_DEPTH, ControlServer

#: How long a test waits for what must happen at once (it is a bound, not a pause).
BOUND = 10.0
#: The request timeout of the servers of these tests.
REQUEST_TIMEOUT = 1.0
CONCURRENT = 64


class _Api:
    """``/echo`` answers what it got; ``/gather`` answers once ``CONCURRENT`` callers are in;
    ``/long`` answers after twice the request timeout (a long poll)."""

    def __init__(self) -> None:
        self.gather = threading.Barrier(CONCURRENT, timeout=BOUND * 3)

    def route(self, method: str, path: str) -> Any:
        if path == "/echo":
            return (lambda req: {"query": req.query, "body": req.body}), {}
        if path == "/gather":
            return (lambda req: {"party": self.gather.wait()}), {}
        if path == "/long":
            def long(req: Request) -> Any:
                threading.Event().wait(2 * REQUEST_TIMEOUT)  # the long poll's own timeout
                return {"waited": True}
            return long, {}
        return None


@dataclass
class _Served:
    srv: ControlServer
    stop: threading.Event
    thread: threading.Thread | None

    @property
    def path(self) -> Path:
        return self.srv.path

    def start(self) -> None:
        self.thread = threading.Thread(target=self.srv.serve_until, args=(self.stop,),
                                       daemon=True)
        self.thread.start()


def _serve(path: Path, *, start: bool = True, **kwargs: Any) -> _Served:
    served = _Served(ControlServer(path, _Api(), EventHub(), **kwargs), threading.Event(), None)
    if start:
        served.start()
    return served


@pytest.fixture
def served(short_tmp: Path) -> Iterator[_Served]:
    s = _serve(short_tmp / "control.sock", request_timeout=REQUEST_TIMEOUT)
    yield s
    s.stop.set()
    if s.thread is not None:
        s.thread.join(BOUND)
    s.srv.server_close()


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(BOUND)
    sock.connect(str(path))
    return sock


def _exchange(path: Path, raw: bytes, *, shut: bool = True) -> tuple[int, dict[str, str], bytes]:
    with _connect(path) as sock:
        try:
            sock.sendall(raw)
            if shut:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before all of it went: read what it said
        return _parse(read_all(sock))


def _parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, sep, body = answer.partition(b"\r\n\r\n")
    assert sep, f"not an HTTP answer: {answer[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    version, status, _ = lines[0].split(" ", 2)
    assert version == "HTTP/1.0"
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(status), headers, body


def _assert_json_error(status: int, headers: dict[str, str], body: bytes,
                       expected: int | None = None) -> dict[str, Any]:
    assert 400 <= status < 500, (status, body[:300])
    if expected is not None:
        assert status == expected, (status, body[:300])
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    err = json.loads(body)["error"]
    assert isinstance(err["type"], str) and isinstance(err["message"], str)
    assert "Traceback" not in err["message"] and "<html" not in body.decode().lower()
    return err  # type: ignore[no-any-return]


def _post(body: bytes, *extra: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in extra)
    return (f"POST /echo HTTP/1.0\r\n{head}Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body


FRAMING = [
    ("superscript digit length", b"POST /echo HTTP/1.0\r\nContent-Length: \xb2\r\n\r\n{}",
     400, "bad Content-Length"),
    ("5000-digit length", b"POST /echo HTTP/1.0\r\nContent-Length: " + b"9" * 5000
     + b"\r\n\r\n{}", 400, f"over {MAX_BODY} bytes"),
    ("signed length", b"POST /echo HTTP/1.0\r\nContent-Length: +2\r\n\r\n{}", 400,
     "bad Content-Length"),
    ("hex length", b"POST /echo HTTP/1.0\r\nContent-Length: 0x2\r\n\r\n{}", 400,
     "bad Content-Length"),
    ("empty length", b"POST /echo HTTP/1.0\r\nContent-Length:\r\n\r\n{}", 400,
     "bad Content-Length"),
    ("two lengths", b"POST /echo HTTP/1.0\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
     400, "conflicting Content-Length"),
    ("truncated body", b"POST /echo HTTP/1.0\r\nContent-Length: 10\r\n\r\n{}", 400,
     "incomplete: 2 of 10 bytes"),
    ("length over the limit", f"POST /echo HTTP/1.0\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n"
     .encode(), 400, f"over {MAX_BODY} bytes"),
    ("chunked", b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
     411, "Transfer-Encoding is not supported"),
    ("chunked and a length", b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Length: 2\r\n\r\n{}", 411, "Transfer-Encoding"),
    ("garbage line", b"GARBAGE\r\n\r\n", 400, ""),
    ("HTTP/0.9 line", b"GET /echo\r\n", 400, ""),
    ("unknown version", b"GET /echo HTTP/9.9\r\n\r\n", 400, ""),
    ("malformed version", b"GET /echo HTTP/1.x\r\n\r\n", 400, ""),
    ("request line too long", b"GET /" + b"a" * 70000 + b" HTTP/1.0\r\n\r\n", 414, ""),
    ("too many headers", b"GET /echo HTTP/1.0\r\n" + b"X-A: 1\r\n" * 120 + b"\r\n", 431, ""),
    ("header line too long", b"GET /echo HTTP/1.0\r\nX-A: " + b"a" * 70000 + b"\r\n\r\n",
     431, ""),
    ("bad target", b"GET http://[x/echo HTTP/1.0\r\n\r\n", 400, "malformed request target"),
    ("many query fields", b"GET /echo?" + b"&".join(b"a%d=1" % i for i in range(200))
     + b" HTTP/1.0\r\n\r\n", 400, "malformed request target"),
    ("not JSON", _post(b"{not json"), 400, "not JSON"),
    ("not UTF-8", _post(b'{"a": "\xff"}'), 400, "not JSON"),
    ("a JSON array", _post(b"[1, 2]"), 400, "must be a JSON object"),
    ("JSON null", _post(b"null"), 400, "must be a JSON object"),
    ("NaN", _post(b'{"timeout": NaN}'), 400, "not JSON"),
    ("-Infinity", _post(b'{"timeout": -Infinity}'), 400, "not JSON"),
    ("a float out of range", _post(b'{"timeout": 1e400}'), 400, "not JSON"),
    ("an integer out of range", _post(b'{"amount": %d}' % (1 << 70)), 400, "out of range"),
    ("a 5000-digit integer", _post(b'{"amount": ' + b"7" * 5000 + b"}"), 400, "not JSON"),
    ("a lone surrogate", _post(b'{"token": "\\ud800"}'), 400, "lone surrogate"),
    ("a lone surrogate key", _post(b'{"\\udfff": 1}'), 400, "lone surrogate"),
    ("duplicate keys", _post(b'{"amount": 1, "amount": 2}'), 400, "duplicate keys"),
    ("nested a little too deep", _post(b'{"a": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}"),
     400, f"nested deeper than {MAX_DEPTH}"),
    ("nested very deep", _post(b'{"a": ' + b"[" * 200000 + b"]" * 200000 + b"}"), 400,
     "not JSON"),
    ("a body over the limit", _post(b'{"a": "' + b"x" * MAX_BODY + b'"}'), 400,
     f"over {MAX_BODY} bytes"),
]
METHODS = ["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "CONNECT", "get", "BREW"]


@pytest.mark.parametrize("raw, status, complaint", [f[1:] for f in FRAMING],
                         ids=[f[0] for f in FRAMING])
def test_malformed_framing_is_a_4xx_json_error(served, raw, status, complaint):
    err = _assert_json_error(*_exchange(served.path, raw), expected=status)
    assert complaint in err["message"]
    with ControlClient(served.path.parent) as client:  # and it still serves
        assert client.post("/echo", {"x": 1})["body"] == {"x": 1}


@pytest.mark.parametrize("method", METHODS)
def test_an_unsupported_method_is_a_405_with_allow(served, method):
    status, headers, body = _exchange(served.path, f"{method} /echo HTTP/1.0\r\n\r\n".encode())
    err = _assert_json_error(status, headers, body, expected=405)
    assert headers["allow"] == "GET, POST" and err["type"] == "MethodNotAllowedError"


def test_a_body_at_the_depth_limit_is_served(served):
    inner = b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1)
    status, _, body = _exchange(served.path, _post(b'{"a": ' + inner + b"}"))
    assert status == 200 and json.loads(body)["body"]["a"] == json.loads(inner)


def test_a_client_that_sends_nothing_is_closed_without_an_answer(served):
    with _connect(served.path) as sock:
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == b""
    assert served.srv.wait_connections(0, BOUND)


# --- stalls: the request has one deadline, not one per read ------------------------------


@pytest.mark.parametrize("raw", [b"GET /ec", b"POST /echo HTTP/1.0\r\n",
                                 b"POST /echo HTTP/1.0\r\nContent-Length: 10\r\n\r\n{"],
                         ids=["half a request line", "no end of headers", "half a body"])
def test_a_stalled_client_gets_a_408_within_the_request_timeout(served, raw):
    start = time.monotonic()
    status, headers, body = _exchange(served.path, raw, shut=False)
    err = _assert_json_error(status, headers, body, expected=408)
    assert err["type"] == "RequestTimeoutError"
    assert time.monotonic() - start < REQUEST_TIMEOUT + 3
    assert served.srv.wait_connections(0, BOUND)


def test_a_trickling_client_is_cut_at_the_deadline(served):
    """One byte at a time, each well within a per-read timeout: the total is bounded."""
    raw = b"POST /echo HTTP/1.0\r\nContent-Length: 1000\r\n\r\n" + b" " * 1000
    start = time.monotonic()
    answer = b""
    with _connect(served.path) as sock:
        for byte in raw:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.05)  # the pace of the trickle: wait for an answer that long
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            break
        assert answer, "the server let the trickle run to its end"
        answer += read_all(sock)
    _assert_json_error(*_parse(answer), expected=408)
    assert time.monotonic() - start < REQUEST_TIMEOUT + 3


def test_a_long_poll_outlives_the_request_timeout(served):
    start = time.monotonic()
    status, _, body = _exchange(served.path, b"POST /long HTTP/1.0\r\n\r\n")
    assert status == 200 and json.loads(body) == {"waited": True}
    assert time.monotonic() - start >= 2 * REQUEST_TIMEOUT


def test_a_shutdown_cuts_clients_still_sending(short_tmp):
    s = _serve(short_tmp / "control.sock")  # the default request timeout: far too long
    try:
        stalled = [_connect(s.path) for _ in range(3)]
        for sock, raw in zip(stalled, [b"GET /ec", b"POST /echo HTTP/1.0\r\n",
                                       b"POST /echo HTTP/1.0\r\nContent-Length: 9\r\n\r\n{"],
                             strict=True):
            sock.sendall(raw)
        deadline = time.monotonic() + BOUND
        while s.srv.connections() < 3:  # each is on its thread, reading
            assert time.monotonic() < deadline, "the stalled clients were never accepted"
            s.srv.wait_connections(-1, 0.05)
        start = time.monotonic()
        s.srv.refuse_new()
        for sock in stalled:
            read_all(sock, bound=3)  # closed, at once
            sock.close()
        assert s.srv.wait_connections(0, 3)
        assert s.srv.drain(3) == 0
        assert time.monotonic() - start < 3
    finally:
        s.stop.set()
        if s.thread is not None:
            s.thread.join(BOUND)
        s.srv.server_close()


# --- event streams ------------------------------------------------------------------------


def _follow(path: Path) -> socket.socket:
    sock = _connect(path)
    sock.sendall(b"GET /events?follow=1 HTTP/1.0\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "the stream ended before its headers"
        head += chunk
    assert head.startswith(b"HTTP/1.0 200 ")
    return sock


def test_a_follower_that_hangs_up_frees_its_thread(served):
    followers = [_follow(served.path) for _ in range(5)]
    assert served.srv.connections() == 5
    for sock in followers:
        sock.close()
    assert served.srv.wait_connections(0, BOUND)  # no event, no heartbeat needed


def test_a_follower_outlives_the_request_timeout_and_ends_with_the_hub(served):
    sock = _follow(served.path)
    assert not served.srv.wait_connections(0, 2 * REQUEST_TIMEOUT)  # still followed
    served.srv.events.publish("send:prepared", {"operation_id": "a", "mint_url": "m"})
    served.srv.events.close()
    lines = [json.loads(line) for line in read_all(sock).splitlines() if line.strip()]
    sock.close()
    assert [e["event"] for e in lines] == ["send:prepared"]
    assert served.srv.wait_connections(0, BOUND)


# --- many clients ---------------------------------------------------------------------------


def test_64_concurrent_clients_are_all_served(served):
    answers: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            with ControlClient(served.path.parent) as client:
                got = client.get("/gather")
            with lock:
                answers.append(got)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=call, daemon=True) for _ in range(CONCURRENT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND * 4)
    assert not errors, errors[:3]
    # all 64 were in the endpoint at once: each got its own place at the barrier
    assert sorted(a["party"] for a in answers) == list(range(CONCURRENT))


def test_the_listen_backlog_holds_64_connections_before_any_is_accepted(short_tmp):
    s = _serve(short_tmp / "control.sock", start=False)
    try:
        assert s.srv.request_queue_size == LISTEN_BACKLOG >= CONCURRENT
        waiting = [_connect(s.path) for _ in range(CONCURRENT)]  # none refused (EAGAIN)
        for sock in waiting:
            sock.sendall(b"GET /echo?n=1 HTTP/1.0\r\n\r\n")
        s.start()
        for sock in waiting:
            status, _, body = _parse(read_all(sock))
            sock.close()
            assert status == 200 and json.loads(body)["query"] == {"n": "1"}
    finally:
        s.stop.set()
        if s.thread is not None:
            s.thread.join(BOUND)
        s.srv.server_close()


def test_past_the_connection_cap_clients_wait_their_turn(short_tmp):
    s = _serve(short_tmp / "control.sock", request_timeout=REQUEST_TIMEOUT, max_connections=4)
    try:
        stalled = [_connect(s.path) for _ in range(4)]
        for sock in stalled:
            sock.sendall(b"GET /ec")
        with ControlClient(short_tmp) as client:  # queued until a stalled one times out
            assert client.get("/echo", n=5)["query"] == {"n": "5"}
        assert s.srv.connections() <= 4
        for sock in stalled:
            _assert_json_error(*_parse(read_all(sock)), expected=408)
            sock.close()
    finally:
        s.stop.set()
        if s.thread is not None:
            s.thread.join(BOUND)
        s.srv.server_close()


# --- the client: busy is not "not running" --------------------------------------------------


def _fill_backlog(path: Path) -> tuple[socket.socket, list[socket.socket]]:
    """A socket that listens but never accepts, its backlog full."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(0)
    fillers: list[socket.socket] = []
    for _ in range(LISTEN_BACKLOG + 8):
        sock = socket.socket(socket.AF_UNIX)
        sock.setblocking(False)
        try:
            sock.connect(str(path))
        except BlockingIOError:
            sock.close()
            return listener, fillers
        fillers.append(sock)
    raise AssertionError("the backlog never filled")


def test_a_full_backlog_is_busy_not_not_running(short_tmp, monkeypatch):
    monkeypatch.setattr(client_module, "CONNECT_TIMEOUT", 0.5)
    listener, fillers = _fill_backlog(short_tmp / "control.sock")
    try:
        with ControlClient(short_tmp) as client, pytest.raises(DaemonBusy) as info:
            client.get("/status")
        assert not isinstance(info.value, DaemonUnavailable)
        assert "is running" in str(info.value)
    finally:
        for sock in fillers:
            sock.close()
        listener.close()


def test_a_full_backlog_that_frees_up_is_served(short_tmp):
    s = _serve(short_tmp / "control.sock", start=False)
    fillers: list[socket.socket] = []
    try:
        for _ in range(LISTEN_BACKLOG + 8):
            sock = socket.socket(socket.AF_UNIX)
            sock.setblocking(False)
            try:
                sock.connect(str(s.path))
            except BlockingIOError:
                sock.close()
                break
            fillers.append(sock)
        else:
            raise AssertionError("the backlog never filled")
        out: list[Any] = []
        caller = threading.Thread(target=lambda: out.append(
            ControlClient(short_tmp).get("/echo", n=7)), daemon=True)
        caller.start()
        for sock in fillers:  # they go (the server reads their end), the caller gets in
            sock.close()
        s.start()
        caller.join(BOUND)
        assert out == [{"query": {"n": "7"}, "body": {}}]
    finally:
        s.stop.set()
        if s.thread is not None:
            s.thread.join(BOUND)
        s.srv.server_close()


def test_a_socket_nobody_serves_is_not_running(short_tmp):
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(short_tmp / "control.sock"))  # bound, never listened on: refused
    try:
        with ControlClient(short_tmp) as client, pytest.raises(DaemonUnavailable) as info:
            client.get("/status")
        assert info.value.reason == "stale control socket"
    finally:
        stale.close()
