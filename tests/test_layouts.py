from __future__ import annotations

import json
import os
import sys
from pathlib import Path, PurePosixPath

import pytest

from civit.errors import UsageError
from civit.layouts import (
    DETECTION_ORDER,
    LAYOUTS,
    ROWS,
    WEBUIS,
    Detection,
    destination,
    detect_layout,
    diffusion_only,
    find_layout_above,
    folder_for,
    prepare_folder,
    read_safetensors_names,
    render_subfolder,
    resolve_layout,
    route,
    safetensors_names,
)
from civit.layouts.a1111 import commandline_args
from civit.layouts.comfyui import parse_extra_model_paths
from civit.layouts.swarmui import parse_settings_paths
from civit.testing import make_safetensors
from civit.testing.catalog import FULL_FLUX_TENSORS, UNET_FLUX_TENSORS

CIVITAI_MODEL_TYPES = (
    "Checkpoint",
    "TextualInversion",
    "Hypernetwork",
    "AestheticGradient",
    "LORA",
    "LoCon",
    "DoRA",
    "Controlnet",
    "Upscaler",
    "MotionModule",
    "VAE",
    "TextEncoder",
    "UNet",
    "CLIPVision",
    "Poses",
    "Wildcards",
    "Workflows",
    "Detection",
    "Other",
)


def make_tree(root: Path, *entries: str) -> Path:
    """Create ``entries`` under ``root``: a trailing ``/`` makes a folder, else a file."""
    for entry in entries:
        path = root / entry
        if entry.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
    return root


def test_every_layout_has_every_row() -> None:
    assert set(ROWS) == set(CIVITAI_MODEL_TYPES)
    assert set(WEBUIS) == set(LAYOUTS)
    for ui in WEBUIS.values():
        assert set(ui.table) == set(ROWS), ui.name
        for folder in ui.table.values():
            path = PurePosixPath(folder)
            assert not path.is_absolute() and ".." not in path.parts


