"""Argument parsing and exit codes; the commands themselves live in coldvault.*_commands, imported when run."""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from coldvault import __version__
from coldvault.config import config_path, read_config_file
from coldvault.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, ColdvaultError, DestinationError, UsageError
from coldvault.key_ahead import KeyAhead

# What runs a command, as "module:function" below coldvault: a backup need not import the daemon,
# asyncio or the drill code (about a tenth of a second at every start).
HandlerName = str
# Commands that never unlock the repository with its passphrase: no head start on the key for them.
_KEYLESS_COMMANDS = frozenset({"init", "config", "status", "report", "sync", "scrub"})
# Commands that answer SIGTERM and SIGHUP themselves (see service.daemon).
_OWN_SIGNAL_COMMANDS = frozenset({"daemon"})
# A command makes hundreds of thousands of objects that never form cycles (index entries, listing
# entries, chunk ids), and the cyclic collector, at its default thresholds, walks all of them again
# every few thousand allocations: a quarter of an incremental backup's time.  With these it runs about
# 70 times less often (the oldest generation 300 times), and what the imports made is frozen out of its
# sight; reference counting still frees everything that is not a cycle at once.
_GC_THRESHOLDS = (50_000, 20, 20)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line; a command's positionals anywhere among its options."""

    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._subparsers is not None or self._intermixing:
            return super().parse_known_args(args, namespace)
        # A command's own parser, given what follows the command's name.  Plain parsing takes the
        # positionals before the first option at once, so in `restore latest --source db DEST` the
        # optional DEST matched nothing there and DEST was left over; intermixed parsing takes the
        # options first, then the positionals wherever they are.
        self._intermixing = True  # parse_known_intermixed_args calls this method back (Python 3.11)
        try:
            namespace, extras = self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False
        if extras:  # said here rather than by the top parser, so as to name this command's --help
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see '{self.prog} --help'")


def _global_options(*, in_subcommand: bool) -> argparse.ArgumentParser:
    """Options accepted before or after the command; after it they must not reset what came before."""
    default = {"default": argparse.SUPPRESS} if in_subcommand else {}
    flags = {"default": argparse.SUPPRESS} if in_subcommand else {"default": False}
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--config", "-c", help="config file (default: $COLDVAULT_CONFIG)", **default)
    options.add_argument(
        "--recovery-key-file", help="open the repository with the recovery key in this file", **default
    )
    options.add_argument("--quiet", "-q", action="store_true", help="no progress output", **flags)
    options.add_argument("--debug", action="store_true", help="show a traceback on internal errors", **flags)
    return options


