"""Restore a snapshot into a directory, or a stream snapshot to a byte stream.

Files appear under their real name only when complete: each is written as an
unnamed file (O_TMPFILE) and linked into place after every chunk was verified
and written, so a failed restore never leaves a file that looks whole, and one
that is killed leaves nothing of the files it was writing.  Where the
filesystem has no unnamed files, a temporary name and a rename do the same,
except that a kill leaves the temporary files.

Safety: the listing is untrusted.  Paths are checked when decoded (no '..',
no absolute paths), and every entry is created relative to a directory file
descriptor reached from the destination with O_NOFOLLOW at each step, so a
symlink in the listing (or planted in the destination) can never redirect a
write outside it.  Chunks are verified by their keyed hash before a byte is
written.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import itertools
import os
import secrets
import stat
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from coldvault.engine.forked import Counter, Forked, may_fork
from coldvault.engine.pipeline import OrderedPipeline
from coldvault.engine.progress import Progress
from coldvault.engine.replicas import Replicas
from coldvault.errors import DestinationError, IntegrityError, UsageError
from coldvault.repo.blob import BlobKind
from coldvault.repo.index import Location
from coldvault.repo.manifest import STREAM, Snapshot
from coldvault.repo.repository import Repository
from coldvault.repo.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SOCKET, SYMLINK, Node, check_relative_path
from coldvault.storage.direct_io import DirectFiles, SlicedWriter, pwrite_all
from coldvault.storage.forwarding import ForwardingStore
from coldvault.storage.local import LocalStore
from coldvault.storage.memory import MemoryStore
from coldvault.storage.protocol import Store

_IN_FLIGHT_BYTES = 96 << 20  # per lane (see _Restorer)
_MAX_OPENED_DIRS = 64  # directories kept open to reach others from (see _Destination)
_MAX_OPEN_FILES = 200  # each file being restored holds two descriptors; stay well below the usual 1024
_MAX_LARGE_READS = 16  # reads in flight in the large lane (see _Restorer): it needs few, each up to _READ_SIZE
# Large files open at once in their lane (see _Restorer): a read holds up to 4 MiB of stored bytes,
# which for files that compress well can be hundreds of large files, each with two descriptors.
_MAX_LARGE_FILES = 16
# Chunks lying close together in a pack (small files backed up one after another, or the run of a
# large file) are fetched with one range read of up to _READ_SIZE, skipping at most _READ_GAP bytes of
# blobs nobody asked for: one request instead of one per chunk, which is what a restore of many small
# files from a cloud waits on.
_READ_SIZE = 4 << 20
_READ_GAP = 256 << 10
# Files from this size on are large: restored ahead of the listing (see _Restorer) and written around
# the page cache (storage.direct_io), in aligned slices: their bytes are not read again soon, a
# restore should not evict the host's working set, and copying into freshly allocated cache pages
# is the largest cost of a restore on a virtual machine that hands free memory back to its host.
# Smaller files are buffered: a direct write waits for the device, which costs more than it saves
# for a few pages.
_LARGE_FROM = 1 << 20
# Entries of the listing between two looks at what a forked child reported (see _Restorer.run): a look
# is a system call (~3 µs), which at every entry cost a restore of the bench tree (6,500 entries)
# 20 ms; this many small files keep the main thread about 10 ms.
_CHILD_POLL_EVERY = 64
_AS_ROOT = os.geteuid() == 0
_OPEN_FILES_DIR = "/proc/self/fd"


@dataclass
class RestoreResult:
    files: int = 0
    bytes: int = 0
    warnings: list[str] = field(default_factory=list)


def select_nodes(nodes: Iterable[Node], path: str | None, *, required: bool = True) -> Iterator[Node]:
    """The entries at and below ``path`` (and the directories above it), or all of them; ``required``:
    a path that matches nothing is the user's mistake."""
    if not path:
        yield from nodes
        return
    try:
        wanted = check_relative_path(os.fsencode(path.strip("/")), "restore path")
    except IntegrityError:  # the user's typo, not damage: say so with a usage error
        raise UsageError(f"--path {path!r} must name an entry without '.', '..' or empty components") from None
    prefix = wanted + b"/"
    found = False
    for node in nodes:
        if node.path == wanted or node.path.startswith(prefix):
            found = True
            yield node
        elif wanted.startswith(node.path + b"/") and node.type == DIR:
            yield node
    if required and not found:
        raise UsageError(f"{path!r} is not in this snapshot; see 'coldvault ls SNAPSHOT'")


