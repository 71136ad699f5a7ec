"""The download engine: resumable, segmented, hashed while writing, committed atomically.

One download, start to finish::

    target path ──► lock ──► already present? ──► resolve link ──► fetch into .part
                                   │ yes                              │ Range segments,
                                   ▼                                  │ writes by offset,
                                 skip                                 ▼ hasher following
                                              verify size + digests ──► commit the verified
                                                                        inode ──► cache

Bytes land in ``<name>.part`` beside the target; ``<name>.part.json`` records the file
id, size, expected SHA256, the validator (ETag or Last-Modified) and how far each
segment got, so a later run continues where this one stopped (only with a validator:
without one a changed file could not be told apart, so the download starts over).
The storage host gets no credentials; its links expire, and a 401/403/410 from it
means "ask the API for a fresh link and continue" (see :mod:`civit.cdn`).

What is committed is what was verified: the ``.part`` stays open by descriptor from
the first byte to the rename, and the rename happens only while the path still names
that same inode. The hash cache records that inode and nothing else.

The bulk body is read with :mod:`http.client` ``readinto`` into reused buffers: DESIGN.md
measured it at about three times httpx's throughput per CPU second, and the CPU saved
is what the hashers need. Metadata and the API stay on :class:`civit.api.Client`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from civit.cdn import LinkResolver
from civit.errors import (
    CivitError,
    DiskSpaceError,
    IntegrityError,
)
from civit.fsutil import (
    check_free_space,
    fsync_dir,
    is_in_use,
    replace_when_free,
)
from civit.hashcache import HashCache
from civit.hashing import ProgressCallback
from civit.network import ProxyRules, proxy_rules
from civit.pacing import RateLimit
from civit.partfile import reject_unusual_file
from civit.records import Hashes
from civit.segmented import SegmentedTransfer, default_connections

__all__ = ["RESERVED_SUFFIXES", "Fetched", "digests_to_compute", "fetch"]

#: Names civit uses beside every target; a target may not end with them.
RESERVED_SUFFIXES = (".part", ".part.json")


def digests_to_compute(hashes: Hashes) -> tuple[str, ...]:
    """SHA256 and BLAKE3 always (for reports and locks), plus whatever the record has."""
    wanted = {"sha256", "blake3", *hashes.as_dict()}
    return tuple(sorted(wanted))


@dataclass(frozen=True)
class Fetched:
    """What :func:`fetch` put at the target.

    ``stat`` describes the committed inode as it was verified (record it in a hash
    cache, never a fresh ``stat`` of the path); ``verified`` names the checks that
    passed against the record (``"size"`` included when an exact size was known).
    """

    size: int
    digests: Mapping[str, str]
    verified: tuple[str, ...]
    transferred: int
    resumed_from: int
    stat: os.stat_result


def _check_target(target: Path) -> None:
    """Refuse targets that cannot end well before a byte is fetched."""
    lowered = target.name.lower()
    if lowered.endswith(RESERVED_SUFFIXES):
        raise CivitError(
            f"refusing to download to {target.name}: names ending in .part or .part.json "
            "are civit's own partial downloads",
            hint="choose another name",
        )
    try:
        reject_unusual_file(target, "the download's target")
    except CivitError as exc:
        if target.is_symlink():
            return  # the rename replaces the link itself, never what it points to
        raise exc


@contextlib.contextmanager
def _writing_errors(part: Path, transfer: SegmentedTransfer) -> Iterator[None]:
    """OS errors while fetching as civit errors (a full disk says how much was needed)."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskSpaceError(
                f"the disk filled up while writing {part}",
                path=str(part.parent),
                needed=transfer.state.size if transfer.state else 0,
                free=0,
                hint="free some space and run the same command again to resume",
            ) from exc
        raise CivitError(f"cannot write {part}: {exc.strerror or exc}") from exc


