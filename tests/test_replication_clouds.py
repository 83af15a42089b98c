"""One repository on four emulated providers: S3 in two regions, GCS and Azure, through the real CLI.

The outage is real: the GCS emulator process is SIGKILLed while the backup uploads to it,
and started again later on the same port and the same data directory, as a provider
coming back after an outage.  The backup reaches GCS through a proxy that holds its requests
from the first pack stored there until the kill, so the kill always falls mid-backup.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from conftest import CloudBucket, make_gcs_bucket, make_s3_bucket
from test_cli import CLI, PASSPHRASE
from test_cloud_cli import cloud_config
from throttle_proxy import ThrottleProxy

from coldvault import emulators
from coldvault.storage.handle import Kind

pytestmark = pytest.mark.emulator


def objects(bucket: CloudBucket) -> dict[str, int]:
    store = bucket.adapter()
    return {info.handle.path: info.size for kind in Kind for info in store.list(kind)}


def restored_equal(source: Path, restored: Path) -> None:
    comparison = filecmp.dircmp(source, restored / str(source).lstrip("/"))
    assert not comparison.diff_files and not comparison.left_only and not comparison.right_only


def start_backup(cli: CLI) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDVAULT_")}
    return subprocess.Popen(
        [sys.executable, "-m", "coldvault", "--config", str(cli.config), "--quiet", "--debug", "backup"],
        env={**env, "COLDVAULT_PASSPHRASE": PASSPHRASE},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def has_a_pack(bucket: CloudBucket) -> bool:
    return any(True for _ in bucket.adapter().list(Kind.DATA))


def wait_for_a_pack(bucket: CloudBucket, backup: subprocess.Popen[bytes]) -> None:
    """Until the backup has stored its first pack in the bucket: the moment to pull the plug."""
    deadline = time.monotonic() + 60
    while not has_a_pack(bucket):
        assert backup.poll() is None and time.monotonic() < deadline, "the backup ended before the bucket got a pack"
        time.sleep(0.02)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    for i in range(8):
        (root / f"part{i}.bin").write_bytes(os.urandom(768 << 10))
    (root / "notes.txt").write_text("replicated\n" * 4000)
    return root


@pytest.fixture
def outage_gcs(tmp_path: Path) -> Iterator[emulators.Emulator]:
    """A GCS emulator of this test's own, keeping its objects on disk so that they survive a kill."""
    (tmp_path / "gcs").mkdir()
    emulator = emulators.fake_gcs(directory=tmp_path / "gcs")
    with emulators.running(emulator):
        yield emulator


@pytest.fixture
def gcs(outage_gcs: emulators.Emulator, bucket_name: str) -> CloudBucket:
    """The outage emulator's bucket; its target goes straight to the emulator, for the test's own looks."""
    return make_gcs_bucket(outage_gcs, bucket_name, "gcs-us")


class GcsHold:
    """A proxy in front of GCS that forwards everything, but holds each request arriving once a pack is
    stored there until ``release``.

    Unheld, a backup could send GCS everything while the test stalls between seeing the first pack and
    killing the emulator, and the outage would miss the backup.  Held, the backup is waiting on GCS when
    the emulator dies, and each held request then goes on to the dead emulator.
    """

    def __init__(self, bucket: CloudBucket) -> None:
        self._bucket = bucket
        self._pack_stored = False
        self._released = threading.Event()
        self.proxy = ThrottleProxy(bucket.target["endpoint"], "gcs", fraction=0, match=self._hold)

    def target(self, **settings: Any) -> dict[str, Any]:
        """The target for the config: GCS through the proxy."""
        return dict(self._bucket.target, endpoint=self.proxy.endpoint, **settings)

    def release(self) -> None:
        self._released.set()

    def _hold(self, method: str, path: str) -> bool:
        # The proxy asks under its lock, one request at a time, so the requests behind a held one wait too.
        self._pack_stored = self._pack_stored or has_a_pack(self._bucket)
        if self._pack_stored:
            self._released.wait()
        return False  # never throttled: forwarded once released


@pytest.fixture
def gcs_hold(gcs: CloudBucket) -> Iterator[GcsHold]:
    hold = GcsHold(gcs)
    with hold.proxy:
        try:
            yield hold
        finally:
            hold.release()  # a test that failed before its kill leaves no request held


@pytest.fixture
def providers(
    moto_server: emulators.Emulator,
    gcs: CloudBucket,
    azure_container: CloudBucket,
    bucket_name: str,
    tmp_path: Path,
) -> list[CloudBucket]:
    return [
        make_s3_bucket(moto_server, bucket_name + "-eu", "eu-west-1", "aws-eu", tmp_path),
        make_s3_bucket(moto_server, bucket_name + "-us", "us-east-2", "aws-us", tmp_path),
        gcs,
        azure_container,
    ]


