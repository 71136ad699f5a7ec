"""``civit get`` into fake install trees of every WebUI (marker files only), against the
fake Civitai: where a checkpoint, a LoRA, an embedding, a VAE, a GGUF diffusion model
and a text encoder land, with configured folders and diffusion-only checkpoints."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from civit import Client, RetryPolicy, UsageError, get
from civit.testing import FakeCivitai

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
FAST_ENGINE = {"retry_base": 0.01, "stall_timeout": 2.0}

#: A minimal install of each WebUI: the marker files detection looks at.
TREES = {
    "a1111": ("webui.py", "launch.py", "modules/", "embeddings/", "models/Stable-diffusion/"),
    "forge": ("webui.py", "modules_forge/", "embeddings/", "models/Stable-diffusion/"),
    "forge-classic": ("webui.py", "modules_forge/", "models/embeddings/"),
    "sdnext": ("webui.py", "installer.py", "models/"),
    "comfyui": ("main.py", "comfy/", "custom_nodes/", "models/checkpoints/"),
    "comfyui-portable": ("python_embeded/", "ComfyUI/main.py", "ComfyUI/comfy/"),
    "swarmui": ("launchtools/", "Models/Stable-Diffusion/", "src/SwarmUI.csproj"),
    "fooocus": ("webui.py", "entry_with_update.py", "fooocus_version.py", "models/checkpoints/"),
    "stabilitymatrix": ("Models/", "Packages/", "settings.json"),
    "fooocus-windows": ("python_embeded/", "Fooocus/entry_with_update.py", "run.bat"),
    "stabilitymatrix-portable": (
        "StabilityMatrix.exe", "Data/.sm-portable", "Data/Models/", "Data/Packages/",
        "Data/settings.json",
    ),
}  # fmt: skip

#: What each ref is: 827184 checkpoint, 328553 LoRA, 7808 embedding, 23906 VAE,
#: 99010 --format GGUF a Flux GGUF, 99012 a T5 text encoder.
REFS = {
    "checkpoint": ("827184", {}),
    "lora": ("328553", {}),
    "embedding": ("7808", {}),
    "vae": ("23906", {}),
    "gguf": ("99010", {"format": "GGUF"}),
    "text_encoder": ("99012", {}),
}

EXPECTED = {
    "a1111": {
        "checkpoint": "models/Stable-diffusion",
        "lora": "models/Lora",
        "embedding": "embeddings",
        "vae": "models/VAE",
        "gguf": "models/Stable-diffusion",
        "text_encoder": "models/text_encoder",
    },
    "forge": {
        "checkpoint": "models/Stable-diffusion",
        "lora": "models/Lora",
        "embedding": "embeddings",
        "vae": "models/VAE",
        "gguf": "models/Stable-diffusion",
        "text_encoder": "models/text_encoder",
    },
    "forge-classic": {
        "checkpoint": "models/Stable-diffusion",
        "lora": "models/Lora",
        "embedding": "models/embeddings",
        "vae": "models/VAE",
        "gguf": "models/Stable-diffusion",
        "text_encoder": "models/text_encoder",
    },
    "sdnext": {
        "checkpoint": "models/Stable-diffusion",
        "lora": "models/Lora",
        "embedding": "models/embeddings",
        "vae": "models/VAE",
        "gguf": "models/UNET",
        "text_encoder": "models/Text-encoder",
    },
    "comfyui": {
        "checkpoint": "models/checkpoints",
        "lora": "models/loras",
        "embedding": "models/embeddings",
        "vae": "models/vae",
        "gguf": "models/diffusion_models",
        "text_encoder": "models/text_encoders",
    },
    "comfyui-portable": {
        "checkpoint": "ComfyUI/models/checkpoints",
        "lora": "ComfyUI/models/loras",
        "embedding": "ComfyUI/models/embeddings",
        "vae": "ComfyUI/models/vae",
        "gguf": "ComfyUI/models/diffusion_models",
        "text_encoder": "ComfyUI/models/text_encoders",
    },
    "swarmui": {
        "checkpoint": "Models/Stable-Diffusion",
        "lora": "Models/Lora",
        "embedding": "Models/Embeddings",
        "vae": "Models/VAE",
        "gguf": "Models/diffusion_models",
        "text_encoder": "Models/text_encoders",
    },
    "fooocus": {
        "checkpoint": "models/checkpoints",
        "lora": "models/loras",
        "embedding": "models/embeddings",
        "vae": "models/vae",
        "gguf": "models/checkpoints",
        "text_encoder": "models/text_encoders",
    },
    "stabilitymatrix": {
        "checkpoint": "Models/StableDiffusion",
        "lora": "Models/Lora",
        "embedding": "Models/Embeddings",
        "vae": "Models/VAE",
        "gguf": "Models/DiffusionModels",
        "text_encoder": "Models/TextEncoders",
    },
}
EXPECTED["fooocus-windows"] = {kind: f"Fooocus/{d}" for kind, d in EXPECTED["fooocus"].items()}
EXPECTED["stabilitymatrix-portable"] = {
    kind: f"Data/{folder}" for kind, folder in EXPECTED["stabilitymatrix"].items()
}


@pytest.fixture
def client(fake: FakeCivitai) -> Iterator[Client]:
    with Client(base_url=fake.url, token=fake.token, retry=FAST) as api:
        yield api


def install(root: Path, tree: str) -> Path:
    for entry in TREES[tree]:
        path = root / entry
        if entry.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}" if entry.endswith(".json") else "")
    return root


@pytest.mark.parametrize("tree", list(TREES))
def test_every_kind_lands_where_the_webui_reads_it(
    client: Client, fake: FakeCivitai, tmp_path: Path, tree: str
) -> None:
    root = install(tmp_path, tree)
    for kind, (ref, selection) in REFS.items():
        result = get(ref, client=client, root=root, layout="auto", **selection, **FAST_ENGINE)
        assert result.path.parent == root / EXPECTED[tree][kind], (tree, kind)
        assert result.path.is_file()
        assert result.path.read_bytes() == fake.file(result.file_id or 0).content


def test_gguf_routing_is_explained(client: Client, tmp_path: Path) -> None:
    root = install(tmp_path, "comfyui")
    result = get("99010", client=client, root=root, format="GGUF", **FAST_ENGINE)
    assert result.notes == (
        "diffusion-model folder instead of the checkpoint one: a GGUF file holds only the "
        "diffusion model",
    )
    assert result.as_json()["notes"] == list(result.notes)


def test_a_flux_checkpoint_is_routed_by_its_header(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    root = install(tmp_path, "comfyui")
    unet = get("99010", client=client, root=root, **FAST_ENGINE)
    assert unet.path == root / "models/diffusion_models/fluxDevUnet_fp8.safetensors"
    assert unet.notes == (
        "diffusion-model folder instead of the checkpoint one: its safetensors header has "
        "no VAE or text-encoder tensors",
    )

    fake.clear_log()
    full = get("99011", client=client, root=root, **FAST_ENGINE)
    assert full.path == root / "models/checkpoints/fluxDevAIO_fp8.safetensors"
    assert full.notes == ()
    cdn = fake.cdn_requests(3000022)
    assert cdn[0].headers.get("range", "").startswith("bytes=0-")
    assert all("authorization" not in entry.headers for entry in cdn)
    downloads = [e for e in fake.requests if e.path.startswith("/api/download/")]
    assert len(downloads) == 1  # the link resolved for the header is reused for the bytes


def test_a_present_flux_checkpoint_is_found_without_the_network(
    client: Client, fake: FakeCivitai, tmp_path: Path
) -> None:
    root = install(tmp_path, "swarmui")
    first = get("99011", client=client, root=root, **FAST_ENGINE)
    assert first.path.parent == root / "Models/Stable-Diffusion"
    fake.clear_log()
    again = get("99011", client=client, root=root, **FAST_ENGINE)
    assert again.status == "present" and again.path == first.path
    assert not [e for e in fake.requests if e.path.startswith("/api/download/")]
    assert fake.cdn_requests() == []


def test_configured_folders_win_and_dest_wins_over_them(client: Client, tmp_path: Path) -> None:
    root = install(tmp_path / "webui", "a1111")
    (tmp_path / "disk").mkdir()
    (root / "webui-user.sh").write_text(
        f'export COMMANDLINE_ARGS="--lora-dir {tmp_path}/disk/loras"\n'
    )
    result = get("328553", client=client, root=root, **FAST_ENGINE)
    assert result.path == tmp_path / "disk/loras/add-detail-xl.safetensors"
    assert "LoRA folder from webui-user.sh --lora-dir" in result.notes
    plain = get("328553", client=client, root=root, dest=tmp_path / "plain", **FAST_ENGINE)
    assert plain.path == tmp_path / "plain/add-detail-xl.safetensors"


def test_a_configured_folder_on_a_missing_disk_is_an_error(client: Client, tmp_path: Path) -> None:
    root = install(tmp_path, "fooocus")
    (root / "config.txt").write_text(json.dumps({"path_loras": str(tmp_path / "gone/loras")}))
    with pytest.raises(UsageError, match=r"config\.txt path_loras"):
        get("328553", client=client, root=root, **FAST_ENGINE)
    assert not (tmp_path / "gone").exists()


def test_extra_model_paths_default_group_gets_the_download(client: Client, tmp_path: Path) -> None:
    root = install(tmp_path / "ComfyUI", "comfyui")
    (tmp_path / "shared").mkdir()
    (root / "extra_model_paths.yaml").write_text(
        "shared:\n    base_path: ../shared\n    is_default: true\n    loras: loras\n"
    )
    result = get("328553", client=client, root=root, **FAST_ENGINE)
    assert result.path == tmp_path / "shared/loras/add-detail-xl.safetensors"


def test_sdnext_config_json_override(client: Client, tmp_path: Path) -> None:
    root = install(tmp_path, "sdnext")
    (root / "config.json").write_text(json.dumps({"lora_dir": "my-loras"}))
    result = get("328553", client=client, root=root, **FAST_ENGINE)
    assert result.path == root / "my-loras/add-detail-xl.safetensors"


def test_invokeai_root_is_refused(client: Client, tmp_path: Path) -> None:
    (tmp_path / "invokeai.yaml").write_text("schema_version: 4.0.2\n")
    (tmp_path / "databases").mkdir()
    with pytest.raises(UsageError, match="InvokeAI"):
        get("328553", client=client, root=tmp_path, **FAST_ENGINE)


def test_cli_prints_what_it_detected_and_why(civit_cli, tmp_path: Path) -> None:
    root = install(tmp_path, "comfyui-portable")
    run = civit_cli("get", "99010", "--format", "GGUF", "--root", root)
    assert run.code == 0, run.err
    assert (
        f"detected ComfyUI at {root / 'ComfyUI'} "
        "(the Windows portable build: python_embeded/ beside ComfyUI/)"
    ) in run.err
    assert "diffusion-model folder instead of the checkpoint one" in run.err
    assert (root / "ComfyUI/models/diffusion_models/fluxDevUnet-Q4_K_S.gguf").is_file()

    fooocus = install(tmp_path / "Fooocus_win64_2-5-0", "fooocus-windows")
    run = civit_cli("get", "328553", "--root", fooocus)
    assert run.code == 0, run.err
    assert (
        f"detected Fooocus at {fooocus / 'Fooocus'} "
        "(the Windows download: python_embeded/ beside Fooocus/)"
    ) in run.err
    assert (fooocus / "Fooocus/models/loras/add-detail-xl.safetensors").is_file()


def test_subfolder_templates(client: Client, tmp_path: Path) -> None:
    root = install(tmp_path, "a1111")
    lora = get("328553", client=client, root=root, subfolder="{base_model}", **FAST_ENGINE)
    assert lora.path == root / "models/Lora/SDXL 1.0/add-detail-xl.safetensors"
    ckpt = get("827184", client=client, root=root, subfolder="{creator}/{type}", **FAST_ENGINE)
    assert ckpt.path == root / "models/Stable-diffusion/WAI0731/Checkpoint" / ckpt.path.name
    plain = get("7808", client=client, dest=tmp_path / "d", subfolder="{model_name}", **FAST_ENGINE)
    assert plain.path == tmp_path / "d/EasyNegative/easynegative.safetensors"
    with pytest.raises(UsageError, match="unknown placeholder"):
        get("7808", client=client, dest=tmp_path, subfolder="{version}", **FAST_ENGINE)


def test_cli_subfolder_and_manifest_errors(civit_cli, tmp_path: Path) -> None:
    root = install(tmp_path / "webui", "comfyui")
    run = civit_cli("get", "328553", "--root", root, "--subfolder", "{base_model}")
    assert run.code == 0, run.err
    assert (root / "models/loras/SDXL 1.0/add-detail-xl.safetensors").is_file()
    assert civit_cli("get", "328553", "--root", root, "--subfolder", "../x").code == 2
    manifest = tmp_path / "civit.toml"
    manifest.write_text('[settings]\nroot = "webui"\nsubfolder = "{nope}"\n[[model]]\nref = "1"\n')
    bad = civit_cli("lock", "-f", manifest)
    assert bad.code == 2 and "civit.toml:1: [settings]: bad subfolder template" in bad.err
