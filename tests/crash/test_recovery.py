"""One test per row of the recovery table: a real wallet process is SIGKILLed at that
point against the real mint (fees 0 and 100), restarted on the same data directory,
and recovery (run by ``Coco.open``) must bring it to rest with every sat accounted for.

"before": the state is committed and the request is held at the proxy, so it never
reaches the mint. "after": the mint processed the request and answered, and the
wallet is killed before the answer is passed back to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from coincurve import PrivateKey

from coco_actors.tokens import decode
from devtools.devmint import PENDING, SETTLED, DevMint
from tests.support.crash_driver import (
    CHECKSTATE,
    FAIL_PENDING,
    MELT,
    MELT_QUOTE,
    MINT,
    RESTORE,
    SWAP,
    ChildError,
    CrashWallet,
    InvoiceMint,
    TransferWallet,
)
from tests.support.proxy import Fault, Hold

Wallet = Callable[..., CrashWallet]
FUND = 1000
AMOUNT = 100   # 1000 = 512+256+128+64+32+8: no exact match for 100, so the send swaps


def _prepare(w: CrashWallet, amount: int = AMOUNT) -> dict[str, Any]:
    prepared: dict[str, Any] = w.call("prepare", url=w.url, amount=amount)
    assert prepared["needs_swap"] and prepared["state"] == "prepared"
    return prepared


def _send(w: CrashWallet, amount: int = AMOUNT) -> tuple[dict[str, Any], str]:
    sent = w.call("send", url=w.url, amount=amount)
    assert sent["op"]["state"] == "pending"
    return sent["op"], sent["token"]


def _ops(w: CrashWallet, kind: str) -> list[dict[str, Any]]:
    return [o for o in w.state()["ops"] if o["type"] == kind]


# --- send: executing --------------------------------------------------------------------------


def test_send_executing_swap_never_sent_is_released(mint: DevMint, crash_wallet: Wallet) -> None:
    w = crash_wallet(mint, fund=FUND)
    prepared = _prepare(w)
    assert isinstance(w.crash_at(SWAP, "execute", after=False, op_id=prepared["id"]), Hold)
    assert w.proxy.seen(*SWAP)[-1].forwarded is False

    assert w.restart() == {"rolled_back": 1}
    op = w.op(prepared["id"])
    assert op["state"] == "rolled_back"
    assert w.balance() == (FUND, 0, 0)
    w.assert_sound()


def test_send_executing_swap_processed_answer_lost_restores_outputs(
        mint: DevMint, crash_wallet: Wallet) -> None:
    w = crash_wallet(mint, fund=FUND)
    prepared = _prepare(w)
    w.crash_at(SWAP, "execute", after=True, op_id=prepared["id"])
    assert w.proxy.seen(*SWAP)[-1].status == 200   # the mint did the swap

    assert w.restart() == {"rolled_back": 1}
    assert w.op(prepared["id"])["state"] == "rolled_back"
    # the send and change outputs came back through NUT-09; only the fee is gone
    assert w.balance() == (FUND - prepared["fee"], 0, 0)
    w.assert_sound()
    # the restored proofs are good: spend them all (no 11003, no 11001)
    op, token = _send(w, FUND - prepared["fee"] - w.fee(10))
    assert w.recipient.claim(token)
    w.call("check_pending")
    w.assert_sound()


def test_locked_send_swap_processed_answer_lost_goes_forward(
        mint: DevMint, crash_wallet: Wallet) -> None:
    """A send locked to a key this wallet does not hold (NUT-11), its swap done and the
    answer lost, no idempotency key: the token is the payee's now, so recovery carries
    the send forward to pending with it instead of putting proofs this wallet could never
    spend back into its balance."""
    w = crash_wallet(mint, fund=FUND)
    payee = PrivateKey().public_key.format().hex()
    prepared = w.call("prepare", url=w.url, amount=AMOUNT, p2pk=payee)
    assert prepared["needs_swap"] and prepared["state"] == "prepared"
    w.crash_at(SWAP, "execute", after=True, op_id=prepared["id"])
    assert w.proxy.seen(*SWAP)[-1].status == 200   # the mint did the swap

    assert w.restart() == {"pending": 1}
    op = w.op(prepared["id"])
    assert op["state"] == "pending"
    token = decode(op["token"])
    assert token.amount == AMOUNT
    assert all(json.loads(p.secret)[1]["data"] == payee for p in token.proofs)
    assert w.balance() == (FUND - AMOUNT - prepared["fee"], 0, AMOUNT)
    w.assert_sound()


# --- send: pending ----------------------------------------------------------------------------


@pytest.mark.parametrize("watcher", [False, True], ids=["nowatcher", "watcher"])
def test_send_pending_claimed_while_down_completes(mint: DevMint, crash_wallet: Wallet,
                                                   watcher: bool) -> None:
    w = crash_wallet(mint, fund=FUND, watcher=watcher)
    claimed, token = _send(w)
    unclaimed, _ = _send(w, 50)
    w.crash()
    assert w.recipient.claim(token)               # while the wallet is down

    assert w.restart() == {"completed": 1, "pending": 1}
    assert w.op(claimed["id"])["state"] == "completed"
    assert w.op(unclaimed["id"])["state"] == "pending"
    spendable = FUND - AMOUNT - claimed["fee"] - 50 - unclaimed["fee"]
    assert w.balance() == (spendable, 0, 50)
    w.assert_sound()


# --- send: rolling_back -----------------------------------------------------------------------


@pytest.mark.parametrize("after", [False, True], ids=["reclaim-never-sent", "reclaim-processed"])
def test_send_rolling_back_finishes_on_restart(mint: DevMint, crash_wallet: Wallet,
                                               after: bool) -> None:
    w = crash_wallet(mint, fund=FUND)
    op, token = _send(w)
    w.crash_at(SWAP, "rollback", after=after, op_id=op["id"])
    assert w.proxy.seen(*SWAP)[-1].forwarded is after

    assert w.restart() == {"rolled_back": 1}   # no manual restore
    assert w.op(op["id"])["state"] == "rolled_back"
    reclaim_fee = w.fee(len(op["send_amounts"]))
    assert w.balance() == (FUND - op["fee"] - reclaim_fee, 0, 0)
    assert not w.recipient.claim(token)          # the token is dead
    w.assert_sound()


def test_send_rolling_back_claimed_while_down_completes(mint: DevMint,
                                                        crash_wallet: Wallet) -> None:
    w = crash_wallet(mint, fund=FUND)
    op, token = _send(w)
    w.crash_at(SWAP, "rollback", after=False, op_id=op["id"])
    assert w.recipient.claim(token)              # the recipient was first

    assert w.restart() == {"completed": 1}
    assert w.op(op["id"])["state"] == "completed"
    assert w.balance() == (FUND - AMOUNT - op["fee"], 0, 0)
    w.assert_sound()


# --- receive ----------------------------------------------------------------------------------


@pytest.mark.parametrize("after", [False, True], ids=["swap-never-sent", "swap-processed"])
def test_receive_interrupted_completes_on_restart(mint: DevMint, crash_wallet: Wallet,
                                                  after: bool) -> None:
    w = crash_wallet(mint, fund=FUND)
    token = w.faucet.token(300)                  # 256 + 32 + 8 + 4: four proofs
    w.crash_at(SWAP, "receive", after=after, token=token)

    assert w.restart() == {"completed": 1}
    [receive] = _ops(w, "receive")
    assert receive["state"] == "completed"
    assert w.balance() == (FUND + 300 - w.fee(4), 0, 0)
    w.assert_sound()


@pytest.mark.parametrize("after", [False, True], ids=["swap-never-sent", "swap-processed"])
def test_locked_receive_interrupted_completes_on_restart(mint: DevMint, crash_wallet: Wallet,
                                                         after: bool) -> None:
    """A P2PK token locked to one of the wallet's keys: its inputs are signed before the
    receive's first commit, so the swap the restarted wallet repeats (or restores) is the
    one it would have made."""
    w = crash_wallet(mint, fund=FUND)
    key = w.call("new_key")
    token = w.faucet.token(300, lock=key)        # four proofs, each locked to our key
    assert all(p.secret.startswith('["P2PK"') for p in decode(token).proofs)
    w.crash_at(SWAP, "receive", after=after, token=token)

    assert w.restart() == {"completed": 1}
    [receive] = _ops(w, "receive")
    assert receive["state"] == "completed"
    assert w.balance() == (FUND + 300 - w.fee(4), 0, 0)
    w.assert_sound()


# --- mint -------------------------------------------------------------------------------------


@pytest.mark.parametrize("after", [False, True], ids=["mint-never-sent", "mint-processed"])
def test_mint_redeem_interrupted_completes_on_restart(mint: DevMint, crash_wallet: Wallet,
                                                      after: bool) -> None:
    w = crash_wallet(mint, fund=FUND)
    quote = w.call("create_quote", url=w.url, amount=500)["quote"]
    w.crash_at(MINT, "redeem", after=after, quote=quote)

    assert w.restart() == {"completed": 1}
    [_, minted] = sorted(_ops(w, "mint"), key=lambda o: o["created_at"])
    assert minted["state"] == "completed" and minted["quote_id"] == quote
    assert w.balance() == (FUND + 500, 0, 0)
    w.assert_sound()


# --- consolidate: executing -------------------------------------------------------------------
#
# 40 proofs of 1 sat on top of the funding: the consolidation swaps all 46 proofs (fee 0, or 5
# at 100 ppk) into the fewest. Its plan is committed as ``executing`` before the swap leaves.

DUST = 40


def _dusty(mint: DevMint, crash_wallet: Wallet) -> CrashWallet:
    w = crash_wallet(mint, fund=FUND)
    assert w.call("dust", url=w.url, n=DUST)["restored"] == DUST
    assert w.balance() == (FUND + DUST, 0, 0)
    return w


@pytest.mark.parametrize("after", [False, True], ids=["swap-never-sent", "swap-processed"])
def test_consolidate_executing_completes_on_restart(mint: DevMint, crash_wallet: Wallet,
                                                    after: bool) -> None:
    w = _dusty(mint, crash_wallet)
    n = DUST + 6                                   # 1000 = six proofs, and the dust
    assert isinstance(w.crash_at(SWAP, "consolidate", after=after, url=w.url), Hold)
    swap = w.proxy.seen(*SWAP)[-1]
    assert swap.forwarded is after and len(swap.request_json()["inputs"]) == n

    # never sent: the inputs are unspent, so the swap is made now with the persisted
    # outputs; processed: the outputs are restored (NUT-09). Either way: completed.
    assert w.restart() == {"completed": 1}
    [op] = _ops(w, "consolidate")
    assert op["state"] == "completed" and op["fee"] == w.fee(n)
    assert len(op["input_ys"]) == n and op["input_amount"] == FUND + DUST
    left = FUND + DUST - w.fee(n)
    assert w.balance() == (left, 0, 0)
    ready = [p for p in w.call("proofs") if p["status"] == "ready"]
    assert len(ready) == bin(left).count("1")
    w.assert_sound()


@pytest.mark.parametrize("endpoint,after", [(CHECKSTATE, False), (RESTORE, True),
                                            (SWAP, False)],
                         ids=["checkstate", "restore-after", "swap-before"])
def test_consolidate_recovery_interrupted_is_resumed(
        mint: DevMint, crash_wallet: Wallet, endpoint: tuple[str, str], after: bool) -> None:
    w = _dusty(mint, crash_wallet)
    n = DUST + 6
    forwarded = endpoint == RESTORE  # a restore only when the swap was processed
    w.crash_at(SWAP, "consolidate", after=forwarded, url=w.url)
    assert w.crash_in_recovery(endpoint, after=after)   # killed again, mid-recovery

    assert w.restart() == {"completed": 1}
    assert w.balance() == (FUND + DUST - w.fee(n), 0, 0)
    w.assert_sound()


# --- recovery itself interrupted --------------------------------------------------------------


@pytest.mark.parametrize("endpoint,after", [(CHECKSTATE, False), (RESTORE, False),
                                            (RESTORE, True)],
                         ids=["checkstate", "restore-before", "restore-after"])
def test_recovery_interrupted_is_resumed(mint: DevMint, crash_wallet: Wallet,
                                         endpoint: tuple[str, str], after: bool) -> None:
    w = crash_wallet(mint, fund=FUND)
    prepared = _prepare(w)
    w.crash_at(SWAP, "execute", after=True, op_id=prepared["id"])
    assert w.crash_in_recovery(endpoint, after=after)   # killed again, mid-recovery

    assert w.restart() == {"rolled_back": 1}
    assert w.op(prepared["id"])["state"] == "rolled_back"
    assert w.balance() == (FUND - prepared["fee"], 0, 0)
    w.assert_sound()


def test_prepared_send_is_left_for_the_caller(mint: DevMint, crash_wallet: Wallet) -> None:
    w = crash_wallet(mint, fund=FUND)
    prepared = _prepare(w)
    w.crash()

    assert w.restart() == {"prepared": 1}
    assert w.balance() == (FUND - prepared["input_amount"], prepared["input_amount"], 0)
    w.assert_sound()
    done = w.call("execute", op_id=prepared["id"])
    assert done["op"]["state"] == "pending"
    assert w.balance() == (FUND - AMOUNT - prepared["fee"], 0, AMOUNT)
    w.assert_sound()


# --- with the watcher on: what a restart must keep watching -----------------------------------


def _until(w: CrashWallet, op_id: str, state: str, timeout: float) -> str:
    """The operation's state once it is ``state`` or ``timeout`` passed (the watcher acts
    on its own time; the child waits on the wallet's events, see ``wait_state``)."""
    current: str = w.call("wait_state", timeout=timeout + 10, op_id=op_id, state=state,
                          within=timeout)
    return current


