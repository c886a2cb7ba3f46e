"""HTTP 402 Payment Required (NUT-24) for Python web apps: charge ecash per request.

Three shapes over one :class:`Paywall`, none of which needs a web framework:

- :class:`Http402Middleware` wraps a WSGI application (Flask's ``app.wsgi_app``, Django's
  ``application``, any WSGI callable);
- :class:`Http402ASGIMiddleware` wraps an ASGI application (Starlette, FastAPI) on an
  asyncio server;
- :func:`requires_payment` decorates one Flask view (it imports Flask when the view is
  first called, so this module imports with the base dependencies alone).

A request without an ``X-Cashu`` header gets ``402`` with a NUT-18 ``creqA`` payment
request in that header (amount = price, unit, mints, no transport: the payment is
in-band). A request with a ``cashuB``/``cashuA`` token there is checked first (decodes,
unit, one of ``mints``, token amount at least the price: a ``400`` before any request
leaves), then received with the receive saga (persisted before the swap, so a crash in
the middle of a request loses nothing: recovery finishes it), and only then does the
application run, once. The receive fee is the merchant's: the *token's* amount is
compared to the price (NUT-24), so the wallet is credited the price minus its fee.

Which answer for what (JSON bodies ``{"error": {"type", "message"}}``, never a traceback)::

    402  no token; or a token already spent (a replay): pay again (X-Cashu: a request)
    400  a malformed token, a wrong unit or mint, too small, locked to keys we lack,
         a DLEQ that fails, or a token the mint refuses
    503  the merchant's wallet could not settle it now: the mint did not answer, the
         daemon is down, the mint is not added to the wallet, an unexpected error

Threads: the middleware runs on the server's request threads (WSGI) or hands the
blocking receive to the event loop's default executor (ASGI); ``Coco`` and each
:class:`DaemonWallet` call are thread-safe (a DaemonWallet opens one client per call).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from coco_actors import errors
from coco_actors.coco import Coco
from coco_actors.control.client import ControlClient, ControlError, RequestFailed
from coco_actors.errors import (
    CocoError,
    CryptoError,
    InvalidInputError,
    MintRejectedError,
    MintUnreachableError,
    NotFoundError,
    TokenError,
    TokenSpentError,
)
from coco_actors.mint_client import normalize_mint_url
from coco_actors.payreq import PaymentRequest, encode_creq_a
from coco_actors.tokens import Token, decode

__all__ = [
    "DEFAULT_HEADER",
    "CocoWallet",
    "DaemonWallet",
    "Http402ASGIMiddleware",
    "Http402Middleware",
    "Outcome",
    "PaymentWallet",
    "Paywall",
    "Received",
    "requires_payment",
]

log = logging.getLogger(__name__)

#: The NUT-24 header: a payment request in answers, a token in requests.
DEFAULT_HEADER = "X-Cashu"
#: Where the payment is left for the application: WSGI environ / ASGI scope key.
PAYMENT_KEY = "coco.payment"

F = TypeVar("F", bound=Callable[..., Any])


# --- the wallet seen by the paywall ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """What one receive credited: ``amount`` after the mint's ``fee`` (the merchant's)."""

    amount: int
    mint_url: str
    unit: str
    operation_id: str
    fee: int = 0
    state: str = "completed"


class PaymentWallet(Protocol):
    """The one call the paywall needs: swap a token in with the receive saga.

    Raises a :class:`~coco_actors.errors.CocoError` (what the token or the mint did
    wrong) or, for a daemon, a :class:`~coco_actors.control.client.ControlError`.
    """

    def receive(self, token: str) -> Received: ...


class CocoWallet:
    """An embedded :class:`~coco_actors.coco.Coco` (the mints must have been added)."""

    def __init__(self, coco: Coco) -> None:
        self._coco = coco

    def receive(self, token: str) -> Received:
        op = self._coco.receive(token)
        return Received(amount=op.amount, mint_url=op.mint_url, unit=op.unit,
                        operation_id=str(op.id), fee=op.fee, state=op.state.value)


class DaemonWallet:
    """A ``coco serve`` daemon, over its control socket (``POST /receive``).

    The daemon's error answers come back as the wallet's own error classes, so the
    paywall treats both wallets alike; one client per call keeps it thread-safe.
    """

    def __init__(self, data_dir: str | Path,
                 client_factory: Callable[[Path], ControlClient] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self._factory = client_factory

    def _client(self) -> ControlClient:
        if self._factory is not None:
            return self._factory(self.data_dir)
        return ControlClient(self.data_dir)

    def receive(self, token: str) -> Received:
        with self._client() as client:
            try:
                view = client.post("/receive", {"token": token})
            except RequestFailed as exc:
                raise _wallet_error(exc.type, exc.message, exc.status) from None
        try:
            return Received(amount=int(view["amount"]), mint_url=str(view["mint_url"]),
                            unit=str(view.get("unit", "sat")), operation_id=str(view["id"]),
                            fee=int(view.get("fee", 0)), state=str(view["state"]))
        except (KeyError, TypeError, ValueError):
            raise CocoError("the daemon answered a receive without its operation") from None


def _wallet_error(type_name: str, message: str, status: int) -> CocoError:
    """The daemon's ``{"type", "message"}`` as the error class it names (or its kind)."""
    cls = getattr(errors, type_name, None)
    if isinstance(cls, type) and issubclass(cls, CocoError) and not issubclass(
            cls, errors.MintError | errors.InsufficientFundsError | errors.SchemaVersionError):
        return cls(message)
    if type_name == "MintRejectedError" or status == 422:
        return MintRejectedError(message)
    if status == 424:
        return MintUnreachableError(message)
    if status == 404:
        return NotFoundError(message)
    if status == 400:
        return InvalidInputError(message)
    return CocoError(message)


