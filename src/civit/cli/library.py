"""The models you already have: ``civit freeze`` and ``civit outdated``."""

from __future__ import annotations

from pathlib import Path

import click

from civit.cli.app import App, ExpandedPath, command, pass_app
from civit.cli.output import count_files, echo, echo_json, say
from civit.cli.progress import Progress
from civit.cli.projects import manifest_option
from civit.errors import UsageError
from civit.freezing import freeze
from civit.layouts import LAYOUTS
from civit.manifest import load_manifest
from civit.records import File, Version
from civit.updates import UpdateCheck, outdated


@command("freeze")
@click.argument(
    "paths", nargs=-1, required=True, type=ExpandedPath(path_type=Path, literal_first=True)
)
@manifest_option
@click.option(
    "--layout",
    type=click.Choice(["auto", *LAYOUTS]),
    default="auto",
    show_default=True,
    help="The root's layout (auto: detect it; flat when no WebUI is found).",
)
@pass_app
def freeze_command(app: App, paths: tuple[Path, ...], manifest_path: Path, layout: str) -> int:
    """Write civit.toml + civit.lock pinning every model file you have.

    Each file Civitai knows (by SHA256: one request for all, the hash cache answers
    for files it has seen) becomes a pinned [[model]] keeping its folder and name;
    copy both files anywhere and `civit install --frozen` reinstalls the same bytes
    at the same paths. Files Civitai does not know are listed here and as comments in
    the manifest. Running it again on an unchanged library changes nothing. When the
    files have sidecars (.civitai.info, cards, previews), the manifest says info = true
    so the install writes them too. A file that cannot be read is left out and the
    exit code is 1; the manifest still pins the others.

    \b
    Examples:
      civit freeze ~/ComfyUI                  the whole install (root and layout detected)
      civit freeze ~/ComfyUI/models/loras -f loras.toml
      git add civit.toml civit.lock           then elsewhere: civit install --frozen
    """
    with Progress(quiet=app.quiet) as progress:
        result = freeze(
            paths,
            manifest=manifest_path,
            layout=layout,  # type: ignore[arg-type]
            client=app.client,
            progress=progress.track("identify", delay=0.5, leave=False),
        )
    if app.json:
        echo_json(result.as_json())
    for path, _ in result.unknown:
        say(f"not on Civitai (left out): {path}")
    unreadable = {path for path, _ in result.unreadable}
    for path, why in result.skipped:
        say(("civit: error: " if path in unreadable else "") + f"not frozen: {path}: {why}")
    changed = result.manifest_written or result.lock_written
    verb = "wrote" if changed else "unchanged:"
    left_out = len(result.unknown) + len(result.skipped)
    say(
        f"{verb} {result.manifest} and {result.lock.name}: {count_files(len(result.frozen))} "
        f"pinned under {result.root} ({result.layout})"
        + ("; with sidecars (info = true)" if result.info else "")
        + (f"; {left_out} left out" if left_out else "")
    )
    return result.exit_code


#: How the summary line names each status.
OUTDATED_LABELS = {
    "outdated": "outdated",
    "current": "up to date",
    "ignored": "ignored",
    "unknown": "unknown to Civitai",
    "error": "unreadable",
}


def _version_label(version: Version) -> str:
    details = [f"#{version.id}", version.date, version.base_model, version.early_access_label]
    return f"{version.name} ({', '.join(d for d in details if d)})"


def _variant_line(label: str, file: File | None) -> str:
    if file is None:
        return f"  {label}: none (the newer version has no file of this type and format)"
    return f"  {label}: {file.local_name} (file {file.id})"


def describe_update(check: UpdateCheck) -> list[str]:
    """The lines of one outdated file: what it is, what is newer, which file to get."""
    assert check.model is not None and check.current is not None and check.newest is not None
    lines = [
        str(check.path),
        f"  {check.model.name}: {_version_label(check.current)} -> {_version_label(check.newest)}",
    ]
    lines.append(_variant_line("same variant", check.file))
    if check.available is not None:
        lines.append(f"  available now: {_version_label(check.available)}")
        lines.append(_variant_line("its same variant", check.available_file))
    return lines


