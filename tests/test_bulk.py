"""Bulk ``civit get``: every version, every file, refs on stdin, ``search -q``."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import civit
from civit.bulk import choose_files
from civit.testing import (
    FakeCivitai,
    FakeFile,
    FakeModel,
    FakeVersion,
    make_safetensors,
    multi_base_model,
)


def same_name_model() -> FakeModel:
    """Model 420000: three versions whose only file is always ``same.safetensors``."""
    versions = [
        FakeVersion(
            420000 + n,
            f"v{n}",
            "SDXL 1.0",
            f"2024-0{n}-01T00:00:00Z",
            files=[
                FakeFile(4200000 + n, "same.safetensors", make_safetensors(3_000, n), primary=True)
            ],
        )
        for n in (3, 2, 1)  # newest first, as Civitai lists them
    ]
    return FakeModel(420000, "Same Name", "LORA", "reuser", versions)


@pytest.fixture
def fake(fake: FakeCivitai) -> Iterator[FakeCivitai]:
    fake.catalog.add(multi_base_model())
    fake.catalog.add(same_name_model())
    yield fake


def saved(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_all_versions_keeps_same_named_files_apart(
    civit_cli, fake: FakeCivitai, tmp_path: Path
) -> None:
    run = civit_cli("get", "420000", "--all-versions", "--dest", tmp_path / "loras")
    assert run.code == 0, run.err
    assert saved(tmp_path / "loras") == {
        "same.safetensors": fake.file(4200001).content,  # the oldest keeps the name
        "same_v2.safetensors": fake.file(4200002).content,
        "same_v3.safetensors": fake.file(4200003).content,
    }
    again = civit_cli("get", "420000", "--all-versions", "--dest", tmp_path / "loras")
    assert again.code == 0 and again.err.count("already present") == 3


def test_all_versions_with_sidecars_fetch_the_model_record_once(
    civit_cli, fake: FakeCivitai, tmp_path: Path
) -> None:
    root = tmp_path / "webui"  # A1111: the card wants the model record too
    root.mkdir()
    (root / "webui.py").write_text("")
    fake.clear_log()
    run = civit_cli(
        "get", "420000", "--all-versions", "--info", "--subfolder", "{creator}", "--root", root
    )
    assert run.code == 0, run.err
    assert len(list((root / "models/Lora/reuser").glob("*.json"))) == 3  # the cards
    assert [r.path for r in fake.requests].count("/api/v1/models/420000") == 1


def test_same_named_files_of_several_refs_do_not_replace_one_another(
    civit_cli, fake: FakeCivitai, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("420000@420002\n420000@420001\n420000@420002\n"))
    run = civit_cli("get", "-", "--dest", tmp_path / "loras")
    assert run.code == 0, run.err
    assert saved(tmp_path / "loras") == {
        "same.safetensors": fake.file(4200001).content,  # the older version keeps the name
        "same_v2.safetensors": fake.file(4200002).content,
    }
    assert run.err.count("already present") == 1  # the ref given twice


def test_all_versions_with_a_selection_skips_versions_without_one(
    fake: FakeCivitai, tmp_path: Path
) -> None:
    with civit.Client(base_url=fake.url, token=fake.token) as client:
        planned = choose_files("400100", client=client, fp="fp32", all_versions=True)
    assert [(p.version.id, p.file.id if p.file else None) for p in planned] == [
        (400104, None),
        (400103, None),
        (400102, 4001022),
        (400105, None),
        (400101, 4001012),
    ]
    assert planned[0].reason == "no file matches fp=fp32"


def test_all_files_leaves_training_data_out_unless_asked(
    civit_cli, fake: FakeCivitai, tmp_path: Path
) -> None:
    run = civit_cli("get", "400100@400102", "--all-files", "--dest", tmp_path / "a")
    assert run.code == 0, run.err
    assert saved(tmp_path / "a") == {
        "styleShifter_v21.safetensors": fake.file(4001021).content,
        "styleShifter_v21_full_fp32.safetensors": fake.file(4001022).content,
    }
    data = civit_cli(
        "get", "400100@400102", "--all-files", "--type", "Training Data", "--dest", tmp_path / "b"
    )
    assert data.code == 0, data.err
    assert list(saved(tmp_path / "b")) == ["styleShifter_v21_dataset.zip"]


def test_refs_from_stdin_and_dry_run(
    civit_cli, fake: FakeCivitai, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs = "\ufeff# my models\r\n\r\n328553\r\n23906  # the VAE\r\n"  # as Notepad saves it
    monkeypatch.setattr("sys.stdin", io.StringIO(refs))
    run = civit_cli("get", "-", "--dest", tmp_path / "dry", "--dry-run", "--json")
    assert run.code == 0, run.err
    documents = json.loads(run.out)
    assert [(d["ref"], d["status"]) for d in documents] == [
        ("328553", "planned"),
        ("23906", "planned"),
    ]
    assert documents[0]["path"] == str(tmp_path / "dry" / "add-detail-xl.safetensors")
    assert not (tmp_path / "dry").exists()
    assert not [r for r in fake.requests if "/api/download/" in r.path]

    monkeypatch.setattr("sys.stdin", io.StringIO("# nothing but comments\n"))
    empty = civit_cli("get", "-", "--dest", tmp_path)
    assert empty.code == 2 and "no refs on stdin" in empty.err


def test_search_quiet_pipes_into_get(
    civit_cli, fake: FakeCivitai, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = civit_cli("search", "--username", "stylist", "--type", "LORA", "-q")
    assert listed.code == 0
    assert listed.out == "400100\n"
    cut = civit_cli("search", "--type", "LORA", "--limit", "2", "-q")
    assert len(cut.out.split()) == 2 and "more models match" in cut.err

    monkeypatch.setattr("sys.stdin", io.StringIO(listed.out))
    run = civit_cli("get", "-", "--dest", tmp_path / "loras")
    assert run.code == 0, run.err
    assert saved(tmp_path / "loras") == {
        "styleShifter_v40_flux.safetensors": fake.file(4001041).content
    }
