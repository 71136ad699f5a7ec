"""``civit install``: fetch every locked file that is missing, several at once.

Each entry is already resolved in ``civit.lock`` (see :mod:`civit.manifest`). A file
that is present and matches its locked SHA256 (hash cache: a stat and a lookup) is
left alone; a missing one is fetched from the mirror first if one is set, else through
Civitai's download endpoint, verified, and committed atomically, or fetched into the
content-addressed store and linked from there. ``frozen=True`` makes no metadata call
at all: only download links are resolved, and only for missing files. Entries fail
independently; the report carries each entry's outcome and the worst exit code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import Any, Literal, cast

from civit.api import Client
from civit.config import Settings, load_settings
from civit.errors import CivitError, DiskSpaceError, ManifestError, UsageError, worst_exit_code
from civit.hashcache import CacheOption, HashCache, opened_cache
from civit.hashing import ProgressCallback, hash_file
from civit.layouts import LayoutChoice, resolve_layout
from civit.lockfile import FIX_LOCK, Lock, LockedFile, load_lock, write_lock
from civit.manifest import Manifest, as_manifest
from civit.mirrors import Mirror, open_mirror
from civit.network import ProxyRules, proxy_rules
from civit.ownership import INSTALL_CHOICES, check_replaceable, describe_wanted
from civit.pacing import RateLimit
from civit.partfile import interrupted
from civit.paths import expand_path
from civit.records import Model, Version
from civit.resolution import LazyClient, check_lock_fits, resolve_lock
from civit.sidecars import info_paths, write_for_layout
from civit.store import LinkOutcome, Store, link_or_copy
from civit.transfer import fetch
from civit.writerlock import LockWaitCallback, target_lock

__all__ = ["EntryResult", "InstallReport", "install"]

# A dead mirror should hand over to Civitai in seconds, not after the full backoff.
MIRROR_RETRY_BASE = 0.25

EntryStatus = Literal["installed", "present", "failed"]
Source = Literal["mirror", "civitai", "store"]


@dataclass(frozen=True)
class EntryResult:
    """What :func:`install` did for one lock entry.

    ``source`` says where the bytes came from this run (``store`` = an existing store
    entry was linked); ``mirror_error`` why the mirror was passed over, if it was;
    ``failure`` why the entry failed; ``sidecars`` what ``info = true`` wrote beside
    the file, ``notes`` what it left out.
    """

    ref: str
    path: Path
    status: EntryStatus
    size: int | None = None
    bytes_transferred: int = 0
    seconds: float = 0.0
    digests: Mapping[str, str] = field(default_factory=dict)
    source: Source | None = None
    link: LinkOutcome | None = None
    version_id: int | None = None
    file_id: int | None = None
    failure: CivitError | None = None
    mirror_error: str | None = None
    sidecars: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def error(self) -> str | None:
        """Why the entry failed, as one line (``None`` unless it did)."""
        return str(self.failure) if self.failure is not None else None

    @property
    def exit_code(self) -> int:
        """The failure's exit code; 0 unless the entry failed."""
        return self.failure.exit_code if self.failure is not None else 0

    def as_json(self) -> dict[str, object]:
        """The report entry; ``error`` is ``{message, exit_code, hint}`` for a failure."""
        return {
            "ref": self.ref,
            "status": self.status,
            "path": str(self.path),
            "size_bytes": self.size,
            "bytes_transferred": self.bytes_transferred,
            "seconds": round(self.seconds, 3),
            "digests": dict(self.digests),
            "source": self.source,
            "version_id": self.version_id,
            "file_id": self.file_id,
            "link": self.link,
            "mirror_error": self.mirror_error,
            "sidecars": [str(path) for path in self.sidecars],
            "notes": list(self.notes),
            "error": self.failure.as_json() if self.failure is not None else None,
        }


@dataclass(frozen=True)
class InstallReport:
    """Everything :func:`install` did, in manifest order."""

    manifest: Path
    lock_path: Path
    frozen: bool
    results: tuple[EntryResult, ...]
    lock_written: bool = False
    seconds: float = 0.0

    def count(self, status: EntryStatus) -> int:
        """How many entries ended with ``status``."""
        return sum(1 for result in self.results if result.status == status)

    @property
    def exit_code(self) -> int:
        """0 if all went well, else the most severe failure's (see
        :func:`civit.errors.worst_exit_code`): one corrupt file makes the run exit 7."""
        return worst_exit_code(result.exit_code for result in self.results)

    def as_json(self) -> dict[str, object]:
        """The ``--report`` document."""
        return {
            "manifest": str(self.manifest),
            "lock": str(self.lock_path),
            "frozen": self.frozen,
            "lock_written": self.lock_written,
            "summary": {
                "installed": self.count("installed"),
                "present": self.count("present"),
                "failed": self.count("failed"),
            },
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 3),
            "entries": [result.as_json() for result in self.results],
        }


