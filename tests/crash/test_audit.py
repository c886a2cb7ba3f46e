"""The auditor itself: a crash test is only as good as its invariants, so each kind of
damage is done to a healthy wallet by hand (through the ledger, as a bug would) and
the audit must report it, to the sat."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coco_actors.crypto.keysets import fee_for
from coco_actors.crypto.outputs import random_outputs
from coco_actors.records import Operation, OpState, OpType, new_operation_id
from coco_actors.wire import split_amount
from devtools.devmint import DevMint
from tests.support.crash_driver import InProcessWallet, Recipient
from tests.support.proxy import Exchange

TIMEOUT = 10.0


class Books(InProcessWallet):
    def __init__(self, mint: DevMint, data_dir: Path) -> None:
        super().__init__(mint, data_dir, fund=1000)
        sent = self.coco.send.prepare_send(self.url, 100)
        _, self.token = self.coco.send.execute_prepared_send(sent.id)   # one pending send
        self.coco.receive(self.faucet.token(50))

    def settle(self, **moves: object) -> None:
        """A bogus completed operation that moves proofs, as a buggy saga would."""
        op = Operation(id=new_operation_id(), type=OpType.RECEIVE, mint_url=self.url,
                       amount=1, state=OpState.COMPLETED)
        self.coco._ledger.settle(op, **moves).get(timeout=TIMEOUT)

    def held(self) -> list:
        return [r for r in self.coco._ledger.all_proof_records().get(timeout=TIMEOUT)
                if r.status.value == "ready"]


@pytest.fixture
def books(mint: DevMint, tmp_path: Path) -> Iterator[Books]:
    b = Books(mint, tmp_path / "w")
    yield b
    b.close()
    b.proxy.stop()
    b.client.close()


def test_a_healthy_wallet_passes(books: Books) -> None:
    a = books.audit()
    assert a.violations == [], a.summary()
    assert (a.minted, a.received, a.pending) == (1000, 50, 100)


def test_a_lost_proof_is_value_not_conserved(books: Books) -> None:
    victim = books.held()[0]
    books.settle(spend=[victim.Y])
    a = books.audit()
    assert a.discrepancy == victim.amount
    assert any(v.startswith("value not conserved") for v in a.violations)


def test_a_spent_proof_still_held_is_caught(books: Books) -> None:
    victim = max(books.held(), key=lambda r: r.amount)
    fee = fee_for([books.recipient.ppk[victim.proof.keyset_id]])
    outputs = random_outputs(split_amount(victim.amount - fee), books.recipient.keyset.id)
    books.client.swap([victim.proof], [o.blinded for o in outputs])  # spent behind its back
    a = books.audit()
    assert any("is SPENT at the mint" in v for v in a.violations), a.violations


def test_a_claim_by_a_stranger_is_caught(books: Books) -> None:
    """A pending send's proofs spent by someone the test did not give the token to."""
    claimer = Recipient(books.client)
    assert claimer.claim(books.token)
    a = books.audit()
    assert any("not claimed" in v for v in a.violations), a.violations


def test_outputs_already_signed_is_caught(books: Books) -> None:
    books.proxy.exchanges.append(Exchange(
        "POST", "/v1/swap", b"{}", status=400,
        response=b'{"detail":"outputs have already been signed before.","code":11003}'))
    a = books.audit()
    assert any("11003" in v for v in a.violations), a.violations


def test_a_reservation_without_its_operation_is_caught(books: Books) -> None:
    victim = books.held()[0]
    books.settle(hold=[victim.proof])   # reserved by an operation that is over
    a = books.audit()
    assert any("which is not open" in v for v in a.violations), a.violations
