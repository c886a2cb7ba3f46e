"""Opening a wallet that meets garbage, and an open that fails.

Garbage on disk (a record this release cannot decode) is skipped, logged by kind
and key (never its value) and counted as ``last_recovery["unreadable"]``; the
record stays on disk. A mint that answers garbage during recovery leaves the
operation where it is. An open that fails anywhere leaves no actor and no
``coco-watch``/``coco-control`` thread running, and the directory unlocked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pykka
import pytest

import coco_actors.coco as coco_module
from coco_actors import Coco
from coco_actors.errors import MintProtocolError
from coco_actors.mint_client import MintClient, normalize_mint_url
from coco_actors.recovery import recover as recover_operations
from coco_actors.store import Store
from coco_actors.watcher import WatcherActor
from devtools.devmint import DevMint

from .helpers import WalletFactory, balance_of, fund

MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon " \
    "abandon about"
SECRET = "0ddba11-not-to-be-logged"


def _our_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith(("coco-watch", "coco-control"))]


def _wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)  # polling a condition with a deadline, not waiting a fixed time
    return True


def _put_raw(data_dir: Path, db: str, key: bytes, value: bytes) -> None:
    store = Store(data_dir)
    try:
        with store.env.begin(write=True) as txn:
            txn.put(key, value, db=store._dbs[db])
    finally:
        store.close()


def _get_raw(data_dir: Path, db: str, key: bytes) -> bytes | None:
    store = Store(data_dir)
    try:
        with store.env.begin() as txn:
            value: bytes | None = txn.get(key, db=store._dbs[db])
            return value
    finally:
        store.close()


# --- garbage on disk ---------------------------------------------------------------------


def test_unreadable_records_are_skipped_counted_and_left_on_disk(
        wallet: WalletFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wallet("a", mnemonic=MNEMONIC).close()
    garbage = {
        ("proofs", b"\x02" * 33): b'{"v":1,"secret":"%s","amount":8}' % SECRET.encode(),
        ("operations", b"op-garbage"): b"\xff\xfe not json " + SECRET.encode(),
        ("mints", b"http://127.0.0.1:1"): b'{"v":2,"url":7,"secret":"%s"}' % SECRET.encode(),
        ("history", b"\x00" * 8 + b"op-garbage"): b"[" + SECRET.encode(),
    }
    for (db, key), value in garbage.items():
        _put_raw(tmp_path / "a", db, key, value)

    with caplog.at_level(logging.DEBUG):
        coco = wallet("a")
    assert coco.last_recovery == {"unreadable": 3}  # proofs, operations, mints
    assert coco.balance() == {}
    assert coco.history.get_history() == []  # the history entry is skipped too
    assert coco.mints.list() == []
    assert SECRET not in caplog.text
    assert "skipping unreadable proofs record" in caplog.text
    assert "skipping unreadable operations record op-garbage" in caplog.text
    assert coco.recover() == {"unreadable": 3}  # reported by every recovery, not fixed
    coco.close()
    for (db, key), value in garbage.items():
        assert _get_raw(tmp_path / "a", db, key) == value


# --- a failed open -----------------------------------------------------------------------


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected failure")


@pytest.mark.parametrize("where", ["ledger", "supervisor", "watcher", "recovery"])
def test_a_failed_open_leaves_no_actor_or_thread(
        wallet: WalletFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        where: str) -> None:
    wallet("a", mnemonic=MNEMONIC).close()
    before = set(pykka.ActorRegistry.get_all())
    target = {"ledger": (coco_module, "start_ledger"),
              "supervisor": (coco_module, "start_supervisor"),
              "watcher": (WatcherActor, "start"),
              "recovery": (coco_module, "recover_operations")}[where]
    with monkeypatch.context() as patch:
        patch.setattr(*target, _boom)
        with pytest.raises(RuntimeError, match="injected failure"):
            Coco.open(tmp_path / "a", watcher=True)
    assert set(pykka.ActorRegistry.get_all()) == before
    assert _our_threads() == []
    with wallet("a") as again:  # the lock was released
        assert again.mnemonic == MNEMONIC


def test_a_recovery_that_fails_after_starting_the_watcher_stops_its_threads(
        wallet: WalletFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        mint_fee0: DevMint) -> None:
    url = normalize_mint_url(mint_fee0.url)
    alice = wallet("alice", url)
    fund(alice, url, 100)
    sent, _ = alice.send.execute_prepared_send(alice.send.prepare_send(url, 10).id)
    alice.close()
    real = recover_operations
    before = set(pykka.ActorRegistry.get_all())

    def recover_then_fail(*args: Any, **kwargs: Any) -> dict[str, int]:
        real(*args, **kwargs)  # hands the pending send to the watcher: a coco-watch thread
        assert _wait_for(lambda: any(n.startswith("coco-watch") for n in _our_threads()))
        raise RuntimeError("injected failure")

    with monkeypatch.context() as patch:
        patch.setattr(coco_module, "recover_operations", recover_then_fail)
        with pytest.raises(RuntimeError, match="injected failure"):
            Coco.open(tmp_path / "alice", watcher=True)
    assert set(pykka.ActorRegistry.get_all()) == before
    assert _our_threads() == []
    again = wallet("alice")
    assert {o.id: o.state for o in again.send.get_pending_operations()} == {sent.id: "pending"}


# --- garbage from a mint during recovery -------------------------------------------------


@pytest.mark.parametrize("answer", ["typed", "untyped"])
def test_a_mint_answering_garbage_in_recovery_leaves_the_send_pending(
        wallet: WalletFactory, monkeypatch: pytest.MonkeyPatch, mint_fee0: DevMint,
        answer: str) -> None:
    url = normalize_mint_url(mint_fee0.url)
    alice = wallet("alice", url)
    fund(alice, url, 100)
    sent, _ = alice.send.execute_prepared_send(alice.send.prepare_send(url, 10).id)
    balances = balance_of(alice, url)
    alice.close()

    def garbage(self: MintClient, ys: list[str]) -> list[Any]:
        if answer == "typed":
            raise MintProtocolError("checkstate answer is not a JSON object")
        return ["not", "a", "proof state"]  # what a client that did not check would pass on

    with monkeypatch.context() as patch:
        patch.setattr(MintClient, "check_state", garbage)
        alice = wallet("alice")
        assert alice.last_recovery == {"pending": 1}
        assert {o.id: o.state for o in alice.send.get_pending_operations()} == {
            sent.id: "pending"}
        assert balance_of(alice, url) == balances
        alice.close()
    alice = wallet("alice")  # the mint answers properly again: still pending, nothing lost
    assert alice.last_recovery == {"pending": 1}
    assert balance_of(alice, url) == balances