@pytest.mark.parametrize(
    ("layout", "row", "folder"),
    [
        ("a1111", "Checkpoint", "models/Stable-diffusion"),
        ("a1111", "LORA", "models/Lora"),
        ("a1111", "TextualInversion", "embeddings"),
        ("a1111", "VAE", "models/VAE"),
        ("a1111", "UNet", "models/Stable-diffusion"),
        ("a1111", "TextEncoder", "models/text_encoder"),
        ("a1111", "CLIPVision", "extensions/sd-webui-controlnet/annotator/downloads/clip_vision"),
        ("a1111", "Wildcards", "extensions/sd-dynamic-prompts/wildcards"),
        ("a1111", "Detection", "models/adetailer"),
        ("forge", "UNet", "models/Stable-diffusion"),
        ("forge", "CLIPVision", "models/ControlNetPreprocessor/clip_vision"),
        ("sdnext", "Checkpoint", "models/Stable-diffusion"),
        ("sdnext", "UNet", "models/UNET"),
        ("sdnext", "TextEncoder", "models/Text-encoder"),
        ("sdnext", "TextualInversion", "models/embeddings"),
        ("sdnext", "Controlnet", "models/control"),
        ("sdnext", "Detection", "models/yolo"),
        ("sdnext", "Wildcards", "models/wildcards"),
        ("comfyui", "Checkpoint", "models/checkpoints"),
        ("comfyui", "UNet", "models/diffusion_models"),
        ("comfyui", "TextEncoder", "models/text_encoders"),
        ("comfyui", "TextualInversion", "models/embeddings"),
        ("comfyui", "CLIPVision", "models/clip_vision"),
        ("comfyui", "Detection", "models/ultralytics/bbox"),
        ("comfyui", "Wildcards", "custom_nodes/ComfyUI-Impact-Pack/custom_wildcards"),
        ("swarmui", "Checkpoint", "Models/Stable-Diffusion"),
        ("swarmui", "UNet", "Models/diffusion_models"),
        ("swarmui", "TextEncoder", "Models/text_encoders"),
        ("swarmui", "Wildcards", "Data/Wildcards"),
        ("swarmui", "Detection", "Models/yolov8"),
        ("fooocus", "Checkpoint", "models/checkpoints"),
        ("fooocus", "LORA", "models/loras"),
        ("fooocus", "Wildcards", "wildcards"),
        ("stabilitymatrix", "Checkpoint", "Models/StableDiffusion"),
        ("stabilitymatrix", "LoCon", "Models/LyCORIS"),
        ("stabilitymatrix", "UNet", "Models/DiffusionModels"),
        ("stabilitymatrix", "TextEncoder", "Models/TextEncoders"),
        ("stabilitymatrix", "CLIPVision", "Models/ClipVision"),
        ("stabilitymatrix", "Detection", "Models/Ultralytics/bbox"),
        ("flat", "Checkpoint", "."),
    ],
)
def test_routing_tables(layout: str, row: str, folder: str) -> None:
    assert folder_for(layout, model_type=row) == PurePosixPath(folder)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model_type", "file_type", "folder"),
    [
        ("Checkpoint", "Model", "models/checkpoints"),
        ("Checkpoint", "Pruned Model", "models/checkpoints"),
        ("Checkpoint", "VAE", "models/vae"),
        ("Checkpoint", "Text Encoder", "models/text_encoders"),
        ("Checkpoint", "Diffusion Model", "models/diffusion_models"),
        ("Checkpoint", "UNet", "models/diffusion_models"),
        ("Checkpoint", "Vision Encoder", "models/clip_vision"),
        ("Other", "CLIPVision", "models/clip_vision"),
        ("Other", "Upscaler", "models/upscale_models"),
        ("Checkpoint", "ControlNet", "models/controlnet"),
        ("TextualInversion", "Negative", "models/embeddings"),
        ("Checkpoint", "Config", "models/checkpoints"),
        ("LORA", "Training Data", "models/loras"),
        (None, "vae", "models/vae"),
        ("lora", None, "models/loras"),
        ("text_encoder", None, "models/text_encoders"),
        ("UNet", None, "models/diffusion_models"),
        ("SomethingNew", "Model", "models/other"),
        (None, None, "models/other"),
    ],
)
def test_file_type_routes_before_model_type(
    model_type: str | None, file_type: str | None, folder: str
) -> None:
    assert folder_for("comfyui", model_type=model_type, file_type=file_type) == PurePosixPath(
        folder
    )


@pytest.mark.parametrize(
    ("base_model", "file_format", "full", "row", "by_base"),
    [
        ("SDXL 1.0", "SafeTensor", None, "Checkpoint", False),
        ("Illustrious", "SafeTensor", None, "Checkpoint", False),
        ("Pony", "SafeTensor", None, "Checkpoint", False),
        ("SD 1.5", "PickleTensor", None, "Checkpoint", False),
        ("Pony V7", "SafeTensor", None, "UNet", True),
        ("Flux.1 D", "SafeTensor", None, "UNet", True),
        ("Wan Video 14B t2v", "SafeTensor", None, "UNet", True),
        ("Flux.1 D", "SafeTensor", True, "Checkpoint", False),
        ("SDXL 1.0", "SafeTensor", False, "UNet", False),
        ("SDXL 1.0", "GGUF", None, "UNet", False),
        (None, "SafeTensor", None, "Checkpoint", False),
    ],
)
def test_checkpoints_route_by_what_the_file_is(
    base_model: str | None, file_format: str, full: bool | None, row: str, by_base: bool
) -> None:
    chosen = route(
        model_type="Checkpoint",
        file_type="Model",
        file_format=file_format,
        base_model=base_model,
        full_checkpoint=full,
    )
    assert (chosen.row, chosen.model_row, chosen.by_base_model) == (row, "Checkpoint", by_base)
    assert (chosen.reason is None) == (row == "Checkpoint")


def test_a_gguf_text_encoder_stays_a_text_encoder() -> None:
    assert route(model_type="TextEncoder", file_format="GGUF").row == "TextEncoder"
    assert folder_for("forge", model_type="Checkpoint", file_format="GGUF") == PurePosixPath(
        "models/Stable-diffusion"
    )


