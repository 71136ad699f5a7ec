"""Looking around Civitai: ``civit info`` and ``civit search``."""

from __future__ import annotations

import click

from civit import records
from civit.api import Client
from civit.cli.app import App, command, pass_app
from civit.cli.output import echo, echo_json, format_table, say
from civit.errors import NotFoundError, ResponseError
from civit.refs import Ref, parse_ref
from civit.select import describe_file, newest_version

# -- info ---------------------------------------------------------------------------


def _short_hashes(file: records.File) -> str:
    digests = file.hashes.as_dict()
    shown = [f"{name.upper()} {digests[name][:10]}" for name in ("sha256",) if name in digests]
    return "  ".join(shown)


def _render_version(version: records.Version, *, marks: list[str]) -> list[str]:
    header = f"  {version.name}  #{version.id}"
    details = [d for d in (version.base_model, version.date) if d]
    if details:
        header += "  " + "  ".join(details)
    if marks:
        header += f"  ({', '.join(marks)})"
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
    taken = newest_version(model).id if model.versions else None
    for index, version in enumerate(model.versions):
        if only_version is None or version.id == only_version:
            lines.extend(_render_version(version, marks=_marks(version, index, taken)))
    return "\n".join(lines)


def _marks(version: records.Version, index: int, taken: int | None) -> list[str]:
    """What sets a version apart: the newest, in Early Access (until when), and the
    newest one that can be downloaded now when that is another (what `civit get` takes)."""
    marks = ["newest"] if index == 0 else []
    if version.early_access_label:
        marks.append(version.early_access_label)
    if version.id == taken and index > 0:
        marks.append("newest you can download now")
    return marks


def _model_for(client: Client, ref: Ref) -> tuple[records.Model, int | None]:
    if ref.hash is not None or ref.model_id is None:
        version = client.get_version_for(ref)  # by hash, or the version ref's own record
        if version.model_id is None:
            raise ResponseError(f"Civitai did not say which model version {version.id} belongs to")
        return client.get_model(version.model_id), version.id
    return client.get_model(ref.model_id), ref.version_id


@command()
@click.argument("ref")
@pass_app
def info(app: App, ref: str) -> int:
    """Show a model, its versions and files.

    REF is a model id (827184), model@version (827184@2514310), a civitai.com URL, an
    AIR (urn:air:sdxl:checkpoint:civitai:827184@2514310) or a SHA256/AutoV2 hash.

    \b
    Examples:
      civit info 827184                       every version, newest first
      civit info 827184@2514310               one version's files and hashes
      civit info 9CFBAC1ABA                   which model a file with this AutoV2 is
      civit info "https://civitai.com/models/328553?modelVersionId=368189" --json
    """
    parsed = parse_ref(ref)
    app.adopt_pasted_token([ref])
    model, version_id = _model_for(app.client, parsed)
    if version_id is not None and not any(v.id == version_id for v in model.versions):
        raise NotFoundError(
            f"model {model.id} has no version {version_id}",
            hint=f"`civit info {model.id}` lists its versions",
        )
    if app.json:
        echo_json(records.as_json(model))
    else:
        echo(render_model(model, only_version=version_id))
    return 0


# -- search -------------------------------------------------------------------------


def _newest_base_model(model: records.Model) -> str:
    return (model.versions[0].base_model or "") if model.versions else ""


@command(quiet_help="Print only the model ids, one per line (for `civit get -`).")
@click.argument("query", required=False)
@click.option("--type", "types", multiple=True, metavar="TYPE", help="Model type, repeatable.")
@click.option("--base-model", "base_models", multiple=True, metavar="B", help="Repeatable.")
@click.option("--tag", help="Only models with this tag.")
@click.option("--username", help="Only models by this creator.")
@click.option("--sort", help='e.g. "Highest Rated", "Most Downloaded", "Newest".')
@click.option("--period", type=click.Choice(["AllTime", "Year", "Month", "Week", "Day"]))
@click.option("--nsfw", is_flag=True, default=None, help="Include mature content.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
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
) -> int:
    """Search Civitai's models (cursor-paged, so any --limit works).

    With -q/--quiet only the model ids are printed, one per line, for piping.

    \b
    Examples:
      civit search "detail" --type LORA --base-model "SDXL 1.0"
      civit search --sort "Most Downloaded" --period Month --type Checkpoint --limit 10
      civit search --username NAME --type LORA --limit 500 -q | civit get - --root ~/ComfyUI
    """
    models = list(
        app.client.iter_models(
            max_items=limit + 1,  # one more tells whether --limit cut the list
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
    if len(models) > limit:
        models = models[:limit]
        say(f"civit: warning: more models match; showing the first {limit} (raise --limit)")
    if app.json:
        echo_json([records.as_json(model) for model in models])
        return 0
    if app.quiet:
        for model in models:
            echo(str(model.id))
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
    echo(format_table(("ID", "NAME", "TYPE", "BASE", "DOWNLOADS", "CREATOR"), rows))
    return 0
