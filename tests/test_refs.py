from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civit.errors import UsageError
from civit.refs import ACCEPTED_FORMS, Ref, parse_ref

SHA256 = "2BA3B9E5A7C0E8F6D2D4C3B1A09F8E7D6C5B4A39281706F5E4D3C2B1A0998877"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("827184", Ref(model_id=827184)),
        ("  827184\n", Ref(model_id=827184)),
        ("827184@2514310", Ref(model_id=827184, version_id=2514310)),
        ("@2514310", Ref(version_id=2514310)),
        ("12345678", Ref(model_id=12345678)),  # digits only: an id, never an AutoV1
        ("1234567890", Ref(model_id=1234567890)),  # ... nor an AutoV2
        ("999999999999", Ref(model_id=999999999999)),
        ("https://civitai.com/models/827184", Ref(model_id=827184)),
        ("http://civitai.com/models/827184/", Ref(model_id=827184)),
        ("civitai.com/models/827184", Ref(model_id=827184)),
        ("www.civitai.com/models/827184/wai-illustrious-sdxl", Ref(model_id=827184)),
        ("https://civitai.red/models/827184", Ref(model_id=827184)),
        ("HTTPS://CIVITAI.COM/models/827184", Ref(model_id=827184)),
        (
            "https://civitai.com/models/827184/wai-illustrious-sdxl?modelVersionId=2514310",
            Ref(model_id=827184, version_id=2514310),
        ),
        (
            "https://civitai.com/models/827184?utm_source=x&modelVersionId=2514310#gallery",
            Ref(model_id=827184, version_id=2514310),
        ),
        ("https://civitai.com/api/download/models/2514310", Ref(version_id=2514310)),
        ("civitai.com/api/download/models/2514310/", Ref(version_id=2514310)),
        ("https://api.civitai.com/download/models/2514310", Ref(version_id=2514310)),
        ("https://api.civitai.com/api/download/models/2514310", Ref(version_id=2514310)),
        (
            "https://civitai.com/api/download/models/2514310?fileId=2402203",
            Ref(version_id=2514310, file_id=2402203),
        ),
        (
            "https://civitai.com/api/download/models/2514310?type=Pruned%20Model&format=SafeTensor",
            Ref(version_id=2514310, type="Pruned Model", format="SafeTensor"),
        ),
        (
            "civitai.com/api/download/models/2514310?size=pruned&fp=fp16&token=abc",
            Ref(version_id=2514310, size="pruned", fp="fp16"),
        ),
        ("https://civitai.com/api/v1/models/827184", Ref(model_id=827184)),
        ("https://api.civitai.com/v1/models/827184", Ref(model_id=827184)),
        ("https://civitai.com/api/v1/model-versions/2514310", Ref(version_id=2514310)),
        (f"https://civitai.com/api/v1/model-versions/by-hash/{SHA256}", Ref(hash=SHA256)),
        (
            "urn:air:sdxl:checkpoint:civitai:827184@2514310",
            Ref(model_id=827184, version_id=2514310),
        ),
        ("urn:air:sdxl:lora:civitai:328553", Ref(model_id=328553)),
        (
            "urn:air:sdxl:checkpoint:civitai:827184@2514310.safetensors",
            Ref(model_id=827184, version_id=2514310),
        ),
        (
            "urn:air:flux1:lora:civitai:827184@2514310:layer1.safetensors",
            Ref(model_id=827184, version_id=2514310),
        ),
        ("URN:AIR:SDXL:CHECKPOINT:CIVITAI:827184", Ref(model_id=827184)),
        ("air:sdxl:checkpoint:civitai:827184@2514310", Ref(model_id=827184, version_id=2514310)),
        (SHA256, Ref(hash=SHA256)),
        (SHA256.lower(), Ref(hash=SHA256)),
        (f"sha256:{SHA256.lower()}", Ref(hash=SHA256)),
        ("2ba3b9e5a7", Ref(hash="2BA3B9E5A7")),  # AutoV2
        ("2ba3b9e5a7c0", Ref(hash="2BA3B9E5A7C0")),  # AutoV3
        ("deadbeef", Ref(hash="DEADBEEF")),  # AutoV1 / CRC32
        ("autov2:1234567890", Ref(hash="1234567890")),
        ("hash:12345678", Ref(hash="12345678")),
    ],
)
def test_parse_ref_accepts(text: str, expected: Ref) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("foo", None),
        ("-5", None),
        ("1234567890123", "at most 12 digits"),
        ("827184@", None),
        ("827184@@2514310", None),
        ("@", None),
        ("1.5", None),
        ("abcdef12345", None),  # 11 hex digits: no Civitai hash has that length
        ("z" * 64, None),
        ("md5:" + "a" * 32, None),
        ("https://huggingface.co/models/827184", "only civitai.com"),
        ("https://civitai.com.evil.example/models/827184", "only civitai.com"),
        ("https://evil.example/civitai.com/models/827184", "only civitai.com"),
        ("ftp://civitai.com/models/827184", "http"),
        ("https://civitai.com/images/123", "not a model, version or download URL"),
        ("https://civitai.com/models", "not a model"),
        ("https://civitai.com/models/abc", "model id"),
        ("https://civitai.com/models/1234567890123", "model id"),
        ("https://civitai.com/models/827184?modelVersionId=x", "modelVersionId"),
        ("https://civitai.com/api/download/models/2514310?fileId=x", "fileId"),
        ("https://api.civitai.com/models/827184", "not a model"),
        ("https://civitai.com/api/v1/model-versions/by-hash/xyz", "hash"),
        ("http://[::1/models/1", "malformed URL"),
        ("urn:air:sdxl:checkpoint:huggingface:stabilityai/sdxl", "only civitai AIRs"),
        ("urn:air:sdxl:checkpoint:civitai:abc", "model id"),
        ("urn:air:sdxl:checkpoint:civitai:827184@v2", "version id"),
        ("urn:air:sdxl:checkpoint:civitai:1.2.3", "malformed AIR"),
    ],
)
def test_parse_ref_rejects(text: str, reason: str | None) -> None:
    with pytest.raises(UsageError) as caught:
        parse_ref(text)
    message = str(caught.value)
    assert message.startswith("not a model reference: ")
    assert repr(text.strip()) in message  # shown as typed (it holds no secret)
    assert message.endswith(ACCEPTED_FORMS)
    if reason:
        assert reason in message
    assert caught.value.exit_code == 2


