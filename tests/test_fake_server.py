"""FakeCivitai over real loopback sockets, driven by httpx."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from civit.hashing import digest_bytes
from civit.records import Model
from civit.testing import (
    IN_MEMORY_LIMIT,
    Catalog,
    FakeCivitai,
    FakeFile,
    FakeModel,
    FakeVersion,
    bench_model,
    default_catalog,
    make_pickle,
    make_safetensors,
    synthetic_models,
)

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"}
CIVITAI_HASH_NAMES = {
    "sha256": "SHA256",
    "autov1": "AutoV1",
    "autov2": "AutoV2",
    "autov3": "AutoV3",
    "crc32": "CRC32",
    "blake3": "BLAKE3",
}


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One client for the module: building its TLS context costs ~20 ms."""
    with httpx.Client(timeout=10) as client:
        yield client


def resolve(fake: FakeCivitai, http: httpx.Client, version_id: int, **params: str) -> str:
    """The presigned CDN link the download endpoint redirects to."""
    response = http.get(fake.download_url(version_id), params=params, headers=AUTH)
    assert response.status_code == 307, response.text
    return response.headers["location"]


def file_id_of(link: str) -> int:
    return int(urlsplit(link).path.split("/")[2])


# ---------------------------------------------------------------- generated content


def test_make_safetensors_is_valid_and_exact_size() -> None:
    data = make_safetensors(1000, seed=7)
    (header_length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_length])
    tensor_bytes = 1000 - 8 - header_length

    assert len(data) == 1000
    assert header_length % 8 == 0
    assert header["weight"] == {
        "dtype": "U8",
        "shape": [tensor_bytes],
        "data_offsets": [0, tensor_bytes],
    }
    assert "__metadata__" in header
    assert make_safetensors(1000, seed=7) == data != make_safetensors(1000, seed=8)
    assert "autov3" in digest_bytes(data)
    with pytest.raises(ValueError, match="at least"):
        make_safetensors(20, seed=1)


def test_make_pickle_has_zip_magic() -> None:
    data = make_pickle(5000, seed=3)
    assert len(data) == 5000
    assert data.startswith(b"PK\x03\x04")
    assert "autov3" not in digest_bytes(data)


def test_default_catalog_is_small() -> None:
    catalog = default_catalog()

    sizes = [f.length for m in catalog.models for v in m.versions for f in v.files]
    assert sum(sizes) < 10_000_000
    assert [m.id for m in catalog.models][:3] == [827184, 328553, 147759]


def test_synthetic_models_get_their_documented_ids() -> None:
    models = synthetic_models(1500)
    Catalog(models)
    assert models[0].id == 500_000
    assert models[0].versions[0].files[0].id == 4_500_000


def test_catalog_rejects_reused_ids(fake: FakeCivitai) -> None:
    clone = FakeModel(1, "clone", "LORA", "me", [fake.model(328553).versions[0]])
    with pytest.raises(ValueError, match="reuses ids"):
        fake.add_model(clone)
    with pytest.raises(KeyError):
        fake.file(1)


# ---------------------------------------------------------------- records


def test_model_record_has_civitai_shape_and_true_hashes(
    fake: FakeCivitai, http: httpx.Client
) -> None:
    response = http.get(f"{fake.url}/api/v1/models/827184")
    doc = response.json()
    newest, older = doc["modelVersions"]
    files = {f["id"]: f for f in newest["files"]}

    assert response.headers["content-type"].startswith("application/json")
    assert (doc["name"], doc["type"], doc["creator"]["username"]) == (
        "WAI-illustrious-SDXL",
        "Checkpoint",
        "WAI0731",
    )
    assert doc["tags"] == ["base model", "anime"]
    assert "mode" not in doc
    assert (newest["id"], newest["publishedAt"]) == (2514310, "2025-12-18T09:16:12.062Z")
    assert (older["id"], older["publishedAt"]) == (2300001, "2025-09-01T10:00:00")
    assert list(files) == [2402203, 2402204, 2402205, 2402206]
    assert files[2402203]["primary"] is True
    assert all("primary" not in files[i] for i in (2402204, 2402205, 2402206))
    assert files[2402203]["name"] == files[2402204]["name"]
    assert files[2402204]["metadata"] == {"format": "SafeTensor", "size": "full", "fp": "fp32"}
    assert "AutoV1" in files[2402203]["hashes"]
    assert "AutoV1" not in files[2402204]["hashes"]
    assert "AutoV3" not in files[2402205]["hashes"]
    for file_id, record in files.items():
        content = fake.file(file_id).content
        digests = digest_bytes(content)
        assert record["sizeKB"] == len(content) / 1024
        for name, value in record["hashes"].items():
            assert value == digests[name.lower()], (file_id, name)
    parsed = Model.from_json(doc)
    assert parsed is not None and parsed.versions[0].primary_file is not None
    assert parsed.versions[0].primary_file.hashes.sha256 == fake.file(2402203).sha256


