"""Which of my models have a newer version? ``civit outdated`` as a function.

::

    files ──► SHA256 (hash cache) ──► one POST /by-hash/ids ──┐
    civit.lock ──► model, version, file per entry ────────────┴► GET /models/{id} once per
                                                                 model, four at a time ──►
    per file: the newest version of the same base-model family, and its same-variant file

**Base-model families.** A version is an update only if it was made for the same
ecosystem: a LoRA for SDXL is not updated by the model page's Flux version, nor by
its Pony or Illustrious one. Pony, Illustrious and NoobAI are SDXL-architecture
checkpoints, but each is its own ecosystem (LoRAs trained on one work poorly on the
others, and Civitai's own base-model filter keeps them apart), so each is its own
family. Within SD 1.x, SD 2.x, SDXL and Flux.1, the fast-sampling or resolution
variants of one base (``SD 1.5 LCM``, ``SDXL Lightning``, ``SDXL Turbo``, ``Flux.1 S``)
share the family, since their LoRAs and embeddings are interchangeable; smaller
architectures do not (``SDXL Distilled``, ``SD 3.5 Medium``), nor do Wan Video's sizes
and modes (``Wan Video 1.3B t2v``, ``Wan Video 14B i2v 720p``...). Any base model not
in :data:`FAMILIES` is a family of its own, compared by name: a missed update is
better than a false one. Newer versions of other families are reported separately, as
"other bases", newest per family.

**Newer** means published later (``publishedAt``, else ``createdAt``; the version id
breaks ties): creators reorder versions on the page, so list order proves nothing.
Versions without files (archived) are never offered.

**Same variant**: of the newer version's files, one with the same file type (``Model``
and ``Pruned Model`` count as one, told apart by ``size``), and the same format, fp and
size wherever both files say; the closest match wins, then the primary file.

**Early Access**: a newer version only those who bought it can download yet is still
an update (it is the newest), marked so with its end date; when an older newer version
of the family can be downloaded now, it is named too, as the one to take meanwhile.

Nothing here prints; progress is a ``(done, total)`` byte callback while hashing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from civit.api import Client, using_client
from civit.errors import ManifestError
from civit.hashcache import CacheOption
from civit.hashing import ProgressCallback
from civit.identification import fetch_records, identify_files
from civit.lockfile import FIX_LOCK, load_lock
from civit.records import File, Model, Version

__all__ = [
    "FAMILIES",
    "UpdateCheck",
    "base_model_family",
    "outdated",
    "same_variant",
]

#: Civitai ``baseModel`` (lower-case) -> its family, where several bases share one.
#: Anything else is its own family (see the module docstring). The groups follow
#: Civitai's own (``civitai/civitai`` ``src/shared/constants/base-model.constants.ts``,
#: the ``group`` of each ``baseModelConfig`` entry), with one exception: Civitai puts
#: ``SD 3`` (2B) and ``SD 3.5`` (unsized) in the ``SD3`` group with ``SD 3.5 Large``
#: (8B), whose LoRAs do not load on the others; here only Large and Large Turbo share.
#: ``SDXL Distilled`` (SSD-1B, Vega: fewer blocks than SDXL) is its own group there too.
FAMILIES: Mapping[str, str] = {
    "sd 1.4": "SD 1",
    "sd 1.5": "SD 1",
    "sd 1.5 lcm": "SD 1",
    "sd 1.5 hyper": "SD 1",
    "sd 2.0": "SD 2",
    "sd 2.0 768": "SD 2",
    "sd 2.1": "SD 2",
    "sd 2.1 768": "SD 2",
    "sd 2.1 unclip": "SD 2",
    "sdxl 0.9": "SDXL",
    "sdxl 1.0": "SDXL",
    "sdxl 1.0 lcm": "SDXL",
    "sdxl turbo": "SDXL",
    "sdxl lightning": "SDXL",
    "sdxl hyper": "SDXL",
    "flux.1 d": "Flux.1",
    "flux.1 s": "Flux.1",
    "sd 3.5 large": "SD 3.5 Large",
    "sd 3.5 large turbo": "SD 3.5 Large",
    "svd": "SVD",
    "svd xt": "SVD",
}

UpdateStatus = Literal["outdated", "current", "ignored", "unknown", "error"]
PathLike = str | os.PathLike[str]

_MODEL_FILE_TYPES = frozenset({"model", "pruned model"})
_VARIANT_TRAITS = ("format", "fp", "size")


def base_model_family(base_model: str | None) -> str:
    """The family a Civitai ``baseModel`` belongs to (see the module docstring).

    >>> base_model_family("SDXL Lightning"), base_model_family("Pony")
    ('SDXL', 'Pony')
    >>> base_model_family("Illustrious") == base_model_family("SDXL 1.0")
    False
    """
    name = (base_model or "").strip()
    return FAMILIES.get(name.lower(), name)


def same_variant(file: File, version: Version) -> File | None:
    """The file of ``version`` that is the same variant as ``file``, if it has one.

    Args:
        file: the file one has (of another version).
        version: the version to look in.

    Returns:
        The closest match (see the module docstring), or ``None``.
    """

    def kind(candidate: File) -> str:
        name = (candidate.type or "").lower()
        return "model" if name in _MODEL_FILE_TYPES else name

    def traits(candidate: File) -> list[str | None]:
        return [(getattr(candidate, trait) or "").lower() or None for trait in _VARIANT_TRAITS]

    wanted = traits(file)
    best: tuple[int, bool] | None = None
    chosen: File | None = None
    for candidate in version.files:
        if kind(candidate) != kind(file):
            continue
        pairs = list(zip(wanted, traits(candidate), strict=True))
        if any(a is not None and b is not None and a != b for a, b in pairs):
            continue
        score = (sum(a is not None and a == b for a, b in pairs), candidate.primary)
        if best is None or score > best:
            best, chosen = score, candidate
    return chosen


@dataclass(frozen=True)
class UpdateCheck:
    """Whether one local file has a newer version of its model.

    Attributes:
        path: the file.
        status: ``outdated`` (a newer version of the same family exists), ``current``,
            ``ignored`` (its model is on the ignore list), ``unknown`` (Civitai does
            not know the file, or no longer lists its version), or ``error`` (it could
            not be read; see ``reason``).
        model: the model record, with every version.
        current: the version the file belongs to.
        current_file: the file's record in that version.
        newest: the newest version of the same family, when newer than ``current``
            (it may be in Early Access: ``newest.in_early_access``).
        file: ``newest``'s file of the same variant as ``current_file`` (``None`` when
            it has none: see :func:`same_variant`).
        available: when ``newest`` is in Early Access, the newest version of the
            family newer than ``current`` that can be downloaded now, if there is one.
        available_file: ``available``'s file of the same variant.
        other_bases: newer versions made for other base-model families, newest first,
            one per family.
        reason: why the status is ``unknown`` or ``error``.
    """

    path: Path
    status: UpdateStatus
    model: Model | None = None
    current: Version | None = None
    current_file: File | None = None
    newest: Version | None = None
    file: File | None = None
    other_bases: tuple[Version, ...] = ()
    reason: str | None = None
    available: Version | None = None
    available_file: File | None = None

    def as_json(self) -> dict[str, object]:
        """A plain JSON object (the CLI's ``--json``)."""
        return {
            "path": str(self.path),
            "status": self.status,
            "model_id": self.model.id if self.model else None,
            "model_name": self.model.name if self.model else None,
            "current": _version_json(self.current, self.current_file),
            "newest": _version_json(self.newest, self.file),
            "available": _version_json(self.available, self.available_file),
            "other_bases": [_version_json(version, None) for version in self.other_bases],
            "reason": self.reason,
            # The item-failure shape every command shares; an unreadable file is exit 1.
            "error": (
                {"message": self.reason, "exit_code": 1, "hint": None}
                if self.status == "error"
                else None
            ),
        }


def _version_json(version: Version | None, file: File | None) -> dict[str, object] | None:
    if version is None:
        return None
    return {
        "id": version.id,
        "name": version.name,
        "date": version.date,
        "base_model": version.base_model,
        "air": version.air,
        "file": {"id": file.id, "name": file.name} if file else None,
        "early_access": version.in_early_access,
        "early_access_until": version.early_access_ends_at if version.in_early_access else None,
    }


@dataclass(frozen=True)
class _Installed:
    """What is on disk: a file and the version it is a copy of."""

    path: Path
    version_id: int | None = None
    model_id: int | None = None
    file_id: int | None = None
    sha256: str | None = None
    problem: UpdateStatus | None = None
    reason: str | None = None


def outdated(
    paths: PathLike | Iterable[PathLike] = (),
    *,
    lock: PathLike | None = None,
    ignore: Iterable[int] = (),
    client: Client | None = None,
    cache: CacheOption = None,
    progress: ProgressCallback | None = None,
) -> list[UpdateCheck]:
    """Check local model files, or a lock's entries, for newer versions.

    Args:
        paths: files and folders to identify by hash (one lookup for all of them).
        lock: a ``civit.lock``; each entry is checked without hashing its file.
        ignore: model ids never to report (the ``[outdated] ignore`` setting).
        client: API client; one is made from the environment when omitted.
        cache: ``None`` for the user's hash cache, ``False`` to read every byte, or a
            :class:`civit.HashCache`.
        progress: ``progress(done, total)`` in bytes while hashing.

    Returns:
        One :class:`UpdateCheck` per file (the lock's entries first), in order.

    Raises:
        ManifestError: ``lock`` is missing or damaged.
        NetworkError / RateLimitError / ResponseError: a lookup failed.
    """
    given = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    installed = _from_lock(Path(lock)) if lock is not None else []
    ignored = frozenset(ignore)
    with using_client(client) as api:
        if given:
            found = identify_files(given, client=api, cache=cache, progress=progress, details=False)
            installed += [
                _Installed(
                    item.path,
                    item.version_id,
                    item.model_id,
                    sha256=item.sha256,
                    problem="error" if item.status == "error" else None,
                    reason=str(item.error) if item.error else None,
                )
                for item in found
            ]
        installed = _with_model_ids(api, installed)
        wanted = {item.model_id for item in installed if item.model_id is not None}
        models = fetch_records(api.get_model, sorted(wanted - ignored))
    return [_check(item, models, ignored) for item in installed]


def _from_lock(lock_path: Path) -> list[_Installed]:
    locked = load_lock(lock_path)
    if locked is None:
        raise ManifestError(f"no lock file at {lock_path}", hint=FIX_LOCK)
    return [
        _Installed(
            entry.target(lock_path.parent),
            entry.version_id,
            entry.model_id,
            entry.file_id,
            entry.sha256,
        )
        for entry in locked.files
    ]


def _with_model_ids(client: Client, installed: list[_Installed]) -> list[_Installed]:
    """Fill in model ids the hash lookup or the lock left out (one version lookup each)."""
    missing = sorted(
        {i.version_id for i in installed if i.model_id is None and i.version_id is not None}
    )
    owners = {
        version_id: version.model_id if version else None
        for version_id, version in fetch_records(client.get_version, missing).items()
    }
    return [
        _Installed(
            item.path,
            item.version_id,
            owners.get(item.version_id) if item.version_id is not None else None,
            item.file_id,
            item.sha256,
            item.problem,
            item.reason,
        )
        if item.model_id is None and item.version_id in owners
        else item
        for item in installed
    ]


def _check(
    item: _Installed, models: Mapping[int, Model | None], ignored: frozenset[int]
) -> UpdateCheck:
    if item.problem is not None:
        return UpdateCheck(item.path, item.problem, reason=item.reason)
    if item.version_id is None or item.model_id is None:
        return UpdateCheck(item.path, "unknown", reason="no Civitai file has its SHA256")
    if item.model_id in ignored:
        return UpdateCheck(item.path, "ignored", reason=f"model {item.model_id} is ignored")
    model = models.get(item.model_id)
    current = next((v for v in model.versions if v.id == item.version_id), None) if model else None
    if model is None or current is None:
        where = f"model {item.model_id}" if model is None else f"version {item.version_id}"
        return UpdateCheck(
            item.path, "unknown", model=model, reason=f"Civitai no longer lists {where}"
        )
    current_file = _file_of(current, item)
    family = base_model_family(current.base_model)
    newer = sorted(
        (v for v in model.versions if v.files and v.release_key > current.release_key),
        key=lambda v: v.release_key,
        reverse=True,
    )
    same = [v for v in newer if base_model_family(v.base_model) == family]
    others: dict[str, Version] = {}
    for version in newer:
        others.setdefault(base_model_family(version.base_model), version)
    others.pop(family, None)
    newest = same[0] if same else None
    available = None
    if newest is not None and newest.in_early_access:
        available = next((v for v in same if not v.in_early_access), None)

    def variant(version: Version | None) -> File | None:
        return same_variant(current_file, version) if version and current_file else None

    return UpdateCheck(
        item.path,
        "outdated" if newest is not None else "current",
        model=model,
        current=current,
        current_file=current_file,
        newest=newest,
        file=variant(newest),
        other_bases=tuple(others.values()),
        available=available,
        available_file=variant(available),
    )


def _file_of(version: Version, item: _Installed) -> File | None:
    for file in version.files:
        if file.id == item.file_id:
            return file
    if item.sha256 is not None:
        return version.file_with_hash(item.sha256)
    return None
