"""NUT-20 against the real mint: each quote locked to a fresh wallet key, each mint
request for it signed, whether the redeem runs at once, after a reopen, or in
recovery after an interrupted request. Another wallet that learns the quote id
cannot mint it; a mint that does not offer NUT-20 keeps the unsigned flow.

A proxy in front of the mint records what the wallet sent, so each test checks the
signatures the mint received, not only that the mint accepted them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from coincurve import PrivateKey

from coco_actors import Coco
from coco_actors.codec import decode_record, encode_record
from coco_actors.crypto.nut20 import sign_mint_quote, verify_mint_quote
from coco_actors.crypto.outputs import random_outputs
from coco_actors.errors import (
    CODE_QUOTE_REQUIRES_PUBKEY,
    CODE_QUOTE_SIGNATURE_INVALID,
    MintRejectedError,
    MintUnreachableError,
    NotFoundError,
)
from coco_actors.keys import QUOTE_KEY_PATH, KeyDeriver
from coco_actors.mint_client import MintClient
from coco_actors.records import Operation, OperationId, OpState, OpType
from coco_actors.wire import split_amount
from devtools.devmint import DevMint
from tests.support.proxy import Exchange, Fault, FaultProxy

from .helpers import WalletFactory, balance_of, fee_of, snapshot, token_fee

AMOUNT = 100
QUOTE_PATH = "/v1/mint/quote/bolt11"
MINT_PATH = "/v1/mint/bolt11"


def mint_requests(proxy: FaultProxy) -> list[dict[str, Any]]:
    return [e.request_json() for e in proxy.seen("POST", MINT_PATH)]


def assert_signed(request: dict[str, Any], pubkey: str) -> None:
    """The mint request carries a NUT-20 signature by ``pubkey`` over its own outputs."""
    outputs = [o["B_"] for o in request["outputs"]]
    assert verify_mint_quote(pubkey, request["quote"], outputs, request["signature"])


def quote_op(coco: Coco, quote_id: str) -> Operation:
    op = coco.mint.open_operation_for(quote_id)
    assert op is not None
    return op


def stored_op(coco: Coco, op_id: str) -> Operation:
    op = coco.mint.get_operation(op_id)
    assert op is not None
    return op


# --- the signed flow -----------------------------------------------------------------------


def test_a_quote_is_locked_to_a_fresh_key_and_redeemed_signed(
        wallet: WalletFactory, mint: DevMint, proxy_for: Callable[[str], FaultProxy]) -> None:
    proxy = proxy_for(mint.url)
    coco = wallet("a", proxy.url)
    assert balance_of(coco, proxy.url) == (0, 0, 0)

    quote = coco.mint.create_quote(proxy.url, AMOUNT)
    assert quote.pubkey is not None
    [asked] = [e.request_json() for e in proxy.seen("POST", QUOTE_PATH)]
    assert asked == {"amount": AMOUNT, "unit": "sat", "pubkey": quote.pubkey}
    with MintClient(mint.url) as direct:  # the mint's own view of the quote
        assert direct.get_mint_quote(quote.id).pubkey == quote.pubkey
    op = quote_op(coco, quote.id)
    assert op.quote_pubkey == quote.pubkey
    assert balance_of(coco, proxy.url) == (0, 0, 0)

    done = coco.mint.redeem(quote.id, timeout=10)
    assert done.state == OpState.COMPLETED
    assert balance_of(coco, proxy.url) == (AMOUNT, 0, 0)
    [request] = mint_requests(proxy)
    assert request["quote"] == quote.id
    assert_signed(request, quote.pubkey)

    second = coco.mint.create_quote(proxy.url, 3)
    assert second.pubkey is not None and second.pubkey != quote.pubkey  # one key per quote
    # quote keys are on their own branch (m/129373'/20'/0'/0'/i), indices 0, 1, ...: they
    # are not P2PK keys handed out, and take no P2PK index (a restore's window stays dense)
    quote_keys = KeyDeriver(coco.mnemonic, QUOTE_KEY_PATH)
    assert (op.quote_key_index, quote_op(coco, second.id).quote_key_index) == (0, 1)
    assert [quote_keys.public(0), quote_keys.public(1)] == [quote.pubkey, second.pubkey]
    assert coco.keys.list() == []
    assert coco.keys.new() == KeyDeriver(coco.mnemonic).public(0)
    assert coco.mint.redeem(second.id, timeout=10).state == OpState.COMPLETED
    assert balance_of(coco, proxy.url) == (AMOUNT + 3, 0, 0)
    assert_signed(mint_requests(proxy)[-1], second.pubkey)

    # the minted proofs spend like any others
    prepared = coco.send.prepare_send(proxy.url, 50)
    swap_fee = fee_of(mint.input_fee_ppk, len(prepared.input_ys)) if prepared.needs_swap else 0
    assert prepared.fee == swap_fee
    _, token = coco.send.execute_prepared_send(prepared.id)
    other = wallet("b", proxy.url)
    received = other.receive(token)
    assert received.state == OpState.COMPLETED
    assert balance_of(other, proxy.url) == (50 - token_fee(token, mint.input_fee_ppk), 0, 0)
    assert [o.state for o in coco.send.check_pending()] == [OpState.COMPLETED]
    assert balance_of(coco, proxy.url) == (AMOUNT + 3 - 50 - swap_fee, 0, 0)


def test_another_wallet_that_learns_the_quote_id_cannot_mint_it(
        wallet: WalletFactory, mint: DevMint) -> None:
    owner = wallet("owner", mint.url)
    thief = wallet("thief", mint.url)
    quote = owner.mint.create_quote(mint.url, AMOUNT)
    before = (snapshot(owner), snapshot(thief))

    # the thief's wallet has no operation for it ...
    with pytest.raises(NotFoundError):
        thief.mint.redeem(quote.id, timeout=5)
    # ... and the mint refuses the quote to outputs of the thief's own, signed or not
    with MintClient(mint.url) as client:
        keyset = next(k for k in client.get_keysets() if k.active and k.unit == "sat")
        outputs = random_outputs(split_amount(AMOUNT), keyset.id)
        blinded = [o.blinded for o in outputs]
        forged = sign_mint_quote(PrivateKey().secret, quote.id, blinded)
        for signature in (None, forged):
            with pytest.raises(MintRejectedError) as info:
                client.mint(quote.id, blinded, signature=signature)
            assert info.value.code == CODE_QUOTE_SIGNATURE_INVALID  # 20008
        assert client.get_mint_quote(quote.id).state == "PAID"  # still the owner's to mint
    assert (snapshot(owner), snapshot(thief)) == before

    assert owner.mint.redeem(quote.id, timeout=10).state == OpState.COMPLETED
    assert balance_of(owner, mint.url) == (AMOUNT, 0, 0)
    assert balance_of(thief, mint.url) == (0, 0, 0)


# --- recovery ------------------------------------------------------------------------------


def test_a_reopened_wallet_still_mints_its_locked_quote(
        wallet: WalletFactory, mint: DevMint, proxy_for: Callable[[str], FaultProxy]) -> None:
    """The key is derived again from the mnemonic: nothing but its public half is stored."""
    proxy = proxy_for(mint.url)
    coco = wallet("a", proxy.url)
    quote = coco.mint.create_quote(proxy.url, AMOUNT)
    coco.close()

    coco = wallet("a")
    assert quote_op(coco, quote.id).quote_pubkey == quote.pubkey
    assert coco.mint.redeem(quote.id, timeout=10).state == OpState.COMPLETED
    assert balance_of(coco, proxy.url) == (AMOUNT, 0, 0)
    [request] = mint_requests(proxy)
    assert quote.pubkey is not None
    assert_signed(request, quote.pubkey)


@pytest.mark.parametrize("processed", [False, True], ids=["never-arrived", "answer-lost"])
def test_an_interrupted_signed_redeem_is_recovered_after_a_reopen(
        wallet: WalletFactory, mint: DevMint, proxy_for: Callable[[str], FaultProxy],
        processed: bool) -> None:
    """The quote is paid and the outputs are persisted (``executing``) when the mint
    request fails: the mint never saw it, or processed it and the answer was lost.
    Recovery after a reopen finds out which, and signs again if it must mint."""
    proxy = proxy_for(mint.url)
    coco = wallet("a", proxy.url)
    quote = coco.mint.create_quote(proxy.url, AMOUNT)
    assert quote.pubkey is not None
    fault = Fault.DROP_RESPONSE if processed else Fault.RESET
    proxy.inject("POST", MINT_PATH, fault, forward=processed)
    with pytest.raises(MintUnreachableError):
        coco.mint.redeem(quote.id, timeout=10)
    op = quote_op(coco, quote.id)
    assert op.state == OpState.EXECUTING and len(op.outputs) == len(split_amount(AMOUNT))
    assert balance_of(coco, proxy.url) == (0, 0, 0)
    coco.close()

    coco = wallet("a")  # recovery runs in open
    assert coco.last_recovery.get("completed") == 1
    assert stored_op(coco, op.id).state == OpState.COMPLETED
    assert balance_of(coco, proxy.url) == (AMOUNT, 0, 0)
    requests = mint_requests(proxy)
    assert len(requests) == (1 if processed else 2)  # restored, or minted again
    for request in requests:
        assert [o["B_"] for o in request["outputs"]] == [o.B_ for o in op.outputs]
        assert_signed(request, quote.pubkey)


def test_a_record_whose_key_is_lost_is_a_clear_error_that_changes_nothing(
        wallet: WalletFactory, mint: DevMint, proxy_for: Callable[[str], FaultProxy],
        caplog: pytest.LogCaptureFixture) -> None:
    """A quote locked to a key this wallet cannot derive (e.g. a record written by a
    wallet of another mnemonic): redeem says so, sends nothing, logs no key."""
    proxy = proxy_for(mint.url)
    coco = wallet("a", proxy.url)
    quote = coco.mint.create_quote(proxy.url, AMOUNT)
    coco.close()
    coco = wallet("a")  # the record is read again from the store when next needed
    op = quote_op(coco, quote.id)
    foreign = PrivateKey()
    foreign_pub = foreign.public_key.format().hex()
    coco._ledger.commit(replace(op, quote_pubkey=foreign_pub)).get(timeout=5)
    before = snapshot(coco)

    with caplog.at_level(logging.DEBUG), pytest.raises(NotFoundError, match="NUT-20 key"):
        coco.mint.redeem(quote.id, timeout=10)
    assert stored_op(coco, op.id).state == OpState.PREPARED
    assert mint_requests(proxy) == []
    assert snapshot(coco) == before
    assert foreign_pub not in caplog.text and foreign.secret.hex() not in caplog.text
    assert quote.pubkey is not None and quote.pubkey not in caplog.text


# --- a mint without NUT-20 -----------------------------------------------------------------


def without_nut20(answer: Any) -> Any:
    """``/v1/info`` as a mint that does not offer NUT-20 would answer it."""
    answer["nuts"].pop("20", None)
    return answer


def test_a_mint_without_nut20_keeps_the_unsigned_flow(
        wallet: WalletFactory, mint: DevMint, proxy_for: Callable[[str], FaultProxy]) -> None:
    proxy = proxy_for(mint.url)
    rules = [proxy.tamper("GET", "/v1/info", without_nut20) for _ in range(5)]
    coco = wallet("a", proxy.url)
    assert rules[0].fired.is_set() and "20" not in rules[0].sent["nuts"]

    quote = coco.mint.create_quote(proxy.url, AMOUNT)
    assert quote.pubkey is None
    assert quote_op(coco, quote.id).quote_pubkey is None
    [asked] = [e.request_json() for e in proxy.seen("POST", QUOTE_PATH)]
    assert asked == {"amount": AMOUNT, "unit": "sat"}
    assert coco.mint.redeem(quote.id, timeout=10).state == OpState.COMPLETED
    assert balance_of(coco, proxy.url) == (AMOUNT, 0, 0)
    [request] = mint_requests(proxy)
    assert "signature" not in request
    assert not any(_carries_pubkey(e) for e in proxy.seen())


def _carries_pubkey(exchange: Exchange) -> bool:
    body = exchange.request_json()
    return isinstance(body, dict) and ("pubkey" in body or "signature" in body)


# --- stored records ------------------------------------------------------------------------


def test_a_mint_record_written_before_nut20_still_decodes() -> None:
    op = Operation(id=OperationId("ab" * 16), type=OpType.MINT, mint_url="http://127.0.0.1:1",
                   amount=5, state=OpState.PREPARED, quote_id="q", quote_request="lnbc1")
    stored = json.loads(encode_record(op))
    assert stored.pop("quote_pubkey") is None
    old = decode_record(json.dumps(stored).encode(), Operation)
    assert old == op and old.quote_pubkey is None
    locked = replace(op, quote_pubkey="02" + "11" * 32)
    assert decode_record(encode_record(locked), Operation) == locked


def test_a_mint_that_requires_a_key_without_saying_so_is_asked_again_with_one(
        wallet: WalletFactory, mint: DevMint, proxy_for: Callable[[str], FaultProxy]) -> None:
    """Info without NUT-20, yet the unlocked quote request is refused with 20009."""
    proxy = proxy_for(mint.url)
    for _ in range(5):
        proxy.tamper("GET", "/v1/info", without_nut20)
    refusal = proxy.tamper("POST", QUOTE_PATH, lambda answer: {
        "code": CODE_QUOTE_REQUIRES_PUBKEY, "detail": "Pubkey required for mint quote"},
        status=400)
    coco = wallet("a", proxy.url)

    quote = coco.mint.create_quote(proxy.url, AMOUNT)
    assert refusal.fired.is_set()
    first, second = [e.request_json() for e in proxy.seen("POST", QUOTE_PATH)]
    assert "pubkey" not in first
    assert quote.pubkey is not None and second["pubkey"] == quote.pubkey
    assert quote_op(coco, quote.id).quote_pubkey == quote.pubkey
    assert coco.mint.redeem(quote.id, timeout=10).state == OpState.COMPLETED
    assert balance_of(coco, proxy.url) == (AMOUNT, 0, 0)
    [request] = mint_requests(proxy)
    assert_signed(request, quote.pubkey)
