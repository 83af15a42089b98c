"""End-to-end: the real `coldvault` command in a subprocess, as a user runs it."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coldvault.storage.handle import object_name

PASSPHRASE = "correct horse battery staple"


class CLI:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "coldvault.toml"
        # The cache lives in root/state; made now, so its creation does not change root's mtime mid-test.
        (root / "state").mkdir(exist_ok=True)
        self.outputs: list[str] = []

    def write_config(self, text: str) -> None:
        self.config.write_text(text)

    def __call__(self, *args: str, passphrase: str | None = PASSPHRASE, env: dict[str, str] | None = None):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("COLDVAULT_")}
        full_env["XDG_STATE_HOME"] = str(self.root / "state")  # the cache, out of the real home
        if passphrase is not None:
            full_env["COLDVAULT_PASSPHRASE"] = passphrase
        full_env.update(env or {})
        done = subprocess.run(
            [sys.executable, "-m", "coldvault", "--config", str(self.config), *args],
            capture_output=True,
            env=full_env,
            timeout=120,
        )
        self.outputs += [done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")]
        assert "Traceback" not in done.stderr.decode(errors="replace"), done.stderr
        return done


def basic_config(root: Path, *, command: str = "seq 1 50000") -> str:
    return f"""
[repository.format]
chunk_min_size = "16KiB"
chunk_avg_size = "64KiB"
chunk_max_size = "256KiB"
pack_size = "512KiB"

[[targets]]
name = "primary"
type = "local"
path = "{root}/repo"

[[sources]]
name = "files"
paths = ["{root}/data"]
exclude = ["*.tmp"]

