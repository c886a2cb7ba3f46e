"""Crash tests' driver: a wallet in a child process behind the fault proxy, killed
with SIGKILL at chosen moments, restarted on the same data directory, and audited.

- :class:`WalletChild` runs ``crash_child.py`` (one ``Coco`` on one data
  directory) and talks to it in JSON lines; :meth:`WalletChild.kill` is SIGKILL.
- :class:`Faucet` makes tokens from outside the wallet (minted straight at the
  mint with random outputs); :class:`Recipient` claims the wallet's tokens
  straight at the mint. Neither goes through the proxy.
- :class:`CrashWallet` ties a mint, a :class:`~tests.support.proxy.FaultProxy`
  and a data directory together; :meth:`CrashWallet.crash_at` runs a command,
  holds the request that matters at the proxy and kills the child before or
  after the mint processed it.
- :class:`InvoiceMint` hands out invoices to melt: mint quotes of a second mint
  whose quotes do not pay themselves (a long incoming delay).
- :func:`audit` checks the invariants after a restart. Its ground truth is the
  mint: what the proxy saw the mint accept (mints, swaps and their exact fees,
  ``inputs - outputs``; melts and their inputs), the mint's own word on every melt
  quote it answered (:class:`MeltQuotes`: paid or not, and the change it signed),
  what the test itself gave and claimed, and NUT-07 at the mint for every proof the
  wallet holds.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from coincurve import PrivateKey

from coco_actors.crypto.bdhke import secret_to_y
from coco_actors.crypto.keysets import fee_for
from coco_actors.crypto.nut11 import p2pk_secret
from coco_actors.crypto.outputs import make_outputs, random_outputs, unblind_signatures
from coco_actors.errors import CODE_PROOFS_SPENT, MintRejectedError
from coco_actors.mint_client import MintClient
from coco_actors.tokens import Token, decode, encode_v4, resolve_keyset_ids
from coco_actors.wire import Keyset, MeltQuote, MeltQuoteState, ProofStateKind, split_amount
from devtools.devmint import DevMint, FakeWalletConfig
from tests.support.proxy import Exchange, FaultProxy, Hold

CHILD = Path(__file__).with_name("crash_child.py")
#: Upper bound for one command of the child (a saga step may wait on the mint).
CALL_TIMEOUT = 60.0
#: Upper bound for a child to start and open its wallet (recovery included).
START_TIMEOUT = 60.0

SWAP = ("POST", "/v1/swap")
MINT = ("POST", "/v1/mint/bolt11")
CHECKSTATE = ("POST", "/v1/checkstate")
RESTORE = ("POST", "/v1/restore")
MELT = ("POST", "/v1/melt/bolt11")
#: Every melt quote status request (a hold's path may end with ``*``: a prefix).
MELT_QUOTE = ("GET", "/v1/melt/quote/bolt11/*")

#: A mint restarted with this fails the payments it had in flight (it asks its backend
#: about each when it starts, and the backend says FAILED), while new ones settle.
FAIL_PENDING = FakeWalletConfig(pay_invoice_state="SETTLED", payment_state="FAILED")

#: NUT error code the wallet must never provoke: it reused outputs the mint signed.
CODE_OUTPUTS_ALREADY_SIGNED = 11003
#: Operation states nothing may rest in once recovery ran with the mint reachable.
TRANSIENT = frozenset({"init", "executing", "rolling_back"})
#: How long an audit waits for the wallet to come to rest (the watcher at work).
AT_REST_TIMEOUT = 20.0


class ChildError(Exception):
    """The child answered a command with an error (``type``, ``code``, ``message``)."""

    def __init__(self, cmd: str, error: dict[str, Any]) -> None:
        super().__init__(f"{cmd}: {error['type']}: {error['message']}")
        self.cmd = cmd
        self.type: str = error["type"]
        self.code: int | None = error.get("code")
        self.error = error


class ChildDied(Exception):
    """The child ended before it answered."""


class Reply:
    """The answer to one command, once it comes."""

    def __init__(self, cmd: str, wake: threading.Event | None) -> None:
        self.cmd = cmd
        self.done = threading.Event()
        self._wake = wake
        self._msg: dict[str, Any] | None = None

    def _set(self, msg: dict[str, Any] | None) -> None:
        self._msg = msg
        self.done.set()
        if self._wake is not None:
            self._wake.set()

    def result(self, timeout: float = CALL_TIMEOUT) -> Any:
        if not self.done.wait(timeout):
            raise TimeoutError(f"no answer to {self.cmd} within {timeout:g} s")
        if self._msg is None:
            raise ChildDied(f"the wallet process ended before answering {self.cmd}")
        if not self._msg["ok"]:
            raise ChildError(self.cmd, self._msg["error"])
        return self._msg["result"]


class Standby:
    """A ``crash_child.py --standby`` process: its imports done, the wallet not opened.

    Started ahead of time so that a restart costs the wallet's open and recovery, not
    the interpreter's start; it touches neither the data directory nor the network
    until a :class:`WalletChild` takes it over.
    """

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 (closed by its user)
        self.proc = subprocess.Popen([sys.executable, str(CHILD), str(data_dir), "--standby"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1)

    def discard(self) -> None:
        self.proc.kill()
        self.proc.wait(30)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.log.close()


class WalletChild:
    """One ``crash_child.py`` process on ``data_dir``; its stderr goes to ``log_path``.

    It opens the wallet at once; ``standby`` (for the same data directory) is a
    process started ahead of time to use instead of a new one.
    """

    def __init__(self, data_dir: Path, log_path: Path, *, watcher: bool = False,
                 wake: threading.Event | None = None, standby: Standby | None = None) -> None:
        standby = standby or Standby(data_dir, log_path)
        self.data_dir = data_dir
        self.log_path = standby.log_path
        self._log: IO[bytes] = standby.log
        self.proc = standby.proc
        self._lock = threading.Lock()
        self._next_id = 1
        self._open = Reply("open", wake)
        self._replies: dict[int, Reply] = {0: self._open}
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name=f"crash-child-{self.proc.pid}")
        self._reader.start()
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):  # died already: the open's reply says so
            self.proc.stdin.write(json.dumps({"watcher": watcher}) + "\n")
            self.proc.stdin.flush()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def opened(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """Wait until the wallet is open (recovery done); its ``recovery`` summary and more."""
        result: dict[str, Any] = self._open.result(timeout)
        return result

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            with self._lock:
                reply = self._replies.pop(msg["id"], None)
            if reply is not None:
                reply._set(msg)
        with self._lock:
            left, self._replies = list(self._replies.values()), {}
        for reply in left:
            reply._set(None)

    def submit(self, cmd: str, *, wake: threading.Event | None = None, **args: Any) -> Reply:
        """Send a command without waiting; the child runs commands in order."""
        with self._lock:
            msg_id, self._next_id = self._next_id, self._next_id + 1
            reply = self._replies[msg_id] = Reply(cmd, wake)
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"id": msg_id, "cmd": cmd, "args": args}) + "\n")
            self.proc.stdin.flush()
        except OSError:
            with self._lock:
                self._replies.pop(msg_id, None)
            reply._set(None)
        return reply

    def call(self, cmd: str, timeout: float = CALL_TIMEOUT, **args: Any) -> Any:
        return self.submit(cmd, **args).result(timeout)

    def kill(self) -> None:
        """SIGKILL, the crash under test: no handler, no flush, no close runs in the child."""
        if self.alive:
            self.proc.kill()
        self._reap()

    def close(self, timeout: float = 15.0) -> None:
        """Close the wallet cleanly (``quit``); SIGKILL if it has not ended in ``timeout``."""
        deadline = time.monotonic() + timeout
        if self.alive:
            with contextlib.suppress(ChildDied, ChildError, TimeoutError):
                self.submit("quit").result(timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(max(0.1, deadline - time.monotonic()))
        self.kill()

    def _reap(self) -> None:
        self.proc.wait(30)
        self._reader.join(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._log.close()


# --- outside parties: the test's own protocol calls, straight to the mint --------------------


class MintPeer:
    """Raw protocol access to the real mint, bypassing the proxy."""

    def __init__(self, client: MintClient) -> None:
        self.client = client
        infos = client.get_keysets()
        self.ppk = {k.id: k.input_fee_ppk for k in infos}
        self.keyset: Keyset = next(k for k in client.get_keys() if k.active and k.unit == "sat")

    def states(self, ys: Iterable[str]) -> dict[str, ProofStateKind]:
        ys = list(ys)
        return {y: s.state for y, s in zip(ys, self.client.check_state(ys), strict=True)}


class Faucet(MintPeer):
    """Tokens from outside the wallet, naming ``token_mint`` (the proxy) as their mint."""

    def __init__(self, client: MintClient, token_mint: str) -> None:
        super().__init__(client)
        self.token_mint = token_mint
        self.given: dict[str, int] = {}   # Y -> amount of every proof handed out

    def token(self, amount: int, lock: str | None = None) -> str:
        """A token of ``amount``; with ``lock`` (a public key) every proof is P2PK-locked
        to it (NUT-11, each with its own nonce)."""
        quote = self.client.create_mint_quote(amount)
        amounts = split_amount(amount)
        outputs = (random_outputs(amounts, self.keyset.id) if lock is None else make_outputs(
            amounts, self.keyset.id,
            [(p2pk_secret([lock]), PrivateKey().secret.hex()) for _ in amounts]))
        sigs = self.client.mint(quote.quote, [o.blinded for o in outputs])
        proofs = unblind_signatures(outputs, sigs, self.keyset)
        self.given.update({secret_to_y(p.secret): p.amount for p in proofs})
        return encode_v4(Token(mint=self.token_mint, proofs=tuple(proofs)))


class Recipient(MintPeer):
    """Claims the wallet's tokens with one swap each (random outputs, thrown away)."""

    def __init__(self, client: MintClient) -> None:
        super().__init__(client)
        self.claimed: dict[str, int] = {}  # Y -> amount of every wallet proof claimed

    def claim(self, token: str) -> bool:
        """True once claimed; False when the mint says the proofs were spent already,
        or when the token is worth nothing after the mint's input fee (a 1-sat token at
        a fee-charging mint: nobody can claim it)."""
        t = resolve_keyset_ids(decode(token), list(self.ppk))
        value = t.amount - fee_for(self.ppk[p.keyset_id] for p in t.proofs)
        if value <= 0:
            return False
        outputs = random_outputs(split_amount(value), self.keyset.id)
        try:
            self.client.swap(list(t.proofs), [o.blinded for o in outputs])
        except MintRejectedError as exc:
            if exc.code == CODE_PROOFS_SPENT:
                return False
            raise
        self.claimed.update({secret_to_y(p.secret): p.amount for p in t.proofs})
        return True


