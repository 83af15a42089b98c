"""Service logs: plain lines on a terminal, journald priority prefixes or JSON lines otherwise.

Nothing secret is ever passed in: messages are the commands' own one-line reports, which
never contain one (see coldvault.errors).
"""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

# syslog priorities, as journald reads them from a "<N>" prefix
ERROR, WARNING, INFO = 3, 4, 6
_NAMES = {ERROR: "error", WARNING: "warning", INFO: "info"}


class Log:
    def __init__(self, stream: TextIO = sys.stderr, *, json_lines: bool = False) -> None:
        self._stream = stream
        self._json = json_lines
        self._terminal = stream.isatty()

    def info(self, message: str, **fields: object) -> None:
        self._write(INFO, message, fields)

    def warning(self, message: str, **fields: object) -> None:
        self._write(WARNING, message, fields)

    def error(self, message: str, **fields: object) -> None:
        self._write(ERROR, message, fields)

    def _write(self, priority: int, message: str, fields: dict[str, object]) -> None:
        if self._json:
            line = json.dumps({"time": time.time(), "level": _NAMES[priority], "message": message, **fields})
        elif self._terminal:
            line = f"{time.strftime('%H:%M:%S')} {_NAMES[priority]}: {message}"
        else:
            line = f"<{priority}>{message}"
        self._stream.write(line + "\n")
        self._stream.flush()
