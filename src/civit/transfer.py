"""The download engine: resumable, segmented, hashed while writing, committed atomically.

One download, start to finish::

    target path ──► lock ──► already present? ──► resolve link ──► fetch into .part
                                   │ yes                              │ Range segments,
                                   ▼                                  │ pwrite, hasher
                                 skip                                 ▼ following the frontier
                                              verify digests ──► os.replace ──► cache

Bytes land in ``<name>.part`` beside the target; ``<name>.part.json`` records the file
id, size, expected SHA256, the validator (ETag) and how far each segment got, so a later
run continues where this one stopped. The storage host gets no credentials; its links
expire, and a 401/403/410 from it means "ask the API for a fresh link and continue".

The bulk body is read with :mod:`http.client` ``readinto`` into reused buffers: DESIGN.md
measured it at about three times httpx's throughput per CPU second, and the CPU saved
is what the hashers need. Metadata and the API stay on :class:`civit.api.Client`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urljoin, urlsplit

import filelock

from civit.api import USER_AGENT, parse_retry_after
from civit.errors import (
    AuthError,
    CivitError,
    DiskSpaceError,
    IntegrityError,
    NetworkError,
    NotFoundError,
    redact_url,
)
from civit.fsutil import atomic_write, cache_dir, check_free_space, commit
from civit.hashing import Digester, ProgressCallback
from civit.partfile import PartState, Segment, preallocate, release_to_disk
from civit.records import Hashes

__all__ = [
    "LinkResolver",
    "ProgressCallback",
    "default_connections",
    "digests_to_compute",
    "fetch",
    "piece_size",
    "target_lock",
]

MiB = 1 << 20
BUFFER_SIZE = 1 * MiB
# Page-cache writes of 1 MiB cost several times more kernel time than 128 KiB ones
# (measured: 3.0-3.8 s vs 0.46 s per 2 GiB), so big receive buffers are written in
# slices. See scripts/bench.
WRITE_SLICE = 128 * 1024
HASH_BLOCK = 4 * MiB
MIN_SEGMENT = 8 * MiB
MAX_PIECE = 32 * MiB
WRITEBACK_STEP = 64 * MiB
STATE_SAVE_INTERVAL = 1.0
PROGRESS_INTERVAL = 0.1
FILL_INTERVAL = 0.1
MAX_REDIRECTS = 5
MAX_FAILURES_WITHOUT_PROGRESS = 6
MAX_LINK_REFRESHES = 8

#: Returns a fresh URL for the bytes; called again when a link expires.
LinkResolver = Callable[[], str]

Status = Literal["downloaded", "present"]

HTML_HINT = (
    "this is a login or challenge page, not a model: set a valid CIVITAI_API_TOKEN "
    "(create one at https://civitai.com/user/account)"
)
_HTML_START = re.compile(rb"^\s*(<!doctype html|<html|<head|<\?xml)", re.IGNORECASE)


def default_connections(size: int | None) -> int:
    """Connections for a file of ``size`` bytes: one per 32 MiB, between 1 and 8.

    >>> default_connections(10 * 1024 * 1024), default_connections(7 << 30)
    (1, 8)
    """
    if not size:
        return 1
    return max(1, min(8, size // (4 * MIN_SEGMENT)))


def piece_size(size: int, connections: int) -> int:
    """How big the pieces are that parallel connections claim, front to back.

    Small enough that the contiguous written frontier (which the hasher follows)
    advances at the combined speed of all connections, so hashing finishes right after
    the last byte arrives; large enough that a request per piece costs little.

    >>> piece_size(2 << 30, 8) // MiB, piece_size(100 * MiB, 3) // MiB
    (32, 8)
    """
    return max(MIN_SEGMENT, min(MAX_PIECE, size // max(1, connections * 4)))


def digests_to_compute(hashes: Hashes) -> tuple[str, ...]:
    """SHA256 and BLAKE3 always (for reports and locks), plus whatever the record has."""
    wanted = {"sha256", "blake3", *hashes.as_dict()}
    return tuple(sorted(wanted))


# -- the transfer ------------------------------------------------------------------


class _LinkExpired(Exception):
    """The storage host refused the link (401/403/410): ask the API for a new one."""


class _RangeIgnored(Exception):
    """The server answered a ranged request with the whole body (200)."""


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass
class _Response:
    connection: http.client.HTTPConnection
    response: http.client.HTTPResponse
    start: int
    end: int  # exclusive: where this response's body stops
    total: int
    validator: str | None


def _fill(response: http.client.HTTPResponse, view: memoryview) -> int:
    """Read into ``view`` until it is full, the body ends, or FILL_INTERVAL passes.

    Full buffers keep writes large on fast links; the time bound keeps progress and
    cancellation prompt on slow ones (1 MiB at 200 KB/s would take five seconds).
    """
    if response.chunked:
        return response.readinto(view)
    deadline = time.monotonic() + FILL_INTERVAL
    filled = 0
    while filled < len(view):
        count = response.fp.readinto1(view[filled:])
        if not count:
            break
        filled += count
        if time.monotonic() >= deadline:
            break
    return filled


def _parse_content_range(value: str | None) -> tuple[int, int, int] | None:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not match or match.group(3) == "*":
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


class _Transfer:
    """One fetch of one URL into one ``.part`` file, with its worker threads."""

    def __init__(
        self,
        resolve: LinkResolver,
        part: Path,
        state_path: Path,
        *,
        file_key: str,
        expected: Hashes,
        size_hint: int | None,
        connections: int,
        stall_timeout: float,
        algorithms: tuple[str, ...],
        progress: ProgressCallback | None,
        retry_base: float,
    ) -> None:
        self.resolve = resolve
        self.part = part
        self.state_path = state_path
        self.file_key = file_key
        self.expected = expected
        self.size_hint = size_hint
        self.connections = max(1, connections)
        self.stall_timeout = stall_timeout
        self.algorithms = algorithms
        self.progress = progress
        self.retry_base = retry_base
        self.lock = threading.Condition()
        self.cancelled = threading.Event()
        self.error: BaseException | None = None
        self.url = ""  # resolved lazily: a complete .part needs no link at all
        self.refreshes = 0
        self.transferred = 0
        self.resumed_from = 0
        self.state: PartState | None = None
        self.last_save = 0.0
        self.last_progress = 0.0
        self.open_connections: set[http.client.HTTPConnection] = set()

    # -- links --

    def _refresh_url(self, stale: str) -> str:
        with self.lock:
            if self.url != stale:
                return self.url
            self.refreshes += 1
            if self.refreshes > MAX_LINK_REFRESHES:  # a link that dies at once, every time
                raise NetworkError(
                    "the download link keeps expiring",
                    hint="run the same command again to resume",
                )
            self.url = self.resolve()
            return self.url

    # -- HTTP --

    def _open(
        self,
        url: str,
        start: int,
        end: int | None,
        validator: str | None,
        *,
        accept_full: bool = False,
        reuse: http.client.HTTPConnection | None = None,
    ) -> _Response:
        """GET ``[start, end)`` of ``url``, following the storage host's own redirects.

        ``accept_full`` lets a 200 (whole body from byte 0) answer a ranged request,
        which only the first request of a transfer can use. ``reuse`` is a kept-alive
        connection to the same host; if the host has closed it, a new one is opened.
        """
        headers = {
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
            "Range": f"bytes={start}-{'' if end is None else end - 1}",
        }
        if validator and start > 0:
            headers["If-Range"] = validator
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            if reuse is not None:
                kept, reuse = reuse, None
                if (kept.host, kept.port) == (parts.hostname, parts.port or kept.port):
                    try:
                        kept.request("GET", path, headers=headers)
                        response = kept.getresponse()
                    except (OSError, http.client.HTTPException):
                        self._close(kept)  # the host closed it between requests
                    else:
                        return self._accept(kept, response, url, start, accept_full)
                else:
                    self._close(kept)
            connection: http.client.HTTPConnection
            if parts.scheme == "https":
                connection = http.client.HTTPSConnection(
                    parts.hostname or "",
                    parts.port,
                    timeout=self.stall_timeout,
                    context=ssl.create_default_context(),
                )
            elif parts.scheme == "http":
                connection = http.client.HTTPConnection(
                    parts.hostname or "", parts.port, timeout=self.stall_timeout
                )
            else:
                raise NetworkError(f"unsupported download URL scheme in {redact_url(url)}")
            self._track(connection)
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self._close(connection)
                raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
            if 300 <= response.status < 400 and response.getheader("location"):
                location = response.getheader("location") or ""
                self._close(connection)
                url = urljoin(url, location)
                continue
            return self._accept(connection, response, url, start, accept_full)
        raise NetworkError(f"too many redirects fetching {redact_url(url)}")

    def _accept(
        self,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        url: str,
        start: int,
        accept_full: bool,
    ) -> _Response:
        try:
            return self._check_response(connection, response, url, start, accept_full=accept_full)
        except BaseException:
            self._close(connection)
            raise

    def _check_response(
        self,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        url: str,
        start: int,
        *,
        accept_full: bool,
    ) -> _Response:
        status = response.status
        content_type = (response.getheader("content-type") or "").lower()
        if status in (200, 206) and "html" in content_type:
            raise AuthError(
                f"the storage host sent an HTML page instead of the file ({redact_url(url)})",
                url=url,
                hint=HTML_HINT,
            )
        if status in (401, 403, 410):
            raise _LinkExpired(f"HTTP {status}")
        if status == 404:
            raise NotFoundError(f"the file is not at {redact_url(url)} (HTTP 404)", url=url)
        if status == 416:
            raise _RangeIgnored("HTTP 416: the file is shorter than expected")
        if status in (429, 500, 502, 503, 504):
            raise _Retryable(f"HTTP {status}", parse_retry_after(response.getheader("retry-after")))
        if status not in (200, 206):
            raise NetworkError(f"unexpected HTTP {status} from {redact_url(url)}", url=url)
        validator = response.getheader("etag")
        if validator and validator.startswith("W/"):
            validator = None  # weak validators cannot guard a byte-range resume
        if status == 206:
            content_range = _parse_content_range(response.getheader("content-range"))
            if content_range is None or content_range[0] != start:
                raise _RangeIgnored("206 with a Content-Range that does not start where asked")
            total = content_range[2]
            return _Response(connection, response, start, content_range[1] + 1, total, validator)
        if start > 0 and not accept_full:
            raise _RangeIgnored("200 to a ranged request")
        length = response.getheader("content-length")
        if length is None or not length.isdigit():
            raise NetworkError(f"no Content-Length from {redact_url(url)}", url=url)
        return _Response(connection, response, 0, int(length), int(length), validator)

    def _track(self, connection: http.client.HTTPConnection) -> None:
        with self.lock:
            self.open_connections.add(connection)

    def _close(self, connection: http.client.HTTPConnection) -> None:
        with self.lock:
            self.open_connections.discard(connection)
        connection.close()

    def _abort_connections(self) -> None:
        """Unblock every worker stuck in recv() so cancellation is immediate."""
        with self.lock:
            connections = list(self.open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                if connection.sock is not None:
                    connection.sock.shutdown(socket.SHUT_RDWR)

    # -- workers --

    def _note_progress(self, count: int) -> None:
        now = time.monotonic()
        with self.lock:
            self.transferred += count
            self.lock.notify_all()
            due_state = now - self.last_save >= STATE_SAVE_INTERVAL
            due_progress = now - self.last_progress >= PROGRESS_INTERVAL
            if due_state:
                self.last_save = now
            if due_progress:
                self.last_progress = now
        if due_state:
            self._save_state()
        if due_progress and self.progress and self.state:
            self.progress(self.state.bytes_present, self.state.size)

    def _save_state(self) -> None:
        with self.lock:
            if self.state is None:
                return
            data = self.state.to_json()
        with contextlib.suppress(CivitError):
            atomic_write(self.state_path, data, durable=False)

    def _receive(
        self, fd: int, segment: Segment, opened: _Response
    ) -> http.client.HTTPConnection | None:
        """Copy the body of ``opened`` into ``segment`` until it is done or drops.

        Returns the connection, ready for another request, if the whole body was read
        and the server keeps connections alive; otherwise closes it and returns None.
        """
        buffer = bytearray(BUFFER_SIZE)
        view = memoryview(buffer)
        response = opened.response
        try:
            while not self.cancelled.is_set():
                with self.lock:
                    want = min(BUFFER_SIZE, segment.end - segment.done)
                if want <= 0:
                    break
                try:
                    count = _fill(response, view[:want])
                except (OSError, http.client.HTTPException) as exc:
                    raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
                if count == 0:
                    raise _Retryable("connection closed early")
                if segment.done == 0 and _HTML_START.match(bytes(view[:64])):
                    raise AuthError(
                        "the storage host sent an HTML page instead of the file",
                        hint=HTML_HINT,
                    )
                written = 0
                while written < count:
                    piece = view[written : min(count, written + WRITE_SLICE)]
                    written += os.pwrite(fd, piece, segment.done + written)
                with self.lock:
                    segment.done += count
                self._note_progress(count)
        except BaseException:
            self._close(opened.connection)
            raise
        if segment.done == opened.end and not response.will_close:
            response.close()  # releases the body reader; the socket stays open
            return opened.connection
        self._close(opened.connection)
        return None

    def _run_segment(
        self,
        fd: int,
        segment: Segment,
        connection: http.client.HTTPConnection | None,
    ) -> http.client.HTTPConnection | None:
        """Fetch ``segment`` with reconnects; return a connection worth reusing, if any."""
        failures = 0
        while segment.remaining and not self.cancelled.is_set():
            before = segment.done
            url = self.url
            try:
                assert self.state is not None
                opened = self._open(
                    url, segment.done, segment.end, self.state.validator, reuse=connection
                )
                connection = None
                if opened.total != self.state.size:
                    self._close(opened.connection)
                    raise _RangeIgnored(
                        f"size changed from {self.state.size} to {opened.total} bytes"
                    )
                connection = self._receive(fd, segment, opened)
            except _LinkExpired:
                self._refresh_url(url)
                continue
            except _Retryable as exc:
                failures = 0 if segment.done > before else failures + 1
                if failures >= MAX_FAILURES_WITHOUT_PROGRESS:
                    raise NetworkError(
                        f"download stopped making progress ({exc})",
                        hint="the partial file is kept; run the same command again to resume",
                    ) from exc
                self._sleep_before_retry(failures, exc.retry_after)
        return connection

    def _sleep_before_retry(self, failures: int, retry_after: float | None) -> None:
        delay = retry_after
        if delay is None:
            delay = min(30.0, self.retry_base * 2.0 ** max(failures - 1, 0))
            delay *= random.uniform(0.5, 1.0)
        self.cancelled.wait(delay)

    def _claim(self) -> Segment | None:
        """The first piece nobody works on: pieces go out front to back, so the
        contiguous frontier (and the hasher behind it) moves at full speed."""
        with self.lock:
            assert self.state is not None
            for segment in self.state.segments:
                if segment.remaining and not segment.claimed:
                    segment.claimed = True
                    return segment
        return None

    def _steal(self) -> Segment | None:
        """Split the largest unfinished segment so an idle connection can help."""
        with self.lock:
            assert self.state is not None
            busiest = max(self.state.segments, key=lambda s: s.remaining, default=None)
            if busiest is None or busiest.remaining < 2 * MIN_SEGMENT:
                return None
            middle = busiest.done + busiest.remaining // 2
            stolen = Segment(middle, busiest.end, middle, claimed=True)
            busiest.end = middle
            self.state.segments.append(stolen)
            self.state.segments.sort(key=lambda s: s.start)
            return stolen

    # -- hashing --

    def _frontier(self) -> int:
        assert self.state is not None
        unfinished = [s.done for s in self.state.segments if s.remaining]
        return min(unfinished) if unfinished else self.state.size

    def _hash_follow(self, fd: int, digester: Digester) -> None:
        """Hash the file front to back, never past the contiguous written frontier.

        Blocks are read back from the page cache into two alternating buffers, so the
        next read overlaps the hashing of the previous block.
        """
        assert self.state is not None
        buffers = (memoryview(bytearray(HASH_BLOCK)), memoryview(bytearray(HASH_BLOCK)))
        which = 0
        pending = False
        position = released = 0
        size = self.state.size
        try:
            while position < size:
                with self.lock:
                    while self._frontier() <= position and not self.cancelled.is_set():
                        self.lock.wait(0.5)
                    if self.cancelled.is_set():
                        return
                    limit = self._frontier()
                while position < limit:
                    block = buffers[which][: min(HASH_BLOCK, limit - position)]
                    count = os.preadv(fd, [block], position)
                    if count <= 0:
                        raise OSError(errno.EIO, f"short read from {self.part}")
                    if pending:
                        digester.wait()
                    digester.submit(block[:count])
                    pending = True
                    which ^= 1
                    position += count
                    if position - released >= WRITEBACK_STEP:
                        release_to_disk(fd, released, position - released)
                        released = position
            if pending:
                digester.wait()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._fail(exc)

    # -- orchestration --

    def _fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = exc
            self.cancelled.set()
            self.lock.notify_all()
        self._abort_connections()

    def _previous_state(self) -> PartState | None:
        """The state of an earlier run of this same file, if its ``.part`` is usable."""
        previous = PartState.load(self.state_path)
        usable = (
            previous is not None
            and previous.file_key == self.file_key
            and previous.sha256 == self.expected.sha256
            and self.part.is_file()
            and self.part.stat().st_size == previous.size
        )
        if not usable:
            self._discard()
            return None
        return previous

    def _discard(self) -> None:
        self.state_path.unlink(missing_ok=True)
        self.part.unlink(missing_ok=True)

    def _split_for(self, connections: int) -> None:
        assert self.state is not None
        segments = [s for s in self.state.segments if s.remaining]
        while len(segments) < connections:
            largest = max(segments, key=lambda s: s.remaining, default=None)
            if largest is None or largest.remaining < 2 * MIN_SEGMENT:
                break
            middle = largest.done + largest.remaining // 2
            segments.append(Segment(middle, largest.end, middle))
            largest.end = middle
        self.state.segments = sorted(segments, key=lambda s: s.start)

    def _probe(self, start: int, end: int | None, validator: str | None) -> _Response:
        """The first request: it tells the size and whether ranges work, and its body
        feeds the segment ``[start, end)``. Bounded to that segment, so nothing the
        server sends past it is wasted in socket buffers."""
        failures = 0
        while True:
            if not self.url:
                self.url = self.resolve()
            url = self.url
            try:
                return self._open(url, start, end, validator, accept_full=True)
            except _LinkExpired:
                self._refresh_url(url)
            except _Retryable as exc:
                failures += 1
                if failures >= MAX_FAILURES_WITHOUT_PROGRESS:
                    raise NetworkError(
                        f"cannot start the download ({exc})",
                        hint="check your connection and run the same command again",
                    ) from exc
                self._sleep_before_retry(failures, exc.retry_after)

    def run(self) -> tuple[int, dict[str, str]]:
        """Fetch everything; return (size, digests). The ``.part`` is complete after."""
        last: _RangeIgnored | None = None
        for _ in range(3):
            try:
                return self._attempt()
            except _RangeIgnored as exc:
                # The server cannot do ranges or the file changed under us: nothing on
                # disk can be trusted, so start over from byte zero on one connection.
                last = exc
                self._discard()
                self.connections = 1
        raise NetworkError(f"the storage host keeps answering inconsistently ({last})")

    def _start(self) -> _Response | None:
        """Resume or start fresh; return the probe whose body feeds the first segment."""
        previous = self._previous_state()
        if previous is not None:
            self.state = previous
            self._split_for(self.connections)
            resume_at = previous.first_unfinished()
            if resume_at is None:
                return None  # complete on disk, killed before the commit
            probe = self._probe(resume_at.done, resume_at.end, previous.validator)
            if probe.start == resume_at.done and probe.total == previous.size:
                previous.validator = probe.validator or previous.validator
                return probe
            if probe.start != 0:
                self._close(probe.connection)
                raise _RangeIgnored(f"size changed to {probe.total} bytes")
        else:
            first_end = None
            if self.connections > 1 and self.size_hint:
                first_end = piece_size(self.size_hint, self.connections)
            probe = self._probe(0, first_end, None)
        self._discard()
        if probe.response.status != 206:
            self.connections = 1
        segments = [Segment(0, probe.end, 0)]
        step = piece_size(probe.total, self.connections)
        for start in range(probe.end, probe.total, step):
            segments.append(Segment(start, min(start + step, probe.total), start))
        self.state = PartState(
            self.file_key, probe.total, self.expected.sha256, probe.validator, segments
        )
        return probe

    def _attempt(self) -> tuple[int, dict[str, str]]:
        self.error = None
        self.cancelled.clear()
        probe = self._start()
        state = self.state
        assert state is not None
        self.resumed_from = state.bytes_present
        try:
            check_free_space(self.part.parent, state.size - self.resumed_from)
        except BaseException:
            if probe is not None:
                self._close(probe.connection)
            raise
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.part, flags, 0o644)
        threads: list[threading.Thread] = []
        digester = Digester(self.algorithms)
        try:
            if os.fstat(fd).st_size != state.size:
                preallocate(fd, state.size, self.part)
            self._save_state()
            if self.progress:
                self.progress(self.resumed_from, state.size)
            unfinished = [segment for segment in state.segments if segment.remaining]
            for index in range(min(self.connections, len(unfinished))):
                fed = None
                if index == 0 and probe is not None:
                    fed, probe = probe, None
                threads.append(threading.Thread(target=self._worker, args=(fd, fed), daemon=True))
            threads.append(
                threading.Thread(target=self._hash_follow, args=(fd, digester), daemon=True)
            )
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        except BaseException as exc:
            self._fail(exc)
            raise
        finally:
            if probe is not None:
                self._close(probe.connection)
            self.cancelled.set()
            with self.lock:
                self.lock.notify_all()
            self._abort_connections()
            alive = False
            for thread in threads:
                thread.join(30)
                alive = alive or thread.is_alive()
            self._save_state()
            if not alive:  # never close an fd a stuck worker might still write to
                os.close(fd)
            digester.close()
        if self.error is not None:
            raise self.error
        if self.progress:
            self.progress(state.size, state.size)
        return state.size, digester.hexdigests()

    def _worker(self, fd: int, probe: _Response | None) -> None:
        """Fetch pieces front to back on one kept-alive connection (starting with the
        probe's, if given), then help others by taking half of the largest one left."""
        connection = None
        try:
            if probe is not None:
                state = self.state
                assert state is not None
                with self.lock:
                    segment = next(s for s in state.segments if s.done == probe.start)
                    segment.claimed = True
                # A drop here is fine: _run_segment reconnects from where the body stopped.
                with contextlib.suppress(_Retryable):
                    connection = self._receive(fd, segment, probe)
                connection = self._run_segment(fd, segment, connection)
            while not self.cancelled.is_set():
                piece = self._claim() or self._steal()
                if piece is None:
                    return
                connection = self._run_segment(fd, piece, connection)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._fail(exc)
        finally:
            if connection is not None:
                self._close(connection)


# -- public entry points -----------------------------------------------------------


def target_lock(target: Path) -> filelock.FileLock:
    """The inter-process lock every writer of ``target`` holds while fetching it.

    Lock files live in the cache folder, keyed by the target's absolute path, so WebUI
    model folders stay clean.
    """
    folder = cache_dir() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:32]
    return filelock.FileLock(folder / f"{key}.lock")


