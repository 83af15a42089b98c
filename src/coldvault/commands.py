"""The commands: each takes parsed arguments and a session, prints its result, returns an exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import socket
import stat
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from coldvault import __version__
from coldvault.config.secret import write_secret_file
from coldvault.engine.backup import BackupOptions, backup
from coldvault.engine.check import check
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
from coldvault.engine.replicas import Replicas
from coldvault.engine.reports import ReportLog, load_public_key, public_key_pem, upload_reports
from coldvault.engine.restore import restore, restore_to_stream, select_nodes
from coldvault.engine.select import filter_snapshots, find_snapshot
from coldvault.engine.sessions import BackupSession
from coldvault.engine.sync import TargetResult, scrub, survey, sync
from coldvault.engine.warmup import packs_needed, warm_up
from coldvault.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    ColdvaultError,
    IntegrityError,
    NotFound,
    RepositoryError,
    TargetError,
    UsageError,
)
from coldvault.repo.keys import encode_recovery_key
from coldvault.repo.manifest import Snapshot
from coldvault.repo.report import Report, verify_chain, verify_report
from coldvault.repo.report_page import render_page
from coldvault.repo.repository import Repository, default_key_label
from coldvault.repo.tree import FILE, SYMLINK, Node
from coldvault.service.daemon import Daemon, Ledger, jobs_of
from coldvault.service.log import Log
from coldvault.service.notify import Notifier
from coldvault.session import Session
from coldvault.storage.factory import check_target, open_store
from coldvault.storage.handle import Handle, Kind
from coldvault.ui import make_progress, status_line
from coldvault.units import format_size


def _warn_skipped(repo: Repository) -> None:
    """Damaged objects that reading stepped over: the command went on, but the user must know."""
    for message in dict.fromkeys(repo.skipped):
        print(f"warning: {message}; run 'coldvault check --read-data'", file=sys.stderr)


def emit_json(doc: object) -> None:
    json.dump(doc, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def cmd_init(args: argparse.Namespace, session: Session) -> int:
    stores = session.target_stores()
    for target, store in zip(session.config.targets, stores, strict=True):
        check_target(target, store)  # every target must take part in init: no quorum here
        try:
            store.head(Handle(Kind.CONFIG))
        except NotFound:
            continue
        raise RepositoryError(f"target {target.name!r} already holds a coldvault repository; nothing was changed")
    passphrase = session.passphrase(confirm=True)
    repo = Repository.init(Replicas(stores), passphrase, session.config.repository.format)
    names = ", ".join(t.name for t in session.config.targets)
    print(f"initialised repository {repo.id} on {names}")
    print("keep the passphrase safe, and escrow the recovery key offline: coldvault key export")
    return EXIT_OK


def cmd_backup(args: argparse.Namespace, session: Session) -> int:
    sources = [session.config.source(args.source)] if args.source else list(session.config.sources)
    if not sources:
        raise UsageError("the config has no [[sources]]; add one (see configs/example.toml)")
    replicas = session.connect(writing=True)
    session.keep_journal(replicas)
    repo = session.unlock(replicas)
    options = BackupOptions(
        workers=session.workers,
        compression_level=session.config.repository.compression_level,
        uploads_in_flight=session.uploads_in_flight,
    )
    results = []
    with BackupSession(repo) as live:
        for source in sources:
            progress = make_progress(quiet=args.quiet or args.json)
            result = backup(repo, source, options, progress, replicas=replicas, before_commit=live.check_alive)
            results.append(result)
            if not args.json:
                _print_backup(source.name, result.snapshot)
    all_targets = [t.name for t in session.config.targets]

    if args.json:
        emit_json(
            [
                dict(_snapshot_doc(r.snapshot), targets=list(r.targets), lagging=_lagging(all_targets, r.targets))
                for r in results
            ]
        )
    for name in _lagging(all_targets, *(r.targets for r in results)):
        why = replicas.down.get(name)
        print(
            f"warning: target {name} is lagging{f' ({why})' if why else ''}; the backup met"
            f" repository.min_targets without it; run 'coldvault sync' once it is back",
            file=sys.stderr,
        )
    _warn_skipped(repo)
    return EXIT_PARTIAL if any(r.snapshot.partial for r in results) else EXIT_OK


def _print_backup(source: str, snap: Snapshot) -> None:
    s = snap.summary
    print(
        f"snapshot {snap.id[:8]} of {source}: {s['files']} files, {format_size(s['bytes'])}, "
        f"{format_size(s['new_bytes'])} new ({format_size(s['stored_bytes'])} stored), "
        f"{s['duration_ms'] / 1000:.1f}s" + (f", {len(snap.warnings)} warnings" if snap.warnings else "")
    )


def _lagging(all_targets: list[str], *holders: tuple[str, ...]) -> list[str]:
    """Targets that did not receive every one of the snapshots."""
    return [name for name in all_targets if not all(name in h for h in holders)]


def cmd_snapshots(args: argparse.Namespace, session: Session) -> int:
    repo = session.open_repo(only=args.target)
    snapshots = filter_snapshots(repo.snapshots(), args.source)
    _warn_skipped(repo)
    if args.json:
        emit_json([_snapshot_doc(s) for s in snapshots])
        return EXIT_OK
    if not snapshots:
        print("no snapshots yet")
        return EXIT_OK
    print(f"{'ID':8}  {'TIME (UTC)':19}  {'SOURCE':12}  {'HOST':16}  {'KIND':6}  {'FILES':>7}  {'SIZE':>10}  NOTE")
    for s in snapshots:
        note = f"partial: {len(s.warnings)} warnings" if s.partial else ""
        when = s.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"{s.id[:8]}  {when}  {s.source[:12]:12}  {s.host[:16]:16}  {s.kind:6}  "
            f"{s.summary.get('files', 0):>7}  {format_size(s.summary.get('bytes', 0)):>10}  {note}"
        )
    return EXIT_OK


def cmd_ls(args: argparse.Namespace, session: Session) -> int:
    repo = session.open_repo(only=args.target)
    snapshot = find_snapshot(_selectable(repo, args.snapshot), args.snapshot, source=args.source)
    _warn_skipped(repo)
    nodes = select_nodes(repo.listing(snapshot), args.path)
    out = sys.stdout
    for node in nodes:
        if args.json:
            out.write(json.dumps(_node_doc(node)) + "\n")
        else:
            out.write(_node_line(node) + "\n")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace, session: Session) -> int:
    replicas = session.connect(only=args.target)
    repo = session.unlock(replicas, cached=args.target is None)
    snapshot = find_snapshot(_selectable(repo, args.snapshot), args.snapshot, source=args.source)
    _ = repo.index  # load it now, so skipped index objects are reported before the restore starts
    _warn_skipped(repo)
    if args.stdout and args.dest:
        raise UsageError("give either DEST or --stdout, not both")
    if not args.stdout and not args.dest:
        raise UsageError("give a destination directory (or --stdout for a stream snapshot)")
    needed = packs_needed(repo, select_nodes(repo.listing(snapshot), None if args.stdout else args.path))
    warm_up(repo, needed, report=status_line(quiet=args.quiet), poll_interval=args.poll_interval)
    if args.stdout:
        restore_to_stream(repo, snapshot, sys.stdout.buffer, workers=session.workers)
        _warn_replicas(replicas)
        return EXIT_OK
    progress = make_progress(quiet=args.quiet)
    result = restore(repo, snapshot, Path(args.dest), path=args.path, workers=session.workers, progress=progress)
    print(f"restored snapshot {snapshot.id[:8]}: {result.files} files, {format_size(result.bytes)} into {args.dest}")
    _warn_replicas(replicas)
    return EXIT_PARTIAL if result.warnings else EXIT_OK


def _selectable(repo: Repository, selector: str) -> list[Snapshot]:
    """A forgotten snapshot stays readable by its id until prune removes it: a way back from a
    retention policy that was too eager.  'latest' means the latest one kept."""
    return repo.snapshots(forgotten=selector != "latest")


def _warn_replicas(replicas: Replicas) -> None:
    """What the other targets made up for: the command succeeded, but one provider's copy needs care."""
    for reason in replicas.down.values():
        print(f"warning: a target was unreachable and the others served its part: {reason}", file=sys.stderr)
    for damage in dict.fromkeys(replicas.damaged):
        print(f"warning: {damage}; another target's copy was used; run 'coldvault scrub' to repair it", file=sys.stderr)


