#!/usr/bin/env python3
"""Time ``hash_file`` (SHA256 + BLAKE3 + CRC32) against hashlib SHA256 alone.

Usage: ``.venv/bin/python scripts/hash_speed.py [--size 2G] [--file PATH] [--runs 3]``

Without ``--file`` a file of random bytes is written to a temporary folder and deleted
afterwards. The file is read once before timing, so both sides hash from the page cache.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from civit.hashing import DEFAULT_BLOCK_SIZE, hash_file

UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    """``"2G"`` → 2147483648 (binary units K, M, G; a trailing ``B``/``iB`` is allowed)."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1] if text and text[-1] in UNITS else ""
    return int(float(text.removesuffix(unit)) * UNITS[unit])


def write_random_file(path: Path, size: int) -> None:
    """Fill ``path`` with ``size`` incompressible bytes (one random block, repeated)."""
    block = os.urandom(DEFAULT_BLOCK_SIZE)
    with path.open("wb") as stream:
        remaining = size
        while remaining:
            remaining -= stream.write(block[: min(len(block), remaining)])
        # Write-back of dirty pages would otherwise steal a core from the timed runs.
        stream.flush()
        os.fsync(stream.fileno())


def sha256_alone(path: Path) -> str:
    """The baseline: hashlib SHA256, reading into one reused buffer."""
    digest = hashlib.sha256()
    view = memoryview(bytearray(DEFAULT_BLOCK_SIZE))
    with path.open("rb", buffering=0) as stream:
        while count := stream.readinto(view):
            digest.update(view[:count])
    return digest.hexdigest().upper()


def civit_three(path: Path) -> str:
    """What ``civit hash --algo sha256,blake3,crc32 --no-cache`` computes."""
    return hash_file(path, ("sha256", "blake3", "crc32"))["sha256"]


def machine_cpu_seconds() -> float:
    """CPU time the whole machine has been busy (Linux ``/proc/stat``; 0 elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def timed(function: Callable[[Path], str], path: Path) -> tuple[float, float, str]:
    """Wall time of one call, CPU seconds other processes used meanwhile (parallel
    hashing slows down when they take the other core), and the SHA256 returned."""
    machine, own = machine_cpu_seconds(), time.process_time()
    started = time.perf_counter()
    result = function(path)
    wall = time.perf_counter() - started
    others = machine_cpu_seconds() - machine - (time.process_time() - own)
    return wall, max(others, 0.0), result


def main() -> None:
    """Parse arguments, prepare the file, print the timings and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G", help="size of the generated file (1G)")
    parser.add_argument("--file", type=Path, help="hash this file instead of a generated one")
    parser.add_argument("--runs", type=int, default=3, help="runs per case (3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="civit-hash-speed-") as folder:
        path = args.file
        if path is None:
            path = Path(folder) / "random.bin"
            write_random_file(path, parse_size(args.size))
        size = path.stat().st_size
        sha256_alone(path)  # warm the page cache
        # Alternate the cases so both meet the same background load.
        runs: list[tuple[float, float, float]] = []
        for _ in range(args.runs):
            baseline_seconds, _, expected = timed(sha256_alone, path)
            combined_seconds, others, actual = timed(civit_three, path)
            runs.append((baseline_seconds, combined_seconds, others))
    baseline = statistics.median(run[0] for run in runs)
    combined = statistics.median(run[1] for run in runs)
    if actual != expected:
        raise SystemExit(f"SHA256 differs: hashlib {expected}, civit {actual}")
    gib = size / (1 << 30)
    print(f"file: {gib:.2f} GiB, {os.cpu_count()} CPUs, median of {args.runs} runs")
    print(f"hashlib sha256 alone:         {baseline:6.2f} s  ({gib / baseline:.2f} GiB/s)")
    print(f"hash_file sha256+blake3+crc32:{combined:6.2f} s  ({gib / combined:.2f} GiB/s)")
    print(f"ratio: {combined / baseline:.3f} (target <= 1.15)")
    print("each run: ratio (CPU seconds other processes used during hash_file)")
    print("  " + "  ".join(f"{c / b:.2f} ({others:.1f})" for b, c, others in runs))


if __name__ == "__main__":
    main()
