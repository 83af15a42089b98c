"""sd_notify over a real Unix datagram socket, bound by the test as systemd binds it."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldvault.service.notify import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> dict[str, str]:
    return dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())


def test_ready_status_watchdog_stopping_arrive_as_systemd_reads_them(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.ready("idle")
    assert received(sock) == {"READY": "1", "STATUS": "idle"}
    notifier.status("backup home: uploading\nREADY=1")  # a newline must not smuggle in a field
    assert received(sock) == {"STATUS": "backup home: uploading READY=1"}
    notifier.watchdog()
    assert received(sock) == {"WATCHDOG": "1"}
    notifier.reloading()
    message = received(sock)
    assert message["RELOADING"] == "1" and int(message["MONOTONIC_USEC"]) > 0
    notifier.stopping()
    assert received(sock) == {"STOPPING": "1"}


def test_abstract_namespace_addresses() -> None:
    name = f"coldvault-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == {"READY": "1"}


def test_without_systemd_it_does_nothing_and_a_dead_socket_is_harmless(tmp_path: Path) -> None:
    assert not Notifier({}).enabled
    Notifier({}).ready()
    Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).ready()  # no exception


@pytest.mark.parametrize(
    "environ, interval",
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_the_watchdog_interval_is_half_the_timeout_for_this_process(environ: dict, interval: float | None) -> None:  # type: ignore[type-arg]
    assert Notifier(environ).watchdog_interval == interval
