"""Deduplicate, seal, pack and upload blobs; safe to call from many worker threads.

Memory stays bounded: a pack of each kind is filling while at most
``uploads_in_flight`` finished ones are uploaded.  The worker whose blob does not
fit the filling pack hands that pack to the uploader, waiting for a free slot
first, and only then starts the next pack, in the buffer a finished upload gave
back; the other workers wait meanwhile.  So a backup holds uploads_in_flight + 1
pack buffers of file data, never more, whatever the speed of the target.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import zstandard

from coldvault.config.model import DEFAULT_COMPRESSION_LEVEL
from coldvault.repo.blob import BlobKind, seal_blob
from coldvault.repo.index import PackRecord
from coldvault.repo.pack import PackBuilder
from coldvault.repo.repository import Repository
from coldvault.storage.handle import object_name


class BlobWriter:
    def __init__(
        self,
        repo: Repository,
        *,
        compression_level: int = DEFAULT_COMPRESSION_LEVEL,
        uploads_in_flight: int = 1,
        before_upload: Callable[[PackRecord], None] | None = None,
    ) -> None:
        self._repo = repo
        self._before_upload = before_upload
        self._level = compression_level
        self._claimed: set[tuple[BlobKind, bytes]] = set()
        self._lock = threading.Lock()
        self._switched = threading.Condition(self._lock)  # a kind's next pack is ready to fill
        self._spare_buffers: list[bytearray] = []
        # None while a worker hands the full pack of that kind to the uploader.
        self._builders: dict[BlobKind, PackBuilder | None] = {kind: PackBuilder(kind) for kind in BlobKind}
        self._uploader = ThreadPoolExecutor(uploads_in_flight, thread_name_prefix="coldvault-upload")
        self._slots = threading.BoundedSemaphore(uploads_in_flight)
        self._uploads: list[Future[PackRecord]] = []
        self._failure: BaseException | None = None  # the first upload that failed
        self._local = threading.local()
        self._known = repo.index  # loaded here, once, before worker threads race to load it
        self._adopted: list[PackRecord] = []
        self.referenced: set[str] = set()  # every pack holding a chunk this writer was given
        self.new_chunks = 0
        self.new_bytes = 0  # plaintext bytes of chunks not seen before
        self.stored_bytes = 0  # bytes of sealed blobs written into packs

    def store(self, kind: BlobKind, plaintext: bytes | memoryview) -> bytes:
        """Return the chunk id; seal and pack the chunk only if the repository lacks it."""
        return self.store_many(kind, [plaintext])[0]

    def store_many(self, kind: BlobKind, plaintexts: Sequence[bytes | memoryview]) -> list[bytes]:
        """The chunk ids, in order; each chunk the repository lacks is sealed and packed."""
        chunk_ids = [self._repo.subkeys.chunk_id(plaintext) for plaintext in plaintexts]
        new = [i for i, chunk_id in enumerate(chunk_ids) if self._claim(kind, chunk_id)]
        compressed = self._compress([plaintexts[i] for i in new])
        for i, frame in zip(new, compressed, strict=True):
            blob = seal_blob(self._repo.subkeys.data, kind, chunk_ids[i], plaintexts[i], frame)
            self._add(kind, chunk_ids[i], blob, len(plaintexts[i]))
        return chunk_ids

    def _claim(self, kind: BlobKind, chunk_id: bytes) -> bool:
        """Whether the caller is to store the chunk: the repository lacks it and nobody else claimed it."""
        location = self._known.lookup_live(kind, chunk_id)
        if location is not None:
            self.referenced.add(location.pack)
            return False
        with self._lock:
            if (kind, chunk_id) in self._claimed:
                return False
            self._claimed.add((kind, chunk_id))
        return True

    def _compress(self, plaintexts: list[bytes | memoryview]) -> Sequence[bytes | memoryview]:
        compressor = self._compressor()
        if len(plaintexts) < 2:
            return [compressor.compress(plaintext) for plaintext in plaintexts]
        # Many chunks (small files) in one call, which lets go of the GIL once for all of them instead of
        # once per chunk: each time a worker takes the GIL back, the reading thread may wait for it.
        # The frames are those compress() makes, byte for byte.
        return [memoryview(frame) for frame in compressor.multi_compress_to_buffer(plaintexts, threads=1)]

    def reuse(self, kind: BlobKind, chunk_ids: Iterable[bytes]) -> bool:
        """Whether every chunk is already stored; if so, they count as given to this writer."""
        locations = [self._known.lookup_live(kind, c) for c in chunk_ids]
        if any(location is None for location in locations):
            return False
        self.referenced.update(location.pack for location in locations if location is not None)
        return True

    def adopt(self, records: Iterable[PackRecord]) -> None:
        """Packs an interrupted run stored but never indexed: their chunks count as stored, and they go
        into this run's index, so that resuming does not upload them again.  Call before ``store``."""
        for record in records:
            if self._known.pack(record.name) is None:
                self._known.add(record)
                self._adopted.append(record)

    def flush(self) -> list[PackRecord]:
        """Store every partial pack, wait for all uploads, and return what was stored (raising the first failure)."""
        for kind in BlobKind:
            with self._lock:
                builder = self._filling(kind)
                self._builders[kind] = self._new_builder(kind)
            if not builder.empty:
                self._submit(builder)
        uploads, self._uploads = self._uploads, []
        records = [future.result() for future in uploads]
        records, self._adopted = self._adopted + records, []
        self.referenced.update(record.name for record in records)
        return records

    def close(self) -> None:
        self._uploader.shutdown(wait=True, cancel_futures=True)

    def _compressor(self) -> zstandard.ZstdCompressor:
        compressor = getattr(self._local, "compressor", None)
        if compressor is None:  # ZstdCompressor is not thread-safe: one per worker thread
            compressor = self._local.compressor = zstandard.ZstdCompressor(level=self._level)
        return compressor

    def _add(self, kind: BlobKind, chunk_id: bytes, blob: bytes, raw_length: int) -> None:
        while True:  # at most twice: a new pack takes any blob
            with self._lock:
                builder = self._filling(kind)
                if builder.fits(len(blob), self._repo.format.pack_size):
                    self._append(builder, chunk_id, blob, raw_length)
                    return
                self._builders[kind] = None  # this thread starts the next pack; the others wait for it
            try:
                self._submit(builder)
            finally:
                with self._lock:
                    self._builders[kind] = self._new_builder(kind)
                    self._switched.notify_all()

    def _filling(self, kind: BlobKind) -> PackBuilder:
        """The pack of this kind that takes blobs now; called with the lock held."""
        while (builder := self._builders[kind]) is None:
            self._switched.wait()
        return builder

    def _append(self, builder: PackBuilder, chunk_id: bytes, blob: bytes, raw_length: int) -> None:
        """Called with the lock held."""
        builder.add(chunk_id, blob, raw_length)
        self.new_chunks += 1
        self.new_bytes += raw_length
        self.stored_bytes += len(blob)

    def _new_builder(self, kind: BlobKind) -> PackBuilder:
        """Called with the lock held."""
        return PackBuilder(kind, self._spare_buffers.pop() if self._spare_buffers else None)

    def _submit(self, builder: PackBuilder) -> None:
        self._slots.acquire()
        try:
            future = self._uploader.submit(self._upload, builder)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._note_failure)
        with self._lock:
            self._uploads.append(future)
        if self._failure is not None:
            raise self._failure  # stop reading sources as soon as a pack is lost

    def _note_failure(self, future: Future[PackRecord]) -> None:
        if not future.cancelled() and future.exception() is not None and self._failure is None:
            self._failure = future.exception()

    def _upload(self, builder: PackBuilder) -> PackRecord:
        try:
            data, entries = builder.finish(self._repo.subkeys.meta)
            with data:
                record = PackRecord.of(object_name(data), builder.kind, len(data), entries)
                if self._before_upload is not None:
                    self._before_upload(record)  # a write-ahead record: see engine.journal
                self._repo.write_pack(builder.kind, data, record.name)
            if _unviewed(builder.buffer):
                with self._lock:
                    self._spare_buffers.append(builder.buffer)
            return record
        finally:
            self._slots.release()


def _unviewed(buffer: bytearray) -> bool:
    """Whether no view of the buffer is left.  A store whose upload failed may still hold one (in an
    exception's frames, or an SDK's retry state); such a buffer is left to the garbage collector
    rather than rewritten under that view."""
    try:
        buffer.append(0)  # resizing is refused while any view exists
    except BufferError:
        return False
    del buffer[-1]
    return True
