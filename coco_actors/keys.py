"""Wallet keys: P2PK (NUT-11) and quote-signing (NUT-20) keys derived from the mnemonic.

P2PK key ``i`` is the BIP32 key at ``m/129373'/10'/0'/0'/i``; the key of NUT-20
quote ``i`` is on a branch of its own, ``m/129373'/20'/0'/0'/i`` (every mint quote
takes one, so on the P2PK branch they would push the keys handed out to be paid
beyond a restored wallet's window). Private keys are never
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
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from bip32 import BIP32

from coco_actors.actors import wait
from coco_actors.crypto.nut11 import (
    P2PK,
    P2PKConditions,
    Pathway,
    SigFlag,
    WellKnownSecret,
    p2pk_conditions,
    parse_secret,
    public_key_of,
    schnorr_sign,
    sig_all_message,
    witness_json,
    x_only,
)
from coco_actors.crypto.nut13 import seed_of
from coco_actors.errors import InvalidInputError, LockedTokenError
from coco_actors.records import now_ms
from coco_actors.wire import BlindedMessage, Proof

if TYPE_CHECKING:
    from coco_actors.proof_ledger import ProofLedgerProxy

__all__ = ["KEY_PATH", "KEY_WINDOW", "QUOTE_KEY_COUNTER", "QUOTE_KEY_PATH", "KeyDeriver",
           "KeyRing", "WalletKey"]

HARDENED = 2**31
#: ``m/129373'/10'/0'/0'``: the account every wallet key is a child of.
KEY_PATH = (129373 + HARDENED, 10 + HARDENED, HARDENED, HARDENED)
#: ``m/129373'/20'/0'/0'``: the account of NUT-20 quote keys (one per mint quote).
QUOTE_KEY_PATH = (129373 + HARDENED, 20 + HARDENED, HARDENED, HARDENED)
#: The ledger counter that hands out quote key indices.
QUOTE_KEY_COUNTER = "nut20-quote-keys"
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

    def __init__(self, mnemonic: str, path: tuple[int, ...] = KEY_PATH) -> None:
        master = BIP32.from_seed(seed_of(mnemonic))
        # the hardened part once: each key is then one unhardened step
        self._account = BIP32.from_xpriv(master.get_xpriv_from_path(list(path)))

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

    def __init__(self, deriver: KeyDeriver, ledger: ProofLedgerProxy,
                 quote_deriver: KeyDeriver) -> None:
        self._deriver = deriver
        self._quote_deriver = quote_deriver
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

    def new_quote_key(self) -> WalletKey:
        """A fresh NUT-20 key for one mint quote (its own branch and counter), its index
        persisted before it is returned; the operation stores index and public key."""
        index = wait(self._ledger.allocate_now(QUOTE_KEY_COUNTER), LEDGER_TIMEOUT,
                     "ProofLedger")
        return WalletKey(index, self._quote_deriver.public(index), now_ms())

    def quote_private_key(self, index: int, public_hex: str) -> bytes | None:
        """The private key of quote key ``index``; None unless it is ``public_hex``'s
        (a record from another mnemonic)."""
        try:
            private = self._quote_deriver.private(index)
            same = x_only(public_key_of(private)) == x_only(public_hex)
        except InvalidInputError:
            return None
        return private if same else None

    def handed_out(self) -> list[WalletKey]:
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

    # --- unlocking locked proofs (NUT-10/11) ------------------------------------------

    def unlock_plan(self, proofs: Sequence[Proof], now: int) -> list[list[bytes] | None]:
        """Per proof: the private keys that unlock it (empty: no signature needed), or
        None for a plain proof. :class:`LockedTokenError` (saying why, never a key) if
        any proof's conditions cannot be met by this wallet at ``now`` (unix s).

        Pure apart from the ledger lookups of :meth:`private_key`: no request.
        """
        secrets = [_well_known(proof.secret) for proof in proofs]
        conds = [None if secret is None else _conditions(secret) for secret in secrets]
        # NUT-11: one SIG_ALL input makes every input share its kind, data and tags
        # (so every one is SIG_ALL too); the mint refuses anything else. Checked before
        # any key lookup, which may record a key found past the window.
        if any(c is not None and c.sigflag == SigFlag.SIG_ALL for c in conds):
            if any(secret is None for secret in secrets):
                raise LockedTokenError(
                    "SIG_ALL proofs mixed with plain ones cannot be spent together")
            if len({(s.kind, s.data, s.tags) for s in secrets if s is not None}) > 1:
                raise LockedTokenError(
                    "SIG_ALL proofs with different conditions cannot be spent together")
        plans: list[list[bytes] | None] = [
            None if cond is None else self._signers(cond, now) for cond in conds]
        return plans

    def sign_inputs(self, proofs: Sequence[Proof], outputs: Sequence[BlindedMessage],
                    now: int) -> tuple[Proof, ...]:
        """``proofs`` with the witnesses a swap into ``outputs`` needs (``SIG_INPUTS``:
        each locked proof signs its own secret; ``SIG_ALL``: the first proof signs every
        input and output). :class:`LockedTokenError` as :meth:`unlock_plan`."""
        plans = self.unlock_plan(proofs, now)
        first = _well_known(proofs[0].secret) if proofs else None
        if first is not None and _conditions(first).sigflag == SigFlag.SIG_ALL:
            message = sig_all_message([(p.secret, p.C) for p in proofs],
                                      [(o.amount, o.B_) for o in outputs]).encode()
            keys = plans[0] or []
            head = replace(proofs[0], witness=witness_json(
                [schnorr_sign(k, message) for k in keys])) if keys else proofs[0]
            return (head, *proofs[1:])
        out = []
        for proof, plan in zip(proofs, plans, strict=True):
            if plan:
                message = proof.secret.encode()
                proof = replace(proof, witness=witness_json(
                    [schnorr_sign(k, message) for k in plan]))
            out.append(proof)
        return tuple(out)

    def _signers(self, cond: P2PKConditions, now: int) -> list[bytes]:
        pathways = cond.pathways(now)
        if Pathway.OPEN in pathways:
            return []
        held_lock = self._held(cond.lock_keys)
        if len(held_lock) >= cond.n_sigs and cond.lock_keys:
            return held_lock[:cond.n_sigs]
        if Pathway.REFUND in pathways:
            held_refund = self._held(cond.refund_keys)
            if len(held_refund) >= cond.n_sigs_refund:
                return held_refund[:cond.n_sigs_refund]
        # say why, from the most useful reason down
        if cond.refund_keys and self._held(cond.refund_keys) and not cond.expired(now):
            raise LockedTokenError(
                f"this wallet holds a refund key, but the locktime ({cond.locktime}) has"
                " not passed yet")
        if held_lock:
            raise LockedTokenError(
                f"the lock needs {cond.n_sigs} signatures; this wallet holds"
                f" {len(held_lock)} of its keys")
        if cond.expired(now) and cond.refund_keys:
            raise LockedTokenError("locked to keys this wallet does not hold, and it holds"
                                   " no refund key")
        raise LockedTokenError("locked to keys this wallet does not hold")

    def _held(self, keys: Sequence[str]) -> list[bytes]:
        return [k for k in (self.private_key(pub) for pub in keys) if k is not None]


def _well_known(secret: str) -> WellKnownSecret | None:
    try:
        return parse_secret(secret)
    except InvalidInputError as exc:
        raise LockedTokenError(f"a proof's spending condition is malformed: {exc}") from None


def _conditions(secret: WellKnownSecret) -> P2PKConditions:
    if secret.kind != P2PK:
        raise LockedTokenError(
            f"a proof carries a {secret.kind[:16]} spending condition this wallet cannot meet")
    try:
        return p2pk_conditions(secret)
    except InvalidInputError as exc:
        raise LockedTokenError(f"a proof's P2PK condition is malformed: {exc}") from None
