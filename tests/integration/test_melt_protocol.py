"""What Nutshell 0.21 does when a wallet melts (NUT-05/08/23, with NUT-07, 09 and 17).

Protocol facts the melt saga relies on, observed against the real mint with input fees 0
and 100 ppk: one test per fact, the fact in its docstring. No wallet state: MintClient,
the crypto functions and, where MintClient hides the wire, raw HTTP. Invoices come from
devtools.invoices (FakeWallet pays any signed invoice with an amount); pending and failing
payments from private mints restarted with other FakeWallet settings.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest
import websocket

from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.crypto.keysets import fee_for
from coco_actors.crypto.outputs import random_outputs, unblind_signatures
from coco_actors.errors import MintRejectedError
from coco_actors.mint_client import MintClient
from coco_actors.wire import (
    BlindingData,
    BlindSignature,
    Keyset,
    MeltQuote,
    MeltQuoteState,
    MintQuoteState,
    Proof,
    ProofStateKind,
    split_amount,
)
from devtools.devmint import FAILING, PENDING, SETTLED, DevMint, FakeWalletConfig
from devtools.invoices import make_invoice
from tests.support.waiting import wait_until

from .protocol_helpers import active_keyset, mint_proofs

pytestmark = pytest.mark.mint

ZERO_PREIMAGE = "0" * 64
FAKEWALLET_FEE = 1  # what FakeWallet charges for a payment it settles at once
FEES = pytest.mark.parametrize("fee", [0, 100], ids=["fee0", "fee100"])


@pytest.fixture
def client(mint: DevMint) -> Iterator[MintClient]:
    with MintClient(mint.url) as c:
        yield c


# --- helpers ----------------------------------------------------------------------------


def total(items: Sequence[Proof] | Sequence[BlindSignature]) -> int:
    return sum(p.amount for p in items)


def input_fee(keyset: Keyset, proofs: Sequence[Proof]) -> int:
    return fee_for(keyset.input_fee_ppk for _ in proofs)


def states(client: MintClient, proofs: Sequence[Proof]) -> set[ProofStateKind]:
    return {s.state for s in client.check_state([secret_to_y(p.secret) for p in proofs])}


def expected_change(overpaid: int, blanks: int) -> list[int]:
    """NUT-08 as Nutshell does it: powers of two, largest first, at most one per blank."""
    return sorted(split_amount(overpaid), reverse=True)[:blanks]


def blank_outputs(keyset: Keyset, count: int, amount: int = 1) -> list[BlindingData]:
    return random_outputs([amount] * count, keyset.id)


def melt(client: MintClient, quote: str, inputs: Sequence[Proof],
         blanks: Sequence[BlindingData] = ()) -> MeltQuote:
    return client.melt(quote, inputs, [b.blinded for b in blanks])


def raw(mint_url: str, method: str, path: str, body: dict[str, Any] | None = None
        ) -> tuple[int, dict[str, Any]]:
    """The mint's JSON as sent, for facts MintClient's types do not show (null vs [])."""
    response = httpx.request(method, f"{mint_url}{path}", json=body, timeout=30.0)
    return response.status_code, response.json()  # type: ignore[no-any-return]


def rejected(call: Callable[[], object]) -> MintRejectedError:
    with pytest.raises(MintRejectedError) as info:
        call()
    return info.value


class MeltQuoteSocket:
    """A NUT-17 ``bolt11_melt_quote`` subscription to one quote; reads pushes with deadlines."""

    def __init__(self, mint_url: str, quote: str) -> None:
        self._ws = websocket.create_connection(
            mint_url.replace("http://", "ws://") + "/v1/ws", timeout=5)
        sub_id = str(uuid.uuid4())
        self._ws.send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "subscribe", "params": {
            "kind": "bolt11_melt_quote", "filters": [quote], "subId": sub_id}}))
        ack = json.loads(self._ws.recv())
        assert ack["result"] == {"status": "OK", "subId": sub_id}
        self.sub_id = sub_id

    def next(self, timeout: float = 5.0) -> dict[str, Any]:
        """The payload of the next notification; fails the test after ``timeout``."""
        self._ws.settimeout(timeout)
        message = json.loads(self._ws.recv())
        assert message["method"] == "subscribe" and message["params"]["subId"] == self.sub_id
        return message["params"]["payload"]  # type: ignore[no-any-return]

    def until(self, state: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Every payload up to and including the first in ``state``."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1]["state"] != state:
            seen.append(self.next(max(0.1, deadline - time.monotonic())))
        return seen

    def close(self) -> None:
        self._ws.close()


# --- quotes -----------------------------------------------------------------------------


def test_melt_quote_fields(client: MintClient, mint: DevMint) -> None:
    """A quote has the invoice's amount in sats, a fee reserve of max(2, 1 %), state UNPAID,
    and the invoice's own expiry (timestamp + x); the POST answer has ``change: null``, the
    GET answer ``change: []``; an invoice's msat amount is rounded up to whole sats."""
    now = int(time.time())
    invoice = make_invoice(100, timestamp=now, expiry=600)
    quote = client.create_melt_quote(invoice)
    assert (quote.amount, quote.fee_reserve, quote.state) == (100, 2, MeltQuoteState.UNPAID)
    assert quote.expiry == now + 600
    assert quote.unit == "sat" and quote.request == invoice and quote.payment_preimage is None
    status, answer = raw(mint.url, "GET", f"/v1/melt/quote/bolt11/{quote.quote}")
    assert status == 200 and answer["change"] == [] and answer["method"] == "bolt11"
    status, answer = raw(mint.url, "POST", "/v1/melt/quote/bolt11",
                         {"request": make_invoice(10_000), "unit": "sat"})
    assert (answer["amount"], answer["fee_reserve"], answer["change"]) == (10_000, 100, None)
    assert client.create_melt_quote(make_invoice(amount_msat=100_500)).amount == 101


