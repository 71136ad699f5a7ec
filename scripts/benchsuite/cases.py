"""The cases: what each runs, the targets they are judged by, and how a group of them runs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchsuite.common import (
    ALGORITHMS,
    BENCH_SCRIPT,
    FAKE_TOKEN,
    GROUPS,
    HASH_FILE_FALLBACK,
    HASHLIB_SHA256,
    INSTALL_FILES,
    MB,
    CaseError,
    MiB,
    rate_bytes,
    remove,
)
from benchsuite.measure import run_measured, settle
from benchsuite.servers import MIRROR_BUCKET, S3RVER_KEY, ensure_s3rver, s3rver


def make_source(path: Path, size: int) -> dict[str, str]:
    """Write (or reuse) ``size`` random bytes at ``path``; return their digests.

    The digests are kept beside the file, so ``--keep`` makes the next run start at once.
    """
    sidecar = path.with_name(path.name + ".json")
    with contextlib.suppress(OSError, ValueError, KeyError):
        if path.stat().st_size == size:
            known = json.loads(sidecar.read_text())
            if known["size"] == size:
                return {name: str(known[name]) for name in ALGORITHMS}
    from civit.hashing import hash_file

    remove(sidecar)
    path.parent.mkdir(parents=True, exist_ok=True)
    block = 16 * MiB
    with path.open("wb") as stream:
        remaining = size
        while remaining:
            remaining -= stream.write(os.urandom(min(block, remaining)))
        stream.flush()
        # Write-back of the new file would otherwise steal a core from the first runs.
        os.fsync(stream.fileno())
    digests = hash_file(path, ALGORITHMS)
    sidecar.write_text(json.dumps({"size": size, **digests}))
    return digests


@dataclass(frozen=True)
class Run:
    """One timed run of a case; ``steal`` is CPU time the host took meanwhile (noise)."""

    seconds: float
    peak_rss: int
    steal: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Case:
    """One thing to time, ``runs`` times; its ``execute`` returns a run or raises."""

    id: str
    group: str
    label: str
    execute: Callable[[], Run] | None = None
    payload: int | None = None  # bytes moved per run, for MB/s
    skipped: str | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(r.seconds for r in self.runs) if self.runs else None

    @property
    def peak_rss(self) -> int | None:
        return max(r.peak_rss for r in self.runs) if self.runs else None

    @property
    def throughput(self) -> float | None:
        median = self.median
        if self.payload is None or not median:
            return None
        return self.payload / median / MB

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "group": self.group,
            "runs": [round(r.seconds, 4) for r in self.runs],
            "steal_seconds": [round(r.steal, 3) for r in self.runs],
            "median": round(self.median, 4) if self.median is not None else None,
            "mb_per_s": round(self.throughput, 1) if self.throughput is not None else None,
            "peak_rss_mb": round(self.peak_rss / MB, 1) if self.peak_rss is not None else None,
            "details": [r.detail for r in self.runs if r.detail],
            "skipped": self.skipped,
            "error": self.error,
            "notes": self.notes,
        }


Kind = Literal["ratio_at_most", "speedup_at_least", "seconds_under", "rss_under_mb"]


@dataclass(frozen=True)
class Target:
    """A DESIGN.md target: ``case`` compared with ``against`` (or an absolute limit)."""

    case: str
    kind: Kind
    limit: float
    against: str | None = None

    def describe(self, label_of: Callable[[str], str]) -> str:
        if self.kind == "ratio_at_most":
            return f"≤ {self.limit:g}× {label_of(self.against or '')}"
        if self.kind == "speedup_at_least":
            return f"≥ {self.limit:g}× faster than {label_of(self.against or '')}"
        if self.kind == "seconds_under":
            return f"< {self.limit:g} s"
        return f"peak RSS < {self.limit:g} MB"


TARGETS = (
    Target("civit1", "ratio_at_most", 1.1, "curl"),
    Target("civit1", "speedup_at_least", 2.0, "shell"),
    Target("civit8_throttled", "ratio_at_most", 1.1, "aria2c"),
    Target("civit8_throttled", "speedup_at_least", 6.0, "civit1_throttled"),
    Target("civit_hash", "ratio_at_most", 1.15, "hashlib_sha256"),
    Target("install_frozen", "seconds_under", 0.5),
    Target("civit_version", "seconds_under", 0.10),
    Target("civit_hash_cached", "seconds_under", 0.15),
    Target("civit1", "rss_under_mb", 150),
    Target("civit8", "rss_under_mb", 150),
    Target("civit1_portable", "ratio_at_most", 1.3, "civit1"),
    Target("civit8_portable", "ratio_at_most", 1.3, "civit8"),
    Target("install_s3_mirror", "ratio_at_most", 1.2, "install_http_mirror"),
)
# The reference each group's untargeted rows are compared with.
GROUP_REFERENCE = {
    "download": "curl",
    "throttled": "aria2c",
    "hash": "hashlib_sha256",
    "startup": "python_startup",
    "mirror": "install_http_mirror",
}


@dataclass(frozen=True)
class Paths:
    """Where a bench run keeps its files (all under ``bench/work``)."""

    work: Path

    @property
    def serve(self) -> Path:
        return self.work / "serve"

    @property
    def source(self) -> Path:
        return self.serve / "source.bin"

    @property
    def out(self) -> Path:
        return self.work / "out"

    @property
    def output(self) -> Path:
        return self.out / "download.bin"

    @property
    def nginx(self) -> Path:
        return self.work / "nginx"

    @property
    def scratch(self) -> Path:
        return self.work / "scratch"


class Bench:
    """The cases of one invocation, with what they share: paths, record, URLs, env."""

    def __init__(
        self,
        paths: Paths,
        *,
        python: str,
        size: int,
        digests: dict[str, str],
        base: str,
        cooldown: float,
    ) -> None:
        self.paths = paths
        self.cooldown = cooldown
        self.python = python
        self.civit = str(Path(python).with_name("civit"))
        self.size = size
        self.digests = digests
        self.plain = f"{base}/plain/{paths.source.name}"
        self.throttled = f"{base}/throttled/{paths.source.name}"

    def civit_env(self, **extra: str) -> dict[str, str]:
        """The environment for civit processes: no user config, a private cache."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("CIVITAI_", "CIVIT_"))
        }
        env.update(
            CIVIT_CONFIG=str(self.paths.work / "no-config.toml"),
            CIVIT_CACHE_DIR=str(self.paths.scratch / "cache"),
        )
        env.update(extra)
        return env

    # -- checks --

    def check_output(self, path: Path) -> None:
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise CaseError(f"no output at {path}") from exc
        if size != self.size:
            raise CaseError(f"{path.name} has {size} bytes, expected {self.size}")

    def check_printed(self, text: str, *algorithms: str) -> None:
        for algorithm in algorithms:
            if self.digests[algorithm].lower() not in text.lower():
                raise CaseError(f"the {algorithm} printed does not match the record")

    # -- download cases --

    def curl(self, *, durable: bool = False) -> Run:
        settle(self.paths.out, cooldown=self.cooldown)
        argv = ["curl", "-s", "-S", "-f", "-o", str(self.paths.output), self.plain]
        done = run_measured(argv)
        if failure := done.failure("curl"):
            raise CaseError(failure)
        seconds, rss, steal = done.seconds, done.peak_rss, done.steal
        if durable:
            # coreutils sync FILE fsyncs just that file: the durability civit pays for.
            synced = run_measured(["sync", str(self.paths.output)])
            seconds += synced.seconds
            steal += synced.steal
        self.check_output(self.paths.output)
        return Run(seconds, rss, steal)

    def shell(self) -> Run:
        settle(self.paths.out, cooldown=self.cooldown)
        output = str(self.paths.output)
        steps = [
            ["curl", "-s", "-S", "-f", "-o", output, self.plain],
            ["sha256sum", output],
            ["b3sum", output],
        ]
        seconds = steal = 0.0
        rss = 0
        printed = ""
        for argv in steps:
            done = run_measured(argv)
            if failure := done.failure(argv[0]):
                raise CaseError(failure)
            seconds += done.seconds
            steal += done.steal
            rss = max(rss, done.peak_rss)
            printed += done.stdout
        self.check_printed(printed, "sha256", "blake3")
        return Run(seconds, rss, steal)

    def civit_fetch(self, url: str, connections: int, *, portable: bool = False) -> Run:
        """One ``fetch`` in its own process; ``portable`` removes the POSIX positional
        I/O calls first, so the engine runs as it does on Windows."""
        settle(self.paths.out, self.paths.scratch, cooldown=self.cooldown)
        argv = [
            self.python,
            str(BENCH_SCRIPT),
            "_fetch_portable" if portable else "_fetch",
            url,
            str(self.paths.output),
            str(self.size),
            str(connections),
            json.dumps(self.digests),
        ]
        done = run_measured(argv, env=self.civit_env())
        if failure := done.failure("civit fetch"):
            raise CaseError(failure)
        report = json.loads(done.stdout.strip().splitlines()[-1])
        if set(report["verified"]) != set(ALGORITHMS):
            raise CaseError(f"civit verified {report['verified']}, expected {ALGORITHMS}")
        if report["positional_io"] == portable:
            raise CaseError(f"the engine ran with positional_io={report['positional_io']}")
        self.check_output(self.paths.output)
        return Run(done.seconds, done.peak_rss, done.steal, {"fetch_seconds": report["seconds"]})

    def civit_get(self, api_url: str) -> Run:
        settle(self.paths.out, self.paths.scratch, cooldown=self.cooldown)
        argv = [
            self.civit, "get", "99999", "--dest", str(self.paths.out),
            "--connections", "1", "--json",
        ]  # fmt: skip
        env = self.civit_env(CIVITAI_BASE_URL=api_url, CIVITAI_API_TOKEN=FAKE_TOKEN)
        done = run_measured(argv, env=env)
        if failure := done.failure("civit get"):
            raise CaseError(failure)
        parsed = json.loads(done.stdout)
        document = parsed[0] if isinstance(parsed, list) else parsed
        if document.get("status") != "downloaded" or len(document.get("verified", ())) < 3:
            raise CaseError(f"civit get reported {document}")
        self.check_output(Path(document["path"]))
        return Run(
            done.seconds, done.peak_rss, done.steal, {"civit_seconds": document.get("seconds")}
        )

    def aria2c(self) -> Run:
        settle(self.paths.out, cooldown=self.cooldown)
        argv = [
            "aria2c", "-x8", "-s8", "-k1M", "--file-allocation=none", "-q",
            "--allow-overwrite=true", "--auto-file-renaming=false",
            "-d", str(self.paths.out), "-o", self.paths.output.name, self.throttled,
        ]  # fmt: skip
        done = run_measured(argv)
        if failure := done.failure("aria2c"):
            raise CaseError(failure)
        self.check_output(self.paths.output)
        return Run(done.seconds, done.peak_rss, done.steal)

    # -- hashing cases --

    def hash_command(
        self, argv: Sequence[str], *algorithms: str, env: dict[str, str] | None = None
    ) -> Run:
        done = run_measured(argv, env=env)
        if failure := done.failure(argv[0]):
            raise CaseError(failure)
        self.check_printed(done.stdout, *algorithms)
        return Run(done.seconds, done.peak_rss, done.steal)

    def civit_hash_argv(self) -> tuple[list[str], str | None]:
        """``civit hash`` if this civit has it, else ``hash_file`` in a subprocess."""
        help_run = subprocess.run(
            [self.civit, "hash", "--help"], capture_output=True, text=True, check=False
        )
        source = str(self.paths.source)
        if help_run.returncode == 0:
            flags = ["--no-cache"] if "--no-cache" in help_run.stdout else []
            return [self.civit, "hash", "--algo", ",".join(ALGORITHMS), *flags, source], None
        note = "civit hash is not available: timed civit.hashing.hash_file in a subprocess"
        return [self.python, "-c", HASH_FILE_FALLBACK, source], note

    # -- start-up cases --

    def startup_env(self) -> dict[str, str]:
        """A hash cache of its own, kept for the whole startup group."""
        return self.civit_env(CIVIT_CACHE_DIR=str(self.paths.work / "startup-cache"))

    def startup_command(self, argv: Sequence[str], expect: str) -> Run:
        done = run_measured(argv, env=self.startup_env())
        if failure := done.failure(argv[0]):
            raise CaseError(failure)
        if expect.lower() not in done.stdout.lower():
            raise CaseError(f"{' '.join(argv[1:])} did not print {expect!r}")
        return Run(done.seconds, done.peak_rss, done.steal)

    def civit_hash_cached_argv(self) -> list[str]:
        return [self.civit, "hash", "--algo", ",".join(ALGORITHMS), str(self.paths.source)]

    def prime_hash_cache(self) -> None:
        """Hash the source once, so the timed ``civit hash`` runs answer from the cache."""
        remove(self.paths.work / "startup-cache")
        done = run_measured(self.civit_hash_cached_argv(), env=self.startup_env())
        if failure := done.failure("civit hash (to fill the cache)"):
            raise CaseError(failure)

    def warm_source(self) -> None:
        """Read the source once so every hashing case starts from the page cache."""
        with self.paths.source.open("rb", buffering=0) as stream:
            view = memoryview(bytearray(4 * MiB))
            while stream.readinto(view):
                pass