class InvoiceMint:
    """Invoices to pay: mint quotes of another mint, whose own quotes must not pay
    themselves (start it with ``FakeWalletConfig(incoming_delay=600)``). The paying
    mint's FakeWallet pays any of them; nobody ever asks this mint about them."""

    def __init__(self, mint: DevMint) -> None:
        self.url = mint.url
        self._client = MintClient(mint.url)

    def invoice(self, amount: int) -> str:
        return self._client.create_mint_quote(amount).request

    def close(self) -> None:
        self._client.close()


class MeltQuotes:
    """The mint's word on melt quotes (``GET /v1/melt/quote/bolt11``, straight to the
    mint). A PAID quote never changes again, so its answer is kept; any other state
    is asked again each time."""

    def __init__(self, client: MintClient) -> None:
        self._client = client
        self._paid: dict[str, MeltQuote] = {}

    def get(self, quote_id: str) -> MeltQuote:
        known = self._paid.get(quote_id)
        if known is not None:
            return known
        quote = self._client.get_melt_quote(quote_id)
        if quote.state == MeltQuoteState.PAID:
            self._paid[quote_id] = quote
        return quote


@dataclass(frozen=True)
class MeltTruth:
    """What the mint did with one melt quote that it answered a melt request for."""

    state: MeltQuoteState
    amount: int
    input_ys: frozenset[str]
    change: int          # what the mint signed as NUT-08 change (0 unless PAID)
    ln_fee: int          # inputs - amount - input fee - change (0 unless PAID)


