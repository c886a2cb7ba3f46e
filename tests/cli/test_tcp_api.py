"""The control API on a TCP port (``coco serve --listen``), behind the bearer token.

Two halves. In-process, no mint: a real :class:`TcpControlServer` on a loopback port
with a stand-in router, raw bytes and httpx on the wire: without a valid token every
request is a 401 that reaches nothing (no route, no body), the token file is born
0600 and a rotation takes effect at the next request, the bounds hold (413 at once,
a slow client cut), over the failure budget a 429. Then real daemons: the same
answers as the socket for status, balances, mints, a send prepared and executed
over TCP against the real mint (fees 0 and 100, to the sat), the event stream; the
CLI over ``--url``; ``coco token rotate`` against a running daemon; and the token in
no line of the daemon's log.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import DaemonProcess, Wallet, exchange, read_all

from coco_actors.control import ControlClient, DaemonUnavailable, RequestFailed
from coco_actors.control.api import Request
from coco_actors.control.auth import (
    TokenFile,
    create_token,
    read_token,
    rotate_token,
)
from coco_actors.control.events import EventHub
from coco_actors.control.payments import RequestBudget
from coco_actors.control.server import MAX_BODY, TcpControlServer
from coco_actors.errors import NotFoundError, StoreError
from devtools.devmint import free_port

#: How long a test waits for what must happen at once (a bound, not a pause).
BOUND = 10.0
REQUEST_TIMEOUT = 1.0


# --- the token file -------------------------------------------------------------------------


def test_the_token_file_is_born_0600_and_rotated_atomically(tmp_path):
    path = tmp_path / "api-token"
    old_umask = os.umask(0)  # the mode comes from the open, not from a lenient umask
    try:
        token = create_token(path)
        assert token is not None and len(token) == 43  # 32 bytes, URL-safe base64
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert create_token(path) is None  # one there already: left alone
        assert read_token(path) == token
        ino = path.stat().st_ino
        new = rotate_token(path)
    finally:
        os.umask(old_umask)
    assert new != token and read_token(path) == new
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_ino != ino  # a new file renamed over the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api-token"]  # no temp file left


def test_a_missing_or_garbled_token_file_is_a_typed_error(tmp_path):
    path = tmp_path / "api-token"
    with pytest.raises(NotFoundError, match="coco token rotate"):
        read_token(path)
    path.write_text("not a token\n")
    with pytest.raises(StoreError) as info:
        read_token(path)
    assert "not a token" not in str(info.value)  # what the file holds is not echoed


# --- a stranger on the wire (in-process, no mint) ------------------------------------------


class _Router:
    """A stand-in for ControlApi: records every request that reaches a route."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Request]] = []

    def route(self, method: str, path: str) -> tuple[Callable[[Request], object],
                                                     dict[str, str]] | None:
        if (method, path) not in {("GET", "/status"), ("POST", "/send/prepare")}:
            return None

        def handler(req: Request) -> object:
            self.seen.append((method, path, req))
            return {"ok": True, "body": req.body, "query": req.query}

        return handler, {}


@dataclass
class _Server:
    srv: TcpControlServer
    router: _Router
    token_path: Path
    events: EventHub
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self.srv.server_address[1])

    @property
    def token(self) -> str:
        return read_token(self.token_path)