class _Destination:
    """Creates entries below a root directory without ever following a symlink on the way."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._root = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        # parent()'s directory, a descriptor of its own rather than one borrowed from _opened: reaching
        # another directory while it is in use (a hard link's leader) may close the borrowed one.
        self._cached: tuple[bytes, int] | None = None
        # Descriptors of directories reached already, by path, least recently used first: a path is
        # walked from its nearest opened ancestor, not from the root component by component (which
        # cost a restore of the bench tree 7,200 opens of directories on the main thread).
        self._opened: OrderedDict[bytes, int] = OrderedDict()
        try:
            with os.scandir(self._root) as entries:
                self.was_empty = next(entries, None) is None
        except BaseException:
            os.close(self._root)
            raise

    def close(self) -> None:
        self._drop_cache()
        while self._opened:
            os.close(self._opened.popitem()[1])
        os.close(self._root)

    def parent(self, path: bytes) -> tuple[int, bytes]:
        """A descriptor of the directory holding ``path`` (owned by this object), and the final name."""
        folder, _, name = path.rpartition(b"/")
        if self._cached is None or self._cached[0] != folder:
            fd = self.open_dir(folder)
            self._drop_cache()
            self._cached = (folder, fd)
        return self._cached[1], name

    def open_dir(self, folder: bytes) -> int:
        """A new descriptor for ``folder`` below the root, creating missing directories (caller closes it)."""
        return os.dup(self._reach(folder))

    def _reach(self, folder: bytes) -> int:
        """A descriptor for ``folder`` owned by the cache of opened directories: from its nearest
        opened ancestor (or the root), each further component opened with O_NOFOLLOW."""
        above, missing = folder, []
        while above and above not in self._opened:
            above, _, name = above.rpartition(b"/")
            missing.append(name)
        fd = self._root
        if above:
            fd = self._opened[above]
            self._opened.move_to_end(above)
        for part in reversed(missing):
            try:
                fd = _open_or_make_dir(part, fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise IntegrityError(
                        f"refusing to restore below {os.fsdecode(folder)!r}: {os.fsdecode(part)!r} is not a directory"
                        " (a symlink in the snapshot or the destination would lead outside it)"
                    ) from None
                raise
            above = above + b"/" + part if above else part
            self._opened[above] = fd
            if len(self._opened) > _MAX_OPENED_DIRS:  # the oldest: never the one the walk stands on
                os.close(self._opened.popitem(last=False)[1])
        return fd

    def _drop_cache(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None


def _open_or_make_dir(name: bytes, dir_fd: int) -> int:
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):  # the other lane's process made it meanwhile
            os.mkdir(name, 0o700, dir_fd=dir_fd)
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)


def _clear(name: bytes, dir_fd: int) -> None:
    """Remove a non-directory in the way; unlink never follows a symlink."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise IntegrityError(
            f"cannot restore {os.fsdecode(name)!r}: a directory stands there (left by an earlier restore, or the"
            " snapshot lists entries below it); restore into an empty directory"
        )
    os.unlink(name, dir_fd=dir_fd)


