"""Keysets over time, against a real mint rotated live (Nutshell's management RPC).

Each rotation makes a new active keyset and leaves the old one inactive: its proofs still
swap, outputs for it answer 12002. The wallets here do not refresh on a schedule
(``keyset_refresh=None``) unless a test says so, so after each rotation the wallet still
believes the old keyset active and its next request meets the 12002: the saga must
refresh, derive its outputs again for the new keyset, commit them, and go on, without the
caller ever seeing the 12002. Balances are asserted to the sat after every step, with
input fees 0 and 100 ppk (every keyset of a mint charges the same fee).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from coco_actors import Coco
from coco_actors.mint_client import normalize_mint_url
from coco_actors.records import ProofStatus
from coco_actors.tokens import decode
from coco_actors.watcher import WatcherConfig
from devtools.devmint import DevMint
from devtools.invoices import make_invoice
from tests.support.waiting import wait_until

from .helpers import WalletFactory, balance_of, fee_of, fund

pytestmark = pytest.mark.mint

FEES = pytest.mark.parametrize("fee_ppk", [0, 100], ids=["fee0", "fee100"])
#: What FakeWallet charges for an external payment it settles in the melt answer.
FAKEWALLET_FEE = 1
#: Back quickly after a mint restart (the websocket drops with the mint).
QUICK = WatcherConfig(poll_interval=0.5, reconnect_min=0.05, reconnect_max=0.5)
#: A mint restart takes ~2 s; the reconnect and the refresh follow.
REFRESH_TIMEOUT = 45.0


def _expiry() -> int:
    return int(time.time()) + 30 * 86400


def _rotate(mint: DevMint, fee_ppk: int) -> str:
    """Rotate the mint's sat keyset live; the new active id."""
    before = mint.active_keyset_ids()
    mint.rotate_keyset("sat", fee_ppk, final_expiry=_expiry())
    (new,) = mint.active_keyset_ids()
    assert new not in before
    return new


def _by_keyset(coco: Coco, url: str) -> dict[str, int]:
    """Sats the wallet can spend at ``url``, per keyset id."""
    out: dict[str, int] = {}
    for rec in coco._ledger.all_proof_records().get(timeout=10):
        if rec.mint_url == url and rec.status == ProofStatus.READY:
            out[rec.proof.keyset_id] = out.get(rec.proof.keyset_id, 0) + rec.amount
    return out


def _token_keysets(coco: Coco, url: str, token: str) -> set[str]:
    """The full keyset ids of a token's proofs (V4 tokens carry short ids)."""
    known = [ks.id for ks in coco.mints.keysets(url)]
    return {next(k for k in known if k.startswith(p.keyset_id)) for p in decode(token).proofs}


def _active(coco: Coco, url: str) -> set[str]:
    return {ks.id for ks in coco.mints.keysets(url) if ks.active}


