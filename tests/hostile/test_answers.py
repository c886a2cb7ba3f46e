"""A lying or broken mint, without a mint: every answer shape is a typed error.

httpx.MockTransport plays the mint. Each endpoint the wallet calls is fed JSON of
every wrong shape, non-JSON and oversized bodies; the client must raise a
:class:`MintProtocolError` (never AttributeError, KeyError or TypeError).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from coincurve import PrivateKey

from coco_actors.crypto.bdhke import parse_pubkey, sign_blinded
from coco_actors.crypto.dleq import make_dleq
from coco_actors.crypto.keysets import (
    check_listed_metadata,
    derive_keyset_id_v01,
    validate_keys,
    verify_keyset_id,
)
from coco_actors.crypto.outputs import random_outputs, unblind_signatures
from coco_actors.errors import (
    CryptoError,
    InvalidInputError,
    MintProtocolError,
    MintRejectedError,
)
from coco_actors.mint_client import MintClient, MintInfo, normalize_mint_url
from coco_actors.supervisor import fetch_keysets
from coco_actors.wire import DLEQ, BlindedMessage, BlindSignature, Keyset, KeysetInfo, Proof

URL = "http://127.0.0.1:1"
B = "02" + "33" * 32
Y = "02" + "11" * 32
PRIVKEYS = {2**i: PrivateKey.from_int(5000 + i) for i in range(4)}
KEYS = {amount: k.public_key.format().hex() for amount, k in PRIVKEYS.items()}
OUTPUT = BlindedMessage(1, "00" * 8, B)
PROOF = Proof(1, "00" * 8, "s" * 64, B)

#: Every JSON shape that is not the object an endpoint answers with, and field-level lies.
SHAPES: list[Any] = [
    [], [{"signatures": []}], "signatures", 7, 1.5, True, None,
    {}, {"signatures": None}, {"signatures": "x"}, {"signatures": [None]},
    {"signatures": [{"amount": "1", "id": "00", "C_": B}]},
    {"signatures": [[]]}, {"keysets": {"a": 1}}, {"keysets": [1]}, {"states": "no"},
    {"outputs": 1, "signatures": []}, {"quote": 1, "request": [], "state": {}},
    {"quote": "q", "amount": -1, "fee_reserve": "x", "state": "PAID"},
    {"quote": "q", "amount": 1, "fee_reserve": 0, "state": "PAID", "change": {"a": 1}},
    {"amount": 2**70},
]

CALLS: dict[str, Callable[[MintClient], object]] = {
    "info": lambda c: c.get_info(),
    "keysets": lambda c: c.get_keysets(),
    "keys": lambda c: c.get_keys(),
    "keys/id": lambda c: c.get_keys("00" * 8),
    "mint quote": lambda c: c.create_mint_quote(1),
    "mint quote state": lambda c: c.get_mint_quote("q"),
    "melt quote": lambda c: c.create_melt_quote("lnbc1"),
    "melt quote state": lambda c: c.get_melt_quote("q"),
    "mint": lambda c: c.mint("q", [OUTPUT]),
    "swap": lambda c: c.swap([PROOF], [OUTPUT]),
    "melt": lambda c: c.melt("q", [PROOF], [OUTPUT]),
    "checkstate": lambda c: c.check_state([Y]),
    "restore": lambda c: c.restore([OUTPUT]),
}


def answering(body: bytes | Any, **kwargs: Any) -> MintClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(200, content=body)
        return httpx.Response(200, json=body)

    return MintClient(URL, transport=httpx.MockTransport(handler), **kwargs)


@pytest.mark.parametrize("name", list(CALLS))
@pytest.mark.parametrize("shape", SHAPES, ids=[repr(s)[:30] for s in SHAPES])
def test_any_wrong_shape_is_a_protocol_error(name: str, shape: Any) -> None:
    if name == "info" and isinstance(shape, dict):
        info = CALLS[name](answering(shape))  # any object is an info (all fields optional)
        assert isinstance(info, MintInfo)
        return
    with pytest.raises(MintProtocolError) as caught:
        CALLS[name](answering(shape))
    assert caught.value.endpoint


@pytest.mark.parametrize("name", list(CALLS))
@pytest.mark.parametrize("body", [b"", b"<html>", b"\xff\xfe", b"[" * 100_000, b'{"a":'])
def test_a_body_that_is_not_json_is_a_protocol_error(name: str, body: bytes) -> None:
    with pytest.raises(MintProtocolError):
        CALLS[name](answering(body))


@pytest.mark.parametrize("depth", [50, 500, 900, 5000])
def test_deep_json_inside_a_field_is_a_protocol_error(depth: int) -> None:
    body = b'{"signatures":' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(MintProtocolError):
        answering(body).swap([PROOF], [OUTPUT])


class Endless(httpx.SyncByteStream):
    """A body of ``total`` bytes, made as it is read: what it cost to read is what counts."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        chunk = b" " * 65536
        while self.sent < self.total:
            self.sent += len(chunk)
            yield chunk


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_huge_answer_is_refused_while_it_streams(declared: bool) -> None:
    stream = Endless(64 * 1024 * 1024)
    headers = {"content-length": str(stream.total)} if declared else {}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=stream, headers=headers)

    mint = MintClient(URL, transport=httpx.MockTransport(handler), max_body=1024 * 1024)
    with pytest.raises(MintProtocolError, match="more than 1048576 bytes"):
        mint.swap([PROOF], [OUTPUT])
    assert stream.sent <= 1024 * 1024 + 65536  # stopped reading at the limit


