"""``civit mirror push``: fill a mirror with verified files, each under its SHA256.

One node installs, then pushes; every other node installs from the mirror::

    civit.lock / PATHs ──► SHA256 of each file ──► already there? ──► upload, hashing
    (or the store)          (lock, hash cache)      HEAD: size and     as it reads; the
                                                    stored SHA256      server checks too

The destination is ``s3://bucket/prefix`` (objects ``prefix/<sha256>``) or a folder
(files ``<sha256>``, e.g. on NFS or behind a static HTTP server). An object already there
with the right size — and the right SHA256 where the store keeps one — is skipped.

Uploads never trust the local file blindly: its SHA256 is computed from the very bytes
sent, and a file that does not hash to its name (changed on disk, or not the locked
file) is not committed (exit 7). S3 uploads also carry ``x-amz-checksum-sha256`` (per
part for multipart uploads) so the server rejects bytes damaged on the way. Large
files go up in parts, several at once; memory stays bounded by
``2 × jobs × part size`` whatever the file sizes.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from civit.errors import CivitError, IntegrityError, ManifestError, worst_exit_code
from civit.fsutil import check_free_space, commit, create_beside, make_folder, open_regular
from civit.hashcache import CacheOption, HashCache, opened_cache
from civit.hashing import ProgressCallback, hash_file
from civit.identification import model_files
from civit.lockfile import load_lock
from civit.manifest import lock_path_for
from civit.paths import expand_path
from civit.s3 import S3Bucket, UploadedPart, is_s3_url, parse_s3_url
from civit.store import Store

__all__ = ["PART_SIZE", "PushReport", "PushedFile", "push_mirror"]

MiB = 1 << 20
#: Multipart part size (and the largest file sent in one request). S3 wants at least
#: 5 MiB per part and at most 10,000 parts, so huge files get bigger parts.
PART_SIZE = 8 * MiB
MAX_PARTS = 10_000
COPY_BLOCK = 1 * MiB
# Uploads are worth retrying (unlike mirror reads, which fall back to Civitai).
UPLOAD_ATTEMPTS = 5

PushStatus = Literal["uploaded", "present", "failed"]


@dataclass(frozen=True)
class PushedFile:
    """What :func:`push_mirror` did with one file.

    ``destination`` is where the file is (or would be) in the mirror:
    ``s3://bucket/prefix/<sha256>`` or ``FOLDER/<sha256>``.
    """

    path: Path
    status: PushStatus
    sha256: str | None = None
    size: int | None = None
    destination: str | None = None
    bytes_sent: int = 0
    seconds: float = 0.0
    failure: CivitError | None = None

    @property
    def error(self) -> str | None:
        """Why the file failed, as one line (``None`` unless it did)."""
        return str(self.failure) if self.failure is not None else None

    @property
    def exit_code(self) -> int:
        """The failure's exit code; 0 unless the file failed."""
        return self.failure.exit_code if self.failure is not None else 0

    def as_json(self) -> dict[str, object]:
        """The ``--json`` entry; ``error`` is ``{message, exit_code, hint}`` for a failure."""
        return {
            "path": str(self.path),
            "status": self.status,
            "sha256": self.sha256,
            "size_bytes": self.size,
            "bytes_sent": self.bytes_sent,
            "seconds": round(self.seconds, 3),
            "destination": self.destination,
            "error": self.failure.as_json() if self.failure is not None else None,
        }


@dataclass(frozen=True)
class PushReport:
    """Everything :func:`push_mirror` did, in the order the files were given."""

    destination: str
    results: tuple[PushedFile, ...]
    seconds: float = 0.0

    def count(self, status: PushStatus) -> int:
        """How many files ended with ``status``."""
        return sum(1 for result in self.results if result.status == status)

    @property
    def exit_code(self) -> int:
        """0 if every file is in the mirror now, else the most severe failure's (see
        :func:`civit.errors.worst_exit_code`)."""
        return worst_exit_code(result.exit_code for result in self.results)

    def as_json(self) -> dict[str, object]:
        """The ``--json`` document."""
        return {
            "destination": self.destination,
            "summary": {
                "uploaded": self.count("uploaded"),
                "present": self.count("present"),
                "failed": self.count("failed"),
            },
            "bytes_sent": sum(result.bytes_sent for result in self.results),
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 3),
            "files": [result.as_json() for result in self.results],
        }


