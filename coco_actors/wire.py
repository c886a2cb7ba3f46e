"""Wire types: the NUT JSON objects exchanged with a mint and carried in tokens.

These are frozen values, separate from the records the wallet stores. Every
``from_wire`` validates what it reads and raises :class:`InvalidInputError`
naming the field, so a malformed mint answer or token never becomes a
half-initialised object.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NewType

from coco_actors.errors import InvalidInputError

KeysetId = NewType("KeysetId", str)
QuoteId = NewType("QuoteId", str)

MAX_AMOUNT = 2**64  # NUT-01 keysets go up to 2^63; amounts are unsigned 64-bit


# --- field readers -----------------------------------------------------------------


def _get(d: Mapping[str, Any], key: str, what: str) -> Any:
    if not isinstance(d, Mapping):
        raise InvalidInputError(f"{what}: expected an object, got {type(d).__name__}")
    if key not in d or d[key] is None:
        raise InvalidInputError(f"{what}: missing field '{key}'")
    return d[key]


def read_str(d: Mapping[str, Any], key: str, what: str) -> str:
    v = _get(d, key, what)
    if not isinstance(v, str):
        raise InvalidInputError(f"{what}: field '{key}' must be a string")
    return v


def read_hex(d: Mapping[str, Any], key: str, what: str, *, nbytes: int | None = None) -> str:
    v = read_str(d, key, what)
    try:
        raw = bytes.fromhex(v)
    except ValueError:
        raise InvalidInputError(f"{what}: field '{key}' is not hex") from None
    if nbytes is not None and len(raw) != nbytes:
        raise InvalidInputError(f"{what}: field '{key}' must be {nbytes} bytes, got {len(raw)}")
    return v.lower()


def read_amount(d: Mapping[str, Any], key: str, what: str, *, allow_zero: bool = False) -> int:
    v = _get(d, key, what)
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidInputError(f"{what}: field '{key}' must be an integer")
    if v < 0 or (v == 0 and not allow_zero):
        raise InvalidInputError(f"{what}: field '{key}' must be positive, got {v}")
    if v >= MAX_AMOUNT:
        raise InvalidInputError(f"{what}: field '{key}' is too large")
    return v


def _opt_str(d: Mapping[str, Any], key: str) -> str | None:
    v = d.get(key)
    return v if isinstance(v, str) else None


def split_amount(amount: int) -> list[int]:
    """The powers of two that add up to ``amount``, smallest first (NUT-00 amounts)."""
    if amount < 0:
        raise InvalidInputError(f"cannot split a negative amount ({amount})")
    return [1 << i for i in range(amount.bit_length()) if amount >> i & 1]


# --- NUT-00 / NUT-12 -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DLEQ:
    """A NUT-12 DLEQ proof. ``r`` is only present on proofs (the blinding factor)."""

    e: str
    s: str
    r: str | None = None

    def to_wire(self) -> dict[str, str]:
        d = {"e": self.e, "s": self.s}
        if self.r is not None:
            d["r"] = self.r
        return d

    @classmethod
    def from_wire(cls, d: Mapping[str, Any], what: str = "dleq") -> DLEQ:
        r = d.get("r") if isinstance(d, Mapping) else None
        return cls(
            e=read_hex(d, "e", what, nbytes=32),
            s=read_hex(d, "s", what, nbytes=32),
            r=read_hex(d, "r", what, nbytes=32) if r is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Proof:
    """An unblinded ecash note: ``C = k*Y`` for ``Y = hash_to_curve(secret)``."""

    amount: int
    keyset_id: str
    secret: str
    C: str
    dleq: DLEQ | None = None
    witness: str | None = None

    def __repr__(self) -> str:  # the secret and C are bearer value: never print them
        return f"Proof(amount={self.amount}, keyset_id={self.keyset_id})"

    def to_wire(self, *, include_dleq: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"amount": self.amount, "id": self.keyset_id,
                             "secret": self.secret, "C": self.C}
        if self.witness is not None:
            d["witness"] = self.witness
        if include_dleq and self.dleq is not None:
            d["dleq"] = self.dleq.to_wire()
        return d

    @classmethod
    def from_wire(cls, d: Mapping[str, Any], what: str = "proof") -> Proof:
        dleq = d.get("dleq") if isinstance(d, Mapping) else None
        return cls(
            amount=read_amount(d, "amount", what),
            keyset_id=read_hex(d, "id", what),
            secret=read_str(d, "secret", what),
            C=read_hex(d, "C", what, nbytes=33),
            dleq=DLEQ.from_wire(dleq, f"{what}.dleq") if dleq is not None else None,
            witness=_opt_str(d, "witness"),
        )


@dataclass(frozen=True, slots=True)
class BlindedMessage:
    """An output sent to the mint: ``B_ = Y + r*G``."""

    amount: int
    keyset_id: str
    B_: str

    def to_wire(self) -> dict[str, Any]:
        return {"amount": self.amount, "id": self.keyset_id, "B_": self.B_}

    @classmethod
    def from_wire(cls, d: Mapping[str, Any], what: str = "output") -> BlindedMessage:
        return cls(
            amount=read_amount(d, "amount", what, allow_zero=True),
            keyset_id=read_hex(d, "id", what),
            B_=read_hex(d, "B_", what, nbytes=33),
        )


@dataclass(frozen=True, slots=True)
class BlindSignature:
    """The mint's answer to a blinded message: ``C_ = k*B_``."""

    amount: int
    keyset_id: str
    C_: str
    dleq: DLEQ | None = None

    def to_wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {"amount": self.amount, "id": self.keyset_id, "C_": self.C_}
        if self.dleq is not None:
            d["dleq"] = self.dleq.to_wire()
        return d

    @classmethod
    def from_wire(cls, d: Mapping[str, Any], what: str = "signature") -> BlindSignature:
        dleq = d.get("dleq") if isinstance(d, Mapping) else None
        return cls(
            amount=read_amount(d, "amount", what, allow_zero=True),
            keyset_id=read_hex(d, "id", what),
            C_=read_hex(d, "C_", what, nbytes=33),
            dleq=DLEQ.from_wire(dleq, f"{what}.dleq") if dleq is not None else None,
        )


