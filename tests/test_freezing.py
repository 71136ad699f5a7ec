"""``civit freeze``: a library -> civit.toml + civit.lock -> the same files elsewhere."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import civit
from civit.sidecars import has_sidecars
from civit.testing import (
    FakeCivitai,
    FakeFile,
    FakeModel,
    FakeVersion,
    make_pickle,
    multi_base_model,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


@pytest.fixture
def fake(fake: FakeCivitai) -> Iterator[FakeCivitai]:
    fake.catalog.add(multi_base_model())
    yield fake


def put(fake: FakeCivitai, path: Path, file_id: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(fake.file(file_id).content)
    return path


def unknown(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x08" + b"\x00" * 7 + b"{}      " + b"my own LoRA" * 10)
    return path


@pytest.fixture
def comfyui(fake: FakeCivitai, tmp_path: Path) -> Path:
    """A ComfyUI install: known files (one renamed, one in a subfolder, one the fp32 copy
    that shares its Civitai name with the fp16 one) and an unknown LoRA."""
    root = tmp_path / "library" / "ComfyUI"
    (root / "custom_nodes").mkdir(parents=True)
    (root / "main.py").write_text("# ComfyUI\n")
    models = root / "models"
    put(fake, models / "checkpoints" / "waiIllustriousSDXL_v150.safetensors", 2300101)
    put(fake, models / "loras" / "style" / "my-detailer.safetensors", 3000001)
    put(fake, models / "loras" / "styleShifter_v21.safetensors", 4001022)
    put(fake, models / "embeddings" / "easynegative.safetensors", 3000002)
    unknown(models / "loras" / "mine.safetensors")
    return root


def relative_files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix == ".safetensors"
    }


def test_freeze_comfyui_then_install_frozen_elsewhere_reproduces_it(
    civit_cli, fake: FakeCivitai, comfyui: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = comfyui.parent
    monkeypatch.chdir(library)
    run = civit_cli("freeze", "ComfyUI")
    assert run.code == 0, run.err
    assert f"not on Civitai (left out): {Path('ComfyUI/models/loras/mine.safetensors')}" in run.err
    assert "4 files pinned under" in run.err and "(comfyui); 1 left out" in run.err

    manifest = (library / "civit.toml").read_text()
    document = tomllib.loads(manifest)
    assert document["settings"] == {"root": "ComfyUI", "layout": "comfyui"}
    entries = {(m["dest"], m["name"]): (m["ref"], m["file_id"]) for m in document["model"]}
    assert entries == {
        ("models/checkpoints", "waiIllustriousSDXL_v150.safetensors"): ("827184@2300001", 2300101),
        ("models/embeddings", "easynegative.safetensors"): ("7808@9208", 3000002),
        ("models/loras", "styleShifter_v21.safetensors"): ("400100@400102", 4001022),
        ("models/loras/style", "my-detailer.safetensors"): ("328553@368189", 3000001),
    }
    assert "# Detail Tweaker XL v1.0 (LORA, SDXL 1.0)\n[[model]]" in manifest
    assert "#   models/loras/mine.safetensors  SHA256 " in manifest

    lock = civit.load_lock(library / "civit.lock")
    assert lock is not None
    assert {f.dest: f.file_id for f in lock.files}[
        "ComfyUI/models/loras/styleShifter_v21.safetensors"
    ] == 4001022
    assert all(f.size is not None for f in lock.files)  # the files were there to measure

    again = civit_cli("freeze", "ComfyUI")
    assert again.code == 0 and "unchanged:" in again.err
    assert (library / "civit.toml").read_text() == manifest

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("civit.toml", "civit.lock"):
        shutil.copy(library / name, elsewhere / name)
    installed = civit_cli("install", "--frozen", "-f", elsewhere / "civit.toml")
    assert installed.code == 0, installed.err
    expected = relative_files(comfyui)
    del expected["models/loras/mine.safetensors"]
    assert relative_files(elsewhere / "ComfyUI") == expected


def test_freeze_a1111_folder_finds_the_root_above_it(
    civit_cli, fake: FakeCivitai, tmp_path: Path
) -> None:
    webui = tmp_path / "stable-diffusion-webui"
    (webui / "webui.py").parent.mkdir(parents=True)
    (webui / "webui.py").write_text("# A1111\n")
    put(fake, webui / "models" / "Lora" / "add-detail-xl.safetensors", 3000001)
    put(fake, webui / "models" / "Lora" / "old" / "shifter.safetensors", 4001011)
    unknown(webui / "models" / "Lora" / "mine.safetensors")
    put(fake, webui / "models" / "Stable-diffusion" / "other.safetensors", 2300101)
    with civit.Client(base_url=fake.url, token=fake.token) as client:
        result = civit.freeze(
            webui / "models" / "Lora", manifest=tmp_path / "loras.toml", client=client
        )
        assert (result.root, result.layout) == (webui, "a1111")
        assert [(f.folder, f.path.name, f.file.id) for f in result.frozen] == [
            ("models/Lora", "add-detail-xl.safetensors", 3000001),
            ("models/Lora/old", "shifter.safetensors", 4001011),
        ]
        assert [path.name for path, _ in result.unknown] == ["mine.safetensors"]
        lock = civit.load_lock(tmp_path / "loras.lock")
        assert lock is not None
        assert [f.dest for f in lock.files] == [
            "stable-diffusion-webui/models/Lora/add-detail-xl.safetensors",
            "stable-diffusion-webui/models/Lora/old/shifter.safetensors",
        ]
        # The manifest resolves to the same lock through the API, as `civit lock` would.
        assert civit.lock(tmp_path / "loras.toml", upgrade=True, client=client) == lock

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("loras.toml", "loras.lock"):
        shutil.copy(tmp_path / name, elsewhere / name)
    installed = civit_cli("install", "--frozen", "-f", elsewhere / "loras.toml")
    assert installed.code == 0, installed.err
    lora_folder = elsewhere / "stable-diffusion-webui" / "models" / "Lora"
    assert relative_files(lora_folder) == {
        "add-detail-xl.safetensors": fake.file(3000001).content,
        "old/shifter.safetensors": fake.file(4001011).content,  # renamed, in a subfolder
    }


def test_freeze_a_plain_folder_is_flat_and_skips_what_it_cannot_pin(
    civit_cli, fake: FakeCivitai, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    put(fake, models / "a" / "add-detail-xl.safetensors", 3000001)
    put(fake, models / "$HOME" / "easynegative.safetensors", 3000002)
    monkeypatch.chdir(tmp_path)
    run = civit_cli("freeze", "models")
    assert run.code == 0, run.err
    assert "not frozen: " in run.err and "which a manifest path would expand" in run.err
    document = tomllib.loads((tmp_path / "civit.toml").read_text())
    assert document["settings"] == {"root": "models", "layout": "flat"}
    assert [m["dest"] for m in document["model"]] == ["a"]
    assert (
        "# Could not be frozen:\n#   $HOME/easynegative.safetensors: "
        in (tmp_path / "civit.toml").read_text()
    )


def test_freeze_never_replaces_a_hand_written_manifest(
    civit_cli, comfyui: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(comfyui.parent)
    (comfyui.parent / "civit.toml").write_text('[[model]]\nref = "827184"\n')
    run = civit_cli("freeze", "ComfyUI")
    assert run.code == 2
    assert "was not written by civit freeze" in run.err and "-f" in run.err
    assert (comfyui.parent / "civit.toml").read_text() == '[[model]]\nref = "827184"\n'


def test_manifest_file_id_needs_a_version_and_no_selection(tmp_path: Path) -> None:
    manifest = tmp_path / "civit.toml"
    manifest.write_text('[[model]]\nref = "827184"\nfile_id = 2402204\n')
    with pytest.raises(civit.ManifestError, match="file_id needs a ref with a version"):
        civit.load_manifest(manifest)
    manifest.write_text('[[model]]\nref = "827184@2514310"\nfile_id = 2402204\nfp = "fp32"\n')
    with pytest.raises(civit.ManifestError, match="file_id names one file; drop fp"):
        civit.load_manifest(manifest)


def test_freeze_pins_a_file_civitai_scans_refuse_with_allow_unscanned(
    civit_cli, fake: FakeCivitai, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flagged = FakeFile(
        4100001, "flagged.ckpt", make_pickle(4_000, 4100001), format="PickleTensor",
        primary=True, pickle_scan="Danger",
    )  # fmt: skip
    fake.catalog.add(
        FakeModel(410000, "Flagged", "LORA", "someone",
                  [FakeVersion(410001, "v1", "SD 1.5", "2024-01-01T00:00:00Z", files=[flagged])])
    )  # fmt: skip
    put(fake, tmp_path / "models" / "flagged.ckpt", 4100001)
    monkeypatch.chdir(tmp_path)
    run = civit_cli("freeze", "models")
    assert run.code == 0, run.err
    manifest = (tmp_path / "civit.toml").read_text()
    assert "# Civitai's scans do not vouch for it: refusing flagged.ckpt" in manifest
    assert tomllib.loads(manifest)["model"][0]["allow_unscanned"] is True
    lock = civit.load_lock(tmp_path / "civit.lock")
    assert lock is not None and [f.file_id for f in lock.files] == [4100001]


def test_freeze_the_portable_comfyui_folder_roots_at_its_comfyui(
    fake: FakeCivitai, comfyui: Path, tmp_path: Path
) -> None:
    portable = tmp_path / "ComfyUI_windows_portable"
    (portable / "python_embeded").mkdir(parents=True)
    comfyui.rename(portable / "ComfyUI")
    with civit.Client(base_url=fake.url, token=fake.token) as client:
        result = civit.freeze(portable, manifest=tmp_path / "civit.toml", client=client)
    assert (result.root, result.layout) == (portable / "ComfyUI", "comfyui")
    document = tomllib.loads((tmp_path / "civit.toml").read_text())
    assert document["settings"]["root"] == "ComfyUI_windows_portable/ComfyUI"
    assert len(result.frozen) == 4


def test_freeze_folds_dotdot_so_the_lock_stays_relative(
    fake: FakeCivitai, comfyui: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with civit.Client(base_url=fake.url, token=fake.token) as client:
        result = civit.freeze(
            "../library/ComfyUI/models/../", manifest="../library/civit.toml", client=client
        )
    assert result.root == comfyui and len(result.frozen) == 4
    assert tomllib.loads((comfyui.parent / "civit.toml").read_text())["settings"]["root"] == (
        "ComfyUI"
    )
    lock = civit.load_lock(comfyui.parent / "civit.lock")  # a dest with .. would be refused
    assert lock is not None
    assert all(entry.dest.startswith("ComfyUI/models/") for entry in lock.files)


def test_freeze_again_keeps_the_outdated_ignore_list_added_by_hand(
    civit_cli, comfyui: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(comfyui.parent)
    assert civit_cli("freeze", "ComfyUI").code == 0
    manifest = comfyui.parent / "civit.toml"
    manifest.write_text(manifest.read_text() + "\n[outdated]\nignore = [400100, 827184]\n")
    (comfyui / "models" / "loras" / "styleShifter_v21.safetensors").unlink()

    run = civit_cli("freeze", "ComfyUI")
    assert run.code == 0, run.err
    document = tomllib.loads(manifest.read_text())
    assert document["outdated"] == {"ignore": [400100, 827184]}
    assert len(document["model"]) == 3
    assert "unchanged:" in civit_cli("freeze", "ComfyUI").err

    manifest.write_text(manifest.read_text().replace("[400100, 827184]", '["all"]'))
    broken = civit_cli("freeze", "ComfyUI")
    assert broken.code == 2 and "[outdated] ignore must be a list of model ids" in broken.err


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")
def test_freeze_names_a_symlinked_models_folder_it_did_not_search(
    civit_cli, fake: FakeCivitai, comfyui: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big_disk = tmp_path / "big-disk" / "loras"
    put(fake, big_disk / "styleShifter_v10.safetensors", 4001011)
    loras = comfyui / "models" / "loras"
    shutil.rmtree(loras)
    loras.symlink_to(big_disk, target_is_directory=True)
    monkeypatch.chdir(comfyui.parent)

    run = civit_cli("freeze", "ComfyUI")
    assert run.code == 0, run.err
    assert f"not frozen: {Path('ComfyUI/models/loras')}: a symlinked folder, not searched" in (
        run.err
    )
    assert "#   models/loras: a symlinked folder" in (comfyui.parent / "civit.toml").read_text()

    both = civit_cli("freeze", "ComfyUI", "ComfyUI/models/loras")
    assert both.code == 0, both.err
    assert "not frozen" not in both.err
    document = tomllib.loads((comfyui.parent / "civit.toml").read_text())
    assert ("models/loras", "styleShifter_v10.safetensors") in {
        (m["dest"], m["name"]) for m in document["model"]
    }


def test_freeze_says_info_true_when_the_library_has_sidecars(
    civit_cli, fake: FakeCivitai, comfyui: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(comfyui.parent)
    assert civit_cli("freeze", "ComfyUI").code == 0
    assert "info" not in tomllib.loads((comfyui.parent / "civit.toml").read_text())["settings"]

    lora = comfyui / "models" / "loras" / "style" / "my-detailer.safetensors"
    assert civit_cli("identify", lora, "--write-info").code == 0
    assert (lora.parent / "my-detailer.civitai.info").is_file()
    run = civit_cli("freeze", "ComfyUI")
    assert run.code == 0, run.err
    assert "pinned under" in run.err and "with sidecars (info = true)" in run.err
    settings = tomllib.loads((comfyui.parent / "civit.toml").read_text())["settings"]
    assert settings == {"root": "ComfyUI", "layout": "comfyui", "info": True}

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("civit.toml", "civit.lock"):
        shutil.copy(comfyui.parent / name, elsewhere / name)
    installed = civit_cli("install", "--frozen", "-f", elsewhere / "civit.toml")
    assert installed.code == 0, installed.err
    again = elsewhere / "ComfyUI" / "models" / "loras" / "style"
    assert (again / "my-detailer.civitai.info").is_file()
    assert (again / "my-detailer.safetensors").read_bytes() == fake.file(3000001).content


@pytest.mark.parametrize(
    "sidecar",
    ["x.civitai.info", "x.safetensors.civitai.info", "x.json", "x.cm-info.json",
     "x.preview.png", "x.webp"],
)  # fmt: skip
def test_has_sidecars_knows_every_name(tmp_path: Path, sidecar: str) -> None:
    model = tmp_path / "x.safetensors"
    model.write_bytes(b"model")
    assert not has_sidecars(model)
    (tmp_path / sidecar).write_bytes(b"{}")
    assert has_sidecars(model)


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")
def test_freeze_exits_1_for_a_file_it_cannot_read_and_pins_the_others(
    civit_cli, fake: FakeCivitai, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    put(fake, models / "add-detail-xl.safetensors", 3000001)
    (models / "gone.safetensors").symlink_to(tmp_path / "moved-away.safetensors")
    monkeypatch.chdir(tmp_path)
    run = civit_cli("freeze", "models", "--json")
    assert run.code == 1, run.err
    assert f"civit: error: not frozen: {Path('models/gone.safetensors')}: cannot read" in run.err
    document = json.loads(run.out)
    assert document["exit_code"] == 1
    (skipped,) = document["skipped"]
    assert skipped["error"]["exit_code"] == 1 and "cannot read" in skipped["error"]["message"]
    manifest = tomllib.loads((tmp_path / "civit.toml").read_text())
    assert [m["name"] for m in manifest["model"]] == ["add-detail-xl.safetensors"]
    assert "#   gone.safetensors: cannot read" in (tmp_path / "civit.toml").read_text()
