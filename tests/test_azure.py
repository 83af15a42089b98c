"""The Azure adapter: its behaviour on Azurite, and the service answers Azurite cannot give, from a canned server."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import ContainerClient

from coldvault.config.model import AzureTarget
from coldvault.emulators import AZURITE_ACCOUNT, AZURITE_KEY, Emulator, azurite_connection_string, free_port
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
from coldvault.storage.azure import CONNECTION_STRING_VARIABLE, AzureStore, connect
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import PutMode

emulator = pytest.mark.emulator


def name(i: int | str) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@dataclass
class Wire:
    """Every request the SDK sends, as (method, url, headers): what Azurite accepts but ignores is checked here."""

    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def record(self, pipeline_request: Any) -> None:
        request = pipeline_request.http_request
        self.requests.append((request.method, request.url, dict(request.headers)))

    def sent(self, query: str) -> list[dict[str, str]]:
        """The headers of the requests whose URL contains ``query`` (``comp=block``, ``comp=blocklist``)."""
        return [headers for _, url, headers in self.requests if query in url]

    def uploads(self) -> list[dict[str, str]]:
        """The headers of every Put Blob: one-request uploads."""
        return [headers for method, url, headers in self.requests if method == "PUT" and "?" not in url]


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
def container(azurite_server: Emulator, bucket_name: str, wire: Wire) -> ContainerClient:
    client = ContainerClient.from_connection_string(
        azurite_connection_string(azurite_server.endpoint), bucket_name, retry_total=0, raw_request_hook=wire.record
    )
    client.create_container()
    return client


@pytest.fixture
def store(container: ContainerClient) -> AzureStore:
    return AzureStore(container, name="vault", prefix="prod/", part_size=1000)


def target(container: str, **fields: Any) -> AzureTarget:
    return AzureTarget(name="vault", type="azure", container=container, **fields)


# ---- the verbs on Azurite ----------------------------------------------------------------------


@emulator
@pytest.mark.parametrize("size", [0, 10, 2500], ids=["empty", "one-request", "staged-blocks"])
def test_put_get_head_list_delete(store: AzureStore, container: ContainerClient, size: int) -> None:
    handle = Handle(Kind.DATA, name(size))
    data = os.urandom(size)
    info = store.put(handle, data)
    assert (info.handle, info.size, info.lock_mode) == (handle, size, None)
    assert container.get_blob_client(f"prod/{handle.path}").exists()  # under the prefix
    assert store.get(handle) == data
    head = store.head(handle)
    assert (head.size, head.storage_class, head.archived, head.retain_until) == (size, "Hot", False, None)
    assert [i.handle for i in store.list(Kind.DATA)] == [handle]
    store.delete(handle)
    for verb in (store.get, store.head, store.delete, lambda h: store.retain(h, datetime.now(UTC))):
        with pytest.raises(NotFound):
            verb(handle)
    assert list(store.list(Kind.DATA)) == []


@emulator
@pytest.mark.parametrize("size", [10, 2500], ids=["one-request", "staged-blocks"])
def test_create_only_refuses_to_replace_and_overwrite_replaces(store: AzureStore, size: int) -> None:
    handle = Handle(Kind.CONFIG)
    first, second = os.urandom(size), os.urandom(size + 1)
    store.put(handle, first)
    with pytest.raises(AlreadyExists):
        store.put(handle, second)
    assert store.get(handle) == first
    store.put(handle, second, mode=PutMode.OVERWRITE)
    assert store.get(handle) == second


@emulator
@pytest.mark.parametrize("offset, length", [(0, None), (10, 10), (2000, None), (0, 0)])
def test_reading_a_missing_object_is_not_found(store: AzureStore, offset: int, length: int | None) -> None:
    with pytest.raises(NotFound, match=r"^vault: data/"):
        store.get(Handle(Kind.DATA, name("missing")), offset=offset, length=length)


@emulator
def test_listing_pages_through_many_objects_and_skips_what_coldvault_did_not_write(
    store: AzureStore, container: ContainerClient, wire: Wire
) -> None:
    names = [name(i) for i in range(1001)]  # one more than a page
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda n: store.put(Handle(Kind.INDEX, n), b"abc"), names))
    store.put(Handle(Kind.SNAPSHOT, name("other")), b"x")
    for foreign in ("prod/index/not-a-name", "index/" + name(1), "prod/indexes/" + name(2)):
        container.upload_blob(foreign, b"?")
    wire.requests.clear()

    listed = list(store.list(Kind.INDEX))
    assert [i.handle.name for i in listed] == sorted(names)  # provider order: by key
    assert all(i.size == 3 and i.storage_class == "Hot" for i in listed)
    assert len(wire.sent("comp=list")) == 2


@emulator
def test_staged_upload_sends_part_sized_blocks_with_checksums_and_commits_create_only(
    store: AzureStore, wire: Wire
) -> None:
    data = os.urandom(2500)
    store.put(Handle(Kind.DATA, name(4)), data)
    blocks = wire.sent("comp=block&")
    assert [int(b["Content-Length"]) for b in blocks] == [1000, 1000, 500]
    assert [b["Content-MD5"] for b in blocks] == [md5(data[:1000]), md5(data[1000:2000]), md5(data[2000:])]
    [commit] = wire.sent("comp=blocklist")
    assert commit["If-None-Match"] == "*" and commit["x-ms-blob-content-md5"] == md5(data)


@emulator
@pytest.mark.parametrize("lock_mode, policy_mode", [("compliance", "Locked"), ("governance", "Unlocked")])
@pytest.mark.parametrize("size", [10, 2500], ids=["one-request", "staged-blocks"])
def test_put_sends_retention_tier_and_checksums(
    container: ContainerClient, wire: Wire, lock_mode: str, policy_mode: str, size: int
) -> None:
    """Azurite accepts immutability headers and ignores them, so what is checked is what goes on the wire."""
    store = AzureStore(container, name="vault", lock_mode=lock_mode, part_size=1000)
    data = os.urandom(size)
    until = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    info = store.put(Handle(Kind.DATA, name(5)), data, retain_until=until, storage_class="Cool")
    assert (info.retain_until, info.lock_mode, info.storage_class) == (until, lock_mode, "Cool")

    [final] = wire.sent("comp=blocklist") if size > 1000 else wire.uploads()
    assert final["x-ms-immutability-policy-until-date"] == "Tue, 06 May 2031 07:08:09 GMT"
    assert final["x-ms-immutability-policy-mode"] == policy_mode
    assert final["x-ms-access-tier"] == "Cool"
    assert final["x-ms-blob-content-md5"] == md5(data)
    if size <= 1000:
        assert final["Content-MD5"] == md5(data) and final["If-None-Match"] == "*"


@emulator
def test_put_without_retention_sends_no_policy(store: AzureStore, wire: Wire) -> None:
    store.put(Handle(Kind.KEY, name(6)), b"key", mode=PutMode.OVERWRITE)
    [upload] = wire.uploads()
    assert "x-ms-immutability-policy-mode" not in upload and "If-None-Match" not in upload


@emulator
def test_archived_object_needs_warmup_before_it_can_be_read(store: AzureStore) -> None:
    cold, cool = Handle(Kind.DATA, name(7)), Handle(Kind.DATA, name(8))
    info = store.put(cold, b"frozen", storage_class="Archive")
    store.put(cool, b"cool", storage_class="Cool")
    assert info.archived and store.head(cold).archived and store.head(cold).storage_class == "Archive"
    assert {i.handle: i.archived for i in store.list(Kind.DATA)} == {cold: True, cool: False}
    with pytest.raises(Archived):
        store.get(cold)
    assert store.warmup_status([cold, cool]) == {cold: False, cool: True}

    store.warmup([cold, cool, Handle(Kind.DATA, name("missing"))])  # Azurite rehydrates at once
    assert store.warmup_status([cold, cool]) == {cold: True, cool: True}
    assert store.get(cold) == b"frozen"
    assert store.head(cool).storage_class == "Cool"  # warm-up leaves blobs that are not archived where they are
    with pytest.raises(NotFound):
        store.warmup_status([Handle(Kind.DATA, name("missing"))])


@emulator
def test_capabilities_on_azurite(store: AzureStore) -> None:
    capabilities = store.capabilities
    assert capabilities.object_lock is False  # Azurite has no version-level immutability
    assert capabilities.needs_warmup and capabilities.storage_classes == {"Hot", "Cool", "Cold", "Archive"}
    assert capabilities.max_object_size == 50_000 * 1000


@emulator
def test_missing_container_is_a_target_error_that_says_to_create_it(azurite_server: Emulator) -> None:
    client = ContainerClient.from_connection_string(
        azurite_connection_string(azurite_server.endpoint), "no-such-container", retry_total=0
    )
    store = AzureStore(client, name="vault")
    with pytest.raises(TargetError, match=r"^vault: .*'no-such-container' does not exist; create it") as caught:
        _ = store.capabilities
    assert type(caught.value) is TargetError


# ---- connect -----------------------------------------------------------------------------------


@emulator
def test_connect_reads_the_credentials_file_and_the_endpoint_overrides_the_connection_string(
    azurite_server: Emulator, container: ContainerClient, tmp_path: Path
) -> None:
    credentials = tmp_path / "azure"
    credentials.write_text(azurite_connection_string(f"http://127.0.0.1:{free_port()}") + "\n")
    store = connect(
        target(
            container.container_name,
            endpoint=f"{azurite_server.endpoint}/{AZURITE_ACCOUNT}",
            credentials_file=credentials,
            lock={"mode": "governance"},
            prefix="prod/",
        )
    )
    handle = Handle(Kind.SNAPSHOT, name(9))
    assert store.put(handle, b"snap", retain_until=datetime.now(UTC) + timedelta(days=1)).lock_mode == "governance"
    assert store.get(handle) == b"snap"
    assert container.get_blob_client(f"prod/{handle.path}").exists()
    assert store.capabilities.object_lock is False
    assert repr(store) == f"AzureStore('vault', container={container.container_name!r})"


@emulator
def test_connect_falls_back_to_the_environment(
    azurite_server: Emulator, container: ContainerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONNECTION_STRING_VARIABLE, azurite_connection_string(azurite_server.endpoint))
    store = connect(target(container.container_name))
    store.put(Handle(Kind.KEY, name(10)), b"k")
    assert store.get(Handle(Kind.KEY, name(10))) == b"k"


def test_connect_without_credentials_says_to_set_credentials_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONNECTION_STRING_VARIABLE, raising=False)
    with pytest.raises(ConfigError, match="target vault: .*set credentials_file"):
        connect(target("vault"))


@pytest.mark.parametrize(
    "content",
    [
        "not a connection string",
        f"AccountName={AZURITE_ACCOUNT};AccountKey=not base64 {AZURITE_KEY[:10]}",
        f"DefaultEndpointsProtocol=https;AccountKey={AZURITE_KEY}",  # a key without its account
        "DefaultEndpointsProtocol=https;EndpointSuffix=core.windows.net",  # no account, no endpoint
        "\xff\xfe",
    ],
)
def test_connect_with_a_malformed_connection_string_names_the_file_not_its_content(
    tmp_path: Path, content: str
) -> None:
    credentials = tmp_path / "azure"
    credentials.write_bytes(content.encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        connect(target("vault", credentials_file=credentials))
    message = str(caught.value)
    assert str(credentials) in message and "not a valid Azure Storage connection string" in message
    assert content not in message and AZURITE_KEY[:10] not in message and "\n" not in message


@emulator
def test_wrong_account_key_is_permission_denied_without_the_key(
    azurite_server: Emulator, container: ContainerClient, tmp_path: Path
) -> None:
    wrong_key = base64.b64encode(b"w" * 64).decode()
    credentials = tmp_path / "azure"
    credentials.write_text(azurite_connection_string(azurite_server.endpoint).replace(AZURITE_KEY, wrong_key))
    store = connect(target(container.container_name, credentials_file=credentials))
    with pytest.raises(PermissionDenied, match=r"^vault: .*check the connection string") as caught:
        store.head(Handle(Kind.CONFIG))
    assert wrong_key not in str(caught.value) and "\n" not in str(caught.value)
    assert wrong_key not in repr(store)


def test_unreachable_endpoint_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONNECTION_STRING_VARIABLE, azurite_connection_string("http://127.0.0.1:1"))
    store = connect(target("vault", endpoint=f"http://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT}"))
    with pytest.raises(Transient, match=r"^vault: could not look up config: .*refused") as caught:
        store.head(Handle(Kind.CONFIG))
    assert AZURITE_KEY not in str(caught.value)


# ---- service answers Azurite cannot give -------------------------------------------------------


Answer = tuple[int, dict[str, str], bytes]


class CannedServer(ThreadingHTTPServer):
    """Answers every request with one canned response (or one per HTTP method): a mock of Azure's refusals,
    damaged transfers and immutability policies, which cannot be produced here.  The SDK parses them as it
    would Azure's, through its real transport."""

    answer: Answer = (200, {}, b"")

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), CannedHandler)
        self.answers: dict[str, Answer] = {}  # by method, where one differs from ``answer``
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path and headers, as they came


