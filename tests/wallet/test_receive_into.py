"""Receive into a mint you choose (issue 17): a token from one mint, its value moved to
another of the wallet's mints as one transfer whose melt leg melts the token's proofs.

Balances at both mints to the sat after every step: the token's amount is what
arrives at ``into`` (``received``) plus the change kept at the token's mint plus the
input fee plus the lightning fee paid. The session mints pay each other's invoices
as external payments (FakeWallet charges 1 sat; Nutshell's fee reserve is max(2, 1 %)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coco_actors import (
    Coco,
    InvalidAmountError,
    InvalidInputError,
    InvalidStateError,
    LockedTokenError,
    NotFoundError,
    TokenError,
    TokenSpentError,
)
from coco_actors.control.api import ControlApi, Request
from coco_actors.control.errors import BadRequestError
from coco_actors.control.events import EventHub
from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.mint_client import normalize_mint_url
from coco_actors.operations.transfer import fit_amount
from coco_actors.records import Operation
from coco_actors.tokens import decode
from coco_actors.wire import ProofStateKind
from devtools.devmint import FAILING, DevMint

from .helpers import WalletFactory, balance_of, fund, token_fee
from .melt_helpers import proof_states
from .test_transfer import FAKEWALLET_FEE, Events, current

FEES = pytest.mark.parametrize("fee_ppk", [0, 100], ids=["fee0", "fee100"])
_START_TIMEOUT_S = 60.0


@pytest.fixture(params=["fee0->fee100", "fee100->fee0"])
def pair(request: pytest.FixtureRequest, mint_fee0: DevMint,
         mint_fee100: DevMint) -> tuple[str, str, int]:
    """(the token's mint, ``into``, the token mint's input fee ppk), both directions."""
    if request.param == "fee0->fee100":
        return normalize_mint_url(mint_fee0.url), normalize_mint_url(mint_fee100.url), 0
    return normalize_mint_url(mint_fee100.url), normalize_mint_url(mint_fee0.url), 100


def token_from(coco: Coco, url: str, amount: int) -> str:
    """A token of ``amount`` sent by ``coco`` (funded at ``url``)."""
    prepared = coco.send.prepare_send(url, amount)
    _, token = coco.send.execute_prepared_send(prepared.id)
    return token


def token_ys(token: str) -> tuple[str, ...]:
    return tuple(secret_to_y(p.secret) for p in decode(token).proofs)


def state_of(coco: Coco) -> tuple[Any, ...]:
    """Everything a refused receive-into must leave unchanged (the mints too)."""
    return (
        coco.balance(),
        sorted(m.url for m in coco.mints.list()),
        sorted((o.id, o.state.value) for o in coco.transfer.get_pending_operations()),
        [(h.operation_id, h.type, h.amount, h.state) for h in coco.history.get_history()],
    )


def only_entry(coco: Coco, op_id: str) -> tuple[Any, ...]:
    entries = coco.history.get_history()
    assert [str(h.operation_id) for h in entries].count(op_id) == 1, entries
    h = next(h for h in entries if h.operation_id == op_id)
    return (h.type, h.amount, h.mint_url, h.to_mint_url, h.received, h.fee, h.fee_paid,
            h.state)


def conserved(op: Operation, token_amount: int) -> None:
    """The token's value, to the sat: what arrived, what stayed, what the mint took."""
    assert op.input_amount == token_amount
    assert token_amount == op.received + op.change_amount + op.fee + op.fee_paid, op.public()


# --- the amount (pure) ---------------------------------------------------------------------


