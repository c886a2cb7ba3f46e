"""A real mint's rate limiter: 429s are waited out and sent again, never compensated.

Nutshell exempts 127.0.0.1 from its limiter, so the wallet talks to it through the fault
proxy posing as a reverse proxy (``X-Forwarded-For``; funding goes without it, exempt).
The limiter's window is elastic (every request within 60 s of the last extends it), so
a ``Retry-After`` of 61 s is what lets a limited client in again: one such pause per test.
Balances are checked to the sat after every step, with input fees 0 and 100 ppk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from coco_actors import Coco, RateLimitedError
from coco_actors.pacing import PACERS, PacingConfig
from devtools.devmint import DevMint
from devtools.invoices import make_invoice
from tests.support.proxy import Exchange, FaultProxy

from .helpers import WalletFactory, balance_of, fee_of, fund

#: One address the mint's limiter counts (TEST-NET-3), and a fresh one for "later".
CLIENT_IP = "203.0.113.7"
LATER_IP = "203.0.113.8"
#: Past the elastic 60 s window: the first retry after it gets in.
RETRY_AFTER = 61
SWAP = ("POST", "/v1/swap")
#: Swaps a minute the mint allows in the 50-sends test: fewer than the ~30 swaps the
#: sends need (the others spend exact proofs), more than half, so one pause does it.
PER_MINUTE = 20


@pytest.fixture
def default_pacing() -> Iterator[None]:
    """The process's pacing is put back as it was (a test configures its own)."""
    before = PACERS.config
    yield
    PACERS.configure(before)


@pytest.fixture
def limited(make_mint: Callable[..., DevMint], tmp_path: Path
            ) -> Iterator[Callable[[int, int], tuple[DevMint, FaultProxy]]]:
    """``limited(ppk, per_minute)``: a mint whose transaction endpoints take
    ``per_minute`` requests a minute from one address, behind a proxy that stamps
    ``X-Forwarded-For`` once ``proxy.forwarded_for`` is set."""
    proxies: list[FaultProxy] = []

    def make(ppk: int, per_minute: int) -> tuple[DevMint, FaultProxy]:
        mint = make_mint(input_fee_ppk=ppk, extra_env={
            "MINT_RATE_LIMIT": "TRUE",
            "MINT_RATE_LIMIT_PROXY_TRUST": "TRUE",
            "MINT_TRANSACTION_RATE_LIMIT_PER_MINUTE": str(per_minute),
            "MINT_GLOBAL_RATE_LIMIT_PER_MINUTE": "100000",
        }).start()
        proxies.append(FaultProxy(mint.url))
        return mint, proxies[-1]

    yield make
    for proxy in proxies:
        proxy.stop()


def no_retry_before_retry_after(exchanges: list[Exchange], pause: float) -> int:
    """How many 429s the proxy relayed; each must be followed by nothing sooner than
    ``pause`` seconds (every request of the wallet, not only the one retried)."""
    limited = 0
    for i, ex in enumerate(exchanges):
        if ex.status != 429:
            continue
        limited += 1
        if i + 1 < len(exchanges):
            gap = exchanges[i + 1].at - ex.at
            assert gap >= pause, f"request {i + 1} came {gap:.2f} s after a 429"
    return limited


@pytest.mark.parametrize("ppk", [0, 100])
def test_fifty_sends_ride_out_the_mint_limit(
        ppk: int, limited: Callable[[int, int], tuple[DevMint, FaultProxy]],
        wallet: WalletFactory, default_pacing: None) -> None:
    mint, proxy = limited(ppk, PER_MINUTE)
    url = proxy.url
    alice = wallet("alice", url)
    fund(alice, url, 2000)
    assert balance_of(alice, url) == (2000, 0, 0)
    proxy.forwarded_for, proxy.retry_after = CLIENT_IP, str(RETRY_AFTER)
    start = len(proxy.exchanges)

    spendable, pending = 2000, 0
    for n in range(50):
        amount = 3 + n % 5
        prepared = alice.send.prepare_send(url, amount)
        # a swap pays the inputs' fee; exact proofs go as they are (the receiver pays)
        assert prepared.fee == (fee_of(ppk, len(prepared.input_ys)) if prepared.needs_swap
                                else 0)
        assert balance_of(alice, url) == (spendable - prepared.input_amount,
                                          prepared.input_amount, pending)
        op, token = alice.send.execute_prepared_send(prepared.id)
        assert op.state == "pending" and token
        spendable -= amount + op.fee
        pending += amount
        assert balance_of(alice, url) == (spendable, 0, pending)

    seen = proxy.exchanges[start:]
    swaps = [e for e in seen if (e.method, e.path) == SWAP]
    assert len(swaps) > PER_MINUTE + 1  # the limit was reached...
    assert no_retry_before_retry_after(seen, RETRY_AFTER) >= 1  # ...and waited out
    assert sum(1 for e in swaps if e.status == 200) == sum(
        1 for op in alice.send.get_pending_operations() if op.needs_swap)


