"""NUT-00 token codec: the serialization vectors of 00-tests.md, round trips and bad input."""

from __future__ import annotations

import base64
import json
from typing import Any

import cbor2
import pytest

from coco_actors.errors import TokenError
from coco_actors.tokens import (
    Token,
    decode,
    decode_binary,
    encode_v4,
    encode_v4_binary,
    resolve_keyset_ids,
)
from coco_actors.wire import DLEQ, Proof

# --- vectors from nuts/tests/00-tests.md ---------------------------------------------

V3_PAYLOAD = (
    "eyJ0b2tlbiI6W3sibWludCI6Imh0dHBzOi8vODMzMy5zcGFjZTozMzM4IiwicHJvb2ZzIjpbeyJhbW91bnQiOjIs"
    "ImlkIjoiMDA5YTFmMjkzMjUzZTQxZSIsInNlY3JldCI6IjQwNzkxNWJjMjEyYmU2MWE3N2UzZTZkMmFlYjRjNzI3"
    "OTgwYmRhNTFjZDA2YTZhZmMyOWUyODYxNzY4YTc4MzciLCJDIjoiMDJiYzkwOTc5OTdkODFhZmIyY2M3MzQ2YjVl"
    "NDM0NWE5MzQ2YmQyYTUwNmViNzk1ODU5OGE3MmYwY2Y4NTE2M2VhIn0seyJhbW91bnQiOjgsImlkIjoiMDA5YTFm"
    "MjkzMjUzZTQxZSIsInNlY3JldCI6ImZlMTUxMDkzMTRlNjFkNzc1NmIwZjhlZTBmMjNhNjI0YWNhYTNmNGUwNDJm"
    "NjE0MzNjNzI4YzcwNTdiOTMxYmUiLCJDIjoiMDI5ZThlNTA1MGI4OTBhN2Q2YzA5NjhkYjE2YmMxZDVkNWZhMDQw"
    "ZWExZGUyODRmNmVjNjlkNjEyOTlmNjcxMDU5In1dfV0sInVuaXQiOiJzYXQiLCJtZW1vIjoiVGhhbmsgeW91LiJ9"
)
V3_TOKEN = "cashuA" + V3_PAYLOAD

# The same proofs with memo "Thank you very much.", once padded and once not.
_V3_LONG_MEMO_PAYLOAD = (
    "eyJ0b2tlbiI6W3sibWludCI6Imh0dHBzOi8vODMzMy5zcGFjZTozMzM4IiwicHJvb2ZzIjpbeyJhbW91bnQiOjIs"
    "ImlkIjoiMDA5YTFmMjkzMjUzZTQxZSIsInNlY3JldCI6IjQwNzkxNWJjMjEyYmU2MWE3N2UzZTZkMmFlYjRjNzI3"
    "OTgwYmRhNTFjZDA2YTZhZmMyOWUyODYxNzY4YTc4MzciLCJDIjoiMDJiYzkwOTc5OTdkODFhZmIyY2M3MzQ2YjVl"
    "NDM0NWE5MzQ2YmQyYTUwNmViNzk1ODU5OGE3MmYwY2Y4NTE2M2VhIn0seyJhbW91bnQiOjgsImlkIjoiMDA5YTFm"
    "MjkzMjUzZTQxZSIsInNlY3JldCI6ImZlMTUxMDkzMTRlNjFkNzc1NmIwZjhlZTBmMjNhNjI0YWNhYTNmNGUwNDJm"
    "NjE0MzNjNzI4YzcwNTdiOTMxYmUiLCJDIjoiMDI5ZThlNTA1MGI4OTBhN2Q2YzA5NjhkYjE2YmMxZDVkNWZhMDQw"
    "ZWExZGUyODRmNmVjNjlkNjEyOTlmNjcxMDU5In1dfV0sInVuaXQiOiJzYXQiLCJtZW1vIjoiVGhhbmsgeW91IHZl"
    "cnkgbXVjaC4ifQ"
)
V3_PADDED = "cashuA" + _V3_LONG_MEMO_PAYLOAD + "=="
V3_UNPADDED = "cashuA" + _V3_LONG_MEMO_PAYLOAD

