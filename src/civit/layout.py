"""Where each kind of model goes in each WebUI, how to tell the WebUIs apart, safe names.

Layouts (the folder a user passes as ``--root`` is the WebUI's install folder):

- ``a1111``: AUTOMATIC1111, Forge, reForge and SD.Next (their shared defaults).
- ``comfyui``: ComfyUI (portable, desktop and git installs alike).
- ``swarmui``: SwarmUI; its ``Models/`` tree, plus ``Data/Wildcards``.
- ``flat``: everything straight into the root folder.

:data:`MODEL_TYPE_FOLDERS` is the one table of folders. Choices that are not obvious:

- UNet in ``a1111`` goes to ``models/Stable-diffusion``: that is where Forge, the
  A1111-family UI that runs diffusion-only models, looks for them (SD.Next's
  ``models/UNET`` is the exception).
- TextEncoder and CLIPVision in ``a1111`` follow Forge (``models/text_encoder``,
  ``models/ControlNetPreprocessor/clip_vision``); plain A1111 has no such folders.
- MotionModule, Wildcards and AestheticGradient in ``a1111`` go to the extension that
  reads them (sd-webui-animatediff, sd-dynamic-prompts, aesthetic-gradients), as Civitai
  Helper does. Install the extension first: A1111 treats a folder under ``extensions/``
  as an installed extension, and ``git clone`` refuses to clone into a non-empty one.
- Wildcards in ``comfyui`` go to ``models/wildcards`` (read by Impact Pack and most
  wildcard nodes); in ``swarmui`` to ``Data/Wildcards``, SwarmUI's own wildcard folder.
- Detection models go where the usual detailer reads them: ADetailer
  (``models/adetailer``), Impact Subpack (``models/ultralytics/bbox``), SwarmUI's
  ``<segment:yolo-…>`` (``Models/yolov8``).
- Poses, AestheticGradient (outside A1111), Workflows (outside ComfyUI) and Other have
  no reader in those UIs; they get their own clearly named folder under the models
  folder, so they neither vanish nor clutter a folder a loader scans.

File types route before model types (:data:`FILE_TYPE_ROUTES`): a VAE attached to a
checkpoint belongs with VAEs, not with checkpoints.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Literal, get_args

from civit.errors import UsageError

__all__ = [
    "FILE_TYPE_ROUTES",
    "LAYOUTS",
    "MODEL_TYPE_FOLDERS",
    "Folders",
    "Layout",
    "LayoutChoice",
    "detect_layout",
    "folder_for",
    "path_inside",
    "resolve_layout",
    "safe_filename",
    "target_dir",
]

Layout = Literal["a1111", "comfyui", "swarmui", "flat"]
LayoutChoice = Literal["auto", "a1111", "comfyui", "swarmui", "flat"]
LAYOUTS: tuple[Layout, ...] = get_args(Layout)


@dataclass(frozen=True)
class Folders:
    """One model type's folder in each layout, relative to the WebUI root."""

    a1111: str
    comfyui: str
    swarmui: str


#: Civitai model type -> its folder in each layout. Unknown types use ``Other``.
MODEL_TYPE_FOLDERS: Mapping[str, Folders] = MappingProxyType(
    {
        "Checkpoint": Folders(
            "models/Stable-diffusion", "models/checkpoints", "Models/Stable-Diffusion"
        ),
        "LORA": Folders("models/Lora", "models/loras", "Models/Lora"),
        "LoCon": Folders("models/Lora", "models/loras", "Models/Lora"),
        "DoRA": Folders("models/Lora", "models/loras", "Models/Lora"),
        "TextualInversion": Folders("embeddings", "models/embeddings", "Models/Embeddings"),
        "Hypernetwork": Folders(
            "models/hypernetworks", "models/hypernetworks", "Models/hypernetworks"
        ),
        "AestheticGradient": Folders(
            "extensions/stable-diffusion-webui-aesthetic-gradients/aesthetic_embeddings",
            "models/aesthetic_embeddings",
            "Models/aesthetic_embeddings",
        ),
        "Controlnet": Folders("models/ControlNet", "models/controlnet", "Models/controlnet"),
        "Upscaler": Folders("models/ESRGAN", "models/upscale_models", "Models/upscale_models"),
        "MotionModule": Folders(
            "extensions/sd-webui-animatediff/model",
            "models/animatediff_models",
            "Models/animatediff_models",
        ),
        "VAE": Folders("models/VAE", "models/vae", "Models/VAE"),
        "TextEncoder": Folders("models/text_encoder", "models/text_encoders", "Models/clip"),
        "UNet": Folders(
            "models/Stable-diffusion", "models/diffusion_models", "Models/diffusion_models"
        ),
        "CLIPVision": Folders(
            "models/ControlNetPreprocessor/clip_vision", "models/clip_vision", "Models/clip_vision"
        ),
        "Poses": Folders("models/Poses", "models/poses", "Models/poses"),
        "Wildcards": Folders(
            "extensions/sd-dynamic-prompts/wildcards", "models/wildcards", "Data/Wildcards"
        ),
        "Workflows": Folders("models/Workflows", "user/default/workflows", "Models/Workflows"),
        "Detection": Folders("models/adetailer", "models/ultralytics/bbox", "Models/yolov8"),
        "Other": Folders("models/Other", "models/other", "Models/other"),
    }
)

