"""NUT-12 vectors (nuts/tests/12-tests.md): hash_e, deterministic nonce, DLEQ checks."""

import dataclasses

import pytest

from coco_actors.crypto.bdhke import parse_privkey, parse_pubkey
from coco_actors.crypto.dleq import (
    hash_e,
    make_dleq,
    verify_blind_signature_dleq,
    verify_proof_dleq,
    verify_proofs_dleq,
    verify_signature_dleq,
)
from coco_actors.errors import CryptoError
from coco_actors.wire import DLEQ, BlindSignature, Proof

ONE = "020000000000000000000000000000000000000000000000000000000000000001"
G = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"


def _flip_last_hex(h: str) -> str:
    return h[:-1] + ("0" if h[-1] != "0" else "1")


def test_hash_e() -> None:
    points = [parse_pubkey(p) for p in (
        ONE, ONE, ONE, "02a9acc1e48c25eeeb9289b5031cc57da9fe72f3fe2861d264bdc074209b107ba2")]
    assert hash_e(*points).hex() == (
        "a4dc034b74338c28c6bc3ea49731f2a24440fc7c4affc08b31a93fc9fbe6401e")


# --- deterministic nonce derivation ----------------------------------------------------

NONCE_A_PRIV = "0000000000000000000000000000000000000000000000000000000000000002"
NONCE_A = "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5"
NONCE_B_ = "02a9acc1e48c25eeeb9289b5031cc57da9fe72f3fe2861d264bdc074209b107ba2"
NONCE_C_ = "0244eccfc7a348274458bb38044c7f3c389b3c2086c7ec18b5812d2877ab937787"
NONCE_E = "2a16ffee280aff3c429045607f9b8e0bf8b35910c44c1b20b9dfaf01b263d7b3"
NONCE_S = "9df27731238334718d120d4f74611a7c668233f988e687ac3fb188f0a34a2dab"


def test_deterministic_nonce_reproduces_e_and_s() -> None:
    a = parse_privkey(NONCE_A_PRIV)
    assert a.public_key.format().hex() == NONCE_A
    e, s = make_dleq(a, parse_pubkey(NONCE_B_), parse_pubkey(NONCE_C_))
    assert e.hex() == NONCE_E
    assert s.hex() == NONCE_S


def test_deterministic_nonce_proof_verifies() -> None:
    A, B_, C_ = parse_pubkey(NONCE_A), parse_pubkey(NONCE_B_), parse_pubkey(NONCE_C_)
    e, s = bytes.fromhex(NONCE_E), bytes.fromhex(NONCE_S)
    assert verify_signature_dleq(A, B_, C_, e, s)
    assert not verify_signature_dleq(A, B_, C_, e, bytes.fromhex(_flip_last_hex(NONCE_S)))
    assert not verify_signature_dleq(parse_pubkey(G), B_, C_, e, s)  # another key


# --- DLEQ on BlindSignature ------------------------------------------------------------

SIG_B_ = "02a9acc1e48c25eeeb9289b5031cc57da9fe72f3fe2861d264bdc074209b107ba2"
BLIND_SIGNATURE = BlindSignature.from_wire({
    "amount": 8,
    "id": "00882760bfa2eb41",
    "C_": "02a9acc1e48c25eeeb9289b5031cc57da9fe72f3fe2861d264bdc074209b107ba2",
    "dleq": {
        "e": "9818e061ee51d5c8edc3342369a554998ff7b4381c8652d724cdf46429be73d9",
        "s": "9818e061ee51d5c8edc3342369a554998ff7b4381c8652d724cdf46429be73da",
    },
})


def test_blind_signature_dleq_valid() -> None:
    assert verify_blind_signature_dleq(BLIND_SIGNATURE, SIG_B_, G)
    assert BLIND_SIGNATURE.dleq is not None
    assert verify_signature_dleq(
        parse_pubkey(G), parse_pubkey(SIG_B_), parse_pubkey(BLIND_SIGNATURE.C_),
        bytes.fromhex(BLIND_SIGNATURE.dleq.e), bytes.fromhex(BLIND_SIGNATURE.dleq.s))


@pytest.mark.parametrize("field", ["e", "s"])
def test_blind_signature_dleq_tampered(field: str) -> None:
    dleq = BLIND_SIGNATURE.dleq
    assert dleq is not None
    bad = dataclasses.replace(dleq, **{field: _flip_last_hex(getattr(dleq, field))})
    assert not verify_blind_signature_dleq(
        dataclasses.replace(BLIND_SIGNATURE, dleq=bad), SIG_B_, G)


