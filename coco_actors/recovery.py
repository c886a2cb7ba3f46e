"""Recovery of every operation not in a terminal state (run by ``Coco.open``).

It runs on the caller's thread, not in the Supervisor's mailbox: it asks the mints
(one batched NUT-07 per mint for pending sends) and waits on operation actors,
while the Supervisor keeps answering lookups. Each operation's own actor decides
its recovery row (DESIGN.md); a mint that cannot be reached leaves the operation
where it is, to be retried by the next recovery.

Garbage never stops it: a mint answering nonsense (a typed ``MintError``, or any
other exception an operation's recovery raises) leaves that operation where it
is ("STATE (deferred)" or "STATE (failed)" in the summary) and the others go on.
Records the ledger could not decode at startup were skipped there (logged by
kind and key); their number is reported as ``"unreadable"``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pykka

from coco_actors.actors import tell, wait
from coco_actors.errors import CocoError, MintError
from coco_actors.operations import OperationProxy
from coco_actors.operations.base import LEDGER_TIMEOUT
from coco_actors.proof_ledger import ProofLedgerProxy
from coco_actors.records import Operation, OpState, OpType, now_ms
from coco_actors.supervisor import SupervisorProxy
from coco_actors.watcher import WatcherActor
from coco_actors.wire import ProofStateKind

log = logging.getLogger(__name__)

Steps = tuple[Operation, pykka.Future[Operation]]

#: How long recovery waits for one operation (it may talk to its mint).
RECOVERY_TIMEOUT = 60.0
#: How long a Supervisor lookup may take (local).
LOOKUP_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Recovery:
    """What recovery talks to."""

    ledger: ProofLedgerProxy
    supervisor: SupervisorProxy
    watcher: pykka.ActorRef[WatcherActor] | None


def recover(deps: Recovery, op_type: OpType | None = None,
            rollback_prepared_after_ms: int | None = None) -> dict[str, int]:
    """Run every non-terminal operation's recovery; report how many ended where.

    Pending sends are checked with one batched NUT-07 per mint (not one request
    per operation); only those whose proofs are spent get an actor, the others are
    handed to the Watcher. Prepared sends stay as they are, unless older than
    ``rollback_prepared_after_ms`` (then rolled back).
    """
    ops = wait(deps.ledger.operations(op_type), LEDGER_TIMEOUT, "ProofLedger")
    known = wait(deps.supervisor.mint_urls(), LOOKUP_TIMEOUT, "Supervisor")
    urls = set(known)
    summary: dict[str, int] = {}

    def count(state: str) -> None:
        summary[state] = summary.get(state, 0) + 1

    futures: list[Steps] = []
    pending: dict[str, list[Operation]] = {}
    now = now_ms()
    # a transfer drives its legs' recovery itself (so no leg is driven twice at once);
    # a leg whose transfer is not open (never expected) is recovered on its own
    every = ops if op_type is None else wait(deps.ledger.operations(), LEDGER_TIMEOUT,
                                               "ProofLedger")
    by_id: dict[str, Operation] = {o.id: o for o in every}  # every open operation
    transfers = {o.id for o in every if o.type == OpType.TRANSFER}
    for op in ops:
        if op.parent_id is not None and op.parent_id in transfers:
            continue
        try:
            started = _start(deps, op, urls, now, rollback_prepared_after_ms, pending, by_id)
        except Exception as exc:  # a lookup that failed: this operation stays as it is
            _log_failure(op, exc)
            count(f"{op.state.value} (failed)")
            continue
        if started is None:
            continue
        if isinstance(started, str):
            count(started)
        else:
            futures.append((op, started))
    for url, ops_here in pending.items():
        futures.extend(_recover_pending(deps, url, ops_here, count))
    for op, fut in futures:
        try:
            state = wait(fut, RECOVERY_TIMEOUT, f"recovery of {op.id}").state.value
        except MintError as exc:
            log.warning("recovery of %s %s deferred: %s", op.type.value, op.id, exc)
            state = f"{op.state.value} (deferred)"
        except Exception as exc:
            _log_failure(op, exc)
            state = f"{op.state.value} (failed)"
        count(state)
    unreadable = sum(wait(deps.ledger.unreadable(), LEDGER_TIMEOUT, "ProofLedger").values())
    if unreadable:
        summary["unreadable"] = unreadable
    return summary


def _start(deps: Recovery, op: Operation, urls: set[str], now: int,
           rollback_prepared_after_ms: int | None,
           pending: dict[str, list[Operation]],
           by_id: dict[str, Operation]) -> pykka.Future[Operation] | str | None:
    """Start ``op``'s recovery: its future, the state to count now, or None (batched)."""
    for url in (op.mint_url, op.to_mint_url):
        if url is not None and url not in urls:
            log.warning("operation %s belongs to unknown mint %s", op.id, url)
            return f"{op.state.value} (unknown mint)"
    if op.type == OpType.SEND and op.state == OpState.PENDING:
        pending.setdefault(op.mint_url, []).append(op)
        return None
    if op.state == OpState.PREPARED and op.type != OpType.RECEIVE:
        stale = (op.type in (OpType.SEND, OpType.MELT, OpType.TRANSFER)
                 and rollback_prepared_after_ms is not None
                 and now - op.created_at >= rollback_prepared_after_ms)
        if stale:
            return _rollback(deps, op)
        if op.type == OpType.TRANSFER and _rollback_cut_short(op, by_id):
            return _actor(deps, op).recover()  # finishes that rollback
        if op.type == OpType.MINT and op.quote_expiry is not None \
                and now > op.quote_expiry * 1000:
            # expired: asked once (minted if it was paid, else ended), not watched
            mint = wait(deps.supervisor.mint_actor(op.id), LOOKUP_TIMEOUT, "Supervisor")
            return mint.try_redeem()
        if op.type == OpType.MINT and op.quote_id and deps.watcher is not None:
            # a quote paid while we were down (or later) still gets minted
            tell(deps.watcher, WatcherActor.watch_quote, op.id, op.mint_url, op.quote_id)
        return op.state.value
    return _actor(deps, op).recover()


