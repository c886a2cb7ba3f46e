"""EventHub: the daemon's view of wallet events, for ``GET /events`` and waiting requests.

Every event is durable in the wallet's outbox (``coco.events``, :mod:`coco_actors.events`);
``GET /events?after=SEQ`` replays from there (:attr:`EventHub.log`). The hub keeps the
last few in memory for ``GET /events`` without ``after``, and fans the live ones out to
followers and to the long polls (:func:`wait_for_end`).

``publish`` runs on the EventBus thread (it is a ``coco.on`` handler); each follower
reads its own queue on its request thread. An entry is :func:`entry_of` the stored
record, the same line live and replayed. Tokens never go into an entry.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from coco_actors.coco import Coco
from coco_actors.errors import CocoError
from coco_actors.events import EVENTS, PRIVATE_KEYS, Emission, EventLog, op_event
from coco_actors.records import EventRecord, Operation

#: Events kept for ``GET /events`` without ``follow``.
RECENT_EVENTS = 200

#: One event as the stream shows it: seq, time, event, operation_id, mint_url, operation
#: (its public view, no token; None for a request's event), and the event's other public
#: fields (request_id, amount, to_mint_url).
Entry = dict[str, Any]
#: A follower's queue of later entries; ``None`` means the hub closed.
Feed = queue.SimpleQueue[Entry | None]


def entry_of(rec: EventRecord) -> Entry:
    """The stream's line for one stored event."""
    rest = {k: v for k, v in rec.data.items() if k != "operation"}
    return {"seq": rec.seq, "time": rec.time, "event": rec.event,
            "operation_id": rec.operation_id, "mint_url": rec.mint_url,
            "operation": rec.data.get("operation"), **rest}


class EventHub:
    """Every wallet event, kept (the last few) and fanned out to followers."""

    def __init__(self, keep: int = RECENT_EVENTS) -> None:
        self._lock = threading.Lock()
        self._recent: deque[Entry] = deque(maxlen=keep)
        self._followers: set[Feed] = set()
        self._closed = False
        #: the wallet's outbox, once attached (replays: ``GET /events?after=SEQ``)
        self.log: EventLog | None = None

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    def attach(self, coco: Coco) -> None:
        """Subscribe to every event of ``coco`` (before recovery, so none is missed)."""
        self.log = coco.events
        for name in sorted(EVENTS):
            coco.on(name, functools.partial(self.publish, name))

    def publish(self, name: str, payload: dict[str, Any]) -> None:
        entry = entry_of(self._record(name, payload))
        with self._lock:
            self._recent.append(entry)
            for feed in self._followers:
                feed.put(entry)

    def _record(self, name: str, payload: dict[str, Any]) -> EventRecord:
        """The stored record of this event (its ``seq``); rebuilt from the payload the same
        way the ledger built it if it cannot be read (pruned, or the wallet closing)."""
        seq = payload.get("seq")
        if isinstance(seq, int) and self.log is not None:
            try:
                found = self.log.since(seq - 1, limit=1)
            except CocoError:
                found = []
            if found and found[0].seq == seq:
                return found[0]
        op = payload.get("operation")
        extra = {k: v for k, v in payload.items()
                 if k not in ("seq", "operation", "operation_id", "mint_url")}
        if isinstance(op, Operation):
            emission = op_event(name, op, **extra)
        else:
            op_id, mint_url = payload.get("operation_id"), payload.get("mint_url")
            emission = Emission(name, payload,
                                {k: v for k, v in extra.items() if k not in PRIVATE_KEYS},
                                operation_id=op_id if isinstance(op_id, str) else None,
                                mint_url=mint_url if isinstance(mint_url, str) else None)
        return emission.record(seq if isinstance(seq, int) else 0, int(time.time() * 1000))

    @contextlib.contextmanager
    def follow(self) -> Iterator[tuple[list[Entry], Feed]]:
        """The recent events and a queue of the later ones (none lost, none twice)."""
        feed: Feed = queue.SimpleQueue()
        with self._lock:
            if self._closed:
                feed.put(None)
            self._followers.add(feed)
            recent = list(self._recent)
        try:
            yield recent, feed
        finally:
            with self._lock:
                self._followers.discard(feed)

    def close(self) -> None:
        """End every followed stream and every wait (a ``None`` in each queue)."""
        with self._lock:
            self._closed = True
            for feed in self._followers:
                feed.put(None)


def wait_for_end(feed: Feed, op_id: str, events: frozenset[str], timeout: float) -> bool:
    """Wait on ``feed`` (at most ``timeout`` s) for one of ``events`` of ``op_id``.

    False on timeout, and at once when the hub closes (the daemon stops).
    """
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            entry = feed.get(timeout=left)
        except queue.Empty:
            return False
        if entry is None:
            return False
        if entry["operation_id"] == op_id and entry["event"] in events:
            return True
    return False
