"""Progress a CI log can read, honest install totals, and Ctrl-C that says how to resume."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import civit
from civit.cli.progress import format_line
from civit.fsutil import human_bytes
from civit.partfile import PartState
from civit.testing import FakeCivitai

LORA = 3000001  # 200,000 bytes
EMBEDDING = 3000002
LINE = re.compile(r"^add-detail-xl\.safetensors: .+ of .+ \(\d+%\), .+/s(, ETA \S+)?$", re.M)


def test_off_a_terminal_progress_is_a_line_every_few_seconds(
    civit_cli, fake: FakeCivitai, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CIVIT_PROGRESS_INTERVAL", "0.2")
    fake.set_faults(LORA, throttle=200_000)  # about a second
    run = civit_cli("get", "328553", "--dest", tmp_path)
    assert run.code == 0, run.err
    lines = LINE.findall(run.err)
    assert len(lines) >= 2, run.err
    assert "\r" not in run.err  # no bar redrawing in a log
    assert len(lines) <= 20


def test_quiet_silences_progress(
    civit_cli, fake: FakeCivitai, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CIVIT_PROGRESS_INTERVAL", "0")
    fake.set_faults(LORA, throttle=400_000)
    run = civit_cli("get", "328553", "--dest", tmp_path, "-q")
    assert run.code == 0 and run.err == ""


def test_a_progress_line_has_bytes_percent_rate_and_eta() -> None:
    line = format_line("x.safetensors", 512 << 20, 2 << 30, 8 << 20)
    assert line == "x.safetensors: 512.00 MiB of 2.00 GiB (25%), 8.00 MiB/s, ETA 3m12s"
    assert format_line("x", 10, None, 0.0) == "x: 10 B, 0 B/s"


def test_install_progress_counts_only_bytes_that_arrived(fake: FakeCivitai, tmp_path: Path) -> None:
    manifest = civit.write_manifest(
        tmp_path / "civit.toml", ["328553", "7808"], settings={"dest": "models"}
    )
    client = civit.Client(base_url=fake.url, token=fake.token)
    civit.lock(manifest, client=client)
    fake.set_faults(EMBEDDING, html=True)  # fails before a byte of it arrives
    seen: list[tuple[int, int | None]] = []
    report = civit.install(
        manifest, frozen=True, client=client, progress=lambda *call: seen.append(call)
    )
    client.close()
    assert [entry.status for entry in report.results] == ["installed", "failed"]
    assert seen[-1] == (fake.file(LORA).length, fake.file(LORA).length)


# -- Ctrl-C ------------------------------------------------------------------------


def civit_process(fake: FakeCivitai, *args: str | Path) -> subprocess.Popen[str]:
    env = {**os.environ, "CIVITAI_BASE_URL": fake.url, "CIVITAI_API_TOKEN": fake.token}
    return subprocess.Popen(
        [sys.executable, "-m", "civit", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_kept_bytes(state: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and process.poll() is None:
        loaded = PartState.load(state)
        if loaded is not None and loaded.bytes_present > 0:
            return
        time.sleep(0.05)
    raise AssertionError("the download never saved any progress")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_exits_130_and_says_how_much_is_kept(fake: FakeCivitai, tmp_path: Path) -> None:
    fake.set_faults(LORA, throttle=40_000)  # five seconds for the whole file
    target = tmp_path / "add-detail-xl.safetensors"
    state = target.with_name(target.name + ".part.json")
    process = civit_process(fake, "get", "328553", "--dest", tmp_path)
    wait_for_kept_bytes(state, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=15)
    assert process.returncode == 130, err
    kept = PartState.load(state)
    assert kept is not None
    expected = (
        "civit: interrupted; run the same command again to resume "
        f"({human_bytes(kept.bytes_present)} kept in {target}.part)"
    )
    assert expected in err
    assert "Traceback" not in err and not target.exists()
    fake.reset_faults()
    resumed = civit_process(fake, "get", "328553", "--dest", tmp_path, "--json")
    out, err = resumed.communicate(timeout=30)
    assert resumed.returncode == 0, err
    assert '"resumed_bytes": 0' not in out
    assert target.read_bytes() == fake.file(LORA).content


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_during_install_reports_json_and_the_kept_part(
    fake: FakeCivitai, tmp_path: Path
) -> None:
    manifest = civit.write_manifest(tmp_path / "civit.toml", ["328553"], settings={"dest": "m"})
    fake.set_faults(LORA, throttle=40_000)
    process = civit_process(fake, "install", "-f", manifest.path, "--json")
    target = tmp_path / "m" / "add-detail-xl.safetensors"
    wait_for_kept_bytes(target.with_name(target.name + ".part.json"), process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=15)
    assert process.returncode == 130, err
    assert f"kept in {target}.part)" in err
    assert '"exit_code": 130' in out and '"message": "interrupted"' in out