@FEES
def test_operations_prepared_before_a_rotation_finish_in_the_new_keyset(
        fee_ppk: int, wallet: WalletFactory, make_mint: Callable[..., DevMint]) -> None:
    mint = make_mint(input_fee_ppk=fee_ppk, rpc=True).start()
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url, keyset_refresh=None)
    bob = wallet("bob", url, keyset_refresh=None)
    (k1,) = mint.active_keyset_ids()
    fund(alice, url, 1000)
    assert balance_of(alice, url) == (1000, 0, 0)
    assert _by_keyset(alice, url) == {k1: 1000}

    # before the rotation: a send prepared (outputs derived for k1), a pending send, a
    # token of k1 for bob, a melt prepared
    send = alice.send.prepare_send(url, 100)
    assert send.needs_swap and {o.keyset_id for o in send.outputs} == {k1}
    assert send.fee == fee_of(fee_ppk, len(send.input_ys))
    spendable = 1000 - send.input_amount
    assert balance_of(alice, url) == (spendable, send.input_amount, 0)
    gift_op, gift = alice.send.execute_prepared_send(alice.send.prepare_send(url, 8).id)
    assert gift_op.needs_swap is False and gift_op.amount == 8  # the 8 itself: k1
    spendable -= 8
    later = alice.send.prepare_send(url, 50)
    later, later_token = alice.send.execute_prepared_send(later.id)
    spendable -= 50 + later.fee
    pending = 8 + 50
    assert balance_of(alice, url) == (spendable, send.input_amount, pending)

    # rotation 1: the prepared send executes; its outputs were made again for k2
    k2 = _rotate(mint, fee_ppk)
    assert _active(alice, url) == {k1}  # the wallet does not know yet
    done, token = alice.send.execute_prepared_send(send.id)
    assert done.state == "pending"
    assert {o.keyset_id for o in done.outputs} == {k2}
    assert _token_keysets(alice, url, token) == {k2}
    assert _active(alice, url) == {k2}  # refreshed on the 12002
    change = send.input_amount - 100 - send.fee
    spendable += change
    pending += 100
    assert balance_of(alice, url) == (spendable, 0, pending)
    assert _by_keyset(alice, url).get(k2, 0) == change

    # bob (who knows only k1 as active) receives a token of the old keyset
    got = bob.receive(gift)
    assert got.state == "completed"
    assert {o.keyset_id for o in got.outputs} == {k2}
    assert balance_of(bob, url) == (8 - fee_of(fee_ppk, 1), 0, 0)
    assert _by_keyset(bob, url) == {k2: 8 - fee_of(fee_ppk, 1)}
    assert bob._ledger.counter(k1).get(timeout=10) > 0  # the k1 counters stay used
    states = {op.id: op.state for op in alice.send.check_pending()}
    assert states == {gift_op.id: "completed", later.id: "pending", send.id: "pending"}
    pending -= 8
    assert balance_of(alice, url) == (spendable, 0, pending)

    # rotation 2: a melt with change; its blanks are made for k3 and the change is k3
    melt = alice.melt.prepare_melt(url, make_invoice(100))
    k3 = _rotate(mint, fee_ppk)
    held_before = balance_of(alice, url)
    assert held_before == (spendable - melt.input_amount, melt.input_amount, pending)
    melted = alice.melt.execute_prepared_melt(melt.id, timeout=30)
    assert melted.state == "completed"
    assert melted.fee_paid == FAKEWALLET_FEE
    assert melted.change_amount == melt.input_amount - 100 - melt.fee - FAKEWALLET_FEE
    assert {b.keyset_id for b in melted.change_outputs} == {k3}
    spendable -= 100 + melt.fee + FAKEWALLET_FEE
    assert balance_of(alice, url) == (spendable, 0, pending)
    if melted.change_amount:
        assert _by_keyset(alice, url).get(k3, 0) == melted.change_amount

    # rotation 3: a mint quote created before, redeemed after: outputs for k4
    quote = alice.mint.create_quote(url, 64)
    k4 = _rotate(mint, fee_ppk)
    minted = alice.mint.redeem(quote.id, timeout=30)
    assert minted.state == "completed"
    assert {o.keyset_id for o in minted.outputs} == {k4}
    spendable += 64
    assert balance_of(alice, url) == (spendable, 0, pending)

    # rotation 4: the pending send is reclaimed into the new keyset
    k5 = _rotate(mint, fee_ppk)
    back = alice.send.rollback(later.id)
    assert back.state == "rolled_back"
    assert {o.keyset_id for o in back.reclaim_outputs} == {k5}
    reclaimed = 50 - fee_of(fee_ppk, len(decode(later_token).proofs))
    spendable += reclaimed
    pending -= 50
    assert balance_of(alice, url) == (spendable, 0, pending)
    assert _by_keyset(alice, url)[k5] == reclaimed
    assert _by_keyset(alice, url)[k4] == 64

    # NUT-13 counters stay per keyset, and none moved back
    counters = {k: alice._ledger.counter(k).get(timeout=10) for k in (k1, k2, k3, k4, k5)}
    assert all(counters[k] > 0 for k in (k1, k2, k4, k5))
    assert len(alice.mints.keysets(url)) == 5
    assert _active(alice, url) == {k5}

    # restore: a fresh data directory with alice's mnemonic finds every unspent proof she
    # holds, in every keyset the mint lists (the pending send's token is still unspent)
    carol = wallet("carol", url, mnemonic=alice.mnemonic, keyset_refresh=None)
    report = carol.restore(url)
    assert report.restored == spendable + pending
    assert balance_of(carol, url) == (spendable + pending, 0, 0)
    assert set(report.counters) == {k1, k2, k3, k4, k5}
    mine = _by_keyset(alice, url)
    for proof in done.send_proofs:  # the open send's token: unspent, hence restored
        mine[proof.keyset_id] = mine.get(proof.keyset_id, 0) + proof.amount
    assert _by_keyset(carol, url) == mine
    assert len(_by_keyset(carol, url)) >= 2
    for k, value in report.counters.items():
        assert value <= counters[k]  # restore moved none past what alice handed out


