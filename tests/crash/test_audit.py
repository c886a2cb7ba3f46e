"""The auditor itself: a crash test is only as good as its invariants, so each kind of
damage is done to a healthy wallet by hand (through the ledger, as a bug would) and
the audit must report it, to the sat."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from coco_actors.crypto.keysets import fee_for
from coco_actors.crypto.outputs import random_outputs
from coco_actors.mint_client import MintClient
from coco_actors.records import Operation, OpState, OpType, ProofRecord, new_operation_id
from coco_actors.wire import split_amount
from devtools.devmint import PENDING, SETTLED, DevMint
from tests.support.crash_driver import (
    MINT,
    CrashWallet,
    InProcessWallet,
    InvoiceMint,
    MintBooks,
    OtherMint,
    Recipient,
    audit_mints,
)
from tests.support.proxy import Exchange, Hold

TIMEOUT = 10.0


class Books(InProcessWallet):
    def __init__(self, mint: DevMint, data_dir: Path) -> None:
        super().__init__(mint, data_dir, fund=1000)
        sent = self.coco.send.prepare_send(self.url, 100)
        _, self.token = self.coco.send.execute_prepared_send(sent.id)   # one pending send
        self.coco.receive(self.faucet.token(50))

    def settle(self, **moves: Any) -> None:
        """A bogus completed operation that moves proofs, as a buggy saga would."""
        op = Operation(id=new_operation_id(), type=OpType.RECEIVE, mint_url=self.url,
                       amount=1, state=OpState.COMPLETED)
        self.coco._ledger.settle(op, **moves).get(timeout=TIMEOUT)

    def held(self) -> list[ProofRecord]:
        return [r for r in self.coco._ledger.all_proof_records().get(timeout=TIMEOUT)
                if r.status.value == "ready"]


@pytest.fixture
def books(mint: DevMint, tmp_path: Path) -> Iterator[Books]:
    b = Books(mint, tmp_path / "w")
    yield b
    b.close()
    b.proxy.stop()
    b.client.close()


def test_a_healthy_wallet_passes(books: Books) -> None:
    a = books.audit()
    assert a.violations == [], a.summary()
    assert (a.minted, a.received, a.pending) == (1000, 50, 100)


def test_a_lost_proof_is_value_not_conserved(books: Books) -> None:
    victim = books.held()[0]
    books.settle(spend=[victim.Y])
    a = books.audit()
    assert a.discrepancy == victim.amount
    assert any(v.startswith("value not conserved") for v in a.violations)


def test_a_spent_proof_still_held_is_caught(books: Books) -> None:
    victim = max(books.held(), key=lambda r: r.amount)
    fee = fee_for([books.recipient.ppk[victim.proof.keyset_id]])
    outputs = random_outputs(split_amount(victim.amount - fee), books.recipient.keyset.id)
    books.client.swap([victim.proof], [o.blinded for o in outputs])  # spent behind its back
    a = books.audit()
    assert any("is SPENT at the mint" in v for v in a.violations), a.violations


def test_a_claim_by_a_stranger_is_caught(books: Books) -> None:
    """A pending send's proofs spent by someone the test did not give the token to."""
    claimer = Recipient(books.client)
    assert claimer.claim(books.token)
    a = books.audit()
    assert any("not claimed" in v for v in a.violations), a.violations


def test_outputs_already_signed_is_caught(books: Books) -> None:
    books.proxy.exchanges.append(Exchange(
        "POST", "/v1/swap", b"{}", status=400,
        response=b'{"detail":"outputs have already been signed before.","code":11003}'))
    a = books.audit()
    assert any("11003" in v for v in a.violations), a.violations


def test_a_reservation_without_its_operation_is_caught(books: Books) -> None:
    victim = books.held()[0]
    books.settle(hold=[victim.proof])   # reserved by an operation that is over
    a = books.audit()
    assert any("which is not open" in v for v in a.violations), a.violations


# --- melts: the mint's word on every quote it was asked to pay --------------------------------


