"""Throttling on the real wire: every command still succeeds, and no retry leaves a second copy behind.

A proxy between the CLI and the emulator (tests/throttle_proxy.py) answers a quarter of the requests
the way each provider does when asked too fast, so the real SDK parses the answer, the adapter maps
it to ``Transient`` and the retry wrapper tries again.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import CloudBucket
from test_cli import CLI, PASSPHRASE
from test_cloud_cli import cloud_config
from throttle_proxy import ThrottleProxy

from coldvault import emulators
from coldvault.config import Secret
from coldvault.repo.repository import Repository
from coldvault.storage.factory import open_store
from coldvault.storage.handle import Kind

pytestmark = pytest.mark.emulator

FIXTURES = {"s3": "s3_bucket", "gcs": "gcs_bucket", "azure": "azure_container"}
FRACTION = 0.25  # of requests answered with a throttling reply instead of being forwarded


def make_data(root: Path, rng: random.Random, *, big: bool) -> Path:
    """A few MiB of incompressible data (several 512KiB packs), plus one 6MiB file when ``big``."""
    (root / "sub").mkdir(parents=True)
    (root / "notes.txt").write_text("cold storage\n" * 5000)
    (root / "sub" / "random.bin").write_bytes(rng.randbytes(2 << 20))
    for number in range(5):
        (root / "sub" / f"small-{number}.bin").write_bytes(rng.randbytes(40_000 + number))
    if big:
        (root / "big.bin").write_bytes(rng.randbytes(6 << 20))
    return root


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", ["s3", "s3-multipart", "gcs", "azure"])
def test_backup_and_restore_survive_throttling(case: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    provider = case.split("-")[0]
    multipart = case == "s3-multipart"
    bucket: CloudBucket = request.getfixturevalue(FIXTURES[provider])
    data = make_data(tmp_path / "data", random.Random(case), big=multipart)

    if provider == "azure":  # the target's endpoint replaces the connection string's BlobEndpoint
        upstream, path = request.getfixturevalue("azurite_server").endpoint, f"/{emulators.AZURITE_ACCOUNT}"
    else:
        upstream, path = bucket.target["endpoint"], ""
    with ThrottleProxy(upstream, provider, fraction=FRACTION, seed=len(case)) as proxy:
        target: dict[str, Any] = {**bucket.target, "endpoint": proxy.endpoint + path}
        config = cloud_config(tmp_path, target, data)
        if multipart:  # one pack above part_size, so it goes up as a multipart upload
            target["part_size"] = "5MiB"
            config = cloud_config(tmp_path, target, data).replace('pack_size = "512KiB"', 'pack_size = "8MiB"')
            assert 'pack_size = "8MiB"' in config
        cli = CLI(tmp_path)
        cli.write_config(config)

        for command in (["init"], ["backup"], ["restore", "latest", str(tmp_path / "out")]):
            before = proxy.injected.total()
            done = cli(*command)
            assert done.returncode == 0, (command, done.stderr.decode())
            if command == ["backup"]:
                assert proxy.injected.total() - before >= 3, proxy.injected
        requests = list(proxy.log)

    restored = tmp_path / "out" / str(data).lstrip("/")
    assert files_of(restored) == files_of(data)

    # Every pack on the bucket is one the index knows: a retried upload went up under the same name.
    store = open_store(bucket.model())
    repo = Repository.open(store, passphrase=Secret(PASSPHRASE.encode()))
    listed = {info.handle.name: info.size for kind in (Kind.DATA, Kind.TREE) for info in store.list(kind)}
    assert set(listed) == {pack.name for pack in repo.index.packs()}
    assert len(repo.snapshots()) == 1
    assert len(listed) >= 3  # several packs, so throttling hit a backup in mid-stream

    if provider == "s3":  # versioned bucket: a second write of one name would show as a second version
        versions = _raw_s3(bucket).list_object_versions(Bucket=bucket.target["bucket"])["Versions"]
        keys = [v["Key"] for v in versions]
        assert len(keys) == len(set(keys))
    if multipart:
        assert max(listed.values()) > 5 << 20
        uploads = [(m, p, throttled) for m, p, throttled in requests if m == "POST" and p.endswith("?uploads")]
        assert any(not throttled for *_, throttled in uploads)


def _raw_s3(bucket: CloudBucket) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=bucket.target["endpoint"],
        region_name="eu-west-1",
        aws_access_key_id="AKIATEST",
        aws_secret_access_key="test-secret",
    )
