"""Every command through a real daemon and a real mint: output, --json, errors, exit codes."""

from __future__ import annotations

import json
import re

import pytest
from cli_support import Wallet
from mnemonic import Mnemonic

from coco_actors import Coco
from coco_actors.control import RequestFailed
from coco_actors.crypto.keysets import fee_for
from coco_actors.tokens import decode


def _fee(token: str, ppk: int) -> int:
    return fee_for(ppk for _ in decode(token).proofs)


# --- init -----------------------------------------------------------------------------------


def test_init_prints_the_mnemonic_once_and_refuses_an_existing_wallet(run_cli, short_tmp):
    data_dir = short_tmp / "w"
    result = run_cli("init", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    phrase = result.stdout.splitlines()[3].strip()
    assert Mnemonic("english").check(phrase) and len(phrase.split()) == 12
    assert "shown only this once" in result.stdout
    assert f"coco serve --data-dir {data_dir}" in result.stdout

    again = run_cli("init", "--data-dir", str(data_dir))
    assert again.exit_code == 1
    assert again.stderr.strip() == (f"Error: {data_dir} already holds a wallet;"
                                    " choose another --data-dir")
    assert phrase not in again.output


def test_init_json_and_restore_from_stdin(run_cli, short_tmp):
    created = json.loads(run_cli("init", "--json", "--data-dir", str(short_tmp / "a")).stdout)
    phrase = created["mnemonic"]
    restored = run_cli("init", "--restore", "--json", "--data-dir", str(short_tmp / "b"),
                       input=f"  {phrase.upper()}\n")
    assert restored.exit_code == 0, restored.output
    body = json.loads(restored.stdout)
    assert "mnemonic" not in body  # the user typed it; it is not echoed back
    assert body["data_dir"] == str(short_tmp / "b")


def test_init_restore_rejects_an_invalid_mnemonic(run_cli, short_tmp):
    result = run_cli("init", "--restore", "--data-dir", str(short_tmp / "w"),
                     input="not a real phrase\n")
    assert result.exit_code == 1
    assert "not a valid BIP39 phrase" in result.stderr


def test_init_restore_recovers_the_funds_of_the_seed(run_cli, short_tmp, mint_fee0, daemons):
    url = mint_fee0.url
    phrase = json.loads(run_cli("init", "--json", "--data-dir", str(short_tmp / "a")).stdout)[
        "mnemonic"]
    original = Wallet(short_tmp / "a", daemons("a"))
    original.cli("mint", "add", url)
    original.fund(url, 300)
    original.send(url, 100)  # a pending send: its token is still the seed's money
    original.daemon.stop()

    result = run_cli("init", "--restore", "--mint", url, "--data-dir", str(short_tmp / "b"),
                     input=phrase)
    assert result.exit_code == 0, result.output
    assert f"trusts mint {url}" in result.stdout
    assert re.search(rf"^restored 300 sat in \d+ proof\(s\) from {re.escape(url)}$",
                     result.stdout, re.M), result.stdout
    restored = Wallet(short_tmp / "b", daemons("b"))
    assert restored.balance(url)["total"] == 300


def test_mint_add_restore(run_cli, short_tmp, mint_fee0, daemons):
    url = mint_fee0.url
    phrase = json.loads(run_cli("init", "--json", "--data-dir", str(short_tmp / "a")).stdout)[
        "mnemonic"]
    original = Wallet(short_tmp / "a", daemons("a"))
    original.cli("mint", "add", url)
    original.fund(url, 64)
    assert run_cli("init", "--restore", "--data-dir", str(short_tmp / "b"),
                   input=phrase).exit_code == 0
    restored = Wallet(short_tmp / "b", daemons("b"))
    out = restored.cli("mint", "add", url, "--restore").stdout
    assert out.splitlines()[-1].startswith("restored 64 sat in")
    assert restored.spendable(url) == 64


def test_init_with_an_unreachable_mint_still_shows_the_mnemonic(run_cli, short_tmp):
    result = run_cli("init", "--mint", "http://127.0.0.1:1", "--data-dir", str(short_tmp / "w"))
    assert result.exit_code == 1
    assert Mnemonic("english").check(result.stdout.splitlines()[3].strip())
    assert result.stderr.startswith("Error: could not add mint http://127.0.0.1:1: ")


def test_init_while_the_daemon_runs_refuses(wallet, run_cli):
    w = wallet("w")
    result = run_cli("init", "--data-dir", str(w.data_dir))
    assert result.exit_code == 1
    assert "in use by another wallet process" in result.stderr


# --- status, mints, balance -------------------------------------------------------------


def test_status_shows_daemon_mints_balances_and_pending(wallet, mint_fee100):
    url = mint_fee100.url
    w = wallet("w", url)
    w.fund(url)
    prepared = w.json("send", "40", "--mint", url, "--prepare-only")
    status = w.json("status")
    assert status["daemon"]["pid"] == w.daemon.pid
    assert status["daemon"]["socket"] == str(w.daemon.socket)
    assert [m["url"] for m in status["mints"]] == [url]
    assert status["balances"][url]["reserved"] == prepared["input_amount"]
    assert [(p["operation_id"], p["state"]) for p in status["pending"]] == [
        (prepared["id"], "prepared")]
    human = w.cli("status").stdout
    assert f"running, pid {w.daemon.pid}" in human
    assert re.search(rf"{re.escape(url)}\s+{1000 - prepared['input_amount']}\s+"
                     rf"{prepared['input_amount']}\s+0\s+1000", human), human
    assert "1 operation(s) not at rest" in human and prepared["id"] in human


def test_mint_add_list_info(wallet, mint_fee0):
    w = wallet("w")
    assert w.cli("mint", "list").stdout.startswith("no mints yet")
    added = w.json("mint", "add", mint_fee0.url + "/")
    assert added["mint"]["url"] == mint_fee0.url  # normalized
    listed = w.cli("mint", "list").stdout.splitlines()
    assert listed[0].split() == ["URL", "NAME", "ADDED"]
    assert listed[1].startswith(mint_fee0.url)
    info = w.json("mint", "info", mint_fee0.url)
    assert info["version"].startswith("Nutshell/") and "4" in info["nuts"]
    assert re.search(r"^version\s+Nutshell/", w.cli("mint", "info", mint_fee0.url).stdout,
                     re.M)


def test_mint_errors_exit_1(wallet):
    w = wallet("w")
    unreachable = w.cli("mint", "add", "http://127.0.0.1:1", code=1)
    assert unreachable.stderr.startswith("Error: ") and len(unreachable.stderr.splitlines()) == 1
    unknown = w.cli("mint", "info", "http://127.0.0.1:1", code=1)
    assert "unknown mint" in unknown.stderr
    assert "unknown mint" in w.cli("balance", "--mint", "http://127.0.0.1:1", code=1).stderr


def test_balance_table_and_json(wallet, mint_fee0):
    url = mint_fee0.url
    w = wallet("w")
    assert w.cli("balance").stdout.startswith("no mints yet")
    w.cli("mint", "add", url)
    w.fund(url, 300)
    lines = w.cli("balance").stdout.splitlines()
    assert lines[0].split() == ["MINT", "SPENDABLE", "RESERVED", "PENDING", "TOTAL"]
    assert lines[1].split() == [url, "300", "0", "0", "300"]
    assert w.json("balance") == {url: {"spendable": 300, "reserved": 0, "pending": 0,
                                       "total": 300}}


# --- invoice ----------------------------------------------------------------------------


def test_invoice_waits_until_paid_and_mints(wallet, mint):
    url = mint.url
    w = wallet("w", url)
    result = w.cli("invoice", "1000", "--mint", url)
    out = result.stdout
    assert re.search(r"^request\s+lnbc", out, re.M)
    assert out.splitlines()[-1] == "paid: minted 1000 sat; spendable now 1000 sat"
    assert w.spendable(url) == 1000
    history = w.json("history")
    assert [(h["type"], h["amount"], h["state"]) for h in history] == [
        ("mint", 1000, "completed")]


def test_invoice_no_wait_returns_at_once_and_the_daemon_mints(wallet, mint_fee0):
    url = mint_fee0.url
    w = wallet("w", url)
    quote = w.json("invoice", "500", "--mint", url, "--no-wait")
    assert quote["request"].startswith("lnbc") and quote["amount"] == 500
    w.wait_event("mint:finalized", quote["operation_id"])  # nobody waits: the daemon mints
    with w.client() as client:  # and a long poll (no sleeping) sees it done
        res = client.post("/mint/wait", {"operation_id": quote["operation_id"], "timeout": 30})
    assert res["done"] and res["operation"]["state"] == "completed"
    assert w.spendable(url) == 500


def test_a_quote_paid_while_the_daemon_was_down_is_minted_after_restart(wallet, mint_fee0):
    url = mint_fee0.url
    w = wallet("w", url)
    w.daemon.stop()
    with Coco.open(w.data_dir, watcher=False) as coco:  # the quote is made, nobody mints it
        quote = coco.mint.create_quote(url, 300)
        op = next(e for e in coco.history.get_history() if e.type == "mint")
        assert coco.mint.get_operation(op.operation_id).quote_id == quote.id  # type: ignore[union-attr]
        assert op.state == "prepared"
    w.daemon.start()  # FakeWallet has paid the invoice meanwhile; recovery hands it on
    assert re.search(r"recovery: .*1 prepared", w.daemon.log), w.daemon.log
    w.wait_event("mint:finalized", op.operation_id)  # minted with no CLI waiting
    with w.client() as client:
        res = client.post("/mint/wait", {"operation_id": op.operation_id, "timeout": 30})
    assert res["done"] and res["operation"]["state"] == "completed"
    assert w.balance(url) == {"spendable": 300, "reserved": 0, "pending": 0, "total": 300}


def test_invoice_json_carries_quote_operation_and_balance(wallet, mint_fee0):
    url = mint_fee0.url
    w = wallet("w", url)
    res = w.fund(url, 64)
    assert res["balance"] == {url: {"spendable": 64, "reserved": 0, "pending": 0, "total": 64}}
    assert res["operation"]["id"] == res["operation_id"]


# --- send -------------------------------------------------------------------------------


def test_send_yes_prints_the_token_alone_on_stdout(wallet, mint):
    url = mint.url
    ppk = mint.input_fee_ppk
    w = wallet("w", url)
    w.fund(url)
    result = w.cli("send", "100", "--mint", url, "--yes")
    token = result.stdout.strip()
    assert token.startswith("cashuB") and "\n" not in token
    assert decode(token).amount == 100
    summary = dict(re.findall(r"^(amount|fee|total input|operation)\s+(.+)$", result.stderr,
                              re.M))
    assert summary["amount"] == "100 sat"
    fee = int(summary["fee"].split()[0])
    assert w.balance(url) == {"spendable": 1000 - 100 - fee, "reserved": 0, "pending": 100,
                              "total": 1000 - fee}
    assert (fee > 0) == (ppk > 0)
    shown = w.json("send", "show", summary["operation"])
    assert shown["state"] == "pending" and shown["token"] == token
    assert f"token        {token}" in w.cli("send", "show", summary["operation"]).stdout
    pending = w.cli("send", "pending").stdout.splitlines()
    assert summary["operation"] in pending[1] and "pending" in pending[1]


def test_send_asks_to_confirm_and_no_rolls_back(wallet, mint_fee100):
    url = mint_fee100.url
    w = wallet("w", url)
    w.fund(url)
    declined = w.cli("send", "100", "--mint", url, input="n\n", code=1)
    assert "send 100 sat (fee" in declined.stderr
    assert "cancelled:" in declined.stderr and declined.stdout == ""
    op_id = re.search(r"^operation\s+(\w+)$", declined.stderr, re.M).group(1)  # type: ignore[union-attr]
    assert w.json("send", "show", op_id)["state"] == "rolled_back"
    assert w.balance(url)["spendable"] == 1000  # nothing was spent, no fee

    accepted = w.cli("send", "100", "--mint", url, input="y\n")
    assert accepted.stdout.strip().startswith("cashuB")


def test_send_prepare_only_then_execute_or_rollback(wallet, mint_fee100):
    url = mint_fee100.url
    w = wallet("w", url)
    w.fund(url)
    human = w.cli("send", "100", "--mint", url, "--prepare-only").stdout
    op_id = re.search(r"^operation\s+(\w+)$", human, re.M).group(1)  # type: ignore[union-attr]
    assert f"next: coco send execute {op_id}" in human
    assert re.search(r"^state\s+prepared$", human, re.M)

    executed = w.json("send", "execute", op_id)
    assert executed["operation"]["state"] == "pending"
    assert decode(executed["token"]).amount == 100
    again = w.cli("send", "execute", op_id, "--json", code=1)
    assert json.loads(again.stdout)["error"]["type"] == "InvalidStateError"

    other = w.json("send", "30", "--mint", url, "--prepare-only")
    before = w.balance(url)
    rolled = w.cli("send", "rollback", other["id"])
    assert rolled.stdout.strip() == f"send {other['id']} is rolled_back"
    after = w.balance(url)
    assert after["spendable"] == before["spendable"] + before["reserved"]
    assert after["reserved"] == 0


def test_the_daemon_checks_the_shape_and_the_wallet_the_amount(wallet, mint_fee0):
    url = mint_fee0.url
    w = wallet("w", url)
    with w.client() as client:
        for path in ("/send/prepare", "/mint/quote"):
            for amount, kind in (("5", "BadRequestError"), (True, "BadRequestError"),
                                 (0, "InvalidAmountError"), (-1, "InvalidAmountError")):
                with pytest.raises(RequestFailed) as info:
                    client.post(path, {"mint_url": url, "amount": amount})
                assert (info.value.status, info.value.type) == (400, kind), (path, amount)
        with pytest.raises(RequestFailed) as info:
            client.post("/mint/wait", {"operation_id": "x", "timeout": "soon"})
        assert (info.value.status, info.value.type) == (400, "BadRequestError")
    assert w.json("history") == []  # nothing was started


def test_send_more_than_the_balance_exits_1(wallet, mint_fee100):
    url = mint_fee100.url
    w = wallet("w", url)
    w.fund(url, 100)
    result = w.cli("send", "101", "--mint", url, "--yes", code=1)
    assert "cannot cover 101 plus input fees" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    as_json = w.cli("send", "5000", "--mint", url, "--yes", "--json", code=1)
    error = json.loads(as_json.stdout)["error"]
    assert error["type"] == "InsufficientFundsError"
    assert error["available"] == 100
    assert w.balance(url) == {"spendable": 100, "reserved": 0, "pending": 0, "total": 100}
    w.daemon.wait_for("Exception returned from", 30)  # pykka's report is not silenced


@pytest.mark.parametrize("sub", ["execute", "rollback", "show"])
def test_unknown_operation_id_exits_1(wallet, sub):
    w = wallet("w")
    result = w.cli("send", sub, "f" * 32, code=1)
    assert result.stderr.strip() == f"Error: unknown send operation {'f' * 32}"
    odd = w.cli("send", sub, "../../stop", code=1)  # escaped: never another endpoint
    assert "unknown send operation ../../stop" in odd.stderr
    assert w.cli("status").exit_code == 0


def test_rollback_of_a_completed_send_exits_1(wallet, mint_fee0):
    url = mint_fee0.url
    w = wallet("w", url)
    w.fund(url, 200)
    op, token = w.send(url, 50)
    w.cli("receive", token)  # claimed (by ourselves): the watcher completes the send
    w.wait_event("send:finalized", op["id"])
    shown = w.json("send", "show", op["id"])
    assert shown["state"] == "completed" and "token" not in shown  # spent: no use showing it
    result = w.cli("send", "rollback", op["id"], "--json", code=1)
    assert json.loads(result.stdout)["error"] == {
        "type": "InvalidStateError", "code": "invalid_state",
        "message": f"send {op['id']} is already completed"}
    assert w.cli("send", "pending").stdout.strip() == "no pending sends"


def test_send_then_rollback_of_the_unclaimed_token(wallet, mint_fee100):
    url = mint_fee100.url
    w = wallet("w", url)
    w.fund(url)
    op, token = w.send(url, 100)
    before = w.balance(url)
    rolled = w.json("send", "rollback", op["id"])
    assert rolled["state"] == "rolled_back"
    assert w.spendable(url) == before["spendable"] + 100 - _fee(token, 100)


# --- receive ----------------------------------------------------------------------------


def test_receive_into_a_second_wallet(wallet, mint):
    url = mint.url
    alice, bob = wallet("alice", url), wallet("bob", url)
    alice.fund(url)
    op, token = alice.send(url, 100)
    fee = _fee(token, mint.input_fee_ppk)
    result = bob.cli("receive", token)
    assert result.stdout.startswith(f"received {100 - fee} sat from {url} (mint fee {fee} sat)")
    assert bob.spendable(url) == 100 - fee
    alice.wait_event("send:finalized", op["id"])
    assert alice.balance(url)["pending"] == 0


def test_receive_from_stdin_and_twice(wallet, mint_fee0):
    url = mint_fee0.url
    alice, bob = wallet("alice", url), wallet("bob", url)
    alice.fund(url)
    _, token = alice.send(url, 64)
    received = json.loads(bob.cli("receive", "-", "--json", input=token + "\n").stdout)
    assert received["type"] == "receive" and received["state"] == "completed"
    assert "token" not in received
    twice = bob.cli("receive", token, "--json", code=1)
    assert json.loads(twice.stdout)["error"]["type"] == "TokenSpentError"
    assert "already claimed" in twice.stderr
    assert bob.spendable(url) == 64


def test_receive_bad_tokens_exit_1(wallet, mint_fee0):
    url = mint_fee0.url
    alice, bob = wallet("alice", url), wallet("bob")  # bob does not trust the mint
    assert "not a Cashu token" in bob.cli("receive", "hello", code=1).stderr
    assert bob.cli("receive", "cashuBnotbase64!", code=1).stderr.startswith("Error: ")
    alice.fund(url, 64)
    _, token = alice.send(url, 64)
    assert "unknown mint" in bob.cli("receive", token, code=1).stderr
    assert bob.cli("receive", "-", input="", code=1).stderr.startswith("Error: ")


# --- history, events --------------------------------------------------------------------


def test_history_newest_first_with_limit(wallet, mint_fee0):
    url = mint_fee0.url
    w = wallet("w", url)
    assert w.cli("history").stdout.strip() == "no operations yet"
    w.fund(url, 200)
    op, _ = w.send(url, 50)
    rows = w.cli("history").stdout.splitlines()
    assert rows[0].split()[:5] == ["ID", "TYPE", "AMOUNT", "FEE", "STATE"]
    assert rows[1].split()[:5] == [op["id"], "send", "50", "0", "pending"]
    assert rows[2].split()[1:5] == ["mint", "200", "0", "completed"]
    limited = w.json("history", "--limit", "1")
    assert [h["operation_id"] for h in limited] == [op["id"]]


def test_events_lists_recent_events(wallet, mint_fee0):
    url = mint_fee0.url
    w = wallet("w", url)
    w.fund(url, 64)
    op, token = w.send(url, 32)
    lines = w.cli("events", "--json").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events] == ["mint:prepared", "mint:finalized",
                                            "send:prepared", "send:pending"]
    assert events[-1]["operation_id"] == op["id"]
    assert token not in "".join(lines)  # events never carry a token
    human = w.cli("events").stdout.splitlines()
    assert re.search(rf"send:pending\s+{op['id']}\s+32 sat\s+pending$", human[-1])


# --- --json on every daemon command -----------------------------------------------------


def test_every_command_has_json_output(wallet, mint_fee0):
    url = mint_fee0.url
    w = wallet("w", url)
    w.fund(url, 128)
    prepared = w.json("send", "8", "--mint", url, "--prepare-only")
    for args in (["status"], ["mint", "list"], ["mint", "info", url], ["balance"],
                 ["send", "pending"], ["send", "show", prepared["id"]], ["history"]):
        json.loads(w.cli(*args, "--json").stdout)
    assert json.loads(w.cli("send", "rollback", prepared["id"], "--json").stdout)["state"] == \
        "rolled_back"
    stopped = json.loads(w.cli("stop", "--json").stdout)
    assert stopped == {"stopped": True, "pid": w.daemon.pid}
