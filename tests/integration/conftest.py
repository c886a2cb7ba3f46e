from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from coco_actors.mint_client import MintClient
from devtools.devmint import DevMint
from devtools.ts_wallet import ensure_ts_harness


@pytest.fixture
def other_mint_invoice(request: pytest.FixtureRequest, mint: DevMint) -> Callable[[int], str]:
    """A payable bolt11 invoice from the *other* test mint (a real outgoing FakeWallet payment)."""
    other: DevMint = request.getfixturevalue(
        "mint_fee100" if mint.input_fee_ppk == 0 else "mint_fee0")

    def make(amount: int) -> str:
        with MintClient(other.url) as c:
            return c.create_mint_quote(amount).request

    return make


@pytest.fixture(scope="session")
def ts_harness() -> Path:
    """The installed coco (TS) harness directory (``npm ci`` on first use, then cached).

    Without Node 20+ and npm this raises ``TsHarnessError``: the tests that need it fail
    with that message, they are never skipped.
    """
    return ensure_ts_harness()