def test_safetensors_headers_tell_diffusion_only_files(tmp_path: Path) -> None:
    unet = tmp_path / "unet.safetensors"
    unet.write_bytes(make_safetensors(2_000, 1, tensors=UNET_FLUX_TENSORS))
    full = tmp_path / "full.safetensors"
    full.write_bytes(make_safetensors(2_000, 1, tensors=FULL_FLUX_TENSORS))
    names = read_safetensors_names(unet)
    assert names is not None and diffusion_only(names)
    full_names = read_safetensors_names(full)
    assert full_names is not None and not diffusion_only(full_names)
    assert safetensors_names(full.read_bytes()[:20]) is None
    (tmp_path / "x.gguf").write_bytes(b"GGUF" + bytes(100))
    assert read_safetensors_names(tmp_path / "x.gguf") is None
    assert read_safetensors_names(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("entries", "layout", "reason"),
    [
        (
            ("webui.py", "entry_with_update.py", "models/checkpoints/"),
            "fooocus",
            "entry_with_update.py",
        ),
        (("webui.py", "fooocus_version.py"), "fooocus", "fooocus_version.py"),
        (
            ("webui.py", "installer.py", "models/Stable-diffusion/"),
            "sdnext",
            "installer.py beside webui.py",
        ),
        (("webui.py", "modules_forge/", "embeddings/"), "forge", "modules_forge/ beside webui.py"),
        (
            ("webui.py", "models/embeddings/", "modules/"),
            "forge",
            "models/embeddings/ and no embeddings/ beside webui.py",
        ),
        (("webui.py", "models/embeddings/", "embeddings/"), "a1111", "webui.py"),
        (("webui.py", "models/Stable-diffusion/"), "a1111", "webui.py"),
        (
            ("launch.py", "models/Stable-diffusion/"),
            "a1111",
            "launch.py beside models/Stable-diffusion/",
        ),
        (("comfy/", "main.py"), "comfyui", "comfy/ package"),
        (("custom_nodes/", "models/"), "comfyui", "custom_nodes/ folder"),
        (("main.py", "models/checkpoints/"), "comfyui", "main.py beside models/checkpoints/"),
        (
            ("Models/", "Packages/", "settings.json"),
            "stabilitymatrix",
            "Models/ and Packages/ beside settings.json",
        ),
        (("Models/", "launchtools/"), "swarmui", "Models/ and launchtools/"),
        (("Models/", "src/SwarmUI.csproj"), "swarmui", "Models/ and src/SwarmUI.csproj"),
        (("Models/Stable-Diffusion/",), "swarmui", "Models/ and Models/Stable-Diffusion/"),
    ],
)
def test_detect_layout(tmp_path: Path, entries: tuple[str, ...], layout: str, reason: str) -> None:
    found = detect_layout(make_tree(tmp_path, *entries))
    assert found == Detection(layout, tmp_path, reason, WEBUIS[layout].title)  # type: ignore[index]


@pytest.mark.parametrize(
    "entries",
    [
        (),
        ("main.py",),
        ("models/checkpoints/",),
        ("launch.py",),
        ("models/Stable-diffusion/",),
        ("Models/",),
        ("launchtools/",),
        ("webui.py/",),  # a folder named like the script is not the script
        ("Models/", "Packages/"),
    ],
)
def test_detect_nothing(tmp_path: Path, entries: tuple[str, ...]) -> None:
    assert detect_layout(make_tree(tmp_path, *entries)) is None


def test_specific_webuis_come_before_the_generic_a1111_rule() -> None:
    names = [ui.name for ui in DETECTION_ORDER]
    assert names.index("a1111") == len(names) - 1
    assert names[:3] == ["fooocus", "sdnext", "forge"]


def test_comfyui_portable_root_is_its_inner_folder(tmp_path: Path) -> None:
    make_tree(
        tmp_path, "python_embeded/", "ComfyUI/main.py", "ComfyUI/comfy/", "run_nvidia_gpu.bat"
    )
    found = detect_layout(tmp_path)
    assert found is not None and found.layout == "comfyui"
    assert found.root == tmp_path / "ComfyUI"
    assert found.describe() == (
        f"detected ComfyUI at {tmp_path / 'ComfyUI'} "
        "(the Windows portable build: python_embeded/ beside ComfyUI/)"
    )
    explicit = resolve_layout(tmp_path, "comfyui")
    assert explicit.root == tmp_path / "ComfyUI"


