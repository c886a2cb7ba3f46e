"""Stored records: what the wallet keeps in LMDB, separate from the wire types.

Every record is a frozen value; a transition builds a new one with
``dataclasses.replace`` and commits it. :mod:`coco_actors.codec` stores a
record as JSON keyed by these attribute names (nested proofs and outputs too),
with the schema version ``v`` that a reader checks first.
"""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, NewType

from coco_actors.codec import SCHEMA_VERSION as SCHEMA_VERSION
from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.wire import BlindingData, Proof

OperationId = NewType("OperationId", str)


def now_ms() -> int:
    return int(time.time() * 1000)


def new_operation_id() -> OperationId:
    return OperationId(uuid.uuid4().hex)


class OpType(enum.StrEnum):
    SEND = "send"
    RECEIVE = "receive"
    MINT = "mint"
    MELT = "melt"
    RESTORE = "restore"   # proofs found by a wallet restore (always completed)
    TRANSFER = "transfer"  # a melt at one mint paying a mint quote of another
    CONSOLIDATE = "consolidate"  # many proofs swapped into the fewest (issue 13)


class OpState(enum.StrEnum):
    INIT = "init"
    PREPARED = "prepared"
    EXECUTING = "executing"
    PENDING = "pending"
    COMPLETED = "completed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"

    @property
    def terminal(self) -> bool:
        return self in (OpState.COMPLETED, OpState.ROLLED_BACK)


class ProofStatus(enum.StrEnum):
    READY = "ready"          # spendable
    RESERVED = "reserved"    # held by an operation (``ProofRecord.operation_id``)


# --- proofs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProofRecord:
    """A proof the wallet holds, with where it stands."""

    proof: Proof
    mint_url: str
    Y: str
    status: ProofStatus = ProofStatus.READY
    operation_id: OperationId | None = None

    @property
    def amount(self) -> int:
        return self.proof.amount


# --- operations -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SwapBatch:
    """One request of a swap split under the mint's array cap (``max_array_length``).

    A split operation's batches take consecutive slices of its inputs (``input_ys``
    of a send, ``inputs`` of a receive) and of its ``outputs``, in order; ``sends`` of
    a batch's outputs (the first ones) are the token's.
    """

    inputs: int
    outputs: int
    sends: int = 0


