"""What every actor in the wallet shares: bounded waits down the graph, notices up it.

- :func:`wait` is ``future.get`` with a timeout that becomes a domain error: asks flow
  *down* the graph and may block, never without a bound.
- :func:`tell` sends a notice *up* the graph (a watcher's "spent", an operation's "at
  rest"): a real pykka tell, typed against the method it names, so mypy checks the
  arguments and a rename breaks at check time, not at run time. The receiving actor
  derives from :class:`NoticeActor`, which runs the method on its own thread and logs
  a failure with its traceback instead of dying (a failed pykka tell would stop the
  actor), so a notice that fails is visible and the receiver keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

import pykka

from coco_actors.errors import ActorTimeoutError

log = logging.getLogger(__name__)

T = TypeVar("T")
A = TypeVar("A", bound="NoticeActor")
P = ParamSpec("P")


def wait(future: pykka.Future[T], timeout: float, what: str) -> T:
    """``future.get`` with a timeout that becomes :class:`ActorTimeoutError`."""
    try:
        return future.get(timeout=timeout)
    except pykka.Timeout:
        raise ActorTimeoutError(f"{what} did not answer within {timeout:g} s") from None


@dataclass(frozen=True, slots=True)
class Notice:
    """One tell: the method to run on the receiving actor, with its arguments."""

    method: Callable[..., object]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # arguments may be bearer values: keep them out of logs
        return f"Notice({getattr(self.method, '__qualname__', self.method)})"


def tell(ref: pykka.ActorRef[A], method: Callable[Concatenate[A, P], object],
         *args: P.args, **kwargs: P.kwargs) -> None:
    """Run ``method(actor, *args, **kwargs)`` on the actor behind ``ref``; do not wait.

    A receiver that has stopped is not an error for the sender (the notice is moot).
    """
    try:
        ref.tell(Notice(method, args, kwargs))
    except pykka.ActorDeadError:
        log.debug("notice %s dropped: %s has stopped",
                  getattr(method, "__qualname__", method), ref)


class NoticeActor(pykka.ThreadingActor):
    """A threading actor that takes :func:`tell` notices (runs them on its own thread)."""

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, Notice):
            return super().on_receive(message)
        try:
            # looked up on the receiver, so a subclass's override runs (as for a call)
            getattr(self, message.method.__name__)(*message.args, **message.kwargs)
        except Exception:
            log.exception("notice %r to %s failed; the actor carries on", message, self)
        return None
