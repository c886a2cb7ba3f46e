"""MintLink against a scripted websocket (no mint): the loop survives the socket going
away at any step, and an unexpected exception restarts it instead of ending it."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import websocket

from coco_actors.watcher import MintLink, WatcherConfig
from coco_actors.wire import MintQuoteState, ProofState, ProofStateKind

WAIT = 10.0
CONFIG = WatcherConfig(poll_interval=60.0, sweep_interval=60.0, reconnect_min=0.01,
                       reconnect_max=0.05)
Y1, Y2 = "02" + "11" * 32, "03" + "22" * 32


class ScriptedSocket(websocket.WebSocket):
    """A websocket whose peer is the test: it records what the link sends and hands
    the link what the test queues; ``fail_next_send`` makes the next send fail as a
    socket that went away does."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, Any]] = []
        self.inbox: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.fail_next_send = False
        self.tick = 0.1
        self.closed = threading.Event()
        self._cond = threading.Condition()

    def settimeout(self, timeout: float | None) -> None:
        self.tick = timeout or 0.1

    def send(self, payload: str | bytes, opcode: int = 0) -> int:
        with self._cond:
            if self.fail_next_send:
                self.fail_next_send = False
                raise websocket.WebSocketConnectionClosedException("socket is already closed.")
            self.sent.append(json.loads(payload))
            self._cond.notify_all()
        return len(payload)

    def recv(self) -> str:
        try:
            return self.inbox.get(timeout=self.tick)
        except queue.Empty:
            raise websocket.WebSocketTimeoutException("tick") from None

    def close(self, *args: Any, **kwargs: Any) -> None:
        self.closed.set()

    def subscribed(self) -> set[str]:
        with self._cond:
            return {f for m in self.sent for f in m["params"]["filters"]}

    def wait_subscribed(self, filters: set[str], timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: filters <= self.subscribed(), timeout)

    def push_state(self, y: str, state: str) -> None:
        """The mint's notification for ``y``, on the subscription that covers it."""
        sub_id = next(m["params"]["subId"] for m in self.sent
                      if y in m["params"]["filters"])
        self.inbox.put(json.dumps({"jsonrpc": "2.0", "method": "subscribe", "params": {
            "subId": sub_id, "payload": {"Y": y, "state": state, "witness": None}}}))


class Sockets:
    """The ``connect`` seam: hands out a fresh ScriptedSocket per connection."""

    def __init__(self) -> None:
        self.made: list[ScriptedSocket] = []
        self._cond = threading.Condition()

    def __call__(self, url: str, timeout: float) -> websocket.WebSocket:
        sock = ScriptedSocket()
        with self._cond:
            self.made.append(sock)
            self._cond.notify_all()
        return sock

    def wait_for(self, n: int, timeout: float = WAIT) -> ScriptedSocket:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.made) >= n, timeout), \
                f"only {len(self.made)} connections"
            return self.made[n - 1]


