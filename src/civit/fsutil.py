"""File-system helpers shared by every reader and writer: atomic replace, free-space
checks, and opening only regular files.

Model files, lock files, sidecars and the config all reach their final name the same
way: written beside it under a temporary name, flushed to disk, then renamed over it
with :func:`os.replace`, so a reader sees either the old file or the new one, never a
torn one.

Files civit reads (models to hash, manifests, locks, sidecars) may sit in a folder
other people write to. :func:`open_regular` opens without blocking on a FIFO and
refuses anything that is not a regular file, so a planted FIFO or device named
``x.safetensors`` or ``civit.lock`` is a clear error, never a hang or an endless read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import sys
import time
from pathlib import Path

import platformdirs

from civit.errors import CivitError, DiskSpaceError
from civit.paths import path_setting

__all__ = [
    "atomic_write",
    "atomic_write_if_changed",
    "cache_dir",
    "check_free_space",
    "commit",
    "create_beside",
    "fsync_dir",
    "human_bytes",
    "is_in_use",
    "make_folder",
    "make_writable",
    "open_regular",
    "read_regular_file",
    "replace_when_free",
]

#: Windows errors for a file another process holds open: access denied, sharing and
#: lock violations, and a file mapped into memory (WebUIs mmap .safetensors).
IN_USE_WINERRORS = frozenset({5, 32, 33, 1224})
#: How long a rename onto a file in use is retried before giving up.
IN_USE_WAIT = 2.0

# O_NONBLOCK: opening a FIFO for reading must not wait for a writer. It changes nothing
# for regular files. (Windows has neither FIFOs nor the flag.)
_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
#: The most :func:`read_regular_file` reads: far more than any manifest, lock or sidecar.
MAX_SMALL_FILE = 64 * 1024 * 1024


def _not_regular(mode: int) -> str | None:
    """What a non-regular file is, for messages; ``None`` for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: str | os.PathLike[str], *, follow_symlinks: bool = True) -> int:
    """Open ``path`` for reading, refusing anything but a regular file (symlinks to one
    are fine unless ``follow_symlinks`` is false), without ever blocking on a FIFO.

    Returns:
        An open file descriptor; the caller closes it.

    Raises:
        OSError: the file cannot be opened, or is not a regular file (``strerror`` says
            what it is, e.g. "it is a FIFO (named pipe), not a regular file"), or is a
            symlink and ``follow_symlinks`` is false.
    """
    flags = _READ_FLAGS
    if not follow_symlinks:
        if not hasattr(os, "O_NOFOLLOW") and Path(path).is_symlink():
            raise OSError(errno.ELOOP, "it is a symbolic link", str(path))
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        kind = _not_regular(os.fstat(fd).st_mode)
        if kind is not None:
            code = errno.EISDIR if kind == "a folder" else errno.EINVAL
            what = "it is a folder" if kind == "a folder" else f"it is {kind}, not a regular file"
            raise OSError(code, what, str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular_file(
    path: str | os.PathLike[str], *, limit: int = MAX_SMALL_FILE, follow_symlinks: bool = True
) -> bytes:
    """The bytes of a small regular file (a manifest, a lock, a sidecar, the config).

    Raises:
        FileNotFoundError: there is no such file.
        OSError: unreadable, not a regular file, larger than ``limit``, or a symlink
            and ``follow_symlinks`` is false.
    """
    with os.fdopen(open_regular(path, follow_symlinks=follow_symlinks), "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"it is larger than {human_bytes(limit)}", str(path))
    return data


def cache_dir() -> Path:
    """civit's cache folder (hash cache, download locks): ``$CIVIT_CACHE_DIR`` or the
    platform's user cache folder."""
    override = os.environ.get("CIVIT_CACHE_DIR")
    return path_setting(override) if override else Path(platformdirs.user_cache_dir("civit"))


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the OS can open a folder to fsync it."""
    if sys.platform == "win32":  # folders cannot be opened as files; NTFS journals renames
        return
    with contextlib.suppress(OSError):  # some file systems refuse it
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def commit(temporary: Path, final: Path, *, durable: bool = True) -> None:
    """Atomically rename ``temporary`` to ``final``, flushing it to disk first if durable.

    ``durable=False`` skips the fsyncs: for small bookkeeping files rewritten often
    while a big file is being written, where an fsync would wait for the big file's
    write-back too. On Windows the rename waits a moment for a file in use and clears
    a read-only attribute first (:func:`replace_when_free`).
    """
    if durable:
        with temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
    replace_when_free(temporary, final)
    if durable:
        fsync_dir(final.parent)


def is_in_use(exc: OSError) -> bool:
    """Whether ``exc`` is Windows refusing a rename because another process has the
    file open (POSIX renames over open files)."""
    return getattr(exc, "winerror", None) in IN_USE_WINERRORS


def replace_when_free(source: Path, destination: Path) -> None:
    """``os.replace``, retried for up to :data:`IN_USE_WAIT` seconds while the
    destination is in use (a WebUI reading the old model on Windows).

    Raises:
        OSError: the rename still fails (check :func:`is_in_use` to tell why).
    """
    if sys.platform == "win32":
        make_writable(destination)
    deadline = time.monotonic() + IN_USE_WAIT
    delay = 0.05
    while True:
        try:
            source.replace(destination)
            return
        except OSError as exc:
            if not is_in_use(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def make_writable(path: Path) -> None:
    """Clear the read-only attribute of an existing regular file (never of what a
    symlink points at): Windows refuses to rename over or delete a read-only file
    (access denied), where POSIX does either to any file. A model hardlinked from the
    store is read-only (:meth:`civit.store.Store.seal`)."""
    with contextlib.suppress(OSError):
        mode = os.lstat(path).st_mode
        if stat.S_ISREG(mode) and not mode & stat.S_IWRITE:
            path.chmod(stat.S_IMODE(mode) | stat.S_IWRITE)


def make_folder(
    folder: Path, *, hint: str = "choose a folder you can write to (--dest or --root)"
) -> None:
    """Create ``folder`` and its parents if they are missing.

    Args:
        folder: the folder.
        hint: what to do when it cannot be created (the flag that chose the folder).

    Raises:
        CivitError: it cannot be created (an unwritable parent, a file in the way).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CivitError(
            f"cannot create folder {folder}: {exc.strerror or exc}", hint=hint
        ) from exc


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + rename).

    ``durable`` as in :func:`commit`.

    Raises:
        CivitError: the folder is not writable or the disk is full; nothing is left
            behind at ``path`` or under a temporary name.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = create_beside(path)
    except OSError as exc:  # an unwritable or missing folder
        raise CivitError(
            f"cannot write {path}: {exc.strerror or exc}",
            hint=f"check that {path.parent} exists and is writable",
        ) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        commit(temporary, path, durable=durable)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise CivitError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_if_changed(path: Path, data: bytes) -> bool:
    """:func:`atomic_write` ``data`` unless ``path`` already holds exactly that (a
    manifest or lock written again unchanged keeps its mtime and stays out of diffs).

    Returns:
        Whether the file was written.

    Raises:
        CivitError: as for :func:`atomic_write`.
    """
    with contextlib.suppress(OSError):
        if read_regular_file(path) == data:
            return False
    atomic_write(path, data)
    return True


def create_beside(path: Path) -> tuple[int, Path]:
    """A new empty file beside ``path`` under a unique hidden name, open for writing.

    It is created with mode 0666 less the umask, as any program's new file is (0644
    under the usual umask 022). ``tempfile.mkstemp`` makes 0600 files: a civit.lock or
    report written that way was unreadable to the other users of a checkout or a CI
    cache. ``O_EXCL`` never opens an existing file, nor follows a planted symlink.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        temporary = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def check_free_space(folder: Path, needed: int) -> None:
    """Raise :class:`DiskSpaceError` if ``folder`` has fewer than ``needed`` bytes free."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DiskSpaceError(
            f"not enough disk space in {folder}: need {human_bytes(needed)}, "
            f"{human_bytes(free)} free",
            path=str(folder),
            needed=needed,
            free=free,
            hint="free some space or choose another folder with --root/--dest",
        )


def human_bytes(count: float) -> str:
    """Format a byte count with binary units.

    >>> human_bytes(6938039653)
    '6.46 GiB'
    >>> human_bytes(512)
    '512 B'
    """
    value = float(count)
    if value < 1024:
        return f"{int(value)} B"
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.2f} {unit}"
    return f"{value / 1024:.2f} TiB"