def test_an_answer_under_the_limit_is_read() -> None:
    mint = answering({"states": [{"Y": Y, "state": "SPENT"}]}, max_body=200)
    assert mint.check_state([Y])[0].Y == Y
    with pytest.raises(MintProtocolError):
        answering({"states": [{"Y": Y, "state": "SPENT", "witness": "w" * 300}]},
                  max_body=200).check_state([Y])


def test_an_error_answer_is_bounded_too() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, stream=Endless(8 * 1024 * 1024))

    mint = MintClient(URL, transport=httpx.MockTransport(handler), max_body=65536)
    with pytest.raises(MintProtocolError):
        mint.get_keysets()


class Chunks(httpx.SyncByteStream):
    """A body as a network stream gives it (httpx reads ``content=`` bodies at once)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.body), 65536):
            yield self.body[start:start + 65536]


def _encoded(body: bytes, encoding: str) -> MintClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Chunks(body), headers={"content-encoding": encoding})

    return MintClient(URL, transport=httpx.MockTransport(handler), max_body=1024 * 1024)


def test_a_compression_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b" " * (64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 1024 * 1024
    with pytest.raises(MintProtocolError, match="more than 1048576 bytes"):
        _encoded(bomb, "gzip").get_keysets()
    zbomb = zlib.compress(b" " * (64 * 1024 * 1024), 9)
    with pytest.raises(MintProtocolError, match="more than 1048576 bytes"):
        _encoded(zbomb, "deflate").get_keysets()


def test_compressed_answers_under_the_limit_are_read() -> None:
    body = json.dumps({"states": [{"Y": Y, "state": "SPENT"}]}).encode()
    for encoded, encoding in ((gzip.compress(body), "gzip"), (zlib.compress(body), "deflate"),
                              (body, "identity")):
        assert _encoded(encoded, encoding).check_state([Y])[0].state == "SPENT"


@pytest.mark.parametrize(("body", "encoding"), [(b"\x1f\x8b garbage", "gzip"),
                                                (b"xx", "deflate"), (b"{}", "br"),
                                                (b"{}", "gzip, br")])
def test_a_corrupt_or_unknown_encoding_is_a_protocol_error(body: bytes, encoding: str) -> None:
    with pytest.raises(MintProtocolError):
        _encoded(body, encoding).get_keysets()


# --- info: odd nuts entries ------------------------------------------------------------


@pytest.mark.parametrize("nuts", [
    None, [], "12", {"12": True}, {"12": [1]}, {"17": {"supported": "yes"}},
    {"17": {"supported": [1, None, {"unit": 5}, {"commands": "proof_state"}]}},
    {"17": {"supported": [{"commands": [1, {}, "proof_state"]}]}},
    {"12": {"supported": {"x": 1}}, "4": {"methods": 3}, "5": {"disabled": "no"}},
])
def test_info_with_odd_nuts_entries_never_raises(nuts: Any) -> None:
    info = answering({"name": ["x"], "version": 3, "pubkey": {}, "nuts": nuts}).get_info()
    assert info.name is None and info.version is None and info.pubkey is None
    for nut in (4, 5, 7, 8, 9, 12, 17):
        assert isinstance(info.supports(nut), bool)
    assert info.websocket_commands() <= {"proof_state"}


def test_websocket_commands_reads_a_well_formed_nut17() -> None:
    info = answering({"nuts": {"17": {"supported": [
        {"method": "bolt11", "unit": "sat", "commands": ["bolt11_mint_quote", "proof_state"]},
        {"method": "bolt11", "unit": "usd", "commands": ["bolt11_melt_quote"]},
    ]}}}).get_info()
    assert info.websocket_commands() == {"bolt11_mint_quote", "proof_state"}
    assert info.websocket_commands("usd") == {"bolt11_melt_quote"}


# --- URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://[::1", "http://exa mple", "http://example.com:99999999", "http://example.com:0",
    "http://user:pw@example.com", "http://a@example.com", "http://example.com/#frag",
    "http://example.com/?q=1", "ftp://example.com", "http://", "http://\x00x", "x" * 5000,
    "http://example.com/a\nb", "http://ex\u200bample.com:abc", "http://example.com:-1",
])
def test_a_bad_url_is_an_invalid_input_error(url: str) -> None:
    with pytest.raises(InvalidInputError):
        normalize_mint_url(url)
    with pytest.raises(InvalidInputError):
        MintClient(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:3338", "https://mint.example.com/cashu/",
                                 "http://[::1]:3338", "HTTPS://Mint.Example.com"])
def test_good_urls_still_pass(url: str) -> None:
    assert normalize_mint_url(url) == url.rstrip("/")


@pytest.mark.parametrize("quote_id", ["../../keys", "q?x=1", "a/b", "#", "q\r\nX: y", ""])
def test_an_id_in_a_path_stays_one_segment(quote_id: str) -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return httpx.Response(404, json={"detail": "unknown quote", "code": 20007})

    mint = MintClient(URL, transport=httpx.MockTransport(handler))
    with pytest.raises(InvalidInputError if not quote_id else MintRejectedError):
        mint.get_mint_quote(quote_id)
    assert len(paths) == (1 if quote_id else 0)
    for path in paths:
        assert path.startswith("/v1/mint/quote/bolt11/") and path.count("/") == 5
        assert "?" not in path and "#" not in path


# --- NUT-12: a stripped DLEQ -----------------------------------------------------------


def _keyset() -> Keyset:
    return Keyset(derive_keyset_id_v01(KEYS, "sat"), "sat", validate_keys(KEYS))


def _signed(keyset: Keyset, *, dleq: bool) -> tuple[list[Any], list[BlindSignature]]:
    outputs = random_outputs([1, 2], keyset.id)
    sigs = []
    for out in outputs:
        k = PRIVKEYS[out.amount]
        B_ = parse_pubkey(out.B_)
        C_ = sign_blinded(B_, k)
        proof = DLEQ(*(x.hex() for x in make_dleq(k, B_, C_))) if dleq else None
        sigs.append(BlindSignature(out.amount, keyset.id, C_.format().hex(), proof))
    return outputs, sigs


def test_a_stripped_dleq_is_refused_when_the_mint_does_nut12() -> None:
    keyset = _keyset()
    outputs, sigs = _signed(keyset, dleq=True)
    stripped = [sigs[0], dataclasses.replace(sigs[1], dleq=None)]
    with pytest.raises(CryptoError, match="signature 1: no DLEQ"):
        unblind_signatures(outputs, stripped, keyset, require_dleq=True)
    with pytest.raises(CryptoError, match="signature 0: no DLEQ"):
        unblind_signatures(outputs[:1], stripped[1:], keyset, blank=True, require_dleq=True)
    assert len(unblind_signatures(outputs, sigs, keyset, require_dleq=True)) == 2
    assert len(unblind_signatures(outputs, stripped, keyset)) == 2  # a mint without NUT-12


def test_requires_dleq_follows_the_mints_info() -> None:
    assert answering({"nuts": {"12": {"supported": True}}}).requires_dleq() is True
    assert answering({"nuts": {"12": {"supported": False}}}).requires_dleq() is False
    assert answering({"nuts": {}}).requires_dleq() is False
    with pytest.raises(MintProtocolError):
        answering([]).requires_dleq()  # not knowing is an error, never a pass


def test_requires_dleq_keeps_the_last_answer_when_the_mint_cannot_be_asked() -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if len(asked) > 1:
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json={"nuts": {"12": {}}})

    mint = MintClient(URL, transport=httpx.MockTransport(handler))
    assert mint.requires_dleq() is True
    assert mint._info is not None
    mint._info = (mint._info[0] - 10_000, mint._info[1])  # older than recent_info trusts
    assert mint.requires_dleq() is True  # asked again, refused: the last answer stands
    assert asked == ["/v1/info", "/v1/info"]


# --- NUT-02: what the keyset id commits to -------------------------------------------


def _keys_and_keysets(keyset: Keyset, listed: dict[str, Any]) -> MintClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/keysets":
            return httpx.Response(200, json={"keysets": [listed]})
        return httpx.Response(200, json={"keysets": [{
            "id": keyset.id, "unit": keyset.unit, "active": True,
            "input_fee_ppk": keyset.input_fee_ppk, "final_expiry": keyset.final_expiry,
            "keys": {str(a): k for a, k in keyset.keys.items()}}]})

    return MintClient(URL, transport=httpx.MockTransport(handler))


def _fee_keyset() -> Keyset:
    return Keyset(derive_keyset_id_v01(KEYS, "sat", input_fee_ppk=100), "sat",
                  validate_keys(KEYS), input_fee_ppk=100)


def test_the_fee_is_the_one_the_id_commits_to() -> None:
    keyset = _fee_keyset()
    listed = {"id": keyset.id, "unit": "sat", "active": True, "input_fee_ppk": 100}
    (got,) = fetch_keysets(_keys_and_keysets(keyset, listed))
    assert (got.input_fee_ppk, got.active, got.unit) == (100, True, "sat")


@pytest.mark.parametrize("lie", [{"input_fee_ppk": 0}, {"input_fee_ppk": 5000},
                                 {"unit": "usd"}, {"final_expiry": 1896187313}])
def test_a_keysets_entry_contradicting_the_id_is_refused(lie: dict[str, Any]) -> None:
    keyset = _fee_keyset()
    listed = {"id": keyset.id, "unit": "sat", "active": True, "input_fee_ppk": 100, **lie}
    with pytest.raises(CryptoError, match="does not\\s+commit"):
        fetch_keysets(_keys_and_keysets(keyset, listed))


def test_keys_whose_fee_the_id_does_not_carry_are_refused() -> None:
    keyset = dataclasses.replace(_fee_keyset(), input_fee_ppk=0)  # id says 100
    with pytest.raises(CryptoError):
        verify_keyset_id(keyset)


def test_check_listed_metadata_reads_a_null_expiry_as_zero() -> None:
    keyset = _keyset()
    check_listed_metadata(keyset, KeysetInfo(keyset.id, "SAT", True, 0, None))
    check_listed_metadata(keyset, KeysetInfo(keyset.id, "sat", False, 0, 0))


def test_a_nutshell_zero_expiry_id_verifies() -> None:
    """Nutshell 0.21 hashes ``|final_expiry:0`` for a rotated keyset without an expiry."""
    keys = validate_keys(KEYS)
    preimage = ",".join(f"{a}:{k}" for a, k in keys.items()) + "|unit:sat|final_expiry:0"
    kid = "01" + hashlib.sha256(preimage.encode()).hexdigest()
    verify_keyset_id(Keyset(kid, "sat", keys))
    verify_keyset_id(Keyset(kid, "sat", keys, final_expiry=0))
    verify_keyset_id(Keyset(derive_keyset_id_v01(keys, "sat"), "sat", keys))  # NUT-02 too
    with pytest.raises(CryptoError):
        verify_keyset_id(Keyset(kid, "sat", keys, input_fee_ppk=1))
