"""Watcher: tells operations what their mint says about proofs and quotes.

Per mint, one :class:`MintLink` thread owns one NUT-17 websocket with shared
``proof_state``, ``bolt11_mint_quote`` and ``bolt11_melt_quote`` subscriptions
(a Y or quote watched by several operations is subscribed once). When the mint
does not offer NUT-17 for
a kind, or the socket is closed or silent, the link falls back to batched
NUT-07 / quote polling, reconnects with capped exponential backoff,
resubscribes everything and sweeps once with NUT-07 after every reconnect, so
nothing that changed while it was away is missed.

The Watcher only *tells*: the operation actor decides and persists the
transition. Threads: :class:`WatcherActor` methods run on the actor's thread;
each :class:`MintLink` runs its own loop on a supervised thread (an unexpected
exception is logged and the loop restarts: reconnect, resubscribe, sweep) and
reports back with typed tells (``tell(ref, WatcherActor.on_report, ...)``).
Upward notices go through a :class:`WatchListener` (no import of the
Supervisor: no upward imports).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import websocket

from coco_actors.actors import NoticeActor, tell
from coco_actors.errors import CocoError
from coco_actors.mint_client import MintClient
from coco_actors.records import OperationId
from coco_actors.threads import SupervisedThread
from coco_actors.wire import MeltQuoteState, MintQuoteState, ProofState, ProofStateKind

log = logging.getLogger(__name__)

#: Filters per NUT-17 subscribe request.
SUBSCRIBE_CHUNK = 100


@dataclass(frozen=True, slots=True)
class WatcherConfig:
    """How the watcher watches. ``Coco.open(..., watcher=WatcherConfig(...))``."""

    websocket: bool = True           # False: NUT-07 / quote polling only
    poll_interval: float = 2.0       # seconds between polls while no websocket is up
    sweep_interval: float = 30.0     # a NUT-07 sweep even while the websocket is up
    silence_timeout: float = 60.0    # a socket silent this long is replaced
    reconnect_min: float = 0.25      # backoff of websocket reconnects...
    reconnect_max: float = 15.0      # ...capped here
    connect_timeout: float = 5.0
    pending_recheck: float = 0.5     # a Y the socket reported PENDING is checked again


#: The NUT-17 subscription kinds the watcher uses.
PROOF_STATE = "proof_state"
MINT_QUOTE = "bolt11_mint_quote"
MELT_QUOTE = "bolt11_melt_quote"
QUOTE_KINDS = (MINT_QUOTE, MELT_QUOTE)

#: Quote states a link saw: (kind, quote id) -> the state's wire value.
QuoteStates = dict[tuple[str, str], str]

#: What a link reports: the mint, proof states it saw, quote states it saw. Called on
#: the link's thread; must not block (the Watcher passes a tell).
Report = Callable[[str, list[ProofState], QuoteStates], None]

#: Opens a websocket: ``connect(url, timeout)``. A seam for tests, like httpx's transports.
Connect = Callable[[str, float], websocket.WebSocket]


def open_websocket(url: str, timeout: float) -> websocket.WebSocket:
    return websocket.create_connection(url, timeout=timeout, skip_utf8_validation=True)


class WatchListener(Protocol):
    """Who hears what the Watcher saw (the Supervisor, through an adapter of tells).

    Called on the Watcher actor's thread; the methods must not block.
    """

    def send_claimed(self, op_id: OperationId) -> None: ...

    def quote_paid(self, op_id: OperationId) -> None: ...

    def melt_decided(self, op_id: OperationId) -> None: ...


class MintLink:
    """The websocket (and polling fallback) of one mint, on its own supervised thread.

    The loop runs under :class:`~coco_actors.threads.SupervisedThread`: an unexpected
    exception is logged with its traceback and the loop starts again after a backoff
    (``reconnect_min`` .. ``reconnect_max``), which means a fresh connection, every
    filter resubscribed, and a sweep, exactly as after any reconnect.
    """

    def __init__(self, mint_url: str, client: MintClient, config: WatcherConfig,
                 report: Report, ws_kinds: frozenset[str], *,
                 connect: Connect = open_websocket,
                 on_reconnect: Callable[[str], None] | None = None) -> None:
        self.mint_url = mint_url
        self._on_reconnect = on_reconnect
        self._client = client
        self._config = config
        self._report = report
        self._connect_ws = connect
        self._ws_kinds = ws_kinds if config.websocket else frozenset()
        self._lock = threading.Lock()
        self._ys: set[str] = set()
        self._quotes: dict[str, set[str]] = {kind: set() for kind in QUOTE_KINDS}
        self._new: queue.SimpleQueue[tuple[str, list[str]]] = queue.SimpleQueue()
        self._ws: websocket.WebSocket | None = None  # assigned on the link thread only
        self._sub_kinds: dict[str, str] = {}
        # Ys the socket reported PENDING: the mint may have pushed their SPENT before our
        # subscription was registered, so they are asked again with NUT-07 (link thread)
        self._pending_ys: set[str] = set()
        self._recheck_at = 0.0
        self._rpc_id = 0
        self.connections = 0     # websocket connections opened (observable by tests)
        self.sweeps = 0
        self._thread = SupervisedThread(
            f"coco-watch {mint_url}", self._run, backoff_min=config.reconnect_min,
            backoff_max=config.reconnect_max, wake=self._abort, logger=log)

    # --- called from the watcher actor's thread -----------------------------------------

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def restarts(self) -> int:
        """How often the loop was restarted after an unexpected exception."""
        return self._thread.restarts

    def _filters(self, kind: str) -> set[str]:
        return self._ys if kind == PROOF_STATE else self._quotes[kind]

    def add(self, kind: str, filters: Iterable[str]) -> None:
        target = self._filters(kind)
        with self._lock:
            fresh = [f for f in filters if f not in target]
            target.update(fresh)
        if fresh:
            self._new.put((kind, fresh))

    def remove(self, kind: str, filters: Iterable[str]) -> None:
        # the mint keeps pushing for these until the next reconnect; reports are ignored
        target = self._filters(kind)
        with self._lock:
            target.difference_update(filters)

    def stop(self, timeout: float = 5.0) -> bool:
        """End the loop (aborting a blocked read); True if the thread ended in time."""
        return self._thread.stop(timeout)

    def _abort(self) -> None:
        """Wake a ``recv`` blocked on the link thread (runs on the stopping thread)."""
        ws = self._ws
        sock = ws.sock if ws is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: the loop exits anyway
                sock.shutdown(socket.SHUT_RDWR)

    # --- the loop, on the link thread ------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        """One life of the loop; a restart after a failure begins a new one from scratch."""
        try:
            self._loop(stop)
        finally:
            self._drop()

    def _loop(self, stop: threading.Event) -> None:
        backoff = self._config.reconnect_min
        next_connect = 0.0
        last_sweep = last_heard = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if self._ws is None and self._ws_kinds and now >= next_connect and self._watching():
                if self._connect():
                    backoff = self._config.reconnect_min
                    last_heard = now
                    if self.connections > 1:
                        self._reconnected()
                    last_sweep = self._sweep()  # whatever changed while we were away
                else:
                    next_connect = now + backoff * (0.5 + random.random() / 2)
                    backoff = min(backoff * 2, self._config.reconnect_max)
            ws = self._ws
            if ws is not None:
                # either step may find the socket gone; then it is dropped, and the next
                # tick polls or reconnects
                if self._send_new(ws) and self._receive(ws, stop):
                    last_heard = time.monotonic()
                elif self._ws is ws and \
                        time.monotonic() - last_heard > self._config.silence_timeout:
                    log.info("websocket to %s silent; reconnecting", self.mint_url)
                    self._drop()
                interval = self._config.sweep_interval
            else:
                self._drain_new()
                interval = self._config.poll_interval
                stop.wait(min(0.1, interval))
            if time.monotonic() - last_sweep >= interval and self._watching():
                last_sweep = self._sweep()
            elif self._pending_ys and time.monotonic() >= self._recheck_at:
                self._recheck_pending()

    def _watching(self) -> bool:
        with self._lock:
            return bool(self._ys or any(self._quotes.values()))

    def _connect(self) -> bool:
        """Open the socket and subscribe everything watched; False if it is not up."""
        url = "ws" + self.mint_url[len("http"):] + "/v1/ws"
        try:
            ws = self._connect_ws(url, self._config.connect_timeout)
        except (OSError, websocket.WebSocketException) as exc:
            log.info("websocket to %s unavailable (%s); polling", self.mint_url,
                     type(exc).__name__)
            return False
        ws.settimeout(0.1)
        self._ws = ws
        self.connections += 1
        self._sub_kinds.clear()
        self._drain_new()  # everything is resubscribed below
        with self._lock:
            ys = sorted(self._ys)
            quotes = {kind: sorted(q) for kind, q in self._quotes.items()}
        if not (self._subscribe(ws, PROOF_STATE, ys)
                and all(self._subscribe(ws, kind, q) for kind, q in quotes.items())):
            return False
        log.info("websocket to %s up; %d proofs and %d quotes subscribed", self.mint_url,
                 len(ys), sum(len(q) for q in quotes.values()))
        return True

    def _reconnected(self) -> None:
        """A socket up again: the mint may have restarted with new keysets, so the
        hook (the keyset refresher's request: it never blocks) is told."""
        if self._on_reconnect is None:
            return
        try:
            self._on_reconnect(self.mint_url)
        except Exception:  # a notice: its failure is logged, the link goes on
            log.exception("reconnect hook for %s failed", self.mint_url)

    def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):  # already broken
                ws.close(timeout=0.5)

    def _subscribe(self, ws: websocket.WebSocket, kind: str, filters: list[str]) -> bool:
        """Send the subscribe requests; False (and the socket dropped) if it failed."""
        if kind not in self._ws_kinds:
            return True
        for start in range(0, len(filters), SUBSCRIBE_CHUNK):
            sub_id = str(uuid.uuid4())
            self._sub_kinds[sub_id] = kind
            self._rpc_id += 1
            msg = {"jsonrpc": "2.0", "id": self._rpc_id, "method": "subscribe",
                   "params": {"kind": kind, "subId": sub_id,
                              "filters": filters[start:start + SUBSCRIBE_CHUNK]}}
            try:
                ws.send(json.dumps(msg))
            except (OSError, websocket.WebSocketException):
                log.info("websocket to %s closed while subscribing", self.mint_url)
                self._drop()
                return False
        return True

    def _drain_new(self) -> None:
        while True:
            try:
                self._new.get_nowait()
            except queue.Empty:
                return

    def _send_new(self, ws: websocket.WebSocket) -> bool:
        """Subscribe everything added since the last tick, one request per kind: the
        mint does one lookup per request, not one per pending send. False when the
        socket went away meanwhile (what was not sent is resubscribed on reconnect)."""
        batched: dict[str, list[str]] = {}
        while True:
            try:
                kind, filters = self._new.get_nowait()
            except queue.Empty:
                break
            batched.setdefault(kind, []).extend(filters)
        return all(self._subscribe(ws, kind, filters) for kind, filters in batched.items())

    def _receive(self, ws: websocket.WebSocket, stop: threading.Event) -> bool:
        """Read what the socket has; False when nothing came within the tick, or the
        socket closed (then it is dropped)."""
        try:
            raw = ws.recv()
        except websocket.WebSocketTimeoutException:
            return False
        except (OSError, websocket.WebSocketException) as exc:
            if not stop.is_set():
                log.info("websocket to %s closed (%s); polling until it is back",
                         self.mint_url, type(exc).__name__)
            self._drop()
            return False
        if not raw:  # a close frame
            self._drop()
            return False
        self._handle(raw)
        return True

    def _handle(self, raw: str | bytes) -> None:
        try:
            msg = json.loads(raw)
            if not isinstance(msg, dict):
                raise ValueError("not a JSON-RPC object")
            params = msg.get("params") if msg.get("method") == "subscribe" else None
            if params is None:
                if "error" in msg:
                    log.warning("mint %s refused a subscription: %.200s", self.mint_url,
                                msg["error"])
                return
            kind = self._sub_kinds.get(params["subId"])
            payload = params["payload"]
            if kind == PROOF_STATE:
                state = ProofState.from_wire(payload)
                if state.state == ProofStateKind.PENDING:
                    self._expect_change([state.Y])
                self._report(self.mint_url, [state], {})
            elif kind in QUOTE_KINDS:
                quote, quote_state = payload["quote"], payload["state"]
                if not isinstance(quote, str) or not isinstance(quote_state, str):
                    raise TypeError("quote and state must be strings")
                self._report(self.mint_url, [], {(kind, quote): quote_state})
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError,
                CocoError) as exc:  # any garbage from the mint: log it, keep listening
            log.warning("unreadable websocket message from %s: %s", self.mint_url,
                        str(exc)[:200] or type(exc).__name__)

    def _expect_change(self, ys: Iterable[str]) -> None:
        if not self._pending_ys:
            self._recheck_at = time.monotonic() + self._config.pending_recheck
        self._pending_ys.update(ys)

    def _recheck_pending(self) -> None:
        """NUT-07 on the Ys last seen PENDING that are still watched (a swap in flight
        when we subscribed: its SPENT notice may have gone out before our subscription)."""
        with self._lock:
            ys = [y for y in self._pending_ys if y in self._ys]
        self._pending_ys.clear()
        if not ys:
            return
        try:
            states = self._client.check_state(ys)
        except CocoError as exc:
            log.info("checking pending proofs at %s failed (%s); trying again later",
                     self.mint_url, exc)
            self._expect_change(ys)
            return
        self._expect_change(s.Y for s in states if s.state == ProofStateKind.PENDING)
        self._report(self.mint_url, states, {})

    def _sweep(self) -> float:
        """One NUT-07 check of every watched Y, and a status check of every quote."""
        with self._lock:
            ys = list(self._ys)
            mint_quotes = list(self._quotes[MINT_QUOTE])
            melt_quotes = list(self._quotes[MELT_QUOTE])
        self.sweeps += 1
        try:
            states = self._client.check_state(ys) if ys else []
            quote_states: QuoteStates = {
                (MINT_QUOTE, q): self._client.get_mint_quote(q).state.value for q in mint_quotes}
            quote_states.update({(MELT_QUOTE, q): self._client.get_melt_quote(q).state.value
                                 for q in melt_quotes})
        except CocoError as exc:
            log.info("polling %s failed (%s); trying again later", self.mint_url, exc)
            return time.monotonic()
        if states or quote_states:
            self._report(self.mint_url, states, quote_states)
        return time.monotonic()


