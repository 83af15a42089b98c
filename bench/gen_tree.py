#!/usr/bin/env python3
"""Deterministic benchmark data for coldvault and its peers.

Generation 1 builds a tree of about --size-mib MiB that mixes what real
backups see:

    ~35%  compressible text: pseudo-English prose and log files
    ~25%  incompressible random bytes ("media")
    ~15%  near-duplicates: copies of earlier files with small edits
    ~20%  one SQL dump of repetitive INSERT lines (compresses moderately)
     ~5%  a few thousand small files (1-16 KiB) in nested directories

Generation 2 is applied on top of a generation-1 tree and changes about 5% of
its bytes: in-place edits, an append to the dump, new files and a few deleted
small files, so that a second backup is incremental.

The same seed gives byte-identical files on every run and machine: all
content comes from random.Random, whose Mersenne Twister output (and
randbytes/getrandbits) is specified and platform-independent, and files are
always visited in sorted order.  Only mtimes differ between runs.
"""

import argparse
import itertools
import os
import random
import sys
import time
from array import array
from dataclasses import dataclass
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB

# Share of generation-1 bytes per kind of content; the small files take the rest.
TEXT_SHARE = 0.35
RANDOM_SHARE = 0.25
DUPLICATE_SHARE = 0.15
DUMP_SHARE = 0.20

# Share of the tree's bytes that generation 2 touches, per kind of change.
EDIT_SHARE = 0.02
APPEND_SHARE = 0.015
NEW_FILE_SHARE = 0.015
DELETED_SMALL_FILE_SHARE = 0.01  # of the small files, by count

# Large content is produced and written in pieces of this size, so memory
# stays small and each write() is big enough to be cheap.
CHUNK = 1 * MIB

TEXT_SUFFIXES = (".txt", ".log", ".cfg")

BASE_WORDS = """
the of and to in is you that it he was for on are as with his they at be this
have from or one had by word but not what all were we when your can said there
use an each which she do how their if will up other about out many then them
these so some her would make like him into time has look two more write go see
number no way could people my than first water been call who oil its now find
long down day did get come made may part over new sound take only little work
know place year live me back give most very after thing our just name good
sentence man think say great where help through much before line right too
mean old any same tell boy follow came want show also around form three small
set put end does another well large must big even such because turn here why
ask went men read need land different home us move try kind hand picture again
change off play spell air away animal house point page letter mother answer
found study still learn should america world backup archive chunk restore
snapshot volume storage bucket object segment index manifest checksum server
""".split()

SYLLABLES = """
ka ri to ne sa mi lo ve da pu ra ti mo be ku la se no fi ga ze ro hu ta me
""".split()

LOG_LEVELS = ["INFO"] * 11 + ["DEBUG"] * 3 + ["WARN", "ERROR"]
LOG_COMPONENTS = [
    "api",
    "auth",
    "db",
    "cache",
    "worker",
    "scheduler",
    "http",
    "storage",
    "queue",
    "billing",
    "search",
    "mailer",
    "gateway",
    "metrics",
    "sync",
    "cron",
]
ORDER_STATUSES = ["new", "paid", "shipped", "delivered", "returned", "cancelled", "paid", "shipped"]
CURRENCIES = ["EUR", "USD", "GBP", "CHF"]
DUMP_HEADER = (
    "-- coldvault benchmark dump\n"
    "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id integer, status text,\n"
    "    amount_cents integer, currency char(3), created_at timestamp, note text);\n"
)
DUMP_PATH = Path("db") / "dump.sql"
ADDED_DIR = "added"  # only generation 2 creates it, so it also marks that gen 2 ran
SMALL_DIR = "src"
SMALL_SUFFIXES = (".txt", ".log", ".cfg", ".bin")


@dataclass
class TreeSummary:
    files: int
    bytes: int

    def __str__(self):
        return f"{self.files:,} files, {self.bytes:,} bytes ({self.bytes / MIB:.1f} MiB)"


