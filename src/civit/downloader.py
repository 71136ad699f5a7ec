"""``civit get`` as functions: plan where a file goes, skip it if present, else fetch it.

:func:`download` takes a chosen :class:`civit.File`; :func:`get` resolves a ref, chooses
the file and downloads it. The bytes move through :func:`civit.transfer.fetch`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Literal

from civit.api import Client, using_client
from civit.bulk import choose_files
from civit.errors import CivitError, IntegrityError, NotFoundError, UsageError
from civit.fsutil import make_folder
from civit.hashcache import CacheOption, HashCache, opened_cache
from civit.hashing import ProgressCallback, hash_file
from civit.layouts import (
    Destination,
    Detection,
    LayoutChoice,
    LayoutName,
    destination,
    diffusion_only,
    path_inside,
    prepare_folder,
    render_subfolder,
    resolve_layout,
    route,
    safe_filename,
    safetensors_names,
)
from civit.ownership import GET_CHOICES, check_replaceable, describe_wanted
from civit.partfile import interrupted
from civit.records import File, Model, Version
from civit.refs import Ref, parse_ref
from civit.select import check_scans, code_warning
from civit.sidecars import write_for_layout
from civit.transfer import digests_to_compute, fetch
from civit.writerlock import LockWaitCallback, target_lock

__all__ = [
    "DownloadResult",
    "Placement",
    "download",
    "get",
    "long_path_warning",
    "name_warning",
    "plan_target",
    "subfolder_for",
    "write_download_sidecars",
]

# Windows' MAX_PATH is 260 with the terminating NUL; .part.json adds 10 characters, and
# a WebUI without long-path support cannot open what is over the limit.
_WINDOWS_PATH_LIMIT = 260
_PATH_MARGIN = 20

Status = Literal["downloaded", "present"]

#: The first request for a safetensors header asks for this many bytes (the header of
#: a Flux or SD3 checkpoint is about 100-200 KiB).
HEADER_PROBE_BYTES = 512 * 1024
#: Headers longer than this are not fetched: the base model decides instead.
MAX_PROBED_HEADER = 16 * 1024 * 1024


@dataclass(frozen=True)
class DownloadResult:
    """What one :func:`download` did.

    ``verified`` names the digests compared with the record; ``bytes_transferred`` is
    what crossed the network this run; ``resumed_from`` what a previous run left;
    ``warnings`` one-line notes for the user (a pickle file, a path near Windows' limit);
    ``notes`` how the version was chosen (a newer one in Early Access passed over), how
    the folder was chosen (a configured folder, a routing decision) and sidecars not
    written; ``layout`` the WebUI layout it went into (``None`` for a plain
    folder); ``sidecars`` the files written beside it (see :func:`write_download_sidecars`).
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
    notes: tuple[str, ...] = ()
    layout: LayoutName | None = None
    sidecars: tuple[Path, ...] = ()

    @property
    def sha256(self) -> str | None:
        return self.digests.get("sha256")

    def as_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "status": self.status,
            "size_bytes": self.size,
            "sha256": self.sha256,
            "digests": dict(self.digests),
            "verified": list(self.verified),
            "bytes_transferred": self.bytes_transferred,
            "resumed_bytes": self.resumed_from,
            "seconds": round(self.seconds, 3),
            "file_id": self.file_id,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "layout": self.layout,
            "sidecars": [str(path) for path in self.sidecars],
        }


@dataclass(frozen=True)
class Placement:
    """Where one file goes, and what the user should be told about it.

    Attributes:
        path: the file's final path.
        detection: the WebUI install it goes into (``None`` for a plain folder).
        destination: its folder in that install, with the route and notes.
    """

    path: Path
    detection: Detection | None = None
    destination: Destination | None = None

    @property
    def notes(self) -> tuple[str, ...]:
        """Configured folders used and routing decisions worth a line of output."""
        return self.destination.notes if self.destination is not None else ()

    @property
    def layout(self) -> LayoutName | None:
        """The layout of the install it goes into (``None`` for a plain folder)."""
        return self.detection.layout if self.detection is not None else None

    def prepare(self) -> None:
        """Create the folder (a configured one only if its parent exists).

        Raises:
            UsageError: see :func:`civit.layouts.prepare_folder`.
            CivitError: a plain destination folder cannot be created.
        """
        if self.destination is not None:
            prepare_folder(self.destination)
        else:
            make_folder(self.path.parent)


