"""The bearer token of the control API on a TCP port: created, read, rotated, checked.

The Unix socket is guarded by its mode (0600 in a 0700 directory). A TCP port is
reachable by every local user (and by more off loopback), so each request there
carries ``Authorization: Bearer <token>``. The token is :data:`TOKEN_BYTES` random
bytes, URL-safe base64, in ``DATA_DIR/api-token``: a file born 0600 (never chmod-ed
after, so there is no moment it is readable by others) and replaced atomically (a
new file renamed over the old), so a reader sees the old token or the new one,
never half of one.

The daemon looks at the file before every request (:class:`TokenFile`) and reads it
again when it changed (inode, size or mtime): ``coco token rotate`` takes effect at
the next request and the old token stops working, without a restart. A missing or
unreadable file lets nobody in. Tokens are compared in constant time and are never
logged nor put into an error message.

Threads: :meth:`TokenFile.check` runs on any connection's thread (one lock); the
file functions on the caller's.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import re
import secrets
import threading
from pathlib import Path

from coco_actors.control.errors import UnauthorizedError
from coco_actors.errors import NotFoundError, StoreError
from coco_actors.store import DataDirError

log = logging.getLogger(__name__)

#: Random bytes of a token (43 characters of URL-safe base64).
TOKEN_BYTES = 32
#: What a stored or presented token may look like (RFC 6750's b64token, bounded).
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]{16,512}=*", re.ASCII)
#: The challenge of a 401 (RFC 6750 section 3).
CHALLENGE = 'Bearer realm="coco"'


def new_token() -> str:
    """A fresh token: :data:`TOKEN_BYTES` from the OS's CSPRNG, URL-safe."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def read_token(path: Path) -> str:
    """The token stored at ``path``. Raises NotFoundError (no file), StoreError (unreadable
    or not a token)."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise NotFoundError(f"no API token in {path.parent}; create one with:"
                            f" coco token rotate --data-dir {path.parent}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"the API token file {path} cannot be read:"
                         f" {getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    token = text.strip()
    if not _TOKEN.fullmatch(token):
        raise StoreError(f"the API token file {path} does not hold a token;"
                         f" replace it with: coco token rotate --data-dir {path.parent}")
    return token


def create_token(path: Path) -> str | None:
    """Store a fresh token at ``path`` unless one is there: the token, or None when a file
    existed already (it is left alone, even against a concurrent creator)."""
    token = new_token()
    tmp = _write_private(path, token)
    try:
        os.link(tmp, path)  # fails if the file exists: never two tokens, never a half one
    except FileExistsError:
        return None
    except OSError as exc:
        raise DataDirError(f"the API token {path} cannot be written:"
                           f" {exc.strerror or type(exc).__name__}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    _sync_dir(path.parent)
    return token


def rotate_token(path: Path) -> str:
    """Replace the token at ``path`` (or create it) with a fresh one, atomically; the new
    token. The old one stops working at a running daemon's next request."""
    token = new_token()
    tmp = _write_private(path, token)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise DataDirError(f"the API token {path} cannot be replaced:"
                           f" {exc.strerror or type(exc).__name__}") from None
    _sync_dir(path.parent)
    return token


def _write_private(path: Path, token: str) -> Path:
    """A new file beside ``path`` holding ``token``, created 0600 and synced."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o600)
    except OSError as exc:
        raise DataDirError(f"the API token cannot be written in {path.parent}:"
                           f" {exc.strerror or type(exc).__name__}") from None
    try:
        os.write(fd, (token + "\n").encode("ascii"))
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise DataDirError(f"the API token cannot be written in {path.parent}:"
                           f" {exc.strerror or type(exc).__name__}") from None
    os.close(fd)
    return tmp


def _sync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # a directory that cannot be opened: best effort
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def bearer(values: list[str] | None) -> str:
    """The token of the ``Authorization`` header(s) of a request; else UnauthorizedError
    (whose message never quotes what was sent)."""
    if not values:
        raise UnauthorizedError("this port needs Authorization: Bearer <token>"
                                " (coco token show prints it)", challenge=CHALLENGE)
    if len(values) > 1:
        raise UnauthorizedError("more than one Authorization header",
                                challenge=f'{CHALLENGE}, error="invalid_request"')
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN.fullmatch(token):
        raise UnauthorizedError("malformed Authorization header: send Bearer <token>",
                                challenge=f'{CHALLENGE}, error="invalid_request"')
    return token


class TokenFile:
    """The token a daemon accepts: ``DATA_DIR/api-token``, read again whenever it changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int, int] | None = None  # dev, ino, size, mtime_ns
        self._token: bytes | None = None

    def current(self) -> bytes | None:
        """The accepted token, or None (no file, unreadable: nobody gets in)."""
        with self._lock:
            try:
                st = os.stat(self.path)
            except OSError:
                seen = None
            else:
                seen = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if seen is not None and seen == self._seen:
                return self._token
            self._seen = seen
            self._token = None
            if seen is None:
                log.warning("the API token file %s is gone: every TCP request is refused"
                            " (coco token rotate creates one)", self.path)
                return None
            try:
                self._token = read_token(self.path).encode("ascii")
            except (NotFoundError, StoreError) as exc:
                log.warning("%s: every TCP request is refused", exc)
                return None
            log.info("the API token in %s is loaded", self.path)
            return self._token

    def check(self, values: list[str] | None) -> None:
        """Let a request with these ``Authorization`` headers in, or raise UnauthorizedError."""
        presented = bearer(values).encode("ascii")
        expected = self.current()
        if expected is None or not hmac.compare_digest(presented, expected):
            raise UnauthorizedError("invalid bearer token",
                                    challenge=f'{CHALLENGE}, error="invalid_token"')
