"""``civit.toml`` says what is wanted, ``civit.lock`` pins what it resolved to.

The flow, like ``uv lock`` / ``uv sync --frozen`` (installing is :mod:`civit.installer`)::

    civit.toml ──► load_manifest ──► lock() ──► civit.lock ──► install(frozen=True)
    [[model]] refs   validated,        API:         version id,     stat + hash cache;
    + [settings]     line numbers      version,     file id, name,  missing files: mirror,
                                       file, dest   SHA256, dest    else Civitai; store links

Manifest (``civit.toml``)::

    [settings]                # all optional
    root = "ComfyUI"          # a WebUI folder, relative to this file
    layout = "comfyui"        # auto | a1111 | forge | sdnext | comfyui | swarmui | fooocus |
                              # stabilitymatrix | flat
    dest = "models"           # a plain folder instead of root + layout
    jobs = 4                  # files at once
    connections = 8           # connections per file
    store = "~/.cache/civit-store"            # content-addressed store (hardlinks)
    mirror = "http://cache.local/{sha256}"    # tried before Civitai (or s3://bucket/prefix)
    overwrite = false         # replace files civit did not put there (default: refuse)
    allow_unscanned = false   # accept files Civitai's scans have not passed
    subfolder = "{base_model}"  # below each type folder ({creator} {model_name} {type})
    info = true               # write .civitai.info, the WebUI's card and a preview
    preview_nsfw = "pg13"     # the most explicit preview: pg, pg13, r, x, xxx or none

    [[model]]
    ref = "827184"            # anything `civit get` accepts: id, id@version, URL, AIR, hash
    fp = "fp16"               # optional file selection: type, format, fp, size
    # file_id = 2402204       # or exactly this file of a pinned version (ref = "827184@...")
    dest = "models/loras/style"   # optional: relative to root (else to this file)
    name = "wai.safetensors"      # optional: save under this name
    subfolder = "anime"           # optional: this entry's subfolder template
    overwrite = true              # optional: replace whatever file is at its path
    allow_unscanned = true        # optional: accept it although a scan did not pass

    [outdated]                # optional: for `civit outdated`, not for resolution
    ignore = [4201]           # model ids never reported as outdated

Paths (``root``, ``dest``, ``store``) expand ``~`` and environment variables and take
``/`` or ``\\`` (:func:`civit.paths.path_setting`); write Windows paths in single quotes.

Lock (``civit.lock``): ``version``, ``manifest_hash`` and one ``[[file]]`` per entry, in
manifest order, keys in a fixed order (see :class:`LockedFile`). ``manifest_hash`` is
the SHA256 of the manifest's *meaning* for resolution — its ``[[model]]`` entries and
the ``root``/``layout``/``dest``/``allow_unscanned`` settings, as canonical JSON — so
comments, whitespace, key order, the tuning settings (``jobs``, ``connections``,
``store``, ``mirror``) and ``overwrite`` can change without making the lock stale. The
lock never holds a token or a link.

Sizes: Civitai only publishes ``sizeKB`` (rounded KiB), kept as ``size_kb``. ``size``
holds the exact byte count once civit has seen the verified file (after ``civit install``,
or when ``civit lock`` re-resolves with the files present); until then it is absent.

Precedence for ``jobs``, ``connections``, ``store`` and ``mirror``: an argument (CLI
flag) > environment variable > ``[settings]`` in the manifest > user config > default.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from civit.config import outdated_ignore, toml_error_hint
from civit.errors import ManifestError, UsageError
from civit.fsutil import read_regular_file
from civit.layouts import LAYOUTS, check_subfolder, safe_filename
from civit.lockfile import toml_tables
from civit.mirrors import check_mirror
from civit.paths import expand_path, path_setting
from civit.records import preview_level
from civit.refs import Ref, parse_ref, redact_ref

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "Manifest",
    "ManifestSettings",
    "ModelEntry",
    "as_manifest",
    "load_manifest",
    "lock_path_for",
    "write_manifest",
]


_SETTINGS_KEYS = (
    "root",
    "layout",
    "dest",
    "connections",
    "jobs",
    "store",
    "mirror",
    "overwrite",
    "allow_unscanned",
    "subfolder",
    "info",
    "preview_nsfw",
)
_ENTRY_KEYS = (
    "ref",
    "file_id",
    "type",
    "format",
    "fp",
    "size",
    "dest",
    "name",
    "subfolder",
    "overwrite",
    "allow_unscanned",
)
# The settings that decide what resolves and where it lands; the rest only tune runs.
_RESOLUTION_SETTINGS = ("root", "layout", "dest", "allow_unscanned", "subfolder")
# Entry keys that only say how to install, not what: they do not stale the lock.
_INSTALL_ONLY_KEYS = frozenset({"overwrite"})
_SIZES = ("pruned", "full")


# -- manifest ----------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestSettings:
    """The ``[settings]`` table; paths are absolute (resolved against the manifest)."""

    root: Path | None = None
    layout: str | None = None
    dest: Path | None = None
    connections: int | None = None
    jobs: int | None = None
    store: Path | None = None
    mirror: str | None = None
    overwrite: bool = False
    allow_unscanned: bool = False
    subfolder: str | None = None
    info: bool = False
    preview_nsfw: str | None = None


@dataclass(frozen=True)
class ModelEntry:
    """One ``[[model]]`` entry.

    ``index`` counts entries from 1; ``line`` is where its ``[[model]]`` header is.
    ``dest`` is absolute: a relative one was resolved against ``[settings] root``, or
    the manifest's folder when there is no root. ``content_hash`` covers the entry's
    table and the resolution settings (the lock keeps it per ``[[file]]``).
    """

    ref: str
    parsed: Ref
    index: int
    line: int | None = None
    type: str | None = None
    format: str | None = None
    fp: str | None = None
    size: str | None = None
    dest: Path | None = None
    name: str | None = None
    subfolder: str | None = None
    overwrite: bool = False
    allow_unscanned: bool = False
    file_id: int | None = None
    content_hash: str = ""

    @property
    def label(self) -> str:
        """How messages name this entry, e.g. ``[[model]] #2 (328553)``."""
        return f"[[model]] #{self.index} ({redact_ref(self.ref)})"


