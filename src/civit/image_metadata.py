"""The text an image (or a workflow file) carries about how it was made.

Where generators put it, and what :func:`read_image_metadata` reads:

- **PNG**: ``tEXt``, ``zTXt`` and ``iTXt`` chunks, by keyword. A1111/Forge/SD.Next write
  their infotext as ``parameters`` (``modules/images.py`` ``save_image_with_geninfo``);
  ComfyUI writes its graph as ``prompt`` and its editor state as ``workflow``
  (``nodes.py`` ``SaveImage``). An ``eXIf`` chunk is read like a JPEG's EXIF.
- **JPEG**: the EXIF ``UserComment`` in the ``APP1`` segment (A1111 writes its infotext
  there through ``piexif.helper.UserComment.dump(..., encoding="unicode")``), and a
  ``COM`` comment segment.
- **WebP**: the ``EXIF`` chunk, read the same way. ComfyUI's WebP savers put
  ``prompt:{json}`` into the TIFF ``Model`` tag and ``workflow:{json}`` (each key of
  its extra PNG info) into ``Make``, then ``ImageDescription`` (``comfy_extras/
  nodes_images.py`` ``SaveAnimatedWEBP``).
- **JSON**: a ComfyUI workflow or API graph saved as a file, kept whole as ``workflow``.

Only the standard library is used: the three containers are chunk lists, and EXIF is a
TIFF directory from which only four tags are needed, so a small bounded reader here
beats an image library (Pillow is a large compiled dependency, and civit never decodes
pixels). Malformed or truncated metadata is skipped, never raised: an image whose
chunks cannot be read simply carries no text.
"""

from __future__ import annotations

import codecs
import json
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from civit.errors import CivitError, UsageError
from civit.fsutil import open_regular

__all__ = ["MAX_TEXT_BYTES", "ImageMetadata", "decode_user_comment", "read_image_metadata"]

ImageKind = Literal["png", "jpeg", "webp", "json"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Text bigger than this is not generation metadata; reading it would only cost memory.
# It bounds one image's texts together: a 650 KB PNG of twenty compressed 32 MiB chunks
# under different keywords would otherwise inflate to 640 MiB.
MAX_TEXT_BYTES = 32 * 1024 * 1024
_EXIF_PREFIX = b"Exif\x00\x00"
# What is read to tell the format: the containers' signatures, or a JSON file's first
# bracket after its byte order mark and blank space.
_HEAD_BYTES = 4096

# TIFF tags (EXIF 2.32, section 4.6): where generators leave text.
_IMAGE_DESCRIPTION = 0x010E
_MAKE = 0x010F
_MODEL = 0x0110
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
# Bytes per value of each TIFF field type (1 BYTE, 2 ASCII, 3 SHORT, 4 LONG, 5 RATIONAL,
# 7 UNDEFINED, 9 SLONG, 10 SRATIONAL).
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8}


@dataclass(frozen=True)
class ImageMetadata:
    """The text an image carries, by where it was found.

    Attributes:
        path: the file.
        kind: ``png``, ``jpeg``, ``webp`` or ``json``.
        texts: text by keyword: PNG chunk keywords as written (``parameters``,
            ``prompt``, ``workflow``...); ``parameters`` for an EXIF ``UserComment``;
            ``prompt``/``workflow`` for ComfyUI's ``key:value`` EXIF tags;
            ``description`` and ``comment`` for other EXIF and JPEG text.
    """

    path: Path
    kind: ImageKind
    texts: dict[str, str] = field(default_factory=dict)


def read_image_metadata(path: str | os.PathLike[str]) -> ImageMetadata:
    """Read the text metadata of a PNG, JPEG or WebP image, or a JSON workflow file.

    The format is told by the file's first bytes, not its name.

    Args:
        path: the file.

    Returns:
        Its :class:`ImageMetadata` (``texts`` empty when it carries none).

    Raises:
        UsageError: the file is none of those formats.
        CivitError: the file cannot be read.
    """
    file = Path(path)
    try:
        with os.fdopen(open_regular(file), "rb") as stream:  # a FIFO must not hang
            head = stream.read(_HEAD_BYTES)
            stream.seek(0)
            if head.startswith(PNG_SIGNATURE):
                return ImageMetadata(file, "png", _png_texts(stream))
            if head.startswith(b"\xff\xd8\xff"):
                return ImageMetadata(file, "jpeg", _jpeg_texts(stream))
            if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                return ImageMetadata(file, "webp", _webp_texts(stream))
            # Windows editors start UTF-8 files with a byte order mark; pretty-printed
            # JSON may start with blank lines.
            if head.removeprefix(codecs.BOM_UTF8).lstrip()[:1] in (b"{", b"["):
                return ImageMetadata(file, "json", _json_texts(file, stream))
    except OSError as exc:
        raise CivitError(f"cannot read {file}: {exc.strerror or exc}") from exc
    raise UsageError(
        f"{file} is not a PNG, JPEG or WebP image, nor a JSON workflow",
        hint="pass images saved by a WebUI or Civitai, or a ComfyUI workflow .json",
    )


