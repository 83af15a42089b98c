"""What one large file's listing line costs: encoding and decoding the entry of a file of N chunks.

    .venv/bin/python bench/listing_line.py [--chunks 800000]

A file's entry lists every chunk id, so its line grows with the file: 800,000 chunks is a 500 GB
database dump at the default 512 KiB average (640 KiB in effect).  A backup encodes the line once; a
restore, and the next backup of a tree (which compares against the last snapshot), decode it.  Time:
median of --repeat; memory: the peak above what the node (encoding) or the line's pieces (decoding)
hold already, from tracemalloc, per chunk.
"""

import argparse
import os
import statistics
import time
import tracemalloc

from coldvault.repo.tree import FILE, Node, decode_lines, encode_node

LISTING_CHUNK = 640 << 10  # the listing is stored in chunks too: the line arrives in pieces of about this size


def timed(function, argument, repeat):
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = function(argument)
        times.append(time.perf_counter() - started)
    return result, statistics.median(times)


def peak_above(function, argument):
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    result = function(argument)
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    del result
    return peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=800_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    node = Node(
        b"dump.pgc", FILE, 0o600, size=args.chunks * (640 << 10), chunks=[os.urandom(32) for _ in range(args.chunks)]
    )
    line, encode_time = timed(encode_node, node, args.repeat)
    encode_peak = peak_above(encode_node, node)
    del node
    pieces = [line[i : i + LISTING_CHUNK] for i in range(0, len(line), LISTING_CHUNK)]
    decoded, decode_time = timed(lambda p: list(decode_lines(p)), pieces, args.repeat)
    del decoded
    decode_peak = peak_above(lambda p: list(decode_lines(p)), pieces)
    n = args.chunks
    print(f"a file of {n} chunks: its line is {len(line) / 2**20:.1f} MiB")
    print(f"encode: {encode_time:.2f} s (median of {args.repeat}), peak {encode_peak / n:.0f} bytes per chunk")
    print(f"decode: {decode_time:.2f} s (median of {args.repeat}), peak {decode_peak / n:.0f} bytes per chunk")


if __name__ == "__main__":
    main()
