"""Helpers of the melt tests: invoices to pay, the mint's own word, events, snapshots."""

from __future__ import annotations

import threading
from typing import Any

from coco_actors import Coco
from coco_actors.mint_client import MintClient
from coco_actors.records import Operation
from coco_actors.wire import MeltQuote, ProofStateKind

from .helpers import snapshot

#: Every melt event, in the order a melt may emit them.
MELT_EVENTS = ("melt:prepared", "melt:pending", "melt:finalized", "melt:rolled-back")
#: Bound for waiting on an event that follows a call which has returned.
EVENT_TIMEOUT = 10.0
#: Bound for waiting on what a restarted mint decides (start ~3 s, then the Watcher).
DECIDE_TIMEOUT = 45.0


def invoice_of(mint_url: str, amount: int) -> str:
    """A bolt11 invoice of the mint at ``mint_url``: the request of a fresh mint quote.

    The quote is never asked about here, so with a long incoming delay it stays unpaid.
    """
    with MintClient(mint_url) as client:
        return client.create_mint_quote(amount).request


def melt_quote(mint_url: str, quote_id: str | None) -> MeltQuote:
    """What the mint itself says about a melt quote (a client of our own, not the wallet's)."""
    assert quote_id is not None
    with MintClient(mint_url) as client:
        return client.get_melt_quote(quote_id)


def proof_states(mint_url: str, ys: tuple[str, ...]) -> set[ProofStateKind]:
    """NUT-07 at the mint for ``ys``."""
    with MintClient(mint_url) as client:
        return {s.state for s in client.check_state(list(ys))}


def melt_snapshot(coco: Coco) -> tuple[Any, ...]:
    """Everything a refused melt call must leave unchanged: balances, open sends and
    melts, history."""
    return (
        snapshot(coco),
        sorted((o.id, o.state.value) for o in coco.melt.get_pending_operations()),
    )


class MeltEvents:
    """Every melt event of one wallet, as the bus delivered it (handlers run on the bus
    thread; tests wait with a deadline)."""

    def __init__(self, coco: Coco) -> None:
        self._coco = coco
        self._cond = threading.Condition()
        self.seen: list[tuple[str, dict[str, Any]]] = []
        for name in MELT_EVENTS:
            coco.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        def record(payload: dict[str, Any]) -> None:
            with self._cond:
                self.seen.append((name, payload))
                self._cond.notify_all()
        return record

    def wait_for(self, name: str, op_id: str, timeout: float = EVENT_TIMEOUT
                 ) -> dict[str, Any]:
        """The payload of ``name`` for ``op_id``; fails the test after ``timeout``."""
        def found() -> dict[str, Any] | None:
            return next((p for n, p in self.seen if n == name and p["operation_id"] == op_id),
                        None)

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout):
                raise AssertionError(f"no {name} for {op_id} within {timeout:g} s; "
                                     f"seen {self.names()}")
            payload = found()
        assert payload is not None
        return payload

    def flush(self) -> None:
        """A round trip to the event bus: every event emitted before it has been handled
        (the bus handles its inbox in order), so an absent event is really absent."""
        def noop(payload: dict[str, Any]) -> None:
            pass

        self._coco.on("melt:prepared", noop)
        self._coco.off("melt:prepared", noop)

    def names(self, op_id: str | None = None) -> list[str]:
        with self._cond:
            return [n for n, p in self.seen if op_id is None or p["operation_id"] == op_id]


def check_payload(payload: dict[str, Any], op: Operation, state: str) -> None:
    """An event names the mint and the operation, and carries the record at that state."""
    assert payload["mint_url"] == op.mint_url
    assert payload["operation_id"] == op.id
    assert payload["operation"].id == op.id
    assert payload["operation"].state == state
