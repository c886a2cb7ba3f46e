"""coco-actors benchmarks (issues 7, 11): ``./scripts/bench.sh`` or ``python bench/run.py``.

Starts its own Nutshell mint on 127.0.0.1 (input fee 0; for the melts a second
one whose invoices are paid), runs every scenario
``--runs`` times (at least 3), prints one table of medians with the spread
(min-max over the runs) and writes everything measured to ``bench-results.json``.

1. mint bound: raw NUT-03 swaps (1 input -> 2 outputs), sequential and 8 threads
2. sends that need a swap (each 1 -> 2), sequential and 8 callers; ratio to (1)
3. exact-match sends (no swap, only durable local transitions)
4. wallet CPU per send of (2), this process only (the mint is another process)
5. Coco.open with 1k and 10k pending sends, in a fresh process: time and memory
6. finalization latency: recipient's swap -> send:finalized, websocket and polling
7. melt: prepare + execute against the raw melt (quote + melt), sequential
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import scenarios
from scenarios import Config, Context
from support import RawMint, Summary, machine, process_cpu_s

from coco_actors.mint_client import normalize_mint_url
from devtools.devmint import DevMint, FakeWalletConfig, ensure_nutshell

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS: dict[str, tuple[str, Callable[[Context], dict[str, Any]]]] = {
    "swaps": ("1, 2, 4: mint bound and sends that need a swap", scenarios.swaps),
    "exact": ("3: exact-match sends", scenarios.exact_sends),
    "finalization": ("6: finalization latency", scenarios.finalization),
    "scale": ("5: pending sends at open", scenarios.scale),
    "melt": ("7: melt latency against the raw melt", scenarios.melt),
}
ALIASES = {"1": "swaps", "2": "swaps", "4": "swaps", "3": "exact", "5": "scale",
           "6": "finalization", "7": "melt"}
#: The invoice mint's quotes must not pay themselves while a melt pays them.
INVOICE_MINT = FakeWalletConfig(incoming_delay=600)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer iterations and smaller sizes (for development)")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (>= 3)")
    parser.add_argument("--only", default="",
                        help="comma-separated scenarios: swaps, exact, scale, finalization, "
                             "melt (or their numbers 1-7)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench-results.json")
    parser.add_argument("--diagnose", action="store_true",
                        help="also run the sends of (2) with the watcher off (extra rows)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (mint and wallet data)")
    opts = parser.parse_args(argv)
    if opts.runs < 3:
        parser.error("--runs must be at least 3 (medians and spread need three runs)")
    selected = _selection(parser, opts.only)
    cfg = Config.quick(opts.runs) if opts.quick else Config.full(opts.runs)
    cfg = dataclasses.replace(cfg, diagnose=opts.diagnose)

    began = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f} s] {msg}", file=sys.stderr, flush=True)

    results: dict[str, Any] = {"machine": machine(), "git": _git(), "config": {
        "quick": opts.quick, **{k: getattr(cfg, k) for k in cfg.__slots__}}}
    log("installing the dev mint (cached after the first time)")
    t0 = time.perf_counter()
    ensure_nutshell()
    results["mint_install_s"] = round(time.perf_counter() - t0, 1)
    work = Path(tempfile.mkdtemp(prefix="coco-bench-"))
    mint = DevMint(work / "mint", input_fee_ppk=0)
    # only the melts need it: the other scenarios run with one mint process, as before
    payee = (DevMint(work / "invoice-mint", input_fee_ppk=0, fakewallet=INVOICE_MINT)
             if "melt" in selected else None)
    try:
        mint.start(timeout=60)
        log(f"mint up at {mint.url} (fee 0); work directory {work}")
        if payee is not None:
            payee.start(timeout=60)
            log(f"invoice mint up at {payee.url} (incoming delay "
                f"{INVOICE_MINT.incoming_delay:g} s)")
        raw = RawMint(mint.url)
        pid = mint.pid
        ctx = Context(url=normalize_mint_url(mint.url), raw=raw, work=work, cfg=cfg, log=log,
                      mint_cpu=lambda: process_cpu_s(pid),
                      invoice_url=payee.url if payee is not None else None)
        try:
            for key in selected:
                title, fn = SCENARIOS[key]
                log(f"scenario {title}")
                results.setdefault("loadavg_before", {})[key] = os.getloadavg()
                t0 = time.perf_counter()
                try:
                    results[key] = fn(ctx)
                except Exception as exc:  # one broken scenario must not hide the others
                    traceback.print_exc()
                    results[key] = {"failed": repr(exc)}
                results.setdefault("scenario_s", {})[key] = round(time.perf_counter() - t0, 1)
        finally:
            raw.close()
    finally:
        if payee is not None:
            payee.stop()
        mint.stop()
        if opts.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["total_s"] = round(time.perf_counter() - began, 1)
    rows = table_rows(results)
    results["table"] = rows
    opts.output.write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    print(render(rows, results))
    print(f"\nresults: {opts.output}")
    return 0


def _selection(parser: argparse.ArgumentParser, only: str) -> list[str]:
    if not only:
        return list(SCENARIOS)
    picked = []
    for item in (s.strip() for s in only.split(",") if s.strip()):
        key = ALIASES.get(item, item)
        if key not in SCENARIOS:
            parser.error(f"unknown scenario {item!r}")
        if key not in picked:
            picked.append(key)
    return [k for k in SCENARIOS if k in picked]


def _git() -> dict[str, Any]:
    """The commit measured, and whether the working tree had changes."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"),
            "dirty_paths": git("status", "--porcelain", "--", "coco_actors").splitlines()}


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


