"""systemd's notify protocol in a few lines: datagrams of KEY=VALUE lines to $NOTIFY_SOCKET.

No-op when the variable is unset (not started by systemd, or not Type=notify).  An address
starting with "@" is in the abstract namespace.  Errors are swallowed: a lost notification
must never stop a backup, and systemd's own timeouts report a silent service.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Mapping


class Notifier:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval = _watchdog_interval(environ)

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def ready(self, status: str = "") -> None:
        self._send({"READY": "1", **({"STATUS": status} if status else {})})

    def status(self, text: str) -> None:
        self._send({"STATUS": text})

    def watchdog(self) -> None:
        self._send({"WATCHDOG": "1"})

    def reloading(self) -> None:
        self._send({"RELOADING": "1", "MONOTONIC_USEC": str(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)})

    def stopping(self) -> None:
        self._send({"STOPPING": "1"})

    def _send(self, fields: Mapping[str, str]) -> None:
        if not self._address:
            return
        # One line per field: a newline inside a value would start a forged field.
        message = "\n".join(f"{key}={value.replace(chr(10), ' ')}" for key, value in fields.items())
        with (
            contextlib.suppress(OSError),
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock,
        ):
            sock.sendto(message.encode(), self._address)


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Half the watchdog timeout systemd set for us (as sd_watchdog_enabled advises), or None."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = environ.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1e6 / 2
