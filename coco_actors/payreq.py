"""Payment requests: the NUT-18 ``creqA`` and NUT-26 ``creqB`` codecs and the payload.

A request is text a payer scans, and a payload is a body a stranger POSTs, so both
decoders are where untrusted input enters: every way either can be malformed is one
:class:`~coco_actors.errors.PaymentRequestError` (an ``InvalidInputError``) naming the
field, never a half-built value and never a proof secret.

- ``creqA``: ``"creqA"`` + urlsafe base64 (padded; unpadded and the standard alphabet
  are read too) of the CBOR map. Keys are written in the order ``t i a u m d s nut10``
  and a transport without tags carries ``g: undefined``: that reproduces the NUT-18
  vectors byte for byte.
- ``creqB``: bech32m (no length limit) of a TLV sequence, written uppercase. A nostr
  transport stores the raw 32-byte key; its relays become ``r`` tags after the
  transport's own tags, and decoding gives an ``nprofile`` when there are relays, an
  ``npub`` otherwise (NIP-19). Unknown top-level tags are skipped; transports of an
  unknown kind are skipped too (they cannot be used), NUT-10 kinds other than P2PK
  and HTLC are refused.

Pure functions without IO, callable from any thread.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import cbor2

from coco_actors.bolt11 import BECH32_CHARSET, bech32_hrp_expand, bech32_polymod
from coco_actors.codec import from_wire, from_wire_list
from coco_actors.errors import InvalidInputError, PaymentRequestError
from coco_actors.wire import MAX_AMOUNT, Proof

__all__ = [
    "HTTP_POST",
    "NOSTR",
    "Nut10Option",
    "PaymentPayload",
    "PaymentRequest",
    "PaymentRequestError",
    "Transport",
    "decode_payload",
    "decode_request",
    "encode_creq_a",
    "encode_creq_b",
    "encode_payload",
]

PREFIX_A: Final = "creqA"
HRP_B: Final = "creqb"
HTTP_POST: Final = "post"  # NUT-18 transport type names
NOSTR: Final = "nostr"

#: Longest request text accepted: far above any honest request, and a bound on the
#: work a hostile one can cause (a CBOR length field cannot make us read past it).
MAX_REQUEST_CHARS: Final = 16_384
#: Largest payload body accepted (bytes of JSON).
MAX_PAYLOAD_BYTES: Final = 1_048_576
MAX_PAYLOAD_PROOFS: Final = 1_000
_MAX_CBOR_DEPTH: Final = 8

Tags = tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class Transport:
    """Where a payer sends the payload: ``type`` ``post`` (an URL) or ``nostr``."""

    type: str
    target: str
    tags: Tags = ()


@dataclass(frozen=True, slots=True)
class Nut10Option:
    """The NUT-10 lock a payee asks for: ``kind`` ``P2PK`` with ``data`` its key."""

    kind: str
    data: str
    tags: Tags = ()


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """A NUT-18 payment request (JSON keys ``i a u s m d t nut10``).

    ``mints`` empty means any mint; ``transports`` empty means in-band.
    """

    id: str | None = None
    amount: int | None = None
    unit: str | None = None
    single_use: bool | None = None
    mints: tuple[str, ...] = ()
    description: str | None = None
    transports: tuple[Transport, ...] = ()
    nut10: Nut10Option | None = None

    @property
    def post_url(self) -> str | None:
        """The first HTTP POST transport's URL (transports are sorted by preference)."""
        return next((t.target for t in self.transports if t.type == HTTP_POST), None)

    @property
    def p2pk_pubkey(self) -> str | None:
        """The key a ``P2PK`` ``nut10`` asks the payer to lock to, if any."""
        if self.nut10 is not None and self.nut10.kind == "P2PK":
            return self.nut10.data
        return None

    def to_json(self) -> dict[str, Any]:
        """The NUT-18 JSON object, absent fields omitted."""
        out: dict[str, Any] = {}
        if self.id is not None:
            out["i"] = self.id
        if self.amount is not None:
            out["a"] = self.amount
        if self.unit is not None:
            out["u"] = self.unit
        if self.single_use is not None:
            out["s"] = self.single_use
        if self.mints:
            out["m"] = list(self.mints)
        if self.description is not None:
            out["d"] = self.description
        if self.transports:
            out["t"] = [_transport_json(t) for t in self.transports]
        if self.nut10 is not None:
            out["nut10"] = {"k": self.nut10.kind, "d": self.nut10.data,
                            **({"t": [list(t) for t in self.nut10.tags]}
                               if self.nut10.tags else {})}
        return out

    @classmethod
    def from_json(cls, obj: Any) -> PaymentRequest:
        """Read the NUT-18 JSON object (or the decoded CBOR map); typed error if malformed."""
        return _request_from_map(obj, "payment request")


