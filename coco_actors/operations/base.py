"""What every operation actor shares: its dependencies, commits, events, restore."""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import pykka
from pykka.typing import ActorMemberMixin, proxy_method

from coco_actors.actors import NoticeActor, tell, wait
from coco_actors.crypto.nut13 import Nut13Deriver
from coco_actors.crypto.outputs import make_outputs, unblind_signatures
from coco_actors.errors import (
    CODE_KEYSET_INACTIVE,
    InvalidStateError,
    MintRejectedError,
    NotFoundError,
)
from coco_actors.events import Emission, EventBusActor, op_event
from coco_actors.keys import KeyRing
from coco_actors.mint_client import MintClient
from coco_actors.proof_ledger import ChangeSignal, ProofLedgerProxy
from coco_actors.records import Operation, OperationId, OpState, SwapBatch
from coco_actors.watcher import WatcherActor
from coco_actors.wire import BlindingData, BlindSignature, Keyset, Proof, split_amount

log = logging.getLogger(__name__)

#: How long an operation actor waits for the ledger (a local, durable write).
LEDGER_TIMEOUT = 30.0
#: How long an operation waits for a refresh of its mint's keysets (network IO).
REFRESH_TIMEOUT = 60.0

T = TypeVar("T")
#: The outputs an operation keeps in one field of its record, read and replaced.
Outputs = tuple[BlindingData, ...]

__all__ = ["LEDGER_TIMEOUT", "KeysetRefresh", "LiveKeysets", "MintContext", "OperationActor",
           "OperationBase", "OperationDeps", "OperationProxy", "RestListener", "Watched", "wait"]


class LiveKeysets:
    """The keysets of one mint as they are now, shared by every actor of that mint.

    The Supervisor replaces the whole tuple after a refresh (its thread); any thread
    reads it (one attribute read of an immutable tuple). So a prepared operation sees
    a rotation that happened after it was started.
    """

    __slots__ = ("_keysets",)

    def __init__(self, keysets: Iterable[Keyset] = ()) -> None:
        self._keysets = tuple(keysets)

    def get(self) -> tuple[Keyset, ...]:
        return self._keysets

    def set(self, keysets: Iterable[Keyset]) -> None:
        self._keysets = tuple(keysets)


@dataclass(frozen=True, slots=True)
class MintContext:
    """One mint as operation actors see it: its client and its (live) keysets."""

    url: str
    client: MintClient
    live: LiveKeysets = field(default_factory=LiveKeysets)

    @property
    def keysets(self) -> tuple[Keyset, ...]:
        return self.live.get()

    def keyset(self, keyset_id: str) -> Keyset:
        for ks in self.keysets:
            if ks.id == keyset_id:
                return ks
        raise NotFoundError(f"keyset {keyset_id} is not known for {self.url}")

    def active_keyset(self, unit: str = "sat") -> Keyset:
        for ks in self.keysets:
            if ks.active and ks.unit == unit:
                return ks
        raise NotFoundError(f"mint {self.url} has no active {unit} keyset")

    def is_active(self, keyset_id: str) -> bool:
        """Whether outputs may still be made for ``keyset_id`` (False when unknown)."""
        return any(ks.id == keyset_id and ks.active for ks in self.keysets)


class KeysetRefresh(Protocol):
    """Who refreshes a mint's keysets off the caller's mailbox and waits for it
    (:class:`~coco_actors.refresher.KeysetRefresher`); raises what the refresh raised."""

    def refresh(self, mint_url: str, timeout: float) -> None: ...


class RestListener(Protocol):
    """Who stops an operation actor at rest (the Supervisor, in its own mailbox), and
    who tells a transfer that one of its legs moved.

    Must not block: the Supervisor's implementation is a tell.
    """

    def at_rest(self, op_id: OperationId, ref: pykka.ActorRef[OperationActor]) -> None: ...

    def leg_settled(self, parent_id: OperationId, leg_id: OperationId) -> None: ...


class Watched(enum.Enum):
    """What the Watcher saw that concerns one operation (told to it through the Supervisor)."""

    CLAIMED = "claimed"        # every proof of a pending send's token is spent
    QUOTE_PAID = "quote_paid"  # a mint quote is paid
    MELT_DECIDED = "melt_decided"  # a pending melt's quote is PAID or UNPAID