def _serve(tmp_path: Path, **kwargs: Any) -> Iterator[_Server]:
    path = tmp_path / "api-token"
    create_token(path)
    router, events = _Router(), EventHub()
    server = _Server(TcpControlServer(("127.0.0.1", 0), router, events, TokenFile(path),
                                      request_timeout=REQUEST_TIMEOUT, **kwargs), router, path,
                     events)
    thread = threading.Thread(target=server.srv.serve_until, args=(server.stop,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        thread.join(BOUND)
        server.srv.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    yield from _serve(tmp_path)


def _request(method: str, path: str, body: bytes = b"", *,
             auth: list[str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.0", "Host: x", f"Content-Length: {len(body)}",
             *(f"Authorization: {a}" for a in auth or ())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _unauthorized(answer: tuple[int, dict[str, str], Any], token: str) -> dict[str, Any]:
    status, headers, body = answer
    assert status == 401, (status, body)
    assert headers["www-authenticate"].startswith("Bearer realm="), headers
    err = body["error"]
    assert err["type"] == "UnauthorizedError" and isinstance(err["message"], str)
    assert token not in json.dumps(body) and token not in json.dumps(headers)
    return err  # type: ignore[no-any-return]


def _bad_headers(token: str) -> list[list[str]]:
    """Authorization headers that must not let a request in."""
    return [[], ["Bearer " + "A" * 43], ["Bearer " + token[:-1]], ["Bearer " + token + "x"],
            ["Basic " + token], ["Bearer"], ["Bearer "], [token], ["Bearer " + token + " x"],
            ["Bearer " + token, "Bearer " + token],  # two headers: refused, even both right
            ["Bearer " + "é" * 43], ["Bearer  " + "\x00" * 43]]


def test_without_a_valid_token_nothing_reaches_a_route(server):
    token = server.token
    for auth in _bad_headers(token):
        for method, path, body in [("GET", "/status", b""),
                                   ("POST", "/send/prepare", b'{"mint_url": "m", "amount": 1}'),
                                   ("GET", "/nowhere", b""), ("GET", "/events?follow=1", b""),
                                   ("POST", "/send/prepare", b"{not json"),  # never parsed
                                   ("PUT", "/status", b"{}"), ("BREW", "/", b"")]:
            _unauthorized(exchange(server.port, _request(method, path, body, auth=auth)),
                          token)
    assert server.router.seen == []


def test_with_the_token_the_api_answers_as_the_socket_does(server):
    auth = ["Bearer " + server.token]
    status, _, body = exchange(server.port, _request(
        "POST", "/send/prepare?x=1", b'{"mint_url": "m", "amount": 1}', auth=auth))
    assert (status, body) == (200, {"ok": True, "body": {"mint_url": "m", "amount": 1},
                                    "query": {"x": "1"}})
    assert exchange(server.port, _request("GET", "/status", auth=[
        "bearer " + server.token]))[0] == 200  # the scheme is case-insensitive (RFC 7235)
    status, _, body = exchange(server.port, _request("GET", "/nowhere", auth=auth))
    assert status == 404 and body["error"]["type"] == "UnknownEndpoint"
    status, headers, body = exchange(server.port, _request("PUT", "/status", auth=auth))
    assert status == 405 and headers["allow"] == "GET, POST", body
    status, _, body = exchange(server.port, _request("POST", "/send/prepare", b"[1]",
                                                      auth=auth))
    assert status == 400 and body["error"]["type"] == "BadRequestError"
    assert [(m, p) for m, p, _ in server.router.seen] == [("POST", "/send/prepare"),
                                                         ("GET", "/status")]


def test_a_body_over_the_limit_is_a_413_before_it_is_sent(server):
    head = f"POST /send/prepare HTTP/1.0\r\nContent-Length: {10 * MAX_BODY}\r\n"
    start = time.monotonic()
    status, _, body = exchange(server.port, (
        head + f"Authorization: Bearer {server.token}\r\n\r\n").encode(), shut=False)
    assert status == 413 and body["error"]["type"] == "PayloadTooLargeError", body
    _unauthorized(exchange(server.port, (head + "\r\n").encode(), shut=False), server.token)
    assert time.monotonic() - start < REQUEST_TIMEOUT  # neither waited for the body
    assert server.router.seen == []


def test_a_slow_client_is_cut_at_the_deadline(server):
    raw = _request("POST", "/send/prepare", b'{"a": "' + b"x" * 2000 + b'"}',
                   auth=["Bearer " + server.token])
    start = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=BOUND) as sock:
        for byte in raw:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.05)  # the pace of the trickle
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            break
        assert answer, "the server let the trickle run to its end"
        answer += read_all(sock)
    assert answer.startswith(b"HTTP/1.0 408 ")
    assert time.monotonic() - start < REQUEST_TIMEOUT + 3
    assert server.router.seen == []


def test_a_rotated_token_takes_effect_at_the_next_request(server):
    old = server.token
    assert exchange(server.port, _request("GET", "/status", auth=["Bearer " + old]))[0] == 200
    new = rotate_token(server.token_path)
    _unauthorized(exchange(server.port, _request("GET", "/status", auth=["Bearer " + old])),
                  old)
    assert exchange(server.port, _request("GET", "/status", auth=["Bearer " + new]))[0] == 200
    server.token_path.unlink()  # no token file: nobody gets in
    _unauthorized(exchange(server.port, _request("GET", "/status", auth=["Bearer " + new])),
                  new)
    assert len(server.router.seen) == 2


def test_over_the_failure_budget_a_429_and_the_token_still_works(tmp_path):
    for server in _serve(tmp_path, failures=RequestBudget(5.0)):
        answers = [exchange(server.port, _request("GET", "/status")) for _ in range(20)]
        statuses = [status for status, _, _ in answers]
        assert statuses[:5] == [401] * 5 and 429 in statuses, statuses
        status, headers, body = answers[statuses.index(429)]
        assert int(headers["retry-after"]) >= 1 and body["error"]["type"] == \
            "TooManyRequestsError"
        assert exchange(server.port, _request("GET", "/status", auth=[
            "Bearer " + server.token]))[0] == 200  # a valid token spends no budget
        assert len(server.router.seen) == 1


def test_the_client_over_tcp_raises_the_same_errors(server):
    url = f"http://127.0.0.1:{server.port}"
    server.events.publish("send:pending", {"operation_id": "s1", "mint_url": "m"})
    with ControlClient("/nonexistent", url=url, token=server.token) as client:
        assert client.get("/status", q="1")["query"] == {"q": "1"}
        streamed = list(client.stream("/events"))
    assert [(e["event"], e["operation_id"]) for e in streamed] == [("send:pending", "s1")]
    for token in [None, "A" * 43]:
        with ControlClient("/nonexistent", url=url, token=token) as client:
            with pytest.raises(RequestFailed) as info:
                client.post("/send/prepare", {"mint_url": "m", "amount": 1})
            assert (info.value.status, info.value.type) == (401, "UnauthorizedError")
            with pytest.raises(RequestFailed) as info:
                list(client.stream("/events"))
            assert info.value.status == 401
    with ControlClient("/nonexistent", url=f"http://127.0.0.1:{free_port()}",
                       token=server.token) as client, pytest.raises(DaemonUnavailable) as gone:
        client.get("/status")
    assert "no coco daemon answers at http://127.0.0.1:" in str(gone.value)
    assert server.token not in str(gone.value)
    assert len(server.router.seen) == 1


# --- real daemons ---------------------------------------------------------------------------


@dataclass
class _Tcp:
    """A daemon with ``--listen`` (and a log file), its wallet, its URL."""

    daemon: DaemonProcess
    wallet: Wallet
    url: str
    log_file: Path

    @property
    def token(self) -> str:
        return read_token(self.wallet.data_dir / "api-token")

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, trust_env=False, timeout=BOUND * 6)

    def socket_http(self) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.daemon.socket)),
                            base_url="http://coco", trust_env=False, timeout=BOUND * 6)

    def log(self) -> str:
        return self.log_file.read_text()