def _transport_json(t: Transport) -> dict[str, Any]:
    out: dict[str, Any] = {"t": t.type, "a": t.target}
    if t.tags:
        out["g"] = [list(tag) for tag in t.tags]
    return out


# --- creqA (NUT-18) ------------------------------------------------------------------


def encode_creq_a(req: PaymentRequest) -> str:
    """``"creqA"`` + padded urlsafe base64 of the CBOR map."""
    _check_request(req)
    obj: dict[str, Any] = {}
    if req.transports:
        obj["t"] = [{"t": t.type, "a": t.target,
                     "g": [list(g) for g in t.tags] if t.tags else cbor2.undefined}
                    for t in req.transports]
    plain = req.to_json()
    for key in ("i", "a", "u", "m", "d", "s", "nut10"):  # the vectors' order
        if key in plain:
            obj[key] = plain[key]
    return PREFIX_A + base64.urlsafe_b64encode(cbor2.dumps(obj)).decode("ascii")


def _decode_a(text: str) -> PaymentRequest:
    raw = _b64decode(text[len(PREFIX_A):])
    fp = io.BytesIO(raw)
    try:
        obj = cbor2.CBORDecoder(fp, max_depth=_MAX_CBOR_DEPTH,
                                allow_duplicate_keys=False).decode()
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError,
            MemoryError) as e:
        raise PaymentRequestError(f"creqA request is not valid CBOR: {_clip(str(e))}") from None
    if fp.tell() != len(raw):
        raise PaymentRequestError(f"creqA request has {len(raw) - fp.tell()} trailing bytes")
    return _request_from_map(obj, "creqA request")


_BASE64_RE: Final = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


def _b64decode(payload: str) -> bytes:
    if not payload:
        raise PaymentRequestError("creqA request has no content after its prefix")
    if not _BASE64_RE.fullmatch(payload):
        raise PaymentRequestError("creqA request is not valid base64")
    body = payload.rstrip("=")
    if len(body) % 4 == 1:
        raise PaymentRequestError("creqA request is not valid base64: truncated")
    body = body.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise PaymentRequestError("creqA request is not valid base64") from None


# --- the map, and the checks both encodings share ------------------------------------


def _request_from_map(obj: Any, what: str) -> PaymentRequest:
    if not isinstance(obj, Mapping):
        raise PaymentRequestError(f"{what} is not a map")
    amount = obj.get("a")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        raise PaymentRequestError(f"{what}: field 'a' (amount) is not an integer")
    single_use = obj.get("s")
    if single_use is not None and not isinstance(single_use, bool):
        raise PaymentRequestError(f"{what}: field 's' (single use) is not a boolean")
    mints = _opt(obj, "m")
    if mints is not None and not isinstance(mints, list):
        raise PaymentRequestError(f"{what}: field 'm' (mints) is not a list")
    transports = _opt(obj, "t")
    if transports is not None and not isinstance(transports, list):
        raise PaymentRequestError(f"{what}: field 't' (transports) is not a list")
    nut10 = _opt(obj, "nut10")
    req = PaymentRequest(
        id=_opt_str(obj, "i", what),
        amount=amount,
        unit=_opt_str(obj, "u", what),
        single_use=single_use,
        mints=tuple(_str(m, f"{what}: m[{i}]") for i, m in enumerate(mints or ())),
        description=_opt_str(obj, "d", what),
        transports=tuple(_transport_from(t, f"{what}: t[{i}]")
                         for i, t in enumerate(transports or ())),
        nut10=None if nut10 is None else _nut10_from(nut10, f"{what}: nut10"),
    )
    _check_request(req, what)
    return req


def _transport_from(obj: Any, what: str) -> Transport:
    if not isinstance(obj, Mapping):
        raise PaymentRequestError(f"{what} is not a map")
    return Transport(type=_str(obj.get("t"), f"{what}.t"), target=_str(obj.get("a"), f"{what}.a"),
                     tags=_tags(_opt(obj, "g"), f"{what}.g"))


def _nut10_from(obj: Any, what: str) -> Nut10Option:
    if not isinstance(obj, Mapping):
        raise PaymentRequestError(f"{what} is not a map")
    return Nut10Option(kind=_str(obj.get("k"), f"{what}.k"), data=_str(obj.get("d"), f"{what}.d"),
                       tags=_tags(_opt(obj, "t"), f"{what}.t"))


