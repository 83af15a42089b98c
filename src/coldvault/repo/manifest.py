"""Snapshot manifests: what a snapshot is, and where its listing lives.

The manifest is JSON inside an envelope of type SNAPSHOT; its object name
(BLAKE3 of the stored bytes) is the snapshot id.  Writing it is the commit
point: it is stored only after every pack and index it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from coldvault.repo.ids import parse_id
from coldvault.repo.jsondoc import aware_time, decode_doc, encode_doc, items, text

MANIFEST_VERSION = 1
TREE, STREAM = "tree", "stream"


@dataclass(frozen=True)
class Snapshot:
    source: str
    kind: str  # TREE (directory trees) or STREAM (a command's stdout)
    time: datetime
    host: str
    username: str
    tool_version: str
    paths: tuple[str, ...]  # the source paths of a TREE snapshot
    program: str | None  # the command's program name (never its arguments, which may hold secrets)
    listing: tuple[bytes, ...]  # the TREE blob ids of the listing, in order
    parent: str | None
    summary: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    id: str = ""  # the object name; not part of the stored body

    @property
    def partial(self) -> bool:
        return bool(self.warnings)


def encode_snapshot(snapshot: Snapshot) -> bytes:
    doc = {
        "version": MANIFEST_VERSION,
        "source": snapshot.source,
        "kind": snapshot.kind,
        "time": snapshot.time.isoformat(),
        "host": snapshot.host,
        "username": snapshot.username,
        "tool_version": snapshot.tool_version,
        "paths": list(snapshot.paths),
        "program": snapshot.program,
        "listing": [c.hex() for c in snapshot.listing],
        "parent": snapshot.parent,
        "summary": snapshot.summary,
        "warnings": list(snapshot.warnings),
    }
    return encode_doc(doc)


def decode_snapshot(body: bytes, snapshot_id: str) -> Snapshot:
    def build(doc: dict[str, Any]) -> Snapshot:
        if doc["kind"] not in (TREE, STREAM):
            raise ValueError("kind")
        summary = doc["summary"]
        if not isinstance(summary, dict) or not all(type(v) is int for v in summary.values()):
            raise ValueError("summary")
        return Snapshot(
            source=text(doc["source"]),
            kind=doc["kind"],
            time=aware_time(doc["time"]),
            host=text(doc["host"]),
            username=text(doc["username"]),
            tool_version=text(doc["tool_version"]),
            paths=tuple(text(p) for p in items(doc["paths"])),
            program=None if doc["program"] is None else text(doc["program"]),
            listing=tuple(parse_id(c) for c in items(doc["listing"])),
            parent=None if doc["parent"] is None else parse_id(doc["parent"]).hex(),
            summary=summary,
            warnings=tuple(text(w) for w in items(doc["warnings"])),
            id=snapshot_id,
        )

    return decode_doc(body, version=MANIFEST_VERSION, what=f"the manifest of snapshot {snapshot_id[:12]}", build=build)
