"""Stored records: what the wallet keeps in LMDB, separate from the wire types.

Every record is a frozen value; a transition builds a new one with
``dataclasses.replace`` and commits it. Records serialize to JSON with a
schema version ``v`` so a later release can migrate them.
"""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass, field, fields, replace
from typing import Any, NewType

from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.wire import BlindingData, Keyset, Proof

OperationId = NewType("OperationId", str)

SCHEMA_VERSION = 1


def now_ms() -> int:
    return int(time.time() * 1000)


def new_operation_id() -> OperationId:
    return OperationId(uuid.uuid4().hex)


class OpType(enum.StrEnum):
    SEND = "send"
    RECEIVE = "receive"
    MINT = "mint"
    RESTORE = "restore"   # proofs found by a wallet restore (always completed)


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

    def to_json(self) -> dict[str, Any]:
        return {"v": SCHEMA_VERSION, "mint": self.mint_url, "Y": self.Y,
                "status": self.status.value, "op": self.operation_id,
                "proof": proof_to_json(self.proof)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProofRecord:
        return cls(proof=proof_from_json(d["proof"]), mint_url=d["mint"], Y=d["Y"],
                   status=ProofStatus(d["status"]),
                   operation_id=OperationId(d["op"]) if d.get("op") else None)


def proof_to_json(p: Proof) -> dict[str, Any]:
    return p.to_wire(include_dleq=True)


def proof_from_json(d: dict[str, Any]) -> Proof:
    return Proof.from_wire(d)


def blinding_to_json(b: BlindingData) -> dict[str, Any]:
    return {"amount": b.amount, "id": b.keyset_id, "secret": b.secret, "r": b.r, "B_": b.B_}


def blinding_from_json(d: dict[str, Any]) -> BlindingData:
    return BlindingData(amount=d["amount"], keyset_id=d["id"], secret=d["secret"], r=d["r"],
                        B_=d["B_"])


# --- operations -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Operation:
    """One saga (send, receive or mint) and everything needed to finish or undo it.

    ``outputs`` are persisted before the request that uses them leaves, so a
    crash can always be resolved with NUT-09 restore. For a send the first
    ``send_output_count`` outputs are the ones that become the token.
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
    quote_request: str | None = None

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
        return {"id": self.id, "type": self.type.value, "mint_url": self.mint_url,
                "amount": self.amount, "unit": self.unit, "state": self.state.value,
                "fee": self.fee, "input_amount": self.input_amount,
                "needs_swap": self.needs_swap, "created_at": self.created_at,
                "updated_at": self.updated_at, "token": self.token, "error": self.error}

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"v": SCHEMA_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("inputs", "send_proofs"):
                value = [proof_to_json(p) for p in value]
            elif f.name in ("outputs", "reclaim_outputs"):
                value = [blinding_to_json(b) for b in value]
            elif f.name == "input_ys":
                value = list(value)
            elif isinstance(value, enum.Enum):
                value = value.value
            d[f.name] = value
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Operation:
        return cls(
            id=OperationId(d["id"]), type=OpType(d["type"]), mint_url=d["mint_url"],
            amount=d["amount"], state=OpState(d["state"]), unit=d.get("unit", "sat"),
            created_at=d["created_at"], updated_at=d["updated_at"], fee=d.get("fee", 0),
            input_amount=d.get("input_amount", 0), needs_swap=d.get("needs_swap", False),
            token=d.get("token"), error=d.get("error"),
            input_ys=tuple(d.get("input_ys", ())),
            inputs=tuple(proof_from_json(p) for p in d.get("inputs", ())),
            outputs=tuple(blinding_from_json(b) for b in d.get("outputs", ())),
            send_output_count=d.get("send_output_count", 0),
            send_proofs=tuple(proof_from_json(p) for p in d.get("send_proofs", ())),
            reclaim_outputs=tuple(blinding_from_json(b) for b in d.get("reclaim_outputs", ())),
            quote_id=d.get("quote_id"), quote_request=d.get("quote_request"),
        )


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """What ``coco.history.get_history()`` returns: one entry per operation, kept current."""

    operation_id: OperationId
    type: str
    amount: int
    state: str
    mint_url: str
    unit: str
    fee: int
    created_at: int
    updated_at: int

    @classmethod
    def of(cls, op: Operation) -> HistoryEntry:
        return cls(operation_id=op.id, type=op.type.value, amount=op.amount,
                   state=op.state.value, mint_url=op.mint_url, unit=op.unit, fee=op.fee,
                   created_at=op.created_at, updated_at=op.updated_at)

    def to_json(self) -> dict[str, Any]:
        return {"v": SCHEMA_VERSION, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> HistoryEntry:
        return cls(**{f.name: d[f.name] for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class MintRecord:
    """A mint the wallet trusts, with its last known info."""

    url: str
    name: str | None = None
    added_at: int = field(default_factory=now_ms)

    def to_json(self) -> dict[str, Any]:
        return {"v": SCHEMA_VERSION, "url": self.url, "name": self.name,
                "added_at": self.added_at}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MintRecord:
        return cls(url=d["url"], name=d.get("name"), added_at=d.get("added_at", 0))


def keyset_to_json(ks: Keyset) -> dict[str, Any]:
    return {"v": SCHEMA_VERSION, "id": ks.id, "unit": ks.unit, "active": ks.active,
            "input_fee_ppk": ks.input_fee_ppk, "final_expiry": ks.final_expiry,
            "keys": {str(a): k for a, k in ks.keys.items()}}


def keyset_from_json(d: dict[str, Any]) -> Keyset:
    return Keyset(id=d["id"], unit=d["unit"], active=d["active"],
                  input_fee_ppk=d["input_fee_ppk"], final_expiry=d.get("final_expiry"),
                  keys={int(a): k for a, k in d["keys"].items()})

