"""coldvault prune through the real CLI on two local targets: killed at random points, racing
backups from two hosts, refusing without every target, and its dry run and JSON shape.

Local targets have no locks, and a local object's creation time is its file's mtime, so garbage
is made "old enough" by setting every file's mtime back a few days instead of waiting out the
safety margin.  That also ages the session markers earlier backups wrote, so they count as
finished backups rather than running ones.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import CLI, PASSPHRASE
from test_replication_cli import Outage, config

from coldvault.config import Secret
from coldvault.engine.lease import LEASE
from coldvault.engine.locks import References
from coldvault.repo.repository import Repository
from coldvault.storage.handle import Kind
from coldvault.storage.local import LocalStore

SEED = 20261125
KILLS = 6
TARGETS = ("near", "far")
# repack_unused this low repacks every pack that mixes forgotten data with retained data (the
# stable file with the first versions of the changing one): every prune here also repacks.
PRUNE = "[prune]\nsafety_margin = 60\nrepack_unused = 0.05\n"
JSON_KEYS = {
    "dry_run", "retained", "forgotten", "garbage", "kept_locked", "kept_in_use", "index_written", "superseded",
    "reindexed", "completed", "repacked", "repack_written", "repack_bytes", "repack_locked", "repack_archived",
    "repack_deferred", "repack_damaged", "deleted", "deleted_bytes",
}  # fmt: skip

Contents = dict[str, bytes]


def prune_config(root: Path, *, keep_last: int, state: Path | None = None) -> str:
    text = config(root) + f"keep_last = {keep_last}\n" + PRUNE
    if state is not None:
        text = text.replace(f'state_dir = "{root}/state"', f'state_dir = "{state}"')
    return text


def env_of(tool: CLI) -> dict[str, str]:
    """The environment CLI.__call__ builds, for processes started with Popen."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDVAULT_")}
    env["XDG_STATE_HOME"] = str(tool.root / "state")
    env["COLDVAULT_PASSPHRASE"] = PASSPHRASE
    return env


def start(tool: CLI, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "coldvault", "--config", str(tool.config), *args],
        env=env_of(tool),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def age(root: Path, days: float = 3) -> None:
    """Every object on both targets as if stored ``days`` ago: past the margin, sessions finished."""
    then = time.time() - days * 86400
    for target in TARGETS:
        for path in (root / target).rglob("*"):
            if path.is_file():
                os.utime(path, (then, then))


def packs(root: Path) -> set[str]:
    folders = [root / kind.value for kind in (Kind.DATA, Kind.TREE)]
    return {p.name for folder in folders for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


def stored(root: Path) -> dict[str, set[str]]:
    """The files and folders on each target."""
    return {t: {p.relative_to(root).as_posix() for p in (root / t).rglob("*")} for t in TARGETS}


def read_tree(folder: Path) -> Contents:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def backup(tool: CLI, data: Path) -> dict[str, Contents]:
    """One backup; its snapshot ids and what each must restore to."""
    contents = read_tree(data)
    done = tool("backup", "--json")
    assert done.returncode == 0, done.stderr
    return {doc["id"]: contents for doc in json.loads(done.stdout)}


def forget(tool: CLI) -> set[str]:
    done = tool("forget", "--json")
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout)["forgotten"])


def assert_restores(tool: CLI, tmp: Path, data: Path, expected: dict[str, Contents], *targets: str) -> None:
    for target in targets:
        for snapshot, contents in expected.items():
            dest = tmp / f"restore-{target}-{snapshot[:12]}"
            shutil.rmtree(dest, ignore_errors=True)
            done = tool("restore", snapshot, str(dest), "--target", target)
            assert done.returncode == 0, (target, snapshot, done.stderr)
            assert read_tree(dest / str(data).lstrip("/")) == contents, (target, snapshot)
            shutil.rmtree(dest)


def assert_checks(tool: CLI, context: str = "") -> None:
    for target in TARGETS:
        done = tool("check", "--read-data", "--target", target)
        assert done.returncode == 0, (context, target, done.stdout, done.stderr)


def needed_packs(root: Path, target: str) -> set[str]:
    repo = Repository.open(LocalStore(root / target), passphrase=Secret(PASSPHRASE.encode()))
    references = References(repo)
    return {h.name for s in repo.snapshots() for h in references.packs(s)}


