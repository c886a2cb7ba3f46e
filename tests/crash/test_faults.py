"""Failures short of a crash, in process, through the fault proxy: a 500, a reset, a
lost answer or a timeout on a request whose outcome the wallet cannot know. The
operation must stay where it is (never guess), and a later recovery with the mint
reachable must resolve it, to the sat.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pykka
import pytest

from coco_actors import MintUnreachableError
from coco_actors.mint_client import MintClient
from coco_actors.records import Operation
from coco_actors.supervisor import SupervisorActor
from coco_actors.tokens import decode
from devtools.devmint import DevMint
from tests.support.crash_driver import (
    CHECKSTATE,
    SWAP,
    ChildError,
    CrashWallet,
    InProcessWallet,
)
from tests.support.proxy import Fault
from tests.support.waiting import wait_until

FUND = 1000
AMOUNT = 100
#: The wallet's read timeout in these tests, so that a timeout costs a second, not 30.
SHORT_READ = 1.0


def execute_in_background(rig: Rig, op_id: str) -> tuple[threading.Thread, dict[str, object]]:
    """Run ``execute_prepared_send`` on a thread; ``result`` gets "op" or "error"."""
    result: dict[str, object] = {}

    def execute() -> None:
        try:
            result["op"] = rig.coco.send.execute_prepared_send(op_id)[0]
        except Exception as exc:  # reported by the test
            result["error"] = exc

    runner = threading.Thread(target=execute)
    runner.start()
    return runner, result


class Rig(InProcessWallet):
    """An in-process wallet behind a proxy, with the test's own line to the mint."""

    def __init__(self, mint: DevMint, data_dir: Path) -> None:
        super().__init__(mint, data_dir, fund=FUND)

    def state(self, op_id: str) -> str:
        op = self.coco._ledger.get_operation(op_id).get(timeout=5)
        assert op is not None
        return op.state.value

    def balance(self) -> tuple[int, int, int]:
        b = self.coco.balance()[self.url]
        return b.spendable, b.reserved, b.pending

    def fee(self, n: int) -> int:
        return (n * self.mint.input_fee_ppk + 999) // 1000

    def assert_sound(self) -> None:
        a = self.audit()
        assert not a.violations, "\n".join([a.summary(), *a.violations])
        self.client.close()


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every MintClient made from now on gives up reading after SHORT_READ seconds."""
    defaults = MintClient.__init__.__kwdefaults__
    assert defaults is not None
    monkeypatch.setitem(defaults, "timeout",
                        httpx.Timeout(connect=5.0, read=SHORT_READ, write=5.0, pool=5.0))


def _actors() -> set[str]:
    return {ref.actor_urn for ref in pykka.ActorRegistry.get_all()}


@pytest.fixture
def rig(mint: DevMint, tmp_path: Path) -> Iterator[Rig]:
    """The wallet; at teardown it is closed and any actor it left behind is stopped
    (that no actor outlives ``close`` is the business of one test below, not of all)."""
    before = _actors()
    r = Rig(mint, tmp_path / "w")
    yield r
    r.close()
    for ref in pykka.ActorRegistry.get_all():
        if ref.actor_urn not in before:
            ref.stop(block=True, timeout=10)


FAULTS = [
    pytest.param(Fault.ERROR_500, False, id="500-not-processed"),
    pytest.param(Fault.ERROR_500, True, id="500-processed"),
    pytest.param(Fault.RESET, False, id="reset-not-processed"),
    pytest.param(Fault.RESET, True, id="reset-processed"),
    pytest.param(Fault.DROP_RESPONSE, True, id="answer-lost"),
    pytest.param(Fault.DELAY, True, id="timeout-processed"),
]


@pytest.mark.parametrize("fault,processed", FAULTS)
@pytest.mark.usefixtures("short_timeouts")
def test_swap_fault_leaves_send_executing_until_recovered(rig: Rig, fault: Fault,
                                                          processed: bool) -> None:
    prepared = rig.coco.send.prepare_send(rig.url, AMOUNT)
    assert prepared.needs_swap
    rule = rig.proxy.inject(*SWAP, fault, forward=processed, delay=SHORT_READ + 2)
    with pytest.raises(MintUnreachableError):
        rig.coco.send.execute_prepared_send(prepared.id)
    assert rule.fired.is_set()
    assert rig.proxy.seen(*SWAP)[-1].status == (200 if processed else None)
    # the wallet cannot know: nothing moved, nothing was compensated
    assert rig.state(prepared.id) == "executing"
    assert rig.balance() == (FUND - prepared.input_amount, prepared.input_amount, 0)

    assert rig.coco.send.recover_pending_operations() == {"rolled_back": 1}
    assert rig.state(prepared.id) == "rolled_back"
    assert rig.balance() == (FUND - (prepared.fee if processed else 0), 0, 0)
    rig.assert_sound()


def test_recovery_that_cannot_reach_the_mint_defers(rig: Rig) -> None:
    prepared = rig.coco.send.prepare_send(rig.url, AMOUNT)
    rig.proxy.inject(*SWAP, Fault.DROP_RESPONSE, forward=True)
    with pytest.raises(MintUnreachableError):
        rig.coco.send.execute_prepared_send(prepared.id)
    rig.proxy.inject(*CHECKSTATE, Fault.ERROR_500)
    assert rig.coco.send.recover_pending_operations() == {"executing (deferred)": 1}
    assert rig.state(prepared.id) == "executing"
    assert rig.balance() == (FUND - prepared.input_amount, prepared.input_amount, 0)

    assert rig.coco.send.recover_pending_operations() == {"rolled_back": 1}
    assert rig.balance() == (FUND - prepared.fee, 0, 0)
    rig.assert_sound()


@pytest.mark.parametrize("processed", [False, True], ids=["not-processed", "processed"])
def test_reclaim_fault_leaves_send_rolling_back_until_recovered(rig: Rig,
                                                                processed: bool) -> None:
    prepared = rig.coco.send.prepare_send(rig.url, AMOUNT)
    op, token = rig.coco.send.execute_prepared_send(prepared.id)
    rig.proxy.inject(*SWAP, Fault.ERROR_500, forward=processed)
    with pytest.raises(MintUnreachableError):
        rig.coco.send.rollback(op.id)
    assert rig.state(op.id) == "rolling_back"

    assert rig.coco.send.recover_pending_operations() == {"rolled_back": 1}
    reclaim_fee = rig.fee(len(op.send_proofs))
    assert rig.balance() == (FUND - prepared.fee - reclaim_fee, 0, 0)
    assert not rig.recipient.claim(token)
    rig.assert_sound()


def test_receive_fault_is_recovered(rig: Rig) -> None:
    token = rig.faucet.token(300)
    rig.proxy.inject(*SWAP, Fault.ERROR_500, forward=True)
    with pytest.raises(MintUnreachableError):
        rig.coco.receive(token)
    assert rig.coco.recover() == {"completed": 1}
    assert rig.balance() == (FUND + 300 - rig.fee(4), 0, 0)
    rig.assert_sound()


def test_mint_fault_is_recovered(rig: Rig) -> None:
    quote = rig.coco.mint.create_quote(rig.url, 200)
    rig.proxy.inject("POST", "/v1/mint/bolt11", Fault.RESET, forward=True)
    with pytest.raises(MintUnreachableError):
        rig.coco.mint.redeem(quote.id, timeout=10)
    assert rig.coco.recover() == {"completed": 1}
    assert rig.balance() == (FUND + 200, 0, 0)
    rig.assert_sound()


def test_recovery_while_the_swap_is_in_flight_does_not_race_it(rig: Rig) -> None:
    """``recover_pending_operations()`` called while an execute waits on the mint.

    The send's own actor is mid-swap; recovery must not resolve the same operation
    on a second actor behind its back (NUT-07 says "unspent" until the swap lands).
    """
    prepared = rig.coco.send.prepare_send(rig.url, AMOUNT)
    hold = rig.proxy.hold(*SWAP)
    runner, result = execute_in_background(rig, prepared.id)
    recovered: dict[str, object] = {}

    def recover() -> None:
        try:
            recovered.update(rig.coco.send.recover_pending_operations())
        except Exception as exc:  # reported by the test
            recovered["error"] = exc

    recovery = threading.Thread(target=recover)
    try:
        assert hold.wait(10)
        ref = rig.coco._supervisor.actor_for(prepared.id).get(timeout=5).actor_ref
        recovery.start()
        # a right recovery queues its step behind the execute on the send's own actor; one
        # that races the swap resolves the send elsewhere and ends while the swap is held
        wait_until(lambda: ref.actor_inbox.qsize() >= 1 or not recovery.is_alive(), 10,
                   "recovery neither waited for the send's actor nor ended")
    finally:
        hold.release()
        runner.join(30)
    recovery.join(30)
    assert not runner.is_alive() and not recovery.is_alive()
    final = rig.coco.send.get_operation(prepared.id)
    assert final is not None
    assert "error" not in result, result
    assert "rolled_back" not in recovered, (
        f"recovery resolved the send while its swap was in flight ({recovered}, inputs"
        f" released, send:rolled-back emitted); the swap then landed and it ended {final.state}")
    assert recovered == {"pending": 1}   # it ran once the swap landed, and found it pending
    assert final.state == "pending"
    assert rig.balance() == (FUND - AMOUNT - prepared.fee, 0, AMOUNT)
    rig.assert_sound()


def test_no_actor_outlives_close_after_a_failed_step_and_a_recovery(mint: DevMint,
                                                                    tmp_path: Path) -> None:
    before = _actors()
    rig = Rig(mint, tmp_path / "w")
    try:
        prepared = rig.coco.send.prepare_send(rig.url, AMOUNT)
        rig.proxy.inject(*SWAP, Fault.ERROR_500)
        with pytest.raises(MintUnreachableError):
            rig.coco.send.execute_prepared_send(prepared.id)
        assert rig.coco.send.recover_pending_operations() == {"rolled_back": 1}
    finally:
        rig.close()
    left = [ref for ref in pykka.ActorRegistry.get_all() if ref.actor_urn not in before]
    for ref in left:
        ref.stop(block=True, timeout=10)
    assert not left, f"actors still alive after Coco.close(): {left}"


def test_no_actor_outlives_close_after_check_pending_and_a_recovery(mint: DevMint,
                                                                    tmp_path: Path) -> None:
    """No fault at all: ``check_pending()`` rehydrates a pending send's actor (which
    stays up), the recipient claims, ``recover_pending_operations()`` finalizes the
    send on a second actor; the first one must not outlive ``close()``."""
    before = _actors()
    rig = Rig(mint, tmp_path / "w")
    try:
        prepared = rig.coco.send.prepare_send(rig.url, AMOUNT)
        op, token = rig.coco.send.execute_prepared_send(prepared.id)
        assert [o.state for o in rig.coco.send.check_pending()] == ["pending"]
        assert rig.recipient.claim(token)
        assert rig.coco.send.recover_pending_operations() == {"completed": 1}
    finally:
        rig.close()
    left = [ref for ref in pykka.ActorRegistry.get_all() if ref.actor_urn not in before]
    for ref in left:
        ref.stop(block=True, timeout=10)
    assert not left, f"actors still alive after Coco.close(): {left}"


def test_wallet_process_exits_after_a_failed_step_and_a_recovery(
        mint: DevMint, crash_wallet: Callable[..., CrashWallet]) -> None:
    """A swap answered 500, then ``recover_pending_operations()``, then ``close()``:
    the process must end (no operation actor left running on a non-daemon thread)."""
    w = crash_wallet(mint, fund=FUND)
    prepared = w.call("prepare", url=w.url, amount=AMOUNT)
    w.proxy.inject(*SWAP, Fault.ERROR_500)
    with pytest.raises(ChildError) as failed:
        w.call("execute", op_id=prepared["id"])
    assert failed.value.type == "MintUnreachableError"
    assert w.call("recover_sends") == {"rolled_back": 1}
    assert w.child is not None
    w.call("quit")                      # Coco.close() returned
    try:
        w.child.proc.wait(5)
    except subprocess.TimeoutExpired:
        w.child.kill()
        pytest.fail("the wallet process did not exit after Coco.close()")


def test_a_slow_swap_never_holds_up_the_supervisor(rig: Rig) -> None:
    """The Supervisor "never forwards a saga step through its own mailbox, so one slow
    swap never holds up another operation" (README). Here a rollback is queued on a
    send's actor while its execute waits on the mint; the execute ends pending and tells
    the Supervisor the actor may rest; the Supervisor then must not wait (in its own
    mailbox) for the rollback's reclaim swap before it serves anyone else."""
    prepared = rig.coco.send.prepare_send(rig.url, AMOUNT)
    first = rig.proxy.hold(*SWAP)
    results: dict[str, object] = {}

    def run(name: str, fn: Callable[[], object]) -> threading.Thread:
        def target() -> None:
            try:
                results[name] = fn()
            except Exception as exc:  # reported below
                results[name] = exc
        t = threading.Thread(target=target, name=name)
        t.start()
        return t

    executing = run("execute", lambda: rig.coco.send.execute_prepared_send(prepared.id))
    assert first.wait(10)
    ref = rig.coco._supervisor.actor_for(prepared.id).get(timeout=5).actor_ref
    rolling = run("rollback", lambda: rig.coco.send.rollback(prepared.id))
    wait_until(lambda: ref.actor_inbox.qsize() >= 1, 10,   # behind the execute
               "the rollback never reached the send's actor")
    reclaim = rig.proxy.hold(*SWAP)
    first.release()
    try:
        assert reclaim.wait(10), "the rollback did not start its reclaim swap"
        executing.join(10)
        other = run("other", lambda: rig.coco.send.prepare_send(rig.url, 10))
        other.join(5)
        blocked = other.is_alive()
    finally:
        reclaim.release()
        rolling.join(60)
    other.join(60)
    assert not blocked, "another operation waited on the Supervisor while a swap was held"
    assert not (executing.is_alive() or rolling.is_alive() or other.is_alive())
    # every call ended as it should, to the sat
    executed, back, side = results["execute"], results["rollback"], results["other"]
    assert isinstance(executed, tuple), results
    assert isinstance(back, Operation) and isinstance(side, Operation), results
    op, token = executed
    assert (op.id, op.state) == (prepared.id, "pending"), results
    assert back.state == "rolled_back"
    assert rig.state(prepared.id) == "rolled_back"
    assert (side.state, side.amount) == ("prepared", 10)
    reclaim_fee = rig.fee(len(decode(token).proofs))
    assert rig.balance() == (FUND - prepared.fee - reclaim_fee - side.input_amount,
                             side.input_amount, 0)
    rig.assert_sound()


