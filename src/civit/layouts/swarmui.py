"""SwarmUI (mcmonkeyprojects/SwarmUI): its ``Models/`` tree and ``Data/Settings.fds``.

``src/Core/Settings.cs`` (``PathsData``) names the folders: ``ModelRoot`` (several
roots split by ``;``, downloads going to the one ``DownloadToRootID`` picks) and one
setting per model kind, each a ``;`` list whose first entry is where downloads go
(``src/Core/Program.cs``, ``BuildModelLists``). Relative paths are relative to the
install folder, where the launch scripts run SwarmUI.
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
    read_config_text,
    setting_folder,
)

__all__ = ["SWARMUI", "parse_settings_paths"]

# Rows without a citation have no reader in SwarmUI: they get a clearly named folder of
# their own, so they neither vanish nor clutter a folder a loader scans.
TABLE: Mapping[str, str] = MappingProxyType(
    {
        # src/Core/Settings.cs: SDModelFolder = "Stable-Diffusion"
        "Checkpoint": "Models/Stable-Diffusion",
        # src/Core/Program.cs creates ModelRoot/diffusion_models and lists it with the
        # models; WorkflowGeneratorModelSupport.cs refuses GGUF files anywhere else
        "UNet": "Models/diffusion_models",
        # Settings.cs: SDClipFolder = "text_encoders;clip" (downloads: the first)
        "TextEncoder": "Models/text_encoders",
        "VAE": "Models/VAE",  # Settings.cs: SDVAEFolder = "VAE"
        "LORA": "Models/Lora",  # Settings.cs: SDLoraFolder = "Lora"
        "LoCon": "Models/Lora",
        "DoRA": "Models/Lora",
        "TextualInversion": "Models/Embeddings",  # Settings.cs: SDEmbeddingFolder
        # src/BuiltinExtensions/ComfyUIBackend/ComfyUISelfStartBackend.cs: the model
        # paths it hands ComfyUI include <root>/hypernetworks
        "Hypernetwork": "Models/hypernetworks",
        "AestheticGradient": "Models/aesthetic_embeddings",
        # Settings.cs: SDControlNetsFolder = "controlnet;model_patches"
        "Controlnet": "Models/controlnet",
        # Program.cs creates ModelRoot/upscale_models; ComfyUISelfStartBackend.cs lists it
        "Upscaler": "Models/upscale_models",
        "MotionModule": "Models/animatediff_models",
        "CLIPVision": "Models/clip_vision",  # Settings.cs: SDClipVisionFolder
        "Poses": "Models/poses",
        # Settings.cs: DataPath = "Data", WildcardsFolder = "Wildcards" (under Data)
        "Wildcards": "Data/Wildcards",
        "Workflows": "Models/Workflows",
        # ComfyUISelfStartBackend.cs FoldersToForwardInComfyPath: "yolov8", the folder
        # SwarmUI's <segment:yolo-...> detector lists
        "Detection": "Models/yolov8",
        "Other": "Models/other",
    }
)

#: ``Settings.fds`` ``Paths`` keys (Settings.cs) -> rows their first entry sets.
SETTINGS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "SDModelFolder": ("Checkpoint",),
        "SDLoraFolder": ("LORA", "LoCon", "DoRA"),
        "SDVAEFolder": ("VAE",),
        "SDEmbeddingFolder": ("TextualInversion",),
        "SDControlNetsFolder": ("Controlnet",),
        "SDClipFolder": ("TextEncoder",),
        "SDClipVisionFolder": ("CLIPVision",),
    }
)

SETTINGS_FILE = "Data/Settings.fds"


def detect(root: Path) -> Detection | None:
    """SwarmUI from ``Models/`` beside its ``launchtools/`` or C# project."""
    if not has_exact(root, "Models/"):
        return None
    for marker in (
        "launchtools/",
        "src/SwarmUI.csproj",
        "src/StableSwarmUI.csproj",
        "Models/Stable-Diffusion/",
    ):
        if has_exact(root, marker):
            return Detection("swarmui", root, f"Models/ and {marker}", "SwarmUI")
    return None


def parse_settings_paths(text: str) -> dict[str, str]:
    """The ``Paths`` section of a ``Settings.fds`` file, ``{key: value}``.

    FDS (FreneticLLC/FreneticUtilities ``FDSParser.cs``) is indentation-based like
    YAML: ``Key: value`` lines, a section being a key with nothing after the colon
    and deeper-indented lines below; tabs count as four spaces, ``#`` starts a
    comment line, and values escape ``\\`` as ``\\s`` (``FDSUtility.UnEscape``).

    >>> parse_settings_paths("Paths:\\n    ModelRoot: D:/Models\\nOther:\\n    X: 1\\n")
    {'ModelRoot': 'D:/Models'}
    """
    result: dict[str, str] = {}
    inside: int | None = None  # the indentation of the Paths section's keys
    section_indent = 0
    for raw in text.replace("\r\n", "\n").replace("\t", "    ").split("\n"):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        key, colon, value = stripped.partition(":")
        if inside is not None and indent <= section_indent:
            inside = None
        if inside is None:
            if colon and key == "Paths" and not value.strip():
                inside, section_indent = -1, indent
            continue
        if inside == -1:
            inside = indent
        if indent == inside and colon:
            result[key.strip()] = _unescape(value.strip())
    return result


def _unescape(value: str) -> str:
    for escaped, plain in (("\\t", "\t"), ("\\n", "\n"), ("\\r", "\r"), ("\\x", "")):
        value = value.replace(escaped, plain)
    return value.replace("\\s", "\\")


def folders(root: Path) -> RootFolders:
    """The table, moved by ``ModelRoot``/``DataPath`` and overridden by the model folder
    settings of ``Data/Settings.fds``."""
    settings_file = root / SETTINGS_FILE
    try:
        text = read_config_text(settings_file)
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"cannot read {settings_file} ({exc}); using the default folders"
        return SWARMUI.root_folders(root, {}, [problem])
    paths = parse_settings_paths(text) if text is not None else {}
    configured: dict[str, Folder] = {}
    model_root = Folder(root / "Models")
    roots = [entry.strip() for entry in paths.get("ModelRoot", "").split(";") if entry.strip()]
    if roots:
        try:
            chosen = abs(int(paths.get("DownloadToRootID", "0"))) % len(roots)
        except ValueError:
            chosen = 0
        model_root = setting_folder(root, roots[chosen], f"{SETTINGS_FILE} ModelRoot")
        configured.update(SWARMUI.moved_folders("Models/", model_root))
    for key, rows in SETTINGS.items():
        first = next((e.strip() for e in paths.get(key, "").split(";") if e.strip()), None)
        if first is not None:
            folder = setting_folder(model_root.path, first, f"{SETTINGS_FILE} {key}")
            for row in rows:
                configured[row] = folder
    if "DataPath" in paths or "WildcardsFolder" in paths:
        data = setting_folder(root, paths.get("DataPath") or "Data", f"{SETTINGS_FILE} DataPath")
        wildcards = paths.get("WildcardsFolder") or "Wildcards"
        configured["Wildcards"] = setting_folder(
            data.path, wildcards, f"{SETTINGS_FILE} DataPath/WildcardsFolder"
        )
    return SWARMUI.root_folders(root, configured)


SWARMUI = WebUI(
    name="swarmui",
    title="SwarmUI",
    table=TABLE,
    detect=detect,
    folders=folders,
)
