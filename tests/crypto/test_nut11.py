"""NUT-10/11: every vector of nuts/tests/11-test.md (valid and invalid), and the
wallet-side rules (building locks, choosing signers, Schnorr round trips)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from coco_actors.crypto.nut11 import (
    Pathway,
    SigFlag,
    check_pubkey,
    p2pk_conditions,
    p2pk_secret,
    parse_secret,
    public_key_of,
    schnorr_sign,
    schnorr_verify,
    sig_all_message,
    signers_for,
    verify_p2pk,
    verify_sig_all,
    witness_json,
)
from coco_actors.errors import InvalidInputError

DATA = json.loads((Path(__file__).parent / "nut11_vectors.json").read_text())
V: dict[str, Any] = DATA["vectors"]
NOW = int(time.time())


def _proof(name: str) -> tuple[str, str | None]:
    p = V[name]
    return p["secret"], p.get("witness")


@pytest.mark.parametrize(("name", "valid"), [
    ("multisig_base_no_witness", False),
    ("multisig_locktime_valid", True),
    ("multisig_refund_valid", True),
    ("sig_inputs_valid", True),
    ("sig_inputs_other_secret", False),
    ("sig_inputs_2_of_3_valid", True),
    ("sig_inputs_2_of_3_one_sig", False),
    ("refund_past_locktime_valid", True),
    ("refund_future_locktime", False),
])
def test_sig_inputs_vectors(name: str, valid: bool) -> None:
    secret, witness = _proof(name)
    assert verify_p2pk(secret, witness, NOW) is valid


def _swap(name: str) -> tuple[list[tuple[str, str, str | None]], list[tuple[int, str]]]:
    req = V[name]
    inputs = [(p["secret"], p["C"], p.get("witness")) for p in req["inputs"]]
    outputs = [(o["amount"], o["B_"]) for o in req["outputs"]]
    return inputs, outputs


@pytest.mark.parametrize(("name", "valid"), [
    ("swap_sig_all_example", True),
    ("swap_sig_all_valid", True),
    ("swap_sig_all_tags_differ", False),
    ("swap_sig_all_multisig_valid", True),
    ("swap_sig_all_refund_valid", True),
    ("swap_htlc_valid", True),
    ("swap_htlc_refund_before_locktime", False),
    ("swap_htlc_multisig_refund_valid", True),
    ("melt_sig_all_example", True),
    ("melt_sig_all_valid", True),
    ("melt_sig_all_multisig_valid", True),
])
def test_sig_all_vectors(name: str, valid: bool) -> None:
    inputs, outputs = _swap(name)
    assert verify_sig_all(inputs, outputs, NOW, V[name].get("quote")) is valid


@pytest.mark.parametrize("name", ["swap_sig_all_example", "melt_sig_all_example"])
def test_sig_all_message_vectors(name: str) -> None:
    inputs, outputs = _swap(name)
    msg = sig_all_message([(s, c) for s, c, _ in inputs], outputs, V[name].get("quote"))
    assert msg == DATA["messages"][name]["msg"]
    assert hashlib.sha256(msg.encode()).hexdigest() == DATA["messages"][name]["sha256"]


def test_sig_all_input_is_not_valid_alone() -> None:
    """A SIG_ALL signature covers the transaction: checked per input it must fail."""
    inputs, _ = _swap("swap_sig_all_valid")
    secret, _, witness = inputs[0]
    assert verify_p2pk(secret, witness, NOW) is False


def test_vector_conditions_parse() -> None:
    cond = p2pk_conditions(_parsed(V["multisig_locktime_valid"]["secret"]))
    assert cond.sigflag == SigFlag.SIG_INPUTS
    assert cond.n_sigs == 2 and len(cond.lock_keys) == 3
    assert cond.locktime == 21 and len(cond.refund_keys) == 2 and cond.n_sigs_refund == 1
    assert cond.pathways(NOW) == (Pathway.LOCK, Pathway.REFUND)
    assert cond.pathways(20) == (Pathway.LOCK,)


def _parsed(secret: str) -> Any:
    parsed = parse_secret(secret)
    assert parsed is not None
    return parsed


# --- malformed secrets (NUT-10 tag format, NUT-11 rules) ----------------------------------

KEY_A = public_key_of(b"\x01" * 32)
KEY_B = public_key_of(b"\x02" * 32)


def _secret(tags: list[list[Any]], data: str = KEY_A) -> str:
    return json.dumps(["P2PK", {"nonce": "00", "data": data, "tags": tags}])


@pytest.mark.parametrize("tags", [
    [[]],                                   # a tag needs a name
    [["locktime", 1765300829]],             # strings only
    [["locktime", ""]],                     # non-empty strings only
])
def test_nut10_malformed_tags(tags: list[list[Any]]) -> None:
    with pytest.raises(InvalidInputError):
        parse_secret(_secret(tags))


@pytest.mark.parametrize("tags", [
    [["sigflag", "SIG_ALL"], ["sigflag", "SIG_ALL"]],       # a tag twice
    [["sigflag", "SIG_SOME"]],                             # unknown flag
    [["n_sigs", "0"]],                                     # not positive
    [["n_sigs", "2"]],                                     # more than the keys
    [["n_sigs", "²"]],                                     # not an ASCII integer
    [["pubkeys", "03" + KEY_A[2:]]],                       # same x as data
    [["refund", KEY_B, KEY_B]],                            # twice in one pathway
    [["refund", KEY_B], ["n_sigs_refund", "2"]],           # more than the refund keys
    [["pubkeys", "02" + "00" * 32]],                       # not on the curve
])
def test_nut11_malformed(tags: list[list[Any]]) -> None:
    with pytest.raises(InvalidInputError):
        p2pk_conditions(_parsed(_secret(tags)))


def test_same_key_allowed_in_both_pathways() -> None:
    cond = p2pk_conditions(_parsed(_secret([["locktime", "1"], ["refund", "03" + KEY_A[2:]]])))
    assert cond.lock_keys == (KEY_A,) and cond.refund_keys == ("03" + KEY_A[2:],)


def test_plain_secret_is_not_well_known() -> None:
    assert parse_secret(os.urandom(32).hex()) is None
    assert parse_secret('["P2PK"]') is None
    assert verify_p2pk("plain", None, NOW) is True


def test_locktime_not_a_unix_time_is_permanent() -> None:
    cond = p2pk_conditions(_parsed(_secret([["locktime", "soon"], ["refund", KEY_B]])))
    assert cond.locktime is None and cond.pathways(NOW) == (Pathway.LOCK,)


# --- Schnorr and the wallet side ------------------------------------------------------------


def test_schnorr_round_trip_and_tamper() -> None:
    priv = os.urandom(32)
    sig = schnorr_sign(priv, b"message")
    assert len(sig) == 128
    assert schnorr_verify(public_key_of(priv), b"message", sig)
    assert not schnorr_verify(public_key_of(priv), b"messagf", sig)
    assert not schnorr_verify(KEY_A, b"message", sig)
    assert not schnorr_verify("zz", b"message", sig)
    assert not schnorr_verify(public_key_of(priv), b"message", sig[:-2])
    # NUT-11 compares keys by x coordinate: the other parity verifies too
    pub = public_key_of(priv)
    flipped = ("03" if pub[:2] == "02" else "02") + pub[2:]
    assert schnorr_verify(flipped, b"message", sig)


def test_schnorr_sign_refuses_bad_keys() -> None:
    with pytest.raises(InvalidInputError):
        schnorr_sign(b"\x00" * 31, b"m")
    with pytest.raises(InvalidInputError):
        schnorr_sign(b"\x00" * 32, b"m")


@pytest.mark.parametrize("bad", ["", "02", "04" + "11" * 32, "02" + "00" * 32, "xyz", 5])
def test_check_pubkey_refuses(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        check_pubkey(bad)


def test_built_lock_is_spent_by_the_chosen_signers() -> None:
    privs = [os.urandom(32) for _ in range(3)]
    pubs = [public_key_of(k) for k in privs]
    refund = os.urandom(32)
    secret = p2pk_secret(pubs, n_sigs=2, locktime=NOW + 3600, refund=[public_key_of(refund)])
    s1, s2 = p2pk_secret(pubs), p2pk_secret(pubs)
    assert s1 != s2  # a fresh nonce each
    cond = p2pk_conditions(_parsed(secret))
    held = {pubs[0]: privs[0], pubs[2]: privs[2], public_key_of(refund): refund}
    plan = signers_for(cond, NOW, held.get)
    assert plan is not None and plan[0] == Pathway.LOCK and len(plan[1]) == 2
    witness = witness_json([schnorr_sign(k, secret.encode()) for k in plan[1]])
    assert verify_p2pk(secret, witness, NOW)
    # one lock key only: not before the locktime; the refund key after it
    only_refund = {pubs[0]: privs[0], public_key_of(refund): refund}
    assert signers_for(cond, NOW, only_refund.get) is None
    later = NOW + 7200
    plan = signers_for(cond, later, only_refund.get)
    assert plan is not None and plan[0] == Pathway.REFUND
    witness = witness_json([schnorr_sign(k, secret.encode()) for k in plan[1]])
    assert verify_p2pk(secret, witness, later) and not verify_p2pk(secret, witness, NOW)


def test_expired_lock_without_refund_is_open() -> None:
    secret = p2pk_secret([KEY_A], locktime=1)
    plan = signers_for(p2pk_conditions(_parsed(secret)), NOW, lambda _: None)
    assert plan == (Pathway.OPEN, [])
    assert verify_p2pk(secret, None, NOW)


@pytest.mark.parametrize("kwargs", [
    {"n_sigs": 2}, {"n_sigs": 0}, {"refund": [KEY_B], "n_sigs_refund": 3},
])
def test_p2pk_secret_refuses_impossible_locks(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        p2pk_secret([KEY_A], **kwargs)
