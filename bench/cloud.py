#!/usr/bin/env python3
"""Backup throughput to an S3 emulator (moto server) against a plain boto3 upload of the same bytes.

Two plain baselines, both with plain boto3 and the same number of uploads in flight:
"plain files" uploads the source tree file by file; "plain packs" uploads the objects of
a coldvault repository made beforehand on local disk, i.e. the very bytes coldvault sends,
so the ratio against it is coldvault's whole overhead (chunking, compression, encryption,
locking) over the network path.  All run against the same moto server, taking turns, each
into a fresh bucket with Object Lock.  Reports medians of MB/s (source bytes per second),
CPU seconds and peak RSS, the ratios (target ≥ 0.8), and peak RSS against pack size ×
uploads in flight.
"""

import argparse
import json
import os
import statistics
import sys
import uuid
from pathlib import Path

import gen_tree
from run import MIB, PASSPHRASE, SEED, VENV_BIN, fresh_dir, measure, tree_bytes

from coldvault import emulators

REGION = "eu-west-1"
PACK_SIZE_MIB = 32  # the default


def make_bucket(endpoint: str) -> str:
    """A new bucket with Object Lock on, as coldvault expects by default; returns its name."""
    name = f"bench-{uuid.uuid4().hex[:16]}"
    emulators.create_s3_bucket(endpoint, name, REGION)
    return name


def fresh_tree(work: Path, size_mib: int) -> Path:
    """Empty ``work``, generate the bench tree in ``work/data`` and give moto the credentials it takes
    (any); returns the tree."""
    fresh_dir(work)
    data = work / "data"
    gen_tree.generate(data, size_mib, SEED)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    return data


def coldvault_config(work: Path, data: Path, endpoint: str, bucket: str, in_flight: int) -> Path:
    config = work / f"{bucket}.toml"
    config.write_text(
        f"""
[repository]
state_dir = "{work / "state" / bucket}"

[[targets]]
name = "moto"
type = "s3"
bucket = "{bucket}"
region = "{REGION}"
endpoint = "{endpoint}"
max_in_flight = {in_flight}
lock = {{ mode = "compliance", days = 1 }}

[[sources]]
name = "bench"
paths = ["{data}"]
"""
    )
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--work", type=Path, default=Path("bench/out/cloud"))
    args = parser.parse_args()

    work = args.work.resolve()
    data = fresh_tree(work, args.size_mib)
    size = tree_bytes(data)
    env = {**os.environ, "COLDVAULT_PASSPHRASE": PASSPHRASE}
    packs = work / "local-repo"
    local_config = work / "local.toml"
    local_config.write_text(
        f'[repository]\nstate_dir = "{work / "state" / "local"}"\n[[targets]]\nname = "disk"\ntype = "local"\n'
        f'path = "{packs}"\n[[sources]]\nname = "bench"\npaths = ["{data}"]\n'
    )
    for step in ("init", "backup"):
        measure([VENV_BIN / "coldvault", "--config", local_config, step], env=env, log_base=work / step, size_bytes=0)

    results: dict[str, list] = {"plain files": [], "plain packs": [], "coldvault": []}
    with emulators.running(emulators.moto()) as moto:
        for i in range(args.repeat):
            for baseline, root in (("plain files", data), ("plain packs", packs)):
                plain = [VENV_BIN / "python", Path(__file__).parent / "plain_s3_upload.py", root]
                plain += ["--endpoint", moto.endpoint, "--bucket", make_bucket(moto.endpoint)]
                plain += ["--in-flight", str(args.in_flight)]
                log = work / f"{baseline.replace(' ', '-')}-{i}"
                results[baseline].append(measure(plain, env=env, log_base=log, size_bytes=size))

            bucket = make_bucket(moto.endpoint)
            config = coldvault_config(work, data, moto.endpoint, bucket, args.in_flight)
            cli = [VENV_BIN / "coldvault", "--config", config]
            measure([*cli, "init"], env=env, log_base=work / f"init-{i}", size_bytes=0)
            results["coldvault"].append(
                measure([*cli, "backup", "--quiet"], env=env, log_base=work / f"coldvault-{i}", size_bytes=size)
            )
            print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1].mb_per_s:.0f} MB/s" for k, v in results.items()))

    def median(tool: str, field: str) -> float:
        return statistics.median(getattr(m, field) for m in results[tool])

    print(f"{size / MIB:.0f} MiB in {args.repeat} runs each, {args.in_flight} uploads in flight, moto server")
    print(f"{'':14}{'MB/s':>8}{'CPU s':>8}{'RSS MiB':>10}")
    for tool in results:
        print(
            f"{tool:14}{median(tool, 'mb_per_s'):8.0f}{median(tool, 'cpu_s'):8.1f}{median(tool, 'peak_rss_mib'):10.0f}"
        )
    ratios = {k: median("coldvault", "mb_per_s") / median(k, "mb_per_s") for k in ("plain files", "plain packs")}
    for baseline, ratio in ratios.items():
        print(f"coldvault ÷ {baseline}: {ratio:.2f} (target ≥ 0.8: {'met' if ratio >= 0.8 else 'not met'})")
    print(f"pack size × uploads in flight: {PACK_SIZE_MIB * args.in_flight} MiB")
    doc = {k: [vars(m) for m in v] for k, v in results.items()}
    (work / "results.json").write_text(json.dumps({"size_bytes": size, "ratios": ratios, "runs": doc}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
