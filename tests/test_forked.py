"""A forked child reports back as if it were a thread: its progress, its result, its error as the
same class (so the same exit code), a bug or a death as a RuntimeError; it is killed and reaped when
the parent gives up, and dies with its parent; the two draw numbers from a shared count, each once.
These tests fork the test process itself."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from processes import alive

from coldvault.engine.forked import Counter, Forked, may_fork
from coldvault.engine.progress import Progress, SilentProgress
from coldvault.errors import DestinationError, IntegrityError, Transient
from coldvault.storage.handle import object_name


class RecordingProgress(SilentProgress):
    def __init__(self) -> None:
        super().__init__()
        self.advanced: list[tuple[int, int]] = []

    def advance(self, nbytes: int, files: int = 0) -> None:
        self.advanced.append((nbytes, files))


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_progress_warnings_and_the_result_come_back_in_order() -> None:
    def work(progress: Progress) -> object:
        progress.advance(10)
        progress.warn("a/b: skipped")
        progress.advance(0, files=1)
        return {"files": 1, "child": os.getpid()}

    progress, before = RecordingProgress(), open_descriptors()
    result = Forked(work, progress).wait()
    assert isinstance(result, dict) and result["files"] == 1 and result["child"] != os.getpid()
    assert progress.advanced == [(10, 0), (0, 1)] and progress.warnings == ["a/b: skipped"]
    assert open_descriptors() == before and not multiprocessing.active_children()


def test_poll_relays_what_arrived_without_waiting_for_the_end() -> None:
    def work(progress: Progress) -> object:
        progress.advance(5)
        time.sleep(30)  # killed long before
        return None

    progress = RecordingProgress()
    child = Forked(work, progress)
    deadline = time.monotonic() + 10
    while not progress.advanced and time.monotonic() < deadline:
        child.poll()
        time.sleep(0.01)
    child.kill()
    assert progress.advanced == [(5, 0)]


@pytest.mark.parametrize(
    "error",
    [
        IntegrityError("chunk 12ab in pack 34cd has wrong content"),
        DestinationError("cannot restore at 'a': full"),
        Transient("s3: slow down"),
    ],
)
def test_an_error_of_coldvaults_is_raised_again_as_the_same_class(error: Exception) -> None:
    def work(progress: Progress) -> object:
        raise error

    with pytest.raises(type(error)) as raised:
        Forked(work, SilentProgress()).wait()
    assert type(raised.value) is type(error) and str(raised.value) == str(error)


def test_a_bug_in_the_child_is_a_runtime_error_naming_it() -> None:
    def work(progress: Progress) -> object:
        raise KeyError("unexpected")

    with pytest.raises(RuntimeError, match="in the child process: KeyError: 'unexpected'"):
        Forked(work, SilentProgress()).wait()


def test_ctrl_c_is_the_parents_to_answer() -> None:
    # Ctrl-C reaches the whole process group; the interrupted parent kills the child, which must not
    # send an error of its own first.
    def work(progress: Progress) -> object:
        os.kill(os.getpid(), signal.SIGINT)
        return "still here"

    assert Forked(work, SilentProgress()).wait() == "still here"


def test_a_child_killed_by_a_signal_is_reported_not_waited_for() -> None:
    def work(progress: Progress) -> object:
        os.kill(os.getpid(), signal.SIGKILL)
        return None

    before = open_descriptors()
    with pytest.raises(RuntimeError, match="without a result \\(killed by SIGKILL"):
        Forked(work, SilentProgress()).wait()
    assert open_descriptors() == before and not multiprocessing.active_children()


def test_kill_stops_a_busy_child_at_once_and_reaps_it() -> None:
    def work(progress: Progress) -> object:
        time.sleep(60)
        return None

    before = open_descriptors()
    child = Forked(work, SilentProgress())
    started = time.monotonic()
    child.kill()
    child.kill()  # a second time (a cleanup after wait, say) does nothing
    assert time.monotonic() - started < 10
    assert open_descriptors() == before and not multiprocessing.active_children()


def test_the_child_dies_with_its_parent(tmp_path: Path) -> None:
    # A parent killed alone (SIGKILL, or `timeout`) must not leave its child working on its own.
    pid_file = tmp_path / "child.pid"
    script = textwrap.dedent(
        f"""
        import os, signal, time
        from coldvault.engine.forked import Forked
        from coldvault.engine.progress import SilentProgress

        def work(progress):
            with open({str(pid_file)!r} + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename({str(pid_file)!r} + ".tmp", {str(pid_file)!r})
            time.sleep(60)

        Forked(work, SilentProgress())
        while not os.path.exists({str(pid_file)!r}):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_a_child_hashes_large_objects_although_the_parents_hashing_threads_stayed_behind() -> None:
    # BLAKE3 hashes large objects on Rayon's pool of threads, which a fork leaves behind: a child
    # that handed work to it waited for ever (a damaged pack, checked whole, hung a restore).
    data = os.urandom(4 << 20)
    expected = object_name(data)  # starts the pool here

    def work(progress: Progress) -> object:
        return object_name(data)

    assert Forked(work, SilentProgress()).wait() == expected


def test_a_process_running_another_thread_may_not_fork() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not may_fork()  # a lock that thread held at the fork would stay held in the child
    finally:
        stop.set()
        other.join()


def test_poll_raises_the_childs_error_as_soon_as_it_is_in() -> None:
    def work(progress: Progress) -> object:
        raise IntegrityError("chunk 12ab has wrong content")

    child = Forked(work, SilentProgress())
    deadline = time.monotonic() + 10
    with pytest.raises(IntegrityError, match="12ab"):
        while time.monotonic() < deadline:
            child.poll()
            time.sleep(0.01)
    child.kill()  # the cleanup after it: nothing left to do
    assert not multiprocessing.active_children()


def test_a_parent_and_its_child_draw_each_number_once() -> None:
    numbers = Counter()
    # Each draws one number before either goes on, so that both take part however late the child
    # starts (a CI run saw the parent draw all 20,000 before the forked child drew one).
    both_drew_one = multiprocessing.get_context("fork").Barrier(2, timeout=30)

    def draw_until(end: int) -> list[int]:
        drawn = []
        while (number := numbers.draw(unless=lambda: False)) is not None and number < end:
            drawn.append(number)
            if len(drawn) == 1:
                both_drew_one.wait()
        return drawn

    child = Forked(lambda progress: draw_until(20_000), SilentProgress())
    here = draw_until(20_000)
    there = child.wait()
    assert isinstance(there, list) and here and there
    assert sorted(here + there) == list(range(20_000))


def test_a_draw_gives_up_when_the_process_holding_the_count_is_gone() -> None:
    # A process killed while it held the lock would otherwise keep the other waiting for ever.
    numbers = Counter()
    assert numbers.draw(unless=lambda: False) == 0

    def die_holding_the_lock(progress: Progress) -> object:
        numbers._lock.acquire()
        os.kill(os.getpid(), signal.SIGKILL)
        return None

    child = Forked(die_holding_the_lock, SilentProgress())
    with pytest.raises(RuntimeError, match="killed by SIGKILL"):
        child.wait()
    assert numbers.draw(unless=child.ended) is None
