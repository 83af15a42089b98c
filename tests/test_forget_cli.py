"""coldvault forget through the real CLI on two local targets: the policy's decisions, a locked
record instead of a deletion, forgotten snapshots hidden yet restorable by id, and sync's order."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from test_cli import CLI
from test_replication_cli import config

from coldvault.storage.handle import Kind


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    (tmp_path / "data").mkdir()
    tool = CLI(tmp_path)
    tool.write_config(config(tmp_path) + "keep_last = 2\n")
    assert tool("init").returncode == 0
    for i in range(4):
        (tmp_path / "data" / "f.bin").write_bytes(os.urandom(1000) + bytes([i]))
        assert tool("backup", "-q").returncode == 0
    return tool


def snapshot_ids(cli: CLI, *args: str) -> list[str]:
    done = cli("snapshots", "--json", *args)
    assert done.returncode == 0, done.stderr
    return [s["id"] for s in json.loads(done.stdout)]


def test_forget_keeps_what_the_policy_says_and_deletes_nothing(cli: CLI, tmp_path: Path) -> None:
    before = snapshot_ids(cli)
    objects = {p for p in (tmp_path / "near").rglob("*") if p.is_file()}
    dry = cli("forget", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["record"] is None and set(plan["forgotten"]) == set(before[:2])
    (group,) = plan["groups"]
    assert [s["keep"] for s in group["snapshots"]] == [True, True, False, False]
    assert group["snapshots"][0]["reasons"] == ["last"]
    assert snapshot_ids(cli) == before  # a dry run writes nothing

    done = cli("forget")
    assert done.returncode == 0, done.stderr
    assert "forgot 2 snapshots" in done.stdout.decode() and "keep    " in done.stdout.decode()
    assert snapshot_ids(cli) == before[2:]
    for target in ("near", "far"):
        remaining = {p for p in (tmp_path / target).rglob("*") if p.is_file()}
        assert len(list((tmp_path / target / Kind.FORGET.value).iterdir())) == 1
        if target == "near":
            assert objects < remaining  # only the record was added: every manifest and pack is still there
    again = cli("forget", "--json")
    assert json.loads(again.stdout)["forgotten"] == []  # forgetting twice does nothing more
    assert cli("check").returncode == 0  # forgotten snapshots are not checked: prune may take their packs


def test_a_forgotten_snapshot_restores_by_id_but_not_as_latest(cli: CLI, tmp_path: Path) -> None:
    oldest = snapshot_ids(cli)[0]
    assert cli("forget", "-q").returncode == 0
    restored = cli("restore", oldest[:8], str(tmp_path / "back"))
    assert restored.returncode == 0, restored.stderr
    (back,) = (p for p in (tmp_path / "back").rglob("f.bin"))
    assert back.read_bytes()[-1] == 0
    latest = cli("ls", "latest", "--json")
    assert latest.returncode == 0


def test_sync_copies_the_record_before_the_manifests_it_names(cli: CLI, tmp_path: Path) -> None:
    assert cli("forget", "-q").returncode == 0
    shutil.rmtree(tmp_path / "far" / Kind.FORGET.value)
    shutil.rmtree(tmp_path / "far" / Kind.SNAPSHOT.value)
    assert cli("sync", "-q").returncode == 0
    assert snapshot_ids(cli, "--target", "far") == snapshot_ids(cli, "--target", "near")
    assert len(snapshot_ids(cli, "--target", "far")) == 2


def test_a_damaged_record_is_skipped_so_its_snapshots_show_again(cli: CLI, tmp_path: Path) -> None:
    assert cli("forget", "-q").returncode == 0
    for target in ("near", "far"):
        (record,) = (tmp_path / target / Kind.FORGET.value).iterdir()
        record.chmod(0o644)
        data = record.read_bytes()
        record.write_bytes(data[:-1] + bytes((data[-1] ^ 0xFF,)))  # always a change: the last byte is random
    done = cli("snapshots", "--json")
    assert len(json.loads(done.stdout)) == 4
    assert b"skipped forget/" in done.stderr and b"corrupt" in done.stderr


def test_an_unknown_source_is_a_usage_error(cli: CLI) -> None:
    done = cli("forget", "--source", "nope")
    assert done.returncode == 2 and b"no source named 'nope'" in done.stderr


def test_check_reports_a_damaged_record(cli: CLI, tmp_path: Path) -> None:
    assert cli("forget", "-q").returncode == 0
    (record,) = (tmp_path / "near" / Kind.FORGET.value).iterdir()
    record.chmod(0o644)
    record.write_bytes(b"junk")
    done = cli("check", "--target", "near")
    assert done.returncode == 13 and b"forget/" in done.stdout + done.stderr
