"""The plain ``ProofLedger`` class over a real ``Store`` in a temporary directory.

No actor and no mint: the ledger's methods are called directly on the test's thread, and
every balance is checked to the sat, then again after the store is closed and reopened
(the ledger keeps everything in memory, so a reload is the check that it also committed).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.errors import InsufficientFundsError, InvalidStateError, NotFoundError
from coco_actors.proof_ledger import MintBalance, ProofLedger
from coco_actors.records import (
    MintRecord,
    Operation,
    OpState,
    OpType,
    ProofStatus,
    new_operation_id,
)
from coco_actors.selection import select_for_melt
from coco_actors.store import Store
from coco_actors.wire import BlindingData, Keyset, Proof, split_amount

URL = "http://127.0.0.1:3338"
OTHER = "http://127.0.0.1:3339"
KEYSET = Keyset(id="00" + "ab" * 7, unit="sat", keys={}, input_fee_ppk=100)
OTHER_KEYSET = Keyset(id="00" + "cd" * 7, unit="sat", keys={}, input_fee_ppk=0)
C = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"


def proofs(*amounts: int, keyset: Keyset = KEYSET) -> list[Proof]:
    return [Proof(a, keyset.id, secrets.token_hex(32), C) for a in amounts]


def amounts_of(ps: tuple[Proof, ...] | list[Proof]) -> list[int]:
    return sorted((p.amount for p in ps), reverse=True)


def ys(ps: list[Proof]) -> list[str]:
    return [secret_to_y(p.secret) for p in ps]


def operation(op_type: OpType, state: OpState, amount: int = 0, mint_url: str = URL,
              **fields: object) -> Operation:
    return Operation(id=new_operation_id(), type=op_type, mint_url=mint_url, amount=amount,
                     state=state, **fields)  # type: ignore[arg-type]


def output(amount: int) -> BlindingData:
    return BlindingData(amount=amount, keyset_id=KEYSET.id, secret=secrets.token_hex(32),
                        r="11" * 32, B_=C)


class Books:
    """A store and its ledger; ``reopen()`` closes both and loads a fresh ledger."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = Store(path)
        self.ledger = ProofLedger(self.store)

    def reopen(self) -> ProofLedger:
        self.store.close()
        self.store = Store(self.path)
        self.ledger = ProofLedger(self.store)
        return self.ledger

    def now_and_reopened(self) -> Iterator[ProofLedger]:
        """The ledger as it is, then a fresh one loaded from the reopened store."""
        yield self.ledger
        yield self.reopen()


@pytest.fixture
def books(tmp_path: Path) -> Iterator[Books]:
    b = Books(tmp_path / "w")
    b.ledger.add_mint(MintRecord(URL, added_at=1), [KEYSET])
    yield b
    b.store.close()


def receive(ledger: ProofLedger, *amounts: int, mint_url: str = URL) -> list[Proof]:
    """A completed receive that adds ``amounts`` as spendable proofs."""
    got = proofs(*amounts)
    ledger.settle(operation(OpType.RECEIVE, OpState.COMPLETED, sum(amounts), mint_url),
                  add=got)
    return got


# --- mints, keysets, fees ------------------------------------------------------------------


def test_mints_and_keysets_survive_a_reopen(books: Books) -> None:
    ledger = books.ledger
    ledger.add_mint(MintRecord(OTHER, added_at=2), [OTHER_KEYSET])
    ledger.add_mint(MintRecord(URL, name="renamed", added_at=3), [])  # known: record kept
    for view in books.now_and_reopened():
        assert [(m.url, m.name) for m in view.mints()] == [(URL, None), (OTHER, None)]
        assert view.keysets(URL) == [KEYSET]
        assert view.keysets(OTHER) == [OTHER_KEYSET]
        assert view.balances() == {URL: MintBalance(), OTHER: MintBalance()}
    with pytest.raises(NotFoundError):
        books.ledger.keysets("http://127.0.0.1:9")


