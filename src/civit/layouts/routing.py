"""Which row of a routing table a file belongs to, and the folder that makes in a root.

Civitai's *model* type says what a model is for; a version's *file* says more: a VAE
file attached to a checkpoint belongs with VAEs, a GGUF file or the checkpoint of a
Flux/SD3/Wan base holds only the diffusion model (what ComfyUI, SwarmUI, SD.Next and
Stability Matrix keep apart from full checkpoints). :func:`route` decides the row;
:func:`destination` turns it into a folder of one install, configured folders included.
"""

from __future__ import annotations

import json
import re
import string
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from civit.errors import UsageError
from civit.fsutil import make_folder
from civit.layouts.base import ROWS, Detection, Folder, LayoutName
from civit.layouts.detection import webui
from civit.layouts.filenames import safe_filename

__all__ = [
    "FILE_TYPE_ROUTES",
    "SUBFOLDER_FIELDS",
    "Destination",
    "Route",
    "check_subfolder",
    "destination",
    "diffusion_only",
    "folder_for",
    "is_full_checkpoint_base",
    "prepare_folder",
    "read_safetensors_names",
    "render_subfolder",
    "route",
    "row_label",
    "safetensors_names",
]

#: Civitai file types that decide the row on their own. "Negative" embeddings and
#: "Enhancement LoRA" files ride along on other models.
FILE_TYPE_ROUTES: Mapping[str, str] = MappingProxyType(
    {
        "VAE": "VAE",
        "Text Encoder": "TextEncoder",
        "Diffusion Model": "UNet",
        "UNet": "UNet",
        "CLIPVision": "CLIPVision",
        "Vision Encoder": "CLIPVision",
        "Upscaler": "Upscaler",
        "ControlNet": "Controlnet",
        "Negative": "TextualInversion",
        "Enhancement LoRA": "LORA",
        "Workflow": "Workflows",
    }
)

# vladmandic/sdnext modules/civitai/filemanage_civitai.py: FULL_CHECKPOINT_BASES and
# FULL_CHECKPOINT_PREFIXES, the bases whose Civitai checkpoints are full SD1/SD2/SDXL
# style checkpoints (UNet + VAE + text encoders); the exact names matter: "Pony" is
# SDXL, "Pony V7" is AuraFlow.
FULL_CHECKPOINT_BASES = frozenset(
    {"Pony", "Illustrious", "NoobAI", "SVD", "SVD XT", "Kolors", "Stable Cascade"}
)
FULL_CHECKPOINT_PREFIXES = ("SD 1", "SD 2", "SDXL")

# Tensor name prefixes of the VAE and text encoders inside a full checkpoint, from
# Comfy-Org/ComfyUI comfy/supported_models_base.py and supported_models.py
# (vae_key_prefix, text_encoder_key_prefix; SDXL's conditioner.embedders).
_COMPANION_PREFIXES = (
    "first_stage_model.",
    "vae.",
    "cond_stage_model.",
    "conditioner.embedders.",
    "text_encoders.",
    "text_encoder.",
)

# safetensors' reference implementation refuses headers above 100 MB.
MAX_HEADER_BYTES = 100_000_000


def _type_key(name: str) -> str:
    """``Text Encoder``, ``TextEncoder`` and ``text_encoder`` are one type."""
    return re.sub(r"[\s_-]+", "", name).lower()


_ROWS_BY_KEY = MappingProxyType({_type_key(row): row for row in ROWS})
_FILE_ROUTES_BY_KEY = MappingProxyType(
    {_type_key(name): row for name, row in FILE_TYPE_ROUTES.items()}
)


def is_full_checkpoint_base(base_model: str) -> bool:
    """Whether Civitai checkpoints of this base are full SD1/SD2/SDXL-style checkpoints.

    >>> is_full_checkpoint_base("Illustrious"), is_full_checkpoint_base("Flux.1 D")
    (True, False)
    """
    return base_model in FULL_CHECKPOINT_BASES or base_model.startswith(FULL_CHECKPOINT_PREFIXES)


def diffusion_only(tensor_names: Collection[str]) -> bool:
    """Whether a safetensors header lists no VAE and no text-encoder tensors."""
    return not any(name.startswith(_COMPANION_PREFIXES) for name in tensor_names)


def safetensors_names(prefix: bytes) -> list[str] | None:
    """The tensor names in a safetensors header, from the file's first bytes.

    Args:
        prefix: at least the first ``8 + header length`` bytes of the file.

    Returns:
        The names (``__metadata__`` left out), or ``None`` if ``prefix`` does not start
        a safetensors file or is too short to hold its header.
    """
    if len(prefix) < 8:
        return None
    (length,) = struct.unpack("<Q", prefix[:8])
    if not 2 <= length <= MAX_HEADER_BYTES or len(prefix) < 8 + length:
        return None
    try:
        header = json.loads(prefix[8 : 8 + length])
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict):
        return None
    return [name for name in header if name != "__metadata__"]


