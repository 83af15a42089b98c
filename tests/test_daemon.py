"""`coldvault daemon` as systemd runs it: notify socket, watchdog, SIGHUP reload, SIGTERM, and --once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from processes import alive
from test_cli import CLI, PASSPHRASE
from test_replication_cli import config


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "file").write_bytes(os.urandom(100_000))
    tool = CLI(tmp_path)
    tool.write_config(config(tmp_path))
    assert tool("init").returncode == 0
    return tool


def start_daemon(cli: CLI, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``coldvault daemon ARGS`` in the background, with the passphrase and state directory CLI uses."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("COLDVAULT_")}
    full_env.update(COLDVAULT_PASSPHRASE=PASSPHRASE, XDG_STATE_HOME=str(cli.root / "state"), **(env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "coldvault", "--config", str(cli.config), "daemon", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def twelve_hours_away() -> str:
    """A daily slot as far from now as a day allows, in local time as the daemon reads cron."""
    return f"0 {(datetime.now().hour + 12) % 24} * * *"


def config_with_every_job_at(root: Path, slot: str, daemon: str = "") -> str:
    """The config with every job at ``slot`` and ``daemon`` added to its [daemon] table.

    For two ``--once`` runs in a row: with the defaults (sync @hourly, the others @daily or @weekly),
    a slot could fall between them and start jobs that the second run must not.
    """
    jobs = "".join(f'{job} = "{slot}"\n' for job in ("drill", "scrub", "sync", "forget", "maintain"))
    # The shared config ends in its one [[sources]] table, which the source's schedule joins.
    return config(root) + f'schedule = "{slot}"\n\n[daemon]\n{jobs}{daemon}'


def test_once_runs_every_job_in_order_and_remembers_it(cli: CLI, tmp_path: Path) -> None:
    slot = twelve_hours_away()
    cli.write_config(config_with_every_job_at(tmp_path, slot))
    done = cli("daemon", "--once")
    assert done.returncode == 0, done.stderr
    log = done.stderr.decode().splitlines()
    started = [line.removeprefix("<6>").split(":")[0] for line in log if line.endswith(": started")]
    assert started == ["backup", "forget", "sync", "maintain", "drill", "scrub"]
    ledger = json.loads((tmp_path / "state" / "daemon.json").read_text())
    assert set(ledger) == {"backup:files", "forget", "sync", "maintain", "drill", "scrub"}
    assert all(job["last_exit"] == 0 and job["last_success"] for job in ledger.values())
    assert len(list((tmp_path / "state" / "reports").glob("*.json"))) == 1

    again = cli("daemon", "--once")  # nothing is due again before the slot, 11 hours away or more
    assert again.returncode == 0 and b"started" not in again.stderr

    status = json.loads(cli("status", "--json").stdout)
    jobs = {j["job"]: j for j in status["jobs"]}
    assert jobs["drill"]["schedule"] == slot and jobs["drill"]["last_exit"] == 0
    assert jobs["sync"]["next_run"] > jobs["sync"]["last_run"]
    assert b"NEXT RUN" in cli("status").stdout


def test_a_failing_job_is_logged_with_its_exit_code_and_fails_once(cli: CLI, tmp_path: Path) -> None:
    (tmp_path / "data").rename(tmp_path / "gone")
    done = cli("daemon", "--once")
    assert done.returncode == 1
    assert b"<3>backup:files: failed with exit code 15" in done.stderr


def test_under_systemd_it_notifies_pings_reloads_and_stops(cli: CLI, tmp_path: Path) -> None:
    assert cli("daemon", "--once").returncode == 0  # everything ran: the service starts idle
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(address)
        notify.settimeout(10)
        daemon = start_daemon(
            cli,
            env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"},  # a ping at least every half second
        )
        try:
            messages = [notify.recv(4096).decode()]
            assert messages[0].startswith("READY=1")
            pings = 0
            while pings < 3:  # the socket's timeout fails the test if the loop stops pinging
                pings += notify.recv(4096) == b"WATCHDOG=1"

            cli.config.write_text("this is not toml [")
            daemon.send_signal(signal.SIGHUP)
            seen = ""
            while "READY=1" not in seen:
                seen += notify.recv(4096).decode() + "\n"
            assert "RELOADING=1" in seen and "MONOTONIC_USEC=" in seen
            assert daemon.poll() is None, "an invalid config does not stop the service"

            daemon.send_signal(signal.SIGTERM)
            seen = ""
            while "STOPPING=1" not in seen:
                seen += notify.recv(4096).decode() + "\n"
            assert daemon.wait(timeout=10) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
    stderr = daemon.stderr.read().decode() if daemon.stderr else ""
    assert "reload refused, still running the previous config" in stderr
    assert "Traceback" not in stderr


def test_metrics_are_served_and_no_secret_is_written_anywhere(cli: CLI, tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from coldvault.emulators import free_port

    port = free_port()
    cli.write_config(config(tmp_path) + f'\n[daemon]\nmetrics = "127.0.0.1:{port}"\n')
    daemon = start_daemon(cli, "--log-json")
    try:
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        deadline = time.monotonic() + 60
        jobs = ("backup:files", "forget", "sync", "maintain", "drill", "scrub")
        while not all(("coldvault_job_last_success_timestamp_seconds", (("job", j),)) in samples for j in jobs):
            assert time.monotonic() < deadline and daemon.poll() is None, samples
            time.sleep(0.3)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                    text = answer.read().decode()
            except OSError:
                continue
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
        assert samples[("coldvault_drill_pass", (("target", "far"),))] == 1
        assert samples[("coldvault_rpo_seconds", (("source", "files"),))] >= 0
        assert samples[("coldvault_uploaded_bytes_total", (("source", "files"),))] > 0
        assert samples[("coldvault_target_lag_objects", (("target", "far"),))] == 0
        assert ("coldvault_target_last_snapshot_timestamp_seconds", (("target", "near"),)) in samples
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    logs = [json.loads(line) for line in stderr.decode().splitlines()]
    assert {"time", "level", "message"} <= set(logs[0])

    secret = PASSPHRASE.encode()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert secret not in stderr and secret not in text.encode()
    assert not [p for p in written if secret in p.read_bytes()], "the passphrase reached a file"


def test_the_webhook_hears_of_every_job_and_a_failed_one_is_retried(cli: CLI, tmp_path: Path) -> None:
    import http.server
    import threading

    heard: list[tuple[str, str]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the standard library's name
            heard.append((self.path, self.rfile.read(int(self.headers["Content-Length"])).decode()))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hook = f"http://127.0.0.1:{server.server_port}/ping/secret-token"
        daemon = f'webhook = "{hook}"\nretry_delay = 0\n'
        cli.write_config(config_with_every_job_at(tmp_path, twelve_hours_away(), daemon))
        (tmp_path / "data").rename(tmp_path / "gone")
        done = cli("daemon", "--once")
        assert done.returncode == 1
        assert ("/ping/secret-token/fail", "backup:files: failed with exit code 15") in heard
        assert ("/ping/secret-token", "drill: ok") in heard
        assert b"secret-token" not in done.stderr, "the webhook URL may carry a token: never logged"

        (tmp_path / "gone").rename(tmp_path / "data")
        heard.clear()
        again = cli("daemon", "--once")  # the failed backup runs again at once (retry_delay = 0)
        assert again.returncode == 0 and heard == [("/ping/secret-token", "backup:files: ok")]
    finally:
        server.shutdown()


def test_sigterm_during_a_backup_stops_cleanly_and_the_next_run_resumes(cli: CLI, tmp_path: Path) -> None:
    for i in range(24):
        (tmp_path / "data" / f"big{i}").write_bytes(os.urandom(2 << 20))
    cli.write_config(config(tmp_path) + '\n[daemon]\nretry_delay = 0\nmetrics = "off"\n')
    daemon = start_daemon(cli)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "near" / "data").rglob("*")) if (tmp_path / "near" / "data").exists() else True:
        assert time.monotonic() < deadline and daemon.poll() is None
        time.sleep(0.05)
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=60) == 0
    stderr = daemon.stderr.read().decode() if daemon.stderr else ""
    assert "stopping: waiting for 1 running jobs" in stderr
    ledger = json.loads((tmp_path / "state" / "daemon.json").read_text())
    assert ledger["backup:files"]["last_exit"] not in (0, None), "the interrupted backup is recorded as such"
    assert not (tmp_path / "near" / "snapshots").exists() or not list((tmp_path / "near" / "snapshots").iterdir())

    done = cli("daemon", "--once")  # resumes: the interrupted backup is due again at once
    assert done.returncode == 0, done.stderr
    assert cli("check", "--read-data").returncode == 0
    assert len(list((tmp_path / "near" / "snapshots").iterdir())) == 1


def test_sigterm_to_once_stops_its_running_jobs_and_starts_no_more(cli: CLI, tmp_path: Path) -> None:
    dump = f"sh -c 'echo $$ > {tmp_path}/dump.pid; echo start; exec sleep 300'"
    cli.write_config(
        config(tmp_path) + f'\n[[sources]]\nname = "db"\ncommand = "{dump}"\n\n[daemon]\nmetrics = "off"\n'
    )
    once = start_daemon(cli, "--once")
    pid_file = tmp_path / "dump.pid"
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text().endswith("\n")):
        assert time.monotonic() < deadline and once.poll() is None
        time.sleep(0.05)
    once.send_signal(signal.SIGTERM)
    _, stderr = once.communicate(timeout=60)
    assert once.returncode == 130, stderr
    assert not alive(int(pid_file.read_text())), "the dump command was left running"
    ledger = json.loads((tmp_path / "state" / "daemon.json").read_text())
    assert ledger["backup:db"]["last_exit"] == 130
    assert ledger["sync"]["last_run"] is None and ledger["drill"]["last_run"] is None, "a later phase started"
