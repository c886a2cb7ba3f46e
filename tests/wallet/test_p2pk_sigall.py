"""Locked receives the wallet's own send never makes, against a real mint, fees 0 and 100 ppk.

Our send only writes ``SIG_INPUTS`` locks to one key set per token, so the
tokens here are built with raw protocol calls: proofs are minted, then swapped
into outputs whose secrets are P2PK secrets (``SIG_ALL``, multisig, or a
different key per proof). Nutshell enforces ``SIG_ALL`` itself; the raw swaps
below show that it does, so a completed receive means the wallet signed the
aggregated message the mint checks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest
from coincurve import PrivateKey

from coco_actors import Coco, LockedTokenError
from coco_actors.crypto.nut11 import (
    SigFlag,
    p2pk_secret,
    schnorr_sign,
    schnorr_verify,
    sig_all_message,
    witness_json,
    witness_signatures,
)
from coco_actors.crypto.outputs import make_outputs, random_outputs, unblind_signatures
from coco_actors.errors import MintRejectedError
from coco_actors.mint_client import MintClient, normalize_mint_url
from coco_actors.tokens import Token, encode_v4
from coco_actors.wire import BlindedMessage, Proof, split_amount
from devtools.devmint import DevMint
from tests.integration.protocol_helpers import mint_proofs
from tests.support.proxy import FaultProxy

from .helpers import WalletFactory, balance_of, fee_of, snapshot

#: What each locked token is made of: several proofs, so SIG_ALL aggregates.
PARTS = (32, 16, 8, 8, 2)


@pytest.fixture
def proxied(mint: DevMint) -> Iterator[FaultProxy]:
    proxy = FaultProxy(mint.url)
    yield proxy
    proxy.stop()


@pytest.fixture
def raw(mint: DevMint) -> Iterator[MintClient]:
    """A client straight to the mint (not through the proxy): the test's own requests."""
    with MintClient(mint.url) as client:
        yield client


def _locked_proofs(client: MintClient, secrets: Sequence[str],
                   parts: Sequence[int] = PARTS) -> list[Proof]:
    """Proofs of ``parts`` whose secrets are ``secrets``: minted plain, then swapped raw
    into outputs carrying those secrets (the change, plain, stays with the test)."""
    assert len(secrets) == len(parts)
    minted, keyset = mint_proofs(client, 200)
    fee = fee_of(keyset.input_fee_ppk, len(minted))
    change = 200 - sum(parts) - fee
    locked = make_outputs(parts, keyset.id,
                          [(s, PrivateKey().secret.hex()) for s in secrets])
    rest = random_outputs(split_amount(change), keyset.id)
    outputs = locked + rest
    sigs = client.swap(minted, [o.blinded for o in outputs])
    proofs = unblind_signatures(outputs, sigs, keyset)
    assert [p.secret for p in proofs[:len(parts)]] == list(secrets)
    return proofs[:len(parts)]


def _token(url: str, proofs: Sequence[Proof]) -> str:
    return encode_v4(Token(mint=url, proofs=tuple(proofs)))


def _net_outputs(proofs: Sequence[Proof], ppk: int) -> list[BlindedMessage]:
    """Fresh plain outputs worth what a swap of ``proofs`` leaves after the fee."""
    net = sum(p.amount for p in proofs) - fee_of(ppk, len(proofs))
    keyset_id = proofs[0].keyset_id
    return [o.blinded for o in random_outputs(split_amount(net), keyset_id)]


def _refused(client: MintClient, inputs: Sequence[Proof],
             outputs: Sequence[BlindedMessage]) -> MintRejectedError:
    with pytest.raises(MintRejectedError) as info:
        client.swap(list(inputs), list(outputs))
    return info.value


def _receive(coco: Coco, url: str, token: str, amount: int, n_proofs: int, ppk: int) -> None:
    """B receives ``token``: exactly its amount minus the receive fee, to the sat."""
    before = balance_of(coco, url)
    received = coco.receive(token)
    fee = fee_of(ppk, n_proofs)
    assert received.state == "completed"
    assert received.amount == amount - fee
    assert balance_of(coco, url) == (before[0] + amount - fee, before[1], before[2])


