"""``civit outdated``: newer versions of the same base-model family, same-variant files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import civit
from civit.records import File, Version
from civit.testing import FakeCivitai, multi_base_model
from civit.updates import base_model_family, same_variant


@pytest.fixture
def fake(fake: FakeCivitai) -> Iterator[FakeCivitai]:
    """The default fake plus model 400100, whose versions span four base models."""
    fake.catalog.add(multi_base_model())
    yield fake


def put(fake: FakeCivitai, folder: Path, file_id: int, name: str | None = None) -> Path:
    """A local copy of a fake file (under another name, if given)."""
    path = folder / (name or fake.file(file_id).name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(fake.file(file_id).content)
    return path


@pytest.fixture
def library(fake: FakeCivitai, tmp_path: Path) -> Path:
    """A LoRA/checkpoint folder: old SDXL copies (fp16 and fp32), the newest SDXL one,
    a model with one version, an old Illustrious checkpoint, and an unknown file."""
    folder = tmp_path / "models"
    put(fake, folder, 4001011)  # Style Shifter v1.0 fp16 (SDXL 1.0)
    put(fake, folder, 4001012, "renamed-fp32.safetensors")  # v1.0 fp32, renamed
    put(fake, folder, 4001021)  # v2.1 fp16: newest SDXL
    put(fake, folder, 3000001)  # Detail Tweaker XL: only one version
    put(fake, folder, 2300101)  # WAI v15.0 (Illustrious): v16.0 is newer
    (folder / "mine.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{}      " + b"x" * 64)
    return folder


def test_families_keep_sdxl_ecosystems_apart() -> None:
    assert base_model_family("SDXL 1.0") == base_model_family("SDXL Lightning") == "SDXL"
    assert base_model_family("SD 1.5") == base_model_family("SD 1.5 LCM") == "SD 1"
    assert base_model_family("Flux.1 D") == base_model_family("Flux.1 S")
    sdxl_like = {base_model_family(b) for b in ("SDXL 1.0", "Pony", "Illustrious", "NoobAI")}
    assert len(sdxl_like) == 4
    assert base_model_family("SVD") == base_model_family("SVD XT")
    assert base_model_family("SD 3.5 Large") == base_model_family("SD 3.5 Large Turbo")
    # Smaller or other-sized architectures whose LoRAs do not load on their namesakes.
    for one, other in (
        ("SDXL Distilled", "SDXL 1.0"),
        ("SD 3.5 Medium", "SD 3.5 Large"),
        ("SD 3", "SD 3.5 Large"),
        ("Wan Video 1.3B t2v", "Wan Video 14B t2v"),
        ("Wan Video 14B i2v 480p", "Wan Video 2.2 I2V-A14B"),
        ("Pony V7", "Pony"),
    ):
        assert base_model_family(one) != base_model_family(other), one
    assert base_model_family("Some Future Base") == "Some Future Base"
    assert base_model_family(None) == ""


def test_same_variant_matches_type_format_fp_and_size() -> None:
    def file(file_id: int, **traits: object) -> File:
        return File(id=file_id, name=f"f{file_id}.safetensors", **traits)  # type: ignore[arg-type]

    have = file(1, type="Model", format="SafeTensor", fp="fp32", size="full")
    newer = Version(
        id=9,
        name="v2",
        files=(
            file(10, type="Model", format="SafeTensor", fp="fp16", size="pruned", primary=True),
            file(11, type="Pruned Model", format="SafeTensor", fp="fp32", size="full"),
            file(12, type="VAE", format="SafeTensor", fp="fp32"),
            file(13, type="Model", format="SafeTensor"),  # says nothing about fp or size
        ),
    )
    chosen = same_variant(have, newer)
    assert chosen is not None and chosen.id == 11  # "Pruned Model" is a Model type
    only_unspecific = Version(id=9, name="v2", files=newer.files[2:])
    assert [same_variant(have, only_unspecific).id] == [13]  # type: ignore[union-attr]
    assert same_variant(have, Version(id=9, name="v2", files=newer.files[2:3])) is None


def test_outdated_finds_same_family_updates_and_lists_other_bases(
    fake: FakeCivitai, library: Path
) -> None:
    with civit.Client(base_url=fake.url, token=fake.token) as client:
        checks = {c.path.name: c for c in civit.outdated(library, client=client, cache=False)}
    assert {name: c.status for name, c in checks.items()} == {
        "add-detail-xl.safetensors": "current",
        "mine.safetensors": "unknown",
        "renamed-fp32.safetensors": "outdated",
        "styleShifter_v10.safetensors": "outdated",
        "styleShifter_v21.safetensors": "current",
        "waiIllustriousSDXL_v150.safetensors": "outdated",
    }
    fp32 = checks["renamed-fp32.safetensors"]
    assert (fp32.current.id, fp32.newest.id) == (400101, 400102)  # type: ignore[union-attr]
    assert fp32.file is not None and fp32.file.id == 4001022  # the fp32 copy, not the primary
    assert [v.base_model for v in fp32.other_bases] == ["Flux.1 D", "Illustrious", "Pony"]
    fp16 = checks["styleShifter_v10.safetensors"]
    assert fp16.file is not None and fp16.file.id == 4001021
    newest = checks["styleShifter_v21.safetensors"]
    assert newest.newest is None  # Illustrious and Flux versions are not SDXL updates
    assert [v.id for v in newest.other_bases] == [400104, 400103]
    wai = checks["waiIllustriousSDXL_v150.safetensors"]
    assert (wai.newest.id, wai.file.id) == (2514310, 2402203)  # type: ignore[union-attr]
    assert checks["add-detail-xl.safetensors"].other_bases == ()


def test_outdated_cli_lists_only_updates_and_honours_ignore(
    civit_cli, library: Path, isolated_user_dirs: Path
) -> None:
    run = civit_cli("outdated", library)
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert f"{library / 'renamed-fp32.safetensors'}" in lines
    assert (
        "  Style Shifter: v1.0 (#400101, 2024-06-01, SDXL 1.0) -> v2.1 (#400102, 2025-01-15, "
        "SDXL 1.0)" in lines
    )
    assert "  same variant: styleShifter_v21_full_fp32.safetensors (file 4001022)" in lines
    assert "add-detail-xl" not in run.out  # up to date: nothing to say
    other = lines.index("Newer versions for other base models (not updates):")
    assert any("styleShifter_v21.safetensors (SDXL 1.0): v4.0 Flux" in li for li in lines[other:])
    assert run.err.strip().endswith("6 files: 3 outdated, 2 up to date, 1 unknown to Civitai")

    (isolated_user_dirs / "config.toml").write_text("[outdated]\nignore = [827184]\n")
    ignored = civit_cli("outdated", library, "--json")
    documents = {Path(d["path"]).name: d for d in json.loads(ignored.out)}
    assert documents["waiIllustriousSDXL_v150.safetensors"]["status"] == "ignored"
    assert documents["renamed-fp32.safetensors"]["newest"]["file"] == {
        "id": 4001022,
        "name": "styleShifter_v21.safetensors",
    }


def test_outdated_from_a_lock_reads_no_file(
    civit_cli, fake: FakeCivitai, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    (project / "civit.toml").write_text(
        '[settings]\ndest = "loras"\n\n'
        '[[model]]\nref = "400100@400101"\nfp = "fp32"\n\n'
        '[[model]]\nref = "827184@2300001"\n\n'
        "[outdated]\nignore = [827184]\n"
    )
    assert civit_cli("lock").code == 0
    run = civit_cli("outdated", "--json")  # ./civit.lock, nothing downloaded
    assert run.code == 0, run.err
    statuses = [(Path(d["path"]).name, d["status"]) for d in json.loads(run.out)]
    assert statuses == [
        ("styleShifter_v10_fp32.safetensors", "outdated"),
        ("waiIllustriousSDXL_v150.safetensors", "ignored"),
    ]
    assert not any("by-hash" in request.path for request in fake.requests)


def test_lock_upgrade_names_old_and_new_versions(
    civit_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "civit.toml").write_text(
        '[settings]\ndest = "loras"\n\n[[model]]\nref = "400100"\n'
    )
    (tmp_path / "civit.lock").write_text(
        'version = 1\nmanifest_hash = "sha256:old"\n\n[[file]]\nref = "400100"\n'
        "model_id = 400100\nversion_id = 400101\nfile_id = 4001011\n"
        'name = "styleShifter_v10.safetensors"\ndest = "loras/styleShifter_v10.safetensors"\n'
    )
    run = civit_cli("lock", "--upgrade")
    assert run.code == 0, run.err
    assert "~ 400100: Style Shifter v1.0 (#400101) -> v4.0 Flux (#400104), file 4001041" in run.err
