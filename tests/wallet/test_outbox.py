"""The outbox: every event is committed with its transition, numbered, replayable, pruned.

The first tests drive the plain ``ProofLedger`` over a real ``Store`` (no actor, no
mint) and read the store directly; the last ones run a wallet against the real mint.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from coco_actors import InvalidInputError, InvalidStateError
from coco_actors.events import EventLog, op_event
from coco_actors.mint_client import normalize_mint_url
from coco_actors.proof_ledger import ProofLedger
from coco_actors.records import EventRecord, Operation, OpState, OpType, new_operation_id, now_ms
from coco_actors.store import Store, WriteBatch
from devtools.devmint import DevMint

from .helpers import EVENT_TIMEOUT, WalletFactory, balance_of, fund, token_fee

URL = "http://127.0.0.1:3338"
DAY_MS = 24 * 3600 * 1000


def send_op(state: OpState = OpState.PREPARED, **fields: Any) -> Operation:
    return Operation(id=new_operation_id(), type=OpType.SEND, mint_url=URL, amount=21,
                     state=state, **fields)


def stored(store: Store) -> list[EventRecord]:
    return store.events_since(0, 10_000)


def test_seq_increases_strictly_across_a_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path)
    ledger = ProofLedger(store)
    op = send_op()
    ledger.commit(op, op_event("send:prepared", op))
    ledger.commit(op.moved(OpState.ROLLED_BACK), op_event("send:rolled-back", op))
    assert [(r.seq, r.event) for r in stored(store)] == [(1, "send:prepared"),
                                                         (2, "send:rolled-back")]
    store.close()

    store = Store(tmp_path)
    try:
        log = EventLog(store)
        assert log.last_seq() == 2
        ledger = ProofLedger(store, events=log)
        other = send_op()
        ledger.commit(other, op_event("send:prepared", other))
        assert [r.seq for r in stored(store)] == [1, 2, 3]
        assert log.last_seq() == 3
        assert [r.operation_id for r in log.since(2)] == [other.id]
        assert log.since(3) == [] and log.since(99) == []
        assert [r.seq for r in log.since(0, limit=2)] == [1, 2]
    finally:
        store.close()


def test_the_event_is_in_lmdb_with_its_commit_and_holds_no_token(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        ledger = ProofLedger(store)
        token = "cashuBsecrettokenvalue0123456789"
        op = send_op(OpState.PENDING, token=token)
        event = op_event("send:pending", op, token=token)
        assert event.payload["token"] == token  # handlers still get it in process
        ledger.commit(op, event)
        # read straight from LMDB, not through the ledger's memory
        assert store.get_operation(op.id) == op
        (rec,) = stored(store)
        assert (rec.seq, rec.event, rec.operation_id, rec.mint_url) == (
            1, "send:pending", op.id, URL)
        assert rec.data["operation"]["state"] == "pending"
        assert rec.data["operation"]["amount"] == 21
        assert "token" not in rec.data and "token" not in rec.data["operation"]
        assert abs(rec.time - now_ms()) < 60_000
        with store.env.begin() as txn:
            raw = [bytes(v) for _, v in txn.cursor(db=store._dbs["events"])]
        assert len(raw) == 1 and token.encode() not in raw[0]
    finally:
        store.close()


def test_a_commit_without_an_event_writes_none(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        ledger = ProofLedger(store)
        ledger.commit(send_op())
        assert stored(store) == []
        assert store.event_seqs() == (0, 0)
    finally:
        store.close()


def _old(seq: int, age_ms: int) -> EventRecord:
    return EventRecord(seq=seq, time=now_ms() - age_ms, event="send:prepared",
                       operation_id=f"op{seq}", mint_url=URL)


def test_retention_prunes_old_events_and_keeps_the_newest(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        olds = [_old(1, 10 * DAY_MS), _old(2, 9 * DAY_MS), _old(3, 2 * DAY_MS),
                _old(4, 1 * DAY_MS)]
        def write(b: WriteBatch) -> None:
            for r in olds:
                b.put_event(r)

        store.transact(write)
        log = EventLog(store)
        ProofLedger(store, events=log, retention=3 * 24 * 3600)  # prunes at open
        assert [r.seq for r in stored(store)] == [3, 4]
        assert log.oldest_seq() == 3
        # since(after) older than the oldest kept: from the oldest kept on
        assert [r.seq for r in log.since(1)] == [3, 4]
        # everything older than the window: all but the newest go, seq goes on after it
        ledger = ProofLedger(store, events=log, retention=3600)
        assert [r.seq for r in stored(store)] == [4]
        op = send_op()
        ledger.commit(op, op_event("send:prepared", op))
        assert [r.seq for r in stored(store)] == [4, 5]
    finally:
        store.close()


def test_wait_wakes_on_a_commit_and_times_out_without_one(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        log = EventLog(store)
        ledger = ProofLedger(store, events=log)
        started = time.monotonic()
        assert log.wait(0, 0.05) == []
        assert time.monotonic() - started >= 0.05

        got: list[list[EventRecord]] = []
        waiting = threading.Event()

        def waiter() -> None:
            waiting.set()
            got.append(log.wait(0, 30.0))

        thread = threading.Thread(target=waiter)
        thread.start()
        assert waiting.wait(EVENT_TIMEOUT)
        op = send_op()
        ledger.commit(op, op_event("send:prepared", op))
        thread.join(EVENT_TIMEOUT)
        assert not thread.is_alive(), "wait was not woken by the commit"
        assert [[r.operation_id for r in batch] for batch in got] == [[op.id]]
        # an event already there: no wait at all
        assert [r.seq for r in log.wait(0, 30.0)] == [1]

        closer = threading.Thread(target=lambda: got.append(log.wait(1, 30.0)))
        closer.start()
        log.close()
        closer.join(EVENT_TIMEOUT)
        assert not closer.is_alive() and got[-1] == []
        with pytest.raises(InvalidStateError):
            log.since(0)
    finally:
        store.close()


@pytest.mark.parametrize("bad", [-1, "3", 1.5, True, None])
def test_bad_arguments_are_typed_errors(tmp_path: Path, bad: Any) -> None:
    store = Store(tmp_path)
    try:
        log = EventLog(store)
        with pytest.raises(InvalidInputError):
            log.since(bad)
        with pytest.raises(InvalidInputError):
            log.wait(bad, 0.01)
        with pytest.raises(InvalidInputError):
            log.since(0, limit=0)
    finally:
        store.close()


def test_bad_retention_is_refused_before_the_directory_is_touched(tmp_path: Path) -> None:
    from coco_actors import Coco
    bad: Any
    for bad in (0, -5, "7d", float("inf"), True):
        with pytest.raises(InvalidInputError):
            Coco.open(tmp_path / "w", event_retention=bad, watcher=False)
    assert not (tmp_path / "w").exists()


# --- against the real mint -------------------------------------------------------------


class Recorder:
    """Every payload of the given events as handlers got it (on the bus thread)."""

    def __init__(self, coco: Any, names: list[str]) -> None:
        self._cond = threading.Condition()
        self.seen: list[tuple[str, dict[str, Any]]] = []
        for name in names:
            coco.on(name, self._record(name))

    def _record(self, name: str) -> Any:
        def record(payload: dict[str, Any]) -> None:
            with self._cond:
                self.seen.append((name, payload))
                self._cond.notify_all()
        return record

    def wait_count(self, n: int) -> list[tuple[str, dict[str, Any]]]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.seen) >= n, EVENT_TIMEOUT), self.seen
            return list(self.seen)


def test_a_send_commits_its_events_in_order_with_seq(wallet: WalletFactory,
                                                     mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice, bob = wallet("alice", url), wallet("bob", url)
    fund(alice, url, 1000)
    start = alice.events.last_seq()
    names = ["send:prepared", "send:pending", "send:finalized"]
    rec = Recorder(alice, names)

    prepared = alice.send.prepare_send(url, 100)
    op, token = alice.send.execute_prepared_send(prepared.id)
    bob.receive(token)
    assert [o.id for o in alice.send.check_pending()] == [op.id]
    assert balance_of(alice, url) == (1000 - 100 - prepared.fee, 0, 0)
    assert balance_of(bob, url) == (100 - token_fee(token, mint.input_fee_ppk), 0, 0)

    seen = rec.wait_count(3)
    assert [n for n, _ in seen] == names
    seqs = [p["seq"] for _, p in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3 and seqs[0] > start
    assert seen[1][1]["token"] == token  # in process, the pending send's token

    durable = [r for r in alice.events.since(start) if r.operation_id == op.id]
    assert [(r.seq, r.event) for r in durable] == list(zip(seqs, names, strict=True))
    assert [r.data["operation"]["state"] for r in durable] == ["prepared", "pending",
                                                               "completed"]
    assert all("token" not in r.data and "token" not in r.data["operation"]
               for r in durable)
    assert alice.events.last_seq() == durable[-1].seq

    # a reopened wallet replays the same events, and numbers the next one after them
    last = alice.events.last_seq()
    alice.close()
    again = wallet("alice", url)
    assert [(r.seq, r.event) for r in again.events.since(start)
            if r.operation_id == op.id] == list(zip(seqs, names, strict=True))
    assert again.events.last_seq() == last
    second = again.send.prepare_send(url, 5)
    (nxt,) = again.events.since(last)
    assert (nxt.seq, nxt.event, nxt.operation_id) == (last + 1, "send:prepared", second.id)
    again.send.rollback(second.id)
    assert balance_of(again, url) == (1000 - 100 - prepared.fee, 0, 0)


def test_request_events_are_committed_with_the_request(wallet: WalletFactory,
                                                       mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    shop, payer = wallet("shop", url), wallet("payer", url)
    fund(payer, url, 500)
    rec = Recorder(shop, ["request:created", "request:paid", "request:cancelled"])
    start = shop.events.last_seq()

    req = shop.requests.create(amount=64, mints=[url])
    paid = payer.requests.pay(req.encoded)
    answer = shop.requests.claim(paid["payload"])
    other = shop.requests.create(amount=8, mints=[url])
    shop.requests.cancel(other.id)

    seen = rec.wait_count(4)
    assert [n for n, _ in seen] == ["request:created", "request:paid", "request:created",
                                    "request:cancelled"]
    assert [p["request_id"] for _, p in seen] == [req.id, req.id, other.id, other.id]
    assert seen[1][1]["amount"] == answer["amount"]
    assert seen[1][1]["operation_id"] == answer["operation_id"]

    durable = [r for r in shop.events.since(start) if r.event.startswith("request:")]
    assert [(r.seq, r.event) for r in durable] == [(p["seq"], n) for n, p in seen]
    assert durable[1].data == {"request_id": req.id, "amount": answer["amount"],
                               "operation_id": answer["operation_id"]}
    assert durable[1].operation_id == answer["operation_id"]
    assert durable[1].mint_url == url
    sent = payer.send.get_operation(paid["operation_id"])
    assert sent is not None and sent.token is not None
    fee = token_fee(sent.token, mint.input_fee_ppk)
    assert answer["amount"] == 64 - fee
    assert balance_of(shop, url) == (64 - fee, 0, 0)
    assert balance_of(payer, url) == (500 - 64 - sent.fee, 0, 64)
