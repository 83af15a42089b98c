"""Binary and JSON codecs: packs, indexes, listing lines and snapshot manifests."""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coldvault.errors import IntegrityError
from coldvault.repo import tree
from coldvault.repo.blob import BlobKind
from coldvault.repo.ids import parse_id
from coldvault.repo.index import Index, PackRecord, decode_index, encode_index
from coldvault.repo.manifest import STREAM, TREE, Snapshot, decode_snapshot, encode_snapshot
from coldvault.repo.pack import PackBuilder, PackEntry, read_header
from coldvault.repo.tree import (
    BLOCKDEV,
    CHARDEV,
    DIR,
    FIFO,
    FILE,
    SOCKET,
    SYMLINK,
    Node,
    check_relative_path,
    decode_lines,
    decode_node,
    encode_node,
)

META = bytes(range(32))
CID = [bytes([i]) * 32 for i in range(8)]


# ---- packs -----------------------------------------------------------------------------------


def build_pack(
    kind: BlobKind = BlobKind.DATA, blobs: list[bytes] | None = None
) -> tuple[bytes, list[PackEntry], list[bytes]]:
    blobs = blobs if blobs is not None else [os.urandom(n) for n in (10, 200, 1, 3000)]
    builder = PackBuilder(kind)
    assert builder.empty and builder.size == 0
    for i, blob in enumerate(blobs):
        builder.add(CID[i], blob, raw_length=len(blob) * 2)
    assert builder.size == sum(map(len, blobs))
    data, entries = builder.finish(META)
    return bytes(data), entries, blobs


def test_a_reused_buffer_holds_exactly_the_new_pack() -> None:
    # The writer recycles pack buffers: leftovers of a longer earlier pack must not leak into a shorter one.
    first = PackBuilder(BlobKind.DATA)
    first.add(CID[0], os.urandom(5000), raw_length=5000)
    view, _ = first.finish(META)
    view.release()
    second = PackBuilder(BlobKind.DATA, first.buffer)
    second.add(CID[1], b"short", raw_length=5)
    data, _ = second.finish(META)
    assert len(data) < 5000
    assert [(e.chunk_id, e.length) for e in read_header(META, bytes(data), what="pack")] == [(CID[1], 5)]


@pytest.mark.parametrize("kind", list(BlobKind))
def test_pack_round_trip(kind: BlobKind) -> None:
    data, entries, blobs = build_pack(kind)
    header = read_header(META, data, what="pack")
    assert header == entries
    assert [e.chunk_id for e in header] == CID[: len(blobs)]
    assert all(e.kind is kind for e in header)
    for entry, blob in zip(header, blobs, strict=True):
        assert data[entry.offset : entry.offset + entry.length] == blob
        assert entry.raw_length == 2 * len(blob)


def test_empty_pack_round_trip() -> None:
    data, entries, _ = build_pack(blobs=[])
    assert entries == [] and read_header(META, data, what="pack") == []


def test_pack_header_is_encrypted() -> None:
    data, _, _ = build_pack()
    assert b"CVPH" not in data
    assert CID[1] not in data


@pytest.mark.parametrize("keep", [0, 1, 3, 4, 20])
def test_truncated_pack_head_fails(keep: int) -> None:
    data, _, _ = build_pack()
    with pytest.raises(IntegrityError):
        read_header(META, data[:keep], what="pack")


@pytest.mark.parametrize("cut", [1, 4, 5, 100])
def test_pack_truncated_at_the_end_fails(cut: int) -> None:
    data, _, _ = build_pack()
    with pytest.raises(IntegrityError):
        read_header(META, data[:-cut], what="pack")


@pytest.mark.parametrize("length", [0, 1, 47, 48, 100, 2**31, 2**32 - 1])
def test_pack_with_a_bad_header_length_fails(length: int) -> None:
    data, _, _ = build_pack()
    with pytest.raises(IntegrityError):
        read_header(META, data[:-4] + struct.pack("<I", length), what="pack")


def test_pack_with_a_flipped_bit_in_the_header_fails() -> None:
    data, _, _ = build_pack()
    for position in range(len(data) - 4 - 100, len(data) - 4):
        tampered = bytearray(data)
        tampered[position] ^= 0x80
        with pytest.raises(IntegrityError):
            read_header(META, bytes(tampered), what="pack")


def test_pack_header_under_the_wrong_key_fails() -> None:
    data, _, _ = build_pack()
    with pytest.raises(IntegrityError):
        read_header(bytes(32), data, what="pack")


