"""Proof selection (``coco_actors.selection``) as a pure function: no actor, no store, no mint.

Fees here are computed independently of ``fee_for``: NUT-02 says the fee of a set of
inputs is the sum of their keysets' ``input_fee_ppk``, divided by 1000 and rounded up.
"""

from __future__ import annotations

import itertools
import random
import secrets
from collections.abc import Sequence

import pytest

from coco_actors.selection import (
    Select,
    Selection,
    cover_proofs,
    inactive_first,
    select_for_melt,
    select_proofs,
)
from coco_actors.wire import Proof

#: A point on the curve; selection never looks at C.
C = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
#: Keyset ids, one per fee setting of the tests.
KEYSET_OF_PPK = {0: "00" + "aa" * 7, 100: "00" + "bb" * 7, 1000: "00" + "cc" * 7,
                 2500: "00" + "dd" * 7, 100_000: "00" + "ee" * 7}
PPK_OF_KEYSET = {k: ppk for ppk, k in KEYSET_OF_PPK.items()}

def proofs_of(amounts: Sequence[int], ppk: int = 0) -> list[Proof]:
    """Distinct proofs (each its own secret) of one keyset charging ``ppk``."""
    return [Proof(a, KEYSET_OF_PPK[ppk], secrets.token_hex(32), C) for a in amounts]


