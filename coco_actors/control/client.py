"""The client of the daemon's control channel: HTTP with JSON bodies over ``DIR/control.sock``,
or over TCP (``coco serve --listen``) with a bearer token.

The CLI talks to ``coco serve`` only through :class:`ControlClient`; it never opens
the wallet itself. Both transports raise the same errors (a missing or wrong token
is a :class:`RequestFailed` with status 401), split by what the caller can do about
them, as in httpx::

    ControlError
    ├── DaemonUnavailable    could not talk to the daemon: start it (exit code 3)
    │   └── ConnectionLost   it closed the connection before answering (stopped, crashed)
    ├── DaemonTimeout        connected, but no answer in time; the outcome is unknown
    │   └── DaemonBusy       it runs, but took no connection in time (nothing was sent)
    └── RequestFailed        the daemon answered {"error": {"type", "code", "message"}}

A refused connection is told apart by its cause: no socket file, or a socket
nobody listens on (``ECONNREFUSED``: a stale socket) means the daemon is not
running; a full listen backlog (``EAGAIN``: the daemon runs and is busy) is
retried until :data:`CONNECT_TIMEOUT`, then :class:`DaemonBusy`.

Threads: a client is used by one thread at a time (the CLI's main thread, or a test's).
"""

from __future__ import annotations

import errno
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from coco_actors.control.paths import serve_hint, socket_path

#: Seconds to connect to the socket: it is local, so a slow connect means a wedged daemon.
CONNECT_TIMEOUT = 5.0
#: Seconds for an answer. A saga step may wait on a mint for up to 120 s (``coco.CALL_TIMEOUT``).
READ_TIMEOUT = 180.0
#: Seconds between two tries to connect to a daemon whose listen backlog is full (at first).
BUSY_RETRY = 0.01

T = TypeVar("T")


class ControlError(Exception):
    """Base class of every error of the control channel."""


class DaemonUnavailable(ControlError):
    """Nothing answers on the control socket (or at the URL): the daemon is not running."""

    def __init__(self, data_dir: Path | str, reason: str = "", *,
                 url: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.reason = reason
        self.url = url
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"no coco daemon answers at {url}{why}; start it with: coco serve --listen"
            f" HOST:PORT" if url is not None else
            f"no coco daemon is running for {data_dir}{why}; start it with:"
            f" {serve_hint(data_dir)}")


class ConnectionLost(DaemonUnavailable):
    """The daemon closed the connection before it answered (it stopped or crashed)."""

    def __init__(self, data_dir: Path | str) -> None:
        ControlError.__init__(
            self, f"the coco daemon for {data_dir} closed the connection before answering;"
                  f" check it with: coco status --data-dir {data_dir}")
        self.data_dir = Path(data_dir)
        self.reason = "connection lost"


class DaemonTimeout(ControlError):
    """The daemon accepted the request but did not answer in time; it may still finish it."""


class DaemonBusy(DaemonTimeout):
    """The daemon runs (its socket is served) but took no connection in time: retry later."""


