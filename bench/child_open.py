"""Open a wallet in a fresh process and report what rehydration and recovery cost.

``python bench/child_open.py DATA_DIR`` prints one JSON line after ``Coco.open``
returns (time, recovery summary, resident memory, threads), one after a short
pause (memory once the watcher has subscribed everything) and a last one with
the time ``close`` took.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time

from support import rss_mb

from coco_actors import Coco

#: How long after open the memory is read again, once the watcher has caught up.
SETTLE_S = 1.5


def main(data_dir: str) -> None:
    report: dict[str, object] = {"rss_before_mb": round(rss_mb(), 1)}
    started = time.perf_counter()
    coco = Coco.open(data_dir)  # the default watcher, as after a restart
    report["open_s"] = round(time.perf_counter() - started, 3)
    report["rss_mb"] = round(rss_mb(), 1)
    report["maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report["threads"] = threading.active_count()
    report["recovery"] = coco.last_recovery
    report["pending_after"] = len(coco.send.get_pending_operations())
    report["cpu_s"] = round(time.process_time(), 2)
    print(json.dumps(report), flush=True)
    time.sleep(SETTLE_S)  # the watcher subscribes every pending send after open returns
    report["rss_settled_mb"] = round(rss_mb(), 1)
    report["settle_s"] = SETTLE_S
    report["threads_settled"] = threading.active_count()
    print(json.dumps(report), flush=True)
    started = time.perf_counter()
    coco.close()
    report["close_s"] = round(time.perf_counter() - started, 3)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
