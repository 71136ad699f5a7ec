"""S3 mirrors against a real S3 protocol server on loopback (moto's server).

One node fills the bucket (``civit mirror push``), another installs from it with
``--mirror s3://…``: Civitai sees no request. The server is moto's
``ThreadedMotoServer``, started once per test session; tests use a bucket each.

What moto cannot check (so these tests do not claim it): it stores the
``x-amz-checksum-sha256`` civit sends but does not reject a wrong one, and it does not
verify presigned-URL signatures. Wrong credentials are therefore tested against a second
moto server run with IAM authentication on, which refuses unknown keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

import civit
import civit.cli
from civit import Client, RetryPolicy
from civit.errors import AuthError, UsageError
from civit.mirrors import check_mirror
from civit.s3 import S3Bucket, parse_s3_url
from civit.testing import FakeCivitai

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
ENGINE = {"retry_base": 0.01, "stall_timeout": 5.0}
THREE = ["328553", "7808", "23906"]  # a LoRA, an embedding, a VAE (small files)
FILE_IDS = (3000001, 3000002, 3000003)
# Distinctive credentials, so a leak anywhere is easy to spot.
KEY_ID = "AKIACIVITTESTKEY0001"
SECRET = "civit-test-secret-must-never-appear"
SESSION = "civit-test-session-token-must-never-appear"
SECRETS = (KEY_ID, SECRET, SESSION, "X-Amz-Signature", "X-Amz-Credential", "Security-Token")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, for the whole session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Standard AWS variables pointing at the loopback server; no real ~/.aws is read."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    values = {
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": SESSION,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",  # never ask a cloud metadata address
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def s3(aws_env: dict[str, str]) -> Any:
    """A plain boto3 client on the test server, to look into and damage buckets."""
    return boto3.client("s3", endpoint_url=aws_env["AWS_ENDPOINT_URL"], region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"civit-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def client(fake: FakeCivitai) -> Iterator[Client]:
    with Client(base_url=fake.url, token=fake.token, retry=FAST) as api:
        yield api


@pytest.fixture
def installed(fake: FakeCivitai, client: Client, tmp_path: Path) -> civit.Manifest:
    """The node that fills the mirror: a project installed from Civitai (sizes locked)."""
    project = tmp_path / "first-node"
    project.mkdir()
    manifest = civit.write_manifest(project / "civit.toml", THREE, settings={"dest": "models"})
    assert civit.install(manifest, client=client, **ENGINE).exit_code == 0
    return manifest


def other_node(installed: civit.Manifest, tmp_path: Path) -> civit.Manifest:
    """Another machine: the same civit.toml and civit.lock, no model files."""
    project = tmp_path / f"node-{uuid.uuid4().hex[:6]}"
    project.mkdir()
    shutil.copy(installed.path, project / "civit.toml")
    shutil.copy(installed.lock_path, project / "civit.lock")
    return civit.load_manifest(project / "civit.toml")


def switched_off_once(report: civit.InstallReport, reason: str) -> None:
    """One entry says in full why the mirror was switched off; the others were not asked."""
    texts = [result.mirror_error or "" for result in report.results]
    full = [text for text in texts if reason in text]
    assert len(full) == 1, texts
    assert "the mirror is off for the rest of this run" in full[0]
    others = [text for text in texts if text is not full[0]]
    brief = "not asked: the mirror was switched off after s3://"
    assert all(text.startswith(brief) for text in others)


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked"


# -- addressing ----------------------------------------------------------------------


def test_s3_urls_name_a_bucket_and_a_prefix() -> None:
    location = parse_s3_url("s3://models/fleet//v1/")
    assert (location.bucket, location.prefix) == ("models", "fleet/v1")
    assert location.key_for("AB" * 32) == "fleet/v1/" + "ab" * 32
    assert parse_s3_url("s3://models").key_for("CD" * 32) == "cd" * 32
    assert check_mirror("s3://models/fleet") == "s3://models/fleet"
    for bad in ("s3://", "s3://UPPER/x", "s3://ab", "s3://user:pw@bucket/x", "s3://b_ucket?x=1"):
        with pytest.raises(UsageError):
            check_mirror(bad)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("s3://AKIAKEY:s3cr3t@bucket/x", "credentials do not belong in it"),
        ("s3://bucket/x?X-Amz-Signature=s3cr3t", "?query or #fragment"),
        ("s3://UPPER/x", "'UPPER' is not a bucket name"),
    ],
)
def test_a_bad_s3_url_says_why_and_never_echoes_a_secret(
    url: str, reason: str, tmp_path: Path, civit_cli: Callable[..., Any]
) -> None:
    with pytest.raises(UsageError, match=re.escape(reason)) as error:
        check_mirror(url)
    assert "s3cr3t" not in str(error.value) and "AKIAKEY" not in str(error.value)
    run = civit_cli("--json", "mirror", "push", url, tmp_path)
    assert run.code == 2 and reason in run.err
    assert "s3cr3t" not in run.out + run.err and "AKIAKEY" not in run.out + run.err


def test_an_endpoint_with_user_info_is_never_shown_even_verbose(
    installed: civit.Manifest,
    client: Client,
    tmp_path: Path,
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """botocore quotes a malformed endpoint whole; civit's message and traceback do not."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:s3cr3t-pass@bad host:9000")
    node = other_node(installed, tmp_path)
    report = civit.install(node, frozen=True, client=client, mirror="s3://models/fleet", **ENGINE)
    assert [result.source for result in report.results] == ["civitai"] * 3
    switched_off_once(report, "cannot set up S3 access")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        civit.cli.main(["-v", "mirror", "push", "s3://models/fleet", "--lock", node.lock_path])
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert "Traceback" in captured.err and "AWS_ENDPOINT_URL" in captured.err
    assert "http://bad host:9000" in captured.err
    for text in (captured.out, captured.err, json.dumps(report.as_json())):
        assert "s3cr3t" not in text and "minio:" not in text


