"""The consolidation plan (``operations.consolidate.plan``): a pure function, tested without
a mint. Fees are NUT-02's (per-input ppk summed, rounded up once)."""

from __future__ import annotations

from collections.abc import Sequence

from coco_actors.crypto.keysets import fee_for
from coco_actors.operations.consolidate import (
    FEE_TOO_HIGH,
    NO_PROOFS,
    NOTHING_TO_GAIN,
    WORTHLESS,
    ConsolidationRule,
    plan,
)
from coco_actors.wire import Keyset, Proof

C = "02" + "11" * 32
ACTIVE = Keyset(id="00" + "aa" * 7, unit="sat", active=True, input_fee_ppk=100)
OLD = Keyset(id="00" + "bb" * 7, unit="sat", active=False, input_fee_ppk=100,
             final_expiry=2_000)
OLDER = Keyset(id="00" + "cc" * 7, unit="sat", active=False, input_fee_ppk=100,
               final_expiry=1_000)
NO_EXPIRY = Keyset(id="00" + "dd" * 7, unit="sat", active=False, input_fee_ppk=0)
USD = Keyset(id="00" + "ee" * 7, unit="usd", active=True)
KEYSETS = {k.id: k for k in (ACTIVE, OLD, OLDER, NO_EXPIRY, USD)}


def proofs(keyset: Keyset, *amounts: int) -> list[Proof]:
    return [Proof(amount=a, keyset_id=keyset.id, secret=f"{keyset.id}-{i}-{a}", C=C)
            for i, a in enumerate(amounts)]


def fee_of(ps: Sequence[Proof]) -> int:
    return fee_for(KEYSETS[p.keyset_id].input_fee_ppk for p in ps)


def test_many_small_proofs_into_the_binary_split_of_total_minus_fee() -> None:
    made = plan(proofs(ACTIVE, *[1] * 30), KEYSETS, "sat", fee_of, ConsolidationRule())
    assert made.skipped is None and made.fee == 3 and made.total == 30
    assert made.outputs == (1, 2, 8, 16)          # 27


def test_inactive_first_soonest_expiry_then_the_smallest_up_to_the_cap() -> None:
    mine = proofs(ACTIVE, 8, 1, 4, 2) + proofs(OLD, 16) + proofs(OLDER, 32)
    made = plan(mine, KEYSETS, "sat", fee_of, ConsolidationRule(max_inputs=4))
    assert [(p.keyset_id, p.amount) for p in made.proofs] == [
        (OLDER.id, 32), (OLD.id, 16), (ACTIVE.id, 1), (ACTIVE.id, 2)]


def test_skips_nothing_to_gain_unless_a_proof_changes_keyset() -> None:
    fewest = proofs(ACTIVE, 16, 8, 4)
    assert plan(fewest, KEYSETS, "sat", fee_of, ConsolidationRule()).skipped == NOTHING_TO_GAIN
    moved = plan(proofs(OLD, 16), KEYSETS, "sat", fee_of, ConsolidationRule())
    assert moved.skipped is None and moved.outputs == (1, 2, 4, 8)   # 16 - 1


def test_skips_a_fee_above_the_fraction_and_worthless_dust() -> None:
    dust = proofs(ACTIVE, *[1] * 10)               # fee 1 of 10
    assert plan(dust, KEYSETS, "sat", fee_of,
                ConsolidationRule(max_fee_fraction=0.05)).skipped == FEE_TOO_HIGH
    assert plan(dust, KEYSETS, "sat", fee_of,
                ConsolidationRule(max_fee_fraction=0.1)).skipped is None
    assert plan(proofs(OLD, 1), KEYSETS, "sat", fee_of,
                ConsolidationRule(max_fee_fraction=None)).skipped == WORTHLESS
    assert plan([], KEYSETS, "sat", fee_of, ConsolidationRule()).skipped == NO_PROOFS


def test_only_inactive_and_expiring_by_and_only_the_unit_asked() -> None:
    mine = (proofs(ACTIVE, *[1] * 20) + proofs(OLD, 4) + proofs(OLDER, 8)
            + proofs(NO_EXPIRY, 2) + proofs(USD, *[1] * 20))
    every = plan(mine, KEYSETS, "sat", fee_of, ConsolidationRule(only_inactive=True))
    assert sorted(p.amount for p in every.proofs) == [2, 4, 8]
    soon = plan(mine, KEYSETS, "sat", fee_of,
                ConsolidationRule(only_inactive=True, expires_by=1_500, max_fee_fraction=None))
    assert [p.amount for p in soon.proofs] == [8]
    usd = plan(mine, KEYSETS, "usd", fee_of, ConsolidationRule())
    assert {p.keyset_id for p in usd.proofs} == {USD.id} and usd.outputs == (4, 16)
