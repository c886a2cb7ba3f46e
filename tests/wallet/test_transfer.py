"""The transfer saga (issue 17) end to end: one wallet holding two real mints.

Balances at both mints to the sat after every step: the source loses
``amount + fee + fee_paid``, the destination gains ``received == amount``. The
session mints pay each other's invoices as external payments (FakeWallet charges
1 sat, settled in the melt answer), and each auto-pays its own mint quotes, so a
redeem at the destination succeeds at once once the melt paid. Payments that pend
or fail get a private source mint (PENDING presets, decided by a restart).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from coco_actors import (
    Coco,
    InsufficientFundsError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
)
from coco_actors.mint_client import normalize_mint_url
from coco_actors.records import Operation
from coco_actors.watcher import WatcherConfig
from coco_actors.wire import ProofStateKind
from devtools.devmint import FAILING, PENDING, SETTLED, DevMint
from tests.support.proxy import Fault, FaultProxy
from tests.support.waiting import wait_until

from .helpers import EVENT_TIMEOUT, SagaEvents, WalletFactory, balance_of, fund
from .melt_helpers import proof_states

pytestmark = pytest.mark.mint

#: What FakeWallet charges for an external payment it settles in the melt answer.
FAKEWALLET_FEE = 1
DECIDE_TIMEOUT = 45.0
_START_TIMEOUT_S = 60.0
FEES = pytest.mark.parametrize("fee_ppk", [0, 100], ids=["fee0", "fee100"])
#: Back quickly after a mint restart (the websocket drops with the mint).
QUICK = WatcherConfig(poll_interval=0.5, reconnect_min=0.05, reconnect_max=0.5)


class Events(SagaEvents):
    """Every transfer event of one wallet."""

    kind = "transfer"


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
    assert coco.balance().total.total == 1000 - op.fee - op.fee_paid
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


# --- refusals -------------------------------------------------------------------------------


def test_bad_input_is_refused_and_changes_nothing(wallet: WalletFactory,
                                                  pair: tuple[str, str, int]) -> None:
    src, dst, _ = pair
    coco = two_mint_wallet(wallet, src, dst)
    events = Events(coco)
    before = state_of(coco)
    cases: list[tuple[type[Exception], Callable[[], object]]] = [
        (InvalidInputError, lambda: coco.transfer.prepare(src, src, 100)),
        (InvalidInputError, lambda: coco.transfer.prepare(src, src + "/", 100)),
        (NotFoundError, lambda: coco.transfer.prepare(src, "http://127.0.0.1:9", 100)),
        (NotFoundError, lambda: coco.transfer.prepare("http://127.0.0.1:9", dst, 100)),
        (InvalidInputError, lambda: coco.transfer.prepare(src, dst, 0)),
        (InvalidInputError, lambda: coco.transfer.prepare(src, dst, -1)),
        (InvalidInputError, lambda: coco.transfer.prepare(src, dst, "5")),  # type: ignore[arg-type]
        (InvalidInputError, lambda: coco.transfer.prepare(src, dst, True)),
        (InvalidInputError, lambda: coco.transfer.prepare(src, dst, 1.5)),  # type: ignore[arg-type]
        (InsufficientFundsError, lambda: coco.transfer.prepare(src, dst, 1001)),
        (InsufficientFundsError, lambda: coco.transfer.prepare(dst, src, 1)),  # dst is empty
        # covered by the balance, not with the fee reserve and input fees: refused by the
        # melt leg once the reserve is known; the legs and the transfer are deleted
        (InsufficientFundsError, lambda: coco.transfer.prepare(src, dst, 1000)),
        (NotFoundError, lambda: coco.transfer.execute("0" * 32)),
        (NotFoundError, lambda: coco.transfer.rollback("0" * 32)),
        (InvalidInputError, lambda: coco.transfer.execute("0" * 32, timeout=0)),
    ]
    for error, call in cases:
        with pytest.raises(error):
            call()
        assert state_of(coco) == before
    assert coco.transfer.get_operation("0" * 32) is None
    assert balance_of(coco, src) == (1000, 0, 0)
    # a mint operation's id is not a transfer's
    mint_op = coco.history.get_history()[0].operation_id
    assert coco.transfer.get_operation(mint_op) is None
    with pytest.raises(NotFoundError):
        coco.transfer.rollback(mint_op)
    events.flush()
    assert events.names() == []
    assert [h.type for h in coco.history.get_history()] == ["mint"]


def test_a_prepared_transfer_rolls_back_and_its_legs_are_not_driven_directly(
        wallet: WalletFactory, pair: tuple[str, str, int]) -> None:
    src, dst, _ = pair
    coco = two_mint_wallet(wallet, src, dst)
    events = Events(coco)
    t = coco.transfer.prepare(src, dst, 100)
    assert balance_of(coco, src) == (1000 - t.input_amount, t.input_amount, 0)
    # the legs belong to the transfer: the melt and mint APIs refuse them
    before = state_of(coco)
    melt = coco.melt.get_operation(t.melt_id or "")
    leg = coco.mint.get_operation(t.mint_leg_id or "")
    assert melt is not None and leg is not None and leg.quote_id is not None
    for call in (lambda: coco.melt.rollback(melt.id),
                 lambda: coco.melt.execute_prepared_melt(melt.id),
                 lambda: coco.mint.redeem(leg.quote_id or "", timeout=1)):
        with pytest.raises(InvalidStateError, match=f"part of transfer {t.id}"):
            call()
        assert state_of(coco) == before

    op = coco.transfer.rollback(t.id)
    assert op.state == "rolled_back" and op.received == 0
    assert balance_of(coco, src) == (1000, 0, 0)
    assert balance_of(coco, dst) == (0, 0, 0)
    assert proof_states(src, melt.input_ys) == {ProofStateKind.UNSPENT}
    assert coco.transfer.get_pending_operations() == []
    assert coco.mint.open_operation_for(leg.quote_id) is None
    assert only_entry(coco, t.id) == ("transfer", 100, src, dst, 0, t.fee, 0, "rolled_back")
    for leg_id in (t.melt_id, t.mint_leg_id):
        ended = coco.melt.get_operation(leg_id or "") or coco.mint.get_operation(leg_id or "")
        assert ended is not None and ended.state == "rolled_back"
    check_payload(events.wait_for("transfer:rolled-back", t.id), op, "rolled_back", dst)
    with pytest.raises(InvalidStateError):
        coco.transfer.rollback(t.id)
    with pytest.raises(InvalidStateError):
        coco.transfer.execute(t.id)
    # the inputs are spendable again: a transfer of the same amount goes through
    again = coco.transfer.execute(coco.transfer.prepare(src, dst, 100).id)
    assert again.state == "completed" and again.received == 100
    assert balance_of(coco, dst) == (100, 0, 0)
    assert balance_of(coco, src) == (1000 - 100 - again.fee - again.fee_paid, 0, 0)


# --- recovery in process --------------------------------------------------------------------


def test_a_prepared_transfer_survives_close_and_reopen(wallet: WalletFactory,
                                                       pair: tuple[str, str, int]) -> None:
    src, dst, _ = pair
    coco = two_mint_wallet(wallet, src, dst)
    t = coco.transfer.prepare(src, dst, 100)
    coco.close()
    coco = wallet("a")
    assert coco.last_recovery == {"prepared": 1}
    assert current(coco, t.id).state == "prepared"
    assert balance_of(coco, src) == (1000 - t.input_amount, t.input_amount, 0)
    op = coco.transfer.execute(t.id)
    assert (op.state, op.received) == ("completed", 100)
    assert balance_of(coco, src) == (1000 - 100 - op.fee - op.fee_paid, 0, 0)
    assert balance_of(coco, dst) == (100, 0, 0)
    # the stale policy rolls a prepared transfer back, legs and all
    t2 = coco.transfer.prepare(dst, src, 50)
    coco.close()
    coco = wallet("a", rollback_prepared_after=0)
    assert coco.last_recovery == {"rolled_back": 1}
    assert current(coco, t2.id).state == "rolled_back"
    assert balance_of(coco, dst) == (100, 0, 0)
    legs = [coco.melt.get_operation(t2.melt_id or ""),
            coco.mint.get_operation(t2.mint_leg_id or "")]
    assert [leg.state if leg else None for leg in legs] == ["rolled_back", "rolled_back"]


def test_a_rollback_cut_between_its_commits_is_finished(wallet: WalletFactory,
                                                         pair: tuple[str, str, int]) -> None:
    """A rollback commits the melt leg's release, then the transfer's end; a crash between
    the two leaves a prepared transfer whose melt leg is rolled back (the crash campaign
    found it). Execute refuses it and finishes the rollback; so does the next recovery."""
    src, dst, _ = pair
    coco = two_mint_wallet(wallet, src, dst)
    cut = []
    for amount in (100, 50):
        t = coco.transfer.prepare(src, dst, amount)
        leg = coco._supervisor.melt_actor(t.melt_id or "").get(timeout=10)
        assert leg.rollback().get(timeout=30).state == "rolled_back"  # the first commit only
        assert current(coco, t.id).state == "prepared"
        cut.append(t)
    assert balance_of(coco, src) == (1000, 0, 0)  # the inputs are back already
    with pytest.raises(InvalidStateError, match="rolled back"):
        coco.transfer.execute(cut[0].id)
    assert current(coco, cut[0].id).state == "rolled_back"
    coco.close()
    coco = wallet("a")
    assert coco.last_recovery == {"rolled_back": 1}
    for t in cut:
        assert current(coco, t.id).state == "rolled_back"
        assert coco.mint.get_operation(t.mint_leg_id or "").state == "rolled_back"
    assert coco.transfer.get_pending_operations() == []
    assert balance_of(coco, src) == (1000, 0, 0)
    assert balance_of(coco, dst) == (0, 0, 0)
    assert [h.state for h in coco.history.get_history() if h.type == "transfer"] == [
        "rolled_back", "rolled_back"]


def test_a_paid_transfer_whose_destination_is_down_is_redeemed_later(
        wallet: WalletFactory, mint_fee100: DevMint, make_mint: Callable[..., DevMint]) -> None:
    """The melt pays while ``to_mint`` cannot be reached: pending (the value is owed), and
    neither a close nor the mint's absence loses it; reopened with the mint back, the
    recovery redeems it."""
    src = normalize_mint_url(mint_fee100.url)
    dest = make_mint(input_fee_ppk=0).start(timeout=_START_TIMEOUT_S)
    dst = normalize_mint_url(dest.url)
    coco = two_mint_wallet(wallet, src, dst)
    events = Events(coco)
    t = coco.transfer.prepare(src, dst, 100)
    dest.stop()
    op = coco.transfer.execute(t.id, timeout=30)
    assert op.state == "pending", op
    assert (op.received, op.fee_paid) == (0, FAKEWALLET_FEE)
    assert balance_of(coco, src) == (1000 - 100 - op.fee - op.fee_paid, 0, 0)
    assert balance_of(coco, dst) == (0, 0, 0)
    check_payload(events.wait_for("transfer:pending", t.id), op, "pending", dst)
    before = state_of(coco)
    with pytest.raises(InvalidStateError, match="paid"):
        coco.transfer.rollback(t.id)
    assert state_of(coco) == before
    assert [(o.id, o.state) for o in coco.transfer.check_pending()] == [(t.id, "pending")]
    coco.close()
    coco = wallet("a")
    assert coco.last_recovery == {"pending": 1}  # still down: stays, nothing lost
    coco.close()
    dest.start(timeout=_START_TIMEOUT_S)
    coco = wallet("a")
    assert coco.last_recovery == {"completed": 1}
    op = current(coco, t.id)
    assert (op.state, op.received, op.fee_paid) == ("completed", 100, FAKEWALLET_FEE)
    assert balance_of(coco, dst) == (100, 0, 0)
    assert balance_of(coco, src) == (1000 - 100 - op.fee - op.fee_paid, 0, 0)
    assert only_entry(coco, t.id) == ("transfer", 100, src, dst, 100, op.fee, op.fee_paid,
                                      "completed")


def test_a_redeem_whose_answer_was_lost_is_restored(wallet: WalletFactory,
                                                    mint_fee0: DevMint, mint_fee100: DevMint
                                                    ) -> None:
    """``to_mint`` signs the redeem, the answer is lost (the fault proxy drops it): the
    mint leg stays executing with its outputs. The melt leg's notice makes the transfer
    try again at once (NUT-09 restore, failed here with a 500); reopened, the recovery's
    restore finds the outputs signed."""
    proxy = FaultProxy(mint_fee0.url)
    try:
        src, dst = normalize_mint_url(mint_fee100.url), normalize_mint_url(proxy.url)
        coco = two_mint_wallet(wallet, src, dst)
        t = coco.transfer.prepare(src, dst, 100)
        proxy.inject("POST", "/v1/mint/bolt11", Fault.DROP_RESPONSE, forward=True)
        proxy.inject("POST", "/v1/restore", Fault.ERROR_500)
        op = coco.transfer.execute(t.id, timeout=30)
        assert op.state == "pending", op
        wait_until(lambda: any(e.path == "/v1/restore" for e in proxy.exchanges),
                   EVENT_TIMEOUT, "the melt leg's notice retries the redeem")
        assert [e.forwarded for e in proxy.exchanges if e.path == "/v1/mint/bolt11"] == [True]
        leg = coco.mint.get_operation(op.mint_leg_id or "")
        assert leg is not None and leg.state == "executing"
        assert balance_of(coco, dst) == (0, 0, 0)
        assert balance_of(coco, src) == (1000 - 100 - op.fee - op.fee_paid, 0, 0)
        coco.close()
        coco = wallet("a")
        assert coco.last_recovery == {"completed": 1}
        op = current(coco, t.id)
        assert (op.state, op.received) == ("completed", 100)
        assert balance_of(coco, dst) == (100, 0, 0)
        assert balance_of(coco, src) == (1000 - 100 - op.fee - op.fee_paid, 0, 0)
        # minted once: the restore found the signed outputs, no second mint request
        assert len([e for e in proxy.exchanges if e.path == "/v1/mint/bolt11"]) == 1
    finally:
        proxy.stop()


# --- payments that stay pending, then settle or fail -----------------------------------------


@FEES
def test_a_pending_transfer_completes_once_the_payment_settles(
        wallet: WalletFactory, make_mint: Callable[..., DevMint], mint_fee0: DevMint,
        fee_ppk: int) -> None:
    """Alice (Watcher on) and Bob (Watcher off, closed and reopened while pending) transfer
    from a mint whose payments stay in flight; restarted with SETTLED, Alice's Watcher
    finishes hers (melt, then redeem), ``check_pending()`` Bob's."""
    source = make_mint(input_fee_ppk=fee_ppk, fakewallet=PENDING).start(
        timeout=_START_TIMEOUT_S)
    src, dst = normalize_mint_url(source.url), normalize_mint_url(mint_fee0.url)
    alice = two_mint_wallet(wallet, src, dst, "alice", watcher=QUICK)
    bob = two_mint_wallet(wallet, src, dst, "bob")
    ops: dict[str, Operation] = {}
    for name, coco in (("alice", alice), ("bob", bob)):
        events = Events(coco)
        t = coco.transfer.prepare(src, dst, 100)
        op = ops[name] = coco.transfer.execute(t.id, timeout=30)
        assert op.state == "pending", op
        assert (op.received, op.fee_paid) == (0, 0)
        check_payload(events.wait_for("transfer:pending", t.id), op, "pending", dst)
        assert balance_of(coco, src) == (1000 - t.input_amount, t.input_amount, 0)
        assert balance_of(coco, dst) == (0, 0, 0)
        assert [o.id for o in coco.transfer.get_pending_operations()] == [t.id]
        before = state_of(coco)
        with pytest.raises(InvalidStateError, match="may still go through"):
            coco.transfer.rollback(t.id)
        assert state_of(coco) == before
    bob.close()
    bob = wallet("bob")
    assert bob.last_recovery == {"pending": 1}
    alice_events, bob_events = Events(alice), Events(bob)

    source.restart(SETTLED, timeout=_START_TIMEOUT_S)
    alice_events.wait_for("transfer:finalized", ops["alice"].id, DECIDE_TIMEOUT)
    assert [(o.id, o.state) for o in bob.transfer.check_pending()] == [
        (ops["bob"].id, "completed")]
    bob_events.wait_for("transfer:finalized", ops["bob"].id)
    for name, coco in (("alice", alice), ("bob", bob)):
        op = current(coco, ops[name].id)
        assert (op.state, op.received, op.fee_paid) == ("completed", 100, 0)
        assert balance_of(coco, src) == (1000 - 100 - op.fee, 0, 0)
        assert balance_of(coco, dst) == (100, 0, 0)
        assert 1000 - total(coco, src) == op.amount + op.fee + op.fee_paid
        assert only_entry(coco, op.id) == ("transfer", 100, src, dst, 100, op.fee, 0,
                                           "completed")
        assert coco.transfer.get_pending_operations() == []


