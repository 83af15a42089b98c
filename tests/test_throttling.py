"""Throttling on the real wire: every command still succeeds, and no retry leaves a second copy behind.

A proxy between coldvault and the emulator (tests/throttle_proxy.py) answers a share of the requests
the way each provider does when asked too fast, so the real SDK parses the answer, the adapter maps
it to ``Transient`` and the retry wrapper tries again.  Objects above part_size, and writes that land
before their answer is lost, have tests of their own below.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CloudBucket, raw_s3_client
from test_cli import CLI, PASSPHRASE
from test_cloud_cli import cloud_config
from throttle_proxy import ThrottleProxy

from coldvault import emulators
from coldvault.config import Secret
from coldvault.errors import Transient
from coldvault.repo.repository import Repository
from coldvault.storage.factory import open_store
from coldvault.storage.handle import Handle, Kind, object_name

pytestmark = pytest.mark.emulator

FIXTURES = {"s3": "s3_bucket", "gcs": "gcs_bucket", "azure": "azure_container"}
FRACTION = 0.25  # of the requests answered with a throttling reply instead of being forwarded
# At most this many throttled answers per command (None: no limit), to keep the file fast: a restore
# reads one chunk per request, one after the other, and would spend most of its time in backoff.
LIMITS = {"init": 1, "backup": None, "restore": 3}


def make_data(root: Path, rng: random.Random) -> Path:
    """About 2.3MiB, mostly incompressible: several 512KiB packs."""
    (root / "sub").mkdir(parents=True)
    (root / "notes.txt").write_text("cold storage\n" * 5000)
    (root / "sub" / "random.bin").write_bytes(rng.randbytes(2 << 20))
    for number in range(5):
        (root / "sub" / f"small-{number}.bin").write_bytes(rng.randbytes(40_000 + number))
    return root


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def upstream_of(provider: str, bucket: CloudBucket, request: pytest.FixtureRequest) -> tuple[str, str]:
    """The emulator to forward to, and the path the target's endpoint needs after the proxy's address."""
    if provider == "azure":  # a target's endpoint replaces the connection string's BlobEndpoint
        return request.getfixturevalue("azurite_server").endpoint, f"/{emulators.AZURITE_ACCOUNT}"
    return bucket.target["endpoint"], ""


@pytest.mark.parametrize("provider", ["s3", "gcs", "azure"])
def test_backup_and_restore_survive_throttling(provider: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    bucket: CloudBucket = request.getfixturevalue(FIXTURES[provider])
    data = make_data(tmp_path / "data", random.Random(provider))
    upstream, path = upstream_of(provider, bucket, request)

    with ThrottleProxy(upstream, provider, fraction=FRACTION, seed=3) as proxy:
        cli = CLI(tmp_path)
        cli.write_config(cloud_config(tmp_path, {**bucket.target, "endpoint": proxy.endpoint + path}, data))
        throttled: dict[str, list[str]] = {}  # by command: method and path of each throttled request
        for command in (["init"], ["backup"], ["restore", "latest", str(tmp_path / "out")]):
            start = len(proxy.log)
            limit = LIMITS[command[0]]
            proxy.limit = None if limit is None else proxy.injected.total() + limit
            done = cli(*command)
            assert done.returncode == 0, (command, done.stderr.decode())
            throttled[command[0]] = [f"{m} {p}" for m, p, hit in proxy.log[start:] if hit]
    print(f"{provider}: throttled {dict(proxy.injected)} of {len(proxy.log)} requests")
    assert len(throttled["backup"]) >= 3 and throttled["restore"], throttled
    assert any(r.startswith(("PUT", "POST")) for r in throttled["backup"]), throttled  # an upload among them

    restored = tmp_path / "out" / str(data).lstrip("/")
    assert files_of(restored) == files_of(data)

    # Every pack on the bucket is one the index knows: a retried upload went up under the same name.
    store = open_store(bucket.model())
    repo = Repository.open(store, passphrase=Secret(PASSPHRASE.encode()))
    listed = {info.handle.name for kind in (Kind.DATA, Kind.TREE) for info in store.list(kind)}
    assert listed == {pack.name for pack in repo.index.packs()}
    assert len(listed) >= 4  # several packs, so throttling struck the backup mid-stream
    assert len(repo.snapshots()) == 1
    if provider == "s3":  # a versioned bucket: a second write of one name would show as a second version
        keys = [v["Key"] for v in _raw_s3(bucket).list_object_versions(Bucket=bucket.target["bucket"])["Versions"]]
        assert len(keys) == len(set(keys))


# ---- objects above part_size: S3 multipart, GCS resumable, Azure staged blocks -----------------------
# The adapter retries each part's request alone, with the target's retry policy (RetryPolicy, shared
# with the retry wrapper); the whole object is not sent again.

# What a request carrying one part of an object looks like on each provider's wire.
PART_REQUESTS: dict[str, Callable[[str, str], bool]] = {
    "s3": lambda method, path: method == "PUT" and "uploadId=" in path,  # UploadPart
    "gcs": lambda method, path: method == "PUT" and "upload_id=" in path,  # a chunk of a resumable upload
    "azure": lambda method, path: method == "PUT" and "comp=block&" in path,  # Put Block
}


_PART_UPLOADS: dict[str, tuple[bytes, CloudBucket, list[tuple[str, str, bool]]]] = {}


def put_with_second_part_throttled(
    provider: str, request: pytest.FixtureRequest
) -> tuple[bytes, CloudBucket, list[tuple[str, str, bool]]]:
    """A 6MiB object stored in two parts through the proxy, the second part throttled once: the data,
    the bucket and the proxy's log.  Done once per provider for the two tests below, as it is slow-ish."""
    if provider in _PART_UPLOADS:
        return _PART_UPLOADS[provider]
    bucket: CloudBucket = request.getfixturevalue(FIXTURES[provider])
    upstream, path = upstream_of(provider, bucket, request)
    parts: list[str] = []

    def second_part(method: str, path: str) -> bool:
        if PART_REQUESTS[provider](method, path):
            parts.append(path)
        return len(parts) == 2

    data = os.urandom(6 << 20)
    with ThrottleProxy(upstream, provider, fraction=1.0, match=second_part, limit=1) as proxy:
        store = open_store(bucket.model(endpoint=proxy.endpoint + path, part_size="5MiB", lock=False))
        store.put(Handle(Kind.DATA, object_name(data)), data)
    assert proxy.injected.total() == 1
    _PART_UPLOADS[provider] = data, bucket, proxy.log
    return _PART_UPLOADS[provider]


