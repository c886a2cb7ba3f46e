"""The development mint harness itself: Nutshell starts, answers, and its wallet interoperates."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from devtools.devmint import NUTSHELL_VERSION, DevMint, DevMintError, run_nutshell_wallet


def _get(mint: DevMint, path: str) -> dict:  # type: ignore[type-arg]
    response = httpx.get(f"{mint.url}{path}", timeout=5.0)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def _active_sat_fees(mint: DevMint) -> list[int]:
    keysets = _get(mint, "/v1/keysets")["keysets"]
    return [k["input_fee_ppk"] for k in keysets if k["active"] and k["unit"] == "sat"]


def test_mint_answers_info(mint: DevMint) -> None:
    info = _get(mint, "/v1/info")
    assert info["name"] == "Cashu mint"
    assert info["version"] == f"Nutshell/{NUTSHELL_VERSION}"
    assert mint.url.startswith("http://127.0.0.1:")


def test_mints_report_their_input_fee(mint_fee0: DevMint, mint_fee100: DevMint) -> None:
    assert _active_sat_fees(mint_fee0) == [0]
    assert _active_sat_fees(mint_fee100) == [100]


def test_nutshell_wallet_sends_and_receives(
    mint_fee0: DevMint, nutshell_bin: Path, tmp_path: Path
) -> None:
    token = run_nutshell_wallet(
        ["send", "--mint", mint_fee0.url, "--amount", "64"],
        db_dir=tmp_path / "sender",
        bin_dir=nutshell_bin,
    ).strip()
    assert token.startswith("cashuB")
    assert "\n" not in token

    out = run_nutshell_wallet(
        ["receive", "--mint", mint_fee0.url, token],
        db_dir=tmp_path / "receiver",
        bin_dir=nutshell_bin,
    )
    assert json.loads(out) == {"received": 64, "balance": 64}

    with pytest.raises(DevMintError, match="11001"):  # already spent
        run_nutshell_wallet(["receive", token], db_dir=tmp_path / "third", bin_dir=nutshell_bin)


def test_restart_keeps_url_and_keysets(make_mint: Callable[..., DevMint]) -> None:
    mint = make_mint(input_fee_ppk=0).start()
    url, keysets = mint.url, _get(mint, "/v1/keysets")
    mint.stop()
    assert not mint.is_running
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/v1/info", timeout=2.0)
    mint.start()
    assert mint.url == url
    assert _get(mint, "/v1/keysets") == keysets


def test_failed_start_reports_the_log(make_mint: Callable[..., DevMint]) -> None:
    mint = make_mint(extra_env={"MINT_BACKEND_BOLT11_SAT": "NoSuchWallet"})
    with pytest.raises(DevMintError, match="NoSuchWallet"):
        mint.start()
    assert not mint.is_running


def test_a_test_not_marked_mint_cannot_start_one(tmp_path: Path) -> None:
    """The guard in conftest.py: this test is not marked ``mint``, so starting a mint fails
    it before any process is spawned (the bin directory does not even exist)."""
    mint = DevMint(tmp_path / "mint", input_fee_ppk=0, nutshell_bin=tmp_path / "no-such-bin")
    with pytest.raises(pytest.fail.Exception, match="is not marked 'mint'"):
        mint.start()
    assert not mint.is_running
    assert not (tmp_path / "mint").exists()
