"""Events flow up as tells: operation actors emit, handlers run on the bus thread.

A handler that raises is logged and forgotten; it never reaches the operation
that emitted the event, and never stops the bus.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pykka
from pykka.typing import ActorMemberMixin, proxy_method

from coco_actors.actors import NoticeActor

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], None]

EVENTS = frozenset({
    "send:prepared", "send:pending", "send:finalized", "send:rolled-back",
    "receive:prepared", "receive:finalized", "receive:rolled-back",
    "mint:prepared", "mint:finalized", "mint:rolled-back",
    "melt:prepared", "melt:pending", "melt:finalized", "melt:rolled-back",
    "transfer:prepared", "transfer:pending", "transfer:finalized", "transfer:rolled-back",
    "request:paid",  # {request_id, amount (received), operation_id}
})


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