def test_a_provider_killed_mid_backup_lags_then_catches_up_and_any_single_provider_restores(
    tmp_path: Path,
    data: Path,
    providers: list[CloudBucket],
    gcs: CloudBucket,
    gcs_hold: GcsHold,
    outage_gcs: emulators.Emulator,
) -> None:
    targets = [dict(p.target, retries=1) for p in providers]  # an outage shows after one retry, not five
    targets[providers.index(gcs)] = gcs_hold.target(retries=1)
    cli = CLI(tmp_path)
    cli.write_config(cloud_config(tmp_path, targets, min_targets=3))
    assert cli("init").returncode == 0

    backup = start_backup(cli)
    wait_for_a_pack(gcs, backup)
    outage_gcs.kill()
    gcs_hold.release()
    stdout, stderr = backup.communicate(timeout=120)
    assert backup.returncode == 0, stderr.decode()
    assert "target gcs-us is lagging" in stderr.decode()
    assert b"Traceback" not in stderr

    status = cli("status", "--json")
    assert status.returncode == 14  # one target unreachable
    assert "gcs-us" in status.stderr.decode() and "unreachable" in status.stderr.decode()

    outage_gcs.start()  # back, with what it held before the outage
    lagging = {p.target["name"]: len(objects(p)) for p in providers}
    assert lagging["gcs-us"] < lagging["aws-eu"]
    done = cli("sync")
    assert done.returncode == 0, done.stderr.decode()
    holdings = [objects(p) for p in providers]
    assert all(h == holdings[0] for h in holdings), "every provider holds the same objects, byte counts equal"

    # A fresh machine: the config and the passphrase, no state directory; each provider on its own.
    shutil.rmtree(tmp_path / "state")
    for provider in providers:
        name = provider.target["name"]
        dest = tmp_path / f"restore-{name}"
        restored = cli("restore", "latest", str(dest), "--target", name)
        assert restored.returncode == 0, restored.stderr.decode()
        restored_equal(data, dest)


def test_corruption_at_one_provider_is_repaired_from_another(
    tmp_path: Path, data: Path, s3_bucket: CloudBucket, azure_container: CloudBucket
) -> None:
    cli = CLI(tmp_path)
    cli.write_config(cloud_config(tmp_path, [s3_bucket.target, azure_container.target]))
    assert cli("init").returncode == 0
    assert cli("backup").returncode == 0
    packs = sorted(p for p in objects(s3_bucket) if p.startswith("data/"))
    s3_bucket.raw_put(packs[0], b"bit rot")  # a new version on top of the locked one
    removed = packs[1]
    connection = Path(azure_container.target["credentials_file"]).read_text()
    ContainerClient.from_connection_string(connection, azure_container.target["container"]).delete_blob(removed)

    broken = cli("restore", "latest", str(tmp_path / "broken"), "--target", "aws-eu")
    assert broken.returncode != 0

    scrub = cli("scrub", "--read-data-subset", "100", "--json")
    assert scrub.returncode == 0, scrub.stderr.decode()
    report = {t["name"]: t for t in json.loads(scrub.stdout)["targets"]}
    assert report["aws-eu"]["damaged"] == [packs[0]] and report["aws-eu"]["repaired"] == [packs[0]]
    assert report["azure-we"]["missing"] == [removed] and report["azure-we"]["repaired"] == [removed]

    for name in ("aws-eu", "azure-we"):
        dest = tmp_path / f"restore-{name}"
        restored = cli("restore", "latest", str(dest), "--target", name)
        assert restored.returncode == 0, restored.stderr.decode()
        restored_equal(data, dest)


def test_below_min_targets_an_outage_fails_the_backup_and_the_next_run_resumes(
    tmp_path: Path,
    data: Path,
    s3_bucket: CloudBucket,
    gcs: CloudBucket,
    gcs_hold: GcsHold,
    outage_gcs: emulators.Emulator,
) -> None:
    cli = CLI(tmp_path)
    cli.write_config(cloud_config(tmp_path, [s3_bucket.target, gcs_hold.target(retries=1)]))  # min_targets: all
    assert cli("init").returncode == 0

    backup = start_backup(cli)
    wait_for_a_pack(gcs, backup)
    outage_gcs.kill()
    gcs_hold.release()
    _, stderr = backup.communicate(timeout=120)
    assert backup.returncode == 14
    message = stderr.decode().strip()
    assert "\n" not in message and "gcs-us" in message and "min_targets requires 2" in message
    stored = {path: size for path, size in objects(s3_bucket).items() if path.startswith("data/")}
    assert stored, "packs reached S3 before the failure"
    assert not [p for p in objects(s3_bucket) if p.startswith("snapshots/")], "a failed backup shows no snapshot"

    outage_gcs.start()
    done = cli("backup", "--json")
    assert done.returncode == 0, done.stderr.decode()
    (snapshot,) = json.loads(done.stdout)
    assert snapshot["targets"] == ["aws-eu", "gcs-us"]
    source_bytes = sum(p.stat().st_size for p in data.iterdir())
    assert snapshot["summary"]["stored_bytes"] + sum(stored.values()) < source_bytes, "stored packs were adopted"
    assert cli("check", "--read-data", "--target", "gcs-us").returncode == 0