# -- what to push --------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    path: Path
    sha256: str | None  # known from the lock; None: hash the file to learn it
    problem: str | None = None  # why there is nothing to read


def _sources_from_lock(lock_file: Path, store: Store | None) -> list[_Source]:
    current = load_lock(lock_file)
    if current is None:
        raise ManifestError(
            f"no lock at {lock_file}, and no files given",
            hint="run `civit install` first, pass --lock PATH, or name the files to push",
        )
    sources: list[_Source] = []
    seen: set[str] = set()
    for locked in current.files:
        target = locked.target(lock_file.parent)
        if not locked.sha256:
            sources.append(_Source(target, None, f"{lock_file} has no SHA256 for it"))
            continue
        if locked.sha256.upper() in seen:
            continue
        seen.add(locked.sha256.upper())
        path = target
        if store is not None and not target.is_file():
            path = store.path_for(locked.sha256)
        problem = None if path.is_file() else "it is not installed (run `civit install`)"
        sources.append(_Source(path, locked.sha256.upper(), problem))
    return sources


# -- destinations --------------------------------------------------------------------


class _Destination(Protocol):
    def where(self, sha256: str) -> str: ...

    def holds(self, sha256: str, size: int) -> bool: ...

    def upload(self, path: Path, sha256: str, size: int, sent: Callable[[int], None]) -> None: ...


def _mismatch(path: Path, sha256: str, actual: str) -> IntegrityError:
    return IntegrityError(
        f"{path} does not hash to its SHA256 (expected {sha256}, got {actual}): "
        "not pushed; the file changed or is not the locked one",
        path=str(path),
        algorithm="sha256",
        expected=sha256,
        actual=actual,
    )


class _S3Destination:
    """Objects ``prefix/<sha256>`` in a bucket; parts go up on a shared pool."""

    def __init__(self, bucket: S3Bucket, *, jobs: int, part_size: int, stop: threading.Event):
        self.bucket = bucket
        self.part_size = part_size
        self.stop = stop
        self.parts = ThreadPoolExecutor(jobs, thread_name_prefix="civit-push-part")
        self.slots = threading.BoundedSemaphore(2 * jobs)

    def close(self) -> None:
        self.parts.shutdown(wait=True, cancel_futures=True)

    def where(self, sha256: str) -> str:
        return self.bucket.location.url_for(sha256)

    def holds(self, sha256: str, size: int) -> bool:
        found = self.bucket.head(sha256)
        return (
            found is not None
            and found.size == size
            and (found.sha256 is None or found.sha256 == sha256.upper())
        )

    def part_size_for(self, size: int) -> int:
        needed = math.ceil(size / MAX_PARTS / MiB) * MiB
        return max(self.part_size, needed)

    def upload(self, path: Path, sha256: str, size: int, sent: Callable[[int], None]) -> None:
        part_size = self.part_size_for(size)
        with os.fdopen(open_regular(path), "rb") as stream:
            if size <= part_size:
                self.slots.acquire()
                try:
                    data = stream.read(part_size + 1)
                    actual = hashlib.sha256(data).hexdigest().upper()
                    if actual != sha256.upper() or len(data) != size:
                        raise _mismatch(path, sha256, actual)
                    self.bucket.put(sha256, data)
                finally:
                    self.slots.release()
                sent(len(data))
                return
            self._multipart(stream, path, sha256, part_size, sent)

    def _multipart(
        self, stream: BinaryIO, path: Path, sha256: str, part_size: int, sent: Callable[[int], None]
    ) -> None:
        upload_id = self.bucket.start_multipart(sha256)
        whole = hashlib.sha256()
        futures: list[Future[UploadedPart]] = []
        failed = threading.Event()
        try:
            number = 0
            while not failed.is_set() and not self.stop.is_set():
                self.slots.acquire()  # released when the part is sent (or fails)
                try:
                    data = stream.read(part_size)
                    if data:
                        whole.update(data)
                        number += 1
                        future = self.parts.submit(
                            self._part, sha256, upload_id, number, data, sent
                        )
                except BaseException:
                    self.slots.release()
                    raise
                if not data:
                    self.slots.release()
                    break
                future.add_done_callback(lambda done: self._finished(done, failed))
                futures.append(future)
            parts = [future.result() for future in futures]  # the first failure raises
            if self.stop.is_set():
                raise CivitError("interrupted")
            actual = whole.hexdigest().upper()
            if actual != sha256.upper():
                raise _mismatch(path, sha256, actual)
            self.bucket.complete_multipart(sha256, upload_id, parts)
        except BaseException:
            for future in futures:
                future.cancel()
            for future in futures:
                with contextlib.suppress(BaseException):
                    future.result()
            self.bucket.abort_multipart(sha256, upload_id)
            raise

    def _finished(self, done: Future[UploadedPart], failed: threading.Event) -> None:
        self.slots.release()
        if done.cancelled() or done.exception() is not None:
            failed.set()

    def _part(
        self, sha256: str, upload_id: str, number: int, data: bytes, sent: Callable[[int], None]
    ) -> UploadedPart:
        uploaded = self.bucket.upload_part(sha256, upload_id, number, data)
        sent(len(data))
        return uploaded


