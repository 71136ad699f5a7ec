from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civit.errors import UsageError
from civit.layout import (
    LAYOUTS,
    MODEL_TYPE_FOLDERS,
    detect_layout,
    folder_for,
    path_inside,
    resolve_layout,
    safe_filename,
    target_dir,
)

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


def test_every_civitai_model_type_has_a_row() -> None:
    assert set(MODEL_TYPE_FOLDERS) == set(CIVITAI_MODEL_TYPES)
    for folders in MODEL_TYPE_FOLDERS.values():
        for layout in ("a1111", "comfyui", "swarmui"):
            path = PurePosixPath(getattr(folders, layout))
            assert not path.is_absolute()
            assert ".." not in path.parts


@pytest.mark.parametrize(
    ("layout", "model_type", "folder"),
    [
        ("a1111", "Checkpoint", "models/Stable-diffusion"),
        ("a1111", "LORA", "models/Lora"),
        ("a1111", "LoCon", "models/Lora"),
        ("a1111", "DoRA", "models/Lora"),
        ("a1111", "TextualInversion", "embeddings"),
        ("a1111", "Hypernetwork", "models/hypernetworks"),
        ("a1111", "VAE", "models/VAE"),
        ("a1111", "Controlnet", "models/ControlNet"),
        ("a1111", "Upscaler", "models/ESRGAN"),
        ("a1111", "TextEncoder", "models/text_encoder"),
        ("a1111", "UNet", "models/Stable-diffusion"),
        ("a1111", "MotionModule", "extensions/sd-webui-animatediff/model"),
        ("a1111", "Detection", "models/adetailer"),
        ("a1111", "Wildcards", "extensions/sd-dynamic-prompts/wildcards"),
        ("comfyui", "Checkpoint", "models/checkpoints"),
        ("comfyui", "LORA", "models/loras"),
        ("comfyui", "TextualInversion", "models/embeddings"),
        ("comfyui", "Hypernetwork", "models/hypernetworks"),
        ("comfyui", "VAE", "models/vae"),
        ("comfyui", "Controlnet", "models/controlnet"),
        ("comfyui", "Upscaler", "models/upscale_models"),
        ("comfyui", "TextEncoder", "models/text_encoders"),
        ("comfyui", "UNet", "models/diffusion_models"),
        ("comfyui", "CLIPVision", "models/clip_vision"),
        ("comfyui", "MotionModule", "models/animatediff_models"),
        ("comfyui", "Detection", "models/ultralytics/bbox"),
        ("comfyui", "Workflows", "user/default/workflows"),
        ("swarmui", "Checkpoint", "Models/Stable-Diffusion"),
        ("swarmui", "LORA", "Models/Lora"),
        ("swarmui", "TextualInversion", "Models/Embeddings"),
        ("swarmui", "VAE", "Models/VAE"),
        ("swarmui", "Controlnet", "Models/controlnet"),
        ("swarmui", "Upscaler", "Models/upscale_models"),
        ("swarmui", "TextEncoder", "Models/clip"),
        ("swarmui", "UNet", "Models/diffusion_models"),
        ("swarmui", "CLIPVision", "Models/clip_vision"),
        ("swarmui", "Wildcards", "Data/Wildcards"),
        ("swarmui", "Detection", "Models/yolov8"),
    ],
)
def test_model_type_folders(layout: str, model_type: str, folder: str) -> None:
    assert folder_for(layout, model_type=model_type) == PurePosixPath(folder)  # type: ignore[arg-type]


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
        ("LORA", "Archive", "models/loras"),
        (None, "vae", "models/vae"),
        ("lora", None, "models/loras"),
        ("text_encoder", None, "models/text_encoders"),
        ("Text Encoder", None, "models/text_encoders"),
        ("controlnet", "model", "models/controlnet"),
        ("SomethingNew", "Model", "models/other"),
        (None, None, "models/other"),
        ("", "", "models/other"),
    ],
)
def test_file_type_routes_before_model_type(
    model_type: str | None, file_type: str | None, folder: str
) -> None:
    assert folder_for("comfyui", model_type=model_type, file_type=file_type) == PurePosixPath(
        folder
    )


