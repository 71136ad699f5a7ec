"""The storage host's side of a download: ranged GETs, its redirects, and what its
answers mean.

Presigned links point to whatever storage host Civitai uses this month (never assume
one domain); the host gets no credentials. :class:`Storage` opens a ranged GET with
:mod:`http.client` (directly or through the proxy :mod:`civit.network` chooses),
follows the host's own redirects (percent-encoding what a careless ``Location`` leaves
raw), and turns every answer into either an :class:`Opened` body to read or one of:

- :class:`LinkExpired` (401/403/410: ask the API for a fresh link),
- :class:`RangeIgnored` (the host cannot resume this: start over from byte zero),
- :class:`Retryable` (dropped connections, 429/5xx, with the ``Retry-After`` wait;
  :class:`Unreachable` when no connection to the host could even be opened),
- a :class:`civit.errors.CivitError` that no retry fixes (HTML page, 404, 451, ...).

No message built here contains a query string: presigned signatures stay out of
errors and logs.
"""

from __future__ import annotations

import codecs
import contextlib
import http.client
import re
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from civit.api import REGION_HINT, USER_AGENT, parse_retry_after
from civit.errors import AuthError, NetworkError, NotFoundError, ResponseError, redact_url
from civit.network import ProxyRules, connect, request_target

__all__ = [
    "LinkExpired",
    "LinkResolver",
    "Opened",
    "RangeIgnored",
    "Retryable",
    "Storage",
    "Unreachable",
    "html_page_error",
    "looks_like_html",
    "safe_location",
]

MAX_REDIRECTS = 5

#: Returns a fresh URL for the bytes; called again when a link expires.
LinkResolver = Callable[[], str]

_HTML_HINT = (
    "this is a login or challenge page, not a model: set a valid CIVITAI_API_TOKEN "
    "(create one at https://civitai.com/user/account)"
)
_HTML_START = re.compile(rb"\s*(<!doctype html|<html|<head|<\?xml)", re.IGNORECASE)
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# Characters a URL path or query may carry as they are; everything else is encoded.
# "%" stays, so an already-encoded link is not encoded twice.
_PATH_SAFE = "/%!$&'()*+,;=:@-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


class LinkExpired(Exception):
    """The storage host refused the link (401/403/410): ask the API for a new one."""


class RangeIgnored(Exception):
    """The server cannot continue this file where we are: start over from byte zero."""


class Retryable(Exception):
    """A failure worth retrying after a backoff (or the host's ``Retry-After``)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Unreachable(Retryable):
    """No connection to the host could be opened (refused, no route, unknown name, a
    connect timeout, a certificate the host cannot prove): whatever file is asked
    for, the host is the same, so a mirror that answers so is switched off."""


@dataclass
class Opened:
    """An answered ranged GET whose body is ready to read.

    ``end`` (exclusive) is where this response's body stops, from its own
    Content-Range/Content-Length (``None``: until the connection closes); ``total``
    is the whole file's size when the host said it.
    """

    connection: http.client.HTTPConnection
    response: http.client.HTTPResponse
    start: int
    end: int | None
    total: int | None
    validator: str | None


def looks_like_html(head: bytes) -> bool:
    """Whether the first bytes of a body are an HTML/XML page (after any byte-order mark).

    >>> looks_like_html(b"\\xef\\xbb\\xbf  <!DOCTYPE html><html>"), looks_like_html(b"\\x00\\x01")
    (True, False)
    """
    for bom in _BOMS:
        if head.startswith(bom):
            encoding = "utf-8" if bom == codecs.BOM_UTF8 else "utf-16"
            head = head.decode(encoding, errors="ignore").lstrip("\ufeff").encode()
            break
    return _HTML_START.match(head) is not None


def html_page_error() -> AuthError:
    """The error for a storage host that sent a web page (a login or challenge) where
    the file's bytes belong, however it was noticed: its content type or its start."""
    return AuthError("the storage host sent an HTML page instead of the file", hint=_HTML_HINT)


