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
99003 has downloads disabled, 99004 has hostile file names, 99005 only training data).

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

import argparse
import contextlib
import hashlib
import hmac
import io
import json
import math
import random
import re
import secrets
import signal
import socket
import socketserver
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.utils import formatdate
from functools import cached_property
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, BinaryIO, Literal
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from civit.hashing import Digester, digest_bytes, hash_file

__all__ = [
    "IN_MEMORY_LIMIT",
    "Catalog",
    "FakeCivitai",
    "FakeFile",
    "FakeModel",
    "FakeVersion",
    "FileFaults",
    "RequestLog",
    "bench_model",
    "default_catalog",
    "main",
    "make_pickle",
    "make_safetensors",
    "synthetic_models",
]

AUTOV1_MIN_SIZE = 2 * 1024 * 1024
"""Civitai only records AutoV1 for files of at least 2 MiB."""

IN_MEMORY_LIMIT = 64 * 1024 * 1024
"""Generated files larger than this live on disk (:func:`bench_model`)."""

MAX_PAGE_ITEMS = 1000
MAX_HASHES_PER_LOOKUP = 10_000
MAX_REQUEST_BODY = 8 * 1024 * 1024
CHUNK_SIZE = 1024 * 1024
LAST_MODIFIED = formatdate(1_734_512_172, usegmt=True)

MODEL_FILE_TYPES = frozenset({"model", "pruned model", "diffusion model", "unet"})
MODEL_TYPES = frozenset(
    {
        "checkpoint", "textualinversion", "hypernetwork", "aestheticgradient", "lora", "locon",
        "dora", "controlnet", "upscaler", "motionmodule", "vae", "textencoder", "unet",
        "clipvision", "poses", "wildcards", "workflows", "detection", "other",
    }
)  # fmt: skip
PERIODS = frozenset({"alltime", "year", "month", "week", "day"})
AIR_TYPES = {"textualinversion": "embedding"}
AIR_ECOSYSTEMS = {"illustrious": "sdxl", "sdxl 1.0": "sdxl", "pony": "sdxl", "sd 1.5": "sd1"}

LOGIN_PAGE = (
    b'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
    b"<title>Sign in | Civitai</title></head><body><h1>Sign in to Civitai</h1>"
    b"<p>You need to be logged in to download this model.</p></body></html>"
)
CHALLENGE_PAGE = (
    b'<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>'
    b'<meta http-equiv="refresh" content="390"></head><body>'
    b"<h1>Checking if the site connection is secure</h1>"
    b"<noscript>Enable JavaScript and cookies to continue</noscript></body></html>"
)
MALFORMED_JSON = b'{"items": [{"id": 827184, "name": "WAI-illus'


# --------------------------------------------------------------------------- content