class _Cancelled(BaseException):
    """Raised inside a download's progress callback to stop it (Ctrl-C elsewhere)."""


class _Progress:
    """Sums per-file progress into one ``(done, total)`` for the caller."""

    def __init__(self, callback: ProgressCallback | None, stop: threading.Event) -> None:
        self.callback = callback
        self.stop = stop
        self.done: dict[int, int] = {}
        self.totals: dict[int, int] = {}
        self.lock = threading.Lock()

    def expect(self, key: int, total: int | None) -> None:
        with self.lock:
            self.totals[key] = total or 0

    def for_entry(self, key: int) -> Callable[[int, int | None], None]:
        def update(done: int, total: int | None) -> None:
            if self.stop.is_set():
                raise _Cancelled
            with self.lock:
                self.done[key] = done
                if total:
                    self.totals[key] = total
                overall = sum(self.done.values()), sum(self.totals.values())
            if self.callback is not None:
                self.callback(*overall)

        return update

    def finish(self, key: int, *, completed: bool) -> None:
        """A file's job ended: complete (fetched, linked from the store) counts all its
        bytes; failed counts only those that arrived, and expects no more of it.

        An interrupted job is not finished at all, so after Ctrl-C the total shows the
        bytes that really arrived.
        """
        with self.lock:
            if completed:
                self.done[key] = self.totals.get(key, 0)
            else:
                self.totals[key] = self.done.setdefault(key, 0)
            overall = sum(self.done.values()), sum(self.totals.values())
        if self.callback is not None:
            self.callback(*overall)


@dataclass(frozen=True)
class _Fetched:
    size: int
    digests: dict[str, str]
    transferred: int
    source: Source
    mirror_error: str | None = None


@dataclass(frozen=True)
class _Limits:
    """``--limit-rate`` (one budget for every job), ``--deadline`` (per file) and the
    wait for another civit's lock on a target."""

    rate: RateLimit | None
    deadline: float | None
    lock_timeout: float | None
    on_lock_wait: LockWaitCallback | None

    def lock(self, target: Path) -> contextlib.AbstractContextManager[object]:
        return target_lock(target, timeout=self.lock_timeout, on_wait=self.on_lock_wait)


