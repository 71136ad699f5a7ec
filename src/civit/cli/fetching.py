"""``civit get``: download models into WebUI folders."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import click

from civit.bulk import PlannedFile, choose_files, name_apart, refs_from_lines
from civit.cli.app import App, ExpandedPath, command, pass_app, typed_path
from civit.cli.limits import limit_options, lock_wait_notice
from civit.cli.output import echo_json, say
from civit.cli.progress import Progress
from civit.config import Settings
from civit.downloader import (
    DownloadResult,
    download,
    plan_target,
    subfolder_for,
    write_download_sidecars,
)
from civit.errors import CivitError, NotFoundError, UsageError, worst_exit_code
from civit.fsutil import human_bytes
from civit.image_resources import ImageResource, resources_from_image
from civit.layouts import LAYOUTS, LayoutChoice, check_subfolder, detect_layout, resolve_layout
from civit.records import File, Model, Version, preview_level
from civit.refs import parse_ref, redact_ref


def choose_destination(
    settings: Settings, root: Path | None, layout: str | None, dest: Path | None
) -> dict[str, Any]:
    """Where ``get`` puts files: --dest, else --root (or the configured root) with its
    layout detected once, else the current folder if it is a WebUI, else the current
    folder as a plain folder. Says what it detected, and why."""
    if dest is not None:
        return {"dest": dest}
    root = root or settings.root
    requested = cast(LayoutChoice, layout or settings.layout)
    if root is None:
        detected = detect_layout(Path.cwd())
        if detected is None and requested in ("auto", "flat"):
            say("no --root given: saving into the current folder (use --root to pick a WebUI)")
            return {"dest": Path.cwd()}
        root = Path.cwd()
    found = resolve_layout(root, requested)
    if requested == "auto" or found.root != root:
        say(found.describe())
    return {"root": found.root, "layout": found.layout}


@command()
@click.argument("refs", nargs=-1, required=True, metavar="REF...|FILE...")
@click.option(
    "--root",
    type=ExpandedPath(file_okay=False, path_type=Path),
    help="WebUI install folder; files go to the folder its layout uses for their type.",
)
@click.option(
    "--layout",
    type=click.Choice(["auto", *LAYOUTS]),
    help="Folder scheme under --root (default: auto-detect).",
)
@click.option(
    "--dest",
    type=ExpandedPath(file_okay=False, path_type=Path),
    help="Plain destination folder (instead of --root).",
)
@click.option("--type", "file_type", metavar="TYPE", help="File type, e.g. Model, VAE.")
@click.option("--format", "file_format", metavar="F", help="SafeTensor, PickleTensor, GGUF...")
@click.option("--fp", metavar="FP", help="Precision: fp16, fp32, bf16, fp8...")
@click.option("--size", "file_size", metavar="S", help="pruned or full.")
@click.option("--connections", type=click.IntRange(1, 32), help="Parallel connections.")
@click.option("--stall-timeout", type=click.FloatRange(1, 3600), metavar="SECONDS")
@click.option("--no-verify", is_flag=True, help="Skip the hash check (not recommended).")
@click.option(
    "--name",
    metavar="NAME",
    help="Save under this file name (one REF only), like name = in civit.toml.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace a file at the target that is not civit's download of the same model.",
)
@click.option(
    "--allow-unscanned",
    is_flag=True,
    help="Accept files whose Civitai pickle or virus scan is not Success.",
)
@click.option(
    "--early-access",
    is_flag=True,
    help="For a model ref without a version, take its newest version even if it is in "
    "Early Access (your account must have bought it); by default the newest one you can "
    "download now.",
)
@click.option(
    "--info/--no-info",
    "write_info",
    default=None,
    help="Also write what the WebUI reads beside a model: <stem>.civitai.info, its card "
    "metadata (<stem>.json, <stem>.cm-info.json) and a <stem>.preview image "
    "(default: info in the config).",
)
@click.option(
    "--subfolder",
    metavar="TEMPLATE",
    help='Folder below the type folder, e.g. "{base_model}"; also {creator}, {model_name}, {type}.',
)
@click.option(
    "--preview-nsfw",
    metavar="LEVEL",
    help="Most explicit preview image with --info: pg, pg13 (default), r, x, xxx, or none.",
)
@click.option(
    "--from",
    "from_images",
    is_flag=True,
    help="The arguments are images or workflows: get the models they were made with.",
)
@click.option(
    "--all-versions",
    is_flag=True,
    help="Every version of the model (its file the selection picks), not just one.",
)
@click.option(
    "--all-files",
    is_flag=True,
    help='Every file of the version but training data (unless --type "Training Data").',
)
@click.option("--dry-run", is_flag=True, help="Only list what would be downloaded, and where.")
@limit_options
@pass_app
def get(
    app: App,
    refs: tuple[str, ...],
    root: Path | None,
    layout: str | None,
    dest: Path | None,
    file_type: str | None,
    file_format: str | None,
    fp: str | None,
    file_size: str | None,
    connections: int | None,
    stall_timeout: float | None,
    no_verify: bool,
    name: str | None,
    subfolder: str | None,
    preview_nsfw: str | None,
    overwrite: bool,
    allow_unscanned: bool,
    early_access: bool,
    write_info: bool | None,
    from_images: bool,
    all_versions: bool,
    all_files: bool,
    dry_run: bool,
    limit_rate: float | None,
    deadline: float | None,
    lock_timeout: float | None,
) -> int:
    """Download models, verified against Civitai's hashes, into WebUI folders.

    A model id without a version takes the newest version you can download now: a
    newer one in Early Access is passed over (a note says so) unless --early-access.
    Resumes interrupted downloads (run the same command again), uses parallel
    connections for big files, and never leaves a corrupt or HTML file behind.
    A different file already at the target is kept (exit 1) unless it is civit's
    earlier download of the same model, or --overwrite is given; variants with the
    same name on Civitai get their own names (_full_fp32...). Files whose Civitai
    scans did not pass are refused (exit 4) unless --allow-unscanned.
    Downloads need an API token: set CIVITAI_API_TOKEN (or pass --token).

    \b
    Examples:
      civit get 827184 --root ~/ComfyUI
      civit get 827184@2514310 --fp fp32 --root ~/stable-diffusion-webui
      civit get "https://civitai.com/models/328553?modelVersionId=368189" --dest ./loras
      civit get --from image.png --root ~/ComfyUI      what the image was made with
      civit get 400100 --all-versions --dry-run --dest ./loras
      civit get 827184 --root ~/ComfyUI --limit-rate 20M     leave bandwidth for others
      civit search --username NAME --type LORA -q | civit get - --root ~/ComfyUI

    \b
    A REF of - reads refs from stdin, one per line (# comments and blank lines
    are skipped). Same-named files of several versions are saved apart: the
    oldest keeps the name, newer ones get their version's name (_v2-1).

    \b
    With --from, each FILE is a PNG, JPEG or WebP image (A1111/Forge infotext,
    Civitai's resource list, ComfyUI's embedded workflow) or a ComfyUI workflow
    .json. Every resource it names is looked up on Civitai (hashes by hash,
    versions by id) and reported, found or not; exit 4 if none is found.
    """
    progress = Progress(quiet=app.quiet)
    # Closed when the command ends, also by Ctrl-C: before main() says what was kept,
    # so no bar is redrawn below that line.
    click.get_current_context().call_on_close(progress.close)
    selection = {"type": file_type, "format": file_format, "fp": fp, "size": file_size}
    transfer: dict[str, Any] = {
        "connections": connections or app.settings.connections,
        "stall_timeout": stall_timeout or app.settings.stall_timeout,
        "verify": not no_verify,
        "overwrite": overwrite,
        "allow_unscanned": allow_unscanned or app.settings.allow_unscanned,
        "limit_rate": limit_rate,
        "deadline": deadline,
        "lock_timeout": lock_timeout,
        "on_lock_wait": lock_wait_notice(progress),
    }
    extras = Extras(
        subfolder=check_subfolder(subfolder) if subfolder else app.settings.subfolder,
        write_info=app.settings.info if write_info is None else write_info,
        preview_nsfw=preview_nsfw or app.settings.preview_nsfw,
    )
    preview_level(extras.preview_nsfw)  # a typo fails before anything is downloaded
    if from_images:
        if name is not None or all_versions or all_files:
            raise UsageError("--from takes no --name, --all-versions or --all-files")
        paths = [typed_path(ref) for ref in refs]
        where = choose_destination(app.settings, root, layout, dest)
        return get_from_images(
            app, paths, where, selection, transfer, progress, extras, dry_run=dry_run
        )
    texts = refs_with_stdin(refs)
    if name is not None and (len(texts) > 1 or all_versions or all_files):
        raise UsageError("--name names one file: give exactly one REF, without --all-*")
    parsed = [parse_ref(ref) for ref in texts]  # reject typos before downloading anything
    app.adopt_pasted_token(texts)
    where = choose_destination(app.settings, root, layout, dest)
    documents: list[dict[str, object]] = []
    exit_code = 0
    plans: list[tuple[str, list[PlannedFile] | CivitError]] = []
    for text, ref in zip(texts, parsed, strict=True):
        try:
            chosen: list[PlannedFile] | CivitError = choose_files(
                ref,
                client=app.client,
                **selection,
                all_files=all_files,
                all_versions=all_versions,
                full=extras.write_info,
                early_access=early_access,
            )
        except CivitError as exc:
            chosen = exc
        plans.append((redact_ref(text), chosen))
    # Named apart over every ref, so that MODEL@V1 MODEL@V2 cannot replace one another.
    named = iter(name_apart([item for _, plan in plans if isinstance(plan, list) for item in plan]))
    for shown, plan in plans:
        if isinstance(plan, CivitError):
            exit_code = worst_exit_code((exit_code, plan.exit_code))
            documents.append({"ref": shown, "error": plan.as_json()})
            say(f"civit: error: {shown}: {plan}")
            continue
        for item in (next(named) for _ in plan):
            if item.file is None:
                documents.append({"ref": shown, **skip(app, item.version, item.reason or "")})
                continue
            outcome = fetch_planned(
                app,
                item.version,
                item.file,
                where,
                transfer,
                progress,
                extras,
                name=name,
                notes=item.notes,
                model=item.model,
                dry_run=dry_run,
            )
            exit_code = worst_exit_code((exit_code, outcome.exit_code))
            documents.append({"ref": shown, **outcome.document})
            if not app.json and (not app.quiet or outcome.exit_code):
                say(outcome.message)
    if app.json:
        echo_json(documents)
    return exit_code


def refs_with_stdin(refs: Sequence[str]) -> list[str]:
    """The refs, with ``-`` replaced by the refs read from stdin (one per line)."""
    if "-" not in refs:
        return list(refs)
    from_stdin = refs_from_lines(sys.stdin)
    if not from_stdin:
        raise UsageError("no refs on stdin", hint="pipe model ids, one per line, into civit get -")
    expanded: list[str] = []
    for ref in refs:
        expanded.extend(from_stdin if ref == "-" else [ref])
    return expanded


@dataclass(frozen=True)
class Extras:
    """What ``get`` does besides the download: a subfolder template, sidecars."""

    subfolder: str | None = None
    write_info: bool = False
    preview_nsfw: str = "pg13"


@dataclass(frozen=True)
class Fetched:
    """What fetching one planned file did: its JSON, its line, its exit code."""

    document: dict[str, object]
    message: str
    exit_code: int = 0


def _label(version: Version) -> str:
    return f"{version.model_name} {version.name}" if version.model_name else version.name


def skip(app: App, version: Version, reason: str) -> dict[str, object]:
    """Say that ``version`` contributes no file, and why; its JSON object."""
    if not app.quiet and not app.json:
        say(f"skipped {_label(version)}: {reason}")
    return {"version_id": version.id, "status": "skipped", "reason": reason, "error": None}


def fetch_planned(
    app: App,
    version: Version,
    file: File,
    where: dict[str, Any],
    transfer: dict[str, Any],
    progress: Progress,
    extras: Extras,
    *,
    name: str | None = None,
    notes: tuple[str, ...] = (),
    model: Model | None = None,
    dry_run: bool,
) -> Fetched:
    """Download one chosen file (or, with ``dry_run``, say where it would go); ``notes``
    say how its version was chosen and lead the result's notes; ``model`` is the
    version's model record when choosing fetched it (not fetched again)."""
    label = _label(version)
    try:
        subfolder = subfolder_for(extras.subfolder, version, client=app.client, model=model)
        if dry_run:
            placement = plan_target(
                file,
                root=where.get("root"),
                layout=where.get("layout", "auto"),
                dest=where.get("dest"),
                name=name,
                subfolder=subfolder,
            )
            target = placement.path
            size = human_bytes(file.approx_bytes) if file.approx_bytes is not None else "size ?"
            planned_notes = [*notes, *placement.notes]
            document = {
                "file_id": file.id,
                "path": str(target),
                "status": "planned",
                "notes": planned_notes,
                "error": None,
            }
            planned = f"would download {label}: {file.name} ({size}) -> {target}"
            return Fetched(document, "\n".join([planned, *(f"  {n}" for n in planned_notes)]))
        result = download(
            file,
            client=app.client,
            name=name,
            subfolder=subfolder,
            progress=progress.track(file.local_name),
            **where,
            **transfer,
        )
        if extras.write_info:
            result = write_download_sidecars(
                result, version, client=app.client, preview_nsfw=extras.preview_nsfw, model=model
            )
        result = replace(result, notes=(*notes, *result.notes))
    except CivitError as exc:
        document = {"file_id": file.id, "error": exc.as_json()}
        return Fetched(document, f"civit: error: {label}: {exc}", exc.exit_code)
    return Fetched({**result.as_json(), "error": None}, describe_result(result))