def plan_target(
    file: File,
    *,
    root: str | os.PathLike[str] | None = None,
    layout: LayoutChoice = "auto",
    dest: str | os.PathLike[str] | None = None,
    name: str | None = None,
    subfolder: str | os.PathLike[str] | None = None,
    full_checkpoint: bool | None = None,
) -> Placement:
    """Where ``file`` goes: ``dest`` as is, else the WebUI folder for it in ``root``.

    In a WebUI the folder follows what the file is (:func:`civit.layouts.route`:
    file type, then model type; GGUF and diffusion-only checkpoints apart) and the
    folders the user configured in that WebUI. The name is reduced to a safe base name
    and proven to stay inside the folder. Nothing is created.

    Args:
        file: the file record.
        root: a WebUI install folder.
        layout: the folder scheme under ``root``; ``auto`` detects it.
        dest: a plain folder (overrides ``root``).
        name: file name to save as (default: the record's, made safe).
        subfolder: a relative folder below the type folder (or below ``dest``), e.g.
            from :func:`civit.layouts.render_subfolder`.
        full_checkpoint: what the file's safetensors header says, when known
            (:func:`civit.layouts.diffusion_only`); it tells a full checkpoint from a
            diffusion-only one better than the base model does.

    Returns:
        The :class:`Placement`.

    Raises:
        UsageError: an undetectable layout, an InvokeAI root, a bad name or subfolder.
    """
    if name is not None and safe_filename(name) != name:
        raise UsageError(f"{name!r} is not a plain file name", hint=f"use {safe_filename(name)!r}")
    below = _relative_folder(subfolder)
    if dest is not None or root is None:
        folder = Path(dest) if dest is not None else Path.cwd()
        return Placement(path_inside(folder / below if below else folder, name or file.local_name))
    detection = resolve_layout(Path(root), layout)
    chosen = route(
        model_type=file.model_type,
        file_type=file.type,
        file_format=file.format,
        base_model=file.base_model,
        full_checkpoint=full_checkpoint,
    )
    where = destination(detection, chosen, subfolder=below)
    return Placement(path_inside(where.folder, name or file.local_name), detection, where)