@dataclass(eq=False)
class _OpenFile:
    """A file being restored into its directory: unnamed until complete where the filesystem allows it
    (O_TMPFILE: if the restore dies, nothing of it is left), else under a temporary name.

    A large file is created when planned, and the workers write its chunks as they come (``sliced``).
    A small one is created only when all its chunks are verified, by the main thread that links it:
    its chunks wait in ``held`` meanwhile.  Handing a small file's descriptor from the thread that
    creates it to a worker and back, each hand-over waiting for the interpreter lock, made restoring
    the bench tree's 6,070 small files take 2.3 s instead of 1.8–2.0 s (docs/BENCHMARKS.md)."""

    node: Node
    dir_fd: int  # its own descriptor of the directory: the destination's cache moves on
    temp_name: bytes
    final_name: bytes
    sliced: SlicedWriter | None = None
    fd: int = -1
    named: bool = False  # whether it exists under temp_name
    sealed: bool = False
    held: list[tuple[int, bytes]] = field(default_factory=list)  # (offset, chunk) of a small file

    def write(self, data: bytes, offset: int, *, zeros: bool) -> None:
        """One verified chunk at its offset; all-zero chunks become holes (sparse files stay sparse)."""
        if self.sliced is not None:
            self.sliced.write(data, offset, zeros=zeros)
        elif not zeros:
            self.held.append((offset, data))

    def create(self, create: Callable[[bytes, int], tuple[int, bool]]) -> None:
        """Create a small file with ``create`` (see _Restorer._create) and write its held chunks."""
        self.fd, self.named = create(self.temp_name, self.dir_fd)
        end = 0
        for offset, data in self.held:
            pwrite_all(self.fd, data, offset)
            end = max(end, offset + len(data))
        self.held = []
        if end != self.node.size:  # it ends in a hole
            os.ftruncate(self.fd, self.node.size)

    def seal(self) -> None:
        """Every chunk is written: give the file its length and metadata (through its descriptor)."""
        if self.sliced is not None:
            if self.sliced.missing:
                raise IntegrityError(f"{os.fsdecode(self.node.path)}: {self.sliced.missing} bytes were never written")
            os.ftruncate(self.fd, self.node.size)  # also cuts the padding of the last direct write
        _apply_metadata(self.node, self.fd)
        self.sealed = True

    def publish(self) -> None:
        """Give the file its real name, replacing whatever took that name meanwhile."""
        if not self.named:
            try:
                os.link(_by_descriptor(self.fd), self.final_name, dst_dir_fd=self.dir_fd)
            except FileExistsError:  # replace it, as a rename does: through a temporary name
                os.link(_by_descriptor(self.fd), self.temp_name, dst_dir_fd=self.dir_fd)
                self.named = True
        os.close(self.fd)
        self.fd = -1
        if self.named:
            os.rename(self.temp_name, self.final_name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        os.close(self.dir_fd)
        self.dir_fd = -1

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.dir_fd >= 0:
            if self.named:
                with contextlib.suppress(OSError):
                    os.unlink(self.temp_name, dir_fd=self.dir_fd)
            os.close(self.dir_fd)
            self.dir_fd = -1


def _by_descriptor(fd: int) -> str:
    """A path naming an open file itself, for linking an unnamed file into place (linkat with
    AT_SYMLINK_FOLLOW: Linux gives that file, not what the path resolves to, a name)."""
    return f"{_OPEN_FILES_DIR}/{fd}"


@dataclass(frozen=True)
class _Write:
    """One chunk of a file: where it lies in the repository and where it goes in the file."""

    file: _OpenFile
    chunk_id: bytes
    offset: int
    location: Location


@dataclass
class _Read:
    """Chunks of one pack that one worker fetches with one range read and writes into their files (or
    holds, for small files); the large files all of whose chunks are in this read, which that worker
    seals too; and, in the lane's order, every file whose last chunk is planned here, created if small
    and linked into place when the read is consumed.  Only the main thread creates and links: on a
    filesystem slow to create files, workers changing the same directory would spin on its lock."""

    writes: list[_Write] = field(default_factory=list)
    complete: list[_OpenFile] = field(default_factory=list)
    ends: list[_OpenFile] = field(default_factory=list)
    bytes: int = 0  # of plaintext: the weight in the pipeline

    def takes(self, location: Location) -> bool:
        """Whether a chunk at ``location`` joins this read."""
        return not self.writes or _joins(self.writes[0].location, self.writes[-1].location, location)


def _joins(first: Location, last: Location, location: Location) -> bool:
    """Whether a chunk at ``location`` joins the range read of chunks ``first`` to ``last``: the same
    pack, a little further on, within _READ_SIZE."""
    end = last.offset + last.length
    return (
        location.pack == first.pack
        and end <= location.offset <= end + _READ_GAP
        and location.offset + location.length - first.offset <= _READ_SIZE
    )


class _Lane:
    """Files restored in one order: the read being planned, a pipeline whose own workers write the
    reads, and, on the main thread and in that order, the files linked into place once whole."""

    def __init__(
        self,
        name: str,
        workers: int,
        max_reads: int,
        progress: Progress,
        result: RestoreResult,
        create: Callable[[bytes, int], tuple[int, bool]],
    ) -> None:
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix=f"coldvault-restore-{name}")
        self.pipeline: OrderedPipeline[_Read] = OrderedPipeline(
            self.pool, self._consume, max_bytes=_IN_FLIGHT_BYTES, max_items=max_reads
        )
        self.read = _Read()  # being planned
        self.unfinished: dict[int, _OpenFile] = {}  # opened and not yet published or discarded
        self.progress = progress
        self.result = result
        self.create = create  # a new file in a directory (see _Restorer._create)

    def take_read(self) -> _Read:
        read, self.read = self.read, _Read()
        return read

    def close(self) -> None:
        """After a failure or at the end: nothing runs or stays open."""
        self.pipeline.cancel()
        # Wait for running writes before closing their descriptors: a closed number can be
        # reused by the next open, and a late write would land in the wrong file.
        self.pool.shutdown(wait=True, cancel_futures=True)
        for open_file in self.unfinished.values():
            open_file.discard()
        self.unfinished.clear()

    def _consume(self, _: object, read: _Read) -> None:
        """On the main thread, in the lane's order, once the read's chunks are written."""
        self.progress.advance(read.bytes)
        for file in read.ends:
            del self.unfinished[id(file)]
            try:
                with _destination_errors(file.node.path):
                    if file.sliced is None:
                        file.create(self.create)
                    if not file.sealed:  # small, or its chunks span reads: every one is written now
                        file.seal()
                    file.publish()
            except BaseException:
                file.discard()
                raise
            self.result.files += 1
            self.result.bytes += file.node.size
            self.progress.advance(0, files=1)