def change(data: Path, rng: random.Random, n: int) -> None:
    (data / "changing.bin").write_bytes(rng.randbytes(rng.randrange(200_000, 700_000)) + bytes([n % 256]))


def with_a_pack_to_repack(tool: CLI, root: Path) -> None:
    """Make sure make_garbage leaves a pack to repack.  With one worker, chunks are packed in the
    order of the walk: a small file walked first shares the first pack with the first, forgotten,
    version of changing.bin."""
    tool.write_config(prune_config(root, keep_last=2).replace("[repository]\n", "[repository]\nworkers = 1\n", 1))
    (root / "data" / "a-small-file").write_bytes(random.Random(SEED).randbytes(2_000))


def make_garbage(tool: CLI, root: Path, rng: random.Random) -> tuple[dict[str, Contents], set[str]]:
    """Four backups of changing data, the older two forgotten, every stored file aged: unreferenced
    packs old enough for prune.  Returns what each backup holds, and the forgotten snapshots."""
    expected: dict[str, Contents] = {}
    for n in range(4):
        change(root / "data", rng, n)
        expected |= backup(tool, root / "data")
    forgotten = forget(tool)
    age(root)
    return expected, forgotten


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    data = tmp_path / "data"
    data.mkdir()
    (data / "stable.bin").write_bytes(os.urandom(300_000))
    tool = CLI(tmp_path)
    tool.write_config(prune_config(tmp_path, keep_last=2))
    assert tool("init").returncode == 0
    return tool


