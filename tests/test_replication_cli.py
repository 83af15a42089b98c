"""Replication through the real CLI on two local targets: quorum, lag, status, sync, scrub, --target."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from test_cli import CLI

from coldvault.storage.handle import Kind


def config(root: Path, *, min_targets: int | None = None) -> str:
    quorum = f"min_targets = {min_targets}\n" if min_targets else ""
    return f"""
[repository]
state_dir = "{root}/state"
{quorum}
[repository.format]
chunk_min_size = "16KiB"
chunk_avg_size = "64KiB"
chunk_max_size = "256KiB"
pack_size = "256KiB"

[[targets]]
name = "near"
type = "local"
path = "{root}/near"

[[targets]]
name = "far"
type = "local"
path = "{root}/far"

[[sources]]
name = "files"
paths = ["{root}/data"]
"""


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def packs(root: Path) -> set[str]:
    return {p.name for kind in (Kind.DATA, Kind.TREE) for p in (root / kind.value).rglob("*") if p.is_file()}


class Outage:
    """A local target that cannot be written: its path is a plain file, until ``end``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.away = path.with_name(path.name + ".away")
        path.rename(self.away)
        path.write_text("not a directory")

    def end(self) -> None:
        self.path.unlink()
        self.away.rename(self.path)


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        (data / f"f{i}.bin").write_bytes(os.urandom(300_000))
    tool = CLI(tmp_path)
    tool.write_config(config(tmp_path))
    assert tool("init").returncode == 0
    return tool


def test_below_min_targets_the_backup_fails_in_one_line_before_any_upload(cli: CLI, tmp_path: Path) -> None:
    outage = Outage(tmp_path / "far")
    failed = cli("backup")
    assert failed.returncode == 14
    message = failed.stderr.decode().strip()
    assert "\n" not in message
    assert message.startswith("coldvault: only 1 of 2 targets reachable") and "min_targets requires 2" in message
    assert "far: " in message and "is not a directory" in message
    assert not packs(tmp_path / "near")

    outage.end()
    done = cli("backup", "--json")
    assert done.returncode == 0, done.stderr
    (snapshot,) = json.loads(done.stdout)
    assert snapshot["targets"] == ["near", "far"] and snapshot["lagging"] == []
    assert packs(tmp_path / "near") == packs(tmp_path / "far")


def test_a_lagging_target_is_reported_shown_by_status_and_caught_up_by_sync(cli: CLI, tmp_path: Path) -> None:
    cli.write_config(config(tmp_path, min_targets=1))
    outage = Outage(tmp_path / "far")
    done = cli("backup")
    assert done.returncode == 0
    assert "warning: target far is lagging" in done.stderr.decode()
    outage.end()

    status = cli("status", "--json")
    assert status.returncode == 0
    by_name = {t["name"]: t for t in json.loads(status.stdout)["targets"]}
    assert by_name["far"]["objects"] == 2, "the config and the key slot, from init"
    assert by_name["far"]["lag_objects"] == by_name["near"]["objects"] - 2
    assert by_name["near"]["lag_objects"] == 0 and by_name["near"]["last_upload"]

    synced = cli("sync", "--json")
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout)["ok"]
    assert files(tmp_path / "near") == files(tmp_path / "far")
    assert not files(tmp_path / "state" / "staging"), "staged copies are dropped once delivered"
    status = cli("status", "--json")
    assert all(t["lag_objects"] == 0 for t in json.loads(status.stdout)["targets"])


def test_scrub_repairs_one_target_and_it_then_restores_alone(cli: CLI, tmp_path: Path) -> None:
    assert cli("backup").returncode == 0
    damaged = sorted((tmp_path / "far" / "data").rglob("*"))
    damaged = [p for p in damaged if p.is_file()]
    damaged[0].unlink()
    damaged[1].chmod(0o644)
    damaged[1].write_bytes(b"rot" + damaged[1].read_bytes()[3:])
    assert cli("restore", "latest", str(tmp_path / "broken"), "--target", "far").returncode in (13, 14)

    scrub = cli("scrub", "--read-data-subset", "100")
    assert scrub.returncode == 0, scrub.stderr
    out = scrub.stdout.decode()
    assert "far: " in out and "1 damaged; 1 missing" in out and "2 repaired" in out
    restored = cli("restore", "latest", str(tmp_path / "restored"), "--target", "far")
    assert restored.returncode == 0, restored.stderr
    assert files(tmp_path / "near") == files(tmp_path / "far")


def test_scrub_exits_13_and_names_what_it_could_not_repair(cli: CLI, tmp_path: Path) -> None:
    assert cli("backup").returncode == 0
    pack = next(p for p in (tmp_path / "near" / "data").rglob("*") if p.is_file())
    for target in ("near", "far"):  # damaged everywhere: nothing good to copy from
        copy = tmp_path / target / pack.relative_to(tmp_path / "near")
        copy.chmod(0o644)
        copy.write_bytes(b"rot" + copy.read_bytes()[3:])
    scrub = cli("scrub", "--read-data-subset", "100")
    assert scrub.returncode == 13
    assert (
        f"not repaired: data/{pack.parent.name}/{pack.name}: every other copy is damaged too" in scrub.stdout.decode()
    )
    assert scrub.stderr.decode().count("\n") == 2 + 1  # two progress lines and the one-line error


