"""A lying mint, played by the tampering FaultProxy in front of a real Nutshell mint.

Each lie (a forged ``C_``, a stripped DLEQ, a dropped or inflated signature, an answer
that is not an object, a huge body, keyset metadata the id does not commit to) must
end in a typed error; then, with the proxy honest again, the wallet recovers what the
mint really signed, to the sat, and a second wallet accepts every proof at the mint:
nothing is lost and no proof the mint did not sign is counted.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mnemonic import Mnemonic

from coco_actors import Coco
from coco_actors.crypto.keysets import fee_for
from coco_actors.errors import CocoError, CryptoError, MintProtocolError
from coco_actors.mint_client import MintClient
from coco_actors.tokens import decode
from devtools.devmint import DevMint
from devtools.invoices import make_invoice
from tests.support import proxy as tampering
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.mint

Wallets = Callable[..., Coco]
Proxies = Callable[[str], FaultProxy]

#: (edit of the mint's answer, the typed error the wallet must raise)
LIES: dict[str, tuple[tampering.Edit, type[CocoError]]] = {
    "forged C_": (tampering.forge_signature, CryptoError),
    "stripped DLEQ": (tampering.strip_dleq, CryptoError),
    "dropped signature": (tampering.drop_signature, MintProtocolError),
    "doubled amount": (tampering.double_amount, CryptoError),
    "array": (tampering.as_array, MintProtocolError),
    "string": (tampering.as_string, MintProtocolError),
    "number": (tampering.as_number, MintProtocolError),
    "null": (tampering.as_null, MintProtocolError),
    "not JSON": (tampering.not_json, MintProtocolError),
    "64 MiB": (tampering.huge(), MintProtocolError),
}


def balance(coco: Coco, url: str) -> tuple[int, int, int]:
    b = coco.balance().get(url)
    return (b.spendable, b.reserved, b.pending) if b is not None else (0, 0, 0)


def held_by_the_mint(coco: Coco, bob: Coco, url: str, amount: int, ppk: int) -> None:
    """``coco`` sends all it has, ``bob`` claims it at the mint: every proof is real."""
    op, token = coco.send.execute_prepared_send(coco.send.prepare_send(url, amount).id)
    got = bob.receive(token)
    fee = fee_for([ppk] * len(decode(token).proofs))
    assert got.state == "completed"
    assert balance(bob, url)[0] == amount - fee


def test_the_dev_mint_advertises_nut12(mint: DevMint) -> None:
    """The facts the DLEQ rule stands on: a stripped proof is a lie, not a mint's habit."""
    with MintClient(mint.url) as client:
        assert client.requires_dleq()


@pytest.mark.parametrize("lie", list(LIES))
def test_a_lying_mint_answer_is_refused_and_nothing_is_lost(
        lie: str, mint_fee0: DevMint, open_wallet: Wallets, proxy_for: Proxies) -> None:
    edit, error = LIES[lie]
    proxy = proxy_for(mint_fee0.url)
    alice, bob = open_wallet("alice"), open_wallet("bob")
    alice.mints.add(proxy.url)
    bob.mints.add(proxy.url)
    quote = alice.mint.create_quote(proxy.url, 100)
    rule = proxy.tamper("POST", "/v1/mint/bolt11", edit)

    with pytest.raises(error):
        alice.mint.redeem(quote.id, timeout=10)
    assert rule.fired.is_set() and rule.error is None
    assert balance(alice, proxy.url) == (0, 0, 0)  # nothing the answer claimed is counted

    op = alice.mint.redeem(quote.id, timeout=10)  # honest again: restored from the mint
    assert op.state == "completed"
    assert balance(alice, proxy.url) == (100, 0, 0)
    held_by_the_mint(alice, bob, proxy.url, 100, 0)
    assert balance(alice, proxy.url) == (0, 0, 100)


@pytest.mark.parametrize("lie", ["forged C_", "stripped DLEQ", "dropped signature", "array"])
def test_a_lying_swap_answer_is_refused_and_recovered(
        lie: str, mint: DevMint, open_wallet: Wallets, proxy_for: Proxies) -> None:
    edit, error = LIES[lie]
    proxy = proxy_for(mint.url)
    alice, bob = open_wallet("alice"), open_wallet("bob")
    alice.mints.add(proxy.url)
    bob.mints.add(proxy.url)
    quote = alice.mint.create_quote(proxy.url, 100)
    alice.mint.redeem(quote.id, timeout=10)  # 64 + 32 + 4
    prepared = alice.send.prepare_send(proxy.url, 30)
    assert prepared.needs_swap
    proxy.tamper("POST", "/v1/swap", edit)

    with pytest.raises(error):
        alice.send.execute_prepared_send(prepared.id)
    alice.send.recover_pending_operations()  # NUT-07 says spent: NUT-09 brings it back
    after = alice.send.get_operation(prepared.id)
    assert after is not None and after.state == "rolled_back"
    left = 100 - prepared.fee
    assert balance(alice, proxy.url) == (left, 0, 0)
    held_by_the_mint(alice, bob, proxy.url, left, mint.input_fee_ppk)