def safe_location(base: str, location: str) -> str:
    """Resolve a redirect target against ``base``; encode what must not travel raw.

    Raises:
        ResponseError: the target is not a usable http(s) URL (a bad port, a broken
            IPv6 address, another scheme). The message never includes its query.
    """
    try:
        joined = urljoin(base, location.strip())
        parts = urlsplit(joined)
        port = parts.port
    except ValueError as exc:
        raise ResponseError(
            f"the storage host redirected to an invalid address ({_origin_of(location)})"
        ) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ResponseError(
            f"the download link is not an http(s) URL ({_origin_of(joined)})",
            hint="run the same command again; report it if it keeps happening",
        )
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    query = quote(parts.query, safe=_QUERY_SAFE)
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def _origin_of(url: str) -> str:
    """Scheme and host of a possibly malformed URL, without credentials or query."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    return f"{scheme}://{host}" if rest else "no host"


def _reason(exc: BaseException) -> str:
    """A short description of a connection failure, free of URLs."""
    if isinstance(exc, http.client.InvalidURL):
        return "invalid URL"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text and "://" not in text else type(exc).__name__


def _validator(response: http.client.HTTPResponse) -> str | None:
    """The strong ETag, else the Last-Modified date: what ``If-Range`` may carry."""
    etag = response.getheader("etag")
    if etag and not etag.startswith("W/"):  # weak ETags cannot guard a byte range
        return etag.strip()
    modified = response.getheader("last-modified")
    return modified.strip() if modified else None


def _content_range(value: str | None) -> tuple[int, int, int | None] | None:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not match:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), int(match.group(2)), total


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = (response.getheader("content-length") or "").strip()
    return int(value) if value.isdigit() else None


class Storage:
    """Ranged GETs to storage hosts; tracks its open connections so they can be aborted.

    Args:
        timeout: socket timeout (seconds without a byte) for connect and reads.
        proxies: which proxy each URL goes through.
    """

    def __init__(self, *, timeout: float, proxies: ProxyRules) -> None:
        self.timeout = timeout
        self.proxies = proxies
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()
        self._routes: dict[http.client.HTTPConnection, tuple[str, str | None]] = {}

    def get(
        self,
        url: str,
        start: int,
        end: int | None,
        validator: str | None,
        *,
        accept_full: bool = False,
        reuse: http.client.HTTPConnection | None = None,
    ) -> Opened:
        """GET ``[start, end)`` of ``url``, following the storage host's own redirects.

        ``validator`` (from an earlier answer) goes out as ``If-Range`` and must match
        the answer's own. ``accept_full`` lets a 200 (whole body from byte 0) answer,
        which only a transfer's first request can use. ``reuse`` is a kept-alive
        connection; if it goes elsewhere or the host closed it, a new one is opened.

        Raises:
            LinkExpired, RangeIgnored, Retryable: see the module docstring.
            CivitError: a failure no retry fixes.
        """
        headers = {
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
            "Range": f"bytes={start}-{'' if end is None else end - 1}",
        }
        if validator:
            headers["If-Range"] = validator
        url = safe_location(url, url)
        for _ in range(MAX_REDIRECTS + 1):
            proxy = self.proxies.proxy_for(url)
            route = _route(url, proxy)
            target, extra = request_target(url, proxy)
            sent = {**headers, **extra}
            if reuse is not None:
                kept, reuse = reuse, None
                if self._routes.get(kept) == route:
                    answered = self._request_on(kept, target, sent)
                    if answered is not None:
                        return self._accept(kept, answered, start, validator, accept_full)
                else:
                    self.close(kept)
            connection = connect(url, proxy=proxy, timeout=self.timeout)
            self._track(connection, route)
            try:
                connection.request("GET", target, headers=sent)
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                connected = connection.sock is not None  # http.client sets it once connected
                self.close(connection)
                raise _connection_failure(exc, proxy, connected=connected) from exc
            location = response.getheader("location")
            if 300 <= response.status < 400 and location:
                self.close(connection)
                url = safe_location(url, location)
                continue
            return self._accept(connection, response, start, validator, accept_full)
        raise NetworkError(f"too many redirects fetching {redact_url(url)}")

    def _request_on(
        self, kept: http.client.HTTPConnection, target: str, headers: dict[str, str]
    ) -> http.client.HTTPResponse | None:
        """The answer on a kept-alive connection, or ``None`` if the host closed it."""
        try:
            kept.request("GET", target, headers=headers)
            response = kept.getresponse()
        except (OSError, http.client.HTTPException):
            self.close(kept)
            return None
        if 300 <= response.status < 400:
            self.close(kept)  # a redirect on a reused connection: start over cleanly
            return None
        return response

    def _accept(
        self,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        start: int,
        validator: str | None,
        accept_full: bool,
    ) -> Opened:
        try:
            return self._check(connection, response, start, validator, accept_full)
        except BaseException:
            self.close(connection)
            raise

    def _check(
        self,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        start: int,
        validator: str | None,
        accept_full: bool,
    ) -> Opened:
        status = response.status
        content_type = (response.getheader("content-type") or "").lower()
        if status in (200, 206) and "html" in content_type:
            raise html_page_error()
        if status in (401, 403, 410):
            raise LinkExpired(f"HTTP {status}")
        if status == 404:
            raise NotFoundError("the storage host has no file at this link (HTTP 404)")
        if status == 407:
            raise NetworkError(
                "the proxy wants credentials (HTTP 407)",
                hint="put them in the proxy URL: http://user:password@host:port",
            )
        if status == 416:
            raise RangeIgnored("HTTP 416: the file is shorter than expected")
        if status == 451:
            raise AuthError(
                "Civitai is not available in your region (HTTP 451 from the storage host)",
                status=status,
                hint=REGION_HINT,
            )
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.getheader("retry-after"))
            raise Retryable(f"HTTP {status} from the storage host", retry_after)
        if status not in (200, 206):
            raise NetworkError(f"unexpected HTTP {status} from the storage host", status=status)
        encoding = (response.getheader("content-encoding") or "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise ResponseError(
                f"the storage host compressed the file (Content-Encoding: {encoding}) "
                "although civit asked for it uncompressed",
                hint="try again later; if you use a proxy, make it pass downloads unchanged",
            )
        answered = _validator(response)
        if validator and answered and answered != validator:
            raise RangeIgnored("the file changed on the storage host since the last run")
        length = _content_length(response)
        if status == 206:
            content_range = _content_range(response.getheader("content-range"))
            if content_range is None or content_range[0] != start:
                raise RangeIgnored("206 with a Content-Range that does not start where asked")
            end = content_range[1] + 1
            if length is not None:
                end = min(end, start + length)
            if end <= start:
                raise Retryable("the storage host sent an empty range")
            return Opened(connection, response, start, end, content_range[2], answered)
        if start > 0 and not accept_full:
            raise RangeIgnored("200 to a ranged request")
        return Opened(connection, response, 0, length, length, answered)

    # -- connections --

    def _track(self, connection: http.client.HTTPConnection, route: tuple[str, str | None]) -> None:
        with self._lock:
            self._open.add(connection)
            self._routes[connection] = route

    def close(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            self._open.discard(connection)
            self._routes.pop(connection, None)
        connection.close()

    def abort_all(self) -> None:
        """Unblock every thread stuck in recv() so cancellation is immediate."""
        with self._lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                if connection.sock is not None:
                    connection.sock.shutdown(socket.SHUT_RDWR)


def _route(url: str, proxy: str | None) -> tuple[str, str | None]:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}", proxy


def _connection_failure(exc: BaseException, proxy: str | None, *, connected: bool) -> Exception:
    """A failed request as :class:`Retryable` (:class:`Unreachable` if no connection
    was opened), or a final error for a proxy's refusal."""
    text = str(exc)
    if proxy is not None and text.startswith("Tunnel connection failed"):
        status = text.partition(":")[2].strip()
        if status.startswith("407"):
            return NetworkError(
                f"the proxy wants credentials ({status})",
                hint="put them in the proxy URL: http://user:password@host:port",
            )
        if status[:1] == "4":
            return NetworkError(f"the proxy refused the connection ({status})")
    if not connected or isinstance(exc, ssl.SSLCertVerificationError):
        return Unreachable(_reason(exc))
    return Retryable(_reason(exc))
