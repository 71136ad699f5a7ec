"""Constants and small helpers every part of the benchmark uses."""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
#: The entry point, which child processes run again (``bench.py _fetch ...``).
BENCH_SCRIPT = REPO / "scripts" / "bench.py"
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


class CaseError(Exception):
    """A run failed: wrong bytes, a non-zero exit, a missing output."""
