"""The commands that age a repository: forget (which snapshots retention lets go of), maintain
(locks long enough for what is kept) and prune (delete what nothing needs any more)."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import socket
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from coldvault.clock import system_clock
from coldvault.commands import emit_json
from coldvault.engine.lease import Lease
from coldvault.engine.locks import LockPolicy, References, TargetLocks, maintain_target
from coldvault.engine.prune import PruneResult, RepackOptions, prune
from coldvault.engine.retention import Group, plan
from coldvault.errors import EXIT_OK, ColdvaultError, IntegrityError, TargetError
from coldvault.session import Session
from coldvault.storage.factory import check_target
from coldvault.storage.handle import Handle
from coldvault.ui import status_line
from coldvault.units import format_size


def cmd_forget(args: argparse.Namespace, session: Session) -> int:
    if args.source is not None:
        session.config.source(args.source)  # a typo must not read as "nothing to forget"
    replicas = session.connect(writing=not args.dry_run)
    repo = session.unlock(replicas)
    groups = plan(repo.snapshots(), session.config.sources, only=args.source)
    doomed = [d.snapshot.id for g in groups for d in g.decisions if not d.keep]
    record = None
    if doomed and not args.dry_run:
        record = repo.forget(doomed, host=socket.gethostname(), username=getpass.getuser())
    if args.json:
        emit_json(
            {
                "dry_run": args.dry_run,
                "record": record.id if record else None,
                "forgotten": doomed,
                "groups": [_group_doc(g) for g in groups],
            }
        )
        return EXIT_OK
    for group in groups:
        kept = sum(d.keep for d in group.decisions)
        print(f"{group.source} from {group.host}: keeping {kept} of {len(group.decisions)} snapshots")
        if not args.quiet:
            for d in group.decisions:
                when = d.snapshot.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
                print(f"  {'keep' if d.keep else 'forget':6}  {d.snapshot.id[:8]}  {when}  {', '.join(d.reasons)}")
    if not doomed:
        print("nothing to forget")
    elif args.dry_run:
        print(f"would forget {len(doomed)} snapshots (dry run: nothing was written)")
    else:
        assert record is not None
        print(
            f"forgot {len(doomed)} snapshots (record {record.id[:8]}); their data stays on the targets,"
            " restorable by id, until 'coldvault prune' removes it after its lock ends"
        )
    return EXIT_OK


def cmd_maintain(args: argparse.Namespace, session: Session) -> int:
    replicas = session.connect()
    repo = session.unlock(replicas)
    report = status_line(quiet=args.quiet or args.json)
    snapshots = repo.snapshots()
    references = References(repo)
    needs: dict[str, set[Handle]] = {}
    unresolved = []
    for snapshot in snapshots:
        try:
            needs[snapshot.id] = references.objects(snapshot)
        except ColdvaultError as exc:
            unresolved.append(str(exc))  # the others' locks are still worth extending
    resolved = [s for s in snapshots if s.id in needs]
    now = datetime.now(UTC)
    results = [
        maintain_target(
            target.name, store, LockPolicy.of(target), resolved, needs, now=now, dry_run=args.dry_run, report=report
        )
        for target, store in zip(session.config.targets, replicas.stores, strict=True)
    ]
    if args.json:
        emit_json({"dry_run": args.dry_run, "unresolved": unresolved, "targets": [asdict(r) for r in results]})
    else:
        for r in results:
            print(_locks_line(r, args.dry_run))
            for line in r.short if args.dry_run else []:
                print(f"  {line}")
            for line in r.missing + r.errors:
                print(f"  {line}")
        for line in unresolved:
            print(f"  {line}")
    unreachable = [r.name for r in results if r.errors]
    if unresolved or any(r.missing for r in results):
        raise IntegrityError(
            "objects that retained snapshots need are missing; see the lines above and run 'coldvault check'"
        )
    if unreachable:
        raise TargetError(f"maintain could not finish on {', '.join(unreachable)}; run it again once it is back")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace, session: Session) -> int:
    replicas = session.connect()
    for target, store in zip(session.config.targets, replicas.stores, strict=True):
        try:
            check_target(target, store)
        except TargetError as exc:
            raise TargetError(f"prune needs every target, and {exc}; run it again once the target is back") from None
    repo = session.unlock(replicas, cached=False)
    report = status_line(quiet=args.quiet or args.json)
    prune_config = session.config.prune
    with contextlib.nullcontext(None) if args.dry_run else Lease(replicas.stores, system_clock) as lease:
        result = prune(
            repo, replicas, lease, clock=system_clock, margin=timedelta(seconds=prune_config.safety_margin),
            repack=RepackOptions(prune_config.repack_unused, prune_config.repack_limit),
            dry_run=args.dry_run, report=report,
        )  # fmt: skip
    if args.json:
        emit_json(dict(vars(result), dry_run=args.dry_run))
        _refuse_damage(result)
        return EXIT_OK
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{result.retained} snapshots retained, {result.forgotten} forgotten; {result.garbage} packs unreferenced,"
        f" {result.kept_locked} of them still locked, {result.kept_in_use} left for running backups"
    )
    if result.index_written:
        print(
            f"index {result.index_written[:12]} supersedes {result.superseded} index objects"
            f" ({result.reindexed} packs indexed again)"
        )
    waiting = result.repack_locked + result.repack_archived + result.repack_deferred
    if result.repacked or waiting:
        print(
            f"{'would repack' if args.dry_run else 'repacked'} {result.repacked} mostly-garbage packs, keeping"
            f" {format_size(result.repack_bytes)} of chunks; {waiting} more wait ({result.repack_locked} locked,"
            f" {result.repack_archived} only in archive storage, {result.repack_deferred} over repack_limit)"
        )
    for target in session.config.targets:
        paths = result.deleted.get(target.name, [])
        print(f"{target.name}: {verb} {len(paths)} objects")
    print(f"{verb} {format_size(result.deleted_bytes)} in all")
    _refuse_damage(result)
    return EXIT_OK


def _refuse_damage(result: PruneResult) -> None:
    """The run did what it safely could; damage found on the way still fails it, naming the pack."""
    if result.repack_damaged:
        raise IntegrityError(
            f"{len(result.repack_damaged)} packs could not be repacked, damaged on every target"
            f" ({result.repack_damaged[0]}); run 'coldvault check --read-data' and 'coldvault scrub'"
        )


def _locks_line(r: TargetLocks, dry_run: bool) -> str:
    if r.skipped:
        return f"{r.name}: skipped ({r.skipped})"
    verb = "would extend" if dry_run else "extended"
    return f"{r.name}: {r.checked} locks checked, {verb} {len(r.extended)}, {len(r.missing)} objects missing"


def _group_doc(group: Group) -> dict[str, object]:
    return {
        "source": group.source,
        "host": group.host,
        "snapshots": [
            {"id": d.snapshot.id, "time": d.snapshot.time.isoformat(), "keep": d.keep, "reasons": d.reasons}
            for d in group.decisions
        ],
    }
