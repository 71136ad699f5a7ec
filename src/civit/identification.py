"""What is this file, and is it intact? Local files against Civitai, a lock or a store.

Identify (:func:`identify_files`)::

    files ──► SHA256 (hash cache) ──► one POST /by-hash/ids ──► GET /model-versions/{id}
                                       every file at once         per distinct version,
                                       (10,000 per request)       four at a time

A file whose ``.civitai.info`` lists its SHA256 is known from that record, without a
lookup. :func:`write_identified_sidecars` then writes the sidecars each file's WebUI
reads (``civit identify --write-info``, like Civitai Helper's "Scan models").

Verify (:func:`verify_files`): each file is compared with the first of these that
speaks for it:

1. its ``[[file]]`` entry in a ``civit.lock`` (when a lock is given; no network at all);
2. its own name, for a content-addressed store entry (``…/sha256/ab/ab12…``);
3. the ``<stem>.civitai.info`` sidecar beside it (or the older
   ``<file>.<ext>.civitai.info``; see :func:`civit.sidecars.sidecar_version`), whose
   version lists the file's hashes: no network at all;
4. Civitai (without a lock): a SHA256 that some Civitai file has is ``ok``.

A file none of them speaks for is ``unknown``. A damaged file with neither a lock
entry, a store name nor a sidecar cannot be told apart from a file Civitai has never
seen: both are ``unknown``, never ``mismatch``. A file that differs from its sidecar
is a ``mismatch``, unless Civitai knows its bytes (then the sidecar was left from
another file); that question is asked only for such files, and if it cannot be
asked the mismatch stands.

Hashing goes through the user's hash cache (:mod:`civit.hashcache`; ``cache=False``
reads every byte), so unchanged files are not read again. Nothing here prints;
progress is a ``(done, total)`` byte callback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, TypeVar

from civit.api import Client, using_client
from civit.errors import CivitError, IntegrityError, ManifestError, NotFoundError, UsageError
from civit.hashcache import CacheOption, HashCache, opened_cache
from civit.hashing import (
    FilesProgress,
    ProgressCallback,
    files_under,
    hash_file,
    hash_files,
    iter_model_files,
)
from civit.layouts import Detection, find_layout_above
from civit.lockfile import FIX_LOCK, load_lock
from civit.records import Hashes, HashMatch, Model, Version
from civit.sidecars import INFO_SUFFIX, sidecar_version, write_for_layout
from civit.store import expected_from_store_path

__all__ = [
    "FileCheck",
    "Identification",
    "fetch_records",
    "identify",
    "identify_files",
    "model_files",
    "verify",
    "verify_files",
    "write_identified_sidecars",
]

# Concurrent version lookups: enough to hide latency, few enough to stay polite.
MAX_LOOKUPS = 4

PathLike = str | os.PathLike[str]

IdentifyStatus = Literal["known", "unknown", "error"]
CheckStatus = Literal["ok", "mismatch", "unknown", "error"]
CheckSource = Literal["lock", "store", "civitai", "sidecar"]
_Record = TypeVar("_Record")


def model_files(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """The files to identify or verify: files as given; in folders, model files and
    content-addressed store entries, both searched for the way
    :func:`civit.hashing.iter_model_files` searches (hidden and package folders below a
    folder are not entered).

    Args:
        paths: files and folders (a single path is accepted too).

    Returns:
        Each path once, in the order given; a folder's files sorted, model files
        (see :func:`civit.hashing.iter_model_files`) before store entries.
    """
    given = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    found = iter_model_files(given)
    for folder in (path for path in given if path.is_dir()):
        # Store entries are named by their digest alone, without a model extension.
        found.extend(
            sorted(p for p in files_under(folder) if expected_from_store_path(p) and p.is_file())
        )
    return list(dict.fromkeys(found))


# -- identify ----------------------------------------------------------------------


@dataclass(frozen=True)
class Identification:
    """What Civitai says one local file is.

    Attributes:
        path: the file.
        status: ``known`` (a Civitai file has its SHA256), ``unknown``, or ``error``
            (the file could not be read; see ``error``).
        sha256: the file's SHA256, upper-case (``None`` on error).
        version: the version record, as ``.civitai.info`` sidecars hold it (``None``
            when unknown, or when the version vanished between the two lookups).
        model_id: the model's id, when known.
        version_id: the version's id, when known.
        error: why the file could not be read.
        source: what said it is known: ``civitai`` (the by-hash lookup) or ``sidecar``
            (its ``.civitai.info`` lists its SHA256).
        sidecars: the sidecars :func:`write_identified_sidecars` wrote beside it.
        notes: what that left out, and why.
    """

    path: Path
    status: IdentifyStatus
    sha256: str | None = None
    version: Version | None = None
    model_id: int | None = None
    version_id: int | None = None
    error: CivitError | None = None
    source: Literal["civitai", "sidecar"] | None = None
    sidecars: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def url(self) -> str | None:
        """The version's page on civitai.com."""
        if self.model_id is None or self.version_id is None:
            return None
        return f"https://civitai.com/models/{self.model_id}?modelVersionId={self.version_id}"

    def as_json(self) -> dict[str, object]:
        """A plain JSON object (the CLI's ``--json``)."""
        version = self.version
        return {
            "path": str(self.path),
            "status": self.status,
            "sha256": self.sha256,
            "model_id": self.model_id,
            "version_id": self.version_id,
            "url": self.url,
            "model_name": version.model_name if version else None,
            "version_name": version.name if version else None,
            "model_type": version.model_type if version else None,
            "base_model": version.base_model if version else None,
            "source": self.source,
            "sidecars": [str(path) for path in self.sidecars],
            "notes": list(self.notes),
            "error": self.error.as_json() if self.error else None,
        }


