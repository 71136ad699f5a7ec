"""Never lose a user's file: what is in the way stays, variants get their own names,
unscanned files are refused. Real FakeCivitai, library and CLI."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import civit
from civit import Client, RetryPolicy
from civit.errors import FileConflictError, ScanRefusedError
from civit.testing import (
    FakeCivitai,
    FakeFile,
    FakeModel,
    FakeVersion,
    make_pickle,
    make_safetensors,
)

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
ENGINE = {"retry_base": 0.01, "stall_timeout": 2.0}
PRIMARY, FULL = 2402203, 2402204  # 827184@2514310: both "waiIllustriousSDXL_v160.safetensors"
PLAIN = "waiIllustriousSDXL_v160.safetensors"
TAGGED = "waiIllustriousSDXL_v160_full_fp32.safetensors"
USERS_OWN = b"my own merge, not on Civitai" * 1000


@pytest.fixture
def client(fake: FakeCivitai) -> Iterator[Client]:
    with Client(base_url=fake.url, token=fake.token, retry=FAST) as api:
        yield api


def renamed_model(model_id: int = 880001) -> FakeModel:
    """Two versions whose files share one name, as many creators upload them."""
    versions = [
        FakeVersion(
            model_id + version,
            f"v{version}",
            "SDXL 1.0",
            f"2025-0{version}-01T00:00:00.000Z",
            files=[
                FakeFile(
                    model_id + 10 + version,
                    "style.safetensors",
                    make_safetensors(20_000 + version, model_id + version),
                    primary=True,
                )
            ],
        )
        for version in (2, 1)
    ]
    return FakeModel(model_id, "Same Name Style", "LORA", "someone", versions)


# -- a user's file at the target ----------------------------------------------------


def test_a_users_file_at_the_target_is_kept(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    mine = tmp_path / PLAIN
    mine.write_bytes(USERS_OWN)
    with pytest.raises(FileConflictError) as error:
        civit.get("827184", client=client, dest=tmp_path, **ENGINE)
    assert mine.read_bytes() == USERS_OWN
    assert fake.bytes_served(PRIMARY) == 0  # refused before a byte was fetched
    message = str(error.value)
    digest = hashlib.sha256(USERS_OWN).hexdigest().upper()
    assert str(mine) in message and digest in message
    assert f"{PLAIN} (file {PRIMARY} of model 827184)" in message  # the file that was to go there
    for way_out in ("--overwrite", "--name", "--dest"):
        assert way_out in message
    assert (error.value.exit_code, error.value.sha256) == (1, digest)
    assert sorted(p.name for p in tmp_path.iterdir()) == [PLAIN]  # no .part left behind


def test_overwrite_replaces_and_name_saves_beside(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    mine = tmp_path / PLAIN
    mine.write_bytes(USERS_OWN)
    beside = civit.get("827184", client=client, dest=tmp_path, name="wai.safetensors", **ENGINE)
    assert beside.path == tmp_path / "wai.safetensors"
    assert mine.read_bytes() == USERS_OWN
    replaced = civit.get("827184", client=client, dest=tmp_path, overwrite=True, **ENGINE)
    assert replaced.status == "downloaded"
    assert mine.read_bytes() == fake.file(PRIMARY).content


def test_another_models_file_with_the_same_name_is_kept(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    lora = civit.get("328553", client=client, dest=tmp_path, name=PLAIN, **ENGINE)
    with pytest.raises(FileConflictError, match="not known to be civit's download of model 827184"):
        civit.get("827184", client=client, dest=tmp_path, **ENGINE)
    assert lora.path.read_bytes() == fake.file(3000001).content


def test_an_earlier_version_of_the_same_model_is_replaced(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    model = renamed_model()
    fake.add_model(model)
    old = civit.get(f"{model.id}@{model.id + 1}", client=client, dest=tmp_path, **ENGINE)
    new = civit.get(str(model.id), client=client, dest=tmp_path, **ENGINE)
    assert old.path == new.path and new.status == "downloaded"
    assert new.path.read_bytes() == fake.file(model.id + 12).content
    assert any("/by-hash/" in r.path for r in fake.requests)  # Civitai said whose it was


def test_a_sidecar_naming_the_model_makes_the_file_civits(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    (tmp_path / PLAIN).write_bytes(USERS_OWN)
    sidecar = tmp_path / "waiIllustriousSDXL_v160.civitai.info"
    sidecar.write_text(json.dumps({"id": 2300001, "modelId": 827184}), encoding="utf-8")
    fake.clear_log()
    result = civit.get("827184", client=client, dest=tmp_path, **ENGINE)
    assert result.status == "downloaded"
    assert not any("/by-hash/" in r.path for r in fake.requests)  # known offline


# -- variants with one name -----------------------------------------------------------


def test_same_named_variants_live_side_by_side_and_reruns_find_both(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    pruned = civit.get("827184", client=client, dest=tmp_path, **ENGINE)
    full = civit.get("827184", client=client, dest=tmp_path, size="full", **ENGINE)
    assert (pruned.path.name, full.path.name) == (PLAIN, TAGGED)
    assert pruned.path.read_bytes() == fake.file(PRIMARY).content
    assert full.path.read_bytes() == fake.file(FULL).content
    fake.clear_log()
    again = [
        civit.get("827184", client=client, dest=tmp_path, **ENGINE),
        civit.get("827184", client=client, dest=tmp_path, fp="fp32", **ENGINE),
        civit.get("827184", client=client, dest=tmp_path, size="pruned", **ENGINE),
    ]
    assert [r.status for r in again] == ["present"] * 3
    assert [r.path.name for r in again] == [PLAIN, TAGGED, PLAIN]
    assert fake.cdn_requests() == []


def test_variants_first_chosen_in_either_order_keep_their_names(
    client: Client, tmp_path: Path
) -> None:
    full = civit.get("827184@2514310", client=client, dest=tmp_path, fp="fp32", **ENGINE)
    pruned = civit.get("827184@2514310", client=client, dest=tmp_path, **ENGINE)
    assert (full.path.name, pruned.path.name) == (TAGGED, PLAIN)


def test_install_keeps_variants_apart_and_users_files_alone(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "m").mkdir()
    (project / "m" / "add-detail-xl.safetensors").write_bytes(USERS_OWN)
    manifest = civit.write_manifest(
        project / "civit.toml",
        ["827184", {"ref": "827184", "fp": "fp32"}, "328553"],
        settings={"dest": "m"},
    )
    report = civit.install(manifest, client=client, **ENGINE)
    statuses = [(r.status, r.path.name) for r in report.results]
    assert statuses == [
        ("installed", PLAIN),
        ("installed", TAGGED),
        ("failed", "add-detail-xl.safetensors"),
    ]
    assert report.exit_code == 1
    assert 'name = "NEW_NAME"' in (report.results[2].error or "")
    assert (project / "m" / "add-detail-xl.safetensors").read_bytes() == USERS_OWN
    # overwrite = true on the entry (it does not stale the lock) lets it through.
    manifest = civit.write_manifest(
        project / "civit.toml",
        ["827184", {"ref": "827184", "fp": "fp32"}, {"ref": "328553", "overwrite": True}],
        settings={"dest": "m"},
    )
    report = civit.install(manifest, frozen=True, client=client, **ENGINE)
    assert [r.status for r in report.results] == ["present", "present", "installed"]


def test_install_through_the_store_keeps_a_users_file(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    (tmp_path / "m").mkdir()
    mine = tmp_path / "m" / "add-detail-xl.safetensors"
    mine.write_bytes(USERS_OWN)
    manifest = civit.write_manifest(tmp_path / "civit.toml", ["328553"], settings={"dest": "m"})
    report = civit.install(manifest, client=client, store=tmp_path / "store", **ENGINE)
    assert report.results[0].status == "failed" and mine.read_bytes() == USERS_OWN
    report = civit.install(
        manifest, client=client, store=tmp_path / "store", overwrite=True, **ENGINE
    )
    assert report.results[0].link == "linked"
    assert mine.read_bytes() == fake.file(3000001).content


def test_install_replaces_what_its_previous_lock_put_there(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    entry = {"ref": "827184@2300001", "name": "wai.safetensors"}
    manifest = civit.write_manifest(tmp_path / "civit.toml", [entry], settings={"dest": "m"})
    civit.install(manifest, client=client, **ENGINE)
    manifest = civit.write_manifest(
        tmp_path / "civit.toml", [{**entry, "ref": "827184@2514310"}], settings={"dest": "m"}
    )
    fake.clear_log()
    report = civit.install(manifest, client=client, **ENGINE)
    assert report.results[0].status == "installed"
    assert (tmp_path / "m" / "wai.safetensors").read_bytes() == fake.file(PRIMARY).content
    assert not any("/by-hash/" in r.path for r in fake.requests)  # the old lock knew it


# -- scans -----------------------------------------------------------------------------


def unscanned_model() -> FakeModel:
    version = FakeVersion(
        880102,
        "v1",
        "SD 1.5",
        "2025-01-01T00:00:00.000Z",
        files=[
            FakeFile(880103, "fresh.ckpt", make_pickle(5_000, 880103), format="PickleTensor",
                     fp=None, size=None, primary=True, pickle_scan="Danger"),
        ],
    )  # fmt: skip
    return FakeModel(880101, "Fresh Upload", "Checkpoint", "someone", [version])


def test_unscanned_files_are_refused_unless_allowed(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.add_model(unscanned_model())
    with pytest.raises(ScanRefusedError, match="pickle scan says Danger") as error:
        civit.get("880101", client=client, dest=tmp_path, **ENGINE)
    assert error.value.exit_code == 4 and error.value.scans == {"pickle scan": "Danger"}
    assert fake.bytes_served(880103) == 0 and list(tmp_path.iterdir()) == []
    result = civit.get("880101", client=client, dest=tmp_path, allow_unscanned=True, **ENGINE)
    assert result.status == "downloaded"
    assert any("can run code" in warning for warning in result.warnings)


def test_lock_refuses_unscanned_files_unless_the_manifest_allows(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.add_model(unscanned_model())
    manifest = civit.write_manifest(tmp_path / "civit.toml", ["880101"], settings={"dest": "m"})
    with pytest.raises(ScanRefusedError, match=r"civit.toml:\d+: \[\[model\]\] #1"):
        civit.lock(manifest, client=client)
    allowed = civit.write_manifest(
        tmp_path / "civit.toml",
        [{"ref": "880101", "allow_unscanned": True}],
        settings={"dest": "m"},
    )
    assert civit.lock(allowed, client=client).files[0].file_id == 880103


# -- the command line --------------------------------------------------------------------


def test_cli_keeps_a_users_file_and_offers_the_ways_out(civit_cli, tmp_path: Path) -> None:
    (tmp_path / PLAIN).write_bytes(USERS_OWN)
    run = civit_cli("get", "827184", "--dest", tmp_path)
    assert run.code == 1
    assert "already exists and is not known to be civit's download of model 827184" in run.err
    assert "--overwrite" in run.err and "--name" in run.err and "--dest" in run.err
    run = civit_cli("get", "827184", "--dest", tmp_path, "--name", "wai-pruned.safetensors")
    assert run.code == 0, run.err
    assert (tmp_path / "wai-pruned.safetensors").is_file()
    run = civit_cli("get", "827184", "--dest", tmp_path, "--overwrite")
    assert run.code == 0, run.err
    assert (tmp_path / PLAIN).read_bytes() != USERS_OWN


def test_cli_name_without_the_extension_is_saved_with_a_warning(civit_cli, tmp_path: Path) -> None:
    run = civit_cli("get", "328553", "--dest", tmp_path, "--name", "detail")
    assert run.code == 0, run.err
    assert (tmp_path / "detail").is_file()
    assert (
        "civit: warning: detail does not end in .safetensors: WebUIs list model files by "
        "their extension (use --name detail.safetensors)"
    ) in run.err
    run = civit_cli("get", "328553", "--dest", tmp_path, "--name", "Detail.SafeTensors")
    assert run.code == 0 and "warning" not in run.err, run.err


def test_cli_name_needs_one_plain_name_and_one_ref(civit_cli, tmp_path: Path) -> None:
    run = civit_cli("get", "827184", "328553", "--dest", tmp_path, "--name", "x.safetensors")
    assert run.code == 2 and "exactly one REF" in run.err
    run = civit_cli("get", "328553", "--dest", tmp_path, "--name", "../x.safetensors")
    assert run.code == 2 and "not a plain file name" in run.err


def test_cli_variants_and_pickle_warning(civit_cli, tmp_path: Path) -> None:
    run = civit_cli("get", "827184", "--size", "full", "--dest", tmp_path, "--json")
    assert run.code == 0, run.err
    assert json.loads(run.out)[0]["path"].endswith(TAGGED)
    run = civit_cli("get", "147759", "--dest", tmp_path)  # 4x-UltraSharp.pt, a PickleTensor
    assert run.code == 0, run.err
    assert "civit: warning: 4x-UltraSharp.pt is a PickleTensor (pickle) file" in run.err


def test_cli_allow_unscanned(civit_cli, fake: FakeCivitai, tmp_path: Path) -> None:
    fake.add_model(unscanned_model())
    run = civit_cli("get", "880101", "--dest", tmp_path)
    assert run.code == 4 and "pickle scan says Danger" in run.err
    assert "--allow-unscanned" in run.err
    run = civit_cli("get", "880101", "--dest", tmp_path, "--allow-unscanned")
    assert run.code == 0, run.err


def test_a_file_in_the_way_stays_when_civitai_cannot_be_asked(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    (tmp_path / PLAIN).write_bytes(USERS_OWN)
    file = next(f for f in client.get_version(2514310).files if f.id == PRIMARY)
    fake.fail_api(503, times=100)
    with pytest.raises(FileConflictError):
        civit.download(file, client=client, dest=tmp_path, **ENGINE)
    assert (tmp_path / PLAIN).read_bytes() == USERS_OWN