#: Civitai file types that decide the folder on their own -> the model type they file as.
#: "Negative" embeddings and "Enhancement LoRA" files ride along on other models.
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


def _type_key(name: str) -> str:
    """``Text Encoder``, ``TextEncoder`` and ``text_encoder`` are one type."""
    return re.sub(r"[\s_-]+", "", name).lower()


_MODEL_TYPES_BY_KEY = MappingProxyType({_type_key(name): name for name in MODEL_TYPE_FOLDERS})
_FILE_ROUTES_BY_KEY = MappingProxyType(
    {_type_key(name): model_type for name, model_type in FILE_TYPE_ROUTES.items()}
)


def folder_for(
    layout: Layout, *, model_type: str | None = None, file_type: str | None = None
) -> PurePosixPath:
    """The folder, relative to the WebUI root, for a file of this model and file type.

    Args:
        layout: which WebUI's folders to use.
        model_type: Civitai model type (``Checkpoint``, ``LORA``...), any case.
        file_type: Civitai file type (``Model``, ``VAE``, ``Text Encoder``...), any case.

    Returns:
        A relative path; ``.`` for the ``flat`` layout.

    >>> folder_for("comfyui", model_type="Checkpoint", file_type="VAE")
    PurePosixPath('models/vae')
    """
    if layout == "flat":
        return PurePosixPath()
    row = _FILE_ROUTES_BY_KEY.get(_type_key(file_type or "")) or _MODEL_TYPES_BY_KEY.get(
        _type_key(model_type or ""), "Other"
    )
    folders: Folders = MODEL_TYPE_FOLDERS[row]
    return PurePosixPath(getattr(folders, layout))


def target_dir(
    root: Path, layout: Layout, *, model_type: str | None = None, file_type: str | None = None
) -> Path:
    """The absolute-or-relative folder under ``root`` where such a file belongs.

    Args:
        root: the WebUI install folder (or any folder, for ``flat``).
        layout: which WebUI's folders to use.
        model_type: Civitai model type.
        file_type: Civitai file type.

    Returns:
        ``root`` joined with :func:`folder_for`.
    """
    return root / folder_for(layout, model_type=model_type, file_type=file_type)


def detect_layout(root: Path) -> Layout | None:
    """Tell which WebUI is installed in ``root`` from the files it ships with.

    Names are compared with their exact case, so A1111's ``models/`` is not taken for
    SwarmUI's ``Models/`` on case-insensitive file systems.

    Args:
        root: the folder to inspect.

    Returns:
        The layout, or ``None`` if ``root`` is missing or looks like none of them.
    """

    def has(relative: str) -> bool:
        return _has_exact(root, relative)

    if has("comfy/") or has("custom_nodes/") or (has("main.py") and has("models/checkpoints/")):
        return "comfyui"
    if has("webui.py") or (
        (has("launch.py") or has("modules/")) and has("models/Stable-diffusion/")
    ):
        return "a1111"
    swarm_markers = (
        "launchtools/",
        "src/SwarmUI.csproj",
        "src/StableSwarmUI.csproj",
        "Models/Stable-Diffusion/",
    )
    if has("Models/") and any(has(marker) for marker in swarm_markers):
        return "swarmui"
    return None


def resolve_layout(root: Path, requested: LayoutChoice) -> Layout:
    """Turn ``--layout`` into a layout, detecting it from ``root`` for ``auto``.

    ``auto`` on a missing or empty root raises rather than guessing: files placed by a
    wrong guess are invisible to the WebUI and easy to lose.

    Args:
        root: the WebUI install folder.
        requested: ``auto`` or a layout name.

    Returns:
        The layout to use.

    Raises:
        UsageError: ``requested`` is not a layout name, or ``auto`` cannot tell.
    """
    choices = "comfyui|a1111|swarmui|flat"
    if requested != "auto":
        if requested not in LAYOUTS:
            raise UsageError(f"unknown layout {requested!r}; use auto|{choices}")
        return requested
    detected = detect_layout(root)
    if detected is not None:
        return detected
    if not root.is_dir():
        raise UsageError(
            f"{root} does not exist, so its WebUI cannot be detected",
            hint=f"create it, or pass --layout {choices}",
        )
    raise UsageError(
        f"cannot tell which WebUI {root} is; pass --layout {choices}",
        hint="--root must be the WebUI's install folder (the one holding models/ or Models/)",
    )


def _has_exact(root: Path, relative: str) -> bool:
    """Whether ``root/relative`` exists with exactly this case; a trailing ``/`` means dir."""
    current = root
    for part in relative.rstrip("/").split("/"):
        try:
            if part not in {entry.name for entry in current.iterdir()}:
                return False
        except OSError:
            return False
        current = current / part
    return current.is_dir() if relative.endswith("/") else current.is_file()


