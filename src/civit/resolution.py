"""Resolving a manifest into a lock: which version, which file, which destination.

Only entries that are new or edited are resolved: a lock entry whose ``entry_hash``
matches a ``[[model]]`` table (and the resolution settings) is kept as it is, so adding
one entry to a long manifest costs one entry's API calls. Unpinned entries keep the
version an earlier lock had unless ``upgrade`` is asked; entries resolve in parallel
(:data:`MAX_RESOLVERS` at once) through one lazily made API client.

An unpinned entry locks to the newest version anyone can download now
(:func:`civit.select.newest_version`, the rule ``civit get`` follows too): a newer one
in Early Access is passed over (a lock that most accounts cannot install is no lock)
unless ``early_access`` is asked, and an upgrade never moves back past the version
the lock had. When every version is in Early Access, the newest is locked anyway: its
download then says until when.

The lock is untrusted input. :func:`check_lock_fits` (used by ``install --frozen``)
proves offline that each entry belongs to its manifest entry and lands inside the
folder the manifest names; :func:`check_lock` (``civit lock --check``) resolves every
entry again through the API and lists what the lock says differently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from civit.api import Client
from civit.config import Settings
from civit.downloader import plan_target, subfolder_for
from civit.errors import CivitError, ManifestError, UsageError
from civit.hashcache import CacheOption, HashCache, opened_cache
from civit.identification import fetch_records
from civit.layouts import LAYOUTS, Detection, LayoutChoice, resolve_layout, webui
from civit.lockfile import FIX_LOCK, Lock, LockedFile, load_lock, write_lock
from civit.manifest import Manifest, ModelEntry, as_manifest
from civit.records import File, Version
from civit.refs import Ref, parse_ref, redact_ref
from civit.select import check_scans, exact_file_id, newest_version, select_file

__all__ = [
    "MAX_RESOLVERS",
    "LazyClient",
    "LockChange",
    "LockDifference",
    "check_lock",
    "check_lock_fits",
    "lock",
    "lock_changes",
    "resolve_lock",
]

MAX_RESOLVERS = 8


class LazyClient:
    """One API client for many threads, made only when the first call needs it."""

    def __init__(self, client: Client | None, settings: Settings | None) -> None:
        self._client = client
        self._settings = settings
        self._owned = False
        self._lock = threading.Lock()

    def get(self) -> Client:
        with self._lock:
            if self._client is None:
                self._client = Client(settings=self._settings)
                self._owned = True
            return self._client

    def close(self) -> None:
        if self._owned and self._client is not None:
            self._client.close()


def _relative_dest(target: Path, folder: Path) -> str:
    with contextlib.suppress(ValueError):
        return target.relative_to(folder).as_posix()
    return target.as_posix()


def _pin_key(ref: Ref) -> str | None:
    """Lock entries for an unpinned model ref are matched by its model id."""
    if ref.hash is None and ref.version_id is None and ref.model_id is not None:
        return str(ref.model_id)
    return None


def _previous_pins(previous: Lock | None) -> dict[str, int]:
    pins: dict[str, int] = {}
    for locked in previous.files if previous else ():
        with contextlib.suppress(UsageError):
            key = _pin_key(parse_ref(locked.ref))
            if key is not None:
                pins.setdefault(key, locked.version_id)
    return pins


def _known_size(target: Path, sha256: str | None, cache: HashCache | None) -> int | None:
    """The exact size of ``target`` if the hash cache proves it holds ``sha256``."""
    if sha256 is None or cache is None:
        return None
    try:
        stat = target.stat()
    except OSError:
        return None
    digests = cache.lookup(stat, ("sha256",))
    if digests and digests["sha256"].upper() == sha256.upper():
        return stat.st_size
    return None


class _Resolver:
    """Resolves manifest entries to :class:`LockedFile` records (thread-safe)."""

    def __init__(
        self,
        manifest: Manifest,
        client: LazyClient,
        *,
        previous: Lock | None,
        upgrade: bool,
        cache: HashCache | None,
        allow_unscanned: bool = False,
        known: Mapping[int, Version] | None = None,
        early_access: bool = False,
    ) -> None:
        self.manifest = manifest
        self.client = client
        self.allow_unscanned = allow_unscanned or manifest.settings.allow_unscanned
        self.known = known or {}
        self.upgrade = upgrade
        self.early_access = early_access
        self.pins = _previous_pins(previous)
        self.sizes = {f.file_id: f.size for f in previous.files if f.size} if previous else {}
        self.cache = cache
        self._layout: Detection | None = None
        self._layout_lock = threading.Lock()

    def layout(self) -> Detection:
        with self._layout_lock:
            if self._layout is None:
                settings = self.manifest.settings
                assert settings.root is not None
                try:
                    requested = cast(LayoutChoice, settings.layout or "auto")
                    self._layout = resolve_layout(settings.root, requested)
                except UsageError as exc:
                    about_layout = "--layout" in exc.message or "--layout" in (exc.hint or "")
                    raise ManifestError(
                        f"{self.manifest.path}: [settings]: {exc.message}",
                        hint=f"set layout = one of {', '.join(LAYOUTS)} in [settings]"
                        if about_layout
                        else exc.hint,
                    ) from exc
            return self._layout

    def version_for(self, entry: ModelEntry) -> Version:
        pinned = entry.parsed.version_id
        if pinned is not None and pinned in self.known:
            return self.known[pinned]
        api = self.client.get()
        key = _pin_key(entry.parsed)
        if key is None:
            return api.get_version_for(entry.parsed)
        kept = self.pins.get(key)
        if kept is not None and not self.upgrade:
            version = api.get_version(kept)
            if version.model_id not in (None, entry.parsed.model_id):
                raise ManifestError(f"the lock pins {key} to version {kept} of another model")
            return version
        assert entry.parsed.model_id is not None  # an unpinned ref names its model
        model = api.get_model(entry.parsed.model_id)
        return newest_version(model, early_access=self.early_access, locked=kept)

    def target_for(self, entry: ModelEntry, version: Version, file: File) -> Path:
        settings = self.manifest.settings
        folder = entry.dest or settings.dest
        # An entry's own dest is exact; the settings' subfolder applies below the others.
        template = entry.subfolder or (settings.subfolder if entry.dest is None else None)
        subfolder = subfolder_for(template, version, client=self.client.get()) if template else None
        if folder is not None:
            return plan_target(file, dest=folder, name=entry.name, subfolder=subfolder).path
        if settings.root is None:
            raise ManifestError(
                f"{self.manifest.path}:{entry.line or '?'}: {entry.label}: nowhere to put it",
                hint="set root (a WebUI folder) or dest in [settings], or dest in the entry",
            )
        found = self.layout()
        return plan_target(
            file, root=found.root, layout=found.layout, name=entry.name, subfolder=subfolder
        ).path

    def resolve(self, entry: ModelEntry) -> LockedFile:
        try:
            version = self.version_for(entry)
            ref = entry.parsed
            filters = (entry.type, entry.format, entry.fp, entry.size)
            file_id = entry.file_id or exact_file_id(version, ref)
            file = select_file(
                version,
                type=entry.type or ref.type,
                format=entry.format or ref.format,
                fp=entry.fp or ref.fp,
                size=entry.size or ref.size,
                file_id=file_id if not any(filters) else None,
            )
            check_scans(file, allow_unscanned=self.allow_unscanned or entry.allow_unscanned)
            target = self.target_for(entry, version, file)
        except CivitError as exc:
            if not exc.message.startswith(str(self.manifest.path)):
                exc.message = (
                    f"{self.manifest.path}:{entry.line or '?'}: {entry.label}: {exc.message}"
                )
            raise
        sha256 = file.hashes.sha256
        return LockedFile(
            ref=redact_ref(entry.ref),
            model_id=version.model_id,
            version_id=version.id,
            file_id=file.id,
            name=target.name,
            dest=_relative_dest(target, self.manifest.folder),
            size=self.sizes.get(file.id) or _known_size(target, sha256, self.cache),
            size_kb=file.size_kb,
            sha256=sha256,
            blake3=file.hashes.blake3,
            type=file.model_type or version.model_type,
            entry_hash=entry.content_hash or None,
        )


def _check_targets(manifest: Manifest, files: Sequence[LockedFile]) -> None:
    seen: dict[str, LockedFile] = {}
    for entry, locked in zip(manifest.entries, files, strict=True):
        other = seen.setdefault(locked.dest, locked)
        if other is not locked and (other.sha256, other.file_id) != (locked.sha256, locked.file_id):
            raise ManifestError(
                f"{manifest.path}:{entry.line or '?'}: {entry.label}: {locked.dest} is also "
                f"the destination of {other.ref}, a different file",
                hint="give one of them another dest or name",
            )


def _within(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies inside ``folder``, judged on the names alone (``..``
    collapsed; symlinks inside a WebUI folder are the user's business)."""
    inner, outer = os.path.normpath(path), os.path.normpath(folder)
    return os.path.commonpath([inner, outer]) == outer and inner != outer


