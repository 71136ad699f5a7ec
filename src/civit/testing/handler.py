"""The HTTP side of the fake: one origin server per port and the request handler that
answers Civitai's API routes and the CDN's presigned file links."""

from __future__ import annotations

import codecs
import contextlib
import gzip
import hmac
import json
import math
import re
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO, Literal, Protocol
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from civit.testing.catalog import CHUNK_SIZE, Catalog, FakeFile
from civit.testing.documents import (
    BadRequest,
    ModelQuery,
    model_document,
    pick_file,
    version_document,
)
from civit.testing.faults import ApiFailure, BodyPlan, FileFaults, RequestLog

MAX_PAGE_ITEMS = 1000
MAX_HASHES_PER_LOOKUP = 10_000
MAX_REQUEST_BODY = 8 * 1024 * 1024
LAST_MODIFIED = formatdate(1_734_512_172, usegmt=True)

LOGIN_PAGE = (
    b'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
    b"<title>Sign in | Civitai</title></head><body><h1>Sign in to Civitai</h1>"
    b"<p>You need to be logged in to download this model.</p></body></html>"
)
CHALLENGE_PAGE = (
    b'<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>'
    b'<meta http-equiv="refresh" content="390"></head><body>'
    b"<h1>Checking if the site connection is secure</h1>"
    b"<noscript>Enable JavaScript and cookies to continue</noscript></body></html>"
)
MALFORMED_JSON = b'{"items": [{"id": 827184, "name": "WAI-illus'


class ServedFake(Protocol):
    """What the handler needs of the :class:`~civit.testing.ServedFake` it serves."""

    token: str
    catalog: Catalog
    daily_limit_reached: bool
    malformed_json: bool
    errors: list[BaseException]
    _idle: threading.Condition
    _handling: int
    _stopping: threading.Event

    @property
    def url(self) -> str: ...
    @property
    def cdn_url(self) -> str: ...
    def cdn_link(self, file_id: int, *, ttl: float | None = None) -> str: ...
    def faults(self, file_id: int) -> FileFaults | None: ...
    def _take_status(self, file_id: int) -> FileFaults | None: ...
    def _link_status(self, path: str, query: Mapping[str, list[str]]) -> str: ...
    def _take_api_failure(self) -> ApiFailure | None: ...
    def _plan_body(self, file_id: int, length: int) -> BodyPlan: ...
    def _take_budget(self, file_id: int, wanted: int) -> tuple[int, bool]: ...
    def _record(self, entry: RequestLog, previous: RequestLog | None) -> None: ...
    def _count_served(self, file_id: int, count: int) -> None: ...


