"""Exposure limits (issue 17): the Sweeper keeps a mint's spendable balance at its limit.

Two session mints (fee 0 and fee 100 ppk), both directions. The sweep's transfer is
the transfer saga, so its accounting is the saga's: the source loses ``amount + fee +
fee_paid``, the destination gains ``received == amount``. The Sweeper asks for
``amount = excess``, so the source ends at ``limit - fee - fee_paid``: at most the
limit, not below the limit minus that transfer's fees. Nothing here sleeps: the tests
wait on events, on :meth:`Sweeper.sweep_now` (a whole pass that began after the call),
or on a condition with a deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coco_actors import Coco, InvalidAmountError, InvalidInputError
from coco_actors.mint_client import normalize_mint_url
from coco_actors.records import Operation
from coco_actors.sweeper import Sweeper, SweeperConfig
from devtools.devmint import DevMint
from tests.support.waiting import wait_until

from .helpers import WalletFactory, balance_of, fund

TRANSFER_EVENTS = ("transfer:prepared", "transfer:pending", "transfer:finalized",
                   "transfer:rolled-back")
SWEEP_TIMEOUT = 60.0
LIMIT = 300


class TransferEvents:
    """Every transfer event of one wallet, in the order the bus ran them."""

    def __init__(self, coco: Coco) -> None:
        self._coco = coco
        self._cond = threading.Condition()
        self.seen: list[tuple[str, str]] = []
        for name in TRANSFER_EVENTS:
            coco.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[[dict[str, Any]], None]:
        def record(payload: dict[str, Any]) -> None:
            with self._cond:
                self.seen.append((name, payload["operation_id"]))
                self._cond.notify_all()
        return record

    def wait_for(self, name: str, skip: tuple[str, ...] = (),
                 timeout: float = SWEEP_TIMEOUT) -> str:
        """The id of the first operation with event ``name`` that is not in ``skip``."""
        def found() -> str | None:
            return next((i for n, i in self.seen if n == name and i not in skip), None)

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout):
                raise AssertionError(f"no {name} within {timeout:g} s; seen {self.seen}")
            op_id = found()
        assert op_id is not None
        return op_id

    def flush(self) -> None:
        """A round trip to the bus: every event emitted before has been recorded."""
        def noop(payload: dict[str, Any]) -> None:
            pass

        self._coco.on("transfer:prepared", noop)
        self._coco.off("transfer:prepared", noop)

    def snapshot(self) -> list[tuple[str, str]]:
        with self._cond:
            return list(self.seen)


@pytest.fixture(params=["fee0->fee100", "fee100->fee0"])
def pair(request: pytest.FixtureRequest, mint_fee0: DevMint,
         mint_fee100: DevMint) -> tuple[str, str]:
    """(the limited mint, the mint the excess goes to), both directions."""
    a, b = normalize_mint_url(mint_fee0.url), normalize_mint_url(mint_fee100.url)
    return (a, b) if request.param == "fee0->fee100" else (b, a)


def sweeper_of(coco: Coco) -> Sweeper:
    assert coco.sweeper is not None
    return coco.sweeper


def transfers_in_history(coco: Coco) -> list[str]:
    return [h.operation_id for h in coco.history.get_history() if h.type == "transfer"]


def the_transfer(coco: Coco, op_id: str) -> Operation:
    op = coco.transfer.get_operation(op_id)
    assert op is not None
    return op


def check_sweep(op: Operation, src: str, dst: str, excess: int) -> None:
    """One sweep's transfer: the whole excess, from the limited mint to sweep_to."""
    assert (op.type, op.state, op.mint_url, op.to_mint_url) == ("transfer", "completed",
                                                                src, dst)
    assert op.amount == excess
    assert op.received == op.amount


# --- the sweep ---------------------------------------------------------------------------


def test_the_sweep_moves_exactly_the_excess(wallet: WalletFactory,
                                            pair: tuple[str, str]) -> None:
    src, dst = pair
    coco = wallet("a", src, exposure={src: LIMIT}, sweep_to=dst)
    coco.mints.add(dst)
    events = TransferEvents(coco)
    sweeper = sweeper_of(coco)
    assert balance_of(coco, src) == (0, 0, 0)

    fund(coco, src, 1000)  # its mint:finalized wakes the Sweeper: nobody asks it here
    op = the_transfer(coco, events.wait_for("transfer:finalized"))
    check_sweep(op, src, dst, 1000 - LIMIT)
    fees = op.fee + op.fee_paid
    after = balance_of(coco, src)
    assert after == (1000 - op.amount - fees, 0, 0)
    assert LIMIT - fees <= after[0] <= LIMIT
    assert balance_of(coco, dst) == (op.received, 0, 0) == (1000 - LIMIT, 0, 0)
    assert coco.total_balance().spendable == 1000 - fees

    # the next pass finds the mint within its limit: still one transfer, nothing in flight
    sweeper.sweep_now()
    assert transfers_in_history(coco) == [op.id]
    assert coco.transfer.get_pending_operations() == []
    events.flush()
    assert [n for n, i in events.snapshot() if i == op.id] == ["transfer:prepared",
                                                               "transfer:finalized"]
    assert (sweeper.attempts, sweeper.failures) == (1, 0)
    assert balance_of(coco, src) == after
    assert balance_of(coco, dst) == (1000 - LIMIT, 0, 0)

    coco.close()  # stops the Sweeper's thread with the wallet
    assert not sweeper.is_alive()


