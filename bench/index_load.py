"""What loading the index costs: decoding index objects and building the in-memory Index, per entry.

    .venv/bin/python bench/index_load.py [--entries 500000] [--per-pack 250]

Every command that reads or writes chunks holds the whole index in memory, so this time and this
memory grow with the repository (one entry per chunk: a 500 GiB repository of large files at the
default 1 MiB average has about 500,000).  The entries are synthetic (random ids, one pack kind).
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
    parser.add_argument("--per-pack", type=int, default=250)
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
    print(
        f"{len(index)} entries: decoded and built in {statistics.median(times):.2f} s (median of {args.repeat}),"
        f" {held / len(index):.0f} bytes each held in memory"
    )


if __name__ == "__main__":
    main()
