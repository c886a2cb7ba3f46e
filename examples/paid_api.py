"""A small Flask API that charges 21 sat of Cashu ecash per call of ``/paid/joke``.

Run it (``pip install -e ".[example]"``) against a wallet of your own::

    python examples/paid_api.py --mint http://127.0.0.1:3338 --data-dir ./merchant
    python examples/paid_api.py --mint http://127.0.0.1:3338 --daemon ~/.coco

``--data-dir`` embeds the wallet in this process; ``--daemon`` hands every payment to a
running ``coco serve`` for that directory. ``/free`` costs nothing; ``/paid/joke``
answers ``402`` with an ``X-Cashu`` payment request until a token is sent in that
header (NUT-24). tests/integration/test_http402_app.py serves it against real mints.
"""

from __future__ import annotations

import argparse

from flask import Flask, request
from werkzeug.serving import run_simple

from coco_actors import Coco
from coco_actors.http402 import DaemonWallet, Http402Middleware, PaymentWallet, Received

PRICE = 21


# --- paid-api: README.md shows this part as it is ---
def create_app(wallet: Coco | PaymentWallet, mint_url: str, price: int = PRICE) -> Flask:
    app = Flask(__name__)
    sold: list[Received] = []  # what the paid handler ran for, once per payment
    app.config["SOLD"] = sold

    @app.get("/free")
    def free() -> dict[str, str]:
        return {"hello": "anyone"}

    @app.get("/paid/joke")
    def joke() -> dict[str, object]:
        paid: Received = request.environ["coco.payment"]  # set by the middleware
        sold.append(paid)
        return {"joke": "A satoshi walks into a bar. It is too small to be served.",
                "received": paid.amount, "fee": paid.fee, "operation": paid.operation_id}

    # every path under /paid/ costs `price`; tokens only from mint_url
    app.wsgi_app = Http402Middleware(  # type: ignore[method-assign]
        app.wsgi_app, wallet, price=price, mints=[mint_url], paths=["/paid/"])
    return app
# --- end paid-api ---


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mint", required=True, help="the mint tokens must come from")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", help="an embedded wallet in this directory")
    where.add_argument("--daemon", help="the data directory of a running `coco serve`")
    parser.add_argument("--port", type=int, default=8402)
    args = parser.parse_args()
    if args.daemon:
        run_simple("127.0.0.1", args.port, create_app(DaemonWallet(args.daemon), args.mint),
                   threaded=True)
        return
    with Coco.open(args.data_dir) as coco:
        coco.mints.add(args.mint)
        run_simple("127.0.0.1", args.port, create_app(coco, args.mint), threaded=True)


if __name__ == "__main__":
    main()
