"""What a published package needs: license, metadata, a real User-Agent, shell completion,
and install instructions that work before civit is on PyPI."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from civit._version import PROJECT_URL, VERSION
from civit.api import USER_AGENT
from civit.cli import main

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_license_and_metadata() -> None:
    assert (REPO / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    assert "Typing :: Typed" in PROJECT["classifiers"]
    assert all(url.startswith(PROJECT_URL) for url in PROJECT["urls"].values())


def test_user_agent_names_the_version_and_the_project() -> None:
    assert f"civit/{VERSION} (+{PROJECT_URL})" == USER_AGENT


def test_shell_completion_completes_commands_and_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def complete(words: str) -> list[str]:
        monkeypatch.setenv("_CIVIT_COMPLETE", "bash_complete")
        monkeypatch.setenv("COMP_WORDS", words)
        monkeypatch.setenv("COMP_CWORD", str(len(words.split()) - 1))
        with pytest.raises(SystemExit):
            main([])
        return capsys.readouterr().out.split()

    assert "plain,get" in complete("civit ge")
    assert "plain,--root" in complete("civit get --ro")


def test_readme_never_installs_an_unpublished_civit_from_pypi() -> None:
    bare = re.compile(r"pip install (?:--\S+ )*['\"]?civit(?:\[\w+\])?(?!\s*@)['\"]?(?:\s|$)")
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert not [line for line in lines if bare.search(line)]
    assert any(f"pip install {PROJECT_URL}/archive/main.tar.gz" in line for line in lines)
