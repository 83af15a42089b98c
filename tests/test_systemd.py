"""The unit file: systemd-analyze finds nothing to say about it, and scores its exposure at 2.0 or better."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[1] / "systemd" / "coldvault.service"
INSTALLED = "/opt/coldvault/bin/coldvault"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit as shipped, but starting this checkout's coldvault: verify checks that ExecStart exists,
    and /opt/coldvault is where OPERATIONS.md installs it, not where the tests run."""
    coldvault = Path(sys.executable).with_name("coldvault")
    text = UNIT.read_text()
    assert INSTALLED in text
    copy = tmp_path / "coldvault.service"
    copy.write_text(text.replace(INSTALLED, str(coldvault)))
    return copy


def test_verify_prints_nothing(unit: Path) -> None:
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys and other warnings, so any output counts as a failure
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stdout + done.stderr


def test_the_exposure_score_is_2_or_better(unit: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= 2.0, done.stdout


def test_secrets_come_as_credentials_not_environment() -> None:
    text = UNIT.read_text()
    assert "LoadCredential=passphrase:" in text
    assert not re.search(r"^\s*Environment(File)?=", text, re.M)
    assert "Type=notify" in text and "WatchdogSec=" in text and "ExecReload=" in text