def test_fit_amount_finds_the_largest_amount_within_a_few_asks() -> None:
    asked: list[int] = []

    def reserve(a: int) -> int:  # Nutshell's: max(2 sat, 1 %)
        return max(2, math.ceil(a / 100))

    def nutshell(a: int) -> int:
        asked.append(a)
        return reserve(a)

    for total, fee in ((200, 0), (200, 1), (1000, 3), (4, 0), (3, 0), (57, 1)):
        asked.clear()
        got = fit_amount(total, fee, nutshell)
        best = max(a for a in range(1, total) if a + reserve(a) + fee <= total)
        assert got == best, (total, fee)
        assert len(asked) <= 3
    assert fit_amount(2, 0, nutshell) is None  # nothing is left after the reserve
    assert fit_amount(3, 1, nutshell) is None

    def jumpy(a: int) -> int:  # a reserve that jumps: found by halving the gap
        return 50 if a > 960 else 1

    assert fit_amount(1000, 0, jumpy, rounds=12) == 960
    found = fit_amount(1000, 0, jumpy)
    assert found is not None and found + jumpy(found) <= 1000

    calls: list[int] = []

    def everything(a: int) -> int:
        calls.append(a)
        return 1000

    assert fit_amount(1000, 0, everything, rounds=4) is None
    assert calls == [1000]  # 1000 - 1000 leaves nothing: no further ask


# --- the happy path ------------------------------------------------------------------------


@pytest.mark.mint
def test_a_token_is_received_into_another_mint(wallet: WalletFactory,
                                               pair: tuple[str, str, int]) -> None:
    """Bob holds only ``into``; the token's mint is registered by the receive, and its
    change stays there. A second token from that (now known) mint goes the same way."""
    src, dst, src_ppk = pair
    alice = wallet("alice", src)
    fund(alice, src, 1000)
    token = token_from(alice, src, 200)
    bob = wallet("bob", dst)
    events = Events(bob)
    assert [m.url for m in bob.mints.list()] == [dst]

    t = bob.receive.prepare(token, into=dst)
    fee = token_fee(token, src_ppk)
    assert (t.type, t.state, t.mint_url, t.to_mint_url) == ("transfer", "prepared", src, dst)
    assert (t.input_amount, t.fee) == (200, fee)
    # the largest amount the token pays with the reserve (max(2, 1 %)) and the input fee
    assert t.amount + t.fee_reserve + t.fee == 200
    assert t.amount + 1 + max(2, math.ceil((t.amount + 1) / 100)) + t.fee > 200
    view = t.public()
    assert view["from_token"] is True and view["receive_id"] is None
    # the token's proofs are held by the melt leg, never spendable; into has nothing yet
    assert sorted(m.url for m in bob.mints.list()) == sorted([src, dst])
    assert balance_of(bob, src) == (0, 200, 0)
    assert balance_of(bob, dst) == (0, 0, 0)
    assert [o.id for o in bob.transfer.get_pending_operations()] == [t.id]
    assert proof_states(src, token_ys(token)) == {ProofStateKind.UNSPENT}

    op = bob.receive.execute(t.id, timeout=60)
    assert op.state == "completed", op
    assert op.received == t.amount
    assert (op.fee, op.fee_paid) == (t.fee, FAKEWALLET_FEE)  # the fee prepare showed
    assert op.fee_paid <= t.fee_reserve
    assert op.change_amount == t.fee_reserve - op.fee_paid
    conserved(op, 200)
    assert balance_of(bob, dst) == (op.received, 0, 0)
    assert balance_of(bob, src) == (op.change_amount, 0, 0)
    assert op.public()["change_amount"] == op.change_amount
    assert proof_states(src, token_ys(token)) == {ProofStateKind.SPENT}
    assert only_entry(bob, t.id) == ("transfer", t.amount, src, dst, t.amount, op.fee,
                                     op.fee_paid, "completed")
    assert [h.type for h in bob.history.get_history()] == ["transfer"]  # legs have none
    events.wait_for("transfer:finalized", t.id)
    events.flush()
    assert events.names(t.id) == ["transfer:prepared", "transfer:finalized"]
    assert bob.transfer.get_pending_operations() == []
    # the sender sees the token claimed
    assert [o.state for o in alice.send.check_pending()] == ["completed"]

    # again, from the mint bob now knows, in one call
    second = token_from(alice, src, 100)
    before_dst, before_src = balance_of(bob, dst)[0], balance_of(bob, src)[0]
    op2 = bob.receive(second, into=dst)
    assert op2.state == "completed", op2
    conserved(op2, 100)
    assert op2.fee == token_fee(second, src_ppk)
    assert balance_of(bob, dst) == (before_dst + op2.received, 0, 0)
    assert balance_of(bob, src) == (before_src + op2.change_amount, 0, 0)
    assert [h.type for h in bob.history.get_history()] == ["transfer", "transfer"]
    # a plain receive still returns the receive operation
    third = token_from(alice, src, 50)
    plain = bob.receive(third)
    assert (plain.type, plain.state, plain.amount) == (
        "receive", "completed", 50 - token_fee(third, src_ppk))


