"""coco (TS) as a peer wallet for interop tests: ``tests/interop_ts/harness.mjs`` under Node.

Development and test harness, not part of the wallet. :func:`ensure_ts_harness` installs the
harness once with ``npm ci`` (exact versions from the committed ``package-lock.json``) into a
cache outside the repository, ``<cache>/ts-interop-<hash>``, where the hash covers the lock
file, ``package.json`` and the script, so an edit to any of them installs afresh. Like
:func:`devtools.devmint.ensure_nutshell` it builds in a temporary directory and renames it
into place under an ``fcntl`` lock. :class:`TsWallet` runs one harness command per process
against a state directory of its own (the harness keeps seed, keys and proofs there).

Node 20 or later and npm must be on ``PATH``; without them every call raises
:class:`TsHarnessError` saying so (tests then fail, they never skip).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import cast

from devtools.devmint import _locked, default_cache_dir

__all__ = ["MIN_NODE_MAJOR", "TsHarnessError", "TsWallet", "ensure_ts_harness", "run_ts"]

MIN_NODE_MAJOR = 20

_SOURCE = Path(__file__).resolve().parent.parent / "tests" / "interop_ts"
_FILES = ("package.json", "package-lock.json", "harness.mjs")
_MARKER = ".coco-complete"
_NPM_TIMEOUT_S = 600.0
_TAIL_CHARS = 4000

JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


class TsHarnessError(RuntimeError):
    """Node or npm is missing, ``npm ci`` failed, or a harness command failed or timed out.

    The message carries the harness's own error or the tail of npm's output, never the
    command (which may hold a token).
    """


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise TsHarnessError(
            f"`{name}` is not on PATH: the coco (TS) interop tests need Node {MIN_NODE_MAJOR}+ "
            "and npm (see the README's test section)"
        )
    return path


def _check_node(node: str) -> None:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30,
                         check=False).stdout.strip()
    match = re.fullmatch(r"v(\d+)\..*", out)
    if match is None or int(match.group(1)) < MIN_NODE_MAJOR:
        raise TsHarnessError(f"Node {MIN_NODE_MAJOR}+ is needed for the coco (TS) interop "
                             f"tests; `node --version` says {out or 'nothing'}")


def _digest() -> str:
    h = hashlib.sha256()
    for name in _FILES:
        h.update(name.encode() + b"\0" + (_SOURCE / name).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def ensure_ts_harness(cache_dir: Path | None = None) -> Path:
    """Install the harness with ``npm ci`` once; return the directory holding ``harness.mjs``."""
    node = _tool("node")
    npm = _tool("npm")
    _check_node(node)
    cache = (cache_dir or default_cache_dir()).expanduser().resolve()
    name = f"ts-interop-{_digest()}"
    target = cache / name
    if (target / _MARKER).is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / f"{name}.lock"):
        if (target / _MARKER).is_file():  # another process finished while we waited
            return target
        for stale in cache.glob(f"{name}.tmp-*"):  # left by a crashed install
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():
            shutil.rmtree(target)
        tmp = Path(tempfile.mkdtemp(prefix=f"{name}.tmp-", dir=cache))
        try:
            for file in _FILES:
                shutil.copy2(_SOURCE / file, tmp / file)
            _npm_ci(npm, tmp)
            (tmp / _MARKER).write_text(f"{name}\n")
            tmp.chmod(0o755)  # mkdtemp made it private
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _npm_ci(npm: str, where: Path) -> None:
    cmd = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"]
    try:
        proc = subprocess.run(cmd, cwd=where, capture_output=True, text=True,
                              timeout=_NPM_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise TsHarnessError(f"npm ci did not finish in {_NPM_TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0:
        raise TsHarnessError(f"npm ci failed with exit code {proc.returncode}:\n"
                             f"{(proc.stdout + proc.stderr)[-_TAIL_CHARS:]}")


def run_ts(harness: Path, command: Mapping[str, JsonValue], *,
           timeout: float = 60.0) -> dict[str, JsonValue]:
    """Run one harness command (sent on stdin); return its JSON answer or raise.

    ``command`` is the harness's JSON command (``cmd``, ``state`` and the command's fields).
    """
    what = str(command.get("cmd"))
    try:
        proc = subprocess.run(
            [_tool("node"), str(harness / "harness.mjs")],
            input=json.dumps(command), capture_output=True, text=True, cwd=harness,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(harness)},
            timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        raise TsHarnessError(f"harness {what} timed out after {timeout} s") from None
    lines = proc.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise TsHarnessError(f"harness {what} exited {proc.returncode} without a JSON answer:\n"
                             f"{proc.stderr[-_TAIL_CHARS:]}")
    if proc.returncode != 0 or "error" in answer:
        raise TsHarnessError(f"harness {what} failed: {answer.get('error')}")
    return cast(dict[str, JsonValue], answer)


class TsWallet:
    """One coco (TS) wallet: its state lives in ``state_dir`` between harness processes."""

    def __init__(self, harness: Path, state_dir: Path) -> None:
        self.harness = harness
        self.state_dir = Path(state_dir).resolve()

    def _run(self, cmd: str, **fields: JsonValue) -> dict[str, JsonValue]:
        return run_ts(self.harness, {"cmd": cmd, "state": str(self.state_dir), **fields})

    def pubkey(self) -> str:
        """A fresh P2PK key from coco's key ring (its private half stays in the state dir)."""
        return str(self._run("pubkey")["pubkey"])

    def fund(self, mint_url: str, amount: int) -> int:
        """Mint ``amount`` sats through one quote; return the balance at that mint."""
        return int(cast(int, self._run("fund", mint=mint_url, amount=amount)["balance"]))

    def send(self, mint_url: str, amount: int, *, lock: str | None = None) -> str:
        """A token of exactly ``amount``, locked to ``lock`` (a public key) when given."""
        return str(self._run("send", mint=mint_url, amount=amount, lock=lock)["token"])

    def receive(self, token: str) -> int:
        """Redeem ``token`` (signing inputs locked to our keys); return the sats received."""
        return int(cast(int, self._run("receive", token=token)["received"]))

    def balance(self, mint_url: str | None = None) -> int:
        return int(cast(int, self._run("balance", mint=mint_url)["balance"]))
