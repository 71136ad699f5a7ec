"""Exceptions raised by civit; each carries the exit code the CLI returns for it.

The tree (exit code in brackets)::

    CivitError [1]
     ├── UsageError [2]                 bad ref, bad option, 400 from the API
     │    └── ManifestError [2]         civit.toml / civit.lock problems
     ├── AuthError [3]                  401/403, login or challenge page instead of a file
     │    └── EarlyAccessError [3]      version is in Early Access until a deadline
     ├── NotFoundError [4]              unknown model, version, file or hash
     │    └── NotDownloadableError [4]  archived, downloads disabled, no matching file
     │         └── ScanRefusedError [4] Civitai's pickle/virus scan did not pass
     ├── NetworkError [5]               connection failures, 5xx after retries
     ├── RateLimitError [6]             429 that cannot be waited out
     ├── IntegrityError [7]             size or digest mismatch
     ├── DiskSpaceError [1]             not enough free space for a download
     ├── FileConflictError [1]          another file is at the target (never replaced)
     └── ResponseError [1]              the service answered something unparseable

Exit codes of a run with many outcomes (several refs, manifest entries or files): the
most severe failure wins, and severity is the code's number (see
:func:`worst_exit_code`).

Every error takes keyword-only context. URLs are stored with their query string and
credentials removed, so an exception can be printed or logged without leaking a token
or a presigned signature.

This module imports nothing from the rest of the package.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "INTERRUPTED_EXIT_CODE",
    "AuthError",
    "CivitError",
    "DiskSpaceError",
    "EarlyAccessError",
    "FileConflictError",
    "IntegrityError",
    "Interrupted",
    "ManifestError",
    "NetworkError",
    "NotDownloadableError",
    "NotFoundError",
    "RateLimitError",
    "ResponseError",
    "ScanRefusedError",
    "UsageError",
    "redact_url",
    "worst_exit_code",
]

#: Ctrl-C: the run stopped before it finished (128 + SIGINT, as shells report it).
INTERRUPTED_EXIT_CODE = 130


def worst_exit_code(codes: Iterable[int]) -> int:
    """The exit code of a run with several outcomes: 0 if every one succeeded, else the
    most severe failure's code.

    Severity is the code's number. The codes run from the least specific failure to
    the most serious one: 1 (other) < 2 (usage) < 3 (auth) < 4 (not found) < 5
    (network) < 6 (rate limited) < 7 (integrity: bytes are not what Civitai
    published, the one a pipeline must never miss) < 130 (interrupted: the run did
    not finish). One corrupt file among ten good ones makes the run exit 7, whatever
    order the files were processed in.

    >>> worst_exit_code([0, 4, 1, 7, 0])
    7
    >>> worst_exit_code([])
    0
    """
    return max(codes, default=0)


def redact_url(url: str) -> str:
    """Return ``url`` without user info, query string or fragment.

    Presigned CDN links carry their signature in the query string, and a careless user
    may put ``?token=`` on an API URL; neither belongs in a message.

    It never fails: an address Python cannot parse (a port that is no number, a broken
    IPv6 host) loses the same parts by plain string cutting.

    >>> redact_url("https://u:p@cdn.example/f.safetensors?X-Amz-Signature=abc#x")
    'https://cdn.example/f.safetensors'
    >>> redact_url("http://u:p@127.0.0.1:notaport/x?sig=abc")
    'http://127.0.0.1:notaport/x'
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:
        scheme, separator, rest = url.partition("://")
        if not separator:
            scheme, rest = "", url
        rest = rest.split("?", 1)[0].split("#", 1)[0]
        authority, slash, path = rest.partition("/")
        address = authority.rpartition("@")[2]
        return f"{scheme}{separator}{address}{slash}{path}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class CivitError(Exception):
    """Base class of every error civit raises on purpose."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.url = redact_url(url) if url else None
        self.status = status
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def as_json(self) -> dict[str, object]:
        """The one error shape of every ``--json`` document: ``{"message", "exit_code",
        "hint"}`` (``hint``: what to do about it, or ``None``)."""
        return {"message": self.message, "exit_code": self.exit_code, "hint": self.hint}


class UsageError(CivitError):
    """The request itself is wrong: a malformed ref, a bad option, a 400 from the API."""

    exit_code = 2


class ManifestError(UsageError):
    """``civit.toml`` or ``civit.lock`` is invalid, missing or out of date."""


class AuthError(CivitError):
    """Civitai wants a (valid) API token, or refused this account access."""

    exit_code = 3


class EarlyAccessError(AuthError):
    """The version is in Early Access; ``deadline`` says until when, if Civitai said."""

    def __init__(self, message: str, *, deadline: str | None = None, **context: object) -> None:
        super().__init__(message, **context)  # type: ignore[arg-type]
        self.deadline = deadline


class NotFoundError(CivitError):
    """No model, version, file or hash by that name exists."""

    exit_code = 4


class NotDownloadableError(NotFoundError):
    """It exists but cannot be downloaded: archived, downloads disabled, no such file."""


class ScanRefusedError(NotDownloadableError):
    """Civitai's pickle or virus scan of the file did not pass (``Danger``, ``Error``,
    ``Pending``...); ``scans`` maps each failed scan to its verdict."""

    def __init__(self, message: str, *, scans: dict[str, str], **context: object) -> None:
        super().__init__(message, **context)  # type: ignore[arg-type]
        self.scans = scans


class NetworkError(CivitError):
    """The network or the service failed, and retrying did not help."""

    exit_code = 5


class RateLimitError(CivitError):
    """Civitai rate-limited us beyond what waiting can fix (e.g. the daily download cap)."""

    exit_code = 6


class IntegrityError(CivitError):
    """Downloaded or local bytes do not match the expected size or digest.

    ``algorithm`` names the check that failed ("size", "sha256", ...).
    """

    exit_code = 7

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        algorithm: str | None = None,
        expected: str | None = None,
        actual: str | None = None,
        **context: object,
    ) -> None:
        super().__init__(message, **context)  # type: ignore[arg-type]
        self.path = path
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual


class DiskSpaceError(CivitError):
    """Not enough free space in the destination for the file about to be downloaded."""

    def __init__(
        self, message: str, *, path: str, needed: int, free: int, **context: object
    ) -> None:
        super().__init__(message, **context)  # type: ignore[arg-type]
        self.path = path
        self.needed = needed
        self.free = free


class FileConflictError(CivitError):
    """A file civit did not put there (or one of another model) is at the target.

    ``path`` is that file, ``sha256`` its digest, ``wanted`` the file that was to go
    there. civit never replaces such a file unless told to (``--overwrite``).
    """

    def __init__(
        self, message: str, *, path: str, sha256: str, wanted: str, **context: object
    ) -> None:
        super().__init__(message, **context)  # type: ignore[arg-type]
        self.path = path
        self.sha256 = sha256
        self.wanted = wanted


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a download; ``kept`` lists what it leaves to resume from.

    A :class:`KeyboardInterrupt` (so ``except KeyboardInterrupt`` still catches it),
    not a :class:`CivitError`. ``kept`` holds ``(part_path, bytes)`` for each
    ``.part`` file whose saved state says it holds bytes; running the same download
    again continues from there.
    """

    exit_code = INTERRUPTED_EXIT_CODE

    def __init__(self, kept: tuple[tuple[str, int], ...] = ()) -> None:
        super().__init__("interrupted")
        self.kept = kept


class ResponseError(CivitError):
    """The service answered with something civit cannot understand (e.g. malformed JSON)."""