@pytest.fixture
def tcp(daemons: Callable[..., DaemonProcess], short_tmp: Path) -> Callable[..., _Tcp]:
    def make(name: str = "w", *, init: bool = True) -> _Tcp:
        port = free_port()
        log_file = short_tmp / f"{name}.log"
        daemon = daemons(name, "--listen", f"127.0.0.1:{port}", "-v", "--log-file",
                         str(log_file), init=init)
        return _Tcp(daemon, Wallet(daemon.data_dir, daemon), f"http://127.0.0.1:{port}",
                    log_file)

    return make


def _status_without_uptime(status: dict[str, Any]) -> dict[str, Any]:
    status["daemon"].pop("uptime_s")
    return status


def test_over_tcp_the_same_answers_as_the_socket_and_a_real_send(tcp, wallet, mint):
    t = tcp("alice")
    url, ppk = mint.url, mint.input_fee_ppk
    t.wallet.cli("mint", "add", url)
    t.wallet.fund(url, 1000)
    token = t.token
    full = {"spendable": 1000, "reserved": 0, "pending": 0, "total": 1000}
    with t.http() as anon, t.http(token) as api, t.socket_http() as sock:
        refused = anon.post("/send/prepare", json={"mint_url": url, "amount": 100})
        assert refused.status_code == 401 and refused.json()["error"]["type"] == \
            "UnauthorizedError"
        assert t.wallet.balance(url) == full  # the refused prepare reserved nothing
        assert api.get("/send/pending").json() == [] == sock.get("/send/pending").json()

        for path in ["/balance", "/balance/total", "/mints", "/history", "/keys"]:
            over_tcp, over_socket = api.get(path), sock.get(path)
            assert over_tcp.status_code == over_socket.status_code == 200, path
            assert over_tcp.json() == over_socket.json(), path
        assert api.get("/balance").json() == {url: full}
        assert _status_without_uptime(api.get("/status").json()) == \
            _status_without_uptime(sock.get("/status").json())
        for method, path in [("GET", "/nowhere"), ("PUT", "/balance"), ("POST", "/balance")]:
            over_tcp, over_socket = api.request(method, path), sock.request(method, path)
            assert over_tcp.status_code == over_socket.status_code, (method, path)
            assert over_tcp.json() == over_socket.json(), (method, path)

        prepared = api.post("/send/prepare", json={"mint_url": url, "amount": 100}).json()
        fee = prepared["fee"]
        assert (fee > 0) == (ppk > 0) and prepared["state"] == "prepared"
        reserved = t.wallet.balance(url)
        assert reserved["spendable"] + reserved["reserved"] == 1000
        assert reserved["reserved"] == prepared["input_amount"] and reserved["pending"] == 0

        finalized = threading.Event()
        seen: list[dict[str, Any]] = []

        def follow() -> None:  # the event stream over TCP, until the send is finalized
            with t.http(token) as follower, follower.stream(
                    "GET", "/events", params={"follow": 1}, timeout=None) as stream:
                for line in stream.iter_lines():
                    if line.strip():
                        seen.append(json.loads(line))
                        if seen[-1]["event"] == "send:finalized":
                            finalized.set()
                            return

        threading.Thread(target=follow, daemon=True).start()
        executed = api.post(f"/send/{prepared['id']}/execute").json()
        assert executed["operation"]["state"] == "pending"
        sent = executed["token"]
        assert t.wallet.balance(url) == {"spendable": 1000 - 100 - fee, "reserved": 0,
                                         "pending": 100, "total": 1000 - fee}
        assert api.get("/balance").json() == sock.get("/balance").json()

        bob = wallet("bob", url)
        received = bob.json("receive", sent)
        bob_fee = received["fee"]
        assert (bob_fee > 0) == (ppk > 0)
        assert bob.spendable(url) == 100 - bob_fee
        assert finalized.wait(60), f"no send:finalized over TCP; got {seen}"
        assert [e["event"] for e in seen if e["operation_id"] == prepared["id"]] == [
            "send:prepared", "send:pending", "send:finalized"]
        assert t.wallet.balance(url) == {"spendable": 1000 - 100 - fee, "reserved": 0,
                                         "pending": 0, "total": 1000 - 100 - fee}
        recent_tcp = [json.loads(line) for line in api.get("/events").text.splitlines()
                      if line.strip()]
        recent_sock = [json.loads(line) for line in sock.get("/events").text.splitlines()
                       if line.strip()]
        assert recent_tcp == recent_sock and recent_tcp[-1]["event"] == "send:finalized"
    log = t.log()
    assert f"control API on {t.url}" in log and "control-tcp" in log  # requests logged
    assert token not in log and sent not in log