def test_an_endpoint_with_a_port_that_is_no_number_falls_back_to_civitai(
    installed: civit.Manifest,
    client: Client,
    tmp_path: Path,
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """botocore takes it; naming the endpoint in a message raised ValueError (an
    internal error for the whole install)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:s3cr3t@127.0.0.1:notaport")
    node = other_node(installed, tmp_path)
    report = civit.install(node, frozen=True, client=client, mirror="s3://models/fleet", **ENGINE)
    assert report.exit_code == 0
    assert [result.source for result in report.results] == ["civitai"] * 3
    assert "s3cr3t" not in json.dumps(report.as_json())


def test_a_manifest_may_name_an_s3_mirror(tmp_path: Path) -> None:
    (tmp_path / "civit.toml").write_text('[settings]\nmirror = "s3://models/fleet"\n')
    assert civit.load_manifest(tmp_path / "civit.toml").settings.mirror == "s3://models/fleet"


def test_import_civit_does_not_import_boto3() -> None:
    code = (
        "import sys, civit, civit.cli, civit.mirrors, civit.mirror_push\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_without_the_extra_s3_is_a_usage_error_naming_it(
    installed: civit.Manifest,
    tmp_path: Path,
    civit_cli: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    node = other_node(installed, tmp_path)
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if boto3 were not installed
    run = civit_cli("install", "-f", node.path, "--frozen", "--mirror", "s3://models/fleet")
    assert run.code == 2
    # civit is installed from a Git URL, not PyPI: the hint adds boto3 to this very Python.
    assert f"{sys.executable} -m pip install boto3" in run.err
    assert "civit[s3]" in run.err
    run = civit_cli("mirror", "push", "s3://models/fleet", installed.path)
    assert run.code == 2 and "civit[s3]" in run.err
    with pytest.raises(UsageError, match=r"civit\[s3\]"):
        civit.push_mirror("s3://models/fleet", [installed.path])


# -- push ----------------------------------------------------------------------------


def test_push_uploads_the_lock_then_skips_what_is_there(
    fake: FakeCivitai,
    installed: civit.Manifest,
    bucket: str,
    s3: Any,
    aws_env: dict[str, str],
    civit_cli: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(installed.folder)  # no PATH: the lock beside the manifest
    run = civit_cli("mirror", "push", f"s3://{bucket}/fleet", "--json")
    assert run.code == 0, run.err
    document = json.loads(run.out)
    assert document["summary"] == {"uploaded": 3, "present": 0, "failed": 0}
    for file_id in FILE_IDS:
        served = fake.file(file_id)
        key = f"fleet/{served.sha256.lower()}"
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == served.content
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        # The checksum civit sent with the upload is what the store keeps.
        assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(served.sha256)).decode()
        assert head["Metadata"]["sha256"] == served.sha256.lower()

    again = civit_cli("mirror", "push", f"s3://{bucket}/fleet", "--json")
    assert again.code == 0
    second = json.loads(again.out)
    assert second["summary"] == {"uploaded": 0, "present": 3, "failed": 0}
    assert second["bytes_sent"] == 0
    assert "3 already there" in again.err
    assert_no_secrets(run.out, run.err, again.out, again.err)


def test_push_replaces_a_wrong_object_and_refuses_a_changed_file(
    fake: FakeCivitai, installed: civit.Manifest, bucket: str, s3: Any, aws_env: dict[str, str]
) -> None:
    lora = fake.file(3000001)
    s3.put_object(Bucket=bucket, Key=f"m/{lora.sha256.lower()}", Body=b"truncated")
    embedding_path = installed.folder / "models" / "easynegative.safetensors"
    changed = bytearray(embedding_path.read_bytes())
    changed[100] ^= 0xFF  # same size, other bytes: no longer the locked file
    embedding_path.write_bytes(bytes(changed))

    report = civit.push_mirror(f"s3://{bucket}/m", lock=installed.lock_path, cache=False)
    lora_result, embedding_result, vae_result = report.results
    assert (lora_result.status, vae_result.status) == ("uploaded", "uploaded")
    assert embedding_result.status == "failed" and embedding_result.exit_code == 7
    assert "does not hash to its SHA256" in (embedding_result.error or "")
    assert report.exit_code == 7
    stored = s3.get_object(Bucket=bucket, Key=f"m/{lora.sha256.lower()}")["Body"].read()
    assert stored == lora.content
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="m/")["Contents"]
    assert fake.file(3000002).sha256.lower() not in {item["Key"][2:] for item in listed}


def test_push_sends_large_files_in_parts(
    tmp_path: Path, bucket: str, s3: Any, aws_env: dict[str, str]
) -> None:
    big = tmp_path / "big.safetensors"
    content = os.urandom(11 * 1024 * 1024 + 17)  # three parts of 5 MiB (S3's minimum)
    big.write_bytes(content)
    sha256 = hashlib.sha256(content).hexdigest()
    seen: list[tuple[int, int | None]] = []

    report = civit.push_mirror(
        f"s3://{bucket}", [big], part_size=5 * 1024 * 1024, jobs=3,
        progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip
    assert report.exit_code == 0 and report.results[0].status == "uploaded"
    head = s3.head_object(Bucket=bucket, Key=sha256)
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload
    assert head["Metadata"]["sha256"] == sha256
    assert s3.get_object(Bucket=bucket, Key=sha256)["Body"].read() == content
    assert seen[-1] == (len(content), len(content))
    assert civit.push_mirror(f"s3://{bucket}", [big]).results[0].status == "present"
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert uploads == []  # nothing left half-done


def test_push_to_a_folder(tmp_path: Path, installed: civit.Manifest, fake: FakeCivitai) -> None:
    folder = tmp_path / "nfs" / "mirror"
    report = civit.push_mirror(folder, lock=installed.lock_path)
    assert report.count("uploaded") == 3
    for file_id in FILE_IDS:
        served = fake.file(file_id)
        assert (folder / served.sha256.lower()).read_bytes() == served.content
    assert civit.push_mirror(folder, lock=installed.lock_path).count("present") == 3
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_a_file_given_as_dest_is_a_clear_error(
    tmp_path: Path, civit_cli: Callable[..., Any]
) -> None:
    """`civit mirror push model.safetensors` (DEST forgotten) must not hint at --dest."""
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights")
    run = civit_cli("mirror", "push", model)
    assert run.code == 1
    assert f"cannot create folder {model}" in run.err
    assert "DEST is the mirror" in run.err and "--root" not in run.err


# -- install from the bucket ---------------------------------------------------------


def test_a_fleet_node_installs_from_the_bucket_without_asking_civitai(
    fake: FakeCivitai,
    installed: civit.Manifest,
    bucket: str,
    tmp_path: Path,
    aws_env: dict[str, str],
    civit_cli: Callable[..., Any],
) -> None:
    assert civit.push_mirror(f"s3://{bucket}/fleet", lock=installed.lock_path).exit_code == 0
    node = other_node(installed, tmp_path)
    lock_before = node.lock_path.read_text()
    fake.clear_log()
    report_path = tmp_path / "report.json"
    run = civit_cli(
        "install", "-f", node.path, "--frozen", "--mirror", f"s3://{bucket}/fleet",
        "--report", report_path,
    )  # fmt: skip
    assert run.code == 0, run.err
    assert fake.requests == [] and fake.cdn_requests() == []  # Civitai saw nothing
    entries = json.loads(report_path.read_text())["entries"]
    assert [entry["source"] for entry in entries] == ["mirror"] * 3
    for entry in entries:
        assert Path(entry["path"]).read_bytes() == fake.file(entry["file_id"]).content
    assert "from the mirror" in run.err
    assert node.lock_path.read_text() == lock_before
    assert_no_secrets(run.out, run.err, report_path.read_text(), node.lock_path.read_text())
    leftovers = [p.name for p in (node.folder / "models").iterdir() if ".part" in p.name]
    assert leftovers == []


def test_a_damaged_or_missing_object_falls_back_to_civitai_and_the_report_says_why(
    fake: FakeCivitai,
    client: Client,
    installed: civit.Manifest,
    bucket: str,
    s3: Any,
    tmp_path: Path,
    aws_env: dict[str, str],
) -> None:
    civit.push_mirror(f"s3://{bucket}", lock=installed.lock_path)
    lora, embedding, vae = (fake.file(file_id) for file_id in FILE_IDS)
    damaged = bytearray(embedding.content)
    damaged[1000] ^= 0xFF  # same size: only the digest can tell
    s3.put_object(Bucket=bucket, Key=embedding.sha256.lower(), Body=bytes(damaged))
    s3.delete_object(Bucket=bucket, Key=vae.sha256.lower())
    node = other_node(installed, tmp_path)
    fake.clear_log()

    report = civit.install(node, frozen=True, client=client, mirror=f"s3://{bucket}", **ENGINE)
    assert report.exit_code == 0
    got_lora, got_embedding, got_vae = report.results
    assert (got_lora.source, got_embedding.source, got_vae.source) == (
        "mirror",
        "civitai",
        "civitai",
    )
    # The message is about the mirror's copy, and Civitai has already replaced the file:
    # no "run again", but what fixes the mirror (push alone keeps a copy of the right size).
    where = f"s3://{bucket}/{embedding.sha256.lower()}"
    assert got_embedding.mirror_error == (
        f"{where} is a damaged copy: SHA256 {hashlib.sha256(damaged).hexdigest().upper()}, "
        f"the lock says {embedding.sha256.upper()} (delete it, then run `civit mirror push "
        f"s3://{bucket}` again: push keeps an object whose size is right)"
    )
    assert f"s3://{bucket}/{vae.sha256.lower()}: no such object (HTTP 404)" == got_vae.mirror_error
    assert fake.cdn_requests(lora.id) == []
    for result in report.results:
        assert result.path.read_bytes() == fake.file(result.file_id or 0).content
    assert_no_secrets(json.dumps(report.as_json()))

    pushed = civit.push_mirror(f"s3://{bucket}", lock=node.lock_path)
    assert [result.status for result in pushed.results] == ["present", "present", "uploaded"]
    s3.delete_object(Bucket=bucket, Key=embedding.sha256.lower())  # as the hint says
    assert civit.push_mirror(f"s3://{bucket}", lock=node.lock_path).count("uploaded") == 1
    stored = s3.get_object(Bucket=bucket, Key=embedding.sha256.lower())["Body"].read()
    assert stored == embedding.content


def test_an_object_of_the_wrong_size_is_passed_over_without_downloading_it(
    fake: FakeCivitai,
    client: Client,
    installed: civit.Manifest,
    bucket: str,
    s3: Any,
    tmp_path: Path,
    aws_env: dict[str, str],
) -> None:
    civit.push_mirror(f"s3://{bucket}", lock=installed.lock_path)
    vae = fake.file(3000003)
    s3.put_object(Bucket=bucket, Key=vae.sha256.lower(), Body=vae.content[:-1])
    node = other_node(installed, tmp_path)
    report = civit.install(node, frozen=True, client=client, mirror=f"s3://{bucket}", **ENGINE)
    assert report.exit_code == 0
    assert report.results[2].source == "civitai"
    assert report.results[2].mirror_error == (
        f"s3://{bucket}/{vae.sha256.lower()} has {vae.length - 1} bytes, the lock says "
        f"{vae.length}: a damaged copy (run `civit mirror push s3://{bucket}` again: it "
        "replaces a wrong object)"
    )
    pushed = civit.push_mirror(f"s3://{bucket}", lock=node.lock_path)
    assert [result.status for result in pushed.results] == ["present", "present", "uploaded"]
    assert s3.get_object(Bucket=bucket, Key=vae.sha256.lower())["Body"].read() == vae.content


def test_an_unreachable_endpoint_falls_back_to_civitai(
    fake: FakeCivitai,
    client: Client,
    installed: civit.Manifest,
    tmp_path: Path,
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    monkeypatch.setenv("CIVIT_MIRROR", "s3://models/fleet")  # the variable works too
    node = other_node(installed, tmp_path)
    report = civit.install(node, frozen=True, client=client, **ENGINE)
    assert report.exit_code == 0
    assert {result.source for result in report.results} == {"civitai"}
    switched_off_once(report, f"cannot reach the S3 endpoint {dead}")


# -- credentials ---------------------------------------------------------------------


class StrictServer:
    """The strict moto server: its URL, and the requests it logged (one line each)."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def requests(self, path_start: str) -> list[str]:
        """Logged request lines whose path starts with ``path_start`` (e.g. ``/bucket/key``)."""
        return [line for line in self.log.read_text().splitlines() if f" {path_start}" in line]


@pytest.fixture(scope="session")
def strict_s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StrictServer]:
    """A second moto server, in its own process, that checks credentials (IAM on).

    The free port is found by binding and releasing it, so another server started at
    the same moment (other xdist workers start theirs too) may take it first: then the
    process exits, and it is started again on a new port.
    """
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    log = tmp_path_factory.mktemp("strict-moto") / "server.log"
    for _ in range(5):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-c", "from moto.server import main; main()", "-H",
                 "127.0.0.1", "-p", str(port)],
                env=env, stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        if _wait_for_port(process, port, timeout=60):
            break
        process.kill()
        process.wait(10)
    else:
        raise RuntimeError(f"the strict moto server did not start: {log.read_text()[-2000:]}")
    try:
        yield StrictServer(f"http://127.0.0.1:{port}", log)
    finally:
        process.terminate()
        process.wait(10)


