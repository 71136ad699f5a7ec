"""Mirrors: places tried before Civitai that serve files by their SHA256.

Two kinds, both named by one string (``--mirror``, ``CIVIT_MIRROR``, ``mirror =``):

- an HTTP URL template such as ``http://cache.local/{sha256}`` — any static server or
  public bucket (:class:`TemplateMirror`);
- ``s3://bucket/prefix`` — a private S3-compatible bucket read with the standard AWS
  credentials (:class:`S3Mirror`, through :mod:`civit.s3`).

Either way a mirror only hands out a link; the bytes come through the same engine as
Civitai's (:func:`civit.transfer.fetch`) and are verified the same way, so a damaged
copy can never be installed. Mirror messages name the file's place (``s3://…`` or the
template's URL without its query) but never a signature or a credential, and say what
fixes the mirror: Civitai has fetched the file by then.

A failure about one file (missing, damaged, that object refused) passes over that file
only; one no file can escape (credentials refused, the endpoint unreachable, a bad
endpoint setting) switches the mirror off for the rest of the run (:class:`Mirror`).
"""

from __future__ import annotations

import abc
import contextlib
import string
import threading
from collections.abc import Iterator
from typing import Literal
from urllib.parse import quote, urlsplit

from civit.cdn import Unreachable
from civit.errors import (
    AuthError,
    CivitError,
    IntegrityError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ResponseError,
    UsageError,
    redact_url,
)
from civit.s3 import S3Bucket, is_s3_url, parse_s3_url

