"""Per-invocation state and the root ``civit`` group: global options, settings, client."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import click

from civit._version import VERSION
from civit.api import Client
from civit.config import Settings, expand_path, load_settings
from civit.refs import pasted_token


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

    def adopt_pasted_token(self, refs: Iterable[str]) -> None:
        """Use a ``?token=`` pasted into a ref URL as the API token when none is set.

        Civitai's docs tell people to append ``?token=`` to download links. civit never
        puts a token in a URL: the pasted one is sent like any other, as the
        ``Authorization`` header to the API origin only, and never shown. Call this
        before the first use of :attr:`client`.
        """
        pasted = next((token for token in map(pasted_token, refs) if token), None)
        if pasted is None or self.settings.token or self._client is not None:
            return
        sources = {**self.settings.sources, "token": "pasted into a ref (?token=)"}
        self._settings = dataclasses.replace(self.settings, token=pasted, sources=sources)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(settings=self.settings)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


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
        if isinstance(value, (str, os.PathLike)) and not (
            self.literal_first and os.path.lexists(value)
        ):
            value = expand_path(value)
        return super().convert(value, param, ctx)


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
