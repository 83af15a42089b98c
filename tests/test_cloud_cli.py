"""End-to-end against the emulated clouds: the real `coldvault` command, exactly as against a local target."""

from __future__ import annotations

import filecmp
import json
import os
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from conftest import CloudBucket, raw_s3_client
from test_cli import CLI

pytestmark = pytest.mark.emulator


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def cloud_config(
    root: Path, targets: dict[str, Any] | list[dict[str, Any]], data: Path | None = None, **repository: Any
) -> str:
    """A config with one target or several, small chunks and packs, and any extra [repository] keys."""
    lines = ["[repository]", f'state_dir = "{root}/state"']
    lines += [f"{k} = {toml_value(v)}" for k, v in repository.items()]
    lines += [
        "[repository.format]",
        'chunk_min_size = "16KiB"',
        'chunk_avg_size = "64KiB"',
        'chunk_max_size = "256KiB"',
        'pack_size = "512KiB"',
    ]
    for target in [targets] if isinstance(targets, dict) else targets:
        lines.append("[[targets]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in target.items()]
    lines += ["[[sources]]", 'name = "files"', f'paths = ["{data or root / "data"}"]']
    return "\n".join(lines) + "\n"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "notes.txt").write_text("cold storage\n" * 5000)
    (root / "sub" / "random.bin").write_bytes(os.urandom(2 << 20))
    os.symlink("notes.txt", root / "link")
    return root


def cli_for(tmp_path: Path, target: dict[str, Any]) -> CLI:
    cli = CLI(tmp_path)
    cli.write_config(cloud_config(tmp_path, target))
    return cli


def assert_same_tree(original: Path, restored: Path) -> None:
    compared = filecmp.dircmp(original, restored)
    assert not compared.left_only and not compared.right_only and not compared.diff_files
    assert (restored / "sub" / "random.bin").read_bytes() == (original / "sub" / "random.bin").read_bytes()
    assert os.readlink(restored / "link") == "notes.txt"


def test_every_command_works_against_each_cloud(cloud_bucket: CloudBucket, tmp_path: Path, data: Path) -> None:
    cli = cli_for(tmp_path, cloud_bucket.target)
    assert cli("init").returncode == 0
    assert cli("backup").returncode == 0
    snapshots = json.loads(cli("snapshots", "--json").stdout)
    assert [s["source"] for s in snapshots] == ["files"]
    assert "notes.txt" in cli("ls", "latest").stdout.decode()

    assert cli("restore", "latest", str(tmp_path / "out")).returncode == 0
    assert_same_tree(data, tmp_path / "out" / str(data).lstrip("/"))

    check = cli("check", "--read-data")
    assert check.returncode == 0, check.stderr
    second = json.loads(cli("backup", "--json").stdout)[0]
    assert second["summary"]["reused_files"] == 2  # nothing read again


def test_a_prefix_keeps_two_repositories_apart_in_one_bucket(
    s3_bucket: CloudBucket, tmp_path: Path, data: Path
) -> None:
    for prefix in ("prod/", "staging/"):
        root = tmp_path / prefix.strip("/")
        root.mkdir()
        cli = CLI(root)
        cli.write_config(cloud_config(root, {**s3_bucket.target, "prefix": prefix}, data))
        assert cli("init").returncode == 0
        assert cli("backup").returncode == 0
    keys = [o["Key"] for o in _raw_s3(s3_bucket).list_objects_v2(Bucket=s3_bucket.target["bucket"])["Contents"]]
    assert {k.split("/")[0] for k in keys} == {"prod", "staging"}


def test_objects_written_under_lock_cannot_be_deleted_with_the_same_credentials(
    s3_bucket: CloudBucket, tmp_path: Path, data: Path
) -> None:
    cli = cli_for(tmp_path, s3_bucket.target)
    assert cli("init").returncode == 0
    assert cli("backup").returncode == 0

    client = _raw_s3(s3_bucket)
    bucket = s3_bucket.target["bucket"]
    versions = client.list_object_versions(Bucket=bucket)["Versions"]
    assert {v["Key"].split("/")[0] for v in versions} == {
        "config", "keys", "data", "tree", "index", "snapshots", "sessions"
    }  # fmt: skip
    for version in versions:
        head = client.head_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
        assert head["ObjectLockMode"] == "COMPLIANCE"
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            client.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert check_passes(cli)


