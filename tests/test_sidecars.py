"""Sidecars: what civit writes beside a model for each WebUI, and how it reads them back."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

import civit
from civit import Client, RetryPolicy, get, verify_files
from civit.identification import identify_files, write_identified_sidecars
from civit.sidecars import choose_preview, sidecar_version, stem
from civit.testing import FakeCivitai, FakeImage, FakeModel, FakeVersion, make_png
from civit.testing.catalog import FakeFile, make_safetensors

FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
FAST_ENGINE = {"retry_base": 0.01, "stall_timeout": 2.0}
LORA = 3000001  # add-detail-xl.safetensors, model 328553, version 368189


@pytest.fixture
def client(fake: FakeCivitai) -> Iterator[Client]:
    with Client(base_url=fake.url, token=fake.token, retry=FAST) as api:
        yield api


def webui(root: Path, *entries: str) -> Path:
    for entry in entries:
        path = root / entry
        if entry.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
    return root


A1111 = ("webui.py", "embeddings/", "models/Stable-diffusion/")


def test_a1111_gets_info_card_and_a_pg13_preview(client: Client, tmp_path: Path) -> None:
    root = webui(tmp_path, *A1111)
    result = get("328553", client=client, root=root, write_info=True, **FAST_ENGINE)
    folder = root / "models/Lora"
    assert result.sidecars == (
        folder / "add-detail-xl.civitai.info",
        folder / "add-detail-xl.json",
        folder / "add-detail-xl.preview.png",
    )
    info = json.loads((folder / "add-detail-xl.civitai.info").read_text())
    assert (info["id"], info["modelId"]) == (368189, 328553)
    assert info["files"][0]["hashes"]["SHA256"]
    card = json.loads((folder / "add-detail-xl.json").read_text())
    assert card == {
        "description": "Adds detail; weight 0.5 to 1.",
        "activation text": "add detail",
        "preferred weight": 0,
        "notes": "https://civitai.com/models/328553?modelVersionId=368189 (Detail Tweaker XL v1.0)",
        "sd version": "SDXL",
    }
    # The first image is X, the second a video: the PG-13 PNG is the preview.
    assert (folder / "add-detail-xl.preview.png").read_bytes() == make_png(8, 8, (40, 120, 200))
    assert not (folder / "add-detail-xl.safetensors.civitai.info").exists()


def test_get_fetches_the_model_record_once(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    # Choosing the newest version, the {creator} subfolder and the A1111 card all
    # want model 328553's record: one request serves them.
    root = webui(tmp_path, *A1111)
    fake.clear_log()
    result = get(
        "328553", client=client, root=root, write_info=True, subfolder="{creator}", **FAST_ENGINE
    )
    assert result.path.parent == root / "models/Lora" / fake.model(328553).creator
    assert result.path.with_name("add-detail-xl.json") in result.sidecars
    fetched = [r.path for r in fake.requests if r.path == "/api/v1/models/328553"]
    assert len(fetched) == 1


def test_preview_level_and_none(client: Client, tmp_path: Path) -> None:
    explicit = get(
        "328553",
        client=client,
        dest=tmp_path / "x",
        write_info=True,
        preview_nsfw="x",
        **FAST_ENGINE,
    )
    assert explicit.sidecars[-1] == tmp_path / "x/add-detail-xl.preview.jpg"
    assert explicit.sidecars[-1].read_bytes().startswith(b"\xff\xd8\xff")
    plain = get(
        "328553",
        client=client,
        dest=tmp_path / "n",
        write_info=True,
        preview_nsfw="none",
        **FAST_ENGINE,
    )
    assert [p.name for p in plain.sidecars] == ["add-detail-xl.civitai.info"]
    pg = get(
        "328553",
        client=client,
        dest=tmp_path / "p",
        write_info=True,
        preview_nsfw="pg",
        **FAST_ENGINE,
    )
    assert pg.sidecars[-1].name == "add-detail-xl.preview.jpg"  # the 4th image is PG
    with pytest.raises(civit.UsageError, match="preview NSFW level"):
        get("328553", client=client, dest=tmp_path / "e", write_info=True, preview_nsfw="nsfw")


def test_choose_preview_rules() -> None:
    images = [
        {"url": "http://x/1.mp4", "nsfwLevel": 1, "type": "video"},
        {"url": "http://x/2.webm", "nsfwLevel": 1},
        {"url": "http://x/3.jpeg", "nsfwLevel": 16, "type": "image"},
        {"url": "http://x/4.jpeg", "nsfw": True},
        {"url": "http://x/5.jpeg", "nsfw": "None"},
    ]
    assert choose_preview(images, 2) == images[4]
    assert choose_preview(images, 16) == images[2]
    assert choose_preview([], 16) is None
    assert choose_preview("nonsense", 16) is None


def test_the_card_keeps_what_the_user_wrote(client: Client, tmp_path: Path) -> None:
    root = webui(tmp_path, *A1111)
    folder = root / "models/Lora"
    folder.mkdir(parents=True)
    (folder / "add-detail-xl.json").write_text(
        json.dumps({"activation text": "my words", "preferred weight": 0.7, "mine": [1]})
    )
    get("328553", client=client, root=root, write_info=True, **FAST_ENGINE)
    card = json.loads((folder / "add-detail-xl.json").read_text())
    assert card["activation text"] == "my words"
    assert card["preferred weight"] == 0.7
    assert card["mine"] == [1]
    assert card["sd version"] == "SDXL" and card["description"]


def test_a_user_preview_is_kept(client: Client, tmp_path: Path) -> None:
    (tmp_path / "add-detail-xl.png").write_bytes(b"mine")
    result = get("328553", client=client, dest=tmp_path, write_info=True, **FAST_ENGINE)
    assert [p.name for p in result.sidecars] == ["add-detail-xl.civitai.info"]
    assert (tmp_path / "add-detail-xl.png").read_bytes() == b"mine"


def test_forge_cards_know_flux(client: Client, tmp_path: Path) -> None:
    forge = webui(tmp_path / "forge", "webui.py", "modules_forge/", "embeddings/")
    a1111 = webui(tmp_path / "a1111", *A1111)
    for root, level in ((forge, "Flux"), (a1111, None)):
        result = get(
            "99010", client=client, root=root, format="GGUF", write_info=True, **FAST_ENGINE
        )
        card = json.loads(result.path.with_name(f"{stem(result.path)}.json").read_text())
        assert card.get("sd version") == level


def test_sdnext_gets_the_model_record(client: Client, fake: FakeCivitai, tmp_path: Path) -> None:
    root = webui(tmp_path, "webui.py", "installer.py")
    result = get("328553", client=client, root=root, write_info=True, **FAST_ENGINE)
    record = json.loads((root / "models/Lora/add-detail-xl.json").read_text())
    assert record["id"] == 328553 and record["modelVersions"][0]["id"] == 368189
    assert record["creator"]["username"] == "LyCORIS"
    assert result.sidecars[1] == root / "models/Lora/add-detail-xl.json"

    mine = root / "models/Lora/other.json"
    mine.write_text('{"my": "notes"}')
    fake.add_model(
        FakeModel(
            777001,
            "Other",
            "LORA",
            "me",
            [
                FakeVersion(
                    777101,
                    "v1",
                    "SDXL 1.0",
                    "2025-01-01T00:00:00Z",
                    files=[
                        FakeFile(
                            7770001, "other.safetensors", make_safetensors(5_000, 1), primary=True
                        )
                    ],
                )
            ],
        )
    )
    kept = get("777001", client=client, root=root, write_info=True, **FAST_ENGINE)
    assert json.loads(mine.read_text()) == {"my": "notes"}
    assert "kept other.json: it is not a Civitai model record" in kept.notes


def test_stability_matrix_cm_info(client: Client, fake: FakeCivitai, tmp_path: Path) -> None:
    root = webui(tmp_path, "Models/", "Packages/", "settings.json")
    folder = root / "Models/Lora"
    folder.mkdir(parents=True)
    (folder / "add-detail-xl.cm-info.json").write_text(json.dumps({"UserTitle": "Detail!"}))
    get("328553", client=client, root=root, write_info=True, **FAST_ENGINE)
    info = json.loads((folder / "add-detail-xl.cm-info.json").read_text())
    lora = fake.file(LORA)
    assert info["ModelId"] == 328553 and info["VersionId"] == 368189
    assert info["ModelName"] == "Detail Tweaker XL" and info["VersionName"] == "v1.0"
    assert info["ModelType"] == "LORA" and info["BaseModel"] == "SDXL 1.0"
    assert info["Nsfw"] is False and info["Tags"] == []
    assert info["TrainedWords"] == ["add detail"]
    assert info["AuthorUsername"] == "LyCORIS"
    assert info["RemoteFileId"] == LORA and info["RemoteFileName"] == "add-detail-xl.safetensors"
    assert info["Hashes"] == {
        "SHA256": lora.hashes["SHA256"],
        "CRC32": lora.hashes["CRC32"],
        "BLAKE3": lora.hashes["BLAKE3"],
    }
    assert info["FileMetadata"] == {"fp": "fp16", "size": "pruned", "format": "SafeTensor"}
    assert datetime.fromisoformat(info["ImportedAt"]).tzinfo is not None
    assert info["UserTitle"] == "Detail!"
    assert "Stats" in info and all(isinstance(v, int) for v in info["Stats"].values())


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges")
@pytest.mark.parametrize("layout", ["a1111", "stabilitymatrix"])
def test_a_card_planted_as_a_symlink_never_copies_what_it_points_to(
    civit_cli, fake: FakeCivitai, tmp_path: Path, layout: str
) -> None:
    """Someone who can write to the shared model folder plants ``x.json`` (or
    ``x.cm-info.json``) -> the victim's private JSON: merging "the keys already there"
    would copy its secrets into a card anyone can read."""
    secret = tmp_path / "victim" / "config.json"
    secret.parent.mkdir()
    private = {"auths": {"registry": {"auth": "SECRET"}}, "UserTitle": "SECRET title"}
    secret.write_text(json.dumps(private))
    secret.chmod(0o600)
    if layout == "a1111":
        root, folder, card = webui(tmp_path / "webui", *A1111), "models/Lora", "x.json"
    else:
        root = webui(tmp_path / "sm", "Models/", "Packages/", "settings.json")
        folder, card = "Models/Lora", "x.cm-info.json"
    (root / folder).mkdir(parents=True, exist_ok=True)
    planted = root / folder / card.replace("x.", "add-detail-xl.")
    planted.symlink_to(secret)
    got = civit_cli("get", "328553", "--root", root, "--info", "--preview-nsfw", "none")
    assert got.code == 0, got.err
    # And identify --write-info over a library holding a planted pair.
    (root / folder / "lib.safetensors").write_bytes(fake.file(LORA).content)
    (root / folder / card.replace("x.", "lib.")).symlink_to(secret)
    found = civit_cli("identify", root / folder, "--write-info", "--preview-nsfw", "none")
    assert found.code == 0, found.err
    for written in (root / folder).iterdir():
        if written.is_file() and not written.is_symlink():
            assert b"SECRET" not in written.read_bytes(), written.name
    assert json.loads(secret.read_text())["auths"]  # and the secret itself is untouched


def test_previews_are_fetched_safely(client: Client, fake: FakeCivitai, tmp_path: Path) -> None:
    get("328553", client=client, dest=tmp_path, write_info=True, **FAST_ENGINE)
    images = [entry for entry in fake.requests if entry.path.startswith("/images/")]
    assert [entry.path for entry in images] == ["/images/9000004/9000004.png"]
    assert all("authorization" not in entry.headers for entry in images)


def test_an_html_preview_is_refused(client: Client, fake: FakeCivitai, tmp_path: Path) -> None:
    page = FakeImage(9100001, b"<!DOCTYPE html><html>login</html>", "text/html")
    fake.add_model(
        FakeModel(
            777002,
            "Sneaky",
            "LORA",
            "me",
            [
                FakeVersion(
                    777102,
                    "v1",
                    "SDXL 1.0",
                    "2025-01-01T00:00:00Z",
                    files=[
                        FakeFile(
                            7770002, "sneaky.safetensors", make_safetensors(5_000, 2), primary=True
                        )
                    ],
                    images=[page],
                )
            ],
        )
    )
    result = get("777002", client=client, dest=tmp_path, write_info=True, **FAST_ENGINE)
    assert [p.name for p in result.sidecars] == ["sneaky.civitai.info"]
    assert any("not a PNG, JPEG or WebP image" in note for note in result.notes)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sneaky.civitai.info",
        "sneaky.safetensors",
    ]


def test_fetch_public_never_sends_the_token(client: Client, fake: FakeCivitai) -> None:
    fake.clear_log()
    with pytest.raises(civit.NetworkError):
        client.fetch_public(f"{fake.url}/api/v1/models/1", limit=1000)
    assert all("authorization" not in entry.headers for entry in fake.requests)
    with pytest.raises(civit.ResponseError, match="more than the 10 allowed"):
        client.fetch_public(f"{fake.cdn_url}/images/9000004/9000004.png", limit=10)
    head = client.fetch_public(
        f"{fake.cdn_url}/images/9000004/9000004.png", limit=1000, first_bytes=8
    )
    assert head.data == b"\x89PNG\r\n\x1a\n"


# -- reading sidecars -----------------------------------------------------------------


@pytest.fixture
def lora_file(fake: FakeCivitai, tmp_path: Path) -> Path:
    path = tmp_path / "lib" / "detail.safetensors"
    path.parent.mkdir()
    path.write_bytes(fake.file(LORA).content)
    return path


def version_record(fake: FakeCivitai, client: Client) -> dict[str, object]:
    return dict(client.get_version(368189).raw)


@pytest.mark.parametrize("name", ["detail.civitai.info", "detail.safetensors.civitai.info"])
def test_both_sidecar_names_are_read(
    client: Client, fake: FakeCivitai, lora_file: Path, name: str
) -> None:
    (lora_file.parent / name).write_text(json.dumps(version_record(fake, client)))
    found = sidecar_version(lora_file)
    assert found is not None and found.id == 368189
    fake.clear_log()
    (check,) = verify_files(lora_file, client=client, cache=False)
    assert (check.status, check.source, check.version_id) == ("ok", "sidecar", 368189)
    (known,) = identify_files(lora_file, client=client, cache=False)
    assert (known.status, known.source, known.version_id) == ("known", "sidecar", 368189)
    assert fake.requests == []  # neither needed the API


def test_the_new_name_is_read_first(client: Client, fake: FakeCivitai, lora_file: Path) -> None:
    (lora_file.parent / "detail.civitai.info").write_text(json.dumps(version_record(fake, client)))
    (lora_file.parent / "detail.safetensors.civitai.info").write_text('{"id": 1, "name": "old"}')
    found = sidecar_version(lora_file)
    assert found is not None and found.id == 368189


def test_an_empty_sidecar_means_unknown(client: Client, fake: FakeCivitai, lora_file: Path) -> None:
    (lora_file.parent / "detail.civitai.info").write_text("{}")
    assert sidecar_version(lora_file) is None
    (known,) = identify_files(lora_file, client=client, cache=False)
    assert (known.status, known.source) == ("known", "civitai")


def test_verify_offline_against_a_sidecar_exits_7_on_damage(
    civit_cli, fake: FakeCivitai, lora_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Client(base_url=fake.url, token=fake.token) as api:
        (lora_file.parent / "detail.civitai.info").write_text(json.dumps(version_record(fake, api)))
    # Civitai is unreachable from here on.
    monkeypatch.setenv("CIVITAI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CIVIT_RETRIES", "1")
    ok = civit_cli("verify", lora_file)
    assert ok.code == 0, ok.err
    assert "matches its .civitai.info" in ok.out
    data = bytearray(lora_file.read_bytes())
    data[-1] ^= 0xFF
    lora_file.write_bytes(bytes(data))
    damaged = civit_cli("verify", lora_file, "--no-cache")
    assert damaged.code == 7, damaged.err
    assert "MISMATCH" in damaged.out and ".civitai.info" in damaged.out


def test_a_stale_sidecar_is_not_damage_when_civitai_knows_the_bytes(
    client: Client, fake: FakeCivitai, lora_file: Path
) -> None:
    record = dict(client.get_version(2514310).raw)  # the checkpoint's, not this LoRA's
    (lora_file.parent / "detail.civitai.info").write_text(json.dumps(record))
    (check,) = verify_files(lora_file, client=client, cache=False)
    assert (check.status, check.source, check.version_id) == ("ok", "civitai", 368189)
    assert "left from another file" in check.reason


def test_identify_write_info_backfills_a_library(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    root = webui(tmp_path / "webui", *A1111)
    loras = root / "models/Lora"
    loras.mkdir(parents=True)
    (loras / "detail.safetensors").write_bytes(fake.file(LORA).content)
    (root / "embeddings/neg.safetensors").write_bytes(fake.file(3000002).content)
    (loras / "mine.safetensors").write_bytes(make_safetensors(3_000, 5))
    fake.clear_log()
    found = identify_files(root, client=client, cache=False)
    written = write_identified_sidecars(found, client=client)
    lookups = [e for e in fake.requests if e.path.endswith("/by-hash/ids")]
    assert len(lookups) == 1
    by_name = {item.path.name: item for item in written}
    assert [p.name for p in by_name["detail.safetensors"].sidecars] == [
        "detail.civitai.info",
        "detail.json",
        "detail.preview.png",
    ]
    assert [p.name for p in by_name["neg.safetensors"].sidecars] == [
        "neg.civitai.info",
        "neg.json",
    ]
    assert by_name["mine.safetensors"].sidecars == ()
    neg_card = json.loads((root / "embeddings/neg.json").read_text())
    assert neg_card["sd version"] == "SD1" and neg_card["activation text"] == "easynegative"
    # A second pass knows every file from its sidecar: no lookup at all for them.
    fake.clear_log()
    again = identify_files(root, client=client, cache=False)
    assert [item.source for item in again if item.status == "known"] == ["sidecar", "sidecar"]
    hashes_asked = [e for e in fake.requests if e.path.endswith("/by-hash/ids")]
    assert len(hashes_asked) == 1  # only for mine.safetensors


def test_cli_identify_write_info(civit_cli, fake: FakeCivitai, tmp_path: Path) -> None:
    root = webui(tmp_path, "comfy/")
    (root / "models/loras").mkdir(parents=True)
    lora = root / "models/loras/detail.safetensors"
    lora.write_bytes(fake.file(LORA).content)
    run = civit_cli("identify", root / "models", "--write-info", "--preview-nsfw", "none")
    assert run.code == 0, run.err
    assert f"wrote {root / 'models/loras/detail.civitai.info'}" in run.err
    assert not (root / "models/loras/detail.preview.png").exists()
    assert civit_cli("identify", lora, "--write-info", "--preview-nsfw", "nope").code == 2


def test_cli_get_info_from_the_config(civit_cli, tmp_path: Path, isolated_user_dirs: Path) -> None:
    (isolated_user_dirs / "config.toml").write_text('info = true\npreview_nsfw = "none"\n')
    run = civit_cli("get", "328553", "--dest", tmp_path)
    assert run.code == 0, run.err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "add-detail-xl.civitai.info",
        "add-detail-xl.safetensors",
    ]
    (tmp_path / "again").mkdir()
    off = civit_cli("get", "328553", "--dest", tmp_path / "again", "--no-info")
    assert off.code == 0 and [p.name for p in (tmp_path / "again").iterdir()] == [
        "add-detail-xl.safetensors"
    ]


def test_install_with_info_writes_sidecars_once(
    fake: FakeCivitai, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIVITAI_BASE_URL", fake.url)
    monkeypatch.setenv("CIVITAI_API_TOKEN", fake.token)
    root = webui(tmp_path / "ComfyUI", "comfy/")
    manifest = civit.write_manifest(
        tmp_path / "civit.toml",
        ["328553", {"ref": "7808", "dest": "plain"}],
        settings={"root": "ComfyUI", "info": True, "subfolder": "{base_model}"},
    )
    report = civit.install(manifest)
    assert report.exit_code == 0, report.as_json()
    lora, embedding = report.results
    assert lora.path == root / "models/loras/SDXL 1.0/add-detail-xl.safetensors"
    assert [p.name for p in lora.sidecars] == [
        "add-detail-xl.civitai.info",
        "add-detail-xl.preview.png",
    ]
    assert embedding.path == root / "plain/easynegative.safetensors"
    assert [p.name for p in embedding.sidecars] == ["easynegative.civitai.info"]
    assert lora.as_json()["sidecars"] == [str(p) for p in lora.sidecars]
    fake.clear_log()
    again = civit.install(manifest, frozen=True)
    assert [r.status for r in again.results] == ["present", "present"]
    assert all(r.sidecars == () for r in again.results)
    assert fake.requests == []


def test_the_library_takes_plain_paths_and_makes_its_own_client(
    client: Client, fake: FakeCivitai, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like every public function: str paths work, and ``client=None`` means a client
    from the environment (here it fetches the preview), not "no preview"."""
    root = webui(tmp_path, *A1111)
    assert civit.detect_layout(str(root)) is not None
    version = client.get_version(368189)
    model = tmp_path / "mine.safetensors"
    model.write_bytes(b"x")
    monkeypatch.setenv("CIVITAI_BASE_URL", fake.url)
    written = civit.write_sidecars(str(model), version, card="a1111")
    assert [path.name for path in written.written] == [
        "mine.civitai.info",
        "mine.json",
        "mine.preview.png",
    ]
    found = civit.sidecar_version(str(model))
    assert found is not None and found.id == 368189
