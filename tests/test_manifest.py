"""civit.toml, civit.lock, `civit lock` and `civit install` against FakeCivitai.

Mirrors are plain loopback static servers (``http.server``), as a CI cache would be.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import civit
from civit import Client, ManifestError, RetryPolicy
from civit.lockfile import Lock, LockedFile, write_lock
from civit.manifest import load_manifest
from civit.mirrors import check_mirror_template, mirror_url
from civit.testing import FakeCivitai

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
ENGINE = {"retry_base": 0.01, "stall_timeout": 2.0}

SIX = [
    "827184",  # checkpoint, newest version (2514310)
    "328553",  # LoRA
    "7808",  # embedding (a "Negative" file)
    "23906",  # VAE
    "147759",  # upscaler
    "urn:air:sdxl:checkpoint:civitai:827184@2300001",  # the older checkpoint, pinned by AIR
]
SIX_PATHS = {
    2402203: "models/checkpoints/waiIllustriousSDXL_v160.safetensors",
    3000001: "models/loras/add-detail-xl.safetensors",
    3000002: "models/embeddings/easynegative.safetensors",
    3000003: "models/vae/kl-f8-anime2.safetensors",
    3000004: "models/upscale_models/4x-UltraSharp.pt",
    2300101: "models/checkpoints/waiIllustriousSDXL_v150.safetensors",
}
COMFY = {"root": "ComfyUI", "layout": "comfyui"}


@pytest.fixture
def client(fake: FakeCivitai) -> Iterator[Client]:
    with Client(base_url=fake.url, token=fake.token, retry=FAST) as api:
        yield api


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


def six_manifest(project: Path) -> civit.Manifest:
    return civit.write_manifest(project / "civit.toml", SIX, settings=COMFY)


# -- the manifest ------------------------------------------------------------------


def test_manifest_parses_settings_and_entries(project: Path) -> None:
    (project / "civit.toml").write_text(
        """
# models for the render farm
[settings]
root = "ComfyUI"
layout = "comfyui"
jobs = 3
connections = 4
store = "store"
mirror = "http://cache.local/{sha256}"

[[model]]
ref = "827184@2514310"
fp = "fp32"
size = "full"