def test_pending_send_recovered_while_the_mint_is_down_is_still_watched(
        mint: DevMint, crash_wallet: Wallet) -> None:
    """Recovery of a pending send that cannot reach the mint is deferred; the watcher
    must still watch the send, so a later claim finalizes it on its own."""
    w = crash_wallet(mint, fund=FUND, watcher=True)
    op, token = _send(w)
    w.crash()
    w.proxy.inject(*CHECKSTATE, Fault.ERROR_500)   # the mint is down for recovery's NUT-07
    assert w.restart() == {"pending": 1}
    assert w.proxy.seen(*CHECKSTATE)[-1].fault == "500"
    assert w.recipient.claim(token)
    # the websocket pushes the claim at once; NUT-07 polling would see it within 2 s
    assert _until(w, op["id"], "completed", 10.0) == "completed"
    w.assert_sound()


def test_quote_paid_while_the_wallet_was_down_is_minted(mint: DevMint,
                                                        crash_wallet: Wallet) -> None:
    """A redeem killed while it asked the mint about the quote (the mint marked it
    paid): the operation is still ``prepared``. With the watcher on, paid quotes
    "redeem on their own"; after the restart nothing watches or redeems it."""
    w = crash_wallet(mint, fund=FUND, watcher=True)
    quote = w.call("create_quote", url=w.url, amount=500)["quote"]
    w.crash_at(("GET", f"/v1/mint/quote/bolt11/{quote}"), "redeem", after=True, quote=quote)
    assert w.proxy.seen("GET", f"/v1/mint/quote/bolt11/{quote}")[-1].status == 200

    w.restart()
    [_, minted] = sorted(_ops(w, "mint"), key=lambda o: o["created_at"])
    assert _until(w, minted["id"], "completed", 10.0) == "completed"
    assert w.balance() == (FUND + 500, 0, 0)
    w.assert_sound()


