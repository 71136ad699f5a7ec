"""Safe file names: what a name from the API or ``Content-Disposition`` may become on disk.

Every writer of a model file or sidecar joins names through :func:`path_inside`, so a
hostile name (``../../x``, ``CON``, bidi tricks) can never land outside its folder.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from civit.errors import UsageError

__all__ = ["path_inside", "safe_filename"]

_MAX_NAME_BYTES = 200
# A longer "extension" is just the tail of a dotted name, not worth keeping whole.
_MAX_SUFFIX_BYTES = 32
_MAX_TAG_CHARS = 64
_WINDOWS_INVALID = re.compile(r'[<>:"|?*]')
_SEPARATORS = re.compile(r"[/\\]")
_DOT_RUNS = re.compile(r"\.{2,}")
_EDGE_DOTS_AND_SPACE = re.compile(r"^[\s.]+|[\s.]+$")
_TRAILING_DOTS_AND_SPACE = re.compile(r"[\s.]+$")
# Unicode bidi controls let "evil\u202egpj.exe" display as "evilexe.jpg".
_BIDI_CONTROLS = frozenset(
    {
        "\u061c",
        "\u200e",
        "\u200f",
        *map(chr, range(0x202A, 0x202F)),
        *map(chr, range(0x2066, 0x206A)),
    }
)
_STRIPPED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in (*"0123456789", "¹", "²", "³")}
)


def safe_filename(
    name: str, *, default: str = "model.safetensors", variant: str | None = None
) -> str:
    """Reduce a file name from the API or ``Content-Disposition`` to a safe base name.

    Keeps the last path component (``/`` or ``\\``), drops control and bidi characters,
    replaces characters Windows forbids with ``_``, collapses dot runs, strips leading and
    trailing dots and spaces, prefixes Windows device names (``CON.safetensors`` ->
    ``_CON.safetensors``) and trims to 200 UTF-8 bytes keeping the extension (well
    under the 255 bytes file systems allow, leaving room for ``.part`` and sidecar
    suffixes). The result never contains a separator and is never ``.``, ``..`` or
    empty; applying it twice changes nothing.

    Args:
        name: the untrusted name.
        default: the name to use when nothing usable is left (cleaned the same way).
        variant: a tag inserted as ``_<variant>`` before the extension; trimming
            shortens the stem, never the tag, so tagged names stay distinct.

    Returns:
        A name safe to join to a folder on any common file system.

    Raises:
        ValueError: neither ``name`` nor ``default`` leaves a usable name.

    >>> safe_filename("../../etc/passwd")
    'passwd'
    >>> safe_filename("CON.safetensors")
    '_CON.safetensors'
    >>> safe_filename("dreamshaper_8.safetensors", variant="full_fp32")
    'dreamshaper_8_full_fp32.safetensors'
    """
    cleaned = _clean(name) or _clean(default)
    if not cleaned:
        raise ValueError(f"default file name {default!r} is not usable")
    tag = _clean(variant)[:_MAX_TAG_CHARS] if variant else ""
    return _unreserved(_truncate(cleaned, tag=f"_{tag}" if tag else ""))


def _unreserved(name: str) -> str:
    """Rename ``*.part``/``*.part.json``: those names belong to another target's partial
    download, and a file arriving under one would be mistaken for it (issue 13).

    >>> _unreserved("big.safetensors.part"), _unreserved("big.safetensors.part.json")
    ('big.safetensors_part', 'big.safetensors_part.json')
    """
    lowered = name.lower()
    if lowered.endswith(".part.json"):
        return name[:-10] + "_" + name[-9:]
    if lowered.endswith(".part"):
        return name[:-5] + "_" + name[-4:]
    return name


def _clean(name: str) -> str:
    components = [part for part in _SEPARATORS.split(name) if part]
    text = components[-1] if components else ""
    text = "".join(
        ch
        for ch in text
        if ch not in _BIDI_CONTROLS and unicodedata.category(ch) not in _STRIPPED_CATEGORIES
    )
    text = _WINDOWS_INVALID.sub("_", text)
    text = _DOT_RUNS.sub(".", text)
    text = _EDGE_DOTS_AND_SPACE.sub("", text)
    if not text:
        return ""
    # Windows ignores everything from the first dot, and trailing spaces, for device names.
    if text.split(".", 1)[0].rstrip().upper() in _WINDOWS_RESERVED:
        text = f"_{text}"
    return _unreserved(_truncate(text))


def _truncate(name: str, *, tag: str = "") -> str:
    """Trim ``name`` to :data:`_MAX_NAME_BYTES`, keeping its extension and ``tag``
    (inserted before the extension) whole."""
    if not tag and len(name.encode()) <= _MAX_NAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    suffix = dot + extension
    if not stem or len(suffix.encode()) > _MAX_SUFFIX_BYTES:
        stem, suffix = name, ""
    suffix = tag + suffix
    budget = _MAX_NAME_BYTES - len(suffix.encode())
    # Cutting bytes may split a character; "ignore" drops the partial one.
    kept = stem.encode()[:budget].decode(errors="ignore")
    return _TRAILING_DOTS_AND_SPACE.sub("", kept) + suffix


def path_inside(folder: Path, name: str, *, default: str = "model.safetensors") -> Path:
    """``folder / safe_filename(name)``, after proving it cannot land outside ``folder``.

    The name itself cannot escape once sanitised; what resolving also catches is a
    symlink already sitting at that name and pointing elsewhere, which a write would
    follow.

    Args:
        folder: the destination folder (need not exist yet).
        name: the untrusted file name.
        default: passed to :func:`safe_filename`.

    Returns:
        A direct child of ``folder``.

    Raises:
        UsageError: the path resolves outside ``folder``.
    """
    candidate = folder / safe_filename(name, default=default)
    base = folder.resolve()
    resolved = candidate.resolve()
    if resolved == base or not resolved.is_relative_to(base):
        raise UsageError(
            f"refusing to write {candidate}: it resolves to {resolved}, outside {base}",
            hint="remove that link or choose another folder",
        )
    return candidate
