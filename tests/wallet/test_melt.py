"""The melt saga end to end against real mints, with input fees 0 and 100 ppk.

Every money check is to the sat: spendable, reserved and pending at the mint after each
step, ``amount + fee_paid + fee == before - after``, and ``fee_paid`` against what the
mint itself reports (its quote status and the change it signed). The lightning fee is
known independently from Nutshell's FakeWallet (tests/integration/test_melt_protocol.py):
1 sat for an external payment settled in the melt answer, 0 for one settled at a restart
or by a later status check, 0 for an internal one (fee reserve 0).

Mints: two "quiet" mints (fee 0 and 100, a long incoming delay, so their invoices stay
unpaid) shared by the module; each pays the other's invoices (external) and its own
(internal). Payments that pend, fail or take longer than the timeout get private mints (restarted
to decide a pending payment).
Refusals go through a FaultProxy, whose record shows that no request reached the mint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from coco_actors import (
    Coco,
    InsufficientFundsError,
    InvalidInputError,
    InvalidStateError,
    InvoiceError,
    MintRejectedError,
    MintUnreachableError,
    NotFoundError,
)
from coco_actors.bolt11 import decode as decode_invoice
from coco_actors.mint_client import normalize_mint_url
from coco_actors.records import Operation
from coco_actors.watcher import WatcherConfig
from coco_actors.wire import MeltQuoteState, ProofStateKind, split_amount
from devtools.devmint import FAILING, PENDING, SETTLED, DevMint, FakeWalletConfig
from devtools.invoices import make_invoice
from tests.support.proxy import FaultProxy
from tests.support.waiting import wait_until

from .helpers import WalletFactory, balance_of, fee_of, fund
from .melt_helpers import (
    DECIDE_TIMEOUT,
    MeltEvents,
    check_payload,
    invoice_of,
    melt_quote,
    melt_snapshot,
    proof_states,
)

pytestmark = pytest.mark.mint

FEES = pytest.mark.parametrize("fee_ppk", [0, 100], ids=["fee0", "fee100"])
#: What FakeWallet charges for an external payment it settles in the melt answer.
FAKEWALLET_FEE = 1
#: Nutshell's fee reserve for an external invoice of 100 sat: max(2, 1 %).
RESERVE_100 = 2
ZERO_PREIMAGE = "0" * 64
#: Mint quotes of these mints pay themselves only after 10 minutes: invoices to pay.
QUIET = FakeWalletConfig(incoming_delay=600)
#: Back quickly after a mint restart (the websocket drops with the mint).
QUICK = WatcherConfig(poll_interval=0.5, reconnect_min=0.05, reconnect_max=0.5)
_START_TIMEOUT_S = 60.0


# --- mints and proxies --------------------------------------------------------------------


def _quiet_mint(factory: pytest.TempPathFactory, bin_dir: Path, fee_ppk: int
                ) -> Iterator[DevMint]:
    mint = DevMint(factory.mktemp(f"quiet-fee{fee_ppk}"), input_fee_ppk=fee_ppk,
                   nutshell_bin=bin_dir, fakewallet=QUIET)
    mint.start(timeout=_START_TIMEOUT_S)
    try:
        yield mint
    finally:
        mint.stop()


@pytest.fixture(scope="module")
def quiet_fee0(tmp_path_factory: pytest.TempPathFactory, nutshell_bin: Path
               ) -> Iterator[DevMint]:
    yield from _quiet_mint(tmp_path_factory, nutshell_bin, 0)


@pytest.fixture(scope="module")
def quiet_fee100(tmp_path_factory: pytest.TempPathFactory, nutshell_bin: Path
                 ) -> Iterator[DevMint]:
    yield from _quiet_mint(tmp_path_factory, nutshell_bin, 100)


@pytest.fixture(params=[0, 100], ids=["fee0", "fee100"])
def payer(request: pytest.FixtureRequest) -> DevMint:
    """The mint the wallet melts at, each input fee in turn."""
    return request.getfixturevalue(f"quiet_fee{request.param}")  # type: ignore[no-any-return]


@pytest.fixture
def payee(request: pytest.FixtureRequest, payer: DevMint) -> DevMint:
    """The other quiet mint: its invoices are external payments for ``payer``."""
    other = "quiet_fee100" if payer.input_fee_ppk == 0 else "quiet_fee0"
    return request.getfixturevalue(other)  # type: ignore[no-any-return]


# --- small checks ---------------------------------------------------------------------------


def total(coco: Coco, url: str) -> int:
    return sum(balance_of(coco, url))


def history_of(coco: Coco, op_id: str) -> tuple[str, int, int, int, str]:
    """(type, amount, fee, fee_paid, state) of the one history entry of ``op_id``."""
    entries = [h for h in coco.history.get_history() if h.operation_id == op_id]
    assert len(entries) == 1, entries
    h = entries[0]
    return h.type, h.amount, h.fee, h.fee_paid, h.state


def current(coco: Coco, op_id: str) -> Operation:
    op = coco.melt.get_operation(op_id)
    assert op is not None
    return op


def change_signed(mint_url: str, op: Operation) -> int:
    """The change the mint reports for a paid melt (its quote status), in sats."""
    quote = melt_quote(mint_url, op.quote_id)
    assert quote.state == MeltQuoteState.PAID
    assert quote.payment_preimage == op.preimage
    return sum(s.amount for s in quote.change)


def pend(coco: Coco, url: str, invoice: str, *, swap: bool | None = None) -> Operation:
    """Prepare and execute a melt at a PENDING mint: it must come back ``pending``."""
    prepared = coco.melt.prepare_melt(url, invoice, swap=swap)
    op = coco.melt.execute_prepared_melt(prepared.id, timeout=30)
    assert op.state == "pending", op
    assert (op.preimage, op.change_amount, op.fee_paid) == (None, 0, 0)
    assert op.input_amount == prepared.input_amount and op.fee == prepared.fee
    return op


# --- melts that settle at once --------------------------------------------------------------


def test_external_melt_returns_the_surplus_as_change(wallet: WalletFactory, payer: DevMint,
                                                     payee: DevMint) -> None:
    url = normalize_mint_url(payer.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)  # 512+256+128+64+32+8
    events = MeltEvents(alice)
    invoice = invoice_of(payee.url, 100)
    assert balance_of(alice, url) == (1000, 0, 0)

    prepared = alice.melt.prepare_melt(url, invoice)
    assert prepared.state == "prepared"
    assert (prepared.amount, prepared.fee_reserve) == (100, RESERVE_100)
    # no proofs add up to 102 (+ their fee): the 128 alone covers it, the rest is change
    assert (prepared.input_amount, len(prepared.input_ys)) == (128, 1)
    fee = fee_of(payer.input_fee_ppk, 1)
    assert prepared.fee == fee
    assert prepared.needs_swap is False
    assert prepared.quote_id
    assert prepared.quote_request == invoice
    assert prepared.payment_hash == decode_invoice(invoice).payment_hash
    assert balance_of(alice, url) == (1000 - 128, 128, 0)
    check_payload(events.wait_for("melt:prepared", prepared.id), prepared, "prepared")

    op = alice.melt.execute_prepared_melt(prepared.id, timeout=30)
    assert op.id == prepared.id
    assert op.state == "completed"
    assert op.preimage == ZERO_PREIMAGE
    assert op.fee_paid == FAKEWALLET_FEE
    assert op.change_amount == 128 - 100 - fee - FAKEWALLET_FEE
    # the mint's word: the change it signed, hence the lightning fee it kept
    signed = change_signed(payer.url, op)
    assert signed == op.change_amount
    assert 128 - 100 - fee - signed == op.fee_paid
    assert balance_of(alice, url) == (1000 - 100 - fee - FAKEWALLET_FEE, 0, 0)
    assert op.amount + op.fee_paid + op.fee == 1000 - total(alice, url)

    check_payload(events.wait_for("melt:finalized", op.id), op, "completed")
    events.flush()
    assert events.names(op.id) == ["melt:prepared", "melt:finalized"]
    assert alice.melt.get_pending_operations() == []
    assert current(alice, op.id).state == "completed"
    assert history_of(alice, op.id) == ("melt", 100, fee, FAKEWALLET_FEE, "completed")


def test_exact_set_melt_gets_back_only_the_unused_reserve(wallet: WalletFactory,
                                                           payer: DevMint,
                                                           payee: DevMint) -> None:
    url = normalize_mint_url(payer.url)
    ppk = payer.input_fee_ppk
    # 100 + reserve 2, plus the inputs' own fee: 64+32+4+2 at fee 0; at 100 ppk four
    # inputs cost 1 sat, and 103 = 64+32+4+2+1 (five inputs) still costs 1 sat
    exact = {0: 102, 100: 103}[ppk]
    alice = wallet("alice", url)
    fund(alice, url, 1000)  # 512+256+128+64+32+8: a single 128 would also cover it
    fund(alice, url, exact)
    before = 1000 + exact
    assert balance_of(alice, url) == (before, 0, 0)

    prepared = alice.melt.prepare_melt(url, invoice_of(payee.url, 100))
    n_inputs = len(split_amount(exact))
    fee = fee_of(ppk, n_inputs)
    assert exact == 100 + RESERVE_100 + fee
    assert (prepared.input_amount, len(prepared.input_ys)) == (exact, n_inputs)
    assert (prepared.fee, prepared.fee_reserve, prepared.needs_swap) == (fee, RESERVE_100, False)
    assert balance_of(alice, url) == (before - exact, exact, 0)

    op = alice.melt.execute_prepared_melt(prepared.id)
    assert op.state == "completed"
    assert op.fee_paid == FAKEWALLET_FEE
    # nothing to change back but what the lightning payment did not use of the reserve
    assert op.change_amount == RESERVE_100 - FAKEWALLET_FEE == change_signed(payer.url, op)
    assert balance_of(alice, url) == (1000 + op.change_amount, 0, 0)
    assert op.amount + op.fee_paid + op.fee == before - total(alice, url)
    assert history_of(alice, op.id) == ("melt", 100, fee, FAKEWALLET_FEE, "completed")


def test_internal_melt_pays_an_invoice_of_the_same_mint(wallet: WalletFactory,
                                                         payer: DevMint) -> None:
    url = normalize_mint_url(payer.url)
    alice, bob = wallet("alice", url), wallet("bob", url)
    fund(alice, url, 1000)  # 512+256+128+64+32+8
    events = MeltEvents(alice)
    fee = fee_of(payer.input_fee_ppk, 1)
    # paid with the 64: the change is 31 = 16+8+4+2+1, which needs every one of the
    # bit_length(31) = 5 blanks (one fewer would lose a sat)
    amount = 64 - 31 - fee
    quote = bob.mint.create_quote(url, amount)  # bob's invoice; nobody asks about it yet

    prepared = alice.melt.prepare_melt(url, quote.request)
    assert (prepared.amount, prepared.fee_reserve) == (amount, 0)  # settled inside the mint
    assert (prepared.input_amount, len(prepared.input_ys)) == (64, 1)
    assert prepared.fee == fee
    assert balance_of(alice, url) == (1000 - 64, 64, 0)

    op = alice.melt.execute_prepared_melt(prepared.id)
    assert op.state == "completed"
    assert op.preimage is None  # no lightning payment: Nutshell gives no preimage
    assert op.fee_paid == 0
    assert op.change_amount == 31 == change_signed(payer.url, op)
    assert balance_of(alice, url) == (1000 - amount - fee, 0, 0)
    assert op.amount + op.fee_paid + op.fee == 1000 - total(alice, url)
    check_payload(events.wait_for("melt:finalized", op.id), op, "completed")
    assert history_of(alice, op.id) == ("melt", amount, fee, 0, "completed")

    minted = bob.mint.redeem(quote.id, timeout=30)  # the invoice alice paid
    assert minted.state == "completed"
    assert balance_of(bob, url) == (amount, 0, 0)


def test_swap_then_melt_pays_the_swap_fee_and_the_melt_fee(wallet: WalletFactory,
                                                            payer: DevMint,
                                                            payee: DevMint) -> None:
    url = normalize_mint_url(payer.url)
    ppk = payer.input_fee_ppk
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    events = MeltEvents(alice)

    prepared = alice.melt.prepare_melt(url, invoice_of(payee.url, 100), swap=True)
    assert prepared.needs_swap is True
    assert (prepared.input_amount, len(prepared.input_ys)) == (128, 1)
    # the swap spends the 128 (one input); the melt then spends 100 + 2 + its own fee in
    # powers of two: 102 = 64+32+4+2 at fee 0; at 100 ppk 103 = 64+32+4+2+1 (fee 1)
    melt_inputs = {0: 102, 100: 103}[ppk]
    melt_fee = fee_of(ppk, len(split_amount(melt_inputs)))
    assert melt_inputs == 100 + RESERVE_100 + melt_fee
    fee = fee_of(ppk, 1) + melt_fee
    assert prepared.fee == fee
    assert balance_of(alice, url) == (1000 - 128, 128, 0)

    op = alice.melt.execute_prepared_melt(prepared.id)
    assert op.state == "completed"
    assert op.swapped is True
    assert op.fee == fee
    assert op.fee_paid == FAKEWALLET_FEE
    signed = change_signed(payer.url, op)
    assert op.change_amount == signed == RESERVE_100 - FAKEWALLET_FEE
    assert melt_inputs - 100 - melt_fee - signed == op.fee_paid  # the mint's lightning fee
    assert balance_of(alice, url) == (1000 - 100 - fee - FAKEWALLET_FEE, 0, 0)
    assert op.amount + op.fee_paid + op.fee == 1000 - total(alice, url)
    check_payload(events.wait_for("melt:finalized", op.id), op, "completed")
    assert history_of(alice, op.id) == ("melt", 100, fee, FAKEWALLET_FEE, "completed")


# --- prepared melts: rollback, reopen ---------------------------------------------------------


def test_rollback_of_a_prepared_melt_releases_inputs_and_invoice(wallet: WalletFactory,
                                                                 payer: DevMint,
                                                                 payee: DevMint) -> None:
    url = normalize_mint_url(payer.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    events = MeltEvents(alice)
    invoice = invoice_of(payee.url, 100)

    prepared = alice.melt.prepare_melt(url, invoice)
    assert balance_of(alice, url) == (1000 - 128, 128, 0)
    rolled = alice.melt.rollback(prepared.id)
    assert rolled.state == "rolled_back"
    assert balance_of(alice, url) == (1000, 0, 0)
    check_payload(events.wait_for("melt:rolled-back", prepared.id), rolled, "rolled_back")
    assert alice.melt.get_pending_operations() == []
    # nothing was melted, so no fee was charged: the history says 0, not the quoted fee
    assert history_of(alice, prepared.id) == ("melt", 100, 0, 0, "rolled_back")
    with pytest.raises(InvalidStateError):
        alice.melt.rollback(prepared.id)  # rolled back already
    with pytest.raises(InvalidStateError):
        alice.melt.execute_prepared_melt(prepared.id)
    assert balance_of(alice, url) == (1000, 0, 0)

    again = alice.melt.prepare_melt(url, invoice)  # the invoice is free to pay again
    op = alice.melt.execute_prepared_melt(again.id)
    assert op.state == "completed" and op.fee_paid == FAKEWALLET_FEE
    assert balance_of(alice, url) == (1000 - 100 - op.fee - FAKEWALLET_FEE, 0, 0)


def test_a_prepared_melt_survives_close_and_reopen(wallet: WalletFactory, payer: DevMint,
                                                   payee: DevMint) -> None:
    url = normalize_mint_url(payer.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    invoice = invoice_of(payee.url, 100)
    prepared = alice.melt.prepare_melt(url, invoice)
    alice.close()

    alice = wallet("alice")
    assert alice.last_recovery == {"prepared": 1}
    kept = current(alice, prepared.id)
    assert kept.state == "prepared"
    assert (kept.amount, kept.fee, kept.fee_reserve, kept.input_amount, kept.input_ys,
            kept.quote_id, kept.payment_hash) == (
        prepared.amount, prepared.fee, prepared.fee_reserve, prepared.input_amount,
        prepared.input_ys, prepared.quote_id, prepared.payment_hash)
    assert [o.id for o in alice.melt.get_pending_operations()] == [prepared.id]
    assert balance_of(alice, url) == (1000 - 128, 128, 0)
    before = melt_snapshot(alice)
    with pytest.raises(InvalidStateError):
        alice.melt.prepare_melt(url, invoice)  # still claimed by the reopened melt
    assert melt_snapshot(alice) == before

    events = MeltEvents(alice)
    op = alice.melt.execute_prepared_melt(prepared.id)
    assert op.state == "completed" and op.fee_paid == FAKEWALLET_FEE
    assert op.change_amount == change_signed(payer.url, op)
    assert balance_of(alice, url) == (1000 - 100 - op.fee - FAKEWALLET_FEE, 0, 0)
    check_payload(events.wait_for("melt:finalized", op.id), op, "completed")


def test_recovery_rolls_back_a_stale_prepared_melt(wallet: WalletFactory, payer: DevMint,
                                                    payee: DevMint) -> None:
    url = normalize_mint_url(payer.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    invoice = invoice_of(payee.url, 100)
    prepared = alice.melt.prepare_melt(url, invoice)
    alice.close()

    alice = wallet("alice", rollback_prepared_after=0.0)  # the stale-prepared policy
    assert alice.last_recovery == {"rolled_back": 1}
    assert current(alice, prepared.id).state == "rolled_back"
    assert balance_of(alice, url) == (1000, 0, 0)
    assert alice.melt.get_pending_operations() == []
    again = alice.melt.prepare_melt(url, invoice)  # released with it: payable again
    assert alice.melt.rollback(again.id).state == "rolled_back"


# --- bad input: typed errors that change nothing ------------------------------------------------


@pytest.fixture
def proxied(payer: DevMint, proxy_for: Callable[[str], FaultProxy]) -> FaultProxy:
    """The payer behind a FaultProxy: a wallet added at its URL is seen by it."""
    return proxy_for(payer.url)


def refused(coco: Coco, proxy: FaultProxy, error: type[Exception], call: Callable[[], object]
            ) -> list[tuple[str, str]]:
    """Run ``call``, which must raise ``error`` and change nothing in ``coco``; return the
    requests the mint saw meanwhile (method, path)."""
    before, seen = melt_snapshot(coco), len(proxy.seen())
    with pytest.raises(error):
        call()
    assert melt_snapshot(coco) == before
    return [(e.method, e.path) for e in proxy.seen()[seen:]]


def test_bad_invoices_and_unknown_mints_are_refused_before_any_request(
        wallet: WalletFactory, proxied: FaultProxy) -> None:
    url = normalize_mint_url(proxied.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    events = MeltEvents(alice)
    now = int(time.time())
    not_a_string: Any = 42
    bad: list[Any] = [
        "lnbc1garbage",                                     # malformed
        "",
        not_a_string,
        make_invoice(),                                     # amountless
        make_invoice(50, timestamp=now - 7200, expiry=60),  # expired
    ]
    for invoice in bad:
        assert refused(alice, proxied, InvoiceError,
                       partial(alice.melt.prepare_melt, url, invoice)) == []
    assert issubclass(InvoiceError, InvalidInputError)
    unknown = "http://127.0.0.1:9"  # never added: refused without a connection
    assert refused(alice, proxied, NotFoundError,
                   lambda: alice.melt.prepare_melt(unknown, make_invoice(10))) == []
    swap: Any = "yes"
    assert refused(alice, proxied, InvalidInputError,
                   lambda: alice.melt.prepare_melt(url, make_invoice(10), swap=swap)) == []
    events.flush()
    assert events.names() == []
    assert balance_of(alice, url) == (1000, 0, 0)


def test_a_prepared_melt_whose_invoice_expired_is_not_executed(wallet: WalletFactory,
                                                               proxied: FaultProxy) -> None:
    """Nutshell pays an expired invoice, so the wallet checks the expiry again when it
    executes: the melt stays prepared (to be rolled back), nothing is requested."""
    url = normalize_mint_url(proxied.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    events = MeltEvents(alice)
    made = int(time.time())
    invoice = make_invoice(100, timestamp=made, expiry=3)  # payable for 2 to 3 s
    prepared = alice.melt.prepare_melt(url, invoice)
    wait_until(lambda: decode_invoice(invoice).is_expired(time.time()), 10.0,
               "the invoice expires")

    assert refused(alice, proxied, InvoiceError,
                   lambda: alice.melt.execute_prepared_melt(prepared.id)) == []
    assert current(alice, prepared.id).state == "prepared"
    assert balance_of(alice, url) == (1000 - 128, 128, 0)
    assert alice.melt.rollback(prepared.id).state == "rolled_back"
    assert balance_of(alice, url) == (1000, 0, 0)
    events.flush()
    assert events.names(prepared.id) == ["melt:prepared", "melt:rolled-back"]


def test_an_invoice_the_balance_cannot_cover_with_its_reserve(wallet: WalletFactory,
                                                              proxied: FaultProxy) -> None:
    url = normalize_mint_url(proxied.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    events = MeltEvents(alice)
    invoice = make_invoice(999)  # the amount fits, the amount plus the fee reserve does not

    before, seen = melt_snapshot(alice), len(proxied.seen())
    with pytest.raises(InsufficientFundsError) as info:
        alice.melt.prepare_melt(url, invoice)
    assert melt_snapshot(alice) == before
    asked = proxied.seen()[seen:]
    # only the quote (which tells the fee reserve) was asked; nothing was melted (the
    # mint's info, NUT-08 or not, is the one fetched when the mint was added)
    assert sorted((e.method, e.path) for e in asked) == [("POST", "/v1/melt/quote/bolt11")]
    [quote] = [e for e in asked if e.method == "POST"]
    reserve = quote.response_json()["fee_reserve"]
    assert reserve > 1
    assert (info.value.needed, info.value.available) == (999 + reserve, 1000)
    events.flush()
    assert events.names() == []

    fund(alice, url, 100)  # now it fits: nothing of the refused attempt is in the way
    prepared = alice.melt.prepare_melt(url, invoice)
    assert prepared.state == "prepared" and prepared.fee_reserve == reserve
    assert alice.melt.rollback(prepared.id).state == "rolled_back"
    assert balance_of(alice, url) == (1100, 0, 0)


def test_an_invoice_is_never_paid_twice(wallet: WalletFactory, proxied: FaultProxy) -> None:
    url = normalize_mint_url(proxied.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    invoice = make_invoice(100)
    prepared = alice.melt.prepare_melt(url, invoice)

    # being paid (prepared): refused, in either case of the invoice, with no request
    assert refused(alice, proxied, InvalidStateError,
                   lambda: alice.melt.prepare_melt(url, invoice)) == []
    assert refused(alice, proxied, InvalidStateError,
                   lambda: alice.melt.prepare_melt(url, invoice.upper())) == []

    op = alice.melt.execute_prepared_melt(prepared.id)
    assert op.state == "completed"
    after = balance_of(alice, url)
    assert after == (1000 - 100 - op.fee - FAKEWALLET_FEE, 0, 0)
    # paid: refused, also after a reopen (the claim is rebuilt from the store)
    assert refused(alice, proxied, InvalidStateError,
                   lambda: alice.melt.prepare_melt(url, invoice)) == []
    alice.close()
    alice = wallet("alice")
    assert refused(alice, proxied, InvalidStateError,
                   lambda: alice.melt.prepare_melt(url, invoice)) == []
    assert balance_of(alice, url) == after
    assert [h.type for h in alice.history.get_history()] == ["melt", "mint"]


def test_two_prepares_of_one_invoice_at_once_hold_it_once(wallet: WalletFactory,
                                                           payer: DevMint,
                                                           payee: DevMint) -> None:
    url = normalize_mint_url(payer.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    invoice = invoice_of(payee.url, 100)
    start = threading.Barrier(2, timeout=10)
    results: list[Operation | BaseException] = []

    def prepare() -> None:
        start.wait()
        try:
            results.append(alice.melt.prepare_melt(url, invoice))
        except BaseException as exc:  # collected and checked below
            results.append(exc)

    threads = [threading.Thread(target=prepare) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    [won] = [r for r in results if isinstance(r, Operation)]
    [lost] = [r for r in results if not isinstance(r, Operation)]
    assert isinstance(lost, InvalidStateError), lost
    assert [o.id for o in alice.melt.get_pending_operations()] == [won.id]
    assert balance_of(alice, url) == (1000 - won.input_amount, won.input_amount, 0)
    assert [h.operation_id for h in alice.history.get_history() if h.type == "melt"] == [won.id]
    op = alice.melt.execute_prepared_melt(won.id)
    assert op.state == "completed" and op.fee_paid == FAKEWALLET_FEE
    assert balance_of(alice, url) == (1000 - 100 - op.fee - FAKEWALLET_FEE, 0, 0)


def test_calls_on_the_wrong_operation_change_nothing(wallet: WalletFactory,
                                                     proxied: FaultProxy) -> None:
    url = normalize_mint_url(proxied.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    done = alice.melt.execute_prepared_melt(
        alice.melt.prepare_melt(url, make_invoice(100)).id)
    assert done.state == "completed"
    prepared = alice.melt.prepare_melt(url, make_invoice(50))
    a_send = alice.send.prepare_send(url, 8)
    events = MeltEvents(alice)

    melt = alice.melt
    for error, call in [
        (InvalidStateError, lambda: melt.rollback(done.id)),          # completed
        (InvalidStateError, lambda: melt.execute_prepared_melt(done.id)),
        (NotFoundError, lambda: melt.execute_prepared_melt("no-such-operation")),
        (NotFoundError, lambda: melt.rollback("no-such-operation")),
        (NotFoundError, lambda: melt.execute_prepared_melt(a_send.id)),  # not a melt
        (InvalidInputError, lambda: melt.execute_prepared_melt(prepared.id, timeout=0)),
        (InvalidInputError, lambda: melt.execute_prepared_melt(prepared.id, timeout=-1)),
        (InvalidInputError, lambda: melt.execute_prepared_melt(prepared.id, timeout=True)),
    ]:
        assert refused(alice, proxied, error, call) == []
    assert melt.get_operation("no-such-operation") is None
    assert melt.get_operation(a_send.id) is None
    assert current(alice, done.id).state == "completed"
    assert current(alice, prepared.id).state == "prepared"
    events.flush()
    assert events.names() == []

    op = melt.execute_prepared_melt(prepared.id, timeout=30)  # still works
    assert op.state == "completed"


# --- payments that stay pending, then settle or fail ---------------------------------------------


@FEES
def test_a_pending_melt_completes_once_the_mint_settles_it(
        wallet: WalletFactory, make_mint: Callable[..., DevMint],
        proxy_for: Callable[[str], FaultProxy], fee_ppk: int) -> None:
    """Alice (Watcher on), Bob (Watcher off, behind a proxy) and Carol (Watcher off, a
    swap-then-melt) each melt at a mint whose payments stay in flight; every wallet is
    closed and reopened while pending (Alice while the mint is down); the mint restarted
    with SETTLED decides the payments: Alice's Watcher finishes hers, ``check_pending()``
    the others. A payment settled at the restart costs no lightning fee: the whole
    surplus comes back."""
    mint = make_mint(input_fee_ppk=fee_ppk, fakewallet=PENDING).start(timeout=_START_TIMEOUT_S)
    proxy = proxy_for(mint.url)
    direct, proxied = normalize_mint_url(mint.url), normalize_mint_url(proxy.url)
    urls = {"alice": direct, "bob": proxied, "carol": direct}
    watchers: dict[str, WatcherConfig | bool] = {"alice": QUICK, "bob": False, "carol": False}
    wallets = {name: wallet(name, urls[name], watcher=watchers[name]) for name in urls}
    one_fee = fee_of(fee_ppk, 1)
    # carol swaps the 128 into the melt's exact inputs (102, or 103 with their own
    # 1 sat fee) and her change, then melts those
    melt_inputs = {0: 102, 100: 103}[fee_ppk]
    carol_fee = one_fee + fee_of(fee_ppk, len(split_amount(melt_inputs)))
    swap_change = 128 - one_fee - melt_inputs
    held = {"alice": 128, "bob": 128, "carol": melt_inputs}   # reserved while pending
    spendable = {"alice": 1000 - 128, "bob": 1000 - 128, "carol": 1000 - 128 + swap_change}
    fees = {"alice": one_fee, "bob": one_fee, "carol": carol_fee}
    changes = {"alice": 128 - 100 - one_fee, "bob": 128 - 100 - one_fee,
               "carol": RESERVE_100}                           # lightning fee 0
    ops: dict[str, Operation] = {}
    invoices: dict[str, str] = {}
    for name, coco in wallets.items():
        url = urls[name]
        fund(coco, url, 1000)
        events = MeltEvents(coco)
        invoices[name] = make_invoice(100)
        op = ops[name] = pend(coco, url, invoices[name], swap=name == "carol")
        assert (op.input_amount, op.fee, op.needs_swap) == (128, fees[name], name == "carol")
        check_payload(events.wait_for("melt:pending", op.id), op, "pending")
        # the inputs are not spendable (carol's swap is done: its change is)
        assert balance_of(coco, url) == (spendable[name], held[name], 0)
        assert proof_states(mint.url, op.input_ys) == {ProofStateKind.PENDING}
        assert [o.id for o in coco.melt.get_pending_operations()] == [op.id]
        with pytest.raises(InsufficientFundsError):
            coco.send.prepare_send(url, spendable[name] + 1)
        # the payment may still go through: rollback refused, nothing changed
        before = melt_snapshot(coco)
        with pytest.raises(InvalidStateError):
            coco.melt.rollback(op.id)
        assert melt_snapshot(coco) == before
        events.flush()
        assert events.names(op.id) == ["melt:prepared", "melt:pending"]

    bob = wallets["bob"]
    assert refused(bob, proxy, InvalidStateError,  # being paid: no second quote, no melt
                   lambda: bob.melt.prepare_melt(urls["bob"], invoices["bob"])) == []
    assert [(o.id, o.state) for o in bob.melt.check_pending()] == [(ops["bob"].id, "pending")]

    for coco in wallets.values():
        coco.close()
    wallets = {name: wallet(name, watcher=watchers[name]) for name in ("bob", "carol")}
    mint.stop()  # alice reopens while the mint is down: her recovery is deferred
    wallets["alice"] = wallet("alice", watcher=watchers["alice"])
    events_of = {}
    for name, coco in wallets.items():
        # bob and carol asked the mint (still in flight); alice could not ask it
        recovered = "pending (deferred)" if name == "alice" else "pending"
        assert coco.last_recovery == {recovered: 1}
        assert current(coco, ops[name].id).state == "pending"
        assert balance_of(coco, urls[name]) == (spendable[name], held[name], 0)
        events_of[name] = MeltEvents(coco)
    bob = wallets["bob"]
    before = melt_snapshot(bob)
    with pytest.raises(MintUnreachableError):  # the mint cannot say UNPAID: refused
        bob.melt.rollback(ops["bob"].id)
    assert melt_snapshot(bob) == before

    mint.restart(SETTLED, timeout=_START_TIMEOUT_S)  # the Watcher still follows alice's
    events_of["alice"].wait_for("melt:finalized", ops["alice"].id, DECIDE_TIMEOUT)
    for name in ("bob", "carol"):
        checked = wallets[name].melt.check_pending()
        assert [(o.id, o.state) for o in checked] == [(ops[name].id, "completed")]
        events_of[name].wait_for("melt:finalized", ops[name].id)

    for name, coco in wallets.items():
        url = urls[name]
        op = current(coco, ops[name].id)
        assert op.state == "completed"
        assert op.preimage is None  # settled at the restart: Nutshell keeps no preimage
        assert op.fee_paid == 0
        assert op.change_amount == changes[name] == change_signed(mint.url, op)
        assert balance_of(coco, url) == (1000 - 100 - fees[name], 0, 0)
        assert op.amount + op.fee_paid + op.fee == 1000 - total(coco, url)
        assert coco.melt.get_pending_operations() == []
        assert history_of(coco, op.id) == ("melt", 100, fees[name], 0, "completed")
        events_of[name].flush()
        assert events_of[name].names(op.id) == ["melt:finalized"]


@FEES
def test_pending_melts_roll_back_once_the_payment_fails(
        wallet: WalletFactory, make_mint: Callable[..., DevMint], fee_ppk: int) -> None:
    """Three melts pend; the mint restarted with FAILED fails them: one is rolled back by
    ``rollback`` (the mint now says UNPAID), one by ``check_pending()``, one (Carol's
    swap-then-melt) by the Watcher; every input is released, and the swap's proofs are
    kept (only the swap's fee is gone). The mint then fails every payment: a melt raises
    the mint's 20004 and is rolled back."""
    mint = make_mint(input_fee_ppk=fee_ppk, fakewallet=PENDING).start(timeout=_START_TIMEOUT_S)
    url = normalize_mint_url(mint.url)
    alice, carol = wallet("alice", url), wallet("carol", url, watcher=QUICK)
    fund(alice, url, 1000)
    fund(carol, url, 1000)
    alice_events, carol_events = MeltEvents(alice), MeltEvents(carol)
    invoice_a = make_invoice(100)
    a = pend(alice, url, invoice_a)          # 128
    b = pend(alice, url, make_invoice(200))  # 256 (202 + fee)
    c = pend(carol, url, make_invoice(100), swap=True)  # the 128, swapped first
    assert (a.input_amount, b.input_amount, c.input_amount) == (128, 256, 128)
    assert balance_of(alice, url) == (1000 - 384, 384, 0)
    swap_fee = fee_of(fee_ppk, 1)
    melt_inputs = {0: 102, 100: 103}[fee_ppk]  # 100 + 2 + their own fee
    assert c.swapped and sum(split_amount(melt_inputs)) == melt_inputs
    assert balance_of(carol, url) == (1000 - swap_fee - melt_inputs, melt_inputs, 0)
    before = melt_snapshot(alice)
    with pytest.raises(InvalidStateError):
        alice.melt.rollback(a.id)
    assert melt_snapshot(alice) == before

    mint.restart(FAILING, timeout=_START_TIMEOUT_S)
    rolled = alice.melt.rollback(b.id)
    assert rolled.state == "rolled_back"
    assert balance_of(alice, url) == (1000 - 128, 128, 0)
    assert [(o.id, o.state) for o in alice.melt.check_pending()] == [(a.id, "rolled_back")]
    assert balance_of(alice, url) == (1000, 0, 0)
    carol_events.wait_for("melt:rolled-back", c.id, DECIDE_TIMEOUT)
    assert balance_of(carol, url) == (1000 - swap_fee, 0, 0)  # the swap did happen

    for coco, events, op in ((alice, alice_events, a), (alice, alice_events, b),
                             (carol, carol_events, c)):
        assert proof_states(mint.url, op.input_ys) == {ProofStateKind.UNSPENT}
        final = current(coco, op.id)
        assert final.state == "rolled_back" and final.fee_paid == 0
        kind, amount, _, fee_paid, state = history_of(coco, op.id)
        assert (kind, amount, fee_paid, state) == ("melt", op.amount, 0, "rolled_back")
        check_payload(events.wait_for("melt:rolled-back", op.id), final, "rolled_back")
        assert events.names(op.id) == ["melt:prepared", "melt:pending", "melt:rolled-back"]
    assert alice.melt.get_pending_operations() == []
    assert carol.melt.get_pending_operations() == []

    # the mint now fails every payment: a typed refusal, and nothing is lost
    prepared = alice.melt.prepare_melt(url, make_invoice(100))
    assert balance_of(alice, url) == (1000 - 128, 128, 0)
    with pytest.raises(MintRejectedError) as info:
        alice.melt.execute_prepared_melt(prepared.id, timeout=30)
    assert info.value.code == 20004
    failed = current(alice, prepared.id)
    assert failed.state == "rolled_back"
    assert proof_states(mint.url, failed.input_ys) == {ProofStateKind.UNSPENT}
    assert balance_of(alice, url) == (1000, 0, 0)
    assert history_of(alice, failed.id) == ("melt", 100, failed.fee, 0, "rolled_back")
    alice_events.wait_for("melt:rolled-back", failed.id)
    assert alice_events.names(failed.id) == ["melt:prepared", "melt:rolled-back"]

    # a rolled-back melt does not hold its invoice: it may be paid again
    again = alice.melt.prepare_melt(url, invoice_a)
    assert alice.melt.rollback(again.id).state == "rolled_back"
    assert balance_of(alice, url) == (1000, 0, 0)


def test_execute_returns_pending_within_its_timeout(wallet: WalletFactory,
                                                    make_mint: Callable[..., DevMint]) -> None:
    """A payment that takes longer than the timeout: the melt request times out, the
    quote says PENDING, execute returns ``pending`` (no exception) in about the timeout;
    the Watcher completes it when the payment settles (in the mint's own melt call, so
    FakeWallet's 1 sat is charged). The backend's status check answers PENDING meanwhile:
    with SETTLED there the wallet's quote check would settle it at once (fee 0)."""
    delay, timeout = 4.0, 1.0
    slow = FakeWalletConfig(payment_state="PENDING", outgoing_delay=delay)
    mint = make_mint(input_fee_ppk=100, fakewallet=slow).start(timeout=_START_TIMEOUT_S)
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url, watcher=QUICK)
    fund(alice, url, 1000)
    events = MeltEvents(alice)
    fee = fee_of(100, 1)
    prepared = alice.melt.prepare_melt(url, make_invoice(100))
    assert (prepared.input_amount, prepared.fee) == (128, fee)

    started = time.monotonic()
    op = alice.melt.execute_prepared_melt(prepared.id, timeout=timeout)
    took = time.monotonic() - started
    assert op.state == "pending"
    assert took < delay, f"execute took {took:.1f} s, the payment {delay} s"
    assert balance_of(alice, url) == (1000 - 128, 128, 0)
    check_payload(events.wait_for("melt:pending", op.id), op, "pending")

    done = events.wait_for("melt:finalized", op.id, DECIDE_TIMEOUT)
    final = current(alice, op.id)
    check_payload(done, final, "completed")
    assert final.preimage == ZERO_PREIMAGE
    assert final.fee_paid == FAKEWALLET_FEE
    assert final.change_amount == 128 - 100 - fee - FAKEWALLET_FEE == change_signed(mint.url,
                                                                                      final)
    assert balance_of(alice, url) == (1000 - 100 - fee - FAKEWALLET_FEE, 0, 0)
    assert final.amount + final.fee_paid + final.fee == 1000 - total(alice, url)
    assert history_of(alice, op.id) == ("melt", 100, fee, FAKEWALLET_FEE, "completed")