__all__ = [
    "Mirror",
    "MirrorAttempt",
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


# How a refusal left the mirror: "first" switched it off, "again" came when it was off.
_Verdict = Literal["first", "again", None]
_OFF_FOR_THE_RUN = "the mirror is off for the rest of this run"
# What the storage host answered (or failed to): said of the mirror's copy.
_HOST_FAILURES = (AuthError, NetworkError, NotFoundError, RateLimitError, ResponseError)


class _SwitchedOff(CivitError):
    """The mirror was switched off earlier in the run, so this file was not asked for."""


class Mirror(abc.ABC):
    """Where a file with a known SHA256 may be fetched from before asking Civitai, as
    one run uses it (:func:`open_mirror` makes one per run; the workers share it).

    A failure about one file — missing, damaged, refused for that object — passes over
    that file only. A refusal no file can escape — credentials refused, the endpoint
    unreachable, a bad endpoint setting — switches the mirror off for the rest of the
    run, so a lock of a thousand files asks a broken mirror once, not a thousand times,
    and its report says why in full once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._off: tuple[str, str] | None = None  # (place, cause) of the switching refusal

    @abc.abstractmethod
    def where(self, sha256: str, name: str) -> str:
        """The file's place on the mirror, for messages: no signature, no credential."""

    def attempt(self, *, sha256: str, name: str, size: int | None) -> MirrorAttempt:
        """One file's try: hand :meth:`MirrorAttempt.resolve` to the engine."""
        return MirrorAttempt(self, sha256=sha256, name=name, size=size)

    def switched_off(self) -> str | None:
        """Why the mirror is asked no more this run (one line), or ``None`` while it is on."""
        with self._lock:
            off = self._off
        if off is None:
            return None
        where, cause = off
        return f"not asked: the mirror was switched off after {where} ({cause})"

    # -- what each kind provides --

    @abc.abstractmethod
    def _link(self, sha256: str, name: str, size: int | None, *, again: bool) -> str:
        """The URL the engine fetches; ``again`` when the host refused the last one.

        Raises:
            CivitError: the mirror itself says it cannot serve the file.
        """

    @abc.abstractmethod
    def _cause_for_all(self, error: CivitError) -> str | None:
        """A few words if ``error`` (raised by :meth:`_link`) shuts out every file."""

    @abc.abstractmethod
    def _replace_hint(self) -> str:
        """How to put a right copy in the place of a damaged one."""

    @abc.abstractmethod
    def _unreachable_hint(self) -> str:
        """What to check when the mirror's host cannot be connected to."""

    def _unreachable_cause(self, error: CivitError) -> str | None:
        """A few words if the engine's ``error`` is that the host could not be reached."""
        cause = error.__cause__
        while cause is not None and not isinstance(cause, Unreachable):
            cause = cause.__cause__
        return None if cause is None else f"cannot connect: {cause}"

    def _first_answer(self) -> contextlib.AbstractContextManager[object]:
        """Held while a file asks the mirror for its link."""
        return contextlib.nullcontext()

    # -- the switch --

    def _judge(self, where: str, cause: str | None) -> _Verdict:
        """``"first"`` if this refusal switched the mirror off, ``"again"`` if another had
        already, ``None`` for a failure of this file alone (``cause`` is ``None``)."""
        if cause is None:
            return None
        with self._lock:
            if self._off is not None:
                return "again"
            self._off = (where, cause)
            return "first"

    def _check_on(self) -> None:
        note = self.switched_off()
        if note is not None:
            raise _SwitchedOff(note)


class MirrorAttempt:
    """One file's try at a mirror: the resolver the engine calls, then, if the engine
    failed, why the file was passed over (:meth:`passed_over`)."""

    def __init__(self, mirror: Mirror, *, sha256: str, name: str, size: int | None) -> None:
        self.mirror = mirror
        self.sha256 = sha256
        self.name = name
        self.size = size
        self.where = mirror.where(sha256, name)
        self._asked = 0
        self._answer: CivitError | None = None  # the mirror's own refusal, if it refused
        self._verdict: _Verdict = None
        self._cause: str | None = None

    def resolve(self) -> str:
        """The URL for the engine (a :data:`civit.cdn.LinkResolver`).

        Raises:
            CivitError: the mirror cannot serve the file, or is switched off.
        """
        with self.mirror._first_answer():
            again = self._asked > 0
            if not again:  # a file already coming from the mirror may renew its link
                self.mirror._check_on()
            self._asked += 1
            try:
                return self.mirror._link(self.sha256, self.name, self.size, again=again)
            except CivitError as exc:
                # Judged here, before the next file may ask: a refusal for all is final.
                self._answer = exc
                self._cause = self.mirror._cause_for_all(exc)
                self._verdict = self.mirror._judge(self.where, self._cause)
                raise

    def passed_over(self, error: CivitError) -> str:
        """Why the file did not come from the mirror: one line for the report.

        It names the mirror's copy (never a signed URL, never a credential) and says
        what to do about the mirror, not "run again": Civitai fetches the file. An
        unreachable host switches the mirror off here.
        """
        if isinstance(error, _SwitchedOff):
            return error.message
        if error is self._answer:
            message, hint = error.message, error.hint
            if self.where not in message:
                message = f"{self.where}: {message}"
        else:
            self._cause = self.mirror._unreachable_cause(error)
            self._verdict = self.mirror._judge(self.where, self._cause)
            message, hint = self._engine_failure(error)
        if self._verdict == "again":
            return f"{self.where}: {self._cause}; {_OFF_FOR_THE_RUN}"
        if self._verdict == "first":
            message = f"{message}; {_OFF_FOR_THE_RUN}"
        return f"{message} ({hint})" if hint else message

    def _engine_failure(self, error: CivitError) -> tuple[str, str | None]:
        """The engine's failure, said of the mirror's copy (its messages name the local
        file and advise for Civitai)."""
        if isinstance(error, IntegrityError) and error.algorithm is not None:
            if error.algorithm == "size":
                found = f"{error.actual} bytes"
            else:
                found = f"{error.algorithm.upper()} {error.actual}"
            return (
                f"{self.where} is a damaged copy: {found}, the lock says {error.expected}",
                self.mirror._replace_hint(),
            )
        if isinstance(error, _HOST_FAILURES):
            hint = self.mirror._unreachable_hint() if self._cause is not None else None
            return f"{self.where}: {error.message}", hint
        return error.message, error.hint  # a local failure (a .part swapped, a write refused)


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


class TemplateMirror(Mirror):
    """An HTTP mirror: the template filled in is the file's URL.

    A refused URL (401, 403, 410) is that file's alone: a public bucket answers a
    missing key with 403. A host that cannot be connected to switches the mirror off,
    unless the template puts a placeholder in the host (then each file has its own).
    """

    def __init__(self, template: str) -> None:
        super().__init__()
        self.template = check_mirror_template(template)
        self._one_host = "{" not in urlsplit(template).netloc

    def where(self, sha256: str, name: str) -> str:
        return redact_url(mirror_url(self.template, sha256=sha256, name=name))

    def _link(self, sha256: str, name: str, size: int | None, *, again: bool) -> str:
        if again:  # asked again only when the host refused the URL, which cannot expire
            raise AuthError(
                f"{self.where(sha256, name)}: the mirror refused it (HTTP 401, 403 or 410)"
            )
        return mirror_url(self.template, sha256=sha256, name=name)

    def _cause_for_all(self, error: CivitError) -> str | None:
        return None

    def _unreachable_cause(self, error: CivitError) -> str | None:
        return super()._unreachable_cause(error) if self._one_host else None

    def _replace_hint(self) -> str:
        return (
            "replace it on the mirror: delete it and run `civit mirror push` into the "
            "folder it serves"
        )

    def _unreachable_hint(self) -> str:
        return (
            "check that the mirror is up and its address: --mirror, CIVIT_MIRROR or "
            "mirror in civit.toml"
        )


class S3Mirror(Mirror):
    """An S3-compatible bucket: a signed HEAD, then a presigned GET for the engine.

    The HEAD, made with the caller's credentials, tells a missing object (404), refused
    credentials (403) and an unreachable endpoint apart before any byte moves, and
    catches a copy of the wrong size (or with a stored SHA256 that differs) without
    downloading it. It runs again whenever the engine asks for a fresh link, so
    credentials that stop working end the mirror attempt with a clear error instead
    of a loop of expired links.

    Until the bucket has answered once, files ask one at a time, so refused
    credentials cost one request, not one per worker. A 403 switches the mirror off
    unless the bucket has answered another HEAD this run: S3 answers a missing object
    with 403 to a reader without ``s3:ListBucket``, and once the credentials have
    worked, a 403 is about that object.
    """

    def __init__(self, bucket: S3Bucket) -> None:
        super().__init__()
        self.bucket = bucket
        self._gate = threading.Lock()
        self._answered = threading.Event()  # the first HEAD has ended, one way or another
        self._credentials_work = False

    def where(self, sha256: str, name: str) -> str:
        return self.bucket.location.url_for(sha256)

    @contextlib.contextmanager
    def _first_answer(self) -> Iterator[None]:
        if self._answered.is_set():
            yield
            return
        with self._gate:
            try:
                yield
            finally:
                self._answered.set()

    def _link(self, sha256: str, name: str, size: int | None, *, again: bool) -> str:
        where = self.where(sha256, name)
        found = self.bucket.head(sha256)
        self._credentials_work = True
        if found is None:
            raise NotFoundError(f"{where}: no such object (HTTP 404)")
        push_again = (
            f"run `civit mirror push {self.bucket.location}` again: it replaces a wrong object"
        )
        if size is not None and found.size != size:
            raise IntegrityError(
                f"{where} has {found.size} bytes, the lock says {size}: a damaged copy",
                path=where,
                algorithm="size",
                expected=str(size),
                actual=str(found.size),
                hint=push_again,
            )
        if found.sha256 is not None and found.sha256 != sha256.upper():
            raise IntegrityError(
                f"{where} is stored with SHA256 {found.sha256}: a damaged copy",
                path=where,
                algorithm="sha256",
                expected=sha256.upper(),
                actual=found.sha256,
                hint=push_again,
            )
        return self.bucket.presigned_get(sha256)

    def _cause_for_all(self, error: CivitError) -> str | None:
        if isinstance(error, UsageError):  # no client: a bad endpoint or profile
            return "S3 access could not be set up"
        if isinstance(error, AuthError) and (error.status is None or not self._credentials_work):
            return "S3 refused access"
        if isinstance(error, NetworkError) and error.status is None:  # no HTTP answer at all
            return "the S3 endpoint could not be reached"
        return None

    def _replace_hint(self) -> str:
        return (
            f"delete it, then run `civit mirror push {self.bucket.location}` again: push "
            "keeps an object whose size is right"
        )

    def _unreachable_hint(self) -> str:
        return "check AWS_ENDPOINT_URL and the network"


def open_mirror(spec: str, *, timeout: float = 30.0) -> Mirror:
    """The mirror a ``--mirror`` value names.

    Args:
        spec: an HTTP URL template or ``s3://bucket/prefix``.
        timeout: seconds an S3 endpoint may take to connect or answer.

    Raises:
        UsageError: a bad spec, or ``s3://`` without the ``s3`` extra (exit 2).
    """
    if is_s3_url(spec):  # S3Bucket checks that the s3 extra is installed
        return S3Mirror(S3Bucket(parse_s3_url(spec), attempts=MIRROR_ATTEMPTS, timeout=timeout))
    return TemplateMirror(spec)
