"""The JSON documents the fake API answers with, and the query rules of ``/api/v1/models``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from civit.testing.catalog import FakeFile, FakeImage, FakeModel, FakeVersion

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


def file_document(file: FakeFile, version: FakeVersion, api_url: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": file.id,
        "sizeKB": file.length / 1024,
        "name": file.name,
        "type": file.type,
        "pickleScanResult": file.pickle_scan,
        "pickleScanMessage": "No Pickle imports",
        "virusScanResult": file.virus_scan,
        "virusScanMessage": None,
        "scannedAt": version.published_at,
        "metadata": file.metadata(),
        "hashes": file.hashes,
        "downloadUrl": _file_download_url(file, version, api_url),
    }
    for key in ("pickleScanResult", "virusScanResult"):
        if doc[key] is None:
            del doc[key]
    if file.primary:
        doc["primary"] = True
    return doc


def _file_download_url(file: FakeFile, version: FakeVersion, api_url: str) -> str:
    """The shortest download URL the download endpoint resolves to exactly this file."""
    base = f"{api_url}/api/download/models/{version.id}"
    if file.primary and pick_file(version, {}) is file:
        return base
    filters = {"type": file.type, **file.metadata()}
    if pick_file(version, filters) is file:
        return f"{base}?{urlencode(filters, quote_via=quote)}"
    return f"{base}?fileId={file.id}"


def _air(model: FakeModel, version: FakeVersion) -> str:
    ecosystem = AIR_ECOSYSTEMS.get(version.base_model.lower(), "other")
    kind = AIR_TYPES.get(model.type.lower(), model.type.lower())
    return f"urn:air:{ecosystem}:{kind}:civitai:{model.id}@{version.id}"


def image_document(image: FakeImage, cdn_url: str) -> dict[str, Any]:
    """One entry of a version's ``images``: on the storage origin, like image.civitai.com."""
    return {
        "url": f"{cdn_url}/images/{image.id}/{image.name}",
        "nsfwLevel": image.nsfw_level,
        "width": image.width,
        "height": image.height,
        "hash": "U00000fQfQfQfQfQfQfQfQfQfQfQ",
        "type": image.type,
        "hasMeta": False,
        "onSite": False,
        "availability": "Public",
    }


def version_document(
    model: FakeModel,
    version: FakeVersion,
    api_url: str,
    *,
    standalone: bool,
    primary_only: bool = False,
    cdn_url: str = "",
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
        "description": version.description,
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
        doc["files"] = [file_document(file, version, api_url) for file in files]
    doc["images"] = [image_document(image, cdn_url) for image in version.images]
    if not model.archived:
        doc["downloadUrl"] = f"{api_url}/api/download/models/{version.id}"
    return doc


def model_document(
    model: FakeModel, api_url: str, *, primary_only: bool = False, cdn_url: str = ""
) -> dict[str, Any]:
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
            version_document(
                model, v, api_url, standalone=False, primary_only=primary_only, cdn_url=cdn_url
            )
            for v in model.versions
        ],
    }  # fmt: skip
    if model.archived:
        doc["mode"] = "Archived"
    return doc


def pick_file(version: FakeVersion, filters: Mapping[str, str]) -> FakeFile | None:
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


class BadRequest(ValueError):
    """An invalid query parameter; its message becomes the 400 body's ``error``."""


@dataclass(frozen=True)
class ModelQuery:
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
    def parse(cls, params: Mapping[str, list[str]]) -> ModelQuery:
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
                raise BadRequest(f"Invalid {name}: expected an integer from {low} to {high}")
            return int(text)

        def boolean(name: str) -> bool:
            text = (one(name) or "false").lower()
            if text not in ("true", "false", "1", "0"):
                raise BadRequest(f"Invalid {name}: expected true or false")
            return text in ("true", "1")

        limit = integer("limit", 100, 1, 100) or 100
        page = integer("page", None, 1, 10**9)
        query = one("query")
        cursor = one("cursor")
        if query is not None and page is not None:
            raise BadRequest(
                "Cannot use page param with query search. Use cursor-based pagination."
            )
        offset = (page - 1) * limit if page else 0
        if cursor is not None:
            match = re.fullmatch(r"o:(\d+)", cursor)
            if match is None:
                raise BadRequest("Invalid cursor")
            offset = int(match.group(1))
        ids_text = one("ids")
        ids = None
        if ids_text is not None:
            parts = [p.strip() for p in ids_text.split(",") if p.strip()]
            if not all(p.isdigit() for p in parts):
                raise BadRequest("Invalid ids: expected comma-separated integers")
            ids = frozenset(int(p) for p in parts)
        types = many("types")
        unknown = sorted(types - MODEL_TYPES)
        if unknown:
            raise BadRequest(f"Invalid types: {', '.join(unknown)}")
        period = one("period")
        if period is not None and period.lower() not in PERIODS:
            raise BadRequest(f"Invalid period: {period}")
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
