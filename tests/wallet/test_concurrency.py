"""Many sends at once from one wallet: no proof reserved twice, no counter reused."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from coco_actors import Coco, MintRejectedError
from coco_actors.errors import CODE_OUTPUTS_ALREADY_SIGNED
from coco_actors.mint_client import normalize_mint_url
from coco_actors.records import Operation
from coco_actors.tokens import decode
from devtools.devmint import DevMint

from .helpers import WalletFactory, balance_of, fee_of, fund

THREADS = 8
SENDS_PER_THREAD = 25
AMOUNT = 5
FUNDS = 2000
#: Generous: 200 swaps at ~30 swaps/s, plus waiting for change.
RUN_TIMEOUT = 180.0


def _sends(coco: Coco, url: str, start: threading.Barrier) -> list[tuple[Operation, str]]:
    start.wait(timeout=10)
    done = []
    for _ in range(SENDS_PER_THREAD):
        prepared = coco.send.prepare_send(url, AMOUNT)
        op, token = coco.send.execute_prepared_send(prepared.id)
        done.append((op, token))
    return done


def test_concurrent_sends(wallet: WalletFactory, mint: DevMint) -> None:
    fee = mint.input_fee_ppk
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url)
    fund(alice, url, FUNDS)  # one mint operation
    assert balance_of(alice, url) == (FUNDS, 0, 0)

    started = time.monotonic()
    barrier = threading.Barrier(THREADS)
    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(_sends, alice, url, barrier) for _ in range(THREADS)]
        results, errors = [], []
        for f in futures:
            try:
                results.extend(f.result(timeout=RUN_TIMEOUT))
            except Exception as exc:  # collect them all, then report
                errors.append(exc)
    elapsed = time.monotonic() - started
    print(f"\n{THREADS * SENDS_PER_THREAD} concurrent sends at fee {fee}: {elapsed:.1f} s")

    reused = [e for e in errors
              if isinstance(e, MintRejectedError) and e.code == CODE_OUTPUTS_ALREADY_SIGNED]
    assert not reused, f"outputs signed twice (11003): {reused}"
    assert not errors, f"{len(errors)} threads failed: {errors!r}"
    assert len(results) == THREADS * SENDS_PER_THREAD

    assert all(op.state == "pending" and op.amount == AMOUNT for op, _ in results)
    assert len({op.id for op, _ in results}) == len(results)
    # no proof was ever in two reservations: every input spent once, every token distinct
    inputs = [y for op, _ in results for y in op.input_ys]
    assert len(inputs) == len(set(inputs))
    secrets = [p.secret for _, token in results for p in decode(token).proofs]
    assert len(secrets) == len(set(secrets))
    assert sum(decode(token).amount for _, token in results) == len(results) * AMOUNT

    # each fee is the NUT-02 fee of that send's own inputs (none for an exact match)
    for op, _ in results:
        assert op.needs_swap == (op.input_amount != AMOUNT), op
        assert op.fee == (fee_of(fee, len(op.input_ys)) if op.needs_swap else 0), op
    fees = sum(op.fee for op, _ in results)
    sent = len(results) * AMOUNT
    assert balance_of(alice, url) == (FUNDS - sent - fees, 0, sent)
    ops = alice.send.get_pending_operations()
    assert sorted(o.id for o in ops) == sorted(op.id for op, _ in results)
