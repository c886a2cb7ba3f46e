"""The data directory's disk: read-only, full, or a full LMDB map.

Root ignores ``chmod``, so a read-only directory is a read-only bind mount and a
full disk a tiny tmpfs (both mounted here, unmounted at teardown). Where mounting
is impossible those tests skip with the reason, and the unprivileged-user test
(``setuid`` in a child process) still shows the refusal.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pykka
import pytest
from click.testing import CliRunner

from cli import main
from coco_actors import Coco
from coco_actors.errors import StoreError
from coco_actors.store import MIN_FREE_BYTES, DataDirError, Store, WriteBatch

MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon " \
    "abandon about"


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], check=False, capture_output=True)


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` by its relative path and the hash of its content."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(writable source, the same directory bind-mounted read-only)."""
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    try:
        _mount("--bind", str(src), str(ro))
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot bind-mount in this sandbox ({exc}); see the setuid test")
    try:
        _mount("-o", "remount,ro,bind", str(ro))
    except subprocess.CalledProcessError as exc:
        _umount(ro)
        pytest.skip(f"cannot remount read-only in this sandbox ({exc.stderr.strip()})")
    try:
        yield src, ro
    finally:
        _umount(ro)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """``tmpfs(size)`` mounts a tmpfs of ``size`` bytes; each is unmounted at teardown."""
    mounted: list[Path] = []

    def make(size: int) -> Path:
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        try:
            _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
        except (OSError, subprocess.CalledProcessError) as exc:
            pytest.skip(f"cannot mount a tmpfs in this sandbox ({exc})")
        mounted.append(where)
        return where

    try:
        yield make
    finally:
        for where in reversed(mounted):
            _umount(where)


def _fill(where: Path) -> Path:
    """Write a file until the filesystem is full; the file (remove it to free the space)."""
    filler = where / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    assert os.statvfs(where).f_bavail == 0
    return filler


def _wallet_actors() -> list[pykka.ActorRef[pykka.Actor]]:
    return list(pykka.ActorRegistry.get_all())


# --- read-only -----------------------------------------------------------------------


def test_a_read_only_directory_is_refused_at_open_and_left_as_it_was(
        read_only: tuple[Path, Path]) -> None:
    src, ro = read_only
    coco = Coco.open(src / "w", MNEMONIC, watcher=False)
    coco.close()
    before = _tree(src)
    actors = _wallet_actors()

    for opener in (lambda: Store(ro / "w"), lambda: Coco.open(ro / "w", watcher=False),
                   lambda: Store(ro / "fresh"), lambda: Coco.open(ro / "fresh", MNEMONIC)):
        with pytest.raises(DataDirError, match="cannot be written: Read-only file system"):
            opener()
    assert _tree(src) == before
    assert not (src / "fresh").exists()
    assert _wallet_actors() == actors

    with Coco.open(src / "w", MNEMONIC, watcher=False) as again:  # still good, writable
        assert again.mnemonic == MNEMONIC


def test_coco_init_and_serve_on_a_read_only_directory_print_one_line(
        read_only: tuple[Path, Path]) -> None:
    src, ro = read_only
    Coco.open(src / "w", MNEMONIC, watcher=False).close()
    before = _tree(src)
    runner = CliRunner()
    for args in (["init", "--data-dir", str(ro / "fresh")],
                 ["init", "--data-dir", str(ro / "w")],
                 ["serve", "--data-dir", str(ro / "w")]):
        result = runner.invoke(main, args)
        assert result.exit_code == 1, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, (args, result.output)
        assert "cannot be written: Read-only file system" in lines[0], (args, lines)
        assert "Traceback" not in result.output
    assert _tree(src) == before


