"""Digests, the threaded Digester, hash_file, the hash cache and model-file discovery."""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import os
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
import textwrap
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civit import hashing
from civit.errors import CivitError, UsageError
from civit.hashcache import HashCache, opened_cache
from civit.hashing import (
    AUTOV1_LENGTH,
    AUTOV1_OFFSET,
    THREADED_MIN_BLOCK,
    Digester,
    digest_bytes,
    hash_file,
    hash_files,
    iter_model_files,
)
from civit.records import HASH_ALGORITHMS, Hashes, parse_algorithms

HELLO = b"hello world"
HELLO_SHA256 = "B94D27B9934D3E08A52E52D7DA7DABFAC484EFE37A5380EE9088F7ACE2EFCDE9"
HELLO_BLAKE3 = "D74981EFA70A0C880B8D8C1985D075DBCBF679B99A5F9914E5AAF96B831A9E24"
MiB = 1024 * 1024


def safetensors_bytes(tensor_data: bytes, *, header: bytes | None = None) -> bytes:
    """A safetensors file: 8-byte little-endian header length, JSON header, data."""
    if header is None:
        shape = [len(tensor_data)]
        header = json.dumps(
            {"w": {"dtype": "U8", "shape": shape, "data_offsets": [0, len(tensor_data)]}}
        ).encode()
    return struct.pack("<Q", len(header)) + header + tensor_data


def reference_digests(data: bytes) -> dict[str, str]:
    """Every digest straight from hashlib/blake3/zlib, independent of Digester."""
    sha256 = hashlib.sha256(data).hexdigest().upper()
    window = data[AUTOV1_OFFSET : AUTOV1_OFFSET + AUTOV1_LENGTH]
    return {
        "sha256": sha256,
        "blake3": blake3.blake3(data).hexdigest().upper(),
        "crc32": zlib.crc32(data).to_bytes(4, "little").hex().upper(),
        "autov1": hashlib.sha256(window).hexdigest()[:8].upper(),
        "autov2": sha256[:10],
    }


def hash_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("civit-hash-")}


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    """A 1.25 MiB safetensors file: covers the AutoV1 window and several thread blocks."""
    tensor_data = random.Random(7).randbytes(AUTOV1_OFFSET + AUTOV1_LENGTH + 64 * 1024)
    return safetensors_bytes(tensor_data)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[HashCache]:
    with HashCache(tmp_path / "cache" / "hashes.sqlite3") as opened:
        yield opened


# --------------------------------------------------------------------------- known answers


def test_hello_world_known_answers() -> None:
    digests = digest_bytes(HELLO)
    assert digests["sha256"] == HELLO_SHA256
    assert digests["blake3"] == HELLO_BLAKE3
    assert digests["crc32"] == "85114A0D"
    assert digests["autov2"] == "B94D27B993"
    # Below 0x100000 bytes the AutoV1 window is empty, as in A1111's model_hash.
    assert digests["autov1"] == hashlib.sha256(b"").hexdigest()[:8].upper()
    assert "autov3" not in digests


def test_crc32_is_little_endian_and_records_accept_both_orders() -> None:
    digests = digest_bytes(HELLO, ["crc32"])
    assert f"{zlib.crc32(HELLO):08X}" == "0D4A1185"
    assert Hashes(crc32="0D4A1185").matches("crc32", digests["crc32"])
    assert Hashes(crc32="85114A0D").matches("crc32", digests["crc32"])


@pytest.mark.parametrize(("tool", "algorithm"), [("sha256sum", "sha256"), ("b3sum", "blake3")])
def test_agrees_with_command_line_tools(tmp_path: Path, tool: str, algorithm: str) -> None:
    executable = shutil.which(tool)
    if executable is None:
        pytest.skip(f"{tool} is not installed")
    path = tmp_path / "random.bin"
    path.write_bytes(random.Random(1).randbytes(3 * MiB + 17))
    output = subprocess.run(
        [executable, str(path)], check=True, capture_output=True, text=True
    ).stdout
    assert hash_file(path, [algorithm])[algorithm] == output.split()[0].upper()