class CannedHandler(BaseHTTPRequestHandler):
    server: CannedServer

    def reply(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        status, headers, body = self.server.answers.get(self.command, self.server.answer)
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = reply

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[tuple[CannedServer, AzureStore]]:
    server = CannedServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    client = ContainerClient(
        f"http://127.0.0.1:{server.server_port}/{AZURITE_ACCOUNT}",
        "canned",
        credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY},
        retry_total=0,
    )
    try:
        yield server, AzureStore(client, name="vault")
    finally:
        server.shutdown()
        server.server_close()


def refusal(status: int, code: str, **headers: str) -> Answer:
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{code} said the service.'
    body += "\nRequestId:0000\nTime:2031-01-01T00:00:00Z</Message></Error>"
    return status, {"x-ms-error-code": code, "Content-Type": "application/xml", **headers}, body.encode()


HANDLE = Handle(Kind.DATA, name("canned"))
VERBS = {
    "put": lambda store: store.put(HANDLE, b"data"),
    "overwrite": lambda store: store.put(HANDLE, b"data", mode=PutMode.OVERWRITE),
    "get": lambda store: store.get(HANDLE),
    "head": lambda store: store.head(HANDLE),
    "list": lambda store: list(store.list(Kind.DATA)),
    "delete": lambda store: store.delete(HANDLE),
}


