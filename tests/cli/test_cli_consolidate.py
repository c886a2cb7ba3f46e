"""``coco consolidate`` and ``POST /consolidate`` through a real daemon and the real mint
(fees 0 and 100): 60 proofs of 1 sat (NUT-13 outputs of the wallet's seed, minted at the
mint and found by ``coco mint add --restore``) become the fewest, the fee computed here."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from cli_support import DaemonProcess, Wallet
from click.testing import Result

from coco_actors.crypto.keysets import fee_for
from coco_actors.crypto.nut13 import Nut13Deriver
from coco_actors.crypto.outputs import make_outputs
from coco_actors.mint_client import MintClient, normalize_mint_url
from coco_actors.store import Store
from devtools.devmint import DevMint

N = 60


def _dust(data_dir: Path, mint_url: str, n: int) -> None:
    """Mint ``n`` 1-sat outputs of the wallet's own seed (counters 0..n-1) at the mint."""
    store = Store(data_dir)
    try:
        mnemonic = store.get_setting("mnemonic")
    finally:
        store.close()
    assert mnemonic is not None
    deriver = Nut13Deriver(mnemonic)
    with MintClient(mint_url) as client:
        keyset = next(k for k in client.get_keys() if k.active and k.unit == "sat")
        outputs = make_outputs([1] * n, keyset.id,
                               [deriver.derive(keyset.id, i) for i in range(n)])
        client.mint(client.create_mint_quote(n).quote, [o.blinded for o in outputs])


def test_coco_consolidate(daemons: Callable[..., DaemonProcess], mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    daemon = daemons("w", start=False)
    _dust(daemon.data_dir, url, N)
    daemon.start()
    w = Wallet(daemon.data_dir, daemon)
    w.cli("mint", "add", url, "--restore")
    assert w.balance(url)["spendable"] == N

    fee = fee_for([mint.input_fee_ppk] * N)          # 0, or 60 * 100 / 1000 -> 6
    [first] = json.loads(w.cli("consolidate", "--mint", url, "--max-fee-fraction", "0.01",
                               "--json").stdout)
    if fee:  # 6 of 60 is above 0.01: skipped, nothing changed
        assert (first["skipped"], first["operation"]) == ("fee_too_high", None)
        assert w.balance(url)["spendable"] == N
        [done] = w.json("consolidate", "--idempotency-key", "c1", "--mint", url)
        [repeat] = w.json("consolidate", "--idempotency-key", "c1", "--mint", url)
        assert repeat["operation"]["id"] == done["operation"]["id"]
    else:    # free: never too expensive
        done = first
    left = N - fee
    assert done["operation"]["state"] == "completed" and done["operation"]["type"] == (
        "consolidate")
    assert (done["inputs"], done["outputs"], done["fee"], done["amount"]) == (
        N, bin(left).count("1"), fee, left)
    assert w.balance(url) == {"spendable": left, "reserved": 0, "pending": 0, "total": left}

    again = w.cli("consolidate").stdout              # every mint: nothing to gain now
    assert again.strip() == f"{url}: skipped (nothing to gain): {bin(left).count('1')} proofs," \
                            f" fee {fee_for([mint.input_fee_ppk] * bin(left).count('1'))} sat"
    history = w.json("history")
    assert [h["type"] for h in history].count("consolidate") == 1


def test_serve_consolidate_above_runs_in_the_background(
        daemons: Callable[..., DaemonProcess], mint_fee0: DevMint,
        run_cli: Callable[..., Result]) -> None:
    """``coco serve --consolidate-above 50``: a mint holding more than 50 proofs is
    consolidated by the daemon on its own, woken by the next finalized operation."""
    bad = run_cli("serve", "--consolidate-above", "0", "--data-dir", "/nonexistent")
    assert bad.exit_code == 2 and "--consolidate-above" in bad.output
    url = normalize_mint_url(mint_fee0.url)
    daemon = daemons("w", "--consolidate-above", "50", "--consolidate-inactive", "off",
                     start=False)
    _dust(daemon.data_dir, url, N)
    daemon.start()
    w = Wallet(daemon.data_dir, daemon)
    w.cli("mint", "add", url, "--restore")          # 60 proofs; a restore wakes nothing
    assert w.balance(url)["spendable"] == N
    w.fund(url, 4)                                   # mint:finalized wakes the policy
    event = w.wait_event("consolidate:finalized", None)
    assert w.balance(url)["spendable"] == N + 4
    [entry] = [h for h in w.json("history") if h["type"] == "consolidate"]
    assert entry["operation_id"] == event["operation_id"]
    assert (entry["state"], entry["amount"], entry["fee"]) == ("completed", N + 4, 0)
    [again] = w.json("consolidate", "--mint", url)
    assert (again["skipped"], again["inputs"]) == ("nothing_to_gain", 1)   # 64: one proof
