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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import pykka
from mnemonic import Mnemonic

from coco_actors.actors import tell, wait
from coco_actors.bolt11 import Invoice
from coco_actors.bolt11 import decode as decode_invoice
from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.crypto.dleq import verify_proofs_dleq
from coco_actors.crypto.keysets import fee_for
from coco_actors.crypto.nut11 import P2PKLock, parse_secret
from coco_actors.crypto.nut13 import Nut13Deriver
from coco_actors.errors import (
    ActorTimeoutError,
    InsufficientFundsError,
    InvalidAmountError,
    InvalidInputError,
    InvalidStateError,
    InvoiceError,
    LockedTokenError,
    MintError,
    MintProtocolError,
    NotFoundError,
    TokenError,
    TokenSpentError,
)
from coco_actors.events import (
    DEFAULT_RETENTION,
    EVENTS,
    EventBusActor,
    EventBusProxy,
    EventLog,
    Handler,
)
from coco_actors.keys import QUOTE_KEY_PATH, KeyDeriver, KeyRing, WalletKey
from coco_actors.mint_client import MintClient, MintInfo, normalize_mint_url
from coco_actors.operations import (
    MeltOperationProxy,
    MintContext,
    MintOperationProxy,
    OperationDeps,
    SendOperationProxy,
    TransferOperationProxy,
)
from coco_actors.operations.transfer import fit_amount
from coco_actors.proof_ledger import Balances, ChangeSignal, MintBalance, start_ledger
from coco_actors.records import (
    HistoryEntry,
    MintRecord,
    Operation,
    OperationId,
    OpState,
    OpType,
)
from coco_actors.recovery import Recovery
from coco_actors.recovery import recover as recover_operations
from coco_actors.requests import RequestsApi
from coco_actors.restore import RestoreReport
from coco_actors.restore import restore as restore_wallet
from coco_actors.store import Store
from coco_actors.supervisor import (
    SupervisorNotices,
    fetch_keysets,
    fetch_mint,
    start_supervisor,
)
from coco_actors.sweeper import ExposurePolicy, Sweeper, SweeperConfig
from coco_actors.tokens import Token, decode, resolve_keyset_ids
from coco_actors.watcher import WatcherActor, WatcherConfig
from coco_actors.webhooks import RetryPolicy, Webhooks, WebhookSpec
from coco_actors.wire import Keyset, MintQuote, Proof, ProofStateKind

log = logging.getLogger(__name__)

#: Upper bound for one saga step seen from the caller (it may wait on a mint).
CALL_TIMEOUT = 120.0
#: Upper bound for a supervisor lookup (local, fast).
LOOKUP_TIMEOUT = 30.0
#: Without the watcher, how often a waiting redeem asks the mint about its quote.
QUOTE_POLL_INTERVAL = 0.5

T = TypeVar("T")
PX = TypeVar("PX")


