"""A real Cashu mint on loopback: Nutshell 0.21.0 with the FakeWallet Lightning backend.

Development and test harness, not part of the wallet. Nutshell cannot share the project's
environment (it pins old httpx, click and coincurve, and ``pip install cashu`` no longer
resolves), so :func:`ensure_nutshell` installs an exact, pinned set into a virtual
environment of its own, once, in a cache outside the repository. :class:`DevMint` runs one
mint process from it on ``127.0.0.1`` with a clean environment and a data directory of its own.

Melt tests steer the fake lightning backend with :class:`FakeWalletConfig` (payments that
settle, pend or fail; how long until a mint quote pays itself) and decide a pending payment
by :meth:`DevMint.restart` with another config: Nutshell checks its pending melt quotes
against the backend when it starts.

``python -m devtools.devmint --fee 0 --data-dir DIR`` runs one mint in the foreground.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Self, get_args

import httpx

__all__ = [
    "FAILING",
    "NUTSHELL_VERSION",
    "PENDING",
    "SETTLED",
    "USD_ENV",
    "DevMint",
    "DevMintError",
    "FakeWalletConfig",
    "ensure_nutshell",
    "main",
    "run_nutshell_wallet",
]

NUTSHELL_VERSION = "0.21.0"

_HERE = Path(__file__).resolve().parent
_REQUIREMENTS = _HERE / f"nutshell-{NUTSHELL_VERSION}.txt"
_WALLET_SCRIPT = _HERE / "nutshell_wallet.py"
_MARKER = ".coco-complete"
_PIP_TIMEOUT_S = 900.0
_STOP_GRACE_S = 10.0
_LOG_TAIL_BYTES = 4000


class DevMintError(RuntimeError):
    """Installing, starting or talking to the development mint failed.

    The message carries the tail of pip's or the mint's output, which is where the cause is.
    """


# ---------------------------------------------------------------- installation


def default_cache_dir() -> Path:
    """``$COCO_CACHE_DIR``, else ``~/.cache/coco-actors``."""
    env = os.environ.get("COCO_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "coco-actors"


def _venv_name() -> str:
    return f"nutshell-{NUTSHELL_VERSION}-py3{sys.version_info.minor}"


def _requirements_text() -> str:
    text = _REQUIREMENTS.read_text()
    if sys.version_info >= (3, 13):
        # coincurve 20.0.0 has no wheels for 3.13 and does not build there.
        text = text.replace("coincurve==20.0.0", "coincurve==21.0.0")
    return text


def ensure_nutshell(cache_dir: Path | None = None) -> Path:
    """Install Nutshell into its own cached virtual environment once; return its bin dir.

    The environment is built in a temporary directory next to its final place and renamed
    into place only when complete, under an exclusive ``fcntl`` lock, so concurrent test
    processes neither race nor ever see a half-installed environment.
    """
    cache = (cache_dir or default_cache_dir()).expanduser().resolve()
    target = cache / _venv_name()
    if (target / _MARKER).is_file():
        return target / "bin"

    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / f"{_venv_name()}.lock"):
        if (target / _MARKER).is_file():  # another process finished while we waited
            return target / "bin"
        for stale in cache.glob(f"{_venv_name()}.tmp-*"):  # left by a crashed install
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():  # no marker: incomplete or foreign, rebuild
            shutil.rmtree(target)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_venv_name()}.tmp-", dir=cache))
        try:
            _build_venv(tmp, final=target)
            tmp.chmod(0o755)  # mkdtemp made it private
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target / "bin"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_venv(tmp: Path, *, final: Path) -> None:
    log = tmp / "install.log"
    _run_logged([sys.executable, "-m", "venv", str(tmp)], log, what="python -m venv")
    requirements = tmp / "requirements.txt"
    requirements.write_text(_requirements_text())
    _run_logged(
        [
            str(tmp / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
            str(requirements),
        ],
        log,
        what="pip install",
    )
    _relocate_scripts(tmp / "bin", old=tmp, new=final)
    (tmp / _MARKER).write_text(f"nutshell {NUTSHELL_VERSION}\n{sys.version}\n")


def _run_logged(cmd: Sequence[str], log: Path, *, what: str) -> None:
    with open(log, "ab") as out:
        try:
            proc = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, timeout=_PIP_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise DevMintError(
                f"{what} did not finish in {_PIP_TIMEOUT_S:.0f} s:\n{_tail(log)}"
            ) from None
    if proc.returncode != 0:
        raise DevMintError(f"{what} failed with exit code {proc.returncode}:\n{_tail(log)}")


def _relocate_scripts(bin_dir: Path, *, old: Path, new: Path) -> None:
    """Point console-script shebangs and activate scripts at the environment's final place.

    A virtual environment is not relocatable: pip writes the absolute interpreter path into
    every script it installs, and that path is the temporary one until the rename.
    """
    old_b, new_b = str(old).encode(), str(new).encode()
    for path in bin_dir.iterdir():
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if old_b in data:
            path.write_bytes(data.replace(old_b, new_b))


# ---------------------------------------------------------------- the fake lightning backend

PaymentState = Literal["SETTLED", "PENDING", "FAILED", "ERROR"]


@dataclass(frozen=True, slots=True)
class FakeWalletConfig:
    """How Nutshell's FakeWallet backend behaves (its ``FAKEWALLET_*`` settings).

    ``pay_invoice_state`` is what paying an invoice answers, ``payment_state`` what a later
    status check answers. A payment stays pending only if both are ``PENDING`` (one alone
    settles at the first status check); it fails only if both are ``FAILED``. Every mint
    quote pays itself ``incoming_delay`` seconds after it is created: an invoice another
    mint (or this one, internally) is to pay needs a long delay. With 0 the websocket
    "paid" event of a mint quote is lost. ``outgoing_delay`` holds every melt that long.
    """

    pay_invoice_state: PaymentState = "SETTLED"
    payment_state: PaymentState = "SETTLED"
    incoming_delay: float = 0.2
    outgoing_delay: float = 0.0

    def __post_init__(self) -> None:
        for name in ("pay_invoice_state", "payment_state"):
            if getattr(self, name) not in get_args(PaymentState):
                raise ValueError(f"{name} must be one of {get_args(PaymentState)}")
        if self.incoming_delay < 0 or self.outgoing_delay < 0:
            raise ValueError("delays must not be negative")

    def environment(self) -> dict[str, str]:
        return {
            "FAKEWALLET_PAY_INVOICE_STATE": self.pay_invoice_state,
            "FAKEWALLET_PAYMENT_STATE": self.payment_state,
            "FAKEWALLET_DELAY_INCOMING_PAYMENT": repr(float(self.incoming_delay)),
            "FAKEWALLET_DELAY_OUTGOING_PAYMENT": repr(float(self.outgoing_delay)),
        }


#: Payments settle at once (Nutshell's FakeWallet default, and the harness default).
SETTLED = FakeWalletConfig()
#: Payments stay in flight until the mint is restarted with another config.
PENDING = FakeWalletConfig(pay_invoice_state="PENDING", payment_state="PENDING")
#: Payments fail (a melt answers 20004 and its inputs are released).
FAILING = FakeWalletConfig(pay_invoice_state="FAILED", payment_state="FAILED")

#: ``extra_env`` of a mint serving usd as well as sat (FakeWallet, its own derivation path:
#: Nutshell takes a keyset's unit from the path).
USD_ENV: Mapping[str, str] = {"MINT_BACKEND_BOLT11_USD": "FakeWallet",
                              "MINT_DERIVATION_PATH_LIST": "[\"m/0'/2'/0'\"]"}


# ---------------------------------------------------------------- one mint


_running: weakref.WeakSet[DevMint] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    """Safety net: never leave a mint process behind when the interpreter exits."""
    for mint in list(_running):
        mint.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a server started next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, *, start: int = 0, limit: int = _LOG_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(start, size - limit))
            return handle.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no output: {exc})"


class DevMint:
    """One Nutshell mint process with the FakeWallet backend on ``127.0.0.1``.

    Everything that identifies the mint is fixed per instance: the port (picked once) and
    the private key (so keyset ids stay the same), so ``stop()`` then ``start()`` brings back
    the same mint at the same URL with the same data, as after a real outage. Nutshell stores
    the input fee with the keyset, so a reused ``data_dir`` keeps the fee it was created with.

    Lightning is fake (see :class:`FakeWalletConfig`; by default a mint quote is paid as soon
    as anyone asks about it, the websocket notification follows after 0.2 s, and any
    well-formed bolt11 invoice melts at once). ``extra_env`` is applied last and overrides
    anything, the FakeWallet settings included. ``rpc=True`` opens Nutshell's management RPC
    on a loopback port of its own (no TLS), so :meth:`rotate_keyset` can rotate it live.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        input_fee_ppk: int,
        port: int | None = None,
        private_key: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        nutshell_bin: Path | None = None,
        fakewallet: FakeWalletConfig = SETTLED,
        rpc: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.input_fee_ppk = input_fee_ppk
        self.port = port if port is not None else free_port()
        self.private_key = private_key or secrets.token_hex(32)
        self.extra_env: dict[str, str] = dict(extra_env or {})
        self.fakewallet = fakewallet
        #: The management RPC port (plain gRPC, no TLS, loopback) if ``rpc``, else None.
        self.rpc_port: int | None = free_port() if rpc else None
        self._bin = nutshell_bin
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "mint.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def environment(self, bin_dir: Path) -> dict[str, str]:
        """The whole environment of the mint process: nothing is inherited from ours.

        Nutshell also reads ``./.env`` and ``~/.cashu/.env`` with override, hence HOME and the
        working directory inside the data directory.
        """
        env = {
            "PATH": f"{bin_dir}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(self.data_dir),
            "MINT_BACKEND_BOLT11_SAT": "FakeWallet",
            "MINT_PRIVATE_KEY": self.private_key,
            "MINT_LISTEN_HOST": "127.0.0.1",
            "MINT_LISTEN_PORT": str(self.port),
            "MINT_DATABASE": str(self.data_dir / "mint"),
            "MINT_AUTH_DATABASE": str(self.data_dir / "auth"),
            "MINT_INPUT_FEE_PPK": str(self.input_fee_ppk),
            "MINT_RATE_LIMIT": "FALSE",
        }
        env.update(self.fakewallet.environment())
        if self.rpc_port is not None:
            env.update({
                "MINT_RPC_SERVER_ENABLE": "TRUE",
                "MINT_RPC_SERVER_MUTUAL_TLS": "FALSE",
                "MINT_RPC_SERVER_ADDR": "127.0.0.1",
                "MINT_RPC_SERVER_PORT": str(self.rpc_port),
            })
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0) -> Self:
        """Spawn the mint and return once ``GET /v1/info`` answers.

        Raises :class:`DevMintError` with the tail of the mint's log if it exits early or does
        not answer within ``timeout`` seconds (the process is then killed).
        """
        with self._lock:
            if self.is_running:
                raise DevMintError(f"mint at {self.url} is already running (pid {self.pid})")
            bin_dir = self._bin or ensure_nutshell()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
            log_start = self._log.tell()
            self._log.write(f"--- coco-actors DevMint start {time.ctime()} ---\n".encode())
            self._log.flush()
            self._proc = subprocess.Popen(
                [str(bin_dir / "python"), str(bin_dir / "mint")],
                env=self.environment(bin_dir),
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            _running.add(self)
        try:
            self._wait_ready(timeout, log_start)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float, log_start: int) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                code = self._proc.poll()
                if code is not None:
                    raise DevMintError(
                        f"mint exited with code {code} before answering; log "
                        f"{self.log_path}:\n{_tail(self.log_path, start=log_start)}"
                    )
                try:
                    if client.get(f"{self.url}/v1/info").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() >= deadline:
                    raise DevMintError(
                        f"mint at {self.url} did not answer /v1/info within {timeout} s; log "
                        f"{self.log_path}:\n{_tail(self.log_path, start=log_start)}"
                    )
                time.sleep(0.1)  # polling another process: there is nothing to wait on

    def restart(self, fakewallet: FakeWalletConfig | None = None, timeout: float = 30.0) -> Self:
        """Stop, then start on the same data directory, port and key, with new settings.

        Nutshell checks every pending melt quote against the backend when it starts (and
        whenever the quote is asked about), so a restart with :data:`SETTLED` or
        :data:`FAILING` decides a payment left in flight by :data:`PENDING`.
        """
        self.stop()
        if fakewallet is not None:
            self.fakewallet = fakewallet
        return self.start(timeout)

    def active_keyset_ids(self, unit: str = "sat") -> frozenset[str]:
        """The ids ``GET /v1/keysets`` lists as active for ``unit``."""
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            response = client.get(f"{self.url}/v1/keysets")
            response.raise_for_status()
            keysets = response.json()["keysets"]
        return frozenset(
            str(k["id"]) for k in keysets if k.get("active") and k.get("unit") == unit
        )

    def rotate_keyset(
        self,
        unit: str = "sat",
        input_fee_ppk: int | None = None,
        *,
        final_expiry: int,
        timeout: float = 30.0,
    ) -> None:
        """Rotate ``unit`` to a new keyset live, through Nutshell's management RPC.

        Needs ``rpc=True``. The old keyset goes inactive (its proofs still swap; outputs for it
        answer 12002). ``input_fee_ppk`` defaults to the mint's fee. An expiry is required:
        without one Nutshell hashes ``|final_expiry:0`` into the id where NUT-02 omits a zero.
        Returns once ``/v1/keysets`` lists a new active keyset for ``unit`` and none of the old.
        """
        if self.rpc_port is None:
            raise DevMintError("rotate_keyset needs a mint started with rpc=True")
        if not self.is_running:
            raise DevMintError(f"mint at {self.url} is not running")
        fee = self.input_fee_ppk if input_fee_ppk is None else input_fee_ppk
        before = self.active_keyset_ids(unit)
        bin_dir = self._bin or ensure_nutshell()
        cmd = [
            str(bin_dir / "python"), str(bin_dir / "mint-cli"), "--insecure",
            "-h", "127.0.0.1", "-p", str(self.rpc_port),
            "next-keyset", unit, str(fee), "0", str(final_expiry),
        ]
        env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(self.data_dir)}
        try:
            proc = subprocess.run(
                cmd, env=env, cwd=self.data_dir, capture_output=True, timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DevMintError(f"mint-cli next-keyset timed out after {timeout} s") from exc
        err = proc.stderr.decode("utf-8", "replace")[-_LOG_TAIL_BYTES:]
        # mint-cli prints an RPC failure as "Error: ..." on stderr and still exits 0.
        if proc.returncode != 0 or "Error" in err:
            raise DevMintError(
                f"mint-cli next-keyset failed with exit code {proc.returncode}:\n{err}"
            )
        deadline = time.monotonic() + timeout
        while True:
            now = self.active_keyset_ids(unit)
            if now and not now & before:
                return
            if time.monotonic() >= deadline:
                raise DevMintError(
                    f"no new active {unit} keyset within {timeout} s (still {sorted(now)})"
                )
            time.sleep(0.1)  # polling another process: there is nothing to wait on

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s. Idempotent; the data directory stays."""
        with self._lock:
            proc, self._proc = self._proc, None
            _running.discard(self)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=_STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> Self:
        if not self.is_running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running else "stopped"
        return (f"DevMint({self.url}, fee {self.input_fee_ppk} ppk, {self.fakewallet}, {state}, "
                f"{self.data_dir})")


# ---------------------------------------------------------------- Nutshell's own wallet


def run_nutshell_wallet(
    args: Sequence[str],
    *,
    db_dir: Path,
    bin_dir: Path | None = None,
    timeout: float = 60.0,
) -> str:
    """Run ``nutshell_wallet.py`` (Nutshell's wallet code, for interop tests); return stdout.

    ``args`` are the subcommand and its options without ``--db``, e.g.
    ``["send", "--mint", url, "--amount", "64"]``. Like the mint it runs with a clean
    environment, HOME and working directory in ``db_dir``.
    """
    bin_dir = bin_dir or ensure_nutshell()
    db_dir = Path(db_dir).resolve()
    db_dir.mkdir(parents=True, exist_ok=True)
    command, *rest = args
    cmd = [str(bin_dir / "python"), str(_WALLET_SCRIPT), command, "--db", str(db_dir), *rest]
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(db_dir)}
    try:
        proc = subprocess.run(
            cmd, env=env, cwd=db_dir, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DevMintError(f"nutshell_wallet.py {command} timed out after {timeout} s") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace")[-_LOG_TAIL_BYTES:]
        raise DevMintError(
            f"nutshell_wallet.py {command} failed with exit code {proc.returncode}:\n{err}"
        )
    return proc.stdout.decode()


# ---------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """Run one mint in the foreground until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.devmint",
        description="Run a Nutshell mint with the FakeWallet backend on 127.0.0.1.",
    )
    parser.add_argument("--fee", type=int, default=0, help="input fee in ppk (default 0)")
    parser.add_argument("--data-dir", type=Path, required=True, help="mint data directory")
    parser.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    parser.add_argument(
        "--private-key",
        default=None,
        help="mint private key; keep it to get the same keysets from the same data dir",
    )
    parser.add_argument(
        "--payments",
        choices=("settled", "pending", "failing"),
        default="settled",
        help="what lightning payments (melts) do (default: settle at once)",
    )
    parser.add_argument(
        "--incoming-delay",
        type=float,
        default=SETTLED.incoming_delay,
        help="seconds until a mint quote pays itself (default 0.2; long for internal melts)",
    )
    opts = parser.parse_args(argv)
    preset = {"settled": SETTLED, "pending": PENDING, "failing": FAILING}[opts.payments]
    fakewallet = FakeWalletConfig(
        pay_invoice_state=preset.pay_invoice_state,
        payment_state=preset.payment_state,
        incoming_delay=opts.incoming_delay,
    )

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    mint = DevMint(
        opts.data_dir,
        input_fee_ppk=opts.fee,
        port=opts.port,
        private_key=opts.private_key,
        fakewallet=fakewallet,
    )
    try:
        mint.start()
    except DevMintError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(mint.url, flush=True)
    print(f"fee {opts.fee} ppk, payments {opts.payments}, log {mint.log_path}; Ctrl-C stops it",
          file=sys.stderr)
    try:
        while not stop.wait(0.5):
            if not mint.is_running:
                print(f"error: the mint exited; see {mint.log_path}", file=sys.stderr)
                return 1
    finally:
        mint.stop()
    return 0
