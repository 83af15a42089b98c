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
import binascii
import json
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from coldvault.errors import IntegrityError
from coldvault.repo.ids import parse_id

FILE, DIR, SYMLINK, FIFO, SOCKET, CHARDEV, BLOCKDEV = "file", "dir", "symlink", "fifo", "socket", "chardev", "blockdev"
NODE_TYPES = frozenset({FILE, DIR, SYMLINK, FIFO, SOCKET, CHARDEV, BLOCKDEV})

# One encoder and decoder for every line: json.dumps with separators builds a new encoder per call.
_encode_json = json.JSONEncoder(separators=(",", ":")).encode
_decoder = json.JSONDecoder()
_decode_json, _scan_json = _decoder.decode, _decoder.scan_once

# A large file's list of chunk ids is encoded and decoded apart from the rest of its line, a batch at a
# time: as JSON strings (one per id) it took ~260 bytes of memory per chunk at the peak of encoding or
# decoding, ~210 MB for a 500 GB database dump (bench/listing_line.py; docs/BENCHMARKS.md, 2026-12-07
# fourth session).  Lists shorter than _APART_FROM ids stay plain JSON, which is faster for them.
_APART_FROM = 64
_NO_CHUNKS = b'"chunks":[]'
_CHUNKS_START = b'"chunks":["'
_QUOTED_ID = 66  # '"' + 64 hex digits + '"'
_ID_BATCH = 4096
_LOWER_HEX = b"0123456789abcdef"
# Stands in for a list parsed apart while the rest of the line is decoded as JSON; random, so that no
# stored line can hold it (see decode_node).
_PARSED_APART = secrets.token_hex(16)


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
    apart = node.type == FILE and len(node.chunks) >= _APART_FROM
    if node.type == FILE:
        chunks = [] if apart else [c.hex() for c in node.chunks]
        doc.update(size=node.size, chunks=chunks, ctime_ns=node.ctime_ns, inode=node.inode)
        if node.link_group is not None:
            doc["link_group"] = node.link_group
    elif node.type == SYMLINK:
        _put_bytes(doc, "target", node.target or b"")
    elif node.type in (CHARDEV, BLOCKDEV):
        doc["rdev"] = node.rdev
    line = _encode_json(doc).encode()
    if not apart:
        return line + b"\n"
    # The first '"chunks":[]' is the key's: inside a JSON string every '"' is escaped.
    head, _, tail = line.partition(_NO_CHUNKS)
    return b"".join([head, b'"chunks":[', *_quoted_ids(node.chunks), b"]", tail, b"\n"])


def _quoted_ids(chunks: list[bytes]) -> Iterator[bytes]:
    """'"<hex>","<hex>",…' in pieces of _ID_BATCH ids: byte for byte what the JSON encoder writes."""
    for first in range(0, len(chunks), _ID_BATCH):
        batch = chunks[first : first + _ID_BATCH]
        joined = b"".join(batch)
        if len(joined) != 32 * len(batch):
            raise ValueError("chunk ids are 32 bytes")
        if first:
            yield b","
        yield b'"' + joined.hex(",", 32).encode().replace(b",", b'","') + b'"'


def decode_node(line: bytes) -> Node:
    # A list of chunk ids written as encode_node writes it is parsed apart, and the rest of the line
    # decoded with a stand-in for it.  The stand-in found as the entry's "chunks" proves that the list
    # was the value of the last "chunks" key, which is what JSON makes of the line; anything else (a
    # list written some other valid way, a key that only looks like "chunks") is decoded whole.
    apart = _parse_chunks_apart(line) if len(line) > _APART_FROM * (_QUOTED_ID + 1) else None
    doc = _load(apart[0] if apart else line)
    if apart and (not isinstance(doc, dict) or doc.get("chunks") != [_PARSED_APART]):
        apart, doc = None, _load(line)
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
            if apart:
                node.chunks = apart[1]
            elif isinstance(chunks, list):
                node.chunks = [parse_id(c) for c in chunks]
            else:
                raise ValueError("chunks")
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


