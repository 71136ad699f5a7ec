"""``civit get`` as functions: plan where a file goes, skip it if present, else fetch it.

:func:`download` takes a chosen :class:`civit.File`; :func:`get` resolves a ref, chooses
the file and downloads it. The bytes move through :func:`civit.transfer.fetch`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from civit.api import Client
from civit.bulk import choose_files
from civit.errors import IntegrityError, NotFoundError, UsageError
from civit.fsutil import atomic_write
from civit.hashcache import CacheOption, HashCache, opened_cache
from civit.hashing import ProgressCallback, hash_file
from civit.layout import LayoutChoice, path_inside, resolve_layout, safe_filename, target_dir
from civit.ownership import GET_CHOICES, check_replaceable, describe_wanted
from civit.records import File, Version
from civit.refs import Ref, parse_ref
from civit.select import check_scans, code_warning
from civit.transfer import digests_to_compute, fetch, target_lock

__all__ = [
    "DownloadResult",
    "download",
    "get",
    "long_path_warning",
    "plan_target",
    "write_info_sidecar",
]

# Windows' MAX_PATH is 260 with the terminating NUL; .part.json adds 10 characters, and
# a WebUI without long-path support cannot open what is over the limit.
_WINDOWS_PATH_LIMIT = 260
_PATH_MARGIN = 20

Status = Literal["downloaded", "present"]


@dataclass(frozen=True)
class DownloadResult:
    """What one :func:`download` did.

    ``verified`` names the digests compared with the record; ``bytes_transferred`` is
    what crossed the network this run; ``resumed_from`` what a previous run left;
    ``warnings`` one-line notes for the user (a pickle file, a path near Windows' limit).
    """

    path: Path
    size: int
    status: Status
    digests: Mapping[str, str] = field(default_factory=dict)
    verified: tuple[str, ...] = ()
    bytes_transferred: int = 0
    resumed_from: int = 0
    seconds: float = 0.0
    file_id: int | None = None
    warnings: tuple[str, ...] = ()

    @property
    def sha256(self) -> str | None:
        return self.digests.get("sha256")

    def as_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "status": self.status,
            "size": self.size,
            "sha256": self.sha256,
            "digests": dict(self.digests),
            "verified": list(self.verified),
            "bytes_transferred": self.bytes_transferred,
            "resumed_from": self.resumed_from,
            "seconds": round(self.seconds, 3),
            "file_id": self.file_id,
            "warnings": list(self.warnings),
        }


def plan_target(
    file: File,
    *,
    root: Path | None = None,
    layout: LayoutChoice = "auto",
    dest: Path | None = None,
    name: str | None = None,
) -> Path:
    """Where ``file`` goes: ``dest`` as is, else the WebUI folder for its type in ``root``.

    The record's name is reduced to a safe base name, with the variant tag of a
    same-named sibling (:attr:`File.local_name`); ``name`` must already be a plain file
    name. The path is proven to stay inside the folder.

    Raises:
        UsageError: an undetectable layout, a ``name`` that is not a plain file name.
    """
    if name is not None and safe_filename(name) != name:
        raise UsageError(f"{name!r} is not a plain file name", hint=f"use {safe_filename(name)!r}")
    if dest is not None:
        folder = dest
    elif root is not None:
        chosen = resolve_layout(root, layout)
        folder = target_dir(root, chosen, model_type=file.model_type, file_type=file.type)
    else:
        folder = Path.cwd()
    return path_inside(folder, name or file.local_name)


def long_path_warning(path: Path, *, platform: str | None = None) -> str | None:
    """A warning when ``path`` nears Windows' 260-character limit (only on Windows).

    Args:
        path: the final file.
        platform: a ``sys.platform`` value (default: this machine's).

    Returns:
        One line saying what to do, or ``None``.
    """
    if (platform or sys.platform) != "win32":
        return None
    length = len(str(path.absolute()))
    if length < _WINDOWS_PATH_LIMIT - _PATH_MARGIN:
        return None
    return (
        f"{path} is {length} characters long; programs without long-path support cannot "
        f"open paths of {_WINDOWS_PATH_LIMIT} or more (enable long paths in Windows, or "
        "choose a shorter --root, --dest or --name)"
    )


def write_info_sidecar(model_path: Path, version: Version) -> Path:
    """Write ``<model>.civitai.info`` (the version record, as A1111 extensions read it)."""
    sidecar = model_path.with_name(model_path.name + ".civitai.info")
    document = dict(version.raw) or {"id": version.id, "name": version.name}
    atomic_write(sidecar, json.dumps(document, indent=2, ensure_ascii=False).encode())
    return sidecar


def _present(target: Path, file: File, cache: HashCache, verify: bool) -> dict[str, str] | None:
    """Digests of ``target`` if it already holds ``file``'s bytes, else ``None``.

    With a SHA256 in the record, that (answered by the hash cache when the file is
    unchanged) is proof enough; BLAKE3 rides along for reports and lock files.
    Without verification or hashes, a size within ``sizeKB``'s rounding counts.
    """
    if not target.is_file():
        return None
    if not verify or not file.hashes:
        approx = file.approx_bytes
        if approx is None or abs(target.stat().st_size - approx) <= 1024:
            return {}
        return None
    algorithms = ("sha256", "blake3") if file.hashes.sha256 else digests_to_compute(file.hashes)
    digests = hash_file(target, algorithms, cache=cache)
    try:
        file.hashes.check(digests, path=str(target))
    except IntegrityError:
        return None
    return digests


def download(
    file: File,
    *,
    root: str | os.PathLike[str] | None = None,
    layout: LayoutChoice = "auto",
    dest: str | os.PathLike[str] | None = None,
    name: str | None = None,
    client: Client | None = None,
    connections: int | None = None,
    verify: bool = True,
    stall_timeout: float = 30.0,
    progress: ProgressCallback | None = None,
    cache: CacheOption = None,
    retry_base: float = 1.0,
    overwrite: bool = False,
    allow_unscanned: bool = False,
) -> DownloadResult:
    """Download ``file`` into a WebUI folder (``root`` + ``layout``) or ``dest``.

    Already present and matching the record → no network, ``status="present"``.
    Otherwise resolves a link through ``client`` (which holds the token), fetches with
    resume and ``connections`` parallel segments, verifies every digest the record
    has, and renames into place.

    Another file at the target is replaced only when it is civit's earlier download of
    the same model (:mod:`civit.ownership`) or with ``overwrite``. Files whose
    Civitai scans did not pass are refused unless ``allow_unscanned``.

    Args:
        file: the file record (from :func:`civit.select_file`).
        root: a WebUI install folder; the subfolder follows ``layout`` and the type.
        layout: ``auto``, ``a1111``, ``comfyui``, ``swarmui`` or ``flat``.
        dest: a plain destination folder (overrides ``root``).
        name: file name to save as (default: the record's, made safe).
        client: API client; one is made from the environment and config (and closed)
            when omitted.
        connections: parallel connections (default: by size).
        verify: compare digests with the record (default on).
        stall_timeout: seconds without a byte before reconnecting.
        progress: ``progress(done, total)`` in bytes (see :data:`ProgressCallback`).
        cache: ``None`` for the user's hash cache, ``False`` for none, or a
            :class:`HashCache` (see :data:`CacheOption`).
        retry_base: first backoff delay in seconds.
        overwrite: replace whatever file is at the target.
        allow_unscanned: accept a file whose pickle or virus scan is not ``Success``.

    Returns:
        A :class:`DownloadResult`.

    Raises:
        IntegrityError: digests do not match (nothing is left at the final name).
        FileConflictError: another file is at the target (kept; see ``overwrite``).
        ScanRefusedError: Civitai's scans of the file did not pass.
        AuthError / EarlyAccessError: token missing or refused, login page.
        NotDownloadableError / NotFoundError: archived, disabled, no such file.
        RateLimitError: daily download limit. NetworkError: gave up after retries.
        DiskSpaceError: not enough free space.
    """
    started = time.monotonic()
    target = plan_target(
        file,
        root=Path(root) if root is not None else None,
        layout=layout,
        dest=Path(dest) if dest is not None else None,
        name=name,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as cleanup:
        hashes = cleanup.enter_context(opened_cache(cache))
        api = client if client is not None else cleanup.enter_context(Client())
        cleanup.enter_context(target_lock(target))
        present = _present(target, file, hashes, verify)
        if present is not None:
            return DownloadResult(
                path=target,
                size=target.stat().st_size,
                status="present",
                digests=present,
                verified=tuple(a for a in present if file.hashes.matches(a, present[a])),
                seconds=time.monotonic() - started,
                file_id=file.id,
            )
        check_scans(file, allow_unscanned=allow_unscanned)
        if file.version_id is None:
            raise NotFoundError(f"file {file.id} does not say which version it belongs to")
        version_id = file.version_id
        if target.is_file() and not overwrite:
            check_replaceable(
                target,
                hash_file(target, ("sha256",), cache=hashes)["sha256"],
                model_id=file.model_id,
                version_id=version_id,
                wanted=describe_wanted(file.name, file.id, file.model_id),
                choices=GET_CHOICES,
                known={file.hashes.sha256: file.model_id} if file.hashes.sha256 else None,
                client=lambda: api,
            )

        def resolve() -> str:
            return api.resolve_download(version_id, file_id=file.id, what=file.name).url

        fetched = fetch(
            resolve,
            target,
            expected=file.hashes,
            file_key=f"civitai:{version_id}:{file.id}",
            size_hint=file.approx_bytes,
            connections=connections,
            verify=verify,
            stall_timeout=stall_timeout,
            progress=progress,
            retry_base=retry_base,
            cache=hashes,
        )
    warnings = (code_warning(file), long_path_warning(target))
    return DownloadResult(
        path=target,
        size=fetched.size,
        status="downloaded",
        digests=fetched.digests,
        verified=fetched.verified,
        bytes_transferred=fetched.transferred,
        resumed_from=fetched.resumed_from,
        seconds=time.monotonic() - started,
        file_id=file.id,
        warnings=tuple(w for w in warnings if w),
    )


def get(
    ref: str | Ref,
    *,
    client: Client | None = None,
    type: str | None = None,
    format: str | None = None,
    fp: str | None = None,
    size: str | None = None,
    root: str | os.PathLike[str] | None = None,
    layout: LayoutChoice = "auto",
    dest: str | os.PathLike[str] | None = None,
    name: str | None = None,
    write_info: bool = False,
    connections: int | None = None,
    verify: bool = True,
    stall_timeout: float = 30.0,
    progress: ProgressCallback | None = None,
    cache: CacheOption = None,
    retry_base: float = 1.0,
    overwrite: bool = False,
    allow_unscanned: bool = False,
) -> DownloadResult:
    """Resolve ``ref``, choose its file, download it: ``civit get`` as a function.

    Selection arguments override hints carried by a download URL ref (``?type=``...);
    a URL's ``fileId`` picks that exact file.

    Args:
        ref: anything :func:`civit.parse_ref` accepts, or a parsed :class:`Ref`.
        client: API client (token, base URL); one is made from the environment and
            config (and closed) when omitted.
        type: file type preference, e.g. ``Model`` or ``VAE``.
        format: ``SafeTensor``, ``PickleTensor``, ``GGUF``... (aliases accepted).
        fp: precision preference, e.g. ``fp16``.
        size: ``pruned`` or ``full``.
        root: a WebUI install folder (see :func:`download`).
        layout: the folder scheme under ``root``; ``auto`` detects it.
        dest: a plain destination folder (overrides ``root``).
        name: file name to save as (default: the record's, made safe).
        write_info: also write ``<file>.civitai.info`` beside the model.
        connections: parallel connections (default: by size).
        verify: compare digests with the record (default on).
        stall_timeout: seconds without a byte before reconnecting.
        progress: ``progress(done, total)`` in bytes (see :data:`ProgressCallback`).
        cache: ``None`` for the user's hash cache, ``False`` for none, or a
            :class:`HashCache` (see :data:`CacheOption`).
        retry_base: first backoff delay in seconds.
        overwrite: replace whatever file is at the target (see :func:`download`).
        allow_unscanned: accept a file whose Civitai scans did not pass.

    Returns:
        The :class:`DownloadResult` of the chosen file.

    Raises:
        UsageError: a malformed ref. NotFoundError: no such model, version or file.
        CivitError: anything :func:`download` raises.
    """
    parsed = parse_ref(ref) if isinstance(ref, str) else ref
    with contextlib.ExitStack() as cleanup:
        api = client if client is not None else cleanup.enter_context(Client())
        (planned,) = choose_files(
            parsed, client=api, type=type, format=format, fp=fp, size=size, full=write_info
        )
        version, file = planned.version, planned.file
        assert file is not None  # one file or an error, without all_versions
        result = download(
            file,
            root=root,
            layout=layout,
            dest=dest,
            name=name,
            client=api,
            connections=connections,
            verify=verify,
            stall_timeout=stall_timeout,
            progress=progress,
            cache=cache,
            retry_base=retry_base,
            overwrite=overwrite,
            allow_unscanned=allow_unscanned,
        )
    if write_info:
        write_info_sidecar(result.path, version)
    return result
