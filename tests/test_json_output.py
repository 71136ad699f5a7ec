"""Every command's ``--json`` matches its schema (json_schemas.py), the docs name every
field, failures share one error shape, and several outcomes exit with the worst code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import pytest

import civit
from civit.cli import cli
from civit.testing import FakeCivitai
from json_schemas import SCHEMAS, Enum, Map, assert_matches, field_names, problems

DOCS = Path(__file__).resolve().parent.parent / "docs" / "json.md"
LORA = 3000001  # model 328553's only file


def document_of(run: Any, schema: str) -> Any:
    document = json.loads(run.out)
    assert_matches(document, SCHEMAS[schema])
    return document


def test_the_validator_rejects_what_it_should() -> None:
    schema = {"a": int, "b?": (str, None), "c": [Enum("x", "y")], "d": Map(float)}
    assert problems({"a": 1, "c": ["x"], "d": {"k": 1.5}}, schema) == []
    assert problems({"a": True, "c": [], "d": {}}, schema)  # a bool is not an int
    assert problems({"a": 1, "c": ["z"], "d": {}}, schema)
    assert problems({"a": 1, "c": [], "d": {}, "e": 0}, schema)  # unexpected key
    assert problems({"c": [], "d": {}}, schema)  # missing key


def test_info_and_search(civit_cli) -> None:
    model = document_of(civit_cli("info", "827184", "--json"), "info")
    assert model["versions"][0]["files"][0]["size_variant"] == "pruned"
    document_of(civit_cli("search", "--type", "LORA", "--json"), "search")


def test_get_results_and_failures(civit_cli, fake: FakeCivitai, tmp_path: Path) -> None:
    run = civit_cli("get", "328553", "99001", "--dest", tmp_path, "--json")
    assert run.code == 4
    saved, archived = document_of(run, "get")
    assert saved["size_bytes"] == fake.file(LORA).length and saved["error"] is None
    assert archived["error"]["exit_code"] == 4 and "archived" in archived["error"]["message"]


def test_get_from_an_image(civit_cli, tmp_path: Path) -> None:
    workflow = tmp_path / "workflow.json"
    workflow.write_text(
        json.dumps({"extra": {"airs": ["urn:air:sdxl:lora:civitai:328553@368189"]}})
    )
    missing = tmp_path / "missing.png"
    run = civit_cli("get", "--from", workflow, missing, "--dest", tmp_path / "out", "--json")
    found, failed = document_of(run, "get --from")
    assert found["files"][0]["status"] == "downloaded"
    assert failed["error"]["exit_code"] == run.code != 0


def test_hash_identify_verify(civit_cli, fake: FakeCivitai, tmp_path: Path) -> None:
    model = tmp_path / "add-detail-xl.safetensors"
    model.write_bytes(fake.file(LORA).content)
    missing = tmp_path / "gone.safetensors"
    hashed = civit_cli("hash", model, missing, "--algo", "sha256,blake3", "--json")
    assert hashed.code == 1
    good, bad = document_of(hashed, "hash")
    assert good["size_bytes"] == model.stat().st_size and good["error"] is None
    assert bad["error"]["exit_code"] == 1 and bad["size_bytes"] is None
    identified = civit_cli("identify", tmp_path, "--json", "--write-info")
    (known,) = document_of(identified, "identify")
    assert known["model_type"] == "LORA" and known["sidecars"][0].endswith(".civitai.info")
    (checked,) = document_of(civit_cli("verify", model, "--json"), "verify")
    assert checked["status"] == "ok"


def test_lock_and_install(civit_cli, fake: FakeCivitai, tmp_path: Path) -> None:
    manifest = civit.write_manifest(
        tmp_path / "civit.toml", ["328553", "7808"], settings={"dest": "models"}
    )
    locked = document_of(civit_cli("lock", "-f", manifest.path, "--json"), "lock")
    assert locked["written"] is True and len(locked["changes"]) == 2
    assert locked["files"][0]["size_bytes"] is None  # known once installed
    fake.set_faults(3000002, corrupt=True)
    run = civit_cli("install", "-f", manifest.path, "--frozen", "--json")
    report = document_of(run, "install")
    assert run.code == report["exit_code"] == 7
    assert [entry["status"] for entry in report["entries"]] == ["installed", "failed"]
    assert report["entries"][1]["error"]["exit_code"] == 7
    again = document_of(civit_cli("lock", "-f", manifest.path, "--json"), "lock")
    assert again["written"] is False and again["changes"] == []
    checked = civit_cli("lock", "-f", manifest.path, "--check", "--json")
    assert document_of(checked, "lock --check")["matches"] is True


def test_freeze_and_mirror_push(civit_cli, fake: FakeCivitai, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "lora.safetensors").write_bytes(fake.file(LORA).content)
    (models / "mine.safetensors").write_bytes(b"not on civitai")
    frozen = document_of(
        civit_cli("freeze", models, "-f", tmp_path / "civit.toml", "--json"), "freeze"
    )
    assert [entry["file_id"] for entry in frozen["files"]] == [LORA]
    assert frozen["unknown"][0]["path"].endswith("mine.safetensors")
    run = civit_cli("mirror", "push", tmp_path / "mirror", models / "lora.safetensors", "--json")
    pushed = document_of(run, "mirror push")
    assert pushed["summary"]["uploaded"] == 1 and pushed["files"][0]["error"] is None


def test_config_and_outdated(civit_cli, fake: FakeCivitai, tmp_path: Path) -> None:
    document_of(civit_cli("config", "show", "--json"), "config show")
    document_of(civit_cli("--json", "config", "path"), "config path")
    (tmp_path / "lora.safetensors").write_bytes(fake.file(LORA).content)
    document_of(civit_cli("outdated", tmp_path, "--json"), "outdated")
    missing = tmp_path / "gone.safetensors"
    run = civit_cli("outdated", tmp_path / "lora.safetensors", missing, "--json")
    current, failed = document_of(run, "outdated")
    assert current["error"] is None and failed["status"] == "error"
    assert failed["error"]["exit_code"] == run.code == 1


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["info", "not-a-ref"], 2),  # a civit error before any request
        (["info", "424242"], 4),  # the API says not found
        (["info", "827184@1234"], 4),  # the model exists, that version does not
        (["get", "--bogus", "827184"], 2),  # click's usage error
        (["frobnicate"], 2),  # no such command
        (["lock", "-f", "missing.toml"], 2),
    ],
)
def test_every_failure_has_one_error_shape(civit_cli, args: list[str], code: int) -> None:
    for where in ("before", "after"):
        run = civit_cli(*(["--json", *args] if where == "before" else [*args, "--json"]))
        assert run.code == code, run.err
        document = document_of(run, "error")
        assert document["error"]["exit_code"] == code
        assert "error" in run.err.lower()  # the human line stays on stderr


def test_unknown_version_exits_4_with_a_hint(civit_cli) -> None:
    run = civit_cli("info", "827184@1234")
    assert run.code == 4
    assert "model 827184 has no version 1234" in run.err and "civit info 827184" in run.err


# -- exit codes: the most severe failure wins ----------------------------------------


@pytest.mark.parametrize("order", [("328553", "99001"), ("99001", "328553")])
def test_get_exits_with_the_most_severe_failure(
    civit_cli, fake: FakeCivitai, tmp_path: Path, order: tuple[str, str]
) -> None:
    fake.set_faults(LORA, corrupt=True)  # 328553: integrity (7); 99001: archived (4)
    run = civit_cli("get", *order, "--dest", tmp_path)
    assert run.code == 7


def test_install_and_get_agree_on_the_rule(civit_cli, fake: FakeCivitai, tmp_path: Path) -> None:
    manifest = civit.write_manifest(
        tmp_path / "civit.toml", ["7808", "328553"], settings={"dest": "models"}
    )
    civit_cli("lock", "-f", manifest.path)
    fake.set_faults(LORA, corrupt=True)
    fake.set_faults(3000002, html=True)  # a login page (3) comes first, in both
    installed = civit_cli("install", "-f", manifest.path, "--frozen")
    got = civit_cli("get", "7808", "328553", "--dest", tmp_path / "get")
    assert installed.code == got.code == 7


# -- the docs --------------------------------------------------------------------------


def test_every_command_has_a_schema() -> None:
    """A new command must say what its --json prints (here and in docs/json.md)."""
    context = click.Context(cli)

    def paths(group: click.Group, prefix: str) -> list[str]:
        found = []
        for name in group.list_commands(context):
            command = group.get_command(context, name)
            if isinstance(command, click.Group):
                found += paths(command, f"{prefix}{name} ")
            else:
                found.append(f"{prefix}{name}")
        return found

    assert sorted(set(paths(cli, "")) - set(SCHEMAS)) == []


def test_docs_describe_every_command_and_field() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for command, schema in SCHEMAS.items():
        if command != "error":
            assert f"`civit {command}" in text, command
        missing = sorted({name for name in field_names(schema) if f"`{name}`" not in text})
        assert not missing, f"docs/json.md does not name {missing} ({command})"
    assert re.search(r'"error":\s*\{\s*"message"', text)
