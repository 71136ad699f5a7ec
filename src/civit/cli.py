"""The ``civit`` command line: parse, call the library, render. No behaviour lives here.

Human output (progress, messages) goes to stderr; ``--json`` documents go to stdout.
Every :class:`civit.errors.CivitError` becomes one ``civit: error: ...`` line and its
exit code; tracebacks only with ``--verbose``.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from civit import manifest as manifests
from civit import records
from civit._version import VERSION
from civit.api import Client
from civit.config import Settings, config_path, load_settings
from civit.downloader import DownloadResult, write_info_sidecar
from civit.downloader import get as get_ref
from civit.errors import CivitError
from civit.fsutil import atomic_write, human_bytes
from civit.hashing import (
    MODEL_EXTENSIONS,
    HashCache,
    hash_files,
    iter_model_files,
    parse_algorithms,
)
from civit.identification import Identification, identify_files, verify_files
from civit.installer import EntryResult
from civit.installer import install as install_manifest
from civit.layout import detect_layout, resolve_layout
from civit.refs import Ref, parse_ref
from civit.select import describe_file


@dataclass
class App:
    """Per-invocation state: global flags, merged settings, one lazily made client."""

    overrides: dict[str, object]
    verbose: bool = False
    _settings: Settings | None = None
    _client: Client | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.overrides)
        return self._settings

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(settings=self.settings)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def echo_json(document: object) -> None:
    """Print one JSON document on stdout."""
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def say(message: str) -> None:
    """A human message on stderr."""
    click.echo(message, err=True)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Docs and examples: README.md. Exit codes: 0 ok, 1 error, 2 usage, 3 auth, "
    "4 not found, 5 network, 6 rate limited, 7 integrity.",
)
@click.version_option(VERSION, "-V", "--version", prog_name="civit")
@click.option(
    "--base-url",
    metavar="URL",
    help="Civitai origin (default https://civitai.com; env CIVITAI_BASE_URL).",
)
@click.option(
    "--token",
    metavar="TOKEN",
    help="API token (default: env CIVITAI_API_TOKEN or the config file). Never printed.",
)
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, base_url: str | None, token: str | None, verbose: bool) -> None:
    """Download, verify and identify Civitai models for Stable Diffusion WebUIs.

    \b
    Examples:
      civit info 827184                         what is model 827184?
      civit get 827184 --root ~/ComfyUI         newest version into models/checkpoints
      civit get urn:air:sdxl:lora:civitai:328553@368189 --root ~/stable-diffusion-webui
      civit search "detail" --type LORA --base-model "SDXL 1.0"
    """
    app = App({"base_url": base_url, "token": token}, verbose=verbose)
    ctx.obj = app
    ctx.call_on_close(app.close)


pass_app = click.make_pass_decorator(App)


# -- info ---------------------------------------------------------------------------


def _short_hashes(file: records.File) -> str:
    digests = file.hashes.as_dict()
    shown = [f"{name.upper()} {digests[name][:10]}" for name in ("sha256",) if name in digests]
    return "  ".join(shown)


def _render_version(version: records.Version, *, newest: bool) -> list[str]:
    header = f"  {version.name}  #{version.id}"
    details = [d for d in (version.base_model, version.date) if d]
    if details:
        header += "  " + "  ".join(details)
    if newest:
        header += "  (newest)"
    lines = [header]
    if not version.files:
        lines.append("      no downloadable files (archived or removed)")
    for file in version.files:
        marker = "*" if file.primary else " "
        lines.append(f"    {marker} {describe_file(file)}  {_short_hashes(file)}".rstrip())
    return lines


def render_model(model: records.Model, *, only_version: int | None = None) -> str:
    """The human ``civit info`` text for a model (or one of its versions)."""
    by = f", by {model.creator}" if model.creator else ""
    lines = [f"{model.name}  ({model.type or 'unknown type'}{by})", model.url]
    if model.tags:
        lines.append("tags: " + ", ".join(model.tags))
    if model.archived:
        lines.append("ARCHIVED: this model's files are no longer downloadable")
    lines.append("versions (* = primary file):")
    for index, version in enumerate(model.versions):
        if only_version is None or version.id == only_version:
            lines.extend(_render_version(version, newest=index == 0))
    return "\n".join(lines)


def _model_for(client: Client, ref: Ref) -> tuple[records.Model, int | None]:
    if ref.hash is not None:
        version = client.get_version_by_hash(ref.hash)
        assert version.model_id is not None
        return client.get_model(version.model_id), version.id
    if ref.model_id is None:
        assert ref.version_id is not None
        version = client.get_version(ref.version_id)
        if version.model_id is None:
            raise CivitError(f"Civitai did not say which model version {version.id} belongs to")
        return client.get_model(version.model_id), version.id
    return client.get_model(ref.model_id), ref.version_id


@cli.command()
@click.argument("ref")
@json_option
@pass_app
def info(app: App, ref: str, as_json: bool) -> int:
    """Show a model, its versions and files.

    REF is a model id (827184), model@version (827184@2514310), a civitai.com URL, an
    AIR (urn:air:sdxl:checkpoint:civitai:827184@2514310) or a SHA256/AutoV2 hash.
    """
    parsed = parse_ref(ref)
    model, version_id = _model_for(app.client, parsed)
    if version_id is not None and not any(v.id == version_id for v in model.versions):
        raise CivitError(f"model {model.id} has no version {version_id}")
    if as_json:
        echo_json(records.as_json(model))
    else:
        click.echo(render_model(model, only_version=version_id))
    return 0


# -- search -------------------------------------------------------------------------


def _newest_base_model(model: records.Model) -> str:
    return (model.versions[0].base_model or "") if model.versions else ""


@cli.command()
@click.argument("query", required=False)
@click.option("--type", "types", multiple=True, metavar="TYPE", help="Model type, repeatable.")
@click.option("--base-model", "base_models", multiple=True, metavar="B", help="Repeatable.")
@click.option("--tag", help="Only models with this tag.")
@click.option("--username", help="Only models by this creator.")
@click.option("--sort", help='e.g. "Highest Rated", "Most Downloaded", "Newest".')
@click.option("--period", type=click.Choice(["AllTime", "Year", "Month", "Week", "Day"]))
@click.option("--nsfw", is_flag=True, default=None, help="Include mature content.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@pass_app
def search(
    app: App,
    query: str | None,
    types: tuple[str, ...],
    base_models: tuple[str, ...],
    tag: str | None,
    username: str | None,
    sort: str | None,
    period: str | None,
    nsfw: bool | None,
    limit: int,
    as_json: bool,
) -> int:
    """Search Civitai's models (cursor-paged, so any --limit works)."""
    models = list(
        app.client.iter_models(
            max_items=limit,
            query=query,
            types=list(types) or None,
            base_models=list(base_models) or None,
            tag=tag,
            username=username,
            sort=sort,
            period=period,
            nsfw=nsfw,
        )
    )
    if as_json:
        echo_json([records.as_json(model) for model in models])
        return 0
    if not models:
        say("no models found")
        return 0
    rows = [
        (
            str(m.id),
            m.name,
            m.type or "",
            _newest_base_model(m),
            f"{m.download_count:,}" if m.download_count is not None else "",
            m.creator or "",
        )
        for m in models
    ]
    click.echo(format_table(("ID", "NAME", "TYPE", "BASE", "DOWNLOADS", "CREATOR"), rows))
    return 0


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; long cells are cut with an ellipsis."""
    limit = 48
    cells = [[c if len(c) <= limit else c[: limit - 1] + "…" for c in row] for row in rows]
    table = [list(header), *cells]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    return "\n".join(line.rstrip() for line in lines)


# -- get ----------------------------------------------------------------------------


class ProgressBars:
    """tqdm bars on stderr, one line per file; silent off a terminal or with --quiet."""

    def __init__(self, *, quiet: bool) -> None:
        self.disable: bool | None = True if quiet else None
        self.lock = threading.Lock()

    def for_file(self, name: str) -> Callable[[int, int | None], None]:
        bar: tqdm | None = None

        def update(done: int, total: int | None) -> None:
            nonlocal bar
            with self.lock:
                if bar is None:
                    bar = tqdm(
                        total=total,
                        initial=done,
                        desc=name if len(name) <= 40 else name[:39] + "…",
                        unit="B",
                        unit_scale=True,
                        unit_divisor=1024,
                        file=sys.stderr,
                        disable=self.disable,
                        leave=True,
                        dynamic_ncols=True,
                    )
                bar.update(done - bar.n)
                if total is not None and done >= total:
                    bar.close()

        return update


def choose_destination(
    settings: Settings, root: Path | None, layout: str | None, dest: Path | None
) -> dict[str, Any]:
    """Where ``get`` puts files: --dest, else --root (or the configured root) with its
    layout detected once, else the current folder if it is a WebUI, else the current
    folder as a plain folder."""
    if dest is not None:
        return {"dest": dest}
    root = root or settings.root
    requested = layout or settings.layout
    if root is None:
        detected = detect_layout(Path.cwd())
        if detected is None and requested in ("auto", "flat"):
            say("no --root given: saving into the current folder (use --root to pick a WebUI)")
            return {"dest": Path.cwd()}
        root = Path.cwd()
    chosen = resolve_layout(root, requested)  # type: ignore[arg-type]
    if requested == "auto":
        say(f"{root}: detected a {chosen} install")
    return {"root": root, "layout": chosen}


@cli.command()
@click.argument("refs", nargs=-1, required=True)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="WebUI install folder; files go to the folder its layout uses for their type.",
)
@click.option(
    "--layout",
    type=click.Choice(["auto", "a1111", "comfyui", "swarmui", "flat"]),
    help="Folder scheme under --root (default: auto-detect).",
)
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    help="Plain destination folder (instead of --root).",
)
@click.option("--type", "file_type", metavar="TYPE", help="File type, e.g. Model, VAE.")
@click.option("--format", "file_format", metavar="F", help="SafeTensor, PickleTensor, GGUF...")
@click.option("--fp", metavar="FP", help="Precision: fp16, fp32, bf16, fp8...")
@click.option("--size", "file_size", metavar="S", help="pruned or full.")
@click.option("--connections", type=click.IntRange(1, 32), help="Parallel connections.")
@click.option("--stall-timeout", type=click.FloatRange(1, 3600), metavar="SECONDS")
@click.option("--no-verify", is_flag=True, help="Skip the hash check (not recommended).")
@click.option("--info", "write_info", is_flag=True, help="Also write <file>.civitai.info.")
@json_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or messages.")
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
    write_info: bool,
    as_json: bool,
    quiet: bool,
) -> int:
    """Download models, verified against Civitai's hashes, into WebUI folders.

    Resumes interrupted downloads (run the same command again), uses parallel
    connections for big files, and never leaves a corrupt or HTML file behind.
    Downloads need an API token: export CIVITAI_API_TOKEN=...

    \b
    Examples:
      civit get 827184 --root ~/ComfyUI
      civit get 827184@2514310 --fp fp32 --root ~/stable-diffusion-webui
      civit get "https://civitai.com/models/328553?modelVersionId=368189" --dest ./loras
    """
    parsed = [parse_ref(ref) for ref in refs]  # reject typos before downloading anything
    where = choose_destination(app.settings, root, layout, dest)
    bars = ProgressBars(quiet=quiet or as_json)
    documents: list[dict[str, object]] = []
    exit_code = 0
    for text, ref in zip(refs, parsed, strict=True):
        try:
            result = get_ref(
                ref,
                client=app.client,
                type=file_type,
                format=file_format,
                fp=fp,
                size=file_size,
                write_info=write_info,
                connections=connections or app.settings.connections,
                stall_timeout=stall_timeout or app.settings.stall_timeout,
                verify=not no_verify,
                progress=bars.for_file(str(ref)),
                **where,
            )
        except CivitError as exc:
            exit_code = exit_code or exc.exit_code
            documents.append({"ref": text, "error": str(exc), "exit_code": exc.exit_code})
            say(f"civit: error: {text}: {exc}")
            continue
        documents.append({"ref": text, **result.as_json()})
        if not quiet and not as_json:
            say(describe_result(result))
    if as_json:
        echo_json(documents)
    return exit_code


def describe_result(result: DownloadResult) -> str:
    """One line per file: where it is, and what was proven about it."""
    checked = ", ".join(a.upper() for a in result.verified) or "no hashes checked"
    if result.status == "present":
        return f"already present: {result.path} ({checked} ok)"
    resumed = f", resumed at {human_bytes(result.resumed_from)}" if result.resumed_from else ""
    rate = result.bytes_transferred / result.seconds if result.seconds > 0 else 0.0
    return (
        f"saved {result.path} ({human_bytes(result.size)} in {result.seconds:.2f} s, "
        f"{human_bytes(rate)}/s{resumed}; verified {checked})"
    )


# -- manifests ----------------------------------------------------------------------


class TotalBar:
    """One tqdm bar over every byte a parallel install fetches; silent off a terminal."""

    def __init__(self, *, quiet: bool) -> None:
        self.disable: bool | None = True if quiet else None
        self.lock = threading.Lock()
        self.bar: tqdm | None = None

    def update(self, done: int, total: int) -> None:
        with self.lock:
            if self.bar is None:
                self.bar = tqdm(
                    total=total,
                    desc="install",
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    file=sys.stderr,
                    disable=self.disable,
                    dynamic_ncols=True,
                )
            if self.bar.total != total:
                self.bar.total = total
            self.bar.update(done - self.bar.n)

    def message(self, text: str) -> None:
        """Print a line above the bar without tearing it."""
        with self.lock:
            if self.bar is None or self.bar.disable:
                say(text)
            else:
                tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        with self.lock:
            if self.bar is not None:
                self.bar.close()


def count_files(count: int) -> str:
    """``1 file``, ``6 files``."""
    return f"{count} file" if count == 1 else f"{count} files"


manifest_option = click.option(
    "-f",
    "--file",
    "manifest_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("civit.toml"),
    show_default=True,
    help="The manifest; its lock is beside it (civit.toml -> civit.lock).",
)


def describe_lock_change(before: manifests.Lock | None, after: manifests.Lock) -> list[str]:
    """Lines naming the lock entries that are new or resolve differently than before."""
    old = {(f.ref, f.dest): f for f in before.files} if before else {}
    lines = []
    for locked in after.files:
        previous = old.get((locked.ref, locked.dest))
        now = f"version {locked.version_id}, file {locked.file_id}"
        if previous is None:
            lines.append(f"  + {locked.ref}: {now} -> {locked.dest}")
        elif (previous.version_id, previous.file_id) != (locked.version_id, locked.file_id):
            lines.append(
                f"  ~ {locked.ref}: version {previous.version_id} -> {locked.version_id} "
                f"(file {locked.file_id})"
            )
    return lines


@cli.command("lock")
@manifest_option
@click.option("--upgrade", is_flag=True, help="Move unpinned entries to their newest version.")
@pass_app
def lock_command(app: App, manifest_path: Path, upgrade: bool) -> int:
    """Resolve civit.toml into civit.lock: version, file, SHA256, destination.

    Entries without a version pin keep the version the lock already has; --upgrade
    moves them to the newest. Commit civit.lock and install with --frozen in CI.
    """
    manifest = manifests.load_manifest(manifest_path)
    before = manifests.load_lock(manifest.lock_path)
    after = manifests.lock(manifest, upgrade=upgrade, settings=app.settings)
    if before == after:
        say(f"{manifest.lock_path.name} is up to date ({count_files(len(after.files))})")
        return 0
    say(f"wrote {manifest.lock_path} ({count_files(len(after.files))})")
    for line in describe_lock_change(before, after):
        say(line)
    return 0


def describe_entry(result: EntryResult) -> str:
    """One line for an installed or failed entry."""
    if result.status == "failed":
        return f"civit: error: {result.ref}: {result.error}"
    sources = {"civitai": " from Civitai", "mirror": " from the mirror", "store": " from the store"}
    via = sources.get(result.source or "", "")
    if result.link == "linked":
        via += ", hardlinked"
    size = human_bytes(result.size) if result.size is not None else "?"
    return f"installed {result.path} ({size}{via}, {result.seconds:.1f} s)"


@cli.command("install")
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
    type=click.Path(file_okay=False, path_type=Path),
    help="Content-addressed store; files are hardlinked from it (env CIVIT_STORE).",
)
@click.option(
    "--mirror",
    metavar="URL_TEMPLATE",
    help="Try this first, e.g. http://cache.local/{sha256} (env CIVIT_MIRROR).",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a JSON report: per entry status, path, bytes, seconds, digests.",
)
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the summary.")
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
    quiet: bool,
) -> int:
    """Install every file of civit.toml (locking it first unless --frozen), in parallel.

    Present files cost a stat; missing ones are fetched, verified and placed. A failed
    entry does not stop the others; the exit code is the worst one seen.

    \b
    Examples:
      civit install                           lock if needed, then install
      civit install --frozen --jobs 8         CI: exactly what civit.lock says
      civit install --frozen --store ~/.cache/civit-store --report install.json
    """
    bar = TotalBar(quiet=quiet)

    def finished(result: EntryResult) -> None:
        if result.status == "failed" or (result.status == "installed" and not quiet):
            bar.message(describe_entry(result))

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
            progress=bar.update,
            on_result=finished,
        )
    finally:
        bar.close()
    if report is not None:
        document = json.dumps(outcome.as_json(), indent=2, ensure_ascii=False) + "\n"
        atomic_write(report, document.encode())
    if outcome.lock_written:
        say(f"wrote {outcome.lock_path}")
    failed = outcome.count("failed")
    say(
        f"{count_files(len(outcome.results))}: {outcome.count('installed')} installed, "
        f"{outcome.count('present')} already present, {failed} failed "
        f"({outcome.seconds:.2f} s)" + (f"; exit {outcome.exit_code}" if failed else "")
    )
    return outcome.exit_code


# -- hashing and identification -----------------------------------------------------


class ByteBar:
    """One tqdm bar on stderr over the bytes a hashing job reads.

    It shows only on a terminal and only after half a second, so small jobs never
    draw it; lines printed through :meth:`print` do not tear it.
    """

    def __init__(self, desc: str, total: int | None = None) -> None:
        self.bar = tqdm(
            total=total,
            desc=desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            disable=None,
            delay=0.5,
            leave=False,
            dynamic_ncols=True,
        )

    def __enter__(self) -> ByteBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.close()

    def advance(self, count: int) -> None:
        """Add ``count`` bytes (the :func:`civit.hashing.hash_files` callback)."""
        self.bar.update(count)

    def update(self, done: int, total: int) -> None:
        """Set the position (the ``(done, total)`` callback of identify and verify)."""
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def print(self, line: str, *, err: bool = False) -> None:
        """A result line on stdout, or a message on stderr (``err=True``)."""
        tqdm.write(line, file=sys.stderr if err else sys.stdout)


#: Hex digits per digest, for the table of ``civit hash --algo LIST``.
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


@cli.command("hash")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--algo",
    "algorithms",
    default="sha256",
    show_default=True,
    metavar="LIST",
    help="Comma-separated: sha256, blake3, crc32, autov1, autov2, autov3, or all.",
)
@click.option("--no-cache", is_flag=True, help="Read every byte; neither use nor fill the cache.")
@json_option
def hash_command(paths: tuple[Path, ...], algorithms: str, no_cache: bool, as_json: bool) -> int:
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
    total = sum(path.stat().st_size for path in files if path.is_file())
    cache = None if no_cache else HashCache.default()
    table = len(wanted) > 1
    documents: list[dict[str, object]] = []
    failed = False
    with ByteBar("hash", total) as bar:
        if table and not as_json and files:
            header = [name.upper().ljust(DIGEST_WIDTHS[name]) for name in wanted]
            bar.print("  ".join([*header, "PATH"]))
        for found in hash_files(files, wanted, cache=cache, progress=bar.advance):
            if found.error is not None:
                failed = True
                documents.append({"path": str(found.path), "error": str(found.error)})
                bar.print(f"civit: error: {found.error}", err=True)
                continue
            documents.append(
                {
                    "path": str(found.path),
                    "size": found.size,
                    "digests": dict(found.digests),
                    "cached": found.cached,
                }
            )
            if as_json:
                continue
            if table:
                bar.print(digest_row(wanted, found.digests, str(found.path)))
            else:
                bar.print(checksum_line(found.digests[wanted[0]], found.path))
    if as_json:
        echo_json(documents)
    return 1 if failed else 0


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
    return lines


@cli.command("identify")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--write-info",
    is_flag=True,
    help="Write <file>.civitai.info (the version record, as A1111/Forge extensions read "
    "it) beside each known file.",
)
@json_option
@pass_app
def identify_command(app: App, paths: tuple[Path, ...], write_info: bool, as_json: bool) -> int:
    """Tell what local model files are: model, version, type, base model, page.

    Files are looked up on Civitai by SHA256: one request for a whole folder, then
    one per distinct version for its details. A file Civitai does not know is
    reported as unknown; that is an answer, not a failure (exit 0). Unreadable files
    exit 1. A damaged copy of a known file is unknown too: use civit verify.

    \b
    Examples:
      civit identify mystery.safetensors
      civit identify ~/stable-diffusion-webui/models/Lora --write-info
    """
    with ByteBar("identify") as bar:
        results = identify_files(
            paths, client=app.client, cache=HashCache.default(), progress=bar.update
        )
    documents = []
    for found in results:
        document = found.as_json()
        if found.error is not None:
            say(f"civit: error: {found.error}")
        elif not as_json:
            click.echo("\n".join(render_identification(found)))
        if write_info and found.version is not None:
            document["info"] = str(write_info_sidecar(found.path, found.version))
            if not as_json:
                say(f"  wrote {document['info']}")
        documents.append(document)
    if as_json:
        echo_json(documents)
    known = sum(found.status == "known" for found in results)
    failed = sum(found.status == "error" for found in results)
    summary = f"{count_files(len(results))}: {known} known, {len(results) - known - failed} unknown"
    say(summary + (f", {failed} unreadable" if failed else ""))
    return 1 if failed else 0


VERIFY_LABELS = {"ok": "ok", "mismatch": "MISMATCH", "unknown": "unknown", "error": "ERROR"}


@cli.command("verify")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--lock",
    "lock_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Compare with this civit.lock, offline. Without PATHs: every file it names.",
)
@click.option("--no-cache", is_flag=True, help="Re-read every byte (finds silent disk damage).")
@json_option
@pass_app
def verify_command(
    app: App, paths: tuple[Path, ...], lock_path: Path | None, no_cache: bool, as_json: bool
) -> int:
    """Check that local model files are intact: ok, MISMATCH or unknown per file.

    Each file is compared with the first of these that speaks for it:

    \b
      1. its entry in the lock given with --lock (a civit.lock is never picked up
         implicitly; with --lock nothing touches the network)
      2. its own name, for a store entry (.../sha256/ab/ab12...)
      3. Civitai's record of its SHA256 (without --lock; one request for all files)
      4. the <file>.civitai.info beside it

    A damaged file with none of these cannot be told from a file Civitai never saw:
    both are "unknown".

    Exit 7 if any file mismatches, 1 if any is unreadable or missing, else 0.

    \b
    Examples:
      civit verify ~/ComfyUI/models
      civit verify --lock civit.lock                  every locked file, offline
      civit verify ~/.cache/civit-store --no-cache    re-read every store entry
    """
    with ByteBar("verify") as bar:
        results = verify_files(
            paths,
            lock=lock_path,
            client=app.client,
            cache=None if no_cache else HashCache.default(),
            progress=bar.update,
        )
    for check in results:
        if check.status == "error":
            say(f"civit: error: {check.reason}")
        elif not as_json:
            click.echo(f"{VERIFY_LABELS[check.status]:8}  {check.path}: {check.reason}")
    if as_json:
        echo_json([check.as_json() for check in results])
    counts = {status: sum(c.status == status for c in results) for status in VERIFY_LABELS}
    exit_code = 7 if counts["mismatch"] else 1 if counts["error"] else 0
    summary = ", ".join(f"{counts[s]} {s}" for s in ("ok", "mismatch", "unknown") if counts[s])
    if counts["error"]:
        summary += f"{', ' if summary else ''}{counts['error']} unreadable"
    say(f"{count_files(len(results))}: {summary or 'nothing checked'}")
    return exit_code


# -- config -------------------------------------------------------------------------


@cli.group()
def config() -> None:
    """Show where settings come from (flag > env > config file > default)."""


@config.command("path")
def config_path_command() -> int:
    """Print the config file's path."""
    click.echo(str(config_path()))
    return 0