def decode_lines(chunks: Iterable[bytes], *, sizes_from: int = 0) -> Iterator[Node]:
    """Nodes from the concatenated listing chunks, decoded lazily.  With ``sizes_from``, only the lines
    that may hold an entry of at least that size are decoded and given, which leaves out none of
    those entries (see _may_hold_size): a restore's large files, without decoding every other line."""
    may_hold = _may_hold_size(sizes_from) if sizes_from else None
    # The start of a line not ended yet, in pieces: a large file's line spans many chunks, and adding
    # each to the rest would copy it again every time.
    carry: list[bytes] = []
    for chunk in chunks:
        lines = chunk.split(b"\n")
        if len(lines) > 1:
            carry.append(lines[0])
            lines[0] = b"".join(carry)
            carry = []
            for line in lines[:-1]:
                if may_hold is None or may_hold(line):
                    yield decode_node(line)
        carry.append(lines[-1])
    if any(carry):
        raise IntegrityError("listing ends in the middle of a line")


def _may_hold_size(size: int) -> Callable[[bytes], bool]:
    """Whether a line may decode to an entry whose "size" is ``size`` or more; False only where it
    cannot.  In a line without a backslash every key is spelled as it reads, so such an entry's line
    holds '"size"', a colon and an integer of at least as many digits as ``size``: JSON allows no
    leading zeros, and a fraction or an exponent makes a float, which no entry's size may be."""
    digits = re.compile(rb'"size"\s*:\s*\d{%d}' % len(str(size)))
    return lambda line: b"\\" in line or digits.search(line) is not None


def _load(line: bytes) -> object:
    try:
        text = line.decode()  # listings are written as UTF-8 (ASCII, in fact: ensure_ascii)
        # The scanner alone, as the writer leaves no space around the object: a quarter faster than
        # the decoder, which looks for space before and after it.  Anything else, the decoder judges.
        try:
            doc, end = _scan_json(text, 0)
            if end == len(text):
                return doc
        except StopIteration:  # no value right at the start
            pass
        return _decode_json(text)
    except ValueError:
        raise IntegrityError("listing has a line that is not JSON") from None


def _parse_chunks_apart(line: bytes) -> tuple[bytes, list[bytes]] | None:
    """(the line with the stand-in for its list of chunk ids, the ids), where the list is written as
    encode_node writes it; else None."""
    at = line.find(_CHUNKS_START)
    if at < 0:
        return None
    start = at + len(_CHUNKS_START) - 1  # the list's first '"'
    end = line.find(b"]", start)  # hex digits hold no ']'
    ids = _parse_quoted_ids(memoryview(line)[start:end]) if end > 0 else None
    if ids is None:
        return None
    return line[:start] + b'"' + _PARSED_APART.encode() + b'"' + line[end:], ids


def _parse_quoted_ids(text: memoryview) -> list[bytes] | None:
    """The ids of '"<64 lowercase hex>"' joined by ',' (nothing else: no spaces, no escapes), checked
    and converted a batch at a time; None if the text is anything else."""
    step = _QUOTED_ID + 1  # with its ','
    count, extra = divmod(len(text) + 1, step)
    if extra or not count:
        return None
    ids: list[bytes] = []
    for first in range(0, count, _ID_BATCH):
        n = min(_ID_BATCH, count - first)
        piece = bytes(text[first * step : (first + n) * step])  # n quoted ids, each with its ',' but the last
        commas = n if first + n < count else n - 1
        if (
            piece[::step] != b'"' * n
            or piece[_QUOTED_ID - 1 :: step] != b'"' * n
            or piece[_QUOTED_ID::step] != b"," * commas
        ):
            return None
        digits = piece.translate(None, b'",')
        if len(digits) != 64 * n or digits.translate(None, _LOWER_HEX):
            return None
        raw = binascii.unhexlify(digits)
        ids.extend(raw[i : i + 32] for i in range(0, len(raw), 32))
    return ids


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
