"""Receiving: a token counts once, however often it is presented."""

from __future__ import annotations

import pytest

from coco_actors import InvalidAmountError, TokenSpentError
from coco_actors.mint_client import normalize_mint_url
from devtools.devmint import DevMint

from .helpers import WalletFactory, balance_of, fund, snapshot, token_fee


def test_receiving_the_same_token_twice_counts_once(wallet: WalletFactory,
                                                    mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice, bob = wallet("alice", url), wallet("bob", url)
    fund(alice, url, 1000)
    prepared = alice.send.prepare_send(url, 100)
    _, token = alice.send.execute_prepared_send(prepared.id)
    net = 100 - token_fee(token, mint.input_fee_ppk)

    first = bob.receive(token)
    assert (first.state, first.amount) == ("completed", net)
    assert balance_of(bob, url) == (net, 0, 0)

    with pytest.raises(TokenSpentError):
        bob.receive(token)
    assert balance_of(bob, url) == (net, 0, 0)
    states = sorted(h.state for h in bob.history.get_history() if h.type == "receive")
    assert states == ["completed", "rolled_back"]

    # the sender sees it claimed once
    assert [o.state for o in alice.send.check_pending()] == ["completed"]
    assert balance_of(alice, url) == (1000 - 100 - prepared.fee, 0, 0)


def test_token_worth_less_than_its_fee_is_refused(wallet: WalletFactory,
                                                  mint_fee100: DevMint) -> None:
    """A 1-sat proof costs 1 sat to swap at 100 ppk: refused, and nothing is left behind."""
    url = normalize_mint_url(mint_fee100.url)
    alice, bob = wallet("alice", url), wallet("bob", url)
    fund(alice, url, 1000)
    prepared = alice.send.prepare_send(url, 1)
    _, token = alice.send.execute_prepared_send(prepared.id)
    assert token_fee(token, mint_fee100.input_fee_ppk) == 1

    before = snapshot(bob)
    with pytest.raises(InvalidAmountError):
        bob.receive(token)
    assert snapshot(bob) == before
    # no operation actor is left running for the refused receive
    assert bob._supervisor.live_actor_count().get(timeout=5) == 0
