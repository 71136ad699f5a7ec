"""``LoopbackProxy``: a small, real HTTP proxy on 127.0.0.1 for tests.

It speaks the two forms clients use: ``CONNECT host:port`` (a tunnel, for ``https://``
URLs: it sees the host name and then only ciphertext) and absolute-URI requests (``GET
http://host/path``, for ``http://`` URLs). Host names are looked up in ``hosts`` only,
never in DNS, so a fake origin named ``civitai.test`` is reachable through the proxy and
nowhere else: a client that bypasses the proxy fails to resolve it.

    with FakeCivitai(api_name="civitai.test", cdn_name="cdn.test") as fake, \\
            LoopbackProxy({"civitai.test": "127.0.0.1", "cdn.test": "127.0.0.1"}) as proxy:
        ...  # HTTPS_PROXY=proxy.url; then look at proxy.requests
"""

from __future__ import annotations

import base64
import contextlib
import select
import socket
import socketserver
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

__all__ = ["LoopbackProxy", "ProxiedRequest"]

MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class ProxiedRequest:
    """One request the proxy saw: ``CONNECT`` with its ``host:port``, or an absolute
    URI request with its URL and headers (names in lower case)."""

    method: str
    target: str
    headers: dict[str, str]
    status: int


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: LoopbackProxy


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(10)
        head = _read_head(client)
        if head is None:
            return
        request_line, _, rest = head.partition(b"\r\n")
        method, target, _ = request_line.decode("latin-1").split(" ", 2)
        headers = _parse_headers(rest)
        self.server.proxy._serve(client, method, target, headers, head)


def _read_head(connection: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk or len(data) > MAX_HEAD:
            return None
        data += chunk
    return data


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return headers


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [a, b]
    while True:
        readable, _, _ = select.select(sockets, [], [], 10)
        if not readable:
            return
        for source in readable:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            (b if source is a else a).sendall(data)


class LoopbackProxy:
    """A threaded HTTP proxy on loopback (see the module docstring).

    Args:
        hosts: host name -> IP address the proxy connects to (its only resolver).
        credentials: ``(user, password)`` to require as ``Proxy-Authorization: Basic``.
    """

    def __init__(
        self, hosts: Mapping[str, str], *, credentials: tuple[str, str] | None = None
    ) -> None:
        self.hosts = {name.lower(): address for name, address in hosts.items()}
        self.credentials = credentials
        self._log: list[ProxiedRequest] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LoopbackProxy:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None

    def __enter__(self) -> LoopbackProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (with ``user:password@`` when credentials are set)."""
        if self._server is None:
            raise RuntimeError("LoopbackProxy is not running; call start() first")
        port = self._server.server_address[1]
        userinfo = f"{self.credentials[0]}:{self.credentials[1]}@" if self.credentials else ""
        return f"http://{userinfo}127.0.0.1:{port}"

    @property
    def requests(self) -> list[ProxiedRequest]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self._log)

    def _record(self, method: str, target: str, headers: dict[str, str], status: int) -> None:
        with self._lock:
            self._log.append(ProxiedRequest(method, target, headers, status))

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        if self.credentials is None:
            return True
        expected = base64.b64encode(":".join(self.credentials).encode()).decode()
        return headers.get("proxy-authorization", "") == f"Basic {expected}"

    def _resolve(self, host: str) -> str | None:
        return self.hosts.get(host.lower().strip("[]"))

    def _serve(
        self,
        client: socket.socket,
        method: str,
        target: str,
        headers: dict[str, str],
        head: bytes,
    ) -> None:
        def refuse(status: int, reason: str) -> None:
            self._record(method, target, headers, status)
            extra = 'Proxy-Authenticate: Basic realm="test"\r\n' if status == 407 else ""
            with contextlib.suppress(OSError):
                client.sendall(
                    f"HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: 0\r\n"
                    "Connection: close\r\n\r\n".encode()
                )

        if not self._authorized(headers):
            refuse(407, "Proxy Authentication Required")
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
        else:
            parts = urlsplit(target)
            if parts.scheme != "http" or not parts.hostname:
                refuse(400, "Bad Request")
                return
            host, port = parts.hostname, str(parts.port or 80)
        address = self._resolve(host)
        if address is None or not port.isdigit():
            refuse(502, "Bad Gateway")
            return
        try:
            upstream = socket.create_connection((address, int(port)), timeout=10)
        except OSError:
            refuse(502, "Bad Gateway")
            return
        self._record(method, target, headers, 200)
        with upstream:
            if method == "CONNECT":
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                upstream.sendall(_origin_form(head, target))
            _pipe(client, upstream)


def _origin_form(head: bytes, target: str) -> bytes:
    """The request head for the origin: path-only request line, no proxy headers, and
    ``Connection: close`` (one request per upstream connection keeps this proxy small).
    Whatever followed the head (a body) is passed on unchanged."""
    header_block, _, body = head.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    method, _, version = lines[0].split(" ", 2)
    parts = urlsplit(target)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    kept = [
        line
        for line in lines[1:]
        if line.split(":", 1)[0].strip().lower()
        not in ("proxy-authorization", "proxy-connection", "connection", "keep-alive")
    ]
    rebuilt = [f"{method} {path} {version}", *kept, "Connection: close", "", ""]
    return "\r\n".join(rebuilt).encode("latin-1") + body
