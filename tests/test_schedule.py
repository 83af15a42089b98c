"""Schedules with an injected clock: cron slots, aliases, jitter, and one catch-up run after downtime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coldvault.config.schedule import Schedule

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_a_job_that_never_ran_is_due_at_once() -> None:
    assert Schedule.parse("@daily").due(None, T0, job="backup:home")


def test_cron_slots_and_aliases() -> None:
    daily = Schedule.parse("@daily")
    assert daily.expression == "0 0 * * *"  # what `coldvault status` shows for the alias
    assert daily.next_after(T0, job="j") == datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
    assert Schedule.parse("30 2 * * *").next_after(T0, job="j") == datetime(2026, 11, 25, 2, 30, tzinfo=UTC)
    assert Schedule.parse("@hourly").next_after(T0, job="j") == T0 + timedelta(hours=1)


def test_after_downtime_a_missed_job_runs_once_not_once_per_missed_slot() -> None:
    daily = Schedule.parse("@daily")
    last = datetime(2026, 11, 17, 0, 0, tzinfo=UTC)  # a week ago
    assert daily.due(last, T0, job="j")
    ran = T0  # it runs now, once
    assert not daily.due(ran, T0 + timedelta(hours=11), job="j")
    assert daily.due(ran, T0 + timedelta(hours=12), job="j")


def test_not_due_before_its_slot() -> None:
    hourly = Schedule.parse("@hourly")
    assert not hourly.due(T0, T0 + timedelta(minutes=59), job="j")
    assert hourly.due(T0, T0 + timedelta(minutes=60), job="j")


@given(st.integers(min_value=0, max_value=10_000), st.text(min_size=1, max_size=8))
def test_jitter_stays_within_its_window_and_is_stable(minutes: int, job: str) -> None:
    schedule = Schedule.parse("@hourly", jitter=timedelta(minutes=10))
    moment = T0 + timedelta(minutes=minutes)
    first = schedule.next_after(moment, job=job)
    assert first > moment
    slot = first.replace(minute=0, second=0, microsecond=0)
    assert timedelta(0) <= first - slot <= timedelta(minutes=10)
    assert schedule.next_after(moment, job=job) == first, "the same after a restart"
    assert schedule.next_after(first, job=job) > first


def test_jitter_spreads_jobs_apart() -> None:
    schedule = Schedule.parse("@daily", jitter=timedelta(hours=1))
    times = {schedule.next_after(T0, job=f"host{i}") for i in range(20)}
    assert len(times) == 20


@pytest.mark.parametrize("bad", ["", "daily", "61 * * * *", "* * * *", "@yearly-ish"])
def test_a_bad_schedule_says_what_is_accepted(bad: str) -> None:
    with pytest.raises(ValueError, match="five cron fields"):
        Schedule.parse(bad)
