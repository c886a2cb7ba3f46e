"""Waiting for a condition that nothing signals, with a deadline.

Where an event, a future or a condition variable exists, wait on that instead. This is
for the few things that have none: the depth of an actor's inbox, say. It checks the
condition again every ``interval`` until it holds, and fails the test at the deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.01) -> None:
    """Return as soon as ``condition()`` is true; AssertionError naming ``what`` at
    the deadline."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: its wait is the pause between checks
    while not condition():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{what} (not within {timeout:g} s)")
        pause.wait(min(interval, left))
