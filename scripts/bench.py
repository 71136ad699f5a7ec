#!/usr/bin/env python3
"""Measure civit against curl, sha256sum/b3sum and aria2c (DESIGN.md "Performance targets").

Usage: ``scripts/bench [--size 2G] [--runs 3] [--throttle 40m] [--keep] [--only GROUPS]``

Groups: download, throttled, hash, install, startup (``civit --version`` and a
``civit hash`` the hash cache answers, whole process, against ``python -c pass``),
mirror (``civit install --frozen`` of the file from an S3 server on loopback, s3rver
installed with npm, against the same install from nginx as an HTTP mirror).

Everything happens on this machine, in ``bench/work/``:

- missing tools (nginx, curl, aria2c, b3sum) are installed with apt where possible; a
  case whose tool is still missing is skipped with a note;
- a file of random bytes (2 GiB by default) is written once and its SHA256, BLAKE3 and
  CRC32 computed, which makes the record civit verifies against;
- nginx, started by this script on a free loopback port, serves it from ``/plain/`` and
  from ``/throttled/`` (``limit_rate`` per connection);
- every case runs ``--runs`` times, interleaved with the other cases of its group, into
  the same folder; between runs the output is removed, the disk synced, and a short
  cool-down puts every run in the same memory state (see :func:`settle`).

civit's download cases call :func:`civit.transfer.fetch` (the engine ``civit get`` runs
once the API has given a link) in a subprocess of its own, so its wall time includes
interpreter start-up and imports, as a user would see it, and its peak RSS is its own.
``civit get`` end to end, through :class:`civit.testing.FakeCivitai`, runs once per
round too, to show the API's share.

Prints a Markdown table and writes ``bench/results.json``. MB means 10^6 bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any, Literal

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20
MB = 1_000_000
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
ALGORITHMS = ("sha256", "blake3", "crc32")
# command → Debian package that provides it
APT_PACKAGES = {"nginx": "nginx", "curl": "curl", "aria2c": "aria2", "b3sum": "b3sum"}
GROUPS = ("download", "throttled", "hash", "install", "startup", "mirror")
# Start-up cases take tens of milliseconds: more runs make their median steady.
STARTUP_RUNS_PER_RUN = 5
INSTALL_FILES = 20
FAKE_TOKEN = "bench-token"
# A safety margin on top of the source file and one download of it.
SPACE_MARGIN = 256 * MiB

HASHLIB_SHA256 = """
import hashlib, sys
digest = hashlib.sha256()
view = memoryview(bytearray(1 << 20))
with open(sys.argv[1], "rb", buffering=0) as stream:
    while count := stream.readinto(view):
        digest.update(view[:count])
print(digest.hexdigest())
"""

HASH_FILE_FALLBACK = """
import sys
from civit.hashing import hash_file
print(hash_file(sys.argv[1], ("sha256", "blake3", "crc32")))
"""


# -- small helpers -----------------------------------------------------------------


def parse_size(text: str) -> int:
    """``"2G"`` → 2147483648 (binary units K, M, G, T; a trailing ``B``/``iB`` is allowed).

    Raises:
        argparse.ArgumentTypeError: not a size.
    """
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = cleaned[-1] if cleaned and cleaned[-1] in UNITS else ""
    try:
        size = int(float(cleaned.removesuffix(unit)) * UNITS[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 512M or 2G)") from None
    if size <= 0:
        raise argparse.ArgumentTypeError("the size must be positive")
    return size


def parse_rate(text: str) -> str:
    """Validate an nginx ``limit_rate`` value such as ``40m`` (bytes per second).

    Raises:
        argparse.ArgumentTypeError: not a rate nginx understands.
    """
    if not re.fullmatch(r"[1-9]\d*[kKmM]?", text.strip()):
        raise argparse.ArgumentTypeError(f"not a rate: {text!r} (try 40m or 20000k)")
    return text.strip().lower()


def rate_bytes(rate: str) -> int:
    """Bytes per second of an nginx rate (``k`` and ``m`` are binary there)."""
    unit = rate[-1] if rate[-1] in "km" else ""
    return int(rate.removesuffix(unit)) * {"": 1, "k": 1 << 10, "m": 1 << 20}[unit]


def human(count: float) -> str:
    """``2147483648`` → ``"2.0 GiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def first_line(argv: Sequence[str]) -> str | None:
    """First non-empty line a ``--version`` style command prints (stdout or stderr)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in (done.stdout + "\n" + done.stderr).splitlines():
        if line.strip():
            return line.strip()
    return None


def remove(path: Path) -> None:
    """Remove a file or a folder tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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


# -- tools and machine --------------------------------------------------------------


