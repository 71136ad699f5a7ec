"""Paths as users write them: ``~`` and environment variables expanded on every platform.

cmd and PowerShell hand ``~\\models`` and ``$HOME`` to programs untouched, and config
files and manifests travel between Windows and Linux, so civit expands paths itself:
:func:`expand_path` for paths typed on a command line, :func:`path_setting` for paths
read from a config file, a manifest or a variable such as ``CIVIT_ROOT``.

This module imports nothing from the package but :mod:`civit.errors`, so the lowest
modules (``fsutil``, ``config``) can use it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from civit.errors import UsageError

__all__ = ["WINDOWS_PATH_HINT", "expand_path", "path_setting"]

WINDOWS_PATH_HINT = r"use single quotes for Windows paths: root = 'C:\Users\me\ComfyUI'"

# %NAME% (cmd; names such as ProgramFiles(x86) included), ${NAME} and $NAME (shells).
_VARIABLE = re.compile(
    r"%(?P<cmd>[A-Za-z_][A-Za-z0-9_()]*)%|\$\{(?P<braced>[A-Za-z_]\w*)\}|\$(?P<bare>[A-Za-z_]\w*)"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def expand_path(value: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None) -> Path:
    """A path as users type it, made real: variables and ``~`` expanded, on any platform.

    ``%USERPROFILE%``, ``$HOME`` and ``${HOME}`` are replaced from ``environ`` (names
    compared case-insensitively when the exact one is unset, as Windows does); unknown
    variables stay as written. A leading ``~`` is the home folder (``$HOME``, else
    ``%USERPROFILE%``): cmd and PowerShell pass ``~\\models`` to programs untouched.

    >>> expand_path("%USERPROFILE%/ComfyUI", environ={"USERPROFILE": "/home/me"}).as_posix()
    '/home/me/ComfyUI'
    >>> expand_path("~/models", environ={"HOME": "/home/me"}).as_posix()
    '/home/me/models'

    Args:
        value: the path as written.
        environ: the environment (default: ``os.environ``).

    Returns:
        The expanded path.
    """
    environ = os.environ if environ is None else environ

    def variable(match: re.Match[str]) -> str:
        name = match.group("cmd") or match.group("braced") or match.group("bare")
        found = environ.get(name)
        if found is None:
            found = next((v for k, v in environ.items() if k.upper() == name.upper()), None)
        return match.group(0) if found is None else found

    text = _VARIABLE.sub(variable, os.fspath(value))
    if text == "~" or text.startswith(("~/", "~\\")):
        home = environ.get("HOME") or environ.get("USERPROFILE") or str(Path.home())
        text = home + text[1:]
    return Path(text).expanduser()


def path_setting(value: str, *, environ: Mapping[str, str] | None = None) -> Path:
    """A path written in a config file, a manifest or a variable such as ``CIVIT_ROOT``.

    Expanded like :func:`expand_path`; backslashes separate folders on every platform
    (a manifest written on Windows works in Linux CI), and a control character — the
    trace of a Windows path in a double-quoted TOML string, where ``"C:\\temp"`` reads
    as a tab — is an error that says to use single quotes.

    >>> path_setting("models\\\\loras", environ={}).as_posix()
    'models/loras'

    Raises:
        UsageError: the path holds a control character.
    """
    if _CONTROL.search(value):
        raise UsageError(
            f"path {value!r} contains a control character (a backslash escape?)",
            hint=WINDOWS_PATH_HINT,
        )
    if sys.platform != "win32":
        value = value.replace("\\", "/")
    return expand_path(value, environ=environ)
