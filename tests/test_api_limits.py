"""Issues 13.4, 13.9 (API part) and 13.12 (API answers): hostile API answers are
bounded in memory and time and end in civit errors, never in an internal error.

The hostile origin is a scripted loopback server (``tests/hostile.py``); memory is
measured with :mod:`tracemalloc`, which sees every buffer the body passes through.
"""

from __future__ import annotations

import gzip
import json
import re
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from civit import CivitError, Client, NetworkError, NotFoundError, ResponseError, RetryPolicy
from civit.records import File, Version
from civit.testing import FakeCivitai
from hostile import ScriptedHandler, ScriptedServer, gzip_bomb, scripted_server

FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
MiB = 1024 * 1024


def client_for(server: ScriptedServer, **options: object) -> Client:
    return Client(base_url=server.url, token="t", retry=FAST, **options)  # type: ignore[arg-type]


def peak_memory(action: Callable[[], object]) -> tuple[int, BaseException | None]:
    """Peak bytes allocated while ``action`` runs, and what it raised."""
    tracemalloc.start()
    try:
        action()
    except Exception as exc:
        raised: BaseException | None = exc
    else:
        raised = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, raised


@pytest.fixture
def bomb_server() -> Iterator[ScriptedServer]:
    bomb = gzip_bomb(96 * MiB)

    def model(handler: ScriptedHandler) -> None:
        handler.answer(200, bomb, headers={"Content-Encoding": "gzip"})

    with scripted_server({"/api/v1/models/1": model}) as server:
        yield server


def test_a_gzip_bomb_is_not_inflated_past_the_limit(bomb_server: ScriptedServer) -> None:
    with client_for(bomb_server, max_answer_bytes=MiB) as client:
        peak, raised = peak_memory(lambda: client.get_model(1))
    assert isinstance(raised, ResponseError)
    assert "larger than 1.00 MiB" in str(raised)
    assert "max_api_response_mb" in str(raised)
    assert peak < 8 * MiB  # 96 MiB when inflated


def test_an_answer_within_the_limit_is_decompressed() -> None:
    document = {"id": 1, "name": "Small", "modelVersions": []}
    packed = gzip.compress(json.dumps(document).encode())

    def model(handler: ScriptedHandler) -> None:
        handler.answer(200, packed, headers={"Content-Encoding": "gzip"})

    with scripted_server({"/api/v1/models/1": model}) as server, client_for(server) as client:
        assert client.get_model(1).name == "Small"


def test_an_encoding_civit_did_not_ask_for_is_refused() -> None:
    def model(handler: ScriptedHandler) -> None:
        handler.answer(200, b"\x1b\x00\x00", headers={"Content-Encoding": "br"})

    with (
        scripted_server({"/api/v1/models/1": model}) as server,
        client_for(server) as client,
        pytest.raises(ResponseError, match="Content-Encoding 'br'"),
    ):
        client.get_model(1)


@pytest.mark.timeout(20)
def test_an_endless_json_answer_ends_at_the_limit() -> None:
    def endless(handler: ScriptedHandler) -> None:
        handler.start_chunked()
        handler.chunk(b'{"items": [')
        handler.stream_forever(b'{"id": 1, "name": "again"},' * 1000)

    with (
        scripted_server({"/api/v1/models": endless}) as server,
        client_for(server, max_answer_bytes=2 * MiB) as client,
    ):
        peak, raised = peak_memory(lambda: client.list_models(limit=1))
    assert isinstance(raised, ResponseError)
    assert "larger than 2.00 MiB" in str(raised)
    assert peak < 12 * MiB


@pytest.mark.timeout(20)
def test_a_trickling_answer_ends_at_the_deadline() -> None:
    def trickle(handler: ScriptedHandler) -> None:
        handler.start_chunked()
        handler.stream_forever(b" ", pause=0.05)

    started = time.monotonic()
    with (
        scripted_server({"/api/v1/models/1": trickle}) as server,
        client_for(server, deadline=0.5) as client,
        pytest.raises(NetworkError, match="still arriving after the API deadline"),
    ):
        client.get_model(1)
    assert time.monotonic() - started < 3


