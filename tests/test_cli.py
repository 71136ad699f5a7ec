"""The command line through its real entry point: exit codes, stderr, JSON on stdout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from civit.testing import FakeCivitai


def test_version_and_help(civit_cli) -> None:
    assert civit_cli("--version").out.strip() == "civit, version 0.1.0"
    helped = civit_cli("get", "--help")
    assert helped.code == 0
    assert "--root" in helped.out and "CIVITAI_API_TOKEN" in helped.out


def test_info_human(civit_cli) -> None:
    run = civit_cli("info", "827184")
    assert run.code == 0
    assert "WAI-illustrious-SDXL" in run.out
    assert "v16.0  #2514310  Illustrious  2025-12-18  (newest)" in run.out
    assert "* 2402203 waiIllustriousSDXL_v160.safetensors" in run.out


def test_info_json_is_the_normalized_record(civit_cli, fake: FakeCivitai) -> None:
    run = civit_cli("info", "827184", "--json")
    document = json.loads(run.out)
    assert document["id"] == 827184
    files = document["versions"][0]["files"]
    assert files[0]["hashes"]["sha256"] == fake.file(2402203).sha256.upper()
    assert "raw" not in document


@pytest.mark.parametrize(
    "ref",
    [
        "827184@2300001",
        "https://civitai.com/models/827184/wai?modelVersionId=2300001",
        "urn:air:sdxl:checkpoint:civitai:827184@2300001",
    ],
)
def test_info_on_a_version_shows_that_version(civit_cli, ref: str) -> None:
    run = civit_cli("info", ref)
    assert run.code == 0
    assert "#2300001" in run.out and "#2514310" not in run.out


def test_info_unknown_id_exits_4(civit_cli) -> None:
    run = civit_cli("info", "0")
    assert run.code == 4
    assert "No model with id 0" in run.err
    assert civit_cli("info", "424242").code == 4


def test_info_bad_ref_exits_2_listing_forms(civit_cli) -> None:
    run = civit_cli("info", "not-a-ref")
    assert run.code == 2
    assert "827184@2514310" in run.err and "urn:air" in run.err


def test_info_archived_says_so(civit_cli) -> None:
    run = civit_cli("info", "99001")
    assert run.code == 0
    assert "ARCHIVED" in run.out


def test_search_table_and_json(civit_cli) -> None:
    run = civit_cli("search", "--type", "LORA", "--limit", "3")
    assert run.code == 0
    header, *rows = run.out.strip().splitlines()
    assert header.split() == ["ID", "NAME", "TYPE", "BASE", "DOWNLOADS", "CREATOR"]
    assert 1 <= len(rows) <= 3
    document = json.loads(civit_cli("search", "detail", "--json").out)
    assert [m["id"] for m in document] == [328553]


def test_config_show_never_prints_the_token(civit_cli, fake: FakeCivitai) -> None:
    run = civit_cli("config", "show")
    assert run.code == 0
    assert fake.token not in run.out + run.err
    assert "token          set  (env CIVITAI_API_TOKEN)" in run.out
    assert civit_cli("config", "path").out.strip().endswith("config.toml")


def test_get_into_comfyui_with_json_report(civit_cli, fake: FakeCivitai, tmp_path: Path) -> None:
    run = civit_cli("get", "827184", "--root", str(tmp_path), "--layout", "comfyui", "--json")
    assert run.code == 0, run.err
    [document] = json.loads(run.out)
    assert document["path"] == str(
        tmp_path / "models/checkpoints/waiIllustriousSDXL_v160.safetensors"
    )
    assert document["sha256"] == fake.file(2402203).sha256.upper()
    assert {"sha256", "blake3", "crc32"} <= set(document["verified"])
    assert document["bytes_transferred"] == fake.file(2402203).length
    assert fake.token not in run.out + run.err
    again = civit_cli("get", "827184", "--root", str(tmp_path), "--layout", "comfyui")
    assert again.code == 0 and "already present" in again.err


def test_get_auto_layout_says_what_it_detected(civit_cli, tmp_path: Path) -> None:
    (tmp_path / "models/Stable-diffusion").mkdir(parents=True)
    (tmp_path / "webui.py").write_text("")
    run = civit_cli("get", "7808", "--root", str(tmp_path))
    assert run.code == 0, run.err
    assert f"detected AUTOMATIC1111 at {tmp_path} (webui.py)" in run.err
    assert (tmp_path / "embeddings/easynegative.safetensors").is_file()


def test_get_without_token_exits_3_with_how_to(
    civit_cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CIVITAI_API_TOKEN")
    run = civit_cli("get", "328553", "--dest", str(tmp_path))
    assert run.code == 3
    assert "CIVITAI_API_TOKEN" in run.err
    assert list(tmp_path.iterdir()) == []


def test_get_corrupt_exits_7_naming_the_digests(
    civit_cli, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.set_faults(3000001, corrupt=True)
    run = civit_cli("get", "328553", "--dest", str(tmp_path))
    assert run.code == 7
    assert fake.file(3000001).sha256.upper() in run.err
    assert list(tmp_path.iterdir()) == []


def test_get_archived_exits_4(civit_cli, tmp_path: Path) -> None:
    run = civit_cli("get", "99001", "--dest", str(tmp_path))
    assert run.code == 4
    assert "archived" in run.err


def test_get_no_matching_file_lists_what_exists(civit_cli, tmp_path: Path) -> None:
    run = civit_cli("get", "827184", "--fp", "fp8", "--dest", str(tmp_path))
    assert run.code == 4
    assert "2402204" in run.err and "fp32" in run.err


def test_get_several_refs_continues_past_a_failure(civit_cli, tmp_path: Path) -> None:
    run = civit_cli("get", "99001", "7808", "--dest", str(tmp_path), "--json")
    assert run.code == 4
    documents = json.loads(run.out)
    assert documents[0]["error"]["exit_code"] == 4
    assert documents[1]["status"] == "downloaded"


def test_bad_flags_exit_2(civit_cli) -> None:
    assert civit_cli("get", "827184", "--layout", "nope").code == 2
    assert civit_cli("get").code == 2
    assert civit_cli("frobnicate").code == 2


def test_unreachable_service_exits_5(civit_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVITAI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CIVIT_RETRIES", "2")
    run = civit_cli("info", "827184")
    assert run.code == 5
    assert "cannot reach" in run.err