@dataclass(frozen=True, slots=True)
class OperationDeps:
    ledger: ProofLedgerProxy
    events: pykka.ActorRef[EventBusActor]
    deriver: Nut13Deriver
    signal: ChangeSignal                        # wakes sends waiting for change
    keys: KeyRing                               # wallet keys (P2PK, NUT-20); any thread
    watcher: pykka.ActorRef[WatcherActor] | None = None  # None when the watcher is off
    supervisor: RestListener | None = None
    refresher: KeysetRefresh | None = None  # None: keysets are never refreshed by sagas


class OperationBase:
    """The logic every saga shares: the current record, commits, events, restore.

    Methods run on the thread of the actor the class is mixed into
    (:class:`OperationActor`), one at a time. They only ask *down* (ledger, mint
    client) and tell *up* (events, "at rest").
    """

    def __init__(self, op: Operation, mint: MintContext, deps: OperationDeps) -> None:
        self.op = op
        self.mint = mint
        self.deps = deps

    def operation(self) -> Operation:
        return self.op

    # --- lifecycle: provided by the actor class ---------------------------------------

    def retire(self) -> None:
        """Stop once the current message is done: the operation is over."""
        raise NotImplementedError

    def rest(self) -> None:
        """The operation waits on the outside world: the actor may be stopped."""
        raise NotImplementedError

    def recover(self) -> Operation:
        """Bring a rehydrated operation to a resting state (its recovery table row)."""
        raise NotImplementedError

    def on_watched(self, what: Watched) -> None:
        """A notice from the Watcher (a tell); sagas that wait on one override this."""
        log.debug("%s %s ignores %s", self.op.type.value, self.op.id, what.value)

    @contextlib.contextmanager
    def _abandon_on_error(self) -> Iterator[None]:
        """For first steps: if they fail while still ``init``, undo and stop.

        The record (and any reservation made with it) is deleted, so a refused
        call leaves neither state nor a running actor behind.
        """
        try:
            yield
        except BaseException:
            if self.op.state == OpState.INIT:
                self._delete()
            raise

    def _delete(self) -> None:
        wait(self.deps.ledger.delete_operation(self.op.id), LEDGER_TIMEOUT, "ProofLedger")
        self.retire()

    def discard(self) -> None:
        """A leg of a transfer that is refused or undone before anything was paid: its
        record (and any hold) is forgotten, as if it never was. Only ``init`` or
        ``prepared``: nothing it holds can have left the wallet."""
        self._require(OpState.INIT, OpState.PREPARED)
        self._unwatch()
        self._delete()

    def _tell_parent(self) -> None:
        """A leg moved (ended, or went pending): its transfer decides what follows. A
        tell through the Supervisor; a crash before it is covered by recovery."""
        if self.op.parent_id is not None and self.deps.supervisor is not None:
            self.deps.supervisor.leg_settled(self.op.parent_id, self.op.id)

    # --- helpers for subclasses --------------------------------------------------------

    def _commit(self, op: Operation, *, event: str | None = None, **extra: Any) -> Operation:
        """Persist ``op``; ``event`` (a suffix: "prepared", "finalized", ...) is the event
        this transition causes, written in the same transaction and then told to the
        bus by the ledger (``extra``: more payload keys)."""
        self.op = wait(self.deps.ledger.commit(op, self._event(op, event, **extra)),
                       LEDGER_TIMEOUT, "ProofLedger")
        self._log_transition()
        return self.op

    def _settle(self, op: Operation, *, spend: Sequence[str] = (), add: Sequence[Proof] = (),
                release: Sequence[str] = (), event: str | None = None,
                **extra: Any) -> Operation:
        self.op = wait(self.deps.ledger.settle(op, spend=spend, add=add, release=release,
                                               event=self._event(op, event, **extra)),
                       LEDGER_TIMEOUT, "ProofLedger")
        self._log_transition()
        return self.op

    def _log_transition(self) -> None:
        log.info("%s %s -> %s (amount %d, mint %s)", self.op.type.value, self.op.id,
                 self.op.state.value, self.op.amount, self.op.mint_url)

    def _event(self, op: Operation, suffix: str | None, **extra: Any) -> Emission | None:
        """The event ``op``'s transition causes (``None``: none); a saga with more
        payload keys overrides this."""
        if suffix is None:
            return None
        return op_event(f"{op.type.value}:{suffix}", op, **extra)

    def _watch_send(self) -> None:
        if self.deps.watcher is not None:
            tell(self.deps.watcher, WatcherActor.watch_send, self.op.id, self.op.mint_url,
                 list(self.op.send_ys))

    def _watch_quote(self) -> None:
        if self.deps.watcher is not None and self.op.quote_id:
            tell(self.deps.watcher, WatcherActor.watch_quote, self.op.id, self.op.mint_url,
                 self.op.quote_id)

    def _watch_melt_quote(self) -> None:
        if self.deps.watcher is not None and self.op.quote_id:
            tell(self.deps.watcher, WatcherActor.watch_melt_quote, self.op.id,
                 self.op.mint_url, self.op.quote_id)

    def _unwatch(self) -> None:
        if self.deps.watcher is not None:
            tell(self.deps.watcher, WatcherActor.unwatch, self.op.id)

    def _derive_outputs(self, amounts: Sequence[int], keyset: Keyset) -> list[BlindingData]:
        """Outputs from freshly allocated NUT-13 counters; the caller commits them
        (which persists the counters) before any request uses them."""
        if not amounts:
            return []
        start = wait(self.deps.ledger.allocate_counters(keyset.id, len(amounts)),
                     LEDGER_TIMEOUT, "ProofLedger")
        return self._outputs_at(amounts, keyset, start)

    def _chunk_swaps(self, chunks: Sequence[Sequence[Proof]], values: Sequence[int],
                     now: int) -> tuple[list[Proof], Outputs, tuple[SwapBatch, ...]]:
        """The swaps of ``chunks`` of inputs (one request each, under the mint's array
        cap), chunk ``i`` into outputs worth ``values[i]`` for the active keyset of this
        operation's unit: the inputs signed for their own chunk's outputs (NUT-11, so a
        re-run after a crash sends the same witnesses), every output, one batch each."""
        amounts = [split_amount(v) for v in values]
        outputs = tuple(self._derive_outputs([a for part in amounts for a in part],
                                             self.mint.active_keyset(self.op.unit)))
        signed: list[Proof] = []
        batches: list[SwapBatch] = []
        at = 0
        for chunk, part in zip(chunks, amounts, strict=True):
            outs = outputs[at:at + len(part)]
            at += len(part)
            signed += self.deps.keys.sign_inputs(chunk, [o.blinded for o in outs], now)
            batches.append(SwapBatch(len(chunk), len(part)))
        return signed, outputs, tuple(batches)

    def _outputs_at(self, amounts: Sequence[int], keyset: Keyset,
                    start: int) -> list[BlindingData]:
        pairs = [self.deps.deriver.derive(keyset.id, start + i) for i in range(len(amounts))]
        return make_outputs(list(amounts), keyset.id, pairs)

    # --- keysets over time ---------------------------------------------------------------

    def _refresh_keysets(self) -> None:
        """Fetch the mint's keysets again (on the refresher's thread; this one waits)."""
        if self.deps.refresher is None:
            raise InvalidStateError(f"the keysets of {self.op.mint_url} cannot be refreshed")
        self.deps.refresher.refresh(self.op.mint_url, REFRESH_TIMEOUT)

    def _for_active(self, outputs: Outputs) -> Outputs | None:
        """``outputs`` again, for the mint's active keyset, if any is for a keyset it no
        longer signs (None: all are fine). Same amounts, same order; NUT-13 ones get new
        counters of the active keyset, the others (P2PK secrets, random ``r``) keep
        their secret and ``r``, whose blinded message does not depend on the keyset. The
        caller commits them before any request uses them."""
        stale = [i for i, o in enumerate(outputs) if not self.mint.is_active(o.keyset_id)]
        if not stale:
            return None
        keyset = self.mint.active_keyset(self.op.unit)
        derived = [i for i in stale if not outputs[i].secret.startswith("[")]
        fresh = dict(zip(derived, self._derive_outputs([outputs[i].amount for i in derived],
                                                       keyset), strict=True))
        for i in stale:
            if i not in fresh:
                o = outputs[i]
                fresh[i] = BlindingData(o.amount, keyset.id, o.secret, o.r, o.B_)
        log.info("%s %s: %d outputs of a rotated keyset made again for keyset %s",
                 self.op.type.value, self.op.id, len(stale), keyset.id)
        return tuple(fresh.get(i, o) for i, o in enumerate(outputs))

    def _with_active_outputs(self, get: Callable[[Operation], Outputs],
                             put: Callable[[Operation, Outputs], Operation],
                             call: Callable[[Outputs], T]) -> T:
        """``call`` with the outputs ``get`` reads from the record, each for an active
        keyset: those of a keyset the mint rotated are made again and committed (``put``
        builds the record) first; a 12002 answer (the mint rotated it meanwhile)
        refreshes the keysets and does it again, once. So no 12002 reaches the caller
        for a keyset the mint rotated."""
        for attempt in (1, 2):
            fresh = self._for_active(get(self.op))
            if fresh is not None:
                self._commit(put(self.op, fresh))
            try:
                return call(get(self.op))
            except MintRejectedError as exc:
                if exc.code != CODE_KEYSET_INACTIVE or attempt == 2:
                    raise
                log.info("%s %s: the mint answered 12002; refreshing its keysets",
                         self.op.type.value, self.op.id)
                self._refresh_keysets()
                if self._for_active(get(self.op)) is None:
                    raise  # the mint says inactive, its list says active: nothing to fix
        raise AssertionError("unreachable")  # pragma: no cover

    def _unblind(self, outputs: Sequence[BlindingData],
                 sigs: Sequence[BlindSignature]) -> list[Proof]:
        """Proofs for ``outputs`` in order; each output is unblinded with its own keyset."""
        by_keyset: dict[str, list[int]] = {}
        for i, o in enumerate(outputs):
            by_keyset.setdefault(o.keyset_id, []).append(i)
        result: dict[int, Proof] = {}
        require_dleq = self.mint.client.requires_dleq() if outputs else False
        for keyset_id, idx in by_keyset.items():
            got = unblind_signatures([outputs[i] for i in idx], [sigs[i] for i in idx],
                                     self.mint.keyset(keyset_id), require_dleq=require_dleq)
            result.update(zip(idx, got, strict=True))
        return [result[i] for i in range(len(outputs))]

    def _restore(self, outputs: Sequence[BlindingData]) -> list[Proof]:
        """NUT-09: the proofs for those of ``outputs`` the mint has signed, unblinded."""
        if not outputs:
            return []
        result = self.mint.client.restore([o.blinded for o in outputs])
        by_b = {o.B_: o for o in outputs}
        matched = [by_b[b.B_] for b in result.outputs if b.B_ in by_b]
        sigs = [s for b, s in zip(result.outputs, result.signatures, strict=True)
                if b.B_ in by_b]
        return self._unblind(matched, sigs)

    def _require(self, *states: OpState) -> None:
        if self.op.state not in states:
            raise InvalidStateError(
                f"{self.op.type.value} {self.op.id} is {self.op.state.value}; this needs "
                + " or ".join(s.value for s in states))

    def _amounts(self, amount: int) -> list[int]:
        return split_amount(amount)


class OperationActor(NoticeActor, OperationBase):
    """The thin actor half: runs one saga's logic on its own thread, and its lifecycle.

    A concrete actor is ``class SendOperationActor(OperationActor, SendOperation)``.
    """

    def __init__(self, op: Operation, mint: MintContext, deps: OperationDeps) -> None:
        NoticeActor.__init__(self)
        OperationBase.__init__(self, op, mint, deps)

    def retire(self) -> None:
        self.actor_ref.stop(block=False)

    def rest(self) -> None:
        """Let the Supervisor stop this actor; it rehydrates it from the record when
        needed. The Supervisor, not this actor, does the stop, in its own mailbox: no
        lookup can then hand out this actor while a fresh one is started."""
        if self.deps.supervisor is not None:
            self.deps.supervisor.at_rest(self.op.id, self.actor_ref)


class OperationProxy(ActorMemberMixin, pykka.ActorProxy[OperationActor]):
    """What every operation actor answers, whatever its saga."""

    operation = proxy_method(OperationBase.operation)
    recover = proxy_method(OperationBase.recover)
    discard = proxy_method(OperationBase.discard)
