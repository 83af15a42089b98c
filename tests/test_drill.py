"""Restore drills: each target on its own, failures pinned to the target that has them, always a signed report."""

from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from test_check import PackReadsAtOnce
from test_cli import CLI, basic_config
from test_replication_cli import Outage, config

from coldvault.config import Secret
from coldvault.config.model import FormatConfig, Source
from coldvault.engine.backup import BackupOptions, backup
from coldvault.engine.drill import Coverage, Sampling, choose_snapshots, drill_target
from coldvault.engine.locks import LockPolicy
from coldvault.engine.progress import SilentProgress
from coldvault.repo.repository import PACK_KINDS, Repository
from coldvault.storage.handle import Handle, Kind
from coldvault.storage.memory import MemoryStore
from coldvault.storage.policy import PolicyStore
from coldvault.storage.protocol import ObjectInfo

FORMAT = FormatConfig(chunk_min_size=256, chunk_avg_size=1024, chunk_max_size=4096, pack_size=16 << 10)


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(5):
        (data / f"f{i}.bin").write_bytes(os.urandom(200_000))
    tool = CLI(tmp_path)
    tool.write_config(config(tmp_path))
    assert tool("init").returncode == 0
    assert tool("backup").returncode == 0
    return tool


def last_report(cli: CLI) -> dict:  # type: ignore[type-arg]
    listed = json.loads(cli("report", "list", "--json", passphrase=None).stdout)
    return json.loads(cli("report", "show", str(listed[-1]["sequence"]), passphrase=None).stdout)["body"]


def by_target(body: dict) -> dict:  # type: ignore[type-arg]
    return {t["name"]: t for t in body["targets"]}


def test_a_drill_reads_samples_from_every_target_and_signs_a_passing_report(cli: CLI) -> None:
    done = cli("drill")
    assert done.returncode == 0, done.stderr
    body = last_report(cli)
    assert body["verdict"] == "pass"
    targets = by_target(body)
    assert set(targets) == {"near", "far"}
    for target in targets.values():
        assert target["verdict"] == "pass" and target["samples"] and target["bytes"] > 0
        assert target["time_to_first_byte_s"] is not None and target["throughput_bytes_per_s"] > 0
    assert targets["near"]["samples"] == targets["far"]["samples"], "every target samples the same files"


def test_the_seed_in_the_report_re_derives_the_same_sample(cli: CLI) -> None:
    assert cli("drill").returncode == 0
    first = last_report(cli)
    assert cli("drill", "--seed", str(first["seed"])).returncode == 0
    again = last_report(cli)
    assert by_target(again)["near"]["samples"] == by_target(first)["near"]["samples"]


@pytest.mark.parametrize("damage", ["corrupt", "remove"])
def test_a_damaged_copy_fails_that_target_only(cli: CLI, tmp_path: Path, damage: str) -> None:
    for pack in [p for p in (tmp_path / "far" / "data").rglob("*") if p.is_file()]:
        if damage == "remove":
            pack.unlink()
        else:
            pack.chmod(0o644)
            pack.write_bytes(pack.read_bytes()[:64] + b"rot" + pack.read_bytes()[67:])
    done = cli("drill")
    assert done.returncode == 13
    assert done.stderr.decode().strip().endswith("the drill failed on far; report 1 has the details")
    body = last_report(cli)
    targets = by_target(body)
    assert body["verdict"] == "fail"
    assert targets["near"]["verdict"] == "pass" and not targets["near"]["errors"]
    assert targets["far"]["verdict"] == "fail" and targets["far"]["errors"]


def test_a_wrong_key_fails_the_drill_and_still_signs_a_report(cli: CLI) -> None:
    done = cli("drill", passphrase="not the passphrase")
    assert done.returncode == 11
    body = last_report(cli)
    assert body["verdict"] == "fail" and "wrong passphrase" in body["errors"][0]


def locked_repo(lock_days: int) -> tuple[MemoryStore, Repository]:
    store = MemoryStore()
    repo = Repository.init(PolicyStore(store, lock_days=lock_days, pack_storage_class=None), Secret(b"pw"), FORMAT)
    return store, repo