def nut02_fee(proofs: Sequence[Proof]) -> int:
    """ceil(sum of ppk / 1000), from the keyset of each proof."""
    total_ppk = sum(PPK_OF_KEYSET[p.keyset_id] for p in proofs)
    return -(-total_ppk // 1000)


def amounts(sel: Selection) -> list[int]:
    return sorted((p.amount for p in sel.proofs), reverse=True)


PPKS = [pytest.param(0, id="ppk0"), pytest.param(100, id="ppk100"),
        pytest.param(1000, id="ppk1000")]


def test_fee_helper_follows_nut02() -> None:
    """The independent fee used below, against the spec's own example (3 x 100 ppk = 1)."""
    assert nut02_fee([]) == 0
    assert nut02_fee(proofs_of([1, 1, 1], 100)) == 1
    assert nut02_fee(proofs_of([1] * 11, 100)) == 2
    assert nut02_fee(proofs_of([1, 1], 1000)) == 2
    assert nut02_fee([*proofs_of([1], 100), *proofs_of([1], 1000)]) == 2  # 1100 ppk


# --- exact matches -------------------------------------------------------------------------


@pytest.mark.parametrize("ppk", PPKS)
@pytest.mark.parametrize(("held", "amount", "chosen"), [
    ([1, 2, 4, 8, 16], 13, [8, 4, 1]),
    ([512, 256, 128, 64, 32, 8], 40, [32, 8]),
    ([512, 256, 128, 64, 32, 8], 1000, [512, 256, 128, 64, 32, 8]),
    ([4, 4, 4], 8, [4, 4]),
    ([64], 64, [64]),
])
def test_exact_match_is_chosen_and_costs_no_fee(held: list[int], amount: int,
                                                chosen: list[int], ppk: int) -> None:
    proofs = proofs_of(held, ppk)
    sel = select_proofs(proofs, amount, nut02_fee)
    assert sel is not None
    assert sel.exact is True
    assert sel.fee == 0
    assert sel.total == amount
    assert amounts(sel) == chosen


def test_exact_match_wins_over_a_single_larger_proof() -> None:
    """100 = 64 + 32 + 4 is spent as is (no swap) although one 128 would cover it."""
    sel = select_proofs(proofs_of([128, 64, 32, 4], 100), 100, nut02_fee)
    assert sel is not None
    assert (sel.exact, sel.fee, amounts(sel)) == (True, 0, [64, 32, 4])


# --- selections that need a swap -----------------------------------------------------------


@pytest.mark.parametrize(("ppk", "fee"), [(0, 0), (100, 1), (1000, 3)])
def test_several_inputs_cover_amount_and_their_own_fee(ppk: int, fee: int) -> None:
    # 64 + 32 + 16 = 112: no exact match for 100, and no single proof covers it
    sel = select_proofs(proofs_of([64, 32, 16], ppk), 100, nut02_fee)
    assert sel is not None
    assert (sel.exact, sel.fee, sel.total, amounts(sel)) == (False, fee, 112, [64, 32, 16])
    assert sel.total >= 100 + sel.fee


@pytest.mark.parametrize(("ppk", "chosen", "fee"), [
    (0, [64, 32, 8], 0),         # 104 >= 103
    (100, [64, 32, 8], 1),       # 104 >= 103 + 1
    (1000, [64, 32, 8, 8], 4),   # 104 < 103 + 3, so a fourth input: 112 >= 103 + 4
])
def test_the_fee_can_take_one_more_input(ppk: int, chosen: list[int], fee: int) -> None:
    # every proof is even and 103 is odd: never an exact match
    sel = select_proofs(proofs_of([64, 32, 8, 8], ppk), 103, nut02_fee)
    assert sel is not None
    assert (sel.exact, amounts(sel), sel.fee) == (False, chosen, fee)
    assert sel.total == sum(chosen)


@pytest.mark.parametrize(("ppk", "amount", "chosen", "fee"), [
    (0, 100, 128, 0),
    (100, 100, 128, 1),
    (1000, 100, 128, 1),
    (100, 127, 128, 1),     # 128 >= 127 + 1
    (1000, 127, 128, 1),
    (100, 129, 256, 1),     # the 128 no longer covers: the next one up
])
def test_the_smallest_single_covering_proof_is_preferred(ppk: int, amount: int, chosen: int,
                                                         fee: int) -> None:
    """Not the largest proof (other operations may need it), nor several small ones."""
    sel = select_proofs(proofs_of([512, 256, 128, 16, 8], ppk), amount, nut02_fee)
    assert sel is not None
    assert (sel.exact, amounts(sel), sel.fee) == (False, [chosen], fee)


def test_a_single_proof_that_does_not_cover_its_own_fee_is_passed_over() -> None:
    """At 2500 ppk one input costs 3 sat: a 10 cannot pay 8 + 3, the 16 can."""
    sel = select_proofs(proofs_of([16, 10], 2500), 8, nut02_fee)
    assert sel is not None
    assert (sel.exact, amounts(sel), sel.fee) == (False, [16], 3)


def test_a_large_proof_that_costs_more_than_it_holds_is_left_out() -> None:
    """Mixed keysets: the 50 (100 sat fee) covers nothing, with or without the 12;
    the 12 alone (no fee) covers 11."""
    proofs = [*proofs_of([50], 100_000), *proofs_of([12], 0)]
    sel = select_proofs(proofs, 11, nut02_fee)
    assert sel is not None
    assert (sel.exact, amounts(sel), sel.fee) == (False, [12], 0)


# --- nothing covers ------------------------------------------------------------------------


@pytest.mark.parametrize(("held", "amount", "ppk"), [
    ([], 1, 0),
    ([64, 32], 97, 0),          # 96 < 97
    ([64, 32, 4], 98, 1000),    # 100 < 98 + 3, and no subset makes 98 exactly
    ([2, 2, 2], 5, 1000),       # three: 6 < 5 + 3; two: 4 < 5; odd 5 is never exact
    ([10], 8, 2500),            # the one proof cannot pay its own 3 sat fee
])
def test_none_when_amount_plus_fee_cannot_be_covered(held: list[int], amount: int,
                                                     ppk: int) -> None:
    assert select_proofs(proofs_of(held, ppk), amount, nut02_fee) is None


def test_the_same_proofs_cover_with_a_lower_fee() -> None:
    """The set that cannot pay 98 at 1000 ppk pays it at 100 ppk and at 0."""
    assert select_proofs(proofs_of([64, 32, 4], 1000), 98, nut02_fee) is None
    for ppk, fee in ((100, 1), (0, 0)):
        sel = select_proofs(proofs_of([64, 32, 4], ppk), 98, nut02_fee)
        assert sel is not None
        assert (sel.total, sel.fee, sel.exact) == (100, fee, False)


# --- properties over many random proof sets ------------------------------------------------


def _random_case(rng: random.Random) -> tuple[list[Proof], int, bool, bool]:
    """(proofs, amount, powers of two only, one keyset only)."""
    n = rng.randint(0, 9)
    powers = rng.random() < 0.7
    uniform = rng.random() < 0.7
    ppk = rng.choice(list(KEYSET_OF_PPK))
    proofs = []
    for _ in range(n):
        amount = 2 ** rng.randint(0, 7) if powers else rng.randint(1, 100)
        proofs.extend(proofs_of([amount], ppk if uniform else rng.choice(list(KEYSET_OF_PPK))))
    top = sum(p.amount for p in proofs) + 10
    return proofs, rng.randint(1, top), powers, uniform or n <= 1


def _subsets(proofs: Sequence[Proof]) -> list[tuple[Proof, ...]]:
    return [c for n in range(len(proofs) + 1) for c in itertools.combinations(proofs, n)]


def test_selection_properties_over_random_proof_sets() -> None:
    rng = random.Random(20240610)
    seen = {"exact": 0, "swap": 0, "none": 0}
    for case in range(600):
        proofs, amount, powers, uniform = _random_case(rng)
        sel = select_proofs(proofs, amount, nut02_fee)
        where = f"case {case}: {sorted(p.amount for p in proofs)} for {amount}"
        subsets = _subsets(proofs)
        exact_exists = any(sum(p.amount for p in s) == amount for s in subsets)
        if sel is None:
            seen["none"] += 1
            # not even everything pays amount + the fee of everything
            assert sum(p.amount for p in proofs) < amount + nut02_fee(proofs), where
            if uniform:  # one keyset: no subset at all pays amount + its own fee
                assert not any(sum(p.amount for p in s) >= amount + nut02_fee(s)
                               for s in subsets), where
            if powers:   # and no exact match was missed
                assert not exact_exists, where
            continue
        chosen_ids = [id(p) for p in sel.proofs]
        assert len(set(chosen_ids)) == len(chosen_ids), where          # no proof twice
        assert set(chosen_ids) <= {id(p) for p in proofs}, where         # only what is held
        assert sel.exact == (sel.total == amount), where
        assert sel.total == sum(p.amount for p in sel.proofs), where
        if sel.exact:
            seen["exact"] += 1
            assert sel.fee == 0, where
        else:
            seen["swap"] += 1
            assert sel.fee == nut02_fee(sel.proofs), where
            assert sel.total >= amount + sel.fee, where
            if powers:  # with powers of two an exact match, if any, is always found
                assert not exact_exists, where
            singles = [p.amount for p in proofs if p.amount >= amount + nut02_fee([p])]
            if singles:  # one proof covers: the smallest such one, alone
                assert (len(sel.proofs), sel.total) == (1, min(singles)), where
    # the loop exercised every outcome (a change to the generator must not hollow it out)
    assert min(seen.values()) >= 50, seen


# --- melts: inputs pay their own fee, an exact set leaves nothing to change back ------------


@pytest.mark.parametrize(("ppk", "held", "target", "chosen", "fee"), [
    (0, [64, 32, 16, 8, 4, 2, 1], 102, [64, 32, 4, 2], 0),      # 100 + reserve 2, no fee
    (100, [64, 32, 16, 8, 4, 2, 1], 102, [64, 32, 4, 2, 1], 1),  # one more sat for the fee
    (1000, [64, 32, 16, 8, 4, 2, 1], 50, [32, 16, 4, 2], 4),     # 50 + 4 inputs x 1 sat
])
def test_melt_exact_set_covers_target_and_its_own_fee(ppk: int, held: list[int], target: int,
                                                      chosen: list[int], fee: int) -> None:
    sel = select_for_melt(proofs_of(held, ppk), target, nut02_fee)
    assert sel is not None and sel.exact
    assert (amounts(sel), sel.fee) == (chosen, fee)
    assert sel.total == target + nut02_fee(sel.proofs)


@pytest.mark.parametrize("ppk", PPKS)
def test_melt_without_an_exact_set_covers_and_the_surplus_is_change(ppk: int) -> None:
    sel = select_for_melt(proofs_of([128, 128], ppk), 102, nut02_fee)
    assert sel is not None and not sel.exact
    assert amounts(sel) == [128]
    assert sel.fee == nut02_fee(sel.proofs)
    assert sel.total - 102 - sel.fee == 26 - sel.fee  # what NUT-08 gives back


def test_melt_selection_is_none_when_the_fee_cannot_be_covered() -> None:
    assert select_for_melt(proofs_of([64, 32, 4, 2], 100), 102, nut02_fee) is None
    assert select_for_melt([], 1, nut02_fee) is None


def test_cover_never_takes_the_exact_shortcut() -> None:
    """For a swap that must happen (a swap-then-melt): the swap's own fee is covered."""
    held = proofs_of([64, 32, 4, 2, 1], 100)
    assert select_proofs(held, 102, nut02_fee) is not None
    assert select_proofs(held, 102, nut02_fee).exact  # type: ignore[union-attr]
    sel = cover_proofs(held, 102, nut02_fee)  # 103 in: 102 out plus the swap's fee of 1
    assert sel is not None and not sel.exact and sel.total == 103 and sel.fee == 1
    assert cover_proofs(proofs_of([64, 32, 4, 2], 100), 102, nut02_fee) is None
    sel = cover_proofs(proofs_of([128, 64], 100), 102, nut02_fee)
    assert sel is not None and not sel.exact and amounts(sel) == [128] and sel.fee == 1


def test_melt_selection_properties_over_random_proof_sets() -> None:
    rng = random.Random(11)
    seen = {"exact": 0, "cover": 0, "none": 0}
    for _ in range(400):
        ppk = rng.choice([0, 100, 1000])
        held = proofs_of([2 ** rng.randint(0, 7) for _ in range(rng.randint(0, 9))], ppk)
        target = rng.randint(1, 300)
        sel = select_for_melt(held, target, nut02_fee)
        if sel is None:
            seen["none"] += 1
            assert sum(p.amount for p in held) < target + nut02_fee(held)
            continue
        assert sel.fee == nut02_fee(sel.proofs)
        assert sel.total >= target + sel.fee
        assert sel.exact == (sel.total == target + sel.fee)
        seen["exact" if sel.exact else "cover"] += 1
    assert min(seen.values()) >= 30, seen


# --- keysets over time: proofs of inactive keysets are spent first ------------------------

OLD = "00" + "0d" * 7
NEW = "00" + "0e" * 7


def _of(keyset_id: str, amounts: Sequence[int]) -> list[Proof]:
    return [Proof(a, keyset_id, secrets.token_hex(32), C) for a in amounts]


@pytest.mark.parametrize("select", [select_proofs, cover_proofs, select_for_melt])
def test_inactive_proofs_alone_are_chosen_when_they_cover(select: Select) -> None:
    old, new = _of(OLD, [8, 4, 2]), _of(NEW, [16, 8, 4, 2])
    pick = inactive_first(select, frozenset({OLD}))(new + old, 10, lambda ps: 0)
    assert pick is not None
    assert {p.keyset_id for p in pick.proofs} == {OLD}
    assert pick.total >= 10
    # without the rule the larger active proofs would do it
    plain = select(new + old, 10, lambda ps: 0)
    assert plain is not None and NEW in {p.keyset_id for p in plain.proofs}


def test_when_inactive_proofs_fall_short_all_are_considered_old_first() -> None:
    old, new = _of(OLD, [4]), _of(NEW, [4, 16])
    pick = inactive_first(select_proofs, frozenset({OLD}))(new + old, 8, lambda ps: 0)
    assert pick is not None and pick.exact
    assert sorted(p.keyset_id for p in pick.proofs) == [OLD, NEW]  # old 4 before new 4
    assert inactive_first(select_proofs, frozenset({OLD}))(old, 8, lambda ps: 0) is None


def test_no_inactive_keyset_leaves_the_rule_as_it_is() -> None:
    assert inactive_first(select_proofs, frozenset()) is select_proofs
