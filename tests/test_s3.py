"""The S3 adapter's own behaviour: what goes on the wire, multipart uploads, and error translation.

moto accepts wrong checksums and drops Object Lock settings given to multipart uploads, so
for those the tests check the request coldvault sends, recorded with botocore's event hooks.
"""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from conftest import CloudBucket, raw_s3_client

from coldvault.errors import IntegrityError, Locked, NotFound, PermissionDenied, TargetError, Transient
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import PutMode
from coldvault.storage.s3 import S3Store

pytestmark = pytest.mark.emulator

DATA = Handle(Kind.DATA, "ab" * 32)


class Wire:
    """Every request the client sends: operation name and headers."""

    def __init__(self, client: Any) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        client.meta.events.register("before-send.s3.*", self._record)

    def _record(self, request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        self.requests.append((operation, headers))

    def of(self, operation: str) -> list[dict[str, str]]:
        return [h for op, h in self.requests if op == operation]


def _client(bucket: CloudBucket) -> Any:
    return raw_s3_client(bucket.target["endpoint"], "eu-west-1")


def _store(bucket: CloudBucket, client: Any, **options: Any) -> S3Store:
    return S3Store(client, bucket.target["bucket"], name="aws-eu", **options)


def _sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_a_put_carries_its_checksum_the_lock_and_the_create_only_condition(s3_bucket: CloudBucket) -> None:
    client = _client(s3_bucket)
    wire = Wire(client)
    data = os.urandom(1000)
    until = datetime.now(UTC) + timedelta(days=3)
    _store(s3_bucket, client).put(DATA, data, retain_until=until, storage_class="GLACIER_IR")
    [headers] = wire.of("PutObject")
    assert headers["x-amz-checksum-sha256"] == _sha256(data)
    assert headers["if-none-match"] == "*"
    assert headers["x-amz-object-lock-mode"] == "COMPLIANCE"
    assert headers["x-amz-object-lock-retain-until-date"].startswith(until.strftime("%Y-%m-%dT%H:%M:%S"))
    assert headers["x-amz-storage-class"] == "GLACIER_IR"


def test_governance_mode_is_sent_when_configured(s3_bucket: CloudBucket) -> None:
    client = _client(s3_bucket)
    wire = Wire(client)
    _store(s3_bucket, client, lock_mode="governance").put(DATA, b"x", retain_until=datetime.now(UTC) + timedelta(1))
    assert wire.of("PutObject")[0]["x-amz-object-lock-mode"] == "GOVERNANCE"


def test_a_large_object_goes_up_in_parts_each_with_a_checksum(s3_bucket: CloudBucket) -> None:
    client = _client(s3_bucket)
    wire = Wire(client)
    data = os.urandom(11 << 20)
    until = datetime.now(UTC) + timedelta(days=1)
    store = _store(s3_bucket, client, part_size=5 << 20)
    store.put(DATA, data, retain_until=until, storage_class="DEEP_ARCHIVE")

    [create] = wire.of("CreateMultipartUpload")
    assert create["x-amz-object-lock-mode"] == "COMPLIANCE" and create["x-amz-storage-class"] == "DEEP_ARCHIVE"
    assert create["x-amz-checksum-algorithm"] == "SHA256"
    parts = wire.of("UploadPart")
    assert [p["x-amz-checksum-sha256"] for p in parts] == [
        _sha256(data[i : i + (5 << 20)]) for i in range(0, len(data), 5 << 20)
    ]
    assert wire.of("CompleteMultipartUpload")[0]["if-none-match"] == "*"
    store.warmup([DATA])
    assert store.get(DATA) == data


def test_a_failed_multipart_upload_is_aborted(s3_bucket: CloudBucket) -> None:
    client = _client(s3_bucket)
    calls = []

    def cut_second_part(**_: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionResetError("connection cut")  # what a dropped connection looks like to botocore

    client.meta.events.register("before-send.s3.UploadPart", cut_second_part)
    with pytest.raises((Transient, TargetError, ConnectionResetError)):
        _store(s3_bucket, client, part_size=5 << 20).put(DATA, os.urandom(11 << 20))
    assert client.list_multipart_uploads(Bucket=s3_bucket.target["bucket"]).get("Uploads", []) == []
    with pytest.raises(NotFound):
        _store(s3_bucket, client).head(DATA)


def test_a_damaged_upload_is_caught_from_the_echoed_checksum(s3_bucket: CloudBucket) -> None:
    """moto echoes what it was sent; a mock of the answer stands in for a store that damaged the bytes."""
    client = _client(s3_bucket)

    def damage(parsed: dict[str, Any], **_: Any) -> None:
        parsed["ChecksumSHA256"] = _sha256(b"something else")

    client.meta.events.register("after-call.s3.PutObject", damage)
    with pytest.raises(IntegrityError, match="arrived damaged"):
        _store(s3_bucket, client).put(DATA, b"payload")


def test_a_locked_version_cannot_be_deleted_even_behind_a_newer_version(s3_bucket: CloudBucket) -> None:
    client = _client(s3_bucket)
    store = _store(s3_bucket, client)
    store.put(DATA, b"kept", retain_until=datetime.now(UTC) + timedelta(days=1))
    client.put_object(Bucket=s3_bucket.target["bucket"], Key=DATA.path, Body=b"newer")  # an overwrite adds a version
    with pytest.raises(Locked):
        store.delete(DATA)
    versions = client.list_object_versions(Bucket=s3_bucket.target["bucket"])["Versions"]
    kept = [v for v in versions if client.get_object(Bucket=s3_bucket.target["bucket"], Key=DATA.path,
                                                     VersionId=v["VersionId"])["Body"].read() == b"kept"]  # fmt: skip
    assert len(kept) == 1


def test_delete_removes_every_version_when_unlocked(s3_bucket: CloudBucket) -> None:
    client = _client(s3_bucket)
    store = _store(s3_bucket, client)
    store.put(DATA, b"v1")
    client.delete_object(Bucket=s3_bucket.target["bucket"], Key=DATA.path)  # leaves a delete marker
    store.put(DATA, b"v1")
    store.delete(DATA)
    answer = client.list_object_versions(Bucket=s3_bucket.target["bucket"])
    assert answer.get("Versions", []) == [] and answer.get("DeleteMarkers", []) == []


def test_retain_lengthens_a_governance_lock_without_bypassing_it(s3_bucket: CloudBucket) -> None:
    """The object keeps the mode it was written with, though this store would write compliance."""
    client = _client(s3_bucket)
    wire = Wire(client)
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    _store(s3_bucket, client, lock_mode="governance").put(DATA, b"kept", retain_until=first)
    later = first + timedelta(days=2)
    info = _store(s3_bucket, client).retain(DATA, later)
    assert (info.retain_until, info.lock_mode) == (later, "governance")
    [request] = wire.of("PutObjectRetention")
    assert "x-amz-bypass-governance-retention" not in request
    stored = client.head_object(Bucket=s3_bucket.target["bucket"], Key=DATA.path)
    assert (stored["ObjectLockMode"], stored["ObjectLockRetainUntilDate"]) == ("GOVERNANCE", later)


def test_retain_to_an_earlier_date_sends_no_retention(s3_bucket: CloudBucket) -> None:
    """moto would accept a shorter date (S3 refuses it), so what matters is that none is sent."""
    client = _client(s3_bucket)
    wire = Wire(client)
    store = _store(s3_bucket, client)
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    store.put(DATA, b"kept", retain_until=until)
    for earlier in (until - timedelta(days=1), until):
        assert store.retain(DATA, earlier).retain_until == until
    assert wire.of("PutObjectRetention") == []
    assert store.head(DATA).retain_until == until


def test_retain_extends_the_current_version_written_over_a_locked_one(s3_bucket: CloudBucket) -> None:
    """Scrub repairs an object by writing it again: the new version is the one reads see, so it is the one extended."""
    client = _client(s3_bucket)
    store = _store(s3_bucket, client)
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    store.put(DATA, b"damaged", retain_until=first)
    store.put(DATA, b"repaired", mode=PutMode.OVERWRITE, retain_until=first)
    later = first + timedelta(days=2)
    store.retain(DATA, later)
    bucket = s3_bucket.target["bucket"]
    versions = client.list_object_versions(Bucket=bucket, Prefix=DATA.path)["Versions"]
    retained = {
        v["IsLatest"]: client.head_object(Bucket=bucket, Key=DATA.path, VersionId=v["VersionId"])[
            "ObjectLockRetainUntilDate"
        ]
        for v in versions
    }
    assert retained == {True: later, False: first}


# ---- error translation: botocore's Stubber answers as S3 would, where moto cannot be made to ------------


def _stubbed(code: str, status: int, headers: dict[str, str] | None = None) -> S3Store:
    client = boto3.client("s3", region_name="eu-west-1", aws_access_key_id="a", aws_secret_access_key="b")
    stubber = Stubber(client)
    stubber.add_client_error(
        "head_object", service_error_code=code, http_status_code=status, response_meta={"HTTPHeaders": headers or {}}
    )
    stubber.activate()
    return S3Store(client, "bucket", name="aws-eu")


def test_slow_down_is_transient_with_the_retry_after_it_asked_for() -> None:
    with pytest.raises(Transient) as raised:
        _stubbed("SlowDown", 503, {"retry-after": "7"}).head(DATA)
    assert raised.value.retry_after == 7.0


def test_access_denied_names_the_target_and_the_fix() -> None:
    with pytest.raises(PermissionDenied, match="aws-eu.*check the credentials"):
        _stubbed("AccessDenied", 403).head(DATA)


def test_a_bucket_in_another_region_says_which() -> None:
    with pytest.raises(TargetError, match="set region = 'us-east-2'"):
        _stubbed("PermanentRedirect", 301, {"x-amz-bucket-region": "us-east-2"}).head(DATA)


def test_repr_shows_no_credentials(s3_bucket: CloudBucket) -> None:
    store = s3_bucket.adapter()
    assert "test-secret" not in repr(store) and "AKIATEST" not in repr(store)
