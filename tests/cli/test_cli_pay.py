"""``coco pay`` and ``coco melt ...`` through a real daemon, real mints and real invoices.

The invoices are mint quotes of a second mint (the ``payee`` fixture, whose quotes never
pay themselves), so every payment is an external one: FakeWallet charges 1 sat for it,
and after completion ``amount + fee_paid + fee`` is exactly what left the balance. A
payment in flight needs the *paying* mint to hold it: a private mint with the PENDING
FakeWallet preset, restarted with SETTLED or FAILING to decide it.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from cli_support import Wallet, coco_argv, pairs_of, run_coco, sats

import cli
from coco_actors.control import RequestFailed
from devtools.devmint import FAILING, PENDING, SETTLED, DevMint
from devtools.invoices import make_invoice

#: What FakeWallet charges for an external payment it settles at once (lightning fee).
FAKEWALLET_FEE = 1
#: The mint's fee reserve for a small invoice: max(2 sat, 1 %).
RESERVE = 2

MELT_FIELDS = {"id", "type", "mint_url", "amount", "unit", "state", "fee", "input_amount",
               "needs_swap", "created_at", "updated_at", "error", "quote_id", "invoice",
               "fee_reserve", "preimage", "change_amount", "fee_paid"}


# --- a payment that settles at once ------------------------------------------------------


def test_pay_yes_pays_and_the_balance_drops_by_amount_and_fees(wallet, mint, invoice_of):
    url = mint.url
    w = wallet("w", url)
    w.fund(url, 1000)
    invoice = invoice_of(100)
    result = w.cli("pay", invoice, "--mint", url, "--yes")

    shown = pairs_of(result.stderr)  # before paying: what it will cost
    assert sats(shown["amount"]) == 100 and sats(shown["fee reserve"]) == RESERVE
    fee = sats(shown["input fee"])
    assert (fee > 0) == (mint.input_fee_ppk > 0)
    done = pairs_of(result.stdout)  # after: what it did cost
    assert (sats(done["paid"]), sats(done["lightning fee"]), sats(done["input fee"])) == (
        100, FAKEWALLET_FEE, fee)
    assert done["preimage"] == "0" * 64  # FakeWallet's
    assert done["operation"] == shown["operation"]
    spent = 100 + FAKEWALLET_FEE + fee
    assert sats(done["change"]) == sats(shown["total input"]) - spent
    assert w.balance(url) == {"spendable": 1000 - spent, "reserved": 0, "pending": 0,
                              "total": 1000 - spent}

    op = w.json("melt", "show", done["operation"])
    assert (op["state"], op["amount"], op["fee"], op["fee_paid"], op["invoice"]) == (
        "completed", 100, fee, FAKEWALLET_FEE, invoice)
    history = w.json("history")
    assert [(h["type"], h["amount"], h["state"], h["fee"], h["fee_paid"]) for h in history] == [
        ("melt", 100, "completed", fee, FAKEWALLET_FEE), ("mint", 1000, "completed", 0, 0)]
    events = [json.loads(line) for line in w.cli("events", "--json").stdout.splitlines()]
    assert [e["event"] for e in events if e["operation_id"] == op["id"]] == [
        "melt:prepared", "melt:finalized"]
    assert w.cli("melt", "pending").stdout.strip() == "no pending melts"
    log = w.daemon.log
    assert f"melt {op['id']} -> completed" in log  # its transitions are logged...
    assert invoice not in log and done["preimage"] not in log  # ...never what it paid


def test_pay_json_is_the_melt_operation(wallet, mint_fee100, invoice_of):
    url = mint_fee100.url
    w = wallet("w", url)
    w.fund(url, 500)
    invoice = invoice_of(64)
    result = w.cli("pay", invoice, "--mint", url, "--yes", "--json")
    assert result.stderr == ""  # --json: no summary, no progress line
    op = json.loads(result.stdout)
    assert set(op) == MELT_FIELDS  # never a token, never outputs or secrets
    assert (op["type"], op["state"], op["amount"], op["fee_reserve"], op["invoice"]) == (
        "melt", "completed", 64, RESERVE, invoice)
    assert op["preimage"] == "0" * 64 and op["fee_paid"] == FAKEWALLET_FEE
    assert op["change_amount"] == op["input_amount"] - 64 - op["fee"] - FAKEWALLET_FEE
    assert w.spendable(url) == 500 - 64 - FAKEWALLET_FEE - op["fee"]
    assert w.json("melt", "show", op["id"]) == op


def test_melt_show_human(wallet, mint_fee0, invoice_of):
    url = mint_fee0.url
    w = wallet("w", url)
    w.fund(url, 300)
    op = w.json("pay", invoice_of(100), "--mint", url, "--yes")
    shown = pairs_of(w.cli("melt", "show", op["id"]).stdout)
    assert (shown["type"], shown["state"], shown["amount"], shown["fee reserve"]) == (
        "melt", "completed", "100 sat", f"{RESERVE} sat")
    assert (shown["lightning fee"], shown["change"], shown["preimage"]) == (
        f"{FAKEWALLET_FEE} sat", f"{op['change_amount']} sat", "0" * 64)
    assert shown["invoice"] == op["invoice"] and shown["quote"] == op["quote_id"]
    assert shown["swap"] == "no (direct melt)"


def test_the_same_invoice_is_not_paid_twice(wallet, mint_fee0, invoice_of):
    url = mint_fee0.url
    w = wallet("w", url)
    w.fund(url, 500)
    invoice = invoice_of(100)
    first = w.json("pay", invoice, "--mint", url, "--yes")
    after = w.balance(url)
    again = w.cli("pay", invoice, "--mint", url, "--yes", "--json", code=1)
    error = json.loads(again.stdout)["error"]
    assert error["type"] == "InvalidStateError"
    assert error["message"] == f"this invoice is already paid or being paid by melt {first['id']}"
    assert w.balance(url) == after
    assert [h["type"] for h in w.json("history")] == ["melt", "mint"]


def test_rollback_of_a_completed_melt_exits_1(wallet, mint_fee0, invoice_of):
    url = mint_fee0.url
    w = wallet("w", url)
    w.fund(url, 200)
    op = w.json("pay", invoice_of(50), "--mint", url, "--yes")
    before = w.balance(url)
    result = w.cli("melt", "rollback", op["id"], "--json", code=1)
    assert json.loads(result.stdout)["error"] == {
        "type": "InvalidStateError", "code": "invalid_state",
        "message": f"melt {op['id']} is already completed"}
    assert w.cli("melt", "rollback", op["id"], code=1).stderr.strip() == (
        f"Error: melt {op['id']} is already completed")
    assert w.balance(url) == before


# --- confirmation -----------------------------------------------------------------------


def test_pay_asks_and_no_rolls_back(wallet, mint_fee100, invoice_of, monkeypatch):
    monkeypatch.setattr(cli, "_can_ask", lambda: True)  # stands in for a terminal
    url = mint_fee100.url
    w = wallet("w", url)
    w.fund(url, 1000)
    invoice = invoice_of(100)
    declined = w.cli("pay", invoice, "--mint", url, input="n\n", code=1)
    assert re.search(rf"pay 100 sat \(fee reserve {RESERVE} sat, input fee \d+ sat\)\?",
                     declined.stderr)
    assert "cancelled:" in declined.stderr and "nothing was paid" in declined.stderr
    assert declined.stdout == ""
    op_id = pairs_of(declined.stderr)["operation"]
    assert w.json("melt", "show", op_id)["state"] == "rolled_back"
    assert w.balance(url) == {"spendable": 1000, "reserved": 0, "pending": 0, "total": 1000}

    accepted = w.cli("pay", invoice, "--mint", url, input="y\n")  # a rolled back melt frees it
    paid = pairs_of(accepted.stdout)
    assert sats(paid["paid"]) == 100
    assert w.spendable(url) == 1000 - 100 - sats(paid["lightning fee"]) - sats(paid["input fee"])


def test_pay_without_yes_and_without_a_terminal_refuses(wallet, mint_fee0, invoice_of):
    url = mint_fee0.url
    w = wallet("w", url)
    w.fund(url, 300)
    result = w.cli("pay", invoice_of(100), "--mint", url, code=2)
    assert "stdin is not a terminal" in result.stderr and "--yes" in result.stderr
    assert result.stderr.startswith("Usage: coco pay")
    assert [h["type"] for h in w.json("history")] == ["mint"]  # not even prepared
    assert w.spendable(url) == 300


def test_the_console_script_refuses_to_pay_unasked_before_any_daemon(short_tmp):
    proc = run_coco("pay", make_invoice(10), "--mint", "http://127.0.0.1:1",
                    "--data-dir", str(short_tmp), input="")  # stdin a pipe, no daemon
    assert proc.returncode == 2, proc.stderr
    assert "add --yes to pay without asking" in proc.stderr


# --- bad input, unknown ids ---------------------------------------------------------------


def test_bad_invoices_exit_1_with_a_json_error_and_change_nothing(wallet, mint_fee0,
                                                                  invoice_of):
    url = mint_fee0.url
    w = wallet("w", url)
    w.fund(url, 100)
    stale = make_invoice(50, timestamp=int(time.time()) - 7200, expiry=60)
    cases: list[tuple[str, str, str]] = [
        ("lnbc1garbage", "InvoiceError", ""),
        ("not an invoice", "InvoiceError", ""),
        (make_invoice(), "InvoiceError", "no amount"),
        (stale, "InvoiceError", "expired"),
        (invoice_of(500), "InsufficientFundsError", ""),
    ]
    for invoice, kind, words in cases:
        result = w.cli("pay", invoice, "--mint", url, "--yes", "--json", code=1)
        error = json.loads(result.stdout)["error"]
        assert error["type"] == kind, (invoice, error)
        assert words in error["message"]
        assert invoice not in error["message"] and invoice not in result.stderr
        human = w.cli("pay", invoice, "--mint", url, "--yes", code=1)
        assert human.stderr.startswith("Error: ") and len(human.stderr.splitlines()) == 1
    assert json.loads(w.cli("pay", invoice_of(500), "--mint", url, "--yes", "--json",
                            code=1).stdout)["error"]["available"] == 100
    unknown = w.cli("pay", invoice_of(10), "--mint", "http://127.0.0.1:1", "--yes", "--json",
                    code=1)
    assert json.loads(unknown.stdout)["error"]["type"] == "NotFoundError"
    assert w.balance(url) == {"spendable": 100, "reserved": 0, "pending": 0, "total": 100}
    assert [h["type"] for h in w.json("history")] == ["mint"]  # no melt was left behind


@pytest.mark.parametrize("sub", ["show", "rollback"])
def test_unknown_melt_id_exits_1(wallet, sub):
    w = wallet("w")
    result = w.cli("melt", sub, "f" * 32, code=1)
    assert result.stderr.strip() == f"Error: unknown melt operation {'f' * 32}"
    as_json = w.cli("melt", sub, "f" * 32, "--json", code=1)
    assert json.loads(as_json.stdout)["error"]["type"] == "NotFoundError"
    odd = w.cli("melt", sub, "../../stop", code=1)  # escaped: never another endpoint
    assert "unknown melt operation ../../stop" in odd.stderr
    assert w.cli("status").exit_code == 0


# --- the endpoints behind the commands ----------------------------------------------------


def test_prepared_melts_show_in_status_pending_and_roll_back(wallet, mint_fee100, invoice_of):
    url = mint_fee100.url
    w = wallet("w", url)
    w.fund(url, 1000)
    with w.client() as client:
        op = client.post("/melt/prepare", {"mint_url": url, "invoice": invoice_of(100)})
    assert (op["state"], op["amount"], op["fee_reserve"]) == ("prepared", 100, RESERVE)
    assert op["input_amount"] >= 100 + RESERVE + op["fee"] and op["preimage"] is None
    assert w.balance(url) == {"spendable": 1000 - op["input_amount"],
                              "reserved": op["input_amount"], "pending": 0, "total": 1000}
    status = w.json("status")
    assert [(p["operation_id"], p["type"], p["state"]) for p in status["pending"]] == [
        (op["id"], "melt", "prepared")]
    assert op["id"] in w.cli("status").stdout
    assert [p["id"] for p in w.json("melt", "pending")] == [op["id"]]
    rows = w.cli("melt", "pending").stdout.splitlines()
    assert rows[1].split()[:5] == [op["id"], "melt", "100", str(op["fee"]), "prepared"]
    assert pairs_of(w.cli("melt", "show", op["id"]).stdout)["state"] == "prepared"

    rolled = w.cli("melt", "rollback", op["id"])
    assert rolled.stdout.strip() == f"melt {op['id']} is rolled_back"
    assert w.balance(url) == {"spendable": 1000, "reserved": 0, "pending": 0, "total": 1000}
    assert w.json("melt", "pending") == [] and w.json("status")["pending"] == []


def test_execute_and_swap_through_the_daemon(wallet, mint_fee100, invoice_of):
    url = mint_fee100.url
    w = wallet("w", url)
    w.fund(url, 1000)
    with w.client() as client:
        op = client.post("/melt/prepare", {"mint_url": url, "invoice": invoice_of(100),
                                           "swap": True})
        assert op["needs_swap"] is True
        done = client.post(f"/melt/{op['id']}/execute", {"timeout": 30})
        assert done["state"] == "completed" and done["fee_paid"] == FAKEWALLET_FEE
        waited = client.post("/melt/wait", {"operation_id": op["id"], "timeout": 30})
        assert waited == {"done": True, "operation": done}  # over: at once
        with pytest.raises(RequestFailed) as info:
            client.post(f"/melt/{op['id']}/execute")
        assert (info.value.status, info.value.type) == (409, "InvalidStateError")
    spent = 100 + done["fee_paid"] + done["fee"]
    assert w.balance(url) == {"spendable": 1000 - spent, "reserved": 0, "pending": 0,
                              "total": 1000 - spent}
    assert pairs_of(w.cli("melt", "show", op["id"]).stdout)["swap"] == "yes, then melt"


def test_the_daemon_checks_the_shape_of_melt_requests(wallet, mint_fee0, invoice_of):
    url = mint_fee0.url
    w = wallet("w", url)
    w.fund(url, 200)
    with w.client() as client:
        prepared = client.post("/melt/prepare", {"mint_url": url, "invoice": invoice_of(10)})
        op_path = f"/melt/{prepared['id']}"
        for path, body, kind in (
            ("/melt/prepare", {"mint_url": url}, "BadRequestError"),
            ("/melt/prepare", {"mint_url": url, "invoice": 5}, "BadRequestError"),
            ("/melt/prepare", {"mint_url": url, "invoice": invoice_of(10), "swap": "yes"},
             "BadRequestError"),
            ("/melt/prepare", {"mint_url": url, "invoice": "lnbc1garbage"}, "InvoiceError"),
            (f"{op_path}/execute", {"timeout": "soon"}, "BadRequestError"),
            (f"{op_path}/execute", {"timeout": 0}, "InvalidInputError"),
            ("/melt/wait", {"operation_id": prepared["id"], "timeout": "soon"},
             "BadRequestError"),
            ("/melt/wait", {"timeout": 1}, "BadRequestError"),
        ):
            with pytest.raises(RequestFailed) as info:
                client.post(path, body)
            assert (info.value.status, info.value.type) == (400, kind), (path, body)
        for method, path in (("GET", f"{op_path}/execute"), ("POST", "/melt/pending")):
            with pytest.raises(RequestFailed) as info:
                client.request(method, path)
            assert (info.value.status, info.value.type) == (400, "BadRequestError")
        with pytest.raises(RequestFailed) as info:
            client.post("/melt/wait", {"operation_id": "nope", "timeout": 1})
        assert (info.value.status, info.value.type) == (404, "NotFoundError")
        assert client.get(op_path)["state"] == "prepared"  # nothing moved it
    assert [(h["type"], h["state"]) for h in w.json("history")] == [
        ("melt", "prepared"), ("mint", "completed")]


# --- payments in flight: the paying mint holds them ------------------------------------


def _paying_mint(make_mint: Callable[..., DevMint], fee: int) -> DevMint:
    """A private mint whose payments stay in flight until it is restarted (PENDING)."""
    return make_mint(input_fee_ppk=fee, fakewallet=PENDING).start(timeout=60)


def test_pay_no_wait_returns_pending_and_the_daemon_settles_it(wallet, make_mint, invoice_of):
    mint = _paying_mint(make_mint, 100)
    url = mint.url
    w = wallet("w", url)
    w.fund(url, 1000)

    started = w.cli("pay", invoice_of(100), "--mint", url, "--yes", "--no-wait")
    first = pairs_of(started.stderr)["operation"]
    assert started.stdout.strip() == (
        f"melt {first} is pending: the payment is in flight and the daemon settles it"
        f" (see: coco melt show {first})")
    op1 = w.json("melt", "show", first)
    assert (op1["state"], op1["preimage"], op1["fee_paid"]) == ("pending", None, 0)
    timed_out = w.cli("pay", invoice_of(50), "--mint", url, "--yes", "--timeout", "1",
                      "--json", code=1)
    answer = json.loads(timed_out.stdout)
    op2 = answer["operation"]
    assert answer["error"]["type"] == "PaymentNotSettled" and op2["state"] == "pending"
    assert f"melt {op2['id']} is still in flight after 1 s" in timed_out.stderr

    held = op1["input_amount"] + op2["input_amount"]
    assert w.balance(url) == {"spendable": 1000 - held, "reserved": held, "pending": 0,
                              "total": 1000}
    assert [(p["id"], p["state"]) for p in w.json("melt", "pending")] == [
        (op1["id"], "pending"), (op2["id"], "pending")]
    assert {(p["operation_id"], p["state"]) for p in w.json("status")["pending"]} == {
        (op1["id"], "pending"), (op2["id"], "pending")}
    refused = w.cli("melt", "rollback", op1["id"], "--json", code=1)  # it may still go through
    assert json.loads(refused.stdout)["error"] == {
        "type": "InvalidStateError", "code": "invalid_state",
        "message": f"the payment of melt {op1['id']} may still go through; it cannot be rolled"
                   " back"}
    assert w.json("melt", "show", op1["id"])["state"] == "pending"

    mint.restart(SETTLED)  # the mint settles both at startup; nobody is waiting but the daemon
    for op in (op1, op2):
        w.wait_event("melt:finalized", op["id"], timeout=60)
    spent = 0
    for op in (op1, op2):
        done = w.json("melt", "show", op["id"])
        assert done["state"] == "completed" and done["preimage"] is None  # Nutshell sends none
        assert done["fee_paid"] == 0  # a settled pending payment: FakeWallet's fee unknown, 0
        assert done["change_amount"] == done["input_amount"] - done["amount"] - done["fee"]
        spent += done["amount"] + done["fee_paid"] + done["fee"]
    assert w.balance(url) == {"spendable": 1000 - spent, "reserved": 0, "pending": 0,
                              "total": 1000 - spent}
    assert w.json("melt", "pending") == []


def _pay_in_child(w: Wallet, invoice: str, url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(coco_argv("pay", invoice, "--mint", url, "--yes", *args,
                                      "--data-dir", str(w.data_dir)),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 90.0) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"coco pay did not end in {timeout} s:\n{out}\n{err}") from None
    return proc.returncode, out, err


def test_pay_waits_while_the_payment_is_in_flight(wallet, make_mint, invoice_of):
    mint = _paying_mint(make_mint, 0)
    url = mint.url
    w = wallet("w", url)
    w.fund(url, 500)
    proc = _pay_in_child(w, invoice_of(100), url)
    try:
        pending = w.wait_event("melt:pending", None, timeout=60)
        mint.restart(SETTLED)
        code, out, err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err
    assert "waiting for the payment..." in err  # the progress line (not a terminal: once)
    paid = pairs_of(out)
    assert paid["operation"] == pending["operation_id"]
    assert (sats(paid["paid"]), sats(paid["lightning fee"]), paid["preimage"]) == (100, 0, "-")
    assert w.balance(url) == {"spendable": 400, "reserved": 0, "pending": 0, "total": 400}


def test_ctrl_c_leaves_the_payment_to_the_daemon_which_rolls_back_a_failure(
        wallet, make_mint, invoice_of):
    mint = _paying_mint(make_mint, 100)
    url = mint.url
    w = wallet("w", url)
    w.fund(url, 500)
    proc = _pay_in_child(w, invoice_of(100), url, "--json")
    try:
        pending = w.wait_event("melt:pending", None, timeout=60)
        proc.send_signal(signal.SIGINT)
        code, out, err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    op_id = pending["operation_id"]
    assert code == 130
    assert f"stopped waiting; the daemon settles the payment (see: coco melt show {op_id})" in err
    assert w.json("melt", "show", op_id)["state"] == "pending"

    mint.restart(FAILING)  # the payment fails: the mint releases the inputs
    ended = w.wait_event("melt:rolled-back", op_id, timeout=60)
    op: dict[str, Any] = w.json("melt", "show", op_id)
    assert op["state"] == "rolled_back" and ended["operation"]["state"] == "rolled_back"
    assert op["error"] == "the lightning payment failed"
    assert w.balance(url) == {"spendable": 500, "reserved": 0, "pending": 0, "total": 500}
    again = w.cli("melt", "rollback", op_id, code=1)
    assert again.stderr.strip() == f"Error: melt {op_id} is already rolled_back"


def test_a_payment_that_fails_at_once_exits_1_and_releases_the_inputs(wallet, make_mint,
                                                                       invoice_of):
    mint = make_mint(input_fee_ppk=100, fakewallet=FAILING).start(timeout=60)
    url = mint.url
    w = wallet("w", url)
    w.fund(url, 300)
    result = w.cli("pay", invoice_of(100), "--mint", url, "--yes", "--json", code=1)
    error = json.loads(result.stdout)["error"]
    assert (error["type"], error["code"], error["nut_code"], error["mint_url"]) == (
        "MintRejectedError", "mint_rejected", 20004, url)
    assert "Lightning payment failed" in result.stderr
    (melt,) = [h for h in w.json("history") if h["type"] == "melt"]
    assert melt["state"] == "rolled_back"
    assert w.balance(url) == {"spendable": 300, "reserved": 0, "pending": 0, "total": 300}