class WatcherActor(NoticeActor):
    """Keeps who watches what, and tells the listener when something happened.

    Registrations (``watch_send``, ``watch_quote``, ``unwatch``) and the links'
    reports (``on_report``, a :func:`~coco_actors.actors.tell` from a link thread)
    all run on this actor's thread. ``listener`` hears ``send_claimed`` and
    ``quote_paid`` on this thread too; its methods must not block.
    """

    def __init__(self, config: WatcherConfig, listener: WatchListener,
                 client_factory: Callable[[str], MintClient] = MintClient,
                 on_reconnect: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self._on_reconnect = on_reconnect  # called on a link's thread; must not block
        self._config = config
        self._listener = listener
        self._client_factory = client_factory
        self._own_clients: dict[str, MintClient] = {}
        self._links: dict[str, MintLink] = {}
        # op -> (mint, every Y of its token, the Ys not yet seen spent)
        self._sends: dict[OperationId, tuple[str, frozenset[str], set[str]]] = {}
        self._y_owners: dict[tuple[str, str], set[OperationId]] = {}
        self._quotes: dict[tuple[str, str, str], OperationId] = {}  # (kind, mint, quote)

    def on_stop(self) -> None:
        for link in self._links.values():
            link.stop()
        for client in self._own_clients.values():
            client.close()
        self._links.clear()

    def _link(self, mint_url: str) -> MintLink:
        link = self._links.get(mint_url)
        if link is None:
            client = self._own_clients[mint_url] = self._client_factory(mint_url)
            kinds: frozenset[str] = frozenset()
            try:
                # every unit's: a usd quote is watched on the same socket as a sat one
                kinds = client.get_info().websocket_commands(None)
            except CocoError as exc:
                log.info("no info from %s (%s); polling only for now", mint_url, exc)
                kinds = frozenset({PROOF_STATE, *QUOTE_KINDS})  # try the socket
            ref = self.actor_ref

            def report(url: str, states: list[ProofState], quotes: QuoteStates) -> None:
                tell(ref, WatcherActor.on_report, url, states, quotes)

            link = MintLink(mint_url, client, self._config, report, kinds,
                            on_reconnect=self._on_reconnect)
            link.start()
            self._links[mint_url] = link
        return link

    # --- registrations (tells from operations and the supervisor) ------------------------

    def watch_send(self, op_id: OperationId, mint_url: str, ys: list[str]) -> None:
        if op_id in self._sends:
            return
        self._sends[op_id] = (mint_url, frozenset(ys), set(ys))
        for y in ys:
            self._y_owners.setdefault((mint_url, y), set()).add(op_id)
        self._link(mint_url).add("proof_state", ys)

    def watch_quote(self, op_id: OperationId, mint_url: str, quote_id: str) -> None:
        """A mint quote: the listener hears ``quote_paid`` once it is paid (or issued: a
        redeem whose answer was lost is then resolved by its operation)."""
        self._watch_quote(MINT_QUOTE, op_id, mint_url, quote_id)

    def watch_melt_quote(self, op_id: OperationId, mint_url: str, quote_id: str) -> None:
        """A pending melt's quote: the listener hears ``melt_decided`` once the mint says
        PAID or UNPAID (the operation asks the mint itself before it acts)."""
        self._watch_quote(MELT_QUOTE, op_id, mint_url, quote_id)

    def _watch_quote(self, kind: str, op_id: OperationId, mint_url: str, quote_id: str) -> None:
        self._quotes[(kind, mint_url, quote_id)] = op_id
        self._link(mint_url).add(kind, [quote_id])

    def unwatch(self, op_id: OperationId) -> None:
        entry = self._sends.pop(op_id, None)
        if entry is not None:
            mint_url, ys, _ = entry
            gone = []
            for y in ys:
                owners = self._y_owners.get((mint_url, y), set())
                owners.discard(op_id)
                if not owners:
                    self._y_owners.pop((mint_url, y), None)
                    gone.append(y)
            if mint_url in self._links:
                self._links[mint_url].remove("proof_state", gone)
        for (kind, mint_url, quote_id), owner in list(self._quotes.items()):
            if owner == op_id:
                del self._quotes[(kind, mint_url, quote_id)]
                if mint_url in self._links:
                    self._links[mint_url].remove(kind, [quote_id])

    # --- what the links saw ---------------------------------------------------------------

    def on_report(self, mint_url: str, states: list[ProofState], quotes: QuoteStates) -> None:
        claimed: list[OperationId] = []
        for s in states:
            if s.state != ProofStateKind.SPENT:
                continue
            for op_id in list(self._y_owners.get((mint_url, s.Y), ())):
                remaining = self._sends[op_id][2]
                remaining.discard(s.Y)
                if not remaining:
                    claimed.append(op_id)
        for op_id in claimed:
            self.unwatch(op_id)
            self._notify(self._listener.send_claimed, op_id)
        for (kind, quote_id), state in quotes.items():
            quote_op = self._quotes.get((kind, mint_url, quote_id))
            if quote_op is None:
                continue
            if kind == MINT_QUOTE and state in (MintQuoteState.PAID, MintQuoteState.ISSUED):
                self.unwatch(quote_op)
                self._notify(self._listener.quote_paid, quote_op)
            elif kind == MELT_QUOTE and state in (MeltQuoteState.PAID, MeltQuoteState.UNPAID):
                self.unwatch(quote_op)
                self._notify(self._listener.melt_decided, quote_op)

    @staticmethod
    def _notify(notice: Callable[[OperationId], None], op_id: OperationId) -> None:
        """One notice to the listener; a failing one is logged and does not stop the rest."""
        try:
            notice(op_id)
        except Exception:
            log.exception("watcher notice %s for %s failed",
                          getattr(notice, "__name__", notice), op_id)

    # --- for tests and status -------------------------------------------------------------

    def stats(self) -> dict[str, dict[str, int | bool]]:
        return {url: {"connections": link.connections, "sweeps": link.sweeps,
                      "restarts": link.restarts, "alive": link.is_alive()}
                for url, link in self._links.items()}

    def watched_sends(self) -> int:
        return len(self._sends)
