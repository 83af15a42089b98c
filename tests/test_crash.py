"""kill -9 at random points of a backup to two local targets never leaves a target that fails `check`.

Each trial adds new files, starts the real `coldvault backup` in its own process, and
SIGKILLs it after a random share of one uninterrupted run's duration, drawn from a seeded
generator; trials go on until 20 backups were killed while still running.  After every
trial both targets are checked on their own with --read-data: any snapshot a target shows
must be complete there.  After the last one, a backup runs to the end, and the journal lets
it adopt the packs the killed runs stored instead of uploading them again.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coldvault.cli import main
from coldvault.config import Secret
from coldvault.repo.repository import Repository
from coldvault.storage.handle import Kind
from coldvault.storage.local import LocalStore

KILLS = 20
SEED = 20261124


def config(root: Path) -> str:
    return f"""
[repository]
state_dir = "{root}/state"
workers = 2
[repository.format]
chunk_min_size = "16KiB"
chunk_avg_size = "32KiB"
chunk_max_size = "128KiB"
pack_size = "96KiB"
[[targets]]
name = "a"
type = "local"
path = "{root}/a"
[[targets]]
name = "b"
type = "local"
path = "{root}/b"
[[sources]]
name = "files"
paths = ["{root}/data"]
"""


def packs(root: Path) -> set[str]:
    """Pack files, not the temporary files of uploads cut short by a kill (prune's to collect)."""
    folders = [root / kind.value for kind in (Kind.DATA, Kind.TREE)]
    return {p.name for folder in folders for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    (tmp_path / "data").mkdir()
    (tmp_path / "coldvault.toml").write_text(config(tmp_path))
    monkeypatch.setenv("COLDVAULT_PASSPHRASE", "pw")
    monkeypatch.setenv("COLDVAULT_CONFIG", str(tmp_path / "coldvault.toml"))
    return {k: v for k, v in os.environ.items()}


def run(*args: str) -> int:
    return main(["--quiet", *args])


def add_files(folder: Path, rng: random.Random) -> None:
    folder.mkdir()
    for i in range(6):
        (folder / f"file{i}").write_bytes(rng.randbytes(rng.randrange(100_000, 600_000)))


def test_sigkill_at_random_points_never_leaves_a_target_that_fails_check(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(SEED)
    assert run("init") == 0
    # How long one uninterrupted run takes here, process start to exit: kills are spread over it.
    add_files(tmp_path / "data" / "first", rng)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "coldvault", "--quiet", "backup"], env=env, check=True)
    duration = time.monotonic() - started
    killed: list[float] = []
    trial = 0
    while len(killed) < KILLS:
        assert trial < 3 * KILLS, f"only {len(killed)} of {trial} backups were still running when killed"
        add_files(tmp_path / "data" / f"trial{trial}", rng)
        backup = subprocess.Popen(
            [sys.executable, "-m", "coldvault", "--quiet", "backup"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        delay = rng.uniform(0.05, 1.1) * duration
        time.sleep(delay)
        backup.send_signal(signal.SIGKILL)
        if backup.wait() == -signal.SIGKILL:
            killed.append(round(delay, 2))
        for target in ("a", "b"):
            code = run("check", "--read-data", "--target", target)
            assert code == 0, f"trial {trial}, killed after {delay:.2f}s: target {target}: {capsys.readouterr()}"
        trial += 1

    assert run("backup") == 0
    assert run("check", "--read-data") == 0
    assert run("sync") == 0  # a kill between two targets' uploads leaves an unindexed pack on one of them
    stored = packs(tmp_path / "a")
    assert packs(tmp_path / "b") == stored
    repo = Repository.open(LocalStore(tmp_path / "a"), passphrase=Secret(b"pw"))
    orphans = stored - {p.name for p in repo.index.packs()}
    # Every pack a killed run stored was adopted by a later run (its index entry is journalled
    # before the upload, and the next run asks the targets about packs it has no row of).
    assert not orphans, f"{len(orphans)} of {len(stored)} packs were stored but never indexed"
