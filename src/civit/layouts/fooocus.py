"""Fooocus (lllyasviel/Fooocus): its ``models/`` folders and ``config.txt``.

``modules/config.py`` reads ``config.txt`` (JSON) from the install folder and takes
each ``path_*`` key, a folder or a list of folders (``path_checkpoints``,
``path_loras``), falling back to ``../models/<kind>/`` beside ``modules/``. Fooocus
writes the file with absolute paths on its first run; relative ones are relative to
the install folder, where it runs.

The Windows download unpacks to a folder holding ``python_embeded/`` beside
``Fooocus/``; the install is the ``Fooocus/`` inside, as for ComfyUI's portable build.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from civit.layouts.base import (
    Detection,
    Folder,
    RootFolders,
    WebUI,
    has_exact,
    read_json_config,
    setting_folder,
)

__all__ = ["FOOOCUS"]

# Fooocus runs SDXL checkpoints only; rows without a citation have no reader in it and
# get a clearly named folder of their own.
TABLE: Mapping[str, str] = MappingProxyType(
    {
        # modules/config.py: paths_checkpoints default ['../models/checkpoints/']
        "Checkpoint": "models/checkpoints",
        # Fooocus loads full checkpoints only: UNet-only files stay beside them
        "UNet": "models/checkpoints",
        "TextEncoder": "models/text_encoders",
        "VAE": "models/vae",  # config.py: path_vae '../models/vae/'
        "LORA": "models/loras",  # config.py: paths_loras ['../models/loras/']
        "LoCon": "models/loras",
        "DoRA": "models/loras",
        "TextualInversion": "models/embeddings",  # config.py: path_embeddings
        "Hypernetwork": "models/hypernetworks",
        "AestheticGradient": "models/aesthetic_embeddings",
        "Controlnet": "models/controlnet",  # config.py: path_controlnet
        "Upscaler": "models/upscale_models",  # config.py: path_upscale_models
        "MotionModule": "models/motion_modules",
        "CLIPVision": "models/clip_vision",  # config.py: path_clip_vision
        "Poses": "models/poses",
        "Wildcards": "wildcards",  # config.py: path_wildcards '../wildcards/'
        "Workflows": "models/workflows",
        "Detection": "models/detection",
        "Other": "models/other",
    }
)

#: config.txt keys (modules/config.py) -> rows; list values use their first folder.
SETTINGS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "path_checkpoints": ("Checkpoint", "UNet"),
        "path_loras": ("LORA", "LoCon", "DoRA"),
        "path_embeddings": ("TextualInversion",),
        "path_vae": ("VAE",),
        "path_upscale_models": ("Upscaler",),
        "path_controlnet": ("Controlnet",),
        "path_clip_vision": ("CLIPVision",),
        "path_wildcards": ("Wildcards",),
    }
)


def detect(root: Path) -> Detection | None:
    """Fooocus ships ``webui.py`` like A1111, but also these two files.

    The Windows download (``python_embeded/`` beside ``Fooocus/``) is detected from its
    outer folder; the install root is then the ``Fooocus/`` inside.
    """
    # lllyasviel/Fooocus readme.md, "Download > Windows": unpack the 7z and run run.bat,
    # which ("Windows (AMD GPUs)") runs .\python_embeded\python.exe -s
    # Fooocus\entry_with_update.py; models go to "Fooocus\models\checkpoints".
    if has_exact(root, "python_embeded/") and has_exact(root, "Fooocus/entry_with_update.py"):
        reason = "the Windows download: python_embeded/ beside Fooocus/"
        return Detection("fooocus", root / "Fooocus", reason, "Fooocus")
    for marker in ("fooocus_version.py", "entry_with_update.py"):
        if has_exact(root, marker):
            return Detection("fooocus", root, marker, "Fooocus")
    return None


def folders(root: Path) -> RootFolders:
    """The table with the ``path_*`` folders of ``config.txt`` on top."""
    problems: list[str] = []
    config = read_json_config(root / "config.txt", problems)
    configured: dict[str, Folder] = {}
    for key, rows in SETTINGS.items():
        value = config.get(key)
        first = value[0] if isinstance(value, list) and value else value
        if isinstance(first, str) and first.strip():
            for row in rows:
                configured[row] = setting_folder(root, first, f"config.txt {key}")
    return FOOOCUS.root_folders(root, configured, problems)


FOOOCUS = WebUI(
    name="fooocus",
    title="Fooocus",
    table=TABLE,
    detect=detect,
    folders=folders,
)
