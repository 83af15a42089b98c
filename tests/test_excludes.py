"""Exclude patterns: one compiled expression per kind must match exactly what fnmatch matches pattern by pattern."""

from __future__ import annotations

import fnmatch
import os

from hypothesis import given
from hypothesis import strategies as st

from coldvault.engine.walk import Excludes

_pattern_text = st.text(alphabet="ab.*?[]!-/\\é\n", min_size=1, max_size=8)
_path = st.lists(st.text(alphabet="ab.*?[]!-\\é\n", min_size=1, max_size=6), min_size=1, max_size=4).map(
    lambda parts: os.fsencode("/" + "/".join(parts))
)


def one_by_one(patterns: list[str], absolute: bytes) -> bool:
    """The rule as the docs state it, with fnmatch applied to each pattern in turn."""
    encoded = [os.fsencode(p.rstrip("/")) for p in patterns]
    name = os.path.basename(absolute)
    return any(fnmatch.fnmatchcase(absolute if b"/" in p else name, p) for p in encoded)


@given(st.lists(_pattern_text, max_size=6), _path)
def test_compiled_excludes_match_what_fnmatch_matches(patterns: list[str], absolute: bytes) -> None:
    assert Excludes(patterns)(absolute) == one_by_one(patterns, absolute)


def test_names_match_anywhere_and_paths_match_whole() -> None:
    excludes = Excludes(["*.tmp", ".cache", "/srv/data/scratch/", "/home/*/Downloads"])
    assert excludes(b"/home/alice/report.tmp")
    assert excludes(b"/var/lib/x/.cache")
    assert excludes(b"/srv/data/scratch")
    assert excludes(b"/home/bob/Downloads")
    assert not excludes(b"/srv/data/scratch/file")  # below an excluded directory: the walk never gets there
    assert not excludes(b"/home/alice/report.tmp.txt")
    assert not excludes(b"/home/alice/.cache-not")
    assert not Excludes([])(b"/anything")


def test_non_utf8_names_are_matched_byte_for_byte() -> None:
    assert Excludes(["caf\udce9*"])(b"/x/caf\xe9-old")
    assert not Excludes(["caf\udce9*"])(b"/x/cafe-old")
