"""``civit config``: where settings come from."""

from __future__ import annotations

import click

from civit.cli.app import App, command, group, pass_app
from civit.cli.output import echo_json
from civit.config import config_path
from civit.errors import redact_url

# -- config -------------------------------------------------------------------------


@group()
def config() -> None:
    """Show where settings come from (flag > env > config file > default)."""


@command("path")
@pass_app
def config_path_command(app: App) -> int:
    """Print the config file's path."""
    if app.json:
        echo_json({"path": str(config_path())})
    else:
        click.echo(str(config_path()))
    return 0


@command("show")
@pass_app
def config_show(app: App) -> int:
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
        "max_api_response_mb": settings.max_api_response_mb,
        "mirror": settings.mirror,
        "store": str(settings.store) if settings.store else None,
        "proxy": redact_url(settings.proxy) if settings.proxy else None,
    }
    if app.json:
        echo_json({"settings": values, "sources": dict(settings.sources)})
        return 0
    for name, value in values.items():
        source = settings.sources.get(name)
        suffix = f"  ({source})" if source else ""
        click.echo(f"{name:14} {'' if value is None else value}{suffix}")
    return 0


config.add_command(config_path_command)
config.add_command(config_show)
