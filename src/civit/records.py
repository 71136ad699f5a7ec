"""Typed, frozen records for Civitai API documents, parsed tolerantly.

Civitai's JSON drifts over time (see DESIGN.md "Real data quirks"): keys go missing,
change case (``Blake3``), change type (``allowCommercialUse``) or hold nulls. The parsers
here read only what civit uses, ignore everything else, and turn anything missing or
malformed into ``None`` rather than an exception. The untouched document is kept in
``raw`` so it can be written out as a ``.civitai.info`` sidecar.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import datetime, timezone
from typing import Any

from civit.errors import IntegrityError, UsageError

__all__ = [
    "FILE_PREFERENCES",
    "HASH_ALGORITHMS",
    "NSFW_LEVELS",
    "SCAN_PASSED",
    "File",
    "HashMatch",
    "Hashes",
    "Model",
    "ModelPage",
    "Version",
    "as_json",
    "parse_algorithms",
    "preference_rank",
    "preview_level",
    "with_variants",
]

#: Civitai's hash types, in the order civit reports them; lower-case is civit's spelling.
HASH_ALGORITHMS = ("sha256", "blake3", "crc32", "autov1", "autov2", "autov3")

JSON = Mapping[str, Any]

#: Civitai's image ``nsfwLevel`` values by name (a bit each; ``none``: no images).
NSFW_LEVELS = {"pg": 1, "pg13": 2, "r": 4, "x": 8, "xxx": 16}


def preview_level(setting: str | int | None) -> int | None:
    """The highest image ``nsfwLevel`` a ``preview_nsfw`` setting allows.

    Args:
        setting: ``pg``, ``pg13`` (also ``PG-13``), ``r``, ``x``, ``xxx``, a level
            number, or ``none``/``None`` for no previews.

    Returns:
        The level, or ``None`` for no previews.

    Raises:
        UsageError: not one of those.

    >>> preview_level("PG-13"), preview_level("none"), preview_level(4)
    (2, None, 4)
    """
    if setting is None:
        return None
    if isinstance(setting, int) and not isinstance(setting, bool) and setting > 0:
        return setting
    key = re.sub(r"[\s_-]+", "", str(setting)).lower()
    if key in ("none", "off", "no"):
        return None
    if key.isdigit() and int(key) > 0:
        return int(key)
    if key in NSFW_LEVELS:
        return NSFW_LEVELS[key]
    raise UsageError(
        f"unknown preview NSFW level {setting!r}",
        hint="use pg, pg13, r, x, xxx or none (previews no more explicit than that)",
    )


def _safe_filename(name: str, *, variant: str | None = None) -> str:
    """:func:`civit.layouts.safe_filename`, imported on first use: the layouts package
    loads every WebUI's tables, and ``civit hash`` (which needs these records' digest
    names, not file names) should not pay for that at start-up."""
    from civit.layouts.filenames import safe_filename

    return safe_filename(name, variant=variant)


def _str(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _timestamp(value: str | None) -> datetime | None:
    """An ISO 8601 time as Civitai writes it (``2025-01-15T12:00:00.000Z``), in UTC;
    ``None`` if missing or unreadable (Python 3.10's parser takes no ``Z``)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        try:
            return int(value)
        except ValueError:  # more digits than Python converts: no id is that long
            return None
    return None


#: The largest ``sizeKB`` taken as a size (8 PiB): beyond it, bytes overflow arithmetic.
MAX_SIZE_KB = 2.0**43


def _size(value: object) -> float | None:
    """A size in KiB: finite, not negative, not absurd (JSON may say ``Infinity``,
    ``NaN``, ``1e400`` or ``1e308``)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value) if isinstance(value, (int, float, str)) else None
    except (ValueError, OverflowError):  # not a number; an int too large for a float
        return None
    if number is None or not math.isfinite(number) or not 0 <= number <= MAX_SIZE_KB:
        return None
    return number


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _mapping(value: object) -> JSON:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _swap_crc32_bytes(value: str) -> str:
    """``85114A0D`` -> ``0D4A1185``: Civitai prints CRC32 little-endian, zlib big-endian."""
    return "".join(reversed([value[i : i + 2] for i in range(0, len(value), 2)]))


def parse_algorithms(spec: str | Iterable[str]) -> tuple[str, ...]:
    """Normalise ``"sha256,BLAKE3"`` or ``["all"]`` to a tuple in canonical order.

    >>> parse_algorithms("crc32, SHA256")
    ('sha256', 'crc32')
    >>> parse_algorithms("all") == HASH_ALGORITHMS
    True

    Raises:
        UsageError: an unknown algorithm name.
    """
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    wanted = {name.strip().lower() for name in names if name.strip()}
    if "all" in wanted:
        return HASH_ALGORITHMS
    unknown = sorted(wanted - set(HASH_ALGORITHMS))
    if unknown:
        raise UsageError(
            f"unknown hash algorithm {', '.join(unknown)}; "
            f"choose from {', '.join(HASH_ALGORITHMS)} or all"
        )
    if not wanted:
        raise UsageError("no hash algorithm given")
    return tuple(name for name in HASH_ALGORITHMS if name in wanted)


@dataclass(frozen=True)
class Hashes:
    """The digests Civitai stores for a file, upper-case hex, ``None`` when absent."""

    sha256: str | None = None
    blake3: str | None = None
    crc32: str | None = None
    autov1: str | None = None
    autov2: str | None = None
    autov3: str | None = None

    @classmethod
    def from_json(cls, data: object) -> Hashes:
        """Read a ``hashes`` object; keys are matched case-insensitively."""
        found: dict[str, str] = {}
        for key, value in _mapping(data).items():
            name = str(key).lower()
            text = _str(value)
            if name in HASH_ALGORITHMS and text:
                found[name] = text.strip().upper()
        return cls(**found)

    def as_dict(self) -> dict[str, str]:
        """The present digests as ``{algorithm: HEX}``, in :data:`HASH_ALGORITHMS` order."""
        values = {name: getattr(self, name) for name in HASH_ALGORITHMS}
        return {name: value for name, value in values.items() if value}

    def __bool__(self) -> bool:
        return bool(self.as_dict())

    def matches(self, algorithm: str, actual: str) -> bool:
        """Whether ``actual`` equals the stored digest (CRC32 in either byte order).

        An absent digest matches nothing.
        """
        expected: str | None = getattr(self, algorithm.lower(), None)
        if not expected:
            return False
        actual = actual.upper()
        if algorithm.lower() == "crc32":
            return actual in (expected, _swap_crc32_bytes(expected))
        return actual == expected

    def check(self, actual: Mapping[str, str], *, path: str | None = None) -> tuple[str, ...]:
        """Compare computed digests with these; return the algorithms that were checked.

        Only algorithms present on both sides are compared.

        Raises:
            IntegrityError: on the first mismatch, naming expected and actual digests.
        """
        checked = []
        for algorithm, expected in self.as_dict().items():
            value = actual.get(algorithm)
            if value is None:
                continue
            if not self.matches(algorithm, value):
                where = f" for {path}" if path else ""
                raise IntegrityError(
                    f"{algorithm.upper()} mismatch{where}: expected {expected}, "
                    f"got {value.upper()}",
                    path=path,
                    algorithm=algorithm,
                    expected=expected,
                    actual=value.upper(),
                    hint="the download was corrupted or the file changed; run the command "
                    "again to fetch a fresh copy",
                )
            checked.append(algorithm)
        return tuple(checked)


#: Civitai's verdict for a file that passed a scan. The others are ``Pending`` (the
#: default until a scanner has run), ``Danger`` and ``Error`` (``enum ScanResultCode``
#: in civitai/civitai ``prisma/schema.prisma``).
SCAN_PASSED = "Success"


@dataclass(frozen=True)
class File:
    """One downloadable file of a version.

    ``pickle_scan`` and ``virus_scan`` are Civitai's scan verdicts as sent
    (``Success``, ``Pending``, ``Danger``, ``Error``), ``None`` when the record has none.
    ``variant`` is set when another file of the same version has the same name: it is
    what tells this one apart (``full_fp32``), and :attr:`local_name` carries it.
    """

    id: int
    name: str
    type: str | None = None
    size_kb: float | None = None
    format: str | None = None
    fp: str | None = None
    size: str | None = None
    hashes: Hashes = field(default_factory=Hashes)
    download_url: str | None = None
    primary: bool = False
    version_id: int | None = None
    model_type: str | None = None
    model_id: int | None = None
    pickle_scan: str | None = None
    virus_scan: str | None = None
    variant: str | None = None
    base_model: str | None = None

    @classmethod
    def from_json(
        cls,
        data: object,
        *,
        version_id: int | None = None,
        model_type: str | None = None,
        model_id: int | None = None,
        base_model: str | None = None,
    ) -> File | None:
        """Parse one entry of ``files[]``; ``None`` if it has no usable id.

        ``version_id``, ``model_type``, ``model_id`` and ``base_model`` come from the
        enclosing version, so a file alone knows where it belongs.
        """
        doc = _mapping(data)
        file_id = _int(doc.get("id"))
        if file_id is None:
            return None
        metadata = _mapping(doc.get("metadata"))
        return cls(
            id=file_id,
            name=_str(doc.get("name")) or f"file-{file_id}",
            type=_str(doc.get("type")),
            size_kb=_size(doc.get("sizeKB")),
            format=_str(metadata.get("format")),
            fp=_str(metadata.get("fp")),
            size=_str(metadata.get("size")),
            hashes=Hashes.from_json(doc.get("hashes")),
            download_url=_str(doc.get("downloadUrl")),
            primary=doc.get("primary") is True,
            version_id=version_id,
            model_type=model_type,
            model_id=model_id,
            pickle_scan=_str(doc.get("pickleScanResult")),
            virus_scan=_str(doc.get("virusScanResult")),
            base_model=base_model,
        )

    @property
    def approx_bytes(self) -> int | None:
        """Size from ``sizeKB`` (KiB, rounded): good for progress and disk checks only."""
        return round(self.size_kb * 1024) if self.size_kb is not None else None

    @property
    def local_name(self) -> str:
        """The name civit saves the file under: Civitai's name made safe, with
        ``_<variant>`` before the extension when the version has a same-named file."""
        return _safe_filename(self.name, variant=self.variant)


#: Among files that fit a request, what is preferred, strongest first, as
#: (what it is called, test). Civitai's own download endpoint prefers the same.
FILE_PREFERENCES: tuple[tuple[str, Callable[[File], bool]], ...] = (
    ("the primary file", lambda file: file.primary),
    ("SafeTensor", lambda file: (file.format or "").lower() == "safetensor"),
    ("pruned", lambda file: (file.size or "").lower() == "pruned"),
    ("fp16", lambda file: (file.fp or "").lower() == "fp16"),
)


def preference_rank(file: File) -> tuple[bool, ...]:
    """Sort key that puts preferred files first (:data:`FILE_PREFERENCES`)."""
    # False sorts first, so each element says "lacks this preference".
    return tuple(not prefers(file) for _, prefers in FILE_PREFERENCES)


# What tells same-named files apart, in the order a variant tag names them.
_VARIANT_TRAITS = ("size", "fp", "format", "type")


def _tag_word(value: str) -> str:
    return re.sub(r"[^0-9a-z]+", "-", value.lower()).strip("-")


def with_variants(
    files: Iterable[File], *, labels: Mapping[int, str] | None = None
) -> tuple[File, ...]:
    """``files`` with :attr:`File.variant` set wherever two files share a name.

    Among files with one name (compared as a case-insensitive file system would),
    the preferred one (:func:`preference_rank`, then Civitai's order) keeps the plain
    name. Each other one is tagged with the traits where it differs from that one:
    size, then precision, format and type (``full_fp32``, ``pruned_fp16``), then its
    label; a tag that is empty, repeated, or would collide with another file's name
    gets the file id. The tags depend only on the files given, so every run names a
    file alike.

    Args:
        files: files saved side by side: one version's, or several versions' (for
            ``civit get --all-versions``, list the oldest first so it keeps the plain
            name as newer versions come out).
        labels: one more trait by file id, e.g. the version's name when files of
            several versions are saved together.
    """
    label = labels or {}
    listed = tuple(files)
    groups: dict[str, list[File]] = {}
    for file in listed:
        groups.setdefault(_safe_filename(file.name).casefold(), []).append(file)
    tags: dict[int, str] = {}
    for group in groups.values():
        if len(group) < 2:
            continue
        keeper = min(group, key=preference_rank)  # min() keeps the first of equals
        for file in group:
            if file is not keeper:
                traits = [(getattr(file, t), getattr(keeper, t)) for t in _VARIANT_TRAITS]
                traits.append((label.get(file.id), label.get(keeper.id)))
                tags[file.id] = "_".join(
                    _tag_word(value)
                    for value, kept in traits
                    if value and value.lower() != (kept or "").lower()
                )
    repeated = Counter(tags.values())
    taken = set(groups)
    for file_id, tag in tags.items():
        unique = tag and repeated[tag] == 1
        if unique:
            name = _safe_filename(next(f.name for f in listed if f.id == file_id), variant=tag)
            unique = name.casefold() not in taken
        tags[file_id] = tag if unique else f"{tag}_{file_id}".lstrip("_")
    return tuple(replace(f, variant=tags[f.id]) if f.id in tags else f for f in listed)


@dataclass(frozen=True)
class Version:
    """A model version: its files plus enough of the parent model to route them."""

    id: int
    name: str
    model_id: int | None = None
    model_name: str | None = None
    model_type: str | None = None
    base_model: str | None = None
    published_at: str | None = None
    created_at: str | None = None
    download_url: str | None = None
    air: str | None = None
    availability: str | None = None
    early_access_ends_at: str | None = None
    trained_words: tuple[str, ...] = ()
    files: tuple[File, ...] = ()
    raw: JSON = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: object, *, parent: Model | None = None) -> Version | None:
        """Parse a version from ``/model-versions/{id}`` or a model's ``modelVersions[]``.

        ``parent`` supplies the model id, name and type when the version is nested.
        """
        doc = _mapping(data)
        version_id = _int(doc.get("id"))
        if version_id is None:
            return None
        model = _mapping(doc.get("model"))
        model_type = _str(model.get("type")) or (parent.type if parent else None)
        model_id = _int(doc.get("modelId")) or (parent.id if parent else None)
        base_model = _str(doc.get("baseModel"))
        files = (
            File.from_json(
                f,
                version_id=version_id,
                model_type=model_type,
                model_id=model_id,
                base_model=base_model,
            )
            for f in _list(doc.get("files"))
        )
        return cls(
            id=version_id,
            name=_str(doc.get("name")) or str(version_id),
            model_id=model_id,
            model_name=_str(model.get("name")) or (parent.name if parent else None),
            model_type=model_type,
            base_model=base_model,
            published_at=_str(doc.get("publishedAt")),
            created_at=_str(doc.get("createdAt")),
            download_url=_str(doc.get("downloadUrl")),
            air=_str(doc.get("air")),
            availability=_str(doc.get("availability")),
            early_access_ends_at=_str(doc.get("earlyAccessEndsAt")),
            trained_words=tuple(w for w in _list(doc.get("trainedWords")) if isinstance(w, str)),
            files=with_variants(f for f in files if f is not None),
            raw=dict(doc),
        )

    @property
    def primary_file(self) -> File | None:
        """The file marked primary, else the first file, else ``None``."""
        for file in self.files:
            if file.primary:
                return file
        return self.files[0] if self.files else None

    @property
    def date(self) -> str | None:
        """Publication date (``YYYY-MM-DD``) if known, else creation date."""
        stamp = self.published_at or self.created_at
        return stamp[:10] if stamp else None

    @property
    def in_early_access(self) -> bool:
        """Whether only accounts that bought Early Access can download it now.

        ``availability: Public`` says no. Otherwise ``earlyAccessEndsAt`` decides when
        it can be read (the ``EarlyAccess`` label may outlive it a while), and without
        one ``availability: EarlyAccess`` says yes.
        """
        availability = (self.availability or "").lower()
        if availability == "public":
            return False
        ends = _timestamp(self.early_access_ends_at)
        if ends is not None:
            return ends > datetime.now(timezone.utc)
        return availability == "earlyaccess"

    @property
    def early_access_label(self) -> str | None:
        """``in Early Access until YYYY-MM-DD`` (no date if Civitai gave none) while
        :attr:`in_early_access`, else ``None``."""
        if not self.in_early_access:
            return None
        ends = self.early_access_ends_at
        return f"in Early Access until {ends[:10]}" if ends else "in Early Access"

    @property
    def release_key(self) -> tuple[str, int]:
        """Sorts versions by publication (``publishedAt``, else ``createdAt``; the id
        breaks ties): creators reorder versions on the page, so list order proves nothing.
        """
        stamp = (self.published_at or self.created_at or "")[:19]  # ISO 8601 sorts by time
        return (stamp, self.id)

    def file_with_hash(self, digest: str) -> File | None:
        """The file with this digest (any hash type Civitai stores), if the version has one.

        A hash names one file; the version may hold several (fp16 and fp32 copies).
        """
        for file in self.files:
            if any(file.hashes.matches(algorithm, digest) for algorithm in HASH_ALGORITHMS):
                return file
        return None


def _tags(value: object) -> tuple[str, ...]:
    tags = []
    for tag in _list(value):
        name = _str(tag) if isinstance(tag, str) else _str(_mapping(tag).get("name"))
        if name:
            tags.append(name)
    return tuple(tags)


@dataclass(frozen=True)
class Model:
    """A model with its versions, newest first (the order Civitai returns them)."""

    id: int
    name: str
    type: str | None = None
    nsfw: bool | None = None
    creator: str | None = None
    tags: tuple[str, ...] = ()
    mode: str | None = None
    availability: str | None = None
    download_count: int | None = None
    versions: tuple[Version, ...] = ()
    raw: JSON = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: object) -> Model | None:
        """Parse ``/models/{id}`` or one item of ``/models``; ``None`` without an id."""
        doc = _mapping(data)
        model_id = _int(doc.get("id"))
        if model_id is None:
            return None
        stats = _mapping(doc.get("stats"))
        shell = cls(
            id=model_id,
            name=_str(doc.get("name")) or str(model_id),
            type=_str(doc.get("type")),
            nsfw=_bool(doc.get("nsfw")),
            creator=_str(_mapping(doc.get("creator")).get("username")),
            tags=_tags(doc.get("tags")),
            mode=_str(doc.get("mode")),
            availability=_str(doc.get("availability")),
            download_count=_int(stats.get("downloadCount")),
            raw=dict(doc),
        )
        versions = (Version.from_json(v, parent=shell) for v in _list(doc.get("modelVersions")))
        object.__setattr__(shell, "versions", tuple(v for v in versions if v is not None))
        return shell

    @property
    def archived(self) -> bool:
        """Archived models keep their versions but lose every file."""
        if (self.mode or "").lower() == "archived":
            return True
        return bool(self.versions) and not any(v.files for v in self.versions)

    @property
    def url(self) -> str:
        return f"https://civitai.com/models/{self.id}"


@dataclass(frozen=True)
class ModelPage:
    """One page of ``GET /api/v1/models``."""

    items: tuple[Model, ...]
    next_cursor: str | None = None
    next_page: str | None = None

    @classmethod
    def from_json(cls, data: object) -> ModelPage:
        doc = _mapping(data)
        metadata = _mapping(doc.get("metadata"))
        models = (Model.from_json(item) for item in _list(doc.get("items")))
        return cls(
            items=tuple(m for m in models if m is not None),
            next_cursor=_str(metadata.get("nextCursor")),
            next_page=_str(metadata.get("nextPage")),
        )


@dataclass(frozen=True)
class HashMatch:
    """One answer of ``POST /api/v1/model-versions/by-hash/ids``."""

    hash: str
    version_id: int
    model_id: int | None = None

    @classmethod
    def parse_all(cls, data: object) -> tuple[HashMatch, ...]:
        matches = []
        for entry in data if isinstance(data, list) else []:
            doc = _mapping(entry)
            version_id = _int(doc.get("modelVersionId"))
            digest = _str(doc.get("hash"))
            if version_id is not None and digest:
                matches.append(cls(digest.upper(), version_id, _int(doc.get("modelId"))))
        return tuple(matches)


#: Fields named differently in JSON, so that ``size`` never means two things: in
#: ``--json`` documents byte counts end in ``_bytes`` and a file's pruned/full is this.
_JSON_NAMES = {"size": "size_variant"}


def as_json(record: object) -> Any:
    """A record as plain JSON data (the normalised form, without the ``raw`` document).

    >>> as_json(File(1, "a.safetensors", size="pruned"))["size_variant"]
    'pruned'
    """
    if is_dataclass(record) and not isinstance(record, type):
        if isinstance(record, Hashes):
            return record.as_dict()
        return {
            _JSON_NAMES.get(f.name, f.name): as_json(getattr(record, f.name))
            for f in fields(record)
            if f.name != "raw"
        }
    if isinstance(record, (tuple, list)):
        return [as_json(item) for item in record]
    return record
