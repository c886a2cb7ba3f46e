"""``Coco``: the synchronous facade an embedding backend calls.

It validates input (bad input changes nothing), asks the Supervisor for the
right operation actor, and waits on that actor with a timeout. Startup wires
the actors in dependency order (events, ledger, supervisor) and runs recovery;
``close`` stops them in reverse order.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import pykka
from mnemonic import Mnemonic

from coco_actors.actors import tell, wait
from coco_actors.audit import AuditReport
from coco_actors.audit import audit as audit_wallet
from coco_actors.bolt11 import Invoice
from coco_actors.bolt11 import decode as decode_invoice
from coco_actors.consolidator import (
    ConsolidateCalls,
    ConsolidationPolicy,
    Consolidator,
    MintHoldings,
    check_fee_fraction,
)
from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.crypto.dleq import verify_proofs_dleq
from coco_actors.crypto.keysets import fee_for
from coco_actors.crypto.nut11 import P2PKLock, parse_secret
from coco_actors.crypto.nut13 import Nut13Deriver
from coco_actors.errors import (
    ActorTimeoutError,
    IdempotencyConflictError,
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
from coco_actors.idempotency import SEND_EXECUTE, KeyGate, check_key, fingerprint
from coco_actors.keys import QUOTE_KEY_PATH, KeyDeriver, KeyRing, WalletKey
from coco_actors.mint_client import MintClient, MintInfo, normalize_mint_url
from coco_actors.operations import (
    ConsolidateOperationProxy,
    MeltOperationProxy,
    MintContext,
    MintOperationProxy,
    OperationDeps,
    OperationProxy,
    SendOperationProxy,
    TransferOperationProxy,
)
from coco_actors.operations.consolidate import (
    MAX_INPUTS,
    ConsolidationResult,
    ConsolidationRule,
)
from coco_actors.operations.transfer import fit_amount
from coco_actors.pacing import PacingConfig
from coco_actors.pacing import configure as configure_pacing
from coco_actors.paging import Page, check_limit, decode_cursor, encode_cursor, entry_filter
from coco_actors.proof_ledger import (
    DEFAULT_IDEMPOTENCY_TTL,
    Balances,
    ChangeSignal,
    MintBalance,
    start_ledger,
)
from coco_actors.records import (
    HistoryEntry,
    IdempotencyRecord,
    MintRecord,
    Operation,
    OperationId,
    OpState,
    OpType,
    ProofStatus,
)
from coco_actors.recovery import Recovery
from coco_actors.recovery import recover as recover_operations
from coco_actors.refresher import DEFAULT_KEYSET_REFRESH, KeysetRefresher, check_interval
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

#: Binds the call's idempotency key (if any) to the id of its target, before the
#: target's first commit (which then writes the key in the same transaction).
Bind = Callable[[str], None]


def _unbound(target: str) -> None:
    """The :data:`Bind` of a call made without an idempotency key."""


def _check_key(key: object) -> str | None:
    """None, or a valid key (InvalidInputError otherwise): checked before anything else."""
    return None if key is None else check_key(key)


def _check_retention(seconds: object) -> float:
    """The event retention window: a positive number of seconds."""
    if (isinstance(seconds, bool) or not isinstance(seconds, int | float)
            or not seconds > 0 or seconds == float("inf")):
        raise InvalidInputError(f"event_retention must be a positive number of seconds, "
                                f"got {seconds!r}")
    return float(seconds)


def _check_unit(unit: object) -> str:
    if not isinstance(unit, str) or not unit or not unit.isascii() or not unit.isalnum():
        raise InvalidInputError(f"unit must be a short name such as 'sat' or 'usd', "
                                f"got {unit!r}")
    return unit.lower()


def _unit_args(unit: str) -> list[object]:
    """A unit's part of a request fingerprint: nothing for sat (keys bound before units
    existed keep their fingerprint)."""
    return [] if unit == "sat" else [unit]


def _check_token_units(token: Token, keysets: Mapping[str, Keyset]) -> None:
    """A token's proofs are all of keysets of the token's own unit (its keyset ids
    resolved against ``keysets``): a mixed or mislabelled token is refused before any
    request that changes anything."""
    units = {keysets[p.keyset_id].unit for p in token.proofs if p.keyset_id in keysets}
    if len(units) > 1:
        raise InvalidInputError(f"the token mixes units ({', '.join(sorted(units))}); "
                                "a token holds one unit")
    if units and units != {token.unit}:
        raise InvalidInputError(f"the token says {token.unit!r} but its proofs are of "
                                f"{units.pop()!r} keysets")
    if not any(ks.active and ks.unit == token.unit for ks in keysets.values()):
        raise InvalidInputError(f"the mint {token.mint} has no active keyset in "
                                f"{token.unit!r}")


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
                 idempotency_ttl: float = DEFAULT_IDEMPOTENCY_TTL,
                 event_retention: float = DEFAULT_RETENTION,
                 webhooks: Sequence[WebhookSpec] = (), webhook_hosts: Sequence[str] = (),
                 webhook_retry: RetryPolicy | None = None,
                 keyset_refresh: float | None = DEFAULT_KEYSET_REFRESH,
                 consolidation: ConsolidationPolicy | None = None) -> None:
        self._store = store
        self._key_gate = KeyGate()
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
        #: the consolidation policy's loop (its own thread), None while every trigger is off
        self.consolidator: Consolidator | None = None
        self._consolidation = consolidation or ConsolidationPolicy(inactive="off")
        started: list[pykka.ActorRef[Any]] = []
        try:
            self._events_ref = EventBusActor.start()
            started.append(self._events_ref)
            self._events = cast(EventBusProxy, self._events_ref.proxy())
            signal = ChangeSignal()
            self._ledger = start_ledger(store, signal, self.events, self._events_ref,
                                        _check_retention(event_retention),
                                        idempotency_ttl=idempotency_ttl)
            started.append(self._ledger.actor_ref)
            wait(self._ledger.mints(), LOOKUP_TIMEOUT, "ProofLedger")  # surfaces a failed start
            self._deriver = Nut13Deriver(mnemonic)
            self._keyring = KeyRing(KeyDeriver(mnemonic), self._ledger,
                                    KeyDeriver(mnemonic, QUOTE_KEY_PATH))
            #: refreshes every mint's keysets (its own thread): on schedule, after the
            #: watcher reconnected, and when a saga met a rotated keyset (12002)
            self.keyset_refresher = KeysetRefresher(
                self._scheduled_refresh,
                lambda: wait(self._supervisor.mint_urls(), LOOKUP_TIMEOUT, "Supervisor"),
                keyset_refresh)
            deps = OperationDeps(ledger=self._ledger, events=self._events_ref,
                                 deriver=self._deriver, signal=signal, keys=self._keyring,
                                 refresher=self.keyset_refresher)
            self._supervisor_ref, self._supervisor = start_supervisor(deps)
            started.append(self._supervisor_ref)
            wait(self._supervisor.mint_urls(), LOOKUP_TIMEOUT, "Supervisor")
            self.keyset_refresher.start()
            if watcher:
                config = watcher if isinstance(watcher, WatcherConfig) else WatcherConfig()
                self._watcher_ref = WatcherActor.start(
                    config, SupervisorNotices(self._supervisor_ref),
                    on_reconnect=self._on_reconnect)
                started.append(self._watcher_ref)
                self._watcher = self._watcher_ref.proxy()
                wait(self._supervisor.set_watcher(self._watcher_ref), LOOKUP_TIMEOUT,
                     "Supervisor")
        except BaseException:
            # a failed open leaves no actor running (a stuck one is logged, not raised:
            # the error the caller sees is the one that failed the open)
            refresher_: KeysetRefresher | None = getattr(self, "keyset_refresher", None)
            if refresher_ is not None:
                refresher_.stop()
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
        if self._consolidation.active:  # after recovery too
            self.consolidator = Consolidator(ConsolidateCalls(
                holdings=self._holdings, consolidate=self._consolidate,
                resume=self._resume_consolidations, on=self.on, off=self.off),
                self._consolidation)
            try:
                self.consolidator.start()
            except BaseException:
                self.close()
                raise

    @classmethod
    def open(cls, data_dir: str | Path, mnemonic: str | None = None, *,
             recover: bool = True, watcher: bool | WatcherConfig = True,
             rollback_prepared_after: float | None = None,
             exposure: Mapping[str, int] | None = None, sweep_to: str | None = None,
             sweeper: SweeperConfig | None = None,
             idempotency_ttl: float = DEFAULT_IDEMPOTENCY_TTL,
             event_retention: float = DEFAULT_RETENTION,
             webhooks: Sequence[WebhookSpec] = (), webhook_hosts: Sequence[str] = (),
             webhook_retry: RetryPolicy | None = None,
             keyset_refresh: float | None = DEFAULT_KEYSET_REFRESH,
             consolidation: ConsolidationPolicy | bool | None = None,
             pacing: PacingConfig | None = None) -> Coco:
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

        ``idempotency_ttl``: how many seconds an idempotency key is kept (default 24 h);
        expired keys are pruned at open and periodically, and a key reused after it
        expired starts a fresh call.
        ``event_retention``: seconds events are kept in the outbox (``coco.events``;
        default 7 days); older ones are pruned at open and then every few minutes,
        never the newest.

        ``webhooks`` (given at start, their cursors kept across starts), ``webhook_hosts``
        (the hosts besides loopback that webhooks may go to, also for
        ``coco.webhooks.add``) and ``webhook_retry`` (backoff, request timeout): every
        event is POSTed, signed, to each webhook (:mod:`coco_actors.webhooks`).

        ``keyset_refresh``: seconds between two refreshes of every mint's keysets
        (default an hour; None: no schedule). Keysets are also refreshed after the
        watcher reconnected to a mint, when a token names an unknown keyset, and when
        a mint answers 12002 (keyset inactive) (:mod:`coco_actors.refresher`).

        ``consolidation``: the background consolidation policy
        (:mod:`coco_actors.consolidator`): None (default) migrates proofs of inactive
        keysets whose ``final_expiry`` is within two weeks into the active keyset; a
        :class:`ConsolidationPolicy` tunes it (``max_proofs``: consolidate a mint holding
        more proofs than that, off by default); False turns every trigger off.

        ``pacing``: how requests to each mint are paced and how long 429s are waited
        out (:mod:`coco_actors.pacing`); it applies to the whole process, since a mint
        limits per address. Default: 1 request/s, bursts of 20, loopback mints unpaced,
        429s retried for up to 120 s, then :class:`~coco_actors.errors.RateLimitedError`.

        A directory that cannot be written (read-only, no permission, no space) is
        a :class:`~coco_actors.store.DataDirError`, with nothing changed. A stored
        record this release cannot decode does not stop the open: it is logged by
        kind and key, left on disk, and counted in ``last_recovery["unreadable"]``
        (its proofs stay reserved, its operation where it was). An open that fails
        leaves no actor or thread running and the directory unlocked.
        """
        policy = ExposurePolicy.from_options(exposure, sweep_to, sweeper)
        if (isinstance(idempotency_ttl, bool) or not isinstance(idempotency_ttl, int | float)
                or not idempotency_ttl > 0):
            raise InvalidInputError(f"idempotency_ttl must be a positive number of seconds, "
                                    f"got {idempotency_ttl!r}")
        retention = _check_retention(event_retention)
        refresh = check_interval(keyset_refresh)
        Webhooks.validate(webhooks, webhook_hosts)
        if consolidation is None or consolidation is True:
            consolidation = ConsolidationPolicy()
        elif consolidation is False:
            consolidation = ConsolidationPolicy(inactive="off")
        elif not isinstance(consolidation, ConsolidationPolicy):
            raise InvalidInputError(f"consolidation must be a ConsolidationPolicy, True or "
                                    f"False, got {consolidation!r}")
        if pacing is not None:
            configure_pacing(pacing)
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
                       idempotency_ttl=float(idempotency_ttl), event_retention=retention,
                       webhooks=webhooks, webhook_hosts=webhook_hosts,
                       webhook_retry=webhook_retry, keyset_refresh=refresh,
                       consolidation=consolidation)
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
        if self.consolidator is not None and not self.consolidator.stop(CALL_TIMEOUT):
            log.error("the consolidator did not stop within %s s", CALL_TIMEOUT)
        webhooks: Webhooks | None = getattr(self, "webhooks", None)  # a failed open: none
        if webhooks is not None:
            webhooks.close()  # before the ledger their cursors are written through
        if not self.keyset_refresher.stop(CALL_TIMEOUT):
            log.error("the keyset refresher did not stop within %s s", CALL_TIMEOUT)
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

    def _receive(self, token: str, op_id: OperationId | None = None,
                 bind: Bind = _unbound) -> Operation:
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
        ctx = self._mint_context(decoded.mint)  # with any keyset _resolve just fetched
        keys = {ks.id: ks for ks in ctx.keysets}
        _check_token_units(decoded, keys)

        def key_for(keyset_id: str, amount: int) -> str:
            return keys[keyset_id].key_for(amount)

        verify_proofs_dleq(list(decoded.proofs), key_for)
        # op_id: a payment attempt committed this id before the receive exists, so a
        # crash at any point after it finds its receive (or knows none was recorded)
        actor = self._ask(self._supervisor.new_receive(ctx.url, decoded.amount, decoded.unit,
                                                       op_id))
        bind(wait(actor.operation(), CALL_TIMEOUT, "receive operation").id)
        wait(actor.prepare(decoded), CALL_TIMEOUT, "receive operation")
        return wait(actor.execute(), CALL_TIMEOUT, "receive operation")

    def _resolve(self, token: Token, ctx: MintContext) -> Token:
        try:
            return resolve_keyset_ids(token, [ks.id for ks in ctx.keysets])
        except TokenError:
            fresh = self._refresh_keysets(ctx.url)  # a keyset new since: asked once
            return resolve_keyset_ids(token, [ks.id for ks in fresh.keysets])

    def restore(self, mint_url: str) -> RestoreReport:
        """Recover every unspent proof this mnemonic ever received at ``mint_url``
        (NUT-09, batches of 100) and move each NUT-13 counter past the last index used.

        The mint must have been added. Its keysets are fetched again first, so every
        keyset it lists (active and inactive) is scanned. Proofs the wallet already
        holds, or that sit in the token of an open send, are not added twice.
        """
        ctx = self._mint_context(mint_url)
        self._refresh_keysets(ctx.url)
        return restore_wallet(ctx, self._deriver, self._ledger)

    def audit(self, mint_url: str | None = None, fix: bool = False) -> AuditReport:
        """The solvency report (:mod:`coco_actors.audit`): per mint and unit, the wallet's
        proofs checked with NUT-07, its reservations, pending sends and melts, and every
        difference between what it counts and what the mint confirms.

        Changes nothing unless ``fix``; then it removes only ready proofs the mint says
        are spent and no operation holds (the report's ``fixed``). A mint that does not
        answer is reported (``reachable`` False, ``error``) and nothing of it changes.
        ``mint_url`` must be a mint of the wallet (:class:`NotFoundError`). The NUT-07
        requests run on the caller's thread.
        """
        if not isinstance(fix, bool):
            raise InvalidInputError(f"fix must be True or False, got {fix!r}")
        url = None
        if mint_url is not None:
            url = normalize_mint_url(mint_url)
            if url not in {m.url for m in self.mints.list()}:
                raise NotFoundError(f"unknown mint {url}; add it first")
        return audit_wallet(self._ledger, lambda u: self._mint_context(u).client, url, fix)

    # --- consolidation (issue 13) --------------------------------------------------------

    def consolidate(self, mint_url: str, *, max_fee_fraction: float | None = None,
                    idempotency_key: str | None = None) -> ConsolidationResult:
        """Swap the mint's spendable proofs (every proof of an inactive keyset first,
        then the smallest; at most 1000 inputs, never more than the mint's array cap)
        into the fewest proofs of their total minus the NUT-02 input fee, in the active
        keyset.

        Skipped, with nothing changed (the result's ``skipped`` says why, ``operation``
        is None), when the outputs would not be fewer than the inputs and no proof
        changes keyset, or when the fee exceeds ``max_fee_fraction`` of the amount
        (default: the policy's, 0.1). Otherwise the result's ``operation`` is the
        consolidation, completed (or left ``executing`` when the mint could not be
        reached: recovery, or the policy's next pass, finishes it).

        ``idempotency_key``: a repeat returns the consolidation the key names, also
        after a restart; a skipped call binds no key.
        """
        key = _check_key(idempotency_key)
        fraction = (self._consolidation.max_fee_fraction if max_fee_fraction is None
                    else check_fee_fraction(max_fee_fraction))
        url = self._mint_context(mint_url).url
        rule = ConsolidationRule(max_inputs=MAX_INPUTS, max_fee_fraction=fraction)

        def replay(rec: IdempotencyRecord) -> ConsolidationResult:
            op = self._target(rec)
            if op.state == OpState.EXECUTING:  # the first call's answer was lost
                op = self._resume_consolidation(op.id)
            return ConsolidationResult.of(op)

        return self._idempotent(key, "consolidate", (url, fraction),
                                lambda bind: self._consolidate(url, rule, bind), replay)

    def _consolidate(self, url: str, rule: ConsolidationRule,
                     bind: Bind = _unbound) -> ConsolidationResult:
        actor = self._ask(self._supervisor.new_consolidate(url))
        bind(wait(actor.operation(), CALL_TIMEOUT, "consolidate operation").id)
        return wait(actor.consolidate(rule), CALL_TIMEOUT, "consolidate operation")

    def _holdings(self) -> list[MintHoldings]:
        """Per mint, its spendable proofs and the inactive keysets holding some (the
        Consolidator's thread)."""
        records = wait(self._ledger.all_proof_records(), LOOKUP_TIMEOUT, "ProofLedger")
        out = []
        for mint in self.mints.list():
            keysets = {k.id: k for k in self._mint_context(mint.url).keysets}
            ready = [r for r in records
                     if r.mint_url == mint.url and r.status == ProofStatus.READY]
            inactive = {r.proof.keyset_id for r in ready
                        if r.proof.keyset_id in keysets
                        and not keysets[r.proof.keyset_id].active}
            out.append(MintHoldings(mint.url, len(ready),
                                    [keysets[k].final_expiry for k in sorted(inactive)]))
        return out

    def _resume_consolidations(self) -> None:
        """Recover consolidations left ``executing`` by a mint that could not be reached."""
        for op in wait(self._ledger.operations(OpType.CONSOLIDATE), LOOKUP_TIMEOUT,
                       "ProofLedger"):
            if op.state == OpState.EXECUTING:
                self._resume_consolidation(op.id)

    def _resume_consolidation(self, op_id: str) -> Operation:
        def recover(actor: ConsolidateOperationProxy) -> pykka.Future[Operation]:
            return actor.recover()

        return self._step(op_id, lambda: self._supervisor.consolidate_actor(op_id), recover)

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

    def _idempotent(self, key: str | None, kind: str, args: Sequence[object],
                    run: Callable[[Bind], T], replay: Callable[[IdempotencyRecord], T],
                    timeout: float = CALL_TIMEOUT) -> T:
        """Run ``run`` once per ``key``: a repeat of the same request gets ``replay`` of
        what the key names (also after a restart); another request under the key is an
        :class:`IdempotencyConflictError`. A second caller with the key waits (at most
        ``timeout`` + :data:`CALL_TIMEOUT` s) for the first to end. ``run`` calls its
        :data:`Bind` with the target's id before the target's first commit; a call that
        fails before that commit leaves the key free."""
        if key is None:
            return run(_unbound)
        key = check_key(key)
        fp = fingerprint(kind, *args)
        ledger = self._ledger
        with self._key_gate.exclusive(key, timeout + CALL_TIMEOUT):
            known = wait(ledger.find_key(key), LOOKUP_TIMEOUT, "ProofLedger")
            if known is not None:
                if known.fingerprint != fp:
                    raise IdempotencyConflictError(
                        f"this idempotency key was used for another request ({known.kind} "
                        f"{known.target}); nothing was changed", operation_id=known.target)
                log.info("idempotency key repeated: %s %s", known.kind, known.target)
                return replay(known)
            bound: list[str] = []

            def bind(target: str) -> None:
                wait(ledger.bind_key(IdempotencyRecord(key, fp, kind, target)),
                     LOOKUP_TIMEOUT, "ProofLedger")
                bound.append(target)

            try:
                return run(bind)
            finally:  # committed bindings are kept; one never committed is dropped
                for target in bound:
                    wait(ledger.unbind_key(key, target), LOOKUP_TIMEOUT, "ProofLedger")

    def _target(self, rec: IdempotencyRecord) -> Operation:
        """The operation an idempotency key names (terminal ones too)."""
        op = wait(self._ledger.get_operation(rec.target), LOOKUP_TIMEOUT, "ProofLedger")
        if op is None:
            raise NotFoundError(f"the operation {rec.target} of this idempotency key is gone")
        return op

    def _ask(self, future: pykka.Future[T], timeout: float = LOOKUP_TIMEOUT) -> T:
        return wait(future, timeout, "Supervisor")

    def _mint_context(self, url: str) -> MintContext:
        """Cached: mint contexts only change through this facade (add, refresh)."""
        url = normalize_mint_url(url)
        ctx = self._contexts.get(url)
        if ctx is None:
            ctx = self._contexts[url] = self._ask(self._supervisor.mint_context(url))
        return ctx

    def _on_reconnect(self, url: str) -> None:
        """The watcher reconnected to a mint (on its link's thread): it may have restarted
        with new keysets. Queued for the refresher; never blocks."""
        self.keyset_refresher.request(url)

    def _scheduled_refresh(self, url: str) -> None:
        """One refresh on the refresher's thread."""
        self._refresh_keysets(url)

    def _refresh_keysets(self, url: str) -> MintContext:
        """Fetch a known mint's keysets again (network IO, on the calling thread: the
        refresher's or a caller's) and have them verified and stored."""
        ctx = self._mint_context(url)
        return self._register(MintRecord(url=ctx.url), ctx.client, fetch_keysets(ctx.client))

    def _unit_context(self, url: str, unit: str) -> MintContext:
        """The mint's context, refused (:class:`InvalidInputError`, no request that
        changes anything made) unless it has an active keyset of ``unit``."""
        ctx = self._mint_context(url)
        if not any(ks.active and ks.unit == unit for ks in ctx.keysets):
            # the mint may have added the unit since: asked once (a read, nothing changes)
            ctx = self._refresh_keysets(ctx.url)
        if not any(ks.active and ks.unit == unit for ks in ctx.keysets):
            units = sorted({ks.unit for ks in ctx.keysets if ks.active})
            raise InvalidInputError(f"mint {ctx.url} has no active keyset in {unit!r} "
                                    f"(it has: {', '.join(units) or 'none'})")
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

    def keysets(self, mint_url: str) -> builtins.list[Keyset]:
        """Every keyset the wallet knows for a mint (active and inactive), as stored."""
        return wait(self._coco._ledger.keysets(normalize_mint_url(mint_url)), LOOKUP_TIMEOUT,
                    "ProofLedger")

    def refresh(self, mint_url: str) -> builtins.list[Keyset]:
        """Fetch a known mint's keysets now (on the caller's thread); what is stored."""
        return list(self._coco._refresh_keysets(mint_url).keysets)

    def info(self, mint_url: str) -> MintInfo:
        """The mint's NUT-06 info, asked on the caller's thread."""
        return self._coco._mint_context(mint_url).client.get_info()