# --- melt -------------------------------------------------------------------------------------
#
# FakeWallet charges 1 sat for a payment it makes at once; a payment it settles later (a
# PENDING mint restarted SETTLED) is counted 0, and the mint gives back everything paid
# beyond amount + input fee + lightning fee as NUT-08 change. After each row the balance
# is exact: before - amount - input fees - lightning fee.

MELT_AMOUNT = 100
LN_FEE = 1


def _prepare_melt(w: CrashWallet, invoices: InvoiceMint, *, swap: bool | None = None,
                  amount: int = MELT_AMOUNT) -> dict[str, Any]:
    prepared: dict[str, Any] = w.call("prepare_melt", url=w.url,
                                      invoice=invoices.invoice(amount), swap=swap)
    assert (prepared["state"], prepared["amount"]) == ("prepared", amount)
    assert prepared["needs_swap"] is bool(swap)
    assert w.balance() == (FUND - prepared["input_amount"], prepared["input_amount"], 0)
    return prepared


def _assert_melted(w: CrashWallet, op_id: str, prepared: dict[str, Any],
                   ln_fee: int) -> dict[str, Any]:
    """Completed, with the change of every overpaid sat, to the sat."""
    op = w.op(op_id)
    assert op["state"] == "completed" and op["fee_paid"] == ln_fee
    spent = MELT_AMOUNT + prepared["fee"] + ln_fee
    if not prepared["needs_swap"]:
        assert op["change_amount"] == prepared["input_amount"] - spent
    assert w.balance() == (FUND - spent, 0, 0)
    return op