V3_PROOFS = (
    Proof(
        amount=2,
        keyset_id="009a1f293253e41e",
        secret="407915bc212be61a77e3e6d2aeb4c727980bda51cd06a6afc29e2861768a7837",
        C="02bc9097997d81afb2cc7346b5e4345a9346bd2a506eb7958598a72f0cf85163ea",
    ),
    Proof(
        amount=8,
        keyset_id="009a1f293253e41e",
        secret="fe15109314e61d7756b0f8ee0f23a624acaa3f4e042f61433c728c7057b931be",
        C="029e8e5050b890a7d6c0968db16bc1d5d5fa040ea1de284f6ec69d61299f671059",
    ),
)

V4_SINGLE = (
    "cashuBpGF0gaJhaUgArSaMTR9YJmFwgaNhYQFhc3hAOWE2ZGJiODQ3YmQyMzJiYTc2ZGIwZGYxOTcyMTZiMjlkM2I4"
    "Y2MxNDU1M2NkMjc4MjdmYzFjYzk0MmZlZGI0ZWFjWCEDhhhUP_trhpXfStS6vN6So0qWvc2X3O4NfM-Y1HISZ5Jh"
    "ZGlUaGFuayB5b3VhbXVodHRwOi8vbG9jYWxob3N0OjMzMzhhdWNzYXQ="
)
V4_SINGLE_TOKEN = Token(
    mint="http://localhost:3338",
    unit="sat",
    memo="Thank you",
    proofs=(
        Proof(
            amount=1,
            keyset_id="00ad268c4d1f5826",
            secret="9a6dbb847bd232ba76db0df197216b29d3b8cc14553cd27827fc1cc942fedb4e",
            C="038618543ffb6b8695df4ad4babcde92a34a96bdcd97dcee0d7ccf98d472126792",
        ),
    ),
)

V4_MULTI = (
    "cashuBo2F0gqJhaUgA_9SLj17PgGFwgaNhYQFhc3hAYWNjMTI0MzVlN2I4NDg0YzNjZjE4NTAxNDkyMThhZjkwZjcx"
    "NmE1MmJmNGE1ZWQzNDdlNDhlY2MxM2Y3NzM4OGFjWCECRFODGd5IXVW-07KaZCvuWHk3WrnnpiDhHki6SCQh88-i"
    "YWlIAK0mjE0fWCZhcIKjYWECYXN4QDEzMjNkM2Q0NzA3YTU4YWQyZTIzYWRhNGU5ZjFmNDlmNWE1YjRhYzdiNzA4"
    "ZWIwZDYxZjczOGY0ODMwN2U4ZWVhY1ghAjRWqhENhLSsdHrr2Cw7AFrKUL9Ffr1XN6RBT6w659lNo2FhAWFzeEA1"
    "NmJjYmNiYjdjYzY0MDZiM2ZhNWQ1N2QyMTc0ZjRlZmY4YjQ0MDJiMTc2OTI2ZDNhNTdkM2MzZGNiYjU5ZDU3YWNY"
    "IQJzEpxXGeWZN5qXSmJjY8MzxWyvwObQGr5G1YCCgHicY2FtdWh0dHA6Ly9sb2NhbGhvc3Q6MzMzOGF1Y3NhdA"
)
V4_MULTI_TOKEN = Token(
    mint="http://localhost:3338",
    unit="sat",
    proofs=(
        Proof(
            amount=1,
            keyset_id="00ffd48b8f5ecf80",
            secret="acc12435e7b8484c3cf1850149218af90f716a52bf4a5ed347e48ecc13f77388",
            C="0244538319de485d55bed3b29a642bee5879375ab9e7a620e11e48ba482421f3cf",
        ),
        Proof(
            amount=2,
            keyset_id="00ad268c4d1f5826",
            secret="1323d3d4707a58ad2e23ada4e9f1f49f5a5b4ac7b708eb0d61f738f48307e8ee",
            C="023456aa110d84b4ac747aebd82c3b005aca50bf457ebd5737a4414fac3ae7d94d",
        ),
        Proof(
            amount=1,
            keyset_id="00ad268c4d1f5826",
            secret="56bcbcbb7cc6406b3fa5d57d2174f4eff8b4402b176926d3a57d3c3dcbb59d57",
            C="0273129c5719e599379a974a626363c333c56cafc0e6d01abe46d5808280789c63",
        ),
    ),
)

