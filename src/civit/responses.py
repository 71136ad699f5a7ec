"""Reading API answers with bounded memory and time.

An API answer is read as it streams in, never whole: at most ``limit`` bytes *after*
decompression (a 1.5 MB gzip bomb cannot grow past the limit), and never after the
``deadline`` (an answer trickling in byte by byte ends). The decoded body becomes an
ordinary, fully read :class:`httpx.Response`, so callers keep using ``.json()``,
``.text`` and ``.headers``.

civit asks for ``gzip``/``deflate`` only and decodes them itself, with a cap on each
step's output; any other ``Content-Encoding`` is refused rather than trusted.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from civit.errors import NetworkError, ResponseError
from civit.fsutil import human_bytes

__all__ = ["ACCEPT_ENCODING", "BoundedBody", "read_bounded"]

#: What the API client asks for: the encodings :func:`read_bounded` can bound.
ACCEPT_ENCODING = "gzip, deflate"

# zlib: 32 + 15 detects a gzip or a zlib header by itself.
_AUTODETECT_WBITS = 32 + zlib.MAX_WBITS
_DROPPED_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


@dataclass(frozen=True)
class BoundedBody:
    """An answer read up to a limit.

    ``response`` holds the decoded body (at most the limit); ``truncated`` says that
    more was on offer and was not read.
    """

    response: httpx.Response
    truncated: bool


def _decoder(response: httpx.Response) -> Callable[[bytes, int], bytes] | None:
    """A function ``(compressed, max_out) -> decoded`` for the response's encoding.

    Returns ``None`` for an identity body.

    Raises:
        ResponseError: an encoding civit did not ask for (``br``, ``zstd``, stacked).
    """
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise ResponseError(
            f"{response.request.url.host} answered with Content-Encoding {encoding!r}, "
            f"which civit did not ask for (it accepts {ACCEPT_ENCODING})",
            url=str(response.request.url),
        )
    inflater = zlib.decompressobj(_AUTODETECT_WBITS)

    def decode(data: bytes, max_out: int) -> bytes:
        return inflater.decompress(inflater.unconsumed_tail + data, max_out)

    return decode


# Decoded bytes produced per decompression step: a bomb's expansion arrives in slices
# of this size, never as one huge buffer.
_DECODE_STEP = 1024 * 1024


def read_bounded(
    response: httpx.Response, *, limit: int, deadline: float, what: str, cut: bool = False
) -> BoundedBody:
    """Read a streamed ``response`` into memory, keeping at most ``limit`` bytes.

    Args:
        response: a response from ``httpx.Client.send(..., stream=True)``; it is closed.
        limit: the most decoded bytes to keep.
        deadline: a :func:`time.monotonic` time by which the body must be complete.
        what: how messages name the answer ("the answer from https://…").
        cut: keep the first ``limit`` bytes of a longer body (error pages: their start
            says enough); otherwise a longer body is an error.

    Returns:
        The fully read response (without ``Content-Encoding``) and whether it was cut.

    Raises:
        NetworkError: the body was still arriving at ``deadline``.
        ResponseError: more than ``limit`` bytes (unless ``cut``), an unexpected
            encoding, or a body that does not decompress.
        httpx.TransportError: the connection failed mid-body (the caller retries).
    """
    url = str(response.request.url)
    try:
        decode = _decoder(response)
        body = bytearray()
        truncated = False
        for chunk in response.iter_raw():
            data = chunk
            while not truncated:
                if decode is None:
                    decoded, data = data, b""
                else:
                    decoded = decode(data, min(limit - len(body) + 1, _DECODE_STEP))
                    data = b""
                if not decoded:
                    break
                body += decoded
                truncated = len(body) > limit
            if truncated:
                break
            if time.monotonic() > deadline:
                raise NetworkError(
                    f"{what} was still arriving after the API deadline "
                    f"({len(body):,} bytes so far)",
                    url=url,
                    hint="the service is too slow right now; try again later",
                )
    except zlib.error as exc:
        raise ResponseError(f"{what} does not decompress ({exc})", url=url) from exc
    finally:
        response.close()
    if truncated and not cut:
        raise _too_large(what, limit, url)
    del body[limit:]
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in _DROPPED_HEADERS
    ]
    rebuilt = httpx.Response(
        response.status_code,
        headers=headers,
        content=bytes(body),
        request=response.request,
        extensions={
            key: response.extensions[key]
            for key in ("http_version", "reason_phrase")
            if key in response.extensions
        },
    )
    return BoundedBody(rebuilt, truncated)


def _too_large(what: str, limit: int, url: str) -> ResponseError:
    """The error for an answer larger than the configured limit."""
    return ResponseError(
        f"{what} is larger than {human_bytes(limit)}, more than any Civitai answer should be",
        url=url,
        hint="if this is expected, raise max_api_response_mb in the config file",
    )