def read_safetensors_names(path: Path) -> list[str] | None:
    """The tensor names of a local safetensors file (reads only its header).

    Returns:
        The names, or ``None`` if the file cannot be read or is not safetensors.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return None
            (length,) = struct.unpack("<Q", head)
            if not 2 <= length <= MAX_HEADER_BYTES:
                return None
            return safetensors_names(head + handle.read(length))
    except OSError:
        return None


@dataclass(frozen=True)
class Route:
    """The row a file goes to, and why when that is not its model type's row.

    Attributes:
        row: a row of :data:`civit.layouts.base.ROWS`.
        model_row: the row the model type alone gives.
        reason: why the file's own facts override its model type (``None`` when they
            agree), e.g. ``a GGUF file holds only the diffusion model``.
        by_base_model: the row was chosen from the base model alone; the file's
            safetensors header may still show it is a full checkpoint.
    """

    row: str
    model_row: str
    reason: str | None = None
    by_base_model: bool = False


def route(
    *,
    model_type: str | None = None,
    file_type: str | None = None,
    file_format: str | None = None,
    base_model: str | None = None,
    full_checkpoint: bool | None = None,
) -> Route:
    """Decide the row of a file from what Civitai and the file itself say it is.

    Order: a file type that names a kind of model (VAE, Text Encoder, Diffusion
    Model...) wins; then the model type. A checkpoint becomes a diffusion-only model
    when it is GGUF, when its safetensors header shows no VAE or text-encoder
    (``full_checkpoint=False``, see :func:`diffusion_only`), or, when the header is
    unknown, when its base is not an SD1/SD2/SDXL-family base.

    Args:
        model_type: Civitai model type (``Checkpoint``, ``LORA``...), any case.
        file_type: Civitai file type (``Model``, ``VAE``, ``Text Encoder``...).
        file_format: ``SafeTensor``, ``GGUF``...
        base_model: the version's base model (``SDXL 1.0``, ``Flux.1 D``...).
        full_checkpoint: what the file's safetensors header says, when known: ``True``
            if it holds a VAE or text encoders besides the diffusion model.

    Returns:
        The :class:`Route`.

    >>> route(model_type="Checkpoint", file_format="GGUF").row
    'UNet'
    """
    by_file = _FILE_ROUTES_BY_KEY.get(_type_key(file_type or ""))
    by_model = _ROWS_BY_KEY.get(_type_key(model_type or ""), "Other")
    if by_file is not None and by_file != by_model:
        return Route(by_file, by_model, f"its file type is {file_type}")
    row = by_file or by_model
    if row != "Checkpoint":
        return Route(row, by_model)
    if (file_format or "").lower() == "gguf":
        return Route("UNet", by_model, "a GGUF file holds only the diffusion model")
    if full_checkpoint is not None:
        if not full_checkpoint:
            reason = "its safetensors header has no VAE or text-encoder tensors"
            return Route("UNet", by_model, reason)
        return Route("Checkpoint", by_model)
    if base_model and not is_full_checkpoint_base(base_model):
        reason = (
            f"{base_model} is not an SD 1/SD 2/SDXL base, so its checkpoints hold only "
            "the diffusion model"
        )
        return Route("UNet", by_model, reason, by_base_model=True)
    return Route("Checkpoint", by_model)


def folder_for(
    layout: LayoutName,
    *,
    model_type: str | None = None,
    file_type: str | None = None,
    file_format: str | None = None,
    base_model: str | None = None,
) -> PurePosixPath:
    """The default folder, relative to the install root, for such a file in a layout.

    This is the one table lookup other parts of civit use (``freeze`` writes it into
    manifests); it ignores configured folders (see :func:`destination` for those).

    Returns:
        A relative path; ``.`` for the ``flat`` layout.

    >>> folder_for("comfyui", model_type="Checkpoint", file_type="VAE")
    PurePosixPath('models/vae')
    """
    chosen = route(
        model_type=model_type, file_type=file_type, file_format=file_format, base_model=base_model
    )
    return PurePosixPath(webui(layout).table[chosen.row])


_ROW_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "Checkpoint": "checkpoint",
        "UNet": "diffusion-model",
        "TextEncoder": "text-encoder",
        "LORA": "LoRA",
        "LoCon": "LoRA",
        "DoRA": "LoRA",
        "TextualInversion": "embedding",
        "Hypernetwork": "hypernetwork",
        "AestheticGradient": "aesthetic-gradient",
        "Controlnet": "ControlNet",
        "Upscaler": "upscaler",
        "MotionModule": "motion-module",
        "CLIPVision": "CLIP-vision",
        "Poses": "poses",
        "Wildcards": "wildcards",
        "Workflows": "workflows",
        "Detection": "detection-model",
        "Other": "other-models",
    }
)


def row_label(row: str) -> str:
    """How messages name a row's folder: ``LoRA``, ``diffusion-model``..."""
    return _ROW_LABELS.get(row, row)