def _swap_fee(w: CrashWallet, prepared: dict[str, Any]) -> int:
    """A swap-then-melt's first leg: the input fee of the proofs it swaps."""
    return w.fee(len(prepared["input_ys"]))


def test_melt_request_never_sent_is_released(mint: DevMint, crash_wallet: Wallet,
                                             invoices: InvoiceMint) -> None:
    w = crash_wallet(mint, fund=FUND)
    prepared = _prepare_melt(w, invoices)
    assert isinstance(w.crash_at(MELT, "execute_melt", after=False, op_id=prepared["id"]), Hold)
    assert w.proxy.seen(*MELT)[-1].forwarded is False

    assert w.restart() == {"rolled_back": 1}
    assert w.op(prepared["id"])["state"] == "rolled_back"
    assert w.balance() == (FUND, 0, 0)
    w.assert_sound()


def test_melt_paid_answer_lost_completes_with_change(mint: DevMint, crash_wallet: Wallet,
                                                     invoices: InvoiceMint) -> None:
    w = crash_wallet(mint, fund=FUND)
    prepared = _prepare_melt(w, invoices)
    w.crash_at(MELT, "execute_melt", after=True, op_id=prepared["id"])
    answer = w.proxy.seen(*MELT)[-1]
    assert answer.status == 200 and answer.response_json()["state"] == "PAID"

    assert w.restart() == {"completed": 1}
    _assert_melted(w, prepared["id"], prepared, LN_FEE)
    a = w.assert_sound()
    assert (a.melted, a.ln_fees) == (MELT_AMOUNT, LN_FEE)


