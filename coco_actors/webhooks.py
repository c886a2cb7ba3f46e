"""Webhooks: every durable event POSTed alone, signed, to each receiver, in seq order.

A merchant's backend learns of ``send:finalized`` or ``request:paid`` without
polling: each webhook has a delivery thread that reads the event outbox
(:class:`EventSource`, ``coco.events``) after its cursor and POSTs one event at
a time. The body is a JSON object (``seq``, ``type`` and ``event`` (the same
name), ``time`` in ms, ``operation_id``, ``mint_url``, ``data``); it never holds
a token or a secret. It is signed the Standard Webhooks way::

    webhook-id:        evt_<seq>            the same on every retry of the event
    webhook-timestamp: <unix seconds>       of this attempt
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>

The key: a secret ``whsec_<base64>`` is base64-decoded (as Standard Webhooks
libraries do); any other secret is used as its UTF-8 bytes. Either must give at
least :data:`MIN_KEY_BYTES` bytes.

Delivery is at least once and in seq order, hence in order per operation: an
event is sent only after every earlier one got a 2xx. A non-2xx answer (a
redirect too: none is followed) or a connection error is retried, after a capped
exponential backoff with jitter (:class:`RetryPolicy`), for as long as it takes:
an event is never skipped, so a receiver that stays down holds its webhook's
later events back (``status()`` shows it). After each 2xx the delivered seq (the
cursor) is committed to LMDB (through the ProofLedger, the one writer), so a
restart resumes after the last event delivered; a crash between the 2xx and the
commit sends that one event again.

Only loopback receivers (127.0.0.0/8, ::1, ``localhost``) and the hosts of the
allowlist (``Coco.open(webhook_hosts=...)``, ``coco serve --webhook-allow-host``)
are accepted; anything else is an :class:`~coco_actors.errors.InvalidInputError`
when the webhook is added, before anything is stored. Logs name a webhook by its
id and URL (without query or credentials) and an event by its seq and name: never
the secret, never the body.

Threads: each webhook's delivery runs on its own :class:`SupervisedThread`
(``coco-webhook-<id>``; a failure is logged and the loop restarted). ``add``,
``remove``, ``list``, ``status`` and ``close`` may be called from any thread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import random
import stat
import threading
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from coco_actors.actors import wait
from coco_actors.errors import InvalidInputError, InvalidStateError, NotFoundError
from coco_actors.pacing import is_loopback_host
from coco_actors.proof_ledger import ProofLedgerProxy
from coco_actors.records import WebhookRecord, now_ms
from coco_actors.store import Store
from coco_actors.threads import SupervisedThread

__all__ = [
    "EventLike",
    "EventSource",
    "MIN_KEY_BYTES",
    "RetryPolicy",
    "WebhookInfo",
    "WebhookSpec",
    "WebhookStatus",
    "Webhooks",
    "check_url",
    "event_body",
    "read_secret_file",
    "sign",
    "signing_key",
    "specs_from_files",
]

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
#: The shortest signing key accepted (Standard Webhooks secrets carry 24 to 64 bytes).
MIN_KEY_BYTES = 16
#: Events read from the outbox per batch.
BATCH = 100
#: ``status()`` counts pending events up to this many.
PENDING_CAP = 10_000
#: Upper bound of a ledger ask from a delivery thread.
LEDGER_TIMEOUT = 30.0
#: Keys of an event's data that are never sent (bearer value or secrets).
_WITHHELD = frozenset({"token", "secret", "secrets", "mnemonic", "proofs", "outputs",
                       "inputs", "send_proofs"})


# --- what the deliverer reads: the event outbox ------------------------------------------


class EventLike(Protocol):
    """One durable event as the outbox keeps it (``coco_actors.records.EventRecord``)."""

    @property
    def seq(self) -> int: ...
    @property
    def time(self) -> int: ...
    @property
    def event(self) -> str: ...
    @property
    def operation_id(self) -> str | None: ...
    @property
    def mint_url(self) -> str | None: ...
    @property
    def data(self) -> Mapping[str, Any]: ...


class EventSource(Protocol):
    """The outbox (``coco.events``): events with ``seq > after``, in seq order."""

    def since(self, after: int = 0, limit: int = 1000) -> Sequence[EventLike]: ...

    def last_seq(self) -> int: ...

    def wait(self, after: int, timeout: float) -> Sequence[EventLike]: ...


# --- signing -----------------------------------------------------------------------------


def signing_key(secret: str) -> bytes:
    """The HMAC key of ``secret``: ``whsec_<base64>`` decoded, any other text as UTF-8.

    A malformed or short secret is an :class:`InvalidInputError` that never shows it.
    """
    if not isinstance(secret, str):
        raise InvalidInputError("a webhook secret must be a string")
    text = secret.strip()
    if text.startswith(SECRET_PREFIX):
        try:
            key = base64.b64decode(text[len(SECRET_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInputError(
                f"the webhook secret starts with {SECRET_PREFIX} but the rest is not"
                " base64") from None
    else:
        key = text.encode()
    if len(key) < MIN_KEY_BYTES:
        raise InvalidInputError(f"the webhook secret is too short: it must give at least"
                                f" {MIN_KEY_BYTES} bytes of key")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: ``v1,`` and the base64 HMAC-SHA256 of
    ``"<msg_id>.<timestamp>.<body>"``."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def event_body(ev: EventLike) -> bytes:
    """The JSON object POSTed for ``ev`` (compact, keys sorted), without bearer values."""
    payload = {"seq": ev.seq, "type": ev.event, "event": ev.event, "time": ev.time,
               "operation_id": ev.operation_id, "mint_url": ev.mint_url,
               "data": _withheld(dict(ev.data))}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()


def _withheld(value: object) -> object:
    """``value`` without any key of :data:`_WITHHELD`, at any depth."""
    if isinstance(value, Mapping):
        return {str(k): _withheld(v) for k, v in value.items() if k not in _WITHHELD}
    if isinstance(value, list | tuple):
        return [_withheld(v) for v in value]
    return value


# --- who may receive ---------------------------------------------------------------------


def check_url(url: object, allowed_hosts: Collection[str] = ()) -> str:
    """``url`` if it may receive webhooks: http(s), no credentials in it, and a loopback
    host or one of ``allowed_hosts``; an :class:`InvalidInputError` otherwise."""
    if not isinstance(url, str):
        raise InvalidInputError(f"a webhook URL must be a string, got {type(url).__name__}")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise InvalidInputError(f"{url!r} is not a URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInputError(f"a webhook URL must be http:// or https:// with a host,"
                                f" got {_shown(url)!r}")
    if parsed.userinfo:
        raise InvalidInputError("a webhook URL must not carry credentials (user:password@)")
    host = parsed.host.lower().rstrip(".")
    if not (is_loopback_host(host) or host in {h.lower().rstrip(".") for h in allowed_hosts}):
        raise InvalidInputError(
            f"webhook host {host} is not allowed: only loopback (127.0.0.0/8, ::1, localhost)"
            " and the hosts given with --webhook-allow-host (webhook_hosts)")
    return url


def _shown(url: str) -> str:
    """A URL as logs show it: no query, no fragment, no credentials."""
    try:
        u = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<invalid URL>"
    host = f"[{u.host}]" if ":" in u.host else u.host
    port = f":{u.port}" if u.port else ""
    return f"{u.scheme}://{host}{port}{u.path}"


# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookSpec:
    """A webhook given at start (``coco serve --webhook``): not stored, only its cursor."""

    url: str
    secret: str = field(repr=False)


def read_secret_file(path: Path | str) -> str:
    """The secret in ``path`` (surrounding whitespace stripped), read at start.

    Refused, as ssh refuses a private key: a file that group or others may access
    (any of the mode bits 077), or one that is not a regular file.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError as exc:
        raise InvalidInputError(f"webhook secret file {p}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInputError(f"webhook secret file {p} is not a regular file")
        if st.st_mode & 0o077:
            raise InvalidInputError(
                f"webhook secret file {p} has mode {stat.S_IMODE(st.st_mode):04o}: group or"
                f" others may access it; make it private with: chmod 600 {p}")
        raw = os.read(fd, 64 * 1024)
    finally:
        os.close(fd)
    try:
        text = raw.decode().strip()
    except UnicodeDecodeError:
        raise InvalidInputError(f"webhook secret file {p} is not UTF-8 text") from None
    if not text:
        raise InvalidInputError(f"webhook secret file {p} is empty")
    return text


def specs_from_files(urls: Sequence[str], secret_files: Sequence[Path | str]
                     ) -> list[WebhookSpec]:
    """``--webhook URL`` and ``--webhook-secret-file F`` options as specs: the n-th file
    signs for the n-th URL, or one file for every URL."""
    if not urls and not secret_files:
        return []
    if not urls:
        raise InvalidInputError("--webhook-secret-file needs --webhook URL")
    if len(secret_files) == 1:
        files = list(secret_files) * len(urls)
    elif len(secret_files) == len(urls):
        files = list(secret_files)
    else:
        raise InvalidInputError(
            f"{len(urls)} --webhook URL(s) need one --webhook-secret-file each, or a single"
            f" one for all; got {len(secret_files)}")
    return [WebhookSpec(url, read_secret_file(f)) for url, f in zip(urls, files, strict=True)]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed delivery is tried again, and how long one request may take.

    The n-th retry waits ``min(cap, first * 2**(n-1))`` plus up to ``jitter`` times
    that (random), so never more than ``cap * (1 + jitter)``. Retries go on until a
    2xx (at least once: an event is never given up).
    """

    first: float = 1.0
    cap: float = 60.0
    jitter: float = 0.25
    #: seconds for one request (connect, write, read each)
    timeout: float = 10.0
    #: longest wait for a new event before the loop looks again (also bounds a stop)
    poll: float = 1.0

    def __post_init__(self) -> None:
        if not (0 < self.first <= self.cap and 0 <= self.jitter <= 1 and self.timeout > 0
                and self.poll > 0):
            raise InvalidInputError("retry policy: need 0 < first <= cap, 0 <= jitter <= 1,"
                                    " timeout > 0 and poll > 0")

    def delay(self, failures: int) -> float:
        """Seconds before the next attempt, after ``failures`` consecutive failures."""
        base = min(self.cap, self.first * float(2 ** min(max(failures - 1, 0), 60)))
        return base + random.uniform(0.0, base * self.jitter)


# --- what callers see --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookInfo:
    """A webhook (never its secret). ``source``: ``api`` (stored) or ``config`` (given
    at start, e.g. ``coco serve --webhook``)."""

    id: str
    url: str
    source: str
    created_at: int | None = None


@dataclass(frozen=True, slots=True)
class WebhookStatus:
    """Where one webhook's delivery stands (``coco.webhooks.status()``)."""

    id: str
    url: str
    source: str
    #: the last event seq the receiver answered 2xx (the persisted cursor)
    last_delivered_seq: int
    #: events after it, waiting (counted up to :data:`PENDING_CAP`)
    pending: int
    #: the event being delivered now (None while nothing is pending)
    current_seq: int | None = None
    #: attempts made for the current event
    attempts: int = 0
    #: the last failure: ``HTTP <status>`` or the error class (e.g. ``ConnectError``)
    last_error: str | None = None
    #: when the next attempt of the current event is due (unix ms), while backing off
    next_retry_at: int | None = None
    last_delivered_at: int | None = None
    #: events delivered since this process started
    delivered: int = 0
    running: bool = False


# --- delivery ----------------------------------------------------------------------------


class _Hook:
    """One webhook's delivery loop and its state (read by ``status()`` from any thread)."""

    def __init__(self, owner: Webhooks, info: WebhookInfo, key: bytes) -> None:
        self.info = info
        self._owner = owner
        self._key = key
        self._lock = threading.Lock()
        self.cursor = owner.store.webhook_cursor(info.id) or 0
        self.current: int | None = None
        self.attempts = 0
        self.last_error: str | None = None
        self.next_retry_at: int | None = None
        self.last_delivered_at: int | None = None
        self.delivered = 0
        self.thread = SupervisedThread(f"coco-webhook-{info.id}", self.run,
                                       backoff_min=owner.retry.first,
                                       backoff_max=max(owner.retry.cap, owner.retry.first),
                                       logger=log)

    def delivered_seq(self) -> int:
        with self._lock:
            return self.cursor

    def status(self, pending: int) -> WebhookStatus:
        with self._lock:
            return WebhookStatus(
                id=self.info.id, url=self.info.url, source=self.info.source,
                last_delivered_seq=self.cursor, pending=pending, current_seq=self.current,
                attempts=self.attempts, last_error=self.last_error,
                next_retry_at=self.next_retry_at, last_delivered_at=self.last_delivered_at,
                delivered=self.delivered, running=self.thread.is_alive())

    def run(self, stop: threading.Event) -> None:
        """The loop, on this webhook's thread: read after the cursor, deliver, commit."""
        owner = self._owner
        cursor = owner.store.webhook_cursor(self.info.id) or 0
        with self._lock:
            self.cursor = cursor
        with httpx.Client(timeout=owner.retry.timeout, follow_redirects=False,
                          transport=owner.transport) as client:
            while not stop.is_set():
                batch = (owner.source.since(cursor, BATCH)
                         or owner.source.wait(cursor, owner.retry.poll))
                for ev in batch:
                    if ev.seq <= cursor:
                        continue
                    if ev.seq > cursor + 1:  # seqs are consecutive: these were pruned
                        log.warning("webhook %s: events %d to %d left the outbox (retention)"
                                    " before they were delivered", self.info.id, cursor + 1,
                                    ev.seq - 1)
                    if not self._deliver(client, ev, stop):
                        return  # stopped while retrying
                    wait(owner.ledger.set_webhook_cursor(self.info.id, ev.seq),
                         LEDGER_TIMEOUT, "ProofLedger")
                    cursor = ev.seq
                    with self._lock:
                        self.cursor = cursor
                        self.current = None
                        self.attempts = 0
                        self.next_retry_at = None
                        self.delivered += 1
                        self.last_delivered_at = now_ms()
                    if stop.is_set():
                        return

    def _deliver(self, client: httpx.Client, ev: EventLike, stop: threading.Event) -> bool:
        """POST ``ev`` until a 2xx (True), or until a stop (False)."""
        body = event_body(ev)
        msg_id = f"evt_{ev.seq}"
        failures = 0
        while not stop.is_set():
            timestamp = int(time.time())
            headers = {"content-type": "application/json", "user-agent": "coco-actors",
                       "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                       "webhook-signature": sign(self._key, msg_id, timestamp, body)}
            with self._lock:
                self.current = ev.seq
                self.attempts = failures + 1
                self.next_retry_at = None
            error: str | None
            try:
                with client.stream("POST", self.info.url, content=body,
                                   headers=headers) as resp:
                    ok = 200 <= resp.status_code < 300
                    error = None if ok else f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            if error is None:
                log.debug("webhook %s: event %d (%s) delivered", self.info.id, ev.seq,
                          ev.event)
                return True
            failures += 1
            delay = self._owner.retry.delay(failures)
            with self._lock:
                self.last_error = error
                self.next_retry_at = now_ms() + int(delay * 1000)
            log.warning("webhook %s (%s): event %d (%s) not delivered (%s), attempt %d;"
                        " again in %.1f s", self.info.id, _shown(self.info.url),
                        ev.seq, ev.event, error, failures, delay)
            if stop.wait(delay):
                return False
        return False


class Webhooks:
    """``coco.webhooks``: the webhooks of one wallet and their delivery threads."""

    def __init__(self, store: Store, ledger: ProofLedgerProxy, source: EventSource, *,
                 hosts: Collection[str] = (), retry: RetryPolicy | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.store = store
        self.ledger = ledger
        self.source = source
        self.hosts = tuple(hosts)
        self.retry = retry or RetryPolicy()
        #: an httpx transport for every request (tests: a MockTransport); None: the network
        self.transport = transport
        self._lock = threading.Lock()
        self._hooks: dict[str, _Hook] = {}
        self._closed = False

    @staticmethod
    def validate(specs: Sequence[WebhookSpec], hosts: Collection[str]) -> None:
        """Check configured webhooks before anything is opened: URL, host, secret."""
        seen: set[str] = set()
        for spec in specs:
            check_url(spec.url, hosts)
            signing_key(spec.secret)
            if spec.url in seen:
                raise InvalidInputError(f"webhook {_shown(spec.url)} is given twice")
            seen.add(spec.url)

    def start(self, configured: Sequence[WebhookSpec] = ()) -> None:
        """Start the configured webhooks and the stored ones (on the caller's thread:
        a new one's cursor is set before any later event can be missed)."""
        self.validate(configured, self.hosts)
        for spec in configured:
            hook_id = "cfg_" + hashlib.sha256(spec.url.encode()).hexdigest()[:16]
            if self.store.webhook_cursor(hook_id) is None:  # a new one: from now on
                wait(self.ledger.set_webhook_cursor(hook_id, self.source.last_seq()),
                     LEDGER_TIMEOUT, "ProofLedger")
            self._run(WebhookInfo(hook_id, spec.url, "config"), signing_key(spec.secret))
        for rec in self.store.webhooks():
            try:
                key = signing_key(rec.secret)
            except InvalidInputError as exc:  # stored by an older release, say
                log.error("webhook %s not started: %s", rec.id, exc)
                continue
            self._run(WebhookInfo(rec.id, rec.url, "api", rec.created_at), key)

    def _run(self, info: WebhookInfo, key: bytes) -> None:
        hook = _Hook(self, info, key)
        with self._lock:
            if self._closed:
                raise InvalidStateError("the wallet is closing")
            self._hooks[info.id] = hook
        hook.thread.start()
        log.info("webhook %s delivers to %s", info.id, _shown(info.url))

    def add(self, url: str, secret: str, *, from_seq: int | None = None) -> WebhookInfo:
        """Deliver every event after ``from_seq`` (default: from now on) to ``url``,
        signed with ``secret``; stored, so it survives a restart (its secret too, in the
        0700 data directory). Refused before anything is stored: a host that is neither
        loopback nor allowed, a malformed URL or secret, a URL already a webhook."""
        check_url(url, self.hosts)
        key = signing_key(secret)
        if from_seq is not None and (isinstance(from_seq, bool) or not isinstance(from_seq, int)
                                     or from_seq < 0):
            raise InvalidInputError(f"from_seq must be a seq (an integer >= 0), got {from_seq!r}")
        with self._lock:
            if any(h.info.url == url for h in self._hooks.values()):
                raise InvalidInputError(f"{_shown(url)} is a webhook already")
        rec = WebhookRecord(id="wh_" + uuid.uuid4().hex[:16], url=url, secret=secret.strip())
        cursor = self.source.last_seq() if from_seq is None else from_seq
        wait(self.ledger.put_webhook(rec, cursor), LEDGER_TIMEOUT, "ProofLedger")
        info = WebhookInfo(rec.id, rec.url, "api", rec.created_at)
        self._run(info, key)
        return info

    def remove(self, webhook_id: str) -> None:
        """Stop delivering to a webhook added through the API and forget it (and its
        cursor). A configured one is removed by starting without it."""
        with self._lock:
            hook = self._hooks.get(webhook_id)
            if hook is None:
                raise NotFoundError(f"unknown webhook {webhook_id!r}")
            if hook.info.source != "api":
                raise InvalidStateError(f"webhook {webhook_id} was given at start; restart"
                                        " without it to remove it")
            del self._hooks[webhook_id]
        if not hook.thread.stop(self.retry.timeout + self.retry.poll + 5.0):
            log.warning("webhook %s: its thread did not stop in time", webhook_id)
        wait(self.ledger.delete_webhook(webhook_id), LEDGER_TIMEOUT, "ProofLedger")

    def status(self) -> list[WebhookStatus]:
        """Per webhook: its cursor, how many events wait, the current attempt and error."""
        with self._lock:
            hooks = list(self._hooks.values())
        out = []
        for hook in hooks:
            pending = len(self.source.since(hook.delivered_seq(), PENDING_CAP))
            out.append(hook.status(pending))
        return sorted(out, key=lambda s: s.id)

    def close(self, timeout: float = 30.0) -> None:
        """Stop every delivery thread (each at its next step; an attempt in flight is
        bounded by the request timeout)."""
        with self._lock:
            self._closed = True
            hooks = list(self._hooks.values())
        for hook in hooks:
            hook.thread.stop_event.set()  # all at once, then join each
        for hook in hooks:
            if not hook.thread.stop(timeout):
                log.warning("webhook %s: its thread did not stop within %.0f s",
                            hook.info.id, timeout)

    def list(self) -> list[WebhookInfo]:
        """Every webhook (configured and stored), by id; never a secret."""
        with self._lock:
            return sorted((h.info for h in self._hooks.values()), key=lambda i: i.id)