def test_amountless_and_malformed_invoices_are_refused_with_code_0(client: MintClient) -> None:
    """Nutshell refuses an amountless or undecodable invoice, and an unknown quote id, with
    HTTP 400 and NUT code 0; only the message tells them apart."""
    amountless = rejected(lambda: client.create_melt_quote(make_invoice()))
    assert (amountless.code, amountless.detail) == (0, "invoice has no amount.")
    garbage = rejected(lambda: client.create_melt_quote("lnbc1garbage"))
    assert (garbage.code, garbage.detail) == (0, "Bech32 string is not valid.")
    unknown = rejected(lambda: client.get_melt_quote("no-such-quote"))
    assert (unknown.code, unknown.detail, unknown.status) == (0, "quote not found", 400)


def test_an_expired_invoice_is_quoted_and_paid(client: MintClient) -> None:
    """Nutshell 0.21 quotes an expired invoice (the quote's expiry lies in the past) and
    FakeWallet pays it: the wallet must check the invoice's expiry itself."""
    stale = make_invoice(50, timestamp=int(time.time()) - 7200, expiry=60)
    quote = client.create_melt_quote(stale)
    assert quote.state == MeltQuoteState.UNPAID
    assert quote.expiry is not None and quote.expiry < time.time() - 7000
    proofs, _ = mint_proofs(client, 64)
    assert melt(client, quote.quote, proofs).state == MeltQuoteState.PAID


# --- a melt that settles at once ---------------------------------------------------------


def test_melt_returns_all_overpaid_value_as_change(client: MintClient) -> None:
    """The answer is PAID with a zero preimage; the mint returns as NUT-08 change everything
    paid beyond amount + input fee + the 1 sat FakeWallet charges (not only the unused
    reserve), as powers of two, largest first, one per blank output (amount 0 or 1 alike),
    each with a DLEQ; the inputs are SPENT, the change UNSPENT."""
    keyset = active_keyset(client)
    for amount in (0, 1):
        proofs, _ = mint_proofs(client, 200)  # 128 + 64 + 8
        fee = input_fee(keyset, proofs)
        quote = client.create_melt_quote(make_invoice(100))
        blanks = blank_outputs(keyset, 7, amount)
        paid = melt(client, quote.quote, proofs, blanks)
        assert paid.state == MeltQuoteState.PAID and paid.payment_preimage == ZERO_PREIMAGE
        overpaid = 200 - 100 - fee - FAKEWALLET_FEE
        assert [s.amount for s in paid.change] == expected_change(overpaid, 7)
        assert all(s.dleq is not None for s in paid.change)
        change = unblind_signatures(blanks, list(paid.change), keyset, blank=True)  # DLEQs
        assert total(change) == overpaid
        assert states(client, proofs) == {ProofStateKind.SPENT}
        assert states(client, change) == {ProofStateKind.UNSPENT}