def test_prepared_melt_is_left_for_the_caller(mint: DevMint, crash_wallet: Wallet,
                                              invoices: InvoiceMint) -> None:
    w = crash_wallet(mint, fund=FUND)
    prepared = _prepare_melt(w, invoices)
    w.crash()

    assert w.restart() == {"prepared": 1}
    assert w.balance() == (FUND - prepared["input_amount"], prepared["input_amount"], 0)
    w.assert_sound()
    assert w.call("execute_melt", op_id=prepared["id"])["state"] == "completed"
    _assert_melted(w, prepared["id"], prepared, LN_FEE)
    w.assert_sound()


@pytest.mark.parametrize("endpoint,after", [(SWAP, False), (SWAP, True), (MELT, False),
                                            (MELT, True)],
                         ids=["swap-never-sent", "swap-processed", "melt-never-sent",
                              "melt-paid"])
def test_swap_then_melt_interrupted(mint: DevMint, crash_wallet: Wallet, invoices: InvoiceMint,
                                    endpoint: tuple[str, str], after: bool) -> None:
    """Killed at the swap (its inputs are checked with NUT-07 and the swapped proofs
    restored with NUT-09) or at the melt that follows it."""
    w = crash_wallet(mint, fund=FUND)
    prepared = _prepare_melt(w, invoices, swap=True)
    assert isinstance(w.crash_at(endpoint, "execute_melt", after=after, op_id=prepared["id"]),
                      Hold)
    assert len(w.proxy.seen(*MELT)) == (endpoint == MELT)

    if endpoint == MELT and after:
        assert w.restart() == {"completed": 1}
        _assert_melted(w, prepared["id"], prepared, LN_FEE)
    else:  # the melt never happened: what is left comes back (less a swap that was made)
        assert w.restart() == {"rolled_back": 1}
        assert w.op(prepared["id"])["state"] == "rolled_back"
        swapped = endpoint == MELT or after
        assert w.balance() == (FUND - (_swap_fee(w, prepared) if swapped else 0), 0, 0)
    w.assert_sound()


def _pending_melt(make_mint: Callable[..., DevMint], crash_wallet: Wallet,
                  fee: int) -> tuple[DevMint, CrashWallet]:
    """A wallet funded at a private mint whose payments stay in flight."""
    mint = make_mint(input_fee_ppk=fee, fakewallet=PENDING).start()
    return mint, crash_wallet(mint, fund=FUND)


@pytest.mark.parametrize("fee", [0, 100], ids=["fee0", "fee100"])
@pytest.mark.parametrize("outcome", ["settled", "failed"])
def test_melt_pending_is_decided_after_restart(make_mint: Callable[..., DevMint],
                                               crash_wallet: Wallet, invoices: InvoiceMint,
                                               fee: int, outcome: str) -> None:
    """Killed after the mint answered PENDING (the wallet never stored it); reopened
    while the payment is in flight, the melt rests ``pending`` with its inputs held
    (PENDING at the mint). The mint then decides (a restart SETTLED or FAILED); the
    next wallet is killed once more in its recovery, as it asks the quote; the one
    after that completes the melt with all the change, or rolls it back."""
    mint, w = _pending_melt(make_mint, crash_wallet, fee)
    prepared = _prepare_melt(w, invoices)
    w.crash_at(MELT, "execute_melt", after=True, op_id=prepared["id"])
    assert w.proxy.seen(*MELT)[-1].response_json()["state"] == "PENDING"

    assert w.restart() == {"pending": 1}
    assert w.op(prepared["id"])["state"] == "pending"
    assert w.balance() == (FUND - prepared["input_amount"], prepared["input_amount"], 0)
    w.assert_sound()

    w.crash()
    mint.restart(SETTLED if outcome == "settled" else FAIL_PENDING)
    assert w.crash_in_recovery(MELT_QUOTE, after=True)
    if outcome == "settled":
        assert w.restart() == {"completed": 1}
        _assert_melted(w, prepared["id"], prepared, 0)  # settled later: no fee known
    else:
        assert w.restart() == {"rolled_back": 1}
        assert w.op(prepared["id"])["state"] == "rolled_back"
        assert w.balance() == (FUND, 0, 0)
    w.assert_sound()