@pytest.mark.parametrize(
    ("entries", "layout", "inside", "reason"),
    [
        (
            ("python_embeded/", "Fooocus/entry_with_update.py", "Fooocus/webui.py", "run.bat"),
            "fooocus",
            "Fooocus",
            "the Windows download: python_embeded/ beside Fooocus/",
        ),
        (
            ("StabilityMatrix.exe", "Data/.sm-portable", "Data/settings.json", "Data/Models/",
             "Data/Packages/"),
            "stabilitymatrix",
            "Data",
            "portable mode: Data/ with .sm-portable beside the app",
        ),
    ],
)  # fmt: skip
def test_portable_folders_root_at_the_install_inside(
    tmp_path: Path, entries: tuple[str, ...], layout: str, inside: str, reason: str
) -> None:
    make_tree(tmp_path, *entries)
    found = detect_layout(tmp_path)
    assert found is not None and (found.layout, found.root) == (layout, tmp_path / inside)
    assert found.describe().endswith(f"at {tmp_path / inside} ({reason})")
    explicit = resolve_layout(tmp_path, layout)  # type: ignore[arg-type]
    assert (explicit.root, explicit.reason) == (tmp_path / inside, f"--layout {layout}; {reason}")
    model = make_tree(tmp_path, f"{inside}/models/x.safetensors") / inside / "models/x.safetensors"
    above = find_layout_above(model)
    assert above is not None and above.root == tmp_path / inside


def test_portable_folders_need_their_own_markers(tmp_path: Path) -> None:
    # No python_embeded/: a folder that merely holds a Fooocus checkout is not its install.
    assert detect_layout(make_tree(tmp_path / "a", "Fooocus/entry_with_update.py")) is None
    # Data/ without .sm-portable is not portable mode; .sm-portable in an empty Data/ is
    # a library not yet set up.
    library = ("Data/settings.json", "Data/Models/", "Data/Packages/")
    assert detect_layout(make_tree(tmp_path / "b", *library)) is None
    assert detect_layout(make_tree(tmp_path / "c", "Data/.sm-portable")) is None


def test_resolve_layout_explicit_wins(tmp_path: Path) -> None:
    root = make_tree(tmp_path, "webui.py")
    for layout in LAYOUTS:
        found = resolve_layout(root, layout)
        assert (found.layout, found.root, found.reason) == (layout, root, f"--layout {layout}")
    assert resolve_layout(root, "auto").layout == "a1111"
    assert resolve_layout(tmp_path / "missing", "flat").layout == "flat"


def test_resolve_layout_refuses_to_guess(tmp_path: Path) -> None:
    choices = "|".join(LAYOUTS)
    with pytest.raises(UsageError) as caught:
        resolve_layout(tmp_path, "auto")
    assert str(caught.value).startswith(
        f"cannot tell which WebUI {tmp_path} is; pass --layout {choices}"
    )
    with pytest.raises(UsageError, match="does not exist") as missing:
        resolve_layout(tmp_path / "missing", "auto")
    assert f"--layout {choices}" in str(missing.value)
    with pytest.raises(UsageError, match="unknown layout 'invoke'"):
        resolve_layout(tmp_path, "invoke")  # type: ignore[arg-type]


def test_invokeai_roots_are_refused_with_a_hint(tmp_path: Path) -> None:
    make_tree(tmp_path, "invokeai.yaml", "databases/invokeai.db", "models/")
    for layout in ("auto", "comfyui", "flat"):
        with pytest.raises(UsageError, match="InvokeAI root") as caught:
            resolve_layout(tmp_path, layout)  # type: ignore[arg-type]
        assert caught.value.hint is not None and "--dest" in caught.value.hint
        assert "Model Manager" in caught.value.hint