def identify(
    path: PathLike,
    *,
    client: Client | None = None,
    cache: CacheOption = None,
) -> Identification:
    """Identify one file on Civitai by its SHA256.

    Args:
        path: the file.
        client: API client; one is made from the environment when omitted.
        cache: ``None`` for the user's hash cache, ``False`` to read every byte,
            or a :class:`HashCache` (see :data:`CacheOption`).

    Returns:
        Its :class:`Identification` (``status`` ``known`` or ``unknown``).

    Raises:
        CivitError: the file cannot be read.
        NetworkError / RateLimitError / ResponseError: the lookup failed.
    """
    with opened_cache(cache) as hashes:
        (found,) = _identify([Path(path)], client=client, cache=hashes, progress=None)
    if found.error is not None:
        raise found.error
    return found


def identify_files(
    paths: PathLike | Iterable[PathLike],
    *,
    client: Client | None = None,
    cache: CacheOption = None,
    progress: ProgressCallback | None = None,
    details: bool = True,
) -> list[Identification]:
    """Identify many files with one hash lookup for all of them.

    Args:
        paths: files and folders (folders: see :func:`model_files`).
        client: API client; one is made from the environment when omitted (and only if
            some file could be hashed).
        cache: ``None`` for the user's hash cache, ``False`` to read every byte,
            or a :class:`HashCache` (see :data:`CacheOption`).
        progress: ``progress(done, total)`` in bytes while hashing.
        details: also fetch each version's record (``False``: only the ids, from the
            one hash lookup; ``version`` stays ``None``).

    Returns:
        One :class:`Identification` per file, in order; unreadable files have
        ``status="error"`` rather than stopping the others.

    Raises:
        NetworkError / RateLimitError / ResponseError: the lookup failed (after the
            client's retries, which wait out ``Retry-After``).
    """
    with opened_cache(cache) as hashes:
        return _identify(
            model_files(paths), client=client, cache=hashes, progress=progress, details=details
        )


def _identify(
    files: Sequence[Path],
    *,
    client: Client | None,
    cache: HashCache,
    progress: ProgressCallback | None,
    details: bool = True,
) -> list[Identification]:
    hashed: list[tuple[Path, str | CivitError]] = [
        (found.path, found.error if found.error is not None else found.digests["sha256"])
        for found in hash_files(files, ("sha256",), cache=cache, progress=progress)
    ]
    recorded: dict[Path, Version] = {}
    for path, digest in hashed:
        version = sidecar_version(path) if isinstance(digest, str) else None
        if version is not None and isinstance(digest, str) and version.file_with_hash(digest):
            recorded[path] = version
    sha256s = [d for path, d in hashed if isinstance(d, str) and path not in recorded]
    matches: dict[str, HashMatch] = {}
    versions: dict[int, Version | None] = {}
    if sha256s:
        with using_client(client) as api:
            matches = _look_up(api, sha256s)
            wanted = dict.fromkeys(match.version_id for match in matches.values())
            versions = fetch_records(api.get_version, list(wanted)) if details else {}
    results = []
    for path, digest in hashed:
        if isinstance(digest, CivitError):
            results.append(Identification(path, "error", error=digest))
        elif (known := recorded.get(path)) is not None:
            results.append(
                Identification(
                    path, "known", digest, known, known.model_id, known.id, source="sidecar"
                )
            )
        elif (found := matches.get(digest)) is None:
            results.append(Identification(path, "unknown", sha256=digest))
        else:
            version = versions.get(found.version_id)
            model_id = found.model_id or (version.model_id if version else None)
            results.append(
                Identification(
                    path, "known", digest, version, model_id, found.version_id, source="civitai"
                )
            )
    return results


