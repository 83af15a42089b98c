#!/usr/bin/env python3
"""Retention: daily changes, forget all but the last few snapshots, prune; coldvault against restic.

Each tool gets the same generation-1 tree (gen_tree.py) and backs it up once a "day" for
--days days; each day first edits about --churn of the tree's bytes in place (a few spots per
file, as databases and logs change) and appends rows to the dump.  Then each tool forgets all
but the last --keep snapshots and prunes: coldvault with each --repack-unused setting (1 = no
repacking), restic with its defaults (repacks when more than 5% of the repository is unused).
Reported, medians over --repeat: the repository's size before and after prune, prune's wall
time, CPU time and peak RSS, what coldvault repacked, and the size after prune against
restic's.  A check that reads all data must pass after each prune.

coldvault never deletes an object younger than prune.safety_margin (60 s at least), so the
script waits that long after coldvault's last backup before its prune; the wait is not timed.
"""

import argparse
import json
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

import gen_tree
from run import BENCH_DIR, MIB, Coldvault, Restic, RunFailed, fresh_dir, measure, run_command, tree_bytes

SEED = 42
SAFETY_MARGIN_S = 60  # the least prune.safety_margin allows


class RetentionColdvault(Coldvault):
    """coldvault keeping the last ``keep`` snapshots, repacking at ``repack_unused``."""

    def __init__(self, work, data_dir, *, keep, repack_unused):
        super().__init__(work, data_dir)
        self.name = f"coldvault(repack_unused={repack_unused:g})"
        self.keep = keep
        self.repack_unused = repack_unused

    def _config_text(self):
        return (
            super()._config_text()
            + f"keep_last = {self.keep}\n\n[prune]\nsafety_margin = {SAFETY_MARGIN_S}\n"
            + f"repack_unused = {self.repack_unused}\n"
        )

    def forget_command(self):
        return self._base() + ["forget"]

    def prune_command(self):
        return self._base() + ["prune", "--json"]


class RetentionRestic(Restic):
    def __init__(self, work, data_dir, *, keep):
        super().__init__(work, data_dir)
        self.keep = keep

    def forget_command(self):
        return self._base() + ["forget", "--keep-last", str(self.keep)]

    def prune_command(self):
        return self._base() + ["prune"]


def churn(root, day, share):
    """Edit about ``share`` of the tree's bytes in place and append to the dump, deterministically."""
    rng = random.Random(f"coldvault-bench:{SEED}:retention-day-{day}")
    content = gen_tree.Content(rng)
    total = gen_tree.tree_summary(root).bytes
    gen_tree.edit_files_in_place(root, content, rng, int(total * share))
    gen_tree.append_to_dump(root, content, int(total * share / 4))