@pytest.mark.mint
def test_a_prepared_receive_into_rolled_back_forgets_the_token(
        wallet: WalletFactory, pair: tuple[str, str, int]) -> None:
    """Declined after prepare: the token is not the wallet's (its proofs are forgotten,
    never made spendable) and can still be received, normally or again into ``dst``."""
    src, dst, src_ppk = pair
    alice = wallet("alice", src)
    fund(alice, src, 1000)
    token = token_from(alice, src, 100)
    bob = wallet("bob", dst)
    t = bob.receive.prepare(token, into=dst)
    assert balance_of(bob, src) == (0, 100, 0)
    # the same token cannot be prepared twice while it is held: nothing changes
    before = state_of(bob)
    with pytest.raises(InvalidStateError):
        bob.receive.prepare(token, into=dst)
    assert state_of(bob) == before

    op = bob.transfer.rollback(t.id)
    assert (op.state, op.received, op.change_amount) == ("rolled_back", 0, 0)
    assert balance_of(bob, src) == (0, 0, 0)
    assert balance_of(bob, dst) == (0, 0, 0)
    assert proof_states(src, token_ys(token)) == {ProofStateKind.UNSPENT}
    assert only_entry(bob, t.id)[-1] == "rolled_back"
    with pytest.raises(InvalidStateError):
        bob.receive.execute(t.id)
    received = bob.receive(token)
    assert (received.state, received.amount) == ("completed", 100 - token_fee(token, src_ppk))
    assert balance_of(bob, src) == (received.amount, 0, 0)


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.mint
def test_bad_input_is_refused_and_changes_nothing(wallet: WalletFactory,
                                                  pair: tuple[str, str, int]) -> None:
    src, dst, _ = pair
    alice = wallet("alice", src)
    fund(alice, src, 1000)
    token = token_from(alice, src, 100)
    tiny = token_from(alice, src, 2)  # one proof of 2: no amount is left after the reserve
    spent = token_from(alice, src, 50)
    assert wallet("carol", src).receive(spent).state == "completed"
    bob = wallet("bob", dst)
    prepared = alice.send.prepare_send(src, 64, p2pk=bob.keys.new())
    _, locked = alice.send.execute_prepared_send(prepared.id)  # bob could receive it normally
    events = Events(bob)
    before = state_of(bob)
    cases: list[tuple[type[Exception], str | None, Callable[[], object]]] = [
        (NotFoundError, None, lambda: bob.receive.prepare(token, into="http://127.0.0.1:9")),
        (NotFoundError, None, lambda: bob.receive(token, into="http://127.0.0.1:9")),
        (InvalidInputError, None, lambda: bob.receive.prepare(token, into="not a url")),
        (InvalidInputError, None, lambda: bob.receive.prepare(token, into=5)),  # type: ignore[arg-type]
        (TokenError, None, lambda: bob.receive.prepare("cashuBnonsense", into=dst)),
        (TokenError, None, lambda: bob.receive.prepare(7, into=dst)),  # type: ignore[arg-type]
        (InvalidAmountError, "receive it normally", lambda: bob.receive.prepare(tiny, into=dst)),
        (TokenSpentError, None, lambda: bob.receive.prepare(spent, into=dst)),
        (TokenSpentError, None, lambda: bob.receive(spent, into=dst)),
        (LockedTokenError, "receive it normally",
         lambda: bob.receive.prepare(locked, into=dst)),
        (NotFoundError, None, lambda: bob.receive.execute("0" * 32)),
    ]
    for error, match, call in cases:
        with pytest.raises(error, match=match):
            call()
        assert state_of(bob) == before
    # the token's own mint as ``into``: receive it normally (refused before any request)
    bob.mints.add(src)
    before = state_of(bob)
    with pytest.raises(InvalidInputError, match="receive it normally"):
        bob.receive.prepare(token, into=src)
    assert state_of(bob) == before
    events.flush()
    assert events.names() == []
    assert bob.history.get_history() == []