def _check_retention(seconds: object) -> float:
    """The event retention window: a positive number of seconds."""
    if (isinstance(seconds, bool) or not isinstance(seconds, int | float)
            or not seconds > 0 or seconds == float("inf")):
        raise InvalidInputError(f"event_retention must be a positive number of seconds, "
                                f"got {seconds!r}")
    return float(seconds)


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
                 rollback_prepared_after: float | None = None,
                 exposure: ExposurePolicy | None = None,
                 event_retention: float = DEFAULT_RETENTION,
                 webhooks: Sequence[WebhookSpec] = (), webhook_hosts: Sequence[str] = (),
                 webhook_retry: RetryPolicy | None = None) -> None:
        self._store = store
        #: the durable events (the outbox): ``since``, ``last_seq``, ``wait``; any thread
        self.events = EventLog(store)
        self._contexts: dict[str, MintContext] = {}
        self._rollback_prepared_after = rollback_prepared_after
        self._mnemonic = mnemonic
        self._closed = False
        self._watcher_ref: pykka.ActorRef[WatcherActor] | None = None
        self._watcher: pykka.ActorProxy[WatcherActor] | None = None
        #: the exposure policy's Sweeper (its own thread), None while the policy is off
        self.sweeper: Sweeper | None = None
        started: list[pykka.ActorRef[Any]] = []
        try:
            self._events_ref = EventBusActor.start()
            started.append(self._events_ref)
            self._events = cast(EventBusProxy, self._events_ref.proxy())
            signal = ChangeSignal()
            self._ledger = start_ledger(store, signal, self.events, self._events_ref,
                                        _check_retention(event_retention))
            started.append(self._ledger.actor_ref)
            wait(self._ledger.mints(), LOOKUP_TIMEOUT, "ProofLedger")  # surfaces a failed start
            self._deriver = Nut13Deriver(mnemonic)
            self._keyring = KeyRing(KeyDeriver(mnemonic), self._ledger,
                                    KeyDeriver(mnemonic, QUOTE_KEY_PATH))
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
        self.transfer = TransferApi(self)
        self.receive = ReceiveApi(self)
        self.history = HistoryApi(self)
        self.keys = KeysApi(self)
        self.requests = RequestsApi(self)
        #: event delivery to webhooks (:mod:`coco_actors.webhooks`), started before recovery
        self.webhooks = Webhooks(store, self._ledger, self.events, hosts=webhook_hosts,
                                 retry=webhook_retry)
        try:
            self.webhooks.start(webhooks)
        except BaseException:
            self.close()
            raise
        if recover:
            try:
                self.last_recovery = self.recover()
                # payment attempts left mid-way: their receives were recovered just now
                resumed = self.requests.resume()
                if resumed:  # counted only when there were some, as "unreadable" is
                    self.last_recovery["payment_attempts"] = resumed
            except BaseException:
                self.close()  # a failed open leaves no actor or thread running
                raise
        if exposure is not None:  # after recovery: in-flight transfers are settled first
            self.sweeper = Sweeper(self, exposure)
            try:
                self.sweeper.start()
            except BaseException:
                self.close()
                raise

    @classmethod
    def open(cls, data_dir: str | Path, mnemonic: str | None = None, *,
             recover: bool = True, watcher: bool | WatcherConfig = True,
             rollback_prepared_after: float | None = None,
             exposure: Mapping[str, int] | None = None, sweep_to: str | None = None,
             sweeper: SweeperConfig | None = None,
             event_retention: float = DEFAULT_RETENTION,
             webhooks: Sequence[WebhookSpec] = (), webhook_hosts: Sequence[str] = (),
             webhook_retry: RetryPolicy | None = None) -> Coco:
        """Open the wallet in ``data_dir``, creating it (with a fresh mnemonic if none
        is given) when it does not exist yet. Recovery runs before this returns.

        ``watcher``: True (default) finalizes sends and redeems paid quotes on its
        own (NUT-17 websocket, NUT-07 polling fallback); a :class:`WatcherConfig`
        tunes it; False turns it off (then call ``coco.send.check_pending()``).

        ``rollback_prepared_after``: a policy, off by default: prepared sends
        older than this many seconds are rolled back (released) by recovery.

        ``exposure`` and ``sweep_to``: a policy, off by default: whenever a mint of
        ``exposure`` (mint URL -> limit in sats) holds more spendable than its limit,
        the excess is transferred to ``sweep_to`` (see :mod:`coco_actors.sweeper`;
        ``sweeper`` tunes its timing). Bad values are typed errors raised before the
        directory is touched.

        ``event_retention``: seconds events are kept in the outbox (``coco.events``;
        default 7 days); older ones are pruned at open and then every few minutes,
        never the newest.

        ``webhooks`` (given at start, their cursors kept across starts), ``webhook_hosts``
        (the hosts besides loopback that webhooks may go to, also for
        ``coco.webhooks.add``) and ``webhook_retry`` (backoff, request timeout): every
        event is POSTed, signed, to each webhook (:mod:`coco_actors.webhooks`).

        A directory that cannot be written (read-only, no permission, no space) is
        a :class:`~coco_actors.store.DataDirError`, with nothing changed. A stored
        record this release cannot decode does not stop the open: it is logged by
        kind and key, left on disk, and counted in ``last_recovery["unreadable"]``
        (its proofs stay reserved, its operation where it was). An open that fails
        leaves no actor or thread running and the directory unlocked.
        """
        policy = ExposurePolicy.from_options(exposure, sweep_to, sweeper)
        retention = _check_retention(event_retention)
        Webhooks.validate(webhooks, webhook_hosts)
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
                       rollback_prepared_after=rollback_prepared_after, exposure=policy,
                       event_retention=retention,
                       webhooks=webhooks, webhook_hosts=webhook_hosts,
                       webhook_retry=webhook_retry)
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
        """Stop the Sweeper, the actors in reverse order of start, then close the store."""
        if self._closed:
            return
        self._closed = True
        if self.sweeper is not None and not self.sweeper.stop(CALL_TIMEOUT):
            log.error("the sweeper did not stop within %s s", CALL_TIMEOUT)
        webhooks: Webhooks | None = getattr(self, "webhooks", None)  # a failed open: none
        if webhooks is not None:
            webhooks.close()  # before the ledger their cursors are written through
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
        self.events.close()  # wakes every waiter before the store goes
        self._store.close()

    # --- events, balances, receive ----------------------------------------------------

    def on(self, event: str, handler: Handler) -> None:
        if event not in EVENTS:
            raise InvalidInputError(f"unknown event {event!r}; one of {sorted(EVENTS)}")
        wait(self._events.on(event, handler), LOOKUP_TIMEOUT, "EventBus")

    def off(self, event: str, handler: Handler | None = None) -> None:
        wait(self._events.off(event, handler), LOOKUP_TIMEOUT, "EventBus")

    def balance(self) -> Balances:
        """Per mint: spendable, reserved (held by operations), pending (in unclaimed sends);
        ``.total`` sums them over every mint."""
        return wait(self._ledger.balances(), LOOKUP_TIMEOUT, "ProofLedger")

    def total_balance(self) -> MintBalance:
        """The same as ``balance().total``."""
        return self.balance().total

    def _receive(self, token: str, op_id: OperationId | None = None) -> Operation:
        """Swap an incoming token into the wallet; the mint must have been added.

        Locked proofs (NUT-11 P2PK) are signed with the wallet's keys (the lock keys,
        or the refund keys once the locktime passed); a token whose conditions this
        wallet cannot meet is a :class:`LockedTokenError` before any request.
        """
        if not isinstance(token, str):
            raise TokenError("token must be a string")
        decoded = decode(token)
        ctx = self._mint_context(decoded.mint)
        # locked ecash we cannot unlock is refused here, before any request
        self._keyring.unlock_plan(decoded.proofs, int(time.time()))
        decoded = self._resolve(decoded, ctx)
        keys = {ks.id: ks for ks in ctx.keysets}

        def key_for(keyset_id: str, amount: int) -> str:
            return keys[keyset_id].key_for(amount)

        verify_proofs_dleq(list(decoded.proofs), key_for)
        # op_id: a payment attempt committed this id before the receive exists, so a
        # crash at any point after it finds its receive (or knows none was recorded)
        actor = self._ask(self._supervisor.new_receive(ctx.url, decoded.amount, decoded.unit,
                                                       op_id))
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
        _not_a_leg(op)
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
        """The operation, refused (InvalidStateError) when it is over already, or when
        it is a leg of a transfer (its transfer drives it)."""
        op = self._coco._operation(operation_id, self.op_type)
        _not_a_leg(op)
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
        """Every operation of this type not at an end yet (a transfer's legs are not
        listed: the transfer is, under ``coco.transfer``)."""
        ops = wait(self._coco._ledger.operations(self.op_type), LOOKUP_TIMEOUT, "ProofLedger")
        return [o for o in ops if o.parent_id is None]

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

    def prepare_send(self, mint_url: str, amount: int, *,
                     p2pk: str | Sequence[str] | None = None, n_sigs: int = 1,
                     locktime: int | None = None,
                     refund: str | Sequence[str] | None = None) -> Operation:
        """Reserve proofs for ``amount`` and persist the swap's outputs.

        The result's ``fee`` is the input fee the mint will charge for the swap
        (0 when proofs match the amount exactly and no swap is needed).

        ``p2pk`` locks the token (NUT-11) to a public key, or to several of which
        ``n_sigs`` must sign; ``locktime`` (unix seconds) opens the ``refund`` keys'
        path once passed (without refund keys anyone can spend it then). A locked
        send always swaps (so it pays the input fee) and its token is worth exactly
        ``amount``. Every key is checked here (:class:`InvalidInputError`).
        """
        _check_amount(amount)
        lock = None
        if p2pk is not None:
            lock = P2PKLock.of(p2pk, n_sigs, locktime, refund)
        elif n_sigs != 1 or locktime is not None or refund is not None:
            raise InvalidInputError("n_sigs, locktime and refund need p2pk (the lock keys)")
        ctx = self._coco._mint_context(mint_url)
        if lock is not None and not ctx.client.get_info().supports(11):
            raise InvalidInputError(f"mint {ctx.url} does not support P2PK locks (NUT-11)")
        actor = self._coco._ask(self._coco._supervisor.new_send(ctx.url, amount))
        return wait(actor.prepare(amount, lock=lock), CALL_TIMEOUT, "send operation")

    def execute_prepared_send(self, operation_id: str) -> tuple[Operation, str]:
        """Swap (if needed) and return the operation, now pending, and its token."""
        op = self._coco._operation(operation_id, OpType.SEND)
        if op.state != OpState.PREPARED:
            raise InvalidStateError(f"send {op.id} is {op.state.value}, not prepared")
        op = self._step(op.id, lambda a: a.execute())
        return op, op.token or ""

    def rollback(self, operation_id: str) -> Operation:
        """Undo a prepared send (release) or a pending one (reclaim the token with a swap).

        A locked pending send is reclaimed only with a key that unlocks it now (a
        refund key after the locktime, or the lock keys themselves); otherwise a
        :class:`LockedTokenError` says why, and nothing changed.
        """
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
        _not_a_leg(op)
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


