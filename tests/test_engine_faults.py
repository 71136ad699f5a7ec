"""The engine against hostile or broken storage hosts and a hostile shared folder:
planted files at ``.part``/``.part.json``, a file swapped in mid-download, odd answers
(short and empty ranges, no length, gzip, HTML in disguise, bad redirects), throttling,
trickles, refused renames. Every storage host here is FakeCivitai's real CDN origin."""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import civit
import civit.transfer
from civit import Client, File, Hashes, IntegrityError, RetryPolicy, download, get
from civit.api import parse_retry_after
from civit.errors import AuthError, CivitError, NetworkError, ResponseError
from civit.hashcache import HashCache
from civit.testing import FakeCivitai, FakeFile, FakeModel, FakeVersion, make_safetensors
from civit.transfer import fetch
from civit.writerlock import target_lock

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
FAST_ENGINE = {"retry_base": 0.01, "stall_timeout": 2.0}
CHECKPOINT = 2402203  # 827184's primary file, ~2.2 MB
CHECKPOINT_NAME = "waiIllustriousSDXL_v160.safetensors"
LORA = 3000001  # 328553's file, 200,000 bytes


@pytest.fixture
def client(fake: FakeCivitai) -> Iterator[Client]:
    with Client(base_url=fake.url, token=fake.token, retry=FAST) as api:
        yield api


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


def settle(fake: FakeCivitai) -> None:
    assert fake.wait_idle()
    fake.reset_faults()
    fake.clear_log()


def state_for(fake: FakeCivitai, file_id: int, version_id: int, segments: list[list[int]]) -> str:
    """A ``.part.json`` as civit writes it, for a file of the fake."""
    file = fake.file(file_id)
    return json.dumps(
        {
            "format": 1,
            "file": f"civitai:{version_id}:{file_id}",
            "size": file.length,
            "sha256": file.sha256.upper(),
            "validator": f'"{file.sha256[:16].lower()}"',
            "segments": segments,
        }
    )


# -- 13.1: what is committed is what was verified ------------------------------------


