"""NUT-01 vectors (nuts/tests/01-tests.md): which keysets a wallet must accept or reject."""

from typing import Any

import pytest

from coco_actors.crypto.keysets import validate_keys
from coco_actors.errors import InvalidInputError

from .vectors import BIG_KEYSET, SMALL_KEYSET

KEY_1_MISSING_A_BYTE = {
    "1": "03a40f20667ed53513075dc51e715ff2046cad64eb68960632269ba7f0210e38",
    "2": "03fd4ce5a16b65576145949e6f99f445f8249fee17c606b688b504a849cdc452de",
    "4": "02648eccfa4c026960966276fa5a4cae46ce0fd432211a4f449bf84f13aa5f8303",
    "8": "02fdfd6796bfeac490cbee12f778f867f0a2c68f6508d17c649759ea0dc3547528",
}

KEY_2_UNCOMPRESSED = {
    "1": "03a40f20667ed53513075dc51e715ff2046cad64eb68960632269ba7f0210e38bc",
    "2": "04fd4ce5a16b65576145949e6f99f445f8249fee17c606b688b504a849cdc452de"
         "3625246cb2c27dac965cb7200a5986467eee92eb7d496bbf1453b074e223e481",
    "4": "02648eccfa4c026960966276fa5a4cae46ce0fd432211a4f449bf84f13aa5f8303",
    "8": "02fdfd6796bfeac490cbee12f778f867f0a2c68f6508d17c649759ea0dc3547528",
}


@pytest.mark.parametrize(
    ("keys", "culprit"),
    [(KEY_1_MISSING_A_BYTE, "amount 1"), (KEY_2_UNCOMPRESSED, "amount 2")],
)
def test_invalid_keysets_are_rejected(keys: dict[str, str], culprit: str) -> None:
    with pytest.raises(InvalidInputError, match=culprit):
        validate_keys(keys)


def test_small_keyset_is_accepted() -> None:
    assert validate_keys(SMALL_KEYSET) == {int(a): k for a, k in SMALL_KEYSET.items()}


def test_big_keyset_is_accepted_up_to_2_pow_63() -> None:
    keys = validate_keys(BIG_KEYSET)
    assert len(keys) == 64
    assert list(keys) == [2**i for i in range(64)]
    assert keys[9223372036854775808] == (
        "0377a6fe114e291a8d8e991627c38001c8305b23b9e98b1c7b1893f5cd0dda6cad")


def test_keys_are_normalised_and_sorted() -> None:
    mixed: dict[Any, str] = {8: SMALL_KEYSET["8"].upper(), "1": SMALL_KEYSET["1"]}
    keys = validate_keys(mixed)
    assert list(keys.items()) == [(1, SMALL_KEYSET["1"]), (8, SMALL_KEYSET["8"])]


@pytest.mark.parametrize("amount", ["3", 0, -2, "1.0", "abc", 2**64, True])
def test_non_power_of_two_amounts_are_rejected(amount: Any) -> None:
    with pytest.raises(InvalidInputError):
        validate_keys({amount: SMALL_KEYSET["1"]})


def test_off_curve_key_and_empty_and_duplicate_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match="not a point"):
        validate_keys({1: "02" + "00" * 32})
    with pytest.raises(InvalidInputError, match="no keys"):
        validate_keys({})
    with pytest.raises(InvalidInputError, match="twice"):
        duplicate: dict[Any, str] = {1: SMALL_KEYSET["1"], "1": SMALL_KEYSET["2"]}
        validate_keys(duplicate)
