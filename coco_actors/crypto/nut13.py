"""NUT-13 deterministic secrets: every output's secret and ``r`` come from the mnemonic.

That is what makes a wallet restorable: replaying the per-keyset counters
regenerates the same blinded messages, and the mint (NUT-09) re-sends their
signatures. The derivation depends on the keyset id version: BIP32 paths for
``00`` ids, an HMAC-SHA256 KDF for ``01`` ids.
"""

from __future__ import annotations

import hashlib
import hmac

from bip32 import BIP32
from mnemonic import Mnemonic

from coco_actors.crypto.bdhke import N
from coco_actors.errors import CryptoError, InvalidInputError

HARDENED = 2**31
PURPOSE = 129372  # UTF-8 of the peanut emoji, as the spec says
KDF_TAG = b"Cashu_KDF_HMAC_SHA256"


def _keyset_id_bytes(keyset_id: str) -> bytes:
    try:
        raw = bytes.fromhex(keyset_id)
    except (TypeError, ValueError):
        raise InvalidInputError(f"keyset id {keyset_id!r} is not hex") from None
    expected = {0x00: 8, 0x01: 33}.get(raw[0]) if raw else None
    if expected is None:
        raise InvalidInputError(f"keyset id {keyset_id!r}: unsupported version")
    if len(raw) != expected:
        raise InvalidInputError(
            f"keyset id {keyset_id!r}: version {raw[0]:02x} ids are {expected} bytes")
    return raw


def seed_of(mnemonic: str) -> bytes:
    """The BIP39 seed of an english mnemonic (no passphrase: other wallets use none);
    anything else is :class:`InvalidInputError` (the words are never quoted)."""
    words = " ".join(mnemonic.split()) if isinstance(mnemonic, str) else ""
    try:
        valid = Mnemonic("english").check(words)
    except (ValueError, LookupError):
        valid = False
    if not valid:
        raise InvalidInputError("not a valid BIP39 english mnemonic")
    return Mnemonic.to_seed(words)


def keyset_id_int(keyset_id: str) -> int:
    """The (deprecated) BIP32 path component of a keyset: first 8 id bytes mod ``2^31 - 1``."""
    return int.from_bytes(_keyset_id_bytes(keyset_id)[:8], "big") % (2**31 - 1)


class Nut13Deriver:
    """Derives ``(secret, r)`` pairs from one mnemonic.

    The BIP39 seed is stretched (2048 PBKDF2 rounds) once at construction, not
    per output. Holds key material: its repr says nothing about it, and it
    keeps no copy of the mnemonic words.
    """

    __slots__ = ("_seed", "_master")

    def __init__(self, mnemonic: str) -> None:
        self._seed = seed_of(mnemonic)
        self._master = BIP32.from_seed(self._seed)

    def __repr__(self) -> str:
        return "Nut13Deriver(<secret>)"

    def derive(self, keyset_id: str, counter: int) -> tuple[str, str]:
        """``(secret_hex, r_hex)`` for ``counter`` in ``keyset_id``; the secret is used as text."""
        raw_id = _keyset_id_bytes(keyset_id)
        if isinstance(counter, bool) or not isinstance(counter, int) or counter < 0:
            raise InvalidInputError(f"counter must be a non-negative integer, got {counter!r}")
        if raw_id[0] == 0x00:
            return self._derive_bip32(keyset_id_int(keyset_id), counter)
        return self._derive_hmac(raw_id, counter)

    def _derive_bip32(self, ks_int: int, counter: int) -> tuple[str, str]:
        if counter >= HARDENED:
            raise InvalidInputError(f"counter {counter} does not fit a BIP32 hardened index")
        base = [PURPOSE + HARDENED, HARDENED, ks_int + HARDENED, counter + HARDENED]
        secret = self._master.get_privkey_from_path([*base, 0])
        r = self._master.get_privkey_from_path([*base, 1])
        return secret.hex(), r.hex()

    def _derive_hmac(self, raw_id: bytes, counter: int) -> tuple[str, str]:
        if counter >= 2**64:
            raise InvalidInputError(f"counter {counter} does not fit 64 bits")
        message = KDF_TAG + raw_id + counter.to_bytes(8, "big")
        secret = hmac.new(self._seed, message + b"\x00", hashlib.sha256).digest()
        r_digest = hmac.new(self._seed, message + b"\x01", hashlib.sha256).digest()
        r = int.from_bytes(r_digest, "big") % N
        if r == 0:  # pragma: no cover - probability 2^-256
            raise CryptoError("NUT-13 derivation gave r == 0")
        return secret.hex(), r.to_bytes(32, "big").hex()
