"""ComfyUI: git, portable and desktop installs; ``extra_model_paths.yaml``.

Folder names come from ComfyUI's ``folder_paths.py`` (``Comfy-Org/ComfyUI``), where
each kind of model is a *folder name* with a list of paths; the first path of the
list is where ComfyUI itself (and its model downloader) puts new files.
``extra_model_paths.yaml`` (``utils/extra_config.py``) adds paths to those lists; a
group with ``is_default: true`` puts its paths first, so its folders are where new
downloads belong.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from civit.layouts.base import (
    Detection,
    Folder,
    RootFolders,
    WebUI,
    has_exact,
    read_config_text,
    setting_path,
)

__all__ = ["COMFYUI", "parse_extra_model_paths"]

# Rows without a citation have no reader in ComfyUI or its common nodes: they get a
# clearly named folder of their own, so they neither vanish nor clutter a scanned one.
TABLE: Mapping[str, str] = MappingProxyType(
    {
        # Comfy-Org/ComfyUI folder_paths.py: folder_names_and_paths["checkpoints"]
        "Checkpoint": "models/checkpoints",
        # folder_paths.py: "diffusion_models" = [models/unet, models/diffusion_models]
        # ("unet" is its legacy name, map_legacy); ComfyUI's own docs and model
        # templates place new files in diffusion_models, and city96/ComfyUI-GGUF
        # (nodes.py, "unet_gguf") lists .gguf files from the same paths.
        "UNet": "models/diffusion_models",
        # folder_paths.py: "text_encoders" = [models/text_encoders, models/clip]
        "TextEncoder": "models/text_encoders",
        # folder_paths.py: "vae"
        "VAE": "models/vae",
        # folder_paths.py: "loras" (LyCORIS and DoRA load through the same LoraLoader)
        "LORA": "models/loras",
        "LoCon": "models/loras",
        "DoRA": "models/loras",
        # folder_paths.py: "embeddings"
        "TextualInversion": "models/embeddings",
        # folder_paths.py: "hypernetworks"
        "Hypernetwork": "models/hypernetworks",
        "AestheticGradient": "models/aesthetic_embeddings",
        # folder_paths.py: "controlnet" = [models/controlnet, models/t2i_adapter]
        "Controlnet": "models/controlnet",
        # folder_paths.py: "upscale_models"
        "Upscaler": "models/upscale_models",
        # Kosinkadink/ComfyUI-AnimateDiff-Evolved animatediff/utils_model.py:
        # Folders.ANIMATEDIFF_MODELS, registered at models/animatediff_models
        "MotionModule": "models/animatediff_models",
        # folder_paths.py: "clip_vision"
        "CLIPVision": "models/clip_vision",
        "Poses": "models/poses",
        # ltdrdata/ComfyUI-Impact-Pack modules/impact/config.py: the default
        # "custom_wildcards" folder, read beside the pack's own wildcards/
        "Wildcards": "custom_nodes/ComfyUI-Impact-Pack/custom_wildcards",
        # ComfyUI's frontend saves workflows under <user directory>/default/workflows
        # (folder_paths.py: user_directory = <base>/user)
        "Workflows": "user/default/workflows",
        # ltdrdata/ComfyUI-Impact-Subpack modules/subpack_nodes.py: UltralyticsDetectorProvider
        # lists "ultralytics_bbox", registered at models/ultralytics/bbox
        "Detection": "models/ultralytics/bbox",
        "Other": "models/other",
    }
)

#: Rows that live inside a custom node: it must be installed first (ComfyUI imports
#: every folder under custom_nodes/ as a node package).
EXTENSIONS: Mapping[str, str] = MappingProxyType({"Wildcards": "custom_nodes/ComfyUI-Impact-Pack"})

#: ComfyUI folder names (``folder_paths.py``, with its ``map_legacy`` aliases) -> rows.
FOLDER_NAMES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "checkpoints": ("Checkpoint",),
        "diffusion_models": ("UNet",),
        "unet": ("UNet",),
        "text_encoders": ("TextEncoder",),
        "clip": ("TextEncoder",),
        "vae": ("VAE",),
        "loras": ("LORA", "LoCon", "DoRA"),
        "embeddings": ("TextualInversion",),
        "hypernetworks": ("Hypernetwork",),
        "controlnet": ("Controlnet",),
        "upscale_models": ("Upscaler",),
        "clip_vision": ("CLIPVision",),
        "animatediff_models": ("MotionModule",),
        "ultralytics_bbox": ("Detection",),
    }
)

CONFIG_NAME = "extra_model_paths.yaml"


def detect(root: Path) -> Detection | None:
    """ComfyUI from its ``comfy/`` package, ``custom_nodes/`` or ``main.py`` + models.

    The Windows portable build (``python_embeded/`` beside ``ComfyUI/``) is detected
    from its outer folder; the install root is then the ``ComfyUI/`` inside.
    """
    if has_exact(root, "python_embeded/") and has_exact(root, "ComfyUI/main.py"):
        reason = "the Windows portable build: python_embeded/ beside ComfyUI/"
        return _found(root / "ComfyUI", reason)
    if has_exact(root, "comfy/"):
        return _found(root, "comfy/ package")
    if has_exact(root, "custom_nodes/"):
        return _found(root, "custom_nodes/ folder")
    if has_exact(root, "main.py") and has_exact(root, "models/checkpoints/"):
        return _found(root, "main.py beside models/checkpoints/")
    return None


def _found(root: Path, reason: str) -> Detection:
    return Detection("comfyui", root, reason, "ComfyUI")


def folders(root: Path) -> RootFolders:
    """The table, with the ``is_default`` groups of ``extra_model_paths.yaml`` on top."""
    configured: dict[str, Folder] = {}
    config = root / CONFIG_NAME
    try:
        text = read_config_text(config)
        groups = parse_extra_model_paths(text) if text is not None else {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problem = f"cannot read {config} ({exc}); using the default folders"
        return COMFYUI.root_folders(root, configured, [problem])
    for name, group in groups.items():
        if group.get("is_default") is not True:
            continue
        base = group.get("base_path")
        base_path = setting_path(config.parent, base) if isinstance(base, str) else None
        for key, value in group.items():
            rows = FOLDER_NAMES.get(key)
            if rows is None or not isinstance(value, str):
                continue
            # Each line is inserted first in turn (folder_paths.add_model_folder_path),
            # so the group's last line is the one that ends up in front.
            lines = [line.strip() for line in value.split("\n") if line.strip()]
            if not lines:
                continue
            line = lines[-1]
            path = base_path / line if base_path is not None else setting_path(config.parent, line)
            folder = Folder(Path(os.path.normpath(path)), f"{CONFIG_NAME} {name}: {key}")
            for row in rows:
                configured[row] = folder
    return COMFYUI.root_folders(root, configured)


_KEY = re.compile(r"^(?P<indent>[ ]*)(?P<key>[^\s#:][^:#]*?)\s*:(?:\s+(?P<value>.*?))?\s*$")


def parse_extra_model_paths(text: str) -> dict[str, dict[str, str | bool]]:
    """Read the YAML subset ``extra_model_paths.yaml`` files are written in.

    ComfyUI loads the file with ``yaml.safe_load`` and then only uses a mapping of
    groups, each a mapping of names to strings (one path per line) plus ``base_path``
    and ``is_default``. This reads exactly that: comments, plain and quoted scalars,
    and ``|``/``>`` block scalars (the usual way to give several paths).

    Args:
        text: the file's content.

    Returns:
        ``{group: {key: value}}``; ``true``/``false`` become booleans.

    Raises:
        ValueError: something outside that subset (the message names the line).

    >>> parse_extra_model_paths("a:\\n  base_path: /m\\n  loras: |\\n    x\\n    y\\n")
    {'a': {'base_path': '/m', 'loras': 'x\\ny\\n'}}
    """
    groups: dict[str, dict[str, str | bool]] = {}
    lines = text.replace("\t", "    ").splitlines()
    group: dict[str, str | bool] | None = None
    group_indent: int | None = None
    index = 0
    while index < len(lines):
        raw = lines[index]
        index += 1
        if not raw.strip() or raw.lstrip().startswith("#") or raw.strip() == "---":
            continue
        match = _KEY.match(raw)
        if match is None:
            raise ValueError(f"line {index}: not a 'key: value' line: {raw.strip()!r}")
        indent = len(match["indent"])
        key, value = match["key"].strip(), match["value"]
        if indent == 0:
            if value not in (None, "", "~", "null"):
                raise ValueError(f"line {index}: group {key!r} must hold 'name: path' lines")
            group = groups.setdefault(key, {})
            group_indent = None
            continue
        if group is None:
            raise ValueError(f"line {index}: indented line outside a group")
        if group_indent is None:
            group_indent = indent
        elif indent != group_indent:
            raise ValueError(f"line {index}: unexpected indentation")
        if value is not None and value[:1] in ("|", ">"):
            block, index = _block(lines, index, indent, folded=value.startswith(">"))
            group[key] = block
        else:
            group[key] = _scalar(value or "", index)
    return groups


def _block(lines: list[str], index: int, indent: int, *, folded: bool) -> tuple[str, int]:
    """A block scalar's text (its lines below ``indent``) and the index after it."""
    body: list[str] = []
    while index < len(lines):
        line = lines[index]
        if line.strip() and len(line) - len(line.lstrip(" ")) <= indent:
            break
        body.append(line)
        index += 1
    stripped = [line.strip() for line in body if line.strip()]
    separator = " " if folded else "\n"
    return (separator.join(stripped) + "\n") if stripped else "", index


def _scalar(text: str, line: int) -> str | bool:
    if text[:1] in ("'", '"'):
        quote = text[0]
        end = text.rfind(quote)
        if end == 0:
            raise ValueError(f"line {line}: unterminated quoted value")
        inner = text[1:end]
        if quote == "'":
            return inner.replace("''", "'")
        try:
            decoded = json.loads(f'"{inner}"')
        except ValueError:
            return inner
        return str(decoded)
    plain = re.sub(r"\s+#.*$", "", text).strip()
    lowered = plain.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    return plain


COMFYUI = WebUI(
    name="comfyui",
    title="ComfyUI",
    table=TABLE,
    detect=detect,
    folders=folders,
    extensions=EXTENSIONS,
)