def _opt(obj: Mapping[Any, Any], key: str) -> Any:
    """The value under ``key``; CBOR ``undefined`` and ``null`` read as absent."""
    value = obj.get(key)
    return None if value is cbor2.undefined else value


def _opt_str(obj: Mapping[Any, Any], key: str, what: str) -> str | None:
    value = _opt(obj, key)
    return None if value is None else _str(value, f"{what}: field '{key}'")


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise PaymentRequestError(f"{what} is not a string")
    return value


def _tags(value: Any, what: str) -> Tags:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise PaymentRequestError(f"{what} (tags) is not a list")
    out = []
    for i, tag in enumerate(value):
        if not isinstance(tag, list) or not tag:
            raise PaymentRequestError(f"{what}[{i}] is not a non-empty list of strings")
        out.append(tuple(_str(v, f"{what}[{i}]") for v in tag))
    return tuple(out)


def _check_request(req: PaymentRequest, what: str = "payment request") -> None:
    if req.amount is not None and not 0 < req.amount < MAX_AMOUNT:
        raise PaymentRequestError(f"{what}: amount must be a positive 64-bit integer")


# --- creqB (NUT-26) ------------------------------------------------------------------

_CHARSET: Final = BECH32_CHARSET
_VALUE: Final = {c: i for i, c in enumerate(_CHARSET)}
_BECH32: Final = 1
_BECH32M: Final = 0x2BC830A3

_T_ID, _T_AMOUNT, _T_UNIT, _T_SINGLE, _T_MINT, _T_DESC, _T_TRANSPORT, _T_NUT10 = range(1, 9)
_S_KIND, _S_TARGET, _S_TAG = 1, 2, 3
_TRANSPORT_KINDS: Final = {NOSTR: 0, HTTP_POST: 1}
_NUT10_KINDS: Final = {"P2PK": 0, "HTLC": 1}


def encode_creq_b(req: PaymentRequest) -> str:
    """``CREQB1…``: bech32m of the TLV fields, uppercase (QR alphanumeric mode)."""
    _check_request(req)
    out = bytearray()
    if req.id is not None:
        out += _tlv(_T_ID, req.id.encode())
    if req.amount is not None:
        out += _tlv(_T_AMOUNT, req.amount.to_bytes(8, "big"))
    if req.unit is not None:
        out += _tlv(_T_UNIT, b"\x00" if req.unit == "sat" else req.unit.encode())
    if req.single_use is not None:
        out += _tlv(_T_SINGLE, b"\x01" if req.single_use else b"\x00")
    for mint in req.mints:
        out += _tlv(_T_MINT, mint.encode())
    if req.description is not None:
        out += _tlv(_T_DESC, req.description.encode())
    for t in req.transports:
        out += _tlv(_T_TRANSPORT, _transport_tlv(t))
    if req.nut10 is not None:
        kind = _NUT10_KINDS.get(req.nut10.kind)
        if kind is None:
            raise PaymentRequestError(f"creqB cannot encode NUT-10 kind {_clip(req.nut10.kind)!r}")
        body = _tlv(_S_KIND, bytes([kind])) + _tlv(_S_TARGET, req.nut10.data.encode())
        for tag in req.nut10.tags:
            body += _tlv(_S_TAG, _tag_tuple(tag))
        out += _tlv(_T_NUT10, body)
    return _bech32_encode(HRP_B, bytes(out), _BECH32M).upper()


def _transport_tlv(t: Transport) -> bytes:
    kind = _TRANSPORT_KINDS.get(t.type)
    if kind is None:
        raise PaymentRequestError(f"creqB cannot encode transport type {_clip(t.type)!r}")
    tags = list(t.tags)
    if kind == 0:
        pubkey, relays = _nip19_decode(t.target)
        target = pubkey
        tags += [("r", relay) for relay in relays]
    else:
        target = t.target.encode()
    body = _tlv(_S_KIND, bytes([kind])) + _tlv(_S_TARGET, target)
    for tag in tags:
        body += _tlv(_S_TAG, _tag_tuple(tag))
    return body


