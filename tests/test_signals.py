"""How a command ends when the reader of its output goes away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import CLI, PASSPHRASE, basic_config


def start(cli: CLI, *args: str, unbuffered: bool = True) -> subprocess.Popen[bytes]:
    """``coldvault --quiet ARGS`` in the background, as CLI runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDVAULT_") and k != "PYTHONUNBUFFERED"}
    env.update(COLDVAULT_PASSPHRASE=PASSPHRASE, XDG_STATE_HOME=str(cli.root / "state"))
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    argv = [sys.executable, "-m", "coldvault", "--config", str(cli.config), "--quiet", *args]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("buffered", [True, False])
@pytest.mark.parametrize("args", [("ls", "latest", "--source", "files"), ("snapshots",)])
def test_a_reader_gone_stops_the_output_quietly(tmp_path: Path, args: tuple[str, ...], buffered: bool) -> None:
    # `coldvault ls latest | head`: buffered, the output is written at the end; unbuffered, as it goes.
    (tmp_path / "data").mkdir()
    for i in range(200):
        (tmp_path / "data" / f"file{i}").write_text(str(i))
    cli = CLI(tmp_path)
    cli.write_config(basic_config(tmp_path))
    assert cli("init").returncode == 0 and cli("backup").returncode == 0

    listing = start(cli, *args, unbuffered=not buffered)
    assert listing.stdout is not None
    listing.stdout.close()  # before it writes anything
    _, stderr = listing.communicate(timeout=60)
    assert (listing.returncode, stderr) == (16, b"")
