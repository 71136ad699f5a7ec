"""Files civit writes honour the umask; reports go where they are told, never replacing
a device or a pipe."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import civit
import civit.testing
from civit.fsutil import atomic_write

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes and FIFOs")


@pytest.fixture
def umask() -> Iterator[None]:
    """A known umask for the test (the process's is whatever the shell had)."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def project(tmp_path: Path) -> Path:
    manifest = civit.write_manifest(tmp_path / "civit.toml", ["328553"], settings={"dest": "m"})
    return manifest.path


@pytest.mark.usefixtures("umask")
def test_atomic_write_follows_the_umask(tmp_path: Path) -> None:
    atomic_write(tmp_path / "a.txt", b"x")
    assert mode(tmp_path / "a.txt") == 0o644
    os.umask(0o027)
    atomic_write(tmp_path / "a.txt", b"y")
    assert mode(tmp_path / "a.txt") == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temporary left


@pytest.mark.usefixtures("umask")
def test_everything_get_lock_and_install_write_is_0644(civit_cli, tmp_path: Path) -> None:
    got = civit_cli("get", "328553", "--dest", tmp_path / "get", "--info")
    assert got.code == 0, got.err
    manifest = project(tmp_path)
    report = tmp_path / "report.json"
    installed = civit_cli("install", "-f", manifest, "--report", report)
    assert installed.code == 0, installed.err
    written = [
        tmp_path / "get" / "add-detail-xl.safetensors",
        tmp_path / "get" / "add-detail-xl.civitai.info",
        tmp_path / "get" / "add-detail-xl.preview.png",
        tmp_path / "civit.lock",
        tmp_path / "m" / "add-detail-xl.safetensors",
        report,
    ]
    assert {path.name: oct(mode(path)) for path in written} == {
        path.name: "0o644" for path in written
    }


@pytest.mark.usefixtures("umask")
def test_what_freeze_mirror_push_and_cards_write_is_0644(civit_cli, tmp_path: Path) -> None:
    webui = tmp_path / "webui"
    (webui / "models" / "Stable-diffusion").mkdir(parents=True)
    (webui / "webui.py").write_text("")
    got = civit_cli("get", "328553", "--root", webui, "--info")  # A1111: a .json card too
    assert got.code == 0, got.err
    lora = webui / "models" / "Lora" / "add-detail-xl.safetensors"
    frozen = civit_cli("freeze", webui, "-f", tmp_path / "frozen.toml")
    assert frozen.code == 0, frozen.err
    pushed = civit_cli("mirror", "push", tmp_path / "mirror", lora)
    assert pushed.code == 0, pushed.err
    written = [
        lora.with_suffix(".json"),
        tmp_path / "frozen.toml",
        tmp_path / "frozen.lock",
        *(tmp_path / "mirror").iterdir(),
    ]
    assert len(written) == 4
    assert {path.name: oct(mode(path)) for path in written} == {
        path.name: "0o644" for path in written
    }


def test_report_dash_is_stdout(civit_cli, tmp_path: Path) -> None:
    manifest = project(tmp_path)
    run = civit_cli("install", "-f", manifest, "--report", "-")
    assert run.code == 0, run.err
    assert json.loads(run.out)["summary"]["installed"] == 1
    assert not (Path.cwd() / "-").exists() and not (tmp_path / "-").exists()


def test_report_into_a_fifo_writes_through_it(civit_cli, tmp_path: Path) -> None:
    manifest = project(tmp_path)
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    run = civit_cli("install", "-f", manifest, "--report", fifo)
    reader.join(timeout=10)
    assert run.code == 0, run.err
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still the pipe, not a plain file
    assert json.loads(received[0])["summary"]["installed"] == 1


def test_report_into_an_impossible_place_is_one_clear_error(civit_cli, tmp_path: Path) -> None:
    manifest = project(tmp_path)
    (tmp_path / "a-file").write_text("")
    run = civit_cli("install", "-f", manifest, "--report", tmp_path / "a-file" / "report.json")
    assert run.code == 1
    assert "cannot write" in run.err and "a-file" in run.err


def run_civit(fake: civit.testing.FakeCivitai, *args: str | Path, **streams: object) -> int:
    """``python -m civit ARGS`` in a process of its own (its stdout and stderr are files)."""
    env = {**os.environ, "CIVITAI_BASE_URL": fake.url, "CIVITAI_API_TOKEN": fake.token}
    command = [sys.executable, "-m", "civit", *map(str, args)]
    return subprocess.run(command, env=env, check=False, timeout=60, **streams).returncode  # type: ignore[call-overload, no-any-return]


# /dev/fd/N is the spelling that stays safe if this regresses: a plain file cannot be
# created beside it (under /proc), whereas replacing /dev/stdout works as root.
@pytest.mark.skipif(not Path("/dev/fd/1").exists(), reason="no /dev/fd")
def test_report_to_stdout_redirected_into_a_file_appends_to_it(
    fake: civit.testing.FakeCivitai, tmp_path: Path
) -> None:
    manifest = project(tmp_path)
    log = tmp_path / "log.txt"
    log.write_text("earlier output\n")
    with log.open("a") as stdout:
        code = run_civit(fake, "install", "-f", manifest, "--report", "/dev/fd/1", stdout=stdout)
    assert code == 0
    before, document = log.read_text().split("\n", 1)
    assert before == "earlier output"  # >> kept: written through the stream, not reopened
    assert json.loads(document)["summary"]["installed"] == 1
    with log.open("w") as stdout:  # with --json too: one document, not two
        run_civit(fake, "install", "-f", manifest, "--report", "/dev/fd/1", "--json", stdout=stdout)
    assert json.loads(log.read_text())["summary"]["present"] == 1


@pytest.mark.skipif(not Path("/dev/fd/2").exists(), reason="no /dev/fd")
def test_report_to_stderr_redirected_into_a_file(
    fake: civit.testing.FakeCivitai, tmp_path: Path
) -> None:
    manifest = project(tmp_path)
    log = tmp_path / "err.txt"
    with log.open("w") as stderr:
        assert (
            run_civit(fake, "install", "-f", manifest, "--report", "/dev/fd/2", stderr=stderr) == 0
        )
    assert '"installed": 1' in log.read_text() and "1 installed" in log.read_text()


@pytest.mark.usefixtures("umask")
def test_a_report_through_a_symlink_replaces_the_file_it_points_to(
    civit_cli, tmp_path: Path
) -> None:
    manifest = project(tmp_path)
    real = tmp_path / "reports" / "install.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "report.json"
    link.symlink_to(real)
    run = civit_cli("install", "-f", manifest, "--report", link)
    assert run.code == 0, run.err
    assert link.is_symlink() and json.loads(real.read_text())["summary"]["installed"] == 1
