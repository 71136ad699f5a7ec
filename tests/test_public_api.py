"""The public surface: exactly what __all__ says, sorted, importable, and cheap to import."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import civit


def test_all_is_sorted_and_complete() -> None:
    assert civit.__all__ == sorted(civit.__all__)
    for name in civit.__all__:
        assert getattr(civit, name) is not None, name
    assert set(dir(civit)) >= set(civit.__all__)


def test_every_public_name_is_exported_lazily_and_typed() -> None:
    """Each name in __all__ has a lazy entry and a TYPE_CHECKING import (what mypy sees)."""
    source = ast.parse(Path(civit.__file__).read_text(encoding="utf-8"))
    guarded = next(node for node in source.body if isinstance(node, ast.If))
    typed = {
        alias.asname or alias.name
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    lazy = set(civit._EXPORTS)
    assert typed == lazy == set(civit.__all__) - {"__version__"}
    for name, module in civit._EXPORTS.items():
        assert getattr(civit, name) is getattr(importlib.import_module(module), name), name


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        civit.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("civit.no_such_name resolved")


def test_import_civit_and_version_stay_light() -> None:
    """``import civit`` and ``civit --version`` load neither httpx, tqdm, sqlite3 nor the
    download engine: start-up time is a feature (scripts/bench measures it)."""
    heavy = ["httpx", "tqdm", "sqlite3", "blake3", "ssl", "civit.transfer", "civit.api"]
    script = (
        "import sys, civit; from civit.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.splitlines()[-1]
    assert loaded == "[]"


def test_error_exit_codes() -> None:
    codes = {
        civit.CivitError: 1,
        civit.UsageError: 2,
        civit.ManifestError: 2,
        civit.AuthError: 3,
        civit.EarlyAccessError: 3,
        civit.NotFoundError: 4,
        civit.NotDownloadableError: 4,
        civit.NetworkError: 5,
        civit.RateLimitError: 6,
        civit.IntegrityError: 7,
        civit.DiskSpaceError: 1,
        civit.FileConflictError: 1,
        civit.ScanRefusedError: 4,
    }
    for error, code in codes.items():
        assert error.exit_code == code, error
        assert issubclass(error, civit.CivitError)


def test_civit_hash_stays_light(tmp_path: Path) -> None:
    """``civit hash`` often answers from the hash cache in milliseconds: it must not load
    the API client, the download engine, the WebUI tables or tqdm (off a terminal)."""
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"x" * 1000)
    heavy = ["httpx", "tqdm", "ssl", "civit.api", "civit.transfer", "civit.layouts"]
    script = (
        "import sys; from civit.cli import main\n"
        f"try:\n    main(['hash', {str(model)!r}])\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    env = {**os.environ, "CIVIT_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    )
    assert done.stdout.splitlines()[-1] == "[]"
