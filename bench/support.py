"""What the scenarios share: statistics, the recipient and the raw client, wallet setup.

The raw side (minting proofs, the recipient's claims) talks to the mint with
:class:`MintClient` directly, never through a wallet.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coco_actors import Coco
from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.crypto.keysets import fee_for
from coco_actors.crypto.outputs import random_outputs, unblind_signatures
from coco_actors.mint_client import MintClient
from coco_actors.records import ProofRecord
from coco_actors.store import Store
from coco_actors.tokens import decode, resolve_keyset_ids
from coco_actors.watcher import WatcherConfig
from coco_actors.wire import Keyset, Proof, split_amount

#: Nutshell's ``max_array_length``: outputs per mint request, inputs per swap.
MAX_ARRAY = 1000


# --- statistics -------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    """Median and spread of one metric over the runs of a scenario."""

    median: float
    low: float
    high: float
    runs: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        vals = tuple(values)
        if not vals:
            return cls(float("nan"), float("nan"), float("nan"), ())
        return cls(statistics.median(vals), min(vals), max(vals), vals)

    def to_json(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "runs": list(self.runs)}


@dataclass(slots=True)
class Run:
    """One timed run of a throughput scenario."""

    ops: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ops / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_ms_per_op(self) -> float:
        return 1000 * self.cpu_s / self.ops if self.ops else float("nan")

    def p(self, q: float) -> float:
        return 1000 * percentile(self.latencies, q) if self.latencies else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {"ops": self.ops, "wall_s": self.wall_s, "rate_per_s": self.rate,
                "cpu_s": self.cpu_s, "cpu_ms_per_op": self.cpu_ms_per_op,
                "p50_ms": self.p(50), "p95_ms": self.p(95), "errors": len(self.errors),
                "error_samples": self.errors[:5], **self.extra}


def run_callers(callers: int, work: Callable[[int], None], timeout: float) -> float:
    """Run ``work(i)`` in ``callers`` threads started together; return the wall time.

    A caller still busy after ``timeout`` seconds is left behind (daemon thread) so
    the benchmark never hangs; its work counts only if it finished.
    """
    barrier = threading.Barrier(callers + 1)

    def body(i: int) -> None:
        barrier.wait(timeout=30)
        work(i)

    threads = [threading.Thread(target=body, args=(i,), daemon=True, name=f"bench-caller-{i}")
               for i in range(callers)]
    for t in threads:
        t.start()
    barrier.wait(timeout=30)
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return time.perf_counter() - started


# --- the machine ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    def first(path: str, key: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"

    mem_kb = first("/proc/meminfo", "MemTotal").split()[0]
    return {"nproc": os.cpu_count(), "cpu_model": first("/proc/cpuinfo", "model name"),
            "mem_total_mb": round(int(mem_kb) / 1024) if mem_kb.isdigit() else None,
            "python": platform.python_version(), "platform": platform.platform()}


def process_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) another process has used so far; NaN if unknown."""
    if pid is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the raw side -----------------------------------------------------------------------


class RawMint:
    """Minting and claiming with raw protocol calls (no wallet involved)."""

    def __init__(self, url: str) -> None:
        self.client = MintClient(url)
        self.keysets = self.client.get_keysets()
        self.keyset: Keyset = next(k for k in self.client.get_keys()
                                   if k.unit == "sat" and k.active)

    def close(self) -> None:
        self.client.close()

    def mint(self, amounts: Sequence[int]) -> list[Proof]:
        """Proofs of exactly ``amounts``, up to 1000 outputs per mint request."""
        proofs: list[Proof] = []
        for start in range(0, len(amounts), MAX_ARRAY):
            chunk = list(amounts[start:start + MAX_ARRAY])
            quote = self.client.create_mint_quote(sum(chunk))
            self.client.get_mint_quote(quote.quote)  # FakeWallet settles it when asked
            outputs = random_outputs(chunk, self.keyset.id)
            sigs = self.client.mint(quote.quote, [o.blinded for o in outputs])
            proofs += unblind_signatures(outputs, sigs, self.keyset)
        return proofs

    def claim(self, tokens: Sequence[str]) -> int:
        """The recipient: swap every proof of ``tokens`` (up to 1000 inputs per swap)."""
        ids = [k.id for k in self.keysets]
        ppk = {k.id: k.input_fee_ppk for k in self.keysets}
        proofs = [p for t in tokens for p in resolve_keyset_ids(decode(t), ids).proofs]
        for start in range(0, len(proofs), MAX_ARRAY):
            batch = proofs[start:start + MAX_ARRAY]
            value = sum(p.amount for p in batch) - fee_for(ppk[p.keyset_id] for p in batch)
            outputs = random_outputs(split_amount(value), self.keyset.id)
            self.client.swap(batch, [o.blinded for o in outputs])
        return len(proofs)


# --- wallets ----------------------------------------------------------------------------


def open_wallet(data_dir: Path, url: str, *, watcher: bool | WatcherConfig = True,
                recover: bool = True) -> Coco:
    coco = Coco.open(data_dir, watcher=watcher, recover=recover)
    coco.mints.add(url)
    return coco


def inject_proofs(data_dir: Path, mint_url: str, proofs: Sequence[Proof]) -> None:
    """Put spendable proofs straight into a closed wallet's store (setup only).

    The wallet API can only add proofs through a mint or receive operation, and
    both split the amount into powers of two; exact-match sends of 1 sat need
    thousands of 1-sat proofs. The records are the ones a completed mint writes.
    """
    store = Store(data_dir)
    try:
        records = [ProofRecord(p, mint_url, secret_to_y(p.secret)) for p in proofs]

        def write(batch: Any) -> None:
            for rec in records:
                batch.put_proof(rec)

        store.transact(write)
    finally:
        store.close()


def last_txn_id(data_dir: Path) -> int:
    """The id of the last LMDB write transaction of a closed wallet (counts commits)."""
    store = Store(data_dir)
    try:
        return int(store.env.info()["last_txnid"])
    finally:
        store.close()


class Finalized:
    """Counts ``send:finalized`` events; lets the benchmark wait for some."""

    def __init__(self, coco: Coco) -> None:
        self.at: dict[str, float] = {}
        self._cond = threading.Condition()
        coco.on("send:finalized", self._on)

    def _on(self, payload: dict[str, Any]) -> None:
        with self._cond:
            self.at[payload["operation_id"]] = time.perf_counter()
            self._cond.notify_all()

    def wait_for(self, ids: Iterable[str], timeout: float) -> bool:
        wanted = set(ids)
        with self._cond:
            return self._cond.wait_for(lambda: wanted <= self.at.keys(), timeout)
