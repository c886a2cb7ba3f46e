"""The daemon's own errors, beside the wallet's (:mod:`coco_actors.errors`)::

    CocoError
    ├── InvalidInputError
    │   └── BadRequestError      the control request is malformed (framing, JSON shape): 400
    │       ├── MethodNotAllowedError  a method not served at all (PUT, DELETE, ...): 405
    │       ├── LengthRequiredError    a body not framed by a Content-Length: 411
    │       ├── RequestTimeoutError    the request did not arrive in time: 408
    │       ├── PayloadTooLargeError   a payments listener body over its limit: 413
    │       ├── TooManyRequestsError   a payments client over its request budget: 429
    │       └── UnauthorizedError      no valid bearer token (the control API on a port): 401
    ├── ShuttingDownError        the daemon is stopping and takes no new requests: 409
    └── DaemonError              the daemon cannot start
        ├── NoWalletError        the data directory holds no wallet yet
        └── WalletExistsError    ``coco init`` on a directory that already holds one

The client side of the channel has its own tree (:mod:`coco_actors.control.client`).
"""

from __future__ import annotations

from coco_actors.errors import CocoError, InvalidInputError


class BadRequestError(InvalidInputError):
    """The control request itself is malformed (not the wallet's input)."""


class ShuttingDownError(CocoError):
    """The daemon is stopping and takes no new requests."""


class DaemonError(CocoError):
    """The daemon cannot start (no wallet, socket path too long, ...)."""


class NoWalletError(DaemonError):
    """The data directory holds no wallet yet."""


class WalletExistsError(DaemonError):
    """``coco init`` on a data directory that already holds a wallet."""


class MethodNotAllowedError(BadRequestError):
    """The method is not served at all: 405, with the ones that are (a served method on a
    path that takes the other one is a plain 400)."""

    def __init__(self, message: str, *, allow: tuple[str, ...] = ("GET", "POST")) -> None:
        super().__init__(message)
        self.allow = allow


class LengthRequiredError(BadRequestError):
    """A body framed otherwise than by one Content-Length (chunked): 411."""


class RequestTimeoutError(BadRequestError):
    """The request did not arrive in full within the server's deadline: 408."""


class PayloadTooLargeError(BadRequestError):
    """A body over the payments listener's limit: 413, answered before it is read."""


class TooManyRequestsError(BadRequestError):
    """A client of the payments listener over its request budget: 429, with when to retry."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnauthorizedError(BadRequestError):
    """A request to the control API on a TCP port without a valid bearer token: 401, with
    the ``WWW-Authenticate`` challenge. Its message never holds what the client sent."""

    def __init__(self, message: str, *, challenge: str = 'Bearer realm="coco"') -> None:
        super().__init__(message)
        self.challenge = challenge
