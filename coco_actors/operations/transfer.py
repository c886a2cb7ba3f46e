"""The transfer saga (issue 17): move value from one mint to another over lightning.

Two legs, each the existing saga with its own record and actor: a mint operation at
``to_mint_url`` (its quote's invoice is what gets paid) and a melt at ``mint_url``
paying it. This actor drives them by asking their actors (through the Supervisor's
lookups, :class:`Legs`); a leg that ends, or whose melt goes pending, tells it back
through the Supervisor (:meth:`TransferOperation.on_leg`).

init (leg ids chosen) -> prepared (mint quote created, melt prepared with inputs held)
-> executing (committed before the melt leg executes) -> completed | pending
(lightning in flight, or the melt paid and the redeem waits for ``to_mint_url``) ->
completed | rolled_back.

The redeem at ``to_mint_url`` is asked only once the melt leg is completed (PAID):
the mint leg is not watched before, and passes a Watcher notice up instead of
redeeming on it. A transfer's state is always re-read from its legs' records, so a
crash between a leg's commit and its notice loses nothing (recovery re-reads them).

*Receive into a mint you choose* is a transfer whose ``inputs`` are a token's proofs:
its melt leg melts them at the token's mint (:meth:`MeltOperation.prepare_foreign`),
never holding them as the wallet's. If that melt does not pay (UNPAID, inputs
unspent), the token is received at its own mint by a third leg, a receive
(``receive_id``), so its sender cannot spend it again; the transfer then ends
``rolled_back`` with ``change_amount`` = what that receive got. :func:`fit_amount`
finds the amount such a transfer can move.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import pykka
from pykka.typing import ActorMemberMixin, proxy_method

from coco_actors.actors import tell
from coco_actors.bolt11 import decode as decode_invoice
from coco_actors.errors import (
    InvalidStateError,
    MintError,
    MintProtocolError,
    TokenSpentError,
)
from coco_actors.events import Emission
from coco_actors.operations.base import (
    LEDGER_TIMEOUT,
    MintContext,
    OperationActor,
    OperationBase,
    OperationDeps,
    wait,
)
from coco_actors.operations.melt import MeltOperationProxy
from coco_actors.operations.mint import MintOperationProxy
from coco_actors.operations.receive import ReceiveOperationProxy
from coco_actors.records import Operation, OperationId, OpState, new_operation_id
from coco_actors.tokens import Token
from coco_actors.watcher import WatcherActor
from coco_actors.wire import Proof

log = logging.getLogger(__name__)

#: How long a leg's step may take beyond the wait it was given (it talks to a mint).
LEG_MARGIN = 60.0
#: How long a melt executed by recovery may wait for the payment (then it is pending).
RECOVERY_MELT_WAIT = 20.0
#: How often a redeem waiting for ``to_mint`` to see the payment asks it again.
REDEEM_POLL_INTERVAL = 0.5
#: How many fee reserves :func:`fit_amount` may ask for (each is two quotes).
FIT_ROUNDS = 5

__all__ = ["FIT_ROUNDS", "Legs", "TransferOperation", "TransferOperationActor",
           "TransferOperationProxy", "fit_amount"]


def fit_amount(total: int, fee: int, reserve_of: Callable[[int], int],
               rounds: int = FIT_ROUNDS) -> int | None:
    """The largest ``a`` with ``a + reserve_of(a) + fee <= total`` that at most ``rounds``
    asks find (None: no ``a`` of at least 1 fits, or none was found).

    The reserve is only known from a melt quote, so it is asked, not computed: from
    ``a = total - fee``, an ``a`` that does not fit is lowered by its excess (then, once
    one fits, the gap is halved); one that fits is raised by the room it leaves, never to
    an ``a`` known not to fit. Runs on the caller's thread (``reserve_of`` asks mints).
    """
    budget = total - fee
    best: int | None = None
    too_big = budget + 1  # the smallest amount known not to fit
    a = budget
    for _ in range(rounds):
        if a < 1 or a >= too_big or (best is not None and a <= best):
            break
        reserve = reserve_of(a)
        if a + reserve <= budget:
            best = a
            a = min(budget - reserve, too_big - 1)
        else:
            too_big = a
            a = min(budget - reserve, a - 1) if best is None else (best + too_big) // 2
    return best


class Legs(Protocol):
    """The Supervisor's lookups as a transfer actor needs them (asks, on its thread).

    The Supervisor never asks a transfer actor, so these asks cannot deadlock.
    """

    def new_mint_leg(self, mint_url: str, amount: int, op_id: OperationId,
                     parent_id: OperationId) -> MintOperationProxy: ...

    def new_melt_leg(self, mint_url: str, amount: int, op_id: OperationId,
                     parent_id: OperationId) -> MeltOperationProxy: ...

    def new_receive_leg(self, mint_url: str, amount: int, op_id: OperationId,
                        parent_id: OperationId) -> ReceiveOperationProxy: ...

    def mint_leg(self, op_id: OperationId) -> MintOperationProxy: ...

    def melt_leg(self, op_id: OperationId) -> MeltOperationProxy: ...

    def receive_leg(self, op_id: OperationId) -> ReceiveOperationProxy: ...


class TransferOperation(OperationBase):
    """The transfer saga's logic; :class:`TransferOperationActor` runs it.

    ``self.mint`` is the source mint; the legs talk to their own mints.
    """

    def __init__(self, op: Operation, mint: MintContext, deps: OperationDeps,
                 legs: Legs) -> None:
        OperationBase.__init__(self, op, mint, deps)
        self.legs = legs

    # --- prepare ------------------------------------------------------------------------

    def prepare(self, inputs: tuple[Proof, ...] = ()) -> Operation:
        """Create the mint quote at ``to_mint_url`` and prepare the melt paying it.

        The leg ids are committed (``init``) before either leg exists, so recovery can
        undo them; anything that fails here undoes the legs and deletes the record:
        a refused transfer changes nothing and leaves no history entry. ``inputs``: a
        receive-into's token proofs, which the melt leg melts instead of the wallet's.
        """
        self._require(OpState.INIT)
        op = self._commit(self.op.moved(OpState.INIT, melt_id=new_operation_id(),
                                        mint_leg_id=new_operation_id(), inputs=inputs))
        try:
            mint_leg = self.legs.new_mint_leg(op.to_mint_url or "", op.amount,
                                              self._mint_leg_id(), op.id)
            quote = wait(mint_leg.create_quote(), LEG_MARGIN, "mint leg")
            invoice = decode_invoice(quote.request)
            if invoice.amount_sat != op.amount:
                raise MintProtocolError(
                    f"mint quote invoice is for {invoice.amount_sat} sat, asked {op.amount}",
                    mint_url=op.to_mint_url or "", endpoint="POST /v1/mint/quote/bolt11")
            melt_leg = self.legs.new_melt_leg(op.mint_url, op.amount, self._melt_id(), op.id)
            if op.inputs:
                melt = wait(melt_leg.prepare_foreign(invoice, op.inputs), LEG_MARGIN,
                            "melt leg")
            else:
                melt = wait(melt_leg.prepare(invoice, None), LEG_MARGIN, "melt leg")
            self._commit(self.op.moved(
                OpState.PREPARED, fee_reserve=melt.fee_reserve, fee=melt.fee,
                input_amount=melt.input_amount), event="prepared")
        except BaseException:
            self._undo_init()
            raise
        return self.op

    def _undo_init(self) -> None:
        """Forget the legs (never paid) and this record; errors are logged, and what is
        left is undone by the next recovery (this record still names the legs)."""
        try:
            self._discard_legs()
        except Exception as exc:
            log.error("transfer %s: its legs could not be undone now (%s); recovery will",
                      self.op.id, type(exc).__name__)
            return
        self._delete()

    def _discard_legs(self) -> None:
        for leg_id, lookup in ((self.op.melt_id, self.legs.melt_leg),
                               (self.op.mint_leg_id, self.legs.mint_leg)):
            if leg_id is None:
                continue
            leg = self._leg(leg_id)
            if leg is None or leg.state.terminal:
                continue
            wait(lookup(leg_id).discard(), LEG_MARGIN, "leg")

    # --- execute ------------------------------------------------------------------------

    def execute(self, wait_s: float) -> Operation:
        """Commit ``executing``, melt, then (once PAID) redeem at ``to_mint_url``.

        Returns within about ``wait_s`` seconds: ``completed``, ``pending`` (finished
        later by the legs' notices) or ``rolled_back`` (the melt did not pay).
        """
        self._require(OpState.PREPARED)
        if self._finish_interrupted_rollback():
            raise InvalidStateError(f"transfer {self.op.id} was being rolled back; it is "
                                    "rolled back now")
        self._commit(self.op.moved(OpState.EXECUTING))
        deadline = time.monotonic() + wait_s
        self._execute_melt(wait_s)
        return self._follow(deadline)

    def _execute_melt(self, wait_s: float) -> None:
        """Run the melt leg; an error the melt leg settled (rolled back) is followed,
        one that left it undecided (executing) is raised: this stays executing."""
        melt = self.legs.melt_leg(self._melt_id())
        try:
            wait(melt.execute(wait_s), wait_s + LEG_MARGIN, "melt leg")
        except MintError as exc:
            leg = self._leg(self._melt_id())
            if leg is not None and leg.state == OpState.EXECUTING:
                raise
            log.warning("transfer %s: melt leg ended with %s", self.op.id, exc)

    # --- following the legs -------------------------------------------------------------

    def _follow(self, deadline: float | None = None) -> Operation:
        """Decide from the legs' records: redeem once the melt is paid, end once it
        rolled back, pending while the payment is in flight. ``deadline``: how long a
        redeem may wait for ``to_mint_url`` to see the payment (None: ask once)."""
        if self.op.state.terminal or self.op.state in (OpState.INIT, OpState.PREPARED):
            return self.op
        melt = self._leg(self._melt_id())
        if melt is None:
            log.error("transfer %s: its melt leg %s is gone; left %s", self.op.id,
                      self.op.melt_id, self.op.state.value)
        elif melt.state == OpState.COMPLETED:
            self._redeem(melt, deadline)
        elif melt.state == OpState.ROLLED_BACK:
            self._roll_back(melt.error or "the melt leg rolled back")
        elif melt.state == OpState.PENDING:
            self._to_pending()
        return self.op

    def _redeem(self, melt: Operation, deadline: float | None) -> None:
        if (self.op.fee_paid, self.op.fee, self.op.change_amount) != (
                melt.fee_paid, melt.fee, melt.change_amount):
            self._commit(self.op.moved(self.op.state, fee_paid=melt.fee_paid, fee=melt.fee,
                                       change_amount=melt.change_amount))
        mint_leg = self._leg(self._mint_leg_id())
        while mint_leg is not None and not mint_leg.state.terminal:
            try:
                mint_leg = wait(self.legs.mint_leg(self._mint_leg_id()).try_redeem(),
                                LEG_MARGIN, "mint leg")
            except MintError as exc:  # to_mint cannot tell now: the value is owed, retried
                log.warning("transfer %s: redeem at %s deferred: %s", self.op.id,
                            self.op.to_mint_url, exc)
                break
            if mint_leg.state.terminal or deadline is None or time.monotonic() >= deadline:
                break
            time.sleep(REDEEM_POLL_INTERVAL)  # to_mint has not seen the payment yet
        if mint_leg is None:
            log.error("transfer %s: its mint leg %s is gone; left %s", self.op.id,
                      self.op.mint_leg_id, self.op.state.value)
            return
        if mint_leg.state == OpState.COMPLETED:
            self._commit(self.op.moved(OpState.COMPLETED, received=mint_leg.amount,
                                       error=None), event="finalized")
            self.retire()
        elif mint_leg.state == OpState.ROLLED_BACK:
            log.error("transfer %s: the melt paid but the mint leg ended (%s); left %s",
                      self.op.id, mint_leg.error, self.op.state.value)
        else:
            self._to_pending()
            self._watch_leg_quote(mint_leg)

    def _roll_back(self, reason: str) -> None:
        mint_leg = self._leg(self._mint_leg_id())
        if mint_leg is not None and not mint_leg.state.terminal:
            wait(self.legs.mint_leg(self._mint_leg_id()).abandon("its melt did not pay"),
                 LEG_MARGIN, "mint leg")
        if self.op.inputs and self.op.state in (OpState.EXECUTING, OpState.PENDING):
            self._receive_instead(reason)
            return
        self._commit(self.op.moved(OpState.ROLLED_BACK, error=reason), event="rolled-back")
        self.retire()

    def _receive_instead(self, reason: str) -> None:
        """A receive-into asked to execute whose melt did not happen: its melt leg has
        forgotten the token's proofs (unspent), so they are swapped at their own mint by
        a receive leg, whose id is committed first. Left pending (retried by recovery and
        ``check_pending``) while that mint cannot be reached. (A prepared one rolled
        back was never accepted: its token is just forgotten.)"""
        if self.op.receive_id is None:
            self._commit(self.op.moved(self.op.state, receive_id=new_operation_id()))
        leg_id = self.op.receive_id or OperationId("")
        leg = self._leg(leg_id)
        try:
            if leg is None:
                actor = self.legs.new_receive_leg(self.op.mint_url, self.op.input_amount,
                                                  leg_id, self.op.id)
                token = Token(mint=self.op.mint_url, proofs=self.op.inputs, unit=self.op.unit)
                wait(actor.prepare(token), LEG_MARGIN, "receive leg")
                wait(actor.execute(), LEG_MARGIN, "receive leg")
            elif not leg.state.terminal:
                wait(self.legs.receive_leg(leg_id).recover(), LEG_MARGIN, "receive leg")
        except (MintError, TokenSpentError) as exc:  # settled in the leg's record, or not
            log.warning("transfer %s: receiving its token at %s: %s", self.op.id,
                        self.op.mint_url, exc)
        leg = self._leg(leg_id)
        if leg is None or not leg.state.terminal:
            self._to_pending()
            return
        if leg.state == OpState.COMPLETED:
            self._commit(self.op.moved(
                OpState.ROLLED_BACK, fee=leg.fee, fee_paid=0, change_amount=leg.amount,
                error=f"{reason}; the token was received at {self.op.mint_url} instead"),
                event="rolled-back")
        else:
            self._commit(self.op.moved(
                OpState.ROLLED_BACK, fee=0, fee_paid=0, change_amount=0,
                error=f"{reason}; the token could not be received either: {leg.error}"),
                event="rolled-back")
        self.retire()

    def _to_pending(self) -> None:
        if self.op.state != OpState.PENDING:
            self._commit(self.op.moved(OpState.PENDING), event="pending")
        self.rest()

    def _watch_leg_quote(self, mint_leg: Operation) -> None:
        """The melt paid, the mint has not issued yet: the Watcher follows the leg's
        quote, and its notice comes back here through the leg (:meth:`on_leg`)."""
        if self.deps.watcher is not None and mint_leg.quote_id:
            tell(self.deps.watcher, WatcherActor.watch_quote, mint_leg.id,
                 mint_leg.mint_url, mint_leg.quote_id)

    def on_leg(self, leg_id: OperationId) -> None:
        """A leg moved (a tell from the Supervisor): follow it (errors logged, state kept)."""
        if leg_id not in (self.op.melt_id, self.op.mint_leg_id):
            log.warning("transfer %s: notice from %s, not one of its legs", self.op.id, leg_id)
            return
        if self.op.state not in (OpState.EXECUTING, OpState.PENDING):
            return  # prepared (a leg's own notice), or over already
        try:
            self._follow()
        except MintError as exc:
            log.warning("transfer %s: following leg %s deferred: %s", self.op.id, leg_id, exc)

    # --- rollback, check, recovery ----------------------------------------------------------

    def rollback(self) -> Operation:
        """Prepared: release the melt's inputs and end the mint leg. Executing or pending:
        only if the melt leg's own rollback succeeds (UNPAID and unspent)."""
        op = self.op
        self._require(OpState.PREPARED, OpState.EXECUTING, OpState.PENDING)
        melt = self._leg(self._melt_id())
        if melt is not None and melt.state == OpState.COMPLETED:
            raise InvalidStateError(f"transfer {op.id}: its melt was paid; it cannot be "
                                    "rolled back (the redeem at the other mint follows)")
        if melt is not None and not melt.state.terminal:
            try:
                wait(self.legs.melt_leg(self._melt_id()).rollback(), LEG_MARGIN, "melt leg")
            except InvalidStateError as exc:
                raise InvalidStateError(f"transfer {op.id}: {exc}") from None
        self._roll_back("rolled back")
        return self.op

    def check_pending(self) -> Operation:
        """Ask the mints about an executing or pending transfer and settle what is decided."""
        if self.op.state in (OpState.EXECUTING, OpState.PENDING):
            self.recover()
        return self.op

    def recover(self) -> Operation:
        """Bring a rehydrated transfer to a resting state (README, Recovery, transfers).

        It drives its legs' recovery itself (recovery skips legs), so no leg is driven
        twice at once."""
        op = self.op
        if op.state == OpState.INIT:
            self._discard_legs()
            self._delete()
            return self.op
        if op.state == OpState.PREPARED:
            if not self._finish_interrupted_rollback():
                self.rest()  # left for the caller, as a prepared melt is
            return self.op
        if op.state not in (OpState.EXECUTING, OpState.PENDING):
            return self.op
        melt = self._leg(self._melt_id())
        if melt is not None and melt.state == OpState.PREPARED:
            self._resume_melt(melt)
        elif melt is not None and melt.state in (OpState.EXECUTING, OpState.PENDING):
            wait(self.legs.melt_leg(self._melt_id()).recover(), LEG_MARGIN, "melt leg")
        return self._follow()

    def _finish_interrupted_rollback(self) -> bool:
        """A prepared transfer whose melt leg is rolled back (or gone): a rollback that a
        crash cut between the leg's commit and this record's. Finish it (end the mint
        leg, ``rolled_back``); True if it was one. Its inputs were released already."""
        melt = self._leg(self._melt_id())
        if melt is not None and melt.state != OpState.ROLLED_BACK:
            return False
        self._roll_back(melt.error or "rolled back" if melt is not None else "rolled back")
        return True

    def _resume_melt(self, melt: Operation) -> None:
        """Executing, its melt still prepared (the crash came before the melt request): the
        caller asked for the payment, so it is made, unless the invoice has expired
        since (then nothing can pay it: released, rolled back)."""
        if melt.quote_request and decode_invoice(melt.quote_request).is_expired(time.time()):
            wait(self.legs.melt_leg(self._melt_id()).rollback(), LEG_MARGIN, "melt leg")
            return
        self._execute_melt(RECOVERY_MELT_WAIT)

    # --- helpers ------------------------------------------------------------------------

    def _leg(self, leg_id: OperationId) -> Operation | None:
        return wait(self.deps.ledger.get_operation(leg_id), LEDGER_TIMEOUT, "ProofLedger")

    def _melt_id(self) -> OperationId:
        return self.op.melt_id or OperationId("")

    def _mint_leg_id(self) -> OperationId:
        return self.op.mint_leg_id or OperationId("")

    def _event(self, op: Operation, suffix: str | None, **extra: Any) -> Emission | None:
        return super()._event(op, suffix, to_mint_url=op.to_mint_url, **extra)


class TransferOperationActor(OperationActor, TransferOperation):
    def __init__(self, op: Operation, mint: MintContext, deps: OperationDeps,
                 legs: Legs) -> None:
        OperationActor.__init__(self, op, mint, deps)
        self.legs = legs


class TransferOperationProxy(ActorMemberMixin, pykka.ActorProxy[TransferOperationActor]):
    operation = proxy_method(TransferOperation.operation)
    prepare = proxy_method(TransferOperation.prepare)
    execute = proxy_method(TransferOperation.execute)
    rollback = proxy_method(TransferOperation.rollback)
    check_pending = proxy_method(TransferOperation.check_pending)
    recover = proxy_method(TransferOperation.recover)
