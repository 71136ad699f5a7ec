"""The ``--json`` document of every command, as small schemas, and a tiny validator.

docs/json.md describes the same documents for people; ``test_json_output.py`` checks
that every command's output matches its schema here and that the docs name every
field. The notation:

- a type (``str``, ``int``, ``float``, ``bool``) or ``None`` (JSON null); ``float``
  accepts integers, ``int`` does not accept booleans;
- a tuple: any one of its schemas;
- a dict: an object with exactly these keys (a key ending in ``?`` may be absent;
  the key ``...`` allows more keys, for documents that mirror a growing record);
- a one-item list: an array of that schema;
- ``Map(schema)``: an object with any keys, each value matching ``schema``;
- ``Enum(*values)``: one of these values.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class Map:
    def __init__(self, values: Any) -> None:
        self.values = values


class Enum:
    def __init__(self, *choices: object) -> None:
        self.choices = choices


def problems(value: object, schema: Any, where: str = "$") -> list[str]:
    """Where ``value`` departs from ``schema`` (empty: it matches)."""
    if isinstance(schema, tuple):
        found = [problems(value, option, where) for option in schema]
        if any(not p for p in found):
            return []
        return [f"{where}: matches none of the alternatives: " + " | ".join(p[0] for p in found)]
    if schema is None:
        return [] if value is None else [f"{where}: expected null, got {value!r}"]
    if isinstance(schema, Enum):
        return [] if value in schema.choices else [f"{where}: {value!r} not in {schema.choices}"]
    if isinstance(schema, Map):
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        return [p for k, v in value.items() for p in problems(v, schema.values, f"{where}.{k}")]
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{where}: expected an array, got {type(value).__name__}"]
        return [
            p for i, item in enumerate(value) for p in problems(item, schema[0], f"{where}[{i}]")
        ]
    if isinstance(schema, dict):
        return _object_problems(value, schema, where)
    if schema is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif schema is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, schema)
    return [] if ok else [f"{where}: expected {schema.__name__}, got {value!r}"]


def _object_problems(value: object, schema: dict[Any, Any], where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: expected an object, got {type(value).__name__}"]
    found: list[str] = []
    keys = {key.rstrip("?"): key.endswith("?") for key in schema if key is not ...}
    for key, optional in keys.items():
        if key not in value:
            if not optional:
                found.append(f"{where}: missing {key!r}")
            continue
        spec = schema[f"{key}?" if optional else key]
        found.extend(problems(value[key], spec, f"{where}.{key}"))
    if ... not in schema:
        found.extend(f"{where}: unexpected key {key!r}" for key in value if key not in keys)
    return found


def assert_matches(value: object, schema: Any) -> None:
    found = problems(value, schema)
    assert not found, "\n".join(found)


def field_names(schema: Any) -> Iterator[str]:
    """Every key a schema names, nested ones too (what the docs must mention)."""
    if isinstance(schema, tuple):
        for option in schema:
            yield from field_names(option)
    elif isinstance(schema, list):
        yield from field_names(schema[0])
    elif isinstance(schema, Map):
        yield from field_names(schema.values)
    elif isinstance(schema, dict):
        for key, spec in schema.items():
            if key is not ...:
                yield key.rstrip("?")
                yield from field_names(spec)


# -- shared pieces -----------------------------------------------------------------

TEXT = (str, None)
NUMBER = (int, None)
ERROR = {"message": str, "exit_code": int, "hint": TEXT}
ERROR_DOCUMENT = {"error": ERROR}
DIGESTS = Map(str)

FILE = {
    "id": int,
    "name": str,
    "type": TEXT,
    "size_kb": (float, None),
    "format": TEXT,
    "fp": TEXT,
    "size_variant": TEXT,
    "hashes": DIGESTS,
    "download_url": TEXT,
    "primary": bool,
    "version_id": NUMBER,
    "model_type": TEXT,
    ...: object,
}
VERSION = {
    "id": int,
    "name": str,
    "model_id": NUMBER,
    "model_name": TEXT,
    "model_type": TEXT,
    "base_model": TEXT,
    "published_at": TEXT,
    "created_at": TEXT,
    "air": TEXT,
    "trained_words": [str],
    "files": [FILE],
    ...: object,
}
MODEL = {
    "id": int,
    "name": str,
    "type": TEXT,
    "nsfw": (bool, None),
    "creator": TEXT,
    "tags": [str],
    "download_count": NUMBER,
    "versions": [VERSION],
    ...: object,
}

# -- one schema per command --------------------------------------------------------

GET_RESULT = {
    "ref": str,
    "path": str,
    "status": Enum("downloaded", "present"),
    "size_bytes": int,
    "sha256": TEXT,
    "digests": DIGESTS,
    "verified": [str],
    "bytes_transferred": int,
    "resumed_bytes": int,
    "seconds": float,
    "file_id": NUMBER,
    "warnings": [str],
    "notes": [str],
    "layout": TEXT,
    "sidecars": [str],
    "error": None,
}
GET_FAILURE = {"ref": str, "error": ERROR}
GET_PLANNED = {
    "ref": str,
    "file_id": int,
    "path": str,
    "status": Enum("planned"),
    "notes": [str],
    "error": None,
}
GET_SKIPPED = {
    "ref": str,
    "version_id": int,
    "status": Enum("skipped"),
    "reason": str,
    "error": None,
}

RESOURCE = {
    "kind": str,
    "name": TEXT,
    "source": str,
    "lookups": [str],
    "weight": (float, None),
    "found": bool,
    "model_id": NUMBER,
    "version_id": NUMBER,
    "model_name": TEXT,
    "version_name": TEXT,
    "file_id": NUMBER,
    "file_name": TEXT,
    "reason": TEXT,
}
FROM_FILE_PLANNED = {key: value for key, value in GET_PLANNED.items() if key != "ref"}
FROM_FILE_FETCHED = {key: value for key, value in GET_RESULT.items() if key != "ref"}
FROM_FILE_FAILED = {"file_id": int, "error": ERROR}
FROM_FILE_SKIPPED = {key: value for key, value in GET_SKIPPED.items() if key != "ref"}
FROM_IMAGE = {
    "path": str,
    "resources": [RESOURCE],
    "files": [(FROM_FILE_PLANNED, FROM_FILE_FETCHED, FROM_FILE_FAILED, FROM_FILE_SKIPPED)],
    "error": None,
}

HASHED = {
    "path": str,
    "size_bytes": NUMBER,
    "digests": DIGESTS,
    "cached": bool,
    "error": (ERROR, None),
}

IDENTIFIED = {
    "path": str,
    "status": Enum("known", "unknown", "error"),
    "sha256": TEXT,
    "model_id": NUMBER,
    "version_id": NUMBER,
    "url": TEXT,
    "model_name": TEXT,
    "version_name": TEXT,
    "model_type": TEXT,
    "base_model": TEXT,
    "source": (Enum("civitai", "sidecar"), None),
    "sidecars": [str],
    "notes": [str],
    "error": (ERROR, None),
}

CHECKED = {
    "path": str,
    "status": Enum("ok", "mismatch", "unknown", "error"),
    "reason": str,
    "source": (Enum("lock", "store", "civitai", "sidecar"), None),
    "checked": [str],
    "algorithm": TEXT,
    "expected": TEXT,
    "actual": TEXT,
    "digests": DIGESTS,
    "version_id": NUMBER,
    "error": (ERROR, None),
}

LOCKED = {
    "ref": str,
    "model_id": NUMBER,
    "version_id": int,
    "file_id": int,
    "name": str,
    "dest": str,
    "size_bytes": NUMBER,
    "size_kb": (float, None),
    "sha256": TEXT,
    "blake3": TEXT,
    "model_type": TEXT,
}
PIN = {"version_id": int, "file_id": int}

INSTALLED = {
    "ref": str,
    "status": Enum("installed", "present", "failed"),
    "path": str,
    "size_bytes": NUMBER,
    "bytes_transferred": int,
    "seconds": float,
    "digests": DIGESTS,
    "source": (Enum("civitai", "mirror", "store"), None),
    "version_id": NUMBER,
    "file_id": NUMBER,
    "link": (Enum("present", "linked", "copied"), None),
    "mirror_error": TEXT,
    "sidecars": [str],
    "notes": [str],
    "error": (ERROR, None),
}

UPDATE_VERSION = {
    "id": int,
    "name": str,
    "date": TEXT,
    "base_model": TEXT,
    "air": TEXT,
    "file": ({"id": int, "name": str}, None),
    "early_access": bool,
    "early_access_until": TEXT,
}

SCHEMAS: dict[str, Any] = {
    "info": MODEL,
    "search": [MODEL],
    "get": [(GET_RESULT, GET_PLANNED, GET_SKIPPED, GET_FAILURE)],
    "get --from": [(FROM_IMAGE, {"path": str, "error": ERROR})],
    "hash": [HASHED],
    "identify": [IDENTIFIED],
    "verify": [CHECKED],
    "lock": {
        "manifest": str,
        "lock": str,
        "written": bool,
        "files": [LOCKED],
        "changes": [{"ref": str, "before": (PIN, None), "after": PIN}],
    },
    "lock --check": {
        "manifest": str,
        "lock": str,
        "matches": bool,
        "differences": [
            {
                "index": int,
                "ref": str,
                "key": str,
                "locked": (str, float, None),
                "resolved": (str, float, None),
            }
        ],
    },
    "install": {
        "manifest": str,
        "lock": str,
        "frozen": bool,
        "lock_written": bool,
        "summary": {"installed": int, "present": int, "failed": int},
        "exit_code": int,
        "seconds": float,
        "entries": [INSTALLED],
    },
    "outdated": [
        {
            "path": str,
            "status": Enum("outdated", "current", "ignored", "unknown", "error"),
            "model_id": NUMBER,
            "model_name": TEXT,
            "current": (UPDATE_VERSION, None),
            "newest": (UPDATE_VERSION, None),
            "available": (UPDATE_VERSION, None),
            "other_bases": [UPDATE_VERSION],
            "reason": TEXT,
            "error": (ERROR, None),
        }
    ],
    "freeze": {
        "manifest": str,
        "lock": str,
        "root": str,
        "layout": str,
        "manifest_written": bool,
        "lock_written": bool,
        "info": bool,
        "exit_code": int,
        "files": [
            {
                "path": str,
                "ref": str,
                "model_id": NUMBER,
                "version_id": int,
                "file_id": int,
                "folder": str,
                "unscanned": TEXT,
            }
        ],
        "unknown": [{"path": str, "sha256": str}],
        "skipped": [{"path": str, "reason": str, "error": (ERROR, None)}],
    },
    "mirror push": {
        "destination": str,
        "summary": {"uploaded": int, "present": int, "failed": int},
        "bytes_sent": int,
        "exit_code": int,
        "seconds": float,
        "files": [
            {
                "path": str,
                "status": Enum("uploaded", "present", "failed"),
                "sha256": TEXT,
                "size_bytes": NUMBER,
                "bytes_sent": int,
                "seconds": float,
                "destination": TEXT,
                "error": (ERROR, None),
            }
        ],
    },
    "config show": {"settings": Map((str, int, float, bool, None)), "sources": Map(str)},
    "config path": {"path": str},
    "error": ERROR_DOCUMENT,
}
