"""Idempotency keys: a caller-chosen key makes a call that changes money safe to repeat.

The durable half lives in the ProofLedger: a key is bound to the call's target (an
operation's or a payment request's id) and written in the same transaction as the
target's first record, so after any crash either both exist or neither does.

This module holds the pure half (key check, request fingerprint) and the in-process
half, :class:`KeyGate`: one call per key runs at a time, so a second caller with the
same key waits for the first and then finds its committed record (no second
reservation). Callers' threads use it; no actor does.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from coco_actors.errors import ActorTimeoutError, InvalidInputError

__all__ = ["MAX_KEY_LENGTH", "SEND_EXECUTE", "KeyGate", "check_key", "fingerprint",
           "step_key"]

#: The longest key accepted (as Stripe's and the IETF draft's ``Idempotency-Key``).
MAX_KEY_LENGTH = 255
#: The kind of a send's execute: recovery finishes such a send forward (its token).
SEND_EXECUTE = "send.execute"


def check_key(key: object) -> str:
    """The key itself, or :class:`InvalidInputError`: 1..255 printable ASCII characters."""
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise InvalidInputError(
            f"idempotency key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    if not all(" " <= c <= "~" for c in key):
        raise InvalidInputError("idempotency key must be printable ASCII (no control "
                                "characters, no non-ASCII)")
    return key


def fingerprint(kind: str, *args: object) -> str:
    """A hash of the call's kind and arguments: the same request gives the same value.

    ``args`` must be JSON values (lists for sequences); a token is passed as its
    proofs' Ys, never as itself.
    """
    text = json.dumps([kind, *args], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def step_key(key: str, step: str) -> str:
    """The key of a later request of one multi-step call (``coco send --idempotency-key
    K`` prepares with K and executes with ``step_key(K, "execute")``): deterministic, so
    a rerun finds it, and within the length limit whatever K is."""
    digest = hashlib.sha256(step.encode() + b"\0" + key.encode()).hexdigest()
    return f"{step}-{digest[:48]}"


class KeyGate:
    """One running call per key in this process; a second caller waits for the first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}

    @contextmanager
    def exclusive(self, key: str, timeout: float) -> Iterator[None]:
        """Hold ``key`` for the block; wait at most ``timeout`` s for a call holding it
        (then :class:`ActorTimeoutError`: that call is still running)."""
        while True:
            with self._lock:
                running = self._running.get(key)
                if running is None:
                    mine = self._running[key] = threading.Event()
                    break
            if not running.wait(timeout):
                raise ActorTimeoutError(
                    f"a call with this idempotency key is still running after {timeout:g} s")
        try:
            yield
        finally:
            with self._lock:
                del self._running[key]
            mine.set()
