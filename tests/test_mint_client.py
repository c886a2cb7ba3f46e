"""Failure mapping of MintClient, with httpx.MockTransport as the seam.

These cover the paths a real mint will not produce on demand (resets, 5xx,
garbage). What the real mint answers is covered in tests/integration/.
"""

from __future__ import annotations

import json

import httpx
import pytest

from coco_actors.errors import (
    InvalidInputError,
    MintProtocolError,
    MintRejectedError,
    MintUnreachableError,
)
from coco_actors.mint_client import MintClient, normalize_mint_url
from coco_actors.wire import BlindedMessage, ProofStateKind

URL = "http://127.0.0.1:1"
Y1 = "02" + "11" * 32
Y2 = "03" + "22" * 32
B = "02" + "33" * 32


def client(handler) -> MintClient:
    return MintClient(URL, transport=httpx.MockTransport(handler), batch_size=2)


def with_info(handler):
    """``handler`` behind a mint that answers ``/v1/info`` (without an array cap): a
    batched request asks the cap first."""
    def serve(request):
        if request.url.path == "/v1/info":
            return httpx.Response(200, json={"name": "mock"})
        return handler(request)
    return serve


def test_mint_error_answer_is_rejected_with_code_and_detail():
    def handler(request):
        return httpx.Response(400, json={"detail": "Token already spent.", "code": 11001})

    with pytest.raises(MintRejectedError) as info:
        client(handler).swap([], [])
    assert info.value.code == 11001
    assert info.value.detail == "Token already spent."
    assert info.value.endpoint == "POST /v1/swap"
    assert "11001" in str(info.value)


def test_error_without_code_is_still_a_rejection_with_code_zero():
    def handler(request):
        return httpx.Response(400, json={"detail": "no", "code": 0})

    with pytest.raises(MintRejectedError) as info:
        client(handler).get_keysets()
    assert info.value.code == 0


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("reset"),
                                 httpx.ReadError("reset by peer")])
def test_timeouts_and_resets_are_unknown_outcomes(exc):
    def handler(request):
        raise exc

    with pytest.raises(MintUnreachableError) as info:
        client(handler).swap([], [])
    assert not isinstance(info.value, MintRejectedError)
    assert info.value.request_sent is True


def test_refused_connection_says_the_request_was_not_sent():
    def handler(request):
        raise httpx.ConnectError("refused")

    with pytest.raises(MintUnreachableError) as info:
        client(handler).get_info()
    assert info.value.request_sent is False


def test_5xx_without_nut_code_is_unknown_outcome():
    def handler(request):
        return httpx.Response(502, text="bad gateway")

    with pytest.raises(MintUnreachableError) as info:
        client(handler).swap([], [])
    assert not isinstance(info.value, MintRejectedError)


def test_5xx_with_a_nut_code_is_a_rejection():
    def handler(request):
        return httpx.Response(500, json={"detail": "outputs already signed", "code": 11003})

    with pytest.raises(MintRejectedError) as info:
        client(handler).swap([], [])
    assert info.value.code == 11003


def test_success_with_garbage_body_is_protocol_error():
    def handler(request):
        return httpx.Response(200, text="<html>")

    with pytest.raises(MintProtocolError):
        client(handler).get_keysets()


def test_success_with_wrong_signature_count_is_protocol_error():
    def handler(request):
        return httpx.Response(200, json={"signatures": []})

    with pytest.raises(MintProtocolError):
        client(handler).swap([], [BlindedMessage(1, "00" * 8, B)])


def test_checkstate_is_batched_and_keeps_order():
    seen: list[list[str]] = []

    def handler(request):
        ys = json.loads(request.content)["Ys"]
        seen.append(ys)
        # answer in reverse order: the client must reorder by Y
        return httpx.Response(200, json={"states": [
            {"Y": y, "state": "SPENT" if y == Y2 else "UNSPENT", "witness": None}
            for y in reversed(ys)]})

    states = client(with_info(handler)).check_state([Y1, Y2, Y1])
    assert seen == [[Y1, Y2], [Y1]]
    assert [s.Y for s in states] == [Y1, Y2, Y1]
    assert [s.state for s in states] == [ProofStateKind.UNSPENT, ProofStateKind.SPENT,
                                         ProofStateKind.UNSPENT]


def test_checkstate_answer_missing_a_y_is_protocol_error():
    def handler(request):
        return httpx.Response(200, json={"states": []})

    with pytest.raises(MintProtocolError):
        client(handler).check_state([Y1])


def test_every_call_carries_a_timeout():
    timeouts = []

    def handler(request):
        timeouts.append(request.extensions.get("timeout"))
        return httpx.Response(200, json={"keysets": []})

    client(handler).get_keysets()
    assert timeouts and all(timeouts[0].get(k) for k in ("connect", "read", "write", "pool"))


