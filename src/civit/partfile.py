"""The ``.part`` file of a download and its ``.part.json`` resume state.

A download writes into ``<name>.part`` beside its target, preallocated to the full size;
``<name>.part.json`` records which file it is (``file_key``), its size, the expected
SHA256, the server's validator and the byte ranges still missing, so a later run
fetches only those.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from civit.errors import DiskSpaceError
from civit.fsutil import human_bytes

__all__ = ["PartState", "Segment", "preallocate", "release_to_disk"]


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
        try:
            doc = json.loads(path.read_text())
            segments = [Segment(int(a), int(b), int(c)) for a, b, c in doc["segments"]]
            return cls(
                str(doc["file"]), int(doc["size"]), doc["sha256"], doc["validator"], segments
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @property
    def bytes_present(self) -> int:
        return self.size - sum(s.remaining for s in self.segments)

    def first_unfinished(self) -> Segment | None:
        return next((s for s in sorted(self.segments, key=lambda s: s.start) if s.remaining), None)


def release_to_disk(fd: int, offset: int, length: int) -> None:
    """Start writing hashed bytes to disk now and let the page cache drop them.

    Without it the final fsync waits for the whole file's write-back at once (seconds
    for gigabytes), and a big download evicts everything else from the page cache.
    """
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def preallocate(fd: int, size: int, part: Path) -> None:
    try:
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, size)
        else:  # pragma: no cover - macOS, Windows
            os.ftruncate(fd, size)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskSpaceError(
                f"not enough disk space for {part.name} ({human_bytes(size)})",
                path=str(part.parent),
                needed=size,
                free=0,
            ) from exc
        os.ftruncate(fd, size)  # file systems without fallocate support (e.g. some NFS)
