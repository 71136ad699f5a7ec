"""Parsing real (recorded) API documents and the quirks DESIGN.md lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from civit.errors import IntegrityError
from civit.records import File, Hashes, HashMatch, Model, ModelPage, Version, as_json

DATA = Path(__file__).parent / "data"


def load(name: str) -> object:
    return json.loads((DATA / name).read_text())


def test_model_sample() -> None:
    model = Model.from_json(load("model_1102.json"))
    assert model is not None
    assert (model.id, model.name, model.type, model.creator) == (
        1102,
        "SynthwavePunk",
        "Checkpoint",
        "justmaier",
    )
    assert model.tags == ("punk", "synthwave", "style")
    version = model.versions[0]
    assert version.model_id == 1102 and version.model_type == "Checkpoint"
    file = version.files[0]
    assert (file.id, file.format, file.fp, file.size, file.primary) == (
        196,
        "PickleTensor",
        "fp16",
        "pruned",
        True,
    )
    assert file.hashes.autov2 == "DC4C67171E"
    assert file.model_type == "Checkpoint" and file.version_id == version.id
    assert not model.archived


def test_version_sample_has_model_summary() -> None:
    version = Version.from_json(load("version_1318.json"))
    assert version is not None
    assert (version.id, version.model_id, version.model_name, version.model_type) == (
        1318,
        1244,
        "froggy style",
        "Checkpoint",
    )
    assert version.primary_file is not None and version.primary_file.id == 289
    assert version.raw["trainedWords"] == ["ttdddd"]


def test_list_sample_with_page_metadata() -> None:
    page = ModelPage.from_json(load("models_textualinversion-limit3-docs.json"))
    assert [m.id for m in page.items] == [3036, 4514, 8109]
    assert page.next_cursor is None
    assert page.next_page is not None and "page=2" in page.next_page


def test_quirks_are_tolerated() -> None:
    model = Model.from_json(
        {
            "id": "42",
            "name": None,
            "stats": {"downloadCount": None},
            "allowCommercialUse": ["Image"],
            "creator": None,
            "tags": ["a", {"name": "b"}, 3, None],
            "modelVersions": [
                {
                    "id": 1,
                    "publishedAt": "2025-09-01T10:00:00",
                    "files": [
                        {"id": 7, "name": "x.safetensors", "sizeKB": 12, "metadata": None},
                        {"id": 8, "hashes": {"Blake3": "abc", "SHA256": None}, "primary": True},
                        {"name": "no id"},
                        "garbage",
                    ],
                },
                {"name": "no id"},
            ],
            "unknown": {"nested": [1, 2]},
        }
    )
    assert model is not None and model.id == 42 and model.name == "42"
    assert model.tags == ("a", "b")
    assert model.download_count is None
    [version] = model.versions
    assert version.date == "2025-09-01"
    first, second = version.files
    assert first.size_kb == 12.0 and first.format is None and not first.primary
    assert first.approx_bytes == 12 * 1024
    assert second.hashes == Hashes(blake3="ABC") and second.name == "file-8"
    assert version.primary_file == second


def test_archived_model_has_no_files() -> None:
    model = Model.from_json(
        {"id": 1, "name": "gone", "mode": "Archived", "modelVersions": [{"id": 2, "name": "v"}]}
    )
    assert model is not None and model.archived
    assert model.versions[0].files == ()
    assert model.versions[0].primary_file is None


def test_garbage_documents_parse_to_none_or_empty() -> None:
    assert Model.from_json([]) is None
    assert Version.from_json({"id": "x"}) is None
    assert File.from_json(None) is None
    assert ModelPage.from_json("nope").items == ()
    assert HashMatch.parse_all({"not": "a list"}) == ()


def test_hash_matches_are_case_insensitive_and_crc32_either_order() -> None:
    hashes = Hashes.from_json({"sha256": "ab" * 32, "CRC32": "85114A0D"})
    assert hashes.matches("SHA256", "AB" * 32)
    assert hashes.matches("crc32", "85114a0d")
    assert hashes.matches("crc32", "0D4A1185")
    assert not hashes.matches("crc32", "00000000")
    assert not hashes.matches("blake3", "anything")


def test_check_raises_integrity_error_with_both_digests() -> None:
    hashes = Hashes(sha256="AA" * 32, crc32="85114A0D")
    assert hashes.check({"sha256": "aa" * 32, "crc32": "0d4a1185", "blake3": "x"}) == (
        "sha256",
        "crc32",
    )
    with pytest.raises(IntegrityError) as info:
        hashes.check({"sha256": "BB" * 32}, path="m.safetensors")
    error = info.value
    assert (error.algorithm, error.expected, error.actual) == ("sha256", "AA" * 32, "BB" * 32)
    assert "m.safetensors" in str(error) and error.exit_code == 7


def test_as_json_drops_raw_and_flattens_hashes() -> None:
    version = Version.from_json(load("version_1318.json"))
    document = as_json(version)
    assert "raw" not in document
    assert document["files"][0]["hashes"]["crc32"] == "32AEB036"
    json.dumps(document)


def _file_doc(file_id: int, name: str, **metadata: str) -> dict[str, object]:
    return {"id": file_id, "name": name, "type": "Model", "metadata": metadata}


def _version(*files: dict[str, object]) -> Version:
    version = Version.from_json({"id": 7, "modelId": 70, "files": list(files)})
    assert version is not None
    return version


def test_scan_verdicts_are_read_as_sent_and_missing_ones_are_none() -> None:
    version = _version(
        {**_file_doc(1, "a.ckpt"), "pickleScanResult": "Danger", "virusScanResult": "Success"},
        {**_file_doc(2, "b.ckpt"), "pickleScanResult": None, "virusScanResult": 3},
        _file_doc(3, "c.ckpt"),
    )
    scans = [(f.pickle_scan, f.virus_scan) for f in version.files]
    assert scans == [("Danger", "Success"), (None, "3"), (None, None)]
    assert all(f.model_id == 70 and f.version_id == 7 for f in version.files)


def test_same_named_variants_get_distinct_stable_names() -> None:
    # dreamshaper/realisticVision-style versions: pruned fp16 and full fp32, one name.
    files = (
        _file_doc(11, "dreamshaper_8.safetensors", size="full", fp="fp32", format="SafeTensor"),
        {
            **_file_doc(
                12, "dreamshaper_8.safetensors", size="pruned", fp="fp16", format="SafeTensor"
            ),
            "primary": True,
        },
        _file_doc(13, "dreamshaper_8.safetensors", size="full", fp="fp16", format="SafeTensor"),
        _file_doc(14, "dreamshaper_8.ckpt", size="full", fp="fp32", format="PickleTensor"),
    )
    names = {f.id: f.local_name for f in _version(*files).files}
    assert names == {
        11: "dreamshaper_8_full_fp32.safetensors",
        12: "dreamshaper_8.safetensors",  # the primary keeps the plain name
        13: "dreamshaper_8_full.safetensors",
        14: "dreamshaper_8.ckpt",  # no clash, no tag
    }
    again = {f.id: f.local_name for f in _version(*reversed(files)).files}
    assert again == names  # Civitai's listing order does not move names around


def test_variants_without_a_primary_and_without_a_difference() -> None:
    version = _version(
        _file_doc(21, "vae.safetensors", fp="fp32"),
        _file_doc(22, "vae.safetensors", fp="fp16"),
        _file_doc(23, "VAE.safetensors", fp="fp16"),  # same name on Windows and macOS
    )
    names = [f.local_name for f in version.files]
    # fp16 is preferred, so the first fp16 file keeps the name; the twin gets its id.
    assert names == ["vae_fp32.safetensors", "vae.safetensors", "VAE_23.safetensors"]
    assert len({n.casefold() for n in names}) == 3


def test_a_variant_tag_survives_trimming_a_long_name() -> None:
    long = "x" * 250 + ".safetensors"
    version = _version(_file_doc(31, long, fp="fp16"), _file_doc(32, long, fp="fp32"))
    plain, tagged = (f.local_name for f in version.files)
    assert tagged.endswith("_fp32.safetensors") and len(tagged.encode()) <= 200
    assert plain != tagged


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"availability": "EarlyAccess", "earlyAccessEndsAt": "2099-01-01T00:00:00.000Z"}, True),
        # The label outlives the date a while: the date decides.
        ({"availability": "EarlyAccess", "earlyAccessEndsAt": "2020-01-01T00:00:00.000Z"}, False),
        ({"availability": "EarlyAccess"}, True),
        ({"availability": "EarlyAccess", "earlyAccessEndsAt": "soon"}, True),
        ({"earlyAccessEndsAt": "2099-01-01T00:00:00"}, True),  # no zone: UTC
        ({"availability": "Public", "earlyAccessEndsAt": "2099-01-01T00:00:00Z"}, False),
        ({"availability": "Public"}, False),
        ({}, False),
    ],
)
def test_in_early_access(fields: dict[str, str], expected: bool) -> None:
    version = Version.from_json({"id": 1, **fields})
    assert version is not None and version.in_early_access is expected
