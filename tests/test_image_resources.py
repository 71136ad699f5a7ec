"""``civit get --from``: the resources images and workflows name, found on the fake.

Every image here is generated in the test: PNG chunks written with zlib/struct, JPEG
and WebP carrying an EXIF block built by hand, so the reader is checked against the
byte layouts the WebUIs produce, not against another library's reading of them.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import pytest

import civit
from civit.image_metadata import MAX_TEXT_BYTES, read_image_metadata
from civit.image_resources import find_resources, infotext_parameters
from civit.testing import FakeCivitai

# -- image builders -----------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def make_png(*chunks: bytes) -> bytes:
    """A 1x1 grey PNG with these extra chunks before its image data."""
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    pixels = _png_chunk(b"IDAT", zlib.compress(b"\x00\x80"))
    return b"\x89PNG\r\n\x1a\n" + header + b"".join(chunks) + pixels + _png_chunk(b"IEND", b"")


def text_chunk(keyword: str, text: str) -> bytes:
    """``tEXt``, as Pillow writes A1111's ``parameters`` when it is Latin-1."""
    return _png_chunk(b"tEXt", keyword.encode("latin-1") + b"\x00" + text.encode("latin-1"))


def ztxt_chunk(keyword: str, text: str) -> bytes:
    data = keyword.encode("latin-1") + b"\x00\x00" + zlib.compress(text.encode("latin-1"))
    return _png_chunk(b"zTXt", data)


def itxt_chunk(keyword: str, text: str, *, compressed: bool = False) -> bytes:
    """``iTXt``, as Pillow writes text that is not Latin-1."""
    body = zlib.compress(text.encode()) if compressed else text.encode()
    flag = b"\x01\x00" if compressed else b"\x00\x00"
    return _png_chunk(b"iTXt", keyword.encode() + b"\x00" + flag + b"\x00\x00" + body)


def exif_block(user_comment: bytes, *, little_endian: bool, model: str | None = None) -> bytes:
    """A TIFF structure: IFD0 (optional Model tag, Exif pointer) and an Exif IFD
    holding ``UserComment`` (UNDEFINED), the way piexif lays it out."""
    order = "<" if little_endian else ">"
    model_bytes = model.encode() + b"\x00" if model is not None else b""
    ifd0_entries = 1 + (1 if model_bytes else 0)
    ifd0_size = 2 + 12 * ifd0_entries + 4
    model_at = 8 + ifd0_size
    exif_at = model_at + len(model_bytes)
    comment_at = exif_at + 2 + 12 + 4
    ifd0 = struct.pack(order + "H", ifd0_entries)
    if model_bytes:
        ifd0 += struct.pack(order + "HHII", 0x0110, 2, len(model_bytes), model_at)
    ifd0 += struct.pack(order + "HHII", 0x8769, 4, 1, exif_at) + b"\x00" * 4
    exif = struct.pack(order + "H", 1)
    exif += struct.pack(order + "HHII", 0x9286, 7, len(user_comment), comment_at) + b"\x00" * 4
    head = (b"II*\x00" if little_endian else b"MM\x00*") + struct.pack(order + "I", 8)
    return head + ifd0 + model_bytes + exif + user_comment


def make_jpeg(exif: bytes) -> bytes:
    app1 = b"Exif\x00\x00" + exif
    return b"\xff\xd8" + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + b"\xff\xd9"