# -- PNG ----------------------------------------------------------------------------


def _png_chunks(stream: BinaryIO) -> Iterator[tuple[bytes, bytes]]:
    """``(type, data)`` of the text-bearing chunks; image data is skipped unread."""
    stream.seek(len(PNG_SIGNATURE))
    while True:
        header = stream.read(8)
        if len(header) < 8:
            return
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            return
        if kind in (b"tEXt", b"zTXt", b"iTXt", b"eXIf") and length <= MAX_TEXT_BYTES:
            data = stream.read(length)
            if len(data) < length:
                return
            yield kind, data
            stream.seek(4, os.SEEK_CUR)  # CRC
        else:
            stream.seek(length + 4, os.SEEK_CUR)


def _png_texts(stream: BinaryIO) -> dict[str, str]:
    """The text chunks by keyword (the first of each), at most :data:`MAX_TEXT_BYTES`
    in all; chunks past that are skipped unread and uninflated."""
    texts: dict[str, str] = {}
    budget = MAX_TEXT_BYTES
    for kind, data in _png_chunks(stream):
        if budget <= 0:
            break
        if kind == b"eXIf":
            for key, value in _tiff_texts(data).items():
                if key not in texts:
                    texts[key] = value
                    budget -= len(value)
            continue
        keyword, _, rest = data.partition(b"\x00")
        name = keyword.decode("latin-1")
        if not keyword or name in texts:
            continue
        text = _png_text(kind, rest, limit=budget)
        if text is not None:
            texts[name] = text
            budget -= len(text)
    return texts


def _png_text(kind: bytes, rest: bytes, *, limit: int) -> str | None:
    """The text of one ``tEXt``/``zTXt``/``iTXt`` chunk after its keyword (PNG 1.2, 4.2.3);
    ``None`` if it is broken or inflates past ``limit`` bytes."""
    try:
        if kind == b"tEXt":
            return rest.decode("latin-1")
        if kind == b"zTXt":
            return _inflate(rest[1:], limit).decode("latin-1")  # rest[0]: method, always 0
        compressed = rest[:1] == b"\x01"
        _language, _, after = rest[2:].partition(b"\x00")
        _translated, _, text = after.partition(b"\x00")
        return (_inflate(text, limit) if compressed else text).decode("utf-8")
    except (zlib.error, UnicodeDecodeError, ValueError):
        return None