def ensure_tools(*, install: bool, log: Path) -> list[str]:
    """Install missing tools with apt where possible; return notes on what happened."""
    missing = [tool for tool in APT_PACKAGES if shutil.which(tool) is None]
    if not missing:
        return []
    if not install:
        return [f"not installed (--no-install): {', '.join(missing)}"]
    if shutil.which("apt-get") is None:
        return [f"no apt-get here; install {', '.join(missing)} to run every case"]
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n"]  # never wait for a password prompt
    else:
        return [f"not root and no sudo; install {', '.join(missing)} to run every case"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    notes = []
    with log.open("a") as sink:
        updated = subprocess.run(
            [*prefix, "apt-get", "update", "-qq"], stdout=sink, stderr=sink, env=env, check=False
        )
        if updated.returncode != 0:
            notes.append(f"apt-get update failed (see {log}); trying the old package lists")
        # One package at a time: a package this release lacks must not block the others.
        for tool in missing:
            package = APT_PACKAGES[tool]
            subprocess.run(
                [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
                stdout=sink,
                stderr=sink,
                env=env,
                check=False,
            )
            if shutil.which(tool) is None:
                notes.append(f"could not install {package} with apt (see {log})")
            else:
                notes.append(f"installed {package} with apt")
    return notes


def tool_versions(python: str) -> dict[str, str | None]:
    """Version lines of every tool the cases use (``None`` when absent)."""
    civit = Path(python).with_name("civit")
    commands = {
        "python": [python, "--version"],
        "civit": [str(civit), "--version"],
        "curl": ["curl", "--version"],
        "nginx": ["nginx", "-v"],
        "aria2c": ["aria2c", "--version"],
        "sha256sum": ["sha256sum", "--version"],
        "b3sum": ["b3sum", "--version"],
    }
    return {
        name: first_line(argv) if shutil.which(argv[0]) or Path(argv[0]).exists() else None
        for name, argv in commands.items()
    }


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _memory_bytes() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


def disk_info(folder: Path) -> dict[str, Any]:
    """``df`` of ``folder`` plus what sysfs says about the device under it."""
    usage = shutil.disk_usage(folder)
    info: dict[str, Any] = {"path": str(folder), "size": usage.total, "free": usage.free}
    df = subprocess.run(
        ["df", "--output=source,fstype", str(folder)], capture_output=True, text=True, check=False
    )
    lines = df.stdout.split("\n")
    if df.returncode == 0 and len(lines) > 1 and len(lines[1].split()) == 2:
        source, fstype = lines[1].split()
        info.update(device=source, fstype=fstype)
        block = Path("/sys/class/block") / Path(source).name
        if block.exists():
            disk = block.resolve()
            if (disk / "partition").exists():
                disk = disk.parent
            with contextlib.suppress(OSError):
                rotational = (disk / "queue" / "rotational").read_text().strip() == "1"
                info["rotational"] = rotational
            if disk.name.startswith("vd"):
                info["kind"] = "virtio virtual disk (rotational flag not meaningful)"
            elif disk.name.startswith("nvme"):
                info["kind"] = "NVMe"
            elif "rotational" in info:
                info["kind"] = "rotational" if info["rotational"] else "SSD"
    return info


def machine_info(work: Path, python: str) -> dict[str, Any]:
    """Cores, memory, disk and tool versions: the context every number depends on."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory": _memory_bytes(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "disk": disk_info(work),
        "tools": tool_versions(python),
    }


# -- the source file and its record -------------------------------------------------


def make_source(path: Path, size: int) -> dict[str, str]:
    """Write (or reuse) ``size`` random bytes at ``path``; return their digests.

    The digests are kept beside the file, so ``--keep`` makes the next run start at once.
    """
    sidecar = path.with_name(path.name + ".json")
    with contextlib.suppress(OSError, ValueError, KeyError):
        if path.stat().st_size == size:
            known = json.loads(sidecar.read_text())
            if known["size"] == size:
                return {name: str(known[name]) for name in ALGORITHMS}
    from civit.hashing import hash_file

    remove(sidecar)
    path.parent.mkdir(parents=True, exist_ok=True)
    block = 16 * MiB
    with path.open("wb") as stream:
        remaining = size
        while remaining:
            remaining -= stream.write(os.urandom(min(block, remaining)))
        stream.flush()
        # Write-back of the new file would otherwise steal a core from the first runs.
        os.fsync(stream.fileno())
    digests = hash_file(path, ALGORITHMS)
    sidecar.write_text(json.dumps({"size": size, **digests}))
    return digests


# -- nginx -------------------------------------------------------------------------


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /plain/ {{ alias {serve}/; }}
        location /throttled/ {{ alias {serve}/; limit_rate {throttle}; }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(serve: Path, work: Path, *, throttle: str) -> Iterator[str]:
    """Run nginx in the foreground on a free loopback port; yield its base URL.

    Raises:
        RuntimeError: nginx would not start (its error log is in the message).
    """
    work.mkdir(parents=True, exist_ok=True)
    (work / "tmp").mkdir(exist_ok=True)
    # As root, nginx's workers would switch to "nobody", who may not read the work tree.
    user = ""
    if os.geteuid() == 0:
        import grp
        import pwd

        user = f"user {pwd.getpwuid(0).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
    last_error = ""
    for _ in range(5):  # the free port may be taken between probing and binding
        port = free_port()
        conf = work / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(work=work, serve=serve, port=port, throttle=throttle, user=user)
        )
        log = (work / "stderr.log").open("w")
        process = subprocess.Popen(
            ["nginx", "-p", str(work), "-c", str(conf)], stdout=log, stderr=log
        )
        try:
            if _wait_listening(port, process):
                try:
                    yield f"http://127.0.0.1:{port}"
                finally:
                    _stop(process)
                return
            _stop(process)
        except BaseException:
            _stop(process)
            raise
        finally:
            log.close()
        last_error = " ".join(
            (work / name).read_text(errors="replace").strip()
            for name in ("stderr.log", "error.log")
            if (work / name).exists()
        )
    raise RuntimeError(f"nginx did not start: {last_error[-500:]}")


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # SIGTERM: nginx's fast shutdown
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- cases -------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One timed run of a case; ``steal`` is CPU time the host took meanwhile (noise)."""

    seconds: float
    peak_rss: int
    steal: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Case:
    """One thing to time, ``runs`` times; its ``execute`` returns a run or raises."""

    id: str
    group: str
    label: str
    execute: Callable[[], Run] | None = None
    payload: int | None = None  # bytes moved per run, for MB/s
    skipped: str | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(r.seconds for r in self.runs) if self.runs else None

    @property
    def peak_rss(self) -> int | None:
        return max(r.peak_rss for r in self.runs) if self.runs else None

    @property
    def throughput(self) -> float | None:
        median = self.median
        if self.payload is None or not median:
            return None
        return self.payload / median / MB

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "group": self.group,
            "runs": [round(r.seconds, 4) for r in self.runs],
            "steal_seconds": [round(r.steal, 3) for r in self.runs],
            "median": round(self.median, 4) if self.median is not None else None,
            "mb_per_s": round(self.throughput, 1) if self.throughput is not None else None,
            "peak_rss_mb": round(self.peak_rss / MB, 1) if self.peak_rss is not None else None,
            "details": [r.detail for r in self.runs if r.detail],
            "skipped": self.skipped,
            "error": self.error,
            "notes": self.notes,
        }


class CaseError(Exception):
    """A run failed: wrong bytes, a non-zero exit, a missing output."""


Kind = Literal["ratio_at_most", "speedup_at_least", "seconds_under", "rss_under_mb"]


@dataclass(frozen=True)
class Target:
    """A DESIGN.md target: ``case`` compared with ``against`` (or an absolute limit)."""

    case: str
    kind: Kind
    limit: float
    against: str | None = None

    def describe(self, label_of: Callable[[str], str]) -> str:
        if self.kind == "ratio_at_most":
            return f"≤ {self.limit:g}× {label_of(self.against or '')}"
        if self.kind == "speedup_at_least":
            return f"≥ {self.limit:g}× faster than {label_of(self.against or '')}"
        if self.kind == "seconds_under":
            return f"< {self.limit:g} s"
        return f"peak RSS < {self.limit:g} MB"


TARGETS = (
    Target("civit1", "ratio_at_most", 1.1, "curl"),
    Target("civit1", "speedup_at_least", 2.0, "shell"),
    Target("civit8_throttled", "ratio_at_most", 1.1, "aria2c"),
    Target("civit8_throttled", "speedup_at_least", 6.0, "civit1_throttled"),
    Target("civit_hash", "ratio_at_most", 1.15, "hashlib_sha256"),
    Target("install_frozen", "seconds_under", 0.5),
    Target("civit_version", "seconds_under", 0.10),
    Target("civit_hash_cached", "seconds_under", 0.15),
    Target("civit1", "rss_under_mb", 150),
    Target("civit8", "rss_under_mb", 150),
    Target("civit1_portable", "ratio_at_most", 1.3, "civit1"),
    Target("civit8_portable", "ratio_at_most", 1.3, "civit8"),
    Target("install_s3_mirror", "ratio_at_most", 1.2, "install_http_mirror"),
)
# The reference each group's untargeted rows are compared with.
GROUP_REFERENCE = {
    "download": "curl",
    "throttled": "aria2c",
    "hash": "hashlib_sha256",
    "startup": "python_startup",
    "mirror": "install_http_mirror",
}


@dataclass(frozen=True)
class Paths:
    """Where a bench run keeps its files (all under ``bench/work``)."""

    work: Path

    @property
    def serve(self) -> Path:
        return self.work / "serve"

    @property
    def source(self) -> Path:
        return self.serve / "source.bin"

    @property
    def out(self) -> Path:
        return self.work / "out"

    @property
    def output(self) -> Path:
        return self.out / "download.bin"

    @property
    def nginx(self) -> Path:
        return self.work / "nginx"

    @property
    def scratch(self) -> Path:
        return self.work / "scratch"


class Bench:
    """The cases of one invocation, with what they share: paths, record, URLs, env."""

    def __init__(
        self,
        paths: Paths,
        *,
        python: str,
        size: int,
        digests: dict[str, str],
        base: str,
        cooldown: float,
    ) -> None:
        self.paths = paths
        self.cooldown = cooldown
        self.python = python
        self.civit = str(Path(python).with_name("civit"))
        self.size = size
        self.digests = digests
        self.plain = f"{base}/plain/{paths.source.name}"
        self.throttled = f"{base}/throttled/{paths.source.name}"

    def civit_env(self, **extra: str) -> dict[str, str]:
        """The environment for civit processes: no user config, a private cache."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("CIVITAI_", "CIVIT_"))
        }
        env.update(
            CIVIT_CONFIG=str(self.paths.work / "no-config.toml"),
            CIVIT_CACHE_DIR=str(self.paths.scratch / "cache"),
        )
        env.update(extra)
        return env

    # -- checks --

    def check_output(self, path: Path) -> None:
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise CaseError(f"no output at {path}") from exc
        if size != self.size:
            raise CaseError(f"{path.name} has {size} bytes, expected {self.size}")

    def check_printed(self, text: str, *algorithms: str) -> None:
        for algorithm in algorithms:
            if self.digests[algorithm].lower() not in text.lower():
                raise CaseError(f"the {algorithm} printed does not match the record")

    # -- download cases --

    def curl(self, *, durable: bool = False) -> Run:
        settle(self.paths.out, cooldown=self.cooldown)
        argv = ["curl", "-s", "-S", "-f", "-o", str(self.paths.output), self.plain]
        done = run_measured(argv)
        if failure := done.failure("curl"):
            raise CaseError(failure)
        seconds, rss, steal = done.seconds, done.peak_rss, done.steal
        if durable:
            # coreutils sync FILE fsyncs just that file: the durability civit pays for.
            synced = run_measured(["sync", str(self.paths.output)])
            seconds += synced.seconds
            steal += synced.steal
        self.check_output(self.paths.output)
        return Run(seconds, rss, steal)

    def shell(self) -> Run:
        settle(self.paths.out, cooldown=self.cooldown)
        output = str(self.paths.output)
        steps = [
            ["curl", "-s", "-S", "-f", "-o", output, self.plain],
            ["sha256sum", output],
            ["b3sum", output],
        ]
        seconds = steal = 0.0
        rss = 0
        printed = ""
        for argv in steps:
            done = run_measured(argv)
            if failure := done.failure(argv[0]):
                raise CaseError(failure)
            seconds += done.seconds
            steal += done.steal
            rss = max(rss, done.peak_rss)
            printed += done.stdout
        self.check_printed(printed, "sha256", "blake3")
        return Run(seconds, rss, steal)

    def civit_fetch(self, url: str, connections: int, *, portable: bool = False) -> Run:
        """One ``fetch`` in its own process; ``portable`` removes the POSIX positional
        I/O calls first, so the engine runs as it does on Windows."""
        settle(self.paths.out, self.paths.scratch, cooldown=self.cooldown)
        argv = [
            self.python,
            str(Path(__file__).resolve()),
            "_fetch_portable" if portable else "_fetch",
            url,
            str(self.paths.output),
            str(self.size),
            str(connections),
            json.dumps(self.digests),
        ]
        done = run_measured(argv, env=self.civit_env())
        if failure := done.failure("civit fetch"):
            raise CaseError(failure)
        report = json.loads(done.stdout.strip().splitlines()[-1])
        if set(report["verified"]) != set(ALGORITHMS):
            raise CaseError(f"civit verified {report['verified']}, expected {ALGORITHMS}")
        if report["positional_io"] == portable:
            raise CaseError(f"the engine ran with positional_io={report['positional_io']}")
        self.check_output(self.paths.output)
        return Run(done.seconds, done.peak_rss, done.steal, {"fetch_seconds": report["seconds"]})

    def civit_get(self, api_url: str) -> Run:
        settle(self.paths.out, self.paths.scratch, cooldown=self.cooldown)
        argv = [
            self.civit, "get", "99999", "--dest", str(self.paths.out),
            "--connections", "1", "--json",
        ]  # fmt: skip
        env = self.civit_env(CIVITAI_BASE_URL=api_url, CIVITAI_API_TOKEN=FAKE_TOKEN)
        done = run_measured(argv, env=env)
        if failure := done.failure("civit get"):
            raise CaseError(failure)
        parsed = json.loads(done.stdout)
        document = parsed[0] if isinstance(parsed, list) else parsed
        if document.get("status") != "downloaded" or len(document.get("verified", ())) < 3:
            raise CaseError(f"civit get reported {document}")
        self.check_output(Path(document["path"]))
        return Run(
            done.seconds, done.peak_rss, done.steal, {"civit_seconds": document.get("seconds")}
        )

    def aria2c(self) -> Run:
        settle(self.paths.out, cooldown=self.cooldown)
        argv = [
            "aria2c", "-x8", "-s8", "-k1M", "--file-allocation=none", "-q",
            "--allow-overwrite=true", "--auto-file-renaming=false",
            "-d", str(self.paths.out), "-o", self.paths.output.name, self.throttled,
        ]  # fmt: skip
        done = run_measured(argv)
        if failure := done.failure("aria2c"):
            raise CaseError(failure)
        self.check_output(self.paths.output)
        return Run(done.seconds, done.peak_rss, done.steal)

    # -- hashing cases --

    def hash_command(
        self, argv: Sequence[str], *algorithms: str, env: dict[str, str] | None = None
    ) -> Run:
        done = run_measured(argv, env=env)
        if failure := done.failure(argv[0]):
            raise CaseError(failure)
        self.check_printed(done.stdout, *algorithms)
        return Run(done.seconds, done.peak_rss, done.steal)

    def civit_hash_argv(self) -> tuple[list[str], str | None]:
        """``civit hash`` if this civit has it, else ``hash_file`` in a subprocess."""
        help_run = subprocess.run(
            [self.civit, "hash", "--help"], capture_output=True, text=True, check=False
        )
        source = str(self.paths.source)
        if help_run.returncode == 0:
            flags = ["--no-cache"] if "--no-cache" in help_run.stdout else []
            return [self.civit, "hash", "--algo", ",".join(ALGORITHMS), *flags, source], None
        note = "civit hash is not available: timed civit.hashing.hash_file in a subprocess"
        return [self.python, "-c", HASH_FILE_FALLBACK, source], note

    # -- start-up cases --

    def startup_env(self) -> dict[str, str]:
        """A hash cache of its own, kept for the whole startup group."""
        return self.civit_env(CIVIT_CACHE_DIR=str(self.paths.work / "startup-cache"))

    def startup_command(self, argv: Sequence[str], expect: str) -> Run:
        done = run_measured(argv, env=self.startup_env())
        if failure := done.failure(argv[0]):
            raise CaseError(failure)
        if expect.lower() not in done.stdout.lower():
            raise CaseError(f"{' '.join(argv[1:])} did not print {expect!r}")
        return Run(done.seconds, done.peak_rss, done.steal)

    def civit_hash_cached_argv(self) -> list[str]:
        return [self.civit, "hash", "--algo", ",".join(ALGORITHMS), str(self.paths.source)]

    def prime_hash_cache(self) -> None:
        """Hash the source once, so the timed ``civit hash`` runs answer from the cache."""
        remove(self.paths.work / "startup-cache")
        done = run_measured(self.civit_hash_cached_argv(), env=self.startup_env())
        if failure := done.failure("civit hash (to fill the cache)"):
            raise CaseError(failure)

    def warm_source(self) -> None:
        """Read the source once so every hashing case starts from the page cache."""
        with self.paths.source.open("rb", buffering=0) as stream:
            view = memoryview(bytearray(4 * MiB))
            while stream.readinto(view):
                pass


# -- civit get and civit install, through FakeCivitai --------------------------------


@contextlib.contextmanager
def fake_for_source(source: Path, digests: dict[str, str]) -> Iterator[str]:
    """A FakeCivitai whose model 99999 serves the source file (zero-copy); yields its URL."""
    from civit.testing import Catalog, FakeCivitai, FakeFile, FakeModel, FakeVersion

    file = FakeFile(
        3999999, "bench.safetensors", path=source, primary=True,
        known_digests={name.lower(): value for name, value in digests.items()},
    )  # fmt: skip
    version = FakeVersion(99999, "v1", "SDXL 1.0", "2024-07-07T07:07:07.000Z", files=[file])
    model = FakeModel(99999, "Bench Model", "LORA", "bench", [version])
    with FakeCivitai(token=FAKE_TOKEN, catalog=Catalog([model])) as fake:
        yield fake.url


def install_case(bench: Bench, case: Case, runs: int) -> None:
    """``civit install --frozen`` with every file present: set up once, then time."""
    from civit.testing import Catalog, FakeCivitai, synthetic_models

    probe = subprocess.run([bench.civit, "install", "--help"], capture_output=True, check=False)
    if probe.returncode != 0:
        case.skipped = "civit install not available"
        return
    folder = bench.paths.work / "install"
    remove(folder)
    (folder / "ComfyUI").mkdir(parents=True)
    models = synthetic_models(INSTALL_FILES)
    lines = ['[settings]\nroot = "ComfyUI"\nlayout = "comfyui"\n']
    for model in models:
        lines.append(f'[[model]]\nref = "{model.id}@{model.versions[0].id}"\n')
    (folder / "civit.toml").write_text("\n".join(lines))
    with FakeCivitai(token=FAKE_TOKEN, catalog=Catalog(models)) as fake:
        env = bench.civit_env(CIVITAI_BASE_URL=fake.url, CIVITAI_API_TOKEN=FAKE_TOKEN)
        first = run_measured([bench.civit, "install", "-f", "civit.toml"], env=env, cwd=folder)
        if failure := first.failure("civit install (first, to download and lock)"):
            case.error = failure
            return
        present = [p for p in (folder / "ComfyUI").rglob("*") if p.is_file()]
        if len(present) != INSTALL_FILES:
            case.error = f"the first install left {len(present)} files, not {INSTALL_FILES}"
            return
        case.notes.append(f"first install (downloads + lock): {first.seconds:.2f} s")
        fake.clear_log()
        for _ in range(runs):
            done = run_measured(
                [bench.civit, "install", "-f", "civit.toml", "--frozen"], env=env, cwd=folder
            )
            if failure := done.failure("civit install --frozen"):
                case.error = failure
                return
            case.runs.append(Run(done.seconds, done.peak_rss, done.steal))
        api_calls = len(fake.requests)
        downloads = len(fake.cdn_requests())
        case.notes.append(f"frozen runs made {api_calls} API requests, {downloads} downloads")
        if downloads:
            case.error = f"a no-op install downloaded {downloads} times"


# -- civit install from mirrors: S3 (s3rver) vs HTTP (nginx) -------------------------

S3RVER_PACKAGE = "s3rver@3.7.1"
S3RVER_KEY = "S3RVER"  # s3rver's fixed access key id and secret
MIRROR_BUCKET = "bench"


def ensure_s3rver(folder: Path, *, install: bool, log: Path) -> Path:
    """s3rver's start script, installed with npm into ``folder`` if missing.

    Raises:
        CaseError: no node/npm, or the install failed.
    """
    script = folder / "node_modules" / "s3rver" / "bin" / "s3rver.js"
    if script.exists():
        return script
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise CaseError("node and npm are needed for the S3 server (s3rver)")
    if not install:
        raise CaseError("s3rver is not installed (--no-install)")
    folder.mkdir(parents=True, exist_ok=True)
    with log.open("a") as sink:
        subprocess.run(
            ["npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund", S3RVER_PACKAGE],
            stdout=sink, stderr=sink, check=False,
        )  # fmt: skip
    if not script.exists():
        raise CaseError(f"npm could not install {S3RVER_PACKAGE} (see {log})")
    return script


@contextlib.contextmanager
def s3rver(script: Path, data: Path) -> Iterator[str]:
    """s3rver (a Node S3 server that checks signatures) on a free loopback port."""
    remove(data)
    data.mkdir(parents=True)
    port = free_port()
    process = subprocess.Popen(
        ["node", str(script), "-d", str(data), "-a", "127.0.0.1", "-p", str(port), "--silent",
         "--configure-bucket", MIRROR_BUCKET],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        if not _wait_listening(port, process):
            raise CaseError("s3rver did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)
        remove(data)


class MirrorCases:
    """One locked file installed with ``--mirror``: from nginx (``/plain/{sha256}``, a
    hardlink to the source) or from s3rver (pushed there once by ``civit mirror push``).

    Both run the whole ``civit install --frozen`` process into the same folder; the
    report must say the bytes came from the mirror.
    """

    def __init__(self, bench: Bench, api_url: str) -> None:
        self.bench = bench
        self.api_url = api_url
        self.folder = bench.paths.work / "mirror-project"
        self.link = bench.paths.serve / bench.digests["sha256"].lower()
        self.s3_url: str | None = None
        self.problem: str | None = None

    def aws_env(self) -> dict[str, str]:
        assert self.s3_url is not None
        missing = str(self.bench.paths.work / "no-aws-file")
        return {
            "AWS_ACCESS_KEY_ID": S3RVER_KEY, "AWS_SECRET_ACCESS_KEY": S3RVER_KEY,
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.s3_url,
            "AWS_CONFIG_FILE": missing, "AWS_SHARED_CREDENTIALS_FILE": missing,
            "AWS_EC2_METADATA_DISABLED": "true",
        }  # fmt: skip

    def prepare(self, s3_url: str) -> list[str]:
        """Lock the file through FakeCivitai, link it for nginx, push it to the bucket."""
        self.s3_url = s3_url
        remove(self.folder)
        self.folder.mkdir(parents=True)
        out = self.bench.paths.out
        (self.folder / "civit.toml").write_text(
            f'[settings]\ndest = "{out.as_posix()}"\n\n[[model]]\nref = "99999"\n'
        )
        env = self.bench.civit_env(CIVITAI_BASE_URL=self.api_url, CIVITAI_API_TOKEN=FAKE_TOKEN)
        locked = run_measured([self.bench.civit, "lock", "-f", "civit.toml"], env=env,
                              cwd=self.folder)  # fmt: skip
        if failure := locked.failure("civit lock"):
            raise CaseError(failure)
        remove(self.link)
        os.link(self.bench.paths.source, self.link)
        pushed = run_measured(
            [self.bench.civit, "mirror", "push", f"s3://{MIRROR_BUCKET}/mirror",
             str(self.bench.paths.source), "--json"],
            env=self.bench.civit_env(**self.aws_env()),
        )  # fmt: skip
        if failure := pushed.failure("civit mirror push"):
            raise CaseError(failure)
        megabytes = self.bench.size / MB
        return [f"setup: civit mirror push of the file to s3rver took {pushed.seconds:.2f} s "
                f"({megabytes / pushed.seconds:.0f} MB/s)"]  # fmt: skip

    def curl_s3(self) -> Run:
        """curl of a presigned URL: how fast s3rver itself serves the file."""
        if self.problem is not None or self.s3_url is None:
            raise CaseError(self.problem or "s3rver is not running")
        import boto3

        presigned = boto3.client(
            "s3", endpoint_url=self.s3_url, region_name="us-east-1",
            aws_access_key_id=S3RVER_KEY, aws_secret_access_key=S3RVER_KEY,
        ).generate_presigned_url(
            "get_object", ExpiresIn=3600,
            Params={"Bucket": MIRROR_BUCKET, "Key": f"mirror/{self.link.name}"},
        )  # fmt: skip
        settle(self.bench.paths.out, cooldown=self.bench.cooldown)
        output = str(self.bench.paths.output)
        done = run_measured(["curl", "-s", "-S", "-f", "-o", output, presigned])
        if failure := done.failure("curl"):
            raise CaseError(failure)
        self.bench.check_output(self.bench.paths.output)
        return Run(done.seconds, done.peak_rss, done.steal)

    def install(self, kind: Literal["http", "s3"]) -> Run:
        if self.problem is not None:
            raise CaseError(self.problem)
        settle(self.bench.paths.out, self.bench.paths.scratch, cooldown=self.bench.cooldown)
        if kind == "http":
            mirror = self.bench.plain.rsplit("/", 1)[0] + "/{sha256}"
            env = self.bench.civit_env()
        else:
            mirror = f"s3://{MIRROR_BUCKET}/mirror"
            env = self.bench.civit_env(**self.aws_env())
        # A fallback to Civitai would hit the fake; the report must say "mirror".
        env.update(CIVITAI_BASE_URL=self.api_url, CIVITAI_API_TOKEN=FAKE_TOKEN)
        report = self.bench.paths.scratch / "report.json"
        argv = [self.bench.civit, "install", "-f", "civit.toml", "--frozen", "--mirror", mirror,
                "--report", str(report)]  # fmt: skip
        done = run_measured(argv, env=env, cwd=self.folder)
        if failure := done.failure(f"civit install --mirror ({kind})"):
            raise CaseError(failure)
        entry = json.loads(report.read_text())["entries"][0]
        if entry.get("source") != "mirror":
            raise CaseError(f"installed from {entry.get('source')}: {entry.get('mirror_error')}")
        self.bench.check_output(Path(entry["path"]))
        return Run(done.seconds, done.peak_rss, done.steal, {"civit_seconds": entry["seconds"]})


def run_mirror_group(
    bench: Bench, mirrors: MirrorCases, members: list[Case], runs: int, *, install: bool,
    say: Callable[[str], None],
) -> None:  # fmt: skip
    """Start s3rver, push the file, then run the mirror cases round-robin."""
    work = bench.paths.work
    try:
        script = ensure_s3rver(work / "s3rver", install=install, log=work / "npm.log")
    except CaseError as exc:
        mirrors.problem = str(exc)
        for case in members:
            if case.id in ("install_s3_mirror", "curl_s3_mirror"):
                case.skipped = str(exc)
        run_group(members, runs, say)
        return
    with s3rver(script, work / "s3rver-data") as url:
        try:
            notes = mirrors.prepare(url)
        except CaseError as exc:
            mirrors.problem = str(exc)
            notes = []
        for case in members:
            case.notes.extend(notes if case.id == "install_s3_mirror" else [])
        run_group(members, runs, say)


# -- the fetch driver (runs in its own process) ---------------------------------------


def fetch_driver(argv: Sequence[str]) -> int:
    """``bench.py _fetch URL TARGET SIZE CONNECTIONS DIGESTS_JSON``: one civit fetch.

    Prints one JSON line: seconds inside ``fetch``, the digests verified, peak RSS.
    """
    import resource

    from civit.partfile import positional_io_available
    from civit.records import Hashes
    from civit.transfer import fetch

    url, target, size, connections, digests = argv
    expected = Hashes(**{name: value for name, value in json.loads(digests).items()})
    started = time.perf_counter()
    fetched = fetch(
        lambda: url,
        Path(target),
        expected=expected,
        file_key="bench:source",
        size_hint=int(size),
        connections=int(connections),
        verify=True,
    )
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    report = {
        "seconds": seconds,
        "verified": list(fetched.verified),
        "bytes": fetched.transferred,
        "rss": peak,
        "positional_io": positional_io_available(),
    }
    print(json.dumps(report))
    return 0


# -- reporting -----------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the table: a case, optionally judged against one target."""

    case: Case
    against: str | None
    ratio: float | None
    target: str
    passed: bool | None

    def as_json(self) -> dict[str, Any]:
        return {
            "case": self.case.id,
            "label": self.case.label,
            "seconds": round(self.case.median, 4) if self.case.median is not None else None,
            "mb_per_s": round(self.case.throughput, 1) if self.case.throughput else None,
            "peak_rss_mb": round(self.case.peak_rss / MB, 1) if self.case.peak_rss else None,
            "against": self.against,
            "ratio": round(self.ratio, 3) if self.ratio is not None else None,
            "target": self.target,
            "pass": self.passed,
        }


def judge(target: Target, cases: dict[str, Case]) -> tuple[float | None, bool | None]:
    """The ratio (case / reference time) and whether ``target`` holds, if measurable."""
    case = cases[target.case]
    median = case.median
    if target.kind == "rss_under_mb":
        rss = case.peak_rss
        return None, (rss / MB < target.limit) if rss is not None else None
    if median is None:
        return None, None
    if target.kind == "seconds_under":
        return None, median < target.limit
    reference = cases.get(target.against or "")
    if reference is None or not reference.median:
        return None, None
    ratio = median / reference.median
    if target.kind == "ratio_at_most":
        return ratio, ratio <= target.limit
    return ratio, ratio <= 1 / target.limit


def build_rows(cases: dict[str, Case]) -> list[Row]:
    """Every case once (compared with its group's reference), plus one row per target."""

    def label_of(case_id: str) -> str:
        return cases[case_id].label if case_id in cases else case_id

    rows = []
    for case in cases.values():
        targets = [t for t in TARGETS if t.case == case.id]
        if not targets:
            reference = GROUP_REFERENCE.get(case.group)
            ratio = None
            ref_case = cases.get(reference or "")
            if ref_case is not None and ref_case is not case and case.median and ref_case.median:
                ratio = case.median / ref_case.median
            note = "reference" if reference == case.id else ""
            rows.append(Row(case, reference if ratio is not None else None, ratio, note, None))
        for target in targets:
            ratio, passed = judge(target, cases)
            rows.append(Row(case, target.against, ratio, target.describe(label_of), passed))
    return rows


def render_table(rows: Sequence[Row]) -> str:
    """The Markdown table of ``rows``."""
    header = ("case", "seconds (median)", "MB/s", "peak RSS", "ratio", "target", "result")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        case = row.case
        if case.skipped or case.error:
            status = f"skipped: {case.skipped}" if case.skipped else f"error: {case.error}"
            cells = [case.label, "—", "—", "—", "—", row.target, status.replace("|", "/")]
        else:
            median = case.median
            spread = ""
            if len(case.runs) > 1:
                low = min(r.seconds for r in case.runs)
                high = max(r.seconds for r in case.runs)
                spread = f" ({low:.2f}–{high:.2f})"
            ratio = ""
            if row.ratio is not None:
                ratio = f"{row.ratio:.2f}× {row.against}"
            result = {True: "pass", False: "**FAIL**", None: ""}[row.passed]
            cells = [
                case.label,
                f"{median:.3f}{spread}" if median is not None else "—",
                f"{case.throughput:.0f}" if case.throughput else "",
                f"{case.peak_rss / MB:.0f} MB" if case.peak_rss else "",
                ratio,
                row.target,
                result,
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- orchestration ---------------------------------------------------------------------


def select(cases: list[Case], only: str | None) -> list[Case]:
    """The cases named by ``--only`` (group names or case ids); all without it.

    Raises:
        SystemExit: an unknown name.
    """
    if not only:
        return cases
    wanted = {name.strip() for name in only.split(",") if name.strip()}
    known = {c.id for c in cases} | set(GROUPS)
    unknown = wanted - known
    if unknown:
        raise SystemExit(f"bench: unknown case or group {sorted(unknown)}; known: {sorted(known)}")
    return [c for c in cases if c.id in wanted or c.group in wanted]


def define_cases(bench: Bench, api_url: str, throttle: str, mirrors: MirrorCases) -> list[Case]:
    """Every case, in table order; a missing tool turns its case into a skip."""
    size = bench.size
    need = {
        "curl": "curl", "curl_sync": "curl", "shell": "b3sum", "aria2c": "aria2c",
        "curl_http_mirror": "curl", "curl_s3_mirror": "curl",
        "sha256sum": "sha256sum", "b3sum": "b3sum",
    }  # fmt: skip
    civit_hash, hash_note = bench.civit_hash_argv()
    source = str(bench.paths.source)
    hashlib_argv = [bench.python, "-c", HASHLIB_SHA256, source]
    per_connection = f"{throttle}/connection"
    cases = [
        Case("curl", "download", "curl -o", bench.curl, size),
        Case("curl_sync", "download", "curl -o, then sync FILE",
             lambda: bench.curl(durable=True), size),
        Case("shell", "download", "curl, then sha256sum, then b3sum", bench.shell, size),
        Case("civit1", "download", "civit 1 connection, SHA256+BLAKE3+CRC32",
             lambda: bench.civit_fetch(bench.plain, 1), size),
        Case("civit8", "download", "civit 8 connections, SHA256+BLAKE3+CRC32",
             lambda: bench.civit_fetch(bench.plain, 8), size),
        Case("civit1_portable", "download",
             "civit 1 connection, portable I/O (no pwrite/preadv/fadvise, as on Windows)",
             lambda: bench.civit_fetch(bench.plain, 1, portable=True), size),
        Case("civit8_portable", "download", "civit 8 connections, portable I/O",
             lambda: bench.civit_fetch(bench.plain, 8, portable=True), size),
        Case("civit_get", "download", "civit get (CLI + FakeCivitai API), 1 connection",
             lambda: bench.civit_get(api_url), size),
        Case("aria2c", "throttled", f"aria2c -x8 -s8, {per_connection}", bench.aria2c, size),
        Case("civit1_throttled", "throttled", f"civit 1 connection, {per_connection}",
             lambda: bench.civit_fetch(bench.throttled, 1), size),
        Case("civit8_throttled", "throttled", f"civit 8 connections, {per_connection}",
             lambda: bench.civit_fetch(bench.throttled, 8), size),
        Case("hashlib_sha256", "hash", "hashlib SHA256 alone",
             lambda: bench.hash_command(hashlib_argv, "sha256"), size),
        Case("civit_hash", "hash", "civit hash SHA256+BLAKE3+CRC32",
             lambda: bench.hash_command(civit_hash, "sha256", env=bench.civit_env()), size),
        Case("sha256sum", "hash", "sha256sum",
             lambda: bench.hash_command(["sha256sum", source], "sha256"), size),
        Case("b3sum", "hash", "b3sum",
             lambda: bench.hash_command(["b3sum", source], "blake3"), size),
        Case("install_frozen", "install", f"civit install --frozen, {INSTALL_FILES} files present"),
        Case("python_startup", "startup", "python -c \"print('ok')\"",
             lambda: bench.startup_command([bench.python, "-c", "print('ok')"], "ok")),
        Case("civit_version", "startup", "civit --version",
             lambda: bench.startup_command([bench.civit, "--version"], "civit, version")),
        Case("civit_hash_cached", "startup", "civit hash SHA256+BLAKE3+CRC32, from the cache",
             lambda: bench.startup_command(bench.civit_hash_cached_argv(),
                                           bench.digests["blake3"])),
        Case("curl_http_mirror", "mirror", "curl -o from nginx (server speed)", bench.curl, size),
        Case("curl_s3_mirror", "mirror", "curl -o of a presigned URL from s3rver (server speed)",
             mirrors.curl_s3, size),
        Case("install_http_mirror", "mirror", "civit install --frozen, HTTP mirror (nginx)",
             lambda: mirrors.install("http"), size),
        Case("install_s3_mirror", "mirror", "civit install --frozen, S3 mirror (s3rver)",
             lambda: mirrors.install("s3"), size),
    ]  # fmt: skip
    for case in cases:
        tool = need.get(case.id)
        if tool and shutil.which(tool) is None:
            case.skipped = f"{tool} not available"
        if case.id == "civit_hash" and hash_note:
            case.notes.append(hash_note)
        if case.id == "civit1_throttled":
            seconds = size / rate_bytes(throttle)
            case.notes.append(f"expected ≈ {seconds:.1f} s at {throttle}/s on one connection")
    return cases


def run_group(cases: Sequence[Case], runs: int, say: Callable[[str], None]) -> None:
    """Run the cases round-robin ``runs`` times, so slow drift hits every case alike."""
    for round_number in range(1, runs + 1):
        for case in cases:
            if case.execute is None or case.skipped or case.error:
                continue
            try:
                run = case.execute()
            except (CaseError, OSError, ValueError, LookupError, TypeError) as exc:
                case.error = f"{type(exc).__name__}: {exc}"
                say(f"  {case.id}: error: {case.error}")
                continue
            case.runs.append(run)
            say(f"  run {round_number}/{runs} {case.id}: {run.seconds:.3f} s, "
                f"{run.peak_rss / MB:.0f} MB RSS, {run.steal:.2f} s host steal")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table; write the results file.

    Returns:
        0 when every selected case ran (targets may still fail), 1 when a case errored.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["_fetch"]:
        return fetch_driver(arguments[1:])
    if arguments[:1] == ["_fetch_portable"]:
        for name in ("pwrite", "pwritev", "pread", "preadv", "posix_fadvise", "posix_fallocate"):
            if hasattr(os, name):
                delattr(os, name)  # what Windows' os module lacks: forces the portable path
        return fetch_driver(arguments[1:])
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=parse_size, default=2 << 30, help="file size (2G)")
    parser.add_argument("--runs", type=int, default=3, help="runs per case (3)")
    parser.add_argument("--throttle", type=parse_rate, default="40m",
                        help="nginx limit_rate per connection on /throttled/ (40m)")  # fmt: skip
    parser.add_argument("--keep", action="store_true",
                        help="keep the source file (and its digests) for the next run")  # fmt: skip
    groups = ", ".join(GROUPS)
    parser.add_argument("--only", metavar="CASES",
                        help=f"comma-separated groups ({groups}) or case ids")  # fmt: skip
    parser.add_argument(
        "--cooldown", type=float, default=3.0, metavar="SECONDS",
        help="wait before each download run, after removing the last output (3)",
    )  # fmt: skip
    parser.add_argument("--no-install", action="store_true", help="never call apt-get")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work",
                        help="work folder (bench/work)")  # fmt: skip
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results.json",
                        help="where to write the results (bench/results.json)")  # fmt: skip
    args = parser.parse_args(arguments)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through every cleanup below

    signal.signal(signal.SIGTERM, terminate)
    paths = Paths(args.work.resolve())
    paths.work.mkdir(parents=True, exist_ok=True)
    try:
        return _bench(args, paths, say)
    finally:
        remove(paths.out)
        remove(paths.scratch)
        remove(paths.nginx)
        remove(paths.work / "install")
        remove(paths.work / "startup-cache")
        remove(paths.work / "mirror-project")
        remove(paths.work / "s3rver-data")
        for link in paths.serve.glob("[0-9a-f]" * 8 + "*"):  # the HTTP mirror's hardlink
            remove(link)
        if not args.keep:
            remove(paths.serve)
            with contextlib.suppress(OSError):
                paths.work.rmdir()  # only if nothing else (say the apt log) is left


