"""Parse every way users name a Civitai model, version or file into one :class:`Ref`.

Accepted forms (surrounding whitespace is ignored)::

    827184                                   model id (a string of only digits is ALWAYS an id)
    827184@2514310                           model id and version id
    @2514310                                 version id alone (what ``str`` prints for it)
    civitai.com/models/827184[/slug][?modelVersionId=2514310]
    civitai.com/api/download/models/2514310[?fileId=N | ?type=&format=&size=&fp=]
    civitai.com/api/v1/models/827184
    civitai.com/api/v1/model-versions/2514310
    civitai.com/api/v1/model-versions/by-hash/<hash>
    urn:air:sdxl:checkpoint:civitai:827184@2514310[:layer][.format]
    <hash>  or  sha256:<hash>                SHA256/BLAKE3 (64 hex), AutoV3 (12), AutoV2 (10),
                                             AutoV1/CRC32 (8)

URLs may omit the scheme, carry ``www.``, a trailing slash, any slug and any extra query
keys; hosts are ``civitai.com`` and ``civitai.red`` (and ``api.civitai.com`` for API and
download paths, with or without the ``/api`` prefix). Ids are 1 to 12 digits.

An 8- or 10-digit hash made only of digits would read as a model id; prefix it with
``hash:`` (or its algorithm, e.g. ``autov2:``) to say it is a hash. ``str(ref)`` does so.

Parsing never touches the network: whether the ids exist is the API's business.

Secrets in pasted URLs: Civitai's docs tell people to append ``?token=`` to download
links, presigned storage links carry ``X-Amz-*``/``Signature``/``sig`` values, and a URL
may hold ``user:secret@``. :func:`redact_ref` is how civit echoes any ref (``--json``,
error lines, ``civit.lock``, install reports); :func:`pasted_token` lets the CLI use a
pasted token as the API token (sent as a header, never in a URL, never shown).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote_plus, urlsplit

from civit.errors import UsageError
from civit.records import HASH_ALGORITHMS

__all__ = ["ACCEPTED_FORMS", "Ref", "parse_ref", "pasted_token", "redact_ref"]

ACCEPTED_FORMS = (
    "Use a model id (827184), model@version (827184@2514310), a civitai.com model or "
    "download URL, an AIR (urn:air:sdxl:checkpoint:civitai:827184@2514310) or a "
    "SHA256/AutoV2 hash"
)

# Hex digest lengths Civitai stores: AutoV1/CRC32, AutoV2, AutoV3, SHA256/BLAKE3.
_HASH_LENGTHS = frozenset({8, 10, 12, 64})
_HASH_PREFIXES = ("hash", *HASH_ALGORITHMS)

_MAX_ID_DIGITS = 12
# Zero is a well-formed id: Civitai itself answers "No model with id 0" (exit 4), and
# that is the clearer message for a user who typed it.
_ID = rf"0*[0-9]{{1,{_MAX_ID_DIGITS}}}"
_ID_FORM = re.compile(rf"(?P<model>{_ID})?(?:@(?P<version>{_ID}))?", re.ASCII)
_HASH_FORM = re.compile(
    rf"(?:(?P<prefix>{'|'.join(_HASH_PREFIXES)}):)?(?P<hex>[0-9a-f]+)", re.ASCII | re.IGNORECASE
)
# urn:air:{ecosystem}:{type}:{source}:{id}[@{version}][:{layer}][.{format}]
_AIR_FORM = re.compile(
    r"(?:urn:)?air:(?P<ecosystem>[^:]*):(?P<type>[^:]*):(?P<source>[^:]*):"
    r"(?P<id>[^:@.]*)(?:@(?P<version>[^:@.]*))?(?::(?P<layer>[^:.]*))?(?:\.(?P<format>[^:.]*))?",
    re.IGNORECASE,
)
_SITE_HOSTS = frozenset({"civitai.com", "civitai.red"})
_API_HOST = "api.civitai.com"
_HINT_KEYS = ("type", "format", "size", "fp")
# Query keys whose values are credentials: API tokens, and the signatures of presigned
# links (S3 ``X-Amz-*``, GCS ``X-Goog-*``, CloudFront ``Signature``/``Policy``/
# ``Key-Pair-Id``, the fake's ``sig``).
_SECRET_KEYS = frozenset(
    {"token", "access_token", "api_key", "apikey", "signature", "sig", "policy", "key-pair-id"}
)
_SECRET_PREFIXES = ("x-amz-", "x-goog-")
_USERINFO = re.compile(r"^(?P<prefix>(?:[a-z][a-z0-9+.-]*:)?//)?[^/?#@]*@", re.IGNORECASE)


@dataclass(frozen=True)
class Ref:
    """What a user named: a model, a version (maybe with its model) or a file hash.

    Exactly one of ``model_id``, ``version_id`` and ``hash`` identifies the target; a
    version ref may also carry the ``model_id`` it belongs to. Download URLs can add
    ``file_id`` (exact file) or the server's selection hints ``type``/``format``/``size``/
    ``fp``; those are preferences for choosing a file, not part of the identity, so
    ``str(ref)`` leaves them out.

    Raises:
        UsageError: if the fields do not name exactly one target, an id is negative or too long,
            or the hash is not hex of a length Civitai uses.
    """

    model_id: int | None = None
    version_id: int | None = None
    hash: str | None = None
    file_id: int | None = None
    type: str | None = None
    format: str | None = None
    size: str | None = None
    fp: str | None = None

    def __post_init__(self) -> None:
        for name in ("model_id", "version_id", "file_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 10**_MAX_ID_DIGITS:
                raise UsageError(f"{name} must be an id of at most 12 digits: {value}")
        if self.hash is not None:
            if self.model_id is not None or self.version_id is not None:
                raise UsageError("a hash ref cannot also name a model or version id")
            if not _is_hash(self.hash):
                raise UsageError(f"not a Civitai hash: {self.hash!r}")
            object.__setattr__(self, "hash", self.hash.upper())
        elif self.model_id is None and self.version_id is None:
            raise UsageError("a ref needs a model id, a version id or a hash")
        has_file_hints = self.file_id is not None or any(
            getattr(self, key) is not None for key in _HINT_KEYS
        )
        if has_file_hints and self.version_id is None:
            raise UsageError("a file id or file selection hint needs a version id")

    def __str__(self) -> str:
        if self.hash is not None:
            # An all-digit hash would read back as a model id.
            return f"hash:{self.hash}" if self.hash.isdigit() else self.hash
        if self.version_id is None:
            return str(self.model_id)
        return f"{'' if self.model_id is None else self.model_id}@{self.version_id}"


def parse_ref(text: str) -> Ref:
    """Parse any supported way of naming a model, version or file (see the module doc).

    Args:
        text: what the user typed, a URL, an AIR or a hash.

    Returns:
        The parsed reference.

    Raises:
        UsageError: if ``text`` is none of the accepted forms; the message lists them.

    >>> ref = parse_ref("https://civitai.com/models/827184/wai?modelVersionId=2514310")
    >>> ref.model_id, ref.version_id
    (827184, 2514310)
    >>> str(parse_ref("urn:air:sdxl:checkpoint:civitai:827184@2514310"))
    '827184@2514310'
    """
    stripped = text.strip()
    if not stripped:
        raise _rejection(text, "it is empty")
    ids = _ID_FORM.fullmatch(stripped)
    if ids and (ids["model"] or ids["version"]):
        return Ref(model_id=_to_int(ids["model"]), version_id=_to_int(ids["version"]))
    if stripped.isascii() and stripped.isdigit():
        raise _rejection(text, "ids are numbers of at most 12 digits")
    digest = _HASH_FORM.fullmatch(stripped)
    if digest and len(digest["hex"]) in _HASH_LENGTHS:
        return Ref(hash=digest["hex"])
    air = _AIR_FORM.match(stripped)
    if air:
        if air["source"].lower() != "civitai":
            reason = f"only civitai AIRs are supported, not source {air['source']!r}"
            raise _rejection(text, reason)
        return _parse_air(text, stripped)
    if "/" in stripped or stripped.lower().startswith(("civitai.", "www.civitai.")):
        return _parse_url(text, stripped)
    raise _rejection(text)


def _is_hash(value: str) -> bool:
    return len(value) in _HASH_LENGTHS and re.fullmatch(r"[0-9a-fA-F]+", value) is not None


def _to_int(digits: str | None) -> int | None:
    return int(digits) if digits else None


def _id(text: str, value: str | None, what: str) -> int:
    if value is None or not re.fullmatch(_ID, value, re.ASCII):
        raise _rejection(text, f"{what} must be a number of at most 12 digits")
    return int(value)


def _rejection(text: str, reason: str | None = None) -> UsageError:
    shown = redact_ref(text.strip())
    if len(shown) > 120:
        shown = shown[:117] + "..."
    because = f" ({reason})" if reason else ""
    return UsageError(f"not a model reference: {shown!r}{because}. {ACCEPTED_FORMS}")


def _is_secret_key(key: str) -> bool:
    name = unquote_plus(key).strip().lower()
    return name in _SECRET_KEYS or name.startswith(_SECRET_PREFIXES)


def redact_ref(text: str) -> str:
    """``text`` as civit may show or store it: without user info, secret query values
    (``token``, ``X-Amz-*``, ``Signature``, ``sig``...) or a fragment.

    Everything else stays as typed, so the result still names the same thing
    (:func:`parse_ref` reads it back to the same :class:`Ref`). Text that is not a URL
    comes back unchanged.

    >>> redact_ref("https://me:pw@civitai.com/api/download/models/2514310?token=S&fileId=7")
    'https://civitai.com/api/download/models/2514310?fileId=7'
    >>> redact_ref("civitai.com/models/1?modelVersionId=2&X-Amz-Signature=abc")
    'civitai.com/models/1?modelVersionId=2'
    >>> redact_ref("827184@2514310")
    '827184@2514310'
    """
    if "/" not in text and "?" not in text and "#" not in text:
        return text  # ids, id@version, AIRs and hashes hold no secrets
    head, _, query = text.partition("?")
    head = head.partition("#")[0]
    query = query.partition("#")[0]
    head = _USERINFO.sub(lambda found: found["prefix"] or "", head, count=1)
    kept = [pair for pair in query.split("&") if pair and not _is_secret_key(pair.split("=")[0])]
    return head + ("?" + "&".join(kept) if kept else "")


def pasted_token(text: str) -> str | None:
    """The API token a user pasted into a URL ref as ``?token=``, if any.

    >>> pasted_token("https://civitai.com/api/download/models/2514310?token=abc123")
    'abc123'
    >>> pasted_token("827184") is None
    True
    """
    query = text.partition("?")[2].partition("#")[0]
    values = [v.strip() for v in parse_qs(query).get("token", []) if v.strip()]
    return values[-1] if values else None


def _parse_air(text: str, stripped: str) -> Ref:
    air = _AIR_FORM.fullmatch(stripped)
    if air is None:
        raise _rejection(text, "malformed AIR")
    model_id = _id(text, air["id"], "the AIR's model id")
    version_id = _id(text, air["version"], "the AIR's version id") if air["version"] else None
    return Ref(model_id=model_id, version_id=version_id)


def _parse_url(text: str, stripped: str) -> Ref:
    try:
        parts = urlsplit(stripped if "://" in stripped else f"https://{stripped}")
    except ValueError as exc:  # e.g. an unbalanced "[" in the host
        raise _rejection(text, "malformed URL") from exc
    host = (parts.hostname or "").removeprefix("www.")
    if parts.scheme.lower() not in ("http", "https"):
        raise _rejection(text, "only http(s) URLs are supported")
    if host not in _SITE_HOSTS and host != _API_HOST:
        raise _rejection(text, "only civitai.com URLs are supported")
    segments = [s for s in parts.path.split("/") if s]
    if host == _API_HOST and segments[:1] != ["api"]:
        # api.civitai.com serves the same routes without the /api prefix.
        segments.insert(0, "api")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    return _ref_from_path(text, segments, query)


def _ref_from_path(text: str, segments: list[str], query: dict[str, str]) -> Ref:
    route = [s.lower() for s in segments[:4]]
    if route[:1] == ["models"] and len(segments) >= 2:
        model_id = _id(text, segments[1], "the model id")
        version = query.get("modelVersionId")
        version_id = _id(text, version, "modelVersionId") if version is not None else None
        return Ref(model_id=model_id, version_id=version_id)
    if route[:3] == ["api", "download", "models"] and len(segments) == 4:
        file_id = query.get("fileId")
        return Ref(
            version_id=_id(text, segments[3], "the version id"),
            file_id=_id(text, file_id, "fileId") if file_id is not None else None,
            type=query.get("type"),
            format=query.get("format"),
            size=query.get("size"),
            fp=query.get("fp"),
        )
    if route[:3] == ["api", "v1", "models"] and len(segments) == 4:
        return Ref(model_id=_id(text, segments[3], "the model id"))
    if route[:4] == ["api", "v1", "model-versions", "by-hash"] and len(segments) == 5:
        if not _is_hash(segments[4]):
            raise _rejection(text, "not a SHA256/AutoV2 hash")
        return Ref(hash=segments[4])
    if route[:3] == ["api", "v1", "model-versions"] and len(segments) == 4:
        return Ref(version_id=_id(text, segments[3], "the version id"))
    raise _rejection(text, "not a model, version or download URL")
