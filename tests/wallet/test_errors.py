"""Bad input gets a typed error and changes nothing: balances, operations, history."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from coco_actors import (
    Coco,
    CryptoError,
    InsufficientFundsError,
    InvalidAmountError,
    InvalidStateError,
    NotFoundError,
    TokenError,
)
from coco_actors.mint_client import normalize_mint_url
from coco_actors.tokens import Token, decode, encode_v4
from devtools.devmint import DevMint

from .helpers import WalletFactory, balance_of, fund, snapshot

#: An insufficient-funds answer must not wait for change that cannot come.
FAST = 5.0


@pytest.fixture
def funded(wallet: WalletFactory, mint: DevMint) -> tuple[Coco, str]:
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    return alice, url


@pytest.mark.parametrize("amount", [0, -1, 1.5, "10", None, True])
def test_bad_amount(funded: tuple[Coco, str], amount: Any) -> None:
    alice, url = funded
    before = snapshot(alice)
    with pytest.raises(InvalidAmountError):
        alice.send.prepare_send(url, amount)
    with pytest.raises(InvalidAmountError):
        alice.mint.create_quote(url, amount)
    assert snapshot(alice) == before


def test_amount_above_balance_fails_fast(funded: tuple[Coco, str]) -> None:
    alice, url = funded
    before = snapshot(alice)
    for amount in (1001, 10**9):
        started = time.monotonic()
        with pytest.raises(InsufficientFundsError) as info:
            alice.send.prepare_send(url, amount)
        assert time.monotonic() - started < FAST
        assert info.value.available == 1000
        assert snapshot(alice) == before


def test_amount_above_balance_fails_fast_while_a_send_is_prepared(
        funded: tuple[Coco, str]) -> None:
    alice, url = funded
    held = alice.send.prepare_send(url, 100)
    before = snapshot(alice)
    assert balance_of(alice, url) == (1000 - held.input_amount, held.input_amount, 0)
    started = time.monotonic()
    with pytest.raises(InsufficientFundsError):
        alice.send.prepare_send(url, 1001)  # more than spendable + reserved
    assert time.monotonic() - started < FAST
    assert snapshot(alice) == before
    alice.send.rollback(held.id)
    assert balance_of(alice, url) == (1000, 0, 0)


def test_unknown_mint(funded: tuple[Coco, str]) -> None:
    alice, _ = funded
    before = snapshot(alice)
    with pytest.raises(NotFoundError):
        alice.send.prepare_send("http://127.0.0.1:9", 10)
    with pytest.raises(NotFoundError):
        alice.mint.create_quote("http://127.0.0.1:9", 10)
    assert snapshot(alice) == before


@pytest.mark.parametrize("op_id", ["nope", "", "0" * 32])
def test_unknown_operation(funded: tuple[Coco, str], op_id: str) -> None:
    alice, _ = funded
    before = snapshot(alice)
    with pytest.raises(NotFoundError):
        alice.send.execute_prepared_send(op_id)
    with pytest.raises(NotFoundError):
        alice.send.rollback(op_id)
    assert alice.send.get_operation(op_id) is None
    assert snapshot(alice) == before


def test_operation_of_another_kind_is_not_a_send(funded: tuple[Coco, str]) -> None:
    alice, _ = funded
    mint_op = next(h for h in alice.history.get_history() if h.type == "mint")
    before = snapshot(alice)
    with pytest.raises(NotFoundError):
        alice.send.execute_prepared_send(mint_op.operation_id)
    with pytest.raises(NotFoundError):
        alice.send.rollback(mint_op.operation_id)
    assert alice.send.get_operation(mint_op.operation_id) is None
    assert snapshot(alice) == before


@pytest.mark.parametrize("token", ["", "hello", "cashuB", "cashuBgarbage!!", "cashuAe30=",
                                   "cashuA" + "eyJ0b2tlbiI6W119", 42, None])
def test_malformed_token(funded: tuple[Coco, str], token: Any) -> None:
    alice, _ = funded
    before = snapshot(alice)
    with pytest.raises(TokenError):
        alice.receive(token)
    assert snapshot(alice) == before


def test_token_from_a_mint_not_added(wallet: WalletFactory, funded: tuple[Coco, str]) -> None:
    alice, url = funded
    prepared = alice.send.prepare_send(url, 8)  # exact match: no swap
    _, token = alice.send.execute_prepared_send(prepared.id)
    foreign = encode_v4(Token(mint="http://127.0.0.1:9", proofs=decode(token).proofs))

    bob = wallet("bob")  # knows no mint at all
    before = snapshot(bob)
    with pytest.raises(NotFoundError):
        bob.receive(token)
    assert snapshot(bob) == before

    bob.mints.add(url)  # knows the real mint, not the one this token names
    before = snapshot(bob)
    with pytest.raises(NotFoundError):
        bob.receive(foreign)
    assert snapshot(bob) == before


def test_rollback_of_a_finished_send(wallet: WalletFactory, funded: tuple[Coco, str]) -> None:
    alice, url = funded
    bob = wallet("bob", url)
    sent = alice.send.prepare_send(url, 40)
    _, token = alice.send.execute_prepared_send(sent.id)
    bob.receive(token)
    assert [o.state for o in alice.send.check_pending()] == ["completed"]
    undone = alice.send.prepare_send(url, 8)
    assert alice.send.rollback(undone.id).state == "rolled_back"

    before = snapshot(alice)
    assert balance_of(alice, url) == (960, 0, 0)
    for op_id in (sent.id, undone.id):
        with pytest.raises(InvalidStateError):
            alice.send.rollback(op_id)
        with pytest.raises(InvalidStateError):
            alice.send.execute_prepared_send(op_id)
    assert snapshot(alice) == before


def test_execute_twice(funded: tuple[Coco, str]) -> None:
    alice, url = funded
    prepared = alice.send.prepare_send(url, 100)
    op, _ = alice.send.execute_prepared_send(prepared.id)
    before = snapshot(alice)
    with pytest.raises(InvalidStateError):
        alice.send.execute_prepared_send(op.id)
    assert snapshot(alice) == before


def test_amount_no_change_can_cover_fails_fast(funded: tuple[Coco, str]) -> None:
    """Waiting for change only helps when the change could cover the amount.

    A prepared send holds one proof; even once it has been executed, the wallet
    holds at most ``spendable + change``. Asking for more than that can never
    succeed, so it must not wait 30 s for change first.
    """
    alice, url = funded
    held = alice.send.prepare_send(url, 100)
    spendable = 1000 - held.input_amount
    change = held.input_amount - held.amount - held.fee
    assert balance_of(alice, url) == (spendable, held.input_amount, 0)
    before = snapshot(alice)
    started = time.monotonic()
    with pytest.raises(InsufficientFundsError):
        alice.send.prepare_send(url, spendable + change + 1)
    assert time.monotonic() - started < FAST
    assert snapshot(alice) == before
    alice.send.rollback(held.id)


def test_token_with_a_forged_signature(wallet: WalletFactory, funded: tuple[Coco, str]) -> None:
    alice, url = funded
    prepared = alice.send.prepare_send(url, 40)  # exact: 32 + 8, each with its DLEQ proof
    _, token = alice.send.execute_prepared_send(prepared.id)
    proofs = decode(token).proofs
    assert all(p.dleq is not None for p in proofs)
    # swap the signatures: each C is a valid point, but not the mint's signature on that secret
    forged_proofs = (replace(proofs[0], C=proofs[1].C), replace(proofs[1], C=proofs[0].C))
    forged = encode_v4(Token(mint=url, proofs=forged_proofs))

    bob = wallet("bob", url)
    before = snapshot(bob)
    with pytest.raises(CryptoError):
        bob.receive(forged)
    assert snapshot(bob) == before
    assert bob._supervisor.live_actor_count().get(timeout=5) == 0
    # the real token is still good
    assert bob.receive(token).state == "completed"
