"""Compression cost and size per zstd level, on the chunks coldvault would cut from a tree.

    .venv/bin/python bench/compression_levels.py DIR [--levels 1,2,3]

Single-threaded, one file at a time (so allocation effects stay out of the
numbers); prints MB/s per core and the bytes stored (compressed, or raw when
compression does not help, as coldvault stores them).
"""

from __future__ import annotations

import argparse
import os
import time

import zstandard
from pyfastcdc import FastCDC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree")
    parser.add_argument("--levels", default="1,2,3")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    chunker = FastCDC(1 << 20, min_size=256 << 10, max_size=8 << 20, seed=1)  # coldvault's default sizes
    compressors = {level: zstandard.ZstdCompressor(level=level) for level in levels}
    seconds = dict.fromkeys(levels, 0.0)
    stored = dict.fromkeys(levels, 0)
    total = 0
    for folder, _, files in os.walk(args.tree):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read()
            for chunk in chunker.cut_buf(data):
                total += chunk.length
                for level, compressor in compressors.items():
                    started = time.perf_counter()
                    compressed = compressor.compress(chunk.data)
                    seconds[level] += time.perf_counter() - started
                    stored[level] += min(len(compressed), chunk.length)
    print(f"{total / 2**20:.0f} MiB of chunks")
    for level in levels:
        speed = total / seconds[level] / 1e6
        print(f"level {level:>2}: {speed:6.0f} MB/s per core, stored {stored[level] / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