def as_wallet(wallet: Coco | PaymentWallet) -> PaymentWallet:
    """A ``Coco`` is wrapped in :class:`CocoWallet`; anything else is used as it is."""
    return CocoWallet(wallet) if isinstance(wallet, Coco) else wallet


# --- the paywall: framework-free ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """The paywall's verdict: ``paid`` set (run the app), or an answer to send instead."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    paid: Received | None = None


_REASONS = {400: "Bad Request", 402: "Payment Required", 503: "Service Unavailable"}


class Paywall:
    """The NUT-24 checks and the receive, for any server shape.

    ``price`` is in ``unit``; ``mints`` are the mint URLs a token may come from (the
    wallet must have added them). Bad configuration is an :class:`InvalidInputError`
    here, at startup, not on the first request.
    """

    def __init__(self, wallet: Coco | PaymentWallet, *, price: int, mints: Sequence[str],
                 unit: str = "sat", header: str = DEFAULT_HEADER,
                 description: str | None = None) -> None:
        if isinstance(price, bool) or not isinstance(price, int) or price <= 0:
            raise InvalidInputError(f"price must be a positive integer, got {price!r}")
        if isinstance(mints, str) or not mints:
            raise InvalidInputError("mints must be a non-empty list of mint URLs")
        if not isinstance(unit, str) or not unit:
            raise InvalidInputError(f"unit must be a non-empty string, got {unit!r}")
        if not isinstance(header, str) or not header:
            raise InvalidInputError(f"header must be a header name, got {header!r}")
        self.wallet = as_wallet(wallet)
        self.price = price
        self.unit = unit
        self.header = header
        self.mints = tuple(dict.fromkeys(normalize_mint_url(m) for m in mints))
        # the request is the same for every answer: encoded once
        self.request = encode_creq_a(PaymentRequest(
            amount=price, unit=unit, mints=self.mints, description=description))

    def charge(self, token: str | None) -> Outcome:
        """Check and receive ``token`` (the header's value, None when absent).

        Blocking (the receive waits on the mint): call it from a worker thread.
        """
        if token is None or not token.strip():
            return self._refuse(402, "PaymentRequired",
                                f"this resource costs {self.price} {self.unit}: send a Cashu "
                                f"token in the {self.header} header")
        try:
            decoded = decode(token)
        except TokenError as exc:
            return self._refuse(400, "TokenError", str(exc))
        problem = self._mismatch(decoded)
        if problem is not None:
            return self._refuse(400, "PaymentMismatch", problem)
        try:
            received = self.wallet.receive(token)
        except Exception as exc:  # every failure is an answer, never a traceback
            return self._failed(exc)
        if received.state != "completed":
            # the mint holds the proofs as pending: recovery or the watcher settles it
            return self._refuse(503, "PaymentPending",
                                f"the payment (receive {received.operation_id}) is not settled "
                                "yet; do not send the token again, retry the request later")
        log.info("paid %s %s at %s (receive %s)", received.amount + received.fee,
                 received.unit, received.mint_url, received.operation_id)
        return Outcome(status=200, paid=received)

    def _mismatch(self, token: Token) -> str | None:
        """Unit, mint, amount: checked before any request reaches a mint (NUT-24: 400)."""
        if token.unit != self.unit:
            return f"the token is in {token.unit!r}; this resource is paid in {self.unit!r}"
        try:
            mint = normalize_mint_url(token.mint)
        except (CocoError, ValueError):
            return "the token's mint URL is not valid"
        if mint not in self.mints:
            return f"tokens from {mint} are not accepted here; one of {list(self.mints)}"
        if token.amount < self.price:
            return f"the token is worth {token.amount} {self.unit}; the price is {self.price}"
        return None

    def _failed(self, exc: Exception) -> Outcome:
        """A wallet error as an answer: what the customer can do about it."""
        kind = type(exc).__name__
        if isinstance(exc, TokenSpentError):
            return self._refuse(402, kind, "the token was already spent; pay again")
        if isinstance(exc, NotFoundError):
            log.error("http402: %s (add the mint to the wallet)", exc)
            return self._refuse(503, "WalletUnavailable",
                                "the merchant's wallet cannot receive from this mint now")
        if isinstance(exc, InvalidInputError | CryptoError | MintRejectedError):
            return self._refuse(400, kind, str(exc))
        if isinstance(exc, MintUnreachableError):
            return self._refuse(503, kind, "the mint did not answer; the receive is kept and "
                                "finished by recovery; retry the request later")
        if isinstance(exc, CocoError | ControlError):
            log.warning("http402: receive failed: %s: %s", kind, exc)
            return self._refuse(503, "WalletUnavailable",
                                "the merchant's wallet cannot take payments now")
        log.exception("http402: unexpected error while receiving a payment")
        return self._refuse(503, "WalletUnavailable",
                            "the merchant's wallet cannot take payments now")

    def _refuse(self, status: int, kind: str, message: str) -> Outcome:
        payload: dict[str, object] = {"error": {"type": kind, "message": message}}
        headers = [("Content-Type", "application/json")]
        if status == 402:
            headers.append((self.header, self.request))
            payload.update(payment_request=self.request, amount=self.price, unit=self.unit,
                           mints=list(self.mints))
        return Outcome(status=status, headers=tuple(headers),
                       body=json.dumps(payload).encode())


