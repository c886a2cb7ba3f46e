"""Helpers of the melt tests: invoices to pay, the mint's own word, events, snapshots."""

from __future__ import annotations

from typing import Any

from coco_actors import Coco
from coco_actors.mint_client import MintClient
from coco_actors.records import Operation
from coco_actors.wire import MeltQuote, ProofStateKind

from .helpers import SagaEvents, snapshot

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


class MeltEvents(SagaEvents):
    """Every melt event of one wallet."""

    kind = "melt"


def check_payload(payload: dict[str, Any], op: Operation, state: str) -> None:
    """An event names the mint and the operation, and carries the record at that state."""
    assert payload["mint_url"] == op.mint_url
    assert payload["operation_id"] == op.id
    assert payload["operation"].id == op.id
    assert payload["operation"].state == state