def test_a_file_swapped_onto_the_part_mid_download_is_never_committed(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.set_faults(CHECKPOINT, throttle=4_000_000)
    planted = tmp_path / "planted.bin"
    planted.write_bytes(b"not the model" * 1000)
    part = tmp_path / f"{CHECKPOINT_NAME}.part"
    swapped = threading.Event()

    def swap(done: int, total: int | None) -> None:
        if done > 100_000 and not swapped.is_set():
            swapped.set()
            planted.replace(part)  # another process renames its file onto .part

    cache = HashCache(tmp_path / "cache.sqlite")
    with pytest.raises(IntegrityError, match="replaced by another file") as info:
        get("827184", client=client, dest=tmp_path, progress=swap, cache=cache, **FAST_ENGINE)
    assert info.value.exit_code == 7
    assert swapped.is_set()
    assert not (tmp_path / CHECKPOINT_NAME).exists()
    assert cache.lookup(part, ["sha256"]) is None  # nothing vouches for the planted file
    cache.close()


@pytest.mark.parametrize("size", ["same size", "other size"])
def test_a_file_swapped_in_between_the_check_and_the_rename_is_removed(
    client: Client,
    fake: FakeCivitai,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: str,
) -> None:
    """The race the inode check cannot close: another process renames its file onto
    the ``.part`` after the check and before civit's rename. What lands at the target
    is then not the verified inode, and it must not stay there."""
    length = fake.file(LORA).length + (0 if size == "same size" else 1000)
    planted = tmp_path / "planted.bin"
    planted.write_bytes(b"\x42" * length)
    real = civit.transfer.replace_when_free

    def racing_rename(source: Path, destination: Path) -> None:
        if planted.exists():
            planted.replace(source)
        real(source, destination)

    monkeypatch.setattr(civit.transfer, "replace_when_free", racing_rename)
    with pytest.raises(IntegrityError, match="swapped for another file") as info:
        get("328553", client=client, dest=tmp_path / "m", **FAST_ENGINE)
    assert info.value.exit_code == 7
    assert not (tmp_path / "m" / "add-detail-xl.safetensors").exists()


def test_names_ending_in_part_never_collide_with_a_partial_download(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    files = [
        FakeFile(4200001, "big.safetensors", make_safetensors(60_000, 1), primary=True),
        FakeFile(4200002, "big.safetensors.part", make_safetensors(70_000, 2), type="VAE"),
        FakeFile(4200003, "big.safetensors.part.json", make_safetensors(80_000, 3), type="VAE"),
    ]
    version = FakeVersion(4200000, "v1", "SDXL 1.0", "2025-01-01T00:00:00Z", files=files)
    fake.add_model(FakeModel(4200100, "Parts", "LORA", "someone", versions=[version]))
    records = client.get_version(4200000).files
    paths = [download(f, dest=tmp_path, client=client, **FAST_ENGINE).path for f in records]
    assert [p.name for p in paths] == [
        "big.safetensors",
        "big.safetensors_part",
        "big.safetensors_part.json",
    ]
    for path, file in zip(paths, files, strict=True):
        assert path.read_bytes() == file.content


# -- 13.2: never through a link, never a special file, never a bad state -------------


def test_a_symlink_planted_at_the_part_is_refused(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    outside = tmp_path / "outside.bin"
    original = b"\x5a" * fake.file(CHECKPOINT).length
    outside.write_bytes(original)
    (folder / f"{CHECKPOINT_NAME}.part").symlink_to(outside)
    half = fake.file(CHECKPOINT).length // 2
    state = state_for(fake, CHECKPOINT, 2514310, [[0, fake.file(CHECKPOINT).length, half]])
    (folder / f"{CHECKPOINT_NAME}.part.json").write_text(state)
    with pytest.raises(CivitError, match="symbolic link") as info:
        get("827184", client=client, dest=folder, **FAST_ENGINE)
    assert info.value.exit_code == 1
    assert outside.read_bytes() == original
    assert not (folder / CHECKPOINT_NAME).exists()
    assert fake.cdn_requests() == []


@pytest.mark.parametrize(
    "state",
    [
        "segment past the end",
        "overlapping segments",
        "deep nesting",
        "too big",
        "not JSON",
        "a FIFO",
    ],
)
def test_a_bad_part_json_is_discarded_and_the_download_starts_over(
    client: Client, fake: FakeCivitai, tmp_path: Path, state: str
) -> None:
    size = fake.file(CHECKPOINT).length
    part = tmp_path / f"{CHECKPOINT_NAME}.part"
    part.write_bytes(b"\0" * size)
    state_path = tmp_path / f"{CHECKPOINT_NAME}.part.json"
    contents = {
        "segment past the end": state_for(fake, CHECKPOINT, 2514310, [[0, 10**12, 10**11]]),
        "overlapping segments": state_for(fake, CHECKPOINT, 2514310, [[0, 900, 10], [5, size, 5]]),
        "deep nesting": "[" * 200_000 + "]" * 200_000,
        "too big": " " * (2 << 20) + "{}",
        "not JSON": "\xff\xfe garbage",
    }
    if state == "a FIFO":
        os.mkfifo(state_path)
    else:
        state_path.write_text(contents[state], errors="surrogateescape")
    started = time.monotonic()
    result = get("827184", client=client, dest=tmp_path, **FAST_ENGINE)
    assert time.monotonic() - started < 10
    assert result.resumed_from == 0
    assert result.path.read_bytes() == fake.file(CHECKPOINT).content
    assert fake.bytes_served(CHECKPOINT) == size
    assert leftovers(tmp_path) == [CHECKPOINT_NAME]


def test_a_stale_state_is_rechecked_instead_of_failing(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    """A state claiming bytes that never reached the disk (a power cut) costs a second
    fetch of those bytes, not exit 7 and a full download on the next run."""
    size = fake.file(CHECKPOINT).length
    half = size // 2
    (tmp_path / f"{CHECKPOINT_NAME}.part").write_bytes(b"\0" * size)
    state = state_for(fake, CHECKPOINT, 2514310, [[half, size, half]])
    (tmp_path / f"{CHECKPOINT_NAME}.part.json").write_text(state)
    result = get("827184", client=client, dest=tmp_path, **FAST_ENGINE)
    assert result.path.read_bytes() == fake.file(CHECKPOINT).content
    assert fake.bytes_served(CHECKPOINT) == size  # the missing half, then the stale half
    assert leftovers(tmp_path) == [CHECKPOINT_NAME]


# -- 11.2: a target in use ------------------------------------------------------------


class RefusedRenames:
    """``os.replace`` onto one target failing like Windows while a WebUI has the file
    open (``PermissionError``, WinError 32), ``times`` times."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.refused = 0


def refuse_renames_onto(
    monkeypatch: pytest.MonkeyPatch, target: Path, times: int
) -> RefusedRenames:
    real = os.replace
    refusals = RefusedRenames(times)

    def replace(src: object, dst: object, **kwargs: object) -> None:
        if Path(str(dst)) == target and refusals.refused < refusals.times:
            refusals.refused += 1
            error = PermissionError(errno.EACCES, "The process cannot access the file")
            error.winerror = 32  # type: ignore[attr-defined]
            raise error
        real(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr("civit.fsutil.IN_USE_WAIT", 0.3)
    return refusals


def test_a_target_in_use_keeps_the_verified_part_and_the_rerun_commits_it(
    civit_cli: Callable[..., object],
    fake: FakeCivitai,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = tmp_path / CHECKPOINT_NAME
    refused = refuse_renames_onto(monkeypatch, target, times=1000)
    run = civit_cli("get", "827184", "--dest", tmp_path)
    assert run.code == 1  # type: ignore[attr-defined]
    assert (
        f"{target} is in use (is the WebUI running?); the verified download is kept in "
        f"{CHECKPOINT_NAME}.part, run the same command again after closing it"
    ) in run.err  # type: ignore[attr-defined]
    assert refused.refused >= 3  # retried over IN_USE_WAIT, not given up at once
    assert not target.exists()
    assert (tmp_path / f"{CHECKPOINT_NAME}.part").stat().st_size == fake.file(CHECKPOINT).length
    refused.times = 0  # the WebUI is closed
    settle(fake)
    rerun = civit_cli("get", "827184", "--dest", tmp_path)
    assert rerun.code == 0, rerun.err  # type: ignore[attr-defined]
    downloads = [r for r in fake.requests if r.origin == "cdn" or "/download/" in r.path]
    assert downloads == []  # committed from the kept .part: no link, no bytes
    assert target.read_bytes() == fake.file(CHECKPOINT).content
    assert leftovers(tmp_path) == [CHECKPOINT_NAME]


def test_a_rename_refused_briefly_is_retried(
    client: Client, fake: FakeCivitai, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = refuse_renames_onto(monkeypatch, tmp_path / CHECKPOINT_NAME, times=2)
    result = get("827184", client=client, dest=tmp_path, **FAST_ENGINE)
    assert refused.refused == 2
    assert result.path.read_bytes() == fake.file(CHECKPOINT).content


def test_a_read_only_model_from_the_store_is_updated_on_windows(
    client: Client, fake: FakeCivitai, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Store entries are sealed read-only, and so is every hardlink to one; Windows
    (simulated: its platform name, and os.replace refusing a read-only destination
    with access denied) will not rename over such a file, where POSIX would."""
    entry = {"ref": "827184@2300001", "name": "wai.safetensors"}
    manifest = civit.write_manifest(tmp_path / "civit.toml", [entry], settings={"dest": "m"})
    civit.install(manifest, client=client, store=tmp_path / "store", **FAST_ENGINE)
    target = tmp_path / "m" / "wai.safetensors"
    assert not target.stat().st_mode & stat.S_IWRITE  # the sealed store entry's inode
    real = os.replace

    def replace(src: object, dst: object, **kwargs: object) -> None:
        if Path(str(dst)).exists() and not Path(str(dst)).stat().st_mode & stat.S_IWRITE:
            error = PermissionError(errno.EACCES, "Access is denied")
            error.winerror = 5  # type: ignore[attr-defined]
            raise error
        real(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr("civit.fsutil.IN_USE_WAIT", 0.2)
    result = get(
        "827184", client=client, dest=tmp_path / "m", name="wai.safetensors", **FAST_ENGINE
    )
    assert result.status == "downloaded"
    assert target.read_bytes() == fake.file(CHECKPOINT).content


# -- 13.12: civit errors, found early --------------------------------------------------


def test_a_folder_at_the_target_is_found_before_downloading(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    (tmp_path / CHECKPOINT_NAME).mkdir()
    with pytest.raises(CivitError, match="folder") as info:
        get("827184", client=client, dest=tmp_path, **FAST_ENGINE)
    assert info.value.exit_code == 1
    assert fake.cdn_requests() == []


@pytest.mark.parametrize(
    "location", ["http://127.0.0.1:notaport/x", "http://[::1/x", "ftp://example.test/x"]
)
def test_a_bad_redirect_is_a_civit_error(
    civit_cli: Callable[..., object], fake: FakeCivitai, tmp_path: Path, location: str
) -> None:
    fake.set_faults(LORA, redirect_to=location + "?sig=SECRET")
    run = civit_cli("get", "328553", "--dest", tmp_path)
    assert run.code == 1  # type: ignore[attr-defined]
    assert "internal error" not in run.err  # type: ignore[attr-defined]
    assert "SECRET" not in run.err  # type: ignore[attr-defined]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("location", ["http://127.0.0.1:notaport/x", "http://[::1/x"])
def test_a_bad_link_from_the_download_endpoint_is_a_civit_error(
    client: Client, fake: FakeCivitai, tmp_path: Path, location: str
) -> None:
    file = next(f for f in client.get_version(368189).files if f.id == LORA)
    fake.fail_api(307, times=5, location=location + "?sig=SECRET", body="")
    fake.clear_log()
    with pytest.raises(ResponseError, match="invalid address") as info:
        download(file, client=client, dest=tmp_path, **FAST_ENGINE)
    assert "SECRET" not in str(info.value)
    assert len(fake.requests) == 1  # not retried: no retry makes it a URL
    assert leftovers(tmp_path) == []


# -- 13.3: links are encoded, and never printed ----------------------------------------


def spaced_model(fake: FakeCivitai) -> None:
    file = FakeFile(4300001, "my model v2.safetensors", make_safetensors(50_000, 4), primary=True)
    version = FakeVersion(4300000, "v2", "SDXL 1.0", "2025-01-01T00:00:00Z", files=[file])
    fake.add_model(FakeModel(4300100, "Spaced", "LORA", "someone", versions=[version]))


def test_a_space_in_a_storage_link_is_encoded(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    spaced_model(fake)
    fake.raw_links = True
    result = get("4300100", client=client, dest=tmp_path, **FAST_ENGINE)
    assert result.path.read_bytes() == fake.file(4300001).content
    assert fake.cdn_requests()[0].path == "/files/4300001/my%20model%20v2.safetensors"


def test_storage_failures_never_print_the_link(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    spaced_model(fake)
    fake.raw_links = True
    fake.set_faults(4300001, status=503, status_times=100)
    with pytest.raises(NetworkError) as info:
        get("4300100", client=client, dest=tmp_path, **FAST_ENGINE)
    assert "sig=" not in str(info.value) and "expires=" not in str(info.value)
    assert len(fake.cdn_requests(4300001)) <= 6


# -- 13.6: size is a digest; validators guard resumes ----------------------------------


def test_a_size_that_disagrees_with_the_record_is_refused_before_writing(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    real = next(f for f in client.get_version(368189).files if f.id == LORA)
    wrong = File(
        id=real.id,
        name=real.name,
        size_kb=(real.size_kb or 0) + 64,
        hashes=real.hashes,
        version_id=real.version_id,
        model_type=real.model_type,
    )
    with pytest.raises(IntegrityError, match="size mismatch") as info:
        download(wrong, dest=tmp_path, client=client, **FAST_ENGINE)
    assert info.value.algorithm == "size"
    assert leftovers(tmp_path) == []


def test_an_exact_size_alone_proves_a_download(fake: FakeCivitai, tmp_path: Path) -> None:
    link = fake.cdn_link(LORA)
    length = fake.file(LORA).length
    fetched = fetch(
        lambda: link,
        tmp_path / "lora.safetensors",
        expected=Hashes(),
        file_key="test:lora",
        expected_size=length,
        **FAST_ENGINE,  # type: ignore[arg-type]
    )
    assert "size" in fetched.verified
    with pytest.raises(IntegrityError, match="exactly 12345 bytes"):
        fetch(
            lambda: link,
            tmp_path / "other.safetensors",
            expected=Hashes(),
            file_key="test:lora",
            expected_size=12345,
            **FAST_ENGINE,  # type: ignore[arg-type]
        )
    assert leftovers(tmp_path) == ["lora.safetensors"]


def test_html_after_a_byte_order_mark_as_octet_stream_is_refused_without_debris(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.set_faults(LORA, disguised_html=True)
    with pytest.raises(AuthError, match="HTML page") as info:
        get("328553", client=client, dest=tmp_path, **FAST_ENGINE)
    assert info.value.exit_code == 3
    assert leftovers(tmp_path) == []


def test_a_resume_without_a_validator_starts_over(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    size = fake.file(CHECKPOINT).length
    half = size // 2
    (tmp_path / f"{CHECKPOINT_NAME}.part").write_bytes(fake.file(CHECKPOINT).content[:half] * 2)
    state = json.loads(state_for(fake, CHECKPOINT, 2514310, [[half, size, half]]))
    state["validator"] = None
    (tmp_path / f"{CHECKPOINT_NAME}.part.json").write_text(json.dumps(state))
    result = get("827184", client=client, dest=tmp_path, **FAST_ENGINE)
    assert result.resumed_from == 0
    assert fake.bytes_served(CHECKPOINT) == size


def test_a_changed_file_behind_a_cache_that_ignores_if_range_is_not_stitched(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    """The earlier run saw another version (another ETag); the host serves the asked
    range of the new one regardless: the answer's ETag gives it away."""
    size = fake.file(CHECKPOINT).length
    half = size // 2
    (tmp_path / f"{CHECKPOINT_NAME}.part").write_bytes(b"\x11" * size)
    state = json.loads(state_for(fake, CHECKPOINT, 2514310, [[half, size, half]]))
    state["validator"] = '"0000000000000000"'  # the version the earlier run fetched
    (tmp_path / f"{CHECKPOINT_NAME}.part.json").write_text(json.dumps(state))
    fake.set_faults(CHECKPOINT, ignore_if_range=True)
    result = get("827184", client=client, dest=tmp_path, **FAST_ENGINE)
    assert result.resumed_from == 0
    assert result.path.read_bytes() == fake.file(CHECKPOINT).content


# -- 13.7: each answer's own length ----------------------------------------------------


def test_a_host_that_caps_ranges_costs_no_stall(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.set_faults(CHECKPOINT, range_cap=256 * 1024)
    started = time.monotonic()
    result = get("827184", client=client, dest=tmp_path, retry_base=0.01, stall_timeout=5)
    assert time.monotonic() - started < 4  # one 5 s stall per range would be ~45 s
    assert result.path.read_bytes() == fake.file(CHECKPOINT).content
    assert len(fake.cdn_requests(CHECKPOINT)) >= 9


def test_an_empty_206_ends_with_a_network_error(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.set_faults(CHECKPOINT, empty_range=True)
    started = time.monotonic()
    with pytest.raises(NetworkError) as info:
        get("827184", client=client, dest=tmp_path, retry_base=0.01, stall_timeout=5)
    assert time.monotonic() - started < 4
    assert info.value.exit_code == 5


# -- 13.13: odd answers, clear messages ------------------------------------------------


def test_a_compressed_body_says_so(client: Client, fake: FakeCivitai, tmp_path: Path) -> None:
    fake.set_faults(LORA, gzip=True)
    with pytest.raises(ResponseError, match="compressed the file") as info:
        get("328553", client=client, dest=tmp_path, **FAST_ENGINE)
    assert "Content-Encoding: gzip" in str(info.value)
    assert leftovers(tmp_path) == []


def test_a_body_without_a_length_is_proven_by_its_digests(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.set_faults(LORA, no_length=True)
    result = get("328553", client=client, dest=tmp_path, **FAST_ENGINE)
    assert result.path.read_bytes() == fake.file(LORA).content
    assert "sha256" in result.verified


# -- 11.5 and 13.8: throttling and Retry-After -----------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        ("86400", 300.0),
        ("inf", None),
        ("1e400", None),
        ("nan", None),
        ("-5", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 300.0),
    ],
)
def test_retry_after_is_capped_and_nonsense_is_no_advice(header: str, seconds: float) -> None:
    assert parse_retry_after(header) == seconds


def test_storage_429_without_retry_after_is_retried(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.set_faults(LORA, status=429, status_times=2)
    result = get("328553", client=client, dest=tmp_path, **FAST_ENGINE)
    assert result.path.read_bytes() == fake.file(LORA).content
    assert [r.status for r in fake.cdn_requests(LORA)][:2] == [429, 429]


@pytest.mark.parametrize("retry_after", ["nan", "inf", "-1", "1e400"])
def test_nonsense_retry_after_from_storage_and_api_is_ignored(
    client: Client, fake: FakeCivitai, tmp_path: Path, retry_after: str
) -> None:
    fake.set_faults(LORA, status=503, status_times=1, retry_after=retry_after)
    fake.fail_api(503, times=1, retry_after=retry_after)
    started = time.monotonic()
    result = get("328553", client=client, dest=tmp_path, **FAST_ENGINE)
    assert time.monotonic() - started < 5
    assert result.path.read_bytes() == fake.file(LORA).content


def test_a_throttling_429_at_the_download_endpoint_is_retried(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    file = next(f for f in client.get_version(368189).files if f.id == LORA)
    cloudflare = "<html><body>error code: 1015</body></html>"
    fake.fail_api(429, times=2, body=cloudflare)  # the next requests: the download endpoint
    fake.clear_log()
    result = download(file, client=client, dest=tmp_path, **FAST_ENGINE)
    assert result.status == "downloaded"
    endpoint = [r.status for r in fake.requests if r.path.startswith("/api/download/")]
    assert endpoint == [429, 429, 307]


def test_the_daily_cap_is_exit_6_and_throttling_that_never_ends_exit_5(
    civit_cli: Callable[..., object],
    fake: FakeCivitai,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CIVIT_RETRIES", "2")
    fake.daily_limit_reached = True
    capped = civit_cli("get", "@368189", "--dest", tmp_path)
    assert capped.code == 6  # type: ignore[attr-defined]
    fake.daily_limit_reached = False
    fake.fail_api(429, times=100, body="<html>error code: 1015</html>")
    throttled = civit_cli("get", "@368189", "--dest", tmp_path)
    assert throttled.code == 5, throttled.err  # type: ignore[attr-defined]
    assert "throttling" in throttled.err  # type: ignore[attr-defined]


def test_451_says_civitai_is_not_available_in_the_region(
    civit_cli: Callable[..., object], fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.fail_api(451, times=1)
    run = civit_cli("info", "827184")
    assert run.code == 3  # type: ignore[attr-defined]
    assert "Civitai is not available in your region (HTTP 451)" in run.err  # type: ignore[attr-defined]
    fake.set_faults(LORA, status=451, status_times=10)
    got = civit_cli("get", "328553", "--dest", tmp_path)
    assert got.code == 3  # type: ignore[attr-defined]
    assert "not available in your region (HTTP 451" in got.err  # type: ignore[attr-defined]


# -- 13.9: everything ends -------------------------------------------------------------


def test_a_trickle_ends_with_a_network_error(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.set_faults(CHECKPOINT, throttle=300)
    started = time.monotonic()
    with pytest.raises(NetworkError, match="slower than") as info:
        get("827184", client=client, dest=tmp_path, retry_base=0.01, stall_timeout=0.5)
    assert time.monotonic() - started < 10
    assert "run the same command again" in str(info.value)


def test_the_deadline_stops_a_download_that_can_resume(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.set_faults(CHECKPOINT, throttle=400_000)
    started = time.monotonic()
    with pytest.raises(NetworkError, match="--deadline 1 s"):
        get("827184", client=client, dest=tmp_path, deadline=1, **FAST_ENGINE)
    assert time.monotonic() - started < 3
    assert (tmp_path / f"{CHECKPOINT_NAME}.part.json").exists()
    settle(fake)
    result = get("827184", client=client, dest=tmp_path, **FAST_ENGINE)
    assert result.resumed_from > 0


def test_limit_rate_paces_the_download(client: Client, fake: FakeCivitai, tmp_path: Path) -> None:
    started = time.monotonic()
    get("328553", client=client, dest=tmp_path, limit_rate=250_000, **FAST_ENGINE)
    assert time.monotonic() - started >= 0.6  # 200,000 bytes at 250,000 B/s


def test_a_held_lock_is_announced_with_the_pid_and_given_up(
    civit_cli: Callable[..., object], fake: FakeCivitai, tmp_path: Path
) -> None:
    target = tmp_path / "add-detail-xl.safetensors"
    with target_lock(target):
        run = civit_cli("get", "328553", "--dest", tmp_path, "--lock-timeout", "0.3")
    assert run.code == 1  # type: ignore[attr-defined]
    assert f"waiting for another civit on {target} (pid {os.getpid()})" in run.err  # type: ignore[attr-defined]
    assert "--lock-timeout" in run.err  # type: ignore[attr-defined]
    assert fake.cdn_requests() == []
    with target_lock(target):
        quiet = civit_cli("get", "328553", "--dest", tmp_path, "--lock-timeout", "0.3", "-q")
    assert quiet.code == 1  # type: ignore[attr-defined]
    assert "waiting" not in quiet.err and "--lock-timeout" in quiet.err  # type: ignore[attr-defined]
