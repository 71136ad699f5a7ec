"""What an image or workflow was made with, as Civitai resources.

:func:`find_resources` reads the resources out of an image's text
(:mod:`civit.image_metadata`); :func:`resources_from_image` also looks each one up on
Civitai. Where the names come from, and how each is looked up:

A1111/Forge infotext (the ``parameters`` line: ``Steps: 20, ..., Model hash: ...``):

- ``Model hash``: the checkpoint's AutoV2 (SHA256, first 10 hex; ``modules/
  sd_models.py`` ``CheckpointInfo.shorthash``); 8 hex in very old images (AutoV1).
- ``VAE hash``: the VAE's AutoV2.
- ``Lora hashes: "name: hash, ..."``: 12 hex (``extensions-builtin/Lora/network.py``
  ``NetworkOnDisk.shorthash``): for a ``.safetensors`` LoRA the SHA256 of the tensor
  data after the header, which is Civitai's AutoV3; for other files the SHA256 of the
  whole file, whose first 10 hex are the AutoV2. AutoV3 is tried first.
- ``TI hashes: "name: hash, ..."``: 12 hex of the embedding's SHA256 (``modules/
  textual_inversion/textual_inversion.py`` ``Embedding.set_hash``), so AutoV2 first.
- ``Hashes: {"model": ..., "vae": ..., "lora:NAME": ..., "embed:NAME": ...}``: what
  Civitai's own A1111 extension and ComfyUI "save with metadata" nodes write.
- ``Civitai resources: [{"type": ..., "modelVersionId": ...}]`` (and ``Civitai
  metadata: {...}``): what images generated on Civitai carry.

JSON (ComfyUI ``prompt``/``workflow`` chunks, workflow files, the JSON values above),
searched everywhere, the way Civitai's own parser reads them
(``src/utils/metadata/comfy.metadata.ts``):

- any object with a ``modelVersionId`` (Civitai resources, ``extraMetadata``);
- any AIR string (``urn:air:sdxl:lora:civitai:328553@368189``), e.g. in
  ``extra.airs`` or as a loader's model name in Civitai's generator;
- keys ending in ``_air``/``_airs`` holding ``model@version`` refs (Civitai's ComfyUI
  nodes: ``ckpt_air``/``lora_air`` inputs and ``extra.ckpt_airs``/``lora_airs``), and
  the ``widgets_values`` of those nodes in a saved editor workflow.

Nothing here prints; lookups run :data:`MAX_LOOKUPS` at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from civit.api import Client, using_client
from civit.errors import NotDownloadableError, NotFoundError, UsageError
from civit.image_metadata import ImageKind, read_image_metadata
from civit.records import File, Version
from civit.refs import Ref, parse_ref
from civit.select import select_file

__all__ = [
    "MAX_LOOKUPS",
    "ImageResource",
    "ImageResources",
    "find_resources",
    "infotext_parameters",
    "resources_from_image",
]

MAX_LOOKUPS = 4
# JSON nested deeper than this is not a workflow; the walk stops instead of recursing.
_MAX_DEPTH = 64

_PARAMETER_KEY = re.compile(r"\s*(\w[\w \-/]*?):\s*")
_VERSION_REF = re.compile(r"\s*\d{1,12}(?:@\d{1,12})?\s*")
_AIR = re.compile(r"(?:urn:)?air:[^:]*:(?P<type>[^:]*):civitai:", re.IGNORECASE)
# "Hashes" keys are "model", "vae" or "<kind>:<name>"; A1111's extra-network names.
_HASHES_KINDS = {
    "model": "checkpoint",
    "vae": "vae",
    "lora": "lora",
    "lyco": "lora",
    "embed": "embedding",
    "hypernet": "hypernetwork",
}
# What a hash of each length is on Civitai (8 hex may also be a CRC32).
_HASH_NAMES = {8: "AutoV1", 10: "AutoV2", 12: "AutoV3", 64: "SHA256"}
_AIR_KEY_KINDS = {"ckpt": "checkpoint", "lora": "lora", "embedding": "embedding"}


@dataclass(frozen=True)
class ImageResource:
    """One model an image names, and what Civitai says it is.

    Attributes:
        kind: what the image calls it: ``checkpoint``, ``lora``, ``embedding``,
            ``vae``... (lower-case, as written).
        name: the image's name for it (the LoRA's alias, the checkpoint's file stem),
            when it gives one.
        source: where it was named: ``Model hash``, ``Lora hashes``, ``TI hashes``,
            ``VAE hash``, ``Hashes``, ``Civitai resources``, or the JSON it came from
            (``workflow``, ``prompt``).
        lookups: how to find it on Civitai, tried in order (hash refs, a version ref).
        weight: the strength it was used with, when the image says.
        version: the version Civitai has, once looked up and found.
        file: the exact file, when a hash named it (a version id names no file).
        error: why it was not found, once looked up.
    """

    kind: str
    name: str | None
    source: str
    lookups: tuple[Ref, ...]
    weight: float | None = None
    version: Version | None = None
    file: File | None = None
    error: str | None = None

    @property
    def found(self) -> bool:
        """Whether Civitai has it."""
        return self.version is not None

    @property
    def named_by(self) -> str:
        """How the image names it, e.g. ``Lora hashes 0123456789AB`` or
        ``Civitai resources version 368189``."""
        if not self.lookups:
            return self.source
        hashes = [ref.hash for ref in self.lookups if ref.hash is not None]
        if hashes:
            return f"{self.source} {max(hashes, key=len)}"  # the hash as written, untrimmed
        return f"{self.source} {_describe_lookup(self.lookups[0])}"

    def choose_file(
        self,
        *,
        type: str | None = None,
        format: str | None = None,
        fp: str | None = None,
        size: str | None = None,
    ) -> File:
        """The file to download: the one a hash named, else the version's file chosen
        like ``civit get`` does (the primary file, or the selection given).

        Raises:
            NotFoundError: the resource was not found.
            NotDownloadableError: no file of the version matches the selection.
        """
        if self.version is None:
            raise NotFoundError(f"{self.kind} {self.name or self.named_by} is not on Civitai")
        if self.file is not None:
            return self.file
        return select_file(self.version, type=type, format=format, fp=fp, size=size)

    def as_json(self) -> dict[str, object]:
        """A plain JSON object (the CLI's ``--json``)."""
        version = self.version
        return {
            "kind": self.kind,
            "name": self.name,
            "source": self.source,
            "lookups": [str(ref) for ref in self.lookups],
            "weight": self.weight,
            "found": self.found,
            "model_id": version.model_id if version else None,
            "version_id": version.id if version else None,
            "model_name": version.model_name if version else None,
            "version_name": version.name if version else None,
            "file_id": self.file.id if self.file else None,
            "file_name": self.file.name if self.file else None,
            "reason": self.error,
        }


@dataclass(frozen=True)
class ImageResources:
    """The resources one image or workflow names.

    Attributes:
        path: the file.
        kind: ``png``, ``jpeg``, ``webp`` or ``json``.
        keys: the metadata keys it carries (empty: no generation metadata at all).
        resources: each resource once, in the order the image names them.
    """

    path: Path
    kind: ImageKind
    keys: tuple[str, ...]
    resources: tuple[ImageResource, ...]

    def choices(
        self,
        *,
        type: str | None = None,
        format: str | None = None,
        fp: str | None = None,
        size: str | None = None,
    ) -> list[tuple[ImageResource, File | NotDownloadableError]]:
        """Each found resource with the file to download (each file once), or with
        why its version has no file the selection wants.

        A hash names its exact file; for a version id the selection chooses (see
        :meth:`ImageResource.choose_file`). One resource without a matching file
        does not keep the others from being downloaded.
        """
        chosen: list[tuple[ImageResource, File | NotDownloadableError]] = []
        seen: set[int] = set()
        for resource in self.resources:
            if not resource.found:
                continue
            try:
                file = resource.choose_file(type=type, format=format, fp=fp, size=size)
            except NotDownloadableError as exc:
                chosen.append((resource, exc))
                continue
            if file.id not in seen:
                seen.add(file.id)
                chosen.append((resource, file))
        return chosen

    def files(
        self,
        *,
        type: str | None = None,
        format: str | None = None,
        fp: str | None = None,
        size: str | None = None,
    ) -> list[tuple[ImageResource, File]]:
        """The files to download for the found resources, each file once (see
        :meth:`choices`).

        Raises:
            NotDownloadableError: no file of a version matches the selection.
        """
        files: list[tuple[ImageResource, File]] = []
        for resource, choice in self.choices(type=type, format=format, fp=fp, size=size):
            if isinstance(choice, NotDownloadableError):
                raise choice
            files.append((resource, choice))
        return files


def resources_from_image(
    path: str | os.PathLike[str], *, client: Client | None = None
) -> ImageResources:
    """Read the resources an image or workflow names and look each up on Civitai.

    Hashes go to the by-hash endpoint (AutoV2, AutoV3, SHA256...), version ids to the
    version endpoint; a model id without a version means its newest version.

    Args:
        path: a PNG, JPEG or WebP image, or a ComfyUI workflow ``.json``.
        client: API client; one is made from the environment when omitted (and only
            if the image names something).

    Returns:
        The resources, each with its ``version`` (and ``file`` for a hash) when found,
        else the ``error`` saying why not.

    Raises:
        UsageError: the file is not an image or a JSON workflow.
        NetworkError / RateLimitError / ResponseError: a lookup failed.
    """
    metadata = read_image_metadata(path)
    found = find_resources(metadata.texts)
    if found:
        with using_client(client) as api:
            found = _look_up(api, found)
    return ImageResources(metadata.path, metadata.kind, tuple(metadata.texts), tuple(found))


def _look_up(client: Client, resources: Sequence[ImageResource]) -> list[ImageResource]:
    def look_up(resource: ImageResource) -> ImageResource:
        for ref in resource.lookups:
            try:
                version = client.get_version_for(ref)
            except NotFoundError:
                continue
            file = version.file_with_hash(ref.hash) if ref.hash is not None else None
            return replace(resource, version=version, file=file)
        tried = " or ".join(_describe_lookup(ref) for ref in resource.lookups)
        return replace(resource, error=f"Civitai knows no {tried}")

    with ThreadPoolExecutor(
        max_workers=min(MAX_LOOKUPS, len(resources)), thread_name_prefix="civit-image"
    ) as pool:
        return list(pool.map(look_up, resources))


def _describe_lookup(ref: Ref) -> str:
    """``AutoV3 0123456789AB``, ``version 368189``, ``model 328553``."""
    if ref.hash is not None:
        return f"{_HASH_NAMES.get(len(ref.hash), 'hash')} {ref.hash}"
    if ref.version_id is not None:
        return f"version {ref.version_id}"
    return f"model {ref.model_id}"


# -- finding resources in the text ---------------------------------------------------


def find_resources(texts: Mapping[str, str]) -> list[ImageResource]:
    """The resources named in an image's texts (see the module docstring), each once.

    Args:
        texts: text by metadata key, as :func:`civit.image_metadata.read_image_metadata`
            returns them.

    Returns:
        The resources, not yet looked up, in the order they are named.
    """
    found: list[ImageResource] = []
    for key, text in texts.items():
        document = _json_value(text)
        if document is not None:
            found.extend(_from_json(document, source=key))
        else:
            found.extend(_from_infotext(text))
    unique: dict[tuple[str, object], ImageResource] = {}
    for resource in found:
        unique.setdefault(_identity(resource.lookups[0]), resource)
    return list(unique.values())


def _identity(ref: Ref) -> tuple[str, object]:
    """Two mentions of one version (its id, its AIR) count once."""
    if ref.hash is not None:
        return ("hash", ref.hash)
    if ref.version_id is not None:
        return ("version", ref.version_id)
    return ("model", ref.model_id)


def infotext_parameters(text: str) -> dict[str, object]:
    """The ``Key: value`` pairs of an A1111 infotext's parameters line.

    The parameters line is the last one starting with ``Steps:`` (else the last
    line). Quoted values are unquoted and JSON values (``Hashes: {...}``, ``Civitai
    resources: [...]``) decoded, as A1111's ``infotext_utils.parse_generation_parameters``
    and Civitai's parser read them; the first occurrence of a key wins.

    >>> infotext_parameters('cat\\nSteps: 20, Lora hashes: "a: 0123456789ab, b: ba9876543210"')
    {'Steps': '20', 'Lora hashes': 'a: 0123456789ab, b: ba9876543210'}
    """
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return {}
    line = next((li for li in reversed(lines) if li.startswith("Steps: ")), lines[-1])
    decoder = json.JSONDecoder()
    parameters: dict[str, object] = {}
    position = 0
    while position < len(line):
        key = _PARAMETER_KEY.match(line, position)
        if key is None:
            comma = line.find(",", position)
            position = len(line) if comma < 0 else comma + 1
            continue
        position = key.end()
        value: object
        try:
            if line[position : position + 1] not in ('"', "[", "{"):
                raise ValueError("not JSON")
            value, position = decoder.raw_decode(line, position)
        except (ValueError, RecursionError):  # not JSON, or nested too deep to be data
            comma = line.find(",", position)
            end = len(line) if comma < 0 else comma
            value, position = line[position:end].strip(), end
        parameters.setdefault(key[1].strip(), value)
        comma = line.find(",", position)
        position = len(line) if comma < 0 else comma + 1
    return parameters


def _json_value(text: str) -> object | None:
    """``text`` decoded if it is a JSON object or array (workflows, graphs), else ``None``."""
    if text.lstrip()[:1] not in ("{", "["):
        return None
    try:
        # Python's json also takes the NaN/Infinity ComfyUI writes for unset widgets.
        document: object = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested too deep to be a workflow
        return None
    return document


def _from_infotext(text: str) -> list[ImageResource]:
    parameters = infotext_parameters(text)
    found: list[ImageResource] = []
    checkpoint = parameters.get("Model")
    for key, kind, name in (
        ("Model hash", "checkpoint", checkpoint),
        ("VAE hash", "vae", parameters.get("VAE")),
    ):
        digest = parameters.get(key)
        if isinstance(digest, str):
            found.extend(_hash_resource(kind, _text(name), key, digest, short="sha256"))
    for key, kind, short in (
        ("Lora hashes", "lora", "autov3"),
        ("TI hashes", "embedding", "sha256"),
    ):
        for name, digest in _named_hashes(parameters.get(key)):
            found.extend(_hash_resource(kind, name, key, digest, short=short))
    hashes = parameters.get("Hashes")
    if isinstance(hashes, dict):
        for label, digest in hashes.items():
            prefix, _, name = str(label).partition(":")
            kind = _HASHES_KINDS.get(prefix.lower(), prefix.lower())
            name = name or (_text(checkpoint) if kind == "checkpoint" else None)
            found.extend(_hash_resource(kind, name, "Hashes", str(digest), short="autov3"))
    for key in ("Civitai resources", "Civitai metadata"):
        value = parameters.get(key)
        if isinstance(value, (dict, list)):
            found.extend(_from_json(value, source=key))
    return found


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _named_hashes(value: object) -> list[tuple[str, str]]:
    """``"name: hash, name2: hash2"`` (or a JSON object) as pairs."""
    if isinstance(value, dict):
        return [(str(name), str(digest)) for name, digest in value.items()]
    if not isinstance(value, str):
        return []
    pairs = []
    for part in value.split(","):
        name, colon, digest = part.rpartition(":")
        if colon and digest.strip():
            pairs.append((name.strip(), digest.strip()))
    return pairs


def _hash_resource(
    kind: str, name: str | None, source: str, digest: str, *, short: str
) -> list[ImageResource]:
    """A resource named by a hash; 12-hex hashes are ambiguous (see the module
    docstring), so ``short`` says which reading to try first: ``autov3`` or ``sha256``
    (a prefix of the file's SHA256, i.e. AutoV2 plus two digits)."""
    digest = digest.strip().strip('"')
    candidates = [digest]
    if len(digest) == 12:
        as_autov2 = digest[:10]
        candidates = [digest, as_autov2] if short == "autov3" else [as_autov2, digest]
    lookups = []
    for candidate in candidates:
        with contextlib.suppress(UsageError):
            lookups.append(Ref(hash=candidate))
    if not lookups:
        return []
    return [ImageResource(kind, name or None, source, tuple(lookups))]


def _from_json(document: object, *, source: str) -> list[ImageResource]:
    """Every Civitai reference in a JSON document (see the module docstring)."""
    found: list[ImageResource] = []
    stack: list[tuple[object, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > _MAX_DEPTH:
            continue
        if isinstance(value, str):
            found.extend(_from_string(value, source=source, depth=depth, stack=stack))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in reversed(value))
        elif isinstance(value, dict):
            found.extend(_from_object(value, source=source))
            stack.extend((item, depth + 1) for item in reversed(list(value.values())))
    return found


def _from_string(
    value: str, *, source: str, depth: int, stack: list[tuple[object, int]]
) -> list[ImageResource]:
    air = _AIR.match(value.strip())
    if air is not None:
        return _ref_resource(value, air["type"].lower(), None, source)
    nested = _json_value(value)  # Civitai stores extraMetadata as a JSON string
    if nested is not None:
        stack.append((nested, depth + 1))
    return []


def _from_object(value: Mapping[str, object], *, source: str) -> list[ImageResource]:
    found: list[ImageResource] = []
    version_id = value.get("modelVersionId")
    if isinstance(version_id, (int, str)) and not isinstance(version_id, bool):
        with contextlib.suppress(UsageError, ValueError):
            names = (value.get("modelName"), value.get("modelVersionName"))
            name = " ".join(str(part) for part in names if isinstance(part, str)) or None
            kind = value.get("type") or value.get("modelType") or "resource"
            found.append(
                ImageResource(
                    str(kind).lower(),
                    name,
                    source,
                    (Ref(version_id=int(version_id)),),
                    weight=_weight(value.get("weight", value.get("strength"))),
                )
            )
    for key, item in value.items():
        if key.endswith(("_air", "_airs")):
            kind = _AIR_KEY_KINDS.get(key.rsplit("_", 1)[0], "resource")
            for text in item if isinstance(item, list) else [item]:
                if isinstance(text, str) and _VERSION_REF.fullmatch(text):
                    found.extend(_ref_resource(text, kind, None, source))
    node_type = str(value.get("type") or value.get("class_type") or "")
    widgets = value.get("widgets_values")
    if "civitai" in node_type.lower() and isinstance(widgets, list):
        kind = "lora" if "lora" in node_type.lower() else "checkpoint"
        for text in widgets:
            if isinstance(text, str) and _VERSION_REF.fullmatch(text):
                found.extend(_ref_resource(text, kind, None, source))
    return found


def _ref_resource(text: str, kind: str, name: str | None, source: str) -> list[ImageResource]:
    try:
        ref = parse_ref(text)
    except UsageError:
        return []
    return [ImageResource(kind, name, source, (ref,))]


def _weight(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None
