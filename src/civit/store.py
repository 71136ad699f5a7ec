"""A content-addressed store: one copy of each file, hardlinked into every WebUI.

Layout: ``<store>/sha256/<first two hex>/<sha256, 64 lower-case hex>``::

    store/sha256/3f/3f9a…e1    ◄── the one copy (a plain file named by its SHA256)
          ▲ hardlink            ▲ hardlink
    ComfyUI/models/loras/x.safetensors    webui/models/Lora/x.safetensors

Two WebUIs (or two checkouts of a project) then share one 7 GB file. Hardlinks need
one file system; across devices, or where links are refused, the file is copied
instead. A destination already linked to its store entry costs one ``stat``.

Store entries are ordinary files, so ``civit verify`` checks one against its own name
(:func:`expected_from_store_path`). Filling the store is the caller's business
(:mod:`civit.installer` fetches into :meth:`Store.path_for`, then :meth:`Store.seal`):
this module only knows paths, proof of content and links.

Entries are made read-only once verified, so a WebUI or an editor writing to a
hardlinked copy fails instead of silently changing every copy. Trust in an unchanged
entry is stat-based (the hash cache keys on device, inode, size and mtime): an
in-place overwrite that restores the mtime is not noticed until ``civit verify
--no-cache`` reads the bytes again. Only a regular file is ever linked: a symlink
planted as an entry is removed and fetched again, never followed by ``os.link``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from civit.errors import CivitError
from civit.fsutil import commit, make_writable, open_regular
from civit.hashcache import CacheOption
from civit.hashing import hash_file
from civit.records import Hashes

__all__ = ["LinkOutcome", "Store", "expected_from_store_path", "link_or_copy"]

LinkOutcome = Literal["present", "linked", "copied"]

_SHA256 = re.compile(r"[0-9a-f]{64}")

# Errors meaning "no hardlink here, but a copy will do": another device, a file system
# without links (FAT, some network shares), too many links, or links forbidden
# (e.g. Linux protected_hardlinks on a file owned by someone else).
_NO_LINK_ERRNOS = frozenset(
    {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES}
)


@dataclass(frozen=True)
class Store:
    """A content-addressed store rooted at ``root`` (see the module docstring)."""

    root: Path

    def path_for(self, sha256: str) -> Path:
        """Where the file with this SHA256 lives in the store (it may not exist yet).

        Raises:
            CivitError: ``sha256`` is not 64 hex digits.

        >>> Store(Path("/s")).path_for("AB" + "0" * 62).as_posix()
        '/s/sha256/ab/ab00000000000000000000000000000000000000000000000000000000000000'
        """
        digest = sha256.lower()
        if not _SHA256.fullmatch(digest):
            raise CivitError(f"not a SHA256 digest: {sha256!r}")
        return self.root / "sha256" / digest[:2] / digest

    def verified_digests(self, sha256: str, *, cache: CacheOption) -> dict[str, str] | None:
        """The digests of the entry for ``sha256`` if it exists and has that SHA256.

        The hash cache answers for an unchanged entry, so this is usually a ``stat``
        and a lookup. An entry whose bytes no longer match (disk rot, someone edited a
        hardlinked copy in place) is removed, so the caller fetches it again.

        Args:
            sha256: the digest, any case.
            cache: hash cache to consult and update (see :data:`CacheOption`).

        Returns:
            ``{"sha256": HEX}``, or ``None`` if the entry is missing or was damaged.
        """
        path = self.path_for(sha256)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):  # a symlink (or worse) planted in the store
            _remove(path)
            return None
        digests = hash_file(path, ("sha256",), cache=cache)
        if digests["sha256"].lower() == sha256.lower():
            self.seal(path)
            return digests
        _remove(path)
        return None

    def seal(self, entry: Path) -> None:
        """Make a verified entry read-only (its hardlinked copies too: one inode).

        Best effort: a file system without permissions keeps the entry as it is.
        """
        with contextlib.suppress(OSError):
            mode = stat.S_IMODE(os.lstat(entry).st_mode)
            if mode & 0o222:
                entry.chmod(mode & ~0o222)


def _remove(path: Path) -> None:
    """Delete a store entry (the link itself, for a symlink); Windows refuses to delete
    a read-only file, so it is made writable first."""
    if sys.platform == "win32":
        make_writable(path)
    path.unlink(missing_ok=True)


def link_or_copy(source: Path, target: Path) -> LinkOutcome:
    """Make ``target`` the same bytes as ``source``: a hardlink, else an atomic copy.

    An existing ``target`` that already is ``source`` (same inode) is left alone; any
    other existing ``target`` is replaced atomically, so a reader never sees a
    half-written file.

    Args:
        source: the store entry.
        target: the destination path; its folder is created.

    Returns:
        ``"present"``, ``"linked"`` or ``"copied"``.

    Raises:
        CivitError: neither a link nor a copy could be made (permissions, disk full).
    """
    try:
        entry = os.lstat(source)
    except OSError as exc:
        raise CivitError(f"cannot read store entry {source}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(entry.st_mode):
        raise CivitError(
            f"store entry {source} is not a regular file (a symlink?); not linking it",
            hint="delete it: civit fetches the file again",
        )
    with contextlib.suppress(OSError):
        if os.path.samestat(entry, target.stat()):
            return "present"
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        try:
            _link(source, temporary)
            outcome: LinkOutcome = "linked"
        except OSError as exc:
            if exc.errno not in _NO_LINK_ERRNOS:
                raise
            _copy(source, temporary, entry)
            outcome = "copied"
        if outcome == "linked":
            placed = os.lstat(temporary)
            _check_same(source, entry, placed)
        commit(temporary, target, durable=outcome == "copied")
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise CivitError(
            f"cannot place {target} from the store: {exc.strerror or exc}",
            hint="check that the folder is writable and has space",
        ) from exc
    except CivitError:
        temporary.unlink(missing_ok=True)
        raise
    return outcome


def _link(source: Path, temporary: Path) -> None:
    """A hardlink to ``source`` itself: never to what a symlink there points at."""
    if os.link in os.supports_follow_symlinks:
        os.link(source, temporary, follow_symlinks=False)
    else:  # pragma: no cover - Windows, where os.link does not follow symlinks anyway
        os.link(source, temporary)


def _copy(source: Path, temporary: Path, entry: os.stat_result) -> None:
    """Copy the regular file ``entry`` describes (never a FIFO or file swapped in)."""
    with os.fdopen(open_regular(source), "rb") as reader, temporary.open("xb") as writer:
        _check_same(source, entry, os.fstat(reader.fileno()))
        shutil.copyfileobj(reader, writer, 1024 * 1024)


def _check_same(source: Path, entry: os.stat_result, placed: os.stat_result) -> None:
    """The file linked or copied must be the regular file that was checked."""
    if not os.path.samestat(placed, entry):
        raise CivitError(
            f"store entry {source} changed while it was being placed; not using it",
            hint="run the command again",
        )


def expected_from_store_path(path: str | os.PathLike[str]) -> Hashes | None:
    """The digest a store entry must have, read from its own name.

    Args:
        path: any path.

    Returns:
        ``Hashes(sha256=…)`` if ``path`` looks like ``…/sha256/ab/ab…`` (64 hex), else
        ``None``.

    >>> expected_from_store_path("/store/sha256/ab/ab" + "0" * 62).sha256[:4]
    'AB00'
    >>> expected_from_store_path("/models/x.safetensors") is None
    True
    """
    entry = Path(path)
    name = entry.name.lower()
    if (
        _SHA256.fullmatch(name)
        and entry.parent.name.lower() == name[:2]
        and entry.parent.parent.name == "sha256"
    ):
        return Hashes(sha256=name.upper())
    return None