def make_webp(exif: bytes) -> bytes:
    body = b"WEBP" + b"VP8L" + struct.pack("<I", 5) + b"\x2f\x00\x00\x00\x00" + b"\x00"
    body += b"EXIF" + struct.pack("<I", len(exif)) + exif + (b"\x00" if len(exif) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def unicode_comment(text: str, *, little_endian: bool = False) -> bytes:
    return b"UNICODE\x00" + text.encode("utf-16-le" if little_endian else "utf-16-be")


# -- what the fake's files are called in images -------------------------------------


def a1111_infotext(fake: FakeCivitai) -> str:
    """A Forge infotext naming the WAI checkpoint (AutoV2), Detail Tweaker (AutoV3, as
    A1111 writes safetensors LoRAs), EasyNegative (SHA256 prefix, as A1111 writes
    embeddings) and a LoRA Civitai has never seen."""
    checkpoint = fake.file(2402203).digests
    lora = fake.file(3000001).digests
    embedding = fake.file(3000002).digests
    return (
        "1girl, masterpiece, <lora:add-detail-xl:0.8>, easynegative\n"
        "Negative prompt: lowres\n"
        "Steps: 28, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6, Seed: 1, "
        f"Size: 832x1216, Model hash: {checkpoint['autov2'].lower()}, "
        "Model: waiIllustriousSDXL_v160, "
        f'Lora hashes: "add-detail-xl: {lora["autov3"].lower()}, mine: 0123456789ab", '
        f'TI hashes: "easynegative: {embedding["sha256"][:12].lower()}", Version: f2.0.1'
    )


def civitai_infotext() -> str:
    checkpoint = {"modelName": "WAI", "modelVersionName": "v15.0"}
    air = "urn:air:sdxl:lora:civitai:328553@368189"
    resources = [
        {"type": "checkpoint", "modelVersionId": 2300001, **checkpoint},
        {"type": "lora", "weight": 0.7, "modelVersionId": 368189, "air": air},
        {"type": "lora", "weight": 1, "modelVersionId": 987654321},
    ]
    return (
        "a castle\nNegative prompt: blurry\nSteps: 30, CFG scale: 5, Seed: 7, "
        f"Civitai resources: {json.dumps(resources, separators=(',', ':'))}, "
        'Civitai metadata: {"remixOfId": 12}'
    )


# -- reading metadata ---------------------------------------------------------------


def test_png_text_chunks_of_every_kind_are_read(tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    image.write_bytes(
        make_png(
            text_chunk("parameters", "Steps: 20"),
            ztxt_chunk("prompt", '{"1": {}}'),
            itxt_chunk("workflow", '{"nodes": [], "note": "ünïcode"}', compressed=True),
            itxt_chunk("Comment", "plain"),
        )
    )
    metadata = read_image_metadata(image)
    assert metadata.kind == "png"
    assert metadata.texts == {
        "parameters": "Steps: 20",
        "prompt": '{"1": {}}',
        "workflow": '{"nodes": [], "note": "ünïcode"}',
        "Comment": "plain",
    }


@pytest.mark.parametrize("little_endian", [False, True])
def test_jpeg_and_webp_user_comment_in_either_byte_order(
    tmp_path: Path, little_endian: bool
) -> None:
    text = "a cat\nSteps: 20, Model hash: 0a1b2c3d4e"
    exif = exif_block(
        unicode_comment(text, little_endian=little_endian),
        little_endian=little_endian,
        model='prompt:{"4": {"class_type": "CheckpointLoaderSimple"}}',
    )
    jpeg, webp = tmp_path / "x.jpg", tmp_path / "x.webp"
    jpeg.write_bytes(make_jpeg(exif))
    webp.write_bytes(make_webp(exif))
    for path, kind in ((jpeg, "jpeg"), (webp, "webp")):
        metadata = read_image_metadata(path)
        assert metadata.kind == kind
        assert metadata.texts["parameters"] == text
        assert json.loads(metadata.texts["prompt"]) == {
            "4": {"class_type": "CheckpointLoaderSimple"}
        }


def test_damaged_images_carry_no_text_instead_of_failing(tmp_path: Path) -> None:
    whole = make_png(text_chunk("parameters", "Steps: 20, Model hash: 0a1b2c3d4e"))
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole[: len(whole) - 40])  # inside the text chunk
    assert read_image_metadata(cut).texts == {}
    bad_exif = tmp_path / "bad.jpg"
    bad_exif.write_bytes(make_jpeg(b"MM\x00*\x00\x00\xff\xff"))  # IFD offset past the end
    assert read_image_metadata(bad_exif).texts == {}


def test_infotext_parameters_keep_quoted_and_json_values_whole() -> None:
    parameters = infotext_parameters(civitai_infotext())
    assert parameters["Steps"] == "30"
    assert isinstance(parameters["Civitai resources"], list)
    assert parameters["Civitai metadata"] == {"remixOfId": 12}
    forge = infotext_parameters('p\nSteps: 1, Lora hashes: "a: 1, b: 2", Hashes: {"model": "x"}')
    assert forge == {"Steps": "1", "Lora hashes": "a: 1, b: 2", "Hashes": {"model": "x"}}


def test_comfyui_workflow_names_resources_by_air_and_civitai_nodes() -> None:
    lora_loader = {"type": "CivitAI_Lora_Loader", "widgets_values": ["328553@368189", "none"]}
    placeholder = {
        "type": "CivitAI_Checkpoint_Loader",
        "widgets_values": ["{model_id}@{model_version}"],
    }
    workflow = {
        "nodes": [lora_loader, placeholder],
        "extra": {
            "ckpt_airs": ["827184@2300001"],
            "airs": ["urn:air:sdxl:checkpoint:civitai:827184@2300001"],
        },
    }
    vae = {"ckpt_name": "urn:air:sd1:vae:civitai:23906@28569"}
    prompt = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": vae},
        "5": {"class_type": "LoraLoader", "inputs": {"lora_name": "mine.safetensors"}},
    }
    found = find_resources({"workflow": json.dumps(workflow), "prompt": json.dumps(prompt)})
    assert [(r.kind, str(r.lookups[0]), r.source) for r in found] == [
        ("lora", "328553@368189", "workflow"),
        ("checkpoint", "827184@2300001", "workflow"),  # named twice, counted once
        ("vae", "23906@28569", "prompt"),
    ]