def test_change_is_capped_by_the_number_of_blank_outputs(client: MintClient) -> None:
    """With fewer blanks than powers of two in the overpaid value, the mint fills them with
    the largest and keeps the rest; without blanks it keeps everything (``change: []``)."""
    keyset = active_keyset(client)
    proofs, _ = mint_proofs(client, 200)
    fee = input_fee(keyset, proofs)
    overpaid = 200 - 100 - fee - FAKEWALLET_FEE
    blanks = blank_outputs(keyset, 2)
    paid = melt(client, client.create_melt_quote(make_invoice(100)).quote, proofs, blanks)
    assert [s.amount for s in paid.change] == expected_change(overpaid, 2) == [64, 32]
    proofs, _ = mint_proofs(client, 200)
    paid = melt(client, client.create_melt_quote(make_invoice(100)).quote, proofs)
    assert paid.state == MeltQuoteState.PAID and paid.change == ()


def test_quote_status_and_restore_carry_the_change(client: MintClient) -> None:
    """After a PAID melt, GET of the quote repeats the preimage and the same change with
    DLEQs; NUT-09 restore of the blanks returns exactly the signed ones (the first n, in
    order, with the amount the wallet sent) and their signatures."""
    keyset = active_keyset(client)
    proofs, _ = mint_proofs(client, 200)
    blanks = blank_outputs(keyset, 7)
    paid = melt(client, client.create_melt_quote(make_invoice(100)).quote, proofs, blanks)
    status = client.get_melt_quote(paid.quote)
    assert status.state == MeltQuoteState.PAID and status.payment_preimage == ZERO_PREIMAGE
    assert status.change == paid.change
    restored = client.restore([b.blinded for b in blanks])
    n = len(paid.change)
    assert n < len(blanks)
    assert [o.B_ for o in restored.outputs] == [b.B_ for b in blanks[:n]]
    assert {o.amount for o in restored.outputs} == {1}
    assert restored.signatures == paid.change


def test_inputs_must_cover_amount_reserve_and_input_fee(client: MintClient) -> None:
    """Inputs short of amount + fee_reserve + input fee are refused with 11000 (the message
    names both sums); the quote stays UNPAID and the inputs UNSPENT."""
    keyset = active_keyset(client)
    proofs, _ = mint_proofs(client, 100)
    quote = client.create_melt_quote(make_invoice(100))
    needed = 100 + quote.fee_reserve + input_fee(keyset, proofs)
    error = rejected(lambda: melt(client, quote.quote, proofs))
    assert error.code == 11000
    assert error.detail == (
        f"not enough inputs provided for melt. Provided: 100, needed: {needed}")
    assert client.get_melt_quote(quote.quote).state == MeltQuoteState.UNPAID
    assert states(client, proofs) == {ProofStateKind.UNSPENT}


def test_an_invoice_is_paid_only_once(client: MintClient) -> None:
    """Two quotes for one unpaid invoice are both issued (the request is lowercased, so an
    upper-case copy is the same invoice). Once one is paid, melting it again (20006 "...:
    paid"), melting the other (20006 "Melt quote already paid or pending.") and asking a
    new quote for the invoice (the same 20006) are refused; those inputs stay UNSPENT."""
    invoice = make_invoice(100)
    quote = client.create_melt_quote(invoice)
    twin = client.create_melt_quote(invoice.upper())
    assert twin.quote != quote.quote and twin.request == invoice
    first, _ = mint_proofs(client, 200)
    assert melt(client, quote.quote, first).state == MeltQuoteState.PAID
    second, _ = mint_proofs(client, 200)
    again = rejected(lambda: melt(client, quote.quote, second))
    assert (again.code, again.detail) == (20006, "melt quote is not unpaid: paid")
    other = rejected(lambda: melt(client, twin.quote, second))
    assert (other.code, other.detail) == (20006, "Melt quote already paid or pending.")
    requote = rejected(lambda: client.create_melt_quote(invoice))
    assert (requote.code, requote.detail) == (20006, "Melt quote already paid or pending.")
    assert states(client, second) == {ProofStateKind.UNSPENT}
    assert client.get_melt_quote(twin.quote).state == MeltQuoteState.UNPAID