class MeltBooks(InProcessWallet):
    """A funded wallet that paid one invoice (a direct melt with change)."""

    def __init__(self, mint: DevMint, data_dir: Path, invoices: InvoiceMint) -> None:
        super().__init__(mint, data_dir, fund=1000)
        self.invoices = invoices
        before = {r.Y for r in self.records()}
        prepared = self.coco.melt.prepare_melt(self.url, invoices.invoice(100))
        self.melted = self.coco.melt.execute_prepared_melt(prepared.id)
        assert self.melted.state == "completed"
        self.change = [r for r in self.records() if r.Y not in before]
        assert sum(r.amount for r in self.change) == self.melted.change_amount > 0

    def records(self) -> list[ProofRecord]:
        return self.coco._ledger.all_proof_records().get(timeout=TIMEOUT)

    def rewrite(self, op: Operation, **moves: Any) -> None:
        """Store a melt's record as a buggy saga would have (with proof moves)."""
        self.coco._ledger.settle(op, **moves).get(timeout=TIMEOUT)

    def held_by(self, op_id: str) -> list[ProofRecord]:
        return [r for r in self.records() if r.operation_id == op_id]


@pytest.fixture
def melt_books(mint: DevMint, tmp_path: Path, invoices: InvoiceMint) -> Iterator[MeltBooks]:
    b = MeltBooks(mint, tmp_path / "w", invoices)
    yield b
    b.close()
    b.client.close()


def test_a_wallet_that_melted_passes(melt_books: MeltBooks) -> None:
    """The books balance with the melted value and the lightning fee the mint took."""
    a = melt_books.audit()
    assert a.violations == [], a.summary()
    op = melt_books.melted
    assert (a.melted, a.ln_fees) == (100, op.fee_paid) and op.fee_paid == 1
    assert a.spendable == 1000 - 100 - op.fee - op.fee_paid


def test_a_lost_change_proof_is_value_not_conserved(melt_books: MeltBooks) -> None:
    """The change came back (the mint signed it) but the wallet dropped a proof of it."""
    change = melt_books.change[0]
    bogus = Operation(id=new_operation_id(), type=OpType.RECEIVE, mint_url=melt_books.url,
                      amount=1, state=OpState.COMPLETED)
    melt_books.rewrite(bogus, spend=[change.Y])
    a = melt_books.audit()
    assert a.discrepancy == change.amount
    assert any(v.startswith("value not conserved") for v in a.violations)


def test_a_wrong_lightning_fee_on_record_is_caught(melt_books: MeltBooks) -> None:
    op = melt_books.melted
    melt_books.rewrite(replace(op, fee_paid=op.fee_paid + 1))
    a = melt_books.audit()
    assert any(f"melt {op.id} records amount 100, fee_paid {op.fee_paid + 1}" in v
               for v in a.violations), a.violations


def test_a_melt_whose_inputs_are_not_those_the_mint_took_is_caught(
        melt_books: MeltBooks) -> None:
    op = melt_books.melted
    other = melt_books.change[0].Y
    melt_books.rewrite(replace(op, input_ys=(*op.input_ys[1:], other)))
    a = melt_books.audit()
    assert any(f"melt {op.id} spent other inputs than those the mint took" in v
               for v in a.violations), a.violations


def test_a_melt_the_mint_paid_but_the_wallet_rolled_back_is_caught(
        melt_books: MeltBooks) -> None:
    """The mint paid the quote (a melt request through the proxy), yet the wallet
    released the inputs: they are spent at the mint and counted twice."""
    b = melt_books
    prepared = b.coco.melt.prepare_melt(b.url, b.invoices.invoice(50))
    inputs = [r.proof for r in b.held_by(prepared.id)]
    with MintClient(b.url) as behind_its_back:
        assert behind_its_back.melt(prepared.quote_id or "", inputs).state == "PAID"
    b.coco.melt.rollback(prepared.id)
    a = b.audit()
    assert any(f"melt {prepared.id} rolled back but its quote is PAID" in v
               for v in a.violations), a.violations
    assert any("is SPENT at the mint" in v for v in a.violations), a.violations
    assert a.discrepancy < 0  # the wallet counts value it no longer has


def test_a_completed_melt_the_mint_never_paid_is_caught(melt_books: MeltBooks) -> None:
    b = melt_books
    quote = b.client.create_melt_quote(b.invoices.invoice(20))
    bogus = Operation(id=new_operation_id(), type=OpType.MELT, mint_url=b.url, amount=20,
                      state=OpState.COMPLETED, quote_id=quote.quote)
    b.rewrite(bogus)
    a = b.audit()
    assert any(f"melt {bogus.id} completed but its quote is never melted" in v
               for v in a.violations), a.violations