def drill_memory(store: MemoryStore, repo: Repository, source: Source, policy: LockPolicy):  # type: ignore[no-untyped-def]
    backup(repo, source, BackupOptions(workers=2, compression_level=3), SilentProgress())
    chosen = choose_snapshots(repo.snapshots(), Sampling(), random.Random(1))
    alone = Repository.open(store, recovery_key=repo.master_key)
    now = datetime.now(UTC)
    coverage = Coverage(30, {}, 1.0)
    return drill_target(
        "mem", alone, store, [s.id for s in chosen], 1, Sampling(), policy, now, coverage, report=print, workers=2
    )


@pytest.fixture
def source(tmp_path: Path) -> Source:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "file").write_bytes(random.Random(3).randbytes(50_000))
    return Source(name="files", paths=[tmp_path / "src"])


def test_objects_locked_as_the_policy_says_pass(source: Source) -> None:
    store, repo = locked_repo(30)
    result = drill_memory(store, repo, source, LockPolicy("compliance", 30))
    assert result.ok and result.locks_checked >= 2


def test_a_lock_shorter_than_the_policy_fails_the_drill(source: Source) -> None:
    store, repo = locked_repo(1)  # written with one day of retention
    result = drill_memory(store, repo, source, LockPolicy("compliance", 30))
    assert not result.ok
    assert any("shorter than the policy's: 30 days" in v for v in result.lock_violations)


def test_an_unlocked_object_fails_the_drill(source: Source) -> None:
    store = MemoryStore()
    repo = Repository.init(store, Secret(b"pw"), FORMAT)
    result = drill_memory(store, repo, source, LockPolicy("governance", 30))
    assert any("is locked in mode None" in v for v in result.lock_violations)


def rotation_drill(store: MemoryStore, repo: Repository, policy: LockPolicy, now: datetime):  # type: ignore[no-untyped-def]
    """A drill with no snapshot to sample whose rotation is every pack."""
    alone = Repository.open(store, recovery_key=repo.master_key)
    return drill_target(
        "mem", alone, store, [], 1, Sampling(), policy, now, Coverage(1, {}, 1.0), report=print, workers=2
    )


class DatelessLocks(MemoryStore):
    """A provider that reports an object's lock mode without its retain-until date."""

    def head(self, handle: Handle) -> ObjectInfo:
        return replace(super().head(handle), retain_until=None)


def test_a_lock_in_the_right_mode_without_a_date_fails_the_drill(source: Source) -> None:
    store = DatelessLocks()
    repo = Repository.init(PolicyStore(store, lock_days=30, pack_storage_class=None), Secret(b"pw"), FORMAT)
    result = drill_memory(store, repo, source, LockPolicy("compliance", 30))
    assert not result.ok and result.lock_violations
    assert all("is in mode 'compliance' but has no retain-until date" in v for v in result.lock_violations)


def test_every_pack_the_rotation_verifies_must_be_locked_in_the_policys_mode(source: Source) -> None:
    store = MemoryStore()
    repo = Repository.init(store, Secret(b"pw"), FORMAT)  # as if the lock had been lost on the way
    backup(repo, source, BackupOptions(workers=2, compression_level=3), SilentProgress())
    result = rotation_drill(store, repo, LockPolicy("compliance", 30), datetime.now(UTC))
    packs = len(list(repo.index.packs()))
    assert len(result.whole_packs) == result.locks_checked == packs
    assert len(result.lock_violations) == packs
    assert all("is locked in mode None; the policy says 'compliance'" in v for v in result.lock_violations)


def test_a_rotation_pack_past_its_retention_passes(source: Source) -> None:
    # Which snapshots need a pack is not known from the rotation: once all are past their retention,
    # the pack's lock may have ended, and prune deletes it.
    store, repo = locked_repo(1)
    backup(repo, source, BackupOptions(workers=2, compression_level=3), SilentProgress())
    result = rotation_drill(store, repo, LockPolicy("compliance", 30), datetime.now(UTC) + timedelta(days=60))
    assert result.ok, result.lock_violations
    assert result.locks_checked == len(result.whole_packs) > 0


