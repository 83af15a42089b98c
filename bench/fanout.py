#!/usr/bin/env python3
"""Backup to three targets at once against backup to one, and against restic's backup + `restic copy`.

The issue's target: backing up to three targets costs at most 1.2x the wall time of backing
up to one, because the chunking, compression and encryption are done once and only the
writes are repeated.  In each run, on the same generated data and each into fresh
repositories, the contenders take turns (the order rotates from run to run):

- coldvault backup to one local-directory target;
- coldvault backup to three local-directory targets (min_targets at its default: all);
- restic: `backup` into a first repository, then `copy` from it into a second and a third,
  both made with `init --from-repo FIRST --copy-chunker-params` so that copies deduplicate.
  Reported as the backup alone, the two copies, and backup + copies.

Only the backup (and copy) commands are timed; `init` runs outside the timing.  Wall time,
CPU time and peak RSS of each command come from bench/run.py's launcher (`sync` before
each).  With --s3 the coldvault targets are buckets on one moto server instead (1 bucket
against 3), and so are restic's repositories, and the table adds the CPU the server spent
during each command (it runs on the same cores).  Prints medians and the ratios, with the
load average before and after (other work on the machine inflates wall times), and writes
every figure to WORK/results.json; the generated data is deleted at the end unless --keep.

    .venv/bin/python bench/fanout.py                  # 256 MiB, 3 runs, local directories
    .venv/bin/python bench/fanout.py --s3 --runs 5
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import gen_tree
from run import (
    MIB,
    PASSPHRASE,
    SEED,
    VENV_BIN,
    Measurement,
    RunFailed,
    command_output,
    cpu_model,
    fresh_dir,
    measure,
    memory_gib,
    run_command,
    tree_bytes,
)

TARGET_RATIO = 1.2  # coldvault to three targets ÷ to one, wall time
FANOUT = 3
ROWS = {
    "cv1": "coldvault backup, 1 target",
    "cv3": f"coldvault backup, {FANOUT} targets",
    "restic_backup": "restic backup, 1 repository",
    "restic_copies": f"restic copy to {FANOUT - 1} more (both copies)",
    "restic_total": f"restic backup + {FANOUT - 1} copies",
}
REGION = "eu-west-1"


def quote(value) -> str:
    return json.dumps(str(value))  # a JSON string is also a valid TOML basic string


@dataclass
class Timed(Measurement):
    server_cpu_s: float | None = None  # the moto server's CPU during the command (--s3 only)


class Place:
    """Where one run's repositories live: local directories, or buckets on a moto server."""

    def __init__(self, run_dir: Path, moto=None):
        self.run_dir = run_dir
        self.moto = moto

    def coldvault_target(self, name: str) -> str:
        if self.moto is None:
            return f'[[targets]]\nname = {quote(name)}\ntype = "local"\npath = {quote(self.run_dir / name)}\n'
        from cloud import make_bucket  # boto3 and moto are needed only with --s3

        bucket = make_bucket(self.moto.endpoint)  # Object Lock on, as coldvault expects by default
        return (
            f'[[targets]]\nname = {quote(name)}\ntype = "s3"\nbucket = "{bucket}"\nregion = "{REGION}"\n'
            f'endpoint = "{self.moto.endpoint}"\nlock = {{ mode = "compliance", days = 1 }}\n'
        )

    def restic_repo(self, name: str) -> str:
        if self.moto is None:
            return str(self.run_dir / name)
        import boto3

        bucket = f"bench-{os.urandom(8).hex()}"
        boto3.client("s3", endpoint_url=self.moto.endpoint, region_name=REGION).create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        return f"s3:{self.moto.endpoint}/{bucket}"

    def server_cpu_s(self) -> float | None:
        """CPU seconds the moto server has used so far (it shares this machine's cores)."""
        if self.moto is None:
            return None
        fields = Path(f"/proc/{self.moto.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def measure(self, command, *, env, log_base: Path, size: int) -> "Timed":
        before = self.server_cpu_s()
        m = measure(command, env=env, log_base=log_base, size_bytes=size)
        server = None if before is None else self.server_cpu_s() - before
        return Timed(m.wall_s, m.cpu_s, m.peak_rss_mib, m.bytes, server)

    def stored_bytes(self, names: list[str]) -> int | None:
        """Bytes in all the named repositories (local only)."""
        if self.moto is not None:
            return None
        return sum(tree_bytes(self.run_dir / name) for name in names)


def local_listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def coldvault_backup(place: Place, data: Path, targets: int, *, env, logs: Path, label: str, size: int):
    names = [f"{label}-target{i + 1}" for i in range(targets)]
    config = place.run_dir / f"{label}.toml"
    config.write_text(
        f"[repository]\nstate_dir = {quote(place.run_dir / f'{label}-state')}\n\n"
        + "\n".join(place.coldvault_target(name) for name in names)
        + f'\n[[sources]]\nname = "bench"\npaths = [{quote(data)}]\n'
    )
    cli = [VENV_BIN / "coldvault", "--config", config]
    run_command([*cli, "init"], env=env, log_base=logs / f"{label}-init")
    result = place.measure([*cli, "backup", "--quiet"], env=env, log_base=logs / f"{label}-backup", size=size)
    if place.moto is None and targets > 1:
        # Every target must hold the whole repository, or the comparison means nothing.
        listings = [local_listing(place.run_dir / name) for name in names]
        if any(listing != listings[0] for listing in listings[1:]):
            raise RunFailed(f"{label}: the {targets} targets do not hold the same objects")
    return result, place.stored_bytes(names)


def combined(steps: list[Timed], size: int) -> Timed:
    """Commands run one after the other: times add up, peak RSS is the largest."""
    server = [m.server_cpu_s for m in steps if m.server_cpu_s is not None]
    return Timed(
        sum(m.wall_s for m in steps),
        sum(m.cpu_s for m in steps),
        max(m.peak_rss_mib for m in steps),
        size,
        sum(server) if server else None,
    )


def restic_backup_and_copies(place: Place, data: Path, *, logs: Path, size: int):
    repos = [place.restic_repo(f"restic-repo{i + 1}") for i in range(FANOUT)]
    env = {
        **os.environ,
        "RESTIC_PASSWORD": PASSPHRASE,
        "RESTIC_FROM_PASSWORD": PASSPHRASE,
        "RESTIC_CACHE_DIR": str(place.run_dir / "restic-cache"),
    }
    first = repos[0]
    # Format 2 is the one with compression (the default since restic 0.14).
    run_command(["restic", "-r", first, "init", "--repository-version", "2"], env=env, log_base=logs / "restic-init1")
    for i, repo in enumerate(repos[1:], start=2):
        init = ["restic", "-r", repo, "init", "--repository-version", "2", "--from-repo", first]
        run_command([*init, "--copy-chunker-params"], env=env, log_base=logs / f"restic-init{i}")
    backup = place.measure(
        ["restic", "-r", first, "backup", "--compression", "auto", "--quiet", str(data)],
        env=env,
        log_base=logs / "restic-backup",
        size=size,
    )
    copies = [
        place.measure(
            ["restic", "-r", repo, "copy", "--from-repo", first, "--quiet"],
            env=env,
            log_base=logs / f"restic-copy{i}",
            size=size,
        )
        for i, repo in enumerate(repos[1:], start=2)
    ]
    both, total = combined(copies, size), combined([backup, *copies], size)
    stored = place.stored_bytes([f"restic-repo{i + 1}" for i in range(FANOUT)])
    return backup, both, total, stored


def one_run(index: int, work: Path, data: Path, size: int, moto, with_restic: bool, results: dict) -> None:
    run_dir = fresh_dir(work / f"run{index}")
    logs = fresh_dir(work / "logs" / f"run{index}")
    place = Place(run_dir, moto)
    env = {**os.environ, "COLDVAULT_PASSPHRASE": PASSPHRASE}

    def cv(targets: int) -> None:
        label = f"cv{targets}"
        result, stored = coldvault_backup(place, data, targets, env=env, logs=logs, label=label, size=size)
        results[label].append(as_figures(result) | {"stored_bytes": stored})

    def restic() -> None:
        backup, copies, total, stored = restic_backup_and_copies(place, data, logs=logs, size=size)
        results["restic_backup"].append(as_figures(backup) | {"stored_bytes": None})
        results["restic_copies"].append(as_figures(copies) | {"stored_bytes": None})
        results["restic_total"].append(as_figures(total) | {"stored_bytes": stored})

    contenders = [lambda: cv(1), lambda: cv(FANOUT)] + ([restic] if with_restic else [])
    shift = index % len(contenders)  # rotate, so that drift of the machine spreads over all alike
    for contender in contenders[shift:] + contenders[:shift]:
        contender()
    line = ", ".join(f"{key} {figures[-1]['wall_s']:.2f} s" for key, figures in results.items() if figures)
    print(f"run {index + 1}: {line}", flush=True)
    shutil.rmtree(run_dir)  # the next run starts from fresh repositories; logs stay


def as_figures(m: Timed) -> dict:
    return asdict(m) | {"mb_per_s": m.mb_per_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256, help="size of the generated data (default 256)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported (default 3)")
    parser.add_argument("--s3", action="store_true", help="buckets on one moto server instead of local directories")
    parser.add_argument("--work", type=Path, help="working directory (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data at the end")
    args = parser.parse_args()
    if args.runs < 1 or args.size_mib < 1:
        parser.error("--runs and --size-mib must be at least 1")

    # Data and repositories share one directory, hence one filesystem.
    work = fresh_dir(args.work.resolve()) if args.work else Path(tempfile.mkdtemp(prefix="coldvault-fanout-"))
    data = work / "data"
    print(f"generating {args.size_mib} MiB (seed {SEED}) in {data} ...", flush=True)
    size = gen_tree.generate(data, args.size_mib, SEED).bytes
    restic_version = command_output(["restic", "version"])
    if restic_version is None:
        print("skipping restic: `restic` not found on PATH (install with: apt-get install restic)")
    coldvault_version = command_output([str(VENV_BIN / "coldvault"), "--version"])
    memory = memory_gib()
    machine = {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu_model(),
        "memory_gib": round(memory, 1) if memory else None,
        "python": platform.python_version(),
        "coldvault": coldvault_version,
        "restic": restic_version.split(" compiled")[0] if restic_version else None,
        "loadavg_before": os.getloadavg()[0],  # other work on the machine shows up in wall times
    }

    results: dict[str, list] = {key: [] for key in ROWS}
    if args.s3:
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION=REGION)
        from coldvault import emulators

        server = emulators.running(emulators.moto())
    else:
        server = nullcontext()
    failed = False
    with server as moto:
        for index in range(args.runs):
            try:
                one_run(index, work, data, size, moto, restic_version is not None, results)
            except RunFailed as failure:
                failed = True
                print(f"run {index + 1} FAILED: {failure}", file=sys.stderr, flush=True)
    machine["loadavg_after"] = os.getloadavg()[0]
    if not args.keep:
        shutil.rmtree(data)

    def median(key: str, figure: str) -> float | None:
        values = [m[figure] for m in results[key] if m.get(figure) is not None]
        return statistics.median(values) if values else None

    where = "buckets on one moto server" if args.s3 else "local directories"
    print(
        f"\nmachine: nproc {machine['nproc']}, {machine['cpu']}, {machine['memory_gib']} GiB RAM, "
        f"Python {machine['python']}; {machine['coldvault']}; {machine['restic'] or 'no restic'}; "
        f"1-minute load average {machine['loadavg_before']:.1f} before, {machine['loadavg_after']:.1f} after"
    )
    complete = len(results["cv3"])
    print(f"{size / MIB:.0f} MiB of gen_tree data (seed {SEED}), {where}; medians of {complete}/{args.runs} runs\n")
    # Local: what all the repositories hold; S3: the CPU the moto server spent meanwhile.
    last, last_scale, last_format = ("server CPU s", 1, "13.1f") if args.s3 else ("stored MiB", MIB, "13.0f")
    last_key = "server_cpu_s" if args.s3 else "stored_bytes"
    print(f"{'(client figures)':40}{'wall s':>8}{'MB/s':>8}{'CPU s':>8}{'RSS MiB':>9}{last:>13}")
    for key, title in ROWS.items():
        if not results[key]:
            continue
        value = median(key, last_key)
        last_cell = f"{value / last_scale:{last_format}}" if value is not None else f"{'':>13}"
        print(
            f"{title:40}{median(key, 'wall_s'):8.2f}{median(key, 'mb_per_s'):8.0f}"
            f"{median(key, 'cpu_s'):8.1f}{median(key, 'peak_rss_mib'):9.0f}{last_cell}"
        )

    ratios = {}
    if results["cv1"] and results["cv3"]:
        ratios["coldvault 3 targets ÷ 1 target"] = median("cv3", "wall_s") / median("cv1", "wall_s")
    if results["restic_backup"]:
        restic_backup = median("restic_backup", "wall_s")
        ratios["restic backup + 2 copies ÷ backup"] = median("restic_total", "wall_s") / restic_backup
        if results["cv3"]:
            ratios["coldvault 3 targets ÷ restic backup + 2 copies"] = median("cv3", "wall_s") / median(
                "restic_total", "wall_s"
            )
        if results["cv1"]:
            ratios["coldvault 1 target ÷ restic backup"] = median("cv1", "wall_s") / restic_backup
    print("\nwall-time ratios (of medians):")
    for name, ratio in ratios.items():
        note = ""
        if name.startswith("coldvault 3 targets ÷ 1"):
            note = f"  (target ≤ {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'not met'})"
        print(f"  {name:48}{ratio:6.2f}×{note}")

    (work / "results.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "settings": {"size_mib": args.size_mib, "runs": args.runs, "seed": SEED, "s3": args.s3},
                "size_bytes": size,
                "ratios": ratios,
                "runs": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nlogs and results.json in {work}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
