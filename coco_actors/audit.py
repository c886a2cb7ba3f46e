"""The solvency audit: what the wallet counts as its own, checked against the mints.

Per mint and unit it asks NUT-07 (``POST /v1/checkstate``, batched by the client)
about every proof the wallet holds and every proof of a pending send's token, and
reports the mint's answer split by the wallet's own status (``ready``, ``reserved``
by an operation, ``pending_send``), the reservations and how old they are, the
pending sends and melts, and every *difference*: a proof the wallet counts as its own
(ready or reserved) that the mint does not confirm unspent, and that no operation in
flight explains.

A pending send is never a difference: unspent, the recipient has not claimed it;
spent, it was claimed and the Watcher (or ``send.check_pending``) finalizes it, so it
is listed under ``claimed_not_finalized``.

Threads: :func:`audit` runs on the caller's thread. It asks the ProofLedger for a
view (one mailbox turn), makes the NUT-07 requests off the ledger's thread, then
takes a second view: a proof whose status changed in between (an operation reserved,
spent or released it meanwhile) is not judged, only counted under ``changed``. So an
audit never blocks the operations and never reports their work as a difference.

It changes nothing unless ``fix`` is given, and then only what a definitive answer
of the mint justifies: a ready proof the mint says is SPENT, held by no operation, is
removed (:meth:`ProofLedger.remove_spent` checks again, in its mailbox, that it is
still ready and unheld). Nothing else is fixed. A proof the mint says is PENDING may
still come back (a melt somebody else started may fail), so it is only reported. A
stale reservation is reported, not released: an operation owns it, and only that
operation's rollback or recovery knows whether its request reached the mint; freeing
its proofs under it could spend them twice or lose the operation's outcome.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from coco_actors.actors import wait
from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.errors import CocoError
from coco_actors.mint_client import MintClient
from coco_actors.proof_ledger import LedgerView, ProofLedgerProxy
from coco_actors.records import Operation, OpState, OpType, ProofRecord, ProofStatus
from coco_actors.wire import Proof, ProofStateKind

log = logging.getLogger(__name__)

#: Upper bound for one ask of the ledger (local).
LEDGER_TIMEOUT = 30.0
#: The unit of a proof whose keyset the wallet does not know (it never should).
DEFAULT_UNIT = "sat"
#: Operation states in which held proofs may be spent or pending at the mint: a
#: request has left (or may have), and the operation settles what it did.
IN_FLIGHT = frozenset({OpState.EXECUTING, OpState.PENDING, OpState.ROLLING_BACK})


class DifferenceKind(enum.StrEnum):
    READY_SPENT = "ready_spent"            # spendable here, spent at the mint: fixable
    READY_PENDING = "ready_pending"        # spendable here, in a melt at the mint
    RESERVED_SPENT = "reserved_spent"      # held by an operation that sent nothing yet
    RESERVED_PENDING = "reserved_pending"


_READY_DIFF = {ProofStateKind.SPENT: DifferenceKind.READY_SPENT,
               ProofStateKind.PENDING: DifferenceKind.READY_PENDING}
_RESERVED_DIFF = {ProofStateKind.SPENT: DifferenceKind.RESERVED_SPENT,
                  ProofStateKind.PENDING: DifferenceKind.RESERVED_PENDING}


class ClaimState(enum.StrEnum):
    """What the mint says about the token of a pending send."""

    UNCLAIMED = "unclaimed"            # every proof unspent
    CLAIMED = "claimed"                # every proof spent: claimed, not yet finalized
    BEING_CLAIMED = "being_claimed"    # pending at the mint (a melt of the recipient)
    MIXED = "mixed"
    UNKNOWN = "unknown"                # the mint did not answer


@dataclass(frozen=True, slots=True)
class Tally:
    count: int = 0
    amount: int = 0


@dataclass(frozen=True, slots=True)
class StatusCheck:
    """The wallet's proofs of one status (``count``, ``amount``) and the mint's word on
    them (all zero when the mint did not answer)."""

    count: int = 0
    amount: int = 0
    unspent: Tally = Tally()
    spent: Tally = Tally()
    pending: Tally = Tally()


@dataclass(frozen=True, slots=True)
class Difference:
    kind: DifferenceKind
    y: str
    amount: int
    keyset_id: str
    operation_id: str | None = None     # the holder of a reserved proof


@dataclass(frozen=True, slots=True)
class Reservation:
    """Proofs one operation holds; ``kind``/``age_s`` None for a hold not committed yet."""

    operation_id: str
    kind: str | None
    state: str
    amount: int
    proofs: int
    age_s: float | None


@dataclass(frozen=True, slots=True)
class PendingOperation:
    """A pending send or melt; ``claim`` (sends only) is what the mint says of its token."""

    operation_id: str
    kind: str
    state: str
    amount: int
    age_s: float
    claim: ClaimState | None = None
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class Fixed:
    count: int = 0
    amount: int = 0
    ys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MintAudit:
    """One mint and unit. ``reachable``: None when there was nothing to ask.

    ``wallet_amount`` is ready + reserved (what the wallet counts as its own),
    ``confirmed_amount`` the part of it the mint confirmed unspent. They differ by
    the differences, and by reserved proofs an operation in flight has spent.
    ``changed``: proofs that moved while the audit ran (not judged).
    """

    mint_url: str
    unit: str
    reachable: bool | None
    error: str | None
    ready: StatusCheck
    reserved: StatusCheck
    pending_send: StatusCheck
    changed: Tally
    wallet_amount: int
    confirmed_amount: int
    difference_count: int
    difference_amount: int
    differences: tuple[Difference, ...]
    claimed_not_finalized: tuple[str, ...]
    reservations: tuple[Reservation, ...]
    pending_sends: tuple[PendingOperation, ...]
    pending_melts: tuple[PendingOperation, ...]
    fixed: Fixed = Fixed()


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The whole audit; ``at`` is the first view's time (unix ms)."""

    at: int
    fix: bool
    difference_count: int
    difference_amount: int
    fixed_count: int
    fixed_amount: int
    unreachable: tuple[str, ...]
    mints: tuple[MintAudit, ...] = field(default_factory=tuple)


