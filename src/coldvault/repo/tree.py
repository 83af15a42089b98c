"""The snapshot listing: one JSON object per line, one line per filesystem entry.

The listing is a byte stream cut into chunks by the same content-defined
chunker as file data and stored as TREE blobs, so an unchanged region of a
large listing deduplicates against the previous snapshot, and a listing of
millions of files never has to sit in one object.

Lines are sorted by path components, so a directory precedes its contents.
Paths are relative ('/'-separated, no leading '/'); a path or symlink target
that is not valid UTF-8 is stored base64-encoded under ``path_b64`` /
``target_b64`` so any file name bytes survive.  Everything decoded from a
listing is validated: a hostile listing fails with IntegrityError, never with
a wrong restore.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from coldvault.errors import IntegrityError
from coldvault.repo.ids import parse_id

FILE, DIR, SYMLINK, FIFO, SOCKET, CHARDEV, BLOCKDEV = "file", "dir", "symlink", "fifo", "socket", "chardev", "blockdev"
NODE_TYPES = frozenset({FILE, DIR, SYMLINK, FIFO, SOCKET, CHARDEV, BLOCKDEV})

# One encoder and decoder for every line: json.dumps with separators builds a new encoder per call.
_encode_json = json.JSONEncoder(separators=(",", ":")).encode
_decode_json = json.JSONDecoder().decode


@dataclass(slots=True)
class Node:
    path: bytes
    type: str
    mode: int = 0  # permission bits only (st_mode & 0o7777)
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    # regular files
    size: int = 0
    chunks: list[bytes] = field(default_factory=list)
    ctime_ns: int = 0  # with inode, size and mtime: "unchanged since the parent snapshot"
    inode: int = 0
    link_group: int | None = None  # files sharing a group number are hard links of each other
    # symlinks and devices
    target: bytes | None = None
    rdev: int = 0


def check_relative_path(path: bytes, what: str = "path") -> bytes:
    """A path may only name something below the restore root."""
    if not path or path.startswith(b"/") or path.endswith(b"/") or b"\0" in path or b"//" in path:
        raise IntegrityError(f"listing has an unsafe {what} {path!r}")
    # Every line of every listing passes here: split only paths with a component starting with '.'.
    if (path.startswith(b".") or b"/." in path) and any(part in (b".", b"..") for part in path.split(b"/")):
        raise IntegrityError(f"listing has an unsafe {what} {path!r}")
    return path


def encode_node(node: Node) -> bytes:
    check_relative_path(node.path)  # never write what a reader would have to refuse
    doc: dict[str, object] = {}
    _put_bytes(doc, "path", node.path)
    doc.update(type=node.type, mode=node.mode, uid=node.uid, gid=node.gid, mtime_ns=node.mtime_ns)
    if node.type == FILE:
        doc.update(size=node.size, chunks=[c.hex() for c in node.chunks], ctime_ns=node.ctime_ns, inode=node.inode)
        if node.link_group is not None:
            doc["link_group"] = node.link_group
    elif node.type == SYMLINK:
        _put_bytes(doc, "target", node.target or b"")
    elif node.type in (CHARDEV, BLOCKDEV):
        doc["rdev"] = node.rdev
    return _encode_json(doc).encode() + b"\n"


def decode_node(line: bytes) -> Node:
    try:
        doc = _decode_json(line.decode())  # listings are written as UTF-8 (ASCII, in fact: ensure_ascii)
    except ValueError:
        raise IntegrityError("listing has a line that is not JSON") from None
    if not isinstance(doc, dict):
        raise IntegrityError("listing has a line that is not an object")
    node_type = doc.get("type")
    if node_type not in NODE_TYPES:
        raise IntegrityError(f"listing has an unknown entry type {node_type!r}")
    node = Node(
        path=check_relative_path(_get_bytes(doc, "path")),
        type=node_type,
        mode=_int(doc, "mode", 0, 0o10000),
        uid=_int(doc, "uid"),
        gid=_int(doc, "gid"),
        mtime_ns=_int(doc, "mtime_ns", -(1 << 63), 1 << 63),
    )
    if node_type == FILE:
        node.size = _int(doc, "size", 0, 1 << 63)
        node.ctime_ns = _int(doc, "ctime_ns", -(1 << 63), 1 << 63)
        node.inode = _int(doc, "inode", 0, 1 << 64)
        chunks = doc.get("chunks")
        try:
            if not isinstance(chunks, list):
                raise ValueError("chunks")
            node.chunks = [parse_id(c) for c in chunks]
        except ValueError:
            raise IntegrityError(f"listing entry {node.path!r} has malformed chunk ids") from None
        if "link_group" in doc:
            node.link_group = _int(doc, "link_group")
    elif node_type == SYMLINK:
        node.target = _get_bytes(doc, "target")
        if b"\0" in node.target:
            raise IntegrityError(f"listing entry {node.path!r} has a symlink target with a NUL byte")
    elif node_type in (CHARDEV, BLOCKDEV):
        node.rdev = _int(doc, "rdev", 0, 1 << 64)
    return node


def decode_lines(chunks: Iterable[bytes]) -> Iterator[Node]:
    """Nodes from the concatenated listing chunks, decoded lazily."""
    carry = b""
    for chunk in chunks:
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop()
        for line in lines:
            yield decode_node(line)
    if carry:
        raise IntegrityError("listing ends in the middle of a line")


def _put_bytes(doc: dict[str, object], key: str, value: bytes) -> None:
    try:
        doc[key] = value.decode("utf-8")
    except UnicodeDecodeError:
        doc[f"{key}_b64"] = base64.b64encode(value).decode()


def _get_bytes(doc: dict[str, object], key: str) -> bytes:
    text = doc.get(key)
    if isinstance(text, str):
        try:
            return text.encode("utf-8", "strict")
        except UnicodeEncodeError:  # a lone surrogate escaped into the JSON
            raise IntegrityError(f"listing entry has a malformed {key!r}") from None
    encoded = doc.get(f"{key}_b64")
    if isinstance(encoded, str):
        try:
            return base64.b64decode(encoded, validate=True)
        except ValueError:
            pass
    raise IntegrityError(f"listing entry has a missing or malformed {key!r}")


def _int(doc: dict[str, object], key: str, low: int = 0, high: int = 1 << 32) -> int:
    value = doc.get(key)
    if type(value) is not int or not low <= value < high:  # JSON gives exact ints; not bool
        raise IntegrityError(f"listing entry has a missing or out-of-range {key!r}")
    return value
