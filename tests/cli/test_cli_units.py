"""``--unit`` through a real daemon and a real mint serving usd as well as sat (issue 13):
invoice, send, receive and pay in usd, balances per unit exact after every step."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from cli_support import Wallet, pairs_of

from coco_actors.crypto.keysets import fee_for
from coco_actors.mint_client import normalize_mint_url
from coco_actors.tokens import decode
from devtools.devmint import USD_ENV, DevMint
from devtools.invoices import make_invoice

pytestmark = pytest.mark.mint



def _fee(token: str, ppk: int) -> int:
    return fee_for(ppk for _ in decode(token).proofs)


@pytest.mark.parametrize("ppk", [0, 100], ids=["fee0", "fee100"])
def test_invoice_send_receive_pay_with_unit(wallet: Callable[..., Wallet],
                                            make_mint: Callable[..., DevMint], ppk: int) -> None:
    mint = make_mint(input_fee_ppk=ppk, extra_env=USD_ENV).start()
    url = normalize_mint_url(mint.url)
    alice, bob = wallet("alice", url), wallet("bob", url)

    def usd(w: Wallet) -> dict[str, int]:
        return w.json("balance", "--mint", url, "--unit", "usd")[url]  # type: ignore[no-any-return]

    minted = alice.json("invoice", "500", "--mint", url, "--unit", "usd")
    assert (minted["unit"], minted["operation"]["unit"]) == ("usd", "usd")
    assert minted["balance"] == {url: {"spendable": 500, "reserved": 0, "pending": 0,
                                       "total": 500}}
    alice.fund(url, 300)
    assert alice.balance(url) == {"spendable": 300, "reserved": 0, "pending": 0, "total": 300}
    assert usd(alice)["spendable"] == 500
    table = alice.cli("balance").stdout  # the sat table, then one per other unit
    assert re.search(rf"^{re.escape(url)}\s+300\s+0\s+0\s+300$", table, re.M)
    assert re.search(rf"^in usd:\nMINT.*\n{re.escape(url)}\s+500\s+0\s+0\s+500$", table, re.M)
    with alice.client() as client:
        units = client.get("/balance/units")
    assert units["totals"]["usd"]["total"] == 500 and units["totals"]["sat"]["total"] == 300

    sent = alice.cli("send", "100", "--mint", url, "--unit", "usd", "--yes")
    token = sent.stdout.strip()
    assert decode(token).unit == "usd" and decode(token).amount == 100
    shown = pairs_of(sent.stderr)
    assert shown["amount"] == "100 usd"
    fee = int(shown["fee"].split()[0])
    assert usd(alice) == {"spendable": 500 - 100 - fee, "reserved": 0, "pending": 100,
                          "total": 500 - fee}
    assert alice.balance(url)["total"] == 300

    got = bob.cli("receive", token).stdout
    bob_fee = _fee(token, ppk)
    assert got.startswith(f"received {100 - bob_fee} usd from {url}")
    assert usd(bob)["spendable"] == 100 - bob_fee and bob.balance(url)["total"] == 0

    before = usd(alice)["spendable"]
    paid = json.loads(alice.cli("pay", make_invoice(500), "--mint", url, "--unit", "usd",
                                "--yes", "--json").stdout)
    assert (paid["state"], paid["unit"]) == ("completed", "usd")
    after = usd(alice)
    assert paid["amount"] + paid["fee_paid"] + paid["fee"] == before - after["spendable"]
    assert alice.balance(url)["total"] == 300

    refused = alice.cli("send", "1", "--mint", url, "--unit", "eur", "--yes", code=1)
    assert "no active keyset in 'eur'" in refused.stderr
    assert usd(alice)["spendable"] == after["spendable"]