def test_the_cli_over_url(tcp, run_cli, short_tmp, monkeypatch):
    t = tcp("w")
    data_dir = str(t.wallet.data_dir)
    over_socket = json.loads(run_cli("balance", "--json", "--data-dir", data_dir).stdout)
    by_file = run_cli("--url", t.url, "balance", "--json", "--data-dir", data_dir)
    assert by_file.exit_code == 0, by_file.output
    assert json.loads(by_file.stdout) == over_socket == {}
    status = run_cli("--url", t.url, "status", "--json", "--data-dir", data_dir)
    assert status.exit_code == 0 and json.loads(status.stdout)["daemon"]["pid"] == t.daemon.pid

    token_file = short_tmp / "token"
    token_file.write_text(t.token + "\n")
    elsewhere = str(short_tmp / "nowallet")  # the token comes from --token-file, not DIR
    assert run_cli("--url", t.url, "--token-file", str(token_file), "status",
                   "--data-dir", elsewhere).exit_code == 0
    monkeypatch.setenv("COCO_TOKEN", t.token)
    assert run_cli("--url", t.url, "status", "--data-dir", elsewhere).exit_code == 0
    monkeypatch.setenv("COCO_TOKEN", "A" * 43)  # the environment wins over DIR/api-token
    wrong = run_cli("--url", t.url, "status", "--data-dir", data_dir)
    assert wrong.exit_code == 1 and "invalid bearer token" in wrong.stderr
    monkeypatch.delenv("COCO_TOKEN")
    token_file.write_text("B" * 43)
    wrong = run_cli("--url", t.url, "--token-file", str(token_file), "status")
    assert wrong.exit_code == 1 and "invalid bearer token" in wrong.stderr
    missing = run_cli("--url", t.url, "status", "--data-dir", elsewhere)
    assert missing.exit_code == 1 and "no API token" in missing.stderr

    down = run_cli("--url", f"http://127.0.0.1:{free_port()}", "status", "--data-dir", data_dir)
    assert down.exit_code == 3 and "no coco daemon answers at" in down.stderr
    assert run_cli("--url", "ftp://x", "status").exit_code == 2

    stopped = run_cli("--url", t.url, "stop", "--data-dir", data_dir)
    assert stopped.exit_code == 0, stopped.output
    assert t.daemon.wait_exit() == 0
    assert t.token not in t.log() and t.token not in t.daemon.log