def write_identified_sidecars(
    found: Sequence[Identification],
    *,
    client: Client | None = None,
    preview_nsfw: str | int | None = "pg13",
) -> list[Identification]:
    """Write the sidecars each identified file's WebUI reads (``identify --write-info``).

    The WebUI is the nearest install above each file
    (:func:`civit.layouts.find_layout_above`); outside one, only ``.civitai.info``
    and the preview are written. Model records (for SD.Next's ``.json``, A1111's card
    description, Stability Matrix's ``.cm-info.json``) are fetched once per model.
    See :func:`civit.sidecars.write_sidecars` for what each sidecar holds.

    Args:
        found: from :func:`identify_files` (only ``known`` files with a version are
            written for; the others are returned as they are).
        client: API client for model records and previews; one is made from the
            environment when omitted.
        preview_nsfw: the highest image level for previews, or ``none``.

    Returns:
        ``found``, with ``sidecars`` and ``notes`` set on the files written for.

    Raises:
        CivitError: a sidecar cannot be written. UsageError: a bad ``preview_nsfw``.
    """
    installs: dict[Path, Detection | None] = {}
    models: dict[int, Model | str] = {}
    results: list[Identification] = []
    with using_client(client) as api:
        for item in found:
            version = item.version
            if item.status != "known" or version is None:
                results.append(item)
                continue
            install = find_layout_above(item.path, seen=installs)
            written = write_for_layout(
                item.path,
                version,
                layout=install.layout if install is not None else None,
                client=api,
                sha256=item.sha256,
                preview_nsfw=preview_nsfw,
                models=models,
            )
            results.append(replace(item, sidecars=written.written, notes=written.notes))
    return results


def _look_up(client: Client, sha256s: Sequence[str]) -> dict[str, HashMatch]:
    """``{SHA256: match}`` for the digests some Civitai file has: one request per
    10,000 distinct digests."""
    found: dict[str, HashMatch] = {}
    for match in client.versions_by_hashes(list(dict.fromkeys(sha256s))):
        found.setdefault(match.hash.upper(), match)
    return found


def fetch_records(
    look_up: Callable[[int], _Record], record_ids: Sequence[int]
) -> dict[int, _Record | None]:
    """``look_up`` of each id (a version, a model), :data:`MAX_LOOKUPS` at a time.

    Args:
        look_up: the client method, e.g. ``client.get_version``.
        record_ids: the ids, each once.

    Returns:
        ``{id: record}``, ``None`` for a record Civitai no longer has (deleted since
        the hash lookup or the lock named it).

    Raises:
        NetworkError / RateLimitError / ResponseError: a lookup failed.
    """
    if not record_ids:
        return {}

    def tolerant(record_id: int) -> _Record | None:
        try:
            return look_up(record_id)
        except NotFoundError:
            return None

    pool = ThreadPoolExecutor(
        max_workers=min(MAX_LOOKUPS, len(record_ids)), thread_name_prefix="civit-lookup"
    )
    try:
        return dict(zip(record_ids, pool.map(tolerant, record_ids), strict=True))
    finally:
        # After a failure, lookups not yet started are pointless.
        pool.shutdown(cancel_futures=True)


# -- verify ------------------------------------------------------------------------


def verify(path: PathLike, hashes: Hashes, *, cache: CacheOption = None) -> dict[str, str]:
    """Prove that a file has the digests a record says, or raise.

    Every digest in ``hashes`` is computed in one pass and compared (CRC32 in either
    byte order).

    Args:
        path: the file.
        hashes: the expected digests, e.g. ``file.hashes`` of a :class:`civit.File`.
        cache: ``None`` for the user's hash cache, ``False`` to read every byte,
            or a :class:`HashCache` (see :data:`CacheOption`).

    Returns:
        The digests that were compared and matched, ``{algorithm: HEX}``.

    Raises:
        IntegrityError: a digest differs (``expected`` and ``actual`` name both), or
            ``hashes`` has an AutoV3 and the file is not a safetensors file.
        UsageError: ``hashes`` is empty.
        CivitError: the file cannot be read.
    """
    wanted = tuple(hashes.as_dict())
    if not wanted:
        raise UsageError(f"no digests to verify {path} against")
    digests = hash_file(path, wanted, cache=cache)
    checked = hashes.check(digests, path=str(path))
    for algorithm in wanted:
        if algorithm not in digests:  # only AutoV3 can be missing: not a safetensors file
            expected = hashes.as_dict()[algorithm]
            raise IntegrityError(
                f"{algorithm.upper()} mismatch for {path}: expected {expected}, but it is "
                "not a safetensors file",
                path=str(path),
                algorithm=algorithm,
                expected=expected,
            )
    return {algorithm: digests[algorithm] for algorithm in checked}