class MintApi:
    def __init__(self, coco: Coco) -> None:
        self._coco = coco

    def create_quote(self, mint_url: str, amount: int, *, unit: str = "sat",
                     idempotency_key: str | None = None) -> MintQuote:
        """A bolt11 mint quote: pay ``quote.request``, then :meth:`redeem` ``quote.id``.

        ``amount`` is in ``unit``; the mint needs an active keyset of it
        (:class:`InvalidInputError` before any request otherwise).

        Repeated with the same ``idempotency_key``: the same quote (its state as the
        mint tells it now), no second one."""
        key = _check_key(idempotency_key)
        _check_amount(amount)
        unit = _check_unit(unit)
        coco = self._coco
        ctx = coco._unit_context(mint_url, unit)

        def run(bind: Bind) -> MintQuote:
            actor = coco._ask(coco._supervisor.new_mint(ctx.url, amount, unit))
            bind(wait(actor.operation(), CALL_TIMEOUT, "mint operation").id)
            return wait(actor.create_quote(), CALL_TIMEOUT, "mint operation")

        def replay(rec: IdempotencyRecord) -> MintQuote:
            return ctx.client.get_mint_quote(coco._target(rec).quote_id or "")

        return coco._idempotent(key, "mint.quote", (ctx.url, amount, *_unit_args(unit)), run,
                                replay)

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

    def _keyed_step(self, operation_id: str, key: str | None, verb: str,
                    check: Callable[[Operation], None],
                    step: Callable[[PX], pykka.Future[Operation]],
                    timeout: float = CALL_TIMEOUT) -> Operation:
        """One step (execute, rollback) of an existing operation under an idempotency key
        of its own: ``check`` refuses it (nothing changed); a repeat of the key returns
        the operation as the first call left it (and as it stands now)."""
        coco = self._coco
        op_id = coco._operation(operation_id, self.op_type).id

        def run(bind: Bind) -> Operation:
            op = coco._operation(op_id, self.op_type)
            check(op)
            bind(op.id)
            return self._step(op.id, step, timeout)

        return coco._idempotent(key, f"{self.op_type.value}.{verb}", (op_id,), run,
                                self._settled, timeout)

    def _settled(self, rec: IdempotencyRecord) -> Operation:
        """A repeated step's operation; one the first call left ``executing`` (its answer
        was lost, or the daemon died) is resolved now, as recovery would."""
        op = self._coco._target(rec)
        if op.state == OpState.EXECUTING:
            op = self._step(op.id, lambda a: cast(OperationProxy, a).recover())
        return op

    def _rollback(self, operation_id: str, key: str | None,
                  step: Callable[[PX], pykka.Future[Operation]]) -> Operation:
        return self._keyed_step(operation_id, key, "rollback", self._check_open, step)

    def _check_open(self, op: Operation) -> None:
        _not_a_leg(op)
        if op.state.terminal:
            raise InvalidStateError(f"{op.type.value} {op.id} is already {op.state.value}")

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
                     refund: str | Sequence[str] | None = None, unit: str = "sat",
                     idempotency_key: str | None = None) -> Operation:
        """Reserve proofs for ``amount`` (in ``unit``: only proofs of that unit's keysets
        are selected) and persist the swap's outputs.

        The result's ``fee`` is the input fee the mint will charge for the swap
        (0 when proofs match the amount exactly and no swap is needed).

        ``p2pk`` locks the token (NUT-11) to a public key, or to several of which
        ``n_sigs`` must sign; ``locktime`` (unix seconds) opens the ``refund`` keys'
        path once passed (without refund keys anyone can spend it then). A locked
        send always swaps (so it pays the input fee) and its token is worth exactly
        ``amount``. Every key is checked here (:class:`InvalidInputError`).

        ``idempotency_key``: a repeat with the same key and arguments returns the same
        operation (as it stands now), also after a restart; no second reservation.
        """
        key = _check_key(idempotency_key)
        _check_amount(amount)
        lock = None
        if p2pk is not None:
            lock = P2PKLock.of(p2pk, n_sigs, locktime, refund)
        elif n_sigs != 1 or locktime is not None or refund is not None:
            raise InvalidInputError("n_sigs, locktime and refund need p2pk (the lock keys)")
        unit = _check_unit(unit)
        ctx = self._coco._unit_context(mint_url, unit)
        locks = None if lock is None else [list(lock.pubkeys), lock.n_sigs, lock.locktime,
                                           list(lock.refund)]
        return self._prepare(ctx, amount, lock, key,
                             [ctx.url, amount, locks, *_unit_args(unit)], unit)

    def _prepare(self, ctx: MintContext, amount: int, lock: P2PKLock | None,
                 key: str | None, args: Sequence[object], unit: str = "sat") -> Operation:
        coco = self._coco
        return coco._idempotent(key, "send.prepare", args,
                                lambda bind: self._prepare_bound(ctx, amount, lock, bind, unit),
                                coco._target)

    def _prepare_bound(self, ctx: MintContext, amount: int, lock: P2PKLock | None,
                       bind: Bind, unit: str = "sat") -> Operation:
        """The prepare itself, ``bind`` called with the send's id before its first commit
        (also what ``coco.requests.pay`` runs under its own key)."""
        coco = self._coco
        if lock is not None and not ctx.client.get_info().supports(11):
            raise InvalidInputError(f"mint {ctx.url} does not support P2PK locks (NUT-11)")
        actor = coco._ask(coco._supervisor.new_send(ctx.url, amount, unit))
        bind(wait(actor.operation(), CALL_TIMEOUT, "send operation").id)
        return wait(actor.prepare(amount, lock=lock), CALL_TIMEOUT, "send operation")

    def execute_prepared_send(self, operation_id: str, *,
                              idempotency_key: str | None = None) -> tuple[Operation, str]:
        """Swap (if needed) and return the operation, now pending, and its token.

        ``idempotency_key`` (the execute's own, not the prepare's): executing again
        with it, or after a dropped answer, returns the first result: the same
        operation and the same token, never a second swap."""
        key = _check_key(idempotency_key)
        coco = self._coco
        op_id = coco._operation(operation_id, OpType.SEND).id

        def run(bind: Bind) -> tuple[Operation, str]:
            op = coco._operation(op_id, OpType.SEND)
            if op.state != OpState.PREPARED:
                raise InvalidStateError(f"send {op.id} is {op.state.value}, not prepared")
            bind(op.id)
            op = self._step(op.id, lambda a: a.execute())
            return op, op.token or ""

        def replay(rec: IdempotencyRecord) -> tuple[Operation, str]:
            op = self._settled(rec)
            if op.state == OpState.PREPARED:  # the first call was rate limited (429)
                op = self._step(op.id, lambda a: a.execute())
            return op, op.token or ""

        return coco._idempotent(key, SEND_EXECUTE, (op_id,), run, replay)

    def rollback(self, operation_id: str, *, idempotency_key: str | None = None) -> Operation:
        """Undo a prepared send (release) or a pending one (reclaim the token with a swap).

        A locked pending send is reclaimed only with a key that unlocks it now (a
        refund key after the locktime, or the lock keys themselves); otherwise a
        :class:`LockedTokenError` says why, and nothing changed.
        """
        return self._rollback(operation_id, _check_key(idempotency_key),
                              lambda a: a.rollback())

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
                     swap: bool | None = None, unit: str = "sat",
                     idempotency_key: str | None = None) -> Operation:
        """Quote ``invoice`` at the mint in ``unit`` and hold inputs of that unit for it.

        The result's ``amount`` is what the invoice pays, ``fee_reserve`` the mint's
        lightning fee reserve, ``fee`` the input fee(s) this melt pays, and
        ``input_amount`` what is held; after completion ``amount + fee_paid + fee``
        is what left the balance. ``swap`` None picks the cheapest way (see
        :meth:`MeltOperation.prepare`); True forces a swap first.
        """
        key = _check_key(idempotency_key)
        inv = _payable(invoice)
        unit = _check_unit(unit)
        coco = self._coco
        url = coco._unit_context(mint_url, unit).url
        if swap is not None and not isinstance(swap, bool):
            raise InvalidInputError(f"swap must be True, False or None, got {swap!r}")

        def run(bind: Bind) -> Operation:
            actor = coco._ask(coco._supervisor.new_melt(url, inv.amount_sat or 0, unit))
            bind(wait(actor.operation(), CALL_TIMEOUT, "melt operation").id)
            return wait(actor.prepare(inv, swap), CALL_TIMEOUT, "melt operation")

        return coco._idempotent(key, "melt.prepare",
                                (url, inv.payment_hash, swap, *_unit_args(unit)), run,
                                coco._target)

    def execute_prepared_melt(self, operation_id: str, timeout: float = 60.0, *,
                              idempotency_key: str | None = None) -> Operation:
        """Melt; returns within about ``timeout`` seconds: ``completed`` (paid, with
        ``preimage``, ``change_amount`` and ``fee_paid``) or ``pending`` while the
        payment is in flight (the Watcher, or :meth:`check_pending`, finishes it)."""
        key = _check_key(idempotency_key)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise InvalidInputError(f"timeout must be a positive number of seconds, "
                                    f"got {timeout!r}")

        def check(op: Operation) -> None:
            _not_a_leg(op)
            if op.state != OpState.PREPARED:
                raise InvalidStateError(f"melt {op.id} is {op.state.value}, not prepared")
            if op.quote_request and decode_invoice(op.quote_request).is_expired(time.time()):
                # checked again here: it may have expired since prepare, and Nutshell pays it
                raise InvoiceError(f"the invoice of melt {op.id} has expired; roll the melt "
                                   "back")

        return self._keyed_step(operation_id, key, "execute", check,
                                lambda a: a.execute(float(timeout)),
                                timeout=float(timeout) + CALL_TIMEOUT)

    def rollback(self, operation_id: str, *, idempotency_key: str | None = None) -> Operation:
        """Prepared: release. Pending: only once the mint says the payment failed."""
        return self._rollback(operation_id, _check_key(idempotency_key),
                              lambda a: a.rollback())

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

    def prepare(self, from_mint: str, to_mint: str, amount: int, *,
                idempotency_key: str | None = None) -> Operation:
        """Create the mint quote at ``to_mint`` and the melt paying it at ``from_mint``.

        ``amount`` is what arrives at ``to_mint``; ``fee_reserve`` (lightning) and
        ``fee`` (input fees) are what it may cost at most at ``from_mint``, on top.
        Refused before any request: the same mint twice, a mint not added, an amount
        that is not a positive integer, or one above the source's spendable balance.
        """
        key = _check_key(idempotency_key)
        coco = self._coco
        _check_amount(amount)
        source = coco._mint_context(from_mint).url
        target = coco._mint_context(to_mint).url
        if source == target:
            raise InvalidInputError(f"a transfer needs two different mints, got {source} twice")

        def run(bind: Bind) -> Operation:
            spendable = coco.balance().get(source, MintBalance()).spendable
            if amount > spendable:
                raise InsufficientFundsError(
                    f"balance at {source} ({spendable} spendable) cannot cover {amount} "
                    "plus fees", needed=amount, available=spendable)
            actor = coco._ask(coco._supervisor.new_transfer(source, target, amount))
            bind(wait(actor.operation(), CALL_TIMEOUT, "transfer operation").id)
            return wait(actor.prepare(), CALL_TIMEOUT, "transfer operation")

        return coco._idempotent(key, "transfer.prepare", (source, target, amount), run,
                                coco._target)

    def execute(self, operation_id: str, timeout: float = 120.0, *,
                idempotency_key: str | None = None) -> Operation:
        """Melt, then redeem at ``to_mint``; returns within about ``timeout`` seconds:
        ``completed`` (``received`` = amount, ``fee_paid`` the lightning fee),
        ``pending`` (the payment is in flight, or ``to_mint`` has not issued yet: the
        Watcher or :meth:`check_pending` finishes it) or ``rolled_back`` (not paid)."""
        return self._execute(operation_id, timeout, _check_key(idempotency_key), "execute")

    def _execute(self, operation_id: str, timeout: float, key: str | None,
                 verb: str) -> Operation:
        """Shared with ``coco.receive.execute`` (its own ``verb``)."""
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise InvalidInputError(f"timeout must be a positive number of seconds, "
                                    f"got {timeout!r}")

        def check(op: Operation) -> None:
            if op.state != OpState.PREPARED:
                raise InvalidStateError(f"transfer {op.id} is {op.state.value}, not prepared")

        return self._keyed_step(operation_id, key, verb, check,
                                lambda a: a.execute(float(timeout)),
                                timeout=float(timeout) + CALL_TIMEOUT)

    def rollback(self, operation_id: str, *, idempotency_key: str | None = None) -> Operation:
        """Prepared: release. Executing or pending: only once the source mint says the
        payment failed; never once it may be paid."""
        return self._rollback(operation_id, _check_key(idempotency_key),
                              lambda a: a.rollback())

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
                 timeout: float = 120.0, idempotency_key: str | None = None) -> Operation:
        """The receive operation (``completed``); with ``into``, the transfer as
        :meth:`execute` returns it.

        ``idempotency_key``: a repeat with the same key and token returns the same
        operation (no second swap, no ``TokenSpentError``), also after a restart."""
        key = _check_key(idempotency_key)
        coco = self._coco
        if key is None:  # unchanged: no fingerprint, the token is checked by the call
            if into is None:
                return coco._receive(token)
            return self.execute(self.prepare(token, into=into).id, timeout=timeout)
        args = _token_args(token)
        if into is None:
            return coco._idempotent(key, "receive", args,
                                    lambda bind: coco._receive(token, bind=bind), coco._target)
        target = coco._mint_context(into).url

        def run(bind: Bind) -> Operation:
            return self.execute(self._prepare(token, into, bind).id, timeout=timeout)

        def replay(rec: IdempotencyRecord) -> Operation:
            op = coco._target(rec)  # a crash between prepare and execute: execute it now
            return self.execute(op.id, timeout=timeout) if op.state == OpState.PREPARED else op

        return coco._idempotent(key, "receive.into", [*args, target], run, replay,
                                float(timeout) + CALL_TIMEOUT)

    def prepare(self, token: str, *, into: str,
                idempotency_key: str | None = None) -> Operation:
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
        key = _check_key(idempotency_key)
        if key is None:
            return self._prepare(token, into, _unbound)
        coco = self._coco
        target = coco._mint_context(into).url if isinstance(into, str) else into
        return coco._idempotent(key, "receive.prepare", [*_token_args(token), target],
                                lambda bind: self._prepare(token, into, bind), coco._target)

    def _prepare(self, token: str, into: str, bind: Bind) -> Operation:
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
        bind(wait(actor.operation(), CALL_TIMEOUT, "transfer operation").id)
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

    def execute(self, operation_id: str, timeout: float = 120.0, *,
                idempotency_key: str | None = None) -> Operation:
        """Melt the token's proofs to pay ``into``, then redeem there (as
        :meth:`TransferApi.execute`): ``completed`` (``received`` at ``into``,
        ``change_amount`` kept at the token's mint), ``pending``, or ``rolled_back``
        when the payment failed, with the token received at its own mint instead
        (``change_amount``, ``receive_id``; ``error`` says so)."""
        key = _check_key(idempotency_key)
        op = self._coco._operation(operation_id, OpType.TRANSFER)
        if not op.inputs:
            raise NotFoundError(f"transfer {op.id} is not a receive into another mint")
        return self._coco.transfer._execute(op.id, timeout, key, "receive-execute")

    def rollback(self, operation_id: str, *, idempotency_key: str | None = None) -> Operation:
        """Prepared: the token is forgotten (never the wallet's; it can be received
        again). Executing or pending: as :meth:`TransferApi.rollback`, and a melt that
        did not pay leaves the token received at its own mint."""
        key = _check_key(idempotency_key)
        op = self._coco._operation(operation_id, OpType.TRANSFER)
        if not op.inputs:
            raise NotFoundError(f"transfer {op.id} is not a receive into another mint")
        return self._coco.transfer.rollback(op.id, idempotency_key=key)


