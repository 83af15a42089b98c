"""The most any backup pipeline built from coldvault's parts can do on this machine.

Files are read into memory first (not timed).  Then the timed part is only the
per-chunk work of a backup, with coldvault's own functions: FastCDC cut points,
the keyed BLAKE3 chunk id, zstd at the given level and the AES-GCM seal, on 1 and
on ``os.cpu_count()`` threads, each thread taking whole files.  No walk, no
reads, no packing, no writes, no start-up: a real backup can only be slower.

    .venv/bin/python bench/ceiling.py /tmp/benchout7/data --levels 1,2,3 --repeat 3

Compare its MB/s with a peer's backup throughput from run.py: a target above the
ceiling cannot be met by tuning the pipeline around these parts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import zstandard

from coldvault.config.model import FormatConfig
from coldvault.repo.blob import BlobKind, seal_blob
from coldvault.repo.chunker import ChunkerParams

_ID_KEY = bytes(range(32))
_DATA_KEY = bytes(range(32, 64))
_SEED = 12345


def load(root: Path) -> list[bytes]:
    files = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    files.append(f.read())
    return files


def seal_files(files: list[bytes], params: ChunkerParams, level: int) -> int:
    """One thread's share: every chunk cut, named, compressed and sealed; returns stored bytes."""
    import blake3

    chunker, compressor, stored = params.new(), zstandard.ZstdCompressor(level=level), 0
    for data in files:
        for chunk in chunker.cut_buf(data):
            chunk_id = blake3.blake3(chunk.data, key=_ID_KEY).digest()
            sealed = seal_blob(_DATA_KEY, BlobKind.DATA, chunk_id, chunk.data, compressor.compress(chunk.data))
            stored += len(sealed)
    return stored


def measure(files: list[bytes], params: ChunkerParams, level: int, threads: int) -> tuple[float, float, int]:
    """(wall s, CPU s of the process, stored bytes) with the files dealt out to ``threads`` threads by size."""
    shares: list[list[bytes]] = [[] for _ in range(threads)]
    loads = [0] * threads
    for data in sorted(files, key=len, reverse=True):
        lightest = loads.index(min(loads))
        shares[lightest].append(data)
        loads[lightest] += len(data)
    start = threading.Barrier(threads + 1)

    def work(share: list[bytes]) -> int:
        start.wait()
        return seal_files(share, params, level)

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(work, share) for share in shares]
        cpu, wall = time.process_time(), time.perf_counter()
        start.wait()
        stored = sum(f.result() for f in futures)
        return time.perf_counter() - wall, time.process_time() - cpu, stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a tree to read into memory, e.g. from gen_tree.py")
    parser.add_argument("--levels", default="3", help="comma-separated zstd levels (default 3)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; medians are reported")
    args = parser.parse_args()
    fmt = FormatConfig()
    params = ChunkerParams(fmt.chunk_min_size, fmt.chunk_avg_size, fmt.chunk_max_size, _SEED)
    files = load(args.data)
    size = sum(map(len, files))
    cores = os.cpu_count() or 1
    print(f"{len(files)} files, {size / 2**20:.0f} MiB in memory; {cores} cores")
    print("level  threads  wall s  CPU s   MB/s  stored MiB")
    for level in (int(x) for x in args.levels.split(",")):
        for threads in sorted({1, cores}):
            runs = [measure(files, params, level, threads) for _ in range(args.repeat)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            print(
                f"{level:5}  {threads:7}  {wall:6.2f}  {cpu:5.2f}  {size / wall / 1e6:5.0f}  {runs[0][2] / 2**20:10.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