@dataclass(frozen=True)
class FileCheck:
    """The verdict on one file of :func:`verify_files`.

    Attributes:
        path: the file.
        status: ``ok``, ``mismatch``, ``unknown`` (nothing to compare with) or
            ``error`` (unreadable or missing; see ``error``).
        reason: one human sentence: what it was compared with and how that went.
        source: what spoke for the file: ``lock``, ``store`` (its own name),
            ``civitai`` (the by-hash lookup) or ``sidecar`` (``.civitai.info``).
        checked: the algorithms compared (all matched when ``ok``).
        algorithm: on a mismatch, the algorithm that differs.
        expected: on a mismatch, the expected digest.
        actual: on a mismatch, the file's digest.
        digests: every digest computed, ``{algorithm: HEX}``.
        version_id: the Civitai version the file belongs to, when known.
        error: why the file could not be read.
    """

    path: Path
    status: CheckStatus
    reason: str
    source: CheckSource | None = None
    checked: tuple[str, ...] = ()
    algorithm: str | None = None
    expected: str | None = None
    actual: str | None = None
    digests: Mapping[str, str] = field(default_factory=dict)
    version_id: int | None = None
    error: CivitError | None = None

    @property
    def exit_code(self) -> int:
        """7 for a mismatch, the error's code for an unreadable file, else 0."""
        if self.status == "mismatch":
            return IntegrityError.exit_code
        return self.error.exit_code if self.error is not None else 0

    def as_json(self) -> dict[str, object]:
        """A plain JSON object (the CLI's ``--json``)."""
        return {
            "path": str(self.path),
            "status": self.status,
            "reason": self.reason,
            "source": self.source,
            "checked": list(self.checked),
            "algorithm": self.algorithm,
            "expected": self.expected,
            "actual": self.actual,
            "digests": dict(self.digests),
            "version_id": self.version_id,
            "error": self.error.as_json() if self.error else None,
        }


def verify_files(
    paths: PathLike | Iterable[PathLike] = (),
    *,
    lock: PathLike | None = None,
    client: Client | None = None,
    cache: CacheOption = None,
    progress: ProgressCallback | None = None,
) -> list[FileCheck]:
    """Check local files against a lock, their store names, Civitai or sidecars.

    See the module docstring for the order. With ``lock`` nothing touches the
    network; without it, one by-hash request covers every file that has no store
    name.

    Args:
        paths: files and folders (folders: see :func:`model_files`); with ``lock``
            and no paths, every file the lock names.
        lock: a ``civit.lock``; its ``dest`` paths are relative to its folder.
        client: API client; one is made from the environment when omitted (and only
            if a lookup is needed).
        cache: ``None`` for the user's hash cache, ``False`` to read every byte,
            or a :class:`HashCache` (see :data:`CacheOption`).
        progress: ``progress(done, total)`` in bytes while hashing.

    Returns:
        One :class:`FileCheck` per file, in order.

    Raises:
        UsageError: neither paths nor a lock.
        ManifestError: the lock is missing or damaged.
        NetworkError / RateLimitError / ResponseError: the lookup failed.
    """
    lock_path = Path(lock) if lock is not None else None
    locked = _lock_expectations(lock_path) if lock_path is not None else {}
    given = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if given:
        files = model_files(given)
    elif lock_path is not None:
        files = list(locked)
    else:
        raise UsageError("nothing to verify: give files or folders, or a lock")
    by_target = {path.resolve(): expected for path, expected in locked.items()}
    counter = FilesProgress(progress, files)
    results: dict[Path, FileCheck] = {}
    unexplained: dict[Path, dict[str, str]] = {}
    # Sidecar mismatches: damage, or a sidecar left from another file (Civitai decides).
    doubtful: dict[Path, FileCheck] = {}
    with opened_cache(cache) as hashes:
        for path in files:
            expected = by_target.get(path.resolve()) or _from_store_name(path)
            recorded = sidecar_version(path) if expected is None else None
            blake3 = expected.hashes.blake3 if expected else _any_blake3(recorded)
            algorithms = ("sha256", "blake3") if blake3 else ("sha256",)
            try:
                digests = hash_file(path, algorithms, cache=hashes, progress=counter.update)
            except CivitError as exc:
                results[path] = FileCheck(path, "error", str(exc), error=exc)
                continue
            finally:
                counter.next_file()
            if expected is None and recorded is not None:
                expected = _sidecar_expectation(path, recorded, digests["sha256"])
            if expected is None:
                unexplained[path] = digests
                continue
            check = _compare(path, digests, expected)
            if check.status == "mismatch" and expected.source == "sidecar" and lock_path is None:
                doubtful[path] = check
            else:
                results[path] = check
    asked = {**unexplained, **{path: check.digests for path, check in doubtful.items()}}
    known: dict[str, HashMatch] = {}
    if asked and lock_path is None:
        try:
            with using_client(client) as api:
                known = _look_up(api, [dict(digests)["sha256"] for digests in asked.values()])
        except CivitError:
            if unexplained:
                raise
    for path, check in doubtful.items():
        found = known.get(check.digests["sha256"])
        results[path] = (
            check if found is None else _civitai_ok(path, check.digests, found, stale=True)
        )
    for path, digests in unexplained.items():
        if (found := known.get(digests["sha256"])) is not None:
            results[path] = _civitai_ok(path, digests, found)
            continue
        elsewhere = f"not in {lock_path.name}" if lock_path else "unknown to Civitai"
        reason = f"{elsewhere}, and no {INFO_SUFFIX} with its hashes beside it"
        results[path] = FileCheck(path, "unknown", reason, digests=digests)
    return [results[path] for path in files]


