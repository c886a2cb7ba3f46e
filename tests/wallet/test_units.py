"""Units other than sat against a real mint serving ``usd`` as well as ``sat`` (issue 13),
with input fees 0 and 100 ppk.

Every step checks both units' (spendable, reserved, pending) exactly: usd amounts (cents,
as Nutshell's FakeWallet counts them) only ever move the usd balance, sat amounts the sat
one. Refused tokens leave everything unchanged and stay claimable at the mint.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coco_actors import Coco, InsufficientFundsError, InvalidInputError
from coco_actors.mint_client import MintClient, MintInfo, normalize_mint_url
from coco_actors.proof_ledger import Balances, MintBalance
from coco_actors.tokens import Token, decode, encode_v4
from coco_actors.watcher import WatcherConfig
from devtools.devmint import USD_ENV, DevMint
from devtools.invoices import make_invoice

from .helpers import WalletFactory, fee_of, snapshot, token_fee

pytestmark = pytest.mark.mint

QUICK = WatcherConfig(poll_interval=0.5, reconnect_min=0.05, reconnect_max=0.5)


@pytest.fixture(scope="module", params=[0, 100], ids=["fee0", "fee100"])
def usd_mint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             nutshell_bin: Path) -> Iterator[DevMint]:
    """One mint per fee serving sat and usd, shared by this module's tests."""
    fee = int(request.param)
    mint = DevMint(tmp_path_factory.mktemp(f"usd-fee{fee}"), input_fee_ppk=fee,
                   nutshell_bin=nutshell_bin, extra_env=USD_ENV)
    mint.start()
    yield mint
    mint.stop()


def unit_balance(coco: Coco, url: str, unit: str) -> tuple[int, int, int]:
    b = coco.balance().units[normalize_mint_url(url)].get(unit, MintBalance())
    return b.spendable, b.reserved, b.pending


def fund_unit(coco: Coco, url: str, amount: int, unit: str) -> None:
    quote = coco.mint.create_quote(url, amount, unit=unit)
    assert (quote.amount, quote.unit) == (amount, unit)
    op = coco.mint.redeem(quote.id, timeout=10)
    assert (op.state, op.unit, op.amount) == ("completed", unit, amount)


def test_the_mint_lists_an_active_keyset_of_each_unit(usd_mint: DevMint) -> None:
    with MintClient(usd_mint.url) as client:
        active = {(k.unit, k.input_fee_ppk) for k in client.get_keysets() if k.active}
        info = client.get_info()
    assert active == {("sat", usd_mint.input_fee_ppk), ("usd", usd_mint.input_fee_ppk)}
    # NUT-17 lists its commands per unit; the watcher follows every unit's
    assert info.websocket_commands("usd")
    assert info.websocket_commands(None) >= info.websocket_commands("usd")


def test_mint_send_receive_melt_in_usd(wallet: WalletFactory, usd_mint: DevMint) -> None:
    url = normalize_mint_url(usd_mint.url)
    ppk = usd_mint.input_fee_ppk
    alice, bob = wallet("alice", url), wallet("bob", url)

    fund_unit(alice, url, 1000, "sat")
    fund_unit(alice, url, 500, "usd")  # 256+128+64+32+16+4
    assert unit_balance(alice, url, "sat") == (1000, 0, 0)
    assert unit_balance(alice, url, "usd") == (500, 0, 0)
    balances = alice.balance()
    # the plain per-mint shape is sat, as before units; totals never add two units
    assert balances[url] == MintBalance(1000, 0, 0) == balances.total
    assert balances.unit("usd")[url] == MintBalance(500, 0, 0)
    assert balances.totals() == {"sat": MintBalance(1000, 0, 0),
                                 "usd": MintBalance(500, 0, 0)}

    prepared = alice.send.prepare_send(url, 120, unit="usd")
    assert (prepared.unit, prepared.amount) == ("usd", 120)
    assert prepared.fee == fee_of(ppk, 1)  # the 128 alone covers 120 and its fee
    assert unit_balance(alice, url, "usd") == (500 - 128, 128, 0)
    assert unit_balance(alice, url, "sat") == (1000, 0, 0)
    op, token = alice.send.execute_prepared_send(prepared.id)
    assert decode(token).unit == "usd" and decode(token).amount == 120
    assert unit_balance(alice, url, "usd") == (500 - 120 - prepared.fee, 0, 120)
    assert unit_balance(alice, url, "sat") == (1000, 0, 0)

    received = bob.receive(token)
    bob_usd = 120 - token_fee(token, ppk)
    assert (received.state, received.unit) == ("completed", "usd")
    assert unit_balance(bob, url, "usd") == (bob_usd, 0, 0)
    assert unit_balance(bob, url, "sat") == (0, 0, 0)
    assert [o.state for o in alice.send.check_pending()] == ["completed"]
    assert unit_balance(alice, url, "usd") == (500 - 120 - prepared.fee, 0, 0)

    # a melt in usd: the mint converts the invoice's sats; only usd proofs pay it
    before = sum(unit_balance(alice, url, "usd"))
    melt = alice.melt.prepare_melt(url, make_invoice(500), unit="usd")
    assert melt.unit == "usd" and 0 < melt.amount < before
    paid = alice.melt.execute_prepared_melt(melt.id, timeout=30)
    assert paid.state == "completed"
    after = unit_balance(alice, url, "usd")
    assert after[1:] == (0, 0)
    assert paid.amount + paid.fee_paid + paid.fee == before - after[0]
    assert unit_balance(alice, url, "sat") == (1000, 0, 0)

    units = {(h.type, h.unit, h.amount) for h in alice.history.get_history()}
    assert units == {("mint", "sat", 1000), ("mint", "usd", 500), ("send", "usd", 120),
                     ("melt", "usd", paid.amount)}

    # sats sent as before, from sat proofs only
    sat_send = alice.send.prepare_send(url, 100)
    assert sat_send.unit == "sat"
    assert unit_balance(alice, url, "usd") == after
    alice.send.rollback(sat_send.id)
    assert unit_balance(alice, url, "sat") == (1000, 0, 0)


