"""Supervisor: holds the mint contexts, spawns and rehydrates operation actors.

It answers quickly: it hands out actor proxies and never forwards a saga step
through its own mailbox, and it makes no network request there (mints are
fetched on the caller's thread and only *registered* here), so neither a slow
swap nor a slow mint holds up lookups for other operations. An operation actor
that has stopped (at rest, or died) is started again from its last persisted
record the next time it is needed.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import cast

import pykka
from pykka.typing import ActorMemberMixin, proxy_method

from coco_actors.actors import NoticeActor, tell, wait
from coco_actors.crypto.keysets import check_listed_metadata, commits_metadata
from coco_actors.errors import (
    ActorTimeoutError,
    CocoError,
    CryptoError,
    InvalidStateError,
    NotFoundError,
)
from coco_actors.mint_client import MintClient, MintInfo
from coco_actors.operations import (
    ConsolidateOperationActor,
    ConsolidateOperationProxy,
    Legs,
    LiveKeysets,
    MeltOperationActor,
    MeltOperationProxy,
    MintContext,
    MintOperationActor,
    MintOperationProxy,
    OperationActor,
    OperationBase,
    OperationDeps,
    OperationProxy,
    ReceiveOperationActor,
    ReceiveOperationProxy,
    SendOperationActor,
    SendOperationProxy,
    TransferOperation,
    TransferOperationActor,
    TransferOperationProxy,
    Watched,
)
from coco_actors.operations.base import LEDGER_TIMEOUT
from coco_actors.records import (
    MintRecord,
    Operation,
    OperationId,
    OpState,
    OpType,
    new_operation_id,
)
from coco_actors.watcher import WatcherActor
from coco_actors.wire import Keyset

log = logging.getLogger(__name__)

ACTOR_CLASSES: dict[OpType, type[OperationActor]] = {
    OpType.SEND: SendOperationActor,
    OpType.RECEIVE: ReceiveOperationActor,
    OpType.MINT: MintOperationActor,
    OpType.MELT: MeltOperationActor,
    OpType.CONSOLIDATE: ConsolidateOperationActor,
}
# a transfer actor is started with the Supervisor's lookups too (``Supervisor._spawn``)

#: How long stopping waits for one operation actor to finish its current step.
STOP_TIMEOUT = 60.0


def fetch_mint(client: MintClient) -> tuple[MintInfo, list[Keyset]]:
    """A mint's info and every keyset with its keys (verified against their ids by the
    client). Network IO: runs on the caller's thread, never in an actor's mailbox."""
    info = client.get_info()
    return info, fetch_keysets(client)


def fetch_keysets(client: MintClient) -> list[Keyset]:
    infos = {k.id: k for k in client.get_keysets()}
    keys = {k.id: k for k in client.get_keys()}
    for kid in infos.keys() - keys.keys():
        keys.update({k.id: k for k in client.get_keys(kid)})
    out = []
    for kid, ks in keys.items():  # each verified against its id by get_keys
        info = infos.get(kid)
        if info is not None:
            check_listed_metadata(ks, info)  # a contradiction: refused, nothing stored
        fee = ks.input_fee_ppk if info is None or commits_metadata(kid) else info.input_fee_ppk
        out.append(Keyset(id=ks.id, unit=ks.unit, keys=ks.keys,
                          active=info.active if info else ks.active,
                          input_fee_ppk=fee, final_expiry=ks.final_expiry))
    return out


class Supervisor:
    """The logic; :class:`SupervisorActor` runs it on its own thread."""

    def __init__(self, deps: OperationDeps) -> None:
        self.deps = deps
        self._mints: dict[str, MintContext] = {}
        self._actors: dict[OperationId, pykka.ActorRef[OperationActor]] = {}
        self._proxies: dict[OperationId, OperationProxy] = {}  # built once: not cheap
        self._types: dict[OperationId, OpType] = {}
        self._stopping: set[OperationId] = set()  # told to rest, not yet dead
        self.legs: Legs | None = None  # what a transfer actor asks; set by SupervisorActor

    def load_mints(self) -> None:
        """The mints the ledger knows (local reads; clients connect lazily)."""
        for rec in wait(self.deps.ledger.mints(), LEDGER_TIMEOUT, "ProofLedger"):
            keysets = wait(self.deps.ledger.keysets(rec.url), LEDGER_TIMEOUT, "ProofLedger")
            self._mints[rec.url] = MintContext(rec.url, MintClient(rec.url),
                                               LiveKeysets(keysets))

    def shutdown(self) -> None:
        """Stop operation actors (each finishes its current step first), then clients."""
        for ref in list(self._actors.values()):
            if ref.is_alive():
                ref.stop(block=True, timeout=STOP_TIMEOUT)
        self._actors.clear()
        self._proxies.clear()
        self._types.clear()
        for ctx in self._mints.values():
            ctx.client.close()

    # --- mints ----------------------------------------------------------------------

    def register_mint(self, rec: MintRecord, client: MintClient,
                      keysets: list[Keyset]) -> MintContext:
        """Persist a fetched mint and its keysets; serve every keyset the ledger knows.

        A mint already known keeps its client (``client`` is closed if it is another)
        and its context: the keysets are replaced in it, so every operation actor of
        the mint sees them at once (a refresh). A keyset whose keys changed under its
        id is a :class:`CryptoError` from the ledger, and nothing of ``keysets`` is stored.
        """
        current = self._mints.get(rec.url)
        try:
            known = wait(self.deps.ledger.add_mint(rec, keysets), LEDGER_TIMEOUT,
                         "ProofLedger")
        except CryptoError as exc:  # the message names the keyset id, never a key
            log.error("mint %s: keysets refused, nothing stored: %s", rec.url, exc)
            if current is None or current.client is not client:
                client.close()
            raise
        if current is not None:
            if current.client is not client:
                client.close()
            current.live.set(known)
            return current
        self._mints[rec.url] = ctx = MintContext(rec.url, client, LiveKeysets(known))
        return ctx

    def find_mint(self, url: str) -> MintContext | None:
        """The context of a (normalized) mint URL, None if the wallet does not know it."""
        return self._mints.get(url)

    def mint_urls(self) -> list[str]:
        return list(self._mints)

    def mint_context(self, url: str) -> MintContext:
        try:
            return self._mints[url]
        except KeyError:
            raise NotFoundError(f"unknown mint {url}; add it first") from None

    # --- operation actors -----------------------------------------------------------

    def new_send(self, mint_url: str, amount: int, unit: str = "sat") -> SendOperationProxy:
        return cast(SendOperationProxy, self._new(OpType.SEND, mint_url, amount, unit))

    def new_receive(self, mint_url: str, amount: int, unit: str,
                    op_id: OperationId | None = None) -> ReceiveOperationProxy:
        """``op_id``: an id the caller committed first (a payment attempt's receive)."""
        if op_id is not None and self._live(op_id) is not None:
            raise InvalidStateError(f"operation {op_id} exists already")
        return cast(ReceiveOperationProxy, self._new(OpType.RECEIVE, mint_url, amount, unit,
                                                     op_id))

    def new_mint(self, mint_url: str, amount: int, unit: str = "sat") -> MintOperationProxy:
        return cast(MintOperationProxy, self._new(OpType.MINT, mint_url, amount, unit))

    def new_melt(self, mint_url: str, amount: int, unit: str = "sat") -> MeltOperationProxy:
        return cast(MeltOperationProxy, self._new(OpType.MELT, mint_url, amount, unit))

    def new_consolidate(self, mint_url: str, unit: str = "sat") -> ConsolidateOperationProxy:
        return cast(ConsolidateOperationProxy,
                    self._new(OpType.CONSOLIDATE, mint_url, 0, unit))

    def consolidate_actor(self, op_id: str) -> ConsolidateOperationProxy:
        return cast(ConsolidateOperationProxy, self._actor_for(op_id, OpType.CONSOLIDATE))

    def new_transfer(self, from_mint: str, to_mint: str, amount: int) -> TransferOperationProxy:
        to_url = self.mint_context(to_mint).url
        ctx = self.mint_context(from_mint)
        return cast(TransferOperationProxy, self._spawn(Operation(
            id=new_operation_id(), type=OpType.TRANSFER, mint_url=ctx.url, amount=amount,
            state=OpState.INIT, to_mint_url=to_url)))

    def new_leg(self, op_type: OpType, mint_url: str, amount: int, op_id: OperationId,
                parent_id: OperationId) -> OperationProxy:
        """A transfer's leg, under the id its transfer committed before asking."""
        ctx = self.mint_context(mint_url)
        if self._live(op_id) is not None:
            raise InvalidStateError(f"operation {op_id} exists already")
        return self._spawn(Operation(id=op_id, type=op_type, mint_url=ctx.url, amount=amount,
                                     state=OpState.INIT, parent_id=parent_id))

    def transfer_actor(self, op_id: str) -> TransferOperationProxy:
        return cast(TransferOperationProxy, self._actor_for(op_id, OpType.TRANSFER))

    def melt_actor(self, op_id: str) -> MeltOperationProxy:
        return cast(MeltOperationProxy, self._actor_for(op_id, OpType.MELT))

    def send_actor(self, op_id: str) -> SendOperationProxy:
        return cast(SendOperationProxy, self._actor_for(op_id, OpType.SEND))

    def receive_actor(self, op_id: str) -> ReceiveOperationProxy:
        return cast(ReceiveOperationProxy, self._actor_for(op_id, OpType.RECEIVE))

    def mint_actor(self, op_id: str) -> MintOperationProxy:
        return cast(MintOperationProxy, self._actor_for(op_id, OpType.MINT))

    def actor_for(self, op_id: str) -> OperationProxy:
        """Any type of operation: what recovery needs (``recover``)."""
        return self._actor_for(op_id, None)

    def _new(self, op_type: OpType, mint_url: str, amount: int,
             unit: str = "sat", op_id: OperationId | None = None) -> OperationProxy:
        ctx = self.mint_context(mint_url)
        return self._spawn(Operation(id=op_id or new_operation_id(), type=op_type,
                                     mint_url=ctx.url, amount=amount, unit=unit,
                                     state=OpState.INIT))

    def _actor_for(self, op_id: str, op_type: OpType | None) -> OperationProxy:
        """The proxy of a non-terminal operation's live actor, rehydrated if it had stopped."""
        live = self._live(OperationId(op_id))
        if live is not None:
            if op_type is not None and self._types[OperationId(op_id)] != op_type:
                raise NotFoundError(f"unknown {op_type.value} operation {op_id}")
            return live
        op = wait(self.deps.ledger.get_operation(op_id), LEDGER_TIMEOUT, "ProofLedger")
        if op is None or (op_type is not None and op.type != op_type):
            what = f"{op_type.value} operation" if op_type else "operation"
            raise NotFoundError(f"unknown {what} {op_id}")
        if op.state.terminal:
            raise InvalidStateError(f"{op.type.value} {op.id} is already {op.state.value}")
        return self._spawn(op)

    def _live(self, op_id: OperationId) -> OperationProxy | None:
        """The proxy of the operation's actor if one is running (never a second one).

        An actor asked to rest had an empty inbox when its stop was sent, so waiting
        for it to end is short; only then may a fresh actor take its place.
        """
        ref = self._actors.get(op_id)
        if ref is None:
            return None
        if op_id in self._stopping:
            if not ref.actor_stopped.wait(STOP_TIMEOUT):
                raise ActorTimeoutError(f"actor of {op_id} did not stop")
            self._stopping.discard(op_id)
        if ref.is_alive():
            return self._proxies[op_id]
        self._forget(op_id)
        return None

    def _spawn(self, op: Operation) -> OperationProxy:
        """Start an actor for ``op``; callers make sure none is running (``_live``)."""
        self._prune()
        ctx = self.mint_context(op.mint_url)
        ref: pykka.ActorRef[OperationActor]
        if op.type == OpType.TRANSFER:
            self.mint_context(op.to_mint_url or "")  # both mints must be known
            if self.legs is None:
                raise InvalidStateError("transfers need a running Supervisor actor")
            ref = cast(pykka.ActorRef[OperationActor],
                       TransferOperationActor.start(op, ctx, self.deps, self.legs))
        else:
            ref = ACTOR_CLASSES[op.type].start(op, ctx, self.deps)
        self._actors[op.id] = ref
        self._types[op.id] = op.type
        self._proxies[op.id] = proxy = cast(OperationProxy, ref.proxy())
        return proxy

    def at_rest(self, op_id: OperationId, ref: pykka.ActorRef[OperationActor]) -> None:
        """An operation actor is at rest: stop it, unless work is queued for it.

        Never blocks: with an empty inbox the stop is immediate; with work queued
        the actor stays (it ends itself when the operation is over). It stays
        registered until it is dead, so no lookup starts a second actor meanwhile.
        """
        if self._actors.get(op_id) is not ref or not ref.is_alive():
            return
        if ref.actor_inbox.empty():
            ref.stop(block=False)
            self._stopping.add(op_id)

    def _prune(self) -> None:
        for op_id in [k for k, r in self._actors.items() if not r.is_alive()]:
            self._forget(op_id)

    def _forget(self, op_id: OperationId) -> None:
        del self._actors[op_id], self._proxies[op_id], self._types[op_id]
        self._stopping.discard(op_id)

    def live_actor_count(self) -> int:
        """Actors at work: not counting those already told to rest."""
        self._prune()
        return len(self._actors.keys() - self._stopping)

    # --- what the Watcher saw (tells) ---------------------------------------------------

    def set_watcher(self, watcher: pykka.ActorRef[WatcherActor] | None) -> None:
        self.deps = replace(self.deps, watcher=watcher)

    def send_claimed(self, op_id: OperationId) -> None:
        self._notify(op_id, Watched.CLAIMED)

    def quote_paid(self, op_id: OperationId) -> None:
        self._notify(op_id, Watched.QUOTE_PAID)

    def melt_decided(self, op_id: OperationId) -> None:
        self._notify(op_id, Watched.MELT_DECIDED)

    def leg_settled(self, parent_id: OperationId, leg_id: OperationId) -> None:
        """A transfer's leg moved: its transfer (rehydrated if at rest) follows it."""
        try:
            self._actor_for(parent_id, OpType.TRANSFER)
        except CocoError as exc:  # gone, or already terminal: nothing to do
            log.debug("leg notice of %s for %s ignored: %s", leg_id, parent_id, exc)
            return
        ref = cast(pykka.ActorRef[TransferOperationActor], self._actors[parent_id])
        tell(ref, TransferOperation.on_leg, leg_id)

    def _notify(self, op_id: OperationId, what: Watched) -> None:
        try:
            self._actor_for(op_id, None)
        except CocoError as exc:  # gone, or already terminal: nothing to do
            log.debug("watcher notice for %s ignored: %s", op_id, exc)
            return
        tell(self._actors[op_id], OperationBase.on_watched, what)  # the operation decides


class SupervisorNotices:
    """The Supervisor as the Watcher and the operation actors see it: every method is
    a tell, so a notice never blocks its sender."""

    def __init__(self, ref: pykka.ActorRef[SupervisorActor]) -> None:
        self._ref = ref

    def send_claimed(self, op_id: OperationId) -> None:
        tell(self._ref, Supervisor.send_claimed, op_id)

    def quote_paid(self, op_id: OperationId) -> None:
        tell(self._ref, Supervisor.quote_paid, op_id)

    def melt_decided(self, op_id: OperationId) -> None:
        tell(self._ref, Supervisor.melt_decided, op_id)

    def at_rest(self, op_id: OperationId, ref: pykka.ActorRef[OperationActor]) -> None:
        tell(self._ref, Supervisor.at_rest, op_id, ref)

    def leg_settled(self, parent_id: OperationId, leg_id: OperationId) -> None:
        tell(self._ref, Supervisor.leg_settled, parent_id, leg_id)


class SupervisorLegs:
    """The Supervisor's lookups for a transfer actor: asks, waited on the transfer's
    thread (the Supervisor never asks a transfer actor back, so no cycle)."""

    def __init__(self, ref: pykka.ActorRef[SupervisorActor]) -> None:
        self._ref = ref
        self._px: SupervisorProxy | None = None

    def _proxy(self) -> SupervisorProxy:
        if self._px is None:  # built on first use, once: a proxy is not cheap
            self._px = cast(SupervisorProxy, self._ref.proxy())
        return self._px

    def new_mint_leg(self, mint_url: str, amount: int, op_id: OperationId,
                     parent_id: OperationId) -> MintOperationProxy:
        leg = self._proxy().new_leg(OpType.MINT, mint_url, amount, op_id, parent_id)
        return cast(MintOperationProxy, wait(leg, LEDGER_TIMEOUT, "Supervisor"))

    def new_melt_leg(self, mint_url: str, amount: int, op_id: OperationId,
                     parent_id: OperationId) -> MeltOperationProxy:
        leg = self._proxy().new_leg(OpType.MELT, mint_url, amount, op_id, parent_id)
        return cast(MeltOperationProxy, wait(leg, LEDGER_TIMEOUT, "Supervisor"))

    def new_receive_leg(self, mint_url: str, amount: int, op_id: OperationId,
                        parent_id: OperationId) -> ReceiveOperationProxy:
        leg = self._proxy().new_leg(OpType.RECEIVE, mint_url, amount, op_id, parent_id)
        return cast(ReceiveOperationProxy, wait(leg, LEDGER_TIMEOUT, "Supervisor"))

    def mint_leg(self, op_id: OperationId) -> MintOperationProxy:
        return wait(self._proxy().mint_actor(op_id), LEDGER_TIMEOUT, "Supervisor")

    def receive_leg(self, op_id: OperationId) -> ReceiveOperationProxy:
        return wait(self._proxy().receive_actor(op_id), LEDGER_TIMEOUT, "Supervisor")

    def melt_leg(self, op_id: OperationId) -> MeltOperationProxy:
        return wait(self._proxy().melt_actor(op_id), LEDGER_TIMEOUT, "Supervisor")


class SupervisorActor(NoticeActor, Supervisor):
    def __init__(self, deps: OperationDeps) -> None:
        NoticeActor.__init__(self)
        Supervisor.__init__(self, deps)

    def on_start(self) -> None:
        self.deps = replace(self.deps, supervisor=SupervisorNotices(self.actor_ref))
        self.legs = SupervisorLegs(self.actor_ref)
        self.load_mints()

    def on_stop(self) -> None:
        self.shutdown()


class SupervisorProxy(ActorMemberMixin, pykka.ActorProxy[SupervisorActor]):
    register_mint = proxy_method(Supervisor.register_mint)
    find_mint = proxy_method(Supervisor.find_mint)
    mint_urls = proxy_method(Supervisor.mint_urls)
    mint_context = proxy_method(Supervisor.mint_context)
    new_send = proxy_method(Supervisor.new_send)
    new_receive = proxy_method(Supervisor.new_receive)
    new_mint = proxy_method(Supervisor.new_mint)
    new_melt = proxy_method(Supervisor.new_melt)
    new_transfer = proxy_method(Supervisor.new_transfer)
    new_consolidate = proxy_method(Supervisor.new_consolidate)
    consolidate_actor = proxy_method(Supervisor.consolidate_actor)
    new_leg = proxy_method(Supervisor.new_leg)
    transfer_actor = proxy_method(Supervisor.transfer_actor)
    melt_actor = proxy_method(Supervisor.melt_actor)
    send_actor = proxy_method(Supervisor.send_actor)
    receive_actor = proxy_method(Supervisor.receive_actor)
    mint_actor = proxy_method(Supervisor.mint_actor)
    actor_for = proxy_method(Supervisor.actor_for)
    live_actor_count = proxy_method(Supervisor.live_actor_count)
    set_watcher = proxy_method(Supervisor.set_watcher)


def start_supervisor(deps: OperationDeps) -> tuple[pykka.ActorRef[SupervisorActor],
                                                    SupervisorProxy]:
    ref = SupervisorActor.start(deps)
    return ref, cast(SupervisorProxy, ref.proxy())
