"""NUT-20: the signature that lets only the quote's owner mint a locked mint quote.

A wallet that asked for a quote with a public key signs each mint request for it:
a BIP340 Schnorr signature over SHA-256 of ``quote id || B_0 || ... || B_(n-1)``
(every part the UTF-8 of its text, the outputs in request order). Binding the
outputs stops whoever sees the request from replaying it with outputs of theirs.

Pure functions without IO, callable from any thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from coco_actors.crypto.bdhke import parse_pubkey
from coco_actors.crypto.nut11 import schnorr_sign, schnorr_verify
from coco_actors.errors import InvalidInputError
from coco_actors.wire import BlindedMessage

__all__ = ["mint_quote_message", "sign_mint_quote", "verify_mint_quote"]


def mint_quote_message(quote_id: str, outputs: Sequence[BlindedMessage | str]) -> bytes:
    """The bytes NUT-20 signs: the quote id, then each output's ``B_`` hex, as UTF-8."""
    if not isinstance(quote_id, str) or not quote_id:
        raise InvalidInputError("NUT-20: the quote id must be a non-empty string")
    parts = [quote_id]
    for o in outputs:
        parts.append(o.B_ if isinstance(o, BlindedMessage) else o)
    return "".join(parts).encode("utf-8")


def sign_mint_quote(private_key: bytes, quote_id: str,
                    outputs: Sequence[BlindedMessage | str]) -> str:
    """The request's ``signature`` (128 hex) by the quote's key; a fresh nonce each call."""
    return schnorr_sign(private_key, mint_quote_message(quote_id, outputs))


def verify_mint_quote(pubkey: str, quote_id: str, outputs: Sequence[BlindedMessage | str],
                      signature: str) -> bool:
    """Whether ``signature`` is the quote key's over this quote and these outputs.

    ``pubkey`` is the compressed key of the quote request (33 bytes hex; BIP340 uses
    its x coordinate). A malformed key is an :class:`InvalidInputError`; a malformed
    signature simply does not verify.
    """
    parse_pubkey(pubkey, "NUT-20 quote public key")
    if not isinstance(signature, str):
        return False
    return schnorr_verify(pubkey, mint_quote_message(quote_id, outputs), signature)
