"""Pure Cashu cryptography: no IO, no state beyond what a call is given.

Blinding and unblinding (NUT-00), keyset ids and fees (NUT-01/02), DLEQ
proofs (NUT-12), deterministic secrets (NUT-13), and NUT-10 secrets with the
NUT-11 P2PK rules and BIP340 Schnorr signatures.
"""

from coco_actors.crypto.bdhke import (
    blind_message,
    hash_to_curve,
    parse_privkey,
    parse_pubkey,
    secret_to_y,
    sign_blinded,
    unblind_signature,
    verify_unblinded,
)
from coco_actors.crypto.dleq import (
    hash_e,
    make_dleq,
    verify_blind_signature_dleq,
    verify_proof_dleq,
    verify_proofs_dleq,
    verify_signature_dleq,
)
from coco_actors.crypto.keysets import (
    derive_keyset_id,
    derive_keyset_id_v00,
    derive_keyset_id_v01,
    fee_for,
    validate_keys,
    verify_keyset_id,
)
from coco_actors.crypto.nut11 import (
    P2PKConditions,
    SigFlag,
    WellKnownSecret,
    build_secret,
    check_pubkey,
    p2pk_conditions,
    p2pk_secret,
    parse_secret,
    schnorr_sign,
    schnorr_verify,
    sig_all_message,
)
from coco_actors.crypto.nut13 import Nut13Deriver, keyset_id_int
from coco_actors.crypto.outputs import (
    amounts_for,
    make_outputs,
    random_outputs,
    unblind_signatures,
)

__all__ = [
    "Nut13Deriver",
    "P2PKConditions",
    "SigFlag",
    "WellKnownSecret",
    "build_secret",
    "check_pubkey",
    "p2pk_conditions",
    "p2pk_secret",
    "parse_secret",
    "schnorr_sign",
    "schnorr_verify",
    "sig_all_message",
    "amounts_for",
    "blind_message",
    "derive_keyset_id",
    "derive_keyset_id_v00",
    "derive_keyset_id_v01",
    "fee_for",
    "hash_e",
    "hash_to_curve",
    "keyset_id_int",
    "make_dleq",
    "make_outputs",
    "parse_privkey",
    "parse_pubkey",
    "random_outputs",
    "secret_to_y",
    "sign_blinded",
    "unblind_signature",
    "unblind_signatures",
    "validate_keys",
    "verify_blind_signature_dleq",
    "verify_keyset_id",
    "verify_proof_dleq",
    "verify_proofs_dleq",
    "verify_signature_dleq",
    "verify_unblinded",
]