def _drawn(files: Iterable[Node], numbers: Counter, *, unless: Callable[[], bool]) -> Iterator[Node]:
    """The files this process restores, of the large files both processes go through in the same
    order: those whose numbers it draws (see forked.Counter), each file drawn by one process."""
    wanted = numbers.draw(unless=unless)
    for number, node in enumerate(files):
        if wanted is None:
            return
        if number == wanted:
            yield node
            wanted = numbers.draw(unless=unless)


def _never() -> bool:
    return False


def _temp_prefix() -> bytes:
    return b".coldvault-" + secrets.token_hex(8).encode() + b"-"


def _goes_ahead(node: Node) -> bool:
    """Large files without hard links are restored ahead of the listing; a hard link waits for its
    group's first file to be in place, so those keep the listing's order."""
    return node.type == FILE and node.size >= _LARGE_FROM and node.link_group is None


def _in_order(nodes: Iterable[Node]) -> Iterator[Node]:
    """The nodes, refusing a listing out of order: strictly increasing by components, as every writer
    emits them, which alone rules out duplicate entries and a file and a directory claiming one name."""
    previous: list[bytes] = []
    for node in nodes:
        key = node.path.split(b"/")
        if key <= previous:
            raise IntegrityError(f"the snapshot's listing is out of order at {os.fsdecode(node.path)!r}")
        previous = key
        yield node


