"""The OpenAPI document against the server it describes, and the stable error codes.

Pure: the document is generated from ``ControlApi.routes`` (no wallet behind it), the
error codes from the error classes; ``test_history_pages.py`` pages a real daemon.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest
from openapi_spec_validator import validate

import coco_actors.control.payments
import coco_actors.requests
import coco_actors.store  # noqa: F401 (their CocoError subclasses)
from coco_actors.control import errors as control_errors
from coco_actors.control.api import ControlApi, Request
from coco_actors.control.events import EventHub
from coco_actors.control.openapi import SERVER_PATHS, path_template
from coco_actors.control.schema import Kind, NoBody, StateName, endpoint_of
from coco_actors.control.server import error_body
from coco_actors.errors import ERROR_CODES, CocoError, error_code
from coco_actors.records import OpState, OpType


@pytest.fixture
def api() -> ControlApi:
    return ControlApi(None, Path("/nowhere"), EventHub(), lambda: None)  # type: ignore[arg-type]


@pytest.fixture
def doc(api: ControlApi) -> dict[str, Any]:
    found = api.route("GET", "/openapi.json")
    assert found is not None
    handler, _ = found
    document = handler(Request({}, {}, {}))
    assert isinstance(document, dict)
    return document


def test_the_document_validates_as_openapi_3_1(doc):
    validate(doc)  # raises on any violation
    assert doc["openapi"].startswith("3.1")


def test_every_route_is_documented_with_its_types(api, doc):
    for method, pattern, handler in api.routes:
        template = path_template(pattern)
        op = doc["paths"][template][method.lower()]
        mark = endpoint_of(handler)
        assert mark is not None, f"{method} {template}: its handler has no @endpoint mark"
        assert op["summary"] == mark.summary and "x-undocumented" not in op
        if mark.body is not None:
            assert op["requestBody"]["content"]["application/json"]["schema"] == {
                "$ref": f"#/components/schemas/{mark.body.__name__}"}
        if mark.query is not None:
            documented = {p["name"] for p in op["parameters"] if p.get("in") == "query"}
            assert documented == set(mark.query.__struct_fields__), template
        path_params = {p["name"] for p in op.get("parameters", ()) if p.get("in") == "path"}
        assert path_params == set(pattern.groupindex), template
        assert op["responses"]["default"] == {"$ref": "#/components/responses/Error"}


def test_every_documented_path_is_routed(api, doc):
    ids = set()
    for template, ops in doc["paths"].items():
        for method, op in ops.items():
            ids.add(op["operationId"])
            if (method.upper(), template) in SERVER_PATHS:
                continue
            path = re.sub(r"\{[^}]+\}", "abc123", template)
            found = api.route(method.upper(), path)
            assert found is not None, f"{method.upper()} {template} is documented, not routed"
            mark = endpoint_of(found[0])
            assert mark is not None and mark.summary == op["summary"], template
    assert len(ids) == sum(len(ops) for ops in doc["paths"].values())  # operationIds unique


def test_the_server_s_own_paths_and_the_integration_parts_are_documented(doc):
    events = doc["paths"]["/events"]["get"]
    assert "application/x-ndjson" in events["responses"]["200"]["content"]
    assert {p["name"] for p in events["parameters"]} >= {"follow"}
    assert doc["components"]["securitySchemes"]["bearer"] == {
        **doc["components"]["securitySchemes"]["bearer"], "type": "http", "scheme": "bearer"}
    assert {} in doc["security"] and {"bearer": []} in doc["security"]  # socket: no token
    key = {"$ref": "#/components/parameters/IdempotencyKey"}
    assert doc["components"]["parameters"]["IdempotencyKey"]["name"] == "Idempotency-Key"
    with_key = {(m, t) for t, ops in doc["paths"].items() for m, op in ops.items()
                if key in op.get("parameters", ())}
    assert {("post", "/send/prepare"), ("post", "/send/{op_id}/execute"),
            ("post", "/receive"), ("post", "/mint/quote"), ("post", "/melt/prepare"),
            ("post", "/transfer/prepare")} <= with_key
    assert all(m == "post" for m, _ in with_key)
    assert not {("post", "/mint/wait"), ("post", "/request/decode")} & with_key
    page = doc["paths"]["/operations"]["get"]["responses"]["200"]["content"]
    assert page["application/json"]["schema"] == {"$ref": "#/components/schemas/OperationsPage"}


def test_the_error_shape_lists_every_code(doc):
    schemas = doc["components"]["schemas"]
    detail = schemas["ErrorDetail"]
    assert set(detail["required"]) == {"type", "code", "message"}
    assert detail["properties"]["code"]["enum"] == sorted(set(ERROR_CODES.values()))
    assert doc["x-error-codes"] == dict(ERROR_CODES)


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_all_subclasses(sub)]
    return out


def test_every_error_class_has_its_own_distinct_code():
    classes = [CocoError, *_all_subclasses(CocoError)]
    names = {c.__name__ for c in classes}
    assert {"BadRequestError", "PaymentPostError", "DataDirError", "WalletLockedError",
            "TooManyRequestsError"} <= names  # the walk saw the other modules' classes
    missing = sorted(n for n in names if n not in ERROR_CODES)
    assert not missing, f"error classes without a code in ERROR_CODES: {missing}"
    codes = list(ERROR_CODES.values())
    assert len(codes) == len(set(codes)), "two error types share a code"
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", c) for c in codes)


#: The keyword arguments some error classes require.
_REQUIRED: dict[str, dict[str, Any]] = {"TooManyRequestsError": {"retry_after": 1.0},
                                        "PaymentPostError": {"operation_id": "op1"}}


def _instance(cls: type[BaseException]) -> BaseException:
    return cls("something", **_REQUIRED.get(cls.__name__, {}))


def test_every_error_answer_carries_its_code():
    seen = set()
    for cls in [CocoError, *_all_subclasses(CocoError)]:
        status, body = error_body(_instance(cls))
        err = body["error"]
        assert err["type"] == cls.__name__ and err["code"] == ERROR_CODES[cls.__name__]
        assert err["code"] == error_code(_instance(cls)) and 400 <= status < 500
        seen.add(err["code"])
    assert len(seen) == len([CocoError, *_all_subclasses(CocoError)])
    status, body = error_body(RuntimeError("a bug"))
    assert (status, body["error"]["type"], body["error"]["code"]) == (
        500, "InternalError", "internal_error")


def test_the_kind_and_state_literals_are_the_records_enums():
    assert set(typing.get_args(Kind)) == {t.value for t in OpType}
    assert set(typing.get_args(StateName)) == {s.value for s in OpState}


@pytest.mark.parametrize("query, complaint", [
    ({"limit": "0"}, "'limit' must be an integer of at least 1, got 0"),
    ({"limit": "5.0"}, "'limit' must be an integer, got '5.0'"),
    ({"limit": "+5"}, "'limit' must be an integer"),
    ({"kind": "swap"}, "'kind' must be one of send, receive, mint, melt, transfer, restore"),
    ({"state": "done"}, "'state' must be one of"),
    ({"paged": "maybe"}, "'paged' must be 1, true or yes"),
    ({"mint": "http://[::1"}, "'mint' is not a usable URL"),
])
def test_history_queries_are_checked_before_the_wallet(api, query, complaint):
    found = api.route("GET", "/history")
    assert found is not None
    with pytest.raises(control_errors.BadRequestError, match=re.escape(complaint)) as info:
        found[0](Request(query, {}, {}))  # no wallet behind: it would fail otherwise
    assert error_body(info.value)[0] == 400


def test_every_body_is_checked_before_the_wallet_is_touched(api):
    checked = 0
    for method, pattern, handler in api.routes:
        mark = endpoint_of(handler)
        assert mark is not None
        required = [f.name for f in msgspec.structs.fields(mark.body or NoBody) if f.required]
        if not required:
            continue
        body = dict.fromkeys(required, True)  # no required field takes a bool
        params = dict.fromkeys(pattern.groupindex, "x1")
        with pytest.raises(control_errors.BadRequestError, match="must be") as info:
            handler(Request({}, body, params))  # no wallet behind: it would fail otherwise
        assert any(repr(name) in str(info.value) for name in required), (method, pattern)
        checked += 1
    assert checked >= 12


@pytest.mark.parametrize("body, complaint", [
    ({"timeout": None}, "'timeout' must be a number, got None"),
    ({"timeout": "soon"}, "'timeout' must be a number, got 'soon'"),
    ({"timeout": False}, "'timeout' must be a number, got False"),
])
def test_an_execute_timeout_is_a_number_when_given(api, body, complaint):
    for path in ("/melt/m1/execute", "/transfer/t1/execute", "/receive/r1/execute"):
        found = api.route("POST", path)
        assert found is not None
        with pytest.raises(control_errors.BadRequestError, match=re.escape(complaint)):
            found[0](Request({}, body, found[1]))