@pytest.mark.parametrize(("n", "fee"), [(0, 0), (1, 1), (10, 1), (11, 2), (25, 3)])
def test_input_fee_is_the_keysets_ppk_rounded_up_once(books: Books, n: int, fee: int) -> None:
    # 100 ppk per input: ceil(n * 100 / 1000)
    assert books.ledger.input_fee(URL, proofs(*[1] * n)) == fee


def test_input_fee_sums_keysets_before_rounding(books: Books) -> None:
    books.ledger.add_mint(MintRecord(URL), [replace(OTHER_KEYSET, input_fee_ppk=950)])
    mixed = [*proofs(1), *proofs(1, keyset=OTHER_KEYSET)]   # 100 + 950 ppk: 2 sat, not 1 + 1
    assert books.ledger.input_fee(URL, mixed) == 2
    assert books.ledger.input_fee(URL, proofs(1, keyset=OTHER_KEYSET)) == 1
    unknown = Keyset(id="00" + "ef" * 7, unit="sat")
    assert books.ledger.input_fee(URL, proofs(4, keyset=unknown)) == 0   # no keyset, no fee


# --- counters ------------------------------------------------------------------------------


def test_counters_are_handed_out_once_and_never_move_back(books: Books) -> None:
    ledger = books.ledger
    assert ledger.counter(KEYSET.id) == 0
    assert ledger.allocate_counters(KEYSET.id, 3) == 0      # 0, 1, 2
    assert ledger.allocate_counters(KEYSET.id, 2) == 3      # 3, 4
    assert ledger.counter(KEYSET.id) == 5
    assert ledger.raise_counter(KEYSET.id, 4) == 5          # a restore never moves it back
    assert ledger.counter(KEYSET.id) == 5
    assert ledger.raise_counter(KEYSET.id, 9) == 9
    assert ledger.allocate_counters(OTHER_KEYSET.id, 1) == 0  # one counter per keyset

    # taken counters are persisted by the next commit (which carries the outputs made
    # from them, before any request uses them); a crash before it forgets them safely
    ledger = books.reopen()
    assert (ledger.counter(KEYSET.id), ledger.counter(OTHER_KEYSET.id)) == (9, 0)
    assert ledger.allocate_counters(OTHER_KEYSET.id, 2) == 0
    ledger.commit(operation(OpType.SEND, OpState.PREPARED, amount=1))
    ledger = books.reopen()
    assert (ledger.counter(KEYSET.id), ledger.counter(OTHER_KEYSET.id)) == (9, 2)
    assert ledger.allocate_counters(KEYSET.id, 1) == 9


# --- proofs: settle and balances -----------------------------------------------------------


def test_settle_adds_spendable_proofs_and_keeps_only_open_operations(books: Books) -> None:
    ledger = books.ledger
    version = ledger.signal.version
    got = proofs(1, 2, 4, 8)
    op = operation(OpType.RECEIVE, OpState.COMPLETED, 15)
    assert ledger.settle(op, add=got) == op
    assert ledger.signal.version == version + 1          # waiters for change are woken
    for view in books.now_and_reopened():
        assert view.balances() == {URL: MintBalance(spendable=15)}
        records = {r.Y: r for r in view.all_proof_records()}
        assert set(records) == set(ys(got))
        assert {(r.proof, r.status, r.operation_id, r.mint_url) for r in records.values()} == {
            (p, ProofStatus.READY, None, URL) for p in got}
        assert view.operations() == []                   # a completed one is not open
        assert view.get_operation(op.id) == op           # but it is on record
        assert [h.operation_id for h in books.store.history()] == [op.id]


