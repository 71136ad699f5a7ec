"""The engine where the OS has no positional I/O (Windows): forced here by removing
``os.pwrite``/``os.preadv``/``os.posix_fadvise``/``os.posix_fallocate``, which is what
those platforms' ``os`` module looks like. The network stays real (FakeCivitai)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from civit import Client, RetryPolicy, get, hash_file
from civit.partfile import PartFile, positional_io_available
from civit.testing import FakeCivitai, bench_model

POSIX_ONLY = ("pwrite", "pwritev", "pread", "preadv", "posix_fadvise", "posix_fallocate")
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
FAST_ENGINE = {"retry_base": 0.01, "stall_timeout": 2.0}
CHECKPOINT = 2402203
BIG = 33 * 1024 * 1024 + 4321  # four 8 MiB pieces and a bit: four connections


class Interrupted(Exception):
    """Raised from a progress callback to cut a download short."""


@pytest.fixture
def portable_os(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in POSIX_ONLY:
        monkeypatch.delattr(os, name, raising=False)
    assert not positional_io_available()
    yield


@pytest.fixture
def client(fake: FakeCivitai) -> Iterator[Client]:
    with Client(base_url=fake.url, token=fake.token, retry=FAST) as api:
        yield api


def test_every_module_imports_without_posix_io() -> None:
    script = textwrap.dedent(
        f"""
        import importlib, os, pkgutil
        for name in {POSIX_ONLY!r}:
            if hasattr(os, name):
                delattr(os, name)
        import civit
        modules = pkgutil.walk_packages(civit.__path__, "civit.")
        names = [m.name for m in modules if not m.name.endswith("__main__")]
        for name in names:
            importlib.import_module(name)
        print(len(names))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 20


def test_the_part_file_uses_a_handle_per_connection(portable_os: None, tmp_path: Path) -> None:
    part = PartFile.open(tmp_path / "x.part")
    try:
        assert not part.positional
        part.preallocate(10)
        first, second = part.writer(), part.writer()
        first(memoryview(b"hello"), 0)
        second(memoryview(b"world"), 5)
        buffer = memoryview(bytearray(10))
        assert part.reader()(buffer, 0) == 10
        assert bytes(buffer) == b"helloworld"
    finally:
        part.close()


def test_single_connection_download(
    portable_os: None, client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.set_faults(CHECKPOINT, drop_after=500_000)
    result = get("827184", client=client, dest=tmp_path, connections=1, **FAST_ENGINE)
    assert result.path.read_bytes() == fake.file(CHECKPOINT).content
    assert {"sha256", "blake3", "crc32", "autov2"} <= set(result.verified)


def test_four_connections_then_resume(
    portable_os: None, client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.add_model(bench_model(BIG))
    file_id = 3999999
    # Slow enough that the first progress report (every 0.1 s) comes well before the end,
    # even on a loaded machine: the resume must still have several pieces to fetch.
    fake.set_faults(file_id, throttle=8_000_000)

    def stop_early(done: int, total: int | None) -> None:
        if done > BIG // 4:
            raise Interrupted

    with pytest.raises(Interrupted):
        get("99999", client=client, dest=tmp_path, connections=4, progress=stop_early)
    assert fake.wait_idle()
    fake.reset_faults()
    fake.clear_log()
    result = get("99999", client=client, dest=tmp_path, connections=4, **FAST_ENGINE)
    assert result.resumed_from > 0
    assert fake.bytes_served(file_id) == BIG - result.resumed_from
    ranges = [r.headers["range"] for r in fake.cdn_requests(file_id)]
    assert len(ranges) >= 3
    assert len(set(ranges)) == len(ranges), "two connections fetched the same piece"
    digest = hashlib.sha256(result.path.read_bytes()).hexdigest().upper()
    assert digest == result.sha256 == fake.file(file_id).sha256.upper()
    assert sorted(p.name for p in tmp_path.iterdir()) == [result.path.name]


def test_hash_file(portable_os: None, tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    digests = hash_file(path, ["sha256", "blake3"], cache=False)
    assert digests["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest().upper()
