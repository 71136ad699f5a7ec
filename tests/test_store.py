"""The content-addressed store: paths, links, copies, and installs sharing one copy."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import civit
from civit import Client, RetryPolicy
from civit.cli import main
from civit.errors import CivitError
from civit.hashcache import HashCache
from civit.store import Store, expected_from_store_path, link_or_copy
from civit.testing import FakeCivitai

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
ENGINE = {"retry_base": 0.01, "stall_timeout": 2.0}
LORA = 3000001
LORA_NAME = "add-detail-xl.safetensors"


@pytest.fixture
def client(fake: FakeCivitai) -> Iterator[Client]:
    with Client(base_url=fake.url, token=fake.token, retry=FAST) as api:
        yield api


def put_entry(store: Store, content: bytes) -> Path:
    entry = store.path_for(hashlib.sha256(content).hexdigest())
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_bytes(content)
    return entry


def test_store_paths_are_lower_case_sha256_fanned_out(tmp_path: Path) -> None:
    digest = "AB" + "CD" * 31
    path = Store(tmp_path).path_for(digest)
    assert path == tmp_path / "sha256" / "ab" / digest.lower()
    with pytest.raises(CivitError, match="not a SHA256"):
        Store(tmp_path).path_for("../../etc/passwd")


def test_a_store_entry_names_its_own_expected_digest(tmp_path: Path) -> None:
    entry = put_entry(Store(tmp_path), b"model bytes")
    expected = expected_from_store_path(entry)
    assert expected is not None
    assert expected.sha256 == hashlib.sha256(b"model bytes").hexdigest().upper()
    assert expected.check({"sha256": hashlib.sha256(b"model bytes").hexdigest()}) == ("sha256",)
    assert expected_from_store_path(tmp_path / "models" / entry.name) is None  # not in sha256/ab
    assert expected_from_store_path(tmp_path / "sha256" / "ab" / "model.safetensors") is None


def test_link_then_no_op_then_replace_a_stale_target(tmp_path: Path) -> None:
    entry = put_entry(Store(tmp_path / "store"), b"weights" * 100)
    target = tmp_path / "ComfyUI/models/loras/x.safetensors"
    assert link_or_copy(entry, target) == "linked"
    assert target.stat().st_ino == entry.stat().st_ino
    assert link_or_copy(entry, target) == "present"
    target.unlink()
    target.write_bytes(b"an older file")
    assert link_or_copy(entry, target) == "linked"
    assert target.read_bytes() == b"weights" * 100
    assert entry.stat().st_nlink == 2
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.safetensors"]  # no temp left


def test_across_devices_the_file_is_copied(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if (
        not shm.is_dir()
        or not os.access(shm, os.W_OK)
        or shm.stat().st_dev == tmp_path.stat().st_dev
    ):
        pytest.skip("needs a writable /dev/shm on another file system")
    with tempfile.TemporaryDirectory(dir=shm) as other:
        entry = put_entry(Store(Path(other)), b"weights" * 100)
        target = tmp_path / "models/x.safetensors"
        assert link_or_copy(entry, target) == "copied"
        assert target.read_bytes() == entry.read_bytes()
        assert target.stat().st_ino != entry.stat().st_ino


def test_a_damaged_entry_is_dropped(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    entry = put_entry(store, b"good bytes")
    digest = entry.name
    cache = HashCache(tmp_path / "cache.sqlite3")
    assert store.verified_digests(digest, cache=cache) == {"sha256": digest.upper()}
    entry.chmod(0o644)  # verified entries are read-only; rot does not ask
    entry.write_bytes(b"rotten bytes")
    assert store.verified_digests(digest, cache=cache) is None
    assert not entry.exists()
    assert store.verified_digests(digest, cache=cache) is None


def two_webuis(tmp_path: Path) -> list[civit.Manifest]:
    """The same LoRA and checkpoint wanted by a ComfyUI and an A1111 project."""
    refs = ["328553", "827184@2514310"]
    manifests = []
    for name, layout in (("comfy", "comfyui"), ("a1111", "a1111")):
        folder = tmp_path / name
        folder.mkdir()
        manifests.append(
            civit.write_manifest(
                folder / "civit.toml", refs, settings={"root": "webui", "layout": layout}
            )
        )
    return manifests


def test_two_roots_share_one_copy(fake: FakeCivitai, client: Client, tmp_path: Path) -> None:
    comfy, a1111 = two_webuis(tmp_path)
    store = tmp_path / "store"
    first = civit.install(comfy, client=client, store=store, **ENGINE)
    assert [r.source for r in first.results] == ["civitai", "civitai"]
    assert [r.link for r in first.results] == ["linked", "linked"]
    fake.clear_log()
    second = civit.install(a1111, client=client, store=store, **ENGINE)
    assert second.exit_code == 0
    assert [r.source for r in second.results] == ["store", "store"]
    assert fake.cdn_requests() == []  # the bytes were already in the store
    lora_comfy = tmp_path / "comfy/webui/models/loras" / LORA_NAME
    lora_a1111 = tmp_path / "a1111/webui/models/Lora" / LORA_NAME
    entry = Store(store).path_for(fake.file(LORA).sha256)
    assert lora_comfy.stat().st_ino == lora_a1111.stat().st_ino == entry.stat().st_ino
    assert entry.stat().st_nlink >= 3
    assert lora_a1111.read_bytes() == fake.file(LORA).content
    assert sorted(p.name for p in entry.parent.iterdir()) == [entry.name]  # no .part left

    fake.clear_log()
    again = civit.install(a1111, frozen=True, store=store)
    assert again.count("present") == 2
    assert fake.requests == []


def test_a_damaged_store_entry_is_fetched_again(
    fake: FakeCivitai, client: Client, tmp_path: Path
) -> None:
    comfy, a1111 = two_webuis(tmp_path)
    store = tmp_path / "store"
    civit.install(comfy, client=client, store=store, **ENGINE)
    entry = Store(store).path_for(fake.file(LORA).sha256)
    (tmp_path / "comfy/webui/models/loras" / LORA_NAME).unlink()
    entry.chmod(0o644)  # verified entries are read-only; rot does not ask
    entry.write_bytes(b"bit rot")  # the inode (and its cache row) changes
    fake.clear_log()
    report = civit.install(a1111, client=client, store=store, **ENGINE)
    lora = report.results[0]
    assert (lora.status, lora.source) == ("installed", "civitai")
    assert fake.bytes_served(LORA) == fake.file(LORA).length
    assert entry.read_bytes() == fake.file(LORA).content


def test_store_from_the_manifest_and_the_command_line(
    fake: FakeCivitai, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    monkeypatch.setenv("CIVITAI_BASE_URL", fake.url)
    monkeypatch.setenv("CIVITAI_API_TOKEN", fake.token)
    store = tmp_path / "store"
    comfy = civit.write_manifest(
        tmp_path / "comfy.toml", ["328553"], settings={"root": "comfy", "layout": "comfyui",
                                                         "store": "store"}
    )  # fmt: skip
    a1111 = civit.write_manifest(
        tmp_path / "a1111.toml", ["328553"], settings={"root": "a1111", "layout": "a1111"}
    )
    codes = []
    for args in (["-f", str(comfy.path)], ["-f", str(a1111.path), "--store", str(store)]):
        with pytest.raises(SystemExit) as exit_:
            main(["install", *args])
        codes.append(exit_.value.code)
    assert codes == [0, 0]
    err = capsys.readouterr().err
    assert "from Civitai, hardlinked" in err and "from the store, hardlinked" in err
    assert (tmp_path / "comfy/models/loras" / LORA_NAME).stat().st_ino == (
        tmp_path / "a1111/models/Lora" / LORA_NAME
    ).stat().st_ino
    assert len(fake.cdn_requests(LORA)) == 1
