"""The background consolidation policy (issue 13): the Consolidator decides when a mint's
proofs are consolidated (:mod:`coco_actors.operations.consolidate` does it).

Two triggers, per mint, each a :class:`ConsolidationPolicy` setting:

- ``inactive`` (on by default, ``"expiring"``): spendable proofs of an inactive keyset
  whose ``final_expiry`` is within ``expiry_margin`` seconds are moved into the active
  keyset (only those proofs; the fee fraction does not stop it, since after the expiry
  they are worth nothing). ``"any"`` moves proofs of any inactive keyset; ``"off"``
  never.
- ``max_proofs`` (off by default): when a mint holds more spendable proofs than this,
  they are consolidated (skipped when the fee is above ``max_fee_fraction``).

Threads: the loop runs on a :class:`~coco_actors.threads.SupervisedThread`
(``coco-consolidator``) and calls the synchronous wallet facade from there; it runs a
pass every ``interval`` seconds, and when :meth:`Consolidator.run_now` (any
thread) or a finalized operation (the EventBus thread only sets a flag, and only while
``max_proofs`` is on) wakes it. A pass first resumes consolidations left ``executing``
(their mint was unreachable); a mint's failure is logged and the others go on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from coco_actors.errors import CocoError, InvalidInputError
from coco_actors.events import EVENTS
from coco_actors.operations.consolidate import (
    DEFAULT_MAX_FEE_FRACTION,
    ConsolidationResult,
    ConsolidationRule,
)
from coco_actors.threads import PassLoop, SupervisedThread

__all__ = ["ConsolidationPolicy", "Consolidator", "MintHoldings"]

log = logging.getLogger(__name__)

#: After these, a mint may hold more proofs than before: a pass of the count policy.
WAKE_EVENTS = tuple(sorted(e for e in EVENTS if e.endswith(":finalized")
                           and not e.startswith("consolidate:")))
#: Two weeks: inactive keysets expiring sooner than this are migrated (default).
DEFAULT_EXPIRY_MARGIN = 14 * 24 * 3600.0

InactiveMode = Literal["expiring", "any", "off"]


@dataclass(frozen=True, slots=True)
class ConsolidationPolicy:
    """When the Consolidator consolidates (see the module docstring)."""

    max_proofs: int | None = None
    inactive: InactiveMode = "expiring"
    expiry_margin: float = DEFAULT_EXPIRY_MARGIN
    max_fee_fraction: float = DEFAULT_MAX_FEE_FRACTION
    interval: float = 3600.0

    def __post_init__(self) -> None:
        n = self.max_proofs
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise InvalidInputError(f"consolidation max_proofs must be a positive integer, "
                                    f"got {n!r}")
        if self.inactive not in ("expiring", "any", "off"):
            raise InvalidInputError(f"consolidation inactive must be 'expiring', 'any' or "
                                    f"'off', got {self.inactive!r}")
        for name in ("expiry_margin", "interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InvalidInputError(f"consolidation {name} must be a positive number of "
                                        f"seconds, got {value!r}")
        check_fee_fraction(self.max_fee_fraction)

    @property
    def active(self) -> bool:
        """Whether any trigger is on (else no thread runs)."""
        return self.max_proofs is not None or self.inactive != "off"


def check_fee_fraction(value: object) -> float:
    """A fee fraction: a number from 0 to 1 (InvalidInputError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidInputError(f"max_fee_fraction must be a number from 0 to 1, "
                                f"got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class MintHoldings:
    """One mint's spendable proofs as the policy sees them: how many, and per inactive
    keyset holding some, its ``final_expiry`` (unix seconds, None: none)."""

    url: str
    proofs: int
    inactive: Sequence[int | None]


@dataclass(frozen=True, slots=True)
class ConsolidateCalls:
    """What the Consolidator calls of the wallet (no import upward)."""

    holdings: Callable[[], list[MintHoldings]]
    consolidate: Callable[[str, ConsolidationRule], ConsolidationResult]
    resume: Callable[[], None]
    on: Callable[[str, Callable[[dict[str, Any]], None]], None]
    off: Callable[[str, Callable[[dict[str, Any]], None]], None]


class Consolidator:
    """Runs the policy; ``passes`` counts finished passes, ``runs`` consolidations made,
    ``failures`` the ones that raised (each logged); readable from any thread."""

    def __init__(self, calls: ConsolidateCalls, policy: ConsolidationPolicy) -> None:
        self._calls = calls
        self.policy = policy
        # the first pass comes after one interval (recovery runs first)
        self._loop_passes = PassLoop("consolidator")
        self._cond = self._loop_passes.cond  # also guards the counters
        self._passes = 0
        self._runs = 0
        self._failures = 0
        self._thread = SupervisedThread("coco-consolidator", self._loop, wake=self._wake,
                                        logger=log)
        self._handlers: list[str] = []

    def start(self) -> None:
        if self.policy.max_proofs is not None:
            for event in WAKE_EVENTS:
                self._calls.on(event, self._on_event)
                self._handlers.append(event)
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        ended = self._thread.stop(timeout)
        for event in self._handlers:
            try:
                self._calls.off(event, self._on_event)
            except CocoError:
                log.debug("could not unsubscribe the consolidator from %s", event)
        self._handlers.clear()
        return ended

    @property
    def passes(self) -> int:
        with self._cond:
            return self._passes

    @property
    def runs(self) -> int:
        with self._cond:
            return self._runs

    @property
    def failures(self) -> int:
        with self._cond:
            return self._failures

    def run_now(self, timeout: float = 120.0) -> int:
        """Wake the loop and wait for a pass that began after this call; ``passes`` then."""
        self._loop_passes.ask_and_wait(timeout)
        return self.passes

    def _on_event(self, payload: dict[str, Any]) -> None:
        """On the EventBus thread: wake the loop, nothing more."""
        self._wake()

    def _wake(self) -> None:
        self._loop_passes.wake()

    def _loop(self, stop: threading.Event) -> None:
        self._loop_passes.run(stop, lambda: self.policy.interval, self._pass,
                              self._count_pass)

    def _count_pass(self) -> None:
        self._passes += 1

    def _pass(self) -> None:
        try:
            self._calls.resume()
        except CocoError as exc:
            log.warning("consolidator: open consolidations not resumed: %s", exc)
        now = time.time()
        for mint in self._calls.holdings():
            for rule in self._due(mint, now):
                try:
                    result = self._calls.consolidate(mint.url, rule)
                except CocoError as exc:
                    with self._cond:
                        self._failures += 1
                    log.warning("consolidator: %s not consolidated: %s", mint.url, exc)
                    break
                if result.operation is not None:
                    with self._cond:
                        self._runs += 1
                    log.info("consolidator: %s: %d proofs into %d (fee %d), %s", mint.url,
                             result.inputs, result.outputs, result.fee,
                             result.operation.state.value)
                    break  # the holdings changed: the next pass looks again
                log.debug("consolidator: %s skipped: %s", mint.url, result.skipped)

    def _due(self, mint: MintHoldings, now: float) -> list[ConsolidationRule]:
        """The consolidations ``mint`` is due for, migration first."""
        due = []
        p = self.policy
        if p.inactive == "any" and mint.inactive:
            due.append(ConsolidationRule(max_fee_fraction=None, only_inactive=True))
        elif p.inactive == "expiring" and any(
                e is not None and e - now <= p.expiry_margin for e in mint.inactive):
            due.append(ConsolidationRule(max_fee_fraction=None, only_inactive=True,
                                         expires_by=int(now + p.expiry_margin)))
        if p.max_proofs is not None and mint.proofs > p.max_proofs:
            due.append(ConsolidationRule(max_fee_fraction=p.max_fee_fraction))
        return due
