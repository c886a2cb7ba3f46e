"""The melt's arithmetic, as pure functions (no mint): how many NUT-08 blanks, and the
input fee of the proofs a swap-then-melt makes."""

from __future__ import annotations

import pytest

from coco_actors.operations.melt import blank_count, melt_input_fee
from coco_actors.wire import split_amount


@pytest.mark.parametrize(("overpaid", "blanks"), [
    (0, 0), (1, 1), (2, 2), (3, 2), (26, 5), (100, 7), (127, 7), (128, 8)])
def test_enough_blanks_for_every_overpaid_sat(overpaid: int, blanks: int) -> None:
    assert blank_count(overpaid) == blanks
    # the mint returns the surplus in powers of two, one per blank: they must suffice
    assert len(split_amount(overpaid)) <= blank_count(overpaid)


@pytest.mark.parametrize(("amount", "ppk", "fee"), [
    (102, 0, 0),       # no fee
    (102, 100, 1),     # 103 = 64+32+4+2+1: 5 proofs x 100 ppk = 1 sat
    (52, 1000, 4),     # +3: 55 is 5 proofs (5 sat); +4: 56 = 32+16+8 is 3 proofs (3 sat)
    (1, 1000, 1),      # 2 = one proof: 1 sat
])
def test_the_swapped_melt_inputs_cover_their_own_fee(amount: int, ppk: int, fee: int) -> None:
    got = melt_input_fee(amount, ppk)
    def cost(f: int) -> int:
        return -(-len(split_amount(amount + f)) * ppk // 1000)
    assert cost(got) <= got                                   # the proofs pay their own fee
    assert all(cost(f) > f for f in range(got))               # and no smaller top-up would
    assert got == fee