class _Installer:
    """Installs lock entries; one instance is shared by the worker threads."""

    def __init__(
        self,
        *,
        client: LazyClient,
        cache: HashCache,
        store: Store | None,
        mirror: Mirror | None,
        connections: int | None,
        stall_timeout: float,
        retry_base: float,
        progress: _Progress,
        overwrite: Sequence[bool],
        known: Mapping[str, int | None],
        placed: Mapping[Path, str],
        proxies: ProxyRules,
        limits: _Limits,
    ) -> None:
        self.client = client
        self.proxies = proxies
        self.limits = limits
        self.cache = cache
        self.store = store
        self.mirror = mirror
        self.connections = connections
        self.stall_timeout = stall_timeout
        self.retry_base = retry_base
        self.progress = progress
        self.fetching: list[Path] = []  # every .part target started, for Ctrl-C's report
        self.overwrite = overwrite
        self.known = known
        self.placed = placed

    def quick_check(self, locked: LockedFile, target: Path) -> dict[str, str] | bool:
        """Digests if ``target`` is proven current by a stat and the hash cache;
        ``False`` if it is missing or proven different; ``True`` if only hashing can tell.
        """
        try:
            stat = target.stat()
        except OSError:
            return False
        if not S_ISREG(stat.st_mode):
            return True  # a FIFO or device there: hashing refuses it, with a clear error
        if locked.size is not None and stat.st_size != locked.size:
            return False
        if locked.sha256 is None:
            estimate = locked.size_estimate
            return {} if estimate is None or abs(stat.st_size - estimate) <= 1024 else False
        digests = self.cache.lookup(stat, ("sha256", "blake3")) or self.cache.lookup(
            stat, ("sha256",)
        )
        if digests is None:
            return True
        return digests if locked.hashes.matches("sha256", digests["sha256"]) else False

    def existing(self, locked: LockedFile, target: Path) -> dict[str, str] | None:
        """Digests of ``target`` if it holds the locked bytes (hashing it if needed)."""
        quick = self.quick_check(locked, target)
        if quick is True:
            digests = hash_file(target, ("sha256", "blake3"), cache=self.cache)
            return digests if locked.hashes.matches("sha256", digests["sha256"]) else None
        if quick is False:
            return None
        return quick

    def run(self, key: int, locked: LockedFile, target: Path) -> EntryResult:
        started = time.monotonic()
        base = EntryResult(
            ref=locked.ref,
            path=target,
            status="failed",
            version_id=locked.version_id,
            file_id=locked.file_id,
        )
        try:
            present = self.existing(locked, target)
            if present is not None:
                return dataclasses.replace(
                    base,
                    status="present",
                    size=target.stat().st_size,
                    digests=present,
                    seconds=time.monotonic() - started,
                )
            if target.is_file() and not self.overwrite[key]:
                self._check_replaceable(locked, target)
            if self.store is not None and locked.sha256:
                result = self._via_store(key, locked, target, base)
            else:
                result = self._direct(key, locked, target, base)
        except CivitError as exc:
            result = dataclasses.replace(base, failure=exc)
        except OSError as exc:
            failure = CivitError(f"{target}: {exc.strerror or exc}")
            result = dataclasses.replace(base, failure=failure)
        self.progress.finish(key, completed=result.failure is None)
        return dataclasses.replace(result, seconds=time.monotonic() - started)

    def _check_replaceable(self, locked: LockedFile, target: Path) -> None:
        """Keep a file civit did not put there (see :mod:`civit.ownership`)."""
        check_replaceable(
            target,
            hash_file(target, ("sha256",), cache=self.cache)["sha256"],
            model_id=locked.model_id,
            version_id=locked.version_id,
            wanted=describe_wanted(locked.name, locked.file_id, locked.model_id),
            choices=INSTALL_CHOICES,
            placed=self.placed.get(target),
            known=self.known,
            client=self.client.get,
        )

    def _direct(self, key: int, locked: LockedFile, target: Path, base: EntryResult) -> EntryResult:
        target.parent.mkdir(parents=True, exist_ok=True)
        with self.limits.lock(target):
            present = self.existing(locked, target)  # another process may have done it
            if present is not None:
                return dataclasses.replace(
                    base, status="present", size=target.stat().st_size, digests=present
                )
            fetched = self._fetch(key, locked, target)
        return self._installed(base, fetched)

    def _via_store(
        self, key: int, locked: LockedFile, target: Path, base: EntryResult
    ) -> EntryResult:
        assert self.store is not None and locked.sha256 is not None
        entry = self.store.path_for(locked.sha256)
        entry.parent.mkdir(parents=True, exist_ok=True)
        with self.limits.lock(entry):
            digests = self.store.verified_digests(locked.sha256, cache=self.cache)
            if digests is None:
                fetched = self._fetch(key, locked, entry)
                self.store.seal(entry)
            else:
                fetched = _Fetched(entry.stat().st_size, digests, 0, "store")
            link = link_or_copy(entry, target)
        if link == "copied":
            with contextlib.suppress(OSError):
                self.cache.store(target.stat(), fetched.digests)
        return dataclasses.replace(self._installed(base, fetched), link=link)

    @staticmethod
    def _installed(base: EntryResult, fetched: _Fetched) -> EntryResult:
        return dataclasses.replace(
            base,
            status="installed",
            size=fetched.size,
            digests=fetched.digests,
            bytes_transferred=fetched.transferred,
            source=fetched.source,
            mirror_error=fetched.mirror_error,
        )

    def _fetch(self, key: int, locked: LockedFile, target: Path) -> _Fetched:
        """Fetch into ``target``: the mirror first, then Civitai."""
        mirror_error = None
        if self.mirror is not None and locked.sha256:
            mirror_error = self.mirror.switched_off()
        if self.mirror is not None and locked.sha256 and mirror_error is None:
            attempt = self.mirror.attempt(sha256=locked.sha256, name=locked.name, size=locked.size)
            try:
                return self._fetch_from(
                    key,
                    attempt.resolve,
                    locked,
                    target,
                    "mirror",
                    min(self.retry_base, MIRROR_RETRY_BASE),
                )
            except DiskSpaceError:
                raise
            except CivitError as exc:  # a miss, a bad copy or a dead mirror: ask Civitai
                mirror_error = attempt.passed_over(exc)

        def resolve() -> str:
            link = self.client.get().resolve_download(
                locked.version_id, file_id=locked.file_id, what=locked.name
            )
            return link.url

        fetched = self._fetch_from(key, resolve, locked, target, "civitai", self.retry_base)
        return dataclasses.replace(fetched, mirror_error=mirror_error)

    def _fetch_from(
        self,
        key: int,
        resolve: Callable[[], str],
        locked: LockedFile,
        target: Path,
        source: Source,
        retry_base: float,
    ) -> _Fetched:
        # Separate keys keep a mirror's partial file from being resumed from Civitai
        # (and the other way round): a bad mirror copy must not poison a good download.
        file_key = (
            f"mirror:{locked.sha256}"
            if source == "mirror"
            else f"civitai:{locked.version_id}:{locked.file_id}"
        )
        self.fetching.append(target)
        fetched = fetch(
            resolve,
            target,
            expected=locked.hashes,
            file_key=file_key,
            expected_size=locked.size,
            size_hint=locked.size_estimate,
            connections=self.connections,
            stall_timeout=self.stall_timeout,
            progress=self.progress.for_entry(key),
            retry_base=retry_base,
            cache=self.cache,
            proxies=self.proxies,
            limit_rate=self.limits.rate,
            deadline=self.limits.deadline,
        )
        return _Fetched(fetched.size, dict(fetched.digests), fetched.transferred, source)


