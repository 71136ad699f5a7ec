#!/usr/bin/env python3
"""Measure civit against curl, sha256sum/b3sum and aria2c (DESIGN.md "Performance targets").

Usage: ``scripts/bench [--size 2G] [--runs 3] [--throttle 40m] [--keep] [--only GROUPS]``

Groups: download, throttled, hash, install, startup (``civit --version`` and a
``civit hash`` the hash cache answers, whole process, against ``python -c pass``),
mirror (``civit install --frozen`` of the file from an S3 server on loopback, s3rver
installed with npm, against the same install from nginx as an HTTP mirror).

Everything happens on this machine, in ``bench/work/``:

- missing tools (nginx, curl, aria2c, b3sum) are installed with apt where possible; a
  case whose tool is still missing is skipped with a note;
- a file of random bytes (2 GiB by default) is written once and its SHA256, BLAKE3 and
  CRC32 computed, which makes the record civit verifies against;
- nginx, started by this script on a free loopback port, serves it from ``/plain/`` and
  from ``/throttled/`` (``limit_rate`` per connection);
- every case runs ``--runs`` times, interleaved with the other cases of its group, into
  the same folder; between runs the output is removed, the disk synced, and a short
  cool-down puts every run in the same memory state (see :func:`settle`).

civit's download cases call :func:`civit.transfer.fetch` (the engine ``civit get`` runs
once the API has given a link) in a subprocess of its own, so its wall time includes
interpreter start-up and imports, as a user would see it, and its peak RSS is its own.
``civit get`` end to end, through :class:`civit.testing.FakeCivitai`, runs once per
round too, to show the API's share.

Prints a Markdown table and writes ``bench/results.json``. MB means 10^6 bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType

from benchsuite.cases import (
    Bench,
    MirrorCases,
    Paths,
    define_cases,
    fake_for_source,
    install_case,
    make_source,
    run_group,
    run_mirror_group,
    select,
)
from benchsuite.common import (
    GROUPS,
    REPO,
    SPACE_MARGIN,
    STARTUP_RUNS_PER_RUN,
    CaseError,
    human,
    parse_rate,
    parse_size,
    remove,
)
from benchsuite.machine import ensure_tools, machine_info
from benchsuite.measure import settle
from benchsuite.report import build_rows, render_table
from benchsuite.servers import nginx


def fetch_driver(argv: Sequence[str]) -> int:
    """``bench.py _fetch URL TARGET SIZE CONNECTIONS DIGESTS_JSON``: one civit fetch.

    Prints one JSON line: seconds inside ``fetch``, the digests verified, peak RSS.
    """
    import resource

    from civit.partfile import positional_io_available
    from civit.records import Hashes
    from civit.transfer import fetch

    url, target, size, connections, digests = argv
    expected = Hashes(**{name: value for name, value in json.loads(digests).items()})
    started = time.perf_counter()
    fetched = fetch(
        lambda: url,
        Path(target),
        expected=expected,
        file_key="bench:source",
        size_hint=int(size),
        connections=int(connections),
        verify=True,
    )
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    report = {
        "seconds": seconds,
        "verified": list(fetched.verified),
        "bytes": fetched.transferred,
        "rss": peak,
        "positional_io": positional_io_available(),
    }
    print(json.dumps(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table; write the results file.

    Returns:
        0 when every selected case ran (targets may still fail), 1 when a case errored.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["_fetch"]:
        return fetch_driver(arguments[1:])
    if arguments[:1] == ["_fetch_portable"]:
        for name in ("pwrite", "pwritev", "pread", "preadv", "posix_fadvise", "posix_fallocate"):
            if hasattr(os, name):
                delattr(os, name)  # what Windows' os module lacks: forces the portable path
        return fetch_driver(arguments[1:])
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=parse_size, default=2 << 30, help="file size (2G)")
    parser.add_argument("--runs", type=int, default=3, help="runs per case (3)")
    parser.add_argument("--throttle", type=parse_rate, default="40m",
                        help="nginx limit_rate per connection on /throttled/ (40m)")  # fmt: skip
    parser.add_argument("--keep", action="store_true",
                        help="keep the source file (and its digests) for the next run")  # fmt: skip
    groups = ", ".join(GROUPS)
    parser.add_argument("--only", metavar="CASES",
                        help=f"comma-separated groups ({groups}) or case ids")  # fmt: skip
    parser.add_argument(
        "--cooldown", type=float, default=3.0, metavar="SECONDS",
        help="wait before each download run, after removing the last output (3)",
    )  # fmt: skip
    parser.add_argument("--no-install", action="store_true", help="never call apt-get")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work",
                        help="work folder (bench/work)")  # fmt: skip
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results.json",
                        help="where to write the results (bench/results.json)")  # fmt: skip
    args = parser.parse_args(arguments)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through every cleanup below

    signal.signal(signal.SIGTERM, terminate)
    paths = Paths(args.work.resolve())
    paths.work.mkdir(parents=True, exist_ok=True)
    try:
        return _bench(args, paths, say)
    finally:
        remove(paths.out)
        remove(paths.scratch)
        remove(paths.nginx)
        remove(paths.work / "install")
        remove(paths.work / "startup-cache")
        remove(paths.work / "mirror-project")
        remove(paths.work / "s3rver-data")
        for link in paths.serve.glob("[0-9a-f]" * 8 + "*"):  # the HTTP mirror's hardlink
            remove(link)
        if not args.keep:
            remove(paths.serve)
            with contextlib.suppress(OSError):
                paths.work.rmdir()  # only if nothing else (say the apt log) is left


def _bench(args: argparse.Namespace, paths: Paths, say: Callable[[str], None]) -> int:
    python = sys.executable
    notes = ensure_tools(install=not args.no_install, log=paths.work / "apt.log")
    for note in notes:
        say(f"bench: {note}")
    needed = args.size + SPACE_MARGIN
    if not (paths.source.exists() and paths.source.stat().st_size == args.size):
        needed += args.size
    free = shutil.disk_usage(paths.work).free
    if free < needed:
        say(f"bench: {human(needed)} needed in {paths.work}, {human(free)} free")
        return 1
    if shutil.which("nginx") is None:
        say("bench: nginx is not available, so there is nothing to download from")
    say(f"bench: preparing {human(args.size)} of random bytes in {paths.source}")
    started = time.perf_counter()
    digests = make_source(paths.source, args.size)
    say(f"bench: source ready in {time.perf_counter() - started:.1f} s")
    settle(paths.out, paths.scratch)
    machine = machine_info(paths.work, python)

    with contextlib.ExitStack() as stack:
        base = "http://127.0.0.1:9"  # unused when nginx is missing: those cases skip
        if shutil.which("nginx"):
            base = stack.enter_context(nginx(paths.serve, paths.nginx, throttle=args.throttle))
        api_url = stack.enter_context(fake_for_source(paths.source, digests))
        bench = Bench(
            paths, python=python, size=args.size, digests=digests, base=base,
            cooldown=args.cooldown,
        )  # fmt: skip
        mirrors = MirrorCases(bench, api_url)
        cases = select(define_cases(bench, api_url, args.throttle, mirrors), args.only)
        if shutil.which("nginx") is None:
            for case in cases:
                if (
                    case.group in ("download", "throttled") and case.id != "civit_get"
                ) or case.id in ("install_http_mirror", "curl_http_mirror"):
                    case.skipped = case.skipped or "nginx not available"
        for group in GROUPS:
            members = [c for c in cases if c.group == group]
            if not members:
                continue
            say(f"bench: {group}")
            if group == "hash":
                bench.warm_source()
            if group == "install":
                install_case(bench, members[0], args.runs)
            elif group == "mirror":
                run_mirror_group(
                    bench, mirrors, members, args.runs, install=not args.no_install, say=say
                )
            elif group == "startup":
                try:
                    bench.prime_hash_cache()
                except CaseError as exc:
                    for case in members:
                        case.error = case.error or str(exc)
                run_group(members, args.runs * STARTUP_RUNS_PER_RUN, say)
            else:
                run_group(members, args.runs, say)
            settle(paths.out, paths.scratch)

    by_id = {case.id: case for case in cases}
    rows = build_rows(by_id)
    table = render_table(rows)
    disk = machine["disk"]
    memory = machine["memory"] or 0
    summary = (
        f"{machine['cpu']}, {machine['usable_cores']} cores, {human(memory)} RAM; "
        f"disk {disk.get('device')} ({disk.get('fstype')}, {disk.get('kind', 'unknown kind')}); "
        f"Python {platform.python_version()}; {human(args.size)} file, {args.runs} runs, "
        f"{args.cooldown:g} s cool-down before each download; median seconds (min–max)"
    )
    judged = [row.passed for row in rows if row.passed is not None]
    print(f"\n{summary}\n\n{table}\n")
    print(f"{sum(judged)} of {len(judged)} targets met.")
    for case in cases:
        for note in case.notes:
            print(f"- {case.label}: {note}")
    document = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": ["scripts/bench", *sys.argv[1:]],
        "settings": {
            "size": args.size,
            "runs": args.runs,
            "throttle": args.throttle,
            "cooldown": args.cooldown,
        },
        "machine": {**machine, "python": platform.python_version()},
        "setup_notes": notes,
        "cases": {case.id: case.as_json() for case in cases},
        "rows": [row.as_json() for row in rows],
        "targets_met": sum(judged),
        "targets_judged": len(judged),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(document, indent=2) + "\n")
    say(f"bench: wrote {args.results}")
    return 1 if any(case.error for case in cases) else 0


if __name__ == "__main__":
    sys.exit(main())
