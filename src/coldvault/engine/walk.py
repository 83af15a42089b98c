"""Walk a source's paths in listing order, applying excludes and the one-file-system rule.

Order: by path components, so a directory comes before its contents and the
listing comes out sorted without holding it in memory.  Entries that vanish
or cannot be read become warnings, never exceptions.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from coldvault.errors import SourceError

Warn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Entry:
    relative: bytes  # the listing path: the absolute path without its leading '/'
    absolute: bytes
    stat: os.stat_result


class Excludes:
    """A pattern without '/' matches a name anywhere ('*.tmp', '.cache'); one with '/' matches the absolute path."""

    def __init__(self, patterns: list[str]) -> None:
        encoded = [os.fsencode(p.rstrip("/")) for p in patterns]
        self._names = [p for p in encoded if b"/" not in p]
        self._paths = [p for p in encoded if b"/" in p]

    def __call__(self, absolute: bytes) -> bool:
        name = os.path.basename(absolute)
        return any(fnmatch.fnmatchcase(name, p) for p in self._names) or any(
            fnmatch.fnmatchcase(absolute, p) for p in self._paths
        )


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
    """The directories above a source path, so a restore recreates them with their metadata."""
    parts = root.strip(b"/").split(b"/")[:-1]
    for depth in range(1, len(parts) + 1):
        relative = b"/".join(parts[:depth])
        if relative in emitted:
            continue
        emitted.add(relative)
        try:
            yield Entry(relative, b"/" + relative, os.lstat(b"/" + relative))
        except OSError as exc:
            warn(f"cannot read {os.fsdecode(b'/' + relative)}: {exc.strerror}")


def _walk_tree(root: bytes, root_stat: os.stat_result, excludes: Excludes, one_fs: bool, warn: Warn) -> Iterator[Entry]:
    stack: list[tuple[bytes, os.stat_result]] = [(root, root_stat)]
    while stack:
        path, st = stack.pop()
        yield Entry(path[1:], path, st)
        if not stat.S_ISDIR(st.st_mode) or (one_fs and st.st_dev != root_stat.st_dev):
            continue
        try:
            with os.scandir(path) as it:
                names = sorted(entry.name for entry in it)
        except OSError as exc:
            warn(f"cannot read directory {os.fsdecode(path)}: {exc.strerror}")
            continue
        children = []
        for name in names:
            child = path + b"/" + name
            if excludes(child):
                continue
            try:
                children.append((child, os.lstat(child)))
            except FileNotFoundError:
                warn(f"{os.fsdecode(child)} vanished during the backup")
            except OSError as exc:
                warn(f"cannot read {os.fsdecode(child)}: {exc.strerror}")
        stack.extend(reversed(children))