@contextlib.contextmanager
def fake_for_source(source: Path, digests: dict[str, str]) -> Iterator[str]:
    """A FakeCivitai whose model 99999 serves the source file (zero-copy); yields its URL."""
    from civit.testing import Catalog, FakeCivitai, FakeFile, FakeModel, FakeVersion

    file = FakeFile(
        3999999, "bench.safetensors", path=source, primary=True,
        known_digests={name.lower(): value for name, value in digests.items()},
    )  # fmt: skip
    version = FakeVersion(99999, "v1", "SDXL 1.0", "2024-07-07T07:07:07.000Z", files=[file])
    model = FakeModel(99999, "Bench Model", "LORA", "bench", [version])
    with FakeCivitai(token=FAKE_TOKEN, catalog=Catalog([model])) as fake:
        yield fake.url


def install_case(bench: Bench, case: Case, runs: int) -> None:
    """``civit install --frozen`` with every file present: set up once, then time."""
    from civit.testing import Catalog, FakeCivitai, synthetic_models

    probe = subprocess.run([bench.civit, "install", "--help"], capture_output=True, check=False)
    if probe.returncode != 0:
        case.skipped = "civit install not available"
        return
    folder = bench.paths.work / "install"
    remove(folder)
    (folder / "ComfyUI").mkdir(parents=True)
    models = synthetic_models(INSTALL_FILES)
    lines = ['[settings]\nroot = "ComfyUI"\nlayout = "comfyui"\n']
    for model in models:
        lines.append(f'[[model]]\nref = "{model.id}@{model.versions[0].id}"\n')
    (folder / "civit.toml").write_text("\n".join(lines))
    with FakeCivitai(token=FAKE_TOKEN, catalog=Catalog(models)) as fake:
        env = bench.civit_env(CIVITAI_BASE_URL=fake.url, CIVITAI_API_TOKEN=FAKE_TOKEN)
        first = run_measured([bench.civit, "install", "-f", "civit.toml"], env=env, cwd=folder)
        if failure := first.failure("civit install (first, to download and lock)"):
            case.error = failure
            return
        present = [p for p in (folder / "ComfyUI").rglob("*") if p.is_file()]
        if len(present) != INSTALL_FILES:
            case.error = f"the first install left {len(present)} files, not {INSTALL_FILES}"
            return
        case.notes.append(f"first install (downloads + lock): {first.seconds:.2f} s")
        fake.clear_log()
        for _ in range(runs):
            done = run_measured(
                [bench.civit, "install", "-f", "civit.toml", "--frozen"], env=env, cwd=folder
            )
            if failure := done.failure("civit install --frozen"):
                case.error = failure
                return
            case.runs.append(Run(done.seconds, done.peak_rss, done.steal))
        api_calls = len(fake.requests)
        downloads = len(fake.cdn_requests())
        case.notes.append(f"frozen runs made {api_calls} API requests, {downloads} downloads")
        if downloads:
            case.error = f"a no-op install downloaded {downloads} times"


