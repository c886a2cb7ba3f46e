"""The scenarios of issues 7 and 11. Each returns plain data (see ``run.py`` for the table).

Every scenario runs ``cfg.runs`` times; the mint bound and the wallet sends (and
the raw and the wallet melts) are interleaved run by run, so each ratio or
overhead pairs a wallet run with the raw run just before it.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner import LevelPlanner
from support import (
    Finalized,
    RawMint,
    Run,
    inject_proofs,
    last_txn_id,
    open_wallet,
    percentile,
    run_callers,
)

from coco_actors import Coco
from coco_actors.crypto.outputs import random_outputs
from coco_actors.mint_client import MintClient
from coco_actors.operations.melt import blank_count
from coco_actors.proof_ledger import MintBalance
from coco_actors.records import Operation, OpState
from coco_actors.watcher import WatcherConfig
from coco_actors.wire import MeltQuoteState, Proof

CALLERS = 8
#: Chains start from proofs of 2^TOP sat; a chain sends 2^(TOP-1), 2^(TOP-2), ...
TOP = 20
#: Spare 2^TOP proofs before every run (a run of n sends uses about n / 10 chains).
FUND_SPARE = 8
#: No single run may take longer than this (a stuck mint or wallet ends the run).
RUN_TIMEOUT = 240.0
CHILD = Path(__file__).resolve().parent / "child_open.py"
#: Every melt pays an invoice of this many sat with one proof of MELT_INPUT (fee-0
#: mint): the reserve is 2 sat, so 101 sat are needed and the surplus comes back as
#: NUT-08 change. The amount is odd so that the change (128 - 99 - 1 = 28: 16, 8, 4)
#: is always even and can never make up 101 exactly: every wallet melt stays a
#: direct melt of one 128-sat proof, like the raw one.
MELT_AMOUNT = 99
MELT_INPUT = 128


@dataclass(frozen=True, slots=True)
class Config:
    runs: int
    swaps: int              # per run, for the raw bound and the wallet, both modes
    exact: int              # exact-match sends per run
    scale_sizes: tuple[int, ...]
    scale_timeout: float    # per open of the largest size (child process)
    ws_samples: int
    poll_samples: int
    poll_interval: float
    melts: int              # per run, raw and wallet each (after one warm-up melt)
    diagnose: bool = False  # also run the swap sends with the watcher off

    @classmethod
    def full(cls, runs: int) -> Config:
        return cls(runs=runs, swaps=120, exact=1000, scale_sizes=(1000, 10000),
                   scale_timeout=120.0, ws_samples=10, poll_samples=6, poll_interval=1.0,
                   melts=30)

    @classmethod
    def quick(cls, runs: int) -> Config:
        return cls(runs=runs, swaps=30, exact=200, scale_sizes=(200, 1000),
                   scale_timeout=60.0, ws_samples=4, poll_samples=3, poll_interval=1.0,
                   melts=10)


@dataclass(slots=True)
class Context:
    url: str                # normalized mint url
    raw: RawMint
    work: Path
    cfg: Config
    log: Any                # print-like progress logger
    mint_cpu: Callable[[], float]  # CPU seconds the mint process has used so far
    invoice_url: str | None = None  # a second mint (long incoming delay): invoices to melt


def _timed(ctx: Context, run: Run, callers: int, work: Callable[[int], None]) -> None:
    """Run ``work`` in ``callers`` threads; fill in wall time, this process's CPU time
    and the mint's CPU time per operation."""
    cpu, mint = time.process_time(), ctx.mint_cpu()
    run.wall_s = run_callers(callers, work, RUN_TIMEOUT)
    run.cpu_s = time.process_time() - cpu
    run.ops = len(run.latencies)
    mint_ms = 1000 * (ctx.mint_cpu() - mint)
    run.extra["mint_cpu_ms_per_op"] = mint_ms / run.ops if run.ops else math.nan