def test_a_prune_killed_at_random_points_leaves_a_repository_that_checks(cli: CLI, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    data = tmp_path / "data"
    expected, forgotten = make_garbage(cli, tmp_path, rng)
    assert len(forgotten) == 2
    for snapshot in forgotten:
        del expected[snapshot]
    # One uninterrupted dry run's duration, process start to exit: kills are spread over it.
    started = time.monotonic()
    assert cli("prune", "--dry-run", "-q").returncode == 0
    duration = time.monotonic() - started

    lease_refused = False
    killed = 0
    for trial in range(KILLS):
        prune = start(cli, "prune", "-q")
        delay = rng.uniform(0.05, 1.5) * duration  # a real run also repacks, which a dry run does not
        time.sleep(delay)
        prune.send_signal(signal.SIGKILL)
        code = prune.wait()
        killed += code == -signal.SIGKILL
        assert code in (0, -signal.SIGKILL), (trial, prune.communicate())
        context = f"trial {trial}, killed after {delay:.2f}s"
        assert_checks(cli, context)
        assert_restores(cli, tmp_path, data, expected, TARGETS[trial % 2])

        leases = [t for t in TARGETS if (tmp_path / t / LEASE.path).exists()]
        if leases:
            if not lease_refused:
                refused = cli("prune")
                message = refused.stderr.decode().strip()
                assert refused.returncode == 12, (context, refused.stdout, message)
                assert "\n" not in message and "another prune holds the lease on" in message, message
                assert f"on {leases[0]} " in message
                lease_refused = True
            # A killed prune's lease expires after 30 minutes, and in production the next prune
            # waits it out; the test removes it instead of waiting.
            for target in leases:
                shutil.rmtree(tmp_path / target / Kind.LEASE.value)

        # New garbage for the next trial: one more backup, one more snapshot forgotten.
        change(data, rng, 10 + trial)
        expected |= backup(cli, data)
        for snapshot in forget(cli):
            expected.pop(snapshot, None)
        age(tmp_path)
    assert killed > 0, "every prune finished before it was killed"

    done = cli("prune", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kept_in_use"] == 0
    assert_checks(cli, "after the last prune")
    assert_restores(cli, tmp_path, data, expected, *TARGETS)
    for target in TARGETS:
        assert not (tmp_path / target / LEASE.path).exists()
        assert packs(tmp_path / target) == needed_packs(tmp_path, target), target


def test_two_hosts_back_up_while_a_prune_runs_and_every_snapshot_restores(tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    hosts = []
    for name in ("a", "b"):
        root = tmp_path / f"host-{name}"
        root.mkdir()
        data = root / "data"
        data.mkdir()
        tool = CLI(root)
        text = prune_config(tmp_path, keep_last=3, state=root / "state").replace(f"{tmp_path}/data", str(data))
        tool.write_config(text)
        hosts.append((tool, data))
    (a, data_a), (b, data_b) = hosts
    assert a("init").returncode == 0

    expected: dict[str, tuple[Path, Contents]] = {}
    history: list[Contents] = []

    def write(data: Path, contents: Contents) -> None:
        shutil.rmtree(data)
        data.mkdir()
        for name, body in contents.items():
            (data / name).write_bytes(body)

    def fresh() -> Contents:
        return {f"f{i}.bin": rng.randbytes(rng.randrange(100_000, 400_000)) for i in range(3)}

    for _ in range(4):
        for tool, data in hosts:
            contents = fresh()
            history.append(contents)
            write(data, contents)
            expected |= {s: (data, c) for s, c in backup(tool, data).items()}
    forgotten = forget(a)
    assert forgotten
    for snapshot in forgotten:
        del expected[snapshot]
    age(tmp_path)

    for round in range(3):
        # Host A backs up what a forgotten snapshot held, so it deduplicates against garbage.
        write(data_a, history[round])
        write(data_b, fresh() if round != 1 else history[round + 1])
        wanted = {data_a: read_tree(data_a), data_b: read_tree(data_b)}
        running = [start(a, "backup", "--json"), start(b, "backup", "--json"), start(a, "prune", "--json")]
        results = [(p.wait(timeout=120), *p.communicate()) for p in running]
        for (code, out, err), (_, data) in zip(results[:2], hosts, strict=True):
            assert code == 0, (round, err)
            expected |= {doc["id"]: (data, wanted[data]) for doc in json.loads(out)}
        code, out, err = results[2]
        assert code == 0, (round, err)
        assert JSON_KEYS <= set(json.loads(out))
        assert_checks(a, f"round {round}")
        for snapshot in forget(a):
            expected.pop(snapshot, None)
        age(tmp_path)

    assert a("prune", "-q").returncode == 0
    assert_checks(a, "after the last prune")
    by_data: dict[Path, dict[str, Contents]] = {}
    for snapshot, (data, contents) in expected.items():
        by_data.setdefault(data, {})[snapshot] = contents
    for data, snapshots in by_data.items():
        assert_restores(a, tmp_path, data, snapshots, *TARGETS)


def test_a_prune_killed_while_it_holds_the_lease_makes_the_next_one_wait(cli: CLI, tmp_path: Path) -> None:
    _, forgotten = make_garbage(cli, tmp_path, random.Random(SEED + 5))
    assert forgotten
    lease = tmp_path / "near" / LEASE.path  # not the temporary file it is written through
    for _ in range(20):  # kill it the moment its lease appears; it may finish first, so try again
        prune = start(cli, "prune", "-q")
        while prune.poll() is None and not lease.exists():
            time.sleep(0.001)
        prune.send_signal(signal.SIGKILL)
        if prune.wait() == -signal.SIGKILL and lease.exists():
            break
        age(tmp_path)
    else:
        pytest.fail("no prune was killed while it held the lease")
    assert_checks(cli, "killed holding the lease")

    refused = cli("prune")
    message = refused.stderr.decode().strip()
    assert refused.returncode == 12, (refused.stdout, message)
    assert "\n" not in message and message.startswith("coldvault: another prune holds the lease on near"), message
    # In production the next prune waits the killed one's lease out (30 minutes); the test
    # removes it instead of waiting.
    for target in TARGETS:
        shutil.rmtree(tmp_path / target / Kind.LEASE.value, ignore_errors=True)
    age(tmp_path)
    done = cli("prune", "--json")
    assert done.returncode == 0, done.stderr
    assert_checks(cli, "after the last prune")
    for target in TARGETS:
        assert packs(tmp_path / target) == needed_packs(tmp_path, target), target


@pytest.mark.parametrize("min_targets", [None, 1])
def test_prune_needs_every_target(cli: CLI, tmp_path: Path, min_targets: int | None) -> None:
    """Even where backups may go ahead with one target down (min_targets = 1), prune may not."""
    if min_targets is not None:
        cli.write_config(config(tmp_path, min_targets=min_targets) + "keep_last = 2\n" + PRUNE)
    _, forgotten = make_garbage(cli, tmp_path, random.Random(SEED + 2))
    assert forgotten
    before = {p.relative_to(tmp_path).as_posix() for p in (tmp_path / "near").rglob("*")}
    outage = Outage(tmp_path / "far")
    done = cli("prune")
    message = done.stderr.decode().strip()
    assert done.returncode == 14, (done.stdout, message)
    assert "\n" not in message and message.startswith("coldvault: ") and "far: " in message, message
    if min_targets == 1:
        assert "prune needs every target" in message, message
    assert {p.relative_to(tmp_path).as_posix() for p in (tmp_path / "near").rglob("*")} == before
    outage.end()
    assert cli("prune", "-q").returncode == 0
    assert {p.rsplit("/", 1)[-1] for p in before} - packs(tmp_path / "near"), "no pack was pruned"


def test_a_pack_damaged_everywhere_fails_prune_after_the_rest_is_done(cli: CLI, tmp_path: Path) -> None:
    with_a_pack_to_repack(cli, tmp_path)
    _, forgotten = make_garbage(cli, tmp_path, random.Random(SEED + 5))
    assert forgotten
    for target in TARGETS:  # every data pack on both targets, one byte flipped
        for path in (tmp_path / target / Kind.DATA.value).rglob("*"):
            if path.is_file():
                path.chmod(0o644)
                data = bytearray(path.read_bytes())
                data[len(data) // 2] ^= 1
                path.write_bytes(data)
    age(tmp_path)  # a local target's creation time is the file's mtime, which the rewrite moved
    done = cli("prune", "--json")
    message = done.stderr.decode().strip().splitlines()[-1]
    assert done.returncode == 13, (done.stdout, done.stderr)
    assert message.startswith("coldvault: ") and "could not be repacked, damaged on every target (data/" in message
    assert message.endswith("run 'coldvault check --read-data' and 'coldvault scrub'"), message
    doc = json.loads(done.stdout)  # what was done is still reported
    assert doc["repack_damaged"] and not doc["repack_written"] and doc["deleted_bytes"] > 0


def test_dry_run_deletes_nothing(cli: CLI, tmp_path: Path) -> None:
    _, forgotten = make_garbage(cli, tmp_path, random.Random(SEED + 3))
    assert len(forgotten) == 2
    files = stored(tmp_path)
    dry = cli("prune", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] is True and plan["garbage"] > 0
    assert all(plan["deleted"][t] for t in TARGETS)
    assert stored(tmp_path) == files
    text = cli("prune", "--dry-run")
    assert text.returncode == 0 and "would delete" in text.stdout.decode()
    assert stored(tmp_path) == files

    done = cli("prune", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {t: sorted(result["deleted"][t]) for t in TARGETS} == {t: sorted(plan["deleted"][t]) for t in TARGETS}
    for target in TARGETS:
        for path in result["deleted"][target]:
            assert not list((tmp_path / target).rglob(path.rsplit("/", 1)[-1])), path


def test_json_has_the_documented_shape(cli: CLI, tmp_path: Path) -> None:
    with_a_pack_to_repack(cli, tmp_path)
    _, forgotten = make_garbage(cli, tmp_path, random.Random(SEED + 4))
    assert len(forgotten) == 2
    planned = cli("prune", "--dry-run").stdout.decode()
    assert re.search(r"^would repack [1-9]\d* mostly-garbage packs, keeping .*; 0 more wait \(", planned, re.M), planned
    done = cli("prune", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert set(doc) == JSON_KEYS and doc["dry_run"] is False
    assert doc["repacked"] >= 1 and doc["repack_bytes"] > 0
    assert all(isinstance(n, str) and len(n) == 64 for n in doc["repack_written"]) and doc["repack_written"]
    assert doc["retained"] == 2 and doc["forgotten"] == 2
    assert isinstance(doc["garbage"], int) and doc["garbage"] > 0
    assert doc["kept_locked"] == 0 and doc["kept_in_use"] == 0
    assert isinstance(doc["index_written"], str) and len(doc["index_written"]) == 64
    assert set(doc["deleted"]) == set(TARGETS)
    assert all(isinstance(p, str) for paths in doc["deleted"].values() for p in paths)
    again = json.loads(cli("prune", "--json").stdout)
    assert again["garbage"] == 0 and again["forgotten"] == 0 and again["index_written"] is None
    # What is left for a second run: the index objects the first one superseded, never in the same run.
    assert all(p.startswith("index/") for paths in again["deleted"].values() for p in paths), again["deleted"]
