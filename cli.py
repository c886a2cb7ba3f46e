"""The ``coco`` command line (click). Thin: parse, call the daemon, format.

Every wallet command talks to ``coco serve`` over its control socket
(:class:`coco_actors.control.ControlClient`), or with ``coco --url URL`` (or
``COCO_URL``) over TCP with the bearer token of ``--token-file``, ``COCO_TOKEN`` or
``DIR/api-token``; only ``init`` and ``serve`` open the wallet themselves
(:mod:`coco_actors.control.lifecycle`). Every command takes ``--data-dir`` (or
``COCO_DATA_DIR``) and ``--json``. Exit codes: 0 success,
1 the wallet said no (insufficient funds, unknown operation, mint rejected, ...),
2 usage error, 3 no daemon running.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from coco_actors.control import (
    ControlClient,
    DaemonTimeout,
    DaemonUnavailable,
    RequestFailed,
    default_data_dir,
    op_path,
    serve_hint,
    socket_path,
)
from coco_actors.control.auth import read_token, rotate_token
from coco_actors.control.client import READ_TIMEOUT
from coco_actors.control.paths import token_path
from coco_actors.errors import CocoError
from coco_actors.events import DEFAULT_RETENTION
from coco_actors.idempotency import step_key
from coco_actors.pacing import DEFAULT_BURST, DEFAULT_MAX_WAIT, DEFAULT_RATE
from coco_actors.proof_ledger import DEFAULT_IDEMPOTENCY_TTL
from coco_actors.refresher import DEFAULT_KEYSET_REFRESH

#: How long ``coco stop`` waits for the daemon to finish its shutdown.
STOP_TIMEOUT = 120.0
#: Longest the mint may hold the answer to ``coco pay``'s melt request; a payment still
#: in flight after it is followed with ``/melt/wait``.
EXECUTE_WAIT = 60.0


class DomainError(click.ClickException):
    """The wallet (or the daemon) said no: exit code 1."""

    exit_code = 1


class DaemonDown(click.ClickException):
    """No daemon answers on the control socket: exit code 3."""

    exit_code = 3


# --- output -----------------------------------------------------------------------------


class Ui:
    """What one command invocation needs: where the wallet is, how to print, the client."""

    def __init__(self, data_dir: Path, as_json: bool, *, url: str | None = None,
                 token_file: Path | None = None, idempotency_key: str | None = None) -> None:
        self.data_dir = data_dir
        self.as_json = as_json
        #: ``coco --url``: the daemon's control API on a TCP port (else its Unix socket)
        self.url = url
        self.token_file = token_file
        self.idempotency_key = idempotency_key
        self._client: ControlClient | None = None

    def key(self, step: str = "") -> str | None:
        """The ``Idempotency-Key`` of one request of this command: ``--idempotency-key``
        itself for its first request, a key derived from it for each later ``step``
        (an execute has its own key), so running the command again repeats nothing."""
        if self.idempotency_key is None or not step:
            return self.idempotency_key
        return step_key(self.idempotency_key, step)

    @property
    def client(self) -> ControlClient:
        if self._client is None:
            self._client = (ControlClient(self.data_dir) if self.url is None else
                            ControlClient(self.data_dir, url=self.url, token=self._token()))
        return self._client

    def _token(self) -> str:
        """The bearer token for ``--url``: ``--token-file``, else ``COCO_TOKEN``, else the
        data directory's ``api-token``."""
        if self.token_file is not None:
            return read_token(self.token_file)
        env = os.environ.get("COCO_TOKEN", "").strip()
        return env or read_token(token_path(self.data_dir))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def result(self, data: Any, human: Callable[[], None] | str) -> None:
        """Print ``data`` as JSON with ``--json``, else the human rendering."""
        if self.as_json:
            click.echo(json.dumps(data, indent=2))
        elif callable(human):
            human()
        else:
            click.echo(human)

    def note(self, text: str) -> None:
        """A message for the person at the terminal (stderr: stdout stays parseable)."""
        click.echo(text, err=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
          right: Iterable[int] = ()) -> str:
    """An aligned text table; the columns in ``right`` are right-aligned (numbers)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    right_set = set(right)

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right_set else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    return "\n".join([line(list(headers)), *(line(r) for r in cells)])


def pairs(items: Iterable[tuple[str, Any]]) -> str:
    """``key   value`` lines with the values aligned."""
    items = list(items)
    width = max(len(k) for k, _ in items)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in items)


def when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def sat(n: int, unit: str = "sat") -> str:
    return f"{n} {unit}"


UNIT_OPTION = click.option("--unit", default="sat", show_default=True, metavar="UNIT",
                           help="the unit of the amounts (the mint needs a keyset of it)")


def balance_table(balances: dict[str, dict[str, int]],
                  summed: dict[str, int] | None = None) -> str:
    """One row per mint; ``summed`` (the daemon's total over all mints) as a last row."""
    if not balances:
        return "no mints yet; add one with: coco mint add URL"
    rows = [(url, b["spendable"], b["reserved"], b["pending"], b["total"])
            for url, b in sorted(balances.items())]
    if summed is not None:
        rows.append(("all mints", summed["spendable"], summed["reserved"], summed["pending"],
                     summed["total"]))
    return table(["MINT", "SPENDABLE", "RESERVED", "PENDING", "TOTAL"], rows,
                 right=(1, 2, 3, 4))


def operations_table(ops: Sequence[dict[str, Any]]) -> str:
    return table(["ID", "TYPE", "AMOUNT", "FEE", "STATE", "MINT", "CREATED"],
                 [(o.get("id") or o.get("operation_id"), o["type"],
                   _amount(o), o["fee"], o["state"], _mints_of(o), when(o["created_at"]))
                  for o in ops], right=(2, 3))


def _amount(op: dict[str, Any]) -> str:
    """An operation's amount; its unit written out unless sat (the default)."""
    unit = op.get("unit") or "sat"
    return str(op["amount"]) if unit == "sat" else f"{op['amount']} {unit}"


def _mints_of(op: dict[str, Any]) -> str:
    """The mint of an operation; ``FROM -> TO`` for a transfer."""
    to = op.get("to_mint_url")
    return f"{op['mint_url']} -> {to}" if to else str(op["mint_url"])


def operation_details(op: dict[str, Any]) -> str:
    unit = op.get("unit") or "sat"

    def amt(n: int) -> str:
        return sat(n, unit)

    mints = ([("from", op["mint_url"]), ("to", op["to_mint_url"])] if op["type"] == "transfer"
             else [("mint", op["mint_url"])])
    rows = [("operation", op["id"]), ("type", op["type"]), ("state", op["state"]), *mints,
            ("amount", amt(op["amount"])), ("fee", amt(op["fee"]))]
    if op["type"] == "send":
        rows += [("total input", amt(op["input_amount"])),
                 ("swap", "yes" if op["needs_swap"] else "no (exact proofs)")]
    if op["type"] == "melt":
        rows += [("fee reserve", amt(op["fee_reserve"])),
                 ("total input", amt(op["input_amount"])),
                 ("swap", "yes, then melt" if op["needs_swap"] else "no (direct melt)"),
                 ("quote", op["quote_id"] or "-")]
        if op["state"] == "completed":
            rows += [("lightning fee", amt(op["fee_paid"])), ("change", amt(op["change_amount"])),
                     ("preimage", op["preimage"] or "-")]
        rows.append(("invoice", op["invoice"] or "-"))
    if op["type"] == "transfer":
        rows += [("fee reserve", amt(op["fee_reserve"])),
                 ("total input", amt(op["input_amount"])),
                 ("received", amt(op["received"]))]
        if op["state"] == "completed":
            rows.append(("lightning fee", amt(op["fee_paid"])))
        rows += [("melt leg", op["melt_id"] or "-"), ("mint leg", op["mint_leg_id"] or "-")]
    rows += [("created", when(op["created_at"])), ("updated", when(op["updated_at"]))]
    if op.get("error"):
        rows.append(("error", op["error"]))
    return pairs(rows)


# --- commands: options and errors common to all -----------------------------------------


def _data_dir(value: Path | None) -> Path:
    return (value.expanduser() if value is not None else default_data_dir()).absolute()


def wallet_command(group: click.Group, name: str | None = None, *, idempotent: bool = False,
                   **attrs: Any) -> Callable[[Callable[..., None]], click.Command]:
    """A command with ``--data-dir`` and ``--json`` whose errors become one line and an
    exit code: the callback gets a :class:`Ui` first. ``idempotent``: it changes money
    and takes ``--idempotency-key K`` (:meth:`Ui.key`)."""

    def decorate(fn: Callable[..., None]) -> click.Command:
        if idempotent:
            fn = click.option(
                "--idempotency-key", "idempotency_key", metavar="K", default=None,
                help="run at most once per K (1-255 printable ASCII): the same command "
                     "again with K returns the first result")(fn)

        @group.command(name, **attrs)
        @click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                      envvar="COCO_DATA_DIR", show_envvar=True, metavar="DIR",
                      help="the wallet's data directory [default: the user data directory"
                           " + coco-actors]")
        @click.option("--json", "as_json", is_flag=True, help="machine-readable output")
        @functools.wraps(fn)
        def command(data_dir: Path | None, as_json: bool, **kwargs: Any) -> None:
            url, token_file = _remote()
            ui = Ui(_data_dir(data_dir), as_json, url=url, token_file=token_file,
                    idempotency_key=kwargs.pop("idempotency_key", None))
            try:
                fn(ui, **kwargs)
            except DaemonUnavailable as exc:
                raise DaemonDown(str(exc)) from None
            except RequestFailed as exc:
                if as_json:
                    click.echo(json.dumps({"error": exc.error}, indent=2))
                raise DomainError(exc.message) from None
            except DaemonTimeout as exc:
                raise DomainError(str(exc)) from None
            except CocoError as exc:  # init and serve, which open the wallet themselves
                raise DomainError(str(exc)) from None
            finally:
                ui.close()

        return command

    return decorate