class _FolderDestination:
    """Files ``FOLDER/<sha256>``, copied atomically (temporary name, fsync, rename)."""

    def __init__(self, folder: Path, cache: HashCache) -> None:
        self.folder = folder
        self.cache = cache

    def close(self) -> None:
        pass

    def where(self, sha256: str) -> str:
        return str(self.folder / sha256.lower())

    def holds(self, sha256: str, size: int) -> bool:
        try:
            stat = (self.folder / sha256.lower()).stat()
        except OSError:
            return False
        known = self.cache.lookup(stat, ("sha256",))
        return stat.st_size == size and (known is None or known["sha256"] == sha256.upper())

    def upload(self, path: Path, sha256: str, size: int, sent: Callable[[int], None]) -> None:
        final = self.folder / sha256.lower()
        check_free_space(self.folder, size)
        with os.fdopen(open_regular(path), "rb", buffering=0) as source:
            fd, temporary = create_beside(final)  # readable like any new file (umask)
            try:
                digest = hashlib.sha256()
                view = memoryview(bytearray(COPY_BLOCK))
                with os.fdopen(fd, "wb") as sink:
                    while count := source.readinto(view):
                        digest.update(view[:count])
                        sink.write(view[:count])
                        sent(count)
                actual = digest.hexdigest().upper()
                if actual != sha256.upper():
                    raise _mismatch(path, sha256, actual)
                commit(temporary, final)
            except OSError as exc:
                temporary.unlink(missing_ok=True)
                raise CivitError(f"cannot copy {path} to {final}: {exc.strerror or exc}") from exc
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
        with contextlib.suppress(OSError):
            self.cache.store(final.stat(), {"sha256": sha256.upper()})


# -- the push ------------------------------------------------------------------------


