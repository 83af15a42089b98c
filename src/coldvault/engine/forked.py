"""Run part of an operation in a forked child process, which reports back as if it were a thread.

Python runs one thread at a time, so work that holds the interpreter lock (decrypting, copying
into buffers, making objects) cannot use a second core from threads.  A forked child starts with
everything this process holds (the unlocked key, the index, open directories) at no cost, and its
lock is its own.  The child's progress and warnings go to the caller's Progress, and its result or
its error come back to the caller: an error of coldvault's is raised again here as the same class
with the same message (so the same exit code), anything else as a RuntimeError (a bug).

Forking is safe only from a process that runs no other thread (a lock another thread holds at the
fork stays held in the child for ever), and only if what the child uses holds nothing the two
processes would share at cross purposes (a connection pool, a buffer both write into): callers
check both, see ``may_fork``.
"""

from __future__ import annotations

import mmap
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from coldvault.engine.progress import Progress
from coldvault.errors import ColdvaultError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import ForkProcess


def may_fork() -> bool:
    """Whether this process runs only its main thread (a library's idle pool counts too).  Threads
    Python does not know of are not counted: Rayon's, which BLAKE3 hashes large objects on, are
    left alone by a child (see storage.handle)."""
    return threading.active_count() == 1 and threading.current_thread() is threading.main_thread()


class Forked:
    """``work(progress)`` running in a child process; ``poll`` and ``wait`` relay what it reports."""

    def __init__(self, work: Callable[[Progress], object], progress: Progress) -> None:
        # Imported here: only a restore with large files forks, and every command would pay for it.
        import multiprocessing

        context = multiprocessing.get_context("fork")
        self._progress = progress
        self._reader, writer = context.Pipe(duplex=False)
        # daemon: if this process exits without waiting (a bug), multiprocessing's exit handler
        # kills the child rather than leaving it restoring on its own.
        self._process: ForkProcess = context.Process(
            target=_in_child, args=(work, writer, os.getpid()), name="coldvault-child", daemon=True
        )
        self._process.start()
        writer.close()  # the child's end: once the child is gone, reading here ends (EOFError)
        self._outcome: tuple[str, object] | None = None
        self._ended = False

    def poll(self) -> None:
        """Relay whatever the child reported meanwhile, without waiting; raise its error as soon
        as it is in (the rest of the operation is in vain)."""
        while self._outcome is None and self._reader.poll():
            self._take()
        if self._outcome is not None and self._outcome[0] == "error":
            self.wait()

    def wait(self) -> object:
        """Relay everything up to the child's end, and return its result (or raise its error)."""
        while self._outcome is None:
            self._take()
        self._end()
        kind, value = self._outcome
        if kind == "result":
            return value
        assert isinstance(value, BaseException)
        raise value

    def kill(self) -> None:
        """After a failure here: stop the child at once (a file it was writing was never linked into
        place, so nothing of it is left, see engine.restore) and reap it; after ``wait``, nothing."""
        if not self._ended:
            self._process.kill()
            self._end()

    def _end(self) -> None:
        self._process.join()
        self._process.close()  # its descriptors, now rather than when collected
        self._reader.close()
        self._ended = True

    def ended(self) -> bool:
        """Whether the child process has ended (it may have sent nothing yet that says so)."""
        return self._ended or self._process.exitcode is not None

    def _take(self) -> None:
        try:
            message = self._reader.recv()
        except EOFError:  # it ended without a word: killed by a signal (the OOM killer, say)
            self._process.join()
            self._outcome = ("error", RuntimeError(f"the child process ended without a result ({_how(self._process)})"))
            return
        kind, *args = message
        if kind == "advance":
            self._progress.advance(*args)
        elif kind == "warn":
            self._progress.warn(*args)
        else:
            self._outcome = (kind, args[0])


class Counter:
    """Numbers that a process and the children it forks after making this draw from, each number
    drawn once: a count in memory they share (an anonymous mapping, which holds no descriptor
    open), behind a lock they share."""

    def __init__(self) -> None:
        import multiprocessing

        self._count = mmap.mmap(-1, 8)  # shared: mmap's default, what the buffers of direct_io avoid
        self._lock = multiprocessing.get_context("fork").Lock()

    def draw(self, *, unless: Callable[[], bool]) -> int | None:
        """The next number; None if ``unless()`` turns true while another process holds the lock
        (one that died holding it would otherwise keep this one waiting for ever)."""
        while not self._lock.acquire(timeout=0.1):
            if unless():
                return None
        try:
            number = int.from_bytes(self._count[:8], "little")
            self._count[:8] = (number + 1).to_bytes(8, "little")
        finally:
            self._lock.release()
        return number


def _how(process: ForkProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}; the system log says why"
    return f"exit code {code}"


class _ToParent:
    """The child's Progress: everything it reports goes to the parent."""

    def __init__(self, writer: Connection) -> None:
        self._writer = writer

    def start(self, phase: str, total_bytes: int | None = None) -> None:
        pass  # the parent started the operation

    def advance(self, nbytes: int, files: int = 0) -> None:
        self._writer.send(("advance", nbytes, files))

    def warn(self, message: str) -> None:
        self._writer.send(("warn", message))

    def finish(self) -> None:
        pass


def _in_child(work: Callable[[Progress], object], writer: Connection, parent: int) -> None:
    _die_with(parent)
    # Ctrl-C reaches the whole process group: the parent is interrupted and kills this child, which
    # must not answer with an error of its own that could reach the parent first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        writer.send(("result", work(_ToParent(writer))))
    except ColdvaultError as exc:
        writer.send(("error", type(exc)(exc.message)))
    except BaseException as exc:  # noqa: BLE001 - a bug: the parent raises it
        writer.send(("error", RuntimeError(f"in the child process: {type(exc).__name__}: {exc}")))


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (a parent killed alone, by SIGKILL or
    by ``timeout``, would otherwise leave it restoring on its own), or exit now if that happened
    already."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
