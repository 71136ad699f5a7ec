from __future__ import annotations

import pytest

from civit.errors import NotDownloadableError, ScanRefusedError
from civit.records import File, Model, Version
from civit.select import (
    check_scans,
    code_warning,
    describe_file,
    early_access_note,
    explain_selection,
    newest_version,
    select_file,
)

SAFETENSORS_FP16 = File(
    id=2402203,
    name="waiIllustriousSDXL_v160.safetensors",
    type="Model",
    format="SafeTensor",
    size="pruned",
    fp="fp16",
    size_kb=2150.4,
    primary=True,
)
SAFETENSORS_FP32 = File(
    id=2402204,
    name="waiIllustriousSDXL_v160.safetensors",  # same name, other precision
    type="Model",
    format="SafeTensor",
    size="full",
    fp="fp32",
    size_kb=4300.8,
)
PICKLE_FP16 = File(
    id=2402205,
    name="waiIllustriousSDXL_v160.ckpt",
    type="Model",
    format="PickleTensor",
    size="pruned",
    fp="fp16",
    size_kb=2150.4,
)
GGUF_Q8 = File(id=2402206, name="wai_q8.gguf", type="Model", format="GGUF", fp="fp8")
VAE = File(
    id=2402207,
    name="wai_vae.safetensors",
    type="VAE",
    format="SafeTensor",
    size="full",
    fp="fp16",
    size_kb=320.0,
)

WAI = Version(
    id=2514310,
    name="v16.0",
    model_id=827184,
    model_name="WAI",
    model_type="Checkpoint",
    files=(SAFETENSORS_FP32, PICKLE_FP16, SAFETENSORS_FP16, GGUF_Q8, VAE),
)


def test_no_filters_choose_the_primary_file() -> None:
    selection = explain_selection(WAI)
    assert selection.file == SAFETENSORS_FP16
    assert selection.reasons == ("no filters given: the primary file of 5",)


def test_no_primary_falls_back_to_the_first_file() -> None:
    version = Version(id=1, name="v1", files=(PICKLE_FP16, SAFETENSORS_FP32))
    selection = explain_selection(version)
    assert selection.file == PICKLE_FP16
    assert "none is primary" in selection.reasons[0]


def test_file_id_wins_over_every_filter() -> None:
    selection = explain_selection(WAI, file_id=2402205, format="SafeTensor", fp="fp32")
    assert selection.file == PICKLE_FP16
    assert selection.reasons == ("file id 2402205 requested",)


def test_unknown_file_id_lists_the_files() -> None:
    with pytest.raises(NotDownloadableError) as caught:
        select_file(WAI, file_id=42)
    assert str(caught.value).startswith("no file of WAI v16.0 has id 42; available: 2402204 ")


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"fp": "fp32"}, SAFETENSORS_FP32),
        ({"fp": "FP32"}, SAFETENSORS_FP32),
        ({"format": "PickleTensor"}, PICKLE_FP16),
        ({"format": "ckpt"}, PICKLE_FP16),
        ({"format": "pickle"}, PICKLE_FP16),
        ({"format": "pt"}, PICKLE_FP16),
        ({"format": "safetensors"}, SAFETENSORS_FP16),
        ({"format": "gguf"}, GGUF_Q8),
        ({"type": "vae"}, VAE),
        ({"type": "VAE", "fp": "fp16"}, VAE),
        ({"size": "full"}, VAE),  # both full SafeTensor files: fp16 beats fp32
        ({"size": "pruned", "fp": "fp16"}, SAFETENSORS_FP16),
        ({"type": "Model", "format": "SafeTensor", "size": "full"}, SAFETENSORS_FP32),
    ],
)
def test_filters_are_case_insensitive_exact_matches(
    filters: dict[str, str], expected: File
) -> None:
    assert select_file(WAI, **filters) == expected  # type: ignore[arg-type]


def test_type_filter_is_exact_not_a_substring() -> None:
    version = Version(id=1, name="v1", files=(File(id=1, name="a", type="Pruned Model"),))
    with pytest.raises(NotDownloadableError):
        select_file(version, type="Model")
    assert select_file(version, type="pruned model").id == 1


