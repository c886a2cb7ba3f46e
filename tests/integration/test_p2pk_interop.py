"""Locked ecash (NUT-10/11 P2PK) both ways with two peer wallets, fees 0 and 100 ppk.

The peers:

- Nutshell 0.21's wallet, through ``devtools/devmint/nutshell_wallet.py`` in the mint's
  environment: its key is the one ``cashu lock p2pk`` prints (one per wallet, from its
  mnemonic), its locked send is the helper behind ``cashu send --lock P2PK:<pub>`` (which adds
  Nutshell's default locktime, now + 1 day, without refund keys), its receive the helper
  behind ``cashu receive`` (it signs inputs locked to its key).
- coco (TS), ``coco-cashu-core`` 1.1.2-rc.39 through ``tests/interop_ts/harness.mjs``: its
  key comes from coco-cashu-core's key ring (``keyring.generateKeyPair``) and its receive is
  coco-cashu-core's ``wallet.receive``, which signs P2PK inputs with that key ring
  (SIG_INPUTS, one key). coco-cashu-core has no locked send (``send.prepareSend`` takes no
  lock), so that one step is ``@cashu/cashu-ts`` 2.9.0, the library coco-cashu-core is built
  on: ``CashuWallet.swap(amount, proofs, {p2pk: {pubkey}})`` on the CashuWallet coco-cashu-core
  built for the mint, the proofs and the change kept in coco-cashu-core's proof repository.

For each peer: a token the peer locks to ``coco.keys.new()`` is received here, to the sat;
a token we lock to the peer's key (``prepare_send(..., p2pk=peer_key)``) is received by the
peer, to the sat, and refused by a fresh wallet of ours without that key before it makes a
single request (checked on a loopback proxy that records every request).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Protocol

import pytest

from coco_actors.errors import LockedTokenError
from coco_actors.mint_client import normalize_mint_url
from coco_actors.tokens import decode, encode_v4
from devtools.devmint import DevMint, run_nutshell_wallet
from devtools.ts_wallet import TsWallet, run_ts
from tests.support.proxy import FaultProxy
from tests.wallet.conftest import wallet  # noqa: F401  (the fixture, for our own wallets)
from tests.wallet.helpers import WalletFactory, balance_of, fee_of, fund, snapshot, token_fee


class Peer(Protocol):
    def pubkey(self) -> str: ...
    def send_locked(self, mint_url: str, amount: int, to: str) -> str: ...
    def receive(self, token: str) -> int: ...


class NutshellPeer:
    """Nutshell's wallet in its own database directory."""

    def __init__(self, db: Path, bin_dir: Path, mint_url: str) -> None:
        self.db, self.bin_dir, self.mint_url = db, bin_dir, mint_url

    def _run(self, args: list[str], db: Path | None = None) -> str:
        return run_nutshell_wallet(args, db_dir=db or self.db, bin_dir=self.bin_dir)

    def pubkey(self) -> str:
        out = json.loads(self._run(["lock", "--mint", self.mint_url]).strip().splitlines()[-1])
        assert out["lock"] == f"P2PK:{out['pubkey']}"
        return str(out["pubkey"])

    def send_locked(self, mint_url: str, amount: int, to: str) -> str:
        # a wallet of its own, so the receiving wallet's balance stays the received amount
        return self._run(["send", "--mint", mint_url, "--amount", str(amount),
                          "--lock", f"P2PK:{to}"], db=self.db.with_name(self.db.name + "-sender"))

    def receive(self, token: str) -> int:
        out = json.loads(self._run(["receive", token]).strip().splitlines()[-1])
        assert out["balance"] == out["received"]  # a fresh wallet: nothing but this token
        return int(out["received"])