@dataclass(frozen=True)
class Manifest:
    """A parsed, validated ``civit.toml``."""

    path: Path
    settings: ManifestSettings
    entries: tuple[ModelEntry, ...]
    content_hash: str
    outdated_ignore: tuple[int, ...] = ()

    @property
    def folder(self) -> Path:
        """The folder relative paths (and lock destinations) are based on."""
        return self.path.parent

    @property
    def lock_path(self) -> Path:
        """The lock file beside the manifest (``civit.toml`` -> ``civit.lock``)."""
        return lock_path_for(self.path)


def lock_path_for(manifest_path: str | os.PathLike[str]) -> Path:
    """The lock file of a manifest: same folder and stem, suffix ``.lock``.

    >>> lock_path_for("ci/civit.toml").as_posix()
    'ci/civit.lock'
    """
    return Path(manifest_path).with_suffix(".lock")


def _header_lines(text: str, pattern: str) -> list[int]:
    """1-based numbers of the lines that open a table matching ``pattern``."""
    regex = re.compile(pattern)
    return [number for number, line in enumerate(text.splitlines(), 1) if regex.match(line)]


class _Where:
    """Builds errors that name the file, the line and the entry."""

    def __init__(self, path: Path, line: int | None, what: str) -> None:
        self.path = path
        self.line = line
        self.what = what

    def error(self, problem: str, hint: str | None = None) -> ManifestError:
        place = f"{self.path}:{self.line}" if self.line else str(self.path)
        return ManifestError(f"{place}: {self.what}: {problem}", hint=hint)


def _check_keys(table: Mapping[str, Any], known: Sequence[str], where: _Where) -> None:
    unknown = [key for key in table if key not in known]
    if unknown:
        raise where.error(
            f"unknown key {', '.join(repr(k) for k in unknown)}",
            hint=f"known keys: {', '.join(known)}",
        )


def _text(table: Mapping[str, Any], key: str, where: _Where) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise where.error(f"{key} must be a non-empty string, not {value!r}")
    return value.strip()


def _count(table: Mapping[str, Any], key: str, where: _Where, maximum: int) -> int | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise where.error(f"{key} must be a whole number from 1 to {maximum}, not {value!r}")
    return value


def _checked_text(
    table: Mapping[str, Any], key: str, where: _Where, check: Callable[[str], object]
) -> str | None:
    """:func:`_text`, then ``check`` (a validator that raises :class:`UsageError`) on
    the value; its error is re-raised naming the file, line and table."""
    value = _text(table, key, where)
    if value is not None:
        try:
            check(value)
        except UsageError as exc:
            raise where.error(exc.message, hint=exc.hint) from exc
    return value