def _token_args(token: object) -> list[object]:
    """A token's part of a request fingerprint: its mint, unit and sorted proof Ys
    (never the token itself: it is bearer value)."""
    if not isinstance(token, str):
        raise TokenError("token must be a string")
    decoded = decode(token)
    return [normalize_mint_url(decoded.mint), decoded.unit,
            sorted(secret_to_y(p.secret) for p in decoded.proofs)]


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
    """The wallet's operations, newest first (``coco.history``); reads the store on the
    caller's thread."""

    def __init__(self, coco: Coco) -> None:
        self._coco = coco

    def get_history(self, limit: int | None = None) -> list[HistoryEntry]:
        """One entry per operation, newest first, with its current state."""
        return self._coco._store.history(limit)

    def __call__(self, *, limit: int | None = None, cursor: str | None = None,
                 mint_url: str | None = None, kind: str | None = None,
                 state: str | None = None) -> Page[HistoryEntry]:
        """One page of the history, newest first: at most ``limit`` entries after
        ``cursor`` (the ``next_cursor`` of the page before), at ``mint_url`` (a
        transfer's either end), of ``kind`` (``send``, ``melt``, ...), in ``state``."""
        items, last = self._page(limit, cursor, mint_url, kind, state, active=False)
        return Page(items, encode_cursor(last))

    def active(self, *, limit: int | None = None, cursor: str | None = None,
               mint_url: str | None = None, kind: str | None = None,
               state: str | None = None) -> Page[Operation]:
        """As :meth:`__call__`, over the operations not at rest (every kind), each as
        its full record; one that ended meanwhile is still shown as it is now."""
        items, last = self._page(limit, cursor, mint_url, kind, state, active=True)
        ops = [self._coco._store.get_operation(e.operation_id) for e in items]
        return Page([op for op in ops if op is not None], encode_cursor(last))

    def _page(self, limit: int | None, cursor: str | None, mint_url: str | None,
              kind: str | None, state: str | None, *,
              active: bool) -> tuple[list[HistoryEntry], bytes | None]:
        keep = entry_filter(mint_url=None if mint_url is None else normalize_mint_url(mint_url),
                            kind=kind, state=state, active=active)
        return self._coco._store.history_page(check_limit(limit), decode_cursor(cursor), keep)

