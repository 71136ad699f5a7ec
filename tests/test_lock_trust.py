"""Issues 13.5 and 13.15: civit.lock is untrusted input, and one edit re-resolves one entry.

A tampered lock (hand-edited in a pull request, or by anyone with write access to the
repository) cannot send a file outside the manifest's folders, cannot smuggle a path
in as a digest, and is not called "up to date"; ``civit lock --check`` compares every
value with Civitai. Lock entries are matched to manifest entries by their own content,
so adding one entry to a long manifest costs one entry's API calls.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import pytest

import civit
from civit import Client, ManifestError
from civit.lockfile import Lock
from civit.resolution import check_lock_fits
from civit.testing import FakeCivitai
from hostile import serve_folder
from json_schemas import SCHEMAS, assert_matches

TWO = ["328553", "827184@2514310"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


def locked_project(project: Path, client: Client, refs: list[str] = TWO) -> civit.Manifest:
    manifest = civit.write_manifest(project / "civit.toml", refs, settings={"dest": "models"})
    civit.lock(manifest, client=client)
    return manifest


def edit_lock(manifest: civit.Manifest, old: str, new: str, *, count: int = 1) -> None:
    text = manifest.lock_path.read_text()
    assert old in text, old
    manifest.lock_path.write_text(text.replace(old, new, count))


def api_requests(fake: FakeCivitai) -> list[str]:
    return [r.path for r in fake.requests if r.origin == "api"]


# -- 13.5: fields that are not what they claim to be ------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('dest = "models/add', 'dest = "models/../../add', "climbs out of its folder"),
        ('sha256 = "', 'sha256 = "../../../etc/passwd', "sha256 must be 64 hex digits"),
        ('blake3 = "', 'blake3 = "{sha256}', "blake3 must be 64 hex digits"),
        ("size_kb = ", "size_kb = inf #", "size_kb must be a size in KiB"),
        ("file_id = ", "file_id = -", "file_id must not be negative"),
        ('entry_hash = "sha256:', 'entry_hash = "md5:', "entry_hash must be sha256"),
    ],
)
def test_a_malformed_lock_field_is_damage_not_a_path(
    civit_cli, fake: FakeCivitai, client: Client, project: Path, old: str, new: str, message: str
) -> None:
    manifest = locked_project(project, client)
    edit_lock(manifest, old, new)
    fake.clear_log()
    run = civit_cli("install", "-f", manifest.path, "--frozen")
    assert run.code == 2
    assert "civit.lock is damaged: [[file]] #1" in run.err and message in run.err
    assert fake.requests == []


@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_install_frozen_refuses_a_dest_outside_the_manifest_folders(
    civit_cli, fake: FakeCivitai, client: Client, project: Path, tmp_path: Path, where: str
) -> None:
    manifest = locked_project(project, client)
    outside = tmp_path / "evil" if where == "absolute" else project / "elsewhere"
    dest = (outside / "add-detail-xl.safetensors").as_posix()
    if where == "relative":
        dest = "elsewhere/add-detail-xl.safetensors"
    edit_lock(manifest, 'dest = "models/add-detail-xl.safetensors"', f'dest = "{dest}"')
    run = civit_cli("install", "-f", manifest.path, "--frozen")
    assert run.code == 2
    assert "civit.lock does not match civit.toml: [[file]] #1 (328553): its dest" in run.err
    assert not outside.exists()
    assert not (project / "models").exists()  # nothing installed at all


@pytest.mark.parametrize(
    ("dest", "name"),
    [
        ("ComfyUI/custom_nodes/evil/__init__.py", "__init__.py"),  # code ComfyUI imports
        ("ComfyUI/main.py", "main.py"),
        ("ComfyUI/add-detail-xl.safetensors", "add-detail-xl.safetensors"),
        ("add-detail-xl.safetensors", "add-detail-xl.safetensors"),  # out of the root
    ],
)
def test_a_dest_under_root_must_be_one_of_its_model_folders(
    civit_cli, fake: FakeCivitai, client: Client, project: Path, dest: str, name: str
) -> None:
    """Under ``root`` the WebUI's model folders are allowed, not the whole root: a
    tampered lock with its own digests (and a mirror serving its bytes) must not plant
    code the WebUI runs."""
    (project / "ComfyUI" / "custom_nodes").mkdir(parents=True)
    manifest = civit.write_manifest(
        project / "civit.toml", ["328553"], settings={"root": "ComfyUI", "layout": "comfyui"}
    )
    civit.lock(manifest, client=client)
    edit_lock(manifest, "models/loras/", "models/checkpoints/")  # another model folder
    assert civit_cli("install", "-f", manifest.path, "--frozen").code == 0
    locked = "ComfyUI/models/checkpoints/add-detail-xl.safetensors"
    edit_lock(manifest, f'dest = "{locked}"', f'dest = "{dest}"')
    edit_lock(manifest, 'name = "add-detail-xl.safetensors"', f'name = "{name}"')
    run = civit_cli("install", "-f", manifest.path, "--frozen", "--overwrite")
    assert run.code == 2
    assert "lies outside the model folders of" in run.err
    assert not (project / dest).exists()


def test_a_subfolder_template_puts_locked_files_below_the_dest(
    civit_cli, fake: FakeCivitai, client: Client, project: Path
) -> None:
    """``subfolder`` with ``dest``: civit lock wrote such dests, install --frozen
    refused every one, and civit lock resolved them again on every run."""
    manifest = civit.write_manifest(
        project / "civit.toml",
        [{"ref": "827184@2514310", "dest": "other", "subfolder": "{creator}"}, "328553"],
        settings={"dest": "models", "subfolder": "{base_model}"},
    )
    civit.lock(manifest, client=client)
    text = manifest.lock_path.read_text()
    assert 'dest = "models/SDXL 1.0/add-detail-xl.safetensors"' in text
    run = civit_cli("install", "-f", manifest.path, "--frozen")
    assert run.code == 0, run.err
    fake.clear_log()
    assert civit_cli("lock", "-f", manifest.path).code == 0
    assert api_requests(fake) == []  # both entries stand
    edit_lock(manifest, "models/SDXL 1.0/", "elsewhere/SDXL 1.0/")
    refused = civit_cli("install", "-f", manifest.path, "--frozen")
    assert refused.code == 2 and "is not in" in refused.err


def test_a_folder_the_webui_settings_name_may_hold_locked_files(
    civit_cli, fake: FakeCivitai, client: Client, project: Path, tmp_path: Path
) -> None:
    webui = project / "webui"
    (webui / "models").mkdir(parents=True)
    (webui / "webui.py").write_text("")
    (tmp_path / "disk").mkdir()
    (webui / "webui-user.sh").write_text(
        f'export COMMANDLINE_ARGS="--lora-dir {tmp_path / "disk/loras"}"\n'
    )
    manifest = civit.write_manifest(project / "civit.toml", ["328553"], settings={"root": "webui"})
    civit.lock(manifest, client=client)
    locked = (tmp_path / "disk/loras/add-detail-xl.safetensors").as_posix()
    assert f'dest = "{locked}"' in manifest.lock_path.read_text()
    run = civit_cli("install", "-f", manifest.path, "--frozen")
    assert run.code == 0, run.err
    assert (tmp_path / "disk/loras/add-detail-xl.safetensors").is_file()
    fake.clear_log()
    assert civit_cli("lock", "-f", manifest.path).code == 0
    assert api_requests(fake) == []  # the entry stands: nothing resolved again
    edit_lock(manifest, locked, locked.replace("disk/loras", "evil"))
    refused = civit_cli("install", "-f", manifest.path, "--frozen")
    assert refused.code == 2
    assert "lies outside the model folders of" in refused.err
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("drop", "has 1 [[file]] entries for 2 [[model]] entries"),
        ("swap", "its ref is '827184@2514310', but the manifest entry says '328553'"),
        ("ref", "its ref is '23906'"),
        ("pin", "its version_id is 2300001, but the manifest entry pins 2514310"),
        ("entry", "it was resolved from another version of this [[model]] entry"),
    ],
)
def test_install_frozen_refuses_lock_entries_that_are_not_the_manifests(
    civit_cli, fake: FakeCivitai, client: Client, project: Path, tamper: str, message: str
) -> None:
    manifest = locked_project(project, client)
    text = manifest.lock_path.read_text()
    head, first, second = text.split("[[file]]")
    if tamper == "drop":
        manifest.lock_path.write_text(head + "[[file]]" + first)
    elif tamper == "swap":
        manifest.lock_path.write_text(head + "[[file]]" + second + "\n[[file]]" + first)
    elif tamper == "ref":
        edit_lock(manifest, 'ref = "328553"', 'ref = "23906"')
    elif tamper == "pin":
        edit_lock(manifest, "version_id = 2514310", "version_id = 2300001")
    else:
        other = re.findall(r'entry_hash = "(sha256:[0-9a-f]+)"', text)
        edit_lock(manifest, other[0], other[1])
    run = civit_cli("install", "-f", manifest.path, "--frozen")
    assert run.code == 2
    assert message in run.err
    assert not (project / "models").exists()


# -- 13.5: a tampered digest ------------------------------------------------------------


def tamper_sha256(fake: FakeCivitai, manifest: civit.Manifest) -> str:
    """Point the LoRA's entry at other bytes: another file's SHA256, its BLAKE3 removed."""
    real = fake.file(3000001)
    evil = fake.file(3000003).sha256.upper()
    edit_lock(manifest, real.sha256.upper(), evil)
    edit_lock(manifest, f'blake3 = "{real.digests["blake3"].upper()}"\n', "")
    return evil


def test_lock_does_not_call_a_tampered_lock_up_to_date(
    civit_cli, fake: FakeCivitai, client: Client, project: Path
) -> None:
    manifest = locked_project(project, client)
    honest = manifest.lock_path.read_text()
    tamper_sha256(fake, manifest)
    fake.clear_log()
    run = civit_cli("lock", "-f", manifest.path)
    assert run.code == 0
    assert "up to date" not in run.err
    assert manifest.lock_path.read_text() == honest  # resolved again from Civitai
    assert api_requests(fake) == ["/api/v1/model-versions/368189"]  # the incomplete entry


def test_lock_check_finds_every_tampered_value(
    civit_cli, fake: FakeCivitai, client: Client, project: Path
) -> None:
    manifest = locked_project(project, client)
    clean = civit_cli("lock", "-f", manifest.path, "--check")
    assert clean.code == 0, clean.err
    assert "civit.lock matches what civit.toml resolves to (2 files)" in clean.err

    evil = tamper_sha256(fake, manifest)
    edit_lock(manifest, "size_kb = 195.3125", "size_kb = 195.0")
    before = manifest.lock_path.read_text()
    run = civit_cli("lock", "-f", manifest.path, "--check", "--json")
    assert run.code == 1
    document = json.loads(run.out)
    assert_matches(document, SCHEMAS["lock --check"])
    assert document["matches"] is False
    found = {(d["index"], d["key"]): (d["locked"], d["resolved"]) for d in document["differences"]}
    assert found[(1, "sha256")] == (evil, fake.file(3000001).sha256.upper())
    assert found[(1, "blake3")] == (None, fake.file(3000001).digests["blake3"].upper())
    assert (1, "size_kb") in found
    assert len(found) == 3
    assert "[[file]] #1 (328553): sha256: the lock says" in run.err
    assert manifest.lock_path.read_text() == before  # --check writes nothing


def test_lock_check_compares_the_exact_size_with_civitais_size_kb(
    civit_cli, fake: FakeCivitai, client: Client, project: Path
) -> None:
    manifest = locked_project(project, client, ["328553"])
    assert civit_cli("install", "-f", manifest.path).code == 0  # learns size = 200000
    assert civit_cli("lock", "-f", manifest.path, "--check").code == 0
    edit_lock(manifest, "size = 200000", "size = 900000")
    run = civit_cli("lock", "-f", manifest.path, "--check")
    assert run.code == 1 and "size: the lock says 900000" in run.err


def test_lock_check_needs_a_lock(civit_cli, project: Path) -> None:
    civit.write_manifest(project / "civit.toml", ["328553"], settings={"dest": "m"})
    run = civit_cli("lock", "-f", project / "civit.toml", "--check")
    assert run.code == 2 and "no " in run.err and "civit.lock to check" in run.err


def test_install_relocks_a_tampered_digest_before_the_mirror_can_serve_it(
    civit_cli, fake: FakeCivitai, client: Client, project: Path, tmp_path: Path
) -> None:
    """The mirror serves whatever bytes are named by the lock's SHA256: the attack of
    13.5 is a lock naming the wrong bytes. Without --frozen the entry is resolved
    again (it lacks a BLAKE3), so the right bytes arrive from Civitai."""
    manifest = locked_project(project, client, ["328553"])
    evil = tamper_sha256(fake, manifest)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / evil.lower()).write_bytes(fake.file(3000003).content)
    with serve_folder(mirror) as url:
        run = civit_cli("install", "-f", manifest.path, "--mirror", url + "/{sha256}")
    assert run.code == 0, run.err
    installed = project / "models" / "add-detail-xl.safetensors"
    assert installed.read_bytes() == fake.file(3000001).content
    assert Lock.loads(manifest.lock_path.read_text()).files[0].sha256 == (
        fake.file(3000001).sha256.upper()
    )


# -- 13.15: incremental locking ----------------------------------------------------------


def test_adding_one_entry_to_1000_resolves_only_that_one(
    fake: FakeCivitai, client: Client, project: Path
) -> None:
    models = fake.add_synthetic_models(1001)
    refs = [f"@{model.versions[0].id}" for model in models]
    manifest = civit.write_manifest(project / "civit.toml", refs[:1000], settings={"dest": "m"})
    started = time.monotonic()
    first = civit.lock(manifest, client=client)
    assert len(api_requests(fake)) == 1000
    fake.clear_log()

    assert civit.lock(manifest, client=client) == first
    assert api_requests(fake) == []

    grown = civit.write_manifest(project / "civit.toml", refs, settings={"dest": "m"})
    second = civit.lock(grown, client=client)
    assert api_requests(fake) == [f"/api/v1/model-versions/{models[1000].versions[0].id}"]
    assert second.files[:1000] == first.files
    fake.clear_log()

    edited = civit.write_manifest(
        project / "civit.toml",
        [*refs[:500], {"ref": refs[500], "name": "renamed.safetensors"}, *refs[501:]],
        settings={"dest": "m"},
    )
    third = civit.lock(edited, client=client)
    assert api_requests(fake) == [f"/api/v1/model-versions/{models[500].versions[0].id}"]
    assert third.files[500].name == "renamed.safetensors"
    assert time.monotonic() - started < 30


def test_a_lock_without_entry_hashes_is_kept_while_the_manifest_is_unchanged(
    fake: FakeCivitai, client: Client, project: Path
) -> None:
    manifest = locked_project(project, client)
    old_format = re.sub(r'entry_hash = ".*"\n', "", manifest.lock_path.read_text())
    manifest.lock_path.write_text(old_format.replace("version = 2", "version = 1"))
    fake.clear_log()
    upgraded = civit.lock(manifest, client=client)
    assert api_requests(fake) == []  # same manifest: kept, and now with entry hashes
    assert all(f.entry_hash for f in upgraded.files)
    assert "version = 2" in manifest.lock_path.read_text()


def test_check_lock_fits_is_the_library_view(client: Client, project: Path) -> None:
    manifest = locked_project(project, client)
    current = civit.load_lock(manifest.lock_path)
    assert current is not None
    check_lock_fits(manifest, current)
    moved = dataclasses.replace(current.files[0], dest="/etc/add-detail-xl.safetensors")
    with pytest.raises(ManifestError, match="is not in"):
        check_lock_fits(manifest, Lock(current.manifest_hash, (moved, current.files[1])))
    assert civit.check_lock(manifest, client=client) == ()
