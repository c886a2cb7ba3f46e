"""Wallet keys: P2PK (NUT-11) and quote-signing (NUT-20) keys derived from the mnemonic.

Key ``i`` is the BIP32 key at ``m/129373'/10'/0'/0'/i``. Private keys are never
stored: only the index, the public key and when it was handed out, written by
the ProofLedger (the single writer) in one commit before :meth:`KeyRing.new_key`
returns. A wallet restored from its mnemonic into a fresh data directory knows
none of its keys: :meth:`KeyRing.private_key` looks :data:`KEY_WINDOW` indices
past the highest one known, and a key found there is recorded, which moves the
window on.

:class:`KeyRing` is called from any thread (operation actors, the facade); it
asks the ledger, never the network, and never runs on the ledger's thread
itself (the ledger only calls back the pure :meth:`KeyDeriver.public`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bip32 import BIP32
from mnemonic import Mnemonic

from coco_actors.actors import wait
from coco_actors.crypto.nut11 import public_key_of, x_only
from coco_actors.errors import InvalidInputError

if TYPE_CHECKING:
    from coco_actors.proof_ledger import ProofLedgerProxy

__all__ = ["KEY_PATH", "KEY_WINDOW", "KeyDeriver", "KeyRing", "WalletKey"]

HARDENED = 2**31
#: ``m/129373'/10'/0'/0'``: the account every wallet key is a child of.
KEY_PATH = (129373 + HARDENED, 10 + HARDENED, HARDENED, HARDENED)
#: How far past the highest known index a lookup derives (a restored wallet).
KEY_WINDOW = 100
#: How long a key call waits for the ledger (a local, durable write).
LEDGER_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class WalletKey:
    """One handed-out key: its derivation index and public key (compressed hex).

    ``created_at`` is unix milliseconds (when it was handed out, or found again
    after a restore). Holds nothing secret.
    """

    index: int
    public: str
    created_at: int


class KeyDeriver:
    """Derives wallet key ``i`` from one mnemonic; no IO, callable from any thread.

    Holds key material: its repr says nothing about it, and it keeps no copy of
    the mnemonic words.
    """

    __slots__ = ("_account",)

    def __init__(self, mnemonic: str) -> None:
        words = " ".join(mnemonic.split()) if isinstance(mnemonic, str) else ""
        try:
            valid = Mnemonic("english").check(words)
        except (ValueError, LookupError):
            valid = False
        if not valid:
            raise InvalidInputError("not a valid BIP39 english mnemonic")
        master = BIP32.from_seed(Mnemonic.to_seed(words))
        # the hardened part once: each key is then one unhardened step
        self._account = BIP32.from_xpriv(master.get_xpriv_from_path(list(KEY_PATH)))

    def __repr__(self) -> str:
        return "KeyDeriver(<secret>)"

    def private(self, index: int) -> bytes:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < HARDENED:
            raise InvalidInputError(f"a key index is an integer in [0, 2^31), got {index!r}")
        key: bytes = self._account.get_privkey_from_path([index])
        return key

    def public(self, index: int) -> str:
        return public_key_of(self.private(index))


class KeyRing:
    """The wallet's keys, as operation actors reach them (``deps.keys``).

    Thread-safe: a lock guards the cache of derived public keys (x coordinate ->
    index); allocation itself is a check-and-set in the ledger's mailbox.
    """

    def __init__(self, deriver: KeyDeriver, ledger: ProofLedgerProxy) -> None:
        self._deriver = deriver
        self._ledger = ledger
        self._lock = threading.Lock()
        self._index_of: dict[str, int] = {}   # x-only public key -> index, derived so far
        self._derived = 0                     # indices [0, _derived) are in _index_of

    def __repr__(self) -> str:
        return "KeyRing(<secret>)"

    def new_key(self) -> WalletKey:
        """A key never handed out before, persisted before it is returned."""
        key = wait(self._ledger.allocate_key(self._deriver.public), LEDGER_TIMEOUT,
                   "ProofLedger")
        with self._lock:
            self._index_of[x_only(key.public)] = key.index
        return key

    def list(self) -> list[WalletKey]:
        """Every key handed out (or found in use after a restore), by index."""
        return wait(self._ledger.wallet_keys(), LEDGER_TIMEOUT, "ProofLedger")

    def private_key(self, public_hex: str) -> bytes | None:
        """Our private key for ``public_hex`` (parity ignored, as NUT-11 compares keys),
        or None when it is not one of ours within the window.

        A key found past the highest index known is recorded, so the window moves
        on and :meth:`new_key` never hands it out again.
        """
        try:
            x = x_only(public_hex)
        except InvalidInputError:
            return None
        index = self._lookup(x)
        if index is None:
            return None
        known = wait(self._ledger.next_key_index(), LEDGER_TIMEOUT, "ProofLedger")
        if index >= known:
            wait(self._ledger.note_key(index, self._deriver.public(index)), LEDGER_TIMEOUT,
                 "ProofLedger")
        return self._deriver.private(index)

    def public_key(self, index: int) -> str:
        """The public key of index ``index`` (derived; says nothing about allocation)."""
        return self._deriver.public(index)

    def _lookup(self, x: str) -> int | None:
        with self._lock:
            found = self._index_of.get(x)
        if found is not None:
            return found
        end = wait(self._ledger.next_key_index(), LEDGER_TIMEOUT, "ProofLedger") + KEY_WINDOW
        with self._lock:
            while self._derived < end:
                i = self._derived
                self._index_of[x_only(self._deriver.public(i))] = i
                self._derived += 1
            return self._index_of.get(x)
