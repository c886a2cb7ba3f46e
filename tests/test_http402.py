"""HTTP 402 (NUT-24) paywall, unit level: a fake wallet drives every failure path.

The WSGI middleware is called directly (a WSGI app is a function), the ASGI one through
an event loop of the test's own, the Flask decorator through Flask's test client.
Tokens are well-formed V4 tokens whose proofs no mint ever signed: nothing here may
reach a mint (the fake wallet records every receive it is asked for).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import cbor2
import flask
import httpx
import pytest

from coco_actors.control.client import ControlClient, DaemonUnavailable
from coco_actors.errors import (
    CocoError,
    CryptoError,
    InvalidInputError,
    LockedTokenError,
    MintRejectedError,
    MintUnreachableError,
    NotFoundError,
    TokenSpentError,
)
from coco_actors.http402 import (
    DaemonWallet,
    Http402ASGIMiddleware,
    Http402Middleware,
    Paywall,
    Received,
    requires_payment,
)
from coco_actors.payreq import decode_request as decode_payment_request
from coco_actors.tokens import Token, encode_v4
from coco_actors.wire import Proof

MINT = "http://127.0.0.1:3338"
OTHER_MINT = "http://127.0.0.1:3339"
G = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"


def token(amounts: Iterable[int] = (16, 4, 1), *, mint: str = MINT, unit: str = "sat") -> str:
    proofs = tuple(Proof(amount=a, keyset_id="009a1f293253e41e", secret=f"secret-{i}", C=G)
                   for i, a in enumerate(amounts))
    return encode_v4(Token(mint=mint, proofs=proofs, unit=unit))


def decode_request(creq: str) -> dict[str, Any]:
    """An independent creqA decoder: prefix, urlsafe base64, CBOR (NUT-18)."""
    assert creq.startswith("creqA")
    body = creq[len("creqA"):]
    return cbor2.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))  # type: ignore[no-any-return]


class FakeWallet:
    """Answers each receive with ``result``: a Received, or an exception to raise."""

    def __init__(self, result: Received | Exception | None = None) -> None:
        self.result = result
        self.calls: list[str] = []

    def receive(self, token: str) -> Received:
        self.calls.append(token)
        if isinstance(self.result, Exception):
            raise self.result
        if self.result is not None:
            return self.result
        return Received(amount=20, mint_url=MINT, unit="sat", operation_id="op-1", fee=1)


class App:
    """A WSGI app that counts its calls and keeps the payment it saw."""

    def __init__(self) -> None:
        self.payments: list[object] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> list[bytes]:
        self.payments.append(environ.get("coco.payment"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"the goods"]


def call(app: Callable[..., Iterable[bytes]], path: str = "/paid",
         header: str | None = None) -> tuple[int, dict[str, str], bytes]:
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": path}
    if header is not None:
        environ["HTTP_X_CASHU"] = header
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return int(seen["status"].split()[0]), seen["headers"], body


def make(wallet: FakeWallet, **kwargs: Any) -> tuple[Http402Middleware, App]:
    app = App()
    return Http402Middleware(app, wallet, price=21, mints=[MINT], **kwargs), app


# --- WSGI ---------------------------------------------------------------------------


def test_no_token_is_402_with_a_nut18_request_and_no_transport() -> None:
    wallet = FakeWallet()
    mw, app = make(wallet)
    status, headers, body = call(mw)
    assert status == 402
    req = decode_request(headers["X-Cashu"])
    assert req["a"] == 21 and req["u"] == "sat" and req["m"] == [MINT]
    assert "t" not in req
    parsed = decode_payment_request(headers["X-Cashu"])  # the project's own codec agrees
    assert (parsed.amount, parsed.unit, parsed.mints, parsed.transports) == (
        21, "sat", (MINT,), ())
    payload = json.loads(body)
    assert payload["error"]["type"] == "PaymentRequired"
    assert payload["payment_request"] == headers["X-Cashu"]
    assert (payload["amount"], payload["unit"], payload["mints"]) == (21, "sat", [MINT])
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body)
    assert wallet.calls == [] and app.payments == []


def test_an_empty_header_is_unpaid() -> None:
    mw, app = make(FakeWallet())
    assert call(mw, header="  ")[0] == 402
    assert app.payments == []


def test_a_paid_request_runs_the_app_once_with_the_payment() -> None:
    wallet = FakeWallet()
    mw, app = make(wallet)
    tok = token()
    status, _, body = call(mw, header=tok)
    assert (status, body) == (200, b"the goods")
    assert wallet.calls == [tok]
    assert app.payments == [Received(amount=20, mint_url=MINT, unit="sat",
                                     operation_id="op-1", fee=1)]


@pytest.mark.parametrize("header", ["garbage", "cashuBnot-base64!!", "cashuA", "cashuB" + "A" * 9,
                                    "creqAqGFhGBU", "\u00e9\u00e9"])
def test_a_malformed_header_is_400_and_no_receive(header: str) -> None:
    wallet = FakeWallet()
    mw, app = make(wallet)
    status, _, body = call(mw, header=header)
    assert status == 400
    assert json.loads(body)["error"]["type"] == "TokenError"
    assert wallet.calls == [] and app.payments == []


@pytest.mark.parametrize("tok, says", [
    (token(unit="usd"), "'usd'"),
    (token(mint=OTHER_MINT), OTHER_MINT),
    (token((16, 4)), "worth 20"),
])
def test_wrong_unit_mint_or_too_small_is_400_before_any_receive(tok: str, says: str) -> None:
    wallet = FakeWallet()
    mw, app = make(wallet)
    status, headers, body = call(mw, header=tok)
    assert status == 400
    error = json.loads(body)["error"]
    assert error["type"] == "PaymentMismatch" and says in error["message"]
    assert "X-Cashu" not in headers
    assert wallet.calls == [] and app.payments == []


def test_the_token_amount_is_compared_to_the_price_not_the_amount_after_fees() -> None:
    """NUT-24: the receive fee is the merchant's; a token of exactly the price pays."""
    wallet = FakeWallet(Received(amount=19, mint_url=MINT, unit="sat", operation_id="o", fee=2))
    mw, app = make(wallet)
    assert call(mw, header=token((16, 4, 1)))[0] == 200
    assert len(app.payments) == 1
    assert call(mw, header=token((32,)))[0] == 200  # more than the price: kept, no change


