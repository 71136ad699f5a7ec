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

import click

from civit.cli.app import App, cli
from civit.cli.output import prepare_console, say
from civit.errors import CivitError

__all__ = ["cli", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run ``civit`` and exit with its documented code."""
    prepare_console()
    args = list(sys.argv[1:] if argv is None else argv)
    app = App()
    try:
        code = cli.main(args=args, prog_name="civit", standalone_mode=False, obj=app)
    except click.exceptions.Abort:
        say("civit: interrupted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CivitError as exc:
        if app.verbose or "-v" in args or "--verbose" in args:
            traceback.print_exc()
        say(f"civit: error: {exc}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        say("civit: interrupted; run the same command again to resume")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if app.verbose or "-v" in args or "--verbose" in args:
            traceback.print_exc()
        say(f"civit: internal error: {type(exc).__name__}: {exc} (run with --verbose)")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
