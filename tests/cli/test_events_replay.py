"""``GET /events?after=SEQ`` against real daemons and the real mint: a consumer that
disconnects and resumes sees every event once, in order; a SIGKILLed daemon keeps them.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest
from cli_support import Wallet

from coco_actors.control import ControlClient, RequestFailed
from coco_actors.tokens import decode
from devtools.devmint import DevMint

EVENT_TIMEOUT = 60.0
WalletMaker = Callable[..., Wallet]


def fee_of(ppk: int, n: int) -> int:
    """NUT-02: the input fee of ``n`` proofs of one keyset."""
    return -(-n * ppk // 1000)


def replay(w: Wallet, after: int = 0) -> list[dict[str, Any]]:
    """Every stored event after ``after``, without following."""
    with w.client() as client:
        return list(client.stream("/events", after=after))


class Consumer:
    """Follows ``/events?after=SEQ&follow=1`` on its own thread until it has seen an event
    that ``stop_at`` accepts, then hangs up (as a consumer that goes away)."""

    def __init__(self, w: Wallet, after: int,
                 stop_at: Callable[[dict[str, Any]], bool]) -> None:
        self.lines: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._done = False

        def run() -> None:
            try:
                with ControlClient(w.data_dir) as client:
                    for event in client.stream("/events", after=after, follow=1):
                        with self._cond:
                            self.lines.append(event)
                            self._cond.notify_all()
                        if stop_at(event):
                            return
            finally:
                with self._cond:
                    self._done = True
                    self._cond.notify_all()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def wait_lines(self, n: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.lines) >= n, EVENT_TIMEOUT), self.lines

    def wait_gone(self) -> list[dict[str, Any]]:
        with self._cond:
            assert self._cond.wait_for(lambda: self._done, EVENT_TIMEOUT), self.lines
        self._thread.join(EVENT_TIMEOUT)
        return self.lines


def test_a_consumer_that_resumes_after_seq_sees_every_event_once_in_order(
        wallet: WalletMaker, mint: DevMint) -> None:
    url, ppk = mint.url, mint.input_fee_ppk
    w = wallet("w", url)
    w.fund(url, 1000)
    assert w.balance(url) == {"spendable": 1000, "reserved": 0, "pending": 0, "total": 1000}
    funded = replay(w)
    assert [e["event"] for e in funded] == ["mint:prepared", "mint:finalized"]
    assert [e["seq"] for e in funded] == [1, 2]

    # the first consumer replays what is there, follows the live send, then goes away
    first = Consumer(w, 0, lambda e: e["event"] == "send:pending")
    first.wait_lines(2)  # caught up: what follows is live
    op, token = w.send(url, 100)
    send_fee = op["fee"]
    assert w.balance(url) == {"spendable": 1000 - 100 - send_fee, "reserved": 0,
                              "pending": 100, "total": 1000 - send_fee}
    seen = first.wait_gone()
    assert [e["event"] for e in seen] == ["mint:prepared", "mint:finalized",
                                          "send:prepared", "send:pending"]

    # meanwhile, with nobody listening: the send is rolled back, a second one is made
    reclaim = fee_of(ppk, len(decode(token).proofs))
    w.cli("send", "rollback", op["id"])
    after_rollback = 1000 - send_fee - reclaim
    assert w.balance(url) == {"spendable": after_rollback, "reserved": 0, "pending": 0,
                              "total": after_rollback}
    second = w.json("send", "50", "--mint", url, "--prepare-only")
    assert w.balance(url)["spendable"] + w.balance(url)["reserved"] == after_rollback

    # the consumer resumes after the last seq it saw: the missed ones, then live ones
    last = seen[-1]["seq"]
    resumed = Consumer(w, last, lambda e: e["event"] == "send:rolled-back"
                       and e["operation_id"] == second["id"])
    resumed.wait_lines(2)  # the missed rollback and the second send's prepare
    w.cli("send", "rollback", second["id"])  # live
    more = resumed.wait_gone()
    assert [(e["event"], e["operation_id"]) for e in more] == [
        ("send:rolled-back", op["id"]), ("send:prepared", second["id"]),
        ("send:rolled-back", second["id"])]
    assert w.balance(url) == {"spendable": after_rollback, "reserved": 0, "pending": 0,
                              "total": after_rollback}

    # every event exactly once, in order, and each line as the store replays it
    together = seen + more
    assert [e["seq"] for e in together] == list(range(1, len(together) + 1))
    assert together == replay(w)
    assert replay(w, together[-1]["seq"]) == []
    # no token in any line, but the public view of each operation
    assert token not in str(together)
    assert [e["operation"]["state"] for e in together[2:]] == [
        "prepared", "pending", "rolled_back", "prepared", "rolled_back"]

    # the CLI: --after SEQ --json prints the same lines; the text form shows each seq
    out = w.cli("events", "--after", "3", "--json").stdout.splitlines()
    assert [json.loads(line) for line in out] == together[3:]
    text = w.cli("events", "--after", "5").stdout.splitlines()
    assert [line.split()[0] for line in text] == ["6", "7"]
    assert w.cli("events", "--after", str(together[-1]["seq"])).stdout.strip() == \
        f"no events after {together[-1]['seq']}"


@pytest.mark.parametrize("bad", ["-1", "abc", "1.5", "+3", "9" * 30])
def test_a_bad_after_is_a_400_json_error(wallet: WalletMaker, mint_fee0: DevMint,
                                         bad: str) -> None:
    w = wallet("w")
    with w.client() as client, pytest.raises(RequestFailed) as failed:
        list(client.stream("/events", after=bad))
    assert failed.value.status == 400 and failed.value.type == "BadRequestError"
    assert w.cli("events", "--after", "-1", code=2).exit_code == 2


def test_a_sigkilled_daemon_still_replays_the_finalized_send_and_the_paid_request(
        wallet: WalletMaker, mint: DevMint) -> None:
    url, ppk = mint.url, mint.input_fee_ppk
    shop, payer = wallet("shop", url), wallet("payer", url)
    payer.fund(url, 500)
    before = replay(shop)
    start = before[-1]["seq"] if before else 0

    with shop.client() as s, payer.client() as p:
        req = s.post("/request/new", {"amount": 64, "mints": [url]})
        paid = p.post("/request/pay", {"creq": req["encoded"]})
        claim_fee = fee_of(ppk, len(paid["payload"]["proofs"]))
        answer = s.post("/request/claim", {"payload": paid["payload"]})
    assert answer["amount"] == 64 - claim_fee
    assert shop.balance(url) == {"spendable": 64 - claim_fee, "reserved": 0, "pending": 0,
                                 "total": 64 - claim_fee}

    op, token = shop.send(url, 10)
    left = 64 - claim_fee - 10 - op["fee"]
    assert shop.balance(url) == {"spendable": left, "reserved": 0, "pending": 10,
                                 "total": left + 10}
    with payer.client() as p:
        received = p.post("/receive", {"token": token})
    assert received["state"] == "completed"
    assert received["amount"] == 10 - fee_of(ppk, len(decode(token).proofs))
    shop.wait_event("send:finalized", op["id"])  # the shop's watcher saw it claimed
    shop.daemon.signal(signal.SIGKILL)  # at once: nothing gets to flush anything
    assert shop.daemon.wait_exit() == -signal.SIGKILL

    shop.daemon.start()
    events = replay(shop, start)
    assert [e["seq"] for e in events] == list(range(start + 1, start + 1 + len(events)))
    assert [(e["event"], e.get("request_id") or e["operation_id"]) for e in events] == [
        ("request:created", req["id"]),
        ("receive:prepared", answer["operation_id"]),
        ("receive:finalized", answer["operation_id"]),
        ("request:paid", req["id"]),
        ("send:prepared", op["id"]), ("send:pending", op["id"]),
        ("send:finalized", op["id"])]
    paid_line = events[3]
    assert (paid_line["amount"], paid_line["operation_id"]) == (64 - claim_fee,
                                                                answer["operation_id"])
    assert events[-1]["operation"]["state"] == "completed"
    assert shop.balance(url) == {"spendable": left, "reserved": 0, "pending": 0,
                                 "total": left}
