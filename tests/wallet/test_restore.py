"""Wallet restore from the mnemonic alone, against the real mint."""

from __future__ import annotations

from coco_actors.mint_client import normalize_mint_url
from coco_actors.tokens import decode
from devtools.devmint import DevMint

from .helpers import WalletFactory, balance_of, fee_of, fund


def test_restore_recovers_unspent_proofs_and_moves_counters_forward(
        wallet: WalletFactory, mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    done = alice.send.prepare_send(url, 100)
    _, claimed_token = alice.send.execute_prepared_send(done.id)
    bob = wallet("bob", url)
    bob.receive(claimed_token)                    # spent: must not come back
    alice.send.check_pending()
    open_send = alice.send.prepare_send(url, 200)
    alice.send.execute_prepared_send(open_send.id)  # unclaimed: its value is still ours
    spendable, reserved, pending = balance_of(alice, url)
    assert (reserved, pending) == (0, 200)
    keyset_counters = {ks.id: alice._ledger.counter(ks.id).get(timeout=5)
                       for ks in alice._mint_context(url).keysets}

    # the same wallet gains nothing: it holds or has handed out every unspent proof
    again = alice.restore(url)
    assert (again.restored, again.proofs) == (0, 0)
    assert balance_of(alice, url) == (spendable, 0, 200)

    # a fresh data directory with the mnemonic alone
    twin = wallet("twin", url, mnemonic=alice.mnemonic)
    report = twin.restore(url)
    assert report.restored == spendable + 200     # change, plus the unclaimed token
    assert balance_of(twin, url) == (spendable + 200, 0, 0)
    for keyset_id, used in keyset_counters.items():
        assert report.counters[keyset_id] >= used  # past the last index used
    assert [h.type for h in twin.history.get_history()] == ["restore"]
    # a second restore adds nothing; counters never move back
    assert twin.restore(url).proofs == 0
    # fresh outputs after the restore: a swap works, no "outputs already signed". The
    # amount is one no subset of the twin's proofs makes exactly, so the send must swap.
    held = {r.Y: r.amount for r in twin._ledger.all_proof_records().get(timeout=5)}
    sums = {0}
    for a in held.values():
        sums |= {s + a for s in sums}
    gaps = [a for a in range(1, sum(held.values()) // 2) if a not in sums]
    assert gaps, f"every amount is an exact match of {sorted(held.values())}"
    amount = gaps[0]
    p = twin.send.prepare_send(url, amount)
    assert p.needs_swap is True
    assert p.fee == fee_of(mint.input_fee_ppk, len(p.input_ys))
    assert p.input_amount == sum(held[y] for y in p.input_ys)
    assert p.input_amount >= amount + p.fee
    op, token = twin.send.execute_prepared_send(p.id)
    assert op.state == "pending"
    assert decode(token).amount == amount
    assert balance_of(twin, url) == (spendable + 200 - amount - p.fee, 0, amount)
