"""A cache of file digests keyed by (device, inode, size, mtime_ns), in SQLite.

An unchanged file is never hashed twice: :func:`civit.hashing.hash_file` asks the cache
first and records what it computed. The cache is only an optimisation; any problem
with it (locked, read-only, corrupt) makes it answer "unknown", never raise.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from stat import S_ISREG
from types import TracebackType
from typing import Literal, TypeVar

from civit.fsutil import cache_dir
from civit.records import HASH_ALGORITHMS, parse_algorithms

__all__ = ["NOT_APPLICABLE", "CacheOption", "HashCache", "cache_key", "opened_cache"]

_T = TypeVar("_T")


_CacheKey = tuple[int, int, int, int]
_TABLE = "digests_v1"  # a new layout gets a new table, so old and new civit share the file
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {_TABLE} (
    device INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    {", ".join(f"{name} TEXT" for name in HASH_ALGORITHMS)},
    PRIMARY KEY (device, inode)
) WITHOUT ROWID
"""
# Stored for an algorithm that was computed but does not apply (AutoV3 of a .ckpt), so
# asking for it again is still a cache hit.
NOT_APPLICABLE = ""


def _signed64(value: int) -> int:
    """SQLite integers are signed 64-bit; some filesystems use the full unsigned range."""
    return value - (1 << 64) if value >= 1 << 63 else value


def cache_key(stat: os.stat_result) -> _CacheKey | None:
    # Pipes and devices have no stable content; st_ino 0 means no stable identity.
    if not S_ISREG(stat.st_mode) or not stat.st_ino:
        return None
    return (_signed64(stat.st_dev), _signed64(stat.st_ino), stat.st_size, stat.st_mtime_ns)


def _is_corrupt(exc: sqlite3.Error) -> bool:
    """Whether SQLite said "not a database" or "disk image is malformed".

    Those come as plain ``DatabaseError``; its subclasses mean a lock, a full disk, a
    constraint or a bug, none of which justifies deleting the cache.
    """
    return type(exc) is sqlite3.DatabaseError