def _choose(name: str, explicit: Any, from_manifest: Any, settings: Settings) -> Any:
    """Argument > environment > manifest > user config > default (module docstring)."""
    if explicit is not None:
        return explicit
    source = settings.sources.get(name, "")
    if source.startswith(("env", "command line")):
        return getattr(settings, name)
    return from_manifest if from_manifest is not None else getattr(settings, name)


def _frozen_lock(manifest: Manifest) -> Lock:
    current = load_lock(manifest.lock_path)
    if current is None:
        raise ManifestError(
            f"--frozen needs {manifest.lock_path}, and there is none", hint=FIX_LOCK
        )
    check_lock_fits(manifest, current)
    return current


def _with_learned_sizes(current: Lock, results: Sequence[EntryResult]) -> Lock:
    files = tuple(
        dataclasses.replace(locked, size=result.size)
        if result.status != "failed" and result.size is not None and locked.sha256
        else locked
        for locked, result in zip(current.files, results, strict=True)
    )
    return dataclasses.replace(current, files=files)


def install(
    manifest: Manifest | str | os.PathLike[str] = "civit.toml",
    *,
    frozen: bool = False,
    upgrade: bool = False,
    client: Client | None = None,
    settings: Settings | None = None,
    jobs: int | None = None,
    connections: int | None = None,
    store: str | os.PathLike[str] | None = None,
    mirror: str | None = None,
    cache: CacheOption = None,
    progress: ProgressCallback | None = None,
    on_result: Callable[[EntryResult], None] | None = None,
    stall_timeout: float | None = None,
    retry_base: float = 1.0,
    overwrite: bool = False,
    allow_unscanned: bool = False,
    early_access: bool = False,
    limit_rate: float | None = None,
    deadline: float | None = None,
    lock_timeout: float | None = None,
    on_lock_wait: LockWaitCallback | None = None,
) -> InstallReport:
    """Install every file of a manifest: present ones cost a ``stat``, the rest are
    fetched ``jobs`` at a time, verified, and placed (or linked from the store).

    Without ``frozen`` the lock is brought up to date first (see :func:`lock`). With
    ``frozen`` the lock is used as it is — no API metadata calls at all; only files
    that are missing ask the download endpoint for a link. No API client is even
    created when nothing is missing.

    With ``info = true`` in ``[settings]``, each file without a ``.civitai.info``
    gets the sidecars its WebUI reads (one version lookup per missing sidecar, also
    under ``frozen``; files that have one cost nothing more).

    A failed entry does not stop the others; look at :attr:`InstallReport.exit_code`.

    Args:
        manifest: a :class:`Manifest` or the path of ``civit.toml``.
        frozen: use ``civit.lock`` as is; fail if it is missing or stale.
        upgrade: re-resolve unpinned entries to their newest version (not with frozen).
        client: API client (default: made from ``settings`` when first needed).
        settings: environment and user config (default: loaded).
        jobs: files fetched at once.
        connections: connections per file (default: by size).
        store: content-addressed store folder; files are hardlinked from it.
        mirror: tried before Civitai: a URL template such as ``http://cache/{sha256}``,
            or ``s3://bucket/prefix`` (AWS credentials from the environment/profiles).
        cache: ``None`` for the user's hash cache, ``False`` for none, or a
            :class:`HashCache` (see :data:`CacheOption`).
        progress: ``progress(done, total)`` in bytes over all files being fetched,
            called from worker threads.
        on_result: called with each entry's result as it finishes.
        stall_timeout: seconds without a byte before reconnecting.
        retry_base: first backoff delay in seconds.
        overwrite: replace any file in the way (also ``overwrite = true`` in the
            manifest's settings or an entry); otherwise a file that is not civit's
            download of the same model fails its entry (:mod:`civit.ownership`).
        allow_unscanned: lock files whose Civitai scans did not pass (also
            ``allow_unscanned`` in the manifest or the user config).
        early_access: unpinned entries may lock a version in Early Access (not with
            frozen; see :func:`lock`).
        limit_rate: bytes per second over every file and connection at once.
        deadline: seconds each file's transfer may take (resumable when it runs out).
        lock_timeout: seconds to wait for another civit fetching the same target.
        on_lock_wait: ``on_lock_wait(target, pid)`` when another civit holds a target.

    Returns:
        The :class:`InstallReport`.

    Raises:
        ManifestError: invalid manifest; with ``frozen``, a missing or stale lock.
        UsageError: ``frozen`` with ``upgrade`` or ``early_access``, a bad mirror, or
            an ``s3://`` mirror without the ``civit[s3]`` extra.
        CivitError: (without ``frozen``) an entry cannot be resolved.
    """
    started = time.monotonic()
    if frozen and (upgrade or early_access):
        flag = "--upgrade" if upgrade else "--early-access"
        raise UsageError(f"--frozen installs the lock as it is; it cannot {flag}")
    parsed = as_manifest(manifest)
    settings = settings if settings is not None else load_settings()
    with opened_cache(cache) as hashes:
        holder = LazyClient(client, settings)
        wanted_mirror = _choose("mirror", mirror, parsed.settings.mirror, settings)
        stall = stall_timeout if stall_timeout is not None else settings.stall_timeout
        chosen_mirror = None if wanted_mirror is None else open_mirror(wanted_mirror, timeout=stall)
        store_root = _choose("store", store, parsed.settings.store, settings)
        stop = threading.Event()
        written = False
        try:
            previous = None if frozen else load_lock(parsed.lock_path)
            if frozen:
                current = _frozen_lock(parsed)
            else:
                current = resolve_lock(
                    parsed,
                    holder,
                    previous=previous,
                    upgrade=upgrade,
                    cache=hashes,
                    allow_unscanned=allow_unscanned or settings.allow_unscanned,
                    early_access=early_access,
                )
                written = write_lock(current, parsed.lock_path)
            installer = _Installer(
                client=holder,
                cache=hashes,
                store=Store(expand_path(store_root)) if store_root is not None else None,
                mirror=chosen_mirror,
                connections=_choose(
                    "connections", connections, parsed.settings.connections, settings
                ),
                stall_timeout=stall,
                retry_base=retry_base,
                progress=_Progress(progress, stop),
                overwrite=_overwrites(parsed, current, overwrite),
                known={
                    locked.sha256.upper(): locked.model_id
                    for lock_ in (previous, current)
                    for locked in (lock_.files if lock_ else ())
                    if locked.sha256
                },
                placed={
                    locked.target(parsed.folder): locked.sha256
                    for locked in (previous.files if previous else ())
                    if locked.sha256
                },
                proxies=client.proxies if client is not None else proxy_rules(settings.proxy),
                limits=_Limits(
                    RateLimit(limit_rate) if limit_rate else None,
                    deadline,
                    lock_timeout,
                    on_lock_wait,
                ),
            )
            results = _install_all(
                current,
                parsed.folder,
                installer,
                jobs=_choose("jobs", jobs, parsed.settings.jobs, settings),
                stop=stop,
                on_result=on_result,
            )
            if parsed.settings.info:
                results = _with_sidecars(parsed, results, holder, settings)
        finally:
            holder.close()
        if not frozen:
            learned = write_lock(_with_learned_sizes(current, results), parsed.lock_path)
            written = written or learned
        return InstallReport(
            manifest=parsed.path,
            lock_path=parsed.lock_path,
            frozen=frozen,
            results=tuple(results),
            lock_written=written,
            seconds=time.monotonic() - started,
        )


