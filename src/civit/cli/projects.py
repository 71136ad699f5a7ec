"""Projects: ``civit lock`` and ``civit install`` (``civit.toml`` + ``civit.lock``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from civit.cli.app import App, ExpandedPath, command, pass_app
from civit.cli.limits import limit_options, lock_wait_notice
from civit.cli.output import count_files, echo_json, say, standard_stream, write_report
from civit.cli.progress import Progress
from civit.downloader import long_path_warning
from civit.errors import UsageError
from civit.fsutil import human_bytes
from civit.installer import EntryResult
from civit.installer import install as install_manifest
from civit.lockfile import LockedFile, load_lock
from civit.manifest import Manifest, load_manifest
from civit.records import Version
from civit.resolution import LockChange, check_lock, lock, lock_changes
from civit.updates import base_model_family

manifest_option = click.option(
    "-f",
    "--file",
    "manifest_path",
    type=ExpandedPath(dir_okay=False, path_type=Path),
    default=Path("civit.toml"),
    show_default=True,
    help="The manifest; its lock is beside it (civit.toml -> civit.lock).",
)


allow_unscanned_option = click.option(
    "--allow-unscanned",
    is_flag=True,
    help="Lock files whose Civitai pickle or virus scan is not Success.",
)
early_access_option = click.option(
    "--early-access",
    is_flag=True,
    help="Let unpinned entries take a newer version in Early Access (your account "
    "bought it); by default they take the newest anyone can download now.",
)


def _version_name(version: Version | None, version_id: int) -> str:
    return f"{version.name} (#{version_id})" if version else f"version {version_id}"


def describe_lock_change(change: LockChange) -> str:
    """One line for an entry that is new or resolves differently than before, naming the
    versions (``~ 400100: Style Shifter v1.0 (#400101) -> v2.1 (#400102), file 4001021``)."""
    locked, new = change.after, change.new_version
    model = f"{new.model_name} " if new and new.model_name else ""
    now = f"{model}{_version_name(new, locked.version_id)}, file {locked.file_id}"
    previous = change.before
    if previous is None:
        return f"  + {locked.ref}: {now} -> {locked.dest}"
    if previous.version_id == locked.version_id:
        return f"  ~ {locked.ref}: {now} (was file {previous.file_id})"
    was = _version_name(change.old_version, previous.version_id)
    moved = f"{was} -> {_version_name(new, locked.version_id)}"
    line = f"  ~ {locked.ref}: {model}{moved}, file {locked.file_id}"
    old = change.old_version
    if old and new and base_model_family(old.base_model) != base_model_family(new.base_model):
        line += f" (another base model: {old.base_model} -> {new.base_model})"
    return line


@command("lock")
@manifest_option
@click.option("--upgrade", is_flag=True, help="Move unpinned entries to their newest version.")
@click.option(
    "--check",
    is_flag=True,
    help="Resolve every entry through the API and compare with civit.lock, writing "
    "nothing: exit 1 if they differ (for CI and lock review).",
)
@allow_unscanned_option
@early_access_option
@pass_app
def lock_command(
    app: App,
    manifest_path: Path,
    upgrade: bool,
    check: bool,
    allow_unscanned: bool,
    early_access: bool,
) -> int:
    """Resolve civit.toml into civit.lock: version, file, SHA256, destination.

    Only new and edited entries are resolved; entries without a version pin keep the
    version the lock already has, and --upgrade moves them to the newest. Commit
    civit.lock and install with --frozen in CI.

    An unpinned entry takes the newest version anyone can download now: a newer one
    in Early Access is passed over (`civit outdated` lists it) unless --early-access.

    --check trusts nothing in civit.lock: it resolves every entry again (the versions
    of unpinned entries stay as locked) and lists each value the lock says
    differently, e.g. a hand-edited SHA256 or dest.

    \b
    Examples:
      civit lock                              civit.toml -> civit.lock
      civit lock --upgrade                    unpinned entries to their newest version
      civit lock --check                      CI: fail if the lock says what Civitai does not
      civit lock -f ci/models.toml --json     -> ci/models.lock
    """
    manifest = load_manifest(manifest_path)
    if check:
        if upgrade:
            raise UsageError("--check compares civit.lock as it is; it cannot --upgrade")
        return _check_command(app, manifest, allow_unscanned=allow_unscanned)
    before = load_lock(manifest.lock_path)
    after = lock(
        manifest,
        upgrade=upgrade,
        settings=app.settings,
        allow_unscanned=allow_unscanned,
        early_access=early_access,
    )
    changes = [] if before == after else lock_changes(before, after, client=app.client)
    if app.json:
        echo_json(
            {
                "manifest": str(manifest.path),
                "lock": str(manifest.lock_path),
                "written": before != after,
                "files": [locked.as_json() for locked in after.files],
                "changes": [
                    {
                        "ref": change.after.ref,
                        "before": _pin(change.before),
                        "after": _pin(change.after),
                    }
                    for change in changes
                ],
            }
        )
    if before == after:
        say(f"{manifest.lock_path.name} is up to date ({count_files(len(after.files))})")
        return 0
    say(f"wrote {manifest.lock_path} ({count_files(len(after.files))})")
    for change in [] if app.quiet else changes:  # -q: the summary line only
        say(describe_lock_change(change))
    return 0


def _check_command(app: App, manifest: Manifest, *, allow_unscanned: bool) -> int:
    differences = check_lock(
        manifest, client=app.client, settings=app.settings, allow_unscanned=allow_unscanned
    )
    if app.json:
        echo_json(
            {
                "manifest": str(manifest.path),
                "lock": str(manifest.lock_path),
                "matches": not differences,
                "differences": [
                    {
                        "index": difference.index,
                        "ref": difference.ref,
                        "key": difference.key,
                        "locked": difference.locked,
                        "resolved": difference.resolved,
                    }
                    for difference in differences
                ],
            }
        )
    if not differences:
        say(
            f"{manifest.lock_path.name} matches what {manifest.path.name} resolves to "
            f"({count_files(len(manifest.entries))})"
        )
        return 0
    say(f"{manifest.lock_path.name} does not match what {manifest.path.name} resolves to:")
    for difference in differences:
        say(f"  {difference}")
    say(
        "Civitai's records do not back these values: if nobody meant to edit civit.lock, "
        "restore it from version control; if Civitai changed, delete it, run `civit lock` "
        "and commit civit.lock"
    )
    return 1


def _pin(locked: LockedFile | None) -> dict[str, object] | None:
    if locked is None:
        return None
    return {"version_id": locked.version_id, "file_id": locked.file_id}


def describe_entry(result: EntryResult) -> str:
    """One line for an installed or failed entry."""
    if result.status == "failed":
        return f"civit: error: {result.ref}: {result.error}"
    sources = {"civitai": " from Civitai", "mirror": " from the mirror", "store": " from the store"}
    via = sources.get(result.source or "", "")
    if result.link == "linked":
        via += ", hardlinked"
    size = human_bytes(result.size) if result.size is not None else "?"
    line = f"installed {result.path} ({size}{via}, {result.seconds:.1f} s)"
    if result.mirror_error is not None:
        line += f"; mirror passed over: {result.mirror_error}"
    return line


@command("install")
@manifest_option
@click.option(
    "--frozen",
    is_flag=True,
    help="Install civit.lock exactly: no metadata calls; fail if it is missing or stale.",
)
@click.option("--upgrade", is_flag=True, help="Re-lock unpinned entries to their newest version.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), help="Files at once (default 4).")
@click.option("--connections", type=click.IntRange(1, 32), help="Connections per file.")
@click.option(
    "--store",
    type=ExpandedPath(file_okay=False, path_type=Path),
    help="Content-addressed store; files are hardlinked from it (env CIVIT_STORE).",
)
@click.option(
    "--mirror",
    metavar="URL_TEMPLATE|s3://BUCKET/PREFIX",
    help="Try this first: http://cache.local/{sha256}, or an S3 bucket filled by "
    "`civit mirror push` (env CIVIT_MIRROR).",
)
@click.option(
    "--report",
    type=ExpandedPath(dir_okay=False, path_type=Path),
    help="Write the JSON report (as --json prints it) to this file; - for stdout.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace files in the way that are not civit's downloads of the same model.",
)
@allow_unscanned_option
@early_access_option
@limit_options
@pass_app
def install_command(
    app: App,
    manifest_path: Path,
    frozen: bool,
    upgrade: bool,
    jobs: int | None,
    connections: int | None,
    store: Path | None,
    mirror: str | None,
    report: Path | None,
    overwrite: bool,
    allow_unscanned: bool,
    early_access: bool,
    limit_rate: float | None,
    deadline: float | None,
    lock_timeout: float | None,
) -> int:
    """Install every file of civit.toml (locking it first unless --frozen), in parallel.

    Present files cost a stat; missing ones are fetched, verified and placed. A failed
    entry does not stop the others; the exit code is the worst one seen.

    \b
    Examples:
      civit install                           lock if needed, then install
      civit install --frozen --jobs 8         CI: exactly what civit.lock says
      civit install --frozen --store ~/.cache/civit-store --report install.json
      civit install --frozen --limit-rate 50M --deadline 3600
    """
    progress = Progress(quiet=app.quiet)

    def finished(result: EntryResult) -> None:
        if result.status == "failed" or (result.status == "installed" and not app.quiet):
            progress.message(describe_entry(result))
        warning = long_path_warning(result.path) if result.status == "installed" else None
        if warning:
            progress.message(f"civit: warning: {warning}")

    try:
        outcome = install_manifest(
            manifest_path,
            frozen=frozen,
            upgrade=upgrade,
            settings=app.settings,
            jobs=jobs,
            connections=connections,
            store=store,
            mirror=mirror,
            progress=progress.track("install"),
            on_result=finished,
            overwrite=overwrite,
            allow_unscanned=allow_unscanned,
            early_access=early_access,
            limit_rate=limit_rate,
            deadline=deadline,
            lock_timeout=lock_timeout,
            on_lock_wait=lock_wait_notice(progress),
        )
    finally:
        progress.close()
    document = outcome.as_json()
    report_on_stdout = report is not None and standard_stream(report) is sys.stdout
    if report is not None and not report_on_stdout:
        write_report(report, document)
    if app.json or report_on_stdout:  # one document, even with --json --report -
        echo_json(document)
    if outcome.lock_written:
        say(f"wrote {outcome.lock_path}")
    failed = outcome.count("failed")
    say(
        f"{count_files(len(outcome.results))}: {outcome.count('installed')} installed, "
        f"{outcome.count('present')} already present, {failed} failed "
        f"({outcome.seconds:.2f} s)" + (f"; exit {outcome.exit_code}" if failed else "")
    )
    return outcome.exit_code
