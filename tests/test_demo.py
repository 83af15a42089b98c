"""`make demo`, the README's first command, end to end against the three emulators."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coldvault.emulators import AZURITE_KEY

pytestmark = pytest.mark.emulator


def test_the_demo_runs_the_whole_mission(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDVAULT_")}
    env["COLDVAULT_DEMO_OUT"] = str(tmp_path / "demo-out")
    done = subprocess.run(
        [sys.executable, "-m", "coldvault.demo"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "demo passed in" in done.stdout
    assert "chain verified: 2 reports" in done.stdout
    pages = list((tmp_path / "demo-out" / "state" / "reports").glob("*.html"))
    assert len(pages) == 2 and str(pages[0].parent) in done.stdout
    assert "Traceback" not in done.stderr
    # No secret anywhere but in its own file: not in the output, the state, the reports, the targets' copies.
    out = tmp_path / "demo-out"
    secrets = [(out / "secrets" / "passphrase").read_bytes(), b"test-secret", AZURITE_KEY.encode()]
    for secret in secrets:
        assert secret.decode() not in done.stdout + done.stderr
        leaks = [p for p in out.rglob("*") if p.is_file() and "secrets" not in p.parts and secret in p.read_bytes()]
        assert not leaks, leaks
