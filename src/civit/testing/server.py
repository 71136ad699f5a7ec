"""``FakeCivitai``: two loopback origins (API and CDN), presigned links, fault knobs, a log."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, unquote

from civit.testing.catalog import (
    Catalog,
    FakeFile,
    FakeModel,
    FakeVersion,
    default_catalog,
    synthetic_models,
)
from civit.testing.faults import ApiFailure, BodyPlan, FaultState, FileFaults, RequestLog
from civit.testing.handler import OriginServer


@dataclass(frozen=True)
class _Link:
    file_id: int
    path: str
    expires: int
    serial: int


class FakeCivitai:
    """Civitai's API and CDN as two loopback HTTP servers, with fault injection.

    Args:
        token: the only API token the fake accepts; any other is treated as anonymous.
        catalog: the models to serve (default: :func:`default_catalog`).
        link_ttl: lifetime of presigned CDN links in seconds.
        host: the interface to listen on.
        port: the API origin's port (0 picks a free one; the CDN always picks one).
        api_name: the host name the API origin's URLs use (default: ``host``), e.g.
            ``civitai.test`` for a client that reaches it through
            :class:`~civit.testing.LoopbackProxy` only.
        cdn_name: the same for the CDN origin (e.g. ``cdn.test``).
        tls: serve HTTPS with the test certificate (valid for ``civitai.test``,
            ``cdn.test``, ``localhost`` and ``127.0.0.1``); clients trust
            :attr:`ca_file`.
    """

    #: The CA that signed the fake's TLS certificate (trust it in tests only).
    ca_file = Path(__file__).with_name("tls") / "ca.pem"

    def __init__(
        self,
        *,
        token: str = "test-token",
        catalog: Catalog | None = None,
        link_ttl: float = 3600.0,
        host: str = "127.0.0.1",
        port: int = 0,
        api_name: str | None = None,
        cdn_name: str | None = None,
        tls: bool = False,
    ) -> None:
        self.token = token
        self.catalog = catalog if catalog is not None else default_catalog()
        self.link_ttl = link_ttl
        self.host = host
        self.port = port
        self.names = {"api": api_name or host, "cdn": cdn_name or host}
        self.scheme = "https" if tls else "http"
        self._tls: ssl.SSLContext | None = None
        if tls:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            certificates = Path(__file__).with_name("tls")
            self._tls.load_cert_chain(certificates / "server.pem", certificates / "server.key")
        self.daily_limit_reached = False
        self.malformed_json = False
        self.raw_links = False
        """Hand out links with the file name unencoded (spaces and all), as careless
        storage hosts do."""
        self.errors: list[BaseException] = []
        """Unexpected exceptions raised while handling requests (a bug in the fake)."""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._secret = secrets.token_bytes(32)
        self._servers: dict[str, OriginServer] = {}
        self._serve_threads: list[threading.Thread] = []
        self._faults: dict[int, FaultState] = {}
        self._api_failure: ApiFailure | None = None
        self._links: dict[str, _Link] = {}
        self._next_serial = 0
        self._links_valid_from = 0
        self._file_links_valid_from: dict[int, int] = {}
        self._log: list[RequestLog] = []
        self._served: dict[int, int] = {}
        self._handling = 0
        self._idle = threading.Condition(self._lock)

    # ---- lifecycle

    def start(self) -> FakeCivitai:
        """Bind both origins and serve them from background threads.

        Returns:
            ``self``, for chaining.

        Raises:
            RuntimeError: already started.
        """
        if self._servers:
            raise RuntimeError("FakeCivitai is already running")
        self._stopping.clear()
        self._servers = {
            "api": OriginServer(self, "api", (self.host, self.port), tls=self._tls),
            "cdn": OriginServer(self, "cdn", (self.host, 0), tls=self._tls),
        }
        for origin, server in self._servers.items():
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.02},
                name=f"fake-civitai-{origin}",
                daemon=True,
            )
            thread.start()
            self._serve_threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving, close every open connection and join every thread (idempotent)."""
        if not self._servers:
            return
        self._stopping.set()
        # shutdown() blocks until the serving loop notices; ask both loops at once.
        waiters = [threading.Thread(target=s.shutdown) for s in self._servers.values()]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join()
        for server in self._servers.values():
            server.server_close()
            server.close_connections(timeout=2.0)
        for thread in self._serve_threads:
            thread.join(timeout=2.0)
        self._servers = {}
        self._serve_threads = []

    def __enter__(self) -> FakeCivitai:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _origin_url(self, origin: str) -> str:
        server = self._servers.get(origin)
        if server is None:
            raise RuntimeError("FakeCivitai is not running; call start() first")
        return f"{self.scheme}://{self.names[origin]}:{server.server_address[1]}"

    @property
    def url(self) -> str:
        """The API origin, e.g. ``http://127.0.0.1:41234`` (no trailing slash)."""
        return self._origin_url("api")

    @property
    def cdn_url(self) -> str:
        """The CDN origin that download redirects point to."""
        return self._origin_url("cdn")

    # ---- catalog

    def model(self, model_id: int) -> FakeModel:
        """The catalog model with this id.

        Raises:
            KeyError: unknown id.
        """
        found = self.catalog.find_model(model_id)
        if found is None:
            raise KeyError(model_id)
        return found

    def version(self, version_id: int) -> FakeVersion:
        """The catalog version with this id.

        Raises:
            KeyError: unknown id.
        """
        found = self.catalog.find_version(version_id)
        if found is None:
            raise KeyError(version_id)
        return found[1]

    def file(self, file_id: int) -> FakeFile:
        """The catalog file with this id.

        Raises:
            KeyError: unknown id.
        """
        found = self.catalog.find_file(file_id)
        if found is None:
            raise KeyError(file_id)
        return found[2]

    def add_model(self, model: FakeModel) -> None:
        """Serve one more model from now on (see :meth:`Catalog.add`)."""
        self.catalog.add(model)

    def add_synthetic_models(self, count: int, *, first_id: int = 500_000) -> list[FakeModel]:
        """Serve ``count`` tiny LoRA models from now on (see :func:`synthetic_models`).

        Returns:
            The models added, lowest id first.
        """
        models = synthetic_models(count, first_id=first_id)
        for model in models:
            self.catalog.add(model)
        return models

    def download_url(self, version_id: int, *, file_id: int | None = None) -> str:
        """The API download URL of a version (optionally of one exact file)."""
        url = f"{self.url}/api/download/models/{version_id}"
        return url if file_id is None else f"{url}?fileId={file_id}"

    def cdn_link(self, file_id: int, *, ttl: float | None = None) -> str:
        """Issue a presigned CDN link, as a successful download request does.

        Args:
            file_id: a catalog file.
            ttl: lifetime in seconds (default ``link_ttl``); negative gives a dead link.

        Returns:
            ``{cdn_url}/files/{id}/{quoted name}?expires=…&sig=…``.

        Raises:
            KeyError: unknown file.
        """
        name = self.file(file_id).name
        path = f"/files/{file_id}/{quote(name, safe='')}"
        expires = math.ceil(time.time() + (self.link_ttl if ttl is None else ttl))
        with self._lock:
            serial = self._next_serial
            self._next_serial += 1
            message = f"{path}?expires={expires}#{serial}".encode()
            signature = hmac.new(self._secret, message, hashlib.sha256).hexdigest()
            self._links[signature] = _Link(file_id, path, expires, serial)
        if self.raw_links:
            path = f"/files/{file_id}/{name}"
        return f"{self.cdn_url}{path}?expires={expires}&sig={signature}"

    def _link_status(self, path: str, query: Mapping[str, list[str]]) -> str:
        """``"ok"``, ``"denied"`` (no such signature) or ``"expired"`` for a CDN request."""
        signature = query.get("sig", [""])[0]
        expires = query.get("expires", [""])[0]
        with self._lock:
            link = self._links.get(signature)
            # Compared decoded, as storage hosts do: "%20" and a space name one key.
            same_path = link is not None and unquote(link.path) == unquote(path)
            if link is None or not same_path or str(link.expires) != expires:
                return "denied"
            valid_from = max(
                self._links_valid_from, self._file_links_valid_from.get(link.file_id, 0)
            )
        if link.serial < valid_from or time.time() > link.expires:
            return "expired"
        return "ok"

    # ---- fault knobs

    def set_faults(
        self,
        file_id: int,
        *,
        drop_after: int | None = None,
        drop_times: int = 1,
        ignore_range: bool = False,
        corrupt: bool = False,
        expire_after: int | None = None,
        throttle: float | None = None,
        html: bool = False,
        stall_after: int | None = None,
        stall_seconds: float = 0.0,
        stall_times: int = 1,
        status: int | None = None,
        status_times: int = 1,
        retry_after: str | None = None,
        range_cap: int | None = None,
        empty_range: bool = False,
        no_length: bool = False,
        gzip: bool = False,
        disguised_html: bool = False,
        redirect_to: str | None = None,
        ignore_if_range: bool = False,
    ) -> FileFaults:
        """Inject faults into the CDN's responses for one file, replacing earlier ones.

        Args:
            file_id: a catalog file.
            drop_after: send this many body bytes per response, then close the socket
                (for the first ``drop_times`` responses longer than that).
            drop_times: how many responses to cut.
            ignore_range: answer 200 with the whole file even when a Range is asked.
            corrupt: flip one byte in the middle of the served bytes (the API record
                keeps the true hashes).
            expire_after: once this many bytes of the file have been served in total,
                expire every link issued so far for it and cut the current response;
                links issued afterwards work.
            throttle: bytes per second per connection.
            html: answer 200 ``text/html`` with a Cloudflare-style challenge instead.
            stall_after: pause ``stall_seconds`` after this many body bytes of a response
                (for the first ``stall_times`` responses longer than that).
            stall_seconds: the pause length.
            stall_times: how many responses stall.
            status: answer this HTTP status (an S3-style XML error) to the first
                ``status_times`` requests, e.g. 429 or 503 throttling, or 451.
            status_times: how many requests get ``status``.
            retry_after: the ``Retry-After`` sent with ``status`` (none by default).
            range_cap: send at most this many bytes per ranged answer (a shorter 206,
                as hosts that cap ranges do).
            empty_range: answer ranged requests with a 206 that has no body.
            no_length: answer 200 with the whole file, no ``Content-Length``, ending
                the body by closing the connection.
            gzip: answer 200 with the whole file gzip-compressed (``Content-Encoding``),
                although the client asked for ``identity``.
            disguised_html: answer 200 with a login page behind a byte-order mark,
                labelled ``application/octet-stream``.
            redirect_to: answer 302 with this ``Location`` instead of the file.
            ignore_if_range: serve the asked range even when ``If-Range`` names
                another version (a broken cache in front of the file).

        Returns:
            The settings now in force.

        Raises:
            KeyError: unknown file.
        """
        self.file(file_id)
        faults = FileFaults(
            file_id, drop_after=drop_after, drop_times=drop_times, ignore_range=ignore_range,
            corrupt=corrupt, expire_after=expire_after, throttle=throttle, html=html,
            stall_after=stall_after, stall_seconds=stall_seconds, stall_times=stall_times,
            status=status, status_times=status_times, retry_after=retry_after,
            range_cap=range_cap, empty_range=empty_range, no_length=no_length, gzip=gzip,
            disguised_html=disguised_html, redirect_to=redirect_to,
            ignore_if_range=ignore_if_range,
        )  # fmt: skip
        with self._lock:
            self._faults[file_id] = FaultState(faults, drop_times, stall_times, status_times)
        return faults

    def _take_status(self, file_id: int) -> FileFaults | None:
        """The faults, if this CDN request is one that answers ``status``."""
        with self._lock:
            state = self._faults.get(file_id)
            if state is None or state.settings.status is None or state.statuses_left <= 0:
                return None
            state.statuses_left -= 1
            return state.settings

    def faults(self, file_id: int) -> FileFaults | None:
        """The faults in force for a file, or ``None``."""
        with self._lock:
            state = self._faults.get(file_id)
            return state.settings if state else None

    def fail_api(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
        body: str | None = None,
        location: str | None = None,
    ) -> None:
        """Make the next ``times`` requests to ``/api/v1/*`` and ``/api/download/*`` fail.

        Args:
            status: the HTTP status to answer.
            times: how many requests fail.
            retry_after: a ``Retry-After`` value to send (seconds or an HTTP date).
            body: the exact body (default: ``{"error": "<reason phrase>"}``).
            location: a ``Location`` header to send (e.g. a broken redirect with 307).
        """
        with self._lock:
            self._api_failure = ApiFailure(status, times, retry_after, body, location)

    def expire_links(self) -> None:
        """Expire every CDN link issued so far; new ones work."""
        with self._lock:
            self._links_valid_from = self._next_serial

    def reset_faults(self) -> None:
        """Undo every fault knob: file faults, API failures, daily limit, malformed JSON,
        raw links."""
        with self._lock:
            self._faults.clear()
            self._api_failure = None
        self.daily_limit_reached = False
        self.malformed_json = False
        self.raw_links = False

    def _take_api_failure(self) -> ApiFailure | None:
        with self._lock:
            failure = self._api_failure
            if failure is None:
                return None
            failure.times_left -= 1
            if failure.times_left <= 0:
                self._api_failure = None
            return replace(failure)

    def _plan_body(self, file_id: int, length: int) -> BodyPlan:
        """Decide, once per response, where this response is cut or stalls."""
        with self._lock:
            state = self._faults.get(file_id)
            if state is None:
                return BodyPlan(None, None, 0.0, None, corrupt=False)
            faults = state.settings
            cut_at = stall_at = None
            if (
                faults.drop_after is not None
                and state.drops_left > 0
                and faults.drop_after < length
            ):
                state.drops_left -= 1
                cut_at = faults.drop_after
            if (
                faults.stall_after is not None
                and state.stalls_left > 0
                and faults.stall_after < length
            ):
                state.stalls_left -= 1
                stall_at = faults.stall_after
            return BodyPlan(cut_at, stall_at, faults.stall_seconds, faults.throttle, faults.corrupt)

    def _take_budget(self, file_id: int, wanted: int) -> tuple[int, bool]:
        """How many of ``wanted`` bytes may go out before ``expire_after`` fires (and if it did)."""
        with self._lock:
            state = self._faults.get(file_id)
            limit = state.settings.expire_after if state else None
            if state is None or limit is None or state.expired:
                return wanted, False
            room = max(limit - state.expire_counted, 0)
            if wanted < room:
                state.expire_counted += wanted
                return wanted, False
            state.expire_counted += room
            state.expired = True
            self._file_links_valid_from[file_id] = self._next_serial
            return room, True

    # ---- observability

    @property
    def requests(self) -> list[RequestLog]:
        """A snapshot of every request so far, in completion order."""
        with self._lock:
            return list(self._log)

    def cdn_requests(self, file_id: int | None = None) -> list[RequestLog]:
        """The CDN requests so far, optionally only those for one file."""
        return [
            entry
            for entry in self.requests
            if entry.origin == "cdn" and (file_id is None or entry.file_id == file_id)
        ]

    def bytes_served(self, file_id: int) -> int:
        """Bytes of this file's content the CDN has sent (all responses together)."""
        with self._lock:
            return self._served.get(file_id, 0)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is being handled; ``False`` if still busy at ``timeout``.

        A client that gives up mid-body is noticed by the fake only at its next write;
        call this before asserting on :meth:`bytes_served` after an interrupted transfer.
        """
        with self._idle:
            return self._idle.wait_for(lambda: self._handling == 0, timeout)

    def clear_log(self) -> None:
        """Forget logged requests and served-byte counts."""
        with self._lock:
            self._log.clear()
            self._served.clear()

    def _record(self, entry: RequestLog, previous: RequestLog | None) -> None:
        with self._lock:
            if previous is not None:
                for index, logged in enumerate(self._log):
                    if logged is previous:
                        self._log[index] = entry
                        return
            self._log.append(entry)

    def _count_served(self, file_id: int, count: int) -> None:
        with self._lock:
            self._served[file_id] = self._served.get(file_id, 0) + count
