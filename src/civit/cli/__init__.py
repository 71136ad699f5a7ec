"""The ``civit`` command line: parse, call the library, render. No behaviour lives here.

Human output (progress, messages) goes to stderr; ``--json`` documents go to stdout.
Every :class:`civit.errors.CivitError` becomes one ``civit: error: ...`` line and its
exit code; tracebacks only with ``--verbose``.

Commands are grouped by what they do: :mod:`~civit.cli.browse` (info, search),
:mod:`~civit.cli.fetching` (get), :mod:`~civit.cli.projects` (lock, install),
:mod:`~civit.cli.local_files` (hash, identify, verify), :mod:`~civit.cli.mirror`
(mirror push), :mod:`~civit.cli.settings` (config), each imported only when one of
its commands runs. :mod:`~civit.cli.app` holds the root group, the options every
command shares and the list of commands; :mod:`~civit.cli.output` how results are shown.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

import click

from civit.cli.app import App, cli
from civit.cli.output import echo_json, prepare_console, say
from civit.errors import INTERRUPTED_EXIT_CODE, CivitError, Interrupted

__all__ = ["cli", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run ``civit`` and exit with its documented code.

    Every failure ends the same way: one ``civit: error: ...`` line on stderr (click's
    usage text for a bad command line), with ``--json`` also ``{"error": {"message",
    "exit_code", "hint"}}`` on stdout, and the documented exit code.
    """
    prepare_console()
    args = list(sys.argv[1:] if argv is None else argv)
    app = App()
    try:
        code = cli.main(args=args, prog_name="civit", standalone_mode=False, obj=app)
    except click.ClickException as exc:
        exc.show()
        _fail(app, args, exc.format_message(), exc.exit_code, _usage_hint(exc), shown=True)
    except CivitError as exc:
        _fail(app, args, exc.message, exc.exit_code, exc.hint, trace=True)
    except (KeyboardInterrupt, click.exceptions.Abort) as exc:
        # click turns Ctrl-C into Abort; the download's Interrupted is its cause.
        interrupt = exc.__cause__ if isinstance(exc, click.exceptions.Abort) else exc
        kept = interrupt.kept if isinstance(interrupt, Interrupted) else ()
        hint = _resume_hint(kept) if kept else None
        human = "civit: interrupted" + (f"; {hint}" if hint else "")
        _fail(app, args, "interrupted", INTERRUPTED_EXIT_CODE, hint, human=human)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        message = f"internal error: {type(exc).__name__}: {exc}"
        _fail(app, args, message, 1, "run again with --verbose", trace=True)
    sys.exit(code if isinstance(code, int) else 0)


def _resume_hint(kept: Sequence[tuple[str, int]]) -> str:
    """``run the same command again to resume (12.50 MiB kept in x.part)``."""
    from civit.fsutil import human_bytes

    parts = [f"{human_bytes(count)} kept in {path}" for path, count in kept]
    return f"run the same command again to resume ({'; '.join(parts)})"


def _usage_hint(error: click.ClickException) -> str | None:
    if isinstance(error, click.UsageError) and error.ctx is not None:
        return f"see `{error.ctx.command_path} --help`"
    return None


def _fail(
    app: App,
    args: Sequence[str],
    message: str,
    exit_code: int,
    hint: str | None,
    *,
    shown: bool = False,
    trace: bool = False,
    human: str | None = None,
) -> NoReturn:
    """Report a failure the one way every command does, and exit with ``exit_code``.

    ``shown``: the human line is already out (click's usage text); ``human``: say this
    line instead of ``civit: error: MESSAGE (HINT)``.
    """
    if trace and (app.verbose or _given(args, "-v", "--verbose")):
        traceback.print_exc()
    if not shown:
        say(human or (f"civit: error: {message}" + (f" ({hint})" if hint else "")))
    if app.json or _given(args, "--json"):
        echo_json({"error": {"message": message, "exit_code": exit_code, "hint": hint}})
    sys.exit(exit_code)


def _given(args: Sequence[str], *flags: str) -> bool:
    """Whether a flag is on the command line (before ``--``), for failures that happen
    before click has read it."""
    before_dashes = args[: args.index("--")] if "--" in args else args
    return any(flag in before_dashes for flag in flags)
