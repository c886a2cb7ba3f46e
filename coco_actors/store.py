"""LMDB storage: one environment per data directory, one named database per record kind.

Only the ProofLedger actor writes (see :mod:`coco_actors.proof_ledger`); every
saga transition is one write transaction, committed (and fsynced: ``sync`` and
``metasync`` stay on) before the side effect it announces. Reads may happen
from any thread, in short read transactions that never span a network call.

Keys are fixed-width big-endian where order matters (history, events by ``seq``), so range scans
sort correctly. Values are records encoded by :mod:`coco_actors.codec`: JSON
keyed by attribute names, with a schema version checked on every read (a
record this release cannot read is a :class:`~coco_actors.errors.StoreError`).

Disk trouble is refused at open, before LMDB maps anything: a directory that
cannot be written (read-only mount, no permission) or that has less than
:data:`MIN_FREE_BYTES` free is a :class:`DataDirError` and nothing in it is
touched (LMDB would otherwise die of SIGBUS on a full tmpfs, touching lock-file
pages it cannot allocate; the lock file's pages are allocated at open for that
reason). A write that later meets a full disk aborts its transaction (nothing is
half-written) and is a :class:`DataDirError` too. A full *map* is not a full disk:
the map is grown between transactions and the write run again.

At startup, the ledger's :meth:`Store.snapshot` skips a record it cannot decode (logged with
its kind and key, never its value) and counts it in ``Snapshot.unreadable``; the
record stays on disk untouched, for a later release or a person to read.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import lmdb

from coco_actors.codec import decode_record, encode_record
from coco_actors.errors import CocoError, StoreError
from coco_actors.keys import WalletKey
from coco_actors.records import (
    EventRecord,
    HistoryEntry,
    IdempotencyRecord,
    MintRecord,
    Operation,
    PaymentAttempt,
    ProofRecord,
    RequestRecord,
    WebhookRecord,
)
from coco_actors.wire import Keyset

log = logging.getLogger(__name__)

T = TypeVar("T")

DB_NAMES = ("settings", "mints", "keysets", "proofs", "counters", "operations", "history",
            "keys", "requests", "attempts", "idem", "events", "webhooks",
            "webhook_cursors")
INITIAL_MAP_SIZE = 1 << 30  # 1 GiB of address space; grown on MapFullError
#: The map never grows past this (address space, not disk: 64-bit only).
MAX_MAP_SIZE = 1 << 40
#: Below this much free space in the data directory, open refuses (no space).
MIN_FREE_BYTES = 1 << 20
LOCK_FILE = "coco.lock"


class WalletLockedError(CocoError):
    """Another process (or another ``Coco`` in this one) has this data directory open."""


class DataDirError(CocoError):
    """The data directory cannot be written (read-only, no permission, no space).

    At open nothing was changed; during a write the transaction was aborted.
    """


#: LMDB's words for files that are not (or no longer) an environment it can read:
#: the directory is writable, its content is the problem.
_UNREADABLE_ENV = (lmdb.CorruptedError, lmdb.InvalidError, lmdb.VersionMismatchError,
                   lmdb.IncompatibleError, lmdb.PageNotFoundError, lmdb.BadChecksumError)


def _disk_error(data_dir: Path, exc: BaseException) -> CocoError:
    """One clear line for a disk failure; the OS's words, never a record's content."""
    if isinstance(exc, _UNREADABLE_ENV):
        return StoreError(f"data directory {data_dir} holds a store this release cannot"
                          f" open: {exc}")
    reason = (exc.strerror if isinstance(exc, OSError) and exc.strerror
              else str(exc) or type(exc).__name__)
    return DataDirError(f"data directory {data_dir} cannot be written: {reason}")


def _history_key(op: Operation | HistoryEntry) -> bytes:
    op_id = op.id if isinstance(op, Operation) else op.operation_id
    return op.created_at.to_bytes(8, "big") + op_id.encode()


def _seq_key(seq: int) -> bytes:
    return seq.to_bytes(8, "big")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the ledger keeps in memory, read at startup in one read transaction."""

    proofs: list[ProofRecord]
    counters: dict[str, int]
    operations: list[Operation]
    mints: list[MintRecord]
    keysets: dict[str, list[Keyset]]
    #: per record kind (database name), how many records could not be decoded
    unreadable: dict[str, int] = field(default_factory=dict)
    #: wallet keys handed out (public part and index only), by index
    keys: list[WalletKey] = field(default_factory=list)