def _tlv(tag: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise PaymentRequestError("creqB field is longer than 65535 bytes")
    return bytes([tag]) + len(value).to_bytes(2, "big") + value


def _tag_tuple(tag: Sequence[str]) -> bytes:
    out = bytearray()
    for part in tag:
        raw = part.encode()
        if len(raw) > 0xFF:
            raise PaymentRequestError("creqB tag value is longer than 255 bytes")
        out += bytes([len(raw)]) + raw
    return bytes(out)


def _decode_b(text: str) -> PaymentRequest:
    data = _bech32_decode(text, HRP_B, _BECH32M, "creqB request")
    fields: dict[int, list[bytes]] = {}
    for tag, value in _read_tlv(data, "creqB request"):
        fields.setdefault(tag, []).append(value)
    for tag in (_T_ID, _T_AMOUNT, _T_UNIT, _T_SINGLE, _T_DESC, _T_NUT10):
        if len(fields.get(tag, ())) > 1:
            raise PaymentRequestError(f"creqB request repeats field {tag}")

    def one(tag: int) -> bytes | None:
        values = fields.get(tag)
        return values[0] if values else None

    amount_raw, unit_raw, single_raw, nut10_raw = (one(_T_AMOUNT), one(_T_UNIT),
                                                   one(_T_SINGLE), one(_T_NUT10))
    if amount_raw is not None and len(amount_raw) != 8:
        raise PaymentRequestError("creqB request: amount is not 8 bytes")
    if single_raw is not None and single_raw not in (b"\x00", b"\x01"):
        raise PaymentRequestError("creqB request: single use is neither 0 nor 1")
    transports = [_transport_from_tlv(v, i) for i, v in enumerate(fields.get(_T_TRANSPORT, ()))]
    id_raw, desc_raw = one(_T_ID), one(_T_DESC)
    req = PaymentRequest(
        id=None if id_raw is None else _utf8(id_raw, "id"),
        amount=None if amount_raw is None else int.from_bytes(amount_raw, "big"),
        unit=(None if unit_raw is None else "sat" if unit_raw == b"\x00"
              else _utf8(unit_raw, "unit")),
        single_use=None if single_raw is None else single_raw == b"\x01",
        mints=tuple(_utf8(m, "mint") for m in fields.get(_T_MINT, ())),
        description=None if desc_raw is None else _utf8(desc_raw, "description"),
        transports=tuple(t for t in transports if t is not None),
        nut10=None if nut10_raw is None else _nut10_from_tlv(nut10_raw),
    )
    _check_request(req, "creqB request")
    return req


def _transport_from_tlv(raw: bytes, index: int) -> Transport | None:
    what = f"creqB transport {index}"
    kind, target, tags = _sub_tlv(raw, what)
    if kind == 1:
        return Transport(type=HTTP_POST, target=_utf8(target, f"transport {index} target"),
                         tags=tags)
    if kind == 0:
        if len(target) != 32:
            raise PaymentRequestError(f"{what}: nostr key is not 32 bytes")
        relays = [t[1] for t in tags if t[0] == "r" and len(t) == 2]
        rest = tuple(t for t in tags if not (t[0] == "r" and len(t) == 2))
        return Transport(type=NOSTR, target=_nip19_encode(target, relays), tags=rest)
    return None  # a kind this release does not know: unusable, skipped


def _nut10_from_tlv(raw: bytes) -> Nut10Option:
    kind, data, tags = _sub_tlv(raw, "creqB nut10")
    name = next((k for k, v in _NUT10_KINDS.items() if v == kind), None)
    if name is None:
        raise PaymentRequestError(f"creqB nut10: unknown kind {kind}")
    return Nut10Option(kind=name, data=_utf8(data, "nut10 data"), tags=tags)


def _sub_tlv(raw: bytes, what: str) -> tuple[int, bytes, Tags]:
    kind: int | None = None
    target: bytes | None = None
    tags: list[tuple[str, ...]] = []
    for tag, value in _read_tlv(raw, what):
        if tag == _S_KIND:
            if kind is not None or len(value) != 1:
                raise PaymentRequestError(f"{what}: kind is repeated or not one byte")
            kind = value[0]
        elif tag == _S_TARGET:
            if target is not None:
                raise PaymentRequestError(f"{what}: target is repeated")
            target = value
        elif tag == _S_TAG:
            tags.append(_read_tag_tuple(value, what))
    if kind is None or target is None:
        raise PaymentRequestError(f"{what}: kind or target missing")
    return kind, target, tuple(tags)


def _read_tlv(raw: bytes, what: str) -> list[tuple[int, bytes]]:
    out = []
    i = 0
    while i < len(raw):
        if i + 3 > len(raw):
            raise PaymentRequestError(f"{what}: truncated TLV header")
        length = int.from_bytes(raw[i + 1:i + 3], "big")
        if i + 3 + length > len(raw):
            raise PaymentRequestError(f"{what}: TLV length {length} runs past the end")
        out.append((raw[i], raw[i + 3:i + 3 + length]))
        i += 3 + length
    return out


def _read_tag_tuple(raw: bytes, what: str) -> tuple[str, ...]:
    parts = []
    i = 0
    while i < len(raw):
        length = raw[i]
        if i + 1 + length > len(raw):
            raise PaymentRequestError(f"{what}: tag tuple runs past the end")
        parts.append(_utf8(raw[i + 1:i + 1 + length], "tag"))
        i += 1 + length
    if not parts:
        raise PaymentRequestError(f"{what}: empty tag tuple")
    return tuple(parts)


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PaymentRequestError(f"creqB request: {what} is not UTF-8") from None


# --- bech32 / bech32m, NIP-19 -----------------------------------------------------------


def _convert_bits(data: Sequence[int], from_bits: int, to_bits: int, pad: bool,
                  what: str) -> list[int]:
    acc = bits = 0
    out = []
    mask = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits | value) & 0xFFFFFFFF
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append(acc >> bits & mask)
    if pad:
        if bits:
            out.append(acc << (to_bits - bits) & mask)
    elif bits >= from_bits or acc << (to_bits - bits) & mask:
        raise PaymentRequestError(f"{what}: bech32 data has non-zero padding")
    return out


