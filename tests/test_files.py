"""Tests of poolingvq/files_poolingvq.py: the one atomic writer behind caches, checkpoints and outputs."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from poolingvq import files_poolingvq
from poolingvq.checkpoints import save_tensors_atomically
from poolingvq.files_poolingvq import (
    atomic_directory,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    remove_orphaned_temp_files,
    sha256_file,
)


def dead_pid() -> int:
    return int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout
    )


def test_atomic_write_replaces_whole_and_leaves_nothing_on_failure(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "sub" / "file.bin"
    atomic_write_bytes(target, b"first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second" and sorted(os.listdir(target.parent)) == ["file.bin"]
    # a plain open() would give the umask's mode: so does the writer (mkstemp alone would give 0600)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    # and so it does when a library writes its own private file at the temporary path (safetensors' save_file)
    weights = tmp_path / "weights.safetensors"
    save_tensors_atomically({"w": torch.zeros(2)}, weights)
    assert stat.S_IMODE(weights.stat().st_mode) == 0o666 & ~umask

    with pytest.raises(RuntimeError, match="writer failed"), atomic_path(target) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("writer failed")
    monkeypatch.setattr(
        files_poolingvq.os, "replace", lambda *args: (_ for _ in ()).throw(OSError("disk full"))
    )
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"third")
    assert target.read_text() == "second" and sorted(os.listdir(target.parent)) == ["file.bin"]


def test_atomic_directory_swaps_a_whole_folder_in(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for version in ("one", "two"):
        with atomic_directory(out) as building:
            (building / "nested").mkdir()
            (building / "nested" / "version.txt").write_text(version)
            assert not (out / "nested" / "version.txt").exists() or (
                (out / "nested" / "version.txt").read_text() != version
            )  # nothing of the new one shows before the block ends
        assert (out / "nested" / "version.txt").read_text() == version
    with pytest.raises(KeyError), atomic_directory(out) as building:
        (building / "half").write_text("x")
        raise KeyError("stopped")
    assert sorted(os.listdir(tmp_path)) == ["out"] and (out / "nested" / "version.txt").read_text() == "two"
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(NotADirectoryError), atomic_directory(tmp_path / "a_file"):
        pass


def test_atomic_directory_without_an_atomic_exchange(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(files_poolingvq, "_exchange", lambda first, second: False)  # not Linux
    out = tmp_path / "out"
    for version in ("one", "two"):
        with atomic_directory(out) as building:
            (building / "version.txt").write_text(version)
    assert (out / "version.txt").read_text() == "two" and sorted(os.listdir(tmp_path)) == ["out"]


def test_leftovers_of_dead_writers_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    host = files_poolingvq.HOST
    dead, alive = dead_pid(), os.getpid()
    dead_file = tmp_path / f".clip.flac.{dead}.abc.{host}.tmp"
    dead_folder = tmp_path / f".out.{dead}.def.{host}.tmp"
    live_file = tmp_path / f".clip.flac.{alive}.ghi.{host}.tmp"
    elsewhere_old = tmp_path / ".clip.flac.1.jkl.other-host.tmp"
    elsewhere_new = tmp_path / ".clip.flac.1.mno.other-host.tmp"
    not_ours = tmp_path / ".notes.tmp"
    for path in (dead_file, live_file, elsewhere_old, elsewhere_new, not_ours):
        path.write_bytes(b"x")
    dead_folder.mkdir()
    (dead_folder / "inside").write_bytes(b"x")
    old = time.time() - 2 * files_poolingvq.ORPHANED_TEMP_FILE_SECONDS
    os.utime(elsewhere_old, (old, old))
    assert remove_orphaned_temp_files(tmp_path, "out") == 1 and not dead_folder.exists()  # only `out`'s
    assert remove_orphaned_temp_files(tmp_path) == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        path.name for path in (live_file, elsewhere_new, not_ours)
    )


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"x" * 3_000_000)
    assert sha256_file(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "missing")
