"""``coco serve --exposure URL=LIMIT --sweep-to URL``: the daemon sweeps a mint's excess."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import DaemonProcess, Wallet, run_coco
from click.testing import CliRunner

from cli import main
from coco_actors.mint_client import normalize_mint_url
from devtools.devmint import DevMint

LIMIT = 300


def test_the_daemon_sweeps_the_excess(daemons: Callable[..., DaemonProcess],
                                      mint_fee0: DevMint, mint_fee100: DevMint) -> None:
    src, dst = normalize_mint_url(mint_fee100.url), normalize_mint_url(mint_fee0.url)
    daemon = daemons("w", "--exposure", f"{src}={LIMIT}", "--sweep-to", dst)
    assert f"exposure limits on: {src} <= {LIMIT}; excess goes to {dst}" in daemon.log
    w = Wallet(daemon.data_dir, daemon)
    w.cli("mint", "add", src)
    w.cli("mint", "add", dst)
    w.fund(src, 1000)  # nothing else is asked: the daemon's Sweeper acts on its own

    event = w.wait_event("transfer:finalized", None, timeout=60)
    history = w.json("history")
    transfers = [h for h in history if h["type"] == "transfer"]
    assert len(transfers) == 1
    t = transfers[0]
    assert t["operation_id"] == event["operation_id"]
    assert (t["state"], t["mint_url"], t["to_mint_url"], t["amount"], t["received"]) == (
        "completed", src, dst, 1000 - LIMIT, 1000 - LIMIT)
    fees = t["fee"] + t["fee_paid"]
    assert w.balance(src)["spendable"] == LIMIT - fees
    assert LIMIT - fees <= w.balance(src)["spendable"] <= LIMIT
    assert w.balance(dst) == {"spendable": 1000 - LIMIT, "reserved": 0, "pending": 0,
                              "total": 1000 - LIMIT}
    assert f"sweeper: {src} holds 1000 spendable, over its limit {LIMIT}" in daemon.log


def test_serve_refuses_a_malformed_exposure_flag(short_tmp: Path) -> None:
    proc = run_coco("serve", "--data-dir", str(short_tmp / "w"), "--exposure", "no-limit")
    assert proc.returncode == 2
    assert "is not URL=LIMIT" in proc.stderr
    proc = run_coco("serve", "--data-dir", str(short_tmp / "w"),
                    "--exposure", "http://127.0.0.1:1=lots")
    assert proc.returncode == 2
    assert "not a whole number of sats" in proc.stderr
    assert not (short_tmp / "w").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--exposure", "http://127.0.0.1:1=0", "--sweep-to", "http://127.0.0.1:2"],
     "must be a positive integer number of sats"),
    (["--exposure", "http://127.0.0.1:1=100"], "exposure limits need sweep_to"),
    (["--sweep-to", "http://127.0.0.1:2"], "non-empty mapping"),
    (["--exposure", "http://127.0.0.1:1=100", "--sweep-to", "http://127.0.0.1:1"],
     "has an exposure limit itself"),
], ids=["zero", "no-sweep-to", "no-limits", "sweep-to-limited"])
def test_serve_refuses_a_bad_policy(short_tmp: Path, flags: list[str], message: str) -> None:
    data_dir = short_tmp / "w"
    init = CliRunner().invoke(main, ["init", "--data-dir", str(data_dir)])
    assert init.exit_code == 0, init.output
    proc = run_coco("serve", "--data-dir", str(data_dir), *flags)
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (data_dir / "control.sock").exists()
