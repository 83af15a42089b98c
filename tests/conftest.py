"""Cloud emulators for the whole test session: started on first use, on free loopback ports, stopped at the end.

A test that needs a clean bucket asks for ``bucket_name`` and creates it on the emulator
it uses; emulators are shared across tests because each takes a second or more to start.
"""

from __future__ import annotations

import errno
import importlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from pydantic import TypeAdapter

from coldvault import emulators
from coldvault.config import write_secret_file
from coldvault.config.model import Target
from coldvault.storage import direct_io
from coldvault.storage.protocol import Store

# Hypothesis fails any example slower than 200 ms by default, and on a loaded CI machine a fast one can
# be: the properties are under test, not their speed.  Loaded here, before any test module is imported,
# so that every @settings in the suite starts from it.
settings.register_profile("no_deadline", deadline=None)
settings.load_profile("no_deadline")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[emulators.Emulator]:
    with emulators.running(emulators.moto()) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[emulators.Emulator]:
    with emulators.running(emulators.fake_gcs()) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[emulators.Emulator]:
    with emulators.running(emulators.azurite()) as emulator:
        yield emulator


@pytest.fixture
def bucket_name() -> str:
    """A fresh name that is valid as an S3 bucket, a GCS bucket and an Azure container."""
    return f"cv-test-{uuid.uuid4().hex[:20]}"


@dataclass
class CloudBucket:
    """A fresh bucket (or container) on an emulator: the target table for a config, and a raw SDK handle."""

    type: str
    target: dict[str, Any]
    raw_put: Callable[[str, bytes], None]  # writes behind coldvault's back, as a provider's bit rot would

    def model(self, **overrides: Any) -> Target:
        return TypeAdapter(Target).validate_python({**self.target, **overrides})

    def adapter(self, **overrides: Any) -> Store:
        module = importlib.import_module(f"coldvault.storage.{self.type}")
        return module.connect(self.model(**overrides))


def raw_s3_client(endpoint: str, region: str) -> Any:
    """boto3 on moto, behind coldvault's back: to look at or damage what it stored."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=emulators.MOTO_ACCESS_KEY,
        aws_secret_access_key=emulators.MOTO_SECRET_KEY,
    )


def make_s3_bucket(server: emulators.Emulator, name: str, region: str, target: str, tmp_path: Path) -> CloudBucket:
    """A bucket with Object Lock (hence versioning), and a credentials file as OPERATIONS.md shows."""

    credentials = tmp_path / f"aws-{target}.json"
    write_secret_file(
        credentials, b'{"access_key_id": "AKIATEST", "secret_access_key": "test-secret"}', what="S3 credentials"
    )
    emulators.create_s3_bucket(server.endpoint, name, region)
    client = raw_s3_client(server.endpoint, region)
    settings = {
        "name": target,
        "type": "s3",
        "bucket": name,
        "region": region,
        "endpoint": server.endpoint,
        "credentials_file": str(credentials),
        "lock": {"mode": "compliance", "days": 1},
    }
    return CloudBucket("s3", settings, lambda key, data: client.put_object(Bucket=name, Key=key, Body=data))


@pytest.fixture
def s3_bucket(moto_server: emulators.Emulator, bucket_name: str, tmp_path: Path) -> CloudBucket:
    """In eu-west-1."""
    return make_s3_bucket(moto_server, bucket_name, "eu-west-1", "aws-eu", tmp_path)


def make_gcs_bucket(server: emulators.Emulator, name: str, target: str) -> CloudBucket:
    """The emulator cannot enforce retention (OPERATIONS.md), so the target is configured without lock."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    emulators.create_gcs_bucket(server.endpoint, name)
    client = storage.Client(
        project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": server.endpoint}
    )
    bucket = client.bucket(name)
    settings = {"name": target, "type": "gcs", "bucket": name, "endpoint": server.endpoint, "lock": False}
    return CloudBucket("gcs", settings, lambda key, data: bucket.blob(key).upload_from_string(data))


@pytest.fixture
def gcs_bucket(gcs_server: emulators.Emulator, bucket_name: str) -> CloudBucket:
    return make_gcs_bucket(gcs_server, bucket_name, "gcs-us")


