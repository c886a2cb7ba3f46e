"""The control channel without a wallet: client error split, server plumbing, data dir."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from coco_actors.control import (
    ConnectionLost,
    ControlClient,
    DaemonTimeout,
    DaemonUnavailable,
    RequestFailed,
    default_data_dir,
    op_path,
)
from coco_actors.control.api import Request
from coco_actors.control.errors import ShuttingDownError
from coco_actors.control.events import EventHub
from coco_actors.control.server import ACCEPT_POLL, MAX_BODY, ControlServer, error_body
from coco_actors.errors import (
    InsufficientFundsError,
    InvalidStateError,
    MintRejectedError,
    MintUnreachableError,
    NotFoundError,
    TokenSpentError,
)


def _client(handler: Any) -> ControlClient:
    return ControlClient("/nowhere", transport=httpx.MockTransport(handler))


def test_an_error_answer_is_request_failed_with_type_and_message():
    client = _client(lambda req: httpx.Response(409, json={"error": {
        "type": "InsufficientFundsError", "message": "cannot cover 5", "available": 3}}))
    with pytest.raises(RequestFailed) as info:
        client.post("/send/prepare", {"amount": 5})
    assert (info.value.status, info.value.type, str(info.value)) == (
        409, "InsufficientFundsError", "cannot cover 5")
    assert info.value.error["available"] == 3


def test_an_answer_without_json_is_a_protocol_error():
    client = _client(lambda req: httpx.Response(502, text="<html>"))
    with pytest.raises(RequestFailed) as info:
        client.get("/status")
    assert info.value.type == "ProtocolError"


@pytest.mark.parametrize("exc, expected", [
    (httpx.ConnectError("[Errno 2] No such file or directory"), DaemonUnavailable),
    (httpx.ReadTimeout("slow"), DaemonTimeout),
    (httpx.RemoteProtocolError("Server disconnected"), ConnectionLost),
    (httpx.ReadError("reset"), ConnectionLost),
])
def test_transport_errors_split_by_what_the_caller_can_do(exc, expected):
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(expected) as info:
        _client(fail).get("/status")
    if isinstance(info.value, DaemonUnavailable):
        assert "coco serve --data-dir /nowhere" in str(info.value) or \
            "coco status --data-dir /nowhere" in str(info.value)


def test_a_missing_socket_is_daemon_unavailable(tmp_path):
    with ControlClient(tmp_path) as client, pytest.raises(DaemonUnavailable) as info:
        client.get("/status")
    assert info.value.reason == "no control socket"


def test_op_path_escapes_what_the_user_typed():
    assert op_path("/send", "../stop", "/execute") == "/send/..%2Fstop/execute"


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("COCO_DATA_DIR", str(tmp_path / "x"))
    assert default_data_dir() == tmp_path / "x"
    monkeypatch.delenv("COCO_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "coco-actors"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / ".local" / "share" / "coco-actors"


@pytest.mark.parametrize("exc, status", [
    (NotFoundError("x"), 404), (InsufficientFundsError("x"), 409),
    (InvalidStateError("x"), 409), (TokenSpentError("x"), 400),
    (MintRejectedError("no", code=11001), 422), (MintUnreachableError("down"), 424),
    (ShuttingDownError("x"), 409), (RuntimeError("bug"), 500),
])
def test_error_statuses(exc, status):
    got, body = error_body(exc)
    assert got == status
    assert body["error"]["type"] == (type(exc).__name__ if status != 500 else "InternalError")


# --- the HTTP server over a Unix socket, with a stand-in for the wallet ------------------


class _StubApi:
    def route(self, method: str, path: str) -> Any:
        if path == "/echo":
            return (lambda req: {"query": req.query, "body": req.body}), {}
        if path == "/boom":
            def boom(req: Request) -> Any:
                raise NotFoundError("no such thing")
            return boom, {}
        return None


@dataclass
class _Served:
    events: EventHub
    data_dir: Path


@pytest.fixture
def server(short_tmp: Path) -> Iterator[_Served]:
    events = EventHub()
    srv = ControlServer(short_tmp / "control.sock", _StubApi(), events)
    stop = threading.Event()
    thread = threading.Thread(target=srv.serve_until, args=(stop,), daemon=True)
    thread.start()
    yield _Served(events, short_tmp)
    stop.set()
    thread.join(10)
    srv.server_close()


def test_server_round_trip_and_errors(server):
    data_dir = server.data_dir
    with ControlClient(data_dir) as client:
        assert client.post("/echo?a=1", {"x": [1]}) == {"query": {"a": "1"}, "body": {"x": [1]}}
        with pytest.raises(RequestFailed) as info:
            client.get("/boom")
        assert (info.value.status, info.value.type) == (404, "NotFoundError")
        with pytest.raises(RequestFailed) as info:
            client.get("/nope")
        assert info.value.type == "UnknownEndpoint"
        raw = client._client.post("/echo", content=b"{not json",
                                  headers={"Content-Type": "application/json"})
        assert raw.status_code == 400
        assert raw.json()["error"]["type"] == "BadRequestError"


@pytest.mark.parametrize("content, headers, complaint", [
    (b"[1, 2]", {}, "must be a JSON object"),
    (b'{"timeout": NaN}', {}, "not JSON"),
    (b"x" * (MAX_BODY + 1), {}, f"over {MAX_BODY} bytes"),
])
def test_malformed_requests_are_400_json(server, content, headers, complaint):
    with ControlClient(server.data_dir) as client:
        raw = client._client.post("/echo", content=content, headers=headers)
    assert raw.status_code == 400
    assert raw.json()["error"]["type"] == "BadRequestError"
    assert complaint in raw.json()["error"]["message"]


@pytest.mark.parametrize("length", ["-1", "abc"])
def test_a_bad_content_length_is_400_json(server, length):
    with socket.socket(socket.AF_UNIX) as sock:  # httpx will not send such a header
        sock.settimeout(10)
        sock.connect(str(server.data_dir / "control.sock"))
        sock.sendall(f"POST /echo HTTP/1.0\r\nContent-Length: {length}\r\n\r\n{{}}".encode())
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400 ")
    assert json.loads(body)["error"] == {"type": "BadRequestError", "code": "bad_request",
                                         "message": f"bad Content-Length {length!r}"}


def test_an_unsupported_method_is_answered_in_json(server):
    with ControlClient(server.data_dir) as client:
        raw = client._client.put("/echo", json={})
    assert raw.status_code == 405 and raw.headers["Allow"] == "GET, POST"
    assert raw.json()["error"]["type"] == "MethodNotAllowedError"
    assert "PUT" in raw.json()["error"]["message"]


def test_the_accept_loop_ends_when_told(short_tmp):
    srv = ControlServer(short_tmp / "control.sock", _StubApi(), EventHub())
    stop = threading.Event()
    thread = threading.Thread(target=srv.serve_until, args=(stop,), daemon=True)
    thread.start()
    with ControlClient(short_tmp) as client:
        assert client.get("/echo")["query"] == {}
    stop.set()
    thread.join(5 * ACCEPT_POLL + 5)
    assert not thread.is_alive()
    srv.server_close()


def test_event_stream_replays_then_follows_until_closed(server):
    data_dir = server.data_dir
    server.events.publish("send:prepared", {"operation_id": "a", "mint_url": "m"})
    got: list[dict[str, Any]] = []
    first, second = threading.Event(), threading.Event()

    def follow() -> None:
        with ControlClient(data_dir) as client:
            for event in client.stream("/events", follow=1):
                got.append(event)
                (first if len(got) == 1 else second).set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert first.wait(10)  # the replay arrives first; then publish a live one
    server.events.publish("send:pending", {"operation_id": "a", "mint_url": "m",
                                         "token": "cashuBsecret"})
    assert second.wait(10)
    server.events.close()
    reader.join(10)
    assert not reader.is_alive()
    assert [e["event"] for e in got] == ["send:prepared", "send:pending"]
    assert "cashuBsecret" not in json.dumps(got)
