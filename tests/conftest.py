"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from civit import Client, RetryPolicy
from civit.cli import main
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


@pytest.fixture
def client(fake: FakeCivitai) -> Iterator[Client]:
    """An API client for ``fake`` with its token and quick retries (modules may define
    their own ``client`` instead)."""
    with Client(
        base_url=fake.url,
        token=fake.token,
        retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05),
    ) as api:
        yield api


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Keep every test away from the user's real config, token and hash cache."""
    home = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("CIVIT_CONFIG", str(home / "config.toml"))
    monkeypatch.setenv("CIVIT_CACHE_DIR", str(home / "cache"))
    for variable in ("CIVITAI_API_TOKEN", "CIVITAI_TOKEN", "CIVITAI_BASE_URL", "CIVIT_MIRROR"):
        monkeypatch.delenv(variable, raising=False)
    return home


@dataclass(frozen=True)
class CliRun:
    """What one ``civit`` command did: exit code, stdout, stderr."""

    code: int
    out: str
    err: str


@pytest.fixture
def civit_cli(
    fake: FakeCivitai, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., CliRun]:
    """Run ``civit ARGS`` in-process through the real entry point, against the fake and
    with its token in the environment; a traceback on stderr fails the test."""
    monkeypatch.setenv("CIVITAI_BASE_URL", fake.url)
    monkeypatch.setenv("CIVITAI_API_TOKEN", fake.token)

    def run(*args: str | Path) -> CliRun:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main([str(arg) for arg in args])
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        code = exit_.value.code
        return CliRun(code if isinstance(code, int) else 1, captured.out, captured.err)

    return run
