"""The Civitai REST client: one ``httpx.Client``, retries, and error mapping.

Everything that talks to the API origin goes through :class:`Client`. It

- sends ``Authorization: Bearer`` only to the API origin (never to the CDN a download
  redirects to, never in a URL);
- retries 429 and 502/503/504 and dropped connections with exponential backoff and
  jitter, honouring ``Retry-After``; never retries other 4xx, nor the 429 Civitai uses
  for "page * limit > 1000" (that one needs cursors, not patience);
- turns every HTTP or transport failure into a :mod:`civit.errors` exception, at one
  boundary (:meth:`Client._send`), so no ``httpx`` exception escapes the library.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from civit._version import PROJECT_URL, VERSION
from civit.config import Settings, load_settings, set_variable_hint
from civit.errors import (
    AuthError,
    EarlyAccessError,
    NetworkError,
    NotDownloadableError,
    NotFoundError,
    RateLimitError,
    ResponseError,
    UsageError,
    redact_url,
)
from civit.network import ProxyRules, httpx_mounts, proxy_rules, tls_context
from civit.records import HashMatch, Model, ModelPage, Version
from civit.refs import Ref
from civit.responses import ACCEPT_ENCODING, read_bounded
from civit.select import newest_version

__all__ = [
    "MAX_RETRY_AFTER",
    "REGION_HINT",
    "USER_AGENT",
    "Client",
    "DownloadLink",
    "PublicBytes",
    "RetryPolicy",
    "is_html",
    "parse_retry_after",
    "using_client",
]

USER_AGENT = f"civit/{VERSION} (+{PROJECT_URL})"

TOKEN_HINT = (
    "create an API key at https://civitai.com/user/account (API Keys) and set it with "
    f"{set_variable_hint('CIVITAI_API_TOKEN')} or pass --token"
)

#: Filters of GET /api/v1/models, Python name -> API name.
MODEL_FILTERS = {
    "limit": "limit",
    "page": "page",
    "cursor": "cursor",
    "query": "query",
    "ids": "ids",
    "tag": "tag",
    "username": "username",
    "types": "types",
    "base_models": "baseModels",
    "checkpoint_type": "checkpointType",
    "sort": "sort",
    "period": "period",
    "nsfw": "nsfw",
    "supports_generation": "supportsGeneration",
    "from_platform": "fromPlatform",
    "early_access": "earlyAccess",
    "primary_file_only": "primaryFileOnly",
    "favorites": "favorites",
    "hidden": "hidden",
}

REGION_HINT = (
    "Civitai blocks some regions for legal reasons and civit cannot change that; if "
    "your network normally reaches Civitai through a proxy, set it with --proxy or "
    "HTTPS_PROXY"
)

#: The longest ``Retry-After`` honoured (API and storage alike): a server asking for a
#: day is waited for this long, and a nonsense value is no value.
MAX_RETRY_AFTER = 300.0
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
BY_HASH_BATCH = 10_000
#: Error answers, redirects and the download endpoint's answers are read only this far:
#: their first lines say everything, and a file sent instead of a redirect is refused.
SHORT_ANSWER_LIMIT = 16 * 1024
#: Seconds an API answer may take from request to last byte (a trickle ends there).
DEFAULT_DEADLINE = 120.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry transient failures.

    The n-th retry waits ``Retry-After`` when the server sent one, else
    ``min(max_delay, base_delay * 2**n)`` scaled by a random factor in [0.5, 1].
    A ``Retry-After`` beyond ``max_wait`` is not waited out.
    """

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_wait: float = 120.0

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return retry_after
        return min(self.max_delay, self.base_delay * 2.0**retry) * random.uniform(0.5, 1.0)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).

    At most :data:`MAX_RETRY_AFTER`; ``None`` (no advice: back off as usual) for values
    that are not a finite, non-negative number or a date.

    >>> parse_retry_after("3"), parse_retry_after("86400"), parse_retry_after("nan")
    (3.0, 300.0, None)
    >>> parse_retry_after("soon") is None, parse_retry_after("-5") is None
    (True, True)
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        import email.utils  # only for the rare HTTP-date form; it costs start-up time

        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            return None
        seconds = max(moment.timestamp() - time.time(), 0.0)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)


def is_html(response: httpx.Response) -> bool:
    """Whether a response is an HTML page (a login or challenge page, never a model)."""
    return "html" in response.headers.get("content-type", "").lower()


