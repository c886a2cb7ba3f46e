"""Webhooks without a mint: signing, retries, the persisted cursor, hosts, secrets, logs.

The deliverer reads a small in-memory outbox (the three methods of
:class:`~coco_actors.webhooks.EventSource`) and POSTs through an httpx
``MockTransport`` (the seam httpx offers: no monkeypatching). Its writes go through
a real ProofLedger on a real LMDB store in the test's own directory. Signatures are
checked here with hmac/base64 from the Standard Webhooks text, never with the signer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from coco_actors.errors import InvalidInputError, InvalidStateError, NotFoundError
from coco_actors.mint_client import normalize_mint_url
from coco_actors.proof_ledger import ChangeSignal, ProofLedgerProxy, start_ledger
from coco_actors.store import Store
from coco_actors.webhooks import (
    RetryPolicy,
    Webhooks,
    WebhookSpec,
    read_secret_file,
    specs_from_files,
)
from devtools.devmint import DevMint
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import HookReceiver, verified

from .helpers import WalletFactory, balance_of, fund, token_fee

RAW_KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(RAW_KEY).decode()
FAST = RetryPolicy(first=0.05, cap=0.2, jitter=0.5, timeout=2.0, poll=0.05)
URL = "http://127.0.0.1:9/hook"


@dataclass(frozen=True, slots=True)
class Ev:
    seq: int
    time: int
    event: str
    operation_id: str | None
    mint_url: str | None
    data: dict[str, Any] = field(default_factory=dict)


class MemoryOutbox:
    """The three methods of the outbox, over a list (any thread)."""

    def __init__(self) -> None:
        self._events: list[Ev] = []
        self._cond = threading.Condition()

    def emit(self, event: str, data: dict[str, Any] | None = None,
             operation_id: str = "op1") -> Ev:
        with self._cond:
            ev = Ev(len(self._events) + 1, int(time.time() * 1000), event, operation_id,
                    "http://mint.test", data or {})
            self._events.append(ev)
            self._cond.notify_all()
            return ev

    def since(self, after: int = 0, limit: int = 1000) -> list[Ev]:
        with self._cond:
            return [e for e in self._events if e.seq > after][:limit]

    def last_seq(self) -> int:
        with self._cond:
            return self._events[-1].seq if self._events else 0

    def wait(self, after: int, timeout: float) -> list[Ev]:
        with self._cond:
            self._cond.wait_for(lambda: self.last_seq() > after, timeout)
        return self.since(after)


class Receiver:
    """A MockTransport handler: answers with ``answers`` in turn (then 200), records
    every request with the monotonic time it arrived."""

    def __init__(self, answers: list[int | type[Exception]] | None = None) -> None:
        self.answers = list(answers or [])
        self.requests: list[tuple[float, httpx.Request]] = []
        self.cond = threading.Condition()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        with self.cond:
            self.requests.append((time.monotonic(), request))
            self.cond.notify_all()
            answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, type):
            raise answer("refused", request=request)  # type: ignore[call-arg]
        return httpx.Response(answer)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[httpx.Request]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.requests) >= n, timeout), \
                f"{len(self.requests)} requests, expected {n}"
            return [r for _, r in self.requests]

    def delivered(self) -> list[int]:
        """The seqs of the requests, in arrival order."""
        with self.cond:
            return [json.loads(r.content)["seq"] for _, r in self.requests]


@pytest.fixture
def ledger_store(tmp_path: Path) -> Iterator[tuple[Store, ProofLedgerProxy]]:
    store = Store(tmp_path / "w")
    ledger = start_ledger(store, ChangeSignal())
    yield store, ledger
    ledger.actor_ref.stop(block=True, timeout=10)
    store.close()


@pytest.fixture
def make_hooks(ledger_store: tuple[Store, ProofLedgerProxy]
               ) -> Iterator[Callable[..., Webhooks]]:
    made: list[Webhooks] = []
    store, ledger = ledger_store

    def make(source: MemoryOutbox, receiver: Receiver, **kwargs: Any) -> Webhooks:
        kwargs.setdefault("retry", FAST)
        hooks = Webhooks(store, ledger, source, transport=httpx.MockTransport(receiver),
                         **kwargs)
        made.append(hooks)
        return hooks

    yield make
    for hooks in made:
        hooks.close(timeout=10)


def expected_signature(key: bytes, request: httpx.Request) -> str:
    """Standard Webhooks: base64 HMAC-SHA256 over ``id.timestamp.body``, prefixed ``v1,``."""
    signed = (f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}."
              .encode() + request.content)
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def test_each_event_is_posted_alone_signed_in_seq_order(
        make_hooks: Callable[..., Webhooks]) -> None:
    source, receiver = MemoryOutbox(), Receiver()
    source.emit("send:prepared")  # before the webhook: not delivered (from now on)
    hooks = make_hooks(source, receiver)
    hooks.add(URL, SECRET)
    for name in ("send:prepared", "send:pending", "send:finalized"):
        source.emit(name, {"amount": 5, "token": "cashuBsecret", "operation": {"token": "x"}})
    requests = receiver.wait_for(3)
    assert receiver.delivered() == [2, 3, 4]
    for request, (seq, name) in zip(requests, [(2, "send:prepared"), (3, "send:pending"),
                                               (4, "send:finalized")], strict=True):
        assert request.method == "POST"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["webhook-id"] == f"evt_{seq}"
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
        assert request.headers["webhook-signature"] == expected_signature(RAW_KEY, request)
        body = json.loads(request.content)
        assert body["seq"] == seq and body["type"] == name and body["event"] == name
        assert body["operation_id"] == "op1" and body["mint_url"] == "http://mint.test"
        assert body["data"] == {"amount": 5, "operation": {}}  # no token, at any depth
        assert b"cashuB" not in request.content


def test_a_plain_secret_signs_with_its_utf8_bytes(make_hooks: Callable[..., Webhooks]) -> None:
    source, receiver = MemoryOutbox(), Receiver()
    hooks = make_hooks(source, receiver)
    hooks.add(URL, "a plain secret of some length")
    source.emit("receive:finalized")
    (request,) = receiver.wait_for(1)
    assert request.headers["webhook-signature"] == expected_signature(
        b"a plain secret of some length", request)
    assert request.headers["webhook-signature"] != expected_signature(RAW_KEY, request)


def test_500s_are_retried_with_capped_backoff_then_delivered_once(
        make_hooks: Callable[..., Webhooks]) -> None:
    source, receiver = MemoryOutbox(), Receiver([500, 502, 500, 503, 500])
    hooks = make_hooks(source, receiver)
    hooks.add(URL, SECRET)
    source.emit("send:prepared")
    source.emit("send:finalized")
    requests = receiver.wait_for(7)
    assert receiver.delivered() == [1, 1, 1, 1, 1, 1, 2]
    assert {r.headers["webhook-id"] for r in requests[:6]} == {"evt_1"}
    for r in requests:
        assert r.headers["webhook-signature"] == expected_signature(RAW_KEY, r)
    times = [t for t, _ in receiver.requests]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)][:5]
    # at least first * 2**(n-1), capped; at most cap * (1 + jitter) (and some scheduling)
    for n, gap in enumerate(gaps, start=1):
        assert gap >= min(FAST.cap, FAST.first * 2 ** (n - 1)) * 0.95, gaps
        assert gap <= FAST.cap * (1 + FAST.jitter) + 1.0, gaps
    wait_until(lambda: hooks.status()[0].last_delivered_seq == 2, 10, "cursor at 2")
    st = hooks.status()[0]
    assert st.pending == 0 and st.delivered == 2 and st.last_error == "HTTP 500"
    assert st.current_seq is None and st.next_retry_at is None


def test_status_shows_the_attempts_and_error_while_the_receiver_fails(
        make_hooks: Callable[..., Webhooks]) -> None:
    source, receiver = MemoryOutbox(), Receiver([httpx.ConnectError] * 1000)
    hooks = make_hooks(source, receiver, retry=RetryPolicy(first=0.05, cap=0.05, poll=0.05))
    hooks.add(URL, SECRET)
    source.emit("send:prepared")
    source.emit("send:pending")
    receiver.wait_for(3)
    wait_until(lambda: hooks.status()[0].attempts >= 3, 10, "three attempts")
    st = hooks.status()[0]
    assert st.url == URL and st.source == "api" and st.running
    assert st.last_delivered_seq == 0 and st.pending == 2 and st.current_seq == 1
    assert st.last_error == "ConnectError"
    assert set(receiver.delivered()) == {1}  # the second waits for the first: in order
    with receiver.cond:
        receiver.answers.clear()
    wait_until(lambda: hooks.status()[0].last_delivered_seq == 2, 10, "both delivered")
    assert receiver.delivered()[-2:] == [1, 2]


def test_the_cursor_is_persisted_and_a_restart_resumes_after_it(
        ledger_store: tuple[Store, ProofLedgerProxy],
        make_hooks: Callable[..., Webhooks]) -> None:
    store, _ = ledger_store
    source, first = MemoryOutbox(), Receiver()
    hooks = make_hooks(source, first)
    info = hooks.add(URL, SECRET)
    assert store.webhook_cursor(info.id) == 0
    for _ in range(3):
        source.emit("send:prepared")
    first.wait_for(3)
    wait_until(lambda: store.webhook_cursor(info.id) == 3, 10, "cursor 3 in LMDB")
    hooks.close(timeout=10)
    source.emit("send:pending")
    source.emit("send:finalized")  # while no deliverer runs

    second = Receiver()
    again = make_hooks(source, second)
    again.start()  # the stored webhook, with its secret, from its stored cursor
    assert [h.id for h in again.list()] == [info.id]
    second.wait_for(2)
    wait_until(lambda: store.webhook_cursor(info.id) == 5, 10, "cursor 5 in LMDB")
    assert second.delivered() == [4, 5]
    assert all(r.headers["webhook-signature"] == expected_signature(RAW_KEY, r)
               for r in second.wait_for(2))


def test_a_configured_webhook_keeps_its_cursor_across_starts(
        ledger_store: tuple[Store, ProofLedgerProxy],
        make_hooks: Callable[..., Webhooks]) -> None:
    store, _ = ledger_store
    source, first = MemoryOutbox(), Receiver()
    source.emit("mint:prepared")  # before its first start: not delivered
    hooks = make_hooks(source, first)
    hooks.start([WebhookSpec(URL, SECRET)])
    (info,) = hooks.list()
    assert info.source == "config" and store.webhook_cursor(info.id) == 1
    source.emit("mint:finalized")
    first.wait_for(1)
    wait_until(lambda: store.webhook_cursor(info.id) == 2, 10, "cursor 2")
    hooks.close(timeout=10)
    source.emit("send:prepared")
    second = Receiver()
    again = make_hooks(source, second)
    again.start([WebhookSpec(URL, SECRET)])
    assert [h.id for h in again.list()] == [info.id]  # the same id: the same cursor
    second.wait_for(1)
    assert second.delivered() == [3]
    with pytest.raises(InvalidStateError):
        again.remove(info.id)
    assert store.webhooks() == []  # a configured webhook is never stored (nor its secret)


def test_from_seq_replays_and_remove_forgets(
        ledger_store: tuple[Store, ProofLedgerProxy],
        make_hooks: Callable[..., Webhooks]) -> None:
    store, _ = ledger_store
    source, receiver = MemoryOutbox(), Receiver()
    for _ in range(3):
        source.emit("send:prepared")
    hooks = make_hooks(source, receiver)
    info = hooks.add(URL, SECRET, from_seq=1)
    receiver.wait_for(2)
    assert receiver.delivered() == [2, 3]
    with pytest.raises(InvalidInputError):
        hooks.add(URL, SECRET)  # the same URL twice
    hooks.remove(info.id)
    assert hooks.list() == [] and store.webhooks() == []
    assert store.webhook_cursor(info.id) is None
    with pytest.raises(NotFoundError):
        hooks.remove(info.id)


@pytest.mark.parametrize("url", [
    "http://example.com/hook", "https://10.0.0.5/hook", "http://192.168.1.1:8080/",
    "http://127.0.0.1.nip.io/", "ftp://127.0.0.1/", "http://user:pw@127.0.0.1/", "not a url",
])
def test_a_host_not_allowed_is_refused_before_anything_is_stored(
        url: str, ledger_store: tuple[Store, ProofLedgerProxy],
        make_hooks: Callable[..., Webhooks]) -> None:
    store, _ = ledger_store
    hooks = make_hooks(MemoryOutbox(), Receiver())
    with pytest.raises(InvalidInputError):
        hooks.add(url, SECRET)
    assert hooks.list() == [] and store.webhooks() == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/h", "http://127.9.9.9/",
                                 "http://[::1]:8000/h", "http://localhost/h",
                                 "https://hooks.example.com/x"])
def test_loopback_and_allowlisted_hosts_are_accepted(
        url: str, make_hooks: Callable[..., Webhooks]) -> None:
    hooks = make_hooks(MemoryOutbox(), Receiver(), hosts=["Hooks.Example.com"])
    assert hooks.add(url, SECRET).url == url


@pytest.mark.parametrize("secret", ["sh0rtXY", "whsec_not*base64!", "whsec_" + "QUJD", 42])
def test_a_bad_secret_is_refused_without_showing_it(
        secret: Any, make_hooks: Callable[..., Webhooks]) -> None:
    hooks = make_hooks(MemoryOutbox(), Receiver())
    with pytest.raises(InvalidInputError) as exc:
        hooks.add(URL, secret)
    if isinstance(secret, str):
        assert secret not in str(exc.value) and secret[6:] not in str(exc.value)
    assert hooks.list() == []


def test_the_secret_and_the_data_never_reach_the_log(
        make_hooks: Callable[..., Webhooks], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    source, receiver = MemoryOutbox(), Receiver([500, httpx.ReadTimeout])
    hooks = make_hooks(source, receiver)
    hooks.add(URL + "?key=querysecret", SECRET)
    source.emit("request:paid", {"note": "data-marker-77"})
    receiver.wait_for(3)
    wait_until(lambda: hooks.status()[0].last_delivered_seq == 1, 10, "delivered")
    hooks.close(timeout=10)
    text = caplog.text
    assert "not delivered (HTTP 500)" in text and "ReadTimeout" in text  # it does log
    assert "request:paid" in text and "event 1" in text
    for secret in (SECRET, SECRET[6:], base64.b64encode(RAW_KEY).decode()[:12],
                   "data-marker-77"):
        assert secret not in text
    # our lines show a URL without its query (httpx's own INFO lines show it whole: the
    # daemon keeps httpx at WARNING)
    ours = "\n".join(r.getMessage() for r in caplog.records
                     if r.name.startswith("coco_actors"))
    assert "127.0.0.1:9/hook" in ours and "querysecret" not in ours
    assert all(SECRET not in repr(info) for info in hooks.list())


def test_the_secret_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    os.chmod(path, 0o644)
    with pytest.raises(InvalidInputError, match="chmod 600") as exc:
        read_secret_file(path)
    assert SECRET not in str(exc.value)
    os.chmod(path, 0o640)
    with pytest.raises(InvalidInputError):
        read_secret_file(path)
    os.chmod(path, 0o600)
    assert read_secret_file(path) == SECRET
    with pytest.raises(InvalidInputError):
        read_secret_file(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    os.chmod(empty, 0o600)
    with pytest.raises(InvalidInputError, match="empty"):
        read_secret_file(empty)


def test_webhook_options_pair_urls_with_secret_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for p, text in ((a, "secret-number-one-abc"), (b, "secret-number-two-xyz")):
        p.write_text(text)
        os.chmod(p, 0o600)
    u1, u2 = "http://127.0.0.1:1/a", "http://127.0.0.1:2/b"
    assert specs_from_files([u1, u2], [a, b]) == [WebhookSpec(u1, "secret-number-one-abc"),
                                                  WebhookSpec(u2, "secret-number-two-xyz")]
    assert specs_from_files([u1, u2], [a]) == [WebhookSpec(u1, "secret-number-one-abc"),
                                               WebhookSpec(u2, "secret-number-one-abc")]
    assert specs_from_files([], []) == []
    with pytest.raises(InvalidInputError):
        specs_from_files([u1, u2, "http://127.0.0.1:3/"], [a, b])
    with pytest.raises(InvalidInputError):
        specs_from_files([], [a])
    with pytest.raises(InvalidInputError):
        Webhooks.validate([WebhookSpec("http://example.com/", "secret-number-one-abc")], ())


def test_retry_delays_are_capped_with_bounded_jitter() -> None:
    policy = RetryPolicy(first=1.0, cap=8.0, jitter=0.25)
    for n, base in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0), (500, 8.0)):
        for _ in range(50):
            assert base <= policy.delay(n) <= base * 1.25
    with pytest.raises(InvalidInputError):
        RetryPolicy(first=2.0, cap=1.0)


# --- a wallet against the real mint -----------------------------------------------------


@pytest.fixture
def hook_receiver() -> Iterator[HookReceiver]:
    r = HookReceiver()
    yield r
    r.close()


def test_a_wallet_posts_its_send_events_and_resumes_after_a_reopen(
        wallet: WalletFactory, mint: DevMint, hook_receiver: HookReceiver,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = normalize_mint_url(mint.url)
    alice, bob = wallet("alice", url, webhook_retry=FAST), wallet("bob", url)
    fund(alice, url, 1000)  # before the webhook: not delivered
    info = alice.webhooks.add(hook_receiver.url, SECRET)
    assert [(i.id, i.source) for i in alice.webhooks.list()] == [(info.id, "api")]
    start = alice.events.last_seq()

    prepared = alice.send.prepare_send(url, 100)
    op, token = alice.send.execute_prepared_send(prepared.id)
    assert balance_of(alice, url) == (900 - prepared.fee, 0, 100)
    hook_receiver.wait_acked("send:pending", op.id)
    alice.close()  # the stored webhook and its cursor survive the close
    bob.receive(token)
    assert balance_of(bob, url) == (100 - token_fee(token, mint.input_fee_ppk), 0, 0)

    alice = wallet("alice", url, webhook_retry=FAST)  # recovery finalizes the send
    alice.send.check_pending()
    assert balance_of(alice, url) == (900 - prepared.fee, 0, 0)
    hook_receiver.wait_acked("send:finalized", op.id)
    wait_until(lambda: alice.webhooks.status()[0].pending == 0, 10, "nothing pending")
    (status,) = alice.webhooks.status()
    assert status.id == info.id and status.last_delivered_seq == alice.events.last_seq()

    durable = [(e.seq, e.event) for e in alice.events.since(start)]
    got = [(d.seq, d.event) for d in hook_receiver.acked()]
    assert got == durable  # every event after the add, once each, in seq order
    assert [e for _, e in got if e.startswith("send:")] == [
        "send:prepared", "send:pending", "send:finalized"]
    assert all(verified(d, RAW_KEY) for d in hook_receiver.deliveries)
    assert all(token not in d.body.decode() for d in hook_receiver.deliveries)
    assert SECRET not in caplog.text and SECRET[6:] not in caplog.text
    alice.webhooks.remove(info.id)
    assert alice.webhooks.list() == []
