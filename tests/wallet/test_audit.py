"""The solvency report (``coco.audit``) against a real mint, with and without input fees:
a healthy wallet has no difference, proofs spent behind its back are reported exactly
(and removed only with ``fix``), a claimed pending send is not a difference, and a
mint that cannot be reached is reported with nothing changed."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from coco_actors import Coco
from coco_actors.audit import AuditReport, ClaimState, DifferenceKind, MintAudit
from coco_actors.errors import InvalidInputError, NotFoundError
from coco_actors.mint_client import MintClient, normalize_mint_url
from coco_actors.records import ProofRecord, ProofStatus
from coco_actors.tokens import Token, decode, encode_v4
from devtools.devmint import PENDING, DevMint
from devtools.invoices import make_invoice
from tests.support.crash_driver import Recipient
from tests.support.proxy import FaultProxy

from .helpers import WalletFactory, balance_of, fund, snapshot

TIMEOUT = 10.0


@pytest.fixture
def recipient(mint: DevMint) -> Iterator[Recipient]:
    """Somebody else at the mint: claims tokens straight there (raw swaps)."""
    client = MintClient(mint.url)
    yield Recipient(client)
    client.close()


def records(coco: Coco) -> list[ProofRecord]:
    return sorted(coco._ledger.all_proof_records().get(timeout=TIMEOUT), key=lambda r: r.Y)


def only(report: AuditReport) -> MintAudit:
    assert len(report.mints) == 1, report.mints
    return report.mints[0]


def spend_behind_its_back(coco: Coco, url: str, recipient: Recipient,
                          pick: Callable[[list[ProofRecord]], list[ProofRecord]]
                          ) -> list[ProofRecord]:
    """Copy some of the wallet's ready proofs into a token and claim it at the mint, as a
    second copy of the wallet would: the wallet itself does not know."""
    ready = sorted((r for r in records(coco) if r.status == ProofStatus.READY),
                   key=lambda r: r.amount)
    chosen = pick(ready)
    assert recipient.claim(encode_v4(Token(mint=url, proofs=tuple(r.proof for r in chosen))))
    return chosen


def test_a_healthy_wallet_has_no_difference(wallet: WalletFactory, mint: DevMint) -> None:
    url = normalize_mint_url(mint.url)
    alice, bob = wallet("alice", url), wallet("bob", url)
    fund(alice, url, 1000)
    fund(bob, url, 200)
    sent = alice.send.prepare_send(url, 100)
    sent, token = alice.send.execute_prepared_send(sent.id)             # a pending send
    gift = bob.send.prepare_send(url, 50)
    _, gift_token = bob.send.execute_prepared_send(gift.id)
    received = alice.receive(gift_token)                               # a completed receive
    assert received.state == "completed"
    held = alice.send.prepare_send(url, 30)                            # a reservation
    spendable, reserved, pending = balance_of(alice, url)
    assert reserved == held.input_amount
    assert spendable + reserved == 1000 - 100 - sent.fee + 50 - received.fee
    assert pending == decode(token).amount
    before = snapshot(alice)

    report = alice.audit()

    a = only(report)
    assert (report.difference_count, report.difference_amount, report.unreachable) == (0, 0, ())
    assert (a.mint_url, a.unit, a.reachable, a.error) == (url, "sat", True, None)
    assert a.differences == () and a.claimed_not_finalized == ()
    ready = [r for r in records(alice) if r.status == ProofStatus.READY]
    ours = [r for r in records(alice) if r.status == ProofStatus.RESERVED]
    assert (a.ready.count, a.ready.amount) == (len(ready), spendable)
    assert (a.ready.unspent.count, a.ready.unspent.amount) == (len(ready), spendable)
    assert (a.reserved.count, a.reserved.amount) == (len(ours), reserved)
    assert (a.reserved.unspent.count, a.reserved.unspent.amount) == (len(ours), reserved)
    n_sent = len(decode(token).proofs)
    assert (a.pending_send.count, a.pending_send.amount) == (n_sent, pending)
    assert (a.pending_send.unspent.count, a.pending_send.unspent.amount) == (n_sent, pending)
    for check in (a.ready, a.reserved, a.pending_send):
        assert (check.spent.count, check.pending.count) == (0, 0)
    assert a.wallet_amount == a.confirmed_amount == spendable + reserved
    assert (a.changed.count, a.changed.amount) == (0, 0)
    [r] = a.reservations
    assert (r.operation_id, r.kind, r.state, r.amount, r.proofs) == (
        held.id, "send", "prepared", held.input_amount, len(held.input_ys))
    assert r.age_s is not None and r.age_s >= 0
    [s] = a.pending_sends
    assert (s.operation_id, s.kind, s.state, s.amount, s.claim) == (
        sent.id, "send", "pending", 100, ClaimState.UNCLAIMED)
    assert a.pending_melts == ()
    assert snapshot(alice) == before                                   # nothing changed


def test_proofs_spent_behind_its_back_are_reported_and_fixed_only_when_asked(
        wallet: WalletFactory, mint: DevMint, recipient: Recipient) -> None:
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)                      # 512 + 256 + 128 + 64 + 32 + 8
    gone = spend_behind_its_back(alice, url, recipient, lambda ready: ready[:2])
    lost = sum(r.amount for r in gone)
    assert lost == 8 + 32
    before, stored = snapshot(alice), records(alice)

    report = alice.audit()

    a = only(report)
    assert (report.difference_count, report.difference_amount) == (2, lost)
    assert (a.difference_count, a.difference_amount) == (2, lost)
    assert {(d.kind, d.y, d.amount) for d in a.differences} == {
        (DifferenceKind.READY_SPENT, r.Y, r.amount) for r in gone}
    assert (a.ready.count, a.ready.amount) == (6, 1000)
    assert (a.ready.spent.count, a.ready.spent.amount) == (2, lost)
    assert (a.ready.unspent.count, a.ready.unspent.amount) == (4, 1000 - lost)
    assert (a.wallet_amount, a.confirmed_amount) == (1000, 1000 - lost)
    assert report.fixed_count == 0 and a.fixed.count == 0
    assert snapshot(alice) == before and records(alice) == stored     # audit changes nothing

    # a proof reserved meanwhile is left alone by the guarded removal
    held = alice.send.prepare_send(url, 100)
    assert alice._ledger.remove_spent({url: list(held.input_ys)}).get(timeout=TIMEOUT) == []
    assert balance_of(alice, url) == (1000 - held.input_amount, held.input_amount, 0)
    alice.send.rollback(held.id)
    assert balance_of(alice, url) == (1000, 0, 0)

    fixed = alice.audit(fix=True)

    f = only(fixed)
    assert (fixed.fixed_count, fixed.fixed_amount) == (2, lost)
    assert (f.fixed.count, f.fixed.amount, set(f.fixed.ys)) == (2, lost, {r.Y for r in gone})
    assert balance_of(alice, url) == (f.confirmed_amount, 0, 0) == (1000 - lost, 0, 0)
    assert {r.Y for r in records(alice)} == {r.Y for r in stored} - {r.Y for r in gone}

    again = alice.audit()
    g = only(again)
    assert (again.difference_count, again.difference_amount, again.fixed_count) == (0, 0, 0)
    assert (g.ready.count, g.ready.amount, g.ready.unspent.amount) == (4, 1000 - lost,
                                                                      1000 - lost)
    # the wallet still works to the sat: the whole balance is spendable
    out = alice.send.prepare_send(url, 100)
    alice.send.execute_prepared_send(out.id)
    assert balance_of(alice, url)[0] == 1000 - lost - 100 - out.fee


def test_a_claimed_pending_send_is_not_a_difference(wallet: WalletFactory, mint: DevMint,
                                                    recipient: Recipient) -> None:
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    sent = alice.send.prepare_send(url, 100)
    sent, token = alice.send.execute_prepared_send(sent.id)
    assert recipient.claim(token)              # the watcher is off: not finalized yet
    n, value = len(decode(token).proofs), decode(token).amount

    a = only(alice.audit(fix=True))

    assert (a.difference_count, a.difference_amount, a.fixed.count) == (0, 0, 0)
    assert a.claimed_not_finalized == (sent.id,)
    [s] = a.pending_sends
    assert (s.operation_id, s.claim) == (sent.id, ClaimState.CLAIMED)
    assert (a.pending_send.spent.count, a.pending_send.spent.amount) == (n, value)
    assert a.pending_send.unspent.count == 0
    assert balance_of(alice, url) == (1000 - 100 - sent.fee, 0, value)   # untouched

    [done] = alice.send.check_pending()
    assert done.state == "completed"
    b = only(alice.audit())
    assert b.pending_sends == () and b.claimed_not_finalized == () and b.difference_count == 0
    assert balance_of(alice, url) == (1000 - 100 - sent.fee, 0, 0)


def test_an_unreachable_mint_is_reported_and_nothing_changes(
        wallet: WalletFactory, mint: DevMint, recipient: Recipient,
        proxy_for: Callable[[str], FaultProxy]) -> None:
    proxy = proxy_for(mint.url)
    url = normalize_mint_url(proxy.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)
    gone = spend_behind_its_back(alice, url, recipient, lambda ready: ready[:1])
    assert gone[0].amount == 8
    assert only(alice.audit()).difference_count == 1            # reachable: it is seen
    before, stored = snapshot(alice), records(alice)
    proxy.stop()                                                  # the mint is cut off

    report = alice.audit(fix=True)

    a = only(report)
    assert report.unreachable == (url,)
    assert a.reachable is False and a.error
    assert (report.difference_count, report.fixed_count, a.fixed.count) == (0, 0, 0)
    assert (a.ready.count, a.ready.amount) == (6, 1000)           # the wallet's side still
    assert a.ready.unspent.count == a.ready.spent.count == 0      # the mint said nothing
    assert a.confirmed_amount == 0
    assert snapshot(alice) == before and records(alice) == stored


def test_a_proof_reserved_during_the_audit_is_not_judged_nor_removed(
        wallet: WalletFactory, mint: DevMint, recipient: Recipient,
        proxy_for: Callable[[str], FaultProxy]) -> None:
    """The mint's answer is held at the proxy while a send reserves a proof the mint says
    is spent: the second view sees it moved, so it is counted under ``changed``, is no
    difference, and ``fix`` leaves it to the send."""
    proxy = proxy_for(mint.url)
    url = normalize_mint_url(proxy.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)                      # 512 + 256 + 128 + 64 + 32 + 8
    [eight] = spend_behind_its_back(alice, url, recipient, lambda ready: ready[:1])
    assert eight.amount == 8
    hold = proxy.hold("POST", "/v1/checkstate")
    result: dict[str, AuditReport] = {}
    auditor = threading.Thread(target=lambda: result.update(r=alice.audit(fix=True)))
    auditor.start()
    try:
        assert hold.wait(TIMEOUT)
        held = alice.send.prepare_send(url, 8)   # the exact 8: no swap, nothing sent yet
        assert held.input_ys == (eight.Y,)
    finally:
        hold.release()
        auditor.join(TIMEOUT)
    assert not auditor.is_alive()

    a = only(result["r"])
    assert (a.changed.count, a.changed.amount) == (1, 8)
    assert (a.difference_count, a.fixed.count) == (0, 0)
    assert (a.ready.count, a.ready.amount, a.ready.spent.count) == (5, 992, 0)
    assert a.reserved.count == 0 and a.reservations == ()
    assert balance_of(alice, url) == (992, 8, 0)               # still the send's
    b = only(alice.audit())                                    # now it is judged
    assert [(d.kind, d.y, d.operation_id) for d in b.differences] == [
        (DifferenceKind.RESERVED_SPENT, eight.Y, held.id)]
    alice.send.rollback(held.id)
    assert balance_of(alice, url) == (1000, 0, 0)


@pytest.mark.parametrize("fee_ppk", [0, 100], ids=["fee0", "fee100"])
def test_proofs_pending_at_the_mint(wallet: WalletFactory, make_mint: Callable[..., DevMint],
                                    fee_ppk: int) -> None:
    """At a mint whose payments stay in flight: the wallet's own pending melt holds inputs
    the mint says are pending (in flight: no difference); a copy of a ready proof in
    somebody else's melt is a difference, reported and never fixed."""
    mint = make_mint(input_fee_ppk=fee_ppk, fakewallet=PENDING).start(timeout=60.0)
    url = normalize_mint_url(mint.url)
    alice = wallet("alice", url)
    fund(alice, url, 1000)                      # 512 + 256 + 128 + 64 + 32 + 8
    prepared = alice.melt.prepare_melt(url, make_invoice(100))
    melt = alice.melt.execute_prepared_melt(prepared.id, timeout=30)
    assert melt.state == "pending" and melt.input_amount == 128
    big = next(r for r in records(alice) if r.amount == 512)
    with MintClient(mint.url) as client:
        quote = client.create_melt_quote(make_invoice(100))
        assert client.melt(quote.quote, [big.proof], wait=30).state.value == "PENDING"
    before = snapshot(alice)
    assert balance_of(alice, url) == (1000 - 128, 128, 0)

    a = only(alice.audit(fix=True))

    assert [(d.kind, d.y, d.amount) for d in a.differences] == [
        (DifferenceKind.READY_PENDING, big.Y, 512)]
    assert (a.fixed.count, a.difference_amount) == (0, 512)
    assert (a.ready.pending.count, a.ready.pending.amount) == (1, 512)
    assert (a.reserved.count, a.reserved.amount) == (len(melt.input_ys), 128)
    assert (a.reserved.pending.count, a.reserved.pending.amount) == (len(melt.input_ys), 128)
    [m] = a.pending_melts
    assert (m.operation_id, m.kind, m.state, m.amount) == (melt.id, "melt", "pending", 100)
    [r] = a.reservations
    assert (r.operation_id, r.kind, r.state, r.amount) == (melt.id, "melt", "pending", 128)
    assert a.confirmed_amount == 1000 - 128 - 512
    assert snapshot(alice) == before
    assert balance_of(alice, url) == (1000 - 128, 128, 0)


def test_bad_input_is_refused_before_anything(wallet: WalletFactory, mint_fee0: DevMint) -> None:
    url = normalize_mint_url(mint_fee0.url)
    alice = wallet("alice", url)
    with pytest.raises(NotFoundError):
        alice.audit("http://127.0.0.1:1")
    with pytest.raises(InvalidInputError):
        alice.audit("not a url")
    with pytest.raises(InvalidInputError):
        alice.audit(fix="yes")  # type: ignore[arg-type]
    a = only(alice.audit(url))                                 # a wallet without proofs
    assert (a.mint_url, a.reachable, a.wallet_amount, a.difference_count) == (url, None, 0, 0)
