"""The send saga end to end against a real mint, with and without input fees.

Every step is checked to the sat: spendable, reserved and pending of the sender,
and what the receiver ends up with after paying the mint's input fee.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from coco_actors import InvalidStateError, TokenSpentError
from coco_actors.mint_client import normalize_mint_url
from coco_actors.tokens import decode
from devtools.devmint import DevMint

from .helpers import WalletFactory, balance_of, fee_of, fund, token_fee

EVENT_TIMEOUT = 5.0


def test_send_receive_and_finalize(wallet: WalletFactory, mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice, bob = wallet("alice", url), wallet("bob", url)
    fund(alice, url, 1000)
    assert balance_of(alice, url) == (1000, 0, 0)

    prepared = alice.send.prepare_send(url, 100)
    assert prepared.state == "prepared"
    assert prepared.amount == 100
    assert prepared.needs_swap is True
    # 1000 is minted as 512+256+128+64+32+8: no exact 100, the 128 alone covers it
    assert (prepared.input_amount, len(prepared.input_ys)) == (128, 1)
    fee = prepared.fee
    assert fee == fee_of(mint.input_fee_ppk, 1)
    assert balance_of(alice, url) == (1000 - prepared.input_amount, prepared.input_amount, 0)

    op, token = alice.send.execute_prepared_send(prepared.id)
    assert op.id == prepared.id
    assert op.state == "pending"
    assert op.fee == fee
    decoded = decode(token)
    assert decoded.amount == 100
    assert normalize_mint_url(decoded.mint) == url
    assert balance_of(alice, url) == (1000 - 100 - fee, 0, 100)

    finalized = threading.Event()
    payloads: list[dict[str, Any]] = []

    def on_finalized(payload: dict[str, Any]) -> None:
        payloads.append(payload)
        finalized.set()

    alice.on("send:finalized", on_finalized)

    received = bob.receive(token)
    receive_fee = token_fee(token, mint.input_fee_ppk)
    assert received.state == "completed"
    assert received.fee == receive_fee
    assert received.amount == 100 - receive_fee
    assert balance_of(bob, url) == (100 - receive_fee, 0, 0)

    checked = alice.send.check_pending()
    assert [(o.id, o.state) for o in checked] == [(op.id, "completed")]
    assert finalized.wait(EVENT_TIMEOUT), "send:finalized was not emitted"
    assert len(payloads) == 1
    assert payloads[0]["operation_id"] == op.id
    assert payloads[0]["mint_url"] == url
    assert payloads[0]["operation"].state == "completed"

    final = alice.send.get_operation(op.id)
    assert final is not None and final.state == "completed"
    assert alice.send.get_pending_operations() == []
    assert balance_of(alice, url) == (1000 - 100 - fee, 0, 0)
    assert balance_of(bob, url) == (100 - receive_fee, 0, 0)
    history = {h.operation_id: h for h in alice.history.get_history()}
    assert (history[op.id].type, history[op.id].amount, history[op.id].state) == (
        "send", 100, "completed")


@pytest.mark.parametrize("amount", [8, 40])
def test_exact_match_send_needs_no_swap(wallet: WalletFactory, mint: DevMint,
                                        amount: int) -> None:
    # 1000 is minted as 512+256+128+64+32+8: 8 and 40 (=32+8) are exact matches
    url = normalize_mint_url(mint.url)
    alice, bob = wallet("alice", url), wallet("bob", url)
    fund(alice, url, 1000)

    prepared = alice.send.prepare_send(url, amount)
    assert prepared.needs_swap is False
    assert prepared.fee == 0
    assert prepared.input_amount == amount
    assert balance_of(alice, url) == (1000 - amount, amount, 0)

    op, token = alice.send.execute_prepared_send(prepared.id)
    assert op.state == "pending"
    decoded = decode(token)
    assert sorted(p.amount for p in decoded.proofs) == sorted(
        {8: [8], 40: [32, 8]}[amount])
    assert balance_of(alice, url) == (1000 - amount, 0, amount)

    received = bob.receive(token)
    receive_fee = token_fee(token, mint.input_fee_ppk)
    assert received.state == "completed"
    assert balance_of(bob, url) == (amount - receive_fee, 0, 0)

    assert [o.state for o in alice.send.check_pending()] == ["completed"]
    assert balance_of(alice, url) == (1000 - amount, 0, 0)


def test_rollback_of_prepared_send_releases_proofs(wallet: WalletFactory,
                                                   mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)

    rolled_back = threading.Event()
    alice.on("send:rolled-back", lambda payload: rolled_back.set())

    prepared = alice.send.prepare_send(url, 100)
    assert balance_of(alice, url) == (1000 - prepared.input_amount, prepared.input_amount, 0)

    op = alice.send.rollback(prepared.id)
    assert op.state == "rolled_back"
    assert rolled_back.wait(EVENT_TIMEOUT)
    stored = alice.send.get_operation(prepared.id)
    assert stored is not None and stored.state == "rolled_back"
    assert balance_of(alice, url) == (1000, 0, 0)
    assert alice.send.get_pending_operations() == []

    # every proof is spendable again: the whole balance is an exact match
    everything = alice.send.prepare_send(url, 1000)
    assert (everything.needs_swap, everything.fee, everything.input_amount) == (False, 0, 1000)
    assert balance_of(alice, url) == (0, 1000, 0)
    alice.send.rollback(everything.id)
    assert balance_of(alice, url) == (1000, 0, 0)


def test_rollback_of_pending_send_reclaims_token(wallet: WalletFactory, mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice, bob = wallet("alice", url), wallet("bob", url)
    fund(alice, url, 1000)

    prepared = alice.send.prepare_send(url, 100)
    op, token = alice.send.execute_prepared_send(prepared.id)
    assert balance_of(alice, url) == (1000 - 100 - prepared.fee, 0, 100)

    reclaim_fee = token_fee(token, mint.input_fee_ppk)
    rolled = alice.send.rollback(op.id)
    assert rolled.state == "rolled_back"
    assert balance_of(alice, url) == (1000 - prepared.fee - reclaim_fee, 0, 0)
    stored = alice.send.get_operation(op.id)
    assert stored is not None and stored.state == "rolled_back"

    with pytest.raises(TokenSpentError):
        bob.receive(token)
    assert balance_of(bob, url) == (0, 0, 0)
    assert balance_of(alice, url) == (1000 - prepared.fee - reclaim_fee, 0, 0)

    # and it cannot be rolled back a second time
    with pytest.raises(InvalidStateError):
        alice.send.rollback(op.id)
    assert balance_of(alice, url) == (1000 - prepared.fee - reclaim_fee, 0, 0)


def test_rollback_after_the_recipient_claimed(wallet: WalletFactory, mint: DevMint) -> None:
    """The reclaim swap finds the token spent: the send is over, nothing comes back."""
    url = normalize_mint_url(mint.url)
    alice, bob = wallet("alice", url), wallet("bob", url)
    fund(alice, url, 1000)
    prepared = alice.send.prepare_send(url, 100)
    op, token = alice.send.execute_prepared_send(prepared.id)
    bob.receive(token)  # alice has not looked yet: her send is still pending

    finalized = threading.Event()
    alice.on("send:finalized", lambda payload: finalized.set())
    with pytest.raises(InvalidStateError):
        alice.send.rollback(op.id)
    assert finalized.wait(EVENT_TIMEOUT)
    stored = alice.send.get_operation(op.id)
    assert stored is not None and stored.state == "completed"
    assert balance_of(alice, url) == (1000 - 100 - prepared.fee, 0, 0)
    assert balance_of(bob, url) == (100 - token_fee(token, mint.input_fee_ppk), 0, 0)
    assert alice.send.get_pending_operations() == []