@pytest.mark.parametrize("header", [b"", b"CVPH", b"CVPH\x01", b"CVPH\x01\x00"])
def test_pack_with_a_short_sealed_header_fails_cleanly(header: bytes) -> None:
    # Regression: a short (validly sealed) header raised IndexError / struct.error.
    from coldvault.repo.crypto import seal

    sealed = seal(META, header, b"coldvault pack header v1")
    with pytest.raises(IntegrityError):
        read_header(META, sealed + struct.pack("<I", len(sealed)), what="pack")


def test_pack_header_entry_outside_the_blob_area_fails() -> None:
    # A pack whose (validly sealed) header claims more bytes than the pack holds.
    from coldvault.repo.crypto import seal

    blob_area = b"x" * 10
    header = b"CVPH\x01" + struct.pack("<I", 1) + struct.pack("<B32sIII", 0, CID[0], 5, 6, 6)
    sealed = seal(META, header, b"coldvault pack header v1")
    with pytest.raises(IntegrityError, match="outside"):
        read_header(META, blob_area + sealed + struct.pack("<I", len(sealed)), what="pack")


# ---- index -----------------------------------------------------------------------------------


def records() -> list[PackRecord]:
    data_entries = tuple(PackEntry(BlobKind.DATA, CID[i], i * 100, 100, 250) for i in range(3))
    tree_entries = (PackEntry(BlobKind.TREE, CID[5], 0, 64, 64),)
    return [
        PackRecord.of("ab" * 32, BlobKind.DATA, 400, data_entries),
        PackRecord.of("cd" * 32, BlobKind.TREE, 64, tree_entries),
        PackRecord.of("ef" * 32, BlobKind.DATA, 52, ()),
    ]


def test_index_round_trip() -> None:
    assert decode_index(encode_index(records()), what="index") == records()
    assert decode_index(encode_index([]), what="index") == []


def test_index_lookup() -> None:
    index = Index()
    for record in records():
        index.add(record)
    assert len(index) == 4
    location = index.lookup(BlobKind.DATA, CID[1])
    assert location is not None
    assert (location.pack, location.kind, location.offset, location.length, location.raw_length) == (
        "ab" * 32,
        BlobKind.DATA,
        100,
        100,
        250,
    )
    assert index.has(BlobKind.TREE, CID[5]) and index.lookup(BlobKind.TREE, CID[5]) is not None
    assert not index.has(BlobKind.DATA, CID[7]) and index.lookup(BlobKind.DATA, CID[7]) is None
    # Lookups are per kind: a TREE chunk is not a DATA chunk with the same id.
    assert not index.has(BlobKind.DATA, CID[5]) and index.lookup(BlobKind.DATA, CID[5]) is None
    assert index.pack("cd" * 32) == records()[1]
    assert sorted(p.name for p in index.packs()) == ["ab" * 32, "cd" * 32, "ef" * 32]


def test_index_keeps_the_first_location_of_a_duplicate_chunk() -> None:
    index = Index()
    first, second = records()[0], replace(records()[0], name="99" * 32)
    index.add(first)
    index.add(second)
    assert index.lookup(BlobKind.DATA, CID[0]).pack == "ab" * 32  # type: ignore[union-attr]


def test_index_keeps_the_same_chunk_id_of_both_kinds_apart() -> None:
    index = Index()
    index.add(PackRecord.of("ab" * 32, BlobKind.DATA, 100, (PackEntry(BlobKind.DATA, CID[0], 0, 10, 10),)))
    index.add(PackRecord.of("cd" * 32, BlobKind.TREE, 100, (PackEntry(BlobKind.TREE, CID[0], 20, 30, 40),)))
    assert index.lookup(BlobKind.DATA, CID[0]).pack == "ab" * 32  # type: ignore[union-attr]
    assert index.lookup(BlobKind.TREE, CID[0]).pack == "cd" * 32  # type: ignore[union-attr]


@pytest.mark.parametrize("cut", [1, 4, 10, 41, 48])
def test_truncated_index_fails(cut: int) -> None:
    body = encode_index(records())
    with pytest.raises(IntegrityError):
        decode_index(body[:-cut], what="index")


@pytest.mark.parametrize("body", [b"", b"\x01\x00", b"\x01\x00\x00\x00"])
def test_tiny_index_bodies_fail(body: bytes) -> None:
    with pytest.raises(IntegrityError):
        decode_index(body, what="index")


def test_index_with_trailing_bytes_fails() -> None:
    with pytest.raises(IntegrityError, match="trailing"):
        decode_index(encode_index(records()) + b"\0", what="index")


