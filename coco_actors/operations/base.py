"""What every operation actor shares: its dependencies, commits, events, restore."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pykka

from coco_actors.crypto.nut13 import Nut13Deriver
from coco_actors.crypto.outputs import make_outputs, unblind_signatures
from coco_actors.errors import ActorTimeoutError, InvalidStateError, NotFoundError
from coco_actors.mint_client import MintClient
from coco_actors.records import Operation, OpState
from coco_actors.wire import BlindingData, Keyset, Proof, split_amount

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long an operation actor waits for the ledger (a local, durable write).
LEDGER_TIMEOUT = 30.0


def wait(future: pykka.Future[T], timeout: float, what: str) -> T:
    """``future.get`` with a timeout that becomes a domain error."""
    try:
        return future.get(timeout=timeout)
    except pykka.Timeout:
        raise ActorTimeoutError(f"{what} did not answer within {timeout:g} s") from None


@dataclass(frozen=True, slots=True)
class MintContext:
    """One mint as operation actors see it: its client and its keysets."""

    url: str
    client: MintClient
    keysets: tuple[Keyset, ...]

    def keyset(self, keyset_id: str) -> Keyset:
        for ks in self.keysets:
            if ks.id == keyset_id:
                return ks
        raise NotFoundError(f"keyset {keyset_id} is not known for {self.url}")

    def active_keyset(self, unit: str = "sat") -> Keyset:
        for ks in self.keysets:
            if ks.active and ks.unit == unit:
                return ks
        raise NotFoundError(f"mint {self.url} has no active {unit} keyset")


@dataclass(frozen=True, slots=True)
class OperationDeps:
    ledger: Any   # ProofLedgerActor proxy
    events: Any   # EventBusActor proxy
    deriver: Nut13Deriver
    watcher: Any = None  # WatcherActor proxy, None when the watcher is off
    supervisor: Any = None  # SupervisorActor proxy, for "I am at rest" tells
    signal: Any = None      # the ledger's ChangeSignal (a thread-safe condition)


class OperationActor(pykka.ThreadingActor):
    """Base class: holds the current record; subclasses add the saga's steps.

    All public methods run on this actor's own thread, one at a time. They only
    ask *down* (ledger, mint client) and tell *up* (events).
    """

    def __init__(self, op: Operation, mint: MintContext, deps: OperationDeps) -> None:
        super().__init__()
        self.op = op
        self.mint = mint
        self.deps = deps

    def operation(self) -> Operation:
        return self.op

    @contextlib.contextmanager
    def _abandon_on_error(self) -> Iterator[None]:
        """For first steps: if they fail while still ``init``, undo and stop.

        The record (and any reservation made with it) is deleted, so a refused
        call leaves neither state nor a running actor behind.
        """
        try:
            yield
        except BaseException:
            if self.op.state == OpState.INIT:
                wait(self.deps.ledger.delete_operation(self.op.id), LEDGER_TIMEOUT,
                     "ProofLedger")
                self.retire()
            raise

    def retire(self) -> None:
        """Stop once the current message is done: the operation is over."""
        self.actor_ref.stop(block=False)

    def rest(self) -> None:
        """The operation waits on the outside world (e.g. a pending send): let the
        Supervisor stop this actor; it rehydrates it from the record when needed.

        The Supervisor, not this actor, does the stop, in its own mailbox: no
        lookup can then hand out this actor while a fresh one is started.
        """
        if self.deps.supervisor is not None:
            self.deps.supervisor.idle(self.op.id, self.actor_ref)

    # --- helpers for subclasses --------------------------------------------------------

    def _commit(self, op: Operation) -> Operation:
        self.op = wait(self.deps.ledger.commit(op), LEDGER_TIMEOUT, "ProofLedger")
        self._log_transition()
        return self.op

    def _settle(self, op: Operation, *, spend: Sequence[str] = (), add: Sequence[Proof] = (),
                release: Sequence[str] = ()) -> Operation:
        self.op = wait(self.deps.ledger.settle(op, spend=spend, add=add, release=release),
                       LEDGER_TIMEOUT, "ProofLedger")
        self._log_transition()
        return self.op

    def _log_transition(self) -> None:
        log.info("%s %s -> %s (amount %d, mint %s)", self.op.type.value, self.op.id,
                 self.op.state.value, self.op.amount, self.op.mint_url)

    def _emit(self, suffix: str, **extra: Any) -> None:
        payload = {"mint_url": self.op.mint_url, "operation_id": self.op.id,
                   "operation": self.op, **extra}
        self.deps.events.emit(f"{self.op.type.value}:{suffix}", payload)

    def _watch_send(self) -> None:
        if self.deps.watcher is not None:
            self.deps.watcher.watch_send(self.op.id, self.op.mint_url, list(self.op.send_ys))

    def _unwatch(self) -> None:
        if self.deps.watcher is not None:
            self.deps.watcher.unwatch(self.op.id)

    def _derive_outputs(self, amounts: Sequence[int], keyset: Keyset) -> list[BlindingData]:
        """Outputs from freshly allocated NUT-13 counters (persisted before we return)."""
        if not amounts:
            return []
        start = wait(self.deps.ledger.allocate_counters(keyset.id, len(amounts)),
                     LEDGER_TIMEOUT, "ProofLedger")
        return self._outputs_at(amounts, keyset, start)

    def _outputs_at(self, amounts: Sequence[int], keyset: Keyset,
                    start: int) -> list[BlindingData]:
        pairs = [self.deps.deriver.derive(keyset.id, start + i) for i in range(len(amounts))]
        return make_outputs(list(amounts), keyset.id, pairs)

    def _unblind(self, outputs: Sequence[BlindingData], sigs: Sequence[Any]) -> list[Proof]:
        """Proofs for ``outputs`` in order; each output is unblinded with its own keyset."""
        by_keyset: dict[str, list[int]] = {}
        for i, o in enumerate(outputs):
            by_keyset.setdefault(o.keyset_id, []).append(i)
        result: dict[int, Proof] = {}
        for keyset_id, idx in by_keyset.items():
            got = unblind_signatures([outputs[i] for i in idx], [sigs[i] for i in idx],
                                     self.mint.keyset(keyset_id))
            result.update(zip(idx, got, strict=True))
        return [result[i] for i in range(len(outputs))]

    def _restore(self, outputs: Sequence[BlindingData]) -> list[Proof]:
        """NUT-09: the proofs for those of ``outputs`` the mint has signed, unblinded."""
        if not outputs:
            return []
        result = self.mint.client.restore([o.blinded for o in outputs])
        by_b = {o.B_: o for o in outputs}
        matched = [by_b[b.B_] for b in result.outputs if b.B_ in by_b]
        sigs = [s for b, s in zip(result.outputs, result.signatures, strict=True)
                if b.B_ in by_b]
        return self._unblind(matched, sigs)

    def _require(self, *states: Any) -> None:
        if self.op.state not in states:
            raise InvalidStateError(
                f"{self.op.type.value} {self.op.id} is {self.op.state.value}; this needs "
                + " or ".join(s.value for s in states))

    def _amounts(self, amount: int) -> list[int]:
        return split_amount(amount)