def test_sig_all_receive_and_the_mint_checks_it(wallet: WalletFactory, mint: DevMint,
                                               proxied: FaultProxy, raw: MintClient) -> None:
    url = normalize_mint_url(proxied.url)
    ppk = mint.input_fee_ppk
    bob = wallet("bob", url)
    key = bob.keys.new()
    secrets = [p2pk_secret([key], sigflag=SigFlag.SIG_ALL) for _ in PARTS]
    assert len(set(secrets)) == len(PARTS)  # one nonce each, the same data and tags
    proofs = _locked_proofs(raw, secrets)
    private = bob._keyring.private_key(key)
    assert private is not None

    # the wallet's own SIG_ALL signature is what the mint checks: alter any part of it
    outputs = _net_outputs(proofs, ppk)
    signed = bob._keyring.sign_inputs(proofs, outputs, int(time.time()))
    assert [p.witness for p in signed[1:]] == [None] * (len(PARTS) - 1)  # first input only
    (sig,) = witness_signatures(signed[0].witness)
    message = sig_all_message([(p.secret, p.C) for p in proofs],
                              [(o.amount, o.B_) for o in outputs]).encode()

    bad_sig = sig[:-2] + ("00" if sig[-2:] != "00" else "11")
    altered = [replace(signed[0], witness=witness_json([bad_sig])), *signed[1:]]
    err = _refused(raw, altered, outputs)
    assert "signature" in err.detail

    # the signature covers the outputs: the same witness over other outputs is refused
    err = _refused(raw, signed, _net_outputs(proofs, ppk))
    assert "signature" in err.detail

    # ... and every input: dropping one (a smaller swap) is refused too
    fewer = signed[:-1]
    err = _refused(raw, fewer, _net_outputs(fewer, ppk))
    assert "signature" in err.detail

    # SIG_INPUTS signatures (each proof signs its own secret) do not unlock SIG_ALL
    per_input = [replace(p, witness=witness_json([schnorr_sign(private, p.secret.encode())]))
                 for p in proofs]
    err = _refused(raw, per_input, outputs)
    assert "signature" in err.detail

    # the signature itself was right: it verifies the aggregated message
    assert schnorr_verify(key, message, sig)

    # every refusal left the token spendable: the wallet receives all of it
    token = _token(url, proofs)
    _receive(bob, url, token, sum(PARTS), len(PARTS), ppk)
    assert [h.type for h in bob.history.get_history()] == ["receive"]


def test_sig_all_multisig_two_of_two_held(wallet: WalletFactory, mint: DevMint,
                                          proxied: FaultProxy, raw: MintClient) -> None:
    url = normalize_mint_url(proxied.url)
    ppk = mint.input_fee_ppk
    bob = wallet("bob", url)
    k1, k2 = bob.keys.new(), bob.keys.new()
    secrets = [p2pk_secret([k1, k2], n_sigs=2, sigflag=SigFlag.SIG_ALL) for _ in PARTS]
    proofs = _locked_proofs(raw, secrets)

    # one signature of the two is refused by the mint
    outputs = _net_outputs(proofs, ppk)
    signed = bob._keyring.sign_inputs(proofs, outputs, int(time.time()))
    sigs = witness_signatures(signed[0].witness)
    assert len(sigs) == 2
    half = [replace(signed[0], witness=witness_json(sigs[:1])), *signed[1:]]
    err = _refused(raw, half, outputs)
    assert "signature" in err.detail

    _receive(bob, url, _token(url, proofs), sum(PARTS), len(PARTS), ppk)