class RequestFailed(ControlError):
    """The daemon answered with an error (a domain error of the wallet, or a bad request)."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        self.status = status
        self.error = error
        self.type = str(error.get("type", "Error"))
        #: the stable code of the error type (``coco_actors.errors.ERROR_CODES``)
        self.code = str(error.get("code", ""))
        self.message = str(error.get("message", ""))
        super().__init__(self.message or self.type)


class ControlClient:
    """One connection pool to the daemon of ``data_dir``: over its Unix socket, or, given
    ``url`` (``http://127.0.0.1:PORT``, ``coco serve --listen``), over TCP with ``token``
    as the bearer token of every request.

    ``transport`` replaces the transport (``httpx.MockTransport`` in tests).
    """

    def __init__(self, data_dir: Path | str, *, read_timeout: float = READ_TIMEOUT,
                 transport: httpx.BaseTransport | None = None, url: str | None = None,
                 token: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.socket = socket_path(self.data_dir)
        self.url = url.rstrip("/") if url is not None else None
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if transport is None:
            transport = (httpx.HTTPTransport() if self.url is not None
                         else httpx.HTTPTransport(uds=str(self.socket)))
        self._client = httpx.Client(
            transport=transport, base_url=self.url or "http://coco", trust_env=False,
            headers=headers, follow_redirects=False,
            timeout=httpx.Timeout(read_timeout, connect=CONNECT_TIMEOUT))

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # --- requests -----------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any] | None = None, *,
             timeout: float | None = None, idempotency_key: str | None = None) -> Any:
        return self.request("POST", path, body=body or {}, timeout=timeout,
                            idempotency_key=idempotency_key)

    def request(self, method: str, path: str, *, body: dict[str, Any] | None = None,
                params: dict[str, Any] | None = None, timeout: float | None = None,
                idempotency_key: str | None = None) -> Any:
        """Send one request and return the decoded JSON answer, or raise a ControlError.

        ``idempotency_key`` goes out as the ``Idempotency-Key`` header."""
        kwargs: dict[str, Any] = {}
        if idempotency_key is not None:
            kwargs["headers"] = {"Idempotency-Key": idempotency_key}
        if _params(params):  # an empty mapping would drop a query already in ``path``
            kwargs["params"] = _params(params)
        if body is not None:
            kwargs["json"] = body
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT)
        with self._errors():
            response = self._connecting(lambda: self._client.request(method, path, **kwargs))
        return self._decode(response)

    def stream(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """The objects of a newline-delimited JSON answer, as they arrive (no read timeout)."""
        timeout = httpx.Timeout(None, connect=CONNECT_TIMEOUT)
        request = self._client.build_request("GET", path, params=_params(params),
                                             timeout=timeout)
        with self._errors():
            response = self._connecting(lambda: self._client.send(request, stream=True))
            try:
                if response.status_code >= 400:
                    response.read()
                    self._decode(response)
                for line in response.iter_lines():
                    if line.strip():
                        yield json.loads(line)
            finally:
                response.close()

    def _connecting(self, call: Callable[[], T]) -> T:
        """``call()``, tried again while the daemon's backlog is full (nothing was sent)."""
        deadline = time.monotonic() + CONNECT_TIMEOUT
        pause = BUSY_RETRY
        while True:
            try:
                return call()
            except httpx.ConnectError as exc:
                if _errno(exc) != errno.EAGAIN:
                    raise
                if time.monotonic() + pause > deadline:
                    raise DaemonBusy(
                        f"the coco daemon for {self._where} is running but took no connection"
                        f" within {CONNECT_TIMEOUT:g} s (too many clients); try again") from None
            time.sleep(pause)  # a backoff, not a wait for an event: the kernel gives none
            pause = min(pause * 2, 0.2)

    def _decode(self, response: httpx.Response) -> Any:
        try:
            payload = response.json()
        except ValueError:
            raise RequestFailed(response.status_code, {
                "type": "ProtocolError",
                "message": f"the daemon answered {response.status_code} without JSON"}) from None
        if response.status_code >= 400:
            error = payload.get("error") if isinstance(payload, dict) else None
            if not isinstance(error, dict):
                error = {"type": "ProtocolError",
                         "message": f"the daemon answered {response.status_code}"}
            raise RequestFailed(response.status_code, error)
        return payload

    @property
    def _where(self) -> str:
        return self.url if self.url is not None else str(self.data_dir)

    def _errors(self) -> _ErrorMap:
        return _ErrorMap(self.data_dir, self.url)


def op_path(prefix: str, op_id: str, suffix: str = "") -> str:
    """``/send/<id>/execute`` with the id escaped: it is whatever the user typed."""
    return f"{prefix}/{quote(op_id, safe='')}{suffix}"


def _errno(exc: BaseException) -> int | None:
    """The errno of the OSError behind an httpx transport error, if any."""
    seen: BaseException | None = exc
    for _ in range(8):  # httpx -> httpcore -> OSError
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno
        seen = seen.__cause__ or seen.__context__
    return None


def _reason(exc: BaseException) -> str:
    """Why a TCP connect failed, in a few words (never a header: the token is one)."""
    code = _errno(exc)
    if code == errno.ECONNREFUSED:
        return "connection refused"
    return errno.errorcode.get(code, "cannot connect") if code is not None else "cannot connect"


def _params(params: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (params or {}).items() if v is not None}


class _ErrorMap:
    """Turns httpx's transport errors into the control channel's own."""

    def __init__(self, data_dir: Path, url: str | None = None) -> None:
        self._data_dir = data_dir
        self._url = url

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None or isinstance(exc, ControlError):
            return
        where = self._url if self._url is not None else self._data_dir
        if self._url is not None and isinstance(exc, httpx.ConnectError):
            raise DaemonUnavailable(self._data_dir, _reason(exc), url=self._url) from None
        if self._url is not None and isinstance(exc, httpx.ConnectTimeout):
            raise DaemonBusy(f"the coco daemon at {self._url} took no connection within"
                             f" {CONNECT_TIMEOUT:g} s; try again") from None
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            sock = socket_path(self._data_dir)
            code = _errno(exc)
            if not sock.exists() or code == errno.ENOENT:
                raise DaemonUnavailable(self._data_dir, "no control socket") from None
            if code == errno.ECONNREFUSED or "refused" in str(exc).lower():
                raise DaemonUnavailable(self._data_dir, "stale control socket") from None
            if code == errno.EAGAIN or isinstance(exc, httpx.ConnectTimeout):
                raise DaemonBusy(
                    f"the coco daemon for {self._data_dir} is running but took no connection"
                    f" in time (too many clients); try again") from None
            raise DaemonUnavailable(self._data_dir, str(exc)) from None
        if isinstance(exc, httpx.TimeoutException):
            raise DaemonTimeout(
                f"the coco daemon for {where} did not answer in time; it may still"
                f" finish the request: check with coco status --data-dir {self._data_dir}"
            ) from None
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
            raise ConnectionLost(self._data_dir) from None
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):  # a bad --url
            raise DaemonUnavailable(self._data_dir, "not an http:// URL", url=self._url
                                    ) from None
        if isinstance(exc, OSError):  # e.g. a socket path longer than the OS allows
            raise DaemonUnavailable(self._data_dir, str(exc), url=self._url) from None
