"""NUT-12 DLEQ proofs: the mint shows it signed with the same key it published.

Without this check a mint could sign each user with a different key and later
tell whose ecash is whose. The wallet verifies the proof on every blind
signature it receives, and again on every proof in a token it receives (the
sender includes its blinding factor ``r`` so the receiver can rebuild ``B_``
and ``C_``).

The verifiers return ``False`` for anything that does not parse: a malformed
proof is as untrustworthy as a forged one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence

from coincurve import PrivateKey, PublicKey

from coco_actors.crypto.bdhke import (
    N,
    add,
    hash_to_curve,
    mul,
    parse_privkey,
    parse_pubkey,
    sub,
)
from coco_actors.errors import CocoError, CryptoError
from coco_actors.wire import BlindSignature, Proof

NONCE_TAG = b"Cashu_DLEQ_R_v1"


def hash_e(*points: PublicKey) -> bytes:
    """The challenge: SHA256 of the concatenated *hex text* of the uncompressed points.

    Hashing the hex characters rather than the raw bytes is odd but is what the
    spec and every mint do, so it must be reproduced exactly.
    """
    text = "".join(p.format(compressed=False).hex() for p in points)
    return hashlib.sha256(text.encode("utf-8")).digest()


def verify_signature_dleq(
    A: PublicKey, B_: PublicKey, C_: PublicKey, e: bytes, s: bytes
) -> bool:
    """Check that ``log_G(A) == log_B_(C_)`` given the mint's challenge ``e`` and response ``s``.

    ``R1 = s*G - e*A`` and ``R2 = s*B_ - e*C_`` reproduce the mint's commitments
    only if the same key was used for ``A`` and ``C_``.
    """
    e_int, s_int = int.from_bytes(e, "big"), int.from_bytes(s, "big")
    if len(e) != 32 or len(s) != 32 or not (0 < e_int < N and 0 < s_int < N):
        return False
    try:
        R1 = sub(PrivateKey(s).public_key, mul(A, e_int))
        R2 = sub(mul(B_, s_int), mul(C_, e_int))
    except CryptoError:  # a commitment at infinity: no honest mint produces that
        return False
    return hmac.compare_digest(hash_e(R1, R2, A, C_), e)


def verify_blind_signature_dleq(signature: BlindSignature, B_hex: str, A_hex: str) -> bool:
    """Alice's check of a ``BlindSignature`` DLEQ against her own ``B_``.

    ``False`` when the signature has no DLEQ.
    """
    if signature.dleq is None:
        return False
    try:
        A, B_, C_ = parse_pubkey(A_hex), parse_pubkey(B_hex), parse_pubkey(signature.C_)
        e, s = bytes.fromhex(signature.dleq.e), bytes.fromhex(signature.dleq.s)
    except (CocoError, ValueError):
        return False
    return verify_signature_dleq(A, B_, C_, e, s)


def verify_proof_dleq(proof: Proof, A_hex: str) -> bool:
    """Carol's check of a ``Proof`` DLEQ: rebuild ``B_ = Y + r*G`` and ``C_ = C + r*A``.

    ``False`` when the proof has no DLEQ or no ``r`` (nothing to check it with).
    """
    dleq = proof.dleq
    if dleq is None or dleq.r is None:
        return False
    try:
        A, C = parse_pubkey(A_hex), parse_pubkey(proof.C)
        r = parse_privkey(dleq.r)
        B_ = add(hash_to_curve(proof.secret.encode("utf-8")), r.public_key)
        C_ = add(C, A.multiply(r.secret))
        e, s = bytes.fromhex(dleq.e), bytes.fromhex(dleq.s)
    except (CocoError, ValueError):
        return False
    return verify_signature_dleq(A, B_, C_, e, s)


def verify_proofs_dleq(proofs: Sequence[Proof], key_lookup: Callable[[str, int], str]) -> None:
    """Verify the DLEQ of every proof that carries one; proofs without a DLEQ are skipped.

    ``key_lookup(keyset_id, amount)`` returns the mint's public key hex; its own
    errors (unknown keyset) propagate. A DLEQ without ``r`` cannot be checked
    and is rejected, like a wrong one.
    """
    for i, proof in enumerate(proofs):
        if proof.dleq is None:
            continue
        if proof.dleq.r is None:
            raise CryptoError(f"proof {i}: DLEQ proof lacks the blinding factor r")
        if not verify_proof_dleq(proof, key_lookup(proof.keyset_id, proof.amount)):
            raise CryptoError(
                f"proof {i}: invalid DLEQ proof (amount {proof.amount}, keyset {proof.keyset_id})")


# --- mint side (tests and vectors) ---------------------------------------------------


def dleq_nonce(a: PrivateKey, A: PublicKey, B_: PublicKey, C_: PublicKey) -> int:
    """The deterministic nonce ``r`` of NUT-12: HMAC over the statement, rejection-sampled.

    Deriving ``r`` from the key and the statement means it never repeats for two
    different challenges, so a broken RNG cannot leak ``a``.
    """
    data = NONCE_TAG + b"".join(p.format(compressed=False) for p in (A, B_, C_))
    for ctr in range(256):
        r = int.from_bytes(hmac.new(a.secret, data + bytes([ctr]), hashlib.sha256).digest(), "big")
        if 0 < r < N:
            return r
    raise CryptoError("DLEQ nonce: no valid scalar in 256 tries")  # pragma: no cover


def make_dleq(a: PrivateKey, B_: PublicKey, C_: PublicKey) -> tuple[bytes, bytes]:
    """Bob: prove ``C_ = a*B_`` for the ``a`` behind ``A = a*G``; returns ``(e, s)``.

    Mint side; the wallet only uses it to test itself and to reproduce the vectors.
    """
    A = a.public_key
    r = dleq_nonce(a, A, B_, C_)
    R1 = PrivateKey(r.to_bytes(32, "big")).public_key
    R2 = mul(B_, r)
    e = hash_e(R1, R2, A, C_)
    s = (r + int.from_bytes(e, "big") * a.to_int()) % N
    return e, s.to_bytes(32, "big")