class TransferApi(_SagaApi[TransferOperationProxy]):
    """Move value between two mints of this wallet: a melt at ``from_mint`` pays a mint
    quote of ``to_mint``, then the quote is redeemed (issue 17)."""

    op_type = OpType.TRANSFER

    def _lookup(self, op_id: str) -> pykka.Future[TransferOperationProxy]:
        return self._coco._supervisor.transfer_actor(op_id)

    def prepare(self, from_mint: str, to_mint: str, amount: int) -> Operation:
        """Create the mint quote at ``to_mint`` and the melt paying it at ``from_mint``.

        ``amount`` is what arrives at ``to_mint``; ``fee_reserve`` (lightning) and
        ``fee`` (input fees) are what it may cost at most at ``from_mint``, on top.
        Refused before any request: the same mint twice, a mint not added, an amount
        that is not a positive integer, or one above the source's spendable balance.
        """
        coco = self._coco
        _check_amount(amount)
        source = coco._mint_context(from_mint).url
        target = coco._mint_context(to_mint).url
        if source == target:
            raise InvalidInputError(f"a transfer needs two different mints, got {source} twice")
        spendable = coco.balance().get(source, MintBalance()).spendable
        if amount > spendable:
            raise InsufficientFundsError(
                f"balance at {source} ({spendable} spendable) cannot cover {amount} plus fees",
                needed=amount, available=spendable)
        actor = coco._ask(coco._supervisor.new_transfer(source, target, amount))
        return wait(actor.prepare(), CALL_TIMEOUT, "transfer operation")

    def execute(self, operation_id: str, timeout: float = 120.0) -> Operation:
        """Melt, then redeem at ``to_mint``; returns within about ``timeout`` seconds:
        ``completed`` (``received`` = amount, ``fee_paid`` the lightning fee),
        ``pending`` (the payment is in flight, or ``to_mint`` has not issued yet: the
        Watcher or :meth:`check_pending` finishes it) or ``rolled_back`` (not paid)."""
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise InvalidInputError(f"timeout must be a positive number of seconds, "
                                    f"got {timeout!r}")
        op = self._coco._operation(operation_id, OpType.TRANSFER)
        if op.state != OpState.PREPARED:
            raise InvalidStateError(f"transfer {op.id} is {op.state.value}, not prepared")
        return self._step(op.id, lambda a: a.execute(float(timeout)),
                          timeout=float(timeout) + CALL_TIMEOUT)

    def rollback(self, operation_id: str) -> Operation:
        """Prepared: release. Executing or pending: only once the source mint says the
        payment failed; never once it may be paid."""
        return self._step(self._open(operation_id).id, lambda a: a.rollback())

    def check_pending(self) -> list[Operation]:
        """Ask the mints about every executing or pending transfer; settle what is decided."""
        return self._check_each((OpState.PENDING, OpState.EXECUTING),
                                lambda a: a.check_pending())