def test_rejection_lists_the_accepted_forms() -> None:
    with pytest.raises(UsageError) as caught:
        parse_ref("foo")
    assert str(caught.value) == (
        "not a model reference: 'foo'. Use a model id (827184), model@version "
        "(827184@2514310), a civitai.com model or download URL, an AIR "
        "(urn:air:sdxl:checkpoint:civitai:827184@2514310) or a SHA256/AutoV2 hash"
    )


def test_rejection_never_echoes_a_token_or_user_info() -> None:
    for text in (
        "https://huggingface.co/x?token=SECRET",
        "https://user:SECRET@civitai.com/images/1",
        "https://civitai.com/models/x?token=SECRET",
        "http://[::1/x?token=SECRET",
    ):
        with pytest.raises(UsageError) as caught:
            parse_ref(text)
        assert "SECRET" not in str(caught.value)


def test_rejection_truncates_huge_input() -> None:
    with pytest.raises(UsageError) as caught:
        parse_ref("x" * 10_000)
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize(
    ("ref", "text"),
    [
        (Ref(model_id=827184), "827184"),
        (Ref(model_id=827184, version_id=2514310), "827184@2514310"),
        (Ref(version_id=2514310), "@2514310"),
        (Ref(hash=SHA256.lower()), SHA256),
        (Ref(hash="1234567890"), "hash:1234567890"),
        (Ref(version_id=2514310, file_id=5, fp="fp16"), "@2514310"),
    ],
)
def test_str_is_the_canonical_short_form(ref: Ref, text: str) -> None:
    assert str(ref) == text


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"file_id": 5},
        {"model_id": 1, "fp": "fp16"},
        {"version_id": -1},
        {"model_id": 10**12},
        {"hash": SHA256, "model_id": 1},
        {"hash": SHA256, "version_id": 1},
        {"hash": "xyz"},
        {"hash": "abcdef123"},
    ],
)
def test_ref_refuses_inconsistent_fields(fields: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        Ref(**fields)  # type: ignore[arg-type]


ids = st.integers(min_value=1, max_value=10**12 - 1)
hex_hashes = st.sampled_from([8, 10, 12, 64]).flatmap(
    lambda n: st.text(alphabet="0123456789abcdefABCDEF", min_size=n, max_size=n)
)
refs = st.one_of(
    st.builds(Ref, model_id=ids),
    st.builds(Ref, version_id=ids),
    st.builds(Ref, model_id=ids, version_id=ids),
    st.builds(Ref, hash=hex_hashes),
)


@given(refs)
def test_str_round_trips(ref: Ref) -> None:
    assert parse_ref(str(ref)) == ref


hosts = st.sampled_from(["civitai.com", "www.civitai.com", "civitai.red", "www.civitai.red"])
prefixes = st.sampled_from(["https://", "http://", ""])
slugs = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=30)
extra_query = st.sampled_from(["", "&utm_source=x", "&token=abc&modelVersionId2=1"])
trailing = st.sampled_from(["", "/"])