# --- 1, 2, 4: the mint bound and sends that need a swap ---------------------------------


def raw_swaps(ctx: Context, inputs: list[Proof], callers: int) -> Run:
    """NUT-03 swaps of one 2-sat proof into two 1-sat outputs, straight to the mint."""
    raw, run, lock = ctx.raw, Run(), threading.Lock()
    todo = list(inputs)

    def work(_: int) -> None:
        while True:
            with lock:
                if not todo:
                    return
                proof = todo.pop()
            outputs = random_outputs([1, 1], raw.keyset.id)
            started = time.perf_counter()
            try:
                raw.client.swap([proof], [o.blinded for o in outputs])
            except Exception as exc:  # recorded: errors are part of the result
                with lock:
                    run.errors.append(repr(exc))
                continue
            with lock:
                run.latencies.append(time.perf_counter() - started)

    _timed(ctx, run, callers, work)
    return run


def wallet_swap_sends(ctx: Context, coco: Coco, planner: LevelPlanner, n: int,
                      callers: int) -> tuple[Run, list[str], list[str]]:
    """``n`` sends of ``2^j`` from a proof of ``2^(j+1)``: prepare + execute, each 1 -> 2."""
    run, lock = Run(), threading.Lock()
    tokens: list[str] = []
    ids: list[str] = []
    shape = {"not_one_to_two": 0}
    issued = itertools.count()

    def work(_: int) -> None:
        while next(issued) < n:
            level = planner.take(timeout=30.0)
            if level is None:
                with lock:
                    run.errors.append("planner: no amount fits (funding exhausted)")
                return
            started = time.perf_counter()
            try:
                prepared = coco.send.prepare_send(ctx.url, 1 << level)
            except Exception as exc:
                planner.released(level)
                with lock:
                    run.errors.append(f"prepare: {exc!r}")
                continue
            planner.reserved(level)
            bad = not prepared.needs_swap or prepared.input_amount != 2 << level
            if bad:
                with lock:
                    run.errors.append(f"send of 2^{level}: needs_swap {prepared.needs_swap},"
                                      f" input {prepared.input_amount}")
            try:
                op, token = coco.send.execute_prepared_send(prepared.id)
            except Exception as exc:
                planner.lost(level)
                with lock:
                    run.errors.append(f"execute: {exc!r}")
                continue
            elapsed = time.perf_counter() - started
            planner.done(level)
            with lock:
                run.latencies.append(elapsed)
                tokens.append(token)
                ids.append(op.id)
                shape["not_one_to_two"] += bad

    planner.start_window()
    _timed(ctx, run, callers, work)
    run.extra.update(mean_in_flight=round(planner.mean_busy(), 2), **shape)
    if shape["not_one_to_two"]:
        run.errors.append(f"{shape['not_one_to_two']} sends were not a 1 -> 2 swap")
    return run, tokens, ids


def _fund(coco: Coco, url: str, planner: LevelPlanner, want: int) -> None:
    for _ in range(max(0, want - planner.spendable_top())):
        quote = coco.mint.create_quote(url, 1 << TOP)
        op = coco.mint.redeem(quote.id, timeout=30)
        if op.state != "completed":
            raise RuntimeError(f"funding mint operation ended {op.state}")
        planner.fund(1)