def test_archived_packs_are_warmed_up_by_restore(s3_bucket: CloudBucket, tmp_path: Path, data: Path) -> None:
    cli = cli_for(tmp_path, {**s3_bucket.target, "storage_class": "DEEP_ARCHIVE"})
    assert cli("init").returncode == 0
    assert cli("backup").returncode == 0

    client = _raw_s3(s3_bucket)
    classes = {
        item["Key"].split("/")[0]: item.get("StorageClass", "STANDARD")
        for item in client.list_objects_v2(Bucket=s3_bucket.target["bucket"])["Contents"]
    }
    assert classes.pop("data") == "DEEP_ARCHIVE"
    assert set(classes.values()) == {"STANDARD"}  # what snapshots, ls and check read stays readable at once

    assert cli("snapshots").returncode == 0 and cli("ls", "latest").returncode == 0
    assert cli("check").returncode == 0
    check = cli("check", "--read-data", "--poll-interval", "0.1")
    assert check.returncode == 0 and b"warmed up" in check.stderr, check.stderr
    restore = cli("restore", "latest", str(tmp_path / "out"), "--poll-interval", "0.1")
    assert restore.returncode == 0, restore.stderr
    assert b"warm" in restore.stderr + restore.stdout
    assert_same_tree(data, tmp_path / "out" / str(data).lstrip("/"))


def check_passes(cli: CLI) -> bool:
    return cli("check", "--read-data").returncode == 0


def _raw_s3(bucket: CloudBucket) -> Any:
    return raw_s3_client(bucket.target["endpoint"], "eu-west-1")


# ---- bad input: one line naming the target, a documented exit code, nothing half-done ----------------


def _one_line_error(done: Any, code: int, *needles: str) -> None:
    err = done.stderr.decode()
    assert done.returncode == code, err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_unknown_bucket(s3_bucket: CloudBucket, tmp_path: Path, data: Path) -> None:
    cli = cli_for(tmp_path, {**s3_bucket.target, "bucket": "no-such-bucket-here"})
    _one_line_error(cli("init"), 14, "aws-eu", "no-such-bucket-here", "does not exist")


def test_bucket_without_object_lock(moto_server: Any, s3_bucket: CloudBucket, tmp_path: Path, data: Path) -> None:
    _raw_s3(s3_bucket).create_bucket(
        Bucket="plain-bucket-no-lock", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    cli = cli_for(tmp_path, {**s3_bucket.target, "bucket": "plain-bucket-no-lock"})
    _one_line_error(cli("init"), 10, "aws-eu", "Object Lock", "lock = false")
    assert "Contents" not in _raw_s3(s3_bucket).list_objects_v2(Bucket="plain-bucket-no-lock")  # nothing written

    cli.write_config(cloud_config(tmp_path, {**s3_bucket.target, "bucket": "plain-bucket-no-lock", "lock": False}))
    assert cli("init").returncode == 0  # the explicit opt-out works


def test_unreachable_endpoint(s3_bucket: CloudBucket, tmp_path: Path, data: Path) -> None:
    cli = cli_for(tmp_path, {**s3_bucket.target, "endpoint": "http://127.0.0.1:9", "retries": 1})
    _one_line_error(cli("init"), 14, "aws-eu", "127.0.0.1:9")


@pytest.mark.parametrize(
    "content, message",
    [(b"not json", "expected JSON"), (b'{"access_key_id": "x"}', "secret_access_key")],
)
def test_bad_credentials_file(s3_bucket: CloudBucket, tmp_path: Path, data: Path, content: bytes, message: str) -> None:
    credentials = tmp_path / "bad.json"
    credentials.write_bytes(content)
    credentials.chmod(0o600)
    cli = cli_for(tmp_path, {**s3_bucket.target, "credentials_file": str(credentials)})
    _one_line_error(cli("init"), 10, "aws-eu", message)


def test_missing_credentials_file(s3_bucket: CloudBucket, tmp_path: Path, data: Path) -> None:
    cli = cli_for(tmp_path, {**s3_bucket.target, "credentials_file": str(tmp_path / "nope.json")})
    _one_line_error(cli("init"), 10, "nope.json")


def test_a_failed_init_leaves_nothing_that_breaks_the_next_run(
    s3_bucket: CloudBucket, tmp_path: Path, data: Path
) -> None:
    cli = cli_for(tmp_path, {**s3_bucket.target, "endpoint": "http://127.0.0.1:9", "retries": 0})
    assert cli("init").returncode == 14
    cli.write_config(cloud_config(tmp_path, s3_bucket.target))
    assert cli("init").returncode == 0
    assert cli("backup").returncode == 0