def test_an_invoice_of_the_other_test_mint_is_an_external_payment(
    client: MintClient, other_mint_invoice: Callable[[int], str]
) -> None:
    """An invoice of another mint is paid by FakeWallet like any: reserve 2, 1 sat charged,
    zero preimage."""
    keyset = active_keyset(client)
    proofs, _ = mint_proofs(client, 200)
    quote = client.create_melt_quote(other_mint_invoice(100))
    assert (quote.amount, quote.fee_reserve) == (100, 2)
    paid = melt(client, quote.quote, proofs, blank_outputs(keyset, 7))
    assert paid.state == MeltQuoteState.PAID and paid.payment_preimage == ZERO_PREIMAGE
    assert total(paid.change) == 200 - 100 - input_fee(keyset, proofs) - FAKEWALLET_FEE


def test_websocket_pushes_melt_quote_states(client: MintClient, mint: DevMint) -> None:
    """NUT-17 ``bolt11_melt_quote``: on subscribe the current state (UNPAID, ``change: []``);
    then PENDING and PAID, the PAID payload with the preimage and the change (with DLEQs),
    payloads shaped like the quote answer."""
    keyset = active_keyset(client)
    proofs, _ = mint_proofs(client, 200)
    quote = client.create_melt_quote(make_invoice(100))
    socket = MeltQuoteSocket(mint.url, quote.quote)
    try:
        first = socket.next()
        assert first["quote"] == quote.quote
        assert (first["state"], first["change"], first["payment_preimage"]) == ("UNPAID", [], None)
        paid = melt(client, quote.quote, proofs, blank_outputs(keyset, 7))
        pushes = socket.until("PAID")
    finally:
        socket.close()
    assert [p["state"] for p in pushes] == ["PENDING", "PAID"]
    last = MeltQuote.from_wire(pushes[-1])
    assert last.payment_preimage == ZERO_PREIMAGE and last.change == paid.change
    assert set(pushes[-1]) >= {"quote", "amount", "fee_reserve", "state", "expiry", "request",
                               "unit", "payment_preimage", "change"}


def test_prefer_async_answers_pending_at_once(make_mint: Callable[..., DevMint]) -> None:
    """NUT-05 ``prefer_async: true`` (not sent by MintClient.melt today): Nutshell answers
    PENDING right after locking the inputs and pays in the background; the quote then turns
    PAID with the change. Without it the request blocks for the whole payment."""
    delay = 2.0
    mint = make_mint(input_fee_ppk=0, fakewallet=FakeWalletConfig(outgoing_delay=delay)).start()
    with MintClient(mint.url) as client:
        keyset = active_keyset(client)
        for prefer_async in (False, True):
            proofs, _ = mint_proofs(client, 200)
            quote = client.create_melt_quote(make_invoice(100))
            socket = MeltQuoteSocket(mint.url, quote.quote)
            try:
                assert socket.next()["state"] == "UNPAID"
                body: dict[str, Any] = {
                    "quote": quote.quote, "inputs": [p.to_wire() for p in proofs],
                    "outputs": [b.blinded.to_wire() for b in blank_outputs(keyset, 7)]}
                if prefer_async:
                    body["prefer_async"] = True
                started = time.monotonic()
                status, answer = raw(mint.url, "POST", "/v1/melt/bolt11", body)
                took = time.monotonic() - started
                assert status == 200
                if prefer_async:
                    assert answer["state"] == "PENDING" and answer["change"] == []
                    assert states(client, proofs) == {ProofStateKind.PENDING}
                else:
                    assert answer["state"] == "PAID" and took >= delay
                paid = MeltQuote.from_wire(socket.until("PAID")[-1])
            finally:
                socket.close()
            assert total(paid.change) == 200 - 100 - FAKEWALLET_FEE
            assert client.get_melt_quote(quote.quote).change == paid.change


