"""The crash campaign: hundreds of SIGKILL-and-restart cycles at random points of the
send, rollback, receive, mint, melt, transfer and consolidate sagas (and of recovery
itself), against both fee settings, with every invariant audited after every restart.

One wallet process runs across cycles; the proxy holds the request that matters, so
each kill lands at a precise moment: after the state committed and before the
request left, or after the mint processed it and before the wallet saw the answer.

Melts pay invoices of a second mint (``invoices``). The campaign's mint is its own,
so that it can be restarted: now and then its lightning backend goes PENDING for a
few cycles (melts then stay in flight) and is restarted SETTLED or FAILED, which
decides them, while the wallet runs on and rolls back or checks a pending melt.

Transfers go to a second mint (the session mint of the other fee setting, behind a proxy
of its own) and now and then back: killed at the melt at their source or at the redeem
at their destination; the audit checks both mints' books and what crossed between them.

``COCO_CRASH_CYCLES`` (default 400) is the total number of cycles, split over the two
fee settings; ``COCO_CRASH_SEED`` replays a run (the seed is printed either way).
``COCO_CRASH_CYCLES=1000 ./scripts/test.sh tests/crash/test_campaign.py`` runs 1,000.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devtools.devmint import PENDING, SETTLED, DevMint
from tests.support.crash_driver import (
    CHECKSTATE,
    FAIL_PENDING,
    MELT,
    MELT_QUOTE,
    MINT,
    RESTORE,
    SWAP,
    ChildError,
    InvoiceMint,
    Reply,
    TransferWallet,
)
from tests.support.proxy import FaultProxy, Hold

CYCLES = int(os.environ.get("COCO_CRASH_CYCLES", "400"))
SEED = int(os.environ.get("COCO_CRASH_SEED") or random.SystemRandom().randrange(2**32))

#: Errors a command may legitimately end with in the campaign (the outcome is in the
#: wallet's records, which the audit checks): not enough spendable proofs right now,
#: a rollback that would cost more than it returns or lost the race to the recipient.
EXPECTED_ERRORS = frozenset({"InsufficientFundsError", "InvalidStateError"})
#: Most sends pending at once; beyond it, the campaign settles some.
MAX_PENDING = 6
#: Every this many cycles, a NUT-09 restore of the whole seed must find nothing new.
RESTORE_EVERY = 40
#: Most cycles the mint's lightning backend stays PENDING before it is decided.
MAX_PENDING_CYCLES = 4


@dataclass
class Tally:
    cycles: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    points: Counter[str] = field(default_factory=Counter)   # where the kills landed
    recovered: Counter[str] = field(default_factory=Counter)  # recovery outcomes, summed
    recovery_crashes: int = 0
    lost: int = 0                       # sats that went missing (or appeared) at a restart
    violations: list[str] = field(default_factory=list)
    discrepancy: int = 0                # where the books stood after the last audit


class Campaign:
    def __init__(self, w: TransferWallet, rng: random.Random, tally: Tally,
                 invoices: InvoiceMint) -> None:
        self.w = w
        self.rng = rng
        self.tally = tally
        self.invoices = invoices
        self._seen: set[str] = set()
        self.scenarios: list[tuple[float, Callable[[], str]]] = [
            (4, self.send), (3, self.rollback), (2, self.receive), (2, self.redeem),
            (3, self.concurrent), (1, self.claim_while_down), (1, self.at_rest),
            (2, self.instant), (4, self.melt), (1, self.melt_rollback),
            (0.6, self.go_pending),  # rare: two mint restarts (about 3 s each) per phase
            (3, self.transfer), (0.5, self.transfer_rollback),
            (2, self.consolidate),
        ]
        self._held = False  # the last kill landed on a held request: recovery has work
        self.pending_cycles: int | None = None  # cycles the mint's payments stayed in flight

    # --- one cycle ----------------------------------------------------------------------

    def cycle(self) -> None:
        spendable = self.w.balance()[0]
        if self.pending_cycles is not None and (self.pending_cycles >= MAX_PENDING_CYCLES
                                                or self.rng.random() < 0.3):
            kind = self.decide()
        elif spendable < 300:
            kind = self.redeem()
        elif self.pending_cycles is not None and self.rng.random() < 0.5:
            # while payments stay in flight, make some
            kind = self.melt() if self.rng.random() < 0.7 else self.transfer()
        else:
            weights, fns = zip(*self.scenarios, strict=True)
            kind = self.rng.choices(fns, weights)[0]()
        if self.pending_cycles is not None:
            self.pending_cycles += 1
        self.tally.kinds[kind] += 1
        self.restart()
        self.tally.cycles += 1
        self.check(kind)
        self.tidy()
        if self.tally.cycles % RESTORE_EVERY == 0:
            self.seed_restore()

    def restart(self) -> None:
        """Restart (with the watcher on now and then); now and then kill the new process
        again in the middle of recovery, at one of the requests recovery makes."""
        w = self.w
        w.watcher = self.rng.random() < 0.3
        if self._held and self.rng.random() < 0.35:
            endpoint = self.rng.choice([CHECKSTATE, RESTORE, SWAP, MINT, MELT_QUOTE])
            after = self.rng.random() < 0.5
            # the other mint's: a transfer's redeem (or restore) there, or its melt
            other = self.rng.random() < 0.25
            proxy = w.other.proxy if other else w.proxy
            if w.crash_in_recovery(endpoint, after=after, nth=self.rng.choice([1, 1, 2]),
                                   proxy=proxy):
                self.tally.recovery_crashes += 1
                self.tally.points[f"recovery {'other ' if other else ''}{endpoint[1]}"
                                  f" {'after' if after else 'before'}"] += 1
            else:  # recovery made no such request and the wallet opened: kill it at rest
                w.crash()
        self.tally.recovered.update(w.restart())

    def crash_during(self, endpoint: tuple[str, str], cmd: str,
                     proxy: FaultProxy | None = None, **args: Any) -> bool:
        """Run ``cmd``, killing the wallet at ``endpoint`` (before or after the mint
        processed it; ``proxy``: at the wallet's other mint). If ``cmd`` ends without
        that request, kill it at rest."""
        after = self.rng.random() < 0.5
        outcome = self.w.crash_at(endpoint, cmd, after=after, proxy=proxy, **args)
        self._held = isinstance(outcome, Hold)
        if isinstance(outcome, Hold):
            where = "other " if proxy is self.w.other.proxy else ""
            self.tally.points[f"{cmd} {where}{endpoint[1]} {'after' if after else 'before'}"] += 1
            return True
        assert isinstance(outcome, Reply)
        self.result(outcome)
        self.w.crash()
        self.tally.points[f"{cmd} at rest"] += 1
        return False

    def result(self, reply: Reply) -> Any:
        try:
            return reply.result()
        except ChildError as exc:
            if exc.type not in EXPECTED_ERRORS:
                self.violation(f"{exc.cmd} failed: {exc}")
            return None

    def call(self, cmd: str, **args: Any) -> Any:
        return self.result(self.w.submit(cmd, **args))

    # --- scenarios (each ends with the wallet killed) -------------------------------------

    def swap_amount(self) -> int:
        """An amount the wallet's spendable proofs cannot match exactly, so that the send
        needs a swap: between the sum of all proofs smaller than some value ``v`` and
        ``v`` itself. Without such a gap, one is made by minting a single proof larger
        than everything spendable (the smaller proofs then cannot reach it)."""
        for _ in range(2):
            ready = [r["amount"] for r in self.w.call("proofs") if r["status"] == "ready"]
            gaps, below = [], 0
            for v in sorted(set(ready)):
                if below + 1 < v:
                    gaps.append((below + 1, v - 1))
                below += v * ready.count(v)
            if gaps:
                low, top = self.rng.choice(gaps)
                return self.rng.randint(low, min(top, low + 300))
            big = 1 << (sum(ready) + 1).bit_length()
            if big > 16384:
                break
            self.call("fund", url=self.w.url, amount=big)
        return self.rng.randint(1, 300)

    def prepare_swap(self) -> dict[str, Any] | None:
        """A prepared send, of an amount that needs a swap."""
        prepared: dict[str, Any] | None = self.call("prepare", url=self.w.url,
                                                    amount=self.swap_amount())
        return prepared

    def send(self) -> str:
        if self.rng.random() < 0.2:  # prepare and execute in one call, swap or not
            self.crash_during(SWAP, "send", url=self.w.url, amount=self.rng.randint(1, 300))
            return "send"
        prepared = self.prepare_swap()
        if prepared is None:
            self._held = False
            self.w.crash()
            return "send"
        self.crash_during(SWAP, "execute", op_id=prepared["id"])
        return "send"

    def concurrent(self) -> str:
        """Two to four swaps in flight at once (sends, a receive, a rollback), all held;
        each is then let through, forwarded (processed, answer lost) or dropped (never
        sent) before the kill. A let-through answer races the kill."""
        calls: list[dict[str, Any]] = []
        for _ in range(self.rng.randint(1, 3)):
            prepared = self.prepare_swap()
            if prepared is not None and prepared["needs_swap"]:
                calls.append({"cmd": "execute", "args": {"op_id": prepared["id"]}})
        if self.rng.random() < 0.5:
            calls.append({"cmd": "receive",
                          "args": {"token": self.w.faucet.token(self.rng.randint(2, 300))}})
        # a reclaim that would cost more than it returns is refused before any request
        pending = [o for o in self.open_sends("pending")
                   if sum(o["send_amounts"]) > self.w.fee(len(o["send_amounts"]))]
        if pending and self.rng.random() < 0.5:
            calls.append({"cmd": "rollback", "args": {"op_id": self.rng.choice(pending)["id"]}})
        if not calls:
            self._held = False
            self.w.crash()
            return "concurrent"
        wake = threading.Event()
        holds = [self.w.proxy.hold(*SWAP, wake=wake) for _ in calls]
        reply = self.w.submit("batch", wake=wake, calls=calls)
        deadline = time.monotonic() + 30
        while not all(h.arrived.is_set() for h in holds) and not reply.done.is_set():
            if time.monotonic() > deadline:
                self.violation(f"cycle {self.tally.cycles}: of {len(calls)} concurrent calls,"
                               f" {sum(h.arrived.is_set() for h in holds)} made their swap")
                break
            wake.wait(max(0.0, deadline - time.monotonic()))
            wake.clear()
        fates: Counter[str] = Counter()
        for h in holds:
            if not h.arrived.is_set():
                self.w.proxy.remove(h)
                continue
            fate = self.rng.choice(["release", "forward", "drop"])
            fates[fate] += 1
            if fate == "release":
                h.release()
            elif fate == "forward":
                h.forward()
        self.w.crash()
        for h in holds:
            h.drop()
        self._held = True
        self.tally.points["concurrent kill"] += 1
        for fate, n in fates.items():
            self.tally.points[f"concurrent swap {fate}"] += n
        return "concurrent"

    def rollback(self) -> str:
        pending = self.open_sends("pending")
        if not pending:
            sent = self.call("send", url=self.w.url, amount=self.rng.randint(2, 200))
            if sent is None:
                self.w.crash()
                return "rollback"
            pending = [sent["op"]]
        op = self.rng.choice(pending)
        self.crash_during(SWAP, "rollback", op_id=op["id"])
        return "rollback"

    def receive(self) -> str:
        token = self.w.faucet.token(self.rng.randint(2, 400))
        self.crash_during(SWAP, "receive", token=token)
        return "receive"

    def redeem(self) -> str:
        amount = self.rng.choice([256, 512, 1024, 2048, self.rng.randint(100, 1500)])
        quote = self.call("create_quote", url=self.w.url, amount=amount)
        if quote is None:
            self.w.crash()
            return "mint"
        self.crash_during(MINT, "redeem", quote=quote["quote"])
        return "mint"

    def instant(self) -> str:
        """Kill at a random instant (0-40 ms) into a batch of prepares, a receive and a
        mint quote: this lands between commits that no request separates (a send
        reserved but not yet prepared: the ``init`` row), which no hold can choose."""
        calls = [{"cmd": "prepare", "args": {"url": self.w.url, "amount": self.swap_amount()}}
                 for _ in range(self.rng.randint(1, 3))]
        calls.append({"cmd": "receive",
                      "args": {"token": self.w.faucet.token(self.rng.randint(2, 300))}})
        if self.rng.random() < 0.5:  # a melt reserved but not yet prepared: its init row
            calls.append({"cmd": "prepare_melt",
                          "args": {"url": self.w.url, "invoice": self.invoice()}})
        if self.rng.random() < 0.5:  # a transfer whose legs are being made: its init row
            calls.append({"cmd": "prepare_transfer",
                          "args": {"from_url": self.w.url, "to_url": self.w.other.url,
                                   "amount": self.rng.randint(1, 200)}})
        if self.rng.random() < 0.3:  # a consolidation holding its inputs, not committed yet
            calls.append({"cmd": "consolidate", "args": {"url": self.w.url}})
        self.w.submit("batch", calls=calls)
        threading.Event().wait(self.rng.uniform(0.0, 0.04))  # the crash point, not a wait
        self.w.crash()
        self._held = True
        self.tally.points["instant kill"] += 1
        return "instant"

    def consolidate(self) -> str:
        """Swap the wallet's proofs into the fewest (issue 13), now and then after more
        dust (1-sat proofs minted through the proxy and restored): killed at its swap,
        before it left or after the mint processed it, or at rest when it was skipped
        (nothing to gain, or the fee too high)."""
        if self.pending_cycles is None and self.rng.random() < 0.7:
            self.call("dust", url=self.w.url, n=self.rng.randint(5, 60))
        fraction = self.rng.choice([None, None, 0.01, 1.0])
        self.crash_during(SWAP, "consolidate", url=self.w.url, max_fee_fraction=fraction)
        return "consolidate"

    def claim_while_down(self) -> str:
        """Kill the wallet at rest; the recipient claims a pending token meanwhile."""
        pending = self.open_sends("pending")
        self.w.crash()
        self.tally.points["claim while down"] += 1
        if pending:
            self.w.recipient.claim(self.rng.choice(pending)["token"])
        return "claim-while-down"

    def at_rest(self) -> str:
        """Kill with a send prepared (reserved, outputs persisted), a quote unpaid and
        now and then a melt or a transfer prepared."""
        self.call("prepare", url=self.w.url, amount=self.rng.randint(1, 200))
        self.call("create_quote", url=self.w.url, amount=self.rng.randint(1, 100))
        if self.rng.random() < 0.5:
            self.call("prepare_melt", url=self.w.url, invoice=self.invoice())
        if self.rng.random() < 0.3:
            self.call("prepare_transfer", from_url=self.w.url, to_url=self.w.other.url,
                      amount=self.rng.randint(1, 200))
        self.w.crash()
        self.tally.points["prepared at rest"] += 1
        return "at-rest"

    # --- melts ------------------------------------------------------------------------------

    def invoice(self, amount: int | None = None) -> str:
        """An invoice to pay, now and then one this wallet melted before: paid or in
        flight, it must be refused before any request (InvalidStateError); rolled
        back, it may be paid again. (A transfer leg's invoice is a quote of one of the
        wallet's mints, which pays itself: the campaign mint refuses to melt its own.)"""
        if self.rng.random() < 0.1:
            used = [o["invoice"] for o in self.w.state()["ops"]  # not a transfer's leg's:
                    if o["type"] == "melt" and o["invoice"] and not o["parent_id"]]
            if used:
                return self.rng.choice(used)  # type: ignore[no-any-return]
        return self.invoices.invoice(amount or self.rng.randint(1, 300))

    def melt(self) -> str:
        """Pay an invoice: direct or swap first, prepared then executed or in one call,
        killed at the swap or at the melt (while the mint's backend is PENDING, the
        melt's answer is PENDING; or it returns pending and is killed at rest)."""
        spendable = self.w.balance()[0]
        invoice = self.invoice(self.rng.randint(1, max(1, min(400, spendable // 2))))
        swap = True if self.rng.random() < 0.3 else None
        if self.rng.random() < 0.2:
            endpoint = SWAP if swap and self.rng.random() < 0.5 else MELT
            self.crash_during(endpoint, "melt", url=self.w.url, invoice=invoice, swap=swap)
            return "melt"
        prepared = self.call("prepare_melt", url=self.w.url, invoice=invoice, swap=swap)
        if prepared is None:
            self._held = False
            self.w.crash()
            return "melt"
        if self.pending_cycles is not None and self.rng.random() < 0.3:
            done = self.call("execute_melt", op_id=prepared["id"])
            if done is not None and done["state"] != "pending":
                self.violation(f"cycle {self.tally.cycles}: melt {done['id']} is"
                               f" {done['state']} while the mint's payments are in flight")
            self._held = False
            self.w.crash()
            self.tally.points["melt pending at rest"] += 1
            return "melt"
        endpoint = SWAP if prepared["needs_swap"] and self.rng.random() < 0.5 else MELT
        self.crash_during(endpoint, "execute_melt", op_id=prepared["id"])
        return "melt"

    def melt_rollback(self) -> str:
        """Roll back a melt: a pending one is refused while its payment is in flight
        (nothing changes); a prepared one is released, killed right after or at an
        instant (0-20 ms) into the rollback."""
        pending = self.open_ops("melt", "pending") if self.pending_cycles is not None else []
        if pending and self.rng.random() < 0.5:
            op = self.rng.choice(pending)
            try:
                self.w.call("rollback_melt", op_id=op["id"])
                self.violation(f"cycle {self.tally.cycles}: melt {op['id']} rolled back"
                               " while its payment is in flight")
            except ChildError as exc:
                if exc.type != "InvalidStateError":
                    self.violation(f"{exc.cmd} failed: {exc}")
            self.w.crash()
            self.tally.points["melt rollback refused"] += 1
            return "melt-rollback"
        prepared = (self.open_ops("melt", "prepared")
                    or [self.call("prepare_melt", url=self.w.url, invoice=self.invoice())])
        if prepared[0] is None:
            self.w.crash()
            return "melt-rollback"
        if self.rng.random() < 0.5:
            self.call("rollback_melt", op_id=prepared[0]["id"])
        else:
            self.w.submit("rollback_melt", op_id=prepared[0]["id"])
            threading.Event().wait(self.rng.uniform(0.0, 0.02))  # the crash point
        self.w.crash()
        self._held = True
        self.tally.points["melt rollback kill"] += 1
        return "melt-rollback"

    def go_pending(self) -> str:
        """The mint's lightning backend stops deciding (restarted PENDING while the
        wallet runs): melts stay in flight until :meth:`decide`. One melt goes out now."""
        if self.pending_cycles is not None:  # pending already
            return self.melt()
        self.w.mint.restart(PENDING)
        self.pending_cycles = 0
        self.tally.points["mint went pending"] += 1
        self.melt()
        return "go-pending"

    def decide(self) -> str:
        """The mint decides every payment in flight: restarted SETTLED (paid, all the
        change back) or FAILED (the inputs released), while the wallet runs on (its
        watcher, if on, may see it first). Then a pending melt is rolled back, or all
        are checked, and the wallet is killed at the quote or NUT-07 request."""
        settled = self.rng.random() < 0.5
        self.w.mint.restart(SETTLED if settled else FAIL_PENDING)
        self.pending_cycles = None
        self.tally.points[f"mint decided {'settled' if settled else 'failed'}"] += 1
        pending = self.open_ops("melt", "pending")
        transfers = self.open_ops("transfer", "pending")
        if not pending and not transfers:
            self._held = False
            self.w.crash()
            self.tally.points["decided, no melt pending"] += 1
            return "decide"
        endpoint = self.rng.choice([MELT_QUOTE, MELT_QUOTE, CHECKSTATE])
        if transfers and (not pending or self.rng.random() < 0.5):
            # settled: the redeem at the other mint follows the quote; kill there too
            if self.rng.random() < 0.3:
                self.crash_during(MINT, "check_pending_transfers", proxy=self.w.other.proxy)
            elif self.rng.random() < 0.5:
                self.crash_during(endpoint, "rollback_transfer",
                                  op_id=self.rng.choice(transfers)["id"])
            else:
                self.crash_during(endpoint, "check_pending_transfers")
        elif self.rng.random() < 0.5:
            self.crash_during(endpoint, "rollback_melt", op_id=self.rng.choice(pending)["id"])
        else:
            self.crash_during(endpoint, "check_pending_melts")
        return "decide"

    # --- transfers ---------------------------------------------------------------------

    def transfer(self) -> str:
        """Move value to the other mint (now and then back): prepared then executed, or
        in one call; killed at the melt at the source or at the redeem at the
        destination, before the request left or after the mint processed it. While the
        campaign mint's payments are in flight, its transfers end pending (the redeem
        never comes): killed there at rest, or at the melt."""
        w = self.w
        back = w.balance_at(w.other.url)[0] >= 100 and self.rng.random() < 0.3
        src, dst = (w.other.url, w.url) if back else (w.url, w.other.url)
        at_src, at_dst = (w.other.proxy, w.proxy) if back else (w.proxy, w.other.proxy)
        amount = self.rng.randint(1, max(1, min(300, w.balance_at(src)[0] // 3)))
        endpoint, proxy = (MELT, at_src) if self.rng.random() < 0.5 else (MINT, at_dst)
        if self.rng.random() < 0.2:
            self.crash_during(endpoint, "transfer", proxy=proxy, from_url=src, to_url=dst,
                              amount=amount)
            return "transfer"
        prepared = self.call("prepare_transfer", from_url=src, to_url=dst, amount=amount)
        if prepared is None:
            self._held = False
            self.w.crash()
            return "transfer"
        if self.pending_cycles is not None and not back and self.rng.random() < 0.3:
            done = self.call("execute_transfer", op_id=prepared["id"])
            if done is not None and done["state"] != "pending":
                self.violation(f"cycle {self.tally.cycles}: transfer {done['id']} is"
                               f" {done['state']} while the mint's payments are in flight")
            self._held = False
            self.w.crash()
            self.tally.points["transfer pending at rest"] += 1
            return "transfer"
        self.crash_during(endpoint, "execute_transfer", proxy=proxy, op_id=prepared["id"])
        return "transfer"

    def transfer_rollback(self) -> str:
        """Roll back a transfer: a pending one is refused while its payment is in flight
        (nothing changes); a prepared one is released, killed right after or at an
        instant (0-20 ms) into the rollback."""
        pending = self.open_ops("transfer", "pending")
        if pending and self.rng.random() < 0.5:
            op = self.rng.choice(pending)
            try:
                self.w.call("rollback_transfer", op_id=op["id"])
                self.violation(f"cycle {self.tally.cycles}: transfer {op['id']} rolled back"
                               " while its payment is in flight")
            except ChildError as exc:
                if exc.type != "InvalidStateError":
                    self.violation(f"{exc.cmd} failed: {exc}")
            self.w.crash()
            self.tally.points["transfer rollback refused"] += 1
            return "transfer-rollback"
        prepared = (self.open_ops("transfer", "prepared")
                    or [self.call("prepare_transfer", from_url=self.w.url,
                                  to_url=self.w.other.url, amount=self.rng.randint(1, 200))])
        if prepared[0] is None:
            self.w.crash()
            return "transfer-rollback"
        if self.rng.random() < 0.5:
            self.call("rollback_transfer", op_id=prepared[0]["id"])
        else:
            self.w.submit("rollback_transfer", op_id=prepared[0]["id"])
            threading.Event().wait(self.rng.uniform(0.0, 0.02))  # the crash point
        self.w.crash()
        self._held = True
        self.tally.points["transfer rollback kill"] += 1
        return "transfer-rollback"

    # --- between cycles --------------------------------------------------------------------

    def open_ops(self, kind: str, state: str) -> list[dict[str, Any]]:
        """Open operations of ``kind`` in ``state``, but no transfer's leg (its
        transfer drives it; the melt and mint APIs refuse it)."""
        return [o for o in self.w.call("open_ops")
                if o["type"] == kind and o["state"] == state and not o["parent_id"]]

    def open_sends(self, state: str) -> list[dict[str, Any]]:
        return self.open_ops("send", state)

    def tidy(self) -> None:
        """Settle what earlier cycles left: redeem quotes, use prepared sends, claim some."""
        ops = [o for o in self.w.call("open_ops") if not o["parent_id"]]  # legs: their transfer's
        for o in ops:
            if o["type"] == "transfer" and o["state"] == "prepared":
                cmd = self.rng.choice(["execute_transfer", "rollback_transfer"])
                self.call(cmd, op_id=o["id"])
            elif o["type"] == "mint" and o["state"] == "prepared":
                self.redeem_left(o)
            elif o["type"] == "send" and o["state"] == "prepared":
                cmd = self.rng.choice(["execute", "rollback"])
                self.call(cmd, op_id=o["id"])
            elif o["type"] == "melt" and o["state"] == "prepared":
                cmd = self.rng.choice(["execute_melt", "rollback_melt"])
                self.call(cmd, op_id=o["id"])
        spendable = self.w.balance()[0]
        if spendable > 6000:  # keep amounts small: most of it goes to the recipient
            sent = self.call("send", url=self.w.url, amount=spendable - 2500)
            if sent is not None:
                self.w.recipient.claim(sent["token"])
        pending = self.open_sends("pending")
        self.rng.shuffle(pending)
        for o in pending[:max(len(pending) - MAX_PENDING, self.rng.randint(0, 2))]:
            self.w.recipient.claim(o["token"])
        if pending:
            self.call("check_pending")

    def redeem_left(self, o: dict[str, Any]) -> None:
        """Redeem a quote an earlier cycle left. With the watcher on, the wallet may
        have redeemed it on its own meanwhile (the quote pays itself): then the
        redeem finds no open operation, and the operation must be completed."""
        try:
            self.w.call("redeem", quote=o["quote_id"])
        except ChildError as exc:
            state = self.w.op(o["id"])["state"]
            if not (exc.type == "NotFoundError" and self.w.watcher and state == "completed"):
                self.violation(f"{exc.cmd} failed: {exc} (mint {o['id']} is {state})")

    def check(self, kind: str) -> None:
        audit = self.w.audit()
        lost = audit.discrepancy - self.tally.discrepancy
        if lost:
            self.tally.lost += abs(lost)
            self.violation(f"cycle {self.tally.cycles} ({kind}): {lost:+d} sats; "
                           + audit.summary())
        self.tally.discrepancy = audit.discrepancy
        for v in audit.violations:
            if not v.startswith("value not conserved") and v not in self._seen:
                self._seen.add(v)
                self.violation(f"cycle {self.tally.cycles} ({kind}): {v}")

    def seed_restore(self) -> None:
        """NUT-09 over the whole seed at rest: a wallet that lost nothing finds nothing."""
        if any(o["state"] == "executing" for o in self.w.call("open_ops")):
            return
        for url in (self.w.url, self.w.other.url):
            found = self.call("restore", url=url)
            if found and found["restored"]:
                self.violation(f"cycle {self.tally.cycles}: a seed restore at {url} found"
                               f" {found} that the wallet had forgotten")
                self.tally.discrepancy = self.w.audit().discrepancy

    def violation(self, text: str) -> None:
        self.tally.violations.append(text)


@pytest.mark.parametrize("fee", [0, 100], ids=["fee0", "fee100"])
@pytest.mark.timeout(max(300, CYCLES * 2))  # this test runs half of the cycles
def test_crash_campaign(fee: int, make_mint: Callable[..., DevMint], invoices: InvoiceMint,
                        mint_fee0: DevMint, mint_fee100: DevMint, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    mint = make_mint(input_fee_ppk=fee).start()  # its own: the campaign restarts it
    other = mint_fee100 if fee == 0 else mint_fee0  # transfers' other mint
    cycles = (CYCLES + 1) // 2 if fee == 0 else CYCLES // 2
    rng = random.Random(f"{SEED}/{fee}")
    tally = Tally()
    w = TransferWallet(mint, other, tmp_path)
    started = time.monotonic()
    try:
        w.start()
        w.call("add_mint", url=w.url)
        w.call("add_mint", url=w.other.url)
        w.call("fund", url=w.url, amount=2000)
        campaign = Campaign(w, rng, tally, invoices)
        while tally.cycles < cycles:
            campaign.cycle()
        campaign.seed_restore()
        final = w.assert_sound if not tally.violations else w.audit
        audit = final()
    finally:
        w.close()
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"\ncrash campaign fee {fee} ppk: seed {SEED}, {tally.cycles} crash-restart cycles"
              f" ({dict(tally.kinds)}; {tally.recovery_crashes} more inside recovery;"
              f" kills at {dict(tally.points)}; recovery outcomes {dict(tally.recovered)}),"
              f" {tally.lost} sats lost, {len(tally.violations)} invariant violations,"
              f" {elapsed:.1f} s; {audit.summary()}; final states {dict(audit.states)}")
    assert tally.lost == 0, f"seed {SEED}: " + "\n".join(tally.violations)
    assert tally.violations == [], f"seed {SEED}:\n" + "\n".join(tally.violations)