def cmd_check(args: argparse.Namespace, session: Session) -> int:
    fraction = 1.0 if args.read_data else (args.read_data_subset or 0.0) / 100
    if not 0 <= fraction <= 1:
        raise UsageError("--read-data-subset takes a percentage from 0 to 100")
    replicas = session.connect(only=args.target)
    repo = session.unlock(replicas, cached=False)  # verify what the targets hold, not local copies
    result = check(
        repo,
        read_fraction=fraction,
        progress=make_progress(quiet=args.quiet or args.json),
        rng=random.Random(),
        before_reading=lambda packs: warm_up(
            repo, packs, report=status_line(quiet=args.quiet), poll_interval=args.poll_interval
        ),
    )
    if args.json:
        emit_json(
            {
                "ok": result.ok,
                "errors": result.errors,
                "warnings": result.warnings,
                "snapshots": result.snapshots,
                "packs": result.packs,
                "packs_read": result.packs_read,
                "bytes_read": result.bytes_read,
            }
        )
    else:
        for warning in result.warnings:
            print(f"warning: {warning}")
        for error in result.errors:
            print(f"error: {error}")
        verdict = "no errors" if result.ok else f"{len(result.errors)} errors"
        print(
            f"checked {result.snapshots} snapshots, {result.packs} packs"
            f" ({result.packs_read} read, {format_size(result.bytes_read)}): {verdict}"
        )
    _warn_replicas(replicas)
    if not result.ok:
        raise IntegrityError(f"check found {len(result.errors)} damaged or missing objects; see the errors above")
    if replicas.damaged:
        raise IntegrityError(
            f"{len(set(replicas.damaged))} copies are damaged on one target but good on another;"
            " run 'coldvault scrub' to repair them"
        )
    if replicas.down:
        raise TargetError(
            f"check could not read {', '.join(replicas.down)} and verified the other targets only:"
            f" {'; '.join(replicas.down.values())}"
        )
    return EXIT_OK


