"""What loading the index costs: decoding index objects and building the in-memory Index, per entry;
and what a lookup costs in it, of a chunk it holds (restore, check) and of one it lacks (a backup's
new chunks).

    .venv/bin/python bench/index_load.py [--entries 500000] [--per-pack 100]

Every command that reads or writes chunks holds the whole index in memory, so this time and this
memory grow with the repository (one entry per chunk: 500 GiB of large files at the default 512 KiB
average, 640 KiB in effect, make about 800,000; a 32 MiB pack holds about 100 such chunks once
compressed).  The entries are synthetic (random ids, one pack kind).
"""

import argparse
import os
import statistics
import time
import tracemalloc

from coldvault.repo.blob import BlobKind
from coldvault.repo.index import PackRecord, decode_index, encode_index
from coldvault.repo.pack import PackEntry
from coldvault.repo.repository import IndexObject, build_index

LOOKUPS = 50_000


def index_body(entries, per_pack):
    packs = [
        PackRecord.of(
            os.urandom(32).hex(),
            BlobKind.DATA,
            32 << 20,
            [PackEntry(BlobKind.DATA, os.urandom(32), i * 100, 100, 200) for i in range(per_pack)],
        )
        for _ in range(entries // per_pack)
    ]
    return encode_index(packs)


def load(body):
    return build_index([IndexObject("0" * 64, decode_index(body, what="index"), [])])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=500_000)
    parser.add_argument("--per-pack", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    body = index_body(args.entries, args.per_pack)
    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        index = load(body)
        times.append(time.perf_counter() - started)
        del index
    tracemalloc.start()
    index = load(body)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{len(index)} entries: decoded and built in {statistics.median(times):.2f} s (median of {args.repeat}),"
        f" {held / len(index):.0f} bytes each held in memory"
    )
    held_ids = [e.chunk_id for pack in index.packs() for e in pack.entries[::10]][:LOOKUPS]
    lacking_ids = [os.urandom(32) for _ in held_ids]
    for what, ids in (("holds", held_ids), ("lacks", lacking_ids)):
        started = time.perf_counter()
        for chunk_id in ids:
            index.lookup(BlobKind.DATA, chunk_id)
        each = (time.perf_counter() - started) / len(ids)
        print(f"lookup of a chunk it {what}: {each * 1e6:.2f} µs each")


if __name__ == "__main__":
    main()
