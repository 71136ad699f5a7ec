"""The inter-process lock every writer of a target holds, and who holds it.

Two civit processes fetching the same target must not write one ``.part`` at once;
the second waits (and says for whom) or gives up after ``--lock-timeout``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import filelock

from civit.errors import (
    CivitError,
)
from civit.fsutil import (
    atomic_write,
    cache_dir,
)

__all__ = ["LockWaitCallback", "target_lock"]

#: ``on_wait(target, pid)``: another process holds the target's lock (``pid`` of the
#: other civit when it is known); called once before waiting for it.
LockWaitCallback = Callable[[Path, "int | None"], None]


class _TargetLock:
    """Holds the inter-process lock of one target (see :func:`target_lock`)."""

    def __init__(
        self, target: Path, *, timeout: float | None, on_wait: LockWaitCallback | None
    ) -> None:
        folder = cache_dir() / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:32]
        self.target = target
        self.timeout = timeout
        self.on_wait = on_wait
        self.lock = filelock.FileLock(folder / f"{key}.lock")
        self.owner = folder / f"{key}.pid"

    def __enter__(self) -> _TargetLock:
        try:
            self.lock.acquire(timeout=0)
        except filelock.Timeout:
            pid = self._other_pid()
            if self.on_wait is not None:
                self.on_wait(self.target, pid)
            try:
                self.lock.acquire(timeout=-1 if self.timeout is None else self.timeout)
            except filelock.Timeout:
                who = f"another civit (pid {pid})" if pid else "another civit"
                raise CivitError(
                    f"{who} is still working on {self.target} after "
                    f"--lock-timeout {self.timeout:g} s",
                    hint="wait for it to finish, or stop it, then run the same command again",
                ) from None
        with contextlib.suppress(CivitError):
            atomic_write(self.owner, f"{os.getpid()}\n".encode(), durable=False)
        return self

    def _other_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            text = self.owner.read_text(encoding="ascii").strip()
            return int(text) if text.isdigit() and len(text) < 12 else None
        return None

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(OSError):
            self.owner.unlink()
        self.lock.release()


def target_lock(
    target: Path,
    *,
    timeout: float | None = None,
    on_wait: LockWaitCallback | None = None,
) -> contextlib.AbstractContextManager[object]:
    """The inter-process lock every writer of ``target`` holds while fetching it.

    Lock files live in the cache folder, keyed by the target's absolute path, so WebUI
    model folders stay clean; the holder's pid is written beside the lock, so a
    second process can say whom it waits for.

    Args:
        target: the final path.
        timeout: seconds to wait for another holder (``None``: as long as it takes).
        on_wait: called once, with the target and the holder's pid, before waiting.

    Raises:
        CivitError: still held after ``timeout`` seconds (exit 1).
    """
    return _TargetLock(target, timeout=timeout, on_wait=on_wait)
