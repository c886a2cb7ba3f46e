"""Wallet fixtures: every ``Coco`` in a data directory of its own, closed at teardown.

The mints are shared by the whole session, so tests only ever reason about the
balances of their own wallets, never about the mint's state.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from coco_actors import Coco
from coco_actors.watcher import WatcherConfig

from .helpers import WalletFactory


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[WalletFactory]:
    """``wallet(name, mint_url)`` opens (or reopens) ``Coco`` in ``tmp_path / name``.

    It adds ``mint_url`` when given. The Watcher is off unless asked for, so a send
    finalizes only when the test calls ``check_pending()`` (deterministic). Every
    wallet opened is closed at teardown (``close`` is idempotent), and no actor the
    test started may outlive it.
    """
    opened: list[Coco] = []
    before = {ref.actor_urn for ref in pykka.ActorRegistry.get_all()}

    def make(name: str = "a", mint_url: str | None = None, *, mnemonic: str | None = None,
             watcher: bool | WatcherConfig = False, **kwargs: Any) -> Coco:
        coco = Coco.open(tmp_path / name, mnemonic=mnemonic, watcher=watcher, **kwargs)
        opened.append(coco)
        if mint_url is not None:
            coco.mints.add(mint_url)
        return coco

    yield make
    for coco in reversed(opened):
        coco.close()
    leftovers = [ref for ref in pykka.ActorRegistry.get_all() if ref.actor_urn not in before]
    for ref in leftovers:
        ref.stop(block=True, timeout=10)
    assert not leftovers, f"actors still alive after every wallet closed: {leftovers}"