# --- internal melt ----------------------------------------------------------------------


@FEES
def test_internal_melt(make_mint: Callable[..., DevMint], fee: int) -> None:
    """An invoice of the same mint (its mint quote still unpaid: a long incoming delay) is
    settled internally: fee reserve 0, PAID with NO preimage, no lightning fee, so all the
    overpaid value comes back as change; the mint quote turns PAID and can be minted. The
    websocket pushes PENDING, then PAID twice: first with ``change: []``, then with it."""
    mint = make_mint(input_fee_ppk=fee, fakewallet=FakeWalletConfig(incoming_delay=600)).start()
    with MintClient(mint.url) as client:
        keyset = active_keyset(client)
        proofs, _ = mint_proofs(client, 100)  # 64 + 32 + 4
        invoice_quote = client.create_mint_quote(64)  # not asked about: stays unpaid
        quote = client.create_melt_quote(invoice_quote.request)
        assert (quote.amount, quote.fee_reserve) == (64, 0)
        blanks = blank_outputs(keyset, 7)
        socket = MeltQuoteSocket(mint.url, quote.quote)
        try:
            assert socket.next()["state"] == "UNPAID"
            paid = melt(client, quote.quote, proofs, blanks)
            pushes = socket.until("PAID")
            pushes.append(socket.next())
        finally:
            socket.close()
        assert [p["state"] for p in pushes] == ["PENDING", "PAID", "PAID"]
        assert pushes[1]["change"] == []
        assert MeltQuote.from_wire(pushes[2]).change == paid.change
        assert paid.state == MeltQuoteState.PAID and paid.payment_preimage is None
        overpaid = 100 - 64 - input_fee(keyset, proofs)
        assert [s.amount for s in paid.change] == expected_change(overpaid, 7)
        unblind_signatures(blanks, list(paid.change), keyset, blank=True)
        assert states(client, proofs) == {ProofStateKind.SPENT}
        assert client.get_mint_quote(invoice_quote.quote).state == MintQuoteState.PAID
        outputs = random_outputs(split_amount(64), keyset.id)
        assert total(client.mint(invoice_quote.quote, [o.blinded for o in outputs])) == 64


# --- payments that pend, then settle or fail ------------------------------------------------