def test_index_with_a_huge_count_fails_fast() -> None:
    with pytest.raises(IntegrityError):
        decode_index(struct.pack("<I", 2**32 - 1), what="index")


def test_index_entry_beyond_the_pack_length_fails() -> None:
    bad = [PackRecord.of("ab" * 32, BlobKind.DATA, 150, (PackEntry(BlobKind.DATA, CID[0], 100, 51, 51),))]
    with pytest.raises(IntegrityError, match="outside"):
        decode_index(encode_index(bad), what="index")
    ok = [PackRecord.of("ab" * 32, BlobKind.DATA, 151, (PackEntry(BlobKind.DATA, CID[0], 100, 51, 51),))]
    assert decode_index(encode_index(ok), what="index") == ok


def test_index_with_an_unknown_kind_fails() -> None:
    body = bytearray(encode_index(records()[:1]))
    body[4 + 32] = 7  # the kind byte of the first pack record
    with pytest.raises(IntegrityError):
        decode_index(bytes(body), what="index")


# ---- listing lines ---------------------------------------------------------------------------

ALL_NODES = [
    Node(b"home/user/file.txt", FILE, 0o644, 1000, 1000, 1_700_000_000_123_456_789, 12345, CID[:3], 5, 99, None),
    Node(b"home/user/hard", FILE, 0o600, 0, 0, -5, 0, [], -7, 2**64 - 1, 3),
    Node(b"home", DIR, 0o755, 0, 0, 0),
    Node(b"home/user/link", SYMLINK, 0o777, 1, 2, 3, target=b"../elsewhere/\xff\xfe target"),
    Node(b"home/user/abs", SYMLINK, 0o777, target=b"/etc/passwd"),
    Node(b"home/user/empty-target", SYMLINK, 0o777, target=b""),
    Node(b"run/fifo", FIFO, 0o600),
    Node(b"run/sock", SOCKET, 0o755),
    Node(b"dev/null", CHARDEV, 0o666, rdev=0x103),
    Node(b"dev/sda", BLOCKDEV, 0o660, rdev=2**64 - 1),
    Node(b"odd/\xff\xfe\x80 name", FILE, 0o4755, chunks=[CID[7]], size=1),
    Node(b"odd/new\nline\rand\ttab", DIR, 0o1777),
    Node(b'odd/quote"back\\slash \xe2\x80\xa8 ok', FILE),
    Node(b"odd/surrogate-bytes-\xed\xb3\xbf", FILE),
]


@pytest.mark.parametrize("node", ALL_NODES, ids=lambda n: f"{n.type}:{n.path!r}")
def test_node_round_trip(node: Node) -> None:
    line = encode_node(node)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_node(line) == node
    assert decode_node(line.rstrip(b"\n")) == node


@pytest.mark.parametrize("node_type", [FILE, DIR])
def test_mode_7777_round_trips(node_type: str) -> None:
    # Regression: the upper bound was exclusive, so mode 07777 made a whole listing unreadable.
    node = Node(b"a", node_type, 0o7777)
    assert decode_node(encode_node(node)) == node


@pytest.mark.parametrize("path", [b"../x", b"/abs", b"a//b", b"", b"a/./b", b"a\0b"])
def test_encode_node_refuses_what_a_reader_would_refuse(path: bytes) -> None:
    with pytest.raises(IntegrityError):
        encode_node(Node(path, FILE))


def test_non_utf8_names_are_stored_as_base64() -> None:
    doc = json.loads(encode_node(Node(b"a/\xff", SYMLINK, target=b"\xfe")))
    assert "path" not in doc and "path_b64" in doc
    assert "target" not in doc and "target_b64" in doc


