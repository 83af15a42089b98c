"""Retention policies on a fake clock: two simulated years, the rules that keep each snapshot, stability."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from coldvault.engine.retention import Policy, apply_policy
from coldvault.repo.manifest import TREE, Snapshot

START = datetime(2025, 1, 1, 2, 0, tzinfo=UTC)


def snapshot(when: datetime, n: int) -> Snapshot:
    return Snapshot(
        source="db", kind=TREE, time=when, host="h", username="u", tool_version="t", paths=(), program=None,
        listing=(), parent=None, id=f"{n:064x}",
    )  # fmt: skip


def daily_for(days: int) -> list[Snapshot]:
    return [snapshot(START + timedelta(days=d), d) for d in range(days)]


GFS = Policy(last=3, daily=7, weekly=4, monthly=12, yearly=3)


def test_two_years_of_daily_backups_under_a_gfs_policy() -> None:
    history = daily_for(730)
    decisions = apply_policy(history, GFS)
    kept = [d for d in decisions if d.keep]
    newest = history[-1]
    assert decisions[0].snapshot == newest and decisions[0].reasons[:2] == ["last", "daily"]
    by_rule = {
        rule: [d.snapshot for d in kept if rule in d.reasons] for rule in ("daily", "weekly", "monthly", "yearly")
    }
    assert [s.time.date() for s in by_rule["daily"]] == [(newest.time - timedelta(days=i)).date() for i in range(7)]
    assert len(by_rule["weekly"]) == 4 and len({s.time.isocalendar()[:2] for s in by_rule["weekly"]}) == 4
    assert [(s.time.year, s.time.month) for s in by_rule["monthly"]] == [
        (2026, 12), (2026, 11), (2026, 10), (2026, 9), (2026, 8), (2026, 7), (2026, 6), (2026, 5), (2026, 4),
        (2026, 3), (2026, 2), (2026, 1),
    ]  # fmt: skip
    # each month's newest snapshot: its last day
    assert all((s.time + timedelta(days=1)).month != s.time.month for s in by_rule["monthly"][1:])
    assert [s.time.year for s in by_rule["yearly"]] == [2026, 2025]  # only two years exist
    assert len(kept) < 30 and len(decisions) == 730


def test_a_source_whose_backups_stopped_keeps_its_history_within_the_window() -> None:
    history = daily_for(30)
    decisions = apply_policy(history, Policy(within=timedelta(days=10)))
    assert sum(d.keep for d in decisions) == 11  # the newest and the ten days before it, wherever now is


def test_no_policy_keeps_everything() -> None:
    assert all(d.keep and d.reasons == ["no retention policy"] for d in apply_policy(daily_for(5), Policy()))


@settings(deadline=None, max_examples=60)
@given(
    st.lists(st.integers(min_value=0, max_value=3 * 365 * 24), min_size=1, max_size=80, unique=True),
    st.builds(
        Policy,
        last=st.integers(0, 4),
        hourly=st.integers(0, 6),
        daily=st.integers(0, 8),
        weekly=st.integers(0, 5),
        monthly=st.integers(0, 13),
        yearly=st.integers(0, 3),
    ),
)
def test_a_policy_is_stable_and_always_keeps_the_newest(hours: list[int], policy: Policy) -> None:
    history = [snapshot(START + timedelta(hours=h), i) for i, h in enumerate(hours)]
    decisions = apply_policy(history, policy)
    kept = [d.snapshot for d in decisions if d.keep]
    if not policy.empty and (
        policy.last or policy.hourly or policy.daily or policy.weekly or policy.monthly or policy.yearly
    ):
        assert decisions[0].keep, "the newest snapshot is always kept"
    # Forgetting what it does not keep changes nothing for the rest: running it again keeps them all.
    assert all(d.keep for d in apply_policy(kept, policy))


def test_the_policy_comes_from_the_source_config() -> None:
    from coldvault.config.loader import parse_config

    config = parse_config(
        '[[targets]]\nname = "a"\ntype = "local"\npath = "/tmp/x"\n'
        '[[sources]]\nname = "db"\ncommand = "pg_dump"\nkeep_daily = 7\nkeep_monthly = 12\nkeep_within = "2d"\n'
    )
    assert Policy.of(config.sources[0]) == Policy(daily=7, monthly=12, within=timedelta(days=2))
