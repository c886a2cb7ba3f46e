"""Cashu tokens (NUT-00): the V4 ``cashuB`` codec and a decoder for deprecated V3 ``cashuA``.

A token is text that a user pastes or scans, so :func:`decode` is where untrusted
input enters the wallet. Every way it can be malformed becomes one
:class:`~coco_actors.errors.TokenError` that says what is wrong, never the
secrets themselves, and never a half-built :class:`Token`.

V4 tokens may carry *short* keyset ids (the first 8 bytes of a 33-byte id).
Decoding leaves ids as found; :func:`resolve_keyset_ids` expands them once the
mint's keysets are known, because only the mint's keyset list can tell a short
id apart from an unknown or ambiguous one.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any

import cbor2
from msgspec import Meta

from coco_actors.codec import from_wire
from coco_actors.errors import InvalidInputError, TokenError
from coco_actors.wire import DLEQ, MAX_AMOUNT, Proof

__all__ = [
    "Token",
    "decode",
    "decode_binary",
    "encode_v4",
    "encode_v4_binary",
    "resolve_keyset_ids",
]

V3_PREFIX = "cashuA"
V4_PREFIX = "cashuB"
URI_SCHEME = "cashu:"
RAW_V4_PREFIX = b"crawB"

SHORT_ID_BYTES = 8  # NUT-00 short keyset id: the first 8 bytes of the full id
FULL_ID_BYTES = 33  # version 01 keyset ids; version 00 ids are 8 bytes long
PUBKEY_BYTES = 33  # compressed secp256k1 point
SCALAR_BYTES = 32  # DLEQ e, s, r

# A token nests six containers deep; anything much deeper is hostile.
_MAX_CBOR_DEPTH = 16
_BASE64_RE = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


@dataclass(frozen=True, slots=True, repr=False)
class Token:
    """Proofs from one mint, with the unit and memo shown to the receiver.

    Secret-bearing: whoever holds the proofs can spend them, so ``repr`` shows
    only mint, unit, amount and the number of proofs.
    """

    mint: str
    proofs: tuple[Proof, ...]
    unit: str = "sat"
    memo: str | None = None

    @property
    def amount(self) -> int:
        return sum(p.amount for p in self.proofs)

    @property
    def keyset_ids(self) -> tuple[str, ...]:
        """The distinct keyset ids of the proofs, in order of first appearance."""
        return tuple(dict.fromkeys(p.keyset_id for p in self.proofs))

    def __repr__(self) -> str:
        return (f"Token(mint={self.mint!r}, unit={self.unit!r}, amount={self.amount}, "
                f"proofs={len(self.proofs)})")


# --- encoding ------------------------------------------------------------------------


def encode_v4(token: Token, *, include_dleq: bool = True) -> str:
    """Serialize as ``cashuB`` + unpadded urlsafe base64 of the NUT-00 CBOR object."""
    payload = base64.urlsafe_b64encode(_v4_cbor(token, include_dleq)).decode("ascii")
    return V4_PREFIX + payload.rstrip("=")


def encode_v4_binary(token: Token, *, include_dleq: bool = True) -> bytes:
    """The raw binary form for NFC and the like: ``b"crawB"`` + CBOR."""
    return RAW_V4_PREFIX + _v4_cbor(token, include_dleq)


def _v4_cbor(token: Token, include_dleq: bool) -> bytes:
    if not token.proofs:
        raise TokenError("cannot encode a token without proofs")
    groups: dict[str, list[Proof]] = {}
    for proof in token.proofs:
        groups.setdefault(proof.keyset_id.lower(), []).append(proof)
    wire_ids = _v4_wire_ids(list(groups))
    # Key order t, d, m, u reproduces the NUT-00 test vectors byte for byte.
    obj: dict[str, Any] = {
        "t": [
            {
                "i": _unhex(wire_ids[kid], "keyset id"),
                "p": [_v4_proof(p, include_dleq) for p in proofs],
            }
            for kid, proofs in groups.items()
        ],
    }
    if token.memo is not None:
        obj["d"] = token.memo
    obj["m"] = token.mint.rstrip("/")
    obj["u"] = token.unit
    return cbor2.dumps(obj)


def _v4_wire_ids(keyset_ids: list[str]) -> dict[str, str]:
    """Short ids for 33-byte keyset ids, unless two of this token's keysets share one."""
    short_len = 2 * SHORT_ID_BYTES
    shorts = [k[:short_len] for k in keyset_ids]
    return {
        k: k[:short_len] if len(k) == 2 * FULL_ID_BYTES and shorts.count(k[:short_len]) == 1
        else k
        for k in keyset_ids
    }


