"""Civitai's digests, computed in one streaming pass, and the search for model files.

Definitions (DESIGN.md):

- ``sha256``: SHA-256 of the whole file.
- ``autov2``: the first 10 hex digits of ``sha256``.
- ``autov1``: first 8 hex digits of SHA-256 over the 0x10000 bytes at offset 0x100000.
- ``autov3``: first 12 hex digits of SHA-256 over a safetensors file after its header
  (8-byte little-endian header length, then the header, then the tensor data).
- ``blake3``: BLAKE3 of the whole file, 64 hex digits.
- ``crc32``: IEEE CRC-32, printed as Civitai prints it: its 4 bytes little-endian.

All digests are upper-case hex, as the API returns them.

SHA-256, BLAKE3 and CRC-32 release the GIL on large buffers, so :class:`Digester` runs
them side by side in worker threads; hashing everything costs about as much wall time
as SHA-256 alone. :func:`hash_file` reads the next block while the last one is being
hashed. :class:`~civit.hashcache.HashCache` (in :mod:`civit.hashcache`) remembers
digests per (device, inode, size, mtime) so an unchanged file is never hashed twice.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import struct
import sys
import threading
import weakref
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from civit.errors import CivitError
from civit.fsutil import open_regular
from civit.hashcache import NOT_APPLICABLE, CacheOption, HashCache, cache_key, opened_cache
from civit.records import HASH_ALGORITHMS, parse_algorithms

__all__ = [
    "HASH_ALGORITHMS",
    "MODEL_EXTENSIONS",
    "NOT_MODEL_FOLDERS",
    "Digester",
    "FileDigests",
    "FilesProgress",
    "ProgressCallback",
    "digest_bytes",
    "files_under",
    "hash_file",
    "hash_files",
    "iter_model_files",
    "linked_folders",
]

AUTOV1_OFFSET = 0x100000
AUTOV1_LENGTH = 0x10000
# The safetensors reference implementation refuses larger headers.
SAFETENSORS_MAX_HEADER = 100_000_000
# Below this, handing a block to another thread costs more than hashing it here.
THREADED_MIN_BLOCK = 256 * 1024
DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024

MODEL_EXTENSIONS = frozenset(
    {".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx"}
)

#: The one progress shape of the whole library: ``progress(done, total)``, ``done`` the
#: bytes so far (never decreasing within one job), ``total`` the bytes expected or
#: ``None`` while unknown. Downloads call it from worker threads about ten times a
#: second, so it must be thread-safe and quick; raising from it aborts the job.
ProgressCallback = Callable[[int, int | None], None]
_T = TypeVar("_T")


class _Crc32:
    """``zlib.crc32`` as an object with ``update``, so a worker thread can own it."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: memoryview) -> None:
        self.value = zlib.crc32(data, self.value)


# Relative cost per byte of the digests worth a thread (x86-64 with SHA extensions;
# measured with scripts/hash_speed.py). AutoV1 copies 64 KiB and stays inline.
_COST = {"sha256": 1.0, "autov3": 1.0, "crc32": 0.45, "blake3": 0.3}


def _new_blake3() -> Any:
    """A BLAKE3 hasher; the extension module is loaded only when a BLAKE3 is wanted, so a
    SHA256-only or cached ``civit hash`` starts faster."""
    import blake3

    return blake3.blake3()


_Update = Callable[[memoryview], object]
_Batch = list[tuple[_Update, memoryview]]


def _plan_lanes(heavy: Iterable[str], threads: int) -> list[tuple[str, ...]]:
    """Spread digests over at most ``threads`` worker threads, costliest first onto the
    least loaded one.

    More threads than cores only makes SHA-256, the longest job, share its core: on two
    cores three threads cost 1.3x the time of two.

    >>> _plan_lanes(["sha256", "blake3", "crc32"], 2)
    [('sha256',), ('crc32', 'blake3')]
    """
    lanes: list[list[str]] = [[] for _ in range(max(threads, 1))]
    loads = [0.0] * len(lanes)
    for name in sorted(heavy, key=_COST.__getitem__, reverse=True):
        lane = loads.index(min(loads))
        lanes[lane].append(name)
        loads[lane] += _COST[name]
    return [tuple(lane) for lane in lanes if lane]


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):  # respects taskset and container CPU sets
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _work(
    inbox: queue.SimpleQueue[_Batch | None], done: queue.SimpleQueue[BaseException | None]
) -> None:
    """A worker thread's loop: run each batch, report completion or the exception."""
    while (batch := inbox.get()) is not None:
        try:
            for update, data in batch:
                update(data)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the submitting thread
            done.put(exc)
        else:
            done.put(None)


