"""When each job runs: cron expressions (or @hourly, @daily, @weekly, @monthly) with jitter.

Pure: the caller passes the times.  A job that never ran is due at once; after that it is
due at its next slot after its last run, so a service that was down for a week runs a
missed daily job once, not seven times.  Jitter spreads hosts that share a schedule over
the first ``jitter`` of each slot; it is derived from the job's name and the slot, so it
stays the same across restarts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from cronsim import CronSim, CronSimError

ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
}


@dataclass(frozen=True)
class Schedule:
    expression: str
    jitter: timedelta = timedelta(0)

    @classmethod
    def parse(cls, expression: str, jitter: timedelta = timedelta(0)) -> Schedule:
        """Check the expression now, so that a typo is a config error, not a job that never runs."""
        cron = ALIASES.get(expression.strip(), expression.strip())
        try:
            next(CronSim(cron, datetime(2000, 1, 1)))
        except (CronSimError, StopIteration) as exc:
            raise ValueError(
                f"{expression!r} is not a schedule ({exc}); use five cron fields such as '30 2 * * *',"
                f" or one of {', '.join(ALIASES)}"
            ) from None
        return cls(cron, jitter)

    def next_after(self, moment: datetime, *, job: str) -> datetime:
        """The first run time strictly after ``moment`` (cron in ``moment``'s time zone), jitter included."""
        # A slot up to one jitter before ``moment`` may still run after it.
        for slot in CronSim(self.expression, moment - self.jitter):
            when = slot + self._offset(slot, job)
            if when > moment:
                return when
        raise AssertionError("a valid cron expression has a next slot")

    def due(self, last_run: datetime | None, now: datetime, *, job: str) -> bool:
        return last_run is None or self.next_after(last_run, job=job) <= now

    def _offset(self, slot: datetime, job: str) -> timedelta:
        if not self.jitter:
            return timedelta(0)
        rng = random.Random(f"{job}:{slot.isoformat()}")
        return timedelta(seconds=rng.uniform(0, self.jitter.total_seconds()))
