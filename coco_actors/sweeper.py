"""Per-mint exposure limits (issue 17): the Sweeper moves a mint's excess elsewhere.

A merchant bounds what it holds at each mint: ``Coco.open(..., exposure={URL: LIMIT},
sweep_to=URL)``. When a limited mint's *spendable* balance exceeds its limit, the
Sweeper transfers the excess to ``sweep_to`` with the transfer saga
(:class:`~coco_actors.coco.TransferApi`), one transfer at a time per mint.

The amount: with ``excess = spendable - limit``, a transfer of ``amount`` costs
``amount + fee + fee_paid`` at the source (``fee_paid`` at most ``fee_reserve``), so
the source ends at ``limit - (amount - excess) - fee - fee_paid``: at most the limit
when ``amount + fee >= excess``, not below ``limit - fee - fee_paid`` when ``amount <=
excess``. The Sweeper asks for ``amount = excess`` (the largest that fits); when the
source cannot also pay the fees for it (a limit below the fees), it re-prepares with
less, a bounded number of rounds, and the next pass moves what is left.

A mint with an open transfer *from* it (any state but completed or rolled back:
prepared by hand, executing, pending while lightning is in flight, or one left
prepared by a crash, which the ``rollback_prepared_after`` policy or a rollback
ends) is in flight: no second transfer starts for it. A sweep that fails (a mint
unreachable, ``sweep_to`` not added, the payment not made) is logged and retried
after a backoff that doubles per consecutive failure; every loop is bounded.

Threads: the sweep loop runs on a :class:`~coco_actors.threads.SupervisedThread`
(``coco-sweeper``) and calls the synchronous wallet facade from there; it is woken by
balance-changing events (handlers run on the EventBus thread and only set a flag),
by :meth:`Sweeper.sweep_now` (any thread), and otherwise every ``interval`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from coco_actors.errors import (
    CocoError,
    InsufficientFundsError,
    InvalidAmountError,
    InvalidInputError,
)
from coco_actors.events import EVENTS, Handler
from coco_actors.mint_client import normalize_mint_url
from coco_actors.proof_ledger import MintBalance
from coco_actors.records import Operation, OpState
from coco_actors.threads import PassLoop, SupervisedThread

__all__ = ["ExposurePolicy", "SweepWallet", "Sweeper", "SweeperConfig"]

log = logging.getLogger(__name__)

#: The events after which a balance may have grown, or a transfer ended: each wakes a pass.
WAKE_EVENTS = tuple(sorted(e for e in EVENTS
                           if e.endswith(":finalized") or e.endswith(":rolled-back")))
#: Prepares one pass may try for one mint (each smaller than the last).
MAX_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class SweeperConfig:
    """How often the Sweeper looks, how long it waits, how it backs off."""

    #: Seconds between passes when nothing wakes the Sweeper earlier.
    interval: float = 30.0
    #: How long one sweep's execute waits for the payment (then it is pending, in flight).
    execute_wait: float = 60.0
    #: The first retry delay after a failed sweep of a mint; doubled per failure in a row.
    retry_min: float = 5.0
    #: The longest retry delay.
    retry_max: float = 300.0

    def __post_init__(self) -> None:
        for name in ("interval", "execute_wait", "retry_min", "retry_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InvalidInputError(f"sweeper {name} must be a positive number of "
                                        f"seconds, got {value!r}")
        if self.retry_min > self.retry_max:
            raise InvalidInputError("sweeper retry_min must not exceed retry_max")


@dataclass(frozen=True, slots=True)
class ExposurePolicy:
    """Validated limits (normalized mint url -> sats) and where the excess goes."""

    limits: Mapping[str, int]
    sweep_to: str
    config: SweeperConfig = field(default_factory=SweeperConfig)

    @classmethod
    def from_options(cls, exposure: object, sweep_to: object,
                     config: SweeperConfig | None = None) -> ExposurePolicy | None:
        """The policy of ``Coco.open``'s options, or None when it is off (neither given).

        Bad values are typed errors, raised before anything is opened: a limit that is
        not a positive integer (:class:`InvalidAmountError`), a bad mint URL, two
        spellings of one mint, limits without ``sweep_to`` or ``sweep_to`` without
        limits, and ``sweep_to`` limited itself (its excess would have nowhere to go)
        (:class:`InvalidInputError`). The mints need not be added yet: a sweep needs
        them by the time it runs (until then it is logged and retried).
        """
        if config is not None and not isinstance(config, SweeperConfig):
            raise InvalidInputError(f"sweeper must be a SweeperConfig, got {config!r}")
        if exposure is None and sweep_to is None:
            return None
        if not isinstance(exposure, Mapping) or not exposure:
            raise InvalidInputError(
                "exposure must be a non-empty mapping of mint URL to a limit in sats"
                " when sweep_to is given")
        if sweep_to is None:
            raise InvalidInputError("exposure limits need sweep_to, the mint the excess"
                                    " goes to")
        if not isinstance(sweep_to, str):
            raise InvalidInputError(f"sweep_to must be a mint URL, got {sweep_to!r}")
        target = normalize_mint_url(sweep_to)
        limits: dict[str, int] = {}
        for url, limit in exposure.items():
            if not isinstance(url, str):
                raise InvalidInputError(f"an exposure key must be a mint URL, got {url!r}")
            key = normalize_mint_url(url)
            if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
                raise InvalidAmountError(
                    f"the exposure limit of {key} must be a positive integer number of"
                    f" sats, got {limit!r}")
            if key in limits:
                raise InvalidInputError(f"mint {key} has two exposure limits")
            if key == target:
                raise InvalidInputError(f"sweep_to {target} has an exposure limit itself:"
                                        " its excess would have nowhere to go")
            limits[key] = limit
        return cls(limits=limits, sweep_to=target, config=config or SweeperConfig())


class Transfers(Protocol):
    """What the Sweeper needs of ``coco.transfer``."""

    def prepare(self, from_mint: str, to_mint: str, amount: int) -> Operation: ...

    def execute(self, operation_id: str, timeout: float = ...) -> Operation: ...

    def rollback(self, operation_id: str) -> Operation: ...

    def get_pending_operations(self) -> list[Operation]: ...


class SweepWallet(Protocol):
    """What the Sweeper needs of :class:`~coco_actors.coco.Coco` (no import upward)."""

    @property
    def transfer(self) -> Transfers: ...

    def balance(self) -> dict[str, MintBalance]: ...

    def on(self, event: str, handler: Handler) -> None: ...

    def off(self, event: str, handler: Handler | None = None) -> None: ...


class Sweeper:
    """Keeps each limited mint's spendable balance at or below its limit.

    ``checks`` counts finished passes, ``attempts`` the transfers it prepared,
    ``failures`` the sweeps that failed (each logged); all readable from any thread.
    """

    def __init__(self, wallet: SweepWallet, policy: ExposurePolicy) -> None:
        self._wallet = wallet
        self.policy = policy
        self._passes = PassLoop("sweeper")
        self._cond = self._passes.cond  # also guards the counters and retry times
        self._checks = 0
        self._attempts = 0
        self._failures = 0
        self._failed_in_row: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._thread = SupervisedThread("coco-sweeper", self._loop, wake=self._wake,
                                        logger=log)
        self._handlers: list[tuple[str, Handler]] = []

    # --- life (the caller's thread: Coco.__init__ and Coco.close) ------------------------

    def start(self) -> None:
        for event in WAKE_EVENTS:
            handler = self._on_event
            self._wallet.on(event, handler)
            self._handlers.append((event, handler))
        self._thread.start()
        log.info("exposure limits on: %s; excess goes to %s",
                 ", ".join(f"{u} <= {n}" for u, n in sorted(self.policy.limits.items())),
                 self.policy.sweep_to)

    def stop(self, timeout: float) -> bool:
        """End the loop (a sweep in progress finishes its step first); True if it ended."""
        ended = self._thread.stop(timeout)
        for event, handler in self._handlers:
            try:
                self._wallet.off(event, handler)
            except CocoError:  # the bus is going down with the wallet anyway
                log.debug("could not unsubscribe the sweeper from %s", event)
        self._handlers.clear()
        return ended

    # --- counters and waking (any thread) ------------------------------------------------

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def checks(self) -> int:
        with self._cond:
            return self._checks

    @property
    def attempts(self) -> int:
        with self._cond:
            return self._attempts

    @property
    def failures(self) -> int:
        with self._cond:
            return self._failures

    def retry_at(self, mint_url: str) -> float | None:
        """When (``time.monotonic()``) a mint whose sweep failed is tried again."""
        with self._cond:
            return self._retry_at.get(normalize_mint_url(mint_url))

    def sweep_now(self, timeout: float = 120.0) -> int:
        """Wake the Sweeper and wait until a pass that began after this call has ended;
        returns ``checks`` then. A mint in its retry backoff is still skipped."""
        self._passes.ask_and_wait(timeout)
        return self.checks

    def _on_event(self, payload: dict[str, Any]) -> None:
        """On the EventBus thread: a balance may have changed; wake the loop, nothing more."""
        self._wake()

    def _wake(self) -> None:
        self._passes.wake()

    # --- the loop (the sweeper thread) ---------------------------------------------------

    def _loop(self, stop: threading.Event) -> None:
        # a timeout is the slow timer (or a retry due): a pass all the same
        self._passes.run(stop, self._next_wait, self._pass, self._count_check)

    def _count_check(self) -> None:
        self._checks += 1

    def _next_wait(self) -> float:
        """Until the slow timer, or the next retry falling due, whichever comes first
        (cond held). A retry already due waits for the next pass like any mint does."""
        now = time.monotonic()
        due = [t - now for t in self._retry_at.values() if t > now]
        return max(min([self.policy.config.interval, *due]), 0.05)

    def _pass(self) -> None:
        """One look at every limited mint; a mint's failure does not stop the others."""
        balances = self._wallet.balance()
        in_flight = {op.mint_url for op in self._wallet.transfer.get_pending_operations()}
        now = time.monotonic()
        for url, limit in sorted(self.policy.limits.items()):
            spendable = balances.get(url, MintBalance()).spendable
            log.debug("sweeper: %s spendable %d, limit %d", url, spendable, limit)
            if spendable <= limit:
                with self._cond:  # back within its limit: a past failure is forgotten
                    self._failed_in_row.pop(url, None)
                    self._retry_at.pop(url, None)
                continue
            if url in in_flight:
                log.debug("sweeper: %s has a transfer in flight; waiting for it", url)
                continue
            with self._cond:
                retry = self._retry_at.get(url)
            if retry is not None and now < retry:
                continue
            try:
                failure = self._sweep(url, limit, spendable)
            except CocoError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            if failure is not None:
                self._failed(url, failure)
            else:
                with self._cond:
                    self._failed_in_row.pop(url, None)
                    self._retry_at.pop(url, None)

    def _sweep(self, url: str, limit: int, spendable: int) -> str | None:
        """Prepare and execute one transfer of the excess of ``url``: None when it is
        completed or in flight, why when it was not made (or a CocoError raised)."""
        target = self.policy.sweep_to
        excess = spendable - limit
        amount = excess
        prepared: Operation | None = None
        for _ in range(MAX_ROUNDS):
            try:
                prepared = self._wallet.transfer.prepare(url, target, amount)
                break
            except InsufficientFundsError as exc:
                # the fees on top do not fit (a limit below them): ask for less
                short = max(1, exc.needed - exc.available)
                if amount - short < 1:
                    raise
                amount -= short
        if prepared is None:
            raise InsufficientFundsError(
                f"{url}: no transfer of its excess {excess} fits after {MAX_ROUNDS} rounds",
                needed=excess, available=spendable)
        with self._cond:
            self._attempts += 1
        log.info("sweeper: %s holds %d spendable, over its limit %d: transfer %s of %d to %s"
                 " (fee reserve %d, input fee %d)", url, spendable, limit, prepared.id,
                 prepared.amount, target, prepared.fee_reserve, prepared.fee)
        try:
            op = self._wallet.transfer.execute(prepared.id, timeout=self.policy.config.execute_wait)
        except CocoError:
            self._release(prepared)
            raise
        if op.state == OpState.ROLLED_BACK:
            return f"transfer {op.id} was not paid: {op.error or 'rolled back'}"
        log.info("sweeper: transfer %s from %s is %s (received %d, lightning fee %d)",
                 op.id, url, op.state.value, op.received, op.fee_paid)
        return None

    def _release(self, prepared: Operation) -> None:
        """An execute that failed before it committed leaves the transfer prepared: roll
        it back so the mint is not held; one past that point is for recovery to finish."""
        try:
            self._wallet.transfer.rollback(prepared.id)
        except CocoError as exc:
            log.info("sweeper: transfer %s left to recovery (%s)", prepared.id,
                     type(exc).__name__)

    def _failed(self, url: str, why: str) -> None:
        with self._cond:
            self._failures += 1
            n = self._failed_in_row[url] = self._failed_in_row.get(url, 0) + 1
            cfg = self.policy.config
            delay = min(cfg.retry_min * 2 ** (n - 1), cfg.retry_max)
            self._retry_at[url] = time.monotonic() + delay
        log.warning("sweeper: sweeping %s to %s failed (%s); retrying in %.0f s",
                    url, self.policy.sweep_to, why, delay)
