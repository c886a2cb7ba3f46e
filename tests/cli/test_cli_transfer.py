"""``coco transfer ...`` through a real daemon and the two session mints (fee 0 and 100 ppk).

Each session mint pays its own mint quotes after a moment, and pays the other's invoice
as an external payment (FakeWallet charges 1 sat, settled in the melt answer), so a
transfer completes within its execute request. After completion the source lost
``amount + fee + fee_paid`` and the destination gained ``received == amount``, to the sat.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from cli_support import Wallet, pairs_of, sats

import cli
from coco_actors.control import RequestFailed
from coco_actors.mint_client import normalize_mint_url
from devtools.devmint import PENDING, SETTLED, DevMint

#: What FakeWallet charges for an external payment it settles at once (lightning fee).
FAKEWALLET_FEE = 1
#: The mint's fee reserve for a small invoice: max(2 sat, 1 %).
RESERVE = 2

#: ``wallet(name, mint_url=None)``: the CLI fixture (tests/cli/conftest.py).
WalletFactory = Callable[..., Wallet]

TRANSFER_FIELDS = {"id", "type", "mint_url", "amount", "unit", "state", "fee", "input_amount",
                   "needs_swap", "created_at", "updated_at", "error", "to_mint_url",
                   "received", "fee_reserve", "fee_paid", "change_amount", "melt_id",
                   "mint_leg_id"}


def _empty() -> dict[str, int]:
    return {"spendable": 0, "reserved": 0, "pending": 0, "total": 0}


def _only(spendable: int, reserved: int = 0) -> dict[str, int]:
    return {"spendable": spendable, "reserved": reserved, "pending": 0,
            "total": spendable + reserved}


@pytest.fixture(params=["fee0->fee100", "fee100->fee0"])
def pair(request: pytest.FixtureRequest, mint_fee0: DevMint,
         mint_fee100: DevMint) -> tuple[str, str, int]:
    """(source url, destination url, the source's input fee ppk), both directions."""
    if request.param == "fee0->fee100":
        return normalize_mint_url(mint_fee0.url), normalize_mint_url(mint_fee100.url), 0
    return normalize_mint_url(mint_fee100.url), normalize_mint_url(mint_fee0.url), 100


@pytest.fixture
def two_mints(mint_fee0: DevMint, mint_fee100: DevMint) -> tuple[str, str]:
    """(source, destination): from the mint with fees to the one without."""
    return normalize_mint_url(mint_fee100.url), normalize_mint_url(mint_fee0.url)


def _funded(wallet: WalletFactory, src: str, dst: str, amount: int = 1000) -> Wallet:
    w = wallet("w", src)
    w.cli("mint", "add", dst)
    w.fund(src, amount)
    assert (w.balance(src), w.balance(dst)) == (_only(amount), _empty())
    return w


def _state(w: Wallet, *urls: str) -> tuple[Any, ...]:
    """Everything a refused command must leave unchanged."""
    return (tuple(w.balance(u) for u in urls), w.json("transfer", "pending"),
            w.json("melt", "pending"),
            [(h["operation_id"], h["type"], h["amount"], h["state"]) for h in w.json("history")])


# --- a transfer that completes at once --------------------------------------------------------


def test_transfer_yes_json_moves_exactly_the_amount(wallet: WalletFactory,
                                                    pair: tuple[str, str, int]) -> None:
    src, dst, ppk = pair
    w = _funded(wallet, src, dst)
    result = w.cli("transfer", "100", "--from", src, "--to", dst, "--yes", "--json")
    assert result.stderr == ""  # --json: no summary, no progress line
    op = json.loads(result.stdout)
    assert set(op) == TRANSFER_FIELDS  # never a token, outputs or secrets
    assert (op["type"], op["state"], op["mint_url"], op["to_mint_url"]) == (
        "transfer", "completed", src, dst)
    assert (op["amount"], op["received"], op["fee_paid"], op["fee_reserve"]) == (
        100, 100, FAKEWALLET_FEE, RESERVE)
    assert (op["fee"] > 0) == (ppk > 0)
    assert w.balance(src) == _only(1000 - 100 - op["fee"] - FAKEWALLET_FEE)
    assert w.balance(dst) == _only(100)
    assert w.json("transfer", "show", op["id"]) == op
    assert w.json("transfer", "pending") == []
    history = w.json("history")
    assert [(h["type"], h["amount"], h["state"], h["mint_url"], h["to_mint_url"],
             h["received"], h["fee"], h["fee_paid"]) for h in history] == [
        ("transfer", 100, "completed", src, dst, 100, op["fee"], FAKEWALLET_FEE),
        ("mint", 1000, "completed", src, None, 0, 0, 0)]
    events = [json.loads(line) for line in w.cli("events", "--json").stdout.splitlines()]
    assert [e["event"] for e in events if e["operation_id"] == op["id"]] == [
        "transfer:prepared", "transfer:finalized"]
    # the total over both mints: what the source lost beyond what arrived
    total = 1000 - op["fee"] - FAKEWALLET_FEE
    assert w.json("balance", "--total") == _only(total)
    lines = w.cli("balance").stdout.splitlines()
    assert lines[-1].split() == ["all", "mints", str(total), "0", "0", str(total)]


def test_transfer_human_shows_the_costs_then_what_it_cost(wallet: WalletFactory,
                                                          two_mints: tuple[str, str]) -> None:
    src, dst = two_mints
    w = _funded(wallet, src, dst)
    result = w.cli("transfer", "200", "--from", src, "--to", dst, "--yes")
    shown = pairs_of(result.stderr)  # before paying: what it may cost
    assert (shown["from"], shown["to"]) == (src, dst)
    assert sats(shown["amount"]) == 200 and sats(shown["fee reserve"]) == RESERVE
    fee = sats(shown["input fee"])
    assert fee > 0  # the source charges 100 ppk
    assert sats(shown["at most"]) == 200 + RESERVE + fee
    done = pairs_of(result.stdout)  # after: what it did cost
    assert (sats(done["received"]), sats(done["lightning fee"]), sats(done["input fee"])) == (
        200, FAKEWALLET_FEE, fee)
    assert sats(done["left the source"]) == 200 + fee + FAKEWALLET_FEE
    assert done["operation"] == shown["operation"]
    assert w.balance(src) == _only(1000 - 200 - fee - FAKEWALLET_FEE)
    assert w.balance(dst) == _only(200)

    details = pairs_of(w.cli("transfer", "show", done["operation"]).stdout)
    op = w.json("transfer", "show", done["operation"])
    assert (details["type"], details["state"], details["from"], details["to"]) == (
        "transfer", "completed", src, dst)
    assert (details["amount"], details["received"], details["lightning fee"]) == (
        "200 sat", "200 sat", f"{FAKEWALLET_FEE} sat")
    assert (details["melt leg"], details["mint leg"]) == (op["melt_id"], op["mint_leg_id"])
    history = w.cli("history").stdout
    assert re.search(rf"transfer\s+200\s+{fee}\s+completed\s+{re.escape(src)} ->"
                     rf" {re.escape(dst)}", history)
    log = w.daemon.log
    assert f"transfer {op['id']} -> completed" in log


# --- prepared: pending, rollback, execute -----------------------------------------------------


def test_prepared_transfer_is_pending_then_rolled_back_or_executed(
        wallet: WalletFactory, two_mints: tuple[str, str]) -> None:
    src, dst = two_mints
    w = _funded(wallet, src, dst)
    first = w.json("transfer", "50", "--from", src, "--to", dst, "--prepare-only")
    assert (first["state"], first["amount"], first["to_mint_url"]) == ("prepared", 50, dst)
    held = first["input_amount"]
    assert held >= 50 + first["fee_reserve"] + first["fee"]
    assert w.balance(src) == _only(1000 - held, held)  # its melt leg holds the inputs
    assert w.balance(dst) == _empty()
    assert [o["id"] for o in w.json("transfer", "pending")] == [first["id"]]
    assert w.json("melt", "pending") == []  # the legs are the transfer's
    table = w.cli("transfer", "pending").stdout.splitlines()
    assert table[0].split()[:5] == ["ID", "TYPE", "AMOUNT", "FEE", "STATE"]
    assert table[1].split()[:5] == [first["id"], "transfer", "50", str(first["fee"]),
                                    "prepared"]

    rolled = w.json("transfer", "rollback", first["id"])
    assert rolled["state"] == "rolled_back"
    assert (w.balance(src), w.balance(dst)) == (_only(1000), _empty())
    assert w.cli("transfer", "pending").stdout.strip() == "no pending transfers"
    again = w.cli("transfer", "rollback", first["id"], "--json", code=1)
    assert json.loads(again.stdout)["error"]["type"] == "InvalidStateError"
    assert (w.balance(src), w.balance(dst)) == (_only(1000), _empty())

    second = w.json("transfer", "50", "--from", src, "--to", dst, "--prepare-only")
    done = w.json("transfer", "execute", second["id"])
    assert (done["state"], done["received"], done["fee_paid"]) == (
        "completed", 50, FAKEWALLET_FEE)
    assert w.balance(src) == _only(1000 - 50 - done["fee"] - FAKEWALLET_FEE)
    assert w.balance(dst) == _only(50)
    refused = w.cli("transfer", "rollback", second["id"], "--json", code=1)
    assert json.loads(refused.stdout)["error"]["type"] == "InvalidStateError"
    assert w.balance(dst) == _only(50)


def test_transfer_asks_and_no_rolls_back(wallet: WalletFactory, two_mints: tuple[str, str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_can_ask", lambda: True)  # stands in for a terminal
    src, dst = two_mints
    w = _funded(wallet, src, dst)
    declined = w.cli("transfer", "100", "--from", src, "--to", dst, input="n\n", code=1)
    assert re.search(rf"transfer 100 sat to {re.escape(dst)} \(fee reserve {RESERVE} sat,"
                     rf" input fee \d+ sat\)\?", declined.stderr)
    assert "cancelled:" in declined.stderr and "nothing was sent" in declined.stderr
    assert declined.stdout == ""
    op_id = pairs_of(declined.stderr)["operation"]
    assert w.json("transfer", "show", op_id)["state"] == "rolled_back"
    assert (w.balance(src), w.balance(dst)) == (_only(1000), _empty())


def test_transfer_without_yes_and_without_a_terminal_refuses(
        wallet: WalletFactory, two_mints: tuple[str, str]) -> None:
    src, dst = two_mints
    w = _funded(wallet, src, dst)
    result = w.cli("transfer", "100", "--from", src, "--to", dst, code=2)
    assert "stdin is not a terminal" in result.stderr and "--yes" in result.stderr
    assert [h["type"] for h in w.json("history")] == ["mint"]  # not even prepared
    assert (w.balance(src), w.balance(dst)) == (_only(1000), _empty())


# --- a payment in flight: the source mint holds it ------------------------------------------


def test_transfer_pending_then_settled_by_the_daemon(
        wallet: WalletFactory, make_mint: Callable[..., DevMint], mint_fee0: DevMint) -> None:
    source = make_mint(input_fee_ppk=100, fakewallet=PENDING).start(timeout=60)
    src, dst = normalize_mint_url(source.url), normalize_mint_url(mint_fee0.url)
    w = _funded(wallet, src, dst)

    started = w.cli("transfer", "100", "--from", src, "--to", dst, "--yes", "--no-wait")
    first = pairs_of(started.stderr)["operation"]
    assert started.stdout.strip() == (f"transfer {first} is pending: the daemon finishes it"
                                      f" (see: coco transfer show {first})")
    timed_out = w.cli("transfer", "100", "--from", src, "--to", dst, "--yes", "--timeout", "1",
                      "--json", code=1)
    answer = json.loads(timed_out.stdout)
    second = answer["operation"]
    assert answer["error"]["type"] == "TransferNotSettled" and second["state"] == "pending"
    assert f"transfer {second['id']} is still pending after 1 s" in timed_out.stderr
    ops = [w.json("transfer", "show", first), second]
    held = sum(o["input_amount"] for o in ops)
    assert w.balance(src) == _only(1000 - held, held)
    assert w.balance(dst) == _empty()
    assert [(o["id"], o["state"]) for o in w.json("transfer", "pending")] == [
        (first, "pending"), (second["id"], "pending")]
    refused = w.cli("transfer", "rollback", first, "--json", code=1)  # it may still be paid
    assert json.loads(refused.stdout)["error"]["type"] == "InvalidStateError"
    assert w.balance(src) == _only(1000 - held, held)

    source.restart(SETTLED)  # the mint settles both; nobody waits but the daemon
    for op in ops:
        w.wait_event("transfer:finalized", op["id"], timeout=60)
    left = 0
    for op in ops:
        done = w.json("transfer", "show", op["id"])
        assert (done["state"], done["received"]) == ("completed", 100)
        left += done["amount"] + done["fee"] + done["fee_paid"]
    assert w.balance(src) == _only(1000 - left)
    assert w.balance(dst) == _only(200)
    assert w.json("transfer", "pending") == []


# --- bad input: a typed error, nothing changed ------------------------------------------------


def test_bad_transfers_exit_with_an_error_and_change_nothing(
        wallet: WalletFactory, two_mints: tuple[str, str]) -> None:
    src, dst = two_mints
    w = _funded(wallet, src, dst, 300)
    before = _state(w, src, dst)
    unknown_mint = "http://127.0.0.1:1"
    cases = [
        ([src, src, "100"], "InvalidInputError", "two different mints"),
        ([src, unknown_mint, "100"], "NotFoundError", "unknown mint"),
        ([unknown_mint, dst, "100"], "NotFoundError", "unknown mint"),
        ([src, dst, "301"], "InsufficientFundsError", "cannot cover"),
    ]
    for (frm, to, amount), kind, words in cases:
        result = w.cli("transfer", amount, "--from", frm, "--to", to, "--yes", "--json", code=1)
        error = json.loads(result.stdout)["error"]
        assert error["type"] == kind, (frm, to, amount, error)
        assert words in error["message"]
        human = w.cli("transfer", amount, "--from", frm, "--to", to, "--yes", code=1)
        assert human.stderr.startswith("Error: ") and len(human.stderr.splitlines()) == 1
        assert _state(w, src, dst) == before
    for amount in ("0", "-1", "abc"):  # usage, as for send: before the daemon is asked
        result = w.cli("transfer", amount, "--from", src, "--to", dst, "--yes", "--json",
                       code=2)
        assert "Error:" in result.stderr and "Traceback" not in result.output
    assert _state(w, src, dst) == before

    # the daemon says the same with a 4xx JSON error to a client that skips the CLI
    bodies: list[tuple[dict[str, Any], int, str]] = [
        ({"mint_url": src, "to_mint_url": dst, "amount": 0}, 400, "InvalidAmountError"),
        ({"mint_url": src, "to_mint_url": dst, "amount": -1}, 400, "InvalidAmountError"),
        ({"mint_url": src, "to_mint_url": dst, "amount": "abc"}, 400, "BadRequestError"),
        ({"mint_url": src, "amount": 5}, 400, "BadRequestError"),
        ({"mint_url": src, "to_mint_url": src, "amount": 5}, 400, "InvalidInputError"),
        ({"mint_url": src, "to_mint_url": unknown_mint, "amount": 5}, 404,
         "NotFoundError"),
        ({"mint_url": src, "to_mint_url": dst, "amount": 301}, 409,
         "InsufficientFundsError"),
    ]
    with w.client() as client:
        for body, status, kind in bodies:
            with pytest.raises(RequestFailed) as info:
                client.post("/transfer/prepare", body)
            assert (info.value.status, info.value.type) == (status, kind), body
        for method, path, status in [("GET", "/transfer/" + "f" * 32, 404),
                                     ("POST", "/transfer/" + "f" * 32 + "/execute", 404),
                                     ("POST", "/transfer/" + "f" * 32 + "/rollback", 404),
                                     ("POST", "/transfer/wait", 400),
                                     ("GET", "/transfer/prepare", 404),
                                     ("POST", "/transfer/pending", 400)]:
            with pytest.raises(RequestFailed) as info:
                client.request(method, path, body={} if method == "POST" else None)
            assert info.value.status == status, (method, path, info.value.error)
    assert _state(w, src, dst) == before


@pytest.mark.parametrize("sub", ["show", "rollback", "execute"])
def test_unknown_transfer_id_exits_1(wallet: WalletFactory, sub: str) -> None:
    w = wallet("w")
    result = w.cli("transfer", sub, "f" * 32, code=1)
    assert result.stderr.strip() == f"Error: unknown transfer operation {'f' * 32}"
    as_json = w.cli("transfer", sub, "f" * 32, "--json", code=1)
    assert json.loads(as_json.stdout)["error"]["type"] == "NotFoundError"
    odd = w.cli("transfer", sub, "../../stop", code=1)  # escaped: never another endpoint
    assert "unknown transfer operation ../../stop" in odd.stderr
    assert w.cli("status").exit_code == 0


# --- coco receive TOKEN --into URL ----------------------------------------------------------


def test_receive_into_moves_a_token_to_another_mint(wallet: WalletFactory,
                                                   pair: tuple[str, str, int]) -> None:
    """A token of the source mint, received into the destination: the costs are shown
    before anything is spent; then what arrives, the change kept at the token's mint and
    the fees add up to the token, to the sat."""
    src, dst, ppk = pair
    payer = wallet("payer", src)
    payer.fund(src, 500)
    _, token = payer.send(src, 200)
    w = wallet("w", dst)
    assert w.balance(dst) == _empty()

    refused = w.cli("receive", token, "--into", dst, code=2)  # no terminal, no --yes
    assert "--yes" in refused.output
    result = w.cli("receive", token, "--into", dst, "--yes")
    shown, done = pairs_of(result.stderr), pairs_of(result.stdout)
    assert sats(shown["token"]) == 200 and shown["into"] == dst and shown["from"] == src
    assert done["state"] == "completed"
    received, change = sats(done["received"]), sats(done["change"])
    fee, ln_fee = sats(done["input fee"]), sats(done["lightning fee"])
    assert received == sats(shown["arrives"]) and fee == sats(shown["input fee"])
    assert ln_fee == FAKEWALLET_FEE
    assert received + change + fee + ln_fee == 200
    assert w.balance(dst) == _only(received)
    assert w.balance(src) == _only(change)  # the change stays at the token's mint
    [entry] = w.json("history")
    assert (entry["type"], entry["state"], entry["received"]) == ("transfer", "completed",
                                                                  received)
    # the token is spent now: a second move is refused, exit 1, nothing changed
    again = w.cli("receive", token, "--into", dst, "--yes", code=1)
    assert "Error:" in again.output
    assert (w.balance(dst), w.balance(src)) == (_only(received), _only(change))