# --- the audit ---------------------------------------------------------------------------


def audit(ledger: ProofLedgerProxy, client_for: Callable[[str], MintClient],
          mint_url: str | None = None, fix: bool = False) -> AuditReport:
    """Audit every mint (or ``mint_url``, known and normalized by the caller)."""
    first = wait(ledger.audit_view(mint_url), LEDGER_TIMEOUT, "ProofLedger")
    answers: dict[str, dict[str, ProofStateKind] | str] = {}
    for url in first.mints:
        ys = [r.Y for r in first.proofs if r.mint_url == url]
        ys += [y for o in first.operations if o.mint_url == url and _pending_send(o)
               for y in o.send_ys]
        answers[url] = _ask(client_for, url, ys) if ys else {}
    second = wait(ledger.audit_view(mint_url), LEDGER_TIMEOUT, "ProofLedger")
    audits = [a for url in first.mints for a in _judge(url, first, second, answers[url])]
    if fix:
        audits = _fix(ledger, audits)
    return AuditReport(
        at=first.at, fix=fix,
        difference_count=sum(a.difference_count for a in audits),
        difference_amount=sum(a.difference_amount for a in audits),
        fixed_count=sum(a.fixed.count for a in audits),
        fixed_amount=sum(a.fixed.amount for a in audits),
        unreachable=tuple(dict.fromkeys(a.mint_url for a in audits if a.reachable is False)),
        mints=tuple(audits))