def _civitai_ok(
    path: Path, digests: Mapping[str, str], found: HashMatch, *, stale: bool = False
) -> FileCheck:
    reason = f"SHA256 matches a file of Civitai model version {found.version_id}"
    if stale:
        reason += f" (its {INFO_SUFFIX} describes other bytes: left from another file?)"
    return FileCheck(
        path,
        "ok",
        reason,
        source="civitai",
        checked=("sha256",),
        digests=digests,
        version_id=found.version_id,
    )


def _any_blake3(version: Version | None) -> bool:
    return version is not None and any(file.hashes.blake3 for file in version.files)


def _sidecar_expectation(path: Path, version: Version, sha256: str) -> _Expected | None:
    """What the ``.civitai.info`` beside ``path`` says the file must be.

    The sidecar names the version; its file with this SHA256 is the expected one,
    else its file of the same name (same-named fp16/fp32 copies: the primary one),
    else, for a renamed file, the version's primary file.
    """
    files = [file for file in version.files if file.hashes.sha256]
    if not files:
        return None
    candidates = [file for file in files if file.name == path.name] or files
    chosen = next(
        (file for file in candidates if file.hashes.matches("sha256", sha256)),
        next((file for file in candidates if file.primary), candidates[0]),
    )
    return _Expected(chosen.hashes, "sidecar", f"its {INFO_SUFFIX}", version.id)


@dataclass(frozen=True)
class _Expected:
    hashes: Hashes
    source: CheckSource
    label: str  # how reasons name it: "civit.lock", "its store name"
    version_id: int | None = None


def _lock_expectations(lock_path: Path) -> dict[Path, _Expected]:
    """What each locked file must be, by its path (based on the lock's folder as given).

    Entries without digests are left out: nothing could be proven against them.
    """
    locked = load_lock(lock_path)
    if locked is None:
        raise ManifestError(f"no lock file at {lock_path}", hint=FIX_LOCK)
    return {
        entry.target(lock_path.parent): _Expected(
            entry.hashes, "lock", lock_path.name, entry.version_id
        )
        for entry in locked.files
        if entry.hashes
    }


def _from_store_name(path: Path) -> _Expected | None:
    hashes = expected_from_store_path(path)
    return _Expected(hashes, "store", "its store name") if hashes is not None else None


def _compare(path: Path, digests: Mapping[str, str], expected: _Expected) -> FileCheck:
    try:
        checked = expected.hashes.check(digests, path=str(path))
    except IntegrityError as exc:
        assert exc.algorithm is not None
        return FileCheck(
            path,
            "mismatch",
            f"{exc.algorithm.upper()} differs from {expected.label}: expected "
            f"{exc.expected}, got {exc.actual}",
            source=expected.source,
            algorithm=exc.algorithm,
            expected=exc.expected,
            actual=exc.actual,
            digests=digests,
            version_id=expected.version_id,
        )
    shown = ", ".join(algorithm.upper() for algorithm in checked)
    return FileCheck(
        path,
        "ok",
        f"matches {expected.label} ({shown})",
        source=expected.source,
        checked=checked,
        digests=digests,
        version_id=expected.version_id,
    )
