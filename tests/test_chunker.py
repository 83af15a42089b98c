"""Content-defined chunking: a pinned vector of cut points, and the properties dedup relies on."""

from __future__ import annotations

import hashlib
import random

import pytest

from coldvault.repo.chunker import ChunkerParams, cut_buffer

PARAMS = ChunkerParams(min_size=2048, avg_size=8192, max_size=65536, seed=12345)
DATA = random.Random(7).randbytes(1 << 20)
DATA_SHA256 = "90483e6b124e6b6fc65dbfe7e724209435278965e32cbaeaed42bd8c90d8e6ce"

# Chunk lengths of DATA under PARAMS, computed once with pyfastcdc 0.3.1 and pasted here.
# A pyfastcdc release (or any change to the chunker) that moves cut points MUST fail here:
# moved cut points silently break deduplication against every existing snapshot.
EXPECTED_LENGTHS = [
    15257,
    20821,
    7089,
    16590,
    9638,
    4129,
    20031,
    10231,
    18797,
    18377,
    2201,
    2786,
    13558,
    3435,
    6088,
    8520,
    11084,
    7707,
    14879,
    10328,
    12410,
    2054,
    9735,
    10569,
    9854,
    17291,
    2083,
    13851,
    9633,
    4889,
    15795,
    18925,
    16762,
    9310,
    5727,
    20999,
    6819,
    6411,
    3982,
    7185,
    3514,
    6333,
    15503,
    3990,
    10239,
    6087,
    3152,
    8548,
    29229,
    15843,
    8569,
    9340,
    7397,
    12964,
    10868,
    5723,
    7913,
    3840,
    8426,
    9028,
    10431,
    20981,
    10155,
    3581,
    10533,
    4076,
    5822,
    12061,
    2650,
    12653,
    13316,
    8973,
    14452,
    7594,
    13616,
    11511,
    19946,
    9166,
    14025,
    2746,
    12296,
    19212,
    4347,
    8735,
    9338,
    5955,
    11832,
    9330,
    8770,
    13255,
    19460,
    8536,
    23774,
    8787,
    8493,
    5055,
    6170,
    2743,
    17747,
    9686,
    4454,
    9977,
]


def lengths(params: ChunkerParams, data: bytes) -> list[int]:
    return [len(c) for c in cut_buffer(params.new(), data)]


def digests(params: ChunkerParams, data: bytes) -> list[str]:
    return [hashlib.sha256(c).hexdigest() for c in cut_buffer(params.new(), data)]


def test_input_vector_is_the_one_the_cut_points_were_computed_for() -> None:
    # If this fails, Python's random.randbytes changed, not the chunker: regenerate nothing, fix the input.
    assert hashlib.sha256(DATA).hexdigest() == DATA_SHA256


def test_cut_points_match_the_pinned_vector() -> None:
    assert lengths(PARAMS, DATA) == EXPECTED_LENGTHS


@pytest.mark.parametrize("size", [0, 1, 2047, 2048, 65536, 65537, 300_001])
def test_chunks_concatenate_to_the_input_and_respect_size_bounds(size: int) -> None:
    data = random.Random(size).randbytes(size)
    chunks = [bytes(c) for c in cut_buffer(PARAMS.new(), data)]
    assert b"".join(chunks) == data
    assert all(len(c) > 0 for c in chunks)
    assert all(len(c) <= PARAMS.max_size for c in chunks)
    assert all(len(c) >= PARAMS.min_size for c in chunks[:-1])  # only the last may be short


def test_zero_runs_are_cut_at_max_size() -> None:
    chunks = list(cut_buffer(PARAMS.new(), bytes(300_000)))
    assert b"".join(chunks) == bytes(300_000)
    assert [len(c) for c in chunks[:-1]] == [PARAMS.max_size] * (len(chunks) - 1)


def test_boundaries_resynchronise_after_an_insert() -> None:
    middle = len(DATA) // 2
    edited = DATA[:middle] + random.Random(99).randbytes(100) + DATA[middle:]
    before, after = digests(PARAMS, DATA), digests(PARAMS, edited)

    # Every chunk that ends before the edit is untouched, in the same position.
    ends, position = [], 0
    for n in EXPECTED_LENGTHS:
        position += n
        ends.append(position)
    untouched = sum(1 for end in ends if end <= middle)
    assert untouched > 40
    assert after[:untouched] == before[:untouched]

    # After the edit the chunker finds the same cut points again: nearly all later chunks survive.
    later = before[untouched + 1 :]
    survivors = set(after)
    kept = sum(1 for d in later if d in survivors)
    assert kept >= len(later) - 2
    # ...and the edit costs at most a couple of new chunks.
    assert len(set(after) - set(before)) <= 3


def test_different_seeds_give_different_cut_points() -> None:
    other = ChunkerParams(PARAMS.min_size, PARAMS.avg_size, PARAMS.max_size, seed=54321)
    assert lengths(other, DATA) != EXPECTED_LENGTHS
    # Not just a shifted tail: the cut points disagree almost everywhere.
    cuts = lambda ls: {sum(ls[: i + 1]) for i in range(len(ls))}  # noqa: E731
    shared = cuts(lengths(other, DATA)) & cuts(EXPECTED_LENGTHS)
    assert len(shared) < len(EXPECTED_LENGTHS) // 4


def test_a_chunker_gives_the_same_cuts_when_reused() -> None:
    chunker = PARAMS.new()
    first = [len(c) for c in cut_buffer(chunker, DATA)]
    second = [len(c) for c in cut_buffer(chunker, DATA)]
    assert first == second == EXPECTED_LENGTHS
