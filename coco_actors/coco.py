"""``Coco``: the synchronous facade an embedding backend calls.

It validates input (bad input changes nothing), asks the Supervisor for the
right operation actor, and waits on that actor with a timeout. Startup wires
the actors in dependency order (events, ledger, supervisor) and runs recovery;
``close`` stops them in reverse order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import pykka
from mnemonic import Mnemonic

from coco_actors.actors import tell, wait
from coco_actors.bolt11 import Invoice
from coco_actors.bolt11 import decode as decode_invoice
from coco_actors.crypto.dleq import verify_proofs_dleq
from coco_actors.crypto.nut13 import Nut13Deriver
from coco_actors.errors import (
    ActorTimeoutError,
    InvalidAmountError,
    InvalidInputError,
    InvalidStateError,
    InvoiceError,
    MintError,
    NotFoundError,
    TokenError,
)
from coco_actors.events import EVENTS, EventBusActor, EventBusProxy, Handler
from coco_actors.keys import KeyDeriver, KeyRing, WalletKey
from coco_actors.mint_client import MintClient, MintInfo, normalize_mint_url
from coco_actors.operations import (
    MeltOperationProxy,
    MintContext,
    MintOperationProxy,
    OperationDeps,
    SendOperationProxy,
)
from coco_actors.proof_ledger import ChangeSignal, MintBalance, start_ledger
from coco_actors.records import HistoryEntry, MintRecord, Operation, OpState, OpType
from coco_actors.recovery import Recovery
from coco_actors.recovery import recover as recover_operations
from coco_actors.restore import RestoreReport
from coco_actors.restore import restore as restore_wallet
from coco_actors.store import Store
from coco_actors.supervisor import (
    SupervisorNotices,
    fetch_keysets,
    fetch_mint,
    start_supervisor,
)
from coco_actors.tokens import Token, decode, resolve_keyset_ids
from coco_actors.watcher import WatcherActor, WatcherConfig
from coco_actors.wire import Keyset, MintQuote

log = logging.getLogger(__name__)

#: Upper bound for one saga step seen from the caller (it may wait on a mint).
CALL_TIMEOUT = 120.0
#: Upper bound for a supervisor lookup (local, fast).
LOOKUP_TIMEOUT = 30.0
#: Without the watcher, how often a waiting redeem asks the mint about its quote.
QUOTE_POLL_INTERVAL = 0.5

T = TypeVar("T")
PX = TypeVar("PX")


def _check_amount(amount: object) -> int:
    """The one domain check of an amount, at the edge that receives it (this facade)."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmountError(f"amount must be an integer number of sats, got {amount!r}")
    if amount <= 0:
        raise InvalidAmountError(f"amount must be positive, got {amount}")
    return amount


