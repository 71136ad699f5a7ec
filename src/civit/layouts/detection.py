"""Which WebUI a folder holds: the detection order, ``--layout``, InvokeAI's refusal.

The specific WebUIs are tried before the generic rule they would also match: Fooocus
and SD.Next ship A1111's ``webui.py``, the Forge family ships all of A1111's files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from types import MappingProxyType

from civit.errors import UsageError
from civit.layouts.a1111 import A1111, FORGE
from civit.layouts.base import LAYOUTS, Detection, LayoutChoice, LayoutName, WebUI, has_exact
from civit.layouts.comfyui import COMFYUI
from civit.layouts.flat import FLAT
from civit.layouts.fooocus import FOOOCUS
from civit.layouts.sdnext import SDNEXT
from civit.layouts.stabilitymatrix import STABILITYMATRIX
from civit.layouts.swarmui import SWARMUI

__all__ = [
    "DETECTION_ORDER",
    "WEBUIS",
    "detect_layout",
    "find_layout_above",
    "resolve_layout",
    "webui",
]

WEBUIS: Mapping[LayoutName, WebUI] = MappingProxyType(
    {ui.name: ui for ui in (A1111, FORGE, SDNEXT, COMFYUI, SWARMUI, FOOOCUS, STABILITYMATRIX, FLAT)}
)

DETECTION_ORDER: tuple[WebUI, ...] = (
    FOOOCUS,  # ships webui.py: must come before A1111; also the Windows download
    SDNEXT,  # ships webui.py: must come before A1111
    FORGE,  # ships everything A1111 does: must come before A1111
    COMFYUI,  # also the Windows portable folder, whose root is its ComfyUI/
    STABILITYMATRIX,  # also the portable app's folder, whose root is its Data/
    SWARMUI,
    A1111,
)

_CHOICES = "|".join(LAYOUTS)

INVOKEAI_HINT = (
    "InvokeAI keeps its models in a database that only its model manager may change: "
    "download with --dest DIR, then add the file in InvokeAI (Model Manager > Add "
    "Model > the file's path)"
)


def webui(layout: LayoutName) -> WebUI:
    """The :class:`WebUI` record of a layout name.

    Raises:
        UsageError: not a layout name.
    """
    try:
        return WEBUIS[layout]
    except KeyError:
        raise UsageError(f"unknown layout {layout!r}; use auto|{_CHOICES}") from None


def detect_layout(root: str | os.PathLike[str]) -> Detection | None:
    """Tell which WebUI is installed in ``root`` from the files it ships with.

    Names are compared with their exact case. This is the function other parts of civit
    (``freeze``, ``identify --write-info``) use to learn the layout of a folder.

    Args:
        root: the folder to inspect.

    Returns:
        What was found and why (its ``root`` is the folder files go under, which is
        ``root/ComfyUI`` for the ComfyUI Windows portable build, ``root/Fooocus`` for
        the Fooocus Windows download and ``root/Data`` for a portable Stability
        Matrix), or ``None`` if ``root`` is missing or looks like none of them.
    """
    folder = Path(root)
    for ui in DETECTION_ORDER:
        found = ui.detect(folder)
        if found is not None:
            return found
    return None


def _refuse_invokeai(root: Path) -> None:
    # invoke-ai/InvokeAI invokeai/app/services/config/config_default.py: the root holds
    # INIT_FILE invokeai.yaml and the databases/ folder (db_dir) with invokeai.db.
    if has_exact(root, "invokeai.yaml") and has_exact(root, "databases/"):
        raise UsageError(
            f"{root} is an InvokeAI root, which civit cannot add models to", hint=INVOKEAI_HINT
        )


def resolve_layout(root: Path, requested: LayoutChoice) -> Detection:
    """Turn ``--layout`` into a :class:`Detection`, detecting it for ``auto``.

    ``auto`` on a missing or unrecognised root raises rather than guessing: files placed
    by a wrong guess are invisible to the WebUI and easy to lose. An explicit layout
    on a folder that holds the install (ComfyUI portable, the Fooocus Windows download,
    a portable Stability Matrix) still goes into the install inside it.

    Args:
        root: the WebUI install folder.
        requested: ``auto`` or a layout name.

    Returns:
        The layout to use, the root to place files under, and why.

    Raises:
        UsageError: ``requested`` is not a layout name, ``auto`` cannot tell, or
            ``root`` is an InvokeAI root (with how to add models to InvokeAI).
    """
    _refuse_invokeai(root)
    if requested != "auto":
        chosen = webui(requested)
        inside = chosen.detect(root)
        if inside is not None and inside.root != root:
            reason = f"--layout {chosen.name}; {inside.reason}"
            return Detection(chosen.name, inside.root, reason, chosen.title)
        return Detection(chosen.name, root, f"--layout {chosen.name}", chosen.title)
    detected = detect_layout(root)
    if detected is not None:
        return detected
    if not root.is_dir():
        raise UsageError(
            f"{root} does not exist, so its WebUI cannot be detected",
            hint=f"create it, or pass --layout {_CHOICES}",
        )
    raise UsageError(
        f"cannot tell which WebUI {root} is; pass --layout {_CHOICES}",
        hint="--root must be the WebUI's install folder (the one holding models/ or Models/)",
    )


def find_layout_above(
    path: Path, *, seen: MutableMapping[Path, Detection | None] | None = None
) -> Detection | None:
    """The WebUI install a file lies in: the nearest folder above it that is detected.

    Args:
        path: a file (or folder) inside an install.
        seen: answers of earlier calls, by folder (pass the same dict for many files
            of one library, so each folder is inspected once).

    Returns:
        The detection, or ``None`` when no folder above it is an install.
    """
    cache: MutableMapping[Path, Detection | None] = {} if seen is None else seen
    inside = path.absolute()
    for folder in inside.parents:
        if folder not in cache:
            cache[folder] = detect_layout(folder)
        found = cache[folder]
        # A portable folder's files live in the install inside it, not beside it.
        if found is not None and found.root in (inside, *inside.parents):
            return found
    return None
