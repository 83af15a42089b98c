"""The replication journal: which object is on which target, in SQLite in the state directory.

Every row is committed (synchronous=FULL) before the write it records is acknowledged,
so after kill -9 or a power cut the journal never claims more than the targets hold.
It may claim less (a put that landed just before the crash): that costs a HEAD or a
listing later, never a wrong answer.  The journal is a cache: deleted, it is rebuilt
from the targets' listings, and nothing in it is needed to restore.

Tables:
    stored    (target, path) → size, when: the target acknowledged the object
    pending   (target, path) → size, since: the repository has the object, the target lacks it
    packs     name → index record, written before the pack's upload starts and removed once an
              index object names the pack: a backup killed or failed before its index resumes
              by adopting those of its packs that reached a target, instead of uploading them again
    verified  (target, path) → when: the last time scrub read and verified the object there
    drilled   (target, pack) → when: the last time a drill read, decrypted and verified the whole pack
              there (pack coverage; lost with the state directory, after which coverage starts over)
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from coldvault.clock import Clock, system_clock
from coldvault.errors import ConfigError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stored (
    target TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (target, path)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    target TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, since TEXT NOT NULL,
    PRIMARY KEY (target, path)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS packs (name TEXT PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS drilled (
    target TEXT NOT NULL, pack TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (target, pack)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS verified (
    target TEXT NOT NULL, path TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (target, path)) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Lag:
    objects: int
    bytes: int


class Journal:
    def __init__(self, path: Path, *, clock: Clock = system_clock) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the journal {path} ({exc}); check repository.state_dir, or delete the file:"
                " it is rebuilt from the targets"
            ) from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _now(self) -> str:
        return self._clock().isoformat()

    # ---- where objects are ---------------------------------------------------------------

    def record_stored(self, objects: Iterable[tuple[str, str, int]]) -> None:
        """These (target, path, size) objects are on their targets; they are no longer pending there."""
        now = self._now()
        rows = [(target, path, size, now) for target, path, size in objects]
        if not rows:
            return
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO stored VALUES (?, ?, ?, ?)", rows)
            db.executemany("DELETE FROM pending WHERE target = ? AND path = ?", [r[:2] for r in rows])

    def record_pending(self, target: str, path: str, size: int) -> None:
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO pending VALUES (?, ?, ?, ?)", (target, path, size, self._now()))

    def replace_listing(self, target: str, objects: Iterable[tuple[str, int]]) -> None:
        """A fresh listing of the target: it holds exactly these (path, size) objects.  Upload times already
        known are kept; objects only seen in a listing have none."""
        with self._write() as db:
            uploaded = dict(db.execute("SELECT path, at FROM stored WHERE target = ?", (target,)))
            rows = [(target, path, size, uploaded.get(path, "")) for path, size in objects]
            db.execute("DELETE FROM stored WHERE target = ?", (target,))
            db.executemany("INSERT INTO stored VALUES (?, ?, ?, ?)", rows)
            db.executemany("DELETE FROM pending WHERE target = ? AND path = ?", [r[:2] for r in rows])

    def stored_paths(self, target: str) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT path FROM stored WHERE target = ?", (target,))}

    def pending(self, target: str) -> list[tuple[str, int]]:
        with self._lock:
            rows = self._db.execute("SELECT path, size FROM pending WHERE target = ? ORDER BY path", (target,))
            return list(rows)

    def stored_anywhere(self, path: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM stored WHERE path = ? LIMIT 1", (path,)).fetchone() is not None

    def pending_anywhere(self, path: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM pending WHERE path = ? LIMIT 1", (path,)).fetchone() is not None

    def lag(self, target: str) -> Lag:
        with self._lock:
            count, size = self._db.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM pending WHERE target = ?", (target,)
            ).fetchone()
        return Lag(count, size)

    def last_stored(self, target: str) -> str | None:
        with self._lock:
            last = self._db.execute("SELECT max(at) FROM stored WHERE target = ?", (target,)).fetchone()[0]
        return last or None

    # ---- packs not yet indexed -----------------------------------------------------------

    def record_pack(self, name: str, record: bytes) -> None:
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO packs VALUES (?, ?)", (name, record))

    def unindexed_packs(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self._db.execute("SELECT name, record FROM packs ORDER BY name"))

    def packs_indexed(self, names: Iterable[str]) -> None:
        with self._write() as db:
            db.executemany("DELETE FROM packs WHERE name = ?", [(n,) for n in names])

    # ---- scrub rotation ------------------------------------------------------------------

    def record_verified(self, target: str, path: str) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO verified VALUES (?, ?, ?)", (target, path, self._now()))

    def last_verified(self, target: str) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT path, at FROM verified WHERE target = ?", (target,)))

    # ---- drill coverage ------------------------------------------------------------------

    def record_drilled(self, target: str, packs: Iterable[str], at: str) -> None:
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO drilled VALUES (?, ?, ?)", [(target, p, at) for p in packs])

    def last_drilled(self, target: str) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT pack, at FROM drilled WHERE target = ?", (target,)))