def fetch(
    resolve: LinkResolver,
    target: Path,
    *,
    expected: Hashes,
    file_key: str,
    size_hint: int | None = None,
    connections: int | None = None,
    verify: bool = True,
    stall_timeout: float = 30.0,
    progress: ProgressCallback | None = None,
    retry_base: float = 1.0,
) -> tuple[int, dict[str, str], tuple[str, ...], int, int]:
    """Fetch the bytes behind ``resolve()`` into ``target``: resumable, verified, atomic.

    The caller holds the target's lock. On success ``target`` holds verified bytes;
    on an integrity failure nothing is at ``target`` (an existing file is untouched)
    and the partial file is removed; on any other failure the partial file and its
    state stay for the next run to resume.

    Returns:
        (size, digests, verified algorithms, bytes transferred, resumed from).

    Raises:
        IntegrityError: the bytes do not match ``expected`` (exit 7).
        AuthError, NotFoundError, NetworkError, DiskSpaceError: see their docs.
    """
    part = target.with_name(target.name + ".part")
    state_path = target.with_name(target.name + ".part.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    algorithms = digests_to_compute(expected) if verify else ("sha256",)
    transfer = _Transfer(
        resolve,
        part,
        state_path,
        file_key=file_key,
        expected=expected,
        size_hint=size_hint,
        connections=connections or default_connections(size_hint),
        stall_timeout=stall_timeout,
        algorithms=algorithms,
        progress=progress,
        retry_base=retry_base,
    )
    if size_hint:
        existing = part.stat().st_size if part.exists() else 0
        check_free_space(target.parent, max(size_hint - existing, 0))
    try:
        size, digests = transfer.run()
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
    verified: tuple[str, ...] = ()
    try:
        if verify:
            verified = expected.check(digests, path=str(target))
    except IntegrityError:
        part.unlink(missing_ok=True)
        state_path.unlink(missing_ok=True)
        raise
    commit(part, target)
    state_path.unlink(missing_ok=True)
    return size, digests, verified, transfer.transferred, transfer.resumed_from
