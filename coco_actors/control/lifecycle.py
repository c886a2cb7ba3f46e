"""``coco serve`` and ``coco init``: the daemon's life, from the open wallet to the removed socket.

The daemon holds the wallet's data directory (the store's lock makes a second
daemon refuse), runs recovery at start, keeps the watcher running (it mints paid
quotes and finalizes claimed sends, also those left from before a restart), and
answers on ``DIR/control.sock`` (socket 0600 in a 0700 directory), with ``--listen``
on a TCP port too (the same API, every request with the bearer token of
``DIR/api-token``: :mod:`.auth`) and, with ``--payments-listen``, on the public
payments listener (:mod:`.payments`); with ``--webhook``, it POSTs every event to the
receivers (:mod:`coco_actors.webhooks`). Shutdown
(SIGTERM, SIGINT, ``POST /stop``) refuses new requests, ends event streams and
waits, lets the requests in flight finish, closes the wallet (actors in reverse
order, every operation at a persisted state) and removes the socket.

Threads: the main thread runs :func:`serve` and waits for a signal; the accept
loop (and the payments listener's) runs on a supervised thread (restarted, with its
traceback logged, should it fail); each request runs on a thread of its own; event
handlers run on the EventBus thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from coco_actors.coco import Coco
from coco_actors.consolidator import ConsolidationPolicy
from coco_actors.control.api import ControlApi
from coco_actors.control.auth import TokenFile, create_token
from coco_actors.control.errors import DaemonError, NoWalletError, WalletExistsError
from coco_actors.control.events import EventHub
from coco_actors.control.paths import MAX_SOCKET_PATH, socket_path, token_path
from coco_actors.control.payments import DEFAULT_RATE, PaymentsServer, RequestBudget, describe
from coco_actors.control.server import BoundedServer, ControlServer, TcpControlServer
from coco_actors.control.views import jsonable
from coco_actors.errors import CocoError
from coco_actors.events import DEFAULT_RETENTION
from coco_actors.proof_ledger import DEFAULT_IDEMPOTENCY_TTL
from coco_actors.refresher import DEFAULT_KEYSET_REFRESH
from coco_actors.store import DataDirError, Store
from coco_actors.threads import SupervisedThread
from coco_actors.webhooks import RetryPolicy, WebhookSpec

log = logging.getLogger(__name__)

#: Seconds the requests in flight get to finish once a shutdown starts.
SHUTDOWN_GRACE = 60.0
#: Seconds the accept loop gets to notice its stop.
ACCEPT_STOP_TIMEOUT = 5.0
#: Requests without a valid bearer token one client address may send the control API on a
#: TCP port per second (and at once); over it they get 429s.
AUTH_FAILURE_RATE = 20.0
#: Libraries whose INFO lines are per request: only their warnings are kept. (Not pykka:
#: its INFO line is the report of an exception returned by an actor to its caller.)
QUIET_LOGGERS = ("httpx", "httpcore", "websocket")


# --- the wallet without a daemon: coco init -----------------------------------------------


def has_wallet(data_dir: Path) -> bool:
    """True when ``data_dir`` holds a wallet (a stored seed). Raises WalletLockedError
    when a daemon has it open."""
    if not data_dir.is_dir():
        return False
    store = Store(data_dir)
    try:
        return store.get_setting("mnemonic") is not None
    finally:
        store.close()


@dataclass(frozen=True, slots=True)
class InitResult:
    data_dir: Path
    mnemonic: str
    mints: list[str] = field(default_factory=list)
    #: per mint, the restore report (a JSON view), for a restored seed
    restored: dict[str, object] = field(default_factory=dict)
    #: mints that could not be added (or restored from), with why: the wallet exists anyway
    errors: dict[str, str] = field(default_factory=dict)
    #: the bearer token of the control API on a TCP port (``DATA_DIR/api-token``)
    api_token: str = ""


def init_wallet(data_dir: Path, *, mnemonic: str | None = None,
                mints: tuple[str, ...] = ()) -> InitResult:
    """Create the wallet of ``data_dir`` (a fresh seed unless ``mnemonic``), trust ``mints``
    and, for a restored seed, restore from each (NUT-09)."""
    if has_wallet(data_dir):
        raise WalletExistsError(f"{data_dir} already holds a wallet; choose another --data-dir")
    _private_dir(data_dir)
    coco = Coco.open(data_dir, mnemonic, recover=False, watcher=False)
    try:
        added: list[str] = []
        restored: dict[str, object] = {}
        errors: dict[str, str] = {}
        for url in mints:
            try:
                added.append(coco.mints.add(url).url)
                if mnemonic is not None:
                    restored[added[-1]] = jsonable(coco.restore(added[-1]))
            except CocoError as exc:  # the seed is stored: it must still reach the user
                errors[url] = str(exc)
        token = create_token(token_path(data_dir)) or ""  # none there: a fresh wallet
        return InitResult(data_dir, coco.mnemonic, added, restored, errors, token)
    finally:
        coco.close()


def _private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
    except OSError as exc:  # read-only mount, no permission: one line, not a traceback
        raise DataDirError(f"data directory {path} cannot be written:"
                           f" {exc.strerror or type(exc).__name__}") from None


# --- the daemon -------------------------------------------------------------------------


class Daemon:
    """The wallet of one data directory and its control server.

    ``start`` opens the wallet (recovery runs) and binds the socket (and, given
    ``payments_listen``, the payments listener: ``payments_url`` is its public URL,
    by default ``http://HOST:PORT`` as bound); ``wait`` blocks until a stop is
    requested; ``close`` shuts down (also after a failed ``start``).
    """

    def __init__(self, data_dir: Path, *, rollback_prepared_after: float | None = None,
                 exposure: Mapping[str, int] | None = None,
                 sweep_to: str | None = None,
                 payments_listen: tuple[str, int] | None = None,
                 payments_url: str | None = None,
                 payments_rate: float = DEFAULT_RATE,
                 listen: tuple[str, int] | None = None,
                 idempotency_ttl: float = DEFAULT_IDEMPOTENCY_TTL,
                 event_retention: float = DEFAULT_RETENTION,
                 webhooks: Sequence[WebhookSpec] = (), webhook_hosts: Sequence[str] = (),
                 webhook_retry: RetryPolicy | None = None,
                 keyset_refresh: float | None = DEFAULT_KEYSET_REFRESH,
                 consolidation: ConsolidationPolicy | None = None) -> None:
        self.data_dir = data_dir
        self.keyset_refresh = keyset_refresh  # seconds between keyset refreshes (Coco.open)
        self.consolidation = consolidation  # the consolidation policy (None: the default)
        self.listen = listen
        self._tcp: TcpControlServer | None = None
        self._tcp_accept: SupervisedThread | None = None
        self.idempotency_ttl = idempotency_ttl
        self.event_retention = event_retention  # seconds events are kept (Coco.open)
        self.webhooks = tuple(webhooks)  # their secrets were read at start (coco serve)
        self.webhook_hosts = tuple(webhook_hosts)
        self.webhook_retry = webhook_retry
        self.payments_listen = payments_listen
        self.payments_url = payments_url
        self.payments_rate = payments_rate
        self._payments: PaymentsServer | None = None
        self._payments_accept: SupervisedThread | None = None
        self.rollback_prepared_after = rollback_prepared_after
        self.exposure = exposure  # the exposure policy (Coco.open validates it)
        self.sweep_to = sweep_to
        self.socket = socket_path(data_dir)
        self.events = EventHub()
        self.coco: Coco | None = None
        self._stop_requested = threading.Event()
        self._server: ControlServer | None = None
        self._accept: SupervisedThread | None = None
        self._socket_id: tuple[int, int] | None = None

    def start(self) -> None:
        if len(os.fsencode(self.socket)) > MAX_SOCKET_PATH:
            raise DaemonError(
                f"the control socket path {self.socket} is longer than {MAX_SOCKET_PATH} bytes,"
                " the limit of a Unix socket; choose a shorter --data-dir")
        if not has_wallet(self.data_dir):  # may raise WalletLockedError: a daemon runs
            raise NoWalletError(f"no wallet in {self.data_dir}; create one with:"
                                f" coco init --data-dir {self.data_dir}")
        _private_dir(self.data_dir)
        log.info("opening the wallet in %s (recovery runs first)", self.data_dir)
        self.coco = Coco.open(self.data_dir, recover=False,
                              rollback_prepared_after=self.rollback_prepared_after,
                              exposure=self.exposure, sweep_to=self.sweep_to,
                              idempotency_ttl=self.idempotency_ttl,
                              event_retention=self.event_retention,
                              webhooks=self.webhooks, webhook_hosts=self.webhook_hosts,
                              webhook_retry=self.webhook_retry,
                              keyset_refresh=self.keyset_refresh,
                              consolidation=self.consolidation)
        self.events.attach(self.coco)  # first: the events of recovery reach the stream too
        recovered = self.coco.recover()  # open quotes are handed to the Watcher here
        if recovered:
            log.info("recovery: %s", ", ".join(f"{n} {s}" for s, n in sorted(recovered.items())))
        api = ControlApi(self.coco, self.data_dir, self.events, self._stop_requested.set)
        if self.payments_listen is not None:  # first: a port in use stops the start here
            self._start_payments(api)
        if self.listen is not None:
            self._start_tcp(api)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()  # stale, from a daemon that was killed: we hold the lock
        self._server = ControlServer(self.socket, api, self.events)
        st = os.stat(self.socket)
        self._socket_id = (st.st_dev, st.st_ino)
        self._accept = SupervisedThread("coco-control", self._server.serve_until, logger=log)
        self._accept.start()
        log.info("coco daemon %d ready: wallet %s, control socket %s", os.getpid(),
                 self.data_dir, self.socket)

    def _start_payments(self, api: ControlApi) -> None:
        host, port = self.payments_listen or ("", 0)
        try:
            self._payments = PaymentsServer((host, port), api.claim_payment,
                                            rate=self.payments_rate)
        except OSError as exc:  # in use, not ours to bind: one line, not a traceback
            raise DaemonError(f"the payments listener cannot bind {host}:{port}:"
                              f" {exc.strerror or exc}") from None
        api.payments = describe(self._payments, self.payments_url)
        self._payments_accept = SupervisedThread("coco-payments", self._payments.serve_until,
                                                 logger=log)
        self._payments_accept.start()
        log.info("payments listener on %s (payment requests carry %s)", self._payments.url,
                 api.payments["url"])

    def _start_tcp(self, api: ControlApi) -> None:
        """The control API on a TCP port, behind the bearer token of ``DATA_DIR/api-token``."""
        host, port = self.listen or ("", 0)
        path = token_path(self.data_dir)
        if create_token(path) is not None:  # a wallet from before the token
            log.info("created the API token %s (coco token show prints it)", path)
        tokens = TokenFile(path)
        tokens.current()  # a token file that cannot be read is logged now, not at a request
        try:
            self._tcp = TcpControlServer((host, port), api, self.events, tokens,
                                         failures=RequestBudget(AUTH_FAILURE_RATE))
        except OSError as exc:  # in use, not ours to bind: one line, not a traceback
            raise DaemonError(f"the control API cannot bind {host}:{port}:"
                              f" {exc.strerror or exc}") from None
        self._tcp_accept = SupervisedThread("coco-control-tcp", self._tcp.serve_until,
                                            logger=log)
        self._tcp_accept.start()
        log.info("control API on %s (every request needs the bearer token of %s)",
                 self._tcp.url, path)

    def wait(self) -> None:
        """Block until ``POST /stop`` (signals interrupt it with an exception)."""
        self._stop_requested.wait()

    def close(self) -> None:
        """Stop accepting, let requests in flight finish, close the wallet, remove the socket."""
        listeners = [(srv, accept) for srv, accept in (
            (self._server, self._accept), (self._tcp, self._tcp_accept),
            (self._payments, self._payments_accept))
            if srv is not None]
        for srv, _ in listeners:
            srv.refuse_new()
        self.events.close()  # event streams and mint waits end now
        for srv, accept in listeners:
            _stop_listener(srv, accept)
        if self.coco is not None:
            self.coco.close()  # actors in reverse order; every operation at a persisted state
            self.coco = None
        self._remove_socket()

    def _remove_socket(self) -> None:
        if self._socket_id is None:
            return
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(self.socket)
            if (st.st_dev, st.st_ino) == self._socket_id:  # not a successor's socket
                self.socket.unlink()
        self._socket_id = None


def _stop_listener(srv: BoundedServer, accept: SupervisedThread | None) -> None:
    """Stop a listener's accept loop, close it, let its requests in flight finish."""
    if accept is not None and not accept.stop(ACCEPT_STOP_TIMEOUT):
        log.warning("the %s accept loop did not stop within %.0f s", srv.name,
                    ACCEPT_STOP_TIMEOUT)
    srv.server_close()
    left = srv.drain(SHUTDOWN_GRACE)
    if left:
        log.warning("%d %s request(s) still running after %.0f s; closing anyway",
                    left, srv.name, SHUTDOWN_GRACE)


# --- coco serve ---------------------------------------------------------------------------


class _StopSignal(BaseException):
    """Raised in the main thread by the first SIGTERM or SIGINT."""


def configure_logging(*, log_file: Path | None = None, verbose: bool = False,
                      as_json: bool = False) -> None:
    """Logs to stderr (and ``log_file``, created 0600): one line per operation
    transition, the reports of failed actor calls, no secrets."""
    formatter: logging.Formatter = (_JsonFormatter() if as_json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        handlers.append(logging.FileHandler(log_file))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        h.setFormatter(formatter)
        root.addHandler(h)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"time": self.formatTime(record), "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def serve(data_dir: Path, *, rollback_prepared_after: float | None = None,
          exposure: Mapping[str, int] | None = None, sweep_to: str | None = None,
          payments_listen: tuple[str, int] | None = None, payments_url: str | None = None,
          payments_rate: float = DEFAULT_RATE,
          listen: tuple[str, int] | None = None,
          idempotency_ttl: float = DEFAULT_IDEMPOTENCY_TTL,
          event_retention: float = DEFAULT_RETENTION, webhooks: Sequence[WebhookSpec] = (),
          webhook_hosts: Sequence[str] = (), webhook_retry: RetryPolicy | None = None,
          keyset_refresh: float | None = DEFAULT_KEYSET_REFRESH,
          consolidation: ConsolidationPolicy | None = None) -> None:
    """Run the daemon in the foreground until SIGTERM, SIGINT or ``POST /stop``.

    ``exposure`` and ``sweep_to``: the exposure policy of :meth:`Coco.open`;
    ``payments_*``: the payments listener (:class:`Daemon`); ``listen``: the control API
    on that TCP address too, behind the bearer token; ``event_retention``: seconds
    events are kept (:meth:`Coco.open`); ``webhook*``: the webhooks of
    :meth:`Coco.open` (:mod:`coco_actors.webhooks`); ``keyset_refresh``: seconds between
    two refreshes of every mint's keysets (None: no schedule); ``consolidation``: its
    consolidation policy (:mod:`coco_actors.consolidator`).

    Must run in the main thread (signal handlers). Raises :class:`CocoError` when
    the daemon cannot start (no wallet, another daemon on ``data_dir``, ...).
    """
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            log.info("%s: already stopping", signal.Signals(signum).name)
            return
        stopping = True
        log.info("%s: stopping", signal.Signals(signum).name)
        raise _StopSignal

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    daemon = Daemon(data_dir, rollback_prepared_after=rollback_prepared_after,
                    exposure=exposure, sweep_to=sweep_to, payments_listen=payments_listen,
                    payments_url=payments_url, payments_rate=payments_rate, listen=listen,
                    idempotency_ttl=idempotency_ttl, event_retention=event_retention,
                    webhooks=webhooks, webhook_hosts=webhook_hosts,
                    webhook_retry=webhook_retry, keyset_refresh=keyset_refresh,
                    consolidation=consolidation)
    try:
        try:
            daemon.start()
            daemon.wait()
            stopping = True
            log.info("stop requested over the control socket: stopping")
        except _StopSignal:
            pass
        finally:
            stopping = True
            daemon.close()
        log.info("coco daemon %d stopped", os.getpid())
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
