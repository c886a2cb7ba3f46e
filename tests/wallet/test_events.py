"""Event handlers run on the bus: a failing one never hurts the wallet or other handlers."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from coco_actors import InvalidInputError
from coco_actors.mint_client import normalize_mint_url
from devtools.devmint import DevMint

from .helpers import WalletFactory, balance_of, fund, token_fee

EVENT_TIMEOUT = 5.0


def test_raising_handler_does_not_break_the_wallet(wallet: WalletFactory,
                                                   mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)

    bad_called, good_called = threading.Event(), threading.Event()
    seen: list[str] = []

    def bad(payload: dict[str, Any]) -> None:
        bad_called.set()
        raise RuntimeError("handler bug")

    def good(payload: dict[str, Any]) -> None:
        seen.append(payload["operation_id"])
        good_called.set()

    alice.on("send:prepared", bad)
    alice.on("send:prepared", good)

    prepared = alice.send.prepare_send(url, 100)
    assert bad_called.wait(EVENT_TIMEOUT)
    assert good_called.wait(EVENT_TIMEOUT)
    assert seen == [prepared.id]

    op, _ = alice.send.execute_prepared_send(prepared.id)
    assert op.state == "pending"
    assert balance_of(alice, url) == (1000 - 100 - prepared.fee, 0, 100)

    # the bus survived: later events still reach handlers
    bad_called.clear()
    good_called.clear()
    second = alice.send.prepare_send(url, 8)
    assert bad_called.wait(EVENT_TIMEOUT)
    assert good_called.wait(EVENT_TIMEOUT)
    assert seen == [prepared.id, second.id]

    alice.off("send:prepared", bad)
    alice.off("send:prepared", good)
    alice.send.rollback(second.id)


def test_unknown_event_name_is_rejected(wallet: WalletFactory) -> None:
    alice = wallet("alice")
    with pytest.raises(InvalidInputError):
        alice.on("send:finished", lambda payload: None)


def test_watcher_finalizes_a_claimed_send_by_itself(wallet: WalletFactory,
                                                    mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice, bob = wallet("alice", url, watcher=True), wallet("bob", url)
    fund(alice, url, 1000)
    finalized = threading.Event()
    ids: list[str] = []

    def on_finalized(payload: dict[str, Any]) -> None:
        ids.append(payload["operation_id"])
        finalized.set()

    alice.on("send:finalized", on_finalized)
    prepared = alice.send.prepare_send(url, 100)
    op, token = alice.send.execute_prepared_send(prepared.id)
    bob.receive(token)

    assert finalized.wait(15.0), "the watcher did not finalize the claimed send"
    assert ids == [op.id]
    stored = alice.send.get_operation(op.id)
    assert stored is not None and stored.state == "completed"
    assert balance_of(alice, url) == (1000 - 100 - prepared.fee, 0, 0)
    assert balance_of(bob, url) == (100 - token_fee(token, mint.input_fee_ppk), 0, 0)
    # a manual check afterwards finds nothing left to do, and does not fail
    assert alice.send.check_pending() == []
