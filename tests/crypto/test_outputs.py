"""Outputs round trip: blind, let a fake mint sign (with DLEQ), unblind, verify."""

import dataclasses

import pytest
from coincurve import PrivateKey

from coco_actors.crypto.bdhke import parse_pubkey, sign_blinded, verify_unblinded
from coco_actors.crypto.dleq import make_dleq, verify_proofs_dleq
from coco_actors.crypto.keysets import derive_keyset_id_v01
from coco_actors.crypto.nut13 import Nut13Deriver
from coco_actors.crypto.outputs import (
    amounts_for,
    make_outputs,
    random_outputs,
    unblind_signatures,
)
from coco_actors.errors import CryptoError, InvalidInputError
from coco_actors.wire import DLEQ, BlindingData, BlindSignature, Keyset

PRIVKEYS = {2**i: PrivateKey.from_int(1000 + i) for i in range(8)}
KEYS = {amount: k.public_key.format().hex() for amount, k in PRIVKEYS.items()}
KEYSET = Keyset(derive_keyset_id_v01(KEYS, "sat"), "sat", KEYS)


def _mint_sign(outputs: list[BlindingData], *, with_dleq: bool = True) -> list[BlindSignature]:
    sigs = []
    for out in outputs:
        k = PRIVKEYS[out.amount]
        B_ = parse_pubkey(out.B_)
        C_ = sign_blinded(B_, k)
        dleq = None
        if with_dleq:
            e, s = make_dleq(k, B_, C_)
            dleq = DLEQ(e.hex(), s.hex())
        sigs.append(BlindSignature(out.amount, KEYSET.id, C_.format().hex(), dleq))
    return sigs


def _flip_last_hex(h: str) -> str:
    return h[:-1] + ("0" if h[-1] != "0" else "1")


def test_amounts_for() -> None:
    assert amounts_for(13) == [1, 4, 8]
    assert amounts_for(0) == []


def test_round_trip_with_dleq() -> None:
    outputs = random_outputs(amounts_for(13), KEYSET.id)
    assert [o.amount for o in outputs] == [1, 4, 8]
    assert len({o.secret for o in outputs}) == 3
    assert all(len(bytes.fromhex(o.secret)) == 32 for o in outputs)
    proofs = unblind_signatures(outputs, _mint_sign(outputs), KEYSET)
    assert [p.amount for p in proofs] == [1, 4, 8]
    for out, proof in zip(outputs, proofs, strict=True):
        assert proof.secret == out.secret and proof.keyset_id == KEYSET.id
        assert verify_unblinded(proof.secret.encode(), parse_pubkey(proof.C),
                                PRIVKEYS[proof.amount])
        assert proof.dleq is not None and proof.dleq.r == out.r
    # the DLEQ travels with the proof and a receiver can check it
    verify_proofs_dleq(proofs, lambda _ks, amount: KEYS[amount])


def test_round_trip_without_dleq() -> None:
    outputs = random_outputs([2, 2], KEYSET.id)
    proofs = unblind_signatures(outputs, _mint_sign(outputs, with_dleq=False), KEYSET)
    assert all(p.dleq is None for p in proofs)
    assert all(verify_unblinded(p.secret.encode(), parse_pubkey(p.C), PRIVKEYS[2])
               for p in proofs)


def test_make_outputs_is_deterministic_from_nut13() -> None:
    deriver = Nut13Deriver(
        "half depart obvious quality work element tank gorilla view sugar picture humble")
    pairs = [deriver.derive(KEYSET.id, c) for c in range(3)]
    first = make_outputs([1, 2, 4], KEYSET.id, pairs)
    again = make_outputs([1, 2, 4], KEYSET.id, pairs)
    assert [o.B_ for o in first] == [o.B_ for o in again]
    assert [(o.secret, o.r) for o in first] == pairs
    assert "secret" not in repr(first[0]) and first[0].r not in repr(first[0])


def test_tampered_dleq_is_rejected_naming_the_index() -> None:
    outputs = random_outputs([1, 2, 4], KEYSET.id)
    sigs = _mint_sign(outputs)
    assert sigs[1].dleq is not None
    sigs[1] = dataclasses.replace(
        sigs[1], dleq=dataclasses.replace(sigs[1].dleq, s=_flip_last_hex(sigs[1].dleq.s)))
    with pytest.raises(CryptoError, match="signature 1"):
        unblind_signatures(outputs, sigs, KEYSET)


def test_signature_with_another_key_and_valid_dleq_is_rejected() -> None:
    """A mint that tags a user with a different key cannot produce a DLEQ for the public one."""
    outputs = random_outputs([4], KEYSET.id)
    rogue = PrivateKey.from_int(424242)
    B_ = parse_pubkey(outputs[0].B_)
    C_ = sign_blinded(B_, rogue)
    e, s = make_dleq(rogue, B_, C_)
    sig = BlindSignature(4, KEYSET.id, C_.format().hex(), DLEQ(e.hex(), s.hex()))
    with pytest.raises(CryptoError, match="signature 0"):
        unblind_signatures(outputs, [sig], KEYSET)


def test_mismatches_are_rejected() -> None:
    outputs = random_outputs([1, 2], KEYSET.id)
    sigs = _mint_sign(outputs)
    with pytest.raises(CryptoError, match="1 signatures for 2 outputs"):
        unblind_signatures(outputs, sigs[:1], KEYSET)
    with pytest.raises(CryptoError, match="amount"):
        unblind_signatures(outputs, [sigs[0], dataclasses.replace(sigs[1], amount=4)], KEYSET)
    with pytest.raises(CryptoError, match="keyset"):
        unblind_signatures(outputs, [sigs[0], dataclasses.replace(sigs[1], keyset_id="00" * 8)],
                           KEYSET)
    with pytest.raises(CryptoError, match="C_"):
        unblind_signatures(outputs, [sigs[0], dataclasses.replace(sigs[1], C_="02" + "00" * 32)],
                           KEYSET)
    other = random_outputs([1, 2], "00" * 8)
    with pytest.raises(InvalidInputError, match="output 0"):
        unblind_signatures(other, sigs, KEYSET)


def test_blank_outputs_take_the_mints_amounts() -> None:
    """NUT-08 change: fewer signatures than blank outputs, amounts set by the mint."""
    blanks = random_outputs([1, 1, 1, 1], KEYSET.id)
    imprinted = [dataclasses.replace(b, amount=a) for b, a in zip(blanks, [4, 8], strict=False)]
    sigs = _mint_sign(imprinted)
    proofs = unblind_signatures(blanks, sigs, KEYSET, blank=True)
    assert [p.amount for p in proofs] == [4, 8]
    assert all(verify_unblinded(p.secret.encode(), parse_pubkey(p.C), PRIVKEYS[p.amount])
               for p in proofs)
    with pytest.raises(CryptoError):
        unblind_signatures(blanks, sigs, KEYSET)  # without blank=True the amounts differ


def test_make_outputs_validates_input() -> None:
    with pytest.raises(InvalidInputError):
        make_outputs([1, 2], KEYSET.id, [("a" * 64, "11" * 32)])
    with pytest.raises(InvalidInputError):
        make_outputs([1], KEYSET.id, [("a" * 64, "00" * 32)])
    with pytest.raises(InvalidInputError):
        make_outputs([-1], KEYSET.id, [("a" * 64, "11" * 32)])
