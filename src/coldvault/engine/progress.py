"""How operations report progress; the CLI decides how it looks."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, phase: str, total_bytes: int | None = None) -> None: ...

    def advance(self, nbytes: int, files: int = 0) -> None: ...

    def warn(self, message: str) -> None: ...

    def finish(self) -> None: ...


class SilentProgress:
    """Reports nothing; collects warnings so callers and tests can read them."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def start(self, phase: str, total_bytes: int | None = None) -> None:
        pass

    def advance(self, nbytes: int, files: int = 0) -> None:
        pass

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def finish(self) -> None:
        pass