# --- the audit --------------------------------------------------------------------------------


@dataclass
class Audit:
    """One check of the invariants; ``discrepancy`` > 0 is value lost, < 0 value invented.

    minted + received == spendable + reserved + pending + fees + claimed + melted
    + ln_fees, where ``minted`` and ``fees`` (inputs minus outputs of every swap, and
    the input fee of every paid melt) are what the mint accepted through the proxy,
    ``melted`` and ``ln_fees`` the amount and the lightning fee (inputs - amount -
    input fee - change) of every melt the mint reports PAID, ``received`` the faucet
    proofs the wallet's swaps spent, ``claimed`` what the recipient took, and the
    holdings are proofs the mint confirms UNSPENT (or PENDING, for the inputs of a
    melt whose payment the mint reports in flight).
    """

    minted: int = 0
    received: int = 0
    fees: int = 0
    claimed: int = 0
    melted: int = 0
    ln_fees: int = 0
    spendable: int = 0
    reserved: int = 0
    pending: int = 0
    error_codes: Counter[tuple[str, int]] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)
    transferred: int = 0   # transfers: melted at their sources (already in ``melted``)
    arrived: int = 0       # transfers: issued at their destinations (already in ``minted``)

    @property
    def discrepancy(self) -> int:
        return (self.minted + self.received) - (self.spendable + self.reserved + self.pending
                                                + self.fees + self.claimed + self.melted
                                                + self.ln_fees)

    def summary(self) -> str:
        return (f"minted {self.minted} + received {self.received} = spendable {self.spendable}"
                f" + reserved {self.reserved} + pending {self.pending} + fees {self.fees}"
                f" + claimed {self.claimed} + melted {self.melted} + lightning fees"
                f" {self.ln_fees} (off by {self.discrepancy})"
                + (f"; transfers: {self.transferred} left, {self.arrived} arrived"
                   if self.transferred or self.arrived else ""))


def mint_flows(exchanges: Iterable[Exchange], given: dict[str, int], audit: Audit) -> None:
    """What the mint did for the wallet, from the proxy's record of every exchange."""
    quotes: set[str] = set()
    swaps: set[tuple[str, ...]] = set()
    for e in exchanges:
        code = e.error_code
        if code is not None:
            audit.error_codes[(f"{e.method} {e.path}", code)] += 1
        if (e.method, e.path) not in (MINT, SWAP):
            continue
        if e.forwarded and e.status is None:
            audit.violations.append(f"{e.method} {e.path} reached the mint with no answer")
        if e.status != 200:
            continue
        body = e.request_json()
        outs = sum(o["amount"] for o in body["outputs"])
        if (e.method, e.path) == MINT:
            if body["quote"] in quotes:
                audit.violations.append(f"quote {body['quote']} minted twice")
            quotes.add(body["quote"])
            audit.minted += outs
            continue
        key = tuple(sorted(p["secret"] for p in body["inputs"]))
        if key in swaps:
            continue  # a replayed answer (NUT-19): the mint did the work once
        swaps.add(key)
        ins = [(secret_to_y(p["secret"]), p["amount"]) for p in body["inputs"]]
        audit.fees += sum(a for _, a in ins) - outs
        audit.received += sum(a for y, a in ins if y in given)


def _ppk(ppk: dict[str, int], keyset_id: str) -> int:
    if keyset_id in ppk:
        return ppk[keyset_id]
    return next(v for k, v in ppk.items() if k.startswith(keyset_id))


