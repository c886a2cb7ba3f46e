"""The one error hierarchy of coco-actors, split by what a caller can do about it.

::

    CocoError
    ├── InvalidInputError        the caller passed something wrong; nothing changed
    │   ├── TokenError           a token that cannot be decoded or is inconsistent
    │   ├── InvalidAmountError   zero, negative or otherwise unusable amount
    │   ├── TokenSpentError      the token was already claimed
    │   ├── InvoiceError         an invoice that cannot be decoded, has no amount or expired
    │   ├── LockedTokenError     locked ecash (P2PK) whose conditions this wallet cannot meet
    │   ├── PaymentRequestError  a payment request or payload that is malformed or refused
    │   └── IdempotencyConflictError  an idempotency key reused for another request
    ├── CryptoError              a signature, DLEQ proof or keyset id does not verify
    ├── NotFoundError            unknown mint, keyset, quote or operation
    ├── InsufficientFundsError   the balance cannot cover amount plus fees
    ├── InvalidStateError        the operation is in a state that forbids the call
    ├── ActorTimeoutError        an actor did not answer in time
    ├── StoreError               a stored record cannot be read (corrupt or foreign)
    │   └── SchemaVersionError   a record of a schema version this release does not read
    ├── DataDirError             the data directory cannot be written (store.py)
    └── MintError                talking to a mint
        ├── MintUnreachableError the outcome is UNKNOWN: timeout, refused, reset, 5xx
        │   └── MintProtocolError    the mint answered something unparseable
        ├── MintRejectedError    the mint answered with a definitive NUT error code
        └── RateLimitedError     the mint kept answering 429: NOT processed, try later

The split under ``MintError`` is the one that protects money: only a
``MintRejectedError`` says the mint did *not* do what was asked. After a
``MintUnreachableError`` the request may or may not have been processed, and a
caller must check (NUT-07, NUT-09) before it compensates.

Every error type has a stable ``code`` (:data:`ERROR_CODES`): the control API's
error answers carry it beside the class name, and its OpenAPI document lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final


class CocoError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidInputError(CocoError, ValueError):
    """The input is malformed or out of range; nothing was changed."""


class TokenError(InvalidInputError):
    """A Cashu token could not be decoded, or its content is inconsistent."""


class InvalidAmountError(InvalidInputError):
    """An amount of zero or below, or one that cannot be represented."""


class TokenSpentError(InvalidInputError):
    """The token was already claimed (by this wallet earlier, or by someone else)."""


class InvoiceError(InvalidInputError):
    """A BOLT-11 invoice that is malformed (encoding, checksum, prefix, amount, fields)."""


class LockedTokenError(InvalidInputError):
    """Locked ecash (NUT-11 P2PK) whose conditions this wallet cannot meet now: locked
    to keys it does not hold, too few of them, or a refund before the locktime.

    Raised before any request; nothing was changed.
    """


class PaymentRequestError(InvalidInputError):
    """A NUT-18/NUT-26 payment request or payment payload that cannot be decoded, or a
    payload its request refuses (wrong mint, unit, amount, lock; request not open).

    Raised before anything changed.
    """


class IdempotencyConflictError(InvalidInputError):
    """An idempotency key already names another request (other kind or arguments) within
    its retention time; nothing was changed. ``operation_id`` is the first request's."""

    def __init__(self, message: str, *, operation_id: str = "") -> None:
        super().__init__(message)
        self.operation_id = operation_id


class CryptoError(CocoError):
    """A cryptographic check failed: DLEQ proof, public key, keyset id."""


class NotFoundError(CocoError, LookupError):
    """An unknown mint, keyset, quote or operation id."""


class InsufficientFundsError(CocoError):
    """The spendable balance cannot cover the amount plus input fees."""

    def __init__(self, message: str, *, needed: int = 0, available: int = 0,
                 may_wait: bool = False) -> None:
        super().__init__(message)
        self.needed = needed
        self.available = available
        #: proofs held by other operations may come back as change and cover it
        self.may_wait = may_wait


class InvalidStateError(CocoError):
    """The call is not allowed in the current state (e.g. rolling back a completed send)."""


class ActorTimeoutError(CocoError, TimeoutError):
    """An actor did not answer within its timeout."""


class StoreError(CocoError):
    """A stored record does not decode: the data directory is damaged or not ours."""


class SchemaVersionError(StoreError):
    """A record carries a schema version ``v`` this release cannot read.

    ``found`` is the version in the record (``None`` when it has none),
    ``expected`` the one this release writes.
    """

    def __init__(self, message: str, *, found: object = None, expected: int = 0) -> None:
        super().__init__(message)
        self.found = found
        self.expected = expected


class MintError(CocoError):
    """Base class for errors while talking to a mint."""

    def __init__(self, message: str, *, mint_url: str = "", endpoint: str = "") -> None:
        super().__init__(message)
        self.mint_url = mint_url
        self.endpoint = endpoint


class MintUnreachableError(MintError):
    """No definitive answer: the request may or may not have been processed by the mint.

    ``request_sent`` is False only when the connection was never established
    (refused, connect timeout): then the mint certainly did nothing.
    """

    def __init__(self, message: str, *, mint_url: str = "", endpoint: str = "",
                 request_sent: bool = True) -> None:
        super().__init__(message, mint_url=mint_url, endpoint=endpoint)
        self.request_sent = request_sent