def good_file_doc(**changes: object) -> dict[str, object]:
    doc = json.loads(encode_node(ALL_NODES[0]))
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    "doc",
    [
        good_file_doc(path="/etc/passwd"),
        good_file_doc(path="../escape"),
        good_file_doc(path="a/../../escape"),
        good_file_doc(path="a//b"),
        good_file_doc(path="a/"),
        good_file_doc(path="./a"),
        good_file_doc(path="a/."),
        good_file_doc(path=""),
        good_file_doc(path="a\u0000b"),
        good_file_doc(path="\udcff"),
        good_file_doc(path=None),
        good_file_doc(path=5),
        {k: v for k, v in good_file_doc().items() if k != "path"},
        {**{k: v for k, v in good_file_doc().items() if k != "path"}, "path_b64": "Li4vZXNjYXBl"},  # "../escape"
        {**{k: v for k, v in good_file_doc().items() if k != "path"}, "path_b64": "not base64!"},
        {**{k: v for k, v in good_file_doc().items() if k != "path"}, "path_b64": "L2V0Yy9wYXNzd2Q="},  # /etc/passwd
        good_file_doc(type="hardlink"),
        good_file_doc(type=None),
        good_file_doc(type=1),
        good_file_doc(mode=True),
        good_file_doc(mode=0o10000),
        good_file_doc(mode=-1),
        good_file_doc(mode="644"),
        good_file_doc(mode=420.0),
        good_file_doc(uid=2**32),
        good_file_doc(uid=False),
        good_file_doc(gid=-1),
        good_file_doc(mtime_ns=2**63),
        good_file_doc(mtime_ns=2**200),
        good_file_doc(size=-1),
        good_file_doc(size=2**63),
        good_file_doc(size=True),
        good_file_doc(inode=2**64),
        good_file_doc(ctime_ns=None),
        good_file_doc(link_group=True),
        good_file_doc(link_group=-1),
        good_file_doc(chunks="00" * 32),
        good_file_doc(chunks=None),
        good_file_doc(chunks=["00" * 31]),
        good_file_doc(chunks=["00" * 33]),
        good_file_doc(chunks=["zz" * 32]),
        good_file_doc(chunks=[None]),
        good_file_doc(chunks=[0]),
        {"path": "a", "type": "symlink", "mode": 0, "uid": 0, "gid": 0, "mtime_ns": 0},
        {"path": "a", "type": "symlink", "mode": 0, "uid": 0, "gid": 0, "mtime_ns": 0, "target": "x\u0000y"},
        {"path": "a", "type": "symlink", "mode": 0, "uid": 0, "gid": 0, "mtime_ns": 0, "target": "\udcff"},
        {"path": "a", "type": "symlink", "mode": 0, "uid": 0, "gid": 0, "mtime_ns": 0, "target_b64": "eAB5"},
        {"path": "a", "type": "chardev", "mode": 0, "uid": 0, "gid": 0, "mtime_ns": 0},
        {"path": "a", "type": "blockdev", "mode": 0, "uid": 0, "gid": 0, "mtime_ns": 0, "rdev": 2**64},
        {"path": "a", "type": "dir", "mode": 0, "uid": 0, "gid": 0},
    ],
)
def test_hostile_listing_lines_are_rejected(doc: dict[str, object]) -> None:
    line = json.dumps(doc).encode()
    with pytest.raises(IntegrityError):
        decode_node(line)


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b"null",
        b'"path"',
        b"\xff\xfe\xfd",
        b'{"path": "a\xed\xa0\x80", "type": "dir", "mode": 0, "uid": 0, "gid": 0, "mtime_ns": 0}',  # a surrogate
        b'{"path": "a", "type": "dir", "mode": true, "uid": 0, "gid": 0, "mtime_ns": 0}',
        b'{"path": "a", "type": "dir", "mode": 0, "uid": 0, "gid": 0, "mtime_ns": NaN}',
        b'{"path": "a", "type": "dir", "mode": 0, "uid": 0, "gid": 0, "mtime_ns": 1e3}',
        b'{"path": "a", "type": "dir", "mode": 0, "uid": 0, "gid": 0, "mtime_ns": ' + b"9" * 5000 + b"}",
        b'{"path": "\\udcff", "type": "dir", "mode": 0, "uid": 0, "gid": 0, "mtime_ns": 0}',
        b'{"path": "a\\u0000", "type": "dir", "mode": 0, "uid": 0, "gid": 0, "mtime_ns": 0}',
    ],
)
def test_malformed_listing_lines_are_rejected(line: bytes) -> None:
    with pytest.raises(IntegrityError):
        decode_node(line)


@pytest.mark.parametrize("where", ["listing-chunk", "manifest-parent"])
def test_ids_with_whitespace_are_rejected(where: str) -> None:
    spaced = "00" * 30 + "  " + "00"  # 64 characters, 31 bytes
    with pytest.raises(IntegrityError):
        if where == "listing-chunk":
            decode_node(json.dumps(good_file_doc(chunks=[spaced])).encode())
        else:
            decode_snapshot(json.dumps(manifest_doc(parent="ab" * 31 + " ab")).encode(), "cd" * 32)


@pytest.mark.parametrize(
    "path", [b"a", b"a/b/c", b"...", b".hidden", b"a/.hidden/b", b"a/..b", b"..a/b", b"a.", b"a b", b"\xff", b"a\nb"]
)
def test_check_relative_path_accepts_safe_paths(path: bytes) -> None:
    assert check_relative_path(path) == path


