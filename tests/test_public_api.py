"""The public surface: exactly what __all__ says, sorted, and importable."""

from __future__ import annotations

import civit


def test_all_is_sorted_and_complete() -> None:
    assert civit.__all__ == sorted(civit.__all__)
    for name in civit.__all__:
        assert getattr(civit, name) is not None, name


def test_every_public_name_is_exported() -> None:
    public = {
        name
        for name, value in vars(civit).items()
        if not name.startswith("_")
        and type(value).__name__ != "module"
        and name != "annotations"  # from __future__ import annotations
    }
    assert public == set(civit.__all__) - {"__version__"}


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
