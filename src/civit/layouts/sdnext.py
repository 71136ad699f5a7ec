"""SD.Next (vladmandic/sdnext): its folders and ``config.json``.

SD.Next's own Civitai downloader decides folders in ``modules/civitai/filemanage_civitai.py``
(``TYPE_MAP``, ``get_type_folder``): a per-type override from the
``civitai_save_type_folders`` setting, else the folder setting of that type
(``modules/ui_definitions.py``: ``ckpt_dir``, ``lora_dir``...), else a folder under
``models_dir``. Settings live in ``config.json`` in the install folder
(``modules/paths.py``); relative paths are relative to that folder.
"""

from __future__ import annotations

import json
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

__all__ = ["SDNEXT"]

# vladmandic/sdnext modules/civitai/filemanage_civitai.py TYPE_MAP (setting, fallback
# folder under models_dir); types it does not list fall back to ckpt_dir, as there.
TABLE: Mapping[str, str] = MappingProxyType(
    {
        "Checkpoint": "models/Stable-diffusion",  # TYPE_MAP: ckpt_dir
        # get_type_folder: a Checkpoint whose base is not a full SD1/SD2/SDXL family
        # checkpoint goes to unet_dir, and ui_definitions.py: unet_dir = models/UNET
        "UNet": "models/UNET",
        "TextEncoder": "models/Text-encoder",  # TYPE_MAP "Text Encoder": te_dir
        "VAE": "models/VAE",  # TYPE_MAP: vae_dir
        "LORA": "models/Lora",  # TYPE_MAP: lora_dir
        "LoCon": "models/Lora",  # TYPE_MAP: lora_dir
        "DoRA": "models/Lora",  # TYPE_MAP: lora_dir
        "TextualInversion": "models/embeddings",  # TYPE_MAP: embeddings_dir
        "Hypernetwork": "models/hypernetworks",  # TYPE_MAP: hypernetwork_dir
        "AestheticGradient": "models/Stable-diffusion",  # TYPE_MAP: ckpt_dir
        "Controlnet": "models/control",  # TYPE_MAP: control_dir
        "Upscaler": "models/ESRGAN",  # TYPE_MAP: esrgan_models_path
        "MotionModule": "models/motion",  # TYPE_MAP: (no setting) "motion"
        "CLIPVision": "models/Stable-diffusion",  # not in TYPE_MAP: ckpt_dir fallback
        "Poses": "models/Stable-diffusion",  # TYPE_MAP: ckpt_dir
        "Wildcards": "models/wildcards",  # TYPE_MAP: wildcards_dir
        "Workflows": "models/workflows",  # TYPE_MAP: (no setting) "workflows"
        "Detection": "models/yolo",  # ui_definitions.py: yolo_dir = models/yolo
        "Other": "models/Stable-diffusion",  # TYPE_MAP: ckpt_dir
    }
)

#: ``config.json`` folder settings (modules/ui_definitions.py) -> rows they set.
SETTINGS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "ckpt_dir": ("Checkpoint", "AestheticGradient", "CLIPVision", "Poses", "Other"),
        "unet_dir": ("UNet",),
        "te_dir": ("TextEncoder",),
        "vae_dir": ("VAE",),
        "lora_dir": ("LORA", "LoCon", "DoRA"),
        "embeddings_dir": ("TextualInversion",),
        "hypernetwork_dir": ("Hypernetwork",),
        "control_dir": ("Controlnet",),
        "esrgan_models_path": ("Upscaler",),
        "wildcards_dir": ("Wildcards",),
        "yolo_dir": ("Detection",),
    }
)

# Civitai type names civitai_save_type_folders is keyed by -> rows. get_type_folder
# looks the override up before it sends non-SD checkpoints to unet_dir, so a
# "Checkpoint" override takes diffusion-only checkpoints too.
_TYPE_FOLDER_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        **{row: (row,) for row in TABLE if row not in ("UNet", "TextEncoder")},
        "Checkpoint": ("Checkpoint", "UNet"),
        "Text Encoder": ("TextEncoder",),
    }
)


def detect(root: Path) -> Detection | None:
    """SD.Next ships ``installer.py`` beside ``webui.py`` (A1111 has no installer.py)."""
    if has_exact(root, "installer.py") and has_exact(root, "webui.py"):
        return Detection("sdnext", root, "installer.py beside webui.py", "SD.Next")
    return None


def folders(root: Path) -> RootFolders:
    """The table moved by ``models_dir`` and overridden by the folder settings and
    ``civitai_save_type_folders`` of ``config.json``."""
    problems: list[str] = []
    config = read_json_config(root / "config.json", problems)
    configured: dict[str, Folder] = {}
    models = root / "models"
    models_value = config.get("models_dir")
    if isinstance(models_value, str) and models_value.strip():
        moved = setting_folder(root, models_value, "config.json models_dir")
        models = moved.path
        configured.update(SDNEXT.moved_folders("models/", moved))
    for key, rows in SETTINGS.items():
        value = config.get(key)
        if isinstance(value, str) and value.strip():
            for row in rows:
                configured[row] = setting_folder(root, value, f"config.json {key}")
    custom = config.get("civitai_save_type_folders")
    if isinstance(custom, str) and custom.strip():
        try:
            overrides = json.loads(custom)
        except ValueError as exc:
            problems.append(f"config.json civitai_save_type_folders is not JSON ({exc})")
            overrides = {}
        for key, value in overrides.items() if isinstance(overrides, dict) else ():
            if isinstance(value, str) and value.strip():
                source = f"config.json civitai_save_type_folders {key}"
                for row in _TYPE_FOLDER_KEYS.get(key, ()):
                    configured[row] = setting_folder(models, value, source)
    return SDNEXT.root_folders(root, configured, problems)


SDNEXT = WebUI(
    name="sdnext",
    title="SD.Next",
    table=TABLE,
    detect=detect,
    folders=folders,
    card="sdnext",
)
