"""The README's main job: the wallet *service* end to end against a local development mint.

Starts a Nutshell mint (FakeWallet lightning, 127.0.0.1), creates two wallets
with ``coco init``, runs a ``coco serve`` daemon for each in the background and
drives them with the ``coco`` CLI, printing every command and its output:
invoice -> send -> receive (in the second wallet) -> rollback of an unclaimed
send -> pay a lightning invoice (of a second mint, the payee) -> transfer 100 sat
from the first mint to the second -> a send locked to the receiver's key (P2PK) -> a
payment request paid over HTTP (NUT-18) -> a backend driving the second wallet's
daemon over TCP (bearer token, an idempotency key, the event log replayed, signed
webhooks, the solvency audit) -> usd at the same mint (invoice, send, receive; each
unit's balance on its own) -> history. Every balance is checked to the sat
(``DemoError`` when off).
Leaves nothing running: the daemons and the mints are stopped on the way out,
also on an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from coco_actors.control import ControlClient, ControlError
from coco_actors.crypto.keysets import fee_for
from coco_actors.errors import CocoError
from coco_actors.mint_client import MintClient
from coco_actors.tokens import decode
from devtools.devmint import USD_ENV, DevMint, free_port

#: Seconds a daemon gets to answer after it was started, and a send to be seen claimed.
READY_TIMEOUT = 30.0
#: Seconds one CLI command may take.
COMMAND_TIMEOUT = 120.0
#: What alice pays over lightning, and what she then moves to the second mint.
INVOICE_AMOUNT = 200
TRANSFER_AMOUNT = 100
LOCKED_AMOUNT = 64
REQUEST_AMOUNT = 21
REFUND_AMOUNT = 30
#: Alice's usd (cents, as the FakeWallet mint counts them): minted, then some sent to bob.
USD_AMOUNT = 500
USD_SEND = 100
#: The idempotency key bob's backend gives its refund (its own order number, say).
REFUND_KEY = "refund-4711"
#: Seconds a development mint may take to answer after it was started.
MINT_START_TIMEOUT = 60.0

_TOKEN = re.compile(r"cashu[AB][A-Za-z0-9_\-+/=]+")
_INVOICE = re.compile(r"\bln(?:bc|tb|bcrt)[0-9a-z]{100,}")


class DemoError(Exception):
    """A step of the demo did not give the expected result."""


def coco_command() -> list[str]:
    """The ``coco`` console script next to this interpreter, else ``python -m cli``."""
    script = Path(sys.executable).with_name("coco")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


def run(*, input_fee_ppk: int = 100, out: Callable[[str], Any] = print,
        work_dir: Path | None = None) -> None:
    """Run the demo; ``out`` gets every line it prints."""
    with _stop_on_sigterm(), tempfile.TemporaryDirectory(prefix="coco-demo-") as tmp:
        root = Path(work_dir or tmp).absolute()
        root.mkdir(parents=True, exist_ok=True)
        out(f"starting a local development mint (Nutshell, FakeWallet, fee {input_fee_ppk} ppk)")
        # the payee of step 6 and the destination of step 7: its FakeWallet pays each of
        # its mint quotes itself after a moment, as the lightning payment that alice's
        # mint makes (FakeWallet: outside the mint, nothing moves) would
        payee = DevMint(root / "payee", input_fee_ppk=0)
        with contextlib.ExitStack() as stack:
            stack.callback(payee.stop)  # last: after its start (below) has returned
            starter = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="payee"))
            payee_started = starter.submit(payee.start, MINT_START_TIMEOUT)  # step 6 on needs it
            # it serves usd as well as sat: one more keyset, its own derivation path
            mint = stack.enter_context(DevMint(root / "mint", input_fee_ppk=input_fee_ppk,
                                               extra_env=USD_ENV))
            demo = stack.enter_context(_Session(root, out))
            demo.hooks = stack.enter_context(_HookReceiver())
            out(f"  mint listening at {mint.url}")
            _walk(demo, mint.url, payee_started, input_fee_ppk)
        out("done: daemons stopped, mints stopped")


class _Session:
    """Runs ``coco`` commands in ``root`` (wallets are ``alice`` and ``bob`` there) and
    owns the daemons it starts."""

    def __init__(self, root: Path, out: Callable[[str], Any]) -> None:
        self.root = root
        self.out = out
        self.coco = coco_command()
        self.daemons: dict[str, subprocess.Popen[bytes]] = {}
        self.hooks: _HookReceiver | None = None  # bob's backend, receiving his webhooks
        self.api_port = 0                        # bob's control API on TCP

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        for name, proc in self.daemons.items():
            if proc.poll() is None:
                proc.terminate()  # SIGTERM: a graceful shutdown
                try:
                    proc.wait(timeout=READY_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.out(f"  daemon of {name} did not stop; killing it")
                    proc.kill()
                    proc.wait()

    def cli(self, *args: str, show: bool = True, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``coco ARGS``; print the command and its output (tokens shortened)."""
        if show:
            self.out(_hide_tokens(f"$ coco {' '.join(shlex.quote(a) for a in args)}"))
        proc = subprocess.run([*self.coco, *args], cwd=self.root, input=stdin, text=True,
                              capture_output=True, timeout=COMMAND_TIMEOUT, check=False)
        if show:
            for line in (proc.stderr + proc.stdout).splitlines():
                self.out(f"  {_hide_tokens(line)}")
        if check and proc.returncode != 0:
            raise DemoError(f"coco {args[0]} failed with exit code {proc.returncode}:"
                            f" {_hide_tokens(proc.stderr.strip())}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json", show=False).stdout)

    def serve(self, name: str, *args: str) -> None:
        """``coco serve --data-dir NAME ARGS`` in the background, until its socket answers."""
        self.out(f"$ coco serve --data-dir {name} {' '.join(args)}".rstrip()
                 + f" 2>{name}.log &")
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 (the child holds it)
        with log:
            proc = subprocess.Popen([*self.coco, "serve", "--data-dir", name, *args],
                                    cwd=self.root,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=log)
        self.daemons[name] = proc
        deadline = time.monotonic() + READY_TIMEOUT
        with ControlClient(self.root / name) as client:
            while True:
                try:
                    client.get("/status")
                    break
                except ControlError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        tail = (self.root / f"{name}.log").read_text()[-2000:]
                        raise DemoError(f"the daemon of {name} did not start:\n{tail}") from None
                    time.sleep(0.05)  # another process: nothing to wait on but its socket
        self.out(f"  daemon of {name} is up (pid {proc.pid})")

    def stop(self, name: str) -> None:
        self.cli("stop", "--data-dir", name)
        self.daemons[name].wait(timeout=READY_TIMEOUT)

    def balance(self, name: str, url: str, where: str = "", unit: str = "sat"
                ) -> dict[str, int]:
        """Print and return ``name``'s balance at ``url`` (``where`` names the mint) in
        ``unit`` (named on the line unless sat)."""
        args = ("--unit", unit) if unit != "sat" else ()
        b: dict[str, int] = self.json("balance", "--data-dir", name, "--mint", url, *args)[url]
        self.out(f"  = {name:5}  spendable {b['spendable']:4}  reserved {b['reserved']:3}"
                 f"  pending {b['pending']:3}{f'  at the {where}' if where else ''}"
                 f"{f'  in {unit}' if unit != 'sat' else ''}")
        return b


