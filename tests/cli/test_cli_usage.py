"""Usage errors exit 2 before anything talks to a daemon; ``send`` is a command and a group."""

from __future__ import annotations

import pytest
from cli_support import run_coco

USAGE_ERRORS = [
    ["nope"], ["mint", "nope"], ["mint", "add"], ["invoice"], ["invoice", "0", "--mint", "u"],
    ["invoice", "-5", "--mint", "u"], ["invoice", "10"], ["send", "abc", "--mint", "u"],
    ["send", "0", "--mint", "u"], ["send", "10"], ["send", "10", "--mint"],
    ["send", "execute"], ["send", "rollback"], ["send", "show"], ["receive"],
    ["history", "--limit", "0"], ["history", "--limit", "x"], ["balance", "--bogus"],
    ["status", "extra"], ["events", "--follow", "x"],
    ["pay"], ["pay", "lnbc1"], ["pay", "lnbc1", "--mint"], ["pay", "lnbc1", "--mint", "u",
    "--yes", "--timeout", "-1"], ["pay", "lnbc1", "--mint", "u", "--yes", "--timeout", "x"],
    ["melt", "nope"], ["melt", "show"], ["melt", "rollback"], ["melt", "pending", "extra"],
]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=" ".join)
def test_usage_errors_exit_2(args, run_cli, short_tmp):
    result = run_cli(*args, "--data-dir", str(short_tmp))
    assert result.exit_code == 2, result.output
    assert "Error:" in result.stderr and "Traceback" not in result.output


def test_send_usage_reads_as_coco_send(run_cli, short_tmp):
    result = run_cli("send", "abc", "--mint", "u", "--data-dir", str(short_tmp))
    assert result.stderr.startswith("Usage: coco send [OPTIONS] AMOUNT")
    assert "'abc' is not a valid integer" in result.stderr


def test_send_without_arguments_shows_both_forms(run_cli):
    result = run_cli("send")
    assert result.exit_code == 2
    assert "Usage: coco send AMOUNT --mint URL" in result.output
    assert "or: coco send COMMAND [ARGS]..." in result.output
    for sub in ("execute", "rollback", "show", "pending"):
        assert sub in result.output


@pytest.mark.parametrize("args", [
    ["send", "10", "--mint", "u", "--yes"],       # AMOUNT first
    ["send", "--mint", "u", "10", "--yes"],       # options first
    ["send", "--json", "10", "--mint", "u"],
    ["send", "pending"], ["send", "show", "x"],   # subcommands
])
def test_send_amount_and_subcommands_both_parse(args, run_cli, short_tmp):
    result = run_cli(*args, "--data-dir", str(short_tmp))
    assert result.exit_code == 3, result.output  # parsed fine; no daemon behind it


def test_help_of_every_command(run_cli):
    for args in (["--help"], ["send", "--help"], ["send", "5", "--help"], ["mint", "--help"],
                 ["serve", "--help"], ["init", "--help"], ["invoice", "--help"],
                 ["pay", "--help"], ["melt", "--help"], ["melt", "show", "--help"]):
        result = run_cli(*args)
        assert result.exit_code == 0, (args, result.output)
        assert result.output.startswith("Usage: coco")


def test_every_command_takes_data_dir_and_json(run_cli):
    for args in (["init"], ["serve"], ["stop"], ["status"], ["mint", "add"], ["mint", "list"],
                 ["mint", "info"], ["balance"], ["invoice"], ["send", "5"], ["send", "execute"],
                 ["send", "rollback"], ["send", "show"], ["send", "pending"], ["receive"],
                 ["history"], ["events"], ["pay"], ["melt", "show"], ["melt", "pending"],
                 ["melt", "rollback"]):
        out = run_cli(*args, "--help").output
        assert "--data-dir DIR" in out and "COCO_DATA_DIR" in out and "--json" in out, args


def test_the_console_script_exits_2_on_usage(short_tmp):
    proc = run_coco("send", "abc", "--mint", "u", "--data-dir", str(short_tmp))
    assert proc.returncode == 2
    assert proc.stderr.startswith("Usage: coco send [OPTIONS] AMOUNT")


@pytest.mark.parametrize("args", [
    ["pay", "lnbc1", "--mint", "u", "--yes"], ["pay", "--yes", "--mint", "u", "lnbc1", "--json"],
    ["pay", "lnbc1", "--mint", "u", "--yes", "--no-wait", "--timeout", "5"],
    ["melt", "show", "x"], ["melt", "pending"], ["melt", "rollback", "x"],
])
def test_pay_and_melt_parse(args, run_cli, short_tmp):
    result = run_cli(*args, "--data-dir", str(short_tmp))
    assert result.exit_code == 3, result.output  # parsed fine; no daemon behind it


def test_pay_without_yes_off_a_terminal_is_a_usage_error(run_cli, short_tmp):
    result = run_cli("pay", "lnbc1", "--mint", "u", "--data-dir", str(short_tmp))
    assert result.exit_code == 2  # before any daemon is asked (none runs: that would be 3)
    assert result.stderr.startswith("Usage: coco pay [OPTIONS] INVOICE")
    assert result.stderr.rstrip().endswith(
        "Error: stdin is not a terminal, so nobody can confirm the payment; add --yes to pay"
        " without asking")
