"""SupervisedThread: failures are logged with their traceback and restarted; stop is prompt."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from coco_actors.threads import SupervisedThread

WAIT = 10.0  # generous deadline for anything that should happen at once


@pytest.fixture
def threads() -> Iterator[list[SupervisedThread]]:
    """Every thread a test makes is stopped at teardown."""
    made: list[SupervisedThread] = []
    yield made
    for t in made:
        t.stop(timeout=WAIT)


def test_a_body_that_raises_is_logged_with_its_traceback_and_restarted(
        threads: list[SupervisedThread], caplog: pytest.LogCaptureFixture) -> None:
    calls = 0
    recovered = threading.Event()

    def body(stop: threading.Event) -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError(f"boom {calls}")
        recovered.set()
        stop.wait()

    caplog.set_level(logging.ERROR, logger="coco_actors.threads")
    t = SupervisedThread("test-flaky", body, backoff_min=0.01, backoff_max=0.02)
    threads.append(t)
    t.start()
    assert recovered.wait(WAIT)
    assert t.is_alive()
    assert t.restarts == 2
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 2
    for n, record in enumerate(failures, start=1):
        assert "test-flaky" in record.getMessage()
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], RuntimeError)
        assert str(record.exc_info[1]) == f"boom {n}"
    assert "Traceback" in caplog.text and "RuntimeError: boom 1" in caplog.text
    assert t.stop(timeout=WAIT)
    assert not t.is_alive()
    assert calls == 3


def test_backoff_doubles_up_to_its_cap(threads: list[SupervisedThread]) -> None:
    seen: list[float] = []
    enough = threading.Event()
    lo, hi = 0.01, 0.04

    def body(stop: threading.Event) -> None:
        seen.append(t.last_backoff)  # the delay waited before this call
        if len(seen) >= 8:
            enough.set()
        raise ValueError("always")

    t = SupervisedThread("test-backoff", body, backoff_min=lo, backoff_max=hi)
    threads.append(t)
    t.start()
    assert enough.wait(WAIT)
    assert t.stop(timeout=WAIT)
    assert seen[0] == 0.0  # the first call waits for nothing
    delays = seen[1:8]
    assert all(lo <= d <= hi for d in delays)
    # each delay doubles the one before, capped; only a run longer than the cap (which a
    # body that raises at once is not, unless the machine stalls) starts again from lo
    for before, after in zip(delays, delays[1:], strict=False):
        assert after in (min(before * 2, hi), lo)
    assert delays.count(hi) >= 3


def test_stop_during_a_long_backoff_returns_promptly(threads: list[SupervisedThread]) -> None:
    failed = threading.Event()

    def body(stop: threading.Event) -> None:
        failed.set()
        raise RuntimeError("fails once, then would wait a minute")

    t = SupervisedThread("test-stop-in-backoff", body, backoff_min=60.0, backoff_max=60.0)
    threads.append(t)
    t.start()
    assert failed.wait(WAIT)
    started = time.monotonic()
    assert t.stop(timeout=WAIT)
    assert time.monotonic() - started < 5.0
    assert not t.is_alive()
    assert t.restarts == 0


def test_a_body_that_returns_when_stopped_ends_the_thread(
        threads: list[SupervisedThread], caplog: pytest.LogCaptureFixture) -> None:
    blocked = threading.Event()   # stands in for a blocking accept() or recv()
    unblock = threading.Event()
    woken: list[bool] = []

    def body(stop: threading.Event) -> None:
        blocked.set()
        unblock.wait()  # does not watch `stop`: only the wake-up hook frees it
        assert stop.is_set()

    def wake() -> None:
        woken.append(True)
        unblock.set()

    caplog.set_level(logging.DEBUG, logger="coco_actors.threads")
    t = SupervisedThread("test-clean-stop", body, wake=wake)
    threads.append(t)
    t.start()
    assert blocked.wait(WAIT)
    assert t.stop(timeout=WAIT)
    assert woken == [True]
    assert not t.is_alive()
    assert t.restarts == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_body_that_returns_on_its_own_ends_the_thread_with_a_warning(
        threads: list[SupervisedThread], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="coco_actors.threads")
    t = SupervisedThread("test-early-return", lambda stop: None)
    threads.append(t)
    t.start()
    t._thread.join(WAIT)  # nothing to stop: wait for it to end by itself
    assert not t.is_alive()
    assert t.restarts == 0
    assert any("test-early-return" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)


def test_a_failing_wake_hook_does_not_keep_stop_from_ending_the_thread(
        threads: list[SupervisedThread]) -> None:
    running = threading.Event()

    def body(stop: threading.Event) -> None:
        running.set()
        stop.wait()

    def wake() -> None:
        raise OSError("socket already closed")

    t = SupervisedThread("test-bad-wake", body, wake=wake)
    threads.append(t)
    t.start()
    assert running.wait(WAIT)
    assert t.stop(timeout=WAIT)
    assert not t.is_alive()


def test_stop_before_start_and_bad_backoff() -> None:
    assert SupervisedThread("never-started", lambda stop: None).stop(timeout=0.1)
    with pytest.raises(ValueError):
        SupervisedThread("bad", lambda stop: None, backoff_min=2.0, backoff_max=1.0)