# -- looking them up ----------------------------------------------------------------


def test_resources_from_image_finds_each_by_its_hash(fake: FakeCivitai, tmp_path: Path) -> None:
    image = tmp_path / "forge.png"
    image.write_bytes(make_png(text_chunk("parameters", a1111_infotext(fake))))
    with civit.Client(base_url=fake.url, token=fake.token) as client:
        found = civit.resources_from_image(image, client=client)
    assert found.kind == "png" and found.keys == ("parameters",)
    summary = [(r.kind, r.name, r.found, r.file.id if r.file else None) for r in found.resources]
    assert summary == [
        ("checkpoint", "waiIllustriousSDXL_v160", True, 2402203),
        ("lora", "add-detail-xl", True, 3000001),
        ("lora", "mine", False, None),
        ("embedding", "easynegative", True, 3000002),
    ]
    missing = found.resources[2]
    assert missing.error == "Civitai knows no AutoV3 0123456789AB or AutoV2 0123456789"
    assert [file.id for _, file in found.files()] == [2402203, 3000001, 3000002]


def test_get_from_a1111_png_downloads_into_the_webui(
    civit_cli, fake: FakeCivitai, tmp_path: Path
) -> None:
    image = tmp_path / "forge.png"
    image.write_bytes(make_png(text_chunk("parameters", a1111_infotext(fake))))
    root = tmp_path / "ComfyUI"
    run = civit_cli("get", "--from", image, "--root", root, "--layout", "comfyui")
    assert run.code == 0, run.err
    assert "4 resources named, 3 found on Civitai" in run.err
    assert "not found  lora mine (Lora hashes 0123456789AB)" in run.err
    assert "found      checkpoint waiIllustriousSDXL_v160 (Model hash" in run.err
    for folder, file_id in (("checkpoints", 2402203), ("loras", 3000001), ("embeddings", 3000002)):
        saved = root / "models" / folder / fake.file(file_id).name
        assert saved.read_bytes() == fake.file(file_id).content


def test_get_from_civitai_resources_dry_run_downloads_nothing(
    civit_cli, fake: FakeCivitai, tmp_path: Path
) -> None:
    image = tmp_path / "civitai.png"
    image.write_bytes(make_png(itxt_chunk("parameters", civitai_infotext(), compressed=True)))
    root = tmp_path / "webui"
    run = civit_cli("get", "--from", image, "--root", root, "--layout", "a1111", "--dry-run")
    assert run.code == 0, run.err
    assert "3 resources named, 2 found on Civitai" in run.err
    assert "not found  lora (Civitai resources version 987654321)" in run.err
    assert (
        "would download WAI-illustrious-SDXL v15.0: waiIllustriousSDXL_v150.safetensors" in run.err
    )
    assert str(root / "models" / "Lora" / "add-detail-xl.safetensors") in run.err
    assert not root.exists()
    assert not [r for r in fake.requests if "/api/download/" in r.path]