@dataclass(frozen=True, slots=True)
class BlindingData:
    """What the wallet must remember about one output to unblind the mint's signature.

    Wallet-side only (never sent): ``secret`` and the blinding factor ``r`` are
    secrets. ``blinded`` is what goes on the wire.
    """

    amount: int
    keyset_id: str
    secret: str
    r: str
    B_: str

    @property
    def blinded(self) -> BlindedMessage:
        return BlindedMessage(self.amount, self.keyset_id, self.B_)

    def __repr__(self) -> str:  # never print secrets
        return f"BlindingData(amount={self.amount}, keyset_id={self.keyset_id}, B_={self.B_})"


# --- NUT-01 / NUT-02 -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeysetInfo:
    """One entry of ``GET /v1/keysets`` (NUT-02)."""

    id: str
    unit: str
    active: bool
    input_fee_ppk: int = 0
    final_expiry: int | None = None

    @classmethod
    def from_wire(cls, d: Mapping[str, Any], what: str = "keyset") -> KeysetInfo:
        fee = d.get("input_fee_ppk", 0) if isinstance(d, Mapping) else 0
        if fee is None:
            fee = 0
        if isinstance(fee, bool) or not isinstance(fee, int) or fee < 0:
            raise InvalidInputError(f"{what}: field 'input_fee_ppk' must be a non-negative integer")
        active = _get(d, "active", what)
        if not isinstance(active, bool):
            raise InvalidInputError(f"{what}: field 'active' must be a boolean")
        expiry = d.get("final_expiry")
        return cls(
            id=read_hex(d, "id", what),
            unit=read_str(d, "unit", what),
            active=active,
            input_fee_ppk=fee,
            final_expiry=(expiry if isinstance(expiry, int) and not isinstance(expiry, bool)
                          else None),
        )


