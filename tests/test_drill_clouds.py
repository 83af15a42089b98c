"""Drills against the emulated providers: a damaged copy fails its provider only; archived packs are warmed up."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import CloudBucket, raw_s3_client
from test_cli import CLI
from test_cloud_cli import cloud_config

from coldvault.storage.handle import Kind

pytestmark = pytest.mark.emulator


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    for i in range(4):
        (root / f"part{i}.bin").write_bytes(os.urandom(400_000))
    return root


def last_report(cli: CLI) -> dict:  # type: ignore[type-arg]
    listed = json.loads(cli("report", "list", "--json", passphrase=None).stdout)
    return json.loads(cli("report", "show", str(listed[-1]["sequence"]), passphrase=None).stdout)["body"]


def s3_client(bucket: CloudBucket):  # type: ignore[no-untyped-def]
    return raw_s3_client(bucket.target["endpoint"], bucket.target["region"])


def test_a_drill_over_three_providers_pins_a_damaged_copy_on_its_provider(
    tmp_path: Path, data: Path, s3_bucket: CloudBucket, gcs_bucket: CloudBucket, azure_container: CloudBucket
) -> None:
    cli = CLI(tmp_path)
    cli.write_config(cloud_config(tmp_path, [s3_bucket.target, gcs_bucket.target, azure_container.target]))
    assert cli("init").returncode == 0 and cli("backup").returncode == 0

    done = cli("drill")
    assert done.returncode == 0, done.stderr
    body = last_report(cli)
    targets = {t["name"]: t for t in body["targets"]}
    assert body["verdict"] == "pass" and set(targets) == {"aws-eu", "gcs-us", "azure-we"}
    assert targets["aws-eu"]["locks_checked"] > 0 and not targets["aws-eu"]["lock_violations"]
    # The report itself went to every provider; on S3 it is under the bucket's compliance lock.
    client = s3_client(s3_bucket)
    (stored,) = client.list_objects_v2(Bucket=s3_bucket.target["bucket"], Prefix="reports/")["Contents"]
    assert client.head_object(Bucket=s3_bucket.target["bucket"], Key=stored["Key"])["ObjectLockMode"] == "COMPLIANCE"

    packs = sorted(info.handle.path for info in gcs_bucket.adapter().list(Kind.DATA))
    for path in packs:
        gcs_bucket.raw_put(path, b"rot")
    failed = cli("drill")
    assert failed.returncode == 13
    assert "the drill failed on gcs-us;" in failed.stderr.decode()
    targets = {t["name"]: t for t in last_report(cli)["targets"]}
    assert targets["gcs-us"]["verdict"] == "fail" and targets["gcs-us"]["errors"]
    assert targets["aws-eu"]["verdict"] == "pass" and targets["azure-we"]["verdict"] == "pass"

    assert cli("report", "pubkey", "--output", str(tmp_path / "drills.pub"), passphrase=None).returncode == 0
    verified = cli(
        "report", "verify", str(tmp_path / "state" / "reports"), "--chain", "--public-key", str(tmp_path / "drills.pub")
    )
    assert verified.returncode == 0 and b"2 reports, 1 to 2" in verified.stdout


def test_archived_packs_are_warmed_up_and_the_wait_is_reported(
    tmp_path: Path, data: Path, s3_bucket: CloudBucket
) -> None:
    cli = CLI(tmp_path)
    cli.write_config(cloud_config(tmp_path, {**s3_bucket.target, "storage_class": "GLACIER"}))
    assert cli("init").returncode == 0 and cli("backup").returncode == 0
    done = cli("drill", "--poll-interval", "0.1")
    assert done.returncode == 0, done.stderr
    assert b"warm" in done.stderr
    (target,) = last_report(cli)["targets"]
    assert target["verdict"] == "pass" and target["warmup_s"] > 0
    assert target["coverage"]["read_now"] > 0
