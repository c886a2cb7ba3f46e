"""Idempotency keys against a real mint (fees 0 and 100): a repeated call with the same
key and request is the same operation (and, for an executed send, the same token),
also after a reopen, a dropped answer or while the first call still runs; the same
key with another request is a typed error and changes nothing; keys expire."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from coco_actors import Coco
from coco_actors.actors import wait
from coco_actors.errors import IdempotencyConflictError, InvalidInputError, MintError
from coco_actors.mint_client import normalize_mint_url
from coco_actors.tokens import decode
from devtools.devmint import DevMint
from tests.support.proxy import Fault, FaultProxy

from .helpers import WalletFactory, balance_of, fund, snapshot, token_fee
from .melt_helpers import invoice_of

SWAP = ("POST", "/v1/swap")
THREADS = 8
CALL_TIMEOUT = 120.0


def _sends(coco: Coco) -> list[str]:
    return [h.operation_id for h in coco.history.get_history() if h.type == "send"]


def test_same_key_same_send_once_and_same_token(wallet: WalletFactory, mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)

    first = alice.send.prepare_send(url, 100, idempotency_key="order-1")
    held = first.input_amount
    assert first.state == "prepared" and held == 128
    assert balance_of(alice, url) == (1000 - held, held, 0)
    again = alice.send.prepare_send(url, 100, idempotency_key="order-1")
    assert again.id == first.id and again.state == "prepared"
    assert balance_of(alice, url) == (1000 - held, held, 0)  # no second reservation
    assert _sends(alice) == [first.id]

    op, token = alice.send.execute_prepared_send(first.id, idempotency_key="order-1-exec")
    assert op.state == "pending" and decode(token).amount == 100
    assert balance_of(alice, url) == (1000 - 100 - first.fee, 0, 100)
    op2, token2 = alice.send.execute_prepared_send(first.id, idempotency_key="order-1-exec")
    assert (op2.id, token2) == (first.id, token)  # the first result, not InvalidStateError
    assert balance_of(alice, url) == (1000 - 100 - first.fee, 0, 100)
    # the prepare's key now names the executed send, with its token
    after = alice.send.prepare_send(url, 100, idempotency_key="order-1")
    assert (after.id, after.state, after.token) == (first.id, "pending", token)
    assert _sends(alice) == [first.id]

    bob = wallet("bob", url)
    got = bob.receive(token, idempotency_key="incoming-1")
    fee = token_fee(token, mint.input_fee_ppk)
    assert balance_of(bob, url) == (100 - fee, 0, 0)
    repeat = bob.receive(token, idempotency_key="incoming-1")  # not TokenSpentError
    assert repeat.id == got.id and repeat.state == "completed"
    assert balance_of(bob, url) == (100 - fee, 0, 0)


def test_same_key_other_request_is_a_conflict_and_changes_nothing(
        wallet: WalletFactory, mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    first = alice.send.prepare_send(url, 100, idempotency_key="k")
    before = snapshot(alice)
    with pytest.raises(IdempotencyConflictError) as err:
        alice.send.prepare_send(url, 200, idempotency_key="k")
    assert err.value.operation_id == first.id
    with pytest.raises(IdempotencyConflictError):  # another kind of call under the key
        alice.send.execute_prepared_send(first.id, idempotency_key="k")
    with pytest.raises(IdempotencyConflictError):
        alice.mint.create_quote(url, 100, idempotency_key="k")
    assert snapshot(alice) == before
    assert alice.send.get_operation(first.id).state == "prepared"  # type: ignore[union-attr]


@pytest.mark.parametrize("key", ["", "x" * 256, "a\nb", "caf\u00e9", 7])
def test_a_bad_key_is_refused_before_anything(wallet: WalletFactory, mint_fee0: DevMint,
                                              key: object) -> None:
    url = normalize_mint_url(mint_fee0.url)
    alice = wallet("alice", url)
    fund(alice, url, 300)
    before = snapshot(alice)
    with pytest.raises(InvalidInputError):
        alice.send.prepare_send(url, 100, idempotency_key=key)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        alice.mint.create_quote(url, 100, idempotency_key=key)  # type: ignore[arg-type]
    assert snapshot(alice) == before
    assert alice.send.prepare_send(url, 100, idempotency_key="x" * 255).state == "prepared"


def test_a_key_survives_a_reopen_and_expires(wallet: WalletFactory, mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    quote = alice.mint.create_quote(url, 64, idempotency_key="quote-1")
    first = alice.send.prepare_send(url, 100, idempotency_key="order-1")
    held = first.input_amount
    alice.close()

    alice = wallet("alice")
    assert alice.send.prepare_send(url, 100, idempotency_key="order-1").id == first.id
    assert alice.mint.create_quote(url, 64, idempotency_key="quote-1").quote == quote.quote
    assert balance_of(alice, url) == (1000 - held, held, 0)
    with pytest.raises(IdempotencyConflictError):
        alice.send.prepare_send(url, 99, idempotency_key="order-1")
    alice.close()

    # reopened with a retention of 1 ms: both keys are older, pruned at open
    alice = wallet("alice", idempotency_ttl=0.001)
    assert alice._store.idempotency_records() == []
    fresh = alice.send.prepare_send(url, 100, idempotency_key="order-1")
    assert fresh.id != first.id  # a fresh call: a second send, a second hold
    assert balance_of(alice, url) == (1000 - held - fresh.input_amount,
                                      held + fresh.input_amount, 0)
    assert sorted(_sends(alice)) == sorted([first.id, fresh.id])


def test_a_send_executed_again_after_its_answer_was_dropped_gives_the_same_token(
        wallet: WalletFactory, mint: DevMint, proxy_for: Callable[[str], FaultProxy]) -> None:
    proxy = proxy_for(mint.url)
    url = normalize_mint_url(proxy.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    op = alice.send.prepare_send(url, 100, idempotency_key="p")
    swaps = len(proxy.seen(*SWAP))
    proxy.inject(*SWAP, Fault.DROP_RESPONSE, forward=True)  # the mint swaps; no answer
    with pytest.raises(MintError):
        alice.send.execute_prepared_send(op.id, idempotency_key="e")
    assert alice.send.get_operation(op.id).state == "executing"  # type: ignore[union-attr]

    again, token = alice.send.execute_prepared_send(op.id, idempotency_key="e")
    assert again.id == op.id and again.state == "pending" and decode(token).amount == 100
    assert len(proxy.seen(*SWAP)) - swaps == 1  # one swap: the retry resolved, not redid
    assert balance_of(alice, url) == (1000 - 100 - op.fee, 0, 100)
    third, token3 = alice.send.execute_prepared_send(op.id, idempotency_key="e")
    assert (third.id, token3) == (op.id, token)
    assert _sends(alice) == [op.id]


def test_eight_threads_with_one_key_make_one_send(wallet: WalletFactory, mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    start = threading.Barrier(THREADS)

    def prepare(_: int) -> str:
        start.wait(CALL_TIMEOUT)
        return alice.send.prepare_send(url, 100, idempotency_key="same").id

    with ThreadPoolExecutor(THREADS) as pool:
        ids = list(pool.map(prepare, range(THREADS), timeout=CALL_TIMEOUT))
    assert len(set(ids)) == 1
    op = alice.send.get_operation(ids[0])
    assert op is not None and op.state == "prepared"
    assert balance_of(alice, url) == (1000 - op.input_amount, op.input_amount, 0)
    assert _sends(alice) == [op.id]

    def execute(_: int) -> str:
        start.wait(CALL_TIMEOUT)
        return alice.send.execute_prepared_send(op.id, idempotency_key="same-exec")[1]

    with ThreadPoolExecutor(THREADS) as pool:
        tokens = list(pool.map(execute, range(THREADS), timeout=CALL_TIMEOUT))
    assert len(set(tokens)) == 1 and decode(tokens[0]).amount == 100
    assert balance_of(alice, url) == (1000 - 100 - op.fee, 0, 100)


def test_rollback_and_transfer_keys(wallet: WalletFactory, mint: DevMint,
                                    mint_fee0: DevMint, mint_fee100: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    op = alice.send.prepare_send(url, 100)
    rolled = alice.send.rollback(op.id, idempotency_key="rb")
    assert rolled.state == "rolled_back"
    assert alice.send.rollback(op.id, idempotency_key="rb").id == op.id  # not InvalidState
    assert balance_of(alice, url) == (1000, 0, 0)

    other = mint_fee100 if mint is mint_fee0 else mint_fee0
    to_url = normalize_mint_url(other.url)
    alice.mints.add(to_url)
    t = alice.transfer.prepare(url, to_url, 100, idempotency_key="move")
    assert alice.transfer.prepare(url, to_url, 100, idempotency_key="move").id == t.id
    held = t.input_amount
    assert balance_of(alice, url) == (1000 - held, held, 0)
    done = alice.transfer.execute(t.id, idempotency_key="move-exec")
    assert done.state == "completed" and done.received == 100
    assert alice.transfer.execute(t.id, idempotency_key="move-exec").id == t.id
    assert balance_of(alice, to_url) == (100, 0, 0)
    spent = 100 + done.fee + done.fee_paid  # what arrived, input and lightning fees
    assert balance_of(alice, url) == (1000 - spent, 0, 0)
    ledger_key = wait(alice._ledger.find_key("move-exec"), 10, "ProofLedger")
    assert ledger_key is not None and ledger_key.target == t.id


def test_a_melt_with_keys_pays_once(wallet: WalletFactory, mint: DevMint,
                                    mint_fee0: DevMint, mint_fee100: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    other = normalize_mint_url((mint_fee100 if mint is mint_fee0 else mint_fee0).url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    invoice = invoice_of(other, 30)  # another mint's: paid over (fake) lightning
    prepared = alice.melt.prepare_melt(url, invoice, idempotency_key="bill-9")
    assert alice.melt.prepare_melt(url, invoice, idempotency_key="bill-9").id == prepared.id
    held = prepared.input_amount
    assert balance_of(alice, url) == (1000 - held, held, 0)
    with pytest.raises(IdempotencyConflictError):
        alice.melt.prepare_melt(url, invoice_of(other, 31), idempotency_key="bill-9")
    assert balance_of(alice, url) == (1000 - held, held, 0)
    op = alice.melt.execute_prepared_melt(prepared.id, idempotency_key="bill-9-exec")
    assert op.state == "completed"
    again = alice.melt.execute_prepared_melt(prepared.id, idempotency_key="bill-9-exec")
    assert (again.id, again.state, again.change_amount) == (op.id, "completed",
                                                           op.change_amount)
    assert balance_of(alice, url) == (1000 - 30 - op.fee - op.fee_paid, 0, 0)


def test_a_payment_request_created_and_paid_with_keys_happens_once(
        wallet: WalletFactory, mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    shop, payer = wallet("shop", url), wallet("payer", url)
    fund(payer, url, 1000)
    req = shop.requests.create(amount=50, mints=[url], idempotency_key="invoice-1")
    assert shop.requests.create(amount=50, mints=[url], idempotency_key="invoice-1").id == \
        req.id
    assert [r.id for r in shop.requests.list()] == [req.id]
    with pytest.raises(IdempotencyConflictError):
        shop.requests.create(amount=51, mints=[url], idempotency_key="invoice-1")

    first = payer.requests.pay(req.encoded, idempotency_key="pay-1")  # in-band
    again = payer.requests.pay(req.encoded, idempotency_key="pay-1")
    assert again == first  # the same send, the same payload
    op = payer.send.get_operation(first["operation_id"])
    assert op is not None and op.state == "pending"
    assert balance_of(payer, url) == (1000 - 50 - op.fee, 0, 50)
    assert _sends(payer) == [op.id]
