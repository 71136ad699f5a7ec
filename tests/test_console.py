"""Every command on a console that cannot write Japanese or emoji (Windows' cp1252 pipes).

Each command runs as a real ``civit`` process with ``PYTHONIOENCODING=cp1252`` against
a FakeCivitai serving a model whose name and file name have both.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from civit.cli.output import prepare_console, writes_unicode
from civit.testing import FakeCivitai, FakeFile, FakeModel, FakeVersion, make_safetensors

MODEL_ID, VERSION_ID, FILE_ID = 880301, 880302, 880303
NEWER_VERSION_ID, NEWER_FILE_ID = 880304, 880305
NAME = "美少女スタイル ✨🎨"
FILE_NAME = "美少女_🎨.safetensors"
REPLACED = NAME.encode("cp1252", errors="replace").decode("cp1252")


def japanese_model() -> FakeModel:
    """v1 is what the tests download; v2, newer for the same base, is what
    ``civit outdated`` reports."""
    newer = FakeVersion(
        NEWER_VERSION_ID,
        "v2 🌸",
        "SDXL 1.0",
        "2025-06-06T00:00:00.000Z",
        files=[
            FakeFile(NEWER_FILE_ID, "美少女_v2.safetensors",
                     make_safetensors(20_001, NEWER_FILE_ID), primary=True)
        ],
    )  # fmt: skip
    version = FakeVersion(
        VERSION_ID,
        "v1 ✨",
        "SDXL 1.0",
        "2025-03-03T00:00:00.000Z",
        files=[FakeFile(FILE_ID, FILE_NAME, make_safetensors(20_000, FILE_ID), primary=True)],
    )
    return FakeModel(MODEL_ID, NAME, "LORA", "作者", [newer, version], tags=["アニメ"])


def run_all(
    fake: FakeCivitai, folder: Path, commands: list[list[str]]
) -> list[subprocess.CompletedProcess[bytes]]:
    """Run each command as its own process writing to a cp1252 pipe, as on Windows."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONUTF8", "PYTHONIOENCODING", "LC_ALL", "LANG")
    }
    env.update(
        PYTHONIOENCODING="cp1252",
        CIVITAI_BASE_URL=fake.url,
        CIVITAI_API_TOKEN=fake.token,
        CIVIT_ROOT=str(folder / "ルート"),
        CIVIT_CONFIG=str(folder / "設定" / "config.toml"),
    )
    # Two at a time: the machine's two cores, without starving timing-sensitive tests.
    results = []
    for start in range(0, len(commands), 2):
        batch = [
            (
                command,
                subprocess.Popen(
                    [sys.executable, "-m", "civit", *command],
                    cwd=folder,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                ),
            )
            for command in commands[start : start + 2]
        ]
        for command, process in batch:
            out, err = process.communicate(timeout=60)
            results.append(subprocess.CompletedProcess(command, process.returncode, out, err))
    return results


def check(result: subprocess.CompletedProcess[bytes]) -> tuple[str, str]:
    out, err = result.stdout.decode("cp1252"), result.stderr.decode("cp1252")
    assert "Traceback" not in err and "UnicodeEncodeError" not in err, (result.args, err)
    assert result.returncode == 0, (result.args, err)
    return out, err


