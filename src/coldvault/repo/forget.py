"""Forget records: which snapshots a retention policy (or a person) let go of.

Forgetting writes a new object instead of deleting the manifest, so that it needs no delete
rights and is itself locked: an insider with the backup host's credentials can hide snapshots
from listings, but every one of them stays on the targets, restorable, until its own lock has
run out and a separate ``prune`` with delete rights removes it.  The record is sealed with
K_meta like a manifest, so nobody without the key can forge one; its name is the BLAKE3 of its
bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coldvault.repo.ids import parse_id
from coldvault.repo.jsondoc import aware_time, decode_doc, encode_doc, items, text

FORGET_VERSION = 1


@dataclass(frozen=True)
class ForgetRecord:
    time: datetime
    host: str
    username: str
    snapshots: tuple[str, ...]  # ids of the forgotten snapshots
    id: str = ""  # the object name; not part of the stored body


def encode_forget(record: ForgetRecord) -> bytes:
    doc = {
        "version": FORGET_VERSION,
        "time": record.time.isoformat(),
        "host": record.host,
        "username": record.username,
        "snapshots": sorted(record.snapshots),
    }
    return encode_doc(doc)


def decode_forget(body: bytes, record_id: str) -> ForgetRecord:
    def build(doc: dict[str, Any]) -> ForgetRecord:
        return ForgetRecord(
            time=aware_time(doc["time"]),
            host=text(doc["host"]),
            username=text(doc["username"]),
            snapshots=tuple(parse_id(s).hex() for s in items(doc["snapshots"])),
            id=record_id,
        )

    return decode_doc(body, version=FORGET_VERSION, what=f"forget record {record_id[:12]}", build=build)
