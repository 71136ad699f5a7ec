"""Local model files: ``civit hash``, ``civit identify`` and ``civit verify``.

``civit hash`` must start fast (it often answers from the hash cache in milliseconds),
so what only identify and verify need (the API client, the download engine) is
imported inside those commands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from civit.cli.app import App, ExpandedPath, command, pass_app
from civit.cli.output import count_files, echo, echo_json, say
from civit.cli.progress import Progress
from civit.errors import worst_exit_code
from civit.hashing import (
    MODEL_EXTENSIONS,
    hash_files,
    iter_model_files,
)
from civit.records import parse_algorithms, preview_level

if TYPE_CHECKING:
    from civit.identification import Identification

DIGEST_WIDTHS = {"sha256": 64, "blake3": 64, "crc32": 8, "autov1": 8, "autov2": 10, "autov3": 12}


def checksum_line(digest: str, path: Path) -> str:
    """``<digest>  <path>`` exactly as ``sha256sum`` prints it, so ``sha256sum -c``
    reads it back.

    Like coreutils, a name holding a backslash, newline or carriage return is escaped
    and the line starts with a backslash.
    """
    name = str(path)
    if not any(char in name for char in "\\\n\r"):
        return f"{digest.lower()}  {name}"
    escaped = name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return f"\\{digest.lower()}  {escaped}"


def digest_row(algorithms: Sequence[str], digests: Mapping[str, str], path: str) -> str:
    """One table row: digests upper-case as Civitai prints them (``-`` where one does not
    apply, e.g. AutoV3 of a .ckpt), then the path."""
    cells = [digests.get(name, "-").ljust(DIGEST_WIDTHS[name]) for name in algorithms]
    return "  ".join([*cells, path])


def _warn_about_empty_folders(paths: Sequence[Path], files: Sequence[Path]) -> None:
    for folder in (path for path in paths if path.is_dir()):
        if not any(folder in file.parents for file in files):
            extensions = " ".join(sorted(MODEL_EXTENSIONS))
            say(f"civit: {folder}: no model files in it ({extensions})")


@command("hash")
@click.argument(
    "paths", nargs=-1, required=True, type=ExpandedPath(path_type=Path, literal_first=True)
)
@click.option(
    "--algo",
    "algorithms",
    default="sha256",
    show_default=True,
    metavar="LIST",
    help="Comma-separated: sha256, blake3, crc32, autov1, autov2, autov3, or all.",
)
@click.option("--no-cache", is_flag=True, help="Read every byte; neither use nor fill the cache.")
@pass_app
def hash_command(app: App, paths: tuple[Path, ...], algorithms: str, no_cache: bool) -> int:
    """Print Civitai's digests of local files; folders are searched for model files.

    One algorithm prints "<digest>  <path>" lines like sha256sum (so sha256sum -c
    reads them); several print a table, upper-case like Civitai. All of them are
    computed in one pass. Unchanged files answer from the hash cache without being
    read. Unreadable files are reported on stderr, the others still hashed (exit 1).

    \b
    Examples:
      civit hash model.safetensors              SHA256, as sha256sum prints it
      civit hash ~/ComfyUI/models --algo all    every digest of every model file
      civit hash *.safetensors --algo autov2 --json
    """
    wanted = parse_algorithms(algorithms)
    files = iter_model_files(paths)
    _warn_about_empty_folders(paths, files)
    table = len(wanted) > 1
    results = []
    with Progress(quiet=app.quiet) as progress:
        if table and not app.json and files:
            header = [name.upper().ljust(DIGEST_WIDTHS[name]) for name in wanted]
            progress.result("  ".join([*header, "PATH"]))
        for found in hash_files(
            files,
            wanted,
            cache=False if no_cache else None,
            progress=progress.track("hash", delay=0.5, leave=False),
        ):
            results.append(found)
            if found.error is not None:
                progress.message(f"civit: error: {found.error}")
                continue
            if app.json:
                continue
            if table:
                progress.result(digest_row(wanted, found.digests, str(found.path)))
            else:
                progress.result(checksum_line(found.digests[wanted[0]], found.path))
    if app.json:
        echo_json([found.as_json() for found in results])
    return worst_exit_code(found.error.exit_code for found in results if found.error)


def render_identification(found: Identification) -> list[str]:
    """The ``civit identify`` lines for one file: its path, then what it is."""
    lines = [str(found.path)]
    if found.status == "unknown":
        lines.append(f"  unknown to Civitai (SHA256 {found.sha256})")
        return lines
    version = found.version
    if version is None:
        lines.append(f"  Civitai model version {found.version_id} (its details are gone)")
    else:
        details = ", ".join(d for d in (version.model_type, version.base_model) if d)
        name = version.model_name or f"model {found.model_id}"
        lines.append(f"  {name}, version {version.name}" + (f" ({details})" if details else ""))
    if found.url:
        lines.append(f"  {found.url}")
    if found.source == "sidecar":
        lines.append("  (known from its .civitai.info)")
    return lines


@command("identify")
@click.argument(
    "paths", nargs=-1, required=True, type=ExpandedPath(path_type=Path, literal_first=True)
)
@click.option(
    "--write-info",
    is_flag=True,
    help="Write what each file's WebUI reads beside it: <stem>.civitai.info, its card "
    "metadata (<stem>.json, <stem>.cm-info.json) and a <stem>.preview image.",
)
@click.option(
    "--preview-nsfw",
    metavar="LEVEL",
    help="Most explicit preview image: pg, pg13 (default), r, x, xxx, or none.",
)
@pass_app
def identify_command(
    app: App, paths: tuple[Path, ...], write_info: bool, preview_nsfw: str | None
) -> int:
    """Tell what local model files are: model, version, type, base model, page.

    Files are looked up on Civitai by SHA256: one request for a whole folder, then
    one per distinct version for its details. A file Civitai does not know is
    reported as unknown; that is an answer, not a failure (exit 0). Unreadable files
    exit 1. A damaged copy of a known file is unknown too: use civit verify. A file
    whose .civitai.info lists its SHA256 is known from it, without a lookup.

    With --write-info, each known file gets the sidecars its WebUI reads (the
    install above it is detected), like Civitai Helper's "Scan models": one hash
    lookup for the library, files the hash cache knows are not read again.

    \b
    Examples:
      civit identify mystery.safetensors
      civit identify ~/stable-diffusion-webui/models/Lora --write-info
    """
    from civit.identification import identify_files, write_identified_sidecars

    level = preview_nsfw or app.settings.preview_nsfw
    preview_level(level)  # a typo fails before any file is read
    with Progress(quiet=app.quiet) as progress:
        results = identify_files(
            paths, client=app.client, progress=progress.track("identify", delay=0.5, leave=False)
        )
    if write_info:
        results = write_identified_sidecars(results, client=app.client, preview_nsfw=level)
    documents = []
    for found in results:
        document = found.as_json()
        if found.error is not None:
            say(f"civit: error: {found.error}")
        elif not app.json:
            echo("\n".join(render_identification(found)))
            for path in found.sidecars:
                say(f"  wrote {path}")
            for note in found.notes:
                say(f"  {note}")
        documents.append(document)
    if app.json:
        echo_json(documents)
    known = sum(found.status == "known" for found in results)
    failed = sum(found.status == "error" for found in results)
    summary = f"{count_files(len(results))}: {known} known, {len(results) - known - failed} unknown"
    say(summary + (f", {failed} unreadable" if failed else ""))
    return worst_exit_code(found.error.exit_code for found in results if found.error)


VERIFY_LABELS = {"ok": "ok", "mismatch": "MISMATCH", "unknown": "unknown", "error": "ERROR"}


@command("verify")
@click.argument("paths", nargs=-1, type=ExpandedPath(path_type=Path, literal_first=True))
@click.option(
    "--lock",
    "lock_path",
    type=ExpandedPath(dir_okay=False, path_type=Path),
    help="Compare with this civit.lock, offline. Without PATHs: every file it names.",
)
@click.option("--no-cache", is_flag=True, help="Re-read every byte (finds silent disk damage).")
@pass_app
def verify_command(
    app: App, paths: tuple[Path, ...], lock_path: Path | None, no_cache: bool
) -> int:
    """Check that local model files are intact: ok, MISMATCH or unknown per file.

    Each file is compared with the first of these that speaks for it:

    \b
      1. its entry in the lock given with --lock (a civit.lock is never picked up
         implicitly; with --lock nothing touches the network)
      2. its own name, for a store entry (.../sha256/ab/ab12...)
      3. the <stem>.civitai.info beside it (or the older <file>.civitai.info),
         offline; Civitai is asked only whether a mismatch is another known file
      4. Civitai's record of its SHA256 (without --lock; one request for all files)

    A damaged file with none of these cannot be told from a file Civitai never saw:
    both are "unknown".

    Exit 7 if any file mismatches, 1 if any is unreadable or missing, else 0.

    \b
    Examples:
      civit verify ~/ComfyUI/models
      civit verify --lock civit.lock                  every locked file, offline
      civit verify ~/.cache/civit-store --no-cache    re-read every store entry
    """
    from civit.identification import verify_files

    with Progress(quiet=app.quiet) as progress:
        results = verify_files(
            paths,
            lock=lock_path,
            client=app.client,
            cache=False if no_cache else None,
            progress=progress.track("verify", delay=0.5, leave=False),
        )
    for check in results:
        if check.status == "error":
            say(f"civit: error: {check.reason}")
        elif not app.json:
            echo(f"{VERIFY_LABELS[check.status]:8}  {check.path}: {check.reason}")
    if app.json:
        echo_json([check.as_json() for check in results])
    counts = {status: sum(c.status == status for c in results) for status in VERIFY_LABELS}
    exit_code = worst_exit_code(check.exit_code for check in results)
    summary = ", ".join(f"{counts[s]} {s}" for s in ("ok", "mismatch", "unknown") if counts[s])
    if counts["error"]:
        summary += f"{', ' if summary else ''}{counts['error']} unreadable"
    say(f"{count_files(len(results))}: {summary or 'nothing checked'}")
    return exit_code