@pytest.mark.parametrize(
    "verb, status, code, error",
    [
        ("delete", 409, "BlobImmutableDueToPolicy", Locked),
        ("overwrite", 409, "BlobImmutableDueToLegalHold", Locked),
        ("put", 409, "BlobImmutableDueToPolicy", AlreadyExists),  # create-only: only an existing blob is locked
        ("put", 412, "ConditionNotMet", AlreadyExists),
        ("get", 412, "ConditionNotMet", Transient),  # the blob changed between the chunks of one read
        ("get", 403, "AuthorizationPermissionMismatch", PermissionDenied),
        ("delete", 403, "AuthorizationFailure", PermissionDenied),
        ("head", 404, "BlobNotFound", NotFound),
        ("head", 409, "BlobArchived", Archived),
        ("head", 500, "InternalError", Transient),
        ("list", 503, "ServerBusy", Transient),
        ("get", 500, "OperationTimedOut", Transient),
        ("put", 400, "Md5Mismatch", IntegrityError),
        ("put", 400, "InvalidHeaderValue", TargetError),
    ],
)
def test_service_refusals_map_to_typed_errors(
    canned: tuple[CannedServer, AzureStore], verb: str, status: int, code: str, error: type[Exception]
) -> None:
    server, store = canned
    server.answer = refusal(status, code)
    with pytest.raises(error) as caught:
        VERBS[verb](store)
    assert type(caught.value) is error
    message = str(caught.value)
    assert message.startswith("vault: ") and "\n" not in message and "RequestId" not in message


