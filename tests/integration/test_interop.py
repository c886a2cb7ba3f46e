"""Interop with Nutshell's own wallet code (run in the mint's environment).

Our V4 tokens must be accepted by Nutshell, and Nutshell's tokens (V4 and V3,
with and without DLEQ) must decode here and swap at the mint.
"""

from __future__ import annotations

import json

import pytest

from coco_actors.crypto.dleq import verify_proofs_dleq
from coco_actors.crypto.keysets import fee_for
from coco_actors.crypto.outputs import random_outputs, unblind_signatures
from coco_actors.mint_client import MintClient
from coco_actors.tokens import Token, decode, encode_v4, resolve_keyset_ids
from coco_actors.wire import split_amount
from devtools.devmint import run_nutshell_wallet

from .protocol_helpers import active_keyset, mint_proofs


def test_our_token_is_received_by_nutshell(mint, nutshell_bin, tmp_path):
    with MintClient(mint.url) as client:
        proofs, keyset = mint_proofs(client, 50)
    text = encode_v4(Token(mint=mint.url, proofs=tuple(proofs), unit="sat"))
    out = run_nutshell_wallet(["receive", "--mint", mint.url, text],
                              db_dir=tmp_path / "nutshell", bin_dir=nutshell_bin)
    got = json.loads(out.strip().splitlines()[-1])
    fee = fee_for(keyset.input_fee_ppk for _ in proofs)
    assert got["received"] == 50 - fee
    assert got["balance"] == 50 - fee


@pytest.mark.parametrize("flags", [[], ["--dleq"], ["--legacy"]], ids=["v4", "v4-dleq", "v3"])
def test_a_nutshell_token_is_decoded_and_swapped_here(mint, nutshell_bin, tmp_path, flags):
    text = run_nutshell_wallet(["send", "--mint", mint.url, "--amount", "40", *flags],
                               db_dir=tmp_path / "nutshell", bin_dir=nutshell_bin).strip()
    assert text.startswith("cashuA" if "--legacy" in flags else "cashuB")
    token = decode(text)
    assert token.amount == 40 and token.mint.rstrip("/") == mint.url
    with MintClient(mint.url) as client:
        token = resolve_keyset_ids(token, [k.id for k in client.get_keysets()])
        keyset = active_keyset(client)
        if "--dleq" in flags:
            assert all(p.dleq is not None for p in token.proofs)
        verify_proofs_dleq(list(token.proofs), lambda kid, amount: keyset.keys[amount])
        fee = fee_for(keyset.input_fee_ppk for _ in token.proofs)
        outputs = random_outputs(split_amount(40 - fee), keyset.id)
        sigs = client.swap(list(token.proofs), [o.blinded for o in outputs])
        assert sum(p.amount for p in unblind_signatures(outputs, sigs, keyset)) == 40 - fee