def _walk(demo: _Session, url: str, payee: Future[DevMint], ppk: int) -> None:
    out = demo.out
    out("\n1. two wallets, each served by its own daemon (bob's also takes payments over"
        " HTTP)")
    for name in ("alice", "bob"):
        demo.out(f"$ coco init --data-dir {name}")
        created = demo.json("init", "--data-dir", name)
        out(f"  created a wallet in {created['data_dir']}; coco init prints its mnemonic"
            " once (not shown here)")
        if name == "bob":
            assert demo.hooks is not None
            secret = demo.root / "bob-webhook.secret"
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(demo.hooks.secret)
            demo.api_port = free_port()
            demo.serve(name, "--payments-listen", f"127.0.0.1:{free_port()}",
                       "--listen", f"127.0.0.1:{demo.api_port}",
                       "--webhook", demo.hooks.url, "--webhook-secret-file", secret.name)
        else:
            demo.serve(name)
        demo.cli("mint", "add", url, "--data-dir", name)

    out("\n2. invoice: alice asks for 1000 sat; the FakeWallet mint pays it at once")
    demo.cli("invoice", "1000", "--mint", url, "--data-dir", "alice")
    _expect(demo.balance("alice", url) == _b(1000, 0, 0), "alice's minted balance")

    out("\n3. send: alice sends 100 sat and gets a token")
    res = demo.cli("send", "100", "--mint", url, "--yes", "--data-dir", "alice")
    token = res.stdout.strip()
    send = demo.json("send", "show", _op_id(res.stderr), "--data-dir", "alice")
    _expect(send["state"] == "pending", "the send is pending")
    _expect(demo.balance("alice", url) == _b(1000 - 100 - send["fee"], 0, 100),
            "alice's balance after the send")

    out("\n4. receive: bob swaps the token into his wallet")
    demo.cli("receive", "-", "--data-dir", "bob", stdin=token)
    receive_fee = fee_for(ppk for _ in decode(token).proofs)
    out(f"  (the token holds {len(decode(token).proofs)} proofs: mint fee {receive_fee} sat)")
    _expect(demo.balance("bob", url) == _b(100 - receive_fee, 0, 0), "bob's balance")
    out("  alice's daemon sees the token spent (watcher) and finalizes her send:")
    _await_state(demo, "alice", send["id"], "completed")
    demo.cli("send", "show", send["id"], "--data-dir", "alice")
    _expect(demo.balance("alice", url) == _b(1000 - 100 - send["fee"], 0, 0),
            "alice's balance after the send completed")

    out("\n5. rollback: alice sends 50 sat, nobody claims it, she takes it back")
    before = demo.json("balance", "--data-dir", "alice")[url]["spendable"]
    res = demo.cli("send", "50", "--mint", url, "--yes", "--data-dir", "alice")
    token2, op_id = res.stdout.strip(), _op_id(res.stderr)
    fee2 = demo.json("send", "show", op_id, "--data-dir", "alice")["fee"]
    demo.cli("send", "rollback", op_id, "--data-dir", "alice")
    reclaim_fee = fee_for(ppk for _ in decode(token2).proofs)
    out(f"  (send fee {fee2} sat, reclaim swap fee {reclaim_fee} sat)")
    _expect(demo.balance("alice", url) == _b(before - fee2 - reclaim_fee, 0, 0),
            "alice's balance after the rollback")
    out("  bob tries the reclaimed token anyway; the mint refuses it (exit code 1):")
    late = demo.cli("receive", token2, "--data-dir", "bob", check=False)
    _expect(late.returncode == 1, "the reclaimed token is refused")
    _expect(demo.balance("bob", url) == _b(100 - receive_fee, 0, 0), "bob's balance unchanged")

    payee_url = payee.result(timeout=MINT_START_TIMEOUT).url
    _pay(demo, url, payee_url)
    _transfer(demo, url, payee_url)
    _locked(demo, url, ppk)
    _request(demo, url)
    _backend(demo, url, ppk)
    _units(demo, url, ppk)
    _consolidate(demo, url, ppk)

    out("\n11. history (newest first)")
    demo.cli("history", "--data-dir", "alice")
    demo.cli("history", "--data-dir", "bob")

    out("\n12. stop the daemons")
    for name in ("alice", "bob"):
        demo.stop(name)


