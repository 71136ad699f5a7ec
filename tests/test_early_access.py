"""A newer version in Early Access: ``outdated`` marks it, ``lock`` passes it over."""

from __future__ import annotations

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
