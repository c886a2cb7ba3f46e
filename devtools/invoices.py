"""Make BOLT-11 invoices for tests: payable ones, expired ones, amountless ones.

Development helper, not part of the wallet. Nutshell's FakeWallet pays any well-formed,
signed invoice with an amount, so a test that needs something to melt makes an invoice
here instead of asking a second mint for one. Signed with coincurve (a dependency of the
wallet already), deterministically (RFC 6979): the BOLT-11 examples come out byte for byte,
which is how ``tests/test_bolt11.py`` checks this encoder.

Nutshell's decoder also wants a payment secret (``s``) and a description (``d``) or its
hash (``h``); :func:`make_invoice` always writes both.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence

from coincurve import PrivateKey

from coco_actors.bolt11 import BECH32_CHARSET, bech32_hrp_expand, bech32_polymod

__all__ = ["TEST_NODE_KEY", "bech32_encode", "encode_invoice", "hrp_amount", "make_invoice"]

#: The private key of the BOLT-11 examples; any key works, this one makes them reproducible.
TEST_NODE_KEY = "e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734"

_CHARSET = BECH32_CHARSET

#: A field's value: bytes (zero-padded to 5 bits), an int (shortest big-endian), or raw
#: 5-bit groups (for writing malformed fields on purpose).
FieldValue = bytes | int | list[int]


def _groups_from_bytes(data: bytes) -> list[int]:
    nbits = len(data) * 8
    value = int.from_bytes(data, "big") << (-nbits % 5)
    count = -(-nbits // 5)
    return [value >> 5 * (count - 1 - i) & 31 for i in range(count)]


def _groups_from_int(value: int, width: int | None = None) -> list[int]:
    groups: list[int] = []
    while value or not groups:
        groups.insert(0, value & 31)
        value >>= 5
    if width is not None:
        if len(groups) > width:
            raise ValueError(f"{value} does not fit in {width} groups")
        groups = [0] * (width - len(groups)) + groups
    return groups


def _bytes_from_groups(groups: Sequence[int]) -> bytes:
    """Pack 5-bit groups into bytes, the last byte padded with zero bits (BOLT-11 signing)."""
    value, nbits = 0, 0
    for group in groups:
        value, nbits = value << 5 | group, nbits + 5
    pad = -nbits % 8
    return (value << pad).to_bytes((nbits + pad) // 8, "big")


def bech32_encode(hrp: str, groups: Sequence[int]) -> str:
    """``hrp`` + ``1`` + the groups + a bech32 checksum (no length limit, as BOLT-11 needs)."""
    check = bech32_polymod([*bech32_hrp_expand(hrp), *groups, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [check >> 5 * (5 - i) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[g] for g in [*groups, *checksum])


def encode_invoice(
    hrp: str,
    timestamp: int,
    fields: Sequence[tuple[str, FieldValue]],
    private_key: str = TEST_NODE_KEY,
) -> str:
    """Encode and sign an invoice from its parts, fields in the order given.

    ``fields`` are ``(tag letter, value)``; e.g. ``("p", payment_hash_bytes)``,
    ``("x", 600)``. Nothing is checked: tests use this to write malformed invoices too.
    """
    data = _groups_from_int(timestamp, 7)
    for tag, value in fields:
        if isinstance(value, bytes):
            groups = _groups_from_bytes(value)
        elif isinstance(value, int):
            groups = _groups_from_int(value)
        else:
            groups = list(value)
        data += [_CHARSET.index(tag), *_groups_from_int(len(groups), 2), *groups]
    message = hrp.encode() + _bytes_from_groups(data)
    signature = PrivateKey(bytes.fromhex(private_key)).sign_recoverable(
        message, hasher=lambda m: hashlib.sha256(m).digest()
    )
    return bech32_encode(hrp, data + _groups_from_bytes(signature))


def hrp_amount(amount_msat: int) -> str:
    """The shortest exact BOLT-11 amount for ``amount_msat``: ``2500u``, ``10p``, ``20m``…"""
    for multiplier, msat in (("", 100_000_000_000), ("m", 100_000_000), ("u", 100_000),
                             ("n", 100)):
        if amount_msat % msat == 0:
            return f"{amount_msat // msat}{multiplier}"
    return f"{amount_msat * 10}p"


def make_invoice(
    amount_sat: int | None = None,
    *,
    amount_msat: int | None = None,
    network: str = "bc",
    timestamp: int | None = None,
    expiry: int | None = None,
    description: str = "coco-actors test invoice",
    payment_hash: str | None = None,
    private_key: str | None = None,
) -> str:
    """A signed invoice FakeWallet will pay (given an amount and a future expiry).

    Without ``amount_sat`` or ``amount_msat`` the invoice is amountless. ``timestamp``
    defaults to now; ``expiry`` to none written (3600 s by BOLT-11); a fresh random payment
    hash unless given, so two calls never make the same invoice.
    """
    if amount_sat is not None and amount_msat is not None:
        raise ValueError("give amount_sat or amount_msat, not both")
    msat = amount_sat * 1000 if amount_sat is not None else amount_msat
    hrp = "ln" + network + (hrp_amount(msat) if msat is not None else "")
    fields: list[tuple[str, FieldValue]] = [
        ("p", bytes.fromhex(payment_hash) if payment_hash else secrets.token_bytes(32)),
        ("s", secrets.token_bytes(32)),
        ("d", description.encode()),
    ]
    if expiry is not None:
        fields.append(("x", expiry))
    return encode_invoice(
        hrp,
        int(time.time()) if timestamp is None else timestamp,
        fields,
        private_key or PrivateKey().secret.hex(),
    )