def test_find_layout_above(tmp_path: Path) -> None:
    make_tree(tmp_path, "python_embeded/", "ComfyUI/main.py", "ComfyUI/comfy/")
    lora = make_tree(tmp_path, "ComfyUI/models/loras/style/a.safetensors") / (
        "ComfyUI/models/loras/style/a.safetensors"
    )
    seen: dict[Path, Detection | None] = {}
    found = find_layout_above(lora, seen=seen)
    assert found is not None and found.layout == "comfyui" and found.root == tmp_path / "ComfyUI"
    assert find_layout_above(tmp_path / "elsewhere" / "x.safetensors") is None


# -- configured folders ---------------------------------------------------------------


def where(root: Path, layout: str, row: str = "LORA") -> tuple[Path, str | None]:
    found = resolve_layout(root, layout)  # type: ignore[arg-type]
    chosen = route(model_type=row)
    place = destination(found, chosen)
    return place.folder, place.type_folder.source


def test_webui_user_sh_folders(tmp_path: Path) -> None:
    make_tree(tmp_path, "webui.py")
    (tmp_path / "webui-user.sh").write_text(
        "#!/bin/bash\n"
        '#export COMMANDLINE_ARGS="--lora-dir /nowhere"\n'
        "export COMMANDLINE_ARGS=\"--xformers --lora-dir '/mnt/my loras' "
        '--ckpt-dir=ckpts --embeddings-dir ~/emb"\n'
    )
    assert where(tmp_path, "a1111") == (Path("/mnt/my loras"), "webui-user.sh --lora-dir")
    assert where(tmp_path, "a1111", "Checkpoint") == (
        tmp_path / "ckpts",
        "webui-user.sh --ckpt-dir",
    )
    assert where(tmp_path, "a1111", "TextualInversion") == (
        Path("~/emb").expanduser(),
        "webui-user.sh --embeddings-dir",
    )
    assert where(tmp_path, "a1111", "VAE") == (tmp_path / "models/VAE", None)


def test_models_dir_and_data_dir_move_the_defaults(tmp_path: Path) -> None:
    make_tree(tmp_path, "webui.py", "modules_forge/")
    (tmp_path / "webui-user.sh").write_text(
        "export COMMANDLINE_ARGS='--data-dir /data --models-dir /srv/models'\n"
    )
    assert where(tmp_path, "forge", "VAE") == (
        Path("/srv/models/VAE"),
        "webui-user.sh --models-dir",
    )
    assert where(tmp_path, "forge", "TextualInversion") == (
        Path("/data/embeddings"),
        "webui-user.sh --data-dir",
    )
    assert where(tmp_path, "forge", "Wildcards")[0] == Path(
        "/data/extensions/sd-dynamic-prompts/wildcards"
    )


def test_forge_classic_reads_embeddings_from_models(tmp_path: Path) -> None:
    make_tree(tmp_path, "webui.py", "modules_forge/", "models/embeddings/")
    assert where(tmp_path, "forge", "TextualInversion") == (tmp_path / "models/embeddings", None)
    (tmp_path / "webui-user.sh").write_text('export COMMANDLINE_ARGS="--model-ref /m"\n')
    assert where(tmp_path, "forge", "LORA") == (Path("/m/Lora"), "webui-user.sh --model-ref")


def test_webui_user_bat_on_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    (tmp_path / "webui-user.bat").write_text(
        "@echo off\r\nset PYTHON=\r\nrem set COMMANDLINE_ARGS=--lora-dir X:/wrong\r\n"
        'set COMMANDLINE_ARGS=--lora-dir "D:/AI/my loras" --medvram\r\ncall webui.bat\r\n'
    )
    assert commandline_args(tmp_path) == (
        ["--lora-dir", "D:/AI/my loras", "--medvram"],
        "webui-user.bat",
        None,
    )


