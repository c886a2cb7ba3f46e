"""Wallet keys and locked ecash (NUT-10/11 P2PK) against a real mint, fees 0 and 100 ppk.

Every wallet talks to the mint through a FaultProxy, so a test can prove that a
refused receive made no request at all (the proxy records every one).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from coco_actors import Coco, InvalidInputError, LockedTokenError
from coco_actors.crypto.nut11 import p2pk_conditions, parse_secret
from coco_actors.mint_client import normalize_mint_url
from coco_actors.tokens import decode
from devtools.devmint import DevMint
from tests.support.proxy import FaultProxy

from .helpers import WalletFactory, balance_of, fee_of, fund, snapshot, token_fee

MNEMONIC = ("abandon abandon abandon abandon abandon abandon abandon abandon abandon "
            "abandon abandon about")


@pytest.fixture
def proxied(mint: DevMint) -> Iterator[FaultProxy]:
    proxy = FaultProxy(mint.url)
    yield proxy
    proxy.stop()


def _lock_of(token: str) -> list[tuple[str, ...]]:
    out = []
    for p in decode(token).proofs:
        parsed = parse_secret(p.secret)
        assert parsed is not None and parsed.kind == "P2PK"
        cond = p2pk_conditions(parsed)
        out.append(cond.lock_keys)
    return out


def _send(coco: Coco, url: str, amount: int, ppk: int,
          **lock: object) -> tuple[str, int]:
    """A locked send, checked to the sat; (token, fee)."""
    before = balance_of(coco, url)
    prepared = coco.send.prepare_send(url, amount, **lock)  # type: ignore[arg-type]
    assert prepared.needs_swap is True  # a locked send always swaps
    fee = fee_of(ppk, len(prepared.input_ys))
    assert prepared.fee == fee
    assert balance_of(coco, url) == (before[0] - prepared.input_amount,
                                     before[1] + prepared.input_amount, before[2])
    op, token = coco.send.execute_prepared_send(prepared.id)
    assert op.state == "pending"
    assert decode(token).amount == amount
    assert balance_of(coco, url) == (before[0] - amount - fee, before[1], before[2] + amount)
    secrets = [p.secret for p in decode(token).proofs]
    assert len(set(secrets)) == len(secrets)  # each output its own nonce
    return token, fee


def test_keys_persist_and_stay_unique(wallet: WalletFactory) -> None:
    a = wallet("a")
    first = [a.keys.new() for _ in range(3)]
    assert len(set(first)) == 3
    assert all(len(k) == 66 and k[:2] in ("02", "03") for k in first)
    assert [k.index for k in a.keys.list()] == [0, 1, 2]
    assert a.mnemonic.split()[0] not in repr(a._keyring) + repr(a.keys.list())
    a.close()
    again = wallet("a")
    assert [k.public for k in again.keys.list()] == first
    fourth = again.keys.new()
    assert fourth not in first
    assert [k.index for k in again.keys.list()] == [0, 1, 2, 3]


def test_locked_send_between_wallets(wallet: WalletFactory, mint: DevMint,
                                     proxied: FaultProxy) -> None:
    url = normalize_mint_url(proxied.url)
    ppk = mint.input_fee_ppk
    alice, bob, carol = wallet("alice", url), wallet("bob", url), wallet("carol", url)
    fund(alice, url, 1000)
    bob_key = bob.keys.new()
    token, fee = _send(alice, url, 100, ppk, p2pk=bob_key)
    assert all(keys == (bob_key,) for keys in _lock_of(token))

    # carol holds none of the keys: refused, nothing changed, no request made
    carol.keys.new()
    before, requests = snapshot(carol), len(proxied.exchanges)
    with pytest.raises(LockedTokenError, match="does not hold"):
        carol.receive(token)
    assert snapshot(carol) == before
    assert len(proxied.exchanges) == requests
    assert balance_of(carol, url) == (0, 0, 0)

    received = bob.receive(token)
    receive_fee = token_fee(token, ppk)
    assert received.state == "completed"
    assert balance_of(bob, url) == (100 - receive_fee, 0, 0)
    alice.send.check_pending()
    assert balance_of(alice, url) == (1000 - 100 - fee, 0, 0)


def test_multisig_two_of_three(wallet: WalletFactory, mint: DevMint,
                               proxied: FaultProxy) -> None:
    url = normalize_mint_url(proxied.url)
    ppk = mint.input_fee_ppk
    alice, bob, carol = wallet("alice", url), wallet("bob", url), wallet("carol", url)
    fund(alice, url, 1000)
    k1, k2, k3 = bob.keys.new(), carol.keys.new(), bob.keys.new()
    token, fee = _send(alice, url, 64, ppk, p2pk=[k1, k2, k3], n_sigs=2)
    assert all(keys == (k1, k2, k3) for keys in _lock_of(token))

    before, requests = snapshot(carol), len(proxied.exchanges)
    with pytest.raises(LockedTokenError, match="needs 2 signatures"):
        carol.receive(token)  # holds 1 of the 3
    assert snapshot(carol) == before and len(proxied.exchanges) == requests

    received = bob.receive(token)  # holds 2 of the 3
    assert received.state == "completed"
    assert balance_of(bob, url) == (64 - token_fee(token, ppk), 0, 0)
    assert balance_of(alice, url) == (1000 - 64 - fee, 0, 64)


def test_refund_after_locktime(wallet: WalletFactory, mint: DevMint,
                               proxied: FaultProxy) -> None:
    url = normalize_mint_url(proxied.url)
    ppk = mint.input_fee_ppk
    alice, bob = wallet("alice", url), wallet("bob", url)
    fund(alice, url, 1000)
    refund_key, bob_key = alice.keys.new(), bob.keys.new()

    # a locktime in the past: the sender takes it back with its refund key
    token, fee = _send(alice, url, 100, ppk, p2pk=bob_key, locktime=int(time.time()) - 60,
                       refund=refund_key)
    pending = alice.send.get_pending_operations()[0]
    rolled = alice.send.rollback(pending.id)
    assert rolled.state == "rolled_back"
    reclaim_fee = token_fee(token, ppk)
    assert balance_of(alice, url) == (1000 - fee - reclaim_fee, 0, 0)
    spendable = 1000 - fee - reclaim_fee

    # a locktime in the future: refused, and why; the recipient can still claim it
    token, fee = _send(alice, url, 100, ppk, p2pk=bob_key, locktime=int(time.time()) + 3600,
                       refund=[refund_key])
    pending = alice.send.get_pending_operations()[0]
    before = snapshot(alice)
    with pytest.raises(LockedTokenError, match="locktime .* has not passed"):
        alice.send.rollback(pending.id)
    assert snapshot(alice) == before
    assert balance_of(alice, url) == (spendable - 100 - fee, 0, 100)
    received = bob.receive(token)
    assert received.state == "completed"
    assert balance_of(bob, url) == (100 - token_fee(token, ppk), 0, 0)


def test_rollback_without_refund_key_is_refused(wallet: WalletFactory, mint: DevMint,
                                                proxied: FaultProxy) -> None:
    url = normalize_mint_url(proxied.url)
    ppk = mint.input_fee_ppk
    alice, bob = wallet("alice", url), wallet("bob", url)
    fund(alice, url, 500)
    token, fee = _send(alice, url, 50, ppk, p2pk=bob.keys.new())
    pending = alice.send.get_pending_operations()[0]
    before = snapshot(alice)
    with pytest.raises(LockedTokenError, match="does not hold"):
        alice.send.rollback(pending.id)
    assert snapshot(alice) == before
    assert balance_of(alice, url) == (500 - 50 - fee, 0, 50)


def test_lock_to_own_key_rolls_back(wallet: WalletFactory, mint: DevMint,
                                    proxied: FaultProxy) -> None:
    """Locked to the sender's own key: it can sign as the recipient could."""
    url = normalize_mint_url(proxied.url)
    ppk = mint.input_fee_ppk
    alice = wallet("alice", url)
    fund(alice, url, 500)
    token, fee = _send(alice, url, 50, ppk, p2pk=alice.keys.new())
    rolled = alice.send.rollback(alice.send.get_pending_operations()[0].id)
    assert rolled.state == "rolled_back"
    assert balance_of(alice, url) == (500 - fee - token_fee(token, ppk), 0, 0)


