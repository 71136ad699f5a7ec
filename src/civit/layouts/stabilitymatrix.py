"""Stability Matrix (LykosAI/StabilityMatrix): its shared model library.

A Stability Matrix data folder holds ``settings.json``, ``Packages/`` (the WebUIs it
installed, linked to the shared folders) and ``Models/``, with one folder per
``SharedFolderType`` (``StabilityMatrix.Core/Models/SharedFolderType.cs``), named as
the enum member (``SharedFolders.SetupSharedModelFolders``). ``settings.json`` may move
``Models/`` elsewhere (``ModelDirectoryOverride``, ``Services/SettingsManager.cs``).
In portable mode the data folder is the ``Data/`` beside the app, which is detected
from the app's folder.
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

__all__ = ["STABILITYMATRIX"]

# The Civitai types Stability Matrix itself routes (Models/Api/CivitModelType.cs,
# ConvertTo<SharedFolderType>) are cited as "CivitModelType"; the other rows use the
# SharedFolderType for that kind of model; rows with neither have no reader and get a
# folder of their own, named after the Civitai type.
TABLE: Mapping[str, str] = MappingProxyType(
    {
        "Checkpoint": "Models/StableDiffusion",  # CivitModelType: StableDiffusion
        # SharedFolderType.DiffusionModels "Diffusion Models (UNet-only)"
        "UNet": "Models/DiffusionModels",
        "TextEncoder": "Models/TextEncoders",  # SharedFolderType.TextEncoders
        "VAE": "Models/VAE",  # CivitModelType: VAE
        "LORA": "Models/Lora",  # CivitModelType: Lora
        "LoCon": "Models/LyCORIS",  # CivitModelType: LyCORIS
        "DoRA": "Models/Lora",  # CivitModelType: Lora
        "TextualInversion": "Models/Embeddings",  # CivitModelType: Embeddings
        "Hypernetwork": "Models/Hypernetwork",  # CivitModelType: Hypernetwork
        "AestheticGradient": "Models/AestheticGradient",
        "Controlnet": "Models/ControlNet",  # CivitModelType: ControlNet
        "Upscaler": "Models/ESRGAN",  # CivitModelType: ESRGAN
        "MotionModule": "Models/MotionModule",
        "CLIPVision": "Models/ClipVision",  # SharedFolderType.ClipVision
        "Poses": "Models/Poses",
        "Wildcards": "Models/Wildcards",
        "Workflows": "Models/Workflows",
        # SharedFolderType.Ultralytics, created with bbox/ and segm/ inside
        "Detection": "Models/Ultralytics/bbox",
        "Other": "Models/Other",
    }
)


def detect(root: Path) -> Detection | None:
    """A Stability Matrix data folder: ``Models/``, ``Packages/`` and ``settings.json``.

    The folder of a portable app (``Data/`` beside ``StabilityMatrix.exe``) is
    detected too; the root is then its ``Data/``.
    """
    # Services/SettingsManager.cs: TryFindLibrary checks portable mode first, a
    # Data/.sm-portable file in the app's folder, and then uses that Data/ as the
    # library; SetPortableMode creates both.
    if has_exact(root, "Data/.sm-portable") and _is_data_folder(root / "Data"):
        reason = "portable mode: Data/ with .sm-portable beside the app"
        return Detection("stabilitymatrix", root / "Data", reason, "Stability Matrix")
    if _is_data_folder(root):
        reason = "Models/ and Packages/ beside settings.json"
        return Detection("stabilitymatrix", root, reason, "Stability Matrix")
    return None


def _is_data_folder(folder: Path) -> bool:
    return all(has_exact(folder, marker) for marker in ("Models/", "Packages/", "settings.json"))


def folders(root: Path) -> RootFolders:
    """The table, moved by ``ModelDirectoryOverride`` in ``settings.json``."""
    problems: list[str] = []
    settings = read_json_config(root / "settings.json", problems)
    override = settings.get("ModelDirectoryOverride")
    configured: dict[str, Folder] = {}
    if isinstance(override, str) and override.strip():
        models = setting_folder(root, override, "settings.json ModelDirectoryOverride")
        configured = STABILITYMATRIX.moved_folders("Models/", models)
    return STABILITYMATRIX.root_folders(root, configured, problems)


STABILITYMATRIX = WebUI(
    name="stabilitymatrix",
    title="Stability Matrix",
    table=TABLE,
    detect=detect,
    folders=folders,
    card="stabilitymatrix",
)
