"""The protocol core against a real Nutshell mint, with input fees 0 and 100 ppk.

No wallet state here: these drive MintClient, the crypto functions and the
token codec directly, the way the actors will.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.crypto.dleq import verify_proof_dleq, verify_proofs_dleq
from coco_actors.crypto.keysets import fee_for
from coco_actors.crypto.nut13 import Nut13Deriver
from coco_actors.crypto.outputs import make_outputs, random_outputs, unblind_signatures
from coco_actors.errors import CryptoError, MintRejectedError
from coco_actors.mint_client import MintClient
from coco_actors.tokens import Token, decode, encode_v4, resolve_keyset_ids
from coco_actors.wire import (
    DLEQ,
    Keyset,
    MeltQuoteState,
    MintQuoteState,
    Proof,
    ProofStateKind,
    split_amount,
)

from .protocol_helpers import active_keyset, mint_proofs

MNEMONIC = "half depart obvious quality work element tank gorilla view sugar picture humble"


@pytest.fixture
def client(mint):
    with MintClient(mint.url) as c:
        yield c


def total(proofs: list[Proof]) -> int:
    return sum(p.amount for p in proofs)


def test_info_and_keysets_carry_the_configured_fee(client, mint):
    info = client.get_info()
    assert info.supports(7) and info.supports(9) and info.supports(12)
    keyset = active_keyset(client)
    assert keyset.input_fee_ppk == mint.input_fee_ppk
    assert len(keyset.id) == 66 and keyset.id.startswith("01")


def test_mint_1000_through_a_bolt11_quote(client):
    quote = client.create_mint_quote(1000)
    assert quote.amount == 1000 and quote.request.startswith("lnbc")
    proofs, keyset = mint_proofs(client, 1000, quote=quote)
    assert total(proofs) == 1000
    assert sorted(p.amount for p in proofs) == split_amount(1000)
    assert client.get_mint_quote(quote.quote).state == MintQuoteState.ISSUED
    # every proof the mint signed carries a DLEQ that verifies
    assert all(p.dleq is not None for p in proofs)
    verify_proofs_dleq(proofs, lambda kid, amount: keyset.keys[amount])
    states = client.check_state([secret_to_y(p.secret) for p in proofs])
    assert {s.state for s in states} == {ProofStateKind.UNSPENT}
    # the same quote cannot be minted twice
    with pytest.raises(MintRejectedError) as info:
        client.mint(quote.quote, [o.blinded for o in random_outputs([8], keyset.id)])
    assert info.value.code == 20002


def test_swap_charges_exactly_the_nut02_fee(client, mint):
    proofs, keyset = mint_proofs(client, 1000)
    fee = fee_for(keyset.input_fee_ppk for _ in proofs)
    assert fee == (len(proofs) * mint.input_fee_ppk + 999) // 1000
    # one sat more than inputs - fee is refused: the fee is not smaller than computed
    too_much = random_outputs(split_amount(1000 - fee + 1), keyset.id)
    with pytest.raises(MintRejectedError) as info:
        client.swap(proofs, [o.blinded for o in too_much])
    assert info.value.code in (11000, 11005)
    # exactly inputs - fee is accepted
    outputs = random_outputs(split_amount(1000 - fee), keyset.id)
    new = unblind_signatures(outputs, client.swap(proofs, [o.blinded for o in outputs]), keyset)
    assert total(new) == 1000 - fee


def test_checkstate_before_and_after_a_swap(client):
    proofs, keyset = mint_proofs(client, 64)
    ys = [secret_to_y(p.secret) for p in proofs]
    assert [s.state for s in client.check_state(ys)] == [ProofStateKind.UNSPENT]
    fee = fee_for(keyset.input_fee_ppk for _ in proofs)
    outputs = random_outputs(split_amount(64 - fee), keyset.id)
    new = unblind_signatures(outputs, client.swap(proofs, [o.blinded for o in outputs]), keyset)
    assert [s.state for s in client.check_state(ys)] == [ProofStateKind.SPENT]
    new_states = client.check_state([secret_to_y(p.secret) for p in new])
    assert {s.state for s in new_states} == {ProofStateKind.UNSPENT}
    # spending the same inputs again is a definitive "already spent"
    again = random_outputs(split_amount(64 - fee), keyset.id)
    with pytest.raises(MintRejectedError) as info:
        client.swap(proofs, [o.blinded for o in again])
    assert info.value.code == 11001


def test_nut09_restore_gives_back_identical_proofs(client):
    keyset = active_keyset(client)
    deriver = Nut13Deriver(MNEMONIC)
    amounts = split_amount(100)
    counter = 0  # each session mint has its own keyset, so counters start fresh
    pairs = [deriver.derive(keyset.id, counter + i) for i in range(len(amounts))]
    outputs = make_outputs(amounts, keyset.id, pairs)
    quote = client.create_mint_quote(100)
    client.get_mint_quote(quote.quote)
    originals = unblind_signatures(outputs, client.mint(quote.quote, [o.blinded for o in outputs]),
                                   keyset)

    # a wallet that has only the mnemonic re-derives the same outputs and asks again
    rederived = make_outputs(amounts, keyset.id,
                             [Nut13Deriver(MNEMONIC).derive(keyset.id, counter + i)
                              for i in range(len(amounts))])
    unknown = random_outputs([1, 2], keyset.id)
    result = client.restore([o.blinded for o in rederived + unknown])
    assert [o.B_ for o in result.outputs] == [o.B_ for o in rederived]
    restored = unblind_signatures(rederived, list(result.signatures), keyset)
    assert [(p.amount, p.secret, p.C) for p in restored] == \
        [(p.amount, p.secret, p.C) for p in originals]
    # unblinded (C, not C_) and valid: the mint accepts them as inputs
    assert all(p.C != s.C_ for p, s in zip(restored, result.signatures, strict=True))
    fee = fee_for(keyset.input_fee_ppk for _ in restored)
    outs = random_outputs(split_amount(100 - fee), keyset.id)
    assert len(client.swap(restored, [o.blinded for o in outs])) == len(outs)
    # outputs the mint never signed come back empty
    empty = client.restore([o.blinded for o in random_outputs([4, 8], keyset.id)])
    assert empty.outputs == () and empty.signatures == ()


def test_a_real_token_round_trips_and_stays_spendable(client):
    proofs, keyset = mint_proofs(client, 21)
    text = encode_v4(Token(mint=client.mint_url, proofs=tuple(proofs), unit="sat"))
    assert text.startswith("cashuB")
    token = decode(text)
    assert token.mint == client.mint_url and token.amount == 21
    # V4 carries 8-byte keyset ids; the mint's keysets expand them back
    assert all(len(p.keyset_id) == 16 for p in token.proofs)
    token = resolve_keyset_ids(token, [k.id for k in client.get_keysets()])
    assert list(token.proofs) == proofs
    verify_proofs_dleq(list(token.proofs), lambda kid, amount: keyset.keys[amount])
    fee = fee_for(keyset.input_fee_ppk for _ in token.proofs)
    outs = random_outputs(split_amount(21 - fee), keyset.id)
    sigs = client.swap(list(token.proofs), [o.blinded for o in outs])
    assert total(unblind_signatures(outs, sigs, keyset)) == 21 - fee


def test_mint_dleq_verifies_and_a_tampered_one_is_rejected(client):
    keyset = active_keyset(client)
    quote = client.create_mint_quote(8)
    client.get_mint_quote(quote.quote)
    outputs = random_outputs([8], keyset.id)
    sigs = client.mint(quote.quote, [o.blinded for o in outputs])
    assert sigs[0].dleq is not None
    (proof,) = unblind_signatures(outputs, sigs, keyset)
    assert verify_proof_dleq(proof, keyset.keys[8])

    # a signature whose DLEQ was altered in transit is refused before unblinding
    bad_s = format((int(sigs[0].dleq.s, 16) + 1) % 2**256, "064x")
    tampered_sig = replace(sigs[0], dleq=DLEQ(e=sigs[0].dleq.e, s=bad_s))
    with pytest.raises(CryptoError):
        unblind_signatures(outputs, [tampered_sig], keyset)
    # a proof in a token whose DLEQ was altered is refused too, even after a good one
    tampered = replace(proof, dleq=replace(proof.dleq, e=bad_s))
    assert not verify_proof_dleq(tampered, keyset.keys[8])
    with pytest.raises(CryptoError):
        verify_proofs_dleq([proof, tampered], lambda kid, amount: keyset.keys[amount])
    # and against the wrong mint key it fails as well
    wrong = Keyset(id=keyset.id, unit="sat", keys={8: keyset.keys[16]})
    with pytest.raises(CryptoError):
        unblind_signatures(outputs, sigs, wrong)


def test_melt_pays_an_invoice_and_returns_change(client, other_mint_invoice):
    keyset = active_keyset(client)
    proofs, _ = mint_proofs(client, 200)
    invoice = other_mint_invoice(100)
    quote = client.create_melt_quote(invoice)
    assert quote.amount == 100 and quote.state == MeltQuoteState.UNPAID
    fee = fee_for(keyset.input_fee_ppk for _ in proofs)
    assert total(proofs) >= quote.amount + quote.fee_reserve + fee
    blanks = random_outputs([1] * 8, keyset.id)  # NUT-08: enough blanks for any change
    paid = client.melt(quote.quote, proofs, [o.blinded for o in blanks])
    assert paid.state == MeltQuoteState.PAID
    change = unblind_signatures(blanks, list(paid.change), keyset, blank=True)
    # what the lightning payment really cost: inputs - invoice - input fee - change
    lightning_fee = 200 - 100 - fee - total(change)
    assert 0 <= lightning_fee <= quote.fee_reserve
    assert client.get_melt_quote(quote.quote).state == MeltQuoteState.PAID
    assert change  # 100 - input fee - lightning fee is left over, at most fee_reserve used
    states = client.check_state([secret_to_y(p.secret) for p in change])
    assert [s.state for s in states] == [ProofStateKind.UNSPENT] * len(change)