@dataclass(frozen=True, slots=True)
class Keyset:
    """A keyset with its public keys (``GET /v1/keys``): amount -> compressed pubkey hex."""

    id: str
    unit: str
    keys: Mapping[int, str] = field(default_factory=dict)
    active: bool = True
    input_fee_ppk: int = 0
    final_expiry: int | None = None

    def key_for(self, amount: int) -> str:
        try:
            return self.keys[amount]
        except KeyError:
            raise InvalidInputError(
                f"keyset {self.id} has no key for amount {amount}") from None


# --- NUT-04 / NUT-05 / NUT-07 / NUT-23 ----------------------------------------------


class MintQuoteState(enum.StrEnum):
    UNPAID = "UNPAID"
    PENDING = "PENDING"  # Nutshell: while a mint request for it is being processed
    PAID = "PAID"
    ISSUED = "ISSUED"


class MeltQuoteState(enum.StrEnum):
    UNPAID = "UNPAID"
    PENDING = "PENDING"
    PAID = "PAID"


class ProofStateKind(enum.StrEnum):
    UNSPENT = "UNSPENT"
    PENDING = "PENDING"
    SPENT = "SPENT"


def _enum(cls: type[enum.StrEnum], d: Mapping[str, Any], key: str, what: str) -> Any:
    v = read_str(d, key, what)
    try:
        return cls(v)
    except ValueError:
        raise InvalidInputError(f"{what}: unknown {key} '{v}'") from None


@dataclass(frozen=True, slots=True)
class MintQuote:
    """A NUT-23 bolt11 mint quote."""

    quote: str
    request: str
    amount: int
    unit: str
    state: MintQuoteState
    expiry: int | None = None

    @property
    def id(self) -> str:
        return self.quote

    @classmethod
    def from_wire(cls, d: Mapping[str, Any], *, amount: int | None = None,
                  unit: str = "sat", what: str = "mint quote") -> MintQuote:
        expiry = d.get("expiry")
        got_amount = d.get("amount")
        return cls(
            quote=read_str(d, "quote", what),
            request=read_str(d, "request", what),
            amount=got_amount if isinstance(got_amount, int) else (amount or 0),
            unit=_opt_str(d, "unit") or unit,
            state=_enum(MintQuoteState, d, "state", what),
            expiry=expiry if isinstance(expiry, int) else None,
        )


@dataclass(frozen=True, slots=True)
class MeltQuote:
    """A NUT-23 bolt11 melt quote, with NUT-08 change once paid."""

    quote: str
    amount: int
    fee_reserve: int
    state: MeltQuoteState
    unit: str = "sat"
    request: str | None = None
    expiry: int | None = None
    payment_preimage: str | None = None
    change: tuple[BlindSignature, ...] = ()

    @classmethod
    def from_wire(cls, d: Mapping[str, Any], what: str = "melt quote") -> MeltQuote:
        change = d.get("change") or []
        if not isinstance(change, list):
            raise InvalidInputError(f"{what}: field 'change' must be a list")
        expiry = d.get("expiry")
        return cls(
            quote=read_str(d, "quote", what),
            amount=read_amount(d, "amount", what),
            fee_reserve=read_amount(d, "fee_reserve", what, allow_zero=True),
            state=_enum(MeltQuoteState, d, "state", what),
            unit=_opt_str(d, "unit") or "sat",
            request=_opt_str(d, "request"),
            expiry=expiry if isinstance(expiry, int) else None,
            payment_preimage=_opt_str(d, "payment_preimage"),
            change=tuple(BlindSignature.from_wire(c, f"{what}.change[{i}]")
                         for i, c in enumerate(change)),
        )


@dataclass(frozen=True, slots=True)
class ProofState:
    """One entry of a NUT-07 checkstate answer."""

    Y: str
    state: ProofStateKind
    witness: str | None = None

    @classmethod
    def from_wire(cls, d: Mapping[str, Any], what: str = "proof state") -> ProofState:
        return cls(
            Y=read_hex(d, "Y", what, nbytes=33),
            state=_enum(ProofStateKind, d, "state", what),
            witness=_opt_str(d, "witness"),
        )