def _relative_folder(subfolder: str | os.PathLike[str] | None) -> PurePosixPath | None:
    if subfolder is None or not str(subfolder).strip():
        return None
    relative = PurePosixPath(str(subfolder).replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts or ":" in str(relative):
        raise UsageError(f"subfolder {str(subfolder)!r} must be a relative folder without '..'")
    return relative


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


def name_warning(name: str | None, file: File) -> str | None:
    """A warning when ``name`` (``--name``, ``name =``) drops or changes the file's
    extension: WebUIs list model files by it, so such a file would not show up.

    >>> name_warning("mine", File(id=1, name="wai.safetensors")).split(":")[0]
    'mine does not end in .safetensors'
    """
    extension = PurePosixPath(file.local_name).suffix
    if name is None or not extension or PurePosixPath(name).suffix.lower() == extension.lower():
        return None
    return (
        f"{name} does not end in {extension}: WebUIs list model files by their extension "
        f"(use --name {name}{extension})"
    )


def subfolder_for(
    template: str | None, version: Version, *, client: Client, model: Model | None = None
) -> PurePosixPath | None:
    """Fill a ``--subfolder`` template for a file of ``version``.

    ``{creator}`` needs the model record (one API call, only when it is used and
    ``model`` is not that record already).

    Args:
        template: e.g. ``{base_model}``; ``None`` or empty for no subfolder.
        version: the version the file belongs to.
        client: fetches the model record for ``{creator}``.
        model: the version's model record, if at hand.

    Returns:
        The relative folder, or ``None``.

    Raises:
        UsageError: a bad template. CivitError: the model record cannot be fetched.
    """
    if not template:
        return None
    creator = None
    if "{creator}" in template and version.model_id is not None:
        if model is None or model.id != version.model_id:
            model = client.get_model(version.model_id)
        creator = model.creator
    values = {
        "base_model": version.base_model,
        "creator": creator,
        "model_name": version.model_name,
        "type": version.model_type,
    }
    return render_subfolder(template, values)


def write_download_sidecars(
    result: DownloadResult,
    version: Version,
    *,
    client: Client | None = None,
    preview_nsfw: str | int | None = "pg13",
    model: Model | None = None,
) -> DownloadResult:
    """Write the sidecars the result's WebUI reads beside it (see
    :func:`civit.sidecars.write_sidecars`): ``.civitai.info``, the layout's card
    metadata, a preview.

    The model record is fetched for layouts whose card needs it (unless ``model`` is
    it); if that fails, the card is skipped with a note and the rest is written.

    Args:
        result: a download's result (its ``layout`` picks the card).
        version: the file's version record, as fetched with ``full=True``.
        client: fetches the model record and the preview (never sending the token to
            the image host); one is made from the environment and config (and closed)
            when omitted.
        preview_nsfw: the highest image level for a preview, or ``none``.
        model: the version's model record, if at hand.

    Returns:
        ``result`` with ``sidecars`` set and the sidecars' notes added.

    Raises:
        CivitError: a sidecar cannot be written. UsageError: a bad ``preview_nsfw``.
    """
    with using_client(client) as api:
        written = write_for_layout(
            result.path,
            version,
            layout=result.layout,
            client=api,
            sha256=result.sha256,
            preview_nsfw=preview_nsfw,
            models={model.id: model} if model is not None else None,
        )
    return replace(result, sidecars=written.written, notes=(*result.notes, *written.notes))


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
    subfolder: str | os.PathLike[str] | None = None,
    client: Client | None = None,
    connections: int | None = None,
    verify: bool = True,
    stall_timeout: float = 30.0,
    progress: ProgressCallback | None = None,
    cache: CacheOption = None,
    retry_base: float = 1.0,
    overwrite: bool = False,
    allow_unscanned: bool = False,
    limit_rate: float | None = None,
    deadline: float | None = None,
    lock_timeout: float | None = None,
    on_lock_wait: LockWaitCallback | None = None,
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
        root: a WebUI install folder; the folder follows ``layout``, what the file is
            and the folders configured in that WebUI (see :func:`plan_target`).
        layout: ``auto`` or a layout name (``comfyui``, ``a1111``, ``forge``...).
        dest: a plain destination folder (overrides ``root``).
        name: file name to save as (default: the record's, made safe).
        subfolder: a relative folder below the type folder (or ``dest``).
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
        limit_rate: bytes per second over all connections (``None``: unlimited).
        deadline: seconds the transfer may take before it stops, resumable
            (``None``: no limit; slow connections are dropped regardless).
        lock_timeout: seconds to wait for another civit fetching the same target
            (``None``: until it is done).
        on_lock_wait: ``on_lock_wait(target, pid)``, called once when another civit
            holds the target (see :data:`civit.writerlock.LockWaitCallback`).

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

    def plan(full_checkpoint: bool | None = None) -> Placement:
        return plan_target(
            file,
            root=root,
            layout=layout,
            dest=dest,
            name=name,
            subfolder=subfolder,
            full_checkpoint=full_checkpoint,
        )

    with contextlib.ExitStack() as cleanup:
        hashes = cleanup.enter_context(opened_cache(cache))
        api = cleanup.enter_context(using_client(client))
        placement, link = _settle_checkpoint_kind(plan(), file, api, hashes, verify, plan)
        placement.prepare()
        target = placement.path
        cleanup.enter_context(target_lock(target, timeout=lock_timeout, on_wait=on_lock_wait))
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
                notes=placement.notes,
                layout=placement.layout,
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

        unused_link = [link] if link is not None else []

        def resolve() -> str:
            if unused_link:
                return unused_link.pop()
            return api.resolve_download(version_id, file_id=file.id, what=file.name).url

        try:
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
                proxies=api.proxies,
                limit_rate=limit_rate,
                deadline=deadline,
            )
        except KeyboardInterrupt as exc:
            raise interrupted([target]) from exc
    warnings = (code_warning(file), long_path_warning(target), name_warning(name, file))
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
        notes=placement.notes,
        layout=placement.layout,
    )


def _settle_checkpoint_kind(
    placement: Placement,
    file: File,
    api: Client,
    cache: HashCache,
    verify: bool,
    replan: Callable[[bool], Placement],
) -> tuple[Placement, str | None]:
    """Decide between the diffusion-model and checkpoint folders when only the base
    model spoke (a Flux/SD3/... checkpoint may be a full one, with VAE and text
    encoders): a copy already there, a ``.part`` to resume, else the file's own
    safetensors header, read from the first bytes of its download link.

    Args:
        placement: the plan from the base model alone.
        file: the file.
        api: the client that resolves the link.
        cache: the hash cache (for copies already there).
        verify: whether a copy must match the record's digests.
        replan: the plan once the header is known (``True`` = full checkpoint).

    Returns:
        The placement, and the download link if one was resolved for the header.
    """
    where = placement.destination
    if where is None or not where.route.by_base_model:
        return placement, None
    full = replan(True)
    if full.path == placement.path:
        return placement, None
    candidates = (placement, full)
    for candidate in candidates:
        if _present(candidate.path, file, cache, verify) is not None:
            return candidate, None
    for candidate in candidates:
        if candidate.path.with_name(candidate.path.name + ".part").exists():
            return candidate, None
    if (file.format or "").lower() != "safetensor" or file.version_id is None:
        return placement, None
    url = api.resolve_download(file.version_id, file_id=file.id, what=file.name).url
    names = _remote_tensor_names(api, url, file.name)
    if names is None:
        return placement, url
    return replan(not diffusion_only(names)), url