def test_the_oldest_snapshots_are_sampled_too() -> None:
    from coldvault.repo.manifest import TREE, Snapshot

    def snap(i: int, source: str) -> Snapshot:
        return Snapshot(
            source=source, kind=TREE, time=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=i), host="h",
            username="u", tool_version="t", paths=(), program=None, listing=(), parent=None, id=f"{i:064x}",
        )  # fmt: skip

    snapshots = [snap(i, "a") for i in range(10)] + [snap(100, "b")]
    chosen = choose_snapshots(snapshots, Sampling(older=3), random.Random(5))
    assert [s.source for s in chosen] == ["a"] * 4 + ["b"]
    assert chosen[0].id == f"{9:064x}", "the latest of each source comes first"
    assert chosen == choose_snapshots(snapshots, Sampling(older=3), random.Random(5))


def test_the_report_gives_recovery_points_restore_estimates_and_history(cli: CLI) -> None:
    assert cli("drill").returncode == 0
    assert cli("drill").returncode == 0
    body = last_report(cli)
    latest = json.loads(cli("snapshots", "--json").stdout)[-1]
    (point,) = body["sources"]
    assert point["source"] == "files" and point["newest_verified"] == latest["id"] and point["rpo_s"] >= 0
    for target in body["targets"]:
        assert target["rto_estimate_s"] > 0 and latest["id"] in target["verified_snapshots"]
    assert len(body["history"]) == 1 and set(body["history"][0]["throughput_bytes_per_s"]) == {"near", "far"}


@pytest.mark.parametrize("min_targets, rpo_known", [(2, False), (1, True)])
def test_the_recovery_point_needs_min_targets_verified_copies(
    cli: CLI, tmp_path: Path, min_targets: int, rpo_known: bool
) -> None:
    cli.write_config(config(tmp_path, min_targets=min_targets))
    for pack in [p for p in (tmp_path / "far" / "data").rglob("*") if p.is_file()]:
        pack.unlink()
    assert cli("drill").returncode == 13
    (point,) = last_report(cli)["sources"]
    assert (point["rpo_s"] is not None) is rpo_known


def test_reports_go_to_every_target_and_a_target_that_missed_one_gets_it_with_the_next_drill(
    cli: CLI, tmp_path: Path
) -> None:
    cli.write_config(config(tmp_path, min_targets=1))
    outage = Outage(tmp_path / "far")
    assert cli("drill").returncode == 13  # far is unreachable: a failed drill, and a signed report
    outage.end()
    assert len(list((tmp_path / "near" / "reports").iterdir())) == 1
    assert not (tmp_path / "far" / "reports").exists()
    assert cli("drill").returncode == 0
    local = sorted(p.read_bytes() for p in (tmp_path / "state" / "reports").glob("*.json"))
    for target in ("near", "far"):
        assert sorted(p.read_bytes() for p in (tmp_path / target / "reports").iterdir()) == local


