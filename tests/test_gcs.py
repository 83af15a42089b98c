"""The GCS adapter on fake-gcs-server: what the contract suite cannot see from outside.

The emulator does not enforce retention, nor check the crc32c an upload carries, nor refuse
anything; where a test needs such an answer, a ``Wire`` (the requests session under the SDK)
plays it.  Everything else runs for real against the emulator.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import google_crc32c
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from coldvault.config.model import GCS_STORAGE_CLASSES, GcsTarget
from coldvault.emulators import Emulator, free_port
from coldvault.errors import (
    AlreadyExists,
    ConfigError,
    IntegrityError,
    Locked,
    NotFound,
    PermissionDenied,
    TargetError,
    Transient,
)
from coldvault.storage.gcs import GcsStore, connect
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import PutMode
from coldvault.storage.retry import RetriesExhausted, RetryPolicy

PART = 256 << 10  # the smallest chunk GCS takes, so a few hundred KiB already upload resumably


def name(i: int | str) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def crc32c(data: bytes) -> str:
    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()


@dataclass
class Sent:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


class Wire(requests.Session):
    """The HTTP session under the SDK: records each request and plays the answers the emulator cannot give."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Sent] = []
        self.answer: Callable[[Sent], requests.Response | None] = lambda sent: None
        self.damage_uploads = False
        self.damage_checksums = False

    def request(  # type: ignore[override]  # the SDK passes these four by name, the rest through
        self, method: str, url: str, data: Any = None, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        if self.damage_uploads and isinstance(data, bytes) and len(data) > 1000:
            middle = len(data) // 2  # well inside the object's bytes, clear of the multipart framing
            data = data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]
        sent = Sent(method, url, {k.lower(): v for k, v in (headers or {}).items()}, data or b"")
        self.sent.append(sent)
        canned = self.answer(sent)
        if canned is not None:
            return canned
        response = super().request(method, url, data=data, headers=headers, **kwargs)
        if self.damage_checksums and "X-Goog-Hash" in response.headers:
            response.headers["X-Goog-Hash"] = "crc32c=AAAAAA=="
        return response


def canned(sent: Sent, status: int, headers: dict[str, str] | None = None) -> requests.Response:
    """An answer to ``sent`` shaped like GCS's JSON errors."""
    response = requests.Response()
    response.request = requests.Request(sent.method, sent.url).prepare()
    response.url = sent.url
    response.status_code = status
    response.headers.update({"Content-Type": "application/json", **(headers or {})})
    response._content = json.dumps({"error": {"code": status, "message": f"HTTP {status}"}}).encode()
    return response


def client(endpoint: str, http: requests.Session | None = None) -> storage.Client:
    return storage.Client(
        project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}, _http=http
    )


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
def bucket(gcs_server: Emulator, bucket_name: str) -> storage.Bucket:
    return client(gcs_server.endpoint).create_bucket(bucket_name)


@pytest.fixture
def store(gcs_server: Emulator, bucket: storage.Bucket, wire: Wire) -> GcsStore:
    return GcsStore(client(gcs_server.endpoint, wire), bucket.name, name="cold", part_size=PART)


def target(bucket: str, **fields: object) -> GcsTarget:
    return GcsTarget(name="cold", type="gcs", bucket=bucket, **fields)


# ---- the verbs on the emulator ---------------------------------------------------------------


@pytest.mark.emulator
def test_put_get_head_list_delete(store: GcsStore) -> None:
    handle = Handle(Kind.SNAPSHOT, name(1))
    data = os.urandom(1234)
    info = store.put(handle, data)
    assert (info.handle, info.size, info.storage_class, info.retain_until) == (handle, 1234, "STANDARD", None)
    assert store.get(handle) == data
    assert store.head(handle) == info
    assert list(store.list(Kind.SNAPSHOT)) == [info]
    store.delete(handle)
    with pytest.raises(NotFound):
        store.head(handle)
    with pytest.raises(NotFound):
        store.delete(handle)