def _ask(client_for: Callable[[str], MintClient], url: str, ys: Sequence[str]
         ) -> dict[str, ProofStateKind] | str:
    """The mint's state of every Y, or why it could not tell (any wallet error)."""
    try:
        states = client_for(url).check_state(list(dict.fromkeys(ys)))
    except CocoError as exc:
        log.warning("audit: %s did not answer checkstate: %s", url, exc)
        return f"{type(exc).__name__}: {exc}"
    return {s.Y.lower(): s.state for s in states}


def _pending_send(op: Operation) -> bool:
    return op.type == OpType.SEND and op.state in (OpState.PENDING, OpState.ROLLING_BACK)


def _age(at: int, op: Operation) -> float:
    return round(max(0, at - op.updated_at) / 1000, 1)


class _Acc:
    """A :class:`StatusCheck` being counted."""

    def __init__(self) -> None:
        self.count = self.amount = 0
        self.by_state: dict[ProofStateKind, list[int]] = {k: [0, 0] for k in ProofStateKind}

    def add(self, amount: int, state: ProofStateKind | None) -> None:
        self.count += 1
        self.amount += amount
        if state is not None:
            self.by_state[state][0] += 1
            self.by_state[state][1] += amount

    def done(self) -> StatusCheck:
        t = {k: Tally(*v) for k, v in self.by_state.items()}
        return StatusCheck(self.count, self.amount, t[ProofStateKind.UNSPENT],
                           t[ProofStateKind.SPENT], t[ProofStateKind.PENDING])


class _Unit:
    """Everything counted for one mint and unit."""

    def __init__(self) -> None:
        self.ready, self.reserved, self.pending_send = _Acc(), _Acc(), _Acc()
        self.changed = [0, 0]
        self.differences: list[Difference] = []
        self.claimed: list[str] = []
        self.held: dict[str, list[ProofRecord]] = {}
        self.sends: list[PendingOperation] = []
        self.melts: list[PendingOperation] = []


def _judge(url: str, first: LedgerView, second: LedgerView,
           answer: dict[str, ProofStateKind] | str) -> list[MintAudit]:
    """One :class:`MintAudit` per unit of ``url`` (a mint without proofs: its ``sat``)."""
    units = first.units.get(url, {})
    error = answer if isinstance(answer, str) else None
    states = answer if isinstance(answer, dict) else {}

    def unit_of(keyset_id: str) -> str:
        return units.get(keyset_id, DEFAULT_UNIT)

    def state_of(y: str) -> ProofStateKind | None:
        return states.get(y.lower())

    now = {r.Y: (r.status, r.operation_id) for r in second.proofs if r.mint_url == url}
    ops: dict[str, Operation] = {o.id: o for o in first.operations}
    ops_now: dict[str, OpState] = {o.id: o.state for o in second.operations}
    out: dict[str, _Unit] = {}
    for r in first.proofs:
        if r.mint_url != url:
            continue
        u = out.setdefault(unit_of(r.proof.keyset_id), _Unit())
        if now.get(r.Y) != (r.status, r.operation_id):
            u.changed[0] += 1
            u.changed[1] += r.amount
            continue
        state = state_of(r.Y)
        if r.status == ProofStatus.READY:
            u.ready.add(r.amount, state)
            kind = _READY_DIFF.get(state) if state is not None else None
        else:
            u.reserved.add(r.amount, state)
            u.held.setdefault(r.operation_id or "", []).append(r)
            holder = ops.get(r.operation_id) if r.operation_id else None
            in_flight = holder is not None and holder.state in IN_FLIGHT
            kind = None if in_flight or state is None else _RESERVED_DIFF.get(state)
        if kind is not None:
            u.differences.append(Difference(kind, r.Y, r.amount, r.proof.keyset_id,
                                            r.operation_id))
    for op in first.operations:
        if op.mint_url != url:
            continue
        if _pending_send(op):
            u = out.setdefault(unit_of(_keyset(op.send_proofs)), _Unit())
            if ops_now.get(op.id) != op.state:  # finalized or reclaimed meanwhile
                u.changed[0] += len(op.send_proofs)
                u.changed[1] += sum(p.amount for p in op.send_proofs)
                continue
            seen = [state_of(secret_to_y(p.secret)) for p in op.send_proofs]
            for p, s in zip(op.send_proofs, seen, strict=True):
                u.pending_send.add(p.amount, s)
            claim = _claim(seen, error is None)
            if claim == ClaimState.CLAIMED:
                u.claimed.append(op.id)
            u.sends.append(PendingOperation(op.id, op.type.value, op.state.value,
                                            op.amount, _age(first.at, op), claim,
                                            op.parent_id))
        elif op.type == OpType.MELT and op.state in IN_FLIGHT:
            u = out.setdefault(op.unit, _Unit())
            u.melts.append(PendingOperation(op.id, op.type.value, op.state.value, op.amount,
                                            _age(first.at, op), None, op.parent_id))
    if not out:
        out[DEFAULT_UNIT] = _Unit()
    reachable = None if not isinstance(answer, str) and not answer else error is None
    return [_freeze(url, unit, u, reachable, error, ops, first.at)
            for unit, u in sorted(out.items())]


