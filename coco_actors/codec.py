"""The one codec: library values to JSON and back, through msgspec.

The frozen dataclasses of :mod:`coco_actors.wire` and :mod:`coco_actors.records`
are the only declarations (their ``Annotated`` field types carry the checks);
this module says how they are spelled in each of three dialects:

- **records** (LMDB values, :func:`encode_record` / :func:`decode_record`): the
  attribute names, every field present, and the schema version ``v`` as the
  first key. ``v`` is checked before anything else is trusted: another version
  is a :class:`SchemaVersionError`, anything else malformed a :class:`StoreError`.
- **NUT JSON** (mint answers and requests, V3 tokens, websocket notices,
  :func:`from_wire` / :func:`to_wire`): the same names, except that inside
  proofs, outputs and signatures a keyset id is ``id`` (our ``keyset_id``);
  absent optional fields are omitted and ``null`` reads as absent; hex is read
  lowercased; no integer may exceed 64 bits. A bad value is an
  :class:`InvalidInputError` that names the field, never its value.
- **views** (:func:`to_builtins`): plain JSON types for an API answer.

Pure functions without IO, callable from any thread.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import msgspec

from coco_actors.errors import InvalidInputError, SchemaVersionError, StoreError

__all__ = [
    "SCHEMA_VERSION",
    "decode_json",
    "decode_record",
    "encode_json",
    "encode_record",
    "from_wire",
    "from_wire_list",
    "to_builtins",
    "to_wire",
]

T = TypeVar("T")

#: Version of the stored records' layout; a record of any other version is refused.
SCHEMA_VERSION: Final = 2

MAX_INT: Final = 2**64  # NUT integers are unsigned 64-bit; msgspec bounds stop at 2^63

_json_encoder = msgspec.json.Encoder()


# --- records ---------------------------------------------------------------------------

_RECORD_HEAD: Final = b'{"v":%d,' % SCHEMA_VERSION


class _Version(msgspec.Struct):
    v: object = None  # any JSON value: a string or a float is a wrong version too


_version_decoder = msgspec.json.Decoder(_Version)
_record_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def encode_record(record: object) -> bytes:
    """``{"v": SCHEMA_VERSION, "<attribute>": <value>, ...}`` for a record dataclass."""
    body = _json_encoder.encode(record)
    if body[:1] != b"{" or body == b"{}":
        raise TypeError(f"{type(record).__name__} is not a record with fields")
    return _RECORD_HEAD + body[1:]


def decode_record(raw: bytes, cls: type[T]) -> T:
    """The record of type ``cls`` stored as ``raw``, after checking its schema version."""
    if not raw.startswith(_RECORD_HEAD):  # what encode_record writes; anything else is read
        _check_version(raw, cls.__name__)
    decoder = _record_decoders.get(cls)
    if decoder is None:
        decoder = _record_decoders.setdefault(cls, msgspec.json.Decoder(cls))
    try:
        return cast(T, decoder.decode(raw))
    except msgspec.DecodeError as exc:  # ValidationError included; it names the path only
        raise StoreError(f"stored {cls.__name__} record does not decode: {exc}") from exc


def _check_version(raw: bytes, kind: str) -> None:
    try:
        found = _version_decoder.decode(raw).v
    except msgspec.DecodeError as exc:
        raise StoreError(f"stored {kind} record is not a JSON object: {exc}") from exc
    if type(found) is int and found == SCHEMA_VERSION:
        return
    version = ("no schema version" if found is None
               else f"schema version {found!r:.20}" if isinstance(found, int | float | str)
               else f"a schema version of type {type(found).__name__}")
    raise SchemaVersionError(
        f"stored {kind} record has {version}; this release reads version {SCHEMA_VERSION}",
        found=found, expected=SCHEMA_VERSION)


# --- NUT JSON --------------------------------------------------------------------------

#: NUT keys whose values are hex; they are read lowercased so ids and points compare.
_HEX_KEYS: Final = frozenset({"id", "C", "C_", "B_", "Y", "e", "s", "r"})
_own_ids: dict[type[Any], bool] = {}


def from_wire(cls: type[T], data: Any, what: str) -> T:
    """A ``cls`` read from parsed NUT JSON; :class:`InvalidInputError` names the bad field.

    ``what`` says where the object came from ("V3 token", "swap signatures");
    it starts every error message.
    """
    return cast(T, _convert(cls, cls, data, what))


def from_wire_list(cls: type[T], data: Any, what: str) -> list[T]:
    """A list of ``cls`` read from a parsed NUT JSON array (see :func:`from_wire`)."""
    return cast(list[T], _convert(types.GenericAlias(list, (cls,)), cls, data, what))


def _convert(target: Any, cls: type[Any], data: Any, what: str) -> Any:
    keyset_ids = _renames_keyset_id(cls)
    try:
        return msgspec.convert(_nut_value(data, None, keyset_ids, what, ""), target,
                               str_keys=True)
    except msgspec.ValidationError as exc:
        raise InvalidInputError(_message(str(exc), what, keyset_ids)) from exc
    except RecursionError:  # no NUT object nests deeper than a few levels
        raise InvalidInputError(f"{what}: nested too deeply") from None


def _renames_keyset_id(cls: type[Any]) -> bool:
    """NUT's ``id`` is our ``keyset_id``, except in types that have an ``id`` of their own."""
    own = _own_ids.get(cls)
    if own is None:
        own = _own_ids[cls] = is_dataclass(cls) and any(f.name == "id" for f in fields(cls))
    return not own


