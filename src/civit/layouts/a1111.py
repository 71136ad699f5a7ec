"""AUTOMATIC1111 and the Forge family (Forge, reForge, Forge Classic/Neo); their
``COMMANDLINE_ARGS``.

Both read ``COMMANDLINE_ARGS`` from ``webui-user.sh`` (``webui-user.bat`` on Windows):
``modules/paths_internal.py`` splits it with ``shlex.split`` and parses ``--data-dir``
and ``--models-dir`` first (Forge Classic calls the latter ``--model-ref``), then
``modules/cmd_args.py`` gives every folder option its default from those two. Relative
paths are relative to the install folder, where ``webui.sh`` runs.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
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

__all__ = ["A1111", "FORGE", "commandline_args"]

# Rows without a citation have no reader in these UIs: they get a clearly named
# folder of their own, so they neither vanish nor clutter a folder a loader scans.
TABLE: Mapping[str, str] = MappingProxyType(
    {
        # AUTOMATIC1111/stable-diffusion-webui modules/sd_models.py: model_dir
        # "Stable-diffusion" under models_path; cmd_args.py --ckpt-dir
        "Checkpoint": "models/Stable-diffusion",
        # A1111 has no loader for diffusion-only models; Forge lists them (and .gguf)
        # with the checkpoints (lllyasviel/stable-diffusion-webui-forge
        # modules/sd_models.py, ext_filter [".ckpt", ".safetensors", ".gguf"])
        "UNet": "models/Stable-diffusion",
        # Forge modules_forge/main_entry.py: module paths models/VAE and
        # models/text_encoder; cmd_args.py --text-encoder-dir (A1111: no reader)
        "TextEncoder": "models/text_encoder",
        # modules/sd_vae.py: vae_path = models_path/VAE; cmd_args.py --vae-dir
        "VAE": "models/VAE",
        # extensions-builtin/Lora/preload.py: --lora-dir default models_path/Lora;
        # A1111 1.5+ and Forge load LyCORIS and DoRA from it too
        "LORA": "models/Lora",
        "LoCon": "models/Lora",
        "DoRA": "models/Lora",
        # cmd_args.py: --embeddings-dir default data_path/embeddings (Forge Classic:
        # models_path/embeddings, see _embeddings_folder)
        "TextualInversion": "embeddings",
        # cmd_args.py: --hypernetwork-dir default models_path/hypernetworks
        "Hypernetwork": "models/hypernetworks",
        # AUTOMATIC1111/stable-diffusion-webui-aesthetic-gradients: aesthetic_embeddings/
        "AestheticGradient": "extensions/stable-diffusion-webui-aesthetic-gradients/"
        "aesthetic_embeddings",
        # Forge modules_forge/shared.py: --controlnet-dir default models_path/ControlNet;
        # Forge launch_utils.py (ModelRef) gives the same folder for A1111's
        # sd-webui-controlnet
        "Controlnet": "models/ControlNet",
        # cmd_args.py: --esrgan-models-path default models_path/ESRGAN
        "Upscaler": "models/ESRGAN",
        # continue-revolution/sd-webui-animatediff: animatediff_model_path default
        # extensions/sd-webui-animatediff/model
        "MotionModule": "extensions/sd-webui-animatediff/model",
        # Forge launch_utils.py (ModelRef): A1111's sd-webui-controlnet keeps
        # preprocessor models in extensions/sd-webui-controlnet/annotator/downloads
        "CLIPVision": "extensions/sd-webui-controlnet/annotator/downloads/clip_vision",
        "Poses": "models/Poses",
        # adieyal/sd-dynamic-prompts sd_dynamic_prompts/paths.py: get_wildcard_dir()
        # default <extension>/wildcards
        "Wildcards": "extensions/sd-dynamic-prompts/wildcards",
        "Workflows": "models/Workflows",
        # Bing-su/adetailer: models_path/adetailer
        "Detection": "models/adetailer",
        "Other": "models/Other",
    }
)

FORGE_TABLE: Mapping[str, str] = MappingProxyType(
    {
        **TABLE,
        # Forge extensions-builtin/forge_legacy_preprocessors/annotator/annotator_path.py:
        # clip_vision under modules_forge/shared.py preprocessor_dir
        # (models_path/ControlNetPreprocessor, --controlnet-preprocessor-models-dir)
        "CLIPVision": "models/ControlNetPreprocessor/clip_vision",
    }
)

#: Rows whose folder belongs to an extension, which must be installed first: A1111
#: treats every folder under extensions/ as one, and git refuses to clone into a
#: folder that is not empty.
EXTENSIONS: Mapping[str, str] = MappingProxyType(
    {
        "AestheticGradient": "extensions/stable-diffusion-webui-aesthetic-gradients",
        "MotionModule": "extensions/sd-webui-animatediff",
        "CLIPVision": "extensions/sd-webui-controlnet",
        "Wildcards": "extensions/sd-dynamic-prompts",
    }
)
FORGE_EXTENSIONS: Mapping[str, str] = MappingProxyType(
    {row: folder for row, folder in EXTENSIONS.items() if row != "CLIPVision"}
)

#: Folder options of cmd_args.py (and the Lora/Forge preloads) -> rows they set.
OPTIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "--ckpt-dir": ("Checkpoint", "UNet"),
        "--lora-dir": ("LORA", "LoCon", "DoRA"),
        "--embeddings-dir": ("TextualInversion",),
        "--vae-dir": ("VAE",),
        "--hypernetwork-dir": ("Hypernetwork",),
        "--esrgan-models-path": ("Upscaler",),
        "--text-encoder-dir": ("TextEncoder",),
        "--controlnet-dir": ("Controlnet",),
    }
)
# Forge Classic spells --models-dir as --model-ref (its modules/paths_internal.py).
MODELS_OPTIONS = ("--models-dir", "--model-ref")
PREPROCESSOR_OPTION = "--controlnet-preprocessor-models-dir"

_SH_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?COMMANDLINE_ARGS=(.*)$")
# cmd's two spellings: set NAME=value and set "NAME=value" (up to the last quote).
_BAT_SET = re.compile(
    r'^\s*set\s+(?:"(?P<quoted>[^"=]+=.*)"[^"]*|(?P<plain>[^"/\s][^=]*=.*))$', re.IGNORECASE
)
# %% is a percent sign, %~dp0 the batch file's folder, %NAME% a variable.
_BAT_VARIABLE = re.compile(r"%(?:(?P<percent>%)|(?P<folder>~dp0)|(?P<name>[^%:=\s]+)%)")
_BAT_COMMENTS = ("rem ", "@rem", "::")


def _a1111_markers(root: Path) -> str | None:
    if has_exact(root, "webui.py"):
        return "webui.py"
    if has_exact(root, "models/Stable-diffusion/"):
        for marker in ("launch.py", "modules/"):
            if has_exact(root, marker):
                return f"{marker} beside models/Stable-diffusion/"
    return None


def detect_a1111(root: Path) -> Detection | None:
    """AUTOMATIC1111 from ``webui.py``, or ``launch.py``/``modules/`` beside its models."""
    reason = _a1111_markers(root)
    return Detection("a1111", root, reason, "AUTOMATIC1111") if reason else None


def detect_forge(root: Path) -> Detection | None:
    """Forge, reForge, Forge Classic/Neo: A1111's files plus ``modules_forge/``, or
    ``models/embeddings/`` where A1111 has a root ``embeddings/``."""
    base = _a1111_markers(root)
    if base is None:
        return None
    if has_exact(root, "modules_forge/"):
        return Detection("forge", root, f"modules_forge/ beside {base}", "Forge")
    if has_exact(root, "models/embeddings/") and not has_exact(root, "embeddings/"):
        reason = f"models/embeddings/ and no embeddings/ beside {base}"
        return Detection("forge", root, reason, "Forge")
    return None


def commandline_args(root: Path) -> tuple[list[str], str | None, str | None]:
    """The arguments ``COMMANDLINE_ARGS`` gives this install.

    Reads ``webui-user.bat`` on Windows, else ``webui-user.sh``, the way the launch
    scripts set the variable (the last assignment wins; in a ``.bat``, ``^``
    continuations and ``%NAME%`` are expanded, see :func:`_bat_value`), then splits the
    value with ``shlex.split`` as ``modules/paths_internal.py`` does (so, as in A1111, a
    Windows path needs quotes or doubled backslashes).

    Args:
        root: the install folder.

    Returns:
        ``(arguments, file name, problem)``: the file is ``None`` when it sets nothing;
        ``problem`` says why a file that exists could not be used.
    """
    name = "webui-user.bat" if sys.platform == "win32" else "webui-user.sh"
    try:
        text = read_config_text(root / name)
    except (OSError, UnicodeDecodeError) as exc:
        return [], None, f"cannot read {root / name} ({exc}); using the default folders"
    if text is None:
        return [], None, None
    value = _bat_value(text, root) if name.endswith(".bat") else _sh_value(text)
    if value is None:
        return [], None, None
    try:
        if name.endswith(".sh"):
            # The shell removes the assignment's own quoting first.
            value = " ".join(shlex.split(value, comments=True))
        return shlex.split(value), name, None
    except ValueError as exc:
        return [], None, f"cannot parse COMMANDLINE_ARGS in {root / name} ({exc})"


def _sh_value(text: str) -> str | None:
    """The last ``COMMANDLINE_ARGS=`` value of a ``webui-user.sh``, still quoted."""
    value: str | None = None
    for line in text.splitlines():
        if not line.lstrip().startswith("#") and (match := _SH_ASSIGNMENT.match(line)):
            value = match[1]
    return value


def _bat_value(text: str, root: Path) -> str | None:
    """``COMMANDLINE_ARGS`` as cmd leaves it after the ``set`` lines of a
    ``webui-user.bat``.

    Forge's and reForge's own ``webui-user.bat`` show the form to follow:
    ``set COMMANDLINE_ARGS=%COMMANDLINE_ARGS% ^`` continued on the next lines, with
    ``%A1111_HOME%`` set above. So lines ending in ``^`` are joined, and ``%NAME%`` is
    what an earlier ``set`` gave it, else the environment's, else empty (a batch file's
    rule for unset variables); ``%~dp0`` is the install folder.

    Returns:
        The value, or ``None`` when no line sets it.
    """
    variables: dict[str, str] = {}
    assigned = False
    for line in _joined_bat_lines(text):
        if line.strip().lower().startswith(_BAT_COMMENTS):
            continue
        match = _BAT_SET.match(line)
        if match is None:
            continue
        name, _, value = (match["quoted"] or match["plain"]).partition("=")
        key = name.strip().upper()
        variables[key] = _expand_bat(value, variables, root)
        assigned = assigned or key == "COMMANDLINE_ARGS"
    return variables["COMMANDLINE_ARGS"] if assigned else None


def _joined_bat_lines(text: str) -> list[str]:
    """Lines with cmd's ``^`` line continuations joined."""
    lines: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.endswith("^"):
            pending += line[:-1]
            continue
        lines.append(pending + line)
        pending = ""
    return [*lines, pending] if pending else lines


