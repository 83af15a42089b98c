"""The drill and report commands: restore drills per target, signed reports, offline verification."""

from __future__ import annotations

import argparse
import os
import random
import secrets
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from coldvault import __version__
from coldvault.commands import emit_json
from coldvault.engine.drill import (
    Coverage,
    Sampling,
    TargetDrill,
    body_of,
    choose_snapshots,
    drill_target,
    history,
)
from coldvault.engine.full_drill import FullDrill, full_drill
from coldvault.engine.locks import LockPolicy
from coldvault.engine.reports import ReportLog, load_public_key, public_key_pem, upload_reports
from coldvault.engine.select import find_snapshot
from coldvault.engine.warmup import packs_needed, warm_up
from coldvault.errors import EXIT_OK, ColdvaultError, IntegrityError, UsageError
from coldvault.repo.manifest import Snapshot
from coldvault.repo.report import Report, verify_chain, verify_report
from coldvault.repo.report_page import render_page
from coldvault.repo.repository import Repository
from coldvault.session import Session
from coldvault.storage.factory import open_store
from coldvault.ui import status_line
from coldvault.units import format_size


def cmd_drill(args: argparse.Namespace, session: Session) -> int:
    """Drill every target on its own and sign the report; a failing drill still writes its report."""
    key = session.signing_key(create=True)
    drills = session.config.drills
    sampling = Sampling(files=drills.files_per_snapshot, older=drills.older_snapshots)
    seed = args.seed if args.seed is not None else secrets.randbits(63)
    now = datetime.now(UTC)
    header: dict[str, object] = {
        "created": now.isoformat(),
        "host": socket.gethostname(),
        "tool_version": __version__,
        "seed": seed,
        "sampling": {"files_per_snapshot": sampling.files, "older_snapshots": sampling.older},
    }
    report = status_line(quiet=args.quiet or args.json)
    log = session.report_log()
    try:
        replicas = session.connect()
        repo = session.unlock(replicas, cached=False)
    except ColdvaultError as exc:
        signed = log.append(key, {**header, "verdict": "fail", "errors": [str(exc)], "targets": []})
        print(f"drill report {signed.sequence} ({signed.id[:12]}): fail", file=sys.stderr)
        _upload_reports(session, log)
        raise
    session.keep_journal(replicas)  # where pack coverage is remembered
    journal = replicas.journal
    assert journal is not None
    previous = log.reports(key.public_key())
    interval = _days_since(previous[-1].body.get("created") if previous else None, now)
    snapshots = repo.snapshots()
    chosen = choose_snapshots(snapshots, sampling, random.Random(seed))
    results = []
    for target in session.config.targets:
        report(f"drilling {target.name}")
        store = open_store(target)
        lock = LockPolicy.of(target)
        coverage = Coverage(drills.coverage_days, journal.last_drilled(target.name), interval)
        try:
            alone = Repository.open(store, recovery_key=repo.master_key)  # this target's own config and index
        except ColdvaultError as exc:
            results.append(TargetDrill(target.name, errors=[str(exc)]))
            continue
        result = drill_target(
            target.name, alone, store, [s.id for s in chosen], seed, sampling, lock, now, coverage,
            report=report, workers=session.workers, poll_interval=args.poll_interval,
        )  # fmt: skip
        journal.record_drilled(target.name, result.whole_packs, now.isoformat())
        results.append(result)
    full = _full_drill(args, session, repo, snapshots, len(previous), report) if args.full else None
    header["repository_id"] = repo.id
    header["history"] = history([r.body for r in previous])
    body = body_of(results, chosen, min_targets=session.config.min_targets, now=now, full=full, **header)
    signed = log.append(key, body)
    page = log.save_page(signed, render_page(signed))
    _upload_reports(session, log)
    if args.json:
        emit_json({"sequence": signed.sequence, "id": signed.id, "body": signed.body})
    else:
        for r in results:
            line = f"{r.name}: {'pass' if r.ok else 'FAIL'}, {len(r.samples)} samples, {format_size(r.bytes)}"
            line += f" in {r.duration_s:.1f}s, {r.locks_checked} locks checked"
            print(line)
            for problem in r.errors + r.lock_violations:
                print(f"  {problem}")
        if full is not None:
            check = f", check exit {full.check['exit_code']}" if full.check else ""
            print(
                f"full restore of {full.snapshot[:8]} from {full.target}: {'pass' if full.ok else 'FAIL'},"
                f" {full.files} files, {format_size(full.bytes)} in {full.duration_s:.1f}s{check}"
            )
            for problem in full.errors + (full.check["output_tail"][-5:] if full.check and not full.ok else []):
                print(f"  {problem}")
        print(f"report {signed.sequence} ({signed.id[:12]}): {signed.body['verdict']}; page {page}")
    failed = [r.name for r in results if not r.ok] + ([f"{full.target} (full restore)"] if full and not full.ok else [])
    if failed:
        raise IntegrityError(f"the drill failed on {', '.join(failed)}; report {signed.sequence} has the details")
    return EXIT_OK


