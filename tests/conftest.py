"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from civit.testing import Catalog, FakeCivitai, FakeModel, default_catalog


@pytest.fixture(scope="session")
def default_models() -> Sequence[FakeModel]:
    """The default catalog's models, generated once: they are frozen, so tests share them."""
    return default_catalog().models


@pytest.fixture
def fake(default_models: Sequence[FakeModel]) -> Iterator[FakeCivitai]:
    """A running FakeCivitai (token ``test-token``) with its own copy of the default catalog.

    Fails the test if the fake itself raised while handling a request.
    """
    with FakeCivitai(catalog=Catalog(default_models)) as server:
        yield server
    assert server.errors == [], f"FakeCivitai raised while serving: {server.errors!r}"


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Keep every test away from the user's real config, token and hash cache."""
    home = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("CIVIT_CONFIG", str(home / "config.toml"))
    monkeypatch.setenv("CIVIT_CACHE_DIR", str(home / "cache"))
    for variable in ("CIVITAI_API_TOKEN", "CIVITAI_TOKEN", "CIVITAI_BASE_URL", "CIVIT_MIRROR"):
        monkeypatch.delenv(variable, raising=False)
    return home
