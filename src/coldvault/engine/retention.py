"""Which snapshots a retention policy keeps, and by which rule: grandfather-father-son, as restic does.

Pure.  Snapshots of one source are walked newest first.  ``keep_last`` keeps the newest N;
each calendar rule keeps the newest snapshot of each of its N most recent periods that have
one (hours, days, ISO weeks, months, years, in UTC); ``keep_within`` keeps every snapshot
taken within that long of the newest one.  Measuring from the newest snapshot rather than
from now means that a source whose backups stopped keeps its history instead of ageing it
all away.  A snapshot is kept if any rule keeps it; a policy with no rule keeps everything.

Each host's snapshots of a source form their own history (``plan``): two hosts backing up a
source of the same name into one repository must not age out each other's backups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from coldvault.config.model import Source
from coldvault.repo.manifest import Snapshot

_PERIODS: dict[str, Callable[[datetime], tuple[int, ...]]] = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}


@dataclass(frozen=True)
class Policy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: timedelta = timedelta(0)

    @classmethod
    def of(cls, source: Source) -> Policy:
        return cls(
            last=source.keep_last,
            hourly=source.keep_hourly,
            daily=source.keep_daily,
            weekly=source.keep_weekly,
            monthly=source.keep_monthly,
            yearly=source.keep_yearly,
            within=timedelta(seconds=source.keep_within),
        )

    @property
    def empty(self) -> bool:
        return not (self.last or self.hourly or self.daily or self.weekly or self.monthly or self.yearly or self.within)


@dataclass
class Decision:
    snapshot: Snapshot
    reasons: list[str] = field(default_factory=list)  # the rules that keep it; empty: forget it

    @property
    def keep(self) -> bool:
        return bool(self.reasons)


def apply_policy(snapshots: Iterable[Snapshot], policy: Policy) -> list[Decision]:
    """A decision for every snapshot of one source, newest first."""
    decisions = [Decision(s) for s in _newest_first(snapshots)]
    if policy.empty:
        for decision in decisions:
            decision.reasons.append("no retention policy")
        return decisions
    for decision in decisions[: policy.last]:
        decision.reasons.append("last")
    for name, period_of in _PERIODS.items():
        remaining = getattr(policy, name)
        previous: tuple[int, ...] | None = None
        for decision in decisions:
            if remaining == 0:
                break
            period = period_of(decision.snapshot.time.astimezone(UTC))
            if period != previous:
                decision.reasons.append(name)
                previous = period
                remaining -= 1
    if policy.within and decisions:
        horizon = decisions[0].snapshot.time - policy.within
        for decision in decisions:
            if decision.snapshot.time >= horizon:
                decision.reasons.append("within")
    return decisions


@dataclass
class Group:
    """One history: the snapshots of one source from one host, with a decision for each."""

    source: str
    host: str
    decisions: list[Decision]


def plan(snapshots: Iterable[Snapshot], sources: Sequence[Source], *, only: str | None = None) -> list[Group]:
    """Decisions for every (source, host) history; a source missing from the config keeps everything."""
    policies = {source.name: Policy.of(source) for source in sources}
    histories: dict[tuple[str, str], list[Snapshot]] = {}
    for snapshot in snapshots:
        if only is None or snapshot.source == only:
            histories.setdefault((snapshot.source, snapshot.host), []).append(snapshot)
    groups = []
    for (source, host), history in sorted(histories.items()):
        policy = policies.get(source)
        if policy is None:
            decisions = [Decision(s, ["source not in the config"]) for s in _newest_first(history)]
        else:
            decisions = apply_policy(history, policy)
        groups.append(Group(source, host, decisions))
    return groups


def _newest_first(snapshots: Iterable[Snapshot]) -> list[Snapshot]:
    return sorted(snapshots, key=lambda s: (s.time, s.id), reverse=True)
