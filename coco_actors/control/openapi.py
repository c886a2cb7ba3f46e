"""The OpenAPI 3.1 document of the control API, generated from what the server runs.

Every path comes from ``ControlApi.routes`` (its regex turned into a template), every
request body and query from the msgspec Structs the handlers decode with
(:mod:`coco_actors.control.schema`, through ``msgspec.json.schema_components``), so the
document cannot drift from the server. Answers: the error shape (with every stable
``code`` of :data:`~coco_actors.errors.ERROR_CODES`), balances, history entries and
pages are typed; an operation view (``Operation.public()``) and the other answers are
documented as a generic JSON object. ``GET /events`` (the server's own stream) is added
here. On the Unix socket no token is asked; on a TCP listener (``coco serve --listen``)
every request carries ``Authorization: Bearer <token>``. A route whose handler carries
no :func:`~coco_actors.control.schema.endpoint` mark is still listed, as
``x-undocumented`` (a test fails on it).

Pure: built once per daemon on the first ``GET /openapi.json``, on that request's thread.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec

from coco_actors.control.schema import Endpoint, ErrorAnswer, EventsQuery, endpoint_of
from coco_actors.errors import ERROR_CODES

#: The paths the server answers itself (not routes of ``ControlApi``): method, path.
SERVER_PATHS: Final = (("GET", "/events"),)

_REF: Final = "#/components/schemas/{name}"
_PARAM: Final = re.compile(r"\(\?P<([A-Za-z_][A-Za-z_0-9]*)>[^)]*\)")
_OP_ID_SCHEMA: Final = {"type": "string", "minLength": 1, "maxLength": 128}

Route = tuple[str, "re.Pattern[str]", Callable[..., object]]


def path_template(pattern: re.Pattern[str]) -> str:
    """``/send/(?P<op_id>[^/]+)/execute\\Z`` -> ``/send/{op_id}/execute``."""
    text = pattern.pattern.removesuffix(r"\Z")
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", text).replace("\\", "")


def openapi_document(routes: Sequence[Route], *, version: str) -> dict[str, object]:
    """The whole document, as JSON-able data."""
    marks = [(method, pattern, handler, endpoint_of(handler)) for method, pattern, handler
             in routes]
    types: list[Any] = [ErrorAnswer, EventsQuery]
    for *_, mark in marks:
        if mark is not None:
            types += [t for t in (mark.body, mark.query, mark.answer) if t is not None]
    refs, schemas = msgspec.json.schema_components(types, ref_template=_REF)
    of = dict(zip(map(_key, types), refs, strict=True))
    detail = schemas["ErrorDetail"]["properties"]["code"]
    detail["enum"] = sorted(set(ERROR_CODES.values()))

    paths: dict[str, dict[str, object]] = {}
    seen: set[str] = set()
    for method, pattern, handler, mark in marks:
        template = path_template(pattern)
        name = getattr(handler, "__name__", "handler")
        op_id = name if name not in seen else f"{name}{re.sub(r'[^A-Za-z0-9]+', '_', template)}"
        seen.add(op_id)
        paths.setdefault(template, {})[method.lower()] = _operation(
            op_id, template, mark, of, schemas)
    paths.setdefault("/events", {})["get"] = _events(schemas)

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "coco-actors control API",
            "version": version,
            "description": (
                "The wallet daemon's API (coco serve). On the Unix socket"
                " DATA_DIR/control.sock no token is asked (the socket is 0600); on a TCP"
                " listener (coco serve --listen HOST:PORT) every request carries"
                " 'Authorization: Bearer <token>' (DATA_DIR/api-token). Errors are one"
                " JSON shape, {\"error\": {\"type\", \"code\", \"message\"}}, with a stable"
                " code per error type (x-error-codes). Calls that change money take an"
                " Idempotency-Key header."),
        },
        "servers": [{"url": "http://127.0.0.1:{port}",
                     "description": "coco serve --listen 127.0.0.1:PORT (bearer token)",
                     "variables": {"port": {"default": "8765"}}},
                    {"url": "http://localhost",
                     "description": "the Unix socket DATA_DIR/control.sock (no token)"}],
        "security": [{}, {"bearer": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "the token of DATA_DIR/api-token (coco token show); asked on"
                               " the TCP listener only, a missing or wrong one is a 401"}},
            "parameters": {"IdempotencyKey": {
                "name": "Idempotency-Key", "in": "header", "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "a key the caller chooses per call: a repeat with the same key"
                               " and the same request returns the first answer (also after"
                               " a restart); the same key with another request is a 409"
                               " (code idempotency_conflict)"}},
            "responses": {"Error": {
                "description": "an error: its class (type), stable code and message",
                "content": {"application/json": {"schema": {"$ref": _REF.format(
                    name="ErrorAnswer")}}}}},
        },
        "x-error-codes": dict(ERROR_CODES),
    }


def _key(t: object) -> str:
    return repr(t)


def _operation(op_id: str, template: str, mark: Endpoint | None, of: dict[str, Any],
               schemas: dict[str, Any]) -> dict[str, object]:
    op: dict[str, object] = {"operationId": op_id,
                             "summary": mark.summary if mark else "(undocumented)",
                             "tags": [template.strip("/").split("/")[0]]}
    if mark is None:
        op["x-undocumented"] = True
    if mark is not None and mark.description:
        op["description"] = mark.description
    params: list[dict[str, object]] = [
        {"name": name, "in": "path", "required": True, "schema": dict(_OP_ID_SCHEMA)}
        for name in re.findall(r"\{([^}]+)\}", template)]
    if mark is not None and mark.query is not None:
        params += _query_params(schemas[mark.query.__name__])
    if mark is not None and mark.idempotency_key:
        params.append({"$ref": "#/components/parameters/IdempotencyKey"})
    if params:
        op["parameters"] = params
    if mark is not None and mark.body is not None:
        body_schema = schemas[mark.body.__name__]
        op["requestBody"] = {"required": bool(body_schema.get("required")), "content": {
            "application/json": {"schema": of[_key(mark.body)]}}}
    answer: object = {"type": "object", "description": "a JSON object (not typed here)"}
    if mark is not None and mark.answer is not None:
        answer = of[_key(mark.answer)]
    op["responses"] = {
        "200": {"description": mark.summary if mark else "the answer",
                "content": {"application/json": {"schema": answer}}},
        "default": {"$ref": "#/components/responses/Error"},
    }
    return op


def _query_params(schema: dict[str, Any]) -> list[dict[str, object]]:
    required = set(schema.get("required", ()))
    return [{"name": name, "in": "query", "required": name in required,
             "schema": _not_null(prop)}
            for name, prop in schema.get("properties", {}).items()]


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: absent is its null, so ``T | null`` is ``T``."""
    branches = [b for b in prop.get("anyOf", ()) if b != {"type": "null"}]
    if "anyOf" in prop and len(branches) == 1:
        return {**branches[0], **{k: v for k, v in prop.items()
                                  if k not in ("anyOf", "default") or
                                  (k == "default" and v is not None)}}
    return prop


def _events(schemas: dict[str, Any]) -> dict[str, object]:
    return {
        "operationId": "events",
        "summary": "newline-delimited JSON: recent events, then (follow=1) live ones",
        "tags": ["events"],
        "parameters": _query_params(schemas["EventsQuery"]),
        "responses": {
            "200": {"description": "one event a line (a blank line is a keep-alive)",
                    "content": {"application/x-ndjson": {"schema": {
                        "type": "object",
                        "description": "an event: event, operation_id, mint_url, time,"
                                       " and the operation when there is one"}}}},
            "default": {"$ref": "#/components/responses/Error"},
        },
    }
