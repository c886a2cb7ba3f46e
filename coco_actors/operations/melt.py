"""The melt saga (NUT-05/23 bolt11, NUT-08 change): pay a lightning invoice.

init -> prepared (quote, inputs held) -> executing (blank outputs persisted, and for
a swap-then-melt the swap's outputs) -> completed (PAID: change kept), or -> pending
(the payment is in flight; the Watcher follows the quote) -> completed | rolled_back.

The inputs are never released while the mint may still spend them: only a quote
the mint reports UNPAID *and* inputs NUT-07 reports UNSPENT justify it. A timeout
on the melt request is not a failure: the quote is asked. A melt's rollback makes
no request after it decides, so it never rests in ``rolling_back``.
"""

from __future__ import annotations

import logging

import pykka
from pykka.typing import ActorMemberMixin, proxy_method

from coco_actors.bolt11 import Invoice
from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.crypto.keysets import fee_for
from coco_actors.crypto.outputs import unblind_signatures
from coco_actors.errors import (
    CODE_INVOICE_ALREADY_PAID,
    CODE_QUOTE_PENDING,
    InsufficientFundsError,
    InvalidInputError,
    InvalidStateError,
    MintProtocolError,
    MintRejectedError,
    MintUnreachableError,
    RateLimitedError,
)
from coco_actors.operations.base import (
    LEDGER_TIMEOUT,
    OperationActor,
    OperationBase,
    Watched,
    wait,
)
from coco_actors.records import Operation, OpState
from coco_actors.selection import Selection, cover_proofs, select_for_melt
from coco_actors.wire import (
    BlindSignature,
    MeltQuote,
    MeltQuoteState,
    Proof,
    ProofStateKind,
    split_amount,
)

log = logging.getLogger(__name__)

#: How long a melt request may wait for the payment by default (seconds).
DEFAULT_WAIT = 60.0


def blank_count(overpaid: int) -> int:
    """NUT-08 blanks needed so that all of ``overpaid`` can come back as change (the
    mint returns every sat beyond the amount, the input fee and the fee it paid, in
    powers of two, on as many blanks as we send)."""
    return overpaid.bit_length()


def melt_input_fee(amount: int, ppk: int) -> int:
    """What a swap-then-melt adds for the melt's own input fee: the smallest ``f`` whose
    proofs (``amount + f`` split in powers of two, each charged ``ppk``) cost at most
    ``f``. (The exact fixed point need not exist: 52 at 1000 ppk cycles 3, 5, 4, 3.)
    Any sat of ``f`` the fee does not take comes back as NUT-08 change."""
    f = 0
    while fee_for([ppk] * len(split_amount(amount + f))) > f:
        f += 1
    return f


def _no_outputs(amount: int, change: int) -> int:
    return 0  # a melt derives its outputs with ``executing``, not with the hold


#: The requests whose 429 leaves a melt as it was before execute.
SWAP_ENDPOINT = "POST /v1/swap"
MELT_ENDPOINT = "POST /v1/melt/bolt11"


