"""NUT-01/02 keyset checks: key validation, keyset ids and input fees.

A wallet recomputes the keyset id from the keys instead of trusting the mint,
so a mint cannot hand out different keys under one id (which would let it tag
users) or swap the keys behind an id the wallet already stores.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from coco_actors.crypto.bdhke import parse_pubkey
from coco_actors.errors import CryptoError, InvalidInputError
from coco_actors.wire import Keyset, KeysetInfo

MAX_KEY_AMOUNT = 2**63  # NUT-01: the largest denomination a keyset may carry


def _amount(raw: int | str) -> int:
    if isinstance(raw, bool):
        raise InvalidInputError(f"keyset amount {raw!r} is not an integer")
    if isinstance(raw, str):
        if not raw.isascii() or not raw.isdigit():
            raise InvalidInputError(f"keyset amount {raw!r} is not a decimal integer")
        raw = int(raw)
    if not isinstance(raw, int):
        raise InvalidInputError(f"keyset amount {raw!r} is not an integer")
    if raw <= 0 or raw & (raw - 1) or raw > MAX_KEY_AMOUNT:
        raise InvalidInputError(f"keyset amount {raw} is not a power of two up to 2^63")
    return raw


def validate_keys(keys: Mapping[int, str] | Mapping[str, str]) -> dict[int, str]:
    """Normalise a keys map (JSON gives string amounts) to ``{int: lowercase hex}``, sorted.

    Every key must be a 33-byte compressed point on the curve, every amount a
    power of two; anything else means the whole keyset is unusable.
    """
    if not isinstance(keys, Mapping) or not keys:
        raise InvalidInputError("keyset has no keys")
    out: dict[int, str] = {}
    for raw_amount, pubkey in keys.items():
        amount = _amount(raw_amount)
        if amount in out:
            raise InvalidInputError(f"keyset lists amount {amount} twice")
        out[amount] = parse_pubkey(pubkey, f"keyset key for amount {amount}").format().hex()
    return dict(sorted(out.items()))


def derive_keyset_id_v00(keys: Mapping[int, str] | Mapping[str, str]) -> str:
    """Deprecated 8-byte id: ``00`` + first 7 bytes of SHA256(sorted compressed keys)."""
    concat = b"".join(bytes.fromhex(k) for k in validate_keys(keys).values())
    return "00" + hashlib.sha256(concat).hexdigest()[:14]


def derive_keyset_id_v01(
    keys: Mapping[int, str] | Mapping[str, str],
    unit: str,
    final_expiry: int | None = None,
    *,
    input_fee_ppk: int | None = 0,
) -> str:
    """33-byte id: ``01`` + SHA256 of ``a:key,...|unit:u[|input_fee_ppk:f][|final_expiry:t]``.

    The fee and expiry are committed to so a mint cannot change them under an
    existing id; both are left out when 0 or absent, as the spec requires.
    """
    preimage = ",".join(f"{amount}:{key}" for amount, key in validate_keys(keys).items())
    preimage += f"|unit:{unit.lower()}"
    if input_fee_ppk:
        preimage += f"|input_fee_ppk:{input_fee_ppk}"
    if final_expiry:
        preimage += f"|final_expiry:{final_expiry}"
    return "01" + hashlib.sha256(preimage.encode("utf-8")).hexdigest()


def derive_keyset_id(
    keys: Mapping[int, str] | Mapping[str, str],
    version: str,
    unit: str | None = None,
    final_expiry: int | None = None,
    *,
    input_fee_ppk: int | None = 0,
) -> str:
    """Keyset id of the given version (``"00"`` or ``"01"``); ``01`` needs the unit."""
    if version == "00":
        return derive_keyset_id_v00(keys)
    if version == "01":
        if unit is None:
            raise InvalidInputError("a version 01 keyset id needs the unit")
        return derive_keyset_id_v01(keys, unit, final_expiry, input_fee_ppk=input_fee_ppk)
    raise InvalidInputError(f"unsupported keyset id version {version!r}")


def verify_keyset_id(keyset: Keyset) -> None:
    """Raise :class:`CryptoError` unless ``keyset.keys`` hash to ``keyset.id``.

    The version comes from the id prefix. An unknown version cannot be checked
    and is refused the same way, since an unverified keyset must not be used.
    A version 01 id commits to the unit, fee and final expiry given with the keys;
    one hashed with ``|final_expiry:0`` (Nutshell 0.21, for a keyset without an
    expiry; NUT-02 omits a zero) is accepted too.
    Malformed keys raise :class:`InvalidInputError` from :func:`validate_keys`.
    """
    claimed = keyset.id.lower()
    version = claimed[:2]
    if version == "00" and len(claimed) == 16:
        derived = derive_keyset_id_v00(keyset.keys)
    elif version == "01" and len(claimed) == 66:
        derived = derive_keyset_id_v01(keyset.keys, keyset.unit, keyset.final_expiry,
                                       input_fee_ppk=keyset.input_fee_ppk)
        if derived != claimed and not keyset.final_expiry and \
                _nutshell_zero_expiry_id(keyset) == claimed:
            return
    else:
        raise CryptoError(f"keyset {keyset.id}: unsupported keyset id version or length")
    if derived != claimed:
        raise CryptoError(f"keyset {keyset.id}: keys hash to {derived}, not to the claimed id")


def _nutshell_zero_expiry_id(keyset: Keyset) -> str:
    preimage = ",".join(f"{amount}:{key}" for amount, key in validate_keys(keyset.keys).items())
    preimage += f"|unit:{keyset.unit.lower()}"
    if keyset.input_fee_ppk:
        preimage += f"|input_fee_ppk:{keyset.input_fee_ppk}"
    preimage += "|final_expiry:0"
    return "01" + hashlib.sha256(preimage.encode("utf-8")).hexdigest()


def commits_metadata(keyset_id: str) -> bool:
    """Whether the id hashes the unit, fee and final expiry (NUT-02 version 01)."""
    return keyset_id.lower().startswith("01")


def check_listed_metadata(keyset: Keyset, info: KeysetInfo) -> None:
    """Raise :class:`CryptoError` if ``/v1/keysets`` lists ``keyset`` (already verified
    by :func:`verify_keyset_id`) with another unit, fee or final expiry than its id
    commits to: a mint must not charge a fee the id does not carry."""
    if not commits_metadata(keyset.id):
        return
    listed = (info.unit.lower(), info.input_fee_ppk, info.final_expiry or 0)
    committed = (keyset.unit.lower(), keyset.input_fee_ppk, keyset.final_expiry or 0)
    if listed != committed:
        raise CryptoError(
            f"keyset {keyset.id}: /v1/keysets lists unit {info.unit!r}, input_fee_ppk"
            f" {info.input_fee_ppk}, final_expiry {info.final_expiry}, which the id does not"
            f" commit to ({keyset.unit!r}, {keyset.input_fee_ppk}, {keyset.final_expiry})")


def fee_for(input_fee_ppks: Iterable[int]) -> int:
    """Total input fee: per-input ppk summed, then rounded *up* once (NUT-02).

    Integer arithmetic on purpose: ``ceil(x / 1000)`` in floats can be off.
    """
    return (sum(input_fee_ppks) + 999) // 1000