class _Progress:
    """Bytes sent (and skipped) over every file, for one ``progress(done, total)``."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback = callback
        self.total = total
        self.done = 0
        self.lock = threading.Lock()

    def add(self, count: int) -> None:
        with self.lock:
            self.done += count
            done = self.done
        if self.callback is not None:
            self.callback(done, self.total)


def _push_one(
    source: _Source,
    destination: _Destination,
    cache: HashCache,
    progress: _Progress,
) -> PushedFile:
    started = time.monotonic()
    base = PushedFile(source.path, "failed", sha256=source.sha256)
    if source.problem is not None:
        return _failed(base, CivitError(f"{source.path}: {source.problem}"), started)
    sent = 0
    size: int | None = None
    try:
        info = source.path.stat()
        size = info.st_size
        sha256 = source.sha256
        if sha256 is None:
            sha256 = hash_file(source.path, ("sha256",), cache=cache)["sha256"]
        else:
            known = cache.lookup(info, ("sha256",))
            if known is not None and known["sha256"] != sha256:
                raise _mismatch(source.path, sha256, known["sha256"])
        where = destination.where(sha256)
        if destination.holds(sha256, size):
            progress.add(size)
            return PushedFile(
                source.path,
                "present",
                sha256=sha256,
                size=size,
                destination=where,
                seconds=time.monotonic() - started,
            )

        def count(chunk: int) -> None:
            nonlocal sent
            sent += chunk
            progress.add(chunk)

        destination.upload(source.path, sha256, size, count)
    except (CivitError, OSError) as exc:
        if size is not None:
            progress.add(size - sent)  # a failed file counts as done, so the bar ends full
        if isinstance(exc, OSError):
            exc = CivitError(f"cannot read {source.path}: {exc.strerror or exc}")
        return _failed(base, exc, started)
    return PushedFile(
        source.path,
        "uploaded",
        sha256=sha256,
        size=size,
        destination=where,
        bytes_sent=sent,
        seconds=time.monotonic() - started,
    )


def _failed(base: PushedFile, error: CivitError, started: float) -> PushedFile:
    return PushedFile(
        base.path,
        "failed",
        sha256=base.sha256,
        failure=error,
        seconds=time.monotonic() - started,
    )


def push_mirror(
    destination: str | os.PathLike[str],
    paths: Iterable[str | os.PathLike[str]] = (),
    *,
    lock: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    jobs: int = 4,
    cache: CacheOption = None,
    progress: ProgressCallback | None = None,
    on_result: Callable[[PushedFile], None] | None = None,
    part_size: int = PART_SIZE,
) -> PushReport:
    """Upload verified files to a mirror under their SHA256, skipping what is there.

    Args:
        destination: ``s3://bucket/prefix`` (AWS credentials, region and endpoint from
            the environment and ``~/.aws``) or a folder (created if missing).
        paths: files or folders to push (folders: their model files and store
            entries). Empty: every file of the lock.
        lock: the lock whose files to push when ``paths`` is empty (default
            ``civit.lock`` in the current folder); each is read from its destination,
            or from ``store`` where it is not installed.
        store: a content-addressed store to read locked files from.
        jobs: files (and parts of large files) uploaded at once.
        cache: hash cache (see :data:`civit.hashcache.CacheOption`).
        progress: ``progress(done, total)`` in bytes over all files (present files
            count whole when found).
        on_result: called with each file's result as it finishes (from worker threads).
        part_size: multipart part size in bytes (at least 5 MiB for S3).

    Returns:
        The :class:`PushReport`; a failed file does not stop the others.

    Raises:
        UsageError: a bad destination, ``s3://`` without the ``civit[s3]`` extra, or an
            unusable AWS configuration (e.g. ``AWS_PROFILE`` names no profile).
        ManifestError: no ``paths`` and no readable lock.
    """
    started = time.monotonic()
    target = os.fspath(destination)
    jobs = max(1, jobs)
    stop = threading.Event()
    with opened_cache(cache) as hashes:
        sink: _S3Destination | _FolderDestination
        if is_s3_url(target):
            bucket = S3Bucket(
                parse_s3_url(target), attempts=UPLOAD_ATTEMPTS, connections=2 * jobs + 1
            )
            bucket.client()  # a bad profile or endpoint is one error, not one per file
            label = str(bucket.location)
            sink = _S3Destination(bucket, jobs=jobs, part_size=part_size, stop=stop)
        else:
            folder = expand_path(target)  # ~ and %VAR%: cmd and PowerShell pass them as is
            make_folder(
                folder, hint="DEST is the mirror: a folder to create or fill, or s3://BUCKET/PREFIX"
            )
            label = str(folder)
            sink = _FolderDestination(folder, hashes)
        given = list(paths)
        if given:
            sources = [_Source(path, None) for path in model_files(given)]
        else:
            lock_file = expand_path(lock) if lock is not None else lock_path_for("civit.toml")
            store_root = Store(expand_path(store)) if store is not None else None
            sources = _sources_from_lock(lock_file.absolute(), store_root)
        total = sum(_size(source.path) for source in sources if source.problem is None)
        counter = _Progress(progress, total)
        try:
            results = _push_all(sources, sink, hashes, counter, jobs, stop, on_result)
        finally:
            sink.close()
    return PushReport(label, tuple(results), time.monotonic() - started)


def _push_all(
    sources: Sequence[_Source],
    sink: _Destination,
    cache: HashCache,
    progress: _Progress,
    jobs: int,
    stop: threading.Event,
    on_result: Callable[[PushedFile], None] | None,
) -> list[PushedFile]:
    results: list[PushedFile | None] = [None] * len(sources)
    with ThreadPoolExecutor(jobs, thread_name_prefix="civit-push") as pool:
        futures = {
            pool.submit(_push_one, source, sink, cache, progress): index
            for index, source in enumerate(sources)
        }
        try:
            for future in as_completed(futures):
                result = future.result()
                results[futures[future]] = result
                if on_result is not None:
                    on_result(result)
        except BaseException:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [result for result in results if result is not None]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
