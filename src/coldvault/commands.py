"""The commands: each takes parsed arguments and a session, prints its result, returns an exit code."""

from __future__ import annotations

import argparse
import base64
import json
import random
import stat
import sys
from collections.abc import Collection
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from coldvault.config.secret import write_secret_file
from coldvault.engine.backup import BackupOptions, backup
from coldvault.engine.check import check
from coldvault.engine.replicas import Replicas
from coldvault.engine.restore import restore, restore_to_stream, select_nodes
from coldvault.engine.select import filter_snapshots, find_snapshot
from coldvault.engine.sessions import BackupSession
from coldvault.engine.sync import TargetResult, scrub, sync
from coldvault.engine.warmup import packs_needed, warm_up
from coldvault.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    IntegrityError,
    NotFound,
    RepositoryError,
    TargetError,
    UsageError,
)
from coldvault.repo.keys import encode_recovery_key
from coldvault.repo.manifest import Snapshot
from coldvault.repo.repository import Repository, default_key_label
from coldvault.repo.tree import FILE, SYMLINK, Node
from coldvault.session import Session
from coldvault.storage.factory import check_target
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
    snapshots = filter_snapshots(repo.snapshots(), args.source, configured=session.source_names)
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
    snapshot = _select(repo, args.snapshot, args.source, configured=session.source_names)
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
    snapshot = _select(repo, args.snapshot, args.source, configured=session.source_names)
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


def _select(repo: Repository, selector: str, source: str | None, *, configured: Collection[str]) -> Snapshot:
    """A forgotten snapshot stays readable by its id until prune removes it: a way back from a
    retention policy that was too eager.  'latest' means the latest one kept."""
    snapshots = repo.snapshots(forgotten=selector != "latest")
    return find_snapshot(
        snapshots, selector, source=source, configured=configured, unreadable=repo.unreadable_snapshots
    )


def _warn_replicas(replicas: Replicas) -> None:
    """What the other targets made up for: the command succeeded, but one provider's copy needs care."""
    _warn_down(replicas)
    for damage in dict.fromkeys(replicas.damaged):
        print(f"warning: {damage}; run 'coldvault scrub' to repair it", file=sys.stderr)


def _warn_down(replicas: Replicas) -> None:
    for reason in replicas.down.values():
        print(f"warning: a target was unreachable and the others served its part: {reason}", file=sys.stderr)


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
        workers=session.workers,
        before_reading=lambda packs: warm_up(
            repo, packs, report=status_line(quiet=args.quiet), poll_interval=args.poll_interval
        ),
    )
    # A copy damaged on one target and read from another is damage all the same: scrub repairs it.
    damaged = [f"{damage}; run 'coldvault scrub' to repair it" for damage in dict.fromkeys(replicas.damaged)]
    errors = result.errors + damaged
    unread = [store.name for store in replicas.up()[1:]] if fraction > 0 else []
    if args.json:
        emit_json(
            {
                "ok": not errors,
                "errors": errors,
                "warnings": result.warnings,
                "snapshots": result.snapshots,
                "packs": result.packs,
                "packs_read": result.packs_read,
                "bytes_read": result.bytes_read,
                "targets_not_read": unread,
            }
        )
    else:
        for warning in result.warnings:
            print(f"warning: {warning}")
        for error in errors:
            print(f"error: {error}")
        verdict = f"{len(errors)} errors" if errors else "no errors"
        print(
            f"checked {result.snapshots} snapshots, {result.packs} packs"
            f" ({result.packs_read} read, {format_size(result.bytes_read)}): {verdict}"
        )
        if unread:
            print(
                f"note: each pack was read from one target ({replicas.up()[0].name} first); the copies on"
                f" {', '.join(unread)} were not: 'coldvault scrub' or 'check --target NAME' reads them"
            )
    _warn_down(replicas)
    if result.errors:
        raise IntegrityError(f"check found {len(result.errors)} damaged or missing objects; see the errors above")
    if damaged:
        raise IntegrityError(
            f"{len(damaged)} copies are damaged on one target but good on another; run 'coldvault scrub' to repair them"
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
            write_secret_file(Path(args.output), (text + "\n").encode(), what="recovery key")
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
        "type": node.type,
        "mode": f"{node.mode:04o}",
        "uid": node.uid,
        "gid": node.gid,
        "mtime": datetime.fromtimestamp(node.mtime_ns / 1e9, UTC).isoformat(),
        "mtime_ns": node.mtime_ns,  # the ISO time stops at microseconds
    }
    _put_name(doc, "path", b"/" + node.path)
    if node.type == FILE:
        doc["size"] = node.size
    if node.type == SYMLINK:
        _put_name(doc, "target", node.target or b"")
    return doc


def _put_name(doc: dict[str, object], key: str, name: bytes) -> None:
    """A name that is UTF-8 as a string under ``key``, any other bytes as base64 under ``key``_b64, as the
    listing stores them (docs/FORMAT.md): JSON readers would turn escaped surrogates into U+FFFD."""
    try:
        doc[key] = name.decode("utf-8")
    except UnicodeDecodeError:
        doc[f"{key}_b64"] = base64.b64encode(name).decode("ascii")


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
