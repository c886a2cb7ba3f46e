"""LMDB storage: one environment per data directory, one named database per record kind.

Only the ProofLedger actor writes (see :mod:`coco_actors.proof_ledger`); every
saga transition is one write transaction, committed (and fsynced: ``sync`` and
``metasync`` stay on) before the side effect it announces. Reads may happen
from any thread, in short read transactions that never span a network call.

Keys are fixed-width big-endian where order matters (history), so range scans
sort correctly. Values are records encoded by :mod:`coco_actors.codec`: JSON
keyed by attribute names, with a schema version checked on every read (a
record this release cannot read is a :class:`~coco_actors.errors.StoreError`).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import lmdb

from coco_actors.codec import decode_record, encode_record
from coco_actors.errors import CocoError
from coco_actors.records import HistoryEntry, MintRecord, Operation, ProofRecord
from coco_actors.wire import Keyset

log = logging.getLogger(__name__)

T = TypeVar("T")

DB_NAMES = ("settings", "mints", "keysets", "proofs", "counters", "operations", "history")
INITIAL_MAP_SIZE = 1 << 30  # 1 GiB of address space; grown on MapFullError
LOCK_FILE = "coco.lock"


class WalletLockedError(CocoError):
    """Another process (or another ``Coco`` in this one) has this data directory open."""


def _history_key(op: Operation | HistoryEntry) -> bytes:
    op_id = op.id if isinstance(op, Operation) else op.operation_id
    return op.created_at.to_bytes(8, "big") + op_id.encode()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the ledger keeps in memory, read at startup in one read transaction."""

    proofs: list[ProofRecord]
    counters: dict[str, int]
    operations: list[Operation]
    mints: list[MintRecord]
    keysets: dict[str, list[Keyset]]


class WriteBatch:
    """The writes of one transaction; only valid inside :meth:`Store.transact`."""

    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, Any]) -> None:
        self._txn = txn
        self._dbs = dbs

    def put_setting(self, key: str, value: str) -> None:
        self._txn.put(key.encode(), value.encode(), db=self._dbs["settings"])

    def put_proof(self, rec: ProofRecord) -> None:
        self._txn.put(bytes.fromhex(rec.Y), encode_record(rec), db=self._dbs["proofs"])

    def delete_proof(self, y: str) -> None:
        self._txn.delete(bytes.fromhex(y), db=self._dbs["proofs"])

    def put_counter(self, keyset_id: str, next_value: int) -> None:
        self._txn.put(keyset_id.encode(), next_value.to_bytes(8, "big"),
                      db=self._dbs["counters"])

    def put_operation(self, op: Operation) -> None:
        self._txn.put(op.id.encode(), encode_record(op), db=self._dbs["operations"])
        self._txn.put(_history_key(op), encode_record(HistoryEntry.of(op)),
                      db=self._dbs["history"])

    def delete_operation(self, op: Operation) -> None:
        self._txn.delete(op.id.encode(), db=self._dbs["operations"])
        self._txn.delete(_history_key(op), db=self._dbs["history"])

    def put_mint(self, rec: MintRecord) -> None:
        self._txn.put(rec.url.encode(), encode_record(rec), db=self._dbs["mints"])

    def put_keyset(self, mint_url: str, ks: Keyset) -> None:
        self._txn.put(f"{mint_url}\x00{ks.id}".encode(), encode_record(ks),
                      db=self._dbs["keysets"])


class Store:
    """The LMDB environment of one data directory, locked against a second opener."""

    def __init__(self, data_dir: Path | str, *, map_size: int = INITIAL_MAP_SIZE) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_file = self._acquire_lock()
        try:
            # py-lmdb creates the environment directory with ``mode`` (no search bit
            # with 0600), so make the directory ourselves: 0700 for it, 0600 for files
            env_dir = self.data_dir / "wallet.lmdb"
            env_dir.mkdir(mode=0o700, exist_ok=True)
            env_dir.chmod(0o700)
            self.env = lmdb.open(str(env_dir), subdir=True,
                                 map_size=map_size, max_dbs=len(DB_NAMES) + 2, sync=True,
                                 metasync=True, lock=True, mode=0o600)
            with self.env.begin(write=True) as txn:
                self._dbs = {name: self.env.open_db(name.encode(), txn=txn)
                             for name in DB_NAMES}
        except Exception:
            self._release_lock()
            raise
        self._closed = False

    def _acquire_lock(self) -> IO[str]:
        f = open(self.data_dir / LOCK_FILE, "a+")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise WalletLockedError(
                f"data directory {self.data_dir} is in use by another wallet process") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        return f

    def _release_lock(self) -> None:
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
        finally:
            self._lock_file.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.env.close()
        self._release_lock()

    # --- writes ---------------------------------------------------------------------

    def transact(self, fn: Callable[[WriteBatch], T]) -> T:
        """Run ``fn`` in one write transaction, committed (durably) before returning.

        If the map is full, the transaction is aborted, the map grown, and ``fn``
        run again: ``fn`` must only write through the batch.
        """
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    return fn(WriteBatch(txn, self._dbs))
            except lmdb.MapFullError:
                new_size = self.env.info()["map_size"] * 2
                log.warning("LMDB map full; growing to %d MiB", new_size >> 20)
                self.env.set_mapsize(new_size)

    # --- reads ----------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        with self.env.begin(db=self._dbs["settings"]) as txn:
            v = txn.get(key.encode())
        return v.decode() if v is not None else None

    def get_operation(self, op_id: str) -> Operation | None:
        with self.env.begin(db=self._dbs["operations"]) as txn:
            v = txn.get(op_id.encode())
        return decode_record(v, Operation) if v is not None else None

    def history(self, limit: int | None = None) -> list[HistoryEntry]:
        """Newest first."""
        out: list[HistoryEntry] = []
        with self.env.begin(db=self._dbs["history"]) as txn:
            cursor = txn.cursor()
            if not cursor.last():
                return out
            for _, value in cursor.iterprev():
                out.append(decode_record(value, HistoryEntry))
                if limit is not None and len(out) >= limit:
                    break
        return out

    def snapshot(self) -> Snapshot:
        with self.env.begin() as txn:
            def items(name: str) -> Iterator[tuple[bytes, bytes]]:
                yield from txn.cursor(db=self._dbs[name])

            proofs = [decode_record(v, ProofRecord) for _, v in items("proofs")]
            counters = {k.decode(): int.from_bytes(v, "big") for k, v in items("counters")}
            operations = [decode_record(v, Operation) for _, v in items("operations")]
            mints = [decode_record(v, MintRecord) for _, v in items("mints")]
            keysets: dict[str, list[Keyset]] = {}
            for k, v in items("keysets"):
                mint_url = k.decode().split("\x00", 1)[0]
                keysets.setdefault(mint_url, []).append(decode_record(v, Keyset))
        return Snapshot(proofs, counters, operations, mints, keysets)