class Content:
    """Pseudo-random content of each kind, all drawn from one seeded RNG."""

    def __init__(self, rng):
        self.rng = rng
        vocabulary = BASE_WORDS + self._invented_words(1800)
        self.words = self._zipf_table(vocabulary)
        self.prose_tokens = self._with_punctuation(self.words)
        self.mean_prose_token = sum(map(len, self.prose_tokens)) / len(self.prose_tokens)
        self.log_clock_ms = 0  # carried across calls so a log's timestamps keep rising

    def _invented_words(self, count):
        # A long tail of rare words gives the prose an English-like entropy, so
        # it compresses about as well as real text (roughly 3x), not 20x.
        return ["".join(self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(2, 4))) for _ in range(count)]

    @staticmethod
    def _zipf_table(vocabulary):
        # 65536 slots filled in Zipf proportions: a uniform 16-bit index then
        # picks words with a natural-language frequency curve, cheaply.
        weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
        scale = 65536 / sum(weights)
        table = []
        for word, weight in zip(vocabulary, weights, strict=True):
            table.extend([word] * max(1, round(weight * scale)))
        return (table * 2)[:65536]  # rounding leaves it near 65536: pad or trim to exactly that

    @staticmethod
    def _with_punctuation(words):
        # About 13 words a sentence and 3 sentences a line, like plain prose.
        suffixes = [" "] * 34 + [", "] * 3 + [". "] * 2 + [".\n"]
        return [word + suffixes[slot % len(suffixes)] for slot, word in enumerate(words)]

    def _word_indexes(self, count):
        indexes = array("H", self.rng.randbytes(2 * count))
        if sys.byteorder == "big":
            indexes.byteswap()  # randbytes is little-endian by definition; read it so everywhere
        return indexes

    def random(self, size):
        return self.rng.randbytes(size)

    def prose(self, size):
        count = int(size / self.mean_prose_token) + 64
        text = "".join(map(self.prose_tokens.__getitem__, self._word_indexes(count)))
        return text.encode()[:size]

    def log(self, size):
        lines, produced = [], 0
        words = self.words
        indexes = self._word_indexes(size // 5 + 16)
        position = 0
        while produced < size:
            bits = self.rng.getrandbits(64)  # one draw feeds every field of the line
            self.log_clock_ms += bits & 0x3FF
            word_count = 3 + ((bits >> 18) & 7)
            message = " ".join(words[i] for i in indexes[position : position + word_count])
            position += word_count
            line = (
                f"{_timestamp(self.log_clock_ms)} {LOG_LEVELS[(bits >> 10) & 0xF]:5} "
                f"[{LOG_COMPONENTS[(bits >> 14) & 0xF]}] {message} "
                f"request_id={(bits >> 21) & 0xFFFFFFFF:08x} latency_ms={bits >> 53}\n"
            )
            lines.append(line)
            produced += len(line)
        return "".join(lines).encode()[:size]

    def dump_rows(self, size, first_id):
        """INSERT lines of about `size` bytes (whole lines), and the next free id."""
        rows, produced, row_id = [], 0, first_id
        words = self.words
        while produced < size:
            bits = self.rng.getrandbits(64)
            note = f"{words[bits & 0xFFFF]} {words[(bits >> 16) & 0xFFFF]}"
            row = (
                f"INSERT INTO orders (id, customer_id, status, amount_cents, currency, "
                f"created_at, note) VALUES ({row_id}, {(bits >> 32) & 0xFFFF}, "
                f"'{ORDER_STATUSES[(bits >> 48) & 7]}', {(bits >> 51) & 0x7FF}, "
                f"'{CURRENCIES[bits >> 62]}', '{_timestamp(row_id * 1370, ' ')[:19]}', "
                f"'{note}');\n"
            )
            rows.append(row)
            produced += len(row)
            row_id += 1
        return "".join(rows).encode(), row_id

    def like(self, path, size):
        """Content matching the file's kind, judged by its suffix."""
        if path.suffix == ".log":
            return self.log(size)
        if path.suffix in TEXT_SUFFIXES:
            return self.prose(size)
        return self.random(size)


def _timestamp(ms, separator="T"):
    """A 2024 date-time from milliseconds; integer maths is far faster than datetime."""
    seconds, millis = divmod(ms, 1000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    month, day = divmod(days % 336, 28)
    return f"2024-{month + 1:02d}-{day + 1:02d}{separator}{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


def write_file(path, produce, size):
    """Write `size` bytes made by produce(n) in CHUNK pieces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        remaining = size
        while remaining > 0:
            piece = produce(min(CHUNK, remaining))
            out.write(piece)
            remaining -= len(piece)


def file_sizes(rng, budget, smallest, largest):
    """Log-uniform sizes adding up to exactly `budget`: many small, a few big."""
    sizes = []
    while budget > 0:
        size = min(int(smallest * (largest / smallest) ** rng.random()), budget)
        if budget - size < smallest:
            size = budget  # fold a tail too small for its own file into this one
        sizes.append(size)
        budget -= size
    return sizes


def largest_file_size(total):
    # Scale with the tree so a 32 MiB test tree still has a dozen big files.
    return max(256 * KIB, min(64 * MIB, total // 16))


def write_text_files(root, content, rng, budget, largest):
    paths = []
    for number, size in enumerate(file_sizes(rng, budget, 32 * KIB, largest)):
        if number % 2:
            path = root / "logs" / f"service-{number:03d}.log"
            write_file(path, content.log, size)
        else:
            path = root / "docs" / f"chapter-{number:03d}.txt"
            write_file(path, content.prose, size)
        paths.append(path)
    return paths


def write_random_files(root, content, rng, budget, largest):
    paths = []
    for number, size in enumerate(file_sizes(rng, budget, 32 * KIB, largest)):
        path = root / "media" / f"blob-{number:03d}.bin"
        write_file(path, content.random, size)
        paths.append(path)
    return paths


def edit_randomly(data, content, rng, path, edits, largest_edit):
    """Overwrite or insert a few ranges at random offsets; return the bytes changed."""
    changed = 0
    for _ in range(edits):
        length = rng.randint(16, largest_edit)
        offset = rng.randrange(len(data) + 1)
        patch = content.like(path, length)
        if rng.random() < 0.5:
            data[offset : offset + length] = patch
        else:
            data[offset:offset] = patch
        changed += length
    return changed


def write_near_duplicates(root, content, rng, budget, originals):
    written = 0
    for number in itertools.count():
        candidates = [p for p in originals if p.stat().st_size <= budget - written]
        if not candidates:
            return
        original = rng.choice(candidates)
        data = bytearray(original.read_bytes())
        edit_randomly(data, content, rng, original, rng.randint(1, 4), 512)
        path = root / "copies" / f"{original.stem}-copy{number:03d}{original.suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written += len(data)


def write_small_files(root, content, rng, budget):
    written, number = 0, 0
    while budget - written >= KIB:
        size = min(rng.randint(KIB, 16 * KIB), budget - written)
        directory = root / SMALL_DIR / f"pkg{rng.randrange(8)}" / f"mod{rng.randrange(8)}" / f"part{rng.randrange(4)}"
        path = directory / f"file-{number:05d}{SMALL_SUFFIXES[rng.randrange(len(SMALL_SUFFIXES))]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.like(path, size))
        written += size
        number += 1


def write_dump(root, content, budget):
    path = root / DUMP_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.write(DUMP_HEADER.encode())
        written, row_id = len(DUMP_HEADER), 1
        while written < budget:
            rows, row_id = content.dump_rows(min(CHUNK, budget - written), row_id)
            out.write(rows)
            written += len(rows)


def generate(root, size_mib, seed):
    """Generation 1 into an empty or missing directory `root`."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"gen_tree: {root} is not empty; generation 1 needs an empty directory")
    rng = random.Random(seed)
    content = Content(rng)
    total = size_mib * MIB
    largest = largest_file_size(total)
    text_files = write_text_files(root, content, rng, int(total * TEXT_SHARE), largest)
    random_files = write_random_files(root, content, rng, int(total * RANDOM_SHARE), largest)
    write_near_duplicates(root, content, rng, int(total * DUPLICATE_SHARE), text_files + random_files)
    write_dump(root, content, int(total * DUMP_SHARE))
    write_small_files(root, content, rng, total - tree_summary(root).bytes)
    return tree_summary(root)


def bump_mtime(path, previous_ns):
    # A same-size overwrite within the filesystem's timestamp granularity could
    # keep the old mtime; force it forward so every tool sees the change.
    new_ns = max(time.time_ns(), previous_ns + 1_000_000_000)
    os.utime(path, ns=(new_ns, new_ns))


def edit_files_in_place(root, content, rng, budget):
    candidates = sorted(
        p for folder in ("docs", "logs", "media", "copies") for p in (root / folder).glob("*") if p.is_file()
    )
    changed, edited = 0, set()
    while changed < budget and candidates:
        path = rng.choice(candidates)
        previous_ns = path.stat().st_mtime_ns
        data = bytearray(path.read_bytes())
        largest_edit = min(64 * KIB, max(16, budget - changed))
        changed += edit_randomly(data, content, rng, path, rng.randint(1, 8), largest_edit)
        path.write_bytes(data)
        bump_mtime(path, previous_ns)
        edited.add(path)
    return len(edited)


def append_to_dump(root, content, budget):
    path = root / DUMP_PATH
    previous_ns = path.stat().st_mtime_ns
    # New rows get ids far above generation 1's, as if inserted later.
    rows, _ = content.dump_rows(budget, first_id=10_000_000)
    with open(path, "ab") as out:
        out.write(rows)
    bump_mtime(path, previous_ns)


def add_new_files(root, content, rng, budget):
    half = budget // 2
    write_file(root / ADDED_DIR / "notes-new.txt", content.prose, half)
    write_file(root / ADDED_DIR / "upload-new.bin", content.random, budget - half)
    small_dir = root / ADDED_DIR / "configs"
    for number in range(rng.randint(3, 6)):
        write_file(small_dir / f"new-{number}.cfg", content.prose, rng.randint(KIB, 16 * KIB))


def delete_small_files(root, rng):
    small_files = sorted(p for p in (root / SMALL_DIR).rglob("*") if p.is_file())
    doomed = rng.sample(small_files, max(1, int(len(small_files) * DELETED_SMALL_FILE_SHARE)))
    for path in doomed:
        path.unlink()
    return len(doomed)


def apply_generation2(root, seed):
    """Change about 5% of a generation-1 tree's bytes, deterministically."""
    root = Path(root)
    if not (root / DUMP_PATH).is_file():
        raise SystemExit(f"gen_tree: {root} holds no generation-1 tree")
    if (root / ADDED_DIR).exists():
        raise SystemExit(f"gen_tree: generation 2 was already applied to {root}")
    # A string seed is hashed with SHA-512, which is stable across machines.
    rng = random.Random(f"coldvault-bench:{seed}:generation-2")
    content = Content(rng)
    total = tree_summary(root).bytes
    edited = edit_files_in_place(root, content, rng, int(total * EDIT_SHARE))
    append_to_dump(root, content, int(total * APPEND_SHARE))
    add_new_files(root, content, rng, int(total * NEW_FILE_SHARE))
    deleted = delete_small_files(root, rng)
    return edited, deleted, tree_summary(root)


def tree_summary(root):
    files = total = 0
    for directory, _, names in os.walk(root):
        for name in names:
            files += 1
            total += os.lstat(os.path.join(directory, name)).st_size
    return TreeSummary(files, total)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="directory to create (generation 1) or change (generation 2)")
    parser.add_argument("--size-mib", type=int, default=1024, help="generation-1 size in MiB (default 1024)")
    parser.add_argument("--generation", type=int, choices=(1, 2), default=1)
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    if args.generation == 1:
        summary = generate(args.out_dir, args.size_mib, args.seed)
        detail = ""
    else:
        edited, deleted, summary = apply_generation2(args.out_dir, args.seed)
        detail = f" (edited {edited} files, appended to the dump, added files, deleted {deleted} small files)"
    elapsed = time.perf_counter() - started
    print(f"generation {args.generation}: {summary} in {args.out_dir}{detail}, {elapsed:.1f} s")


if __name__ == "__main__":
    main()
