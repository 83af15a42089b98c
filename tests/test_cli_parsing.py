"""The command line as typed: positionals anywhere among the options, one-line usage errors, full --help."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli import PASSPHRASE, basic_config

from coldvault.cli import build_parser, main


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["restore", "latest", "--source", "db", "/tmp/x"], {"snapshot": "latest", "dest": "/tmp/x", "source": "db"}),
        (["restore", "fe11", "--path", "/a/b", "/tmp/x"], {"snapshot": "fe11", "dest": "/tmp/x", "path": "/a/b"}),
        (["restore", "--source", "db", "latest", "--stdout"], {"snapshot": "latest", "dest": None, "stdout": True}),
        (["ls", "latest", "--source", "files", "/a"], {"snapshot": "latest", "path": "/a", "source": "files"}),
        (["ls", "--json", "latest", "--target", "near", "/a"], {"snapshot": "latest", "path": "/a", "target": "near"}),
        (["key", "remove", "--quiet", "ab12"], {"id": "ab12", "quiet": True}),
        (["report", "show", "--html", "r.html", "7"], {"id": "7", "html": "r.html"}),
        (["report", "verify", "--public-key", "k.pem", "reports", "--chain"], {"path": "reports", "chain": True}),
        (["config", "--config", "c.toml", "validate"], {"config_command": "validate", "config": "c.toml"}),
    ],
)
def test_positionals_may_come_among_and_after_the_options(argv: list[str], expected: dict[str, object]) -> None:
    args = vars(build_parser().parse_args(argv))
    assert {name: args[name] for name in expected} == expected


@pytest.fixture
def repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "a.txt").write_text("hello\n")
    (tmp_path / "data" / "sub" / "b.txt").write_text("below\n")
    (tmp_path / "coldvault.toml").write_text(basic_config(tmp_path))
    monkeypatch.setenv("COLDVAULT_CONFIG", str(tmp_path / "coldvault.toml"))
    monkeypatch.setenv("COLDVAULT_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert main(["--quiet", "init"]) == 0
    assert main(["--quiet", "backup"]) == 0
    return tmp_path


def test_restore_and_ls_take_their_positionals_after_options(
    repository: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dump = repository / "dump"
    assert main(["--quiet", "restore", "latest", "--source", "db", str(dump)]) == 0
    assert (dump / "db.sql").read_bytes() == b"".join(b"%d\n" % i for i in range(1, 50001))

    sub = str(repository / "data" / "sub")
    subtree = repository / "subtree"
    assert main(["--quiet", "restore", "latest", "--source", "files", "--path", sub, str(subtree)]) == 0
    assert (subtree / sub.lstrip("/") / "b.txt").read_text() == "below\n"
    assert not (subtree / str(repository / "data" / "a.txt").lstrip("/")).exists()

    capsys.readouterr()
    assert main(["ls", "latest", "--source", "files", sub]) == 0
    listed = capsys.readouterr().out
    assert sub + "/b.txt" in listed and "a.txt" not in listed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["restore", "latest", "/tmp/x", "--bogus"], "unrecognized arguments: --bogus; see 'coldvault restore --help'"),
        (["check", "--read-data-subset", "abc"], "invalid float value: 'abc'; see 'coldvault check --help'"),
        (["ls"], "the following arguments are required: snapshot; see 'coldvault ls --help'"),
        (["key", "remove"], "the following arguments are required: id; see 'coldvault key remove --help'"),
        (["config", "valid"], "invalid choice: 'valid' (choose from 'validate'); see 'coldvault config --help'"),
        (["bakup"], "invalid choice: 'bakup'"),
        (["--bogus", "snapshots"], "unrecognized arguments: --bogus; see 'coldvault --help'"),
        ([], "the following arguments are required: COMMAND; see 'coldvault --help'"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("coldvault: ") and err.count("\n") == 1 and message in err, err


def test_help_is_still_the_full_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["restore", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: coldvault restore") and "--source SOURCE" in out and "destination directory" in out
