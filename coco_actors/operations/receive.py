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
from coco_actors.records import Operation, OpState
from coco_actors.tokens import Token
from coco_actors.wire import ProofStateKind, split_amount


class ReceiveOperation(OperationBase):
    """The receive saga's logic; :class:`ReceiveOperationActor` runs it."""

    def prepare(self, token: Token) -> Operation:
        """Persist the token's proofs and the outputs that will replace them."""
        self._require(OpState.INIT)
        with self._abandon_on_error():
            return self._prepare(token)

    def _prepare(self, token: Token) -> Operation:
        fee = wait(self.deps.ledger.input_fee(self.op.mint_url, list(token.proofs)),
                   LEDGER_TIMEOUT, "ProofLedger")
        net = token.amount - fee
        if net <= 0:
            raise InvalidAmountError(
                f"token of {token.amount} is worth nothing after the mint's fee of {fee}")
        outputs = self._derive_outputs(split_amount(net), self.mint.active_keyset(token.unit))
        # locked proofs (NUT-11) are signed now, so the executing commit (and any re-run
        # after a crash) sends the very same witnesses; LockedTokenError leaves nothing
        inputs = self.deps.keys.sign_inputs(token.proofs, [o.blinded for o in outputs],
                                            int(time.time()))
        self._commit(self.op.moved(OpState.PREPARED, amount=net, fee=fee,
                                   input_amount=token.amount, inputs=inputs,
                                   outputs=tuple(outputs), needs_swap=True),
                     event="prepared")
        return self.op

    def execute(self) -> Operation:
        self._require(OpState.PREPARED)
        # outputs made before the mint rotated their keyset are made again (and the
        # inputs signed again for them) with this commit, before the swap leaves
        fresh = self._for_active(self.op.outputs)
        op = self._commit(self._signed_for(self.op.moved(OpState.EXECUTING), fresh)
                          if fresh is not None else self.op.moved(OpState.EXECUTING))
        try:
            sigs = self._with_active_outputs(
                lambda op: op.outputs, self._signed_for,
                lambda outputs: self.mint.client.swap(list(self.op.inputs),
                                                      [o.blinded for o in outputs]))
            op = self.op
        except MintRejectedError as exc:
            if exc.code in (CODE_PROOFS_SPENT, CODE_OUTPUTS_ALREADY_SIGNED):
                return self._resolve(exc)  # ours from before, or claimed by someone else
            self._end(OpState.ROLLED_BACK, error=str(exc))
            raise
        except RateLimitedError:  # not processed (429): prepared again, execute later
            self._commit(op.moved(OpState.PREPARED))
            raise
        self._settle(op.moved(OpState.COMPLETED), add=self._unblind(op.outputs, sigs),
                     event="finalized")
        self.retire()
        return self.op

    def _signed_for(self, op: Operation, outputs: Outputs) -> Operation:
        """``op`` with ``outputs`` and its inputs signed for them (NUT-11 SIG_ALL signs
        the outputs too)."""
        inputs = self.deps.keys.sign_inputs(op.inputs, [o.blinded for o in outputs],
                                            int(time.time()))
        return op.moved(op.state, outputs=outputs, inputs=inputs)

    def _resolve(self, cause: Exception | None = None) -> Operation:
        """After an interruption or an ambiguous answer: did our outputs get signed?"""
        op = self.op
        proofs = self._restore(op.outputs)
        if proofs:
            self._settle(op.moved(OpState.COMPLETED), add=proofs, event="finalized")
            self.retire()
            return self.op
        states = self.mint.client.check_state([secret_to_y(p.secret) for p in op.inputs])
        if any(s.state == ProofStateKind.SPENT for s in states):
            self._end(OpState.ROLLED_BACK, error="token was already claimed")
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
