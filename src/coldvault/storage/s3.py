"""Amazon S3 (and S3-compatible stores) behind the Store protocol, through boto3.

Translation only: retries, concurrency limits, lock and tier policy are wrappers, except that
the parts of a multipart upload are each retried here, with the retry wrapper's policy.
Specifics worth knowing:
- Create-only is ``If-None-Match: *`` on PutObject and CompleteMultipartUpload.
- Retention is written with the object (Object Lock headers); ``retain`` only ever lengthens it
  afterwards (PutObjectRetention, never with BypassGovernanceRetention).
- Buckets with Object Lock are versioned, so deleting a key would only add a delete
  marker; ``delete`` removes the versions themselves, which the lock refuses until
  retention ends.
- SDK retries are off: the retry wrapper owns retrying, with one policy for every cloud; given
  that policy (``retry``), UploadPart is retried alone, so a throttled part does not send every
  part already stored again.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config as BotoConfig

from coldvault.config import read_secret_file
from coldvault.config.model import S3_STORAGE_CLASSES, S3Target
from coldvault.errors import (
    AlreadyExists,
    Archived,
    ConfigError,
    IntegrityError,
    Locked,
    NotFound,
    PermissionDenied,
    TargetError,
    Transient,
)
from coldvault.storage.cloud import ObjectKeys, ViewReader, lengthened, one_line, parts, seconds, utc
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import BytesLike, Capabilities, ObjectInfo, PutMode
from coldvault.storage.retry import SEND_ONCE, RetryPolicy

NEEDS_RESTORE = frozenset({"GLACIER", "DEEP_ARCHIVE"})  # GLACIER_IR reads at once
_MISSING = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchVersion"})
_DENIED = frozenset(
    {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "AllAccessDisabled"}
)
_BUSY = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling", "ThrottlingException",
     "RequestLimitExceeded", "TooManyRequests", "500", "502", "503", "504", "429", "ConditionalRequestConflict"}
)  # fmt: skip
_WRONG_REGION = frozenset(
    {"PermanentRedirect", "AuthorizationHeaderMalformed", "301", "IllegalLocationConstraintException"}
)
_NETWORK = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.HTTPClientError,
)
RESTORE_DAYS = 7  # how long a warmed-up copy stays readable: long enough for a slow restore to finish


class S3Store:
    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        name: str = "s3",
        prefix: str = "",
        lock_mode: str = "compliance",
        part_size: int = 16 << 20,
        restore_tier: str = "Standard",
        retry: RetryPolicy = SEND_ONCE,
    ) -> None:
        """``retry`` is for each part of a multipart upload; every other request is sent once."""
        self._client = client
        self._bucket = bucket
        self._name = name
        self._keys = ObjectKeys(prefix)
        self._lock_mode = lock_mode.upper()
        self._part_size = part_size
        self._restore_tier = restore_tier
        self._retry = retry

    def __repr__(self) -> str:
        return f"S3Store({self._name!r}, bucket={self._bucket!r})"

    @property
    def name(self) -> str:
        return self._name

    @cached_property
    def capabilities(self) -> Capabilities:
        """Asks the bucket once; this is also where a missing bucket or bad credentials first show."""
        try:
            with self._errors("check the bucket"):
                config = self._client.get_object_lock_configuration(Bucket=self._bucket)
            lock = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
        except _NoLockConfiguration:
            lock = False
        return Capabilities(object_lock=lock, storage_classes=S3_STORAGE_CLASSES, needs_warmup=True)

    def put(
        self,
        handle: Handle,
        data: BytesLike,
        *,
        mode: PutMode = PutMode.CREATE,
        retain_until: datetime | None = None,
        storage_class: str | None = None,
    ) -> ObjectInfo:
        options: dict[str, Any] = {}
        if retain_until is not None:
            options.update(ObjectLockMode=self._lock_mode, ObjectLockRetainUntilDate=retain_until)
        if storage_class is not None:
            options["StorageClass"] = storage_class
        condition = {"IfNoneMatch": "*"} if mode is PutMode.CREATE else {}
        key = self._keys.key(handle)
        with self._errors(f"store {handle}", handle):
            if len(data) > self._part_size:
                self._put_in_parts(key, data, options, condition, handle)
            else:
                checksum = _sha256(data)
                with ViewReader(data) as body:
                    answer = self._client.put_object(
                        Bucket=self._bucket,
                        Key=key,
                        Body=body,
                        ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=checksum,
                        **options,
                        **condition,
                    )
                self._confirm(answer.get("ChecksumSHA256"), checksum, handle)
        return ObjectInfo(
            handle,
            len(data),
            retain_until=retain_until,
            lock_mode=self._lock_mode.lower() if retain_until else None,
            storage_class=storage_class or "STANDARD",
            archived=storage_class in NEEDS_RESTORE,
        )

    def get(self, handle: Handle, *, offset: int = 0, length: int | None = None) -> bytes:
        if length == 0:
            self.head(handle)
            return b""
        options: dict[str, Any] = {"ChecksumMode": "ENABLED"}  # botocore then checks the whole-object checksum
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            options = {"Range": f"bytes={offset}-{end}"}
        with self._errors(f"read {handle}", handle):
            try:
                answer = self._client.get_object(Bucket=self._bucket, Key=self._keys.key(handle), **options)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) != "InvalidRange":
                    raise
                self.head(handle)  # a range past the end of an existing object is empty, as in a file
                return b""
            return answer["Body"].read()

    def head(self, handle: Handle) -> ObjectInfo:
        return self._info(handle, self._head(handle))

    def list(self, kind: Kind) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors(f"list {kind.value}"):
            for page in paginator.paginate(Bucket=self._bucket, Prefix=self._keys.folder(kind)):
                for item in page.get("Contents", []):
                    handle = self._keys.handle(item["Key"], kind)
                    if handle is not None:
                        storage_class = item.get("StorageClass") or "STANDARD"
                        yield ObjectInfo(
                            handle,
                            item["Size"],
                            storage_class=storage_class,
                            archived=storage_class in NEEDS_RESTORE,
                            created=utc(item["LastModified"]),
                        )

    def delete(self, handle: Handle) -> None:
        """Remove every version of the object, so nothing lingers behind a delete marker."""
        key = self._keys.key(handle)
        with self._errors(f"delete {handle}", handle):
            answer = self._client.list_object_versions(Bucket=self._bucket, Prefix=key)
            versions = [v["VersionId"] for v in answer.get("Versions", []) if v["Key"] == key]
            markers = [m["VersionId"] for m in answer.get("DeleteMarkers", []) if m["Key"] == key]
            if not versions:
                raise NotFound(f"{self._name}: {handle} does not exist")
            for version in versions:
                self._delete_version(handle, key, version)
            for marker in markers:
                self._client.delete_object(Bucket=self._bucket, Key=key, VersionId=marker)

    def retain(self, handle: Handle, until: datetime) -> ObjectInfo:
        answer = self._head(handle)
        current = self._info(handle, answer)
        wanted = lengthened(current, until, self._lock_mode.lower())
        if wanted is None:
            return current
        # The version just looked at, the current one: should scrub write a newer version meanwhile, that
        # one carries its own retention, and the retention compared here is never shortened.
        version = {"VersionId": answer["VersionId"]} if answer.get("VersionId") else {}
        with self._errors(f"extend the lock of {handle}", handle):
            self._client.put_object_retention(
                Bucket=self._bucket,
                Key=self._keys.key(handle),
                Retention={"Mode": wanted.lock_mode.upper(), "RetainUntilDate": wanted.retain_until},
                **version,
            )
        return wanted

    def warmup(self, handles: Iterable[Handle]) -> None:
        request = {"Days": RESTORE_DAYS, "GlacierJobParameters": {"Tier": self._restore_tier}}
        for handle in handles:
            with self._errors(f"warm up {handle}", handle):
                try:
                    self._client.restore_object(Bucket=self._bucket, Key=self._keys.key(handle), RestoreRequest=request)
                except botocore.exceptions.ClientError as exc:
                    # Already asked for, or not archived at all: both mean there is nothing to start.
                    if _code(exc) not in ("RestoreAlreadyInProgress", "InvalidObjectState", "NoSuchKey", "404"):
                        raise

    def warmup_status(self, handles: Iterable[Handle]) -> dict[Handle, bool]:
        status = {}
        for handle in handles:
            answer = self._head(handle)
            archived = (answer.get("StorageClass") or "STANDARD") in NEEDS_RESTORE
            status[handle] = not archived or 'ongoing-request="false"' in (answer.get("Restore") or "")
        return status

    def _head(self, handle: Handle) -> dict[str, Any]:
        with self._errors(f"look up {handle}", handle):
            return self._client.head_object(Bucket=self._bucket, Key=self._keys.key(handle))

    def _info(self, handle: Handle, answer: dict[str, Any]) -> ObjectInfo:
        """The ObjectInfo of a HeadObject answer."""
        storage_class = answer.get("StorageClass") or "STANDARD"
        retain_until = answer.get("ObjectLockRetainUntilDate")
        mode = answer.get("ObjectLockMode")
        return ObjectInfo(
            handle,
            answer["ContentLength"],
            retain_until=utc(retain_until) if retain_until else None,
            lock_mode=mode.lower() if mode else None,
            storage_class=storage_class,
            archived=storage_class in NEEDS_RESTORE,
            created=utc(answer["LastModified"]),
        )

    def _put_in_parts(
        self, key: str, data: BytesLike, options: dict[str, Any], condition: dict[str, str], handle: Handle
    ) -> None:
        upload = self._client.create_multipart_upload(
            Bucket=self._bucket, Key=key, ChecksumAlgorithm="SHA256", **options
        )["UploadId"]
        try:
            done = [
                self._retry.call(self._put_part, key, upload, number, part, handle)
                for number, part in enumerate(parts(data, self._part_size), start=1)
            ]
            self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": done}, **condition
            )
        except BaseException:
            # Parts of an unfinished upload are billed until aborted; a failed abort is left to the
            # bucket's lifecycle rule (OPERATIONS.md), so the original error is what the caller sees.
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload)
            raise

    def _put_part(self, key: str, upload: str, number: int, part: memoryview, handle: Handle) -> dict[str, Any]:
        """One UploadPart, its errors translated so that the retry policy sees what is Transient; sent
        again, a part replaces the one of the same number."""
        checksum = _sha256(part)
        with self._errors(f"store {handle}", handle), ViewReader(part) as body:
            answer = self._client.upload_part(
                Bucket=self._bucket, Key=key, UploadId=upload, PartNumber=number, Body=body, ChecksumSHA256=checksum
            )
        self._confirm(answer.get("ChecksumSHA256"), checksum, handle)
        return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}

    def _delete_version(self, handle: Handle, key: str, version: str) -> None:
        try:
            self._client.delete_object(Bucket=self._bucket, Key=key, VersionId=version)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) not in _DENIED:
                raise
            until = self._client.head_object(Bucket=self._bucket, Key=key, VersionId=version).get(
                "ObjectLockRetainUntilDate"
            )
            if until is not None and utc(until) > datetime.now(UTC):
                raise Locked(f"{self._name}: cannot delete {handle}: locked until {utc(until).isoformat()}") from None
            raise

    def _confirm(self, echoed: str | None, sent: str, handle: Handle) -> None:
        if echoed is not None and echoed != sent:
            raise IntegrityError(f"{self._name}: {handle} arrived damaged (checksum {echoed}, sent {sent})")

    @contextlib.contextmanager
    def _errors(self, action: str, handle: Handle | None = None) -> Iterator[None]:
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            raise self._translate(exc, action, handle) from None
        except _NETWORK as exc:
            raise Transient(f"{self._name}: could not {action}: {one_line(exc)}") from None
        except botocore.exceptions.FlexibleChecksumError:
            raise IntegrityError(f"{self._name}: {handle} arrived damaged (checksum mismatch)") from None
        except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError):
            raise ConfigError(
                f"target {self._name}: no AWS credentials found; set credentials_file or configure the AWS SDK"
            ) from None

    def _translate(self, exc: botocore.exceptions.ClientError, action: str, handle: Handle | None) -> Exception:
        code = _code(exc)
        message = exc.response.get("Error", {}).get("Message") or code
        where = f"{self._name}: could not {action}"
        if code == "NoSuchBucket":
            return TargetError(f"{where}: bucket {self._bucket!r} does not exist; create it (see docs/OPERATIONS.md)")
        if code == "ObjectLockConfigurationNotFoundError":
            return _NoLockConfiguration(message)
        if code in _MISSING:
            return NotFound(f"{self._name}: {handle or 'the bucket ' + repr(self._bucket)} does not exist")
        if code == "PreconditionFailed":
            return AlreadyExists(f"{self._name}: {handle} already exists")
        if code == "InvalidObjectState":
            return Archived(f"{self._name}: {handle} is in archive storage; it must be warmed up first")
        if code in _DENIED:
            return PermissionDenied(f"{where}: access denied ({code}); check the credentials and the bucket policy")
        if code in _WRONG_REGION:
            region = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
            hint = f"set region = {region!r}" if region else "check 'region'"
            return TargetError(f"{where}: bucket {self._bucket!r} is in another region; {hint}")
        if code in _BUSY:
            retry_after = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("retry-after")
            return Transient(f"{where}: {code}: {message}", retry_after=seconds(retry_after))
        return TargetError(f"{where}: {code}: {one_line(message)}")


class _NoLockConfiguration(Exception):
    """The bucket exists but has no Object Lock; only ``capabilities`` asks, and it catches this."""


def connect(target: S3Target, *, retry: RetryPolicy = SEND_ONCE) -> S3Store:
    """The adapter for a target; ``retry`` is the policy each part of a multipart upload is retried with."""
    session = boto3.session.Session(**_credentials(target))
    client = session.client(
        "s3",
        region_name=target.region,
        endpoint_url=target.endpoint,
        config=BotoConfig(
            retries={"total_max_attempts": 1},
            connect_timeout=10,
            read_timeout=120,
            max_pool_connections=max(10, 2 * target.max_in_flight),
            request_checksum_calculation="when_required",
            response_checksum_validation="when_supported",
            s3={"addressing_style": "path"} if target.endpoint else None,
        ),
    )
    return S3Store(
        client,
        target.bucket,
        name=target.name,
        prefix=target.prefix,
        lock_mode=target.lock_mode,
        part_size=target.part_size,
        restore_tier=target.restore_tier,
        retry=retry,
    )


def _credentials(target: S3Target) -> dict[str, str]:
    """A JSON file with the key pair, else the SDK's own chain (environment, profile, instance role)."""
    if target.credentials_file is None:
        return {}
    raw = read_secret_file(target.credentials_file, what=f"credentials of target {target.name}").reveal()
    try:
        fields = json.loads(raw)
        pairs = {
            "aws_access_key_id": fields.get("access_key_id") or fields.get("AccessKeyId"),
            "aws_secret_access_key": fields.get("secret_access_key") or fields.get("SecretAccessKey"),
        }
        token = fields.get("session_token") or fields.get("SessionToken")
    except (ValueError, AttributeError):
        pairs, token = {"aws_access_key_id": None}, None
    if not all(isinstance(v, str) and v for v in pairs.values()):
        raise ConfigError(
            f"{target.credentials_file}: expected JSON with access_key_id and secret_access_key"
            f" (credentials of target {target.name})"
        )
    return {**pairs, "aws_session_token": token} if token else pairs


def _sha256(data: BytesLike) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _code(exc: botocore.exceptions.ClientError) -> str:
    error = exc.response.get("Error", {})
    return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
