"""Settings: command-line flag > environment variable > config file > default.

The config file is TOML at ``$CIVIT_CONFIG`` or the platform's user config folder
(``~/.config/civit/config.toml`` on Linux)::

    base_url = "https://civitai.com"
    token = "..."            # or set CIVITAI_API_TOKEN
    root = "~/ComfyUI"
    layout = "comfyui"
    connections = 8
    jobs = 4
    stall_timeout = 30
    retries = 5              # tries per request before giving up (env CIVIT_RETRIES)
    mirror = "http://cache.local/{sha256}"
    store = "~/models-store"
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from civit.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["DEFAULT_BASE_URL", "Settings", "config_path", "load_settings"]

DEFAULT_BASE_URL = "https://civitai.com"

#: Environment variables, first one set wins; CIVITAI_TOKEN is the official CLI's name.
ENVIRONMENT = {
    "base_url": ("CIVITAI_BASE_URL",),
    "token": ("CIVITAI_API_TOKEN", "CIVITAI_TOKEN"),
    "root": ("CIVIT_ROOT",),
    "layout": ("CIVIT_LAYOUT",),
    "mirror": ("CIVIT_MIRROR",),
    "store": ("CIVIT_STORE",),
    "retries": ("CIVIT_RETRIES",),
}


@dataclass(frozen=True)
class Settings:
    """Everything configurable, already merged from all sources.

    ``sources`` records where each non-default value came from (for
    ``civit config show``), e.g. ``{"token": "env CIVITAI_API_TOKEN"}``.
    """

    base_url: str = DEFAULT_BASE_URL
    token: str | None = None
    root: Path | None = None
    layout: str = "auto"
    connections: int | None = None
    jobs: int = 4
    stall_timeout: float = 30.0
    retries: int = 5
    mirror: str | None = None
    store: Path | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        # The token must never reach a log line or a traceback.
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sources"}
        if shown["token"]:
            shown["token"] = "***"
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


def config_path() -> Path:
    """Where the config file lives (it may not exist)."""
    override = os.environ.get("CIVIT_CONFIG")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_config_dir("civit")) / "config.toml"


_CONVERTERS: dict[str, Any] = {
    "base_url": lambda v: str(v).rstrip("/"),
    "token": lambda v: str(v).strip() or None,
    "root": lambda v: Path(str(v)).expanduser(),
    "layout": str,
    "connections": int,
    "jobs": int,
    "stall_timeout": float,
    "retries": int,
    "mirror": str,
    "store": lambda v: Path(str(v)).expanduser(),
}


def _convert(name: str, value: object, source: str) -> object:
    try:
        converted = _CONVERTERS[name](value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid value {value!r} for {name} ({source})") from exc
    if name in ("connections", "jobs", "retries") and converted < 1:
        raise UsageError(f"{name} must be at least 1, got {value!r} ({source})")
    return converted


def _read_file(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from exc
    unknown = sorted(set(data) - set(_CONVERTERS))
    if unknown:
        raise UsageError(
            f"unknown setting {', '.join(unknown)} in {path}; "
            f"known settings: {', '.join(_CONVERTERS)}"
        )
    return dict(data)


def load_settings(
    overrides: Mapping[str, object] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Settings:
    """Merge defaults, the config file, the environment and ``overrides`` (CLI flags).

    ``None`` values in ``overrides`` mean "not given" and do not override.

    Raises:
        UsageError: an unreadable config file, an unknown key or a bad value.
    """
    environ = os.environ if environ is None else environ
    path = config_path() if path is None else path
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for name, value in _read_file(path).items():
        values[name] = _convert(name, value, f"config file {path}")
        sources[name] = f"config {path}"
    for name, variables in ENVIRONMENT.items():
        for variable in variables:
            if environ.get(variable):
                values[name] = _convert(name, environ[variable], f"${variable}")
                sources[name] = f"env {variable}"
                break
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _convert(name, value, f"--{name.replace('_', '-')}")
            sources[name] = "command line"
    return replace(Settings(), **values, sources=sources)  # type: ignore[arg-type]
