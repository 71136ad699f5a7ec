"""How the CLI talks to people: messages on stderr, JSON on stdout, tables.

Progress bars and lines live in :mod:`civit.cli.progress`.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import re
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import click

from civit.errors import CivitError

# What a terminal acts on instead of showing: C0 controls but tab and newline, DEL, C1
# controls (8-bit CSI, OSC...), and the bidi marks, embeddings, overrides and isolates
# that make text read differently from what it is. Names, tags and error texts come
# from the network (and file names from shared folders): none of them may move the
# cursor, retitle the window or reorder a line.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNPRINTABLE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
# Inside JSON strings ``json.dumps`` escapes C0 controls itself; these it leaves raw.
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f{_BIDI}]")


def printable(text: str) -> str:
    """``text`` safe for a terminal: each control character shown as ``?``, as ``ls`` does.

    Tab and newline stay (civit's own layout uses them).

    >>> printable("model\\x1b]0;pwned\\x07.safetensors")
    'model?]0;pwned?.safetensors'
    """
    return _UNPRINTABLE.sub("?", text)


def echo(text: str) -> None:
    """Human output on stdout (tables, model cards, verdicts), made :func:`printable`."""
    click.echo(printable(text))


def writes_unicode(stream: TextIO) -> bool:
    """Whether ``stream`` can encode every character (UTF-8/16/32)."""
    try:
        return codecs.lookup(getattr(stream, "encoding", None) or "ascii").name.startswith("utf")
    except LookupError:
        return False


def prepare_console() -> None:
    """Make stdout and stderr replace what their encoding cannot write, never crash.

    Windows writes pipes and files in the ANSI code page (cp1252 and the like), which
    has no Japanese and no emoji; printing a model name with those raised
    ``UnicodeEncodeError``. A stream that writes UTF-8 (terminals, UTF-8 mode,
    ``PYTHONIOENCODING=utf-8``) is left as it is; any other keeps its encoding and
    shows ``?`` for what it lacks. JSON stays lossless: :func:`echo_json` escapes.
    """
    for stream in (sys.stdout, sys.stderr):
        if stream is None or writes_unicode(stream):
            continue
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):  # a closed or odd stream
                reconfigure(errors="replace")


def echo_json(document: object) -> None:
    """Print one JSON document on stdout.

    The data stay exact: characters a terminal would act on are written as ``\\uXXXX``
    escapes, which every JSON reader turns back into the same string; so is every
    non-ASCII character when stdout cannot encode it (a cp1252 pipe on Windows).
    """
    click.echo(_json_text(document, ascii_only=not writes_unicode(sys.stdout)))


def _json_text(document: object, *, ascii_only: bool) -> str:
    text = json.dumps(document, indent=2, ensure_ascii=ascii_only)
    return _JSON_UNSAFE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def standard_stream(path: Path) -> TextIO | None:
    """``sys.stdout`` or ``sys.stderr`` when ``path`` is where that stream writes: ``-``,
    ``/dev/stdout``, ``/proc/self/fd/2``, or the very file stdout is redirected to.

    Such a path must be written through the stream: ``/dev/stdout`` is a link to
    ``/proc/self/fd/1``, which in ``civit ... > out.json`` names the regular file
    ``out.json``, and replacing it would replace ``/dev/stdout`` itself (as root, in a
    Docker build) or fail (anyone else), and opening it anew would lose ``>>``.
    """
    if str(path) == "-":
        return sys.stdout
    try:
        target = path.stat()
    except OSError:  # missing (the usual case) or unreadable
        return None
    for stream, descriptor in ((sys.stdout, 1), (sys.stderr, 2)):
        try:
            stream_target = os.fstat(descriptor)
        except OSError:  # closed
            continue
        if target.st_ino and os.path.samestat(target, stream_target):
            return stream
    return None


def write_report(path: Path, document: object) -> None:
    """Write a JSON document to the file ``path`` (UTF-8).

    A regular (or new) file is replaced atomically, so a reader never sees half a
    report; through a symbolic link, the file it points to is. Where stdout or stderr
    writes (``-``, ``/dev/stdout``: see :func:`standard_stream`) the document goes to
    that stream. Anything else — a FIFO, a terminal, ``/dev/fd/63`` — is written into as
    it is: replacing it would put a plain file where the device or pipe was.

    Raises:
        CivitError: the file cannot be written.
    """
    from civit.fsutil import atomic_write  # not needed by most commands: keep start-up lean

    stream = standard_stream(path)
    if stream is not None:
        stream.write(_json_text(document, ascii_only=not writes_unicode(stream)) + "\n")
        stream.flush()
        return
    text = _json_text(document, ascii_only=False) + "\n"
    try:
        special = not stat.S_ISREG(path.stat().st_mode)
    except OSError:  # missing (the usual case) or unreadable: the atomic write says why
        special = False
    if not special:
        atomic_write(path.resolve() if path.is_symlink() else path, text.encode("utf-8"))
        return
    try:
        with path.open("w", encoding="utf-8") as stream:
            stream.write(text)
    except OSError as exc:
        raise CivitError(f"cannot write {path}: {exc.strerror or exc}") from exc


def say(message: str) -> None:
    """A human message on stderr, made :func:`printable` (on a terminal or not)."""
    click.echo(printable(message), err=True)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; long cells are cut with an ellipsis."""
    limit = 48
    cells = [[c if len(c) <= limit else c[: limit - 1] + "…" for c in row] for row in rows]
    table = [list(header), *cells]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    return "\n".join(line.rstrip() for line in lines)


def count_files(count: int) -> str:
    """``1 file``, ``6 files``."""
    return f"{count} file" if count == 1 else f"{count} files"