#: Forge's and reForge's own webui-user.bat, with its "reference an existing A1111
#: checkout" block uncommented as it tells users to (the commented copy stays).
FORGE_BAT = r"""@echo off

set PYTHON=
set COMMANDLINE_ARGS=--xformers

@REM Uncomment following code to reference an existing A1111 checkout.
@REM set COMMANDLINE_ARGS=%COMMANDLINE_ARGS% ^
@REM  --ckpt-dir X:\\wrong
set A1111_HOME=D:\\AI\\webui
set "VENV_DIR=%A1111_HOME%\\venv"
set COMMANDLINE_ARGS=%COMMANDLINE_ARGS% ^
 --ckpt-dir %A1111_HOME%\\models\\Stable-diffusion ^
 --embeddings-dir "%~dp0my embeddings" ^
 --lora-dir %A1111_HOME%\\models\\Lora --vae-dir %UNSET_IN_CIVIT_TEST%vae-100%%

call webui.bat
"""


def test_webui_user_bat_continuations_and_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.delenv("UNSET_IN_CIVIT_TEST", raising=False)
    (tmp_path / "webui-user.bat").write_text(FORGE_BAT.replace("\n", "\r\n"))
    assert commandline_args(tmp_path) == (
        [
            "--xformers",
            "--ckpt-dir",
            "D:\\AI\\webui\\models\\Stable-diffusion",
            "--embeddings-dir",
            f"{tmp_path}{os.sep}my embeddings",
            "--lora-dir",
            "D:\\AI\\webui\\models\\Lora",
            "--vae-dir",
            "vae-100%",
        ],
        "webui-user.bat",
        None,
    )
    (tmp_path / "webui-user.bat").write_text('set "COMMANDLINE_ARGS=--lora-dir "E:\\l o""\r\n')
    assert commandline_args(tmp_path)[0] == ["--lora-dir", "E:\\l o"]
    (tmp_path / "webui-user.bat").write_text("@REM set COMMANDLINE_ARGS=--lora-dir x\r\n")
    assert commandline_args(tmp_path) == ([], None, None)


def test_unparsable_commandline_args_are_reported(tmp_path: Path) -> None:
    (tmp_path / "webui-user.sh").write_text('export COMMANDLINE_ARGS="--lora-dir \'x"\n')
    args, _, problem = commandline_args(tmp_path)
    assert args == [] and problem is not None and "cannot parse" in problem


def test_extra_model_paths_default_group(tmp_path: Path) -> None:
    make_tree(tmp_path, "comfy/")
    (tmp_path / "extra_model_paths.yaml").write_text(
        "# ComfyUI's example, A1111 group not default\n"
        "a111:\n"
        "    base_path: path/to/stable-diffusion-webui/\n"
        "    checkpoints: models/Stable-diffusion\n"
        "    loras: |\n"
        "         models/Lora\n"
        "         models/LyCORIS\n"
        "shared:\n"
        "    base_path: ~/shared-models   # my big disk\n"
        "    is_default: true\n"
        "    loras: |\n"
        "        loras-old\n"
        "        loras\n"
        "    unet: 'diffusion models'\n"
        '    clip: "text encoders"\n'
    )
    shared = Path("~/shared-models").expanduser()
    assert where(tmp_path, "comfyui") == (shared / "loras", "extra_model_paths.yaml shared: loras")
    assert where(tmp_path, "comfyui", "UNet") == (
        shared / "diffusion models",
        "extra_model_paths.yaml shared: unet",
    )
    assert where(tmp_path, "comfyui", "TextEncoder")[0] == shared / "text encoders"
    assert where(tmp_path, "comfyui", "Checkpoint") == (tmp_path / "models/checkpoints", None)


def test_extra_model_paths_relative_to_the_file_without_base_path(tmp_path: Path) -> None:
    make_tree(tmp_path, "comfy/")
    (tmp_path / "extra_model_paths.yaml").write_text(
        "mine:\n  is_default: true\n  checkpoints: ../ckpts\n"
    )
    assert where(tmp_path, "comfyui", "Checkpoint")[0] == (tmp_path.parent / "ckpts")


def test_a_broken_yaml_keeps_the_defaults_and_says_so(tmp_path: Path) -> None:
    make_tree(tmp_path, "comfy/")
    (tmp_path / "extra_model_paths.yaml").write_text("loras: [a, b\n  - nonsense")
    found = resolve_layout(tmp_path, "comfyui")
    place = destination(found, route(model_type="LORA"))
    assert place.folder == tmp_path / "models/loras"
    assert any("cannot read" in note and "extra_model_paths.yaml" in note for note in place.notes)