def test_hold_then_release_returns_the_proofs(books: Books) -> None:
    ledger = books.ledger
    receive(ledger, 16, 32)
    held = proofs(4, 8)
    op = operation(OpType.SEND, OpState.PREPARED, 10)
    version = ledger.signal.version
    ledger.settle(op, hold=held)                          # reserved for op, as restored change
    assert ledger.signal.version == version               # nothing became spendable
    assert ledger.balances() == {URL: MintBalance(spendable=48, reserved=12)}
    assert sorted(p.amount for p in ledger.proofs_of(op.id)) == [4, 8]
    assert ledger.operations() == [op]
    assert ledger.operations(op_type=OpType.RECEIVE) == []
    assert books.reopen().balances() == {URL: MintBalance(spendable=48, reserved=12)}

    ledger = books.ledger
    version = ledger.signal.version
    stranger = operation(OpType.SEND, OpState.ROLLED_BACK, 1)
    ledger.settle(stranger, release=ys(held))             # not its proofs: nothing moves
    assert ledger.balances() == {URL: MintBalance(spendable=48, reserved=12)}
    assert ledger.signal.version == version

    done = ledger.settle(op.moved(OpState.ROLLED_BACK), release=ys(held))
    assert ledger.signal.version == version + 1
    assert ledger.balances() == {URL: MintBalance(spendable=60)}
    assert ledger.proofs_of(op.id) == []
    assert ledger.operations() == []
    assert books.reopen().get_operation(op.id) == done
    assert books.ledger.balances() == {URL: MintBalance(spendable=60)}


def test_a_send_moves_value_from_reserved_to_pending_and_out(books: Books) -> None:
    """The balance of one send at each stage, by settle alone: held inputs, then the
    inputs spent with change added and the token's proofs pending, then claimed."""
    ledger = books.ledger
    receive(ledger, 64)
    inputs = proofs(128)
    op = operation(OpType.SEND, OpState.PREPARED, 100, fee=1, input_amount=128)
    ledger.settle(op, hold=inputs)
    assert ledger.balances() == {URL: MintBalance(spendable=64, reserved=128)}

    sent, change = proofs(64, 32, 4), proofs(16, 8, 2, 1)   # 100 out, 27 back, 1 fee
    pending = ledger.settle(op.moved(OpState.PENDING, send_proofs=tuple(sent)),
                            spend=ys(inputs), add=change)
    for view in books.now_and_reopened():
        assert view.balances() == {URL: MintBalance(spendable=91, pending=100)}
        assert view.balances()[URL].total == 191
        assert view.operations() == [pending]

    books.ledger.settle(pending.moved(OpState.COMPLETED))
    assert books.ledger.balances() == {URL: MintBalance(spendable=91)}
    assert books.reopen().balances() == {URL: MintBalance(spendable=91)}


def test_balances_are_per_mint(books: Books) -> None:
    ledger = books.ledger
    ledger.add_mint(MintRecord(OTHER, added_at=2), [OTHER_KEYSET])
    receive(ledger, 8, 2)
    receive(ledger, 5, mint_url=OTHER)
    assert ledger.balances() == {URL: MintBalance(spendable=10), OTHER: MintBalance(spendable=5)}


# --- operations ----------------------------------------------------------------------------


def test_commit_persists_an_operation_without_moving_proofs(books: Books) -> None:
    ledger = books.ledger
    receive(ledger, 32)
    op = operation(OpType.MINT, OpState.PREPARED, 500, quote_id="q1")
    assert ledger.commit(op) == op
    assert ledger.get_operation(op.id) == op
    assert ledger.balances() == {URL: MintBalance(spendable=32)}
    assert books.reopen().operations(op_type=OpType.MINT) == [op]
    assert books.ledger.get_operation("0" * 32) is None


def test_delete_operation_releases_what_it_held_and_forgets_it(books: Books) -> None:
    ledger = books.ledger
    receive(ledger, 16)
    held = proofs(8, 2)
    op = operation(OpType.SEND, OpState.INIT, 9)
    ledger.settle(op, hold=held)
    assert ledger.balances() == {URL: MintBalance(spendable=16, reserved=10)}
    version = ledger.signal.version

    ledger.delete_operation(op.id)
    assert ledger.signal.version == version + 1
    for view in books.now_and_reopened():
        assert view.balances() == {URL: MintBalance(spendable=26)}
        assert view.get_operation(op.id) is None
        assert view.operations() == []
        assert {r.Y: r.status for r in view.all_proof_records()
                if r.Y in ys(held)} == {y: ProofStatus.READY for y in ys(held)}
    assert op.id not in [h.operation_id for h in books.store.history()]
    books.ledger.delete_operation(op.id)                  # gone already: nothing happens
    assert books.ledger.balances() == {URL: MintBalance(spendable=26)}


