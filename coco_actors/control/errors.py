"""The daemon's own errors, beside the wallet's (:mod:`coco_actors.errors`)::

    CocoError
    ├── InvalidInputError
    │   └── BadRequestError      the control request is malformed (JSON shape, method): 400
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