@pytest.mark.parametrize(
    "path", [b"", b"/", b"/a", b"..", b"a/..", b"a/../b", b".", b"./a", b"a/.", b"a/./b", b"a//b", b"a/", b"a\0b"]
)
def test_check_relative_path_rejects_unsafe_paths(path: bytes) -> None:
    with pytest.raises(IntegrityError):
        check_relative_path(path)


@given(st.lists(st.sampled_from([b"a", b".", b"/", b"\0"]), max_size=8).map(b"".join))
def test_check_relative_path_agrees_with_its_definition(path: bytes) -> None:
    """The check takes shortcuts (it runs for every listing line); it must refuse exactly these paths."""
    parts = path.split(b"/")
    unsafe = not path or b"\0" in path or any(part in (b"", b".", b"..") for part in parts)
    if unsafe:
        with pytest.raises(IntegrityError):
            check_relative_path(path)
    else:
        assert check_relative_path(path) == path


@given(
    st.one_of(
        st.text(alphabet="0123456789abcdefABCDEF \t\n\u0660g", min_size=60, max_size=68),
        st.binary(min_size=32, max_size=32).map(bytes.hex),
        st.binary(min_size=32, max_size=32).map(lambda b: b.hex().upper()),
    )
)
def test_parse_id_takes_exactly_64_lowercase_hex_digits(value: str) -> None:
    """parse_id checks by writing the bytes back; it must accept exactly what this definition does."""
    if re.fullmatch("[0-9a-f]{64}", value):
        assert parse_id(value) == bytes.fromhex(value)
    else:
        with pytest.raises(ValueError):
            parse_id(value)


def test_decode_lines_across_chunk_boundaries() -> None:
    stream = b"".join(encode_node(n) for n in ALL_NODES)
    for size in (1, 2, 3, 7, 64, 1000, len(stream)):
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert list(decode_lines(chunks)) == ALL_NODES, size
    # Empty pieces and an uneven split are fine too.
    uneven = [b"", stream[:5], b"", stream[5:200], stream[200:201], stream[201:], b""]
    assert list(decode_lines(uneven)) == ALL_NODES
    assert list(decode_lines([])) == []


LARGE = 1 << 20


def spelled(doc: dict[str, object], spelling: str) -> bytes:
    """A valid JSON line for ``doc``, written some way the encoder does not: what a hostile or foreign
    writer may store."""
    if spelling == "spaced":
        return json.dumps(doc, indent=None, separators=(" , ", " : ")).encode()
    if spelling == "escaped key":
        return json.dumps(doc).replace('"size"', '"\\u0073ize"').encode()
    if spelling == "escaped path":
        return json.dumps(doc, ensure_ascii=True).replace('"path": "', '"path": "\\u0061', 1).encode()
    if spelling == "size twice":
        return b'{"size": 1, ' + json.dumps(doc).encode()[1:]
    return json.dumps(doc, separators=(",", ":")).encode()


@settings(max_examples=300, deadline=None)
@given(
    size=st.one_of(st.integers(0, 2**63 - 1), st.integers(LARGE - 100_000, LARGE + 10)),
    spelling=st.sampled_from(["plain", "spaced", "escaped key", "escaped path", "size twice"]),
)
def test_only_lines_that_cannot_hold_a_large_file_are_passed_over(size: int, spelling: str) -> None:
    """Decoding only the lines that may hold a large file must leave none of those files out."""
    line = spelled(good_file_doc(size=size, chunks=[]), spelling)
    whole = list(decode_lines([line + b"\n"]))
    large_only = list(decode_lines([line + b"\n"], sizes_from=LARGE))
    assert len(whole) == 1
    if whole[0].size >= LARGE:
        assert large_only == whole
    assert large_only in ([], whole)


def test_lines_of_small_entries_are_not_decoded() -> None:
    """A damaged line that cannot hold a large file is not even decoded by the large files' pass (the
    whole listing's pass refuses it)."""
    small = good_file_doc(size=999_999, chunks=[])  # six digits: cannot be 1 MiB (seven may, and are decoded)
    broken = json.dumps(small).encode().replace(b'"type": "file"', b'"type": 7')
    assert list(decode_lines([broken + b"\n"], sizes_from=LARGE)) == []
    with pytest.raises(IntegrityError):
        list(decode_lines([broken + b"\n"]))
    large = replace(ALL_NODES[0], size=LARGE, chunks=[])
    nodes = sorted([n for n in ALL_NODES if n.type != FILE] + [large], key=lambda n: n.path.split(b"/"))
    decoded = list(decode_lines([b"".join(encode_node(n) for n in nodes)], sizes_from=LARGE))
    assert large in decoded
    # Lines with an escape in them are decoded (a name with a newline, here): they may spell "size" so.
    assert all(n == large or b"\\" in encode_node(n) for n in decoded) and len(decoded) < len(nodes)