# --- the table -------------------------------------------------------------------------


Row = dict[str, Any]


def _row(scenario: str, measure: str, summary: Summary | None, unit: str, *,
         target: str = "", ok: bool | None = None, fmt: str = "{:.1f}",
         value: str | None = None) -> Row:
    spread = ""
    if value is None and summary is not None:
        def show(x: float) -> str:
            return "n/a" if math.isnan(x) else fmt.format(x)

        value = show(summary.median)
        if not math.isnan(summary.median):
            spread = f"{show(summary.low)}-{show(summary.high)}"
    return {"scenario": scenario, "measure": measure, "median": value or "", "spread": spread,
            "unit": unit, "target": target,
            "result": "" if ok is None else ("pass" if ok else "MISS"),
            "runs": list(summary.runs) if summary else []}


def table_rows(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    swaps = results.get("swaps")
    if swaps and "failed" not in swaps:
        rows += _swap_rows(swaps)
    elif swaps:
        rows.append(_row("1,2,4", "failed", None, "", value=swaps["failed"], ok=False))
    exact = results.get("exact")
    if exact and "failed" not in exact:
        for mode, label in (("seq", "sequential"), ("conc", "8 callers")):
            s = Summary.of(r["rate_per_s"] for r in exact[mode])
            errors = sum(r["errors"] for r in exact[mode])
            rows.append(_row("3 exact sends", f"{label}", s, "sends/s", target=">= 500",
                             ok=s.median >= 500 and errors == 0))
            rows.append(_row("", f"{label}: p50 latency", Summary.of(
                r["p50_ms"] for r in exact[mode]), "ms", fmt="{:.2f}"))
            rows.append(_row("", f"{label}: wallet CPU per send", Summary.of(
                r["cpu_ms_per_op"] for r in exact[mode]), "ms", fmt="{:.2f}"))
            rows.append(_row("", f"{label}: LMDB commits (fsynced) per send", Summary.of(
                r["commits_per_send"] for r in exact[mode]), "", fmt="{:.2f}"))
            rows.append(_row("", f"{label}: mint CPU per send (watcher subscriptions)",
                             Summary.of(r["mint_cpu_ms_per_op"] for r in exact[mode]), "ms",
                             fmt="{:.2f}"))
            rows.append(_row("", f"{label}: errors / sends needing a swap", None, "",
                             value=str(errors), target="0", ok=errors == 0))
    elif exact:
        rows.append(_row("3", "failed", None, "", value=exact["failed"], ok=False))
    scale = results.get("scale")
    if scale and "failed" not in scale:
        rows += _scale_rows(scale)
    elif scale:
        rows.append(_row("5", "failed", None, "", value=scale["failed"], ok=False))
    fin = results.get("finalization")
    if fin and "failed" not in fin:
        for mode in ("websocket", "polling"):
            label = mode if mode == "websocket" else f"polling every {fin['poll_interval_s']} s"
            p50 = Summary.of(r["p50_ms"] for r in fin[mode])
            p95 = Summary.of(r["p95_ms"] for r in fin[mode])
            errors = sum(r["errors"] for r in fin[mode])
            rows.append(_row("6 finalization", f"{label}: p50", p50, "ms", fmt="{:.0f}"))
            rows.append(_row("", f"{label}: p95", p95, "ms", fmt="{:.0f}"))
            if errors:
                rows.append(_row("", f"{label}: errors", None, "", value=str(errors),
                                 target="0", ok=False))
    elif fin:
        rows.append(_row("6", "failed", None, "", value=fin["failed"], ok=False))
    melt = results.get("melt")
    if melt and "failed" not in melt:
        rows += _melt_rows(melt)
    elif melt:
        rows.append(_row("7", "failed", None, "", value=melt["failed"], ok=False))
    return rows


def _melt_rows(res: dict[str, Any]) -> list[Row]:
    raw, wallet = res["raw"], res["wallet"]
    shape = f"{res['amount_sat']} sat from one {res['input_sat']}-sat proof, with change"
    rows = [_row("7 melt", f"raw quote + melt, sequential ({shape}): p50",
                 Summary.of(r["p50_ms"] for r in raw), "ms"),
            _row("", "raw: p95", Summary.of(r["p95_ms"] for r in raw), "ms"),
            _row("", "wallet prepare + execute, sequential: p50",
                 Summary.of(r["p50_ms"] for r in wallet), "ms"),
            _row("", "wallet: p95", Summary.of(r["p95_ms"] for r in wallet), "ms"),
            _row("", "wallet: prepare p50 / execute p50", None, "ms", value="{:.1f} / {:.1f}"
                 .format(Summary.of(r["prepare_p50_ms"] for r in wallet).median,
                         Summary.of(r["execute_p50_ms"] for r in wallet).median))]
    overhead = Summary.of(r["overhead_ms"] for r in wallet)
    met = overhead.median <= 5.0
    row = _row("", "wallet overhead per melt (wallet p50 - raw p50, same run)", overhead,
               "ms", target="<= 5 (issue 18; not yet required)")
    row["result"] = "met" if met else "not yet"
    rows.append(row)
    rows.append(_row("", "overhead, paired: median of (wallet - raw) per pair", Summary.of(
        r["paired_overhead_ms"] for r in wallet), "ms"))
    rows.append(_row("", "wallet CPU per melt", Summary.of(r["cpu_ms_per_op"] for r in wallet),
                     "ms", fmt="{:.2f}"))
    rows.append(_row("", "raw client CPU per melt (floor)",
                     Summary.of(r["cpu_ms_per_op"] for r in raw), "ms", fmt="{:.2f}"))
    rows.append(_row("", "mint CPU per raw melt / per wallet melt", None, "ms",
                     value="{:.1f} / {:.1f}".format(
                         Summary.of(r["mint_cpu_ms_per_op"] for r in raw).median,
                         Summary.of(r["mint_cpu_ms_per_op"] for r in wallet).median)))
    errors = sum(r["errors"] for r in raw) + sum(r["errors"] for r in wallet)
    balanced = all(r["balance_ok"] for r in wallet)
    rows.append(_row("", "errors (raw + wallet, incl. shape and balance checks)", None, "",
                     value=str(errors), target="0", ok=errors == 0))
    rows.append(_row("", "balance after each run = amount + fee_paid + fee", None, "",
                     value="exact" if balanced else "MISMATCH", target="exact", ok=balanced))
    return rows


def _swap_rows(res: dict[str, Any]) -> list[Row]:
    rows = []
    for mode, label in (("seq", "sequential"), ("conc", "8 threads")):
        rows.append(_row("1 mint bound", f"raw swaps 1->2, {label}",
                         Summary.of(r["rate_per_s"] for r in res[f"raw_{mode}"]), "swaps/s"))
    for mode, label in (("seq", "sequential"), ("conc", "8 callers")):
        runs = res[f"wallet_{mode}"]
        errors = sum(r["errors"] for r in runs)
        ratio = Summary.of(r["ratio"] for r in runs)
        rows.append(_row("2 swap sends", label, Summary.of(r["rate_per_s"] for r in runs),
                         "sends/s"))
        rows.append(_row("", f"{label}: ratio to (1)", ratio, "", fmt="{:.2f}",
                         target=">= 0.85", ok=ratio.median >= 0.85))
        rows.append(_row("", f"{label}: p50 latency",
                         Summary.of(r["p50_ms"] for r in runs), "ms"))
        rows.append(_row("", f"{label}: p95 latency",
                         Summary.of(r["p95_ms"] for r in runs), "ms"))
        rows.append(_row("", f"{label}: errors", None, "", value=str(errors), target="0",
                         ok=errors == 0))
        rows.append(_row("", f"{label}: sends in flight (mean)",
                         Summary.of(r["mean_in_flight"] for r in runs), "", fmt="{:.1f}"))
        if f"nowatch_{mode}" in res:
            off = res[f"nowatch_{mode}"]
            rows.append(_row("", f"{label}, watcher off: ratio to (1) (diagnostic)",
                             Summary.of(r["ratio"] for r in off), "", fmt="{:.2f}"))
    for mode, label in (("seq", "sequential"), ("conc", "8 callers")):
        cpu = Summary.of(r["cpu_ms_per_op"] for r in res[f"wallet_{mode}"])
        rows.append(_row("4 wallet CPU", f"per send of (2), {label}", cpu, "ms",
                         fmt="{:.2f}", target="<= 3", ok=cpu.median <= 3.0))
        if f"nowatch_{mode}" in res:
            rows.append(_row("", f"{label}, watcher off (diagnostic)", Summary.of(
                r["cpu_ms_per_op"] for r in res[f"nowatch_{mode}"]), "ms", fmt="{:.2f}"))
    rows.append(_row("", "raw client, per swap of (1), sequential (floor)",
                     Summary.of(r["cpu_ms_per_op"] for r in res["raw_seq"]), "ms",
                     fmt="{:.2f}"))
    for mode, label in (("seq", "sequential"), ("conc", "8 callers")):
        rows.append(_row("", f"mint CPU per raw swap / per send, {label}", None, "ms",
                         value="{:.1f} / {:.1f}".format(
                             Summary.of(r["mint_cpu_ms_per_op"] for r in res[f"raw_{mode}"]
                                        ).median,
                             Summary.of(r["mint_cpu_ms_per_op"]
                                        for r in res[f"wallet_{mode}"]).median)))
    return rows


def _scale_rows(res: dict[str, Any]) -> list[Row]:
    rows = []
    sizes = sorted(res, key=int)
    medians: dict[str, tuple[float, float, float]] = {}
    for size in sizes:
        opens = res[size]["opens"]
        largest = size == sizes[-1]
        t = Summary.of(o["open_s"] for o in opens)
        mem = Summary.of(o.get("rss_mb", math.nan) for o in opens)
        timed_out = sum(o["timed_out"] for o in opens)
        label = f"{int(size):,} pending"
        rows.append(_row("5 scale", f"{label}: create (exact sends)", None, "s",
                         value=f"{res[size]['creation']['create_s']:.1f}"))
        rows.append(_row("", f"{label}: Coco.open + recover" +
                         (f" ({timed_out} timed out)" if timed_out else ""), t, "s",
                         fmt="{:.2f}", target="< 10" if largest else "",
                         ok=(t.median < 10 and not timed_out) if largest else None))
        rows.append(_row("", f"{label}: RSS after open", mem, "MB", fmt="{:.0f}",
                         target="< 300" if largest else "",
                         ok=(mem.median < 300) if largest else None))
        settled = Summary.of(o.get("rss_settled_mb", math.nan) for o in opens)
        base = Summary.of(o.get("rss_before_mb", math.nan) for o in opens)
        settle_s = opens[0].get("settle_s", math.nan)
        rows.append(_row("", f"{label}: RSS {settle_s:g} s later (before open: "
                         f"{base.median:.0f} MB)", settled, "MB", fmt="{:.0f}"))
        summaries = [o.get("recovery") for o in opens]
        rows.append(_row("", f"{label}: recovery summary (run 1)", None, "",
                         value=json.dumps(summaries[0]) if summaries else ""))
        medians[size] = (t.median, mem.median, base.median)
    if len(sizes) >= 2:
        (t1, m1, b1), (t2, m2, b2) = medians[sizes[0]], medians[sizes[-1]]
        rows.append(_row("", f"growth {int(sizes[0]):,} -> {int(sizes[-1]):,}: time / RSS "
                         "(RSS above the baseline)", None, "x",
                         value=f"{t2 / t1:.1f} / {m2 / m1:.1f} ({(m2 - b2) / (m1 - b1):.1f})"))
    return rows


def render(rows: list[Row], results: dict[str, Any]) -> str:
    head = ("scenario", "measure", "median", "spread (min-max)", "unit", "target", "result")
    keys = ("scenario", "measure", "median", "spread", "unit", "target", "result")
    body = [[str(r[k]) for k in keys] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), line]
    for b in body:
        out.append("  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip())
    m = results["machine"]
    out.append(line)
    out.append(f"machine: {m['nproc']} CPUs, {m['cpu_model']}, {m['mem_total_mb']} MB; "
               f"Python {m['python']}; runs per scenario {results['config']['runs']}"
               f"{' (quick)' if results['config']['quick'] else ''}; commit "
               f"{results['git']['commit'][:10]}"
               f"{' + local changes' if results['git']['dirty_paths'] else ''}")
    load = results.get("loadavg_before", {})
    if load:
        out.append("load average (1 min) before each scenario: " + ", ".join(
            f"{k} {v[0]:.1f}" for k, v in load.items()))
    per = ", ".join(f"{k} {v} s" for k, v in results.get("scenario_s", {}).items())
    out.append(f"total {results['total_s']} s (mint install {results['mint_install_s']} s; {per})")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
