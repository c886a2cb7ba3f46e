"""Consolidation (issue 13): many small proofs swapped into the fewest, against the real
mint at fees 0 and 100; skipped (nothing changed) when the fee is too high or there is
nothing to gain; the background policy, by proof count and after a live keyset rotation.

The small proofs are made the way a long-lived wallet gets them from a restore: NUT-13
outputs of the wallet's own seed, 1 sat each, minted straight at the mint, then found by
``coco.restore`` (its NUT-09 scan). Every fee is computed here from the keyset's
``input_fee_ppk`` (NUT-02: the per-input ppk summed, rounded up once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from coco_actors import Coco, InvalidInputError, NotFoundError
from coco_actors.consolidator import ConsolidationPolicy
from coco_actors.crypto.nut13 import Nut13Deriver
from coco_actors.crypto.outputs import make_outputs
from coco_actors.mint_client import MintClient
from coco_actors.operations.consolidate import FEE_TOO_HIGH, NOTHING_TO_GAIN
from coco_actors.records import ProofStatus
from devtools.devmint import DevMint

from .helpers import WalletFactory, balance_of, fee_of, snapshot

DUST = 500
EVENT_TIMEOUT = 30.0


def dust(coco: Coco, mint_url: str, n: int) -> str:
    """Give ``coco`` ``n`` proofs of 1 sat at ``mint_url`` (its active sat keyset): NUT-13
    outputs of its seed from its current counter, minted at the mint, then restored.
    Returns the keyset id."""
    with MintClient(mint_url) as client:
        keyset = next(k for k in client.get_keys() if k.active and k.unit == "sat")
        start = coco._ledger.counter(keyset.id).get(timeout=10)
        deriver = Nut13Deriver(coco.mnemonic)
        outputs = make_outputs([1] * n, keyset.id,
                               [deriver.derive(keyset.id, start + i) for i in range(n)])
        quote = client.create_mint_quote(n)
        client.mint(quote.quote, [o.blinded for o in outputs])
    report = coco.restore(mint_url)
    assert (report.restored, report.proofs) == (n, n)
    return keyset.id


def ready_proofs(coco: Coco, url: str) -> list[Any]:
    return [r for r in coco._ledger.all_proof_records().get(timeout=10)
            if r.mint_url == url and r.status == ProofStatus.READY]


class Events:
    """Every ``consolidate:*`` event of one wallet, as the bus ran them."""

    NAMES = ("consolidate:started", "consolidate:finalized", "consolidate:rolled-back")

    def __init__(self, coco: Coco) -> None:
        self._cond = threading.Condition()
        self.seen: list[tuple[str, str]] = []
        for name in self.NAMES:
            coco.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[[dict[str, Any]], None]:
        def record(payload: dict[str, Any]) -> None:
            with self._cond:
                self.seen.append((name, payload["operation_id"]))
                self._cond.notify_all()
        return record

    def wait_for(self, name: str, op_id: str) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: (name, op_id) in self.seen, EVENT_TIMEOUT), \
                self.seen


def test_500_one_sat_proofs_into_the_fewest(wallet: WalletFactory, mint: DevMint) -> None:
    coco = wallet("a", mint.url)
    url = coco.mints.list()[0].url
    dust(coco, mint.url, DUST)
    assert balance_of(coco, url) == (DUST, 0, 0)
    assert len(ready_proofs(coco, url)) == DUST
    events = Events(coco)

    result = coco.consolidate(mint.url)
    fee = fee_of(mint.input_fee_ppk, DUST)          # 0, or 500 * 100 / 1000 = 50
    assert fee == (0 if mint.input_fee_ppk == 0 else 50)
    left = DUST - fee
    assert result.skipped is None and result.operation is not None
    op = result.operation
    assert op.state == "completed" and op.type == "consolidate"
    assert (result.inputs, result.input_amount, result.fee, result.amount) == (
        DUST, DUST, fee, left)
    assert result.outputs == bin(left).count("1")   # the fewest proofs of that total
    assert balance_of(coco, url) == (left, 0, 0)
    proofs = ready_proofs(coco, url)
    assert sorted(r.amount for r in proofs) == sorted(
        1 << i for i in range(left.bit_length()) if left >> i & 1)
    events.wait_for("consolidate:started", op.id)
    events.wait_for("consolidate:finalized", op.id)
    [entry] = [h for h in coco.history.get_history() if h.operation_id == op.id]
    assert (entry.type, entry.state, entry.amount, entry.fee) == (
        "consolidate", "completed", left, fee)

    # already the fewest: a second call changes nothing
    again = coco.consolidate(mint.url)
    assert (again.skipped, again.operation) == (NOTHING_TO_GAIN, None)
    assert balance_of(coco, url) == (left, 0, 0)


def test_skipped_when_the_fee_is_too_high(wallet: WalletFactory, mint_fee100: DevMint) -> None:
    coco = wallet("a", mint_fee100.url)
    url = coco.mints.list()[0].url
    dust(coco, mint_fee100.url, DUST)
    before = snapshot(coco)

    result = coco.consolidate(mint_fee100.url, max_fee_fraction=0.05)  # 50 of 500 is 0.1
    assert result.skipped == FEE_TOO_HIGH and result.operation is None
    assert (result.inputs, result.fee) == (DUST, fee_of(100, DUST))
    assert snapshot(coco) == before
    assert len(ready_proofs(coco, url)) == DUST
    assert not [h for h in coco.history.get_history() if h.type == "consolidate"]

    done = coco.consolidate(mint_fee100.url, max_fee_fraction=0.1)
    assert done.skipped is None and balance_of(coco, url) == (DUST - 50, 0, 0)


def test_idempotency_key_and_bad_input(wallet: WalletFactory, mint: DevMint) -> None:
    coco = wallet("a", mint.url)
    url = coco.mints.list()[0].url
    dust(coco, mint.url, 20)
    before = snapshot(coco)
    with pytest.raises(InvalidInputError):
        coco.consolidate(mint.url, max_fee_fraction=2)
    with pytest.raises(InvalidInputError):
        coco.consolidate(mint.url, idempotency_key="")
    with pytest.raises(NotFoundError):
        coco.consolidate("http://127.0.0.1:1")
    assert snapshot(coco) == before

    first = coco.consolidate(mint.url, idempotency_key="k1")
    assert first.operation is not None
    repeat = coco.consolidate(mint.url, idempotency_key="k1")
    assert repeat.operation is not None and repeat.operation.id == first.operation.id
    left = 20 - fee_of(mint.input_fee_ppk, 20)
    assert balance_of(coco, url) == (left, 0, 0)
    assert len([h for h in coco.history.get_history() if h.type == "consolidate"]) == 1


def test_policy_by_proof_count(wallet: WalletFactory, mint: DevMint) -> None:
    policy = ConsolidationPolicy(max_proofs=50, inactive="off")
    coco = wallet("a", mint.url, consolidation=policy)
    url = coco.mints.list()[0].url
    assert coco.consolidator is not None
    dust(coco, mint.url, 40)            # not above the count: nothing to do
    coco.consolidator.run_now()
    assert len(ready_proofs(coco, url)) == 40 and coco.consolidator.runs == 0
    dust(coco, mint.url, 30)            # 70 proofs now
    coco.consolidator.run_now()
    assert coco.consolidator.runs == 1
    left = 70 - fee_of(mint.input_fee_ppk, 70)
    assert balance_of(coco, url) == (left, 0, 0)
    assert len(ready_proofs(coco, url)) == bin(left).count("1")


def test_policy_off_runs_no_thread(wallet: WalletFactory, mint_fee0: DevMint) -> None:
    coco = wallet("a", mint_fee0.url, consolidation=False)
    assert coco.consolidator is None
    with pytest.raises(InvalidInputError):
        ConsolidationPolicy(max_proofs=0)
    with pytest.raises(InvalidInputError):
        ConsolidationPolicy(inactive="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize("ppk", [0, 100], ids=["fee0", "fee100"])
def test_policy_moves_proofs_of_an_expiring_inactive_keyset(
        wallet: WalletFactory, make_mint: Callable[..., DevMint], ppk: int) -> None:
    """Keyset K0 (no expiry) -> K1 (expiring in a day) -> K2, rotated live. The default
    policy moves the proofs of K1 (inactive, expiring within its two-week margin) into K2
    and leaves those of K0 (no expiry) alone; with ``inactive="any"`` K0's move too."""
    mint = make_mint(input_fee_ppk=ppk, rpc=True).start()
    coco = wallet("a", mint.url)                  # the default policy: "expiring"
    url = coco.mints.list()[0].url
    assert coco.consolidator is not None
    k0 = dust(coco, mint.url, 10)
    mint.rotate_keyset("sat", ppk, final_expiry=int(time.time()) + 86400)
    coco.mints.add(mint.url)                      # the wallet learns K1
    k1 = dust(coco, mint.url, 12)
    assert k1 != k0
    mint.rotate_keyset("sat", ppk, final_expiry=int(time.time()) + 30 * 86400)
    coco.mints.add(mint.url)                      # K1 inactive now
    [k2] = mint.active_keyset_ids()
    events = Events(coco)

    coco.consolidator.run_now()
    assert coco.consolidator.runs == 1
    [(_, op_id)] = [e for e in events.seen if e[0] == "consolidate:started"]
    events.wait_for("consolidate:finalized", op_id)
    fee1 = fee_of(ppk, 12)
    by_keyset: dict[str, int] = {}
    for r in ready_proofs(coco, url):
        by_keyset[r.proof.keyset_id] = by_keyset.get(r.proof.keyset_id, 0) + r.amount
    assert by_keyset == {k0: 10, k2: 12 - fee1}
    assert balance_of(coco, url) == (22 - fee1, 0, 0)
    coco.consolidator.run_now()                   # K0 has no expiry: left as it is
    assert coco.consolidator.runs == 1
    coco.close()

    anyone = wallet("a", consolidation=ConsolidationPolicy(inactive="any"))
    assert anyone.consolidator is not None
    anyone.consolidator.run_now()
    assert anyone.consolidator.runs == 1
    fee0 = fee_of(ppk, 10)
    total: dict[str, int] = {}
    for r in ready_proofs(anyone, url):
        total[r.proof.keyset_id] = total.get(r.proof.keyset_id, 0) + r.amount
    assert total == {k2: 22 - fee1 - fee0}
    assert balance_of(anyone, url) == (22 - fee1 - fee0, 0, 0)
