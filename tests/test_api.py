"""The real Client against the real FakeCivitai over loopback: no patching anywhere."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from civit import (
    AuthError,
    Client,
    EarlyAccessError,
    NetworkError,
    NotDownloadableError,
    NotFoundError,
    RateLimitError,
    ResponseError,
    RetryPolicy,
    UsageError,
    load_settings,
    parse_ref,
)
from civit.testing import FakeCivitai

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def client(fake: FakeCivitai) -> Client:
    with Client(base_url=fake.url, token=fake.token, retry=FAST) as api:
        yield api  # type: ignore[misc]


def test_get_model_parses_versions_files_and_hashes(client: Client, fake: FakeCivitai) -> None:
    model = client.get_model(827184)
    assert model.name == "WAI-illustrious-SDXL"
    assert model.type == "Checkpoint"
    assert [v.id for v in model.versions] == [2514310, 2300001]
    primary = model.versions[0].primary_file
    assert primary is not None and primary.id == 2402203
    assert primary.model_type == "Checkpoint"
    assert primary.hashes.sha256 == fake.file(2402203).sha256.upper()
    non_primary = [f for f in model.versions[0].files if not f.primary]
    assert {f.id for f in non_primary} == {2402204, 2402205, 2402206}


def test_unknown_model_is_not_found_with_the_api_message(client: Client) -> None:
    with pytest.raises(NotFoundError, match="No model with id 424242") as info:
        client.get_model(424242)
    assert info.value.exit_code == 4


def test_get_version_has_model_summary(client: Client) -> None:
    version = client.get_version(368189)
    assert version.model_id == 328553
    assert version.model_type == "LORA"
    assert version.air and version.air.endswith("328553@368189")


def test_version_by_hash_any_case_and_unknown(client: Client, fake: FakeCivitai) -> None:
    digest = fake.file(3000001).sha256.lower()
    assert client.get_version_by_hash(digest).id == 368189
    with pytest.raises(NotFoundError, match="no model on Civitai"):
        client.get_version_by_hash("0" * 64)


def test_versions_by_hashes_in_one_request(client: Client, fake: FakeCivitai) -> None:
    known = [fake.file(3000001).sha256, fake.file(3000002).sha256]
    fake.clear_log()
    matches = client.versions_by_hashes([*known, "F" * 64])
    assert {m.version_id for m in matches} == {368189, 9208}
    assert len([r for r in fake.requests if r.path.endswith("/by-hash/ids")]) == 1


def test_version_for_each_kind_of_ref(client: Client, fake: FakeCivitai) -> None:
    assert client.get_version_for(parse_ref("827184")).id == 2514310
    assert client.get_version_for(parse_ref("827184@2300001")).id == 2300001
    sha = fake.file(3000002).sha256
    assert client.get_version_for(parse_ref(sha)).id == 9208
    with pytest.raises(UsageError, match="belongs to model 827184"):
        client.get_version_for(parse_ref("328553@2300001"))


def test_iter_models_follows_cursors_past_the_page_limit(fake: FakeCivitai) -> None:
    fake.add_synthetic_models(1150)
    with Client(base_url=fake.url, retry=FAST) as api:
        models = list(api.iter_models(types=["LORA"]))
    pages = [r for r in fake.requests if r.path == "/api/v1/models"]
    assert len(models) == len({m.id for m in models}) >= 1150
    assert all("page" not in r.query for r in pages)
    assert len(pages) >= 12


def test_deep_page_429_is_a_usage_error_and_not_retried(client: Client, fake: FakeCivitai) -> None:
    fake.clear_log()
    with pytest.raises(UsageError, match="cursor"):
        client.list_models(page=11, limit=100)
    assert len(fake.requests) == 1


def test_query_with_page_and_bad_params_are_usage_errors(client: Client) -> None:
    with pytest.raises(UsageError):
        client.list_models(query="wai", page=1)
    with pytest.raises(UsageError):
        client.list_models(limit=1000)
    with pytest.raises(UsageError, match="unknown model filter"):
        client.list_models(colour="blue")


def test_filters_reach_the_server(client: Client, fake: FakeCivitai) -> None:
    page = client.list_models(types=["LORA", "VAE"], base_models=["SD 1.5"], nsfw=False)
    assert {m.type for m in page.items} <= {"LORA", "VAE"}
    request = fake.requests[-1]
    assert request.query["types"] == ["LORA", "VAE"]
    assert request.query["baseModels"] == ["SD 1.5"]
    assert request.query["nsfw"] == ["false"]


def test_retry_after_is_honoured_then_succeeds(client: Client, fake: FakeCivitai) -> None:
    fake.fail_api(429, times=1, retry_after="1")
    started = time.monotonic()
    assert client.get_model(7808).name == "EasyNegative"
    assert time.monotonic() - started >= 0.9


def test_503_retried_then_network_error(client: Client, fake: FakeCivitai) -> None:
    fake.fail_api(503, times=2)
    assert client.get_model(7808).id == 7808
    fake.fail_api(503, times=10)
    with pytest.raises(NetworkError) as info:
        client.get_model(7808)
    assert info.value.exit_code == 5


def test_429_without_end_is_throttling_not_the_daily_cap(client: Client, fake: FakeCivitai) -> None:
    """Exit 6 is only for the download endpoint's daily cap (issue 11.5)."""
    fake.fail_api(429, times=10, retry_after="0")
    with pytest.raises(NetworkError, match="throttling") as info:
        client.get_model(7808)
    assert info.value.exit_code == 5