def test_init_prints_the_token_and_rotate_works_without_a_restart(tcp, run_cli, short_tmp):
    data_dir = short_tmp / "w"
    init = run_cli("init", "--data-dir", str(data_dir), "--json")
    assert init.exit_code == 0, init.output
    printed = json.loads(init.stdout)["api_token"]
    human = run_cli("init", "--data-dir", str(short_tmp / "h"))
    assert read_token(short_tmp / "h" / "api-token") in human.stdout  # printed there too
    path = data_dir / "api-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    shown = run_cli("token", "show", "--data-dir", str(data_dir))
    assert shown.exit_code == 0 and shown.stdout == printed + "\n"

    t = tcp("w")  # the wallet exists: not initialized again
    pid = t.daemon.pid
    with t.http(printed) as old, t.http() as anon:
        assert old.get("/status").status_code == 200
        rotated = run_cli("token", "rotate", "--data-dir", str(data_dir))
        assert rotated.exit_code == 0, rotated.output
        new = read_token(path)
        assert new != printed and new not in rotated.output
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert old.get("/status").status_code == 401
        with t.http(new) as api:
            assert api.get("/status").json()["daemon"]["pid"] == pid  # no restart
        assert anon.get("/status").status_code == 401
    assert run_cli("token", "show", "--data-dir", str(data_dir)).stdout.strip() == new
    log = t.log()
    assert "api-token" in log and printed not in log and new not in log


def test_a_wallet_from_before_the_token_gets_one_at_the_first_listen(tcp, run_cli, short_tmp):
    data_dir = short_tmp / "old"
    assert run_cli("init", "--data-dir", str(data_dir)).exit_code == 0
    (data_dir / "api-token").unlink()  # as a wallet made before this change
    shown = run_cli("token", "show", "--data-dir", str(data_dir))
    assert shown.exit_code == 1 and "no API token" in shown.stderr
    t = tcp("old")
    token = t.token
    assert stat.S_IMODE((data_dir / "api-token").stat().st_mode) == 0o600
    with t.http(token) as api:
        assert api.get("/balance").status_code == 200
    assert "created the API token" in t.daemon.log and token not in t.daemon.log
    assert token not in t.log()


def test_listen_takes_an_ip_literal(run_cli, short_tmp):
    for bad in ["localhost:8080", "127.0.0.1:99999", "example.com:80", "x"]:
        result = run_cli("serve", "--data-dir", str(short_tmp / "w"), "--listen", bad)
        assert result.exit_code == 2 and "--listen" in result.stderr, (bad, result.output)
    assert not (short_tmp / "w").exists()  # refused before anything was opened
