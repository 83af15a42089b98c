"""Find snapshots by id, unique id prefix, or 'latest'."""

from __future__ import annotations

from coldvault.errors import UsageError
from coldvault.repo.manifest import Snapshot


def filter_snapshots(snapshots: list[Snapshot], source: str | None) -> list[Snapshot]:
    return [s for s in snapshots if source is None or s.source == source]


def find_snapshot(snapshots: list[Snapshot], selector: str, *, source: str | None = None) -> Snapshot:
    candidates = filter_snapshots(snapshots, source)
    scope = f" of source {source!r}" if source else ""
    if selector == "latest":
        if not candidates:
            raise UsageError(f"there are no snapshots{scope} yet; run 'coldvault backup' first")
        return candidates[-1]
    matches = [s for s in candidates if s.id.startswith(selector.lower())] if len(selector) >= 4 else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(
            f"no snapshot{scope} matches {selector!r} (give 'latest', an id, or at least 4 of its first characters);"
            " see 'coldvault snapshots'"
        )
    raise UsageError(f"{selector!r} matches {len(matches)} snapshots; give more characters of the id")