def test_within_the_limit_nothing_moves(wallet: WalletFactory, pair: tuple[str, str],
                                        caplog: pytest.LogCaptureFixture) -> None:
    src, dst = pair
    caplog.set_level(logging.DEBUG, logger="coco_actors.sweeper")
    coco = wallet("a", src, exposure={src: 1000}, sweep_to=dst)
    coco.mints.add(dst)
    sweeper = sweeper_of(coco)
    fund(coco, src, 1000)  # exactly the limit: not over it

    before = sweeper.checks
    assert sweeper.sweep_now() > before  # a whole pass began after the funding
    # it looked at the funded balance (each pass logs what it saw) and did nothing
    assert f"sweeper: {src} spendable 1000, limit 1000" in caplog.text
    assert (sweeper.attempts, sweeper.failures) == (0, 0)
    assert transfers_in_history(coco) == []
    assert balance_of(coco, src) == (1000, 0, 0)
    assert balance_of(coco, dst) == (0, 0, 0)


def test_two_quick_receives_give_one_transfer_at_a_time(
        wallet: WalletFactory, pair: tuple[str, str]) -> None:
    src, dst = pair
    limit = 100
    payer = wallet("payer", src)
    fund(payer, src, 1000)
    tokens = []
    for _ in range(2):
        prepared = payer.send.prepare_send(src, 200)
        tokens.append(payer.send.execute_prepared_send(prepared.id)[1])

    coco = wallet("a", src, exposure={src: limit}, sweep_to=dst)
    coco.mints.add(dst)
    events = TransferEvents(coco)
    sweeper = sweeper_of(coco)
    received = [coco.receive(token) for token in tokens]  # back to back
    net = sum(r.amount for r in received)
    assert net > 2 * limit

    def settled() -> bool:
        return (balance_of(coco, src)[0] <= limit
                and coco.transfer.get_pending_operations() == [])

    wait_until(settled, SWEEP_TIMEOUT, "the sweeps brought the mint within its limit")
    sweeper.sweep_now()  # one more pass: nothing left to do
    ids = transfers_in_history(coco)
    ops = [the_transfer(coco, i) for i in reversed(ids)]  # oldest first
    assert 1 <= len(ops) <= 2 and sweeper.attempts == len(ops) and sweeper.failures == 0

    # never two at once: each transfer ended before the next one was prepared
    events.flush()  # the last finalized may still be on its way to the bus
    seen = events.snapshot()
    assert [i for n, i in seen if n == "transfer:prepared"] == [o.id for o in ops]
    order = [(n, i) for n, i in seen if n in ("transfer:prepared", "transfer:finalized")]
    assert order == [(n, o.id) for o in ops
                     for n in ("transfer:prepared", "transfer:finalized")]

    # to the sat: each moved the excess it saw; the mint ends within the last one's fees
    for op in ops:
        assert (op.state, op.mint_url, op.to_mint_url) == ("completed", src, dst)
        assert op.received == op.amount
    spent = sum(o.amount + o.fee + o.fee_paid for o in ops)
    last = ops[-1]
    after = balance_of(coco, src)
    assert after == (net - spent, 0, 0)
    assert limit - (last.fee + last.fee_paid) <= after[0] <= limit
    assert balance_of(coco, dst) == (sum(o.received for o in ops), 0, 0)
    assert sum(o.amount for o in ops) == net - limit - sum(o.fee + o.fee_paid
                                                          for o in ops[:-1])


def test_a_transfer_in_flight_holds_the_sweep(wallet: WalletFactory,
                                              pair: tuple[str, str]) -> None:
    src, dst = pair
    coco = wallet("a", src)
    coco.mints.add(dst)
    fund(coco, src, 1000)
    mine = coco.transfer.prepare(src, dst, 50)  # by hand, left prepared: inputs held
    coco.close()

    coco = wallet("a", exposure={src: LIMIT}, sweep_to=dst)  # reopened with the policy
    events = TransferEvents(coco)
    sweeper = sweeper_of(coco)
    held = (1000 - mine.input_amount, mine.input_amount, 0)
    assert held[0] > LIMIT
    sweeper.sweep_now()
    assert (sweeper.attempts, sweeper.failures) == (0, 0)  # over the limit, but in flight
    assert [o.id for o in coco.transfer.get_pending_operations()] == [mine.id]
    assert balance_of(coco, src) == held

    coco.transfer.rollback(mine.id)  # its transfer:rolled-back wakes the Sweeper
    op = the_transfer(coco, events.wait_for("transfer:finalized"))
    check_sweep(op, src, dst, 1000 - LIMIT)
    assert balance_of(coco, src) == (LIMIT - op.fee - op.fee_paid, 0, 0)
    assert balance_of(coco, dst) == (1000 - LIMIT, 0, 0)
    sweeper.sweep_now()
    assert sorted(transfers_in_history(coco)) == sorted([mine.id, op.id])
    assert sweeper.attempts == 1


