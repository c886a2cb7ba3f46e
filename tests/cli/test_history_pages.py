"""History pages: an opaque cursor, newest first, every entry once, filters.

The store-level tests write operations straight into a Store (no mint); the last one
pages a real daemon's history over HTTP and through ``coco history``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from coco_actors.control.client import RequestFailed
from coco_actors.errors import InvalidInputError
from coco_actors.paging import decode_cursor, encode_cursor, entry_filter
from coco_actors.records import Operation, OperationId, OpState, OpType
from coco_actors.store import Store

MINTS = ("http://127.0.0.1:1", "http://127.0.0.1:2")
KINDS = (OpType.SEND, OpType.MINT, OpType.MELT)
STATES = (OpState.COMPLETED, OpState.PENDING, OpState.ROLLED_BACK)


def _op(i: int) -> Operation:
    return Operation(id=OperationId(f"op{i:03d}"), type=KINDS[i % 3], mint_url=MINTS[i % 2],
                     amount=i + 1, state=STATES[(i // 3) % 3], created_at=1_000_000 + i,
                     updated_at=1_000_000 + i)


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "w")
    yield s
    s.close()


def _put(store: Store, ops: list[Operation]) -> None:
    def write(batch: Any) -> None:
        for op in ops:
            batch.put_operation(op)
    store.transact(write)


def _pages(store: Store, limit: int, **filters: Any) -> list[list[str]]:
    keep = entry_filter(mint_url=filters.get("mint_url"), kind=filters.get("kind"),
                        state=filters.get("state"), active=filters.get("active", False))
    pages, before = [], None
    while True:
        items, last = store.history_page(limit, before, keep)
        pages.append([e.operation_id for e in items])
        if last is None:
            return pages
        before = decode_cursor(encode_cursor(last))  # what a caller hands back


def test_27_entries_paged_by_10_come_once_each_newest_first(store):
    ops = [_op(i) for i in range(27)]
    _put(store, ops)
    pages = _pages(store, 10)
    assert [len(p) for p in pages] == [10, 10, 7]
    flat = [i for p in pages for i in p]
    assert flat == [op.id for op in sorted(ops, key=lambda o: -o.created_at)]


def test_entries_added_between_pages_never_shift_a_later_page(store):
    ops = [_op(i) for i in range(25)]
    _put(store, ops)
    keep = entry_filter(mint_url=None, kind=None, state=None)
    first, last = store.history_page(10, None, keep)
    _put(store, [_op(i) for i in range(100, 105)])  # newer ones arrive meanwhile
    seen = [e.operation_id for e in first]
    while last is not None:
        items, last = store.history_page(10, last, keep)
        seen += [e.operation_id for e in items]
    assert seen == [op.id for op in sorted(ops, key=lambda o: -o.created_at)]


@pytest.mark.parametrize("filters", [
    {"mint_url": MINTS[1]}, {"kind": "melt"}, {"state": "pending"},
    {"mint_url": MINTS[0], "kind": "send", "state": "completed"}, {"active": True},
])
def test_filters_keep_only_matching_entries_and_page_them(store, filters):
    ops = [_op(i) for i in range(30)]
    _put(store, ops)
    expected = [op.id for op in sorted(ops, key=lambda o: -o.created_at)
                if op.mint_url == filters.get("mint_url", op.mint_url)
                and op.type.value == filters.get("kind", op.type.value)
                and op.state.value == filters.get("state", op.state.value)
                and not (filters.get("active") and op.state.terminal)]
    assert expected  # the filter keeps some, and drops some
    assert len(expected) < len(ops)
    pages = _pages(store, 3, **filters)
    assert all(len(p) == 3 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 3
    assert [i for p in pages for i in p] == expected


@pytest.mark.parametrize("cursor", ["", "!!!", "AAAA", "x" * 300, "é"])
def test_a_cursor_this_wallet_did_not_give_is_refused(cursor):
    with pytest.raises(InvalidInputError, match="cursor is not one this wallet gave"):
        decode_cursor(cursor)


def test_unknown_kinds_and_states_are_refused():
    with pytest.raises(InvalidInputError, match="kind must be one of"):
        entry_filter(mint_url=None, kind="swap", state=None)
    with pytest.raises(InvalidInputError, match="state must be one of"):
        entry_filter(mint_url=None, kind=None, state="done")


# --- a real daemon -------------------------------------------------------------------------


def _page_all(client: Any, path: str, **query: Any) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        page = client.get(path, paged=1 if path == "/history" else None, cursor=cursor,
                          **query)
        assert set(page) == {"items", "next_cursor"}
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


def test_a_daemon_pages_26_operations_by_10(wallet, mint_fee0):
    url = mint_fee0.url
    w = wallet("w", url)
    w.fund(url, 100)  # one mint operation, completed
    with w.client() as client:
        prepared = []
        for i in range(5):  # two rolled back at once; three held (one proof each)
            prepared.append(client.post("/send/prepare", {"mint_url": url, "amount": 1}))
            if i < 2:
                client.post(f"/send/{prepared[-1]['id']}/rollback")
        assert w.balance(url) == {"spendable": 100 - 64 - 32 - 4, "reserved": 100,
                                  "pending": 0, "total": 100}
        quotes = [client.post("/mint/quote", {"mint_url": url, "amount": 1})
                  for _ in range(20)]
        history = w.json("history")  # the bare list, as before
        assert len(history) == 26
        assert [h["created_at"] for h in history] == sorted(
            (h["created_at"] for h in history), reverse=True)

        pages = _page_all(client, "/history", limit=10)
        assert [len(p) for p in pages] == [10, 10, 6]
        assert [h["operation_id"] for p in pages for h in p] == [
            h["operation_id"] for h in history]  # every entry once, newest first

        sends = [h for p in _page_all(client, "/history", limit=2, kind="send") for h in p]
        assert {h["operation_id"] for h in sends} == {op["id"] for op in prepared}
        rolled = [h for p in _page_all(client, "/history", kind="send", state="rolled_back",
                                       mint=url) for h in p]
        assert {h["operation_id"] for h in rolled} == {op["id"] for op in prepared[:2]}
        assert _page_all(client, "/history", mint="http://127.0.0.1:9") == [[]]

        # the prepared sends stay; the quotes may be minted meanwhile (the Watcher)
        active = [o for p in _page_all(client, "/operations", limit=4) for o in p]
        ids = [o["id"] for o in active]
        assert len(ids) == len(set(ids))
        assert {op["id"] for op in prepared[2:]} <= set(ids)
        assert set(ids) <= {op["id"] for op in prepared[2:]} | {
            q["operation_id"] for q in quotes}
        assert all(o["state"] not in ("completed", "rolled_back") for o in active)
        assert [o["created_at"] for o in active] == sorted(
            (o["created_at"] for o in active), reverse=True)

        doc = client.get("/openapi.json")  # over the socket, as an integrator reads it
        validate(doc)
        assert {"/history", "/operations", "/openapi.json", "/events"} <= set(doc["paths"])

        for query in ({"cursor": "garbage!"}, {"limit": "0"}, {"kind": "swap"}):
            with pytest.raises(RequestFailed) as info:
                client.get("/history", **query)
            assert info.value.status == 400, query
            assert info.value.code in ("invalid_input", "bad_request"), query

    first = w.json("history", "--limit", "10", "--paged")
    assert [h["operation_id"] for h in first["items"]] == [
        h["operation_id"] for h in history[:10]]
    second = w.json("history", "--limit", "10", "--cursor", first["next_cursor"])
    assert [h["operation_id"] for h in second["items"]] == [
        h["operation_id"] for h in history[10:20]]
    shown = w.cli("history", "--limit", "10", "--kind", "send")
    assert shown.stdout.count(" send ") == 5 and "more:" not in shown.stderr
    page = w.json("history", "--limit", "3", "--kind", "send", "--paged")
    assert len(page["items"]) == 3 and page["next_cursor"]
    hint = w.cli("history", "--limit", "3", "--kind", "send").stderr
    assert f"more: coco history --cursor {page['next_cursor']} --limit 3 --kind send" in hint
