"""``civit hash``, ``civit identify``, ``civit verify`` and the library calls behind them,
against FakeCivitai over loopback and real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

import civit
from civit.hashcache import HashCache
from civit.hashing import digest_bytes
from civit.identification import model_files
from civit.lockfile import Lock, LockedFile, write_lock
from civit.testing import FakeCivitai, make_safetensors

WAI = 2402203  # file of model 827184 (Checkpoint), version 2514310 "v16.0", Illustrious
WAI_VAE = 2402206  # another file of the same version
DETAIL = 3000001  # file of model 328553 (LORA), version 368189 "v1.0", SDXL 1.0


def flipped(content: bytes) -> bytes:
    """``content`` with one byte in the middle changed."""
    middle = len(content) // 2
    return content[:middle] + bytes([content[middle] ^ 0xFF]) + content[middle + 1 :]


def api_calls(fake: FakeCivitai, method: str, prefix: str) -> list[str]:
    return [r.path for r in fake.requests if r.method == method and r.path.startswith(prefix)]


@pytest.fixture
def folder(tmp_path: Path, fake: FakeCivitai) -> Path:
    """Two known files of one version, one of another model, an unknown file, and a
    corrupted copy of a known file (plus a non-model file that must be skipped)."""
    models = tmp_path / "models"
    (models / "loras").mkdir(parents=True)
    (models / "wai.safetensors").write_bytes(fake.file(WAI).content)
    (models / "vae.safetensors").write_bytes(fake.file(WAI_VAE).content)
    (models / "loras" / "detail.safetensors").write_bytes(fake.file(DETAIL).content)
    (models / "mystery.ckpt").write_bytes(os.urandom(50_000))
    (models / "damaged.safetensors").write_bytes(flipped(fake.file(DETAIL).content))
    (models / "notes.txt").write_text("not a model")
    return models


# -- civit hash ------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs coreutils sha256sum")
def test_hash_prints_exactly_what_sha256sum_prints(
    civit_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    names = ["a.safetensors", "b c.ckpt", "back\\slash.pt", "new\nline.pt"]
    for index, name in enumerate(names):
        Path(name).write_bytes(os.urandom(1000 + index))
    run = civit_cli("hash", *names)
    expected = subprocess.run(["sha256sum", *names], capture_output=True, text=True, check=True)
    assert run.code == 0
    assert run.out == expected.stdout
    check = subprocess.run(["sha256sum", "-c"], input=run.out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.skipif(shutil.which("b3sum") is None, reason="needs b3sum")
def test_hash_blake3_matches_b3sum(civit_cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("model.safetensors").write_bytes(os.urandom(3_000_000))
    run = civit_cli("hash", "--algo", "blake3", "model.safetensors")
    expected = subprocess.run(["b3sum", "model.safetensors"], capture_output=True, text=True)
    assert run.code == 0
    assert run.out == expected.stdout


def test_hash_algo_all_prints_a_table_upper_case_like_civitai(civit_cli, tmp_path: Path) -> None:
    hello = tmp_path / "hello.bin"
    hello.write_bytes(b"hello world")
    tensors = tmp_path / "t.safetensors"
    content = make_safetensors(3_000_000, 7)
    tensors.write_bytes(content)
    run = civit_cli("hash", hello, tensors, "--algo", "all")
    assert run.code == 0
    header, hello_row, tensor_row = run.out.splitlines()
    assert header.split() == ["SHA256", "BLAKE3", "CRC32", "AUTOV1", "AUTOV2", "AUTOV3", "PATH"]
    cells = hello_row.split()
    assert cells[2] == "85114A0D"  # Civitai's little-endian CRC32 of "hello world"
    assert cells[2] == zlib.crc32(b"hello world").to_bytes(4, "little").hex().upper()
    assert cells[5] == "-"  # AutoV3 only applies to safetensors files
    assert cells[-1] == str(hello)
    assert tensor_row.split() == [*digest_bytes(content).values(), str(tensors)]
    # Columns line up: every row has its path at the same offset.
    assert hello_row.index(str(hello)) == tensor_row.index(str(tensors)) == header.index("PATH")


def test_hash_json_and_folders(civit_cli, folder: Path) -> None:
    run = civit_cli("hash", folder, "--algo", "sha256,autov2", "--json")
    assert run.code == 0
    documents = json.loads(run.out)
    paths = [Path(d["path"]).relative_to(folder).as_posix() for d in documents]
    # Model extensions only, sorted, recursing into subfolders.
    assert paths == [
        "damaged.safetensors",
        "loras/detail.safetensors",
        "mystery.ckpt",
        "vae.safetensors",
        "wai.safetensors",
    ]
    wai = documents[-1]
    sha256 = digest_bytes((folder / "wai.safetensors").read_bytes(), ["sha256"])["sha256"]
    assert wai["digests"] == {"sha256": sha256, "autov2": sha256[:10]}
    assert wai["size_bytes"] == (folder / "wai.safetensors").stat().st_size


def test_hash_reports_unreadable_files_and_continues(civit_cli, tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    good.write_bytes(b"x" * 100)
    run = civit_cli("hash", tmp_path / "missing.pt", good)
    assert run.code == 1
    assert f"civit: error: cannot read {tmp_path / 'missing.pt'}" in run.err
    assert run.out.endswith(f"  {good}\n")


def test_hash_rejects_unknown_algorithms(civit_cli, tmp_path: Path) -> None:
    run = civit_cli("hash", tmp_path, "--algo", "md5")
    assert run.code == 2
    assert "unknown hash algorithm md5" in run.err


def test_second_hash_answers_from_the_cache_until_the_file_changes(
    civit_cli, tmp_path: Path
) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(os.urandom(2_000_000))

    def hash_json(*extra: str) -> dict[str, object]:
        run = civit_cli("hash", model, "--json", *extra)
        assert run.code == 0
        (document,) = json.loads(run.out)
        return dict(document)

    first = hash_json()
    assert first["cached"] is False
    assert HashCache.default().lookup(model, ["sha256"]) == first["digests"]
    assert hash_json()["cached"] is True
    assert hash_json("--no-cache")["cached"] is False
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = hash_json()
    assert touched["cached"] is False
    assert touched["digests"] == first["digests"]


# -- civit identify ----------------------------------------------------------------------


def test_identify_a_folder_with_one_hash_lookup(civit_cli, fake: FakeCivitai, folder) -> None:
    run = civit_cli("identify", folder)
    assert run.code == 0, run.err
    assert len(api_calls(fake, "POST", "/api/v1/model-versions/by-hash/ids")) == 1
    # Details once per distinct version (two files share version 2514310).
    assert sorted(api_calls(fake, "GET", "/api/v1/model-versions/")) == [
        "/api/v1/model-versions/2514310",
        "/api/v1/model-versions/368189",
    ]
    blocks = run.out.split("\n" + str(folder))
    by_name = {block.strip().split("\n")[0].split("/")[-1]: block for block in blocks}
    assert (
        "WAI-illustrious-SDXL, version v16.0 (Checkpoint, Illustrious)"
        in by_name["wai.safetensors"]
    )
    assert "https://civitai.com/models/827184?modelVersionId=2514310" in by_name["vae.safetensors"]
    assert "Detail Tweaker XL, version v1.0 (LORA, SDXL 1.0)" in by_name["detail.safetensors"]
    assert "unknown to Civitai" in by_name["mystery.ckpt"]
    assert "unknown to Civitai" in by_name["damaged.safetensors"]
    assert "5 files: 3 known, 2 unknown" in run.err


def test_identify_json(civit_cli, fake: FakeCivitai, folder: Path) -> None:
    run = civit_cli("identify", folder / "wai.safetensors", folder / "mystery.ckpt", "--json")
    assert run.code == 0
    known, unknown = json.loads(run.out)
    assert known["status"] == "known"
    assert known["sha256"] == fake.file(WAI).sha256
    assert (known["model_id"], known["version_id"]) == (827184, 2514310)
    assert known["model_name"] == "WAI-illustrious-SDXL"
    assert known["model_type"] == "Checkpoint" and known["base_model"] == "Illustrious"
    assert unknown["status"] == "unknown" and unknown["url"] is None


def test_identify_write_info_sidecars_are_version_records(
    civit_cli, fake: FakeCivitai, folder: Path
) -> None:
    run = civit_cli("identify", folder, "--write-info")
    assert run.code == 0
    sidecar = folder / "loras" / "detail.civitai.info"
    record = json.loads(sidecar.read_text())
    assert (record["id"], record["modelId"]) == (368189, 328553)
    assert record["files"][0]["hashes"]["SHA256"] == fake.file(DETAIL).sha256
    parsed = civit.Version.from_json(record)
    assert parsed is not None and parsed.model_name == "Detail Tweaker XL"
    assert not (folder / "mystery.civitai.info").exists()
    assert not (folder / "damaged.civitai.info").exists()


def test_identify_waits_out_a_429_with_retry_after(civit_cli, fake: FakeCivitai, folder) -> None:
    fake.fail_api(429, times=1, retry_after="1")
    run = civit_cli("identify", folder / "wai.safetensors", "--json")
    assert run.code == 0, run.err
    assert json.loads(run.out)[0]["status"] == "known"
    statuses = [r.status for r in fake.requests if r.path.endswith("/by-hash/ids")]
    assert statuses == [429, 200]


def test_identify_unreadable_file_exits_1(civit_cli, tmp_path: Path) -> None:
    run = civit_cli("identify", tmp_path / "nope.safetensors")
    assert run.code == 1
    assert "cannot read" in run.err


def test_identify_library(fake: FakeCivitai, folder: Path) -> None:
    with civit.Client(base_url=fake.url) as client:
        found = civit.identify(folder / "wai.safetensors", client=client)
        assert found.status == "known" and found.version is not None
        assert found.version.name == "v16.0"
        assert found.url == "https://civitai.com/models/827184?modelVersionId=2514310"
        results = civit.identify_files(folder, client=client)
        with pytest.raises(civit.CivitError, match="cannot read"):
            civit.identify(folder / "missing.safetensors", client=client)
    assert [r.status for r in results] == ["unknown", "known", "unknown", "known", "known"]


# -- civit verify ------------------------------------------------------------------------


def test_verify_against_civitai_and_sidecars(civit_cli, fake: FakeCivitai, folder: Path) -> None:
    # A sidecar written while the file was intact, then the file is damaged.
    assert civit_cli("identify", folder / "wai.safetensors", "--write-info").code == 0
    damaged = folder / "wai.safetensors"
    spare = folder / "spare"
    spare.write_bytes(flipped(fake.file(WAI).content))
    spare.replace(damaged)
    fake.clear_log()
    run = civit_cli("verify", folder)
    assert run.code == 7, run.err
    assert len(api_calls(fake, "POST", "/api/v1/model-versions/by-hash/ids")) == 1
    lines = {line.split(": ")[0].split()[-1]: line for line in run.out.splitlines()}
    assert lines[str(folder / "vae.safetensors")].startswith("ok ")
    assert lines[str(folder / "loras" / "detail.safetensors")].startswith("ok ")
    mismatch = lines[str(damaged)]
    actual = digest_bytes(damaged.read_bytes(), ["sha256"])["sha256"]
    assert mismatch.startswith("MISMATCH")
    assert f"expected {fake.file(WAI).sha256}, got {actual}" in mismatch
    assert ".civitai.info" in mismatch
    # Without a sidecar, a damaged file looks like any file Civitai never saw.
    assert lines[str(folder / "damaged.safetensors")].startswith("unknown ")
    assert lines[str(folder / "mystery.ckpt")].startswith("unknown ")
    assert "5 files: 2 ok, 1 mismatch, 2 unknown" in run.err


def test_verify_json(civit_cli, fake: FakeCivitai, folder: Path) -> None:
    run = civit_cli("verify", folder / "wai.safetensors", folder / "mystery.ckpt", "--json")
    assert run.code == 0
    ok, unknown = json.loads(run.out)
    assert (ok["status"], ok["source"], ok["version_id"]) == ("ok", "civitai", 2514310)
    assert ok["digests"]["sha256"] == fake.file(WAI).sha256
    assert unknown["status"] == "unknown"


def write_test_lock(fake: FakeCivitai, project: Path) -> Path:
    entries = []
    for ref, file_id, dest in (("827184@2514310", WAI, "models/wai.safetensors"),
                               ("328553", DETAIL, "models/loras/detail.safetensors")):  # fmt: skip
        file = fake.file(file_id)
        entries.append(
            LockedFile(
                ref=ref,
                model_id=827184 if file_id == WAI else 328553,
                version_id=2514310 if file_id == WAI else 368189,
                file_id=file_id,
                name=Path(dest).name,
                dest=dest,
                sha256=file.sha256,
                blake3=file.digests["blake3"],
            )
        )
    lock_path = project / "civit.lock"
    write_lock(Lock("sha256:" + "0" * 64, tuple(entries)), lock_path)
    return lock_path


def test_verify_against_a_lock_uses_no_network(
    civit_cli, fake: FakeCivitai, folder: Path, monkeypatch
) -> None:
    lock_path = write_test_lock(fake, folder.parent)
    monkeypatch.chdir(folder.parent)
    (folder / "loras" / "detail.safetensors").write_bytes(flipped(fake.file(DETAIL).content))
    run = civit_cli("verify", "models", "--lock", "civit.lock")
    assert fake.requests == []
    assert run.code == 7
    lines = {line.split(": ")[0].split()[-1]: line for line in run.out.splitlines()}
    assert lines["models/wai.safetensors"].startswith("ok ")
    assert "matches civit.lock (SHA256, BLAKE3)" in lines["models/wai.safetensors"]
    assert "SHA256 differs from civit.lock" in lines["models/loras/detail.safetensors"]
    assert "not in civit.lock" in lines["models/mystery.ckpt"]
    # Without paths: every locked file; a missing one is an error (exit 1).
    (folder / "loras" / "detail.safetensors").unlink()
    everything = civit_cli("verify", "--lock", lock_path, "--json")
    assert everything.code == 1
    statuses = [(Path(d["path"]).name, d["status"]) for d in json.loads(everything.out)]
    assert statuses == [("wai.safetensors", "ok"), ("detail.safetensors", "error")]
    assert "cannot read" in everything.err
    assert fake.requests == []


def test_verify_store_entries_against_their_names(civit_cli, fake: FakeCivitai, tmp_path) -> None:
    content = fake.file(DETAIL).content
    sha256 = fake.file(DETAIL).sha256.lower()
    good = tmp_path / "store" / "sha256" / sha256[:2] / sha256
    good.parent.mkdir(parents=True)
    good.write_bytes(content)
    bad_name = "ab" + "0" * 62
    bad = tmp_path / "store" / "sha256" / "ab" / bad_name
    bad.parent.mkdir(parents=True)
    bad.write_bytes(content)
    run = civit_cli("verify", tmp_path / "store")
    assert run.code == 7
    assert fake.requests == []
    assert f"ok        {good}: matches its store name (SHA256)" in run.out
    assert f"expected {bad_name.upper()}, got {sha256.upper()}" in run.out


def test_store_entries_are_searched_for_as_model_files_are(tmp_path: Path) -> None:
    """Not inside hidden or package folders below the folder given (a venv's thousands
    of files are never walked), but in a hidden folder given itself."""
    entry = Path("sha256", "ab", "ab" + "0" * 62)
    for folder in ("store", ".cache/store", "venv/lib/site-packages/x", "web/node_modules/x"):
        (tmp_path / folder / entry).parent.mkdir(parents=True)
        (tmp_path / folder / entry).write_bytes(b"")
    assert model_files(tmp_path) == [tmp_path / "store" / entry]
    assert model_files(tmp_path / ".cache") == [tmp_path / ".cache" / "store" / entry]


def test_verify_needs_something_to_check(civit_cli) -> None:
    run = civit_cli("verify")
    assert run.code == 2
    assert "nothing to verify" in run.err


def test_verify_library(fake: FakeCivitai, tmp_path: Path) -> None:
    record = fake.file(WAI)
    path = tmp_path / "wai.safetensors"
    path.write_bytes(record.content)
    hashes = civit.Hashes.from_json(record.hashes)
    checked = civit.verify(path, hashes)
    assert checked["sha256"] == record.sha256
    assert set(checked) == {"sha256", "blake3", "crc32", "autov1", "autov2", "autov3"}
    path.write_bytes(flipped(record.content))
    with pytest.raises(civit.IntegrityError) as caught:
        civit.verify(path, hashes)
    assert caught.value.expected == record.sha256
    assert caught.value.actual == digest_bytes(path.read_bytes(), ["sha256"])["sha256"]
    with pytest.raises(civit.UsageError):
        civit.verify(path, civit.Hashes())
