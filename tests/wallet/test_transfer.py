"""The transfer saga (issue 17) end to end: one wallet holding two real mints.

Balances at both mints to the sat after every step: the source loses
``amount + fee + fee_paid``, the destination gains ``received == amount``. The
session mints pay each other's invoices as external payments (FakeWallet charges
1 sat, settled in the melt answer), and each auto-pays its own mint quotes, so a
redeem at the destination succeeds at once once the melt paid. Payments that pend
or fail get a private source mint (PENDING presets, decided by a restart).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from coco_actors import (
    Coco,
    InvalidStateError,
)
from coco_actors.mint_client import normalize_mint_url
from coco_actors.records import Operation
from devtools.devmint import DevMint

from .helpers import WalletFactory, balance_of, fund

pytestmark = pytest.mark.mint

#: What FakeWallet charges for an external payment it settles in the melt answer.
FAKEWALLET_FEE = 1
TRANSFER_EVENTS = ("transfer:prepared", "transfer:pending", "transfer:finalized",
                   "transfer:rolled-back")
EVENT_TIMEOUT = 10.0
DECIDE_TIMEOUT = 45.0
_START_TIMEOUT_S = 60.0


class Events:
    """Every transfer event of one wallet (handlers run on the bus thread)."""

    def __init__(self, coco: Coco) -> None:
        self._coco = coco
        self._cond = threading.Condition()
        self.seen: list[tuple[str, dict[str, Any]]] = []
        for name in TRANSFER_EVENTS:
            coco.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[[dict[str, Any]], None]:
        def record(payload: dict[str, Any]) -> None:
            with self._cond:
                self.seen.append((name, payload))
                self._cond.notify_all()
        return record

    def wait_for(self, name: str, op_id: str, timeout: float = EVENT_TIMEOUT
                 ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((p for n, p in self.seen if n == name and p["operation_id"] == op_id),
                        None)

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout):
                raise AssertionError(f"no {name} for {op_id} within {timeout:g} s; "
                                     f"seen {self.names()}")
            payload = found()
        assert payload is not None
        return payload

    def flush(self) -> None:
        """A round trip to the bus: every event emitted before has been handled."""
        def noop(payload: dict[str, Any]) -> None:
            pass

        self._coco.on("transfer:prepared", noop)
        self._coco.off("transfer:prepared", noop)

    def names(self, op_id: str | None = None) -> list[str]:
        with self._cond:
            return [n for n, p in self.seen if op_id is None or p["operation_id"] == op_id]


def total(coco: Coco, url: str) -> int:
    return sum(balance_of(coco, url))


def state_of(coco: Coco) -> tuple[Any, ...]:
    """Everything a refused transfer call must leave unchanged."""
    return (
        coco.balance(),
        sorted((o.id, o.state.value) for o in coco.transfer.get_pending_operations()),
        sorted((o.id, o.state.value) for o in coco.melt.get_pending_operations()),
        [(h.operation_id, h.type, h.amount, h.state) for h in coco.history.get_history()],
    )


def only_entry(coco: Coco, op_id: str) -> tuple[Any, ...]:
    """(type, amount, mint_url, to_mint_url, received, fee, fee_paid, state) of the one
    history entry of a transfer; its legs have none."""
    entries = coco.history.get_history()
    mine = [h for h in entries if h.operation_id == op_id]
    assert len(mine) == 1, entries
    h = mine[0]
    return (h.type, h.amount, h.mint_url, h.to_mint_url, h.received, h.fee, h.fee_paid,
            h.state)


def current(coco: Coco, op_id: str) -> Operation:
    op = coco.transfer.get_operation(op_id)
    assert op is not None
    return op


@pytest.fixture(params=["fee0->fee100", "fee100->fee0"])
def pair(request: pytest.FixtureRequest, mint_fee0: DevMint,
         mint_fee100: DevMint) -> tuple[str, str, int]:
    """(source url, destination url, the source's input fee ppk), both directions."""
    if request.param == "fee0->fee100":
        return normalize_mint_url(mint_fee0.url), normalize_mint_url(mint_fee100.url), 0
    return normalize_mint_url(mint_fee100.url), normalize_mint_url(mint_fee0.url), 100


def two_mint_wallet(wallet: WalletFactory, src: str, dst: str, name: str = "a",
                    **kwargs: Any) -> Coco:
    coco = wallet(name, src, **kwargs)
    coco.mints.add(dst)
    fund(coco, src, 1000)
    return coco


# --- the happy path ----------------------------------------------------------------------


def test_a_transfer_moves_exactly_the_amount(wallet: WalletFactory,
                                             pair: tuple[str, str, int]) -> None:
    src, dst, _ = pair
    coco = two_mint_wallet(wallet, src, dst)
    events = Events(coco)
    assert balance_of(coco, src) == (1000, 0, 0)
    assert balance_of(coco, dst) == (0, 0, 0)
    assert coco.total_balance().spendable == 1000

    t = coco.transfer.prepare(src, dst, 100)
    assert (t.type, t.state, t.amount, t.mint_url, t.to_mint_url) == (
        "transfer", "prepared", 100, src, dst)
    assert t.fee_reserve >= 2 and t.input_amount >= 100 + t.fee_reserve + t.fee
    # the melt leg holds its inputs; nothing has moved yet
    assert balance_of(coco, src) == (1000 - t.input_amount, t.input_amount, 0)
    assert balance_of(coco, dst) == (0, 0, 0)
    assert [o.id for o in coco.transfer.get_pending_operations()] == [t.id]
    assert coco.melt.get_pending_operations() == []  # legs are the transfer's
    check_payload(events.wait_for("transfer:prepared", t.id), t, "prepared", dst)
    view = t.public()
    assert view["to_mint_url"] == dst and view["melt_id"] == t.melt_id
    assert view["mint_leg_id"] == t.mint_leg_id and view["received"] == 0

    op = coco.transfer.execute(t.id, timeout=60)
    assert op.state == "completed", op
    assert op.received == 100
    assert op.fee_paid == FAKEWALLET_FEE
    assert op.fee == t.fee
    assert balance_of(coco, src) == (1000 - 100 - op.fee - op.fee_paid, 0, 0)
    assert balance_of(coco, dst) == (100, 0, 0)
    assert 1000 - total(coco, src) == op.amount + op.fee + op.fee_paid
    assert total(coco, dst) == op.received == op.amount
    assert coco.total_balance().spendable == 1000 - op.fee - op.fee_paid
    assert only_entry(coco, t.id) == ("transfer", 100, src, dst, 100, op.fee, op.fee_paid,
                                      "completed")
    assert [h.type for h in coco.history.get_history()] == ["transfer", "mint"]
    assert coco.transfer.get_pending_operations() == []
    check_payload(events.wait_for("transfer:finalized", t.id), op, "completed", dst)
    events.flush()
    assert events.names(t.id) == ["transfer:prepared", "transfer:finalized"]
    # the legs are completed and name their transfer
    melt = coco.melt.get_operation(op.melt_id or "")
    leg = coco.mint.get_operation(op.mint_leg_id or "")
    assert melt is not None and leg is not None
    assert (melt.state, melt.parent_id, melt.mint_url) == ("completed", t.id, src)
    assert (leg.state, leg.parent_id, leg.mint_url, leg.amount) == ("completed", t.id, dst, 100)

    # a completed transfer cannot be rolled back or run again: nothing changes
    before = state_of(coco)
    with pytest.raises(InvalidStateError):
        coco.transfer.rollback(t.id)
    with pytest.raises(InvalidStateError):
        coco.transfer.execute(t.id)
    assert state_of(coco) == before


def check_payload(payload: dict[str, Any], op: Operation, state: str, dst: str) -> None:
    assert payload["mint_url"] == op.mint_url
    assert payload["to_mint_url"] == dst
    assert payload["operation_id"] == op.id
    assert payload["operation"].state == state