@dataclass(frozen=True)
class Destination:
    """The folder a file goes to in one install, and what the user should be told.

    Attributes:
        folder: the type folder joined with the subfolder, if any.
        type_folder: the type folder and where it was configured.
        route: the row and why.
        extension: an extension folder that must exist before anything goes here.
        notes: lines worth showing: where a configured folder comes from, why a
            file's folder differs from its model type's, config files that could
            not be read.
    """

    folder: Path
    type_folder: Folder
    route: Route
    extension: Path | None = None
    notes: tuple[str, ...] = ()


def destination(
    detection: Detection, chosen: Route, *, subfolder: PurePosixPath | None = None
) -> Destination:
    """Where a file of row ``chosen`` goes in the install ``detection`` describes.

    Args:
        detection: the install (see :func:`civit.layouts.resolve_layout`).
        chosen: the file's route.
        subfolder: a relative folder below the type folder (see
            :func:`civit.layouts.render_subfolder`).

    Returns:
        The :class:`Destination`; nothing is created or checked yet (see
        :func:`prepare_folder`).
    """
    ui = webui(detection.layout)
    found = ui.folders(detection.root)
    type_folder = found.folders[chosen.row]
    notes = list(found.problems)
    label = row_label(chosen.row)
    if type_folder.source is not None:
        notes.append(f"{label} folder from {type_folder.source}")
    if chosen.reason is not None and ui.table[chosen.row] != ui.table[chosen.model_row]:
        instead = row_label(chosen.model_row)
        notes.append(f"{label} folder instead of the {instead} one: {chosen.reason}")
    folder = type_folder.path / subfolder if subfolder else type_folder.path
    return Destination(folder, type_folder, chosen, found.extensions.get(chosen.row), tuple(notes))


def prepare_folder(where: Destination) -> None:
    """Create the destination folder, within the limits a WebUI's setup implies.

    A default folder is created with its parents. A configured folder that is missing
    is created only if its parent exists: a missing parent usually means a drive that
    is not mounted or a typo in the setting, and the files would be lost to the WebUI.
    A folder inside an extension needs the extension installed.

    Raises:
        UsageError: the extension is not installed, or the configured folder's parent
            is missing.
        CivitError: the folder cannot be created.
    """
    label = row_label(where.route.row)
    if where.extension is not None and not where.extension.is_dir():
        raise UsageError(
            f"{label} files go to {where.folder}, which belongs to the "
            f"{where.extension.name} extension, and it is not installed",
            hint=f"install {where.extension.name} first, or pass --dest DIR",
        )
    configured = where.type_folder
    if configured.source is not None and not configured.path.is_dir():
        if not configured.path.parent.is_dir():
            raise UsageError(
                f"the {label} folder {configured.path} (from {configured.source}) does "
                f"not exist, and neither does {configured.path.parent}",
                hint=f"create it, or correct {configured.source}",
            )
        make_folder(configured.path)
    make_folder(where.folder)


#: The placeholders of ``--subfolder`` templates.
SUBFOLDER_FIELDS = ("base_model", "creator", "model_name", "type")


def check_subfolder(template: str) -> str:
    """Validate a ``--subfolder`` template such as ``{base_model}/{creator}``.

    Raises:
        UsageError: unknown placeholders, bad braces, or an absolute or ``..`` path.
    """
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise UsageError(f"bad subfolder template {template!r}: {exc}") from exc
    unknown = sorted(fields - set(SUBFOLDER_FIELDS))
    if unknown:
        raise UsageError(
            f"bad subfolder template {template!r}: unknown placeholder {', '.join(unknown)}",
            hint="use {" + "}, {".join(SUBFOLDER_FIELDS) + "}",
        )
    parts = PurePosixPath(template.replace("\\", "/")).parts
    if template.startswith(("/", "\\")) or any(part in ("..", ".") for part in parts):
        raise UsageError(f"bad subfolder template {template!r}: it must be a relative path")
    return template


def render_subfolder(template: str, values: Mapping[str, str | None]) -> PurePosixPath:
    """Fill a subfolder template; each value is made a safe folder name first.

    Args:
        template: e.g. ``{base_model}``; literal ``/`` separate folders.
        values: ``base_model``, ``creator``, ``model_name``, ``type`` (missing or empty
            ones become ``unknown``).

    Returns:
        The relative folder.

    Raises:
        UsageError: a bad template (see :func:`check_subfolder`).

    >>> render_subfolder("{base_model}/{creator}", {"base_model": "SDXL 1.0", "creator": "a/b"})
    PurePosixPath('SDXL 1.0/a_b')
    """
    check_subfolder(template)
    safe = {
        name: safe_filename(re.sub(r"[/\\]", "_", values.get(name) or ""), default="unknown")
        for name in SUBFOLDER_FIELDS
    }
    rendered = template.replace("\\", "/").format_map(safe)
    parts = [safe_filename(part, default="unknown") for part in rendered.split("/") if part.strip()]
    return PurePosixPath(*parts)