def test_a_mint_url_with_a_trailing_slash_is_the_same_mint() -> None:
    wallet = FakeWallet()
    app = App()
    mw = Http402Middleware(app, wallet, price=21, mints=[MINT + "/"])
    assert call(mw, header=token())[0] == 200
    assert decode_request(call(mw)[1]["X-Cashu"])["m"] == [MINT]


@pytest.mark.parametrize("exc, status, kind", [
    (TokenSpentError("spent"), 402, "TokenSpentError"),
    (LockedTokenError("locked to someone else"), 400, "LockedTokenError"),
    (CryptoError("DLEQ does not verify"), 400, "CryptoError"),
    (InvalidInputError("worth nothing after fees"), 400, "InvalidInputError"),
    (MintRejectedError("unknown keyset", code=12001), 400, "MintRejectedError"),
    (MintUnreachableError("timeout"), 503, "MintUnreachableError"),
    (NotFoundError("unknown mint"), 503, "WalletUnavailable"),
    (CocoError("something"), 503, "WalletUnavailable"),
    (DaemonUnavailable("/tmp/x", "no control socket"), 503, "WalletUnavailable"),
    (RuntimeError("a bug"), 503, "WalletUnavailable"),
])
def test_every_wallet_error_is_a_json_answer_and_the_app_does_not_run(
        exc: Exception, status: int, kind: str) -> None:
    wallet = FakeWallet(exc)
    mw, app = make(wallet)
    got, headers, body = call(mw, header=token())
    assert got == status
    assert json.loads(body)["error"]["type"] == kind
    assert ("X-Cashu" in headers) == (status == 402)  # a replay is told how to pay again
    assert len(wallet.calls) == 1 and app.payments == []


def test_a_receive_left_pending_at_the_mint_does_not_run_the_app() -> None:
    wallet = FakeWallet(Received(amount=21, mint_url=MINT, unit="sat", operation_id="op-9",
                                 state="executing"))
    mw, app = make(wallet)
    status, _, body = call(mw, header=token())
    assert status == 503
    error = json.loads(body)["error"]
    assert error["type"] == "PaymentPending" and "op-9" in error["message"]
    assert app.payments == []


def test_error_answers_never_echo_the_token() -> None:
    tok = token()
    for result in (TokenSpentError("spent"), RuntimeError(tok)):
        mw, _ = make(FakeWallet(result))
        assert tok.encode() not in call(mw, header=tok)[2]


def test_paths_limit_the_paywall() -> None:
    wallet = FakeWallet()
    mw, app = make(wallet, paths=["/joke", "/paid/"])
    assert call(mw, "/free")[0] == 200
    assert call(mw, "/jokes")[0] == 200
    assert call(mw, "/joke")[0] == 402
    assert call(mw, "/paid/a/b")[0] == 402
    assert app.payments == [None, None]  # the free paths ran, without a payment
    assert wallet.calls == []