@pytest.mark.parametrize("fee", [0, 100], ids=["fee0", "fee100"])
@pytest.mark.parametrize("damage", ["decided-behind-its-back", "inputs-released"])
def test_a_pending_melt_passes_only_while_the_mint_has_it_in_flight(
        make_mint: Callable[..., DevMint], tmp_path: Path, invoices: InvoiceMint, fee: int,
        damage: str) -> None:
    """A pending melt is a resting state: its inputs are PENDING at the mint and that
    is sound. It is caught once the mint has decided and the wallet still says pending,
    and when the wallet let go of the inputs while the payment is in flight."""
    mint = make_mint(input_fee_ppk=fee, fakewallet=PENDING).start()
    b = InProcessWallet(mint, tmp_path / "w", fund=1000)
    try:
        prepared = b.coco.melt.prepare_melt(b.url, invoices.invoice(100))
        op = b.coco.melt.execute_prepared_melt(prepared.id)
        assert op.state == "pending"
        a = b.audit()
        assert a.violations == [], a.summary()
        assert a.reserved == op.input_amount and (a.melted, a.ln_fees) == (0, 0)

        if damage == "decided-behind-its-back":
            mint.restart(SETTLED)   # paid, and the wallet is not told
            a = b.audit()
            assert any(f"melt {op.id} left pending but its quote is PAID" in v
                       for v in a.violations), a.violations
            assert any("is SPENT at the mint" in v for v in a.violations), a.violations
        else:
            b.coco._ledger.settle(op.moved(OpState.ROLLED_BACK),
                                  release=op.input_ys).get(timeout=TIMEOUT)
            a = b.audit()
            assert any(f"melt {op.id} rolled back but its quote is PENDING" in v
                       for v in a.violations), a.violations
            assert any("is PENDING at the mint" in v for v in a.violations), a.violations
    finally:
        b.close()
        b.client.close()


def _redeeming(crash_wallet: Callable[..., CrashWallet], mint: DevMint) -> tuple[
        CrashWallet, Hold, str]:
    """A wallet restarted with a paid quote left prepared: recovery hands it to the
    watcher, which redeems it; that request is held at the proxy (not forwarded)."""
    w = crash_wallet(mint, fund=100, watcher=True)
    quote = w.call("create_quote", url=w.url, amount=85)["quote"]
    w.crash()
    hold = w.proxy.hold(*MINT)
    w.restart()
    assert hold.wait(10), "the watcher did not redeem the quote"
    [op] = [o for o in w.call("open_ops") if o["quote_id"] == quote]
    assert op["state"] == "executing"
    return w, hold, op["id"]


