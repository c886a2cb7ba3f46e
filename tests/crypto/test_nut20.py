"""NUT-20 vectors (nuts/tests/20-test.md): the message a signed mint request commits
to, and its BIP340 signature. (The example request in nuts/20.md carries an
illustrative signature that does not verify; the vectors are the reference.)"""

import hashlib

import pytest
from coincurve import PrivateKey, PublicKeyXOnly

from coco_actors.crypto.nut20 import mint_quote_message, sign_mint_quote, verify_mint_quote
from coco_actors.errors import InvalidInputError
from coco_actors.wire import BlindedMessage

PUBKEY = "03d56ce4e446a85bbdaa547b4ec2b073d40ff802831352b8272b7dd7a4de5a7cac"
QUOTE = "9d745270-1405-46de-b5c5-e2762b4f5e00"
KEYSET = "00456a94ab4e1c46"
B_S = (
    "0342e5bcc77f5b2a3c2afb40bb591a1e27da83cddc968abdc0ec4904201a201834",
    "032fd3c4dc49a2844a89998d5e9d5b0f0b00dde9310063acb8a92e2fdafa4126d4",
    "033b6fde50b6a0dfe61ad148fff167ad9cf8308ded5f6f6b2fe000a036c464c311",
    "02be5a55f03e5c0aaea77595d574bce92c6d57a2a0fb2b5955c0b87e4520e06b53",
    "02209fc2873f28521cbdde7f7b3bb1521002463f5979686fd156f23fe6a8aa2b79",
)
OUTPUTS = [BlindedMessage(1, KEYSET, b) for b in B_S]
VALID_SIG = ("d4b386f21f7aa7172f0994ee6e4dd966539484247ea71c99b81b8e09b1bb2acb"
             "c0026a43c221fd773471dc30d6a32b04692e6837ddaccf0830a63128308e4ee0")
INVALID_SIG = ("cb2b8e7ea69362dfe2a07093f2bbc319226db33db2ef686c940b5ec976bcbfc7"
               "8df0cd35b3e998adf437b09ee2c950bd66dfe9eb64abd706e43ebc7c669c36c3")

# The vector's expected message, as the byte list it gives (verbatim).
EXPECTED_MESSAGE = bytes([
    57, 100, 55, 52, 53, 50, 55, 48, 45, 49, 52, 48, 53, 45, 52, 54, 100, 101, 45, 98, 53, 99,
    53, 45, 101, 50, 55, 54, 50, 98, 52, 102, 53, 101, 48, 48, 48, 51, 52, 50, 101, 53, 98, 99,
    99, 55, 55, 102, 53, 98, 50, 97, 51, 99, 50, 97, 102, 98, 52, 48, 98, 98, 53, 57, 49, 97,
    49, 101, 50, 55, 100, 97, 56, 51, 99, 100, 100, 99, 57, 54, 56, 97, 98, 100, 99, 48, 101,
    99, 52, 57, 48, 52, 50, 48, 49, 97, 50, 48, 49, 56, 51, 52, 48, 51, 50, 102, 100, 51, 99,
    52, 100, 99, 52, 57, 97, 50, 56, 52, 52, 97, 56, 57, 57, 57, 56, 100, 53, 101, 57, 100, 53,
    98, 48, 102, 48, 98, 48, 48, 100, 100, 101, 57, 51, 49, 48, 48, 54, 51, 97, 99, 98, 56, 97,
    57, 50, 101, 50, 102, 100, 97, 102, 97, 52, 49, 50, 54, 100, 52, 48, 51, 51, 98, 54, 102,
    100, 101, 53, 48, 98, 54, 97, 48, 100, 102, 101, 54, 49, 97, 100, 49, 52, 56, 102, 102, 102,
    49, 54, 55, 97, 100, 57, 99, 102, 56, 51, 48, 56, 100, 101, 100, 53, 102, 54, 102, 54, 98,
    50, 102, 101, 48, 48, 48, 97, 48, 51, 54, 99, 52, 54, 52, 99, 51, 49, 49, 48, 50, 98, 101,
    53, 97, 53, 53, 102, 48, 51, 101, 53, 99, 48, 97, 97, 101, 97, 55, 55, 53, 57, 53, 100, 53,
    55, 52, 98, 99, 101, 57, 50, 99, 54, 100, 53, 55, 97, 50, 97, 48, 102, 98, 50, 98, 53, 57,
    53, 53, 99, 48, 98, 56, 55, 101, 52, 53, 50, 48, 101, 48, 54, 98, 53, 51, 48, 50, 50, 48,
    57, 102, 99, 50, 56, 55, 51, 102, 50, 56, 53, 50, 49, 99, 98, 100, 100, 101, 55, 102, 55,
    98, 51, 98, 98, 49, 53, 50, 49, 48, 48, 50, 52, 54, 51, 102, 53, 57, 55, 57, 54, 56, 54,
    102, 100, 49, 53, 54, 102, 50, 51, 102, 101, 54, 97, 56, 97, 97, 50, 98, 55, 57,
])


