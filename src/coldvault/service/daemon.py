"""`coldvault daemon`: every job on its schedule, under systemd's eye.

Jobs are a backup per source, forget, sync, maintain, drill and scrub.  Each runs as a child `coldvault`
command, so that a job that fails, hangs or leaks cannot take the service down, and its
exit code says what went wrong (README, "Exit codes").  The loop, on the event loop:

- every tick, start the jobs that are due (config.schedule: never run → at once; else the
  next slot after the last run, so downtime costs one catch-up run, not one per slot), at
  most ``daemon.max_concurrent_jobs`` at a time, never a job beside itself;
- ping the watchdog from the loop, so a wedged loop gets the service restarted;
- SIGHUP: reload the config, keep the old one if the new one is invalid;
- SIGTERM: stop starting jobs, pass SIGTERM on to the running ones and wait for them
  (a backup cut short resumes from its journal at the next start).

When each job last ran, and how it ended, is kept in ``<state dir>/daemon.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from prometheus_client import start_http_server

from coldvault.config.loader import load_config
from coldvault.config.model import Config
from coldvault.config.schedule import Schedule
from coldvault.errors import EXIT_INTERRUPTED, ColdvaultError
from coldvault.service.log import Log
from coldvault.service.metrics import Metrics
from coldvault.service.notify import Notifier
from coldvault.storage.private_file import write_private_file

_TICK = 30.0  # seconds between looks at the schedule, when the watchdog asks for nothing shorter
# Jobs in the order `--once` runs them: what a drill checks should be backed up and replicated first.
_PHASES = ("backup", "forget", "sync", "maintain", "drill", "scrub")


@dataclass(frozen=True)
class Job:
    name: str  # "backup:<source>", "forget", "sync", "maintain", "drill", "scrub"
    args: tuple[str, ...]  # the coldvault command that does it
    schedule: Schedule

    @property
    def phase(self) -> int:
        return _PHASES.index(self.name.split(":")[0])


def jobs_of(config: Config) -> list[Job]:
    jitter = timedelta(seconds=config.daemon.jitter)
    jobs = [
        Job(f"backup:{s.name}", ("backup", "--source", s.name, "--json"), Schedule.parse(s.schedule, jitter))
        for s in config.sources
        if s.schedule is not None
    ]
    for name, expression in (
        ("forget", config.daemon.forget),
        ("sync", config.daemon.sync),
        ("maintain", config.daemon.maintain),
        ("drill", config.daemon.drill),
        ("scrub", config.daemon.scrub),
    ):
        if expression is not None:
            jobs.append(Job(name, (name, "--json"), Schedule.parse(expression, jitter)))
    return jobs


@dataclass
class JobRecord:
    last_run: datetime | None = None
    last_success: datetime | None = None
    last_exit: int | None = None


@dataclass
class Ledger:
    """When each job last ran and how it ended; survives restarts."""

    path: Path
    records: dict[str, JobRecord] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Ledger:
        records: dict[str, JobRecord] = {}
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            for name, doc in json.loads(path.read_text()).items():
                records[name] = JobRecord(
                    *(datetime.fromisoformat(doc[k]) if doc.get(k) else None for k in ("last_run", "last_success")),
                    doc.get("last_exit"),
                )
        return cls(path, records)

    def record(self, name: str) -> JobRecord:
        return self.records.setdefault(name, JobRecord())

    def save(self) -> None:
        doc = {
            name: {
                "last_run": r.last_run.isoformat() if r.last_run else None,
                "last_success": r.last_success.isoformat() if r.last_success else None,
                "last_exit": r.last_exit,
            }
            for name, r in self.records.items()
        }
        write_private_file(self.path, json.dumps(doc, indent=1, sort_keys=True).encode())


class Daemon:
    def __init__(
        self,
        config_path: Path,
        config: Config,
        state_dir: Path,
        *,
        log: Log,
        notifier: Notifier,
        clock: Callable[[], datetime],
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.log = log
        self.notifier = notifier
        self.clock = clock
        self.ledger = Ledger.load(state_dir / "daemon.json")
        self.metrics = Metrics()
        self.running: dict[str, asyncio.subprocess.Process] = {}
        self.failed = 0
        self._active: dict[str, asyncio.Task[None]] = {}  # started or waiting for a slot, by job name
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()  # a job ended, or a stop was asked for: look at the schedule now
        self._pings: set[asyncio.Future[None]] = set()
        self._done_once: set[str] = set()
        self._slots = asyncio.Semaphore(config.daemon.max_concurrent_jobs)

    # ---- lifecycle -----------------------------------------------------------------------

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop)
        loop.add_signal_handler(signal.SIGINT, self._stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        self._serve_metrics()
        self.notifier.ready(self._status())
        self.log.info(f"ready: {len(jobs_of(self.config))} jobs scheduled")
        tick = min(_TICK, self.notifier.watchdog_interval or _TICK)
        while not self._stopping.is_set():
            self.start_due()
            self.notifier.watchdog()  # from the loop itself: it only arrives while the loop turns
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=tick)
            self._wake.clear()
        await self._drain()
        return 0

    async def once(self) -> int:
        """Every due job one time, phase by phase (_PHASES); 0 if all succeeded.  Told to stop, it starts
        no more jobs, waits for the running ones, and ends with 130."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop_running)
        # Ctrl-C reaches the jobs from the terminal itself (one process group): only stop starting more.
        loop.add_signal_handler(signal.SIGINT, self._stop)
        self.notifier.ready(self._status())
        for phase in range(len(_PHASES)):
            if self._stopping.is_set():
                break
            self.start_due(phase=phase)
            await self._wait_all()
        self.notifier.stopping()
        if self._stopping.is_set():
            return EXIT_INTERRUPTED
        return 1 if self.failed else 0

    def _stop_running(self) -> None:
        """SIGTERM to --once, which has no serving loop to drain: pass it on to the running jobs now,
        once (a second SIGTERM would cut their own clean-up short)."""
        if not self._stopping.is_set():
            self._stop()
            for process in self.running.values():
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)

    def _stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def _serve_metrics(self) -> None:
        address = self.config.daemon.metrics
        if address is None:
            return
        host, _, port = address.rpartition(":")
        try:
            start_http_server(int(port), host.strip("[]"), registry=self.metrics.registry)
        except OSError as exc:
            self.log.error(f"metrics: cannot listen on {address} ({exc.strerror}); running without them")
            return
        self.log.info(f"metrics on http://{address}/metrics")

    def reload(self) -> None:
        self.notifier.reloading()
        try:
            self.config = load_config(self.config_path)
        except ColdvaultError as exc:
            self.log.error(f"reload refused, still running the previous config: {exc}")
        else:
            self.log.info("reloaded the config")
        self.notifier.ready(self._status())

    async def _drain(self) -> None:
        self.notifier.stopping()
        self.log.info(f"stopping: waiting for {len(self.running)} running jobs")
        for process in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        await self._wait_all()

    async def _wait_all(self) -> None:
        while self._active or self._pings:
            await asyncio.gather(*list(self._active.values()), *list(self._pings), return_exceptions=True)

    # ---- jobs ----------------------------------------------------------------------------

    def start_due(self, *, phase: int | None = None) -> None:
        """Start every due job that is not already running (or waiting for a slot).  A job waits while
        one of an earlier phase is due or running, so that a drill checks the backups just made."""
        now = self.clock()
        jobs = jobs_of(self.config)
        active = [j for j in jobs if j.name in self._active]
        due = [j for j in jobs if j not in active and j.name not in self._done_once and self._due(j, now)]
        for job in due:
            if (phase is not None and job.phase != phase) or any(o.phase < job.phase for o in due + active):
                continue
            if phase is not None:
                self._done_once.add(job.name)  # --once: one run each, even if it fails
            record = self.ledger.record(job.name)
            record.last_run, record.last_exit = now, None  # None until it ends: a crash leaves it so
            self.ledger.save()
            task = asyncio.get_running_loop().create_task(self._run(job))
            self._active[job.name] = task
            task.add_done_callback(lambda _, name=job.name: self._active.pop(name, None))

    def _due(self, job: Job, now: datetime) -> bool:
        """At its next slot; or, when its last run failed or never ended, after the retry delay."""
        record = self.ledger.record(job.name)
        if record.last_run is not None and record.last_exit != 0:
            return now >= record.last_run + timedelta(seconds=self.config.daemon.retry_delay)
        return job.schedule.due(record.last_run, now, job=job.name)

    async def _run(self, job: Job) -> None:
        argv = [sys.executable, "-m", "coldvault", "--config", str(self.config_path), "--quiet", *job.args]
        async with self._slots:
            if self._stopping.is_set():
                return
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
            except OSError as exc:
                self._finished(job, None, f"cannot start: {exc.strerror}")
                return
            self.running[job.name] = process
            self.notifier.status(self._status())
            self.log.info(f"{job.name}: started")
            started = self.clock()
            stdout, stderr = await process.communicate()
            del self.running[job.name]
        for line in stderr.decode(errors="replace").splitlines():
            if line.strip():
                self.log.warning(f"{job.name}: {line}")
        self.metrics.job_finished(job.name, started, self.clock(), process.returncode, stdout)
        self._finished(job, process.returncode, None)

    def _finished(self, job: Job, exit_code: int | None, problem: str | None) -> None:
        record = self.ledger.record(job.name)
        record.last_exit = exit_code
        if exit_code == 0:
            record.last_success = self.clock()
            self.log.info(f"{job.name}: done")
        else:
            self.failed += 1
            problem = problem or f"failed with exit code {exit_code}"
            self.log.error(f"{job.name}: {problem}")
        if self.config.daemon.webhook is not None:
            self._ping(job.name, exit_code == 0, problem or "")
        self.ledger.save()
        self.notifier.status(self._status())
        self._wake.set()  # a job of the next phase may be waiting for this one

    def _ping(self, job: str, ok: bool, problem: str) -> None:
        """Healthchecks-style: the URL on success, URL/fail with the reason on failure.  In a thread,
        so that a slow endpoint never holds up the loop; never logged, since it may carry a token."""
        url = str(self.config.daemon.webhook).rstrip("/") + ("" if ok else "/fail")
        body = f"{job}: {'ok' if ok else problem}".encode()

        def send() -> None:
            try:
                request = urllib.request.Request(url, data=body, method="POST")
                with urllib.request.urlopen(request, timeout=10):
                    pass
            except (OSError, ValueError) as exc:
                self.log.warning(f"{job}: the webhook did not answer ({type(exc).__name__})")

        task = asyncio.get_running_loop().run_in_executor(None, send)
        self._pings.add(task)
        task.add_done_callback(self._pings.discard)

    def _status(self) -> str:
        return f"running {', '.join(sorted(self.running))}" if self.running else "idle"
