"""A repository on one store: initialise, unlock, read and commit.

Layout (see docs/FORMAT.md):

    config                  plaintext JSON with a sealed body (format, chunker, pack size)
    keys/<name>             key slots: the master key wrapped by a passphrase
    snapshots/<name>        snapshot manifests (the commit points)
    forget/<name>           forget records: snapshots a retention policy let go of
    index/<name>            index objects: chunk id → pack, offset, length
    data/<xx>/<name>        packs of file-data blobs (may go to archive tiers)
    tree/<xx>/<name>        packs of listing blobs (always readable at once)
    reports/<name>          signed drill reports (see repo.report), plaintext

Every name except ``config`` is BLAKE3-256 of the object's bytes, checked on every full read.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from coldvault import __version__
from coldvault.clock import Clock, system_clock
from coldvault.config.model import FormatConfig
from coldvault.config.secret import Secret
from coldvault.errors import (
    AlreadyExists,
    ForeignObject,
    IntegrityError,
    NotFound,
    RepositoryError,
    UsageError,
    WrongKey,
)
from coldvault.repo import envelope
from coldvault.repo.blob import BlobKind, decode_blob
from coldvault.repo.chunker import NORMALIZED_CHUNKING, ChunkerParams
from coldvault.repo.crypto import Subkeys
from coldvault.repo.envelope import EnvelopeType
from coldvault.repo.forget import ForgetRecord, decode_forget, encode_forget
from coldvault.repo.index import (
    Index,
    Location,
    PackRecord,
    decode_index,
    decode_superseding,
    encode_index,
    encode_superseding,
)
from coldvault.repo.keys import DerivedAhead, KeySlot, new_master_key
from coldvault.repo.manifest import Snapshot, decode_snapshot, encode_snapshot
from coldvault.repo.session import SessionMarker, decode_marker, encode_marker
from coldvault.repo.tree import Node, decode_lines
from coldvault.repo.unlock import CONFIG, FORMAT_VERSION, read_config_header, unlock
from coldvault.storage.handle import Handle, Kind, object_name, verify_object
from coldvault.storage.protocol import Store

PACK_KINDS = {BlobKind.DATA: Kind.DATA, BlobKind.TREE: Kind.TREE}


@dataclass(frozen=True)
class IndexObject:
    name: str
    records: list[PackRecord]
    supersedes: list[str]  # index objects it replaces (written by prune)


@dataclass(frozen=True)
class RepoFormat:
    repository_id: str
    chunker: ChunkerParams
    pack_size: int


def default_key_label() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


class Repository:
    def __init__(
        self, store: Store, fmt: RepoFormat, master: Secret, subkeys: Subkeys, slot: str | None, clock: Clock
    ) -> None:
        self.store = store
        self.format = fmt
        self.subkeys = subkeys
        self.clock = clock
        self._master = master
        self._slot = slot  # the key slot that unlocked us; None when opened with the recovery key
        self._index: Index | None = None
        # Damaged or foreign objects skipped while reading. Anyone with write access can plant junk
        # that object lock then keeps for years, so one bad object must not stop every restore.
        self.skipped: list[str] = []
        # Of those, snapshot manifests that may be genuine (damaged copies, a newer format): any one of
        # them may be the newest, so 'latest' cannot be told (see engine.select).  Name -> why.
        self.unreadable_snapshots: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Repository({self.format.repository_id} on {self.store.name})"

    @property
    def id(self) -> str:
        return self.format.repository_id

    # ---- lifecycle -------------------------------------------------------------------------

    @classmethod
    def init(cls, store: Store, passphrase: Secret, params: FormatConfig, *, clock: Clock = system_clock) -> Repository:
        if _exists(store, CONFIG):
            raise RepositoryError(f"target {store.name!r} already holds a coldvault repository; nothing was changed")
        master = new_master_key()
        repository_id = os.urandom(16).hex()
        subkeys = Subkeys.derive(master, bytes.fromhex(repository_id))
        fmt = RepoFormat(
            repository_id,
            ChunkerParams(params.chunk_min_size, params.chunk_avg_size, params.chunk_max_size, subkeys.chunker_seed),
            params.pack_size,
        )
        repo = cls(store, fmt, master, subkeys, None, clock)
        repo._slot = repo.add_key(passphrase, default_key_label())
        # The config goes last: its presence is what makes the target an initialised repository.
        config = repo._encode_config()
        try:
            store.put(CONFIG, config)
        except AlreadyExists:
            # A retry after our first attempt landed finds our own bytes (a random id and nonce make
            # them unique); anything else is another repository that appeared meanwhile.
            if store.get(CONFIG) != config:
                raise RepositoryError(
                    f"target {store.name!r} already holds a coldvault repository; nothing was changed"
                ) from None
        return repo

    @classmethod
    def open(
        cls,
        store: Store,
        *,
        passphrase: Secret | None = None,
        recovery_key: Secret | None = None,
        clock: Clock = system_clock,
        ahead: DerivedAhead | None = None,
    ) -> Repository:
        """``ahead`` may hold the key-encryption key of the slot that opens with ``passphrase``."""
        repository_id, sealed = read_config_header(store)
        if recovery_key is not None:
            master, slot = recovery_key, None
        elif passphrase is not None:
            master, slot = unlock(store, repository_id, passphrase, ahead)
        else:
            raise WrongKey("no passphrase or recovery key given")
        subkeys = Subkeys.derive(master, bytes.fromhex(repository_id))
        try:
            body = envelope.unwrap(subkeys.meta, EnvelopeType.CONFIG, sealed, what="the repository config")
        except IntegrityError:
            if recovery_key is not None:
                raise WrongKey("the recovery key does not belong to this repository") from None
            raise
        fmt = _decode_config_body(body, repository_id, subkeys.chunker_seed)
        return cls(store, fmt, master, subkeys, slot, clock)

    # ---- keys ------------------------------------------------------------------------------

    def key_slots(self) -> list[tuple[str, KeySlot]]:
        slots = []
        for info in self.store.list(Kind.KEY):
            data = self.store.get(info.handle)
            verify_object(info.handle.name, data, f"key slot {info.handle.name[:12]}")
            slots.append((info.handle.name, KeySlot.decode(data, what=f"key slot {info.handle.name[:12]}")))
        return slots

    @property
    def current_slot(self) -> str | None:
        return self._slot

    def add_key(self, passphrase: Secret, label: str) -> str:
        slot = KeySlot.create(
            self._master, passphrase, repository_id=self.id, label=label, created=self.clock().isoformat()
        )
        return self._put_named(Kind.KEY, slot.encode())

    def remove_key(self, name: str) -> None:
        names = [n for n, _ in self.key_slots()]
        matches = [n for n in names if n.startswith(name)] if name else []
        if len(matches) != 1:
            raise UsageError(
                f"{name!r} matches {len(matches)} key slots; give a unique prefix from 'coldvault key list'"
            )
        if matches[0] == self._slot:
            raise UsageError("refusing to remove the key slot in use; use 'coldvault key passwd' to replace it")
        if len(names) == 1:  # opened with the recovery key: no passphrase would open the repository
            raise UsageError("refusing to remove the last key slot; add another first ('coldvault key add')")
        self.store.delete(Handle(Kind.KEY, matches[0]))

    def replace_current_key(self, passphrase: Secret, label: str) -> tuple[str, str]:
        """Add a slot for the new passphrase, then remove the one in use: never a moment with no slot."""
        old = self._slot
        if old is None:
            raise UsageError("opened with the recovery key, there is no slot to replace; use 'coldvault key add'")
        self._slot = self.add_key(passphrase, label)
        self.store.delete(Handle(Kind.KEY, old))
        return old, self._slot

    @property
    def master_key(self) -> Secret:
        return self._master

    # ---- reading ---------------------------------------------------------------------------

    @property
    def index(self) -> Index:
        if self._index is None:
            self._index = self.load_index()
        return self._index

    def load_index(self) -> Index:
        objects = []
        for info in self.store.list(Kind.INDEX):
            try:
                objects.append(self.read_index_object(info.handle.name))
            except IntegrityError as exc:
                self.skipped.append(f"skipped {info.handle}: {exc}")
        return build_index(objects)

    def read_index_object(self, name: str) -> IndexObject:
        what = f"index {name[:12]}"
        data = self._get_verified(Kind.INDEX, name)
        if envelope.type_of(data) == EnvelopeType.SUPERSEDING_INDEX:
            body = envelope.unwrap(self.subkeys.meta, EnvelopeType.SUPERSEDING_INDEX, data, what=what)
            return IndexObject(name, *reversed(decode_superseding(body, what=what)))
        body = envelope.unwrap(self.subkeys.meta, EnvelopeType.INDEX, data, what=what)
        return IndexObject(name, decode_index(body, what=what), [])

    def snapshots(self, *, forgotten: bool = False) -> list[Snapshot]:
        """Every readable snapshot, oldest first; damaged manifests are skipped and noted in ``skipped``, and
        those that may be genuine in ``unreadable_snapshots`` too.

        Forgotten snapshots are left out unless asked for: they stay stored until prune."""
        hidden = set() if forgotten else self.forgotten()
        found = []
        for info in self.store.list(Kind.SNAPSHOT):
            if info.handle.name in hidden:
                continue
            try:
                found.append(self.read_snapshot(info.handle.name))
            except ForeignObject as exc:  # planted, or another repository's: never one of ours
                self.skipped.append(f"skipped {info.handle}: {exc}")
            except IntegrityError as exc:
                self.skipped.append(f"skipped {info.handle}: {exc}")
                self.unreadable_snapshots[info.handle.name] = str(exc)
        return sorted(found, key=lambda s: (s.time, s.id))

    def read_snapshot(self, name: str) -> Snapshot:
        data = self._get_verified(Kind.SNAPSHOT, name)
        body = envelope.unwrap(self.subkeys.meta, EnvelopeType.SNAPSHOT, data, what=f"snapshot {name[:12]}")
        return decode_snapshot(body, name)

    def forget_records(self) -> list[ForgetRecord]:
        """Every readable forget record, oldest first.  A damaged one is skipped and noted: its
        snapshots then show again, which errs on the side of keeping them."""
        records = []
        for info in self.store.list(Kind.FORGET):
            name = info.handle.name
            try:
                data = self._get_verified(Kind.FORGET, name)
                body = envelope.unwrap(self.subkeys.meta, EnvelopeType.FORGET, data, what=f"forget record {name[:12]}")
                records.append(decode_forget(body, name))
            except IntegrityError as exc:
                self.skipped.append(f"skipped {info.handle}: {exc}")
        return sorted(records, key=lambda r: (r.time, r.id))

    def forgotten(self) -> set[str]:
        """Ids of the snapshots some forget record names."""
        return {snapshot for record in self.forget_records() for snapshot in record.snapshots}

    def forget(self, snapshot_ids: Iterable[str], *, host: str, username: str) -> ForgetRecord:
        """Store a record forgetting the snapshots.  Nothing is deleted: see repo.forget."""
        record = ForgetRecord(self.clock(), host, username, tuple(sorted(set(snapshot_ids))))
        data = envelope.wrap(self.subkeys.meta, EnvelopeType.FORGET, encode_forget(record))
        return replace(record, id=self._put_named(Kind.FORGET, data))

    def read_blob(self, kind: BlobKind, chunk_id: bytes) -> bytes:
        """A chunk's plaintext, fetched with a range read and proven by its keyed hash."""
        return next(self.read_blobs(kind, [(chunk_id, self.locate(kind, chunk_id))]))

    def locate(self, kind: BlobKind, chunk_id: bytes) -> Location:
        location = self.index.lookup(kind, chunk_id)
        if location is None:
            raise IntegrityError(f"chunk {chunk_id.hex()[:16]} is missing from the index; run 'coldvault check'")
        return location

    def read_blobs(self, kind: BlobKind, wanted: Sequence[tuple[bytes, Location]]) -> Iterator[bytes]:
        """The plaintexts of chunks lying close together in one pack, in the order asked, fetched with one
        range read (one request to a cloud) and each proven by its keyed hash."""
        pack = wanted[0][1].pack
        assert all(location.pack == pack for _, location in wanted), "one pack per read"
        start = min(location.offset for _, location in wanted)
        end = max(location.offset + location.length for _, location in wanted)
        handle = Handle(PACK_KINDS[kind], pack)
        data = memoryview(self.store.get(handle, offset=start, length=end - start))
        whole: memoryview | None = None
        for chunk_id, location in wanted:
            at = location.offset - start
            try:
                yield self._open_blob(kind, chunk_id, data[at : at + location.length], location)
            except IntegrityError:
                # The copy read may be damaged where another is not.  A whole object is checked against
                # its name, and a store over several targets then takes it from one whose copy matches.
                if whole is None:
                    whole = memoryview(self._get_verified(handle.kind, handle.name))
                end_of_blob = location.offset + location.length
                yield self._open_blob(kind, chunk_id, whole[location.offset : end_of_blob], location)

    def _open_blob(self, kind: BlobKind, chunk_id: bytes, sealed: bytes | memoryview, location: Location) -> bytes:
        plaintext = decode_blob(self.subkeys.data, kind, chunk_id, sealed, location.raw_length)
        if self.subkeys.chunk_id(plaintext) != chunk_id:
            raise IntegrityError(f"chunk {chunk_id.hex()[:16]} in pack {location.pack[:12]} has wrong content")
        return plaintext

    def listing(self, snapshot: Snapshot, *, sizes_from: int = 0) -> Iterator[Node]:
        """The snapshot's entries; with ``sizes_from``, only those that may be that large (see decode_lines)."""
        return decode_lines((self.read_blob(BlobKind.TREE, c) for c in snapshot.listing), sizes_from=sizes_from)

    # ---- writing ---------------------------------------------------------------------------

    def write_pack(self, kind: BlobKind, data: bytes | memoryview, name: str | None = None) -> str:
        """Store a pack; ``name`` is object_name(data) when the caller has computed it already."""
        return self._put_named(PACK_KINDS[kind], data, name)

    def write_index(self, records: list[PackRecord]) -> str | None:
        if not records:
            return None
        body = encode_index(records)
        name = self._put_named(Kind.INDEX, envelope.wrap(self.subkeys.meta, EnvelopeType.INDEX, body))
        for record in records:
            self.index.add(record, name)
        return name

    def seal_superseding_index(self, supersedes: Iterable[str], records: Iterable[PackRecord]) -> tuple[Handle, bytes]:
        """An index object replacing ``supersedes`` (see repo.index), for prune to store where it decides."""
        body = encode_superseding(supersedes, records)
        data = envelope.wrap(self.subkeys.meta, EnvelopeType.SUPERSEDING_INDEX, body)
        return Handle(Kind.INDEX, object_name(data)), data

    def write_session_marker(self, marker: SessionMarker) -> str:
        data = envelope.wrap(self.subkeys.meta, EnvelopeType.SESSION, encode_marker(marker))
        return self._put_named(Kind.SESSION, data)

    def read_session_marker(self, name: str) -> SessionMarker:
        data = self._get_verified(Kind.SESSION, name)
        body = envelope.unwrap(self.subkeys.meta, EnvelopeType.SESSION, data, what=f"session marker {name[:12]}")
        return decode_marker(body, name)

    def seal_snapshot(self, snapshot: Snapshot) -> tuple[Handle, bytes]:
        """The manifest object, for a caller that decides itself where it goes (see engine.replicas)."""
        data = envelope.wrap(self.subkeys.meta, EnvelopeType.SNAPSHOT, encode_snapshot(snapshot))
        return Handle(Kind.SNAPSHOT, object_name(data)), data

    def commit_snapshot(self, snapshot: Snapshot) -> str:
        """Store the manifest: the commit point.  Call only after its packs and index are stored."""
        return self._put_named(Kind.SNAPSHOT, self.seal_snapshot(snapshot)[1])

    def essentials(self) -> list[Handle]:
        """What any target needs besides packs and indexes to open the repository: config and our key slot."""
        handles = [CONFIG]
        if self._slot is not None:
            handles.append(Handle(Kind.KEY, self._slot))
        return handles

    # ---- internals -------------------------------------------------------------------------

    def _put_named(self, kind: Kind, data: bytes | memoryview, name: str | None = None) -> str:
        name = name or object_name(data)
        try:
            self.store.put(Handle(kind, name), data)
        except AlreadyExists:
            pass  # same name, same bytes: an earlier attempt already stored it
        return name

    def _get_verified(self, kind: Kind, name: str) -> bytes:
        data = self.store.get(Handle(kind, name))
        verify_object(name, data, f"{kind.value} object {name[:12]}")
        return data

    def _encode_config(self) -> bytes:
        fmt = self.format
        body = {
            "repository_id": fmt.repository_id,
            "chunker": {
                "algorithm": "fastcdc2020",
                "min_size": fmt.chunker.min_size,
                "avg_size": fmt.chunker.avg_size,
                "max_size": fmt.chunker.max_size,
                "normalized_chunking": NORMALIZED_CHUNKING,
            },
            "pack_size": fmt.pack_size,
        }
        sealed = envelope.wrap(self.subkeys.meta, EnvelopeType.CONFIG, json.dumps(body, sort_keys=True).encode())
        doc = {
            "format": "coldvault",
            "version": FORMAT_VERSION,
            "repository_id": fmt.repository_id,
            "created": self.clock().isoformat(),
            "created_by": f"coldvault {__version__}",
            "sealed": base64.b64encode(sealed).decode(),
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"


def build_index(objects: Iterable[IndexObject]) -> Index:
    """The index over these objects: the entries of any one another supersedes are retired (repo.index)."""
    objects = list(objects)
    superseded = {name for o in objects for name in o.supersedes}
    index = Index()
    for o in objects:
        for record in o.records:
            index.add(record, o.name, retired=o.name in superseded)
    return index


def _exists(store: Store, handle: Handle) -> bool:
    try:
        store.head(handle)
    except NotFound:
        return False
    return True


def _decode_config_body(body: bytes, repository_id: str, seed: int) -> RepoFormat:
    try:
        doc = json.loads(body)
        chunker = doc["chunker"]
        if (
            doc["repository_id"] != repository_id
            or chunker["algorithm"] != "fastcdc2020"
            or chunker["normalized_chunking"] != NORMALIZED_CHUNKING
        ):
            raise ValueError("mismatch")
        # Re-validate through the typed model: sealed or not, sizes out of range must not reach FastCDC.
        params = FormatConfig(
            chunk_min_size=chunker["min_size"],
            chunk_avg_size=chunker["avg_size"],
            chunk_max_size=chunker["max_size"],
            pack_size=doc["pack_size"],
        )
        return RepoFormat(
            repository_id,
            ChunkerParams(params.chunk_min_size, params.chunk_avg_size, params.chunk_max_size, seed),
            params.pack_size,
        )
    except (ValueError, KeyError, TypeError):
        raise IntegrityError("the repository config is malformed") from None