def melt_flows(exchanges: Iterable[Exchange], given: dict[str, int], ppk: dict[str, int],
               quotes: MeltQuotes, audit: Audit) -> dict[str, MeltTruth]:
    """What the mint did with the wallet's melts: for every quote it answered a melt
    request for (HTTP 200: PAID or PENDING then), that request's inputs and what the
    mint reports of the quote now. Only a paid quote moves value: its amount, the
    input fee, and the lightning fee (what the inputs paid beyond amount, input fee
    and the change the mint signed)."""
    accepted: dict[str, Exchange] = {}
    for e in exchanges:
        if (e.method, e.path) != MELT:
            continue
        if e.forwarded and e.status is None:
            audit.violations.append(f"{e.method} {e.path} reached the mint with no answer")
        if e.status != 200:
            continue
        quote_id = e.request_json()["quote"]
        if quote_id in accepted:
            audit.violations.append(f"the mint accepted two melts of quote {quote_id}")
            continue
        accepted[quote_id] = e
    truths: dict[str, MeltTruth] = {}
    for quote_id, e in accepted.items():
        ins = [(secret_to_y(p["secret"]), p["amount"], p["id"])
               for p in e.request_json()["inputs"]]
        quote = quotes.get(quote_id)
        paid = quote.state == MeltQuoteState.PAID
        fee = fee_for(_ppk(ppk, k) for _, _, k in ins)
        change = sum(s.amount for s in quote.change) if paid else 0
        ln_fee = sum(a for _, a, _ in ins) - quote.amount - fee - change if paid else 0
        if paid:
            audit.melted += quote.amount
            audit.fees += fee
            audit.ln_fees += ln_fee
            audit.received += sum(a for y, a, _ in ins if y in given)
        truths[quote_id] = MeltTruth(quote.state, quote.amount, frozenset(y for y, _, _ in ins),
                                     change, ln_fee)
    return truths


def check_melt(o: dict[str, Any], truth: MeltTruth | None, bad: Callable[[str], None]) -> None:
    """A melt's record against the mint's word on its quote (``None``: the mint never
    answered a melt request for it, so nothing was paid)."""
    said = truth.state.value if truth is not None else "never melted"
    if o["state"] == "completed":
        if truth is None or truth.state != MeltQuoteState.PAID:
            bad(f"melt {o['id']} completed but its quote is {said} at the mint")
        elif (o["amount"], o["fee_paid"], o["change_amount"]) != (
                truth.amount, truth.ln_fee, truth.change):
            bad(f"melt {o['id']} records amount {o['amount']}, fee_paid {o['fee_paid']},"
                f" change {o['change_amount']}; the mint: amount {truth.amount}, lightning fee"
                f" {truth.ln_fee}, change {truth.change}")
        elif set(o["input_ys"]) != truth.input_ys:
            bad(f"melt {o['id']} spent other inputs than those the mint took")
    elif o["state"] == "rolled_back":
        if truth is not None and truth.state != MeltQuoteState.UNPAID:
            bad(f"melt {o['id']} rolled back but its quote is {said} at the mint")
    elif o["state"] == "pending":
        if truth is None or truth.state != MeltQuoteState.PENDING:
            bad(f"melt {o['id']} left pending but its quote is {said} at the mint")
        elif set(o["input_ys"]) != truth.input_ys:
            bad(f"melt {o['id']} holds other inputs than those the mint has in flight")
    elif o["state"] == "prepared" and truth is not None:
        bad(f"melt {o['id']} is prepared but its quote is {said} at the mint")


def _leg_undone(o: dict[str, Any], ops: dict[str, dict[str, Any]]) -> bool:
    """A mint leg ended by its transfer, which rolled back (its melt did not pay)."""
    parent = ops.get(o.get("parent_id") or "")
    return parent is not None and parent["state"] == "rolled_back"