def _only_in_early_access(check: UpdateCheck) -> bool:
    """Its update cannot be downloaded yet (without bought Early Access)."""
    newest = check.newest
    return newest is not None and newest.in_early_access and check.available is None


def describe_other_bases(check: UpdateCheck) -> str:
    """One line naming the newer versions of a file's model made for other base models."""
    assert check.current is not None
    newer = "; ".join(_version_label(version) for version in check.other_bases)
    return f"  {check.path} ({check.current.base_model or 'no base model'}): {newer}"


def _ignored_models(app: App, lock_path: Path | None) -> tuple[int, ...]:
    """``[outdated] ignore`` of the config and of the manifest beside the lock (or in the
    current folder)."""
    manifest = lock_path.with_suffix(".toml") if lock_path is not None else Path("civit.toml")
    from_manifest = load_manifest(manifest).outdated_ignore if manifest.is_file() else ()
    return (*app.settings.outdated_ignore, *from_manifest)


@command("outdated")
@click.argument("paths", nargs=-1, type=ExpandedPath(path_type=Path, literal_first=True))
@click.option(
    "--lock",
    "lock_path",
    type=ExpandedPath(dir_okay=False, path_type=Path),
    help="Check the entries of this civit.lock (nothing is hashed).",
)
@pass_app
def outdated_command(app: App, paths: tuple[Path, ...], lock_path: Path | None) -> int:
    """Which of your models have a newer version for the same base model.

    Files are identified by hash (one request for all of them; the hash cache answers
    for files it knows), then each model's versions are compared. Only a version
    made for the same base-model family counts as an update (Pony, Illustrious and
    NoobAI are families of their own, apart from SDXL); newer versions for other bases
    are listed separately. Up-to-date files are not listed. An update in Early Access
    is marked with the date that ends, with the newer version anyone can download
    meanwhile, if there is one.

    Without arguments: ./civit.lock if there is one, else the configured root.
    Model ids listed as [outdated] ignore = [...] in the config file or civit.toml
    are never reported.

    \b
    Examples:
      civit outdated ~/ComfyUI
      civit outdated ~/ComfyUI/models/loras --json
      civit outdated --lock civit.lock
    """
    if not paths and lock_path is None:
        if Path("civit.lock").is_file():
            lock_path = Path("civit.lock")
        elif app.settings.root is not None:
            paths = (app.settings.root,)
        else:
            raise UsageError(
                "nothing to check: no civit.lock here and no root configured",
                hint="pass a WebUI folder or model files, or --lock civit.lock",
            )
    ignore = _ignored_models(app, lock_path)
    with Progress(quiet=app.quiet) as progress:
        checks = outdated(
            paths,
            lock=lock_path,
            ignore=ignore,
            client=app.client,
            progress=progress.track("identify", delay=0.5, leave=False),
        )
    for check in checks:
        if check.status == "error":
            say(f"civit: error: {check.reason}")
    if app.json:
        echo_json([check.as_json() for check in checks])
    else:
        for check in checks:
            if check.status == "outdated":
                echo("\n".join(describe_update(check)))
        others = [check for check in checks if check.other_bases]
        if others:
            echo("Newer versions for other base models (not updates):")
            for check in others:
                echo(describe_other_bases(check))
    counts = {status: sum(c.status == status for c in checks) for status in OUTDATED_LABELS}
    labels = dict(OUTDATED_LABELS)
    waiting = sum(_only_in_early_access(check) for check in checks)
    if waiting:
        labels["outdated"] += f" ({waiting} only in Early Access)"
    summary = ", ".join(f"{counts[s]} {label}" for s, label in labels.items() if counts[s])
    say(f"{count_files(len(checks))}: {summary or 'nothing to check'}")
    return 1 if counts["error"] else 0
