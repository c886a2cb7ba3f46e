"""Fuzzing the token decoder: whatever text a user pastes, ``decode`` returns a Token or
raises a TokenError, nothing else (property-based, with hypothesis; bounded examples).

The inputs are built to get past each layer of the decoder: the prefix, the base64, the
CBOR or JSON, then the token's own shape, with valid tokens mutated byte by byte.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import cbor2
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from coco_actors.errors import TokenError
from coco_actors.tokens import Token, decode, decode_binary, encode_v4, encode_v4_binary
from coco_actors.wire import DLEQ, Proof

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

PROOF = Proof(amount=8, keyset_id="00ad268c4d1f5826", secret="s" * 16,
              C="02" + "ab" * 32, dleq=DLEQ(e="11" * 32, s="22" * 32, r="33" * 32),
              witness='{"signatures": []}')
TOKEN = Token(mint="http://127.0.0.1:3338", proofs=(PROOF,), unit="sat", memo="hi")
V4 = encode_v4(TOKEN)
V3 = "cashuA" + base64.urlsafe_b64encode(json.dumps({
    "token": [{"mint": TOKEN.mint, "proofs": [{
        "amount": 8, "id": PROOF.keyset_id, "secret": PROOF.secret, "C": PROOF.C}]}],
    "unit": "sat"}).encode()).decode()


def _decodes_or_refuses(text: Any) -> None:
    try:
        token = decode(text)
    except TokenError:
        return
    assert isinstance(token, Token) and token.proofs and token.amount > 0
    assert all(isinstance(p, Proof) for p in token.proofs)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Values of every CBOR/JSON type, nested a little, with the token's field names as keys.
_KEYS = st.sampled_from(["m", "u", "d", "t", "i", "p", "a", "s", "c", "w", "e", "r",
                         "token", "mint", "proofs", "amount", "id", "secret", "C", "dleq",
                         "unit", "memo", "witness"])
_LEAVES = (st.none() | st.booleans() | st.integers(min_value=-(1 << 70), max_value=1 << 70)
           | st.floats(allow_nan=True) | st.text(max_size=40) | st.binary(max_size=40))
_VALUES = st.recursive(_LEAVES, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(_KEYS | st.text(max_size=5), inner, max_size=6),
                       max_leaves=30)
_JSON_LEAVES = (st.none() | st.booleans() | st.integers(min_value=-(1 << 70), max_value=1 << 70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
_JSON_VALUES = st.recursive(_JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                            | st.dictionaries(_KEYS | st.text(max_size=5), inner, max_size=6),
                            max_leaves=30)


def _v4_shaped(draw: st.DrawFn) -> dict[str, Any]:
    """A V4 map whose fields are each right or wrong."""
    proof = {"a": draw(st.integers(min_value=-3, max_value=1 << 65) | _VALUES),
             "s": draw(st.text(max_size=20) | _VALUES),
             "c": draw(st.sampled_from([bytes.fromhex(PROOF.C), b"\x04" * 33, b"\x02"])
                       | _VALUES)}
    if draw(st.booleans()):
        proof["d"] = draw(st.dictionaries(st.sampled_from(["e", "s", "r"]),
                                          st.binary(min_size=31, max_size=33) | _VALUES))
    group = {"i": draw(st.binary(min_size=7, max_size=34) | _VALUES),
             "p": draw(st.lists(st.just(proof) | _VALUES, max_size=3) | _VALUES)}
    return {"m": draw(st.sampled_from([TOKEN.mint, "", "/"]) | _VALUES),
            "u": draw(st.just("sat") | _VALUES),
            "t": draw(st.lists(st.just(group) | _VALUES, max_size=3) | _VALUES)}


@FUZZ
@given(st.text(max_size=300))
@example("cashuB")
@example("cashuA=")
@example("cashu:")
@example("cashuBo2F0gaJhaUgA_w")
def test_any_text_decodes_or_is_a_token_error(text: str) -> None:
    _decodes_or_refuses(text)


@FUZZ
@given(st.sampled_from(["cashuA", "cashuB", "cashu:cashuB", "CASHU:cashuA", "cashuC"]),
       st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=",
               max_size=200))
def test_any_base64_after_a_prefix(prefix: str, payload: str) -> None:
    _decodes_or_refuses(prefix + payload)


@FUZZ
@given(_VALUES)
def test_any_cbor_value_as_a_v4_token(value: Any) -> None:
    raw = cbor2.dumps(value)
    _decodes_or_refuses("cashuB" + _b64(raw))
    try:
        assert decode_binary(b"crawB" + raw).proofs
    except TokenError:
        return


@FUZZ
@given(st.data())
def test_a_v4_token_with_fields_right_or_wrong(data: st.DataObject) -> None:
    raw = cbor2.dumps(data.draw(st.composite(_v4_shaped)()))
    _decodes_or_refuses("cashuB" + _b64(raw))


@FUZZ
@given(_JSON_VALUES)
def test_any_json_value_as_a_v3_token(value: Any) -> None:
    _decodes_or_refuses("cashuA" + _b64(json.dumps(value).encode()))


@FUZZ
@given(st.lists(_JSON_VALUES, max_size=3), _JSON_VALUES, _JSON_VALUES)
def test_a_v3_token_with_proofs_of_any_shape(proofs: list[Any], mint: Any, unit: Any) -> None:
    obj = {"token": [{"mint": mint, "proofs": proofs}], "unit": unit}
    _decodes_or_refuses("cashuA" + _b64(json.dumps(obj).encode()))


@FUZZ
@given(st.sampled_from([V4, V3]), st.data())
def test_a_valid_token_mutated(token: str, data: st.DataObject) -> None:
    """Flip, drop, insert or cut characters of a valid token (or of its decoded bytes)."""
    payload = bytearray(base64.urlsafe_b64decode(token[6:] + "=" * (-len(token[6:]) % 4)))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        if not payload:
            break
        at = data.draw(st.integers(min_value=0, max_value=len(payload) - 1))
        action = data.draw(st.sampled_from(["flip", "drop", "insert", "cut"]))
        if action == "flip":
            payload[at] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
        elif action == "drop":
            del payload[at]
        elif action == "insert":
            payload.insert(at, data.draw(st.integers(min_value=0, max_value=255)))
        else:
            del payload[at:]
    _decodes_or_refuses(token[:6] + _b64(bytes(payload)))


def test_the_fuzzed_tokens_decode_unmutated() -> None:
    """The seeds of the mutations are valid: a refusal above is of the mutation."""
    assert decode(V4) == TOKEN
    assert decode_binary(encode_v4_binary(TOKEN)) == TOKEN
    assert decode(V3).amount == 8