class FakeClient:
    """Stands in for MintClient in the sweeps; ``fail`` raises once from check_state;
    ``states`` overrides what NUT-07 answers for some Ys (default UNSPENT)."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.checked = threading.Event()
        self.states: dict[str, ProofStateKind] = {}
        self.calls: list[list[str]] = []

    def check_state(self, ys: list[str]) -> list[ProofState]:
        self.checked.set()
        self.calls.append(list(ys))
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc
        return [ProofState(Y=y, state=self.states.get(y, ProofStateKind.UNSPENT)) for y in ys]

    def get_mint_quote(self, quote_id: str) -> Any:
        raise AssertionError("no quotes in these tests")


class Reports:
    def __init__(self) -> None:
        self.spent: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, url: str, states: list[ProofState],
                 quotes: dict[str, MintQuoteState]) -> None:
        with self._cond:
            self.spent.extend(s.Y for s in states if s.state == ProofStateKind.SPENT)
            self._cond.notify_all()

    def wait_spent(self, y: str, timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: y in self.spent, timeout)


@pytest.fixture
def links() -> Iterator[list[MintLink]]:
    made: list[MintLink] = []
    yield made
    for link in made:
        assert link.stop(timeout=WAIT)


def make_link(links: list[MintLink], client: FakeClient, sockets: Sockets,
              reports: Reports) -> MintLink:
    link = MintLink("http://127.0.0.1:1", client, CONFIG, reports,  # type: ignore[arg-type]
                    frozenset({"proof_state"}), connect=sockets)
    links.append(link)
    return link


def test_socket_gone_while_sending_new_subscriptions_is_a_reconnect_not_a_crash(
        links: list[MintLink], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    sockets, reports = Sockets(), Reports()
    link = make_link(links, FakeClient(), sockets, reports)
    link.add("proof_state", [Y1])
    link.start()
    first = sockets.wait_for(1)
    assert first.wait_subscribed({Y1})
    first.fail_next_send = True     # the socket goes away just as the next send is made
    link.add("proof_state", [Y2])
    second = sockets.wait_for(2)    # dropped, reconnected: everything resubscribed
    assert first.closed.wait(WAIT)
    assert second.wait_subscribed({Y1, Y2})
    second.push_state(Y2, "SPENT")
    assert reports.wait_spent(Y2)
    assert link.is_alive()
    assert link.restarts == 0       # handled by the loop: no exception escaped it
    assert link.connections == 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_unexpected_exception_in_the_loop_is_logged_and_the_link_restarts(
        links: list[MintLink], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="coco_actors.watcher")
    client = FakeClient(fail=RuntimeError("unexpected"))
    sockets, reports = Sockets(), Reports()
    link = make_link(links, client, sockets, reports)
    link.add("proof_state", [Y1])
    link.start()
    first = sockets.wait_for(1)     # connected, then the sweep raised
    second = sockets.wait_for(2)    # restarted: a new connection, resubscribed
    assert first.closed.wait(WAIT)
    assert second.wait_subscribed({Y1})
    second.push_state(Y1, "SPENT")
    assert reports.wait_spent(Y1)
    assert link.is_alive()
    assert link.restarts == 1
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert "coco-watch http://127.0.0.1:1" in record.getMessage()


def test_stop_ends_the_link_and_closes_its_socket(links: list[MintLink]) -> None:
    sockets = Sockets()
    link = MintLink("http://127.0.0.1:1", FakeClient(), CONFIG,  # type: ignore[arg-type]
                    Reports(), frozenset({"proof_state"}), connect=sockets)
    link.add("proof_state", [Y1])
    link.start()
    sock = sockets.wait_for(1)
    assert sock.wait_subscribed({Y1})
    assert link.stop(timeout=WAIT)
    assert not link.is_alive()
    assert sock.closed.is_set()


def test_a_proof_reported_pending_is_checked_again_so_a_missed_spent_notice_is_not_lost(
        links: list[MintLink]) -> None:
    """Seen against Nutshell: subscribing while the recipient's swap is in flight, the
    socket pushes PENDING, and the SPENT notice went out before the subscription was
    registered, so it never comes. The link asks NUT-07 again shortly after a PENDING."""
    client, sockets, reports = FakeClient(), Sockets(), Reports()
    link = make_link(links, client, sockets, reports)
    link.add("proof_state", [Y1])
    link.start()
    sock = sockets.wait_for(1)
    assert sock.wait_subscribed({Y1})
    assert client.checked.wait(WAIT)        # the sweep after connecting: still unspent
    sweeps = len(client.calls)
    client.states[Y1] = ProofStateKind.SPENT
    sock.push_state(Y1, "PENDING")          # ... and no SPENT notice ever follows
    assert reports.wait_spent(Y1, timeout=CONFIG.pending_recheck + WAIT)
    assert client.calls[sweeps:] == [[Y1]]  # one targeted check, not a full sweep
