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
    proxy = "http://proxy.example:3128"  # API and downloads (env CIVIT_PROXY; "none": off)
    max_api_response_mb = 64  # the largest API answer civit reads (after decompression)
    mirror = "http://cache.local/{sha256}"
    store = "~/models-store"
    allow_unscanned = false  # accept files Civitai's scans have not passed
    info = true              # write the sidecars the WebUI reads (.civitai.info, card, preview)
    preview_nsfw = "pg13"    # the most explicit preview image: pg, pg13, r, x, xxx or none
    subfolder = "{base_model}"  # below the type folder: {base_model} {creator} {model_name} {type}

    [outdated]
    ignore = [4201, 12345]   # model ids `civit outdated` never reports

Paths (here, in ``CIVIT_ROOT``/``CIVIT_STORE``, in flags and in manifests) go through
:mod:`civit.paths`: ``~``, ``%USERPROFILE%``, ``$HOME`` and ``${HOME}`` work on every
platform, and so do ``/`` and ``\\``. In TOML, write Windows paths in single quotes
(``root = 'C:\\Users\\me\\ComfyUI'``): inside double quotes a backslash starts an escape.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from civit.errors import UsageError, redact_url
from civit.fsutil import read_regular_file
from civit.paths import WINDOWS_PATH_HINT, expand_path, path_setting
from civit.records import preview_level

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "DEFAULT_BASE_URL",
    "Settings",
    "config_path",
    "load_settings",
    "outdated_ignore",
    "set_variable_hint",
    "toml_error_hint",
]

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
    "allow_unscanned": ("CIVIT_ALLOW_UNSCANNED",),
    "proxy": ("CIVIT_PROXY",),
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
    max_api_response_mb: int = 64
    mirror: str | None = None
    store: Path | None = None
    allow_unscanned: bool = False
    info: bool = False
    preview_nsfw: str = "pg13"
    subfolder: str | None = None
    outdated_ignore: tuple[int, ...] = ()
    proxy: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        # The token must never reach a log line or a traceback.
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sources"}
        if shown["token"]:
            shown["token"] = "***"
        if shown["proxy"]:
            shown["proxy"] = redact_url(shown["proxy"])  # user:password@ stays private
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


def toml_error_hint(error: Exception) -> str | None:
    """The hint for a TOML parse error that looks like an unquoted Windows path.

    ``root = "C:\\Users\\me"`` fails with "Invalid hex value" (``\\U`` starts an
    escape) and ``"D:\\AI"`` with "Unescaped '\\'": both mean "use single quotes".
    """
    text = str(error)
    if "Invalid hex value" in text or "Unescaped '\\'" in text or "escape" in text.lower():
        return WINDOWS_PATH_HINT
    return None


def set_variable_hint(name: str, value: str = "...", *, platform: str | None = None) -> str:
    """How to set an environment variable in the user's shell, for hints.

    >>> set_variable_hint("CIVITAI_API_TOKEN", platform="linux")
    '`export CIVITAI_API_TOKEN=...`'
    >>> set_variable_hint("CIVITAI_API_TOKEN", platform="win32")
    '`set CIVITAI_API_TOKEN=...` (cmd) or `$env:CIVITAI_API_TOKEN="..."` (PowerShell)'

    Args:
        name: the variable.
        value: the placeholder shown for its value.
        platform: a ``sys.platform`` value (default: this machine's).
    """
    if (platform or sys.platform) == "win32":
        return f'`set {name}={value}` (cmd) or `$env:{name}="{value}"` (PowerShell)'
    return f"`export {name}={value}`"


def config_path() -> Path:
    """Where the config file lives (it may not exist)."""
    override = os.environ.get("CIVIT_CONFIG")
    if override:
        return expand_path(override)
    return Path(platformdirs.user_config_dir("civit")) / "config.toml"


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a yes/no value: {value!r}")


