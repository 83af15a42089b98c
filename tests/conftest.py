"""Cloud emulators for the whole test session: started on first use, on free loopback ports, stopped at the end.

A test that needs a clean bucket asks for ``bucket_name`` and creates it on the emulator
it uses; emulators are shared across tests because each takes a second or more to start.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from coldvault import emulators


def _serve(emulator: emulators.Emulator) -> Iterator[emulators.Emulator]:
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[emulators.Emulator]:
    yield from _serve(emulators.moto())


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[emulators.Emulator]:
    yield from _serve(emulators.fake_gcs())


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[emulators.Emulator]:
    yield from _serve(emulators.azurite())


@pytest.fixture
def bucket_name() -> str:
    """A fresh name that is valid as an S3 bucket, a GCS bucket and an Azure container."""
    return f"cv-test-{uuid.uuid4().hex[:20]}"