def test_a_failed_sweep_is_retried_after_a_backoff(wallet: WalletFactory,
                                                   pair: tuple[str, str]) -> None:
    src, dst = pair
    retry = 5.0
    coco = wallet("a", src, exposure={src: LIMIT}, sweep_to=dst,  # dst not added yet
                  sweeper=SweeperConfig(retry_min=retry, retry_max=retry))
    events = TransferEvents(coco)
    sweeper = sweeper_of(coco)
    fund(coco, src, 1000)
    wait_until(lambda: sweeper.failures == 1, SWEEP_TIMEOUT, "the sweep failed once")
    failed_at = time.monotonic()
    due = sweeper.retry_at(src)
    assert due is not None and failed_at < due <= failed_at + retry

    sweeper.sweep_now()  # within the backoff: the mint is not tried again
    assert time.monotonic() < due, "the check below needs to run within the backoff"
    assert (sweeper.attempts, sweeper.failures) == (0, 1)
    assert transfers_in_history(coco) == [] and events.snapshot() == []
    assert balance_of(coco, src) == (1000, 0, 0)

    coco.mints.add(dst)  # no event: the retry comes when its backoff is over
    op = the_transfer(coco, events.wait_for("transfer:finalized"))
    assert time.monotonic() >= due
    check_sweep(op, src, dst, 1000 - LIMIT)
    assert balance_of(coco, src) == (LIMIT - op.fee - op.fee_paid, 0, 0)
    assert balance_of(coco, dst) == (1000 - LIMIT, 0, 0)
    sweeper.sweep_now()
    assert (sweeper.attempts, sweeper.failures) == (1, 1)
    assert sweeper.retry_at(src) is None


# --- the policy's values -------------------------------------------------------------------

A = "http://127.0.0.1:3338"
B = "http://127.0.0.1:3339"


@pytest.mark.parametrize(("options", "error"), [
    ({"exposure": {A: 0}, "sweep_to": B}, InvalidAmountError),
    ({"exposure": {A: -5}, "sweep_to": B}, InvalidAmountError),
    ({"exposure": {A: True}, "sweep_to": B}, InvalidAmountError),
    ({"exposure": {A: 1.5}, "sweep_to": B}, InvalidAmountError),
    ({"exposure": {A: "100"}, "sweep_to": B}, InvalidAmountError),
    ({"exposure": {A: 100}}, InvalidInputError),                      # nowhere to sweep to
    ({"sweep_to": B}, InvalidInputError),                             # nothing limited
    ({"exposure": {}, "sweep_to": B}, InvalidInputError),
    ({"exposure": [(A, 100)], "sweep_to": B}, InvalidInputError),
    ({"exposure": {"mint-a": 100}, "sweep_to": B}, InvalidInputError),
    ({"exposure": {A: 100}, "sweep_to": "ftp://mint-b"}, InvalidInputError),
    ({"exposure": {A: 100}, "sweep_to": 7}, InvalidInputError),
    ({"exposure": {A: 100, A + "/": 200}, "sweep_to": B}, InvalidInputError),  # one mint
    ({"exposure": {A: 100, B: 100}, "sweep_to": B + "/"}, InvalidInputError),  # limited
    ({"exposure": {A: 100}, "sweep_to": B, "sweeper": "fast"}, InvalidInputError),
], ids=["zero", "negative", "bool", "float", "string", "no-sweep-to", "no-limits",
        "empty-limits", "not-a-mapping", "bad-url", "bad-scheme", "sweep-to-not-str",
        "two-spellings", "sweep-to-limited", "bad-config"])
def test_a_bad_policy_is_a_typed_error_before_anything_opens(
        tmp_path: Path, options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Coco.open(tmp_path / "w", watcher=False, **options)
    assert not (tmp_path / "w").exists()  # refused before the directory was touched


@pytest.mark.parametrize("field", ["interval", "execute_wait", "retry_min", "retry_max"])
def test_a_bad_sweeper_timing_is_refused(field: str) -> None:
    for bad in (0, -1.0, True, "1"):
        with pytest.raises(InvalidInputError):
            SweeperConfig(**{field: bad})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        SweeperConfig(retry_min=10.0, retry_max=1.0)


def test_the_policy_is_off_by_default(tmp_path: Path) -> None:
    with Coco.open(tmp_path / "w", watcher=False) as coco:
        assert coco.sweeper is None
    with Coco.open(tmp_path / "w", watcher=False, exposure={A: 100}, sweep_to=B) as coco:
        sweeper = sweeper_of(coco)
        assert sweeper.policy.limits == {A: 100} and sweeper.policy.sweep_to == B
        assert sweeper.is_alive()
    assert not sweeper.is_alive()