@pytest.mark.parametrize("amount", [0, -5, 1.5, True, "10"])
def test_mint_quote_rejects_bad_amounts_before_any_request(amount):
    def handler(request):  # pragma: no cover - must not be reached
        raise AssertionError("request was sent")

    with pytest.raises(InvalidInputError):
        client(handler).create_mint_quote(amount)


@pytest.mark.parametrize("url", ["", "ftp://x", "localhost:3338", "http://"])
def test_bad_mint_urls_are_rejected(url):
    with pytest.raises(InvalidInputError):
        normalize_mint_url(url)


def test_mint_url_is_normalized():
    assert normalize_mint_url(" http://127.0.0.1:3338/ ") == "http://127.0.0.1:3338"


# --- answers are read by the codec ---------------------------------------------------------


def test_swap_sends_nut_json_and_reads_signatures_with_nut_keyset_ids():
    from coco_actors.wire import BlindSignature, Proof

    seen = []

    def handler(request):
        seen.append((request.headers["content-type"], json.loads(request.content)))
        return httpx.Response(200, json={"signatures": [
            {"amount": 1, "id": "00AB" * 4, "C_": "02" + "AB" * 32, "dleq": None}]})

    proof = Proof(amount=1, keyset_id="00ab" * 4, secret="s", C=B)
    sigs = client(handler).swap([proof], [BlindedMessage(1, "00ab" * 4, B)])
    assert sigs == [BlindSignature(1, "00ab" * 4, "02" + "ab" * 32)]
    assert seen == [("application/json", {
        "inputs": [{"amount": 1, "id": "00ab" * 4, "secret": "s", "C": B}],
        "outputs": [{"amount": 1, "id": "00ab" * 4, "B_": B}]})]


@pytest.mark.parametrize("sig", [
    {"amount": 1, "id": "00" * 8, "C_": "02" * 32},             # C_ too short
    {"amount": "1", "id": "00" * 8, "C_": B},                   # amount as text
    {"amount": 2**64, "id": "00" * 8, "C_": B},                 # beyond 64 bits
    {"amount": 1, "C_": B},                                     # no keyset id
    "02" * 33,                                                  # not an object
], ids=["short C_", "amount text", "amount 2^64", "no id", "not an object"])
def test_a_malformed_signature_is_a_protocol_error(sig):
    def handler(request):
        return httpx.Response(200, json={"signatures": [sig]})

    with pytest.raises(MintProtocolError) as info:
        client(handler).swap([], [BlindedMessage(1, "00" * 8, B)])
    assert "signatures[0]" in str(info.value)


def test_checkstate_matches_ys_answered_in_upper_case():
    def handler(request):
        ys = json.loads(request.content)["Ys"]
        return httpx.Response(200, json={"states": [{"Y": y.upper(), "state": "SPENT"}
                                                    for y in ys]})

    states = client(with_info(handler)).check_state([Y1])
    assert [(s.Y, s.state) for s in states] == [(Y1, ProofStateKind.SPENT)]


def test_keysets_answer_with_a_bad_fee_is_a_protocol_error():
    def handler(request):
        return httpx.Response(200, json={"keysets": [
            {"id": "00" * 8, "unit": "sat", "active": True, "input_fee_ppk": "100"}]})

    with pytest.raises(MintProtocolError, match="input_fee_ppk"):
        client(handler).get_keysets()


def test_mint_quote_answer_without_amount_gets_the_requested_one():
    def handler(request):
        return httpx.Response(200, json={"quote": "q1", "request": "lnbc1", "state": "UNPAID",
                                         "expiry": None})

    quote = client(handler).create_mint_quote(21)
    assert (quote.quote, quote.amount, quote.unit, quote.expiry) == ("q1", 21, "sat", None)


# --- NUT-20: locked mint quotes ------------------------------------------------------------

PUBKEY = "03d56ce4e446a85bbdaa547b4ec2b073d40ff802831352b8272b7dd7a4de5a7cac"


def _quote_handler(seen, *, echo=True):
    def handler(request):
        body = json.loads(request.content)
        seen.append(body)
        answer = {"quote": "q1", "request": "lnbc1", "state": "UNPAID", "expiry": None,
                  "amount": body["amount"], "unit": body["unit"]}
        if echo:
            answer["pubkey"] = body.get("pubkey")
        return httpx.Response(200, json=answer)
    return handler


def test_a_quote_without_a_key_sends_no_pubkey():
    seen = []
    quote = client(_quote_handler(seen)).create_mint_quote(21)
    assert seen == [{"amount": 21, "unit": "sat"}]
    assert quote.pubkey is None


def test_a_locked_quote_sends_its_key_and_reads_it_back():
    seen = []
    quote = client(_quote_handler(seen)).create_mint_quote(21, "sat", pubkey=PUBKEY.upper())
    assert seen == [{"amount": 21, "unit": "sat", "pubkey": PUBKEY}]
    assert quote.pubkey == PUBKEY