def _placement_folders(manifest: Manifest) -> tuple[Path, ...]:
    """Where an entry placed under ``root`` may land: the WebUI's model folders, each
    row's default folder and the folders its own settings name (``--lora-dir``,
    ``extra_model_paths.yaml``...), which may lie elsewhere. They are read from this
    machine's WebUI, never from the lock.

    Not the whole root: a lock entry aimed at ``custom_nodes/x/__init__.py`` or
    ``webui-user.sh`` would be code the WebUI runs. A root that cannot be detected yet
    (not installed) allows the model folders of every WebUI layout.
    """
    settings = manifest.settings
    if settings.root is None:
        return (manifest.folder,)
    try:
        found = resolve_layout(settings.root, cast(LayoutChoice, settings.layout or "auto"))
    except UsageError:
        tables = [webui(layout).table for layout in LAYOUTS if layout != "flat"]
        return tuple(dict.fromkeys(settings.root / p for table in tables for p in table.values()))
    ui = webui(found.layout)
    configured = [folder.path for folder in ui.folders(found.root).folders.values()]
    defaults = [found.root / path for path in ui.table.values()]
    return tuple(dict.fromkeys([*defaults, *configured]))


def _entry_mismatch(
    manifest: Manifest, entry: ModelEntry, locked: LockedFile, *, folders: Sequence[Path]
) -> str | None:
    """Why ``locked`` cannot be what ``entry`` resolved to; ``None`` if it can be.

    ``folders``: where an entry placed under ``root`` may land (see
    :func:`_placement_folders`).
    """
    if locked.ref != redact_ref(entry.ref):
        return f"its ref is {locked.ref!r}, but the manifest entry says {redact_ref(entry.ref)!r}"
    if locked.entry_hash is not None and locked.entry_hash != entry.content_hash:
        return "it was resolved from another version of this [[model]] entry"
    pins = (
        ("version_id", entry.parsed.version_id, locked.version_id),
        ("model_id", entry.parsed.model_id, locked.model_id),
        ("file_id", entry.file_id or entry.parsed.file_id, locked.file_id),
        ("name", entry.name, locked.name),
    )
    for key, wanted, found in pins:
        if wanted is not None and found is not None and wanted != found:
            return f"its {key} is {found!r}, but the manifest entry pins {wanted!r}"
    settings = manifest.settings
    target = locked.target(manifest.folder)
    folder = entry.dest or settings.dest
    # As in target_for: a subfolder template puts files below the folder, not in it.
    below = entry.subfolder or (settings.subfolder if entry.dest is None else None)
    if folder is not None:
        inside = _within(target, folder) if below else _same(target.parent, folder)
        if not inside:
            return f"its dest {locked.dest} is not in {folder}, where the manifest puts it"
    elif not any(_within(target, place) for place in folders):
        root = settings.root or manifest.folder
        return f"its dest {locked.dest} lies outside the model folders of {root}"
    return None


