"""Supervised threads: a background loop that fails is logged and restarted, never lost.

A plain ``threading.Thread`` whose loop raises dies quietly (the traceback goes to
stderr, if anywhere) and whatever it watched or served stops with it. A
:class:`SupervisedThread` runs a *body* on a named daemon thread instead; if the
body raises, the exception is logged with its traceback and the body is called
again after a capped exponential backoff, until :meth:`SupervisedThread.stop`.

API::

    t = SupervisedThread(name, body, *, backoff_min=0.25, backoff_max=15.0,
                         wake=None, logger=None)
    t.start()                  # once; runs body(t.stop_event) on the new thread
    t.stop(timeout=5.0) -> bool  # set stop_event, call wake(), join; True if it ended
    t.is_alive() -> bool
    t.restarts -> int          # how many times the body was restarted after a failure
    t.last_backoff -> float    # the delay waited before the latest restart (0.0 before any)
    t.stop_event -> threading.Event

The body contract:

- ``body(stop_event)`` runs on the supervised thread and loops until
  ``stop_event`` is set, then *returns*. Returning ends the thread (a return while
  no stop was asked is logged as a warning: a loop that ends on its own is
  usually a bug, and must not be silent). The body waits with
  ``stop_event.wait(t)``, never ``time.sleep``, so a stop is prompt.
- Each call starts from scratch: state the body needs (a socket, a subscription)
  is rebuilt by the body itself at the top of each call.
- Any ``Exception`` from the body is logged (``logger.exception``) and the body is
  restarted after ``backoff_min``, doubling per consecutive failure up to
  ``backoff_max``. A run that lasted at least ``backoff_max`` before failing counts
  as healthy, so the next delay starts again from ``backoff_min``. The backoff
  waits on ``stop_event``, so ``stop()`` during a backoff returns at once.
  ``BaseException`` (``SystemExit``, ``KeyboardInterrupt``) is not caught.
- ``wake`` is called by :meth:`stop` on the *caller's* thread, after the event is
  set, to unblock a body stuck in a blocking call (close a listening socket, abort
  a websocket). Its exceptions are logged at debug level and ignored.

Threads: :meth:`start`, :meth:`stop` and the properties may be called from any
thread; ``stop()`` from inside the body sets the event but does not join itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from coco_actors.errors import ActorTimeoutError

__all__ = ["PassLoop", "SupervisedThread"]

log = logging.getLogger(__name__)


class SupervisedThread:
    """A named daemon thread that runs ``body(stop_event)`` and restarts it on failure."""

    def __init__(self, name: str, body: Callable[[threading.Event], None], *,
                 backoff_min: float = 0.25, backoff_max: float = 15.0,
                 wake: Callable[[], None] | None = None,
                 logger: logging.Logger | None = None) -> None:
        if not 0 < backoff_min <= backoff_max:
            raise ValueError("need 0 < backoff_min <= backoff_max")
        self.name = name
        self._body = body
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._wake = wake
        self._log = logger or log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._restarts = 0
        self._last_backoff = 0.0

    @property
    def stop_event(self) -> threading.Event:
        """Set once :meth:`stop` was asked; the body waits on it and returns when set."""
        return self._stop

    @property
    def restarts(self) -> int:
        """How many times the body was called again after it raised."""
        return self._restarts

    @property
    def last_backoff(self) -> float:
        """Seconds waited before the latest restart (0.0 until the first failure)."""
        return self._last_backoff

    def start(self) -> None:
        """Start the thread (once)."""
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the body to end, wake it, and wait up to ``timeout``; True if the thread ended."""
        self._stop.set()
        if self._wake is not None:
            try:
                self._wake()
            except Exception:  # best effort: the body sees the event on its next step anyway
                self._log.debug("waking thread %s failed", self.name, exc_info=True)
        if self._thread.ident is None:  # never started
            return True
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        """The supervisor loop, on the supervised thread."""
        delay = 0.0  # the backoff before the next restart; 0.0 while healthy
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._body(self._stop)
            except Exception:
                if time.monotonic() - started >= self._backoff_max:
                    delay = 0.0  # it ran healthily for a while: start the backoff afresh
                delay = min(max(delay * 2, self._backoff_min), self._backoff_max)
                if self._stop.is_set():
                    self._log.exception("thread %s failed while stopping", self.name)
                    return
                self._log.exception("thread %s failed; restarting in %.2f s", self.name, delay)
                if self._stop.wait(delay):
                    return
                self._last_backoff = delay
                self._restarts += 1
                continue
            if not self._stop.is_set():
                self._log.warning("thread %s ended on its own; not restarted", self.name)
            return


class PassLoop:
    """The passes of a background loop (the Sweeper's, the Consolidator's): each runs when
    asked for (an event, a ``..._now`` call) or when the loop's timer falls due, and
    whoever asks can wait for a pass that *began after* the ask.

    Any thread asks and waits; the loop runs on its SupervisedThread. ``cond`` is the one
    lock, shared with the owner's own counters (``after_pass`` and ``wait`` run under it).
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.cond = threading.Condition()
        self._asked = 0      # passes asked for
        self._covered = 0    # the asks the last finished pass began after

    def wake(self) -> None:
        """Ask for a pass; never blocks on one."""
        with self.cond:
            self._asked += 1
            self.cond.notify_all()

    def ask_and_wait(self, timeout: float) -> None:
        """Ask for a pass and wait until one that began after this call has ended
        (:class:`~coco_actors.errors.ActorTimeoutError` after ``timeout`` s)."""
        with self.cond:
            self._asked += 1
            target = self._asked
            self.cond.notify_all()
            if not self.cond.wait_for(lambda: self._covered >= target, timeout):
                raise ActorTimeoutError(f"the {self.what} did not finish a pass within"
                                        f" {timeout:g} s")

    def run(self, stop: threading.Event, wait: Callable[[], float],
            one_pass: Callable[[], None], after_pass: Callable[[], None]) -> None:
        """The loop's body (its thread): wait for an ask, the timer (``wait()`` seconds)
        or ``stop``, run ``one_pass``, then ``after_pass`` (under ``cond``; also when the
        pass raised, which the SupervisedThread then logs and restarts)."""
        while not stop.is_set():
            with self.cond:
                self.cond.wait_for(lambda: stop.is_set() or self._asked > self._covered,
                                   wait())
                began = self._asked
            if stop.is_set():
                return
            try:
                one_pass()
            finally:
                with self.cond:
                    self._covered = began
                    after_pass()
                    self.cond.notify_all()
