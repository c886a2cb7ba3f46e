"""The KeysetRefresher on its own: requests answered on its thread, failures handed to
the waiting caller, the schedule, a stop; and the ledger refusing keys changed under an
id (a hostile refresh), with nothing of that answer stored and no key in the log."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from coincurve import PrivateKey

from coco_actors import Coco
from coco_actors.crypto.keysets import derive_keyset_id_v01, validate_keys
from coco_actors.errors import CryptoError, InvalidInputError, InvalidStateError, MintError
from coco_actors.mint_client import MintClient
from coco_actors.records import MintRecord
from coco_actors.refresher import KeysetRefresher, check_interval
from coco_actors.wire import Keyset
from tests.support.waiting import wait_until

TIMEOUT = 10.0


def _points(seed: int) -> dict[int, str]:
    """Two real curve points (validate_keys refuses anything else)."""
    return {a: PrivateKey((seed * 10 + a).to_bytes(32, "big")).public_key.format().hex()
            for a in (1, 2)}


def test_a_request_runs_on_the_refresher_thread_and_is_answered() -> None:
    threads: list[str] = []
    refresher = KeysetRefresher(lambda url: threads.append(threading.current_thread().name),
                                lambda: [], interval=None)
    refresher.start()
    try:
        refresher.refresh("http://mint", TIMEOUT)
        assert threads == ["coco-keysets"]
        assert refresher.done == {"http://mint": 1}
        assert refresher.rounds == 0  # no schedule
    finally:
        assert refresher.stop()


def test_a_failed_refresh_reaches_the_caller_and_the_thread_lives() -> None:
    calls: list[str] = []

    def refresh(url: str) -> None:
        calls.append(url)
        if url == "http://down":
            raise MintError("mint unreachable")

    refresher = KeysetRefresher(refresh, lambda: [], interval=None)
    refresher.start()
    try:
        with pytest.raises(MintError, match="unreachable"):
            refresher.refresh("http://down", TIMEOUT)
        refresher.refresh("http://up", TIMEOUT)  # the thread goes on
        assert calls == ["http://down", "http://up"]
        assert refresher.done == {"http://up": 1}
    finally:
        assert refresher.stop()


def test_the_schedule_refreshes_every_mint() -> None:
    seen: list[str] = []
    refresher = KeysetRefresher(seen.append, lambda: ["http://a", "http://b"], interval=0.05)
    refresher.start()
    try:
        wait_until(lambda: refresher.rounds >= 2, TIMEOUT, "two scheduled rounds")
        assert seen[:4] == ["http://a", "http://b", "http://a", "http://b"]
    finally:
        assert refresher.stop()


def test_a_stopped_refresher_answers_at_once() -> None:
    refresher = KeysetRefresher(lambda url: None, lambda: [], interval=None)
    refresher.start()
    assert refresher.stop()
    with pytest.raises(InvalidStateError, match="stopped"):
        refresher.refresh("http://mint", TIMEOUT)


@pytest.mark.parametrize("bad", [0, -1, True, "60", float("inf")])
def test_the_interval_is_checked(bad: object, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="keyset_refresh"):
        check_interval(bad)
    with pytest.raises(InvalidInputError, match="keyset_refresh"):
        Coco.open(tmp_path / "w", keyset_refresh=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "w").exists()  # refused before the directory is touched
    assert check_interval(None) is None
    assert check_interval(30) == 30.0


def test_keys_changed_under_the_same_id_are_refused_and_nothing_is_stored(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A hostile refresh: keyset ``a`` comes back with other keys under its id (a mint
    answer the client could not verify would never get here; the ledger checks anyway),
    together with a new keyset ``c``. Refused with CryptoError, logged without a key,
    and neither ``a``'s new keys nor ``c`` are stored."""
    keys_a, keys_b, keys_c = _points(1), _points(2), _points(3)
    a = Keyset(derive_keyset_id_v01(keys_a, "sat"), "sat", validate_keys(keys_a))
    c = Keyset(derive_keyset_id_v01(keys_c, "sat"), "sat", validate_keys(keys_c))
    url = "http://127.0.0.1:1"
    with Coco.open(tmp_path / "w", watcher=False, keyset_refresh=None) as coco:
        coco._register(MintRecord(url=url), MintClient(url), [a])
        hostile = replace(a, keys=validate_keys(keys_b), active=False)
        caplog.set_level(logging.ERROR)
        with pytest.raises(CryptoError, match=f"changed the keys of keyset {a.id}"):
            coco._register(MintRecord(url=url), MintClient(url), [c, hostile])
        assert coco.mints.keysets(url) == [a]
        assert [ks.keys for ks in coco._mint_context(url).keysets] == [a.keys]
        logged = caplog.text
        assert "keysets refused, nothing stored" in logged
        for key in (*keys_a.values(), *keys_b.values(), *keys_c.values()):
            assert key not in logged
        # an honest refresh (a goes inactive, c is new) is stored and seen at once
        ctx = coco._register(MintRecord(url=url), MintClient(url),
                             [replace(a, active=False), c])
        assert {(ks.id, ks.active) for ks in coco.mints.keysets(url)} == {(a.id, False),
                                                                          (c.id, True)}
        assert ctx.active_keyset("sat").id == c.id
    with Coco.open(tmp_path / "w", watcher=False, keyset_refresh=None) as again:
        assert {(ks.id, ks.active) for ks in again.mints.keysets(url)} == {(a.id, False),
                                                                           (c.id, True)}