def _origin(url: str | httpx.URL) -> tuple[str, str, int | None]:
    parts = urlsplit(str(url))
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _is_final_429(response: httpx.Response, *, retry_bare_429: bool) -> bool:
    """429s that waiting cannot fix: the deep-paging limit, and (on downloads) the cap.

    The daily download cap is Civitai's own JSON answer without ``Retry-After``; a
    bare 429 from Cloudflare or the storage network in front of it is throttling,
    retried with backoff like any other.
    """
    if response.status_code != 429:
        return False
    if "cursor" in _error_text(response)[0].lower():
        return True
    return not retry_bare_429 and _is_daily_cap(response)


def _is_daily_cap(response: httpx.Response) -> bool:
    """Whether a 429 is Civitai's daily download cap (its JSON error, no Retry-After)."""
    if response.status_code != 429 or "retry-after" in response.headers or is_html(response):
        return False
    return bool(_error_text(response)[1])


def _error_text(response: httpx.Response) -> tuple[str, dict[str, Any]]:
    """The ``error``/``message`` of a JSON error body, or a short plain-text excerpt."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError, RecursionError):
        body = None
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("error", "message") if isinstance(body.get(k), str)]
        return ": ".join(dict.fromkeys(parts)) or response.reason_phrase, body
    if is_html(response):
        return "an HTML page instead of an API answer", {}
    text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    return text or response.reason_phrase or f"HTTP {response.status_code}", {}


@dataclass(frozen=True)
class PublicBytes:
    """A body fetched without credentials, and its media type (``image/png``...)."""

    data: bytes
    content_type: str


@dataclass(frozen=True)
class DownloadLink:
    """A resolved, short-lived link to a file's bytes on the storage host.

    ``url`` is secret-bearing (a presigned signature): never print it; use ``safe_url``.
    """

    url: str
    version_id: int
    file_id: int | None

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    def __repr__(self) -> str:
        return f"DownloadLink({self.safe_url!r}, version_id={self.version_id})"


class Client:
    """A Civitai API client. Thread-safe; close it (or use ``with``) when done.

    Args:
        base_url: API origin, default from ``settings`` (``CIVITAI_BASE_URL``, config).
        token: API token, default from ``settings`` (``CIVITAI_API_TOKEN``, config).
        settings: merged settings; read from the environment and config when omitted.
        timeout: connect/read timeout in seconds for API calls.
        retry: retry policy for transient failures.
        deadline: seconds one API answer may take, first byte to last; a slower one
            (a trickle) is a :class:`NetworkError`.
        max_answer_bytes: the largest API answer read (after decompression); default
            from ``settings`` (``max_api_response_mb``, 64 MiB).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        token: str | None = None,
        settings: Settings | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        deadline: float = DEFAULT_DEADLINE,
        max_answer_bytes: int | None = None,
    ) -> None:
        settings = settings or load_settings()
        self.deadline = deadline
        self.max_answer_bytes = max_answer_bytes or settings.max_api_response_mb * 1024 * 1024
        self.base_url = (base_url or settings.base_url).rstrip("/")
        self._token = token if token is not None else settings.token
        self.retry = retry or RetryPolicy(attempts=settings.retries)
        if urlsplit(self.base_url).scheme not in ("http", "https"):
            raise UsageError(f"base URL must start with http:// or https://: {self.base_url!r}")
        #: Which proxy each URL goes through; the download engine uses the same rules.
        self.proxies: ProxyRules = proxy_rules(settings.proxy)
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            verify=tls_context(),
            trust_env=False,  # proxies come from self.proxies, certificates from tls_context
            mounts=httpx_mounts(self.proxies),
            follow_redirects=False,
            headers={
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                "Accept-Encoding": ACCEPT_ENCODING,
            },
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, token={'set' if self._token else 'unset'})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def has_token(self) -> bool:
        return bool(self._token)

    # -- transport -------------------------------------------------------------------

    def _headers_for(self, url: str) -> dict[str, str]:
        if self._token and _origin(url) == _origin(self.base_url):
            return {"Authorization": f"Bearer {self._token}"}
        return {}

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: list[tuple[str, str]] | None = None,
        json_body: object = None,
        retry_bare_429: bool = True,
        short_answer: bool = False,
    ) -> httpx.Response:
        """Send with retries; return the first non-retryable or the last response.

        ``retry_bare_429=False`` treats a 429 without ``Retry-After`` as final: on the
        download endpoint that is the daily download cap, which no wait fixes.
        ``short_answer=True`` reads at most :data:`SHORT_ANSWER_LIMIT` of any answer.

        Raises:
            NetworkError: the connection failed on every try, or an answer missed the
                deadline.
            ResponseError: a success answer larger than :attr:`max_answer_bytes`.
        """
        last_response: httpx.Response | None = None
        problem = ""
        for attempt in range(self.retry.attempts):
            retry_after = None
            try:
                response = self._request(
                    method, url, params=params, json_body=json_body, short_answer=short_answer
                )
            except httpx.TransportError as exc:
                if isinstance(exc, httpx.RemoteProtocolError) and "location" in str(exc).lower():
                    # A redirect to an address that is not a URL: no retry makes it one.
                    raise ResponseError(
                        f"Civitai redirected to an invalid address from {redact_url(url)}",
                        url=url,
                        hint="run the same command again; report it if it keeps happening",
                    ) from exc
                last_response = None
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            except httpx.HTTPError as exc:
                raise NetworkError(f"request to {redact_url(url)} failed: {exc}", url=url) from exc
            else:
                if response.status_code not in RETRYABLE_STATUS or _is_final_429(
                    response, retry_bare_429=retry_bare_429
                ):
                    return response
                last_response = response
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                if retry_after is not None and retry_after > self.retry.max_wait:
                    return response
            if attempt + 1 < self.retry.attempts:
                time.sleep(self.retry.delay(attempt, retry_after))
        if last_response is not None:
            return last_response
        proxy = self.proxies.proxy_for(url)
        through = f" through the proxy {redact_url(proxy)}" if proxy else ""
        raise NetworkError(
            f"cannot reach {redact_url(url)}{through} after {self.retry.attempts} tries "
            f"({problem})",
            url=url,
            hint=f"check your connection{' and the proxy' if proxy else ''}, then run the "
            "command again",
        )

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: list[tuple[str, str]] | None,
        json_body: object,
        short_answer: bool,
    ) -> httpx.Response:
        """One request, its answer read within :attr:`deadline` and the size limits."""
        deadline = time.monotonic() + self.deadline
        request = self._http.build_request(
            method,
            url,
            params=httpx.QueryParams(tuple(params or ())),
            json=json_body,
            headers=self._headers_for(url),
        )
        streamed = self._http.send(request, stream=True)
        short = short_answer or streamed.status_code >= 300
        limit = SHORT_ANSWER_LIMIT if short else self.max_answer_bytes
        what = f"the answer from {redact_url(url)}"
        return read_bounded(streamed, limit=limit, deadline=deadline, what=what, cut=short).response

    def _raise_for_status(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if status < 400:
            return
        text, _ = _error_text(response)
        url = str(response.request.url)
        if status == 400:
            raise UsageError(f"Civitai rejected the request for {what}: {text}", url=url)
        if status == 401:
            raise AuthError(
                f"Civitai refused {what}: {text}", url=url, status=status, hint=TOKEN_HINT
            )
        if status == 403:
            raise AuthError(f"access to {what} is forbidden: {text}", url=url, status=status)
        if status == 404:
            raise NotFoundError(text if text != "Not Found" else f"{what} not found", url=url)
        if status == 410:
            raise NotDownloadableError(f"{what} is gone: {text}", url=url, status=status)
        if status == 451:
            raise AuthError(
                f"Civitai is not available in your region (HTTP 451): {text}",
                url=url,
                status=status,
                hint=REGION_HINT,
            )
        if status == 429:
            if "cursor" in text.lower():
                raise UsageError(f"{text} (page * limit must stay within 1000)", url=url)
            # Throttling, not the daily download cap (exit 6 is only for that answer).
            wait = parse_retry_after(response.headers.get("retry-after"))
            raise NetworkError(
                f"Civitai kept throttling requests for {what} (HTTP 429) after "
                f"{self.retry.attempts} tries: {text}",
                url=url,
                status=status,
                hint=f"try again in {wait:.0f} s" if wait else "wait a few minutes and try again",
            )
        raise NetworkError(
            f"Civitai failed to answer {what}: HTTP {status} {text}",
            url=url,
            status=status,
            hint="the service may be down; try again later",
        )

    def _get_json(self, path: str, what: str, params: list[tuple[str, str]] | None = None) -> Any:
        response = self._send("GET", self.base_url + path, params=params)
        return self._decode(response, what)

    def _decode(self, response: httpx.Response, what: str) -> Any:
        self._raise_for_status(response, what)
        if response.status_code >= 300 or is_html(response):
            raise ResponseError(
                f"unexpected answer for {what}: HTTP {response.status_code} "
                f"{response.headers.get('content-type', '')}".rstrip(),
                url=str(response.request.url),
            )
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting too
            raise ResponseError(
                f"Civitai sent malformed JSON for {what}",
                url=str(response.request.url),
                hint="the service may be having trouble; try again later",
            ) from exc

    # -- metadata --------------------------------------------------------------------

    def get_model(self, model_id: int) -> Model:
        """``GET /api/v1/models/{id}``.

        Raises:
            NotFoundError: no such model (Civitai's message, e.g. "No model with id 0").
        """
        model = Model.from_json(self._get_json(f"/api/v1/models/{model_id}", f"model {model_id}"))
        if model is None:
            raise ResponseError(f"Civitai's answer for model {model_id} has no model in it")
        return model

    def get_version(self, version_id: int) -> Version:
        """``GET /api/v1/model-versions/{id}`` (includes model id, name and type)."""
        what = f"model version {version_id}"
        version = Version.from_json(self._get_json(f"/api/v1/model-versions/{version_id}", what))
        if version is None:
            raise ResponseError(f"Civitai's answer for {what} has no version in it")
        return version

    def get_version_by_hash(self, digest: str) -> Version:
        """``GET /api/v1/model-versions/by-hash/{hash}``; any stored hash type works.

        Raises:
            NotFoundError: Civitai knows no file with that hash.
        """
        what = f"hash {digest}"
        try:
            doc = self._get_json(f"/api/v1/model-versions/by-hash/{digest}", what)
        except NotFoundError as exc:
            raise NotFoundError(f"no model on Civitai has a file with hash {digest}") from exc
        version = Version.from_json(doc)
        if version is None:
            raise ResponseError(f"Civitai's answer for {what} has no version in it")
        return version

    def get_version_for(
        self, ref: Ref, *, full: bool = False, early_access: bool = False
    ) -> Version:
        """The version ``ref`` names: the pinned one, the hash's, or for a model ref the
        newest a user can download now (:func:`civit.select.newest_version`).

        Args:
            ref: a parsed reference.
            full: for a model ref, fetch that version's own record too (it adds
                ``air`` and the ``model`` summary, as ``.civitai.info`` sidecars want).
            early_access: for a model ref, take the newest version even in Early Access.

        Raises:
            NotFoundError: unknown model, version or hash.
            UsageError: the version belongs to another model than the ref says.
        """
        if ref.hash is not None:
            return self.get_version_by_hash(ref.hash)
        if ref.version_id is not None:
            version = self.get_version(ref.version_id)
            if ref.model_id is not None and version.model_id not in (None, ref.model_id):
                raise UsageError(
                    f"version {ref.version_id} belongs to model {version.model_id}, "
                    f"not {ref.model_id}",
                    hint=f"use {version.model_id}@{ref.version_id}",
                )
            return version
        assert ref.model_id is not None
        _, version = self.get_newest_version(ref.model_id, full=full, early_access=early_access)
        return version

    def get_newest_version(
        self, model_id: int, *, full: bool = False, early_access: bool = False
    ) -> tuple[Model, Version]:
        """A model and its newest version a user can download now
        (:func:`civit.select.newest_version`; the model says what was passed over).

        Args:
            model_id: the model.
            full: fetch the version's own record too (see :meth:`get_version_for`).
            early_access: take the newest version even in Early Access.

        Raises:
            NotFoundError: unknown model. NotDownloadableError: it has no versions.
        """
        model = self.get_model(model_id)
        version = newest_version(model, early_access=early_access)
        return model, (self.get_version(version.id) if full else version)

    def versions_by_hashes(self, sha256s: Sequence[str]) -> tuple[HashMatch, ...]:
        """Identify many files at once (``POST /api/v1/model-versions/by-hash/ids``).

        Sends batches of up to 10,000 SHA256 digests; unknown digests are absent from
        the answer.
        """
        matches: list[HashMatch] = []
        for start in range(0, len(sha256s), BY_HASH_BATCH):
            batch = [digest.upper() for digest in sha256s[start : start + BY_HASH_BATCH]]
            response = self._send(
                "POST", self.base_url + "/api/v1/model-versions/by-hash/ids", json_body=batch
            )
            matches.extend(HashMatch.parse_all(self._decode(response, "a hash lookup")))
        return tuple(matches)

    def list_models(self, **filters: Any) -> ModelPage:
        """One page of ``GET /api/v1/models``; keyword names as in :data:`MODEL_FILTERS`.

        Lists (``types``, ``base_models``) repeat the parameter; ``ids`` is joined with
        commas; booleans are sent as ``true``/``false``.

        Raises:
            UsageError: an unknown filter name, or Civitai rejected a value (400).
        """
        return ModelPage.from_json(
            self._get_json("/api/v1/models", "the model list", _model_params(filters))
        )

    def iter_models(self, *, max_items: int | None = None, **filters: Any) -> Iterator[Model]:
        """Every model matching ``filters``, following cursors page by page.

        Cursor paging never trips Civitai's ``page * limit <= 1000`` limit, so this
        reaches any depth. ``page`` is not allowed here.
        """
        if "page" in filters:
            raise UsageError("iter_models pages by cursor; do not pass page")
        filters.setdefault("limit", 100 if max_items is None else max(1, min(max_items, 100)))
        seen = 0
        while True:
            page = self.list_models(**filters)
            for model in page.items:
                if max_items is not None and seen >= max_items:
                    return
                seen += 1
                yield model
            if not page.next_cursor or not page.items:
                return
            filters["cursor"] = page.next_cursor

    # -- public bytes (previews, file headers) ----------------------------------------

    def fetch_public(
        self,
        url: str,
        *,
        limit: int,
        accept: str = "*/*",
        first_bytes: int | None = None,
        what: str = "a file",
    ) -> PublicBytes:
        """GET something that needs no credentials: a preview image, or the first
        bytes of a file behind a presigned link. Bounded, and never with the token.

        The ``Authorization`` header is not sent even to the API origin, redirects are
        followed, and the body is read up to ``limit`` bytes (after decompression) within
        the client's API deadline.

        Args:
            url: the http(s) URL.
            limit: the most bytes to accept; a longer answer is an error, unless
                ``first_bytes`` asked for a prefix (then the rest is not read).
            accept: the ``Accept`` header.
            first_bytes: ask for (at most) this many leading bytes with ``Range``; a
                server that ignores ``Range`` is read only that far.
            what: how messages name it.

        Returns:
            The body and its content type.

        Raises:
            NetworkError: the connection failed, the server answered an error, or the
                body was still arriving after the API deadline (a trickle).
            ResponseError: the answer is larger than ``limit``.
            UsageError: not an http(s) URL.
        """
        try:
            scheme = urlsplit(url).scheme
        except ValueError:  # a broken address (http://[::1/x) is no http(s) URL either
            scheme = ""
        if scheme not in ("http", "https"):
            raise UsageError(f"refusing to fetch {what} from {redact_url(url)}: not http(s)")
        headers = {"Accept": accept}
        cap = limit
        if first_bytes is not None:
            headers["Range"] = f"bytes=0-{first_bytes - 1}"
            cap = min(limit, first_bytes)
        deadline = time.monotonic() + self.deadline
        try:
            request = self._http.build_request("GET", url, headers=headers)
            response = self._http.send(request, stream=True, follow_redirects=True)
            try:
                if response.status_code >= 400:
                    raise NetworkError(
                        f"cannot fetch {what}: HTTP {response.status_code}",
                        url=url,
                        status=response.status_code,
                    )
                declared = response.headers.get("content-length", "")
                if first_bytes is None and declared.isdigit() and int(declared) > limit:
                    raise ResponseError(
                        f"{what} is {int(declared)} bytes, more than the {limit} allowed", url=url
                    )
            except BaseException:
                response.close()
                raise
            # Within the API deadline (a trickle ends) and, decompressed, within the cap.
            body = read_bounded(response, limit=cap, deadline=deadline, what=what, cut=True)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            problem = f"cannot fetch {what} from {redact_url(url)}: {exc}"
            raise NetworkError(problem, url=url) from exc
        if body.truncated and first_bytes is None:
            raise ResponseError(f"{what} is larger than the {limit} bytes allowed", url=url)
        content_type = body.response.headers.get("content-type", "")
        return PublicBytes(body.response.content, content_type.split(";")[0].strip().lower())

    # -- downloads -------------------------------------------------------------------

    def resolve_download(
        self,
        version_id: int,
        *,
        file_id: int | None = None,
        what: str | None = None,
    ) -> DownloadLink:
        """Ask ``/api/download/models/{version}`` for a presigned link to the bytes.

        Args:
            version_id: the model version.
            file_id: the exact file (``?fileId=``); without it Civitai picks its
                preferred file.
            what: how to name the file in error messages.

        Raises:
            AuthError: no or invalid token (with how to set one), or a login page.
            EarlyAccessError: the version is in Early Access.
            NotDownloadableError: archived (410) or downloads disabled by the creator.
            NotFoundError: no such version or file.
            RateLimitError: the daily download limit.
        """
        what = what or f"the download of version {version_id}"
        params = [("fileId", str(file_id))] if file_id is not None else None
        url = f"{self.base_url}/api/download/models/{version_id}"
        response = self._send("GET", url, params=params, retry_bare_429=False, short_answer=True)
        if response.is_redirect and response.headers.get("location"):
            location = str(response.url.join(response.headers["location"]))
            if _origin(location) == _origin(self.base_url) and "login" in location.lower():
                raise AuthError(
                    f"Civitai wants you to log in to download {what}", url=url, hint=TOKEN_HINT
                )
            return DownloadLink(location, version_id, file_id)
        self._raise_download_refusal(response, what)
        raise ResponseError(
            f"Civitai answered the download request for {what} with HTTP "
            f"{response.status_code} and no link",
            url=url,
        )

    def _raise_download_refusal(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        text, body = _error_text(response)
        url = str(response.request.url)
        if status == 451:
            self._raise_for_status(response, what)
        if status == 429 and not _is_daily_cap(response):
            raise NetworkError(
                f"Civitai kept throttling the download request for {what} (HTTP 429) "
                f"after {self.retry.attempts} tries",
                url=url,
                status=status,
                hint="wait a few minutes and run the same command again",
            )
        if is_html(response):
            raise AuthError(
                f"Civitai sent a login page instead of {what}", url=url, hint=TOKEN_HINT
            )
        if status == 401 and "disabled" in text.lower():
            raise NotDownloadableError(
                f"the creator has disabled downloads of {what}", url=url, status=status
            )
        if status == 401:
            hint = (
                "your token was not accepted; check CIVITAI_API_TOKEN"
                if self._token
                else TOKEN_HINT
            )
            raise AuthError(
                f"Civitai requires a logged-in API token to download {what}",
                url=url,
                status=status,
                hint=hint,
            )
        if status == 403 and (body.get("deadline") or "early access" in text.lower()):
            deadline = body.get("deadline") if isinstance(body.get("deadline"), str) else None
            until = f" until {deadline[:10]}" if deadline else ""
            raise EarlyAccessError(
                f"{what} is in Early Access{until}",
                deadline=deadline,
                url=url,
                status=status,
                hint="buy early access on civitai.com with the account of your token, "
                "or wait until it ends",
            )
        if status == 410:
            raise NotDownloadableError(
                f"{what} is archived on Civitai and cannot be downloaded", url=url, status=status
            )
        if status == 429:
            raise RateLimitError(
                f"Civitai refused {what}: {text}",
                url=url,
                status=status,
                hint="the daily download limit resets after 24 hours; try again tomorrow",
            )
        self._raise_for_status(response, what)


def _model_params(filters: Mapping[str, Any]) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    for name, value in filters.items():
        if value is None:
            continue
        try:
            key = MODEL_FILTERS[name]
        except KeyError:
            raise UsageError(
                f"unknown model filter {name!r}; known: {', '.join(MODEL_FILTERS)}"
            ) from None
        if isinstance(value, bool):
            params.append((key, "true" if value else "false"))
        elif name == "ids":
            items = [value] if isinstance(value, (int, str)) else value
            params.append((key, ",".join(str(v) for v in items)))
        elif isinstance(value, (list, tuple, set, frozenset)):
            params.extend((key, str(v)) for v in value)
        else:
            params.append((key, str(value)))
    return params


@contextlib.contextmanager
def using_client(client: Client | None) -> Iterator[Client]:
    """``client``, or a :class:`Client` made from the environment and config and closed
    afterwards (for library functions whose ``client`` argument is optional)."""
    if client is not None:
        yield client
        return
    with Client() as made:
        yield made