def cmd_sync(args: argparse.Namespace, session: Session) -> int:
    replicas = session.connect()
    session.keep_journal(replicas)
    results = sync(replicas, report=status_line(quiet=args.quiet or args.json))
    return _report_targets(results, args.json, verb="sync")


def cmd_scrub(args: argparse.Namespace, session: Session) -> int:
    if not 0 <= args.read_data_subset <= 100:
        raise UsageError("--read-data-subset takes a percentage from 0 to 100")
    replicas = session.connect()
    session.keep_journal(replicas)
    report = status_line(quiet=args.quiet or args.json)
    results = scrub(replicas, read_fraction=args.read_data_subset / 100, rng=random.Random(), report=report)
    return _report_targets(results, args.json, verb="scrub")


def _report_targets(results: list[TargetResult], as_json: bool, *, verb: str) -> int:
    if as_json:
        emit_json({"ok": all(r.ok for r in results), "targets": [_target_doc(r) for r in results]})
    else:
        for r in results:
            if not r.reachable:
                print(f"{r.name}: unreachable ({r.error})")
                continue
            line = f"{r.name}: {r.objects} objects, {format_size(r.bytes)}"
            if verb == "scrub":
                line += f"; verified {r.verified} ({format_size(r.verified_bytes)}), {len(r.damaged)} damaged"
            line += f"; {len(r.missing)} missing ({format_size(r.missing_bytes)}), {len(r.repaired)} repaired"
            print(line)
            for path, why in sorted(r.unrepaired.items()):
                print(f"  not repaired: {path}: {why}")
    unreachable = [r.name for r in results if not r.reachable]
    unrepaired = sum(len(r.unrepaired) for r in results)
    if unrepaired:
        raise IntegrityError(f"{verb} could not repair {unrepaired} objects; see the lines above")
    if unreachable:
        raise TargetError(f"{verb} could not reach {', '.join(unreachable)}; run it again once the target is back")
    return EXIT_OK