def test_preferences_rank_primary_then_safetensor_then_pruned_then_fp16() -> None:
    pickle = File(
        id=1, name="a.ckpt", type="Model", format="PickleTensor", size="pruned", fp="fp16"
    )
    full = File(id=2, name="b.st", type="Model", format="SafeTensor", size="full", fp="fp16")
    fp32 = File(id=3, name="c.st", type="Model", format="SafeTensor", size="pruned", fp="fp32")
    best = File(id=4, name="d.st", type="Model", format="SafeTensor", size="pruned", fp="fp16")
    primary = File(id=5, name="e.ckpt", type="Model", format="PickleTensor", primary=True)
    files = [pickle, full, fp32, best]

    def chosen(*candidates: File) -> File:
        # Every order of the same files gives the same answer: the ranking decides.
        answers = {
            select_file(
                Version(id=9, name="v9", files=candidates[i:] + candidates[:i]), type="Model"
            )
            for i in range(len(candidates))
        }
        assert len(answers) == 1
        return answers.pop()

    assert chosen(*files, primary) == primary
    assert chosen(*files) == best
    assert chosen(pickle, full, fp32) == fp32  # pruned over full
    assert chosen(pickle, full) == full  # SafeTensor over PickleTensor, whatever the size


def test_ties_keep_civitais_order() -> None:
    first = File(id=7, name="x.safetensors", format="SafeTensor", fp="bf16")
    second = File(id=8, name="y.safetensors", format="SafeTensor", fp="fp8")
    version = Version(id=1, name="v1", files=(first, second))
    selection = explain_selection(version, format="SafeTensor")
    assert selection.file == first
    assert selection.reasons[-1] == "over 8 y.safetensors: listed first by Civitai"


def test_explain_names_the_deciding_preference() -> None:
    selection = explain_selection(WAI, type="Model")
    assert selection.file == SAFETENSORS_FP16
    assert selection.reasons == (
        "4 of 5 files match type=Model",
        "over 2402204 waiIllustriousSDXL_v160.safetensors: the primary file preferred",
        "over 2402205 waiIllustriousSDXL_v160.ckpt: the primary file preferred",
        "over 2402206 wai_q8.gguf: the primary file preferred",
    )
    pruned_fp32 = File(id=9, name="p.safetensors", type="Model", format="SafeTensor", size="pruned")
    secondary = Version(id=1, name="v1", files=(SAFETENSORS_FP32, PICKLE_FP16, pruned_fp32))
    selection = explain_selection(secondary, type="model")
    assert selection.file == pruned_fp32
    assert selection.reasons == (
        "3 of 3 files match type=model",
        "over 2402204 waiIllustriousSDXL_v160.safetensors: pruned preferred",
        "over 2402205 waiIllustriousSDXL_v160.ckpt: SafeTensor preferred",
    )


def test_no_match_lists_every_available_file() -> None:
    with pytest.raises(NotDownloadableError) as caught:
        select_file(WAI, fp="fp4")
    message = caught.value.message
    assert message.startswith(
        "no file of WAI v16.0 matches fp=fp4; available: "
        "2402204 waiIllustriousSDXL_v160.safetensors (Model, SafeTensor, full, fp32, "
        "4.20 MiB); "
    )
    assert message.count("; ") == len(WAI.files)
    assert "2402203 waiIllustriousSDXL_v160.safetensors (Model, SafeTensor, pruned, fp16, " in (
        message
    )
    assert "primary)" in message
    assert caught.value.exit_code == 4
    assert caught.value.hint and "--fp" in caught.value.hint


def test_version_without_files_is_not_downloadable() -> None:
    archived = Version(id=5, name="v5", model_name="Gone")
    with pytest.raises(NotDownloadableError, match=r"Gone v5 has no downloadable files"):
        select_file(archived)
    anonymous = Version(id=5, name="v5")
    with pytest.raises(NotDownloadableError, match=r"version 5 \(v5\) has no downloadable"):
        select_file(anonymous, fp="fp16")


