"""The files WebUIs read beside a model: ``.civitai.info``, card metadata, a preview.

Every name is built from the model file's *stem* (its name without the last
extension), the way every reader builds it: Civitai Helper
(``butaixianran/Stable-Diffusion-Webui-Civitai-Helper`` ``scripts/ch_lib/civitai.py``:
``base, ext = os.path.splitext(path)``), SwarmUI (``src/Text2Image/T2IModelHandler.cs``:
``Name.BeforeLast('.')``), ComfyUI-Lora-Manager (``py/services/model_scanner.py``) and
A1111's ``modules/extra_networks.py``::

    x.safetensors
    x.civitai.info        the version record (all layouts)
    x.json                A1111/Forge card metadata; SD.Next's model record
    x.cm-info.json        Stability Matrix's ConnectedModelInfo
    x.preview.png|jpg|webp  the first allowed image of the version

Readers here accept ``x.civitai.info`` first and the old ``x.safetensors.civitai.info``
second; an empty ``{}`` (Civitai Helper's "not on Civitai" marker) means unknown.
Writers never drop what a user wrote: card metadata is merged (existing keys win), a
preview that exists is kept, an unrecognised ``x.json`` is left alone.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from civit.api import Client, using_client
from civit.errors import CivitError
from civit.fsutil import atomic_write, read_regular_file
from civit.layouts import CardKind, LayoutName, webui
from civit.records import File, Model, Version, preview_level

__all__ = [
    "CM_INFO_SUFFIX",
    "INFO_SUFFIX",
    "MAX_PREVIEW_BYTES",
    "PREVIEW_EXTENSIONS",
    "Sidecars",
    "a1111_card",
    "choose_preview",
    "cm_info",
    "has_sidecars",
    "info_paths",
    "sd_version",
    "sidecar_version",
    "stem",
    "version_file",
    "write_for_layout",
    "write_sidecars",
]

INFO_SUFFIX = ".civitai.info"
CARD_SUFFIX = ".json"
CM_INFO_SUFFIX = ".cm-info.json"
#: Preview extensions every WebUI lists (A1111 ``find_preview``, SD.Next, Stability
#: Matrix ``LocalModelFile.SupportedImageExtensions``); SwarmUI reads all but webp.
PREVIEW_EXTENSIONS = ("png", "jpg", "jpeg", "webp")
#: Media type -> extension; ``jpg`` because older A1111 lists ``jpg`` but not ``jpeg``.
_PREVIEW_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
_MAGIC = {"png": (b"\x89PNG\r\n\x1a\n",), "jpg": (b"\xff\xd8\xff",), "webp": (b"RIFF",)}
MAX_PREVIEW_BYTES = 16 * 1024 * 1024
# A version record is a few KB; a model record with many versions a few hundred.
_MAX_SIDECAR_BYTES = 8 * 1024 * 1024
_VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".gif")


def stem(model: Path) -> str:
    """The model file's name without its last extension, as the WebUIs compute it.

    >>> stem(Path("models/Lora/add-detail-xl.safetensors"))
    'add-detail-xl'
    """
    name = model.name
    base, dot, _ = name.rpartition(".")
    return base if dot and base else name


def info_paths(model: Path) -> tuple[Path, Path]:
    """``(x.civitai.info, x.safetensors.civitai.info)``: the name every reader uses,
    then the name older civit versions wrote."""
    return model.with_name(stem(model) + INFO_SUFFIX), model.with_name(model.name + INFO_SUFFIX)


def _read_json(path: Path, *, follow_symlinks: bool = True) -> object:
    """A small JSON file's content; ``None`` if absent, not a regular file (a planted
    FIFO must not hang civit), unreadable, too big or broken."""
    try:
        data = read_regular_file(path, limit=_MAX_SIDECAR_BYTES, follow_symlinks=follow_symlinks)
        return json.loads(data)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None


def sidecar_version(model: str | os.PathLike[str]) -> Version | None:
    """The version record a ``.civitai.info`` beside ``model`` holds.

    This is how other parts of civit ask "which version does this file's sidecar
    name" (evidence that a file is civit's own download, a hash to verify against).

    Args:
        model: the model file (it need not exist).

    Returns:
        The version, or ``None`` when neither name exists, the file is not a version
        record, or it is ``{}`` (Civitai Helper's "not on Civitai" marker).
    """
    for path in info_paths(Path(model)):
        document = _read_json(path)
        if isinstance(document, dict) and document:
            return Version.from_json(document)
    return None


# -- A1111 / Forge card metadata ------------------------------------------------------


def sd_version(base_model: str | None, *, flux: bool = False) -> str | None:
    """The ``sd version`` value of an A1111/Forge card for a Civitai base model.

    A1111 ``extensions-builtin/Lora/network.py`` (``SdVersion``) knows SD1, SD2 and
    SDXL; Forge's ``sd_forge_lora/network.py`` adds Flux. Pony, Illustrious and NoobAI
    are SDXL models.

    >>> sd_version("Illustrious"), sd_version("SD 1.5"), sd_version("Flux.1 D", flux=True)
    ('SDXL', 'SD1', 'Flux')
    """
    base = base_model or ""
    if base.startswith("SD 1"):
        return "SD1"
    if base.startswith("SD 2"):
        return "SD2"
    if base.startswith("SDXL") or base in ("Pony", "Illustrious", "NoobAI"):
        return "SDXL"
    if flux and base.startswith("Flux.1"):
        return "Flux"
    return None


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("p", "br", "li", "h1", "h2", "h3", "div"):
            self.parts.append("\n")


def plain_text(markup: str | None) -> str:
    """Civitai's HTML descriptions as plain text (cards show text, not markup).

    >>> plain_text("<p>Adds <b>detail</b>.</p><p>Weight 0.5</p>")
    'Adds detail.\\nWeight 0.5'
    """
    if not markup:
        return ""
    parser = _Text()
    parser.feed(markup)
    parser.close()
    text = html.unescape("".join(parser.parts))
    return re.sub(r"\n\s*\n+", "\n", re.sub(r"[ \t]+", " ", text)).strip()


def _existing_card(path: Path) -> object:
    """A card already beside the model, whose keys civit keeps when it rewrites it:
    ``{}`` if there is none, ``None`` if it cannot be used.

    Never read through a symlink: the card is rewritten as a plain file in the model
    folder, and a link planted there (``x.json -> ~/.docker/config.json``) would copy
    whatever JSON it points to into a file others can read.
    """
    if not os.path.lexists(path):
        return {}
    return _read_json(path, follow_symlinks=False)


def _page(version: Version) -> str:
    return f"https://civitai.com/models/{version.model_id}?modelVersionId={version.id}"


def a1111_card(
    version: Version, *, model: Model | None = None, flux: bool = False
) -> dict[str, Any]:
    """The ``<stem>.json`` user metadata A1111 and Forge show on a model's card.

    Keys as ``extensions-builtin/Lora/ui_edit_user_metadata.py`` writes them.

    Args:
        version: the version record.
        model: the model record, for its description (else the version's is used).
        flux: allow ``sd version: Flux`` (Forge).
    """
    description = plain_text(_text(model.raw.get("description")) if model else None)
    card: dict[str, Any] = {
        "description": description or plain_text(_text(version.raw.get("description"))),
        "activation text": ", ".join(version.trained_words),
        "preferred weight": 0,
        "notes": f"{_page(version)} ({version.model_name or 'model'} {version.name})",
    }
    level = sd_version(version.base_model, flux=flux)
    if level is not None:
        card["sd version"] = level
    return card


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


# -- Stability Matrix -----------------------------------------------------------------


def cm_info(version: Version, file: File | None, *, model: Model | None = None) -> dict[str, Any]:
    """Stability Matrix's ``<stem>.cm-info.json``: ``ConnectedModelInfo``'s fields.

    Field names and types as ``StabilityMatrix.Core/Models/ConnectedModelInfo.cs``
    (``ApplyCivitMetadata``) serialises them: PascalCase, ``Hashes`` with SHA256,
    CRC32 and BLAKE3, ``FileMetadata`` with lower-case keys. Values its reader cannot
    take as null (``Nsfw``, ``Tags``, numbers in ``Stats``) are given or left out.
    """
    model_raw: Mapping[str, Any] = model.raw if model else {}
    info: dict[str, Any] = {
        "ModelId": version.model_id,
        "ModelName": version.model_name or (model.name if model else "") or "",
        "ModelDescription": _text(model_raw.get("description")) or "",
        "Nsfw": bool(model.nsfw) if model else False,
        "Tags": list(model.tags) if model else [],
        "ModelType": version.model_type or "Unknown",
        "VersionId": version.id,
        "VersionName": version.name,
        "VersionDescription": _text(version.raw.get("description")),
        "AuthorUsername": model.creator if model else None,
        "BaseModel": version.base_model,
        "ImportedAt": datetime.now(timezone.utc).isoformat(),
        "TrainedWords": list(version.trained_words),
    }
    if file is not None:
        hashes = file.hashes
        info["RemoteFileName"] = file.name
        info["RemoteFileId"] = file.id
        metadata = {"fp": file.fp, "size": file.size, "format": file.format}
        info["FileMetadata"] = {key: value for key, value in metadata.items() if value}
        picked = {"SHA256": hashes.sha256, "CRC32": hashes.crc32, "BLAKE3": hashes.blake3}
        info["Hashes"] = {key: value for key, value in picked.items() if value}
    stats = model_raw.get("stats")
    if isinstance(stats, Mapping):
        counts = {
            key: value
            for key, value in stats.items()
            if key in _CM_STATS and isinstance(value, int) and not isinstance(value, bool)
        }
        if counts:
            info["Stats"] = counts
    return {key: value for key, value in info.items() if value is not None}


# CivitModelStats (and CivitStats): the counters Stability Matrix reads.
_CM_STATS = frozenset(
    {"downloadCount", "ratingCount", "favoriteCount", "commentCount", "thumbsUpCount"}
)
# What Stability Matrix keeps of the user's own (ConnectedModelInfo "User settings").
_CM_USER_KEYS = ("UserTitle", "ThumbnailImageUrl", "InferenceDefaults")


# -- previews -------------------------------------------------------------------------


def choose_preview(images: object, max_level: int) -> Mapping[str, Any] | None:
    """The first image of a version's ``images`` whose ``nsfwLevel`` is at most
    ``max_level``; videos are skipped.

    Levels are Civitai's: 1 PG, 2 PG-13, 4 R, 8 X, 16 XXX. Old records without
    ``nsfwLevel`` count as PG when ``nsfw`` is false or ``"None"``, else as unknown
    (above every setting).
    """
    for image in images if isinstance(images, list) else ():
        if not isinstance(image, Mapping) or not isinstance(image.get("url"), str):
            continue
        url = str(image["url"])
        if image.get("type", "image") != "image" or url.lower().endswith(_VIDEO_SUFFIXES):
            continue
        level = image.get("nsfwLevel")
        if not isinstance(level, int) or isinstance(level, bool):
            level = 1 if image.get("nsfw") in (False, "None") else 64
        if level <= max_level:
            return image
    return None


def _existing_preview(model: Path) -> Path | None:
    base = stem(model)
    for middle in (".preview.", "."):
        for extension in PREVIEW_EXTENSIONS:
            candidate = model.with_name(f"{base}{middle}{extension}")
            if candidate.is_file():
                return candidate
    return None


def has_sidecars(model: Path) -> bool:
    """Whether any sidecar a WebUI reads is beside ``model``: a ``.civitai.info`` (either
    name), a card (``<stem>.json``, ``<stem>.cm-info.json``) or a preview."""
    base = stem(model)
    cards = (model.with_name(base + CARD_SUFFIX), model.with_name(base + CM_INFO_SUFFIX))
    named = (*info_paths(model), *cards)
    return any(path.is_file() for path in named) or _existing_preview(model) is not None


def _write_preview(model: Path, image: Mapping[str, Any], client: Client) -> Path:
    """Fetch one preview (bounded, no token) and store it as ``<stem>.preview.<ext>``.

    Raises:
        CivitError: the fetch failed, or the answer is not a PNG, JPEG or WebP image.
    """
    url = str(image["url"])
    fetched = client.fetch_public(
        url,
        limit=MAX_PREVIEW_BYTES,
        accept="image/png, image/jpeg, image/webp;q=0.5",
        what="the preview image",
    )
    extension = _PREVIEW_TYPES.get(fetched.content_type)
    if extension is None or not fetched.data.startswith(_MAGIC[extension]):
        shown = fetched.content_type or "no content type"
        raise CivitError(f"the preview is not a PNG, JPEG or WebP image ({shown})")
    target = model.with_name(f"{stem(model)}.preview.{extension}")
    atomic_write(target, fetched.data)
    return target


# -- writing --------------------------------------------------------------------------


@dataclass(frozen=True)
class Sidecars:
    """What :func:`write_sidecars` wrote, and what it chose not to.

    Attributes:
        written: the files written (or updated), in order.
        notes: one line per thing not done and why (a kept file, no allowed image).
    """

    written: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()


def _dump(document: object) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


def write_sidecars(
    model_path: str | os.PathLike[str],
    version: Version,
    *,
    card: CardKind | None = None,
    flux_cards: bool = False,
    file: File | None = None,
    model: Model | None = None,
    preview_nsfw: str | int | None = "pg13",
    client: Client | None = None,
) -> Sidecars:
    """Write the sidecars a WebUI reads beside ``model_path``.

    Always ``<stem>.civitai.info`` (the version record; an old
    ``<file>.<ext>.civitai.info`` beside it is left as it is). Then the layout's card:
    A1111/Forge ``<stem>.json`` (merged: keys already there are kept), SD.Next
    ``<stem>.json`` (the model record, as its downloader writes it; a ``.json`` that is
    not a Civitai model record is kept), Stability Matrix ``<stem>.cm-info.json``
    (its user settings kept). Last a preview, unless one exists or ``preview_nsfw``
    is ``none``. A failed preview is a note, not an error: the model is there.

    Args:
        model_path: the model file.
        version: its version record (with ``images`` for a preview).
        card: which card-metadata sidecar the WebUI reads (see
            :attr:`civit.layouts.WebUI.card`).
        flux_cards: allow ``sd version: Flux`` (Forge).
        file: the version's file this is (for Stability Matrix's hashes).
        model: the model record (SD.Next's card, descriptions, tags).
        preview_nsfw: the highest image level for a preview (``pg``, ``pg13``, ``r``,
            ``x``, ``xxx`` or a number), or ``none``.
        client: fetches the preview (never with the token); one is made from the
            environment and config (and closed) when a preview is wanted and it is
            omitted.

    Returns:
        What was written, and notes.

    Raises:
        CivitError: a sidecar cannot be written (disk full, permissions).
        UsageError: ``preview_nsfw`` is not a level.
    """
    max_level = preview_level(preview_nsfw)
    model_file = Path(model_path)
    written: list[Path] = []
    notes: list[str] = []
    base = stem(model_file)
    info = model_file.with_name(base + INFO_SUFFIX)
    atomic_write(info, _dump(dict(version.raw) or {"id": version.id, "name": version.name}))
    written.append(info)
    if card == "a1111":
        target = model_file.with_name(base + CARD_SUFFIX)
        existing = _existing_card(target)
        if isinstance(existing, dict):
            merged = {**a1111_card(version, model=model, flux=flux_cards), **existing}
            if merged != existing or not target.exists():
                atomic_write(target, _dump(merged))
                written.append(target)
        else:
            notes.append(f"kept {target.name}: it is not a card-metadata object")
    elif card == "sdnext":
        target = model_file.with_name(base + CARD_SUFFIX)
        existing = _existing_card(target) or None
        if model is None:
            notes.append(f"no {target.name}: the model record could not be fetched")
        elif existing is None and target.exists():
            notes.append(f"kept {target.name}: it is not a Civitai model record")
        elif existing is None or (isinstance(existing, dict) and "modelVersions" in existing):
            atomic_write(target, _dump(dict(model.raw)))
            written.append(target)
        else:
            notes.append(f"kept {target.name}: it is not a Civitai model record")
    elif card == "stabilitymatrix":
        target = model_file.with_name(base + CM_INFO_SUFFIX)
        existing = _existing_card(target)
        document = cm_info(version, file, model=model)
        if isinstance(existing, dict):
            document.update({k: existing[k] for k in _CM_USER_KEYS if k in existing})
        atomic_write(target, _dump(document))
        written.append(target)
    if max_level is not None:
        preview = _preview(model_file, version, max_level, client, notes)
        if preview is not None:
            written.append(preview)
    return Sidecars(tuple(written), tuple(notes))


def _preview(
    model_path: Path, version: Version, max_level: int, client: Client | None, notes: list[str]
) -> Path | None:
    if _existing_preview(model_path) is not None:
        return None
    image = choose_preview(version.raw.get("images"), max_level)
    if image is None:
        notes.append(f"no preview: {version.name} has no image at or below the preview_nsfw level")
        return None
    try:
        with using_client(client) as api:
            return _write_preview(model_path, image, api)
    except CivitError as exc:
        notes.append(f"no preview: {exc}")
        return None


def write_for_layout(
    model_path: Path,
    version: Version,
    *,
    layout: LayoutName | None,
    client: Client,
    sha256: str | None = None,
    preview_nsfw: str | int | None = "pg13",
    models: MutableMapping[int, Model | str] | None = None,
) -> Sidecars:
    """:func:`write_sidecars` for a file in a layout: the card that layout's WebUI
    reads, the model record it needs fetched (once per model when ``models`` is kept
    across calls; a failed fetch is a note and the card is written without it).

    Args:
        model_path: the model file.
        version: its version record.
        layout: the WebUI layout it lies in (``None``: a plain folder, no card).
        client: fetches the model record and the preview.
        sha256: the file's SHA256, to find its file record in ``version``.
        preview_nsfw: the highest image level for a preview, or ``none``.
        models: model records (or why one could not be fetched) by model id.

    Returns:
        What was written, and notes.

    Raises:
        CivitError: a sidecar cannot be written. UsageError: a bad ``preview_nsfw``.
    """
    ui = webui(layout) if layout is not None else None
    card = ui.card if ui is not None else None
    cache: MutableMapping[int, Model | str] = {} if models is None else models
    model: Model | str | None = None
    if card is not None and version.model_id is not None:
        if version.model_id not in cache:
            try:
                cache[version.model_id] = client.get_model(version.model_id)
            except CivitError as exc:
                cache[version.model_id] = f"card metadata without the model record: {exc}"
        model = cache[version.model_id]
    written = write_sidecars(
        model_path,
        version,
        card=card,
        flux_cards=ui.flux_cards if ui is not None else False,
        file=version_file(version, sha256, model_path.name),
        model=model if isinstance(model, Model) else None,
        preview_nsfw=preview_nsfw,
        client=client,
    )
    if isinstance(model, str):
        return Sidecars(written.written, (model, *written.notes))
    return written


def version_file(version: Version, sha256: str | None, name: str) -> File | None:
    """The file of ``version`` a local file is: by SHA256, else by name."""
    found = version.file_with_hash(sha256) if sha256 else None
    return found or next((file for file in version.files if file.name == name), None)