def test_busy_service_passes_on_retry_after(canned: tuple[CannedServer, AzureStore]) -> None:
    server, store = canned
    server.answer = refusal(503, "ServerBusy", **{"Retry-After": "7"})
    with pytest.raises(Transient) as caught:
        store.head(HANDLE)
    assert caught.value.retry_after == 7.0


def test_upload_damaged_on_the_way_is_an_integrity_error(canned: tuple[CannedServer, AzureStore]) -> None:
    server, store = canned
    server.answer = (201, {"Content-MD5": md5(b"something else")}, b"")
    with pytest.raises(IntegrityError, match=r"^vault: data/.* arrived damaged"):
        store.put(HANDLE, b"data")


def test_whole_read_is_checked_against_the_stored_md5(canned: tuple[CannedServer, AzureStore]) -> None:
    server, store = canned
    headers = {"Content-Range": "bytes 0-7/8", "x-ms-blob-content-md5": md5(b"original"), "x-ms-blob-type": "BlockBlob"}
    server.answer = (206, headers, b"tampered")
    with pytest.raises(IntegrityError, match=r"^vault: data/.* arrived damaged"):
        store.get(HANDLE)
    server.answer = (206, {**headers, "x-ms-blob-content-md5": md5(b"tampered")}, b"tampered")
    assert store.get(HANDLE) == b"tampered"