def _safetensors_prefix(size: int, seed: int) -> tuple[bytes, int]:
    """The 8-byte length + padded JSON header of a ``size``-byte file, and its tensor size."""

    def header(tensor_bytes: int) -> bytes:
        doc = {
            "__metadata__": {"format": "pt", "generator": "civit.testing", "seed": str(seed)},
            "weight": {"dtype": "U8", "shape": [tensor_bytes], "data_offsets": [0, tensor_bytes]},
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    # The widest tensor size bounds the header length; the real, shorter header is
    # padded with spaces up to that bound so the total comes out exact.
    padded_length = -(-len(header(size)) // 8) * 8
    tensor_bytes = size - 8 - padded_length
    if tensor_bytes < 0:
        raise ValueError(f"a safetensors file needs at least {8 + padded_length} bytes")
    text = header(tensor_bytes).ljust(padded_length, b" ")
    return len(text).to_bytes(8, "little") + text, tensor_bytes


def make_safetensors(size: int, seed: int) -> bytes:
    """A valid safetensors file of exactly ``size`` bytes holding one ``U8`` tensor.

    Layout: 8-byte little-endian header length, a JSON header (one tensor ``weight``
    plus ``__metadata__``) padded with spaces to a multiple of 8, then pseudo-random
    tensor bytes from ``random.Random(seed)``.

    Args:
        size: total file length in bytes (at least about 150).
        seed: makes the content reproducible.

    Returns:
        The file's bytes.

    Raises:
        ValueError: ``size`` is too small to hold the header.
    """
    prefix, tensor_bytes = _safetensors_prefix(size, seed)
    return prefix + random.Random(seed).randbytes(tensor_bytes)


def make_pickle(size: int, seed: int) -> bytes:
    """``size`` pseudo-random bytes starting with the zip magic of a ``.ckpt`` file.

    Args:
        size: total length in bytes (at least 4).
        seed: makes the content reproducible.

    Returns:
        The file's bytes.
    """
    return b"PK\x03\x04" + random.Random(seed).randbytes(max(size - 4, 0))


# --------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class FakeFile:
    """One downloadable file; its hashes are computed from its bytes on first use.

    Content lives in ``content``, or on disk at ``path`` for files too big for memory
    (then ``known_digests`` may carry precomputed digests to avoid reading it twice).
    ``fp`` and ``size`` may be ``None``: the record then omits those metadata keys.
    """

    id: int
    name: str
    content: bytes = field(default=b"", repr=False)
    type: str = "Model"
    format: str = "SafeTensor"
    fp: str | None = "fp16"
    size: str | None = "pruned"
    primary: bool = False
    path: Path | None = None
    known_digests: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    @cached_property
    def length(self) -> int:
        """The file's size in bytes."""
        return self.path.stat().st_size if self.path is not None else len(self.content)

    @cached_property
    def digests(self) -> dict[str, str]:
        """Every Civitai digest of the content, ``{"sha256": HEX, ...}`` (lower-case keys)."""
        if self.known_digests is not None:
            return dict(self.known_digests)
        if self.path is None:
            return digest_bytes(self.content)
        return hash_file(self.path, "all")

    @property
    def sha256(self) -> str:
        """Upper-case hex SHA-256 of the content."""
        return self.digests["sha256"]

    @property
    def hashes(self) -> dict[str, str]:
        """The ``hashes`` object of the API record (AutoV1 only from 2 MiB, like Civitai)."""
        spelled = {
            "autov1": "AutoV1",
            "autov2": "AutoV2",
            "autov3": "AutoV3",
            "sha256": "SHA256",
            "crc32": "CRC32",
            "blake3": "BLAKE3",
        }
        digests = self.digests
        result = {spelled[name]: digests[name] for name in spelled if name in digests}
        if self.length < AUTOV1_MIN_SIZE:
            result.pop("AutoV1", None)
        return result

    def open(self) -> BinaryIO:
        """A readable, seekable stream over the content."""
        return self.path.open("rb") if self.path is not None else io.BytesIO(self.content)

    def metadata(self) -> dict[str, str]:
        """The record's ``metadata`` object, absent keys omitted."""
        pairs = (("format", self.format), ("size", self.size), ("fp", self.fp))
        return {key: value for key, value in pairs if value is not None}


@dataclass(frozen=True)
class FakeVersion:
    """A model version; ``files`` keeps the order the API lists them in."""

    id: int
    name: str
    base_model: str
    published_at: str
    files: Sequence[FakeFile] = ()
    early_access_deadline: str | None = None
    downloads_disabled: bool = False
    trained_words: Sequence[str] = ()

    @property
    def in_early_access(self) -> bool:
        """Whether the Early Access deadline lies in the future (unparseable: yes)."""
        if self.early_access_deadline is None:
            return False
        try:
            deadline = datetime.fromisoformat(self.early_access_deadline.replace("Z", "+00:00"))
        except ValueError:
            return True
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=timezone.utc)
        return deadline > datetime.now(timezone.utc)


@dataclass(frozen=True)
class FakeModel:
    """A model with its versions, newest first."""

    id: int
    name: str
    type: str
    creator: str
    versions: Sequence[FakeVersion]
    tags: Sequence[str] = ()
    nsfw: bool = False
    archived: bool = False
    description: str = ""


class Catalog:
    """The models a :class:`FakeCivitai` serves; thread-safe, extensible at runtime."""

    def __init__(self, models: Iterable[FakeModel] = ()) -> None:
        self._lock = threading.Lock()
        self._models: dict[int, FakeModel] = {}
        self._versions: dict[int, tuple[FakeModel, FakeVersion]] = {}
        self._files: dict[int, tuple[FakeModel, FakeVersion, FakeFile]] = {}
        self._ordered: list[FakeModel] | None = None
        self._by_hash: dict[str, tuple[FakeModel, FakeVersion]] | None = None
        for model in models:
            self.add(model)

    def add(self, model: FakeModel) -> None:
        """Add ``model``.

        Args:
            model: a model whose model, version and file ids are all new.

        Raises:
            ValueError: an id is already in the catalog.
        """
        with self._lock:
            version_ids = [version.id for version in model.versions]
            file_ids = [file.id for version in model.versions for file in version.files]
            clashes = (
                ([model.id] if model.id in self._models else [])
                + [i for i in version_ids if i in self._versions]
                + [i for i in file_ids if i in self._files]
            )
            if clashes or len(set(file_ids)) != len(file_ids):
                raise ValueError(f"model {model.id} reuses ids already in the catalog")
            self._models[model.id] = model
            for version in model.versions:
                self._versions[version.id] = (model, version)
                for file in version.files:
                    self._files[file.id] = (model, version, file)
            self._ordered = None
            self._by_hash = None

    @property
    def models(self) -> list[FakeModel]:
        """All models, highest id first (the order listings use)."""
        with self._lock:
            if self._ordered is None:
                self._ordered = sorted(self._models.values(), key=lambda m: m.id, reverse=True)
            return list(self._ordered)

    def find_model(self, model_id: int) -> FakeModel | None:
        """The model with this id, or ``None``."""
        with self._lock:
            return self._models.get(model_id)

    def find_version(self, version_id: int) -> tuple[FakeModel, FakeVersion] | None:
        """The version with this id and its model, or ``None``."""
        with self._lock:
            return self._versions.get(version_id)

    def find_file(self, file_id: int) -> tuple[FakeModel, FakeVersion, FakeFile] | None:
        """The file with this id with its model and version, or ``None``."""
        with self._lock:
            return self._files.get(file_id)

    def find_hash(self, digest: str) -> tuple[FakeModel, FakeVersion] | None:
        """The version holding a file with this digest (any recorded hash type), or ``None``."""
        with self._lock:
            if self._by_hash is None:
                index: dict[str, tuple[FakeModel, FakeVersion]] = {}
                for model, version, file in self._files.values():
                    for value in file.hashes.values():
                        index.setdefault(value, (model, version))
                self._by_hash = index
            return self._by_hash.get(digest.upper())


def default_catalog() -> Catalog:
    """The catalog other tests are written against (ids and quirks are contractual).

    Returns:
        A new catalog of about 4 MB of generated files.
    """
    wai_v16 = FakeVersion(
        2514310,
        "v16.0",
        "Illustrious",
        "2025-12-18T09:16:12.062Z",
        files=[
            FakeFile(2402203, "waiIllustriousSDXL_v160.safetensors",
                     make_safetensors(2_300_000, 2402203), primary=True),
            FakeFile(2402204, "waiIllustriousSDXL_v160.safetensors",
                     make_safetensors(400_000, 2402204), fp="fp32", size="full"),
            FakeFile(2402205, "waiIllustriousSDXL_v160.ckpt", make_pickle(300_000, 2402205),
                     format="PickleTensor"),
            FakeFile(2402206, "sdxl_vae.safetensors", make_safetensors(100_000, 2402206),
                     type="VAE"),
        ],
        trained_words=["masterpiece", "best quality"],
    )  # fmt: skip
    wai_v15 = FakeVersion(
        2300001,
        "v15.0",
        "Illustrious",
        "2025-09-01T10:00:00",
        files=[
            FakeFile(2300101, "waiIllustriousSDXL_v150.safetensors",
                     make_safetensors(150_000, 2300101), primary=True),
        ],
    )  # fmt: skip

    def single(
        model_id: int,
        name: str,
        model_type: str,
        version: tuple[int, str, str],
        file: FakeFile,
        **extra: Any,
    ) -> FakeModel:
        version_id, version_name, base_model = version
        published = f"2024-0{1 + model_id % 9}-1{model_id % 10}T08:00:00.000Z"
        return FakeModel(
            model_id,
            name,
            model_type,
            extra.pop("creator", "fakecreator"),
            [FakeVersion(version_id, version_name, base_model, published, files=[file], **extra)],
        )

    hostile = FakeVersion(
        99104,
        "v1",
        "SDXL 1.0",
        "2024-05-05T05:05:05.000Z",
        files=[
            FakeFile(3000007, "../../escape.pt", make_pickle(10_000, 3000007),
                     format="PickleTensor", primary=True),
            FakeFile(3000008, "CON.safetensors", make_safetensors(10_000, 3000008)),
            FakeFile(3000009, "/etc/passwd", make_pickle(10_000, 3000009),
                     format="Other", fp=None, size=None),
            FakeFile(3000010, "evil\x07\nname.safetensors", make_safetensors(10_000, 3000010),
                     fp="fp32", size="full"),
        ],
    )  # fmt: skip
    return Catalog(
        [
            FakeModel(
                827184,
                "WAI-illustrious-SDXL",
                "Checkpoint",
                "WAI0731",
                [wai_v16, wai_v15],
                tags=["base model", "anime"],
                description="<p>Illustrious-based anime checkpoint.</p>",
            ),
            single(328553, "Detail Tweaker XL", "LORA", (368189, "v1.0", "SDXL 1.0"),
                   FakeFile(3000001, "add-detail-xl.safetensors",
                            make_safetensors(200_000, 3000001), primary=True),
                   creator="LyCORIS", trained_words=["add detail"]),
            single(7808, "EasyNegative", "TextualInversion", (9208, "EasyNegative", "SD 1.5"),
                   FakeFile(3000002, "easynegative.safetensors",
                            make_safetensors(30_000, 3000002), type="Negative", primary=True),
                   creator="rqdwdw", trained_words=["easynegative"]),
            single(23906, "kl-f8-anime2 VAE", "VAE", (28569, "v1", "SD 1.5"),
                   FakeFile(3000003, "kl-f8-anime2.safetensors",
                            make_safetensors(120_000, 3000003), type="VAE", primary=True)),
            single(147759, "4x-UltraSharp", "Upscaler", (164821, "v1.0", "Other"),
                   FakeFile(3000004, "4x-UltraSharp.pt", make_pickle(90_000, 3000004),
                            format="PickleTensor", fp=None, size=None, primary=True),
                   creator="Kim2091"),
            FakeModel(99001, "Archived Thing", "Checkpoint", "fakecreator",
                      [FakeVersion(99101, "v1", "SD 1.5", "2023-03-03T03:03:03.000Z")],
                      archived=True),
            single(99002, "Early Bird", "LORA", (99102, "v2", "SDXL 1.0"),
                   FakeFile(3000005, "early-bird.safetensors",
                            make_safetensors(20_000, 3000005), primary=True),
                   early_access_deadline="2099-01-01T00:00:00.000Z"),
            single(99003, "No Downloads", "LORA", (99103, "v1", "SDXL 1.0"),
                   FakeFile(3000006, "nodl.safetensors", make_safetensors(20_000, 3000006),
                            primary=True),
                   downloads_disabled=True),
            FakeModel(99004, "Hostile Names", "LORA", "fakecreator", [hostile]),
            single(99005, "Training Only", "LORA", (99105, "v1", "SD 1.5"),
                   FakeFile(3000011, "dataset.zip", make_pickle(20_000, 3000011),
                            type="Training Data", format="Other", fp=None, size=None)),
        ]
    )  # fmt: skip


def synthetic_models(count: int, *, first_id: int = 500_000) -> list[FakeModel]:
    """``count`` tiny LoRA models for pagination tests (ids ``first_id`` upward).

    Model ``m`` has version ``m + 1_000_000`` and file ``m + 4_000_000``, a 256-byte
    safetensors file named ``synthetic-{m}.safetensors``.

    Args:
        count: how many models.
        first_id: the lowest model id.

    Returns:
        The models, lowest id first.
    """
    models = []
    for model_id in range(first_id, first_id + count):
        file = FakeFile(
            model_id + 4_000_000,
            f"synthetic-{model_id}.safetensors",
            make_safetensors(256, model_id),
            primary=True,
        )
        version = FakeVersion(
            model_id + 1_000_000, "v1", "SDXL 1.0", "2024-06-01T00:00:00.000Z", files=[file]
        )
        models.append(
            FakeModel(model_id, f"Synthetic LoRA {model_id}", "LORA", "synth", [version],
                      tags=["synthetic"])
        )  # fmt: skip
    return models


def bench_model(size: int, *, directory: Path | None = None) -> FakeModel:
    """Model 99999 "Big Bench Model" with one safetensors file (id 3999999) of ``size`` bytes.

    Files above 64 MiB are written to ``directory`` (with their digests beside them,
    so a second run with the same directory reuses the file) and served from disk.

    Args:
        size: the file's length in bytes.
        directory: where big files go; required above 64 MiB.

    Returns:
        The model, ready for :meth:`Catalog.add`.

    Raises:
        ValueError: a big file without a ``directory``.
    """
    seed = 3999999
    if size <= IN_MEMORY_LIMIT:
        file = FakeFile(seed, "big.safetensors", make_safetensors(size, seed), primary=True)
    elif directory is None:
        raise ValueError("files above 64 MiB need a directory to live in")
    else:
        path = directory / f"big-{size}.safetensors"
        file = FakeFile(
            seed, "big.safetensors", path=path, known_digests=_write_big(path, size, seed),
            primary=True,
        )  # fmt: skip
    version = FakeVersion(99999, "v1", "SDXL 1.0", "2024-07-07T07:07:07.000Z", files=[file])
    return FakeModel(99999, "Big Bench Model", "LORA", "bench", [version])


def _write_big(path: Path, size: int, seed: int) -> dict[str, str]:
    """Write (or reuse) a big safetensors file, hashing it on the way; return its digests."""
    sidecar = path.with_name(path.name + ".digests.json")
    if path.exists() and sidecar.exists() and path.stat().st_size == size:
        cached: dict[str, str] = json.loads(sidecar.read_text())
        return cached
    prefix, remaining = _safetensors_prefix(size, seed)
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with Digester() as digester, path.open("wb") as stream:
        stream.write(prefix)
        digester.update(prefix)
        while remaining:
            block = rng.randbytes(min(CHUNK_SIZE, remaining))
            stream.write(block)
            digester.update(block)
            remaining -= len(block)
        digests = digester.hexdigests()
    sidecar.write_text(json.dumps(digests))
    return digests


# --------------------------------------------------------------------------- records


def _file_doc(file: FakeFile, version: FakeVersion, api_url: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": file.id,
        "sizeKB": file.length / 1024,
        "name": file.name,
        "type": file.type,
        "pickleScanResult": "Success",
        "pickleScanMessage": "No Pickle imports",
        "virusScanResult": "Success",
        "virusScanMessage": None,
        "scannedAt": version.published_at,
        "metadata": file.metadata(),
        "hashes": file.hashes,
        "downloadUrl": _file_download_url(file, version, api_url),
    }
    if file.primary:
        doc["primary"] = True
    return doc


def _file_download_url(file: FakeFile, version: FakeVersion, api_url: str) -> str:
    """The shortest download URL the download endpoint resolves to exactly this file."""
    base = f"{api_url}/api/download/models/{version.id}"
    if file.primary and _pick_file(version, {}) is file:
        return base
    filters = {"type": file.type, **file.metadata()}
    if _pick_file(version, filters) is file:
        return f"{base}?{urlencode(filters, quote_via=quote)}"
    return f"{base}?fileId={file.id}"


def _air(model: FakeModel, version: FakeVersion) -> str:
    ecosystem = AIR_ECOSYSTEMS.get(version.base_model.lower(), "other")
    kind = AIR_TYPES.get(model.type.lower(), model.type.lower())
    return f"urn:air:{ecosystem}:{kind}:civitai:{model.id}@{version.id}"


def _version_doc(
    model: FakeModel,
    version: FakeVersion,
    api_url: str,
    *,
    standalone: bool,
    primary_only: bool = False,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": version.id,
        "modelId": model.id,
        "name": version.name,
        "createdAt": version.published_at,
        "updatedAt": version.published_at,
        "status": "Published",
        "publishedAt": version.published_at,
        "trainedWords": list(version.trained_words),
        "baseModel": version.base_model,
        "baseModelType": "Standard",
        "availability": "EarlyAccess" if version.early_access_deadline else "Public",
        "description": None,
        "stats": {"downloadCount": version.id % 9973, "thumbsUpCount": version.id % 97,
                  "thumbsDownCount": 0},
    }  # fmt: skip
    if version.early_access_deadline:
        doc["earlyAccessEndsAt"] = version.early_access_deadline
    if standalone:
        doc["air"] = _air(model, version)
        doc["model"] = {"name": model.name, "type": model.type, "nsfw": model.nsfw, "poi": False}
        if model.archived:
            doc["model"]["mode"] = "Archived"
    if not model.archived:
        files = [f for f in version.files if f.primary or not primary_only]
        doc["files"] = [_file_doc(file, version, api_url) for file in files]
    doc["images"] = []
    if not model.archived:
        doc["downloadUrl"] = f"{api_url}/api/download/models/{version.id}"
    return doc


def _model_doc(model: FakeModel, api_url: str, *, primary_only: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": model.id,
        "name": model.name,
        "description": model.description,
        "type": model.type,
        "poi": False,
        "nsfw": model.nsfw,
        "availability": "Public",
        "allowNoCredit": True,
        "allowCommercialUse": ["Image"],
        "allowDerivatives": True,
        "allowDifferentLicense": True,
        "stats": {"downloadCount": model.id % 10007, "thumbsUpCount": model.id % 101,
                  "thumbsDownCount": 0, "commentCount": 0, "tippedAmountCount": 0},
        "creator": {"username": model.creator,
                    "image": f"https://image.civitai.invalid/{model.creator}.jpeg"},
        "tags": list(model.tags),
        "modelVersions": [
            _version_doc(model, v, api_url, standalone=False, primary_only=primary_only)
            for v in model.versions
        ],
    }  # fmt: skip
    if model.archived:
        doc["mode"] = "Archived"
    return doc


def _pick_file(version: FakeVersion, filters: Mapping[str, str]) -> FakeFile | None:
    """The file the download endpoint serves for these ``type/format/size/fp`` filters.

    Like Civitai: among model-weight files prefer SafeTensor, then pruned, then fp16;
    without model-weight files take the primary file, else the first one.
    """
    wanted = {key: value.lower() for key, value in filters.items()}

    def matches(file: FakeFile) -> bool:
        have = {"type": file.type, "format": file.format, "size": file.size, "fp": file.fp}
        return all((have[key] or "").lower() == value for key, value in wanted.items())

    candidates = [file for file in version.files if matches(file)]
    weights = [file for file in candidates if file.type.lower() in MODEL_FILE_TYPES]
    if weights:
        return max(
            weights,
            key=lambda f: (f.format == "SafeTensor", f.size == "pruned", f.fp == "fp16", f.primary),
        )
    primary = [file for file in candidates if file.primary]
    return next(iter(primary or candidates), None)


# --------------------------------------------------------------------------- knobs and log


@dataclass(frozen=True)
class FileFaults:
    """Faults injected into one file's CDN responses (see :meth:`FakeCivitai.set_faults`)."""

    file_id: int
    drop_after: int | None = None
    drop_times: int = 1
    ignore_range: bool = False
    corrupt: bool = False
    expire_after: int | None = None
    throttle: float | None = None
    html: bool = False
    stall_after: int | None = None
    stall_seconds: float = 0.0
    stall_times: int = 1


@dataclass
class _FaultState:
    settings: FileFaults
    drops_left: int
    stalls_left: int
    expire_counted: int = 0
    expired: bool = False


@dataclass(frozen=True)
class _BodyPlan:
    cut_at: int | None
    stall_at: int | None
    stall_seconds: float
    throttle: float | None
    corrupt: bool


@dataclass
class _ApiFailure:
    status: int
    times_left: int
    retry_after: str | None
    body: str | None


@dataclass(frozen=True)
class _Link:
    file_id: int
    path: str
    expires: int
    serial: int


@dataclass(frozen=True)
class RequestLog:
    """One request as the fake saw it, appended when its response is (about to be) complete."""

    origin: Literal["api", "cdn"]
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    status: int
    body_bytes: int
    file_id: int | None = None


# --------------------------------------------------------------------------- the server


class FakeCivitai:
    """Civitai's API and CDN as two loopback HTTP servers, with fault injection.

    Args:
        token: the only API token the fake accepts; any other is treated as anonymous.
        catalog: the models to serve (default: :func:`default_catalog`).
        link_ttl: lifetime of presigned CDN links in seconds.
        host: the interface to listen on.
        port: the API origin's port (0 picks a free one; the CDN always picks one).
    """

    def __init__(
        self,
        *,
        token: str = "test-token",
        catalog: Catalog | None = None,
        link_ttl: float = 3600.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.catalog = catalog if catalog is not None else default_catalog()
        self.link_ttl = link_ttl
        self.host = host
        self.port = port
        self.daily_limit_reached = False
        self.malformed_json = False
        self.errors: list[BaseException] = []
        """Unexpected exceptions raised while handling requests (a bug in the fake)."""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._secret = secrets.token_bytes(32)
        self._servers: dict[str, _OriginServer] = {}
        self._serve_threads: list[threading.Thread] = []
        self._faults: dict[int, _FaultState] = {}
        self._api_failure: _ApiFailure | None = None
        self._links: dict[str, _Link] = {}
        self._next_serial = 0
        self._links_valid_from = 0
        self._file_links_valid_from: dict[int, int] = {}
        self._log: list[RequestLog] = []
        self._served: dict[int, int] = {}
        self._handling = 0
        self._idle = threading.Condition(self._lock)

    # ---- lifecycle

    def start(self) -> FakeCivitai:
        """Bind both origins and serve them from background threads.

        Returns:
            ``self``, for chaining.

        Raises:
            RuntimeError: already started.
        """
        if self._servers:
            raise RuntimeError("FakeCivitai is already running")
        self._stopping.clear()
        self._servers = {
            "api": _OriginServer(self, "api", (self.host, self.port)),
            "cdn": _OriginServer(self, "cdn", (self.host, 0)),
        }
        for origin, server in self._servers.items():
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.02},
                name=f"fake-civitai-{origin}",
                daemon=True,
            )
            thread.start()
            self._serve_threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving, close every open connection and join every thread (idempotent)."""
        if not self._servers:
            return
        self._stopping.set()
        # shutdown() blocks until the serving loop notices; ask both loops at once.
        waiters = [threading.Thread(target=s.shutdown) for s in self._servers.values()]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join()
        for server in self._servers.values():
            server.server_close()
            server.close_connections(timeout=2.0)
        for thread in self._serve_threads:
            thread.join(timeout=2.0)
        self._servers = {}
        self._serve_threads = []

    def __enter__(self) -> FakeCivitai:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _origin_url(self, origin: str) -> str:
        server = self._servers.get(origin)
        if server is None:
            raise RuntimeError("FakeCivitai is not running; call start() first")
        return f"http://{self.host}:{server.server_address[1]}"

    @property
    def url(self) -> str:
        """The API origin, e.g. ``http://127.0.0.1:41234`` (no trailing slash)."""
        return self._origin_url("api")

    @property
    def cdn_url(self) -> str:
        """The CDN origin that download redirects point to."""
        return self._origin_url("cdn")

    # ---- catalog

    def model(self, model_id: int) -> FakeModel:
        """The catalog model with this id.

        Raises:
            KeyError: unknown id.
        """
        found = self.catalog.find_model(model_id)
        if found is None:
            raise KeyError(model_id)
        return found

    def version(self, version_id: int) -> FakeVersion:
        """The catalog version with this id.

        Raises:
            KeyError: unknown id.
        """
        found = self.catalog.find_version(version_id)
        if found is None:
            raise KeyError(version_id)
        return found[1]

    def file(self, file_id: int) -> FakeFile:
        """The catalog file with this id.

        Raises:
            KeyError: unknown id.
        """
        found = self.catalog.find_file(file_id)
        if found is None:
            raise KeyError(file_id)
        return found[2]

    def add_model(self, model: FakeModel) -> None:
        """Serve one more model from now on (see :meth:`Catalog.add`)."""
        self.catalog.add(model)

    def add_synthetic_models(self, count: int, *, first_id: int = 500_000) -> list[FakeModel]:
        """Serve ``count`` tiny LoRA models from now on (see :func:`synthetic_models`).

        Returns:
            The models added, lowest id first.
        """
        models = synthetic_models(count, first_id=first_id)
        for model in models:
            self.catalog.add(model)
        return models

    def download_url(self, version_id: int, *, file_id: int | None = None) -> str:
        """The API download URL of a version (optionally of one exact file)."""
        url = f"{self.url}/api/download/models/{version_id}"
        return url if file_id is None else f"{url}?fileId={file_id}"

    def cdn_link(self, file_id: int, *, ttl: float | None = None) -> str:
        """Issue a presigned CDN link, as a successful download request does.

        Args:
            file_id: a catalog file.
            ttl: lifetime in seconds (default ``link_ttl``); negative gives a dead link.

        Returns:
            ``{cdn_url}/files/{id}/{quoted name}?expires=…&sig=…``.

        Raises:
            KeyError: unknown file.
        """
        path = f"/files/{file_id}/{quote(self.file(file_id).name, safe='')}"
        expires = math.ceil(time.time() + (self.link_ttl if ttl is None else ttl))
        with self._lock:
            serial = self._next_serial
            self._next_serial += 1
            message = f"{path}?expires={expires}#{serial}".encode()
            signature = hmac.new(self._secret, message, hashlib.sha256).hexdigest()
            self._links[signature] = _Link(file_id, path, expires, serial)
        return f"{self.cdn_url}{path}?expires={expires}&sig={signature}"

    def _link_status(self, path: str, query: Mapping[str, list[str]]) -> str:
        """``"ok"``, ``"denied"`` (no such signature) or ``"expired"`` for a CDN request."""
        signature = query.get("sig", [""])[0]
        expires = query.get("expires", [""])[0]
        with self._lock:
            link = self._links.get(signature)
            if link is None or link.path != path or str(link.expires) != expires:
                return "denied"
            valid_from = max(
                self._links_valid_from, self._file_links_valid_from.get(link.file_id, 0)
            )
        if link.serial < valid_from or time.time() > link.expires:
            return "expired"
        return "ok"

    # ---- fault knobs

    def set_faults(
        self,
        file_id: int,
        *,
        drop_after: int | None = None,
        drop_times: int = 1,
        ignore_range: bool = False,
        corrupt: bool = False,
        expire_after: int | None = None,
        throttle: float | None = None,
        html: bool = False,
        stall_after: int | None = None,
        stall_seconds: float = 0.0,
        stall_times: int = 1,
    ) -> FileFaults:
        """Inject faults into the CDN's responses for one file, replacing earlier ones.

        Args:
            file_id: a catalog file.
            drop_after: send this many body bytes per response, then close the socket
                (for the first ``drop_times`` responses longer than that).
            drop_times: how many responses to cut.
            ignore_range: answer 200 with the whole file even when a Range is asked.
            corrupt: flip one byte in the middle of the served bytes (the API record
                keeps the true hashes).
            expire_after: once this many bytes of the file have been served in total,
                expire every link issued so far for it and cut the current response;
                links issued afterwards work.
            throttle: bytes per second per connection.
            html: answer 200 ``text/html`` with a Cloudflare-style challenge instead.
            stall_after: pause ``stall_seconds`` after this many body bytes of a response
                (for the first ``stall_times`` responses longer than that).
            stall_seconds: the pause length.
            stall_times: how many responses stall.

        Returns:
            The settings now in force.

        Raises:
            KeyError: unknown file.
        """
        self.file(file_id)
        faults = FileFaults(
            file_id, drop_after=drop_after, drop_times=drop_times, ignore_range=ignore_range,
            corrupt=corrupt, expire_after=expire_after, throttle=throttle, html=html,
            stall_after=stall_after, stall_seconds=stall_seconds, stall_times=stall_times,
        )  # fmt: skip
        with self._lock:
            self._faults[file_id] = _FaultState(faults, drop_times, stall_times)
        return faults

    def faults(self, file_id: int) -> FileFaults | None:
        """The faults in force for a file, or ``None``."""
        with self._lock:
            state = self._faults.get(file_id)
            return state.settings if state else None

    def fail_api(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
        body: str | None = None,
    ) -> None:
        """Make the next ``times`` requests to ``/api/v1/*`` and ``/api/download/*`` fail.

        Args:
            status: the HTTP status to answer.
            times: how many requests fail.
            retry_after: a ``Retry-After`` value to send (seconds or an HTTP date).
            body: the exact body (default: ``{"error": "<reason phrase>"}``).
        """
        with self._lock:
            self._api_failure = _ApiFailure(status, times, retry_after, body)

    def expire_links(self) -> None:
        """Expire every CDN link issued so far; new ones work."""
        with self._lock:
            self._links_valid_from = self._next_serial

    def reset_faults(self) -> None:
        """Undo every fault knob: file faults, API failures, daily limit, malformed JSON."""
        with self._lock:
            self._faults.clear()
            self._api_failure = None
        self.daily_limit_reached = False
        self.malformed_json = False

    def _take_api_failure(self) -> _ApiFailure | None:
        with self._lock:
            failure = self._api_failure
            if failure is None:
                return None
            failure.times_left -= 1
            if failure.times_left <= 0:
                self._api_failure = None
            return replace(failure)

    def _plan_body(self, file_id: int, length: int) -> _BodyPlan:
        """Decide, once per response, where this response is cut or stalls."""
        with self._lock:
            state = self._faults.get(file_id)
            if state is None:
                return _BodyPlan(None, None, 0.0, None, corrupt=False)
            faults = state.settings
            cut_at = stall_at = None
            if (
                faults.drop_after is not None
                and state.drops_left > 0
                and faults.drop_after < length
            ):
                state.drops_left -= 1
                cut_at = faults.drop_after
            if (
                faults.stall_after is not None
                and state.stalls_left > 0
                and faults.stall_after < length
            ):
                state.stalls_left -= 1
                stall_at = faults.stall_after
            return _BodyPlan(
                cut_at, stall_at, faults.stall_seconds, faults.throttle, faults.corrupt
            )

    def _take_budget(self, file_id: int, wanted: int) -> tuple[int, bool]:
        """How many of ``wanted`` bytes may go out before ``expire_after`` fires (and if it did)."""
        with self._lock:
            state = self._faults.get(file_id)
            limit = state.settings.expire_after if state else None
            if state is None or limit is None or state.expired:
                return wanted, False
            room = max(limit - state.expire_counted, 0)
            if wanted < room:
                state.expire_counted += wanted
                return wanted, False
            state.expire_counted += room
            state.expired = True
            self._file_links_valid_from[file_id] = self._next_serial
            return room, True

    # ---- observability

    @property
    def requests(self) -> list[RequestLog]:
        """A snapshot of every request so far, in completion order."""
        with self._lock:
            return list(self._log)

    def cdn_requests(self, file_id: int | None = None) -> list[RequestLog]:
        """The CDN requests so far, optionally only those for one file."""
        return [
            entry
            for entry in self.requests
            if entry.origin == "cdn" and (file_id is None or entry.file_id == file_id)
        ]

    def bytes_served(self, file_id: int) -> int:
        """Bytes of this file's content the CDN has sent (all responses together)."""
        with self._lock:
            return self._served.get(file_id, 0)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is being handled; ``False`` if still busy at ``timeout``.

        A client that gives up mid-body is noticed by the fake only at its next write;
        call this before asserting on :meth:`bytes_served` after an interrupted transfer.
        """
        with self._idle:
            return self._idle.wait_for(lambda: self._handling == 0, timeout)

    def clear_log(self) -> None:
        """Forget logged requests and served-byte counts."""
        with self._lock:
            self._log.clear()
            self._served.clear()

    def _record(self, entry: RequestLog, previous: RequestLog | None) -> None:
        with self._lock:
            if previous is not None:
                for index, logged in enumerate(self._log):
                    if logged is previous:
                        self._log[index] = entry
                        return
            self._log.append(entry)

    def _count_served(self, file_id: int, count: int) -> None:
        with self._lock:
            self._served[file_id] = self._served.get(file_id, 0) + count


class _OriginServer(ThreadingHTTPServer):
    """One origin; tracks its connections so ``stop`` can close them and join their threads."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self, fake: FakeCivitai, origin: Literal["api", "cdn"], address: tuple[str, int]
    ) -> None:
        self.fake = fake
        self.origin: Literal["api", "cdn"] = origin
        self._connections_lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can take seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"fake-civitai-{self.origin}-connection",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[request] = thread
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        # Clients hanging up mid-response is normal; anything else is a bug in the fake.
        if error is not None and not isinstance(error, OSError):
            self.fake.errors.append(error)

    def close_connections(self, *, timeout: float) -> None:
        with self._connections_lock:
            connections = list(self._connections.items())
        for connection, _ in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for _, thread in connections:
            thread.join(max(deadline - time.monotonic(), 0))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    # Headers and body leave in separate writes; with Nagle's algorithm on, the client's
    # delayed ACK would hold every small response back by ~40 ms.
    disable_nagle_algorithm = True
    server: _OriginServer

    _logged: RequestLog | None
    _file_id: int | None
    _path: str
    _query: dict[str, list[str]]

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's stderr access log: the library never prints."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    @property
    def fake(self) -> FakeCivitai:
        return self.server.fake

    def _dispatch(self) -> None:
        with self.fake._idle:
            self.fake._handling += 1
        try:
            self._handle()
        finally:
            with self.fake._idle:
                self.fake._handling -= 1
                self.fake._idle.notify_all()

    def _handle(self) -> None:
        self._logged = None
        self._file_id = None
        parts = urlsplit(self.path)
        self._path = parts.path
        self._query = parse_qs(parts.query, keep_blank_values=True)
        body = self._read_body()
        if body is None:
            return
        if self.server.origin == "api":
            self._api(body)
        else:
            self._cdn()

    def _read_body(self) -> bytes | None:
        length_header = self.headers.get("Content-Length", "0")
        length = int(length_header) if length_header.isdigit() else -1
        if not 0 <= length <= MAX_REQUEST_BODY:
            self.close_connection = True
            self._json(413, {"error": "Request body too large or malformed Content-Length"})
            return None
        return self.rfile.read(length) if length else b""

    # ---- responses

    def _log(self, status: int, body_bytes: int) -> None:
        entry = RequestLog(
            origin=self.server.origin,
            method=self.command,
            path=self._path,
            query=self._query,
            headers={key.lower(): value for key, value in self.headers.items()},
            status=status,
            body_bytes=body_bytes,
            file_id=self._file_id,
        )
        self.fake._record(entry, self._logged)
        self._logged = entry

    def _respond(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        sends_body = self.command != "HEAD"
        # Logged before the last byte leaves, so a client that has its answer sees the entry.
        self._log(status, len(body) if sends_body else 0)
        self.end_headers()
        if sends_body and body:
            self.wfile.write(body)

    def _json(self, status: int, doc: object, *, headers: Iterable[tuple[str, str]] = ()) -> None:
        body = json.dumps(doc).encode()
        self._respond(status, body, content_type="application/json; charset=utf-8", headers=headers)

    def _xml_error(
        self, status: int, code: str, message: str, *, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        ).encode()
        self._respond(status, body, content_type="application/xml", headers=headers)

    # ---- API origin

    def _api(self, body: bytes) -> None:
        path = self._path.rstrip("/") or "/"
        if path == "/login":
            self._respond(200, LOGIN_PAGE, content_type="text/html; charset=utf-8")
            return
        if path.startswith(("/api/v1/", "/api/download/")):
            failure = self.fake._take_api_failure()
            if failure is not None:
                self._fail(failure)
                return
        if path.startswith("/api/v1/") and self.fake.malformed_json:
            self._respond(200, MALFORMED_JSON, content_type="application/json; charset=utf-8")
            return
        route = _route(path)
        if route is None:
            self._json(404, {"error": "Not found"})
            return
        name, argument = route
        allowed = ("POST",) if name == "hash_ids" else ("GET", "HEAD")
        if self.command not in allowed:
            self._json(
                405, {"error": "Method not allowed"}, headers=[("Allow", ", ".join(allowed))]
            )
            return
        if name == "models":
            self._list_models()
        elif name == "model":
            self._get_model(argument)
        elif name == "version":
            self._get_version(argument)
        elif name == "by_hash":
            self._get_by_hash(argument)
        elif name == "hash_ids":
            self._post_hash_ids(body)
        else:
            self._download(argument)

    def _fail(self, failure: _ApiFailure) -> None:
        headers = [("Retry-After", failure.retry_after)] if failure.retry_after else []
        if failure.body is not None:
            content_type = "application/json; charset=utf-8"
            if not failure.body.lstrip().startswith(("{", "[")):
                content_type = "text/plain; charset=utf-8"
            self._respond(failure.status, failure.body.encode(), content_type=content_type,
                          headers=headers)  # fmt: skip
            return
        try:
            reason = HTTPStatus(failure.status).phrase
        except ValueError:
            reason = "Error"
        self._json(failure.status, {"error": reason}, headers=headers)

    def _list_models(self) -> None:
        api_url = self.fake.url
        try:
            listing = _ModelQuery.parse(self._query)
        except _BadRequest as exc:
            self._json(400, {"error": str(exc)})
            return
        if listing.page is not None and listing.page * listing.limit > MAX_PAGE_ITEMS:
            self._json(
                429, {"error": "You've requested too many pages, please use cursors instead"}
            )
            return
        models = [m for m in self.fake.catalog.models if listing.accepts(m)]
        offset = listing.offset
        items = models[offset : offset + listing.limit]
        more = offset + listing.limit < len(models)
        metadata: dict[str, Any] = {}
        base = f"{api_url}/api/v1/models?"
        if listing.page_mode:
            page = listing.page or 1
            metadata = {
                "totalItems": len(models),
                "currentPage": page,
                "pageSize": listing.limit,
                "totalPages": max(math.ceil(len(models) / listing.limit), 1),
            }
            if more:
                metadata["nextPage"] = base + listing.encode(page=page + 1)
        if more:
            cursor = f"o:{offset + listing.limit}"
            metadata["nextCursor"] = cursor
            metadata.setdefault("nextPage", base + listing.encode(cursor=cursor))
        doc = [_model_doc(m, api_url, primary_only=listing.primary_only) for m in items]
        self._json(200, {"items": doc, "metadata": metadata})

    def _get_model(self, argument: str) -> None:
        if not argument.isdigit():
            self._json(400, {"error": f"Invalid model id: {argument}"})
            return
        model = self.fake.catalog.find_model(int(argument))
        if model is None:
            self._json(404, {"error": f"No model with id {argument}"})
            return
        self._json(200, _model_doc(model, self.fake.url))

    def _get_version(self, argument: str) -> None:
        if not argument.isdigit():
            self._json(400, {"error": f"Invalid version id: {argument}"})
            return
        found = self.fake.catalog.find_version(int(argument))
        if found is None:
            self._json(404, {"error": "Version not found"})
            return
        self._json(200, _version_doc(*found, self.fake.url, standalone=True))

    def _get_by_hash(self, digest: str) -> None:
        found = self.fake.catalog.find_hash(digest)
        if found is None:
            self._json(404, {"error": "Model not found"})
            return
        self._json(200, _version_doc(*found, self.fake.url, standalone=True))

    def _post_hash_ids(self, body: bytes) -> None:
        try:
            digests = json.loads(body)
        except ValueError:
            digests = None
        if not isinstance(digests, list) or not all(isinstance(d, str) for d in digests):
            self._json(400, {"error": "Expected a JSON array of SHA256 strings"})
            return
        if len(digests) > MAX_HASHES_PER_LOOKUP:
            self._json(400, {"error": f"At most {MAX_HASHES_PER_LOOKUP} hashes per request"})
            return
        answers = []
        for digest in dict.fromkeys(d.upper() for d in digests):
            found = self.fake.catalog.find_hash(digest)
            if found is None:
                continue
            model, version = found
            if any(file.sha256 == digest for file in version.files):
                answers.append({"modelVersionId": version.id, "modelId": model.id, "hash": digest})
        self._json(200, answers)

    def _download(self, argument: str) -> None:
        fake = self.fake
        if not argument.isdigit():
            self._json(400, {"error": f"Invalid version id: {argument}"})
            return
        found = fake.catalog.find_version(int(argument))
        if found is None:
            self._json(404, {"error": "Model not found"})
            return
        model, version = found
        if model.archived:
            self._json(
                410, {"error": "This model has been archived and is not available for download"}
            )
            return
        file_id_arg = self._query.get("fileId", [None])[0]
        if file_id_arg is not None and not file_id_arg.isdigit():
            self._json(400, {"error": f"Invalid fileId: {file_id_arg}"})
            return
        if file_id_arg is not None:
            file = next((f for f in version.files if f.id == int(file_id_arg)), None)
        else:
            filters = {
                k: v[0] for k, v in self._query.items() if k in ("type", "format", "size", "fp")
            }
            file = _pick_file(version, filters)
        if file is None:
            self._json(404, {"error": "File not found"})
            return
        self._file_id = file.id
        if fake.daily_limit_reached:
            self._json(429, {"error": "Daily download limit reached"})
            return
        if not self._authorized():
            if "Mozilla" in self.headers.get("User-Agent", ""):
                query = {k: v for k, v in self._query.items() if k != "token"}
                target = self._path + ("?" + urlencode(query, doseq=True) if query else "")
                login = f"{fake.url}/login?returnUrl={quote(target, safe='')}"
                self._respond(307, headers=[("Location", login)])
            else:
                message = "The creator of this asset requires you to be logged in to download it"
                self._json(401, {"error": "Unauthorized", "message": message})
            return
        if version.in_early_access:
            deadline = version.early_access_deadline
            self._json(403, {
                "error": "Early Access",
                "deadline": deadline,
                "message": f"This model is in Early Access until {deadline}. "
                           "Purchase early access or wait until then to download it.",
            })  # fmt: skip
            return
        if version.downloads_disabled:
            message = "The creator of this asset has disabled downloads on this file."
            self._json(401, {"error": "Unauthorized", "message": message})
            return
        self._respond(307, headers=[("Location", fake.cdn_link(file.id))])

    def _authorized(self) -> bool:
        scheme, _, credential = self.headers.get("Authorization", "").partition(" ")
        offered = [credential.strip()] if scheme.lower() == "bearer" else []
        offered += self._query.get("token", [])
        return any(hmac.compare_digest(t.encode(), self.fake.token.encode()) for t in offered)

    # ---- CDN origin

    def _cdn(self) -> None:
        if self.command not in ("GET", "HEAD"):
            self._xml_error(405, "MethodNotAllowed", "The specified method is not allowed")
            return
        match = re.fullmatch(r"/files/(\d+)/[^/]+", self._path)
        found = self.fake.catalog.find_file(int(match.group(1))) if match else None
        if found is None:
            self._xml_error(404, "NoSuchKey", "The specified key does not exist.")
            return
        file = found[2]
        self._file_id = file.id
        faults = self.fake.faults(file.id)
        if faults is not None and faults.html:
            self._respond(200, CHALLENGE_PAGE, content_type="text/html; charset=utf-8")
            return
        status = self.fake._link_status(self._path, self._query)
        if status == "denied":
            self._xml_error(403, "AccessDenied", "Signature does not match")
            return
        if status == "expired":
            self._xml_error(403, "AccessDenied", "Request has expired")
            return
        self._serve_file(file, faults)

    def _serve_file(self, file: FakeFile, faults: FileFaults | None) -> None:
        total = file.length
        etag = f'"{file.sha256[:16].lower()}"'
        ignore_range = faults is not None and faults.ignore_range
        wanted = None if ignore_range else self._wanted_range(total, etag)
        if isinstance(wanted, str):
            self._xml_error(
                416, "InvalidRange", "The requested range is not satisfiable",
                headers=[("Content-Range", f"bytes */{total}")],
            )  # fmt: skip
            return
        start, stop = wanted if wanted is not None else (0, total)
        status = 206 if wanted is not None else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(stop - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{total}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", LAST_MODIFIED)
        self.send_header("Content-Disposition", _content_disposition(file.name))
        if self.command == "HEAD" or stop == start:
            self._log(status, 0)
            self.end_headers()
            return
        self.end_headers()
        with file.open() as stream:
            if faults is None and file.path is not None:
                self._sendfile(stream, file.id, start, stop - start, status)
            else:
                stream.seek(start)
                plan = self.fake._plan_body(file.id, stop - start)
                self._stream(stream, file, start, stop - start, status, plan)

    def _wanted_range(
        self, total: int, etag: str
    ) -> tuple[int, int] | Literal["unsatisfiable"] | None:
        """``(start, stop)``, ``"unsatisfiable"``, or ``None`` for the whole file."""
        header = self.headers.get("Range")
        if header is None:
            return None
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range.strip() not in (etag, LAST_MODIFIED):
            return None
        unit, _, spec = header.partition("=")
        match = re.fullmatch(r"\s*(\d*)\s*-\s*(\d*)\s*", spec)
        if unit.strip().lower() != "bytes" or match is None or match.group(1, 2) == ("", ""):
            return None  # multi-range or malformed: the whole file, as RFC 9110 allows
        first, last = match.group(1, 2)
        if first == "":
            suffix = int(last)
            if suffix == 0 or total == 0:
                return "unsatisfiable"
            return max(total - suffix, 0), total
        start = int(first)
        if last and int(last) < start:
            return None
        if start >= total:
            return "unsatisfiable"
        return start, min(int(last) + 1, total) if last else total

    def _sendfile(
        self, stream: BinaryIO, file_id: int, start: int, length: int, status: int
    ) -> None:
        """Zero-copy fast path for unfaulted files on disk (benchmarks)."""
        self.fake._count_served(file_id, length)
        self._log(status, length)
        try:
            self.connection.sendfile(stream, start, length)
        except OSError:
            sent = max(stream.tell() - start, 0)
            self.fake._count_served(file_id, sent - length)
            self._log(status, sent)
            self.close_connection = True

    def _stream(
        self,
        stream: BinaryIO,
        file: FakeFile,
        start: int,
        length: int,
        status: int,
        plan: _BodyPlan,
    ) -> None:
        fake = self.fake
        limit = length if plan.cut_at is None else plan.cut_at
        flip_at = file.length // 2 - start if plan.corrupt else None
        piece_size = CHUNK_SIZE
        if plan.throttle:
            piece_size = max(1024, min(CHUNK_SIZE, int(plan.throttle / 20)))
        sent = 0
        paced_from = time.monotonic()
        stall_at = plan.stall_at
        try:
            while sent < limit:
                if sent == stall_at:
                    stall_at = None
                    if fake._stopping.wait(plan.stall_seconds):
                        break
                    paced_from = time.monotonic() - (sent / plan.throttle if plan.throttle else 0)
                wanted = min(piece_size, limit - sent)
                if stall_at is not None:
                    wanted = min(wanted, stall_at - sent)
                granted, expired = fake._take_budget(file.id, wanted)
                if expired:
                    limit = sent + granted
                piece = stream.read(granted)
                if flip_at is not None and sent <= flip_at < sent + granted:
                    mutable = bytearray(piece)
                    mutable[flip_at - sent] ^= 0xFF
                    piece = bytes(mutable)
                fake._count_served(file.id, len(piece))
                if sent + len(piece) == length:
                    self._log(status, length)
                try:
                    self.wfile.write(piece)
                except OSError:
                    fake._count_served(file.id, -len(piece))
                    raise
                sent += len(piece)
                if plan.throttle:
                    delay = paced_from + sent / plan.throttle - time.monotonic()
                    if delay > 0 and fake._stopping.wait(delay):
                        break
        except OSError:
            self._log(status, sent)
            self.close_connection = True
            return
        if sent < length:
            self._log(status, sent)
            self._cut_connection()

    def _cut_connection(self) -> None:
        """Close mid-body: the client sees EOF before ``Content-Length`` bytes."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client is gone already
            self.connection.shutdown(socket.SHUT_RDWR)


class _BadRequest(ValueError):
    """An invalid query parameter; its message becomes the 400 body's ``error``."""


_ROUTES = (
    ("models", re.compile(r"/api/v1/models")),
    ("model", re.compile(r"/api/v1/models/([^/]+)")),
    ("hash_ids", re.compile(r"/api/v1/model-versions/by-hash/ids")),
    ("by_hash", re.compile(r"/api/v1/model-versions/by-hash/([^/]+)")),
    ("version", re.compile(r"/api/v1/model-versions/([^/]+)")),
    ("download", re.compile(r"/api/download/models/([^/]+)")),
)


def _route(path: str) -> tuple[str, str] | None:
    for name, pattern in _ROUTES:
        match = pattern.fullmatch(path)
        if match:
            return name, match.group(1) if match.groups() else ""
    return None


@dataclass(frozen=True)
class _ModelQuery:
    """The validated query of ``GET /api/v1/models``."""

    params: Mapping[str, list[str]]
    limit: int
    page: int | None
    offset: int
    page_mode: bool
    query: str | None
    ids: frozenset[int] | None
    tag: str | None
    username: str | None
    types: frozenset[str]
    base_models: frozenset[str]
    nsfw: bool
    primary_only: bool

    @classmethod
    def parse(cls, params: Mapping[str, list[str]]) -> _ModelQuery:
        def one(name: str) -> str | None:
            values = params.get(name)
            return values[-1] if values else None

        def many(name: str) -> frozenset[str]:
            values = params.get(name, [])
            return frozenset(p.strip().lower() for v in values for p in v.split(",") if p.strip())

        def integer(name: str, default: int | None, low: int, high: int) -> int | None:
            text = one(name)
            if text is None:
                return default
            if not text.isdigit() or not low <= int(text) <= high:
                raise _BadRequest(f"Invalid {name}: expected an integer from {low} to {high}")
            return int(text)

        def boolean(name: str) -> bool:
            text = (one(name) or "false").lower()
            if text not in ("true", "false", "1", "0"):
                raise _BadRequest(f"Invalid {name}: expected true or false")
            return text in ("true", "1")

        limit = integer("limit", 100, 1, 100) or 100
        page = integer("page", None, 1, 10**9)
        query = one("query")
        cursor = one("cursor")
        if query is not None and page is not None:
            raise _BadRequest(
                "Cannot use page param with query search. Use cursor-based pagination."
            )
        offset = (page - 1) * limit if page else 0
        if cursor is not None:
            match = re.fullmatch(r"o:(\d+)", cursor)
            if match is None:
                raise _BadRequest("Invalid cursor")
            offset = int(match.group(1))
        ids_text = one("ids")
        ids = None
        if ids_text is not None:
            parts = [p.strip() for p in ids_text.split(",") if p.strip()]
            if not all(p.isdigit() for p in parts):
                raise _BadRequest("Invalid ids: expected comma-separated integers")
            ids = frozenset(int(p) for p in parts)
        types = many("types")
        unknown = sorted(types - MODEL_TYPES)
        if unknown:
            raise _BadRequest(f"Invalid types: {', '.join(unknown)}")
        period = one("period")
        if period is not None and period.lower() not in PERIODS:
            raise _BadRequest(f"Invalid period: {period}")
        return cls(
            params=params,
            limit=limit,
            page=page,
            offset=offset,
            page_mode=cursor is None and query is None,
            query=query.lower() if query else None,
            ids=ids,
            tag=(one("tag") or "").lower() or None,
            username=(one("username") or "").lower() or None,
            types=types,
            base_models=many("baseModels"),
            nsfw=boolean("nsfw"),
            primary_only=boolean("primaryFileOnly"),
        )

    def accepts(self, model: FakeModel) -> bool:
        """Whether ``model`` passes every filter."""
        return (
            (self.query is None or self.query in model.name.lower())
            and (self.ids is None or model.id in self.ids)
            and (self.tag is None or self.tag in (t.lower() for t in model.tags))
            and (self.username is None or self.username == model.creator.lower())
            and (not self.types or model.type.lower() in self.types)
            and (
                not self.base_models
                or any(v.base_model.lower() in self.base_models for v in model.versions)
            )
            and (self.nsfw or not model.nsfw)
        )

    def encode(self, *, page: int | None = None, cursor: str | None = None) -> str:
        """This query string with ``page`` or ``cursor`` replaced."""
        params = {k: v for k, v in self.params.items() if k not in ("page", "cursor")}
        if page is not None:
            params["page"] = [str(page)]
        if cursor is not None:
            params["cursor"] = [cursor]
        return urlencode(params, doseq=True, quote_via=quote)


def _content_disposition(name: str) -> str:
    """``attachment`` with an ASCII ``filename`` and the exact name in ``filename*``."""
    printable = "".join(ch if " " <= ch <= "~" else "_" for ch in name)
    escaped = printable.replace("\\", "\\\\").replace('"', '\\"')
    return f"attachment; filename=\"{escaped}\"; filename*=UTF-8''{quote(name, safe='')}"


# --------------------------------------------------------------------------- runner


def main(argv: Sequence[str] | None = None) -> int:
    """Run a FakeCivitai until SIGTERM or SIGINT (``python -m civit.testing``).

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status, 0 after a clean shutdown.
    """
    parser = argparse.ArgumentParser(
        prog="python -m civit.testing", description="Serve a fake Civitai on loopback."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    parser.add_argument("--port-file", type=Path, help="write the API base URL to this file")
    parser.add_argument("--token", default="test-token", help="the API token to accept")
    parser.add_argument("--link-ttl", type=float, default=3600.0, help="CDN link lifetime (s)")
    parser.add_argument(
        "--extra-file-size", "--big-file-size", type=int, metavar="BYTES",
        help="add model 99999 (version 99999, file 3999999) with a file of this size",
    )  # fmt: skip
    parser.add_argument(
        "--data-dir", type=Path,
        help="where files above 64 MiB are kept between runs (default: a temporary folder)",
    )  # fmt: skip
    parser.add_argument("--throttle", type=float, metavar="BYTES_PER_SECOND",
                        help="throttle every CDN connection")  # fmt: skip
    args = parser.parse_args(argv)

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with tempfile.TemporaryDirectory(prefix="fake-civitai-") as scratch:
        catalog = default_catalog()
        if args.extra_file_size:
            catalog.add(bench_model(args.extra_file_size, directory=args.data_dir or Path(scratch)))
        fake = FakeCivitai(
            token=args.token, catalog=catalog, link_ttl=args.link_ttl, host=args.host,
            port=args.port,
        )  # fmt: skip
        with fake:
            if args.throttle:
                for model in catalog.models:
                    for version in model.versions:
                        for file in version.files:
                            fake.set_faults(file.id, throttle=args.throttle)
            print(f"FakeCivitai API at {fake.url} (CDN {fake.cdn_url}) token={fake.token}",
                  file=sys.stderr, flush=True)  # fmt: skip
            if args.port_file:
                partial = args.port_file.with_name(args.port_file.name + ".tmp")
                partial.write_text(fake.url + "\n")
                partial.replace(args.port_file)
            while not stop.wait(0.2):
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
