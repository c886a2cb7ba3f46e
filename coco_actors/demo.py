"""The README's main job: the wallet end to end against a local development mint.

Starts a Nutshell mint (FakeWallet lightning, 127.0.0.1), opens two wallets,
and walks through invoice -> mint -> send -> receive (second wallet) ->
rollback of an unclaimed send -> history, printing each step and checking the
balances to the sat. Leaves nothing running.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coco_actors.coco import Coco
from coco_actors.crypto.keysets import fee_for
from coco_actors.devmint import DevMint
from coco_actors.tokens import decode


def run(*, input_fee_ppk: int = 100, out: Callable[[str], Any] = print,
        work_dir: Path | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="coco-demo-") as tmp:
        root = Path(work_dir or tmp)
        out(f"starting a local development mint (Nutshell, FakeWallet, fee {input_fee_ppk} ppk)")
        with DevMint(root / "mint", input_fee_ppk=input_fee_ppk) as mint:
            out(f"  mint listening at {mint.url}")
            with Coco.open(root / "alice") as alice, Coco.open(root / "bob") as bob:
                _walk(mint.url, alice, bob, input_fee_ppk, out)
    out("done: mint stopped, wallets closed")


def _walk(url: str, alice: Coco, bob: Coco, ppk: int, out: Callable[[str], Any]) -> None:
    def show(who: str, coco: Coco) -> None:
        b = coco.balance()[url]
        out(f"  {who:5}: spendable {b.spendable:5}  reserved {b.reserved:3}"
            f"  pending {b.pending:4}")

    finalized = threading.Event()
    alice.on("send:finalized", lambda payload: finalized.set())
    for wallet in (alice, bob):
        wallet.mints.add(url)

    out("1. invoice: alice asks the mint for a 1000 sat bolt11 quote")
    quote = alice.mint.create_quote(url, 1000)
    out(f"  request {quote.request[:40]}... (FakeWallet pays it)")
    alice.mint.redeem(quote.id, timeout=30)
    show("alice", alice)

    out("2. send: alice prepares and executes a send of 100 sat")
    prepared = alice.send.prepare_send(url, 100)
    out(f"  fee {prepared.fee}, inputs {prepared.input_amount}, swap {prepared.needs_swap}")
    op, token = alice.send.execute_prepared_send(prepared.id)
    out(f"  operation {op.id} is {op.state.value}; token of {len(token)} chars (not shown)")
    show("alice", alice)
    _expect(alice.balance()[url].spendable == 1000 - 100 - prepared.fee, "alice's change")

    out("3. receive: bob swaps the token into his wallet")
    received = bob.receive(token)
    receive_fee = fee_for(ppk for _ in decode(token).proofs)
    out(f"  bob received {received.amount} (token 100, mint fee {receive_fee})")
    _expect(bob.balance()[url].spendable == 100 - receive_fee, "bob's balance")
    alice.send.check_pending()
    _expect(finalized.wait(10), "send:finalized")
    out(f"  alice's send is {alice.send.get_operation(op.id).state.value}")  # type: ignore[union-attr]
    show("alice", alice)
    show("bob", bob)

    out("4. rollback: alice sends 50 sat, nobody claims it, she takes it back")
    before = alice.balance()[url].spendable
    p2 = alice.send.prepare_send(url, 50)
    op2, token2 = alice.send.execute_prepared_send(p2.id)
    back = alice.send.rollback(op2.id)
    reclaim_fee = fee_for(ppk for _ in decode(token2).proofs)
    out(f"  {back.state.value}: send fee {p2.fee}, reclaim fee {reclaim_fee}")
    _expect(alice.balance()[url].spendable == before - p2.fee - reclaim_fee, "reclaimed")
    show("alice", alice)

    out("5. history (newest first)")
    for entry in alice.history.get_history():
        out(f"  {entry.type:8} {entry.amount:5} sat  {entry.state}")


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise RuntimeError(f"demo check failed: {what}")
