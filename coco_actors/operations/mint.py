"""The mint saga: prepared (quote created) -> executing (outputs persisted, request
sent) -> completed; rolled_back when the quote can no longer be minted.

NUT-20: when the mint offers it, each quote is locked to a fresh wallet key (handed
out, and so persisted, before the quote request leaves) and every mint request for
it, first try or retry, is signed with that key's private key, derived again from
the mnemonic. The record keeps only the public key (``quote_pubkey``).
"""

from __future__ import annotations

import logging
import time

import pykka
from pykka.typing import ActorMemberMixin, proxy_method

from coco_actors.crypto.nut20 import sign_mint_quote
from coco_actors.errors import (
    CODE_OUTPUTS_ALREADY_SIGNED,
    CODE_QUOTE_ALREADY_ISSUED,
    CODE_QUOTE_REQUIRES_PUBKEY,
    CocoError,
    MintRejectedError,
    MintUnreachableError,
    NotFoundError,
    RateLimitedError,
)
from coco_actors.keys import WalletKey
from coco_actors.operations.base import (
    OperationActor,
    OperationBase,
    Watched,
)
from coco_actors.records import Operation, OpState
from coco_actors.wire import BlindingData, MintQuote, MintQuoteState, Proof, split_amount

log = logging.getLogger(__name__)

#: NUT-06 number of signed mint quotes.
NUT20 = 20


