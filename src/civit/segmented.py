"""One segmented transfer: parallel ranged requests into one ``.part``, hashed as written.

Connections claim pieces front to back on kept-alive connections (idle ones split the
largest piece left), write them by offset into a preallocated ``.part``, and a hasher
thread follows the contiguous written frontier, so verification ends right after the
last byte arrives. ``.part.json`` records progress for resume. :func:`civit.transfer.fetch`
drives one :class:`SegmentedTransfer` and commits what it verified.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import random
import threading
import time
from pathlib import Path

from civit.cdn import (
    LinkExpired,
    LinkResolver,
    Opened,
    RangeIgnored,
    Retryable,
    Storage,
    html_page_error,
    looks_like_html,
)
from civit.errors import (
    CivitError,
    IntegrityError,
    NetworkError,
)
from civit.fsutil import (
    atomic_write,
    check_free_space,
    human_bytes,
)
from civit.hashing import Digester, ProgressCallback
from civit.network import ProxyRules
from civit.pacing import RateLimit
from civit.partfile import PartFile, PartState, ReadAt, Segment, WriteAt, reject_unusual_file
from civit.records import Hashes

__all__ = ["SegmentedTransfer", "default_connections", "piece_size"]

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
MAX_FAILURES_WITHOUT_PROGRESS = 6
MAX_LINK_REFRESHES = 8
#: A connection slower than this for a whole stall timeout is dropped and reopened:
#: a host trickling a byte a second would otherwise never trip the stall timeout.
MIN_RATE = 1024
#: ``sizeKB`` is rounded (sometimes to whole KiB): a byte count this close matches it.
SIZE_KB_SLACK = 1024


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


def _split_largest(segments: list[Segment], *, claimed: bool) -> Segment | None:
    """Halve the segment with the most bytes left, if each half keeps at least
    MIN_SEGMENT; return the back half, put in ``segments`` (kept in order of start)."""
    largest = max(segments, key=lambda s: s.remaining, default=None)
    if largest is None or largest.remaining < 2 * MIN_SEGMENT:
        return None
    middle = largest.done + largest.remaining // 2
    back = Segment(middle, largest.end, middle, claimed=claimed)
    largest.end = middle
    segments.append(back)
    segments.sort(key=lambda s: s.start)
    return back


class SegmentedTransfer:
    """One fetch of one URL into one ``.part`` file, with its worker threads."""

    def __init__(
        self,
        resolve: LinkResolver,
        part: Path,
        state_path: Path,
        *,
        file_key: str,
        expected: Hashes,
        expected_size: int | None,
        size_hint: int | None,
        connections: int,
        stall_timeout: float,
        algorithms: tuple[str, ...],
        progress: ProgressCallback | None,
        retry_base: float,
        proxies: ProxyRules,
        limit_rate: RateLimit | None,
        deadline: float | None,
    ) -> None:
        self.resolve = resolve
        self.part = part
        self.state_path = state_path
        self.file_key = file_key
        self.expected = expected
        self.expected_size = expected_size
        self.size_hint = size_hint
        self.connections = max(1, connections)
        self.stall_timeout = stall_timeout
        self.algorithms = algorithms
        self.progress = progress
        self.retry_base = retry_base
        self.storage = Storage(timeout=stall_timeout, proxies=proxies)
        self.deadline = None if deadline is None else time.monotonic() + deadline
        self.deadline_seconds = deadline
        self.lock = threading.Condition()
        self.cancelled = threading.Event()
        self.limiter = limit_rate
        self.min_rate = MIN_RATE if not limit_rate else min(MIN_RATE, limit_rate.rate / 4)
        self.error: BaseException | None = None
        self.url = ""  # resolved lazily: a complete .part needs no link at all
        self.refreshes = 0
        self.transferred = 0
        self.resumed_from = 0
        self.state: PartState | None = None
        self.file: PartFile | None = None
        #: Byte ranges an earlier run left, unproven until the digests match.
        self.inherited: list[tuple[int, int]] = []
        self.last_save = 0.0
        self.last_progress = 0.0
        #: A body without a length is being streamed: no state to save, no total.
        self.unknown_size = False
        #: A worker did not stop when told: its descriptor must stay open.
        self.stuck = False

    # -- links --

    def _current_url(self) -> str:
        with self.lock:
            if self.url:
                return self.url
        return self._refresh_url("")

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

    # -- progress and state --

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
            if self.unknown_size:
                self.progress(self.transferred, None)
            else:
                self.progress(self.state.bytes_present, self.state.size)

    def _save_state(self) -> None:
        with self.lock:
            if self.state is None or self.unknown_size:
                return
            data = self.state.to_json()
        with contextlib.suppress(CivitError):
            atomic_write(self.state_path, data, durable=False)

    # -- workers --

    def _receive(
        self, write_at: WriteAt, segment: Segment, opened: Opened
    ) -> http.client.HTTPConnection | None:
        """Copy the body of ``opened`` into ``segment`` until either ends, or it drops.

        Returns the connection, ready for another request, if the whole body was read
        and the server keeps connections alive; otherwise closes it and returns None.
        """
        buffer = bytearray(BUFFER_SIZE)
        view = memoryview(buffer)
        response = opened.response
        body_end = opened.end if opened.end is not None else 1 << 62
        chunk = self.limiter.chunk if self.limiter else BUFFER_SIZE
        window_start = time.monotonic()
        window_bytes = 0
        started_at = segment.done
        try:
            while not self.cancelled.is_set():
                with self.lock:
                    want = min(chunk, min(segment.end, body_end) - segment.done)
                if want <= 0:
                    break
                try:
                    count = _fill(response, view[:want])
                except (OSError, http.client.HTTPException) as exc:
                    raise Retryable(f"{type(exc).__name__}: {exc}") from exc
                if count == 0:
                    if opened.end is None and segment.done > started_at:
                        break  # a body without a length ends when the connection closes
                    raise Retryable("connection closed early")
                if segment.done == 0 and looks_like_html(bytes(view[:64])):
                    raise html_page_error()
                written = 0
                while written < count:
                    piece = view[written : min(count, written + WRITE_SLICE)]
                    written += write_at(piece, segment.done + written)
                with self.lock:
                    segment.done += count
                self._note_progress(count)
                if self.limiter is not None:
                    self.limiter.take(count, self.cancelled)
                window_bytes += count
                now = time.monotonic()
                if now - window_start >= self.stall_timeout:
                    if window_bytes < self.min_rate * (now - window_start):
                        raise Retryable(
                            f"slower than {human_bytes(self.min_rate)}/s for "
                            f"{self.stall_timeout:g} s"
                        )
                    window_start, window_bytes = now, 0
        except BaseException:
            self.storage.close(opened.connection)
            raise
        if segment.done == opened.end and not response.will_close:
            response.close()  # releases the body reader; the socket stays open
            return opened.connection
        self.storage.close(opened.connection)
        return None

    def _run_segment(
        self,
        write_at: WriteAt,
        segment: Segment,
        connection: http.client.HTTPConnection | None,
    ) -> http.client.HTTPConnection | None:
        """Fetch ``segment`` with reconnects; return a connection worth reusing, if any."""
        failures = 0
        while segment.remaining and not self.cancelled.is_set():
            before = segment.done
            url = self._current_url()
            try:
                assert self.state is not None
                opened = self.storage.get(
                    url, segment.done, segment.end, self.state.validator, reuse=connection
                )
                connection = None
                if opened.total is not None and opened.total != self.state.size:
                    self.storage.close(opened.connection)
                    raise RangeIgnored(
                        f"size changed from {self.state.size} to {opened.total} bytes"
                    )
                connection = self._receive(write_at, segment, opened)
            except LinkExpired:
                self._refresh_url(url)
                continue
            except Retryable as exc:
                # A drop after real progress starts the count afresh; a trickle's few
                # bytes do not, so a host that never gets faster ends the run.
                progressed = segment.done - before >= self.min_rate * self.stall_timeout
                failures = 0 if progressed else failures + 1
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
        if self.deadline is not None:
            delay = min(delay, max(self.deadline - time.monotonic(), 0.0))
        self.cancelled.wait(delay)
        self._check_deadline()

    def _check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise NetworkError(
                f"the download did not finish within --deadline {self.deadline_seconds:g} s",
                hint="the partial file is kept; run the same command again to resume",
            )

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
            return _split_largest(self.state.segments, claimed=True)

    def _worker(self, fed: tuple[Opened, Segment] | None) -> None:
        """Fetch pieces front to back on one kept-alive connection (starting with the
        probe's body and segment, if given), then help others by taking half of the
        largest one left."""
        connection = None
        try:
            assert self.file is not None
            write_at = self.file.writer()
            if fed is not None:
                probe, segment = fed
                # A drop here is fine: _run_segment reconnects from where the body stopped.
                with contextlib.suppress(Retryable):
                    connection = self._receive(write_at, segment, probe)
                connection = self._run_segment(write_at, segment, connection)
            while not self.cancelled.is_set():
                piece = self._claim() or self._steal()
                if piece is None:
                    return
                connection = self._run_segment(write_at, piece, connection)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._fail(exc)
        finally:
            if connection is not None:
                self.storage.close(connection)

    # -- hashing --

    def _frontier(self) -> int:
        assert self.state is not None
        unfinished = [s.done for s in self.state.segments if s.remaining]
        return min(unfinished) if unfinished else self.state.size

    def _hash_follow(self, read_at: ReadAt, digester: Digester) -> None:
        """Hash the file front to back, never past the contiguous written frontier.

        Blocks are read back from the page cache into two alternating buffers, so the
        next read overlaps the hashing of the previous block.
        """
        assert self.state is not None and self.file is not None
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
                    count = read_at(block, position)
                    if count <= 0:
                        raise OSError(errno.EIO, f"short read from {self.part}")
                    if pending:
                        digester.wait()
                    digester.submit(block[:count])
                    pending = True
                    which ^= 1
                    position += count
                    if position - released >= WRITEBACK_STEP:
                        self.file.release_to_disk(released, position - released)
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
        self.storage.abort_all()

    def _previous_state(self) -> PartState | None:
        """The state of an earlier run of this same file, if its ``.part`` is usable.

        Unfinished work resumes only under a validator (ETag or Last-Modified): without
        one, bytes of a file changed upstream could not be told from ours.

        An unusable ``.part`` is left where it is until this source has answered (the
        fresh start discards it then): a ``.part`` of another source, say Civitai's
        half-done download of a file a mirror is now asked for first, must survive the
        mirror's miss.
        """
        previous = PartState.load(self.state_path)
        part = reject_unusual_file(self.part, "a partial download")
        usable = (
            previous is not None
            and part is not None
            and previous.file_key == self.file_key
            and previous.sha256 == self.expected.sha256
            and part.st_size == previous.size
            and (previous.validator is not None or previous.first_unfinished() is None)
            and (self.expected_size is None or previous.size == self.expected_size)
        )
        return previous if usable else None

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        try:
            self.state_path.unlink(missing_ok=True)
            self.part.unlink(missing_ok=True)
        except OSError as exc:
            raise CivitError(
                f"cannot remove {self.part} or its state: {exc.strerror or exc}",
                hint="move it away, then run the same command again",
            ) from exc

    def _split_for(self, connections: int) -> None:
        assert self.state is not None
        segments = [s for s in self.state.segments if s.remaining]
        while len(segments) < connections:
            if _split_largest(segments, claimed=False) is None:
                break
        self.state.segments = segments

    def _probe(self, start: int, end: int | None, validator: str | None) -> Opened:
        """The first request: it tells the size and whether ranges work, and its body
        feeds the segment ``[start, end)``. Bounded to that segment, so nothing the
        server sends past it is wasted in socket buffers."""
        failures = 0
        while True:
            url = self._current_url()
            try:
                return self.storage.get(url, start, end, validator, accept_full=True)
            except LinkExpired:
                self._refresh_url(url)
            except Retryable as exc:
                failures += 1
                if failures >= MAX_FAILURES_WITHOUT_PROGRESS:
                    raise NetworkError(
                        f"cannot start the download ({exc})",
                        hint="check your connection and run the same command again",
                    ) from exc
                self._sleep_before_retry(failures, exc.retry_after)

    def check_size(self, size: int) -> None:
        """Refuse a file whose byte count disagrees with the record (before any byte is
        written when the host says the size up front).

        Raises:
            IntegrityError: not the exact size, or not within ``sizeKB``'s rounding.
        """
        if self.expected_size is not None:
            if size != self.expected_size:
                raise _size_mismatch(self.part, self.expected_size, size, "exactly")
        elif self.size_hint is not None and abs(size - self.size_hint) > SIZE_KB_SLACK:
            raise _size_mismatch(self.part, self.size_hint, size, "about")

    def run(self) -> tuple[int, dict[str, str]]:
        """Fetch everything; return (size, digests). The ``.part`` is complete after."""
        last: RangeIgnored | None = None
        for _ in range(3):
            try:
                probe = self._start()
                if probe is not None and probe.total is None and self.expected_size is None:
                    return self._stream_to_end(probe)
                return self._transfer(probe)
            except RangeIgnored as exc:
                # The server cannot do ranges or the file changed under us: nothing on
                # disk can be trusted, so start over from byte zero on one connection.
                last = exc
                self.discard()
                self.connections = 1
                self.inherited = []
        raise NetworkError(f"the storage host keeps answering inconsistently ({last})")

    def recheck(self) -> tuple[int, dict[str, str]]:
        """Fetch again the bytes an earlier run left (its state may have claimed more
        than reached the disk), then hash the whole file again."""
        assert self.state is not None
        self.state.segments = [Segment(a, b, a) for a, b in self.inherited]
        self.inherited = []
        self.resumed_from = 0
        return self._transfer(None)

    def _start(self) -> Opened | None:
        """Resume or start fresh; return the probe whose body feeds the first segment."""
        previous = self._previous_state()
        if previous is not None:
            self.state = previous
            self.inherited = previous.present_ranges()
            self._split_for(self.connections)
            resume_at = previous.first_unfinished()
            if resume_at is None:
                return None  # complete on disk, killed before the commit
            probe = self._probe(resume_at.done, resume_at.end, previous.validator)
            if probe.start == resume_at.done and probe.total == previous.size:
                previous.validator = probe.validator or previous.validator
                return probe
            self.storage.close(probe.connection)
            raise RangeIgnored(f"the file is now {probe.total} bytes, or ranges stopped working")
        first_end = None
        if self.connections > 1 and self.size_hint:
            first_end = piece_size(self.size_hint, self.connections)
        probe = self._probe(0, first_end, None)
        try:
            self._check_probe(probe)
        except BaseException:
            self.storage.close(probe.connection)
            raise
        self.discard()
        total = probe.total if probe.total is not None else self.expected_size
        if total is None:
            return probe  # no length at all: streamed to the end, see _stream_to_end
        if probe.response.status != 206:
            self.connections = 1
        first = probe.end if probe.end is not None else total
        segments = [Segment(0, first, 0)]
        step = piece_size(total, self.connections)
        for start in range(first, total, step):
            segments.append(Segment(start, min(start + step, total), start))
        self.state = PartState(
            self.file_key, total, self.expected.sha256, probe.validator, segments
        )
        return probe

    def _check_probe(self, probe: Opened) -> None:
        """What the first answer proves wrong before any byte is written: an HTML page
        sent under a binary content type, and the size."""
        response = probe.response
        if not response.chunked and (probe.end is None or probe.end > probe.start):
            with contextlib.suppress(OSError, ValueError):
                if looks_like_html(response.fp.peek(64)[:64]):
                    raise html_page_error()
        if probe.total is not None:
            self.check_size(probe.total)

    def _open_file(self) -> PartFile:
        if self.file is None:
            self.file = PartFile.open(self.part)
        return self.file

    def _stream_to_end(self, probe: Opened) -> tuple[int, dict[str, str]]:
        """A body without any length: read it to the end on one connection, then hash.

        Nothing can be resumed (nothing says how long it is), so no state is saved;
        only the digests (or the record's size) can prove what arrived.
        """
        part = self._open_file()
        self.error = None
        self.unknown_size = True
        segment = Segment(0, 1 << 62, 0)
        self.state = PartState(self.file_key, 0, self.expected.sha256, None, [segment])
        try:
            self._receive(part.writer(), segment, probe)
        except Retryable as exc:
            raise NetworkError(
                f"the download broke off ({exc})",
                hint="the storage host sent no length, so civit cannot resume; run the "
                "same command again",
            ) from exc
        self.unknown_size = False
        self.state = PartState(self.file_key, segment.done, self.expected.sha256, None, [])
        os.ftruncate(part.fd, segment.done)
        self.check_size(segment.done)
        digester = Digester(self.algorithms)
        try:
            self._hash_follow(part.reader(), digester)
            if self.error is not None:
                raise self.error
            return segment.done, digester.hexdigests()
        finally:
            digester.close()

    def _transfer(self, probe: Opened | None) -> tuple[int, dict[str, str]]:
        self.error = None
        self.cancelled.clear()
        state = self.state
        assert state is not None
        self.resumed_from = state.bytes_present
        try:
            check_free_space(self.part.parent, state.size - self.resumed_from)
            part = self._open_file()
        except BaseException:
            if probe is not None:
                self.storage.close(probe.connection)
            raise
        threads: list[threading.Thread] = []
        digester = Digester(self.algorithms)
        try:
            if part.size() != state.size:
                part.preallocate(state.size)
            self._save_state()
            if self.progress:
                self.progress(self.resumed_from, state.size)
            unfinished = [segment for segment in state.segments if segment.remaining]
            for index in range(min(self.connections, len(unfinished))):
                fed = None
                if index == 0 and probe is not None:
                    # Claimed before any worker starts, so no other one claims it too.
                    segment = next(s for s in unfinished if s.done == probe.start)
                    segment.claimed = True
                    fed, probe = (probe, segment), None
                threads.append(threading.Thread(target=self._worker, args=(fed,), daemon=True))
            threads.append(
                threading.Thread(
                    target=self._hash_follow, args=(part.reader(), digester), daemon=True
                )
            )
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
                    self._check_deadline()
        except BaseException as exc:
            self._fail(exc)
            raise
        finally:
            if probe is not None:
                self.storage.close(probe.connection)
            self.cancelled.set()
            with self.lock:
                self.lock.notify_all()
            self.storage.abort_all()
            alive = False
            for thread in threads:
                thread.join(30)
                alive = alive or thread.is_alive()
            self._save_state()
            self.stuck = alive
            if not alive:  # never close a handle a stuck worker might still write to
                part.close_handles()
            digester.close()
        if self.error is not None:
            raise self.error
        if self.progress:
            self.progress(state.size, state.size)
        return state.size, digester.hexdigests()

    def close(self) -> None:
        if self.file is not None and not self.stuck:
            self.file.close()
            self.file = None


def _size_mismatch(part: Path, expected: int, actual: int, how: str) -> IntegrityError:
    name = part.name.removesuffix(".part")
    return IntegrityError(
        f"size mismatch for {name}: the record says {how} {expected} bytes, "
        f"the storage host has {actual}",
        path=str(part.with_name(name)),
        algorithm="size",
        expected=str(expected),
        actual=str(actual),
    )