class MeltOperation(OperationBase):
    """The melt saga's logic; :class:`MeltOperationActor` runs it."""

    # --- prepare ------------------------------------------------------------------------

    def prepare(self, invoice: Invoice, swap: bool | None = None) -> Operation:
        """Ask the mint for a quote and hold inputs for amount + fee reserve + input fee.

        ``swap`` None picks the cheapest way: a direct melt (an exact set of proofs,
        or one whose surplus comes back as NUT-08 change); a swap first only where
        the mint offers no NUT-08 and no exact set exists. True forces a swap first.
        """
        self._require(OpState.INIT)
        with self._abandon_on_error():
            return self._prepare(invoice, swap)

    def _prepare(self, invoice: Invoice, swap: bool | None) -> Operation:
        quote = self._new_quote(invoice)
        client = self.mint.client
        target = quote.amount + quote.fee_reserve
        keyset = self.mint.active_keyset(self.op.unit)
        if swap is None and not client.recent_info().supports(8):
            swap = True  # without NUT-08 an overpaid melt loses the surplus
        melt_fee = 0
        if swap:
            melt_fee = melt_input_fee(target, keyset.input_fee_ppk)
            selection, _ = self._hold(target + melt_fee, keyset.id, invoice, exact_ok=False)
            fee = selection.fee + melt_fee
        else:
            selection, _ = self._hold(target, keyset.id, invoice, exact_ok=True)
            fee = selection.fee
        ys = tuple(secret_to_y(p.secret) for p in selection.proofs)
        self._commit(self.op.moved(
            OpState.PREPARED, amount=quote.amount, fee=fee, input_amount=selection.total,
            needs_swap=bool(swap), input_ys=ys, quote_id=quote.quote,
            quote_request=invoice.request, payment_hash=invoice.payment_hash,
            fee_reserve=quote.fee_reserve), event="prepared")
        return self.op

    def _new_quote(self, invoice: Invoice) -> MeltQuote:
        other = wait(self.deps.ledger.invoice_owner(invoice.payment_hash), LEDGER_TIMEOUT,
                     "ProofLedger")
        if other is not None:  # asked before the mint is: no request for a refused melt
            raise InvalidStateError(f"this invoice is already paid or being paid by melt {other}")
        quote = self.mint.client.create_melt_quote(invoice.request, self.op.unit)
        # in sat the quote is the invoice's amount; in another unit the mint converts
        if self.op.unit == "sat" and quote.amount != invoice.amount_sat:
            raise MintProtocolError(
                f"melt quote is for {quote.amount} {self.op.unit}, the invoice for "
                f"{invoice.amount_sat}", mint_url=self.op.mint_url,
                endpoint="POST /v1/melt/quote/bolt11")
        if quote.state != MeltQuoteState.UNPAID:
            raise InvalidStateError(f"the mint reports this invoice {quote.state.value}")
        return quote

    def prepare_foreign(self, invoice: Invoice, proofs: tuple[Proof, ...]) -> Operation:
        """A receive-into's melt leg: a direct melt of a token's proofs, not the wallet's.

        The ledger records them as held by this melt in the commit of ``prepared``
        (:meth:`ProofLedger.hold_foreign`), so they are never spendable; a melt that
        does not happen forgets them (its transfer receives the token instead), and
        the NUT-08 change of one that does is the wallet's. Needs NUT-08 (without it
        the unused reserve would be lost): refused otherwise.
        """
        self._require(OpState.INIT)
        with self._abandon_on_error():
            if not self.mint.client.recent_info().supports(8):
                raise InvalidInputError(f"{self.op.mint_url} returns no NUT-08 change; "
                                        "receive the token normally")
            quote = self._new_quote(invoice)
            fee = self._input_fee(list(proofs))
            total = sum(p.amount for p in proofs)
            if quote.amount + quote.fee_reserve + fee > total:
                raise InsufficientFundsError(
                    f"the token ({total}) cannot cover {quote.amount} plus the fee reserve "
                    f"{quote.fee_reserve} and the input fee {fee}",
                    needed=quote.amount + quote.fee_reserve + fee, available=total)
            prepared = self.op.moved(
                OpState.PREPARED, amount=quote.amount, fee=fee, input_amount=total,
                input_ys=tuple(secret_to_y(p.secret) for p in proofs), quote_id=quote.quote,
                quote_request=invoice.request, payment_hash=invoice.payment_hash,
                fee_reserve=quote.fee_reserve, foreign_inputs=True)
            self.op = wait(self.deps.ledger.hold_foreign(
                prepared, proofs, self._event(prepared, "prepared")),
                LEDGER_TIMEOUT, "ProofLedger")
            self._log_transition()
        return self.op

    def _hold(self, amount: int, keyset_id: str, invoice: Invoice,
              exact_ok: bool) -> tuple[Selection, int]:
        return wait(self.deps.ledger.hold(
            self.op.id, self.op.mint_url, amount, keyset_id=keyset_id,
            outputs_for=_no_outputs, select=select_for_melt if exact_ok else cover_proofs,
            invoice=invoice.payment_hash), LEDGER_TIMEOUT, "ProofLedger")

    # --- execute ------------------------------------------------------------------------

    def execute(self, wait_s: float = DEFAULT_WAIT) -> Operation:
        """Persist the blanks (and a swap's outputs), then melt; completed or pending.

        ``wait_s`` bounds how long the mint may hold the answer: past it the quote is
        asked, and a payment still in flight leaves the melt ``pending``.
        """
        self._require(OpState.PREPARED)
        op = self.op
        try:
            return self._execute(op, wait_s)
        except RateLimitedError as exc:
            # a 429 on the swap or the melt itself is no outcome: the mint did nothing,
            # so the melt is prepared again as it was, to be executed later (a 429 on
            # a later question, after an unknown outcome, leaves it executing)
            if (self.op.state == OpState.EXECUTING and not self.op.swapped
                    and exc.endpoint in (SWAP_ENDPOINT, MELT_ENDPOINT)):
                self._commit(op.moved(OpState.PREPARED))
            raise

    def _execute(self, op: Operation, wait_s: float) -> Operation:
        keyset = self.mint.active_keyset(op.unit)
        inputs = self._inputs()
        if op.needs_swap:
            swap_fee = self._input_fee(inputs)
            melt_total = op.amount + op.fee_reserve + (op.fee - swap_fee)
            melt_amounts = split_amount(melt_total)
            melt_fee = fee_for([keyset.input_fee_ppk] * len(melt_amounts))
            change_amounts = split_amount(op.input_amount - swap_fee - melt_total)
            outputs = self._derive_outputs(melt_amounts + change_amounts, keyset)
            blanks = self._derive_outputs(
                [1] * blank_count(melt_total - op.amount - melt_fee), keyset)
            # the fees as they will be charged (prepare showed melt_input_fee's bound)
            self._commit(op.moved(OpState.EXECUTING, outputs=tuple(outputs),
                                  send_output_count=len(melt_amounts),
                                  change_outputs=tuple(blanks), fee=swap_fee + melt_fee))
            inputs = self._swap(inputs)
            if self.op.state.terminal:
                return self.op
        else:
            overpaid = op.input_amount - op.amount - op.fee
            blanks = self._derive_outputs([1] * blank_count(overpaid), keyset)
            self._commit(op.moved(OpState.EXECUTING, change_outputs=tuple(blanks)))
        return self._melt(inputs, wait_s)

    def _swap(self, inputs: list[Proof]) -> list[Proof]:
        """Swap-then-melt, first leg: the exact melt inputs (held) and the change (kept)."""
        try:
            # outputs of a keyset the mint rotated meanwhile: made again, committed first
            sigs = self._with_active_outputs(
                lambda op: op.outputs, lambda op, outputs: op.moved(op.state, outputs=outputs),
                lambda outputs: self.mint.client.swap(inputs, [o.blinded for o in outputs]))
        except MintRejectedError as exc:
            self._resolve_swap(reason=exc)
            raise
        proofs = self._unblind(self.op.outputs, sigs)
        return self._swapped(proofs)

    def _swapped(self, proofs: list[Proof]) -> list[Proof]:
        op = self.op
        melt_inputs, change = proofs[:op.send_output_count], proofs[op.send_output_count:]
        self.op = wait(self.deps.ledger.settle(
            op.moved(OpState.EXECUTING, swapped=True,
                     input_ys=tuple(secret_to_y(p.secret) for p in melt_inputs)),
            spend=op.input_ys, add=change, hold=melt_inputs), LEDGER_TIMEOUT, "ProofLedger")
        self._log_transition()
        return melt_inputs

    def _resolve_swap(self, reason: Exception | None = None) -> None:
        """An interrupted or refused swap-then-melt swap: did it happen (NUT-07)?"""
        op = self.op
        states = self.mint.client.check_state(list(op.input_ys))
        kinds = {s.state for s in states}
        if ProofStateKind.PENDING in kinds:
            return  # the mint is still working on it; look again later
        if kinds == {ProofStateKind.UNSPENT}:
            self._end(OpState.ROLLED_BACK, error=str(reason or "swap did not happen"),
                      release=op.input_ys)
            return
        recovered = self._restore(op.outputs)
        if len(recovered) < len(op.outputs):
            log.error("melt %s: the swap spent its inputs but only %d of %d outputs are "
                      "signed; left executing", op.id, len(recovered), len(op.outputs))
            return
        self._swapped(recovered)

    def _melt(self, inputs: list[Proof], wait_s: float) -> Operation:
        op = self.op
        try:
            # blanks of a keyset the mint rotated meanwhile: made again, committed first
            quote = self._with_active_outputs(
                lambda op: op.change_outputs,
                lambda op, blanks: op.moved(op.state, change_outputs=blanks),
                lambda blanks: self.mint.client.melt(op.quote_id or "", inputs,
                                                     [b.blinded for b in blanks], wait=wait_s))
        except MintRejectedError as exc:
            return self._after_rejection(exc)
        except MintUnreachableError:
            quote = self._quote()  # may raise: the outcome is unknown, it stays executing
            if quote.state == MeltQuoteState.UNPAID:
                raise  # not known to have arrived: recovery or check_pending decides
        return self._on_quote(quote)

    def _after_rejection(self, exc: MintRejectedError) -> Operation:
        if exc.code in (CODE_QUOTE_PENDING, CODE_INVOICE_ALREADY_PAID):
            return self._on_quote(self._quote())  # ours from before: follow the quote
        self._release_if_unspent(str(exc))
        if self.op.state == OpState.PENDING:
            return self.op  # the mint is still paying with our inputs: followed
        raise exc  # refused: released (rolled_back), or left executing if the mint is unsure

    # --- deciding from the mint's word ----------------------------------------------------

    def _quote(self) -> MeltQuote:
        return self.mint.client.get_melt_quote(self.op.quote_id or "")

    def _on_quote(self, quote: MeltQuote) -> Operation:
        if quote.state == MeltQuoteState.PAID:
            self._complete(quote)
        elif quote.state == MeltQuoteState.PENDING:
            self._to_pending()
        else:
            self._release_if_unspent("the lightning payment failed")
        return self.op

    def _to_pending(self) -> None:
        if self.op.state != OpState.PENDING:
            self._commit(self.op.moved(OpState.PENDING), event="pending")
            self._tell_parent()
        self._watch_melt_quote()
        self.rest()

    def _release_if_unspent(self, reason: str) -> None:
        """UNPAID at the mint: release the inputs only if NUT-07 says they are unspent."""
        op = self.op
        states = self.mint.client.check_state(list(op.input_ys))
        kinds = {s.state for s in states}
        if kinds == {ProofStateKind.UNSPENT}:
            self._end(OpState.ROLLED_BACK, error=reason, release=op.input_ys)
        elif ProofStateKind.PENDING in kinds:
            self._to_pending()
        elif op.foreign_inputs:  # unpaid, a token's proofs spent: its sender claimed them
            self._end(OpState.ROLLED_BACK, error="the token was claimed by someone else",
                      release=op.input_ys)
        else:
            log.error("melt %s: the quote is unpaid but its inputs are spent; left %s",
                      op.id, op.state.value)

    def _complete(self, quote: MeltQuote) -> None:
        op = self.op
        change = self._change(quote.change)
        held = self._inputs()
        paid_in = sum(p.amount for p in held)
        change_amount = sum(p.amount for p in change)
        fee_paid = paid_in - op.amount - self._input_fee(held) - change_amount
        if fee_paid < 0:
            log.error("melt %s: change exceeds what was paid in (%d); recorded as fee 0",
                      op.id, fee_paid)
            fee_paid = 0
        self._unwatch()
        self._settle(op.moved(OpState.COMPLETED, preimage=quote.payment_preimage,
                              change_amount=change_amount, fee_paid=fee_paid),
                     spend=op.input_ys, add=change, event="finalized")
        self._tell_parent()
        self.retire()

    def _change(self, sigs: tuple[BlindSignature, ...]) -> list[Proof]:
        """The NUT-08 change: from the mint's answer, else restored from the blanks."""
        blanks = list(self.op.change_outputs)
        if not blanks:
            return []
        keyset = self.mint.keyset(blanks[0].keyset_id)
        require_dleq = self.mint.client.requires_dleq()  # the answer's and restore's alike
        if sigs:
            return unblind_signatures(blanks[:len(sigs)], list(sigs), keyset, blank=True,
                                      require_dleq=require_dleq)
        result = self.mint.client.restore([b.blinded for b in blanks])
        by_b = {b.B_: b for b in blanks}
        signed = [(by_b[o.B_], s) for o, s in zip(result.outputs, result.signatures, strict=True)
                  if o.B_ in by_b]
        return unblind_signatures([b for b, _ in signed], [s for _, s in signed], keyset,
                                  blank=True, require_dleq=require_dleq)

    def _end(self, state: OpState, *, error: str | None = None,
             release: tuple[str, ...] = ()) -> None:
        op = self.op
        # a melt that did not happen charged no melt fee: only a swap-then-melt's swap fee
        fee = op.fee - self._input_fee(self._inputs()) if op.swapped else 0
        self._unwatch()
        event = "rolled-back" if state == OpState.ROLLED_BACK else "finalized"
        if op.foreign_inputs:  # a token's proofs were never the wallet's: forgotten
            self._settle(op.moved(state, error=error, fee=fee), spend=release, event=event)
        else:
            self._settle(op.moved(state, error=error, fee=fee), release=release, event=event)
        self._tell_parent()
        self.retire()

    def _inputs(self) -> list[Proof]:
        return wait(self.deps.ledger.proofs_of(self.op.id), LEDGER_TIMEOUT, "ProofLedger")

    def _input_fee(self, proofs: list[Proof]) -> int:
        return wait(self.deps.ledger.input_fee(self.op.mint_url, proofs), LEDGER_TIMEOUT,
                    "ProofLedger")

    # --- pending, rollback, recovery ---------------------------------------------------

    def on_watched(self, what: Watched) -> None:
        if what is Watched.MELT_DECIDED:
            self.check_pending()
        else:
            super().on_watched(what)

    def check_pending(self) -> Operation:
        """Ask the mint about a pending melt's quote and settle what is decided (also one
        left ``executing`` by a mint that could not be reached)."""
        if self.op.state in (OpState.PENDING, OpState.EXECUTING):
            self.recover()
        return self.op

    def rollback(self) -> Operation:
        """Prepared: release. Pending: only once the mint says UNPAID and the inputs are
        unspent; while the payment may still go through, refused (nothing changes)."""
        op = self.op
        if op.state == OpState.PREPARED:
            self._end(OpState.ROLLED_BACK, release=op.input_ys)
            return self.op
        self._require(OpState.PENDING, OpState.EXECUTING)
        if op.needs_swap and not op.swapped:
            raise InvalidStateError(f"melt {op.id} is executing its swap; try again later")
        quote = self._quote()
        if quote.state == MeltQuoteState.UNPAID:
            self._release_if_unspent("rolled back")
            if self.op.state == OpState.ROLLED_BACK:
                return self.op
        elif quote.state == MeltQuoteState.PAID:
            self._complete(quote)
            raise InvalidStateError(f"melt {op.id} was paid; it cannot be rolled back")
        raise InvalidStateError(
            f"the payment of melt {op.id} may still go through; it cannot be rolled back")

    def recover(self) -> Operation:
        """Bring a rehydrated melt to a resting state (DESIGN.md's melt recovery table)."""
        op = self.op
        if op.state == OpState.INIT:
            self._delete()
        elif op.state == OpState.EXECUTING:
            if op.needs_swap and not op.swapped:
                self._resolve_swap()
                if self.op.state != OpState.EXECUTING or not self.op.swapped:
                    return self.op
            self._on_quote(self._quote())
        elif op.state == OpState.PENDING:
            self._watch_melt_quote()  # first: a mint that cannot be asked now still decides
            self._on_quote(self._quote())
        return self.op


class MeltOperationActor(OperationActor, MeltOperation):
    pass


class MeltOperationProxy(ActorMemberMixin, pykka.ActorProxy[MeltOperationActor]):
    operation = proxy_method(MeltOperation.operation)
    prepare = proxy_method(MeltOperation.prepare)
    prepare_foreign = proxy_method(MeltOperation.prepare_foreign)
    execute = proxy_method(MeltOperation.execute)
    check_pending = proxy_method(MeltOperation.check_pending)
    rollback = proxy_method(MeltOperation.rollback)
    discard = proxy_method(MeltOperation.discard)
    recover = proxy_method(MeltOperation.recover)

