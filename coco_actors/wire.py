"""Wire types: the NUT JSON objects exchanged with a mint and carried in tokens.

These are frozen values, separate from the records the wallet stores. Each is
declared once: its ``Annotated`` field types (hex of a byte length, positive
amounts) are the checks :mod:`coco_actors.codec` applies when it reads one, and
``from_wire`` raises :class:`InvalidInputError` naming the field, so a malformed
mint answer or token never becomes a half-initialised object.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, NewType, Self

from msgspec import Meta

from coco_actors.codec import MAX_INT, from_wire, to_wire
from coco_actors.errors import InvalidInputError

KeysetId = NewType("KeysetId", str)
QuoteId = NewType("QuoteId", str)

MAX_AMOUNT = MAX_INT  # NUT-01 keysets go up to 2^63; amounts are unsigned 64-bit

# Two patterns, as the even-length one is the slower: it costs on every stored record read.
Hex = Annotated[str, Meta(pattern=r"\A(?:[0-9a-fA-F][0-9a-fA-F])*\Z")]
_HEX_DIGITS = r"\A[0-9a-fA-F]*\Z"
Hex32 = Annotated[str, Meta(min_length=64, max_length=64, pattern=_HEX_DIGITS)]  # scalars
Hex33 = Annotated[str, Meta(min_length=66, max_length=66, pattern=_HEX_DIGITS)]  # points
Amount = Annotated[int, Meta(ge=1)]  # and below 2^64, as is every integer the codec reads
AmountOrZero = Annotated[int, Meta(ge=0)]


def split_amount(amount: int) -> list[int]:
    """The powers of two that add up to ``amount``, smallest first (NUT-00 amounts)."""
    if amount < 0:
        raise InvalidInputError(f"cannot split a negative amount ({amount})")
    return [1 << i for i in range(amount.bit_length()) if amount >> i & 1]


class Wire:
    """NUT JSON in and out for a wire dataclass, through :mod:`coco_actors.codec`."""

    __slots__ = ()
    WHAT: ClassVar[str] = "object"  # names the object in error messages

    @classmethod
    def from_wire(cls, data: Any, what: str | None = None) -> Self:
        return from_wire(cls, data, what or cls.WHAT)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = to_wire(self)
        return wire


# --- NUT-00 / NUT-12 -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DLEQ(Wire):
    """A NUT-12 DLEQ proof. ``r`` is only present on proofs (the blinding factor)."""

    WHAT = "dleq"

    e: Hex32
    s: Hex32
    r: Hex32 | None = None


@dataclass(frozen=True, slots=True)
class Proof(Wire):
    """An unblinded ecash note: ``C = k*Y`` for ``Y = hash_to_curve(secret)``."""

    WHAT = "proof"

    amount: Amount
    keyset_id: Hex
    secret: str
    C: Hex33
    dleq: DLEQ | None = None
    witness: str | None = None

    def __repr__(self) -> str:  # the secret and C are bearer value: never print them
        return f"Proof(amount={self.amount}, keyset_id={self.keyset_id})"

    def to_wire(self, *, include_dleq: bool = False) -> dict[str, Any]:
        wire: dict[str, Any] = to_wire(self)
        if not include_dleq:
            wire.pop("dleq", None)
        return wire


@dataclass(frozen=True, slots=True)
class BlindedMessage(Wire):
    """An output sent to the mint: ``B_ = Y + r*G``."""

    WHAT = "output"

    amount: AmountOrZero
    keyset_id: Hex
    B_: Hex33


@dataclass(frozen=True, slots=True)
class BlindSignature(Wire):
    """The mint's answer to a blinded message: ``C_ = k*B_``."""

    WHAT = "signature"

    amount: AmountOrZero
    keyset_id: Hex
    C_: Hex33
    dleq: DLEQ | None = None


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
class KeysetInfo(Wire):
    """One entry of ``GET /v1/keysets`` (NUT-02)."""

    WHAT = "keyset"

    id: Hex
    unit: str
    active: bool
    input_fee_ppk: AmountOrZero = 0
    final_expiry: int | None = None


@dataclass(frozen=True, slots=True)
class Keyset(Wire):
    """A keyset with its public keys (``GET /v1/keys``): amount -> compressed pubkey hex.

    ``from_wire`` checks the shape only; :func:`coco_actors.crypto.keysets.validate_keys`
    checks the keys and :func:`~coco_actors.crypto.keysets.verify_keyset_id` the id.
    """

    WHAT = "keyset"

    id: Hex
    unit: str
    keys: Mapping[int, str] = field(default_factory=dict)
    active: bool = True
    input_fee_ppk: AmountOrZero = 0
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


@dataclass(frozen=True, slots=True)
class MintQuote(Wire):
    """A NUT-23 bolt11 mint quote; ``pubkey`` is the NUT-20 key it is locked to, if any."""

    WHAT = "mint quote"

    quote: str
    request: str
    amount: AmountOrZero
    unit: str
    state: MintQuoteState
    expiry: int | None = None
    pubkey: Hex33 | None = None

    @property
    def id(self) -> str:
        return self.quote

    @classmethod
    def from_wire(cls, data: Any, what: str | None = None, *, amount: int | None = None,
                  unit: str = "sat") -> Self:
        """Mints that omit ``amount`` or ``unit`` (older NUT-23) get the requested ones.

        An empty ``pubkey`` means none: Nutshell 0.21 answers a status request for an
        unlocked quote with ``"pubkey": ""``.
        """
        if isinstance(data, Mapping):
            data = {"amount": amount or 0, "unit": unit,
                    **{k: v for k, v in data.items()
                       if v is not None and not (k == "pubkey" and v == "")}}
        return from_wire(cls, data, what or cls.WHAT)


@dataclass(frozen=True, slots=True)
class MeltQuote(Wire):
    """A NUT-23 bolt11 melt quote, with NUT-08 change once paid."""

    WHAT = "melt quote"

    quote: str
    amount: Amount
    fee_reserve: AmountOrZero
    state: MeltQuoteState
    unit: str = "sat"
    request: str | None = None
    expiry: int | None = None
    payment_preimage: str | None = None
    change: tuple[BlindSignature, ...] = ()


@dataclass(frozen=True, slots=True)
class ProofState(Wire):
    """One entry of a NUT-07 checkstate answer."""

    WHAT = "proof state"

    Y: Hex33
    state: ProofStateKind
    witness: str | None = None
