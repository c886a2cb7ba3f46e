"""CLI fixtures: real ``coco serve`` daemons (child processes) against the real mints.

Every daemon runs in a data directory of its own (under a short temporary path:
a Unix socket path holds at most ~104 bytes) and is killed at teardown. Nothing
here sleeps: a daemon is ready when it logs so (its stderr is read by a thread),
and it is gone when its process has exited.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_support import DaemonProcess, Wallet
from click.testing import CliRunner, Result

from cli import main
from coco_actors.mint_client import MintClient
from devtools.devmint import DevMint, FakeWalletConfig


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temporary directory: pytest's tmp_path can be too long for a socket path."""
    path = Path(tempfile.mkdtemp(prefix="coco-cli-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """``run_cli(*args, input=None)``: the CLI in-process (CliRunner), exit code unchecked."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), input=input, catch_exceptions=True)

    return run


@pytest.fixture
def daemons(short_tmp: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """``daemons(name, *serve_args, init=True, start=True)``: a daemon for ``short_tmp/name``.

    The wallet is created with ``coco init`` first (unless ``init=False``); every daemon
    made is stopped (SIGTERM, then SIGKILL) at teardown.
    """
    made: list[DaemonProcess] = []

    def make(name: str = "w", *serve_args: str, init: bool = True,
             start: bool = True) -> DaemonProcess:
        data_dir = short_tmp / name
        if init and not data_dir.exists():
            result = CliRunner().invoke(main, ["init", "--data-dir", str(data_dir)])
            assert result.exit_code == 0, result.output
        daemon = DaemonProcess(data_dir, *serve_args)
        made.append(daemon)
        if start:
            daemon.start()
        return daemon

    yield make
    for daemon in made:
        daemon.stop()


@pytest.fixture
def wallet(daemons: Callable[..., DaemonProcess]) -> Callable[..., Wallet]:
    """``wallet(name, mint_url=None)``: a wallet with its daemon up (and the mint added)."""

    def make(name: str = "w", mint_url: str | None = None) -> Wallet:
        daemon = daemons(name)
        w = Wallet(daemon.data_dir, daemon)
        if mint_url is not None:
            w.cli("mint", "add", mint_url)
        return w

    return make


@pytest.fixture(scope="session")
def payee(tmp_path_factory: pytest.TempPathFactory, nutshell_bin: Path) -> Iterator[DevMint]:
    """A second mint, the payee of ``coco pay``: its mint quotes never pay themselves (a long
    incoming delay), so their invoices wait for a wallet to pay them. Shared; do not stop."""
    mint = DevMint(tmp_path_factory.mktemp("payee"), input_fee_ppk=0, nutshell_bin=nutshell_bin,
                   fakewallet=FakeWalletConfig(incoming_delay=600))
    mint.start(timeout=60.0)
    try:
        yield mint
    finally:
        mint.stop()


@pytest.fixture
def invoice_of(payee: DevMint) -> Callable[[int], str]:
    """``invoice_of(amount)``: a payable bolt11 invoice, a payee mint quote's request."""

    def make(amount: int) -> str:
        with MintClient(payee.url) as client:
            return client.create_mint_quote(amount).request

    return make
