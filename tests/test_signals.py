"""How a command ends when told to stop (SIGTERM, SIGHUP) or when the reader of its output goes away."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from processes import alive
from test_cli import CLI, PASSPHRASE, basic_config

from coldvault.cli import main


def start(
    cli: CLI, *args: str, unbuffered: bool = True, ignore: tuple[signal.Signals, ...] = ()
) -> subprocess.Popen[bytes]:
    """``coldvault --quiet ARGS`` in the background, as CLI runs it; ``ignore``: as nohup leaves SIGHUP."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDVAULT_") and k != "PYTHONUNBUFFERED"}
    env.update(COLDVAULT_PASSPHRASE=PASSPHRASE, XDG_STATE_HOME=str(cli.root / "state"))
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"

    def ignored() -> None:
        # As a shell leaves them, whatever this test run inherited (under nohup, SIGHUP is ignored).
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN if signum in ignore else signal.SIG_DFL)

    argv = [sys.executable, "-m", "coldvault", "--config", str(cli.config), "--quiet", *args]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=ignored)


def wait_for(condition: Callable[[], object], process: subprocess.Popen[bytes], poll: float = 0.02) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(poll)


@pytest.fixture
def dumping(tmp_path: Path) -> CLI:
    """A repository whose 'db' source is a dump command that writes its pid, a line, then waits."""
    (tmp_path / "data").mkdir()
    cli = CLI(tmp_path)
    cli.write_config(
        basic_config(tmp_path, command=f"sh -c 'echo $$ > {tmp_path}/dump.pid; echo start; exec sleep 300'")
    )
    assert cli("init").returncode == 0
    return cli


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_ends_a_dump_like_ctrl_c(dumping: CLI, tmp_path: Path, signum: signal.Signals) -> None:
    backup = start(dumping, "backup", "--source", "db")
    pid_file = tmp_path / "dump.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"), backup)
    dump = int(pid_file.read_text())
    backup.send_signal(signum)
    _, stderr = backup.communicate(timeout=60)
    assert backup.returncode == 130
    assert stderr.decode() == f"coldvault: interrupted by {signum.name}\n"
    assert not alive(dump), "the dump command was left running"
    assert dumping("snapshots", "--json").stdout.strip() == b"[]"


def test_an_ignored_hangup_stays_ignored(dumping: CLI, tmp_path: Path) -> None:
    # As under nohup: the parent ignored SIGHUP, so coldvault must not take it as a stop.
    backup = start(dumping, "backup", "--source", "db", ignore=(signal.SIGHUP,))
    pid_file = tmp_path / "dump.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"), backup)
    backup.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert backup.poll() is None
    backup.send_signal(signal.SIGTERM)
    assert backup.wait(timeout=60) == 130


def test_a_dump_killed_by_a_signal_is_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "coldvault.toml").write_text(basic_config(tmp_path, command="sh -c 'echo partial; kill -KILL $$'"))
    monkeypatch.setenv("COLDVAULT_CONFIG", str(tmp_path / "coldvault.toml"))
    monkeypatch.setenv("COLDVAULT_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert main(["--quiet", "init"]) == 0
    capsys.readouterr()
    assert main(["--quiet", "backup", "--source", "db"]) == 15
    assert "'sh' was killed by signal SIGKILL; no snapshot was committed" in capsys.readouterr().err


def test_a_stopped_restore_takes_its_forked_child_with_it(tmp_path: Path) -> None:
    # Files of 1 MiB and more are restored by a forked child (engine.forked) when reading one local
    # directory; more of them than this process takes on at once (16), so that the child gets some.
    (tmp_path / "data").mkdir()
    for i in range(40):
        (tmp_path / "data" / f"big{i}").write_bytes(os.urandom(2 << 20))
    cli = CLI(tmp_path)
    cli.write_config(basic_config(tmp_path))
    assert cli("init").returncode == 0 and cli("backup", "--source", "files").returncode == 0

    restore = start(cli, "restore", "latest", "--source", "files", str(tmp_path / "out"))
    children: list[int] = []

    def forked() -> bool:
        for task in Path(f"/proc/{restore.pid}/task").glob("*/children"):
            with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
                children.extend(int(pid) for pid in task.read_text().split())
        return bool(children)

    wait_for(forked, restore, poll=0.001)
    # Stopped, the child cannot finish, so the restore is still under way when the signal comes; a
    # moment later, so that it comes after the fork (at the fork itself, Python drops what it raises).
    os.kill(children[0], signal.SIGSTOP)
    time.sleep(0.1)
    restore.send_signal(signal.SIGTERM)
    _, stderr = restore.communicate(timeout=60)
    assert restore.returncode == 130 and stderr.decode() == "coldvault: interrupted by SIGTERM\n"
    assert not alive(children[0])


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
