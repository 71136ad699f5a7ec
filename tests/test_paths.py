"""Paths as Windows (and every other) user writes them: ``~``, variables, slashes, TOML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import civit
from civit.config import load_settings, set_variable_hint, toml_error_hint
from civit.downloader import long_path_warning
from civit.errors import ManifestError, UsageError
from civit.manifest import load_manifest
from civit.paths import WINDOWS_PATH_HINT, expand_path, path_setting


def test_expand_path_knows_cmd_and_shell_variables_and_the_home_folder() -> None:
    environ = {"USERPROFILE": "/users/me", "HOME": "/home/me", "Models": "/m"}
    assert expand_path("%USERPROFILE%/ComfyUI", environ=environ) == Path("/users/me/ComfyUI")
    assert expand_path("$HOME/x", environ=environ) == Path("/home/me/x")
    assert expand_path("${HOME}/x", environ=environ) == Path("/home/me/x")
    assert expand_path("%MODELS%/loras", environ=environ) == Path("/m/loras")  # any case
    assert expand_path("~", environ=environ) == Path("/home/me")
    assert expand_path("~/models", environ=environ) == Path("/home/me/models")
    assert expand_path("~/models", environ={"USERPROFILE": "/users/me"}) == Path("/users/me/models")
    # Unknown variables stay as written, like every shell does.
    assert expand_path("%NOPE%/$NOPE", environ=environ) == Path("%NOPE%/$NOPE")
    assert expand_path("a~b", environ=environ) == Path("a~b")


def test_path_settings_take_backslashes_and_reject_toml_escapes() -> None:
    assert path_setting(r"ComfyUI\models\loras", environ={}) == Path("ComfyUI/models/loras")
    assert path_setting(r"%HOME%\x", environ={"HOME": "/h"}) == Path("/h/x")
    # root = "C:\temp" in TOML reads as "C:<tab>emp".
    with pytest.raises(UsageError, match="control character") as error:
        path_setting("C:\temp")
    assert error.value.hint == WINDOWS_PATH_HINT


def test_settings_expand_paths_from_file_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("root = '~/ComfyUI'\nstore = '%STORE_DISK%\\store'\n", encoding="utf-8")
    environ = {"HOME": str(tmp_path), "STORE_DISK": "/disk"}
    settings = load_settings(environ=environ, path=config)
    assert settings.root == tmp_path / "ComfyUI"
    assert settings.store == Path("/disk/store")
    from_env = load_settings(environ={**environ, "CIVIT_ROOT": "$HOME/webui"}, path=config)
    assert from_env.root == tmp_path / "webui"


@pytest.mark.parametrize(
    "line",
    [
        'root = "C:\\Users\\me\\ComfyUI"',  # \U starts an escape: "Invalid hex value"
        'root = "D:\\AI\\ComfyUI"',  # \A is no escape at all: "Unescaped '\'"
    ],
)
def test_toml_backslash_errors_say_use_single_quotes(tmp_path: Path, line: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(UsageError) as error:
        load_settings(environ={}, path=config)
    assert "use single quotes for Windows paths: root = 'C:\\Users\\me\\ComfyUI'" in str(
        error.value
    )
    manifest = tmp_path / "civit.toml"
    manifest.write_text(f"[settings]\n{line}\n", encoding="utf-8")
    with pytest.raises(ManifestError) as manifest_error:
        load_manifest(manifest)
    assert manifest_error.value.hint == WINDOWS_PATH_HINT
    assert manifest_error.value.exit_code == 2


def test_other_toml_errors_get_no_windows_hint(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("root = \n", encoding="utf-8")
    with pytest.raises(UsageError) as error:
        load_settings(environ={}, path=config)
    assert error.value.hint is None
    assert toml_error_hint(ValueError("Expected '=' after a key")) is None


def test_a_tab_from_a_double_quoted_manifest_path_is_named(tmp_path: Path) -> None:
    manifest = tmp_path / "civit.toml"
    manifest.write_text('[settings]\nroot = "C:\\temp"\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"civit.toml:1: \[settings\]: root: ") as error:
        load_manifest(manifest)
    assert error.value.hint == WINDOWS_PATH_HINT


def test_manifest_paths_expand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WEBUI", str(tmp_path / "webui"))
    manifest = civit.write_manifest(
        tmp_path / "civit.toml",
        [{"ref": "328553", "dest": r"models\loras"}],
        settings={"root": "%WEBUI%", "store": "~/store"},
    )
    assert manifest.settings.root == tmp_path / "webui"
    assert manifest.settings.store == tmp_path / "home" / "store"
    assert manifest.entries[0].dest == tmp_path / "webui" / "models" / "loras"


def test_get_expands_tilde_and_variables_in_path_flags(
    civit_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "profile"))
    monkeypatch.chdir(tmp_path)
    run = civit_cli("get", "328553", "--dest", "~/loras")
    assert run.code == 0, run.err
    assert (tmp_path / "loras" / "add-detail-xl.safetensors").is_file()
    assert not (tmp_path / "~").exists()
    run = civit_cli("get", "7808", "--dest", "%USERPROFILE%/embeddings")
    assert run.code == 0, run.err
    assert (tmp_path / "profile" / "embeddings" / "easynegative.safetensors").is_file()


def test_manifest_flag_expands_too(
    civit_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    civit.write_manifest(tmp_path / "civit.toml", ["328553"], settings={"dest": "loras"})
    run = civit_cli("install", "-f", "~/civit.toml", "--report", "$HOME/report.json")
    assert run.code == 0, run.err
    assert (tmp_path / "loras" / "add-detail-xl.safetensors").is_file()
    assert (tmp_path / "report.json").is_file()


def test_image_paths_and_the_mirror_folder_expand_too(
    civit_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "profile"))
    monkeypatch.chdir(tmp_path)
    loader = {"type": "CivitAI_Lora_Loader", "widgets_values": ["328553@368189"]}
    (tmp_path / "workflow.json").write_text(json.dumps({"nodes": [loader]}), encoding="utf-8")
    run = civit_cli("get", "--from", "~/workflow.json", "--dest", "~/loras")
    assert run.code == 0, run.err
    model = tmp_path / "loras" / "add-detail-xl.safetensors"
    assert model.is_file()
    run = civit_cli("mirror", "push", "%USERPROFILE%/mirror", "~/loras")
    assert run.code == 0, run.err
    assert len(list((tmp_path / "profile" / "mirror").iterdir())) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loras", "profile", "workflow.json"]


def test_hash_keeps_a_local_file_named_like_a_variable(
    civit_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))
    Path("$HOME").write_bytes(b"x")  # exists as typed: taken literally
    run = civit_cli("hash", "$HOME")
    assert run.code == 0, run.err
    assert "$HOME" in run.out


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        (
            "win32",
            '`set CIVITAI_API_TOKEN=...` (cmd) or `$env:CIVITAI_API_TOKEN="..."` (PowerShell)',
        ),
        ("linux", "`export CIVITAI_API_TOKEN=...`"),
        ("darwin", "`export CIVITAI_API_TOKEN=...`"),
    ],
)
def test_hints_set_variables_the_way_the_platform_does(platform: str, expected: str) -> None:
    assert set_variable_hint("CIVITAI_API_TOKEN", platform=platform) == expected


def test_long_path_warning_only_near_the_windows_limit(tmp_path: Path) -> None:
    short = tmp_path / "model.safetensors"
    deep = tmp_path / ("d" * max(1, 245 - len(str(tmp_path)))) / "model.safetensors"
    assert long_path_warning(short, platform="win32") is None
    warning = long_path_warning(deep, platform="win32")
    assert warning is not None and "260" in warning and "--name" in warning
    assert long_path_warning(deep, platform="linux") is None
