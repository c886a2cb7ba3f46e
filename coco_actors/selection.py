"""Proof selection: pure functions over proof values, no actor, no IO.

The ProofLedger calls :func:`select_proofs` under its mailbox (that is what makes
selection and reservation one check-and-set); keeping the choice itself pure lets
it be tested without threads or a mint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from coco_actors.wire import Proof

#: The NUT-02 input fee of a set of proofs (the ledger knows each keyset's fee).
FeeOf = Callable[[Sequence[Proof]], int]


@dataclass(frozen=True, slots=True)
class Selection:
    """Proofs chosen for one operation, and what spending them costs."""

    proofs: tuple[Proof, ...]
    fee: int          # NUT-02 input fee of ``proofs`` (0 when no swap is needed)
    exact: bool       # the proofs add up to exactly the amount: no swap needed

    @property
    def total(self) -> int:
        return sum(p.amount for p in self.proofs)


def select_proofs(proofs: Sequence[Proof], amount: int, fee_of: FeeOf) -> Selection | None:
    """Choose proofs worth ``amount``, or None when ``proofs`` cannot cover it.

    An exact match comes first (no swap, so no fee). Otherwise the fewest large
    proofs that cover ``amount`` plus their own input fee, unless one single proof
    that covers it holds no more value (other operations may need the rest).
    """
    by_size = sorted(proofs, key=lambda p: p.amount, reverse=True)
    picked: list[Proof] = []
    left = amount
    for p in by_size:
        if p.amount <= left:
            picked.append(p)
            left -= p.amount
            if left == 0:
                return Selection(tuple(picked), fee=0, exact=True)
    single: Selection | None = None
    for p in reversed(by_size):  # the smallest single proof that covers amount + its fee
        fee = fee_of([p])
        if p.amount >= amount + fee:
            single = Selection((p,), fee=fee, exact=False)
            break
    picked, total = [], 0
    for p in by_size:
        picked.append(p)
        total += p.amount
        fee = fee_of(picked)
        if total >= amount + fee:
            many = Selection(tuple(picked), fee=fee, exact=False)
            return single if single is not None and single.total <= many.total else many
    return single