@pytest.mark.timeout(20)
def test_a_file_instead_of_a_download_redirect_is_refused_after_a_few_kib() -> None:
    declared = 256 * MiB

    def file_body(handler: ScriptedHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(declared))
        handler.end_headers()
        block = bytes(MiB)
        for _ in range(declared // len(block)):
            handler.write(block)

    with (
        scripted_server({"/api/download/models/5": file_body}) as server,
        client_for(server) as client,
    ):
        peak, raised = peak_memory(lambda: client.resolve_download(5, file_id=6))
    assert isinstance(raised, ResponseError)
    assert "HTTP 200 and no link" in str(raised)
    assert peak < 4 * MiB


# -- public bytes (previews, safetensors headers): the same bounds ---------------------


@pytest.mark.timeout(20)
def test_a_trickling_preview_ends_at_the_deadline() -> None:
    """An image host sending a byte now and then kept get --info alive for hours."""

    def trickle(handler: ScriptedHandler) -> None:
        handler.start_chunked(headers={"Content-Type": "image/png"})
        handler.chunk(b"\x89PNG\r\n\x1a\n")
        handler.stream_forever(b"\0", pause=0.05)

    started = time.monotonic()
    with (
        scripted_server({"/image.png": trickle}) as server,
        client_for(server, deadline=0.5) as client,
        pytest.raises(NetworkError, match="still arriving"),
    ):
        client.fetch_public(f"{server.url}/image.png", limit=MiB, what="the preview image")
    assert time.monotonic() - started < 3


def test_a_gzip_bomb_preview_is_not_inflated_past_the_limit(bomb_server: ScriptedServer) -> None:
    bomb_server.routes["/image.png"] = bomb_server.routes["/api/v1/models/1"]
    with client_for(bomb_server) as client:
        url = f"{bomb_server.url}/image.png"
        peak, raised = peak_memory(lambda: client.fetch_public(url, limit=MiB))
        head = client.fetch_public(url, limit=MiB, first_bytes=16)
    assert isinstance(raised, ResponseError) and "larger than the 1048576 bytes" in str(raised)
    assert peak < 8 * MiB
    assert head.data == bytes(16)


@pytest.mark.parametrize(
    "location", ["http://127.0.0.1:notaport/x.png", "http://[::1/x.png", "http://u:p@h:99999/"]
)
def test_a_broken_preview_address_is_a_civit_error(location: str) -> None:
    def redirect(handler: ScriptedHandler) -> None:
        handler.answer(302, b"", headers={"Location": location + "?sig=SECRET"})

    with scripted_server({"/image.png": redirect}) as server, client_for(server) as client:
        for url in (location + "?sig=SECRET", f"{server.url}/image.png"):
            with pytest.raises(CivitError) as raised:
                client.fetch_public(url, limit=MiB)
            assert "SECRET" not in str(raised.value) and "p@" not in str(raised.value)


def deep_json(depth: int = 200_000) -> bytes:
    return b"[" * depth + b"]" * depth


def test_deeply_nested_json_is_a_malformed_answer_not_a_crash() -> None:
    def deep(handler: ScriptedHandler) -> None:
        handler.answer(200, deep_json())

    def deep_error(handler: ScriptedHandler) -> None:
        handler.answer(404, deep_json())

    routes = {"/api/v1/models/1": deep, "/api/v1/models/2": deep_error}
    with scripted_server(routes) as server, client_for(server) as client:
        with pytest.raises(ResponseError, match="malformed JSON"):
            client.get_model(1)
        with pytest.raises(NotFoundError):
            client.get_model(2)


def test_deep_json_on_the_command_line_exits_1(civit_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def deep(handler: ScriptedHandler) -> None:
        handler.answer(200, deep_json())

    with scripted_server({"/api/v1/models/1": deep}) as server:
        monkeypatch.setenv("CIVITAI_BASE_URL", server.url)
        run = civit_cli("info", "1")
    assert run.code == 1
    assert "civit: error: Civitai sent malformed JSON" in run.err
    assert "internal error" not in run.err


# -- sizeKB out of range (13.12): records stay tolerant ------------------------------


@pytest.mark.parametrize(
    "value", ["Infinity", "-Infinity", "NaN", "1e400", "1e308", "-5", '"big"', '"1e999"']
)
def test_a_size_kb_that_is_no_size_reads_as_unknown(value: str) -> None:
    (file,) = Version.from_json(
        json.loads(f'{{"id": 1, "files": [{{"id": 2, "name": "x", "sizeKB": {value}}}]}}')
    ).files  # type: ignore[union-attr]
    assert file.size_kb is None
    assert file.approx_bytes is None
    assert File.from_json({"id": 3, "sizeKB": 10**400}).size_kb is None  # type: ignore[union-attr]


@pytest.mark.parametrize("value", ["Infinity", "NaN", "1e400"])
def test_info_and_get_work_with_an_infinite_size_kb(
    civit_cli,
    fake: FakeCivitai,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    value: str,
) -> None:
    real = httpx.get(f"{fake.url}/api/v1/model-versions/368189").text
    hostile = re.sub(r'"sizeKB": [0-9.eE+-]+', f'"sizeKB": {value}', real).encode()
    assert hostile != real.encode()

    def version(handler: ScriptedHandler) -> None:
        handler.answer(200, hostile)

    def download(handler: ScriptedHandler) -> None:
        handler.send_response(307)
        handler.send_header("Location", fake.cdn_link(3000001))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    routes = {"/api/v1/model-versions/368189": version, "/api/download/models/368189": download}
    with scripted_server(routes) as server:
        monkeypatch.setenv("CIVITAI_BASE_URL", server.url)
        run = civit_cli("get", "@368189", "--dest", tmp_path)
    assert run.code == 0, run.err
    assert (tmp_path / "add-detail-xl.safetensors").stat().st_size == fake.file(3000001).length


def test_an_id_of_5000_digits_is_no_id() -> None:
    assert File.from_json({"id": "1" * 5000, "name": "x"}) is None
    assert Version.from_json({"id": 1, "modelId": "9" * 5000}).model_id is None  # type: ignore[union-attr]


def test_a_hash_whose_version_names_no_model_is_a_clear_error(
    civit_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = "A" * 64

    def version(handler: ScriptedHandler) -> None:
        handler.answer(200, json.dumps({"id": 5, "name": "v", "files": []}).encode())

    with scripted_server({f"/api/v1/model-versions/by-hash/{digest}": version}) as server:
        monkeypatch.setenv("CIVITAI_BASE_URL", server.url)
        run = civit_cli("info", digest)
    assert run.code == 1
    assert "did not say which model version 5 belongs to" in run.err