[[model]]
ref = "urn:air:sdxl:lora:civitai:328553@368189"
dest = "models/loras/style"
name = "detail.safetensors"
"""
    )
    manifest = load_manifest(project / "civit.toml")
    settings = manifest.settings
    assert settings.root == project / "ComfyUI"
    assert settings.store == project / "store"
    assert (settings.layout, settings.jobs, settings.connections) == ("comfyui", 3, 4)
    first, second = manifest.entries
    assert (first.parsed.model_id, first.parsed.version_id) == (827184, 2514310)
    assert (first.fp, first.size, first.line) == ("fp32", "full", 11)
    assert second.dest == project / "ComfyUI/models/loras/style"  # relative to root
    assert (second.name, second.index, second.line) == ("detail.safetensors", 2, 16)
    assert manifest.lock_path == project / "civit.lock"
    assert manifest.content_hash.startswith("sha256:")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[[model]]\nref = "1"\n\n[[model]]\nref = "328553"\nfb = "fp16"\n',
         ":4: [[model]] #2 (328553): unknown key 'fb'"),
        ('[[model]]\nref = "328553"\nfp = 16\n',
         "[[model]] #1 (328553): fp must be a non-empty string"),
        ('[[model]]\nref = "328553"\nsize = "tiny"\n', "size must be pruned or full"),
        ('[[model]]\nfp = "fp16"\n', ":1: [[model]] #1: ref is required"),
        ('[[model]]\nref = "not a ref!"\n', "[[model]] #1 (not a ref!): not a model reference"),
        ('[[model]]\nref = "1"\nname = "../x.pt"\n', "is not a plain file name"),
        ("[settings]\njobs = 0\n", ":1: [settings]: jobs must be a whole number from 1 to 64"),
        ("[settings]\nconnections = true\n", "connections must be a whole number"),
        ('[settings]\nlayout = "invokeai"\n', "unknown layout 'invokeai'"),
        ('[settings]\nmirror = "http://cache/models"\n', "it has no {sha256}"),
        ('[setings]\nroot = "x"\n', "top level: unknown key 'setings'"),
        ("[[model]\nref = 1\n", "invalid TOML"),
    ],
)  # fmt: skip
def test_manifest_errors_name_the_entry_and_line(project: Path, body: str, expected: str) -> None:
    path = project / "civit.toml"
    path.write_text(body)
    with pytest.raises(ManifestError) as error:
        load_manifest(path)
    assert expected in str(error.value)
    assert error.value.exit_code == 2


def test_missing_manifest_says_how_to_start(project: Path) -> None:
    with pytest.raises(ManifestError, match=r"no manifest at .*civit\.toml"):
        load_manifest(project / "civit.toml")


def test_manifest_hash_ignores_formatting_and_tuning(project: Path) -> None:
    path = project / "civit.toml"
    path.write_text('[settings]\nroot = "C"\n\n[[model]]\nref = "1"\nfp = "fp16"\n')
    original = load_manifest(path).content_hash
    path.write_text(
        '# a comment\n[settings]\njobs = 8\nroot   =   "C"  # where\n'
        'mirror = "http://m/{sha256}"\n[[model]]\nfp = "fp16"\nref = "1"\n'
    )
    assert load_manifest(path).content_hash == original
    path.write_text('[settings]\nroot = "C"\n\n[[model]]\nref = "1"\nfp = "fp32"\n')
    assert load_manifest(path).content_hash != original


def test_mirror_templates() -> None:
    sha = "AB" * 32
    assert mirror_url("http://c/{sha256}", sha256=sha, name="x") == "http://c/" + "ab" * 32
    assert mirror_url("http://c/{SHA256}/{name}", sha256=sha, name="a b") == (
        f"http://c/{sha}/a%20b"
    )
    for bad in ("ftp://c/{sha256}", "http://c/{md5}", "http://c/{sha256", "http://c/x"):
        with pytest.raises(civit.UsageError):
            check_mirror_template(bad)


# -- the lock ----------------------------------------------------------------------


def test_lock_resolves_every_entry_in_order(
    fake: FakeCivitai, client: Client, project: Path
) -> None:
    manifest = six_manifest(project)
    lock = civit.lock(manifest, client=client)
    assert [f.file_id for f in lock.files] == list(SIX_PATHS)
    assert [f.dest for f in lock.files] == [f"ComfyUI/{p}" for p in SIX_PATHS.values()]
    checkpoint = lock.files[0]
    assert (checkpoint.model_id, checkpoint.version_id, checkpoint.type) == (
        827184,
        2514310,
        "Checkpoint",
    )
    assert checkpoint.sha256 == fake.file(2402203).sha256.upper()
    assert checkpoint.blake3 == fake.file(2402203).digests["blake3"].upper()
    assert checkpoint.size is None  # not seen yet: only Civitai's rounded size_kb
    assert checkpoint.size_kb == pytest.approx(2_300_000 / 1024)
    text = manifest.lock_path.read_text()
    assert text.startswith("# Generated by `civit lock`")
    assert "Do not edit" in text
    assert Lock.loads(text) == lock
    keys = [line.split(" = ")[0] for line in text.split("[[file]]")[1].strip().splitlines()]
    assert keys == [
        "ref", "model_id", "version_id", "file_id", "name",
        "size_kb", "sha256", "blake3", "dest", "type", "entry_hash",
    ]  # fmt: skip
    assert checkpoint.entry_hash == manifest.entries[0].content_hash
    assert fake.token not in text and "sig=" not in text


def test_an_unchanged_manifest_keeps_its_lock_without_asking_the_api(
    fake: FakeCivitai, client: Client, project: Path
) -> None:
    manifest = six_manifest(project)
    first = civit.lock(manifest, client=client)
    written = manifest.lock_path.stat().st_mtime_ns
    fake.clear_log()
    assert civit.lock(manifest, client=client) == first
    assert fake.requests == []
    assert manifest.lock_path.stat().st_mtime_ns == written


def test_unpinned_entries_keep_their_locked_version_until_upgrade(
    fake: FakeCivitai, client: Client, project: Path
) -> None:
    manifest = civit.write_manifest(
        project / "civit.toml", ["827184", "827184@2514310"], settings={"dest": "models"}
    )
    locked = civit.lock(manifest, client=client)
    # A lock made when 2300001 was the newest version (by an older civit: no entry
    # hashes, so the entry is resolved again once the manifest changes).
    then = civit.lock(
        civit.write_manifest(
            project / "then.toml", ["827184@2300001"], settings={"dest": "models"}
        ),
        client=client,
    ).files[0]
    older = dataclasses.replace(then, ref="827184", entry_hash=None)
    write_lock(dataclasses.replace(locked, files=(older, locked.files[1])), manifest.lock_path)
    # Editing the manifest makes the lock stale, so it is resolved again...
    manifest = civit.write_manifest(
        project / "civit.toml",
        ["827184", "827184@2514310", "328553"],
        settings={"dest": "models"},
    )
    fake.clear_log()
    relocked = civit.lock(manifest, client=client)
    # ...but the unpinned entry keeps the version the lock had; pins resolve to the pin.
    assert [f.version_id for f in relocked.files] == [2300001, 2514310, 368189]
    assert relocked.files[0].file_id == 2300101
    assert "/api/v1/models/827184" not in [r.path for r in fake.requests]  # no newest lookup
    upgraded = civit.lock(manifest, client=client, upgrade=True)
    assert [f.version_id for f in upgraded.files] == [2514310, 2514310, 368189]
    assert civit.load_lock(manifest.lock_path) == upgraded


def test_a_hash_ref_locks_the_file_with_that_hash(
    fake: FakeCivitai, client: Client, project: Path
) -> None:
    fp32 = fake.file(2402204)  # not the version's primary file
    manifest = civit.write_manifest(
        project / "civit.toml",
        [fp32.sha256, {"ref": fp32.digests["autov2"], "name": "short.safetensors"}],
        settings={"dest": "models"},
    )
    lock = civit.lock(manifest, client=client)
    assert [f.file_id for f in lock.files] == [2402204, 2402204]
    assert [f.version_id for f in lock.files] == [2514310, 2514310]


def test_a_token_pasted_into_a_ref_stays_out_of_the_lock(client: Client, project: Path) -> None:
    url = "https://civitai.com/api/download/models/368189?fileId=3000001&token=SECRET123"
    manifest = civit.write_manifest(project / "civit.toml", [url], settings={"dest": "m"})
    lock = civit.lock(manifest, client=client)
    assert lock.files[0].file_id == 3000001
    assert lock.files[0].ref == "https://civitai.com/api/download/models/368189?fileId=3000001"
    assert "SECRET123" not in manifest.lock_path.read_text()


def test_lock_refuses_two_entries_with_one_destination(client: Client, project: Path) -> None:
    manifest = civit.write_manifest(
        project / "civit.toml",
        [
            {"ref": "827184@2514310"},
            {"ref": "328553", "name": "waiIllustriousSDXL_v160.safetensors"},
        ],
        settings={"dest": "models"},
    )
    with pytest.raises(ManifestError, match=r"#2 .* is also the destination of 827184@2514310"):
        civit.lock(manifest, client=client)


def test_lock_gives_same_named_variants_their_own_names(client: Client, project: Path) -> None:
    manifest = civit.write_manifest(
        project / "civit.toml",
        [{"ref": "827184@2514310"}, {"ref": "827184@2514310", "fp": "fp32"}],
        settings={"dest": "models"},
    )
    first, second = civit.lock(manifest, client=client).files
    assert first.dest == "models/waiIllustriousSDXL_v160.safetensors"
    assert second.dest == "models/waiIllustriousSDXL_v160_full_fp32.safetensors"
    assert second.name == "waiIllustriousSDXL_v160_full_fp32.safetensors"


def test_lock_needs_somewhere_to_put_files(client: Client, project: Path) -> None:
    manifest = civit.write_manifest(project / "civit.toml", ["328553"])
    with pytest.raises(ManifestError, match="nowhere to put it") as error:
        civit.lock(manifest, client=client)
    assert "set root" in str(error.value)


def test_resolution_errors_name_the_entry(fake: FakeCivitai, client: Client, project: Path) -> None:
    manifest = civit.write_manifest(
        project / "civit.toml", ["328553", "99001"], settings={"dest": "m"}
    )
    with pytest.raises(civit.NotDownloadableError, match=r"civit\.toml:7: \[\[model\]\] #2"):
        civit.lock(manifest, client=client)
    assert not manifest.lock_path.exists()


def test_damaged_lock_is_an_error_that_names_the_fix(project: Path) -> None:
    path = project / "civit.lock"
    path.write_text('version = 1\nmanifest_hash = "sha256:x"\n[[file]]\nref = "1"\n')
    with pytest.raises(ManifestError, match=r"damaged.*run `civit lock`"):
        civit.load_lock(path)
    path.write_text('version = 9\nmanifest_hash = "x"\n')
    with pytest.raises(ManifestError, match="lock format version 9"):
        civit.load_lock(path)
    escaping = LockedFile("1", 1, 2, 3, "passwd", dest="x/../../etc/passwd/evil")
    path.write_text(Lock("sha256:x", (escaping,)).dumps())
    with pytest.raises(ManifestError, match="does not end in a safe name"):
        civit.load_lock(path)


# -- install -----------------------------------------------------------------------


def test_lock_then_frozen_install_then_a_no_op(civit_cli, fake: FakeCivitai, project: Path) -> None:
    manifest = six_manifest(project)
    toml = str(manifest.path)
    locked = civit_cli("lock", "-f", toml)
    assert locked.code == 0, locked.err
    assert "wrote" in locked.err and "+ 328553: Detail Tweaker XL v1.0 (#368189)" in locked.err

    fake.clear_log()
    first = civit_cli("install", "-f", toml, "--frozen", "--jobs", "3")
    assert first.code == 0, first.err
    assert "6 files: 6 installed, 0 already present, 0 failed" in first.err
    for file_id, relative in SIX_PATHS.items():
        assert (project / "ComfyUI" / relative).read_bytes() == fake.file(file_id).content
    api_paths = {r.path.rsplit("/", 1)[0] for r in fake.requests if r.origin == "api"}
    assert api_paths == {"/api/download/models"}  # frozen: links only, no metadata

    fake.clear_log()
    again = civit_cli("install", "-f", toml, "--frozen")
    assert again.code == 0
    assert "6 files: 0 installed, 6 already present, 0 failed" in again.err
    assert fake.requests == []  # no API call and no CDN request

    started = time.perf_counter()
    report = civit.install(manifest, frozen=True)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"no-op install took {elapsed:.3f} s"
    assert report.count("present") == 6 and report.exit_code == 0
    assert fake.requests == []


def test_lock_command_reports_changes_and_upgrades(civit_cli, project: Path) -> None:
    manifest = civit.write_manifest(project / "civit.toml", ["827184"], settings={"dest": "m"})
    assert civit_cli("lock", "-f", str(manifest.path)).code == 0
    same = civit_cli("lock", "-f", str(manifest.path))
    assert (same.code, same.err.strip()) == (0, "civit.lock is up to date (1 file)")
    lock = civit.load_lock(manifest.lock_path)
    assert lock is not None
    older = dataclasses.replace(lock.files[0], version_id=2300001, file_id=2300101)
    write_lock(dataclasses.replace(lock, files=(older,)), manifest.lock_path)
    upgraded = civit_cli("lock", "-f", str(manifest.path), "--upgrade")
    names = "~ 827184: WAI-illustrious-SDXL v15.0 (#2300001) -> v16.0 (#2514310), file 2402203"
    assert names in upgraded.err
    both = civit_cli("install", "-f", str(manifest.path), "--frozen", "--upgrade")
    assert both.code == 2 and "cannot --upgrade" in both.err


def test_frozen_refuses_a_stale_or_missing_lock(civit_cli, client: Client, project: Path) -> None:
    manifest = six_manifest(project)
    missing = civit_cli("install", "-f", str(manifest.path), "--frozen")
    assert missing.code == 2
    assert "run `civit lock` and commit civit.lock" in missing.err
    civit.lock(manifest, client=client)
    with manifest.path.open("a") as handle:
        handle.write('\n[[model]]\nref = "147759"\nname = "upscaler-copy.pt"\n')
    stale = civit_cli("install", "-f", str(manifest.path), "--frozen")
    assert stale.code == 2
    assert "civit.lock is out of date: civit.toml changed" in stale.err
    assert "run `civit lock` and commit civit.lock" in stale.err
    assert not (project / "ComfyUI").exists()


def test_one_corrupt_file_fails_with_7_and_the_others_install(
    civit_cli, fake: FakeCivitai, client: Client, project: Path
) -> None:
    manifest = six_manifest(project)
    civit.lock(manifest, client=client)
    fake.set_faults(3000003, corrupt=True)  # the VAE
    report_path = project / "install.json"
    run = civit_cli("install", "-f", str(manifest.path), "--frozen", "--report", str(report_path))
    assert run.code == 7
    assert "5 installed, 0 already present, 1 failed" in run.err
    assert "SHA256 mismatch" in run.err and "23906" in run.err
    report = json.loads(report_path.read_text())
    assert report["exit_code"] == 7
    assert report["summary"] == {"installed": 5, "present": 0, "failed": 1}
    by_file = {entry["file_id"]: entry for entry in report["entries"]}
    failed = by_file.pop(3000003)
    assert (failed["status"], failed["error"]["exit_code"]) == ("failed", 7)
    assert "SHA256 mismatch" in failed["error"]["message"]
    assert not Path(failed["path"]).exists()
    for file_id, entry in by_file.items():
        assert entry["status"] == "installed"
        assert entry["size_bytes"] == fake.file(file_id).length
        assert entry["digests"]["sha256"] == fake.file(file_id).sha256.upper()
        assert entry["source"] == "civitai"
        assert entry["seconds"] >= 0
        assert Path(entry["path"]).read_bytes() == fake.file(file_id).content
    assert fake.token not in report_path.read_text()
    assert fake.token not in manifest.lock_path.read_text()
    assert "sig=" not in report_path.read_text()


def test_install_without_frozen_locks_first_and_records_exact_sizes(
    fake: FakeCivitai, client: Client, project: Path
) -> None:
    manifest = civit.write_manifest(
        project / "civit.toml", ["328553", "7808"], settings={"dest": "models"}
    )
    progress: list[tuple[int, int]] = []
    report = civit.install(
        manifest, client=client, progress=lambda *p: progress.append(p), **ENGINE
    )
    assert report.exit_code == 0 and report.lock_written
    lock = civit.load_lock(manifest.lock_path)
    assert lock is not None
    assert [f.size for f in lock.files] == [200_000, 30_000]  # exact, learned from the bytes
    assert progress[-1] == (230_000, 230_000)
    fake.clear_log()
    again = civit.install(manifest, client=client)
    assert again.count("present") == 2 and not again.lock_written
    assert fake.requests == []  # the lock was current: nothing to resolve, nothing to fetch


def test_a_changed_local_file_is_kept_unless_overwrite(
    fake: FakeCivitai, client: Client, project: Path
) -> None:
    manifest = civit.write_manifest(project / "civit.toml", ["328553"], settings={"dest": "m"})
    civit.install(manifest, client=client, **ENGINE)
    target = project / "m/add-detail-xl.safetensors"
    target.write_bytes(b"x" * 200_000)  # same size, other bytes: only a hash can tell
    report = civit.install(manifest, frozen=True, client=client, **ENGINE)
    # No Civitai file has these bytes: they may be the user's work, so they stay.
    assert (report.results[0].status, report.exit_code) == ("failed", 1)
    assert "--overwrite" in (report.results[0].error or "")
    assert target.read_bytes() == b"x" * 200_000
    report = civit.install(manifest, frozen=True, client=client, overwrite=True, **ENGINE)
    assert report.results[0].status == "installed"
    assert target.read_bytes() == fake.file(3000001).content


def test_twenty_files_no_op_is_fast(fake: FakeCivitai, client: Client, project: Path) -> None:
    models = fake.add_synthetic_models(20)
    manifest = civit.write_manifest(
        project / "civit.toml", [str(m.id) for m in models], settings={"dest": "loras"}
    )
    assert civit.install(manifest, client=client, jobs=8, **ENGINE).count("installed") == 20
    fake.clear_log()
    started = time.perf_counter()
    report = civit.install(project / "civit.toml", frozen=True)
    elapsed = time.perf_counter() - started
    assert report.count("present") == 20
    assert elapsed < 0.5, f"{elapsed:.3f} s"
    assert fake.requests == []


# -- mirrors -----------------------------------------------------------------------


class Mirror:
    """A static file server on loopback serving ``folder``, logging request paths."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.paths: list[str] = []
        self.refuse = False  # answer every request with 403, as a private bucket does
        mirror = self

        class Handler(SimpleHTTPRequestHandler):
            def send_head(self) -> Any:
                if mirror.refuse:
                    self.send_error(403)
                    return None
                return super().send_head()

            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                mirror.paths.append(self.path)  # once per request, whatever its answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        handler = functools.partial(Handler, directory=str(folder))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{{sha256}}"

    def put(self, content: bytes, sha256: str) -> None:
        (self.folder / sha256.lower()).write_bytes(content)

    def url_for(self, sha256: str) -> str:
        return mirror_url(self.template, sha256=sha256, name="")


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    folder = tmp_path / "mirror"
    folder.mkdir()
    server = Mirror(folder)
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def mirrored_manifest(project: Path, client: Client) -> civit.Manifest:
    manifest = civit.write_manifest(
        project / "civit.toml", ["328553", "7808", "23906"], settings={"dest": "models"}
    )
    civit.lock(manifest, client=client)
    return manifest