def _bench(args: argparse.Namespace, paths: Paths, say: Callable[[str], None]) -> int:
    python = sys.executable
    notes = ensure_tools(install=not args.no_install, log=paths.work / "apt.log")
    for note in notes:
        say(f"bench: {note}")
    needed = args.size + SPACE_MARGIN
    if not (paths.source.exists() and paths.source.stat().st_size == args.size):
        needed += args.size
    free = shutil.disk_usage(paths.work).free
    if free < needed:
        say(f"bench: {human(needed)} needed in {paths.work}, {human(free)} free")
        return 1
    if shutil.which("nginx") is None:
        say("bench: nginx is not available, so there is nothing to download from")
    say(f"bench: preparing {human(args.size)} of random bytes in {paths.source}")
    started = time.perf_counter()
    digests = make_source(paths.source, args.size)
    say(f"bench: source ready in {time.perf_counter() - started:.1f} s")
    settle(paths.out, paths.scratch)
    machine = machine_info(paths.work, python)

    with contextlib.ExitStack() as stack:
        base = "http://127.0.0.1:9"  # unused when nginx is missing: those cases skip
        if shutil.which("nginx"):
            base = stack.enter_context(nginx(paths.serve, paths.nginx, throttle=args.throttle))
        api_url = stack.enter_context(fake_for_source(paths.source, digests))
        bench = Bench(
            paths, python=python, size=args.size, digests=digests, base=base,
            cooldown=args.cooldown,
        )  # fmt: skip
        mirrors = MirrorCases(bench, api_url)
        cases = select(define_cases(bench, api_url, args.throttle, mirrors), args.only)
        if shutil.which("nginx") is None:
            for case in cases:
                if (
                    case.group in ("download", "throttled") and case.id != "civit_get"
                ) or case.id in ("install_http_mirror", "curl_http_mirror"):
                    case.skipped = case.skipped or "nginx not available"
        for group in GROUPS:
            members = [c for c in cases if c.group == group]
            if not members:
                continue
            say(f"bench: {group}")
            if group == "hash":
                bench.warm_source()
            if group == "install":
                install_case(bench, members[0], args.runs)
            elif group == "mirror":
                run_mirror_group(
                    bench, mirrors, members, args.runs, install=not args.no_install, say=say
                )
            elif group == "startup":
                try:
                    bench.prime_hash_cache()
                except CaseError as exc:
                    for case in members:
                        case.error = case.error or str(exc)
                run_group(members, args.runs * STARTUP_RUNS_PER_RUN, say)
            else:
                run_group(members, args.runs, say)
            settle(paths.out, paths.scratch)

    by_id = {case.id: case for case in cases}
    rows = build_rows(by_id)
    table = render_table(rows)
    disk = machine["disk"]
    memory = machine["memory"] or 0
    summary = (
        f"{machine['cpu']}, {machine['usable_cores']} cores, {human(memory)} RAM; "
        f"disk {disk.get('device')} ({disk.get('fstype')}, {disk.get('kind', 'unknown kind')}); "
        f"Python {platform.python_version()}; {human(args.size)} file, {args.runs} runs, "
        f"{args.cooldown:g} s cool-down before each download; median seconds (min–max)"
    )
    judged = [row.passed for row in rows if row.passed is not None]
    print(f"\n{summary}\n\n{table}\n")
    print(f"{sum(judged)} of {len(judged)} targets met.")
    for case in cases:
        for note in case.notes:
            print(f"- {case.label}: {note}")
    document = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": ["scripts/bench", *sys.argv[1:]],
        "settings": {
            "size": args.size,
            "runs": args.runs,
            "throttle": args.throttle,
            "cooldown": args.cooldown,
        },
        "machine": {**machine, "python": platform.python_version()},
        "setup_notes": notes,
        "cases": {case.id: case.as_json() for case in cases},
        "rows": [row.as_json() for row in rows],
        "targets_met": sum(judged),
        "targets_judged": len(judged),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(document, indent=2) + "\n")
    say(f"bench: wrote {args.results}")
    return 1 if any(case.error for case in cases) else 0


if __name__ == "__main__":
    sys.exit(main())