# A blob version with an unlocked (governance) policy, as Get Blob Properties describes it.
POLICY_UNTIL = datetime(2031, 1, 1, tzinfo=UTC)
VERSION = "2030-06-01T00:00:00.0000000Z"
UNLOCKED_BLOB = {
    "x-ms-immutability-policy-until-date": "Wed, 01 Jan 2031 00:00:00 GMT",
    "x-ms-immutability-policy-mode": "unlocked",
    "x-ms-version-id": VERSION,
}


@pytest.mark.parametrize(
    "blob, sent_mode, kept_mode", [(UNLOCKED_BLOB, "Unlocked", "governance"), ({}, "Locked", "compliance")]
)
def test_retain_sets_the_later_date_in_the_blobs_own_mode_on_the_version_looked_at(
    canned: tuple[CannedServer, AzureStore], blob: dict[str, str], sent_mode: str, kept_mode: str
) -> None:
    """A blob keeps the mode it has; one without a policy gets the store's (compliance).

    Mocked because it cannot run here: Azurite implements no Set Blob Immutability Policy (it answers
    APINotImplemented; Azure/Azurite#2648) and keeps no policy written with a blob.
    """
    server, store = canned
    server.answer = (200, blob, b"")
    later = datetime(2031, 3, 1, 12, 30, tzinfo=UTC)
    info = store.retain(HANDLE, later)
    assert (info.retain_until, info.lock_mode) == (later, kept_mode)
    [(_, path, headers)] = [request for request in server.requests if request[0] == "PUT"]
    assert "comp=immutabilityPolicies" in path
    assert headers["x-ms-immutability-policy-until-date"] == "Sat, 01 Mar 2031 12:30:00 GMT"
    assert headers["x-ms-immutability-policy-mode"] == sent_mode
    if blob:
        assert f"versionid={VERSION.replace(':', '%3A')}" in path


def test_retain_to_an_earlier_date_sends_no_policy(canned: tuple[CannedServer, AzureStore]) -> None:
    """Mocked: Azurite keeps no policy, so it cannot show a blob that already has a later one."""
    server, store = canned
    server.answer = (200, UNLOCKED_BLOB, b"")
    for earlier in (POLICY_UNTIL - timedelta(days=1), POLICY_UNTIL):
        assert store.retain(HANDLE, earlier).retain_until == POLICY_UNTIL
    assert [method for method, _, _ in server.requests] == ["HEAD", "HEAD"]


def test_a_refused_extension_is_permission_denied(canned: tuple[CannedServer, AzureStore]) -> None:
    """What a SAS without the ``i`` (set immutability policy) permission gets."""
    server, store = canned
    server.answers["PUT"] = refusal(403, "AuthorizationPermissionMismatch")
    with pytest.raises(PermissionDenied, match=f"^vault: could not extend the lock of {HANDLE}: access denied"):
        store.retain(HANDLE, POLICY_UNTIL)
