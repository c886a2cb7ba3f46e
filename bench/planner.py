"""Send amounts that make the wallet swap exactly 1 input into 2 outputs.

The raw bound of the benchmark is a NUT-03 swap of one input into two outputs,
so a fair wallet send must have the same shape: a proof of ``2^(j+1)`` swapped
into ``2^j`` to send and ``2^j`` to keep. That only works if the wallet never
finds an exact match (which would skip the swap), and the keep of one send is
the input of the next (a chain ``2^19, 2^18, ...`` from one funding proof).

The wallet selects exact matches first, greedily over the proofs worth at most
the amount; with powers of two that succeeds exactly when those proofs add up
to the amount or more. Otherwise it takes the smallest single proof that
covers the amount. So a send of ``2^j`` is 1 -> 2 when, at the moment it is
prepared,

- the proofs worth at most ``2^j`` add up to less than ``2^j``, and
- a proof of ``2^(j+1)`` is spendable.

The planner mirrors the wallet's proofs per denomination and hands out only
amounts that meet both conditions. It counts conservatively: a proof it has
handed to a caller that has not reserved it yet, and the keep of a send from
the moment its level is handed out (two sends of the same level in flight
would leave two keeps of that level), count as present for the first
condition and as absent for the second. So every level holds at most one
proof below the top, and the leftovers add up to less than ``2^top``.
Callers check ``needs_swap`` and ``input_amount`` of every prepared send anyway.
"""

from __future__ import annotations

import threading
import time


class LevelPlanner:
    """Thread-safe: any number of callers take levels, report them reserved and done."""

    def __init__(self, top: int, funded: int = 0) -> None:
        self.top = top
        self._cond = threading.Condition()
        self._ready = [0] * (top + 1)   # spendable, not handed out
        self._maybe = [0] * (top + 1)   # handed out but not reserved yet, or keeps in flight
        self._ready[top] = funded
        self._busy = 0                   # sends between take() and done()
        self._busy_area = 0.0
        self._busy_since = self._window_start = time.monotonic()

    # --- funding ----------------------------------------------------------------------

    def fund(self, n: int) -> None:
        """``n`` more proofs of ``2^top`` are spendable."""
        with self._cond:
            self._ready[self.top] += n
            self._cond.notify_all()

    def spendable_top(self) -> int:
        with self._cond:
            return self._ready[self.top]

    def leftovers(self) -> int:
        """The value of every spendable proof below the top level (the chains' ends)."""
        with self._cond:
            return sum(n << level for level, n in enumerate(self._ready[:self.top]))

    def drained(self) -> None:
        """The leftovers were sent away (an exact-match send of :meth:`leftovers`)."""
        with self._cond:
            for level in range(self.top):
                self._ready[level] = 0

    # --- sends ------------------------------------------------------------------------

    def take(self, timeout: float) -> int | None:
        """A level ``j``: send ``2^j`` now. None when nothing fits within ``timeout``
        (or ever: nothing is in flight that could free a level)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                level = self._pick()
                if level is not None:
                    self._ready[level + 1] -= 1
                    self._maybe[level + 1] += 1  # the input, until the wallet reserves it
                    self._maybe[level] += 1      # the keep, from now on: see the module doc
                    self._account(+1)
                    return level
                left = deadline - time.monotonic()
                if self._busy == 0 or left <= 0:
                    return None
                self._cond.wait(left)

    def reserved(self, level: int) -> None:
        """The wallet has reserved the input."""
        with self._cond:
            self._maybe[level + 1] -= 1

    def done(self, level: int) -> None:
        """The send is pending: its keep of ``2^level`` is spendable."""
        with self._cond:
            self._maybe[level] -= 1
            self._ready[level] += 1
            self._account(-1)
            self._cond.notify_all()

    def released(self, level: int) -> None:
        """Preparing failed: the wallet released the input again."""
        with self._cond:
            self._maybe[level + 1] -= 1
            self._maybe[level] -= 1
            self._ready[level + 1] += 1
            self._account(-1)
            self._cond.notify_all()

    def lost(self, level: int) -> None:
        """Executing failed: where the keep ends up is unknown; keep counting it as maybe."""
        with self._cond:
            self._account(-1)
            self._cond.notify_all()

    def start_window(self) -> None:
        """Start measuring how many sends are in flight on average."""
        with self._cond:
            self._account(0)
            self._busy_area = 0.0
            self._window_start = time.monotonic()

    def mean_busy(self) -> float:
        """Time-weighted mean number of sends in flight since :meth:`start_window`."""
        with self._cond:
            self._account(0)
            span = time.monotonic() - self._window_start
            return self._busy_area / span if span > 0 else 0.0

    def _account(self, delta: int) -> None:
        now = time.monotonic()
        self._busy_area += self._busy * (now - self._busy_since)
        self._busy_since = now
        self._busy += delta

    def _pick(self) -> int | None:
        below = 0  # value of every proof (present or maybe) worth at most 2^level
        for level in range(self.top):
            below += (self._ready[level] + self._maybe[level]) << level
            if self._ready[level + 1] > 0 and below < (1 << level):
                return level  # the lowest level first: chains run down to their end
        return None
