"""The Supervisor restarts an operation actor from its persisted record."""

from __future__ import annotations

import pytest

from coco_actors import Coco, TokenSpentError
from coco_actors.mint_client import normalize_mint_url
from devtools.devmint import DevMint

from .helpers import WalletFactory, balance_of, fund, token_fee

LOOKUP = 5.0


def _kill(coco: Coco, op_id: str) -> None:
    ref = coco._supervisor.actor_for(op_id).get(timeout=LOOKUP).actor_ref
    assert ref.is_alive()
    ref.stop(block=True, timeout=LOOKUP)
    assert not ref.is_alive()


def test_stopped_actor_of_a_prepared_send_is_rehydrated(wallet: WalletFactory,
                                                        mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice, bob = wallet("alice", url), wallet("bob", url)
    fund(alice, url, 1000)
    prepared = alice.send.prepare_send(url, 100)
    _kill(alice, prepared.id)

    op, token = alice.send.execute_prepared_send(prepared.id)
    assert op.id == prepared.id
    assert op.state == "pending"
    assert balance_of(alice, url) == (1000 - 100 - prepared.fee, 0, 100)

    net = 100 - token_fee(token, mint.input_fee_ppk)
    assert bob.receive(token).amount == net
    assert [o.state for o in alice.send.check_pending()] == ["completed"]
    assert balance_of(alice, url) == (1000 - 100 - prepared.fee, 0, 0)


def test_stopped_actor_of_a_pending_send_is_rehydrated(wallet: WalletFactory,
                                                       mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice, bob = wallet("alice", url), wallet("bob", url)
    fund(alice, url, 1000)
    prepared = alice.send.prepare_send(url, 100)
    op, token = alice.send.execute_prepared_send(prepared.id)
    _kill(alice, op.id)

    assert alice.send.rollback(op.id).state == "rolled_back"
    reclaim_fee = token_fee(token, mint.input_fee_ppk)
    assert balance_of(alice, url) == (1000 - prepared.fee - reclaim_fee, 0, 0)
    with pytest.raises(TokenSpentError):
        bob.receive(token)