def test_get_from_skips_a_resource_without_the_selected_file_and_gets_the_rest(
    civit_cli, tmp_path: Path
) -> None:
    image = tmp_path / "civitai.png"
    infotext = civitai_infotext().replace('"modelVersionId":2300001', '"modelVersionId":2514310')
    image.write_bytes(make_png(text_chunk("parameters", infotext)))
    run = civit_cli("get", "--from", image, "--fp", "fp32", "--dest", tmp_path / "out", "--json")
    assert run.code == 0, run.err
    (document,) = json.loads(run.out)
    fetched, skipped = document["files"]
    assert fetched["file_id"] == 2402204 and fetched["error"] is None  # WAI v16.0's fp32
    assert (skipped["version_id"], skipped["status"]) == (368189, "skipped")
    assert "no file of Detail Tweaker XL v1.0 matches fp=fp32" in skipped["reason"]

    nothing = civit_cli("get", "--from", image, "--fp", "bf16", "--dest", tmp_path / "out")
    assert nothing.code == 4
    assert "skipped Detail Tweaker XL v1.0: no file" in nothing.err
    assert "nothing to get" in nothing.err


def test_get_from_json_reports_every_resource(civit_cli, tmp_path: Path) -> None:
    workflow = tmp_path / "workflow.json"
    # As Windows Notepad saves it: a byte order mark, then an indented document.
    text = json.dumps({"extra": {"airs": ["urn:air:sdxl:lora:civitai:328553@368189"]}}, indent=8)
    workflow.write_bytes(b"\xef\xbb\xbf\r\n\r\n" + text.encode())
    run = civit_cli("get", "--from", workflow, "--dest", tmp_path / "out", "--json", "--dry-run")
    assert run.code == 0, run.err
    (document,) = json.loads(run.out)
    assert document["resources"][0]["version_id"] == 368189
    assert document["files"][0]["status"] == "planned"


def test_get_from_png_without_parameters_exits_4(civit_cli, tmp_path: Path) -> None:
    image = tmp_path / "plain.png"
    image.write_bytes(make_png())
    run = civit_cli("get", "--from", image, "--dest", tmp_path)
    assert run.code == 4
    assert "plain.png: no generation metadata" in run.err
    assert "nothing to get" in run.err


def test_get_from_a_non_image_exits_2(civit_cli, tmp_path: Path) -> None:
    notes = tmp_path / "model.safetensors"
    notes.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    run = civit_cli("get", "--from", notes, "--dest", tmp_path)
    assert run.code == 2
    assert "is not a PNG, JPEG or WebP image, nor a JSON workflow" in run.err


def test_hostile_metadata_is_an_error_or_nothing_never_a_crash(civit_cli, tmp_path: Path) -> None:
    deep = "[" * 100_000
    image = tmp_path / "deep.png"
    image.write_bytes(
        make_png(
            text_chunk("workflow", deep), text_chunk("parameters", f"Steps: 1, Hashes: {deep}")
        )
    )
    assert find_resources(read_image_metadata(image).texts) == []
    (tmp_path / "deep.json").write_text(deep)
    run = civit_cli("get", "--from", tmp_path / "deep.json", "--dest", tmp_path)
    assert run.code == 2 and "nested too deeply" in run.err
    bomb = tmp_path / "bomb.png"  # more text than civit reads, in a 33 KiB zTXt chunk
    bomb.write_bytes(make_png(ztxt_chunk("parameters", "a" * (MAX_TEXT_BYTES + 1))))
    assert read_image_metadata(bomb).texts == {}


def test_many_compressed_chunks_share_one_text_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each chunk was capped, not the image: twenty 32 MiB zTXt chunks under different
    keywords (650 KB of PNG) inflated to 640 MiB."""
    monkeypatch.setattr("civit.image_metadata.MAX_TEXT_BYTES", 1 << 20)
    chunks = [ztxt_chunk(f"k{i}", "a" * ((1 << 20) - 10)) for i in range(20)]
    image = tmp_path / "bombs.png"
    image.write_bytes(make_png(text_chunk("parameters", "Steps: 20"), *chunks))
    assert image.stat().st_size < 100_000
    texts = read_image_metadata(image).texts
    assert texts["parameters"] == "Steps: 20"
    assert sum(len(text) for text in texts.values()) <= 1 << 20


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_get_from_a_fifo_is_an_error_not_a_hang(civit_cli, tmp_path: Path) -> None:
    fifo = tmp_path / "image.png"
    os.mkfifo(fifo)
    run = civit_cli("get", "--from", fifo, "--dest", tmp_path)
    assert run.code == 1 and "FIFO" in run.err
