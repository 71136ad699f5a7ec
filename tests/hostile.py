"""A scripted loopback HTTP server for hostile answers the fake does not give.

Each route is a function of the request handler that writes whatever it likes: a gzip
bomb, an endless body, a trickle, a file where a redirect belongs. Real sockets, real
HTTP/1.1, like :class:`civit.testing.FakeCivitai`.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

Route = Callable[["ScriptedHandler"], None]


class ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self.routes = dict(routes)
        self.stopping = threading.Event()
        self.paths: list[str] = []
        self.sent = 0
        super().__init__(("127.0.0.1", 0), ScriptedHandler)

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients hanging up mid-answer is what these tests provoke: stay quiet."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ScriptedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ScriptedServer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.server.paths.append(self.path)
        route = self.server.routes.get(path)
        if route is None:
            self.answer(404, b'{"error": "Not found"}')
            return
        with contextlib.suppress(ConnectionError):  # the client gave up: that is the point
            route(self)

    do_POST = do_GET

    def answer(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.write(body)

    def start_chunked(self, status: int = 200, *, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        self.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()
        self.server.sent += len(data)

    def stream_forever(self, piece: bytes, *, pause: float = 0.0) -> None:
        """Send ``piece`` as chunk after chunk until the client hangs up."""
        while not self.server.stopping.is_set():
            self.chunk(piece)
            if pause:
                time.sleep(pause)


@contextlib.contextmanager
def scripted_server(routes: Mapping[str, Route]) -> Iterator[ScriptedServer]:
    server = ScriptedServer(routes)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()


def gzip_bomb(expanded: int) -> bytes:
    """A gzip stream of ``expanded`` zero bytes (about 1/1000 of that in size)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [packer.compress(block) for _ in range(expanded // len(block))]
    return b"".join(parts) + packer.flush()


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """A static file server for ``folder`` (a mirror serving whatever it was given)."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietFiles, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