def test_all_digests_of_a_model_file_match_direct_computation(
    tmp_path: Path, model_bytes: bytes
) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(model_bytes)
    header_length = struct.unpack("<Q", model_bytes[:8])[0]
    expected = reference_digests(model_bytes)
    expected["autov3"] = hashlib.sha256(model_bytes[8 + header_length :]).hexdigest()[:12].upper()
    digests = hash_file(path, "all", block_size=300 * 1024)
    assert digests == {name: expected[name] for name in HASH_ALGORITHMS}


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(struct.pack("<Q", 2) + b"{", id="shorter-than-its-header"),
        pytest.param(b"\x02\x00\x00\x00\x00\x00\x00\x00", id="8-bytes"),
        pytest.param(struct.pack("<Q", 2) + b"[]" + b"data", id="header-not-an-object"),
        pytest.param(struct.pack("<Q", 100_000_001) + b"{}" + b"data", id="header-too-long"),
        pytest.param(struct.pack("<Q", 1 << 62) + b"{}" + b"data", id="absurd-length"),
        pytest.param(struct.pack("<Q", 0) + b"{}", id="zero-length"),
        pytest.param(b"PK\x03\x04" + bytes(100), id="zip-file"),
    ],
)
def test_autov3_only_for_safetensors(content: bytes) -> None:
    digests = digest_bytes(content)
    assert "autov3" not in digests
    assert digests["sha256"] == hashlib.sha256(content).hexdigest().upper()


def test_autov3_of_a_header_only_safetensors_file() -> None:
    content = safetensors_bytes(b"", header=b"{}")
    assert digest_bytes(content, ["autov3"]) == {
        "autov3": hashlib.sha256(b"").hexdigest()[:12].upper()
    }


def test_autov3_header_arriving_one_byte_at_a_time() -> None:
    content = safetensors_bytes(b"tensor bytes")
    with Digester(["autov3"]) as digester:
        for index in range(len(content)):
            digester.update(content[index : index + 1])
        assert digester.hexdigests() == {
            "autov3": hashlib.sha256(b"tensor bytes").hexdigest()[:12].upper()
        }


# --------------------------------------------------------------------------- Digester


@settings(max_examples=40, deadline=None)
@given(
    cuts=st.lists(
        st.one_of(st.integers(0, 16), st.integers(0, AUTOV1_OFFSET + AUTOV1_LENGTH + 80_000)),
        max_size=8,
    ),
    threads=st.sampled_from([0, 1, 2, 4]),
)
def test_block_boundaries_do_not_change_digests(
    model_bytes: bytes, cuts: list[int], threads: int
) -> None:
    bounds = [0, *sorted(cuts), len(model_bytes)]
    with Digester("all", threads=threads) as digester:
        for start, end in itertools.pairwise(bounds):
            digester.update(model_bytes[start:end])
        assert digester.offset == len(model_bytes)
        split = digester.hexdigests()
    assert split == digest_bytes(model_bytes)


def test_threaded_path_equals_inline_path_and_uses_workers() -> None:
    data = random.Random(3).randbytes(3 * THREADED_MIN_BLOCK + 5)
    before = hash_threads()
    with Digester("all", threads=0) as inline:
        inline.update(data)
        assert hash_threads() == before
    with Digester("all", threads=2) as threaded:
        for start in range(0, len(data), THREADED_MIN_BLOCK):
            threaded.update(memoryview(data)[start : start + THREADED_MIN_BLOCK])
        workers = hash_threads() - before
        assert len(workers) == 2
        assert threaded.hexdigests() == inline.hexdigests()
    assert not any(thread.is_alive() for thread in workers)


def test_submit_overlaps_and_the_buffer_is_free_after_wait() -> None:
    data = random.Random(4).randbytes(2 * MiB)
    buffer = bytearray(MiB)
    with Digester(["sha256", "blake3", "crc32"], threads=2) as digester:
        for start in (0, MiB):
            buffer[:] = data[start : start + MiB]
            digester.submit(buffer)
            digester.wait()
        assert digester.hexdigests() == digest_bytes(data, ["sha256", "blake3", "crc32"])


def test_closed_digester_refuses_updates_but_reports(tmp_path: Path) -> None:
    digester = Digester(["sha256"])
    digester.update(HELLO)
    digester.close()
    digester.close()
    with pytest.raises(ValueError, match="closed"):
        digester.update(b"more")
    with pytest.raises(ValueError, match="closed"):
        digester.update(bytes(THREADED_MIN_BLOCK))
    assert digester.hexdigests() == {"sha256": HELLO_SHA256}


