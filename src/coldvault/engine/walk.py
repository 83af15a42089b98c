"""Walk a source's paths in listing order, applying excludes and the one-file-system rule.

Order: by path components, so a directory comes before its contents and the
listing comes out sorted without holding it in memory.  Entries that vanish
or cannot be read become warnings, never exceptions.

Below a source path, everything is reached through open directory descriptors
(scandir, lstat, open and readlink relative to them, O_NOFOLLOW when
descending): trees deeper than PATH_MAX are backed up, and a directory swapped
for a symlink during the walk is never followed.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from coldvault.errors import SourceError

Warn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Entry:
    relative: bytes  # the listing path: the absolute path without its leading '/'
    absolute: bytes  # for messages and exclude patterns; may be longer than PATH_MAX
    stat: os.stat_result
    dir_fd: int | None = None  # its directory, open while the walk is at this entry (None: use the path)
    name: bytes = b""

    def open(self, flags: int) -> int:
        if self.dir_fd is None:
            return os.open(self.absolute, flags)
        return os.open(self.name, flags, dir_fd=self.dir_fd)

    def readlink(self) -> bytes:
        if self.dir_fd is None:
            return os.readlink(self.absolute)
        return os.readlink(self.name, dir_fd=self.dir_fd)


class Excludes:
    """A pattern without '/' matches a name anywhere ('*.tmp', '.cache'); one with '/' matches the absolute path.

    Each kind is compiled into one regular expression, made of the ones fnmatch compiles for each
    pattern: one match per entry, however many patterns a config lists.
    """

    def __init__(self, patterns: list[str]) -> None:
        encoded = [os.fsencode(p.rstrip("/")) for p in patterns]
        self._name = _any_of([p for p in encoded if b"/" not in p])
        self._path = _any_of([p for p in encoded if b"/" in p])

    def __call__(self, absolute: bytes) -> bool:
        return bool(
            (self._name is not None and self._name(os.path.basename(absolute)))
            or (self._path is not None and self._path(absolute))
        )


def _any_of(patterns: list[bytes]) -> Callable[[bytes], re.Match[bytes] | None] | None:
    """A matcher for any of the fnmatch ``patterns``; bytes are read as Latin-1, as fnmatch reads them."""
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(p.decode("latin-1")) for p in patterns).encode("latin-1")).match


def walk(paths: list[bytes], excludes: Excludes, one_file_system: bool, warn: Warn) -> Iterator[Entry]:
    roots = _normalised_roots(paths)
    emitted_parents: set[bytes] = set()
    for root in roots:
        try:
            root_stat = os.lstat(root)
        except OSError as exc:
            raise SourceError(
                f"source path {os.fsdecode(root)} cannot be read ({exc.strerror}); fix 'paths' in the config"
            ) from None
        yield from _parents(root, emitted_parents, warn)
        yield from _walk_tree(root, root_stat, excludes, one_file_system, warn)


def _normalised_roots(paths: list[bytes]) -> list[bytes]:
    """Absolute, sorted in listing order, with paths inside another listed path dropped."""
    # POSIX lets abspath keep a leading '//', which would make listing paths absolute.
    absolute = sorted({b"/" + os.path.abspath(p).lstrip(b"/") for p in paths}, key=lambda p: p.split(b"/"))
    roots: list[bytes] = []
    for path in absolute:
        if path == b"/":
            raise SourceError("backing up '/' as a whole is not supported; list the directories to back up")
        if not any(path.startswith(r + b"/") for r in roots):
            roots.append(path)
    return roots


def _parents(root: bytes, emitted: set[bytes], warn: Warn) -> Iterator[Entry]:
    """The directories above a source path, so a restore recreates them with their metadata.

    They are recorded as the directories they lead to: on Debian /var/run is a
    symlink to /run, and /var/run/x must restore below a directory var/run.
    """
    parts = root.strip(b"/").split(b"/")[:-1]
    for depth in range(1, len(parts) + 1):
        relative = b"/".join(parts[:depth])
        if relative in emitted:
            continue
        emitted.add(relative)
        try:
            yield Entry(relative, b"/" + relative, os.stat(b"/" + relative))
        except OSError as exc:
            warn(f"cannot read {os.fsdecode(b'/' + relative)}: {exc.strerror}")


def _walk_tree(root: bytes, root_stat: os.stat_result, excludes: Excludes, one_fs: bool, warn: Warn) -> Iterator[Entry]:
    yield Entry(root[1:], root, root_stat)
    if not stat.S_ISDIR(root_stat.st_mode):
        return
    # Each frame: an open directory, its path, and the children still to visit.
    stack: list[tuple[int, bytes, Iterator[tuple[bytes, os.stat_result]]]] = []
    try:
        _descend(stack, None, root, root, warn, excludes)
        while stack:
            fd, path, children = stack[-1]
            child = next(children, None)
            if child is None:
                os.close(fd)
                stack.pop()
                continue
            name, st = child
            child_path = path + b"/" + name
            yield Entry(child_path[1:], child_path, st, fd, name)
            if stat.S_ISDIR(st.st_mode) and not (one_fs and st.st_dev != root_stat.st_dev):
                _descend(stack, fd, name, child_path, warn, excludes)
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _descend(
    stack: list[tuple[int, bytes, Iterator[tuple[bytes, os.stat_result]]]],
    parent_fd: int | None,
    name: bytes,
    path: bytes,
    warn: Warn,
    excludes: Excludes,
) -> None:
    """Open a directory without following a symlink, and push its sorted, non-excluded children."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
    except OSError as exc:
        warn(f"cannot read directory {os.fsdecode(path)}: {exc.strerror}")
        return
    try:
        with os.scandir(fd) as it:
            # scandir on a descriptor yields str names; fsencode restores the exact bytes
            names = sorted(os.fsencode(entry.name) for entry in it)
    except OSError as exc:
        os.close(fd)
        warn(f"cannot read directory {os.fsdecode(path)}: {exc.strerror}")
        return
    stack.append((fd, path, _children(fd, path, names, warn, excludes)))


def _children(
    fd: int, path: bytes, names: list[bytes], warn: Warn, excludes: Excludes
) -> Iterator[tuple[bytes, os.stat_result]]:
    for name in names:
        child = path + b"/" + name
        if excludes(child):
            continue
        try:
            yield name, os.lstat(name, dir_fd=fd)
        except FileNotFoundError:
            warn(f"{os.fsdecode(child)} vanished during the backup")
        except OSError as exc:
            warn(f"cannot read {os.fsdecode(child)}: {exc.strerror}")