def _settle(ctx: Context, coco: Coco, planner: LevelPlanner, finalized: Finalized | None,
            tokens: list[str], ids: list[str]) -> dict[str, Any]:
    """Between runs: send the chains' leftovers away (exact match, no swap), let the
    recipient claim every token, and wait until the wallet has finalized them all
    (through its watcher, or with ``check_pending`` when it has none)."""
    tokens, ids = list(tokens), list(ids)
    leftovers = planner.leftovers()
    if leftovers:
        prepared = coco.send.prepare_send(ctx.url, leftovers)
        if prepared.needs_swap:
            raise RuntimeError(f"draining {leftovers} sat needed a swap: planner out of step")
        op, token = coco.send.execute_prepared_send(prepared.id)
        planner.drained()
        tokens.append(token)
        ids.append(op.id)
    spendable = coco.balance()[ctx.url].spendable
    if spendable != planner.spendable_top() << TOP:
        raise RuntimeError(f"wallet holds {spendable} sat, the planner expected "
                           f"{planner.spendable_top()} proofs of 2^{TOP}: out of step")
    started = time.perf_counter()
    ctx.raw.claim(tokens)
    if finalized is not None:
        ok = finalized.wait_for(ids, timeout=60.0)
    else:
        ok = all(op.state == "completed" for op in coco.send.check_pending())
    return {"claimed": len(ids), "all_finalized": ok,
            "finalize_all_s": round(time.perf_counter() - started, 3)}


@dataclass(slots=True)
class _SwapWallet:
    """One wallet of the swap scenario, with its planner and finalization counter."""

    name: str
    coco: Coco
    planner: LevelPlanner
    finalized: Finalized | None