def audit(state: dict[str, Any], exchanges: list[Exchange], faucet: Faucet,
          recipient: Recipient, mint_url: str, quotes: MeltQuotes,
          others: frozenset[str] = frozenset()) -> Audit:
    """Check every invariant on a wallet at rest (after a restart, mint reachable).

    ``others``: the URLs of the wallet's other mints, whose proofs and operations are
    left to their own audit (:func:`audit_mints`)."""
    a = Audit()
    bad = a.violations.append
    mint_flows(exchanges, faucet.given, a)
    truths = melt_flows(exchanges, faucet.given, recipient.ppk, quotes, a)
    for (endpoint, code), n in a.error_codes.items():
        if code == CODE_OUTPUTS_ALREADY_SIGNED:
            bad(f"the mint answered {endpoint} with 11003 (outputs already signed) {n}x")

    ops = {o["id"]: o for o in state["ops"]}
    open_ops = {o["id"]: o for o in state["open_ops"]}
    for o in ops.values():
        a.states[f"{o['type']}:{o['state']}"] += 1
        if o["state"] in TRANSIENT:
            bad(f"{o['type']} {o['id']} left {o['state']} after recovery")
        if o["type"] == "receive" and o["state"] == "prepared":
            bad(f"receive {o['id']} left prepared after recovery")
        if o["type"] == "mint" and o["state"] == "rolled_back" and not _leg_undone(o, ops):
            bad(f"mint {o['id']} rolled back: {o['error']}")
        if o["type"] == "melt" and o["mint_url"] not in others:
            check_melt(o, truths.get(o["quote_id"]), bad)
    for op_id in open_ops.keys() - ops.keys():
        bad(f"open operation {op_id} has no history entry")

    # holdings: one record per proof, each reservation held by a live send
    held: dict[str, dict[str, Any]] = {}
    for r in state["proofs"]:
        if r["mint"] != mint_url:
            if r["mint"] in others:
                continue
            bad(f"proof {r['Y'][:12]} of unexpected mint {r['mint']}")
        held[r["Y"]] = r
        owner = open_ops.get(r["op"]) if r["op"] else None
        if r["status"] == "ready":
            a.spendable += r["amount"]
            if r["op"] is not None:
                bad(f"spendable proof {r['Y'][:12]} names operation {r['op']}")
        else:
            a.reserved += r["amount"]
            if owner is None:
                bad(f"proof {r['Y'][:12]} reserved by {r['op']}, which is not open")
            elif r["Y"] not in owner["input_ys"]:
                bad(f"proof {r['Y'][:12]} reserved by {r['op']}, not one of its inputs")
    reservations: dict[str, str] = {}
    in_tokens: dict[str, str] = {}
    in_flight: set[str] = set()   # inputs of melts whose payment the mint has in flight
    for o in open_ops.values():
        if o["mint_url"] in others:
            continue
        if o["type"] == "melt":
            truth = truths.get(o["quote_id"])
            if truth is not None and truth.state == MeltQuoteState.PENDING:
                in_flight.update(o["input_ys"])
        if o["type"] not in ("send", "melt"):
            continue
        if o["state"] in ("prepared", "executing") or o["type"] == "melt":
            for y in o["input_ys"]:
                if y in reservations:
                    bad(f"proof {y[:12]} in two reservations: {reservations[y]} and {o['id']}")
                reservations[y] = o["id"]
                rec = held.get(y)
                if rec is None or rec["op"] != o["id"]:
                    bad(f"input {y[:12]} of {o['state']} {o['type']} {o['id']} is not"
                        " reserved by it")
        if o["state"] in ("pending", "rolling_back"):
            for y in o["send_ys"]:
                if y in in_tokens or y in held:
                    bad(f"proof {y[:12]} of send {o['id']} is also held elsewhere")
                in_tokens[y] = o["id"]

    # ground truth: NUT-07 at the mint
    amounts = dict(zip((y for o in open_ops.values() for y in o["send_ys"]),
                       (v for o in open_ops.values() for v in o["send_amounts"]), strict=True))
    states = recipient.states(list(held) + list(in_tokens))
    for y, rec in held.items():
        if states[y] == ProofStateKind.PENDING and y in in_flight:
            continue  # a pending melt's input, while the mint's payment is in flight
        if states[y] != ProofStateKind.UNSPENT:
            bad(f"held proof {y[:12]} ({rec['amount']}) is {states[y].value} at the mint")
    for y, op_id in in_tokens.items():
        if states[y] == ProofStateKind.UNSPENT:
            a.pending += amounts[y]
        elif states[y] != ProofStateKind.SPENT or y not in recipient.claimed:
            bad(f"proof {y[:12]} of pending send {op_id} is {states[y].value}, not claimed")
    a.claimed = sum(recipient.claimed.values())

    balance = state["balance"].get(mint_url, {"spendable": 0, "reserved": 0, "pending": 0})
    wallet_pending = sum(v for o in open_ops.values() if o["state"] in ("pending", "rolling_back")
                         and o["mint_url"] not in others for v in o["send_amounts"])
    if (balance["spendable"], balance["reserved"]) != (a.spendable, a.reserved):
        bad(f"balance {balance} disagrees with the proof records")
    if balance["pending"] != wallet_pending:
        bad(f"balance pending {balance['pending']} != value in pending sends {wallet_pending}")
    if a.discrepancy:
        bad(f"value not conserved: {a.summary()}")
    return a


# --- transfers: the books of two mints, and what crossed between them -------------------------


@dataclass(frozen=True)
class MintBooks:
    """One mint's side of an audit: the proxy's record, the test's own parties there."""

    url: str
    exchanges: list[Exchange]
    faucet: Faucet
    recipient: Recipient
    quotes: MeltQuotes


def minted_quotes(exchanges: Iterable[Exchange]) -> dict[str, int]:
    """Quote id -> what the mint issued for it (its first accepted mint request)."""
    minted: dict[str, int] = {}
    for e in exchanges:
        if (e.method, e.path) == MINT and e.status == 200:
            body = e.request_json()
            minted.setdefault(body["quote"], sum(o["amount"] for o in body["outputs"]))
    return minted


def audit_mints(state: dict[str, Any], books: list[MintBooks]) -> Audit:
    """Every invariant at each mint (:func:`audit`, the others' records left to theirs),
    summed; then every transfer between them (:func:`check_transfers`)."""
    urls = frozenset(b.url for b in books)
    total = Audit()
    truths: dict[str, dict[str, MeltTruth]] = {}
    for b in books:
        one = audit(state, b.exchanges, b.faucet, b.recipient, b.url, b.quotes,
                    others=urls - {b.url})
        for name in ("minted", "received", "fees", "claimed", "melted", "ln_fees",
                     "spendable", "reserved", "pending"):
            setattr(total, name, getattr(total, name) + getattr(one, name))
        total.error_codes.update(one.error_codes)
        total.states = one.states  # every mint's audit counts every operation
        total.violations.extend(v for v in one.violations if v not in total.violations)
        truths[b.url] = melt_flows(b.exchanges, b.faucet.given, b.recipient.ppk, b.quotes,
                                   Audit())
    minted = {b.url: minted_quotes(b.exchanges) for b in books}
    check_transfers(state, truths, minted, total)
    return total