@FEES
def test_a_pending_transfer_rolls_back_once_the_payment_fails(
        wallet: WalletFactory, make_mint: Callable[..., DevMint], mint_fee0: DevMint,
        fee_ppk: int) -> None:
    """Two transfers pend; the source restarted with FAILING fails them: one is rolled
    back by ``rollback`` (now UNPAID), one by ``check_pending()``; inputs come back."""
    source = make_mint(input_fee_ppk=fee_ppk, fakewallet=PENDING).start(
        timeout=_START_TIMEOUT_S)
    src, dst = normalize_mint_url(source.url), normalize_mint_url(mint_fee0.url)
    coco = two_mint_wallet(wallet, src, dst)
    events = Events(coco)
    a = coco.transfer.execute(coco.transfer.prepare(src, dst, 100).id, timeout=30)
    b = coco.transfer.execute(coco.transfer.prepare(src, dst, 200).id, timeout=30)
    assert (a.state, b.state) == ("pending", "pending")
    held = a.input_amount + b.input_amount
    assert balance_of(coco, src) == (1000 - held, held, 0)

    source.restart(FAILING, timeout=_START_TIMEOUT_S)
    rolled = coco.transfer.rollback(a.id)
    assert rolled.state == "rolled_back"
    assert balance_of(coco, src) == (1000 - b.input_amount, b.input_amount, 0)
    assert [(o.id, o.state) for o in coco.transfer.check_pending()] == [(b.id, "rolled_back")]
    assert balance_of(coco, src) == (1000, 0, 0)
    assert balance_of(coco, dst) == (0, 0, 0)
    for op in (a, b):
        final = current(coco, op.id)
        assert (final.state, final.received, final.fee_paid) == ("rolled_back", 0, 0)
        melt = coco.melt.get_operation(op.melt_id or "")
        assert melt is not None and melt.state == "rolled_back"
        assert proof_states(src, melt.input_ys) == {ProofStateKind.UNSPENT}
        leg = coco.mint.get_operation(op.mint_leg_id or "")
        assert leg is not None and leg.state == "rolled_back"
        assert only_entry(coco, op.id)[-1] == "rolled_back"
        events.wait_for("transfer:rolled-back", op.id)
        assert events.names(op.id) == ["transfer:prepared", "transfer:pending",
                                       "transfer:rolled-back"]
    assert coco.transfer.get_pending_operations() == []