def _connections(coco: Coco, url: str) -> int:
    stats = coco._watcher.stats().get(timeout=10)  # type: ignore[union-attr]
    return int(stats.get(url, {}).get("connections", 0))


@FEES
def test_keysets_are_refreshed_after_the_watcher_reconnects(
        fee_ppk: int, wallet: WalletFactory, make_mint: Callable[..., DevMint]) -> None:
    """A mint restart drops the websocket; the reconnect refreshes the keysets (no
    schedule here, and no request meets a 12002), so the next send derives for k2."""
    mint = make_mint(input_fee_ppk=fee_ppk, rpc=True).start()
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url, watcher=QUICK, keyset_refresh=None)
    (k1,) = mint.active_keyset_ids()
    fund(alice, url, 100)
    sent, _ = alice.send.execute_prepared_send(alice.send.prepare_send(url, 10).id)
    assert sent.state == "pending"  # watched: the link keeps a websocket open
    spendable = 100 - 10 - sent.fee
    assert balance_of(alice, url) == (spendable, 0, 10)
    wait_until(lambda: _connections(alice, url) >= 1, REFRESH_TIMEOUT, "websocket up")

    k2 = _rotate(mint, fee_ppk)
    assert alice.keyset_refresher.done.get(url, 0) == 0
    assert _active(alice, url) == {k1}
    mint.restart()
    wait_until(lambda: _active(alice, url) == {k2}, REFRESH_TIMEOUT,
               "keysets refreshed after the reconnect")
    assert _connections(alice, url) >= 2
    # counted once the refresh returned (just after its result became visible)
    wait_until(lambda: alice.keyset_refresher.done.get(url, 0) >= 1, REFRESH_TIMEOUT,
               "the refresh counted")
    assert {ks.id: ks.active for ks in alice.mints.keysets(url)} == {k1: False, k2: True}

    second = alice.send.prepare_send(url, 5)
    if second.needs_swap:
        assert {o.keyset_id for o in second.outputs} == {k2}
    second, _ = alice.send.execute_prepared_send(second.id)
    spendable -= 5 + second.fee
    assert balance_of(alice, url) == (spendable, 0, 15)


@FEES
def test_keysets_are_refreshed_on_schedule(
        fee_ppk: int, wallet: WalletFactory, make_mint: Callable[..., DevMint]) -> None:
    mint = make_mint(input_fee_ppk=fee_ppk, rpc=True).start()
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url, keyset_refresh=0.5)
    (k1,) = mint.active_keyset_ids()
    fund(alice, url, 100)
    assert _by_keyset(alice, url) == {k1: 100}

    k2 = _rotate(mint, fee_ppk)
    wait_until(lambda: _active(alice, url) == {k2}, REFRESH_TIMEOUT,
               "keysets refreshed on schedule")
    wait_until(lambda: alice.keyset_refresher.rounds >= 1, REFRESH_TIMEOUT, "a round")
    # the old proofs still spend; new outputs are k2's from the start
    send = alice.send.prepare_send(url, 10)
    assert send.needs_swap and {o.keyset_id for o in send.outputs} == {k2}
    send, token = alice.send.execute_prepared_send(send.id)
    assert _token_keysets(alice, url, token) == {k2}
    change = send.input_amount - 10 - send.fee
    assert balance_of(alice, url) == (100 - 10 - send.fee, 0, 10)
    assert _by_keyset(alice, url) == {k1: 100 - send.input_amount, k2: change}


def test_a_keyset_rotated_without_an_expiry_is_accepted(
        wallet: WalletFactory, make_mint: Callable[..., DevMint]) -> None:
    """Nutshell 0.21 hashes ``|final_expiry:0`` into the id of a keyset made without an
    expiry (NUT-02 omits a zero); the wallet accepts the id and uses the keyset."""
    mint = make_mint(input_fee_ppk=0, rpc=True).start()
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url, keyset_refresh=None)
    fund(alice, url, 100)
    mint.rotate_keyset("sat", 0, final_expiry=0)
    (k2,) = mint.active_keyset_ids()
    assert k2 in {ks.id for ks in alice.mints.refresh(url) if ks.active}
    assert not alice.mints.keysets(url)[-1].final_expiry
    _, token = alice.send.execute_prepared_send(alice.send.prepare_send(url, 10).id)
    assert _token_keysets(alice, url, token) == {k2}
    assert balance_of(alice, url) == (90, 0, 10)
