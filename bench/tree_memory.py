"""Peak memory of a command and every process it starts, together.

bench/run.py reports a command's peak RSS as Linux's wait4 gives it: the largest of the process and
its descendants, not their sum.  A restore that forks its large files' lane (engine/forked.py) runs
two processes at once, which share most pages until either writes them; this samples the whole
tree's resident memory (RSS, which counts a shared page in each process) and its proportional
set size (PSS, which splits a shared page between its processes: the memory they really take).

    .venv/bin/python bench/tree_memory.py -- .venv/bin/python -m coldvault --config C restore latest DEST

Prints the peak sums and how many processes ran at once; the command's exit code is the script's.
Sampling every --interval seconds misses peaks shorter than that.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, from /proc (children files need Linux 3.5+)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as children:
                todo.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; zeros once it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            fields = dict(line.split(":", 1) for line in rollup if ":" in line and not line.startswith("0"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0, 0
    kib = {name: int(value.split()[0]) for name, value in fields.items() if value.strip().endswith("kB")}
    return kib.get("Rss", 0), kib.get("Pss", 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between samples (default 0.01)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    process = subprocess.Popen(command)
    peak_rss = peak_pss = most = 0
    while process.poll() is None:
        pids = descendants(process.pid)
        samples = [memory_kib(pid) for pid in pids]
        peak_rss = max(peak_rss, sum(rss for rss, _ in samples))
        peak_pss = max(peak_pss, sum(pss for _, pss in samples))
        most = max(most, sum(1 for rss, _ in samples if rss))
        time.sleep(args.interval)
    print(
        f"peak of the process tree: RSS {peak_rss / 1024:.1f} MiB, PSS {peak_pss / 1024:.1f} MiB;"
        f" at most {most} processes at once",
        file=sys.stderr,
    )
    return process.returncode


if __name__ == "__main__":
    sys.exit(main())
