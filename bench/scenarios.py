"""The six scenarios of issue 7. Each returns plain data (see ``run.py`` for the table).

Every scenario runs ``cfg.runs`` times; the mint bound and the wallet sends are
interleaved run by run, so each ratio pairs a wallet run with the raw run just
before it.
"""

from __future__ import annotations

import itertools
import json
import math
import random
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
from coco_actors.watcher import WatcherConfig
from coco_actors.wire import Proof

CALLERS = 8
#: Chains start from proofs of 2^TOP sat; a chain sends 2^(TOP-1), 2^(TOP-2), ...
TOP = 20
#: Spare 2^TOP proofs before every run (a run of n sends uses about n / 10 chains).
FUND_SPARE = 8
#: No single run may take longer than this (a stuck mint or wallet ends the run).
RUN_TIMEOUT = 240.0
CHILD = Path(__file__).resolve().parent / "child_open.py"


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
    diagnose: bool = False  # also run the swap sends with the watcher off

    @classmethod
    def full(cls, runs: int) -> Config:
        return cls(runs=runs, swaps=120, exact=1000, scale_sizes=(1000, 10000),
                   scale_timeout=120.0, ws_samples=10, poll_samples=6, poll_interval=1.0)

    @classmethod
    def quick(cls, runs: int) -> Config:
        return cls(runs=runs, swaps=30, exact=200, scale_sizes=(200, 1000),
                   scale_timeout=60.0, ws_samples=4, poll_samples=3, poll_interval=1.0)


@dataclass(slots=True)
class Context:
    url: str                # normalized mint url
    raw: RawMint
    work: Path
    cfg: Config
    log: Any                # print-like progress logger
    mint_cpu: Callable[[], float]  # CPU seconds the mint process has used so far


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

