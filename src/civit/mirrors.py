"""Mirrors: places tried before Civitai that serve files by their SHA256.

Two kinds, both named by one string (``--mirror``, ``CIVIT_MIRROR``, ``mirror =``):

- an HTTP URL template such as ``http://cache.local/{sha256}`` — any static server or
  public bucket (:class:`TemplateMirror`);
- ``s3://bucket/prefix`` — a private S3-compatible bucket read with the standard AWS
  credentials (:class:`S3Mirror`, through :mod:`civit.s3`).

Either way a mirror only hands out a link; the bytes come through the same engine as
Civitai's (:func:`civit.transfer.fetch`) and are verified the same way, so a damaged
copy can never be installed. Mirror messages name the file's place (``s3://…`` or the
template's URL without its query) but never a signature or a credential.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, urlsplit

from civit.errors import IntegrityError, NotFoundError, UsageError
from civit.s3 import S3Bucket, is_s3_url, parse_s3_url, require_s3_support

if TYPE_CHECKING:
    from civit.cdn import LinkResolver

__all__ = [
    "Mirror",
    "S3Mirror",
    "TemplateMirror",
    "check_mirror",
    "check_mirror_template",
    "mirror_url",
    "open_mirror",
]

_MIRROR_FIELDS = frozenset({"sha256", "SHA256", "name"})
# A mirror that does not answer should hand over to Civitai in seconds.
MIRROR_ATTEMPTS = 2


class Mirror(Protocol):
    """Where a file with a known SHA256 may be fetched from before asking Civitai."""

    def link_resolver(self, *, sha256: str, name: str, size: int | None) -> LinkResolver:
        """A resolver the engine calls for the file's URL (again when a link expires).

        Raises:
            CivitError: the mirror cannot serve the file (missing, damaged, refused,
                unreachable); the caller falls back to Civitai.
        """
        ...


def check_mirror_template(template: str) -> str:
    """Validate a mirror URL template such as ``http://cache.local/{sha256}``.

    Placeholders: ``{sha256}`` (lower-case hex), ``{SHA256}`` (upper-case) and ``{name}``
    (the file name, URL-quoted); one of the SHA256 forms is required, so every file
    gets its own URL.

    Args:
        template: the template.

    Returns:
        The template, unchanged.

    Raises:
        UsageError: not an http(s) URL, unknown placeholders, or no SHA256 in it.
    """
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise UsageError(f"bad mirror template {template!r}: {exc}") from exc
    unknown = sorted(fields - _MIRROR_FIELDS)
    if unknown or not fields & {"sha256", "SHA256"}:
        raise UsageError(
            f"bad mirror template {template!r}: "
            + (f"unknown placeholder {', '.join(unknown)}" if unknown else "it has no {sha256}"),
            hint="use a URL like http://cache.local/{sha256} ({SHA256} and {name} also work), "
            "or s3://BUCKET/PREFIX",
        )
    if urlsplit(template).scheme not in ("http", "https"):
        raise UsageError(
            f"bad mirror template {template!r}: it must start with http(s)://",
            hint="or name a bucket: s3://BUCKET/PREFIX",
        )
    return template


def check_mirror(spec: str) -> str:
    """Validate a mirror: an ``s3://bucket/prefix`` or an HTTP URL template.

    Only the syntax is checked (a manifest may name an S3 mirror on a machine without
    the ``s3`` extra); :func:`open_mirror` checks that the extra is installed.

    Returns:
        ``spec``, unchanged.

    Raises:
        UsageError: neither a valid S3 URL nor a valid template.
    """
    if is_s3_url(spec):
        parse_s3_url(spec)
        return spec
    return check_mirror_template(spec)


def mirror_url(template: str, *, sha256: str, name: str) -> str:
    """Fill a mirror template for one file.

    >>> mirror_url("http://m/{sha256}/{name}", sha256="AB12", name="a b.pt")
    'http://m/ab12/a%20b.pt'
    """
    values = {"sha256": sha256.lower(), "SHA256": sha256.upper(), "name": quote(name, safe="")}
    return template.format_map(values)


class TemplateMirror:
    """An HTTP mirror: the template filled in is the file's URL."""

    def __init__(self, template: str) -> None:
        self.template = check_mirror_template(template)

    def link_resolver(self, *, sha256: str, name: str, size: int | None) -> LinkResolver:
        url = mirror_url(self.template, sha256=sha256, name=name)
        return lambda: url


class S3Mirror:
    """An S3-compatible bucket: a signed HEAD, then a presigned GET for the engine.

    The HEAD, made with the caller's credentials, tells a missing object (404), refused
    credentials (403) and an unreachable endpoint apart before any byte moves, and
    catches a copy of the wrong size (or with a stored SHA256 that differs) without
    downloading it. It runs again whenever the engine asks for a fresh link, so
    credentials that stop working end the mirror attempt with a clear error instead
    of a loop of expired links.
    """

    def __init__(self, bucket: S3Bucket) -> None:
        self.bucket = bucket

    def link_resolver(self, *, sha256: str, name: str, size: int | None) -> LinkResolver:
        where = self.bucket.location.url_for(sha256)

        def resolve() -> str:
            found = self.bucket.head(sha256)
            if found is None:
                raise NotFoundError(f"{where}: no such object (HTTP 404)")
            if size is not None and found.size != size:
                raise IntegrityError(
                    f"{where} has {found.size} bytes, the lock says {size}: a damaged copy",
                    path=where,
                    algorithm="size",
                    expected=str(size),
                    actual=str(found.size),
                )
            if found.sha256 is not None and found.sha256 != sha256.upper():
                raise IntegrityError(
                    f"{where} is stored with SHA256 {found.sha256}: a damaged copy",
                    path=where,
                    algorithm="sha256",
                    expected=sha256.upper(),
                    actual=found.sha256,
                )
            return self.bucket.presigned_get(sha256)

        return resolve


def open_mirror(spec: str, *, timeout: float = 30.0) -> Mirror:
    """The mirror a ``--mirror`` value names.

    Args:
        spec: an HTTP URL template or ``s3://bucket/prefix``.
        timeout: seconds an S3 endpoint may take to connect or answer.

    Raises:
        UsageError: a bad spec, or ``s3://`` without the ``s3`` extra (exit 2).
    """
    if is_s3_url(spec):
        require_s3_support()
        return S3Mirror(S3Bucket(parse_s3_url(spec), attempts=MIRROR_ATTEMPTS, timeout=timeout))
    return TemplateMirror(spec)