@pytest.mark.parametrize("fee", [0, 100], ids=["fee0", "fee100"])
@pytest.mark.parametrize("after", [False, True], ids=["checkstate-held", "checkstate-answered"])
def test_melt_pending_rollback_interrupted(make_mint: Callable[..., DevMint],
                                           crash_wallet: Wallet, invoices: InvoiceMint,
                                           fee: int, after: bool) -> None:
    """A rollback of a pending melt is refused while the payment is in flight (nothing
    changes); once the mint failed it, the rollback asks NUT-07 and is killed there.
    The next wallet finishes it: every sat back."""
    mint, w = _pending_melt(make_mint, crash_wallet, fee)
    prepared = _prepare_melt(w, invoices)
    assert w.call("execute_melt", op_id=prepared["id"])["state"] == "pending"
    with pytest.raises(ChildError) as refused:
        w.call("rollback_melt", op_id=prepared["id"])
    assert refused.value.type == "InvalidStateError"
    assert w.op(prepared["id"])["state"] == "pending"
    assert w.balance() == (FUND - prepared["input_amount"], prepared["input_amount"], 0)

    mint.restart(FAIL_PENDING)          # the wallet runs on, its watcher off
    assert isinstance(w.crash_at(CHECKSTATE, "rollback_melt", after=after,
                                 op_id=prepared["id"]), Hold)
    assert w.restart() == {"rolled_back": 1}
    assert w.op(prepared["id"])["state"] == "rolled_back"
    assert w.balance() == (FUND, 0, 0)
    w.assert_sound()


@pytest.mark.parametrize("swap,endpoint", [(False, MELT_QUOTE), (True, RESTORE)],
                         ids=["melt-paid-quote-asked", "swap-processed-restore"])
def test_melt_recovery_interrupted_is_resumed(mint: DevMint, crash_wallet: Wallet,
                                              invoices: InvoiceMint, swap: bool,
                                              endpoint: tuple[str, str]) -> None:
    """Recovery killed once it learned what happened (the quote PAID; the swapped
    proofs restored) and before it stored it: the next recovery does it again."""
    w = crash_wallet(mint, fund=FUND)
    prepared = _prepare_melt(w, invoices, swap=swap)
    w.crash_at(SWAP if swap else MELT, "execute_melt", after=True, op_id=prepared["id"])
    assert w.crash_in_recovery(endpoint, after=True)

    if swap:
        assert w.restart() == {"rolled_back": 1}
        assert w.balance() == (FUND - _swap_fee(w, prepared), 0, 0)
    else:
        assert w.restart() == {"completed": 1}
        _assert_melted(w, prepared["id"], prepared, LN_FEE)
    w.assert_sound()


# --- transfer ---------------------------------------------------------------------------------
#
# One wallet holds two mints (each behind its own proxy): a melt at the source pays a mint
# quote of the destination, then the quote is redeemed there. The session mints pay each
# other's invoices as external payments (FakeWallet charges 1 sat, settled in the melt
# answer) and auto-pay their own quotes, so once the melt paid the redeem succeeds. After
# each row both balances are exact: the source lost amount + input fees + lightning fee,
# the destination gained the amount (or, for a transfer that did not pay, nothing moved).

TRANSFER_AMOUNT = 100
MELT_QUOTE_NEW = ("POST", "/v1/melt/quote/bolt11")
MINT_QUOTE_NEW = ("POST", "/v1/mint/quote/bolt11")
Transfers = Callable[..., TransferWallet]


@pytest.fixture(params=[0, 100], ids=["fee0", "fee100"])
def two_mints(request: pytest.FixtureRequest, mint_fee0: DevMint,
              mint_fee100: DevMint) -> tuple[DevMint, DevMint]:
    """(source, destination): the source charges the fee of the parameter."""
    return (mint_fee0, mint_fee100) if request.param == 0 else (mint_fee100, mint_fee0)


def _prepare_transfer(w: TransferWallet) -> dict[str, Any]:
    prepared: dict[str, Any] = w.call("prepare_transfer", from_url=w.url, to_url=w.other.url,
                                      amount=TRANSFER_AMOUNT)
    assert (prepared["state"], prepared["amount"]) == ("prepared", TRANSFER_AMOUNT)
    assert (prepared["mint_url"], prepared["to_mint_url"]) == (w.url, w.other.url)
    assert w.balance() == (FUND - prepared["input_amount"], prepared["input_amount"], 0)
    assert w.balance_at(w.other.url) == (0, 0, 0)
    return prepared