class HashCache:
    """Digests of local files, keyed by (device, inode, size, mtime_ns), in SQLite.

    It is only an optimisation: a missing, locked, read-only or corrupt database never
    raises. A file that is not a database is deleted and rebuilt. Several processes and
    threads may share one cache file (WAL mode, busy timeout, one write transaction per
    :meth:`store`).

    After writing or verifying a file, record what is known about it::

        cache.store(path.stat(), digests)

    and the next :meth:`lookup` (or :func:`hash_file`) answers without reading it.
    """

    FILE_NAME = "hashes.sqlite3"

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 10.0) -> None:
        """Open (lazily) the cache database at ``path``.

        Args:
            path: the SQLite file; its folder is created on first use.
            timeout: seconds to wait for another process's write lock.
        """
        self.path = Path(path)
        self.timeout = timeout
        self._connection: sqlite3.Connection | None = None
        self._unusable = False
        self._lock = threading.Lock()

    @classmethod
    def default(cls) -> HashCache:
        """The user's cache: ``$CIVIT_CACHE_DIR`` or the platform cache folder."""
        return cls(cache_dir() / cls.FILE_NAME)

    @classmethod
    def disabled(cls) -> HashCache:
        """A cache that never answers and never records: every file is read in full."""
        cache = cls(os.devnull)
        cache._unusable = True
        return cache

    def __enter__(self) -> HashCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HashCache({str(self.path)!r})"

    def lookup(
        self, path_or_stat: str | os.PathLike[str] | os.stat_result, algorithms: Iterable[str]
    ) -> dict[str, str] | None:
        """The cached digests of a file, if every one of ``algorithms`` is known.

        Args:
            path_or_stat: the file, or its ``os.stat`` result (preferably ``os.fstat`` of
                the open file that is about to be trusted).
            algorithms: the digests wanted (see :func:`parse_algorithms`).

        Returns:
            ``{algorithm: HEX}`` in canonical order (``autov3`` left out when it does not
            apply to the file), or ``None`` on a miss or any cache problem.

        Raises:
            UsageError: an unknown algorithm name.
        """
        wanted = parse_algorithms(algorithms)
        if isinstance(path_or_stat, os.stat_result):
            stat = path_or_stat
        else:
            try:
                stat = Path(path_or_stat).stat()
            except OSError:
                return None
        key = cache_key(stat)
        if key is None:
            return None
        row = self._run(
            lambda connection: connection.execute(
                f"SELECT {', '.join(HASH_ALGORITHMS)} FROM {_TABLE} "
                "WHERE device = ? AND inode = ? AND size = ? AND mtime_ns = ?",
                key,
            ).fetchone()
        )
        if row is None:
            return None
        known = {
            name: value
            for name, value in zip(HASH_ALGORITHMS, row, strict=True)
            if value is not None
        }
        if "autov2" not in known and known.get("sha256"):
            known["autov2"] = known["sha256"][:10]
        if any(name not in known for name in wanted):
            return None
        return {name: known[name] for name in wanted if known[name] != NOT_APPLICABLE}

    def store(self, stat: os.stat_result, digests: Mapping[str, str]) -> None:
        """Remember ``digests`` for the file ``stat`` describes.

        Digests already cached for the same file version are kept and merged; a row for
        an older version of the file (other size or mtime) is replaced.

        Args:
            stat: ``os.stat``/``os.fstat`` of the file, taken when its bytes were known
                (after a verified download, or before and after hashing it).
            digests: ``{algorithm: HEX}``; unknown names are ignored, and an empty
                string records that the algorithm does not apply (AutoV3 of a
                non-safetensors file).
        """
        key = cache_key(stat)
        values = {
            name.lower(): value.upper()
            for name, value in digests.items()
            if name.lower() in HASH_ALGORITHMS
        }
        if key is None or not values:
            return

        def write(connection: sqlite3.Connection) -> None:
            columns = ", ".join(HASH_ALGORITHMS)
            # IMMEDIATE takes the write lock up front: a read that later upgrades to a
            # write can fail with SQLITE_BUSY without waiting in WAL mode.
            connection.execute("BEGIN IMMEDIATE")
            try:
                row = connection.execute(
                    f"SELECT size, mtime_ns, {columns} FROM {_TABLE} "
                    "WHERE device = ? AND inode = ?",
                    key[:2],
                ).fetchone()
                merged: dict[str, str | None] = dict.fromkeys(HASH_ALGORITHMS)
                if row is not None and tuple(row[:2]) == key[2:]:
                    merged.update(zip(HASH_ALGORITHMS, row[2:], strict=True))
                merged.update(values)
                connection.execute(
                    f"INSERT OR REPLACE INTO {_TABLE} (device, inode, size, mtime_ns, "
                    f"{columns}) VALUES ({', '.join('?' * (4 + len(HASH_ALGORITHMS)))})",
                    (*key, *merged.values()),
                )
                connection.execute("COMMIT")
            finally:
                if connection.in_transaction:
                    connection.rollback()

        self._run(write)

    def close(self) -> None:
        """Close the database connection; the cache reopens it if used again."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _run(self, operation: Callable[[sqlite3.Connection], _T]) -> _T | None:
        """``operation`` on the open database, or ``None`` if the cache is unavailable."""
        with self._lock:
            connection = self._connection or self._open()
            if connection is None:
                return None
            try:
                return operation(connection)
            except sqlite3.Error as exc:  # locked past the timeout, disk full, read-only...
                if _is_corrupt(exc):
                    connection.close()
                    self._connection = None
                    with contextlib.suppress(sqlite3.Error, OSError):
                        self._rebuild()
                return None

    def _open(self) -> sqlite3.Connection | None:
        if self._unusable:
            return None
        try:
            try:
                self._connection = self._connect()
            except sqlite3.Error as exc:
                if not _is_corrupt(exc):
                    raise
                self._rebuild()
                self._connection = self._connect()
        except (sqlite3.Error, OSError):
            # Do not wait out the timeout again on every file of a long run.
            self._unusable = True
            return None
        return self._connection

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            # Losing the last writes on power failure only costs a re-hash.
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute(_SCHEMA)
        except BaseException:
            connection.close()
            raise
        return connection

    def _rebuild(self) -> None:
        """Delete the database if it is (still) unreadable.

        Another process may have rebuilt it meanwhile, hence the lock and second look.

        Raises:
            OSError: the lock is held past the timeout (or cannot be taken).
        """
        import filelock  # rarely needed: not worth its import time on every start

        try:
            with filelock.FileLock(f"{self.path}.lock", timeout=self.timeout):
                if not self._healthy():
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        except filelock.Timeout as exc:
            raise OSError(f"{self.path} is being rebuilt by another process") from exc

    def _healthy(self) -> bool:
        try:
            probe = sqlite3.connect(self.path, timeout=self.timeout)
            try:
                return bool(probe.execute("PRAGMA quick_check").fetchall() == [("ok",)])
            finally:
                probe.close()
        except sqlite3.Error as exc:
            if _is_corrupt(exc):
                return False
            raise


#: What every public function's ``cache`` argument takes: ``None`` (the default) is the
#: user's cache (:meth:`HashCache.default`, opened and closed by the call), ``False``
#: is no cache at all (every byte is read, nothing is recorded), a :class:`HashCache`
#: is used as is and left open.
CacheOption = HashCache | Literal[False] | None


@contextlib.contextmanager
def opened_cache(option: CacheOption) -> Iterator[HashCache]:
    """The :class:`HashCache` a ``cache`` argument means, closed afterwards if opened here.

    >>> with opened_cache(False) as cache:
    ...     cache.lookup(__file__, ["sha256"]) is None
    True
    """
    if isinstance(option, HashCache):
        yield option
        return
    cache = HashCache.default() if option is None else HashCache.disabled()
    try:
        yield cache
    finally:
        cache.close()
