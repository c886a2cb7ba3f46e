"""Shared fixtures: real Nutshell mints on loopback, started lazily.

Nothing here starts a mint unless a test asks for one of the mint fixtures, so pure unit
tests stay fast. Such tests get the ``mint`` marker automatically: ``-m "not mint"`` skips
them. A test that reaches a mint another way (``request.getfixturevalue``) carries the
marker itself; if it forgets, the guard below fails it the moment it starts a ``DevMint``,
so a missing marker cannot hide a mint inside ``-m "not mint"``. The first run installs
Nutshell into ``$COCO_CACHE_DIR`` (default ``~/.cache/coco-actors``), about 30 s; later
runs reuse it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import devtools.devmint
from devtools.devmint import DevMint, ensure_nutshell
from tests.support.proxy import FaultProxy

# Fixtures that bring up Nutshell; a test using any of them (directly or through another
# fixture) is marked ``mint``.
MINT_FIXTURES = frozenset({"nutshell_bin", "mint_fee0", "mint_fee100", "mint", "make_mint"})

# Generous: the first start on a cold machine also imports a large dependency tree.
_START_TIMEOUT_S = 60.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if MINT_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.mint)


# --- the guard: only a test marked ``mint`` may start a mint --------------------------------

#: The test whose setup, call or teardown runs now (None between tests and at collection).
_running: list[pytest.Item] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()


def _refuse_unmarked_start() -> None:
    """Runs in the thread that starts a ``DevMint``, before any process is spawned."""
    item = _running[-1] if _running else None
    if item is None:
        pytest.fail("a DevMint was started outside any test (at import or collection)",
                    pytrace=False)
    if item.get_closest_marker("mint") is None:
        pytest.fail(f"{item.nodeid} starts a DevMint but is not marked 'mint': mark it "
                    "(@pytest.mark.mint) or take a mint fixture, so that -m \"not mint\" "
                    "deselects it", pytrace=False)


def pytest_configure(config: pytest.Config) -> None:
    patch = pytest.MonkeyPatch()
    original = DevMint.start

    def start(self: DevMint, timeout: float = 30.0) -> DevMint:
        _refuse_unmarked_start()
        return original(self, timeout)

    # every module that uses DevMint (fixtures, devtools.demo) reaches this class object
    patch.setattr(devtools.devmint.DevMint, "start", start)
    config.add_cleanup(patch.undo)


@pytest.fixture(scope="session")
def nutshell_bin() -> Path:
    """The bin directory of the cached Nutshell 0.21.0 environment (installed on first use)."""
    return ensure_nutshell()


def _session_mint(
    factory: pytest.TempPathFactory, bin_dir: Path, input_fee_ppk: int
) -> Iterator[DevMint]:
    mint = DevMint(
        factory.mktemp(f"mint-fee{input_fee_ppk}"),
        input_fee_ppk=input_fee_ppk,
        nutshell_bin=bin_dir,
    )
    mint.start(timeout=_START_TIMEOUT_S)
    try:
        yield mint
    finally:
        mint.stop()


@pytest.fixture(scope="session")
def mint_fee0(tmp_path_factory: pytest.TempPathFactory, nutshell_bin: Path) -> Iterator[DevMint]:
    """One running mint without input fees, shared by the whole session. Do not stop it."""
    yield from _session_mint(tmp_path_factory, nutshell_bin, 0)


@pytest.fixture(scope="session")
def mint_fee100(tmp_path_factory: pytest.TempPathFactory, nutshell_bin: Path) -> Iterator[DevMint]:
    """One running mint charging 100 ppk per input, shared by the whole session."""
    yield from _session_mint(tmp_path_factory, nutshell_bin, 100)


@pytest.fixture(params=[0, 100], ids=["fee0", "fee100"])
def mint(request: pytest.FixtureRequest) -> DevMint:
    """Each shared mint in turn, for tests that must hold with and without input fees."""
    return request.getfixturevalue(f"mint_fee{request.param}")  # type: ignore[no-any-return]


@pytest.fixture
def make_mint(tmp_path: Path, nutshell_bin: Path) -> Iterator[Callable[..., DevMint]]:
    """A factory of private mints (not started) for tests that stop, restart or break one.

    ``make_mint(input_fee_ppk=0, **kwargs)`` returns a ``DevMint`` in its own directory under
    the test's ``tmp_path``; every mint made is stopped at teardown.
    """
    made: list[DevMint] = []

    def make(input_fee_ppk: int = 0, **kwargs: object) -> DevMint:
        mint = DevMint(
            tmp_path / f"mint-{len(made)}",
            input_fee_ppk=input_fee_ppk,
            nutshell_bin=nutshell_bin,
            **kwargs,  # type: ignore[arg-type]
        )
        made.append(mint)
        return mint

    yield make
    for mint in made:
        mint.stop()


@pytest.fixture
def proxy_for() -> Iterator[Callable[[str], FaultProxy]]:
    """``proxy_for(mint_url)``: a FaultProxy in front of that mint, stopped at teardown."""
    made: list[FaultProxy] = []

    def make(url: str) -> FaultProxy:
        made.append(FaultProxy(url))
        return made[-1]

    yield make
    for proxy in made:
        proxy.stop()
