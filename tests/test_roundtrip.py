"""Engine-level backup → restore round trips on real directories, with an in-memory repository."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import random
import shlex
import shutil
import socket
import stat
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coldvault.config import Secret
from coldvault.config.loader import parse_config
from coldvault.config.model import FormatConfig, Source
from coldvault.engine import backup as backup_module
from coldvault.engine import restore as restore_module
from coldvault.engine.backup import BackupOptions, backup
from coldvault.engine.progress import SilentProgress
from coldvault.engine.replicas import Replicas
from coldvault.engine.restore import restore, restore_to_stream
from coldvault.errors import DestinationError, IntegrityError, SourceError, TargetError, UsageError
from coldvault.repo.blob import BlobKind
from coldvault.repo.manifest import STREAM, TREE, Snapshot
from coldvault.repo.repository import Repository
from coldvault.repo.tree import FILE, SYMLINK, Node, encode_node
from coldvault.repo.writer import BlobWriter
from coldvault.storage.cache import CachingStore
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.local import LocalStore
from coldvault.storage.memory import MemoryStore
from coldvault.storage.retry import RetryingStore

FORMAT = FormatConfig(chunk_min_size=256, chunk_avg_size=1024, chunk_max_size=4096, pack_size=32 << 10)
OPTIONS = BackupOptions(workers=2, compression_level=3)
AS_ROOT = os.geteuid() == 0
_names = itertools.count()


# ---- helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo() -> Repository:
    """One repository shared by the module (unlocking costs an Argon2 derivation); tests use distinct sources."""
    return Repository.init(MemoryStore(), Secret(b"pw"), FORMAT)


@pytest.fixture
def fresh_store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def fresh_repo(fresh_store: MemoryStore) -> Repository:
    """A repository of its own, for tests that damage the store."""
    return Repository.init(fresh_store, Secret(b"pw"), FORMAT)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


def _config(source_toml: str) -> Source:
    text = '[[targets]]\nname = "t"\ntype = "local"\npath = "/nonexistent"\n\n[[sources]]\n' + source_toml
    return parse_config(text).sources[0]


def tree_source(name: str, *paths: Path | str, exclude: tuple[str, ...] = ()) -> Source:
    return _config(
        f"name = {json.dumps(name)}\npaths = {json.dumps([str(p) for p in paths])}\n"
        f"exclude = {json.dumps(list(exclude))}\n"
    )


def command_source(name: str, argv: list[str], filename: str | None = None) -> Source:
    text = f"name = {json.dumps(name)}\ncommand = {json.dumps(shlex.join(argv))}\n"
    if filename is not None:
        text += f"filename = {json.dumps(filename)}\n"
    return _config(text)


def run_backup(repo: Repository, source: Source, progress: SilentProgress | None = None) -> Snapshot:
    return backup(repo, source, OPTIONS, progress or SilentProgress()).snapshot


def run_restore(repo: Repository, snapshot: Snapshot, dest: Path, path: str | None = None):  # type: ignore[no-untyped-def]
    return restore(repo, snapshot, dest, path=path, workers=2, progress=SilentProgress())


def under(dest: Path, source_path: Path) -> Path:
    """Where a restore puts an absolute source path: below dest, without the leading '/'."""
    return Path(os.fsdecode(os.fsencode(dest) + os.fsencode(source_path)))


def state(root: Path | bytes) -> dict[bytes, tuple[object, ...]]:
    """(type, mode, uid, gid, mtime_ns, size, sha256 / symlink target / rdev) of every entry, by relative path."""
    base = os.fsencode(root)
    out: dict[bytes, tuple[object, ...]] = {}

    def visit(path: bytes, relative: bytes) -> None:
        st = os.lstat(path)
        entry: tuple[object, ...] = (
            stat.S_IFMT(st.st_mode),
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            st.st_mtime_ns,
        )
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                entry += (st.st_size, hashlib.sha256(f.read()).hexdigest())
        elif stat.S_ISLNK(st.st_mode):
            entry += (os.readlink(path),)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            entry += (st.st_rdev,)
        out[relative] = entry
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(path)):
                visit(path + b"/" + name, relative + b"/" + name if relative else name)

    visit(base, b"")
    return out


def files_below(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


class HookProgress(SilentProgress):
    """Runs a callback the first time the backup reports bytes read: a seam to change the source mid-backup."""

    def __init__(self, hook: Callable[[], None]) -> None:
        super().__init__()
        self._hook: Callable[[], None] | None = hook

    def advance(self, nbytes: int, files: int = 0) -> None:
        if nbytes and self._hook is not None:
            hook, self._hook = self._hook, None
            hook()


class CountingProgress(SilentProgress):
    def __init__(self) -> None:
        super().__init__()
        self.files = self.bytes = 0

    def advance(self, nbytes: int, files: int = 0) -> None:
        self.files += files
        self.bytes += nbytes


# ---- awkward trees ---------------------------------------------------------------------------

ODD_NS = 1_234_567_891_123_456_789


def build_awkward_tree(root: Path) -> dict[str, object]:
    root.mkdir()
    broot = os.fsencode(root)
    info: dict[str, object] = {}

    def write(rel: str | bytes, data: bytes, mode: int = 0o644) -> bytes:
        path = broot + b"/" + (os.fsencode(rel) if isinstance(rel, str) else rel)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        return path

    (root / "emptydir").mkdir()
    (root / "sub" / "deeper").mkdir(parents=True)
    write("empty", b"")
    write("with space", b"spaces")
    write("new\nline", b"newline in the name")
    write("tab\there", b"tab")
    write("ünïcödé", b"unicode")
    write(b"bytes-\xff\xfe\x80", b"not utf-8")
    os.mkdir(broot + b"/dir-\xff")
    write(b"dir-\xff/inner-\xfe", b"inside a non-utf-8 directory")
    big = random.Random(1).randbytes(40_000)
    write("sub/big", big)
    write("sub/deeper/big-copy", big)  # duplicate content deduplicates
    write("sub/compressible", b"abcdefgh" * 5000)
    write("exec", b"#!/bin/sh\n", 0o755)
    write("private", b"secret", 0o600)
    write("setuid", b"suid", 0o4755)
    write("nothing", b"no permissions", 0o000)
    os.chmod(root / "emptydir", 0o1777)
    (root / "readonly-dir").mkdir()
    write("readonly-dir/inside", b"in a read-only directory")
    os.chmod(root / "readonly-dir", 0o555)

    # Symlinks are recorded, never followed.
    os.symlink("does/not/exist", root / "dangling")
    os.symlink("/etc/passwd", root / "absolute")
    os.symlink("sub", root / "dirlink")
    os.symlink("../exec", root / "sub" / "relative")
    os.symlink(b"target-\xff\n", broot + b"/odd-target")

    # Hard links.
    write("hl1", b"hard linked content" * 100)
    os.link(root / "hl1", root / "sub" / "hl2")
    os.link(root / "hl1", root / "hl3")

    # A sparse file: data at both ends, a hole in between.
    with open(root / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(2 << 20)
        f.write(b"tail")
    st = os.stat(root / "sparse")
    info["sparse_source_has_holes"] = st.st_blocks * 512 < st.st_size

    os.mkfifo(root / "fifo", 0o640)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    sock.close()
    try:
        os.mknod(root / "null-device", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        info["device"] = True
    except OSError:
        info["device"] = False

    if AS_ROOT:
        os.chown(root / "private", 1234, 5678)
        os.chown(root / "absolute", 4321, 8765, follow_symlinks=False)

    # Odd nanosecond mtimes everywhere, deepest first so writing does not disturb parents.
    for i, (folder, dirs, files) in enumerate(sorted(os.walk(broot), key=lambda t: -len(t[0]))):
        for j, name in enumerate(dirs + files):
            os.utime(folder + b"/" + name, ns=(ODD_NS, ODD_NS + 2 * i + 3 * j + 1), follow_symlinks=False)
    os.utime(broot, ns=(ODD_NS, ODD_NS + 999))
    return info


@pytest.fixture(scope="module")
def awkward(repo: Repository, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    base = tmp_path_factory.mktemp("awkward")
    src = base / "src"
    info = build_awkward_tree(src)
    before = state(src)
    progress = SilentProgress()
    snapshot = run_backup(repo, tree_source("awkward", src), progress)
    dest = base / "dest"
    result = run_restore(repo, snapshot, dest)
    return dict(
        info,
        src=src,
        dest=dest,
        restored=under(dest, src),
        before=before,
        snapshot=snapshot,
        backup_warnings=progress.warnings,
        result=result,
    )


def test_awkward_tree_restores_identically(awkward: dict[str, object]) -> None:
    expected = {p: v for p, v in awkward["before"].items() if p != b"sock"}  # type: ignore[union-attr]
    assert state(awkward["restored"]) == expected  # type: ignore[arg-type]


def test_backup_does_not_change_the_source(awkward: dict[str, object]) -> None:
    assert state(awkward["src"]) == awkward["before"]  # type: ignore[arg-type]


def test_awkward_tree_backup_has_no_warnings_and_counts_entries(awkward: dict[str, object]) -> None:
    snapshot: Snapshot = awkward["snapshot"]  # type: ignore[assignment]
    assert awkward["backup_warnings"] == [] and snapshot.warnings == () and not snapshot.partial
    assert snapshot.kind == TREE and snapshot.paths == (str(awkward["src"]),)
    regular = sum(1 for v in awkward["before"].values() if v[0] == stat.S_IFREG)  # type: ignore[union-attr]
    assert snapshot.summary["files"] == regular
    assert snapshot.summary["reused_files"] == 0


def test_symlinks_are_restored_as_symlinks_never_followed(awkward: dict[str, object]) -> None:
    restored: Path = awkward["restored"]  # type: ignore[assignment]
    for name, target in [
        ("dangling", "does/not/exist"),
        ("absolute", "/etc/passwd"),
        ("dirlink", "sub"),
        ("sub/relative", "../exec"),
    ]:
        assert (restored / name).is_symlink(), name
        assert os.readlink(restored / name) == target
    assert os.readlink(os.fsencode(restored) + b"/odd-target") == b"target-\xff\n"
    assert not (restored / "dangling").exists()  # still dangling: nothing was created at its target


def test_hard_links_share_an_inode(awkward: dict[str, object]) -> None:
    restored: Path = awkward["restored"]  # type: ignore[assignment]
    inodes = {os.stat(restored / p).st_ino for p in ("hl1", "sub/hl2", "hl3")}
    assert len(inodes) == 1
    assert os.stat(restored / "hl1").st_nlink == 3
    assert (restored / "sub" / "hl2").read_bytes() == b"hard linked content" * 100
    # Identical content without a hard link stays two files.
    assert os.stat(restored / "sub/big").st_ino != os.stat(restored / "sub/deeper/big-copy").st_ino


def test_sparse_file_keeps_its_holes(awkward: dict[str, object]) -> None:
    if not awkward["sparse_source_has_holes"]:
        pytest.skip("the file system under tmp_path does not make sparse files")
    sparse = awkward["restored"] / "sparse"  # type: ignore[operator]
    data = sparse.read_bytes()
    assert len(data) == (2 << 20) + 4 and data[:4] == b"head" and data[-4:] == b"tail"
    assert data[4:-4] == bytes(len(data) - 8)
    st = sparse.stat()
    assert st.st_blocks * 512 < st.st_size // 4


@pytest.mark.parametrize("filesystem", ["direct", "buffered"])
def test_large_files_restore_exactly_around_the_page_cache_or_through_it(
    repo: Repository, tmp_path: Path, filesystem: str, request: pytest.FixtureRequest
) -> None:
    # Files of 1 MiB and more are gathered into aligned slices for direct writes; where the
    # filesystem refuses direct I/O, the same slices are written buffered.
    if filesystem == "buffered":
        request.getfixturevalue("refusing_filesystem")
    elif not direct_io_here(tmp_path):
        pytest.skip("the file system under tmp_path refuses direct I/O")
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(12)
    (src / "exactly-1MiB").write_bytes(rng.randbytes(1 << 20))
    (src / "under-1MiB").write_bytes(rng.randbytes((1 << 20) - 1))
    (src / "odd").write_bytes(rng.randbytes((9 << 20) + 4321))
    (src / "repeats").write_bytes(rng.randbytes(300_000) * 20)  # the same chunks again and again
    (src / "zeros-inside").write_bytes(rng.randbytes(700_000) + bytes(3 << 20) + rng.randbytes(12_345))
    (src / "zeros-at-the-end").write_bytes(rng.randbytes(1_500_000) + bytes(6 << 20))  # the file's last slice is a hole
    (src / "only-zeros").write_bytes(bytes((5 << 20) + 7))
    snapshot = run_backup(repo, tree_source(unique("large"), src))
    run_restore(repo, snapshot, tmp_path / "dest")
    assert state(under(tmp_path / "dest", src)) == state(src)


def test_a_full_disk_during_a_large_file_leaves_nothing_behind(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Mocked: a destination filling up cannot be produced on demand here.  The third slice write fails.
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(random.Random(16).randbytes(20 << 20))
    snapshot = run_backup(repo, tree_source(unique("enospc"), src))
    real_pwrite, calls = os.pwrite, itertools.count()

    def filling_pwrite(fd: int, data: bytes, offset: int) -> int:
        if next(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", filling_pwrite)
    dest = tmp_path / "dest"
    with pytest.raises(DestinationError, match="No space left"):
        run_restore(repo, snapshot, dest)
    assert [p for p in dest.rglob("*") if not p.is_dir()] == []  # no file, no .partial left


@pytest.mark.parametrize("filesystem", ["unnamed files", "no unnamed files", "no /proc"])
def test_files_appear_only_whole_unnamed_or_under_a_temporary_name(
    repo: Repository, tmp_path: Path, filesystem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Files are made unnamed (O_TMPFILE) and linked into place through /proc; where the filesystem
    # has no unnamed files, or there is no /proc, they are made under a temporary name and renamed.
    # Mocked: both refusals, which this machine's filesystems and mounts cannot produce on demand.
    if filesystem == "no unnamed files":
        real_open = os.open

        def refusing_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if flags & os.O_TMPFILE == os.O_TMPFILE:
                raise OSError(errno.EOPNOTSUPP, "Operation not supported")
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)
    elif filesystem == "no /proc":
        monkeypatch.setattr(restore_module, "_OPEN_FILES_DIR", str(tmp_path / "no-proc"))
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    rng = random.Random(21)
    for i in range(30):
        (src / f"f{i}").write_bytes(rng.randbytes(rng.randrange(0, 40_000)))
    (src / "sub" / "large").write_bytes(rng.randbytes(3 << 20))
    os.link(src / "f1", src / "sub" / "link-to-f1")
    snapshot = run_backup(repo, tree_source(unique("unnamed"), src))
    dest = tmp_path / "dest"
    run_restore(repo, snapshot, dest)
    assert state(under(dest, src)) == state(src)
    assert not [p for p in dest.rglob("*") if b".partial" in os.fsencode(p.name)]


def test_a_name_taken_while_a_file_was_written_is_replaced(tmp_path: Path) -> None:
    # As a rename replaces it; an unnamed file cannot be linked over an existing name.
    node = Node(path=b"taken", type=FILE, size=5)
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fd = os.open(".", os.O_WRONLY | os.O_TMPFILE, 0o600, dir_fd=dir_fd)
    os.write(fd, b"whole")
    (tmp_path / "taken").write_bytes(b"what another program put there")
    restore_module._OpenFile(node, dir_fd, b".temp.partial", b"taken", fd=fd).publish()
    assert (tmp_path / "taken").read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def mixed_tree(root: Path) -> None:
    """Large files among small ones: in a directory of their own (deep, with nothing else above it),
    mixed with small files, and before and after runs of small files; and a hard link to a large
    file, which keeps the listing's order."""
    rng = random.Random(22)
    for folder in ("a-small", "b-mixed", "c-large/deep/er", "d-small"):
        (root / folder).mkdir(parents=True)
    for i in range(60):
        (root / "a-small" / f"s{i:02}").write_bytes(rng.randbytes(rng.randrange(1, 3000)))
        (root / "d-small" / f"s{i:02}").write_bytes(rng.randbytes(rng.randrange(1, 3000)))
    for i in range(5):
        (root / "b-mixed" / f"{i}-large").write_bytes(rng.randbytes((1 << 20) + i * 70_001))
        (root / "b-mixed" / f"{i}-small").write_bytes(rng.randbytes(500))
    (root / "c-large/deep/er/only").write_bytes(rng.randbytes(3 << 20))
    os.link(root / "b-mixed" / "0-large", root / "d-small" / "z-link")
    os.chmod(root / "c-large" / "deep", 0o700)


