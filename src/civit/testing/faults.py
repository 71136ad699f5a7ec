"""Fault knobs and the request log: the plain data the fake server and its handler share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class FileFaults:
    """Faults injected into one file's CDN responses (see :meth:`FakeCivitai.set_faults`)."""

    file_id: int
    drop_after: int | None = None
    drop_times: int = 1
    ignore_range: bool = False
    corrupt: bool = False
    expire_after: int | None = None
    throttle: float | None = None
    html: bool = False
    stall_after: int | None = None
    stall_seconds: float = 0.0
    stall_times: int = 1
    status: int | None = None
    status_times: int = 1
    retry_after: str | None = None
    range_cap: int | None = None
    empty_range: bool = False
    no_length: bool = False
    gzip: bool = False
    disguised_html: bool = False
    redirect_to: str | None = None
    ignore_if_range: bool = False


@dataclass
class FaultState:
    settings: FileFaults
    drops_left: int
    stalls_left: int
    statuses_left: int = 0
    expire_counted: int = 0
    expired: bool = False


@dataclass(frozen=True)
class BodyPlan:
    cut_at: int | None
    stall_at: int | None
    stall_seconds: float
    throttle: float | None
    corrupt: bool


@dataclass
class ApiFailure:
    status: int
    times_left: int
    retry_after: str | None
    body: str | None
    location: str | None = None


@dataclass(frozen=True)
class RequestLog:
    """One request as the fake saw it, appended when its response is (about to be) complete."""

    origin: Literal["api", "cdn"]
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    status: int
    body_bytes: int
    file_id: int | None = None
