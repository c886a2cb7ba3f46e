"""Outputs (blinded messages) the wallet sends, and the proofs it gets back.

The :class:`BlindingData` made here must be persisted *before* the request
goes out: it is the only way to unblind the mint's answer afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from coincurve import PrivateKey

from coco_actors.crypto.bdhke import blind_message, parse_privkey, parse_pubkey, unblind_signature
from coco_actors.crypto.dleq import verify_blind_signature_dleq
from coco_actors.errors import CryptoError, InvalidInputError
from coco_actors.wire import DLEQ, BlindingData, BlindSignature, Keyset, Proof, split_amount

amounts_for = split_amount


def make_outputs(
    amounts: Sequence[int], keyset_id: str, secrets_and_rs: Sequence[tuple[str, str]]
) -> list[BlindingData]:
    """Blind each ``(secret, r)`` for its amount; secrets are hashed as UTF-8 text (NUT-00)."""
    if len(amounts) != len(secrets_and_rs):
        raise InvalidInputError(
            f"{len(amounts)} amounts but {len(secrets_and_rs)} (secret, r) pairs")
    out = []
    for i, (amount, (secret, r_hex)) in enumerate(zip(amounts, secrets_and_rs, strict=True)):
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise InvalidInputError(f"output {i}: amount must be a non-negative integer")
        r = parse_privkey(r_hex, f"output {i} blinding factor")
        B_ = blind_message(secret.encode("utf-8"), r)
        out.append(BlindingData(amount, keyset_id, secret, r.secret.hex(), B_.format().hex()))
    return out


def random_outputs(amounts: Sequence[int], keyset_id: str) -> list[BlindingData]:
    """Outputs with fresh random secrets (32 bytes as hex, to avoid fingerprinting) and ``r``."""
    pairs = [(secrets.token_hex(32), PrivateKey().secret.hex()) for _ in amounts]
    return make_outputs(amounts, keyset_id, pairs)


def unblind_signatures(
    outputs: Sequence[BlindingData],
    signatures: Sequence[BlindSignature],
    keyset: Keyset,
    *,
    blank: bool = False,
    require_dleq: bool = False,
) -> list[Proof]:
    """Turn the mint's signatures into proofs, checking each one first.

    Signatures pair with outputs by position. Every DLEQ present must verify;
    the proofs keep it, with our ``r``, so a receiver can check it too. With
    ``require_dleq`` (the mint advertises NUT-12) a signature without one is
    refused like a bad one: whoever strips the proof must not switch the check off. With
    ``blank=True`` (NUT-08 change) the mint may return fewer signatures than
    outputs and sets the amounts itself. Nothing is returned unless all pass.
    """
    if len(signatures) > len(outputs) or (not blank and len(signatures) != len(outputs)):
        raise CryptoError(f"mint returned {len(signatures)} signatures for {len(outputs)} outputs")
    proofs = []
    for i, (out, sig) in enumerate(zip(outputs, signatures, strict=False)):
        if out.keyset_id != keyset.id:
            raise InvalidInputError(f"output {i} is for keyset {out.keyset_id}, not {keyset.id}")
        if sig.keyset_id != keyset.id:
            raise CryptoError(f"signature {i}: keyset {sig.keyset_id}, expected {keyset.id}")
        if not blank and sig.amount != out.amount:
            raise CryptoError(f"signature {i}: amount {sig.amount}, expected {out.amount}")
        if sig.amount not in keyset.keys:
            raise CryptoError(f"signature {i}: keyset {keyset.id} has no key for {sig.amount}")
        A_hex = keyset.keys[sig.amount]
        A = parse_pubkey(A_hex, f"keyset {keyset.id} key for {sig.amount}")
        try:
            C_ = parse_pubkey(sig.C_, f"signature {i} C_")
        except InvalidInputError as exc:
            raise CryptoError(str(exc)) from None
        r = parse_privkey(out.r, f"output {i} blinding factor")
        dleq = None
        if sig.dleq is None and require_dleq:
            raise CryptoError(f"signature {i}: no DLEQ proof from a NUT-12 mint"
                              f" (amount {sig.amount})")
        if sig.dleq is not None:
            if not verify_blind_signature_dleq(sig, out.B_, A_hex):
                raise CryptoError(f"signature {i}: invalid DLEQ proof (amount {sig.amount})")
            dleq = DLEQ(e=sig.dleq.e, s=sig.dleq.s, r=out.r)
        C = unblind_signature(C_, r, A)
        proofs.append(Proof(sig.amount, keyset.id, out.secret, C.format().hex(), dleq=dleq))
    return proofs