def _same(a: Path, b: Path) -> bool:
    return os.path.normpath(a) == os.path.normpath(b)


def check_lock_fits(manifest: Manifest, current: Lock) -> None:
    """Prove offline that ``current`` was made from ``manifest`` as it is now.

    Checks the manifest hash, one ``[[file]]`` per ``[[model]]`` with the same ref, the
    pins the manifest states (version, model, file id, name), each entry's
    ``entry_hash`` when it has one, and that every ``dest`` lies in the folder the
    manifest puts that entry (its ``dest`` or ``[settings] dest``, below it with a
    ``subfolder``; under ``root``, one of the WebUI's model folders, see
    :func:`_placement_folders`) — so a hand-edited ``dest = "/etc/…"``, ``../../`` or
    ``custom_nodes/x/__init__.py`` is refused before any write.

    Raises:
        ManifestError: the first mismatch, naming the entry (exit 2).
    """
    lock_name = manifest.lock_path.name
    if current.manifest_hash != manifest.content_hash:
        raise ManifestError(
            f"{manifest.lock_path} is out of date: {manifest.path.name} changed since it "
            "was locked",
            hint=FIX_LOCK,
        )
    if len(current.files) != len(manifest.entries):
        raise ManifestError(
            f"{manifest.lock_path} does not match {manifest.path.name}: {lock_name} has "
            f"{len(current.files)} [[file]] entries for {len(manifest.entries)} [[model]] "
            "entries",
            hint=FIX_LOCK,
        )
    folders = _placement_folders(manifest)
    for entry, locked in zip(manifest.entries, current.files, strict=True):
        problem = _entry_mismatch(manifest, entry, locked, folders=folders)
        if problem is not None:
            raise ManifestError(
                f"{manifest.lock_path} does not match {manifest.path.name}: [[file]] "
                f"#{entry.index} ({locked.ref}): {problem}",
                hint=FIX_LOCK,
            )


