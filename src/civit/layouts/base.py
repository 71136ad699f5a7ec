"""What every WebUI layout module provides, and the helpers they share.

A layout module (``comfyui``, ``a1111``, ``sdnext``, ...) describes one WebUI with a
:class:`WebUI` record:

- ``table``: its routing table, one folder (relative to the install root) per row of
  :data:`ROWS`; the rows are Civitai's model types, ``UNet`` standing for every
  diffusion-only model (UNet/transformer without VAE or text encoders);
- ``detect``: how to recognise an install from the files it ships with;
- ``folders``: the folders in effect for one install: the table, with whatever the
  user configured in that WebUI's own config files (read-only, best effort);
- which extra sidecar the WebUI reads beside a model (see :mod:`civit.sidecars`).

This module imports nothing from its sibling modules, so each of them can import it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

__all__ = [
    "LAYOUTS",
    "MAX_CONFIG_BYTES",
    "ROWS",
    "CardKind",
    "Detection",
    "Folder",
    "LayoutChoice",
    "LayoutName",
    "RootFolders",
    "WebUI",
    "has_exact",
    "read_config_text",
    "read_json_config",
    "setting_folder",
    "setting_path",
]

LayoutName = Literal[
    "a1111", "forge", "sdnext", "comfyui", "swarmui", "fooocus", "stabilitymatrix", "flat"
]
LayoutChoice = Literal[
    "auto", "a1111", "forge", "sdnext", "comfyui", "swarmui", "fooocus", "stabilitymatrix", "flat"
]
LAYOUTS: tuple[LayoutName, ...] = get_args(LayoutName)

#: The rows of every routing table. ``UNet`` holds diffusion-only models whatever
#: Civitai calls them (see :func:`civit.layouts.routing.route`).
ROWS = (
    "Checkpoint",
    "UNet",
    "TextEncoder",
    "VAE",
    "LORA",
    "LoCon",
    "DoRA",
    "TextualInversion",
    "Hypernetwork",
    "AestheticGradient",
    "Controlnet",
    "Upscaler",
    "MotionModule",
    "CLIPVision",
    "Poses",
    "Wildcards",
    "Workflows",
    "Detection",
    "Other",
)

#: Which card-metadata sidecar a WebUI reads besides ``.civitai.info`` and the preview:
#: A1111/Forge's ``<stem>.json`` user metadata, SD.Next's ``<stem>.json`` model record,
#: Stability Matrix's ``<stem>.cm-info.json``.
CardKind = Literal["a1111", "sdnext", "stabilitymatrix"]

#: Config files are small; anything bigger is not the file we are looking for.
MAX_CONFIG_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Folder:
    """A folder models of one row go to, and why.

    Attributes:
        path: the folder (absolute, or relative to the working directory like the root).
        source: where the user configured it, e.g. ``webui-user.sh --lora-dir``;
            ``None`` for the WebUI's default.
    """

    path: Path
    source: str | None = None


@dataclass(frozen=True)
class RootFolders:
    """The folders in effect for one install, by row, and what could not be read.

    Attributes:
        folders: every row of :data:`ROWS`.
        problems: one sentence per config file that exists but could not be used
            (the defaults stand in for it).
        extensions: row -> the extension folder that must be installed before files
            of that row can go to its folder (see :attr:`WebUI.extensions`).
    """

    folders: Mapping[str, Folder]
    problems: tuple[str, ...] = ()
    extensions: Mapping[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class Detection:
    """Which WebUI a folder holds, as :func:`civit.layouts.detect_layout` found it.

    Attributes:
        layout: the layout name.
        root: the install root files are placed under; it differs from the folder
            given for a folder that holds the install: the ComfyUI Windows portable
            build (its ``ComfyUI/``), the Fooocus Windows download (its ``Fooocus/``),
            a portable Stability Matrix (its ``Data/``).
        reason: the files that gave it away, e.g. ``installer.py beside webui.py``.
        title: the WebUI's name for messages, e.g. ``SD.Next``.
    """

    layout: LayoutName
    root: Path
    reason: str
    title: str

    def describe(self) -> str:
        """``detected SD.Next at /x (installer.py beside webui.py)``."""
        return f"detected {self.title} at {self.root} ({self.reason})"


@dataclass(frozen=True)
class WebUI:
    """One WebUI layout: its table, how to detect it, how to read its configured folders.

    Attributes:
        name: the layout name users pass as ``--layout``.
        title: the WebUI's name for messages.
        table: row -> default folder relative to the install root (``/`` separated).
        detect: the reason a folder is this WebUI's install (``None`` if it is not).
        folders: the folders in effect for an install root (table + configuration).
        card: the card-metadata sidecar the WebUI reads, if any.
        flux_cards: whether its ``<stem>.json`` accepts ``sd version: Flux`` (Forge).
        extensions: row -> the extension folder (relative to the root) whose reader
            that row's folder belongs to; the extension must be installed first.
    """

    name: LayoutName
    title: str
    table: Mapping[str, str]
    detect: Callable[[Path], Detection | None]
    folders: Callable[[Path], RootFolders]
    card: CardKind | None = None
    flux_cards: bool = False
    extensions: Mapping[str, str] = field(default_factory=dict)

    def default_folders(self, root: Path) -> dict[str, Folder]:
        """The table joined to ``root``, every row a default :class:`Folder`."""
        return {row: Folder(root / relative) for row, relative in self.table.items()}

    def moved_folders(self, prefix: str, moved: Folder) -> dict[str, Folder]:
        """The rows whose default folder lies under ``prefix`` (``models/``), moved below
        ``moved``: a models folder the user configured (``--models-dir``...)."""
        return {
            row: Folder(moved.path / relative.removeprefix(prefix), moved.source)
            for row, relative in self.table.items()
            if relative.startswith(prefix)
        }

    def root_folders(
        self, root: Path, configured: Mapping[str, Folder], problems: Sequence[str] = ()
    ) -> RootFolders:
        """The table joined to ``root`` with ``configured`` rows on top; extensions are
        required only for rows left at their default."""
        folders = {**self.default_folders(root), **configured}
        extensions = {
            row: root / folder for row, folder in self.extensions.items() if row not in configured
        }
        return RootFolders(folders, tuple(problems), extensions)


def has_exact(root: Path, relative: str) -> bool:
    """Whether ``root/relative`` exists with exactly this case; a trailing ``/`` means dir.

    Exact case keeps A1111's ``models/`` from being taken for SwarmUI's ``Models/`` on
    case-insensitive file systems.
    """
    current = root
    for part in relative.rstrip("/").split("/"):
        try:
            if part not in {entry.name for entry in current.iterdir()}:
                return False
        except OSError:
            return False
        current = current / part
    return current.is_dir() if relative.endswith("/") else current.is_file()


def setting_path(base: Path, value: str) -> Path:
    """A path from a WebUI's config file: variables and ``~`` expanded, a relative one
    taken from ``base`` (what the WebUI resolves relative paths against)."""
    path = Path(os.path.expandvars(value.strip())).expanduser()
    return path if path.is_absolute() else base / path


def setting_folder(base: Path, value: str, source: str) -> Folder:
    """A configured folder: ``~`` expanded, relative values taken from ``base``.

    Args:
        base: what the WebUI resolves relative paths against (its working folder).
        value: the configured path.
        source: where it was configured, for messages.
    """
    return Folder(setting_path(base, value), source)


def read_config_text(path: Path) -> str | None:
    """The text of a small config file, or ``None`` if it is absent.

    Raises:
        OSError: it exists but cannot be read, or is implausibly big.
        UnicodeDecodeError: it is not UTF-8 text.
    """
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return None
    if len(data) > MAX_CONFIG_BYTES:
        raise OSError(f"larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB")
    return data.decode("utf-8-sig")


def read_json_config(path: Path, problems: list[str]) -> dict[str, object]:
    """A JSON object config file, or ``{}`` if absent; a broken one adds to ``problems``."""
    try:
        text = read_config_text(path)
        document = json.loads(text) if text is not None else {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problems.append(f"cannot read {path} ({exc}); using the default folders")
        return {}
    if not isinstance(document, dict):
        problems.append(f"{path} is not a JSON object; using the default folders")
        return {}
    return document