def test_files_come_from_the_mirror_when_it_has_them(
    fake: FakeCivitai, client: Client, project: Path, mirror: Mirror
) -> None:
    manifest = mirrored_manifest(project, client)
    for file_id in (3000001, 3000002, 3000003):
        mirror.put(fake.file(file_id).content, fake.file(file_id).sha256)
    fake.clear_log()
    report = civit.install(manifest, frozen=True, client=client, mirror=mirror.template, **ENGINE)
    assert report.exit_code == 0
    assert [r.source for r in report.results] == ["mirror"] * 3
    assert fake.requests == []  # not even a link from Civitai
    assert len(mirror.paths) == 3
    assert (project / "models/easynegative.safetensors").read_bytes() == fake.file(3000002).content


def test_a_mirror_miss_or_a_bad_copy_falls_back_to_civitai(
    fake: FakeCivitai, client: Client, project: Path, mirror: Mirror
) -> None:
    manifest = mirrored_manifest(project, client)
    mirror.put(fake.file(3000001).content, fake.file(3000001).sha256)  # good copy
    damaged = bytearray(fake.file(3000002).content)
    damaged[1000] ^= 0xFF
    mirror.put(bytes(damaged), fake.file(3000002).sha256)  # corrupt copy; 3000003 missing
    fake.clear_log()
    report = civit.install(manifest, frozen=True, client=client, mirror=mirror.template, **ENGINE)
    assert report.exit_code == 0
    lora, embedding, vae = report.results
    assert (lora.source, embedding.source, vae.source) == ("mirror", "civitai", "civitai")
    # Said of the mirror's copy, with what fixes the mirror (Civitai already fetched it).
    assert embedding.mirror_error == (
        f"{mirror.url_for(fake.file(3000002).sha256)} is a damaged copy: SHA256 "
        f"{hashlib.sha256(damaged).hexdigest().upper()}, the lock says "
        f"{fake.file(3000002).sha256.upper()} (replace it on the mirror: delete it and run "
        "`civit mirror push` into the folder it serves)"
    )
    assert vae.mirror_error == (
        f"{mirror.url_for(fake.file(3000003).sha256)}: the storage host has no file at this "
        "link (HTTP 404)"
    )
    assert fake.cdn_requests(3000001) == []
    assert fake.bytes_served(3000002) == 30_000 and fake.bytes_served(3000003) == 120_000
    for result in report.results:
        assert result.path.read_bytes() == fake.file(result.file_id or 0).content
        assert not result.path.with_name(result.path.name + ".part").exists()
    assert report.as_json()["entries"][1]["mirror_error"] == embedding.mirror_error