def _kept_entries(manifest: Manifest, previous: Lock | None) -> dict[int, LockedFile]:
    """The previous lock's entries that still stand, by manifest position.

    An entry is kept when its ``entry_hash`` matches a manifest entry (or, in a lock
    without entry hashes, when the whole manifest is unchanged), it fits that entry
    (:func:`_entry_mismatch`), and it is complete: a lock entry without SHA256 and
    BLAKE3 is resolved again, so a hand-edited SHA256 whose BLAKE3 was deleted does not
    survive ``civit lock``.
    """
    if previous is None:
        return {}
    by_hash: dict[str, LockedFile] = {}
    for earlier in previous.files:
        if earlier.entry_hash is not None:
            by_hash.setdefault(earlier.entry_hash, earlier)
    unchanged_legacy = previous.manifest_hash == manifest.content_hash and len(
        previous.files
    ) == len(manifest.entries)
    kept: dict[int, LockedFile] = {}
    folders = _placement_folders(manifest)
    for position, entry in enumerate(manifest.entries):
        locked = by_hash.get(entry.content_hash)
        if locked is None and unchanged_legacy and previous.files[position].entry_hash is None:
            locked = previous.files[position]
        if (
            locked is not None
            and locked.sha256 is not None
            and locked.blake3 is not None
            and _entry_mismatch(manifest, entry, locked, folders=folders) is None
        ):
            kept[position] = dataclasses.replace(locked, entry_hash=entry.content_hash)
    return kept


def resolve_lock(
    manifest: Manifest,
    client: LazyClient,
    *,
    previous: Lock | None,
    upgrade: bool,
    cache: HashCache | None,
    allow_unscanned: bool = False,
    known: Mapping[int, Version] | None = None,
    reuse: bool = True,
    early_access: bool = False,
) -> Lock:
    """Resolve ``manifest``'s new and edited entries; keep the rest of ``previous``.

    Args:
        manifest: the manifest.
        client: where API calls go, made on first use (not at all when every entry
            is kept).
        previous: the lock as it is, if any (its entries, pins and sizes are kept).
        upgrade: resolve every entry again; unpinned ones move to their newest version
            that can be downloaded now.
        cache: hash cache for the exact sizes of files already present.
        allow_unscanned: accept files whose Civitai scans did not pass.
        known: version records already at hand, by id: pinned entries use them
            instead of asking the API (``civit freeze`` identified them a moment ago).
        reuse: keep unchanged entries of ``previous``; ``False`` resolves every entry
            (still keeping its pins), as ``civit lock --check`` does.
        early_access: unpinned entries may take a version in Early Access (for an
            account that bought it).

    Returns:
        The lock.
    """
    kept = _kept_entries(manifest, previous) if reuse and not upgrade else {}
    wanted = [entry for position, entry in enumerate(manifest.entries) if position not in kept]
    resolver = _Resolver(
        manifest,
        client,
        previous=previous,
        upgrade=upgrade,
        cache=cache,
        allow_unscanned=allow_unscanned,
        known=known,
        early_access=early_access,
    )
    workers = max(1, min(MAX_RESOLVERS, len(wanted)))
    with ThreadPoolExecutor(workers, thread_name_prefix="civit-lock") as pool:
        resolved = iter(list(pool.map(resolver.resolve, wanted)))
    files = [
        kept[position] if position in kept else next(resolved)
        for position in range(len(manifest.entries))
    ]
    _check_targets(manifest, files)
    return Lock(manifest.content_hash, tuple(files))


