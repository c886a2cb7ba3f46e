"""The Watcher against the real mint: sends finalize themselves, by websocket or polling.

The recipient here claims tokens with raw protocol calls straight to the mint
(so that it is never behind the sender's fault proxy), in one swap per batch.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from coco_actors import Coco
from coco_actors.crypto.keysets import fee_for
from coco_actors.crypto.outputs import random_outputs
from coco_actors.mint_client import MintClient
from coco_actors.records import OperationId
from coco_actors.tokens import decode, resolve_keyset_ids
from coco_actors.watcher import WatcherActor, WatcherConfig
from coco_actors.wire import ProofState, split_amount
from tests.support.proxy import Fault, FaultProxy

WS_ONLY = WatcherConfig(poll_interval=60.0, sweep_interval=60.0)
# websocket only, and quick to come back after a cut or a restart
WS_QUICK = WatcherConfig(poll_interval=60.0, sweep_interval=60.0, reconnect_min=0.05,
                         reconnect_max=0.2)
WAIT = 10.0


class Finalized:
    """Counts send:finalized events and lets a test wait for a number of them."""

    def __init__(self, coco: Coco) -> None:
        self.ids: list[str] = []
        self.times: list[float] = []
        self._cond = threading.Condition()
        coco.on("send:finalized", self._on)

    def _on(self, payload: dict) -> None:
        with self._cond:
            self.ids.append(payload["operation_id"])
            self.times.append(time.monotonic())
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.ids) >= n, timeout)


def claim(mint_url: str, tokens: list[str]) -> None:
    """The recipient: one swap spending every proof of ``tokens`` (raw protocol)."""
    with MintClient(mint_url) as client:
        keysets = client.get_keysets()
        proofs = []
        for t in tokens:
            proofs.extend(resolve_keyset_ids(decode(t), [k.id for k in keysets]).proofs)
        ppk = {k.id: k.input_fee_ppk for k in keysets}
        value = sum(p.amount for p in proofs) - fee_for(ppk[p.keyset_id] for p in proofs)
        active = next(k for k in keysets if k.active and k.unit == "sat")
        outputs = random_outputs(split_amount(value), active.id)
        client.swap(proofs, [o.blinded for o in outputs])


@pytest.fixture
def open_wallet(tmp_path) -> Iterator:
    opened: list[Coco] = []

    def make(name: str, mint_url: str, amount: int = 0, **kwargs) -> Coco:
        coco = Coco.open(tmp_path / name, **kwargs)
        opened.append(coco)
        coco.mints.add(mint_url)
        if amount:
            quote = coco.mint.create_quote(mint_url, amount)
            coco.mint.redeem(quote.id, timeout=30)
        return coco

    yield make
    for coco in opened:
        coco.close()


@pytest.fixture
def proxy(mint) -> Iterator[FaultProxy]:
    p = FaultProxy(mint.url)
    yield p
    p.stop()


def send(coco: Coco, url: str, amount: int) -> tuple[str, str]:
    prepared = coco.send.prepare_send(url, amount)
    op, token = coco.send.execute_prepared_send(prepared.id)
    return op.id, token


def test_send_finalizes_through_the_websocket_within_2s(mint, open_wallet):
    alice = open_wallet("alice", mint.url, 200, watcher=WS_ONLY)
    finalized = Finalized(alice)
    op_id, token = send(alice, mint.url, 50)
    deadline = time.monotonic() + 5
    while alice._watcher.stats().get().get(mint.url, {}).get("connections", 0) < 1:
        assert time.monotonic() < deadline, "no websocket connection"
        finalized.wait_for(1, timeout=0.05)
    sweeps_before = alice._watcher.stats().get()[mint.url]["sweeps"]
    claimed_at = time.monotonic()
    claim(mint.url, [token])
    assert finalized.wait_for(1, timeout=2.0), "not finalized within 2 s"
    assert finalized.ids == [op_id]
    assert finalized.times[0] - claimed_at < 2.0
    assert alice.send.get_operation(op_id).state == "completed"
    stats = alice._watcher.stats().get()[mint.url]
    # one connection, and no NUT-07 sweep since the claim: the socket did it
    assert stats["connections"] == 1 and stats["sweeps"] == sweeps_before
    assert alice.balance()[mint.url].pending == 0


def test_without_websocket_polling_finalizes_within_the_interval(mint, proxy, open_wallet):
    proxy.refuse_ws = True
    alice = open_wallet("alice", proxy.url, 200,
                        watcher=WatcherConfig(poll_interval=0.5, sweep_interval=0.5))
    finalized = Finalized(alice)
    op_id, token = send(alice, proxy.url, 30)
    assert proxy.ws_attempted.wait(5), "the watcher never tried the websocket"
    claim(mint.url, [token])
    claimed_at = time.monotonic()
    assert finalized.wait_for(1, timeout=0.5 + 1.5), "polling did not finalize in time"
    assert finalized.ids == [op_id]
    assert finalized.times[0] - claimed_at < 2.0
    assert proxy.ws_accepted == 0 and proxy.ws_attempts >= 1


def test_claim_during_a_websocket_outage_finalizes_exactly_once(mint, proxy, open_wallet):
    # polling is slow on purpose: only the sweep after the reconnect can catch the claim
    alice = open_wallet("alice", proxy.url, 200,
                        watcher=WatcherConfig(poll_interval=60.0, sweep_interval=60.0,
                                              reconnect_min=0.2, reconnect_max=0.5))
    finalized = Finalized(alice)
    op_id, token = send(alice, proxy.url, 40)
    other_id, _ = send(alice, proxy.url, 20)  # stays pending throughout
    deadline = time.monotonic() + 5
    while proxy.ws_accepted < 1 and time.monotonic() < deadline:
        proxy.ws_attempted.wait(0.1)
    assert proxy.ws_accepted == 1
    proxy.refuse_ws = True
    proxy.ws_attempted.clear()
    proxy.cut_websockets()
    assert proxy.ws_attempted.wait(5), "the watcher did not notice the cut"
    claim(mint.url, [token])            # the recipient claims while the socket is down
    assert not finalized.wait_for(1, timeout=0.3)
    proxy.refuse_ws = False             # back: reconnect, resubscribe, sweep
    assert finalized.wait_for(1, timeout=5.0), "the claim during the outage was missed"
    assert not finalized.wait_for(2, timeout=1.0), "finalized twice"
    assert finalized.ids == [op_id]
    assert proxy.ws_accepted >= 2
    assert alice.send.get_operation(other_id).state == "pending"
    assert alice.send.get_operation(op_id).state == "completed"


def test_200_pending_sends_share_one_connection_and_finalize_in_under_5s(mint_fee0,
                                                                         open_wallet):
    url = mint_fee0.url
    alice = open_wallet("alice", url, 1000, watcher=WS_ONLY)
    finalized = Finalized(alice)
    tokens = [send(alice, url, 1)[1] for _ in range(200)]
    assert alice.balance()[url].pending == 200
    assert alice._watcher.watched_sends().get() == 200
    claimed_at = time.monotonic()
    claim(url, tokens)                  # one batch: a single swap of all 200 tokens
    assert finalized.wait_for(200, timeout=5.0), f"only {len(finalized.ids)} finalized"
    elapsed = max(finalized.times) - claimed_at
    assert elapsed < 5.0
    assert len(set(finalized.ids)) == 200
    stats = alice._watcher.stats().get()
    assert list(stats) == [url] and stats[url]["connections"] == 1
    assert alice.balance()[url].pending == 0


def test_watcher_off_reports_truthfully_and_check_pending_finalizes(mint, open_wallet):
    alice = open_wallet("alice", mint.url, 100, watcher=False)
    op_id, token = send(alice, mint.url, 10)
    claim(mint.url, [token])
    assert alice.send.get_operation(op_id).state == "pending"  # nobody looked yet
    [op] = alice.send.check_pending()
    assert op.id == op_id and op.state == "completed"
    assert alice.send.get_operation(op_id).state == "completed"


@pytest.mark.parametrize("fault,forward", [(Fault.RESET, False), (Fault.DROP_RESPONSE, True)],
                         ids=["request-lost", "answer-lost"])
def test_a_redeem_the_watcher_started_that_fails_is_retried_without_a_restart(
        mint, proxy, open_wallet, fault, forward):
    """The Watcher's notice redeems a paid quote; that mint request fails in transit (lost,
    or processed with its answer lost). The operation has the Watcher follow the quote
    again, and its next notice (PAID, or ISSUED) finishes it: nobody calls redeem."""
    coco = open_wallet("alice", proxy.url)
    done = threading.Event()
    coco.on("mint:finalized", lambda payload: done.set())
    proxy.inject("POST", "/v1/mint/bolt11", fault, forward=forward)
    quote = coco.mint.create_quote(proxy.url, 64)
    assert done.wait(30), "the quote was never minted"
    assert coco.balance()[proxy.url].spendable == 64
    mints = proxy.seen("POST", "/v1/mint/bolt11")
    assert mints[0].fault == fault.value and mints[0].forwarded is forward
    # the retry asks NUT-09 restore first: answer lost -> the signatures come back from it
    # (never minted twice); request lost -> nothing to restore, minted by a second request
    [restore] = proxy.seen("POST", "/v1/restore")
    assert bool(restore.response_json()["signatures"]) is forward
    assert len(mints) == (1 if forward else 2)
    op = coco.mint.open_operation_for(quote.id)
    assert op is None  # over: completed, nothing left executing


def test_close_leaves_no_thread_running(mint, tmp_path):
    before = {t.ident for t in threading.enumerate()}
    coco = Coco.open(tmp_path / "w")
    coco.mints.add(mint.url)
    quote = coco.mint.create_quote(mint.url, 64)
    coco.mint.redeem(quote.id, timeout=30)
    send(coco, mint.url, 8)             # a pending send keeps a websocket open
    # an ask to the watcher is answered after the send's watch request (a tell) was handled
    assert coco._watcher.stats().get(timeout=5)[mint.url]["alive"]
    assert any(t.name.startswith("coco-watch") for t in threading.enumerate())
    coco.close()
    left = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert left == [], f"threads left running: {[t.name for t in left]}"


def test_polling_finalizes_one_send_after_another(mint, proxy, open_wallet):
    """Each claim is seen, also after earlier sends finalized (their Ys are dropped)."""
    proxy.refuse_ws = True
    alice = open_wallet("alice", proxy.url, 300,
                        watcher=WatcherConfig(poll_interval=0.3, sweep_interval=0.3))
    finalized = Finalized(alice)
    sends = [send(alice, proxy.url, amount) for amount in (10, 20, 30)]
    for n, (op_id, token) in enumerate(sends, start=1):
        claim(mint.url, [token])
        assert finalized.wait_for(n, timeout=3.0), f"claim {n} not finalized by polling"
        assert finalized.ids[-1] == op_id
    assert alice._watcher.watched_sends().get() == 0
    assert alice.balance()[proxy.url].pending == 0


class ResettingProxy(FaultProxy):
    """A FaultProxy whose websocket cut can be a reset: the wallet's socket gets the
    RST at once, so its next *send* fails (after a plain cut, the first send still
    succeeds and only the next read notices)."""

    def reset_websockets(self, timeout: float = WAIT) -> None:
        with self._lock:
            socks, self._ws_socks = self._ws_socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.shutdown(socket.SHUT_RDWR)  # wakes the relay, which closes it: a RST
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while any(s.fileno() != -1 for s in socks):
            assert time.monotonic() < deadline, "the proxy did not close the websocket"
            pause.wait(0.01)


@pytest.fixture
def resetting_proxy(mint_fee0) -> Iterator[ResettingProxy]:
    p = ResettingProxy(mint_fee0.url)
    yield p
    p.stop()


def test_websocket_cut_while_new_sends_are_subscribed_loses_no_claim(
        mint_fee0, resetting_proxy, open_wallet):
    """The socket goes away exactly when the link sends a new subscription (once a bug:
    the link thread died of an AssertionError and no claim was ever seen again)."""
    proxy = resetting_proxy
    alice = open_wallet("alice", proxy.url, 400, watcher=WS_QUICK)
    finalized = Finalized(alice)
    sends = [send(alice, proxy.url, 5)]
    deadline = time.monotonic() + WAIT
    while proxy.ws_accepted < 1:
        assert time.monotonic() < deadline, "no websocket connection"
        proxy.ws_attempted.wait(0.05)
    rounds = 4
    for n in range(rounds):
        held = proxy.hold("POST", "/v1/checkstate")
        proxy.reset_websockets()         # the link reconnects, resubscribes, and sweeps...
        assert held.wait(WAIT), f"round {n}: no sweep after the reconnect"
        sends.append(send(alice, proxy.url, 6 + n))  # ...while a new send is watched:
        assert alice._watcher.watched_sends().get(timeout=WAIT) == len(sends)
        proxy.reset_websockets()         # its subscription waits, and the socket is gone
        held.release()                   # the sweep ends; the link's next step is the send
        sends.append(send(alice, proxy.url, 1 + n))
        proxy.cut_websockets()           # and a plain cut, racing that send's subscription
    assert alice._watcher.watched_sends().get(timeout=WAIT) == len(sends)
    claim(mint_fee0.url, [token for _, token in sends])
    assert finalized.wait_for(len(sends), timeout=WAIT), \
        f"only {len(finalized.ids)} of {len(sends)} claims finalized"
    assert sorted(finalized.ids) == sorted(op_id for op_id, _ in sends)
    stats = alice._watcher.stats().get(timeout=WAIT)[proxy.url]
    assert stats["alive"] and stats["restarts"] == 0  # the loop handled it: no crash
    # each held sweep ran on a connection that the next reset took away
    assert stats["connections"] >= 1 + rounds
    assert alice.balance()[proxy.url].pending == 0


class FlakyClient(MintClient):
    """A MintClient whose first check_state raises what no caller expects (a bug)."""

    def __init__(self, mint_url: str) -> None:
        super().__init__(mint_url)
        self.raised = threading.Event()

    def check_state(self, ys: Sequence[str]) -> list[ProofState]:
        if not self.raised.is_set():
            self.raised.set()
            raise RuntimeError("injected failure")
        return super().check_state(ys)


class Listener:
    """A WatchListener that records what it heard (on the watcher's thread)."""

    def __init__(self) -> None:
        self.claimed: list[OperationId] = []
        self.paid: list[OperationId] = []
        self._cond = threading.Condition()

    def send_claimed(self, op_id: OperationId) -> None:
        with self._cond:
            self.claimed.append(op_id)
            self._cond.notify_all()

    def quote_paid(self, op_id: OperationId) -> None:
        with self._cond:
            self.paid.append(op_id)
            self._cond.notify_all()

    def wait_claimed(self, op_id: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: op_id in self.claimed, timeout)


def test_an_exception_in_a_link_is_logged_and_the_link_recovers(mint, open_wallet, caplog):
    caplog.set_level(logging.ERROR, logger="coco_actors.watcher")
    alice = open_wallet("alice", mint.url, 100, watcher=False)
    op_id, token = send(alice, mint.url, 10)
    ys = list(alice.send.get_operation(op_id).send_ys)
    clients: list[FlakyClient] = []

    def factory(url: str) -> MintClient:
        clients.append(FlakyClient(url))
        return clients[-1]

    listener = Listener()
    ref = WatcherActor.start(WS_QUICK, listener, client_factory=factory)
    try:
        watcher = ref.proxy()
        watcher.watch_send(op_id, mint.url, ys).get(timeout=WAIT)
        [client] = clients
        assert client.raised.wait(WAIT)  # the link's first sweep hit the bug
        claim(mint.url, [token])
        assert listener.wait_claimed(op_id, WAIT), "the link did not recover"
        assert listener.claimed == [op_id]
        stats = watcher.stats().get(timeout=WAIT)[mint.url]
        assert stats["alive"] and stats["restarts"] == 1
    finally:
        ref.stop(timeout=WAIT)
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], RuntimeError)
    assert "Traceback" in caplog.text and "injected failure" in caplog.text