class OriginServer(ThreadingHTTPServer):
    """One origin; tracks its connections so ``stop`` can close them and join their threads."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        fake: ServedFake,
        origin: Literal["api", "cdn"],
        address: tuple[str, int],
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.fake = fake
        self.origin: Literal["api", "cdn"] = origin
        self._connections_lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        super().__init__(address, Handler)
        if tls is not None:
            # The handshake happens on the connection's own thread, at its first read.
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can take seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"fake-civitai-{self.origin}-connection",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[request] = thread
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        # Clients hanging up mid-response is normal; anything else is a bug in the fake.
        if error is not None and not isinstance(error, OSError):
            self.fake.errors.append(error)

    def close_connections(self, *, timeout: float) -> None:
        with self._connections_lock:
            connections = list(self._connections.items())
        for connection, _ in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for _, thread in connections:
            thread.join(max(deadline - time.monotonic(), 0))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    # Headers and body leave in separate writes; with Nagle's algorithm on, the client's
    # delayed ACK would hold every small response back by ~40 ms.
    disable_nagle_algorithm = True
    server: OriginServer

    _logged: RequestLog | None
    _file_id: int | None
    _path: str
    _query: dict[str, list[str]]

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's stderr access log: the library never prints."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    @property
    def fake(self) -> ServedFake:
        return self.server.fake

    def _dispatch(self) -> None:
        with self.fake._idle:
            self.fake._handling += 1
        try:
            self._handle()
        finally:
            with self.fake._idle:
                self.fake._handling -= 1
                self.fake._idle.notify_all()

    def _handle(self) -> None:
        self._logged = None
        self._file_id = None
        parts = urlsplit(self.path)
        self._path = parts.path
        self._query = parse_qs(parts.query, keep_blank_values=True)
        body = self._read_body()
        if body is None:
            return
        if self.server.origin == "api":
            self._api(body)
        else:
            self._cdn()

    def _read_body(self) -> bytes | None:
        length_header = self.headers.get("Content-Length", "0")
        length = int(length_header) if length_header.isdigit() else -1
        if not 0 <= length <= MAX_REQUEST_BODY:
            self.close_connection = True
            self._json(413, {"error": "Request body too large or malformed Content-Length"})
            return None
        return self.rfile.read(length) if length else b""

    # ---- responses

    def _log(self, status: int, body_bytes: int) -> None:
        entry = RequestLog(
            origin=self.server.origin,
            method=self.command,
            path=self._path,
            query=self._query,
            headers={key.lower(): value for key, value in self.headers.items()},
            status=status,
            body_bytes=body_bytes,
            file_id=self._file_id,
        )
        self.fake._record(entry, self._logged)
        self._logged = entry

    def _respond(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        sends_body = self.command != "HEAD"
        # Logged before the last byte leaves, so a client that has its answer sees the entry.
        self._log(status, len(body) if sends_body else 0)
        self.end_headers()
        if sends_body and body:
            self.wfile.write(body)

    def _json(self, status: int, doc: object, *, headers: Iterable[tuple[str, str]] = ()) -> None:
        body = json.dumps(doc).encode()
        self._respond(status, body, content_type="application/json; charset=utf-8", headers=headers)

    def _xml_error(
        self, status: int, code: str, message: str, *, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        ).encode()
        self._respond(status, body, content_type="application/xml", headers=headers)

    # ---- API origin

    def _api(self, body: bytes) -> None:
        path = self._path.rstrip("/") or "/"
        if path == "/login":
            self._respond(200, LOGIN_PAGE, content_type="text/html; charset=utf-8")
            return
        if path.startswith(("/api/v1/", "/api/download/")):
            failure = self.fake._take_api_failure()
            if failure is not None:
                self._fail(failure)
                return
        if path.startswith("/api/v1/") and self.fake.malformed_json:
            self._respond(200, MALFORMED_JSON, content_type="application/json; charset=utf-8")
            return
        route = _route(path)
        if route is None:
            self._json(404, {"error": "Not found"})
            return
        name, argument = route
        allowed = ("POST",) if name == "hash_ids" else ("GET", "HEAD")
        if self.command not in allowed:
            self._json(
                405, {"error": "Method not allowed"}, headers=[("Allow", ", ".join(allowed))]
            )
            return
        if name == "models":
            self._list_models()
        elif name == "model":
            self._get_model(argument)
        elif name == "version":
            self._get_version(argument)
        elif name == "by_hash":
            self._get_by_hash(argument)
        elif name == "hash_ids":
            self._post_hash_ids(body)
        else:
            self._download(argument)

    def _fail(self, failure: ApiFailure) -> None:
        headers = [("Retry-After", failure.retry_after)] if failure.retry_after else []
        if failure.location is not None:
            headers.append(("Location", failure.location))
        if failure.body is not None:
            content_type = "application/json; charset=utf-8"
            if not failure.body.lstrip().startswith(("{", "[")):
                content_type = "text/plain; charset=utf-8"
            self._respond(failure.status, failure.body.encode(), content_type=content_type,
                          headers=headers)  # fmt: skip
            return
        try:
            reason = HTTPStatus(failure.status).phrase
        except ValueError:
            reason = "Error"
        self._json(failure.status, {"error": reason}, headers=headers)

    def _list_models(self) -> None:
        api_url = self.fake.url
        try:
            listing = ModelQuery.parse(self._query)
        except BadRequest as exc:
            self._json(400, {"error": str(exc)})
            return
        if listing.page is not None and listing.page * listing.limit > MAX_PAGE_ITEMS:
            self._json(
                429, {"error": "You've requested too many pages, please use cursors instead"}
            )
            return
        models = [m for m in self.fake.catalog.models if listing.accepts(m)]
        offset = listing.offset
        items = models[offset : offset + listing.limit]
        more = offset + listing.limit < len(models)
        metadata: dict[str, Any] = {}
        base = f"{api_url}/api/v1/models?"
        if listing.page_mode:
            page = listing.page or 1
            metadata = {
                "totalItems": len(models),
                "currentPage": page,
                "pageSize": listing.limit,
                "totalPages": max(math.ceil(len(models) / listing.limit), 1),
            }
            if more:
                metadata["nextPage"] = base + listing.encode(page=page + 1)
        if more:
            cursor = f"o:{offset + listing.limit}"
            metadata["nextCursor"] = cursor
            metadata.setdefault("nextPage", base + listing.encode(cursor=cursor))
        cdn_url = self.fake.cdn_url
        doc = [
            model_document(m, api_url, primary_only=listing.primary_only, cdn_url=cdn_url)
            for m in items
        ]
        self._json(200, {"items": doc, "metadata": metadata})

    def _get_model(self, argument: str) -> None:
        if not argument.isdigit():
            self._json(400, {"error": f"Invalid model id: {argument}"})
            return
        model = self.fake.catalog.find_model(int(argument))
        if model is None:
            self._json(404, {"error": f"No model with id {argument}"})
            return
        self._json(200, model_document(model, self.fake.url, cdn_url=self.fake.cdn_url))

    def _get_version(self, argument: str) -> None:
        if not argument.isdigit():
            self._json(400, {"error": f"Invalid version id: {argument}"})
            return
        found = self.fake.catalog.find_version(int(argument))
        if found is None:
            self._json(404, {"error": "Version not found"})
            return
        fake = self.fake
        self._json(200, version_document(*found, fake.url, standalone=True, cdn_url=fake.cdn_url))

    def _get_by_hash(self, digest: str) -> None:
        found = self.fake.catalog.find_hash(digest)
        if found is None:
            self._json(404, {"error": "Model not found"})
            return
        fake = self.fake
        self._json(200, version_document(*found, fake.url, standalone=True, cdn_url=fake.cdn_url))

    def _post_hash_ids(self, body: bytes) -> None:
        try:
            digests = json.loads(body)
        except ValueError:
            digests = None
        if not isinstance(digests, list) or not all(isinstance(d, str) for d in digests):
            self._json(400, {"error": "Expected a JSON array of SHA256 strings"})
            return
        if len(digests) > MAX_HASHES_PER_LOOKUP:
            self._json(400, {"error": f"At most {MAX_HASHES_PER_LOOKUP} hashes per request"})
            return
        answers = []
        for digest in dict.fromkeys(d.upper() for d in digests):
            found = self.fake.catalog.find_hash(digest)
            if found is None:
                continue
            model, version = found
            if any(file.sha256 == digest for file in version.files):
                answers.append({"modelVersionId": version.id, "modelId": model.id, "hash": digest})
        self._json(200, answers)

    def _download(self, argument: str) -> None:
        fake = self.fake
        if not argument.isdigit():
            self._json(400, {"error": f"Invalid version id: {argument}"})
            return
        found = fake.catalog.find_version(int(argument))
        if found is None:
            self._json(404, {"error": "Model not found"})
            return
        model, version = found
        if model.archived:
            self._json(
                410, {"error": "This model has been archived and is not available for download"}
            )
            return
        file_id_arg = self._query.get("fileId", [None])[0]
        if file_id_arg is not None and not file_id_arg.isdigit():
            self._json(400, {"error": f"Invalid fileId: {file_id_arg}"})
            return
        if file_id_arg is not None:
            file = next((f for f in version.files if f.id == int(file_id_arg)), None)
        else:
            filters = {
                k: v[0] for k, v in self._query.items() if k in ("type", "format", "size", "fp")
            }
            file = pick_file(version, filters)
        if file is None:
            self._json(404, {"error": "File not found"})
            return
        self._file_id = file.id
        if fake.daily_limit_reached:
            self._json(429, {"error": "Daily download limit reached"})
            return
        if not self._authorized():
            if "Mozilla" in self.headers.get("User-Agent", ""):
                query = {k: v for k, v in self._query.items() if k != "token"}
                target = self._path + ("?" + urlencode(query, doseq=True) if query else "")
                login = f"{fake.url}/login?returnUrl={quote(target, safe='')}"
                self._respond(307, headers=[("Location", login)])
            else:
                message = "The creator of this asset requires you to be logged in to download it"
                self._json(401, {"error": "Unauthorized", "message": message})
            return
        if version.in_early_access:
            deadline = version.early_access_deadline
            self._json(403, {
                "error": "Early Access",
                "deadline": deadline,
                "message": f"This model is in Early Access until {deadline}. "
                           "Purchase early access or wait until then to download it.",
            })  # fmt: skip
            return
        if version.downloads_disabled:
            message = "The creator of this asset has disabled downloads on this file."
            self._json(401, {"error": "Unauthorized", "message": message})
            return
        self._respond(307, headers=[("Location", fake.cdn_link(file.id))])

    def _authorized(self) -> bool:
        scheme, _, credential = self.headers.get("Authorization", "").partition(" ")
        offered = [credential.strip()] if scheme.lower() == "bearer" else []
        offered += self._query.get("token", [])
        return any(hmac.compare_digest(t.encode(), self.fake.token.encode()) for t in offered)

    # ---- CDN origin

    def _cdn(self) -> None:
        if self.command not in ("GET", "HEAD"):
            self._xml_error(405, "MethodNotAllowed", "The specified method is not allowed")
            return
        image_match = re.fullmatch(r"/images/(\d+)/[^/]+", self._path)
        if image_match is not None:
            image = self.fake.catalog.find_image(int(image_match.group(1)))
            if image is None:
                self._xml_error(404, "NoSuchKey", "The specified key does not exist.")
            else:
                self._respond(200, image.content, content_type=image.mime)
            return
        match = re.fullmatch(r"/files/(\d+)/[^/]+", self._path)
        found = self.fake.catalog.find_file(int(match.group(1))) if match else None
        if found is None:
            self._xml_error(404, "NoSuchKey", "The specified key does not exist.")
            return
        file = found[2]
        self._file_id = file.id
        faults = self.fake.faults(file.id)
        if faults is not None and faults.html:
            self._respond(200, CHALLENGE_PAGE, content_type="text/html; charset=utf-8")
            return
        if faults is not None and faults.disguised_html:
            page = codecs.BOM_UTF8 + LOGIN_PAGE
            self._respond(200, page, content_type="application/octet-stream")
            return
        if faults is not None and faults.redirect_to is not None:
            self._respond(302, headers=[("Location", faults.redirect_to)])
            return
        failing = self.fake._take_status(file.id)
        if failing is not None and failing.status is not None:
            headers = [("Retry-After", failing.retry_after)] if failing.retry_after else []
            self._xml_error(failing.status, "Throttled", "Slow down", headers=headers)
            return
        status = self.fake._link_status(self._path, self._query)
        if status == "denied":
            self._xml_error(403, "AccessDenied", "Signature does not match")
            return
        if status == "expired":
            self._xml_error(403, "AccessDenied", "Request has expired")
            return
        self._serve_file(file, faults)

    def _serve_file(self, file: FakeFile, faults: FileFaults | None) -> None:
        total = file.length
        etag = f'"{file.sha256[:16].lower()}"'
        if faults is not None and (faults.no_length or faults.gzip):
            self._whole_file_unusually(file, faults, etag)
            return
        ignore_range = faults is not None and faults.ignore_range
        wanted = None
        if not ignore_range:
            honour_if_range = faults is None or not faults.ignore_if_range
            wanted = self._wanted_range(total, etag, honour_if_range=honour_if_range)
        if isinstance(wanted, str):
            self._xml_error(
                416, "InvalidRange", "The requested range is not satisfiable",
                headers=[("Content-Range", f"bytes */{total}")],
            )  # fmt: skip
            return
        start, stop = wanted if wanted is not None else (0, total)
        status = 206 if wanted is not None else 200
        if status == 206 and faults is not None and faults.range_cap is not None:
            stop = min(stop, start + faults.range_cap)
        if status == 206 and faults is not None and faults.empty_range:
            self._respond(206, headers=[("Content-Range", f"bytes {start}-{stop - 1}/{total}")])
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(stop - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{total}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", LAST_MODIFIED)
        self.send_header("Content-Disposition", _content_disposition(file.name))
        if self.command == "HEAD" or stop == start:
            self._log(status, 0)
            self.end_headers()
            return
        self.end_headers()
        with file.open() as stream:
            if faults is None and file.path is not None:
                self._sendfile(stream, file.id, start, stop - start, status)
            else:
                stream.seek(start)
                plan = self.fake._plan_body(file.id, stop - start)
                self._stream(stream, file, start, stop - start, status, plan)

    def _whole_file_unusually(self, file: FakeFile, faults: FileFaults, etag: str) -> None:
        """200 with the whole file: without a length (the end is the connection's), or
        gzip-compressed although ``identity`` was asked for."""
        with file.open() as stream:
            body = stream.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", etag)
        if faults.gzip:
            body = gzip.compress(body, compresslevel=1)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self._log(200, len(body))
        self.end_headers()
        self.fake._count_served(file.id, len(body))
        with contextlib.suppress(OSError):
            self.wfile.write(body)

    def _wanted_range(
        self, total: int, etag: str, *, honour_if_range: bool = True
    ) -> tuple[int, int] | Literal["unsatisfiable"] | None:
        """``(start, stop)``, ``"unsatisfiable"``, or ``None`` for the whole file."""
        header = self.headers.get("Range")
        if header is None:
            return None
        if_range = self.headers.get("If-Range")
        stale = if_range is not None and if_range.strip() not in (etag, LAST_MODIFIED)
        if stale and honour_if_range:
            return None
        unit, _, spec = header.partition("=")
        match = re.fullmatch(r"\s*(\d*)\s*-\s*(\d*)\s*", spec)
        if unit.strip().lower() != "bytes" or match is None or match.group(1, 2) == ("", ""):
            return None  # multi-range or malformed: the whole file, as RFC 9110 allows
        first, last = match.group(1, 2)
        if first == "":
            suffix = int(last)
            if suffix == 0 or total == 0:
                return "unsatisfiable"
            return max(total - suffix, 0), total
        start = int(first)
        if last and int(last) < start:
            return None
        if start >= total:
            return "unsatisfiable"
        return start, min(int(last) + 1, total) if last else total

    def _sendfile(
        self, stream: BinaryIO, file_id: int, start: int, length: int, status: int
    ) -> None:
        """Zero-copy fast path for unfaulted files on disk (benchmarks)."""
        self.fake._count_served(file_id, length)
        self._log(status, length)
        try:
            self.connection.sendfile(stream, start, length)
        except OSError:
            sent = max(stream.tell() - start, 0)
            self.fake._count_served(file_id, sent - length)
            self._log(status, sent)
            self.close_connection = True

    def _stream(
        self,
        stream: BinaryIO,
        file: FakeFile,
        start: int,
        length: int,
        status: int,
        plan: BodyPlan,
    ) -> None:
        fake = self.fake
        limit = length if plan.cut_at is None else plan.cut_at
        flip_at = file.length // 2 - start if plan.corrupt else None
        piece_size = CHUNK_SIZE
        if plan.throttle:
            piece_size = max(16, min(CHUNK_SIZE, int(plan.throttle / 20)))
        sent = 0
        paced_from = time.monotonic()
        stall_at = plan.stall_at
        try:
            while sent < limit:
                if sent == stall_at:
                    stall_at = None
                    if fake._stopping.wait(plan.stall_seconds):
                        break
                    paced_from = time.monotonic() - (sent / plan.throttle if plan.throttle else 0)
                wanted = min(piece_size, limit - sent)
                if stall_at is not None:
                    wanted = min(wanted, stall_at - sent)
                granted, expired = fake._take_budget(file.id, wanted)
                if expired:
                    limit = sent + granted
                piece = stream.read(granted)
                if flip_at is not None and sent <= flip_at < sent + granted:
                    mutable = bytearray(piece)
                    mutable[flip_at - sent] ^= 0xFF
                    piece = bytes(mutable)
                fake._count_served(file.id, len(piece))
                if sent + len(piece) == length:
                    self._log(status, length)
                try:
                    self.wfile.write(piece)
                except OSError:
                    fake._count_served(file.id, -len(piece))
                    raise
                sent += len(piece)
                if plan.throttle:
                    delay = paced_from + sent / plan.throttle - time.monotonic()
                    if delay > 0 and fake._stopping.wait(delay):
                        break
        except OSError:
            self._log(status, sent)
            self.close_connection = True
            return
        if sent < length:
            self._log(status, sent)
            self._cut_connection()

    def _cut_connection(self) -> None:
        """Close mid-body: the client sees EOF before ``Content-Length`` bytes."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client is gone already
            self.connection.shutdown(socket.SHUT_RDWR)


_ROUTES = (
    ("models", re.compile(r"/api/v1/models")),
    ("model", re.compile(r"/api/v1/models/([^/]+)")),
    ("hash_ids", re.compile(r"/api/v1/model-versions/by-hash/ids")),
    ("by_hash", re.compile(r"/api/v1/model-versions/by-hash/([^/]+)")),
    ("version", re.compile(r"/api/v1/model-versions/([^/]+)")),
    ("download", re.compile(r"/api/download/models/([^/]+)")),
)


def _route(path: str) -> tuple[str, str] | None:
    for name, pattern in _ROUTES:
        match = pattern.fullmatch(path)
        if match:
            return name, match.group(1) if match.groups() else ""
    return None


def _content_disposition(name: str) -> str:
    """``attachment`` with an ASCII ``filename`` and the exact name in ``filename*``."""
    printable = "".join(ch if " " <= ch <= "~" else "_" for ch in name)
    escaped = printable.replace("\\", "\\\\").replace('"', '\\"')
    return f"attachment; filename=\"{escaped}\"; filename*=UTF-8''{quote(name, safe='')}"