class Interrupted(Exception):
    """Stands for Ctrl-C in the middle of a download."""


def test_a_mirror_miss_keeps_the_half_done_civitai_download(
    fake: FakeCivitai, client: Client, project: Path, mirror: Mirror
) -> None:
    manifest = mirrored_manifest(project, client)
    vae = fake.file(3000003)
    record = civit.select_file(client.get_version(vae_version(fake)), file_id=vae.id)
    fake.set_faults(vae.id, throttle=60_000)

    def stop_once_bytes_arrive(done: int, total: int | None) -> None:
        if done > 0:
            raise Interrupted

    with pytest.raises(Interrupted):
        civit.download(
            record, dest=project / "models", client=client, progress=stop_once_bytes_arrive
        )
    assert fake.wait_idle()
    fake.reset_faults()
    kept = fake.bytes_served(vae.id)
    assert 0 < kept < vae.length
    fake.clear_log()
    # The mirror has nothing: it is asked first, misses, and Civitai continues where the
    # interrupted download stopped instead of starting again.
    report = civit.install(manifest, frozen=True, client=client, mirror=mirror.template, **ENGINE)
    assert report.exit_code == 0
    result = report.results[2]
    assert result.source == "civitai" and "HTTP 404" in (result.mirror_error or "")
    assert 0 < fake.bytes_served(vae.id) < vae.length
    assert result.path.read_bytes() == vae.content


