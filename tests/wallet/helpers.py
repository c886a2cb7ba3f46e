"""Helpers of the wallet tests: funding, fees and balances to the sat."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from coco_actors import Coco
from coco_actors.crypto.keysets import fee_for
from coco_actors.events import EVENTS
from coco_actors.mint_client import normalize_mint_url
from coco_actors.records import Operation
from coco_actors.tokens import decode
from coco_actors.watcher import WatcherConfig


class WalletFactory(Protocol):
    def __call__(self, name: str = "a", mint_url: str | None = None, *,
                 mnemonic: str | None = None, watcher: bool | WatcherConfig = False,
                 **kwargs: Any) -> Coco: ...


def fund(coco: Coco, url: str, amount: int) -> Operation:
    """Mint ``amount`` at ``url`` through one quote (FakeWallet pays it at once)."""
    quote = coco.mint.create_quote(url, amount)
    op = coco.mint.redeem(quote.id, timeout=10)
    assert op.state == "completed", op
    return op


def fee_of(input_fee_ppk: int, n_inputs: int) -> int:
    """NUT-02: the fee of ``n_inputs`` proofs of one keyset."""
    return fee_for([input_fee_ppk] * n_inputs)


def token_fee(token: str, input_fee_ppk: int) -> int:
    """The fee the mint charges to swap every proof of ``token``."""
    return fee_of(input_fee_ppk, len(decode(token).proofs))


def balance_of(coco: Coco, url: str) -> tuple[int, int, int]:
    """(spendable, reserved, pending) at ``url``, for exact comparisons."""
    b = coco.balance().get(normalize_mint_url(url))
    return (b.spendable, b.reserved, b.pending) if b is not None else (0, 0, 0)


def snapshot(coco: Coco) -> tuple[Any, ...]:
    """Everything a rejected call must leave unchanged: balances, open operations, history."""
    return (
        coco.balance(),
        sorted((o.id, o.state.value) for o in coco.send.get_pending_operations()),
        [(h.operation_id, h.type, h.amount, h.state) for h in coco.history.get_history()],
    )


#: Bound for waiting on an event that follows a call which has returned.
EVENT_TIMEOUT = 10.0


class SagaEvents:
    """Every event of one kind of operation (``kind``: "melt", "transfer", ...) of one
    wallet, as the bus delivered it (handlers run on the bus thread; tests wait with a
    deadline)."""

    kind = ""

    def __init__(self, coco: Coco) -> None:
        self._coco = coco
        self._cond = threading.Condition()
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._names = sorted(e for e in EVENTS if e.startswith(f"{self.kind}:"))
        assert self._names, f"no events of kind {self.kind!r}"
        for name in self._names:
            coco.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[[dict[str, Any]], None]:
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

        self._coco.on(self._names[0], noop)
        self._coco.off(self._names[0], noop)

    def names(self, op_id: str | None = None) -> list[str]:
        with self._cond:
            return [n for n, p in self.seen if op_id is None or p["operation_id"] == op_id]