class _ReadGate:
    """Read transactions (any thread) against a map resize (the writer's thread).

    LMDB must not be remapped while a transaction is open in this process, so a
    resize waits for the readers in flight and holds new ones back.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._resizing = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def resizing(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


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
        if op.parent_id is None:  # a transfer's leg: its transfer's entry stands for it
            self._txn.put(_history_key(op), encode_record(HistoryEntry.of(op)),
                          db=self._dbs["history"])

    def delete_operation(self, op: Operation) -> None:
        self._txn.delete(op.id.encode(), db=self._dbs["operations"])
        self._txn.delete(_history_key(op), db=self._dbs["history"])

    def put_key(self, key: WalletKey) -> None:
        """Insert-once: an index handed out is never rewritten."""
        self._txn.put(key.index.to_bytes(4, "big"), encode_record(key), db=self._dbs["keys"],
                      overwrite=False)

    def put_request(self, rec: RequestRecord) -> None:
        self._txn.put(rec.id.encode(), encode_record(rec), db=self._dbs["requests"])

    def put_attempt(self, rec: PaymentAttempt) -> None:
        self._txn.put(rec.key.encode(), encode_record(rec), db=self._dbs["attempts"])

    def delete_attempt(self, key: str) -> None:
        self._txn.delete(key.encode(), db=self._dbs["attempts"])

    def put_idempotency(self, rec: IdempotencyRecord) -> None:
        self._txn.put(rec.key.encode(), encode_record(rec), db=self._dbs["idem"])

    def delete_idempotency(self, key: str) -> None:
        self._txn.delete(key.encode(), db=self._dbs["idem"])

    def put_webhook(self, rec: WebhookRecord) -> None:
        self._txn.put(rec.id.encode(), encode_record(rec), db=self._dbs["webhooks"])

    def delete_webhook(self, webhook_id: str) -> None:
        """The webhook's record and its cursor."""
        self._txn.delete(webhook_id.encode(), db=self._dbs["webhooks"])
        self._txn.delete(webhook_id.encode(), db=self._dbs["webhook_cursors"])

    def put_webhook_cursor(self, webhook_id: str, seq: int) -> None:
        """The last event seq delivered to the webhook (a configured one has no record)."""
        self._txn.put(webhook_id.encode(), seq.to_bytes(8, "big"),
                      db=self._dbs["webhook_cursors"])

    def put_event(self, rec: EventRecord) -> None:
        """Insert-once: a seq is never rewritten (a second write of one is a bug)."""
        if not self._txn.put(_seq_key(rec.seq), encode_record(rec), db=self._dbs["events"],
                             overwrite=False):
            raise StoreError(f"event seq {rec.seq} is stored already")

    def prune_events(self, before_ms: int) -> int:
        """Delete the oldest events committed before ``before_ms``, never the newest one
        (the next seq follows it); how many went. Stops at the first younger one."""
        cursor = self._txn.cursor(db=self._dbs["events"])
        if not cursor.last():
            return 0
        newest = bytes(cursor.key())
        pruned = 0
        cursor.first()
        while (key := bytes(cursor.key())) != newest:
            rec = _decode_or_skip("events", key, bytes(cursor.value()), EventRecord)
            if rec is None:  # left on disk, as every unreadable record
                cursor.next()
                continue
            if rec.time >= before_ms:
                break
            cursor.delete()  # moves to the next record
            pruned += 1
        return pruned

    def put_mint(self, rec: MintRecord) -> None:
        self._txn.put(rec.url.encode(), encode_record(rec), db=self._dbs["mints"])

    def put_keyset(self, mint_url: str, ks: Keyset) -> None:
        self._txn.put(f"{mint_url}\x00{ks.id}".encode(), encode_record(ks),
                      db=self._dbs["keysets"])