def _remote() -> tuple[str | None, Path | None]:
    """``coco --url URL --token-file F``: the root command's options."""
    params = click.get_current_context().find_root().params
    url, token_file = params.get("url"), params.get("token_file")
    return (url if isinstance(url, str) else None,
            token_file.expanduser() if isinstance(token_file, Path) else None)


def _url(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if not value.startswith(("http://", "https://")):
        raise click.BadParameter(f"{value!r} is not an http(s) URL", param_hint="--url")
    return value.rstrip("/")


class CocoGroup(click.Group):
    """Errors are one line: an unexpected one too (COCO_DEBUG=1 shows its traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if os.environ.get("COCO_DEBUG"):
                raise
            raise DomainError(f"unexpected {type(exc).__name__}: {exc}"
                              " (COCO_DEBUG=1 shows the traceback)") from exc


@click.group("coco", cls=CocoGroup)
@click.version_option(package_name="coco-actors", prog_name="coco")
@click.option("--url", envvar="COCO_URL", show_envvar=True, metavar="URL",
              callback=lambda ctx, param, value: _url(value),
              help="talk to the daemon's control API at this URL (coco serve --listen)"
                   " instead of its Unix socket")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="with --url: the bearer token's file [default: $COCO_TOKEN, else"
                   " DIR/api-token]")
def main(url: str | None, token_file: Path | None) -> None:
    """coco-actors: a crash-safe Cashu ecash wallet.

    \b
    Start here:
      coco init                  create a wallet (prints its mnemonic once)
      coco serve                 run the wallet daemon (foreground)
      coco mint add URL          trust a mint
      coco invoice 1000 --mint URL
      coco send 100 --mint URL   prints a token
      coco receive TOKEN [--into URL]
      coco pay INVOICE --mint URL  pays a lightning invoice
      coco request new 100 --mint URL  a payment request (creqA); coco pay creqA... pays one
      coco transfer 100 --from URL --to URL
      coco audit [--fix]         the wallet's proofs checked at its mints
      coco serve --listen 127.0.0.1:PORT   the same API over TCP (coco token show)
    """


# --- the wallet itself: init, serve, stop, status ------------------------------------------


@wallet_command(main)
@click.option("--restore", is_flag=True,
              help="restore from an existing mnemonic (asked for, or read from stdin)")
@click.option("--mint", "mints", multiple=True, metavar="URL",
              help="trust this mint right away (repeatable)")
def init(ui: Ui, restore: bool, mints: tuple[str, ...]) -> None:
    """Create a wallet (no daemon needed); prints its mnemonic once.

    With --restore the wallet takes the mnemonic you give, and restores its
    proofs from each --mint (NUT-09). Later: coco mint add URL --restore.
    """
    from coco_actors.control.lifecycle import init_wallet

    mnemonic = _read_mnemonic() if restore else None
    res = init_wallet(ui.data_dir, mnemonic=mnemonic, mints=mints)
    data = {"data_dir": str(res.data_dir), "mints": res.mints, "restored": res.restored,
            "errors": res.errors}
    if not restore:
        data["mnemonic"] = res.mnemonic
    if res.api_token:
        data["api_token"] = res.api_token

    def human() -> None:
        if restore:
            click.echo(f"restored the wallet seed into {res.data_dir}")
            for url, report in res.restored.items():
                click.echo(f"restored {_restored(report)} from {url}")
        else:
            click.echo(f"created a wallet in {res.data_dir}")
            click.echo("mnemonic (shown only this once: write it down and keep it secret,"
                       " it is the key to the funds):")
            click.echo(f"\n    {res.mnemonic}\n")
        for url in res.mints:
            click.echo(f"trusts mint {url}")
        if res.api_token:
            click.echo(f"API token (for coco serve --listen; coco token show prints it again):"
                       f" {res.api_token}")
        click.echo(f"start the daemon with: {serve_hint(res.data_dir)}")

    ui.result(data, human)
    if res.errors:  # after the mnemonic was shown: the wallet exists regardless
        raise DomainError("; ".join(f"could not add mint {url}: {why}"
                                    for url, why in res.errors.items()))


def _read_mnemonic() -> str:
    if sys.stdin.isatty():
        text = click.prompt("mnemonic (12 or 24 words)", hide_input=True, err=True)
    else:
        text = sys.stdin.read()
    return " ".join(text.lower().split())


@wallet_command(main)
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path),
              help="also append the log to this file (created 0600)")
@click.option("--rollback-prepared-after", type=click.FloatRange(min=0), metavar="SECONDS",
              help="at start, roll back sends prepared longer ago than this [default: never]")
@click.option("--exposure", "exposure", multiple=True, metavar="URL=LIMIT",
              callback=lambda ctx, param, value: _exposure(value),
              help="keep at most LIMIT sats spendable at mint URL; the excess is transferred"
                   " to --sweep-to (repeatable) [default: no limits]")
@click.option("--sweep-to", metavar="URL", help="the mint that receives what --exposure sweeps")
@click.option("--listen", metavar="HOST:PORT",
              callback=lambda ctx, param, value: _control_listen(value),
              help="also serve the control API on this TCP address (an IP literal; 127.0.0.1"
                   " unless HOST is given), every request with the bearer token of"
                   " DIR/api-token (coco token show)")
@click.option("--payments-listen", metavar="[HOST:]PORT",
              callback=lambda ctx, param, value: _listen(value),
              help="also serve POST /payments/<request id> (NUT-18 payment requests) on this"
                   " public TCP port; 127.0.0.1 unless HOST is given (0.0.0.0: every interface)")
@click.option("--payments-url", metavar="URL",
              help="the listener's public URL, put into payment requests (behind a reverse"
                   " proxy) [default: http://HOST:PORT as bound]")
@click.option("--payments-rate", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True, metavar="N",
              help="requests per second each client address may send the payments listener")
@click.option("--idempotency-ttl", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_IDEMPOTENCY_TTL, show_default=True, metavar="SECONDS",
              help="how long an Idempotency-Key is kept (a key reused later is a new call)")
@click.option("--event-retention", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_RETENTION, metavar="SECONDS",
              help="keep wallet events (GET /events?after=SEQ) this long  [default: 7 days]")
@click.option("--keyset-refresh", type=click.FloatRange(min=0),
              default=DEFAULT_KEYSET_REFRESH, show_default=True, metavar="SECONDS",
              help="fetch every mint's keysets again this often (0: only after a reconnect,"
                   " an unknown keyset or a 12002 answer)")
@click.option("--webhook", "webhook_urls", multiple=True, metavar="URL",
              help="POST every event, signed, to this URL (repeatable; loopback or an"
                   " --webhook-allow-host)")
@click.option("--webhook-secret-file", "webhook_secret_files", multiple=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="the signing secret (whsec_<base64>, or plain text) of the --webhook in"
                   " the same position, or one file for all; mode 0600 (repeatable)")
@click.option("--webhook-allow-host", "webhook_hosts", multiple=True, metavar="HOST",
              help="a non-loopback host webhooks may be sent to (repeatable)")
@click.option("--webhook-backoff", metavar="FIRST,CAP", default="1,60", show_default=True,
              callback=lambda ctx, param, value: _backoff(value),
              help="seconds before the first retry of a failed delivery, and the most"
                   " between two (doubling, plus jitter)")
@click.option("--consolidate-above", type=click.IntRange(min=1), metavar="N",
              help="consolidate a mint's proofs when it holds more than N [default: never]")
@click.option("--consolidate-inactive", type=click.Choice(["expiring", "any", "off"]),
              default="expiring", show_default=True,
              help="move proofs of inactive keysets into the active one: those whose"
                   " final_expiry is within --consolidate-margin, any, or none")
@click.option("--consolidate-margin", type=click.FloatRange(min=0, min_open=True),
              default=14 * 24 * 3600.0, metavar="SECONDS",
              help="how long before a keyset's final_expiry its proofs move [default: 14 days]")
@click.option("--consolidate-max-fee-fraction", type=click.FloatRange(min=0, max=1),
              default=0.1, show_default=True, metavar="F",
              help="skip a consolidation whose input fee is above this fraction of its amount")
@click.option("--mint-rate", type=click.FloatRange(min=0), default=DEFAULT_RATE,
              show_default=True, metavar="N",
              help="requests per second to each mint (0: unpaced); loopback mints only with"
                   " --pace-loopback")
@click.option("--mint-burst", type=click.IntRange(min=1), default=DEFAULT_BURST,
              show_default=True, metavar="N",
              help="requests that may go to a mint at once after a quiet spell")
@click.option("--pace-loopback", is_flag=True, help="pace mints on 127.0.0.1/::1 too")
@click.option("--mint-limit-wait", type=click.FloatRange(min=0), default=DEFAULT_MAX_WAIT,
              show_default=True, metavar="SECONDS",
              help="how long a mint's 429s are waited out (its Retry-After, else backoff)"
                   " before the call fails with mint_rate_limited; the operation stays")
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
def serve(ui: Ui, log_file: Path | None, rollback_prepared_after: float | None,
          exposure: dict[str, int], sweep_to: str | None,
          payments_listen: tuple[str, int] | None, payments_url: str | None,
          payments_rate: float, idempotency_ttl: float, event_retention: float,
          keyset_refresh: float, webhook_urls: tuple[str, ...],
          webhook_secret_files: tuple[Path, ...], webhook_hosts: tuple[str, ...],
          webhook_backoff: tuple[float, float], verbose: bool,
          listen: tuple[str, int] | None, consolidate_above: int | None,
          consolidate_inactive: str, consolidate_margin: float,
          consolidate_max_fee_fraction: float, mint_rate: float, mint_burst: int,
          pace_loopback: bool, mint_limit_wait: float) -> None:
    """Run the wallet daemon in the foreground (SIGTERM or Ctrl-C stops it).

    Opens the wallet (recovery runs first), starts the watcher and answers on
    DIR/control.sock (with --listen, the same API on a TCP port, behind the bearer
    token; with --payments-listen, payers on the public payments listener). With
    --webhook URL --webhook-secret-file FILE it POSTs each event to URL, signed
    (Standard Webhooks), retried until a 2xx, resumed after a restart.
    Logs go to stderr, one line per operation transition; --json logs JSON lines.
    """
    from coco_actors import pacing
    from coco_actors.consolidator import ConsolidationPolicy
    from coco_actors.control import lifecycle
    from coco_actors.store import WalletLockedError
    from coco_actors.webhooks import RetryPolicy, Webhooks, specs_from_files

    if webhook_urls and not webhook_secret_files:
        raise click.UsageError("--webhook needs --webhook-secret-file",
                               click.get_current_context())
    hooks = specs_from_files(webhook_urls, webhook_secret_files)  # read now: mode checked
    Webhooks.validate(hooks, webhook_hosts)  # before anything starts
    retry = RetryPolicy(first=webhook_backoff[0], cap=webhook_backoff[1])
    consolidation = ConsolidationPolicy(
        max_proofs=consolidate_above,
        inactive="any" if consolidate_inactive == "any" else
        "off" if consolidate_inactive == "off" else "expiring",
        expiry_margin=consolidate_margin, max_fee_fraction=consolidate_max_fee_fraction)

    if payments_url is not None:
        if payments_listen is None:
            raise click.UsageError("--payments-url needs --payments-listen",
                                   click.get_current_context())
        if not payments_url.startswith(("http://", "https://")):
            raise click.BadParameter(f"{payments_url!r} is not an http(s) URL",
                                     param_hint="--payments-url")
    pacing.configure(pacing.PacingConfig(rate=mint_rate, burst=mint_burst,
                                          loopback=pace_loopback, max_wait=mint_limit_wait))
    lifecycle.configure_logging(log_file=log_file, verbose=verbose, as_json=ui.as_json)
    try:
        lifecycle.serve(ui.data_dir, rollback_prepared_after=rollback_prepared_after,
                        exposure=exposure or None, sweep_to=sweep_to,
                        payments_listen=payments_listen,
                        payments_url=payments_url.rstrip("/") if payments_url else None,
                        payments_rate=payments_rate, idempotency_ttl=idempotency_ttl,
                        event_retention=event_retention, listen=listen,
                        keyset_refresh=keyset_refresh or None, webhooks=hooks,
                        webhook_hosts=webhook_hosts, webhook_retry=retry,
                        consolidation=consolidation)
    except WalletLockedError:
        raise DomainError(f"a coco daemon (or another wallet process) already has {ui.data_dir}"
                          f" open; stop it with: coco stop --data-dir {ui.data_dir}") from None


def _listen(value: str | None) -> tuple[str, int] | None:
    """``[HOST:]PORT`` as ``(host, port)`` (loopback without a host)."""
    from coco_actors.control.payments import parse_listen

    if value is None:
        return None
    try:
        return parse_listen(value)
    except CocoError as exc:
        raise click.BadParameter(str(exc), param_hint="--payments-listen") from None


def _control_listen(value: str | None) -> tuple[str, int] | None:
    """``--listen HOST:PORT`` (or ``PORT``: loopback) with HOST an IP literal: a name would
    bind whatever it resolves to."""
    from coco_actors.control.payments import parse_listen

    if value is None:
        return None
    try:
        host, port = parse_listen(value)
        ipaddress.ip_address(host)
    except (CocoError, ValueError):
        raise click.BadParameter(f"{value!r} is not PORT or IP:PORT (an IP literal, a port"
                                 " up to 65535)", param_hint="--listen") from None
    return host, port


def _backoff(value: str) -> tuple[float, float]:
    """``FIRST,CAP`` seconds, 0 < FIRST <= CAP."""
    first, sep, cap = value.partition(",")
    try:
        pair = (float(first), float(cap if sep else first))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not FIRST,CAP (seconds)",
                                 param_hint="--webhook-backoff") from None
    if not 0 < pair[0] <= pair[1] < float("inf"):
        raise click.BadParameter(f"{value!r}: need 0 < FIRST <= CAP",
                                 param_hint="--webhook-backoff")
    return pair


def _exposure(values: tuple[str, ...]) -> dict[str, int]:
    """``URL=LIMIT`` options as a mapping (the wallet validates the values themselves)."""
    out: dict[str, int] = {}
    for value in values:
        url, sep, limit = value.rpartition("=")
        if not sep or not url:
            raise click.BadParameter(f"{value!r} is not URL=LIMIT", param_hint="--exposure")
        try:
            out_limit = int(limit)
        except ValueError:
            raise click.BadParameter(f"the limit in {value!r} is not a whole number of sats",
                                     param_hint="--exposure") from None
        if url in out:
            raise click.BadParameter(f"{url} is given twice", param_hint="--exposure")
        out[url] = out_limit
    return out


@wallet_command(main)
def stop(ui: Ui) -> None:
    """Stop the daemon gracefully and wait until it is down."""
    answer = ui.client.post("/stop")
    sock = socket_path(ui.data_dir)
    deadline = time.monotonic() + STOP_TIMEOUT

    def running() -> bool:  # over TCP, its port closing is all we can see
        return _answers(ui.url) if ui.url is not None else sock.exists()

    while running() and time.monotonic() < deadline:
        time.sleep(0.05)  # the daemon removes its socket last: nothing else to wait on
    if running():
        raise DomainError(f"the daemon (pid {answer.get('pid')}) is still shutting down after"
                          f" {STOP_TIMEOUT:.0f} s")
    ui.result({"stopped": True, "pid": answer.get("pid")},
              f"coco daemon {answer.get('pid')} stopped")


def _answers(url: str) -> bool:
    """Whether something still accepts connections at ``url``'s host and port."""
    import httpx

    parsed = httpx.URL(url)
    try:
        with socket.create_connection((parsed.host, parsed.port or 80), timeout=1.0):
            return True
    except OSError:
        return False


@wallet_command(main)
def status(ui: Ui) -> None:
    """Is the daemon up; its mints, balances and operations not at rest."""
    s = ui.client.get("/status")

    def human() -> None:
        d = s["daemon"]
        click.echo(pairs([("daemon", f"running, pid {d['pid']}, up {_duration(d['uptime_s'])}"),
                          ("version", d["version"]), ("data dir", d["data_dir"]),
                          ("socket", d["socket"])]))
        click.echo()
        click.echo(balance_table(s["balances"]))
        click.echo()
        if s["pending"]:
            click.echo(f"{len(s['pending'])} operation(s) not at rest:")
            click.echo(operations_table(s["pending"]))
        else:
            click.echo("no operations in progress")

    ui.result(s, human)


def _duration(seconds: float) -> str:
    s = int(seconds)
    h, m = divmod(s // 60, 60)
    return f"{h}h {m}m" if h else f"{m}m {s % 60}s" if m else f"{s}s"


# --- mints ----------------------------------------------------------------------------------


@main.group("mint")
def mint_group() -> None:
    """The mints the wallet trusts."""


@wallet_command(mint_group, "add")
@click.argument("url")
@click.option("--restore", is_flag=True, help="also restore this wallet's proofs from the mint")
def mint_add(ui: Ui, url: str, restore: bool) -> None:
    """Trust a mint: fetch and verify its keysets."""
    res = ui.client.post("/mints", {"url": url, "restore": restore})
    name = f" ({res['mint']['name']})" if res["mint"].get("name") else ""
    text = f"added mint {res['mint']['url']}{name}"
    if "restored" in res:
        text += f"\nrestored {_restored(res['restored'])}"
    ui.result(res, text)


def _restored(report: Any) -> str:
    """One line of a restore report (the JSON view of ``RestoreReport``)."""
    return f"{sat(report['restored'])} in {report['proofs']} proof(s)"


@wallet_command(mint_group, "list")
def mint_list(ui: Ui) -> None:
    """The trusted mints."""
    mints = ui.client.get("/mints")
    ui.result(mints, table(["URL", "NAME", "ADDED"],
                           [(m["url"], m.get("name") or "-", when(m["added_at"]))
                            for m in mints]) if mints else "no mints yet; add one with:"
                                                           " coco mint add URL")


@wallet_command(mint_group, "info")
@click.argument("url")
def mint_info(ui: Ui, url: str) -> None:
    """What a trusted mint says about itself (NUT-06)."""
    info = ui.client.get("/mints/info", url=url)
    ui.result(info, lambda: click.echo(pairs([
        ("url", info["url"]), ("name", info.get("name") or "-"),
        ("version", info.get("version") or "-"), ("pubkey", info.get("pubkey") or "-"),
        ("description", info.get("description") or "-"),
        ("nuts", ", ".join(info["nuts"]) or "-")])))


@wallet_command(main)
@click.option("--mint", metavar="URL", help="only this mint")
@click.option("--total", is_flag=True, help="only the total over all mints")
@click.option("--unit", metavar="UNIT",
              help="only this unit [default: every unit; --json and --total: sat]")
def balance(ui: Ui, mint: str | None, total: bool, unit: str | None) -> None:
    """Balances per mint: spendable, reserved (by operations), pending (unclaimed sends),
    and their total over all mints; a table per unit (sat first), never added up."""
    if unit is not None and not total:
        per_mint = ui.client.get("/balance", mint=mint, unit=unit)
        ui.result(per_mint, lambda: click.echo(balance_table(per_mint)))
        return
    if total:
        if mint:
            raise click.UsageError("--total and --mint exclude each other",
                                   click.get_current_context())
        summed = ui.client.get("/balance/total")
        ui.result(summed, lambda: click.echo(balance_table({"all mints": summed})))
        return
    balances = ui.client.get("/balance", mint=mint)
    summed = ui.client.get("/balance/total") if not mint and balances and not ui.as_json \
        else None
    others = ui.client.get("/balance/units", mint=mint) if balances and not ui.as_json \
        else None
    ui.result(balances, lambda: click.echo(balance_table(balances, summed)
                                           + _other_units(others, summed is not None)))


def _other_units(units: dict[str, Any] | None, with_total: bool) -> str:
    """The tables of the units other than sat (none held: nothing), under the sat one."""
    if not units:
        return ""
    out = []
    for unit in sorted(u for u in units["totals"] if u != "sat"):
        rows = {url: per[unit] for url, per in units["mints"].items() if unit in per}
        out.append(f"\n\nin {unit}:\n"
                   + balance_table(rows, units["totals"][unit] if with_total else None))
    return "".join(out)


# --- minting ------------------------------------------------------------------------------


@wallet_command(main, idempotent=True)
@click.argument("amount", type=click.IntRange(min=1))
@click.option("--mint", required=True, metavar="URL", help="the mint to mint at")
@click.option("--no-wait", is_flag=True, help="return at once; the daemon mints once paid")
@click.option("--timeout", type=click.FloatRange(min=0), default=600, show_default=True,
              help="seconds to wait for the payment")
@UNIT_OPTION
def invoice(ui: Ui, amount: int, mint: str, no_wait: bool, timeout: float, unit: str) -> None:
    """Ask the mint for a bolt11 invoice of AMOUNT (in --unit), wait until it is paid,
    mint."""
    body: dict[str, Any] = {"mint_url": mint, "amount": amount}
    if unit != "sat":  # a sat quote's request (and its idempotency key) as before units
        body["unit"] = unit
    quote = ui.client.post("/mint/quote", body, idempotency_key=ui.key())
    if not ui.as_json:
        click.echo(pairs([("invoice", f"{sat(amount, unit)} at {mint}"),
                          ("operation", quote["operation_id"]), ("request", quote["request"])]))
    if no_wait or not quote["operation_id"]:
        ui.result(quote, "the daemon mints it once it is paid: see coco balance")
        return
    op = _wait_paid(ui, quote["operation_id"], timeout)
    if op["state"] != "completed":
        raise DomainError(f"the quote could not be minted: {op.get('error') or op['state']}")
    balances = ui.client.get("/balance", mint=mint, unit=unit)
    spendable = next(iter(balances.values()))["spendable"]
    ui.result({**quote, "operation": op, "balance": balances},
              f"paid: minted {sat(op['amount'], unit)}; spendable now {sat(spendable, unit)}")


def _wait_paid(ui: Ui, op_id: str, timeout: float) -> dict[str, Any]:
    op = _wait_over(ui, "/mint/wait", op_id, time.monotonic() + timeout, "waiting for payment",
                    "stopped waiting; the daemon mints the quote once it is paid")
    if op is None:
        raise DomainError(f"not paid within {timeout:g} s; the daemon keeps watching"
                          " the quote and mints it once paid (see coco history)")
    return op


def _wait_over(ui: Ui, path: str, op_id: str, deadline: float, text: str,
               interrupted: str) -> dict[str, Any] | None:
    """Long-poll ``path`` (``/mint/wait``, ``/melt/wait``) with a progress line until the
    operation is over; None at ``deadline``. Ctrl-C leaves it to the daemon (exit 130)."""
    spinner = _Spinner(text, enabled=not ui.as_json)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            res = ui.client.post(path, {"operation_id": op_id, "timeout": min(1.0, left)})
            if res["done"]:
                return res["operation"]  # type: ignore[no-any-return]
            spinner.tick()
    except KeyboardInterrupt:
        spinner.done()
        ui.note(interrupted)
        raise click.exceptions.Exit(130) from None
    finally:
        spinner.done()


class _Spinner:
    """A progress line on stderr: animated on a terminal, one line otherwise."""

    FRAMES = "|/-\\"

    def __init__(self, text: str, *, enabled: bool) -> None:
        self._text = text
        self._enabled = enabled
        self._tty = sys.stderr.isatty()
        self._start = time.monotonic()
        self._n = 0
        self._shown = False

    def tick(self) -> None:
        if not self._enabled:
            return
        if self._tty:
            frame = self.FRAMES[self._n % len(self.FRAMES)]
            click.echo(f"\r{frame} {self._text} {time.monotonic() - self._start:.0f}s ",
                       err=True, nl=False)
        elif not self._shown:
            click.echo(f"{self._text}...", err=True)
        self._shown = True
        self._n += 1

    def done(self) -> None:
        if self._enabled and self._tty and self._shown:
            click.echo("\r\033[K", err=True, nl=False)
        self._shown = False


# --- sending ------------------------------------------------------------------------------


class _SendContext(click.Context):
    """Usage of ``coco send AMOUNT`` (and ``coco transfer AMOUNT``) reads ``coco send``,
    not the hidden command's name."""

    @property
    def command_path(self) -> str:
        return self.parent.command_path if self.parent is not None else super().command_path


class _SendAmountCommand(click.Command):
    context_class = _SendContext


class SendGroup(click.Group):
    """``coco send AMOUNT --mint URL`` and ``coco send SUBCOMMAND ...``: anything that is
    not a subcommand goes to the hidden ``amount`` command."""

    default_command = "amount"
    amount_usage = ("AMOUNT --mint URL [--yes] [--prepare-only]"
                    " [--lock PUBKEY... [--n-sigs N] [--locktime UNIX_TIME --refund PUBKEY...]]")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, self.amount_usage)
        formatter.write_usage(ctx.command_path, "COMMAND [ARGS]...", prefix="   or: ")


@main.group("send", cls=SendGroup, no_args_is_help=True)
def send_group() -> None:
    """Send ecash: prepare, confirm, execute; prints a token.

    \b
    coco send AMOUNT --mint URL    prepare, show amount and fees, confirm, print the token
    coco send execute ID           execute a send prepared with --prepare-only
    coco send rollback ID          undo a send: release it, or reclaim an unclaimed token
    coco send show ID              one send (with its token while unclaimed)
    coco send pending              sends not at rest
    """


@wallet_command(send_group, "amount", cls=_SendAmountCommand, hidden=True, idempotent=True)
@click.argument("amount", type=click.IntRange(min=1))
@click.option("--mint", required=True, metavar="URL", help="the mint whose ecash to send")
@click.option("-y", "--yes", is_flag=True, help="do not ask for confirmation")
@click.option("--prepare-only", is_flag=True,
              help="stop after prepare (then: coco send execute ID, or rollback ID)")
@click.option("--lock", "locks", multiple=True, metavar="PUBKEY",
              help="lock the token to this public key (NUT-11 P2PK; repeat for multisig)")
@click.option("--n-sigs", type=int, default=None, metavar="N",
              help="how many of the --lock keys must sign [default: 1]")
@click.option("--locktime", type=int, default=None, metavar="UNIX_TIME",
              help="after this time the --refund keys can claim it too")
@click.option("--refund", "refunds", multiple=True, metavar="PUBKEY",
              help="a key that can reclaim the token after --locktime (repeatable)")
@UNIT_OPTION
def send_amount(ui: Ui, amount: int, mint: str, yes: bool, prepare_only: bool,
                locks: tuple[str, ...], n_sigs: int | None, locktime: int | None,
                refunds: tuple[str, ...], unit: str) -> None:
    """Send AMOUNT (in --unit): prepare, show amount and fees, confirm, print the token."""
    body: dict[str, Any] = {"mint_url": mint, "amount": amount}
    if unit != "sat":
        body["unit"] = unit
    if locks:
        body["p2pk"] = list(locks)
    if n_sigs is not None:
        body["n_sigs"] = n_sigs
    if locktime is not None:
        body["locktime"] = locktime
    if refunds:
        body["refund"] = list(refunds)
    op = ui.client.post("/send/prepare", body, idempotency_key=ui.key())
    if op["state"] != "prepared" and op.get("token"):  # run again with its key: done before
        _execute(ui, op["id"], ui.key("execute"))
        return
    if prepare_only:
        ui.result(op, f"{operation_details(op)}\n\nnext: coco send execute {op['id']}"
                      f"   (or: coco send rollback {op['id']})")
        return
    if not ui.as_json:
        ui.note(pairs([("amount", sat(op["amount"], unit)), ("fee", sat(op["fee"], unit)),
                       ("total input", sat(op["input_amount"], unit)),
                       ("operation", op["id"])]))
    if not yes:
        try:
            confirmed = click.confirm(f"send {sat(amount, unit)} (fee {sat(op['fee'], unit)})?",
                                      err=True)
        except click.Abort:
            confirmed = False
        if not confirmed:
            ui.client.post(op_path("/send", op["id"], "/rollback"),
                           idempotency_key=ui.key("rollback"))
            raise DomainError(f"cancelled: send {op['id']} rolled back, nothing was sent")
    _execute(ui, op["id"], ui.key("execute"))


def _execute(ui: Ui, op_id: str, key: str | None) -> None:
    res = ui.client.post(op_path("/send", op_id, "/execute"), idempotency_key=key)
    op = res["operation"]

    def human() -> None:
        unit = op.get("unit") or "sat"
        ui.note(f"send {op['id']} is {op['state']}: a token of {sat(op['amount'], unit)}"
                f" (send fee {sat(op['fee'], unit)})")
        click.echo(res["token"])  # alone on stdout: TOKEN=$(coco send ...) works

    ui.result(res, human)


@wallet_command(send_group, "execute", idempotent=True)
@click.argument("operation_id", metavar="ID")
def send_execute(ui: Ui, operation_id: str) -> None:
    """Execute a prepared send and print its token."""
    _execute(ui, operation_id, ui.key())


@wallet_command(send_group, "rollback", idempotent=True)
@click.argument("operation_id", metavar="ID")
def send_rollback(ui: Ui, operation_id: str) -> None:
    """Undo a send: release a prepared one, reclaim the token of a pending one."""
    op = ui.client.post(op_path("/send", operation_id, "/rollback"), idempotency_key=ui.key())
    ui.result(op, f"send {op['id']} is {op['state']}")


@wallet_command(send_group, "show")
@click.argument("operation_id", metavar="ID")
def send_show(ui: Ui, operation_id: str) -> None:
    """One send, with its token while it is unclaimed."""
    op = ui.client.get(op_path("/send", operation_id))

    def human() -> None:
        click.echo(operation_details(op))
        if op.get("token"):
            click.echo(f"token        {op['token']}")

    ui.result(op, human)


@wallet_command(send_group, "pending")
def send_pending(ui: Ui) -> None:
    """Sends not at rest (prepared, pending, or being rolled back)."""
    ops = ui.client.get("/send/pending")
    ui.result(ops, operations_table(ops) if ops else "no pending sends")


# --- paying invoices (melts) ---------------------------------------------------------------


def _can_ask() -> bool:
    """Is someone at a terminal to confirm a payment? (Tests stand in for a terminal here.)"""
    return sys.stdin.isatty()


@wallet_command(main, idempotent=True)
@click.argument("invoice", metavar="INVOICE|CREQ")
@click.option("--mint", metavar="URL",
              help="the mint whose ecash pays (an invoice: required; a payment request:"
                   " one it allows [default: the first of them with the funds])")
@click.option("--amount", type=click.IntRange(min=1), metavar="N",
              help="a payment request without an amount: how much to pay")
@click.option("-y", "--yes", is_flag=True,
              help="do not ask for confirmation (needed when stdin is not a terminal)")
@click.option("--no-wait", is_flag=True,
              help="return once the payment is in flight; the daemon settles it")
@click.option("--timeout", type=click.FloatRange(min=0), default=600, show_default=True,
              help="seconds to wait for the payment to settle")
@click.option("--unit", default="sat", show_default=True, metavar="UNIT",
              help="an invoice: pay it with ecash of this unit (the mint converts)")
def pay(ui: Ui, invoice: str, mint: str | None, amount: int | None, yes: bool, no_wait: bool,
        timeout: float, unit: str) -> None:
    """Pay a bolt11 INVOICE, or a payment request (creqA.../creqB..., NUT-18/26).

    An invoice: shows the amount, the mint's lightning fee reserve (the unused part
    comes back as change) and the input fee, asks, pays, waits while the payment is
    in flight, then prints the preimage and the change.

    A payment request: shows what it asks for and the mint that will pay, asks,
    sends the ecash to the request's transport (HTTP POST) and prints the payee's
    answer; a request without a transport prints the payment payload to hand over.
    """
    ctx = click.get_current_context()
    if not yes and not _can_ask():
        raise click.UsageError("stdin is not a terminal, so nobody can confirm the payment;"
                               " add --yes to pay without asking", ctx)
    if invoice.strip().lower().startswith("creq"):
        if unit != "sat":
            raise click.UsageError("--unit is for invoices: a payment request names its unit",
                                   ctx)
        _pay_request(ui, invoice.strip(), mint, amount, yes)
        return
    if mint is None:
        raise click.UsageError("Missing option '--mint': the mint whose ecash pays the invoice",
                               ctx)
    if amount is not None:
        raise click.UsageError("--amount is for payment requests: an invoice has its amount",
                               ctx)
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {"mint_url": mint, "invoice": invoice}
    if unit != "sat":
        body["unit"] = unit
    op = ui.client.post("/melt/prepare", body, idempotency_key=ui.key())
    if not ui.as_json:
        ui.note(pairs([("amount", sat(op["amount"], unit)),
                       ("fee reserve", sat(op["fee_reserve"], unit)),
                       ("input fee", sat(op["fee"], unit)),
                       ("total input", sat(op["input_amount"], unit)), ("operation", op["id"])]))
    if not yes:
        try:
            confirmed = click.confirm(f"pay {sat(op['amount'], unit)} (fee reserve"
                                      f" {sat(op['fee_reserve'], unit)}, input fee"
                                      f" {sat(op['fee'], unit)})?", err=True)
        except click.Abort:
            confirmed = False
        if not confirmed:
            ui.client.post(op_path("/melt", op["id"], "/rollback"),
                           idempotency_key=ui.key("rollback"))
            raise DomainError(f"cancelled: melt {op['id']} rolled back, nothing was paid")
    interrupted = (f"stopped waiting; the daemon settles the payment (see: coco melt show"
                   f" {op['id']})")
    wait_s = max(1.0, min(EXECUTE_WAIT, timeout))
    try:  # the daemon goes on with the melt whether we wait for its answer or not
        op = ui.client.post(op_path("/melt", op["id"], "/execute"), {"timeout": wait_s},
                            timeout=wait_s + READ_TIMEOUT, idempotency_key=ui.key("execute"))
    except KeyboardInterrupt:
        ui.note(interrupted)
        raise click.exceptions.Exit(130) from None
    if op["state"] == "pending" and not no_wait:
        over = _wait_over(ui, "/melt/wait", op["id"], deadline, "waiting for the payment",
                          interrupted)
        if over is None:
            _melt_failed(ui, op, f"the payment of melt {op['id']} is still in flight after"
                                 f" {timeout:g} s; the daemon settles it (see: coco melt show"
                                 f" {op['id']})")
        op = over
    _paid(ui, op)


def _pay_request(ui: Ui, creq: str, mint: str | None, amount: int | None, yes: bool) -> None:
    """``coco pay creqA...``: show the request and the paying mint, ask, pay."""
    req = ui.client.post("/request/decode", {"creq": creq})
    value = req.get("amount") or amount
    if value is None:
        raise click.UsageError("the payment request names no amount: add --amount N",
                               click.get_current_context())
    if mint is None:  # the first mint the request allows that holds the funds, as shown
        balances = ui.client.get("/balance")
        allowed = req.get("mints") or list(balances)
        mint = next((url for url in allowed if url in balances
                     and balances[url]["spendable"] >= value), None)
        if mint is None:
            raise DomainError(f"no mint of this wallet that the request allows holds"
                              f" {value} {req.get('unit') or 'sat'} (allowed:"
                              f" {', '.join(allowed) or 'any'})")
    posts = [t["target"] for t in req.get("transports") or () if t.get("type") == "post"]
    if not ui.as_json:
        ui.note(pairs([("amount", f"{value} {req.get('unit') or 'sat'}"),
                       ("description", req.get("description") or "-"),
                       ("pay from", mint), ("request", req.get("id") or "-"),
                       ("sent to", posts[0] if posts else "in-band (the payload is printed)"),
                       ("locked", "yes (P2PK)" if req.get("nut10") else "no")]))
    if not yes:
        try:
            confirmed = click.confirm(f"pay {value} {req.get('unit') or 'sat'} from {mint}?",
                                      err=True)
        except click.Abort:
            confirmed = False
        if not confirmed:
            raise DomainError("cancelled: nothing was paid")
    body: dict[str, Any] = {"creq": creq, "mint_url": mint}
    if amount is not None:
        body["amount"] = amount
    result = ui.client.post("/request/pay", body, timeout=READ_TIMEOUT,
                            idempotency_key=ui.key())
    if "posted" in result:  # the payee's own answer, as it gave it (bounded by the daemon)
        ui.result(result, pairs([("paid", f"{value} {req.get('unit') or 'sat'}"),
                                 ("posted to", result["posted"]),
                                 ("payee answered",
                                  f"{result['status']} {_printable(result['response'])}"),
                                 ("operation", result["operation_id"])]))
    else:  # in-band: the payload is for the person to hand over; the send stays pending
        ui.note(f"send {result['operation_id']} holds the ecash until the payee claims it")
        ui.result(result, lambda: click.echo(json.dumps(result["payload"])))


def _printable(text: str, limit: int = 500) -> str:
    """A stranger's text (a payee's answer) fit for a terminal: no control characters."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _paid(ui: Ui, op: dict[str, Any]) -> None:
    """The end of ``coco pay``: paid, in flight (--no-wait), failed or unknown (exit 1)."""
    if op["state"] == "pending":
        ui.result(op, f"melt {op['id']} is pending: the payment is in flight and the daemon"
                      f" settles it (see: coco melt show {op['id']})")
    elif op["state"] == "completed":
        unit = op.get("unit") or "sat"
        ui.result(op, pairs([("paid", sat(op["amount"], unit)),
                             ("lightning fee", sat(op["fee_paid"], unit)),
                             ("input fee", sat(op["fee"], unit)),
                             ("change", sat(op["change_amount"], unit)),
                             ("preimage", op["preimage"] or "-"), ("operation", op["id"])]))
    elif op["state"] == "rolled_back":
        _melt_failed(ui, op, f"the payment failed ({op.get('error') or 'rolled back'}): melt"
                             f" {op['id']} is rolled_back, nothing was paid")
    else:  # executing: the mint's answer did not settle it (the daemon's log says why)
        _melt_failed(ui, op, f"melt {op['id']} is {op['state']}: its outcome is not known yet"
                             f" (see: coco melt show {op['id']})")


def _melt_failed(ui: Ui, op: dict[str, Any], message: str) -> NoReturn:
    if ui.as_json:
        click.echo(json.dumps({"error": {"type": "PaymentNotSettled", "message": message},
                               "operation": op}, indent=2))
    raise DomainError(message)


def _not_settled(ui: Ui, op: dict[str, Any], message: str) -> NoReturn:
    """A transfer that did not complete: exit 1, with the operation under ``--json``."""
    if ui.as_json:
        click.echo(json.dumps({"error": {"type": "TransferNotSettled", "message": message},
                               "operation": op}, indent=2))
    raise DomainError(message)


@main.group("melt")
def melt_group() -> None:
    """Payments made with coco pay (melts): show, pending, rollback."""


@wallet_command(melt_group, "show")
@click.argument("operation_id", metavar="ID")
def melt_show(ui: Ui, operation_id: str) -> None:
    """One melt: amounts, fees, and once paid its preimage and change."""
    op = ui.client.get(op_path("/melt", operation_id))
    ui.result(op, operation_details(op))


@wallet_command(melt_group, "pending")
def melt_pending(ui: Ui) -> None:
    """Melts not at rest (prepared, executing, or paying)."""
    ops = ui.client.get("/melt/pending")
    ui.result(ops, operations_table(ops) if ops else "no pending melts")


@wallet_command(melt_group, "rollback")
@click.argument("operation_id", metavar="ID")
def melt_rollback(ui: Ui, operation_id: str) -> None:
    """Undo a melt: release a prepared one, a pending one once its payment failed.

    While the payment of a pending melt may still go through, this refuses (and changes
    nothing); the daemon settles it either way once the mint decides.
    """
    op = ui.client.post(op_path("/melt", operation_id, "/rollback"))
    ui.result(op, f"melt {op['id']} is {op['state']}")


# --- payment requests -------------------------------------------------------------------------


@main.group("request")
def request_group() -> None:
    """Payment requests (NUT-18 creqA, NUT-26 creqB): be paid by another wallet.

    \b
    coco request new 100 --mint URL   a request; payers POST to the daemon's
                                      --payments-listen URL (or hand the payload over)
    coco request list / show ID / cancel ID
    coco pay creqA...                 pay someone else's request
    """


@wallet_command(request_group, "new")
@click.argument("amount", type=click.IntRange(min=1))
@click.option("--mint", "mints", multiple=True, required=True, metavar="URL",
              help="a mint the payer may pay from (repeatable; a trusted mint)")
@click.option("--multi-use", is_flag=True, help="may be paid many times (else once)")
@click.option("--p2pk", is_flag=True, help="ask the payer to lock the ecash to a fresh key")
@click.option("--description", metavar="TEXT", help="shown to the payer")
def request_new(ui: Ui, amount: int, mints: tuple[str, ...], multi_use: bool, p2pk: bool,
                description: str | None) -> None:
    """Create a payment request for AMOUNT sat; prints its creqA (and creqB)."""
    rec = ui.client.post("/request/new", {"amount": amount, "mints": list(mints),
                                          "single_use": not multi_use, "p2pk": p2pk,
                                          "description": description})
    ui.result(rec, lambda: click.echo(_request_details(rec)))


@wallet_command(request_group, "show")
@click.argument("request_id", metavar="ID")
def request_show(ui: Ui, request_id: str) -> None:
    """One payment request: what it asks, its state, what it received."""
    rec = ui.client.get(op_path("/request", request_id))
    ui.result(rec, lambda: click.echo(_request_details(rec)))


@wallet_command(request_group, "list")
def request_list(ui: Ui) -> None:
    """Every payment request of this wallet."""
    recs = ui.client.get("/request/list")
    ui.result(recs, table(["ID", "AMOUNT", "STATE", "RECEIVED", "USE", "CREATED"],
                          [(r["id"], r.get("amount") or "any", r["state"],
                            r.get("received", 0), "single" if r.get("single_use") else "multi",
                            when(r.get("created_at"))) for r in recs], right=(1, 3))
              if recs else "no payment requests")


@wallet_command(request_group, "cancel")
@click.argument("request_id", metavar="ID")
def request_cancel(ui: Ui, request_id: str) -> None:
    """Cancel an open payment request: payments to it are refused from now on."""
    rec = ui.client.post(op_path("/request", request_id, "/cancel"))
    ui.result(rec, f"payment request {rec['id']} is {rec['state']}")


def _request_details(rec: dict[str, Any]) -> str:
    rows: list[tuple[str, Any]] = [
        ("id", rec["id"]), ("state", rec["state"]),
        ("amount", f"{rec.get('amount') or 'any'} {rec.get('unit') or 'sat'}"),
        ("mints", ", ".join(rec.get("mints") or ()) or "any"),
        ("use", "single" if rec.get("single_use") else "multi"),
        ("received", rec.get("received", 0)),
        ("description", rec.get("description") or "-"),
        ("created", when(rec.get("created_at")))]
    return f"{pairs(rows)}\n\n{rec['encoded']}\n\n{rec.get('encoded_b') or ''}".rstrip()


# --- keys -------------------------------------------------------------------------------------


@main.group("keys")
def keys_group() -> None:
    """The wallet's P2PK public keys: hand one out to be paid locked ecash.

    \b
    coco keys new     a fresh public key (derived from the mnemonic, never reused)
    coco keys list    every key handed out
    """


@wallet_command(keys_group, "new")
def keys_new(ui: Ui) -> None:
    """A fresh public key: tokens locked to it (coco send --lock KEY) are ours."""
    key = ui.client.post("/keys")
    ui.result(key, key["public"])  # alone on stdout: KEY=$(coco keys new) works


@wallet_command(keys_group, "list")
def keys_list(ui: Ui) -> None:
    """Every public key handed out, by index."""
    keys = ui.client.get("/keys")
    ui.result(keys, table(["INDEX", "PUBLIC KEY", "CREATED"],
                          [(k["index"], k["public"], when(k["created_at"])) for k in keys])
              if keys else "no keys yet; make one with: coco keys new")


@main.group("webhooks")
def webhooks_group() -> None:
    """Where event delivery to webhooks stands (coco serve --webhook URL ...).

    \b
    coco webhooks status   per webhook: last delivered seq, pending, attempts, last error
    """


@wallet_command(webhooks_group, "status")
def webhooks_status(ui: Ui) -> None:
    """Per webhook: the last event delivered, how many wait, the current attempt."""
    hooks = ui.client.get("/webhooks")

    def retry(h: dict[str, Any]) -> str:
        return when(h["next_retry_at"]) if h["next_retry_at"] else "-"

    ui.result(hooks, table(
        ["ID", "URL", "DELIVERED", "PENDING", "ATTEMPTS", "LAST ERROR", "NEXT RETRY"],
        [(h["id"], h["url"].split("?", 1)[0], h["last_delivered_seq"], h["pending"],
          h["attempts"], h["last_error"] or "-", retry(h)) for h in hooks],
        right=(2, 3, 4)) if hooks else "no webhooks; start the daemon with --webhook URL"
                                       " --webhook-secret-file FILE")


# --- transfers between mints ----------------------------------------------------------------


class TransferGroup(SendGroup):
    """``coco transfer AMOUNT --from URL --to URL`` and ``coco transfer SUBCOMMAND ...``."""

    amount_usage = "AMOUNT --from URL --to URL [--yes] [--prepare-only]"


@main.group("transfer", cls=TransferGroup, no_args_is_help=True)
def transfer_group() -> None:
    """Move value from one mint of the wallet to another (over lightning).

    \b
    coco transfer AMOUNT --from URL --to URL
                                   prepare, show amount and fees, confirm, transfer
    coco transfer execute ID       execute a transfer prepared with --prepare-only
    coco transfer rollback ID      undo a transfer that is not paid
    coco transfer show ID          one transfer
    coco transfer pending          transfers not at rest
    """


@wallet_command(transfer_group, "amount", cls=_SendAmountCommand, hidden=True,
                idempotent=True)
@click.argument("amount", type=click.IntRange(min=1))
@click.option("--from", "from_mint", required=True, metavar="URL",
              help="the mint whose ecash pays (it loses amount plus fees)")
@click.option("--to", "to_mint", required=True, metavar="URL",
              help="the mint where AMOUNT arrives")
@click.option("-y", "--yes", is_flag=True,
              help="do not ask for confirmation (needed when stdin is not a terminal)")
@click.option("--prepare-only", is_flag=True,
              help="stop after prepare (then: coco transfer execute ID, or rollback ID)")
@click.option("--no-wait", is_flag=True,
              help="return once the payment is in flight; the daemon finishes the transfer")
@click.option("--timeout", type=click.FloatRange(min=0), default=600, show_default=True,
              help="seconds to wait for the transfer to finish")
def transfer_amount(ui: Ui, amount: int, from_mint: str, to_mint: str, yes: bool,
                    prepare_only: bool, no_wait: bool, timeout: float) -> None:
    """Transfer AMOUNT sat (what arrives at --to) from the mint --from.

    Shows the amount, the source mint's lightning fee reserve, the input fee and the
    most that may leave the source, asks, pays, waits while the payment is in flight,
    then prints what arrived and what it cost.
    """
    if not yes and not prepare_only and not _can_ask():
        raise click.UsageError("stdin is not a terminal, so nobody can confirm the transfer;"
                               " add --yes to transfer without asking",
                               click.get_current_context())
    deadline = time.monotonic() + timeout
    op = ui.client.post("/transfer/prepare", {"mint_url": from_mint, "to_mint_url": to_mint,
                                              "amount": amount}, idempotency_key=ui.key())
    if prepare_only:
        ui.result(op, f"{operation_details(op)}\n\nnext: coco transfer execute {op['id']}"
                      f"   (or: coco transfer rollback {op['id']})")
        return
    if not ui.as_json:
        ui.note(_transfer_costs(op))
    if not yes:
        try:
            confirmed = click.confirm(
                f"transfer {sat(op['amount'])} to {op['to_mint_url']} (fee reserve"
                f" {sat(op['fee_reserve'])}, input fee {sat(op['fee'])})?", err=True)
        except click.Abort:
            confirmed = False
        if not confirmed:
            ui.client.post(op_path("/transfer", op["id"], "/rollback"),
                           idempotency_key=ui.key("rollback"))
            raise DomainError(f"cancelled: transfer {op['id']} rolled back, nothing was sent")
    _transfer_execute(ui, op["id"], deadline, timeout, no_wait, ui.key("execute"))


def _transfer_costs(op: dict[str, Any]) -> str:
    """What a prepared transfer may cost, before it is paid."""
    return pairs([("from", op["mint_url"]), ("to", op["to_mint_url"]),
                  ("amount", sat(op["amount"])), ("fee reserve", sat(op["fee_reserve"])),
                  ("input fee", sat(op["fee"])),
                  ("at most", sat(op["amount"] + op["fee_reserve"] + op["fee"])),
                  ("operation", op["id"])])


def _transfer_execute(ui: Ui, op_id: str, deadline: float, timeout: float,
                      no_wait: bool, key: str | None) -> None:
    interrupted = (f"stopped waiting; the daemon finishes the transfer (see: coco transfer"
                   f" show {op_id})")
    wait_s = max(1.0, min(EXECUTE_WAIT, timeout))
    try:  # the daemon goes on with the transfer whether we wait for its answer or not
        op = ui.client.post(op_path("/transfer", op_id, "/execute"), {"timeout": wait_s},
                            timeout=wait_s + READ_TIMEOUT, idempotency_key=key)
    except KeyboardInterrupt:
        ui.note(interrupted)
        raise click.exceptions.Exit(130) from None
    if op["state"] == "pending" and not no_wait:
        over = _wait_over(ui, "/transfer/wait", op["id"], deadline, "waiting for the transfer",
                          interrupted)
        if over is None:
            _not_settled(ui, op, f"transfer {op['id']} is still pending after {timeout:g} s;"
                                 f" the daemon finishes it (see: coco transfer show {op['id']})")
        op = over
    _transferred(ui, op)


def _transferred(ui: Ui, op: dict[str, Any]) -> None:
    """The end of ``coco transfer``: done, in flight (--no-wait), failed or unknown (exit 1)."""
    if op["state"] == "pending":
        ui.result(op, f"transfer {op['id']} is pending: the daemon finishes it"
                      f" (see: coco transfer show {op['id']})")
    elif op["state"] == "completed":
        ui.result(op, pairs([
            ("received", sat(op["received"])), ("from", op["mint_url"]),
            ("to", op["to_mint_url"]), ("lightning fee", sat(op["fee_paid"])),
            ("input fee", sat(op["fee"])),
            ("left the source", sat(op["amount"] + op["fee"] + op["fee_paid"])),
            ("operation", op["id"])]))
    elif op["state"] == "rolled_back":
        _not_settled(ui, op, f"the transfer failed ({op.get('error') or 'rolled back'}):"
                             f" transfer {op['id']} is rolled_back, nothing was sent")
    else:  # executing: the mint's answer did not settle it (the daemon's log says why)
        _not_settled(ui, op, f"transfer {op['id']} is {op['state']}: its outcome is not known"
                             f" yet (see: coco transfer show {op['id']})")


@wallet_command(transfer_group, "execute", idempotent=True)
@click.argument("operation_id", metavar="ID")
@click.option("--no-wait", is_flag=True,
              help="return once the payment is in flight; the daemon finishes the transfer")
@click.option("--timeout", type=click.FloatRange(min=0), default=600, show_default=True,
              help="seconds to wait for the transfer to finish")
def transfer_execute(ui: Ui, operation_id: str, no_wait: bool, timeout: float) -> None:
    """Execute a transfer prepared with --prepare-only."""
    _transfer_execute(ui, operation_id, time.monotonic() + timeout, timeout, no_wait,
                      ui.key())


@wallet_command(transfer_group, "show")
@click.argument("operation_id", metavar="ID")
def transfer_show(ui: Ui, operation_id: str) -> None:
    """One transfer: both mints, amounts, fees, and its legs."""
    op = ui.client.get(op_path("/transfer", operation_id))
    ui.result(op, operation_details(op))


@wallet_command(transfer_group, "pending")
def transfer_pending(ui: Ui) -> None:
    """Transfers not at rest (prepared, executing, or pending)."""
    ops = ui.client.get("/transfer/pending")
    ui.result(ops, operations_table(ops) if ops else "no pending transfers")


@wallet_command(transfer_group, "rollback")
@click.argument("operation_id", metavar="ID")
def transfer_rollback(ui: Ui, operation_id: str) -> None:
    """Undo a transfer: release a prepared one, an executing or pending one once the source
    mint says its payment failed (refused, changing nothing, while it may be paid)."""
    op = ui.client.post(op_path("/transfer", operation_id, "/rollback"))
    ui.result(op, f"transfer {op['id']} is {op['state']}")


# --- the API token ------------------------------------------------------------------------


@main.group("token")
def token_group() -> None:
    """The bearer token of the control API on a TCP port (coco serve --listen)."""


@wallet_command(token_group, "show")
def token_show(ui: Ui) -> None:
    """Print the API token (alone on stdout: curl -H "Authorization: Bearer $(coco token
    show)" ...)."""
    token = read_token(token_path(ui.data_dir))
    ui.result({"token": token}, token)


@wallet_command(token_group, "rotate")
def token_rotate(ui: Ui) -> None:
    """Replace the API token; a running daemon refuses the old one from its next request."""
    if not ui.data_dir.is_dir():
        raise DomainError(f"no wallet in {ui.data_dir}; create one with:"
                          f" coco init --data-dir {ui.data_dir}")
    path = token_path(ui.data_dir)
    rotate_token(path)
    ui.result({"rotated": True, "path": str(path)},
              f"replaced the API token in {path}; the old one no longer works"
              " (coco token show prints the new one)")


# --- receiving, history, events -------------------------------------------------------------


@wallet_command(main, idempotent=True)
@click.argument("token")
@click.option("--into", metavar="URL",
              help="move the token's value to this mint of the wallet (over lightning)")
@click.option("-y", "--yes", is_flag=True,
              help="with --into: do not ask (needed when stdin is not a terminal)")
def receive(ui: Ui, token: str, into: str | None, yes: bool) -> None:
    """Swap a token into the wallet (TOKEN, or - to read it from stdin).

    With --into URL the token is melted at its own mint to pay a quote of URL: shows
    what arrives and the fees, asks, then moves it (the change stays at the token's
    mint).
    """
    if token == "-":
        token = sys.stdin.read()  # the daemon strips it
    if into is None:
        op = ui.client.post("/receive", {"token": token}, idempotency_key=ui.key())
        unit = op.get("unit") or "sat"
        ui.result(op, f"received {sat(op['amount'], unit)} from {op['mint_url']}"
                      f" (mint fee {sat(op['fee'], unit)}); operation {op['id']} is"
                      f" {op['state']}")
        return
    if not yes and not _can_ask():
        raise click.UsageError("stdin is not a terminal, so nobody can confirm the move;"
                               " add --yes to move it without asking",
                               click.get_current_context())
    op = ui.client.post("/receive/prepare", {"token": token, "into": into},
                        idempotency_key=ui.key())
    if not ui.as_json:
        ui.note(pairs([("token", sat(op["input_amount"])), ("arrives", sat(op["amount"])),
                       ("fee reserve", sat(op["fee_reserve"])), ("input fee", sat(op["fee"])),
                       ("from", op["mint_url"]), ("into", op["to_mint_url"]),
                       ("operation", op["id"])]))
    if not yes:
        try:
            confirmed = click.confirm(f"move {sat(op['amount'])} into {op['to_mint_url']}"
                                      f" (fee reserve {sat(op['fee_reserve'])}, input fee"
                                      f" {sat(op['fee'])})?", err=True)
        except click.Abort:
            confirmed = False
        if not confirmed:
            ui.client.post(op_path("/receive", op["id"], "/rollback"),
                           idempotency_key=ui.key("rollback"))
            raise DomainError(f"cancelled: {op['id']} rolled back, the token was not received")
    op = ui.client.post(op_path("/receive", op["id"], "/execute"), {"timeout": EXECUTE_WAIT},
                        timeout=EXECUTE_WAIT + READ_TIMEOUT, idempotency_key=ui.key("execute"))
    if op["state"] == "rolled_back":
        _melt_failed(ui, op, f"not moved ({op.get('error') or 'rolled back'})")
    ui.result(op, pairs([("state", op["state"]), ("received", sat(op["received"])),
                         ("change", sat(op["change_amount"])), ("input fee", sat(op["fee"])),
                         ("lightning fee", sat(op["fee_paid"])), ("operation", op["id"])]))


@wallet_command(main)
@click.option("--limit", type=click.IntRange(min=1), help="only the newest N")
@click.option("--cursor", metavar="C", help="go on after the page that gave this cursor")
@click.option("--mint", metavar="URL", help="only operations at this mint (either end)")
@click.option("--kind", type=click.Choice(["send", "receive", "mint", "melt", "transfer",
                                           "restore"]),
              help="only operations of this kind")
@click.option("--state", type=click.Choice(["init", "prepared", "executing", "pending",
                                            "completed", "rolling_back", "rolled_back"]),
              help="only operations in this state")
@click.option("--paged", is_flag=True,
              help="with --json: the page {items, next_cursor}, not the bare list")
def history(ui: Ui, limit: int | None, cursor: str | None, mint: str | None,
            kind: str | None, state: str | None, paged: bool) -> None:
    """Every operation, newest first (a page of them with --limit; the next one with
    --cursor)."""
    page = ui.client.get("/history", limit=limit, cursor=cursor, mint=mint, kind=kind,
                         state=state, paged=1)
    entries, more = page["items"], page["next_cursor"]
    if ui.as_json:
        ui.result(page if paged or cursor is not None else entries, "")
        return
    click.echo(operations_table(entries) if entries else "no operations yet")
    if more:
        same = [f"--{k} {v}" for k, v in (("limit", limit), ("mint", mint), ("kind", kind),
                                            ("state", state)) if v is not None]
        ui.note(" ".join(["more: coco history --cursor", more, *same]))


@wallet_command(main, idempotent=True)
@click.option("--mint", metavar="URL", help="only this mint [default: every mint]")
@click.option("--max-fee-fraction", type=click.FloatRange(min=0, max=1), metavar="F",
              help="skip when the input fee is above this fraction of the amount"
                   " [default: the daemon's, 0.1]")
def consolidate(ui: Ui, mint: str | None, max_fee_fraction: float | None) -> None:
    """Swap a mint's proofs into the fewest (inactive keysets first, then the smallest,
    at most 1000 or the mint's array cap), paying the NUT-02 input fee; skipped when
    there is nothing to gain or the fee is too high. Without --mint, every mint in turn."""
    key = ui.key()
    if key is not None and mint is None:
        raise click.UsageError("--idempotency-key needs --mint", click.get_current_context())
    urls = [mint] if mint else [m["url"] for m in ui.client.get("/mints")]
    body: dict[str, Any] = {}
    if max_fee_fraction is not None:
        body["max_fee_fraction"] = max_fee_fraction
    results = [ui.client.post("/consolidate", {"mint_url": url, **body}, idempotency_key=key)
               for url in urls]
    ui.result(results, lambda: click.echo("\n".join(consolidate_text(r) for r in results)
                                          or "no mints"))


def consolidate_text(r: dict[str, Any]) -> str:
    """One line per mint: what a consolidation did, or why it was skipped."""
    if r["skipped"] is not None:
        return (f"{r['mint_url']}: skipped ({r['skipped'].replace('_', ' ')}): {r['inputs']}"
                f" proofs, fee {sat(r['fee'])}")
    op = r["operation"]
    return (f"{r['mint_url']}: {r['inputs']} proofs ({sat(r['input_amount'])}) into"
            f" {r['outputs']} ({sat(r['amount'])}), fee {sat(r['fee'])}: {op['state']}"
            f" (operation {op['id']})")


@wallet_command(main)
@click.option("--mint", metavar="URL", help="only this mint")
@click.option("--fix", is_flag=True,
              help="remove the ready proofs the mint says are spent and no operation holds")
def audit(ui: Ui, mint: str | None, fix: bool) -> None:
    """Solvency report: the wallet's proofs checked at each mint (NUT-07), reservations,
    pending sends and melts, and every difference. Changes nothing without --fix."""
    if fix:
        report = ui.client.post("/audit/fix", {"mint_url": mint} if mint else {})
    else:
        report = ui.client.get("/audit", mint=mint)
    ui.result(report, lambda: click.echo(audit_text(report)))


def audit_text(report: dict[str, Any]) -> str:
    """The human rendering of an audit report (the JSON view of ``AuditReport``)."""
    rows: list[tuple[Any, ...]] = []
    notes: list[str] = []
    for a in report["mints"]:
        said = a["reachable"] is not False
        for i, name in enumerate(("ready", "reserved", "pending_send")):
            c = a[name]
            rows.append((a["mint_url"] if i == 0 else "", a["unit"] if i == 0 else "",
                         name.replace("_", " "), c["count"], c["amount"],
                         *((c[k]["amount"] for k in ("unspent", "spent", "pending")) if said
                           else ("?", "?", "?"))))
        found: list[str] = []
        if a["reachable"] is False:
            found.append(f"unreachable, nothing checked or changed ({a['error']})")
        for d in a["differences"]:
            held = f", held by {d['operation_id']}" if d["operation_id"] else ""
            found.append(f"difference {d['kind']}: {sat(d['amount'])}, Y {d['y'][:16]}"
                         f"...{held}")
        for r in a["reservations"]:
            age = "-" if r["age_s"] is None else _duration(r["age_s"])
            found.append(f"reserved {sat(r['amount'])} in {r['proofs']} proof(s) by"
                         f" {r['kind'] or 'an uncommitted operation'} {r['operation_id']}"
                         f" ({r['state']}, {age} old)")
        for o in (*a["pending_sends"], *a["pending_melts"]):
            claim = f", {o['claim'].replace('_', ' ')}" if o["claim"] else ""
            found.append(f"pending {o['kind']} {o['operation_id']} of {sat(o['amount'])}"
                         f" ({o['state']}{claim}, {_duration(o['age_s'])} old)")
        for op_id in a["claimed_not_finalized"]:
            found.append(f"send {op_id} claimed, not yet finalized")
        if a["changed"]["count"]:
            found.append(f"{a['changed']['count']} proof(s) moved during the audit"
                         " (not judged; audit again)")
        if a["fixed"]["count"]:
            found.append(f"fixed: removed {a['fixed']['count']} spent proof(s),"
                         f" {sat(a['fixed']['amount'])}")
        if found:
            notes += [f"{a['mint_url']} ({a['unit']}):", *(f"  {n}" for n in found)]
    lines = [table(["MINT", "UNIT", "STATUS", "PROOFS", "AMOUNT", "UNSPENT", "SPENT",
                    "PENDING"], rows, right=(3, 4, 5, 6, 7)), "", *notes]
    if notes:
        lines.append("")
    if report["difference_count"]:
        lines.append(f"{report['difference_count']} difference(s),"
                     f" {sat(report['difference_amount'])}")
        fixable = sum(1 for a in report["mints"] for d in a["differences"]
                      if d["kind"] == "ready_spent")
        if fixable and not report["fix"]:
            lines.append(f"coco audit --fix removes the {fixable} proof(s) the mint says"
                         " are spent")
    else:
        lines.append("no difference" + (" (an unreachable mint was not checked)"
                                        if report["unreachable"] else ""))
    return "\n".join(lines)


@wallet_command(main)
@click.option("-f", "--follow", is_flag=True, help="keep printing new events (Ctrl-C stops)")
@click.option("--after", type=click.IntRange(min=0), metavar="SEQ",
              help="every stored event after this seq (0: all kept), then with --follow the"
                   " new ones; a consumer resumes from the last seq it printed")
def events(ui: Ui, follow: bool, after: int | None) -> None:
    """Wallet events, each with its seq: the daemon's recent ones, or (--after) every one
    kept in the wallet after SEQ (one JSON object a line with --json)."""
    seen = 0
    try:
        for event in ui.client.stream("/events", follow=1 if follow else None, after=after):
            seen += 1
            if ui.as_json:
                click.echo(json.dumps(event))
            else:
                op = event.get("operation") or {}
                amount = op.get("amount", event.get("amount"))
                shown = event.get("operation_id") or event.get("request_id") or "-"
                click.echo(f"{event.get('seq', '-'):>6}  {when(event['time'])}  "
                           f"{event['event']:<19} {shown}  "
                           f"{'-' if amount is None else amount:>6} sat  {op.get('state', '-')}")
    except KeyboardInterrupt:
        return
    if follow:
        ui.note("the daemon stopped")
    elif not seen and not ui.as_json:
        click.echo("no events since the daemon started" if after is None
                   else f"no events after {after}")


if __name__ == "__main__":
    main(prog_name="coco")