def _keyset(proofs: Iterable[Proof]) -> str:
    return next((p.keyset_id for p in proofs), "")


def _claim(seen: Sequence[ProofStateKind | None], answered: bool) -> ClaimState:
    if not answered:
        return ClaimState.UNKNOWN
    kinds = set(seen)
    if kinds == {ProofStateKind.UNSPENT}:
        return ClaimState.UNCLAIMED
    if kinds == {ProofStateKind.SPENT}:
        return ClaimState.CLAIMED
    if kinds == {ProofStateKind.PENDING}:
        return ClaimState.BEING_CLAIMED
    return ClaimState.MIXED


def _freeze(url: str, unit: str, u: _Unit, reachable: bool | None, error: str | None,
            ops: Mapping[str, Operation], at: int) -> MintAudit:
    reservations = []
    for op_id, held in sorted(u.held.items()):
        op = ops.get(op_id)
        reservations.append(Reservation(
            op_id, op.type.value if op else None, op.state.value if op else "uncommitted",
            sum(r.amount for r in held), len(held), _age(at, op) if op else None))
    ready, reserved = u.ready.done(), u.reserved.done()
    return MintAudit(
        mint_url=url, unit=unit, reachable=reachable, error=error, ready=ready,
        reserved=reserved, pending_send=u.pending_send.done(), changed=Tally(*u.changed),
        wallet_amount=ready.amount + reserved.amount,
        confirmed_amount=ready.unspent.amount + reserved.unspent.amount,
        difference_count=len(u.differences),
        difference_amount=sum(d.amount for d in u.differences),
        differences=tuple(sorted(u.differences, key=lambda d: (d.kind, d.y))),
        claimed_not_finalized=tuple(u.claimed), reservations=tuple(reservations),
        pending_sends=tuple(u.sends), pending_melts=tuple(u.melts))


def _fix(ledger: ProofLedgerProxy, audits: list[MintAudit]) -> list[MintAudit]:
    """Remove the ready proofs the mints said are spent (if still ready and unheld)."""
    ys_of: dict[str, list[str]] = {}
    for a in audits:
        ys_of.setdefault(a.mint_url, []).extend(
            d.y for d in a.differences if d.kind == DifferenceKind.READY_SPENT)
    ys_of = {url: ys for url, ys in ys_of.items() if ys}
    if not ys_of:
        return audits
    removed = {r.Y: r for r in wait(ledger.remove_spent(ys_of), LEDGER_TIMEOUT, "ProofLedger")}
    out = []
    for a in audits:
        mine = [removed[d.y] for d in a.differences if d.y in removed]
        out.append(a if not mine else _with_fixed(a, mine))
    return out


def _with_fixed(a: MintAudit, removed: Sequence[ProofRecord]) -> MintAudit:
    return replace(a, fixed=Fixed(len(removed), sum(r.amount for r in removed),
                                  tuple(r.Y for r in removed)))