V4_RAW_SINGLE = bytes.fromhex(
    "6372617742a4617481a261694800ad268c4d1f5826617081a36161016173784039613664626238343762643233"
    "32626137366462306466313937323136623239643362386363313435353363643237383237666331636339343266"
    "656462346561635821038618543ffb6b8695df4ad4babcde92a34a96bdcd97dcee0d7ccf98d472126792616469"
    "5468616e6b20796f75616d75687474703a2f2f6c6f63616c686f73743a33333338617563736174"
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _v4_payload(token_text: str) -> bytes:
    body = token_text.removeprefix("cashuB").rstrip("=")
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def _v3(obj: Any) -> str:
    return "cashuA" + _b64(json.dumps(obj).encode())


def _v4(obj: Any) -> str:
    return "cashuB" + _b64(cbor2.dumps(obj))


FULL_ID_A = "01" + "ab" * 7 + "11" * 25  # version 01, 33 bytes
FULL_ID_B = "01" + "ab" * 7 + "22" * 25  # shares FULL_ID_A's short id
FULL_ID_C = "01" + "cd" * 7 + "33" * 25


def _proof(amount: int, keyset_id: str, n: int, **kw: Any) -> Proof:
    return Proof(amount=amount, keyset_id=keyset_id, secret=f"secret-{n}",
                 C="02" + f"{n:02x}" * 32, **kw)


# --- V3 -------------------------------------------------------------------------------


def test_v3_serialization_vector_decodes_to_its_json() -> None:
    assert decode(V3_TOKEN) == Token(mint="https://8333.space:3338", proofs=V3_PROOFS,
                                     unit="sat", memo="Thank you.")


@pytest.mark.parametrize("text", ["casshuA" + V3_PAYLOAD, V3_PAYLOAD],
                         ids=["casshuA", "no-prefix"])
def test_v3_vector_with_wrong_prefix_is_refused(text: str) -> None:
    with pytest.raises(TokenError, match="prefix"):
        decode(text)


@pytest.mark.parametrize("text", [V3_PADDED, V3_UNPADDED], ids=["padded", "unpadded"])
def test_v3_padded_and_unpadded_vectors_decode(text: str) -> None:
    token = decode(text)
    assert token.memo == "Thank you very much."
    assert token.proofs == V3_PROOFS
    assert token.mint == "https://8333.space:3338"


def test_v3_standard_base64_alphabet_is_accepted() -> None:
    obj = {"token": [{"mint": "https://8333.space:3338",
                      "proofs": [V3_PROOFS[0].to_wire()]}], "memo": "??? >>>"}
    payload = base64.b64encode(json.dumps(obj).encode()).decode()
    assert "+" in payload and "/" in payload  # the test is only meaningful with these
    token = decode("cashuA" + payload)
    assert token.memo == "??? >>>"
    assert token.proofs == V3_PROOFS[:1]
    assert token.unit == "sat"  # V3 unit is optional


def test_v3_multi_mint_token_is_refused() -> None:
    obj = {"token": [{"mint": "https://a.example", "proofs": [V3_PROOFS[0].to_wire()]},
                     {"mint": "https://b.example", "proofs": [V3_PROOFS[1].to_wire()]}]}
    with pytest.raises(TokenError, match="multi-mint tokens are not supported"):
        decode(_v3(obj))


def test_v3_entries_of_the_same_mint_are_merged() -> None:
    obj = {"token": [{"mint": "https://a.example/", "proofs": [V3_PROOFS[0].to_wire()]},
                     {"mint": "https://a.example", "proofs": [V3_PROOFS[1].to_wire()]}]}
    token = decode(_v3(obj))
    assert token.mint == "https://a.example"
    assert token.proofs == V3_PROOFS


def test_v3_dleq_and_witness_are_read() -> None:
    dleq = DLEQ(e="aa" * 32, s="bb" * 32, r="cc" * 32)
    proof = Proof(amount=4, keyset_id=FULL_ID_A, secret="s", C="03" + "11" * 32,
                  dleq=dleq, witness='{"signatures":[]}')
    obj = {"token": [{"mint": "https://a.example",
                      "proofs": [proof.to_wire(include_dleq=True)]}]}
    assert decode(_v3(obj)).proofs == (proof,)


# --- V4 vectors -----------------------------------------------------------------------


def test_v4_single_keyset_vector_encodes_byte_for_byte() -> None:
    encoded = encode_v4(V4_SINGLE_TOKEN)
    # The vector is published with base64 padding; we emit none, as NUT-00 allows.
    assert encoded == V4_SINGLE.rstrip("=")
    assert _v4_payload(encoded) == _v4_payload(V4_SINGLE)


def test_v4_single_keyset_vector_decodes() -> None:
    assert decode(V4_SINGLE) == V4_SINGLE_TOKEN
    assert decode(V4_SINGLE.rstrip("=")) == V4_SINGLE_TOKEN


def test_v4_multi_keyset_vector_encodes_byte_for_byte() -> None:
    assert encode_v4(V4_MULTI_TOKEN) == V4_MULTI


def test_v4_multi_keyset_vector_decodes() -> None:
    token = decode(V4_MULTI)
    assert token == V4_MULTI_TOKEN
    assert token.keyset_ids == ("00ffd48b8f5ecf80", "00ad268c4d1f5826")
    assert token.amount == 4


def test_v4_raw_binary_vector() -> None:
    assert encode_v4_binary(V4_SINGLE_TOKEN) == V4_RAW_SINGLE
    assert decode_binary(V4_RAW_SINGLE) == V4_SINGLE_TOKEN


@pytest.mark.parametrize("data", [b"", b"cashuB", b"crawA" + V4_RAW_SINGLE[5:],
                                  b"crawB", b"crawB\xff", V4_RAW_SINGLE + b"\x00"])
def test_malformed_raw_binary_token_is_refused(data: bytes) -> None:
    with pytest.raises(TokenError):
        decode_binary(data)


# --- V4 encoding ----------------------------------------------------------------------


def test_v4_round_trip_with_dleq_and_witness() -> None:
    token = Token(
        mint="https://mint.example",
        unit="usd",
        memo="for lunch",
        proofs=(
            _proof(1, "00ad268c4d1f5826", 1,
                   dleq=DLEQ(e="e1" * 32, s="51" * 32, r="a1" * 32),
                   witness='{"signatures":["abcd"]}'),
            _proof(2, "00ad268c4d1f5826", 2, dleq=DLEQ(e="e2" * 32, s="52" * 32)),
            _proof(4, "00ad268c4d1f5826", 3),
        ),
    )
    encoded = encode_v4(token)
    assert encoded.startswith("cashuB") and "=" not in encoded
    assert decode(encoded) == token
    proofs = cbor2.loads(_v4_payload(encoded))["t"][0]["p"]
    assert proofs[0]["d"] == {"e": b"\xe1" * 32, "s": b"\x51" * 32, "r": b"\xa1" * 32}
    assert proofs[0]["w"] == '{"signatures":["abcd"]}'


def test_v4_encoding_without_dleq_keeps_witness() -> None:
    proof = _proof(1, "00ad268c4d1f5826", 1, dleq=DLEQ(e="e1" * 32, s="51" * 32, r="a1" * 32),
                   witness="w")
    token = Token(mint="https://mint.example", proofs=(proof,))
    decoded = decode(encode_v4(token, include_dleq=False))
    assert decoded.proofs[0].dleq is None
    assert decoded.proofs[0].witness == "w"


def test_v4_groups_proofs_by_keyset_preserving_order() -> None:
    p1, p2, p3 = (_proof(1, "00" + "11" * 7, 1), _proof(2, "00" + "22" * 7, 2),
                  _proof(4, "00" + "11" * 7, 3))
    token = Token(mint="https://mint.example", proofs=(p1, p2, p3))
    obj = cbor2.loads(_v4_payload(encode_v4(token)))
    assert [g["i"].hex() for g in obj["t"]] == ["00" + "11" * 7, "00" + "22" * 7]
    assert [[p["s"] for p in g["p"]] for g in obj["t"]] == [["secret-1", "secret-3"],
                                                            ["secret-2"]]
    assert decode(encode_v4(token)).proofs == (p1, p3, p2)


def test_v4_uses_short_id_for_version_01_keysets() -> None:
    token = Token(mint="https://mint.example", proofs=(_proof(1, FULL_ID_A, 1),))
    encoded = encode_v4(token)
    assert cbor2.loads(_v4_payload(encoded))["t"][0]["i"] == bytes.fromhex(FULL_ID_A[:16])
    decoded = decode(encoded)
    assert decoded.keyset_ids == (FULL_ID_A[:16],)
    assert resolve_keyset_ids(decoded, [FULL_ID_C, FULL_ID_A]) == token


def test_v4_keeps_full_ids_when_short_ids_would_collide() -> None:
    token = Token(mint="https://mint.example",
                  proofs=(_proof(1, FULL_ID_A, 1), _proof(2, FULL_ID_B, 2)))
    assert decode(encode_v4(token)) == token


def test_v4_normalizes_the_mint_url() -> None:
    token = Token(mint="https://mint.example/", proofs=(_proof(1, FULL_ID_A, 1),))
    assert cbor2.loads(_v4_payload(encode_v4(token)))["m"] == "https://mint.example"
    assert decode(_v4_with(("m",), "http://localhost:3338//")).mint == "http://localhost:3338"


def test_token_defaults_amount_and_keyset_ids() -> None:
    token = Token(mint="https://mint.example",
                  proofs=(_proof(8, FULL_ID_C, 1), _proof(2, FULL_ID_A, 2),
                          _proof(1, FULL_ID_C, 3)))
    assert token.unit == "sat" and token.memo is None
    assert token.amount == 11
    assert token.keyset_ids == (FULL_ID_C, FULL_ID_A)


def test_encoding_a_token_without_proofs_is_refused() -> None:
    with pytest.raises(TokenError, match="without proofs"):
        encode_v4(Token(mint="https://mint.example", proofs=()))


# --- decoding details -----------------------------------------------------------------


def test_uri_prefix_and_whitespace_are_accepted() -> None:
    wrapped = "\n".join(V4_MULTI[i:i + 60] for i in range(0, len(V4_MULTI), 60))
    assert decode(f"  cashu:{wrapped}\n") == V4_MULTI_TOKEN
    assert decode("CASHU:" + V3_TOKEN).proofs == V3_PROOFS


def test_v4_unknown_fields_are_ignored() -> None:
    obj = cbor2.loads(_v4_payload(V4_MULTI))
    obj["x"] = {"future": True}
    obj["t"][0]["z"] = [1, 2, 3]
    obj["t"][1]["p"][0]["q"] = b"\x00"
    obj["t"][1]["p"][1]["d"] = {"e": b"\x01" * 32, "s": b"\x02" * 32, "n": "new"}
    token = decode(_v4(obj))
    assert token.proofs[:2] == V4_MULTI_TOKEN.proofs[:2]
    assert token.proofs[2].dleq == DLEQ(e="01" * 32, s="02" * 32)


def test_v3_unknown_fields_are_ignored() -> None:
    proof = {**V3_PROOFS[0].to_wire(), "future": 1}
    obj = {"token": [{"mint": "https://8333.space:3338", "proofs": [proof], "extra": []}],
           "unit": "sat", "version": 3}
    assert decode(_v3(obj)).proofs == V3_PROOFS[:1]


def test_token_repr_hides_secrets() -> None:
    token = decode(V4_MULTI)
    text = repr(token)
    assert text == "Token(mint='http://localhost:3338', unit='sat', amount=4, proofs=3)"
    for proof in token.proofs:
        assert proof.secret not in text and proof.C not in text
    assert str(token) == text


def test_error_messages_do_not_echo_secrets() -> None:
    obj = cbor2.loads(_v4_payload(V4_SINGLE))
    obj["t"][0]["p"][0]["c"] = b"\x02" * 32
    with pytest.raises(TokenError) as info:
        decode(_v4(obj))
    assert V4_SINGLE_TOKEN.proofs[0].secret not in str(info.value)
    assert "'c'" in str(info.value)


# --- short keyset ids -----------------------------------------------------------------


def _short_token(*ids: str) -> Token:
    return Token(mint="https://mint.example",
                 proofs=tuple(_proof(1, kid, n) for n, kid in enumerate(ids)))


def test_resolve_expands_short_ids() -> None:
    token = _short_token(FULL_ID_A[:16], FULL_ID_C[:16], FULL_ID_A[:16])
    resolved = resolve_keyset_ids(token, [FULL_ID_A, FULL_ID_C, "00ad268c4d1f5826"])
    assert [p.keyset_id for p in resolved.proofs] == [FULL_ID_A, FULL_ID_C, FULL_ID_A]
    assert [p.secret for p in resolved.proofs] == [p.secret for p in token.proofs]


def test_resolve_keeps_exact_full_ids() -> None:
    token = _short_token(FULL_ID_A, "00ad268c4d1f5826")
    # FULL_ID_B shares FULL_ID_A's prefix: an exact match must not be treated as ambiguous.
    assert resolve_keyset_ids(token, [FULL_ID_A, FULL_ID_B, "00ad268c4d1f5826"]) == token


def test_resolve_refuses_unknown_keyset() -> None:
    token = _short_token(FULL_ID_C[:16])
    with pytest.raises(TokenError,
                       match=f"keyset {FULL_ID_C[:16]} is not known by mint https://mint"):
        resolve_keyset_ids(token, [FULL_ID_A])


def test_resolve_refuses_unknown_full_id_sharing_a_known_prefix() -> None:
    with pytest.raises(TokenError, match="is not known"):
        resolve_keyset_ids(_short_token(FULL_ID_B), [FULL_ID_A])


def test_resolve_refuses_ambiguous_short_id() -> None:
    token = _short_token(FULL_ID_A[:16])
    with pytest.raises(TokenError, match="ambiguous"):
        resolve_keyset_ids(token, [FULL_ID_A, FULL_ID_B])


# --- malformed input ------------------------------------------------------------------


def _v4_obj() -> dict[str, Any]:
    return cbor2.loads(_v4_payload(V4_SINGLE))


def _v4_with(path: tuple[Any, ...], value: Any) -> str:
    obj = _v4_obj()
    *parents, last = path
    target = obj
    for key in parents:
        target = target[key]
    target[last] = value
    return _v4(obj)


def _v4_without(path: tuple[Any, ...]) -> str:
    obj = _v4_obj()
    *parents, last = path
    target = obj
    for key in parents:
        target = target[key]
    del target[last]
    return _v4(obj)


def _v3_with(**proof_fields: Any) -> str:
    proof = {**V3_PROOFS[0].to_wire(), **proof_fields}
    return _v3({"token": [{"mint": "https://8333.space:3338", "proofs": [proof]}]})


PROOF = ("t", 0, "p", 0)

MALFORMED: dict[str, tuple[str, str]] = {  # case: (token, what the error must say)
    "empty string": ("", "empty token"),
    "only whitespace": (" \n\t", "empty token"),
    "only uri scheme": ("cashu:", "empty token"),
    "unknown version cashuC": ("cashuC" + V4_SINGLE[6:], "unsupported token version 'C'"),
    "prefix only": ("cashuB", "no content"),
    "bad base64 characters": ("cashuB!!!!", "base64"),
    "truncated base64": ("cashuBo2F0g", "base64"),
    "base64 of non-CBOR": ("cashuB" + _b64(b"\xff\xfe not cbor"), "not valid CBOR"),
    "truncated CBOR": ("cashuB" + _b64(_v4_payload(V4_SINGLE)[:-5]), "not valid CBOR"),
    "trailing bytes after CBOR": ("cashuB" + _b64(_v4_payload(V4_SINGLE) + b"\x00"),
        "trailing bytes"),
    "CBOR not a map": (_v4([1, 2, 3]), "not a map"),
    "CBOR duplicate keys": ("cashuB" + _b64(b"\xa2\x61m\x61a\x61m\x61b"), "Duplicate map key"),
    "missing t": (_v4_without(("t",)), "missing field 't'"),
    "missing m": (_v4_without(("m",)), "missing field 'm'"),
    "missing u": (_v4_without(("u",)), "missing field 'u'"),
    "m not a string": (_v4_with(("m",), b"http://localhost:3338"), "'m' must be a string"),
    "empty mint": (_v4_with(("m",), "/"), "'m' (mint URL) is empty"),
    "memo not a string": (_v4_with(("d",), 5), "'d' must be a string"),
    "t not a list": (_v4_with(("t",), {"i": b"\x00" * 8}), "'t' must be a list"),
    "empty t": (_v4_with(("t",), []), "'t' is empty"),
    "keyset group not a map": (_v4_with(("t", 0), [1]), "t[0]: expected a map"),
    "keyset id as hex string": (_v4_with(("t", 0, "i"), "00ad268c4d1f5826"),
        "'i' must be a byte string"),
    "keyset id wrong length": (_v4_with(("t", 0, "i"), b"\x00" * 9),
        "keyset id must be 8 or 33 bytes"),
    "empty proofs list": (_v4_with(("t", 0, "p"), []), "'p' is empty"),
    "proof not a map": (_v4_with(PROOF, "proof"), "p[0]: expected an object"),
    "amount 0": (_v4_with((*PROOF, "a"), 0), "'a' must be positive"),
    "amount -1": (_v4_with((*PROOF, "a"), -1), "'a' must be positive"),
    "amount as string": (_v4_with((*PROOF, "a"), "1"), "'a' must be an integer"),
    "amount as float": (_v4_with((*PROOF, "a"), 1.0), "'a' must be an integer"),
    "amount as bool": (_v4_with((*PROOF, "a"), True), "'a' must be an integer"),
    "amount too large": (_v4_with((*PROOF, "a"), 2**64), "'a' is too large"),
    "missing secret": (_v4_without((*PROOF, "s")), "missing field 's'"),
    "secret as bytes": (_v4_with((*PROOF, "s"), b"secret"), "'s' must be a string"),
    "empty secret": (_v4_with((*PROOF, "s"), ""), "'s' (secret) is empty"),
    "C of wrong length": (_v4_with((*PROOF, "c"), b"\x02" * 32), "'c' must be 33 bytes"),
    "C as hex string": (_v4_with((*PROOF, "c"), V4_SINGLE_TOKEN.proofs[0].C),
        "'c' must be a byte string"),
    "C not a compressed key": (_v4_with((*PROOF, "c"), b"\x04" * 33),
        "not a compressed public key"),
    "dleq not a map": (_v4_with((*PROOF, "d"), b"\x00" * 32), ".d: expected a map"),
    "dleq e wrong length": (_v4_with((*PROOF, "d"), {"e": b"\x01" * 31, "s": b"\x02" * 32}),
        "'e' must be 32 bytes"),
    "dleq missing s": (_v4_with((*PROOF, "d"), {"e": b"\x01" * 32}), ".d: missing field 's'"),
    "witness not a string": (_v4_with((*PROOF, "w"), {"signatures": []}), "'w' must be a string"),
    "V3 bad JSON": ("cashuA" + _b64(b'{"token": ['), "not valid JSON"),
    "V3 not UTF-8": ("cashuA" + _b64(b"\xff\xfe"), "not valid JSON"),
    "V3 JSON not an object": (_v3([1, 2]), "not an object"),
    "V3 missing token": (_v3({"unit": "sat"}), "missing field 'token'"),
    "V3 token not a list": (_v3({"token": {"mint": "https://a.example"}}),
        "'token' must be a list"),
    "V3 with no token entries": (_v3({"token": []}), "no token entries"),
    "V3 entry without proofs": (_v3({"token": [{"mint": "https://a.example", "proofs": []}]}),
        "'proofs' is empty"),
    "V3 entry without mint": (_v3({"token": [{"proofs": [V3_PROOFS[0].to_wire()]}]}),
        "missing field 'mint'"),
    "V3 amount 0": (_v3_with(amount=0), "'amount' must be positive"),
    "V3 amount as string": (_v3_with(amount="2"), "'amount' must be an integer"),
    "V3 non-hex C": (_v3_with(C="zz" * 33), "'C' is not hex"),
    "V3 C of wrong length": (_v3_with(C="02" * 32), "'C' must be 33 bytes"),
    "V3 non-hex id": (_v3_with(id="I2yN+iRYfkzT"), "'id' is not hex"),
    "V3 witness not a string": (_v3_with(witness=["sig"]), "'witness' must be a string"),
    "V3 dleq r wrong length": (_v3_with(dleq={"e": "01" * 32, "s": "02" * 32, "r": "03"}),
        "'r' must be 32 bytes"),
    "V3 unit not a string": (_v3({"token": [{"mint": "https://a.example",
                                             "proofs": [V3_PROOFS[0].to_wire()]}],
                                  "unit": 1}),
                             "'unit' must be a string"),
    "V3 duplicate keys": ("cashuA" + _b64(b'{"token": [], "token": []}'), "duplicate keys"),
}


@pytest.mark.parametrize(("text", "says"), list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_token_raises_token_error(text: str, says: str) -> None:
    with pytest.raises(TokenError) as info:
        decode(text)
    assert type(info.value) is TokenError
    assert says in str(info.value)


def test_non_text_input_raises_token_error() -> None:
    with pytest.raises(TokenError, match="must be text"):
        decode(V4_SINGLE.encode())  # type: ignore[arg-type]