def swaps(ctx: Context) -> dict[str, Any]:
    """Interleaved per run: raw swaps, then the wallet's sends, sequential then 8 callers.

    With ``cfg.diagnose`` a second wallet without the watcher runs right after the
    first, to show what watching every pending send costs.
    """
    cfg, raw = ctx.cfg, ctx.raw
    inputs = raw.mint([2] * (cfg.runs * 2 * cfg.swaps))
    wallets: list[_SwapWallet] = []
    try:
        for name, watcher in (("wallet", True), ("nowatch", False))[:2 if cfg.diagnose else 1]:
            coco = open_wallet(ctx.work / f"swap-sends-{name}", ctx.url, watcher=watcher)
            wallets.append(_SwapWallet(name, coco, LevelPlanner(TOP),
                                       Finalized(coco) if watcher else None))
        out: dict[str, list[dict[str, Any]]] = {}
        for rep in range(cfg.runs):
            for callers, mode in ((1, "seq"), (CALLERS, "conc")):
                batch = [inputs.pop() for _ in range(cfg.swaps)]
                raw_run = raw_swaps(ctx, batch, callers)
                out.setdefault(f"raw_{mode}", []).append(raw_run.to_json())
                for w in wallets:
                    _fund(w.coco, ctx.url, w.planner, cfg.swaps // 10 + FUND_SPARE)
                    run, tokens, ids = wallet_swap_sends(ctx, w.coco, w.planner, cfg.swaps,
                                                         callers)
                    run.extra.update(_settle(ctx, w.coco, w.planner, w.finalized, tokens, ids))
                    run.extra["ratio"] = run.rate / raw_run.rate if raw_run.rate else 0.0
                    out.setdefault(f"{w.name}_{mode}", []).append(run.to_json())
                    ctx.log(f"  run {rep + 1} {mode:4}: raw {raw_run.rate:5.1f} swaps/s, "
                            f"{w.name} {run.rate:5.1f} sends/s (ratio {run.extra['ratio']:.2f},"
                            f" {run.cpu_ms_per_op:.2f} ms CPU/send, mint "
                            f"{run.extra['mint_cpu_ms_per_op']:.1f} vs "
                            f"{raw_run.extra['mint_cpu_ms_per_op']:.1f} ms CPU/op, "
                            f"p95 {run.p(95):.0f} ms, {len(run.errors)} errors, "
                            f"{run.extra['mean_in_flight']} in flight)")
        return out
    finally:
        for w in wallets:
            w.coco.close()


# --- 3: exact-match sends ----------------------------------------------------------------


def exact_sends(ctx: Context) -> dict[str, Any]:
    """Sends of 1 sat from 1-sat proofs: no swap, only durable local transitions."""
    cfg = ctx.cfg
    proofs = ctx.raw.mint([1] * (cfg.runs * 2 * cfg.exact))
    out: dict[str, list[dict[str, Any]]] = {"seq": [], "conc": []}
    for rep in range(cfg.runs):
        for callers, mode in ((1, "seq"), (CALLERS, "conc")):
            data_dir = ctx.work / f"exact-{rep}-{mode}"
            open_wallet(data_dir, ctx.url).close()
            inject_proofs(data_dir, ctx.url, [proofs.pop() for _ in range(cfg.exact)])
            txn_before = last_txn_id(data_dir)
            coco = Coco.open(data_dir)
            try:
                run = _exact_run(ctx, coco, cfg.exact, callers)
            finally:
                started = time.perf_counter()
                coco.close()
            run.extra["close_s"] = round(time.perf_counter() - started, 3)
            # every LMDB write transaction is committed with fsync (sync=True)
            run.extra["commits_per_send"] = (last_txn_id(data_dir) - txn_before) / cfg.exact
            out[mode].append(run.to_json())
            ctx.log(f"  run {rep + 1} {mode:4}: {run.rate:6.1f} sends/s, p50 {run.p(50):.2f} ms,"
                    f" {run.cpu_ms_per_op:.2f} ms CPU/send, "
                    f"{run.extra['commits_per_send']:.2f} commits/send, {len(run.errors)} errors")
    return out


def _exact_run(ctx: Context, coco: Coco, n: int, callers: int) -> Run:
    run, lock = Run(), threading.Lock()
    issued = itertools.count()
    swapped = {"n": 0}

    def work(_: int) -> None:
        while next(issued) < n:
            started = time.perf_counter()
            try:
                prepared = coco.send.prepare_send(ctx.url, 1)
                coco.send.execute_prepared_send(prepared.id)
            except Exception as exc:
                with lock:
                    run.errors.append(repr(exc))
                continue
            elapsed = time.perf_counter() - started
            with lock:
                run.latencies.append(elapsed)
                swapped["n"] += prepared.needs_swap

    _timed(ctx, run, callers, work)
    run.extra["needed_a_swap"] = swapped["n"]
    if swapped["n"]:
        run.errors.append(f"{swapped['n']} sends needed a swap")
    return run


# --- 5: outstanding work at open ---------------------------------------------------------


def create_pending(ctx: Context, data_dir: Path, proofs: list[Proof]) -> dict[str, Any]:
    """A wallet with ``len(proofs)`` pending 1-sat sends (exact match, no mint call).

    Sends are made 1000 at a time, reopening the wallet (without recovery) between
    chunks: proofs can only be added to a closed wallet, and a chunk keeps the
    spendable set (which selection scans) small.
    """
    started = time.perf_counter()
    open_wallet(data_dir, ctx.url, watcher=False).close()
    send_s = 0.0
    for start in range(0, len(proofs), 1000):
        chunk = proofs[start:start + 1000]
        inject_proofs(data_dir, ctx.url, chunk)
        coco = Coco.open(data_dir, watcher=False, recover=False)
        try:
            t0 = time.perf_counter()
            for _ in chunk:
                prepared = coco.send.prepare_send(ctx.url, 1)
                coco.send.execute_prepared_send(prepared.id)
            send_s += time.perf_counter() - t0
        finally:
            coco.close()
    return {"create_s": round(time.perf_counter() - started, 2), "send_s": round(send_s, 2),
            "sends_per_s": round(len(proofs) / send_s, 1) if send_s else None}


def open_in_child(data_dir: Path, timeout: float) -> dict[str, Any]:
    """``Coco.open`` (rehydration and recovery) in a fresh process; its report."""
    cmd = [sys.executable, str(CHILD), str(data_dir)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        stdout, code, timed_out = proc.stdout, proc.returncode, False
        stderr = proc.stderr
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        code, timed_out = None, True
    reports = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = reports[-1] if reports else {}
    result.update(timed_out=timed_out, exit_code=code,
                  child_wall_s=round(time.perf_counter() - started, 2))
    if "open_s" not in result:
        result["open_s"] = float("inf") if timed_out else float("nan")
        result["stderr_tail"] = stderr[-1500:]
    return result


def scale(ctx: Context) -> dict[str, Any]:
    cfg = ctx.cfg
    proofs = ctx.raw.mint([1] * sum(cfg.scale_sizes))
    out: dict[str, Any] = {}
    for size in cfg.scale_sizes:
        data_dir = ctx.work / f"scale-{size}"
        chunk = [proofs.pop() for _ in range(size)]
        created = create_pending(ctx, data_dir, chunk)
        ctx.log(f"  {size} pending sends created in {created['create_s']} s "
                f"({created['sends_per_s']} sends/s)")
        timeout = cfg.scale_timeout * max(0.25, size / max(cfg.scale_sizes))
        opens = []
        for rep in range(cfg.runs):
            r = open_in_child(data_dir, timeout + 30.0)
            opens.append(r)
            ctx.log(f"  run {rep + 1} {size}: open {r['open_s']:.2f} s, "
                    f"RSS {r.get('rss_mb', float('nan')):.0f} MB, "
                    f"threads {r.get('threads')}, recovery {r.get('recovery')}"
                    + (" TIMEOUT" if r["timed_out"] else ""))
        out[str(size)] = {"creation": created, "opens": opens}
    return out


# --- 6: finalization latency -------------------------------------------------------------


def finalization(ctx: Context) -> dict[str, Any]:
    cfg = ctx.cfg
    data_dir = ctx.work / "finalize"
    coco = open_wallet(data_dir, ctx.url, watcher=False)
    try:
        quote = coco.mint.create_quote(ctx.url, 4096)
        coco.mint.redeem(quote.id, timeout=30)
    finally:
        coco.close()
    modes = (("websocket", WatcherConfig(), cfg.ws_samples),
             ("polling", WatcherConfig(websocket=False, poll_interval=cfg.poll_interval),
              cfg.poll_samples))
    out: dict[str, Any] = {"poll_interval_s": cfg.poll_interval}
    for name, config, samples in modes:
        coco = Coco.open(data_dir, watcher=config)
        try:
            finalized = Finalized(coco)
            try:  # warm-up: connects the websocket
                _finalize_once(ctx, coco, finalized, 1.0, 10.0)
            except Exception as exc:
                ctx.log(f"  {name}: warm-up send not finalized: {exc!r}")
            runs = []
            # a finalization slower than this is an error (polling: three intervals)
            limit = 3.0 if name == "websocket" else 3 * cfg.poll_interval + 2.0
            for rep in range(cfg.runs):
                lat: list[float] = []
                after_swap: list[float] = []
                errors: list[str] = []
                for _ in range(samples):
                    if len(errors) >= 2:  # broken: do not spend the time budget on it
                        errors.append("skipped after two failures")
                        continue
                    pause = (0.3 if name == "websocket"
                             else random.uniform(0.2, 0.2 + cfg.poll_interval))
                    try:
                        since_start, since_end = _finalize_once(ctx, coco, finalized, pause,
                                                                limit)
                        lat.append(since_start)
                        after_swap.append(since_end)
                    except Exception as exc:
                        errors.append(repr(exc))
                run = Run(ops=len(lat), latencies=lat, errors=errors)
                if after_swap:
                    run.extra["p50_after_swap_ms"] = 1000 * percentile(after_swap, 50)
                runs.append(run.to_json())
                ctx.log(f"  run {rep + 1} {name}: p50 {run.p(50):.0f} ms, p95 {run.p(95):.0f} ms,"
                        f" {len(errors)} errors")
            out[name] = runs
        finally:
            coco.close()
    return out


def _finalize_once(ctx: Context, coco: Coco, finalized: Finalized, pause: float,
                   limit: float) -> tuple[float, float]:
    """One pending send, claimed by the recipient after ``pause`` s; seconds from the
    start and from the end of the recipient's swap to ``send:finalized``."""
    prepared = coco.send.prepare_send(ctx.url, random.randint(1, 8))
    op, token = coco.send.execute_prepared_send(prepared.id)
    time.sleep(pause)  # let the watcher subscribe (websocket) / randomize the poll phase
    started = time.perf_counter()
    ctx.raw.claim([token])
    ended = time.perf_counter()
    if not finalized.wait_for([op.id], timeout=limit):
        raise TimeoutError(f"send {op.id} not finalized within {limit:g} s of the claim")
    at = finalized.at[op.id]
    return at - started, at - ended



# --- 7: melt latency against the raw melt -------------------------------------------------


def melt(ctx: Context) -> dict[str, Any]:
    """Per run: ``cfg.melts`` raw melts and as many wallet melts, alternating.

    Both sides pay invoices of the second mint (``ctx.invoice_url``) of the same
    amount, one melt at a time, each with one proof of ``MELT_INPUT`` sat and NUT-08
    blanks for the surplus. Alternating raw and wallet melts (the order swapped at
    every pair) makes both see the same mint and the same machine load; each side
    first makes one untimed warm-up melt. A fresh wallet per run holds only its
    ``MELT_INPUT`` proofs (written into its store, like the 1-sat proofs of (3)).
    """
    cfg = ctx.cfg
    if ctx.invoice_url is None:
        raise RuntimeError("the melt scenario needs the invoice mint (run.py starts it)")
    per_side = cfg.melts + 1  # + the warm-up melt
    proofs = ctx.raw.mint([MELT_INPUT] * (cfg.runs * 2 * per_side))
    out: dict[str, Any] = {"amount_sat": MELT_AMOUNT, "input_sat": MELT_INPUT,
                           "raw": [], "wallet": []}
    with MintClient(ctx.invoice_url) as payee:
        for rep in range(cfg.runs):
            invoices = [payee.create_mint_quote(MELT_AMOUNT).request
                        for _ in range(2 * per_side)]
            raw_inputs = [proofs.pop() for _ in range(per_side)]
            data_dir = ctx.work / f"melt-{rep}"
            open_wallet(data_dir, ctx.url).close()
            inject_proofs(data_dir, ctx.url, [proofs.pop() for _ in range(per_side)])
            coco = Coco.open(data_dir)
            try:
                raw_run, wallet_run = _melt_run(ctx, coco, raw_inputs, invoices)
            finally:
                coco.close()
            out["raw"].append(raw_run.to_json())
            out["wallet"].append(wallet_run.to_json())
            ctx.log(f"  run {rep + 1}: raw p50 {raw_run.p(50):.1f} ms, wallet p50 "
                    f"{wallet_run.p(50):.1f} ms (overhead {wallet_run.extra['overhead_ms']:.1f}"
                    f" ms, paired {wallet_run.extra['paired_overhead_ms']:.1f}; prepare "
                    f"{wallet_run.extra['prepare_p50_ms']:.1f} + execute "
                    f"{wallet_run.extra['execute_p50_ms']:.1f}), wallet CPU "
                    f"{wallet_run.cpu_ms_per_op:.2f} ms/melt (raw "
                    f"{raw_run.cpu_ms_per_op:.2f}), mint CPU per melt raw "
                    f"{raw_run.extra['mint_cpu_ms_per_op']:.0f} / wallet "
                    f"{wallet_run.extra['mint_cpu_ms_per_op']:.0f} ms, errors "
                    f"{len(raw_run.errors)} raw / {len(wallet_run.errors)} wallet, "
                    f"load {wallet_run.extra['loadavg_1m']:.1f}")
    return out


def _melt_run(ctx: Context, coco: Coco, raw_inputs: list[Proof],
              invoices: list[str]) -> tuple[Run, Run]:
    """One run: warm-ups, then raw and wallet melts in pairs; the balance checked."""
    raw, wallet = _RawMelts(ctx), _WalletMelts(ctx, coco)
    load = os.getloadavg()[0]
    before = coco.balance()[ctx.url]
    pairs = list(zip(raw_inputs, invoices[0::2], invoices[1::2], strict=True))
    proof, raw_invoice, wallet_invoice = pairs[0]
    raw.melt(proof, raw_invoice, warm_up=True)
    wallet.melt(wallet_invoice, warm_up=True)
    deadline = time.monotonic() + RUN_TIMEOUT
    for i, (proof, raw_invoice, wallet_invoice) in enumerate(pairs[1:]):
        if time.monotonic() > deadline:
            wallet.run.errors.append(f"run stopped after {i} pairs: over {RUN_TIMEOUT:g} s")
            break
        if i % 2:
            wallet.melt(wallet_invoice)
            raw.melt(proof, raw_invoice)
        else:
            raw.melt(proof, raw_invoice)
            wallet.melt(wallet_invoice)
    wallet.check_balance(before)
    paired = [w - r for r, w in zip(raw.by_pair, wallet.by_pair, strict=True)
              if r is not None and w is not None]
    for side in (raw, wallet):
        side.finish(load)
    wallet.run.extra.update(
        overhead_ms=wallet.run.p(50) - raw.run.p(50),
        paired_overhead_ms=1000 * statistics.median(paired) if paired else math.nan)
    return raw.run, wallet.run


class _MeltSide:
    """One side's timed melts: latency (in two parts), this process's CPU and the
    mint's CPU, each measured over the melt's own window only."""

    PARTS: tuple[str, str] = ("", "")

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.run = Run()
        self.parts: tuple[list[float], list[float]] = ([], [])
        self.by_pair: list[float | None] = []  # latency per pair (None: failed)
        self.fees: set[int] = set()
        self._mint_cpu_s = 0.0

    def _measure(self, step: Callable[[], tuple[float, float] | None], warm_up: bool) -> None:
        cpu, mint = time.process_time(), self.ctx.mint_cpu()
        timed = step()
        if warm_up:
            return
        self.run.cpu_s += time.process_time() - cpu
        self._mint_cpu_s += self.ctx.mint_cpu() - mint
        self.by_pair.append(None if timed is None else sum(timed))
        if timed is not None:
            self.parts[0].append(timed[0])
            self.parts[1].append(timed[1])
            self.run.latencies.append(sum(timed))
            self.run.wall_s += sum(timed)

    def finish(self, load: float) -> None:
        run = self.run
        run.ops = len(run.latencies)
        run.extra.update({
            "loadavg_1m": load, f"{self.PARTS[0]}_p50_ms": _p50_ms(self.parts[0]),
            f"{self.PARTS[1]}_p50_ms": _p50_ms(self.parts[1]),
            "mint_cpu_ms_per_op": 1000 * self._mint_cpu_s / run.ops if run.ops else math.nan,
            "fee_paid_sat": sorted(self.fees)})


class _RawMelts(_MeltSide):
    """NUT-05/23 melts straight to the mint: quote, then melt one proof with blanks.

    The blanks are made before the clock starts (as the raw swaps' outputs are) and
    the change is not unblinded: the latency is the two requests and nothing else.
    """

    PARTS = ("quote", "melt")

    def melt(self, proof: Proof, invoice: str, warm_up: bool = False) -> None:
        self._measure(lambda: self._one(proof, invoice), warm_up)

    def _one(self, proof: Proof, invoice: str) -> tuple[float, float] | None:
        raw = self.ctx.raw
        blanks = random_outputs([1] * blank_count(proof.amount - MELT_AMOUNT), raw.keyset.id)
        started = time.perf_counter()
        try:
            quote = raw.client.create_melt_quote(invoice)
            quoted = time.perf_counter()
            paid = raw.client.melt(quote.quote, [proof], [b.blinded for b in blanks])
        except Exception as exc:  # recorded: errors are part of the result
            self.run.errors.append(f"raw melt: {exc!r}")
            return None
        ended = time.perf_counter()
        change = sum(s.amount for s in paid.change)
        fee_paid = proof.amount - MELT_AMOUNT - change
        self.fees.add(fee_paid)
        problems = []
        if quote.amount != MELT_AMOUNT:
            problems.append(f"quote for {quote.amount} sat")
        if paid.state != MeltQuoteState.PAID:
            problems.append(f"melt answered {paid.state.value}")
        if len(paid.change) > len(blanks) or not 0 <= fee_paid <= quote.fee_reserve:
            problems.append(f"change {change} sat on {len(paid.change)} of {len(blanks)} "
                            f"blanks (fee paid {fee_paid}, reserve {quote.fee_reserve})")
        if problems:
            self.run.errors.append("raw melt: " + "; ".join(problems))
            return None
        return quoted - started, ended - quoted


class _WalletMelts(_MeltSide):
    """``prepare_melt`` + ``execute_prepared_melt``. Every melt must be a direct melt
    of one ``MELT_INPUT`` proof (the raw shape), completed, its change adding up."""

    PARTS = ("prepare", "execute")

    def __init__(self, ctx: Context, coco: Coco) -> None:
        super().__init__(ctx)
        self.coco = coco
        self.done: list[Operation] = []

    def melt(self, invoice: str, warm_up: bool = False) -> None:
        self._measure(lambda: self._one(invoice), warm_up)

    def _one(self, invoice: str) -> tuple[float, float] | None:
        coco, url = self.coco, self.ctx.url
        started = time.perf_counter()
        try:
            prepared = coco.melt.prepare_melt(url, invoice)
            mid = time.perf_counter()
            op = coco.melt.execute_prepared_melt(prepared.id)
        except Exception as exc:
            self.run.errors.append(f"wallet melt: {exc!r}")
            return None
        ended = time.perf_counter()
        self.done.append(op)
        self.fees.add(op.fee_paid)
        problems = []
        if (prepared.needs_swap or prepared.input_amount != MELT_INPUT
                or len(prepared.input_ys) != 1 or prepared.fee != 0):
            problems.append(f"not a direct melt of one {MELT_INPUT}-sat proof: needs_swap "
                            f"{prepared.needs_swap}, input {prepared.input_amount} sat in "
                            f"{len(prepared.input_ys)} proofs, fee {prepared.fee}")
        if op.state != OpState.COMPLETED:
            problems.append(f"melt ended {op.state.value} ({op.error})")
        elif (op.amount != MELT_AMOUNT or not 0 <= op.fee_paid <= op.fee_reserve
              or op.change_amount != op.input_amount - op.amount - op.fee_paid - op.fee):
            problems.append(f"amounts do not add up: amount {op.amount}, input "
                            f"{op.input_amount}, change {op.change_amount}, fee paid "
                            f"{op.fee_paid}, fee {op.fee}")
        if problems:
            self.run.errors.append("wallet melt: " + "; ".join(problems))
            return None
        return mid - started, ended - mid

    def check_balance(self, before: MintBalance) -> None:
        """The spendable balance fell by exactly ``amount + fee_paid + fee`` of every
        completed melt (the warm-up included), and nothing is left reserved."""
        after = self.coco.balance()[self.ctx.url]
        spent = before.spendable - after.spendable
        expected = sum(op.amount + op.fee_paid + op.fee for op in self.done
                       if op.state == OpState.COMPLETED)
        ok = spent == expected and after.reserved == 0 and after.pending == 0
        if not ok:
            self.run.errors.append(f"balance: spendable fell by {spent} sat, the melts account"
                                   f" for {expected} (reserved {after.reserved}, pending "
                                   f"{after.pending})")
        self.run.extra.update(balance_ok=ok, spent_sat=spent, accounted_sat=expected)


def _p50_ms(values: list[float]) -> float:
    return 1000 * percentile(values, 50) if values else math.nan
