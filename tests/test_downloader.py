"""The download engine against FakeCivitai: real sockets, real faults, real files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from civit import (
    AuthError,
    Client,
    EarlyAccessError,
    File,
    Hashes,
    IntegrityError,
    NotDownloadableError,
    RetryPolicy,
    download,
    get,
)
from civit.errors import DiskSpaceError, NetworkError
from civit.segmented import piece_size
from civit.testing import FakeCivitai, FakeFile, FakeModel, FakeVersion, make_safetensors

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
FAST_ENGINE = {"retry_base": 0.01, "stall_timeout": 2.0}
CHECKPOINT = 2402203  # primary file of 827184@2514310, ~2.2 MB safetensors


class Interrupted(Exception):
    """Raised from a progress callback to cut a download short, like Ctrl-C would."""


@pytest.fixture
def client(fake: FakeCivitai) -> Client:
    with Client(base_url=fake.url, token=fake.token, retry=FAST) as api:
        yield api  # type: ignore[misc]


def record(client: Client, version_id: int, file_id: int) -> File:
    version = client.get_version(version_id)
    return next(f for f in version.files if f.id == file_id)


def settle(fake: FakeCivitai) -> None:
    """Let the fake finish logging the interrupted responses, then start a clean log."""
    assert fake.wait_idle()
    fake.reset_faults()
    fake.clear_log()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_get_puts_the_primary_file_into_comfyui_checkpoints(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    result = get("827184", client=client, root=tmp_path, layout="comfyui", **FAST_ENGINE)
    expected = tmp_path / "models/checkpoints/waiIllustriousSDXL_v160.safetensors"
    assert result.path == expected
    assert expected.read_bytes() == fake.file(CHECKPOINT).content
    assert result.status == "downloaded"
    assert set(result.verified) >= {"sha256", "blake3", "crc32", "autov1", "autov2", "autov3"}
    assert result.sha256 == fake.file(CHECKPOINT).sha256.upper()
    assert leftovers(tmp_path) == ["waiIllustriousSDXL_v160.safetensors"]


@pytest.mark.parametrize(
    ("ref", "layout", "folder"),
    [
        ("827184", "a1111", "models/Stable-diffusion"),
        ("7808", "a1111", "embeddings"),
        ("7808", "comfyui", "models/embeddings"),
        ("328553", "swarmui", "Models/Lora"),
        ("23906", "comfyui", "models/vae"),
        ("147759", "a1111", "models/ESRGAN"),
    ],
)
def test_layouts_route_by_type(
    client: Client, tmp_path: Path, ref: str, layout: str, folder: str
) -> None:
    result = get(ref, client=client, root=tmp_path, layout=layout, **FAST_ENGINE)
    assert result.path.parent == tmp_path / folder


def test_vae_file_of_a_checkpoint_goes_to_the_vae_folder(client: Client, tmp_path: Path) -> None:
    result = get("827184", client=client, root=tmp_path, layout="comfyui", type="VAE")
    assert result.path == tmp_path / "models/vae/sdxl_vae.safetensors"


def test_exact_file_is_requested_with_file_id(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    result = get("827184", client=client, dest=tmp_path, fp="fp32", **FAST_ENGINE)
    assert result.path.read_bytes() == fake.file(2402204).content
    api_downloads = [r for r in fake.requests if r.path.startswith("/api/download/")]
    assert api_downloads[-1].query["fileId"] == ["2402204"]


def test_token_reaches_only_the_api_origin(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    get("328553", client=client, dest=tmp_path, **FAST_ENGINE)
    cdn = fake.cdn_requests()
    assert cdn
    assert all("authorization" not in r.headers for r in cdn)
    assert all(fake.token not in json.dumps(r.query) for r in fake.requests)
    api = [r for r in fake.requests if r.origin == "api" and r.path.startswith("/api/download")]
    assert api[-1].headers["authorization"] == f"Bearer {fake.token}"


def test_drops_mid_file_twice_then_succeeds(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.set_faults(CHECKPOINT, drop_after=300_000, drop_times=2)
    result = get("827184", client=client, dest=tmp_path, connections=1, **FAST_ENGINE)
    assert result.path.read_bytes() == fake.file(CHECKPOINT).content
    starts = [r.headers["range"][6:].split("-")[0] for r in fake.cdn_requests(CHECKPOINT)]
    assert starts == ["0", "300000", "600000"]
    assert fake.bytes_served(CHECKPOINT) == fake.file(CHECKPOINT).length


def test_server_ignoring_range_restarts_cleanly(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.set_faults(CHECKPOINT, drop_after=500_000, drop_times=1, ignore_range=True)
    result = get("827184", client=client, dest=tmp_path, **FAST_ENGINE)
    assert result.path.read_bytes() == fake.file(CHECKPOINT).content
    assert result.verified


def test_corrupt_bytes_exit_7_and_leave_nothing(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.set_faults(CHECKPOINT, corrupt=True)
    with pytest.raises(IntegrityError) as info:
        get("827184", client=client, dest=tmp_path, **FAST_ENGINE)
    assert info.value.exit_code == 7
    assert info.value.expected == fake.file(CHECKPOINT).sha256.upper()
    assert info.value.actual and info.value.actual != info.value.expected
    assert "waiIllustriousSDXL_v160.safetensors" in str(info.value)
    assert leftovers(tmp_path) == []


def test_a_good_file_is_never_replaced_by_a_bad_one(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    target = tmp_path / "waiIllustriousSDXL_v160.safetensors"
    target.write_bytes(b"an older, different file")
    fake.set_faults(CHECKPOINT, corrupt=True)
    with pytest.raises(IntegrityError):  # even told to replace it, never with bad bytes
        get("827184", client=client, dest=tmp_path, overwrite=True, **FAST_ENGINE)
    assert target.read_bytes() == b"an older, different file"
    fake.reset_faults()
    good = get("827184", client=client, dest=tmp_path, overwrite=True, **FAST_ENGINE)
    fake.set_faults(CHECKPOINT, corrupt=True)
    again = get("827184", client=client, dest=tmp_path, **FAST_ENGINE)
    assert again.status == "present"
    assert target.read_bytes() == fake.file(CHECKPOINT).content == good.path.read_bytes()


def test_expired_link_mid_download_is_renewed(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.set_faults(CHECKPOINT, expire_after=700_000)
    result = get("827184", client=client, dest=tmp_path, **FAST_ENGINE)
    assert result.path.read_bytes() == fake.file(CHECKPOINT).content
    link_requests = [r for r in fake.requests if r.path.startswith("/api/download/")]
    assert len(link_requests) >= 2
    assert any(r.status == 403 for r in fake.cdn_requests(CHECKPOINT))


def test_retry_after_on_the_download_endpoint(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.fail_api(429, times=1, retry_after="1")
    started = time.monotonic()
    result = get("@368189", client=client, dest=tmp_path, **FAST_ENGINE)
    assert result.status == "downloaded"
    assert time.monotonic() - started >= 0.9


def test_no_token_is_exit_3_and_no_file(fake: FakeCivitai, tmp_path: Path) -> None:
    with (
        Client(base_url=fake.url, token=None, retry=FAST) as anonymous,
        pytest.raises(AuthError) as info,
    ):
        get("328553", client=anonymous, dest=tmp_path, **FAST_ENGINE)
    assert info.value.exit_code == 3
    assert "CIVITAI_API_TOKEN" in str(info.value)
    assert leftovers(tmp_path) == []
    assert fake.cdn_requests() == []


def test_html_challenge_page_is_exit_3_and_never_saved(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.set_faults(3000001, html=True)
    with pytest.raises(AuthError, match="HTML page") as info:
        get("328553", client=client, dest=tmp_path, **FAST_ENGINE)
    assert info.value.exit_code == 3
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("ref", "error", "code"),
    [
        ("99001", NotDownloadableError, 4),
        ("@99102", EarlyAccessError, 3),
        ("@99103", NotDownloadableError, 4),
        ("99005", NotDownloadableError, 4),
    ],
)
def test_refusals_have_their_own_errors(
    client: Client, tmp_path: Path, ref: str, error: type[Exception], code: int
) -> None:
    with pytest.raises(error) as info:
        get(ref, client=client, dest=tmp_path, **FAST_ENGINE)
    assert info.value.exit_code == code  # type: ignore[attr-defined]
    assert leftovers(tmp_path) == []


def test_training_data_only_version_can_still_be_chosen_explicitly(
    client: Client, tmp_path: Path
) -> None:
    result = get("99005", client=client, dest=tmp_path, type="Training Data", **FAST_ENGINE)
    assert result.path.name == "dataset.zip"


@pytest.mark.parametrize("file_id", [3000007, 3000008, 3000009, 3000010])
def test_hostile_names_stay_inside_the_folder(client: Client, tmp_path: Path, file_id: int) -> None:
    folder = tmp_path / "inside"
    file = record(client, 99104, file_id)
    result = download(file, dest=folder, client=client, **FAST_ENGINE)
    assert result.path.parent == folder
    assert result.path.name not in ("", ".", "..")
    assert not any(c in result.path.name for c in "/\\\x07\n")
    assert leftovers(tmp_path) == [result.path.name]


def test_resume_transfers_only_the_missing_bytes(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    size = fake.file(CHECKPOINT).length
    fake.set_faults(CHECKPOINT, throttle=4_000_000)

    def stop_half_way(done: int, total: int | None) -> None:
        if done > size // 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        get("827184", client=client, dest=tmp_path, progress=stop_half_way, **FAST_ENGINE)
    part = tmp_path / "waiIllustriousSDXL_v160.safetensors.part"
    assert part.exists() and not (tmp_path / "waiIllustriousSDXL_v160.safetensors").exists()
    settle(fake)
    result = get("827184", client=client, dest=tmp_path, **FAST_ENGINE)
    assert result.resumed_from > size // 3
    assert fake.bytes_served(CHECKPOINT) == size - result.resumed_from
    assert result.bytes_transferred == size - result.resumed_from
    assert result.path.read_bytes() == fake.file(CHECKPOINT).content
    assert leftovers(tmp_path) == ["waiIllustriousSDXL_v160.safetensors"]


def test_already_present_is_skipped_without_network(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    first = get("7808", client=client, dest=tmp_path, **FAST_ENGINE)
    fake.clear_log()
    second = get("7808", client=client, dest=tmp_path, **FAST_ENGINE)
    assert second.status == "present"
    assert second.path == first.path
    assert "sha256" in second.verified
    assert fake.cdn_requests() == []


def test_free_space_is_checked_before_the_first_byte(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    real = record(client, 368189, 3000001)
    huge = File(
        id=real.id,
        name=real.name,
        size_kb=2.0**40,  # one PiB
        hashes=real.hashes,
        version_id=real.version_id,
        model_type=real.model_type,
    )
    with pytest.raises(DiskSpaceError, match="not enough disk space") as info:
        download(huge, dest=tmp_path, client=client, **FAST_ENGINE)
    assert info.value.exit_code == 1
    assert fake.cdn_requests() == []
    assert leftovers(tmp_path) == []


def test_stall_reconnects(client: Client, fake: FakeCivitai, tmp_path: Path) -> None:
    fake.set_faults(CHECKPOINT, stall_after=100_000, stall_seconds=5)
    started = time.monotonic()
    result = get("827184", client=client, dest=tmp_path, stall_timeout=0.5, retry_base=0.01)
    assert result.path.read_bytes() == fake.file(CHECKPOINT).content
    assert time.monotonic() - started < 4


def test_gives_up_with_exit_5_and_keeps_the_part(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.set_faults(CHECKPOINT, drop_after=0, drop_times=100)
    with pytest.raises(NetworkError) as info:
        get("827184", client=client, dest=tmp_path, **FAST_ENGINE)
    assert info.value.exit_code == 5
    assert "run the same command again" in str(info.value)
    assert not (tmp_path / "waiIllustriousSDXL_v160.safetensors").exists()


def big_model(size: int) -> FakeModel:
    content = make_safetensors(size, seed=7)
    file = FakeFile(id=4100001, name="big.safetensors", content=content, primary=True)
    version = FakeVersion(4100000, "v1", "SDXL 1.0", "2025-01-01T00:00:00Z", files=[file])
    return FakeModel(4100100, "Big", "LORA", "someone", versions=[version])


def test_parallel_segments_and_segmented_resume(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    size = 40 * 1024 * 1024 + 12345
    fake.add_model(big_model(size))
    fake.set_faults(4100001, throttle=30_000_000)

    def stop_early(done: int, total: int | None) -> None:
        if done > size // 4:
            raise Interrupted

    with pytest.raises(Interrupted):
        get("4100100", client=client, dest=tmp_path, connections=4, progress=stop_early)
    settle(fake)
    result = get("4100100", client=client, dest=tmp_path, connections=4, **FAST_ENGINE)
    assert result.resumed_from > 0
    assert fake.bytes_served(4100001) == size - result.resumed_from
    ranges = {r.headers["range"] for r in fake.cdn_requests(4100001)}
    assert len(ranges) >= 4, ranges  # one per segment, more when idle ones help out
    digest = hashlib.sha256(result.path.read_bytes()).hexdigest().upper()
    assert digest == result.sha256 == fake.file(4100001).sha256.upper()


def test_progress_reports_reach_the_total(client: Client, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    lock = threading.Lock()

    def progress(done: int, total: int | None) -> None:
        with lock:
            seen.append((done, total))

    result = get("827184", client=client, dest=tmp_path, progress=progress, **FAST_ENGINE)
    assert seen[0][0] == 0
    assert seen[-1] == (result.size, result.size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_info_sidecar_holds_the_version_record(client: Client, tmp_path: Path) -> None:
    result = get("328553", client=client, dest=tmp_path, write_info=True, **FAST_ENGINE)
    sidecar = result.path.with_name("add-detail-xl.civitai.info")
    document = json.loads(sidecar.read_text())
    assert document["id"] == 368189
    assert document["modelId"] == 328553
    assert document["model"]["type"] == "LORA"


def run_cli(fake: FakeCivitai, *args: str, env_extra: dict[str, str] | None = None):
    env = {
        **os.environ,
        "CIVITAI_BASE_URL": fake.url,
        "CIVITAI_API_TOKEN": fake.token,
        **(env_extra or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "civit", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_runs_on_one_target_end_with_one_good_file(
    fake: FakeCivitai, tmp_path: Path
) -> None:
    fake.set_faults(CHECKPOINT, throttle=3_000_000)
    runs = [run_cli(fake, "get", "827184", "--dest", str(tmp_path), "--json") for _ in range(2)]
    outputs = [run.communicate(timeout=30) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    statuses = sorted(json.loads(out)[0]["status"] for out, _ in outputs)
    assert statuses == ["downloaded", "present"]
    assert leftovers(tmp_path) == ["waiIllustriousSDXL_v160.safetensors"]
    target = tmp_path / "waiIllustriousSDXL_v160.safetensors"
    assert target.read_bytes() == fake.file(CHECKPOINT).content


def test_kill_9_then_rerun_resumes(fake: FakeCivitai, tmp_path: Path) -> None:
    size = fake.file(CHECKPOINT).length
    fake.set_faults(CHECKPOINT, throttle=700_000)
    run = run_cli(fake, "get", "827184", "--dest", str(tmp_path), "--quiet")
    state = tmp_path / "waiIllustriousSDXL_v160.safetensors.part.json"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if state.exists() and json.loads(state.read_text())["segments"][0][2] > 0:
            break
        time.sleep(0.05)
    run.kill()
    run.wait()
    settle(fake)
    rerun = run_cli(fake, "get", "827184", "--dest", str(tmp_path), "--json")
    out, err = rerun.communicate(timeout=30)
    assert rerun.returncode == 0, err
    document = json.loads(out)[0]
    assert document["resumed_bytes"] > 0
    assert fake.bytes_served(CHECKPOINT) == size - document["resumed_bytes"]
    assert leftovers(tmp_path) == ["waiIllustriousSDXL_v160.safetensors"]


def test_a_record_without_digests_or_size_is_refused_before_the_network(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    real = record(client, 368189, 3000001)
    bare = File(id=real.id, name=real.name, hashes=Hashes(), version_id=real.version_id)
    with pytest.raises(IntegrityError, match="no hash and no exact size") as info:
        download(bare, dest=tmp_path, client=client, **FAST_ENGINE)
    assert "--no-verify" in str(info.value)
    assert fake.cdn_requests() == []
    assert leftovers(tmp_path) == []
    result = download(bare, dest=tmp_path, client=client, verify=False, **FAST_ENGINE)
    assert result.verified == ()
    assert result.path.read_bytes() == fake.file(3000001).content


def test_connections_claim_pieces_front_to_back(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    size = 40 * 1024 * 1024 + 12345
    fake.add_model(big_model(size))
    result = get("4100100", client=client, dest=tmp_path, connections=4, **FAST_ENGINE)
    piece = piece_size(size, 4)
    starts = sorted(int(r.headers["range"][6:].split("-")[0]) for r in fake.cdn_requests())
    assert starts == list(range(0, size, piece))
    assert fake.bytes_served(4100001) == size == result.size