def test_units_are_never_mixed_in_selection(wallet: WalletFactory, usd_mint: DevMint) -> None:
    url = normalize_mint_url(usd_mint.url)
    alice = wallet("alice", url)
    fund_unit(alice, url, 1000, "sat")
    fund_unit(alice, url, 10, "usd")
    before = snapshot(alice)
    with pytest.raises(InsufficientFundsError) as info:
        alice.send.prepare_send(url, 11, unit="usd")  # 1000 sat do not count
    assert (info.value.needed, info.value.available) == (11, 10)
    with pytest.raises(InsufficientFundsError):
        alice.melt.prepare_melt(url, make_invoice(500), unit="usd")
    assert snapshot(alice) == before
    # a unit the mint has no keyset of: refused before any request
    for call in (lambda: alice.send.prepare_send(url, 1, unit="eur"),
                 lambda: alice.mint.create_quote(url, 1, unit="eur"),
                 lambda: alice.melt.prepare_melt(url, make_invoice(5), unit="eur"),
                 lambda: alice.send.prepare_send(url, 1, unit="")):
        with pytest.raises(InvalidInputError):
            call()
    assert snapshot(alice) == before
    assert isinstance(alice.balance(), Balances)


def test_tokens_of_a_wrong_or_mixed_unit_are_refused(wallet: WalletFactory,
                                                     usd_mint: DevMint) -> None:
    url = normalize_mint_url(usd_mint.url)
    alice, bob = wallet("alice", url), wallet("bob", url)
    fund_unit(alice, url, 64, "sat")
    fund_unit(alice, url, 64, "usd")
    _, usd_token = alice.send.execute_prepared_send(
        alice.send.prepare_send(url, 64, unit="usd").id)
    _, sat_token = alice.send.execute_prepared_send(alice.send.prepare_send(url, 64).id)
    usd, sat = decode(usd_token), decode(sat_token)
    assert (usd.unit, sat.unit) == ("usd", "sat")

    forged = [
        Token(mint=url, proofs=usd.proofs, unit="eur"),   # a unit the mint has no keyset of
        Token(mint=url, proofs=usd.proofs, unit="sat"),   # usd proofs labelled sat
        Token(mint=url, proofs=usd.proofs + sat.proofs, unit="usd"),  # mixed units
    ]
    before = snapshot(bob)
    for token in forged:
        with pytest.raises(InvalidInputError):
            bob.receive(encode_v4(token))
    assert snapshot(bob) == before
    # nothing reached the mint that changed anything: both tokens are still claimable
    assert bob.receive(usd_token).unit == "usd"
    assert bob.receive(sat_token).unit == "sat"
    assert unit_balance(bob, url, "usd") == (64 - token_fee(usd_token, usd_mint.input_fee_ppk),
                                             0, 0)
    assert unit_balance(bob, url, "sat") == (64 - token_fee(sat_token, usd_mint.input_fee_ppk),
                                             0, 0)


def test_the_watcher_follows_a_usd_quote_and_a_usd_send(wallet: WalletFactory,
                                                       usd_mint: DevMint) -> None:
    url = normalize_mint_url(usd_mint.url)
    alice, bob = wallet("alice", url, watcher=QUICK), wallet("bob", url)
    finalized = threading.Event()
    sent: list[str] = []

    def on_finalized(payload: dict[str, Any]) -> None:
        if payload["operation_id"] in sent:
            finalized.set()

    alice.on("send:finalized", on_finalized)
    fund_unit(alice, url, 21, "usd")  # the watcher mints it once the quote is paid
    assert unit_balance(alice, url, "usd") == (21, 0, 0)
    op = alice.send.prepare_send(url, 21, unit="usd")
    sent.append(op.id)
    op, token = alice.send.execute_prepared_send(op.id)
    assert unit_balance(alice, url, "usd") == (0, 0, 21)
    bob.receive(token)
    assert finalized.wait(20), "the watcher never saw the usd token claimed"
    assert unit_balance(alice, url, "usd") == (0, 0, 0)
    assert unit_balance(bob, url, "usd") == (21 - token_fee(token, usd_mint.input_fee_ppk),
                                             0, 0)


def test_websocket_commands_of_every_unit() -> None:
    info = MintInfo.from_wire({"nuts": {"17": {"supported": [
        {"method": "bolt11", "unit": "usd", "commands": ["bolt11_mint_quote"]},
        {"method": "bolt11", "unit": "sat", "commands": ["proof_state"]}]}}})
    assert info.websocket_commands("usd") == {"bolt11_mint_quote"}
    assert info.websocket_commands("sat") == {"proof_state"}
    assert info.websocket_commands(None) == {"bolt11_mint_quote", "proof_state"}


def test_the_audit_reports_each_unit_of_a_mint(wallet: WalletFactory,
                                               usd_mint: DevMint) -> None:
    url = normalize_mint_url(usd_mint.url)
    alice = wallet("alice", url)
    fund_unit(alice, url, 300, "sat")
    fund_unit(alice, url, 70, "usd")
    report = alice.audit(url)
    rows = {(m.unit, m.wallet_amount, m.confirmed_amount, m.difference_count)
            for m in report.mints}
    assert rows == {("sat", 300, 300, 0), ("usd", 70, 70, 0)}
    assert report.difference_count == 0
