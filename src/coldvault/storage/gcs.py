"""Google Cloud Storage behind the Store protocol, through google-cloud-storage.

Translation only: retries, concurrency limits, lock and tier policy are wrappers, except that
the requests of a resumable upload are each retried here, with the retry wrapper's policy.
Specifics worth knowing:
- Create-only is ``ifGenerationMatch=0``: the write succeeds only if no live object has the name.
- Retention is object retention written with the object (``Locked`` is compliance, ``Unlocked``
  governance); the bucket needs object retention enabled for that.  ``retain`` only ever lengthens it
  afterwards, so it never needs ``overrideUnlockedRetention``.
- NEARLINE, COLDLINE and ARCHIVE read at once (with retrieval fees), so nothing ever needs warming up.
- Every upload carries a crc32c, and the crc32c GCS reports for the stored object must match ours.
- SDK retries are off (``retry=None`` on every call): the retry wrapper owns retrying, with one
  policy for every cloud.  A resumable upload is the exception: given that policy (``retry``), the
  SDK's per-request retry hook sends its start and each chunk again alone, so a throttled chunk
  does not send every chunk already stored again.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import cached_property
from typing import TypeVar

import google.api_core.exceptions as google_errors
import google.auth.exceptions
import google_crc32c
import requests
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
from google.oauth2 import service_account

from coldvault.config import read_secret_file
from coldvault.config.model import GCS_STORAGE_CLASSES, GcsTarget
from coldvault.errors import (
    AlreadyExists,
    ColdvaultError,
    ConfigError,
    IntegrityError,
    Locked,
    NotFound,
    PermissionDenied,
    TargetError,
    Transient,
)
from coldvault.storage.cloud import (
    PROVIDER_LOCK_MODES,
    ObjectKeys,
    ViewReader,
    lengthened,
    lock_mode_of,
    one_line,
    parts,
    seconds,
    utc,
)
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import BytesLike, Capabilities, ObjectInfo, PutMode
from coldvault.storage.retry import SEND_ONCE, RetryPolicy

T = TypeVar("T")

_TIMEOUT = (10, 120)  # seconds to connect, and to wait for each answer: a stalled transfer fails and is retried
_CHUNK_MULTIPLE = 256 << 10  # GCS accepts resumable chunks in multiples of 256 KiB only
_PAGE_SIZE = 1000  # the most GCS lists per request
_LISTED_FIELDS = "items(name,size,storageClass,retention,timeCreated),nextPageToken"
_BUSY = frozenset({408, 429, 500, 502, 503, 504})  # what GCS's retry guidance calls retryable
_NETWORK = (
    ConnectionError,  # the SDK's own, for a download cut short
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    google.auth.exceptions.TransportError,
)


class GcsStore:
    def __init__(
        self,
        client: storage.Client,
        bucket: str,
        *,
        name: str = "gcs",
        prefix: str = "",
        lock_mode: str = "compliance",
        part_size: int = 16 << 20,
        region: str | None = None,
        retry: RetryPolicy = SEND_ONCE,
    ) -> None:
        """``retry`` is for each request of a resumable upload; every other request is sent once."""
        self._client = client
        self._bucket = client.bucket(bucket)
        self._name = name
        self._keys = ObjectKeys(prefix)
        self._lock_mode = lock_mode
        self._retention_mode = PROVIDER_LOCK_MODES[lock_mode]
        self._part_size = max(_CHUNK_MULTIPLE, part_size - part_size % _CHUNK_MULTIPLE)
        self._region = region
        self._retry = retry

    def __repr__(self) -> str:
        return f"GcsStore({self._name!r}, bucket={self._bucket.name!r})"

    @property
    def name(self) -> str:
        return self._name

    @cached_property
    def capabilities(self) -> Capabilities:
        """Asks the bucket once; this is also where a missing bucket, a wrong region or bad credentials first show."""
        with self._errors("check the bucket"):
            self._bucket.reload(retry=None, timeout=_TIMEOUT)
        location = self._bucket.location or ""
        if self._region is not None and location.lower() != self._region.lower():
            raise TargetError(
                f"{self._name}: bucket {self._bucket.name!r} is in {location}, not {self._region};"
                f" set region = {location.lower()!r}"
            )
        lock = self._bucket.object_retention_mode == "Enabled" or bool(self._bucket.retention_policy_locked)
        return Capabilities(object_lock=lock, storage_classes=GCS_STORAGE_CLASSES, needs_warmup=False)

    def put(
        self,
        handle: Handle,
        data: BytesLike,
        *,
        mode: PutMode = PutMode.CREATE,
        retain_until: datetime | None = None,
        storage_class: str | None = None,
    ) -> ObjectInfo:
        # The chunk size is for uploads only: a download with one set goes in chunks that skip the crc32c check.
        blob = self._bucket.blob(self._keys.key(handle), chunk_size=self._part_size)
        if retain_until is not None:
            blob.retention.mode = self._retention_mode
            blob.retention.retain_until_time = utc(retain_until)  # the SDK writes the clock time as UTC
        if storage_class is not None:
            blob.storage_class = storage_class
        checksum = _crc32c(data, self._part_size)
        # Told a size up to 8 MiB, the SDK reads the whole object into one request; not told the size, it
        # uploads resumably, one part_size chunk in memory at a time.  An abandoned resumable session costs
        # nothing and expires on its own after a week, so there is nothing to clean up when one fails.
        size = None if len(data) > self._part_size else len(data)
        action = f"store {handle}"
        # No handle for the errors: an upload cannot miss its object, so a 404 here means the bucket is missing.
        with self._errors(action), ViewReader(data) as body:
            try:
                blob.upload_from_file(
                    body,
                    size=size,
                    if_generation_match=0 if mode is PutMode.CREATE else None,
                    # Sent with the upload, so GCS refuses bytes damaged on the way; after a resumable upload the
                    # SDK also compares, and deletes what arrived damaged before raising DataCorruption.
                    checksum="crc32c",
                    # One request is retried whole by the retry wrapper; a resumable upload retries each of its own.
                    retry=None if size is not None else self._each_request(action),
                    timeout=_TIMEOUT,
                )
            except google_errors.Forbidden:
                if mode is PutMode.OVERWRITE:
                    self._refuse_if_retained(handle, "overwrite")
                raise
        if blob.crc32c is not None and blob.crc32c != checksum:
            raise IntegrityError(f"{self._name}: {handle} arrived damaged (crc32c {blob.crc32c}, sent {checksum})")
        return self._info(handle, blob)

    def get(self, handle: Handle, *, offset: int = 0, length: int | None = None) -> bytes:
        if length == 0:
            self.head(handle)
            return b""
        whole = offset == 0 and length is None
        with self._errors(f"read {handle}", handle):
            try:
                return self._blob(handle).download_as_bytes(
                    start=offset or None,
                    end=None if length is None else offset + length - 1,
                    checksum="crc32c" if whole else None,  # GCS reports the whole object's crc32c only
                    retry=None,
                    timeout=_TIMEOUT,
                )
            except google_errors.RequestRangeNotSatisfiable:
                self.head(handle)  # a range past the end of an existing object is empty, as in a file
                return b""

    def head(self, handle: Handle) -> ObjectInfo:
        blob = self._blob(handle)
        with self._errors(f"look up {handle}", handle):
            blob.reload(retry=None, timeout=_TIMEOUT)
        return self._info(handle, blob)

    def list(self, kind: Kind) -> Iterator[ObjectInfo]:
        with self._errors(f"list {kind.value}"):
            blobs = self._client.list_blobs(
                self._bucket,
                prefix=self._keys.folder(kind),
                page_size=_PAGE_SIZE,
                fields=_LISTED_FIELDS,
                retry=None,
                timeout=_TIMEOUT,
            )
            for blob in blobs:
                handle = self._keys.handle(blob.name, kind)
                if handle is not None:
                    yield self._info(handle, blob)

    def delete(self, handle: Handle) -> None:
        with self._errors(f"delete {handle}", handle):
            try:
                self._blob(handle).delete(retry=None, timeout=_TIMEOUT)
            except google_errors.Forbidden:
                self._refuse_if_retained(handle, "delete")
                raise

    def retain(self, handle: Handle, until: datetime) -> ObjectInfo:
        blob = self._blob(handle)
        with self._errors(f"look up {handle}", handle):
            blob.reload(retry=None, timeout=_TIMEOUT)
        current = self._info(handle, blob)
        wanted = lengthened(current, until, self._lock_mode)
        if wanted is None:
            return current
        blob.retention.mode = PROVIDER_LOCK_MODES[wanted.lock_mode]
        blob.retention.retain_until_time = wanted.retain_until
        # The reloaded blob names its generation, so the patch reaches the object just looked at and never
        # a newer one, whose retention was not compared (one written meanwhile makes this NotFound).
        with self._errors(f"extend the lock of {handle}", handle):
            blob.patch(retry=None, timeout=_TIMEOUT)
        return wanted

    def warmup(self, handles: Iterable[Handle]) -> None:
        """Nothing to do: every GCS storage class reads at once."""

    def warmup_status(self, handles: Iterable[Handle]) -> dict[Handle, bool]:
        status = {}
        for handle in handles:
            self.head(handle)  # a missing object is NotFound here too
            status[handle] = True
        return status

    def _blob(self, handle: Handle) -> storage.Blob:
        return self._bucket.blob(self._keys.key(handle))

    def _info(self, handle: Handle, blob: storage.Blob) -> ObjectInfo:
        retain_until = blob.retention.retain_until_time
        return ObjectInfo(
            handle,
            blob.size or 0,
            retain_until=utc(retain_until) if retain_until else None,
            lock_mode=lock_mode_of(blob.retention.mode),
            storage_class=blob.storage_class,
            created=utc(blob.time_created) if blob.time_created else None,
        )

    def _refuse_if_retained(self, handle: Handle, action: str) -> None:
        """GCS answers 403 both to missing rights and to retention; only the object's retention tells them apart."""
        blob = self._blob(handle)
        try:
            blob.reload(retry=None, timeout=_TIMEOUT)
        except google_errors.GoogleAPICallError:
            return  # cannot tell: the caller re-raises the refusal as it came
        ends = [utc(t) for t in (blob.retention.retain_until_time, blob.retention_expiration_time) if t is not None]
        until = max(ends, default=None)
        if until is not None and until > datetime.now(UTC):
            raise Locked(f"{self._name}: cannot {action} {handle}: locked until {until.isoformat()}") from None

    def _each_request(self, action: str) -> Callable[[Callable[[], T]], Callable[[], T]]:
        """The ``retry`` of a resumable upload: each request retried alone with the store's policy.

        The SDK hands its ``retry`` the function that sends one request of the upload (the start, or one
        chunk with its Content-Range) and calls what comes back, as it would a google.api_core Retry.  A
        failure that ``_errors`` takes for Transient is retried there; anything else goes on unchanged to
        the SDK (which deletes an object whose crc32c does not match before raising DataCorruption), and
        from it to ``_errors``.  Each chunk is read once and sent again from memory: one part_size chunk.
        """

        def attempt(request: Callable[[], T]) -> T:
            try:
                return request()
            except Exception as exc:
                # The SDK turns a status it did not expect into the API error of that status, as here.
                error = google_errors.from_http_response(exc.response) if isinstance(exc, InvalidResponse) else exc
                translated = self._error(error, action)
                if isinstance(translated, Transient):
                    raise translated from None
                raise

        return lambda request: functools.partial(self._retry.call, attempt, request)

    @contextlib.contextmanager
    def _errors(self, action: str, handle: Handle | None = None) -> Iterator[None]:
        """Translate SDK exceptions; a 404 means ``handle`` is missing, or the bucket when there is no handle."""
        try:
            yield
        except Exception as exc:
            error = self._error(exc, action, handle)
            if error is None:
                raise
            raise error from None

    def _error(self, exc: Exception, action: str, handle: Handle | None = None) -> ColdvaultError | None:
        """What ``_errors`` raises for an SDK exception; None for one it lets through unchanged."""
        if isinstance(exc, google_errors.GoogleAPICallError):
            return self._translate(exc, action, handle)
        if isinstance(exc, DataCorruption):
            return IntegrityError(f"{self._name}: could not {action}: it arrived damaged (crc32c mismatch)")
        if isinstance(exc, _NETWORK):
            return Transient(f"{self._name}: could not {action}: {one_line(exc)}")
        if isinstance(exc, google.auth.exceptions.RefreshError):
            if exc.retryable:  # the token service was busy; the credentials may well be fine
                return Transient(f"{self._name}: could not {action}: {one_line(exc)}")
            return PermissionDenied(
                f"{self._name}: could not {action}: the credentials were refused ({one_line(exc)});"
                " check credentials_file or the application default credentials"
            )
        return None

    def _translate(self, exc: google_errors.GoogleAPICallError, action: str, handle: Handle | None) -> ColdvaultError:
        where = f"{self._name}: could not {action}"
        if isinstance(exc, google_errors.NotFound):
            if handle is not None:
                return NotFound(f"{self._name}: {handle} does not exist")
            return TargetError(
                f"{where}: bucket {self._bucket.name!r} does not exist; create it (see docs/OPERATIONS.md)"
            )
        if isinstance(exc, google_errors.PreconditionFailed):
            return AlreadyExists(f"{where}: it already exists")
        if isinstance(exc, google_errors.Forbidden | google_errors.Unauthorized):
            return PermissionDenied(
                f"{where}: access denied (HTTP {exc.code}); check the credentials and the bucket's IAM permissions"
            )
        if exc.code in _BUSY:
            return Transient(f"{where}: HTTP {exc.code}: {_server_message(exc)}", retry_after=_retry_after(exc))
        return TargetError(f"{where}: HTTP {exc.code}: {_server_message(exc)}")