# --- a failed melt ---------------------------------------------------------------------------


@FEES
@pytest.mark.mint
def test_a_failed_melt_receives_the_token_at_its_own_mint(
        wallet: WalletFactory, make_mint: Callable[..., DevMint], mint_fee0: DevMint,
        fee_ppk: int) -> None:
    """The token's mint fails every payment (FAILING): the melt is refused and its
    inputs are unspent, so the token is swapped at its own mint (its sender cannot spend
    it again) and the transfer ends rolled_back, saying so, with what was kept."""
    source = make_mint(input_fee_ppk=fee_ppk, fakewallet=FAILING).start(
        timeout=_START_TIMEOUT_S)
    src, dst = normalize_mint_url(source.url), normalize_mint_url(mint_fee0.url)
    alice = wallet("alice", src)
    fund(alice, src, 1000)
    token = token_from(alice, src, 200)
    bob = wallet("bob", dst)
    events = Events(bob)
    t = bob.receive.prepare(token, into=dst)
    assert balance_of(bob, src) == (0, 200, 0)

    op = bob.receive.execute(t.id, timeout=30)
    assert op.state == "rolled_back", op
    assert op.error is not None and f"received at {src} instead" in op.error
    swap_fee = token_fee(token, fee_ppk)
    assert (op.received, op.fee_paid, op.fee) == (0, 0, swap_fee)
    assert op.change_amount == 200 - swap_fee
    conserved(op, 200)
    assert balance_of(bob, src) == (200 - swap_fee, 0, 0)
    assert balance_of(bob, dst) == (0, 0, 0)
    assert proof_states(src, token_ys(token)) == {ProofStateKind.SPENT}  # claimed by bob
    assert op.receive_id is not None and op.public()["receive_id"] == op.receive_id
    leg = bob._ledger.get_operation(op.receive_id).get(timeout=5)
    assert leg is not None and (leg.type, leg.state, leg.parent_id, leg.amount) == (
        "receive", "completed", t.id, 200 - swap_fee)
    melt = bob.melt.get_operation(op.melt_id or "")
    assert melt is not None and (melt.state, melt.fee_paid) == ("rolled_back", 0)
    assert only_entry(bob, t.id) == ("transfer", t.amount, src, dst, 0, swap_fee, 0,
                                     "rolled_back")
    assert [h.type for h in bob.history.get_history()] == ["transfer"]
    events.wait_for("transfer:rolled-back", t.id)
    events.flush()
    assert events.names(t.id) == ["transfer:prepared", "transfer:rolled-back"]
    assert bob.transfer.get_pending_operations() == []
    # what was kept is bob's: spendable, and the sender's send is claimed
    assert [o.state for o in alice.send.check_pending()] == ["completed"]
    sent = bob.send.prepare_send(src, 100)
    assert balance_of(bob, src) == (200 - swap_fee - sent.input_amount, sent.input_amount, 0)


# --- recovery in process ---------------------------------------------------------------------