def _pay(demo: _Session, url: str, payee_url: str) -> None:
    """Alice pays a lightning invoice of the second mint (a mint quote's ``request``)."""
    out = demo.out
    out(f"\n6. pay: alice pays a lightning invoice of {INVOICE_AMOUNT} sat")
    out(f"  a second mint, the payee, listens at {payee_url}")
    with MintClient(payee_url) as payee:
        invoice = payee.create_mint_quote(INVOICE_AMOUNT).request
    out("  (the invoice is a mint quote's request there, unpaid until someone pays it)")
    before = demo.json("balance", "--data-dir", "alice")[url]["spendable"]
    res = demo.cli("pay", invoice, "--mint", url, "--yes", "--data-dir", "alice")
    melt = demo.json("melt", "show", _op_id(res.stdout), "--data-dir", "alice")
    _expect(melt["state"] == "completed", "the payment is completed")
    out(f"  (paid {melt['amount']} sat, lightning fee {melt['fee_paid']} sat of the"
        f" {melt['fee_reserve']} sat reserve, input fee {melt['fee']} sat,"
        f" change {melt['change_amount']} sat)")
    spent = melt["amount"] + melt["fee_paid"] + melt["fee"]
    _expect(demo.balance("alice", url) == _b(before - spent, 0, 0),
            "alice's balance after the payment")