def _nut_value(value: Any, key: str | None, keyset_ids: bool, what: str, path: str) -> Any:
    """NUT JSON -> attribute names: rename ``id``, drop nulls, lowercase hex, bound ints."""
    if isinstance(value, str):
        return value.lower() if key in _HEX_KEYS else value
    if isinstance(value, dict):
        return {("keyset_id" if keyset_ids and k == "id" else k):
                _nut_value(v, k, keyset_ids, what, f"{path}.{k}")
                for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_nut_value(v, None, keyset_ids, what, f"{path}[{i}]")
                for i, v in enumerate(value)]
    if isinstance(value, int) and value >= MAX_INT:
        parent, dot, name = path.rpartition(".")
        if not dot or name.endswith("]"):
            raise InvalidInputError(f"{_where(what, path)}: integer is too large")
        raise InvalidInputError(f"{_where(what, parent)}: field '{name}' is too large")
    return value


def to_wire(value: object) -> Any:
    """The NUT JSON of a wire value: ``keyset_id`` spelled ``id``, ``None`` fields omitted."""
    return _to_nut(msgspec.to_builtins(value, str_keys=True))


def _to_nut(value: Any) -> Any:
    if isinstance(value, dict):
        return {("id" if k == "keyset_id" else k): _to_nut(v)
                for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_to_nut(v) for v in value]
    return value


def decode_json(raw: bytes) -> Any:
    """Parse JSON text into builtins (a mint answer); :class:`InvalidInputError` if it is not."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise InvalidInputError("not valid JSON") from None
    except RecursionError:
        raise InvalidInputError("JSON nested too deeply") from None


def encode_json(value: object) -> bytes:
    """Compact JSON of builtins or library values (a request body)."""
    return _json_encoder.encode(value)


# msgspec says "Expected `int` >= 1 - at `$.token[0].proofs[0].amount`"; callers and
# tests read "V3 token token[0].proofs[0]: field 'amount' must be positive".
_AT = re.compile(r"(?P<detail>.*?)(?: - at `(?P<key>key` in `)?\$(?P<path>[^`]*)`)?", re.DOTALL)
_MISSING = re.compile(r"Object missing required field `(?P<name>[^`]*)`")
_PHRASES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"Expected `int(?: \| null)?`, got `\w+`"), lambda m: "must be an integer"),
    (re.compile(r"Expected `int` >= 1"), lambda m: "must be positive"),
    (re.compile(r"Expected `int` >= 0"), lambda m: "must not be negative"),
    (re.compile(r"Expected `str(?: \| null)?`, got `\w+`"), lambda m: "must be a string"),
    (re.compile(r"Expected `bool(?: \| null)?`, got `\w+`"), lambda m: "must be a boolean"),
    (re.compile(r"Expected `array(?: \| null)?`, got `\w+`"), lambda m: "must be a list"),
    (re.compile(r"Expected `array` of length >= 1"), lambda m: "is empty"),
    (re.compile(r"Expected `object(?: \| null)?`, got `(\w+)`"),
     lambda m: f"must be an object, got {m[1]}"),
    (re.compile(r"Expected `str` matching regex .*", re.DOTALL), lambda m: "is not hex"),
    (re.compile(r"Expected `str` of length [<>]= (\d+)"),
     lambda m: f"must be {int(m[1]) // 2} bytes"),  # only hex strings carry lengths
    (re.compile(r"Invalid enum value (.*)", re.DOTALL), lambda m: f"has unknown value {m[1]}"),
)


def _message(text: str, what: str, keyset_ids: bool) -> str:
    match = _AT.fullmatch(text)
    detail, path = (match["detail"], match["path"] or "") if match else (text, "")
    if missing := _MISSING.fullmatch(detail):
        return f"{_where(what, path)}: missing field '{_nut_name(missing['name'], keyset_ids)}'"
    phrase = _phrase(detail)
    if match and match["key"]:  # a dict key is wrong, e.g. an amount in a keyset's keys
        phrase = f"has a key that {phrase}" if phrase != detail else f"has a bad key: {detail}"
    parent, dot, name = path.rpartition(".")
    if not dot or name.endswith("]"):  # the value at the root or a list item is wrong
        return f"{_where(what, path)}: {phrase.replace('must be ', 'expected ', 1)}"
    return f"{_where(what, parent)}: field '{_nut_name(name, keyset_ids)}' {phrase}"


def _phrase(detail: str) -> str:
    for pattern, say in _PHRASES:
        if m := pattern.fullmatch(detail):
            return say(m)
    return detail


def _nut_name(name: str, keyset_ids: bool) -> str:
    return "id" if keyset_ids and name == "keyset_id" else name


def _where(what: str, path: str) -> str:
    return f"{what} {path[1:]}" if path.startswith(".") else f"{what}{path}"


# --- views -----------------------------------------------------------------------------


def _view_hook(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise NotImplementedError(f"cannot show a {type(value).__name__} as JSON")


_view_encoder = msgspec.json.Encoder(enc_hook=_view_hook)


def to_builtins(value: object) -> Any:
    """``value`` as plain JSON types: dataclasses become objects keyed by attribute names,
    enums their values, tuples and sets lists, dict keys strings, paths strings.

    Everything is shown, secrets included (a :class:`~coco_actors.records.Operation`
    has its outputs): API views pick what they show, e.g. ``Operation.public()``.
    """
    return msgspec.json.decode(_view_encoder.encode(value))
