"""The README's main job must stay true: the service demo checks its own balances.

It runs the same driver as ``./scripts/demo.sh`` (``python -m devtools.demo``): a real mint, two
``coco serve`` daemons, the ``coco`` CLI in child processes. The driver raises on any
balance that is off; here the printed balances are pinned to the sat as well.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devtools.demo import run

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "demo.sh"


@pytest.mark.timeout(600)  # a dozen steps of real daemons and mints on a shared machine
def test_demo_runs_end_to_end_with_fees(nutshell_bin, tmp_path):
    lines: list[str] = []
    run(input_fee_ppk=100, out=lines.append, work_dir=tmp_path)
    text = "\n".join(lines)
    balances = [line.strip() for line in lines if line.strip().startswith("= ")]
    assert balances == [
        "= alice  spendable 1000  reserved   0  pending   0",   # minted
        "= alice  spendable  899  reserved   0  pending 100",   # sent 100, swap fee 1
        "= bob    spendable   99  reserved   0  pending   0",   # received, mint fee 1
        "= alice  spendable  899  reserved   0  pending   0",   # bob claimed it: completed
        "= alice  spendable  898  reserved   0  pending   0",   # 50 sent and reclaimed, fee 1
        "= bob    spendable   99  reserved   0  pending   0",   # the reclaimed token refused
        "= alice  spendable  696  reserved   0  pending   0",   # paid 200, ln fee 1, input fee 1
        "= alice  spendable  696  reserved   0  pending   0  at the first mint",   # transfer:
        "= alice  spendable    0  reserved   0  pending   0  at the second mint",  # before
        "= alice  spendable  594  reserved   0  pending   0  at the first mint",   # 100, ln fee 1,
        "= alice  spendable  100  reserved   0  pending   0  at the second mint",  # input fee 1
        "= bob    spendable  162  reserved   0  pending   0",   # 64 locked to bob's key, fee 1
        "= alice  spendable  529  reserved   0  pending   0",   # a locked send swaps: fee 1
        "= bob    spendable  182  reserved   0  pending   0",   # bob's request of 21 paid
        "= alice  spendable  508  reserved   0  pending   0",   # by alice over HTTP: fee 0
        "= bob    spendable  152  reserved   0  pending  30",   # refund under a key, asked
        "= alice  spendable  537  reserved   0  pending   0",   # twice, paid once; mint fee 1
        "= bob    spendable  152  reserved   0  pending   0",   # alice claimed it: completed
        "= alice  spendable  500  reserved   0  pending   0  in usd",  # usd minted
        "= alice  spendable  400  reserved   0  pending 100  in usd",  # 64+32+4: no swap
        "= bob    spendable   99  reserved   0  pending   0  in usd",  # received, mint fee 1
        "= alice  spendable  400  reserved   0  pending   0  in usd",  # bob claimed it
        "= bob    spendable  152  reserved   0  pending   0",   # before the consolidation
        "= bob    spendable  151  reserved   0  pending   0",   # 8 proofs into 5, fee 1
    ]
    assert "received 99 sat from" in text
    assert re.search(r"^\s+state\s+completed$", text, re.M)
    assert re.search(r"send \w{32} is rolled_back", text)
    assert re.search(r"send\s+50\s+0\s+rolled_back", text)
    assert re.search(r"^\s+fee reserve\s+2 sat$", text, re.M)  # shown before paying
    assert re.search(r"^\s+paid\s+200 sat\n\s+lightning fee\s+1 sat\n\s+input fee\s+1 sat\n"
                     r"\s+change\s+54 sat\n\s+preimage\s+0{64}$", text, re.M)
    assert re.search(r"melt\s+200\s+1\s+completed", text)
    assert re.search(r"^\s+amount\s+100 sat\n\s+fee reserve\s+2 sat\n\s+input fee\s+1 sat\n"
                     r"\s+at most\s+103 sat$", text, re.M)  # shown before the transfer
    assert re.search(r"^\s+received\s+100 sat\n.*\n.*\n\s+lightning fee\s+1 sat\n"
                     r"\s+input fee\s+1 sat\n\s+left the source\s+102 sat$", text, re.M)
    assert re.search(r"^\s+all mints\s+694\s+0\s+0\s+694$", text, re.M)  # coco balance
    assert re.search(r"transfer\s+100\s+1\s+completed\s+http://\S+ -> http://", text)
    assert re.search(r"^\s+received 63 sat from .* is completed$", text, re.M)  # locked
    assert re.search(r"^\s+payee answered\s+200 \{\"request_id\": \"\w+\", \"amount\": 20,",
                     text, re.M)
    assert re.search(r"receive\s+20\s+1\s+completed", text)  # bob's history: the request
    # the backend's view: the same send twice, its events replayed once each, the webhooks
    refunds = re.findall(r"^\s+send (\w{32}) is pending: a token of 30 sat", text, re.M)
    assert len(refunds) == 2 and refunds[0] == refunds[1]
    replayed = re.findall(r"^\s+\d+\s+\S+ \S+\s+(send:\S+)\s+" + refunds[0], text, re.M)
    assert replayed == ["send:prepared", "send:pending", "send:finalized"]
    assert re.search(r"webhook receiver got events 1\.\.\d+, each signed; every signature"
                     r" verifies", text)
    assert re.search(r"^\s+no difference$", text, re.M)  # coco audit of bob's wallet
    # coco balance after the usd step: the sat table, then the usd one, never added up
    assert re.search(r"^\s+all mints\s+637\s+0\s+0\s+637\n\s*\n\s+in usd:\n\s+MINT.*\n"
                     r"\s+http://\S+\s+400\s+0\s+0\s+400\n\s+all mints\s+400\s+0\s+0\s+400$",
                     text, re.M)
    assert re.search(r"send\s+100 usd\s+0\s+completed", text)  # alice's history
    assert re.search(r"receive\s+99 usd\s+1\s+completed", text)  # bob's
    # bob's receipts (99, 63, 20, less the 30 refunded) consolidated: every proof in, one
    # output per bit of 151 out
    assert re.search(r"^\s+8 proofs \(152 sat\) into 5 \(151 sat\), input fee 1 sat$", text,
                     re.M)
    assert re.search(r"consolidate\s+151\s+1\s+completed", text)  # bob's history
    assert lines[-1] == "done: daemons stopped, mints stopped"
    assert not re.search(r"cashuB[A-Za-z0-9_-]{40}", text)  # tokens are shortened
    assert not re.search(r"lnbc[0-9a-z]{40}", text)  # so are invoices
    assert not list(tmp_path.glob("*/control.sock"))  # the daemons removed their sockets


def test_demo_script_runs_this_driver():
    assert SCRIPT.read_text().rstrip().endswith('exec .venv/bin/python -m devtools.demo "$@"')