def test_parse_extra_model_paths_subset() -> None:
    text = (
        "---\n"
        "comfyui:\n"
        '    base_path: "C:\\\\AI\\\\models"\n'
        "    is_default: True\n"
        "    checkpoints: >\n"
        "      a\n"
        "      b\n"
        "empty:\n"
    )
    assert parse_extra_model_paths(text) == {
        "comfyui": {"base_path": "C:\\AI\\models", "is_default": True, "checkpoints": "a b\n"},
        "empty": {},
    }
    with pytest.raises(ValueError, match="line 2"):
        parse_extra_model_paths("a:\n  - x\n")


def test_sdnext_config_json(tmp_path: Path) -> None:
    make_tree(tmp_path, "webui.py", "installer.py")
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "models_dir": "/big/models",
                "lora_dir": "loras-here",
                "civitai_save_type_folders": json.dumps({"Checkpoint": "ckpt-by-civitai"}),
            }
        )
    )
    assert where(tmp_path, "sdnext") == (tmp_path / "loras-here", "config.json lora_dir")
    assert where(tmp_path, "sdnext", "VAE") == (Path("/big/models/VAE"), "config.json models_dir")
    assert where(tmp_path, "sdnext", "Checkpoint") == (
        Path("/big/models/ckpt-by-civitai"),
        "config.json civitai_save_type_folders Checkpoint",
    )
    # SD.Next's downloader applies the override before its unet_dir rule.
    assert where(tmp_path, "sdnext", "UNet") == where(tmp_path, "sdnext", "Checkpoint")


def test_swarmui_settings_fds(tmp_path: Path) -> None:
    make_tree(tmp_path, "Models/", "launchtools/")
    (tmp_path / "Data").mkdir()
    (tmp_path / "Data/Settings.fds").write_text(
        "# SwarmUI settings\n"
        "IsInstalled: true\n"
        "Paths:\n"
        "\tModelRoot: E:/first;/srv/swarm-models\n"
        "\tDownloadToRootID: 1\n"
        "\tSDLoraFolder: Lora;LyCORIS\n"
        "\tSDClipFolder: clip\n"
        "\tWildcardsFolder: Cards\n"
        "Backends:\n"
        "\tSDModelFolder: ignored\n"
    )
    root = Path("/srv/swarm-models")
    assert where(tmp_path, "swarmui") == (root / "Lora", "Data/Settings.fds SDLoraFolder")
    assert where(tmp_path, "swarmui", "Checkpoint") == (
        root / "Stable-Diffusion",
        "Data/Settings.fds ModelRoot",
    )
    assert where(tmp_path, "swarmui", "TextEncoder")[0] == root / "clip"
    assert where(tmp_path, "swarmui", "Wildcards")[0] == tmp_path / "Data/Cards"


def test_parse_settings_paths_unescapes() -> None:
    text = "Paths:\n    ModelRoot: C:\\sAI\\smodels\\x\n    SDModelFolder: checkpoints\n"
    assert parse_settings_paths(text) == {
        "ModelRoot": "C:\\AI\\models",
        "SDModelFolder": "checkpoints",
    }


def test_fooocus_config_txt(tmp_path: Path) -> None:
    make_tree(tmp_path, "webui.py", "entry_with_update.py")
    (tmp_path / "config.txt").write_text(
        json.dumps({"path_checkpoints": ["/ssd/ckpt", "/hdd/ckpt"], "path_loras": "/ssd/loras"})
    )
    assert where(tmp_path, "fooocus", "Checkpoint") == (
        Path("/ssd/ckpt"),
        "config.txt path_checkpoints",
    )
    assert where(tmp_path, "fooocus") == (Path("/ssd/loras"), "config.txt path_loras")
    assert where(tmp_path, "fooocus", "VAE") == (tmp_path / "models/vae", None)


def test_stability_matrix_model_directory_override(tmp_path: Path) -> None:
    make_tree(tmp_path, "Models/", "Packages/")
    (tmp_path / "settings.json").write_text(json.dumps({"ModelDirectoryOverride": "/nas/models"}))
    assert where(tmp_path, "stabilitymatrix", "LoCon") == (
        Path("/nas/models/LyCORIS"),
        "settings.json ModelDirectoryOverride",
    )