class MirrorCases:
    """One locked file installed with ``--mirror``: from nginx (``/plain/{sha256}``, a
    hardlink to the source) or from s3rver (pushed there once by ``civit mirror push``).

    Both run the whole ``civit install --frozen`` process into the same folder; the
    report must say the bytes came from the mirror.
    """

    def __init__(self, bench: Bench, api_url: str) -> None:
        self.bench = bench
        self.api_url = api_url
        self.folder = bench.paths.work / "mirror-project"
        self.link = bench.paths.serve / bench.digests["sha256"].lower()
        self.s3_url: str | None = None
        self.problem: str | None = None

    def aws_env(self) -> dict[str, str]:
        assert self.s3_url is not None
        missing = str(self.bench.paths.work / "no-aws-file")
        return {
            "AWS_ACCESS_KEY_ID": S3RVER_KEY, "AWS_SECRET_ACCESS_KEY": S3RVER_KEY,
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.s3_url,
            "AWS_CONFIG_FILE": missing, "AWS_SHARED_CREDENTIALS_FILE": missing,
            "AWS_EC2_METADATA_DISABLED": "true",
        }  # fmt: skip

    def prepare(self, s3_url: str) -> list[str]:
        """Lock the file through FakeCivitai, link it for nginx, push it to the bucket."""
        self.s3_url = s3_url
        remove(self.folder)
        self.folder.mkdir(parents=True)
        out = self.bench.paths.out
        (self.folder / "civit.toml").write_text(
            f'[settings]\ndest = "{out.as_posix()}"\n\n[[model]]\nref = "99999"\n'
        )
        env = self.bench.civit_env(CIVITAI_BASE_URL=self.api_url, CIVITAI_API_TOKEN=FAKE_TOKEN)
        locked = run_measured([self.bench.civit, "lock", "-f", "civit.toml"], env=env,
                              cwd=self.folder)  # fmt: skip
        if failure := locked.failure("civit lock"):
            raise CaseError(failure)
        remove(self.link)
        os.link(self.bench.paths.source, self.link)
        pushed = run_measured(
            [self.bench.civit, "mirror", "push", f"s3://{MIRROR_BUCKET}/mirror",
             str(self.bench.paths.source), "--json"],
            env=self.bench.civit_env(**self.aws_env()),
        )  # fmt: skip
        if failure := pushed.failure("civit mirror push"):
            raise CaseError(failure)
        megabytes = self.bench.size / MB
        return [f"setup: civit mirror push of the file to s3rver took {pushed.seconds:.2f} s "
                f"({megabytes / pushed.seconds:.0f} MB/s)"]  # fmt: skip

    def curl_s3(self) -> Run:
        """curl of a presigned URL: how fast s3rver itself serves the file."""
        if self.problem is not None or self.s3_url is None:
            raise CaseError(self.problem or "s3rver is not running")
        import boto3

        presigned = boto3.client(
            "s3", endpoint_url=self.s3_url, region_name="us-east-1",
            aws_access_key_id=S3RVER_KEY, aws_secret_access_key=S3RVER_KEY,
        ).generate_presigned_url(
            "get_object", ExpiresIn=3600,
            Params={"Bucket": MIRROR_BUCKET, "Key": f"mirror/{self.link.name}"},
        )  # fmt: skip
        settle(self.bench.paths.out, cooldown=self.bench.cooldown)
        output = str(self.bench.paths.output)
        done = run_measured(["curl", "-s", "-S", "-f", "-o", output, presigned])
        if failure := done.failure("curl"):
            raise CaseError(failure)
        self.bench.check_output(self.bench.paths.output)
        return Run(done.seconds, done.peak_rss, done.steal)

    def install(self, kind: Literal["http", "s3"]) -> Run:
        if self.problem is not None:
            raise CaseError(self.problem)
        settle(self.bench.paths.out, self.bench.paths.scratch, cooldown=self.bench.cooldown)
        if kind == "http":
            mirror = self.bench.plain.rsplit("/", 1)[0] + "/{sha256}"
            env = self.bench.civit_env()
        else:
            mirror = f"s3://{MIRROR_BUCKET}/mirror"
            env = self.bench.civit_env(**self.aws_env())
        # A fallback to Civitai would hit the fake; the report must say "mirror".
        env.update(CIVITAI_BASE_URL=self.api_url, CIVITAI_API_TOKEN=FAKE_TOKEN)
        report = self.bench.paths.scratch / "report.json"
        argv = [self.bench.civit, "install", "-f", "civit.toml", "--frozen", "--mirror", mirror,
                "--report", str(report)]  # fmt: skip
        done = run_measured(argv, env=env, cwd=self.folder)
        if failure := done.failure(f"civit install --mirror ({kind})"):
            raise CaseError(failure)
        entry = json.loads(report.read_text())["entries"][0]
        if entry.get("source") != "mirror":
            raise CaseError(f"installed from {entry.get('source')}: {entry.get('mirror_error')}")
        self.bench.check_output(Path(entry["path"]))
        return Run(done.seconds, done.peak_rss, done.steal, {"civit_seconds": entry["seconds"]})


