"""BOLT-11 decoding (coco_actors.bolt11) and the test-invoice encoder (devtools.invoices).

No mint: real Nutshell 0.21 invoices captured from mint quotes, the BOLT-11 examples, and
invoices made by the encoder, which itself reproduces the BOLT-11 examples byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest

from coco_actors.bolt11 import DEFAULT_EXPIRY, MAX_LENGTH, Invoice, decode
from coco_actors.errors import InvalidInputError, InvoiceError
from devtools.invoices import TEST_NODE_KEY, bech32_encode, encode_invoice, make_invoice

# Real invoices of the dev mint and the BOLT-11 examples (see "_about" in the file).
_FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "bolt11_invoices.json").read_text())
NUTSHELL_INVOICES: list[dict[str, Any]] = _FIXTURES["nutshell"]
SPEC: dict[str, str] = _FIXTURES["spec"]
SPEC_INVALID: dict[str, str] = _FIXTURES["spec_invalid"]  # the encoding ones; no signatures

# BOLT-11 examples are signed with TEST_NODE_KEY, at this time, with this payment hash.
SPEC_HASH = "0001020304050607080900010203040506070809000102030405060708090102"
SPEC_TIMESTAMP = 1496314658
SPEC_HASHED_TEXT = (
    "One piece of chocolate cake, one icecream cone, one pickle, one slice of swiss cheese, "
    "one slice of salami, one lollypop, one piece of cherry pie, one sausage, one cupcake, "
    "and one slice of watermelon"
)

TIMESTAMP_GROUPS = [0] * 7
SIGNATURE_GROUPS = [0] * 104


def raw_invoice(hrp: str, fields: list[int]) -> str:
    """Timestamp 0, the given field groups, a zero signature, a valid checksum."""
    return bech32_encode(hrp, TIMESTAMP_GROUPS + fields + SIGNATURE_GROUPS)


# --- real invoices --------------------------------------------------------------------


@pytest.mark.parametrize("captured", NUTSHELL_INVOICES, ids=lambda c: f"{c['amount']}sat")
def test_decodes_invoices_of_the_dev_mint(captured: dict[str, Any]) -> None:
    invoice = decode(captured["request"])
    assert invoice.network == "bc"
    assert invoice.amount_sat == captured["amount"]
    assert invoice.amount_msat == 1000 * captured["amount"]
    assert invoice.timestamp == captured["timestamp"]
    assert invoice.expiry == DEFAULT_EXPIRY  # written as x=3600 by Nutshell
    assert invoice.expires_at == captured["expiry"]  # the mint quote's expiry
    assert invoice.payment_hash == captured["payment_hash"]
    assert invoice.description == ""
    assert invoice.request == captured["request"]


def test_spec_example_without_amount() -> None:
    invoice = decode(SPEC["donation"])
    assert invoice.amount_msat is None and invoice.amount_sat is None
    assert invoice.payment_hash == SPEC_HASH
    assert invoice.timestamp == SPEC_TIMESTAMP
    assert invoice.expiry == DEFAULT_EXPIRY  # no x field
    assert invoice.description == "Please consider supporting this project"


def test_spec_examples_with_amount_expiry_and_descriptions() -> None:
    coffee = decode(SPEC["coffee"])
    assert (coffee.amount_msat, coffee.amount_sat) == (250_000_000, 250_000)
    assert (coffee.expiry, coffee.expires_at) == (60, SPEC_TIMESTAMP + 60)
    assert coffee.description == "1 cup coffee"
    assert decode(SPEC["nonsense"]).description == "ナンセンス 1杯"
    hashed = decode(SPEC["hashed"])
    assert hashed.amount_msat == 2_000_000_000
    assert hashed.description is None
    assert hashed.description_hash == hashlib.sha256(SPEC_HASHED_TEXT.encode()).hexdigest()
    testnet = decode(SPEC["testnet"])
    assert testnet.network == "tb" and testnet.payment_hash == SPEC_HASH


def test_spec_example_in_pico_bitcoin() -> None:
    invoice = decode(SPEC["pico"])
    assert invoice.amount_msat == 967_878_534
    assert invoice.amount_sat == 967_879  # rounded up, as a sat mint quotes it
    assert invoice.timestamp == 1572468703
    assert invoice.expiry == 604800
    assert invoice.payment_hash == (
        "462264ede7e14047e9b249da94fefc47f41f7d02ee9b091815a5506bc8abf75f"
    )


def test_upper_case_and_ignored_fields() -> None:
    upper = decode(SPEC["upper"])
    assert upper.amount_msat == 2_500_000_000 and upper.payment_hash == SPEC_HASH
    assert upper.request == SPEC["upper"].lower()
    # p, h, s and n fields of the wrong length are skipped, unknown fields too
    ignored = decode(SPEC["ignored_fields"])
    assert ignored.payment_hash == SPEC_HASH
    assert ignored.description == "coffee beans"
    assert ignored.description_hash is None


def test_signatures_are_not_checked() -> None:
    """By design: the mint pays the node the invoice names; the wallet needs no node id."""
    assert decode(SPEC["unrecoverable_signature"]).amount_msat == 250_000_000


def test_lightning_prefix_and_surrounding_space_are_accepted() -> None:
    invoice = decode(f"  lightning:{SPEC['coffee'].upper()}\n")
    assert invoice.request == SPEC["coffee"]
    assert decode(f"LIGHTNING:{SPEC['coffee']}").payment_hash == SPEC_HASH


def test_repr_does_not_carry_the_invoice() -> None:
    text = repr(decode(SPEC["coffee"]))
    assert "lnbc" not in text and SPEC_HASH in text


# --- the encoder (devtools) -------------------------------------------------------------


def test_encoder_reproduces_the_spec_examples() -> None:
    """RFC 6979 signatures are deterministic: same key, same fields, same string."""
    p = bytes.fromhex(SPEC_HASH)
    assert encode_invoice(
        "lnbc", SPEC_TIMESTAMP, [("p", p), ("d", b"Please consider supporting this project")]
    ) == SPEC["donation"]
    assert encode_invoice(
        "lnbc2500u", SPEC_TIMESTAMP, [("p", p), ("d", b"1 cup coffee"), ("x", 60)]
    ) == SPEC["coffee"]
    assert encode_invoice(
        "lnbc2500u", SPEC_TIMESTAMP, [("p", p), ("d", "ナンセンス 1杯".encode()), ("x", 60)],
        TEST_NODE_KEY,
    ) == SPEC["nonsense"]


@pytest.mark.parametrize(
    ("amount_msat", "hrp"),
    [
        (100_000_000_000, "lnbc1"),  # whole bitcoin, no multiplier
        (2_000_000_000, "lnbc20m"),
        (250_000_000, "lnbc2500u"),
        (100_000, "lnbc1u"),
        (1_000, "lnbc10n"),
        (1_500, "lnbc15n"),
        (1, "lnbc10p"),
        (123_457, "lnbc1234570p"),
    ],
)
def test_multipliers_round_trip(amount_msat: int, hrp: str) -> None:
    text = make_invoice(amount_msat=amount_msat)
    assert text.startswith(hrp + "1")
    invoice = decode(text)
    assert invoice.amount_msat == amount_msat
    assert invoice.amount_sat == -(-amount_msat // 1000)


def test_made_invoices_carry_what_was_asked() -> None:
    payment_hash = hashlib.sha256(b"preimage").hexdigest()
    invoice = decode(
        make_invoice(21, network="bcrt", timestamp=1_700_000_000, expiry=600,
                     description="pay me", payment_hash=payment_hash)
    )
    assert invoice == Invoice(
        request=invoice.request, network="bcrt", amount_msat=21_000, timestamp=1_700_000_000,
        expiry=600, payment_hash=payment_hash, description="pay me",
    )
    assert decode(make_invoice()).amount_msat is None  # amountless
    assert make_invoice(5) != make_invoice(5)  # a fresh payment hash each time


def test_expiry() -> None:
    invoice = decode(make_invoice(10, timestamp=1_000_000, expiry=60))
    assert invoice.expires_at == 1_000_060
    assert not invoice.is_expired(1_000_059.9)
    assert invoice.is_expired(1_000_060)
    default = decode(make_invoice(10, timestamp=1_000_000))
    assert default.expiry == DEFAULT_EXPIRY and default.is_expired(1_003_600)
    assert not default.is_expired(1_003_599)


# --- malformed input --------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SPEC_INVALID))
def test_spec_invalid_examples_are_refused(name: str) -> None:
    with pytest.raises(InvoiceError):
        decode(SPEC_INVALID[name])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "must be a string, not NoneType"),
        (SPEC["coffee"].encode(), "must be a string, not bytes"),
        (2500, "must be a string, not int"),
        ("", "empty"),
        ("   ", "empty"),
        ("lightning:", "empty"),
    ],
)
def test_not_an_invoice(value: object, message: str) -> None:
    with pytest.raises(InvoiceError, match=message):
        decode(value)


def test_absurd_lengths() -> None:
    long = "lnbc1" + "q" * MAX_LENGTH
    with pytest.raises(InvoiceError, match=f"more than {MAX_LENGTH}") as info:
        decode(long)
    assert "qqqqqqqqqq" not in str(info.value)
    with pytest.raises(InvoiceError, match="too short"):
        decode(bech32_encode("lnbc", [0] * 100))
    with pytest.raises(InvoiceError, match="amount is absurdly large"):
        decode(raw_invoice("lnbc" + "9" * 40, [1, 1, 20] + [0] * 52))
    with pytest.raises(InvoiceError, match="more than 21 million"):
        decode(raw_invoice("lnbc21000001", [1, 1, 20] + [0] * 52))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "not a lightning invoice"),
        ("cashuBo2FteBhodHRwOi8vMTI3LjAuMC4xOjMzMzhhdWNzYXQ", "mixes upper and lower case"),
        ("cashuaeyj0zxy", "no separator"),
        ("lno1pqps7sjqpgtyzm3qv4uxzmtsd3jjqer9wd3hy6tsw35k7msjzfpy7nz5yqcn", "BOLT-12 offer"),
        ("lnxy1" + "q" * 120, "unknown network 'xy'"),
        ("lnbc1" + "b" * 120, "character 'b'"),
        ("ln1" + "q" * 120, "not ln \\+ network"),
        ("lnbc2500u1" + "q" * 120, "checksum does not match"),
    ],
)
def test_wrong_prefixes_and_encodings(text: str, message: str) -> None:
    with pytest.raises(InvoiceError, match=message):
        decode(text)


@pytest.mark.parametrize(
    ("hrp", "message"),
    [
        ("lnbc0", "zero or has a leading zero"),
        ("lnbc0100u", "zero or has a leading zero"),
        ("lnbc15p", "not a whole millisatoshi"),
        ("lnbc10x", "not ln \\+ network \\+ amount"),
        ("lnbcu", "unknown network"),
    ],
)
def test_bad_amounts(hrp: str, message: str) -> None:
    with pytest.raises(InvoiceError, match=message):
        decode(raw_invoice(hrp, [1, 1, 20] + [0] * 52))


def test_bad_fields() -> None:
    with pytest.raises(InvoiceError, match="no payment hash"):
        decode(encode_invoice("lnbc10n", 1, [("d", b"no hash")]))
    with pytest.raises(InvoiceError, match="no payment hash"):  # only one of the wrong length
        decode(encode_invoice("lnbc10n", 1, [("p", bytes(31)), ("d", b"short hash")]))
    with pytest.raises(InvoiceError, match="field 'p' runs past the data"):
        decode(raw_invoice("lnbc10n", [1, 1, 20] + [0] * 10))
    with pytest.raises(InvoiceError, match="inside a tagged field header"):
        decode(raw_invoice("lnbc10n", [1, 1, 20] + [0] * 52 + [13, 0]))
    with pytest.raises(InvoiceError, match="expiry field is too long"):
        decode(encode_invoice("lnbc10n", 1, [("p", bytes(32)), ("x", [1] * 13)]))


def test_errors_are_invalid_input_and_never_echo_the_invoice() -> None:
    good = NUTSHELL_INVOICES[1]["request"]
    assert isinstance(good, str)
    broken = [
        good[:-1] + ("q" if good[-1] != "q" else "p"),  # checksum
        good[:150],  # truncated
        good.replace("lnbc1u", "lnxx1u"),  # prefix
        good[:20] + "b" + good[21:],  # not bech32
        good + good,  # two pasted
    ]
    for text in broken:
        with pytest.raises(InvoiceError) as info:
            decode(text)
        assert isinstance(info.value, InvalidInputError) and isinstance(info.value, ValueError)
        assert good[20:40] not in str(info.value)


def test_mangled_invoices_only_ever_raise_invoice_error() -> None:
    """Truncations, insertions and substitutions: a result or InvoiceError, nothing else."""
    rng = random.Random(11)
    good = make_invoice(1234, expiry=600, timestamp=1_700_000_000)
    alphabet = "qpzry9x8gf2tvdw0s3jn54khce6mua7l1bio"
    decoded = refused = 0
    for _ in range(2000):
        chars = list(good)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(chars))
            match rng.randrange(3):
                case 0:
                    del chars[at:]
                case 1:
                    chars.insert(at, rng.choice(alphabet))
                case _:
                    chars[at] = rng.choice(alphabet)
            if not chars:
                chars = ["l"]
        try:
            decode("".join(chars))
            decoded += 1
        except InvoiceError:
            refused += 1
    assert refused > 1900  # the bech32 checksum catches nearly every change
    assert decoded + refused == 2000
