"""Choose one file of a version, and say why.

Rules, in order:

1. ``file_id`` names the file exactly and wins over every other filter.
2. Without filters, the version's primary file (the first file if none is marked) —
   unless it is training data, which is never what "the model" means: then the first
   other file, and if there is none, an error suggesting ``--type "Training Data"``.
3. With filters (``type``, ``format``, ``fp``, ``size``; case-insensitive exact matches,
   ``format`` also takes the aliases in :data:`FORMAT_ALIASES`), the matching files are
   ranked: the primary file first, then SafeTensor over other formats, then pruned over
   full, then fp16 over other precisions; ties keep Civitai's order.

No match raises :class:`~civit.errors.NotDownloadableError` listing the files that exist,
each described by :func:`describe_file`.
"""

from __future__ import annotations

from dataclasses import dataclass

from civit.errors import NotDownloadableError, ScanRefusedError
from civit.fsutil import human_bytes
from civit.records import FILE_PREFERENCES, SCAN_PASSED, File, Model, Version, preference_rank
from civit.refs import Ref

__all__ = [
    "FORMAT_ALIASES",
    "Selection",
    "check_scans",
    "code_warning",
    "describe_file",
    "early_access_note",
    "exact_file_id",
    "explain_selection",
    "newest_version",
    "select_file",
    "select_files",
]

#: Lower-case spellings users type for Civitai's ``metadata.format`` values.
FORMAT_ALIASES = {
    "safetensors": "SafeTensor",
    "safetensor": "SafeTensor",
    "ckpt": "PickleTensor",
    "pickle": "PickleTensor",
    "pickletensor": "PickleTensor",
    "pt": "PickleTensor",
    "gguf": "GGUF",
}

TRAINING_DATA = "Training Data"


@dataclass(frozen=True)
class Selection:
    """The chosen file and the reasons for choosing it, one short sentence each."""

    file: File
    reasons: tuple[str, ...]


def select_file(
    version: Version,
    *,
    type: str | None = None,
    format: str | None = None,
    fp: str | None = None,
    size: str | None = None,
    file_id: int | None = None,
) -> File:
    """Pick the file of ``version`` to download (rules in the module docstring).

    Args:
        version: the version whose files to choose from.
        type: Civitai file type, e.g. ``Model``, ``Pruned Model``, ``VAE``.
        format: ``SafeTensor``, ``PickleTensor``, ``GGUF``... or an alias such as
            ``safetensors`` or ``ckpt``.
        fp: precision, e.g. ``fp16``, ``bf16``, ``fp8``.
        size: ``pruned`` or ``full``.
        file_id: exact file id; overrides every other filter.

    Returns:
        The chosen file.

    Raises:
        NotDownloadableError: the version has no files, or none matches.
    """
    return explain_selection(
        version, type=type, format=format, fp=fp, size=size, file_id=file_id
    ).file


def explain_selection(
    version: Version,
    *,
    type: str | None = None,
    format: str | None = None,
    fp: str | None = None,
    size: str | None = None,
    file_id: int | None = None,
) -> Selection:
    """Like :func:`select_file`, but also return why that file was chosen (``--explain``).

    Args:
        version: the version whose files to choose from.
        type: Civitai file type filter.
        format: file format filter (aliases accepted).
        fp: precision filter.
        size: ``pruned``/``full`` filter.
        file_id: exact file id; overrides every other filter.

    Returns:
        The chosen file with the reasons, in the order the rules applied.

    Raises:
        NotDownloadableError: the version has no files, or none matches.
    """
    primary = version.primary_file
    if primary is None:
        raise _no_files(version)
    if file_id is not None:
        for file in version.files:
            if file.id == file_id:
                return Selection(file, (f"file id {file_id} requested",))
        raise _no_match(version, f"has id {file_id}")
    wanted = _filters(type=type, format=format, fp=fp, size=size)
    if not wanted:
        return _default_file(version, primary)
    shown = ", ".join(f"{key}={value}" for key, value in wanted.items())
    matches = [f for f in version.files if _matches(f, wanted)]
    if not matches:
        raise _no_match(version, f"matches {shown}")
    ranked = sorted(matches, key=preference_rank)  # sorted() is stable: ties keep Civitai's order
    chosen = ranked[0]
    reasons = [f"{len(matches)} of {len(version.files)} files match {shown}"]
    reasons += [_why_preferred(chosen, other) for other in ranked[1:]]
    return Selection(chosen, tuple(reasons))