@pytest.mark.parametrize("answered", [None, "02" + "11" * 32], ids=["dropped", "another key"])
def test_a_locked_quote_answered_without_its_key_is_a_protocol_error(answered):
    def handler(request):
        return httpx.Response(200, json={"quote": "q1", "request": "lnbc1", "state": "UNPAID",
                                         "amount": 21, "unit": "sat", "pubkey": answered})

    with pytest.raises(MintProtocolError, match="NUT-20"):
        client(handler).create_mint_quote(21, pubkey=PUBKEY)


@pytest.mark.parametrize("pubkey", ["", "04" + "11" * 32, PUBKEY[:-2], "not hex", 42])
def test_a_bad_quote_key_is_refused_before_any_request(pubkey):
    def handler(request):  # pragma: no cover - must not be reached
        raise AssertionError("request was sent")

    with pytest.raises(InvalidInputError):
        client(handler).create_mint_quote(21, pubkey=pubkey)


def test_a_quote_answer_with_a_malformed_key_is_a_protocol_error():
    def handler(request):
        return httpx.Response(200, json={"quote": "q1", "request": "lnbc1", "state": "PAID",
                                         "amount": 21, "unit": "sat", "pubkey": "02abc"})

    with pytest.raises(MintProtocolError, match="pubkey"):
        client(handler).get_mint_quote("q1")


def test_an_empty_quote_key_means_an_unlocked_quote():
    """Nutshell 0.21 answers a status request for an unlocked quote with ``"pubkey": ""``."""
    def handler(request):
        return httpx.Response(200, json={"quote": "q1", "request": "lnbc1", "state": "PAID",
                                         "amount": 21, "unit": "sat", "pubkey": ""})

    assert client(handler).get_mint_quote("q1").pubkey is None


def test_mint_sends_the_signature_only_when_given():
    seen = []

    def handler(request):
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"signatures": [
            {"amount": 1, "id": "00" * 8, "C_": B}]})

    out = [BlindedMessage(1, "00" * 8, B)]
    c = client(handler)
    c.mint("q1", out)
    c.mint("q1", out, signature="ab" * 64)
    wire_out = [{"amount": 1, "id": "00" * 8, "B_": B}]
    assert seen == [{"quote": "q1", "outputs": wire_out},
                    {"quote": "q1", "outputs": wire_out, "signature": "ab" * 64}]


def test_nut20_support_is_read_from_info():
    def info(nuts):
        def handler(request):
            return httpx.Response(200, json={"name": "m", "nuts": nuts})
        return client(handler).get_info()

    assert info({"20": {"supported": True}}).supports(20)
    assert not info({"20": {"supported": False}}).supports(20)
    assert not info({"4": {"methods": [], "disabled": False}}).supports(20)


# --- the per-request array cap (NUT-06 max_array_length) -----------------------------


@pytest.mark.parametrize("announced, cap", [(1000, 1000), (3, 3), (None, 100), (0, 100),
                                            (-5, 100), ("1000", 100), (True, 100)])
def test_max_array_length_is_the_announced_cap_or_a_safe_default(announced, cap):
    from coco_actors.mint_client import MintInfo

    raw = {"name": "m"} if announced is None else {"name": "m", "max_array_length": announced}
    assert MintInfo.from_wire(raw).max_array_length == cap


def test_checkstate_and_restore_batches_never_exceed_the_announced_cap():
    sizes: dict[str, list[int]] = {"/v1/checkstate": [], "/v1/restore": []}

    def handler(request):
        if request.url.path == "/v1/info":
            return httpx.Response(200, json={"name": "m", "max_array_length": 3})
        body = json.loads(request.content)
        if request.url.path == "/v1/checkstate":
            sizes["/v1/checkstate"].append(len(body["Ys"]))
            return httpx.Response(200, json={"states": [
                {"Y": y, "state": "UNSPENT", "witness": None} for y in body["Ys"]]})
        sizes["/v1/restore"].append(len(body["outputs"]))
        return httpx.Response(200, json={"outputs": [], "signatures": []})

    c = MintClient(URL, transport=httpx.MockTransport(handler))
    ys = ["02" + f"{i:064x}" for i in range(1, 8)]
    assert c.max_array_length() == 3
    assert [s.Y for s in c.check_state(ys)] == ys
    c.restore([BlindedMessage(amount=1, keyset_id="00" + "ab" * 7, B_=B)] * 7)
    assert sizes == {"/v1/checkstate": [3, 3, 1], "/v1/restore": [3, 3, 1]}


def test_max_array_length_keeps_the_last_answer_when_the_mint_is_unreachable():
    calls = {"n": 0}

    def handler(request):
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(200, json={"name": "m", "max_array_length": 7})
        raise httpx.ConnectError("down")

    c = MintClient(URL, transport=httpx.MockTransport(handler))
    assert c.max_array_length() == 7
    assert c.max_array_length() == 7  # cached
    c._info = (c._info[0] - 10_000, c._info[1])  # stale: asked again, which fails
    assert c.max_array_length() == 7
    assert calls["n"] == 2
    assert MintClient(URL, transport=httpx.MockTransport(handler)).max_array_length() == 100
