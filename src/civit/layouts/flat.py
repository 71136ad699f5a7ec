"""``flat``: every file straight into the given folder, whatever its type."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from civit.layouts.base import ROWS, Detection, RootFolders, WebUI

__all__ = ["FLAT"]

TABLE: Mapping[str, str] = MappingProxyType(dict.fromkeys(ROWS, "."))


def detect(root: Path) -> Detection | None:
    """A plain folder is never detected: ``flat`` is only ever asked for."""
    return None


def folders(root: Path) -> RootFolders:
    """Every row is ``root`` itself."""
    return FLAT.root_folders(root, {})


FLAT = WebUI(name="flat", title="a plain folder", table=TABLE, detect=detect, folders=folders)
