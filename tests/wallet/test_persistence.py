"""Close and reopen: proofs, operations, NUT-13 counters and history all survive."""

from __future__ import annotations

import pytest
from mnemonic import Mnemonic

from coco_actors import InvalidInputError
from coco_actors.mint_client import normalize_mint_url
from coco_actors.store import WalletLockedError
from devtools.devmint import DevMint

from .helpers import WalletFactory, balance_of, fund, token_fee


def test_reopen_keeps_everything(wallet: WalletFactory, mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice, bob = wallet("alice", url), wallet("bob", url)
    fund(alice, url, 1000)
    held = alice.send.prepare_send(url, 100)            # stays prepared
    out = alice.send.prepare_send(url, 200)
    pending, token = alice.send.execute_prepared_send(out.id)  # stays pending
    spendable = 1000 - held.input_amount - 200 - out.fee
    assert balance_of(alice, url) == (spendable, held.input_amount, 200)
    history = [(h.operation_id, h.type, h.amount, h.state) for h in alice.history.get_history()]
    assert sorted(h[1:] for h in history) == sorted([
        ("mint", 1000, "completed"), ("send", 100, "prepared"), ("send", 200, "pending")])
    mnemonic = alice.mnemonic
    alice.close()

    alice = wallet("alice")
    assert alice.mnemonic == mnemonic
    assert [m.url for m in alice.mints.list()] == [url]
    assert balance_of(alice, url) == (spendable, held.input_amount, 200)
    ops = {o.id: o for o in alice.send.get_pending_operations()}
    assert {i: o.state for i, o in ops.items()} == {held.id: "prepared", pending.id: "pending"}
    assert ops[held.id].input_ys == held.input_ys
    assert ops[pending.id].token == token
    assert [(h.operation_id, h.type, h.amount, h.state)
            for h in alice.history.get_history()] == history

    # counters survived: fresh outputs are not ones the mint already signed (11003);
    # 300 has no exact match among the remaining proofs, so this send swaps
    more = alice.send.prepare_send(url, 300)
    assert more.needs_swap is True
    more_op, more_token = alice.send.execute_prepared_send(more.id)
    assert more_op.state == "pending"
    spendable -= 300 + more.fee
    assert balance_of(alice, url) == (spendable, held.input_amount, 500)

    # both tokens made before and after the reopen are good
    ppk = mint.input_fee_ppk
    bob.receive(token)
    bob.receive(more_token)
    assert balance_of(bob, url) == (
        500 - token_fee(token, ppk) - token_fee(more_token, ppk), 0, 0)
    assert sorted((o.id, o.state) for o in alice.send.check_pending()) == sorted(
        [(pending.id, "completed"), (more.id, "completed")])

    # the prepared send can still be rolled back after the reopen
    assert alice.send.rollback(held.id).state == "rolled_back"
    assert balance_of(alice, url) == (spendable + held.input_amount, 0, 0)
    assert alice.send.get_pending_operations() == []


def test_reopen_with_another_mnemonic_is_refused(wallet: WalletFactory) -> None:
    alice = wallet("alice")
    mnemonic = alice.mnemonic
    alice.close()
    other = Mnemonic("english").generate(strength=128)
    assert other != mnemonic
    with pytest.raises(InvalidInputError):
        wallet("alice", mnemonic=other)
    # the refusal released the directory, and kept the wallet's own phrase
    assert wallet("alice", mnemonic=mnemonic).mnemonic == mnemonic


def test_data_dir_cannot_be_opened_twice(wallet: WalletFactory, mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url)
    fund(alice, url, 100)
    with pytest.raises(WalletLockedError):
        wallet("alice")
    # the first opener is unaffected
    assert balance_of(alice, url) == (100, 0, 0)
    prepared = alice.send.prepare_send(url, 4)
    assert prepared.state == "prepared"
    alice.send.rollback(prepared.id)
    alice.close()
    assert balance_of(wallet("alice"), url) == (100, 0, 0)



def test_data_directory_permissions_allow_the_owner_only(tmp_path) -> None:
    """py-lmdb would create the environment directory 0600 (no search bit: unusable by
    any non-root owner); the store makes it 0700 and the files 0600."""
    from coco_actors.store import Store

    store = Store(tmp_path / "w")
    store.close()
    env_dir = tmp_path / "w" / "wallet.lmdb"
    assert (tmp_path / "w").stat().st_mode & 0o777 == 0o700
    assert env_dir.stat().st_mode & 0o777 == 0o700
    assert {f.stat().st_mode & 0o777 for f in env_dir.iterdir()} == {0o600}
    Store(tmp_path / "w").close()  # and it opens again
