"""NUT-10 well-known secrets and NUT-11 pay-to-public-key (P2PK) conditions.

Pure functions, callable from any thread: BIP340 Schnorr signatures over
``SHA256(message)`` (what libsecp256k1 and every Cashu mint use), the JSON
secret ``[kind, {nonce, data, tags}]``, the P2PK tag rules (which pathway
applies, which keys may sign, how many signatures it takes) and the message a
``SIG_ALL`` transaction signs. The wallet side is :func:`signers_for` (which of
the keys we hold satisfy a lock); :func:`verify_p2pk` is the mint's half, kept
here so the spec vectors can be checked and tests can play mint.

Malformed input is an :class:`InvalidInputError` that names what is wrong,
never a key or a secret.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from coincurve import PrivateKey, PublicKey, PublicKeyXOnly

from coco_actors.errors import InvalidInputError

__all__ = [
    "HTLC",
    "P2PK",
    "P2PKConditions",
    "Pathway",
    "SigFlag",
    "WellKnownSecret",
    "build_secret",
    "check_pubkey",
    "htlc_preimage",
    "p2pk_conditions",
    "p2pk_secret",
    "parse_secret",
    "schnorr_sign",
    "schnorr_verify",
    "signers_for",
    "sig_all_message",
    "verify_p2pk",
    "verify_sig_all",
    "witness_json",
    "witness_signatures",
    "x_only",
]

P2PK = "P2PK"
HTLC = "HTLC"  # NUT-14: a hash lock that carries the same P2PK tags

#: Tags NUT-11 defines; each may appear at most once in a secret.
_SINGLE_TAGS = ("sigflag", "pubkeys", "n_sigs", "locktime", "refund", "n_sigs_refund")


# --- Schnorr (BIP340) ------------------------------------------------------------------


def schnorr_sign(private_key: bytes, message: bytes) -> str:
    """A BIP340 signature (64 bytes, as 128 hex) over ``SHA256(message)``.

    Aux randomness is fresh for each call, so two signatures of one message differ
    (both verify).
    """
    if not isinstance(private_key, bytes) or len(private_key) != 32:
        raise InvalidInputError("a private key is 32 bytes")
    try:
        key = PrivateKey(private_key)
    except ValueError:
        raise InvalidInputError("the private key is not a valid secp256k1 scalar") from None
    digest = hashlib.sha256(message).digest()
    return key.sign_schnorr(digest, os.urandom(32)).hex()


def schnorr_verify(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
    """Whether ``signature_hex`` is a valid BIP340 signature of ``SHA256(message)`` by
    the key (compressed 33-byte hex, or 32-byte x-only hex). Malformed input is False."""
    try:
        x = bytes.fromhex(x_only(public_key_hex))
        sig = bytes.fromhex(signature_hex)
        if len(sig) != 64:
            return False
        return bool(PublicKeyXOnly(x).verify(sig, hashlib.sha256(message).digest()))
    except (InvalidInputError, ValueError, TypeError):
        return False


def check_pubkey(public_key_hex: object) -> str:
    """The key as lowercase compressed hex, or :class:`InvalidInputError`: 33 bytes,
    ``02``/``03`` prefix, a point on the curve."""
    if not isinstance(public_key_hex, str):
        raise InvalidInputError("a public key must be a hex string")
    try:
        raw = bytes.fromhex(public_key_hex)
    except ValueError:
        raise InvalidInputError("a public key must be hex") from None
    if len(raw) != 33 or raw[0] not in (2, 3):
        raise InvalidInputError("a public key must be 33 bytes, compressed (02/03 prefix)")
    try:
        PublicKey(raw)
    except ValueError:
        raise InvalidInputError("the public key is not a point on secp256k1") from None
    return raw.hex()


def x_only(public_key_hex: str) -> str:
    """The lowercase x coordinate: NUT-11 compares keys by it (parity ignored)."""
    if not isinstance(public_key_hex, str):
        raise InvalidInputError("a public key must be a hex string")
    key = public_key_hex.lower()
    if len(key) == 66 and key[:2] in ("02", "03"):
        return key[2:]
    if len(key) == 64:
        return key
    raise InvalidInputError("a public key must be 33 bytes, compressed (02/03 prefix)")


def public_key_of(private_key: bytes) -> str:
    """The compressed public key (hex) of a 32-byte private key."""
    return PrivateKey(private_key).public_key.format(compressed=True).hex()


# --- NUT-10 secrets --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WellKnownSecret:
    """A parsed NUT-10 secret. ``raw`` is the exact string (what is signed, what the
    mint hashes); the rest is read from it."""

    kind: str
    nonce: str
    data: str
    tags: tuple[tuple[str, ...], ...]
    raw: str

    def __repr__(self) -> str:  # the nonce makes it a bearer secret once signed: never shown
        return f"WellKnownSecret(kind={self.kind!r}, tags={len(self.tags)})"

    def tag(self, name: str) -> tuple[str, ...] | None:
        """The values of tag ``name`` (possibly empty), or None if it is absent."""
        for t in self.tags:
            if t[0] == name:
                return t[1:]
        return None


def parse_secret(secret: str) -> WellKnownSecret | None:
    """The NUT-10 secret in ``secret``, or None for a plain (random string) secret.

    A string that is a JSON ``[kind, {...}]`` but breaks the format (missing nonce
    or data, a tag that is not a list of non-empty strings) is malformed:
    :class:`InvalidInputError` (a mint treats such a proof as unspendable).
    """
    if not isinstance(secret, str) or not secret.startswith("["):
        return None
    try:
        parsed = json.loads(secret)
    except (ValueError, RecursionError):
        return None
    if not (isinstance(parsed, list) and len(parsed) == 2 and isinstance(parsed[0], str)
            and isinstance(parsed[1], dict)):
        return None
    kind, body = parsed
    nonce, data, tags = body.get("nonce"), body.get("data"), body.get("tags", [])
    if not isinstance(nonce, str) or not isinstance(data, str):
        raise InvalidInputError(f"malformed {kind[:16]} secret: nonce and data must be strings")
    if tags is None:
        tags = []
    if not isinstance(tags, list):
        raise InvalidInputError(f"malformed {kind[:16]} secret: tags must be a list")
    for t in tags:
        if not (isinstance(t, list) and t and all(isinstance(v, str) and v for v in t)):
            raise InvalidInputError(
                f"malformed {kind[:16]} secret: a tag is a list of one or more non-empty strings")
    return WellKnownSecret(kind, nonce, data, tuple(tuple(t) for t in tags), secret)


def build_secret(kind: str, data: str, tags: Sequence[Sequence[str]] = (),
                 nonce: str | None = None) -> str:
    """The compact JSON of a NUT-10 secret (a fresh 32-byte hex nonce unless given)."""
    body: dict[str, Any] = {"nonce": nonce if nonce is not None else os.urandom(32).hex(),
                            "data": data}
    if tags:
        body["tags"] = [list(t) for t in tags]
    return json.dumps([kind, body], separators=(",", ":"))


# --- NUT-11 conditions ----------------------------------------------------------------


class SigFlag(enum.StrEnum):
    SIG_INPUTS = "SIG_INPUTS"
    SIG_ALL = "SIG_ALL"


class Pathway(enum.StrEnum):
    """Which set of keys satisfied a lock (or may satisfy it)."""

    LOCK = "lock"        # data + pubkeys, n_sigs of them
    REFUND = "refund"    # refund keys, n_sigs_refund of them, after the locktime
    OPEN = "open"        # the locktime passed and there are no refund keys: anyone


@dataclass(frozen=True, slots=True)
class P2PKConditions:
    """The spending conditions of one P2PK (or HTLC) secret, validated.

    ``lock_keys`` holds ``data`` then the ``pubkeys`` tag (for an HTLC only the
    tag: its ``data`` is a hash). Keys are lowercase, as they appear.
    """

    kind: str
    sigflag: SigFlag
    lock_keys: tuple[str, ...]
    n_sigs: int
    locktime: int | None
    refund_keys: tuple[str, ...]
    n_sigs_refund: int

    def expired(self, now: int) -> bool:
        return self.locktime is not None and now > self.locktime

    def pathways(self, now: int) -> tuple[Pathway, ...]:
        """The pathways that can unlock at ``now``, in the order a wallet tries them."""
        if not self.expired(now):
            return (Pathway.LOCK,) if self.lock_keys else ()
        if not self.refund_keys:
            return (Pathway.OPEN,)
        return ((Pathway.LOCK,) if self.lock_keys else ()) + (Pathway.REFUND,)

    def keys_of(self, pathway: Pathway) -> tuple[tuple[str, ...], int]:
        if pathway == Pathway.LOCK:
            return self.lock_keys, self.n_sigs
        if pathway == Pathway.REFUND:
            return self.refund_keys, self.n_sigs_refund
        return (), 0


def _is_uint(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 20


def _count(secret: WellKnownSecret, name: str, keys: int) -> int:
    value = secret.tag(name)
    if value is None:
        return 1
    if len(value) != 1 or not _is_uint(value[0]):
        raise InvalidInputError(f"malformed P2PK secret: {name} must be one positive integer")
    n = int(value[0])
    if n < 1 or n > max(keys, 1):
        raise InvalidInputError(
            f"malformed P2PK secret: {name} is {n}, but its pathway has {keys} keys")
    return n


def _keys(values: Sequence[str], pathway: str) -> tuple[str, ...]:
    out, seen = [], set()
    for v in values:
        key = check_pubkey(v)
        if key[2:] in seen:
            raise InvalidInputError(f"malformed P2PK secret: a key appears twice in {pathway}")
        seen.add(key[2:])
        out.append(key)
    return tuple(out)


def p2pk_conditions(secret: WellKnownSecret) -> P2PKConditions:
    """Validate the P2PK tags of a ``P2PK`` (or ``HTLC``) secret.

    Malformed per NUT-11 (a tag twice, an unknown sigflag, ``n_sigs`` out of range,
    a key that is not a curve point, a key twice in one pathway):
    :class:`InvalidInputError`.
    """
    if secret.kind not in (P2PK, HTLC):
        raise InvalidInputError(f"not a P2PK secret (kind {secret.kind[:16]!r})")
    names = [t[0] for t in secret.tags]
    for name in _SINGLE_TAGS:
        if names.count(name) > 1:
            raise InvalidInputError(f"malformed P2PK secret: tag {name} appears twice")
    flag = secret.tag("sigflag")
    if flag is None:
        sigflag = SigFlag.SIG_INPUTS
    elif len(flag) == 1 and flag[0] in SigFlag.__members__:
        sigflag = SigFlag(flag[0])
    else:
        raise InvalidInputError("malformed P2PK secret: unknown sigflag")
    data = [secret.data] if secret.kind == P2PK else []
    lock_keys = _keys([*data, *(secret.tag("pubkeys") or ())], "data and pubkeys")
    refund_keys = _keys(secret.tag("refund") or (), "refund")
    lt = secret.tag("locktime")
    # NUT-11: a locktime that is not a unix time means "permanent"
    locktime = int(lt[0]) if lt and len(lt) == 1 and _is_uint(lt[0]) else None
    return P2PKConditions(
        kind=secret.kind, sigflag=sigflag, lock_keys=lock_keys,
        n_sigs=_count(secret, "n_sigs", len(lock_keys)), locktime=locktime,
        refund_keys=refund_keys,
        n_sigs_refund=_count(secret, "n_sigs_refund", len(refund_keys)))


def p2pk_secret(pubkeys: Sequence[str], *, n_sigs: int = 1, locktime: int | None = None,
                refund: Sequence[str] = (), n_sigs_refund: int = 1,
                sigflag: SigFlag = SigFlag.SIG_INPUTS, nonce: str | None = None) -> str:
    """A fresh P2PK secret locking to ``pubkeys[0]`` (``data``) and the rest (``pubkeys``).

    Only tags that differ from the defaults are written, so a simple lock looks as
    other wallets write it. The result parses back to the same conditions.
    """
    if not pubkeys:
        raise InvalidInputError("a P2PK lock needs at least one public key")
    keys = [check_pubkey(k) for k in pubkeys]
    tags: list[list[str]] = []
    if sigflag != SigFlag.SIG_INPUTS:
        tags.append(["sigflag", sigflag.value])
    if len(keys) > 1:
        tags.append(["pubkeys", *keys[1:]])
    if n_sigs != 1:
        tags.append(["n_sigs", str(n_sigs)])
    if locktime is not None:
        tags.append(["locktime", str(locktime)])
    if refund:
        tags.append(["refund", *(check_pubkey(k) for k in refund)])
        if n_sigs_refund != 1:
            tags.append(["n_sigs_refund", str(n_sigs_refund)])
    # the same rules a receiver (and the mint) apply, before anything is built
    p2pk_conditions(WellKnownSecret(P2PK, "", keys[0], tuple(tuple(t) for t in tags), ""))
    return build_secret(P2PK, keys[0], tags, nonce)


# --- signing and verifying --------------------------------------------------------------


def signers_for(cond: P2PKConditions, now: int,
                private_key: Callable[[str], bytes | None]) -> tuple[Pathway, list[bytes]] | None:
    """The pathway and the private keys we hold that satisfy ``cond`` at ``now``
    (``private_key`` maps a public key to ours, or None); None if we cannot.

    ``now`` is our clock: a locktime within a few seconds of it may be judged
    differently by the mint. The lock pathway is preferred (it needs no clock).
    """
    for pathway in cond.pathways(now):
        if pathway == Pathway.OPEN:
            return pathway, []
        keys, needed = cond.keys_of(pathway)
        held = [k for k in (private_key(pub) for pub in keys) if k is not None]
        if len(held) >= needed:
            return pathway, held[:needed]
    return None


def witness_json(signatures: Sequence[str], preimage: str | None = None) -> str:
    """The ``Proof.witness`` string: ``{"signatures": [...]}`` (and an HTLC preimage)."""
    body: dict[str, Any] = {}
    if preimage is not None:
        body["preimage"] = preimage
    body["signatures"] = list(signatures)
    return json.dumps(body, separators=(",", ":"))


def witness_signatures(witness: str | None) -> list[str]:
    """The signatures in a witness string (none if absent or unreadable)."""
    if not witness:
        return []
    try:
        body = json.loads(witness)
    except ValueError:
        return []
    sigs = body.get("signatures") if isinstance(body, dict) else None
    return [s for s in sigs if isinstance(s, str)] if isinstance(sigs, list) else []


def htlc_preimage(witness: str | None) -> str | None:
    if not witness:
        return None
    try:
        body = json.loads(witness)
    except ValueError:
        return None
    pre = body.get("preimage") if isinstance(body, dict) else None
    return pre if isinstance(pre, str) else None


def _valid_signers(keys: Sequence[str], message: bytes, signatures: Sequence[str]) -> int:
    """How many distinct keys (by x coordinate) signed ``message``."""
    return len({x_only(k) for k in keys
                if any(schnorr_verify(k, message, s) for s in signatures)})


def _satisfied(cond: P2PKConditions, message: bytes, signatures: Sequence[str],
               now: int) -> bool:
    for pathway in cond.pathways(now):
        if pathway == Pathway.OPEN:
            return True
        keys, needed = cond.keys_of(pathway)
        if _valid_signers(keys, message, signatures) >= needed:
            return True
    return False


def _htlc_ok(secret: WellKnownSecret, witness: str | None, cond: P2PKConditions,
             now: int) -> bool:
    """NUT-14: before the locktime the preimage must hash to ``data``."""
    if secret.kind != HTLC or cond.expired(now):
        return True
    pre = htlc_preimage(witness)
    try:
        return pre is not None and hashlib.sha256(bytes.fromhex(pre)).hexdigest() == secret.data
    except ValueError:
        return False


def verify_p2pk(secret: str, witness: str | None, now: int) -> bool:
    """The mint's check of one ``SIG_INPUTS`` input: its witness signs its secret.

    A malformed secret is :class:`InvalidInputError` (unspendable).
    """
    parsed = parse_secret(secret)
    if parsed is None:
        return True  # a plain secret: no conditions
    cond = p2pk_conditions(parsed)
    if not _htlc_ok(parsed, witness, cond, now):
        return False
    if cond.sigflag == SigFlag.SIG_ALL:
        return False  # signed over the whole transaction: see verify_sig_all
    return _satisfied(cond, secret.encode(), witness_signatures(witness), now)


def sig_all_message(inputs: Sequence[tuple[str, str]], outputs: Sequence[tuple[int, str]],
                    quote_id: str | None = None) -> str:
    """NUT-11 ``SIG_ALL``: every input's ``secret || C`` then every output's
    ``amount || B_``, in request order, then the quote id for a melt."""
    parts = [s + c for s, c in inputs] + [str(a) + b for a, b in outputs]
    if quote_id is not None:
        parts.append(quote_id)
    return "".join(parts)


def verify_sig_all(inputs: Sequence[tuple[str, str, str | None]],
                   outputs: Sequence[tuple[int, str]], now: int,
                   quote_id: str | None = None) -> bool:
    """The mint's check of a ``SIG_ALL`` transaction (inputs as ``(secret, C, witness)``):
    every input carries the same kind, data and tags; the first input's witness signs
    the aggregated message."""
    if not inputs:
        return False
    first = parse_secret(inputs[0][0])
    if first is None:
        return False
    cond = p2pk_conditions(first)
    if cond.sigflag != SigFlag.SIG_ALL:
        return False
    for secret, _, _ in inputs[1:]:
        other = parse_secret(secret)
        if other is None or (other.kind, other.data, other.tags) != (
                first.kind, first.data, first.tags):
            return False
    witness = inputs[0][2]
    if not _htlc_ok(first, witness, cond, now):
        return False
    message = sig_all_message([(s, c) for s, c, _ in inputs], outputs, quote_id)
    return _satisfied(cond, message.encode(), witness_signatures(witness), now)