def fetch(
    resolve: LinkResolver,
    target: Path,
    *,
    expected: Hashes,
    file_key: str,
    expected_size: int | None = None,
    size_hint: int | None = None,
    connections: int | None = None,
    verify: bool = True,
    stall_timeout: float = 30.0,
    progress: ProgressCallback | None = None,
    retry_base: float = 1.0,
    limit_rate: float | RateLimit | None = None,
    deadline: float | None = None,
    proxies: ProxyRules | None = None,
    cache: HashCache | None = None,
) -> Fetched:
    """Fetch the bytes behind ``resolve()`` into ``target``: resumable, verified, atomic.

    The caller holds the target's lock. On success ``target`` holds verified bytes;
    on an integrity failure nothing is at ``target`` (an existing file is untouched)
    and the partial file is removed; on any other failure the partial file and its
    state stay for the next run to resume.

    Args:
        resolve: returns a (fresh) link to the bytes; called lazily, again on expiry.
        target: the final path.
        expected: the record's digests; every one is checked.
        file_key: identifies the file in ``.part.json`` (another key: start over).
        expected_size: the exact byte count, if known (a lock's ``size``).
        size_hint: ``sizeKB`` in bytes: progress, disk space, and a check within its
            rounding.
        connections: parallel connections (default: by size).
        verify: check digests and size; without it the bytes are taken as they come.
        stall_timeout: seconds without a byte (or below 1 KiB/s) before reconnecting.
        progress: ``progress(done, total)`` in bytes.
        retry_base: first backoff delay in seconds.
        limit_rate: bytes per second over all connections (``None``: unlimited), or a
            :class:`RateLimit` shared with other downloads.
        deadline: seconds the whole fetch may take (``None``: no limit).
        proxies: which proxy each URL goes through (default: from the environment).
        cache: a hash cache to record the committed file's digests in.

    Returns:
        A :class:`Fetched`.

    Raises:
        IntegrityError: the bytes do not match ``expected`` or the size (exit 7), or the
            record has neither a digest nor an exact size to check them against.
        AuthError, NotFoundError, NetworkError, DiskSpaceError, CivitError: see their docs.
    """
    _check_target(target)
    if verify and not expected.as_dict() and expected_size is None:
        raise IntegrityError(
            f"the record of {target.name} has no hash and no exact size, so civit could "
            "not prove the download",
            path=str(target),
            hint="pass --no-verify to take the file unverified",
        )
    part = target.with_name(target.name + ".part")
    state_path = target.with_name(target.name + ".part.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    algorithms = digests_to_compute(expected) if verify else ("sha256",)
    transfer = SegmentedTransfer(
        resolve,
        part,
        state_path,
        file_key=file_key,
        expected=expected,
        expected_size=expected_size if verify else None,
        size_hint=size_hint if verify else None,
        connections=connections or default_connections(expected_size or size_hint),
        stall_timeout=stall_timeout,
        algorithms=algorithms,
        progress=progress,
        retry_base=retry_base,
        proxies=proxies if proxies is not None else proxy_rules(),
        limit_rate=RateLimit(limit_rate) if isinstance(limit_rate, (int, float)) else limit_rate,
        deadline=deadline,
    )
    wanted = expected_size or size_hint
    if wanted:
        existing = part.stat().st_size if part.is_file() and not part.is_symlink() else 0
        check_free_space(target.parent, max(wanted - existing, 0))
    try:
        with _writing_errors(part, transfer):
            try:
                size, digests = transfer.run()
            except BaseException:
                state = transfer.state
                if state is not None and state.bytes_present == 0 and transfer.resumed_from == 0:
                    with contextlib.suppress(CivitError):
                        transfer.discard()  # nothing worth resuming: leave no debris
                raise
            verified = _verify(transfer, expected, digests, size, target, verify)
            if verified is None:  # an earlier run's bytes were wrong: fetch them again
                size, digests = transfer.recheck()
                verified = _verify(transfer, expected, digests, size, target, verify) or ()
            committed = _commit(transfer, target)
    finally:
        transfer.close()
    state_path.unlink(missing_ok=True)
    if cache is not None:
        with contextlib.suppress(OSError):
            cache.store(committed, digests)
    return Fetched(size, digests, verified, transfer.transferred, transfer.resumed_from, committed)


def _verify(
    transfer: SegmentedTransfer,
    expected: Hashes,
    digests: dict[str, str],
    size: int,
    target: Path,
    verify: bool,
) -> tuple[str, ...] | None:
    """The checks passed; ``None`` to fetch an earlier run's bytes again first.

    Raises:
        IntegrityError: the bytes are wrong, and none came from an earlier run (the
            partial file and its state are removed).
    """
    if not verify:
        return ()
    try:
        transfer.check_size(size)
        checked = expected.check(digests, path=str(target))
    except IntegrityError:
        if transfer.inherited:
            return None
        transfer.discard()
        raise
    return (*checked, "size") if transfer.expected_size is not None else checked


def _commit(transfer: SegmentedTransfer, target: Path) -> os.stat_result:
    """Rename the verified ``.part`` to ``target``; return the committed inode's stat.

    The rename happens only while the ``.part`` path names the inode that was
    hashed (POSIX keeps it open throughout; Windows, which cannot rename an open
    file, compares identities instead), and the target must name it afterwards.

    Raises:
        IntegrityError: another file took the ``.part``'s place; nothing of it is
            left at ``target``.
        CivitError: the rename was refused (a file in use on Windows); the verified
            ``.part`` and its state stay, so the same command commits it next time.
    """
    part = transfer.file
    assert part is not None
    os.fsync(part.fd)
    verified = os.fstat(part.fd)
    part.close_handles()
    if sys.platform == "win32":
        part.close()
    current = reject_unusual_file(transfer.part, "a partial download")
    if current is None or not os.path.samestat(current, verified):
        transfer.state_path.unlink(missing_ok=True)
        raise IntegrityError(
            f"{transfer.part} was replaced by another file during the download; "
            "nothing was committed",
            path=str(target),
            hint="run the same command again",
        )
    try:
        replace_when_free(transfer.part, target)
    except OSError as exc:
        raise _rename_refused(transfer.part, target, exc) from exc
    try:
        after = os.lstat(target)
    except OSError:
        after = None
    if after is None or not os.path.samestat(after, verified):
        if after is not None:  # whatever it is, civit put it there and did not verify it
            with contextlib.suppress(OSError):
                target.unlink()
        raise IntegrityError(
            f"{transfer.part} was swapped for another file while civit renamed it to "
            f"{target.name}; the unverified file was removed",
            path=str(target),
            hint="run the same command again",
        )
    fsync_dir(target.parent)
    return verified


def _rename_refused(part: Path, target: Path, exc: OSError) -> CivitError:
    kept = f"the verified download is kept in {part.name}"
    if is_in_use(exc):
        return CivitError(
            f"{target} is in use (is the WebUI running?); {kept}, "
            "run the same command again after closing it"
        )
    return CivitError(
        f"cannot rename {part.name} to {target.name}: {exc.strerror or exc}; {kept}",
        hint="fix the folder's permissions, then run the same command again",
    )
