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


#: A selection rule, as the ProofLedger applies it: (proofs, amount, fee_of) -> choice.
Select = Callable[[Sequence[Proof], int, FeeOf], "Selection | None"]


def select_proofs(proofs: Sequence[Proof], amount: int, fee_of: FeeOf) -> Selection | None:
    """Choose proofs worth ``amount`` for a swap, or None when ``proofs`` cannot cover it.

    An exact match comes first (no swap, so no fee). Otherwise the fewest large
    proofs that cover ``amount`` plus their own input fee, unless one single proof
    that covers it holds no more value (other operations may need the rest).
    """
    by_size = sorted(proofs, key=lambda p: p.amount, reverse=True)
    exact = _exact(by_size, amount)
    if exact is not None:
        return Selection(exact, fee=0, exact=True)
    return _cover(by_size, amount, fee_of)


def cover_proofs(proofs: Sequence[Proof], amount: int, fee_of: FeeOf) -> Selection | None:
    """Proofs that cover ``amount`` plus their own input fee, never an exact shortcut
    (for a swap that must happen, e.g. a swap-then-melt)."""
    return _cover(sorted(proofs, key=lambda p: p.amount, reverse=True), amount, fee_of)


def select_for_melt(proofs: Sequence[Proof], amount: int, fee_of: FeeOf) -> Selection | None:
    """Melt inputs: worth ``amount`` (the invoice plus the fee reserve) plus their own
    input fee, which a melt pays too.

    A set that adds up to exactly that is ``exact`` (nothing to change back but the
    unused reserve); otherwise the covering set, whose surplus the mint returns as
    NUT-08 change.
    """
    by_size = sorted(proofs, key=lambda p: p.amount, reverse=True)
    for extra in range(0, len(by_size) + 1):  # the fee of k inputs is at most k sat
        exact = _exact(by_size, amount + extra)
        if exact is not None and fee_of(exact) == extra:
            return Selection(exact, fee=extra, exact=True)
    return _cover(by_size, amount, fee_of)


def inactive_first(select: Select, inactive: frozenset[str]) -> Select:
    """``select``, trying the proofs of ``inactive`` keysets alone first.

    A mint no longer signs for an inactive keyset and may drop it after its
    ``final_expiry``: spending those proofs first moves value into the active keyset
    as a side effect of ordinary payments. Only when they cannot cover the amount
    does ``select`` choose among all proofs (old ones first among equal amounts).
    """
    if not inactive:
        return select

    def chosen(proofs: Sequence[Proof], amount: int, fee_of: FeeOf) -> Selection | None:
        old = [p for p in proofs if p.keyset_id in inactive]
        if old:
            only_old = select(old, amount, fee_of)
            if only_old is not None:
                return only_old
        # a stable sort by size in every rule: old proofs stay first among equals
        return select(old + [p for p in proofs if p.keyset_id not in inactive], amount,
                      fee_of)

    return chosen


def _exact(by_size: Sequence[Proof], amount: int) -> tuple[Proof, ...] | None:
    picked: list[Proof] = []
    left = amount
    for p in by_size:
        if p.amount <= left:
            picked.append(p)
            left -= p.amount
            if left == 0:
                return tuple(picked)
    return None


def _cover(by_size: Sequence[Proof], amount: int, fee_of: FeeOf) -> Selection | None:
    single: Selection | None = None
    for p in reversed(by_size):  # the smallest single proof that covers amount + its fee
        fee = fee_of([p])
        if p.amount >= amount + fee:
            single = Selection((p,), fee=fee, exact=False)
            break
    picked: list[Proof] = []
    total = 0
    for p in by_size:
        picked.append(p)
        total += p.amount
        fee = fee_of(picked)
        if total >= amount + fee:
            many = Selection(tuple(picked), fee=fee, exact=False)
            return single if single is not None and single.total <= many.total else many
    return single