def test_blind_signature_dleq_wrong_context() -> None:
    assert not verify_blind_signature_dleq(BLIND_SIGNATURE, SIG_B_, NONCE_A)  # other key
    assert not verify_blind_signature_dleq(BLIND_SIGNATURE, NONCE_C_, G)  # other B_
    assert not verify_blind_signature_dleq(dataclasses.replace(BLIND_SIGNATURE, dleq=None),
                                           SIG_B_, G)
    assert not verify_blind_signature_dleq(BLIND_SIGNATURE, "02" + "00" * 32, G)


# --- DLEQ on Proof ---------------------------------------------------------------------

PROOF = Proof.from_wire({
    "amount": 1,
    "id": "00882760bfa2eb41",
    "secret": "daf4dd00a2b68a0858a80450f52c8a7d2ccf87d375e43e216e0c571f089f63e9",
    "C": "024369d2d22a80ecf78f3937da9d5f30c1b9f74f0c32684d583cca0fa6a61cdcfc",
    "dleq": {
        "e": "b31e58ac6527f34975ffab13e70a48b6d2b0d35abc4b03f0151f09ee1a9763d4",
        "s": "8fbae004c59e754d71df67e392b6ae4e29293113ddc2ec86592a0431d16306d8",
        "r": "a6d13fcd7a18442e6076f5e1e7c887ad5de40a019824bdfa9fe740d302e8d861",
    },
})


def test_proof_dleq_valid() -> None:
    assert verify_proof_dleq(PROOF, G)


def _tamper_dleq(proof: Proof, field: str) -> Proof:
    assert proof.dleq is not None
    value = getattr(proof.dleq, field)
    return dataclasses.replace(
        proof, dleq=dataclasses.replace(proof.dleq, **{field: _flip_last_hex(value)}))


@pytest.mark.parametrize(
    "tampered",
    [
        dataclasses.replace(PROOF, secret=_flip_last_hex(PROOF.secret)),
        dataclasses.replace(PROOF, C="03" + PROOF.C[2:]),  # -C: still a valid point
        _tamper_dleq(PROOF, "r"),
        _tamper_dleq(PROOF, "e"),
        _tamper_dleq(PROOF, "s"),
    ],
    ids=["secret", "C", "r", "e", "s"],
)
def test_proof_dleq_tampered(tampered: Proof) -> None:
    assert not verify_proof_dleq(tampered, G)


def test_proof_dleq_wrong_key() -> None:
    assert not verify_proof_dleq(PROOF, NONCE_A)


def test_proof_without_dleq_or_r_does_not_verify() -> None:
    assert not verify_proof_dleq(dataclasses.replace(PROOF, dleq=None), G)
    assert PROOF.dleq is not None
    no_r = dataclasses.replace(PROOF, dleq=DLEQ(PROOF.dleq.e, PROOF.dleq.s))
    assert not verify_proof_dleq(no_r, G)


# --- verify_proofs_dleq ----------------------------------------------------------------


def _lookup(keyset_id: str, amount: int) -> str:
    assert keyset_id == "00882760bfa2eb41"
    return G


def test_verify_proofs_dleq_skips_proofs_without_dleq_and_checks_all_others() -> None:
    plain = dataclasses.replace(PROOF, dleq=None)
    verify_proofs_dleq([plain, PROOF, plain, PROOF], _lookup)
    assert PROOF.dleq is not None
    bad = dataclasses.replace(PROOF, dleq=dataclasses.replace(
        PROOF.dleq, s=_flip_last_hex(PROOF.dleq.s)))
    # the bad one comes after a proof without DLEQ: it must still be checked
    with pytest.raises(CryptoError, match="proof 3"):
        verify_proofs_dleq([PROOF, plain, PROOF, bad, bad], _lookup)


def test_verify_proofs_dleq_rejects_dleq_without_r() -> None:
    assert PROOF.dleq is not None
    no_r = dataclasses.replace(PROOF, dleq=DLEQ(PROOF.dleq.e, PROOF.dleq.s))
    with pytest.raises(CryptoError, match="proof 1"):
        verify_proofs_dleq([PROOF, no_r], _lookup)


def test_verify_proofs_dleq_uses_the_looked_up_key() -> None:
    calls: list[tuple[str, int]] = []

    def lookup(keyset_id: str, amount: int) -> str:
        calls.append((keyset_id, amount))
        return NONCE_A  # not the key that signed
    with pytest.raises(CryptoError, match="proof 0"):
        verify_proofs_dleq([PROOF], lookup)
    assert calls == [("00882760bfa2eb41", 1)]


def test_make_dleq_round_trip() -> None:
    a = parse_privkey("7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f")
    B_ = parse_pubkey(NONCE_C_)
    C_ = B_.multiply(a.secret)
    e, s = make_dleq(a, B_, C_)
    assert verify_signature_dleq(a.public_key, B_, C_, e, s)
    # C_ signed by another key: the proof must not carry over
    other = B_.multiply(parse_privkey(NONCE_A_PRIV).secret)
    assert not verify_signature_dleq(a.public_key, B_, other, e, s)
