"""A wallet in a process of its own, driven line by line, for the crash tests.

    python tests/support/crash_child.py DATA_DIR [--watcher] [--standby]

The process opens ``Coco`` on ``DATA_DIR`` (recovery runs in ``Coco.open``) and
then reads one JSON command per line on stdin, ``{"id": n, "cmd": name, "args":
{...}}``, and answers each with one JSON line on stdout, ``{"id": n, "ok": true,
"result": ...}`` or ``{"id": n, "ok": false, "error": {"type", "code", "message"}}``.
The first line it writes (``id`` 0) reports the open, with the recovery summary.
Commands run one at a time, in order. ``quit`` closes the wallet and exits.
With ``--standby`` it first waits for one line, ``{"watcher": bool}``, before it opens
the wallet: the driver starts the next process ahead of time, imports done, so that a
restart costs the open (and recovery) only.

The parent ends it with SIGKILL at the moment it chooses; nothing here tries to
survive that or to clean up after it. Only the test suite runs this: it reads
the wallet's internals (proof records, operation records) that the invariants
are checked against, and it prints tokens.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, TextIO

from coco_actors import Coco, CocoError, MintRejectedError, MintUnreachableError
from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.crypto.nut13 import Nut13Deriver
from coco_actors.crypto.outputs import make_outputs
from coco_actors.events import EVENTS
from coco_actors.records import Operation, ProofRecord

TIMEOUT = 60.0
#: Operation states the audit waits out: the wallet is at work on them.
TRANSIENT = frozenset({"init", "executing", "rolling_back"})


class _OnRecord(logging.Handler):
    """Calls ``notify`` for every record it sees (on the thread that logged it)."""

    def __init__(self, notify: Callable[[], None]) -> None:
        super().__init__()
        self._notify = notify

    def emit(self, record: logging.LogRecord) -> None:
        self._notify()


def op_json(op: Operation | None) -> dict[str, Any] | None:
    """An operation as the tests see it: the public fields and what the invariants need."""
    if op is None:
        return None
    d = op.public()
    d.update(
        input_ys=list(op.input_ys),
        send_ys=list(op.send_ys),
        send_amounts=[p.amount for p in op.send_proofs],
        token_ys=[secret_to_y(p.secret) for p in op.inputs],   # receive: the token's proofs
        token_amounts=[p.amount for p in op.inputs],
        output_amounts=[o.amount for o in op.outputs],
        reclaim_amounts=[o.amount for o in op.reclaim_outputs],
        send_output_count=op.send_output_count,
        quote_id=op.quote_id,
        swapped=op.swapped,                                      # melt: the swap is done
        change_output_count=len(op.change_outputs),              # melt: NUT-08 blanks
        parent_id=op.parent_id,                                  # a transfer's leg
    )
    return d


def proof_json(r: ProofRecord) -> dict[str, Any]:
    return {"Y": r.Y, "amount": r.amount, "status": r.status.value, "op": r.operation_id,
            "mint": r.mint_url, "keyset": r.proof.keyset_id}


def error_json(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__,
            "code": exc.code if isinstance(exc, MintRejectedError) else None,
            "request_sent": getattr(exc, "request_sent", None)
            if isinstance(exc, MintUnreachableError) else None,
            "message": str(exc),
            "library": isinstance(exc, CocoError)}


class Commands:
    def __init__(self, coco: Coco) -> None:
        self.coco = coco

    def add_mint(self, url: str) -> str:
        return self.coco.mints.add(url).url

    def create_quote(self, url: str, amount: int) -> dict[str, Any]:
        quote = self.coco.mint.create_quote(url, amount)
        return {"quote": quote.id, "request": quote.request}

    def redeem(self, quote: str, timeout: float = 30.0) -> Any:
        return op_json(self.coco.mint.redeem(quote, timeout=timeout))

    def fund(self, url: str, amount: int) -> Any:
        quote = self.coco.mint.create_quote(url, amount)
        return op_json(self.coco.mint.redeem(quote.id, timeout=30))

    def prepare(self, url: str, amount: int, p2pk: str | None = None) -> Any:
        return op_json(self.coco.send.prepare_send(url, amount, p2pk=p2pk))

    def execute(self, op_id: str) -> Any:
        op, token = self.coco.send.execute_prepared_send(op_id)
        return {"op": op_json(op), "token": token}

    def send(self, url: str, amount: int) -> Any:
        prepared = self.coco.send.prepare_send(url, amount)
        op, token = self.coco.send.execute_prepared_send(prepared.id)
        return {"op": op_json(op), "token": token}

    def rollback(self, op_id: str) -> Any:
        return op_json(self.coco.send.rollback(op_id))

    def new_key(self) -> str:
        return self.coco.keys.new()

    def receive(self, token: str) -> Any:
        return op_json(self.coco.receive(token))

    def check_pending(self) -> Any:
        return [op_json(o) for o in self.coco.send.check_pending()]

    # --- melt (the invoice comes from the test: a quote of another mint) ---------------

    def prepare_melt(self, url: str, invoice: str, swap: bool | None = None) -> Any:
        return op_json(self.coco.melt.prepare_melt(url, invoice, swap=swap))

    def execute_melt(self, op_id: str, timeout: float = 30.0) -> Any:
        return op_json(self.coco.melt.execute_prepared_melt(op_id, timeout=timeout))

    def melt(self, url: str, invoice: str, swap: bool | None = None,
             timeout: float = 30.0) -> Any:
        prepared = self.coco.melt.prepare_melt(url, invoice, swap=swap)
        return op_json(self.coco.melt.execute_prepared_melt(prepared.id, timeout=timeout))

    def rollback_melt(self, op_id: str) -> Any:
        return op_json(self.coco.melt.rollback(op_id))

    def check_pending_melts(self) -> Any:
        return [op_json(o) for o in self.coco.melt.check_pending()]

    # --- transfer (a melt at ``from_url`` pays a mint quote of ``to_url``) ---------------

    def prepare_transfer(self, from_url: str, to_url: str, amount: int) -> Any:
        return op_json(self.coco.transfer.prepare(from_url, to_url, amount))

    def execute_transfer(self, op_id: str, timeout: float = 30.0) -> Any:
        return op_json(self.coco.transfer.execute(op_id, timeout=timeout))

    def transfer(self, from_url: str, to_url: str, amount: int, timeout: float = 30.0) -> Any:
        prepared = self.coco.transfer.prepare(from_url, to_url, amount)
        return op_json(self.coco.transfer.execute(prepared.id, timeout=timeout))

    def rollback_transfer(self, op_id: str) -> Any:
        return op_json(self.coco.transfer.rollback(op_id))

    def check_pending_transfers(self) -> Any:
        return [op_json(o) for o in self.coco.transfer.check_pending()]

    def recover(self) -> Any:
        return self.coco.recover()

    def recover_sends(self) -> Any:
        return self.coco.send.recover_pending_operations()

    def restore(self, url: str) -> Any:
        r = self.coco.restore(url)
        return {"restored": r.restored, "proofs": r.proofs, "spent": r.spent,
                "counters": r.counters}

    # --- consolidation (issue 13) -------------------------------------------------------

    def dust(self, url: str, n: int) -> Any:
        """``n`` proofs of 1 sat: NUT-13 outputs of the wallet's seed minted through the
        wallet's own client (the proxy sees the mint), then found by a restore."""
        ctx = self.coco._mint_context(url)
        keyset = ctx.active_keyset()
        start = self.coco._ledger.counter(keyset.id).get(timeout=TIMEOUT)
        deriver = Nut13Deriver(self.coco.mnemonic)
        outputs = make_outputs([1] * n, keyset.id,
                               [deriver.derive(keyset.id, start + i) for i in range(n)])
        quote = ctx.client.create_mint_quote(n)
        ctx.client.mint(quote.quote, [o.blinded for o in outputs])
        return self.restore(url)

    def consolidate(self, url: str, max_fee_fraction: float | None = None) -> Any:
        result = self.coco.consolidate(url, max_fee_fraction=max_fee_fraction)
        return {"skipped": result.skipped, "op": op_json(result.operation),
                "inputs": result.inputs, "outputs": result.outputs, "fee": result.fee,
                "amount": result.amount}

    def balance(self) -> Any:
        return {url: {"spendable": b.spendable, "reserved": b.reserved, "pending": b.pending}
                for url, b in self.coco.balance().items()}

    def op(self, op_id: str) -> Any:
        return op_json(self.coco._ledger.get_operation(op_id).get(timeout=TIMEOUT))

    def wait_state(self, op_id: str, state: str, within: float = 30.0) -> str | None:
        """Block until the operation is in ``state``, at most ``within`` s; its state then.

        For what the wallet does on its own time (the watcher). Every transition emits
        an event after it committed, so the state is read again only when one arrives;
        the bus thread must take the condition's lock to wake us, so none is missed.
        """
        changed = threading.Condition()

        def wake(payload: dict[str, Any]) -> None:  # on the event bus's thread
            with changed:
                changed.notify_all()

        def current() -> str | None:
            op = self.coco._ledger.get_operation(op_id).get(timeout=TIMEOUT)
            return op.state.value if op is not None else None

        for name in EVENTS:
            self.coco.on(name, wake)
        try:
            with changed:
                changed.wait_for(lambda: current() == state, within)
        finally:
            for name in EVENTS:
                self.coco.off(name, wake)
        return current()

    def batch(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run several commands at once, each on a thread of its own; every outcome."""
        outcomes: list[dict[str, Any]] = [{} for _ in calls]

        def run(i: int, call: dict[str, Any]) -> None:
            try:
                outcomes[i] = {"ok": True,
                               "result": getattr(self, call["cmd"])(**call.get("args", {}))}
            except Exception as exc:
                outcomes[i] = {"ok": False, "error": error_json(exc)}

        threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return outcomes

    def open_ops(self) -> Any:
        """The operations not yet over (cheap: no history)."""
        return [op_json(o) for o in self.coco._ledger.operations().get(timeout=TIMEOUT)]

    def proofs(self) -> Any:
        return [proof_json(r) for r in self.coco._ledger.all_proof_records().get(timeout=TIMEOUT)]

    def state(self, within: float = 10.0) -> Any:
        """Everything the invariants look at, as of one moment (``stable``).

        It takes several asks of the ledger, and the watcher may commit between them
        (a redeem that completes after the history was read and before the proofs
        were). So the reads are bracketed by two reads of the open operations and
        taken again until those agree: the wallet's own work only moves operations
        that exist, every move changes the open ones, and the ledger moves proofs
        only in the commit of an operation. ``stable`` is False when they did not
        agree within ``within`` s (the wallet kept moving).
        """
        ledger = self.coco._ledger
        deadline = time.monotonic() + within
        while True:
            before = ledger.operations().get(timeout=TIMEOUT)
            history = self.coco.history.get_history()
            ops = [ledger.get_operation(h.operation_id).get(timeout=TIMEOUT) for h in history]
            # a transfer's legs have no history entry of their own: listed after it
            legs = [ledger.get_operation(leg_id).get(timeout=TIMEOUT) for o in ops
                    if o is not None for leg_id in (o.melt_id, o.mint_leg_id) if leg_id]
            proofs = ledger.all_proof_records().get(timeout=TIMEOUT)
            balance = self.balance()
            live = self.coco._supervisor.live_actor_count().get(timeout=TIMEOUT)
            after = ledger.operations().get(timeout=TIMEOUT)
            stable = before == after
            if stable or time.monotonic() > deadline:
                break
        return {
            "proofs": [proof_json(r) for r in proofs],
            "open_ops": [op_json(o) for o in after],
            "ops": [op_json(o) for o in ops] + [op_json(o) for o in legs if o is not None],
            "balance": balance,
            "live_actors": live,
            "stable": stable,
        }

    def quiet(self, within: float = 10.0) -> list[dict[str, str]]:
        """Block until no operation is ``init``, ``executing`` or ``rolling_back``, at
        most ``within`` s; those still in such a state then (empty: quiet).

        For the audit, while the watcher works on its own time (it redeems a quote
        that recovery left prepared). Woken by every committed transition: each
        operation logs every commit at INFO once it is done (on its actor's thread;
        this process logs INFO), and most also emit an event (on the bus thread).
        The waker must take the condition's lock, so no wake-up falls between a
        check and the wait.
        """
        changed = threading.Condition()
        ledger = self.coco._ledger

        def wake(*_: Any) -> None:  # an operation's thread, or the event bus's
            with changed:
                changed.notify_all()

        def busy() -> list[dict[str, str]]:
            return [{"id": o.id, "type": o.type.value, "state": o.state.value}
                    for o in ledger.operations().get(timeout=TIMEOUT)
                    if o.state.value in TRANSIENT]

        handler = _OnRecord(wake)
        transitions = logging.getLogger("coco_actors.operations.base")
        transitions.addHandler(handler)
        for name in EVENTS:
            self.coco.on(name, wake)
        try:
            with changed:
                changed.wait_for(lambda: not busy(), within)
        finally:
            transitions.removeHandler(handler)
            for name in EVENTS:
                self.coco.off(name, wake)
        return busy()


def main(argv: list[str]) -> int:
    data_dir = argv[1]
    watcher = "--watcher" in argv[2:]
    if "--standby" in argv[2:]:
        line = sys.stdin.readline()
        if not line.strip():
            return 0  # discarded unused
        watcher = bool(json.loads(line)["watcher"])
    out: TextIO = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr  # a stray print must never corrupt the protocol
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")

    def say(msg: dict[str, Any]) -> None:
        out.write(json.dumps(msg) + "\n")

    started = time.monotonic()
    try:
        coco = Coco.open(data_dir, watcher=watcher)
    except Exception as exc:  # the parent must learn why, then we are done
        traceback.print_exc()
        say({"id": 0, "ok": False, "error": error_json(exc)})
        return 1
    say({"id": 0, "ok": True, "result": {"pid": os.getpid(), "recovery": coco.last_recovery,
                                         "open_s": time.monotonic() - started}})
    commands = Commands(coco)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            msg = json.loads(line)
            if msg["cmd"] == "quit":
                coco.close()
                say({"id": msg["id"], "ok": True, "result": None})
                return 0
            try:
                result = getattr(commands, msg["cmd"])(**msg.get("args", {}))
            except Exception as exc:
                logging.getLogger("crash_child").info("%s failed: %r", msg["cmd"], exc)
                say({"id": msg["id"], "ok": False, "error": error_json(exc)})
            else:
                say({"id": msg["id"], "ok": True, "result": result})
    finally:
        coco.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