def _wait_for_port(process: subprocess.Popen[bytes], port: int, *, timeout: float) -> bool:
    """Whether ``process`` accepts connections on ``port`` before it exits or time runs out."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


@pytest.fixture
def twenty(fake: FakeCivitai, client: Client, tmp_path: Path) -> civit.Manifest:
    """A node with a lock of twenty small files and none of them installed."""
    models = fake.add_synthetic_models(20)
    project = tmp_path / "twenty"
    project.mkdir()
    manifest = civit.write_manifest(
        project / "civit.toml", [str(model.id) for model in models], settings={"dest": "models"}
    )
    civit.lock(manifest, client=client)
    return manifest


def test_wrong_credentials_are_asked_once_and_civitai_takes_over(
    fake: FakeCivitai,
    twenty: civit.Manifest,
    tmp_path: Path,
    aws_env: dict[str, str],
    strict_s3_server: StrictServer,
    civit_cli: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No other file can escape refused credentials: the mirror is switched off after
    the first refusal (it was one refused HEAD and one repeated line per file)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", strict_s3_server.url)
    prefix = f"fleet-{uuid.uuid4().hex[:8]}"
    report_path = tmp_path / "report.json"
    run = civit_cli(
        "install", "-f", twenty.path, "--frozen", "--jobs", "4",
        "--mirror", f"s3://models/{prefix}", "--report", report_path,
    )  # fmt: skip
    assert run.code == 0, run.err
    assert len(strict_s3_server.requests(f"/models/{prefix}/")) == 1
    entries = json.loads(report_path.read_text())["entries"]
    assert [entry["source"] for entry in entries] == ["civitai"] * 20
    refused = [entry for entry in entries if "S3 refused the request" in entry["mirror_error"]]
    assert len(refused) == 1
    where = f"s3://models/{prefix}/{fake.file(refused[0]['file_id']).sha256.lower()}"
    assert refused[0]["mirror_error"].startswith(f"S3 refused the request for {where} (HTTP 403)")
    assert "the mirror is off for the rest of this run" in refused[0]["mirror_error"]
    assert "AWS_ACCESS_KEY_ID" in refused[0]["mirror_error"]  # says what to check
    others = {entry["mirror_error"] for entry in entries if entry is not refused[0]}
    assert others == {f"not asked: the mirror was switched off after {where} (S3 refused access)"}
    assert run.err.count("mirror passed over: S3 refused the request") == 1
    assert run.err.count("mirror passed over: not asked") == 19

    push = civit_cli("mirror", "push", f"s3://models/{prefix}", "--lock", twenty.lock_path)
    assert push.code == 3
    assert "S3 refused the request" in push.err
    with pytest.raises(AuthError):
        S3Bucket(parse_s3_url("s3://models/fleet")).head("ab" * 32)
    assert_no_secrets(run.out, run.err, push.out, push.err, report_path.read_text())
    assert_no_secrets(twenty.lock_path.read_text())


def test_credentials_and_endpoint_come_from_an_aws_profile(
    fake: FakeCivitai,
    client: Client,
    installed: civit.Manifest,
    bucket: str,
    tmp_path: Path,
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """R2/MinIO users often keep everything in ~/.aws: a profile chosen by AWS_PROFILE."""
    Path(aws_env["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        f"[fleet]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"
    )
    Path(aws_env["AWS_CONFIG_FILE"]).write_text(
        f"[profile fleet]\nregion = us-east-1\nendpoint_url = {aws_env['AWS_ENDPOINT_URL']}\n"
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_PROFILE", "fleet")
    assert civit.push_mirror(f"s3://{bucket}", lock=installed.lock_path).count("uploaded") == 3
    fake.clear_log()
    node = other_node(installed, tmp_path)
    report = civit.install(node, frozen=True, client=client, mirror=f"s3://{bucket}", **ENGINE)
    assert [result.source for result in report.results] == ["mirror"] * 3
    assert fake.requests == []

    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(UsageError, match="AWS profile 'nobody'"):
        civit.push_mirror(f"s3://{bucket}", lock=installed.lock_path)


def test_the_per_service_endpoint_variable_works(
    tmp_path: Path, bucket: str, s3: Any, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_ENDPOINT_URL_S3 (what an R2 or MinIO setup beside other AWS services uses)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws_env["AWS_ENDPOINT_URL"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # for other services only
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights" * 1000)
    assert civit.push_mirror(f"s3://{bucket}", [model]).count("uploaded") == 1
    key = hashlib.sha256(model.read_bytes()).hexdigest()
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == model.read_bytes()


def test_push_reads_locked_files_from_the_store_where_they_are_not_installed(
    fake: FakeCivitai, client: Client, tmp_path: Path, bucket: str, s3: Any, aws_env: dict[str, str]
) -> None:
    project = tmp_path / "with-store"
    project.mkdir()
    manifest = civit.write_manifest(project / "civit.toml", THREE, settings={"dest": "models"})
    store = tmp_path / "store"
    assert civit.install(manifest, client=client, store=store, **ENGINE).exit_code == 0
    shutil.rmtree(project / "models")  # only the store has the bytes now

    report = civit.push_mirror(f"s3://{bucket}", lock=manifest.lock_path, store=store)
    assert report.count("uploaded") == 3
    assert all(str(result.path).startswith(str(store)) for result in report.results)
    vae = fake.file(3000003)
    assert s3.get_object(Bucket=bucket, Key=vae.sha256.lower())["Body"].read() == vae.content

    missing = civit.push_mirror(f"s3://{bucket}", lock=manifest.lock_path)  # no store given
    assert missing.exit_code == 1
    assert "not installed (run `civit install`)" in (missing.results[0].error or "")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_push_refuses_a_fifo_instead_of_hanging(tmp_path: Path) -> None:
    good = tmp_path / "good.safetensors"
    good.write_bytes(b"weights" * 1000)
    fifo = tmp_path / "planted.safetensors"
    os.mkfifo(fifo)
    report = civit.push_mirror(tmp_path / "mirror", [fifo, good])
    assert [result.status for result in report.results] == ["failed", "uploaded"]
    assert "FIFO" in (report.results[0].error or "")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_folder_mirror_is_readable_like_any_new_file(tmp_path: Path) -> None:
    source = tmp_path / "model.safetensors"
    source.write_bytes(b"weights" * 1000)
    old = os.umask(0o022)
    try:
        report = civit.push_mirror(tmp_path / "mirror", [source])
    finally:
        os.umask(old)
    pushed = Path(report.results[0].destination or "")
    assert pushed.stat().st_mode & 0o777 == 0o644  # a static server can serve it
