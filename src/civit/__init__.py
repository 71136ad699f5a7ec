"""civit: fast, verified, resumable Civitai model downloads into WebUI folders.

>>> import civit
>>> client = civit.Client()                               # doctest: +SKIP
>>> version = client.get_version_for(civit.parse_ref("827184"))  # doctest: +SKIP
>>> file = civit.select_file(version, fp="fp16")          # doctest: +SKIP
>>> civit.download(file, root="ComfyUI", layout="comfyui", client=client)  # doctest: +SKIP

``civit.testing.FakeCivitai`` is a loopback fake of the service for your own tests.
"""

from __future__ import annotations

from civit._version import VERSION as __version__
from civit.api import Client, DownloadLink, RetryPolicy
from civit.config import Settings, load_settings
from civit.downloader import DownloadResult, download, get, plan_target, write_info_sidecar
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
from civit.layout import LayoutChoice, detect_layout, safe_filename
from civit.lockfile import Lock, LockedFile, load_lock
from civit.manifest import Manifest, load_manifest, write_manifest
from civit.records import File, Hashes, HashMatch, Model, ModelPage, Version
from civit.refs import Ref, parse_ref
from civit.resolution import lock
from civit.select import Selection, explain_selection, newest_version, select_file
from civit.updates import UpdateCheck, outdated

__all__ = [
    "AuthError",
    "CacheOption",
    "CivitError",
    "Client",
    "Digester",
    "DiskSpaceError",
    "DownloadLink",
    "DownloadResult",
    "EarlyAccessError",
    "EntryResult",
    "File",
    "FileCheck",
    "FileConflictError",
    "HashCache",
    "HashMatch",
    "Hashes",
    "Identification",
    "ImageResource",
    "ImageResources",
    "InstallReport",
    "IntegrityError",
    "LayoutChoice",
    "Lock",
    "LockedFile",
    "Manifest",
    "ManifestError",
    "Model",
    "ModelPage",
    "NetworkError",
    "NotDownloadableError",
    "NotFoundError",
    "ProgressCallback",
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
    "detect_layout",
    "download",
    "explain_selection",
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
    "resources_from_image",
    "safe_filename",
    "select_file",
    "verify",
    "verify_files",
    "write_info_sidecar",
    "write_manifest",
]
