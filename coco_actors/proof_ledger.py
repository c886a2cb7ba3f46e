"""ProofLedger: the single writer of the wallet's durable state.

It is the only code that selects, reserves, releases and spends proofs, and the
only code that hands out NUT-13 counters. Because it is an actor, each of those
is a check-and-set under its mailbox: two operations can never hold the same
proof, and a counter value is never handed out twice. It also commits
operation records, so that a transition that moves proofs and the operation's
new state land in **one** LMDB write transaction.

It keeps everything it owns in memory (loaded once at start) so selection and
balances never scan the database, and it never touches the network.

It is also the outbox's writer (:mod:`coco_actors.events`): a transition handed an
:class:`~coco_actors.events.Emission` gets the next ``seq`` and its event record in the
same transaction; after the commit the ledger wakes ``coco.events`` readers and tells
the EventBus, in seq order, from this one thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import cast

import pykka
from pykka.typing import ActorMemberMixin, proxy_method

from coco_actors.actors import tell
from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.crypto.keysets import fee_for
from coco_actors.errors import (
    CryptoError,
    InsufficientFundsError,
    InvalidStateError,
    NotFoundError,
    PaymentRequestError,
)
from coco_actors.events import (
    DEFAULT_RETENTION,
    PRUNE_EVERY,
    Emission,
    EventBus,
    EventBusActor,
    EventLog,
    request_event,
)
from coco_actors.keys import WalletKey
from coco_actors.records import (
    AttemptState,
    IdempotencyRecord,
    MintRecord,
    Operation,
    OperationId,
    OpState,
    OpType,
    PaymentAttempt,
    ProofRecord,
    ProofStatus,
    RequestRecord,
    RequestState,
    WebhookRecord,
    now_ms,
)
from coco_actors.selection import Select, Selection, inactive_first, select_proofs
from coco_actors.store import Store, WriteBatch
from coco_actors.wire import Keyset, Proof

log = logging.getLogger(__name__)

#: How long an idempotency key is kept by default (24 h).
DEFAULT_IDEMPOTENCY_TTL = 24 * 3600.0
#: Expired keys are pruned at start and, at most this often, when a key is bound.
PRUNE_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class MintBalance:
    spendable: int = 0
    reserved: int = 0
    pending: int = 0

    @property
    def total(self) -> int:
        return self.spendable + self.reserved + self.pending


#: The unit of a keyset the wallet does not know, and of every balance read as a plain dict.
DEFAULT_UNIT = "sat"


def _sum(balances: Iterable[MintBalance]) -> MintBalance:
    items = list(balances)
    return MintBalance(spendable=sum(b.spendable for b in items),
                       reserved=sum(b.reserved for b in items),
                       pending=sum(b.pending for b in items))


class Balances(dict[str, MintBalance]):
    """Per mint URL its **sat** :class:`MintBalance` (the shape every caller reads), and
    :attr:`total` over every mint; :attr:`units` holds every unit of every mint.

    Amounts of two units are never added: ``balances.unit("usd")`` is the same shape for
    another unit, ``balances.totals()`` one total per unit.
    """

    def __init__(self, per_mint: Mapping[str, MintBalance] | None = None,
                 units: Mapping[str, Mapping[str, MintBalance]] | None = None) -> None:
        super().__init__(per_mint or {})
        if units is None:
            units = {url: {DEFAULT_UNIT: b} for url, b in self.items()}
        #: per mint URL, per unit (sorted), its balance; a mint's sat is always there
        self.units: dict[str, dict[str, MintBalance]] = {
            url: dict(sorted(per_unit.items())) for url, per_unit in units.items()}

    @property
    def total(self) -> MintBalance:
        """The sat balance summed over every mint."""
        return _sum(self.values())

    def unit(self, unit: str) -> Balances:
        """Per mint URL its balance in ``unit`` (zero at a mint without it)."""
        return Balances({url: per_unit.get(unit, MintBalance())
                         for url, per_unit in self.units.items()})

    def totals(self) -> dict[str, MintBalance]:
        """Per unit held anywhere, its balance summed over every mint (sat always)."""
        names = sorted({DEFAULT_UNIT, *(u for per in self.units.values() for u in per)})
        return {u: self.unit(u).total for u in names}


@dataclass(frozen=True, slots=True)
class LedgerView:
    """One instant of the ledger as an audit sees it (taken in one mailbox turn).

    ``proofs``: every proof held (ready or reserved); ``operations``: every operation
    not at an end (a pending send's token proofs are in its ``send_proofs``);
    ``units``: per mint URL, per keyset id, the keyset's unit.
    """

    at: int
    mints: tuple[str, ...]
    proofs: tuple[ProofRecord, ...]
    operations: tuple[Operation, ...]
    units: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


class ChangeSignal:
    """Wakes callers waiting for proofs to come back (change, releases)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._version = 0

    @property
    def version(self) -> int:
        with self._cond:
            return self._version

    def bump(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def wait_past(self, version: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._version != version, timeout)


class ProofLedger:
    """The logic; :class:`ProofLedgerActor` runs it on its own thread.

    Held proofs and counters taken for an operation that has not been committed yet
    live in memory only: nothing has left the wallet for them, so a crash simply
    forgets them. The operation's next commit writes them (with every counter
    high-water mark) in the same transaction as its record, before any request that
    uses them.
    """

    def __init__(self, store: Store, signal: ChangeSignal | None = None, *,
                 idempotency_ttl: float = DEFAULT_IDEMPOTENCY_TTL,
                 events: EventLog | None = None,
                 bus: pykka.ActorRef[EventBusActor] | None = None,
                 retention: float = DEFAULT_RETENTION) -> None:
        self._store = store
        self._outbox = events or EventLog(store)  # thread-safe: read by coco.events
        self._bus = bus
        self._retention_ms = int(retention * 1000)
        self._next_seq = self._outbox.last_seq() + 1
        self._pruned_at = time.monotonic()
        self._prune_at_open(retention)
        self.signal = signal or ChangeSignal()  # thread-safe: read by waiting senders
        snap = store.snapshot(skip_unreadable=True)  # logged, counted, left on disk
        self._unreadable = dict(snap.unreadable)
        self._proofs: dict[str, ProofRecord] = {r.Y: r for r in snap.proofs}
        self._counters: dict[str, int] = dict(snap.counters)
        self._keys: dict[int, WalletKey] = {k.index: k for k in snap.keys}
        self._unsaved_counters: set[str] = set()
        self._unsaved_holds: dict[OperationId, list[str]] = {}
        # change a send holding proofs in memory (not committed yet) will give back
        self._unsaved_change: dict[OperationId, int] = {}
        self._mints: dict[str, MintRecord] = {m.url: m for m in snap.mints}
        self._keysets: dict[str, dict[str, Keyset]] = {
            url: {k.id: k for k in kss} for url, kss in snap.keysets.items()}
        self._ops: dict[OperationId, Operation] = {
            o.id: o for o in snap.operations if not o.state.terminal}
        # payment hash -> the melt that paid or is paying it (never paid twice)
        self._invoices: dict[str, OperationId] = {
            o.payment_hash: o.id for o in snap.operations
            if o.payment_hash and o.state != OpState.ROLLED_BACK}
        reqs, atts = store.payment_records()
        self._requests: dict[str, RequestRecord] = {r.id: r for r in reqs}
        self._attempts: dict[str, PaymentAttempt] = {a.key: a for a in atts}
        self._idem_ttl_ms = int(idempotency_ttl * 1000)
        self._idem: dict[str, IdempotencyRecord] = {
            r.key: r for r in store.idempotency_records()}
        # keys bound to a call whose first record is not committed yet, by its target id
        self._unsaved_idem: dict[str, list[IdempotencyRecord]] = {}
        self._keys_pruned_at = 0
        self.prune_keys()

    def _prune_at_open(self, retention: float) -> None:
        """Prune events older than the window, writing only when the oldest one is (an
        open of a wallet with nothing to prune writes nothing)."""
        cutoff = now_ms() - self._retention_ms
        oldest, newest = self._store.event_seqs()
        first = self._store.events_since(oldest - 1, 1) if oldest != newest else []
        if first and first[0].time < cutoff:
            pruned = self._store.transact(lambda b: b.prune_events(cutoff))
            log.info("pruned %d events older than %g s", pruned, retention)

    # --- mints and keysets ----------------------------------------------------------

    def add_mint(self, rec: MintRecord, keysets: Sequence[Keyset]) -> list[Keyset]:
        """Persist a mint (once) and its keysets; every keyset now known for it.

        A keyset whose keys (or unit) differ from those stored under its id is a
        :class:`CryptoError` and nothing of ``keysets`` is stored: a mint must not swap
        the keys behind an id the wallet holds proofs of (a refresh may only change
        ``active``, and a fee or expiry the id does not commit to)."""
        stored = self._keysets.get(rec.url, {})
        for ks in keysets:
            old = stored.get(ks.id)
            if old is not None and (dict(old.keys) != dict(ks.keys) or old.unit != ks.unit):
                raise CryptoError(f"mint {rec.url} changed the keys of keyset {ks.id} under "
                                  "the same id; refused, nothing stored")

        def write(b: WriteBatch) -> None:
            if rec.url not in self._mints:
                b.put_mint(rec)
            for ks in keysets:
                b.put_keyset(rec.url, ks)

        self._store.transact(write)
        self._mints.setdefault(rec.url, rec)
        known = self._keysets.setdefault(rec.url, {})
        known.update({k.id: k for k in keysets})
        return list(known.values())

    def mints(self) -> list[MintRecord]:
        return sorted(self._mints.values(), key=lambda m: m.added_at)

    def keysets(self, mint_url: str) -> list[Keyset]:
        if mint_url not in self._mints:
            raise NotFoundError(f"unknown mint {mint_url}; add it first")
        return list(self._keysets.get(mint_url, {}).values())

    def _inactive_ids(self, mint_url: str) -> frozenset[str]:
        """The mint's keysets it no longer signs for (their proofs are spent first)."""
        return frozenset(k.id for k in self._keysets.get(mint_url, {}).values()
                         if not k.active)

    def _fee_ppk(self, mint_url: str, keyset_id: str) -> int:
        ks = self._keysets.get(mint_url, {}).get(keyset_id)
        return ks.input_fee_ppk if ks else 0

    def input_fee(self, mint_url: str, proofs: Iterable[Proof]) -> int:
        return fee_for(self._fee_ppk(mint_url, p.keyset_id) for p in proofs)

    # --- counters -------------------------------------------------------------------

    def _take_counters(self, keyset_id: str, n: int) -> int:
        start = self._counters.get(keyset_id, 0)
        if n:
            self._counters[keyset_id] = start + n
            self._unsaved_counters.add(keyset_id)
        return start

    def allocate_counters(self, keyset_id: str, n: int) -> int:
        """Hand out ``n`` consecutive counter values, never handed out again.

        They are persisted by the next commit, which the caller makes (with the
        outputs derived from them) before any request that uses them.
        """
        return self._take_counters(keyset_id, n)

    def allocate_now(self, name: str) -> int:
        """Hand out the next value of counter ``name``, persisted before this returns
        (a NUT-20 quote key index: its request leaves before any commit of the caller)."""
        start = self._take_counters(name, 1)
        self._transact(lambda b: None)
        return start

    def raise_counter(self, keyset_id: str, at_least: int) -> int:
        """Move a counter forward to ``at_least`` (restore); never backward."""
        current = self._counters.get(keyset_id, 0)
        if at_least > current:
            self._counters[keyset_id] = at_least
            self._unsaved_counters.add(keyset_id)
            self._store.transact(self._write_counters)
        return max(current, at_least)

    def counter(self, keyset_id: str) -> int:
        return self._counters.get(keyset_id, 0)

    def _write_counters(self, b: WriteBatch) -> None:
        for keyset_id in self._unsaved_counters:
            b.put_counter(keyset_id, self._counters[keyset_id])

    def _transact(self, write: Callable[[WriteBatch], None],
                  events: Sequence[Emission] = ()) -> None:
        """One write transaction that also persists every counter taken since the last,
        and the records of ``events`` (the next seqs); then wakes readers and tells the
        bus. With events, and at most every :data:`PRUNE_EVERY` s, it also prunes those
        older than the retention window (never the newest)."""
        at = now_ms()
        records = [e.record(self._next_seq + i, at) for i, e in enumerate(events)]
        prune = bool(records) and time.monotonic() - self._pruned_at >= PRUNE_EVERY
        cutoff = at - self._retention_ms

        def both(b: WriteBatch) -> None:
            write(b)
            self._write_counters(b)
            for rec in records:
                b.put_event(rec)
            if prune:
                b.prune_events(cutoff)

        self._store.transact(both)
        self._unsaved_counters.clear()
        if prune:
            self._pruned_at = time.monotonic()
        if not records:
            return
        self._next_seq = records[-1].seq + 1
        self._outbox.appended(records[-1].seq)
        if self._bus is not None:
            for event, rec in zip(events, records, strict=True):
                tell(self._bus, EventBus.emit, event.name, {**event.payload, "seq": rec.seq})

    # --- wallet keys ------------------------------------------------------------------

    def allocate_key(self, public_at: Callable[[int], str]) -> WalletKey:
        """Hand out the next key index, persisted (with its public key, from the pure
        ``public_at``) before this returns: an index is never handed out twice."""
        index = self.next_key_index()
        key = WalletKey(index, public_at(index), now_ms())
        self._store.transact(lambda b: b.put_key(key))
        self._keys[key.index] = key
        return key

    def note_key(self, index: int, public: str) -> WalletKey:
        """Record a key found in use (after a restore): indices up to it are never
        handed out again. Idempotent."""
        known = self._keys.get(index)
        if known is not None:
            return known
        key = WalletKey(index, public, now_ms())
        self._store.transact(lambda b: b.put_key(key))
        self._keys[index] = key
        return key

    def next_key_index(self) -> int:
        """One past the highest key index handed out or found (0 for none)."""
        return max(self._keys, default=-1) + 1

    def wallet_keys(self) -> list[WalletKey]:
        return [self._keys[i] for i in sorted(self._keys)]

    # --- operations -----------------------------------------------------------------

    def commit(self, op: Operation, event: Emission | None = None) -> Operation:
        """Persist one operation transition (and what it holds, if not written yet), with
        the event it causes, if any."""
        return self.settle(op, event=event)

    def delete_operation(self, op_id: OperationId) -> None:
        """Forget an operation that never got anywhere, releasing what it held."""
        self._unsaved_holds.pop(op_id, None)
        self._unsaved_change.pop(op_id, None)
        self._unsaved_idem.pop(op_id, None)
        keys = [k for k, r in self._idem.items() if r.target == op_id]  # a retry is fresh
        self._forget_invoice(op_id)
        held = [r for r in self._proofs.values() if r.operation_id == op_id]
        op = self._ops.get(op_id) or self._store.get_operation(op_id)
        # a token's proofs held by a receive-into's melt were never the wallet's: forgotten
        foreign = op is not None and op.foreign_inputs
        released = [] if foreign else [replace(r, status=ProofStatus.READY, operation_id=None)
                                       for r in held]

        def write(b: WriteBatch) -> None:
            for r in released:
                b.put_proof(r)
            if foreign:
                for r in held:
                    b.delete_proof(r.Y)
            if op is not None:
                b.delete_operation(op)
            for k in keys:
                b.delete_idempotency(k)

        self._transact(write)
        for k in keys:
            del self._idem[k]
        for r in released:
            self._proofs[r.Y] = r
        if foreign:
            for r in held:
                self._proofs.pop(r.Y, None)
        self._ops.pop(op_id, None)
        if released:
            self.signal.bump()

    def operations(self, op_type: OpType | None = None) -> list[Operation]:
        """Every operation not in a terminal state."""
        return [o for o in self._ops.values() if op_type is None or o.type == op_type]

    def get_operation(self, op_id: str) -> Operation | None:
        return self._ops.get(OperationId(op_id)) or self._store.get_operation(op_id)

    # --- proofs ---------------------------------------------------------------------

    def hold(self, op_id: OperationId, mint_url: str, amount: int, *, keyset_id: str,
             outputs_for: Callable[[int, int], int], select: Select = select_proofs,
             invoice: str | None = None, gives_change: bool = False) -> tuple[Selection, int]:
        """Select proofs worth ``amount`` plus their input fee, and hold them for ``op_id``.

        Also takes the counters for the outputs the swap will need
        (``outputs_for(amount, change)``, a pure count; none for an exact match) and
        returns the first. The hold is in memory: the operation derives its outputs
        on its own thread and its next :meth:`commit` persists the hold, the counters
        and its record in one transaction (:meth:`delete_operation` undoes it).
        Raises :class:`InsufficientFundsError` when the spendable proofs do not cover
        it; ``may_wait`` then says whether change held by other sends could.

        ``select`` is the rule (a pure function; a melt's inputs pay their own fee).
        ``invoice`` (a melt's payment hash) is claimed in the same check-and-set: an
        invoice this wallet paid or is paying is refused (:class:`InvalidStateError`).
        ``gives_change`` (a send): the change of this hold counts as coming back for
        ``may_wait`` from the moment it is taken, not only once it is committed.
        """
        if invoice is not None and invoice in self._invoices:
            other = self._invoices[invoice]
            raise InvalidStateError(
                f"this invoice is already paid or being paid by melt {other}")
        unit = self.unit_of(mint_url, keyset_id)  # only proofs of the operation's unit
        ready = [r for r in self._proofs.values()
                 if r.mint_url == mint_url and r.status == ProofStatus.READY
                 and self.unit_of(mint_url, r.proof.keyset_id) == unit]
        selection = inactive_first(select, self._inactive_ids(mint_url))(
            [r.proof for r in ready], amount, lambda ps: self.input_fee(mint_url, ps))
        if selection is None:
            spendable = sum(r.amount for r in ready)
            incoming = self._expected_change(mint_url, unit)
            what = "" if unit == DEFAULT_UNIT else f" {unit}"
            raise InsufficientFundsError(
                f"balance at {mint_url} ({spendable}{what} spendable) cannot cover {amount}"
                " plus input fees", needed=amount, available=spendable,
                may_wait=incoming > 0 and spendable + incoming > amount)
        change = selection.total - amount - selection.fee
        n_outputs = 0 if selection.exact else outputs_for(amount, change)
        ys = [secret_to_y(p.secret) for p in selection.proofs]
        for y in ys:
            self._proofs[y] = replace(self._proofs[y], status=ProofStatus.RESERVED,
                                      operation_id=op_id)
        self._unsaved_holds.setdefault(op_id, []).extend(ys)
        if gives_change:
            self._unsaved_change[op_id] = self._unsaved_change.get(op_id, 0) + change
        if invoice is not None:
            self._invoices[invoice] = op_id
        return selection, self._take_counters(keyset_id, n_outputs)

    def hold_foreign(self, op: Operation, proofs: Sequence[Proof],
                     event: Emission | None = None) -> Operation:
        """Commit ``op`` (a receive-into's melt leg, ``prepared``) with a token's proofs
        as held by it, in one transaction: they never become spendable in between.

        Refused (:class:`InvalidStateError`, nothing written) when the wallet holds any of
        them already (a token being received into another mint, or its own proofs), or
        when the melt's invoice is paid or being paid by another melt.
        """
        ys = [secret_to_y(p.secret) for p in proofs]
        if any(y in self._proofs for y in ys) or len(set(ys)) != len(ys):
            raise InvalidStateError("the wallet holds proofs of this token already")
        owner = self._invoices.get(op.payment_hash or "")
        if op.payment_hash and owner not in (None, op.id):
            raise InvalidStateError(
                f"this invoice is already paid or being paid by melt {owner}")
        settled = self.settle(op, hold=proofs, event=event)
        if op.payment_hash:
            self._invoices[op.payment_hash] = op.id
        return settled

    def _expected_change(self, mint_url: str, unit: str = DEFAULT_UNIT) -> int:
        """What sends now holding proofs at ``mint_url`` will give back as change in
        ``unit`` (also those whose hold is not committed yet)."""
        held: dict[OperationId, int] = {}
        for r in self._proofs.values():
            if (r.mint_url == mint_url and r.operation_id is not None
                    and self.unit_of(mint_url, r.proof.keyset_id) == unit):
                held[r.operation_id] = held.get(r.operation_id, 0) + r.amount
        change = 0
        for op_id, total in held.items():
            op = self._ops.get(op_id)
            if op is not None and op.type == OpType.SEND:
                change += max(0, total - op.amount - op.fee)
            elif op is None:
                change += self._unsaved_change.get(op_id, 0)
        return change

    def settle(self, op: Operation, *, spend: Iterable[str] = (), add: Iterable[Proof] = (),
               release: Iterable[str] = (), hold: Iterable[Proof] = (),
               event: Emission | None = None) -> Operation:
        """Commit ``op`` together with the proof moves its transition implies (and the
        ``event`` it causes, in the outbox).

        ``spend``: Ys that left the wallet (removed). ``add``: new spendable proofs.
        ``release``: Ys reserved by ``op`` that become spendable again. ``hold``:
        proofs added as reserved by ``op`` (e.g. restored change that is not ours yet).
        Proofs held for ``op`` in memory (:meth:`hold`) are written now too.
        """
        spend, release = list(spend), list(release)
        new = [ProofRecord(p, op.mint_url, secret_to_y(p.secret)) for p in add]
        held = [ProofRecord(p, op.mint_url, secret_to_y(p.secret), ProofStatus.RESERVED, op.id)
                for p in hold]
        self._unsaved_change.pop(op.id, None)
        unsaved = [self._proofs[y] for y in self._unsaved_holds.pop(op.id, ())
                   if y in self._proofs and y not in release and y not in spend]
        released = []
        for y in release:
            rec = self._proofs.get(y)
            if rec is not None and rec.operation_id == op.id:
                released.append(replace(rec, status=ProofStatus.READY, operation_id=None))

        bindings = self._unsaved_idem.pop(op.id, [])

        def write(b: WriteBatch) -> None:
            for y in spend:
                b.delete_proof(y)
            for r in (*unsaved, *new, *held, *released):
                b.put_proof(r)
            b.put_operation(op)
            for k in bindings:
                b.put_idempotency(k)

        self._transact(write, () if event is None else (event,))
        self._idem.update((k.key, k) for k in bindings)
        for y in spend:
            self._proofs.pop(y, None)
        for r in (*new, *held, *released):
            self._proofs[r.Y] = r
        if op.payment_hash and op.state == OpState.ROLLED_BACK:
            self._invoices.pop(op.payment_hash, None)
        if op.state.terminal:
            self._ops.pop(op.id, None)
        else:
            self._ops[op.id] = op
        if new or released:
            self.signal.bump()
        return op

    def invoice_owner(self, payment_hash: str) -> OperationId | None:
        """The melt that paid or is paying this invoice, if any (checked again, as a
        check-and-set, by :meth:`hold`)."""
        return self._invoices.get(payment_hash)

    def _forget_invoice(self, op_id: OperationId) -> None:
        op = self._ops.get(op_id)
        key = op.payment_hash if op is not None else None
        if key is None:
            key = next((k for k, owner in self._invoices.items() if owner == op_id), None)
        if key is not None and self._invoices.get(key) == op_id:
            del self._invoices[key]

    def known_ys(self, mint_url: str) -> set[str]:
        """Ys the wallet holds, has handed out in a token, or expects from an open
        operation's outputs: a restore must not add these as spendable."""
        ys = {r.Y for r in self._proofs.values() if r.mint_url == mint_url}
        for op in self._ops.values():
            if op.mint_url != mint_url:
                continue
            ys.update(op.send_ys)
            # outputs an open operation will (or may already) receive signatures for:
            # they become its proofs when it settles, so a restore must not add them
            ys.update(secret_to_y(o.secret)
                      for o in (*op.outputs, *op.reclaim_outputs, *op.change_outputs))
        return ys

    def proofs_of(self, op_id: OperationId) -> list[Proof]:
        return [r.proof for r in self._proofs.values() if r.operation_id == op_id]

    def unit_of(self, mint_url: str, keyset_id: str) -> str:
        """The unit of a keyset (a keyset the wallet does not know: sat)."""
        ks = self._keysets.get(mint_url, {}).get(keyset_id)
        return ks.unit if ks else DEFAULT_UNIT

    def balances(self) -> Balances:
        """Per mint and unit; a proof's unit is its keyset's, a pending send's its own."""
        out: dict[str, dict[str, dict[str, int]]] = {url: {} for url in self._mints}

        def slot(url: str, unit: str) -> dict[str, int]:
            return out.setdefault(url, {}).setdefault(
                unit, {"spendable": 0, "reserved": 0, "pending": 0})

        for url in self._mints:
            slot(url, DEFAULT_UNIT)
        for r in self._proofs.values():
            s = slot(r.mint_url, self.unit_of(r.mint_url, r.proof.keyset_id))
            s["spendable" if r.status == ProofStatus.READY else "reserved"] += r.amount
        for op in self._ops.values():
            if op.type == OpType.SEND and op.state in (OpState.PENDING, OpState.ROLLING_BACK):
                slot(op.mint_url, op.unit)["pending"] += sum(p.amount for p in op.send_proofs)
        units = {url: {u: MintBalance(**v) for u, v in per.items()} for url, per in out.items()}
        return Balances({url: per[DEFAULT_UNIT] for url, per in units.items()}, units)

    def all_proof_records(self) -> list[ProofRecord]:
        return list(self._proofs.values())

    def unreadable(self) -> dict[str, int]:
        """Per record kind, how many stored records the startup load skipped."""
        return dict(self._unreadable)

    # --- the solvency audit (issue 14): a view, then a guarded removal ------------------

    def audit_view(self, mint_url: str | None = None) -> LedgerView:
        """What the wallet holds at ``mint_url`` (every mint: None), as of now.

        The values are frozen records, so the view can be read on the auditor's
        thread while this mailbox goes on serving the operations.
        """
        mints = tuple(m.url for m in self.mints() if mint_url in (None, m.url))
        wanted = set(mints)
        return LedgerView(
            at=now_ms(), mints=mints,
            proofs=tuple(r for r in self._proofs.values() if r.mint_url in wanted),
            operations=tuple(o for o in self._ops.values() if o.mint_url in wanted),
            units={url: {k.id: k.unit for k in self._keysets.get(url, {}).values()}
                   for url in mints})

    def remove_spent(self, ys_of: Mapping[str, Sequence[str]]) -> list[ProofRecord]:
        """Remove, in one transaction, the proofs a mint said are spent (``ys_of``: per
        mint URL, their Ys) that are *still* ready and held by no operation now.

        The mint's answer came while this mailbox served other asks: a proof reserved
        (or spent, or released) since is an operation's business and left alone.
        Returns what was removed; logged by count and Y prefix only.
        """
        gone = [r for url, ys in ys_of.items() for y in dict.fromkeys(ys)
                if (r := self._proofs.get(y)) is not None and r.mint_url == url
                and r.status == ProofStatus.READY and r.operation_id is None]
        if not gone:
            return []

        def write(b: WriteBatch) -> None:
            for r in gone:
                b.delete_proof(r.Y)

        self._transact(write)
        for r in gone:
            del self._proofs[r.Y]
        for url in sorted({r.mint_url for r in gone}):
            mine = [r for r in gone if r.mint_url == url]
            log.warning("audit fix: removed %d proof(s) (%d) spent at %s: Y %s", len(mine),
                        sum(r.amount for r in mine), url,
                        ", ".join(r.Y[:12] for r in mine))
        return gone


    # --- idempotency keys: bound in memory, written with the call's first record ------

    def find_key(self, key: str) -> IdempotencyRecord | None:
        """The call ``key`` names, if it was committed and has not expired."""
        rec = self._idem.get(key)
        if rec is None or now_ms() - rec.created_at >= self._idem_ttl_ms:
            return None
        return rec

    def has_key(self, target: str, kind: str) -> bool:
        """Whether an unexpired key of ``kind`` names ``target`` (recovery asks)."""
        return any(r.target == target and r.kind == kind and self.find_key(r.key) is not None
                   for r in self._idem.values())

    def bind_key(self, rec: IdempotencyRecord) -> None:
        """Bind ``rec.key`` to its target: the target's next commit (:meth:`settle`,
        :meth:`put_request`) writes it in the same transaction. An unexpired key bound
        to another call is refused (:class:`InvalidStateError`: the caller's gate
        should have seen it)."""
        known = self.find_key(rec.key)
        if known is not None and known.target != rec.target:
            raise InvalidStateError(f"idempotency key is bound to {known.target} already")
        pending = self._unsaved_idem.setdefault(rec.target, [])
        pending[:] = [r for r in pending if r.key != rec.key] + [rec]
        if now_ms() - self._keys_pruned_at >= PRUNE_INTERVAL * 1000:
            self.prune_keys()

    def unbind_key(self, key: str, target: str) -> None:
        """The call failed before its first commit: the key is free again."""
        pending = self._unsaved_idem.get(target)
        if pending is not None:
            pending[:] = [r for r in pending if r.key != key]
            if not pending:
                del self._unsaved_idem[target]

    def prune_keys(self) -> int:
        """Forget the keys older than the retention time (at start, then periodically)."""
        self._keys_pruned_at = now = now_ms()
        expired = [k for k, r in self._idem.items()
                   if now - r.created_at >= self._idem_ttl_ms]
        if expired:
            def write(b: WriteBatch) -> None:
                for k in expired:
                    b.delete_idempotency(k)

            self._store.transact(write)
            for k in expired:
                del self._idem[k]
            log.info("pruned %d expired idempotency keys", len(expired))
        return len(expired)

    # --- payment requests (issue 16): this mailbox serializes every claim ----------------

    def put_request(self, rec: RequestRecord, event: Emission | None = None) -> RequestRecord:
        bindings = self._unsaved_idem.pop(rec.id, [])

        def write(b: WriteBatch) -> None:
            b.put_request(rec)
            for k in bindings:
                b.put_idempotency(k)

        self._transact(write, () if event is None else (event,))
        self._idem.update((k.key, k) for k in bindings)
        self._requests[rec.id] = rec
        return rec

    def create_request(self, rec: RequestRecord) -> RequestRecord:
        """A new request, with its ``request:created`` event."""
        return self.put_request(rec, request_event(
            "request:created", {"request_id": rec.id, "amount": rec.amount}))

    def requests(self) -> list[RequestRecord]:
        return sorted(self._requests.values(), key=lambda r: (r.created_at, r.id))

    def get_request(self, request_id: str) -> RequestRecord | None:
        return self._requests.get(request_id)

    def cancel_request(self, request_id: str) -> RequestRecord:
        rec = self._requests.get(request_id)
        if rec is None:
            raise NotFoundError(f"unknown payment request {request_id!r}")
        if rec.state != RequestState.OPEN:
            raise InvalidStateError(f"payment request {rec.id} is {rec.state.value}, not open")
        return self.put_request(replace(rec, state=RequestState.CANCELLED),
                                request_event("request:cancelled", {"request_id": rec.id}))

    def attempts(self) -> list[PaymentAttempt]:
        return list(self._attempts.values())

    def begin_attempt(self, attempt: PaymentAttempt) -> tuple[PaymentAttempt, bool]:
        """Check-and-set: the stored attempt of the same proofs (``False``: not new), or
        this one persisted (``True``) if its request can take it. A single-use request
        takes one attempt: a second payload is refused while the first runs or after.
        The attempt carries the id its receive will have, committed before it exists."""
        known = self._attempts.get(attempt.key)
        if known is not None:
            return known, False
        rec = self._requests.get(attempt.request_id)
        if rec is None:
            raise PaymentRequestError(f"unknown payment request {attempt.request_id!r}")
        if rec.state != RequestState.OPEN:
            raise PaymentRequestError(f"payment request {rec.id} is {rec.state.value}")
        if rec.single_use and any(a.request_id == rec.id for a in self._attempts.values()):
            raise PaymentRequestError(f"payment request {rec.id} is single use and already "
                                      "being paid")
        self._transact(lambda b: b.put_attempt(attempt))
        self._attempts[attempt.key] = attempt
        return attempt, True

    def get_attempt(self, key: str) -> PaymentAttempt | None:
        return self._attempts.get(key)

    def drop_attempt(self, key: str) -> None:
        """The receive did not happen (refused, rolled back): nothing was credited."""
        if self._attempts.pop(key, None) is not None:
            self._transact(lambda b: b.delete_attempt(key))

    def finish_attempt(self, key: str, operation_id: OperationId, received: int
                       ) -> tuple[PaymentAttempt, RequestRecord]:
        """The attempt completed and its request credited, in one transaction (once)."""
        att = self._attempts[key]
        rec = self._requests[att.request_id]
        if att.state == AttemptState.COMPLETED:
            return att, rec
        att = replace(att, state=AttemptState.COMPLETED, operation_id=operation_id,
                      received=received)
        rec = replace(rec, received=rec.received + received, payments=rec.payments + 1,
                      operation_ids=(*rec.operation_ids, operation_id),
                      state=RequestState.PAID if rec.single_use else rec.state)
        done_att, done_rec = att, rec

        def write(b: WriteBatch) -> None:
            b.put_attempt(done_att)
            b.put_request(done_rec)

        self._transact(write, (request_event(
            "request:paid", {"request_id": rec.id, "amount": att.received,
                             "operation_id": operation_id}, mint_url=att.mint_url),))
        self._attempts[key] = att
        self._requests[rec.id] = rec
        return att, rec

    # --- webhooks: their records and delivery cursors (read from the store directly) ---

    def put_webhook(self, rec: WebhookRecord, cursor: int) -> None:
        """A new webhook and where its delivery starts, in one transaction."""
        def write(b: WriteBatch) -> None:
            b.put_webhook(rec)
            b.put_webhook_cursor(rec.id, cursor)

        self._transact(write)

    def delete_webhook(self, webhook_id: str) -> None:
        self._transact(lambda b: b.delete_webhook(webhook_id))

    def set_webhook_cursor(self, webhook_id: str, seq: int) -> None:
        """After a 2xx: the delivered seq, durable before the next event is sent."""
        self._transact(lambda b: b.put_webhook_cursor(webhook_id, seq))


class ProofLedgerActor(pykka.ThreadingActor, ProofLedger):
    """Runs :class:`ProofLedger` on one thread: its mailbox is the serialization point."""

    def __init__(self, store: Store, signal: ChangeSignal, events: EventLog,
                 bus: pykka.ActorRef[EventBusActor] | None, retention: float, *,
                 idempotency_ttl: float = DEFAULT_IDEMPOTENCY_TTL) -> None:
        pykka.ThreadingActor.__init__(self)
        ProofLedger.__init__(self, store, signal, events=events, bus=bus, retention=retention,
                             idempotency_ttl=idempotency_ttl)


class ProofLedgerProxy(ActorMemberMixin, pykka.ActorProxy[ProofLedgerActor]):
    """The typed proxy: every ask and its result, as mypy sees them."""

    add_mint = proxy_method(ProofLedger.add_mint)
    mints = proxy_method(ProofLedger.mints)
    keysets = proxy_method(ProofLedger.keysets)
    input_fee = proxy_method(ProofLedger.input_fee)
    allocate_counters = proxy_method(ProofLedger.allocate_counters)
    raise_counter = proxy_method(ProofLedger.raise_counter)
    counter = proxy_method(ProofLedger.counter)
    allocate_key = proxy_method(ProofLedger.allocate_key)
    allocate_now = proxy_method(ProofLedger.allocate_now)
    note_key = proxy_method(ProofLedger.note_key)
    next_key_index = proxy_method(ProofLedger.next_key_index)
    wallet_keys = proxy_method(ProofLedger.wallet_keys)
    commit = proxy_method(ProofLedger.commit)
    delete_operation = proxy_method(ProofLedger.delete_operation)
    operations = proxy_method(ProofLedger.operations)
    get_operation = proxy_method(ProofLedger.get_operation)
    hold = proxy_method(ProofLedger.hold)
    hold_foreign = proxy_method(ProofLedger.hold_foreign)
    invoice_owner = proxy_method(ProofLedger.invoice_owner)
    settle = proxy_method(ProofLedger.settle)
    find_key = proxy_method(ProofLedger.find_key)
    has_key = proxy_method(ProofLedger.has_key)
    bind_key = proxy_method(ProofLedger.bind_key)
    unbind_key = proxy_method(ProofLedger.unbind_key)
    prune_keys = proxy_method(ProofLedger.prune_keys)
    known_ys = proxy_method(ProofLedger.known_ys)
    proofs_of = proxy_method(ProofLedger.proofs_of)
    balances = proxy_method(ProofLedger.balances)
    unit_of = proxy_method(ProofLedger.unit_of)
    all_proof_records = proxy_method(ProofLedger.all_proof_records)
    unreadable = proxy_method(ProofLedger.unreadable)
    audit_view = proxy_method(ProofLedger.audit_view)
    remove_spent = proxy_method(ProofLedger.remove_spent)
    put_request = proxy_method(ProofLedger.put_request)
    create_request = proxy_method(ProofLedger.create_request)
    requests = proxy_method(ProofLedger.requests)
    get_request = proxy_method(ProofLedger.get_request)
    cancel_request = proxy_method(ProofLedger.cancel_request)
    attempts = proxy_method(ProofLedger.attempts)
    begin_attempt = proxy_method(ProofLedger.begin_attempt)
    get_attempt = proxy_method(ProofLedger.get_attempt)
    drop_attempt = proxy_method(ProofLedger.drop_attempt)
    finish_attempt = proxy_method(ProofLedger.finish_attempt)
    put_webhook = proxy_method(ProofLedger.put_webhook)
    delete_webhook = proxy_method(ProofLedger.delete_webhook)
    set_webhook_cursor = proxy_method(ProofLedger.set_webhook_cursor)


def start_ledger(store: Store, signal: ChangeSignal, events: EventLog | None = None,
                 bus: pykka.ActorRef[EventBusActor] | None = None,
                 retention: float = DEFAULT_RETENTION, *,
                 idempotency_ttl: float = DEFAULT_IDEMPOTENCY_TTL) -> ProofLedgerProxy:
    """Start the ledger actor; its typed proxy. ``events``: the outbox's readers' view
    (woken after each commit), ``bus``: where events are told."""
    return cast(ProofLedgerProxy, ProofLedgerActor.start(
        store, signal, events or EventLog(store), bus, retention,
        idempotency_ttl=idempotency_ttl).proxy())
