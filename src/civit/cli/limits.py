"""The engine's bounds as command-line options, shared by ``get`` and ``install``:
``--limit-rate``, ``--deadline``, ``--lock-timeout`` (and the lock-wait notice)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from civit.cli.progress import Progress
from civit.pacing import parse_rate
from civit.writerlock import LockWaitCallback

_F = TypeVar("_F", bound=Callable[..., Any])


def _rate(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """``--limit-rate``: bytes per second from ``20M``, ``500K``, ``1.5M`` or a number."""
    if value is None:
        return None
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


def limit_options(function: _F) -> _F:
    """``--limit-rate``, ``--deadline`` and ``--lock-timeout``."""
    options = [
        click.option(
            "--limit-rate",
            callback=_rate,
            metavar="RATE",
            help="Bytes per second over all connections, e.g. 20M or 500K (like curl's).",
        ),
        click.option(
            "--deadline",
            type=click.FloatRange(min=0.1),
            metavar="SECONDS",
            help="Stop a download that takes longer (resumable; exit 5).",
        ),
        click.option(
            "--lock-timeout",
            type=click.FloatRange(min=0),
            metavar="SECONDS",
            help="Give up waiting for another civit fetching the same file (exit 1).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def lock_wait_notice(progress: Progress) -> LockWaitCallback:
    """The ``on_lock_wait`` callback: say on stderr whom a download is waiting for, above
    the bars on a terminal, as a plain line in a log. ``--quiet`` silences it with the
    progress it belongs to (``--lock-timeout`` bounds a wait nobody watches)."""

    def notice(target: Path, pid: int | None) -> None:
        if progress.quiet:
            return
        progress.message(
            f"waiting for another civit on {target}" + (f" (pid {pid})" if pid else "")
        )

    return notice
