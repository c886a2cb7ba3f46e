"""NUT-00 blind Diffie-Hellman key exchange (BDHKE) on secp256k1.

The wallet side is ``blind_message`` and ``unblind_signature``; ``sign_blinded``
and ``verify_unblinded`` are the mint's half, kept here so tests can play mint.
The parsers turn hex from the wire into curve objects and are the one place
where malformed input becomes an :class:`InvalidInputError`.
"""

from __future__ import annotations

import hashlib

from coincurve import PrivateKey, PublicKey

from coco_actors.errors import CryptoError, InvalidInputError

DOMAIN_SEPARATOR = b"Secp256k1_HashToCurve_Cashu_"

# Order of the secp256k1 group: every scalar (r, k, e, s) lives modulo N.
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def hash_to_curve(message: bytes) -> PublicKey:
    """Map ``message`` to a curve point nobody knows the discrete log of.

    Tries x = SHA256(SHA256(DOMAIN_SEPARATOR || message) || counter) with an
    even-y prefix for counter = 0, 1, ... (uint32, little endian) until x lies
    on the curve; about half of all x do, so the loop ends quickly.
    """
    msg_hash = hashlib.sha256(DOMAIN_SEPARATOR + message).digest()
    for counter in range(2**32):
        x = hashlib.sha256(msg_hash + counter.to_bytes(4, "little")).digest()
        try:
            return PublicKey(b"\x02" + x)
        except ValueError:
            continue
    raise CryptoError("hash_to_curve: no point found")  # pragma: no cover - 2^-(2^32)


def secret_to_y(secret: str) -> str:
    """``Y`` of a proof secret (hex): the id under which the mint tracks its spent state."""
    return hash_to_curve(secret.encode("utf-8")).format().hex()


# --- parsing -------------------------------------------------------------------------


def parse_pubkey(hex_str: str, what: str = "public key") -> PublicKey:
    """Parse a compressed SEC1 point (33 bytes, prefix 02/03) that lies on the curve."""
    raw = _unhex(hex_str, what)
    if len(raw) != 33 or raw[0] not in (2, 3):
        raise InvalidInputError(
            f"{what}: expected a 33-byte compressed point, got {len(raw)} bytes"
            + (f" with prefix {raw[0]:02x}" if raw else ""))
    try:
        return PublicKey(raw)
    except ValueError:
        raise InvalidInputError(f"{what}: not a point on secp256k1") from None


def parse_privkey(hex_str: str, what: str = "private key") -> PrivateKey:
    """Parse a 32-byte big-endian scalar in ``[1, N)``."""
    raw = _unhex(hex_str, what)
    if len(raw) != 32:
        raise InvalidInputError(f"{what}: expected 32 bytes, got {len(raw)}")
    if not 0 < int.from_bytes(raw, "big") < N:
        raise InvalidInputError(f"{what}: scalar out of range (must be in [1, N))")
    return PrivateKey(raw)


def _unhex(hex_str: str, what: str) -> bytes:
    if not isinstance(hex_str, str):
        raise InvalidInputError(f"{what}: expected a hex string, got {type(hex_str).__name__}")
    try:
        return bytes.fromhex(hex_str)
    except ValueError:
        raise InvalidInputError(f"{what}: not a hex string") from None


# --- point arithmetic ----------------------------------------------------------------


def negate(point: PublicKey) -> PublicKey:
    """``-P``: same x, opposite y parity (flip the 02/03 prefix)."""
    raw = point.format()
    return PublicKey(bytes([raw[0] ^ 1]) + raw[1:])


def add(p: PublicKey, q: PublicKey) -> PublicKey:
    """``P + Q``; the point at infinity has no encoding, so it is a :class:`CryptoError`."""
    try:
        total: PublicKey = PublicKey.combine_keys([p, q])  # coincurve leaves it unannotated
    except ValueError:
        raise CryptoError("point addition gave the point at infinity") from None
    return total


def sub(p: PublicKey, q: PublicKey) -> PublicKey:
    """``P - Q``."""
    return add(p, negate(q))


def mul(point: PublicKey, scalar: int) -> PublicKey:
    """``scalar * P`` for a scalar in ``[1, N)``."""
    if not 0 < scalar < N:
        raise CryptoError("scalar out of range (must be in [1, N))")
    product: PublicKey = point.multiply(scalar.to_bytes(32, "big"))
    return product


# --- BDHKE ---------------------------------------------------------------------------


def blind_message(secret: bytes, r: PrivateKey) -> PublicKey:
    """Alice: ``B_ = Y + r*G``; ``r`` hides ``Y`` (and so the secret) from the mint."""
    return add(hash_to_curve(secret), r.public_key)


def unblind_signature(C_: PublicKey, r: PrivateKey, A: PublicKey) -> PublicKey:
    """Alice: ``C = C_ - r*A = k*Y``, a signature on ``Y`` the mint never saw."""
    return sub(C_, A.multiply(r.secret))


def sign_blinded(B_: PublicKey, k: PrivateKey) -> PublicKey:
    """Bob: ``C_ = k*B_``. Mint side; the wallet only uses it in tests."""
    C_: PublicKey = B_.multiply(k.secret)
    return C_


def verify_unblinded(secret: bytes, C: PublicKey, k: PrivateKey) -> bool:
    """Bob: ``C == k*hash_to_curve(secret)``; only the holder of ``k`` can check this."""
    kY: PublicKey = hash_to_curve(secret).multiply(k.secret)
    return kY.format() == C.format()