def _protects(paths: Iterable[str] | None) -> Callable[[str], bool]:
    """``None``: every path. Otherwise exact paths; one ending in ``/`` covers its subtree."""
    if paths is None:
        return lambda path: True
    if isinstance(paths, str):
        raise InvalidInputError("paths must be a list of paths, not one string")
    exact = frozenset(p for p in paths if not p.endswith("/"))
    prefixes = tuple(p for p in paths if p.endswith("/"))
    return lambda path: path in exact or path.startswith(prefixes)


# --- WSGI -----------------------------------------------------------------------------

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Http402Middleware:
    """WSGI: ``app.wsgi_app = Http402Middleware(app.wsgi_app, coco, price=21, mints=[URL])``.

    ``paths`` limits it to some paths (see :func:`_protects`); the payment is in
    ``environ["coco.payment"]`` (a :class:`Received`) when the app runs.
    """

    def __init__(self, app: WSGIApp, wallet: Coco | PaymentWallet, *, price: int = 21,
                 mints: Sequence[str], unit: str = "sat", header: str = DEFAULT_HEADER,
                 paths: Iterable[str] | None = None, description: str | None = None) -> None:
        self.app = app
        self.paywall = Paywall(wallet, price=price, mints=mints, unit=unit, header=header,
                               description=description)
        self._protected = _protects(paths)
        self._environ_key = "HTTP_" + header.upper().replace("-", "_")

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self._protected(environ.get("PATH_INFO", "") or "/"):
            return self.app(environ, start_response)
        outcome = self.paywall.charge(environ.get(self._environ_key))
        if outcome.paid is None:
            start_response(_status_line(outcome.status),
                           [*outcome.headers, ("Content-Length", str(len(outcome.body)))])
            return [outcome.body]
        environ[PAYMENT_KEY] = outcome.paid
        return self.app(environ, start_response)