def test_other_4xx_are_not_retried(client: Client, fake: FakeCivitai) -> None:
    fake.fail_api(403, times=5)
    fake.clear_log()
    with pytest.raises(AuthError):
        client.get_model(7808)
    assert len(fake.requests) == 1


def test_malformed_json_is_a_clear_error(client: Client, fake: FakeCivitai) -> None:
    fake.malformed_json = True
    with pytest.raises(ResponseError, match="malformed JSON"):
        client.get_model(7808)


def test_unreachable_server_is_a_network_error() -> None:
    with (
        Client(base_url="http://127.0.0.1:9", retry=FAST) as api,
        pytest.raises(NetworkError, match="cannot reach"),
    ):
        api.get_model(1)


def test_download_link_points_at_the_cdn_without_the_token(
    client: Client, fake: FakeCivitai
) -> None:
    link = client.resolve_download(2514310, file_id=2402204)
    assert link.url.startswith(fake.cdn_url)
    assert fake.token not in link.url
    assert "sig=" not in repr(link)
    api_request = fake.requests[-1]
    assert api_request.headers.get("authorization") == f"Bearer {fake.token}"
    assert api_request.query["fileId"] == ["2402204"]


@pytest.mark.parametrize(
    ("version_id", "error", "message"),
    [
        (99101, NotDownloadableError, "archived"),
        (99102, EarlyAccessError, "Early Access until 2099-01-01"),
        (99103, NotDownloadableError, "disabled downloads"),
        (777777, NotFoundError, "(?i)not found"),
    ],
)
def test_download_refusals(
    client: Client, version_id: int, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        client.resolve_download(version_id)


def test_download_without_token_is_auth_error_with_a_hint(fake: FakeCivitai) -> None:
    with (
        Client(base_url=fake.url, token="", retry=FAST) as anonymous,
        pytest.raises(AuthError) as info,
    ):
        anonymous.resolve_download(368189)
    assert info.value.exit_code == 3
    assert "CIVITAI_API_TOKEN" in str(info.value)


def test_daily_limit_is_not_retried(client: Client, fake: FakeCivitai) -> None:
    fake.daily_limit_reached = True
    fake.clear_log()
    with pytest.raises(RateLimitError, match="daily download limit"):
        client.resolve_download(368189)
    assert len(fake.requests) == 1


def test_settings_precedence(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('base_url = "http://from-file"\ntoken = "file-token"\njobs = 3\n')
    environ = {"CIVITAI_TOKEN": "env-token", "CIVITAI_BASE_URL": "http://from-env/"}
    settings = load_settings({"base_url": "http://flag"}, environ=environ, path=config)
    assert settings.base_url == "http://flag"
    assert settings.token == "env-token"
    assert settings.jobs == 3
    assert settings.sources["token"] == "env CIVITAI_TOKEN"
    assert "env-token" not in repr(settings)


def test_bad_config_file_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("colour = 1\n")
    with pytest.raises(UsageError, match="unknown setting colour"):
        load_settings(environ={}, path=config)
    config.write_text("jobs = 0\n")
    with pytest.raises(UsageError, match="jobs must be at least 1"):
        load_settings(environ={}, path=config)
