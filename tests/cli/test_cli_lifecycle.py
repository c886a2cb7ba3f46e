"""The daemon as a process: start, refuse, stop on signals, survive SIGKILL, log safely."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import threading

import pytest
from cli_support import Wallet, coco_argv, run_coco

from coco_actors.tokens import decode

#: Every command that needs a running daemon, with valid arguments.
DAEMON_COMMANDS = [
    ["status"], ["stop"], ["balance"], ["balance", "--mint", "http://127.0.0.1:1"],
    ["mint", "add", "http://127.0.0.1:1"], ["mint", "list"], ["mint", "info", "http://x"],
    ["invoice", "10", "--mint", "http://x"], ["send", "10", "--mint", "http://x", "--yes"],
    ["send", "execute", "abc"], ["send", "rollback", "abc"], ["send", "show", "abc"],
    ["send", "pending"], ["receive", "cashuBxyz"], ["history"], ["history", "--limit", "3"],
    ["events"], ["events", "--follow"],
]


@pytest.mark.parametrize("args", DAEMON_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_exit_3_when_no_daemon_runs(args, run_cli, short_tmp):
    result = run_cli(*args, "--data-dir", str(short_tmp))
    assert result.exit_code == 3, result.output
    assert f"coco serve --data-dir {short_tmp}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback


def test_exit_3_from_the_console_script_with_json_and_env(short_tmp):
    proc = run_coco("balance", "--json", env={"COCO_DATA_DIR": str(short_tmp)})
    assert proc.returncode == 3
    assert proc.stderr.startswith("Error: no coco daemon is running for")
    assert "Traceback" not in proc.stderr


def test_a_stale_socket_is_not_a_daemon(run_cli, short_tmp):
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(short_tmp / "control.sock"))  # bound, never listening: a killed daemon's
    sock.close()
    result = run_cli("status", "--data-dir", str(short_tmp))
    assert result.exit_code == 3
    assert "stale control socket" in result.stderr


def test_serve_without_a_wallet_refuses(daemons):
    daemon = daemons("empty", init=False, start=False).start(ready=False)
    assert daemon.wait_exit() == 1
    assert f"no wallet in {daemon.data_dir}; create one with: coco init" in daemon.log
    assert "Traceback" not in daemon.log


def test_second_serve_on_the_same_data_dir_refuses(daemons, run_cli):
    first = daemons("w")
    second = daemons("w", start=False).start(ready=False)
    assert second.wait_exit() == 1
    assert "already has" in second.log and "coco stop --data-dir" in second.log
    assert "Traceback" not in second.log
    result = run_cli("status", "--data-dir", str(first.data_dir), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["daemon"]["pid"] == first.pid  # untouched


def test_socket_is_0600_in_a_0700_directory(daemons):
    daemon = daemons("w")
    assert stat.S_ISSOCK(os.stat(daemon.socket).st_mode)
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(daemon.data_dir).st_mode) == 0o700


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_shuts_down_gracefully_and_removes_the_socket(daemons, signum):
    daemon = daemons("w")
    daemon.signal(signum)
    assert daemon.wait_exit() == 0
    assert not daemon.socket.exists()
    assert f"{signal.Signals(signum).name}: stopping" in daemon.log
    assert f"coco daemon {daemon.pid} stopped" in daemon.log
    daemon.start()  # the lock was released: it serves again at once
    assert daemon.socket.exists()


def test_coco_stop_returns_once_the_daemon_is_down(daemons, run_cli):
    daemon = daemons("w")
    result = run_cli("stop", "--data-dir", str(daemon.data_dir))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"coco daemon {daemon.pid} stopped"
    assert not daemon.socket.exists()
    assert daemon.wait_exit() == 0
    assert run_cli("status", "--data-dir", str(daemon.data_dir)).exit_code == 3


def test_sigkill_then_restart_keeps_balance_and_pending_operations(wallet, mint_fee100):
    url = mint_fee100.url
    w = wallet("w", url)
    w.fund(url)
    prepared = w.json("send", "40", "--mint", url, "--prepare-only")
    pending, token = w.send(url, 100)
    before = w.balance(url)
    pending_before = w.json("send", "pending")

    w.daemon.signal(signal.SIGKILL)
    assert w.daemon.wait_exit() == -signal.SIGKILL
    assert w.daemon.socket.exists()  # left behind: nobody cleaned up
    assert w.cli("status", code=3).stderr.count("stale control socket") == 1

    w.daemon.start()  # recovery runs; the stale socket is replaced
    assert w.balance(url) == before
    assert w.json("send", "pending") == pending_before
    assert {o["id"]: o["state"] for o in pending_before} == {
        prepared["id"]: "prepared", pending["id"]: "pending"}
    # both can still be finished after the restart
    w.cli("send", "rollback", prepared["id"])
    assert w.json("send", "show", pending["id"])["token"] == token
    rolled = w.json("send", "rollback", pending["id"])
    assert rolled["state"] == "rolled_back"
    reclaim_fee = -(-len(decode(token).proofs) * 100 // 1000)
    assert w.balance(url) == {"spendable": before["spendable"] + before["reserved"]
                              + 100 - reclaim_fee, "reserved": 0, "pending": 0,
                              "total": before["spendable"] + before["reserved"]
                              + 100 - reclaim_fee}


def test_log_has_one_line_per_transition_and_no_secret(daemons, mint_fee100, short_tmp,
                                                       run_cli):
    url = mint_fee100.url
    log_file = short_tmp / "logs" / "w.log"
    init = run_cli("init", "--json", "--data-dir", str(short_tmp / "w"))
    mnemonic = json.loads(init.stdout)["mnemonic"]
    daemon = daemons("w", "--log-file", str(log_file))
    w = Wallet(daemon.data_dir, daemon)
    w.cli("mint", "add", url)
    w.fund(url)
    op, token = w.send(url, 100)
    w.cli("receive", token)  # its own token: a receive, then the send completes
    w.wait_event("send:finalized", op["id"])
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
    log = daemon.log
    for state in ("prepared", "executing", "pending", "completed"):
        assert log.count(f"send {op['id']} -> {state} ") == 1, log
    for secret in (mnemonic, token[:40], *(p.secret for p in decode(token).proofs)):
        assert secret not in log
    assert log_file.read_text() == log
    assert stat.S_IMODE(os.stat(log_file).st_mode) == 0o600


def test_serve_json_logs_json_lines(daemons):
    daemon = daemons("w", "--json")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
    records = [json.loads(line) for line in daemon.log.splitlines()]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert records[-1]["message"] == f"coco daemon {daemon.pid} stopped"


def test_serve_refuses_a_data_dir_too_long_for_a_socket(run_cli, short_tmp):
    data_dir = short_tmp / ("d" * 100)
    assert run_cli("init", "--data-dir", str(data_dir)).exit_code == 0
    proc = run_coco("serve", "--data-dir", str(data_dir))
    assert proc.returncode == 1
    assert "choose a shorter --data-dir" in proc.stderr


def test_events_follow_streams_until_the_daemon_stops(wallet, mint_fee0):
    url = mint_fee0.url
    w = wallet("w", url)
    follower = subprocess.Popen(coco_argv("events", "--follow", "--json", "--data-dir",
                                          str(w.data_dir)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[dict] = []
    finalized = threading.Event()

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            lines.append(json.loads(line))
            if lines[-1]["event"] == "mint:finalized":
                finalized.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        w.fund(url, 64)
        assert finalized.wait(30), lines
        assert [e["event"] for e in lines] == ["mint:prepared", "mint:finalized"]
        assert lines[-1]["operation"]["amount"] == 64
        w.daemon.signal(signal.SIGTERM)
        assert follower.wait(timeout=60) == 0  # the stream ended with the daemon
        assert "the daemon stopped" in follower.stderr.read()  # type: ignore[union-attr]
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()

