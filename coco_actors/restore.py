"""Wallet restore from the mnemonic alone (NUT-09 + NUT-13).

For every keyset of a mint, re-derive outputs counter by counter in batches,
ask the mint which it signed, unblind those, keep the ones NUT-07 reports
unspent, and move the counter past the last one used (never backward). Runs on
the caller's thread: it talks to the mint through the MintClient and commits
through the ProofLedger, like everything else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.crypto.nut13 import Nut13Deriver
from coco_actors.crypto.outputs import make_outputs, unblind_signatures
from coco_actors.operations.base import LEDGER_TIMEOUT, MintContext, wait
from coco_actors.proof_ledger import ProofLedgerProxy
from coco_actors.records import Operation, OpState, OpType, new_operation_id
from coco_actors.wire import Keyset, Proof, ProofStateKind

log = logging.getLogger(__name__)

BATCH = 100          # NUT-13: restore in batches of 100
EMPTY_BATCHES = 3    # stop after three consecutive empty batches


@dataclass(frozen=True, slots=True)
class RestoreReport:
    mint_url: str
    restored: int          # sats added to the wallet
    proofs: int            # proofs added
    spent: int             # signed outputs found already spent
    counters: dict[str, int]  # keyset id -> counter after the restore
    operation_id: str | None


def _scan(ctx: MintContext, deriver: Nut13Deriver, keyset: Keyset) -> tuple[list[Proof], int]:
    """Every proof the mint ever signed from this seed in ``keyset``; the next free counter."""
    proofs: list[Proof] = []
    start, empty, next_free = 0, 0, 0
    while empty < EMPTY_BATCHES:
        pairs = [deriver.derive(keyset.id, start + i) for i in range(BATCH)]
        outputs = make_outputs([1] * BATCH, keyset.id, pairs)  # amounts come from the mint
        result = ctx.client.restore([o.blinded for o in outputs])
        index = {o.B_: i for i, o in enumerate(outputs)}
        found = [(index[b.B_], s) for b, s in zip(result.outputs, result.signatures, strict=True)
                 if b.B_ in index]
        if found:
            empty = 0
            proofs.extend(unblind_signatures([outputs[i] for i, _ in found],
                                             [s for _, s in found], keyset, blank=True,
                                             require_dleq=ctx.client.requires_dleq()))
            next_free = start + max(i for i, _ in found) + 1
        else:
            empty += 1
        start += BATCH
    return proofs, next_free


def restore(ctx: MintContext, deriver: Nut13Deriver, lg: ProofLedgerProxy) -> RestoreReport:
    found: list[Proof] = []
    counters: dict[str, int] = {}
    for keyset in ctx.keysets:
        proofs, next_free = _scan(ctx, deriver, keyset)
        found.extend(proofs)
        counters[keyset.id] = wait(lg.raise_counter(keyset.id, next_free),
                                   LEDGER_TIMEOUT, "ProofLedger")
    unspent: list[Proof] = []
    if found:
        states = ctx.client.check_state([secret_to_y(p.secret) for p in found])
        unspent = [p for p, s in zip(found, states, strict=True)
                   if s.state == ProofStateKind.UNSPENT]
    known = wait(lg.known_ys(ctx.url), LEDGER_TIMEOUT, "ProofLedger")
    fresh = [p for p in unspent if secret_to_y(p.secret) not in known]
    op_id = None
    if fresh:
        amount = sum(p.amount for p in fresh)
        op = Operation(id=new_operation_id(), type=OpType.RESTORE, mint_url=ctx.url,
                       amount=amount, state=OpState.COMPLETED, input_amount=amount)
        wait(lg.settle(op, add=fresh), LEDGER_TIMEOUT, "ProofLedger")
        op_id = op.id
    log.info("restore at %s: %d proofs (%d sat) added, %d signed outputs already spent",
             ctx.url, len(fresh), sum(p.amount for p in fresh), len(found) - len(unspent))
    return RestoreReport(ctx.url, sum(p.amount for p in fresh), len(fresh),
                         len(found) - len(unspent), counters, op_id)
