"""Interop with coco (TS): ``coco-cashu-core`` 1.1.2-rc.39 over ``@cashu/cashu-ts`` 2.9.0.

The peer runs in Node (``tests/interop_ts/harness.mjs``, through ``devtools.ts_wallet``);
every step of it here uses coco-cashu-core's own wallet API: ``quotes.createMintQuote`` /
``redeemMintQuote`` to fund, ``send.prepareSend`` / ``executePreparedSend`` to send,
``wallet.receive`` to receive, ``wallet.getBalances``. Unlocked tokens both ways, balances to
the sat on both sides, fees 0 and 100 ppk. (The locked ones are in ``test_p2pk_interop.py``.)
"""

from __future__ import annotations

from pathlib import Path

from coco_actors.mint_client import normalize_mint_url
from coco_actors.tokens import decode
from devtools.devmint import DevMint
from devtools.ts_wallet import TsWallet, run_ts
from tests.wallet.conftest import wallet  # noqa: F401  (the fixture, for our own wallets)
from tests.wallet.helpers import WalletFactory, balance_of, fee_of, fund, token_fee


def test_a_ts_token_is_received_here(wallet: WalletFactory, mint: DevMint,  # noqa: F811
                                     ts_harness: Path, tmp_path: Path) -> None:
    url = normalize_mint_url(mint.url)
    peer = TsWallet(ts_harness, tmp_path / "ts")
    assert peer.fund(url, 100) == 100

    sent = run_ts(ts_harness, {"cmd": "send", "state": str(peer.state_dir), "mint": url,
                               "amount": 40})
    token, fee, inputs = str(sent["token"]), sent["fee"], sent["inputs"]
    assert fee == fee_of(mint.input_fee_ppk, int(str(inputs)))
    assert sent["balance"] == peer.balance(url) == 100 - 40 - int(str(fee))
    assert decode(token).amount == 40

    ours = wallet("ours", url)
    op = ours.receive(token)
    net = 40 - token_fee(token, mint.input_fee_ppk)
    assert (op.state, op.amount) == ("completed", net)
    assert balance_of(ours, url) == (net, 0, 0)


def test_our_token_is_received_by_ts(wallet: WalletFactory, mint: DevMint,  # noqa: F811
                                     ts_harness: Path, tmp_path: Path) -> None:
    url = normalize_mint_url(mint.url)
    ours = wallet("ours", url)
    fund(ours, url, 100)
    prepared = ours.send.prepare_send(url, 30)
    _, token = ours.send.execute_prepared_send(prepared.id)
    assert balance_of(ours, url) == (100 - 30 - prepared.fee, 0, 30)

    peer = TsWallet(ts_harness, tmp_path / "ts")
    net = 30 - token_fee(token, mint.input_fee_ppk)
    assert peer.receive(token) == net
    assert peer.balance(url) == net

    assert [o.state for o in ours.send.check_pending()] == ["completed"]
    assert balance_of(ours, url) == (100 - 30 - prepared.fee, 0, 0)
