"""The commands that age a repository: forget (which snapshots retention lets go of), maintain
(locks long enough for what is kept) and prune (delete what nothing needs any more)."""

from __future__ import annotations

import argparse
import getpass
import socket
from datetime import UTC

from coldvault.commands import emit_json
from coldvault.engine.retention import Group, plan
from coldvault.errors import EXIT_OK
from coldvault.session import Session


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


def _group_doc(group: Group) -> dict[str, object]:
    return {
        "source": group.source,
        "host": group.host,
        "snapshots": [
            {"id": d.snapshot.id, "time": d.snapshot.time.isoformat(), "keep": d.keep, "reasons": d.reasons}
            for d in group.decisions
        ],
    }