def test_flat_puts_everything_in_the_root(tmp_path: Path) -> None:
    for model_type in CIVITAI_MODEL_TYPES:
        assert folder_for("flat", model_type=model_type, file_type="VAE") == PurePosixPath(".")
        assert target_dir(tmp_path, "flat", model_type=model_type) == tmp_path


def test_target_dir_joins_the_root(tmp_path: Path) -> None:
    assert target_dir(tmp_path, "a1111", model_type="LORA", file_type="Model") == (
        tmp_path / "models" / "Lora"
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


@pytest.mark.parametrize(
    ("entries", "layout"),
    [
        (("comfy/", "main.py", "models/checkpoints/"), "comfyui"),
        (("comfy/",), "comfyui"),
        (("custom_nodes/",), "comfyui"),
        (("main.py", "models/checkpoints/"), "comfyui"),
        (("webui.py", "models/Stable-diffusion/"), "a1111"),
        (("webui.py",), "a1111"),
        (("launch.py", "models/Stable-diffusion/"), "a1111"),
        (("modules/", "models/Stable-diffusion/"), "a1111"),
        (("Models/", "launchtools/"), "swarmui"),
        (("Models/", "src/SwarmUI.csproj"), "swarmui"),
        (("Models/Stable-Diffusion/",), "swarmui"),
        ((), None),
        (("main.py",), None),
        (("models/checkpoints/",), None),
        (("launch.py",), None),
        (("models/Stable-diffusion/",), None),
        (("Models/",), None),
        (("launchtools/",), None),
        (("webui.py/",), None),  # a folder named like the script is not the script
    ],
)
def test_detect_layout(tmp_path: Path, entries: tuple[str, ...], layout: str | None) -> None:
    assert detect_layout(make_tree(tmp_path, *entries)) == layout


def test_detect_layout_of_a_missing_folder(tmp_path: Path) -> None:
    assert detect_layout(tmp_path / "nope") is None
    assert detect_layout(make_tree(tmp_path, "file")) is None
    assert detect_layout(tmp_path / "file") is None


def test_resolve_layout_explicit_wins(tmp_path: Path) -> None:
    root = make_tree(tmp_path, "webui.py")
    for layout in LAYOUTS:
        assert resolve_layout(root, layout) == layout
    assert resolve_layout(root, "auto") == "a1111"
    assert resolve_layout(tmp_path / "missing", "flat") == "flat"


def test_resolve_layout_refuses_to_guess(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        resolve_layout(tmp_path, "auto")
    assert str(caught.value).startswith(
        f"cannot tell which WebUI {tmp_path} is; pass --layout comfyui|a1111|swarmui|flat"
    )
    with pytest.raises(UsageError, match="does not exist") as missing:
        resolve_layout(tmp_path / "missing", "auto")
    assert "--layout comfyui|a1111|swarmui|flat" in str(missing.value)
    with pytest.raises(UsageError, match="unknown layout 'invoke'"):
        resolve_layout(tmp_path, "invoke")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("model.safetensors", "model.safetensors"),
        ("../../escape.pt", "escape.pt"),
        ("/etc/passwd", "passwd"),
        ("C:\\x\\y.ckpt", "y.ckpt"),
        ("C:y.ckpt", "C_y.ckpt"),
        ("dir/", "dir"),
        ("evil\x07\nname.safetensors", "evilname.safetensors"),
        ("nul\x00byte.pt", "nulbyte.pt"),
        ("del\x7fete.pt", "delete.pt"),
        ("photo\u202egpj.exe", "photogpj.exe"),
        ("CON.safetensors", "_CON.safetensors"),
        ("con.tar.gz", "_con.tar.gz"),
        ("nul", "_nul"),
        ("Com1.pt", "_Com1.pt"),
        ("LPT9", "_LPT9"),
        ("COM¹.txt", "_COM¹.txt"),
        ("CON .txt", "_CON .txt"),
        ("CONSOLE.safetensors", "CONSOLE.safetensors"),
        ("COM10.pt", "COM10.pt"),
        ('a<b>c:d"e|f?g*h.pt', "a_b_c_d_e_f_g_h.pt"),
        ("  .hidden.safetensors. . ", "hidden.safetensors"),
        ("a..b...c.pt", "a.b.c.pt"),
        ("モデル.safetensors", "モデル.safetensors"),
        ("Ünïcödé 模型 v2.safetensors", "Ünïcödé 模型 v2.safetensors"),
        ("file name with spaces.ckpt", "file name with spaces.ckpt"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


@pytest.mark.parametrize(
    "name", ["", ".", "..", "...", "/", "\\", "../..", " . ", "\x00\x01", "a/"]
)
def test_safe_filename_falls_back_to_the_default(name: str) -> None:
    expected = "a" if name == "a/" else "model.safetensors"
    assert safe_filename(name) == expected
    assert safe_filename(name, default="../vae.pt") == ("a" if name == "a/" else "vae.pt")


def test_safe_filename_needs_a_usable_default() -> None:
    with pytest.raises(ValueError, match="not usable"):
        safe_filename("..", default="..")


def test_long_names_keep_their_extension() -> None:
    safe = safe_filename("x" * 300 + ".safetensors")
    assert safe == "x" * 188 + ".safetensors"
    assert len(safe.encode()) == 200
    japanese = safe_filename("モ" * 100 + ".safetensors")  # 3 bytes a character
    assert japanese.endswith("モ.safetensors")
    assert len(japanese.encode()) <= 200
    assert japanese.encode().decode() == japanese
    dotted = safe_filename("x" * 150 + "." + "y" * 100)  # a 100-byte "extension" is not one
    assert dotted == "x" * 150 + "." + "y" * 49
    spaced = safe_filename("a" + " " * 250 + ".pt")
    assert spaced == "a.pt"


names = st.one_of(
    st.text(),
    st.text(
        alphabet=st.sampled_from(["a", "モ", ".", " ", "/", "\\", ":", "\x00", "\n", "C", "O", "N"])
    ),
    st.builds(
        lambda stem, ext: f"{stem}.{ext}",
        st.sampled_from(["CON", "nul", "com1", "LPT3", "aux ", ".", ".."]),
        st.sampled_from(["safetensors", "pt", "", " "]),
    ),
    st.text(min_size=190, max_size=400),
)
FORBIDDEN = set('/\\<>:"|?*') | {chr(c) for c in range(32)} | {"\x7f"}


@given(names)
def test_safe_filename_properties(name: str) -> None:
    safe = safe_filename(name)
    assert safe not in ("", ".", "..")
    assert not FORBIDDEN & set(safe)
    assert safe == safe.strip().strip(".")
    assert ".." not in safe
    assert len(safe.encode()) <= 200
    assert safe_filename(safe) == safe


def test_path_inside_returns_a_child(tmp_path: Path) -> None:
    assert path_inside(tmp_path, "../../escape.pt") == tmp_path / "escape.pt"
    assert path_inside(tmp_path / "new", "a.pt") == tmp_path / "new" / "a.pt"
    assert path_inside(tmp_path, "..", default="vae.pt") == tmp_path / "vae.pt"


def test_path_inside_refuses_a_symlink_leading_out(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    outside = tmp_path / "victim.txt"
    outside.write_text("keep me")
    (folder / "model.safetensors").symlink_to(outside)
    with pytest.raises(UsageError, match="outside"):
        path_inside(folder, "model.safetensors")
    (folder / "sub").mkdir()
    (folder / "inner.pt").symlink_to(folder / "sub" / "x.pt")
    assert path_inside(folder, "inner.pt") == folder / "inner.pt"


def test_path_inside_follows_a_symlinked_folder(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    assert path_inside(link, "a.pt") == link / "a.pt"


@pytest.fixture(scope="module")
def models_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@given(name=names)
def test_path_inside_is_always_a_direct_child(models_folder: Path, name: str) -> None:
    folder = models_folder
    path = path_inside(folder, name)
    assert path.parent == folder
    assert path.name == safe_filename(name)
