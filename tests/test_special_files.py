"""Issues 13.11 and 13.12: planted FIFOs and devices, deeply nested TOML and unwritable
folders end in a clear per-file error and the documented exit code — never a hang,
an endless read or "internal error".
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import civit
from civit.testing import FakeCivitai

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
needs_non_root = pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root writes anywhere"
)
DEEP = 200_000


def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "real.safetensors").write_bytes(b"real model bytes")
    os.mkfifo(folder / "planted.safetensors")
    return folder


@needs_fifo
@pytest.mark.timeout(20)
@pytest.mark.parametrize("command", ["hash", "verify", "identify"])
def test_a_fifo_named_like_a_model_is_refused_not_waited_for(
    civit_cli, tmp_path: Path, command: str
) -> None:
    folder = model_folder(tmp_path)
    run = civit_cli(command, folder)
    assert run.code == 1
    assert "planted.safetensors: it is a FIFO (named pipe), not a regular file" in run.err
    assert "real.safetensors" in run.out + run.err


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
@pytest.mark.timeout(20)
def test_a_device_linked_as_a_model_is_refused(civit_cli, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "endless.safetensors").symlink_to("/dev/zero")
    run = civit_cli("hash", folder)
    assert run.code == 1
    assert "endless.safetensors: it is a device, not a regular file" in run.err


@needs_fifo
@pytest.mark.timeout(30)
def test_a_fifo_at_a_locked_destination_does_not_hang_install(
    civit_cli, fake: FakeCivitai, tmp_path: Path
) -> None:
    manifest = civit.write_manifest(
        tmp_path / "civit.toml", ["328553", "23906"], settings={"dest": "models"}
    )
    assert civit_cli("install", "-f", manifest.path).code == 0  # the lock learns sizes
    lora = tmp_path / "models" / "add-detail-xl.safetensors"
    vae = tmp_path / "models" / "kl-f8-anime2.safetensors"
    lora.unlink()
    os.mkfifo(lora)
    vae.unlink()
    os.mkfifo(vae)
    # The second lock entry forgets its exact size: the other path through the check.
    text = manifest.lock_path.read_text()
    head, _, tail = text.rpartition("[[file]]")
    manifest.lock_path.write_text(
        head + "[[file]]" + "\n".join(x for x in tail.split("\n") if not x.startswith("size ="))
    )
    run = civit_cli("install", "-f", manifest.path, "--frozen")
    assert run.code == 1
    assert run.err.count("it is a FIFO (named pipe), not a regular file") == 2


@needs_fifo
@pytest.mark.timeout(20)
@pytest.mark.parametrize("planted", ["civit.toml", "civit.lock"])
def test_a_fifo_as_manifest_or_lock_is_an_error(civit_cli, tmp_path: Path, planted: str) -> None:
    civit.write_manifest(tmp_path / "civit.toml", ["328553"], settings={"dest": "models"})
    (tmp_path / planted).unlink(missing_ok=True)
    os.mkfifo(tmp_path / planted)
    run = civit_cli("install", "-f", tmp_path / "civit.toml", "--frozen")
    assert run.code == 2
    assert f"{planted}: it is a FIFO (named pipe), not a regular file" in run.err


def test_deeply_nested_toml_is_a_manifest_error(civit_cli, tmp_path: Path) -> None:
    manifest = tmp_path / "civit.toml"
    manifest.write_text("[settings]\nroot = " + "[" * DEEP + "]" * DEEP + "\n")
    run = civit_cli("lock", "-f", manifest)
    assert run.code == 2
    assert "nest too deeply" in run.err


def test_a_toml_date_where_a_string_belongs_is_a_manifest_error(civit_cli, tmp_path: Path) -> None:
    manifest = tmp_path / "civit.toml"
    manifest.write_text('[settings]\ndest = "m"\n\n[[model]]\nref = 1979-05-27T07:32:00Z\n')
    run = civit_cli("lock", "-f", manifest)
    assert run.code == 2
    assert "ref is required" in run.err


def test_a_deeply_nested_lock_is_damaged(civit_cli, tmp_path: Path) -> None:
    manifest = civit.write_manifest(tmp_path / "civit.toml", ["328553"], settings={"dest": "m"})
    manifest.lock_path.write_text(
        'version = 1\nmanifest_hash = "x"\nfile = ' + "[" * DEEP + "]" * DEEP + "\n"
    )
    run = civit_cli("install", "-f", manifest.path, "--frozen")
    assert run.code == 2
    assert "civit.lock is damaged: arrays or tables nest too deeply" in run.err


def test_a_deeply_nested_config_file_is_a_usage_error(civit_cli, isolated_user_dirs) -> None:
    (isolated_user_dirs / "config.toml").write_text("root = " + "[" * DEEP + "]" * DEEP)
    run = civit_cli("config", "show")
    assert run.code == 2
    assert "nests too deeply" in run.err


def test_a_destination_that_cannot_be_created_is_a_clear_error(civit_cli, tmp_path: Path) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder")
    run = civit_cli("get", "328553", "--dest", in_the_way / "models")
    assert run.code == 1
    assert f"cannot create folder {in_the_way / 'models'}" in run.err
    assert "internal error" not in run.err


def test_a_report_that_cannot_be_written_is_a_clear_error(
    civit_cli, fake: FakeCivitai, tmp_path: Path
) -> None:
    manifest = civit.write_manifest(tmp_path / "civit.toml", ["328553"], settings={"dest": "m"})
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder")
    run = civit_cli("install", "-f", manifest.path, "--report", in_the_way / "report.json")
    assert run.code == 1
    assert "cannot write" in run.err and "internal error" not in run.err


@needs_non_root
def test_an_unwritable_dest_or_lock_folder_is_a_clear_error(
    civit_cli, fake: FakeCivitai, tmp_path: Path
) -> None:
    locked_up = tmp_path / "readonly"
    locked_up.mkdir()
    manifest = civit.write_manifest(locked_up / "civit.toml", ["328553"], settings={"dest": "m"})
    locked_up.chmod(0o555)
    try:
        got = civit_cli("get", "328553", "--dest", locked_up / "models")
        locked = civit_cli("lock", "-f", manifest.path)
    finally:
        locked_up.chmod(0o755)
    assert got.code == 1 and "cannot create folder" in got.err
    assert locked.code == 1 and f"cannot write {manifest.lock_path}" in locked.err