def _v4_proof(proof: Proof, include_dleq: bool) -> dict[str, Any]:
    if isinstance(proof.amount, bool) or not isinstance(proof.amount, int) or proof.amount <= 0:
        raise TokenError(f"cannot encode a proof with amount {proof.amount!r}")
    d: dict[str, Any] = {
        "a": proof.amount,
        "s": proof.secret,
        "c": _unhex(proof.C, "proof C", PUBKEY_BYTES),
    }
    if include_dleq and proof.dleq is not None:
        dleq: dict[str, bytes] = {
            "e": _unhex(proof.dleq.e, "DLEQ e", SCALAR_BYTES),
            "s": _unhex(proof.dleq.s, "DLEQ s", SCALAR_BYTES),
        }
        if proof.dleq.r is not None:
            dleq["r"] = _unhex(proof.dleq.r, "DLEQ r", SCALAR_BYTES)
        d["d"] = dleq
    if proof.witness is not None:
        d["w"] = proof.witness
    return d


def _unhex(value: str, what: str, nbytes: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except (ValueError, TypeError):
        raise TokenError(f"cannot encode {what}: not hex") from None
    if nbytes is not None and len(raw) != nbytes:
        raise TokenError(f"cannot encode {what}: must be {nbytes} bytes, got {len(raw)}")
    return raw


# --- decoding ------------------------------------------------------------------------


def decode(text: str) -> Token:
    """Decode a ``cashuA`` (V3) or ``cashuB`` (V4) token, optionally ``cashu:``-prefixed.

    Whitespace anywhere is ignored (tokens get wrapped in mails and chats) and
    unknown fields are skipped, as NUT-00 asks for forward compatibility.
    """
    if not isinstance(text, str):
        raise TokenError(f"a token must be text, got {type(text).__name__}")
    s = "".join(text.split())
    if s[: len(URI_SCHEME)].lower() == URI_SCHEME:
        s = s[len(URI_SCHEME):]
    if not s:
        raise TokenError("empty token")
    try:
        if s.startswith(V4_PREFIX):
            return _from_v4(_loads_cbor(_b64decode(s[len(V4_PREFIX):])))
        if s.startswith(V3_PREFIX):
            return _from_v3(_loads_json(_b64decode(s[len(V3_PREFIX):])))
    except TokenError:
        raise
    except InvalidInputError as e:  # from the codec (V3 JSON)
        raise TokenError(str(e)) from e
    if s.startswith("cashu"):
        raise TokenError(f"unsupported token version {s[5:6]!r}: "
                         f"expected '{V3_PREFIX}' or '{V4_PREFIX}'")
    raise TokenError(f"not a Cashu token: missing '{V3_PREFIX}' or '{V4_PREFIX}' prefix")


def decode_binary(data: bytes) -> Token:
    """Decode the raw binary form ``b"crawB"`` + CBOR."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TokenError(f"a binary token must be bytes, got {type(data).__name__}")
    raw = bytes(data)
    if not raw.startswith(RAW_V4_PREFIX):
        if raw.startswith(b"craw"):
            raise TokenError(f"unsupported binary token version {raw[4:5]!r}: expected b'B'")
        raise TokenError("not a binary Cashu token: missing b'crawB' prefix")
    try:
        return _from_v4(_loads_cbor(raw[len(RAW_V4_PREFIX):]))
    except TokenError:
        raise
    except InvalidInputError as e:
        raise TokenError(str(e)) from e


def _b64decode(payload: str) -> bytes:
    """Urlsafe or standard alphabet, padded or not (NUT-00 wallets emit both)."""
    if not payload:
        raise TokenError("token has no content after its prefix")
    if not _BASE64_RE.fullmatch(payload):
        raise TokenError("token is not valid base64")
    body = payload.rstrip("=")
    if len(body) % 4 == 1:
        raise TokenError("token is not valid base64: truncated")
    body = body.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise TokenError("token is not valid base64") from None


def _loads_cbor(raw: bytes) -> Any:
    fp = io.BytesIO(raw)
    try:
        obj = cbor2.CBORDecoder(fp, max_depth=_MAX_CBOR_DEPTH, allow_duplicate_keys=False).decode()
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError) as e:
        raise TokenError(f"V4 token is not valid CBOR: {e}") from None
    if fp.tell() != len(raw):
        raise TokenError(f"V4 token has {len(raw) - fp.tell()} trailing bytes after its CBOR")
    return obj


def _loads_json(raw: bytes) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(pairs)
        if len(d) != len(pairs):
            raise TokenError("V3 token JSON has duplicate keys")
        return d

    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except TokenError:
        raise
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise TokenError("V3 token is not valid JSON") from None


def _from_v4(obj: Any) -> Token:
    what = "V4 token"
    if not isinstance(obj, Mapping):
        raise TokenError(f"{what}: CBOR payload is not a map")
    mint = _read_mint(obj, "m", what)
    unit = _read_str(obj, "u", what)
    memo = _read_opt_str(obj, "d", what)
    groups = _read_list(obj, "t", what)
    proofs: list[Proof] = []
    for gi, group in enumerate(groups):
        gwhat = f"{what} t[{gi}]"
        keyset_id = _read_bytes(group, "i", gwhat).hex()
        _check_keyset_id(keyset_id, gwhat)
        for pi, p in enumerate(_read_list(group, "p", gwhat)):
            proofs.append(_v4_proof_from(p, keyset_id, f"{gwhat}.p[{pi}]"))
    return Token(mint=mint, proofs=tuple(proofs), unit=unit, memo=memo)


def _v4_proof_from(p: Any, keyset_id: str, what: str) -> Proof:
    if not isinstance(p, Mapping):
        raise TokenError(f"{what}: expected an object, got {type(p).__name__}")
    amount = _read_amount(p, "a", what)
    secret = _read_str(p, "s", what)
    if not secret:
        raise TokenError(f"{what}: field 's' (secret) is empty")
    C = _read_bytes(p, "c", what, PUBKEY_BYTES).hex()
    _check_pubkey(C, "c", what)
    dleq = None
    raw_dleq = p.get("d")
    if raw_dleq is not None:
        dwhat = f"{what}.d"
        if not isinstance(raw_dleq, Mapping):
            raise TokenError(f"{dwhat}: expected a map")
        r = raw_dleq.get("r")
        dleq = DLEQ(
            e=_read_bytes(raw_dleq, "e", dwhat, SCALAR_BYTES).hex(),
            s=_read_bytes(raw_dleq, "s", dwhat, SCALAR_BYTES).hex(),
            r=_read_bytes(raw_dleq, "r", dwhat, SCALAR_BYTES).hex() if r is not None else None,
        )
    witness = _read_opt_str(p, "w", what)
    return Proof(amount=amount, keyset_id=keyset_id, secret=secret, C=C,
                 dleq=dleq, witness=witness)


@dataclass(frozen=True, slots=True)
class _V3Entry:
    mint: str
    proofs: Annotated[tuple[Proof, ...], Meta(min_length=1)]


@dataclass(frozen=True, slots=True)
class _V3Token:
    """The V3 JSON, read by the codec (it checks every proof field, as for a mint answer)."""

    token: tuple[_V3Entry, ...]
    unit: str = "sat"
    memo: str | None = None


def _from_v3(obj: Any) -> Token:
    what = "V3 token"
    if not isinstance(obj, Mapping):
        raise TokenError(f"{what}: JSON payload is not an object")
    v3 = from_wire(_V3Token, obj, what)
    if not v3.token:
        raise TokenError(f"{what} has no token entries")
    # Entries naming the same mint are merged; distinct mints are refused.
    by_mint: dict[str, list[Proof]] = {}
    for ei, entry in enumerate(v3.token):
        ewhat = f"{what} token[{ei}]"
        mint = entry.mint.rstrip("/")
        if not mint:
            raise TokenError(f"{ewhat}: field 'mint' (mint URL) is empty")
        proofs = by_mint.setdefault(mint, [])
        for pi, proof in enumerate(entry.proofs):
            _check_v3_proof(proof, f"{ewhat}.proofs[{pi}]")
            proofs.append(proof)
    if len(by_mint) > 1:
        raise TokenError(f"multi-mint tokens are not supported: this {what} holds proofs "
                         f"from {len(by_mint)} mints")
    [(mint, proofs)] = by_mint.items()
    return Token(mint=mint, proofs=tuple(proofs), unit=v3.unit or "sat", memo=v3.memo)


def _check_v3_proof(proof: Proof, what: str) -> None:
    """What the codec cannot say: id length, a compressed point, a secret at all."""
    _check_keyset_id(proof.keyset_id, what)
    _check_pubkey(proof.C, "C", what)
    if not proof.secret:
        raise TokenError(f"{what}: field 'secret' is empty")


# --- field readers -------------------------------------------------------------------


def _read_mint(d: Any, key: str, what: str) -> str:
    mint = _read_str(d, key, what).rstrip("/")
    if not mint:
        raise TokenError(f"{what}: field '{key}' (mint URL) is empty")
    return mint


def _required(d: Any, key: str, what: str) -> Any:
    if not isinstance(d, Mapping):
        raise TokenError(f"{what}: expected a map, got {type(d).__name__}")
    v = d.get(key)
    if v is None:
        raise TokenError(f"{what}: missing field '{key}'")
    return v


def _read_str(d: Any, key: str, what: str) -> str:
    v = _required(d, key, what)
    if not isinstance(v, str):
        raise TokenError(f"{what}: field '{key}' must be a string")
    return v


def _read_amount(d: Any, key: str, what: str) -> int:
    v = _required(d, key, what)
    if isinstance(v, bool) or not isinstance(v, int):
        raise TokenError(f"{what}: field '{key}' must be an integer")
    if v <= 0:
        raise TokenError(f"{what}: field '{key}' must be positive, got {v}")
    if v >= MAX_AMOUNT:
        raise TokenError(f"{what}: field '{key}' is too large")
    return v


def _read_list(d: Any, key: str, what: str) -> list[Any]:
    v = _required(d, key, what)
    if not isinstance(v, list):
        raise TokenError(f"{what}: field '{key}' must be a list")
    if not v:
        raise TokenError(f"{what}: field '{key}' is empty")
    return v


def _read_bytes(d: Any, key: str, what: str, nbytes: int | None = None) -> bytes:
    v = _required(d, key, what)
    if not isinstance(v, bytes):
        raise TokenError(f"{what}: field '{key}' must be a byte string")
    if nbytes is not None and len(v) != nbytes:
        raise TokenError(f"{what}: field '{key}' must be {nbytes} bytes, got {len(v)}")
    return v


def _read_opt_str(d: Mapping[str, Any], key: str, what: str) -> str | None:
    v = d.get(key)
    if v is not None and not isinstance(v, str):
        raise TokenError(f"{what}: field '{key}' must be a string")
    return v


def _check_keyset_id(keyset_id: str, what: str) -> None:
    n = len(keyset_id) // 2
    if n not in (SHORT_ID_BYTES, FULL_ID_BYTES):
        raise TokenError(f"{what}: keyset id must be {SHORT_ID_BYTES} or {FULL_ID_BYTES} "
                         f"bytes, got {n}")


def _check_pubkey(hex_key: str, key: str, what: str) -> None:
    if hex_key[:2] not in ("02", "03"):
        raise TokenError(f"{what}: field '{key}' is not a compressed public key")


# --- short keyset ids ----------------------------------------------------------------


def resolve_keyset_ids(token: Token, keyset_ids: Iterable[str]) -> Token:
    """Expand short keyset ids against the ids the token's mint is known to have.

    An id that equals a known id is kept. A short (8-byte) id must be the prefix
    of exactly one known id: NUT-00 requires failing on an ambiguous one rather
    than guessing, since the mint only accepts full ids.
    """
    known = list(dict.fromkeys(k.lower() for k in keyset_ids))
    known_set = set(known)
    mapping: dict[str, str] = {}
    for kid in token.keyset_ids:
        low = kid.lower()
        if low in known_set:
            mapping[kid] = low
            continue
        matches = ([k for k in known if k.startswith(low)]
                   if len(low) == 2 * SHORT_ID_BYTES else [])
        if not matches:
            raise TokenError(f"keyset {kid} is not known by mint {token.mint}")
        if len(matches) > 1:
            raise TokenError(f"short keyset id {kid} is ambiguous: it matches "
                             f"{len(matches)} keysets of mint {token.mint}")
        mapping[kid] = matches[0]
    if all(k == v for k, v in mapping.items()):
        return token
    return replace(token, proofs=tuple(replace(p, keyset_id=mapping[p.keyset_id])
                                       for p in token.proofs))