@pytest.mark.parametrize("provider", ["s3", "gcs", "azure"])
def test_an_upload_in_parts_survives_a_throttled_part(provider: str, request: pytest.FixtureRequest) -> None:
    data, bucket, _ = put_with_second_part_throttled(provider, request)
    store = open_store(bucket.model())
    handle = Handle(Kind.DATA, object_name(data))
    assert [info.handle for info in store.list(Kind.DATA)] == [handle]
    assert store.get(handle) == data
    if provider == "s3":  # no upload left behind for the lifecycle rule
        assert "Uploads" not in _raw_s3(bucket).list_multipart_uploads(Bucket=bucket.target["bucket"])


@pytest.mark.parametrize("provider", ["s3", "gcs", "azure"])
def test_a_throttled_part_is_retried_alone(provider: str, request: pytest.FixtureRequest) -> None:
    _, _, log = put_with_second_part_throttled(provider, request)
    forwarded = [path for method, path, throttled in log if PART_REQUESTS[provider](method, path) and not throttled]
    assert len(forwarded) == 2  # the first part went up once, the second once after its throttled try


@pytest.mark.parametrize("provider", ["s3", "gcs", "azure"])
def test_a_part_throttled_every_time_fails_the_put_after_its_own_retries(
    provider: str, request: pytest.FixtureRequest
) -> None:
    """Given up after ``retries``, the part is not tried again with the whole object: no retries of retries."""
    bucket: CloudBucket = request.getfixturevalue(FIXTURES[provider])
    upstream, path = upstream_of(provider, bucket, request)
    parts: list[str] = []

    def after_the_first_part(method: str, path: str) -> bool:
        if not PART_REQUESTS[provider](method, path):
            return False
        parts.append(path)
        return len(parts) >= 2

    data = os.urandom(6 << 20)
    handle = Handle(Kind.DATA, object_name(data))
    with ThrottleProxy(upstream, provider, fraction=1.0, match=after_the_first_part) as proxy:
        target = bucket.model(endpoint=proxy.endpoint + path, part_size="5MiB", lock=False, retries=2)
        with pytest.raises(Transient):
            open_store(target).put(handle, data)
    assert len(parts) == 1 + 3  # the first part once; the second sent, then retried twice
    assert [info.handle for info in open_store(bucket.model()).list(Kind.DATA)] == []
    if provider == "s3":  # the given-up upload was aborted
        assert "Uploads" not in _raw_s3(bucket).list_multipart_uploads(Bucket=bucket.target["bucket"])


# ---- a write that landed, its answer lost: the retry finds the object already there --------------------


@pytest.mark.parametrize("command, key", [("init", "/config"), ("backup", "/snapshots/")])
def test_a_write_whose_answer_was_lost_is_not_a_failure(
    command: str, key: str, s3_bucket: CloudBucket, tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "small.txt").write_text("cold storage\n")

    def the_object(method: str, path: str) -> bool:
        return method == "PUT" and key in path

    upstream = s3_bucket.target["endpoint"]
    with ThrottleProxy(upstream, "s3", fraction=1.0, match=the_object, limit=1, landed=True) as proxy:
        cli = CLI(tmp_path)
        cli.write_config(cloud_config(tmp_path, {**s3_bucket.target, "endpoint": proxy.endpoint}))
        for step in ["init"] if command == "init" else ["init", "backup"]:
            done = cli(step)
            assert done.returncode == 0, (step, done.stderr.decode())
    assert proxy.injected.total() == 1
    repo = Repository.open(open_store(s3_bucket.model()), passphrase=Secret(PASSPHRASE.encode()))
    assert len(repo.snapshots()) == (1 if command == "backup" else 0)


def _raw_s3(bucket: CloudBucket) -> Any:
    return raw_s3_client(bucket.target["endpoint"], "eu-west-1")