class _Restorer:
    """Restores the listing in two lanes when the destination starts empty.  The main thread creates
    and links every file, and writes the small ones, which for small files is bound by Python and
    system calls (one core, ~100 µs a file) while the workers wait; for large files it is the other
    way round.  So large files are taken from a second pass over the listing and restored ahead,
    whenever their lane has room, between the entries of the first: their reads keep the other core
    and the device busy meanwhile.  Each lane has its own workers, so that a small file's read never
    queues behind a large one's.  Into a destination that holds something already, everything keeps
    the listing's order, where each directory entry clears what is in its way before anything is
    created below it.

    Reading from memory or one local directory, the large files' lane runs in a child process (see
    engine.forked): decrypting and copying hold the interpreter lock, so from threads the two lanes
    shared little more than one core.  When this process is done with its own lane, it takes a share
    of the large files the child has not reached (see _alongside)."""

    def __init__(
        self, repo: Repository, dest: Path, workers: int, progress: Progress, *, shared: Counter | None
    ) -> None:
        self.repo = repo
        self.progress = progress
        self.workers = workers
        # Given when the large lane runs in a child process (see run): the two draw large files from it.
        self.shared = shared
        self.dest = _Destination(dest)
        self.result = RestoreResult()
        self.listed = _Lane("listed", workers, _MAX_OPEN_FILES, progress, self.result, self._create)
        self.large = _Lane("large", workers, _MAX_LARGE_READS, progress, self.result, self._create)
        self.waiting: _Read | None = None  # the large lane's next read, when it had no room
        self.dirs: list[Node] = []
        self.links: dict[int, bytes] = {}
        # Directories this restore created: nothing stands in them that would need clearing first (the
        # listing names each entry once), which saves a lookup per file.  Whatever another program
        # puts there meanwhile is still never followed: creating refuses an existing name, linking
        # replaces it.
        self.made: set[bytes] = set()
        self.temp_prefix = _temp_prefix()
        # An unnamed file gets its name through /proc (see _by_descriptor); without /proc, names first.
        self.unnamed_files = os.path.isdir(_OPEN_FILES_DIR)
        self.temp_count = itertools.count()
        self.zeros = bytes(repo.format.chunker.max_size)
        self.direct = DirectFiles()

    def warn(self, message: str) -> None:
        self.result.warnings.append(message)
        self.progress.warn(message)

    def run(self, listing: Callable[[], Iterable[Node]], large: Callable[[], Iterable[Node]]) -> RestoreResult:
        """``listing`` gives the entries; ``large`` gives afresh on each call those of the listing's entries
        that may be large files, and no fewer (the large lane reads them, and a parent that takes a
        share of a forked lane's files reads them again)."""

        def large_files() -> Iterator[Node]:
            return (n for n in _in_order(large()) if _goes_ahead(n))

        with contextlib.ExitStack() as cleanup:  # after a failure or at the end, each of these, whatever the others do
            cleanup.callback(self.direct.close)
            cleanup.callback(self.dest.close)
            cleanup.callback(self.large.close)
            cleanup.callback(self.listed.close)
            large_reads, child, shared = None, None, self.shared
            if self.dest.was_empty:
                if shared is not None:
                    child = Forked(
                        lambda progress: self._restore_large(_drawn(large_files(), shared, unless=_never), progress),
                        self.progress,
                    )
                    cleanup.callback(child.kill)
                else:
                    large_reads = self._large_reads(large_files())
                    cleanup.callback(large_reads.close)
            for number, node in enumerate(_in_order(listing())):
                if self.dest.was_empty:
                    if _goes_ahead(node):
                        continue
                    if large_reads is not None:
                        self._feed(large_reads, wait=False)
                    elif child is not None and number % _CHILD_POLL_EVERY == 0:
                        child.poll()
                with _destination_errors(node.path):
                    self._restore(node)
            self._submit(self.listed, self.listed.take_read())
            if child is not None and shared is not None:
                self.listed.pipeline.drain()
                large_reads = self._alongside(child, shared, large_files())
                cleanup.callback(large_reads.close)
            if large_reads is not None:
                self._feed(large_reads, wait=True)
            self.listed.pipeline.drain()
            self.large.pipeline.drain()
            if child is not None:
                self._add(child.wait())
            for node in reversed(self.dirs):  # children first: writing into a directory changes its mtime
                with _destination_errors(node.path):
                    fd = self.dest.open_dir(node.path)
                    try:
                        _apply_metadata(node, fd)
                    finally:
                        os.close(fd)
        return self.result

    def _alongside(self, child: Forked, shared: Counter, files: Iterator[Node]) -> Iterator[_Read]:
        """Done with its own lane, this process restores a share of the large files the child has
        not reached, in its own large lane: restoring the benchmark tree, it used to wait ~0.5 s
        for the child at the end.  The child's reports are relayed between reads."""
        for read in self._large_reads(_drawn(files, shared, unless=child.ended)):
            child.poll()
            yield read

    def _restore_large(self, files: Iterator[Node], progress: Progress) -> RestoreResult:
        """In a child process (see engine.forked): the large files' lane alone, with a lane, result and
        names for temporary files of its own (the parent's counter gives the same names)."""
        self.progress, self.result = progress, RestoreResult()
        self.large = _Lane("large", self.workers, _MAX_LARGE_READS, progress, self.result, self._create)
        self.temp_prefix = _temp_prefix()
        try:
            self._feed(self._large_reads(files), wait=True)
            self.large.pipeline.drain()
        finally:
            self.large.close()  # after a failure: discards the files not linked into place
        return self.result

    def _add(self, other: object) -> None:
        assert isinstance(other, RestoreResult)
        self.result.files += other.files
        self.result.bytes += other.bytes
        self.result.warnings += other.warnings

    def _feed(self, reads: Iterator[_Read], *, wait: bool) -> None:
        """Submit the large lane's reads while it has room; with ``wait``, every one that is left."""
        lane = self.large
        lane.pipeline.poll()
        while True:
            if self.waiting is None:
                if len(lane.unfinished) >= _MAX_LARGE_FILES and len(lane.pipeline):
                    # The next read would open more files: first some must be linked into place.
                    if not wait:
                        return
                    lane.pipeline.consume_oldest()
                    continue
                self.waiting = next(reads, None)
                if self.waiting is None:
                    return
            if not wait and not lane.pipeline.has_room(self.waiting.bytes):
                return
            read, self.waiting = self.waiting, None
            self._submit(lane, read)

    def _large_reads(self, nodes: Iterator[Node]) -> Iterator[_Read]:
        """The large files' reads; each file is created (with the directories above it) when its
        first read is asked for.  At _MAX_LARGE_FILES open files the read being planned goes out as it
        is, and empty ones follow until files were linked into place (_feed consumes meanwhile)."""
        lane = self.large
        for node in nodes:
            while len(lane.unfinished) >= _MAX_LARGE_FILES:
                yield lane.take_read()
            folder, _, name = node.path.rpartition(b"/")
            with _destination_errors(node.path):
                file = self._open(lane, node, self.dest.open_dir(folder), name)
            yield from self._plan(lane, file)
        yield lane.take_read()

    def _restore(self, node: Node) -> None:
        parent, name = self.dest.parent(node.path)
        if node.type == DIR:
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
                self.made.add(node.path)
            except FileExistsError:  # from an earlier restore, or made for a large file restored ahead
                if not stat.S_ISDIR(os.lstat(name, dir_fd=parent).st_mode):
                    _clear(name, parent)
                    os.mkdir(name, 0o700, dir_fd=parent)
                    self.made.add(node.path)
            self.dirs.append(node)
            return
        if node.path.rpartition(b"/")[0] not in self.made:
            _clear(name, parent)  # what an earlier restore or another program left there
        if node.type == FILE:
            self._restore_file(node, parent, name)
        elif node.type == SYMLINK:
            os.symlink(node.target or b"", name, dir_fd=parent)
            if _AS_ROOT:
                os.chown(name, node.uid, node.gid, dir_fd=parent, follow_symlinks=False)
            os.utime(name, ns=(node.mtime_ns, node.mtime_ns), dir_fd=parent, follow_symlinks=False)
        elif node.type == FIFO:
            os.mkfifo(name, 0o600, dir_fd=parent)
            # Through a descriptor, not the name: a symlink swapped in meanwhile is never followed.
            fifo = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW, dir_fd=parent)
            try:
                _apply_metadata(node, fifo)
            finally:
                os.close(fifo)
        elif node.type in (CHARDEV, BLOCKDEV):
            if not _AS_ROOT:
                self.warn(f"{os.fsdecode(node.path)}: device files restore only as root; skipped")
                return
            kind = stat.S_IFCHR if node.type == CHARDEV else stat.S_IFBLK
            try:
                os.mknod(name, node.mode | kind, node.rdev, dir_fd=parent)
            except PermissionError:  # root without CAP_MKNOD: a container, a hardened unit
                self.warn(f"{os.fsdecode(node.path)}: device files need the CAP_MKNOD capability; skipped")
                return
            self._apply_metadata_at(node, parent, name)
        elif node.type == SOCKET:
            self.warn(f"{os.fsdecode(node.path)}: sockets cannot be restored; skipped")

    def _restore_file(self, node: Node, parent: int, name: bytes) -> None:
        lane = self.listed
        if node.link_group is not None and node.link_group in self.links:
            self._submit(lane, lane.take_read())  # the leader must be in place under its real name; hard links are rare
            lane.pipeline.drain()
            leader = self.links[node.link_group]
            leader_dir = self.dest.open_dir(leader.rpartition(b"/")[0])
            try:
                os.link(
                    leader.rpartition(b"/")[2], name, src_dir_fd=leader_dir, dst_dir_fd=parent, follow_symlinks=False
                )
                self.result.files += 1
                self.progress.advance(0, files=1)
                return
            except OSError as exc:
                self.warn(f"{os.fsdecode(node.path)}: hard link failed ({exc.strerror}); restored as a copy")
            finally:
                os.close(leader_dir)
        while len(lane.unfinished) >= _MAX_OPEN_FILES:
            self._submit(lane, lane.take_read())
            lane.pipeline.consume_oldest()
        open_file = self._open(lane, node, os.dup(parent), name)
        if node.link_group is not None:
            self.links[node.link_group] = node.path
        for read in self._plan(lane, open_file):
            self._submit(lane, read)

    def _open(self, lane: _Lane, node: Node, dir_fd: int, name: bytes) -> _OpenFile:
        """A file for ``node`` in the directory ``dir_fd`` (which it takes over), held by ``lane``; a
        large one is created now, a small one when its chunks are in (see _OpenFile)."""
        temp_name = self.temp_prefix + str(next(self.temp_count)).encode() + b".partial"
        open_file = _OpenFile(node, dir_fd, temp_name, name)
        lane.unfinished[id(open_file)] = open_file  # from here on, a failure discards it
        if node.size >= _LARGE_FROM:
            open_file.fd, open_file.named = self._create(temp_name, dir_fd)
            open_file.sliced = SlicedWriter(self.direct, open_file.fd, node.size)
        return open_file

    def _create(self, temp_name: bytes, dir_fd: int) -> tuple[int, bool]:
        """A new file in the directory, and whether it has a name: unnamed where the filesystem allows
        (and cheaper: linking it into place is one change to the directory where creating a temporary
        name and renaming it are two, ~45 µs against ~25 µs per file on ext4 here)."""
        if self.unnamed_files:
            try:
                return os.open(".", os.O_WRONLY | os.O_TMPFILE, 0o600, dir_fd=dir_fd), False
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
                self.unnamed_files = False  # this filesystem has none (NFS, some FUSE filesystems)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        return os.open(temp_name, flags, 0o600, dir_fd=dir_fd), True

    def _plan(self, lane: _Lane, file: _OpenFile) -> Iterator[_Read]:
        """Add the file's chunks to the lane's reads (each chunk's place in the file is known up front
        from the index: workers write anywhere), then its end; yields each read that is full."""
        node, offset, first_read = file.node, 0, lane.read
        for chunk_id in node.chunks:
            try:
                location = self.repo.locate(BlobKind.DATA, chunk_id)
            except IntegrityError as exc:
                raise IntegrityError(f"{os.fsdecode(node.path)}: {exc}") from None
            if not lane.read.takes(location):
                yield lane.take_read()
            lane.read.writes.append(_Write(file, chunk_id, offset, location))
            lane.read.bytes += location.raw_length
            offset += location.raw_length  # each chunk is verified to be as long as the index says
        if offset != node.size:
            raise IntegrityError(
                f"{os.fsdecode(node.path)}: chunks add up to {offset} bytes, the listing says {node.size}"
            )
        if lane.read is first_read and file.sliced is not None:
            lane.read.complete.append(file)
        lane.read.ends.append(file)

    def _submit(self, lane: _Lane, read: _Read) -> None:
        if read.writes or read.complete:
            lane.pipeline.submit(self._write_chunks, read, weight=read.bytes, tag=read)
        elif read.ends:
            lane.pipeline.put(None, read)

    def _write_chunks(self, read: _Read) -> None:
        """In a worker: fetch the chunks with one range read, verify each and write it at its offset;
        then seal the files that are whole now."""
        if read.writes:
            chunks = self.repo.read_blobs(BlobKind.DATA, [(w.chunk_id, w.location) for w in read.writes])
            for write, data in zip(read.writes, chunks, strict=True):
                with _destination_errors(write.file.node.path):
                    write.file.write(data, write.offset, zeros=self._all_zeros(data))
        for file in read.complete:
            with _destination_errors(file.node.path):
                file.seal()

    def _all_zeros(self, data: bytes) -> bool:
        # Look at the first bytes before comparing the whole chunk: slicing the zero buffer copies it,
        # which would cost a copy of every chunk where almost none is zeros.
        head = data[:64]
        return head == self.zeros[: len(head)] and len(data) <= len(self.zeros) and data == self.zeros[: len(data)]

    def _apply_metadata_at(self, node: Node, parent: int, name: bytes) -> None:
        if _AS_ROOT:
            os.chown(name, node.uid, node.gid, dir_fd=parent, follow_symlinks=False)
        os.chmod(name, node.mode, dir_fd=parent)
        os.utime(name, ns=(node.mtime_ns, node.mtime_ns), dir_fd=parent)