@FEES
def test_pending_melt_then_settled(make_mint: Callable[..., DevMint], fee: int) -> None:
    """With both FakeWallet states PENDING the melt answers PENDING (no preimage, ``change:
    []``); the quote stays PENDING, the inputs are PENDING (a swap of one: 11002), the quote
    and the invoice cannot be melted or quoted again (20005), restore finds nothing.
    Restarted with SETTLED, the mint settles it at startup: the inputs are SPENT before any
    quote check, the quote is PAID with NO preimage and, the fee being unknown, counted 0,
    all the overpaid value (the whole reserve too) comes back as change, in the quote
    status, by restore, and in the websocket's first push (there without DLEQs)."""
    mint = make_mint(input_fee_ppk=fee, fakewallet=PENDING).start()
    with MintClient(mint.url) as client:
        keyset = active_keyset(client)
        proofs, _ = mint_proofs(client, 200)
        invoice = make_invoice(100)
        quote = client.create_melt_quote(invoice)
        blanks = blank_outputs(keyset, 7)
        pending = melt(client, quote.quote, proofs, blanks)
        assert pending.state == MeltQuoteState.PENDING
        assert pending.payment_preimage is None and pending.change == ()
        assert client.get_melt_quote(quote.quote).state == MeltQuoteState.PENDING
        assert states(client, proofs) == {ProofStateKind.PENDING}
        one = proofs[:1]
        outputs = random_outputs(split_amount(total(one) - input_fee(keyset, one)), keyset.id)
        swap = rejected(lambda: client.swap(one, [o.blinded for o in outputs]))
        assert (swap.code, swap.detail) == (11002, "proofs are pending")
        others, _ = mint_proofs(client, 200)
        again = rejected(lambda: melt(client, quote.quote, others))
        assert (again.code, again.detail) == (20005, "melt quote is not unpaid: pending")
        assert rejected(lambda: client.create_melt_quote(invoice)).code == 20005
        assert states(client, others) == {ProofStateKind.UNSPENT}
        assert client.restore([b.blinded for b in blanks]).outputs == ()

    mint.restart(SETTLED)
    with MintClient(mint.url) as client:
        # decided at startup; on a loaded machine that check may finish just after the
        # mint first answers, so it is awaited (bounded), not assumed
        wait_until(lambda: states(client, proofs) == {ProofStateKind.SPENT}, 30,
                   "the restarted mint settles the pending melt")
        socket = MeltQuoteSocket(mint.url, quote.quote)
        try:
            pushed = MeltQuote.from_wire(socket.next())
        finally:
            socket.close()
        status = client.get_melt_quote(quote.quote)
        assert status.state == MeltQuoteState.PAID and status.payment_preimage is None
        overpaid = 200 - 100 - input_fee(keyset, proofs)  # fee paid: 0
        assert [s.amount for s in status.change] == expected_change(overpaid, 7)
        change = unblind_signatures(blanks, list(status.change), keyset, blank=True)
        assert all(s.dleq is not None for s in status.change)
        assert client.restore([b.blinded for b in blanks]).signatures == status.change
        assert pushed.state == MeltQuoteState.PAID
        assert [s.C_ for s in pushed.change] == [s.C_ for s in status.change]
        assert all(s.dleq is None for s in pushed.change)
        assert states(client, change) == {ProofStateKind.UNSPENT}
        assert rejected(lambda: melt(client, quote.quote, others)).code == 20006


@FEES
def test_pending_melt_then_failed(make_mint: Callable[..., DevMint], fee: int) -> None:
    """Restarted with FAILED, the mint fails a pending payment at startup: the inputs are
    UNSPENT at once, the quote UNPAID (``change: []``), restore finds nothing. A payment
    that fails while the wallet waits answers 20004 "Lightning payment failed.", the quote
    is UNPAID again and the inputs UNSPENT (the websocket shows PENDING, then UNPAID). Once
    the backend works, the same quote melts with the same inputs and blank outputs."""
    mint = make_mint(input_fee_ppk=fee, fakewallet=PENDING).start()
    with MintClient(mint.url) as client:
        keyset = active_keyset(client)
        proofs, _ = mint_proofs(client, 200)
        quote = client.create_melt_quote(make_invoice(100))
        blanks = blank_outputs(keyset, 7)
        assert melt(client, quote.quote, proofs, blanks).state == MeltQuoteState.PENDING

    mint.restart(FAILING)
    with MintClient(mint.url) as client:
        wait_until(lambda: states(client, proofs) == {ProofStateKind.UNSPENT}, 30,
                   "the restarted mint releases the failed melt's inputs")
        status = client.get_melt_quote(quote.quote)
        assert status.state == MeltQuoteState.UNPAID and status.change == ()
        assert client.restore([b.blinded for b in blanks]).outputs == ()
        socket = MeltQuoteSocket(mint.url, quote.quote)
        try:
            assert socket.next()["state"] == "UNPAID"
            failed = rejected(lambda: melt(client, quote.quote, proofs, blanks))
            pushes = socket.until("UNPAID")
        finally:
            socket.close()
        assert (failed.code, failed.detail) == (20004, "Lightning payment failed.")
        assert [p["state"] for p in pushes] == ["PENDING", "UNPAID"]
        assert client.get_melt_quote(quote.quote).state == MeltQuoteState.UNPAID
        assert states(client, proofs) == {ProofStateKind.UNSPENT}

    mint.restart(SETTLED)
    with MintClient(mint.url) as client:
        paid = melt(client, quote.quote, proofs, blanks)
        assert paid.state == MeltQuoteState.PAID
        overpaid = 200 - 100 - input_fee(keyset, proofs) - FAKEWALLET_FEE
        assert total(unblind_signatures(blanks, list(paid.change), keyset, blank=True)) \
            == overpaid