def test_quirky_metadata_and_archived_records(fake: FakeCivitai, http: httpx.Client) -> None:
    upscaler = http.get(f"{fake.url}/api/v1/models/147759").json()
    archived = http.get(f"{fake.url}/api/v1/models/99001").json()
    archived_version = archived["modelVersions"][0]

    assert upscaler["modelVersions"][0]["files"][0]["metadata"] == {"format": "PickleTensor"}
    assert archived["mode"] == "Archived"
    assert "files" not in archived_version and "downloadUrl" not in archived_version


def test_model_errors(fake: FakeCivitai, http: httpx.Client) -> None:
    missing = http.get(f"{fake.url}/api/v1/models/12345")
    bad = http.get(f"{fake.url}/api/v1/models/abc")

    assert (missing.status_code, missing.json()) == (404, {"error": "No model with id 12345"})
    assert bad.status_code == 400 and "error" in bad.json()


@pytest.mark.parametrize(
    ("version_id", "air"),
    [
        (2514310, "urn:air:sdxl:checkpoint:civitai:827184@2514310"),
        (368189, "urn:air:sdxl:lora:civitai:328553@368189"),
        (9208, "urn:air:sd1:embedding:civitai:7808@9208"),
        (28569, "urn:air:sd1:vae:civitai:23906@28569"),
        (164821, "urn:air:other:upscaler:civitai:147759@164821"),
    ],
)
def test_version_endpoint(fake: FakeCivitai, http: httpx.Client, version_id: int, air: str) -> None:
    doc = http.get(f"{fake.url}/api/v1/model-versions/{version_id}").json()
    assert doc["air"] == air
    assert doc["modelId"] == int(air.rsplit(":", 1)[1].split("@")[0])
    assert set(doc["model"]) == {"name", "type", "nsfw", "poi"}


def test_version_errors_and_archived_version(fake: FakeCivitai, http: httpx.Client) -> None:
    missing = http.get(f"{fake.url}/api/v1/model-versions/1")
    archived = http.get(f"{fake.url}/api/v1/model-versions/99101").json()
    early = http.get(f"{fake.url}/api/v1/model-versions/99102").json()

    assert (missing.status_code, missing.json()) == (404, {"error": "Version not found"})
    assert archived["model"]["mode"] == "Archived"
    assert "files" not in archived and "downloadUrl" not in archived
    assert early["earlyAccessEndsAt"] == "2099-01-01T00:00:00.000Z"


# ---------------------------------------------------------------- listing