def get_from_images(
    app: App,
    paths: list[Path],
    where: dict[str, Any],
    selection: dict[str, str | None],
    transfer: dict[str, Any],
    progress: Progress,
    extras: Extras,
    *,
    dry_run: bool,
) -> int:
    """``civit get --from``: report each image's resources, then fetch the found ones."""
    documents: list[dict[str, object]] = []
    exit_code = 0
    found_any = False
    for path in paths:
        document: dict[str, object] = {"path": str(path)}
        documents.append(document)
        try:
            image = resources_from_image(path, client=app.client)
        except CivitError as exc:
            exit_code = worst_exit_code((exit_code, exc.exit_code))
            document["error"] = exc.as_json()
            say(f"civit: error: {exc}")
            continue
        document["resources"] = [resource.as_json() for resource in image.resources]
        if not app.json:
            for line in describe_image(image.path, image.keys, image.resources):
                say(line)
        results: list[dict[str, object]] = []
        document["files"] = results
        document["error"] = None
        for resource, choice in image.choices(**selection):
            assert resource.version is not None  # choices() yields found resources only
            if isinstance(choice, CivitError):
                results.append(skip(app, resource.version, choice.message))
                continue
            found_any = True
            outcome = fetch_planned(
                app, resource.version, choice, where, transfer, progress, extras, dry_run=dry_run
            )
            results.append(outcome.document)
            exit_code = worst_exit_code((exit_code, outcome.exit_code))
            if not app.json and (not app.quiet or outcome.exit_code):
                say(outcome.message)
    if app.json:
        echo_json(documents)
    if not found_any and not exit_code:
        exit_code = NotFoundError.exit_code
        say("civit: error: nothing to get: these files name nothing on Civitai to download")
    return exit_code


