"""Helpers of the CLI tests: a ``coco serve`` child process, a wallet driven by the CLI.

(A module of its own, not ``conftest``: ``tests/cli`` has no ``__init__.py``, since a
package named ``cli`` would shadow the project's ``cli.py``.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from cli import main
from coco_actors.control import ControlClient, socket_path

#: The console script the project installs, next to the interpreter running the tests.
COCO = Path(sys.executable).with_name("coco")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


def coco_argv(*args: str) -> list[str]:
    return [str(COCO), *args] if COCO.exists() else [sys.executable, "-m", "cli", *args]


class DaemonProcess:
    """One ``coco serve --data-dir DIR`` child; its stderr (the log) is collected."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.proc: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False

    @property
    def socket(self) -> Path:
        return socket_path(self.data_dir)

    @property
    def log(self) -> str:
        with self._cond:
            return "".join(self._lines)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, ready: bool = True) -> DaemonProcess:
        proc = subprocess.Popen(coco_argv("serve", "--data-dir", str(self.data_dir),
                                          *self.extra),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        with self._cond:  # the reader of a process killed before may still be at its end
            self.proc, self._lines, self._eof = proc, [], False
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()
        if ready:
            self.wait_for(" ready: ", START_TIMEOUT)
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        """The log of ``proc``; once another process was started, it no longer counts
        (its end of stream must not pass for the new one's)."""
        assert proc.stderr is not None
        for line in proc.stderr:
            with self._cond:
                if proc is self.proc:
                    self._lines.append(line)
                    self._cond.notify_all()
        with self._cond:
            if proc is self.proc:
                self._eof = True
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> str:
        """Wait until the log contains ``text`` (fails if the daemon exits first)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: text in "".join(self._lines) or self._eof,
                                     timeout=timeout)
            log = "".join(self._lines)
        assert ok and text in log, f"daemon never logged {text!r}; log:\n{log}"
        return log

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        with self._cond:  # the whole log, up to the end of the stream
            self._cond.wait_for(lambda: self._eof, timeout=timeout)
        return code

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time (teardown)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()


class Wallet:
    """A data directory, its daemon, and the CLI pointed at it (in-process, CliRunner)."""

    def __init__(self, data_dir: Path, daemon: DaemonProcess) -> None:
        self.data_dir = data_dir
        self.daemon = daemon
        self.runner = CliRunner()

    def cli(self, *args: str, input: str | None = None, code: int | None = 0) -> Result:
        """Run ``coco ARGS --data-dir DIR``; check the exit code unless ``code`` is None."""
        result = self.runner.invoke(main, [*args, "--data-dir", str(self.data_dir)],
                                    input=input, catch_exceptions=True)
        if code is not None:
            assert result.exit_code == code, (
                f"coco {' '.join(args)} exited {result.exit_code}, not {code}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}\n"
                f"exception: {result.exception!r}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def spendable(self, url: str) -> int:
        return int(self.json("balance", "--mint", url)[url]["spendable"])

    def balance(self, url: str) -> dict[str, int]:
        return self.json("balance", "--mint", url)[url]  # type: ignore[no-any-return]

    def fund(self, url: str, amount: int = 1000) -> dict[str, Any]:
        res = self.json("invoice", str(amount), "--mint", url)
        assert res["operation"]["state"] == "completed"
        return res  # type: ignore[no-any-return]

    def send(self, url: str, amount: int) -> tuple[dict[str, Any], str]:
        res = self.json("send", str(amount), "--mint", url, "--yes")
        return res["operation"], res["token"]

    def client(self) -> ControlClient:
        return ControlClient(self.data_dir)

    def wait_event(self, event: str, op_id: str | None, timeout: float = 30.0, *,
                   skip: Collection[str] = ()) -> dict[str, Any]:
        """Follow the daemon's event stream (recent events first) until ``event`` for
        ``op_id`` arrives; ``op_id`` None: of any operation not in ``skip``."""
        found: list[dict[str, Any]] = []
        done = threading.Event()

        def matches(e: dict[str, Any]) -> bool:
            if e["event"] != event:
                return False
            return e["operation_id"] == op_id if op_id is not None else \
                e["operation_id"] not in skip

        def follow() -> None:
            with self.client() as client:
                for e in client.stream("/events", follow=1):
                    if matches(e):
                        found.append(e)
                        done.set()
                        return

        threading.Thread(target=follow, daemon=True).start()
        assert done.wait(timeout), (f"no {event} for {op_id or 'any operation'} within"
                                    f" {timeout} s; daemon log:\n{self.daemon.log}")
        return found[0]


def run_coco(*args: str, input: str | None = None, env: dict[str, str] | None = None,
             timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """The installed console script in a child process (for what CliRunner cannot show:
    the real exit code, the real stderr, the process boundary)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(coco_argv(*args), input=input, capture_output=True, text=True,
                          timeout=timeout, env=full_env, check=False)


def exchange(port: int, raw: bytes, *, shut: bool = True,
             bound: float = 10.0) -> tuple[int, dict[str, str], Any]:
    """Send ``raw`` to a TCP listener on 127.0.0.1 and read its JSON answer: (status,
    headers, body). ``shut``: half-close after sending (else the server must answer on
    what it has, e.g. a refused head)."""
    with socket.create_connection(("127.0.0.1", port), timeout=bound) as sock:
        try:
            sock.sendall(raw)
            if shut:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_all(sock, bound)
    head, sep, body = answer.partition(b"\r\n\r\n")
    assert sep, f"not an HTTP answer: {answer[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"] == "application/json", headers
    assert int(headers["content-length"]) == len(body)
    return status, headers, json.loads(body)


def read_all(sock: socket.socket, bound: float = 10.0) -> bytes:
    """Everything a server sends on ``sock`` until it closes (fails after ``bound`` s): for
    the raw-socket tests of the control socket and the payments listener."""
    deadline = time.monotonic() + bound
    answer = b""
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no end of the answer within {bound} s; got {answer[:200]!r}"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return answer
        if not chunk:
            return answer
        answer += chunk


def pairs_of(text: str) -> dict[str, str]:
    """The ``key   value`` lines of a human CLI output."""
    return dict(re.findall(r"^([a-z][a-z ]*?)\s{2,}(\S.*)$", text, re.M))


def sats(value: str) -> int:
    """``"12 sat"`` -> 12."""
    number, unit = value.split()
    assert unit == "sat", value
    return int(number)