def test_a_custom_header_name() -> None:
    wallet = FakeWallet()
    app = App()
    mw = Http402Middleware(app, wallet, price=21, mints=[MINT], header="X-Pay")
    status, headers, _ = call(mw)
    assert status == 402 and "X-Pay" in headers and "X-Cashu" not in headers
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_X_PAY": token()}
    list(mw(environ, lambda *a: None))
    assert len(app.payments) == 1


@pytest.mark.parametrize("kwargs", [
    {"price": 0}, {"price": -1}, {"price": True}, {"price": 1.5},
    {"mints": []}, {"mints": MINT}, {"mints": ["ftp://mint"]}, {"unit": ""},
    {"header": ""}, {"paths": "/paid"},
])
def test_bad_configuration_is_refused_at_startup(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"price": 21, "mints": [MINT], **kwargs}
    with pytest.raises(InvalidInputError):
        Http402Middleware(App(), FakeWallet(), **args)


def test_the_module_imports_without_any_web_framework() -> None:
    code = ("import sys; import coco_actors.http402; "
            "print(sorted(m for m in ('flask', 'werkzeug', 'starlette', 'django') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"


# --- ASGI ---------------------------------------------------------------------------


def asgi_call(mw: Http402ASGIMiddleware, path: str = "/paid", header: str | None = None,
              scope_type: str = "http") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    scope: dict[str, Any] = {"type": scope_type, "path": path, "method": "GET",
                             "headers": [(b"host", b"example")]}
    if header is not None:
        scope["headers"].append((b"x-cashu", header.encode()))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    asyncio.run(asyncio.wait_for(mw(scope, receive, send), timeout=30))
    return sent, scope


class AsgiApp:
    def __init__(self) -> None:
        self.scopes: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi goods"})


def test_asgi_unpaid_is_402_with_the_request_header() -> None:
    wallet = FakeWallet()
    app = AsgiApp()
    sent, _ = asgi_call(Http402ASGIMiddleware(app, wallet, price=21, mints=[MINT]))
    assert sent[0]["status"] == 402
    headers = dict(sent[0]["headers"])
    req = decode_request(headers[b"x-cashu"].decode())
    assert (req["a"], req["u"], req["m"]) == (21, "sat", [MINT])
    assert json.loads(sent[1]["body"])["error"]["type"] == "PaymentRequired"
    assert int(headers[b"content-length"]) == len(sent[1]["body"])
    assert app.scopes == [] and wallet.calls == []


def test_asgi_paid_runs_the_app_once_with_the_payment_in_the_scope() -> None:
    wallet = FakeWallet()
    app = AsgiApp()
    sent, scope = asgi_call(Http402ASGIMiddleware(app, wallet, price=21, mints=[MINT]),
                            header=token())
    assert [m.get("status") for m in sent] == [200, None]
    assert sent[1]["body"] == b"asgi goods"
    assert len(app.scopes) == 1 and scope["coco.payment"].operation_id == "op-1"


@pytest.mark.parametrize("result, header, status", [
    (None, "garbage", 400),
    (None, token(mint=OTHER_MINT), 400),
    (TokenSpentError("spent"), token(), 402),
    (MintUnreachableError("timeout"), token(), 503),
])
def test_asgi_refusals(result: Exception | None, header: str, status: int) -> None:
    app = AsgiApp()
    sent, _ = asgi_call(Http402ASGIMiddleware(app, FakeWallet(result), price=21,
                                              mints=[MINT]), header=header)
    assert sent[0]["status"] == status and app.scopes == []


def test_asgi_free_paths_and_lifespan_pass_through() -> None:
    wallet = FakeWallet()
    app = AsgiApp()
    mw = Http402ASGIMiddleware(app, wallet, price=21, mints=[MINT], paths=["/paid"])
    assert asgi_call(mw, path="/free")[0][0]["status"] == 200
    asgi_call(mw, path="/paid", scope_type="lifespan")
    assert [s["type"] for s in app.scopes] == ["http", "lifespan"] and wallet.calls == []


# --- the Flask decorator ------------------------------------------------------------


def flask_app(wallet: FakeWallet) -> tuple[Any, list[Any]]:
    app = flask.Flask(__name__)
    ran: list[Any] = []

    @app.get("/paid/<name>")
    @requires_payment(wallet, price=21, mints=[MINT])
    def paid(name: str) -> dict[str, Any]:
        ran.append(flask.g.coco_payment)
        return {"hello": name}

    @app.get("/free")
    def free() -> str:
        return "free"

    return app, ran


def test_decorator_unpaid_paid_and_refused() -> None:
    wallet = FakeWallet()
    app, ran = flask_app(wallet)
    client = app.test_client()
    unpaid = client.get("/paid/bob")
    assert unpaid.status_code == 402
    assert decode_request(unpaid.headers["X-Cashu"])["a"] == 21
    assert unpaid.get_json()["error"]["type"] == "PaymentRequired"
    assert client.get("/paid/bob", headers={"X-Cashu": "garbage"}).status_code == 400
    assert client.get("/paid/bob", headers={"X-Cashu": token((8,))}).status_code == 400
    assert ran == [] and wallet.calls == []
    paid = client.get("/paid/bob", headers={"X-Cashu": token()})
    assert paid.status_code == 200 and paid.get_json() == {"hello": "bob"}
    assert [r.operation_id for r in ran] == ["op-1"]
    assert client.get("/free").status_code == 200
    wallet.result = TokenSpentError("spent")
    assert client.get("/paid/bob", headers={"X-Cashu": token()}).status_code == 402
    assert len(ran) == 1


# --- the daemon adapter -------------------------------------------------------------


def daemon_wallet(handler: Callable[[httpx.Request], httpx.Response]) -> DaemonWallet:
    transport = httpx.MockTransport(handler)
    return DaemonWallet("/tmp/no-such-daemon",
                        client_factory=lambda d: ControlClient(d, transport=transport))


def test_daemon_wallet_posts_the_token_and_reads_the_operation() -> None:
    seen: list[tuple[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={"id": "r1", "type": "receive", "mint_url": MINT,
                                         "amount": 20, "fee": 1, "unit": "sat",
                                         "state": "completed"})

    tok = token()
    got = daemon_wallet(handler).receive(tok)
    assert got == Received(amount=20, mint_url=MINT, unit="sat", operation_id="r1", fee=1)
    assert seen == [("/receive", {"token": tok})]


@pytest.mark.parametrize("status, kind, expected", [
    (400, "TokenSpentError", TokenSpentError),
    (400, "LockedTokenError", LockedTokenError),
    (400, "BadRequestError", InvalidInputError),
    (404, "NotFoundError", NotFoundError),
    (422, "MintRejectedError", MintRejectedError),
    (422, "CryptoError", CryptoError),
    (424, "MintUnreachableError", MintUnreachableError),
    (409, "ShuttingDownError", CocoError),
])
def test_daemon_errors_come_back_as_the_wallet_errors(status: int, kind: str,
                                                      expected: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": {"type": kind, "message": "no"}})

    with pytest.raises(expected) as info:
        daemon_wallet(handler).receive(token())
    assert type(info.value) is expected


def test_daemon_wallet_behind_the_paywall() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"type": "TokenSpentError", "message": "x"}})

    paywall = Paywall(daemon_wallet(handler), price=21, mints=[MINT])
    assert paywall.charge(token()).status == 402
    answer = json.loads(paywall.charge(token()).body)
    assert answer["error"]["type"] == "TokenSpentError"
    broken = Paywall(daemon_wallet(lambda r: httpx.Response(200, json={"no": "id"})),
                     price=21, mints=[MINT])
    assert broken.charge(token()).status == 503


def test_a_daemon_that_is_not_running_is_503() -> None:
    paywall = Paywall(DaemonWallet("/tmp/coco-no-such-daemon-dir"), price=21, mints=[MINT])
    outcome = paywall.charge(token())
    assert outcome.status == 503 and outcome.paid is None
    assert json.loads(outcome.body)["error"]["type"] == "WalletUnavailable"


def test_received_is_a_frozen_value() -> None:
    r = Received(amount=1, mint_url=MINT, unit="sat", operation_id="x")
    with pytest.raises(AttributeError):
        r.amount = 2  # type: ignore[misc]
    assert replace(r, amount=2).amount == 2


# --- the README shows the example as it is ----------------------------------------


def test_the_readme_shows_the_example_app_as_it_is() -> None:
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    shown = re.search(r"<!-- http402-example:.*?-->\s*```python\n(.*?)```", readme, re.S)
    assert shown, "README lost its HTTP 402 example"
    example = (root / "examples" / "paid_api.py").read_text()
    region = re.search(r"# --- paid-api: README.md shows this part as it is ---\n(.*?)"
                       r"# --- end paid-api ---", example, re.S)
    assert region, "examples/paid_api.py lost its README markers"
    assert shown.group(1) == region.group(1)