def _transfer(demo: _Session, url: str, other_url: str) -> None:
    """Alice moves value from the first mint to the second (a melt there pays a mint quote
    here, then the quote is redeemed): one saga spanning both mints."""
    out = demo.out
    out(f"\n7. transfer: alice moves {TRANSFER_AMOUNT} sat from the first mint to the second")
    demo.cli("mint", "add", other_url, "--data-dir", "alice")
    out("  before:")
    src_before = demo.balance("alice", url, "first mint")
    _expect(demo.balance("alice", other_url, "second mint") == _b(0, 0, 0),
            "alice holds nothing at the second mint yet")
    res = demo.cli("transfer", str(TRANSFER_AMOUNT), "--from", url, "--to", other_url, "--yes",
                   "--data-dir", "alice")
    done = _sats(res.stdout)  # what it did cost, as printed
    _expect(done.get("received") == TRANSFER_AMOUNT, "the transfer is completed")
    left = TRANSFER_AMOUNT + done["lightning fee"] + done["input fee"]
    _expect(done["left the source"] == left, "what left the first mint adds up")
    out("  after:")
    _expect(demo.balance("alice", url, "first mint") == _b(src_before["spendable"] - left,
                                                            0, 0),
            "alice's balance at the first mint after the transfer")
    _expect(demo.balance("alice", other_url, "second mint") == _b(TRANSFER_AMOUNT, 0, 0),
            "alice's balance at the second mint after the transfer")
    demo.cli("balance", "--data-dir", "alice")


def _locked(demo: _Session, url: str, ppk: int) -> None:
    """Bob hands out a P2PK key; alice's token is locked to it (worth nothing to anyone
    who intercepts it); bob's wallet signs its inputs when it receives it."""
    out = demo.out
    out(f"\n8. locked ecash: alice sends {LOCKED_AMOUNT} sat locked to a key of bob's (P2PK)")
    key = demo.cli("keys", "new", "--data-dir", "bob").stdout.strip()
    alice_before = demo.json("balance", "--data-dir", "alice")[url]["spendable"]
    bob_before = demo.json("balance", "--data-dir", "bob")[url]["spendable"]
    res = demo.cli("send", str(LOCKED_AMOUNT), "--mint", url, "--lock", key, "--yes",
                   "--data-dir", "alice")
    token = res.stdout.strip()
    send = demo.json("send", "show", _op_id(res.stderr), "--data-dir", "alice")
    _expect(all(p.secret.startswith('["P2PK"') for p in decode(token).proofs),
            "every proof of the token is locked")
    demo.cli("receive", "-", "--data-dir", "bob", stdin=token)
    receive_fee = fee_for(ppk for _ in decode(token).proofs)
    out(f"  (a locked send always swaps: fee {send['fee']} sat; bob's receive fee"
        f" {receive_fee} sat)")
    _expect(demo.balance("bob", url) == _b(bob_before + LOCKED_AMOUNT - receive_fee, 0, 0),
            "bob's balance after the locked receive")
    _await_state(demo, "alice", send["id"], "completed")
    _expect(demo.balance("alice", url) == _b(alice_before - LOCKED_AMOUNT - send["fee"], 0,
                                             0), "alice's balance after the locked send")


