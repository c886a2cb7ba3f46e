"""Keysets over time: the KeysetRefresher fetches every mint's keysets again.

Mints rotate keysets (a new active one, the old one inactive, later expired). The
wallet asks again on a schedule (``Coco.open(..., keyset_refresh=SECONDS)``), after
the Watcher reconnected to a mint (it may have restarted with new keysets), and when
an operation meets a keyset it does not know or a 12002 answer (keyset inactive).

Threads: every refresh runs on one :class:`~coco_actors.threads.SupervisedThread`
(``coco-keysets``), so the network IO never happens in an actor's mailbox. A request
(:meth:`KeysetRefresher.request`, any thread, never blocks) is queued and answered
with a future; requests for one mint that wait together share one fetch. The fetched
keysets are handed to ``refresh(url)``, which verifies them and has the ledger store
them (a keyset whose keys changed under its id is a ``CryptoError``: logged, nothing
of that answer stored).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from coco_actors.errors import ActorTimeoutError, CocoError, InvalidInputError, InvalidStateError
from coco_actors.threads import SupervisedThread

__all__ = ["DEFAULT_KEYSET_REFRESH", "KeysetRefresher", "check_interval"]

log = logging.getLogger(__name__)

#: Seconds between two scheduled refreshes of every mint's keysets (default: an hour).
DEFAULT_KEYSET_REFRESH = 3600.0


def check_interval(seconds: object) -> float | None:
    """A refresh interval: a positive number of seconds, or None (no schedule)."""
    if seconds is None:
        return None
    if (isinstance(seconds, bool) or not isinstance(seconds, int | float)
            or not seconds > 0 or seconds == float("inf")):
        raise InvalidInputError(f"keyset_refresh must be a positive number of seconds or "
                                f"None, got {seconds!r}")
    return float(seconds)


class KeysetRefresher:
    """Runs keyset refreshes on its own thread: on request and every ``interval`` s.

    ``refresh(url)`` does one mint's refresh (fetch, verify, store); ``mint_urls()``
    lists the mints the schedule covers. Both are called on the refresher's thread.
    """

    def __init__(self, refresh: Callable[[str], None], mint_urls: Callable[[], list[str]],
                 interval: float | None = DEFAULT_KEYSET_REFRESH) -> None:
        self._refresh = refresh
        self._mint_urls = mint_urls
        self._interval = check_interval(interval)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._queue: dict[str, list[Future[None]]] = {}
        self._next_round = time.monotonic() + (self._interval or 0.0)
        #: refreshes done, per mint URL (observable by tests and ``stats``)
        self.done: dict[str, int] = {}
        #: scheduled rounds run (each covers every mint)
        self.rounds = 0
        self._thread = SupervisedThread("coco-keysets", self._run, wake=self._wake.set,
                                        logger=log)

    @property
    def interval(self) -> float | None:
        return self._interval

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        stopped = self._thread.stop(timeout)
        with self._lock:
            waiting, self._queue = self._queue, {}
        for futures in waiting.values():
            for future in futures:
                if not future.done():
                    future.set_exception(InvalidStateError("the keyset refresher stopped"))
        return stopped

    def request(self, mint_url: str) -> Future[None]:
        """Ask for a refresh of ``mint_url`` (any thread, never blocks); the future is
        done once it ran (its exception: why it failed)."""
        future: Future[None] = Future()
        if self._thread.stop_event.is_set():
            future.set_exception(InvalidStateError("the keyset refresher stopped"))
            return future
        with self._lock:
            self._queue.setdefault(mint_url, []).append(future)
        self._wake.set()
        return future

    def refresh(self, mint_url: str, timeout: float) -> None:
        """Refresh ``mint_url`` now and wait for it (at most ``timeout`` s): what an
        operation that met a rotated keyset does before it derives new outputs."""
        future = self.request(mint_url)
        try:
            future.result(timeout)
        except FutureTimeout:
            if future.done():  # the refresh itself raised a TimeoutError: that one
                raise
            raise ActorTimeoutError(
                f"the keysets of {mint_url} were not refreshed within {timeout} s") from None

    def _run(self, stop: threading.Event) -> None:
        """The refresher's loop (its own thread): queued requests first, then the round."""
        while not stop.is_set():
            with self._lock:
                queued, self._queue = self._queue, {}
                self._wake.clear()
            for url, futures in queued.items():
                self._one(url, futures)
            if self._interval is not None and time.monotonic() >= self._next_round:
                self._next_round = time.monotonic() + self._interval
                for url in self._mint_urls():
                    if stop.is_set():
                        return
                    self._one(url, [])
                self.rounds += 1
            left = None if self._interval is None else max(0.0,
                                                           self._next_round - time.monotonic())
            self._wake.wait(left)

    def _one(self, url: str, futures: list[Future[None]]) -> None:
        try:
            self._refresh(url)
        except CocoError as exc:  # unreachable, refused, a hostile answer: logged, kept
            log.warning("keyset refresh of %s failed: %s", url, exc)
            for future in futures:
                future.set_exception(exc)
            return
        except Exception as exc:  # a bug: the waiting callers hear it, the thread lives
            log.exception("keyset refresh of %s failed", url)
            for future in futures:
                future.set_exception(exc)
            return
        self.done[url] = self.done.get(url, 0) + 1
        for future in futures:
            future.set_result(None)
