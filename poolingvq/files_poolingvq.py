"""Files that appear whole or not at all: the one writer behind every cache, checkpoint and output folder.

Remote code: copied flat into every saved model folder (the synthesizer writes its retuned soundfont with it);
imports only the standard library.

Every write here goes to a temporary sibling of its target (same folder, so the same file system) and is then
renamed over the target with `os.replace`, which is atomic: a reader sees the old content or the new, never half
of either, and a process killed mid-write (even with SIGKILL) leaves the target as it was. The temporary name
is `.<name>.<pid>.<random>.<host>.tmp`, so that [`remove_orphaned_temp_files`] can tell the leftovers of a dead
writer from the files of one still at work, on this host or another.

- [`atomic_write_bytes`] / [`atomic_write_text`]: bytes or text to a file;
- [`atomic_path`]: a temporary path to hand to a writer that wants a path or stream (safetensors, soundfile,
  numpy), renamed into place when the block ends without an error;
- [`atomic_directory`]: a folder built in a temporary sibling and swapped in whole, replacing an earlier one
  ([`replace_directory`] when the writer names the temporary folder itself);
- [`sha256_file`]: a file's content hash, read by blocks, for content-addressed names;
- [`PlainModeSaving`]: a `PreTrainedModel` mixin whose `save_pretrained` leaves weights readable as a plain
  `open`'s files are.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"
#: A temporary file whose writer is on another host cannot be checked for liveness; after this long it is
#: certainly abandoned (every write here takes seconds at most).
ORPHANED_TEMP_FILE_SECONDS = 3600.0
#: This host, as it appears in temporary names (dots would break their parsing).
HOST = socket.gethostname().replace(".", "_")
_RENAME_EXCHANGE = 2  # linux/fs.h: swap two paths atomically (renameat2, Linux >= 3.15)
_AT_FDCWD = -100


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: mkstemp / mkdtemp create private (0600 / 0700) entries; what is renamed into place gets the modes a plain
#: `open` / `mkdir` would have given it, so a shared cache or output stays readable by whom it was before.
_UMASK = _current_umask()
_FILE_MODE = 0o666 & ~_UMASK
_FOLDER_MODE = 0o777 & ~_UMASK


def give_plain_mode(path: str | os.PathLike) -> None:
    """Give a file a plain `open`'s mode (0666 less the umask), for files a library writes privately: safetensors
    0.8's `save_file` (hence transformers' `save_pretrained`) leaves 0600."""
    os.chmod(path, _FILE_MODE)


class PlainModeSaving:
    """Mixin for a `PreTrainedModel` (listed before it): `save_pretrained`, then its `.safetensors` files given a
    plain `open`'s mode, so a model folder trained on a shared machine is readable by whom its folder is."""

    def save_pretrained(self, save_directory: str | os.PathLike, *args: object, **kwargs: object) -> None:
        super().save_pretrained(save_directory, *args, **kwargs)  # type: ignore[misc]
        for weights in Path(save_directory).glob("*.safetensors"):
            give_plain_mode(weights)


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read by blocks of 1 MiB; `OSError` when it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def temporary_sibling_prefix(path: str | os.PathLike) -> tuple[str, str]:
    """(prefix, suffix) of the temporary siblings of `path` written by this process (see the module docstring)."""
    return f".{Path(path).name}.{os.getpid()}.", f".{HOST}{TEMP_SUFFIX}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends normally it is renamed over `path`.

    The block writes the temporary file however it likes (a library's `save(path)`); on an error the
    temporary file is deleted and `path` is left untouched. `durable` fsyncs the file and its folder, so the
    rename survives a power cut (a cache can skip this; an output should not).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = temporary_sibling_prefix(target)
    descriptor, temp_name = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=suffix)
    os.close(descriptor)
    temporary = Path(temp_name)
    try:
        yield temporary
        # after the block: a library may write its own file over the temporary path (safetensors 0.8's
        # `save_file` leaves a fresh 0600 file there), and the mode should be a plain `open`'s either way
        give_plain_mode(temporary)
        if durable:
            _fsync_file(temporary)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        fsync_folder(target.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> Path:
    """Write `data` to `path` atomically (see [`atomic_path`]); returns `path` as a `Path`."""
    with atomic_path(path, durable=durable) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, durable: bool = True) -> Path:
    """Write `text` (UTF-8) to `path` atomically (see [`atomic_path`])."""
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; when the block ends normally it becomes `path`.

    An earlier folder at `path` is replaced whole: on Linux the two are swapped by one atomic rename
    (`renameat2(RENAME_EXCHANGE)`), elsewhere the old one is first renamed aside (a window of one rename in
    which `path` is absent, never half-written). The old content is deleted only after the new one is in
    place. On an error the temporary folder is deleted and `path` is left as it was. `path` must not be a file.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = temporary_sibling_prefix(target)
    temporary = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix, suffix=suffix))
    os.chmod(temporary, _FOLDER_MODE)
    try:
        yield temporary
        replace_directory(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def replace_directory(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Make the complete folder `source` (a sibling of `target`) be `target`, replacing an earlier one whole.

    The files are flushed first; on Linux an existing `target` is swapped with `source` in one atomic rename
    (`renameat2(RENAME_EXCHANGE)`) and its old content, now at `source`, deleted; elsewhere it is renamed aside
    first. For writers that must choose the temporary name themselves (all processes of a distributed run
    write one checkpoint); others use [`atomic_directory`].
    """
    source, target = Path(source), Path(target)
    _fsync_tree(source)
    if not target.exists():
        os.replace(source, target)
    elif _exchange(source, target):  # `source` now holds the old content
        shutil.rmtree(source, ignore_errors=True)
    else:
        prefix, suffix = temporary_sibling_prefix(target)
        aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix, suffix=suffix))
        os.replace(target, aside / target.name)
        os.replace(source, target)
        shutil.rmtree(aside, ignore_errors=True)
    fsync_folder(target.parent)


def remove_orphaned_temp_files(folder: str | os.PathLike, pattern: str = "*") -> int:
    """Delete the temporary siblings (files or folders) that writers left behind when they died; returns how many.

    Looks at `folder/.<pattern>.<pid>.<random>.<host>.tmp` (`pattern` is a glob over the target's name, default all;
    it may contain a folder part, e.g. `"??/*"`). A temporary is orphaned when its writer ran on this host and that process is gone, or when it is
    older than `ORPHANED_TEMP_FILE_SECONDS` (writers elsewhere). Those of live writers are left alone, so this is
    safe while other processes write.
    """
    removed = 0
    now = time.time()
    head, _, name_pattern = pattern.rpartition("/")
    name_glob = f".{name_pattern}.*{TEMP_SUFFIX}"  # .<name>.<pid>.<random>.<host>.tmp
    glob = f"{head}/{name_glob}" if head else name_glob
    for temporary in Path(folder).glob(glob):
        parts = temporary.name[1 : -len(TEMP_SUFFIX)].rsplit(".", 3)
        if len(parts) != 4 or not parts[1].isdigit():
            continue  # not one of ours
        pid, host = int(parts[1]), parts[3]
        try:
            age = now - temporary.lstat().st_mtime
        except FileNotFoundError:
            continue  # its writer just renamed it
        if (host == HOST and not process_is_alive(pid)) or age > ORPHANED_TEMP_FILE_SECONDS:
            if temporary.is_dir() and not temporary.is_symlink():
                shutil.rmtree(temporary, ignore_errors=True)
            else:
                temporary.unlink(missing_ok=True)
            removed += 1
    return removed


def process_is_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # Windows: os.kill(pid, 0) is not a probe there; assume alive, age decides
        return True
    return True


def fsync_folder(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as file:
        os.fsync(file.fileno())


def _fsync_tree(folder: Path) -> None:
    for root, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):
                _fsync_file(Path(root) / name)
        fsync_folder(root)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically with Linux's renameat2(RENAME_EXCHANGE); False where that is not available."""
    if not hasattr(os, "getuid") or os.uname().sysname != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    return result == 0


__all__ = [
    "atomic_directory",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "remove_orphaned_temp_files",
    "replace_directory",
    "sha256_file",
]
