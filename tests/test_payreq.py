"""Payment requests: every vector of nuts/tests/18-tests.md and 26-test.md (both ways),
the payload codec, and malformed input as typed errors.

The vectors are copied into tests/fixtures/payreq_vectors.json (with the examples of
18.md and 26.md). Two spec quirks: the NUT-18 vectors use the standard base64 alphabet
(its text says urlsafe, which is what we write; we read both), and the "Basic Payment
Request" of 18-tests.md shows a JSON whose encoding is not the string beside it: that
string is the 18.md example's.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coco_actors.errors import InvalidInputError, PaymentRequestError
from coco_actors.payreq import (
    Nut10Option,
    PaymentPayload,
    PaymentRequest,
    Transport,
    _nip19_decode,
    decode_payload,
    decode_request,
    encode_creq_a,
    encode_creq_b,
    encode_payload,
)
from coco_actors.wire import Proof

VECTORS = json.loads((Path(__file__).parent / "fixtures" / "payreq_vectors.json").read_text())
NUT18 = {v["name"]: v for v in VECTORS["nut18"]}
NUT26 = {v["name"]: v for v in VECTORS["nut26"]}
QUIRK = "Basic Payment Request"  # 18-tests.md: JSON and string disagree (see docstring)


def _normal(obj: dict[str, Any]) -> dict[str, Any]:
    """A NUT-18 JSON with nostr targets replaced by (key, relays): NUT-26 keeps only those,
    so an ``nprofile`` without relays comes back as the equivalent ``npub``."""
    out = dict(obj)
    if "t" in out:
        ts = []
        for t in out["t"]:
            t = dict(t)
            if t["t"] == "nostr":
                key, relays = _nip19_decode(t["a"])
                t["a"] = (key.hex(), tuple(relays))
            ts.append(t)
        out["t"] = ts
    return out


# --- NUT-18 ------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in NUT18 if n != QUIRK])
def test_nut18_vector_encodes_byte_for_byte(name: str) -> None:
    vector = NUT18[name]
    req = PaymentRequest.from_json(vector["json"])
    assert encode_creq_a(req) == _urlsafe(vector["encoded"])


def _urlsafe(encoded: str) -> str:
    """The vectors use the standard base64 alphabet where NUT-18's text says urlsafe; we
    write urlsafe (a request travels in URLs and QR codes) and read both."""
    return encoded.replace("+", "-").replace("/", "_")


def test_some_vector_exercises_the_alphabet_difference() -> None:
    assert any(_urlsafe(v["encoded"]) != v["encoded"] for v in NUT18.values())


@pytest.mark.parametrize("name", [n for n in NUT18 if n != QUIRK])
def test_nut18_vector_decodes_to_its_json(name: str) -> None:
    vector = NUT18[name]
    req = decode_request(vector["encoded"])
    assert req.to_json() == vector["json"]
    assert req == PaymentRequest.from_json(vector["json"])


def test_nut18_basic_vector_is_the_18md_example() -> None:
    basic, example = NUT18[QUIRK], NUT18["18.md example"]
    assert basic["encoded"] == example["encoded"]
    assert decode_request(basic["encoded"]).to_json() == example["json"]
    # its JSON still round-trips through our encoding
    req = PaymentRequest.from_json(basic["json"])
    assert decode_request(encode_creq_a(req)) == req


def test_complete_vector_fields() -> None:
    req = decode_request(NUT18["Complete Payment Request"]["encoded"])
    assert req.id == "4840f51e" and req.amount == 1000 and req.unit == "sat"
    assert req.single_use is True and req.mints == ("https://mint.example.com",)
    assert req.description == "Product purchase"
    assert req.transports == (Transport("post", "https://api.example.com/pay"),)
    assert req.post_url == "https://api.example.com/pay"
    assert req.nut10 == Nut10Option(
        "P2PK", "03baf0c3ac220366c2c397bf930579c4163435584f573b10910987c544c59e61f1",
        (("purpose", "offline"),))
    assert req.p2pk_pubkey == req.nut10.data


def test_creq_a_prefix_is_case_insensitive_and_padding_optional() -> None:
    enc = NUT18["Minimal Payment Request"]["encoded"]
    want = decode_request(enc)
    assert decode_request("CREQA" + enc[5:]) == want
    assert decode_request(enc.rstrip("=")) == want
    assert decode_request(f"  {enc}\n") == want


# --- NUT-26 ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(NUT26))
def test_nut26_vector_encodes_byte_for_byte(name: str) -> None:
    vector = NUT26[name]
    assert encode_creq_b(PaymentRequest.from_json(vector["json"])) == vector["encoded"]


@pytest.mark.parametrize("name", list(NUT26))
def test_nut26_vector_decodes_to_its_json(name: str) -> None:
    vector = NUT26[name]
    req = decode_request(vector["encoded"])
    assert _normal(req.to_json()) == _normal(vector["json"])
    assert decode_request(vector["encoded"].lower()) == req
    # and the decoded request encodes back to the same string
    assert encode_creq_b(req) == vector["encoded"]


def test_nut26_nostr_targets_come_back_as_nip19() -> None:
    with_relays = decode_request(NUT26["Relay Tag Extraction from nprofile"]["encoded"])
    assert with_relays.transports[0].target.startswith("nprofile1")
    assert with_relays.transports[0].tags == ()
    assert _nip19_decode(with_relays.transports[0].target)[1] == [
        "wss://relay1.example.com", "wss://relay2.example.com", "wss://relay3.example.com"]
    bare = decode_request(NUT26["Minimal Nostr Transport (pubkey only)"]["encoded"])
    assert bare.transports[0].target.startswith("npub1")
    basic = decode_request(NUT26["Basic Payment Request"]["encoded"])
    assert basic.transports[0].target == NUT26["Basic Payment Request"]["json"]["t"][0]["a"]


def test_nut26_and_nut18_agree_on_shared_vectors() -> None:
    for name in ("Minimal Payment Request", "Payment Request with NUT-10 Locking"):
        assert decode_request(NUT26[name]["encoded"]) == decode_request(NUT18[name]["encoded"])


def test_unknown_tlv_tags_and_transport_kinds_are_skipped() -> None:
    from coco_actors.payreq import _BECH32M, _bech32_decode, _bech32_encode, _tlv
    raw = _bech32_decode(NUT26["Minimal Payment Request"]["encoded"], "creqb", _BECH32M, "t")
    extra = raw + _tlv(0x42, b"future") + _tlv(7, _tlv(1, b"\x09") + _tlv(2, b"x"))
    text = _bech32_encode("creqb", extra, _BECH32M)
    assert decode_request(text) == decode_request(NUT26["Minimal Payment Request"]["encoded"])


# --- round trips -------------------------------------------------------------------

_text = st.text(min_size=0, max_size=40)
_tags = st.lists(st.lists(st.text(max_size=20), min_size=1, max_size=3).map(tuple),
                 max_size=3).map(tuple)
_requests = st.builds(
    PaymentRequest,
    id=st.none() | _text,
    amount=st.none() | st.integers(1, 2**64 - 1),
    unit=st.none() | st.sampled_from(["sat", "msat", "usd"]),
    single_use=st.none() | st.booleans(),
    mints=st.lists(_text, max_size=3).map(tuple),
    description=st.none() | _text,
    transports=st.lists(st.builds(Transport, type=st.just("post"), target=_text, tags=_tags),
                        max_size=2).map(tuple),
    nut10=st.none() | st.builds(Nut10Option, kind=st.sampled_from(["P2PK", "HTLC"]),
                                data=_text, tags=_tags),
)


@settings(max_examples=200, deadline=None)
@given(_requests)
def test_both_encodings_round_trip(req: PaymentRequest) -> None:
    assert decode_request(encode_creq_a(req)) == req
    b = encode_creq_b(req)
    assert b == b.upper() and b.startswith("CREQB1")
    assert decode_request(b) == req


# --- malformed requests ------------------------------------------------------------

_GOOD_A = NUT18["Complete Payment Request"]["encoded"]
_GOOD_B = NUT26["Payment Request with NUT-10 Locking"]["encoded"]


def _nested(depth: int) -> Any:
    return {"t": [_nested(depth - 1)]} if depth else {}


def _a(obj: Any) -> str:
    return "creqA" + base64.urlsafe_b64encode(cbor2.dumps(obj)).decode()


@pytest.mark.parametrize("text", [
    "", "creqA", "creqB", "creqb1", "cashuBxyz", "lnbc1...", "creqC" + _GOOD_A[5:],
    "creqA!!!!", "creqA" + "A",  # base64 of one char is truncated
    _GOOD_A[:40], _GOOD_A[:-10],  # truncated CBOR
    "creqA" + base64.urlsafe_b64encode(b"\xff\xff\xff").decode(),  # not CBOR
    "creqA" + base64.urlsafe_b64encode(b"\x7b\xff\xff\xff\xff\xff\xff\xff\xff").decode(),
    "creqA" + base64.urlsafe_b64encode(b"\x9b\x00\x00\xff\xff\xff\xff\xff\xff").decode(),
    "creqA" + base64.urlsafe_b64encode(cbor2.dumps({"i": "x"}) + b"\x00").decode(),
    _a([1, 2]), _a("text"), _a({"a": "10"}), _a({"a": True}), _a({"a": 0}), _a({"a": -5}),
    _a({"a": 2**64}), _a({"i": 7}), _a({"s": 1}), _a({"m": "https://mint"}), _a({"m": [1]}),
    _a({"t": {"t": "post"}}), _a({"t": [{"t": "post"}]}), _a({"t": [{"t": "post", "a": 1}]}),
    _a({"t": [{"t": "post", "a": "u", "g": [[]]}]}), _a({"t": [{"t": "post", "a": "u", "g": "x"}]}),
    _a({"nut10": "P2PK"}), _a({"nut10": {"k": "P2PK"}}), _a({"nut10": {"k": "P2PK", "d": 3}}),
    _a({"d": b"bytes"}), _a({"u": ["sat"]}),
    _a(_nested(60)),  # deeper than any request
    _GOOD_B[:-1], _GOOD_B[:-8] + _GOOD_B[-7:], _GOOD_B.replace("Q", "B", 1),
    _GOOD_B[:12] + _GOOD_B[12:].lower(),  # mixed case
    "CREQB1" + "Q" * 3, "creqb1" + "b" * 30,  # 'b' is not bech32
    "creqA" + "A" * 20_000,  # huge
])
def test_malformed_requests_are_typed_errors(text: str) -> None:
    with pytest.raises(PaymentRequestError):
        decode_request(text)


def test_payment_request_error_is_invalid_input() -> None:
    assert issubclass(PaymentRequestError, InvalidInputError)
    with pytest.raises(InvalidInputError):
        decode_request("nope")
    with pytest.raises(PaymentRequestError):
        decode_request(123)  # type: ignore[arg-type]


def _b_from_tlv(raw: bytes) -> str:
    from coco_actors.payreq import _BECH32M, _bech32_encode
    return _bech32_encode("creqb", raw, _BECH32M)


@pytest.mark.parametrize("raw", [
    b"\x01\x00",  # truncated header
    b"\x01\x00\x09abc",  # length past the end
    b"\x02\x00\x04\x00\x00\x00\x01",  # amount not 8 bytes
    b"\x02\x00\x08" + b"\x00" * 8,  # amount zero
    b"\x04\x00\x01\x02",  # single use 2
    b"\x01\x00\x01\xff",  # id not UTF-8
    b"\x01\x00\x01a\x01\x00\x01b",  # id repeated
    b"\x07\x00\x04\x01\x00\x01\x01",  # transport without target
    b"\x07\x00\x08\x01\x00\x01\x00\x02\x00\x01x",  # nostr key not 32 bytes
    b"\x08\x00\x08\x01\x00\x01\x07\x02\x00\x01x",  # unknown NUT-10 kind
    b"\x08\x00\x0b\x01\x00\x01\x00\x02\x00\x01x\x03\x00\x02\x05a",  # tag tuple past end
])
def test_malformed_tlv_is_a_typed_error(raw: bytes) -> None:
    with pytest.raises(PaymentRequestError):
        decode_request(_b_from_tlv(raw))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzzed_tlv_never_escapes_as_another_error(raw: bytes) -> None:
    try:
        req = decode_request(_b_from_tlv(raw))
    except PaymentRequestError:
        return
    assert isinstance(req, PaymentRequest)  # anything else decoded re-encodes
    assert decode_request(encode_creq_a(req)) == req


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzzed_cbor_never_escapes_as_another_error(raw: bytes) -> None:
    try:
        req = decode_request("creqA" + base64.urlsafe_b64encode(raw).decode())
    except PaymentRequestError:
        return
    assert isinstance(req, PaymentRequest)  # anything else decoded re-encodes
    assert decode_request(encode_creq_a(req)) == req


def test_encoders_refuse_what_they_cannot_write() -> None:
    with pytest.raises(PaymentRequestError):
        encode_creq_a(PaymentRequest(amount=0))
    with pytest.raises(PaymentRequestError):
        encode_creq_b(PaymentRequest(transports=(Transport("carrier-pigeon", "x"),)))
    with pytest.raises(PaymentRequestError):
        encode_creq_b(PaymentRequest(nut10=Nut10Option("FOO", "x")))
    with pytest.raises(PaymentRequestError):
        encode_creq_b(PaymentRequest(transports=(Transport("nostr", "not-a-key"),)))


# --- payload -----------------------------------------------------------------------

_C = "02" + "ab" * 32
_PROOF = {"amount": 8, "id": "009a1f293253e41e", "secret": "s3cr3t", "C": _C}
_PAYLOAD = {"id": "b7a90176", "memo": "thanks", "mint": "https://mint.example.com",
            "unit": "sat", "proofs": [_PROOF, {**_PROOF, "amount": 2, "secret": "other"}]}


def test_payload_decodes_from_bytes_text_and_dict() -> None:
    want = decode_payload(_PAYLOAD)
    assert want.id == "b7a90176" and want.memo == "thanks" and want.unit == "sat"
    assert want.mint == "https://mint.example.com" and want.amount == 10
    assert want.proofs[0] == Proof(amount=8, keyset_id="009a1f293253e41e", secret="s3cr3t", C=_C)
    assert decode_payload(json.dumps(_PAYLOAD)) == want
    assert decode_payload(json.dumps(_PAYLOAD).encode()) == want
    assert "s3cr3t" not in repr(want)


def test_payload_round_trips() -> None:
    p = decode_payload(_PAYLOAD)
    assert encode_payload(p) == _PAYLOAD
    assert decode_payload(encode_payload(p)) == p
    bare = PaymentPayload(mint="https://m", unit="sat", proofs=p.proofs)
    assert "id" not in encode_payload(bare) and "memo" not in encode_payload(bare)
    assert decode_payload(json.dumps(encode_payload(bare))) == bare


@pytest.mark.parametrize("body", [
    b"", b"{", b"[]", b"null", "\"text\"", b"\xff\xfe", {"mint": "m", "unit": "sat"},
    {**_PAYLOAD, "proofs": []}, {**_PAYLOAD, "proofs": "x"}, {**_PAYLOAD, "mint": ""},
    {**_PAYLOAD, "mint": 5}, {**_PAYLOAD, "unit": ""}, {**_PAYLOAD, "id": 3},
    {**_PAYLOAD, "proofs": [{**_PROOF, "amount": -1}]},
    {**_PAYLOAD, "proofs": [{**_PROOF, "amount": "8"}]},
    {**_PAYLOAD, "proofs": [{**_PROOF, "secret": ""}]},
    {**_PAYLOAD, "proofs": [{**_PROOF, "C": "04" + "ab" * 32}]},
    {**_PAYLOAD, "proofs": [{**_PROOF, "C": "zz"}]},
    {**_PAYLOAD, "proofs": [{**_PROOF, "id": "00ab"}]},
    {**_PAYLOAD, "proofs": [{k: v for k, v in _PROOF.items() if k != "secret"}]},
    {**_PAYLOAD, "proofs": [_PROOF] * 1001},
    b"[" * 100_000, b" " * 1_100_000,
])
def test_malformed_payloads_are_typed_errors(body: Any) -> None:
    with pytest.raises(PaymentRequestError) as info:
        decode_payload(body)
    assert "s3cr3t" not in str(info.value)