class MintOperation(OperationBase):
    """The mint saga's logic; :class:`MintOperationActor` runs it."""

    def create_quote(self) -> MintQuote:
        self._require(OpState.INIT)
        with self._abandon_on_error():
            client = self.mint.client
            key = self._new_quote_key() if client.recent_info().supports(NUT20) else None
            try:
                quote = client.create_mint_quote(self.op.amount, self.op.unit,
                                                 pubkey=key.public if key else None)
            except MintRejectedError as exc:
                if key is not None or exc.code != CODE_QUOTE_REQUIRES_PUBKEY:
                    raise
                key = self._new_quote_key()  # it requires NUT-20 but did not say so
                quote = client.create_mint_quote(self.op.amount, self.op.unit,
                                                 pubkey=key.public)
            self._commit(self.op.moved(
                OpState.PREPARED, quote_id=quote.quote, quote_request=quote.request,
                quote_expiry=quote.expiry, quote_pubkey=key.public if key else None,
                quote_key_index=key.index if key else None), event="prepared")
        if self.op.parent_id is None:  # a leg is watched once its transfer's melt paid
            self._watch_quote()  # once paid, the Watcher's notice mints it
        return quote

    def try_redeem(self) -> Operation:
        """Mint the quote if it is paid; otherwise leave it prepared (the caller waits)."""
        if self.op.state.terminal:
            return self.op
        self._require(OpState.PREPARED, OpState.EXECUTING)
        if self.op.state == OpState.EXECUTING:
            return self._resolve()
        quote = self.mint.client.get_mint_quote(self.op.quote_id or "")
        if quote.state == MintQuoteState.ISSUED:
            self._end_failed("quote was already issued")
            return self.op
        if quote.state == MintQuoteState.UNPAID and self.expired():
            if self.op.parent_id is not None:
                # a leg is redeemed only after its transfer paid the invoice: the value
                # is owed, so it is never given up (the mint should say PAID soon)
                log.error("mint %s of transfer %s: quote expired and still UNPAID after "
                          "the melt paid it; kept, tried again", self.op.id,
                          self.op.parent_id)
                return self.op
            self._end_failed("quote expired unpaid")
            return self.op
        if quote.state != MintQuoteState.PAID:
            return self.op
        self._quote_private_key()  # a key we lost: say so before any state changes
        outputs = self._derive_outputs(split_amount(self.op.amount),
                                       self.mint.active_keyset(self.op.unit))
        self._commit(self.op.moved(OpState.EXECUTING, outputs=tuple(outputs)))
        return self._mint()

    def expired(self, now: float | None = None) -> bool:
        """The quote's invoice can no longer be paid (its expiry has passed)."""
        expiry = self.op.quote_expiry
        return expiry is not None and (time.time() if now is None else now) > expiry

    def abandon(self, reason: str) -> Operation:
        """A transfer's leg whose melt did not pay: end it ``rolled_back`` (the quote is
        left unpaid at the mint). Only ``prepared``: nothing was asked to be minted."""
        if self.op.state.terminal:
            return self.op
        self._require(OpState.PREPARED)
        self._end_failed(reason)
        return self.op

    def on_watched(self, what: Watched) -> None:
        """The Watcher saw the quote paid: mint now (errors are logged, state kept).

        A transfer's leg does not redeem on its own: its transfer decides (it redeems
        only once its melt paid), so the notice is passed up to it."""
        if what is not Watched.QUOTE_PAID:
            super().on_watched(what)
            return
        if self.op.parent_id is not None:
            self._tell_parent()
            return
        try:
            self.try_redeem()
        except (MintUnreachableError, RateLimitedError) as exc:
            # the outcome is unknown (it may be executing now): the Watcher follows the
            # quote again, and its next notice (PAID, or ISSUED if our request got
            # through) retries, without waiting for a restart's recovery
            log.warning("mint %s: redeem after payment failed, retried: %s", self.op.id, exc)
            if not self.op.state.terminal:
                self._watch_quote()
        except CocoError as exc:
            log.warning("mint %s: redeem after payment failed: %s", self.op.id, exc)

    def _new_quote_key(self) -> WalletKey:
        """A fresh wallet key for one quote (NUT-20 asks for one per quote, so that the
        mint cannot link them), on the quote-key branch; its index is persisted before
        it is returned."""
        return self.deps.keys.new_quote_key()

    def _quote_private_key(self) -> bytes | None:
        """The private key of the quote's NUT-20 lock (None for an unlocked quote).

        A key the wallet cannot derive (a record from another mnemonic, say) is a
        NotFoundError; the operation stays where it is. Neither key is logged.
        """
        if self.op.quote_pubkey is None:
            return None
        index = self.op.quote_key_index
        key = None if index is None else self.deps.keys.quote_private_key(
            index, self.op.quote_pubkey)
        if key is None:
            log.error("mint %s: the wallet cannot derive the key its quote is locked to",
                      self.op.id)
            raise NotFoundError(f"mint {self.op.id}: the wallet cannot derive the NUT-20 key"
                                " its quote is locked to (restored from another mnemonic?)")
        return key

    def _signature(self, outputs: tuple[BlindingData, ...]) -> str | None:
        """NUT-20's signature of a mint request for a locked quote (a fresh one per try)."""
        key = self._quote_private_key()
        if key is None:
            return None
        return sign_mint_quote(key, self.op.quote_id or "", [o.blinded for o in outputs])

    def _mint(self) -> Operation:
        try:
            # outputs of a keyset the mint rotated are made again (committed) first
            sigs = self._with_active_outputs(
                lambda op: op.outputs, lambda op, outputs: op.moved(op.state, outputs=outputs),
                lambda outputs: self.mint.client.mint(self.op.quote_id or "",
                                                      [o.blinded for o in outputs],
                                                      signature=self._signature(outputs)))
        except MintRejectedError as exc:
            if exc.code in (CODE_QUOTE_ALREADY_ISSUED, CODE_OUTPUTS_ALREADY_SIGNED):
                return self._resolve()
            raise  # e.g. not paid: stays executing with its outputs, redeem again later
        self._complete(self._unblind(self.op.outputs, sigs))
        return self.op

    def _complete(self, proofs: list[Proof]) -> None:
        self._unwatch()
        self._settle(self.op.moved(OpState.COMPLETED), add=proofs, event="finalized")
        self._tell_parent()
        self.retire()

    def _end_failed(self, error: str) -> None:
        self._unwatch()
        self._commit(self.op.moved(OpState.ROLLED_BACK, error=error), event="rolled-back")
        self._tell_parent()
        self.retire()

    def _resolve(self) -> Operation:
        """An interrupted or ambiguous mint: were our outputs signed?"""
        proofs = self._restore(self.op.outputs)
        if proofs:
            self._complete(proofs)
            return self.op
        quote = self.mint.client.get_mint_quote(self.op.quote_id or "")
        if quote.state == MintQuoteState.PAID:
            return self._mint()  # the request never reached it: same outputs again
        if quote.state == MintQuoteState.ISSUED:
            self._end_failed("quote was issued to other outputs")
        return self.op

    def recover(self) -> Operation:
        if self.op.state == OpState.INIT:
            self._delete()
        elif self.op.state == OpState.EXECUTING:
            self._resolve()
        return self.op


class MintOperationActor(OperationActor, MintOperation):
    pass


class MintOperationProxy(ActorMemberMixin, pykka.ActorProxy[MintOperationActor]):
    operation = proxy_method(MintOperation.operation)
    create_quote = proxy_method(MintOperation.create_quote)
    try_redeem = proxy_method(MintOperation.try_redeem)
    abandon = proxy_method(MintOperation.abandon)
    discard = proxy_method(MintOperation.discard)
    recover = proxy_method(MintOperation.recover)
