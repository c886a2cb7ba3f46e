"""The control API's request types: one msgspec Struct per body or query, decoded strictly.

These Structs are the one declaration of what an endpoint takes: the handler decodes
with them (:func:`body_of`, :func:`query_of`) and the OpenAPI document
(:mod:`coco_actors.control.openapi`) is generated from them, so the two cannot drift.
They check the JSON *shape* only (types, required fields, bounds); what a value means
(a positive amount, a known mint, a valid token) is the ``Coco`` facade's to say.

A shape error is a :class:`BadRequestError` (400) whose message names the field
(``missing 'amount'``, ``'amount' must be an integer, got '5'``); unknown fields are
ignored. A query's values are text: an integer is ASCII digits, a flag ``1``/``true``/
``yes`` or ``0``/``false``/``no``.

Each handler is marked with :func:`endpoint` (its summary, body, query and answer);
:func:`endpoint_of` reads the mark back.

Pure: no IO, callable from any thread.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Final, Literal, TypeVar, Union

import httpx
import msgspec
from msgspec import UNSET, UnsetType

from coco_actors.control.errors import BadRequestError
from coco_actors.records import HistoryEntry

S = TypeVar("S", bound=msgspec.Struct)
F = TypeVar("F", bound=Callable[..., object])


@dataclass(frozen=True, slots=True)
class Shape:
    """How a field's expected shape is said in an error (``'p2pk' must be <phrase>``);
    ``url``: the value must also be a URL httpx can use."""

    phrase: str = ""
    url: bool = False


#: A URL the wallet can talk to (parsed by httpx, a host IDNA can encode).
Url = Annotated[str, msgspec.Meta(description="a URL (http or https)"), Shape(url=True)]
#: One public key or a list of them (NUT-11 P2PK; the facade checks the keys).
Keys = Annotated[str | list[str] | None,
                 msgspec.Meta(description="a public key (33-byte compressed hex) or a list"),
                 Shape("a public key or a list of them")]
#: An answer the document leaves generic (an operation view, a mint's info).
JsonObject = dict[str, Any]
#: A positive count of entries in one page.
Limit = Annotated[int, msgspec.Meta(ge=1, le=999_999_999)]

#: An operation's kind and state, as ``OpType`` and ``OpState`` spell them (a test
#: keeps the lists equal).
Kind = Literal["send", "receive", "mint", "melt", "transfer", "restore",
               "consolidate"]
StateName = Literal["init", "prepared", "executing", "pending", "completed",
                    "rolling_back", "rolled_back"]


class Body(msgspec.Struct, frozen=True, kw_only=True):
    """A JSON request body (an object; unknown fields are ignored)."""


class Query(msgspec.Struct, frozen=True, kw_only=True):
    """A request's query parameters."""


class NoBody(Body, frozen=True):
    """An endpoint that takes no body (anything sent is ignored)."""


class AuditFix(Body, frozen=True):
    mint_url: Url | None = None  # one mint only


class AddMint(Body, frozen=True):
    url: Url
    restore: bool = False  # restore from it (NUT-09) once trusted


class MintQuote(Body, frozen=True):
    mint_url: Url
    amount: int
    unit: str = "sat"  # the amount's unit (the mint needs an active keyset of it)


class Wait(Body, frozen=True):
    """A long poll on one operation's end (``timeout`` seconds, at most 30)."""

    operation_id: str
    timeout: float = 1.0


class SendPrepare(Body, frozen=True):
    mint_url: Url
    amount: int
    p2pk: Keys = None     # lock the token to these keys (NUT-11)
    n_sigs: int | None = None
    locktime: int | None = None
    refund: Keys = None
    unit: str = "sat"  # send ecash of this unit (only its keysets' proofs are selected)


class Execute(Body, frozen=True):
    """An execute's wait for the mint, in seconds (capped; each endpoint has its default,
    so an absent one is ``UNSET``, and null is refused)."""

    timeout: float | UnsetType = UNSET


class Consolidate(Body, frozen=True):
    mint_url: Url
    max_fee_fraction: float | None = None  # skip above this fee/amount (default: 0.1)


class MeltPrepare(Body, frozen=True):
    mint_url: Url
    invoice: str
    swap: bool | None = None
    unit: str = "sat"  # pay with ecash of this unit (the mint converts the invoice)


class TransferPrepare(Body, frozen=True):
    mint_url: Url
    to_mint_url: Url
    amount: int


class Receive(Body, frozen=True):
    token: str
    into: Url | None = None  # move the value to this mint of the wallet (a transfer)


class ReceivePrepare(Body, frozen=True):
    token: str
    into: Url


class RequestNew(Body, frozen=True):
    mints: Annotated[list[str], Shape("a list of mint URLs")]
    amount: int | None = None
    unit: str = "sat"
    description: str | None = None
    single_use: bool = True
    p2pk: bool = False


