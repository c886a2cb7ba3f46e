"""Sends and receives above the mint's array cap (NUT-06 ``max_array_length``; Nutshell:
1000, 422 above it) split into several swaps, each its own durable step, against the real
mint with fees 0 and 100.

A wallet gets thousands of one-sat proofs the way any wallet with that seed could: the
test mints NUT-13 outputs of the wallet's seed at counters 0.. (1000 per quote, the cap
holds for mint requests too) and the wallet finds them with ``restore``. Every fee is
computed here from the batch sizes, never read back from the wallet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from coco_actors import Coco
from coco_actors.crypto.nut13 import Nut13Deriver
from coco_actors.crypto.outputs import make_outputs
from coco_actors.errors import MintUnreachableError
from coco_actors.mint_client import MintClient, normalize_mint_url
from coco_actors.tokens import decode
from coco_actors.wire import BlindedMessage, BlindSignature, Proof
from devtools.devmint import DevMint

from .helpers import WalletFactory, balance_of, fee_of

CAP = 1000  # what Nutshell announces; checked against /v1/info below


def batched_fee(ppk: int, n_inputs: int, cap: int = CAP) -> int:
    """The fee of ``n_inputs`` one-keyset proofs swapped in requests of at most ``cap``."""
    return sum(fee_of(ppk, min(cap, n_inputs - i)) for i in range(0, n_inputs, cap))


def mint_ones(url: str, mnemonic: str, n: int) -> None:
    """Mint ``n`` one-sat proofs to NUT-13 outputs of ``mnemonic`` at counters 0..n-1 of
    the mint's active sat keyset, in requests of at most the mint's cap of outputs."""
    with MintClient(url) as client:
        cap = client.max_array_length()
        keyset = next(ks for ks in client.get_keys() if ks.unit == "sat")
        deriver = Nut13Deriver(mnemonic)
        for start in range(0, n, cap):
            count = min(cap, n - start)
            quote = client.create_mint_quote(count)
            assert client.get_mint_quote(quote.id).state == "PAID"
            pairs = [deriver.derive(keyset.id, start + i) for i in range(count)]
            outputs = make_outputs([1] * count, keyset.id, pairs)
            assert len(client.mint(quote.id, [o.blinded for o in outputs])) == count


def ones_wallet(wallet: WalletFactory, name: str, url: str, n: int) -> Coco:
    coco = wallet(name, url)
    mint_ones(url, coco.mnemonic, n)
    report = coco.restore(url)
    assert (report.restored, report.proofs) == (n, n)
    assert balance_of(coco, url) == (n, 0, 0)
    return coco


class SwapSpy:
    """Wraps one wallet's ``MintClient.swap``: counts requests and their sizes, and can
    fail one of them (``fail_at``, 1-based) before it leaves or after its answer is lost."""

    def __init__(self, client: MintClient, fail_at: int = 0, lost_answer: bool = False) -> None:
        self.real: Callable[..., list[BlindSignature]] = client.swap
        self.sizes: list[tuple[int, int]] = []
        self.fail_at = fail_at
        self.lost_answer = lost_answer
        client.swap = self  # type: ignore[method-assign]

    def __call__(self, inputs: Sequence[Proof],
                 outputs: Sequence[BlindedMessage]) -> list[BlindSignature]:
        self.sizes.append((len(inputs), len(outputs)))
        if len(self.sizes) == self.fail_at:
            if self.lost_answer:
                self.real(inputs, outputs)
            raise MintUnreachableError("injected: connection lost", mint_url="x",
                                       endpoint="POST /v1/swap")
        return self.real(inputs, outputs)


def spy(coco: Coco, url: str, **kwargs: Any) -> SwapSpy:
    return SwapSpy(coco._mint_context(url).client, **kwargs)


def test_send_and_receive_of_2000_one_sat_proofs_split_under_the_cap(
        wallet: WalletFactory, mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    ppk = mint.input_fee_ppk
    with MintClient(url) as client:
        assert client.max_array_length() == CAP  # what Nutshell announces by default
    n = 3300
    alice = ones_wallet(wallet, "alice", url, n)
    bob = wallet("bob", url)

    # an exact send of 2,100 one-sat proofs: no swap, a token over the cap
    op, token = alice.send.execute_prepared_send(alice.send.prepare_send(url, 2100).id)
    assert (op.state, op.fee, len(decode(token).proofs)) == ("pending", 0, 2100)
    assert balance_of(alice, url) == (n - 2100, 0, 2100)

    # bob receives it in three swaps (1000, 1000, 100 inputs), each paying its own fee
    swaps = spy(bob, url)
    received = bob.receive(token)
    receive_fee = batched_fee(ppk, 2100)
    assert received.state == "completed"
    assert (received.amount, received.fee) == (2100 - receive_fee, receive_fee)
    assert [i for i, _ in swaps.sizes] == [1000, 1000, 100]
    assert all(o <= CAP for _, o in swaps.sizes)
    assert len(received.batches) == 3 and received.batches_done == 3
    assert balance_of(bob, url) == (2100 - receive_fee, 0, 0)
    alice.send.check_pending()
    assert balance_of(alice, url) == (n - 2100, 0, 0)

    # a locked send of 1,050 from the 1,200 left: it must swap, over the cap: split
    swaps = spy(alice, url)
    key = bob.keys.new()
    prepared = alice.send.prepare_send(url, 1050, p2pk=key)
    inputs = len(prepared.input_ys)
    send_fee = batched_fee(ppk, inputs)
    assert inputs > CAP and inputs == prepared.input_amount
    assert prepared.fee == send_fee
    assert inputs >= 1050 + send_fee  # covers the amount and every batch's fee
    assert balance_of(alice, url) == (n - 2100 - inputs, inputs, 0)
    op, locked = alice.send.execute_prepared_send(prepared.id)
    assert op.state == "pending" and decode(locked).amount == 1050
    assert [i for i, _ in swaps.sizes] == [1000, inputs - 1000]
    left = n - 2100 - 1050 - send_fee
    assert balance_of(alice, url) == (left, 0, 1050)

    got = bob.receive(locked)
    lock_fee = fee_of(ppk, len(decode(locked).proofs))
    assert got.state == "completed" and got.amount == 1050 - lock_fee
    bob_total = 2100 - receive_fee + 1050 - lock_fee
    assert balance_of(bob, url) == (bob_total, 0, 0)
    alice.send.check_pending()
    assert balance_of(alice, url) == (left, 0, 0)

    # a fresh data directory with each seed finds everything again
    for coco, total, name in ((alice, left, "alice2"), (bob, bob_total, "bob2")):
        again = wallet(name, url, mnemonic=coco.mnemonic)
        assert again.restore(url).restored == total
        assert balance_of(again, url) == (total, 0, 0)


#: The cap of the private mint of the crash tests (Nutshell's MINT_MAX_REQUEST_LENGTH):
#: small, so that a split needs tens of proofs, not thousands.
SMALL_CAP = 40


@pytest.mark.parametrize("lost_answer", [False, True], ids=["unsent", "answer-lost"])
@pytest.mark.parametrize("ppk", [0, 100], ids=["fee0", "fee100"])
def test_a_crash_between_batches_recovers_to_the_sat(
        wallet: WalletFactory, make_mint: Callable[..., DevMint], ppk: int,
        lost_answer: bool) -> None:
    mint = make_mint(ppk, extra_env={"MINT_MAX_REQUEST_LENGTH": str(SMALL_CAP)}).start()
    url = normalize_mint_url(mint.url)
    n = 180
    alice = ones_wallet(wallet, "alice", url, n)
    bob = wallet("bob", url)
    assert bob._mint_context(url).client.max_array_length() == SMALL_CAP
    op, token = alice.send.execute_prepared_send(alice.send.prepare_send(url, 100).id)
    assert len(decode(token).proofs) == 100

    # bob's receive (batches of 40, 40, 20): the second swap fails (before it leaves, or
    # its answer is lost)
    swaps = spy(bob, url, fail_at=2, lost_answer=lost_answer)
    with pytest.raises(MintUnreachableError):
        bob.receive(token)
    first = SMALL_CAP - fee_of(ppk, SMALL_CAP)
    assert balance_of(bob, url) == (first, 0, 0)  # the first batch is in, durably
    [stuck] = [o for o in bob.history.get_history() if o.type == "receive"]
    assert stuck.state == "executing"
    bob.close()
    bob = wallet("bob", url)  # recovery on open: NUT-09 of batch 2's outputs, NUT-07 of its inputs
    receive_fee = batched_fee(ppk, 100, SMALL_CAP)
    [done] = [o for o in bob.history.get_history() if o.type == "receive"]
    assert done.state == "completed" and done.amount == 100 - receive_fee
    assert balance_of(bob, url) == (100 - receive_fee, 0, 0)
    assert [i for i, _ in swaps.sizes] == [40, 40]  # the dead client was not asked again

    # alice's locked send of 50 from the 80 left, executed with an idempotency key: its
    # second swap fails; recovery on open carries it forward (NUT-07 of batch 2's
    # inputs, NUT-09 of its outputs), and the caller's repeat gets the token
    key = bob.keys.new()
    spy(alice, url, fail_at=2, lost_answer=lost_answer)
    prepared = alice.send.prepare_send(url, 50, p2pk=key)
    inputs = len(prepared.input_ys)
    assert inputs > SMALL_CAP and prepared.fee == batched_fee(ppk, inputs, SMALL_CAP)
    left = n - 100
    with pytest.raises(MintUnreachableError):
        alice.send.execute_prepared_send(prepared.id, idempotency_key="exec-1")
    # batch 1 is done: its inputs are gone, its token proofs kept in the record
    assert balance_of(alice, url)[:2] == (left - inputs, inputs - SMALL_CAP)
    alice.close()
    alice = wallet("alice", url)
    op, locked = alice.send.execute_prepared_send(prepared.id, idempotency_key="exec-1")
    assert op.state == "pending" and op.batches_done == 2
    assert decode(locked).amount == 50
    alice.send.check_pending()  # bob received the first token: that send finalizes
    after = left - 50 - batched_fee(ppk, inputs, SMALL_CAP)
    assert balance_of(alice, url) == (after, 0, 50)
    got = bob.receive(locked)
    assert got.amount == 50 - fee_of(ppk, len(decode(locked).proofs))
    assert balance_of(bob, url) == (100 - receive_fee + got.amount, 0, 0)
    alice.send.check_pending()
    assert balance_of(alice, url) == (after, 0, 0)


@pytest.mark.parametrize("ppk", [0, 100], ids=["fee0", "fee100"])
def test_a_split_send_without_a_key_is_undone_to_the_sat(
        wallet: WalletFactory, make_mint: Callable[..., DevMint], ppk: int) -> None:
    """No idempotency key: recovery undoes the send like any interrupted one; the token
    proofs of the batch that was swapped come back, only its fee is gone."""
    mint = make_mint(ppk, extra_env={"MINT_MAX_REQUEST_LENGTH": str(SMALL_CAP)}).start()
    url = normalize_mint_url(mint.url)
    n = 90
    alice = ones_wallet(wallet, "alice", url, n)
    spy(alice, url, fail_at=2)
    prepared = alice.send.prepare_send(url, 50, p2pk=alice.keys.new())
    inputs = len(prepared.input_ys)
    assert inputs > SMALL_CAP
    with pytest.raises(MintUnreachableError):
        alice.send.execute_prepared_send(prepared.id)
    alice.close()
    alice = wallet("alice", url)
    [send] = [o for o in alice.history.get_history() if o.operation_id == prepared.id]
    assert send.state == "rolled_back"
    assert balance_of(alice, url) == (n - fee_of(ppk, SMALL_CAP), 0, 0)


@pytest.mark.parametrize("ppk", [0, 100], ids=["fee0", "fee100"])
def test_the_reclaim_of_a_token_over_the_cap_is_split_and_survives_a_crash(
        wallet: WalletFactory, make_mint: Callable[..., DevMint], ppk: int) -> None:
    mint = make_mint(ppk, extra_env={"MINT_MAX_REQUEST_LENGTH": str(SMALL_CAP)}).start()
    url = normalize_mint_url(mint.url)
    n = 200
    alice = ones_wallet(wallet, "alice", url, n)
    # two exact sends of 100 one-sat proofs each: tokens over the cap
    first = alice.send.execute_prepared_send(alice.send.prepare_send(url, 100).id)[0]
    second = alice.send.execute_prepared_send(alice.send.prepare_send(url, 100).id)[0]
    assert balance_of(alice, url) == (0, 0, 200)
    fee = batched_fee(ppk, 100, SMALL_CAP)

    swaps = spy(alice, url)
    done = alice.send.rollback(first.id)
    assert done.state == "rolled_back" and len(done.reclaim_batches) == 3
    assert [i for i, _ in swaps.sizes] == [40, 40, 20]
    assert balance_of(alice, url) == (100 - fee, 0, 100)

    # the second reclaim: its second swap is made but its answer lost
    swaps = spy(alice, url, fail_at=2, lost_answer=True)
    with pytest.raises(MintUnreachableError):
        alice.send.rollback(second.id)
    assert balance_of(alice, url) == (100 - fee + SMALL_CAP - fee_of(ppk, SMALL_CAP), 0, 100)
    alice.close()
    alice = wallet("alice", url)  # recovery: NUT-09 of batch 2's outputs, then batch 3
    [entry] = [h for h in alice.history.get_history() if h.operation_id == second.id]
    assert entry.state == "rolled_back"
    assert balance_of(alice, url) == (200 - 2 * fee, 0, 0)
    again = wallet("fresh", url, mnemonic=alice.mnemonic)
    assert again.restore(url).restored == 200 - 2 * fee