@contextlib.contextmanager
def _destination_errors(path: bytes) -> Iterator[None]:
    """The destination refused a write: one line naming the entry, not a traceback."""
    try:
        yield
    except OSError as exc:
        where = f" at {os.fsdecode(path)!r}" if path else ""
        raise DestinationError(
            f"cannot restore{where}: {exc.strerror or exc}; check the destination's free space, permissions"
            " and that it is a directory"
        ) from None


def _apply_metadata(node: Node, fd: int) -> None:
    if _AS_ROOT:
        os.fchown(fd, node.uid, node.gid)
    os.fchmod(fd, node.mode)
    os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))


def restore(
    repo: Repository, snapshot: Snapshot, dest: Path, *, path: str | None, workers: int, progress: Progress
) -> RestoreResult:
    if path:  # a path that matches nothing is refused before the destination is made
        collections.deque(select_nodes(repo.listing(snapshot), path), maxlen=0)
    if dest.exists() and not dest.is_dir():
        raise DestinationError(f"cannot restore into {dest}: it is not a directory; name a directory (made if missing)")
    progress.start(f"restore {snapshot.id[:8]}", snapshot.summary.get("bytes"))
    forks = workers > 1 and may_fork() and _child_can_read(repo.store)
    with _destination_errors(b""):
        restorer = _Restorer(repo, dest, workers, progress, shared=_shared_count() if forks else None)
    result = restorer.run(
        lambda: select_nodes(repo.listing(snapshot), path),
        lambda: select_nodes(repo.listing(snapshot, sizes_from=_LARGE_FROM), path, required=False),
    )
    progress.finish()
    return result