class RequestClaim(Body, frozen=True):
    payload: Annotated[dict[str, Any], Shape("a JSON object (a NUT-18 payment payload)")]


class RequestDecode(Body, frozen=True):
    creq: str


class RequestPay(Body, frozen=True):
    creq: str
    mint_url: Url | None = None
    amount: int | None = None


class BalanceQuery(Query, frozen=True):
    mint: Url | None = None
    unit: str = "sat"  # the balances in this unit (the shape stays per mint)


class UnitBalancesQuery(Query, frozen=True):
    mint: Url | None = None


class AuditQuery(Query, frozen=True):
    mint: Url | None = None  # one mint only


class MintInfoQuery(Query, frozen=True):
    url: Url


class OperationsQuery(Query, frozen=True):
    """A page of operations, newest first: ``cursor`` is the ``next_cursor`` of the page
    before (opaque); the filters narrow the entries counted."""

    limit: Limit | None = None
    cursor: str | None = None
    mint: Url | None = None
    kind: Kind | None = None
    state: StateName | None = None


class HistoryQuery(OperationsQuery, frozen=True):
    """As :class:`OperationsQuery`; ``paged`` (implied by a ``cursor``) answers
    ``{"items", "next_cursor"}`` instead of the bare list of earlier releases."""

    paged: bool = False


class EventsQuery(Query, frozen=True):
    """Without ``after``: the recent events; with it: every stored event after that seq
    (exclusive, in order), then (``follow``) the live ones, none twice. The server checks
    ``after`` itself (server.py ``_events``: ASCII digits, at most ``MAX_SEQ``)."""

    follow: bool = False  # keep the stream open for live events
    after: Annotated[int, msgspec.Meta(ge=0)] | None = None  # the last seq already seen


# --- answers (documented; the handlers build them as plain JSON) ----------------------------


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    """What every error answer holds under ``error``."""

    type: str       # the error class's name
    code: str       # its stable code (coco_actors.errors.ERROR_CODES)
    message: str
    mint_url: str | None = None   # an error talking to a mint
    nut_code: int | None = None   # the mint's NUT error code (MintRejectedError)
    retry_after: float | None = None  # RateLimitedError: seconds the mint asked to wait
    needed: int | None = None     # InsufficientFundsError
    available: int | None = None


class ErrorAnswer(msgspec.Struct, frozen=True):
    error: ErrorDetail


class HistoryPage(msgspec.Struct, frozen=True):
    """A page of ``GET /history?paged=1``: ``next_cursor`` reads on (null: the last)."""

    items: list[HistoryEntry]
    next_cursor: str | None


class OperationsPage(msgspec.Struct, frozen=True):
    """A page of ``GET /operations``: operation views, newest first."""

    items: list[JsonObject]
    next_cursor: str | None


class Balance(msgspec.Struct, frozen=True):
    spendable: int
    reserved: int
    pending: int
    total: int


class UnitBalances(msgspec.Struct, frozen=True):
    """``GET /balance/units``: per mint, per unit; and per unit, over every mint (two
    units are never added)."""

    mints: dict[str, dict[str, Balance]]
    totals: dict[str, Balance]