def test_decode_lines_rejects_a_listing_that_ends_mid_line() -> None:
    stream = b"".join(encode_node(n) for n in ALL_NODES[:3])
    with pytest.raises(IntegrityError, match="middle"):
        list(decode_lines([stream[:-1]]))


def test_decode_lines_rejects_an_empty_line() -> None:
    with pytest.raises(IntegrityError):
        list(decode_lines([encode_node(ALL_NODES[2]) + b"\n"]))


def test_decode_lines_is_lazy() -> None:
    good = encode_node(ALL_NODES[2])

    def chunks():  # type: ignore[no-untyped-def]
        yield good
        yield b"garbage\n"

    nodes = decode_lines(chunks())
    assert next(nodes) == ALL_NODES[2]
    with pytest.raises(IntegrityError):
        next(nodes)


_name = st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b".."))
_paths = st.lists(_name, min_size=1, max_size=4).map(b"/".join)
_u32 = st.integers(0, 2**32 - 1)
_time = st.integers(-(2**63), 2**63 - 1)


@st.composite
def nodes(draw: st.DrawFn) -> Node:
    kind = draw(st.sampled_from(sorted([FILE, DIR, SYMLINK, FIFO, SOCKET, CHARDEV, BLOCKDEV])))
    node = Node(
        path=draw(_paths),
        type=kind,
        mode=draw(st.integers(0, 0o7777)),
        uid=draw(_u32),
        gid=draw(_u32),
        mtime_ns=draw(_time),
    )
    if kind == FILE:
        node.size = draw(st.integers(0, 2**63 - 1))
        node.chunks = draw(st.lists(st.binary(min_size=32, max_size=32), max_size=5))
        node.ctime_ns = draw(_time)
        node.inode = draw(st.integers(0, 2**64 - 1))
        node.link_group = draw(st.none() | _u32)
    elif kind == SYMLINK:
        node.target = draw(st.binary(max_size=40).filter(lambda b: b"\0" not in b))
    elif kind in (CHARDEV, BLOCKDEV):
        node.rdev = draw(st.integers(0, 2**64 - 1))
    return node


@settings(max_examples=300, deadline=None)
@given(nodes())
def test_encode_decode_node_property(node: Node) -> None:
    line = encode_node(node)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert decode_node(line) == node


@settings(max_examples=50, deadline=None)
@given(st.lists(nodes(), max_size=20), st.lists(st.integers(1, 200), max_size=10))
def test_decode_lines_property(listing: list[Node], cuts: list[int]) -> None:
    stream = b"".join(encode_node(n) for n in listing)
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert list(decode_lines(chunks)) == listing


# ---- snapshot manifests ----------------------------------------------------------------------


def snapshot(**changes: object) -> Snapshot:
    base = Snapshot(
        source="website",
        kind=TREE,
        time=datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=timezone(timedelta(hours=2))),
        host="host-1",
        username="root",
        tool_version="0.1.0",
        paths=("/srv/www", "/etc/nginx é"),
        program=None,
        listing=(CID[0], CID[1]),
        parent="ab" * 32,
        summary={"files": 3, "bytes": 1 << 40},
        warnings=("cannot read /srv/www/x: Permission denied; skipped",),
    )
    return replace(base, **changes)


@pytest.mark.parametrize(
    "snap",
    [
        snapshot(),
        snapshot(kind=STREAM, paths=(), program="pg_dump", parent=None, warnings=(), summary={}),
        snapshot(listing=()),
    ],
)
def test_manifest_round_trip(snap: Snapshot) -> None:
    decoded = decode_snapshot(encode_snapshot(snap), "cd" * 32)
    assert decoded == replace(snap, id="cd" * 32)
    assert decoded.partial == bool(snap.warnings)


def manifest_doc(**changes: object) -> dict[str, object]:
    doc = json.loads(encode_snapshot(snapshot()))
    doc.update(changes)
    return doc


