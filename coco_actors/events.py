"""Events: durable in an outbox, then told up to the bus, whose handlers run on its thread.

Every event is an :class:`Emission` handed to the ProofLedger with the transition that
causes it; the ledger gives it the next ``seq``, writes its :class:`EventRecord` in the
same LMDB transaction (the outbox) and, after the commit, tells the bus the in-process
payload plus ``"seq"``. One writer thread, one FIFO mailbox: handlers see the events in
seq order, which is the order of each operation's transitions.

:class:`EventLog` (``coco.events``) reads the outbox from any thread: ``since`` replays,
``wait`` blocks until a later event is committed (woken by the ledger, no polling).
Events older than the retention window are pruned (:data:`DEFAULT_RETENTION`), never the
newest one, so a seq never moves back; ``since(after)`` with ``after`` older than the
oldest kept event starts at the oldest kept (``oldest_seq`` says where that is).

A handler that raises is logged and forgotten; it never reaches the operation
that emitted the event, and never stops the bus.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pykka
from pykka.typing import ActorMemberMixin, proxy_method

from coco_actors.actors import NoticeActor
from coco_actors.errors import InvalidInputError, InvalidStateError
from coco_actors.records import EventRecord, Operation
from coco_actors.store import Store

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], None]

EVENTS = frozenset({
    "send:prepared", "send:pending", "send:finalized", "send:rolled-back",
    "receive:prepared", "receive:finalized", "receive:rolled-back",
    "mint:prepared", "mint:finalized", "mint:rolled-back",
    "melt:prepared", "melt:pending", "melt:finalized", "melt:rolled-back",
    "transfer:prepared", "transfer:pending", "transfer:finalized", "transfer:rolled-back",
    "consolidate:started", "consolidate:finalized", "consolidate:rolled-back",
    "request:created",    # {request_id, amount (None: the payer chooses)}
    "request:paid",       # {request_id, amount (received), operation_id}
    "request:cancelled",  # {request_id}
})


#: Events are kept this long (seconds) unless ``Coco.open(event_retention=...)`` says otherwise.
DEFAULT_RETENTION = 7 * 24 * 3600.0
#: At most this often (seconds) the ledger prunes events older than the retention window.
PRUNE_EVERY = 300.0
#: ``since`` answers at most this many events unless asked for fewer.
DEFAULT_LIMIT = 1000
#: In-process payload keys that never go into the outbox (bearer values).
PRIVATE_KEYS = frozenset({"token"})


@dataclass(frozen=True, slots=True)
class Emission:
    """One event a transition causes, handed to the ledger with that transition.

    ``payload`` is what handlers get (it may carry the token of a pending send);
    ``data`` is what is stored, public only (see :class:`EventRecord`).
    """

    name: str
    payload: Mapping[str, Any]
    data: Mapping[str, Any]
    operation_id: str | None = None
    mint_url: str | None = None

    def __repr__(self) -> str:  # the payload may hold a token: keep it out of logs
        return f"Emission({self.name} {self.operation_id})"

    def record(self, seq: int, at_ms: int) -> EventRecord:
        return EventRecord(seq=seq, time=at_ms, event=self.name,
                           operation_id=self.operation_id, mint_url=self.mint_url,
                           data=dict(self.data))


def op_event(name: str, op: Operation, **extra: Any) -> Emission:
    """An operation's event: handlers get ``{mint_url, operation_id, operation, **extra}``;
    the record keeps the operation's public view without its token, and ``extra`` but
    :data:`PRIVATE_KEYS`."""
    if name not in EVENTS:
        raise ValueError(f"unknown event {name!r}")
    view = op.public()
    view.pop("token", None)
    payload = {"mint_url": op.mint_url, "operation_id": op.id, "operation": op, **extra}
    data = {"operation": view, **{k: v for k, v in extra.items() if k not in PRIVATE_KEYS}}
    return Emission(name, payload, data, operation_id=op.id, mint_url=op.mint_url)


def request_event(name: str, payload: Mapping[str, Any], *,
                  mint_url: str | None = None) -> Emission:
    """A payment request's event: its payload (request_id, amount, operation_id) is public
    and stored as it is."""
    if name not in EVENTS:
        raise ValueError(f"unknown event {name!r}")
    op_id = payload.get("operation_id")
    return Emission(name, dict(payload), dict(payload),
                    operation_id=op_id if isinstance(op_id, str) else None, mint_url=mint_url)


#: The largest seq (the store keys them as 8 bytes, big-endian).
MAX_SEQ = (1 << 63) - 1


def _count(value: object, what: str, *, least: int) -> int:
    if (isinstance(value, bool) or not isinstance(value, int) or value < least
            or value > MAX_SEQ):
        raise InvalidInputError(f"{what} must be an integer of at least {least}, got {value!r}")
    return value


class EventLog:
    """The outbox as readers see it (``coco.events``); every method is thread-safe.

    Reads are short LMDB read transactions. The ledger's thread calls
    :meth:`appended` after each commit that wrote events, which wakes :meth:`wait`.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cond = threading.Condition()
        self._last = store.event_seqs()[1]
        self._closed = False

    def last_seq(self) -> int:
        """The newest event's seq (0 before the first event ever)."""
        with self._cond:
            return self._last

    def oldest_seq(self) -> int:
        """The oldest kept event's seq (0 when none is stored): ``since(after)`` with an
        ``after`` below ``oldest_seq() - 1`` misses the pruned ones."""
        self._check_open()
        return self._store.event_seqs()[0]

    def since(self, after: int = 0, limit: int = DEFAULT_LIMIT) -> list[EventRecord]:
        """Every event with ``seq > after`` (at most ``limit``), in seq order; ``[]`` when
        ``after`` is the last or beyond it. Pruned events are gone: an ``after`` older
        than the oldest kept one starts at the oldest kept."""
        after = _count(after, "after", least=0)
        limit = _count(limit, "limit", least=1)
        self._check_open()
        return self._store.events_since(after, limit)

    def wait(self, after: int, timeout: float, limit: int = DEFAULT_LIMIT
             ) -> list[EventRecord]:
        """Block until an event with ``seq > after`` is committed (those events, as
        :meth:`since`) or ``timeout`` seconds pass (``[]``); ``[]`` at once once closed."""
        after = _count(after, "after", least=0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise InvalidInputError(f"timeout must be a number of seconds, got {timeout!r}")
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._last <= after and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left)
            if self._closed:
                return []
        return self.since(after, limit)

    def appended(self, seq: int) -> None:
        """The ledger committed events up to ``seq`` (its thread): wake every waiter."""
        with self._cond:
            self._last = max(self._last, seq)
            self._cond.notify_all()

    def close(self) -> None:
        """The wallet closes: every wait returns ``[]`` now, reads are refused."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _check_open(self) -> None:
        with self._cond:
            if self._closed:
                raise InvalidStateError("the wallet is closed; its events cannot be read")


class EventBus:
    """Who listens to what; :meth:`emit` runs the handlers (on the bus thread)."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}

    def on(self, event: str, handler: Handler) -> None:
        self._handlers.setdefault(event, []).append(handler)

    def off(self, event: str, handler: Handler | None = None) -> None:
        if handler is None:
            self._handlers.pop(event, None)
        elif handler in self._handlers.get(event, []):
            self._handlers[event].remove(handler)

    def emit(self, event: str, payload: dict[str, Any]) -> None:
        """Sent as a tell (:func:`coco_actors.actors.tell`); a handler that raises is
        logged and the next one still runs."""
        for handler in list(self._handlers.get(event, ())):
            try:
                handler(payload)
            except Exception:
                log.exception("handler %r for %s raised; ignored", handler, event)


class EventBusActor(NoticeActor, EventBus):
    def __init__(self) -> None:
        NoticeActor.__init__(self)
        EventBus.__init__(self)


class EventBusProxy(ActorMemberMixin, pykka.ActorProxy[EventBusActor]):
    on = proxy_method(EventBus.on)
    off = proxy_method(EventBus.off)
