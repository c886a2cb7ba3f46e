"""NUT-13 vectors (nuts/tests/13-tests.md): deterministic secrets and blinding factors."""

import pytest

from coco_actors.crypto.nut13 import Nut13Deriver, keyset_id_int
from coco_actors.errors import InvalidInputError

MNEMONIC = "half depart obvious quality work element tank gorilla view sugar picture humble"

V1_KEYSET_ID = "009a1f293253e41e"
V1_SECRETS = [
    "485875df74771877439ac06339e284c3acfcd9be7abf3bc20b516faeadfe77ae",
    "8f2b39e8e594a4056eb1e6dbb4b0c38ef13b1b2c751f64f810ec04ee35b77270",
    "bc628c79accd2364fd31511216a0fab62afd4a18ff77a20deded7b858c9860c8",
    "59284fd1650ea9fa17db2b3acf59ecd0f2d52ec3261dd4152785813ff27a33bf",
    "576c23393a8b31cc8da6688d9c9a96394ec74b40fdaf1f693a6bb84284334ea0",
]
V1_RS = [
    "ad00d431add9c673e843d4c2bf9a778a5f402b985b8da2d5550bf39cda41d679",
    "967d5232515e10b81ff226ecf5a9e2e2aff92d66ebc3edf0987eb56357fd6248",
    "b20f47bb6ae083659f3aa986bfa0435c55c6d93f687d51a01f26862d9b9a4899",
    "fb5fca398eb0b1deb955a2988b5ac77d32956155f1c002a373535211a2dfdc29",
    "5f09bfbfe27c439a597719321e061e2e40aad4a36768bb2bcc3de547c9644bf9",
]

V2_KEYSET_ID = "015ba18a8adcd02e715a58358eb618da4a4b3791151a4bee5e968bb88406ccf76a"
V2_SECRETS = [
    "db5561a07a6e6490f8dadeef5be4e92f7cebaecf2f245356b5b2a4ec40687298",
    "b70e7b10683da3bf1cdf0411206f8180c463faa16014663f39f2529b2fda922e",
    "78a7ac32ccecc6b83311c6081b89d84bb4128f5a0d0c5e1af081f301c7a513f5",
    "094a2b6c63bfa7970bc09cda0e1cfc9cd3d7c619b8e98fabcfc60aea9e4963e5",
    "5e89fc5d30d0bf307ddf0a3ac34aa7a8ee3702169dafa3d3fe1d0cae70ecd5ef",
]
V2_RS = [
    "6d26181a3695e32e9f88b80f039ba1ae2ab5a200ad4ce9dbc72c6d3769f2b035",
    "bde4354cee75545bea1a2eee035a34f2d524cee2bb01613823636e998386952e",
    "f40cc1218f085b395c8e1e5aaa25dccc851be3c6c7526a0f4e57108f12d6dac4",
    "099ed70fc2f7ac769bc20b2a75cb662e80779827b7cc358981318643030577d0",
    "5550337312d223ba62e3f75cfe2ab70477b046d98e3e71804eade3956c7b98cf",
]


@pytest.fixture(scope="module")
def deriver() -> Nut13Deriver:
    return Nut13Deriver(MNEMONIC)


def test_keyset_id_int() -> None:
    assert keyset_id_int(V1_KEYSET_ID) == 864559728


def test_keyset_id_int_of_v2_id_uses_first_8_bytes() -> None:
    assert keyset_id_int(V2_KEYSET_ID) == int(V2_KEYSET_ID[:16], 16) % (2**31 - 1)


@pytest.mark.parametrize("counter", range(5))
def test_v1_bip32_derivation(deriver: Nut13Deriver, counter: int) -> None:
    assert deriver.derive(V1_KEYSET_ID, counter) == (V1_SECRETS[counter], V1_RS[counter])


@pytest.mark.parametrize("counter", range(5))
def test_v2_hmac_derivation(deriver: Nut13Deriver, counter: int) -> None:
    assert deriver.derive(V2_KEYSET_ID, counter) == (V2_SECRETS[counter], V2_RS[counter])


def test_extra_whitespace_in_mnemonic_is_ignored() -> None:
    messy = "  " + MNEMONIC.replace(" ", "   ") + "\n"
    assert Nut13Deriver(messy).derive(V2_KEYSET_ID, 0) == (V2_SECRETS[0], V2_RS[0])


def test_repr_hides_key_material(deriver: Nut13Deriver) -> None:
    text = repr(deriver) + str(deriver)
    assert "half" not in text and "humble" not in text
    assert deriver._seed.hex() not in text
    assert not hasattr(deriver, "__dict__")  # no stray copy of the words


@pytest.mark.parametrize(
    "mnemonic",
    ["", "half depart obvious", MNEMONIC.replace("humble", "humbled"),
     MNEMONIC.replace("humble", "half")],  # last word breaks the checksum
)
def test_invalid_mnemonic_is_rejected(mnemonic: str) -> None:
    with pytest.raises(InvalidInputError):
        Nut13Deriver(mnemonic)


@pytest.mark.parametrize(
    ("keyset_id", "counter"),
    [
        ("zz", 0),
        ("029a1f293253e41e", 0),  # unknown version
        ("009a1f293253e4", 0),  # too short for a 00 id
        (V2_KEYSET_ID[:16], 0),  # a short 01 id cannot be derived from
        (V1_KEYSET_ID, -1),
        (V1_KEYSET_ID, 2**31),  # does not fit a hardened BIP32 index
        (V2_KEYSET_ID, 2**64),
    ],
)
def test_bad_derive_arguments(deriver: Nut13Deriver, keyset_id: str, counter: int) -> None:
    with pytest.raises(InvalidInputError):
        deriver.derive(keyset_id, counter)
