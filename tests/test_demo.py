"""`make demo`, the README's first command, end to end against the three emulators."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
