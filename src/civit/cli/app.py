"""Per-invocation state, the root ``civit`` group, and the options every command shares.

Adding a command: write it in the module of its kind (``browse``, ``fetching``,
``projects``, ``local_files``, ``mirror``, ``settings``, or a new one), decorate it with
``@command(...)`` from here (it adds the shared options: ``--json``, ``-q``,
``--base-url``, ``--token``, ``-v``, accepted before or after the command name) and
``@pass_app``, then name it in :data:`COMMANDS`. Read ``app.json`` / ``app.quiet``
instead of declaring those options again. Print human text with
:mod:`civit.cli.output` (``echo``, ``say``) and the ``--json`` document with
``output.echo_json`` (a failed item carries ``CivitError.as_json()`` under ``error``;
raise a ``CivitError`` for a failed command: ``civit.cli.main`` renders it, with
``--json`` as ``{"error": {...}}``); progress through :class:`civit.cli.progress.Progress`.
Give it a schema in ``tests/json_schemas.py`` and a section in ``docs/json.md`` (a
test fails without them). Commands are imported only when they run, so keep heavy
imports inside the module of the command that needs them.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from civit._version import VERSION

if TYPE_CHECKING:
    from civit.api import Client
    from civit.config import Settings

__all__ = [
    "COMMANDS",
    "App",
    "ExpandedPath",
    "cli",
    "command",
    "group",
    "pass_app",
    "shared_options",
    "typed_path",
]

_F = TypeVar("_F", bound=Callable[..., Any])

#: Every subcommand as ``module:attribute``; a module is imported only when one of its
#: commands runs (or for ``civit --help``), so ``civit --version`` and ``civit hash``
#: do not load httpx or the download engine.
COMMANDS = {
    "config": "civit.cli.settings:config",
    "freeze": "civit.cli.library:freeze_command",
    "get": "civit.cli.fetching:get",
    "hash": "civit.cli.local_files:hash_command",
    "identify": "civit.cli.local_files:identify_command",
    "info": "civit.cli.browse:info",
    "install": "civit.cli.projects:install_command",
    "lock": "civit.cli.projects:lock_command",
    "mirror": "civit.cli.mirror:mirror_group",
    "outdated": "civit.cli.library:outdated_command",
    "search": "civit.cli.browse:search",
    "verify": "civit.cli.local_files:verify_command",
}


@dataclass
class App:
    """Per-invocation state: shared flags, merged settings, one lazily made client.

    The shared options may come before or after the command name; each occurrence
    updates this one object (the last one given wins).
    """

    overrides: dict[str, object] = field(default_factory=dict)
    verbose: bool = False
    json: bool = False
    quiet: bool = False
    _settings: Settings | None = None
    _client: Client | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from civit.config import load_settings

            self._settings = load_settings(self.overrides)
        return self._settings

    def adopt_pasted_token(self, refs: Iterable[str]) -> None:
        """Use a ``?token=`` pasted into a ref URL as the API token when none is set.

        Civitai's docs tell people to append ``?token=`` to download links. civit never
        puts a token in a URL: the pasted one is sent like any other, as the
        ``Authorization`` header to the API origin only, and never shown. Call this
        before the first use of :attr:`client`.
        """
        from civit.refs import pasted_token

        pasted = next((token for token in map(pasted_token, refs) if token), None)
        if pasted is None or self.settings.token or self._client is not None:
            return
        sources = {**self.settings.sources, "token": "pasted into a ref (?token=)"}
        self._settings = dataclasses.replace(self.settings, token=pasted, sources=sources)

    @property
    def client(self) -> Client:
        if self._client is None:
            from civit.api import Client

            self._client = Client(settings=self.settings)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _app(ctx: click.Context) -> App:
    return ctx.ensure_object(App)


def _set_override(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            _app(ctx).overrides[name] = value

    return remember


def _set_flag(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def remember(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:  # a flag not given here must not undo one given before the command
            setattr(_app(ctx), name, True)

    return remember


_QUIET_HELP = "No progress or messages; only errors and the summary."


def shared_options(function: _F, *, quiet_help: str = _QUIET_HELP) -> _F:
    """Add the options every command accepts, before or after its name.

    They do not reach the command's parameters; read them from :class:`App`.
    ``quiet_help`` says what ``-q`` does to this command's output where that is more
    than silence (``search -q`` prints only model ids).
    """
    options = [
        click.option(
            "--json",
            is_flag=True,
            expose_value=False,
            callback=_set_flag("json"),
            help="Print one JSON document on stdout (docs/json.md); errors too.",
        ),
        click.option(
            "-q",
            "--quiet",
            is_flag=True,
            expose_value=False,
            callback=_set_flag("quiet"),
            help=quiet_help,
        ),
        click.option(
            "--base-url",
            metavar="URL",
            expose_value=False,
            callback=_set_override("base_url"),
            help="Civitai origin: https://civitai.com (default) or https://civitai.red "
            "(env CIVITAI_BASE_URL).",
        ),
        click.option(
            "--proxy",
            metavar="URL",
            expose_value=False,
            callback=_set_override("proxy"),
            help="HTTP proxy for the API and downloads, e.g. http://proxy:3128; 'none' for "
            "none (env CIVIT_PROXY; default: HTTPS_PROXY/HTTP_PROXY/ALL_PROXY/NO_PROXY).",
        ),
        click.option(
            "--token",
            metavar="TOKEN",
            expose_value=False,
            callback=_set_override("token"),
            help="API token (default: env CIVITAI_API_TOKEN or the config file). Never printed.",
        ),
        click.option(
            "-v",
            "--verbose",
            is_flag=True,
            expose_value=False,
            callback=_set_flag("verbose"),
            help="Show tracebacks on errors.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def command(
    name: str | None = None, *, quiet_help: str = _QUIET_HELP, **settings: Any
) -> Callable[[Callable[..., Any]], click.Command]:
    """``click.command`` with the shared options (``quiet_help``: see
    :func:`shared_options`)."""

    make = cast(Callable[[Callable[..., Any]], click.Command], click.command(name, **settings))

    def decorate(function: Callable[..., Any]) -> click.Command:
        return make(shared_options(function, quiet_help=quiet_help))

    return decorate


def group(name: str | None = None, **settings: Any) -> Callable[[Callable[..., Any]], click.Group]:
    """``click.group`` with the shared options (for command groups such as ``config``)."""

    make = cast(Callable[[Callable[..., Any]], click.Group], click.group(name, **settings))

    def decorate(function: Callable[..., Any]) -> click.Group:
        return make(shared_options(function))

    return decorate


class ExpandedPath(click.Path):
    """A path argument with ``~`` and ``%VAR%``/``$VAR`` expanded: cmd and PowerShell
    pass ``~\\models`` through untouched, so civit expands it (never a folder named ``~``).

    With ``literal_first``, a path that exists as typed is kept as it is (a local file
    may really be named ``$x`` or ``~``); options always expand.
    """

    def __init__(self, *args: Any, literal_first: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.literal_first = literal_first

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (str, os.PathLike)):
            value = typed_path(value, literal_first=self.literal_first)
        return super().convert(value, param, ctx)


def typed_path(value: str | os.PathLike[str], *, literal_first: bool = True) -> Path:
    """A path typed on the command line, ``~`` and ``%VAR%``/``$VAR`` expanded; with
    ``literal_first`` a path that exists as typed is kept as it is (see
    :class:`ExpandedPath`, for arguments click does not parse as paths)."""
    if literal_first and os.path.lexists(value):
        return Path(value)
    from civit.paths import expand_path

    return expand_path(value)


class _LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (see :data:`COMMANDS`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute = COMMANDS[cmd_name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Docs and examples: README.md. Exit codes: 0 ok, 1 error, 2 usage, 3 auth, "
    "4 not found, 5 network, 6 rate limited, 7 integrity, 130 interrupted; with several "
    "refs or entries, the highest code among the failures.",
)
@click.version_option(VERSION, "-V", "--version", prog_name="civit")
@shared_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Download, verify and identify Civitai models for Stable Diffusion WebUIs.

    \b
    Examples:
      civit info 827184                         what is model 827184?
      civit get 827184 --root ~/ComfyUI         newest version into models/checkpoints
      civit get urn:air:sdxl:lora:civitai:328553@368189 --root ~/stable-diffusion-webui
      civit search "detail" --type LORA --base-model "SDXL 1.0"
    """
    ctx.call_on_close(_app(ctx).close)


pass_app = click.make_pass_decorator(App, ensure=True)
