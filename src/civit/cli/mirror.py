"""Mirrors: ``civit mirror push`` fills a bucket or folder that fleets install from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from civit.cli.app import App, ExpandedPath, command, group, pass_app
from civit.cli.output import count_files, echo_json, say
from civit.cli.progress import Progress
from civit.fsutil import human_bytes

if TYPE_CHECKING:
    from civit.mirror_push import PushedFile


@group("mirror")
def mirror_group() -> None:
    """Fill a mirror that other machines install from (civit install --mirror)."""


def describe_pushed(result: PushedFile) -> str:
    """One line for an uploaded or failed file."""
    if result.status == "failed":
        return f"civit: error: {result.error}"
    size = human_bytes(result.size) if result.size is not None else "?"
    return f"uploaded {result.path} -> {result.destination} ({size}, {result.seconds:.1f} s)"


@command("push")
@click.argument("destination", metavar="DEST")
@click.argument("paths", nargs=-1, type=ExpandedPath(path_type=Path, literal_first=True))
@click.option(
    "--lock",
    "lock_path",
    type=ExpandedPath(dir_okay=False, path_type=Path),
    help="Push this lock's files when no PATH is given (default: ./civit.lock).",
)
@click.option(
    "--store",
    type=ExpandedPath(file_okay=False, path_type=Path),
    help="Read locked files that are not installed from this store (env CIVIT_STORE).",
)
@click.option("-j", "--jobs", type=click.IntRange(1, 64), help="Uploads at once (default 4).")
@pass_app
def push_command(
    app: App,
    destination: str,
    paths: tuple[Path, ...],
    lock_path: Path | None,
    store: Path | None,
    jobs: int | None,
) -> int:
    """Upload verified files to DEST under their SHA256, skipping those already there.

    DEST is s3://BUCKET/PREFIX (credentials, region and endpoint from the standard AWS
    environment variables and ~/.aws profiles; needs boto3, the civit[s3] extra) or a
    folder (NFS, or served by any static HTTP server). Without PATHs every file of
    civit.lock is pushed. Each file is hashed as it is sent and must match its SHA256;
    S3 also checks every part against its x-amz-checksum-sha256.

    \b
    Examples:
      civit install && civit mirror push s3://models/civit
      civit mirror push s3://models/civit ~/ComfyUI/models/loras
      civit mirror push /mnt/nfs/civit-mirror --lock ci/civit.lock --json
    Then, on every other machine:
      civit install --frozen --mirror s3://models/civit
    """
    from civit.mirror_push import push_mirror

    settings = app.settings
    progress = Progress(quiet=app.quiet)

    def finished(result: PushedFile) -> None:
        if result.status == "failed" or (result.status == "uploaded" and not app.quiet):
            progress.message(describe_pushed(result))

    try:
        report = push_mirror(
            destination,
            paths,
            lock=lock_path,
            store=store if store is not None else settings.store,
            jobs=jobs if jobs is not None else settings.jobs,
            progress=progress.track("push"),
            on_result=finished,
        )
    finally:
        progress.close()
    if app.json:
        echo_json(report.as_json())
    sent = sum(result.bytes_sent for result in report.results)
    failed = report.count("failed")
    say(
        f"{count_files(len(report.results))} to {report.destination}: "
        f"{report.count('uploaded')} uploaded ({human_bytes(sent)}), "
        f"{report.count('present')} already there, {failed} failed "
        f"({report.seconds:.2f} s)" + (f"; exit {report.exit_code}" if failed else "")
    )
    return report.exit_code


mirror_group.add_command(push_command)
