"""NUT-00 vectors (nuts/tests/00-tests.md): hash_to_curve, blinding, signing.

Token (de)serialization vectors are tested with the token module, not here.
"""

import pytest

from coco_actors.crypto.bdhke import (
    blind_message,
    hash_to_curve,
    parse_privkey,
    parse_pubkey,
    secret_to_y,
    sign_blinded,
    unblind_signature,
    verify_unblinded,
)
from coco_actors.errors import InvalidInputError


@pytest.mark.parametrize(
    ("message", "point"),
    [
        ("0000000000000000000000000000000000000000000000000000000000000000",
         "024cce997d3b518f739663b757deaec95bcd9473c30a14ac2fd04023a739d1a725"),
        ("0000000000000000000000000000000000000000000000000000000000000001",
         "022e7158e11c9506f1aa4248bf531298daa7febd6194f003edcd9b93ade6253acf"),
        # needs a few iterations of the counter loop
        ("0000000000000000000000000000000000000000000000000000000000000002",
         "026cdbe15362df59cd1dd3c9c11de8aedac2106eca69236ecd9fbe117af897be4f"),
    ],
)
def test_hash_to_curve(message: str, point: str) -> None:
    assert hash_to_curve(bytes.fromhex(message)).format().hex() == point


def test_secret_to_y_hashes_the_utf8_text_not_the_hex_bytes() -> None:
    secret = "0000000000000000000000000000000000000000000000000000000000000000"
    assert secret_to_y(secret) == hash_to_curve(secret.encode()).format().hex()
    hashed_as_bytes = "024cce997d3b518f739663b757deaec95bcd9473c30a14ac2fd04023a739d1a725"
    assert secret_to_y(secret) != hashed_as_bytes


@pytest.mark.parametrize(
    ("x", "r", "B_"),
    [
        ("d341ee4871f1f889041e63cf0d3823c713eea6aff01e80f1719f08f9e5be98f6",
         "99fce58439fc37412ab3468b73db0569322588f62fb3a49182d67e23d877824a",
         "033b1a9737a40cc3fd9b6af4b723632b76a67a36782596304612a6c2bfb5197e6d"),
        ("f1aaf16c2239746f369572c0784d9dd3d032d952c2d992175873fb58fae31a60",
         "f78476ea7cc9ade20f9e05e58a804cf19533f03ea805ece5fee88c8e2874ba50",
         "029bdf2d716ee366eddf599ba252786c1033f47e230248a4612a5670ab931f1763"),
    ],
)
def test_blinded_messages(x: str, r: str, B_: str) -> None:
    assert blind_message(bytes.fromhex(x), parse_privkey(r)).format().hex() == B_


@pytest.mark.parametrize(
    ("k", "B_", "C_"),
    [
        ("0000000000000000000000000000000000000000000000000000000000000001",
         "02a9acc1e48c25eeeb9289b5031cc57da9fe72f3fe2861d264bdc074209b107ba2",
         "02a9acc1e48c25eeeb9289b5031cc57da9fe72f3fe2861d264bdc074209b107ba2"),
        ("7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f",
         "02a9acc1e48c25eeeb9289b5031cc57da9fe72f3fe2861d264bdc074209b107ba2",
         "0398bc70ce8184d27ba89834d19f5199c84443c31131e48d3c1214db24247d005d"),
    ],
)
def test_blinded_signatures(k: str, B_: str, C_: str) -> None:
    assert sign_blinded(parse_pubkey(B_), parse_privkey(k)).format().hex() == C_


def test_blind_sign_unblind_verify() -> None:
    k = parse_privkey("7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f")
    r = parse_privkey("99fce58439fc37412ab3468b73db0569322588f62fb3a49182d67e23d877824a")
    secret = b"test message"
    C = unblind_signature(sign_blinded(blind_message(secret, r), k), r, k.public_key)
    assert C.format() == hash_to_curve(secret).multiply(k.secret).format()
    assert verify_unblinded(secret, C, k)
    assert not verify_unblinded(b"other message", C, k)


@pytest.mark.parametrize(
    "bad",
    [
        "zz",  # not hex
        "03a40f20667ed53513075dc51e715ff2046cad64eb68960632269ba7f0210e38",  # 32 bytes
        # valid point, but uncompressed
        "04fd4ce5a16b65576145949e6f99f445f8249fee17c606b688b504a849cdc452de"
        "3625246cb2c27dac965cb7200a5986467eee92eb7d496bbf1453b074e223e481",
        "05" + "11" * 32,  # bad prefix
        "02" + "00" * 32,  # x = 0 is not on the curve
    ],
)
def test_parse_pubkey_rejects(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_pubkey(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "xyz",
        "00" * 31 + "01" + "00",  # 33 bytes
        "00" * 32,  # zero
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",  # N
    ],
)
def test_parse_privkey_rejects(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_privkey(bad)