def connect(target: GcsTarget, *, retry: RetryPolicy = SEND_ONCE) -> GcsStore:
    """The adapter for a target; ``retry`` is the policy each request of a resumable upload is retried with."""
    credentials = _credentials(target)
    if credentials is None and target.endpoint is not None:
        credentials = AnonymousCredentials()  # an emulator or a private endpoint that takes no Google sign-in
    try:
        client = storage.Client(
            # Object calls never use the project; naming one spares the SDK looking it up.
            project=target.project or "coldvault",
            credentials=credentials,
            client_options={"api_endpoint": target.endpoint} if target.endpoint else None,
        )
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise ConfigError(
            f"target {target.name}: no Google Cloud credentials found ({one_line(exc)});"
            " set credentials_file or configure application default credentials"
        ) from None
    return GcsStore(
        client,
        target.bucket,
        name=target.name,
        prefix=target.prefix,
        lock_mode=target.lock_mode,
        part_size=target.part_size,
        region=target.region,
        retry=retry,
    )


def _credentials(target: GcsTarget) -> Credentials | None:
    """A service-account key file, else None for the SDK's own chain (environment, gcloud, metadata server)."""
    if target.credentials_file is None:
        return None
    raw = read_secret_file(target.credentials_file, what=f"credentials of target {target.name}").reveal()
    try:
        info = json.loads(raw)
        if isinstance(info, dict):
            return service_account.Credentials.from_service_account_info(info)
    except ValueError:
        pass
    raise ConfigError(
        f"{target.credentials_file}: expected a service-account key (JSON with client_email, private_key"
        f" and token_uri) (credentials of target {target.name})"
    )


def _crc32c(data: BytesLike, part_size: int) -> str:
    """Base64 of the big-endian crc32c, as GCS writes it; the C extension takes bytes only, so one part at a time."""
    crc = 0
    for part in parts(data, part_size):
        crc = google_crc32c.extend(crc, bytes(part))
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def _server_message(exc: google_errors.GoogleAPICallError) -> str:
    """GCS's own sentence from the JSON error body; the SDK's message adds the URL and its internals."""
    with contextlib.suppress(AttributeError, KeyError, TypeError, ValueError):
        return one_line(exc.response.json()["error"]["message"])
    return one_line(exc.message)


def _retry_after(exc: google_errors.GoogleAPICallError) -> float | None:
    return seconds(exc.response.headers.get("Retry-After") if exc.response is not None else None)
