"""A requirements file for the models you have: ``civit freeze`` as a function.

::

    ROOT|DIR... ──► identify (hash cache; one POST /by-hash/ids; GET each version)
                ──► civit.toml: [settings] root + layout, one pinned [[model]] per file
                    (ref MODEL@VERSION + file_id, its folder and file name as they are)
                ──► civit.lock: resolved from that manifest with the versions at hand

Copy both files anywhere and ``civit install --frozen`` puts the same bytes at the same
paths under the root (relative to the manifest when the root lies inside its folder).

- The **root** is the WebUI install the folders belong to (the folder itself, or the
  nearest one above it that is detected), with its **layout**; ``layout`` overrides
  detection. Without a WebUI, the root is the folders' common folder, laid out
  ``flat``: every entry names its folder anyway.
- Files Civitai does not know are listed as comments at the end of the manifest (and
  in the result), never silently dropped; so are files that cannot be frozen: outside
  the root, unreadable, or with a name another system could not write; and symlinked
  folders, which the search does not enter unless they are given too. An unreadable
  file is a failure (:attr:`FreezeResult.exit_code` 1); the others are choices.
- When a pinned file has sidecars beside it (a ``.civitai.info``, a card, a preview),
  ``[settings]`` says ``info = true``, so an install elsewhere writes them too.
- Output is deterministic (entries sorted by path, no timestamps) and written only
  when it changes: freezing an unchanged folder again leaves both files byte for byte.
- An existing manifest is only replaced if ``civit freeze`` wrote it, and its
  ``[outdated] ignore`` list (the one part meant to be edited by hand) is kept.

Nothing here prints.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from civit.api import Client
from civit.errors import CivitError, ScanRefusedError, UsageError, worst_exit_code
from civit.fsutil import atomic_write_if_changed
from civit.hashcache import CacheOption, opened_cache
from civit.hashing import ProgressCallback, linked_folders
from civit.identification import Identification, identify_files
from civit.layouts import (
    LAYOUTS,
    Detection,
    LayoutChoice,
    detect_layout,
    find_layout_above,
    safe_filename,
)
from civit.layouts import LayoutName as Layout
from civit.lockfile import load_lock, write_lock
from civit.manifest import load_manifest, lock_path_for
from civit.paths import path_setting
from civit.records import File, Version
from civit.resolution import LazyClient, resolve_lock
from civit.select import check_scans
from civit.sidecars import has_sidecars

__all__ = ["FREEZE_HEADER", "FreezeResult", "FrozenFile", "freeze"]

FREEZE_HEADER = "# Frozen by `civit freeze`"
PathLike = str | os.PathLike[str]

# A comment line must stay one line: control characters (newlines above all) go.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class FrozenFile:
    """One identified file, as its ``[[model]]`` entry pins it."""

    path: Path
    version: Version
    file: File
    folder: str
    """Its folder, relative to the root, with ``/`` (``.`` for the root itself)."""
    scans: str | None = None
    """Why Civitai's scans do not vouch for it, when they do not: its entry then says
    ``allow_unscanned = true`` (the file is already in use; the manifest says so)."""

    @property
    def ref(self) -> str:
        """``MODEL@VERSION``."""
        return f"{self.version.model_id or ''}@{self.version.id}"


@dataclass(frozen=True)
class FreezeResult:
    """What :func:`freeze` wrote and what it left out.

    Attributes:
        manifest: the ``civit.toml`` path.
        lock: the ``civit.lock`` path beside it.
        root: the library's root folder.
        layout: its layout (detected, given, or ``flat``).
        frozen: the pinned files, sorted by path.
        unknown: files no Civitai file has the SHA256 of, with their SHA256.
        skipped: files that could not be frozen, and symlinked folders that were not
            searched, with why.
        manifest_written: whether ``civit.toml`` changed.
        lock_written: whether ``civit.lock`` changed.
        info: whether the manifest says ``info = true`` (a pinned file has sidecars).
        unreadable: the skipped files that could not be read, with the error.
    """

    manifest: Path
    lock: Path
    root: Path
    layout: str
    frozen: tuple[FrozenFile, ...]
    unknown: tuple[tuple[Path, str], ...]
    skipped: tuple[tuple[Path, str], ...]
    manifest_written: bool
    lock_written: bool
    info: bool = False
    unreadable: tuple[tuple[Path, CivitError], ...] = ()

    @property
    def exit_code(self) -> int:
        """0, or the most severe code of the files that could not be read (1)."""
        return worst_exit_code(error.exit_code for _, error in self.unreadable)

    def as_json(self) -> dict[str, object]:
        """A plain JSON object (``civit freeze --json``)."""
        errors = {path: error.as_json() for path, error in self.unreadable}
        return {
            "manifest": str(self.manifest),
            "lock": str(self.lock),
            "root": str(self.root),
            "layout": self.layout,
            "manifest_written": self.manifest_written,
            "lock_written": self.lock_written,
            "info": self.info,
            "exit_code": self.exit_code,
            "files": [
                {
                    "path": str(frozen.path),
                    "ref": frozen.ref,
                    "model_id": frozen.version.model_id,
                    "version_id": frozen.version.id,
                    "file_id": frozen.file.id,
                    "folder": frozen.folder,
                    "unscanned": frozen.scans,
                }
                for frozen in self.frozen
            ],
            "unknown": [{"path": str(path), "sha256": sha256} for path, sha256 in self.unknown],
            "skipped": [
                {"path": str(path), "reason": why, "error": errors.get(path)}
                for path, why in self.skipped
            ],
        }


def freeze(
    paths: PathLike | Iterable[PathLike],
    *,
    manifest: PathLike = "civit.toml",
    layout: LayoutChoice = "auto",
    client: Client | None = None,
    cache: CacheOption = None,
    progress: ProgressCallback | None = None,
) -> FreezeResult:
    """Write ``civit.toml`` + ``civit.lock`` pinning every identified model file.

    Args:
        paths: a WebUI root, or folders or files inside one (or any folders).
        manifest: where to write the manifest; the lock goes beside it.
        layout: the root's layout; ``auto`` detects it (``flat`` when nothing is).
        client: API client; one is made from the environment when omitted.
        cache: ``None`` for the user's hash cache, ``False`` to read every byte, or a
            :class:`civit.HashCache`.
        progress: ``progress(done, total)`` in bytes while hashing.

    Returns:
        A :class:`FreezeResult` (its ``exit_code`` is 1 when a file could not be read:
        the manifest then pins the files that could).

    Raises:
        UsageError: no paths, a path that does not exist, or ``manifest`` exists and
            was not written by ``civit freeze``.
        ManifestError: the written manifest does not read back (a bug: reported), or
            the one an earlier freeze wrote was edited so that it no longer reads.
        NetworkError / RateLimitError / ResponseError: a lookup failed.
    """
    given = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    if not given:
        raise UsageError("nothing to freeze", hint="pass a WebUI folder or model folders")
    for path in given:
        if not path.exists():
            raise UsageError(f"{path} does not exist")
    manifest_path = _absolute(manifest)
    kept_ignore = _kept_outdated_ignore(manifest_path)
    root, chosen = _library_root([_absolute(p) for p in given], layout)
    holder = LazyClient(client, None)
    try:
        with opened_cache(cache) as hashes:
            found = identify_files(given, client=holder.get(), cache=hashes, progress=progress)
            frozen, unknown, skipped = _sort_out(found, root)
            skipped += _links_not_searched(given)
            info = any(has_sidecars(item.path) for item in frozen)
            text = manifest_text(
                manifest_path.parent,
                root,
                chosen,
                frozen,
                unknown,
                skipped,
                ignore=kept_ignore,
                info=info,
            )
            manifest_written = atomic_write_if_changed(manifest_path, text.encode("utf-8"))
            parsed = load_manifest(manifest_path)
            lock_path = lock_path_for(manifest_path)
            locked = resolve_lock(
                parsed,
                holder,
                previous=load_lock(lock_path),
                upgrade=False,
                cache=hashes,
                known={item.version.id: item.version for item in frozen},
            )
    finally:
        holder.close()
    lock_written = write_lock(locked, lock_path)
    return FreezeResult(
        manifest_path,
        lock_path,
        root,
        chosen,
        tuple(frozen),
        tuple(unknown),
        tuple(skipped),
        manifest_written,
        lock_written,
        info,
        tuple((item.path, item.error) for item in found if item.error is not None),
    )


def _kept_outdated_ignore(manifest: Path) -> tuple[int, ...]:
    """The ``[outdated] ignore`` list of the manifest an earlier freeze wrote (the one
    part of it a user is invited to edit, so a refresh keeps it); ``()`` when there is
    none yet.

    Raises:
        UsageError: ``manifest`` exists and was not written by ``civit freeze``.
        ManifestError: it was, but no longer reads (its ignore list would be lost).
    """
    try:
        head = manifest.read_text(encoding="utf-8")[: len(FREEZE_HEADER)]
    except FileNotFoundError:
        return ()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {manifest}: {exc}") from exc
    if head != FREEZE_HEADER:
        raise UsageError(
            f"{manifest} exists and was not written by civit freeze; not replacing it",
            hint="pass -f frozen.toml (or another name) to write the frozen manifest elsewhere",
        )
    return load_manifest(manifest).outdated_ignore


def _absolute(path: PathLike) -> Path:
    """``path`` made absolute with ``..`` folded away (without resolving symlinks: a
    models folder linked from elsewhere still lies inside its WebUI)."""
    return Path(os.path.normpath(Path(path).absolute()))


def _library_root(paths: list[Path], layout: LayoutChoice) -> tuple[Path, Layout]:
    """The WebUI install the paths share, and its layout (see the module docstring)."""
    seen: dict[Path, Detection | None] = {}
    found = [_webui_above(path, seen) for path in paths]
    roots = {root for root, _ in (f for f in found if f is not None)}
    if len(roots) == 1 and None not in found:
        (root,) = roots
        detected = next(f[1] for f in found if f is not None)
        return root, detected if layout == "auto" else _layout(layout)
    folders = [path if path.is_dir() else path.parent for path in paths]
    common = Path(os.path.commonpath(folders))
    return common, "flat" if layout == "auto" else _layout(layout)


def _layout(choice: LayoutChoice) -> Layout:
    if choice not in LAYOUTS:
        raise UsageError(f"unknown layout {choice!r}; use auto|{'|'.join(LAYOUTS)}")
    return choice


def _webui_above(path: Path, seen: dict[Path, Detection | None]) -> tuple[Path, Layout] | None:
    """The WebUI install ``path`` is (a folder) or lies in, as its root (the portable
    ComfyUI folder's root is its ComfyUI/) and layout."""
    if path.is_dir():
        if path not in seen:
            seen[path] = detect_layout(path)
        detected = seen[path]
        if detected is not None:
            return detected.root, detected.layout
    above = find_layout_above(path, seen=seen)
    return (above.root, above.layout) if above is not None else None


def _sort_out(
    found: Iterable[Identification], root: Path
) -> tuple[list[FrozenFile], list[tuple[Path, str]], list[tuple[Path, str]]]:
    frozen: list[FrozenFile] = []
    unknown: list[tuple[Path, str]] = []
    skipped: list[tuple[Path, str]] = []
    for item in found:
        if item.status == "error":
            skipped.append((item.path, str(item.error)))
        elif item.status == "unknown":
            unknown.append((item.path, item.sha256 or ""))
        elif (why := _unfreezable(item, root)) is not None:
            skipped.append((item.path, why))
        else:
            assert item.version is not None and item.sha256 is not None
            file = item.version.file_with_hash(item.sha256)
            assert file is not None  # _unfreezable checked it
            folder = _absolute(item.path).parent.relative_to(root).as_posix()
            scans: str | None = None
            try:
                check_scans(file)
            except ScanRefusedError as exc:
                scans = exc.message
            frozen.append(FrozenFile(item.path, item.version, file, folder, scans))
    frozen.sort(key=lambda f: (f.folder, f.path.name))
    return frozen, unknown, skipped


def _links_not_searched(given: list[Path]) -> list[tuple[Path, str]]:
    """The symlinked folders the search did not enter, unless they lead back into the
    folders searched (Stability Matrix links each package's model folders to its
    ``Models/``): a ``models/loras`` linked to another disk is named, not dropped."""
    searched = [_absolute(path) for path in given]
    real = [Path(os.path.realpath(path)) for path in searched if path.is_dir()]
    return [
        (link, "a symlinked folder, not searched: pass it as well to freeze the files in it")
        for link in linked_folders(given)
        if _absolute(link) not in searched
        and not any(Path(os.path.realpath(link)).is_relative_to(folder) for folder in real)
    ]


def _unfreezable(item: Identification, root: Path) -> str | None:
    """Why a known file cannot be pinned as it is, or ``None``."""
    path = _absolute(item.path)
    if item.version is None or item.sha256 is None:
        return "Civitai knows its SHA256 but no longer lists its version"
    if item.version.file_with_hash(item.sha256) is None:
        return f"version {item.version.id} no longer lists a file with its SHA256"
    if not path.is_relative_to(root):
        return f"it is outside the root {root}"
    if safe_filename(path.name) != path.name:
        return f"its name is not portable (civit would save it as {safe_filename(path.name)!r})"
    folder = path.parent.relative_to(root).as_posix()
    if path_setting(folder, environ=_EVERY_VARIABLE_SET) != Path(folder):
        return "its folder name holds ~, $, % or \\, which a manifest path would expand"
    return None


class _EveryVariableSet(Mapping[str, str]):
    """An environment in which every variable is set: a folder name that reads back
    differently through it would expand on some machine (``$HOME``, ``%APPDATA%``)."""

    def __getitem__(self, name: str) -> str:
        return f"<{name}>"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


_EVERY_VARIABLE_SET = _EveryVariableSet()


def manifest_text(
    folder: Path,
    root: Path,
    layout: str,
    frozen: Iterable[FrozenFile],
    unknown: Iterable[tuple[Path, str]],
    skipped: Iterable[tuple[Path, str]],
    *,
    ignore: Sequence[int] = (),
    info: bool = False,
) -> str:
    """The frozen ``civit.toml``: settings, one commented ``[[model]]`` per file, and
    comments naming what was left out.

    Args:
        folder: the manifest's folder (a root inside it is written relative to it).
        root: the library's root.
        layout: its layout.
        frozen: the pinned files.
        unknown: files unknown to Civitai, with their SHA256.
        skipped: files that could not be pinned, with why.
        ignore: the ``[outdated] ignore`` model ids to keep.
        info: write ``info = true`` (the library has sidecars to bring back).
    """
    try:
        written_root = root.relative_to(folder).as_posix()
    except ValueError:
        written_root = root.as_posix()
    sidecars = {"info": True} if info else {}
    blocks = [
        f"{FREEZE_HEADER} from the model files under {_comment(written_root)}.\n"
        "# `civit install --frozen` (with civit.lock beside it) puts the same files at the\n"
        "# same paths. Run `civit freeze` again to refresh it: that keeps an [outdated]\n"
        "# table added here and rewrites the rest.\n",
        tomli_w.dumps({"settings": {"root": written_root, "layout": layout, **sidecars}}),
    ]
    if ignore:
        blocks.append(f"[outdated]\nignore = [{', '.join(str(int(i)) for i in ignore)}]\n")
    for item in frozen:
        version = item.version
        what = ", ".join(t for t in (version.model_type, version.base_model) if t)
        title = f"{version.model_name or 'model'} {version.name}" + (f" ({what})" if what else "")
        table: dict[str, object] = {
            "ref": item.ref,
            "file_id": item.file.id,
            "dest": item.folder,
            "name": item.path.name,
        }
        comments = f"# {_comment(title)}\n"
        if item.scans is not None:
            table["allow_unscanned"] = True
            comments += f"# Civitai's scans do not vouch for it: {_comment(item.scans)}\n"
        blocks.append(f"{comments}[[model]]\n{tomli_w.dumps(table)}")
    left_out = [f"#   {_relative(path, root)}  SHA256 {sha256}" for path, sha256 in unknown]
    if left_out:
        blocks.append("# Not on Civitai (not frozen):\n" + "\n".join(left_out) + "\n")
    not_frozen = [f"#   {_relative(path, root)}: {_comment(why)}" for path, why in skipped]
    if not_frozen:
        blocks.append("# Could not be frozen:\n" + "\n".join(not_frozen) + "\n")
    return "\n".join(blocks)


def _relative(path: Path, root: Path) -> str:
    absolute = _absolute(path)
    shown = absolute.relative_to(root) if absolute.is_relative_to(root) else absolute
    return _comment(shown.as_posix())


def _comment(text: str) -> str:
    return _UNPRINTABLE.sub("?", text)