def check_transfers(state: dict[str, Any], truths: dict[str, dict[str, MeltTruth]],
                    minted: dict[str, dict[str, int]], a: Audit) -> None:
    """Each transfer against its legs and both mints' word: what left the source (its
    melt PAID there) arrived at the destination (the mint leg's quote issued there,
    exactly ``amount``), nothing arrived for a melt that did not pay, and the record
    agrees with its legs (completed: both legs completed, ``received`` = amount, the
    melt's fees; rolled back: the melt rolled back; pending: the payment in flight)."""
    bad = a.violations.append
    ops = {o["id"]: o for o in state["ops"]}
    for t in (o for o in ops.values() if o["type"] == "transfer"):
        melt, leg = ops.get(t["melt_id"] or ""), ops.get(t["mint_leg_id"] or "")
        if melt is None or leg is None:
            bad(f"transfer {t['id']} ({t['state']}) has lost a leg")
            continue
        if (melt.get("parent_id"), leg.get("parent_id")) != (t["id"], t["id"]) or (
                melt["mint_url"], leg["mint_url"]) != (t["mint_url"], t["to_mint_url"]):
            bad(f"transfer {t['id']}: its legs do not name it, or sit at other mints")
            continue
        truth = truths.get(t["mint_url"], {}).get(melt["quote_id"])
        paid = truth is not None and truth.state == MeltQuoteState.PAID
        in_flight = truth is not None and truth.state == MeltQuoteState.PENDING
        arrived = minted.get(t["to_mint_url"], {}).get(leg["quote_id"], 0)
        if truth is not None and paid:
            a.transferred += truth.amount
        a.arrived += arrived
        word = truth.state.value if truth is not None else "never melted"
        said = (f"transfer {t['id']} is {t['state']} (melt {melt['state']}, mint leg"
                f" {leg['state']}; the source says {word}, {arrived} issued at the destination)")
        if arrived and not paid:
            bad(f"{said}: redeemed before its melt was paid")
        if paid and arrived != t["amount"]:
            bad(f"{said}: the melt paid {t['amount']}, the destination issued {arrived}")
        if t["state"] == "completed":
            if (melt["state"], leg["state"]) != ("completed", "completed") or not paid:
                bad(f"{said}: completed without both legs")
            elif (t["received"], leg["amount"]) != (t["amount"], t["amount"]) or (
                    t["fee"], t["fee_paid"]) != (melt["fee"], melt["fee_paid"]):
                bad(f"{said}: records received {t['received']}, fee {t['fee']}, fee_paid"
                    f" {t['fee_paid']}; its legs: {leg['amount']}, {melt['fee']},"
                    f" {melt['fee_paid']}")
        elif t["state"] == "rolled_back":
            if melt["state"] != "rolled_back" or leg["state"] == "completed" or t["received"]:
                bad(f"{said}: rolled back, yet its legs did not")
        elif t["state"] == "pending":
            if paid:
                bad(f"{said}: its melt paid and its redeem was left unresolved")
            elif melt["state"] != "pending" or not in_flight:
                bad(f"{said}: pending, yet its payment is not in flight")
        elif t["state"] == "prepared" and (
                (melt["state"], leg["state"]) != ("prepared", "prepared") or truth is not None):
            bad(f"{said}: prepared, yet its legs moved")
    if a.transferred != a.arrived:
        bad(f"transfers took {a.transferred} from their sources, {a.arrived} arrived")


# --- the harness ------------------------------------------------------------------------------


