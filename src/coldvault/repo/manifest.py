"""Snapshot manifests: what a snapshot is, and where its listing lives.

The manifest is JSON inside an envelope of type SNAPSHOT; its object name
(BLAKE3 of the stored bytes) is the snapshot id.  Writing it is the commit
point: it is stored only after every pack and index it needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from coldvault.errors import IntegrityError
from coldvault.repo.ids import parse_id

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
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode_snapshot(body: bytes, snapshot_id: str) -> Snapshot:
    what = f"snapshot {snapshot_id[:12]}"
    try:
        doc = json.loads(body)
        if doc["version"] != MANIFEST_VERSION:
            raise IntegrityError(f"{what} has manifest version {doc['version']!r}; upgrade coldvault to read it")
        if doc["kind"] not in (TREE, STREAM):
            raise ValueError("kind")
        time = datetime.fromisoformat(doc["time"])
        if time.tzinfo is None:
            raise ValueError("time")
        summary = doc["summary"]
        if not isinstance(summary, dict) or not all(type(v) is int for v in summary.values()):
            raise ValueError("summary")
        return Snapshot(
            source=_str(doc["source"]),
            kind=doc["kind"],
            time=time,
            host=_str(doc["host"]),
            username=_str(doc["username"]),
            tool_version=_str(doc["tool_version"]),
            paths=tuple(_str(p) for p in _list(doc["paths"])),
            program=None if doc["program"] is None else _str(doc["program"]),
            listing=tuple(parse_id(c) for c in _list(doc["listing"])),
            parent=None if doc["parent"] is None else parse_id(doc["parent"]).hex(),
            summary=summary,
            warnings=tuple(_str(w) for w in _list(doc["warnings"])),
            id=snapshot_id,
        )
    except IntegrityError:
        raise
    except (ValueError, KeyError, TypeError):
        raise IntegrityError(f"{what} has a malformed manifest") from None


def _list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise TypeError("expected a list")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value