def _expand_bat(value: str, variables: Mapping[str, str], root: Path) -> str:
    def expand(match: re.Match[str]) -> str:
        if match["percent"]:
            return "%"
        if match["folder"]:
            return f"{root}{os.sep}"
        name = match["name"]
        return variables.get(name.upper(), os.environ.get(name, ""))

    return _BAT_VARIABLE.sub(expand, value)


def _option_values(args: Sequence[str]) -> dict[str, str]:
    """``--name value`` and ``--name=value`` pairs; the last one wins, as in argparse."""
    values: dict[str, str] = {}
    for index, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        name, equals, value = arg.partition("=")
        if equals:
            values[name] = value
        elif index + 1 < len(args) and not args[index + 1].startswith("--"):
            values[name] = args[index + 1]
    return values


def _folders(root: Path, webui: WebUI) -> RootFolders:
    args, source_file, problem = commandline_args(root)
    options = _option_values(args)

    def source(option: str) -> str:
        return f"{source_file} {option}"

    data = (
        setting_folder(root, options["--data-dir"], source("--data-dir"))
        if ("--data-dir" in options)
        else Folder(root)
    )
    models = next(
        (
            setting_folder(root, options[option], source(option))
            for option in MODELS_OPTIONS
            if option in options
        ),
        Folder(data.path / "models", data.source),
    )
    result = {
        row: Folder(data.path / relative, data.source) for row, relative in webui.table.items()
    }
    result.update(webui.moved_folders("models/", models))
    result["TextualInversion"] = _embeddings_folder(data, models)
    if webui is FORGE and PREPROCESSOR_OPTION in options:
        value = options[PREPROCESSOR_OPTION]
        preprocessors = setting_folder(root, value, source(PREPROCESSOR_OPTION))
        result["CLIPVision"] = Folder(preprocessors.path / "clip_vision", preprocessors.source)
    extensions = {row: data.path / folder for row, folder in webui.extensions.items()}
    for option, rows in OPTIONS.items():
        if option in options:
            for row in rows:
                result[row] = setting_folder(root, options[option], source(option))
                extensions.pop(row, None)
    return RootFolders(result, (problem,) if problem else (), extensions)