def _inflate(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj()
    text = inflater.decompress(data, limit)
    if inflater.unconsumed_tail:
        raise ValueError("compressed text too large")
    return text


# -- JPEG ---------------------------------------------------------------------------


def _jpeg_texts(stream: BinaryIO) -> dict[str, str]:
    """EXIF and ``COM`` text from the segments before the image data (ITU T.81, B.1)."""
    texts: dict[str, str] = {}
    stream.seek(2)
    while True:
        marker = stream.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return texts
        code = marker[1]
        if code == 0xFF:  # fill byte before a marker
            stream.seek(-1, os.SEEK_CUR)
            continue
        if code == 0xDA or code == 0xD9:  # start of scan, end of image: no more metadata
            return texts
        if 0xD0 <= code <= 0xD7 or code == 0x01:  # markers without a length
            continue
        size_bytes = stream.read(2)
        if len(size_bytes) < 2:
            return texts
        (size,) = struct.unpack(">H", size_bytes)
        data = stream.read(max(size - 2, 0))
        if code == 0xE1 and data.startswith(_EXIF_PREFIX):
            for key, value in _tiff_texts(data[len(_EXIF_PREFIX) :]).items():
                texts.setdefault(key, value)
        elif code == 0xFE:
            texts.setdefault("comment", _decode_text(data))


# -- WebP ---------------------------------------------------------------------------


def _webp_texts(stream: BinaryIO) -> dict[str, str]:
    """The ``EXIF`` chunk of a RIFF WebP file (some writers keep the ``Exif`` prefix)."""
    stream.seek(12)
    while True:
        header = stream.read(8)
        if len(header) < 8:
            return {}
        kind, size = struct.unpack("<4sI", header)
        if kind == b"EXIF" and size <= MAX_TEXT_BYTES:
            data = stream.read(size)
            return _tiff_texts(data.removeprefix(_EXIF_PREFIX))
        stream.seek(size + (size & 1), os.SEEK_CUR)  # chunks are padded to even sizes


# -- JSON ---------------------------------------------------------------------------


def _json_texts(file: Path, stream: BinaryIO) -> dict[str, str]:
    data = stream.read(MAX_TEXT_BYTES + 1)
    try:
        text = data.decode("utf-8-sig")
        json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise UsageError(
            f"{file} is not valid JSON ({why})",
            hint="pass a ComfyUI workflow saved with Save (API) or Export, or an image",
        ) from exc
    return {"workflow": text}


# -- EXIF (TIFF) --------------------------------------------------------------------


class _Tiff:
    """Bounds-checked reads of a TIFF structure (TIFF 6.0, section 2)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.order = "<" if data[:2] == b"II" else ">"

    def unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        size = struct.calcsize(self.order + fmt)
        if offset < 0 or offset + size > len(self.data):
            raise ValueError("outside the EXIF block")
        return struct.unpack_from(self.order + fmt, self.data, offset)

    def entries(self, offset: int) -> dict[int, bytes]:
        """The raw values of one image file directory, by tag."""
        (count,) = self.unpack("H", offset)
        values: dict[int, bytes] = {}
        for index in range(count):
            entry = offset + 2 + 12 * index
            tag, kind, number = self.unpack("HHI", entry)
            size = _TYPE_SIZES.get(kind, 1) * number
            start = entry + 8 if size <= 4 else self.unpack("I", entry + 8)[0]
            if start + size > len(self.data):
                continue
            values[tag] = self.data[start : start + size]
        return values


def _tiff_texts(data: bytes) -> dict[str, str]:
    """The text tags of an EXIF block: the parameters in ``UserComment``, ComfyUI's
    ``prompt:``/``workflow:`` values in ``Model``/``Make``, and ``ImageDescription``."""
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return {}
    tiff = _Tiff(data)
    try:
        first = tiff.entries(tiff.unpack("I", 4)[0])
    except (ValueError, struct.error):
        return {}
    texts: dict[str, str] = {}
    pointer = first.get(_EXIF_IFD, b"")
    if len(pointer) == 4:
        try:
            comment = tiff.entries(struct.unpack(tiff.order + "I", pointer)[0]).get(_USER_COMMENT)
        except (ValueError, struct.error):
            comment = None
        if comment:
            texts["parameters"] = decode_user_comment(comment)
    for tag in (_MODEL, _MAKE, _IMAGE_DESCRIPTION):
        value = first.get(tag)
        if not value:
            continue
        text = _decode_text(value.rstrip(b"\x00"))
        key, colon, rest = text.partition(":")
        if colon and key.isidentifier() and rest.lstrip()[:1] in ("{", "["):
            texts.setdefault(key, rest)
        elif tag == _IMAGE_DESCRIPTION:
            texts.setdefault("description", text)
    return texts


def decode_user_comment(value: bytes) -> str:
    """Decode an EXIF ``UserComment``: an 8-byte character code, then the text.

    ``UNICODE`` means UTF-16 without saying which byte order: piexif (A1111) writes
    big-endian whatever the TIFF byte order, other writers little-endian. The order
    whose zero bytes fall on the high byte of each code unit is the right one for the
    mostly-ASCII text generators write.

    >>> decode_user_comment(b"UNICODE\\x00" + "Steps: 20".encode("utf-16-be"))
    'Steps: 20'
    >>> decode_user_comment(b"UNICODE\\x00" + "Steps: 20".encode("utf-16-le"))
    'Steps: 20'
    >>> decode_user_comment(b"ASCII\\x00\\x00\\x00Steps: 20")
    'Steps: 20'
    """
    code, text = value[:8], value[8:]
    if code == b"UNICODE\x00":
        if text[:2] in (b"\xfe\xff", b"\xff\xfe"):
            return text.decode("utf-16", errors="replace")
        high_first = text[0::2].count(0) >= text[1::2].count(0)
        return text.decode("utf-16-be" if high_first else "utf-16-le", errors="replace")
    if code in (b"ASCII\x00\x00\x00", b"\x00" * 8, b"JIS\x00\x00\x00\x00\x00"):
        return _decode_text(text.rstrip(b"\x00"))
    return _decode_text(value.rstrip(b"\x00"))


def _decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")