@dataclass(frozen=True)
class LockDifference:
    """One thing ``civit.lock`` says differently than the manifest resolves to now.

    Attributes:
        index: the ``[[file]]``/``[[model]]`` number, from 1 (0: the lock as a whole).
        ref: the entry's ref (redacted).
        key: the lock key that differs (``sha256``, ``dest``, ``entries``...).
        locked: what the lock says.
        resolved: what resolving the manifest through the API gives.
    """

    index: int
    ref: str
    key: str
    locked: object
    resolved: object

    def __str__(self) -> str:
        where = f"[[file]] #{self.index} ({self.ref})" if self.index else "the lock"
        return f"{where}: {self.key}: the lock says {self.locked!r}, Civitai says {self.resolved!r}"


# Keys compared by ``civit lock --check``; ``size`` is compared with ``size_kb`` instead
# (only a verified download knows the exact byte count).
_CHECKED_KEYS = (
    "ref",
    "model_id",
    "version_id",
    "file_id",
    "name",
    "dest",
    "size_kb",
    "sha256",
    "blake3",
    "type",
    "entry_hash",
)
# Civitai rounds sizeKB; an exact size may differ from it by this much.
_SIZE_KB_SLACK = 1024


def _differences(index: int, locked: LockedFile, fresh: LockedFile) -> list[LockDifference]:
    found = [
        LockDifference(index, locked.ref, key, getattr(locked, key), getattr(fresh, key))
        for key in _CHECKED_KEYS
        if getattr(locked, key) != getattr(fresh, key)
    ]
    if (
        locked.size is not None
        and fresh.size_kb is not None
        and abs(locked.size - fresh.size_kb * 1024) > _SIZE_KB_SLACK
    ):
        found.append(LockDifference(index, locked.ref, "size", locked.size, fresh.size_kb * 1024))
    return found


def check_lock(
    manifest: Manifest | str | os.PathLike[str] = "civit.toml",
    *,
    client: Client | None = None,
    settings: Settings | None = None,
    allow_unscanned: bool = False,
) -> tuple[LockDifference, ...]:
    """Resolve every entry through the API, as ``civit lock`` would, and compare the
    result with ``civit.lock`` without writing anything (``civit lock --check``).

    Nothing of the lock is trusted but its pins of unpinned entries (the version an
    entry without ``@version`` is locked to), so a hand-edited SHA256, BLAKE3, file id
    or destination shows up as a difference. Resolution and lock use the same rules,
    so a lock ``civit lock`` just wrote has no differences.

    Args:
        manifest: a :class:`Manifest` or the path of ``civit.toml``.
        client: API client (default: made from ``settings``).
        settings: settings for that client.
        allow_unscanned: as for :func:`lock`.

    Returns:
        The differences; empty when the lock is exactly what the manifest resolves to.

    Raises:
        ManifestError: there is no lock, or the manifest is invalid.
        CivitError: an entry cannot be resolved (its message names the entry).
    """
    parsed = as_manifest(manifest)
    current = load_lock(parsed.lock_path)
    if current is None:
        raise ManifestError(f"no {parsed.lock_path} to check", hint=FIX_LOCK)
    holder = LazyClient(client, settings)
    try:
        fresh = resolve_lock(
            parsed,
            holder,
            previous=current,
            upgrade=False,
            cache=None,
            allow_unscanned=allow_unscanned or bool(settings and settings.allow_unscanned),
            reuse=False,
        )
    finally:
        holder.close()
    found: list[LockDifference] = []
    if current.manifest_hash != fresh.manifest_hash:
        found.append(
            LockDifference(0, "", "manifest_hash", current.manifest_hash, fresh.manifest_hash)
        )
    if len(current.files) != len(fresh.files):
        found.append(LockDifference(0, "", "entries", len(current.files), len(fresh.files)))
    for entry, locked, resolved in zip(parsed.entries, current.files, fresh.files, strict=False):
        found.extend(_differences(entry.index, locked, resolved))
    return tuple(found)