def without(key: str) -> dict[str, object]:
    doc = manifest_doc()
    del doc[key]
    return doc


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b"null",
        json.dumps(manifest_doc(version=2)).encode(),
        json.dumps(manifest_doc(version="1")).encode(),
        json.dumps(manifest_doc(kind="tar")).encode(),
        json.dumps(manifest_doc(time="yesterday")).encode(),
        json.dumps(manifest_doc(time="2026-01-01T00:00:00")).encode(),  # naive
        json.dumps(manifest_doc(time=0)).encode(),
        json.dumps(manifest_doc(summary={"files": "3"})).encode(),
        json.dumps(manifest_doc(summary={"files": 1.5})).encode(),
        json.dumps(manifest_doc(summary=[1])).encode(),
        json.dumps(manifest_doc(source=5)).encode(),
        json.dumps(manifest_doc(host=None)).encode(),
        json.dumps(manifest_doc(paths=[1])).encode(),
        json.dumps(manifest_doc(paths=None)).encode(),
        json.dumps(manifest_doc(program=3)).encode(),
        json.dumps(manifest_doc(listing=["zz"])).encode(),
        json.dumps(manifest_doc(listing=[7])).encode(),
        json.dumps(manifest_doc(listing="00ff")).encode(),
        json.dumps(manifest_doc(parent=1)).encode(),
        json.dumps(manifest_doc(listing=["00ff"])).encode(),  # not a 32-byte chunk id
        json.dumps(manifest_doc(listing=["00" * 33])).encode(),
        json.dumps(manifest_doc(parent="not a snapshot id")).encode(),
        json.dumps(manifest_doc(parent="AB" * 32)).encode(),  # object names are lowercase
        json.dumps(manifest_doc(warnings=[None])).encode(),
        *(
            json.dumps(without(k)).encode()
            for k in ("version", "source", "kind", "time", "listing", "summary", "paths")
        ),
    ],
)
def test_malformed_manifests_are_integrity_errors(body: bytes) -> None:
    with pytest.raises(IntegrityError):
        decode_snapshot(body, "cd" * 32)


@pytest.mark.parametrize(
    "change",
    [{"paths": "/srv"}, {"warnings": "oops"}, {"summary": {"files": True}}],
    ids=["paths-string", "warnings-string", "summary-bool"],
)
def test_manifest_fields_of_the_wrong_shape_are_rejected(change: dict[str, object]) -> None:
    with pytest.raises(IntegrityError):
        decode_snapshot(json.dumps(manifest_doc(**change)).encode(), "cd" * 32)


def test_manifest_error_names_the_snapshot() -> None:
    with pytest.raises(IntegrityError, match="snapshot cdcdcdcdcdcd"):
        decode_snapshot(b"{}", "cd" * 32)


def test_a_pack_takes_a_blob_only_while_it_stays_within_its_size() -> None:
    builder = PackBuilder(BlobKind.DATA)
    assert builder.fits(10_000, pack_size=100)  # an empty pack takes any blob, however large
    builder.add(CID[0], os.urandom(60), raw_length=60)
    assert builder.fits(40, pack_size=100) and not builder.fits(41, pack_size=100)


def test_pack_records_keep_their_entries() -> None:
    entries = (PackEntry(BlobKind.DATA, CID[0], 0, 10, 12), PackEntry(BlobKind.DATA, CID[1], 10, 5, 5))
    record = PackRecord.of("ab" * 32, BlobKind.DATA, 15, entries)
    assert record.entries == entries and record.count == 2


def test_retired_entries_answer_only_after_live_ones_and_never_for_deduplication() -> None:
    index = Index()
    index.add(records()[0], "01" * 32, retired=True)
    assert index.lookup(BlobKind.DATA, CID[0]).pack == "ab" * 32  # type: ignore[union-attr]
    assert index.lookup_live(BlobKind.DATA, CID[0]) is None
    assert len(index) == 0 and not index.is_live("ab" * 32) and index.index_object("ab" * 32) == "01" * 32
    index.add(replace(records()[0], name="99" * 32), "02" * 32)
    assert index.lookup(BlobKind.DATA, CID[0]).pack == "99" * 32  # type: ignore[union-attr]
    assert index.lookup_live(BlobKind.DATA, CID[0]).pack == "99" * 32  # type: ignore[union-attr]


def test_a_pack_described_by_two_index_objects_is_indexed_once() -> None:
    index = Index()
    index.add(records()[0], "01" * 32)
    index.add(records()[0], "02" * 32)
    assert len(index) == 3 and list(index.packs()) == [records()[0]] and index.index_object("ab" * 32) == "01" * 32


# ---- a file's list of chunk ids: written and read apart from the rest of its line ----------------


