"""S3-compatible object storage: addressing, credentials, presigned reads, uploads.

A mirror bucket holds every file under its SHA256: ``s3://bucket/prefix`` names the
object ``prefix/<sha256 lower-case>``. Credentials, region and endpoint come from the
standard AWS sources through boto3 (the ``civit[s3]`` extra): ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``
(R2, MinIO, B2, GCS), ``~/.aws/credentials`` and ``~/.aws/config`` profiles chosen by
``AWS_PROFILE`` (SSO, assume-role and web-identity profiles included), and instance or
container roles.

Reads never stream through boto3: :meth:`S3Bucket.presigned_get` signs a short-lived
GET URL and civit's own engine (:func:`civit.transfer.fetch`) fetches it with parallel
ranged requests like any other link. Uploads send ``x-amz-checksum-sha256``, so the
server itself checks every byte it stores.

boto3 is imported the first time a bucket is used, never by ``import civit``. Errors
are translated here, at one boundary, into :class:`civit.errors.CivitError` whose
messages name the bucket and key but never a credential or a signed URL.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import re
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from civit.errors import (
    AuthError,
    CivitError,
    IntegrityError,
    NetworkError,
    NotFoundError,
    UsageError,
    redact_url,
)

__all__ = [
    "ObjectInfo",
    "S3Bucket",
    "S3Location",
    "UploadedPart",
    "is_s3_url",
    "parse_s3_url",
    "require_s3_support",
    "s3_extra_hint",
]

CREDENTIALS_HINT = (
    "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and that they may "
    "read and write this bucket"
)
#: How long a presigned GET stays valid; the engine asks for a new one when it expires.
PRESIGN_SECONDS = 3600
# Bucket names as S3 and its clones accept them (3-63 characters; dots and dashes).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]")
_MULTIPART_ETAG = re.compile(r'"?[0-9a-fA-F]+-\d+"?')
# Up to the last @ of the URL: a password may hold "/" or "@" itself.
_USERINFO = re.compile(r"//\S*@")


def is_s3_url(text: str) -> bool:
    """Whether ``text`` names an S3 location (``s3://…``).

    >>> is_s3_url("s3://models/civit"), is_s3_url("http://cache/{sha256}")
    (True, False)
    """
    return text.strip().lower().startswith("s3://")


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix; objects are ``prefix/<sha256>``."""

    bucket: str
    prefix: str = ""

    def key_for(self, sha256: str) -> str:
        """The object key of a file.

        >>> S3Location("b", "models/civit").key_for("AB12")
        'models/civit/ab12'
        """
        return f"{self.prefix}/{sha256.lower()}" if self.prefix else sha256.lower()

    def url_for(self, sha256: str) -> str:
        """``s3://bucket/key`` of a file, for messages and reports."""
        return f"s3://{self.bucket}/{self.key_for(sha256)}"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_s3_url(url: str) -> S3Location:
    """Read ``s3://bucket[/prefix]``.

    >>> parse_s3_url("s3://models/fleet/v1/")
    S3Location(bucket='models', prefix='fleet/v1')

    Raises:
        UsageError: not an ``s3://`` URL, or no valid bucket name in it.
    """
    text = url.strip()
    if not is_s3_url(text):
        raise UsageError(
            f"not an S3 URL: {_without_userinfo(url)!r}", hint="use s3://BUCKET/PREFIX"
        )
    bucket, _, prefix = text[5:].partition("/")
    if "@" in bucket:  # never echo what stands before the @: it may be a key and secret
        raise UsageError(
            "bad S3 URL: credentials do not belong in it",
            hint="use s3://BUCKET/PREFIX, with credentials in AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY or an AWS profile",
        )
    if "?" in text or "#" in text:
        raise UsageError(
            f"bad S3 URL {redact_url(text)!r}: it may not have a ?query or #fragment",
            hint="use s3://BUCKET/PREFIX",
        )
    if not _BUCKET.fullmatch(bucket):
        raise UsageError(
            f"bad S3 URL {text!r}: {bucket!r} is not a bucket name",
            hint="use s3://BUCKET/PREFIX (3-63 lower-case letters, digits, dots, dashes)",
        )
    return S3Location(bucket, "/".join(part for part in prefix.split("/") if part))


def _without_userinfo(text: str) -> str:
    """``text`` with the ``user:password@`` of any URL in it removed.

    >>> _without_userinfo("Invalid endpoint: http://key:se@cr/et@minio:9000")
    'Invalid endpoint: http://minio:9000'
    """
    return _USERINFO.sub("//", text)


def require_s3_support() -> None:
    """Fail early, with the install command, when the ``s3`` extra is missing.

    Raises:
        UsageError: boto3 is not installed (exit 2).
    """
    try:
        available = importlib.util.find_spec("boto3") is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as missing
        available = False
    if not available:
        raise UsageError("s3:// mirrors need boto3, which is not installed", hint=s3_extra_hint())


def s3_extra_hint() -> str:
    """How to add boto3 to the Python that runs civit, whatever installed civit.

    ``pip install 'civit[s3]'`` alone would look for civit on PyPI, where it is not (it
    is installed from a Git URL or a clone), and a bare ``pip`` may belong to another
    Python; ``python -m pip`` of this very interpreter adds boto3 where civit runs.
    """
    python = sys.executable or "python"
    if " " in python:
        python = f'"{python}"'
    return (
        f"add boto3, what the civit[s3] extra installs: {python} -m pip install boto3 "
        "(pipx: pipx inject civit boto3)"
    )


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD request tells about an object.

    ``sha256`` is the object's full-content SHA256 (upper-case hex) when the store
    vouches for it: a full-object ``x-amz-checksum-sha256`` (single-part uploads) or
    the ``x-amz-meta-sha256`` civit writes on upload; ``None`` when neither is there.
    """

    size: int
    sha256: str | None = None


@dataclass(frozen=True)
class UploadedPart:
    """One finished part of a multipart upload."""

    number: int
    etag: str
    checksum: str


def _b64(sha256_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")


def _object_sha256(head: Mapping[str, Any]) -> str | None:
    checksum = head.get("ChecksumSHA256")
    full_object = head.get("ChecksumType") == "FULL_OBJECT" or (
        head.get("ChecksumType") is None
        and not _MULTIPART_ETAG.fullmatch(str(head.get("ETag", "")))
    )
    if isinstance(checksum, str) and "-" not in checksum and full_object:
        try:
            return base64.b64decode(checksum, validate=True).hex().upper()
        except ValueError:
            return None
    claimed = (head.get("Metadata") or {}).get("sha256")
    if isinstance(claimed, str) and re.fullmatch(r"[0-9a-fA-F]{64}", claimed):
        return claimed.upper()
    return None


class S3Bucket:
    """One S3 location with a lazily made, thread-safe boto3 client.

    Args:
        location: bucket and prefix.
        attempts: tries per request (boto3's standard retry mode): few for mirror reads,
            so a dead endpoint hands over to Civitai in seconds; more for uploads.
        connections: connection pool size (parallel uploads need one each).
        timeout: seconds to wait for a connection or for bytes.
    """

    def __init__(
        self,
        location: S3Location,
        *,
        attempts: int = 3,
        connections: int = 10,
        timeout: float = 30.0,
    ) -> None:
        require_s3_support()
        self.location = location
        self.attempts = attempts
        self.connections = connections
        self.timeout = timeout
        self._client: Any = None
        self._endpoint = "the default AWS endpoint"
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Bucket({str(self.location)!r})"

    # -- the client --

    def client(self) -> Any:
        """The boto3 client (made on first use; credentials are resolved by boto3).

        A bucket in another region than the configured one is handled by boto3: the
        first request is redirected there, and presigned URLs use the region it learnt.
        """
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        import boto3
        import botocore.config
        import botocore.exceptions

        config = botocore.config.Config(
            signature_version="s3v4",
            max_pool_connections=max(self.connections, 1),
            retries={"max_attempts": self.attempts, "mode": "standard"},
            connect_timeout=min(self.timeout, 10.0),
            read_timeout=self.timeout,
        )
        try:
            session = boto3.session.Session()
            client = session.client("s3", config=config)
        except botocore.exceptions.ProfileNotFound as exc:
            raise UsageError(
                f"AWS profile {exc.kwargs.get('profile')!r} is not in ~/.aws/config or "
                "~/.aws/credentials",
                hint="set AWS_PROFILE to a profile that exists, or unset it",
            ) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise UsageError(f"cannot set up S3 access: {type(exc).__name__}") from exc
        except ValueError as exc:  # e.g. a malformed AWS_ENDPOINT_URL
            # botocore's message quotes the endpoint as configured, user info and all;
            # `from None` keeps that original out of a --verbose traceback too.
            raise UsageError(
                f"cannot set up S3 access: {_without_userinfo(str(exc))}",
                hint="check AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3, or endpoint_url in "
                "the AWS profile)",
            ) from None
        self._endpoint = redact_url(str(client.meta.endpoint_url))
        return client

    # -- reads --

    def head(self, sha256: str) -> ObjectInfo | None:
        """Size and vouched SHA256 of the object for ``sha256``; ``None`` if there is none.

        Raises:
            AuthError: the credentials are missing or refused (exit 3).
            NetworkError: the endpoint cannot be reached (exit 5).
            CivitError: anything else the store answered.
        """
        try:
            head = self._call("head_object", sha256, ChecksumMode="ENABLED")
        except NotFoundError:
            return None
        return ObjectInfo(int(head.get("ContentLength", 0)), _object_sha256(head))

    def presigned_get(self, sha256: str, *, expires: int = PRESIGN_SECONDS) -> str:
        """A GET URL for the object that works without credentials until it expires.

        The URL carries a signature (and the access key id): hand it to the engine,
        never to a message, a log line or a report.
        """
        params = {"Bucket": self.location.bucket, "Key": self.location.key_for(sha256)}
        with self._translated(sha256):
            url: str = self.client().generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires
            )
        return url

    # -- uploads --

    def put(self, sha256: str, data: bytes) -> None:
        """Upload a whole object in one request; the server checks it against ``sha256``."""
        self._call(
            "put_object",
            sha256,
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=_b64(sha256),
            Metadata={"sha256": sha256.lower()},
        )

    def start_multipart(self, sha256: str) -> str:
        """Begin a multipart upload with per-part SHA256 checksums; returns its id."""
        answer = self._call(
            "create_multipart_upload",
            sha256,
            ChecksumAlgorithm="SHA256",
            Metadata={"sha256": sha256.lower()},
        )
        return str(answer["UploadId"])

    def upload_part(self, sha256: str, upload_id: str, number: int, data: bytes) -> UploadedPart:
        """Upload part ``number`` (from 1); the server checks it against its SHA256."""
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
        answer = self._call(
            "upload_part",
            sha256,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )
        return UploadedPart(number, str(answer["ETag"]), checksum)

    def complete_multipart(
        self, sha256: str, upload_id: str, parts: Sequence[UploadedPart]
    ) -> None:
        """Assemble the uploaded parts into the object."""
        ordered = sorted(parts, key=lambda part: part.number)
        self._call(
            "complete_multipart_upload",
            sha256,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": p.number, "ETag": p.etag, "ChecksumSHA256": p.checksum}
                    for p in ordered
                ]
            },
        )

    def abort_multipart(self, sha256: str, upload_id: str) -> None:
        """Drop an unfinished multipart upload (best effort: the caller is failing)."""
        with contextlib.suppress(CivitError):
            self._call("abort_multipart_upload", sha256, UploadId=upload_id)

    def _call(self, operation: str, sha256: str, **arguments: Any) -> Any:
        method = getattr(self.client(), operation)
        with self._translated(sha256):
            return method(
                Bucket=self.location.bucket, Key=self.location.key_for(sha256), **arguments
            )

    @contextlib.contextmanager
    def _translated(self, sha256: str) -> Iterator[None]:
        """Turn boto3/botocore failures about the object for ``sha256`` into CivitErrors."""
        import botocore.exceptions as boto_errors

        try:
            yield
        except (boto_errors.BotoCoreError, boto_errors.ClientError) as exc:
            raise self._translate(exc, self.location.url_for(sha256)) from exc

    # -- errors --

    def _translate(self, exc: BaseException, what: str) -> CivitError:
        """The :class:`CivitError` for a boto3/botocore failure about ``what``.

        Messages are built from the error code and the status alone: S3's error bodies
        may echo the access key id or the string that was signed.
        """
        import botocore.exceptions as boto_errors

        if isinstance(exc, boto_errors.NoCredentialsError):
            return AuthError(
                f"no AWS credentials found for {what}",
                hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
            )
        if isinstance(exc, boto_errors.PartialCredentialsError):
            return AuthError(f"incomplete AWS credentials for {what}", hint=CREDENTIALS_HINT)
        if isinstance(exc, boto_errors.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "?"))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            return _client_error(what, code, status)
        if isinstance(
            exc,
            (
                boto_errors.EndpointConnectionError,
                boto_errors.ConnectionClosedError,
                boto_errors.ConnectTimeoutError,
                boto_errors.ReadTimeoutError,
                boto_errors.ProxyConnectionError,
                boto_errors.SSLError,
            ),
        ):
            return NetworkError(
                f"cannot reach the S3 endpoint {self._endpoint} for {what} ({type(exc).__name__})",
                hint="check AWS_ENDPOINT_URL and the network",
            )
        return CivitError(f"S3 request for {what} failed ({type(exc).__name__})")


_DENIED_CODES = {
    "403",
    "AccessDenied",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidSecurity",
    "AllAccessDisabled",
}


def _client_error(what: str, code: str, status: int) -> CivitError:
    if code in ("404", "NoSuchKey", "NotFound"):
        return NotFoundError(f"{what}: no such object (HTTP 404)")
    if code == "NoSuchBucket":
        return NotFoundError(f"{what}: the bucket does not exist (NoSuchBucket)")
    if code in _DENIED_CODES or status in (401, 403):
        detail = code if not code.isdigit() else f"HTTP {code}"
        return AuthError(
            f"S3 refused the request for {what} ({detail}): wrong or missing credentials, "
            "or no permission",
            status=status or None,
            hint=CREDENTIALS_HINT,
        )
    if code in ("BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"):
        return IntegrityError(
            f"S3 rejected the upload of {what}: the bytes sent do not match their SHA256 ({code})"
        )
    if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
        return NetworkError(
            f"S3 failed for {what} ({code}, HTTP {status}) after retries", status=status or None
        )
    return CivitError(f"S3 refused the request for {what} ({code}, HTTP {status})")
