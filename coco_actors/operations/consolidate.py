"""The consolidation saga (issue 13): many proofs of one mint swapped into the fewest
proofs of the same total, minus the NUT-02 input fee; proofs of inactive keysets move
into the active one on the way.

init (in memory: the inputs held, their counters taken) -> executing (inputs, outputs
and the fee committed in one write, with ``consolidate:started``) -> the swap ->
completed (``consolidate:finalized``). A definitive refusal, or recovery finding the
inputs gone, ends it rolled back (``consolidate:rolled-back``) with what NUT-09 finds.

There is no ``prepared`` state: nobody looks at a consolidation between its plan and
its swap, so the plan is committed as ``executing``, right before the swap it announces.
A plan that is not worth it (:func:`plan`) commits nothing and says why (``skipped``).

Recovery of ``executing`` (the actor's thread): NUT-07 on the inputs. Unspent: the
swap never happened; it is made now with the outputs persisted for it. Spent: the mint
did it; the outputs are restored (NUT-09). Pending at the mint: left as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import pykka
from pykka.typing import ActorMemberMixin, proxy_method

from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.errors import InsufficientFundsError, MintRejectedError
from coco_actors.operations.base import LEDGER_TIMEOUT, OperationActor, OperationBase, wait
from coco_actors.records import Operation, OpState
from coco_actors.selection import FeeOf, Selection
from coco_actors.wire import Keyset, Proof, ProofStateKind, split_amount

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_FEE_FRACTION", "MAX_INPUTS", "ConsolidateOperation",
           "ConsolidateOperationActor", "ConsolidateOperationProxy", "ConsolidationResult",
           "ConsolidationRule", "Plan", "plan"]

#: Nutshell's NUT-06 ``max_array_length``: one consolidation swaps at most this many inputs.
MAX_INPUTS = 1000
#: A consolidation whose input fee is more than this fraction of its amount is skipped.
DEFAULT_MAX_FEE_FRACTION = 0.1

#: Why a plan was not made (the ``skipped`` of a result).
NO_PROOFS = "no_proofs"
NOTHING_TO_GAIN = "nothing_to_gain"
FEE_TOO_HIGH = "fee_too_high"
WORTHLESS = "worth_less_than_fee"


@dataclass(frozen=True, slots=True)
class ConsolidationRule:
    """What one consolidation may take and spend.

    ``max_fee_fraction``: skip when the input fee exceeds this fraction of the inputs'
    total (None: never skipped for its fee, as a migration before ``final_expiry``).
    ``only_inactive``: take only proofs of inactive keysets (the migration);
    ``expires_by`` (unix seconds) then narrows it to keysets whose ``final_expiry``
    comes by then.
    """

    max_inputs: int = MAX_INPUTS
    max_fee_fraction: float | None = DEFAULT_MAX_FEE_FRACTION
    only_inactive: bool = False
    expires_by: int | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The inputs one consolidation takes and the outputs it asks for, or why none."""

    proofs: tuple[Proof, ...]
    fee: int
    outputs: tuple[int, ...]
    skipped: str | None = None

    @property
    def total(self) -> int:
        return sum(p.amount for p in self.proofs)


