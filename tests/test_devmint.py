"""The development mint harness itself: Nutshell starts, answers, and its wallet interoperates;
its FakeWallet settings reach the mint, and a restart with new ones decides a payment."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from coco_actors.crypto.keysets import verify_keyset_id
from coco_actors.mint_client import MintClient
from coco_actors.wire import Keyset, MeltQuoteState
from devtools.devmint import (
    FAILING,
    NUTSHELL_VERSION,
    PENDING,
    SETTLED,
    DevMint,
    DevMintError,
    FakeWalletConfig,
    run_nutshell_wallet,
)
from devtools.invoices import make_invoice
from tests.integration.protocol_helpers import mint_proofs


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


def test_fakewallet_settings_reach_the_environment(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    default = DevMint(tmp_path, input_fee_ppk=0).environment(bin_dir)
    assert default["FAKEWALLET_PAY_INVOICE_STATE"] == "SETTLED"
    assert default["FAKEWALLET_PAYMENT_STATE"] == "SETTLED"
    assert float(default["FAKEWALLET_DELAY_INCOMING_PAYMENT"]) == 0.2
    assert float(default["FAKEWALLET_DELAY_OUTGOING_PAYMENT"]) == 0.0

    slow = FakeWalletConfig(pay_invoice_state="PENDING", payment_state="FAILED",
                            incoming_delay=600, outgoing_delay=1.5)
    env = DevMint(tmp_path, input_fee_ppk=0, fakewallet=slow,
                  extra_env={"FAKEWALLET_PAYMENT_STATE": "ERROR"}).environment(bin_dir)
    assert env["FAKEWALLET_PAY_INVOICE_STATE"] == "PENDING"
    assert env["FAKEWALLET_PAYMENT_STATE"] == "ERROR"  # extra_env has the last word
    assert float(env["FAKEWALLET_DELAY_INCOMING_PAYMENT"]) == 600
    assert float(env["FAKEWALLET_DELAY_OUTGOING_PAYMENT"]) == 1.5
    assert PENDING.environment()["FAKEWALLET_PAYMENT_STATE"] == "PENDING"
    assert FAILING.environment()["FAKEWALLET_PAY_INVOICE_STATE"] == "FAILED"


def test_fakewallet_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="pay_invoice_state"):
        FakeWalletConfig(pay_invoice_state="PAID")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        FakeWalletConfig(incoming_delay=-1)


def test_restart_with_new_settings_decides_a_pending_payment(
    make_mint: Callable[..., DevMint],
) -> None:
    mint = make_mint(input_fee_ppk=0, fakewallet=PENDING).start()
    url = mint.url
    with MintClient(url) as client:
        proofs, _ = mint_proofs(client, 64)
        quote = client.create_melt_quote(make_invoice(32))
        assert client.melt(quote.quote, proofs).state == MeltQuoteState.PENDING
    assert mint.restart(SETTLED) is mint
    assert mint.url == url and mint.fakewallet == SETTLED and mint.is_running
    with MintClient(url) as client:
        assert client.get_melt_quote(quote.quote).state == MeltQuoteState.PAID


def test_rotate_keyset_through_the_management_rpc(make_mint: Callable[..., DevMint]) -> None:
    """``rotate_keyset`` makes a new active keyset (with its fee and expiry) and leaves the old
    one listed inactive, also after a restart; the new id verifies from its keys."""
    mint = make_mint(input_fee_ppk=0, rpc=True).start()
    assert mint.environment(Path("/bin"))["MINT_RPC_SERVER_PORT"] == str(mint.rpc_port)
    (old,) = mint.active_keyset_ids()
    expiry = int(time.time()) + 30 * 86400
    mint.rotate_keyset("sat", 100, final_expiry=expiry)
    (new,) = mint.active_keyset_ids()
    assert new != old
    listed = {k["id"]: k for k in _get(mint, "/v1/keysets")["keysets"]}
    assert listed[old]["active"] is False
    assert (listed[new]["input_fee_ppk"], listed[new]["final_expiry"]) == (100, expiry)
    keys = _get(mint, f"/v1/keys/{new}")["keysets"][0]
    verify_keyset_id(Keyset(id=new, unit="sat", keys=keys["keys"], input_fee_ppk=100,
                            final_expiry=expiry))
    mint.restart()
    assert mint.active_keyset_ids() == {new}


def test_rotate_keyset_needs_the_rpc(make_mint: Callable[..., DevMint]) -> None:
    mint = make_mint(input_fee_ppk=0)
    assert mint.rpc_port is None
    assert "MINT_RPC_SERVER_ENABLE" not in mint.environment(Path("/bin"))
    with pytest.raises(DevMintError, match="rpc=True"):
        mint.rotate_keyset(final_expiry=int(time.time()) + 3600)