@given(ids, ids, prefixes, hosts, slugs, extra_query, trailing)
def test_every_form_of_a_version_names_the_same_ids(
    model_id: int, version_id: int, prefix: str, host: str, slug: str, extra: str, slash: str
) -> None:
    both = Ref(model_id=model_id, version_id=version_id)
    forms = {
        f"{model_id}@{version_id}": both,
        f"{prefix}{host}/models/{model_id}{slash}?modelVersionId={version_id}{extra}": both,
        f"{prefix}{host}/models/{model_id}/{slug}{slash}?modelVersionId={version_id}": both,
        f"urn:air:sdxl:checkpoint:civitai:{model_id}@{version_id}": both,
        f"urn:air:sd1:lora:civitai:{model_id}@{version_id}.safetensors": both,
        f"{prefix}{host}/models/{model_id}/{slug}{slash}": Ref(model_id=model_id),
        f"{prefix}{host}/api/v1/models/{model_id}{slash}": Ref(model_id=model_id),
        f"urn:air:sdxl:checkpoint:civitai:{model_id}": Ref(model_id=model_id),
        f"{prefix}{host}/api/download/models/{version_id}{slash}": Ref(version_id=version_id),
        f"{prefix}api.civitai.com/download/models/{version_id}{slash}?fileId={model_id}{extra}": (
            Ref(version_id=version_id, file_id=model_id)
        ),
        f"{prefix}{host}/api/v1/model-versions/{version_id}": Ref(version_id=version_id),
    }
    for text, expected in forms.items():
        assert parse_ref(text) == expected, text


def identity(ref: Ref) -> tuple[int | None, int | None, str | None]:
    return ref.model_id, ref.version_id, ref.hash


@given(st.text())
def test_arbitrary_text_raises_only_usage_error(text: str) -> None:
    try:
        ref = parse_ref(text)
    except UsageError:
        return
    assert identity(parse_ref(str(ref))) == identity(ref)


fragments = st.sampled_from(
    [
        "https://",
        "civitai.com",
        "api.civitai.com",
        "/models/",
        "/api/download/models/",
        "/api/v1/model-versions/",
        "by-hash/",
        "urn:air:",
        "civitai:",
        ":",
        "@",
        ".",
        "?",
        "&",
        "=",
        "fileId",
        "modelVersionId",
        "%20",
        "[",
        "0",
        "123",
        "deadbeef",
        "\x00",
        "ー",
        "٣",
    ]
)


@given(st.lists(fragments, max_size=12).map("".join))
def test_url_like_junk_raises_only_usage_error(text: str) -> None:
    try:
        ref = parse_ref(text)
    except UsageError:
        return
    assert identity(parse_ref(str(ref))) == identity(ref)
