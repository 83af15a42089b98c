"""A full-restore drill: a whole snapshot from one target into a scratch directory, then the user's check.

The check command proves what byte equality cannot: that a database dump loads, that an
application starts on the restored tree.  ``{path}`` in it becomes the restored file of a
stream snapshot (the dump) or the restored directory of a tree snapshot.  The scratch
directory is removed afterwards, whatever happened.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coldvault.engine.progress import SilentProgress
from coldvault.engine.restore import restore
from coldvault.errors import ColdvaultError
from coldvault.repo.manifest import STREAM, Snapshot
from coldvault.repo.repository import Repository
from coldvault.repo.tree import FILE

_OUTPUT_TAIL_LINES = 20


@dataclass
class FullDrill:
    target: str
    snapshot: str
    source: str
    files: int = 0
    bytes: int = 0
    duration_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    check: dict[str, Any] | None = None  # command, exit_code, output_tail, duration_s

    @property
    def ok(self) -> bool:
        return not self.errors and (self.check is None or self.check["exit_code"] == 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "snapshot": self.snapshot,
            "source": self.source,
            "verdict": "pass" if self.ok else "fail",
            "files": self.files,
            "bytes": self.bytes,
            "duration_s": round(self.duration_s, 3),
            "throughput_bytes_per_s": round(self.bytes / self.duration_s, 1) if self.duration_s else 0.0,
            "errors": self.errors,
            "check": self.check,
        }


def full_drill(
    target: str,
    repo: Repository,
    snapshot: Snapshot,
    scratch: Path,
    check_command: list[str] | None,
    *,
    workers: int,
    timeout: float,
) -> FullDrill:
    result = FullDrill(target, snapshot.id, snapshot.source)
    started = time.monotonic()
    try:
        scratch.mkdir(mode=0o700, parents=True, exist_ok=False)
        restored = restore(repo, snapshot, scratch, path=None, workers=workers, progress=SilentProgress())
        result.files, result.bytes = restored.files, restored.bytes
        result.errors += restored.warnings
        result.duration_s = time.monotonic() - started
        if check_command:
            result.check = _run_check(check_command, _check_path(repo, snapshot, scratch), timeout)
    except (ColdvaultError, OSError) as exc:
        result.errors.append(str(exc))
        result.duration_s = time.monotonic() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def _check_path(repo: Repository, snapshot: Snapshot, scratch: Path) -> Path:
    if snapshot.kind == STREAM:
        (dump,) = [n for n in repo.listing(snapshot) if n.type == FILE]
        return scratch / os.fsdecode(dump.path)
    return scratch


def _run_check(command: list[str], path: Path, timeout: float) -> dict[str, Any]:
    argv = [part.replace("{path}", str(path)) for part in command]
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            env={k: v for k, v in os.environ.items() if not k.startswith("COLDVAULT_")},  # no passphrase
        )
        exit_code, output = done.returncode, done.stdout
    except subprocess.TimeoutExpired as exc:
        exit_code, output = -1, (exc.output or b"") + f"\ntimed out after {timeout:.0f}s".encode()
    except OSError as exc:
        exit_code, output = -1, f"cannot run {command[0]!r}: {exc.strerror}".encode()
    tail = deque(output.decode("utf-8", "replace").splitlines(), maxlen=_OUTPUT_TAIL_LINES)
    return {
        "command": command,
        "exit_code": exit_code,
        "output_tail": list(tail),
        "duration_s": round(time.monotonic() - started, 3),
    }
