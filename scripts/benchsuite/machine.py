"""The tools the benchmark compares against (installed with apt where missing), and the
machine it ran on."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from benchsuite.common import APT_PACKAGES, first_line


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
