"""The ``.part`` file of a download and its ``.part.json`` resume state.

A download writes into ``<name>.part`` beside its target, preallocated to the full size;
``<name>.part.json`` records which file it is (``file_key``), its size, the expected
SHA256, the server's validator and the byte ranges still missing, so a later run
fetches only those.

Both names are civit's own, but the folder may be shared with other people and
programs, so neither is trusted: the ``.part`` is opened without following a symlink
and only as a regular file, and kept open by descriptor from then on (see
:class:`PartFile`); the state file is read with a size bound, validated, and discarded
when anything in it does not add up.

Writes and reads go by offset: ``os.pwrite``/``os.preadv`` where the OS has them (one
descriptor shared by every connection, no seeking), else a handle of its own per
connection that seeks before each write or read (Windows). The choice is made once,
when the file is opened.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import stat
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from civit.errors import CivitError, DiskSpaceError, Interrupted
from civit.fsutil import human_bytes, read_regular_file

__all__ = [
    "PartFile",
    "PartState",
    "ReadAt",
    "Segment",
    "WriteAt",
    "interrupted",
    "kept_bytes",
    "positional_io_available",
    "reject_unusual_file",
]

#: ``write_at(buffer, offset) -> bytes written``
WriteAt = Callable[[memoryview, int], int]
#: ``read_at(buffer, offset) -> bytes read into buffer``
ReadAt = Callable[[memoryview, int], int]

#: A state file is a few KiB (one line per unfinished segment); anything bigger is junk.
MAX_STATE_BYTES = 1 << 20
MAX_SEGMENTS = 65_536
#: Larger than any model file; a guard against absurd sizes in a tampered state file.
MAX_FILE_SIZE = 1 << 50
MAX_TEXT = 4096
_HEX64 = re.compile(r"[0-9A-Fa-f]{64}")

_OPEN_FLAGS = os.O_RDWR | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@dataclass
class Segment:
    """A byte range ``[done, end)`` still to fetch; ``start`` is where it began."""

    start: int
    end: int
    done: int
    claimed: bool = field(default=False, compare=False)

    @property
    def remaining(self) -> int:
        return max(self.end - self.done, 0)


@dataclass
class PartState:
    """What ``<name>.part.json`` says about ``<name>.part``.

    ``validator`` is the strong ETag, or else the Last-Modified date, the storage host
    sent: a resume asks with ``If-Range`` so a changed file comes back whole.
    """

    file_key: str
    size: int
    sha256: str | None
    validator: str | None
    segments: list[Segment]

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": 1,
                "file": self.file_key,
                "size": self.size,
                "sha256": self.sha256,
                "validator": self.validator,
                "segments": [[s.start, s.end, s.done] for s in self.segments if s.remaining],
            }
        ).encode()

    @classmethod
    def load(cls, path: Path) -> PartState | None:
        """The state at ``path``; ``None`` if it is missing or not a valid state file.

        Read without following a symlink, only from a regular file, at most
        :data:`MAX_STATE_BYTES`; every number is checked against the others.
        """
        try:
            doc = json.loads(read_regular_file(path, limit=MAX_STATE_BYTES, follow_symlinks=False))
        except (OSError, ValueError, RecursionError):
            return None
        return _state_from(doc)

    @property
    def bytes_present(self) -> int:
        return self.size - sum(s.remaining for s in self.segments)

    def first_unfinished(self) -> Segment | None:
        return next((s for s in sorted(self.segments, key=lambda s: s.start) if s.remaining), None)

    def present_ranges(self) -> list[tuple[int, int]]:
        """The byte ranges ``[start, end)`` this state says are already on disk."""
        ranges: list[tuple[int, int]] = []
        position = 0
        for segment in sorted(self.segments, key=lambda s: s.start):
            if segment.done > position:
                ranges.append((position, segment.done))
            position = max(position, segment.end)
        if position < self.size:
            ranges.append((position, self.size))
        return [(a, b) for a, b in ranges if b > a]


def kept_bytes(target: Path) -> tuple[Path, int] | None:
    """The ``.part`` a stopped download of ``target`` left, and how many bytes of it
    are good, or ``None`` when there is nothing to resume.

    The count comes from ``.part.json``, not from the ``.part``'s size: the ``.part``
    is preallocated to the whole file's size before the first byte arrives.
    """
    state = PartState.load(target.with_name(target.name + ".part.json"))
    part = target.with_name(target.name + ".part")
    if state is None or state.bytes_present <= 0 or not part.is_file():
        return None
    return part, state.bytes_present


def interrupted(targets: Iterable[Path]) -> Interrupted:
    """The :class:`~civit.errors.Interrupted` to raise when Ctrl-C stopped downloads of
    ``targets``: it names what each one kept to resume from."""
    found = (kept_bytes(target) for target in dict.fromkeys(targets))
    return Interrupted(tuple((str(kept[0]), kept[1]) for kept in found if kept is not None))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_text(value: object) -> bool:
    return value is None or (isinstance(value, str) and len(value) <= MAX_TEXT)


def _state_from(doc: Any) -> PartState | None:
    """A :class:`PartState` from a decoded state file, or ``None`` if anything is off."""
    if not isinstance(doc, dict) or doc.get("format") != 1:
        return None
    size, key, sha256 = doc.get("size"), doc.get("file"), doc.get("sha256")
    validator, rows = doc.get("validator"), doc.get("segments")
    if not (isinstance(size, int) and _is_int(size) and 0 <= size <= MAX_FILE_SIZE):
        return None
    if not (isinstance(key, str) and 0 < len(key) <= MAX_TEXT and _optional_text(validator)):
        return None
    if sha256 is not None and not (isinstance(sha256, str) and _HEX64.fullmatch(sha256)):
        return None
    if not isinstance(rows, list) or len(rows) > MAX_SEGMENTS:
        return None
    segments: list[Segment] = []
    position = 0
    for row in rows:
        if not (isinstance(row, list) and len(row) == 3 and all(_is_int(v) for v in row)):
            return None
        start, end, done = row
        # Segments lie inside the file, front to back, without overlapping.
        if not position <= start <= done <= end <= size:
            return None
        position = end
        segments.append(Segment(start, end, done))
    return PartState(key, size, sha256, validator, segments)


def reject_unusual_file(path: Path, what: str) -> os.stat_result | None:
    """``lstat`` of ``path`` if it is a regular file, ``None`` if nothing is there.

    Raises:
        CivitError: a symlink, folder, FIFO, socket or device sits at ``path``: civit
            never writes through one nor reads from one (exit 1).
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CivitError(f"cannot use {path}: {exc.strerror or exc}") from exc
    if stat.S_ISREG(info.st_mode) and not _is_reparse_point(info):
        return info
    kind = _describe_kind(info)
    raise CivitError(
        f"refusing to use {path} as {what}: it is {kind}, not a regular file",
        hint="move it away or delete it, then run the same command again",
    )