def test_wallet_restore_while_a_swap_is_in_flight_counts_nothing_twice(rig: Rig) -> None:
    """``coco.restore()`` must not add proofs that sit in an open operation: here the
    outputs of a send whose swap the mint has processed but whose answer has not
    reached the wallet yet (the send is ``executing``). Once the answer arrives, the
    send's proofs are in its token; they must not also be spendable."""
    prepared = rig.coco.send.prepare_send(rig.url, AMOUNT)
    hold = rig.proxy.hold(*SWAP)
    runner, result = execute_in_background(rig, prepared.id)
    try:
        assert hold.wait(10)
        hold.forward()                      # the mint signed the send's outputs
        report = rig.coco.restore(rig.url)
    finally:
        hold.release()
        runner.join(30)
    assert "error" not in result, result
    assert rig.state(prepared.id) == "pending"
    assert (report.restored, report.proofs) == (0, 0), report
    assert rig.balance() == (FUND - AMOUNT - prepared.fee, 0, AMOUNT), (
        f"restore added {report.restored} sat while the send was executing")
    rig.assert_sound()


def test_a_call_racing_the_stop_of_its_actor_is_retried(rig: Rig,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the campaign (seed 12): ``check_pending()`` raised pykka's
    ``ActorDeadError`` when the send's actor stopped (the watcher had just finalized
    it) between the Supervisor's lookup and the call. ``Coco._step`` retries exactly
    this race, but only around the call, not around ``ref.proxy()``. Here the race is
    made certain: the first lookup hands out an actor that has just stopped."""
    prepared = rig.coco.send.prepare_send(rig.url, AMOUNT)
    op, _ = rig.coco.send.execute_prepared_send(prepared.id)
    lookup = SupervisorActor.send_actor
    raced: list[str] = []

    def send_actor(self: SupervisorActor, op_id: str) -> pykka.ActorProxy:
        proxy = lookup(self, op_id)
        if not raced:  # the actor retires right after the lookup, once
            raced.append(op_id)
            proxy.actor_ref.stop(block=True, timeout=5)
        return proxy

    monkeypatch.setattr(SupervisorActor, "send_actor", send_actor)
    assert [o.state for o in rig.coco.send.check_pending()] == ["pending"]
    assert raced == [op.id]
