"""`coldvault report`: the signing key, the local chain, and offline verification with only the public key."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_cli import CLI, basic_config

from coldvault.engine.reports import ReportLog, load_signing_key
from coldvault.repo.report import sign_report


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    tool = CLI(tmp_path)
    tool.write_config(basic_config(tmp_path))
    return tool


def key_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "coldvault" / "drill-signing-key.pem"


def make_chain(tmp_path: Path, count: int) -> Path:
    """Reports as a drill appends them (the drill itself is another command)."""
    log = ReportLog(tmp_path / "state" / "coldvault" / "reports")
    key = load_signing_key(key_path(tmp_path))
    for i in range(count):
        log.append(key, {"created": f"2026-11-2{i}T03:00:00+00:00", "verdict": "pass" if i != 1 else "fail"})
    return log.folder


def offline(*args: str) -> subprocess.CompletedProcess[bytes]:
    """As an auditor runs it: no config, no passphrase, no state directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDVAULT_")}
    done = subprocess.run([sys.executable, "-m", "coldvault", *args], capture_output=True, env=env, timeout=60)
    assert b"Traceback" not in done.stderr
    return done


def test_pubkey_creates_the_signing_key_once_and_prints_its_public_half(cli: CLI, tmp_path: Path) -> None:
    first = cli("report", "pubkey", passphrase=None)
    assert first.returncode == 0
    assert first.stdout.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert b"created the drill signing key" in first.stderr
    assert stat.S_IMODE(key_path(tmp_path).stat().st_mode) == 0o600
    second = cli("report", "pubkey", passphrase=None)
    assert second.stdout == first.stdout and not second.stderr


def test_list_show_and_verify_the_chain_offline(cli: CLI, tmp_path: Path) -> None:
    assert cli("report", "pubkey", "--output", str(tmp_path / "drills.pub"), passphrase=None).returncode == 0
    folder = make_chain(tmp_path, 3)

    listed = json.loads(cli("report", "list", "--json", passphrase=None).stdout)
    assert [r["sequence"] for r in listed] == [1, 2, 3] and listed[1]["verdict"] == "fail"
    shown = json.loads(cli("report", "show", "2", passphrase=None).stdout)
    assert shown["previous"] == listed[0]["id"] and shown["body"]["verdict"] == "fail"

    verified = offline("report", "verify", str(folder), "--chain", "--public-key", str(tmp_path / "drills.pub"))
    assert verified.returncode == 0, verified.stderr
    assert "3 reports, 1 to 3" in verified.stdout.decode() and listed[2]["id"] in verified.stdout.decode()
    one = offline("report", "verify", str(next(folder.iterdir())), "--public-key", str(tmp_path / "drills.pub"))
    assert one.returncode == 0 and one.stdout.startswith(b"ok: ")


@pytest.mark.parametrize("tampering", ["edit", "remove", "insert", "reorder"])
def test_every_tampering_fails_the_chain(cli: CLI, tmp_path: Path, tampering: str) -> None:
    assert cli("report", "pubkey", "--output", str(tmp_path / "drills.pub"), passphrase=None).returncode == 0
    folder = make_chain(tmp_path, 4)
    copy = tmp_path / "audit"
    shutil.copytree(folder, copy)
    files = sorted(copy.iterdir())
    if tampering == "edit":
        files[1].write_bytes(files[1].read_bytes().replace(b'"fail"', b'"pass"'))
    elif tampering == "remove":
        files[2].unlink()
    elif tampering == "insert":  # a report 3 signed by another key, slipped in after report 2
        reports = ReportLog(folder).reports(load_signing_key(key_path(tmp_path)).public_key())
        forged = sign_report(Ed25519PrivateKey.generate(), {"verdict": "pass"}, previous=reports[1])
        (copy / "000003-forged.json").write_bytes(forged.data)
    else:  # reorder: swap the contents of two reports under each other's names
        second, third = files[1].read_bytes(), files[2].read_bytes()
        files[1].write_bytes(third)
        files[2].write_bytes(second)
        (copy / "000005-late.json").write_bytes(second)  # and claim an old report again at the end
    done = offline("report", "verify", str(copy), "--chain", "--public-key", str(tmp_path / "drills.pub"))
    assert done.returncode == 13, done.stdout
    assert done.stdout.decode().startswith("error: ")
    assert done.stderr.decode().count("\n") == 1


def test_bad_public_key_is_a_one_line_usage_error(tmp_path: Path) -> None:
    (tmp_path / "not.pem").write_text("hello")
    done = offline("report", "verify", str(tmp_path), "--public-key", str(tmp_path / "not.pem"))
    assert done.returncode == 2
    assert done.stderr.decode().strip() == (
        f"coldvault: {tmp_path / 'not.pem'} is not a PEM public key; export one with 'coldvault report pubkey'"
    )
