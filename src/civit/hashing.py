"""Civitai's digests, computed in one streaming pass.

Definitions (DESIGN.md):

- ``sha256``: SHA-256 of the whole file.
- ``autov2``: the first 10 hex digits of ``sha256``.
- ``autov1``: first 8 hex digits of SHA-256 over the 0x10000 bytes at offset 0x100000.
- ``autov3``: first 12 hex digits of SHA-256 over a safetensors file after its header
  (8-byte little-endian header length, then the header, then the tensor data).
- ``blake3``: BLAKE3 of the whole file, 64 hex digits.
- ``crc32``: IEEE CRC-32, printed as Civitai prints it: its 4 bytes little-endian.

All digests are upper-case hex, as the API returns them.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable

import blake3

from civit.errors import UsageError
from civit.records import HASH_ALGORITHMS

__all__ = ["HASH_ALGORITHMS", "Digester", "digest_bytes", "parse_algorithms"]

AUTOV1_OFFSET = 0x100000
AUTOV1_LENGTH = 0x10000


def parse_algorithms(spec: str | Iterable[str]) -> tuple[str, ...]:
    """Normalise ``"sha256,BLAKE3"`` or ``["all"]`` to a tuple in canonical order.

    >>> parse_algorithms("crc32, SHA256")
    ('sha256', 'crc32')
    >>> parse_algorithms("all") == HASH_ALGORITHMS
    True

    Raises:
        UsageError: an unknown algorithm name.
    """
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    wanted = {name.strip().lower() for name in names if name.strip()}
    if "all" in wanted:
        return HASH_ALGORITHMS
    unknown = sorted(wanted - set(HASH_ALGORITHMS))
    if unknown:
        raise UsageError(
            f"unknown hash algorithm {', '.join(unknown)}; "
            f"choose from {', '.join(HASH_ALGORITHMS)} or all"
        )
    if not wanted:
        raise UsageError("no hash algorithm given")
    return tuple(name for name in HASH_ALGORITHMS if name in wanted)


class Digester:
    """Computes the requested Civitai digests over consecutive blocks of one file.

    Feed the file from offset 0 with :meth:`update`, then call :meth:`hexdigests`.
    ``autov2`` rides on ``sha256``; ``autov1`` keeps only its 64 KiB window;
    ``autov3`` parses the safetensors header length from the first 8 bytes and is
    omitted from the result when the file is not a safetensors file.
    """

    def __init__(self, algorithms: Iterable[str] = HASH_ALGORITHMS) -> None:
        self.algorithms = parse_algorithms(algorithms)
        wanted = set(self.algorithms)
        self.offset = 0
        self._sha256 = hashlib.sha256() if wanted & {"sha256", "autov2"} else None
        self._blake3 = blake3.blake3() if "blake3" in wanted else None
        self._crc32: int | None = 0 if "crc32" in wanted else None
        self._autov1 = bytearray() if "autov1" in wanted else None
        self._autov3 = hashlib.sha256() if "autov3" in wanted else None
        self._head = bytearray()
        self._autov3_start: int | None = None
        self._autov3_valid = True

    def update(self, block: bytes | bytearray | memoryview) -> None:
        """Add the next ``block`` of the file."""
        view = memoryview(block).cast("B")
        if self._sha256 is not None:
            self._sha256.update(view)
        if self._blake3 is not None:
            self._blake3.update(view)
        if self._crc32 is not None:
            self._crc32 = zlib.crc32(view, self._crc32)
        if self._autov1 is not None:
            self._take_autov1_window(view)
        if self._autov3 is not None:
            self._update_autov3(view)
        self.offset += len(view)

    def _take_autov1_window(self, view: memoryview) -> None:
        assert self._autov1 is not None
        start = max(AUTOV1_OFFSET - self.offset, 0)
        end = min(AUTOV1_OFFSET + AUTOV1_LENGTH - self.offset, len(view))
        if start < end:
            self._autov1 += view[start:end]

    def _update_autov3(self, view: memoryview) -> None:
        assert self._autov3 is not None
        if self._autov3_start is None:
            self._head += view[: max(8 - len(self._head), 0)]
            if len(self._head) < 8:
                return
            (header_length,) = struct.unpack("<Q", bytes(self._head[:8]))
            self._autov3_start = 8 + header_length
        skip = max(self._autov3_start - self.offset, 0)
        if skip < len(view):
            self._autov3.update(view[skip:])
        if self.offset == 0 and len(view) > 8:
            self._autov3_valid = view[8:9].tobytes() == b"{"

    def hexdigests(self) -> dict[str, str]:
        """The requested digests, upper-case hex, in canonical order."""
        result: dict[str, str] = {}
        sha256 = self._sha256.hexdigest().upper() if self._sha256 is not None else ""
        for name in self.algorithms:
            if name == "sha256":
                result[name] = sha256
            elif name == "autov2":
                result[name] = sha256[:10]
            elif name == "blake3" and self._blake3 is not None:
                result[name] = self._blake3.hexdigest().upper()
            elif name == "crc32" and self._crc32 is not None:
                result[name] = self._crc32.to_bytes(4, "little").hex().upper()
            elif name == "autov1" and self._autov1 is not None:
                result[name] = hashlib.sha256(self._autov1).hexdigest()[:8].upper()
            elif name == "autov3" and self._autov3 is not None and self._is_safetensors():
                result[name] = self._autov3.hexdigest()[:12].upper()
        return result

    def _is_safetensors(self) -> bool:
        start = self._autov3_start
        return self._autov3_valid and start is not None and start <= self.offset


def digest_bytes(data: bytes, algorithms: Iterable[str] = HASH_ALGORITHMS) -> dict[str, str]:
    """Digests of an in-memory buffer.

    >>> digest_bytes(b"hello world", ["crc32", "autov2"])
    {'crc32': '85114A0D', 'autov2': 'B94D27B993'}
    """
    digester = Digester(algorithms)
    digester.update(data)
    return digester.hexdigests()