@pytest.mark.emulator
def test_create_only_and_overwrite(store: GcsStore) -> None:
    handle = Handle(Kind.CONFIG)
    store.put(handle, b"first")
    with pytest.raises(AlreadyExists, match="cold: could not store config: it already exists"):
        store.put(handle, b"second")
    store.put(handle, b"second", mode=PutMode.OVERWRITE)
    assert store.get(handle) == b"second"


@pytest.mark.emulator
@pytest.mark.emulator
def test_missing_objects_are_not_found(store: GcsStore) -> None:
    handle = Handle(Kind.INDEX, name("missing"))
    for read in (
        lambda: store.get(handle),
        lambda: store.get(handle, offset=10, length=10),
        lambda: store.get(handle, offset=10, length=0),
        lambda: store.head(handle),
        lambda: store.warmup_status([handle]),
        lambda: store.retain(handle, datetime.now(UTC) + timedelta(days=1)),
    ):
        with pytest.raises(NotFound, match=f"cold: {handle} does not exist"):
            read()


@pytest.mark.emulator
@pytest.mark.parametrize("lock_mode, retention_mode", [("compliance", "Locked"), ("governance", "Unlocked")])
def test_retention_and_storage_class_are_written_with_the_object(
    gcs_server: Emulator, bucket: storage.Bucket, lock_mode: str, retention_mode: str
) -> None:
    store = GcsStore(client(gcs_server.endpoint), bucket.name, lock_mode=lock_mode)
    handle = Handle(Kind.DATA, name(3))
    until = datetime(2040, 1, 2, 5, 4, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    info = store.put(handle, b"cold bytes", retain_until=until, storage_class="COLDLINE")
    assert store.head(handle) == info
    assert (info.retain_until, info.lock_mode, info.storage_class, info.archived) == (
        until,
        lock_mode,
        "COLDLINE",
        False,
    )
    assert info.retain_until is not None and info.retain_until.tzinfo == UTC
    stored = bucket.get_blob(handle.path)
    assert stored is not None and stored.retention.mode == retention_mode
    assert [i.retain_until for i in store.list(Kind.DATA)] == [until]


@pytest.mark.emulator
def test_objects_live_under_the_prefix(gcs_server: Emulator, bucket: storage.Bucket) -> None:
    prefixed = GcsStore(client(gcs_server.endpoint), bucket.name, prefix="prod/")
    bare = GcsStore(client(gcs_server.endpoint), bucket.name)
    handle = Handle(Kind.TREE, name(4))
    prefixed.put(handle, b"t")
    assert [b.name for b in bucket.list_blobs()] == [f"prod/{handle.path}"]
    assert [i.handle for i in prefixed.list(Kind.TREE)] == [handle]
    assert list(bare.list(Kind.TREE)) == []


@pytest.mark.emulator
def test_listing_pages_through_many_objects_and_skips_foreign_keys(
    store: GcsStore, bucket: storage.Bucket, wire: Wire
) -> None:
    names = [name(i) for i in range(1005)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: store.put(Handle(Kind.DATA, n), b"x"), names))
    for foreign in ("data/README", f"data/zz/{names[0]}", f"data/{names[0][:2]}/{names[0]}.tmp", "database"):
        bucket.blob(foreign).upload_from_string(b"not ours")
    store.put(Handle(Kind.INDEX, name("index")), b"i")
    wire.sent.clear()

    listed = list(store.list(Kind.DATA))
    assert [i.handle.name for i in listed] == sorted(names)
    assert all(i.handle.kind is Kind.DATA and i.size == 1 for i in listed)
    assert len([s for s in wire.sent if s.method == "GET"]) == 2  # 1000 + 5


