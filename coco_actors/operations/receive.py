"""The receive saga: prepared (token proofs and our outputs persisted) -> executing
-> completed, or rolled_back with the reason (e.g. the token was claimed first)."""

from __future__ import annotations

import contextlib
import time

import pykka
from pykka.typing import ActorMemberMixin, proxy_method

from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.errors import (
    CODE_OUTPUTS_ALREADY_SIGNED,
    CODE_PROOFS_SPENT,
    InvalidAmountError,
    MintRejectedError,
    RateLimitedError,
    TokenSpentError,
)
from coco_actors.operations.base import (
    LEDGER_TIMEOUT,
    OperationActor,
    OperationBase,
    Outputs,
    wait,
)
from coco_actors.operations.batches import BatchSlice, batch_slices, chunked
from coco_actors.records import Operation, OpState
from coco_actors.tokens import Token
from coco_actors.wire import BlindSignature, Proof, ProofStateKind


class ReceiveOperation(OperationBase):
    """The receive saga's logic; :class:`ReceiveOperationActor` runs it."""

    def prepare(self, token: Token) -> Operation:
        """Persist the token's proofs and the outputs that will replace them."""
        self._require(OpState.INIT)
        with self._abandon_on_error():
            return self._prepare(token)

    def _prepare(self, token: Token) -> Operation:
        # more proofs than one request may carry (the mint's array cap): one swap per
        # slice, each paying its own inputs' fee and with its own outputs
        chunks = chunked(token.proofs, self.mint.client.max_array_length())
        fees = [wait(self.deps.ledger.input_fee(self.op.mint_url, list(c)),
                     LEDGER_TIMEOUT, "ProofLedger") for c in chunks]
        fee = sum(fees)
        net = token.amount - fee
        nets = [sum(p.amount for p in c) - f for c, f in zip(chunks, fees, strict=True)]
        if net <= 0 or min(nets) <= 0:
            raise InvalidAmountError(
                f"token of {token.amount} is worth nothing after the mint's fee of {fee}")
        # locked proofs (NUT-11) are signed now, so the executing commit (and any re-run
        # after a crash) sends the very same witnesses; LockedTokenError leaves nothing
        inputs, outputs, batches = self._chunk_swaps(chunks, nets, int(time.time()))
        self._commit(self.op.moved(OpState.PREPARED, amount=net, fee=fee,
                                   input_amount=token.amount, inputs=tuple(inputs),
                                   outputs=tuple(outputs), needs_swap=True,
                                   batches=batches if len(batches) > 1 else ()),
                     event="prepared")
        return self.op

    def execute(self) -> Operation:
        self._require(OpState.PREPARED)
        self._commit(self.op.moved(OpState.EXECUTING))
        return self._swap_batches()

    def _swap_batches(self) -> Operation:
        """Swap the batches not done yet, one request each, committing after each (an
        operation that is not split is one batch). Runs while ``executing``. A batch's
        outputs made before the mint rotated their keyset are made again (and its inputs
        signed again for them) and committed before its swap leaves."""
        for part in batch_slices(self.op)[self.op.batches_done:]:
            try:
                sigs = self._swap_batch(part)
            except MintRejectedError as exc:
                if exc.code in (CODE_PROOFS_SPENT, CODE_OUTPUTS_ALREADY_SIGNED):
                    return self._resolve(exc)  # ours from before, or claimed by someone else
                if self.op.batches_done == 0:
                    self._end(OpState.ROLLED_BACK, error=str(exc))
                else:
                    self._end_partial(str(exc))
                raise
            except RateLimitedError:  # not processed (429): prepared again, execute later
                self._commit(self.op.moved(OpState.PREPARED))
                raise
            self._batch_done(self._unblind(list(self.op.outputs[part.outputs]), sigs))
        return self.op

    def _swap_batch(self, part: BatchSlice) -> list[BlindSignature]:
        """One batch's swap, its outputs for an active keyset (``_with_active_outputs``)."""
        def get(op: Operation) -> Outputs:
            return op.outputs[part.outputs]

        def put(op: Operation, outs: Outputs) -> Operation:
            return self._signed_for(op, op.outputs[:part.outputs.start] + outs
                                    + op.outputs[part.outputs.stop:])

        def swap(outs: Outputs) -> list[BlindSignature]:
            return self.mint.client.swap(list(self.op.inputs[part.inputs]),
                                         [o.blinded for o in outs])

        return self._with_active_outputs(get, put, swap)

    def _signed_for(self, op: Operation, outputs: Outputs) -> Operation:
        """``op`` with ``outputs`` and each batch's inputs signed for that batch's outputs
        (NUT-11 SIG_ALL signs the outputs too)."""
        inputs = list(op.inputs)
        now = int(time.time())
        for part in batch_slices(op):
            inputs[part.inputs] = self.deps.keys.sign_inputs(
                op.inputs[part.inputs], [o.blinded for o in outputs[part.outputs]], now)
        return op.moved(op.state, outputs=outputs, inputs=tuple(inputs))

    def _batch_done(self, proofs: list[Proof]) -> None:
        """One batch's proofs are ours: in the ledger with the count of batches done, in
        one write; the last one completes the receive."""
        op = self.op
        done = op.batches_done + 1
        if done >= len(batch_slices(op)):
            self._settle(op.moved(OpState.COMPLETED, batches_done=done if op.batches else 0),
                         add=proofs, event="finalized")
            self.retire()
        else:
            self._settle(op.moved(OpState.EXECUTING, batches_done=done), add=proofs)

    def _end_partial(self, reason: str) -> None:
        """Some batches are ours, the rest can never be: completed with what came in."""
        op = self.op
        got = sum(o.amount for part in batch_slices(op)[:op.batches_done]
                  for o in op.outputs[part.outputs])
        self._commit(op.moved(OpState.COMPLETED, amount=got,
                              error=f"received {op.batches_done} of {len(op.batches)} parts"
                                    f" of the token: {reason}"), event="finalized")
        self.retire()

    def _resolve(self, cause: Exception | None = None) -> Operation:
        """After an interruption or an ambiguous answer: did the outputs of the batch in
        flight get signed (NUT-09), else were its inputs spent (NUT-07)?"""
        op = self.op
        part = batch_slices(op)[op.batches_done]
        proofs = self._restore(op.outputs[part.outputs])
        if proofs:
            self._batch_done(proofs)
            return self._swap_batches() if self.op.state == OpState.EXECUTING else self.op
        states = self.mint.client.check_state([secret_to_y(p.secret)
                                               for p in op.inputs[part.inputs]])
        if any(s.state == ProofStateKind.SPENT for s in states):
            if op.batches_done == 0:
                self._end(OpState.ROLLED_BACK, error="token was already claimed")
            else:
                self._end_partial("the rest was already claimed")
            raise TokenSpentError(f"the token of receive {op.id} was already claimed") from cause
        if any(s.state == ProofStateKind.PENDING for s in states):
            return op
        # nothing happened at the mint: try again with the same outputs
        self._commit(op.moved(OpState.PREPARED))
        return self.execute()

    def _end(self, state: OpState, *, error: str | None = None) -> None:
        self._commit(self.op.moved(state, error=error),
                     event="rolled-back" if state == OpState.ROLLED_BACK else "finalized")
        self.retire()

    def recover(self) -> Operation:
        if self.op.state == OpState.INIT:
            self._delete()
        elif self.op.state == OpState.PREPARED:
            with contextlib.suppress(TokenSpentError):  # the outcome is in the record
                self.execute()
        elif self.op.state == OpState.EXECUTING:
            with contextlib.suppress(TokenSpentError):
                self._resolve()
        return self.op



class ReceiveOperationActor(OperationActor, ReceiveOperation):
    pass


class ReceiveOperationProxy(ActorMemberMixin, pykka.ActorProxy[ReceiveOperationActor]):
    operation = proxy_method(ReceiveOperation.operation)
    prepare = proxy_method(ReceiveOperation.prepare)
    execute = proxy_method(ReceiveOperation.execute)
    recover = proxy_method(ReceiveOperation.recover)
