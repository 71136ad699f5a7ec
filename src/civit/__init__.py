"""civit: fast, verified, resumable Civitai model downloads."""

from __future__ import annotations

__version__ = "0.1.0"