def _as_nobody(paths: list[Path]) -> list[str]:
    """In a forked child that dropped to uid/gid 65534: open a Store at each path;
    per path, "refused: <message>" or "opened" (read back through a pipe)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no threads of its own, only Store; always _exit
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            lines = []
            for path in paths:
                try:
                    Store(path).close()
                    lines.append("opened")
                except DataDirError as exc:
                    lines.append(f"refused: {exc}")
            os.write(w, "\n".join(lines).encode())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(w, f"child failed: {type(exc).__name__}: {exc}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    return out.splitlines()


def _unprivileged(paths: list[Path]) -> list[str]:
    """Like :func:`_as_nobody`, in this process when it is not root (chmod holds then)."""
    if os.geteuid() == 0:
        return _as_nobody(paths)
    lines = []
    for path in paths:
        try:
            Store(path).close()
            lines.append("opened")
        except DataDirError as exc:
            lines.append(f"refused: {exc}")
    return lines


def test_an_unprivileged_user_gets_the_same_typed_error() -> None:
    base = Path(tempfile.mkdtemp(prefix="coco-setuid-"))
    try:
        base.chmod(0o755)
        owned = base / "owned"
        Coco.open(owned, MNEMONIC, watcher=False).close()  # our wallet, 0700
        locked = base / "locked"
        locked.mkdir(mode=0o555)
        before = _tree(owned)
        if os.geteuid() != 0:  # the wallet's own user: make its files unwritable instead
            for p in (owned, owned / "wallet.lmdb"):
                p.chmod(0o500)
            for p in (owned / "coco.lock", *(owned / "wallet.lmdb").iterdir()):
                p.chmod(0o400)
        lines = _unprivileged([owned, locked / "w"])
        assert len(lines) == 2, lines
        assert all(line.startswith("refused: ") and "Permission denied" in line
                   for line in lines), lines
        assert _tree(owned) == before
        assert not (locked / "w").exists()
    finally:
        for p in (base, *base.rglob("*")):
            if not p.is_symlink():
                p.chmod(0o700)
        shutil.rmtree(base)


# --- no space ------------------------------------------------------------------------


def test_a_nearly_full_disk_is_refused_before_anything_is_created(
        tmpfs: Callable[[int], Path]) -> None:
    small = tmpfs(MIN_FREE_BYTES // 2)
    with pytest.raises(DataDirError, match="no space left"):
        Store(small / "w")
    with pytest.raises(DataDirError, match="no space left"):
        Coco.open(small / "w", MNEMONIC)
    assert list(small.iterdir()) == []


def test_a_full_disk_refuses_writes_typed_and_keeps_what_was_committed(
        tmpfs: Callable[[int], Path]) -> None:
    where = tmpfs(4 * MIN_FREE_BYTES)
    store = Store(where / "w")
    try:
        store.transact(lambda b: b.put_setting("kept", "yes"))
        filler = _fill(where)
        with pytest.raises(DataDirError, match="cannot be written"):
            store.transact(lambda b: b.put_setting("big", "x" * (256 << 10)))
        assert store.get_setting("kept") == "yes"
        assert store.get_setting("big") is None
    finally:
        store.close()

    with pytest.raises(DataDirError, match="no space left"):  # full: refused at open
        Store(where / "w")
    filler.unlink()
    with Coco.open(where / "w", MNEMONIC, watcher=False) as coco:  # space again: it opens
        assert coco.mnemonic == MNEMONIC
    again = Store(where / "w")
    try:
        assert again.get_setting("kept") == "yes"
        assert again.get_setting("big") is None
    finally:
        again.close()


# --- a full map ----------------------------------------------------------------------


def test_a_full_map_is_grown_between_transactions(tmp_path: Path) -> None:
    store = Store(tmp_path, map_size=64 << 10)
    try:
        start = store.env.info()["map_size"]
        value = "v" * 2000
        def write(b: WriteBatch) -> None:
            for i in range(200):
                b.put_setting(f"k{i:04}", value)

        store.transact(write)
        assert store.env.info()["map_size"] > start
        assert all(store.get_setting(f"k{i:04}") == value for i in range(200))
    finally:
        store.close()
    reopened = Store(tmp_path, map_size=64 << 10)  # a small map_size over a bigger file
    try:
        assert reopened.get_setting("k0199") == value
    finally:
        reopened.close()


def test_growing_the_map_waits_for_readers_on_other_threads(tmp_path: Path) -> None:
    store = Store(tmp_path, map_size=64 << 10)
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = threading.Semaphore(0)

    def reader() -> None:
        try:
            while not stop.is_set():
                store.get_setting("k0000")
                store.history()
                reads.release()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=reader, name=f"reader-{i}") for i in range(3)]
    try:
        for t in threads:
            t.start()
        assert reads.acquire(timeout=10)  # the readers are running
        value = "v" * 1500
        for n in range(6):
            def write(b: WriteBatch, n: int = n) -> None:
                for i in range(100):
                    b.put_setting(f"k{n}{i:03}", value)

            store.transact(write)
        assert store.env.info()["map_size"] > 64 << 10
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        store.close()
    assert not errors
    assert not any(t.is_alive() for t in threads)


def test_a_store_file_that_is_not_lmdb_is_a_store_error_not_a_disk_error(
        tmp_path: Path) -> None:
    env_dir = tmp_path / "w" / "wallet.lmdb"
    env_dir.mkdir(parents=True)
    garbage = b"not an lmdb file " * 4096
    (env_dir / "data.mdb").write_bytes(garbage)
    with pytest.raises(StoreError, match="cannot open") as refused:
        Store(tmp_path / "w")
    assert not isinstance(refused.value, DataDirError)
    assert (env_dir / "data.mdb").read_bytes() == garbage
    with pytest.raises(StoreError):  # the lock was released: the same answer again
        Coco.open(tmp_path / "w", MNEMONIC)