def _request(demo: _Session, url: str) -> None:
    """Bob's daemon creates a payment request whose transport is its payments listener;
    alice's ``coco pay creqA...`` posts the ecash there, and bob's wallet receives it."""
    out = demo.out
    out(f"\n9. payment request: bob asks for {REQUEST_AMOUNT} sat; alice's wallet pays it"
        " over HTTP")
    rec = demo.json("request", "new", str(REQUEST_AMOUNT), "--mint", url, "--data-dir", "bob")
    out(f"  bob's request: {rec['encoded'][:24]}... (payers POST to {rec['transport_url']})")
    alice_before = demo.json("balance", "--data-dir", "alice")[url]["spendable"]
    bob_before = demo.json("balance", "--data-dir", "bob")[url]["spendable"]
    res = demo.cli("pay", rec["encoded"], "--yes", "--data-dir", "alice")
    send = demo.json("send", "show", _op_id(res.stdout), "--data-dir", "alice")
    paid = demo.json("request", "show", rec["id"], "--data-dir", "bob")
    _expect(paid["state"] == "paid", "bob's request is paid")
    [receive] = [h for h in demo.json("history", "--data-dir", "bob")
                 if h["operation_id"] in paid["operation_ids"]]
    receive_fee = receive["fee"]
    _expect(receive["state"] == "completed"
            and paid["received"] == receive["amount"] == REQUEST_AMOUNT - receive_fee,
            "bob received the amount less the mint's fee")
    out(f"  (alice's send fee {send['fee']} sat; bob received {paid['received']} sat after"
        f" the mint's fee of {receive_fee} sat)")
    _expect(demo.balance("bob", url) == _b(bob_before + paid["received"], 0, 0),
            "bob's balance after the request is paid")
    _await_state(demo, "alice", send["id"], "completed")
    _expect(demo.balance("alice", url) == _b(alice_before - REQUEST_AMOUNT - send["fee"], 0,
                                             0), "alice's balance after paying the request")


def _backend(demo: _Session, url: str, ppk: int) -> None:
    """Bob's backend (any language: here the CLI with ``--url``) drives his daemon over
    TCP with the bearer token; it refunds alice with an idempotency key, loses the
    answer and asks again (the same send, the same token); the durable event log and
    the signed webhooks tell it what happened; the audit checks bob's proofs."""
    out = demo.out
    out(f"\n10. a backend on bob's TCP port (bearer token) refunds {REFUND_AMOUNT} sat to alice"
        f" under the idempotency key {REFUND_KEY!r}")
    remote = ("--url", f"http://127.0.0.1:{demo.api_port}", "--token-file", "bob/api-token")
    after = max((e["seq"] for e in _events(demo, remote, 0)), default=0)
    alice_before = demo.json("balance", "--data-dir", "alice")[url]["spendable"]
    bob_before = demo.json("balance", "--data-dir", "bob")[url]["spendable"]
    refund = (*remote, "send", str(REFUND_AMOUNT), "--mint", url, "--yes",
              "--idempotency-key", REFUND_KEY)
    first = demo.cli(*refund)
    out("  the answer got lost on the way; the backend asks again with the same key:")
    again = demo.cli(*refund)
    op_id = _op_id(first.stderr)
    _expect(_op_id(again.stderr) == op_id and again.stdout == first.stdout,
            "the repeat answers the same send with the same token")
    send = demo.json("send", "show", op_id, "--data-dir", "bob")
    _expect(demo.balance("bob", url) == _b(bob_before - REFUND_AMOUNT - send["fee"], 0,
                                           REFUND_AMOUNT), "bob paid the refund once")
    token = first.stdout.strip()
    demo.cli("receive", "-", "--data-dir", "alice", stdin=token)
    receive_fee = fee_for(ppk for _ in decode(token).proofs)
    _expect(demo.balance("alice", url) == _b(alice_before + REFUND_AMOUNT - receive_fee, 0,
                                             0), "alice's balance after the refund")
    _await_state(demo, "bob", op_id, "completed")
    _expect(demo.balance("bob", url) == _b(bob_before - REFUND_AMOUNT - send["fee"], 0, 0),
            "bob's refund is completed")
    out(f"  what the backend replays from bob's event log (every event after seq {after}):")
    demo.cli(*remote, "events", "--after", str(after))
    mine = [e["event"] for e in _events(demo, remote, after)
            if e.get("operation_id") == op_id]
    _expect(mine == ["send:prepared", "send:pending", "send:finalized"],
            "the refund's events, each once, in order")
    assert demo.hooks is not None
    last = max(e["seq"] for e in _events(demo, remote, after))
    delivered = demo.hooks.wait_for(last)
    _expect(delivered == list(range(1, last + 1)), "every event reached the webhook")
    out(f"  bob's webhook receiver got events 1..{last}, each signed; every signature"
        " verifies (HMAC-SHA256, Standard Webhooks)")
    demo.cli("webhooks", "status", "--data-dir", "bob")
    out("  the solvency report: bob's proofs checked at the mint (NUT-07)")
    audit = demo.cli("audit", "--data-dir", "bob")
    _expect("no difference" in audit.stdout, "the audit finds no difference")


