"""Whose file is in the way: civit replaces only its own earlier downloads of a model.

Before a download or a store link takes a path where another file already is, civit
asks whether that file is one it may replace. It may when the file is an earlier
download of the **same model** (an older version, another variant, a file a previous
lock put there), because then the user asked civit to manage that path. Anything else
(a user's own merge, a file of another model that happens to share the name) is kept,
and the command fails with :class:`~civit.errors.FileConflictError` (exit 1) naming
both files, the existing file's SHA256 and the way out (``--overwrite``, ``--name``,
``--dest``). What counts as knowing, cheapest first:

1. ``placed``: the SHA256 a previous lock recorded for exactly this path.
2. ``known``: SHA256 digests civit already holds for files of the model (the version
   being installed, the entries of the lock).
3. A sidecar beside the file (``<name>.civitai.info`` or ``<stem>.civitai.info``, the
   version record civit and the WebUI extensions write) naming the same model.
4. Civitai itself: ``GET /api/v1/model-versions/by-hash/{sha256}`` answers which model
   the bytes belong to (one request, only when the offline evidence is silent).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from civit.api import Client
from civit.errors import CivitError, FileConflictError
from civit.sidecars import sidecar_version

__all__ = ["GET_CHOICES", "INSTALL_CHOICES", "check_replaceable", "describe_wanted"]

#: The way out, as ``civit get`` offers it.
GET_CHOICES = (
    "keep both with --name NEW_NAME or --dest OTHER_FOLDER, or replace it with --overwrite"
)
#: The way out, as ``civit install`` offers it.
INSTALL_CHOICES = (
    'keep both with name = "NEW_NAME" or dest = "OTHER_FOLDER" on the entry in civit.toml, '
    "or replace it with overwrite = true there (or civit install --overwrite)"
)


def describe_wanted(name: str, file_id: int | None, model_id: int | None) -> str:
    """How messages name the file that was to go to the path.

    >>> describe_wanted("wai.safetensors", 2402204, 827184)
    'wai.safetensors (file 2402204 of model 827184)'
    """
    if file_id is None:
        return name
    owner = f" of model {model_id}" if model_id else ""
    return f"{name} (file {file_id}{owner})"


def check_replaceable(
    target: Path,
    sha256: str,
    *,
    model_id: int | None,
    version_id: int | None = None,
    wanted: str,
    choices: str,
    placed: str | None = None,
    known: Mapping[str, int | None] | None = None,
    client: Callable[[], Client] | None = None,
) -> None:
    """Return if civit may replace ``target`` (module docstring); raise if not.

    Args:
        target: the file in the way.
        sha256: its SHA256 (from the hash cache, or hashed by the caller).
        model_id: the model of the file about to go there (``None``: learnt from
            ``version_id`` through ``client``).
        version_id: that file's version.
        wanted: how to name that file in the message (:func:`describe_wanted`).
        choices: the way out, e.g. :data:`GET_CHOICES`.
        placed: the SHA256 a previous lock recorded for this very path.
        known: SHA256 (upper-case) -> model id, for files civit already knows.
        client: makes the API client for the by-hash question (``None``: offline).

    Raises:
        FileConflictError: nothing says the file is civit's download of this model
            (also when Civitai cannot be asked).
        CivitError: the version's model could not be looked up.
    """
    digest = sha256.upper()
    if placed is not None and placed.upper() == digest:
        return
    if model_id is None and version_id is not None and client is not None:
        model_id = client().get_version(version_id).model_id
    if model_id is not None:
        if (known or {}).get(digest, -1) == model_id or _sidecar_says(target, model_id):
            return
        if client is not None and _civitai_says(client(), digest) == model_id:
            return
    raise FileConflictError(
        f"{target} already exists and is not known to be civit's download of "
        f"{f'model {model_id}' if model_id else 'this model'} (its SHA256 is {digest}); "
        f"not replacing it with {wanted}",
        path=str(target),
        sha256=digest,
        wanted=wanted,
        hint=choices,
    )


def _sidecar_says(target: Path, model_id: int) -> bool:
    version = sidecar_version(target)
    return version is not None and version.model_id == model_id


def _civitai_says(client: Client, sha256: str) -> int | None:
    """The model Civitai says the bytes belong to; ``None`` if unknown or unreachable
    (then the file stays: not knowing is no reason to replace it)."""
    try:
        return client.get_version_by_hash(sha256).model_id
    except CivitError:
        return None