def _assert_untouched(w: TransferWallet, op_id: str | None = None) -> None:
    """Nothing moved: every sat back at the source, nothing at the destination."""
    if op_id is not None:
        op = w.op(op_id)
        assert (op["state"], op["received"]) == ("rolled_back", 0)
        assert w.op(op["melt_id"])["state"] == "rolled_back"
    assert w.balance() == (FUND, 0, 0)
    assert w.balance_at(w.other.url) == (0, 0, 0)


def _assert_transferred(w: TransferWallet, op_id: str, prepared: dict[str, Any],
                        ln_fee: int) -> dict[str, Any]:
    """Completed with both legs: the source lost amount + fees, the destination gained
    exactly the amount, to the sat."""
    op = w.op(op_id)
    assert (op["state"], op["received"], op["fee_paid"], op["fee"]) == (
        "completed", TRANSFER_AMOUNT, ln_fee, prepared["fee"])
    assert w.op(op["melt_id"])["state"] == "completed"
    assert w.op(op["mint_leg_id"])["state"] == "completed"
    assert w.balance() == (FUND - TRANSFER_AMOUNT - prepared["fee"] - ln_fee, 0, 0)
    assert w.balance_at(w.other.url) == (TRANSFER_AMOUNT, 0, 0)
    return op


def _sound_transfer(w: TransferWallet, transferred: int) -> None:
    a = w.assert_sound()
    assert (a.transferred, a.arrived) == (transferred, transferred)


@pytest.mark.parametrize("endpoint,after", [(MINT_QUOTE_NEW, False), (MINT_QUOTE_NEW, True),
                                            (MELT_QUOTE_NEW, False), (MELT_QUOTE_NEW, True)],
                         ids=["mint-quote-never-sent", "mint-quote-made",
                              "melt-quote-never-sent", "melt-quote-made"])
def test_transfer_init_killed_during_prepare_is_undone(
        two_mints: tuple[DevMint, DevMint], transfer_wallet: Transfers,
        endpoint: tuple[str, str], after: bool) -> None:
    """Killed while it prepares (``init``, its leg ids committed): the quote at the
    destination or the melt quote at the source held. Recovery discards the legs and
    the transfer; nothing is held, and a transfer after it goes through."""
    w = transfer_wallet(*two_mints, fund=FUND)
    proxy = w.other.proxy if endpoint == MINT_QUOTE_NEW else w.proxy
    assert isinstance(w.crash_at(endpoint, "prepare_transfer", after=after, proxy=proxy,
                                 from_url=w.url, to_url=w.other.url,
                                 amount=TRANSFER_AMOUNT), Hold)

    assert w.restart() == {"init": 1}   # undone: the record and its legs deleted
    state = w.state()
    assert [o for o in state["ops"] if o["type"] == "transfer"] == []
    assert [o for o in state["open_ops"] if o.get("parent_id")] == []  # no leg left
    _assert_untouched(w)
    _sound_transfer(w, 0)
    prepared = _prepare_transfer(w)
    assert w.call("execute_transfer", op_id=prepared["id"])["state"] == "completed"
    _assert_transferred(w, prepared["id"], prepared, LN_FEE)
    _sound_transfer(w, TRANSFER_AMOUNT)


def test_prepared_transfer_is_left_for_the_caller(two_mints: tuple[DevMint, DevMint],
                                                  transfer_wallet: Transfers) -> None:
    w = transfer_wallet(*two_mints, fund=FUND)
    prepared = _prepare_transfer(w)
    w.crash()

    assert w.restart() == {"prepared": 1}
    assert w.op(prepared["id"])["state"] == "prepared"
    assert w.balance() == (FUND - prepared["input_amount"], prepared["input_amount"], 0)
    _sound_transfer(w, 0)
    assert w.call("execute_transfer", op_id=prepared["id"])["state"] == "completed"
    _assert_transferred(w, prepared["id"], prepared, LN_FEE)
    _sound_transfer(w, TRANSFER_AMOUNT)


def test_transfer_melt_never_sent_is_rolled_back(two_mints: tuple[DevMint, DevMint],
                                                 transfer_wallet: Transfers) -> None:
    """Killed before the melt left (the transfer and its melt leg ``executing``): the
    quote is UNPAID and the inputs unspent, so they come back; nothing was redeemed."""
    w = transfer_wallet(*two_mints, fund=FUND)
    prepared = _prepare_transfer(w)
    assert isinstance(w.crash_at(MELT, "execute_transfer", after=False,
                                 op_id=prepared["id"]), Hold)
    assert w.proxy.seen(*MELT)[-1].forwarded is False

    assert w.restart() == {"rolled_back": 1}
    _assert_untouched(w, prepared["id"])
    assert w.other.proxy.seen(*MINT) == []
    _sound_transfer(w, 0)