def list_ids(fake: FakeCivitai, http: httpx.Client, **params: object) -> list[int]:
    response = http.get(f"{fake.url}/api/v1/models", params=params)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_list_filters(fake: FakeCivitai, http: httpx.Client) -> None:
    loras = [328553, 99005, 99004, 99003, 99002]
    url = f"{fake.url}/api/v1/models?types=LORA&types=VAE"

    assert list_ids(fake, http, types="LORA") == loras
    assert [i["id"] for i in http.get(url).json()["items"]] == [*loras, 23906]
    assert list_ids(fake, http, types="lora,vae") == [*loras, 23906]
    assert list_ids(fake, http, query="illustrious") == [827184]
    assert list_ids(fake, http, ids="7808,23906") == [23906, 7808]
    assert list_ids(fake, http, tag="Anime") == [827184]
    assert list_ids(fake, http, username="wai0731") == [827184]
    assert list_ids(fake, http, baseModels="SD 1.5") == [99005, 99001, 23906, 7808]
    assert list_ids(fake, http, sort="Most Downloaded", period="Week", nsfw="false") != []
    primary_only = http.get(
        f"{fake.url}/api/v1/models", params={"ids": 827184, "primaryFileOnly": "true"}
    )
    files = primary_only.json()["items"][0]["modelVersions"][0]["files"]
    assert [f["id"] for f in files] == [2402203]


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"page": "0"}, {"types": "Bogus"},
     {"cursor": "garbage"}, {"ids": "1,a"}, {"nsfw": "maybe"}, {"period": "Century"},
     {"query": "wai", "page": "1"}],
)  # fmt: skip
def test_list_rejects_invalid_params(
    fake: FakeCivitai, http: httpx.Client, params: dict[str, str]
) -> None:
    response = http.get(f"{fake.url}/api/v1/models", params=params)
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)