_MAX_NAME_BYTES = 200
# A longer "extension" is just the tail of a dotted name, not worth keeping whole.
_MAX_SUFFIX_BYTES = 32
_MAX_TAG_CHARS = 64
_WINDOWS_INVALID = re.compile(r'[<>:"|?*]')
_SEPARATORS = re.compile(r"[/\\]")
_DOT_RUNS = re.compile(r"\.{2,}")
_EDGE_DOTS_AND_SPACE = re.compile(r"^[\s.]+|[\s.]+$")
_TRAILING_DOTS_AND_SPACE = re.compile(r"[\s.]+$")
# Unicode bidi controls let "evil\u202egpj.exe" display as "evilexe.jpg".
_BIDI_CONTROLS = frozenset(
    {
        "\u061c",
        "\u200e",
        "\u200f",
        *map(chr, range(0x202A, 0x202F)),
        *map(chr, range(0x2066, 0x206A)),
    }
)
_STRIPPED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in (*"0123456789", "¹", "²", "³")}
)


def safe_filename(
    name: str, *, default: str = "model.safetensors", variant: str | None = None
) -> str:
    """Reduce a file name from the API or ``Content-Disposition`` to a safe base name.

    Keeps the last path component (``/`` or ``\\``), drops control and bidi characters,
    replaces characters Windows forbids with ``_``, collapses dot runs, strips leading and
    trailing dots and spaces, prefixes Windows device names (``CON.safetensors`` ->
    ``_CON.safetensors``) and trims to 200 UTF-8 bytes keeping the extension (well
    under the 255 bytes file systems allow, leaving room for ``.part`` and sidecar
    suffixes). The result never contains a separator and is never ``.``, ``..`` or
    empty; applying it twice changes nothing.

    Args:
        name: the untrusted name.
        default: the name to use when nothing usable is left (cleaned the same way).
        variant: a tag inserted as ``_<variant>`` before the extension; trimming
            shortens the stem, never the tag, so tagged names stay distinct.

    Returns:
        A name safe to join to a folder on any common file system.

    Raises:
        ValueError: neither ``name`` nor ``default`` leaves a usable name.

    >>> safe_filename("../../etc/passwd")
    'passwd'
    >>> safe_filename("CON.safetensors")
    '_CON.safetensors'
    >>> safe_filename("dreamshaper_8.safetensors", variant="full_fp32")
    'dreamshaper_8_full_fp32.safetensors'
    """
    cleaned = _clean(name) or _clean(default)
    if not cleaned:
        raise ValueError(f"default file name {default!r} is not usable")
    tag = _clean(variant)[:_MAX_TAG_CHARS] if variant else ""
    return _truncate(cleaned, tag=f"_{tag}" if tag else "")


def _clean(name: str) -> str:
    components = [part for part in _SEPARATORS.split(name) if part]
    text = components[-1] if components else ""
    text = "".join(
        ch
        for ch in text
        if ch not in _BIDI_CONTROLS and unicodedata.category(ch) not in _STRIPPED_CATEGORIES
    )
    text = _WINDOWS_INVALID.sub("_", text)
    text = _DOT_RUNS.sub(".", text)
    text = _EDGE_DOTS_AND_SPACE.sub("", text)
    if not text:
        return ""
    # Windows ignores everything from the first dot, and trailing spaces, for device names.
    if text.split(".", 1)[0].rstrip().upper() in _WINDOWS_RESERVED:
        text = f"_{text}"
    return _truncate(text)


def _truncate(name: str, *, tag: str = "") -> str:
    """Trim ``name`` to :data:`_MAX_NAME_BYTES`, keeping its extension and ``tag``
    (inserted before the extension) whole."""
    if not tag and len(name.encode()) <= _MAX_NAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    suffix = dot + extension
    if not stem or len(suffix.encode()) > _MAX_SUFFIX_BYTES:
        stem, suffix = name, ""
    suffix = tag + suffix
    budget = _MAX_NAME_BYTES - len(suffix.encode())
    # Cutting bytes may split a character; "ignore" drops the partial one.
    kept = stem.encode()[:budget].decode(errors="ignore")
    return _TRAILING_DOTS_AND_SPACE.sub("", kept) + suffix


def path_inside(folder: Path, name: str, *, default: str = "model.safetensors") -> Path:
    """``folder / safe_filename(name)``, after proving it cannot land outside ``folder``.

    The name itself cannot escape once sanitised; what resolving also catches is a
    symlink already sitting at that name and pointing elsewhere, which a write would
    follow.

    Args:
        folder: the destination folder (need not exist yet).
        name: the untrusted file name.
        default: passed to :func:`safe_filename`.

    Returns:
        A direct child of ``folder``.

    Raises:
        UsageError: the path resolves outside ``folder``.
    """
    candidate = folder / safe_filename(name, default=default)
    base = folder.resolve()
    resolved = candidate.resolve()
    if resolved == base or not resolved.is_relative_to(base):
        raise UsageError(
            f"refusing to write {candidate}: it resolves to {resolved}, outside {base}",
            hint="remove that link or choose another folder",
        )
    return candidate