def record_opens(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bool, int]]:
    """Spies on _Restorer._open (which still runs): for each file created, in order, its path, whether
    the large lane holds it, and how many files that lane held open already.  A spy sees only this
    process, so the large lane stays in its threads rather than in a child process."""
    monkeypatch.setattr(restore_module, "may_fork", lambda: False)
    opened: list[tuple[bytes, bool, int]] = []
    real_open = restore_module._Restorer._open

    def spying_open(self: Any, lane: Any, node: Node, dir_fd: int, name: bytes) -> Any:
        opened.append((node.path, lane is self.large, len(lane.unfinished)))
        return real_open(self, lane, node, dir_fd, name)

    monkeypatch.setattr(restore_module._Restorer, "_open", spying_open)
    return opened


@pytest.mark.parametrize(
    ("destination", "large_lane"), [("empty", "roomy"), ("empty", "overflowing"), ("holding a stale file", "roomy")]
)
def test_large_files_restored_ahead_of_the_listing_restore_exactly(
    repo: Repository, tmp_path: Path, destination: str, large_lane: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Into an empty destination large files are restored ahead of the listing, in a lane of their
    # own; into one that holds something, every file keeps the listing's order.  A spy on _open
    # records the order in which files are created.  With this format's small
    # packs a large file takes dozens of reads: a roomy lane takes all of them at once, so every
    # large file is created first; an overflowing one (the default bound) takes more whenever its
    # reads finish, between listed files, in an order that depends on timing and is not asserted.
    if large_lane == "roomy":
        monkeypatch.setattr(restore_module, "_MAX_LARGE_READS", 10_000)
    src = tmp_path / "src"
    mixed_tree(src)
    snapshot = run_backup(repo, tree_source(unique("mixed"), src))
    dest = tmp_path / "dest"
    if destination != "empty":
        stale = under(dest, src) / "b-mixed" / "3-large"
        stale.parent.mkdir(parents=True)
        stale.write_bytes(b"stale")
    opened = record_opens(monkeypatch)
    before = len(os.listdir("/proc/self/fd"))
    result = run_restore(repo, snapshot, dest)
    assert len(os.listdir("/proc/self/fd")) == before
    created = [path for path, _, _ in opened]
    assert state(under(dest, src)) == state(src)
    assert result.files == len(files_below(src)) and not result.warnings
    if destination != "empty":
        assert created == sorted(created, key=lambda path: path.split(b"/"))
    elif large_lane == "roomy":
        ahead = [p for p in created if p.endswith(b"-large") and not p.endswith(b"0-large") or p.endswith(b"only")]
        assert len(ahead) == 5 and created[: len(ahead)] == ahead


def test_the_large_lane_holds_few_files_open_even_when_one_read_spans_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Large files that compress well lie many to a pack, so one range read (up to 4 MiB stored) can
    # end hundreds of them; each open file holds two descriptors.  The default format's packs hold
    # all twelve of these files; the lane's bound is lowered so that twelve cross it.
    monkeypatch.setattr(restore_module, "_MAX_LARGE_FILES", 2)
    repo = Repository.init(MemoryStore(), Secret(b"pw"), FormatConfig())
    src = tmp_path / "src"
    (src / "large").mkdir(parents=True)
    (src / "small").mkdir()
    for i in range(12):
        (src / "large" / f"{i:02}").write_bytes(b"".join(b"%02d:%07d\n" % (i, k) for k in range(100_000)))
    for i in range(20):
        (src / "small" / f"{i:02}").write_bytes(random.Random(i).randbytes(100))
    snapshot = run_backup(repo, tree_source(unique("compressible"), src))
    opened = record_opens(monkeypatch)
    dest = tmp_path / "dest"
    before = len(os.listdir("/proc/self/fd"))
    result = run_restore(repo, snapshot, dest)
    assert len(os.listdir("/proc/self/fd")) == before
    held_open = [held for _, in_large_lane, held in opened if in_large_lane]
    assert state(under(dest, src)) == state(src) and result.files == 32
    assert len(held_open) == 12 and max(held_open) < 2


@pytest.mark.parametrize("lane", ["child process", "threads"])
@pytest.mark.parametrize("damaged", ["b-mixed/2-large", "a-small/s07"])
def test_a_damaged_chunk_in_either_lane_fails_the_restore_leaving_only_whole_files(
    fresh_repo: Repository, tmp_path: Path, damaged: str, lane: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In a child process, the large lane's error comes back as the same class; a failure in the
    # parent's lane kills the child (no process is left either way).
    monkeypatch.setattr(restore_module, "may_fork", lambda: lane == "child process")
    src = tmp_path / "src"
    mixed_tree(src)
    snapshot = run_backup(fresh_repo, tree_source("mixed", src))
    node = next(n for n in fresh_repo.listing(snapshot) if n.path.endswith(os.fsencode(damaged)))
    location = fresh_repo.locate(BlobKind.DATA, node.chunks[len(node.chunks) // 2])
    fresh_repo.store.corrupt(Handle(Kind.DATA, location.pack), position=location.offset + 5)  # type: ignore[attr-defined]
    dest = tmp_path / "dest"
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(IntegrityError):
        run_restore(fresh_repo, snapshot, dest)
    assert len(os.listdir("/proc/self/fd")) == before and not multiprocessing.active_children()
    assert not (under(dest, src) / damaged).exists()
    for restored in files_below(dest):
        assert not restored.name.startswith(".coldvault-")
        assert restored.read_bytes() == (src / restored.relative_to(under(dest, src))).read_bytes()


@pytest.mark.parametrize("lane", ["child process", "threads"])
def test_the_large_lane_restores_the_same_in_a_child_process_or_in_threads(
    repo: Repository, tmp_path: Path, lane: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Restoring from memory or one local directory, a process of one thread forks the large files'
    # lane (a spy counts the children); a process running other threads keeps it in threads.
    forks: list[object] = []

    class CountedForked(restore_module.Forked):  # type: ignore[name-defined,misc]
        def __init__(self, *args: Any) -> None:
            forks.append(self)
            super().__init__(*args)

    monkeypatch.setattr(restore_module, "Forked", CountedForked)
    # Decided here: earlier tests may leave idle threads behind in this process (pools of stores
    # not collected yet), which would keep the lane in threads.
    monkeypatch.setattr(restore_module, "may_fork", lambda: lane == "child process")
    src = tmp_path / "src"
    mixed_tree(src)
    snapshot = run_backup(repo, tree_source(unique("lanes"), src))
    progress = CountingProgress()
    before = len(os.listdir("/proc/self/fd"))
    result = restore(repo, snapshot, tmp_path / "dest", path=None, workers=2, progress=progress)
    assert len(forks) == (lane == "child process")
    assert state(under(tmp_path / "dest", src)) == state(src)
    inodes = {p.stat().st_ino: p.stat().st_size for p in files_below(src)}  # a hard link's bytes count once
    assert result.files == len(files_below(src)) and result.bytes == sum(inodes.values())
    assert (progress.files, progress.bytes) == (result.files, result.bytes)
    assert len(os.listdir("/proc/self/fd")) == before and not multiprocessing.active_children()


def test_large_files_shared_out_between_the_two_processes_restore_exactly(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With hardly any small files the parent is done with its lane at once and draws large files
    # alongside the child; which process takes which depends on timing, every file is restored once.
    monkeypatch.setattr(restore_module, "may_fork", lambda: True)
    src = tmp_path / "src"
    rng = random.Random(31)
    for i in range(12):
        folder = src / f"d{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"large-{i:02}").write_bytes(rng.randbytes((1 << 20) + rng.randrange(3 << 20)))
    (src / "small").write_bytes(b"small")
    snapshot = run_backup(repo, tree_source(unique("shared"), src))
    before = len(os.listdir("/proc/self/fd"))
    result = run_restore(repo, snapshot, tmp_path / "dest")
    assert state(under(tmp_path / "dest", src)) == state(src) and result.files == 13
    assert len(os.listdir("/proc/self/fd")) == before and not multiprocessing.active_children()


def test_only_reads_from_one_local_directory_or_memory_go_to_a_child_process(tmp_path: Path) -> None:
    local, memory = LocalStore(tmp_path / "a"), MemoryStore()
    assert restore_module._child_can_read(local) and restore_module._child_can_read(memory)
    assert restore_module._child_can_read(CachingStore(Replicas([local]), tmp_path / "cache"))
    assert not restore_module._child_can_read(Replicas([local, LocalStore(tmp_path / "b", name="b")]))
    assert not restore_module._child_can_read(FlakyStore())  # a subclass may count what it reads
    assert not restore_module._child_can_read(RetryingStore(FlakyStore()))


def test_a_directory_the_other_lanes_process_made_meanwhile_is_taken_as_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race between the two processes, staged: the directory appears between the look for it
    # and the mkdir (os.open is wrapped for that one call, the only way to time it).
    real_open = os.open
    staged: list[bytes] = []

    def open_after_the_other_process_made_it(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if path == b"new" and not staged:
            staged.append(path)
            os.mkdir(tmp_path / "new")
            raise FileNotFoundError(errno.ENOENT, "not yet")
        return real_open(path, flags, *args, **kwargs)

    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    monkeypatch.setattr(restore_module.os, "open", open_after_the_other_process_made_it)
    try:
        fd = restore_module._open_or_make_dir(b"new", root)
        monkeypatch.undo()
        assert os.path.samestat(os.fstat(fd), os.stat(tmp_path / "new")) and staged
        os.close(fd)
    finally:
        os.close(root)


def direct_io_here(folder: Path) -> bool:
    fd = os.open(folder / "probe", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_DIRECT)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        os.unlink(folder / "probe")


def test_trees_deeper_and_wider_than_the_directories_kept_open_restore_exactly(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A restore reaches each directory from the nearest one it holds open, keeping a few; with
    # fewer kept than the tree is deep or wide, the oldest are closed while later ones are reached
    # from them, and the directories whose metadata is set at the end are reached once more.
    monkeypatch.setattr(restore_module, "_MAX_OPENED_DIRS", 3)
    src = tmp_path / "src"
    deep = src
    for level in range(12):
        deep = deep / f"d{level}"
        deep.mkdir(parents=True)
        (deep / "file").write_bytes(f"level {level}".encode())
    for branch in range(10):
        (src / f"w{branch}" / "x").mkdir(parents=True)
        (src / f"w{branch}" / "x" / "leaf").write_bytes(bytes([branch]) * 100)
        os.chmod(src / f"w{branch}", 0o750)
    snapshot = run_backup(repo, tree_source(unique("deep-and-wide"), src))
    before = len(os.listdir("/proc/self/fd"))
    run_restore(repo, snapshot, tmp_path / "dest")
    assert len(os.listdir("/proc/self/fd")) == before
    assert state(under(tmp_path / "dest", src)) == state(src)


def test_small_files_ending_in_zeros_keep_their_length_and_descriptors_are_all_closed(
    repo: Repository, tmp_path: Path
) -> None:
    # All-zero chunks are not written, so such a file is as long as its last written byte until
    # it is sealed; and every descriptor a restore opens (files, their directories) is closed.
    src = tmp_path / "src"
    rng = random.Random(13)
    for d in range(3):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(40):
            (src / f"d{d}" / f"f{i}").write_bytes(
                rng.randbytes(rng.randrange(1, 5000)) + bytes(rng.randrange(0, 20000))
            )
    (src / "zeros-only").write_bytes(bytes(30000))
    snapshot = run_backup(repo, tree_source(unique("trailing-zeros"), src))
    before = len(os.listdir("/proc/self/fd"))
    run_restore(repo, snapshot, tmp_path / "dest")
    assert len(os.listdir("/proc/self/fd")) == before
    assert state(under(tmp_path / "dest", src)) == state(src)


def test_special_files_are_restored_as_special_files(awkward: dict[str, object]) -> None:
    restored: Path = awkward["restored"]  # type: ignore[assignment]
    st = os.lstat(restored / "fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    if awkward["device"]:
        st = os.lstat(restored / "null-device")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    # Sockets are recorded but cannot be restored: a warning, not a failure.
    assert not os.path.lexists(restored / "sock")
    result = awkward["result"]
    assert any("sock" in w for w in result.warnings)  # type: ignore[attr-defined]


def test_restore_counts_files_and_bytes(awkward: dict[str, object]) -> None:
    before = awkward["before"]
    regular = [v for v in before.values() if v[0] == stat.S_IFREG]  # type: ignore[union-attr]
    result = awkward["result"]
    assert result.files == len(regular)  # type: ignore[attr-defined]
    # Bytes are what was written: the two extra hard links to 'hl1' cost nothing.
    assert result.bytes == sum(v[5] for v in regular) - 2 * len(b"hard linked content" * 100)  # type: ignore[attr-defined]


@pytest.mark.skipif(not AS_ROOT, reason="ownership is restored only as root")
def test_ownership_is_restored(awkward: dict[str, object]) -> None:
    restored: Path = awkward["restored"]  # type: ignore[assignment]
    st = os.lstat(restored / "private")
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    st = os.lstat(restored / "absolute")
    assert (st.st_uid, st.st_gid) == (4321, 8765)


def test_parents_of_the_source_path_are_restored_with_their_metadata(awkward: dict[str, object]) -> None:
    src: Path = awkward["src"]  # type: ignore[assignment]
    dest: Path = awkward["dest"]  # type: ignore[assignment]
    parent = under(dest, src.parent)
    assert parent.is_dir()
    assert os.stat(parent).st_mode == os.stat(src.parent).st_mode


def test_restore_into_a_non_empty_destination_replaces_files_but_not_directories(
    repo: Repository, awkward: dict[str, object], tmp_path: Path
) -> None:
    snapshot: Snapshot = awkward["snapshot"]  # type: ignore[assignment]
    src: Path = awkward["src"]  # type: ignore[assignment]
    dest = tmp_path / "dest"
    target = under(dest, src)
    target.mkdir(parents=True)
    (target / "exec").write_bytes(b"stale content that must be replaced")
    os.symlink("/etc/hostname", target / "private")  # a symlink in the way is replaced, not followed
    run_restore(repo, snapshot, dest)
    assert (target / "exec").read_bytes() == b"#!/bin/sh\n"
    assert not (target / "private").is_symlink() and (target / "private").read_bytes() == b"secret"


# ---- property: random trees ------------------------------------------------------------------

_POOL = [b"", b"x", b"duplicate content\n" * 50, random.Random(2).randbytes(9000)]
_safe = st.text(alphabet="abcXYZ019 ._-~", min_size=1, max_size=8).map(str.encode)
_odd = st.sampled_from([b"\xff", b"new\nline", b"\xe9t\xe9", b"\\back", b"*?[", b"-rf", b"\x01ctl"])
_name = st.one_of(_safe, _safe, _safe, _odd).filter(lambda n: n not in (b".", b".."))
_content = st.one_of(st.sampled_from(_POOL), st.binary(max_size=6000))
_mtime = st.integers(-(10**17), 4 * 10**18)
_mode = st.sampled_from([0o644, 0o600, 0o755, 0o400, 0o000, 0o2750])
_file = st.tuples(st.just("file"), _content, _mode, _mtime)
_link = st.tuples(st.just("link"), st.binary(min_size=1, max_size=30).filter(lambda b: b"\0" not in b), _mtime)
_tree = st.recursive(
    st.one_of(_file, _file, _link),
    lambda children: st.tuples(st.just("dir"), st.dictionaries(_name, children, max_size=5), _mtime),
    max_leaves=20,
)
_roots = st.dictionaries(_name, _tree, min_size=1, max_size=6)


def materialise(path: bytes, node: tuple) -> None:  # type: ignore[type-arg]
    kind = node[0]
    if kind == "file":
        _, content, mode, mtime = node
        with open(path, "wb") as f:
            f.write(content)
        os.chmod(path, mode)
        os.utime(path, ns=(mtime, mtime))
    elif kind == "link":
        _, target, mtime = node
        os.symlink(target, path)
        os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
    else:
        _, children, mtime = node
        os.mkdir(path)
        for name, child in children.items():
            materialise(path + b"/" + name, child)
        os.utime(path, ns=(mtime, mtime))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("property")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tree=_roots)
def test_random_trees_round_trip(repo: Repository, scratch: Path, tree: dict[bytes, tuple]) -> None:  # type: ignore[type-arg]
    work = Path(tempfile.mkdtemp(dir=scratch))
    try:
        src = work / "src"
        materialise(os.fsencode(src), ("dir", tree, 1_600_000_000_000_000_001))
        before = state(src)
        snapshot = run_backup(repo, tree_source(unique("prop"), src))
        assert snapshot.warnings == ()
        run_restore(repo, snapshot, work / "dest")
        assert state(under(work / "dest", src)) == before
    finally:
        shutil.rmtree(work)


# ---- incremental backups -----------------------------------------------------------------------


def test_second_backup_reuses_unchanged_files_and_restores_the_latest_state(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    rng = random.Random(11)
    for i in range(6):
        (src / "d" / f"f{i}").write_bytes(rng.randbytes(3000 + i))
    (src / "same-size").write_bytes(b"A" * 5000)
    (src / "grows").write_bytes(b"short")
    (src / "goes").write_bytes(b"will be deleted")
    source = tree_source(unique("incr"), src)

    first = run_backup(repo, source)
    state_one = state(src)
    assert first.summary["reused_files"] == 0 and first.parent is None

    second = run_backup(repo, source)
    assert second.parent == first.id
    assert second.summary["reused_files"] == second.summary["files"] == 9
    assert second.summary["new_chunks"] == 0  # nothing changed: not even the listing is new

    # Change things, including a same-size rewrite that keeps the old mtime (only ctime tells).
    st = os.stat(src / "same-size")
    (src / "same-size").write_bytes(b"B" * 5000)
    os.utime(src / "same-size", ns=(st.st_atime_ns, st.st_mtime_ns))
    with open(src / "grows", "ab") as f:
        f.write(b" and longer")
    (src / "goes").unlink()
    (src / "new").write_bytes(b"brand new")
    third = run_backup(repo, source)
    assert third.parent == second.id
    assert third.summary["files"] == 9
    assert third.summary["reused_files"] == 6  # d/f0..f5

    dest_latest, dest_first = tmp_path / "latest", tmp_path / "first"
    run_restore(repo, third, dest_latest)
    run_restore(repo, first, dest_first)
    assert state(under(dest_latest, src)) == state(src)
    assert (under(dest_latest, src) / "same-size").read_bytes() == b"B" * 5000
    assert state(under(dest_first, src)) == state_one


def test_a_file_replaced_with_different_content_is_not_reused(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"one" * 1000)
    source = tree_source(unique("replace"), src)
    run_backup(repo, source)
    st = os.stat(src / "f")
    (src / "f.new").write_bytes(b"two" * 1000)
    os.utime(src / "f.new", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(src / "f.new", src / "f")  # same size and mtime, new inode
    snapshot = run_backup(repo, source)
    assert snapshot.summary["reused_files"] == 0
    run_restore(repo, snapshot, tmp_path / "dest")
    assert (under(tmp_path / "dest", src) / "f").read_bytes() == b"two" * 1000


# ---- excludes ----------------------------------------------------------------------------------


def test_excludes_by_name_and_by_absolute_path(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for folder in ("keep", "cache", "keep/cache", "keep/deep.tmp"):
        (src / folder).mkdir(parents=True)
    for rel in ("a.tmp", "a.tmpl", "keep/b.tmp", "keep/b.txt", "cache/c", "keep/cache/d", "keep/deep.tmp/e"):
        (src / rel).write_bytes(rel.encode())
    source = tree_source(unique("excl"), src, exclude=("*.tmp", f"{src}/cache"))
    snapshot = run_backup(repo, source)
    dest = tmp_path / "dest"
    run_restore(repo, snapshot, dest)
    restored = under(dest, src)
    got = sorted(str(p.relative_to(restored)) for p in restored.rglob("*"))
    assert got == ["a.tmpl", "keep", "keep/b.txt", "keep/cache", "keep/cache/d"]
    listed = {n.path for n in repo.listing(snapshot)}
    assert os.fsencode(src / "cache")[1:] not in listed


def test_several_paths_in_one_source(repo: Repository, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    (one / "x").mkdir(parents=True)
    two.mkdir()
    (one / "x" / "f").write_bytes(b"1")
    (two / "g").write_bytes(b"2")
    # A path inside another listed path is not backed up twice.
    snapshot = run_backup(repo, tree_source(unique("multi"), two, one, one / "x"))
    paths = [n.path for n in repo.listing(snapshot)]
    assert len(paths) == len(set(paths))
    assert paths == sorted(paths, key=lambda p: p.split(b"/"))
    dest = tmp_path / "dest"
    run_restore(repo, snapshot, dest)
    assert (under(dest, one) / "x" / "f").read_bytes() == b"1"
    assert (under(dest, two) / "g").read_bytes() == b"2"


def test_one_file_system_records_mount_points_but_does_not_enter_them(repo: Repository) -> None:
    # /dev/shm is a separate tmpfs below /dev on Linux; no mount privileges are needed to use it.
    if not os.path.isdir("/dev/shm") or os.stat("/dev").st_dev == os.stat("/dev/shm").st_dev:
        pytest.skip("needs /dev/shm mounted as its own file system below /dev")
    mine = Path(tempfile.mkdtemp(prefix="coldvault-test-", dir="/dev/shm"))
    try:
        (mine / "f").write_bytes(b"on another file system")
        snapshot = run_backup(repo, _config(f'name = "{unique("ofs")}"\npaths = ["/dev"]\none_file_system = true\n'))
        paths = {n.path: n for n in repo.listing(snapshot)}
        assert paths[b"dev/shm"].type == "dir"
        assert not any(p.startswith(b"dev/shm/") for p in paths)
        assert os.fsencode(mine)[1:] not in paths
        assert paths[b"dev/null"].type == "chardev"  # the rest of /dev is there
    finally:
        shutil.rmtree(mine)


def test_a_large_listing_spans_several_chunks(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for d in range(12):
        (src / f"dir-{d:02}").mkdir(parents=True)
        for f in range(30):
            (src / f"dir-{d:02}" / f"file-{f:02}-{'x' * (f % 7)}").write_bytes(b"%d/%d" % (d, f))
    source = tree_source(unique("large-listing"), src)
    first = run_backup(repo, source)
    assert len(first.listing) > 10  # cut by the chunker into several TREE blobs
    assert first.summary["files"] == 360
    second = run_backup(repo, source)
    assert second.listing == first.listing and second.summary["new_chunks"] == 0
    (src / "dir-05" / "file-00-").write_bytes(b"changed")
    third = run_backup(repo, source)
    # Only the listing around the change is new.  How many chunks that is depends on where FastCDC
    # resynchronises after the changed line, which varies with the run's timestamps and inodes; at
    # these tiny chunk sizes it is usually 1-3 and rarely up to ~10 of ~70.
    new = set(third.listing) - set(first.listing)
    assert 0 < len(new) <= len(first.listing) // 5
    run_restore(repo, third, tmp_path / "dest")
    assert state(under(tmp_path / "dest", src)) == state(src)


def test_missing_source_path_is_a_source_error(repo: Repository, tmp_path: Path) -> None:
    name = unique("missing")
    with pytest.raises(SourceError):
        run_backup(repo, tree_source(name, tmp_path / "no-such-dir"))
    assert [s for s in repo.snapshots() if s.source == name] == []


# ---- files that change during the backup -------------------------------------------------------
# The tests run as root, so chmod 000 cannot make a file unreadable.  Instead, a Progress
# callback (the first time bytes are read from 'a', the first file) changes the tree after the
# walk has already recorded the next entries with lstat, and before they are read.


def make_tree(src: Path) -> None:
    (src / "sub").mkdir(parents=True)
    (src / "a").write_bytes(b"first file " * 100)
    (src / "b").write_bytes(b"second file " * 100)
    (src / "c").write_bytes(b"third file " * 100)
    (src / "sub" / "inner").write_bytes(b"inner")


def test_a_file_that_vanishes_before_it_is_read_is_a_warning(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    progress = HookProgress(lambda: (src / "b").unlink())
    snapshot = run_backup(repo, tree_source(unique("vanish"), src), progress)
    assert snapshot.id and snapshot.partial
    assert len(snapshot.warnings) == 1 and str(src / "b") in snapshot.warnings[0]
    assert progress.warnings == list(snapshot.warnings)
    assert snapshot in repo.snapshots()  # committed
    dest = tmp_path / "dest"
    run_restore(repo, snapshot, dest)
    restored = under(dest, src)
    assert sorted(os.listdir(restored)) == ["a", "c", "sub"]
    assert (restored / "c").read_bytes() == b"third file " * 100


def test_a_file_swapped_for_a_fifo_is_skipped_without_hanging(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)

    def swap() -> None:
        (src / "b").unlink()
        os.mkfifo(src / "b")

    snapshot = run_backup(repo, tree_source(unique("fifo-swap"), src), HookProgress(swap))
    # The walk looks at each entry when it reaches it, so it records what is there by then: a FIFO,
    # whose "content" is never read (opening it for reading would block until a writer came).
    [b] = [n for n in repo.listing(snapshot) if n.path.endswith(b"/b")]
    assert b.type == "fifo" and not b.chunks and snapshot.warnings == ()


def test_a_directory_that_vanishes_before_it_is_read_is_a_warning(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    snapshot = run_backup(
        repo, tree_source(unique("vanish-dir"), src), HookProgress(lambda: shutil.rmtree(src / "sub"))
    )
    assert snapshot.partial and any(str(src / "sub") in w for w in snapshot.warnings)
    assert snapshot in repo.snapshots()
    dest = tmp_path / "dest"
    run_restore(repo, snapshot, dest)
    assert (under(dest, src) / "c").read_bytes() == b"third file " * 100


# ---- command sources -------------------------------------------------------------------------


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


STREAM_CODE = "import random, sys; sys.stdout.buffer.write(random.Random(5).randbytes(300000) + bytes(50000))"
STREAM_BYTES = random.Random(5).randbytes(300000) + bytes(50000)


def test_command_source_round_trips_through_a_stream(repo: Repository) -> None:
    snapshot = run_backup(repo, command_source(unique("dump"), python(STREAM_CODE)))
    assert snapshot.kind == STREAM and snapshot.paths == ()
    assert snapshot.program == os.path.basename(sys.executable)
    assert snapshot.summary["files"] == 1 and snapshot.summary["bytes"] == len(STREAM_BYTES)
    out = io.BytesIO()
    assert restore_to_stream(repo, snapshot, out, workers=2) == len(STREAM_BYTES)
    assert out.getvalue() == STREAM_BYTES


def test_command_source_restores_to_a_file(repo: Repository, tmp_path: Path) -> None:
    snapshot = run_backup(repo, command_source(unique("dump"), python(STREAM_CODE), filename="db.sql"))
    run_restore(repo, snapshot, tmp_path)
    assert (tmp_path / "db.sql").read_bytes() == STREAM_BYTES
    assert stat.S_IMODE((tmp_path / "db.sql").stat().st_mode) == 0o600


def test_empty_command_output_is_a_valid_snapshot(repo: Repository) -> None:
    snapshot = run_backup(repo, command_source(unique("empty"), ["true"]))
    out = io.BytesIO()
    assert restore_to_stream(repo, snapshot, out, workers=2) == 0 and out.getvalue() == b""


def test_failing_command_commits_no_snapshot(repo: Repository) -> None:
    name = unique("fails")
    with pytest.raises(SourceError) as info:
        run_backup(repo, command_source(name, ["sh", "-c", "head -c 100000 /dev/zero; echo boom >&2; exit 3"]))
    assert "boom" in str(info.value) and "3" in str(info.value)
    assert [s for s in repo.snapshots() if s.source == name] == []


def test_failing_command_without_output(repo: Repository) -> None:
    name = unique("fails")
    with pytest.raises(SourceError, match="boom"):
        run_backup(repo, command_source(name, ["sh", "-c", "echo boom >&2; exit 3"]))
    assert [s for s in repo.snapshots() if s.source == name] == []


def test_a_command_that_floods_stderr_does_not_deadlock(repo: Repository) -> None:
    # More stderr than a pipe holds, before any stdout: stderr must be drained while stdout is read.
    code = "import sys; sys.stderr.write('e' * 1_000_000); sys.stderr.flush(); sys.stdout.write('done')"
    snapshot = run_backup(repo, command_source(unique("noisy"), python(code)))
    out = io.BytesIO()
    restore_to_stream(repo, snapshot, out, workers=2)
    assert out.getvalue() == b"done"


def test_a_command_gets_no_stdin(repo: Repository) -> None:
    snapshot = run_backup(repo, command_source(unique("cat"), ["cat"]))  # would hang if stdin were inherited
    out = io.BytesIO()
    assert restore_to_stream(repo, snapshot, out, workers=2) == 0


def test_command_that_cannot_start_is_a_source_error(repo: Repository) -> None:
    with pytest.raises(SourceError):
        run_backup(repo, command_source(unique("nocmd"), ["/nonexistent/program", "--flag"]))


def test_stream_restore_of_a_tree_snapshot_is_a_usage_error(repo: Repository, awkward: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        restore_to_stream(repo, awkward["snapshot"], io.BytesIO(), workers=2)  # type: ignore[arg-type]


# ---- partial restores ------------------------------------------------------------------------


@pytest.fixture
def two_subtrees(repo: Repository, tmp_path: Path) -> tuple[Path, Snapshot]:
    src = tmp_path / "src"
    (src / "one" / "deep").mkdir(parents=True)
    (src / "two").mkdir()
    (src / "one" / "deep" / "f").write_bytes(b"f")
    (src / "one" / "g").write_bytes(b"g")
    (src / "two" / "h").write_bytes(b"h" * 10_000)
    os.link(src / "two" / "h", src / "one" / "h-link")  # leader 'one/h-link' sorts before 'two/h'
    (src / "one" / "large").write_bytes(random.Random(7).randbytes(3 << 19))  # goes through the large lane
    return src, run_backup(repo, tree_source(unique("subtrees"), src))


def test_restore_of_a_subtree(repo: Repository, tmp_path: Path, two_subtrees: tuple[Path, Snapshot]) -> None:
    src, snapshot = two_subtrees
    dest = tmp_path / "dest"
    run_restore(repo, snapshot, dest, path=str(src / "two"))
    restored = under(dest, src)
    assert sorted(os.listdir(restored)) == ["two"]
    # A hard link whose leader is outside the subtree comes back as a copy.
    assert (restored / "two" / "h").read_bytes() == b"h" * 10_000


def test_restore_of_a_subtree_with_a_large_file(
    repo: Repository, tmp_path: Path, two_subtrees: tuple[Path, Snapshot]
) -> None:
    src, snapshot = two_subtrees
    dest = tmp_path / "dest"
    run_restore(repo, snapshot, dest, path=str(src / "one"))
    restored = under(dest, src)
    assert sorted(str(p.relative_to(restored)) for p in files_below(restored)) == [
        "one/deep/f",
        "one/g",
        "one/h-link",
        "one/large",
    ]
    assert (restored / "one" / "large").read_bytes() == (src / "one" / "large").read_bytes()


def test_restore_of_a_single_file_with_a_relative_path(
    repo: Repository, tmp_path: Path, two_subtrees: tuple[Path, Snapshot]
) -> None:
    src, snapshot = two_subtrees
    dest = tmp_path / "dest"
    run_restore(repo, snapshot, dest, path=str(src / "one" / "deep" / "f").lstrip("/"))
    restored = under(dest, src)
    assert [str(p.relative_to(restored)) for p in files_below(restored)] == ["one/deep/f"]


def test_restore_of_an_unknown_path_is_a_usage_error(
    repo: Repository, tmp_path: Path, two_subtrees: tuple[Path, Snapshot]
) -> None:
    src, snapshot = two_subtrees
    for path in (str(src / "three"), str(src / "on"), "etc"):
        with pytest.raises(UsageError):
            run_restore(repo, snapshot, tmp_path / "dest", path=path)
    assert files_below(tmp_path / "dest") == []


@pytest.mark.parametrize("suffix", ["one/../two", "./one", "one/./deep"])
def test_restore_path_with_dot_components_is_a_usage_error(
    repo: Repository, tmp_path: Path, two_subtrees: tuple[Path, Snapshot], suffix: str
) -> None:
    src, snapshot = two_subtrees
    with pytest.raises(UsageError):
        run_restore(repo, snapshot, tmp_path / "dest", path=f"{src}/{suffix}")


def test_restore_path_with_dot_components_restores_nothing(
    repo: Repository, tmp_path: Path, two_subtrees: tuple[Path, Snapshot]
) -> None:
    src, snapshot = two_subtrees
    with pytest.raises((UsageError, IntegrityError)):
        run_restore(repo, snapshot, tmp_path / "dest", path=f"{src}/one/../two")
    assert files_below(tmp_path / "dest") == []


# ---- hostile snapshots -------------------------------------------------------------------------


def forge_snapshot(repo: Repository, nodes: list[Node], contents: dict[bytes, bytes] | None = None) -> Snapshot:
    """Commit a snapshot with a hand-written listing, as an attacker holding the key could."""
    writer = BlobWriter(repo)
    try:
        for node in nodes:
            if node.type == FILE and node.path in (contents or {}):
                data = contents[node.path]  # type: ignore[index]
                node.chunks, node.size = [writer.store(BlobKind.DATA, data)], len(data)
        listing = b"".join(encode_node(n) for n in nodes)
        tree_id = writer.store(BlobKind.TREE, listing)
        repo.write_index(writer.flush())
    finally:
        writer.close()
    snapshot = Snapshot(
        source=unique("forged"),
        kind=TREE,
        time=repo.clock(),
        host="attacker",
        username="mallory",
        tool_version="0",
        paths=("/",),
        program=None,
        listing=(tree_id,),
        parent=None,
    )
    return replace(snapshot, id=repo.commit_snapshot(snapshot))


def everything_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.mark.parametrize(
    "link_path, target_of",
    [
        (b"a", lambda outside: os.fsencode(outside)),
        (b"d/a", lambda outside: os.fsencode(outside)),
        (b"a", lambda outside: b"../outside"),
        (b"a", lambda outside: b".."),
    ],
    ids=["absolute", "nested", "relative", "dotdot"],
)
@pytest.mark.parametrize("payload", [b"owned!", b"owned!" * 200_000], ids=["small", "large"])  # large: restored ahead
def test_symlink_then_file_below_it_cannot_escape(
    repo: Repository, tmp_path: Path, link_path: bytes, target_of: Callable[[Path], bytes], payload: bytes
) -> None:
    outside, dest = tmp_path / "outside", tmp_path / "dest"
    outside.mkdir()
    nodes = [Node(b"d", "dir", 0o755)] if link_path.startswith(b"d/") else []
    nodes += [
        Node(link_path, SYMLINK, 0o777, target=target_of(outside)),
        Node(link_path + b"/pwned", FILE, 0o644),
    ]
    snapshot = forge_snapshot(repo, nodes, {link_path + b"/pwned": payload})
    with pytest.raises(IntegrityError):
        run_restore(repo, snapshot, dest)
    assert everything_under(outside) == set()
    assert not (tmp_path / "pwned").exists()
    assert everything_under(tmp_path) <= {"outside", "dest", "dest/d", "dest/" + os.fsdecode(link_path)}


def test_symlink_then_directory_below_it_cannot_escape(repo: Repository, tmp_path: Path) -> None:
    outside, dest = tmp_path / "outside", tmp_path / "dest"
    outside.mkdir()
    nodes = [
        Node(b"a", SYMLINK, 0o777, target=os.fsencode(outside)),
        Node(b"a/newdir", "dir", 0o755),
        Node(b"a/fifo", "fifo", 0o644),
    ]
    with pytest.raises(IntegrityError):
        run_restore(repo, forge_snapshot(repo, nodes), dest)
    assert everything_under(outside) == set()


def test_a_file_entry_replaces_a_symlink_instead_of_writing_through_it(repo: Repository, tmp_path: Path) -> None:
    outside, dest = tmp_path / "outside", tmp_path / "dest"
    outside.mkdir()
    (outside / "victim").write_bytes(b"original")
    nodes = [
        Node(b"a", SYMLINK, 0o777, target=os.fsencode(outside / "victim")),
        Node(b"a", FILE, 0o644),
    ]
    # Two entries for one name never come from a writer: the listing is refused before anything is
    # written through the symlink.
    with pytest.raises(IntegrityError, match="out of order"):
        run_restore(repo, forge_snapshot(repo, nodes, {b"a": b"overwritten?"}), dest)
    assert (outside / "victim").read_bytes() == b"original"


def test_a_symlink_planted_in_the_destination_is_replaced_not_followed(
    repo: Repository, tmp_path: Path, two_subtrees: tuple[Path, Snapshot]
) -> None:
    src, snapshot = two_subtrees
    outside, dest = tmp_path / "outside", tmp_path / "dest"
    outside.mkdir()
    dest.mkdir()
    first = os.fsdecode(os.fsencode(src)[1:].split(b"/")[0])  # 'tmp': a directory entry in the listing
    os.symlink(outside, dest / first)
    run_restore(repo, snapshot, dest)
    assert everything_under(outside) == set()
    assert not (dest / first).is_symlink() and (dest / first).is_dir()
    assert (under(dest, src) / "two" / "h").read_bytes() == b"h" * 10_000


def test_a_symlink_planted_in_the_destination_stops_a_listing_without_its_directory(
    repo: Repository, tmp_path: Path
) -> None:
    outside, dest = tmp_path / "outside", tmp_path / "dest"
    outside.mkdir()
    dest.mkdir()
    os.symlink(outside, dest / "a")
    snapshot = forge_snapshot(repo, [Node(b"a/b/c", FILE, 0o644)], {b"a/b/c": b"data"})  # no entry for 'a'
    with pytest.raises(IntegrityError):
        run_restore(repo, snapshot, dest)
    assert everything_under(outside) == set()


def forge_raw_snapshot(repo: Repository, lines: list[bytes]) -> Snapshot:
    """Like forge_snapshot, for listing lines encode_node would refuse to write."""
    writer = BlobWriter(repo)
    try:
        tree_id = writer.store(BlobKind.TREE, b"".join(lines))
        repo.write_index(writer.flush())
    finally:
        writer.close()
    snapshot = Snapshot(
        unique("forged"), TREE, repo.clock(), "attacker", "mallory", "0", ("/",), None, (tree_id,), None
    )
    return replace(snapshot, id=repo.commit_snapshot(snapshot))


def with_path(node: Node, path: bytes) -> bytes:
    doc = json.loads(encode_node(node))
    doc["path"] = path.decode()
    return json.dumps(doc).encode() + b"\n"


@pytest.mark.parametrize("bad", [b"../escape", b"ok/../../escape", b"/abs-escape", b"x//y", b"."])
def test_listing_with_an_unsafe_path_is_rejected(repo: Repository, tmp_path: Path, bad: bytes) -> None:
    dest = tmp_path / "sub" / "dest"
    ok = forge_snapshot(repo, [Node(b"ok", "dir", 0o755), Node(b"ok/file", FILE, 0o644)], {b"ok/file": b"fine"})
    good_lines = [encode_node(n) for n in repo.listing(ok)]
    escaping = next(n for n in repo.listing(ok) if n.type == FILE)
    snapshot = forge_raw_snapshot(repo, [*good_lines, with_path(escaping, bad)])
    with pytest.raises(IntegrityError):
        run_restore(repo, snapshot, dest)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "sub" / "escape").exists()
    assert not Path("/abs-escape").exists()
    assert everything_under(tmp_path) <= {"sub", "sub/dest", "sub/dest/ok", "sub/dest/ok/file"}


def test_listing_sizes_that_disagree_with_the_chunks_are_rejected(repo: Repository, tmp_path: Path) -> None:
    node = Node(b"f", FILE, 0o644)
    snapshot = forge_snapshot(repo, [node], {b"f": b"12345"})
    lying = replace(node, size=3)
    forged = forge_snapshot(repo, [lying])
    with pytest.raises(IntegrityError):
        run_restore(repo, forged, tmp_path / "dest")
    run_restore(repo, snapshot, tmp_path / "ok")
    assert (tmp_path / "ok" / "f").read_bytes() == b"12345"


# ---- damaged repositories ----------------------------------------------------------------------


@pytest.fixture
def damaged_setup(fresh_repo: Repository, tmp_path: Path) -> tuple[Repository, MemoryStore, Path, Snapshot, bytes]:
    src = tmp_path / "src"
    src.mkdir()
    data = random.Random(3).randbytes(60_000)
    (src / "f").write_bytes(data)
    snapshot = run_backup(fresh_repo, tree_source("victim", src))
    return fresh_repo, fresh_repo.store, src, snapshot, data  # type: ignore[return-value]


@pytest.mark.parametrize("which", [0, 1, -1])
def test_a_flipped_byte_in_a_data_pack_fails_the_restore(
    damaged_setup: tuple[Repository, MemoryStore, Path, Snapshot, bytes], tmp_path: Path, which: int
) -> None:
    repo, store, src, snapshot, data = damaged_setup
    packs = [i.handle for i in store.list(Kind.DATA)]
    assert len(packs) >= 2
    store.corrupt(packs[which], position=50)  # inside the first blob of that pack
    dest = tmp_path / "dest"
    with pytest.raises(IntegrityError):
        run_restore(repo, snapshot, dest)
    # Never a wrong file: a file appears under its name only once every chunk is verified and written,
    # and the partial one is cleaned up.
    assert not (under(dest, src) / "f").exists()
    assert [p for p in dest.rglob("*") if p.is_file()] == []


def test_a_flipped_byte_anywhere_in_a_data_pack_never_restores_wrong_bytes(
    damaged_setup: tuple[Repository, MemoryStore, Path, Snapshot, bytes], tmp_path: Path
) -> None:
    repo, store, src, snapshot, data = damaged_setup
    pack = next(iter(store.list(Kind.DATA)))
    rng = random.Random(4)
    for attempt in range(5):
        position = rng.randrange(pack.size)
        store.corrupt(pack.handle, position)
        dest = tmp_path / f"dest{attempt}"
        try:
            run_restore(repo, snapshot, dest)
        except IntegrityError:
            restored = under(dest, src) / "f"
            assert not restored.exists() or (
                data.startswith(restored.read_bytes()) and restored.stat().st_size < len(data)
            )
        else:  # the flip hit the pack header, which a restore does not read
            assert (under(dest, src) / "f").read_bytes() == data
        store.corrupt(pack.handle, position)  # flip it back


def test_a_flipped_byte_in_the_listing_fails_before_anything_is_written(
    damaged_setup: tuple[Repository, MemoryStore, Path, Snapshot, bytes], tmp_path: Path
) -> None:
    repo, store, _, snapshot, _ = damaged_setup
    for info in store.list(Kind.TREE):
        store.corrupt(info.handle, position=50)
    with pytest.raises(IntegrityError):
        run_restore(repo, snapshot, tmp_path / "dest")
    assert files_below(tmp_path / "dest") == []


def test_a_missing_data_pack_fails_the_restore(
    damaged_setup: tuple[Repository, MemoryStore, Path, Snapshot, bytes], tmp_path: Path
) -> None:
    repo, store, src, snapshot, data = damaged_setup
    store.remove_silently(next(iter(store.list(Kind.DATA))).handle)
    with pytest.raises(Exception) as info:
        run_restore(repo, snapshot, tmp_path / "dest")
    assert not isinstance(info.value, AssertionError)
    restored = under(tmp_path / "dest", src) / "f"
    assert not restored.exists() or restored.stat().st_size < len(data)


class FlakyStore(MemoryStore):
    """A memory store whose data-pack uploads fail once ``failing`` is set (a provider outage)."""

    failing = False

    def put(self, handle, data, **kwargs):  # type: ignore[no-untyped-def,override]
        if self.failing and handle.kind is Kind.DATA:
            raise TargetError(f"{self.name}: simulated outage")
        return super().put(handle, data, **kwargs)


def test_a_failed_upload_commits_no_snapshot_and_a_retry_succeeds(tmp_path: Path) -> None:
    store = FlakyStore()
    repo = Repository.init(store, Secret(b"pw"), FORMAT)
    src = tmp_path / "src"
    src.mkdir()
    data = random.Random(12).randbytes(100_000)  # several packs' worth
    (src / "f").write_bytes(data)
    source = tree_source("flaky", src)
    store.failing = True
    with pytest.raises(TargetError):
        run_backup(repo, source)
    assert list(store.list(Kind.SNAPSHOT)) == [] and list(store.list(Kind.INDEX)) == []
    store.failing = False
    snapshot = run_backup(repo, source)
    run_restore(repo, snapshot, tmp_path / "dest")
    assert (under(tmp_path / "dest", src) / "f").read_bytes() == data


def test_a_reopened_repository_restores_what_was_backed_up(
    damaged_setup: tuple[Repository, MemoryStore, Path, Snapshot, bytes], tmp_path: Path
) -> None:
    _, store, src, snapshot, data = damaged_setup
    reopened = Repository.open(store, passphrase=Secret(b"pw"))
    [found] = reopened.snapshots()
    assert found.id == snapshot.id
    run_restore(reopened, found, tmp_path / "dest")
    assert (under(tmp_path / "dest", src) / "f").read_bytes() == data


# ---- regressions -------------------------------------------------------------------------------


def test_a_file_equal_to_a_listing_chunk_restores(fresh_repo: Repository, tmp_path: Path) -> None:
    # Regression: chunk ids do not depend on the kind, and dedup used to ignore it, so this file's
    # chunk was "already stored" (as a TREE blob) and its restore failed.
    first_src, second_src = tmp_path / "first", tmp_path / "second"
    first_src.mkdir()
    second_src.mkdir()
    (first_src / "f").write_bytes(b"hello")
    first = run_backup(fresh_repo, tree_source("first", first_src))
    listing_chunk = fresh_repo.read_blob(BlobKind.TREE, first.listing[0])
    (second_src / "copy").write_bytes(listing_chunk)  # e.g. a saved copy of a listing
    second = run_backup(fresh_repo, tree_source("second", second_src))
    run_restore(fresh_repo, second, tmp_path / "dest")
    assert (under(tmp_path / "dest", second_src) / "copy").read_bytes() == listing_chunk
    run_restore(fresh_repo, first, tmp_path / "dest-first")
    assert (under(tmp_path / "dest-first", first_src) / "f").read_bytes() == b"hello"


def test_the_same_bytes_stored_as_data_and_as_listing_are_both_readable(fresh_repo: Repository) -> None:
    payload = b'{"path":"x","type":"dir"}\n' * 20
    writer = BlobWriter(fresh_repo)
    try:
        data_id = writer.store(BlobKind.DATA, payload)
        tree_id = writer.store(BlobKind.TREE, payload)
        fresh_repo.write_index(writer.flush())
    finally:
        writer.close()
    assert data_id == tree_id
    assert fresh_repo.read_blob(BlobKind.DATA, data_id) == payload
    assert fresh_repo.read_blob(BlobKind.TREE, tree_id) == payload
    reopened = Repository.open(fresh_repo.store, passphrase=Secret(b"pw"))
    assert reopened.read_blob(BlobKind.TREE, tree_id) == reopened.read_blob(BlobKind.DATA, data_id) == payload


@pytest.mark.parametrize("mode", [0o7777, 0o6000, 0o1000])
def test_files_with_special_mode_bits_round_trip(repo: Repository, tmp_path: Path, mode: int) -> None:
    # Regression: mode 07777 was refused on read, which made the whole snapshot unrestorable.
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    os.chmod(src / "f", mode)
    source = tree_source(unique("modes"), src)
    snapshot = run_backup(repo, source)
    run_restore(repo, snapshot, tmp_path / "dest")
    assert stat.S_IMODE(os.stat(under(tmp_path / "dest", src) / "f").st_mode) == mode
    assert run_backup(repo, source).summary["reused_files"] == 1  # the parent listing reads back


def test_a_source_path_with_two_leading_slashes(repo: Repository, tmp_path: Path) -> None:
    # Regression: POSIX abspath keeps a leading '//', which put an absolute path into the listing:
    # the backup committed, then the snapshot and every later backup of the source failed to read.
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data")
    source = tree_source(unique("double-slash"), "/" + str(src))
    snapshot = run_backup(repo, source)
    run_restore(repo, snapshot, tmp_path / "dest")
    assert (under(tmp_path / "dest", src) / "f").read_bytes() == b"data"
    assert run_backup(repo, source).summary["reused_files"] == 1


def test_chunk_sizes_fastcdc_cannot_use_are_refused_by_the_config(tmp_path: Path) -> None:
    # Regression: init accepted them, then every backup died with a raw ValueError from pyfastcdc.
    for sizes in ((64, 128, 4096), (64, 256, 512)):
        with pytest.raises(ValueError):
            FormatConfig(chunk_min_size=sizes[0], chunk_avg_size=sizes[1], chunk_max_size=sizes[2])
    smallest = FormatConfig(chunk_min_size=64, chunk_avg_size=256, chunk_max_size=1024, pack_size=4096)
    repo = Repository.init(MemoryStore(), Secret(b"pw"), smallest)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(random.Random(8).randbytes(20_000))
    snapshot = run_backup(repo, tree_source("tiny-chunks", src))
    assert snapshot.summary["new_chunks"] > 20
    run_restore(repo, snapshot, tmp_path / "dest")
    assert (under(tmp_path / "dest", src) / "f").read_bytes() == (src / "f").read_bytes()


def test_a_file_rewritten_while_it_is_read_is_a_warning_and_read_again_next_time(
    repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(random.Random(1).randbytes(200_000))
    source = tree_source(unique("changing"), src)

    def rewrite_a() -> None:  # runs after the first chunk of a was read, before the rest
        (src / "a").write_bytes(b"new content" * 30_000)

    first = run_backup(repo, source, HookProgress(rewrite_a))
    assert len(first.warnings) == 1 and "changed while it was read" in first.warnings[0]
    second = run_backup(repo, source)
    assert second.warnings == () and second.summary["reused_files"] == 0  # read again, not trusted
    run_restore(repo, second, tmp_path / "dest")
    assert (under(tmp_path / "dest", src) / "a").read_bytes() == b"new content" * 30_000


class InlineExecutor(Executor):
    """Runs each task at once on the submitting thread: every result is ready before the next step."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: Future[object] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def test_a_reader_waiting_for_a_segment_after_entries_without_data_gets_one(tmp_path, monkeypatch) -> None:
    # Directories after each file make batches without chunks, which are consumed as soon as they are
    # queued, together with every result ready by then: the reader waiting for a segment must not then
    # wait for a result consumed already.  The inline executor makes every result ready at once (with
    # threads, it happened when every chunk was known already); default chunk sizes fill the segments.
    monkeypatch.setattr(backup_module, "ThreadPoolExecutor", InlineExecutor)
    repo = Repository.init(MemoryStore(), Secret(b"pw"), FormatConfig())
    src = tmp_path / "src"
    rng = random.Random(11)
    for i in range(30):
        folder = src / f"d{i:03}"
        folder.mkdir(parents=True)
        (folder / "big").write_bytes(rng.randbytes(3 << 20))
        for j in range(30):
            (folder / f"sub{j:02}").mkdir()
    options = BackupOptions(workers=1, compression_level=1)
    snapshot = backup(repo, tree_source(unique("segments"), src), options, SilentProgress()).snapshot
    run_restore(repo, snapshot, tmp_path / "dest")
    assert state(under(tmp_path / "dest", src)) == state(src)


@pytest.mark.skipif(not AS_ROOT, reason="device files are backed up here only as root")
def test_root_without_cap_mknod_skips_devices_with_a_warning(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mknod(src / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    (src / "file").write_text("kept")
    snapshot = run_backup(repo, tree_source("devices", src))

    def refused(*_: object, **__: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    # A capability cannot be dropped for one test inside the test process: mknod fails as it does
    # for root in a container without CAP_MKNOD.
    monkeypatch.setattr(os, "mknod", refused)
    result = run_restore(repo, snapshot, tmp_path / "dest")
    assert result.warnings == [f"{str(src).lstrip('/')}/null: device files need the CAP_MKNOD capability; skipped"]
    assert (under(tmp_path / "dest", src) / "file").read_text() == "kept"
    assert not (under(tmp_path / "dest", src) / "null").exists()