def _target_doc(r: TargetResult) -> dict[str, object]:
    return {**asdict(r), "reachable": r.reachable}


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


def cmd_key(args: argparse.Namespace, session: Session) -> int:
    replicas = session.connect(writing=args.key_command in ("add", "remove", "passwd"))
    if args.key_command in ("remove", "passwd") and replicas.down:
        # A slot left on a target that missed the removal would be copied back to the others by sync.
        raise TargetError(
            f"removing a key slot needs every target, and {', '.join(replicas.down)} is unreachable"
            f" ({'; '.join(replicas.down.values())}); nothing was changed"
        )
    repo = session.unlock(replicas)
    if args.key_command == "list":
        slots = repo.key_slots()
        if args.json:
            emit_json(
                [{"id": n, "label": s.label, "created": s.created, "current": n == repo.current_slot} for n, s in slots]
            )
        else:
            for name, slot in slots:
                mark = "*" if name == repo.current_slot else " "
                print(f"{mark} {name[:12]}  {slot.created[:19]}  {slot.label}")
    elif args.key_command == "add":
        name = repo.add_key(session.new_passphrase(args.new_passphrase_file), args.label or default_key_label())
        print(f"added key slot {name[:12]}")
    elif args.key_command == "remove":
        repo.remove_key(args.id)
        print(f"removed key slot {args.id}")
    elif args.key_command == "passwd":
        old, name = repo.replace_current_key(
            session.new_passphrase(args.new_passphrase_file), args.label or default_key_label()
        )
        print(f"replaced key slot {old[:12]} with {name[:12]}")
    elif args.key_command == "export":
        text = encode_recovery_key(repo.master_key)
        if args.output:
            write_secret_file(Path(args.output), (text + "\n").encode())
            print(
                f"wrote the recovery key to {args.output} (mode 0600); print it, store it offline, then delete the file"
            )
        else:
            print(text)
            print(
                "This recovery key opens the repository without any passphrase. Store it offline (paper, a safe);"
                " anyone holding it can read every backup.",
                file=sys.stderr,
            )
    return EXIT_OK


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
            report=report, poll_interval=args.poll_interval,
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
    snapshot = find_snapshot(snapshots, args.full, source=args.source)
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


def cmd_config_validate(args: argparse.Namespace, session: Session) -> int:
    cfg = session.config
    print(f"{session.config_path}: valid ({len(cfg.targets)} targets, {len(cfg.sources)} sources)")
    return EXIT_OK


def _snapshot_doc(s: Snapshot) -> dict[str, object]:
    return {
        "id": s.id,
        "source": s.source,
        "kind": s.kind,
        "time": s.time.isoformat(),
        "host": s.host,
        "username": s.username,
        "paths": list(s.paths),
        "program": s.program,
        "parent": s.parent,
        "summary": s.summary,
        "warnings": list(s.warnings),
        "tool_version": s.tool_version,
    }


def _node_doc(node: Node) -> dict[str, object]:
    doc: dict[str, object] = {
        "path": "/" + os.fsdecode(node.path),
        "type": node.type,
        "mode": f"{node.mode:04o}",
        "uid": node.uid,
        "gid": node.gid,
        "mtime": datetime.fromtimestamp(node.mtime_ns / 1e9, UTC).isoformat(),
    }
    if node.type == FILE:
        doc["size"] = node.size
    if node.type == SYMLINK:
        doc["target"] = os.fsdecode(node.target or b"")
    return doc


def _node_line(node: Node) -> str:
    kind = {"file": "-", "dir": "d", "symlink": "l", "fifo": "p", "socket": "s", "chardev": "c", "blockdev": "b"}[
        node.type
    ]
    mode = stat.filemode(node.mode)[1:]
    when = datetime.fromtimestamp(node.mtime_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")
    name = "/" + _printable(node.path)
    if node.type == SYMLINK:
        name += " -> " + _printable(node.target or b"")
    return f"{kind}{mode} {node.uid:>5} {node.gid:>5} {node.size if node.type == FILE else 0:>12} {when}  {name}"


def _printable(name: bytes) -> str:
    """A file name as one safe terminal line: invalid UTF-8 and control characters escaped."""
    text = name.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