# --- what a restore must not add -----------------------------------------------------------


def test_known_ys_cover_held_proofs_tokens_and_expected_outputs(books: Books) -> None:
    ledger = books.ledger
    ledger.add_mint(MintRecord(OTHER, added_at=2), [OTHER_KEYSET])
    spendable = receive(ledger, 4)
    reserved = proofs(8)
    outs, reclaim = [output(2), output(1)], [output(16)]
    sent = proofs(16)
    open_send = operation(OpType.SEND, OpState.PENDING, 16, send_proofs=tuple(sent),
                          outputs=tuple(outs), reclaim_outputs=tuple(reclaim))
    ledger.settle(open_send, hold=reserved)
    elsewhere = receive(ledger, 32, mint_url=OTHER)
    finished = operation(OpType.SEND, OpState.COMPLETED, 64, send_proofs=tuple(proofs(64)),
                         outputs=(output(64),))
    ledger.settle(finished)

    expected = {*ys(spendable), *ys(reserved), *ys(sent),
                *(secret_to_y(o.secret) for o in (*outs, *reclaim))}
    for view in books.now_and_reopened():
        assert view.known_ys(URL) == expected             # not the finished send's outputs
        assert view.known_ys(OTHER) == set(ys(elsewhere))


# --- holds: in memory until the operation's next commit ------------------------------------


def _count_swap(amount: int, change: int) -> int:
    return len(split_amount(amount)) + len(split_amount(change))


def test_a_hold_is_in_memory_until_the_operation_commits(books: Books) -> None:
    ledger = books.ledger
    receive(ledger, 8, 4, 2)
    op = operation(OpType.SEND, OpState.INIT, amount=5)
    sel, start = ledger.hold(op.id, URL, 5, keyset_id=KEYSET.id, outputs_for=_count_swap)
    assert amounts_of(sel.proofs) == [8] and sel.fee == 1 and not sel.exact
    assert start == 0 and ledger.counter(KEYSET.id) == 3   # 5 = 4+1 sent, 2 kept: 3 outputs
    assert ledger.balances()[URL] == MintBalance(spendable=6, reserved=8)
    assert books.reopen().balances()[URL] == MintBalance(spendable=14)  # nothing written yet
    assert books.ledger.counter(KEYSET.id) == 0

    ledger = books.ledger
    op = operation(OpType.SEND, OpState.INIT, amount=5)
    sel, _ = ledger.hold(op.id, URL, 5, keyset_id=KEYSET.id, outputs_for=_count_swap)
    ledger.commit(replace(op, state=OpState.PREPARED, input_ys=tuple(ys(list(sel.proofs)))))
    reopened = books.reopen()
    assert reopened.balances()[URL] == MintBalance(spendable=6, reserved=8)
    assert reopened.proofs_of(op.id) == list(sel.proofs)
    assert reopened.counter(KEYSET.id) == 3


def test_a_hold_that_is_abandoned_is_released(books: Books) -> None:
    ledger = books.ledger
    receive(ledger, 8, 4)
    op = operation(OpType.SEND, OpState.INIT, amount=4)
    sel, _ = ledger.hold(op.id, URL, 4, keyset_id=KEYSET.id, outputs_for=_count_swap)
    assert sel.exact and ledger.balances()[URL] == MintBalance(spendable=8, reserved=4)
    ledger.delete_operation(op.id)
    assert ledger.balances()[URL] == MintBalance(spendable=12)
    assert ledger.get_operation(op.id) is None