def lock(
    manifest: Manifest | str | os.PathLike[str] = "civit.toml",
    *,
    upgrade: bool = False,
    client: Client | None = None,
    settings: Settings | None = None,
    cache: CacheOption = None,
    allow_unscanned: bool = False,
    early_access: bool = False,
) -> Lock:
    """Resolve the manifest and write its lock file (only when the content changes).

    Entries of the existing lock whose ``[[model]]`` table is unchanged are kept as
    they are, with no API call; only new and edited entries are resolved (an unchanged
    manifest costs none). A kept entry must still fit its manifest entry and carry both
    SHA256 and BLAKE3, else it is resolved again. Entries without a version pin
    (``827184``) keep the version the old lock had; ``upgrade`` resolves everything and
    moves them to the newest version that can be downloaded now (a newer one in Early
    Access only with ``early_access``). Pinned entries (``827184@2300001``, AIRs with a
    version, hashes, download URLs) always resolve to their pin.

    Args:
        manifest: a :class:`Manifest` or the path of ``civit.toml``.
        upgrade: re-resolve everything; unpinned entries go to the newest version.
        client: API client; made from ``settings`` only if resolution needs one.
        settings: settings for that client (default: environment and config).
        cache: hash cache used to learn exact sizes of files already present:
            ``None`` for the user's, ``False`` for none (see :data:`CacheOption`).
        allow_unscanned: accept files whose Civitai scans did not pass (also
            ``allow_unscanned`` in the manifest, an entry, or ``settings``).
        early_access: unpinned entries may take a version in Early Access (for an
            account that bought it; the others cannot install the lock).

    Returns:
        The lock, as written to :attr:`Manifest.lock_path`.

    Raises:
        ManifestError: invalid manifest or lock, nowhere to put a file, two entries
            with one destination.
        ScanRefusedError: a chosen file's scans did not pass (the message names the
            entry).
        CivitError: an entry cannot be resolved (its message names the entry).
    """
    parsed = as_manifest(manifest)
    holder = LazyClient(client, settings)
    try:
        with opened_cache(cache) as hashes:
            resolved = resolve_lock(
                parsed,
                holder,
                previous=load_lock(parsed.lock_path),
                upgrade=upgrade,
                cache=hashes,
                allow_unscanned=allow_unscanned or bool(settings and settings.allow_unscanned),
                early_access=early_access,
            )
    finally:
        holder.close()
    write_lock(resolved, parsed.lock_path)
    return resolved


@dataclass(frozen=True)
class LockChange:
    """One entry a new lock resolves differently than the old one (``civit lock``'s diff).

    Attributes:
        before: the old entry (``None`` for an entry the old lock did not have).
        after: the new entry.
        old_version: the old entry's version record, when it still exists.
        new_version: the new entry's version record, when it exists.
    """

    before: LockedFile | None
    after: LockedFile
    old_version: Version | None = None
    new_version: Version | None = None


def lock_changes(
    before: Lock | None,
    after: Lock,
    *,
    client: Client | None = None,
    settings: Settings | None = None,
) -> list[LockChange]:
    """The entries of ``after`` that are new, or moved to another version or file.

    Entries are matched by ref and destination, else by ref. The versions of new entries and of
    entries that moved to another version are fetched, so a diff can name them
    (``v1.0 -> v2.1``), a few at a time (:func:`civit.identification.fetch_records`).

    Args:
        before: the lock as it was (``None``: there was none).
        after: the lock as it is now.
        client: API client; made from ``settings`` only if a version is fetched.
        settings: settings for that client.

    Returns:
        The changes, in ``after``'s order.
    """
    unmatched = list(before.files) if before else []
    changed = []
    for entry in after.files:
        # The same ref at the same place, else the same ref (an upgrade may rename it).
        previous = next(
            (f for f in unmatched if (f.ref, f.dest) == (entry.ref, entry.dest)),
            next((f for f in unmatched if f.ref == entry.ref), None),
        )
        if previous is not None:
            unmatched.remove(previous)
        if previous is None or (previous.version_id, previous.file_id) != (
            entry.version_id,
            entry.file_id,
        ):
            changed.append((previous, entry))
    wanted = sorted(
        {entry.version_id for _, entry in changed}
        | {p.version_id for p, e in changed if p is not None and p.version_id != e.version_id}
    )
    holder = LazyClient(client, settings)
    try:
        versions = fetch_records(lambda version_id: holder.get().get_version(version_id), wanted)
    finally:
        holder.close()
    return [
        LockChange(
            previous,
            entry,
            versions.get(previous.version_id) if previous is not None else None,
            versions.get(entry.version_id),
        )
        for previous, entry in changed
    ]