def _rollback_cut_short(op: Operation, by_id: dict[str, Operation]) -> bool:
    """A prepared transfer whose melt leg is no longer open (``by_id`` holds every open
    operation): rolled back, or gone. A crash came between the leg's commit and the
    transfer's own; its recovery finishes the rollback."""
    return (op.melt_id or "") not in by_id


def _log_failure(op: Operation, exc: Exception) -> None:
    """A typed error says what went wrong in words of ours (no secrets); any other
    exception only by its type, since its text may quote what a mint sent."""
    reason = str(exc) if isinstance(exc, CocoError) else f"unexpected {type(exc).__name__}"
    log.error("recovery of %s %s failed, left as %s: %s", op.type.value, op.id,
              op.state.value, reason)


def _rollback(deps: Recovery, op: Operation) -> pykka.Future[Operation]:
    if op.type == OpType.TRANSFER:
        transfer = wait(deps.supervisor.transfer_actor(op.id), LOOKUP_TIMEOUT, "Supervisor")
        return transfer.rollback()
    if op.type == OpType.MELT:
        melt = wait(deps.supervisor.melt_actor(op.id), LOOKUP_TIMEOUT, "Supervisor")
        return melt.rollback()
    send = wait(deps.supervisor.send_actor(op.id), LOOKUP_TIMEOUT, "Supervisor")
    return send.rollback()


def _actor(deps: Recovery, op: Operation) -> OperationProxy:
    return wait(deps.supervisor.actor_for(op.id), LOOKUP_TIMEOUT, "Supervisor")


def _recover_pending(deps: Recovery, url: str, ops: list[Operation],
                     count: Callable[[str], None]) -> list[Steps]:
    try:
        ctx = wait(deps.supervisor.mint_context(url), LOOKUP_TIMEOUT, "Supervisor")
    except Exception as exc:
        for op in ops:
            _log_failure(op, exc)
            count(f"{op.state.value} (failed)")
        return []
    ys_of = {op.id: op.send_ys for op in ops}
    try:
        states = ctx.client.check_state([y for ys in ys_of.values() for y in ys])
        spent = {s.Y for s in states if s.state == ProofStateKind.SPENT}
    except MintError as exc:
        log.warning("recovery of %d pending sends at %s deferred: %s", len(ops), url, exc)
        states, spent = [], set()
    except Exception as exc:  # an answer the client did not type: still only deferred
        log.error("recovery of %d pending sends at %s deferred: unexpected %s",
                  len(ops), url, type(exc).__name__)
        states, spent = [], set()
    futures = []
    for op in ops:
        if states and all(y in spent for y in ys_of[op.id]):
            try:
                send = wait(deps.supervisor.send_actor(op.id), LOOKUP_TIMEOUT, "Supervisor")
            except Exception as exc:
                _log_failure(op, exc)
                count(f"{op.state.value} (failed)")
                continue
            futures.append((op, send.mark_claimed()))
        else:
            if deps.watcher is not None:
                tell(deps.watcher, WatcherActor.watch_send, op.id, url, list(ys_of[op.id]))
            count(op.state.value)
    return futures
