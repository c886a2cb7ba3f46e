"""Supervisor: owns the mint clients, spawns and rehydrates operation actors, recovers.

It answers quickly: it hands out actor refs and never forwards a saga step
through its own mailbox, so one slow swap never holds up another operation.
An operation actor that has stopped (at rest, or died) is started again from
its last persisted record the next time it is needed.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pykka

from coco_actors.errors import (
    ActorTimeoutError,
    CocoError,
    InvalidStateError,
    MintError,
    NotFoundError,
)
from coco_actors.mint_client import MintClient, normalize_mint_url
from coco_actors.operations import (
    MintContext,
    MintOperationActor,
    OperationActor,
    OperationDeps,
    ReceiveOperationActor,
    SendOperationActor,
)
from coco_actors.operations.base import LEDGER_TIMEOUT, wait
from coco_actors.records import (
    MintRecord,
    Operation,
    OperationId,
    OpState,
    OpType,
    new_operation_id,
    now_ms,
)
from coco_actors.wire import Keyset, ProofStateKind

log = logging.getLogger(__name__)

ACTOR_CLASSES: dict[OpType, type[OperationActor]] = {
    OpType.SEND: SendOperationActor,
    OpType.RECEIVE: ReceiveOperationActor,
    OpType.MINT: MintOperationActor,
}

#: How long recovery waits for one operation (it may talk to its mint).
RECOVERY_TIMEOUT = 60.0


class SupervisorActor(pykka.ThreadingActor):
    def __init__(self, deps: OperationDeps, *, client_factory: Any = MintClient) -> None:
        super().__init__()
        self.deps = deps
        self._client_factory = client_factory
        self._mints: dict[str, MintContext] = {}
        self._actors: dict[OperationId, pykka.ActorRef[Any]] = {}
        self._proxies: dict[OperationId, Any] = {}  # built once per actor: not cheap
        self._stopping: set[OperationId] = set()    # asked to rest, not yet dead

    def on_start(self) -> None:
        self.deps = replace(self.deps, supervisor=self.actor_ref.proxy())
        for rec in wait(self.deps.ledger.mints(), LEDGER_TIMEOUT, "ProofLedger"):
            keysets = wait(self.deps.ledger.keysets(rec.url), LEDGER_TIMEOUT, "ProofLedger")
            self._mints[rec.url] = MintContext(rec.url, self._client_factory(rec.url),
                                               tuple(keysets))

    def on_stop(self) -> None:
        """Stop operation actors (each finishes its current step first), then clients."""
        for ref in list(self._actors.values()):
            if ref.is_alive():
                ref.stop(block=True, timeout=RECOVERY_TIMEOUT)
        self._actors.clear()
        for ctx in self._mints.values():
            ctx.client.close()

    # --- mints ----------------------------------------------------------------------

    def add_mint(self, url: str) -> MintRecord:
        """Fetch info and every keyset (keys verified against their ids) and persist them."""
        url = normalize_mint_url(url)
        client = self._mints[url].client if url in self._mints else self._client_factory(url)
        try:
            info = client.get_info()
            keysets = self._fetch_keysets(client)
        except Exception:
            if url not in self._mints:
                client.close()
            raise
        rec = MintRecord(url=url, name=info.name)
        self._register(rec, client, keysets)
        return rec

    def refresh_keysets(self, url: str) -> MintContext:
        ctx = self.mint_context(url)
        return self._register(MintRecord(url=ctx.url), ctx.client,
                              self._fetch_keysets(ctx.client))

    def _register(self, rec: MintRecord, client: MintClient,
                  keysets: list[Keyset]) -> MintContext:
        """Persist the keysets, then serve every keyset the ledger now knows."""
        wait(self.deps.ledger.add_mint(rec, keysets), LEDGER_TIMEOUT, "ProofLedger")
        self._mints[rec.url] = MintContext(rec.url, client, tuple(
            wait(self.deps.ledger.keysets(rec.url), LEDGER_TIMEOUT, "ProofLedger")))
        return self._mints[rec.url]

    @staticmethod
    def _fetch_keysets(client: MintClient) -> list[Keyset]:
        infos = {k.id: k for k in client.get_keysets()}
        keys = {k.id: k for k in client.get_keys()}
        for kid in infos.keys() - keys.keys():
            keys.update({k.id: k for k in client.get_keys(kid)})
        out = []
        for kid, ks in keys.items():
            info = infos.get(kid)
            out.append(Keyset(id=ks.id, unit=ks.unit, keys=ks.keys,
                              active=info.active if info else ks.active,
                              input_fee_ppk=info.input_fee_ppk if info else ks.input_fee_ppk,
                              final_expiry=ks.final_expiry))
        return out

    def mint_urls(self) -> list[str]:
        return list(self._mints)

    def mint_context(self, url: str) -> MintContext:
        try:
            return self._mints[normalize_mint_url(url)]
        except KeyError:
            raise NotFoundError(f"unknown mint {url}; add it first") from None

    def mint_info(self, url: str) -> Any:
        return self.mint_context(url).client.get_info()

    # --- operation actors -----------------------------------------------------------

    def new_operation(self, op_type: OpType, mint_url: str, amount: int,
                      unit: str = "sat") -> Any:
        ctx = self.mint_context(mint_url)
        op = Operation(id=new_operation_id(), type=op_type, mint_url=ctx.url, amount=amount,
                       unit=unit, state=OpState.INIT)
        return self._spawn(op)

    def _live(self, op_id: OperationId) -> Any | None:
        """The proxy of the operation's actor if one is running (never a second one).

        An actor asked to rest had an empty inbox when its stop was sent, so waiting
        for it to end is short; only then may a fresh actor take its place.
        """
        ref = self._actors.get(op_id)
        if ref is None:
            return None
        if op_id in self._stopping:
            if not ref.actor_stopped.wait(RECOVERY_TIMEOUT):
                raise ActorTimeoutError(f"actor of {op_id} did not stop")
            self._stopping.discard(op_id)
        if ref.is_alive():
            return self._proxies[op_id]
        del self._actors[op_id]
        del self._proxies[op_id]
        return None

    def _live_or_spawn(self, op: Operation) -> Any:
        return self._live(op.id) or self._spawn(op)

    def actor_for(self, op_id: str) -> Any:
        """The proxy of a non-terminal operation's live actor, rehydrated if it had stopped."""
        live = self._live(OperationId(op_id))
        if live is not None:
            return live
        op = wait(self.deps.ledger.get_operation(op_id), LEDGER_TIMEOUT, "ProofLedger")
        if op is None:
            raise NotFoundError(f"unknown operation {op_id}")
        if op.state.terminal:
            raise InvalidStateError(f"{op.type.value} {op.id} is already {op.state.value}")
        return self._spawn(op)

    def _spawn(self, op: Operation) -> Any:
        """Start an actor for ``op``; callers make sure none is running (``_live``)."""
        self._prune()
        ref = ACTOR_CLASSES[op.type].start(op, self.mint_context(op.mint_url), self.deps)
        self._actors[op.id] = ref
        self._proxies[op.id] = proxy = ref.proxy()
        return proxy

    def idle(self, op_id: OperationId, ref: pykka.ActorRef[Any]) -> None:
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
        dead = [k for k, r in self._actors.items() if not r.is_alive()]
        for k in dead:
            del self._actors[k]
            del self._proxies[k]
            self._stopping.discard(k)

    def live_actor_count(self) -> int:
        """Actors at work: not counting those already told to rest."""
        self._prune()
        return len(self._actors.keys() - self._stopping)

    # --- what the Watcher saw (tells) ---------------------------------------------------

    def set_watcher(self, watcher: Any) -> None:
        self.deps = replace(self.deps, watcher=watcher)

    def send_claimed(self, op_id: OperationId) -> None:
        self._nudge(op_id, "mark_claimed")

    def quote_paid(self, op_id: OperationId) -> None:
        self._nudge(op_id, "on_quote_paid")

    def _nudge(self, op_id: OperationId, method: str) -> None:
        try:
            proxy = self.actor_for(op_id)
        except CocoError as exc:  # gone, or already terminal: nothing to do
            log.debug("watcher notice for %s ignored: %s", op_id, exc)
            return
        getattr(proxy, method)()  # a tell: the operation decides and persists

    # --- recovery -------------------------------------------------------------------

    def recover(self, op_type: OpType | None = None,
                rollback_prepared_after_ms: int | None = None) -> dict[str, int]:
        """Run every non-terminal operation's recovery; report how many ended where.

        Pending sends are checked with one batched NUT-07 per mint (not one
        request per operation); only those whose proofs are spent get an actor,
        the others are handed to the Watcher. Prepared sends stay as they are,
        unless older than ``rollback_prepared_after_ms`` (then rolled back).
        A mint that cannot be reached leaves its operations as they are, to be
        retried by the next recovery.
        """
        ops = wait(self.deps.ledger.operations(op_type), LEDGER_TIMEOUT, "ProofLedger")
        summary: dict[str, int] = {}

        def count(state: str, n: int = 1) -> None:
            summary[state] = summary.get(state, 0) + n

        futures = []
        pending: dict[str, list[Operation]] = {}
        now = now_ms()
        for op in ops:
            if op.mint_url not in self._mints:
                log.warning("operation %s belongs to unknown mint %s", op.id, op.mint_url)
                count(f"{op.state.value} (unknown mint)")
            elif op.type == OpType.SEND and op.state == OpState.PENDING:
                pending.setdefault(op.mint_url, []).append(op)
            elif op.state == OpState.PREPARED and op.type != OpType.RECEIVE:
                stale = (op.type == OpType.SEND and rollback_prepared_after_ms is not None
                         and now - op.created_at >= rollback_prepared_after_ms)
                if stale:
                    futures.append((op, self._live_or_spawn(op).rollback()))
                    continue
                if op.type == OpType.MINT and op.quote_id and self.deps.watcher is not None:
                    # a quote paid while we were down (or later) still gets minted
                    self.deps.watcher.watch_quote(op.id, op.mint_url, op.quote_id)
                count(op.state.value)
            else:
                futures.append((op, self._live_or_spawn(op).recover()))
        for url, ops_here in pending.items():
            futures.extend(self._recover_pending(url, ops_here, count))
        for op, fut in futures:
            try:
                state = wait(fut, RECOVERY_TIMEOUT, f"recovery of {op.id}").state.value
            except MintError as exc:
                log.warning("recovery of %s %s deferred: %s", op.type.value, op.id, exc)
                state = f"{op.state.value} (deferred)"
            except CocoError as exc:
                log.error("recovery of %s %s failed: %s", op.type.value, op.id, exc)
                state = f"{op.state.value} (failed)"
            count(state)
        return summary

    def _recover_pending(self, url: str, ops: list[Operation],
                         count: Any) -> list[tuple[Operation, Any]]:
        ys_of = {op.id: op.send_ys for op in ops}
        try:
            states = self._mints[url].client.check_state(
                [y for ys in ys_of.values() for y in ys])
        except MintError as exc:
            log.warning("recovery of %d pending sends at %s deferred: %s", len(ops), url, exc)
            states = []
        spent = {s.Y for s in states if s.state == ProofStateKind.SPENT}
        futures = []
        for op in ops:
            if states and all(y in spent for y in ys_of[op.id]):
                futures.append((op, self._live_or_spawn(op).mark_claimed()))
            else:
                if self.deps.watcher is not None:
                    self.deps.watcher.watch_send(op.id, url, list(ys_of[op.id]))
                count(op.state.value)
        return futures
