"""The options every command shares work before and after the command name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import civit
from civit.cli import main
from civit.testing import FakeCivitai


def test_base_url_after_the_command(civit_cli, fake: FakeCivitai, monkeypatch) -> None:
    monkeypatch.setenv("CIVITAI_BASE_URL", "http://127.0.0.1:9")  # unreachable: must be overridden
    run = civit_cli("info", "827184", "--base-url", fake.url)
    assert run.code == 0, run.err
    assert "WAI-illustrious-SDXL" in run.out


def test_token_after_the_command(
    civit_cli, fake: FakeCivitai, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CIVITAI_API_TOKEN")
    assert civit_cli("get", "328553", "--dest", tmp_path).code == 3
    run = civit_cli("get", "328553", "--dest", tmp_path, "--token", fake.token)
    assert run.code == 0, run.err
    assert (tmp_path / "add-detail-xl.safetensors").is_file()


@pytest.mark.parametrize("where", ["before", "after"])
def test_json_and_quiet_on_either_side(civit_cli, tmp_path: Path, where: str) -> None:
    shared = ["--json", "-q"]
    command = ["get", "328553", "--dest", str(tmp_path)]
    run = civit_cli(*(shared + command if where == "before" else command + shared))
    assert run.code == 0, run.err
    json.loads(run.out)
    assert run.err == ""


def test_the_last_token_given_wins(civit_cli, fake: FakeCivitai, tmp_path: Path) -> None:
    run = civit_cli("--token", "wrong", "get", "328553", "--dest", tmp_path, "--token", fake.token)
    assert run.code == 0, run.err


def test_verbose_after_the_command_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CIVITAI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CIVIT_RETRIES", "1")
    for args, traceback in ((["info", "827184"], False), (["info", "827184", "-v"], True)):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 5
        assert ("Traceback" in capsys.readouterr().err) is traceback


def test_quiet_lock_says_only_what_it_wrote(civit_cli, tmp_path: Path) -> None:
    manifest = civit.write_manifest(tmp_path / "civit.toml", ["328553"], settings={"dest": "m"})
    run = civit_cli("lock", "-f", manifest.path, "-q")
    assert run.code == 0, run.err
    assert run.err == f"wrote {manifest.lock_path} (1 file)\n"
