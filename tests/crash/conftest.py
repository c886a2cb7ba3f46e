"""Crash-test fixtures: wallets in child processes behind a fault proxy, all stopped at
teardown (every child process, every proxy thread), and invoices to melt; wallets of
two mints for transfers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.devmint import DevMint, FakeWalletConfig
from tests.support.crash_driver import CrashWallet, InvoiceMint, TransferWallet


@pytest.fixture
def crash_wallet(tmp_path: Path) -> Iterator[Callable[..., CrashWallet]]:
    """``crash_wallet(mint, fund=0, watcher=False)``: a started wallet process that
    trusts ``mint`` (through its proxy) and was funded with ``fund`` sats."""
    made: list[CrashWallet] = []

    def make(mint: DevMint, *, fund: int = 0, watcher: bool = False) -> CrashWallet:
        workdir = tmp_path / f"w{len(made)}"
        workdir.mkdir()
        w = CrashWallet(mint, workdir, watcher=watcher)
        made.append(w)
        w.start()
        w.call("add_mint", url=w.url)
        if fund:
            assert w.call("fund", url=w.url, amount=fund)["state"] == "completed"
        return w

    yield make
    for w in made:
        w.close()
    assert all(not c.alive for w in made for c in w.children)


@pytest.fixture
def transfer_wallet(tmp_path: Path) -> Iterator[Callable[..., TransferWallet]]:
    """``transfer_wallet(mint, other, fund=0, watcher=False)``: a started wallet process
    that trusts ``mint`` and ``other`` (each through its own proxy), funded with ``fund``
    sats at ``mint``; transfers go between the two."""
    made: list[TransferWallet] = []

    def make(mint: DevMint, other: DevMint, *, fund: int = 0,
             watcher: bool = False) -> TransferWallet:
        workdir = tmp_path / f"t{len(made)}"
        workdir.mkdir()
        w = TransferWallet(mint, other, workdir, watcher=watcher)
        made.append(w)
        w.start()
        w.call("add_mint", url=w.url)
        w.call("add_mint", url=w.other.url)
        if fund:
            assert w.call("fund", url=w.url, amount=fund)["state"] == "completed"
        return w

    yield make
    for w in made:
        w.close()
    assert all(not c.alive for w in made for c in w.children)


@pytest.fixture(scope="session")
def invoices(tmp_path_factory: pytest.TempPathFactory,
             nutshell_bin: Path) -> Iterator[InvoiceMint]:
    """Invoices to melt, from a mint of their own whose quotes never pay themselves
    (the melting mint's FakeWallet pays any of them). One for the whole session."""
    mint = DevMint(tmp_path_factory.mktemp("invoice-mint"), input_fee_ppk=0,
                   nutshell_bin=nutshell_bin, fakewallet=FakeWalletConfig(incoming_delay=600))
    mint.start(timeout=60.0)
    source = InvoiceMint(mint)
    try:
        yield source
    finally:
        source.close()
        mint.stop()
