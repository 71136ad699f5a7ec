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


# -- start-up: what each fast path may load ----------------------------------------
#
# Allow-lists, not deny-lists: a module added to civit later (as sidecars, layouts, s3,
# image_resources, freezing and updates were) stays out of these paths unless someone
# adds it here on purpose. scripts/bench times the same three commands.

IMPORT_CIVIT = {"civit", "civit._version"}
VERSION_PATH = IMPORT_CIVIT | {"civit.cli", "civit.cli.app", "civit.cli.output", "civit.errors"}
HASH_PATH = VERSION_PATH | {
    "civit.cli.local_files",
    "civit.cli.progress",
    "civit.fsutil",
    "civit.hashcache",
    "civit.hashing",
    "civit.paths",
    "civit.records",
}
#: Never on these paths: the HTTP stack, the terminal bars, S3.
HEAVY = {"httpx", "httpcore", "ssl", "truststore", "certifi", "tqdm", "boto3", "botocore"}


def modules_loaded_by(code: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    )
    return set(done.stdout.splitlines()[-1].split())


def civit_modules(loaded: set[str]) -> set[str]:
    return {name for name in loaded if name == "civit" or name.startswith("civit.")}


def run_cli(*args: str) -> str:
    return (
        f"from civit.cli import main\ntry:\n    main({list(args)!r})\nexcept SystemExit:\n    pass"
    )


def test_import_civit_loads_nothing_but_its_version() -> None:
    loaded = modules_loaded_by("import civit")
    assert civit_modules(loaded) == IMPORT_CIVIT
    assert not loaded & (HEAVY | {"click", "sqlite3", "blake3"})


def test_civit_version_stays_light() -> None:
    loaded = modules_loaded_by("import civit\n" + run_cli("--version"))
    assert civit_modules(loaded) <= VERSION_PATH, civit_modules(loaded) - VERSION_PATH
    assert not loaded & (HEAVY | {"sqlite3", "blake3"})


def test_civit_hash_stays_light(tmp_path: Path) -> None:
    """``civit hash`` often answers from the hash cache in milliseconds: it must not load
    the API client, the download engine, the WebUI tables or tqdm (off a terminal)."""
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"x" * 1000)
    env = {**os.environ, "CIVIT_CACHE_DIR": str(tmp_path / "cache")}
    command = run_cli("hash", str(model), "--algo", "sha256,blake3,crc32")
    for run in ("reads the file", "answers from the cache"):
        loaded = modules_loaded_by(command, env)
        assert civit_modules(loaded) <= HASH_PATH, (run, civit_modules(loaded) - HASH_PATH)
        assert not loaded & HEAVY, run


def test_the_api_client_does_not_load_the_webui_tables() -> None:
    """``civit info`` and ``civit search`` read settings and ask the API; the layouts
    package (every WebUI's tables) is for commands that place files."""
    loaded = modules_loaded_by("import civit.api, civit.cli.browse")
    assert not {name for name in loaded if name.startswith("civit.layouts")}
