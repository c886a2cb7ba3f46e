"""Small protocol steps shared by the integration tests (no wallet state)."""

from __future__ import annotations

from coco_actors.crypto.outputs import random_outputs, unblind_signatures
from coco_actors.mint_client import MintClient
from coco_actors.wire import Keyset, MintQuote, MintQuoteState, Proof, split_amount


def active_keyset(client: MintClient, unit: str = "sat") -> Keyset:
    """The mint's active keyset for ``unit``, keys verified against the id, fee filled in."""
    infos = {k.id: k for k in client.get_keysets()}
    for keyset in client.get_keys():
        info = infos.get(keyset.id)
        if keyset.unit == unit and info is not None and info.active:
            return Keyset(id=keyset.id, unit=keyset.unit, keys=keyset.keys, active=True,
                          input_fee_ppk=info.input_fee_ppk)
    raise AssertionError(f"mint {client.mint_url} has no active {unit} keyset")


def mint_proofs(client: MintClient, amount: int,
                quote: MintQuote | None = None) -> tuple[list[Proof], Keyset]:
    """Pay (FakeWallet settles on the first status check) and mint ``amount`` sats."""
    keyset = active_keyset(client)
    quote = quote or client.create_mint_quote(amount)
    assert client.get_mint_quote(quote.quote).state == MintQuoteState.PAID
    outputs = random_outputs(split_amount(amount), keyset.id)
    sigs = client.mint(quote.quote, [o.blinded for o in outputs])
    return unblind_signatures(outputs, sigs, keyset), keyset