def test_change_of_a_send_not_committed_yet_counts_as_coming_back(books: Books) -> None:
    """Eight payers at once: a send whose hold is still in memory will give change back,
    so the next one is told to wait (``may_wait``) rather than that the funds are gone."""
    ledger = books.ledger
    receive(ledger, 64, 8)
    first = operation(OpType.SEND, OpState.INIT, amount=16)
    sel, _ = ledger.hold(first.id, URL, 16, keyset_id=KEYSET.id, outputs_for=_count_swap,
                         gives_change=True)
    assert amounts_of(sel.proofs) == [64] and sel.fee == 1   # 47 change to come
    with pytest.raises(InsufficientFundsError) as waiting:
        ledger.hold(new_operation_id(), URL, 16, keyset_id=KEYSET.id, outputs_for=_count_swap)
    assert waiting.value.may_wait and waiting.value.available == 8
    # a hold that is not a send's (a melt's) promises nothing
    ledger.delete_operation(first.id)
    melt = operation(OpType.MELT, OpState.INIT, amount=16)
    ledger.hold(melt.id, URL, 16, keyset_id=KEYSET.id, outputs_for=_count_swap)
    with pytest.raises(InsufficientFundsError) as gone:
        ledger.hold(new_operation_id(), URL, 16, keyset_id=KEYSET.id, outputs_for=_count_swap)
    assert not gone.value.may_wait
    # once the send commits, its record says the same; once released, nothing is owed
    ledger.delete_operation(melt.id)
    sel, _ = ledger.hold(first.id, URL, 16, keyset_id=KEYSET.id, outputs_for=_count_swap,
                         gives_change=True)
    ledger.commit(replace(first, state=OpState.PREPARED, fee=sel.fee,
                          input_ys=tuple(ys(list(sel.proofs)))))
    with pytest.raises(InsufficientFundsError) as committed:
        ledger.hold(new_operation_id(), URL, 16, keyset_id=KEYSET.id, outputs_for=_count_swap)
    assert committed.value.may_wait
    ledger.delete_operation(first.id)
    assert ledger.balances()[URL] == MintBalance(spendable=72)


def test_an_invoice_is_never_held_twice_and_a_rolled_back_melt_frees_it(books: Books) -> None:
    ledger = books.ledger
    receive(ledger, 64, 64, 64)
    first = operation(OpType.MELT, OpState.INIT, amount=50, payment_hash="aa" * 32)
    ledger.hold(first.id, URL, 52, keyset_id=KEYSET.id, outputs_for=lambda a, c: 0,
                select=select_for_melt, invoice="aa" * 32)
    assert ledger.invoice_owner("aa" * 32) == first.id
    second = operation(OpType.MELT, OpState.INIT, amount=50, payment_hash="aa" * 32)
    with pytest.raises(InvalidStateError):
        ledger.hold(second.id, URL, 52, keyset_id=KEYSET.id, outputs_for=lambda a, c: 0,
                    select=select_for_melt, invoice="aa" * 32)
    assert ledger.balances()[URL] == MintBalance(spendable=128, reserved=64)  # unchanged
    prepared = replace(first, state=OpState.PREPARED)
    ledger.commit(prepared)
    assert books.reopen().invoice_owner("aa" * 32) == first.id  # kept across a restart
    ledger = books.ledger
    ledger.settle(replace(prepared, state=OpState.ROLLED_BACK),
                  release=tuple(ys(ledger.proofs_of(first.id))))
    assert ledger.invoice_owner("aa" * 32) is None
    assert books.reopen().invoice_owner("aa" * 32) is None
    assert books.ledger.balances()[URL] == MintBalance(spendable=192)


def test_a_completed_melt_keeps_its_invoice_for_good(books: Books) -> None:
    ledger = books.ledger
    receive(ledger, 64)
    melt = operation(OpType.MELT, OpState.INIT, amount=60, payment_hash="bb" * 32)
    sel, _ = ledger.hold(melt.id, URL, 62, keyset_id=KEYSET.id, outputs_for=lambda a, c: 0,
                         select=select_for_melt, invoice="bb" * 32)
    done = replace(melt, state=OpState.COMPLETED, input_ys=tuple(ys(list(sel.proofs))))
    ledger.settle(done, spend=done.input_ys)
    assert books.reopen().invoice_owner("bb" * 32) == melt.id
    assert books.ledger.balances()[URL] == MintBalance()
