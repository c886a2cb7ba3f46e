"""Helpers of the wallet tests: funding, fees and balances to the sat."""

from __future__ import annotations

from typing import Any, Protocol

from coco_actors import Coco
from coco_actors.crypto.keysets import fee_for
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