def _flag(table: Mapping[str, Any], key: str, where: _Where) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise where.error(f"{key} must be true or false, not {value!r}")
    return value


def _path(base: Path, text: str | None, key: str, where: _Where) -> Path | None:
    if text is None:
        return None
    try:
        return base / path_setting(text)
    except UsageError as exc:
        raise where.error(f"{key}: {exc.message}", hint=exc.hint) from exc


def _settings_meaning(document: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[settings]`` that decide what entries resolve to and where they land."""
    settings = document.get("settings", {})
    if not isinstance(settings, Mapping):
        return {}
    return {key: settings[key] for key in _RESOLUTION_SETTINGS if key in settings}


def _entry_meaning(table: object) -> object:
    """A ``[[model]]`` table without the keys that only say how to install it."""
    if not isinstance(table, Mapping):
        return table
    return {key: value for key, value in table.items() if key not in _INSTALL_ONLY_KEYS}


def _digest(meaning: object) -> str:
    # default=str: TOML dates and times are not JSON; validation rejects them later.
    canonical = json.dumps(
        meaning, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _content_hash(document: Mapping[str, Any]) -> str:
    models = document.get("model", [])
    return _digest(
        {
            "settings": _settings_meaning(document),
            "model": [
                _entry_meaning(m) for m in (models if isinstance(models, list) else [models])
            ],
        }
    )


def _entry_hash(document: Mapping[str, Any], table: object) -> str:
    """What one entry resolves from: its table and the resolution settings. A lock
    entry carrying this hash can be kept when other entries change (``civit lock``
    resolves only new and edited entries)."""
    return _digest({"settings": _settings_meaning(document), "model": _entry_meaning(table)})


def _parse_settings(document: Mapping[str, Any], path: Path, text: str) -> ManifestSettings:
    lines = _header_lines(text, r"\s*\[\s*settings\s*\]")
    where = _Where(path, lines[0] if lines else None, "[settings]")
    table = document.get("settings", {})
    if not isinstance(table, dict):
        raise where.error("settings must be a table")
    _check_keys(table, _SETTINGS_KEYS, where)
    layout = _text(table, "layout", where)
    if layout is not None and layout not in ("auto", *LAYOUTS):
        raise where.error(f"unknown layout {layout!r}", hint=f"use auto|{'|'.join(LAYOUTS)}")
    mirror = _checked_text(table, "mirror", where, check_mirror)
    folder = path.parent
    return ManifestSettings(
        root=_path(folder, _text(table, "root", where), "root", where),
        layout=layout,
        dest=_path(folder, _text(table, "dest", where), "dest", where),
        connections=_count(table, "connections", where, 32),
        jobs=_count(table, "jobs", where, 64),
        store=_path(folder, _text(table, "store", where), "store", where),
        mirror=mirror,
        overwrite=_flag(table, "overwrite", where),
        allow_unscanned=_flag(table, "allow_unscanned", where),
        subfolder=_checked_text(table, "subfolder", where, check_subfolder),
        info=_flag(table, "info", where),
        preview_nsfw=_checked_text(table, "preview_nsfw", where, preview_level),
    )


def _parse_entry(
    table: object,
    index: int,
    line: int | None,
    path: Path,
    settings: ManifestSettings,
    content_hash: str,
) -> ModelEntry:
    where = _Where(path, line, f"[[model]] #{index}")
    if not isinstance(table, dict):
        raise where.error("each [[model]] must be a table")
    ref = table.get("ref")
    if not isinstance(ref, str) or not ref.strip():
        raise where.error("ref is required (a model id, id@version, URL, AIR or hash)")
    where.what = f"[[model]] #{index} ({redact_ref(ref)})"
    _check_keys(table, _ENTRY_KEYS, where)
    try:
        parsed = parse_ref(ref)
    except UsageError as exc:
        raise where.error(exc.message) from exc
    file_id = _file_id(table, parsed, where)
    size = _text(table, "size", where)
    if size is not None and size.lower() not in _SIZES:
        raise where.error(f"size must be pruned or full, not {size!r}")
    name = _text(table, "name", where)
    if name is not None and safe_filename(name) != name:
        raise where.error(
            f"name {name!r} is not a plain file name", hint=f"use {safe_filename(name)!r}"
        )
    return ModelEntry(
        ref=ref.strip(),
        parsed=parsed,
        index=index,
        line=line,
        type=_text(table, "type", where),
        format=_text(table, "format", where),
        fp=_text(table, "fp", where),
        size=size,
        dest=_path(settings.root or path.parent, _text(table, "dest", where), "dest", where),
        name=name,
        subfolder=_checked_text(table, "subfolder", where, check_subfolder),
        overwrite=_flag(table, "overwrite", where),
        allow_unscanned=_flag(table, "allow_unscanned", where),
        file_id=file_id,
        content_hash=content_hash,
    )


def _file_id(table: Mapping[str, Any], parsed: Ref, where: _Where) -> int | None:
    """``file_id``: exactly one file of the version the ref pins (``civit freeze``
    writes it), so it needs a version pin and excludes the selection keys."""
    value = table.get("file_id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise where.error(f"file_id must be a file id (a whole number), not {value!r}")
    if parsed.version_id is None:
        raise where.error("file_id needs a ref with a version", hint='write ref = "MODEL@VERSION"')
    selection = [key for key in ("type", "format", "fp", "size") if key in table]
    if selection:
        raise where.error(f"file_id names one file; drop {', '.join(selection)}")
    return value


def load_manifest(path: str | os.PathLike[str] = "civit.toml") -> Manifest:
    """Read and validate a manifest.

    Args:
        path: the ``civit.toml`` file.

    Returns:
        The manifest, with every path made absolute.

    Raises:
        ManifestError: missing or unreadable file, bad TOML, unknown keys or bad values;
            the message names the file, line and entry.
    """
    manifest_path = expand_path(path).absolute()
    try:
        text = read_regular_file(manifest_path).decode("utf-8")
    except FileNotFoundError as exc:
        raise ManifestError(
            f"no manifest at {manifest_path}",
            hint="create civit.toml with [[model]] entries, or pass -f PATH",
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(
            f"cannot read {manifest_path}: {getattr(exc, 'strerror', None) or exc}"
        ) from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(
            f"{manifest_path}: invalid TOML: {exc}", hint=toml_error_hint(exc)
        ) from exc
    except RecursionError as exc:
        raise ManifestError(
            f"{manifest_path}: invalid TOML: arrays or tables nest too deeply"
        ) from exc
    _check_keys(
        document, ("settings", "model", "outdated"), _Where(manifest_path, None, "top level")
    )
    settings = _parse_settings(document, manifest_path, text)
    try:
        ignore = outdated_ignore(document.get("outdated", {}), str(manifest_path))
    except UsageError as exc:
        raise ManifestError(exc.message) from exc
    models = document.get("model", [])
    if not isinstance(models, list):
        raise ManifestError(f"{manifest_path}: model must be an array of [[model]] tables")
    lines: list[int | None] = list(_header_lines(text, r"\s*\[\[\s*model\s*\]\]"))
    lines += [None] * (len(models) - len(lines))  # entries written as inline tables
    entries = tuple(
        _parse_entry(table, index, line, manifest_path, settings, _entry_hash(document, table))
        for index, (table, line) in enumerate(zip(models, lines, strict=False), 1)
    )
    return Manifest(manifest_path, settings, entries, _content_hash(document), ignore)


def write_manifest(
    path: str | os.PathLike[str],
    models: Iterable[str | Mapping[str, object]],
    *,
    settings: Mapping[str, object] | None = None,
) -> Manifest:
    """Write a ``civit.toml`` (for scripts, tests and benchmarks) and load it back.

    Args:
        path: where to write it.
        models: refs, or ``[[model]]`` tables such as ``{"ref": "827184", "fp": "fp16"}``.
        settings: the ``[settings]`` table, e.g. ``{"root": "ComfyUI", "layout": "comfyui"}``.

    Returns:
        The manifest as :func:`load_manifest` reads it.

    Raises:
        ManifestError: the content is not a valid manifest.
    """
    head = {"settings": dict(settings)} if settings else {}
    tables = [{"ref": m} if isinstance(m, str) else dict(m) for m in models]
    target = Path(path)
    target.write_text(toml_tables(head, "model", tables), encoding="utf-8")
    return load_manifest(target)


def as_manifest(manifest: Manifest | str | os.PathLike[str]) -> Manifest:
    return manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
