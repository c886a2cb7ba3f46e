"""Webhooks from a real ``coco serve`` against the real mint: every event arrives, in seq
order, signed, through receiver failures, a SIGTERM and a SIGKILL of the daemon.

The receiver is an ``http.server`` on 127.0.0.1 in the test. Signatures are checked
with hmac/base64 from the Standard Webhooks text (never with the daemon's signer), and
also with the README's receiver, so the documented code is the code that works.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import DaemonProcess, Wallet, run_coco

from coco_actors.events import EventLog
from coco_actors.store import Store
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import WAIT, HookReceiver, verified

README = Path(__file__).resolve().parents[2] / "README.md"
RAW_KEY = os.urandom(32)
SECRET = "whsec_" + base64.b64encode(RAW_KEY).decode()


@pytest.fixture
def receiver() -> Iterator[HookReceiver]:
    r = HookReceiver(fail_first=3)
    yield r
    r.close()


@pytest.fixture
def secret_file(short_tmp: Path) -> Path:
    path = short_tmp / "hook.secret"
    path.write_text(SECRET + "\n")
    os.chmod(path, 0o600)
    return path


def readme_verify() -> Callable[..., Any]:
    """The ``verify`` of the README's webhook receiver."""
    match = re.search(r"<!-- readme-webhook-receiver.*?-->\s*```python\n(.*?)```",
                      README.read_text(), re.S)
    assert match, "README lost its webhook receiver"
    scope: dict[str, Any] = {"__name__": "readme_receiver"}
    exec(compile(match.group(1), "README.md", "exec"), scope)
    return scope["verify"]  # type: ignore[no-any-return]


def outbox_of(data_dir: Path) -> list[tuple[int, str, str | None]]:
    """Every event in the wallet's outbox (the daemon is down): (seq, event, operation)."""
    store = Store(data_dir)
    try:
        return [(e.seq, e.event, e.operation_id) for e in EventLog(store).since(0, 100_000)]
    finally:
        store.close()


def hook_status(w: Wallet) -> dict[str, Any]:
    (status,) = w.json("webhooks", "status")
    return status  # type: ignore[no-any-return]