def _embeddings_folder(data: Folder, models: Folder) -> Folder:
    """A1111, Forge and reForge read ``<data>/embeddings``; Forge Classic/Neo read
    ``<models>/embeddings`` (Haoming02/sd-webui-forge-classic modules/cmd_args.py).
    Whichever of the two exists tells them apart."""
    in_models = models.path / "embeddings"
    if in_models.is_dir() and not (data.path / "embeddings").is_dir():
        return Folder(in_models, models.source)
    return Folder(data.path / "embeddings", data.source)


def folders_a1111(root: Path) -> RootFolders:
    """A1111's folders for ``root``: the table, moved by ``--data-dir``/``--models-dir``
    and overridden by the folder options in ``COMMANDLINE_ARGS``."""
    return _folders(root, A1111)


def folders_forge(root: Path) -> RootFolders:
    """Forge's folders for ``root`` (as :func:`folders_a1111`, with Forge's options)."""
    return _folders(root, FORGE)


A1111 = WebUI(
    name="a1111",
    title="AUTOMATIC1111",
    table=TABLE,
    detect=detect_a1111,
    folders=folders_a1111,
    card="a1111",
    extensions=EXTENSIONS,
)

FORGE = WebUI(
    name="forge",
    title="Forge",
    table=FORGE_TABLE,
    detect=detect_forge,
    folders=folders_forge,
    card="a1111",
    # lllyasviel/stable-diffusion-webui-forge extensions-builtin/sd_forge_lora/network.py:
    # SdVersion has Flux besides SD1, SD2 and SDXL
    flux_cards=True,
    extensions=FORGE_EXTENSIONS,
)