def _subfolder(value: object) -> str | None:
    """A ``subfolder`` template, checked by :func:`civit.layouts.check_subfolder`, imported
    on first use: the layouts package loads every WebUI's tables, and the commands that
    read settings without placing files (``info``, ``search``) should not pay for that."""
    from civit.layouts import check_subfolder

    return check_subfolder(str(value)) or None


def _preview_nsfw(value: object) -> str:
    preview_level(value if isinstance(value, (str, int)) else str(value))
    return str(value).strip().lower()


_CONVERTERS: dict[str, Any] = {
    "base_url": lambda v: str(v).rstrip("/"),
    "token": lambda v: str(v).strip() or None,
    "root": path_setting,
    "layout": str,
    "connections": int,
    "jobs": int,
    "stall_timeout": float,
    "retries": int,
    "max_api_response_mb": int,
    "mirror": str,
    "store": path_setting,
    "allow_unscanned": _flag,
    "info": _flag,
    "preview_nsfw": _preview_nsfw,
    "subfolder": _subfolder,
    "outdated_ignore": tuple,  # from the [outdated] table (see _read_file)
    "proxy": lambda v: str(v).strip() or None,
}


# Settings that are paths: expanded with the environment load_settings() was given.
_PATHS = frozenset({"root", "store"})


def _convert(
    name: str, value: object, source: str, environ: Mapping[str, str] | None = None
) -> object:
    try:
        if name in _PATHS:
            converted: Any = path_setting(str(value), environ=environ)
        else:
            converted = _CONVERTERS[name](value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid value {value!r} for {name} ({source})") from exc
    except UsageError as exc:
        raise UsageError(f"{name} ({source}): {exc.message}", hint=exc.hint) from exc
    if name in ("connections", "jobs", "retries", "max_api_response_mb") and converted < 1:
        raise UsageError(f"{name} must be at least 1, got {value!r} ({source})")
    return converted


def _read_file(path: Path) -> dict[str, object]:
    try:
        data = tomllib.loads(read_regular_file(path).decode("utf-8"))
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(
            f"cannot read config file {path}: {exc}", hint=toml_error_hint(exc)
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from exc
    except RecursionError as exc:
        raise UsageError(f"cannot read config file {path}: it nests too deeply") from exc
    known = [name for name in _CONVERTERS if name != "outdated_ignore"] + ["outdated"]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise UsageError(
            f"unknown setting {', '.join(unknown)} in {path}; known settings: {', '.join(known)}"
        )
    settings = dict(data)
    if "outdated" in settings:
        settings["outdated_ignore"] = outdated_ignore(settings.pop("outdated"), str(path))
    return settings


def outdated_ignore(table: object, where: str) -> tuple[int, ...]:
    """The model ids of an ``[outdated]`` table (``ignore = [4201, 12345]``).

    Args:
        table: the table as TOML parsed it.
        where: the file, for messages.

    Returns:
        The ids, in the order given.

    Raises:
        UsageError: not a table with one ``ignore`` list of model ids.
    """
    ids = table.get("ignore", []) if isinstance(table, dict) else None
    if not isinstance(table, dict) or set(table) - {"ignore"}:
        raise UsageError(f"{where}: [outdated] takes one key: ignore = [model ids]")
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids
    ):
        raise UsageError(f"{where}: [outdated] ignore must be a list of model ids, not {ids!r}")
    return tuple(ids)


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
        values[name] = _convert(name, value, f"config file {path}", environ)
        sources[name] = f"config {path}"
    for name, variables in ENVIRONMENT.items():
        for variable in variables:
            if environ.get(variable):
                values[name] = _convert(name, environ[variable], f"${variable}", environ)
                sources[name] = f"env {variable}"
                break
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _convert(name, value, f"--{name.replace('_', '-')}", environ)
            sources[name] = "command line"
    return replace(Settings(), **values, sources=sources)  # type: ignore[arg-type]
