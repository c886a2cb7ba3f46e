"""EventHub: the daemon's record of wallet events, for ``GET /events`` and waiting requests.

``publish`` runs on the EventBus thread (it is a ``coco.on`` handler); each follower
reads its own queue on its request thread. Tokens never go into an entry.
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
from coco_actors.control.views import jsonable
from coco_actors.events import EVENTS
from coco_actors.records import Operation

#: Events kept for ``GET /events`` without ``follow``.
RECENT_EVENTS = 200

#: One event as the stream shows it: time, event, operation_id, mint_url, operation.
Entry = dict[str, Any]
#: A follower's queue of later entries; ``None`` means the hub closed.
Feed = queue.SimpleQueue[Entry | None]


class EventHub:
    """Every wallet event, kept (the last few) and fanned out to followers."""

    def __init__(self, keep: int = RECENT_EVENTS) -> None:
        self._lock = threading.Lock()
        self._recent: deque[Entry] = deque(maxlen=keep)
        self._followers: set[Feed] = set()
        self._closed = False

    def attach(self, coco: Coco) -> None:
        """Subscribe to every event of ``coco`` (before recovery, so none is missed)."""
        for name in sorted(EVENTS):
            coco.on(name, functools.partial(self.publish, name))

    def publish(self, name: str, payload: dict[str, Any]) -> None:
        op = payload.get("operation")
        entry: Entry = {"time": int(time.time() * 1000), "event": name,
                        "operation_id": payload.get("operation_id"),
                        "mint_url": payload.get("mint_url"),
                        "operation": jsonable(op) if isinstance(op, Operation) else None}
        with self._lock:
            self._recent.append(entry)
            for feed in self._followers:
                feed.put(entry)

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
