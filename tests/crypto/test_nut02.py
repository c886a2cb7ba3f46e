"""NUT-02 vectors (nuts/tests/02-tests.md): keyset ids of both versions, and fees."""

import dataclasses

import pytest

from coco_actors.crypto.keysets import (
    derive_keyset_id,
    derive_keyset_id_v00,
    derive_keyset_id_v01,
    fee_for,
    validate_keys,
    verify_keyset_id,
)
from coco_actors.errors import CryptoError, InvalidInputError
from coco_actors.wire import Keyset

from .vectors import BIG_KEYSET, SMALL_KEYSET

V1_SMALL_ID = "00456a94ab4e1c46"
V1_BIG_ID = "000f01df73ea149a"
V2_VECTOR_1_ID = "015ba18a8adcd02e715a58358eb618da4a4b3791151a4bee5e968bb88406ccf76a"
V2_VECTOR_2_ID = "01ab6aa4ff30390da34986d84be5274b48ad7a74265d791095bfc39f4098d9764f"
V2_VECTOR_3_ID = "012fbb01a4e200c76df911eeba3b8fe1831202914b24664f4bccbd25852a6708f8"


def test_v1_ids() -> None:
    assert derive_keyset_id_v00(SMALL_KEYSET) == V1_SMALL_ID
    assert derive_keyset_id_v00(BIG_KEYSET) == V1_BIG_ID


def test_v2_vector_1_commits_to_fee_and_expiry() -> None:
    assert derive_keyset_id_v01(SMALL_KEYSET, "sat", 2059210353, input_fee_ppk=100) == (
        V2_VECTOR_1_ID)
    # without the fee the preimage differs
    assert derive_keyset_id_v01(SMALL_KEYSET, "sat", 2059210353) != V2_VECTOR_1_ID


def test_v2_vector_2_zero_fee_is_omitted() -> None:
    assert derive_keyset_id_v01(BIG_KEYSET, "sat", 2059210353, input_fee_ppk=0) == V2_VECTOR_2_ID
    assert derive_keyset_id_v01(BIG_KEYSET, "sat", 2059210353, input_fee_ppk=None) == (
        V2_VECTOR_2_ID)


def test_v2_vector_3_no_expiry() -> None:
    assert derive_keyset_id_v01(BIG_KEYSET, "sat") == V2_VECTOR_3_ID
    assert derive_keyset_id_v01(BIG_KEYSET, "sat", None, input_fee_ppk=0) == V2_VECTOR_3_ID


def test_derive_keyset_id_dispatches_on_version() -> None:
    assert derive_keyset_id(SMALL_KEYSET, "00") == V1_SMALL_ID
    assert derive_keyset_id(BIG_KEYSET, "01", "sat", 2059210353) == V2_VECTOR_2_ID
    assert derive_keyset_id(SMALL_KEYSET, "01", "sat", 2059210353, input_fee_ppk=100) == (
        V2_VECTOR_1_ID)
    with pytest.raises(InvalidInputError):
        derive_keyset_id(SMALL_KEYSET, "01")
    with pytest.raises(InvalidInputError):
        derive_keyset_id(SMALL_KEYSET, "02", "sat")


@pytest.mark.parametrize(
    "keyset",
    [
        Keyset(V1_SMALL_ID, "sat", validate_keys(SMALL_KEYSET)),
        Keyset(V1_BIG_ID, "sat", validate_keys(BIG_KEYSET)),
        Keyset(V2_VECTOR_1_ID, "sat", validate_keys(SMALL_KEYSET), input_fee_ppk=100,
               final_expiry=2059210353),
        Keyset(V2_VECTOR_2_ID, "sat", validate_keys(BIG_KEYSET), final_expiry=2059210353),
        Keyset(V2_VECTOR_3_ID, "sat", validate_keys(BIG_KEYSET)),
    ],
    ids=["v1-small", "v1-big", "v2-1", "v2-2", "v2-3"],
)
def test_verify_keyset_id_accepts_vectors(keyset: Keyset) -> None:
    verify_keyset_id(keyset)


def test_verify_keyset_id_rejects_tampering() -> None:
    good = Keyset(V2_VECTOR_1_ID, "sat", validate_keys(SMALL_KEYSET), input_fee_ppk=100,
                  final_expiry=2059210353)
    swapped = dict(good.keys)
    swapped[1], swapped[2] = swapped[2], swapped[1]
    for bad in (
        dataclasses.replace(good, keys=swapped),
        dataclasses.replace(good, input_fee_ppk=0),
        dataclasses.replace(good, final_expiry=None),
        dataclasses.replace(good, unit="usd"),
        Keyset(V1_SMALL_ID, "sat", validate_keys(BIG_KEYSET)),
        Keyset("02" + V2_VECTOR_1_ID[2:], "sat", validate_keys(SMALL_KEYSET)),
        Keyset(V1_SMALL_ID[:14], "sat", validate_keys(SMALL_KEYSET)),
    ):
        with pytest.raises(CryptoError):
            verify_keyset_id(bad)


@pytest.mark.parametrize(
    ("ppks", "fee"),
    [
        ([], 0),
        ([0, 0, 0], 0),
        ([100], 1),
        ([100] * 3, 1),  # the spec's example: ceil(0.3) == 1
        ([100] * 10, 1),
        ([100] * 11, 2),
        ([100] * 20, 2),
        ([1000], 1),
        ([1001], 2),
        ([100, 250, 1000], 2),  # mixed keysets: summed first, rounded once
    ],
)
def test_fee_rounds_up_once(ppks: list[int], fee: int) -> None:
    assert fee_for(ppks) == fee
    assert fee_for(iter(ppks)) == fee