def plan(proofs: Sequence[Proof], keysets: Mapping[str, Keyset], unit: str, fee_of: FeeOf,
         rule: ConsolidationRule) -> Plan:
    """Which of ``proofs`` (spendable, at one mint) to swap into the fewest proofs.

    Pure. Proofs of inactive keysets of ``unit`` come first (the soonest
    ``final_expiry`` first), then the smallest proofs, up to ``rule.max_inputs``. The
    outputs are the binary split of the total minus the fee. Skipped when there is
    nothing to take, when the outputs would not be fewer than the inputs and no proof
    changes keyset, or when the fee is above the rule's fraction of the total.
    """
    mine = [p for p in proofs if p.keyset_id in keysets and keysets[p.keyset_id].unit == unit]
    inactive = [p for p in mine if not keysets[p.keyset_id].active]
    if rule.only_inactive and rule.expires_by is not None:
        by = rule.expires_by
        inactive = [p for p in inactive
                    if (e := keysets[p.keyset_id].final_expiry) is not None and e <= by]
    inactive.sort(key=lambda p: (keysets[p.keyset_id].final_expiry or 2**63, p.amount))
    active = sorted((p for p in mine if keysets[p.keyset_id].active), key=lambda p: p.amount)
    picked = tuple((inactive if rule.only_inactive else inactive + active)[:rule.max_inputs])
    if not picked:
        return Plan((), 0, (), NO_PROOFS)
    total = sum(p.amount for p in picked)
    fee = fee_of(picked)
    if total <= fee:
        return Plan(picked, fee, (), WORTHLESS)
    outputs = tuple(split_amount(total - fee))
    moves = any(not keysets[p.keyset_id].active for p in picked)
    if not moves and len(outputs) >= len(picked):
        return Plan(picked, fee, outputs, NOTHING_TO_GAIN)
    if rule.max_fee_fraction is not None and fee > rule.max_fee_fraction * total:
        return Plan(picked, fee, outputs, FEE_TOO_HIGH)
    return Plan(picked, fee, outputs)


@dataclass(frozen=True, slots=True)
class ConsolidationResult:
    """What ``coco.consolidate`` did: ``operation`` (None when ``skipped``), and the
    numbers of its plan (``inputs`` proofs worth ``input_amount`` became ``outputs``
    proofs worth ``amount``; ``fee`` = ``input_amount - amount``)."""

    mint_url: str
    skipped: str | None
    operation: Operation | None
    inputs: int
    outputs: int
    input_amount: int
    amount: int
    fee: int

    @classmethod
    def of(cls, op: Operation) -> ConsolidationResult:
        return cls(op.mint_url, None, op, len(op.input_ys), len(op.outputs), op.input_amount,
                   op.amount, op.fee)


class _Planner:
    """The ledger's selection rule for one consolidation: :func:`plan` under the ledger's
    mailbox (so planning and holding are one check-and-set), keeping the plan it made
    for the operation's thread to read once the hold's future is done."""

    def __init__(self, keysets: Mapping[str, Keyset], unit: str,
                 rule: ConsolidationRule) -> None:
        self._keysets = keysets
        self._unit = unit
        self._rule = rule
        self.last: Plan | None = None

    def __call__(self, proofs: Sequence[Proof], amount: int, fee_of: FeeOf) -> Selection | None:
        self.last = made = plan(proofs, self._keysets, self._unit, fee_of, self._rule)
        return None if made.skipped else Selection(made.proofs, made.fee, exact=False)


def _output_count(amount: int, change: int) -> int:
    """Counters a consolidation takes: one per output of ``change`` (the total minus the
    fee; its ``amount`` asked of the ledger is 0)."""
    return len(split_amount(change))