def test_restore_finds_keys_handed_out_before(wallet: WalletFactory, mint: DevMint,
                                              proxied: FaultProxy) -> None:
    url = normalize_mint_url(proxied.url)
    ppk = mint.input_fee_ppk
    alice, old = wallet("alice", url), wallet("old", url, mnemonic=MNEMONIC)
    fund(alice, url, 500)
    keys = [old.keys.new() for _ in range(6)]
    old.close()
    token, _ = _send(alice, url, 32, ppk, p2pk=keys[5])

    restored = wallet("restored", url, mnemonic=MNEMONIC)
    assert restored.keys.list() == []
    restored.restore(url)
    received = restored.receive(token)
    assert received.state == "completed"
    assert balance_of(restored, url) == (32 - token_fee(token, ppk), 0, 0)
    assert [(k.index, k.public) for k in restored.keys.list()] == [(5, keys[5])]
    assert restored.keys.new() not in keys  # index 6: never one handed out before


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"p2pk": "02" + "11" * 31}, "33 bytes"),
    ({"p2pk": "04" + "11" * 32}, "33 bytes"),
    ({"p2pk": "02" + "00" * 32}, "not a point"),
    ({"p2pk": "zz"}, "hex"),
    ({"p2pk": []}, "at least one"),
    ({"p2pk": 5}, "public key"),
    ({"n_sigs": 2}, "n_sigs"),
    ({"n_sigs": 0}, "n_sigs"),
    ({"locktime": -5}, "locktime"),
    ({"locktime": "tomorrow"}, "locktime"),
    ({"locktime": 1.5}, "locktime"),
    ({"refund": "02" + "00" * 32, "locktime": 10}, "refund"),
    ({"refund": "KEY"}, "locktime"),
])
def test_bad_lock_input_is_refused_before_anything(wallet: WalletFactory, mint: DevMint,
                                                   proxied: FaultProxy,
                                                   kwargs: dict[str, object],
                                                   match: str) -> None:
    url = normalize_mint_url(proxied.url)
    alice = wallet("alice", url)
    fund(alice, url, 100)
    key = alice.keys.new()
    args: dict[str, object] = {"p2pk": key}
    args.update({k: (key if v == "KEY" else v) for k, v in kwargs.items()})
    before, requests = snapshot(alice), len(proxied.exchanges)
    with pytest.raises(InvalidInputError, match=match):
        alice.send.prepare_send(url, 10, **args)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="need p2pk"):
        alice.send.prepare_send(url, 10, locktime=5)
    assert snapshot(alice) == before and len(proxied.exchanges) == requests