def reference_line(node: Node) -> bytes:
    """The line as plain JSON encoding writes it: the list of ids is written apart, byte for byte this."""
    doc = json.loads(encode_node(Node(node.path, node.type, node.mode, node.uid, node.gid, node.mtime_ns)))
    doc.update(
        type=FILE, size=node.size, chunks=[c.hex() for c in node.chunks], ctime_ns=node.ctime_ns, inode=node.inode
    )
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def decoded_as_json(line: bytes) -> Node | str:
    """What decoding the line as JSON gives: the same line written with spaces after ':' and ',', which
    the reader cannot take apart and decodes whole (json.loads keeps the last of duplicate keys)."""
    try:
        return decode_node(json.dumps(json.loads(line)).encode())
    except (ValueError, IntegrityError):
        return "refused"


def decoded(line: bytes) -> Node | str:
    try:
        return decode_node(line)
    except IntegrityError:
        return "refused"


@pytest.fixture
def lists_apart_from_one_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short lists are read and written as plain JSON, which is faster for them; these tests make every
    list go the way a large file's does, so that short lines can probe it."""
    monkeypatch.setattr(tree, "_APART_FROM", 1)


@pytest.mark.parametrize("count", [1, 2, 63, 64, 4095, 4096, 4097, 10_000])
def test_a_list_of_ids_is_written_as_json_writes_it_and_read_back(count: int) -> None:
    node = Node(b"dump", FILE, 0o600, 1, 2, 3, count, [os.urandom(32) for _ in range(count)], 4, 5)
    line = encode_node(node)
    assert line == reference_line(node)
    assert decode_node(line) == node == decoded_as_json(line)


ONE_ID = "ab" * 32
CANONICAL = encode_node(Node(b"f", FILE, size=1, chunks=[bytes.fromhex(ONE_ID)])).rstrip(b"\n")


@pytest.mark.parametrize(
    "line, chunks",
    [
        (CANONICAL, [ONE_ID]),
        (CANONICAL.replace(b"]", b'],"chunks":[]', 1), []),  # JSON keeps the last of duplicate keys
        (CANONICAL.replace(b"]", b'],"\\u0063hunks":[]', 1), []),  # the same key, spelt with an escape
        (CANONICAL.replace(b'"chunks":[', b'"chunks":["' + b"cd" * 32 + b'"],"chunks":[', 1), [ONE_ID]),
        (CANONICAL.replace(b'"chunks":[', b'"chunks":[], "a\\"chunks":[', 1), []),  # a key that only looks like it
        (CANONICAL.replace(b'"chunks":[', b'"chunks" :[], "a\\"chunks":[', 1), []),
        (CANONICAL.replace(b'"chunks":', b'"a\\"chunks":', 1), "refused"),  # no "chunks" at all
        (CANONICAL.replace(b'"]', b'", "' + ONE_ID.encode() + b'"]', 1), [ONE_ID, ONE_ID]),  # valid JSON, other spacing
        (CANONICAL.replace(ONE_ID.encode(), ONE_ID.upper().encode(), 1), "refused"),
        (
            CANONICAL.replace(ONE_ID.encode(), ONE_ID[:-2].encode() + b"\\u0061b", 1),
            [ONE_ID],
        ),  # an escaped 'a' is an 'a'
        (CANONICAL.replace(b'"]', b'"', 1), "refused"),
    ],
)
@pytest.mark.usefixtures("lists_apart_from_one_id")
def test_a_list_of_ids_reads_as_json_would_read_it(line: bytes, chunks: list[str] | str) -> None:
    result = decoded(line)
    assert result == decoded_as_json(line)
    assert (result if isinstance(result, str) else [c.hex() for c in result.chunks]) == chunks


_MUTATIONS = st.sampled_from(
    [b'"', b",", b"]", b"[", b" ", b"\\", b"a", b"A", b"0", b":", b"}", b'"chunks":[]', b"\\u0063"]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2), st.data())
@pytest.mark.usefixtures("lists_apart_from_one_id")
def test_any_changed_line_reads_as_json_would_read_it(extra_ids: int, data: st.DataObject) -> None:
    ids = [bytes([i]) * 32 for i in range(1 + extra_ids)]
    line = encode_node(Node(b"f", FILE, size=len(ids), chunks=ids)).rstrip(b"\n")
    at = data.draw(st.integers(0, len(line)))
    mutation = data.draw(_MUTATIONS)
    changed = line[:at] + mutation + line[at + data.draw(st.integers(0, 1)) :]
    assert decoded(changed) == decoded_as_json(changed)
