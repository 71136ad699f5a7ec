"""``python -m civit.testing``: serve a fake Civitai until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from civit.testing.catalog import bench_model, default_catalog
from civit.testing.server import FakeCivitai


def main(argv: Sequence[str] | None = None) -> int:
    """Run a FakeCivitai until SIGTERM or SIGINT (``python -m civit.testing``).

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status, 0 after a clean shutdown.
    """
    parser = argparse.ArgumentParser(
        prog="python -m civit.testing", description="Serve a fake Civitai on loopback."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    parser.add_argument("--port-file", type=Path, help="write the API base URL to this file")
    parser.add_argument("--token", default="test-token", help="the API token to accept")
    parser.add_argument("--link-ttl", type=float, default=3600.0, help="CDN link lifetime (s)")
    parser.add_argument(
        "--extra-file-size", "--big-file-size", type=int, metavar="BYTES",
        help="add model 99999 (version 99999, file 3999999) with a file of this size",
    )  # fmt: skip
    parser.add_argument(
        "--data-dir", type=Path,
        help="where files above 64 MiB are kept between runs (default: a temporary folder)",
    )  # fmt: skip
    parser.add_argument("--throttle", type=float, metavar="BYTES_PER_SECOND",
                        help="throttle every CDN connection")  # fmt: skip
    args = parser.parse_args(argv)

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with tempfile.TemporaryDirectory(prefix="fake-civitai-") as scratch:
        catalog = default_catalog()
        if args.extra_file_size:
            catalog.add(bench_model(args.extra_file_size, directory=args.data_dir or Path(scratch)))
        fake = FakeCivitai(
            token=args.token, catalog=catalog, link_ttl=args.link_ttl, host=args.host,
            port=args.port,
        )  # fmt: skip
        with fake:
            if args.throttle:
                for model in catalog.models:
                    for version in model.versions:
                        for file in version.files:
                            fake.set_faults(file.id, throttle=args.throttle)
            print(f"FakeCivitai API at {fake.url} (CDN {fake.cdn_url}) token={fake.token}",
                  file=sys.stderr, flush=True)  # fmt: skip
            if args.port_file:
                partial = args.port_file.with_name(args.port_file.name + ".tmp")
                partial.write_text(fake.url + "\n")
                partial.replace(args.port_file)
            while not stop.wait(0.2):
                pass
    return 0