def run_mirror_group(
    bench: Bench, mirrors: MirrorCases, members: list[Case], runs: int, *, install: bool,
    say: Callable[[str], None],
) -> None:  # fmt: skip
    """Start s3rver, push the file, then run the mirror cases round-robin."""
    work = bench.paths.work
    try:
        script = ensure_s3rver(work / "s3rver", install=install, log=work / "npm.log")
    except CaseError as exc:
        mirrors.problem = str(exc)
        for case in members:
            if case.id in ("install_s3_mirror", "curl_s3_mirror"):
                case.skipped = str(exc)
        run_group(members, runs, say)
        return
    with s3rver(script, work / "s3rver-data") as url:
        try:
            notes = mirrors.prepare(url)
        except CaseError as exc:
            mirrors.problem = str(exc)
            notes = []
        for case in members:
            case.notes.extend(notes if case.id == "install_s3_mirror" else [])
        run_group(members, runs, say)


def select(cases: list[Case], only: str | None) -> list[Case]:
    """The cases named by ``--only`` (group names or case ids); all without it.

    Raises:
        SystemExit: an unknown name.
    """
    if not only:
        return cases
    wanted = {name.strip() for name in only.split(",") if name.strip()}
    known = {c.id for c in cases} | set(GROUPS)
    unknown = wanted - known
    if unknown:
        raise SystemExit(f"bench: unknown case or group {sorted(unknown)}; known: {sorted(known)}")
    return [c for c in cases if c.id in wanted or c.group in wanted]