def test_a_fresh_machine_restores_from_either_target_alone(cli: CLI, tmp_path: Path) -> None:
    assert cli("backup").returncode == 0
    shutil.rmtree(tmp_path / "state")
    for target in ("near", "far"):
        other = tmp_path / ("far" if target == "near" else "near")
        hidden = other.rename(other.with_name("hidden"))  # the other provider is gone too
        dest = tmp_path / f"restore-{target}"
        assert cli("restore", "latest", str(dest), "--target", target).returncode == 0
        hidden.rename(other)
        source = tmp_path / "data"
        restored = dest / str(source).lstrip("/")
        assert {p: (source / p).read_bytes() for p in files(source)} == {
            p: (restored / p).read_bytes() for p in files(restored)
        }


def test_an_unknown_target_name_is_a_usage_error(cli: CLI) -> None:
    done = cli("restore", "latest", "/tmp/x", "--target", "nowhere")
    assert done.returncode == 2
    assert done.stderr.decode().strip() == (
        "coldvault: no target named 'nowhere' in the config (configured: near, far)"
    )


def test_removing_a_key_slot_needs_every_target(cli: CLI, tmp_path: Path) -> None:
    cli.write_config(config(tmp_path, min_targets=1))
    assert cli("key", "add", env={"COLDVAULT_NEW_PASSPHRASE": "second"}).returncode == 0
    slots = json.loads(cli("key", "list", "--json").stdout)
    other = next(s["id"] for s in slots if not s["current"])
    outage = Outage(tmp_path / "far")
    refused = cli("key", "remove", other[:12])
    assert refused.returncode == 14
    assert refused.stderr.decode().strip().endswith("nothing was changed")
    outage.end()
    assert len(json.loads(cli("key", "list", "--json").stdout)) == 2


def test_a_damaged_copy_on_the_first_target_is_stepped_over_and_reported(cli: CLI, tmp_path: Path) -> None:
    assert cli("backup").returncode == 0
    for pack in [p for p in (tmp_path / "near" / "data").rglob("*") if p.is_file()]:
        pack.chmod(0o644)
        pack.write_bytes(pack.read_bytes()[:100] + b"rot" + pack.read_bytes()[103:])

    restored = cli("restore", "latest", str(tmp_path / "restored"))
    assert restored.returncode == 0, restored.stderr
    warnings = restored.stderr.decode()
    assert "warning: the copy of data/" in warnings and "on near is damaged" in warnings and "scrub" in warnings
    source = tmp_path / "data"
    for name in files(source):
        assert (tmp_path / "restored" / str(source).lstrip("/") / name).read_bytes() == (source / name).read_bytes()

    check = cli("check", "--read-data")
    assert check.returncode == 13
    assert "damaged on one target but good on another" in check.stderr.decode()
    report = check.stdout.decode()
    assert "error: the copy of data/" in report and "no errors" not in report
    assert cli("scrub", "--read-data-subset", "100").returncode == 0
    assert cli("check", "--read-data").returncode == 0


def test_check_says_which_targets_copies_it_did_not_read(cli: CLI, tmp_path: Path) -> None:
    assert cli("backup").returncode == 0
    for pack in [p for p in (tmp_path / "far" / "data").rglob("*") if p.is_file()]:
        pack.chmod(0o644)
        pack.write_bytes(b"rot" + pack.read_bytes()[3:])

    check = cli("check", "--read-data", "--json")
    assert check.returncode == 0, check.stderr  # near's copies are whole, and the only ones read
    assert json.loads(check.stdout)["targets_not_read"] == ["far"]
    assert "copies on far were not" in cli("check", "--read-data").stdout.decode()
    assert cli("check", "--read-data", "--target", "far").returncode == 13


def test_targets_holding_different_repositories_are_refused_before_anything_is_written(
    cli: CLI, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    other = CLI(tmp_path / "other")
    other.write_config(config(tmp_path / "other"))
    assert other("init").returncode == 0  # a repository of its own at other/near
    shutil.rmtree(tmp_path / "far")
    (tmp_path / "other" / "near").rename(tmp_path / "far")  # the config's far now points at it
    before = {root: files(tmp_path / root) for root in ("near", "far")}

    for command in (["backup"], ["snapshots"], ["sync"]):
        refused = cli(*command)
        assert refused.returncode == 12, (command, refused.stderr)
        message = refused.stderr.decode()
        assert message.count("\n") == 1 and "'near' and 'far' hold different repositories" in message
    assert {root: files(tmp_path / root) for root in ("near", "far")} == before

    shutil.rmtree(tmp_path / "far")  # an empty location: a new target, which the backup fills
    assert cli("backup").returncode == 0
    assert packs(tmp_path / "far") == packs(tmp_path / "near") != set()