def _bech32_encode(hrp: str, data: bytes, const: int) -> str:
    values = _convert_bits(data, 8, 5, True, hrp)
    check = bech32_polymod([*bech32_hrp_expand(hrp), *values, 0, 0, 0, 0, 0, 0]) ^ const
    values += [check >> 5 * (5 - i) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[v] for v in values)


def _bech32_decode(text: str, hrp: str, const: int, what: str) -> bytes:
    if text != text.lower() and text != text.upper():
        raise PaymentRequestError(f"{what} mixes upper and lower case")
    text = text.lower()
    sep = text.rfind("1")
    if text[:sep] != hrp:
        raise PaymentRequestError(f"{what}: prefix is not {hrp!r}")
    rest = text[sep + 1:]
    bad = next((c for c in rest if c not in _VALUE), None)
    if bad is not None:
        raise PaymentRequestError(f"{what}: character {bad!r} is not bech32")
    if len(rest) < 6:
        raise PaymentRequestError(f"{what} is too short")
    values = [_VALUE[c] for c in rest]
    if bech32_polymod(bech32_hrp_expand(hrp) + values) != const:
        raise PaymentRequestError(f"{what}: checksum does not match (mistyped or truncated?)")
    return bytes(_convert_bits(values[:-6], 5, 8, False, what))


def _nip19_decode(target: str) -> tuple[bytes, list[str]]:
    """The 32-byte key and the relays of an ``npub`` or ``nprofile`` (NIP-19)."""
    lower = target.lower()
    if lower.startswith("npub1"):
        key = _bech32_decode(target, "npub", _BECH32, "nostr npub")
        if len(key) != 32:
            raise PaymentRequestError("nostr npub is not a 32-byte key")
        return key, []
    if not lower.startswith("nprofile1"):
        raise PaymentRequestError("nostr transport target is neither npub nor nprofile")
    raw = _bech32_decode(target, "nprofile", _BECH32, "nostr nprofile")
    pubkey: bytes | None = None
    relays: list[str] = []
    i = 0
    while i < len(raw):
        if i + 2 > len(raw) or i + 2 + raw[i + 1] > len(raw):
            raise PaymentRequestError("nostr nprofile: truncated TLV")
        tag, value = raw[i], raw[i + 2:i + 2 + raw[i + 1]]
        i += 2 + raw[i + 1]
        if tag == 0 and pubkey is None:
            pubkey = value
        elif tag == 1:
            relays.append(_utf8(value, "nprofile relay"))
    if pubkey is None or len(pubkey) != 32:
        raise PaymentRequestError("nostr nprofile has no 32-byte key")
    return pubkey, relays


def _nip19_encode(pubkey: bytes, relays: Sequence[str]) -> str:
    if not relays:
        return _bech32_encode("npub", pubkey, _BECH32)
    raw = bytearray([0, 32]) + pubkey
    for relay in relays:
        value = relay.encode()
        if len(value) > 0xFF:
            raise PaymentRequestError("nostr relay URL is longer than 255 bytes")
        raw += bytes([1, len(value)]) + value
    return _bech32_encode("nprofile", bytes(raw), _BECH32)


