"""Azure Blob Storage behind the Store protocol, through azure-storage-blob.

Translation only: retries, concurrency limits, lock and tier policy are wrappers, except that
the blocks of a staged upload are each retried here, with the retry wrapper's policy.
Specifics worth knowing:
- Create-only is ``If-None-Match: *`` on Put Blob and on Put Block List.
- Retention is a version-level immutability policy written with the blob, and ``retain`` only
  ever lengthens it afterwards; the container needs version-level immutability enabled, which is
  what ``object_lock`` reports.
- Such containers sit in accounts with blob versioning, where deleting a blob keeps its data as a
  previous version; a lifecycle rule removes previous versions (docs/OPERATIONS.md).
- Warm-up moves an archived blob to Hot, where it stays: unlike S3 there is no temporary copy.
- Credentials are a connection string (it holds the account key): it never reaches a message or a repr.
- SDK retries are off: the retry wrapper owns retrying, with one policy for every cloud; given
  that policy (``retry``), Put Block is retried alone, so a throttled block does not send every
  block already staged again.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import cached_property
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    BlobProperties,
    BlobServiceClient,
    ContainerClient,
    ContentSettings,
    ImmutabilityPolicy,
    StandardBlobTier,
)

from coldvault.config import Secret, read_secret_file
from coldvault.config.model import AZURE_STORAGE_CLASSES, AzureTarget
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
from coldvault.storage.cloud import PROVIDER_LOCK_MODES, ObjectKeys, lengthened, lock_mode_of, parts, seconds, utc
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import BytesLike, Capabilities, ObjectInfo, PutMode
from coldvault.storage.retry import SEND_ONCE, RetryPolicy

CONNECTION_STRING_VARIABLE = "AZURE_STORAGE_CONNECTION_STRING"
ARCHIVE = "Archive"
REHYDRATE_TO = "Hot"
MAX_BLOCKS = 50_000  # per blob, so the largest object is MAX_BLOCKS parts
_LIST_PAGE = 1000  # blobs per listing request, as S3 answers; bounds what one page holds in memory

_MISSING = frozenset({"BlobNotFound", "ResourceNotFound", "404"})
_ARCHIVED = frozenset({"BlobArchived", "BlobBeingRehydrated"})
_IMMUTABLE = frozenset({"BlobImmutableDueToPolicy", "BlobImmutableDueToLegalHold"})
_CHANGED = frozenset({"ConditionNotMet", "412"})  # create-only refused, or the blob changed during a read
_DENIED = frozenset(
    {"AuthenticationFailed", "AuthorizationFailure", "AuthorizationPermissionMismatch", "AuthorizationSourceIPMismatch",
     "AuthorizationProtocolMismatch", "InsufficientAccountPermissions", "InvalidAuthenticationInfo",
     "NoAuthenticationInformation", "AccountIsDisabled", "401", "403"}
)  # fmt: skip
_BUSY = frozenset({"ServerBusy", "OperationTimedOut", "InternalError", "429", "500", "502", "503", "504"})
_NETWORK = (ServiceRequestError, ServiceResponseError, IncompleteReadError)
_SIGNATURE = re.compile(r"(sig=)[^&\s'\"]+", re.IGNORECASE)


class AzureStore:
    def __init__(
        self,
        container: ContainerClient,
        *,
        name: str = "azure",
        prefix: str = "",
        lock_mode: str = "compliance",
        part_size: int = 16 << 20,
        rehydrate_priority: str = "Standard",
        retry: RetryPolicy = SEND_ONCE,
    ) -> None:
        """``container`` should send objects up to ``part_size`` in one request (``max_single_put_size``).

        ``retry`` is for each block of a staged upload; every other request is sent once.
        """
        self._container = container
        self._name = name
        self._keys = ObjectKeys(prefix)
        self._lock_mode = lock_mode
        self._policy_mode = PROVIDER_LOCK_MODES[lock_mode]
        self._part_size = part_size
        self._rehydrate_priority = rehydrate_priority
        self._retry = retry

    def __repr__(self) -> str:
        return f"AzureStore({self._name!r}, container={self._container.container_name!r})"

    @property
    def name(self) -> str:
        return self._name

    @cached_property
    def capabilities(self) -> Capabilities:
        """Asks the container once; this is also where a missing container or bad credentials first show."""
        with self._errors("check the container"):
            properties = self._container.get_container_properties()
        return Capabilities(
            object_lock=bool(properties.immutable_storage_with_versioning_enabled),
            storage_classes=AZURE_STORAGE_CLASSES,
            needs_warmup=True,
            max_object_size=MAX_BLOCKS * self._part_size,
        )

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
            options["immutability_policy"] = ImmutabilityPolicy(expiry_time=retain_until, policy_mode=self._policy_mode)
        if storage_class is not None:
            options["standard_blob_tier"] = StandardBlobTier(storage_class)
        checksum = _md5(data)
        # Stored with the blob, so every whole read can be checked against it.
        options["content_settings"] = ContentSettings(content_md5=bytearray(checksum))
        blob = self._blob(handle)
        with self._errors(f"store {handle}", handle, creating=mode is PutMode.CREATE):
            if len(data) > self._part_size:
                self._put_in_blocks(blob, data, mode, options, handle)
            else:
                answer = blob.upload_blob(
                    bytes(data), length=len(data), overwrite=mode is PutMode.OVERWRITE, validate_content=True, **options
                )
                self._confirm(answer.get("content_md5"), checksum, handle)
        return ObjectInfo(
            handle,
            len(data),
            retain_until=retain_until,
            lock_mode=self._lock_mode if retain_until else None,
            storage_class=storage_class,
            archived=storage_class == ARCHIVE,
        )

    def get(self, handle: Handle, *, offset: int = 0, length: int | None = None) -> bytes:
        if length == 0:
            self.head(handle)
            return b""
        whole = offset == 0 and length is None
        blob = self._blob(handle)
        with self._errors(f"read {handle}", handle):
            try:
                download = blob.download_blob() if whole else blob.download_blob(offset=offset, length=length)
                data = download.readall()
            except HttpResponseError as exc:
                if _code(exc) != "InvalidRange":
                    raise
                self.head(handle)  # a range past the end of an existing object is empty, as in a file
                return b""
        if whole:
            self._confirm(download.properties.content_settings.content_md5, _md5(data), handle)
        return data

    def head(self, handle: Handle) -> ObjectInfo:
        return self._info(handle, self._properties(handle))

    def list(self, kind: Kind) -> Iterator[ObjectInfo]:
        with self._errors(f"list {kind.value}"):
            # A listing leaves the immutability policy out unless asked; like S3's, it has no retention.
            listing = self._container.list_blobs(name_starts_with=self._keys.folder(kind), results_per_page=_LIST_PAGE)
            for item in listing:
                handle = self._keys.handle(item.name, kind)
                if handle is not None:
                    yield self._info(handle, item)

    def delete(self, handle: Handle) -> None:
        with self._errors(f"delete {handle}", handle):
            self._blob(handle).delete_blob()

    def retain(self, handle: Handle, until: datetime) -> ObjectInfo:
        properties = self._properties(handle)
        current = self._info(handle, properties)
        wanted = lengthened(current, until, self._lock_mode)
        if wanted is None:
            return current
        policy = ImmutabilityPolicy(expiry_time=wanted.retain_until, policy_mode=PROVIDER_LOCK_MODES[wanted.lock_mode])
        # The version just looked at, the current one: a version written since carries its own policy,
        # and the one compared here is never shortened.
        with self._errors(f"extend the lock of {handle}", handle):
            self._blob(handle).set_immutability_policy(policy, version_id=properties.version_id)
        return wanted

    def warmup(self, handles: Iterable[Handle]) -> None:
        for handle in handles:
            blob = self._blob(handle)
            # A missing blob has nothing to warm up (as on S3); warmup_status reports it.
            with contextlib.suppress(NotFound), self._errors(f"warm up {handle}", handle):
                properties = blob.get_blob_properties()
                # Setting a tier on a blob that is not archived would move it, and one already rehydrating
                # needs no second request: only archived, idle blobs are asked to come back.
                if _value(properties.blob_tier) == ARCHIVE and not properties.archive_status:
                    blob.set_standard_blob_tier(REHYDRATE_TO, rehydrate_priority=self._rehydrate_priority)

    def warmup_status(self, handles: Iterable[Handle]) -> dict[Handle, bool]:
        status = {}
        for handle in handles:
            properties = self._properties(handle)
            pending = str(properties.archive_status or "").startswith("rehydrate-pending")
            status[handle] = _value(properties.blob_tier) != ARCHIVE and not pending
        return status

    def _blob(self, handle: Handle) -> BlobClient:
        return self._container.get_blob_client(self._keys.key(handle))

    def _properties(self, handle: Handle) -> BlobProperties:
        with self._errors(f"look up {handle}", handle):
            return self._blob(handle).get_blob_properties()

    def _info(self, handle: Handle, properties: BlobProperties) -> ObjectInfo:
        policy = properties.immutability_policy
        tier = _value(properties.blob_tier)
        return ObjectInfo(
            handle,
            properties.size,
            retain_until=utc(policy.expiry_time) if policy.expiry_time else None,
            lock_mode=lock_mode_of(_value(policy.policy_mode)),  # "Mutable" means no policy
            storage_class=tier,
            archived=tier == ARCHIVE,
            created=utc(properties.creation_time) if properties.creation_time else None,
        )

    def _put_in_blocks(
        self, blob: BlobClient, data: BytesLike, mode: PutMode, options: dict[str, Any], handle: Handle
    ) -> None:
        """Stage one block per part, then commit the list; the blob appears whole at the commit or not at all.

        Blocks left uncommitted by a failed upload cannot be aborted (Azure has no such call); the
        service garbage-collects them after seven days.  Each upload names its blocks afresh, so two
        uploads of one name never commit each other's blocks.
        """
        upload = uuid.uuid4().hex
        creating = mode is PutMode.CREATE
        blocks = []
        for number, part in enumerate(parts(data, self._part_size)):
            block_id = f"{upload}-{number:05d}"  # all ids of a blob must have one length
            self._retry.call(self._stage_block, blob, block_id, part, handle, creating)
            blocks.append(BlobBlock(block_id))
        condition = {"if_none_match": "*"} if creating else {}
        blob.commit_block_list(blocks, **options, **condition)

    def _stage_block(self, blob: BlobClient, block_id: str, part: memoryview, handle: Handle, creating: bool) -> None:
        """One Put Block, its errors translated so that the retry policy sees what is Transient; staged
        again under its id, a block replaces the one staged before."""
        with self._errors(f"store {handle}", handle, creating=creating):
            # A copy of one part at a time: the SDK computes the request's MD5 over bytes, not over a view.
            answer = blob.stage_block(block_id, bytes(part), length=len(part), validate_content=True)
        self._confirm(answer.get("content_md5"), _md5(part), handle)

    def _confirm(self, theirs: bytes | bytearray | None, ours: bytes, handle: Handle) -> None:
        if theirs is not None and bytes(theirs) != ours:
            raise IntegrityError(f"{self._name}: {handle} arrived damaged (MD5 {_b64(theirs)}, expected {_b64(ours)})")

    @contextlib.contextmanager
    def _errors(self, action: str, handle: Handle | None = None, *, creating: bool = False) -> Iterator[None]:
        try:
            yield
        except _NETWORK as exc:
            raise Transient(f"{self._name}: could not {action}: {_one_line(exc)}") from None
        except HttpResponseError as exc:
            raise self._translate(exc, action, handle, creating) from None
        except AzureError as exc:
            # The SDK compares the MD5 the service echoes with the one it sent and raises a bare AzureError.
            if "MD5 mismatch" in str(exc):
                raise IntegrityError(f"{self._name}: {handle} arrived damaged (MD5 mismatch)") from None
            raise TargetError(f"{self._name}: could not {action}: {_one_line(exc)}") from None

    def _translate(
        self, exc: HttpResponseError, action: str, handle: Handle | None, creating: bool
    ) -> TargetError | IntegrityError:
        code = _code(exc)
        where = f"{self._name}: could not {action}"
        container = self._container.container_name
        if code == "ContainerNotFound":
            return TargetError(f"{where}: container {container!r} does not exist; create it (see docs/OPERATIONS.md)")
        if code in _MISSING:
            return NotFound(f"{self._name}: {handle or 'the container ' + repr(container)} does not exist")
        if code in _ARCHIVED:
            return Archived(f"{self._name}: {handle} is in archive storage; it must be warmed up first")
        # Only an existing blob can be protected, so a create-only put refused for that found one.
        if code == "BlobAlreadyExists" or (creating and (code in _CHANGED or code in _IMMUTABLE)):
            return AlreadyExists(f"{self._name}: {handle} already exists")
        if code in _IMMUTABLE:
            return Locked(f"{where}: {handle} is protected by an immutability policy ({code})")
        if code in _CHANGED:
            return Transient(f"{where}: {handle} changed during the transfer")
        if code in _DENIED or isinstance(exc, ClientAuthenticationError):
            return PermissionDenied(
                f"{where}: access denied ({code}); check the connection string (credentials_file)"
                " and the storage account's access rules"
            )
        if code in _BUSY:
            retry_after = exc.response.headers.get("retry-after") if exc.response is not None else None
            return Transient(f"{where}: {code}: {_one_line(exc.message)}", retry_after=seconds(retry_after))
        if code == "Md5Mismatch":
            return IntegrityError(f"{self._name}: {handle} arrived damaged (MD5 mismatch)")
        if exc.response is None:  # the SDK gave up reading a body: the connection broke mid-transfer
            return Transient(f"{where}: {_one_line(exc.message)}")
        return TargetError(f"{where}: {code}: {_one_line(exc.message)}")


def connect(target: AzureTarget, *, retry: RetryPolicy = SEND_ONCE) -> AzureStore:
    """The adapter for a target; ``retry`` is the policy each block of a staged upload is retried with."""
    connection, source = _connection_string(target)
    service = _service_client(connection, source, target)
    return AzureStore(
        service.get_container_client(target.container),
        name=target.name,
        prefix=target.prefix,
        lock_mode=target.lock_mode,
        part_size=target.part_size,
        rehydrate_priority=target.rehydrate_priority,
        retry=retry,
    )


def _connection_string(target: AzureTarget) -> tuple[Secret, str]:
    """The connection string and where it came from (for messages): credentials_file, else the environment."""
    if target.credentials_file is not None:
        what = f"credentials of target {target.name}"
        return read_secret_file(target.credentials_file, what=what), str(target.credentials_file)
    value = os.environ.get(CONNECTION_STRING_VARIABLE)
    if not value:
        raise ConfigError(
            f"target {target.name}: no Azure connection string; set credentials_file to a file holding one"
            f" (or set {CONNECTION_STRING_VARIABLE})"
        )
    return Secret(value.encode()), CONNECTION_STRING_VARIABLE


def _service_client(connection: Secret, source: str, target: AzureTarget) -> BlobServiceClient:
    """A client without SDK retries; the config's ``endpoint`` replaces the connection string's blob endpoint."""
    try:
        fields = _fields(connection.reveal().decode())
        if target.endpoint is not None:
            fields["BLOBENDPOINT"] = target.endpoint
        return BlobServiceClient.from_connection_string(
            ";".join(f"{key}={value}" for key, value in fields.items()),
            retry_total=0,
            connection_timeout=10,
            read_timeout=120,
            max_single_put_size=target.part_size,  # anything larger goes up in blocks, staged by AzureStore
        )
    except ValueError:  # also a bad key or bad UTF-8; the SDK's message may quote the string, so it is dropped
        raise ConfigError(
            f"{source}: not a valid Azure Storage connection string (credentials of target {target.name});"
            " copy it again from the storage account's access keys"
        ) from None


def _fields(text: str) -> dict[str, str]:
    """``Name=value;…`` by upper-cased name, as the SDK reads it; values (a SAS) may contain '='.

    Raises ValueError also for what the SDK would notice only at the first request: an account key
    without its account name, or one mangled in copying (not base64).
    """
    pairs = [item.split("=", 1) for item in text.strip().rstrip(";").split(";")]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError("malformed connection string")
    fields = {key.strip().upper(): value.strip() for key, value in pairs}
    if "ACCOUNTKEY" in fields:
        if "ACCOUNTNAME" not in fields:
            raise ValueError("an account key without an account name")
        base64.b64decode(fields["ACCOUNTKEY"], validate=True)
    return fields


def _md5(data: BytesLike) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()  # Azure's transfer checksum, not a security measure


def _b64(digest: bytes | bytearray) -> str:
    return base64.b64encode(digest).decode()


def _code(exc: HttpResponseError) -> str:
    """The service's error code (BlobNotFound, ServerBusy, …), else the HTTP status; HEAD answers have no body."""
    code = getattr(exc, "error_code", None)
    if not code and exc.response is not None:
        code = exc.response.headers.get("x-ms-error-code")
    return str(_value(code) or exc.status_code or "")


def _value(value: Any) -> Any:
    """The plain string behind one of the SDK's str enums (StandardBlobTier.HOT → "Hot")."""
    return getattr(value, "value", value)


def _one_line(value: object) -> str:
    """The first line of an SDK message (the rest is request ids and XML), with any SAS signature masked."""
    lines = str(value).strip().splitlines() or [""]
    return _SIGNATURE.sub(r"\1***", " ".join(lines[0].split()))
