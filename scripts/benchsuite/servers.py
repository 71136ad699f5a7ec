"""The servers files are fetched from: nginx (plain and throttled) and s3rver (an S3 server)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from benchsuite.common import CaseError, free_port, remove

NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /plain/ {{ alias {serve}/; }}
        location /throttled/ {{ alias {serve}/; limit_rate {throttle}; }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(serve: Path, work: Path, *, throttle: str) -> Iterator[str]:
    """Run nginx in the foreground on a free loopback port; yield its base URL.

    Raises:
        RuntimeError: nginx would not start (its error log is in the message).
    """
    work.mkdir(parents=True, exist_ok=True)
    (work / "tmp").mkdir(exist_ok=True)
    # As root, nginx's workers would switch to "nobody", who may not read the work tree.
    user = ""
    if os.geteuid() == 0:
        import grp
        import pwd

        user = f"user {pwd.getpwuid(0).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
    last_error = ""
    for _ in range(5):  # the free port may be taken between probing and binding
        port = free_port()
        conf = work / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(work=work, serve=serve, port=port, throttle=throttle, user=user)
        )
        log = (work / "stderr.log").open("w")
        process = subprocess.Popen(
            ["nginx", "-p", str(work), "-c", str(conf)], stdout=log, stderr=log
        )
        try:
            if _wait_listening(port, process):
                try:
                    yield f"http://127.0.0.1:{port}"
                finally:
                    _stop(process)
                return
            _stop(process)
        except BaseException:
            _stop(process)
            raise
        finally:
            log.close()
        last_error = " ".join(
            (work / name).read_text(errors="replace").strip()
            for name in ("stderr.log", "error.log")
            if (work / name).exists()
        )
    raise RuntimeError(f"nginx did not start: {last_error[-500:]}")


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # SIGTERM: nginx's fast shutdown
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


S3RVER_PACKAGE = "s3rver@3.7.1"
S3RVER_KEY = "S3RVER"  # s3rver's fixed access key id and secret
MIRROR_BUCKET = "bench"


def ensure_s3rver(folder: Path, *, install: bool, log: Path) -> Path:
    """s3rver's start script, installed with npm into ``folder`` if missing.

    Raises:
        CaseError: no node/npm, or the install failed.
    """
    script = folder / "node_modules" / "s3rver" / "bin" / "s3rver.js"
    if script.exists():
        return script
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise CaseError("node and npm are needed for the S3 server (s3rver)")
    if not install:
        raise CaseError("s3rver is not installed (--no-install)")
    folder.mkdir(parents=True, exist_ok=True)
    with log.open("a") as sink:
        subprocess.run(
            ["npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund", S3RVER_PACKAGE],
            stdout=sink, stderr=sink, check=False,
        )  # fmt: skip
    if not script.exists():
        raise CaseError(f"npm could not install {S3RVER_PACKAGE} (see {log})")
    return script


@contextlib.contextmanager
def s3rver(script: Path, data: Path) -> Iterator[str]:
    """s3rver (a Node S3 server that checks signatures) on a free loopback port."""
    remove(data)
    data.mkdir(parents=True)
    port = free_port()
    process = subprocess.Popen(
        ["node", str(script), "-d", str(data), "-a", "127.0.0.1", "-p", str(port), "--silent",
         "--configure-bucket", MIRROR_BUCKET],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        if not _wait_listening(port, process):
            raise CaseError("s3rver did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)
        remove(data)
