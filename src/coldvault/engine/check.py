"""Verify a repository: structure always, and optionally the content of every (or a sample of) pack.

Problems are collected, not raised, so one run names every damaged object.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from coldvault.engine.heap import give_back_freed_memory
from coldvault.engine.pipeline import OrderedPipeline
from coldvault.engine.progress import Progress
from coldvault.errors import ColdvaultError, IntegrityError
from coldvault.repo.blob import BlobKind, decode_blob
from coldvault.repo.index import Index, PackRecord
from coldvault.repo.pack import read_header
from coldvault.repo.repository import PACK_KINDS, Repository, build_index
from coldvault.repo.tree import FILE
from coldvault.storage.handle import Handle, Kind, verify_object

# Packs being read or waiting to be, whatever the workers: a pack is in memory whole (twice, while it is
# read), and packs may be configured up to 1 GiB, where one at a time is the most that fits anyway.
_PACK_BYTES_IN_FLIGHT = 128 << 20


@dataclass
class CheckResult:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    snapshots: int = 0
    packs: int = 0
    packs_read: int = 0
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def check(
    repo: Repository,
    *,
    read_fraction: float,
    progress: Progress,
    rng: random.Random,
    workers: int,
    before_reading: Callable[[set[Handle]], object] = lambda _: None,
) -> CheckResult:
    """``before_reading`` gets the packs chosen for reading first: where archived packs are warmed up;
    ``workers`` packs are read and verified at a time."""
    result = CheckResult()
    progress.start("check structure")
    _check_key_slots(repo, result)
    errors_before = len(result.errors)
    index = _load_index(repo, result)
    stored = _check_packs_listed(repo, index, result, index_damaged=len(result.errors) > errors_before)
    _check_snapshots(repo, index, result)
    progress.finish()
    if read_fraction > 0:
        packs = sorted((p for p in index.packs() if p.name in stored), key=lambda p: p.name)
        chosen = (
            packs
            if read_fraction >= 1
            else rng.sample(packs, max(1, round(len(packs) * read_fraction)))
            if packs
            else []
        )
        before_reading({Handle(PACK_KINDS[p.kind], p.name) for p in chosen})
        progress.start("check data", sum(p.length for p in chosen))
        _read_packs(repo, chosen, result, progress, workers)
        progress.finish()
    return result


def _check_key_slots(repo: Repository, result: CheckResult) -> None:
    for info in repo.store.list(Kind.KEY):
        try:
            data = repo.store.get(info.handle)
            verify_object(info.handle.name, data, f"key slot {info.handle}")
        except ColdvaultError as exc:
            result.errors.append(str(exc))


def _load_index(repo: Repository, result: CheckResult) -> Index:
    """Every index object read and verified; the entries of superseded ones are retired (repo.index)."""
    objects = []
    for info in repo.store.list(Kind.INDEX):
        try:
            objects.append(repo.read_index_object(info.handle.name))
        except ColdvaultError as exc:
            result.errors.append(_naming(info.handle, exc))
    return build_index(objects)


def _naming(handle: Handle, problem: ColdvaultError) -> str:
    """The problem, led by the object it concerns unless its message names it already (in full, or by
    the first 12 characters of its name, as readers do)."""
    message = str(problem)
    return message if handle.name[:12] in message else f"{handle}: {message}"


def _check_packs_listed(repo: Repository, index: Index, result: CheckResult, *, index_damaged: bool) -> set[str]:
    """Every indexed pack must be stored with its indexed size; returns the names that are."""
    stored: dict[str, int] = {}
    for kind in PACK_KINDS.values():
        for info in repo.store.list(kind):
            stored[info.handle.name] = info.size
    ok = set()
    for pack in index.packs():
        result.packs += 1
        handle = Handle(PACK_KINDS[pack.kind], pack.name)
        if pack.name not in stored:
            result.errors.append(f"{handle}: missing (the index lists it)")
        elif stored[pack.name] != pack.length:
            result.errors.append(f"{handle}: {stored[pack.name]} bytes stored, the index says {pack.length}")
        else:
            ok.add(pack.name)
    unindexed = set(stored) - {p.name for p in index.packs()}
    if unindexed:
        why = "an index object is damaged (above)" if index_damaged else "left by an interrupted backup"
        result.warnings.append(f"{len(unindexed)} packs are not in any readable index ({why})")
    return ok


def _check_snapshots(repo: Repository, index: Index, result: CheckResult) -> None:
    skipped = len(repo.skipped)
    forgotten = repo.forgotten()  # their packs may already be pruned
    result.errors += repo.skipped[skipped:]  # a damaged forget record
    for info in repo.store.list(Kind.SNAPSHOT):
        if info.handle.name in forgotten:
            continue
        result.snapshots += 1
        try:
            snapshot = repo.read_snapshot(info.handle.name)
            missing = [c for c in snapshot.listing if not index.has(BlobKind.TREE, c)]
            if missing:
                result.errors.append(f"{info.handle}: {len(missing)} listing chunks are missing from the index")
                continue
            for node in repo.listing(snapshot):
                if node.type == FILE:
                    lost = sum(1 for c in node.chunks if not index.has(BlobKind.DATA, c))
                    if lost:
                        result.errors.append(
                            f"{info.handle}: file {node.path!r} has {lost} chunks missing from the index"
                        )
        except ColdvaultError as exc:
            result.errors.append(f"{info.handle}: {exc}")


def _read_packs(
    repo: Repository, packs: list[PackRecord], result: CheckResult, progress: Progress, workers: int
) -> None:
    def record(pack: PackRecord, problem: ColdvaultError | None) -> None:
        if problem is None:
            result.packs_read += 1
            result.bytes_read += pack.length
        else:
            result.errors.append(_naming(Handle(PACK_KINDS[pack.kind], pack.name), problem))
        progress.advance(pack.length)

    verify_packs(repo, packs, workers=workers, take=record)


def verify_packs(
    repo: Repository,
    packs: list[PackRecord],
    *,
    workers: int,
    take: Callable[[PackRecord, ColdvaultError | None], None],
) -> None:
    """Read and verify whole packs (read_pack) side by side, as reading, decryption, decompression and
    hashing let go of the GIL: one pack at a time left a core idle, and a cloud's bandwidth unused.
    ``take`` gets each pack with what is wrong with it, or None, in the packs' order whatever finishes
    first, so problems are listed in the same order.  At most ``workers`` packs are in memory, and fewer
    when they are large."""
    with ThreadPoolExecutor(workers, thread_name_prefix="coldvault-verify") as pool:
        # Twice as many queued as running: a worker whose pack finished before an older one starts
        # the next at once (a queued task holds no pack yet).
        pipeline: OrderedPipeline[PackRecord] = OrderedPipeline(
            pool,
            lambda problem, pack: take(pack, problem if isinstance(problem, ColdvaultError) else None),
            max_items=2 * workers,
            max_bytes=_PACK_BYTES_IN_FLIGHT,
        )
        try:
            for pack in packs:
                pipeline.submit(_pack_problem, repo, pack, tag=pack, weight=pack.length)
            pipeline.drain()
        finally:
            pipeline.cancel()  # after a failure: only the packs being read are waited for


def _pack_problem(repo: Repository, pack: PackRecord) -> ColdvaultError | None:
    try:
        read_pack(repo, pack)
    except ColdvaultError as exc:
        return exc
    finally:
        give_back_freed_memory()  # the pack's bytes, which the allocator would keep (see engine.heap)
    return None


def read_pack(repo: Repository, pack: PackRecord) -> bytes:
    """Download a whole pack; its name, header and every blob must verify and agree with the index.
    Returns its bytes; raises the first problem."""
    handle = Handle(PACK_KINDS[pack.kind], pack.name)
    data = repo.store.get(handle)
    verify_object(pack.name, data, str(handle))
    header = read_header(repo.subkeys.meta, data, what=str(handle))
    if sorted(header, key=lambda e: e.offset) != sorted(pack.entries, key=lambda e: e.offset):
        raise IntegrityError(f"{handle}: its header and the index disagree")
    for entry in header:
        plaintext = decode_blob(
            repo.subkeys.data, entry.kind, entry.chunk_id, data[entry.offset : entry.offset + entry.length],
            entry.raw_length,
        )  # fmt: skip
        if repo.subkeys.chunk_id(plaintext) != entry.chunk_id:
            raise IntegrityError(f"{handle}: chunk {entry.chunk_id.hex()[:16]} has wrong content")
        if entry.kind is not BlobKind(pack.kind):
            raise IntegrityError(f"{handle}: holds a blob of the wrong kind")
    return data
