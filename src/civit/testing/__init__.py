"""``FakeCivitai``: a real loopback fake of Civitai for tests, demos and benchmarks.

It runs two threaded HTTP/1.1 servers on 127.0.0.1: the API origin (``fake.url``),
which speaks the documented ``/api/v1`` endpoints and ``/api/download/models/{id}``,
and a separate "CDN" origin (``fake.cdn_url``) that serves presigned, expiring links
with ``Range`` support, the way Civitai's storage host does. Everything travels over
real sockets, so a client is tested exactly as it runs against the real site:
redirects across origins, ``Authorization`` handling, 206/416, ``Content-Disposition``.

The catalog is deterministic: file bytes are generated from seeds and every hash in
the API records is computed from those bytes (:func:`civit.hashing.digest_bytes`).
:func:`default_catalog` documents the ids tests rely on (827184 is a checkpoint with
fp16/fp32 copies of the same file name, 99001 is archived, 99002 is in Early Access,
99003 has downloads disabled, 99004 has hostile file names, 99005 only training data;
99010 is a Flux checkpoint whose files are a diffusion-only safetensors and a GGUF,
99011 a Flux checkpoint bundling VAE and text encoders, 99012 a text encoder).
Versions carry showcase ``images`` (with ``nsfwLevel`` and ``type``; 368189 has an X
image, a video and a PG-13 PNG, in that order) served as real PNG/JPEG bytes from the
CDN origin.
:func:`multi_base_model` (400100) adds a LoRA with versions on four base models
(``early_access=True``: and a newest one, 400106, in Early Access).

Fault knobs (all thread-safe, all undone by :meth:`FakeCivitai.reset_faults`)::

    fake.set_faults(2402203, drop_after=65536)   # cut the connection mid-body, once
    fake.set_faults(2402203, ignore_range=True)  # answer 200 to every Range request
    fake.set_faults(2402203, corrupt=True)       # serve bytes that fail the hashes
    fake.set_faults(2402203, expire_after=10_000)  # presigned links expire mid-download
    fake.set_faults(2402203, throttle=1_000_000)   # bytes per second per connection
    fake.set_faults(2402203, html=True)          # a Cloudflare page instead of the file
    fake.set_faults(2402203, stall_after=1000, stall_seconds=5)
    fake.fail_api(503, times=2, retry_after="1") # the next two API calls fail
    fake.daily_limit_reached = True              # downloads answer 429
    fake.expire_links()                          # every link issued so far expires
    fake.set_faults(2402203, status=429, status_times=2)  # storage throttling, no Retry-After
    fake.set_faults(2402203, range_cap=4 << 20)  # 206 answers of at most 4 MiB
    fake.raw_links = True                        # links with raw spaces in the path

Through a proxy, over TLS, under names only the proxy resolves::

    with FakeCivitai(api_name="civitai.test", cdn_name="cdn.test", tls=True) as fake, \
            LoopbackProxy({"civitai.test": "127.0.0.1", "cdn.test": "127.0.0.1"}) as proxy:
        ...  # HTTPS_PROXY=proxy.url, SSL_CERT_FILE=fake.ca_file

Use it in your own pytest suite::

    import pytest
    from civit.testing import FakeCivitai

    @pytest.fixture
    def fake():
        with FakeCivitai(token="test-token") as server:
            yield server

    def test_my_pipeline(fake, tmp_path, monkeypatch):
        monkeypatch.setenv("CIVITAI_BASE_URL", fake.url)
        monkeypatch.setenv("CIVITAI_API_TOKEN", fake.token)
        ...  # run your code, then inspect fake.requests / fake.bytes_served(file_id)

Or as a process (for shell scripts and demos)::

    python -m civit.testing --port-file /tmp/civitai.url
"""

from __future__ import annotations

from civit.testing.catalog import (
    IN_MEMORY_LIMIT,
    Catalog,
    FakeFile,
    FakeImage,
    FakeModel,
    FakeVersion,
    bench_model,
    default_catalog,
    make_gguf,
    make_jpeg,
    make_pickle,
    make_png,
    make_safetensors,
    multi_base_model,
    synthetic_models,
)
from civit.testing.faults import FileFaults, RequestLog
from civit.testing.proxy import LoopbackProxy, ProxiedRequest
from civit.testing.runner import main
from civit.testing.server import FakeCivitai

__all__ = [
    "IN_MEMORY_LIMIT",
    "Catalog",
    "FakeCivitai",
    "FakeFile",
    "FakeImage",
    "FakeModel",
    "FakeVersion",
    "FileFaults",
    "LoopbackProxy",
    "ProxiedRequest",
    "RequestLog",
    "bench_model",
    "default_catalog",
    "main",
    "make_gguf",
    "make_jpeg",
    "make_pickle",
    "make_png",
    "make_safetensors",
    "multi_base_model",
    "synthetic_models",
]