def test_transfer_melt_paid_answer_lost_is_redeemed(two_mints: tuple[DevMint, DevMint],
                                                    transfer_wallet: Transfers) -> None:
    """The source paid (its answer lost, change and all): recovery completes the melt
    (NUT-09 restore of its blanks), then redeems at the destination."""
    w = transfer_wallet(*two_mints, fund=FUND)
    prepared = _prepare_transfer(w)
    w.crash_at(MELT, "execute_transfer", after=True, op_id=prepared["id"])
    answer = w.proxy.seen(*MELT)[-1]
    assert answer.status == 200 and answer.response_json()["state"] == "PAID"
    assert w.other.proxy.seen(*MINT) == []

    assert w.restart() == {"completed": 1}
    _assert_transferred(w, prepared["id"], prepared, LN_FEE)
    _sound_transfer(w, TRANSFER_AMOUNT)


@pytest.mark.parametrize("after", [False, True], ids=["redeem-never-sent", "redeem-processed"])
def test_transfer_paid_redeem_interrupted_completes(two_mints: tuple[DevMint, DevMint],
                                                    transfer_wallet: Transfers,
                                                    after: bool) -> None:
    """The melt paid; killed at the redeem at the destination, before it left (the mint
    leg's outputs persisted) or after the destination signed them (its answer lost:
    NUT-09 restore). Recovery completes it; the destination issued once."""
    w = transfer_wallet(*two_mints, fund=FUND)
    prepared = _prepare_transfer(w)
    assert isinstance(w.crash_at(MINT, "execute_transfer", after=after, proxy=w.other.proxy,
                                 op_id=prepared["id"]), Hold)
    assert w.proxy.seen(*MELT)[-1].response_json()["state"] == "PAID"
    assert [e.forwarded for e in w.other.proxy.seen(*MINT)] == [after]

    assert w.restart() == {"completed": 1}
    _assert_transferred(w, prepared["id"], prepared, LN_FEE)
    issued = [e for e in w.other.proxy.seen(*MINT) if e.status == 200]
    assert len(issued) == 1          # a lost answer is restored, never minted twice
    if after:
        assert w.other.proxy.seen(*RESTORE)[-1].status == 200
    _sound_transfer(w, TRANSFER_AMOUNT)


@pytest.mark.parametrize("fee", [0, 100], ids=["fee0", "fee100"])
@pytest.mark.parametrize("outcome", ["settled", "failed"])
def test_transfer_pending_is_decided_after_restart(
        make_mint: Callable[..., DevMint], mint_fee0: DevMint, mint_fee100: DevMint,
        transfer_wallet: Transfers, fee: int, outcome: str) -> None:
    """The source's payment in flight (a private mint with PENDING presets), its answer
    lost: reopened, the transfer rests ``pending`` with the inputs held and nothing at
    the destination. The source decides while the wallet is down (a restart SETTLED or
    FAILED); the next wallet is killed in its recovery (at the redeem's answer, or as it
    asks the quote), and the one after completes the transfer or rolls it back."""
    source = make_mint(input_fee_ppk=fee, fakewallet=PENDING).start()
    w = transfer_wallet(source, mint_fee100 if fee == 0 else mint_fee0, fund=FUND)
    prepared = _prepare_transfer(w)
    w.crash_at(MELT, "execute_transfer", after=True, op_id=prepared["id"])
    assert w.proxy.seen(*MELT)[-1].response_json()["state"] == "PENDING"

    assert w.restart() == {"pending": 1}
    op = w.op(prepared["id"])
    assert (op["state"], w.op(op["melt_id"])["state"]) == ("pending", "pending")
    assert w.balance() == (FUND - prepared["input_amount"], prepared["input_amount"], 0)
    assert w.balance_at(w.other.url) == (0, 0, 0)
    _sound_transfer(w, 0)
    with pytest.raises(ChildError) as refused:   # it may still be paid
        w.call("rollback_transfer", op_id=prepared["id"])
    assert refused.value.type == "InvalidStateError"

    w.crash()
    source.restart(SETTLED if outcome == "settled" else FAIL_PENDING)
    if outcome == "settled":
        assert w.crash_in_recovery(MINT, after=True, proxy=w.other.proxy)
        assert w.restart() == {"completed": 1}
        _assert_transferred(w, prepared["id"], prepared, 0)  # settled later: no fee known
        _sound_transfer(w, TRANSFER_AMOUNT)
    else:
        assert w.crash_in_recovery(MELT_QUOTE, after=True)
        assert w.restart() == {"rolled_back": 1}
        _assert_untouched(w, prepared["id"])
        _sound_transfer(w, 0)