@pytest.mark.mint
def test_a_receive_into_paid_while_into_is_down_is_redeemed_after_reopen(
        wallet: WalletFactory, mint_fee100: DevMint, make_mint: Callable[..., DevMint]) -> None:
    """The melt of the token's proofs pays while ``into`` cannot be reached: pending (the
    value is owed, the change is already kept); closed, reopened with ``into`` back, the
    recovery redeems it."""
    src = normalize_mint_url(mint_fee100.url)
    dest = make_mint(input_fee_ppk=0).start(timeout=_START_TIMEOUT_S)
    dst = normalize_mint_url(dest.url)
    alice = wallet("alice", src)
    fund(alice, src, 1000)
    token = token_from(alice, src, 300)
    bob = wallet("bob", dst)
    events = Events(bob)
    t = bob.receive.prepare(token, into=dst)
    dest.stop()
    op = bob.receive.execute(t.id, timeout=30)
    assert op.state == "pending", op
    assert (op.received, op.fee_paid) == (0, FAKEWALLET_FEE)
    assert proof_states(src, token_ys(token)) == {ProofStateKind.SPENT}
    assert balance_of(bob, src) == (op.change_amount, 0, 0)
    assert op.change_amount == t.fee_reserve - FAKEWALLET_FEE
    assert balance_of(bob, dst) == (0, 0, 0)
    events.wait_for("transfer:pending", t.id)
    with pytest.raises(InvalidStateError, match="paid"):
        bob.transfer.rollback(t.id)
    bob.close()
    dest.start(timeout=_START_TIMEOUT_S)
    bob = wallet("bob")
    assert bob.last_recovery == {"completed": 1}
    op = current(bob, t.id)
    assert (op.state, op.received) == ("completed", t.amount)
    conserved(op, 300)
    assert balance_of(bob, dst) == (t.amount, 0, 0)
    assert balance_of(bob, src) == (op.change_amount, 0, 0)
    assert only_entry(bob, t.id) == ("transfer", t.amount, src, dst, t.amount, op.fee,
                                     FAKEWALLET_FEE, "completed")


# --- the daemon's endpoints (in process) -----------------------------------------------------


@pytest.mark.mint
def test_the_control_api_prepares_executes_and_rolls_back_a_receive_into(
        wallet: WalletFactory, tmp_path: Path, mint_fee0: DevMint, mint_fee100: DevMint
        ) -> None:
    src, dst = normalize_mint_url(mint_fee100.url), normalize_mint_url(mint_fee0.url)
    alice = wallet("alice", src)
    fund(alice, src, 1000)
    bob = wallet("bob", dst)
    api = ControlApi(bob, tmp_path, EventHub(), lambda: None)

    def call(path: str, body: dict[str, object]) -> Any:
        found = api.route("POST", path)
        assert found is not None
        handler, params = found
        return handler(Request({}, body, params))

    declined = token_from(alice, src, 100)
    shown = call("/receive/prepare", {"token": declined, "into": dst})
    assert (shown["type"], shown["state"], shown["to_mint_url"]) == ("transfer", "prepared", dst)
    assert shown["amount"] + shown["fee_reserve"] + shown["fee"] == 100
    assert balance_of(bob, src) == (0, 100, 0)
    back = call(f"/receive/{shown['id']}/rollback", {})
    assert back["state"] == "rolled_back" and balance_of(bob, src) == (0, 0, 0)

    token = token_from(alice, src, 100)
    prepared = call("/receive/prepare", {"token": token, "into": dst})
    done = call(f"/receive/{prepared['id']}/execute", {"timeout": 30})
    assert (done["state"], done["received"]) == ("completed", prepared["amount"])
    assert done["received"] + done["change_amount"] + done["fee"] + done["fee_paid"] == 100
    one_shot = call("/receive", {"token": token_from(alice, src, 100), "into": dst})
    assert one_shot["state"] == "completed"
    assert balance_of(bob, dst) == (done["received"] + one_shot["received"], 0, 0)
    assert balance_of(bob, src) == (done["change_amount"] + one_shot["change_amount"], 0, 0)
    plain = call("/receive", {"token": token_from(alice, src, 50)})
    assert (plain["type"], plain["state"]) == ("receive", "completed")
    with pytest.raises(BadRequestError):
        call("/receive/prepare", {"token": token})  # into is required there