@pytest.mark.parametrize(("ppk", "key"), [(0, None), (100, "execute-once")])
def test_past_the_bound_rate_limited_and_the_send_resumes(
        ppk: int, key: str | None, limited: Callable[[int, int], tuple[DevMint, FaultProxy]],
        wallet: WalletFactory, default_pacing: None) -> None:
    mint, proxy = limited(ppk, 2)
    url = proxy.url
    # Nutshell's own 429, without a Retry-After: capped backoff, given up after 3 s
    alice = wallet("alice", url, pacing=PacingConfig(max_wait=3.0, backoff_base=0.25,
                                                     backoff_cap=1.0))
    fund(alice, url, 1000)
    proxy.forwarded_for = CLIENT_IP
    spendable = 1000
    for _ in range(2):  # the two swaps a minute the mint allows
        op, _token = alice.send.execute_prepared_send(alice.send.prepare_send(url, 5).id)
        spendable -= 5 + op.fee
    assert balance_of(alice, url) == (spendable, 0, 10)

    prepared = alice.send.prepare_send(url, 7)
    held = prepared.input_amount
    start = len(proxy.exchanges)
    with pytest.raises(RateLimitedError) as info:
        alice.send.execute_prepared_send(prepared.id, idempotency_key=key)
    assert info.value.endpoint == "POST /v1/swap"
    assert info.value.retry_after is None  # Nutshell gives none
    assert 0 < info.value.waited <= 3.0
    tries = [e for e in proxy.exchanges[start:] if (e.method, e.path) == SWAP]
    assert len(tries) >= 3 and all(e.status == 429 for e in tries)
    gaps = [b.at - a.at for a, b in zip(tries, tries[1:], strict=False)]
    assert all(g >= 0.125 for g in gaps), gaps  # backoff's lower half, never at once
    # nothing compensated: the send is prepared as before, its inputs still reserved
    got = alice.send.get_operation(prepared.id)
    assert got is not None and got.state == "prepared"
    assert balance_of(alice, url) == (spendable - held, held, 10)

    proxy.forwarded_for = LATER_IP  # the limit lifted (a new window)
    # executed again (with the key: its repeat executes what the 429 left prepared)
    op, token = alice.send.execute_prepared_send(prepared.id, idempotency_key=key)
    assert op.state == "pending" and token
    assert op.fee == prepared.fee == fee_of(ppk, len(prepared.input_ys))
    assert balance_of(alice, url) == (spendable - 7 - op.fee, 0, 17)
    ok = [e for e in proxy.exchanges[start:] if (e.method, e.path) == SWAP and e.status == 200]
    assert len(ok) == 1  # the very swap that was limited, sent once more
    assert ok[0].request == tries[0].request
    if key is not None:  # and a further repeat only replays it
        assert alice.send.execute_prepared_send(prepared.id, idempotency_key=key) == (op, token)
        assert balance_of(alice, url) == (spendable - 7 - op.fee, 0, 17)


@pytest.mark.parametrize(("ppk", "swap"), [(0, False), (100, True), (0, True), (100, False)])
def test_a_limited_melt_is_prepared_again_then_pays(
        ppk: int, swap: bool, limited: Callable[[int, int], tuple[DevMint, FaultProxy]],
        wallet: WalletFactory, default_pacing: None) -> None:
    """A 429 on the melt's swap, or on the melt itself: nothing paid, nothing released,
    the melt prepared as before; executed again, it pays once. (Nutshell counts each
    endpoint on its own: a first melt uses up the minute's one swap and one melt.)"""
    mint, proxy = limited(ppk, 1)
    url = proxy.url
    alice = wallet("alice", url, pacing=PacingConfig(max_wait=2.0, backoff_base=0.25,
                                                     backoff_cap=1.0))
    fund(alice, url, 1000)
    first = alice.melt.prepare_melt(url, make_invoice(100), swap=swap)
    prepared = alice.melt.prepare_melt(url, make_invoice(100), swap=swap)
    assert prepared.needs_swap is first.needs_swap is swap
    proxy.forwarded_for = CLIENT_IP
    done = alice.melt.execute_prepared_melt(first.id, timeout=30)
    assert done.state == "completed"
    spendable = 1000 - 100 - done.fee - done.fee_paid
    held = prepared.input_amount
    assert balance_of(alice, url) == (spendable - held, held, 0)
    start = len(proxy.exchanges)

    with pytest.raises(RateLimitedError) as info:
        alice.melt.execute_prepared_melt(prepared.id, timeout=30)
    assert info.value.endpoint == ("POST /v1/swap" if swap else "POST /v1/melt/bolt11")
    got = alice.melt.get_operation(prepared.id)
    assert got is not None and got.state == "prepared"
    assert (got.fee, got.input_ys, got.input_amount) == (prepared.fee, prepared.input_ys, held)
    assert balance_of(alice, url) == (spendable - held, held, 0)
    assert all(e.status == 429 for e in proxy.exchanges[start:] if e.method == "POST")

    proxy.forwarded_for = LATER_IP
    op = alice.melt.execute_prepared_melt(prepared.id, timeout=30)
    assert op.state == "completed"
    assert balance_of(alice, url) == (spendable - 100 - op.fee - op.fee_paid, 0, 0)
    paid = [e for e in proxy.exchanges[start:]
            if (e.method, e.path) == ("POST", "/v1/melt/bolt11") and e.status == 200]
    assert len(paid) == 1


def test_the_daemon_flag_pacing_reaches_every_client(tmp_path: Path,
                                                     default_pacing: None) -> None:
    """``Coco.open(pacing=...)`` configures the one registry every MintClient uses."""
    config = PacingConfig(rate=2.0, burst=3, max_wait=9.0)
    Coco.open(tmp_path / "w", watcher=False, pacing=config).close()
    assert PACERS.config == config
    assert PACERS.for_url("https://mint.example.com").config == config