class ReceiveApi:
    """``coco.receive(token)`` swaps a token in at its own mint (the mint must have been
    added); ``coco.receive(token, into=url)`` moves its value to another mint of the
    wallet as one transfer (issue 17), in two steps with :meth:`prepare` and
    :meth:`execute`."""

    def __init__(self, coco: Coco) -> None:
        self._coco = coco

    def __call__(self, token: str, into: str | None = None, *,
                 timeout: float = 120.0) -> Operation:
        """The receive operation (``completed``); with ``into``, the transfer as
        :meth:`execute` returns it."""
        if into is None:
            return self._coco._receive(token)
        return self.execute(self.prepare(token, into=into).id, timeout=timeout)

    def prepare(self, token: str, *, into: str) -> Operation:
        """Quote the move of ``token``'s value to ``into``; nothing is spent yet.

        The result is a transfer (``prepared``; its melt leg holds the token's proofs,
        which the wallet never counts as spendable): ``amount`` is what will arrive at
        ``into``, ``input_amount`` the token, ``fee`` the input fee, ``fee_reserve`` the
        most the lightning fee can be; what is not spent comes back as change at the
        token's mint. The amount is the largest the token pays with its fees
        (:func:`fit_amount`). The token's mint is fetched and its keysets verified if
        the wallet does not know it yet, and registered once the checks pass (it then
        appears among the wallet's mints, holding the change).

        Refused before anything is stored: a malformed token (``TokenError``), a DLEQ
        that does not verify (``CryptoError``), ``into`` unknown (``NotFoundError``) or
        the token's own mint (``InvalidInputError``), a unit other than sat, a mint
        without NUT-08, a token spent or being spent (``TokenSpentError``), a token too
        small to pay any fee (``InvalidAmountError``: receive it normally), a locked
        (NUT-10) token (``LockedTokenError``: receive it normally).
        """
        coco = self._coco
        if not isinstance(token, str):
            raise TokenError("token must be a string")
        if not isinstance(into, str):
            raise InvalidInputError(f"into must be a mint URL, got {into!r}")
        decoded = decode(token)
        target = coco._mint_context(into)
        source = normalize_mint_url(decoded.mint)
        if source == target.url:
            raise InvalidInputError(f"the token is from {source} already; receive it normally")
        if decoded.unit != "sat":
            raise InvalidInputError(f"a token in {decoded.unit} cannot be moved over "
                                    "lightning; receive it normally")
        if any(parse_secret(p.secret) is not None for p in decoded.proofs):
            raise LockedTokenError("a locked (NUT-10) token cannot be moved to another "
                                   "mint; receive it normally")
        known = coco._ask(coco._supervisor.find_mint(source))
        client = known.client if known is not None else MintClient(source)
        try:
            rec, keysets, proofs = self._checked(decoded, client, known)
            fee = fee_for(keysets[p.keyset_id].input_fee_ppk for p in proofs)

            def reserve_of(amount: int) -> int:
                quote = target.client.create_mint_quote(amount, "sat")
                melt = client.create_melt_quote(quote.request, "sat")
                if melt.amount != amount:
                    raise MintProtocolError(
                        f"melt quote is for {melt.amount} sat, asked {amount}",
                        mint_url=source, endpoint="POST /v1/melt/quote/bolt11")
                return melt.fee_reserve

            amount = fit_amount(decoded.amount, fee, reserve_of)
            if amount is None:
                raise InvalidAmountError(
                    f"a token of {decoded.amount} sat is too small to pay the fees of moving "
                    f"it to {target.url}; receive it normally")
            if rec is not None:
                coco._register(rec, client, list(keysets.values()))
        except BaseException:
            if known is None and coco._ask(coco._supervisor.find_mint(source)) is None:
                client.close()
            raise
        actor = coco._ask(coco._supervisor.new_transfer(source, target.url, amount))
        return wait(actor.prepare(proofs), CALL_TIMEOUT, "transfer operation")

    def _checked(self, token: Token, client: MintClient, known: MintContext | None
                 ) -> tuple[MintRecord | None, dict[str, Keyset], tuple[Proof, ...]]:
        """The token's mint (a record to register if new), its keysets by id, and the
        token's proofs with full keyset ids, each DLEQ verified and none spent (NUT-07).
        Network IO on the caller's thread; nothing is stored."""
        rec: MintRecord | None = None
        if known is None:
            info, fetched = fetch_mint(client)
            rec = MintRecord(url=normalize_mint_url(token.mint), name=info.name)
        else:
            fetched = list(known.keysets)
        try:
            token = resolve_keyset_ids(token, [ks.id for ks in fetched])
        except TokenError:
            if known is None:
                raise
            fetched = fetch_keysets(client)  # a keyset new since: asked once
            rec = MintRecord(url=known.url)
            token = resolve_keyset_ids(token, [ks.id for ks in fetched])
        keysets = {ks.id: ks for ks in fetched}
        verify_proofs_dleq(list(token.proofs),
                           lambda keyset_id, amount: keysets[keyset_id].key_for(amount))
        if not client.recent_info().supports(8):
            raise InvalidInputError(f"{client.mint_url} returns no NUT-08 change; receive the "
                                    "token normally")
        states = client.check_state([secret_to_y(p.secret) for p in token.proofs])
        if any(s.state != ProofStateKind.UNSPENT for s in states):
            raise TokenSpentError("the token is already claimed (or being claimed)")
        return rec, keysets, token.proofs

    def execute(self, operation_id: str, timeout: float = 120.0) -> Operation:
        """Melt the token's proofs to pay ``into``, then redeem there (as
        :meth:`TransferApi.execute`): ``completed`` (``received`` at ``into``,
        ``change_amount`` kept at the token's mint), ``pending``, or ``rolled_back``
        when the payment failed, with the token received at its own mint instead
        (``change_amount``, ``receive_id``; ``error`` says so)."""
        op = self._coco._operation(operation_id, OpType.TRANSFER)
        if not op.inputs:
            raise NotFoundError(f"transfer {op.id} is not a receive into another mint")
        return self._coco.transfer.execute(op.id, timeout=timeout)

    def rollback(self, operation_id: str) -> Operation:
        """Prepared: the token is forgotten (never the wallet's; it can be received
        again). Executing or pending: as :meth:`TransferApi.rollback`, and a melt that
        did not pay leaves the token received at its own mint."""
        op = self._coco._operation(operation_id, OpType.TRANSFER)
        if not op.inputs:
            raise NotFoundError(f"transfer {op.id} is not a receive into another mint")
        return self._coco.transfer.rollback(op.id)


def _not_a_leg(op: Operation) -> None:
    """A transfer's leg is driven by its transfer only."""
    if op.parent_id is not None:
        raise InvalidStateError(f"{op.type.value} {op.id} is part of transfer {op.parent_id}; "
                                "use coco.transfer")


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
        return self._coco._keyring.handed_out()


class HistoryApi:
    def __init__(self, coco: Coco) -> None:
        self._coco = coco

    def get_history(self, limit: int | None = None) -> list[HistoryEntry]:
        """One entry per operation, newest first, with its current state."""
        return self._coco._store.history(limit)

