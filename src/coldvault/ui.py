"""How progress and warnings look: a bar on a terminal, plain lines elsewhere (journal, CI, pipes)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm

from coldvault.units import format_size


class TerminalProgress:
    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._bar: tqdm | None = None
        self.warnings: list[str] = []

    def start(self, phase: str, total_bytes: int | None = None) -> None:
        self.finish()
        self._bar = tqdm(
            total=total_bytes, desc=phase, unit="B", unit_scale=True, unit_divisor=1024, file=self._stream, leave=False
        )
        self._files = 0

    def advance(self, nbytes: int, files: int = 0) -> None:
        if self._bar is not None:
            self._files += files
            if files:
                self._bar.set_postfix(files=self._files, refresh=False)
            self._bar.update(nbytes)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        if self._bar is not None:
            self._bar.write(f"warning: {message}", file=self._stream)
        else:
            print(f"warning: {message}", file=self._stream)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class LineProgress:
    """One line when a phase starts and one when it ends; nothing per file, so logs stay readable."""

    def __init__(self, stream: TextIO = sys.stderr, *, quiet: bool = False) -> None:
        self._stream = stream
        self._quiet = quiet
        self._phase: str | None = None
        self._bytes = self._files = 0
        self._started = 0.0
        self.warnings: list[str] = []

    def start(self, phase: str, total_bytes: int | None = None) -> None:
        self.finish()
        self._phase, self._bytes, self._files, self._started = phase, 0, 0, time.monotonic()

    def advance(self, nbytes: int, files: int = 0) -> None:
        self._bytes += nbytes
        self._files += files

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        print(f"warning: {message}", file=self._stream)

    def finish(self) -> None:
        if self._phase is not None and not self._quiet:
            elapsed = time.monotonic() - self._started
            done = []
            if self._files:
                done.append(f"{self._files} files")
            if self._bytes:
                rate = f" ({self._bytes / elapsed / 1e6:.0f} MB/s)" if elapsed > 0 else ""
                done.append(f"{format_size(self._bytes)}{rate}")
            print(f"{self._phase}: {', '.join(done) or 'done'} in {elapsed:.1f}s", file=self._stream)
        self._phase = None


def make_progress(*, quiet: bool) -> TerminalProgress | LineProgress:
    if not quiet and sys.stderr.isatty():
        return TerminalProgress()
    return LineProgress(quiet=quiet)


def status_line(*, quiet: bool) -> Callable[[str], None]:
    """Where long waits report: stderr, so that --stdout and --json output stay clean."""
    return (lambda _: None) if quiet else (lambda message: print(message, file=sys.stderr, flush=True))
