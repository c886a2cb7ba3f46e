"""BOLT-11 invoices: just enough decoding for a wallet that asks a mint to pay them.

Pure functions, no IO, no clock: the caller passes ``now``. The wallet needs the amount
(to select proofs and to refuse amountless invoices), the payment hash (to refuse paying
one invoice twice), the network and the expiry (Nutshell quotes expired invoices, so the
wallet checks them itself). The signature is not verified: the wallet trusts the mint to
pay the node the invoice names, and a forged invoice pays nobody the wallet cares about.

Written here rather than taken from the ``bolt11`` package: that package needs
``bitstring<5`` (it fails at import with bitstring 5), ``click`` and ``base58``, and
decoding is a bech32 checksum plus a walk over tagged fields. Tests cross-check this
decoder against the package on invoices it encodes.

Every malformed input raises :class:`~coco_actors.errors.InvoiceError`; messages name
what is wrong and never repeat the invoice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from coco_actors.errors import InvoiceError

__all__ = ["DEFAULT_EXPIRY", "MAX_LENGTH", "NETWORKS", "Invoice", "decode"]

#: Seconds an invoice is valid when it carries no ``x`` field (BOLT-11).
DEFAULT_EXPIRY = 3600

#: Longest invoice accepted: the capacity of the largest QR code, far above real invoices.
MAX_LENGTH = 7089

#: Currency prefixes (BOLT-11 and SLIP-0173): mainnet, testnet, signet, regtest, simnet.
NETWORKS = frozenset({"bc", "tb", "tbs", "bcrt", "sb"})

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_VALUE = {c: i for i, c in enumerate(_CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_CHECKSUM_GROUPS = 6
_TIMESTAMP_GROUPS = 7
_SIGNATURE_GROUPS = 104  # 64-byte signature + recovery id, 520 bits
_BOLT12_PREFIXES = {"lno": "offer", "lni": "invoice", "lnr": "invoice request"}
_HRP = re.compile(r"ln([a-z]+)(?:([0-9]+)([munp]?))?")
#: msat per unit of amount, by multiplier; ``p`` (0.1 msat) is handled apart.
_MSAT_PER = {"": 100_000_000_000, "m": 100_000_000, "u": 100_000, "n": 100}
_MAX_MSAT = 21_000_000 * 100_000_000_000  # every bitcoin there will ever be
_MAX_INT_GROUPS = 12  # numeric fields (expiry): at most 60 bits

# tagged field types (the 5-bit value of the tag letter)
_TAG_PAYMENT_HASH = _VALUE["p"]
_TAG_DESCRIPTION = _VALUE["d"]
_TAG_DESCRIPTION_HASH = _VALUE["h"]
_TAG_EXPIRY = _VALUE["x"]
_HASH_GROUPS = 52  # 256 bits and 4 bits of padding


@dataclass(frozen=True, slots=True)
class Invoice:
    """A decoded BOLT-11 invoice. ``amount_msat`` is ``None`` for an amountless invoice."""

    request: str = field(repr=False)  # normalised: lowercase, without ``lightning:``
    network: str
    amount_msat: int | None
    timestamp: int  # seconds since the epoch, when the invoice was made
    expiry: int  # seconds after ``timestamp``
    payment_hash: str  # 64 hex characters
    description: str | None = None
    description_hash: str | None = None

    @property
    def amount_sat(self) -> int | None:
        """The amount in whole sats, rounded up, as a sat mint quotes it (Nutshell does)."""
        if self.amount_msat is None:
            return None
        return -(-self.amount_msat // 1000)

    @property
    def expires_at(self) -> int:
        return self.timestamp + self.expiry

    def is_expired(self, now: float) -> bool:
        """True from ``timestamp + expiry`` on (``now`` in seconds since the epoch)."""
        return now >= self.expires_at


def decode(invoice: object) -> Invoice:
    """Decode a BOLT-11 invoice (``lnbc…``, any case, ``lightning:`` prefix allowed)."""
    if not isinstance(invoice, str):
        raise InvoiceError(f"invoice must be a string, not {type(invoice).__name__}")
    text = invoice.strip()
    if text[:10].lower() == "lightning:":
        text = text[10:]
    if len(text) > MAX_LENGTH:
        raise InvoiceError(f"invoice is {len(text)} characters long, more than {MAX_LENGTH}")
    if not text:
        raise InvoiceError("invoice is empty")
    if text != text.lower() and text != text.upper():
        raise InvoiceError("invoice mixes upper and lower case")
    text = text.lower()
    if not text.isascii():
        raise InvoiceError("invoice has characters outside ASCII")
    hrp, data = _bech32_decode(text)
    network, amount_msat = _parse_hrp(hrp)
    body = data[:-_SIGNATURE_GROUPS]
    timestamp = _int(body[:_TIMESTAMP_GROUPS])
    fields = _tagged_fields(body[_TIMESTAMP_GROUPS:])

    payment_hash = _hash_field(fields, _TAG_PAYMENT_HASH)
    if payment_hash is None:
        raise InvoiceError("invoice has no payment hash")
    expiry = DEFAULT_EXPIRY
    if _TAG_EXPIRY in fields:
        expiry_groups = fields[_TAG_EXPIRY][0]
        if len(expiry_groups) > _MAX_INT_GROUPS:
            raise InvoiceError(f"invoice expiry field is too long ({len(expiry_groups)} groups)")
        expiry = _int(expiry_groups)
    description = None
    if _TAG_DESCRIPTION in fields:
        description = _bytes(fields[_TAG_DESCRIPTION][0]).decode("utf-8", "replace")
    return Invoice(
        request=text,
        network=network,
        amount_msat=amount_msat,
        timestamp=timestamp,
        expiry=expiry,
        payment_hash=payment_hash,
        description=description,
        description_hash=_hash_field(fields, _TAG_DESCRIPTION_HASH),
    )


# --- bech32 --------------------------------------------------------------------------


BECH32_CHARSET = _CHARSET


def bech32_polymod(values: Sequence[int]) -> int:
    """The BIP-173 checksum polynomial over 5-bit values (1 for a valid string)."""
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for i, generator in enumerate(_GENERATOR):
            if top >> i & 1:
                check ^= generator
    return check


def bech32_hrp_expand(hrp: str) -> list[int]:
    """The prefix as the checksum sees it (BIP-173)."""
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _bech32_decode(text: str) -> tuple[str, list[int]]:
    """Split and checksum-check a lowercase bech32 string (no 90-character limit).

    The prefix is checked first: "not a lightning invoice" helps more than "bad checksum".
    """
    sep = text.rfind("1")
    if sep < 1:
        raise InvoiceError("invoice is not bech32: no separator '1' after a prefix")
    hrp, rest = text[:sep], text[sep + 1 :]
    if not hrp.startswith("ln"):
        raise InvoiceError(f"not a lightning invoice: prefix {_clip(hrp)!r} does not start 'ln'")
    if hrp in _BOLT12_PREFIXES:
        raise InvoiceError(f"a BOLT-12 {_BOLT12_PREFIXES[hrp]} is not a BOLT-11 invoice")
    _parse_hrp(hrp)
    bad = next((c for c in rest if c not in _VALUE), None)
    if bad is not None:
        raise InvoiceError(f"invoice is not bech32: character {bad!r} after the separator")
    if len(rest) < _TIMESTAMP_GROUPS + _SIGNATURE_GROUPS + _CHECKSUM_GROUPS:
        raise InvoiceError(f"invoice is too short ({len(text)} characters)")
    data = [_VALUE[c] for c in rest]
    if bech32_polymod(bech32_hrp_expand(hrp) + data) != 1:
        raise InvoiceError("invoice checksum does not match (mistyped or truncated?)")
    return hrp, data[:-_CHECKSUM_GROUPS]


# --- human-readable part ---------------------------------------------------------------


def _parse_hrp(hrp: str) -> tuple[str, int | None]:
    match = _HRP.fullmatch(hrp)
    if match is None:
        raise InvoiceError(f"invoice prefix {_clip(hrp)!r} is not ln + network + amount")
    network, digits, multiplier = match.groups()
    if network not in NETWORKS:
        known = ", ".join(sorted(NETWORKS))
        raise InvoiceError(f"unknown network {_clip(network)!r} in invoice (known: {known})")
    if digits is None:
        return network, None
    if len(digits) > 25:
        raise InvoiceError("invoice amount is absurdly large")
    if digits[0] == "0":
        raise InvoiceError("invoice amount is zero or has a leading zero")
    if multiplier == "p":
        if digits[-1] != "0":
            raise InvoiceError("invoice amount in pico-bitcoin is not a whole millisatoshi")
        msat = int(digits) // 10
    else:
        msat = int(digits) * _MSAT_PER[multiplier]
    if msat > _MAX_MSAT:
        raise InvoiceError("invoice amount is more than 21 million bitcoin")
    return network, msat


# --- data part -------------------------------------------------------------------------


def _tagged_fields(groups: list[int]) -> dict[int, list[list[int]]]:
    """Every field's data by tag, in order; a field that runs past the data is an error."""
    fields: dict[int, list[list[int]]] = {}
    pos = 0
    while pos < len(groups):
        if pos + 3 > len(groups):
            raise InvoiceError("invoice ends inside a tagged field header")
        tag, length = groups[pos], groups[pos + 1] << 5 | groups[pos + 2]
        start, pos = pos + 3, pos + 3 + length
        if pos > len(groups):
            raise InvoiceError(f"invoice tagged field {_CHARSET[tag]!r} runs past the data")
        fields.setdefault(tag, []).append(groups[start:pos])
    return fields


def _hash_field(fields: dict[int, list[list[int]]], tag: int) -> str | None:
    """The first 256-bit field of ``tag`` as hex; BOLT-11 says to skip wrong lengths."""
    for groups in fields.get(tag, ()):
        if len(groups) == _HASH_GROUPS:
            return _bytes(groups)[:32].hex()
    return None


def _int(groups: list[int]) -> int:
    value = 0
    for group in groups:
        value = value << 5 | group
    return value


def _bytes(groups: list[int]) -> bytes:
    """5-bit groups to bytes, dropping the incomplete last byte (the padding)."""
    bits = _int(groups)
    nbits = 5 * len(groups)
    return (bits >> (nbits % 8)).to_bytes(nbits // 8, "big")


def _clip(text: str, limit: int = 16) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