def test_a_broken_json_config_is_reported(tmp_path: Path) -> None:
    make_tree(tmp_path, "webui.py", "installer.py")
    (tmp_path / "config.json").write_text("{not json")
    found = resolve_layout(tmp_path, "sdnext")
    place = destination(found, route(model_type="LORA"))
    assert place.folder == tmp_path / "models/Lora"
    assert any("cannot read" in note for note in place.notes)


# -- creating folders -----------------------------------------------------------------


def test_a_configured_folder_is_created_only_under_an_existing_parent(tmp_path: Path) -> None:
    make_tree(tmp_path, "webui.py", "disk/")
    script = tmp_path / "webui-user.sh"
    script.write_text(f'export COMMANDLINE_ARGS="--lora-dir {tmp_path}/disk/loras"\n')
    place = destination(resolve_layout(tmp_path, "a1111"), route(model_type="LORA"))
    assert "LoRA folder from webui-user.sh --lora-dir" in place.notes
    prepare_folder(place)
    assert (tmp_path / "disk/loras").is_dir()

    script.write_text(f'export COMMANDLINE_ARGS="--lora-dir {tmp_path}/unmounted/loras"\n')
    place = destination(resolve_layout(tmp_path, "a1111"), route(model_type="LORA"))
    with pytest.raises(UsageError, match=r"from webui-user\.sh --lora-dir") as caught:
        prepare_folder(place)
    assert "neither does" in str(caught.value)
    assert not (tmp_path / "unmounted").exists()


def test_extension_rows_need_the_extension(tmp_path: Path) -> None:
    make_tree(tmp_path, "webui.py")
    place = destination(resolve_layout(tmp_path, "a1111"), route(model_type="Wildcards"))
    with pytest.raises(UsageError, match="sd-dynamic-prompts extension") as caught:
        prepare_folder(place)
    assert caught.value.hint is not None and "--dest" in caught.value.hint
    assert not (tmp_path / "extensions").exists()
    make_tree(tmp_path, "extensions/sd-dynamic-prompts/")
    prepare_folder(place)
    assert (tmp_path / "extensions/sd-dynamic-prompts/wildcards").is_dir()


def test_diffusion_notes_say_why(tmp_path: Path) -> None:
    make_tree(tmp_path, "comfy/")
    found = resolve_layout(tmp_path, "comfyui")
    gguf = destination(found, route(model_type="Checkpoint", file_format="GGUF"))
    assert gguf.folder == tmp_path / "models/diffusion_models"
    assert gguf.notes == (
        "diffusion-model folder instead of the checkpoint one: a GGUF file holds only the "
        "diffusion model",
    )
    forge = make_tree(tmp_path / "forge", "webui.py", "modules_forge/")
    same = destination(
        resolve_layout(forge, "auto"), route(model_type="Checkpoint", file_format="GGUF")
    )
    assert same.notes == ()


@pytest.mark.parametrize(
    ("template", "folder"),
    [
        ("{base_model}", "SDXL 1.0"),
        ("{type}/{creator}", "LORA/a_b"),
        ("{model_name} by {creator}", "Detail_ Tweaker by a_b"),
        ("fixed/{base_model}", "fixed/SDXL 1.0"),
    ],
)
def test_render_subfolder(template: str, folder: str) -> None:
    values = {
        "base_model": "SDXL 1.0",
        "creator": "a/b",
        "model_name": "Detail: Tweaker",
        "type": "LORA",
    }
    assert render_subfolder(template, values) == PurePosixPath(folder)


@pytest.mark.parametrize("template", ["{nope}", "../{type}", "/abs", "{type", "a/../b"])
def test_bad_subfolder_templates(template: str) -> None:
    with pytest.raises(UsageError, match="subfolder template"):
        render_subfolder(template, {})


def test_missing_values_render_as_unknown() -> None:
    assert render_subfolder("{creator}", {"creator": None}) == PurePosixPath("unknown")