def run_tool(tool, args, rep, logs):
    """One tool's days, forget and prune; its figures."""
    shutil.rmtree(tool.data_dir, ignore_errors=True)
    gen_tree.generate(tool.data_dir, args.size_mib, SEED)
    tool.prepare()
    env = tool.env()
    slug = "".join(c if c.isalnum() else "-" for c in tool.name)

    def log_base(step):
        return logs / f"rep{rep}-{slug}-{step}"

    run_command(tool.init_command(), env=env, log_base=log_base("init"))
    for day in range(args.days):
        if day:
            churn(tool.data_dir, day, args.churn)
        run_command(tool.backup_command(f"day{day}"), env=env, log_base=log_base(f"backup{day}"))
    last_backup = time.monotonic()
    run_command(tool.forget_command(), env=env, log_base=log_base("forget"))
    before = tree_bytes(tool.repo)
    if isinstance(tool, Coldvault):
        time.sleep(max(0.0, SAFETY_MARGIN_S + 1 - (time.monotonic() - last_backup)))
    prune = measure(tool.prune_command(), env=env, log_base=log_base("prune"), size_bytes=before)
    after = tree_bytes(tool.repo)
    check = measure(tool.check_command(), env=env, log_base=log_base("check"), size_bytes=after)
    figures = {
        "before_mib": before / MIB,
        "after_mib": after / MIB,
        "prune_s": prune.wall_s,
        "prune_cpu_s": prune.cpu_s,
        "prune_rss_mib": prune.peak_rss_mib,
        "check_s": check.wall_s,
    }
    if isinstance(tool, Coldvault):
        result = json.loads(log_base("prune").with_suffix(".out").read_text())
        figures |= {
            "repacked_packs": result["repacked"],
            "repacked_mib": result["repack_bytes"] / MIB,
            "deleted_mib": result["deleted_bytes"] / MIB,
        }
    print(
        f"  before {before / MIB:8.1f} MiB  after {after / MIB:8.1f} MiB  prune {prune.wall_s:6.2f} s"
        f" {prune.cpu_s:6.2f} CPU s {prune.peak_rss_mib:6.1f} MiB RSS  check --read-data ok",
        flush=True,
    )
    return figures


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=128, help="generation-1 data size (default 128)")
    parser.add_argument("--days", type=int, default=10, help="daily backups (default 10)")
    parser.add_argument("--keep", type=int, default=3, help="snapshots kept (default 3)")
    parser.add_argument("--churn", type=float, default=0.05, help="share of bytes edited per day (default 0.05)")
    parser.add_argument("--repack-unused", default="1,0.5", help="coldvault settings to compare (default 1,0.5)")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions; medians are reported (default 1)")
    parser.add_argument("--work", type=Path, default=BENCH_DIR / "out" / "retention", help="working directory")
    parser.add_argument("--no-restic", action="store_true", help="leave restic out")
    args = parser.parse_args(argv)
    args.repack_unused = [float(v) for v in args.repack_unused.split(",") if v.strip()]
    if args.days < 2 or not 1 <= args.keep < args.days or args.repeat < 1:
        parser.error("need --days ≥ 2, 1 ≤ --keep < --days and --repeat ≥ 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    work = args.work.resolve()
    logs = fresh_dir(work / "logs")
    data = work / "data"
    tools = [RetentionColdvault(work, data, keep=args.keep, repack_unused=r) for r in args.repack_unused]
    if not args.no_restic:
        restic = RetentionRestic(work, data, keep=args.keep)
        reason = restic.unavailable_reason()
        if reason:
            print(f"skipping restic: {reason}")
        else:
            tools.append(restic)
    print(
        f"{args.size_mib} MiB tree, {args.days} daily backups with {args.churn:.0%} of the bytes edited each day,"
        f" keep the last {args.keep}, then prune; median of {args.repeat}"
    )
    runs: dict[str, list[dict]] = {tool.name: [] for tool in tools}
    for rep in range(1, args.repeat + 1):
        for tool in tools:  # taking turns, so drifts of the machine spread over all tools
            print(f"\n[repetition {rep}/{args.repeat}] {tool.name}", flush=True)
            try:
                runs[tool.name].append(run_tool(tool, args, rep, logs))
            except RunFailed as failure:
                print(f"!!! {tool.name} failed: {failure}", file=sys.stderr)
                return 1
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    restic_after = medians.get("restic", {}).get("after_mib")
    print(f"\n{'tool':<28} {'before':>9} {'after':>9} {'vs restic':>9} {'prune s':>8} {'CPU s':>7} {'RSS MiB':>8}"
          f" {'repacked':>14}")  # fmt: skip
    for name, m in medians.items():
        ratio = f"{m['after_mib'] / restic_after:.2f}×" if restic_after else "-"
        repacked = f"{m['repacked_packs']:.0f} / {m['repacked_mib']:.1f} MiB" if "repacked_packs" in m else "-"
        print(
            f"{name:<28} {m['before_mib']:8.1f}M {m['after_mib']:8.1f}M {ratio:>9} {m['prune_s']:8.2f}"
            f" {m['prune_cpu_s']:7.2f} {m['prune_rss_mib']:8.1f} {repacked:>14}"
        )
    (work / "results.json").write_text(json.dumps({"settings": vars(args) | {"work": str(work)}, "runs": runs,
                                                   "medians": medians}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