@config.command("show")
@json_option
@pass_app
def config_show(app: App, as_json: bool) -> int:
    """Print the effective settings; the token is shown only as set/unset."""
    settings = app.settings
    values: dict[str, object] = {
        "config_file": str(config_path()),
        "base_url": settings.base_url,
        "token": "set" if settings.token else "unset",
        "root": str(settings.root) if settings.root else None,
        "layout": settings.layout,
        "connections": settings.connections,
        "jobs": settings.jobs,
        "stall_timeout": settings.stall_timeout,
        "retries": settings.retries,
        "mirror": settings.mirror,
        "store": str(settings.store) if settings.store else None,
    }
    if as_json:
        echo_json({"settings": values, "sources": dict(settings.sources)})
        return 0
    for name, value in values.items():
        source = settings.sources.get(name)
        suffix = f"  ({source})" if source else ""
        click.echo(f"{name:14} {'' if value is None else value}{suffix}")
    return 0


# -- entry point --------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run ``civit`` and exit with its documented code."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args or "--verbose" in args
    try:
        code = cli.main(args=args, prog_name="civit", standalone_mode=False)
    except click.exceptions.Abort:
        say("civit: interrupted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CivitError as exc:
        if verbose:
            traceback.print_exc()
        say(f"civit: error: {exc}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        say("civit: interrupted; run the same command again to resume")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if verbose:
            traceback.print_exc()
        say(f"civit: internal error: {type(exc).__name__}: {exc} (run with --verbose)")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["cli", "main", "render_model"]