def test_a_restore_answer_without_dleq_is_refused(
        mint_fee0: DevMint, open_wallet: Wallets, proxy_for: Proxies) -> None:
    proxy = proxy_for(mint_fee0.url)
    words = Mnemonic("english").generate(strength=128)
    alice = open_wallet("alice", words)
    alice.mints.add(proxy.url)
    alice.mint.redeem(alice.mint.create_quote(proxy.url, 21).id, timeout=10)
    clone = open_wallet("clone", words)
    clone.mints.add(proxy.url)
    rule = proxy.tamper("POST", "/v1/restore", tampering.strip_dleq)
    with pytest.raises(CryptoError):
        clone.restore(proxy.url)
    assert rule.fired.is_set() and rule.error is None
    assert balance(clone, proxy.url) == (0, 0, 0)
    assert clone.restore(proxy.url).restored == 21  # the mint's own answer carries DLEQs
    assert balance(clone, proxy.url) == (21, 0, 0)


def test_keyset_metadata_that_contradicts_the_id_is_refused(
        mint_fee100: DevMint, open_wallet: Wallets, proxy_for: Proxies) -> None:
    proxy = proxy_for(mint_fee100.url)
    alice = open_wallet("alice")
    proxy.tamper("GET", "/v1/keysets", tampering.set_fee(0))
    with pytest.raises(CryptoError, match="does not commit"):
        alice.mints.add(proxy.url)
    assert alice.mints.list() == []  # nothing stored
    alice.mints.add(proxy.url)  # honest again: the wallet still serves, at the id's fee
    alice.mint.redeem(alice.mint.create_quote(proxy.url, 8).id, timeout=10)
    op = alice.send.prepare_send(proxy.url, 3)
    assert op.fee == fee_for([100] * len(op.input_ys))


@pytest.mark.parametrize("edit", [tampering.as_array, tampering.as_string, tampering.not_json,
                                  tampering.huge(8 * 1024 * 1024)])
def test_garbage_info_or_keysets_stores_nothing(
        edit: tampering.Edit, mint_fee0: DevMint, open_wallet: Wallets,
        proxy_for: Proxies) -> None:
    proxy = proxy_for(mint_fee0.url)
    alice = open_wallet("alice")
    for path in ("/v1/info", "/v1/keysets", "/v1/keys"):
        proxy.tamper("GET", path, edit)
        with pytest.raises(MintProtocolError):
            alice.mints.add(proxy.url)
        assert alice.mints.list() == []
    assert alice.mints.add(proxy.url).url == proxy.url



@pytest.mark.parametrize("lie", ["forged C_", "stripped DLEQ"])
def test_lying_melt_change_is_refused_then_taken_from_the_quote(
        lie: str, mint_fee0: DevMint, open_wallet: Wallets, proxy_for: Proxies) -> None:
    """The payment went through; the change in the answer is a lie. The melt stays open
    and ``check_pending`` completes it from the quote's status (which carries DLEQs)."""
    edit, error = LIES[lie]
    proxy = proxy_for(mint_fee0.url)
    alice, bob = open_wallet("alice"), open_wallet("bob")
    alice.mints.add(proxy.url)
    bob.mints.add(proxy.url)
    alice.mint.redeem(alice.mint.create_quote(proxy.url, 1000).id, timeout=10)
    prepared = alice.melt.prepare_melt(proxy.url, make_invoice(100))
    rule = proxy.tamper("POST", "/v1/melt/bolt11", edit)

    with pytest.raises(error):
        alice.melt.execute_prepared_melt(prepared.id, timeout=30)
    assert rule.error is None and rule.original["state"] == "PAID"
    assert alice.melt.get_operation(prepared.id).state == "executing"  # type: ignore[union-attr]

    (done,) = [o for o in alice.melt.check_pending() if o.id == prepared.id]
    assert done.state == "completed"
    assert done.change_amount == sum(s["amount"] for s in rule.original["change"])
    left = 1000 - done.amount - done.fee - done.fee_paid
    assert balance(alice, proxy.url) == (left, 0, 0)
    held_by_the_mint(alice, bob, proxy.url, left, 0)