def vae_version(fake: FakeCivitai) -> int:
    """The version id of file 3000003 in the default catalog."""
    found = fake.catalog.find_file(3000003)
    assert found is not None
    return found[1].id


def test_an_unreachable_mirror_falls_back_to_civitai(
    fake: FakeCivitai, client: Client, project: Path, mirror: Mirror, monkeypatch
) -> None:
    manifest = mirrored_manifest(project, client)
    dead = mirror.template
    mirror.server.shutdown()
    mirror.server.server_close()
    monkeypatch.setenv("CIVIT_MIRROR", dead)  # the environment variable works too
    report = civit.install(manifest, frozen=True, client=client, jobs=1, **ENGINE)
    assert report.exit_code == 0
    assert {r.source for r in report.results} == {"civitai"}
    # No other file can reach it either: asked for the first file only.
    first = mirror.url_for(fake.file(3000001).sha256)
    assert [r.mirror_error for r in report.results] == [
        f"{first}: cannot start the download (ConnectionRefusedError: Connection refused); "
        "the mirror is off for the rest of this run (check that the mirror is up and its "
        "address: --mirror, CIVIT_MIRROR or mirror in civit.toml)",
        *[f"not asked: the mirror was switched off after {first} (cannot connect: "
          "ConnectionRefusedError: Connection refused)"] * 2,
    ]  # fmt: skip