def test_selection_from_an_api_document() -> None:
    # Shaped like GET /api/v1/models/1102: the secondary file omits "primary".
    model = Model.from_json(
        {
            "id": 1102,
            "name": "SynthwavePunk",
            "type": "Checkpoint",
            "modelVersions": [
                {
                    "id": 1292,
                    "name": "V3 Alpha",
                    "files": [
                        {
                            "id": 5149,
                            "name": "synthwavepunk_v3Alpha.ckpt",
                            "type": "Model",
                            "sizeKB": 2082918.40625,
                            "metadata": {"fp": "fp16", "size": "full", "format": "PickleTensor"},
                        },
                        {
                            "id": 194,
                            "name": "synthwavepunk_v3Alpha.safetensors",
                            "type": "Model",
                            "sizeKB": 2082691,
                            "metadata": {"fp": "fp16", "size": "full", "format": "SafeTensor"},
                            "primary": True,
                        },
                    ],
                },
                {"id": 1144, "name": "V2", "files": []},
            ],
        }
    )
    assert model is not None
    newest = newest_version(model)
    assert newest.id == 1292
    assert select_file(newest).name == "synthwavepunk_v3Alpha.safetensors"
    assert select_file(newest, format="ckpt").id == 5149
    assert select_file(newest, fp="fp16").id == 194
    with pytest.raises(NotDownloadableError, match="SynthwavePunk V2 has no downloadable"):
        select_file(model.versions[1])


def test_newest_version_of_a_model_without_versions() -> None:
    with pytest.raises(NotDownloadableError, match="model 3 \\(Empty\\) has no versions"):
        newest_version(Model(id=3, name="Empty"))


@pytest.mark.parametrize(
    ("file", "text"),
    [
        (
            SAFETENSORS_FP16,
            "2402203 waiIllustriousSDXL_v160.safetensors "
            "(Model, SafeTensor, pruned, fp16, 2.10 MiB, primary)",
        ),
        (GGUF_Q8, "2402206 wai_q8.gguf (Model, GGUF, fp8)"),
        (File(id=1, name="bare.bin"), "1 bare.bin"),
        (File(id=2, name="tiny.pt", size_kb=0.5), "2 tiny.pt (512 B)"),
    ],
)
def test_describe_file(file: File, text: str) -> None:
    assert describe_file(file) == text


@pytest.mark.parametrize(
    ("pickle", "virus", "refused"),
    [
        ("Success", "Success", None),
        (None, None, None),  # no scan fields: nothing to hold against the file
        ("Danger", "Success", "pickle scan says Danger"),
        ("Success", "Error", "virus scan says Error"),
        ("Pending", "Pending", "pickle scan says Pending and its virus scan says Pending"),
    ],
)
def test_check_scans(pickle: str | None, virus: str | None, refused: str | None) -> None:
    file = File(id=9, name="x.ckpt", pickle_scan=pickle, virus_scan=virus)
    check_scans(file, allow_unscanned=True)  # never refuses when allowed
    if refused is None:
        check_scans(file)
        return
    with pytest.raises(ScanRefusedError, match=refused) as error:
        check_scans(file)
    assert error.value.exit_code == 4
    assert "--allow-unscanned" in str(error.value)
    assert ("try again in a few minutes" in str(error.value)) == (pickle == "Pending")


def test_code_warning_only_for_pickle_files() -> None:
    assert code_warning(SAFETENSORS_FP16) is None
    warning = code_warning(PICKLE_FP16)
    assert warning is not None and "can run code" in warning and "\n" not in warning


def early(version_id: int, name: str, until: str | None = "2099-01-01T00:00:00.000Z") -> Version:
    return Version(id=version_id, name=name, availability="EarlyAccess", early_access_ends_at=until)


def test_newest_version_is_the_newest_that_can_be_downloaded_now() -> None:
    v3, v2, v1 = early(3, "v3"), early(2, "v2", None), Version(id=1, name="v1")
    model = Model(id=9, name="M", versions=(v3, v2, v1))
    assert newest_version(model) == v1
    assert newest_version(model, early_access=True) == v3
    assert newest_version(model, locked=2) == v2  # an upgrade never moves back past it
    assert early_access_note(model, v1) == (
        "v3 is in Early Access until 2099-01-01, v2 is in Early Access; "
        "took v1 (pass --early-access for v3)"
    )
    assert early_access_note(model, v3) is None
    everything_early = Model(id=8, name="E", versions=(v3, v2))
    assert newest_version(everything_early) == v3  # its download says until when
    assert early_access_note(everything_early, v3) is None
    public = Version(id=4, name="v4", availability="Public", early_access_ends_at="2099-01-01")
    assert newest_version(Model(id=7, name="P", versions=(public, v1))) == public
