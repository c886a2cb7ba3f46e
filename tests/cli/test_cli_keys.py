"""``coco keys new|list`` and ``coco send --lock`` through a real daemon and a real mint."""

from __future__ import annotations

import json
import time

from cli_support import Wallet

from coco_actors.crypto.keysets import fee_for
from coco_actors.crypto.nut11 import p2pk_conditions, parse_secret
from coco_actors.tokens import decode


def _fee(token: str, ppk: int) -> int:
    return fee_for(ppk for _ in decode(token).proofs)


def test_keys_new_and_list(wallet):
    w: Wallet = wallet("w")
    assert "no keys yet" in w.cli("keys", "list").stdout
    first = w.cli("keys", "new").stdout.strip()
    assert len(first) == 66 and first[:2] in ("02", "03") and "\n" not in first
    second = w.json("keys", "new")
    assert second["index"] == 1 and second["public"] != first
    listed = w.json("keys", "list")
    assert [(k["index"], k["public"]) for k in listed] == [(0, first), (1, second["public"])]
    human = w.cli("keys", "list").stdout.splitlines()
    assert human[0].split()[:3] == ["INDEX", "PUBLIC", "KEY"]
    assert first in human[1] and second["public"] in human[2]


def test_send_lock_through_the_daemon(wallet, mint):
    url = mint.url
    ppk = mint.input_fee_ppk
    alice, bob, carol = wallet("a", url), wallet("b", url), wallet("c", url)
    alice.fund(url)
    bob_key = bob.cli("keys", "new").stdout.strip()
    refund_key = alice.cli("keys", "new").stdout.strip()
    res = alice.json("send", "100", "--mint", url, "--yes", "--lock", bob_key,
                     "--locktime", str(int(time.time()) + 3600), "--refund", refund_key)
    op, token = res["operation"], res["token"]
    assert decode(token).amount == 100
    for p in decode(token).proofs:
        parsed = parse_secret(p.secret)
        assert parsed is not None
        cond = p2pk_conditions(parsed)
        assert cond.lock_keys == (bob_key,) and cond.refund_keys == (refund_key,)
    fee = op["fee"]
    assert alice.balance(url) == {"spendable": 1000 - 100 - fee, "reserved": 0,
                                  "pending": 100, "total": 1000 - fee}
    # the refund path is not open yet: the rollback says why, nothing changed
    refused = alice.cli("send", "rollback", op["id"], code=1)
    assert "locktime" in refused.stderr and "not passed" in refused.stderr
    assert alice.balance(url)["pending"] == 100

    # carol holds no key: refused with the reason; bob receives
    denied = carol.cli("receive", token, "--json", code=1)
    assert "does not hold" in json.loads(denied.stdout)["error"]["message"]
    assert carol.balance(url)["total"] == 0
    received = bob.json("receive", token)
    assert received["state"] == "completed"
    assert bob.spendable(url) == 100 - _fee(token, ppk)


def test_send_lock_bad_key_is_refused(wallet, mint_fee0):
    url = mint_fee0.url
    w = wallet("w", url)
    w.fund(url, 100)
    bad = w.cli("send", "10", "--mint", url, "--yes", "--lock", "02" + "00" * 32, code=1)
    assert "not a point" in bad.stderr
    two = w.cli("send", "10", "--mint", url, "--yes", "--lock", w.cli("keys", "new").stdout
                .strip(), "--n-sigs", "2", code=1)
    assert "n_sigs" in two.stderr
    assert w.balance(url) == {"spendable": 100, "reserved": 0, "pending": 0, "total": 100}