def _units(demo: _Session, url: str, ppk: int) -> None:
    """The mint serves usd too: alice mints usd, sends some to bob, bob receives it; each
    unit's balance moves on its own (sat never pays for usd, nor the other way)."""
    out = demo.out
    out(f"\n10b. units: alice mints {USD_AMOUNT} usd (cents) at the same mint and sends"
        f" {USD_SEND} to bob")
    sat_before = {name: demo.json("balance", "--data-dir", name)[url]
                  for name in ("alice", "bob")}
    demo.cli("invoice", str(USD_AMOUNT), "--mint", url, "--unit", "usd", "--data-dir", "alice")
    _expect(demo.balance("alice", url, unit="usd") == _b(USD_AMOUNT, 0, 0),
            "alice's usd balance after the usd invoice")
    res = demo.cli("send", str(USD_SEND), "--mint", url, "--unit", "usd", "--yes",
                   "--data-dir", "alice")
    token = res.stdout.strip()
    _expect(decode(token).unit == "usd", "the token is in usd")
    send = demo.json("send", "show", _op_id(res.stderr), "--data-dir", "alice")
    _expect(demo.balance("alice", url, unit="usd") == _b(USD_AMOUNT - USD_SEND - send["fee"],
                                                         0, USD_SEND),
            "alice's usd balance after the usd send")
    demo.cli("receive", "-", "--data-dir", "bob", stdin=token)
    receive_fee = fee_for(ppk for _ in decode(token).proofs)
    _expect(demo.balance("bob", url, unit="usd") == _b(USD_SEND - receive_fee, 0, 0),
            "bob's usd balance")
    _await_state(demo, "alice", send["id"], "completed")
    out("  every unit in its own table; the sat balances did not move:")
    demo.cli("balance", "--data-dir", "alice")
    for name in ("alice", "bob"):
        _expect(demo.json("balance", "--data-dir", name)[url] == sat_before[name],
                f"{name}'s sat balance unchanged by usd")
    _expect(demo.balance("alice", url, unit="usd")
            == _b(USD_AMOUNT - USD_SEND - send["fee"], 0, 0), "alice's usd send completed")


def _consolidate(demo: _Session, url: str, ppk: int) -> None:
    """Bob's receipts left him many small sat proofs: one consolidation swaps them into
    the fewest, paying the NUT-02 input fee once; his balance drops by exactly that."""
    out = demo.out
    out("\n10c. consolidation: bob swaps his many small sat proofs into the fewest")
    before = demo.balance("bob", url)
    out(f"$ coco consolidate --mint {url} --data-dir bob --json")
    res = demo.json("consolidate", "--mint", url, "--data-dir", "bob")[0]
    _expect(res["skipped"] is None and res["operation"]["state"] == "completed",
            "bob's consolidation completed")
    fee = fee_for(ppk for _ in range(res["inputs"]))
    _expect(res["fee"] == fee and res["input_amount"] == before["spendable"]
            and res["amount"] == before["spendable"] - fee
            and res["outputs"] == bin(res["amount"]).count("1") < res["inputs"],
            "every proof in, the fewest out, the fee once")
    out(f"  {res['inputs']} proofs ({res['input_amount']} sat) into {res['outputs']}"
        f" ({res['amount']} sat), input fee {fee} sat")
    _expect(demo.balance("bob", url) == _b(before["spendable"] - fee, 0, 0),
            "bob's balance after the consolidation")