def _remote_tensor_names(api: Client, url: str, what: str) -> list[str] | None:
    """The tensor names in the safetensors header behind ``url`` (``None`` if unsure).

    One ranged request usually covers a header; a longer one (up to
    :data:`MAX_PROBED_HEADER`) takes a second. Failures only mean "unsure".
    """
    label = f"the header of {what}"
    try:
        probe = HEADER_PROBE_BYTES
        head = api.fetch_public(url, limit=probe, first_bytes=probe, what=label)
        names = safetensors_names(head.data)
        if names is None and len(head.data) >= 8:
            wanted = 8 + int.from_bytes(head.data[:8], "little")
            if len(head.data) < wanted <= MAX_PROBED_HEADER:
                head = api.fetch_public(url, limit=wanted, first_bytes=wanted, what=label)
                names = safetensors_names(head.data)
    except CivitError:
        return None
    return names


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
    subfolder: str | None = None,
    write_info: bool = False,
    preview_nsfw: str | int | None = "pg13",
    connections: int | None = None,
    verify: bool = True,
    stall_timeout: float = 30.0,
    progress: ProgressCallback | None = None,
    cache: CacheOption = None,
    retry_base: float = 1.0,
    overwrite: bool = False,
    allow_unscanned: bool = False,
    limit_rate: float | None = None,
    deadline: float | None = None,
    lock_timeout: float | None = None,
    on_lock_wait: LockWaitCallback | None = None,
    early_access: bool = False,
) -> DownloadResult:
    """Resolve ``ref``, choose its file, download it: ``civit get`` as a function.

    A model ref takes the newest version a user can download now: a newer one in
    Early Access is passed over unless ``early_access`` (the result's ``notes`` say
    so). Selection arguments override hints carried by a download URL ref
    (``?type=``...); a URL's ``fileId`` picks that exact file.

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
        subfolder: a folder template below the type folder, with ``{base_model}``,
            ``{creator}``, ``{model_name}`` and ``{type}``, e.g. ``{base_model}``.
        write_info: also write the sidecars the WebUI reads (``<stem>.civitai.info``,
            its card metadata, a preview; see :func:`write_download_sidecars`).
        preview_nsfw: the highest image level for the preview (``pg``, ``pg13``,
            ``r``, ``x``, ``xxx``), or ``none`` for no preview.
        connections: parallel connections (default: by size).
        verify: compare digests with the record (default on).
        stall_timeout: seconds without a byte before reconnecting.
        progress: ``progress(done, total)`` in bytes (see :data:`ProgressCallback`).
        cache: ``None`` for the user's hash cache, ``False`` for none, or a
            :class:`HashCache` (see :data:`CacheOption`).
        retry_base: first backoff delay in seconds.
        overwrite: replace whatever file is at the target (see :func:`download`).
        allow_unscanned: accept a file whose Civitai scans did not pass.
        limit_rate, deadline, lock_timeout, on_lock_wait: see :func:`download`.
        early_access: for a model ref, take the newest version even in Early Access
            (it downloads only if the token's account bought it).

    Returns:
        The :class:`DownloadResult` of the chosen file.

    Raises:
        UsageError: a malformed ref. NotFoundError: no such model, version or file.
        CivitError: anything :func:`download` raises.
    """
    parsed = parse_ref(ref) if isinstance(ref, str) else ref
    with contextlib.ExitStack() as cleanup:
        api = cleanup.enter_context(using_client(client))
        (planned,) = choose_files(
            parsed,
            client=api,
            type=type,
            format=format,
            fp=fp,
            size=size,
            full=write_info,
            early_access=early_access,
        )
        version, file = planned.version, planned.file
        assert file is not None  # one file or an error, without all_versions
        result = download(
            file,
            root=root,
            layout=layout,
            dest=dest,
            name=name,
            subfolder=subfolder_for(subfolder, version, client=api, model=planned.model),
            client=api,
            connections=connections,
            verify=verify,
            stall_timeout=stall_timeout,
            progress=progress,
            cache=cache,
            retry_base=retry_base,
            overwrite=overwrite,
            allow_unscanned=allow_unscanned,
            limit_rate=limit_rate,
            deadline=deadline,
            lock_timeout=lock_timeout,
            on_lock_wait=on_lock_wait,
        )
        if write_info:
            result = write_download_sidecars(
                result, version, client=api, preview_nsfw=preview_nsfw, model=planned.model
            )
    return replace(result, notes=(*planned.notes, *result.notes))