class ConsolidateOperation(OperationBase):
    """The consolidation saga's logic; :class:`ConsolidateOperationActor` runs it."""

    def consolidate(self, rule: ConsolidationRule) -> ConsolidationResult:
        """Plan, hold, commit ``executing``, swap, commit ``completed``.

        A skipped plan deletes the record (nothing was written) and says why. A
        definitive refusal of the swap is resolved (NUT-07) and raised; a mint that
        cannot be reached leaves it ``executing``, for recovery.
        """
        self._require(OpState.INIT)
        with self._abandon_on_error():
            keyset = self.mint.active_keyset(self.op.unit)
            # one swap: never more inputs than the mint takes in one request
            rule = replace(rule, max_inputs=min(rule.max_inputs,
                                                self.mint.client.max_array_length()))
            planner = _Planner({k.id: k for k in self.mint.keysets}, self.op.unit, rule)
            try:
                selection, start = wait(
                    self.deps.ledger.hold(self.op.id, self.op.mint_url, 0, keyset_id=keyset.id,
                                          outputs_for=_output_count, select=planner),
                    LEDGER_TIMEOUT, "ProofLedger")
            except InsufficientFundsError:
                made = planner.last or Plan((), 0, (), NO_PROOFS)
                self._delete()
                log.info("consolidation at %s skipped: %s (%d proofs, fee %d)",
                         self.op.mint_url, made.skipped, len(made.proofs), made.fee)
                return ConsolidationResult(self.op.mint_url, made.skipped, None,
                                           len(made.proofs), len(made.outputs), made.total,
                                           made.total - made.fee, made.fee)
            net = selection.total - selection.fee
            outputs = self._outputs_at(split_amount(net), keyset, start)
            ys = tuple(secret_to_y(p.secret) for p in selection.proofs)
            self._commit(self.op.moved(OpState.EXECUTING, amount=net, fee=selection.fee,
                                       input_amount=selection.total, needs_swap=True,
                                       input_ys=ys, outputs=tuple(outputs)),
                         event="started")
        self._swap(list(selection.proofs))
        return ConsolidationResult.of(self.op)

    def _swap(self, inputs: list[Proof]) -> None:
        """The swap of the ``executing`` plan; outputs of a keyset the mint rotated
        meanwhile are made again for the active one and committed first (a 12002 answer
        refreshes the keysets and does that once)."""
        try:
            sigs = self._with_active_outputs(
                lambda op: op.outputs, lambda op, outputs: op.moved(op.state, outputs=outputs),
                lambda outputs: self.mint.client.swap(inputs, [o.blinded for o in outputs]))
        except MintRejectedError as exc:
            self._resolve_executing(reason=exc)
            raise
        op = self.op
        self._settle(op.moved(OpState.COMPLETED), spend=op.input_ys,
                     add=self._unblind(op.outputs, sigs), event="finalized")
        self.retire()

    def recover(self) -> Operation:
        if self.op.state == OpState.INIT:
            self._delete()
        elif self.op.state == OpState.EXECUTING:
            self._resolve_executing(forward=True)
        return self.op

    def _resolve_executing(self, reason: Exception | None = None,
                           forward: bool = False) -> Operation:
        """NUT-07 on the inputs of an interrupted (or refused) swap.

        Unspent: the swap never happened; ``forward`` (recovery) makes it now with the
        persisted outputs, otherwise the inputs are released (rolled back). Spent: the
        outputs the mint signed are restored (NUT-09): all of them, completed. Any
        other mix: what came back is kept, rolled back. Pending: left as it is.
        """
        op = self.op
        states = self.mint.client.check_state(list(op.input_ys))
        kinds = {s.state for s in states}
        if ProofStateKind.PENDING in kinds:
            return op
        if kinds == {ProofStateKind.UNSPENT}:
            if forward:
                proofs = wait(self.deps.ledger.proofs_of(op.id), LEDGER_TIMEOUT, "ProofLedger")
                try:
                    self._swap(proofs)
                except MintRejectedError as exc:
                    log.warning("consolidation %s: swap refused at recovery: %s", op.id, exc)
                return self.op
            self._settle(op.moved(OpState.ROLLED_BACK, error=str(reason) if reason else
                                  "swap did not happen"), release=op.input_ys,
                         event="rolled-back")
            self.retire()
            return self.op
        recovered = self._restore(op.outputs)
        unspent = [y for y, s in zip(op.input_ys, states, strict=True)
                   if s.state == ProofStateKind.UNSPENT]
        spent = [y for y in op.input_ys if y not in unspent]
        if not unspent and len(recovered) == len(op.outputs):
            self._settle(op.moved(OpState.COMPLETED), spend=spent, add=recovered,
                         event="finalized")
        else:
            self._settle(op.moved(OpState.ROLLED_BACK, error=str(reason) if reason else
                                  "interrupted swap; outputs recovered"),
                         spend=spent, release=unspent, add=recovered, event="rolled-back")
        self.retire()
        return self.op


class ConsolidateOperationActor(OperationActor, ConsolidateOperation):
    pass


class ConsolidateOperationProxy(ActorMemberMixin, pykka.ActorProxy[ConsolidateOperationActor]):
    operation = proxy_method(ConsolidateOperation.operation)
    consolidate = proxy_method(ConsolidateOperation.consolidate)
    recover = proxy_method(ConsolidateOperation.recover)
