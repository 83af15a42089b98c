"""The service commands: the daemon, and the status of targets and scheduled jobs."""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime

from coldvault.commands import emit_json
from coldvault.engine.sync import survey
from coldvault.errors import EXIT_OK, TargetError
from coldvault.service.daemon import Daemon, Ledger, jobs_of
from coldvault.service.log import Log
from coldvault.service.notify import Notifier
from coldvault.session import Session
from coldvault.units import format_size


def cmd_status(args: argparse.Namespace, session: Session) -> int:
    replicas = session.connect()
    session.keep_journal(replicas)
    assert replicas.journal is not None
    found = survey(replicas)
    docs = []
    for r in found.results.values():
        docs.append(
            {
                "name": r.name,
                "reachable": r.reachable,
                "error": r.error,
                "objects": r.objects,
                "bytes": r.bytes,
                "lag_objects": len(r.missing),
                "lag_bytes": r.missing_bytes,
                "last_upload": replicas.journal.last_stored(r.name),
            }
        )
    jobs = _job_times(session)
    if args.json:
        emit_json({"targets": docs, "jobs": jobs})
    else:
        print(f"{'TARGET':16}  {'REACHABLE':9}  {'OBJECTS':>8}  {'SIZE':>10}  {'LAG':>16}  LAST UPLOAD (UTC)")
        for d in docs:
            lag = f"{d['lag_objects']} / {format_size(d['lag_bytes'])}" if d["reachable"] else "?"  # type: ignore[arg-type]
            last = str(d["last_upload"] or "never")[:19]
            print(
                f"{str(d['name'])[:16]:16}  {'yes' if d['reachable'] else 'NO':9}  {d['objects']:>8}"
                f"  {format_size(d['bytes']):>10}  {lag:>16}  {last}"  # type: ignore[arg-type]
            )
            if d["error"]:
                print(f"  {d['error']}")
        print(f"\n{'JOB':20}  {'SCHEDULE':14}  {'LAST RUN':19}  {'RESULT':8}  NEXT RUN")
        for j in jobs:
            result = {None: "", 0: "ok"}.get(j["last_exit"], f"exit {j['last_exit']}")  # type: ignore[call-overload]
            print(
                f"{str(j['job'])[:20]:20}  {str(j['schedule'])[:14]:14}  {str(j['last_run'] or 'never')[:19]:19}"
                f"  {result:8}  {str(j['next_run'])[:19]}"
            )
    unreachable = [str(d["name"]) for d in docs if not d["reachable"]]
    if unreachable:
        raise TargetError(f"{', '.join(unreachable)} unreachable; see above")
    return EXIT_OK


def _job_times(session: Session) -> list[dict[str, object]]:
    """The daemon's jobs: when each last ran (from its ledger), how it ended, and when it runs next."""
    ledger = Ledger.load(session.state_dir / "daemon.json")
    now = datetime.now().astimezone()
    docs: list[dict[str, object]] = []
    for job in jobs_of(session.config):
        record = ledger.record(job.name)
        upcoming = job.schedule.next_after(record.last_run, job=job.name) if record.last_run else None
        docs.append(
            {
                "job": job.name,
                "schedule": job.schedule.expression,
                "last_run": record.last_run.isoformat() if record.last_run else None,
                "last_success": record.last_success.isoformat() if record.last_success else None,
                "last_exit": record.last_exit,
                "next_run": upcoming.isoformat() if upcoming and upcoming > now else "due now",
            }
        )
    return docs


def cmd_daemon(args: argparse.Namespace, session: Session) -> int:
    """Run every job on its schedule until SIGTERM; with --once, every due job once."""
    session.passphrase()  # the keys must be there before READY=1, not at the first job
    session.signing_key(create=True)
    daemon = Daemon(
        session.config_path,
        session.config,
        session.state_dir,
        log=Log(json_lines=args.log_json),
        notifier=Notifier(),
        clock=lambda: datetime.now().astimezone(),  # cron slots are in local time
    )
    return asyncio.run(daemon.once() if args.once else daemon.serve())