[[sources]]
name = "db"
command = "{command}"
filename = "db.sql"
"""


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("hello\n" * 1000)
    (data / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    (data / "skip.tmp").write_text("excluded")
    os.symlink("a.txt", data / "link")
    tool = CLI(tmp_path)
    tool.write_config(basic_config(tmp_path))
    return tool


@pytest.fixture
def initialised(cli: CLI) -> CLI:
    assert cli("init").returncode == 0
    assert cli("backup").returncode == 0
    return cli


def test_full_round_trip(initialised: CLI, tmp_path: Path) -> None:
    cli = initialised
    snapshots = json.loads(cli("snapshots", "--json").stdout)
    assert sorted(s["source"] for s in snapshots) == ["db", "files"]

    listing = cli("ls", "latest", "--source", "files").stdout.decode()
    assert "a.txt" in listing and "skip.tmp" not in listing and "link -> a.txt" in listing

    assert cli("restore", "latest", str(tmp_path / "out"), "--source", "files").returncode == 0
    restored = tmp_path / "out" / str(tmp_path / "data").lstrip("/")
    assert (restored / "a.txt").read_text() == "hello\n" * 1000
    assert (restored / "sub" / "b.bin").read_bytes() == (tmp_path / "data" / "sub" / "b.bin").read_bytes()
    assert os.readlink(restored / "link") == "a.txt"
    assert not (restored / "skip.tmp").exists()

    dump = cli("restore", "latest", "--source", "db", "--stdout").stdout
    assert dump == subprocess.run(["seq", "1", "50000"], capture_output=True).stdout

    check = cli("check", "--read-data")
    assert check.returncode == 0 and b"no errors" in check.stdout


def test_restore_subtree_only(initialised: CLI, tmp_path: Path) -> None:
    sub = str(tmp_path / "data" / "sub")
    assert initialised("restore", "latest", str(tmp_path / "out"), "--source", "files", "--path", sub).returncode == 0
    restored = tmp_path / "out" / str(tmp_path / "data").lstrip("/")
    assert (restored / "sub" / "b.bin").exists() and not (restored / "a.txt").exists()


def test_second_backup_reuses_unchanged_files(initialised: CLI) -> None:
    second = json.loads(initialised("backup", "--source", "files", "--json").stdout)[0]
    assert second["summary"]["reused_files"] == 2
    # No file data is new.  The listing may be: it records the folders above the source (/tmp, …),
    # whose mtimes change whenever another process creates a file there.
    assert second["summary"]["new_chunks"] <= 1 and second["summary"]["new_bytes"] < 4096
    assert second["parent"] is not None


OBJECT_DIRS = ["keys", "snapshots", "index", "data", "tree"]


@pytest.mark.parametrize("folder", OBJECT_DIRS)
def test_flipping_one_byte_anywhere_is_detected_and_named(initialised: CLI, tmp_path: Path, folder: str) -> None:
    victim = sorted(p for p in (tmp_path / "repo" / folder).rglob("*") if p.is_file())[0]
    victim.chmod(0o644)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40
    victim.write_bytes(bytes(data))

    check = initialised("check", "--read-data")
    assert check.returncode == 13
    assert victim.name[:12] in check.stdout.decode() + check.stderr.decode()


def test_tampered_config_is_refused(initialised: CLI, tmp_path: Path) -> None:
    config = tmp_path / "repo" / "config"
    config.chmod(0o644)
    doc = json.loads(config.read_text())
    doc["sealed"] = doc["sealed"][:-8] + ("A" * 8 if not doc["sealed"].endswith("A" * 8) else "B" * 8)
    config.write_text(json.dumps(doc))
    done = initialised("snapshots")
    assert done.returncode == 13 and b"config" in done.stderr


def test_corrupt_pack_never_restores_silently(initialised: CLI, tmp_path: Path) -> None:
    for pack in (tmp_path / "repo" / "data").rglob("*"):
        if pack.is_file():
            pack.chmod(0o644)
            data = bytearray(pack.read_bytes())
            data[100] ^= 0xFF
            pack.write_bytes(bytes(data))
    done = initialised("restore", "latest", str(tmp_path / "out"), "--source", "files")
    assert done.returncode == 13
    assert b"corrupt" in done.stderr or b"tampered" in done.stderr


@pytest.mark.parametrize(
    ("setup", "args", "code", "needle"),
    [
        ("missing-config", ["snapshots"], 10, b"does not exist"),
        ("bad-toml", ["snapshots"], 10, b"not valid TOML"),
        ("unknown-key", ["snapshots"], 10, b"pth"),
        ("not-initialised", ["snapshots"], 12, b"coldvault init"),
        ("ok", ["init"], 12, b"already holds"),
        ("wrong-passphrase", ["snapshots"], 11, b"wrong passphrase"),
        ("ok", ["restore", "deadbeef", "/tmp/nowhere"], 2, b"no snapshot"),
        ("ok", ["backup", "--source", "nope"], 2, b"no source named"),
        ("ok", ["snapshots", "--source", "nope"], 2, b"no source named 'nope' in the config or in any snapshot"),
        ("ok", ["restore", "latest", "/tmp/nowhere", "--source", "nope"], 2, b"known: db, files"),
        ("failing-command", ["backup", "--source", "db"], 15, b"boom"),
        ("no-passphrase", ["snapshots"], 10, b"COLDVAULT_PASSPHRASE"),
        ("target-is-a-file", ["init"], 14, b"is not a directory"),
        ("ok", ["restore", "latest", "/dev/null/below-a-file", "--source", "files"], 16, b"cannot restore"),
        ("ok", ["restore", "latest", "/dev/null", "--source", "files"], 16, b"/dev/null: it is not a directory"),
    ],
)
def test_user_errors_are_one_line_with_their_exit_code(
    cli: CLI, tmp_path: Path, setup: str, args: list[str], code: int, needle: bytes
) -> None:
    passphrase: str | None = PASSPHRASE
    if setup == "target-is-a-file":
        (tmp_path / "repo").write_text("not a directory")
    elif setup != "not-initialised":
        assert cli("init").returncode == 0
    if args[0] == "restore" and "--source" in args:
        assert cli("backup", "--source", "files").returncode == 0
    if setup == "missing-config":
        cli.config.unlink()
    elif setup == "bad-toml":
        cli.write_config("[[targets]\n")
    elif setup == "unknown-key":
        cli.write_config(basic_config(tmp_path).replace('path = "', 'pth = "', 1))
    elif setup == "wrong-passphrase":
        passphrase = "not it"
    elif setup == "failing-command":
        cli.write_config(basic_config(tmp_path, command="sh -c 'echo boom >&2; exit 3'"))
    elif setup == "no-passphrase":
        passphrase = None
    done = cli(*args, passphrase=passphrase)
    assert done.returncode == code, done.stderr
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and needle in done.stderr, done.stderr
    if setup == "failing-command":
        assert json.loads(cli("snapshots", "--json", "--source", "db").stdout) == []


def test_recovery_key_restores_access_without_any_slot_passphrase(initialised: CLI, tmp_path: Path) -> None:
    cli = initialised
    recovery = tmp_path / "recovery.txt"
    assert cli("key", "export", "--output", str(recovery)).returncode == 0
    assert recovery.stat().st_mode & 0o777 == 0o600

    # The passphrase is forgotten; the recovery key alone lists snapshots and adds a new slot.
    forgotten = {"COLDVAULT_NEW_PASSPHRASE": "a new passphrase"}
    assert cli("snapshots", "--recovery-key-file", str(recovery), passphrase=None).returncode == 0
    assert cli("key", "add", "--recovery-key-file", str(recovery), passphrase=None, env=forgotten).returncode == 0
    assert cli("snapshots", passphrase="a new passphrase").returncode == 0

    slots = json.loads(cli("key", "list", "--json").stdout)
    assert len(slots) == 2
    old = next(s for s in slots if s["current"])["id"]
    assert cli("key", "remove", old[:10]).returncode == 2  # the slot in use is kept
    assert cli("key", "remove", old[:10], passphrase="a new passphrase").returncode == 0
    assert cli("snapshots").returncode == 11
    last = json.loads(cli("key", "list", "--json", passphrase="a new passphrase").stdout)[0]["id"]
    refused = cli("key", "remove", last[:10], "--recovery-key-file", str(recovery), passphrase=None)
    assert refused.returncode == 2 and b"last key slot" in refused.stderr

    mistyped = recovery.read_text().replace("-", "-X", 1)
    recovery.chmod(0o600)
    recovery.write_text(mistyped)
    assert cli("snapshots", "--recovery-key-file", str(recovery), passphrase=None).returncode == 11


def test_key_passwd_replaces_the_slot_in_use(initialised: CLI) -> None:
    done = initialised("key", "passwd", env={"COLDVAULT_NEW_PASSPHRASE": "rotated"})
    assert done.returncode == 0
    assert initialised("snapshots").returncode == 11
    assert initialised("snapshots", passphrase="rotated").returncode == 0


def test_passphrase_file_and_secrets_never_printed(cli: CLI, tmp_path: Path) -> None:
    secret_file = tmp_path / "pass"
    secret_file.write_text("file-passphrase-71d2\n")
    cli.write_config(f'[repository]\npassphrase_file = "{secret_file}"\n' + basic_config(tmp_path))
    for args in (["init"], ["backup"], ["snapshots", "--json"], ["check"], ["key", "list"]):
        assert cli(*args, passphrase=None).returncode == 0
    assert not any("file-passphrase-71d2" in out or PASSPHRASE in out for out in cli.outputs)


def test_two_targets_hold_byte_identical_repositories(tmp_path: Path, cli: CLI) -> None:
    cli.write_config(
        basic_config(tmp_path) + f'\n[[targets]]\nname = "offsite"\ntype = "local"\npath = "{tmp_path}/repo2"\n'
    )
    assert cli("init").returncode == 0 and cli("backup").returncode == 0

    def contents(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    assert contents(tmp_path / "repo") == contents(tmp_path / "repo2")


def test_a_partial_backup_commits_and_exits_3(cli: CLI, tmp_path: Path) -> None:
    # Tests run as root, where permissions cannot make a file unreadable.  /proc/self/mem can be opened
    # but reading it at offset 0 fails with EIO in every process: a deterministic unreadable file.
    cli.write_config(
        basic_config(tmp_path).replace(f'paths = ["{tmp_path}/data"]', f'paths = ["{tmp_path}/data", "/proc/self/mem"]')
    )
    assert cli("init").returncode == 0
    done = cli("backup", "--source", "files", "--json")
    assert done.returncode == 3, done.stderr
    assert b"warning: cannot read /proc/self/mem: Input/output error" in done.stderr
    snapshot = json.loads(done.stdout)[0]
    assert len(snapshot["warnings"]) == 1 and snapshot["summary"]["files"] == 2
    listed = json.loads(cli("snapshots", "--json").stdout)
    assert [s["id"] for s in listed] == [snapshot["id"]]
    assert cli("restore", "latest", str(tmp_path / "out"), "--source", "files").returncode == 0


def test_trees_deeper_than_path_max_are_backed_up(cli: CLI, tmp_path: Path) -> None:
    # Paths longer than PATH_MAX (4096 bytes) cannot be opened by name: the walk uses directory descriptors.
    fd = os.open(tmp_path / "data", os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(22):
        os.mkdir("d" * 200, dir_fd=fd)
        next_fd = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = next_fd
    leaf = os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(leaf, b"found me")
    os.close(leaf)
    os.close(fd)
    assert cli("init").returncode == 0
    done = cli("backup", "--source", "files", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["summary"]["files"] == 3
    listing = cli("ls", "latest", "--source", "files", "--json").stdout.decode().splitlines()
    assert any(json.loads(line)["path"].endswith("/deep.txt") for line in listing)
    assert cli("restore", "latest", str(tmp_path / "out"), "--source", "files").returncode == 0
    fd = os.open(tmp_path / "out" / str(tmp_path / "data").lstrip("/"), os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(22):
        next_fd = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = next_fd
    leaf = os.open("deep.txt", os.O_RDONLY, dir_fd=fd)
    assert os.read(leaf, 100) == b"found me"
    os.close(leaf)
    os.close(fd)


def test_a_source_below_a_symlinked_directory_restores(cli: CLI, tmp_path: Path) -> None:
    # Like /var/run -> /run on Debian: the directories above a source path are recorded as the
    # directories they lead to, never as symlinks with entries below them (which restore refuses).
    (tmp_path / "real" / "app").mkdir(parents=True)
    (tmp_path / "real" / "app" / "pid").write_text("42\n")
    os.symlink(tmp_path / "real", tmp_path / "via")
    cli.write_config(basic_config(tmp_path).replace(f'paths = ["{tmp_path}/data"]', f'paths = ["{tmp_path}/via/app"]'))
    assert cli("init").returncode == 0 and cli("backup", "--source", "files").returncode == 0
    assert cli("restore", "latest", str(tmp_path / "out"), "--source", "files").returncode == 0
    restored = tmp_path / "out" / str(tmp_path).lstrip("/") / "via"
    assert restored.is_dir() and not restored.is_symlink()
    assert (restored / "app" / "pid").read_text() == "42\n"


def test_a_dump_command_never_sees_the_passphrase(cli: CLI, tmp_path: Path) -> None:
    cli.write_config(basic_config(tmp_path, command="sh -c 'env; echo done'"))
    assert cli("init").returncode == 0 and cli("backup", "--source", "db").returncode == 0
    dump = cli("restore", "latest", "--source", "db", "--stdout").stdout
    assert b"done" in dump and PASSPHRASE.encode() not in dump and b"COLDVAULT_" not in dump


@pytest.mark.parametrize("folder", ["snapshots", "index"])
def test_planted_junk_never_blocks_a_restore(initialised: CLI, tmp_path: Path, folder: str) -> None:
    # Write access without delete rights is enough to plant an object that object lock then keeps:
    # reading must step over it with a warning, and check must still report it.
    junk = b"not a coldvault object"
    (tmp_path / "repo" / folder / object_name(junk)).write_bytes(junk)
    done = initialised("restore", "latest", str(tmp_path / "out"), "--source", "files")
    assert done.returncode == 0, done.stderr
    assert b"warning: skipped" in done.stderr and b"check --read-data" in done.stderr
    assert (tmp_path / "out" / str(tmp_path / "data").lstrip("/") / "a.txt").exists()
    assert initialised("snapshots").returncode == 0
    assert initialised("check").returncode == 13


def test_a_damaged_manifest_makes_latest_uncertain_rather_than_older(initialised: CLI, tmp_path: Path) -> None:
    # The damaged manifest may be the newest snapshot: 'latest' must not quietly mean the one before it.
    older = json.loads(initialised("snapshots", "--json", "--source", "files").stdout)[-1]["id"]
    (tmp_path / "data" / "a.txt").write_text("newer\n")
    assert initialised("backup", "--source", "files").returncode == 0
    newest = json.loads(initialised("snapshots", "--json", "--source", "files").stdout)[-1]["id"]
    manifest = tmp_path / "repo" / "snapshots" / newest
    manifest.chmod(0o644)
    data = bytearray(manifest.read_bytes())
    data[len(data) // 2] ^= 0x01
    manifest.write_bytes(bytes(data))
    shutil.rmtree(tmp_path / "state" / "coldvault")  # a new host after a disaster: no cached copy to fall back on

    for selector in ("latest", newest, newest[:8]):
        refused = initialised("restore", selector, str(tmp_path / "out"), "--source", "files")
        assert refused.returncode == 13, (selector, refused.stderr)
        message = refused.stderr.decode()
        assert message.count("\n") == 1 and newest[:8] in message
        assert ("may be newer" in message) == (selector == "latest")
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

    by_id = initialised("restore", older, str(tmp_path / "older"), "--source", "files")
    assert by_id.returncode == 0, by_id.stderr
    assert (tmp_path / "older" / str(tmp_path / "data").lstrip("/") / "a.txt").read_text() == "hello\n" * 1000


def test_a_selector_of_fewer_than_four_characters_is_refused_as_too_short(initialised: CLI, tmp_path: Path) -> None:
    done = initialised("restore", "a", str(tmp_path / "out"))
    assert done.returncode == 2 and b"too short" in done.stderr


def test_key_export_refuses_an_output_it_cannot_create_in_one_line(initialised: CLI, tmp_path: Path) -> None:
    existing = tmp_path / "kept.txt"
    existing.write_text("mine")
    for output, expected in (
        (existing, b"already"),
        (tmp_path / "no-such-dir" / "rk.txt", b"directory does not exist"),
        (tmp_path, b"is a directory already"),
    ):
        refused = initialised("key", "export", "--output", str(output))
        assert refused.returncode == 16, refused.stderr
        assert refused.stderr.count(b"\n") == 1 and expected in refused.stderr
    assert existing.read_text() == "mine"


def test_a_missing_file_named_by_an_option_is_a_usage_error_naming_the_option(initialised: CLI, tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.txt")
    refused = initialised("snapshots", "--recovery-key-file", missing, passphrase=None)
    assert refused.returncode == 2 and b"--recovery-key-file" in refused.stderr and b"config" not in refused.stderr
    refused = initialised("key", "add", "--new-passphrase-file", missing)
    assert refused.returncode == 2 and b"--new-passphrase-file" in refused.stderr


def test_ls_json_gives_back_every_name_byte_for_byte_and_the_mtime_to_the_nanosecond(cli: CLI, tmp_path: Path) -> None:
    data = os.fsencode(tmp_path / "data")
    odd = data + b"/bad\xff\xfename"
    with open(odd, "wb") as f:
        f.write(b"x")
    os.symlink(b"to-\xfe", data + b"/odd-link")
    os.utime(odd, ns=(1, 1_700_000_000_123_456_789))
    assert cli("init").returncode == 0 and cli("backup", "--source", "files").returncode == 0

    entries = [json.loads(line) for line in cli("ls", "latest", "--source", "files", "--json").stdout.splitlines()]
    by_name = {e.get("path", "").encode() or base64.b64decode(e["path_b64"]): e for e in entries}
    assert by_name[odd]["mtime_ns"] == 1_700_000_000_123_456_789 and "path" not in by_name[odd]
    assert base64.b64decode(by_name[data + b"/odd-link"]["target_b64"]) == b"to-\xfe"
    assert by_name[data + b"/a.txt"]["path"] == os.fsdecode(data) + "/a.txt"


def test_a_restore_path_that_matches_nothing_leaves_no_destination_behind(initialised: CLI, tmp_path: Path) -> None:
    refused = initialised("restore", "latest", str(tmp_path / "out"), "--source", "files", "--path", "/no/such")
    assert refused.returncode == 2 and b"not in this snapshot" in refused.stderr
    assert not (tmp_path / "out").exists()


def test_a_source_removed_from_the_config_still_selects_its_snapshots(initialised: CLI, tmp_path: Path) -> None:
    config = initialised.config.read_text()
    initialised.write_config(config[: config.index('[[sources]]\nname = "db"')])
    listed = initialised("snapshots", "--source", "db", "--json")
    assert listed.returncode == 0 and [s["source"] for s in json.loads(listed.stdout)] == ["db"]
    assert initialised("restore", "latest", str(tmp_path / "out"), "--source", "db").returncode == 0
