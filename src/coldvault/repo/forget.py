"""Forget records: which snapshots a retention policy (or a person) let go of.

Forgetting writes a new object instead of deleting the manifest, so that it needs no delete
rights and is itself locked: an insider with the backup host's credentials can hide snapshots
from listings, but every one of them stays on the targets, restorable, until its own lock has
run out and a separate ``prune`` with delete rights removes it.  The record is sealed with
K_meta like a manifest, so nobody without the key can forge one; its name is the BLAKE3 of its
bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from coldvault.errors import IntegrityError
from coldvault.repo.ids import parse_id

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
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode_forget(body: bytes, record_id: str) -> ForgetRecord:
    what = f"forget record {record_id[:12]}"
    try:
        doc = json.loads(body)
        if doc["version"] != FORGET_VERSION:
            raise IntegrityError(f"{what} has version {doc['version']!r}; upgrade coldvault to read it")
        time = datetime.fromisoformat(doc["time"])
        if time.tzinfo is None:
            raise ValueError("time")
        snapshots = doc["snapshots"]
        if not isinstance(snapshots, list) or not isinstance(doc["host"], str) or not isinstance(doc["username"], str):
            raise TypeError("fields")
        return ForgetRecord(
            time=time,
            host=doc["host"],
            username=doc["username"],
            snapshots=tuple(parse_id(s).hex() for s in snapshots),
            id=record_id,
        )
    except IntegrityError:
        raise
    except (ValueError, KeyError, TypeError):
        raise IntegrityError(f"{what} is malformed") from None