class MintProtocolError(MintUnreachableError):
    """The mint answered, but not in a form we understand; treat the outcome as unknown."""


class MintRejectedError(MintError):
    """The mint answered with an error: it did not perform the request.

    ``code`` is the NUT error code (see ``nuts/error_codes.md``), ``0`` when the
    mint gave none; ``detail`` is the mint's own message.
    """

    def __init__(
        self,
        detail: str,
        *,
        code: int = 0,
        status: int = 400,
        mint_url: str = "",
        endpoint: str = "",
    ) -> None:
        super().__init__(f"mint rejected {endpoint or 'request'} (code {code}): {detail}",
                         mint_url=mint_url, endpoint=endpoint)
        self.code = code
        self.detail = detail
        self.status = status


class RateLimitedError(MintError):
    """The mint answered 429 (too many requests) for longer than the wallet waits
    (:mod:`coco_actors.pacing`): it did **not** process the request, so nothing is
    compensated; the operation stays where it was, to be resumed (execute again).

    ``retry_after`` is the pause the mint last asked for (seconds, ``None``: it gave
    none), ``waited`` how long this request was held back by 429s.
    """

    def __init__(self, message: str, *, mint_url: str = "", endpoint: str = "",
                 retry_after: float | None = None, waited: float = 0.0) -> None:
        super().__init__(message, mint_url=mint_url, endpoint=endpoint)
        self.retry_after = retry_after
        self.waited = waited


# NUT error codes the wallet reacts to (see nuts/error_codes.md).
CODE_PROOFS_SPENT = 11001
CODE_PROOFS_PENDING = 11002
CODE_OUTPUTS_ALREADY_SIGNED = 11003
CODE_TRANSACTION_UNBALANCED = 11005
CODE_KEYSET_UNKNOWN = 12001
CODE_KEYSET_INACTIVE = 12002
CODE_QUOTE_NOT_PAID = 20001
CODE_QUOTE_ALREADY_ISSUED = 20002
CODE_LIGHTNING_PAYMENT_FAILED = 20004
CODE_QUOTE_PENDING = 20005
CODE_INVOICE_ALREADY_PAID = 20006
CODE_QUOTE_SIGNATURE_INVALID = 20008  # NUT-20: a locked quote without its valid signature
CODE_QUOTE_REQUIRES_PUBKEY = 20009    # NUT-20: this mint only gives locked quotes


#: The stable ``code`` of every error type, by class name: a snake_case constant an
#: integrator can switch on (the control API answers ``{"error": {"type", "code",
#: "message"}}``). One table for the whole tree, also the daemon's classes
#: (:mod:`coco_actors.control.errors`, the store's) and the answers that are no class of
#: ours (``UnknownEndpoint``, ``InternalError``, httpx's ``InvalidURL``). A code, once
#: published, never changes; a new class gets a new one (a test keeps them distinct).
ERROR_CODES: Final[Mapping[str, str]] = {
    "CocoError": "wallet_error",
    "InvalidInputError": "invalid_input",
    "TokenError": "invalid_token",
    "InvalidAmountError": "invalid_amount",
    "TokenSpentError": "token_spent",
    "InvoiceError": "invalid_invoice",
    "LockedTokenError": "locked_token",
    "PaymentRequestError": "invalid_payment_request",
    "PaymentPostError": "payment_post_failed",
    "CryptoError": "crypto_check_failed",
    "NotFoundError": "not_found",
    "InsufficientFundsError": "insufficient_funds",
    "InvalidStateError": "invalid_state",
    "ActorTimeoutError": "timeout",
    "StoreError": "store_unreadable",
    "SchemaVersionError": "schema_version",
    "DataDirError": "data_dir_unwritable",
    "WalletLockedError": "wallet_locked",
    "MintError": "mint_error",
    "MintUnreachableError": "mint_unreachable",
    "MintProtocolError": "mint_protocol_error",
    "MintRejectedError": "mint_rejected",
    "RateLimitedError": "mint_rate_limited",
    # the daemon's (coco_actors.control.errors)
    "BadRequestError": "bad_request",
    "MethodNotAllowedError": "method_not_allowed",
    "LengthRequiredError": "length_required",
    "RequestTimeoutError": "request_timeout",
    "PayloadTooLargeError": "payload_too_large",
    "TooManyRequestsError": "rate_limited",
    "ShuttingDownError": "shutting_down",
    "DaemonError": "daemon_error",
    "NoWalletError": "no_wallet",
    "WalletExistsError": "wallet_exists",
    # issue 14's other classes (idempotency keys, the TCP listener's token)
    "IdempotencyConflictError": "idempotency_conflict",
    "UnauthorizedError": "unauthorized",
    # answers that are no class of this package
    "InvalidURL": "invalid_url",
    "UnknownEndpoint": "unknown_endpoint",
    "InternalError": "internal_error",
}


def error_code(exc: BaseException) -> str:
    """The stable code of ``exc``: its class's, else its nearest listed ancestor's; an
    exception of no listed class (a bug) is ``internal_error``."""
    for cls in type(exc).__mro__:
        code = ERROR_CODES.get(cls.__name__)
        if code is not None:
            return code
    return ERROR_CODES["InternalError"]
