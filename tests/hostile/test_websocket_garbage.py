"""Whatever a mint pushes on the websocket, the link logs it and carries on.

``MintLink._handle`` is fed every kind of garbage directly (no socket, no thread);
a well-formed notice afterwards must still be reported.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from coco_actors.mint_client import MintClient
from coco_actors.watcher import MINT_QUOTE, PROOF_STATE, MintLink, QuoteStates, WatcherConfig
from coco_actors.wire import ProofState

URL = "http://127.0.0.1:1"
Y = "02" + "11" * 32

GARBAGE: list[Any] = [
    b"\xff\xfe", "not json", "[" * 100_000, "[]", "null", "7", '"s"',
    {"method": "subscribe"}, {"method": "subscribe", "params": []},
    {"method": "subscribe", "params": "x"}, {"method": "subscribe", "params": {"subId": []}},
    {"method": "subscribe", "params": {"subId": "ps"}},
    {"method": "subscribe", "params": {"subId": "ps", "payload": []}},
    {"method": "subscribe", "params": {"subId": "ps", "payload": {"Y": 1, "state": "SPENT"}}},
    {"method": "subscribe", "params": {"subId": "ps", "payload": {"Y": Y, "state": "EATEN"}}},
    {"method": "subscribe", "params": {"subId": "mq", "payload": "PAID"}},
    {"method": "subscribe", "params": {"subId": "mq", "payload": {"quote": [], "state": 1}}},
    {"method": "subscribe", "params": {"subId": "mq", "payload": {"quote": "q"}}},
    {"error": {"code": -1, "message": "x" * 10_000}}, {"error": None}, {"result": [1, 2]},
]


def _link(reports: list[tuple[list[ProofState], QuoteStates]]) -> MintLink:
    client = MintClient(URL, transport=httpx.MockTransport(lambda r: httpx.Response(500)))

    def report(url: str, states: list[ProofState], quotes: QuoteStates) -> None:
        reports.append((states, quotes))

    link = MintLink(URL, client, WatcherConfig(), report, frozenset({PROOF_STATE, MINT_QUOTE}))
    link._sub_kinds.update({"ps": PROOF_STATE, "mq": MINT_QUOTE})
    return link


@pytest.mark.parametrize("raw", GARBAGE, ids=[repr(g)[:40] for g in GARBAGE])
def test_garbage_is_logged_and_the_link_carries_on(raw: Any,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    reports: list[tuple[list[ProofState], QuoteStates]] = []
    link = _link(reports)
    text = raw if isinstance(raw, str | bytes) else json.dumps(raw)
    with caplog.at_level(logging.INFO, logger="coco_actors.watcher"):
        link._handle(text)
    assert reports == []
    assert all(len(r.getMessage()) < 1000 for r in caplog.records)  # a huge error is cut
    link._handle(json.dumps({"jsonrpc": "2.0", "method": "subscribe", "params": {
        "subId": "mq", "payload": {"quote": "q", "state": "PAID"}}}))
    assert reports == [([], {(MINT_QUOTE, "q"): "PAID"})]