def _events(demo: _Session, remote: Sequence[str], after: int) -> list[dict[str, Any]]:
    """``coco REMOTE events --after SEQ --json``: one JSON object a line."""
    text = demo.cli(*remote, "events", "--after", str(after), "--json", show=False).stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class _HookReceiver:
    """Bob's backend's webhook endpoint (127.0.0.1): keeps the seq of every delivery
    whose Standard Webhooks signature verifies, answers 204; a bad one gets a 400."""

    def __init__(self) -> None:
        self.secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self._key = base64.b64decode(self.secret.removeprefix("whsec_"))
        self._seqs: set[int] = set()
        self._bad = 0
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ok = receiver._verify(self.headers, body)
                self.send_response(204 if ok else 400)
                self.end_headers()
                with receiver._changed:
                    if ok:
                        receiver._seqs.add(json.loads(body)["seq"])
                    else:
                        receiver._bad += 1
                    receiver._changed.notify_all()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/coco"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="demo-webhooks")

    def __enter__(self) -> _HookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _verify(self, headers: Any, body: bytes) -> bool:
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        expected = base64.b64encode(hmac.new(self._key, signed, hashlib.sha256).digest())
        return any(hmac.compare_digest(sig.removeprefix("v1,").encode(), expected)
                   for sig in headers.get("webhook-signature", "").split())

    def wait_for(self, seq: int) -> list[int]:
        """The seqs delivered (sorted) once ``seq`` is among them (or the timeout)."""
        deadline = time.monotonic() + READY_TIMEOUT
        with self._changed:
            while seq not in self._seqs and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            _expect(self._bad == 0, "every webhook signature verifies")
            return sorted(self._seqs)


def _b(spendable: int, reserved: int, pending: int) -> dict[str, int]:
    return {"spendable": spendable, "reserved": reserved, "pending": pending,
            "total": spendable + reserved + pending}


def _sats(text: str) -> dict[str, int]:
    """The ``key   N sat`` lines of a command's human output."""
    return {k: int(v) for k, v in re.findall(r"^([a-z][a-z ]*?)\s{2,}(\d+) sat$", text, re.M)}


def _op_id(stderr: str) -> str:
    match = re.search(r"^operation\s+([0-9a-f]{32})$", stderr, re.M)
    if match is None:
        raise DemoError(f"no operation id in the output of coco: {stderr!r}")
    return match.group(1)


def _await_state(demo: _Session, name: str, op_id: str, state: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while demo.json("send", "show", op_id, "--data-dir", name)["state"] != state:
        if time.monotonic() > deadline:
            raise DemoError(f"send {op_id} did not become {state} within {READY_TIMEOUT:.0f} s")
        time.sleep(0.1)  # the daemon finalizes on its own; the demo just looks


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise DemoError(f"demo check failed: {what}")


def _hide_tokens(line: str) -> str:
    """Tokens (and, for reading's sake, invoices) shortened to their start and length."""
    line = _INVOICE.sub(lambda m: f"{m.group()[:16]}... ({len(m.group())} chars)", line)
    return _TOKEN.sub(lambda m: f"{m.group()[:12]}... ({len(m.group())} chars)", line)


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (and SIGHUP) unwind like Ctrl-C, so the daemons and the mint get stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)



def main(argv: Sequence[str] | None = None) -> int:
    """``python -m devtools.demo [--fee PPK]`` (what ``./scripts/demo.sh`` runs)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=(
        "Run the wallet service end to end against a local development mint."))
    parser.add_argument("--fee", dest="input_fee_ppk", type=int, default=100,
                        choices=range(0, 1001), metavar="PPK",
                        help="input fee of the development mint, in ppk (default 100)")
    args = parser.parse_args(argv)
    try:
        run(input_fee_ppk=args.input_fee_ppk)
    except (DemoError, CocoError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