def test_message_of_the_vector() -> None:
    assert mint_quote_message(QUOTE, OUTPUTS) == EXPECTED_MESSAGE
    assert mint_quote_message(QUOTE, list(B_S)) == EXPECTED_MESSAGE  # B_ hex alone too


def test_valid_signature_of_the_vector_verifies() -> None:
    assert verify_mint_quote(PUBKEY, QUOTE, OUTPUTS, VALID_SIG)


def test_invalid_signature_of_the_vector_does_not() -> None:
    assert not verify_mint_quote(PUBKEY, QUOTE, OUTPUTS, INVALID_SIG)


def test_sign_then_verify_binds_quote_and_every_output() -> None:
    key = bytes.fromhex("11" * 32)
    pub = PrivateKey(key).public_key.format().hex()
    sig = sign_mint_quote(key, QUOTE, OUTPUTS)
    assert len(sig) == 128
    assert verify_mint_quote(pub, QUOTE, OUTPUTS, sig)
    assert not verify_mint_quote(pub, QUOTE + "x", OUTPUTS, sig)
    assert not verify_mint_quote(pub, QUOTE, OUTPUTS[:-1], sig)
    assert not verify_mint_quote(pub, QUOTE, OUTPUTS[1:] + OUTPUTS[:1], sig)  # order
    assert not verify_mint_quote(PUBKEY, QUOTE, OUTPUTS, sig)  # another key
    # it is BIP340 over SHA-256 of the message, checkable by any implementation
    digest = hashlib.sha256(EXPECTED_MESSAGE).digest()
    assert PublicKeyXOnly(bytes.fromhex(pub)[1:]).verify(bytes.fromhex(sig), digest)


def test_either_parity_of_the_key_verifies() -> None:
    """BIP340 keys are x-only: a key whose compressed form starts 03 signs like one of 02."""
    for seed in range(1, 40):
        key = seed.to_bytes(32, "big")
        pub = PrivateKey(key).public_key.format().hex()
        if pub.startswith("03"):
            break
    assert pub.startswith("03")
    assert verify_mint_quote(pub, QUOTE, OUTPUTS, sign_mint_quote(key, QUOTE, OUTPUTS))


@pytest.mark.parametrize("sig", ["", "zz" * 64, VALID_SIG[:-2], VALID_SIG + "00", "00" * 64])
def test_malformed_signatures_do_not_verify(sig: str) -> None:
    assert not verify_mint_quote(PUBKEY, QUOTE, OUTPUTS, sig)


@pytest.mark.parametrize("pubkey", ["", "04" + "00" * 32, PUBKEY[2:], "02" + "ff" * 32])
def test_a_malformed_public_key_is_invalid_input(pubkey: str) -> None:
    with pytest.raises(InvalidInputError):
        verify_mint_quote(pubkey, QUOTE, OUTPUTS, VALID_SIG)


@pytest.mark.parametrize("key", [b"", b"\x00" * 32, b"\xff" * 32, b"\x01" * 31])
def test_a_bad_private_key_is_invalid_input(key: bytes) -> None:
    with pytest.raises(InvalidInputError):
        sign_mint_quote(key, QUOTE, OUTPUTS)


def test_an_empty_quote_id_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError):
        mint_quote_message("", OUTPUTS)
