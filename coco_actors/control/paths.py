"""Where the daemon of a wallet listens: shared by the client and the daemon.

Pure path arithmetic (no IO beyond reading the environment), so the CLI can say
where a daemon should be without opening anything.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "coco-actors"
SOCKET_NAME = "control.sock"
#: The bearer token of the control API on a TCP port (``coco serve --listen``), 0600.
TOKEN_NAME = "api-token"
#: ``sun_path`` holds 108 bytes on Linux (104 on macOS), the terminating NUL included.
MAX_SOCKET_PATH = 103


def default_data_dir() -> Path:
    """``$COCO_DATA_DIR``, else the platform's user data directory plus ``coco-actors``."""
    env = os.environ.get("COCO_DATA_DIR")
    if env:
        return Path(env)
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_NAME
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / APP_NAME


def socket_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / SOCKET_NAME


def token_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / TOKEN_NAME


def serve_hint(data_dir: Path | str) -> str:
    """The command that starts the daemon of ``data_dir`` (error messages quote it)."""
    return f"coco serve --data-dir {data_dir}"