def test_every_report_matches_the_published_schema(cli: CLI, tmp_path: Path) -> None:
    schema = json.loads((Path(__file__).parents[1] / "docs" / "report.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    cli.write_config(with_check(config(tmp_path), "true {path}"))
    assert cli("drill", "--full").returncode == 0
    assert cli("drill", passphrase="wrong").returncode == 11
    for report in (tmp_path / "state" / "reports").glob("*.json"):
        jsonschema.validate(json.loads(report.read_bytes()), schema, cls=jsonschema.Draft202012Validator)


def with_check(text: str, command: str) -> str:
    return text + f"\n[drills]\ncheck_command = {json.dumps(command)}\n"


def test_a_full_drill_restores_a_snapshot_and_runs_the_check_on_it(cli: CLI, tmp_path: Path) -> None:
    cli.write_config(with_check(config(tmp_path), "sh -c 'find {path} -type f | wc -l'"))
    done = cli("drill", "--full")
    assert done.returncode == 0, done.stderr
    full = last_report(cli)["full"]
    assert full["verdict"] == "pass" and full["target"] == "near" and full["files"] == 5
    assert full["check"]["exit_code"] == 0 and full["check"]["output_tail"] == ["5"]
    assert not (tmp_path / "state" / "drill-scratch").exists() or not any(
        (tmp_path / "state" / "drill-scratch").iterdir()
    )
    assert cli("drill", "--full").returncode == 0
    assert last_report(cli)["full"]["target"] == "far", "full drills take the targets in turn"


def test_a_failing_check_fails_the_drill_with_its_output_in_the_report(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep").write_text("x")
    tool = CLI(tmp_path)
    check = "sh -c 'test \"$(tail -n 1 {path})\" = 50000 || { echo loading {path}; echo ERROR: rows missing; exit 3; }'"
    tool.write_config(with_check(basic_config(tmp_path, command="seq 1 49999"), check))
    assert tool("init").returncode == 0 and tool("backup").returncode == 0
    done = tool("drill", "--full", "latest", "--source", "db")
    assert done.returncode == 13
    assert "primary (full restore)" in done.stderr.decode()
    full = last_report(tool)["full"]
    assert full["verdict"] == "fail" and full["source"] == "db"
    assert full["check"]["exit_code"] == 3 and full["check"]["output_tail"][-1] == "ERROR: rows missing"

    tool.write_config(with_check(basic_config(tmp_path, command="seq 1 50000"), check))
    assert tool("backup", "--source", "db").returncode == 0
    assert tool("drill", "--full", "latest", "--source", "db").returncode == 0


def test_each_report_gets_a_page_and_show_writes_one(cli: CLI, tmp_path: Path) -> None:
    done = cli("drill")
    assert done.returncode == 0
    (page,) = (tmp_path / "state" / "reports").glob("*.html")
    assert str(page) in done.stdout.decode()
    assert "PASS" in page.read_text() and "<svg" in page.read_text()
    assert cli("report", "show", "1", "--html", str(tmp_path / "r.html"), passphrase=None).returncode == 0
    assert (tmp_path / "r.html").read_text() == page.read_text()


def test_pack_coverage_rotates_until_every_pack_was_read_within_the_period(source: Source) -> None:
    store = MemoryStore()
    repo = Repository.init(store, Secret(b"pw"), FORMAT)
    Path(source.paths[0], "more").write_bytes(random.Random(4).randbytes(200_000))
    backup(repo, source, BackupOptions(workers=2, compression_level=3), SilentProgress())
    alone = Repository.open(store, recovery_key=repo.master_key)
    packs = {p.name for p in alone.index.packs()}
    assert len(packs) >= 8
    last_read: dict[str, str] = {}
    read: list[str] = []
    now = datetime.now(UTC)
    for day in range(4):  # a drill a day, every pack within four days
        when = now + timedelta(days=day)
        result = drill_target(
            "mem", alone, store, [], 1, Sampling(), None, when, Coverage(4, dict(last_read), 1.0), report=print,
            workers=2,
        )  # fmt: skip
        assert result.ok
        assert len(result.whole_packs) == -(-len(packs) // 4)
        read += result.whole_packs
        last_read.update({p: when.isoformat() for p in result.whole_packs})
    assert set(read) == packs
    assert result.coverage == {
        "days": 4, "packs": len(packs), "read_now": len(result.whole_packs), "read_within_days": len(packs),
        "fraction": 1.0,
    }  # fmt: skip


def test_the_rotation_reads_packs_side_by_side_and_names_damaged_ones_in_its_order(source: Source) -> None:
    store = MemoryStore()
    repo = Repository.init(store, Secret(b"pw"), FORMAT)
    Path(source.paths[0], "more").write_bytes(random.Random(4).randbytes(200_000))
    backup(repo, source, BackupOptions(workers=2, compression_level=3), SilentProgress())
    packs = sorted((Handle(PACK_KINDS[p.kind], p.name) for p in repo.index.packs()), key=lambda h: h.name)
    damaged = [h for h in packs if h.kind is Kind.DATA][1:8:3]
    for handle in damaged:
        store.corrupt(handle, position=len(store.get(handle)) // 2)
    results = {}
    for workers in (1, 3):
        counting = PackReadsAtOnce(store)
        if workers > 1:
            counting.first_read_waits_for_a_second()  # side by side however late the other workers run
        alone = Repository.open(counting, recovery_key=repo.master_key)
        results[workers] = drill_target(
            "mem", alone, counting, [], 1, Sampling(), None, datetime.now(UTC), Coverage(1, {}, 1.0), report=print,
            workers=workers,
        )  # fmt: skip
        assert counting.most == 1 if workers == 1 else 1 < counting.most <= workers
    one, three = results[1], results[3]
    assert len(one.errors) == len(damaged) and all(h.name[:12] in " ".join(one.errors) for h in damaged)
    assert three.errors == one.errors, "the same problems in the same order, whatever the workers"
    assert three.whole_packs == one.whole_packs and len(one.whole_packs) == len(packs) - len(damaged)
    assert three.bytes == one.bytes