# --- the endpoint marks ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What the OpenAPI document says of one handler.

    ``answer``: the 200 answer's type (a Struct or dataclass, ``list[...]`` of one), or
    None for an object the document leaves generic. ``idempotent_key``: the endpoint
    honours an ``Idempotency-Key`` header (a call that changes money).
    """

    summary: str
    body: type[Body] | None = None
    query: type[Query] | None = None
    answer: object = None
    idempotency_key: bool = False
    description: str = ""


def endpoint(summary: str, *, body: type[Body] | None = None, query: type[Query] | None = None,
             answer: object = None, idempotency_key: bool = False,
             description: str = "") -> Callable[[F], F]:
    """Mark a handler with what the OpenAPI document says of it."""
    mark = Endpoint(summary, body, query, answer, idempotency_key, description)

    def marked(fn: F) -> F:
        fn.__dict__["__endpoint__"] = mark
        return fn
    return marked


def endpoint_of(handler: Callable[..., object]) -> Endpoint | None:
    """The mark of a handler (a bound method reads its function's), None if unmarked."""
    mark = getattr(handler, "__endpoint__", None)
    return mark if isinstance(mark, Endpoint) else None


# --- decoding -------------------------------------------------------------------------------


def body_of(cls: type[S], body: Mapping[str, object]) -> S:
    """The request body as ``cls``, or the :class:`BadRequestError` naming the field."""
    return _checked(cls, _convert(cls, dict(body)))


def query_of(cls: type[S], query: Mapping[str, str]) -> S:
    """The query parameters as ``cls``: integers and flags read from their text first
    (strictly: ``+5``, ``5.0`` or ``1e3`` are no integer)."""
    values: dict[str, object] = {}
    for name, text in query.items():
        kind = _fields(cls).get(name)
        values[name] = _from_text(name, text, kind.scalar) if kind else text
    return _checked(cls, _convert(cls, values))


@dataclass(frozen=True, slots=True)
class _Field:
    scalar: type | None     # int, float or bool when the field is one (or one or null)
    phrase: str             # how its shape is said in an error
    url: bool
    required: bool


@cache
def _fields(cls: type[msgspec.Struct]) -> dict[str, _Field]:
    hints = typing.get_type_hints(cls, include_extras=True)
    required = {f.name for f in msgspec.structs.fields(cls) if f.required}
    return {name: _field(hints[name], name in required) for name in cls.__struct_fields__}


def _field(hint: object, required: bool) -> _Field:
    bare = _strip(hint)
    parts = [hint, *typing.get_args(bare)] if _is_union(bare) else [hint]
    shape = next((m for p in parts for m in getattr(p, "__metadata__", ())
                  if isinstance(m, Shape)), Shape())  # on the field, or on ``Url | None``'s Url
    args = [_strip(a) for a in typing.get_args(bare)] if _is_union(bare) else [bare]
    nullable = type(None) in args
    args = [a for a in args if a is not type(None) and a is not UnsetType]
    scalar = args[0] if len(args) == 1 and args[0] in (int, float, bool) else None
    return _Field(scalar, shape.phrase or _phrase(args, nullable), shape.url, required)


def _strip(hint: object) -> object:
    return typing.get_args(hint)[0] if getattr(hint, "__metadata__", None) else hint


def _is_union(hint: object) -> bool:
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is Union


def _phrase(args: list[object], nullable: bool) -> str:
    if args == [bool]:
        return "true, false or null" if nullable else "true or false"
    if len(args) == 1 and typing.get_origin(args[0]) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(args[0])))
    return " or ".join(_NAMES.get(typing.get_origin(a) or a, "a value") for a in args)


_NAMES: Final[Mapping[object, str]] = {int: "an integer", float: "a number", str: "a string",
                                       list: "a list", dict: "a JSON object"}


_INTEGER: Final = re.compile(r"-?[0-9]{1,19}", re.ASCII)
_TRUE: Final = ("1", "true", "yes")
_FALSE: Final = ("0", "false", "no")


def _from_text(name: str, text: str, scalar: type | None) -> object:
    if scalar is bool:
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise BadRequestError(f"{name!r} must be 1, true or yes (or 0, false, no),"
                              f" got {text[:40]!r}")
    if scalar is int or scalar is float:
        if _INTEGER.fullmatch(text):
            return int(text)
        if scalar is float:
            try:
                return float(text)
            except ValueError:
                pass
        raise BadRequestError(f"{name!r} must be {_phrase([scalar], False)},"
                              f" got {text[:40]!r}")
    return text


def _convert(cls: type[S], values: dict[str, object]) -> S:
    try:
        return msgspec.convert(values, cls, strict=True)
    except msgspec.ValidationError as exc:
        raise BadRequestError(_complaint(cls, values, str(exc))) from None


_MISSING: Final = re.compile(r"Object missing required field `([^`]+)`")
_AT: Final = re.compile(r"(.*) - at `\$\.([A-Za-z_0-9]+)[^`]*`\Z", re.DOTALL)
_BOUND: Final = re.compile(r"(>=|<=) (-?[0-9]+)")


def _complaint(cls: type[msgspec.Struct], values: Mapping[str, object], text: str) -> str:
    """msgspec's words turned into the API's: the field named, what it must be."""
    missing = _MISSING.match(text)
    if missing and missing.end() == len(text):
        return f"missing {missing.group(1)!r}"
    at = _AT.match(text)
    if not at:
        return text
    why, name = at.groups()
    field = _fields(cls).get(name)
    if field is None:
        return f"{name!r}: {why}"
    value = values.get(name)
    if value is None and field.required:
        return f"missing {name!r}"
    bound = _BOUND.search(why)
    if bound:
        least = "at least" if bound.group(1) == ">=" else "at most"
        return f"{name!r} must be {field.phrase} of {least} {bound.group(2)}, got {_shown(value)}"
    if why.startswith(("Expected `", "Invalid enum value")):
        return f"{name!r} must be {field.phrase}, got {_shown(value)}"
    return f"{name!r}: {why}"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _checked(cls: type[S], value: S) -> S:
    """The checks no type says: a URL field holds a URL httpx can use (and whose host
    IDNA can encode), so an unusable one never surfaces as httpx's own exception."""
    for name, field in _fields(type(value)).items():
        if not field.url:
            continue
        url = getattr(value, name)
        if url is None:
            continue
        try:
            httpx.URL(url.strip()).host.encode("idna")
        except (httpx.InvalidURL, UnicodeError):
            raise BadRequestError(f"{name!r} is not a usable URL") from None
    return value

