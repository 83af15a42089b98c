"""Back up a source: read, chunk and store in parallel, write the listing, then commit.

Commit order (the crash-safety argument): every pack (data and listing packs,
stored as they fill) → the index naming them → the snapshot manifest.  A crash
before the manifest leaves only unreferenced objects, which a later prune
collects; a visible snapshot always has every object it names.

With several targets the manifest is published through engine.replicas, which puts it
only on targets holding every object it references.  Packs stored before a crash are
remembered in the journal and adopted by the next run instead of being uploaded again.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import stat
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from coldvault import __version__
from coldvault.config.model import Source
from coldvault.engine.pipeline import OrderedPipeline
from coldvault.engine.progress import Progress
from coldvault.engine.replicas import Replicas
from coldvault.engine.segments import Segment, SegmentedReader, SegmentPool
from coldvault.engine.walk import Entry, Excludes, Warn, walk
from coldvault.errors import IntegrityError, NotFound, SourceError, TargetError
from coldvault.repo.blob import BlobKind
from coldvault.repo.chunker import cut_buffer
from coldvault.repo.index import PackRecord, decode_index, encode_index
from coldvault.repo.manifest import STREAM, TREE, Snapshot
from coldvault.repo.repository import PACK_KINDS, Repository
from coldvault.repo.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SOCKET, SYMLINK, Node, encode_node
from coldvault.repo.writer import BlobWriter
from coldvault.storage.handle import Handle, Kind

_SEGMENT_SIZE = 16 << 20
_STDERR_TAIL_LINES = 5


@dataclass(frozen=True)
class BackupOptions:
    workers: int
    compression_level: int
    uploads_in_flight: int = 1  # more pays off only where an upload waits on the network


@dataclass(frozen=True)
class BackupResult:
    snapshot: Snapshot
    targets: tuple[str, ...] = ()  # the targets the manifest went to; the others are lagging


class _Listing:
    """Cuts the stream of listing lines with the chunker and stores the pieces as TREE blobs."""

    def __init__(self, writer: BlobWriter, repo: Repository) -> None:
        self._writer = writer
        self._chunker = repo.format.chunker.new()
        self._flush_at = 2 * repo.format.chunker.max_size
        self._buffer = bytearray()
        self.ids: list[bytes] = []

    def add(self, node: Node) -> None:
        self._buffer += encode_node(node)
        if len(self._buffer) >= self._flush_at:
            self._cut(final=False)

    def finish(self) -> tuple[bytes, ...]:
        self._cut(final=True)
        return tuple(self.ids)

    def _cut(self, *, final: bool) -> None:
        data = bytes(self._buffer)
        chunks = list(cut_buffer(self._chunker, data))
        # The last piece may have been cut short by the end of the buffer, not by content; keep it.
        keep = 0 if final or not chunks else len(chunks[-1])
        for chunk in chunks[: len(chunks) - (1 if keep else 0)]:
            self.ids.append(self._writer.store(BlobKind.TREE, chunk))
        self._buffer = bytearray(data[len(data) - keep :])


@dataclass(frozen=True, slots=True)
class _Item:
    """In a batch, in listing order: a chunk of the file being read (stored in the pool), or the end of
    an entry (added to the listing when its turn comes; a hard link takes its leader's content)."""

    node: Node
    chunk: memoryview | None = None
    segment: Segment | None = None  # the chunk's segment, returned to the pool once it is consumed
    leader: Node | None = None


# Chunks and the entries between them go to the pool in batches: many small files would otherwise
# cost one hand-over each (a future, a lock, waking a thread), more than sealing a small chunk.
# A batch is submitted once its chunks reach _BATCH_BYTES (a large chunk goes at once) or it holds
# _BATCH_ITEMS entries (an incremental backup reads few files but lists many).
_BATCH_BYTES = 1 << 20
_BATCH_ITEMS = 256


# A pack an interrupted run stored without indexing it is adopted by a later run only this long
# after it was stored (by the store's clock); prune counts on it (engine.prune).
ADOPT_WINDOW = timedelta(days=2)
_CLOCK_SKEW = timedelta(hours=1)  # between this host's clock and the store's


class _Run:
    """State of one backup run: the writer, the thread pool and the ordered pipeline into the listing."""

    def __init__(
        self,
        repo: Repository,
        options: BackupOptions,
        progress: Progress,
        replicas: Replicas | None,
        before_commit: Callable[[], None],
    ) -> None:
        self.repo = repo
        self.before_commit = before_commit
        self.progress = progress
        self.replicas = replicas
        self.journal = replicas.journal if replicas is not None else None
        self.warnings: list[str] = []
        self.started = time.monotonic()
        self.writer = BlobWriter(
            repo,
            compression_level=options.compression_level,
            uploads_in_flight=options.uploads_in_flight,
            before_upload=self._remember_pack if self.journal is not None else None,
        )
        if self.journal is not None:
            self.writer.adopt(_unindexed_packs(replicas, repo))
        self.pool = ThreadPoolExecutor(options.workers, thread_name_prefix="coldvault-chunk")
        # The segment pool bounds the file data in flight; a few spare segments keep reading ahead.
        params = repo.format.chunker
        self.segments = SegmentPool(options.workers + 2, max(_SEGMENT_SIZE, 2 * params.max_size))
        self.pipeline: OrderedPipeline[list[_Item]] = OrderedPipeline(self.pool, self._consume, max_items=1024)
        self.reader = SegmentedReader(self.segments, params, self._wait_for_segment)
        self.batch: list[_Item] = []
        self.batch_bytes = 0
        self.listing = _Listing(self.writer, repo)
        self.stats = {"files": 0, "dirs": 0, "other": 0, "bytes": 0, "reused_files": 0}

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.progress.warn(message)

    def add(self, node: Node) -> None:
        """Queue an entry for the listing; it goes in after every chunk read before it."""
        self._queue(_Item(node))

    def add_link(self, node: Node, leader: Node) -> None:
        self._queue(_Item(node, leader=leader))

    def read(self, node: Node, fd: int, expected_size: int | None = None) -> int:
        """Chunk a file or pipe; hashing, sealing and packing run in the pool, ids land in ``node.chunks`` in order."""
        size = 0
        for view, segment in self.reader.chunks(fd, expected_size):
            self.batch_bytes += len(view)
            self._queue(_Item(node, view, segment))
            size += len(view)
            self.progress.advance(len(view))
        return size

    def _queue(self, item: _Item) -> None:
        self.batch.append(item)
        if self.batch_bytes >= _BATCH_BYTES or len(self.batch) >= _BATCH_ITEMS:
            self._submit_batch()

    def _submit_batch(self) -> None:
        batch, chunk_bytes, self.batch, self.batch_bytes = self.batch, self.batch_bytes, [], 0
        if chunk_bytes:  # chunks are never empty
            self.pipeline.submit(self._store_chunks, batch, tag=batch)
        elif batch:
            self.pipeline.put([], batch)  # nothing for the pool: consumed in its turn

    def _wait_for_segment(self) -> None:
        """The segment pool is empty: finished chunks give segments back.  Submitting the batch may
        itself consume every finished result (a batch without chunks is consumed in its turn at once),
        in which case segments are back already."""
        self._submit_batch()
        if self.pipeline:
            self.pipeline.consume_oldest()

    def _store_chunks(self, batch: list[_Item]) -> list[bytes]:
        """In a worker: the ids of the batch's chunks, in order."""
        return self.writer.store_many(BlobKind.DATA, [item.chunk for item in batch if item.chunk is not None])

    def _consume(self, chunk_ids: object, batch: list[_Item]) -> None:
        ids = iter(chunk_ids)  # type: ignore[call-overload]
        for item in batch:
            node = item.node
            if item.chunk is not None:
                node.chunks.append(next(ids))
                self.segments.chunk_consumed(item.segment)  # type: ignore[arg-type]
                continue
            if item.leader is not None:
                node.chunks, node.size = item.leader.chunks, item.leader.size
            self.listing.add(node)
            if node.type == FILE:
                self.progress.advance(0, files=1)

    def _remember_pack(self, record: PackRecord) -> None:
        assert self.journal is not None
        self.journal.record_pack(record.name, encode_index([record]))

    def commit(self, snapshot: Snapshot) -> tuple[Snapshot, tuple[str, ...]]:
        self._submit_batch()
        self.pipeline.drain()
        self.reader.close()
        listing = self.listing.finish()
        records = self.writer.flush()
        self.repo.write_index(records)
        if self.journal is not None:
            self.journal.packs_indexed(r.name for r in records)
        summary = dict(
            self.stats,
            new_chunks=self.writer.new_chunks,
            new_bytes=self.writer.new_bytes,
            stored_bytes=self.writer.stored_bytes,
            duration_ms=int((time.monotonic() - self.started) * 1000),
        )
        final = replace(snapshot, listing=listing, summary=summary, warnings=tuple(self.warnings))
        self.before_commit()
        if self.replicas is None:
            return replace(final, id=self.repo.commit_snapshot(final)), (self.repo.store.name,)
        handle, data = self.repo.seal_snapshot(final)
        targets = self.replicas.publish(handle, data, self._references())
        return replace(final, id=handle.name), tuple(targets)

    def _references(self) -> list[Handle]:
        """Every object a reader of the snapshot needs: its packs, the index objects describing them,
        the config and the key slot."""
        index = self.repo.index
        handles = self.repo.essentials()
        described_by = set()
        for name in self.writer.referenced:
            record = index.pack(name)
            assert record is not None, "a referenced pack is always in the index"
            handles.append(Handle(PACK_KINDS[record.kind], name))
            described_by.add(index.index_object(name))
        handles += [Handle(Kind.INDEX, name) for name in described_by if name is not None]
        return handles

    def close(self) -> None:
        self.pipeline.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.writer.close()


def backup(
    repo: Repository,
    source: Source,
    options: BackupOptions,
    progress: Progress,
    *,
    replicas: Replicas | None = None,
    before_commit: Callable[[], None] = lambda: None,
) -> BackupResult:
    """Back up one source.  ``replicas`` is the targets' store under ``repo`` when there is one: it
    decides where the manifest goes and holds the journal; without it, the manifest goes to repo.store.
    ``before_commit`` may refuse the commit by raising (engine.sessions)."""
    run = _Run(repo, options, progress, replicas, before_commit)
    try:
        progress.start(f"backup {source.name}")
        base = Snapshot(
            source=source.name,
            kind=STREAM if source.is_stream else TREE,
            time=repo.clock(),
            host=socket.gethostname(),
            username=getpass.getuser(),
            tool_version=__version__,
            paths=tuple(str(p) for p in source.paths or ()),
            program=os.path.basename(source.command[0]) if source.command else None,
            listing=(),
            parent=None,
        )
        if source.is_stream:
            _read_command(run, source)
            snapshot, targets = run.commit(base)
        else:
            parent = _parent_snapshot(repo, source)
            _read_tree(run, source, parent)
            snapshot, targets = run.commit(replace(base, parent=parent.id if parent else None))
        progress.finish()
        return BackupResult(snapshot, targets)
    finally:
        run.close()


def _unindexed_packs(replicas: Replicas, repo: Repository) -> list[PackRecord]:
    """Packs an interrupted run stored on at least one target without indexing them.  Rows of packs
    indexed since, or stored nowhere, are dropped."""
    journal = replicas.journal
    assert journal is not None
    candidates: dict[Handle, PackRecord] = {}
    done = []
    for name, blob in journal.unindexed_packs():
        try:
            (record,) = decode_index(blob, what=f"journal record of pack {name[:12]}")
        except (IntegrityError, ValueError):
            done.append(name)  # unreadable: the pack is uploaded again, which costs only time
            continue
        if record.name != name or repo.index.pack(name) is not None:
            done.append(name)
        else:
            candidates[Handle(PACK_KINDS[record.kind], name)] = record
    # A kill between a pack landing and its journal row leaves a pack only the target knows of: ask.
    unconfirmed = [h for h in candidates if not journal.stored_anywhere(h.path)]
    for store in replicas.up() if unconfirmed else []:
        try:
            replicas.missing(store, unconfirmed)  # records what it finds
        except TargetError:
            continue  # an unreachable target is the writes' to find out about
    records = []
    for handle, record in candidates.items():
        if journal.stored_anywhere(handle.path) and _recent(replicas, handle, repo.clock()):
            records.append(record)
        else:
            done.append(record.name)
    journal.packs_indexed(done)
    return records


def _recent(replicas: Replicas, handle: Handle, now: datetime) -> bool:
    """Whether the pack was stored within the adoption window: prune may delete older ones that no
    index lists (engine.prune), so they are uploaded again instead.  Asking also proves it is there."""
    try:
        created = replicas.head(handle).created
    except (NotFound, TargetError):
        return False
    return created is not None and created > now - ADOPT_WINDOW + _CLOCK_SKEW


def _parent_snapshot(repo: Repository, source: Source) -> Snapshot | None:
    """The latest snapshot of this source from this host: its listing tells which files are unchanged."""
    host = socket.gethostname()
    paths = tuple(str(p) for p in source.paths or ())
    candidates = [s for s in repo.snapshots() if s.source == source.name and s.host == host and s.paths == paths]
    return candidates[-1] if candidates else None


def _read_tree(run: _Run, source: Source, parent: Snapshot | None) -> None:
    previous = _ParentCursor(run.repo.listing(parent) if parent else iter(()))
    leaders: dict[tuple[int, int], Node] = {}
    excludes = Excludes(source.exclude)
    for entry in walk([os.fsencode(p) for p in source.paths or ()], excludes, source.one_file_system, run.warn):
        node = _node(entry, run.warn)
        if node is None:
            continue
        if node.type != FILE:
            run.stats["dirs" if node.type == DIR else "other"] += 1
            run.add(node)
            continue
        st = entry.stat
        if st.st_nlink > 1:
            leader = leaders.get((st.st_dev, st.st_ino))
            if leader is not None:
                node.link_group = leader.link_group
                run.stats["files"] += 1
                run.add_link(node, leader)
                continue
            node.link_group = len(leaders)
        before = previous.find(node.path)
        if (
            before is not None
            and before.type == FILE
            and _unchanged(before, st)
            and run.writer.reuse(BlobKind.DATA, before.chunks)
        ):
            node.chunks, node.size = before.chunks, before.size
            run.stats["reused_files"] += 1
            run.progress.advance(node.size)
        else:
            try:
                node.size = _read_file(run, node, entry)
            except OSError as exc:
                run.warn(f"cannot read {os.fsdecode(entry.absolute)}: {exc.strerror or exc}; skipped")
                continue
        if node.link_group is not None:
            leaders[(st.st_dev, st.st_ino)] = node
        run.stats["files"] += 1
        run.stats["bytes"] += node.size
        run.add(node)


def _read_file(run: _Run, node: Node, entry: Entry) -> int:
    # O_NONBLOCK: if the file was swapped for a FIFO since lstat, open must not hang.
    fd = entry.open(os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, "no longer a regular file")
        size = run.read(node, fd, entry.stat.st_size)
        after, before = os.fstat(fd), entry.stat
        if (size, after.st_mtime_ns, after.st_ctime_ns) != (after.st_size, before.st_mtime_ns, before.st_ctime_ns):
            # The stored copy may mix old and new content: say so, and make the next backup read it again.
            run.warn(f"{os.fsdecode(entry.absolute)} changed while it was read; the snapshot holds what was read")
            node.ctime_ns = 0
        return size
    finally:
        os.close(fd)


class _ParentCursor:
    """Walks the parent snapshot's listing alongside the source, in the same order, in constant memory.

    The walk and every listing are sorted by path components, so one forward pass finds each
    entry's previous version; were the orders ever to differ, files would be read again, nothing worse.
    """

    def __init__(self, nodes: Iterator[Node]) -> None:
        self._nodes = nodes
        self._advance()

    def find(self, path: bytes) -> Node | None:
        key = path.split(b"/")
        while self._current is not None and self._key < key:
            self._advance()
        return self._current if self._current is not None and self._key == key else None

    def _advance(self) -> None:
        self._current = next(self._nodes, None)
        self._key = self._current.path.split(b"/") if self._current is not None else []


def _unchanged(before: Node, st: os.stat_result) -> bool:
    return (
        before.size == st.st_size
        and before.mtime_ns == st.st_mtime_ns
        and before.ctime_ns == st.st_ctime_ns
        and before.inode == st.st_ino
    )


def _node(entry: Entry, warn: Warn) -> Node | None:
    st = entry.stat
    node = Node(
        path=entry.relative,
        type=FILE,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        mtime_ns=st.st_mtime_ns,
    )
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFREG:
        node.size, node.ctime_ns, node.inode = st.st_size, st.st_ctime_ns, st.st_ino
    elif kind == stat.S_IFDIR:
        node.type = DIR
    elif kind == stat.S_IFLNK:
        node.type = SYMLINK
        try:
            node.target = entry.readlink()
        except OSError as exc:
            warn(f"cannot read symlink {os.fsdecode(entry.absolute)}: {exc.strerror}; skipped")
            return None
    elif kind in (stat.S_IFCHR, stat.S_IFBLK):
        node.type, node.rdev = (CHARDEV if kind == stat.S_IFCHR else BLOCKDEV), st.st_rdev
    elif kind == stat.S_IFIFO:
        node.type = FIFO
    elif kind == stat.S_IFSOCK:
        node.type = SOCKET
    else:
        warn(f"{os.fsdecode(entry.absolute)} has an unknown file type; skipped")
        return None
    return node


def _without_coldvault_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """A dump command must not inherit $COLDVAULT_PASSPHRASE: it could log it, or write it into the dump."""
    return {name: value for name, value in environ.items() if not name.startswith("COLDVAULT_")}


def _read_command(run: _Run, source: Source) -> None:
    """Stream a command's stdout into the chunker; no temporary file, no snapshot if it fails."""
    assert source.command is not None
    program = source.command[0]
    try:
        proc = subprocess.Popen(
            source.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_without_coldvault_secrets(os.environ),
        )
    except OSError as exc:
        raise SourceError(f"source {source.name!r}: cannot run {program!r}: {exc.strerror}; check 'command'") from None
    assert proc.stdout is not None and proc.stderr is not None
    tail: deque[bytes] = deque(maxlen=_STDERR_TAIL_LINES)
    reader = threading.Thread(target=lambda: tail.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    now_ns = int(run.repo.clock().timestamp() * 1e9)
    node = Node(
        path=os.fsencode(source.stream_filename),
        type=FILE,
        mode=0o600,
        uid=os.getuid(),
        gid=os.getgid(),
        mtime_ns=now_ns,
    )
    try:
        node.size = run.read(node, proc.stdout.fileno())
    except BaseException:
        proc.kill()  # it would block forever on a full pipe nobody reads
        raise
    finally:
        returncode = proc.wait()
        reader.join()
    if returncode != 0:
        stderr = " | ".join(line.decode("utf-8", "replace").strip() for line in tail if line.strip())
        # Popen gives a death by signal as the signal's number negated, not an exit status.
        how = (
            f"was killed by signal {_signal_name(-returncode)}"
            if returncode < 0
            else f"exited with status {returncode}"
        )
        raise SourceError(
            f"source {source.name!r}: {program!r} {how}; no snapshot was committed"
            + (f"; stderr: {stderr}" if stderr else "")
        )
    run.stats.update(files=1, bytes=node.size)
    run.add(node)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal past SIGRTMIN has no name of its own
        return str(number)
