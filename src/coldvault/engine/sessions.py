"""A backup run announces itself to prune with session markers (repo.session) while it runs.

Prune treats a session as live while its newest marker is younger than ``TTL``; the run
refreshes it every ``REFRESH``.  A run whose refreshes failed for so long that prune may have
taken it for dead must not commit: what it reuses may be gone.  ``check_alive`` says so before
each snapshot is committed.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType

from coldvault.errors import ColdvaultError, TargetError
from coldvault.repo.repository import Repository
from coldvault.repo.session import DONE, RUNNING, SessionMarker

TTL = timedelta(hours=1)
REFRESH = timedelta(minutes=15)


class BackupSession:
    def __init__(
        self, repo: Repository, *, refresh: timedelta = REFRESH, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._repo = repo
        self._refresh = refresh
        self._monotonic = monotonic
        self.id = secrets.token_hex(16)
        self._stop = threading.Event()
        self._last_written: float | None = None
        self._thread = threading.Thread(target=self._keep_alive, name="coldvault-session", daemon=True)

    def __enter__(self) -> BackupSession:
        self._write(RUNNING)  # before the index is read: prune must see us before we can reuse anything
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self._write(DONE)
        except ColdvaultError:
            pass  # prune then waits out the TTL instead: slower, never unsafe

    def check_alive(self) -> None:
        """Raise if prune may have taken this run for dead (its markers could not be refreshed)."""
        assert self._last_written is not None
        if self._monotonic() - self._last_written > (TTL - self._refresh).total_seconds():
            raise TargetError(
                "this backup could not refresh its session marker for too long, so a prune may have taken it"
                " for finished; nothing was committed: run the backup again"
            )

    def _keep_alive(self) -> None:
        while not self._stop.wait(self._refresh.total_seconds()):
            try:
                self._write(RUNNING)
            except ColdvaultError:
                continue  # check_alive refuses the commit if this goes on too long

    def _write(self, state: str) -> None:
        marker = SessionMarker(self.id, socket.gethostname(), os.getpid(), self._repo.clock(), state)
        self._repo.write_session_marker(marker)
        self._last_written = self._monotonic()
