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
