"""The send saga (see DESIGN.md): init -> prepared -> executing -> pending -> completed,
with rollback from prepared (release) and from pending (reclaim swap).

Every transition is committed before the request it announces leaves; a mint
that cannot be reached leaves the operation where it is, and only a definitive
answer from the mint justifies a compensation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import pykka
from coincurve import PrivateKey
from pykka.typing import ActorMemberMixin, proxy_method

from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.crypto.nut11 import P2PKLock
from coco_actors.crypto.outputs import make_outputs
from coco_actors.errors import (
    CODE_OUTPUTS_ALREADY_SIGNED,
    CODE_PROOFS_SPENT,
    InsufficientFundsError,
    InvalidStateError,
    LockedTokenError,
    MintRejectedError,
    RateLimitedError,
)
from coco_actors.idempotency import SEND_EXECUTE
from coco_actors.operations.base import (
    LEDGER_TIMEOUT,
    OperationActor,
    OperationBase,
    Outputs,
    Watched,
    wait,
)
from coco_actors.operations.batches import (
    BatchSlice,
    batch_slices,
    batched_select,
    chunked,
    slices_of,
)
from coco_actors.records import Operation, OpState, SwapBatch
from coco_actors.selection import cover_proofs, select_proofs
from coco_actors.tokens import Token, encode_v4
from coco_actors.wire import BlindingData, Keyset, Proof, ProofStateKind, split_amount

log = logging.getLogger(__name__)


class SendOperation(OperationBase):
    """The send saga's logic; :class:`SendOperationActor` runs it."""

    _inputs: tuple[Proof, ...] = ()  # the held proofs, known since prepare (else asked)

    # --- prepare ------------------------------------------------------------------------

    def prepare(self, amount: int, wait_for_change: float = 30.0,
                lock: P2PKLock | None = None) -> Operation:
        """Reserve proofs and persist every output the swap will need.

        When the spendable proofs do not cover ``amount`` but proofs held by
        other operations may come back as change, wait for them (up to
        ``wait_for_change`` seconds) instead of failing.

        ``lock`` (NUT-11): the send always swaps, into outputs whose secrets carry
        the lock, each with its own nonce (random, not NUT-13: they are persisted
        here, so NUT-09 still finds them for recovery); the change is NUT-13 derived.
        """
        self._require(OpState.INIT)
        with self._abandon_on_error():
            return self._prepare(amount, wait_for_change, lock)

    def _prepare(self, amount: int, wait_for_change: float,
                 lock: P2PKLock | None = None) -> Operation:
        keyset = self.mint.active_keyset(self.op.unit)
        cap = self.mint.client.max_array_length()
        signal = self.deps.signal
        deadline = time.monotonic() + wait_for_change
        while True:
            version = signal.version
            try:
                selection, start = wait(
                    self.deps.ledger.hold(
                        self.op.id, self.op.mint_url, amount, keyset_id=keyset.id,
                        outputs_for=swap_output_count if lock is None else change_output_count,
                        select=batched_select(select_proofs if lock is None else cover_proofs,
                                              cap),
                        gives_change=True),
                    LEDGER_TIMEOUT, "ProofLedger")
                break
            except InsufficientFundsError as exc:
                left = deadline - time.monotonic()
                if exc.may_wait and left > 0:
                    signal.wait_past(version, min(left, 1.0))
                    continue
                raise
        # derived here, on this actor's thread; committed with the hold in one write
        ys = tuple(secret_to_y(p.secret) for p in selection.proofs)
        if selection.exact:
            prepared = self.op.moved(OpState.PREPARED, fee=0, input_amount=selection.total,
                                     needs_swap=False, input_ys=ys)
        elif len(selection.proofs) > cap:
            prepared = self._split(amount, selection.proofs, cap, keyset, lock)
        else:
            send_amounts = split_amount(amount)
            keep_amounts = split_amount(selection.total - amount - selection.fee)
            if lock is None:
                outputs = self._outputs_at(send_amounts + keep_amounts, keyset, start)
            else:
                locked = make_outputs(send_amounts, keyset.id,
                                      [(lock.secret(), _random_r()) for _ in send_amounts])
                outputs = locked + self._outputs_at(keep_amounts, keyset, start)
            prepared = self.op.moved(OpState.PREPARED, fee=selection.fee,
                                     input_amount=selection.total, needs_swap=True,
                                     input_ys=ys, outputs=tuple(outputs),
                                     send_output_count=len(send_amounts))
        self._commit(prepared, event="prepared")
        self._inputs = selection.proofs
        return self.op

    def _split(self, amount: int, proofs: Sequence[Proof], cap: int, keyset: Keyset,
               lock: P2PKLock | None) -> Operation:
        """The prepared record of a send whose inputs exceed the mint's array cap: one
        swap per slice of ``cap`` inputs, each paying its own fee; the token's amount is
        taken from the first slices, each slice's change stays with it."""
        left = amount
        parts: list[tuple[int, int]] = []  # (to send, to keep) per batch
        fees = 0
        for chunk in chunked(proofs, cap):
            fee = wait(self.deps.ledger.input_fee(self.op.mint_url, list(chunk)),
                       LEDGER_TIMEOUT, "ProofLedger")
            value = sum(p.amount for p in chunk) - fee
            send = min(value, left)
            left -= send
            fees += fee
            parts.append((send, value - send))
        derived = self._derive_outputs(
            [a for send, keep in parts
             for a in (split_amount(keep) if lock else split_amount(send) + split_amount(keep))],
            keyset)
        outputs: list[BlindingData] = []
        batches: list[SwapBatch] = []
        for (send, keep), chunk in zip(parts, chunked(proofs, cap), strict=True):
            sends, keeps = split_amount(send), split_amount(keep)
            if lock is not None:
                outputs += make_outputs(sends, keyset.id,
                                        [(lock.secret(), _random_r()) for _ in sends])
            else:
                outputs += derived[:len(sends)]
                derived = derived[len(sends):]
            outputs += derived[:len(keeps)]
            derived = derived[len(keeps):]
            batches.append(SwapBatch(len(chunk), len(sends) + len(keeps), len(sends)))
        return self.op.moved(OpState.PREPARED, fee=fees, input_amount=sum(p.amount for p in proofs),
                             needs_swap=True,
                             input_ys=tuple(secret_to_y(p.secret) for p in proofs),
                             outputs=tuple(outputs),
                             send_output_count=sum(b.sends for b in batches),
                             batches=tuple(batches))

    # --- execute ------------------------------------------------------------------------

    def execute(self) -> Operation:
        self._require(OpState.PREPARED)
        op = self.op
        inputs = list(self._inputs) or wait(self.deps.ledger.proofs_of(op.id),
                                            LEDGER_TIMEOUT, "ProofLedger")
        if not op.needs_swap:
            # no request leaves: nothing to announce, prepared -> pending in one commit
            send, keep = inputs, []
        else:
            # outputs made before the mint rotated their keyset: made again, committed here
            op = self._commit(op.moved(OpState.EXECUTING,
                                       outputs=self._for_active(op.outputs) or op.outputs))
            if op.batches:
                return self._swap_batches(inputs)
            proofs = self._swap(inputs)
            send, keep = proofs[:op.send_output_count], proofs[op.send_output_count:]
        return self._pending(send, keep)

    def _swap(self, inputs: list[Proof]) -> list[Proof]:
        """The ``executing`` send's swap (its outputs persisted with that state): the new
        proofs; a definitive refusal resolves the operation and is raised."""
        try:
            sigs = self._with_active_outputs(
                lambda op: op.outputs, lambda op, outputs: op.moved(op.state, outputs=outputs),
                lambda outputs: self.mint.client.swap(inputs, [o.blinded for o in outputs]))
        except MintRejectedError as exc:
            self._resolve_executing(reason=exc)
            raise
        except RateLimitedError:
            # a 429 is no outcome: the mint did not process the swap; prepared again,
            # the caller executes again later (nothing is compensated)
            self._commit(self.op.moved(OpState.PREPARED))
            raise
        return self._unblind(self.op.outputs, sigs)

    def _swap_batches(self, inputs: list[Proof]) -> Operation:
        """The batches of a split send not done yet, one swap each; after each, its
        inputs leave the ledger, its change joins it and its token proofs are kept in the
        record, in one write. A definitive refusal resolves the send and is raised."""
        by_y = {secret_to_y(p.secret): p for p in inputs}
        for part in batch_slices(self.op)[self.op.batches_done:]:
            op = self.op
            outputs = list(op.outputs[part.outputs])
            try:
                sigs = self.mint.client.swap([by_y[y] for y in op.input_ys[part.inputs]],
                                             [o.blinded for o in outputs])
            except MintRejectedError as exc:
                self._resolve_executing(reason=exc)
                raise
            except RateLimitedError:
                # not processed (429): before the first batch, prepared again (execute
                # later); after one, still executing, finished as an interrupted execute
                if self.op.batches_done == 0:
                    self._commit(self.op.moved(OpState.PREPARED))
                raise
            self._batch_swapped(part, self._unblind(outputs, sigs))
        return self._pending(list(self.op.send_proofs), [])

    def _batch_swapped(self, part: BatchSlice, proofs: list[Proof]) -> None:
        op = self.op
        sends = part.batch.sends
        self._settle(op.moved(OpState.EXECUTING, batches_done=part.index + 1,
                              send_proofs=op.send_proofs + tuple(proofs[:sends])),
                     spend=op.input_ys[part.inputs], add=proofs[sends:])

    def _finish_batches(self) -> Operation:
        """:meth:`finish_execute` of a split send: the batch in flight is made or found
        (NUT-07 of its inputs, NUT-09 of its outputs), then the rest are swapped."""
        op = self.op
        part = batch_slices(op)[op.batches_done]
        states = self.mint.client.check_state(list(op.input_ys[part.inputs]))
        kinds = {s.state for s in states}
        if kinds == {ProofStateKind.SPENT}:
            outputs = list(op.outputs[part.outputs])
            result = self.mint.client.restore([o.blinded for o in outputs])
            signed = {b.B_: sig for b, sig in zip(result.outputs, result.signatures,
                                                  strict=True)}
            if any(o.B_ not in signed for o in outputs):
                return self._resolve_executing()
            self._batch_swapped(part, self._unblind(outputs, [signed[o.B_] for o in outputs]))
        elif kinds != {ProofStateKind.UNSPENT}:
            return self._resolve_executing()
        log.info("send %s: interrupted split execute finished forward (idempotency key)",
                 op.id)
        return self._swap_batches(wait(self.deps.ledger.proofs_of(op.id), LEDGER_TIMEOUT,
                                       "ProofLedger"))

    def _pending(self, send: list[Proof], keep: list[Proof]) -> Operation:
        op = self.op
        token = encode_v4(Token(mint=op.mint_url, proofs=tuple(send), unit=op.unit))
        self._settle(op.moved(OpState.PENDING, send_proofs=tuple(send), token=token),
                     spend=op.input_ys, add=keep, event="pending", token=token)
        self._watch_send()
        self.rest()
        return self.op

    def finish_execute(self) -> Operation:
        """Carry an interrupted execute *forward* to ``pending`` with its token: the send
        of a caller who holds an idempotency key for the execute and will ask again
        (its answer was lost, or the wallet died in the swap).

        NUT-07 on the inputs: unspent, the swap never happened and is made now with the
        outputs persisted for it; spent, every output is restored (NUT-09) and the
        token built from them. Anything else (still pending at the mint, outputs the
        mint never signed: someone else spent the inputs) is :meth:`_resolve_executing`.
        """
        if self.op.state != OpState.EXECUTING:
            return self.op
        if self.op.batches:
            return self._finish_batches()
        op = self.op
        states = self.mint.client.check_state(list(op.input_ys))
        kinds = {s.state for s in states}
        if kinds == {ProofStateKind.UNSPENT}:
            proofs = self._swap(wait(self.deps.ledger.proofs_of(op.id), LEDGER_TIMEOUT,
                                     "ProofLedger"))
        elif kinds == {ProofStateKind.SPENT}:
            result = self.mint.client.restore([o.blinded for o in op.outputs])
            signed = {b.B_: sig for b, sig in zip(result.outputs, result.signatures,
                                                  strict=True)}
            if any(o.B_ not in signed for o in op.outputs):
                return self._resolve_executing()
            proofs = self._unblind(op.outputs, [signed[o.B_] for o in op.outputs])
        else:
            return self._resolve_executing()
        log.info("send %s: interrupted execute finished forward (idempotency key)", op.id)
        return self._pending(proofs[:op.send_output_count], proofs[op.send_output_count:])

    def _resolve_executing(self, reason: Exception | None = None) -> Operation:
        """Find out with NUT-07 what happened to the inputs of an interrupted swap.

        Unspent: nothing happened, release them. Spent: the swap went through
        (or someone else spent them); recover whatever outputs the mint signed
        with NUT-09, keep them, and end rolled back. Raises MintUnreachableError
        (state unchanged) when the mint cannot tell.
        """
        op = self.op
        # a split send: the batches done are spent and their change is in the ledger;
        # their token proofs come back, and only the rest is resolved
        part = batch_slices(op)[op.batches_done] if op.batches else None
        live_ys = op.input_ys[part.inputs.start:] if part else op.input_ys
        live_outputs = op.outputs[part.outputs.start:] if part else op.outputs
        states = self.mint.client.check_state(list(live_ys))
        kinds = {s.state for s in states}
        if ProofStateKind.PENDING in kinds:
            return op  # the mint is still working on it; look again later
        error = str(reason) if reason else None
        if kinds == {ProofStateKind.UNSPENT}:
            self._settle(op.moved(OpState.ROLLED_BACK, error=error or "swap did not happen"),
                         release=live_ys, add=op.send_proofs, event="rolled-back")
        else:
            recovered = self._restore(live_outputs)
            unspent = [y for y, s in zip(live_ys, states, strict=True)
                       if s.state == ProofStateKind.UNSPENT]
            spent = [y for y in live_ys if y not in unspent]
            forward = self._locked_away(recovered) if not unspent else None
            if forward is not None:
                return forward
            self._settle(op.moved(OpState.ROLLED_BACK,
                                  error=error or "interrupted swap; outputs recovered"),
                         spend=spent, release=unspent, add=[*op.send_proofs, *recovered],
                         event="rolled-back")
        self.retire()
        return self.op

    def _locked_away(self, recovered: list[Proof]) -> Operation | None:
        """An interrupted swap of a send whose token is locked (NUT-11) to a key this
        wallet cannot sign with now: the token is the payee's once swapped, so the send
        goes *forward* to ``pending`` with it (reclaimable later with a refund key, as
        any pending send), never back into this balance, where it could not be spent.
        None (resolve as usual) unless every output came back; only unsplit sends."""
        op = self.op
        if op.batches or len(recovered) != len(op.outputs):
            return None
        tokens = {o.secret for o in op.outputs[:op.send_output_count]}
        send = [p for p in recovered if p.secret in tokens]
        try:
            self.deps.keys.unlock_plan(send, int(time.time()))
        except LockedTokenError:
            log.info("send %s: interrupted locked send finished forward (its token is"
                     " locked to another key)", op.id)
            return self._pending(send, [p for p in recovered if p.secret not in tokens])
        return None

    # --- pending -> completed -----------------------------------------------------------

    def check_pending(self) -> Operation:
        """NUT-07 on the token's proofs: all spent means the recipient claimed it."""
        if self.op.state != OpState.PENDING:
            return self.op
        states = self.mint.client.check_state(list(self.op.send_ys))
        if all(s.state == ProofStateKind.SPENT for s in states):
            self._finalize()
        return self.op

    def mark_claimed(self) -> Operation:
        """The Watcher saw every proof of the token SPENT at the mint.

        Only a pending send finalizes; a repeated notice, or one that arrives
        after a rollback began, changes nothing.
        """
        if self.op.state == OpState.PENDING:
            self._finalize()
        return self.op

    def on_watched(self, what: Watched) -> None:
        if what is Watched.CLAIMED:
            self.mark_claimed()
        else:
            super().on_watched(what)

    def _finalize(self) -> None:
        self._unwatch()
        self._commit(self.op.moved(OpState.COMPLETED), event="finalized")
        self.retire()

    # --- rollback -----------------------------------------------------------------------

    def rollback(self) -> Operation:
        if self.op.state == OpState.ROLLING_BACK:  # an earlier attempt could not finish
            self._recover_rolling_back()
            return self.op
        if self.op.state == OpState.PREPARED:
            self._settle(self.op.moved(OpState.ROLLED_BACK), release=self.op.input_ys,
                         event="rolled-back")
            self.retire()
            return self.op
        self._require(OpState.PENDING)
        op = self.op
        fee = wait(self.deps.ledger.input_fee(op.mint_url, list(op.send_proofs)),
                   LEDGER_TIMEOUT, "ProofLedger")
        value = sum(p.amount for p in op.send_proofs) - fee
        if value <= 0:
            raise InvalidStateError(
                f"reclaiming send {op.id} would cost {fee}, more than it returns")
        # a locked token (NUT-11) is reclaimed with our refund key after its locktime,
        # or with the lock keys if they are ours; otherwise LockedTokenError says why,
        # before anything changes
        now = int(time.time())
        self.deps.keys.unlock_plan(op.send_proofs, now)
        cap = self.mint.client.max_array_length()
        if len(op.send_proofs) > cap:
            return self._split_rollback(cap, now)
        # the reclaim outputs (and the signed inputs) are persisted with the state,
        # before the swap leaves
        outputs = self._derive_outputs(split_amount(value), self.mint.active_keyset(op.unit))
        signed = self.deps.keys.sign_inputs(op.send_proofs, [o.blinded for o in outputs], now)
        self._commit(op.moved(OpState.ROLLING_BACK, reclaim_outputs=tuple(outputs),
                              send_proofs=signed))
        self._unwatch()
        return self._finish_rollback()

    def _finish_rollback(self) -> Operation:
        def put(op: Operation, outputs: Outputs) -> Operation:  # re-signed: SIG_ALL covers them
            signed = self.deps.keys.sign_inputs(op.send_proofs, [o.blinded for o in outputs],
                                                int(time.time()))
            return op.moved(op.state, reclaim_outputs=outputs, send_proofs=signed)

        try:
            sigs = self._with_active_outputs(
                lambda op: op.reclaim_outputs, put,
                lambda outputs: self.mint.client.swap(list(self.op.send_proofs),
                                                      [o.blinded for o in outputs]))
            op = self.op
            proofs = self._unblind(op.reclaim_outputs, sigs)
        except MintRejectedError as exc:
            op = self.op
            if exc.code not in (CODE_PROOFS_SPENT, CODE_OUTPUTS_ALREADY_SIGNED):
                raise
            # ambiguous: our own earlier reclaim, or the recipient was first. Check.
            proofs = self._restore(op.reclaim_outputs)
            if not proofs:
                self._finalize()
                raise InvalidStateError(
                    f"send {op.id} was claimed by the recipient before the rollback") from exc
        self._settle(op.moved(OpState.ROLLED_BACK), add=proofs, event="rolled-back")
        self.retire()
        return self.op

    def _split_rollback(self, cap: int, now: int) -> Operation:
        """The reclaim of a token with more proofs than the mint's array cap: one swap per
        slice of ``cap`` proofs, each with its own outputs (derived and committed with
        ``rolling_back``) and fee."""
        op = self.op
        chunks = chunked(op.send_proofs, cap)
        values = [sum(p.amount for p in c)
                  - wait(self.deps.ledger.input_fee(op.mint_url, list(c)), LEDGER_TIMEOUT,
                         "ProofLedger") for c in chunks]
        if min(values) <= 0:
            raise InvalidStateError(
                f"reclaiming send {op.id} would cost more than part of it returns")
        signed, outputs, batches = self._chunk_swaps(chunks, values, now)
        self._commit(op.moved(OpState.ROLLING_BACK, reclaim_outputs=outputs,
                              send_proofs=tuple(signed), reclaim_batches=batches,
                              reclaims_done=0))
        self._unwatch()
        return self._finish_split_rollback()

    def _finish_split_rollback(self) -> Operation:
        """The reclaim batches not done yet, one swap each, each recorded as it comes in
        (its proofs spendable at once); an ambiguous refusal is resolved for that batch."""
        for part in slices_of(self.op.reclaim_batches)[self.op.reclaims_done:]:
            op = self.op
            outputs = list(op.reclaim_outputs[part.outputs])
            try:
                sigs = self.mint.client.swap(list(op.send_proofs[part.inputs]),
                                             [o.blinded for o in outputs])
                proofs = self._unblind(outputs, sigs)
            except MintRejectedError as exc:
                if exc.code not in (CODE_PROOFS_SPENT, CODE_OUTPUTS_ALREADY_SIGNED):
                    raise
                proofs = self._restore(outputs)  # our own earlier reclaim, or the recipient's
                if not proofs:
                    self._claimed_during_reclaim()
                    raise InvalidStateError(
                        f"send {op.id} was claimed by the recipient before the rollback"
                    ) from exc
            self._reclaimed(proofs)
        return self.op

    def _reclaimed(self, proofs: list[Proof]) -> None:
        op = self.op
        done = op.reclaims_done + 1
        if done == len(op.reclaim_batches):
            self._settle(op.moved(OpState.ROLLED_BACK, reclaims_done=done), add=proofs,
                         event="rolled-back")
            self.retire()
        else:
            self._settle(op.moved(OpState.ROLLING_BACK, reclaims_done=done), add=proofs)

    def _claimed_during_reclaim(self) -> None:
        """The recipient spent the batch in flight: finalized when nothing was reclaimed,
        otherwise rolled back with the batches already back."""
        if self.op.reclaims_done == 0:
            self._finalize()
            return
        self._unwatch()
        self._commit(self.op.moved(OpState.ROLLED_BACK,
                                   error=f"reclaimed {self.op.reclaims_done} of"
                                         f" {len(self.op.reclaim_batches)} parts; the rest"
                                         " was claimed by the recipient"),
                     event="rolled-back")
        self.retire()

    def _recover_split_rollback(self) -> None:
        op = self.op
        part = slices_of(op.reclaim_batches)[op.reclaims_done]
        outputs = list(op.reclaim_outputs[part.outputs])
        proofs = self._restore(outputs)
        if proofs:
            self._reclaimed(proofs)
        else:
            states = self.mint.client.check_state(
                [secret_to_y(p.secret) for p in op.send_proofs[part.inputs]])
            if all(s.state == ProofStateKind.SPENT for s in states):
                self._claimed_during_reclaim()
                return
        if self.op.state == OpState.ROLLING_BACK:
            self._finish_split_rollback()

    # --- recovery -----------------------------------------------------------------------

    def recover(self) -> Operation:
        """Bring a rehydrated send to a resting state (DESIGN.md's recovery table)."""
        state = self.op.state
        if state == OpState.INIT:
            self._delete()
        elif state == OpState.EXECUTING:
            # an execute with an idempotency key is finished forward: its caller asks
            # again with the key and gets the token; without one, the swap is undone
            if wait(self.deps.ledger.has_key(self.op.id, SEND_EXECUTE), LEDGER_TIMEOUT,
                    "ProofLedger"):
                self.finish_execute()
            else:
                self._resolve_executing()
        elif state == OpState.PENDING:
            self.check_pending()
            if self.op.state == OpState.PENDING:
                self._watch_send()
                self.rest()
        elif state == OpState.ROLLING_BACK:
            self._recover_rolling_back()
        return self.op

    def _recover_rolling_back(self) -> None:
        op = self.op
        if op.reclaim_batches:
            self._recover_split_rollback()
            return
        proofs = self._restore(op.reclaim_outputs)
        if proofs:
            self._settle(op.moved(OpState.ROLLED_BACK), add=proofs, event="rolled-back")
            self.retire()
            return
        states = self.mint.client.check_state([secret_to_y(p.secret) for p in op.send_proofs])
        if all(s.state == ProofStateKind.SPENT for s in states):
            self._finalize()  # spent, and not by our reclaim: the recipient claimed it
        else:
            self._finish_rollback()


def change_output_count(amount: int, change: int) -> int:
    """A locked send derives counters for its change only (its token's outputs are
    P2PK secrets)."""
    return len(split_amount(change))


def _random_r() -> str:
    return PrivateKey().secret.hex()  # a valid scalar, from the OS's randomness


def swap_output_count(amount: int, change: int) -> int:
    """How many outputs a swap for ``amount`` with ``change`` back needs (a pure count)."""
    return len(split_amount(amount)) + len(split_amount(change))


class SendOperationActor(OperationActor, SendOperation):
    pass


class SendOperationProxy(ActorMemberMixin, pykka.ActorProxy[SendOperationActor]):
    operation = proxy_method(SendOperation.operation)
    prepare = proxy_method(SendOperation.prepare)
    execute = proxy_method(SendOperation.execute)
    check_pending = proxy_method(SendOperation.check_pending)
    mark_claimed = proxy_method(SendOperation.mark_claimed)
    rollback = proxy_method(SendOperation.rollback)
    recover = proxy_method(SendOperation.recover)
