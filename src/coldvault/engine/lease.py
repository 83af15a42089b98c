"""Prune's exclusive lease: one unlocked object under a fixed name, written create-only on every
target, carrying its holder and expiry.  Backups take no lease (DESIGN.md §6); only prunes
exclude each other.  A prune killed outright leaves its lease until it expires, after which the
next prune takes it over."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
from datetime import datetime, timedelta
from types import TracebackType

from coldvault.clock import Clock
from coldvault.errors import AlreadyExists, ColdvaultError, NotFound, RepositoryError
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.protocol import PutMode, Store

LEASE = Handle(Kind.LEASE, "0" * 64)
TTL = timedelta(minutes=30)


class Lease:
    def __init__(self, stores: list[Store], clock: Clock, *, ttl: timedelta = TTL) -> None:
        self._stores = stores
        self._clock = clock
        self._ttl = ttl
        self._token = secrets.token_hex(16)
        self._held: list[Store] = []
        self._renewed = clock()

    def __enter__(self) -> Lease:
        try:
            self._renewed = self._clock()  # no later than the first expiry written
            for store in self._stores:  # config order, so two prunes meet on the first target
                self._take(store)
                self._held.append(store)
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._release()

    def renew(self) -> None:
        """Push the expiry out; raise if another prune took the lease over meanwhile."""
        for store in self._held:
            if self._holder(store).get("token") != self._token:
                raise RepositoryError(f"{store.name}: another prune took over the lease; stopped before deleting more")
            store.put(LEASE, self._body(), mode=PutMode.OVERWRITE)
        self._renewed = self._clock()

    def keep_alive(self) -> None:
        """Renew once a third of the lease has passed since it was taken or last renewed: for long work."""
        if self._clock() - self._renewed >= self._ttl / 3:
            self.renew()

    def _take(self, store: Store) -> None:
        for _ in range(2):
            try:
                store.put(LEASE, self._body())
                return
            except AlreadyExists:
                holder = self._holder(store)
                expires = _time(holder.get("expires"))
                if expires is not None and expires > self._clock():
                    raise RepositoryError(
                        f"another prune holds the lease on {store.name} (host {holder.get('host')!r}, pid"
                        f" {holder.get('pid')}) until {expires.isoformat()}; wait for it, or run again after that"
                    ) from None
                with contextlib.suppress(NotFound):
                    store.delete(LEASE)  # expired: its holder died
        raise RepositoryError(f"{store.name}: could not take the prune lease; run prune again")

    def _release(self) -> None:
        for store in self._held:
            with contextlib.suppress(ColdvaultError):
                if self._holder(store).get("token") == self._token:
                    store.delete(LEASE)
        self._held = []

    def _holder(self, store: Store) -> dict[str, object]:
        try:
            doc = json.loads(store.get(LEASE))
        except NotFound:
            return {}
        except ValueError:
            return {"expires": None}  # unreadable: as good as expired
        return doc if isinstance(doc, dict) else {}

    def _body(self) -> bytes:
        now = self._clock()
        doc = {
            "token": self._token,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "acquired": now.isoformat(),
            "expires": (now + self._ttl).isoformat(),
        }
        return json.dumps(doc, sort_keys=True).encode()


def _time(value: object) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None