def test_every_command_survives_a_cp1252_console(fake: FakeCivitai, tmp_path: Path) -> None:
    fake.add_model(japanese_model())
    model_file = tmp_path / "dl" / FILE_NAME
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "civit.toml").write_text(
        f'[settings]\ndest = "models"\n\n[[model]]\nref = "{MODEL_ID}@{VERSION_ID}"\n',
        encoding="utf-8",
    )
    downloads = run_all(
        fake,
        tmp_path,
        [
            ["get", f"{MODEL_ID}@{VERSION_ID}", "--dest", "dl"],
            ["get", f"{MODEL_ID}@{VERSION_ID}", "--dest", "dl-json", "--json"],
            ["install", "-f", "project/civit.toml"],
        ],
    )
    out, err = check(downloads[0])
    assert "saved" in err and "dl" in err  # the file name came out as "?"s
    assert model_file.is_file()
    out, _ = check(downloads[1])
    assert json.loads(out)[0]["path"].endswith(FILE_NAME)  # escaped, so exact and valid
    _, err = check(downloads[2])
    assert "1 installed" in err
    assert (tmp_path / "project" / "models" / FILE_NAME).is_file()

    results = run_all(
        fake,
        tmp_path,
        [
            ["info", str(MODEL_ID)],
            ["info", str(MODEL_ID), "--json"],
            ["search", "美少女"],
            ["search", "美少女", "--json"],
            ["hash", str(model_file)],
            ["identify", str(model_file)],
            ["identify", str(model_file), "--json"],
            ["verify", str(model_file)],
            ["lock", "-f", "project/civit.toml", "--upgrade"],
            ["config", "show"],
        ],
    )
    outputs = [check(result) for result in results]
    (info, _), (info_json, _), (search, _), (search_json, _) = outputs[:4]
    assert REPLACED in info  # "??????? ??": shown as well as cp1252 can
    assert json.loads(info_json)["name"] == NAME
    assert str(MODEL_ID) in search and json.loads(search_json)[0]["name"] == NAME
    hashed, _ = outputs[4]
    assert fake.file(FILE_ID).sha256.lower() in hashed
    identified, _ = outputs[5]
    assert str(MODEL_ID) in identified
    assert json.loads(outputs[6][0])[0]["model_name"] == NAME
    verified, _ = outputs[7]
    assert "ok" in verified.lower()
    _, locked = outputs[8]
    assert "civit.lock" in locked
    shown, _ = outputs[9]
    assert "???" in shown  # the root folder's name


def test_library_commands_survive_a_cp1252_console(fake: FakeCivitai, tmp_path: Path) -> None:
    fake.add_model(japanese_model())
    model_file = tmp_path / "dl" / FILE_NAME
    model_file.parent.mkdir()
    model_file.write_bytes(fake.file(FILE_ID).content)
    workflow = tmp_path / "ワークフロー.json"
    loader = {"type": "CivitAI_Lora_Loader", "widgets_values": [f"{MODEL_ID}@{VERSION_ID}"]}
    workflow.write_text(json.dumps({"nodes": [loader]}), encoding="utf-8")
    results = run_all(
        fake,
        tmp_path,
        [
            ["freeze", "dl", "-f", "frozen/civit.toml"],
            ["outdated", "dl"],
            ["mirror", "push", "ミラー", str(model_file)],
            ["get", "--from", str(workflow), "--dest", "from", "--dry-run"],
            ["config", "path"],
        ],
    )
    (_, frozen), (outdated, _), (_, pushed), (_, from_workflow), (config_file, _) = [
        check(result) for result in results
    ]
    assert "1 file pinned" in frozen
    assert (tmp_path / "frozen" / "civit.lock").is_file()
    assert "-> v2 ? (#880304" in outdated  # the newer version, its name as cp1252 can
    assert "1 uploaded" in pushed
    assert (tmp_path / "ミラー" / fake.file(FILE_ID).sha256.lower()).is_file()
    assert "would download" in from_workflow and REPLACED in from_workflow
    assert config_file.strip().endswith("??" + os.sep + "config.toml")


def test_prepare_console_replaces_what_the_stream_cannot_encode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="cp1252", errors="strict")
    monkeypatch.setattr(sys, "stdout", stream)
    assert not writes_unicode(stream)
    prepare_console()
    print(NAME)
    stream.flush()
    assert raw.getvalue().decode("cp1252").strip() == REPLACED
    utf8 = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", utf8)
    prepare_console()
    assert utf8.errors == "strict"  # a stream that can write everything is left alone