def test_forgotten_digester_does_not_leak_threads() -> None:
    before = hash_threads()
    digester = Digester(["sha256", "crc32"], threads=2)
    digester.update(bytes(THREADED_MIN_BLOCK))
    workers = hash_threads() - before
    assert len(workers) == 2
    del digester
    gc.collect()
    for thread in workers:
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_hash_file_leaves_no_threads(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(3 * MiB))
    before = hash_threads()
    hash_file(path, "all", block_size=MiB)
    assert hash_threads() == before


def test_lanes_keep_sha256_alone_on_two_cores() -> None:
    assert hashing._plan_lanes(["sha256", "blake3", "crc32"], 2) == [
        ("sha256",),
        ("crc32", "blake3"),
    ]
    assert hashing._plan_lanes(["sha256", "blake3", "crc32", "autov3"], 2) == [
        ("sha256", "crc32"),
        ("autov3", "blake3"),
    ]
    assert len(hashing._plan_lanes(["sha256", "blake3", "crc32", "autov3"], 8)) == 4
    assert hashing._plan_lanes(["sha256", "blake3"], 1) == [("sha256", "blake3")]


# --------------------------------------------------------------------------- hash_file


def test_progress_reports_every_byte(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(random.Random(5).randbytes(MiB + 123))
    seen: list[tuple[int, int | None]] = []
    digests = hash_file(
        path, progress=lambda *call: seen.append(call), block_size=256 * 1024, cache=False
    )
    size = MiB + 123
    assert seen == [(256 * 1024 * n, size) for n in range(1, 5)] + [(size, size)]
    assert digests == {"sha256": hashlib.sha256(path.read_bytes()).hexdigest().upper()}


def test_missing_file_is_a_civit_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.safetensors"
    with pytest.raises(CivitError, match=r"nope\.safetensors: No such file") as caught:
        hash_file(path)
    assert str(path) in str(caught.value)
    assert caught.value.exit_code == 1


def test_folder_is_a_civit_error(tmp_path: Path) -> None:
    with pytest.raises(CivitError, match="it is a folder"):
        hash_file(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file_is_a_civit_error(tmp_path: Path) -> None:
    path = tmp_path / "secret.bin"
    path.write_bytes(b"x")
    path.chmod(0)
    with pytest.raises(CivitError, match="Permission denied"):
        hash_file(path)


def test_parse_algorithms_errors() -> None:
    assert parse_algorithms(["BLAKE3", " sha256 "]) == ("sha256", "blake3")
    with pytest.raises(UsageError, match="unknown hash algorithm md5"):
        parse_algorithms("sha256,md5")
    with pytest.raises(UsageError, match="no hash algorithm"):
        parse_algorithms(" , ")
    with pytest.raises(UsageError):
        hash_files([Path("unused")], "sha1")


def test_hash_files_reports_failures_and_carries_on(tmp_path: Path) -> None:
    good = tmp_path / "a.safetensors"
    good.write_bytes(HELLO)
    missing = tmp_path / "missing.ckpt"
    results = list(hash_files([missing, good], ["sha256", "crc32"]))
    assert [result.path for result in results] == [missing, good]
    assert isinstance(results[0].error, CivitError)
    assert results[0].digests == {}
    assert results[1].error is None
    assert results[1].size == len(HELLO)
    assert results[1].digests == {"sha256": HELLO_SHA256, "crc32": "85114A0D"}


def test_iter_model_files(tmp_path: Path) -> None:
    for name in [
        "b/model.SafeTensors",
        "b/readme.txt",
        "a/lora.pt",
        "a/deep/x.gguf",
        "a/partial.safetensors.part",
        ".hidden/secret.safetensors",
        "a/.git/objects.bin",
        "a/._model.safetensors",
        "venv/lib/python3.10/site-packages/distutils-precedence.pth",
        "venv/lib/python3.10/site-packages/facexlib/weights/detection.pth",
        "python_embeded/Lib/site-packages/_virtualenv.pth",
        "custom_nodes/x/__pycache__/y.bin",
        "top.ckpt",
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    explicit = tmp_path / "b" / "readme.txt"
    found = iter_model_files([explicit, tmp_path, tmp_path / "top.ckpt", "missing.pt"])
    assert found == [
        explicit,
        tmp_path / "a" / "deep" / "x.gguf",
        tmp_path / "a" / "lora.pt",
        tmp_path / "b" / "model.SafeTensors",
        tmp_path / "top.ckpt",
        Path("missing.pt"),
    ]


# --------------------------------------------------------------------------- cache


def test_cache_hit_miss_and_touch(tmp_path: Path, cache: HashCache) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(HELLO)
    assert cache.lookup(path, ["sha256"]) is None
    [first] = hash_files([path], ["sha256"], cache=cache)
    assert not first.cached
    assert cache.lookup(path, ["sha256", "autov2"]) == {
        "sha256": HELLO_SHA256,
        "autov2": "B94D27B993",
    }

    # Same size and mtime but other bytes: only a cache answer can still say HELLO's digest.
    stat = path.stat()
    path.write_bytes(b"HELLO WORLD")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    seen: list[tuple[int, int | None]] = []
    [second] = hash_files([path], ["sha256"], cache=cache, progress=lambda *c: seen.append(c))
    assert second.cached
    assert second.digests == {"sha256": HELLO_SHA256}
    assert seen == [(len(HELLO), len(HELLO))]

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    touched = hash_file(path, ["sha256"], cache=cache)
    assert touched == {"sha256": hashlib.sha256(b"HELLO WORLD").hexdigest().upper()}


def test_cache_merges_digests_and_remembers_missing_autov3(
    tmp_path: Path, cache: HashCache
) -> None:
    path = tmp_path / "old.ckpt"
    path.write_bytes(HELLO)
    hash_file(path, ["sha256", "autov3"], cache=cache)
    hash_file(path, ["blake3"], cache=cache)
    assert cache.lookup(path, ["sha256", "blake3", "autov3"]) == {
        "sha256": HELLO_SHA256,
        "blake3": HELLO_BLAKE3,
    }
    assert cache.lookup(path, ["crc32"]) is None


def test_cache_store_after_download_api(tmp_path: Path, cache: HashCache) -> None:
    path = tmp_path / "downloaded.safetensors"
    path.write_bytes(HELLO)
    cache.store(path.stat(), {"SHA256": HELLO_SHA256.lower(), "md5": "ignored"})
    assert next(hash_files([path], ["sha256"], cache=cache)).cached
    # A new version of the file at the same inode replaces the row, it does not merge.
    path.write_bytes(HELLO + b"!")
    cache.store(path.stat(), {"crc32": "12345678"})
    assert cache.lookup(path, ["crc32"]) == {"crc32": "12345678"}
    assert cache.lookup(path, ["sha256"]) is None


def test_file_changing_while_hashed_is_not_cached(tmp_path: Path, cache: HashCache) -> None:
    path = tmp_path / "growing.bin"
    path.write_bytes(bytes(2 * MiB))

    def touch(_done: int, _total: int | None) -> None:
        os.utime(path, ns=(0, path.stat().st_mtime_ns + 1))

    hash_file(path, cache=cache, progress=touch, block_size=MiB)
    assert cache.lookup(path, ["sha256"]) is None
    hash_file(path, cache=cache, block_size=MiB)
    assert cache.lookup(path, ["sha256"]) is not None


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_devices_are_refused_and_never_cached(cache: HashCache) -> None:
    # /dev/zero never ends; no device is a model file (issue 13.11).
    with pytest.raises(CivitError, match="it is a device, not a regular file"):
        hash_file("/dev/zero", cache=cache)
    assert cache.lookup("/dev/zero", ["sha256"]) is None


def test_inode_numbers_beyond_signed_64_bit(cache: HashCache) -> None:
    stat = os.stat_result((0o100644, 2**64 - 5, 2**63 + 1, 1, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 7, 0))
    cache.store(stat, {"sha256": HELLO_SHA256})
    assert cache.lookup(stat, ["sha256"]) == {"sha256": HELLO_SHA256}


def test_a_failing_statement_does_not_wipe_the_cache(tmp_path: Path, cache: HashCache) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(HELLO)
    hash_file(path, cache=cache)
    without_mtime_ns = os.stat_result((0o100644, 5, 5, 1, 0, 0, 1, 0, 0, 0))
    cache.store(without_mtime_ns, {"sha256": HELLO_SHA256})  # NOT NULL fails, silently
    assert cache.lookup(path, ["sha256"]) == {"sha256": HELLO_SHA256}


def test_corrupt_cache_file_is_rebuilt(tmp_path: Path) -> None:
    database = tmp_path / "hashes.sqlite3"
    database.write_bytes(b"this is not a database" * 100)
    path = tmp_path / "model.safetensors"
    path.write_bytes(HELLO)
    with HashCache(database) as cache:
        assert hash_file(path, cache=cache) == {"sha256": HELLO_SHA256}
        assert cache.lookup(path, ["sha256"]) == {"sha256": HELLO_SHA256}
    assert database.read_bytes().startswith(b"SQLite format 3\x00")


def test_unusable_cache_location_is_not_fatal(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    path = tmp_path / "model.safetensors"
    path.write_bytes(HELLO)
    with HashCache(blocker / "hashes.sqlite3") as cache:
        assert hash_file(path, cache=cache) == {"sha256": HELLO_SHA256}
        assert cache.lookup(path, ["sha256"]) is None


def test_locked_cache_degrades_to_no_cache(tmp_path: Path) -> None:
    database = tmp_path / "hashes.sqlite3"
    path = tmp_path / "model.safetensors"
    path.write_bytes(HELLO)
    with HashCache(database, timeout=0.05) as cache:
        cache.lookup(path, ["sha256"])  # creates the database
        other = sqlite3.connect(database, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            assert hash_file(path, cache=cache) == {"sha256": HELLO_SHA256}
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert cache.lookup(path, ["sha256"]) is None
        hash_file(path, cache=cache)
        assert cache.lookup(path, ["sha256"]) == {"sha256": HELLO_SHA256}


def test_hash_files_reports_progress_over_all_files(tmp_path: Path) -> None:
    paths = [tmp_path / "a.bin", tmp_path / "missing.bin", tmp_path / "b.bin"]
    paths[0].write_bytes(bytes(300 * 1024))
    paths[2].write_bytes(bytes(100))
    seen: list[tuple[int, int | None]] = []
    found = list(hash_files(paths, cache=False, progress=lambda *c: seen.append(c)))
    assert [f.error is None for f in found] == [True, False, True]
    total = 300 * 1024 + 100
    assert seen[-1] == (total, total)
    assert all(t == total for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_cache_none_is_the_users_cache_and_false_is_none(tmp_path: Path) -> None:
    path = tmp_path / "hello.bin"
    path.write_bytes(HELLO)
    hash_file(path, cache=False)
    with HashCache.default() as users:
        assert users.lookup(path, ["sha256"]) is None
        hash_file(path)  # cache=None: the user's cache records it
        assert users.lookup(path, ["sha256"]) == {"sha256": HELLO_SHA256}
    with opened_cache(False) as disabled:
        disabled.store(path.stat(), {"sha256": HELLO_SHA256})
        assert disabled.lookup(path, ["sha256"]) is None


def test_default_cache_follows_civit_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIVIT_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert HashCache.default().path == tmp_path / "elsewhere" / "hashes.sqlite3"


WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from civit.hashcache import HashCache, opened_cache
    from civit.hashing import hash_file

    folder, database, writer = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    while not (folder.parent / "go").exists():  # start all writers together
        time.sleep(0.005)
    with HashCache(database) as cache:
        for path in sorted(folder.iterdir()):
            hash_file(path, ["sha256", "crc32"], cache=cache)
        for inode in range(1, 301):  # rows for made-up files: many small transactions
            stat = os.stat_result((0o100644, inode, writer, 1, 0, 0, 1, *[0] * 9))
            cache.store(stat, {"crc32": f"{writer:04X}{inode:04X}"})
    """
)


def test_concurrent_processes_share_one_cache(tmp_path: Path) -> None:
    database = tmp_path / "cache" / "hashes.sqlite3"
    folders = []
    for writer in range(4):
        folder = tmp_path / f"files{writer}"
        folder.mkdir()
        for index in range(40):
            (folder / f"{index}.bin").write_bytes(f"{writer}/{index}".encode())
        folders.append(folder)
    processes = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(database), str(writer)])
        for writer, folder in enumerate(folders)
    ]
    (tmp_path / "go").touch()
    assert [process.wait(timeout=30) for process in processes] == [0, 0, 0, 0]
    with HashCache(database) as cache:
        for folder in folders:
            for path in folder.iterdir():
                expected = hashlib.sha256(path.read_bytes()).hexdigest().upper()
                assert cache.lookup(path, ["sha256"]) == {"sha256": expected}
        for writer in range(4):
            for inode in (1, 150, 300):
                stat = os.stat_result((0o100644, inode, writer, 1, 0, 0, 1, *[0] * 9))
                assert cache.lookup(stat, ["crc32"]) == {"crc32": f"{writer:04X}{inode:04X}"}
    check = sqlite3.connect(database)
    assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert check.execute("SELECT count(*) FROM digests_v1").fetchone() == (4 * 40 + 4 * 300,)
    check.close()
