"""Idempotency keys without a mint: the key check, the fingerprint, the per-key gate, and
the ledger writing a bound key in the same transaction as its target's first record."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from coco_actors.errors import ActorTimeoutError, InvalidInputError
from coco_actors.idempotency import KeyGate, check_key, fingerprint, step_key
from coco_actors.proof_ledger import ProofLedger
from coco_actors.records import (
    IdempotencyRecord,
    Operation,
    OperationId,
    OpState,
    OpType,
    now_ms,
)
from coco_actors.store import Store, WriteBatch

WAIT = 10.0


@pytest.mark.parametrize("key", ["a", "order-4711", "x" * 255, " ~!"])
def test_a_good_key_is_itself(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize("key", ["", "x" * 256, "a\tb", "a\x7f", "\u00e9", None, 5, b"k"])
def test_a_bad_key_is_invalid_input(key: object) -> None:
    with pytest.raises(InvalidInputError):
        check_key(key)


def test_the_fingerprint_is_the_request() -> None:
    assert fingerprint("send.prepare", "u", 100) == fingerprint("send.prepare", "u", 100)
    assert fingerprint("send.prepare", "u", 100) != fingerprint("send.prepare", "u", 101)
    assert fingerprint("send.prepare", "u", 100) != fingerprint("mint.quote", "u", 100)


def test_a_step_key_is_short_and_fixed() -> None:
    k = step_key("x" * 255, "execute")
    assert k == step_key("x" * 255, "execute") and len(k) <= 255 and check_key(k) == k
    assert k != step_key("x" * 255, "rollback") != step_key("y", "execute")


def test_the_gate_lets_one_caller_per_key_through() -> None:
    gate = KeyGate()
    inside, release, second_in = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with gate.exclusive("k", WAIT):
            inside.set()
            release.wait(WAIT)

    def second() -> None:
        with gate.exclusive("k", WAIT):
            second_in.set()

    threading.Thread(target=first, daemon=True).start()
    assert inside.wait(WAIT)
    t = threading.Thread(target=second, daemon=True)
    t.start()
    with gate.exclusive("other", WAIT):  # another key is not held back
        pass
    with pytest.raises(ActorTimeoutError), gate.exclusive("k", 0.05):
        pass
    assert not second_in.is_set()
    release.set()
    assert second_in.wait(WAIT)
    t.join(WAIT)


def _op(op_id: str) -> Operation:
    return Operation(id=OperationId(op_id), type=OpType.SEND, mint_url="http://m",
                     amount=5, state=OpState.PREPARED)


def test_a_bound_key_is_written_with_the_first_commit_and_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "w")
    try:
        ledger = ProofLedger(store)
        rec = IdempotencyRecord(key="k", fingerprint="f", kind="send.prepare", target="op1")
        ledger.bind_key(rec)
        assert store.idempotency_records() == [] and ledger.find_key("k") is None
        ledger.commit(_op("op1"))
        assert store.idempotency_records() == [rec] and ledger.find_key("k") == rec

        ledger.bind_key(IdempotencyRecord(key="gone", fingerprint="f", kind="x",
                                          target="op2"))
        ledger.unbind_key("gone", "op2")  # the call failed before its first commit
        ledger.commit(_op("op2"))
        assert [r.key for r in store.idempotency_records()] == ["k"]
        ledger.delete_operation(OperationId("op1"))  # the operation is gone: the key too
        assert store.idempotency_records() == [] and ledger.find_key("k") is None
    finally:
        store.close()


def test_expired_keys_are_not_found_and_pruned_at_start(tmp_path: Path) -> None:
    store = Store(tmp_path / "w")
    try:
        old = IdempotencyRecord(key="old", fingerprint="f", kind="x", target="op1",
                                created_at=now_ms() - 7_200_000)
        new = IdempotencyRecord(key="new", fingerprint="f", kind="x", target="op2")
        def write(b: WriteBatch) -> None:
            b.put_idempotency(old)
            b.put_idempotency(new)

        store.transact(write)
        ledger = ProofLedger(store, idempotency_ttl=3600)
        assert ledger.find_key("old") is None and ledger.find_key("new") == new
        assert [r.key for r in store.idempotency_records()] == ["new"]
        assert ProofLedger(store, idempotency_ttl=3600).prune_keys() == 0
    finally:
        store.close()