@pytest.mark.timeout(600)
def test_every_event_arrives_in_order_signed_through_failures_and_restarts(
        daemons: Callable[..., DaemonProcess], mint: Any, receiver: HookReceiver,
        secret_file: Path) -> None:
    url, fee_ppk = mint.url, mint.input_fee_ppk
    daemon = daemons("w", "--webhook", receiver.url, "--webhook-secret-file", str(secret_file),
                     "--webhook-backoff", "0.05,0.3")
    w = Wallet(daemon.data_dir, daemon)
    w.cli("mint", "add", url)
    w.fund(url, 1000)  # mint:prepared, mint:finalized: the first three attempts fail
    assert w.balance(url) == {"spendable": 1000, "reserved": 0, "pending": 0, "total": 1000}
    got = receiver.wait("three failures, then a 2xx", lambda ds: any(d.status < 300 for d in ds))
    assert [d.status for d in got[:4]] == [500, 500, 500, 204]
    assert {d.headers["webhook-id"] for d in got[:4]} == {"evt_1"}  # the same event, retried

    # the receiver fails while a send is made and the daemon is stopped (SIGTERM)
    with receiver.cond:
        receiver.failing = True
    sent, token = w.send(url, 100)
    send_fee = sent["fee"]
    assert sent["state"] == "pending" and (send_fee == 0 or fee_ppk > 0)
    assert w.balance(url) == {"spendable": 900 - send_fee, "reserved": 0, "pending": 100,
                              "total": 1000 - send_fee}
    receiver.wait("the send's events attempted",
                  lambda ds: sum(d.status == 500 for d in ds) >= 5)
    status = hook_status(w)
    assert status["pending"] >= 1 and status["last_error"] == "HTTP 500"
    assert status["attempts"] >= 1 and status["current_seq"] is not None
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
    with receiver.cond:
        receiver.failing = False
    daemon.start()
    receiver.wait_acked("send:pending", sent["id"])  # sent before the SIGTERM, delivered after

    # the token is claimed (send:finalized), then the daemon is SIGKILLed before delivery
    with receiver.cond:
        receiver.failing = True
    received = w.json("receive", token)
    recv_fee = received["fee"]
    w.wait_event("send:finalized", sent["id"])
    assert received["state"] == "completed" and (recv_fee == 0 or fee_ppk > 0)
    spendable = 1000 - send_fee - recv_fee
    assert w.balance(url) == {"spendable": spendable, "reserved": 0, "pending": 0,
                              "total": spendable}
    daemon.signal(signal.SIGKILL)
    assert daemon.wait_exit() == -signal.SIGKILL
    with receiver.cond:
        receiver.failing = False
    daemon.start()
    assert w.balance(url) == {"spendable": spendable, "reserved": 0, "pending": 0,
                              "total": spendable}
    prepared = w.json("send", "40", "--mint", url, "--prepare-only")
    w.cli("send", "rollback", prepared["id"])
    assert w.balance(url) == {"spendable": spendable, "reserved": 0, "pending": 0,
                              "total": spendable}
    receiver.wait_acked("send:finalized", sent["id"])  # committed before the SIGKILL
    receiver.wait_acked("send:rolled-back", prepared["id"])
    wait_until(lambda: hook_status(w)["pending"] == 0, WAIT, "nothing pending")
    status = hook_status(w)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0

    outbox = outbox_of(daemon.data_dir)
    seqs = [seq for seq, _, _ in outbox]
    last = seqs[-1]
    assert seqs == list(range(1, last + 1))
    assert status["last_delivered_seq"] == last and status["pending"] == 0
    assert status["current_seq"] is None and status["next_retry_at"] is None
    acked = receiver.acked()
    # every event acknowledged, in seq order; at least once: a repeat only of the one just
    # delivered (a SIGKILL between the 2xx and the commit of the cursor)
    assert sorted({d.seq for d in acked}) == seqs
    assert all(b.seq in (a.seq, a.seq + 1) for a, b in zip(acked, acked[1:], strict=False))
    by_seq = {seq: (name, op) for seq, name, op in outbox}
    verify = readme_verify()
    for d in receiver.deliveries:
        assert verified(d, RAW_KEY), f"seq {d.seq}: the signature does not verify"
        assert verify(SECRET, d.headers, d.body, tolerance=3600)["seq"] == d.seq
        body = json.loads(d.body)
        assert d.headers["webhook-id"] == f"evt_{d.seq}"
        assert (body["event"], body["operation_id"]) == by_seq[d.seq]
        assert body["type"] == body["event"] and "token" not in json.dumps(body["data"])
    names = [json.loads(d.body)["event"] for d in acked
             if json.loads(d.body)["operation_id"] == sent["id"]]
    assert list(dict.fromkeys(names)) == ["send:prepared", "send:pending", "send:finalized"]
    assert token not in "".join(d.body.decode() for d in receiver.deliveries)
    tampered = receiver.deliveries[-1]
    with pytest.raises(ValueError):
        verify(SECRET, tampered.headers, tampered.body.replace(b"}", b',"x":1}', 1),
               tolerance=3600)
    assert SECRET not in daemon.log and SECRET[6:] not in daemon.log


def test_a_host_not_allowed_or_a_readable_secret_file_is_refused_at_start(
        short_tmp: Path, secret_file: Path, run_cli: Callable[..., Any]) -> None:
    data_dir = short_tmp / "w"
    assert run_cli("init", "--data-dir", str(data_dir)).exit_code == 0
    refused = run_coco("serve", "--data-dir", str(data_dir), "--webhook",
                       "http://hooks.example.com/x", "--webhook-secret-file", str(secret_file))
    assert refused.returncode == 1
    assert "webhook host hooks.example.com is not allowed" in refused.stderr
    assert SECRET not in refused.stderr + refused.stdout

    open_file = short_tmp / "open.secret"
    open_file.write_text(SECRET)
    os.chmod(open_file, 0o644)
    refused = run_coco("serve", "--data-dir", str(data_dir), "--webhook",
                       "http://127.0.0.1:9/x", "--webhook-secret-file", str(open_file))
    assert refused.returncode == 1 and "chmod 600" in refused.stderr
    assert SECRET not in refused.stderr + refused.stdout
    assert not (data_dir / "control.sock").exists()  # no daemon started


def test_an_allowed_host_starts_and_status_shows_it(
        daemons: Callable[..., DaemonProcess], secret_file: Path) -> None:
    daemon = daemons("w", "--webhook", "http://hooks.example.com/x", "--webhook-secret-file",
                     str(secret_file), "--webhook-allow-host", "hooks.example.com")
    w = Wallet(daemon.data_dir, daemon)
    status = hook_status(w)
    assert status["url"] == "http://hooks.example.com/x" and status["source"] == "config"
    assert status["pending"] == 0 and status["last_delivered_seq"] == 0
    assert "secret" not in json.dumps(status)
    human = w.cli("webhooks", "status").stdout
    assert "http://hooks.example.com/x" in human and "PENDING" in human
