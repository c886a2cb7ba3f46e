"""Recovery at open: pending sends rest without actors, stale prepared sends roll back."""

from __future__ import annotations

from coco_actors.mint_client import normalize_mint_url
from devtools.devmint import DevMint

from .helpers import WalletFactory, balance_of, fund


def live_actors(coco) -> int:
    return coco._supervisor.live_actor_count().get(timeout=10)


def test_pending_sends_hold_no_actor_and_still_roll_back(wallet: WalletFactory,
                                                         mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url)
    fund(alice, url, 500)
    ops = []
    for amount in (10, 20, 30):
        prepared = alice.send.prepare_send(url, amount)
        ops.append(alice.send.execute_prepared_send(prepared.id)[0])
    assert live_actors(alice) == 0            # every pending send is at rest
    before = balance_of(alice, url)
    back = alice.send.rollback(ops[1].id)     # rehydrated on demand
    assert back.state == "rolled_back"
    assert balance_of(alice, url)[2] == before[2] - 20
    alice.close()

    alice = wallet("alice")                   # recovery: one batched NUT-07, no actors kept
    assert {o.id: o.state for o in alice.send.get_pending_operations()} == {
        ops[0].id: "pending", ops[2].id: "pending"}
    assert live_actors(alice) == 0
    assert alice.last_recovery == {"pending": 2}


def test_stale_prepared_sends_roll_back_only_with_the_policy(wallet: WalletFactory,
                                                            mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url)
    fund(alice, url, 300)
    held = alice.send.prepare_send(url, 100)
    spendable, reserved, _ = balance_of(alice, url)
    assert reserved == held.input_amount
    alice.close()

    alice = wallet("alice")                   # policy off (default): left as is
    assert alice.send.get_operation(held.id).state == "prepared"
    assert alice.last_recovery == {"prepared": 1}
    alice.close()

    alice = wallet("alice", rollback_prepared_after=0.0)
    assert alice.send.get_operation(held.id).state == "rolled_back"
    assert balance_of(alice, url) == (spendable + reserved, 0, 0)
    assert alice.last_recovery == {"rolled_back": 1}