def _is_reparse_point(info: os.stat_result) -> bool:
    # Windows junctions and symlinks; st_file_attributes exists only there.
    attributes: int = getattr(info, "st_file_attributes", 0)
    return bool(attributes & getattr(stat, "FILE_ATTRIBUTE_REPARSE_POINT", 0x400))


def _describe_kind(info: os.stat_result) -> str:
    mode = info.st_mode
    if stat.S_ISLNK(mode) or _is_reparse_point(info):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device or other special file"


def positional_io_available() -> bool:
    """Whether this OS offers ``pwrite``/``preadv`` (not Windows), checked when asked."""
    if sys.platform == "win32":
        return False
    return hasattr(os, "pwrite") and hasattr(os, "preadv")


class PartFile:
    """An open ``.part``: one verified inode, written and read by offset.

    Every connection asks for its own :meth:`writer`; the hasher for a :meth:`reader`.
    With positional I/O they share the one descriptor; otherwise each gets a handle of
    its own, opened on the same file and checked to be the same inode.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.identity = os.fstat(fd)
        self.positional = positional_io_available()
        self._handles: list[int] = []
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> PartFile:
        """Open (creating if needed) ``path`` read-write, as a regular file only.

        Symlinks are not followed (``O_NOFOLLOW`` where the OS has it; elsewhere the
        opened file must be the one ``lstat`` saw), and FIFOs, folders and devices are
        refused before they are opened.

        Raises:
            CivitError: something other than a regular file is at ``path``.
        """
        before = reject_unusual_file(path, "a partial download")
        flags = _OPEN_FLAGS | _NOFOLLOW | (0 if before is not None else os.O_CREAT)
        try:
            fd = os.open(path, flags, 0o666)  # less the umask, like any new file
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink planted just now
                reject_unusual_file(path, "a partial download")
            raise
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode) or (
                before is not None and not os.path.samestat(before, opened)
            ):
                raise CivitError(
                    f"refusing to use {path}: it changed while civit opened it",
                    hint="something else is writing in this folder; run the command again",
                )
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def _own_handle(self) -> int:
        """Another descriptor on the same inode, for one thread's seek-then-write."""
        fd = os.open(self.path, _OPEN_FLAGS | _NOFOLLOW)
        if not os.path.samestat(os.fstat(fd), self.identity):
            os.close(fd)
            raise CivitError(
                f"{self.path} was replaced by another file during the download",
                hint="run the same command again",
            )
        with self._lock:
            self._handles.append(fd)
        return fd

    def writer(self) -> WriteAt:
        """``write_at(buffer, offset)`` for one connection; returns bytes written."""
        if self.positional and sys.platform != "win32":
            return functools.partial(os.pwrite, self.fd)
        fd = self._own_handle()

        def write_at(buffer: memoryview, offset: int) -> int:
            os.lseek(fd, offset, os.SEEK_SET)
            return os.write(fd, buffer)

        return write_at

    def reader(self) -> ReadAt:
        """``read_at(buffer, offset)`` for one thread; returns bytes read into ``buffer``."""
        if self.positional and sys.platform != "win32":
            fd = self.fd

            def pread_at(buffer: memoryview, offset: int) -> int:
                return os.preadv(fd, [buffer], offset)

            return pread_at
        stream = os.fdopen(self._own_handle(), "rb", buffering=0, closefd=False)

        def read_at(buffer: memoryview, offset: int) -> int:
            stream.seek(offset)
            return stream.readinto(buffer) or 0

        return read_at

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def preallocate(self, size: int) -> None:
        """Reserve ``size`` bytes on disk up front (sparse where the OS cannot).

        Raises:
            DiskSpaceError: the disk cannot hold it.
        """
        try:
            if sys.platform != "win32" and sys.platform != "darwin":
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(self.fd, 0, size)
                    return
            os.ftruncate(self.fd, size)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskSpaceError(
                    f"not enough disk space for {self.path.name} ({human_bytes(size)})",
                    path=str(self.path.parent),
                    needed=size,
                    free=0,
                ) from exc
            os.ftruncate(self.fd, size)  # file systems without fallocate (e.g. some NFS)

    def release_to_disk(self, offset: int, length: int) -> None:
        """Start writing hashed bytes to disk now and let the page cache drop them.

        Without it the final fsync waits for the whole file's write-back at once
        (seconds for gigabytes), and a big download evicts everything else from the
        page cache. A no-op where the OS has no ``posix_fadvise``.
        """
        if sys.platform != "win32" and sys.platform != "darwin":
            if hasattr(os, "posix_fadvise"):
                with contextlib.suppress(OSError):
                    os.posix_fadvise(self.fd, offset, length, os.POSIX_FADV_DONTNEED)

    def close_handles(self) -> None:
        """Close the per-connection handles (the main descriptor stays open)."""
        with self._lock:
            handles, self._handles = self._handles, []
        for fd in handles:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        self.close_handles()
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