class Store:
    """The LMDB environment of one data directory, locked against a second opener."""

    def __init__(self, data_dir: Path | str, *, map_size: int = INITIAL_MAP_SIZE) -> None:
        self.data_dir = Path(data_dir)
        self._gate = _ReadGate()
        try:
            self._check_free_space()  # before anything is created
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock_file = self._acquire_lock()
        except OSError as exc:
            raise _disk_error(self.data_dir, exc) from None
        try:
            # py-lmdb creates the environment directory with ``mode`` (no search bit
            # with 0600), so make the directory ourselves: 0700 for it, 0600 for files
            env_dir = self.data_dir / "wallet.lmdb"
            env_dir.mkdir(mode=0o700, exist_ok=True)
            env_dir.chmod(0o700)
            self.env = lmdb.open(str(env_dir), subdir=True,
                                 map_size=map_size, max_dbs=len(DB_NAMES) + 2, sync=True,
                                 metasync=True, lock=True, mode=0o600)
            try:
                _allocate(env_dir / "lock.mdb")
                with self.env.begin(write=True) as txn:
                    self._dbs = {name: self.env.open_db(name.encode(), txn=txn)
                                 for name in DB_NAMES}
            except BaseException:
                self.env.close()
                raise
        except (OSError, lmdb.Error) as exc:
            self._release_lock()
            raise _disk_error(self.data_dir, exc) from None
        except BaseException:
            self._release_lock()
            raise
        self._closed = False

    def _check_free_space(self) -> None:
        existing = self.data_dir.absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        st = os.statvfs(existing)
        free = st.f_bavail * st.f_frsize
        if free < MIN_FREE_BYTES:
            raise DataDirError(
                f"data directory {self.data_dir} cannot be written: no space left"
                f" ({free >> 10} KiB free, at least {MIN_FREE_BYTES >> 10} KiB needed)")

    def _acquire_lock(self) -> IO[str]:
        f = open(self.data_dir / LOCK_FILE, "a+")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise WalletLockedError(
                f"data directory {self.data_dir} is in use by another wallet process") from None
        try:
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
        except BaseException:
            f.close()
            raise
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

        If the map is full, the transaction is aborted, the map grown (doubled, no
        transaction open) and ``fn`` run again: ``fn`` must only write through the
        batch. A disk that refuses the write aborts the transaction and raises
        :class:`DataDirError`. Runs on the writer's thread (the ProofLedger's).
        """
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    return fn(WriteBatch(txn, self._dbs))
            except lmdb.MapFullError:
                self._grow_map()
            except lmdb.Error as exc:
                raise _disk_error(self.data_dir, exc) from None

    def _grow_map(self) -> None:
        size = self.env.info()["map_size"]
        if size >= MAX_MAP_SIZE:
            raise DataDirError(f"data directory {self.data_dir}: the store reached"
                               f" {MAX_MAP_SIZE >> 30} GiB, the largest map allowed")
        new_size = min(size * 2, MAX_MAP_SIZE)
        log.warning("LMDB map full at %d KiB; growing to %d KiB", size >> 10, new_size >> 10)
        with self._gate.resizing():
            try:
                self.env.set_mapsize(new_size)
            except lmdb.Error as exc:
                raise _disk_error(self.data_dir, exc) from None

    # --- reads ----------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        with self._gate.reading(), self.env.begin(db=self._dbs["settings"]) as txn:
            v = txn.get(key.encode())
        return v.decode() if v is not None else None

    def get_operation(self, op_id: str) -> Operation | None:
        with self._gate.reading(), self.env.begin(db=self._dbs["operations"]) as txn:
            v = txn.get(op_id.encode())
        return decode_record(v, Operation) if v is not None else None

    def payment_records(self) -> tuple[list[RequestRecord], list[PaymentAttempt]]:
        """Every payment request and attempt (the ledger's startup); an unreadable one is
        logged and left on disk."""
        with self._gate.reading(), self.env.begin() as txn:
            reqs = [_decode_or_skip("requests", k, v, RequestRecord)
                    for k, v in txn.cursor(db=self._dbs["requests"])]
            atts = [_decode_or_skip("attempts", k, v, PaymentAttempt)
                    for k, v in txn.cursor(db=self._dbs["attempts"])]
        return [r for r in reqs if r is not None], [a for a in atts if a is not None]

    def idempotency_records(self) -> list[IdempotencyRecord]:
        """Every idempotency key kept (the ledger's startup); an unreadable one is logged
        and left on disk."""
        with self._gate.reading(), self.env.begin(db=self._dbs["idem"]) as txn:
            recs = [_decode_or_skip("idem", k, v, IdempotencyRecord) for k, v in txn.cursor()]
        return [r for r in recs if r is not None]

    def webhooks(self) -> list[WebhookRecord]:
        """The webhooks added through the API; an unreadable one is logged and left out."""
        with self._gate.reading(), self.env.begin(db=self._dbs["webhooks"]) as txn:
            recs = [_decode_or_skip("webhooks", k, v, WebhookRecord) for k, v in txn.cursor()]
        return [r for r in recs if r is not None]

    def webhook_cursor(self, webhook_id: str) -> int | None:
        """The last event seq delivered to the webhook; None before its first."""
        with self._gate.reading(), self.env.begin(db=self._dbs["webhook_cursors"]) as txn:
            v = txn.get(webhook_id.encode())
        return int.from_bytes(v, "big") if v is not None else None

    def events_since(self, after: int, limit: int) -> list[EventRecord]:
        """At most ``limit`` events with ``seq > after``, oldest first; an unreadable one
        is logged and left out."""
        out: list[EventRecord] = []
        with self._gate.reading(), self.env.begin(db=self._dbs["events"]) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(_seq_key(after + 1)):
                return out
            for key, value in cursor:
                rec = _decode_or_skip("events", key, value, EventRecord)
                if rec is not None:
                    out.append(rec)
                if len(out) >= limit:
                    break
        return out

    def event_seqs(self) -> tuple[int, int]:
        """The oldest and the newest stored event's seq; (0, 0) when there is none."""
        with self._gate.reading(), self.env.begin(db=self._dbs["events"]) as txn:
            cursor = txn.cursor()
            if not cursor.first():
                return 0, 0
            oldest = int.from_bytes(cursor.key(), "big")
            cursor.last()
            return oldest, int.from_bytes(cursor.key(), "big")

    def history(self, limit: int | None = None) -> list[HistoryEntry]:
        """Newest first; an entry that cannot be decoded is logged and left out."""
        out: list[HistoryEntry] = []
        with self._gate.reading(), self.env.begin(db=self._dbs["history"]) as txn:
            cursor = txn.cursor()
            if not cursor.last():
                return out
            for key, value in cursor.iterprev():
                entry = _decode_or_skip("history", key, value, HistoryEntry)
                if entry is not None:
                    out.append(entry)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def history_page(self, limit: int | None, before: bytes | None,
                     keep: Callable[[HistoryEntry], bool]
                     ) -> tuple[list[HistoryEntry], bytes | None]:
        """Newest first, the entries ``keep`` takes, at most ``limit``; only those whose
        key sorts before ``before`` (the key the page before ended on), so entries added
        meanwhile (newer keys) never shift a later page. With them, the last entry's key
        when another kept entry follows (else None); an unreadable entry is left out."""
        out: list[HistoryEntry] = []
        last = b""
        with self._gate.reading(), self.env.begin(db=self._dbs["history"]) as txn:
            cursor = txn.cursor()
            if before is None:
                found = cursor.last()
            elif cursor.set_range(before):  # the first key at or after it: step back
                found = cursor.prev()
            else:  # every key sorts before it
                found = cursor.last()
            while found:
                key, value = cursor.item()
                entry = _decode_or_skip("history", key, value, HistoryEntry)
                if entry is not None and keep(entry):
                    if limit is not None and len(out) >= limit:
                        return out, last
                    out.append(entry)
                    last = key
                found = cursor.prev()
        return out, None

    def snapshot(self, *, skip_unreadable: bool = False) -> Snapshot:
        """Every record, in one read transaction.

        A record that cannot be decoded raises :class:`StoreError` (or
        :class:`SchemaVersionError`), unless ``skip_unreadable``: then it is logged,
        left on disk and counted in ``Snapshot.unreadable`` (the ledger's startup).
        """
        unreadable: dict[str, int] = {}

        with self._gate.reading(), self.env.begin() as txn:
            def records(name: str, cls: type[T]) -> Iterator[tuple[bytes, T]]:
                for k, v in txn.cursor(db=self._dbs[name]):
                    if not skip_unreadable:
                        yield k, decode_record(v, cls)
                        continue
                    rec = _decode_or_skip(name, k, v, cls)
                    if rec is None:
                        unreadable[name] = unreadable.get(name, 0) + 1
                    else:
                        yield k, rec

            proofs = [rec for _, rec in records("proofs", ProofRecord)]
            counters = {k.decode(): int.from_bytes(v, "big")
                        for k, v in txn.cursor(db=self._dbs["counters"])}
            operations = [rec for _, rec in records("operations", Operation)]
            mints = [rec for _, rec in records("mints", MintRecord)]
            keysets: dict[str, list[Keyset]] = {}
            for k, ks in records("keysets", Keyset):
                mint_url = k.decode(errors="replace").split("\x00", 1)[0]
                keysets.setdefault(mint_url, []).append(ks)
            keys = [rec for _, rec in records("keys", WalletKey)]
        return Snapshot(proofs, counters, operations, mints, keysets, unreadable, keys)


def _decode_or_skip(kind: str, key: bytes, raw: bytes, cls: type[T]) -> T | None:
    """The record, or None (logged: kind, key and why; never the value, it may be a secret)."""
    try:
        return decode_record(raw, cls)
    except (StoreError, ValueError, TypeError) as exc:
        shown = key.hex() if kind == "proofs" else key.decode(errors="replace")
        log.error("skipping unreadable %s record %.80s: %s", kind, shown, exc)
        return None


def _allocate(path: Path) -> None:
    """Give the file real blocks now, so touching its mapped pages later cannot SIGBUS."""
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if size:
            os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise  # ENOSPC above all; a filesystem without fallocate is left as it is
    finally:
        os.close(fd)