# --- either form -----------------------------------------------------------------------


def decode_request(text: str) -> PaymentRequest:
    """A ``creqA…`` (NUT-18) or ``creqb1…`` (NUT-26, any case) request."""
    if not isinstance(text, str):
        raise PaymentRequestError("a payment request must be text")
    text = text.strip()
    if len(text) > MAX_REQUEST_CHARS:
        raise PaymentRequestError(f"payment request is longer than {MAX_REQUEST_CHARS} characters")
    head = text[:6].lower()
    if head.startswith(PREFIX_A.lower()):
        return _decode_a(text)
    if head == HRP_B + "1":
        return _decode_b(text)
    raise PaymentRequestError("not a payment request: expected a 'creqA' or 'creqb1' prefix")


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# --- the payload (NUT-18 PaymentRequestPayload) ------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class PaymentPayload:
    """What a payer sends: ``proofs`` of ``mint`` in ``unit`` for request ``id``.

    Secret-bearing like a token: ``repr`` shows no proof.
    """

    mint: str
    unit: str
    proofs: tuple[Proof, ...]
    id: str | None = None
    memo: str | None = None

    @property
    def amount(self) -> int:
        return sum(p.amount for p in self.proofs)

    def __repr__(self) -> str:
        return (f"PaymentPayload(id={self.id!r}, mint={self.mint!r}, unit={self.unit!r}, "
                f"amount={self.amount}, proofs={len(self.proofs)})")


@dataclass(frozen=True, slots=True)
class _PayloadHead:
    """The payload less its proofs: read apart, because the codec reads a proof's ``id``
    as its keyset id only in objects that have no ``id`` of their own."""

    mint: str
    unit: str
    id: str | None = None
    memo: str | None = None


def decode_payload(body: bytes | str | Mapping[str, Any]) -> PaymentPayload:
    """The payload of a JSON body (bytes or text) or an already parsed object."""
    obj: Any = body
    if isinstance(body, bytes | str):
        raw = body.encode("utf-8") if isinstance(body, str) else body
        if len(raw) > MAX_PAYLOAD_BYTES:
            raise PaymentRequestError(f"payment payload is larger than {MAX_PAYLOAD_BYTES} bytes")
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            raise PaymentRequestError("payment payload is not valid JSON") from None
    if not isinstance(obj, Mapping):
        raise PaymentRequestError("payment payload is not a JSON object")
    raw_proofs = obj.get("proofs")
    if not isinstance(raw_proofs, list) or not raw_proofs:
        raise PaymentRequestError("payment payload: field 'proofs' is not a non-empty list")
    if len(raw_proofs) > MAX_PAYLOAD_PROOFS:
        raise PaymentRequestError(f"payment payload has more than {MAX_PAYLOAD_PROOFS} proofs")
    try:
        wire = from_wire(_PayloadHead, {k: v for k, v in obj.items() if k != "proofs"},
                         "payment payload")
        proofs = tuple(from_wire_list(Proof, raw_proofs, "payment payload proofs"))
    except InvalidInputError as e:
        raise PaymentRequestError(str(e)) from None
    mint = wire.mint.rstrip("/")
    if not mint:
        raise PaymentRequestError("payment payload: field 'mint' is empty")
    if not wire.unit:
        raise PaymentRequestError("payment payload: field 'unit' is empty")
    for i, proof in enumerate(proofs):
        if not proof.secret:
            raise PaymentRequestError(f"payment payload: proofs[{i}].secret is empty")
        if proof.C[:2] not in ("02", "03"):
            raise PaymentRequestError(f"payment payload: proofs[{i}].C is not a compressed key")
        if len(proof.keyset_id) not in (16, 66):
            raise PaymentRequestError(f"payment payload: proofs[{i}].id is not a keyset id")
    return PaymentPayload(mint=mint, unit=wire.unit, proofs=proofs, id=wire.id,
                          memo=wire.memo)


def encode_payload(p: PaymentPayload) -> dict[str, Any]:
    """The NUT-18 JSON object (DLEQ proofs included, absent ``id``/``memo`` omitted)."""
    out: dict[str, Any] = {}
    if p.id is not None:
        out["id"] = p.id
    if p.memo is not None:
        out["memo"] = p.memo
    out["mint"] = p.mint
    out["unit"] = p.unit
    out["proofs"] = [proof.to_wire(include_dleq=True) for proof in p.proofs]
    return out
