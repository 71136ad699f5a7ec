"""Progress on stderr: tqdm bars on a terminal, a line every few seconds off one.

One :class:`Progress` per command. :meth:`Progress.track` hands the library a
``progress(done, total)`` callback for one job (a file, an install, a hashing run):

- on a terminal it draws a tqdm bar (tqdm is imported only then);
- off a terminal (CI logs, ``docker build``, ``| tee``) it prints a line per job every
  ``CIVIT_PROGRESS_INTERVAL`` seconds (default 5) with bytes, percent, rate and ETA, so
  a long download shows movement in a log instead of minutes of silence;
- with ``--quiet`` it does nothing (``--json`` keeps it: stderr is not the document).

:meth:`Progress.message` prints a line that belongs with the progress (a waiting
notice, a finished file) above the bars on a terminal, as a plain line elsewhere.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from civit.cli.output import echo, printable, say
from civit.fsutil import human_bytes

if TYPE_CHECKING:
    from civit.hashing import ProgressCallback

__all__ = ["INTERVAL_VARIABLE", "Progress", "format_line"]

#: Seconds between progress lines off a terminal.
INTERVAL_VARIABLE = "CIVIT_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 5.0
_NAME_WIDTH = 40


def _interval() -> float:
    try:
        return max(float(os.environ.get(INTERVAL_VARIABLE, "")), 0.0)
    except ValueError:
        return DEFAULT_INTERVAL


def _short(name: str) -> str:
    return printable(name if len(name) <= _NAME_WIDTH else name[: _NAME_WIDTH - 1] + "…")


def _duration(seconds: float) -> str:
    """``45s``, ``2m05s``, ``1h02m``."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def format_line(name: str, done: int, total: int | None, rate: float) -> str:
    """One progress line for logs.

    >>> format_line("model.safetensors", 3 << 30, 6 << 30, 50 << 20)
    'model.safetensors: 3.00 GiB of 6.00 GiB (50%), 50.00 MiB/s, ETA 1m01s'
    """
    line = f"{_short(name)}: {human_bytes(done)}"
    if total:
        line += f" of {human_bytes(total)} ({min(done * 100 // total, 100)}%)"
    line += f", {human_bytes(rate)}/s"
    if total and rate > 0 and done < total:
        line += f", ETA {_duration((total - done) / rate)}"
    return line


class Progress:
    """Progress of one command's jobs on stderr (see the module docstring).

    Callbacks it hands out may be called from worker threads.
    """

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.terminal = not quiet and sys.stderr.isatty()
        self.interval = _interval()
        self.lock = threading.RLock()
        self._bars: list[Any] = []

    def track(self, name: str, *, delay: float = 0.0, leave: bool = True) -> ProgressCallback:
        """A ``progress(done, total)`` callback for one job called ``name``.

        Args:
            name: what the bar or line is labelled with (a file name, ``install``).
            delay: on a terminal, draw the bar only once the job has run this long
                (so quick jobs never draw one).
            leave: keep the finished bar on screen.
        """
        if self.quiet:
            return _ignore
        if self.terminal:
            return _Bar(self, name, delay=delay, leave=leave)
        return _Lines(self, name)

    def message(self, text: str) -> None:
        """A line on stderr that does not tear the bars."""
        with self.lock:
            if self._bars:
                from tqdm import tqdm

                tqdm.write(printable(text), file=sys.stderr)
            else:
                say(text)

    def result(self, text: str) -> None:
        """A result line on stdout (``civit hash`` rows) that does not tear the bars."""
        with self.lock:
            if self._bars:
                from tqdm import tqdm

                tqdm.write(printable(text), file=sys.stdout)
            else:
                echo(text)

    def close(self) -> None:
        """Close the bars still open (an interrupted or failed job's)."""
        with self.lock:
            for bar in self._bars:
                bar.close()
            self._bars.clear()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open_bar(self, **settings: Any) -> Any:
        from tqdm import tqdm  # only on a terminal: it costs start-up time

        bar = tqdm(
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            dynamic_ncols=True,
            **settings,
        )
        self._bars.append(bar)
        return bar

    def _close_bar(self, bar: Any) -> None:
        bar.close()
        if bar in self._bars:
            self._bars.remove(bar)


def _ignore(done: int, total: int | None) -> None:
    """The callback of a quiet :class:`Progress`."""


class _Bar:
    """A tqdm bar, opened after ``delay`` seconds and closed when the job completes."""

    def __init__(self, progress: Progress, name: str, *, delay: float, leave: bool) -> None:
        self.progress = progress
        self.name = name
        self.leave = leave
        self.show_after = time.monotonic() + delay
        self.bar: Any = None
        self.finished = False

    def __call__(self, done: int, total: int | None) -> None:
        with self.progress.lock:
            if self.finished:
                return
            if self.bar is None:
                if time.monotonic() < self.show_after:
                    return
                self.bar = self.progress._open_bar(
                    total=total, initial=done, desc=_short(self.name), leave=self.leave
                )
            if total is not None and self.bar.total != total:
                self.bar.total = total
            self.bar.update(done - self.bar.n)
            if total is not None and done >= total:
                self.finished = True
                self.progress._close_bar(self.bar)


class _Lines:
    """A line every ``interval`` seconds, measuring the rate from the first call (so a
    resumed download's kept bytes do not inflate it)."""

    def __init__(self, progress: Progress, name: str) -> None:
        self.progress = progress
        self.name = name
        self.started = time.monotonic()
        self.last_line = self.started
        self.first_done: int | None = None
        self.lock = threading.Lock()

    def __call__(self, done: int, total: int | None) -> None:
        with self.lock:
            now = time.monotonic()
            if self.first_done is None:
                self.first_done = done
            if now - self.last_line < self.progress.interval or (total and done >= total):
                return
            self.last_line = now
            rate = (done - self.first_done) / max(now - self.started, 1e-6)
        self.progress.message(format_line(self.name, done, total, rate))
