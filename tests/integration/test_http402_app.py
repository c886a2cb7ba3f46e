"""HTTP 402 (NUT-24) end to end: examples/paid_api.py served on 127.0.0.1 by a real
werkzeug server thread, called with httpx, paid with tokens of a second wallet, against
the real mints (input fees 0 and 100 ppk), with an embedded ``Coco`` and with a real
``coco serve`` daemon behind :class:`DaemonWallet`.

Balances are asserted to the sat after every step: the merchant is credited the price
minus the mint's input fee for the token's proofs (the receive fee is the merchant's).
"""

from __future__ import annotations

import base64
import importlib.util
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import cbor2
import httpx
import pytest
from click.testing import CliRunner
from werkzeug.serving import BaseWSGIServer, make_server

from cli import main
from coco_actors import Coco
from coco_actors.http402 import DaemonWallet
from coco_actors.tokens import decode, encode_v4
from devtools.devmint import DevMint

ROOT = Path(__file__).resolve().parents[2]
PRICE = 21
FUNDS = 200


def load(name: str, path: Path) -> ModuleType:
    """A module by its file: examples/ and tests/cli/ are not packages."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


paid_api = load("paid_api", ROOT / "examples" / "paid_api.py")
cli_support = load("cli_support", ROOT / "tests" / "cli" / "cli_support.py")


class Served:
    """The app on 127.0.0.1 (a free port) in a server thread, until ``close``."""

    def __init__(self, app: Any) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.http = httpx.Client(base_url=self.url, timeout=60.0, trust_env=False)

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        return self.http.get(path, headers={"X-Cashu": token} if token is not None else {})

    def close(self) -> None:
        self.http.close()
        self.server.shutdown()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        self.server.server_close()


def fee_of(token: str, mint: DevMint) -> int:
    """The mint's input fee for the token's proofs (NUT-02: ceil(n * ppk / 1000))."""
    n = len(decode(token).proofs)
    return (n * mint.input_fee_ppk + 999) // 1000


def decode_request(creq: str) -> dict[str, Any]:
    assert creq.startswith("creqA")
    body = creq[len("creqA"):]
    return cbor2.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))  # type: ignore[no-any-return]


class Customer:
    """The second wallet: funded, it pays with tokens; its balance is tracked exactly."""

    def __init__(self, coco: Coco, url: str) -> None:
        self.coco, self.url = coco, url
        quote = coco.mint.create_quote(url, FUNDS)
        coco.mint.redeem(quote.id, timeout=60)
        self.expected = FUNDS
        self.check()

    def token(self, amount: int) -> str:
        prepared = self.coco.send.prepare_send(self.url, amount)
        _, token = self.coco.send.execute_prepared_send(prepared.id)
        self.expected -= amount + prepared.fee
        self.check()
        return token

    def check(self) -> None:
        bal = self.coco.balance()[self.url]
        assert bal.spendable + bal.reserved == self.expected, bal


@pytest.fixture
def customer(mint: DevMint, tmp_path: Path) -> Iterator[Customer]:
    with Coco.open(tmp_path / "customer", watcher=False) as coco:
        coco.mints.add(mint.url)
        yield Customer(coco, mint.url)


@pytest.fixture
def merchant(mint: DevMint, tmp_path: Path) -> Iterator[Coco]:
    with Coco.open(tmp_path / "merchant", watcher=False) as coco:
        coco.mints.add(mint.url)
        yield coco


def spendable(coco: Coco, url: str) -> int:
    return coco.balance()[url].spendable


def test_the_example_app_end_to_end(mint: DevMint, merchant: Coco,
                                    customer: Customer) -> None:
    app = paid_api.create_app(merchant, mint.url)
    served = Served(app)
    try:
        assert served.get("/free").json() == {"hello": "anyone"}
        unpaid = served.get("/paid/joke")
        assert unpaid.status_code == 402
        request = decode_request(unpaid.headers["X-Cashu"])
        assert (request["a"], request["u"], request["m"]) == (PRICE, "sat", [mint.url])
        assert "t" not in request
        assert unpaid.json()["payment_request"] == unpaid.headers["X-Cashu"]

        token = customer.token(PRICE)
        fee = fee_of(token, mint)
        paid = served.get("/paid/joke", token)
        assert paid.status_code == 200, paid.text
        assert paid.json()["received"] == PRICE - fee and paid.json()["fee"] == fee
        assert len(app.config["SOLD"]) == 1
        assert spendable(merchant, mint.url) == PRICE - fee
        assert merchant.balance()[mint.url].total == PRICE - fee

        replay = served.get("/paid/joke", token)
        assert replay.status_code == 402
        assert replay.json()["error"]["type"] == "TokenSpentError"
        assert "X-Cashu" in replay.headers
        assert len(app.config["SOLD"]) == 1
        assert spendable(merchant, mint.url) == PRICE - fee

        bigger = customer.token(PRICE + 11)  # more than the price: kept whole (no change)
        fee2 = fee_of(bigger, mint)
        assert served.get("/paid/joke", bigger).status_code == 200
        assert len(app.config["SOLD"]) == 2
        assert spendable(merchant, mint.url) == PRICE - fee + PRICE + 11 - fee2
        customer.coco.send.check_pending()
        customer.check()
    finally:
        served.close()


def test_refused_tokens_leave_both_wallets_unchanged(mint: DevMint, merchant: Coco,
                                                     customer: Customer) -> None:
    app = paid_api.create_app(merchant, mint.url)
    served = Served(app)
    try:
        assert served.get("/paid/joke", "cashuBgarbage").status_code == 400
        assert served.get("/paid/joke", "not a token at all").status_code == 400

        small = customer.token(PRICE - 1)
        answer = served.get("/paid/joke", small)
        assert answer.status_code == 400 and "worth 20" in answer.json()["error"]["message"]

        real = decode(small)
        # the same proofs, said to be of another unit / from another mint: refused before
        # any request (the other "mint" listens nowhere: asking it would be a 503)
        usd = encode_v4(replace(real, unit="usd"))
        elsewhere = encode_v4(replace(real, mint="http://127.0.0.1:9"))
        for token in (usd, elsewhere):
            refused = served.get("/paid/joke", token)
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]["type"] == "PaymentMismatch"
        assert app.config["SOLD"] == []
        assert spendable(merchant, mint.url) == 0
        assert merchant.history.get_history() == []

        # nothing was received: the customer's token is still good, it takes it back
        back = customer.coco.receive(small)
        assert back.state.value == "completed"
        customer.expected += back.amount
        customer.coco.send.check_pending()
        customer.check()
    finally:
        served.close()


@pytest.fixture
def daemon(mint: DevMint) -> Iterator[Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="coco-402-")) / "m"  # a socket path is short
    result = CliRunner().invoke(main, ["init", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    proc = cli_support.DaemonProcess(data_dir)
    try:
        proc.start()
        wallet = cli_support.Wallet(data_dir, proc)
        wallet.cli("mint", "add", mint.url)
        yield wallet
    finally:
        proc.stop()
        shutil.rmtree(data_dir.parent, ignore_errors=True)


def test_the_example_app_over_the_daemon(mint: DevMint, daemon: Any,
                                         customer: Customer) -> None:
    app = paid_api.create_app(DaemonWallet(daemon.data_dir), mint.url)
    served = Served(app)
    try:
        assert served.get("/paid/joke").status_code == 402
        assert daemon.spendable(mint.url) == 0

        token = customer.token(PRICE)
        fee = fee_of(token, mint)
        paid = served.get("/paid/joke", token)
        assert paid.status_code == 200, paid.text
        assert paid.json()["received"] == PRICE - fee
        assert daemon.spendable(mint.url) == PRICE - fee

        assert served.get("/paid/joke", token).status_code == 402
        small = customer.token(PRICE - 5)
        assert served.get("/paid/joke", small).status_code == 400
        assert served.get("/paid/joke", "cashuA!!").status_code == 400
        assert len(app.config["SOLD"]) == 1
        assert daemon.spendable(mint.url) == PRICE - fee
        # the replay was tried and rolled back (the mint said spent); the rest never left
        history = daemon.json("history")
        ops = history["history"] if isinstance(history, dict) else history
        assert sorted((op["type"], op["state"]) for op in ops) == [
            ("receive", "completed"), ("receive", "rolled_back")]
    finally:
        served.close()
