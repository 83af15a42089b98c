#!/usr/bin/env python3
"""How long a drill of an S3 target (moto server) takes when it reads every pack whole.

The tree from gen_tree.py is backed up once to a bucket with Object Lock; then each drill runs
with `coverage_days = 1` and a state directory of its own, so that each is a first drill and
its rotation is every pack of the target.  `part_size` is above the pack size: moto drops the
lock given to a multipart upload (OPERATIONS.md), and the drill would fail on it.

`--src` compares checkouts: each drill runs once with every `src` directory given, taking
turns, and the medians are reported per checkout.

    .venv/bin/python bench/drill.py --size-mib 1024 --repeat 3 --src /tmp/old/src,src
"""

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

from cloud import REGION, fresh_tree, make_bucket
from run import PASSPHRASE, VENV_BIN, measure

from coldvault import emulators


def write_config(path: Path, *, state: Path, data: Path, endpoint: str, bucket: str) -> Path:
    path.write_text(
        f"""
[repository]
state_dir = "{state}"

[[targets]]
name = "moto"
type = "s3"
bucket = "{bucket}"
region = "{REGION}"
endpoint = "{endpoint}"
part_size = "64MiB"
lock = {{ mode = "compliance", days = 1 }}

[[sources]]
name = "bench"
paths = ["{data}"]

[drills]
coverage_days = 1
"""
    )
    return path


def target_figures(state: Path) -> dict:
    """The drilled target's figures from the report the drill just wrote."""
    (report,) = sorted((state / "reports").glob("*.json"))
    body = json.loads(report.read_text())["body"]
    (target,) = body["targets"]
    assert target["verdict"] == "pass", target["errors"]
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--src", default="src", help="comma-separated src directories to take turns")
    parser.add_argument("--work", type=Path, default=Path("bench/out/drill"))
    args = parser.parse_args()

    work = args.work.resolve()
    data = fresh_tree(work, args.size_mib)
    trees = [Path(s).resolve() for s in args.src.split(",")]
    results: dict[str, list[dict]] = {str(tree): [] for tree in trees}
    with emulators.running(emulators.moto()) as moto:
        bucket = make_bucket(moto.endpoint)

        def run(step: str, tree: Path, name: str) -> tuple[float, Path]:
            state = work / "state" / name
            config = write_config(work / f"{name}.toml", state=state, data=data, endpoint=moto.endpoint, bucket=bucket)
            env = {**os.environ, "COLDVAULT_PASSPHRASE": PASSPHRASE, "PYTHONPATH": str(tree)}
            command = [VENV_BIN / "python", "-m", "coldvault", "--config", config, "--quiet", step]
            return measure(command, env=env, log_base=work / name, size_bytes=0).wall_s, state

        for step in ("init", "backup"):
            run(step, trees[-1], step)
        for i in range(args.repeat):
            for number, tree in enumerate(trees):
                wall, state = run("drill", tree, f"drill-{i}-{number}")
                target = target_figures(state)
                results[str(tree)].append({"command_s": wall, **target})
                print(f"run {i + 1}, {tree}: drill {wall:.2f} s, target {target['duration_s']:.2f} s")

    print(f"{args.size_mib} MiB tree, every pack read whole, {args.repeat} drills each, moto server")
    print(f"{'src':40}{'target s':>10}{'MB/s':>8}{'command s':>11}")
    for tree, runs in results.items():
        target_s = statistics.median(r["duration_s"] for r in runs)
        mb_s = statistics.median(r["throughput_bytes_per_s"] for r in runs) / 1e6
        command_s = statistics.median(r["command_s"] for r in runs)
        print(f"{tree:40}{target_s:10.2f}{mb_s:8.0f}{command_s:11.2f}")
    (work / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
