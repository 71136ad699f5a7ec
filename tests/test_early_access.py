"""A newer version in Early Access: ``outdated`` marks it; ``get``, ``lock`` and
``install`` pass it over (one rule, :func:`civit.select.newest_version`) unless asked."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import civit
from civit.testing import FakeCivitai, multi_base_model


@pytest.fixture
def fake(fake: FakeCivitai) -> Iterator[FakeCivitai]:
    """The default fake plus model 400100 whose newest version, v2.2 on SDXL 1.0
    (400106), is in Early Access until 2099."""
    fake.catalog.add(multi_base_model(early_access=True))
    yield fake


@pytest.fixture
def loras(fake: FakeCivitai, tmp_path: Path) -> Path:
    """v1.0 fp32 (an update can be downloaded now) and v2.1 fp16 (only in Early Access)."""
    folder = tmp_path / "loras"
    folder.mkdir()
    for file_id in (4001012, 4001021):
        (folder / fake.file(file_id).name).write_bytes(fake.file(file_id).content)
    return folder


def test_outdated_marks_the_update_and_names_one_to_take_meanwhile(
    fake: FakeCivitai, loras: Path
) -> None:
    with civit.Client(base_url=fake.url, token=fake.token) as client:
        checks = {c.path.name: c for c in civit.outdated(loras, client=client, cache=False)}
    old = checks["styleShifter_v10_fp32.safetensors"]
    assert old.status == "outdated" and old.newest is not None and old.newest.in_early_access
    assert (old.newest.id, old.file.id) == (400106, 4001062)  # type: ignore[union-attr]
    assert old.available is not None and old.available_file is not None
    assert (old.available.id, old.available_file.id) == (400102, 4001022)
    newest = checks["styleShifter_v21.safetensors"]
    assert newest.status == "outdated" and newest.newest is not None
    assert (newest.newest.id, newest.available) == (400106, None)


def test_outdated_cli_says_until_when(civit_cli, loras: Path) -> None:
    run = civit_cli("outdated", loras)
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    early = "v2.2 (#400106, 2025-09-01, SDXL 1.0, in Early Access until 2099-01-01)"
    assert f"  Style Shifter: v2.1 (#400102, 2025-01-15, SDXL 1.0) -> {early}" in lines
    assert f"  Style Shifter: v1.0 (#400101, 2024-06-01, SDXL 1.0) -> {early}" in lines
    assert "  same variant: styleShifter_v22_full_fp32.safetensors (file 4001062)" in lines
    assert "  available now: v2.1 (#400102, 2025-01-15, SDXL 1.0)" in lines
    assert "  its same variant: styleShifter_v21_full_fp32.safetensors (file 4001022)" in lines
    assert lines.count("  available now: v2.1 (#400102, 2025-01-15, SDXL 1.0)") == 1
    assert run.err.strip().endswith("2 files: 2 outdated (1 only in Early Access)")

    documents = {
        Path(d["path"]).name: d for d in json.loads(civit_cli("outdated", loras, "--json").out)
    }
    old = documents["styleShifter_v10_fp32.safetensors"]
    assert (old["newest"]["early_access"], old["newest"]["early_access_until"]) == (
        True,
        "2099-01-01T00:00:00.000Z",
    )
    assert (old["current"]["early_access"], old["current"]["early_access_until"]) == (False, None)
    assert old["available"]["id"] == 400102
    assert old["available"]["file"] == {"id": 4001022, "name": "styleShifter_v21.safetensors"}
    assert documents["styleShifter_v21.safetensors"]["available"] is None


def locked_version(project: Path) -> int:
    lock = civit.load_lock(project / "civit.lock")
    assert lock is not None
    (entry,) = lock.files
    return entry.version_id


def test_lock_takes_what_can_be_downloaded_unless_early_access_is_asked(
    civit_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "civit.toml").write_text(
        '[settings]\ndest = "loras"\n\n[[model]]\nref = "400100"\n'
    )
    assert civit_cli("lock").code == 0
    assert locked_version(tmp_path) == 400104  # v4.0 Flux: the newest anyone can download

    upgraded = civit_cli("lock", "--upgrade")
    assert upgraded.code == 0 and "is up to date" in upgraded.err, upgraded.err
    assert locked_version(tmp_path) == 400104
    bought = civit_cli("lock", "--upgrade", "--early-access")
    assert bought.code == 0, bought.err
    assert "v4.0 Flux (#400104) -> v2.2 (#400106), file 4001061" in bought.err
    # An upgrade without the flag never moves back past the version the lock has.
    again = civit_cli("lock", "--upgrade")
    assert again.code == 0 and "is up to date" in again.err
    assert locked_version(tmp_path) == 400106

    frozen = civit_cli("install", "--frozen", "--early-access")
    assert frozen.code == 2 and "cannot --early-access" in frozen.err


NOTE = "v2.2 is in Early Access until 2099-01-01; took v4.0 Flux (pass --early-access for v2.2)"


def test_get_takes_the_newest_version_that_can_be_downloaded_and_says_why(
    civit_cli, tmp_path: Path
) -> None:
    run = civit_cli("get", "400100", "--dest", tmp_path)
    assert run.code == 0, run.err
    assert (tmp_path / "styleShifter_v40_flux.safetensors").is_file()
    assert f"  {NOTE}" in run.err.splitlines()

    (document,) = json.loads(civit_cli("get", "400100", "--dest", tmp_path, "--json").out)
    assert (document["status"], document["file_id"]) == ("present", 4001041)
    assert document["notes"][0] == NOTE

    planned = civit_cli("get", "400100", "--dest", tmp_path / "dry", "--dry-run")
    assert planned.code == 0 and f"  {NOTE}" in planned.err.splitlines(), planned.err
    assert "would download Style Shifter v4.0 Flux: styleShifter_v40_flux" in planned.err


def test_get_early_access_takes_the_early_access_version(civit_cli, tmp_path: Path) -> None:
    run = civit_cli("get", "400100", "--early-access", "--dest", tmp_path, "--json")
    assert run.code == 3  # the fake's account did not buy it
    (document,) = json.loads(run.out)
    assert document["file_id"] == 4001061
    assert document["error"]["exit_code"] == 3
    assert "Early Access until 2099-01-01" in document["error"]["message"]
    assert list(tmp_path.iterdir()) == []


def test_every_version_in_early_access_still_fails_with_its_date(civit_cli, tmp_path: Path) -> None:
    run = civit_cli("get", "99002", "--dest", tmp_path)
    assert run.code == 3
    assert "Early Access until 2099-01-01" in run.err and "took" not in run.err


@pytest.mark.parametrize(
    ("kind", "code", "file_id"),
    [
        ("@version", 0, 4001021),
        ("@version", 3, 4001061),
        ("air", 3, 4001061),
        ("download url", 3, 4001062),
        ("hash", 3, 4001061),
    ],
)
def test_pinned_refs_are_never_changed(
    civit_cli, fake: FakeCivitai, tmp_path: Path, kind: str, code: int, file_id: int
) -> None:
    version_id = file_id // 10  # Style Shifter's file ids are its version ids and a digit
    ref = {
        "@version": f"400100@{version_id}",
        "air": f"urn:air:sdxl:lora:civitai:400100@{version_id}",
        "download url": f"https://civitai.com/api/download/models/{version_id}?fileId={file_id}",
        "hash": fake.file(file_id).sha256,
    }[kind]
    run = civit_cli("get", ref, "--dest", tmp_path, "--json")
    assert run.code == code, run.err
    (document,) = json.loads(run.out)
    assert document["file_id"] == file_id
    assert not any("Early Access" in note for note in document.get("notes", []))


def test_get_and_install_agree_and_so_do_stdin_and_the_library(
    civit_cli,
    fake: FakeCivitai,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = '[settings]\ndest = "locked"\n\n[[model]]\nref = "400100"\n'
    (tmp_path / "civit.toml").write_text(manifest)
    assert civit_cli("install").code == 0
    assert locked_version(tmp_path) == 400104

    monkeypatch.setattr("sys.stdin", io.StringIO("400100  # Style Shifter\n"))
    (piped,) = json.loads(civit_cli("get", "-", "--dest", "piped", "--json").out)
    assert piped["file_id"] == 4001041 and piped["notes"][0] == NOTE
    assert (tmp_path / "locked" / "styleShifter_v40_flux.safetensors").read_bytes() == (
        Path(piped["path"]).read_bytes()
    )

    with civit.Client(base_url=fake.url, token=fake.token) as client:
        result = civit.get("400100", client=client, dest=tmp_path / "library", cache=False)
        assert (result.file_id, result.notes[0]) == (4001041, NOTE)
        with pytest.raises(civit.EarlyAccessError, match="until 2099-01-01"):
            civit.get("400100", client=client, dest=tmp_path / "library", early_access=True)
        version = client.get_version_for(civit.parse_ref("400100"))
        assert version.id == 400104
        assert client.get_version_for(civit.parse_ref("400100"), early_access=True).id == 400106


def test_info_marks_what_get_takes(civit_cli) -> None:
    lines = civit_cli("info", "400100").out.splitlines()
    assert "  v2.2  #400106  SDXL 1.0  2025-09-01  (newest, in Early Access until 2099-01-01)" in (
        lines
    )
    assert "  v4.0 Flux  #400104  Flux.1 D  2025-06-01  (newest you can download now)" in lines