def _with_sidecars(
    manifest: Manifest, results: Sequence[EntryResult], client: LazyClient, settings: Settings
) -> list[EntryResult]:
    """``info = true``: the sidecars each installed file's WebUI reads, written where no
    ``.civitai.info`` is yet (so a re-run costs a stat per file, no API call).

    Entries go into ``[settings] root`` with its layout, unless they have a plain
    ``dest`` of their own (then: ``.civitai.info`` and the preview only).
    """
    settings_table = manifest.settings
    level = settings_table.preview_nsfw or settings.preview_nsfw
    install = None
    if settings_table.root is not None:
        with contextlib.suppress(UsageError):  # an undetectable root: plain folders then
            choice = cast(LayoutChoice, settings_table.layout or "auto")
            install = resolve_layout(settings_table.root, choice)
    models: dict[int, Model | str] = {}
    versions: dict[int, Version] = {}
    updated: list[EntryResult] = []
    for result in results:
        wanted = result.status != "failed" and result.version_id is not None
        if not wanted or any(path.exists() for path in info_paths(result.path)):
            updated.append(result)
            continue
        assert result.version_id is not None
        try:
            if result.version_id not in versions:
                versions[result.version_id] = client.get().get_version(result.version_id)
            inside = install is not None and result.path.is_relative_to(install.root)
            written = write_for_layout(
                result.path,
                versions[result.version_id],
                layout=install.layout if inside and install is not None else None,
                client=client.get(),
                sha256=result.digests.get("sha256"),
                preview_nsfw=level,
                models=models,
            )
        except CivitError as exc:
            updated.append(dataclasses.replace(result, notes=(f"no sidecars: {exc}",)))
            continue
        updated.append(dataclasses.replace(result, sidecars=written.written, notes=written.notes))
    return updated