def _stop(inboxes: Iterable[queue.SimpleQueue[_Batch | None]]) -> None:
    for inbox in inboxes:
        inbox.put(None)


class _Workers:
    """Persistent worker threads, one per lane of digests, started when first needed.

    Threads hold only their queues, never the owner, so a forgotten :class:`Digester`
    is still collected, and the finalizer then lets its threads end.
    """

    def __init__(self, lanes: list[tuple[str, ...]]) -> None:
        self._names = ["+".join(lane) for lane in lanes]
        self._inboxes: dict[int, queue.SimpleQueue[_Batch | None]] = {}
        self._threads: list[threading.Thread] = []
        self._done: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._closed = False
        weakref.finalize(self, _stop, self._inboxes.values())

    def submit(self, batches: list[_Batch]) -> None:
        """Hand ``batches[i]`` to lane ``i``."""
        with self._lock:
            if self._closed:
                raise ValueError("update() on a closed Digester")
            for lane, batch in enumerate(batches):
                if batch:
                    self._inbox(lane).put(batch)
                    self._pending += 1

    def _inbox(self, lane: int) -> queue.SimpleQueue[_Batch | None]:
        inbox = self._inboxes.get(lane)
        if inbox is None:
            inbox = self._inboxes[lane] = queue.SimpleQueue()
            thread = threading.Thread(
                target=_work,
                args=(inbox, self._done),
                name=f"civit-hash-{self._names[lane]}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return inbox

    def wait(self) -> None:
        results = [self._done.get() for _ in range(self._pending)]
        self._pending = 0
        for error in results:
            if error is not None:
                raise error

    def close(self) -> None:
        with self._lock:
            self._closed = True
            _stop(self._inboxes.values())
        # Queued batches run before the stop marker, so a caller's buffer is free after this.
        for thread in self._threads:
            thread.join()


class Digester:
    """Computes the requested Civitai digests over consecutive blocks of one file.

    Feed the file from offset 0 with :meth:`update` (or :meth:`submit` + :meth:`wait`
    to overlap reading with hashing), then call :meth:`hexdigests`. Blocks of
    256 KiB or more are hashed by worker threads, the digests spread over at most one
    thread per CPU; call :meth:`close` (or use ``with``) to end them. ``autov2`` rides
    on ``sha256``; ``autov1`` keeps only its 64 KiB window; ``autov3`` is omitted from
    the result when the file is not a safetensors file.

    A Digester is fed by one thread at a time; :meth:`close` may come from another.
    """

    def __init__(
        self, algorithms: Iterable[str] = HASH_ALGORITHMS, *, threads: int | None = None
    ) -> None:
        """Prepare to hash.

        Args:
            algorithms: digests wanted (see :func:`parse_algorithms`).
            threads: worker threads at most (default: the CPUs this process may use);
                0 hashes every block in the calling thread.

        Raises:
            UsageError: an unknown algorithm name.
        """
        self.algorithms = parse_algorithms(algorithms)
        wanted = set(self.algorithms)
        self.offset = 0
        self._sha256 = hashlib.sha256() if wanted & {"sha256", "autov2"} else None
        # One BLAKE3 thread: its own thread pool would compete with SHA-256 for the
        # cores (1.08x instead of 0.93x of SHA-256 alone on two cores).
        self._blake3 = _new_blake3() if "blake3" in wanted else None
        self._crc32 = _Crc32() if "crc32" in wanted else None
        self._autov1 = bytearray() if "autov1" in wanted else None
        self._autov3 = hashlib.sha256() if "autov3" in wanted else None
        self._head = bytearray()
        self._autov3_start: int | None = None
        hashers = {
            "sha256": self._sha256,
            "autov3": self._autov3,
            "crc32": self._crc32,
            "blake3": self._blake3,
        }
        heavy = [name for name, hasher in hashers.items() if hasher is not None]
        lanes = _plan_lanes(heavy, _usable_cpus() if threads is None else threads)
        self._lane_of = {name: index for index, lane in enumerate(lanes) for name in lane}
        self._lane_count = len(lanes)
        self._workers = _Workers(lanes) if threads != 0 else None
        self._closed = False

    def __enter__(self) -> Digester:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def update(self, block: bytes | bytearray | memoryview) -> None:
        """Add the next ``block`` of the file; ``block`` may be reused once this returns.

        Raises:
            ValueError: the Digester is closed.
        """
        self.submit(block)
        self.wait()

    def submit(self, block: bytes | bytearray | memoryview) -> None:
        """Start hashing the next ``block`` and return without waiting for the workers.

        The caller must not modify ``block`` until :meth:`wait` (or the next
        :meth:`submit`, which waits for the previous block first) returns.

        Raises:
            ValueError: the Digester is closed.
        """
        self.wait()
        if self._closed:
            raise ValueError("update() on a closed Digester")
        view = memoryview(block).cast("B")
        tasks = self._tasks(view)
        if self._autov1 is not None:
            self._take_autov1_window(view)
        self.offset += len(view)
        if self._workers is None or len(view) < THREADED_MIN_BLOCK:
            for update, data in tasks.values():
                update(data)
            return
        batches: list[_Batch] = [[] for _ in range(self._lane_count)]
        for name, task in tasks.items():
            batches[self._lane_of[name]].append(task)
        self._workers.submit(batches)

    def wait(self) -> None:
        """Wait until every submitted block is hashed; re-raise a worker's exception."""
        if self._workers is not None:
            self._workers.wait()

    def close(self) -> None:
        """End the worker threads (after they finish any submitted block). Idempotent.

        :meth:`hexdigests` still works; further updates raise ``ValueError``.
        """
        self._closed = True
        if self._workers is not None:
            self._workers.close()

    def _tasks(self, view: memoryview) -> dict[str, tuple[_Update, memoryview]]:
        tasks: dict[str, tuple[_Update, memoryview]] = {}
        if self._sha256 is not None:
            tasks["sha256"] = (self._sha256.update, view)
        if self._blake3 is not None:
            tasks["blake3"] = (self._blake3.update, view)
        if self._crc32 is not None:
            tasks["crc32"] = (self._crc32.update, view)
        tensor_data = self._autov3_data(view)
        if tensor_data is not None and self._autov3 is not None:
            tasks["autov3"] = (self._autov3.update, tensor_data)
        return tasks

    def _take_autov1_window(self, view: memoryview) -> None:
        assert self._autov1 is not None
        start = max(AUTOV1_OFFSET - self.offset, 0)
        end = min(AUTOV1_OFFSET + AUTOV1_LENGTH - self.offset, len(view))
        if start < end:
            self._autov1 += view[start:end]

    def _autov3_data(self, view: memoryview) -> memoryview | None:
        """The part of ``view`` after the safetensors header, if any.

        The first 9 bytes (length + the header's opening brace) may arrive over several
        blocks. A file that cannot be safetensors stops AutoV3 for good.
        """
        if self._autov3 is None:
            return None
        if self._autov3_start is None:
            self._head += view[: max(9 - len(self._head), 0)]
            if len(self._head) < 9:
                return None
            (header_length,) = struct.unpack("<Q", self._head[:8])
            if self._head[8:9] != b"{" or not 2 <= header_length <= SAFETENSORS_MAX_HEADER:
                self._autov3 = None
                return None
            self._autov3_start = 8 + header_length
        skip = max(self._autov3_start - self.offset, 0)
        return view[skip:] if skip < len(view) else None

    def hexdigests(self) -> dict[str, str]:
        """The requested digests, upper-case hex, in canonical order.

        Waits for a submitted block first. ``autov3`` is left out when the bytes were
        not a safetensors file (too short, no header, or a header longer than the file).
        """
        self.wait()
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
                result[name] = self._crc32.value.to_bytes(4, "little").hex().upper()
            elif name == "autov1" and self._autov1 is not None:
                result[name] = hashlib.sha256(self._autov1).hexdigest()[:8].upper()
            elif name == "autov3" and self._autov3 is not None and self._is_safetensors():
                result[name] = self._autov3.hexdigest()[:12].upper()
        return result

    def _is_safetensors(self) -> bool:
        start = self._autov3_start
        return start is not None and start <= self.offset


def digest_bytes(data: bytes, algorithms: Iterable[str] = HASH_ALGORITHMS) -> dict[str, str]:
    """Digests of an in-memory buffer.

    >>> digest_bytes(b"hello world", ["crc32", "autov2"])
    {'crc32': '85114A0D', 'autov2': 'B94D27B993'}
    """
    with Digester(algorithms) as digester:
        digester.update(data)
        return digester.hexdigests()


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class FileDigests:
    """What :func:`hash_files` found for one file.

    Attributes:
        path: the file as given.
        digests: ``{algorithm: HEX}``; empty when ``error`` is set.
        size: bytes hashed (or the cached file's size); ``None`` on error.
        cached: the digests came from the :class:`HashCache`, the file was not read.
        error: why the file could not be hashed (missing, unreadable, a folder).
    """

    path: Path
    digests: Mapping[str, str] = field(default_factory=dict)
    size: int | None = None
    cached: bool = False
    error: CivitError | None = None

    def as_json(self) -> dict[str, object]:
        """A plain JSON object (the CLI's ``--json``)."""
        return {
            "path": str(self.path),
            "size_bytes": self.size,
            "digests": dict(self.digests),
            "cached": self.cached,
            "error": self.error.as_json() if self.error else None,
        }


def hash_file(
    path: str | os.PathLike[str],
    algorithms: str | Iterable[str] = ("sha256",),
    *,
    cache: CacheOption = None,
    progress: ProgressCallback | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> dict[str, str]:
    """Digests of a local file, in one pass (or none, when the cache knows the file).

    Args:
        path: the file.
        algorithms: digests wanted, e.g. ``("sha256", "blake3")`` or ``"all"``.
        cache: ``None`` for the user's hash cache, ``False`` to read every byte and
            record nothing, or a :class:`HashCache` (see :data:`CacheOption`).
        progress: ``progress(done, total)`` in bytes of this file, after each block (a
            cache hit reports the whole file at once).
        block_size: read size; two buffers of it are in use.

    Returns:
        ``{algorithm: HEX}`` in canonical order; ``autov3`` only for safetensors files.

    Raises:
        UsageError: an unknown algorithm name.
        CivitError: the file is missing, a folder, or unreadable.
    """
    wanted = parse_algorithms(algorithms)
    with opened_cache(cache) as opened:
        found = _hash_one(Path(path), wanted, opened, progress, block_size)
    return dict(found.digests)


def hash_files(
    paths: Iterable[str | os.PathLike[str]],
    algorithms: str | Iterable[str] = ("sha256",),
    *,
    cache: CacheOption = None,
    progress: ProgressCallback | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Iterator[FileDigests]:
    """Hash files one after another, reporting failures instead of stopping at them.

    Args:
        paths: files (expand folders first with :func:`iter_model_files`).
        algorithms: digests wanted, e.g. ``("sha256", "blake3")`` or ``"all"``.
        cache: as for :func:`hash_file`.
        progress: ``progress(done, total)`` in bytes over all the files (``total`` is
            their sizes before hashing started).
        block_size: as for :func:`hash_file`.

    Returns:
        An iterator of one :class:`FileDigests` per path, in order.

    Raises:
        UsageError: an unknown algorithm name (before any file is read).
    """
    wanted = parse_algorithms(algorithms)
    files = [Path(path) for path in paths]
    counter = FilesProgress(progress, files)

    def each() -> Iterator[FileDigests]:
        with opened_cache(cache) as opened:
            for path in files:
                try:
                    found = _hash_one(path, wanted, opened, counter.update, block_size)
                except CivitError as exc:
                    found = FileDigests(path, error=exc)
                counter.next_file()
                yield found

    return each()


class FilesProgress:
    """One ``progress(done, total)`` over files hashed one after another.

    Give :meth:`update` to :func:`hash_file` as its ``progress`` and call
    :meth:`next_file` after each file: ``done`` is the bytes of the files before plus
    this file's, ``total`` their sizes when counting began (a cache hit counts whole).
    A file that fails keeps the bytes it reported, so ``done`` never goes back.
    """

    def __init__(self, callback: ProgressCallback | None, files: Sequence[Path]) -> None:
        """Count for ``callback`` (``None``: count nothing) over ``files``."""
        self.callback = callback
        self.finished = 0
        self.current = 0
        self.total = sum(_size_or_zero(path) for path in files) if callback is not None else 0

    def update(self, done: int, _file_total: int | None) -> None:
        """The progress of the current file, as :func:`hash_file` reports it."""
        if self.callback is not None:
            self.current = done
            self.callback(self.finished + done, self.total)

    def next_file(self) -> None:
        """The current file is done (hashed, answered by the cache, or failed)."""
        self.finished += self.current
        self.current = 0


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _hash_one(
    path: Path,
    wanted: tuple[str, ...],
    cache: HashCache,
    progress: ProgressCallback | None,
    block_size: int,
) -> FileDigests:
    try:
        # A FIFO or device named like a model would block or never end: refused.
        with os.fdopen(open_regular(path), "rb", buffering=0) as stream:
            # The cache key describes the file actually read, not whatever the path
            # names by the time hashing ends.
            before = os.fstat(stream.fileno())
            cached = cache.lookup(before, wanted)
            if cached is not None:
                if progress is not None:
                    progress(before.st_size, before.st_size)
                return FileDigests(path, cached, before.st_size, cached=True)
            if sys.platform != "win32" and sys.platform != "darwin":
                if hasattr(os, "posix_fadvise"):
                    # Doubles read-ahead when the file is not in the page cache yet.
                    os.posix_fadvise(stream.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            with Digester(wanted) as digester:
                size = _feed(stream, digester, progress, before.st_size, block_size)
                digests = digester.hexdigests()
            after = os.fstat(stream.fileno())
    except OSError as exc:  # Windows refuses to open a folder at all
        reason = "it is a folder" if path.is_dir() else exc.strerror or str(exc)
        raise CivitError(f"cannot read {path}: {reason}") from exc
    unchanged = size == before.st_size and cache_key(before) == cache_key(after)
    if unchanged:
        cache.store(after, {name: digests.get(name, NOT_APPLICABLE) for name in wanted})
    return FileDigests(path, digests, size)


def _feed(
    stream: io.RawIOBase,
    digester: Digester,
    progress: ProgressCallback | None,
    expected: int,
    block_size: int,
) -> int:
    """Read ``stream`` to its end into two buffers in turn, one filling while the other
    is hashed; return the byte count."""
    views = [memoryview(bytearray(block_size)) for _ in range(2)]
    total = 0
    turn = 0
    while count := stream.readinto(views[turn]):
        digester.submit(views[turn][:count])
        total += count
        if progress is not None:
            progress(total, max(expected, total))
        turn ^= 1
    digester.wait()
    return total


def iter_model_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The files to hash for command-line ``paths``: files as given, folders searched.

    Inside folders only names ending in :data:`MODEL_EXTENSIONS` (any case) count, so
    ``.part`` downloads are skipped; so are hidden files and folders (``.git``,
    macOS ``._x.safetensors`` litter) and the package folders of Python and Node
    environments (:data:`NOT_MODEL_FOLDERS`: a WebUI's ``venv/`` or the portable
    ComfyUI's ``python_embeded/`` hold ``.pth`` path files and packages' own weights,
    not models a user put there). Symlinked folders are not followed.

    Args:
        paths: files and folders, in the order the user gave them.

    Returns:
        Explicit paths (even missing ones, so hashing reports them) and each folder's
        model files sorted, every path once.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        found.extend(_model_files_under(path) if path.is_dir() else [path])
    return list(dict.fromkeys(found))


#: Folders a search for model files does not enter (see :func:`iter_model_files`).
NOT_MODEL_FOLDERS = frozenset({"site-packages", "dist-packages", "__pycache__", "node_modules"})


def linked_folders(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The symlinked folders inside the folders of ``paths``, which
    :func:`iter_model_files` does not enter (a folder given itself is entered even
    when it is a link).

    Args:
        paths: files and folders, as given to :func:`iter_model_files`.

    Returns:
        The links, sorted, every path once.
    """
    links: list[Path] = []
    for folder in (path for path in map(Path, paths) if path.is_dir()):
        for root, folders, _ in _search(folder):
            links.extend(Path(root, name) for name in folders if Path(root, name).is_symlink())
    return sorted(dict.fromkeys(links))


def files_under(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Every name below ``folder`` that is not a folder, as the search of
    :func:`iter_model_files` finds it: hidden folders, :data:`NOT_MODEL_FOLDERS` and
    symlinked folders are not entered; names are not filtered.

    Args:
        folder: where to search.

    Returns:
        The paths, folder by folder in ``os.walk`` order.
    """
    for root, _, names in _search(Path(folder)):
        yield from (Path(root, name) for name in names)


def _model_files_under(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in files_under(folder)
        if not path.name.startswith(".") and path.suffix.lower() in MODEL_EXTENSIONS
    )


def _search(folder: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk`` without the folders :func:`iter_model_files` skips (symlinked ones
    are listed but, as ``os.walk`` does, not entered)."""
    for root, folders, names in os.walk(folder):
        folders[:] = [
            name
            for name in folders
            if not name.startswith(".") and name.lower() not in NOT_MODEL_FOLDERS
        ]
        yield root, folders, names
