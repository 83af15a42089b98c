"""Repack: copy the chunks retained snapshots still need out of packs that are mostly garbage
(docs/FORMAT.md §11.5).

A pack is all or nothing to a store: one still-needed chunk keeps the whole pack, and with it
every forgotten chunk beside it.  Repacking copies the needed chunks' sealed blobs, verified,
byte for byte into new packs; prune then indexes them there and drops the old pack like any
other garbage.  Blobs are not opened and sealed again: each was sealed under its own random key
and is bound to its chunk id, not to its pack, so a copy is as good as the original.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from coldvault.engine.check import read_pack
from coldvault.engine.locks import Chunk
from coldvault.errors import IntegrityError
from coldvault.repo.blob import BlobKind
from coldvault.repo.index import PackRecord
from coldvault.repo.pack import PackBuilder, PackEntry
from coldvault.repo.repository import Repository
from coldvault.storage.handle import object_name


@dataclass(frozen=True)
class Repack:
    old: PackRecord
    keep: tuple[PackEntry, ...]  # the entries a retained snapshot needs

    @property
    def unused(self) -> float:
        """The share of the pack's blob bytes no retained snapshot needs."""
        total = sum(e.length for e in self.old.entries)
        return 1 - sum(e.length for e in self.keep) / total if total else 0.0


def mostly_garbage(packs: Iterable[PackRecord], needed: set[Chunk], threshold: float) -> list[Repack]:
    """Packs whose unused share reaches ``threshold`` but that hold something needed, most garbage first.

    A chunk counts as needed here wherever it lies, not only where the index resolves it: a
    duplicate stored by two racing backups is kept in both packs, so that no target's own index
    ends up without it."""
    found = []
    for pack in packs:
        keep = tuple(e for e in pack.entries if (e.kind, e.chunk_id) in needed)
        repack = Repack(pack, keep)
        if keep and repack.unused >= threshold:
            found.append(repack)
    return sorted(found, key=lambda r: (-r.unused, r.old.name))


def rewrite(
    repo: Repository,
    repacks: Iterable[Repack],
    *,
    damaged: list[tuple[Repack, str]],
    between: Callable[[], None] = lambda: None,
) -> Iterator[tuple[bytes, PackRecord]]:
    """New packs (bytes, record) holding every kept blob once, each about the format's pack size.

    Each old pack is read whole and verified first (its name, header and every blob, as
    ``check --read-data`` does).  One that fails on every target is left as it is and appended to
    ``damaged`` with the reason: nothing is copied from it, so it stays where the index says.
    ``between`` is called after each old pack (prune renews its lease there)."""
    repacks = list(repacks)
    copied: set[tuple[BlobKind, bytes]] = set()  # a chunk two old packs hold goes into one new pack
    for kind in BlobKind:
        builder = PackBuilder(kind)
        for repack in (r for r in repacks if r.old.kind is kind):
            try:
                data = read_pack(repo, repack.old)
            except IntegrityError as exc:
                damaged.append((repack, str(exc)))
                continue
            finally:
                between()
            for entry in sorted(repack.keep, key=lambda e: e.offset):  # keep the old order: files read in sequence
                if (kind, entry.chunk_id) in copied:
                    continue
                copied.add((kind, entry.chunk_id))
                if not builder.fits(entry.length, repo.format.pack_size):
                    yield _finish(repo, builder)
                    builder = PackBuilder(kind)
                builder.add(entry.chunk_id, data[entry.offset : entry.offset + entry.length], entry.raw_length)
        if not builder.empty:
            yield _finish(repo, builder)


def _finish(repo: Repository, builder: PackBuilder) -> tuple[bytes, PackRecord]:
    view, entries = builder.finish(repo.subkeys.meta)
    data = bytes(view)
    view.release()
    return data, PackRecord.of(object_name(data), builder.kind, len(data), entries)