@pytest.fixture
def azure_container(azurite_server: emulators.Emulator, bucket_name: str, tmp_path: Path) -> CloudBucket:
    """Azurite ignores immutability policies (OPERATIONS.md), so the target is configured without lock."""
    from azure.storage.blob import BlobServiceClient

    connection = emulators.azurite_connection_string(azurite_server.endpoint)
    credentials = tmp_path / "azure.conn"
    write_secret_file(credentials, connection.encode(), what="Azure credentials")
    emulators.create_azure_container(azurite_server.endpoint, bucket_name)
    container = BlobServiceClient.from_connection_string(connection).get_container_client(bucket_name)
    target = {
        "name": "azure-we",
        "type": "azure",
        "container": bucket_name,
        "credentials_file": str(credentials),
        "lock": False,
    }
    return CloudBucket(
        "azure", target, lambda key, data: container.get_blob_client(key).upload_blob(data, overwrite=True)
    )


@pytest.fixture(params=["s3", "gcs", "azure"])
def cloud_bucket(request: pytest.FixtureRequest) -> CloudBucket:
    """Each cloud in turn, for tests that every cloud target must pass."""
    return request.getfixturevalue({"s3": "s3_bucket", "gcs": "gcs_bucket", "azure": "azure_container"}[request.param])


# ---- real clouds: the same suite, when environment variables name a bucket -------------------------
# Objects go under a fresh prefix and stay locked for a day (lock days = 1); credentials come from
# each SDK's standard chain (or AZURE_STORAGE_CONNECTION_STRING).  Skipped when the variable is unset.


def _real(variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        pytest.skip(f"set {variable} to run this against a real bucket")
    return value


@pytest.fixture
def real_s3_bucket() -> CloudBucket:
    import boto3

    bucket = _real("COLDVAULT_TEST_S3_BUCKET")
    region = os.environ.get("COLDVAULT_TEST_S3_REGION")
    prefix = f"coldvault-test/{uuid.uuid4().hex}/"
    client = boto3.client("s3", region_name=region)
    target = {"name": "real-s3", "type": "s3", "bucket": bucket, "region": region, "prefix": prefix}
    target["lock"] = {"mode": "compliance", "days": 1}
    return CloudBucket("s3", target, lambda key, data: client.put_object(Bucket=bucket, Key=key, Body=data))


@pytest.fixture
def real_gcs_bucket() -> CloudBucket:
    from google.cloud import storage

    name = _real("COLDVAULT_TEST_GCS_BUCKET")
    bucket = storage.Client().bucket(name)
    prefix = f"coldvault-test/{uuid.uuid4().hex}/"
    target = {"name": "real-gcs", "type": "gcs", "bucket": bucket.name, "prefix": prefix}
    target["lock"] = {"mode": "compliance", "days": 1}
    return CloudBucket("gcs", target, lambda key, data: bucket.blob(key).upload_from_string(data))


@pytest.fixture
def real_azure_container() -> CloudBucket:
    from azure.storage.blob import ContainerClient

    name = _real("COLDVAULT_TEST_AZURE_CONTAINER")
    container = ContainerClient.from_connection_string(_real("AZURE_STORAGE_CONNECTION_STRING"), name)
    prefix = f"coldvault-test/{uuid.uuid4().hex}/"
    target = {"name": "real-azure", "type": "azure", "container": name, "prefix": prefix}
    target["lock"] = {"mode": "compliance", "days": 1}
    return CloudBucket(
        "azure", target, lambda key, data: container.get_blob_client(key).upload_blob(data, overwrite=True)
    )


@pytest.fixture
def refusing_filesystem(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mocked: the kernel's refusal of O_DIRECT (EINVAL, as tmpfs before Linux 6.6 and some FUSE
    filesystems answer) cannot be produced on demand on this machine's filesystems."""
    real_fcntl = direct_io.fcntl.fcntl

    def refusing_fcntl(fd: int, command: int, arg: int = 0) -> Any:
        if command == direct_io.fcntl.F_SETFL and arg & direct_io._O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fcntl(fd, command, arg)

    monkeypatch.setattr(direct_io.fcntl, "fcntl", refusing_fcntl)
