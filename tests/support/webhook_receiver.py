"""A webhook receiver for tests: ``http.server`` on 127.0.0.1 that records every delivery
and answers 500 while told to fail. Signatures are checked with hmac/base64 from the
Standard Webhooks text, independently of the wallet's signer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WAIT = 60.0


class Delivery:
    """One request the receiver got, and the status it answered."""

    def __init__(self, headers: dict[str, str], body: bytes, status: int) -> None:
        self.headers = headers
        self.body = body
        self.status = status
        payload = json.loads(body)
        self.seq: int = payload["seq"]
        self.event: str = payload["event"]
        self.operation_id: str | None = payload["operation_id"]


class HookReceiver:
    """Answers 500 to the first ``fail_first`` requests and while ``failing``; else 204."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.failing = False
        self.deliveries: list[Delivery] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["content-length"]))
                with receiver.cond:
                    fail = receiver.failing or receiver.fail_first > 0
                    receiver.fail_first = max(receiver.fail_first - 1, 0)
                    status = 500 if fail else 204
                    receiver.deliveries.append(
                        Delivery({k.lower(): v for k, v in self.headers.items()}, body, status))
                    receiver.cond.notify_all()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/coco"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, what: str, condition: Callable[[list[Delivery]], bool],
             timeout: float = WAIT) -> list[Delivery]:
        with self.cond:
            ok = self.cond.wait_for(lambda: condition(self.deliveries), timeout)
            got = list(self.deliveries)
        assert ok, f"{what}: not within {timeout} s; got {[(d.seq, d.status) for d in got]}"
        return got

    def acked(self) -> list[Delivery]:
        with self.cond:
            return [d for d in self.deliveries if 200 <= d.status < 300]

    def wait_acked(self, event: str, op_id: str) -> None:
        """Until the receiver answered 2xx to ``event`` of ``op_id``."""
        def acked(ds: list[Delivery]) -> bool:
            return any(d.status < 300 and (d.event, d.operation_id) == (event, op_id)
                       for d in ds)

        self.wait(f"{event} of {op_id} acknowledged", acked)



def verified(d: Delivery, key: bytes) -> bool:
    """Standard Webhooks: base64 HMAC-SHA256 over ``id.timestamp.body``, prefixed ``v1,``."""
    signed = f"{d.headers['webhook-id']}.{d.headers['webhook-timestamp']}.".encode() + d.body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()
                                        ).decode()
    return d.headers["webhook-signature"] == expected
