"""Full disks and read-only file systems (issue 27): a typed `StorageError` naming the path, and
nothing left behind. On a real 256 KB tmpfs where the machine lets the tests mount one (root, as in
CI here); the same paths with the operating system's error injected everywhere else."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from xcorr_core.errors import StorageError
from xcorr_core.fileio import atomic_write, make_dir, storage_error
from xcorr_core.index import GalleryIndex
from xcorr_core.shards import ShardedStoreWriter
from xcorr_core.store import SpatialStore


def _mount(path: Path, options: str) -> bool:
    if not shutil.which("mount") or os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode == 0


def _mounted(tmp_path: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted with ``options`` for one test (skipped where mounting is not allowed)."""
    mnt = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
    if not _mount(mnt, options):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KB tmpfs."""
    yield from _mounted(tmp_path, "size=256k")


@pytest.fixture
def read_only_fs(tmp_path: Path) -> Iterator[Path]:
    yield from _mounted(tmp_path, "ro,size=64k")


def _left(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _index(n: int = 3000, d: int = 32) -> GalleryIndex:
    g = torch.Generator().manual_seed(0)
    return GalleryIndex.build(torch.randn(n, d, generator=g), torch.arange(n) % 5)


def test_store_larger_than_the_disk_is_refused_before_writing(tiny_fs: Path) -> None:
    with pytest.raises(StorageError, match=r"needs [\d,]+ bytes.*has [\d,]+ free"):
        ShardedStoreWriter(tiny_fs / "store", 64, (64, 8, 8), dtype="float32", shard_rows=16)
    assert _left(tiny_fs) == []


def test_disk_filled_by_someone_else_mid_build(tiny_fs: Path) -> None:
    w = ShardedStoreWriter(tiny_fs / "store", 16, (16, 4, 4), dtype="float32", shard_rows=4)  # 16 KB: fits
    w.write(0, torch.rand(4, 16, 4, 4))
    (tiny_fs / "hog").write_bytes(b"\0" * (250 * 1024 - 4096 * 3))  # another program fills the disk
    with pytest.raises(StorageError, match="no space left"):
        for i in range(4, 16, 4):
            w.write(i, torch.rand(4, 16, 4, 4))
    assert _left(tiny_fs) == ["hog"]  # the writer's shards and its folder are gone; no SIGBUS


def test_finalize_that_cannot_write_its_description_removes_everything(tiny_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = ShardedStoreWriter(tiny_fs / "store", 8, (4, 2, 2), dtype="float32", shard_rows=4)
    w.write(0, torch.rand(8, 4, 2, 2))
    import xcorr_core.shards as shards

    real = shards.atomic_write

    def fail_on_json(path, write):  # type: ignore[no-untyped-def]
        if str(path).endswith("store.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, write)

    monkeypatch.setattr(shards, "atomic_write", fail_on_json)
    with pytest.raises(StorageError, match="no space left"):
        w.finalize()
    assert _left(tiny_fs) == []


def test_index_save_on_a_full_disk(tiny_fs: Path) -> None:
    with pytest.raises(StorageError, match=r"cannot write .*gallery.index: no space left"):
        _index().save(tiny_fs / "gallery.index")  # torch.save's own error says only "unexpected pos"
    assert _left(tiny_fs) == []


def test_spatial_store_on_a_full_disk(tiny_fs: Path) -> None:
    with pytest.raises(StorageError):
        SpatialStore.create(tiny_fs / "maps", 256, (64, 4, 4), dtype="float32")
    assert _left(tiny_fs) == []


def test_read_only_file_system(read_only_fs: Path, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="read-only|choose a writable folder"):
        _index(50).save(read_only_fs / "gallery.index")
    with pytest.raises(StorageError, match="writable"):
        make_dir(read_only_fs / "sub")
    res = subprocess.run([sys.executable, "-m", "xcorr_core.cli", "demo", "--out", str(read_only_fs / "demo-out")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "xcorr: error: cannot write" in res.stderr and "Traceback" not in res.stderr


# The same paths without a real small file system: the operating system's errors injected.

def test_fallocate_failure_is_a_storage_error_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    w = ShardedStoreWriter(tmp_path / "store", 8, (4, 2, 2), shard_rows=4)
    with pytest.raises(StorageError, match="no space left"):
        w.write(0, torch.rand(2, 4, 2, 2))
    assert _left(tmp_path) == []


def test_not_enough_free_space_is_checked_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import xcorr_core.shards as shards

    monkeypatch.setattr(shards, "free_bytes", lambda path: 1000)
    with pytest.raises(StorageError, match="needs"):
        ShardedStoreWriter(tmp_path / "store", 8, (4, 2, 2))
    assert _left(tmp_path) == []


def test_atomic_write_maps_a_writer_error_that_hid_the_os_error(tmp_path: Path) -> None:
    def own_error(f) -> None:  # type: ignore[no-untyped-def]
        f.write(b"x")
        raise RuntimeError("unexpected pos 704 vs 598")

    def writes_into_full(f) -> None:  # type: ignore[no-untyped-def]
        f._f = _Raising()  # the file object atomic_write passed, as if the disk filled up under it
        try:
            f.write(b"abc")
        except OSError:
            raise RuntimeError("unexpected pos") from None

    class _Raising:
        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None:
            pass

    with pytest.raises(StorageError, match="no space left"):
        atomic_write(tmp_path / "x.bin", writes_into_full)
    with pytest.raises(RuntimeError, match="unexpected pos 704"):  # no OS error seen: the writer's own error stays
        atomic_write(tmp_path / "y.bin", own_error)
    assert _left(tmp_path) == []
    assert storage_error(OSError(errno.EROFS, "Read-only file system"), tmp_path) is not None
    assert storage_error(OSError(errno.ENOENT, "No such file"), tmp_path) is None
    assert storage_error(ValueError("x"), tmp_path) is None
