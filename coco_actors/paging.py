"""Pages of the history: the page type, its opaque cursor, and the filters' checks.

A cursor is the URL-safe base64 of the history key (created-at, big-endian, then
operation id) of the last entry a page gave: the next page starts strictly before
that key, so operations added meanwhile (newer keys) never shift or repeat an entry of
a later page. It is opaque to callers; one this wallet did not give is an
:class:`InvalidInputError`.

Pure: no IO, callable from any thread.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from coco_actors.errors import InvalidInputError
from coco_actors.records import HistoryEntry, OpState, OpType

T = TypeVar("T")

#: A history key: 8 bytes of created-at, then an operation id (ids are at most 128).
_KEY_LENGTHS: Final = range(9, 8 + 128 + 1)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page, newest first; ``next_cursor`` reads on after its last item (None:
    nothing follows)."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(key: bytes | None) -> str | None:
    return None if key is None else base64.urlsafe_b64encode(key).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> bytes | None:
    """The history key of a cursor, else :class:`InvalidInputError`."""
    if cursor is None:
        return None
    if not isinstance(cursor, str) or not cursor.isascii() or len(cursor) > 200:
        raise InvalidInputError("cursor is not one this wallet gave")
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise InvalidInputError("cursor is not one this wallet gave") from None
    if len(key) not in _KEY_LENGTHS or not key[8:].isascii():
        raise InvalidInputError("cursor is not one this wallet gave")
    return key


def check_limit(limit: int | None) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or limit < 1):
        raise InvalidInputError(f"limit must be a positive integer, got {limit!r}")
    return limit


def entry_filter(*, mint_url: str | None, kind: str | None, state: str | None,
                 active: bool = False) -> Callable[[HistoryEntry], bool]:
    """Which entries a page keeps: at ``mint_url`` (a transfer's source or destination),
    of ``kind`` (an ``OpType`` value), in ``state`` (an ``OpState`` value), and with
    ``active`` only those not at rest. An unknown kind or state is refused."""
    kinds = {t.value for t in OpType}
    states = {s.value for s in OpState}
    if kind is not None and kind not in kinds:
        raise InvalidInputError(f"kind must be one of {', '.join(sorted(kinds))},"
                                f" got {kind!r}")
    if state is not None and state not in states:
        raise InvalidInputError(f"state must be one of {', '.join(sorted(states))},"
                                f" got {state!r}")

    def keep(entry: HistoryEntry) -> bool:
        return ((mint_url is None or mint_url in (entry.mint_url, entry.to_mint_url))
                and (kind is None or entry.type == kind)
                and (state is None or entry.state == state)
                and not (active and OpState(entry.state).terminal))
    return keep