@pytest.mark.emulator
def test_the_listing_asks_for_every_field_it_reads(store: GcsStore, wire: Wire) -> None:
    """fake-gcs-server answers every field whatever ``fields`` names; GCS answers only the fields named."""
    store.put(Handle(Kind.INDEX, name("listed")), b"i")
    wire.sent.clear()
    [info] = store.list(Kind.INDEX)
    # Every listing request sent names them: once in a loaded suite the SDK sent more than the one
    # request (which, the failure did not say; 5ac2a70 saw a GET repeated the same way).
    listings = [sent for sent in wire.sent if sent.method == "GET" and urlsplit(sent.url).path.endswith("/o")]
    assert listings
    for listing in listings:
        items = re.fullmatch(r"items\((.*)\),nextPageToken", parse_qs(urlsplit(listing.url).query)["fields"][0])
        assert items is not None
        assert set(items.group(1).split(",")) == {"name", "size", "storageClass", "retention", "timeCreated"}
    assert info.created is not None


# ---- extending retention ---------------------------------------------------------------------

FIRST = datetime(2040, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER = FIRST + timedelta(days=30)


@pytest.mark.emulator
@pytest.mark.parametrize("written_with, sent_mode", [("governance", "Unlocked"), (None, "Locked")])
def test_retain_patches_the_later_date_in_the_objects_own_mode(
    gcs_server: Emulator, bucket: storage.Bucket, store: GcsStore, wire: Wire, written_with: str | None, sent_mode: str
) -> None:
    """An object keeps the mode it was written with; one without retention gets the store's (compliance)."""
    handle = Handle(Kind.DATA, name(20))
    if written_with is None:
        store.put(handle, b"kept")
    else:
        GcsStore(client(gcs_server.endpoint), bucket.name, lock_mode=written_with).put(
            handle, b"kept", retain_until=FIRST
        )
    wire.sent.clear()
    info = store.retain(handle, LATER)

    [patch] = [s for s in wire.sent if s.method == "PATCH"]
    retention = json.loads(patch.body)["retention"]
    assert retention["mode"] == sent_mode and datetime.fromisoformat(retention["retainUntilTime"]) == LATER
    stored = bucket.get_blob(handle.path)
    assert stored is not None and f"generation={stored.generation}&" in patch.url
    assert "overrideUnlockedRetention" not in patch.url  # needed only to shorten or to lock, never to lengthen
    assert (stored.retention.mode, stored.retention.retain_until_time) == (sent_mode, LATER)
    assert store.head(handle) == info


@pytest.mark.emulator
def test_retain_to_an_earlier_date_sends_no_patch(store: GcsStore, wire: Wire) -> None:
    handle = Handle(Kind.DATA, name(21))
    store.put(handle, b"kept", retain_until=LATER)
    wire.sent.clear()
    for earlier in (FIRST, LATER):
        assert store.retain(handle, earlier).retain_until == LATER
    # Only reads (one per call; the SDK may repeat one the loaded emulator dropped), never a PATCH.
    assert {s.method for s in wire.sent} == {"GET"}
    assert store.head(handle).retain_until == LATER


@pytest.mark.emulator
def test_a_refused_extension_is_permission_denied(store: GcsStore, wire: Wire) -> None:
    """Mock only the 403, GCS's answer to credentials without storage.objects.update: the emulator grants all."""
    handle = Handle(Kind.DATA, name(22))
    store.put(handle, b"kept", retain_until=FIRST)
    wire.answer = lambda sent: canned(sent, 403) if sent.method == "PATCH" else None
    with pytest.raises(PermissionDenied, match=f"cold: could not extend the lock of {handle}: access denied"):
        store.retain(handle, LATER)


# ---- checksums and resumable uploads ---------------------------------------------------------


@pytest.mark.emulator
def test_a_small_upload_sends_its_crc32c(store: GcsStore, wire: Wire) -> None:
    data = os.urandom(1000)
    store.put(Handle(Kind.KEY, name(5)), data)
    (upload,) = [s for s in wire.sent if "uploadType=multipart" in s.url]
    metadata = json.loads(upload.body.split(b"\r\n\r\n", 1)[1].split(b"\r\n", 1)[0])
    assert metadata["crc32c"] == crc32c(data)


@pytest.mark.emulator
@pytest.mark.parametrize("size", [PART * 2 + 1000, PART * 2])
def test_a_large_upload_goes_resumably_in_parts_with_its_crc32c(store: GcsStore, wire: Wire, size: int) -> None:
    data = bytearray(os.urandom(size))  # callers hand over reusable buffers, not only bytes
    handle = Handle(Kind.DATA, name(6))
    assert store.put(handle, data).size == size

    (start,) = [s for s in wire.sent if s.method == "POST"]
    assert "uploadType=resumable" in start.url and "ifGenerationMatch=0" in start.url
    chunks = [s for s in wire.sent if s.method == "PUT"]
    assert all(len(c.body) <= PART for c in chunks) and sum(len(c.body) for c in chunks) == size
    assert chunks[-1].headers["x-goog-hash"] == f"crc32c={crc32c(bytes(data))}"
    assert store.get(handle) == data


@pytest.mark.emulator
@pytest.mark.xfail(strict=True, reason="fake-gcs-server ignores ifGenerationMatch on resumable uploads; GCS honours it")
def test_a_large_upload_is_create_only_too(store: GcsStore) -> None:
    handle = Handle(Kind.DATA, name(7))
    store.put(handle, os.urandom(PART + 1))
    with pytest.raises(AlreadyExists):
        store.put(handle, os.urandom(PART + 1))


@pytest.mark.emulator
@pytest.mark.parametrize("size", [64 << 10, PART * 2 + 1000])
def test_bytes_damaged_on_the_way_up_are_an_integrity_error(store: GcsStore, wire: Wire, size: int) -> None:
    """GCS itself refuses such an upload (it checks the crc32c sent along); the emulator stores it, so the
    adapter's own comparison with the crc32c GCS reports is what must catch it."""
    wire.damage_uploads = True
    with pytest.raises(IntegrityError, match="arrived damaged"):
        store.put(Handle(Kind.DATA, name(8)), os.urandom(size))


@pytest.mark.emulator
def test_each_request_of_a_resumable_upload_is_retried_alone(gcs_server: Emulator, bucket: storage.Bucket) -> None:
    """The start and each chunk go again on their own after a busy answer or a dropped connection."""
    wire = Wire()
    slept: list[float] = []
    policy = RetryPolicy(3, sleep=slept.append)
    store = GcsStore(client(gcs_server.endpoint, wire), bucket.name, name="cold", part_size=PART, retry=policy)
    data = os.urandom(PART * 2 + 1000)
    failures = {"start": 503, f"bytes {PART}-": 429, f"bytes {2 * PART}-": 0}  # once each; 0: the connection is cut

    def answer(sent: Sent) -> requests.Response | None:
        request = "start" if sent.method == "POST" else sent.headers.get("content-range", "").split("-")[0] + "-"
        failure = failures.pop(request, None)
        if failure == 0:
            raise requests.exceptions.ConnectionError("connection reset by peer")
        return None if failure is None else canned(sent, failure, {"Retry-After": "2"})

    wire.answer = answer
    handle = Handle(Kind.DATA, name(9))
    assert store.put(handle, data).size == len(data)
    assert failures == {} and len(slept) == 3 and sum(s >= 2 for s in slept) == 2  # Retry-After honoured
    assert [s.method for s in wire.sent if "/upload/" in s.url] == ["POST", "POST", "PUT", "PUT", "PUT", "PUT", "PUT"]
    chunks = [s.body for s in wire.sent if s.method == "PUT"]
    assert chunks == [data[:PART], data[PART : 2 * PART], data[PART : 2 * PART], data[2 * PART :], data[2 * PART :]]
    assert store.get(handle) == data


@pytest.mark.emulator
def test_a_chunk_busy_every_time_is_given_up_after_its_retries(
    gcs_server: Emulator, bucket: storage.Bucket, wire: Wire
) -> None:
    policy = RetryPolicy(2, sleep=lambda _: None)
    store = GcsStore(client(gcs_server.endpoint, wire), bucket.name, name="cold", part_size=PART, retry=policy)
    wire.answer = lambda sent: canned(sent, 503) if sent.method == "PUT" and len(sent.body) else None
    with pytest.raises(RetriesExhausted, match="HTTP 503"):
        store.put(Handle(Kind.DATA, name(10)), os.urandom(PART * 2))
    assert [s.method for s in wire.sent if "/upload/" in s.url] == ["POST", "PUT", "PUT", "PUT"]


@pytest.mark.emulator
def test_damage_under_the_retry_policy_is_an_integrity_error_and_not_kept(
    gcs_server: Emulator, bucket: storage.Bucket, wire: Wire
) -> None:
    """Not retried, and the SDK's own handling of a crc32c mismatch (it deletes what arrived) still runs."""
    policy = RetryPolicy(2, sleep=lambda _: pytest.fail("slept"))
    store = GcsStore(client(gcs_server.endpoint, wire), bucket.name, name="cold", part_size=PART, retry=policy)
    wire.damage_uploads = True
    handle = Handle(Kind.DATA, name(11))
    with pytest.raises(IntegrityError, match="arrived damaged"):
        store.put(handle, os.urandom(PART * 2 + 1000))
    assert "DELETE" in [s.method for s in wire.sent]
    with pytest.raises(NotFound):
        store.head(handle)


@pytest.mark.emulator
def test_a_full_read_checks_the_crc32c_and_a_ranged_one_cannot(store: GcsStore, wire: Wire) -> None:
    """The emulator cannot rot stored bytes; a wrong checksum header on the answer looks the same to a reader."""
    handle = Handle(Kind.DATA, name(9))
    data = os.urandom(5000)
    store.put(handle, data)
    wire.damage_checksums = True
    with pytest.raises(IntegrityError, match=f"cold: could not read {handle}: it arrived damaged"):
        store.get(handle)
    assert store.get(handle, offset=10, length=100) == data[10:110]


# ---- capabilities and the bucket -------------------------------------------------------------


@pytest.mark.emulator
def test_capabilities_of_a_bucket_without_retention(store: GcsStore) -> None:
    capabilities = store.capabilities
    assert not capabilities.object_lock
    assert not capabilities.needs_warmup
    assert capabilities.storage_classes == GCS_STORAGE_CLASSES
    handle = Handle(Kind.DATA, name(10))
    store.put(handle, b"archived, yet readable", storage_class="ARCHIVE")
    store.warmup([handle])
    assert store.warmup_status([handle]) == {handle: True}
    assert store.get(handle) == b"archived, yet readable"


@pytest.mark.emulator
def test_a_missing_bucket_is_a_target_error_that_says_to_create_it(gcs_server: Emulator, bucket_name: str) -> None:
    store = connect(target(bucket_name, endpoint=gcs_server.endpoint))
    for action in (
        lambda: store.capabilities,
        lambda: store.put(Handle(Kind.CONFIG), b"{}"),
        lambda: list(store.list(Kind.SNAPSHOT)),
    ):
        with pytest.raises(TargetError, match=f"bucket '{bucket_name}' does not exist; create it") as caught:
            action()
        assert type(caught.value) is TargetError


@pytest.mark.emulator
def test_the_region_must_match_the_bucket(gcs_server: Emulator, bucket: storage.Bucket) -> None:
    assert bucket.location == "US-CENTRAL1"
    wrong = connect(target(bucket.name, endpoint=gcs_server.endpoint, region="europe-west1"))
    with pytest.raises(TargetError, match="is in US-CENTRAL1, not europe-west1; set region = 'us-central1'"):
        _ = wrong.capabilities
    assert connect(target(bucket.name, endpoint=gcs_server.endpoint, region="us-central1")).capabilities


# ---- answers the emulator never gives --------------------------------------------------------


@pytest.mark.emulator
@pytest.mark.parametrize("method", ["DELETE", "POST"])
def test_a_refusal_of_a_retained_object_is_locked(store: GcsStore, wire: Wire, method: str) -> None:
    """The emulator keeps retention but never enforces it; GCS then answers 403, which the Wire plays."""
    handle = Handle(Kind.DATA, name(11))
    store.put(handle, b"kept", retain_until=datetime.now(UTC) + timedelta(days=1))
    wire.answer = lambda sent: canned(sent, 403) if sent.method == method else None
    with pytest.raises(Locked, match=f"cold: cannot (delete|overwrite) {handle}: locked until"):
        if method == "DELETE":
            store.delete(handle)
        else:
            store.put(handle, b"new", mode=PutMode.OVERWRITE)


@pytest.mark.emulator
def test_a_refusal_of_an_object_without_retention_is_permission_denied(store: GcsStore, wire: Wire) -> None:
    """Mock only the 403 itself: the emulator grants everything."""
    handle = Handle(Kind.DATA, name(12))
    store.put(handle, b"free", retain_until=datetime.now(UTC) - timedelta(seconds=1))
    wire.answer = lambda sent: canned(sent, 403) if sent.method == "DELETE" else None
    with pytest.raises(PermissionDenied, match="access denied .HTTP 403.; check the credentials"):
        store.delete(handle)


@pytest.mark.emulator
@pytest.mark.parametrize("status", [429, 503])
def test_a_busy_answer_is_transient_with_its_retry_after(store: GcsStore, wire: Wire, status: int) -> None:
    """The emulator is never busy; the Wire answers as an overloaded GCS does."""
    wire.answer = lambda sent: canned(sent, status, {"Retry-After": "7"})
    with pytest.raises(Transient, match=f"HTTP {status}") as caught:
        store.head(Handle(Kind.CONFIG))
    assert caught.value.retry_after == 7.0


def test_an_unreachable_endpoint_is_transient() -> None:
    store = connect(target("cv-nowhere", endpoint=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(Transient, match="cold: could not look up config: ") as caught:
        store.head(Handle(Kind.CONFIG))
    assert "\n" not in str(caught.value)


# ---- connect ---------------------------------------------------------------------------------


@pytest.mark.emulator
def test_connect_to_an_endpoint_without_credentials(gcs_server: Emulator, bucket: storage.Bucket) -> None:
    store = connect(target(bucket.name, endpoint=gcs_server.endpoint, prefix="p/", lock={"mode": "governance"}))
    handle = Handle(Kind.KEY, name(13))
    info = store.put(handle, b"k", retain_until=datetime.now(UTC) + timedelta(days=1))
    assert info.lock_mode == "governance"
    assert bucket.get_blob(f"p/{handle.path}") is not None


def test_connect_with_a_service_account_key_keeps_it_out_of_repr(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    account = {
        "type": "service_account",
        "client_email": "backup@example.iam.gserviceaccount.com",
        "private_key": pem,
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path / "gcs.json"
    path.write_text(json.dumps(account))
    store = connect(target("cv-bucket", credentials_file=path))
    assert repr(store) == "GcsStore('cold', bucket='cv-bucket')"


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"client_email": "a@b"}'])
def test_a_credentials_file_that_is_no_service_account_key_is_a_config_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "gcs.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=f"{path}: expected a service-account key .* of target cold") as caught:
        connect(target("cv-bucket", credentials_file=path))
    assert "\n" not in str(caught.value)


def test_no_default_credentials_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="target cold: no Google Cloud credentials found"):
        connect(target("cv-bucket"))