class CrashWallet:
    """A wallet process on one data directory, behind a fault proxy to ``mint``.

    The wallet knows the mint by the proxy's URL (its tokens name it). The test
    talks to the mint directly for NUT-07 checks, the faucet and the recipient.
    """

    def __init__(self, mint: DevMint, workdir: Path, *, watcher: bool = False) -> None:
        self.mint = mint
        self.workdir = workdir
        self.watcher = watcher
        self.data_dir = workdir / "wallet"
        self.proxy = FaultProxy(mint.url)
        self.url = self.proxy.url
        self._client = MintClient(mint.url)
        self.faucet = Faucet(self._client, token_mint=self.url)
        self.recipient = Recipient(self._client)
        self.quotes = MeltQuotes(self._client)
        self.ppk = mint.input_fee_ppk
        self.children: list[WalletChild] = []
        self.child: WalletChild | None = None
        self._standby: Standby | None = None
        self.recoveries: list[dict[str, int]] = []

    # --- the process --------------------------------------------------------------------

    def start(self, *, watcher: bool | None = None) -> dict[str, Any]:
        """Start a wallet process on the data directory; returns its open report."""
        opened = self._spawn(watcher=watcher).opened()
        self.recoveries.append(opened["recovery"])
        return opened

    def _spawn(self, *, watcher: bool | None = None,
               wake: threading.Event | None = None) -> WalletChild:
        if self.child is not None and self.child.alive:
            raise RuntimeError("the previous wallet process is still running")
        n = len(self.children)
        standby, self._standby = self._standby, None
        self.child = WalletChild(self.data_dir, self._log_path(n),
                                 watcher=self.watcher if watcher is None else watcher,
                                 wake=wake, standby=standby)
        self.children.append(self.child)
        self._standby = Standby(self.data_dir, self._log_path(n + 1))  # for the next start
        return self.child

    def _log_path(self, n: int) -> Path:
        return self.workdir / f"child-{n:04d}.log"

    def crash(self) -> None:
        """SIGKILL the wallet. A request it had sent that is not held at the proxy still
        reaches the mint; wait for its answer, so that the next wallet's recovery does
        not race a request from a dead one (a different failure: a delayed network)."""
        assert self.child is not None
        self.child.kill()
        if not all(p.wait_settled() for p in self._proxies()):
            raise TimeoutError("a request of the killed wallet never got its answer")

    def _proxies(self) -> tuple[FaultProxy, ...]:
        """The proxies in front of every mint this wallet talks to."""
        return (self.proxy,)

    def restart(self, **kwargs: Any) -> dict[str, int]:
        """SIGKILL the wallet if it still runs; start a new one (recovery runs); its summary."""
        if self.child is not None and self.child.alive:
            self.crash()
        summary: dict[str, int] = self.start(**kwargs)["recovery"]
        return summary

    def call(self, cmd: str, timeout: float = CALL_TIMEOUT, **args: Any) -> Any:
        assert self.child is not None
        return self.child.call(cmd, timeout, **args)

    def submit(self, cmd: str, *, wake: threading.Event | None = None, **args: Any) -> Reply:
        assert self.child is not None
        return self.child.submit(cmd, wake=wake, **args)

    def close(self) -> None:
        for child in self.children:
            child.close() if child is self.child else child.kill()
        if self._standby is not None:
            self._standby.discard()
            self._standby = None
        self.proxy.stop()
        self._client.close()

    # --- crash points -------------------------------------------------------------------

    def crash_at(self, endpoint: tuple[str, str], cmd: str, *, after: bool, nth: int = 1,
                 timeout: float = CALL_TIMEOUT, proxy: FaultProxy | None = None,
                 **args: Any) -> Hold | Reply:
        """Run ``cmd`` and SIGKILL the wallet at the ``nth`` request to ``endpoint``.

        ``after=False``: while the request is held at the proxy, before it left
        (the wallet committed its state, the mint saw nothing). ``after=True``:
        once the mint has processed it and answered, before the answer is passed
        back (the mint did the work, the wallet never stored the result).
        Returns the hold when the crash happened; if ``cmd`` finished without
        making that request, returns its reply and the wallet keeps running.
        ``proxy``: the one in front of another mint of the wallet (default: its own).
        """
        proxy = proxy or self.proxy
        wake = threading.Event()
        hold = proxy.hold(*endpoint, nth=nth, wake=wake)
        reply = self.submit(cmd, wake=wake, **args)
        return hold if self._strike(hold, wake, after=after, timeout=timeout,
                                    proxy=proxy) else reply

    def crash_in_recovery(self, endpoint: tuple[str, str], *, after: bool, nth: int = 1,
                          timeout: float = START_TIMEOUT,
                          proxy: FaultProxy | None = None) -> bool:
        """Restart, and SIGKILL the new wallet at the ``nth`` request to ``endpoint``
        made while it opens (recovery). False if it opened without that request
        (it then keeps running)."""
        if self.child is not None and self.child.alive:
            self.crash()
        proxy = proxy or self.proxy
        wake = threading.Event()
        hold = proxy.hold(*endpoint, nth=nth, wake=wake)
        child = self._spawn(wake=wake)
        if self._strike(hold, wake, after=after, timeout=timeout, proxy=proxy):
            return True
        self.recoveries.append(child.opened()["recovery"])
        return False

    def _strike(self, hold: Hold, wake: threading.Event, *, after: bool,
                timeout: float, proxy: FaultProxy | None = None) -> bool:
        """Wait for the held request or the end of what the wallet was doing; on the
        request, SIGKILL the wallet before (or after) the mint processes it. False
        when the wallet finished without that request (the hold is withdrawn)."""
        if not wake.wait(timeout):
            raise TimeoutError(f"neither {hold.method} {hold.path} nor an answer came")
        if not hold.arrived.is_set():
            if (proxy or self.proxy).remove(hold):
                return False
            hold.wait(timeout)  # it fired meanwhile
        if after:
            hold.forward()
        self.crash()
        hold.drop()
        return True

    # --- what is true now ---------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("state")
        return result

    def op(self, op_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("op", op_id=op_id)
        return result

    def balance(self) -> tuple[int, int, int]:
        """(spendable, reserved, pending) at the mint, as the wallet reports it."""
        b = self.call("balance").get(self.url, {"spendable": 0, "reserved": 0, "pending": 0})
        return b["spendable"], b["reserved"], b["pending"]

    def audit(self, timeout: float = AT_REST_TIMEOUT) -> Audit:
        """Check the invariants once the wallet is at rest (:meth:`_at_rest`). A wallet
        that does not come to rest within ``timeout`` s is audited as it then is, and
        the first violation says so and names what it was still doing."""
        state, [exchanges], restless = self._at_rest(timeout)
        a = audit(state, exchanges, self.faucet, self.recipient, self.url, self.quotes)
        if restless is not None:
            a.violations.insert(0, restless)
        return a

    def _at_rest(self, timeout: float
                 ) -> tuple[dict[str, Any], list[list[Exchange]], str | None]:
        """The wallet's state and each proxy's record (:meth:`_proxies`, in order), taken
        together while the wallet is at rest: a stable snapshot (the child's ``state``),
        no request to a mint
        recorded while it was taken, none unanswered, no operation ``init``,
        ``executing`` or ``rolling_back``. The watcher acts on its own time (it
        redeems a paid quote that recovery left prepared): a snapshot between its
        request and its commit would count minted value the wallet has not stored yet.

        While an operation is busy the child waits for the wallet's next commits
        (``quiet``), then the snapshot is taken again; all within ``timeout`` s. The
        third item is None at rest, else why not (the last snapshot comes with it).
        """
        deadline = time.monotonic() + timeout
        proxies = self._proxies()
        while True:
            self._settled()
            before = sum(len(p.seen()) for p in proxies)
            state = self.state()
            self._settled()
            exchanges = [p.seen() for p in proxies]
            busy = [f"{o['type']} {o['id']} {o['state']}"
                    for o in {o["id"]: o for o in [*state["ops"], *state["open_ops"]]
                              if o["state"] in TRANSIENT}.values()]
            requests = sum(len(e) for e in exchanges) - before
            if not busy and not requests and state["stable"]:
                return state, exchanges, None
            left = deadline - time.monotonic()
            if left <= 0:
                why = ", ".join([*busy, *([f"{requests} requests during the snapshot"]
                                          if requests else []),
                                 *([] if state["stable"] else ["its records kept moving"])])
                return state, exchanges, (f"the wallet did not come to rest within"
                                          f" {timeout:g} s: {why}")
            if busy:
                self.call("quiet", within=left)
            # else: a request or a commit came during the snapshot: take it again

    def _settled(self) -> None:
        if not all(p.wait_settled() for p in self._proxies()):
            raise TimeoutError("a request to a mint never got its answer")

    def assert_sound(self) -> Audit:
        """Every invariant holds, to the sat."""
        a = self.audit()
        assert not a.violations, "\n".join([a.summary(), *a.violations])
        return a

    def fee(self, n_inputs: int) -> int:
        return fee_for([self.ppk] * n_inputs)


class InProcessWallet:
    """A funded in-process wallet behind a fault proxy, with the test's own line to the
    mint (a faucet that makes tokens, a recipient that claims them)."""

    def __init__(self, mint: DevMint, data_dir: Path, fund: int = 1000) -> None:
        from coco_actors import Coco  # the child process imports it itself
        from tests.support.crash_child import Commands

        self._commands = Commands
        self.mint = mint
        self.proxy = FaultProxy(mint.url)
        self.url = self.proxy.url
        self.client = MintClient(mint.url)
        self.faucet = Faucet(self.client, token_mint=self.url)
        self.recipient = Recipient(self.client)
        self.quotes = MeltQuotes(self.client)
        self.coco = Coco.open(data_dir, watcher=False)
        self.coco.mints.add(self.url)
        quote = self.coco.mint.create_quote(self.url, fund)
        assert self.coco.mint.redeem(quote.id, timeout=10).state == "completed"

    def audit(self) -> Audit:
        return audit(self._commands(self.coco).state(), self.proxy.seen(), self.faucet,
                     self.recipient, self.url, self.quotes)

    def close(self) -> None:
        self.coco.close()
        self.proxy.stop()


class OtherMint:
    """A second mint of a :class:`TransferWallet`, behind a proxy of its own, with the
    test's own line to it (NUT-07, melt quotes, nobody's faucet)."""

    def __init__(self, mint: DevMint) -> None:
        self.mint = mint
        self.proxy = FaultProxy(mint.url)
        self.url = self.proxy.url
        self.client = MintClient(mint.url)
        self.faucet = Faucet(self.client, token_mint=self.url)
        self.recipient = Recipient(self.client)
        self.quotes = MeltQuotes(self.client)
        self.ppk = mint.input_fee_ppk

    def close(self) -> None:
        self.proxy.stop()
        self.client.close()


class TransferWallet(CrashWallet):
    """A :class:`CrashWallet` that also trusts ``other`` (through its own proxy), for
    transfers between the two; its audit is :func:`audit_mints` over both."""

    def __init__(self, mint: DevMint, other: DevMint, workdir: Path, *,
                 watcher: bool = False) -> None:
        super().__init__(mint, workdir, watcher=watcher)
        self.other = OtherMint(other)

    def _proxies(self) -> tuple[FaultProxy, ...]:
        return (self.proxy, self.other.proxy)

    def balance_at(self, url: str) -> tuple[int, int, int]:
        """(spendable, reserved, pending) at ``url``, as the wallet reports it."""
        b = self.call("balance").get(url, {"spendable": 0, "reserved": 0, "pending": 0})
        return b["spendable"], b["reserved"], b["pending"]

    def audit(self, timeout: float = AT_REST_TIMEOUT) -> Audit:
        """:func:`audit_mints` over both mints, once the wallet is at rest at both (a
        transfer's legs act on their own time: a melt's notice makes its transfer
        redeem at the other mint)."""
        state, [seen, seen_other], restless = self._at_rest(timeout)
        a = audit_mints(state, [
            MintBooks(self.url, seen, self.faucet, self.recipient, self.quotes),
            MintBooks(self.other.url, seen_other, self.other.faucet, self.other.recipient,
                      self.other.quotes)])
        if restless is not None:
            a.violations.insert(0, restless)
        return a

    def close(self) -> None:
        super().close()
        self.other.close()
