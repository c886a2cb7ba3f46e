"""The endpoints without a daemon process: shape checks, and the mint wait on events.

A stand-in for ``Coco`` records what the endpoints pass on: the real facade is
exercised by the daemon tests (``test_cli_commands.py``); here it stands for what a
FakeWallet mint never does (a quote that stays unpaid).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from coco_actors.control.api import ControlApi, Request
from coco_actors.control.errors import BadRequestError
from coco_actors.control.events import EventHub
from coco_actors.control.server import error_body
from coco_actors.errors import ActorTimeoutError, NotFoundError
from coco_actors.proof_ledger import MintBalance
from coco_actors.records import Operation, OperationId, OpState, OpType

MINT_URL = "http://127.0.0.1:1"
TO_URL = "http://127.0.0.1:2"


class _Mint:
    """``coco.mint``: one open quote, never paid unless the test says so."""

    def __init__(self) -> None:
        self.op = Operation(id=OperationId("op1"), type=OpType.MINT, mint_url=MINT_URL,
                            amount=64, state=OpState.PREPARED, quote_id="q1")
        self.redeemed: list[tuple[str, float]] = []
        self.nudged = threading.Event()

    def get_operation(self, op_id: str) -> Operation | None:
        return self.op if op_id == self.op.id else None

    def redeem(self, quote_id: str, timeout: float = 60.0) -> Operation:
        self.redeemed.append((quote_id, timeout))
        self.nudged.set()
        raise ActorTimeoutError(f"quote {quote_id} not paid within {timeout:g} s")


class _Send:
    def __init__(self) -> None:
        self.prepared: list[tuple[str, int]] = []
        self.keys: list[str | None] = []

    def prepare_send(self, mint_url: str, amount: int, *, p2pk: object = None,
                     n_sigs: int = 1, locktime: int | None = None,
                     refund: object = None, unit: str = "sat",
                     idempotency_key: str | None = None) -> Operation:
        assert (p2pk, n_sigs, locktime, refund) == (None, 1, None, None)  # not locked here
        assert unit == "sat"  # the body's default unit reaches the wallet
        self.prepared.append((mint_url, amount))
        self.keys.append(idempotency_key)
        return Operation(id=OperationId("s1"), type=OpType.SEND, mint_url=mint_url,
                         amount=amount, state=OpState.PREPARED)


class _Melt:
    """``coco.melt``: one melt, pending until the test settles it; records what it was given."""

    def __init__(self) -> None:
        self.op = Operation(id=OperationId("m1"), type=OpType.MELT, mint_url=MINT_URL,
                            amount=100, state=OpState.PENDING, quote_id="mq1",
                            quote_request="lnbc1invoice", fee_reserve=2, fee=1,
                            input_amount=128)
        self.prepared: list[tuple[str, str, bool | None]] = []
        self.executed: list[tuple[str, float]] = []
        self.looked = threading.Event()

    def prepare_melt(self, mint_url: str, invoice: str, *, swap: bool | None = None,
                     unit: str = "sat", idempotency_key: str | None = None) -> Operation:
        assert unit == "sat"  # the body's default unit reaches the wallet
        self.prepared.append((mint_url, invoice, swap))
        return replace(self.op, state=OpState.PREPARED)

    def execute_prepared_melt(self, op_id: str, timeout: float = 60.0, *,
                              idempotency_key: str | None = None) -> Operation:
        self.executed.append((op_id, timeout))
        return self.op

    def get_operation(self, op_id: str) -> Operation | None:
        self.looked.set()
        return self.op if op_id == self.op.id else None


class _Transfer:
    """``coco.transfer``: one transfer, pending until the test settles it."""

    def __init__(self) -> None:
        self.op = Operation(id=OperationId("t1"), type=OpType.TRANSFER, mint_url=MINT_URL,
                            to_mint_url=TO_URL, amount=100, state=OpState.PENDING,
                            fee_reserve=2, fee=1, input_amount=128,
                            melt_id=OperationId("m2"), mint_leg_id=OperationId("q2"))
        self.prepared: list[tuple[str, str, int]] = []
        self.executed: list[tuple[str, float]] = []
        self.rolled_back: list[str] = []
        self.looked = threading.Event()

    def prepare(self, from_mint: str, to_mint: str, amount: int, *,
                idempotency_key: str | None = None) -> Operation:
        self.prepared.append((from_mint, to_mint, amount))
        return replace(self.op, state=OpState.PREPARED)

    def execute(self, op_id: str, timeout: float = 120.0, *,
                idempotency_key: str | None = None) -> Operation:
        self.executed.append((op_id, timeout))
        return self.op

    def rollback(self, op_id: str, *, idempotency_key: str | None = None) -> Operation:
        self.rolled_back.append(op_id)
        return replace(self.op, state=OpState.ROLLED_BACK)

    def get_operation(self, op_id: str) -> Operation | None:
        self.looked.set()
        return self.op if op_id == self.op.id else None

    def get_pending_operations(self) -> list[Operation]:
        return [self.op]


class _Coco:
    def __init__(self) -> None:
        self.mint = _Mint()
        self.send = _Send()
        self.melt = _Melt()
        self.transfer = _Transfer()

    def total_balance(self) -> MintBalance:
        return MintBalance(spendable=7, reserved=2, pending=1)

    def receive(self, token: str, *, idempotency_key: str | None = None) -> Operation:
        raise AssertionError("a malformed request reached the wallet")


@pytest.fixture
def api() -> ControlApi:
    return ControlApi(_Coco(), Path("/nowhere"), EventHub(), lambda: None)  # type: ignore[arg-type]


def _call(api: ControlApi, method: str, path: str, body: dict[str, Any]) -> Any:
    found = api.route(method, path)
    assert found is not None
    handler, params = found
    return handler(Request({}, body, params))


@pytest.mark.parametrize("body, complaint", [
    ({"mint_url": MINT_URL}, "missing 'amount'"),
    ({"mint_url": MINT_URL, "amount": "5"}, "'amount' must be an integer"),
    ({"mint_url": MINT_URL, "amount": True}, "'amount' must be an integer"),
    ({"mint_url": MINT_URL, "amount": 1.5}, "'amount' must be an integer"),
    ({"mint_url": 7, "amount": 5}, "'mint_url' must be a string"),
])
def test_the_daemon_checks_the_shape_of_the_input(api, body, complaint):
    with pytest.raises(BadRequestError, match=complaint):
        _call(api, "POST", "/send/prepare", body)
    assert api.coco.send.prepared == []  # nothing reached the wallet


@pytest.mark.parametrize("amount", [0, -3])
def test_what_an_amount_means_is_left_to_the_wallet(api, amount):
    op = _call(api, "POST", "/send/prepare", {"mint_url": MINT_URL, "amount": amount})
    assert api.coco.send.prepared == [(MINT_URL, amount)]  # Coco is the one domain check
    assert op["amount"] == amount and "token" not in op


def test_the_idempotency_key_header_reaches_the_wallet(api):
    found = api.route("POST", "/send/prepare")
    assert found is not None
    handler, params = found
    handler(Request({}, {"mint_url": MINT_URL, "amount": 5}, params, idempotency_key="k-1"))
    _call(api, "POST", "/send/prepare", {"mint_url": MINT_URL, "amount": 6})
    assert api.coco.send.keys == ["k-1", None]  # checked by Coco, passed on as it came


@pytest.mark.parametrize("path, body, complaint", [
    ("/mint/wait", {"operation_id": "op1", "timeout": "x"}, "'timeout' must be a number"),
    ("/mint/wait", {"operation_id": 5}, "'operation_id' must be a string"),
    ("/mints", {"url": MINT_URL, "restore": "yes"}, "'restore' must be true or false"),
    ("/receive", {}, "missing 'token'"),
])
def test_other_shapes(api, path, body, complaint):
    with pytest.raises(BadRequestError, match=complaint):
        _call(api, "POST", path, body)


def test_a_wrong_method_is_a_bad_request(api):
    with pytest.raises(BadRequestError, match="GET is not allowed on /receive"):
        api.route("GET", "/receive")
    assert api.route("GET", "/nothing/here") is None


def test_mint_wait_times_out_when_nothing_happens(api):
    res = _call(api, "POST", "/mint/wait", {"operation_id": "op1", "timeout": 0.2})
    assert res["done"] is False and res["operation"]["state"] == "prepared"
    assert api.coco.mint.redeemed == [("q1", 0)]  # checked once, handed to the watcher


def _wait_in_thread(api: ControlApi, timeout: float) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(_call(
        api, "POST", "/mint/wait", {"operation_id": "op1", "timeout": timeout})), daemon=True)
    thread.start()
    return thread, out


def test_mint_wait_returns_when_the_watcher_mints(api):
    thread, out = _wait_in_thread(api, 30)
    assert api.coco.mint.nudged.wait(10)  # the wait follows the events from here on
    minted = replace(api.coco.mint.op, state=OpState.COMPLETED)
    api.coco.mint.op = minted
    api.events.publish("send:finalized", {"operation_id": "op1", "mint_url": MINT_URL})
    api.events.publish("mint:finalized", {"operation_id": "op1", "mint_url": MINT_URL,
                                          "operation": minted})
    thread.join(10)  # well before the 30 s of the wait
    assert not thread.is_alive()
    assert out[0]["done"] is True and out[0]["operation"]["state"] == "completed"


def test_mint_wait_ends_at_once_when_the_daemon_stops(api):
    thread, out = _wait_in_thread(api, 30)
    assert api.coco.mint.nudged.wait(10)
    api.events.close()
    thread.join(10)
    assert not thread.is_alive()
    assert out[0]["done"] is False


def test_mint_wait_of_an_unknown_operation(api):
    with pytest.raises(NotFoundError, match="unknown mint operation nope"):
        _call(api, "POST", "/mint/wait", {"operation_id": "nope"})


# --- melts ------------------------------------------------------------------------------


@pytest.mark.parametrize("body, complaint", [
    ({"mint_url": MINT_URL}, "missing 'invoice'"),
    ({"invoice": "lnbc1invoice"}, "missing 'mint_url'"),
    ({"mint_url": MINT_URL, "invoice": 5}, "'invoice' must be a string"),
    ({"mint_url": MINT_URL, "invoice": ["lnbc1invoice"]}, "'invoice' must be a string"),
    ({"mint_url": MINT_URL, "invoice": "lnbc1invoice", "swap": "yes"},
     "'swap' must be true, false or null"),
    ({"mint_url": MINT_URL, "invoice": "lnbc1invoice", "swap": 1},
     "'swap' must be true, false or null"),
])
def test_melt_prepare_checks_the_shape(api, body, complaint):
    with pytest.raises(BadRequestError, match=complaint):
        _call(api, "POST", "/melt/prepare", body)
    assert api.coco.melt.prepared == []  # nothing reached the wallet


@pytest.mark.parametrize("swap", [None, True, False])
def test_melt_prepare_passes_swap_on(api, swap):
    body: dict[str, Any] = {"mint_url": MINT_URL, "invoice": "lnbc1invoice"}
    if swap is not None:
        body["swap"] = swap
    op = _call(api, "POST", "/melt/prepare", body)
    assert api.coco.melt.prepared == [(MINT_URL, "lnbc1invoice", swap)]
    assert (op["state"], op["fee_reserve"], op["invoice"]) == ("prepared", 2, "lnbc1invoice")
    assert "token" not in op


@pytest.mark.parametrize("body, timeout", [
    ({}, 60.0), ({"timeout": 5}, 5.0), ({"timeout": 2.5}, 2.5), ({"timeout": 1e6}, 120.0),
    ({"timeout": 0}, 0.0), ({"timeout": -1}, -1.0),  # what these mean is the wallet's to say
])
def test_melt_execute_timeout_is_capped_not_judged(api, body, timeout):
    op = _call(api, "POST", "/melt/m1/execute", body)
    assert api.coco.melt.executed == [("m1", timeout)]
    assert op["state"] == "pending" and op["quote_id"] == "mq1"


@pytest.mark.parametrize("path, body, complaint", [
    ("/melt/m1/execute", {"timeout": "soon"}, "'timeout' must be a number"),
    ("/melt/m1/execute", {"timeout": True}, "'timeout' must be a number"),
    ("/melt/wait", {"operation_id": "m1", "timeout": "x"}, "'timeout' must be a number"),
    ("/melt/wait", {"operation_id": 7}, "'operation_id' must be a string"),
    ("/melt/wait", {}, "missing 'operation_id'"),
])
def test_melt_other_shapes(api, path, body, complaint):
    with pytest.raises(BadRequestError, match=complaint):
        _call(api, "POST", path, body)
    assert api.coco.melt.executed == []


def test_melt_routes_and_methods(api):
    with pytest.raises(BadRequestError, match="GET is not allowed on /melt/m1/execute"):
        api.route("GET", "/melt/m1/execute")
    with pytest.raises(BadRequestError, match="POST is not allowed on /melt/pending"):
        api.route("POST", "/melt/pending")
    with pytest.raises(NotFoundError, match="unknown melt operation nope"):
        _call(api, "GET", "/melt/nope", {})


def _melt_wait_in_thread(api: ControlApi, timeout: float) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(_call(
        api, "POST", "/melt/wait", {"operation_id": "m1", "timeout": timeout})), daemon=True)
    thread.start()
    return thread, out


def test_melt_wait_times_out_while_the_payment_is_in_flight(api):
    res = _call(api, "POST", "/melt/wait", {"operation_id": "m1", "timeout": 0.2})
    assert res["done"] is False and res["operation"]["state"] == "pending"


def test_melt_wait_returns_on_the_melt_end_event(api):
    thread, out = _melt_wait_in_thread(api, 30)
    assert api.coco.melt.looked.wait(10)  # the wait follows the events from here on
    paid = replace(api.coco.melt.op, state=OpState.COMPLETED, preimage="00" * 32,
                   change_amount=25, fee_paid=1)
    api.coco.melt.op = paid
    api.events.publish("mint:finalized", {"operation_id": "m1", "mint_url": MINT_URL})
    api.events.publish("melt:pending", {"operation_id": "m1", "mint_url": MINT_URL})
    api.events.publish("melt:finalized", {"operation_id": "m1", "mint_url": MINT_URL,
                                          "operation": paid})
    thread.join(10)  # well before the 30 s of the wait
    assert not thread.is_alive()
    assert out[0]["done"] is True
    assert (out[0]["operation"]["state"], out[0]["operation"]["preimage"],
            out[0]["operation"]["change_amount"], out[0]["operation"]["fee_paid"]) == (
        "completed", "00" * 32, 25, 1)


def test_melt_wait_of_a_melt_already_over_returns_at_once(api):
    api.coco.melt.op = replace(api.coco.melt.op, state=OpState.ROLLED_BACK)
    res = _call(api, "POST", "/melt/wait", {"operation_id": "m1", "timeout": 30})
    assert res["done"] is True and res["operation"]["state"] == "rolled_back"


def test_melt_wait_ends_at_once_when_the_daemon_stops(api):
    thread, out = _melt_wait_in_thread(api, 30)
    assert api.coco.melt.looked.wait(10)
    api.events.close()
    thread.join(10)
    assert not thread.is_alive()
    assert out[0]["done"] is False


def test_melt_wait_of_an_unknown_operation(api):
    with pytest.raises(NotFoundError, match="unknown melt operation nope"):
        _call(api, "POST", "/melt/wait", {"operation_id": "nope", "timeout": 1})


# --- transfers ----------------------------------------------------------------------------


@pytest.mark.parametrize("body, complaint", [
    ({"to_mint_url": TO_URL, "amount": 5}, "missing 'mint_url'"),
    ({"mint_url": MINT_URL, "amount": 5}, "missing 'to_mint_url'"),
    ({"mint_url": MINT_URL, "to_mint_url": TO_URL}, "missing 'amount'"),
    ({"mint_url": MINT_URL, "to_mint_url": TO_URL, "amount": "5"}, "'amount' must be an integer"),
    ({"mint_url": MINT_URL, "to_mint_url": TO_URL, "amount": 2.5},
     "'amount' must be an integer"),
    ({"mint_url": MINT_URL, "to_mint_url": TO_URL, "amount": False},
     "'amount' must be an integer"),
    ({"mint_url": MINT_URL, "to_mint_url": 3, "amount": 5}, "'to_mint_url' must be a string"),
    ({"mint_url": "http://[::1", "to_mint_url": TO_URL, "amount": 5},
     "'mint_url' is not a usable URL"),
])
def test_transfer_prepare_checks_the_shape(api, body, complaint):
    with pytest.raises(BadRequestError, match=complaint) as info:
        _call(api, "POST", "/transfer/prepare", body)
    assert error_body(info.value) == (400, {"error": {"type": "BadRequestError",
                                                      "code": "bad_request",
                                                      "message": str(info.value)}})
    assert api.coco.transfer.prepared == []  # nothing reached the wallet


@pytest.mark.parametrize("amount", [0, -1])
def test_what_a_transfer_amount_means_is_left_to_the_wallet(api, amount):
    body = {"mint_url": MINT_URL, "to_mint_url": TO_URL, "amount": amount}
    op = _call(api, "POST", "/transfer/prepare", body)
    assert api.coco.transfer.prepared == [(MINT_URL, TO_URL, amount)]  # Coco's one check
    assert (op["state"], op["to_mint_url"], op["melt_id"]) == ("prepared", TO_URL, "m2")


@pytest.mark.parametrize("body, timeout", [
    ({}, 120.0), ({"timeout": 5}, 5.0), ({"timeout": 1e6}, 120.0),
    ({"timeout": 0}, 0.0), ({"timeout": -1}, -1.0),  # what these mean is the wallet's to say
])
def test_transfer_execute_timeout_is_capped_not_judged(api, body, timeout):
    op = _call(api, "POST", "/transfer/t1/execute", body)
    assert api.coco.transfer.executed == [("t1", timeout)]
    assert op["state"] == "pending" and op["received"] == 0


@pytest.mark.parametrize("path, body, complaint", [
    ("/transfer/t1/execute", {"timeout": "soon"}, "'timeout' must be a number"),
    ("/transfer/wait", {"operation_id": "t1", "timeout": "x"}, "'timeout' must be a number"),
    ("/transfer/wait", {"operation_id": 7}, "'operation_id' must be a string"),
    ("/transfer/wait", {}, "missing 'operation_id'"),
])
def test_transfer_other_shapes(api, path, body, complaint):
    with pytest.raises(BadRequestError, match=complaint):
        _call(api, "POST", path, body)
    assert api.coco.transfer.executed == []


def test_transfer_routes_methods_and_unknown_ids(api):
    with pytest.raises(BadRequestError, match="GET is not allowed on /transfer/t1/rollback"):
        api.route("GET", "/transfer/t1/rollback")
    with pytest.raises(BadRequestError, match="POST is not allowed on /transfer/pending"):
        api.route("POST", "/transfer/pending")
    for method, path, body in [("GET", "/transfer/nope", {}),
                               ("POST", "/transfer/wait", {"operation_id": "nope"})]:
        with pytest.raises(NotFoundError, match="unknown transfer operation nope") as info:
            _call(api, method, path, body)
        assert error_body(info.value)[0] == 404
    assert [o["id"] for o in _call(api, "GET", "/transfer/pending", {})] == ["t1"]
    assert _call(api, "POST", "/transfer/t1/rollback", {})["state"] == "rolled_back"
    assert api.coco.transfer.rolled_back == ["t1"]


def test_total_balance(api):
    assert _call(api, "GET", "/balance/total", {}) == {
        "spendable": 7, "reserved": 2, "pending": 1, "total": 10}


def test_transfer_wait_returns_on_the_transfer_end_event(api):
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(_call(
        api, "POST", "/transfer/wait", {"operation_id": "t1", "timeout": 30})), daemon=True)
    thread.start()
    assert api.coco.transfer.looked.wait(10)  # the wait follows the events from here on
    done = replace(api.coco.transfer.op, state=OpState.COMPLETED, received=100, fee_paid=1)
    api.coco.transfer.op = done
    api.events.publish("melt:finalized", {"operation_id": "t1", "mint_url": MINT_URL})
    api.events.publish("transfer:pending", {"operation_id": "t1", "mint_url": MINT_URL})
    api.events.publish("transfer:finalized", {"operation_id": "t1", "mint_url": MINT_URL,
                                              "operation": done})
    thread.join(10)  # well before the 30 s of the wait
    assert not thread.is_alive()
    assert out[0]["done"] is True
    assert (out[0]["operation"]["state"], out[0]["operation"]["received"]) == ("completed", 100)


def test_transfer_wait_times_out_while_it_is_pending(api):
    res = _call(api, "POST", "/transfer/wait", {"operation_id": "t1", "timeout": 0.2})
    assert res["done"] is False and res["operation"]["state"] == "pending"