def test_page_pagination(fake: FakeCivitai, http: httpx.Client) -> None:
    first = http.get(f"{fake.url}/api/v1/models", params={"limit": 5}).json()
    second = http.get(first["metadata"]["nextPage"]).json()
    last = http.get(second["metadata"]["nextPage"]).json()
    too_deep = http.get(f"{fake.url}/api/v1/models", params={"limit": 100, "page": 11})

    assert first["metadata"]["currentPage"] == 1
    assert first["metadata"]["totalItems"] == 13
    assert second["metadata"]["currentPage"] == 2
    assert len(last["items"]) == 3 and "nextPage" not in last["metadata"]
    assert "nextCursor" not in last["metadata"]
    ids = [i["id"] for page in (first, second, last) for i in page["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 13
    assert too_deep.status_code == 429
    assert "cursors" in too_deep.json()["error"]
    assert "retry-after" not in too_deep.headers


def test_cursor_pagination_across_many_pages(fake: FakeCivitai, http: httpx.Client) -> None:
    fake.add_synthetic_models(1500)
    seen: list[int] = []
    params: dict[str, str | int] = {"limit": 100, "types": "LORA"}
    pages = 0
    while True:
        doc = http.get(f"{fake.url}/api/v1/models", params=params).json()
        seen += [item["id"] for item in doc["items"]]
        pages += 1
        cursor = doc["metadata"].get("nextCursor")
        if cursor is None:
            break
        if "cursor" in params:
            assert parse_qs(urlsplit(doc["metadata"]["nextPage"]).query)["cursor"] == [cursor]
        params["cursor"] = cursor

    assert pages == 16
    assert len(seen) == len(set(seen)) == 1505
    assert seen[0] == 501_499 and seen[-1] == 99002


# ---------------------------------------------------------------- hash lookups


def test_by_hash_accepts_every_hash_type_case_insensitively(
    fake: FakeCivitai, http: httpx.Client
) -> None:
    hashes = fake.file(2402203).hashes
    for value in (*hashes.values(), hashes["SHA256"].lower()):
        doc = http.get(f"{fake.url}/api/v1/model-versions/by-hash/{value}").json()
        assert (doc["id"], doc["modelId"]) == (2514310, 827184), value
    missing = http.get(f"{fake.url}/api/v1/model-versions/by-hash/{'0' * 64}")
    assert (missing.status_code, missing.json()) == (404, {"error": "Model not found"})


def test_by_hash_ids(fake: FakeCivitai, http: httpx.Client) -> None:
    wai, tweaker = fake.file(2402204).sha256, fake.file(3000001).sha256
    response = http.post(
        f"{fake.url}/api/v1/model-versions/by-hash/ids", json=[wai.lower(), tweaker, "0" * 64]
    )
    assert response.json() == [
        {"modelVersionId": 2514310, "modelId": 827184, "hash": wai},
        {"modelVersionId": 368189, "modelId": 328553, "hash": tweaker},
    ]
    for body in (b"{}", b"[1, 2]", b"not json", json.dumps(["a"] * 10_001).encode()):
        bad = http.post(f"{fake.url}/api/v1/model-versions/by-hash/ids", content=body)
        assert bad.status_code == 400, body[:20]


# ---------------------------------------------------------------- download endpoint


def test_download_requires_a_valid_token(fake: FakeCivitai, http: httpx.Client) -> None:
    url = fake.download_url(2514310)
    anonymous = http.get(url)
    wrong = http.get(url, headers={"Authorization": "Bearer nope"})
    in_query = http.get(url, params={"token": TOKEN})

    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.json() == {
        "error": "Unauthorized",
        "message": "The creator of this asset requires you to be logged in to download it",
    }
    assert in_query.status_code == 307
    assert TOKEN not in in_query.headers["location"]


def test_browser_without_token_gets_login_page(fake: FakeCivitai, http: httpx.Client) -> None:
    redirect = http.get(fake.download_url(2514310), headers=BROWSER, params={"token": "bad"})
    page = http.get(redirect.headers["location"])

    assert redirect.status_code == 307
    assert redirect.headers["location"].startswith(f"{fake.url}/login?returnUrl=")
    assert "bad" not in redirect.headers["location"]
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert b"Sign in" in page.content


def test_download_redirects_to_signed_cdn_link(fake: FakeCivitai, http: httpx.Client) -> None:
    link = resolve(fake, http, 2514310)
    parts = urlsplit(link)

    assert link.startswith(fake.cdn_url + "/files/2402203/")
    assert set(parse_qs(parts.query)) == {"expires", "sig"}
    assert TOKEN not in link


@pytest.mark.parametrize(
    ("params", "file_id"),
    [
        ({}, 2402203),
        ({"fileId": "2402204"}, 2402204),
        ({"type": "Model", "format": "SafeTensor", "size": "full", "fp": "fp32"}, 2402204),
        ({"format": "safetensor", "fp": "FP32"}, 2402204),
        ({"format": "PickleTensor"}, 2402205),
        ({"type": "VAE"}, 2402206),
    ],
)
def test_download_file_selection(
    fake: FakeCivitai, http: httpx.Client, params: dict[str, str], file_id: int
) -> None:
    assert file_id_of(resolve(fake, http, 2514310, **params)) == file_id


def test_every_record_download_url_serves_its_own_file(
    fake: FakeCivitai, http: httpx.Client
) -> None:
    for model_id in (827184, 99004, 147759, 99005):
        doc = http.get(f"{fake.url}/api/v1/models/{model_id}").json()
        for version in doc["modelVersions"]:
            for record in version["files"]:
                response = http.get(record["downloadUrl"], headers=AUTH)
                assert file_id_of(response.headers["location"]) == record["id"], record["name"]


def test_download_not_found_and_bad_ids(fake: FakeCivitai, http: httpx.Client) -> None:
    no_version = http.get(fake.download_url(1), headers=AUTH)
    no_file = http.get(fake.download_url(2514310, file_id=3000001), headers=AUTH)
    no_match = http.get(fake.download_url(2514310), params={"fp": "fp8"}, headers=AUTH)
    bad_file = http.get(fake.download_url(2514310), params={"fileId": "x"}, headers=AUTH)

    assert (no_version.status_code, no_version.json()) == (404, {"error": "Model not found"})
    assert (no_file.status_code, no_file.json()) == (404, {"error": "File not found"})
    assert no_match.status_code == 404
    assert bad_file.status_code == 400


def test_download_refusals(fake: FakeCivitai, http: httpx.Client) -> None:
    archived = http.get(fake.download_url(99101), headers=AUTH)
    early = http.get(fake.download_url(99102), headers=AUTH)
    disabled = http.get(fake.download_url(99103), headers=AUTH)

    assert archived.status_code == 410
    assert archived.json() == {
        "error": "This model has been archived and is not available for download"
    }
    assert early.status_code == 403
    assert early.json()["error"] == "Early Access"
    assert early.json()["deadline"] == "2099-01-01T00:00:00.000Z"
    assert "2099-01-01" in early.json()["message"]
    assert (disabled.status_code, disabled.json()["error"]) == (401, "Unauthorized")
    assert "disabled downloads" in disabled.json()["message"]


def test_daily_limit(fake: FakeCivitai, http: httpx.Client) -> None:
    fake.daily_limit_reached = True
    limited = http.get(fake.download_url(2514310), headers=AUTH)
    fake.reset_faults()
    after_reset = http.get(fake.download_url(2514310), headers=AUTH)

    assert (limited.status_code, limited.json()) == (429, {"error": "Daily download limit reached"})
    assert "retry-after" not in limited.headers
    assert after_reset.status_code == 307


def test_following_redirect_keeps_token_away_from_cdn(fake: FakeCivitai) -> None:
    with httpx.Client(headers=AUTH, follow_redirects=True, timeout=10) as client:
        response = client.get(fake.download_url(368189))

    api_request, cdn_request = fake.requests
    assert response.status_code == 200
    assert response.content == fake.file(3000001).content
    assert response.headers["content-disposition"].startswith(
        'attachment; filename="add-detail-xl.safetensors"'
    )
    assert api_request.headers["authorization"] == f"Bearer {TOKEN}"
    assert (api_request.origin, api_request.status, api_request.file_id) == ("api", 307, 3000001)
    assert "authorization" not in cdn_request.headers
    assert (cdn_request.origin, cdn_request.status) == ("cdn", 200)
    assert cdn_request.body_bytes == fake.bytes_served(3000001) == 200_000


# ---------------------------------------------------------------- CDN


@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [("bytes=10-19", 10, 20), ("bytes=29990-", 29990, 30000), ("bytes=-50", 29950, 30000),
     ("bytes=0-99999999", 0, 30000), ("bytes=-99999", 0, 30000)],
)  # fmt: skip
def test_cdn_range(
    fake: FakeCivitai, http: httpx.Client, header: str, start: int, stop: int
) -> None:
    content = fake.file(3000002).content
    response = http.get(fake.cdn_link(3000002), headers={"Range": header})

    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{stop - 1}/30000"
    assert response.content == content[start:stop]


def test_cdn_full_response_headers(fake: FakeCivitai, http: httpx.Client) -> None:
    file = fake.file(3000002)
    full = http.get(fake.cdn_link(3000002))
    head = http.head(fake.cdn_link(3000002))

    assert full.status_code == 200
    assert full.content == file.content
    assert full.headers["content-type"] == "application/octet-stream"
    assert full.headers["accept-ranges"] == "bytes"
    assert full.headers["etag"] == f'"{file.sha256[:16].lower()}"'
    assert "last-modified" in full.headers
    assert head.headers["content-length"] == "30000" and head.content == b""


def test_cdn_unsatisfiable_range(fake: FakeCivitai, http: httpx.Client) -> None:
    for header in ("bytes=30000-", "bytes=-0"):
        response = http.get(fake.cdn_link(3000002), headers={"Range": header})
        assert response.status_code == 416
        assert response.headers["content-range"] == "bytes */30000"


def test_cdn_if_range_and_multi_range(fake: FakeCivitai, http: httpx.Client) -> None:
    link = fake.cdn_link(3000002)
    etag = http.head(link).headers["etag"]
    same = http.get(link, headers={"Range": "bytes=5-9", "If-Range": etag})
    changed = http.get(link, headers={"Range": "bytes=5-9", "If-Range": '"0000"'})
    multi = http.get(link, headers={"Range": "bytes=0-1,5-9"})

    assert same.status_code == 206
    assert changed.status_code == multi.status_code == 200
    assert len(changed.content) == len(multi.content) == 30000


def test_cdn_rejects_bad_signatures(fake: FakeCivitai, http: httpx.Client) -> None:
    link = fake.cdn_link(3000002)
    tampered = link[:-4] + "0000"
    other_file = link.replace("/files/3000002/easynegative", "/files/3000001/add-detail-xl")
    unsigned = link.split("?")[0]

    for url in (tampered, other_file, unsigned):
        response = http.get(url)
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/xml"
        assert b"<Code>AccessDenied</Code>" in response.content
    assert http.get(fake.cdn_url + "/files/1/x").status_code == 404


def test_cdn_links_expire(fake: FakeCivitai, http: httpx.Client) -> None:
    dead = http.get(fake.cdn_link(3000002, ttl=-5))
    old = fake.cdn_link(3000002)
    fake.expire_links()
    new = fake.cdn_link(3000002)

    assert dead.status_code == 403 and b"Request has expired" in dead.content
    assert http.get(old).status_code == 403
    assert http.get(new).status_code == 200


def test_cdn_names_hostile_files_in_content_disposition(
    fake: FakeCivitai, http: httpx.Client
) -> None:
    expected = {
        3000007: ('filename="../../escape.pt"', "filename*=UTF-8''..%2F..%2Fescape.pt"),
        3000008: ('filename="CON.safetensors"', "filename*=UTF-8''CON.safetensors"),
        3000009: ('filename="/etc/passwd"', "filename*=UTF-8''%2Fetc%2Fpasswd"),
        3000010: ('filename="evil__name.safetensors"', "filename*=UTF-8''evil%07%0Aname"),
    }
    for file_id, (plain, encoded) in expected.items():
        response = http.get(resolve(fake, http, 99104, fileId=str(file_id)))
        disposition = response.headers["content-disposition"]
        assert response.status_code == 200
        assert plain in disposition and encoded in disposition, disposition


# ---------------------------------------------------------------- fault knobs


def test_drop_after_cuts_the_first_responses(fake: FakeCivitai, http: httpx.Client) -> None:
    fake.set_faults(3000002, drop_after=1000, drop_times=2)
    link = fake.cdn_link(3000002)
    for _ in range(2):
        with pytest.raises(httpx.RemoteProtocolError):
            http.get(link)
    whole = http.get(link)

    assert whole.content == fake.file(3000002).content
    assert [r.body_bytes for r in fake.cdn_requests(3000002)] == [1000, 1000, 30000]
    assert fake.bytes_served(3000002) == 32000


def test_drop_after_counts_per_response_so_resume_progresses(
    fake: FakeCivitai, http: httpx.Client
) -> None:
    fake.set_faults(3000002, drop_after=1000)
    link = fake.cdn_link(3000002)
    received = b""
    with http.stream("GET", link) as response, pytest.raises(httpx.RemoteProtocolError):
        for chunk in response.iter_raw():
            received += chunk
    rest = http.get(link, headers={"Range": f"bytes={len(received)}-"})

    assert len(received) == 1000
    assert rest.status_code == 206
    assert received + rest.content == fake.file(3000002).content


def test_ignore_range(fake: FakeCivitai, http: httpx.Client) -> None:
    fake.set_faults(3000002, ignore_range=True)
    response = http.get(fake.cdn_link(3000002), headers={"Range": "bytes=100-"})
    assert response.status_code == 200
    assert response.content == fake.file(3000002).content


def test_corrupt_serves_different_bytes_but_record_keeps_true_hash(
    fake: FakeCivitai, http: httpx.Client
) -> None:
    fake.set_faults(3000002, corrupt=True)
    served = http.get(fake.cdn_link(3000002)).content
    tail = http.get(fake.cdn_link(3000002), headers={"Range": "bytes=15000-"}).content
    record = http.get(f"{fake.url}/api/v1/models/7808").json()
    true = fake.file(3000002).content

    differing = [i for i, (a, b) in enumerate(zip(served, true, strict=True)) if a != b]
    assert len(served) == len(true) and differing == [15000]
    assert tail[0] != true[15000] and tail[1:] == true[15001:]
    sha256 = record["modelVersions"][0]["files"][0]["hashes"]["SHA256"]
    assert sha256 == hashlib.sha256(true).hexdigest().upper()
    assert sha256 != hashlib.sha256(served).hexdigest().upper()


def test_expire_after_cuts_and_expires_old_links(fake: FakeCivitai, http: httpx.Client) -> None:
    fake.set_faults(3000002, expire_after=5000)
    old = resolve(fake, http, 9208)
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(old)
    retried = http.get(old, headers={"Range": "bytes=5000-"})
    fresh = http.get(resolve(fake, http, 9208), headers={"Range": "bytes=5000-"})

    assert fake.cdn_requests(3000002)[0].body_bytes == 5000
    assert retried.status_code == 403 and b"Request has expired" in retried.content
    assert fresh.status_code == 206
    assert fresh.content == fake.file(3000002).content[5000:]


def test_throttle_limits_bandwidth(fake: FakeCivitai, http: httpx.Client) -> None:
    fake.set_faults(3000002, throttle=100_000)
    started = time.perf_counter()
    response = http.get(fake.cdn_link(3000002))
    elapsed = time.perf_counter() - started

    assert response.content == fake.file(3000002).content
    assert 0.25 <= elapsed < 2.0


def test_html_challenge_instead_of_file(fake: FakeCivitai, http: httpx.Client) -> None:
    fake.set_faults(3000002, html=True)
    response = http.get(fake.cdn_link(3000002))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert b"Just a moment" in response.content


def test_stall_pauses_once_mid_body(fake: FakeCivitai, http: httpx.Client) -> None:
    fake.set_faults(3000002, stall_after=1000, stall_seconds=0.8)
    link = fake.cdn_link(3000002)
    started = time.perf_counter()
    first = http.get(link)
    first_elapsed = time.perf_counter() - started
    started = time.perf_counter()
    second = http.get(link)

    assert first.content == second.content == fake.file(3000002).content
    assert first_elapsed >= 0.75
    assert time.perf_counter() - started < 0.7  # the second response does not stall


def test_fail_api_then_recover(fake: FakeCivitai, http: httpx.Client) -> None:
    fake.fail_api(503, times=2, retry_after="1")
    first = http.get(f"{fake.url}/api/v1/models/7808")
    second = http.get(fake.download_url(9208), headers=AUTH)
    login = http.get(f"{fake.url}/login")
    third = http.get(f"{fake.url}/api/v1/models/7808")
    fake.fail_api(500, body="<html>oops</html>")
    custom = http.get(f"{fake.url}/api/v1/models/7808")

    assert (first.status_code, first.headers["retry-after"]) == (503, "1")
    assert first.json() == {"error": "Service Unavailable"}
    assert second.status_code == 503
    assert login.status_code == third.status_code == 200
    assert (custom.status_code, custom.text) == (500, "<html>oops</html>")


def test_malformed_json_and_reset(fake: FakeCivitai, http: httpx.Client) -> None:
    fake.malformed_json = True
    fake.set_faults(3000002, html=True)
    broken = http.get(f"{fake.url}/api/v1/models")
    fake.reset_faults()

    assert broken.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        broken.json()
    assert http.get(f"{fake.url}/api/v1/models").json()["items"]
    assert fake.faults(3000002) is None


def test_set_faults_rejects_unknown_file(fake: FakeCivitai) -> None:
    with pytest.raises(KeyError):
        fake.set_faults(1, corrupt=True)


# ---------------------------------------------------------------- log


def test_request_log(fake: FakeCivitai, http: httpx.Client) -> None:
    http.get(f"{fake.url}/api/v1/models", params={"types": ["LORA", "VAE"], "limit": 2})
    http.get(fake.cdn_link(3000002), headers={"Range": "bytes=0-99"})
    listing, ranged = fake.requests

    assert (listing.origin, listing.method, listing.path) == ("api", "GET", "/api/v1/models")
    assert listing.query == {"types": ["LORA", "VAE"], "limit": ["2"]}
    assert listing.file_id is None and listing.status == 200
    assert (ranged.status, ranged.body_bytes, ranged.file_id) == (206, 100, 3000002)
    assert ranged.headers["range"] == "bytes=0-99"
    assert fake.cdn_requests(3000001) == []
    fake.clear_log()
    assert fake.requests == [] and fake.bytes_served(3000002) == 0


# ---------------------------------------------------------------- files on disk


def test_disk_backed_file_is_served_with_sendfile_and_faults(
    tmp_path: Path, http: httpx.Client
) -> None:
    content = make_safetensors(300_000, 42)
    path = tmp_path / "disk.safetensors"
    path.write_bytes(content)
    version = FakeVersion(
        77,
        "v1",
        "SDXL 1.0",
        "2024-01-01T00:00:00Z",
        files=[FakeFile(7700, "disk.safetensors", path=path, primary=True)],
    )
    with FakeCivitai(catalog=Catalog([FakeModel(7, "Disk", "LORA", "me", [version])])) as fake:
        whole = http.get(fake.cdn_link(7700))
        part = http.get(fake.cdn_link(7700), headers={"Range": "bytes=1000-1999"})
        fake.set_faults(7700, corrupt=True)
        corrupted = http.get(fake.cdn_link(7700))

    assert whole.content == content
    assert part.content == content[1000:2000]
    assert corrupted.content != content and len(corrupted.content) == len(content)
    assert fake.file(7700).digests == digest_bytes(content)


def test_bench_model_sizes(tmp_path: Path) -> None:
    small = bench_model(5000).versions[0].files[0]
    assert (small.id, small.length, small.path) == (3999999, 5000, None)
    with pytest.raises(ValueError, match="directory"):
        bench_model(IN_MEMORY_LIMIT + 1)


def test_bench_model_on_disk_is_reused(tmp_path: Path) -> None:
    size = IN_MEMORY_LIMIT + 4096
    first = bench_model(size, directory=tmp_path).versions[0].files[0]
    started = time.perf_counter()
    again = bench_model(size, directory=tmp_path).versions[0].files[0]

    assert time.perf_counter() - started < 0.1
    assert first.path is not None and first.length == size and first.content == b""
    assert again.digests == first.digests
    sha256 = hashlib.sha256()
    with first.open() as stream:
        while block := stream.read(1 << 22):
            sha256.update(block)
    assert first.sha256 == sha256.hexdigest().upper()


# ---------------------------------------------------------------- lifecycle


def fake_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fake-civitai")]


def test_start_and_stop_are_quick_and_leave_no_threads(default_models: Sequence[FakeModel]) -> None:
    fake = FakeCivitai(catalog=Catalog(default_models))
    with pytest.raises(RuntimeError):
        _ = fake.url
    started = time.perf_counter()
    fake.start()
    with httpx.Client() as client:  # keeps an idle keep-alive connection open during stop
        assert client.get(f"{fake.url}/api/v1/models/7808").status_code == 200
        fake.set_faults(3000002, stall_after=10, stall_seconds=30)
        stalled = threading.Thread(target=lambda: client_get_quietly(fake.cdn_link(3000002)))
        stalled.start()
        time.sleep(0.1)
        fake.stop()
    elapsed = time.perf_counter() - started
    stalled.join(5)

    assert elapsed < 1.0
    assert fake_threads() == []
    fake.stop()  # idempotent


def client_get_quietly(url: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(url, timeout=10)


def test_runner_serves_until_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "url"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    process = subprocess.Popen(
        [sys.executable, "-m", "civit.testing", "--port-file", str(port_file),
         "--token", "secret", "--extra-file-size", "5000"],
        stderr=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert port_file.exists(), process.communicate(timeout=5)[1]
        url = port_file.read_text().strip()
        model = httpx.get(f"{url}/api/v1/models/99999").json()
        with httpx.Client(follow_redirects=True, headers={"Authorization": "Bearer secret"}) as c:
            download = c.get(f"{url}/api/download/models/99999")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)

    assert model["name"] == "Big Bench Model"
    assert download.status_code == 200 and len(download.content) == 5000
    assert process.returncode == 0
    assert f"FakeCivitai API at {url} (CDN http://127.0.0.1:" in stderr
    assert "token=secret" in stderr
    assert "Traceback" not in stderr
