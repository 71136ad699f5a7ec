"""civit: fast, verified, resumable Civitai model downloads into WebUI folders.

>>> import civit
>>> client = civit.Client()                               # doctest: +SKIP
>>> version = client.get_version_for(civit.parse_ref("827184"))  # doctest: +SKIP
>>> file = civit.select_file(version, fp="fp16")          # doctest: +SKIP
>>> civit.download(file, root="ComfyUI", layout="comfyui", client=client)  # doctest: +SKIP

``civit.testing.FakeCivitai`` is a loopback fake of the service for your own tests.

The public names below are imported on first use (PEP 562), so ``import civit`` (and
``civit --version``) does not pay for httpx, SQLite or the download engine until a
program touches them. Type checkers see the ordinary imports under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import importlib
import typing

from civit._version import VERSION as __version__

if typing.TYPE_CHECKING:
    from civit.api import Client, DownloadLink, RetryPolicy
    from civit.config import Settings, load_settings
    from civit.downloader import (
        DownloadResult,
        Placement,
        download,
        get,
        plan_target,
        write_download_sidecars,
    )
    from civit.errors import (
        AuthError,
        CivitError,
        DiskSpaceError,
        EarlyAccessError,
        FileConflictError,
        IntegrityError,
        ManifestError,
        NetworkError,
        NotDownloadableError,
        NotFoundError,
        RateLimitError,
        ResponseError,
        ScanRefusedError,
        UsageError,
    )
    from civit.freezing import FreezeResult, FrozenFile, freeze
    from civit.hashcache import CacheOption, HashCache
    from civit.hashing import Digester, ProgressCallback, hash_file
    from civit.identification import (
        FileCheck,
        Identification,
        identify,
        identify_files,
        verify,
        verify_files,
    )
    from civit.image_resources import ImageResource, ImageResources, resources_from_image
    from civit.installer import EntryResult, InstallReport, install
    from civit.layouts import (
        Detection,
        LayoutChoice,
        LayoutName,
        detect_layout,
        folder_for,
        safe_filename,
    )
    from civit.lockfile import Lock, LockedFile, load_lock
    from civit.manifest import Manifest, load_manifest, write_manifest
    from civit.mirror_push import PushedFile, PushReport, push_mirror
    from civit.records import File, Hashes, HashMatch, Model, ModelPage, Version
    from civit.refs import Ref, parse_ref
    from civit.resolution import LockDifference, check_lock, lock
    from civit.select import Selection, explain_selection, newest_version, select_file
    from civit.sidecars import sidecar_version, write_sidecars
    from civit.updates import UpdateCheck, outdated

#: Where each public name lives, for :func:`__getattr__`.
_EXPORTS = {
    "Client": "civit.api",
    "DownloadLink": "civit.api",
    "RetryPolicy": "civit.api",
    "Settings": "civit.config",
    "load_settings": "civit.config",
    "DownloadResult": "civit.downloader",
    "Placement": "civit.downloader",
    "download": "civit.downloader",
    "get": "civit.downloader",
    "plan_target": "civit.downloader",
    "write_download_sidecars": "civit.downloader",
    "sidecar_version": "civit.sidecars",
    "write_sidecars": "civit.sidecars",
    "AuthError": "civit.errors",
    "CivitError": "civit.errors",
    "DiskSpaceError": "civit.errors",
    "EarlyAccessError": "civit.errors",
    "FileConflictError": "civit.errors",
    "IntegrityError": "civit.errors",
    "ManifestError": "civit.errors",
    "NetworkError": "civit.errors",
    "NotDownloadableError": "civit.errors",
    "NotFoundError": "civit.errors",
    "RateLimitError": "civit.errors",
    "ResponseError": "civit.errors",
    "ScanRefusedError": "civit.errors",
    "UsageError": "civit.errors",
    "FreezeResult": "civit.freezing",
    "FrozenFile": "civit.freezing",
    "freeze": "civit.freezing",
    "CacheOption": "civit.hashcache",
    "HashCache": "civit.hashcache",
    "Digester": "civit.hashing",
    "ProgressCallback": "civit.hashing",
    "hash_file": "civit.hashing",
    "FileCheck": "civit.identification",
    "Identification": "civit.identification",
    "identify": "civit.identification",
    "identify_files": "civit.identification",
    "verify": "civit.identification",
    "verify_files": "civit.identification",
    "ImageResource": "civit.image_resources",
    "ImageResources": "civit.image_resources",
    "resources_from_image": "civit.image_resources",
    "EntryResult": "civit.installer",
    "InstallReport": "civit.installer",
    "install": "civit.installer",
    "Detection": "civit.layouts",
    "LayoutChoice": "civit.layouts",
    "LayoutName": "civit.layouts",
    "detect_layout": "civit.layouts",
    "folder_for": "civit.layouts",
    "safe_filename": "civit.layouts",
    "Lock": "civit.lockfile",
    "LockedFile": "civit.lockfile",
    "load_lock": "civit.lockfile",
    "Manifest": "civit.manifest",
    "load_manifest": "civit.manifest",
    "write_manifest": "civit.manifest",
    "PushReport": "civit.mirror_push",
    "PushedFile": "civit.mirror_push",
    "push_mirror": "civit.mirror_push",
    "File": "civit.records",
    "Hashes": "civit.records",
    "HashMatch": "civit.records",
    "Model": "civit.records",
    "ModelPage": "civit.records",
    "Version": "civit.records",
    "Ref": "civit.refs",
    "parse_ref": "civit.refs",
    "LockDifference": "civit.resolution",
    "check_lock": "civit.resolution",
    "lock": "civit.resolution",
    "Selection": "civit.select",
    "explain_selection": "civit.select",
    "newest_version": "civit.select",
    "select_file": "civit.select",
    "UpdateCheck": "civit.updates",
    "outdated": "civit.updates",
}

__all__ = [
    "AuthError",
    "CacheOption",
    "CivitError",
    "Client",
    "Detection",
    "Digester",
    "DiskSpaceError",
    "DownloadLink",
    "DownloadResult",
    "EarlyAccessError",
    "EntryResult",
    "File",
    "FileCheck",
    "FileConflictError",
    "FreezeResult",
    "FrozenFile",
    "HashCache",
    "HashMatch",
    "Hashes",
    "Identification",
    "ImageResource",
    "ImageResources",
    "InstallReport",
    "IntegrityError",
    "LayoutChoice",
    "LayoutName",
    "Lock",
    "LockDifference",
    "LockedFile",
    "Manifest",
    "ManifestError",
    "Model",
    "ModelPage",
    "NetworkError",
    "NotDownloadableError",
    "NotFoundError",
    "Placement",
    "ProgressCallback",
    "PushReport",
    "PushedFile",
    "RateLimitError",
    "Ref",
    "ResponseError",
    "RetryPolicy",
    "ScanRefusedError",
    "Selection",
    "Settings",
    "UpdateCheck",
    "UsageError",
    "Version",
    "__version__",
    "check_lock",
    "detect_layout",
    "download",
    "explain_selection",
    "folder_for",
    "freeze",
    "get",
    "hash_file",
    "identify",
    "identify_files",
    "install",
    "load_lock",
    "load_manifest",
    "load_settings",
    "lock",
    "newest_version",
    "outdated",
    "parse_ref",
    "plan_target",
    "push_mirror",
    "resources_from_image",
    "safe_filename",
    "select_file",
    "sidecar_version",
    "verify",
    "verify_files",
    "write_download_sidecars",
    "write_manifest",
    "write_sidecars",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'civit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