class TsPeer:
    """coco (TS): one wallet that receives, another (funded) that sends."""

    def __init__(self, harness: Path, state: Path, input_fee_ppk: int) -> None:
        self.harness, self.input_fee_ppk = harness, input_fee_ppk
        self.receiver = TsWallet(harness, state)
        self.sender = TsWallet(harness, state.with_name(state.name + "-sender"))

    def pubkey(self) -> str:
        return self.receiver.pubkey()

    def send_locked(self, mint_url: str, amount: int, to: str) -> str:
        funded = self.sender.fund(mint_url, amount + 10)
        sent = run_ts(self.harness, {"cmd": "send", "state": str(self.sender.state_dir),
                                     "mint": mint_url, "amount": amount, "lock": to})
        inputs, fee = int(str(sent["inputs"])), int(str(sent["fee"]))
        assert inputs > 0 and fee == fee_of(self.input_fee_ppk, inputs)
        assert sent["balance"] == self.sender.balance(mint_url) == funded - amount - fee
        return str(sent["token"])

    def receive(self, token: str) -> int:
        received = self.receiver.receive(token)
        assert self.receiver.balance() == received
        return received


@pytest.fixture(params=["nutshell", "ts"])
def peer(request: pytest.FixtureRequest, mint: DevMint, tmp_path: Path) -> Peer:
    url = normalize_mint_url(mint.url)
    if request.param == "nutshell":
        return NutshellPeer(tmp_path / "nutshell", request.getfixturevalue("nutshell_bin"), url)
    return TsPeer(request.getfixturevalue("ts_harness"), tmp_path / "ts", mint.input_fee_ppk)


def _locked_to(token: str) -> set[str]:
    """The ``data`` key of every proof, all of which must be NUT-10 P2PK secrets."""
    keys = set()
    for proof in decode(token).proofs:
        kind, body = json.loads(proof.secret)
        assert kind == "P2PK"
        keys.add(body["data"])
    return keys


def test_a_token_the_peer_locks_to_our_key_is_received(
        wallet: WalletFactory, mint: DevMint, peer: Peer) -> None:  # noqa: F811
    url = normalize_mint_url(mint.url)
    ours = wallet("ours", url)
    key = ours.keys.new()

    token = peer.send_locked(url, 40, key)
    assert decode(token).amount == 40
    assert _locked_to(token) == {key}

    op = ours.receive(token)
    net = 40 - token_fee(token, mint.input_fee_ppk)
    assert (op.state, op.amount) == ("completed", net)
    assert balance_of(ours, url) == (net, 0, 0)


def test_a_token_we_lock_to_the_peer_is_received_by_it_and_by_no_one_else(
        wallet: WalletFactory, mint: DevMint, peer: Peer) -> None:  # noqa: F811
    url = normalize_mint_url(mint.url)
    ours = wallet("ours", url)
    fund(ours, url, 100)
    their_key = peer.pubkey()

    prepared = ours.send.prepare_send(url, 30, p2pk=their_key)
    _, token = ours.send.execute_prepared_send(prepared.id)
    assert decode(token).amount == 30
    assert _locked_to(token) == {their_key}
    assert balance_of(ours, url) == (100 - 30 - prepared.fee, 0, 30)

    # A fresh wallet of ours, which knows the mint (through a recording proxy) but not the
    # key: refused before any request, nothing open or completed left behind.
    proxy = FaultProxy(url)
    try:
        thief = wallet("thief", proxy.url)
        before, seen = snapshot(thief), len(proxy.seen())
        stolen = encode_v4(dataclasses.replace(decode(token), mint=proxy.url))
        with pytest.raises(LockedTokenError):
            thief.receive(stolen)
        assert proxy.seen()[seen:] == []
        balances, pending, history = snapshot(thief)
        assert (balances, pending) == before[:2]
        assert all(state == "rolled_back" for *_, state in history[len(before[2]):])
    finally:
        proxy.stop()

    net = 30 - token_fee(token, mint.input_fee_ppk)
    assert peer.receive(token) == net
    assert [o.state for o in ours.send.check_pending()] == ["completed"]
    assert balance_of(ours, url) == (100 - 30 - prepared.fee, 0, 0)