class Coco:
    """A wallet over one data directory, for any number of mints."""

    def __init__(self, store: Store, mnemonic: str, *, recover: bool = True,
                 watcher: bool | WatcherConfig = True,
                 rollback_prepared_after: float | None = None) -> None:
        self._store = store
        self._contexts: dict[str, MintContext] = {}
        self._rollback_prepared_after = rollback_prepared_after
        self._mnemonic = mnemonic
        self._closed = False
        self._watcher_ref: pykka.ActorRef[WatcherActor] | None = None
        self._watcher: pykka.ActorProxy[WatcherActor] | None = None
        started: list[pykka.ActorRef[Any]] = []
        try:
            self._events_ref = EventBusActor.start()
            started.append(self._events_ref)
            self._events = cast(EventBusProxy, self._events_ref.proxy())
            signal = ChangeSignal()
            self._ledger = start_ledger(store, signal)
            started.append(self._ledger.actor_ref)
            wait(self._ledger.mints(), LOOKUP_TIMEOUT, "ProofLedger")  # surfaces a failed start
            self._deriver = Nut13Deriver(mnemonic)
            self._keyring = KeyRing(KeyDeriver(mnemonic), self._ledger)
            deps = OperationDeps(ledger=self._ledger, events=self._events_ref,
                                 deriver=self._deriver, signal=signal, keys=self._keyring)
            self._supervisor_ref, self._supervisor = start_supervisor(deps)
            started.append(self._supervisor_ref)
            wait(self._supervisor.mint_urls(), LOOKUP_TIMEOUT, "Supervisor")
            if watcher:
                config = watcher if isinstance(watcher, WatcherConfig) else WatcherConfig()
                self._watcher_ref = WatcherActor.start(
                    config, SupervisorNotices(self._supervisor_ref))
                started.append(self._watcher_ref)
                self._watcher = self._watcher_ref.proxy()
                wait(self._supervisor.set_watcher(self._watcher_ref), LOOKUP_TIMEOUT,
                     "Supervisor")
        except BaseException:
            # a failed open leaves no actor running (a stuck one is logged, not raised:
            # the error the caller sees is the one that failed the open)
            for ref in reversed(started):
                try:
                    ref.stop(block=True, timeout=LOOKUP_TIMEOUT)
                except pykka.Timeout:
                    log.error("%s did not stop within %s s", ref, LOOKUP_TIMEOUT)
            raise
        self.last_recovery: dict[str, int] = {}
        self.mints = MintsApi(self)
        self.mint = MintApi(self)
        self.send = SendApi(self)
        self.melt = MeltApi(self)
        self.history = HistoryApi(self)
        self.keys = KeysApi(self)
        if recover:
            try:
                self.last_recovery = self.recover()
            except BaseException:
                self.close()  # a failed open leaves no actor or thread running
                raise

    @classmethod
    def open(cls, data_dir: str | Path, mnemonic: str | None = None, *,
             recover: bool = True, watcher: bool | WatcherConfig = True,
             rollback_prepared_after: float | None = None) -> Coco:
        """Open the wallet in ``data_dir``, creating it (with a fresh mnemonic if none
        is given) when it does not exist yet. Recovery runs before this returns.

        ``watcher``: True (default) finalizes sends and redeems paid quotes on its
        own (NUT-17 websocket, NUT-07 polling fallback); a :class:`WatcherConfig`
        tunes it; False turns it off (then call ``coco.send.check_pending()``).

        ``rollback_prepared_after``: a policy, off by default: prepared sends
        older than this many seconds are rolled back (released) by recovery.

        A directory that cannot be written (read-only, no permission, no space) is
        a :class:`~coco_actors.store.DataDirError`, with nothing changed. A stored
        record this release cannot decode does not stop the open: it is logged by
        kind and key, left on disk, and counted in ``last_recovery["unreadable"]``
        (its proofs stay reserved, its operation where it was). An open that fails
        leaves no actor or thread running and the directory unlocked.
        """
        store = Store(data_dir)
        try:
            stored = store.get_setting("mnemonic")
            if stored is None:
                mnemonic = mnemonic or Mnemonic("english").generate(strength=128)
                if not Mnemonic("english").check(mnemonic):
                    raise InvalidInputError("the mnemonic is not a valid BIP39 phrase")
                phrase = mnemonic
                store.transact(lambda b: b.put_setting("mnemonic", phrase))
            elif mnemonic is not None and mnemonic != stored:
                raise InvalidInputError(
                    f"data directory {data_dir} belongs to a different mnemonic")
            return cls(store, stored or mnemonic or "", recover=recover, watcher=watcher,
                       rollback_prepared_after=rollback_prepared_after)
        except BaseException:
            store.close()
            raise

    @property
    def mnemonic(self) -> str:
        return self._mnemonic

    def __repr__(self) -> str:
        return f"Coco({str(self._store.data_dir)!r})"

    def __enter__(self) -> Coco:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop actors in reverse order of start, then close the store."""
        if self._closed:
            return
        self._closed = True
        refs: list[tuple[str, pykka.ActorRef[Any]]] = []
        if self._watcher_ref is not None:
            refs.append(("watcher", self._watcher_ref))
        for name, ref in (*refs, ("supervisor", self._supervisor_ref),
                          ("ledger", self._ledger.actor_ref),
                          ("events", self._events_ref)):
            try:
                ref.stop(block=True, timeout=CALL_TIMEOUT)
            except pykka.Timeout:
                log.error("%s did not stop within %s s", name, CALL_TIMEOUT)
        self._store.close()

    # --- events, balances, receive ----------------------------------------------------

    def on(self, event: str, handler: Handler) -> None:
        if event not in EVENTS:
            raise InvalidInputError(f"unknown event {event!r}; one of {sorted(EVENTS)}")
        wait(self._events.on(event, handler), LOOKUP_TIMEOUT, "EventBus")

    def off(self, event: str, handler: Handler | None = None) -> None:
        wait(self._events.off(event, handler), LOOKUP_TIMEOUT, "EventBus")

    def balance(self) -> dict[str, MintBalance]:
        """Per mint: spendable, reserved (held by operations), pending (in unclaimed sends)."""
        return wait(self._ledger.balances(), LOOKUP_TIMEOUT, "ProofLedger")

    def receive(self, token: str) -> Operation:
        """Swap an incoming token into the wallet; the mint must have been added."""
        if not isinstance(token, str):
            raise TokenError("token must be a string")
        decoded = decode(token)
        ctx = self._mint_context(decoded.mint)
        decoded = self._resolve(decoded, ctx)
        keys = {ks.id: ks for ks in ctx.keysets}

        def key_for(keyset_id: str, amount: int) -> str:
            return keys[keyset_id].key_for(amount)

        verify_proofs_dleq(list(decoded.proofs), key_for)
        actor = self._ask(self._supervisor.new_receive(ctx.url, decoded.amount, decoded.unit))
        wait(actor.prepare(decoded), CALL_TIMEOUT, "receive operation")
        return wait(actor.execute(), CALL_TIMEOUT, "receive operation")

    def _resolve(self, token: Token, ctx: MintContext) -> Token:
        try:
            return resolve_keyset_ids(token, [ks.id for ks in ctx.keysets])
        except TokenError:
            fresh = self._register(MintRecord(url=ctx.url), ctx.client, fetch_keysets(ctx.client))
            return resolve_keyset_ids(token, [ks.id for ks in fresh.keysets])

    def restore(self, mint_url: str) -> RestoreReport:
        """Recover every unspent proof this mnemonic ever received at ``mint_url``
        (NUT-09, batches of 100) and move each NUT-13 counter past the last index used.

        The mint must have been added. Proofs the wallet already holds, or that sit
        in the token of an open send, are not added twice.
        """
        return restore_wallet(self._mint_context(mint_url), self._deriver, self._ledger)

    def recover(self) -> dict[str, int]:
        """Recover every operation not in a terminal state (also run by ``open``)."""
        return self._recover(None)

    def _recover(self, op_type: OpType | None) -> dict[str, int]:
        return recover_operations(Recovery(self._ledger, self._supervisor, self._watcher_ref),
                                  op_type, self._stale_ms())

    def _stale_ms(self) -> int | None:
        after = self._rollback_prepared_after
        return None if after is None else int(after * 1000)

    # --- plumbing -----------------------------------------------------------------------

    def _ask(self, future: pykka.Future[T], timeout: float = LOOKUP_TIMEOUT) -> T:
        return wait(future, timeout, "Supervisor")

    def _mint_context(self, url: str) -> MintContext:
        """Cached: mint contexts only change through this facade (add, refresh)."""
        url = normalize_mint_url(url)
        ctx = self._contexts.get(url)
        if ctx is None:
            ctx = self._contexts[url] = self._ask(self._supervisor.mint_context(url))
        return ctx

    def _register(self, rec: MintRecord, client: MintClient, keysets: list[Keyset]) -> MintContext:
        """Hand a fetched mint to the Supervisor (no network IO happens in its mailbox)."""
        ctx = self._ask(self._supervisor.register_mint(rec, client, keysets))
        self._contexts[ctx.url] = ctx
        return ctx

    def _operation(self, op_id: str, op_type: OpType) -> Operation:
        if not isinstance(op_id, str) or not op_id:
            raise NotFoundError(f"unknown operation {op_id!r}")
        op = wait(self._ledger.get_operation(op_id), LOOKUP_TIMEOUT, "ProofLedger")
        if op is None or op.type != op_type:
            raise NotFoundError(f"unknown {op_type.value} operation {op_id}")
        return op

    def _step(self, op_id: str, lookup: Callable[[], pykka.Future[PX]],
              step: Callable[[PX], pykka.Future[T]], timeout: float = CALL_TIMEOUT) -> T:
        """Run one saga step on the operation's actor, rehydrating it if needed.

        An actor stops once its operation is over; a call that races with that
        stop is retried, and then finds the operation's real state.
        """
        attempts = 3
        for _ in range(attempts - 1):
            try:
                return wait(step(self._ask(lookup())), timeout, f"operation {op_id}")
            except pykka.ActorDeadError:
                continue
        try:
            return wait(step(self._ask(lookup())), timeout, f"operation {op_id}")
        except pykka.ActorDeadError:
            raise ActorTimeoutError(
                f"the actor of operation {op_id} kept stopping; try again") from None


class MintsApi:
    def __init__(self, coco: Coco) -> None:
        self._coco = coco

    def add(self, mint_url: str) -> MintRecord:
        """Trust a mint: fetch and verify its keysets (the mint must be reachable).

        The requests run on the caller's thread; the Supervisor only registers the result.
        """
        coco = self._coco
        url = normalize_mint_url(mint_url)
        known = coco._ask(coco._supervisor.find_mint(url))
        client = known.client if known is not None else MintClient(url)
        try:
            info, keysets = fetch_mint(client)
        except BaseException:
            if known is None:
                client.close()
            raise
        rec = MintRecord(url=url, name=info.name)
        coco._register(rec, client, keysets)
        return rec

    def list(self) -> list[MintRecord]:
        return wait(self._coco._ledger.mints(), LOOKUP_TIMEOUT, "ProofLedger")

    def info(self, mint_url: str) -> MintInfo:
        """The mint's NUT-06 info, asked on the caller's thread."""
        return self._coco._mint_context(mint_url).client.get_info()


class MintApi:
    def __init__(self, coco: Coco) -> None:
        self._coco = coco

    def create_quote(self, mint_url: str, amount: int) -> MintQuote:
        """A bolt11 mint quote: pay ``quote.request``, then :meth:`redeem` ``quote.id``."""
        _check_amount(amount)
        url = self._coco._mint_context(mint_url).url
        actor = self._coco._ask(self._coco._supervisor.new_mint(url, amount))
        return wait(actor.create_quote(), CALL_TIMEOUT, "mint operation")

    def redeem(self, quote_id: str, timeout: float = 60.0) -> Operation:
        """Wait until the quote is paid (at most ``timeout`` s), then mint it.

        With the watcher on, the mint's quote notification (or its polling)
        triggers the mint; without it, this polls the quote itself.
        """
        coco = self._coco
        op = self.open_operation_for(quote_id)
        if op is None:
            raise NotFoundError(f"no open mint operation for quote {quote_id}")
        done = threading.Event()

        def on_end(payload: dict[str, Any]) -> None:
            if payload["operation_id"] == op.id:
                done.set()

        for event in ("mint:finalized", "mint:rolled-back"):
            coco.on(event, on_end)
        try:
            current = self._try_redeem(op.id)
            if current.state.terminal:
                return current
            if coco._watcher_ref is not None:
                tell(coco._watcher_ref, WatcherActor.watch_quote, op.id, op.mint_url, quote_id)
            deadline = time.monotonic() + timeout
            while not done.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ActorTimeoutError(f"quote {quote_id} not paid within {timeout:g} s")
                if done.wait(min(left, QUOTE_POLL_INTERVAL)):
                    break
                if coco._watcher_ref is None:
                    current = self._try_redeem(op.id)
                    if current.state.terminal:
                        return current
            return coco._operation(op.id, OpType.MINT)
        finally:
            for event in ("mint:finalized", "mint:rolled-back"):
                coco.off(event, on_end)

    def open_operation_for(self, quote_id: str) -> Operation | None:
        """The mint operation of a quote that is not minted yet, if any."""
        ops = wait(self._coco._ledger.operations(OpType.MINT), LOOKUP_TIMEOUT, "ProofLedger")
        return next((o for o in ops if o.quote_id == quote_id), None)

    def _try_redeem(self, op_id: str) -> Operation:
        sup = self._coco._supervisor

        def redeem(actor: MintOperationProxy) -> pykka.Future[Operation]:
            return actor.try_redeem()

        return self._coco._step(op_id, lambda: sup.mint_actor(op_id), redeem)

    def get_operation(self, operation_id: str) -> Operation | None:
        try:
            return self._coco._operation(operation_id, OpType.MINT)
        except NotFoundError:
            return None


class _SagaApi(Generic[PX]):
    """What the send and melt APIs share: one type of operation, its actors, its steps."""

    op_type: OpType

    def __init__(self, coco: Coco) -> None:
        self._coco = coco

    def _lookup(self, op_id: str) -> pykka.Future[PX]:
        raise NotImplementedError

    def _step(self, op_id: str, step: Callable[[PX], pykka.Future[Operation]],
              timeout: float = CALL_TIMEOUT) -> Operation:
        return self._coco._step(op_id, lambda: self._lookup(op_id), step, timeout)

    def _open(self, operation_id: str) -> Operation:
        """The operation, refused (InvalidStateError) when it is over already."""
        op = self._coco._operation(operation_id, self.op_type)
        if op.state.terminal:
            raise InvalidStateError(f"{op.type.value} {op.id} is already {op.state.value}")
        return op

    def get_operation(self, operation_id: str) -> Operation | None:
        """``None`` for an unknown id (or one of another type of operation)."""
        try:
            return self._coco._operation(operation_id, self.op_type)
        except NotFoundError:
            return None

    def get_pending_operations(self) -> list[Operation]:
        """Every operation of this type not at an end yet."""
        return wait(self._coco._ledger.operations(self.op_type), LOOKUP_TIMEOUT, "ProofLedger")

    def _check_each(self, states: tuple[OpState, ...],
                    step: Callable[[PX], pykka.Future[Operation]]) -> list[Operation]:
        """Run ``step`` on every operation in ``states``; one whose mint cannot tell now
        (or that ended meanwhile) is reported as it is, and the others still run."""
        out = []
        for op in self.get_pending_operations():
            if op.state not in states:
                continue
            try:
                out.append(self._step(op.id, step))
            except InvalidStateError:  # settled by the watcher meanwhile
                out.append(self._coco._operation(op.id, self.op_type))
            except MintError as exc:
                log.warning("%s %s: the mint could not tell (%s); still %s",
                            op.type.value, op.id, exc, op.state.value)
                out.append(self._coco._operation(op.id, self.op_type))
        return out


class SendApi(_SagaApi[SendOperationProxy]):
    op_type = OpType.SEND

    def _lookup(self, op_id: str) -> pykka.Future[SendOperationProxy]:
        return self._coco._supervisor.send_actor(op_id)

    def prepare_send(self, mint_url: str, amount: int) -> Operation:
        """Reserve proofs for ``amount`` and persist the swap's outputs.

        The result's ``fee`` is the input fee the mint will charge for the swap
        (0 when proofs match the amount exactly and no swap is needed).
        """
        _check_amount(amount)
        url = self._coco._mint_context(mint_url).url
        actor = self._coco._ask(self._coco._supervisor.new_send(url, amount))
        return wait(actor.prepare(amount), CALL_TIMEOUT, "send operation")

    def execute_prepared_send(self, operation_id: str) -> tuple[Operation, str]:
        """Swap (if needed) and return the operation, now pending, and its token."""
        op = self._coco._operation(operation_id, OpType.SEND)
        if op.state != OpState.PREPARED:
            raise InvalidStateError(f"send {op.id} is {op.state.value}, not prepared")
        op = self._step(op.id, lambda a: a.execute())
        return op, op.token or ""

    def rollback(self, operation_id: str) -> Operation:
        """Undo a prepared send (release) or a pending one (reclaim the token with a swap)."""
        return self._step(self._open(operation_id).id, lambda a: a.rollback())

    def recover_pending_operations(self) -> dict[str, int]:
        return self._coco._recover(OpType.SEND)

    def check_pending(self) -> list[Operation]:
        """Ask the mint (NUT-07) about every pending send; finalize those claimed."""
        return self._check_each((OpState.PENDING,), lambda a: a.check_pending())


class MeltApi(_SagaApi[MeltOperationProxy]):
    """Pay lightning invoices (NUT-05/23 bolt11 melts, NUT-08 change)."""

    op_type = OpType.MELT

    def _lookup(self, op_id: str) -> pykka.Future[MeltOperationProxy]:
        return self._coco._supervisor.melt_actor(op_id)

    def prepare_melt(self, mint_url: str, invoice: str, *,
                     swap: bool | None = None) -> Operation:
        """Quote ``invoice`` at the mint and hold inputs for it.

        The result's ``amount`` is what the invoice pays, ``fee_reserve`` the mint's
        lightning fee reserve, ``fee`` the input fee(s) this melt pays, and
        ``input_amount`` what is held; after completion ``amount + fee_paid + fee``
        is what left the balance. ``swap`` None picks the cheapest way (see
        :meth:`MeltOperation.prepare`); True forces a swap first.
        """
        inv = _payable(invoice)
        url = self._coco._mint_context(mint_url).url
        if swap is not None and not isinstance(swap, bool):
            raise InvalidInputError(f"swap must be True, False or None, got {swap!r}")
        actor = self._coco._ask(self._coco._supervisor.new_melt(url, inv.amount_sat or 0))
        return wait(actor.prepare(inv, swap), CALL_TIMEOUT, "melt operation")

    def execute_prepared_melt(self, operation_id: str, timeout: float = 60.0) -> Operation:
        """Melt; returns within about ``timeout`` seconds: ``completed`` (paid, with
        ``preimage``, ``change_amount`` and ``fee_paid``) or ``pending`` while the
        payment is in flight (the Watcher, or :meth:`check_pending`, finishes it)."""
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise InvalidInputError(f"timeout must be a positive number of seconds, "
                                    f"got {timeout!r}")
        op = self._coco._operation(operation_id, OpType.MELT)
        if op.state != OpState.PREPARED:
            raise InvalidStateError(f"melt {op.id} is {op.state.value}, not prepared")
        if op.quote_request and decode_invoice(op.quote_request).is_expired(time.time()):
            # checked again here: it may have expired since prepare, and Nutshell pays it
            raise InvoiceError(f"the invoice of melt {op.id} has expired; roll the melt back")
        return self._step(op.id, lambda a: a.execute(float(timeout)),
                          timeout=float(timeout) + CALL_TIMEOUT)

    def rollback(self, operation_id: str) -> Operation:
        """Prepared: release. Pending: only once the mint says the payment failed."""
        return self._step(self._open(operation_id).id, lambda a: a.rollback())

    def check_pending(self) -> list[Operation]:
        """Ask the mint about every pending melt (or one left executing by a mint that
        could not be reached) and settle what is decided."""
        return self._check_each((OpState.PENDING, OpState.EXECUTING),
                                lambda a: a.check_pending())


def _payable(invoice: object) -> Invoice:
    """The one check of an invoice, at the edge: well formed, with an amount, unexpired
    (Nutshell quotes, and pays, an expired invoice: the wallet must refuse it)."""
    inv = decode_invoice(invoice)
    if inv.amount_sat is None:
        raise InvoiceError("the invoice has no amount; amountless invoices are not supported")
    if inv.amount_sat <= 0:
        raise InvoiceError("the invoice is for 0 sat")
    if inv.is_expired(time.time()):
        raise InvoiceError("the invoice has expired")
    return inv


class KeysApi:
    """The wallet's P2PK keys: hand one out to be paid locked ecash (``coco.keys``)."""

    def __init__(self, coco: Coco) -> None:
        self._coco = coco

    def new(self) -> str:
        """A fresh public key (33-byte compressed hex), persisted before it is returned;
        tokens locked to it are received by this wallet (and by its mnemonic restored)."""
        return self._coco._keyring.new_key().public

    def list(self) -> list[WalletKey]:
        """Every key handed out (or found in use after a restore), oldest index first."""
        return self._coco._keyring.list()


class HistoryApi:
    def __init__(self, coco: Coco) -> None:
        self._coco = coco

    def get_history(self, limit: int | None = None) -> list[HistoryEntry]:
        """One entry per operation, newest first, with its current state."""
        return self._coco._store.history(limit)