def _days_since(created: object, now: datetime) -> float:
    """Days since the previous drill (one for the first), which sets this drill's share of the packs."""
    try:
        return max((now - datetime.fromisoformat(str(created))).total_seconds() / 86400, 0.0)
    except ValueError:
        return 1.0


def _full_drill(
    args: argparse.Namespace,
    session: Session,
    repo: Repository,
    snapshots: list[Snapshot],
    drills_before: int,
    report: Callable[[str], None],
) -> FullDrill:
    """Restore a whole snapshot from one target: --target, else each target in turn, drill after drill."""
    targets = session.config.targets
    target = session.config.target(args.target) if args.target else targets[drills_before % len(targets)]
    snapshot = find_snapshot(
        snapshots, args.full, source=args.source, configured=session.source_names, unreadable=repo.unreadable_snapshots
    )
    store = open_store(target)
    report(f"full restore of {snapshot.id[:8]} from {target.name}")
    try:
        alone = Repository.open(store, recovery_key=repo.master_key)
    except ColdvaultError as exc:
        return FullDrill(target.name, snapshot.id, snapshot.source, errors=[str(exc)])
    drills = session.config.drills
    scratch = (drills.scratch_dir or session.state_dir / "drill-scratch") / f"{snapshot.id[:12]}-{os.getpid()}"
    warm_up(alone, packs_needed(alone, alone.listing(snapshot)), report=report, poll_interval=args.poll_interval)
    return full_drill(
        target.name,
        alone,
        snapshot,
        scratch,
        drills.check_command,
        workers=session.workers,
        timeout=drills.check_timeout,
    )


def _upload_reports(session: Session, log: ReportLog) -> None:
    """To each target on its own, what it lacks.  Best effort: a report that cannot be uploaded now
    stays in the state directory and goes up with the next drill."""
    for target, store in zip(session.config.targets, session.target_stores(), strict=True):
        try:
            upload_reports(log, store)
        except ColdvaultError as exc:
            print(
                f"warning: reports could not be uploaded to {target.name}; the next drill tries again: {exc}",
                file=sys.stderr,
            )


def cmd_report(args: argparse.Namespace, session: Session) -> int:
    if args.report_command == "pubkey":
        existed = session.signing_key_path.exists()
        pem = public_key_pem(session.signing_key(create=True))
        if not existed:
            print(f"created the drill signing key {session.signing_key_path} (mode 0600); keep a copy", file=sys.stderr)
        if args.output:
            Path(args.output).write_bytes(pem)
            print(f"wrote the public key to {args.output}; give it to whoever verifies the reports")
        else:
            sys.stdout.write(pem.decode())
        return EXIT_OK
    public = session.signing_key().public_key()
    log = session.report_log()
    if args.report_command == "list":
        reports = log.reports(public)
        if args.json:
            emit_json([{"sequence": r.sequence, "id": r.id, **_report_summary(r)} for r in reports])
        elif not reports:
            print("no reports yet")
        for r in [] if args.json else reports:
            summary = _report_summary(r)
            print(f"{r.sequence:>6}  {r.id[:12]}  {str(summary['created'])[:19]:19}  {summary['verdict']}")
    else:  # show
        report = log.find(public, args.id)
        if args.html:
            Path(args.html).write_text(render_page(report), encoding="utf-8")
            print(f"wrote report {report.sequence} as a page to {args.html}")
        else:
            emit_json({"sequence": report.sequence, "id": report.id, "previous": report.previous, "body": report.body})
    return EXIT_OK


def _report_summary(report: Report) -> dict[str, object]:
    return {"created": report.body.get("created", ""), "verdict": report.body.get("verdict", "")}


def cmd_report_verify(args: argparse.Namespace) -> int:
    """Offline, with nothing but the public key: no config, no repository, no network."""
    public = load_public_key(Path(args.public_key))
    target = Path(args.path)
    if target.is_dir():
        paths = sorted(target.glob("*.json"))
    elif target.is_file():
        paths = [target]
    else:
        raise UsageError(f"{target} is neither a report file nor a folder of them")
    files = [(str(p), p.read_bytes()) for p in paths]
    if args.chain:
        result = verify_chain(files, public)
        for error in result.errors:
            print(f"error: {error}")
        if not result.ok:
            raise IntegrityError(f"the chain of {len(files)} reports does not verify; see the errors above")
        head = result.head
        if head is None:
            raise UsageError(f"{target} holds no reports")
        print(
            f"chain verified: {len(result.reports)} reports, 1 to {head.sequence}, each signed and linked;"
            f" head {head.id} ({_report_summary(head)['created']}): compare it with the latest you expect"
        )
        return EXIT_OK
    errors = 0
    for name, data in files:
        try:
            report = verify_report(data, public, what=name)
        except IntegrityError as exc:
            errors += 1
            print(f"error: {exc}")
            continue
        print(f"ok: {name}: report {report.sequence}, id {report.id}, signed by {report.key_id}")
    if errors:
        raise IntegrityError(f"{errors} of {len(files)} reports do not verify; see the errors above")
    if not files:
        raise UsageError(f"{target} holds no reports")
    return EXIT_OK