def test_an_unreachable_mirror_is_switched_off_across_jobs(
    fake: FakeCivitai, client: Client, project: Path, mirror: Mirror
) -> None:
    models = fake.add_synthetic_models(20)
    manifest = civit.write_manifest(
        project / "civit.toml", [str(m.id) for m in models], settings={"dest": "loras"}
    )
    civit.lock(manifest, client=client)
    dead = mirror.template
    mirror.server.shutdown()
    mirror.server.server_close()
    report = civit.install(manifest, frozen=True, client=client, mirror=dead, jobs=4, **ENGINE)
    assert report.exit_code == 0 and {r.source for r in report.results} == {"civitai"}
    errors = [r.mirror_error or "" for r in report.results]
    assert sum("the mirror is off for the rest of this run (check" in e for e in errors) == 1
    asked = [e for e in errors if not e.startswith("not asked")]
    assert len(asked) <= 4  # only files already at the mirror when it was switched off
    assert all("ConnectionRefusedError" in e for e in errors)


def test_a_mirror_miss_or_refusal_stays_with_its_file(
    fake: FakeCivitai, client: Client, project: Path, mirror: Mirror
) -> None:
    """A 404 or a 403 is about one object (a public bucket answers a missing key with
    403): every file still asks the mirror, once."""
    manifest = mirrored_manifest(project, client)
    report = civit.install(manifest, frozen=True, client=client, mirror=mirror.template, **ENGINE)
    assert [r.source for r in report.results] == ["civitai"] * 3
    assert all("(HTTP 404)" in (r.mirror_error or "") for r in report.results)
    assert len(mirror.paths) == 3
    for result in report.results:
        result.path.unlink()
    mirror.paths.clear()
    mirror.refuse = True
    report = civit.install(manifest, frozen=True, client=client, mirror=mirror.template, **ENGINE)
    assert [r.source for r in report.results] == ["civitai"] * 3
    assert [r.mirror_error for r in report.results] == [
        f"{mirror.url_for(fake.file(file_id).sha256)}: the mirror refused it (HTTP 401, 403 or 410)"
        for file_id in (3000001, 3000002, 3000003)
    ]
    assert len(mirror.paths) == 3  # the same URL is not asked again as if it had expired


def test_lock_without_a_model_id_reads_back() -> None:
    entry = LockedFile(
        ref="0123456789abcdef" * 4,
        model_id=None,
        version_id=368189,
        file_id=3000001,
        name="add-detail-xl.safetensors",
        dest="loras/add-detail-xl.safetensors",
    )
    lock = Lock("sha256:" + "0" * 64, (entry,))
    assert Lock.loads(lock.dumps()) == lock
