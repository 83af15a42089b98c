"""Find snapshots by id, unique id prefix, or 'latest'."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from coldvault.errors import IntegrityError, UsageError
from coldvault.repo.manifest import Snapshot

# Fewer characters would match half the repository: a typo, not a choice.
_MIN_PREFIX = 4


def filter_snapshots(snapshots: list[Snapshot], source: str | None, *, configured: Collection[str]) -> list[Snapshot]:
    """The snapshots of ``source`` (all for None); a source neither ``configured`` nor in any snapshot is
    a typo, not a source without snapshots (one removed from the config still has its own)."""
    if source is not None and source not in configured and all(s.source != source for s in snapshots):
        known = ", ".join(sorted(set(configured) | {s.source for s in snapshots})) or "none"
        raise UsageError(f"no source named {source!r} in the config or in any snapshot (known: {known})")
    return [s for s in snapshots if source is None or s.source == source]


def find_snapshot(
    snapshots: list[Snapshot],
    selector: str,
    *,
    source: str | None = None,
    configured: Collection[str] = (),
    unreadable: Mapping[str, str] = {},
) -> Snapshot:
    """``unreadable``: manifests that could not be read but may be genuine (Repository.unreadable_snapshots),
    name -> why.  Their source and time are unknown, so while there is one, 'latest' cannot be told:
    quietly taking the newest readable snapshot would restore an older state than the user asked for."""
    candidates = filter_snapshots(snapshots, source, configured=configured)
    scope = f" of source {source!r}" if source else ""
    if selector == "latest":
        if unreadable:
            raise IntegrityError(
                f"cannot tell the latest snapshot{scope}: {unreadable[min(unreadable)]}, and it may be newer;"
                " restore a snapshot by its id (see 'coldvault snapshots'), or repair the damaged one first"
                " ('coldvault scrub')"
            )
        if not candidates:
            raise UsageError(f"there are no snapshots{scope} yet; run 'coldvault backup' first")
        return candidates[-1]
    if len(selector) < _MIN_PREFIX:
        raise UsageError(
            f"{selector!r} is too short: give 'latest', an id, or at least {_MIN_PREFIX} of its first characters"
        )
    prefix = selector.lower()
    matches = [s for s in candidates if s.id.startswith(prefix)]
    damaged = [name for name in sorted(unreadable) if name.startswith(prefix)]
    if len(matches) == 1 and not damaged:
        return matches[0]
    if len(damaged) == 1 and not matches:
        raise IntegrityError(f"snapshot {damaged[0][:8]} cannot be read: {unreadable[damaged[0]]}")
    if not matches and not damaged:
        raise UsageError(
            f"no snapshot{scope} matches {selector!r} (give 'latest', an id, or at least {_MIN_PREFIX} of its first"
            " characters); see 'coldvault snapshots'"
        )
    raise UsageError(f"{selector!r} matches {len(matches) + len(damaged)} snapshots; give more characters of the id")
