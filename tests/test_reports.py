"""The signed, hash-chained report codec: every tampering an auditor must catch is caught."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from coldvault.errors import IntegrityError
from coldvault.repo.report import Report, canonical, sign_report, verify_chain, verify_report

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = KEY.public_key()


def chain(length: int, key: Ed25519PrivateKey = KEY) -> list[Report]:
    reports: list[Report] = []
    for i in range(length):
        body = {"created": f"2026-11-{i + 1:02d}T03:00:00+00:00", "verdict": "pass", "targets": [{"name": "a"}]}
        reports.append(sign_report(key, body, previous=reports[-1] if reports else None))
    return reports


def files(reports: list[Report]) -> list[tuple[str, bytes]]:
    return [(f"report-{r.sequence}.json", r.data) for r in reports]


def test_a_report_verifies_and_its_id_is_the_sha256_of_its_bytes() -> None:
    first, second = chain(2)
    assert verify_report(second.data, PUBLIC).body == second.body
    assert second.id == hashlib.sha256(second.data).hexdigest()
    assert json.loads(second.data)["previous"] == first.id
    assert (first.sequence, second.sequence) == (1, 2)


def test_the_real_chain_verifies_and_names_its_head() -> None:
    reports = chain(4)
    result = verify_chain(reversed(files(reports)), PUBLIC)  # file order does not matter
    assert result.ok and result.head == reports[-1]


def test_an_edited_report_fails_its_signature() -> None:
    report = chain(1)[0]
    edited = report.data.replace(b'"pass"', b'"fail"')
    with pytest.raises(IntegrityError, match="bad signature"):
        verify_report(edited, PUBLIC)


def test_a_re_encoded_report_is_refused_even_when_its_content_is_the_same() -> None:
    report = chain(1)[0]
    pretty = json.dumps(json.loads(report.data), indent=2).encode()
    with pytest.raises(IntegrityError, match="canonical"):
        verify_report(pretty, PUBLIC)


def test_another_key_is_named() -> None:
    other = chain(1, Ed25519PrivateKey.generate())[0]
    with pytest.raises(IntegrityError, match="not by the public key given"):
        verify_report(other.data, PUBLIC)


@pytest.mark.parametrize(
    "drop, message",
    [(1, "follows report 1: the reports between them are missing"), (0, "starts the chain")],
)
def test_a_removed_report_breaks_the_chain(drop: int, message: str) -> None:
    reports = chain(4)
    del reports[drop]
    result = verify_chain(files(reports), PUBLIC)
    assert not result.ok and message in result.errors[0]


def test_an_inserted_report_breaks_the_chain() -> None:
    reports = chain(3)
    fork = sign_report(KEY, {"verdict": "pass", "created": "later"}, previous=reports[0])  # a second report 2
    result = verify_chain(files([*reports, fork]), PUBLIC)
    assert not result.ok and "appears twice" in result.errors[0]


def test_a_reordered_chain_breaks_at_the_first_wrong_link() -> None:
    reports = chain(3)
    # Report 3 of another history: signed by the same key, right sequence, but linking elsewhere.
    other = chain(2)
    other = [other[0], sign_report(KEY, {"verdict": "fail"}, previous=other[0])]
    stranger = sign_report(KEY, {"verdict": "pass"}, previous=other[1])
    result = verify_chain(files([*reports[:2], stranger]), PUBLIC)
    assert not result.ok and "does not link to report 2" in result.errors[0]


def test_a_report_from_a_foreign_key_inside_the_chain_is_reported_by_name() -> None:
    reports = chain(2)
    foreign = sign_report(Ed25519PrivateKey.generate(), {"verdict": "pass"}, previous=reports[1])
    result = verify_chain(files([*reports, foreign]), PUBLIC)
    assert any("report-3.json" in e and "not by the public key given" in e for e in result.errors)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format="other"),
        lambda d: d.update(version=2),
        lambda d: d.update(sequence=0),
        lambda d: d.update(previous=None),  # a report 2 claiming to be first
        lambda d: d.update(extra=1),
        lambda d: d.pop("key_id"),
        lambda d: d.update(signature="not base64!"),
    ],
)
def test_malformed_reports_are_refused_with_one_line(mutate) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(chain(2)[1].data)
    mutate(doc)
    with pytest.raises(IntegrityError) as error:
        verify_report(canonical(doc), PUBLIC)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"[]", b'{"format": "coldvault-report"}', b"1e999"])
def test_garbage_is_not_a_report(data: bytes) -> None:
    with pytest.raises(IntegrityError):
        verify_report(data, PUBLIC)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_any_json_body_round_trips(body: dict) -> None:  # type: ignore[type-arg]
    report = sign_report(KEY, body, previous=None)
    assert verify_report(report.data, PUBLIC).body == body


def test_the_page_puts_the_verdict_first_escapes_everything_and_needs_no_network() -> None:
    import re
    import xml.etree.ElementTree as ElementTree

    from coldvault.repo.report_page import render_page

    history = [
        {"created": f"2026-11-{d:02d}", "throughput_bytes_per_s": {"a": d * 1e6, "b": 2e6}, "rpo_s": {"db": 3600.0 * d}}
        for d in range(1, 6)
    ]
    body = {
        "created": "2026-11-06T03:00:00+00:00",
        "verdict": "fail",
        "host": "<script>alert(1)</script>",
        "min_targets": 2,
        "sources": [{"source": "db", "newest_verified": None, "time": None, "rpo_s": None}],
        "targets": [
            {
                "name": "a",
                "verdict": "pass",
                "errors": [],
                "lock_violations": [],
                "samples": [],
                "bytes": 10,
                "throughput_bytes_per_s": 5e6,
            },
            {"name": "b", "verdict": "fail", "errors": ["pack <b>gone</b>"], "lock_violations": [], "samples": []},
        ],  # fmt: skip
        "full": None,
        "history": history,
    }
    page = render_page(sign_report(KEY, body, previous=None))
    assert page.index("FAIL") < page.index("<h2>Targets")
    assert "<script>" not in page and "&lt;script&gt;" in page and "pack &lt;b&gt;gone&lt;/b&gt;" in page
    assert not re.search(r"(src|href)=", page), "nothing is fetched: no scripts, styles, fonts or images"
    charts = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(charts) == 2
    for chart in charts:
        ElementTree.fromstring(chart)  # well-formed SVG
    assert charts[0].count("<polyline") == 2  # a line per target across the drills
