"""Payment requests against the real mint (fees 0 and 100): create/get/list/cancel, an
in-band payment claimed by the merchant (balance exact, event fired), the same payload
claimed twice (credited once, same answer), and refusals that change nothing."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from coco_actors.errors import InvalidStateError, NotFoundError, PaymentRequestError
from coco_actors.mint_client import normalize_mint_url
from coco_actors.payreq import decode_payload, decode_request

from .helpers import balance_of, fee_of, fund


def test_create_get_list_cancel(wallet: Any, mint: Any) -> None:
    url = normalize_mint_url(mint.url)
    shop = wallet("shop", url)
    req = shop.requests.create(21, mints=[url], description="coffee")
    assert req.state == "open" and req.amount == 21 and req.mints == (url,)
    for text in (req.encoded, req.encoded_b):
        decoded = decode_request(text)
        assert decoded.id == req.id and decoded.amount == 21 and decoded.mints == (url,)
        assert decoded.single_use is True and decoded.transports == ()
    assert shop.requests.get(req.id) == req
    assert [r.id for r in shop.requests.list()] == [req.id]
    assert shop.requests.cancel(req.id).state == "cancelled"
    with pytest.raises(InvalidStateError):
        shop.requests.cancel(req.id)
    with pytest.raises(NotFoundError):
        shop.requests.get("nope")
    with pytest.raises(NotFoundError):
        shop.requests.create(5, mints=["http://127.0.0.1:1/unknown"])
    posted = shop.requests.create(5, mints=[url], transport_url="http://127.0.0.1:9/")
    assert decode_request(posted.encoded).post_url == f"http://127.0.0.1:9/payments/{posted.id}"


def test_in_band_payment_claimed_once(wallet: Any, mint: Any) -> None:
    url = normalize_mint_url(mint.url)
    shop, customer = wallet("shop", url), wallet("customer", url)
    fund(customer, url, 200)
    req = shop.requests.create(64, mints=[url])
    paid = threading.Event()
    events: list[dict[str, Any]] = []

    def on_paid(p: dict[str, Any]) -> None:
        events.append(p)
        paid.set()

    shop.on("request:paid", on_paid)
    out = customer.requests.pay(req.encoded_b)
    payload = decode_payload(out["payload"])
    assert payload.id == req.id and payload.amount == 64
    fee = fee_of(mint.input_fee_ppk, len(payload.proofs))
    answer = shop.requests.claim(out["payload"])
    assert answer["amount"] == 64 - fee and answer["request_id"] == req.id
    assert balance_of(shop, url) == (64 - fee, 0, 0)
    assert paid.wait(10)
    assert events == [{"request_id": req.id, "amount": 64 - fee,
                       "operation_id": answer["operation_id"]}]
    assert shop.requests.claim(out["payload"]) == answer  # the same payload: same answer
    assert balance_of(shop, url) == (64 - fee, 0, 0)
    rec = shop.requests.get(req.id)
    assert rec.state == "paid" and rec.received == 64 - fee
    # single use: a second, different payload is refused and changes nothing
    again = customer.requests.pay(req.encoded)
    with pytest.raises(PaymentRequestError):
        shop.requests.claim(again["payload"])
    assert balance_of(shop, url) == (64 - fee, 0, 0)


def test_refusals_change_nothing(wallet: Any, mint: Any) -> None:
    url = normalize_mint_url(mint.url)
    shop, customer = wallet("shop", url), wallet("customer", url)
    fund(customer, url, 200)
    small = shop.requests.create(10, mints=[url], single_use=False)
    other = customer.requests.pay(small.encoded, amount=10)["payload"]
    for bad in ({**other, "unit": "usd"}, {**other, "id": "unknown"},
                {**other, "mint": "http://127.0.0.1:1"}, {"proofs": []}, b"{"):
        with pytest.raises(PaymentRequestError):
            shop.requests.claim(bad)
    big = shop.requests.create(50, mints=[url])
    with pytest.raises(PaymentRequestError):
        shop.requests.claim({**other, "id": big.id})  # too small
    assert balance_of(shop, url) == (0, 0, 0)
    shop.requests.cancel(big.id)
    with pytest.raises(PaymentRequestError):
        shop.requests.claim({**other, "id": big.id})
    assert balance_of(shop, url) == (0, 0, 0)