def _shared_count() -> Counter | None:
    try:
        return Counter()
    except OSError:  # no POSIX semaphores here (no /dev/shm): the large lane stays in threads
        return None


def _child_can_read(store: Store) -> bool:
    """Whether a forked child may read the repository's ``store`` alongside this process: from one local
    directory (whose reads open descriptors of their own) or from memory (the child's copy).  A
    cloud SDK's client holds a pool of connections the two processes would share; reading several
    targets, the child could step over a damaged copy or a target gone down, which only the parent
    reports; and a subclass may keep state of its own (tests count reads), hence the exact types."""
    while isinstance(store, ForwardingStore):
        store = store.inner
    stores = store.up() if isinstance(store, Replicas) else [store]
    return len(stores) == 1 and type(stores[0]) in (LocalStore, MemoryStore)


def restore_to_stream(repo: Repository, snapshot: Snapshot, out: BinaryIO, *, workers: int) -> int:
    """Write a stream snapshot's bytes to ``out`` (for --stdout); returns the byte count."""
    files = [n for n in repo.listing(snapshot) if n.type == FILE]
    if snapshot.kind != STREAM or len(files) != 1:
        raise UsageError(f"snapshot {snapshot.id[:8]} is not a stream snapshot; --stdout needs one")
    written = 0

    def consume(chunks: object, _: None) -> None:
        nonlocal written
        assert isinstance(chunks, list)
        for data in chunks:
            out.write(data)
            written += len(data)

    def fetch(run: list[tuple[bytes, Location]]) -> list[bytes]:
        return list(repo.read_blobs(BlobKind.DATA, run))

    with ThreadPoolExecutor(workers) as pool:
        pipeline: OrderedPipeline[None] = OrderedPipeline(pool, consume, max_bytes=_IN_FLIGHT_BYTES, max_items=1024)

        def submit(run: list[tuple[bytes, Location]]) -> None:
            pipeline.submit(fetch, run, weight=sum(location.raw_length for _, location in run), tag=None)

        run: list[tuple[bytes, Location]] = []
        for chunk_id in files[0].chunks:  # adjacent chunks go in one range read, as for files
            location = repo.locate(BlobKind.DATA, chunk_id)
            if run and not _joins(run[0][1], run[-1][1], location):
                submit(run)
                run = []
            run.append((chunk_id, location))
        if run:
            submit(run)
        pipeline.drain()
    out.flush()
    if written != files[0].size:
        raise IntegrityError(f"stream restored {written} bytes, the listing says {files[0].size}")
    return written