@dataclass(frozen=True, slots=True)
class Operation:
    """One saga (send, receive, mint, melt or transfer) and everything needed to finish
    or undo it.

    ``outputs`` are persisted before the request that uses them leaves, so a
    crash can always be resolved with NUT-09 restore. For a send the first
    ``send_output_count`` outputs are the ones that become the token; for a
    swap-then-melt they are the melt's inputs. A melt's ``change_outputs`` are
    its NUT-08 blanks, persisted with ``executing``.

    A transfer's ``mint_url`` is its source; its legs (a melt there, a mint at
    ``to_mint_url``) are operations of their own that name it in ``parent_id``.
    Its ``amount`` is what arrives at ``to_mint_url``; ``fee_reserve``, ``fee``,
    ``input_amount`` and ``fee_paid`` are its melt leg's.

    A *receive into* is a transfer whose ``inputs`` are a token's proofs (not the
    wallet's): its melt leg melts them (``foreign_inputs``; they are held, never
    spendable, and forgotten if the melt does not happen). ``change_amount`` is what
    stays at ``mint_url``: the melt's NUT-08 change, or, when the melt failed, what the
    receive leg (``receive_id``, a swap there) got. ``input_amount`` (the token) is
    then ``received + change_amount + fee + fee_paid``.
    """

    id: OperationId
    type: OpType
    mint_url: str
    amount: int
    state: OpState
    unit: str = "sat"
    created_at: int = field(default_factory=now_ms)
    updated_at: int = field(default_factory=now_ms)
    fee: int = 0
    input_amount: int = 0
    needs_swap: bool = False
    token: str | None = None
    error: str | None = None
    input_ys: tuple[str, ...] = ()
    inputs: tuple[Proof, ...] = ()           # receive: the token's proofs
    outputs: tuple[BlindingData, ...] = ()
    send_output_count: int = 0
    send_proofs: tuple[Proof, ...] = ()      # send: the proofs that are in the token
    reclaim_outputs: tuple[BlindingData, ...] = ()
    quote_id: str | None = None
    quote_request: str | None = None         # mint: the invoice to pay; melt: the one paid
    quote_expiry: int | None = None          # mint: when the quote's invoice expires (unix s)
    quote_pubkey: str | None = None          # mint: the NUT-20 wallet key the quote is locked to
    quote_key_index: int | None = None       # mint: that key's index (its own branch)
    # melt (NUT-05/08/23)
    payment_hash: str | None = None          # the invoice's, so it is never paid twice
    fee_reserve: int = 0                     # the mint's lightning fee reserve
    change_outputs: tuple[BlindingData, ...] = ()
    swapped: bool = False                    # swap-then-melt: input_ys are the swap's proofs
    preimage: str | None = None
    change_amount: int = 0
    fee_paid: int = 0                        # the lightning fee actually paid
    # transfer (issue 17)
    to_mint_url: str | None = None           # where the value goes
    melt_id: OperationId | None = None       # the melt leg at ``mint_url``
    mint_leg_id: OperationId | None = None   # the mint leg at ``to_mint_url``
    received: int = 0                        # what the mint leg minted
    parent_id: OperationId | None = None     # a leg: the transfer it belongs to
    # receive into a mint you choose (a transfer whose ``inputs`` are a token's proofs)
    foreign_inputs: bool = False             # a melt leg melting a token's proofs
    receive_id: OperationId | None = None    # its melt failed: the receive leg at mint_url
    # a swap split under the mint's array cap (send, receive): its requests, and how
    # many of them are done (their results are in the ledger / ``send_proofs``)
    batches: tuple[SwapBatch, ...] = ()
    batches_done: int = 0
    # a send's reclaim split the same way (its inputs: ``send_proofs``, its outputs:
    # ``reclaim_outputs``)
    reclaim_batches: tuple[SwapBatch, ...] = ()
    reclaims_done: int = 0

    @property
    def send_ys(self) -> tuple[str, ...]:
        return tuple(secret_to_y(p.secret) for p in self.send_proofs)

    def moved(self, state: OpState, **changes: Any) -> Operation:
        """The next version of this record: a new state, and a fresh ``updated_at``."""
        return replace(self, state=state, updated_at=max(now_ms(), self.updated_at), **changes)

    def __repr__(self) -> str:  # tokens, secrets and outputs stay out of logs
        return (f"Operation({self.type.value} {self.id} {self.state.value} amount={self.amount}"
                f" mint={self.mint_url})")

    def public(self) -> dict[str, Any]:
        """The fields an API caller sees (no outputs, no secrets other than the token)."""
        view = {"id": self.id, "type": self.type.value, "mint_url": self.mint_url,
                "amount": self.amount, "unit": self.unit, "state": self.state.value,
                "fee": self.fee, "input_amount": self.input_amount,
                "needs_swap": self.needs_swap, "created_at": self.created_at,
                "updated_at": self.updated_at, "token": self.token, "error": self.error}
        if self.type == OpType.MELT:
            view.update(quote_id=self.quote_id, invoice=self.quote_request,
                        fee_reserve=self.fee_reserve, preimage=self.preimage,
                        change_amount=self.change_amount, fee_paid=self.fee_paid)
        elif self.type == OpType.TRANSFER:
            view.update(to_mint_url=self.to_mint_url, received=self.received,
                        fee_reserve=self.fee_reserve, fee_paid=self.fee_paid,
                        change_amount=self.change_amount,
                        melt_id=self.melt_id, mint_leg_id=self.mint_leg_id)
            if self.inputs:
                view.update(from_token=True, receive_id=self.receive_id)
        if self.parent_id is not None:
            view.update(parent_id=self.parent_id)
        return view


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """What ``coco.history.get_history()`` returns: one entry per operation, kept current
    (a transfer's legs have none: the transfer's entry stands for them)."""

    operation_id: OperationId
    type: str
    amount: int
    state: str
    mint_url: str
    unit: str
    fee: int                 # input fees paid to the mint
    created_at: int
    updated_at: int
    fee_paid: int = 0        # melt: the lightning fee actually paid
    to_mint_url: str | None = None  # transfer: where the value went
    received: int = 0        # transfer: what arrived at ``to_mint_url``

    @classmethod
    def of(cls, op: Operation) -> HistoryEntry:
        return cls(operation_id=op.id, type=op.type.value, amount=op.amount,
                   state=op.state.value, mint_url=op.mint_url, unit=op.unit, fee=op.fee,
                   created_at=op.created_at, updated_at=op.updated_at, fee_paid=op.fee_paid,
                   to_mint_url=op.to_mint_url, received=op.received)


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A caller's idempotency key and the call it named, written in the same transaction
    as the first record of that call (``target``: an operation's or a request's id).

    ``fingerprint`` is a hash of the call's kind and arguments (never the arguments
    themselves: a token is bearer value); ``kind`` says which call it was.
    """

    key: str
    fingerprint: str
    kind: str
    target: str
    created_at: int = field(default_factory=now_ms)

    def __repr__(self) -> str:
        return f"IdempotencyRecord({self.kind} -> {self.target})"


@dataclass(frozen=True, slots=True)
class MintRecord:
    """A mint the wallet trusts, with its last known info."""

    url: str
    name: str | None = None
    added_at: int = field(default_factory=now_ms)


# --- payment requests (NUT-18, issue 16) -----------------------------------------------


class RequestState(enum.StrEnum):
    OPEN = "open"
    PAID = "paid"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """A payment request this wallet issued, and what it received so far.

    ``encoded``/``encoded_b`` are its ``creqA``/``creqB`` forms, fixed at creation.
    """

    id: str
    encoded: str
    encoded_b: str
    state: RequestState
    unit: str
    mints: tuple[str, ...]
    single_use: bool
    amount: int | None = None
    description: str | None = None
    pubkey: str | None = None               # p2pk=True: the key payers must lock to
    transport_url: str | None = None        # where payers POST (None: in-band)
    created_at: int = field(default_factory=now_ms)
    received: int = 0                       # net of the receive fees
    payments: int = 0
    operation_ids: tuple[OperationId, ...] = ()

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "encoded": self.encoded, "encoded_b": self.encoded_b,
                "state": self.state.value, "amount": self.amount, "unit": self.unit,
                "mints": list(self.mints), "single_use": self.single_use,
                "description": self.description, "pubkey": self.pubkey,
                "transport_url": self.transport_url, "created_at": self.created_at,
                "received": self.received, "payments": self.payments,
                "operation_ids": list(self.operation_ids)}


class AttemptState(enum.StrEnum):
    ACCEPTED = "accepted"     # persisted before the swap
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class PaymentAttempt:
    """One payload claimed for a request, persisted before its swap.

    ``key`` is a hash of the payload's sorted proof Ys: the same payload claimed
    twice finds this record (and its answer) instead of being received twice.
    """

    key: str
    request_id: str
    mint_url: str
    unit: str
    proofs: tuple[Proof, ...]
    state: AttemptState = AttemptState.ACCEPTED
    operation_id: OperationId | None = None
    received: int = 0
    created_at: int = field(default_factory=now_ms)

    def __repr__(self) -> str:  # the proofs are bearer value
        return (f"PaymentAttempt({self.key[:12]} request={self.request_id} "
                f"{self.state.value} op={self.operation_id})")


# --- webhooks (issue 14) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookRecord:
    """A webhook added through the API (``coco.webhooks.add``), kept across restarts.

    ``secret`` is stored as given (``whsec_<base64>`` or plain): the wallet's data
    directory is 0700 and its files 0600. It never goes into a log or an answer.
    """

    id: str
    url: str
    secret: str
    created_at: int = field(default_factory=now_ms)

    def __repr__(self) -> str:  # the secret stays out of logs
        return f"WebhookRecord({self.id} {self.url.split('?', 1)[0]})"


# --- events (the outbox, issue 14) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One wallet event as stored, in the transaction of the transition that caused it.

    ``seq`` increases strictly and is never reused (also across restarts). ``data`` is
    public only: the operation's public view without its token (``operation``), and
    the event's other public fields (``request_id``, ``amount``, ``to_mint_url``);
    never a token, a proof secret or a key.
    """

    seq: int
    time: int                       # ms since the epoch, when it was committed
    event: str                      # e.g. "send:finalized", "request:paid"
    operation_id: str | None = None
    mint_url: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