def test_sig_all_with_one_key_of_two_is_refused(wallet: WalletFactory, mint: DevMint,
                                                proxied: FaultProxy,
                                                raw: MintClient) -> None:
    url = normalize_mint_url(proxied.url)
    ppk = mint.input_fee_ppk
    bob, carol = wallet("bob", url), wallet("carol", url)
    k_bob, k_carol = bob.keys.new(), carol.keys.new()
    secrets = [p2pk_secret([k_bob, k_carol], n_sigs=2, sigflag=SigFlag.SIG_ALL)
               for _ in PARTS]
    proofs = _locked_proofs(raw, secrets)
    token = _token(url, proofs)

    for who in (bob, carol):
        before, requests = snapshot(who), len(proxied.exchanges)
        with pytest.raises(LockedTokenError, match="needs 2 signatures"):
            who.receive(token)
        assert snapshot(who) == before
        assert len(proxied.exchanges) == requests
        assert balance_of(who, url) == (0, 0, 0)

    # the refusals spent nothing: signed by both holders, the mint takes the token
    outputs = _net_outputs(proofs, ppk)
    message = sig_all_message([(p.secret, p.C) for p in proofs],
                              [(o.amount, o.B_) for o in outputs]).encode()
    keys = [bob._keyring.private_key(k_bob), carol._keyring.private_key(k_carol)]
    assert all(k is not None for k in keys)
    witness = witness_json([schnorr_sign(k, message) for k in keys if k is not None])
    sigs = raw.swap([replace(proofs[0], witness=witness), *proofs[1:]], outputs)
    assert sum(s.amount for s in sigs) == sum(PARTS) - fee_of(ppk, len(PARTS))


@pytest.mark.parametrize("mix", ["keys differ", "SIG_INPUTS first", "SIG_INPUTS last",
                                 "plain last"])
def test_sig_all_with_different_conditions_is_refused(wallet: WalletFactory, mint: DevMint,
                                                      proxied: FaultProxy, raw: MintClient,
                                                      mix: str) -> None:
    """SIG_ALL inputs must all share kind, data and tags, so every one is SIG_ALL
    (NUT-11); the mint would refuse the swap, so the wallet refuses before any request."""
    url = normalize_mint_url(proxied.url)
    bob = wallet("bob", url)
    key = bob.keys.new()
    if mix == "keys differ":
        secrets = [p2pk_secret([bob.keys.new()], sigflag=SigFlag.SIG_ALL) for _ in PARTS]
    else:
        secrets = [p2pk_secret([key], sigflag=SigFlag.SIG_ALL) for _ in PARTS[1:]]
        # the same key with SIG_INPUTS, or no condition at all
        plain_lock = os.urandom(32).hex() if mix == "plain last" else p2pk_secret([key])
        secrets = (
            [plain_lock, *secrets] if mix == "SIG_INPUTS first" else [*secrets, plain_lock])
    token = _token(url, _locked_proofs(raw, secrets))
    before, requests = snapshot(bob), len(proxied.exchanges)
    with pytest.raises(LockedTokenError, match="cannot be spent together"):
        bob.receive(token)
    assert snapshot(bob) == before
    assert len(proxied.exchanges) == requests
    assert balance_of(bob, url) == (0, 0, 0)


def test_sig_inputs_each_proof_its_own_key(wallet: WalletFactory, mint: DevMint,
                                           proxied: FaultProxy, raw: MintClient) -> None:
    url = normalize_mint_url(proxied.url)
    ppk = mint.input_fee_ppk
    bob = wallet("bob", url)
    keys = [bob.keys.new() for _ in PARTS]
    secrets = [p2pk_secret([k]) for k in keys]
    proofs = _locked_proofs(raw, secrets)

    # each proof needs its own key's signature: the first key's on all is refused
    first = bob._keyring.private_key(keys[0])
    assert first is not None
    one_key = [replace(p, witness=witness_json([schnorr_sign(first, p.secret.encode())]))
               for p in proofs]
    err = _refused(raw, one_key, _net_outputs(proofs, ppk))
    assert "signature" in err.detail

    _receive(bob, url, _token(url, proofs), sum(PARTS), len(PARTS), ppk)
    assert [k.public for k in bob.keys.list()] == keys