def _overwrites(manifest: Manifest, current: Lock, everything: bool) -> list[bool]:
    """Per lock entry: may it replace a file in the way? (The lock lists entries in
    manifest order.)"""
    entries = manifest.entries if len(manifest.entries) == len(current.files) else ()
    wanted = everything or manifest.settings.overwrite
    return [
        wanted or any(e.overwrite for e in entries[i : i + 1]) for i in range(len(current.files))
    ]


def _install_all(
    current: Lock,
    folder: Path,
    installer: _Installer,
    *,
    jobs: int,
    stop: threading.Event,
    on_result: Callable[[EntryResult], None] | None,
) -> list[EntryResult]:
    targets = [locked.target(folder) for locked in current.files]
    results: list[EntryResult | None] = [None] * len(targets)
    pending: dict[Path, int] = {}  # one job per destination, even if listed twice
    for index, (locked, target) in enumerate(zip(current.files, targets, strict=True)):
        quick = installer.quick_check(locked, target)
        if isinstance(quick, dict):
            present = EntryResult(
                ref=locked.ref,
                path=target,
                status="present",
                size=locked.size if locked.size is not None else target.stat().st_size,
                digests=quick,
                version_id=locked.version_id,
                file_id=locked.file_id,
            )
            results[index] = present
            if on_result is not None:
                on_result(present)
        elif target not in pending:
            pending[target] = index
            if quick is False:
                installer.progress.expect(index, locked.size_estimate)
    if pending:
        with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="civit-install") as pool:
            futures: dict[Future[EntryResult], int] = {
                pool.submit(installer.run, index, current.files[index], target): index
                for target, index in pending.items()
            }
            try:
                for future in as_completed(futures):
                    finished = future.result()
                    results[futures[future]] = finished
                    if on_result is not None:
                        on_result(finished)
            except KeyboardInterrupt as exc:
                stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise interrupted(installer.fetching) from exc
            except BaseException:
                stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    for index, target in enumerate(targets):
        if results[index] is None:  # a second entry for a destination already handled
            first = results[pending[target]]
            assert first is not None
            results[index] = dataclasses.replace(first, ref=current.files[index].ref)
    return [result for result in results if result is not None]
