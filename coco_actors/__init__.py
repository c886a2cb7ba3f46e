"""coco-actors: a crash-safe Cashu ecash wallet built on pykka actors.

``from coco_actors import Coco`` is the embedding API; see the README.
"""

from coco_actors.coco import Coco
from coco_actors.errors import (
    CocoError,
    CryptoError,
    IdempotencyConflictError,
    InsufficientFundsError,
    InvalidAmountError,
    InvalidInputError,
    InvalidStateError,
    InvoiceError,
    LockedTokenError,
    MintError,
    MintRejectedError,
    MintUnreachableError,
    NotFoundError,
    PaymentRequestError,
    RateLimitedError,
    TokenError,
    TokenSpentError,
)
from coco_actors.keys import WalletKey
from coco_actors.pacing import PacingConfig
from coco_actors.records import EventRecord, OpState, RequestRecord
from coco_actors.store import DataDirError

__all__ = [
    "Coco", "CocoError", "CryptoError", "DataDirError", "EventRecord",
    "IdempotencyConflictError", "InsufficientFundsError",
    "InvalidAmountError", "InvalidInputError", "InvalidStateError", "InvoiceError",
    "LockedTokenError", "MintError", "MintRejectedError", "MintUnreachableError",
    "NotFoundError", "OpState", "PacingConfig", "PaymentRequestError", "RateLimitedError",
    "RequestRecord", "TokenError",
    "TokenSpentError", "WalletKey",
]