def describe_image(
    path: Path, keys: tuple[str, ...], resources: tuple[ImageResource, ...]
) -> list[str]:
    """What an image names, one line per resource: found (as what) or not (why)."""
    if not keys:
        return [f"{path}: no generation metadata (no parameters, prompt or workflow in it)"]
    if not resources:
        return [f"{path}: its metadata ({', '.join(keys)}) names no Civitai resource or hash"]
    found = sum(resource.found for resource in resources)
    lines = [f"{path}: {len(resources)} resources named, {found} found on Civitai"]
    for resource in resources:
        named = f"{resource.kind} {resource.name or ''}".rstrip()
        version = resource.version
        if version is None:
            lines.append(f"  not found  {named} ({resource.named_by}): {resource.error}")
            continue
        what = f"{version.model_name} {version.name} ({version.model_id}@{version.id})"
        lines.append(f"  found      {named} ({resource.named_by}) -> {what}")
    return lines


def describe_result(result: DownloadResult) -> str:
    """One line per file: where it is, and what was proven about it; then how its folder
    was chosen, and its warnings."""
    checked = ", ".join(a.upper() for a in result.verified) or "no hashes checked"
    if result.status == "present":
        line = f"already present: {result.path} ({checked} ok)"
    else:
        resumed = f", resumed at {human_bytes(result.resumed_from)}" if result.resumed_from else ""
        rate = result.bytes_transferred / result.seconds if result.seconds > 0 else 0.0
        line = (
            f"saved {result.path} ({human_bytes(result.size)} in {result.seconds:.2f} s, "
            f"{human_bytes(rate)}/s{resumed}; verified {checked})"
        )
    notes = [f"  {note}" for note in result.notes]
    if result.sidecars:
        notes.insert(0, "  with " + ", ".join(path.name for path in result.sidecars))
    warnings = [f"civit: warning: {warning}" for warning in result.warnings]
    return "\n".join([line, *notes, *warnings])