def test_the_audit_waits_while_the_watcher_redeems(mint: DevMint,
                                                   crash_wallet: Callable[..., CrashWallet],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the 1,000-cycle campaign (seed 2395067987, fee 100, cycle 470: +85 sats,
    back at the next cycle): the watcher redeemed a quote that recovery left prepared
    while the audit took its snapshot, so the mint's answer was counted and the proofs
    were not yet stored. The audit now waits for the wallet to be at rest. Here the
    redeem's answer is held while the audit takes its first snapshot."""
    w, hold, op_id = _redeeming(crash_wallet, mint)
    hold.forward()         # the mint signed; the wallet has not seen the answer
    snapshots: list[dict[str, Any]] = []
    first = threading.Event()
    take = w.state

    def state() -> dict[str, Any]:
        snapshots.append(take())
        first.set()
        return snapshots[-1]

    monkeypatch.setattr(w, "state", state)
    result: dict[str, Any] = {}
    auditor = threading.Thread(target=lambda: result.update(audit=w.audit()))
    auditor.start()
    try:
        assert first.wait(10)   # taken while the redeem is in flight
    finally:
        hold.release()
        auditor.join(30)
    assert not auditor.is_alive()
    assert {o["id"]: o["state"] for o in snapshots[0]["open_ops"]}[op_id] == "executing"
    a = result["audit"]
    assert a.violations == [], a.summary()
    assert (a.minted, a.spendable) == (185, 185)
    assert a.states["mint:completed"] == 2


def test_an_audit_of_a_wallet_that_never_comes_to_rest_says_so(
        mint: DevMint, crash_wallet: Callable[..., CrashWallet]) -> None:
    """The audit's wait is bounded: a redeem held at the proxy keeps its operation
    executing, and the audit reports that after its deadline instead of hanging."""
    w, hold, op_id = _redeeming(crash_wallet, mint)
    started = time.monotonic()
    a = w.audit(timeout=1.0)
    assert 1.0 <= time.monotonic() - started < 10
    assert a.violations[0] == (f"the wallet did not come to rest within 1 s:"
                               f" mint {op_id} executing"), a.violations
    assert f"mint {op_id} left executing after recovery" in a.violations
    hold.release()         # the redeem goes through: now it comes to rest, sound
    a = w.audit()
    assert a.violations == [], a.violations
    assert (a.minted, a.spendable) == (185, 185)


# --- transfers: two mints' books and what crossed between them --------------------------------


class TransferBooks(InProcessWallet):
    """A funded wallet of two mints (each behind its own proxy) that moved 100 sats from
    the first to the second with one transfer."""

    def __init__(self, mint: DevMint, other: DevMint, data_dir: Path) -> None:
        super().__init__(mint, data_dir, fund=1000)
        self.other = OtherMint(other)
        self.coco.mints.add(self.other.url)
        t = self.coco.transfer.prepare(self.url, self.other.url, 100)
        self.done = self.coco.transfer.execute(t.id, timeout=30)
        assert (self.done.state, self.done.received) == ("completed", 100)

    def audit(self) -> Any:
        return audit_mints(self._commands(self.coco).state(), [
            MintBooks(self.url, self.proxy.seen(), self.faucet, self.recipient, self.quotes),
            MintBooks(self.other.url, self.other.proxy.seen(), self.other.faucet,
                      self.other.recipient, self.other.quotes)])

    def rewrite(self, op: Operation, **moves: Any) -> None:
        self.coco._ledger.settle(op, **moves).get(timeout=TIMEOUT)

    def records_at(self, url: str) -> list[ProofRecord]:
        return [r for r in self.coco._ledger.all_proof_records().get(timeout=TIMEOUT)
                if r.mint_url == url]

    def close(self) -> None:
        super().close()
        self.other.close()
        self.client.close()


@pytest.fixture
def transfer_books(mint: DevMint, mint_fee0: DevMint, mint_fee100: DevMint,
                   tmp_path: Path) -> Iterator[TransferBooks]:
    b = TransferBooks(mint, mint_fee100 if mint is mint_fee0 else mint_fee0, tmp_path / "w")
    yield b
    b.close()


def test_a_wallet_that_transferred_passes(transfer_books: TransferBooks) -> None:
    """Both mints' books balance: what the source melted arrived at the destination."""
    b = transfer_books
    a = b.audit()
    assert a.violations == [], a.summary()
    assert (a.transferred, a.arrived, a.melted) == (100, 100, 100)
    assert a.minted == 1000 + 100 and a.ln_fees == b.done.fee_paid == 1
    assert a.spendable == 1000 - b.done.fee - b.done.fee_paid  # 100 of it at the other mint
    assert a.states["transfer:completed"] == 1


def test_a_lost_proof_at_the_destination_is_value_not_conserved(
        transfer_books: TransferBooks) -> None:
    b = transfer_books
    victim = b.records_at(b.other.url)[0]
    bogus = Operation(id=new_operation_id(), type=OpType.RECEIVE, mint_url=b.other.url,
                      amount=1, state=OpState.COMPLETED)
    b.rewrite(bogus, spend=[victim.Y])
    a = b.audit()
    assert a.discrepancy == victim.amount
    assert any(v.startswith("value not conserved") for v in a.violations)


@pytest.mark.parametrize("damage", ["left-pending", "rolled-back", "wrong-received"])
def test_a_transfer_record_that_contradicts_its_legs_is_caught(
        transfer_books: TransferBooks, damage: str) -> None:
    """The melt paid and the value arrived, yet the transfer says it is still pending
    (its redeem left unresolved), rolled back, or that it received another amount."""
    b = transfer_books
    op = b.done
    if damage == "left-pending":
        b.rewrite(replace(op, state=OpState.PENDING))
        expected = "its melt paid and its redeem was left unresolved"
    elif damage == "rolled-back":
        b.rewrite(replace(op, state=OpState.ROLLED_BACK))
        expected = "rolled back, yet its legs did not"
    else:
        b.rewrite(replace(op, received=op.received + 1))
        expected = f"records received {op.received + 1}"
    a = b.audit()
    assert any(f"transfer {op.id}" in v and expected in v for v in a.violations), a.violations


def test_a_transfer_whose_destination_issued_nothing_is_caught(
        transfer_books: TransferBooks) -> None:
    """The source paid, but the proxy's record of the destination lost the redeem (as if
    the wallet had claimed the proofs without a mint request): what left never arrived."""
    b = transfer_books
    b.other.proxy.exchanges[:] = [e for e in b.other.proxy.exchanges
                                  if (e.method, e.path) != ("POST", "/v1/mint/bolt11")]
    a = b.audit()
    assert any("the melt paid 100, the destination issued 0" in v for v in a.violations)
    assert any("transfers took 100 from their sources, 0 arrived" in v for v in a.violations)
