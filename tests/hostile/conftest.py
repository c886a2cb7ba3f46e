"""Hostile-mint fixtures: wallets in their own data directories behind a FaultProxy.

Every wallet opened is closed at teardown and no actor may outlive it; every proxy
is stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pykka
import pytest

from coco_actors import Coco


@pytest.fixture
def open_wallet(tmp_path: Path) -> Iterator[Callable[..., Coco]]:
    """``open_wallet(name, mnemonic=None)``: a ``Coco`` (Watcher off) in ``tmp_path / name``."""
    opened: list[Coco] = []
    before = {ref.actor_urn for ref in pykka.ActorRegistry.get_all()}

    def make(name: str, mnemonic: str | None = None) -> Coco:
        opened.append(Coco.open(tmp_path / name, mnemonic=mnemonic, watcher=False))
        return opened[-1]

    yield make
    for coco in reversed(opened):
        coco.close()
    leftovers = [ref for ref in pykka.ActorRegistry.get_all() if ref.actor_urn not in before]
    for ref in leftovers:
        ref.stop(block=True, timeout=10)
    assert not leftovers, f"actors still alive after every wallet closed: {leftovers}"


