"""Running a case as a measured process (wall time, peak RSS, host steal); settling between
runs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchsuite.common import remove


@dataclass(frozen=True)
class Measured:
    """One finished child process: wall time, its own peak RSS, exit code, output."""

    seconds: float
    peak_rss: int
    returncode: int
    stdout: str
    stderr: str
    steal: float = 0.0

    def failure(self, what: str) -> str | None:
        """A one-line reason if the process failed, else ``None``."""
        if self.returncode == 0:
            return None
        tail = (self.stderr.strip() or self.stdout.strip()).splitlines()[-3:]
        return f"{what} exited {self.returncode}: " + " | ".join(tail)


# Linux carries a process's peak RSS across exec, so a child forked straight from this
# (large) process would report this process's peak as its own. The runner, a bare
# interpreter, forks the command from its own small image and times it from fork to
# wait4; the figure it reports is the command's, with a floor of about 10 MB.
RUNNER = """
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
with open(report, "w") as sink:
    json.dump({"seconds": seconds, "maxrss_kib": usage.ru_maxrss}, sink)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def steal_seconds() -> float:
    """CPU time the hypervisor gave to others so far, summed over this VM's CPUs."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    return 0.0


def run_measured(
    argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Measured:
    """Run ``argv`` to completion through the runner; return its time and peak RSS.

    Output goes to temporary files rather than pipes, so a chatty child never blocks
    and this process does no work while the child runs.
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(suffix=".json") as report,
    ):
        runner = [sys.executable, "-I", "-S", "-c", RUNNER, report.name, *argv]
        # A session of its own, so an interrupted bench can stop the whole tree.
        stolen_before = steal_seconds()
        process = subprocess.Popen(
            runner, stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True
        )
        try:
            returncode = process.wait()
            stolen = steal_seconds() - stolen_before
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        out.seek(0)
        err.seek(0)
        try:
            measured = json.loads(Path(report.name).read_text())
        except ValueError:  # the runner itself failed before the command ran
            measured = {"seconds": 0.0, "maxrss_kib": 0}
        return Measured(
            seconds=measured["seconds"],
            peak_rss=measured["maxrss_kib"] * 1024,
            returncode=returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            steal=stolen,
        )


def settle(*folders: Path, cooldown: float = 0.0) -> None:
    """Empty ``folders``, flush the disk, then wait ``cooldown`` seconds.

    The sync keeps one run's write-back out of the next run's time. The wait puts
    every run in the same memory state: on VMs with free page reporting (this one
    reports free 8 MiB blocks to the host after 2 s) memory freed a moment ago is
    several times cheaper to fill than memory freed earlier, so without it a case's
    time depends on how long the case before it took to free its output.
    """
    for folder in folders:
        remove(folder)
        folder.mkdir(parents=True)
    os.sync()
    time.sleep(cooldown)