def select_files(
    version: Version,
    *,
    type: str | None = None,
    format: str | None = None,
    fp: str | None = None,
    size: str | None = None,
) -> list[File]:
    """Every file of ``version`` that matches the filters (``civit get --all-files``).

    Training data is left out unless ``type`` asks for it (``Training Data``).

    Args:
        version: the version whose files to take.
        type: Civitai file type filter.
        format: file format filter (aliases accepted).
        fp: precision filter.
        size: ``pruned``/``full`` filter.

    Returns:
        The matching files, in Civitai's order.

    Raises:
        NotDownloadableError: the version has no files, or none matches.
    """
    wanted = _filters(type=type, format=format, fp=fp, size=size)
    if not version.files:
        raise _no_files(version)
    files = [
        f
        for f in version.files
        if _matches(f, wanted) and ("type" in wanted or not _is_training_data(f))
    ]
    if not files:
        shown = ", ".join(f"{key}={value}" for key, value in wanted.items())
        raise _no_match(version, f"matches {shown}" if shown else "is a model file")
    return files


def exact_file_id(version: Version, ref: Ref) -> int | None:
    """The file of ``version`` a ref names exactly: a download URL's ``fileId``, a hash
    ref's file (``None`` if it names none). Selection options given by the user take
    precedence over it; the ref's own ``?type=``... hints do not."""
    if ref.hash is not None:
        hashed = version.file_with_hash(ref.hash)
        return hashed.id if hashed is not None else None
    return ref.file_id


def _filters(
    *, type: str | None, format: str | None, fp: str | None, size: str | None
) -> dict[str, str]:
    """The selection filters that were given, ``format`` aliases resolved."""
    filters = {
        "type": type,
        "format": FORMAT_ALIASES.get(format.lower(), format) if format else None,
        "fp": fp,
        "size": size,
    }
    return {key: value for key, value in filters.items() if value}


def _is_training_data(file: File) -> bool:
    return (file.type or "").lower() == TRAINING_DATA.lower()


def _default_file(version: Version, primary: File) -> Selection:
    count = len(version.files)
    if not _is_training_data(primary):
        why = "the primary file" if primary.primary else "the first file (none is primary)"
        return Selection(primary, (f"no filters given: {why} of {count}",))
    models = [f for f in version.files if not _is_training_data(f)]
    if not models:
        raise NotDownloadableError(
            f"{_version_label(version)} has only training data, no model file",
            hint=f'pass --type "{TRAINING_DATA}" to download it anyway',
        )
    return Selection(models[0], (f"the primary file is {TRAINING_DATA}; first model file",))


def newest_version(
    model: Model, *, early_access: bool = False, locked: int | None = None
) -> Version:
    """The newest version of ``model`` a user can download now.

    Civitai lists versions newest first. A version in Early Access (only accounts that
    bought it can download it) is passed over unless ``early_access`` is asked; when
    every version is in Early Access, the newest is taken anyway, so its download says
    until when. ``civit get``, ``civit lock`` and ``civit install`` all choose by this.

    Args:
        model: a model as returned by the API.
        early_access: take the newest version even in Early Access (``--early-access``).
        locked: the version a lock already has: it counts as downloadable, so an
            upgrade never moves back past it.

    Returns:
        That version.

    Raises:
        NotDownloadableError: the model has no versions.
    """
    if not model.versions:
        raise NotDownloadableError(
            f"model {model.id} ({model.name}) has no versions",
            url=model.url,
            hint="it may be unpublished or taken down",
        )
    for version in model.versions:
        if early_access or not version.in_early_access or version.id == locked:
            return version
    return model.versions[0]


def early_access_note(model: Model, chosen: Version) -> str | None:
    """One line naming the newer versions of ``model`` in Early Access that
    :func:`newest_version` passed over for ``chosen`` (``None`` if there are none).

    >>> early = Version(id=2, name="v2", availability="EarlyAccess",
    ...     early_access_ends_at="2099-01-01T00:00:00.000Z")
    >>> v1 = Version(id=1, name="v1")
    >>> early_access_note(Model(id=9, name="M", versions=(early, v1)), v1)
    'v2 is in Early Access until 2099-01-01; took v1 (pass --early-access for v2)'
    """
    listed = [version.id for version in model.versions]
    if chosen.id not in listed:
        return None
    newer = model.versions[: listed.index(chosen.id)]
    passed = [version for version in newer if version.in_early_access]
    if not passed:
        return None
    said = ", ".join(f"{version.name} is {version.early_access_label}" for version in passed)
    return f"{said}; took {chosen.name} (pass --early-access for {passed[0].name})"