def define_cases(bench: Bench, api_url: str, throttle: str, mirrors: MirrorCases) -> list[Case]:
    """Every case, in table order; a missing tool turns its case into a skip."""
    size = bench.size
    need = {
        "curl": "curl", "curl_sync": "curl", "shell": "b3sum", "aria2c": "aria2c",
        "curl_http_mirror": "curl", "curl_s3_mirror": "curl",
        "sha256sum": "sha256sum", "b3sum": "b3sum",
    }  # fmt: skip
    civit_hash, hash_note = bench.civit_hash_argv()
    source = str(bench.paths.source)
    hashlib_argv = [bench.python, "-c", HASHLIB_SHA256, source]
    per_connection = f"{throttle}/connection"
    cases = [
        Case("curl", "download", "curl -o", bench.curl, size),
        Case("curl_sync", "download", "curl -o, then sync FILE",
             lambda: bench.curl(durable=True), size),
        Case("shell", "download", "curl, then sha256sum, then b3sum", bench.shell, size),
        Case("civit1", "download", "civit 1 connection, SHA256+BLAKE3+CRC32",
             lambda: bench.civit_fetch(bench.plain, 1), size),
        Case("civit8", "download", "civit 8 connections, SHA256+BLAKE3+CRC32",
             lambda: bench.civit_fetch(bench.plain, 8), size),
        Case("civit1_portable", "download",
             "civit 1 connection, portable I/O (no pwrite/preadv/fadvise, as on Windows)",
             lambda: bench.civit_fetch(bench.plain, 1, portable=True), size),
        Case("civit8_portable", "download", "civit 8 connections, portable I/O",
             lambda: bench.civit_fetch(bench.plain, 8, portable=True), size),
        Case("civit_get", "download", "civit get (CLI + FakeCivitai API), 1 connection",
             lambda: bench.civit_get(api_url), size),
        Case("aria2c", "throttled", f"aria2c -x8 -s8, {per_connection}", bench.aria2c, size),
        Case("civit1_throttled", "throttled", f"civit 1 connection, {per_connection}",
             lambda: bench.civit_fetch(bench.throttled, 1), size),
        Case("civit8_throttled", "throttled", f"civit 8 connections, {per_connection}",
             lambda: bench.civit_fetch(bench.throttled, 8), size),
        Case("hashlib_sha256", "hash", "hashlib SHA256 alone",
             lambda: bench.hash_command(hashlib_argv, "sha256"), size),
        Case("civit_hash", "hash", "civit hash SHA256+BLAKE3+CRC32",
             lambda: bench.hash_command(civit_hash, "sha256", env=bench.civit_env()), size),
        Case("sha256sum", "hash", "sha256sum",
             lambda: bench.hash_command(["sha256sum", source], "sha256"), size),
        Case("b3sum", "hash", "b3sum",
             lambda: bench.hash_command(["b3sum", source], "blake3"), size),
        Case("install_frozen", "install", f"civit install --frozen, {INSTALL_FILES} files present"),
        Case("python_startup", "startup", "python -c \"print('ok')\"",
             lambda: bench.startup_command([bench.python, "-c", "print('ok')"], "ok")),
        Case("civit_version", "startup", "civit --version",
             lambda: bench.startup_command([bench.civit, "--version"], "civit, version")),
        Case("civit_hash_cached", "startup", "civit hash SHA256+BLAKE3+CRC32, from the cache",
             lambda: bench.startup_command(bench.civit_hash_cached_argv(),
                                           bench.digests["blake3"])),
        Case("curl_http_mirror", "mirror", "curl -o from nginx (server speed)", bench.curl, size),
        Case("curl_s3_mirror", "mirror", "curl -o of a presigned URL from s3rver (server speed)",
             mirrors.curl_s3, size),
        Case("install_http_mirror", "mirror", "civit install --frozen, HTTP mirror (nginx)",
             lambda: mirrors.install("http"), size),
        Case("install_s3_mirror", "mirror", "civit install --frozen, S3 mirror (s3rver)",
             lambda: mirrors.install("s3"), size),
    ]  # fmt: skip
    for case in cases:
        tool = need.get(case.id)
        if tool and shutil.which(tool) is None:
            case.skipped = f"{tool} not available"
        if case.id == "civit_hash" and hash_note:
            case.notes.append(hash_note)
        if case.id == "civit1_throttled":
            seconds = size / rate_bytes(throttle)
            case.notes.append(f"expected ≈ {seconds:.1f} s at {throttle}/s on one connection")
    return cases


def run_group(cases: Sequence[Case], runs: int, say: Callable[[str], None]) -> None:
    """Run the cases round-robin ``runs`` times, so slow drift hits every case alike."""
    for round_number in range(1, runs + 1):
        for case in cases:
            if case.execute is None or case.skipped or case.error:
                continue
            try:
                run = case.execute()
            except (CaseError, OSError, ValueError, LookupError, TypeError) as exc:
                case.error = f"{type(exc).__name__}: {exc}"
                say(f"  {case.id}: error: {case.error}")
                continue
            case.runs.append(run)
            say(f"  run {round_number}/{runs} {case.id}: {run.seconds:.3f} s, "
                f"{run.peak_rss / MB:.0f} MB RSS, {run.steal:.2f} s host steal")  # fmt: skip
