"""Config validation: one line naming the file and the key, for every mistake a user makes."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldvault.config.loader import load_config, parse_config
from coldvault.errors import ConfigError

TARGET = '[[targets]]\nname = "t"\ntype = "local"\npath = "/srv/backup"\n'


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ('[[sources]]\nname = "db"\ncommand = "PGPASSWORD=hunter2 pg_dump shop"\n', "variable assignment"),
        ('[[sources]]\nname = "db"\ncommand = ["A_B=1", "x"]\n', "variable assignment"),
        ('[[sources]]\nname = "x"\npaths = ["/a"]\ncommand = "true"\n', "exactly one of"),
        ('[[sources]]\nname = "bad name"\npaths = ["/a"]\n', "sources[1]"),
        ("[repository.format]\nchunk_avg_size = 128\nchunk_min_size = 64\nchunk_max_size = 512\n", "at least 256"),
        ('[[targets]]\nname = "t"\ntype = "local"\npath = "/x"\n', "unique"),
        ("[prune]\nrepack_unused = 0\n", "prune.repack_unused"),
        ("[prune]\nrepack_unused = 1.5\n", "prune.repack_unused"),
        ('[prune]\nrepack_limit = "lots"\n', "prune.repack_limit"),
        ("[prune]\nsafety_margin = 5\n", "prune.safety_margin"),
        ('[[sources]]\nname = "home"\npaths = ["/srv", "relsrc"]\n', "'relsrc' is relative"),
    ],
)
def test_mistakes_are_one_line_naming_the_key(extra: str, needle: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(TARGET + extra, origin="c.toml")
    message = str(raised.value)
    assert message.startswith("c.toml: ") and "\n" not in message
    assert needle in message or needle.lower() in message.lower(), message
    assert "hunter2" not in message


def test_a_command_that_merely_contains_an_equals_sign_is_fine() -> None:
    config = parse_config(TARGET + '[[sources]]\nname = "db"\ncommand = "pg_dump --dbname=shop"\n')
    assert config.sources[0].command == ["pg_dump", "--dbname=shop"]


def test_the_shipped_configs_are_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:

    root = Path(__file__).parents[1] / "configs"
    for name in ("CREDENTIALS_DIRECTORY", "COLDVAULT_DEMO_DIR"):
        monkeypatch.setenv(name, str(tmp_path))
    monkeypatch.setenv("COLDVAULT_DEMO_S3", "http://127.0.0.1:9000")
    monkeypatch.setenv("COLDVAULT_DEMO_GCS", "http://127.0.0.1:9001")
    assert len(load_config(root / "example.toml").sources) == 2
    assert len(load_config(root / "demo.toml").targets) == 4
