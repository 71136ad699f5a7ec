"""Which files a ref stands for: one, every file of a version, every version of a model.

``civit get`` asks :func:`choose_files` for each ref, then downloads what it returns:

- by default, the ref's version (for a model ref, the newest a user can download now,
  :func:`civit.select.newest_version`: a newer one in Early Access is passed over,
  and a note says so, unless ``early_access``) and the one file the selection picks
  (:func:`civit.select.select_file`; a download URL's ``fileId`` or a hash ref's file
  exactly);
- ``all_files``: every file of the version matching the selection, training data only
  when ``type`` asks for it (:func:`civit.select.select_files`);
- ``all_versions``: the same for every version of the ref's model; a version without a
  matching file is reported, not fatal.

Files of several versions are saved side by side, and creators often reuse one file
name in every version. :func:`civit.records.with_variants` names them apart, as it
names the same-named files of one version: the oldest version keeps the plain name,
newer ones get their version's name as a tag (``style_v2-1.safetensors``), so names
stay put when a new version comes out.

:func:`refs_from_lines` reads refs from a list (``civit get -`` on stdin).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from civit.api import Client
from civit.errors import NotDownloadableError, ResponseError
from civit.records import File, Model, Version, with_variants
from civit.refs import Ref, parse_ref
from civit.select import early_access_note, exact_file_id, select_file, select_files

__all__ = ["PlannedFile", "choose_files", "name_apart", "refs_from_lines"]


@dataclass(frozen=True)
class PlannedFile:
    """One file to download, or a version that contributes none.

    Attributes:
        version: the version.
        file: the file (``None`` when the version has no file the selection wants).
        reason: why ``file`` is ``None``.
        notes: how the version was chosen, a line each (a newer one in Early Access
            passed over).
        model: the model record, when choosing fetched it (a model ref, all versions),
            so that sidecars and a ``{creator}`` subfolder need not fetch it again.
    """

    version: Version
    file: File | None = None
    reason: str | None = None
    notes: tuple[str, ...] = ()
    model: Model | None = None


def choose_files(
    ref: str | Ref,
    *,
    client: Client,
    type: str | None = None,
    format: str | None = None,
    fp: str | None = None,
    size: str | None = None,
    all_files: bool = False,
    all_versions: bool = False,
    full: bool = False,
    early_access: bool = False,
) -> list[PlannedFile]:
    """The files ``ref`` stands for (see the module docstring).

    Args:
        ref: anything :func:`civit.parse_ref` accepts, or a parsed :class:`Ref`.
        client: the API client.
        type: file type filter, e.g. ``Model``, ``VAE``, ``Training Data``.
        format: ``SafeTensor``, ``PickleTensor``, ``GGUF``... (aliases accepted).
        fp: precision filter, e.g. ``fp16``.
        size: ``pruned`` or ``full``.
        all_files: every matching file of a version, not the one preferred.
        all_versions: every version of the ref's model, newest first.
        full: fetch each version's own record (with ``air`` and the model summary,
            as ``.civitai.info`` sidecars want).
        early_access: for a model ref, take the newest version even in Early Access.

    Returns:
        The planned files (each with ``file`` set), and under ``all_versions`` also
        the versions that have none (``reason`` set).

    Raises:
        UsageError: a malformed ref. NotFoundError: no such model, version or hash.
        NotDownloadableError: no file matches (in any version).
    """
    parsed = parse_ref(ref) if isinstance(ref, str) else ref
    selection = {
        "type": type or parsed.type,
        "format": format or parsed.format,
        "fp": fp or parsed.fp,
        "size": size or parsed.size,
    }
    if not all_versions:
        notes: tuple[str, ...] = ()
        model: Model | None = None
        if parsed.model_id is not None and parsed.version_id is None:  # a model ref
            model, version = client.get_newest_version(
                parsed.model_id, full=full, early_access=early_access
            )
            note = early_access_note(model, version)
            notes = (note,) if note else ()
        else:
            version = client.get_version_for(parsed, full=full)
        exact = exact_file_id(version, parsed) if not (type or format or fp or size) else None
        files = _pick(version, selection, all_files=all_files, file_id=exact)
        return [PlannedFile(version, file, notes=notes, model=model) for file in files]
    model_id = parsed.model_id
    if model_id is None or parsed.hash is not None:
        found = client.get_version_for(parsed)
        model_id = found.model_id
        if model_id is None:
            raise ResponseError(f"Civitai did not say which model version {found.id} belongs to")
    planned: list[PlannedFile] = []
    model = client.get_model(model_id)
    for listed in model.versions:
        version = client.get_version(listed.id) if full else listed
        try:
            files = _pick(version, selection, all_files=all_files, file_id=None)
        except NotDownloadableError:
            reason = _nothing_in(version, selection)
            planned.append(PlannedFile(version, reason=reason, model=model))
            continue
        planned.extend(PlannedFile(version, file, model=model) for file in files)
    if not any(item.file for item in planned):
        reasons = "; ".join(f"{item.version.name}: {item.reason}" for item in planned)
        raise NotDownloadableError(
            f"no version of model {model_id} has a file to download ({reasons})",
            hint="loosen --type/--format/--fp/--size",
        )
    return name_apart(planned)


def _nothing_in(version: Version, selection: dict[str, str | None]) -> str:
    if not version.files:
        return "no downloadable files (archived or removed)"
    shown = ", ".join(f"{key}={value}" for key, value in selection.items() if value)
    return f"no file matches {shown}" if shown else "only training data"


def _pick(
    version: Version, selection: dict[str, str | None], *, all_files: bool, file_id: int | None
) -> list[File]:
    if all_files:
        return select_files(version, **selection)
    return [select_file(version, **selection, file_id=file_id)]


def name_apart(planned: list[PlannedFile]) -> list[PlannedFile]:
    """``planned`` with same-named files named apart, the oldest version's keeping the
    plain name (see the module docstring); a file planned twice keeps one name.

    ``civit get`` applies it over every ref of the command, so ``get MODEL@V1 MODEL@V2``
    (or the same refs on stdin) saves two files as ``--all-versions`` would, instead
    of the second replacing the first.
    """
    chosen = {item.file.id: item for item in planned if item.file is not None}
    oldest_first = sorted(chosen.values(), key=lambda item: item.version.release_key)
    labels = {file_id: item.version.name for file_id, item in chosen.items()}
    named = {
        file.id: file
        for file in with_variants(
            (item.file for item in oldest_first if item.file is not None), labels=labels
        )
    }
    return [
        replace(item, file=named[item.file.id]) if item.file is not None else item
        for item in planned
    ]


def refs_from_lines(lines: Iterable[str]) -> list[str]:
    """The refs in a list, one per line: blank lines and ``#`` comments are skipped,
    and so is anything after a ref (refs hold no spaces). A byte order mark (Windows
    Notepad starts UTF-8 files with one) is not part of the first ref.

    >>> refs_from_lines(["\ufeff# my LoRAs", "", "328553  # detail", " 827184@2514310 "])
    ['328553', '827184@2514310']
    """
    refs = []
    for line in lines:
        words = line.replace("\ufeff", "").split()
        if words and not words[0].startswith("#"):
            refs.append(words[0])
    return refs