def _status_line(status: int) -> str:
    return f"{status} {_REASONS.get(status, '')}".rstrip()


# --- ASGI -----------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[Message]]
ASGISend = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, ASGIReceive, ASGISend], Awaitable[None]]


class Http402ASGIMiddleware:
    """ASGI (an asyncio server): ``app = Http402ASGIMiddleware(app, coco, price=21, ...)``.

    The blocking receive runs in the loop's default executor, so the loop keeps
    serving; the payment is in ``scope["coco.payment"]`` when the app runs.
    """

    def __init__(self, app: ASGIApp, wallet: Coco | PaymentWallet, *, price: int = 21,
                 mints: Sequence[str], unit: str = "sat", header: str = DEFAULT_HEADER,
                 paths: Iterable[str] | None = None, description: str | None = None) -> None:
        self.app = app
        self.paywall = Paywall(wallet, price=price, mints=mints, unit=unit, header=header,
                               description=description)
        self._protected = _protects(paths)
        self._header = header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope.get("type") != "http" or not self._protected(scope.get("path", "") or "/"):
            await self.app(scope, receive, send)
            return
        token = next((v.decode("latin-1") for k, v in scope.get("headers", ())
                      if k.lower() == self._header), None)
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(None, self.paywall.charge, token)
        if outcome.paid is None:
            headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                       for k, v in outcome.headers]
            headers.append((b"content-length", str(len(outcome.body)).encode()))
            await send({"type": "http.response.start", "status": outcome.status,
                        "headers": headers})
            await send({"type": "http.response.body", "body": outcome.body})
            return
        scope[PAYMENT_KEY] = outcome.paid
        await self.app(scope, receive, send)


# --- one Flask view -------------------------------------------------------------------


def requires_payment(wallet: Coco | PaymentWallet, *, price: int = 21, mints: Sequence[str],
                     unit: str = "sat", header: str = DEFAULT_HEADER,
                     description: str | None = None) -> Callable[[F], F]:
    """Decorate a Flask view: it runs only once the request paid ``price``.

    The payment is in ``flask.g.coco_payment`` (a :class:`Received`). Flask is imported
    when the view is first called (it is the ``example`` extra, not a dependency).
    """
    paywall = Paywall(wallet, price=price, mints=mints, unit=unit, header=header,
                      description=description)

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def paid_view(*args: Any, **kwargs: Any) -> Any:
            import flask

            outcome = paywall.charge(flask.request.headers.get(paywall.header))
            if outcome.paid is None:
                return flask.Response(outcome.body, status=outcome.status,
                                      headers=list(outcome.headers))
            flask.g.coco_payment = outcome.paid
            return view(*args, **kwargs)

        return paid_view  # type: ignore[return-value]

    return decorate