def build_parser() -> argparse.ArgumentParser:
    common = _global_options(in_subcommand=True)
    parser = _Parser(
        prog="coldvault",
        description="Encrypted, deduplicated, immutable cold backups.",
        parents=[_global_options(in_subcommand=False)],
        epilog="exit codes: 0 ok, 2 usage, 3 partial (files skipped), 10 config, 11 key, 12 repository,"
        " 13 integrity, 14 target, 15 source, 16 destination, 70 internal, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"coldvault {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: HandlerName, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(handler=handler)
        return p

    command("init", "commands:cmd_init", "create the repository on every target")

    p = command("backup", "commands:cmd_backup", "back up every source, or one")
    p.add_argument("--source", help="only this source")
    p.add_argument("--json", action="store_true", help="print the new snapshots as JSON")

    p = command("snapshots", "commands:cmd_snapshots", "list snapshots")
    p.add_argument("--source", help="only this source")
    p.add_argument("--json", action="store_true")
    _target(p)

    p = command("ls", "commands:cmd_ls", "list the files in a snapshot")
    p.add_argument("snapshot", help="snapshot id, unique prefix, or 'latest'")
    p.add_argument("path", nargs="?", help="only this path and what is below it")
    p.add_argument("--source", help="with 'latest': the latest of this source")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    _target(p)

    p = command("restore", "commands:cmd_restore", "restore a snapshot into a directory (or to stdout)")
    p.add_argument("snapshot", help="snapshot id, unique prefix, or 'latest'")
    p.add_argument("dest", nargs="?", help="destination directory; nothing is written outside it")
    p.add_argument("--path", help="only this path and what is below it")
    p.add_argument("--source", help="with 'latest': the latest of this source")
    p.add_argument("--stdout", action="store_true", help="write a stream snapshot's bytes to stdout")
    _target(p)
    _poll_interval(p)

    p = command("check", "commands:cmd_check", "verify the repository's structure, and optionally its data")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--read-data",
        action="store_true",
        help="download and verify every pack (one copy of each: 'scrub' or --target reads every target's)",
    )
    group.add_argument("--read-data-subset", type=float, metavar="PCT", help="verify a random PCT%% of the packs")
    p.add_argument("--json", action="store_true")
    _target(p)
    _poll_interval(p)

    p = command("status", "service_commands:cmd_status", "show each target: reachable, objects, size, lag, last upload")
    p.add_argument("--json", action="store_true")

    p = command("sync", "commands:cmd_sync", "copy to every target what the others hold and it lacks")
    p.add_argument("--json", action="store_true")

    p = command("scrub", "commands:cmd_scrub", "compare the targets, verify a rotating share, repair from good copies")
    p.add_argument(
        "--read-data-subset",
        type=float,
        default=5.0,
        metavar="PCT",
        help="read back and verify the least recently verified PCT%% of each target's objects (default: 5)",
    )
    p.add_argument("--json", action="store_true")

    p = command("forget", "maintenance_commands:cmd_forget", "apply each source's retention policy (keep_* settings)")
    p.add_argument("--source", help="only this source")
    p.add_argument("--dry-run", action="store_true", help="show what would be kept and forgotten; write nothing")
    p.add_argument("--json", action="store_true")

    p = command("maintain", "maintenance_commands:cmd_maintain", "extend the locks of objects retained snapshots share")
    p.add_argument("--dry-run", action="store_true", help="show which locks fall short; change nothing")
    p.add_argument("--json", action="store_true")

    p = command("prune", "maintenance_commands:cmd_prune", "delete what no retained snapshot needs, once unlocked")
    p.add_argument("--dry-run", action="store_true", help="show what would be deleted; change nothing")
    p.add_argument("--json", action="store_true")

    p = command("key", "commands:cmd_key", "manage key slots and the recovery key")
    keys = p.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    k = keys.add_parser("list", help="list key slots", parents=[common])
    k.add_argument("--json", action="store_true")
    k = keys.add_parser("add", help="add a passphrase key slot", parents=[common])
    k.add_argument("--label", help="a note about whose key this is (default user@host)")
    k.add_argument("--new-passphrase-file", help="read the new passphrase from this file")
    k = keys.add_parser("remove", help="remove a key slot", parents=[common])
    k.add_argument("id", help="key slot id or unique prefix (see 'key list')")
    k = keys.add_parser("passwd", help="replace the key slot in use with a new passphrase", parents=[common])
    k.add_argument("--label")
    k.add_argument("--new-passphrase-file", help="read the new passphrase from this file")
    k = keys.add_parser("export", help="print the recovery key for offline escrow", parents=[common])
    k.add_argument("--output", help="write it to this new file (mode 0600) instead of stdout")

    p = command("drill", "drill_commands:cmd_drill", "restore samples from every target on its own and sign a report")
    p.add_argument("--seed", type=int, help="re-derive the sample of an earlier report (its 'seed')")
    p.add_argument(
        "--full",
        nargs="?",
        const="latest",
        metavar="SNAPSHOT",
        help="also restore a whole snapshot (default: latest) from one target and run drills.check_command on it",
    )
    p.add_argument("--source", help="with --full latest: the latest of this source")
    p.add_argument("--target", metavar="NAME", help="with --full: restore from this target (default: each in turn)")
    p.add_argument("--json", action="store_true", help="print the signed report")
    _poll_interval(p)

    p = command(
        "daemon", "service_commands:cmd_daemon", "run backups, sync, drills and scrub on their schedules (systemd)"
    )
    p.add_argument("--once", action="store_true", help="run every due job one time, then exit")
    p.add_argument("--log-json", action="store_true", help="log JSON lines instead of journald-prefixed text")

    p = command(
        "report", "drill_commands:cmd_report", "drill reports: the signing key, the local chain, offline verification"
    )
    reports = p.add_subparsers(dest="report_command", required=True, metavar="ACTION")
    r = reports.add_parser("pubkey", help="print the public key that verifies the reports", parents=[common])
    r.add_argument("--output", help="write it to this file instead of stdout")
    r = reports.add_parser("list", help="list the reports kept in the state directory", parents=[common])
    r.add_argument("--json", action="store_true")
    r = reports.add_parser("show", help="print one report", parents=[common])
    r.add_argument("id", help="sequence number or id prefix (see 'report list')")
    r.add_argument("--html", metavar="FILE", help="write it as a self-contained HTML page instead")
    r = reports.add_parser(
        "verify", help="verify reports offline with only the public key (no config needed)", parents=[common]
    )
    r.add_argument("path", metavar="FILE|DIR", help="a report, or a folder of them")
    r.add_argument("--public-key", required=True, metavar="FILE", help="the PEM from 'coldvault report pubkey'")
    r.add_argument("--chain", action="store_true", help="also check that the reports form one unbroken chain")
    r.set_defaults(offline="drill_commands:cmd_report_verify")

    p = command("config", "commands:cmd_config_validate", "check a config file")
    p.add_argument("config_command", choices=["validate"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    gc.set_threshold(*_GC_THRESHOLDS)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"coldvault: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.command in _OWN_SIGNAL_COMMANDS:
        code = _run(args)
    else:
        with _stopped_like_ctrl_c(signal.SIGTERM, signal.SIGHUP):
            code = _run(args)
    try:
        sys.stdout.flush()  # here, where a reader gone is caught, rather than at exit (status 120)
    except BrokenPipeError:
        _discard_stdout()
        return code or DestinationError.exit_code  # an error the command reported says more
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        if getattr(args, "offline", None) is not None:
            return int(_resolve(args.offline)(args))
        path = config_path(args.config)
        raw = read_config_file(path)
        recovery_key_file = Path(args.recovery_key_file) if args.recovery_key_file else None
        key_ahead = None
        if recovery_key_file is None and args.command not in _KEYLESS_COMMANDS:
            key_ahead = KeyAhead.start(raw, target=getattr(args, "target", None))
        # Imported only now, while the key is derived (see coldvault.key_ahead).
        from coldvault.config.loader import validate_config
        from coldvault.session import Session

        config = validate_config(raw, origin=str(path))

        handler = _resolve(args.handler)
        gc.freeze()  # see _GC_THRESHOLDS
        return int(handler(args, Session(config, path, recovery_key_file, key_ahead)))
    except ColdvaultError as exc:
        print(f"coldvault: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print("coldvault: interrupted" + (f" by {exc}" if isinstance(exc, _Stopped) else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (`| head`): stop, as the Unix tools do, quietly; not done,
        # so not 0, and not 130, since nobody interrupted it.
        _discard_stdout()
        return DestinationError.exit_code
    except Exception as exc:  # a bug: say so in one line, and keep the traceback for --debug
        if args.debug:
            traceback.print_exc()
        print(
            f"coldvault: internal error ({type(exc).__name__}: {exc}); rerun with --debug and report it",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


class _Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised as Ctrl-C raises KeyboardInterrupt, so that a command ends the same way:
    every ``finally`` runs (a dump command is killed, a forked child too), nothing is committed."""


@contextlib.contextmanager
def _stopped_like_ctrl_c(*signals: signal.Signals) -> Iterator[None]:
    """While in it, ``signals`` raise _Stopped; one that is ignored (nohup) stays ignored."""

    this_process = os.getpid()

    def stop(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != this_process:
            # A child forked by engine.forked: it dies of the signal as it did before; raising here
            # instead, its cleanup could wait for ever on a parent that no longer reads from it.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise _Stopped(signal.Signals(signum).name)

    before = {signum: signal.getsignal(signum) for signum in signals}
    for signum, handler in before.items():
        if handler is signal.SIG_DFL:
            signal.signal(signum, stop)
    try:
        yield
    finally:  # as it was, for a caller that runs main in its own process (tests)
        for signum, handler in before.items():
            signal.signal(signum, handler)


def _discard_stdout() -> None:
    """Send what is still buffered for stdout, and anything written later, to /dev/null: flushing
    into the closed pipe again at exit would raise a second BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _resolve(handler: HandlerName) -> Callable[..., int]:
    module, _, function = handler.partition(":")
    return getattr(importlib.import_module(f"coldvault.{module}"), function)  # type: ignore[no-any-return]


def _target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", metavar="NAME", help="read from this target only (and not from the local cache)")


def _poll_interval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how often to ask whether archived packs are warmed up (default: 60)",
    )
