"""The control channel: ``coco serve`` (the daemon) and the client the CLI uses.

One job per module::

    paths      where a wallet's daemon listens (shared by both ends)
    client     ControlClient and the errors it raises
    errors     the daemon's own errors (bad request, shutting down, cannot start)
    views      JSON views of library values
    events     EventHub: recent events, followers, waits on an operation's end
    api        ControlApi: the endpoints, request -> Coco call -> JSON view
    server     HTTP over the 0600 Unix socket: bounds, error statuses, the event stream
    lifecycle  Daemon start and shutdown, ``serve`` (signals), logging, ``init_wallet``

This package exports the client side; ``coco serve`` and ``coco init`` import
:mod:`coco_actors.control.lifecycle` themselves.
"""

from coco_actors.control.client import (
    ConnectionLost,
    ControlClient,
    ControlError,
    DaemonBusy,
    DaemonTimeout,
    DaemonUnavailable,
    RequestFailed,
    op_path,
)
from coco_actors.control.paths import SOCKET_NAME, default_data_dir, serve_hint, socket_path

__all__ = [
    "SOCKET_NAME", "ConnectionLost", "ControlClient", "ControlError", "DaemonBusy",
    "DaemonTimeout", "DaemonUnavailable", "RequestFailed", "default_data_dir", "op_path",
    "serve_hint", "socket_path",
]
