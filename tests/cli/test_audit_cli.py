"""``coco audit`` through a real daemon and a real mint (fees 0 and 100): the JSON is the
daemon's report (``GET /audit``), the human output names what it found, and proofs spent
behind the wallet's back (by a second copy of its mnemonic) are removed only by --fix."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli_support import DaemonProcess, Wallet
from click.testing import Result

from cli import audit_text
from coco_actors import Coco
from coco_actors.audit import AuditReport, MintAudit, StatusCheck, Tally
from coco_actors.control.views import audit_view
from coco_actors.mint_client import MintClient, normalize_mint_url
from coco_actors.records import ProofStatus
from coco_actors.tokens import Token, decode, encode_v4
from devtools.devmint import DevMint
from tests.support.crash_driver import Recipient

#: Fields that move between two reports of the same wallet: its time, and ages.
VOLATILE = frozenset({"at", "age_s"})


def steady(value: Any) -> Any:
    """A report without its clock fields, to compare two reports of one state."""
    if isinstance(value, dict):
        return {k: steady(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [steady(v) for v in value]
    return value


def test_coco_audit_json_is_the_daemons_report(wallet: Callable[..., Wallet],
                                               mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    w = wallet("w", url)
    w.fund(url, 1000)
    op, token = w.send(url, 100)                                     # a pending send
    held = w.json("send", "30", "--mint", url, "--prepare-only")     # a reservation
    b = w.balance(url)
    assert (b["reserved"], b["pending"]) == (held["input_amount"], decode(token).amount)

    report = w.json("audit")
    with w.client() as client:
        direct = client.get("/audit")
    assert steady(report) == steady(direct)

    assert (report["fix"], report["difference_count"], report["difference_amount"]) == (
        False, 0, 0)
    [a] = report["mints"]
    assert (a["mint_url"], a["unit"], a["reachable"]) == (url, "sat", True)
    assert (a["ready"]["amount"], a["ready"]["unspent"]["amount"]) == (b["spendable"],
                                                                      b["spendable"])
    assert (a["reserved"]["amount"], a["reserved"]["unspent"]["amount"]) == (b["reserved"],
                                                                            b["reserved"])
    assert (a["pending_send"]["amount"], a["pending_send"]["unspent"]["amount"]) == (
        b["pending"], b["pending"])
    assert a["wallet_amount"] == a["confirmed_amount"] == b["spendable"] + b["reserved"]
    assert [(r["operation_id"], r["kind"], r["state"], r["amount"]) for r in
            a["reservations"]] == [(held["id"], "send", "prepared", held["input_amount"])]
    assert [(s["operation_id"], s["claim"]) for s in a["pending_sends"]] == [
        (op["id"], "unclaimed")]
    assert w.json("audit", "--mint", url)["mints"][0]["mint_url"] == url

    human = w.cli("audit").stdout
    assert human.rstrip().endswith("no difference")
    assert f"pending send {op['id']} of 100 sat (pending, unclaimed" in human
    assert f"by send {held['id']} (prepared" in human

    fixed = w.json("audit", "--fix")
    assert (fixed["fix"], fixed["fixed_count"], fixed["difference_count"]) == (True, 0, 0)
    assert w.balance(url) == b                                      # nothing changed

    unknown = w.cli("audit", "--mint", "http://127.0.0.1:1", "--json", code=1)
    assert json.loads(unknown.stdout)["error"]["type"] == "NotFoundError"


def test_coco_audit_fix_removes_what_a_twin_spent(run_cli: Callable[..., Result],
                                                  short_tmp: Path,
                                                  daemons: Callable[..., DaemonProcess],
                                                  mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    created = run_cli("init", "--json", "--data-dir", str(short_tmp / "w"))
    assert created.exit_code == 0, created.output
    mnemonic = json.loads(created.stdout)["mnemonic"]
    daemon = daemons("w")
    w = Wallet(daemon.data_dir, daemon)
    w.cli("mint", "add", url)
    w.fund(url, 1000)                                      # 512 + 256 + 128 + 64 + 32 + 8
    # a second copy of the wallet restores its proofs and spends the two smallest
    with Coco.open(short_tmp / "twin", mnemonic, watcher=False) as twin:
        twin.mints.add(url)
        twin.restore(url)
        ready = sorted((r for r in twin._ledger.all_proof_records().get(timeout=10)
                        if r.status == ProofStatus.READY), key=lambda r: r.amount)
        gone = ready[:2]
    with MintClient(url) as client:
        assert Recipient(client).claim(encode_v4(Token(mint=url,
                                                       proofs=tuple(r.proof for r in gone))))
    lost = sum(r.amount for r in gone)
    assert lost == 8 + 32
    before = w.balance(url)
    assert before["spendable"] == 1000

    report = w.json("audit")
    [a] = report["mints"]
    assert (report["difference_count"], report["difference_amount"]) == (2, lost)
    assert sorted((d["kind"], d["y"], d["amount"]) for d in a["differences"]) == sorted(
        ("ready_spent", r.Y, r.amount) for r in gone)
    assert (a["wallet_amount"], a["confirmed_amount"]) == (1000, 1000 - lost)
    assert w.balance(url) == before                              # the audit changed nothing
    human = w.cli("audit").stdout
    assert f"2 difference(s), {lost} sat" in human
    assert "coco audit --fix removes the 2 proof(s) the mint says are spent" in human

    fixed = w.json("audit", "--fix", "--mint", url)
    [f] = fixed["mints"]
    assert (fixed["fixed_count"], fixed["fixed_amount"]) == (2, lost)
    assert sorted(f["fixed"]["ys"]) == sorted(r.Y for r in gone)
    assert w.balance(url)["spendable"] == f["confirmed_amount"] == 1000 - lost
    again = w.json("audit")
    assert (again["difference_count"], again["fixed_count"]) == (0, 0)
    assert w.cli("audit").stdout.rstrip().endswith("no difference")


def test_an_unreachable_mint_reads_as_such() -> None:
    """The human rendering of a mint that did not answer: its side counted, the mint's
    columns unknown, and no claim that it is healthy (no mint needed)."""
    a = MintAudit(mint_url="http://127.0.0.1:1", unit="sat", reachable=False,
                  error="MintUnreachableError: connection refused",
                  ready=StatusCheck(2, 24), reserved=StatusCheck(), pending_send=StatusCheck(),
                  changed=Tally(), wallet_amount=24, confirmed_amount=0, difference_count=0,
                  difference_amount=0, differences=(), claimed_not_finalized=(),
                  reservations=(), pending_sends=(), pending_melts=())
    report = AuditReport(at=1, fix=False, difference_count=0, difference_amount=0,
                         fixed_count=0, fixed_amount=0, unreachable=(a.mint_url,), mints=(a,))
    view = json.loads(json.dumps(audit_view(report)))
    assert view["mints"][0]["ready"] == {"count": 2, "amount": 24,
                                         **{k: {"count": 0, "amount": 0}
                                            for k in ("unspent", "spent", "pending")}}
    text = audit_text(view)
    assert text.splitlines()[1].split() == ["http://127.0.0.1:1", "sat", "ready", "2", "24",
                                            "?", "?", "?"]
    assert ("  unreachable, nothing checked or changed (MintUnreachableError: connection"
            " refused)") in text
    assert text.rstrip().endswith("no difference (an unreachable mint was not checked)")
