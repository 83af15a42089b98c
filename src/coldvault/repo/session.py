"""Backup session markers: how prune knows which backups may still be running.

A backup writes a marker when it starts, writes another every few minutes while it runs, and
one saying ``done`` when it ends.  Markers need no delete rights (backups have none): prune
removes old ones.  A session is *live* while it has no ``done`` marker and its newest marker is
younger than the time-to-live; a backup killed outright thus stops counting after that long.
Markers are sealed with K_meta: a forged ``done`` could otherwise make prune delete what a
running backup is about to reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coldvault.repo.jsondoc import aware_time, decode_doc, encode_doc, text

SESSION_VERSION = 1
RUNNING, DONE = "running", "done"


@dataclass(frozen=True)
class SessionMarker:
    session: str  # 32 hex digits, random per backup run
    host: str
    pid: int
    time: datetime  # the writer's clock; prune goes by the store's creation time instead
    state: str  # RUNNING or DONE


def encode_marker(marker: SessionMarker) -> bytes:
    doc = {
        "version": SESSION_VERSION,
        "session": marker.session,
        "host": marker.host,
        "pid": marker.pid,
        "time": marker.time.isoformat(),
        "state": marker.state,
    }
    return encode_doc(doc)


def decode_marker(body: bytes, name: str) -> SessionMarker:
    def build(doc: dict[str, Any]) -> SessionMarker:
        session = text(doc["session"])
        if len(session) != 32 or int(session, 16) < 0:
            raise ValueError("session")
        if doc["state"] not in (RUNNING, DONE) or type(doc["pid"]) is not int:
            raise ValueError("fields")
        return SessionMarker(session, text(doc["host"]), doc["pid"], aware_time(doc["time"]), doc["state"])

    return decode_doc(body, version=SESSION_VERSION, what=f"session marker {name[:12]}", build=build)