def describe_file(file: File) -> str:
    """One line naming a file and what sets it apart from its siblings.

    >>> describe_file(File(id=2402203, name="wai_v160.safetensors", type="Model",
    ...     format="SafeTensor", size="pruned", fp="fp16", size_kb=6775429.5, primary=True))
    '2402203 wai_v160.safetensors (Model, SafeTensor, pruned, fp16, 6.46 GiB, primary)'
    """
    approx = file.approx_bytes
    traits = [
        file.type,
        file.format,
        file.size,
        file.fp,
        human_bytes(approx) if approx is not None else None,
        "primary" if file.primary else None,
    ]
    details = ", ".join(t for t in traits if t)
    return f"{file.id} {file.name} ({details})" if details else f"{file.id} {file.name}"


def _version_label(version: Version) -> str:
    if version.model_name:
        return f"{version.model_name} {version.name}"
    return f"version {version.id} ({version.name})"


def _no_files(version: Version) -> NotDownloadableError:
    return NotDownloadableError(
        f"{_version_label(version)} has no downloadable files (archived or removed)",
        hint="pick another version, or check the model page on civitai.com",
    )


def _no_match(version: Version, what: str) -> NotDownloadableError:
    available = "; ".join(describe_file(f) for f in version.files)
    return NotDownloadableError(
        f"no file of {_version_label(version)} {what}; available: {available}",
        hint="pick one with --type/--format/--fp/--size, or a download URL with ?fileId=N",
    )


def _matches(file: File, wanted: dict[str, str]) -> bool:
    return all((getattr(file, key) or "").lower() == value.lower() for key, value in wanted.items())


def _why_preferred(chosen: File, other: File) -> str:
    for preferred, prefers in FILE_PREFERENCES:
        if prefers(chosen) != prefers(other):
            return f"over {other.id} {other.name}: {preferred} preferred"
    return f"over {other.id} {other.name}: listed first by Civitai"


def check_scans(file: File, *, allow_unscanned: bool = False) -> None:
    """Refuse a file Civitai's pickle or virus scan has not passed.

    ``Danger``, ``Error``, ``Pending`` and any other verdict than ``Success`` are
    refused: a pending file has not been looked at yet (scans usually finish within
    minutes of an upload, so trying later is the fix). A record without scan fields
    (mirrors, hand-made records) says nothing either way and is not refused.

    Args:
        file: the chosen file.
        allow_unscanned: accept it anyway (``--allow-unscanned``).

    Raises:
        ScanRefusedError: a scan verdict other than ``Success`` (exit 4).
    """
    if allow_unscanned:
        return
    verdicts = (("pickle scan", file.pickle_scan), ("virus scan", file.virus_scan))
    failed = [(scan, verdict) for scan, verdict in verdicts if verdict not in (None, SCAN_PASSED)]
    if not failed:
        return
    said = " and ".join(f"its {scan} says {verdict}" for scan, verdict in failed)
    pending = all(verdict.lower() == "pending" for _, verdict in failed)
    raise ScanRefusedError(
        f"refusing {file.name} (file {file.id}): {said}, not {SCAN_PASSED}",
        scans=dict(failed),
        hint=(
            "Civitai has not scanned it yet; try again in a few minutes, or "
            if pending
            else "it may be unsafe; "
        )
        + "pass --allow-unscanned (allow_unscanned = true in civit.toml) to take it anyway",
    )


def code_warning(file: File) -> str | None:
    """A one-line warning for pickle files (``.ckpt``/``.pt``): loading one can run code.

    >>> code_warning(File(id=1, name="old.ckpt", format="PickleTensor")).split(":")[0]
    'old.ckpt is a PickleTensor (pickle) file'
    """
    if (file.format or "").lower() != "pickletensor":
        return None
    return (
        f"{file.name} is a PickleTensor (pickle) file: loading it can run code; "
        "prefer a SafeTensor file when there is one"
    )
