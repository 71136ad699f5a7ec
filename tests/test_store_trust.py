"""Issue 13.14: the content-addressed store is not trusted blindly.

Entries are read-only once verified; a symlink planted as an entry is never followed
into a WebUI folder by ``os.link``; stat-based trust (the hash cache) can be fooled by
an in-place overwrite that restores the mtime, and ``civit verify --no-cache`` is the
check that reads every byte again.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

import civit
from civit import Client
from civit.errors import CivitError
from civit.store import Store, link_or_copy
from civit.testing import FakeCivitai

ENGINE = {"retry_base": 0.01, "stall_timeout": 2.0}
LORA = 3000001
LORA_NAME = "add-detail-xl.safetensors"
needs_symlinks = pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges")


def lora_project(tmp_path: Path) -> civit.Manifest:
    folder = tmp_path / "project"
    folder.mkdir()
    return civit.write_manifest(folder / "civit.toml", ["328553"], settings={"dest": "models"})


def test_store_entries_are_read_only_once_written(
    fake: FakeCivitai, client: Client, tmp_path: Path
) -> None:
    manifest = lora_project(tmp_path)
    store = tmp_path / "store"
    assert civit.install(manifest, client=client, store=store, **ENGINE).exit_code == 0
    entry = Store(store).path_for(fake.file(LORA).sha256)
    installed = manifest.folder / "models" / LORA_NAME
    assert entry.stat().st_ino == installed.stat().st_ino
    assert stat.S_IMODE(entry.stat().st_mode) & 0o222 == 0
    assert entry.read_bytes() == fake.file(LORA).content


def test_an_older_writable_entry_is_sealed_when_verified(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    content = b"model bytes"
    entry = store.path_for(hashlib.sha256(content).hexdigest())
    entry.parent.mkdir(parents=True)
    entry.write_bytes(content)
    entry.chmod(0o644)
    assert store.verified_digests(entry.name, cache=False) is not None
    assert stat.S_IMODE(entry.stat().st_mode) == 0o444


@needs_symlinks
def test_a_symlink_planted_in_the_store_is_never_hardlinked_into_a_webui(
    fake: FakeCivitai, client: Client, tmp_path: Path
) -> None:
    """Someone plants store/sha256/ab/ab… -> their own file with the right bytes: a
    hardlink to *their* inode in the WebUI folder would let them change it later."""
    manifest = lora_project(tmp_path)
    store = Store(tmp_path / "store")
    outside = tmp_path / "attacker-owned.safetensors"
    outside.write_bytes(fake.file(LORA).content)
    entry = store.path_for(fake.file(LORA).sha256)
    entry.parent.mkdir(parents=True)
    entry.symlink_to(outside)

    report = civit.install(manifest, client=client, store=store.root, **ENGINE)
    assert report.exit_code == 0
    installed = manifest.folder / "models" / LORA_NAME
    assert not entry.is_symlink() and entry.read_bytes() == fake.file(LORA).content
    assert installed.stat().st_ino == entry.stat().st_ino != outside.stat().st_ino
    assert outside.stat().st_nlink == 1
    assert fake.bytes_served(LORA) == fake.file(LORA).length  # fetched again, for real


@needs_symlinks
def test_link_or_copy_refuses_a_symlink_source(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"x")
    planted = tmp_path / "entry"
    planted.symlink_to(outside)
    with pytest.raises(CivitError, match="not a regular file"):
        link_or_copy(planted, tmp_path / "webui" / "model.safetensors")
    assert not (tmp_path / "webui" / "model.safetensors").exists()
    assert outside.stat().st_nlink == 1


def test_verify_no_cache_finds_an_overwrite_that_kept_the_mtime(
    civit_cli, fake: FakeCivitai, client: Client, tmp_path: Path
) -> None:
    """The documented limit of stat-based trust, and the deep check that covers it."""
    manifest = lora_project(tmp_path)
    store = tmp_path / "store"
    civit.install(manifest, client=client, store=store, **ENGINE)
    entry = Store(store).path_for(fake.file(LORA).sha256)
    assert civit_cli("verify", entry).code == 0  # the hash cache now knows it
    before = entry.stat()
    entry.chmod(0o644)
    with entry.open("r+b") as handle:  # same size, same inode
        handle.write(b"\0" * 64)
    os.utime(entry, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert civit_cli("verify", entry).code == 0  # stat-based trust is fooled...
    deep = civit_cli("verify", entry, "--no-cache")
    assert deep.code == 7 and "MISMATCH" in deep.out  # ...reading the bytes is not
