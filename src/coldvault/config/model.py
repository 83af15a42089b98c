"""The typed configuration model.  Validated once, at load; unknown keys are errors."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from coldvault.config.expand import expand_path, expand_vars
from coldvault.config.schedule import Schedule
from coldvault.errors import UsageError

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30}
_SIZE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

DEFAULT_LOCK_DAYS = 30
# Where packs may go.  Everything else (config, key slots, indexes, manifests, listings) stays
# in the default class, readable at once.
S3_STORAGE_CLASSES = frozenset(
    {"STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"}
)
GCS_STORAGE_CLASSES = frozenset({"STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"})
AZURE_STORAGE_CLASSES = frozenset({"Hot", "Cool", "Cold", "Archive"})


def _parse_size(value: object) -> object:
    """Accept 1048576 or "1MiB"; binary units only, so "1M" means 2**20."""
    if isinstance(value, str):
        match = _SIZE.match(value)
        if not match or match.group(2).lower() not in _UNITS:
            raise ValueError(f'expected a size such as 1048576, "512KiB" or "32MiB", got {value!r}')
        return int(match.group(1)) * _UNITS[match.group(2).lower()]
    return value


def _check_schedule(value: object) -> object:
    """A cron expression or alias, checked now; "never" turns the job off."""
    if value == "never":
        return None
    if isinstance(value, str):
        Schedule.parse(value)  # a ValueError names what is accepted
    return value


_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)?\s*$")
_SECONDS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _parse_duration(value: object) -> object:
    """Accept 900 (seconds) or "15m", "1h", "30s", "1d"."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f'expected a duration such as 900, "30s", "15m", "1h" or "1d", got {value!r}')
        return int(match.group(1)) * _SECONDS[match.group(2)]
    return value


ScheduleText = Annotated[str | None, BeforeValidator(_check_schedule)]
Seconds = Annotated[int, BeforeValidator(_parse_duration), Field(ge=0)]


def _split_command(value: object) -> object:
    return shlex.split(value) if isinstance(value, str) else value


Size = Annotated[int, BeforeValidator(_parse_size), Field(gt=0)]
ExpandedPath = Annotated[Path, BeforeValidator(expand_path)]
Name = Annotated[str, Field(pattern=_NAME)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FormatConfig(_Strict):
    """Parameters fixed when the repository is initialised; later changes are ignored."""

    # 512 KiB: an edit costs the chunk around it, and half the average stored 7% less for a tree
    # changed in scattered places (docs/BENCHMARKS.md, 2026-12-07 fourth session); the index holds each
    # chunk in ~66 bytes, so twice the chunks stay cheap to hold.
    chunk_min_size: Size = 128 << 10
    chunk_avg_size: Size = 512 << 10
    chunk_max_size: Size = 4 << 20
    pack_size: Size = 32 << 20

    @model_validator(mode="after")
    def _ordered(self) -> FormatConfig:
        if not 64 <= self.chunk_min_size <= self.chunk_avg_size <= self.chunk_max_size:
            raise ValueError("chunk sizes must satisfy 64 <= chunk_min_size <= chunk_avg_size <= chunk_max_size")
        if self.chunk_avg_size < 256 or self.chunk_max_size < 1024:  # FastCDC's lower limits
            raise ValueError("chunk_avg_size must be at least 256 and chunk_max_size at least 1KiB")
        if self.chunk_avg_size > 4 << 20 or self.chunk_min_size > 1 << 20 or self.chunk_max_size > 16 << 20:
            raise ValueError("chunk sizes are limited to min 1MiB, avg 4MiB, max 16MiB")
        if self.pack_size > 1 << 30:
            raise ValueError("pack_size is limited to 1GiB")
        return self


# 1, not zstd's own 3: a backup runs on production hosts, and on the bench tree each level up costs
# ~25% more CPU per compressible byte for 1-3% less storage (docs/BENCHMARKS.md, "Compression level").
DEFAULT_COMPRESSION_LEVEL = 1


class RepositoryConfig(_Strict):
    passphrase_file: ExpandedPath | None = None
    state_dir: ExpandedPath | None = None
    compression_level: int = Field(default=DEFAULT_COMPRESSION_LEVEL, ge=1, le=19)
    workers: int | None = Field(default=None, ge=1, le=64)
    # How many targets must hold a snapshot for its backup to count as complete; None means all.
    min_targets: int | None = Field(default=None, ge=1)
    # Objects a lagging target missed are kept locally, up to this many bytes, so that catching
    # it up later costs no download from another provider; beyond it, they are copied from one.
    staging_limit: Annotated[int, BeforeValidator(_parse_size), Field(ge=0)] = 1 << 30
    format: FormatConfig = FormatConfig()


class LocalTarget(_Strict):
    name: Name
    type: Literal["local"]
    path: ExpandedPath


class LockConfig(_Strict):
    """Retention written with every object at upload: compliance (nobody can shorten it) or governance."""

    mode: Literal["compliance", "governance"] = "compliance"
    days: int = Field(default=DEFAULT_LOCK_DAYS, ge=1, le=36500)
    # When 'coldvault maintain' extends the lock of an object a newer snapshot shares, it extends
    # it this many days past the need: one request per shared object every few days, not daily.
    extend_ahead_days: int = Field(default=7, ge=0, le=3650)


def _lock_switch(value: object) -> object:
    """``lock = false`` turns locking off; ``true`` (or omitting it) means the defaults."""
    if value is True:
        return {}
    if value is False:
        return None
    return value


Lock = Annotated[LockConfig | None, BeforeValidator(_lock_switch)]
_PREFIX = r"^([A-Za-z0-9._-]+/)*$"
_ENDPOINT = r"^https?://[^/\s]+(/[^\s]*)?$"


class _CloudTarget(_Strict):
    STORAGE_CLASSES: ClassVar[frozenset[str]]  # where packs may go; set by each cloud
    name: Name
    prefix: str = ""
    endpoint: Annotated[str | None, BeforeValidator(expand_vars), Field(pattern=_ENDPOINT)] = None
    storage_class: str | None = None
    lock: Lock = LockConfig()
    credentials_file: ExpandedPath | None = None
    max_in_flight: int = Field(default=4, ge=1, le=64)
    retries: int = Field(default=5, ge=0, le=20)
    part_size: Size = 16 << 20

    @model_validator(mode="after")
    def _known_class(self) -> _CloudTarget:
        if not re.match(_PREFIX, self.prefix):
            raise ValueError('prefix must be folder names ending in "/", e.g. "prod/" (letters, digits, ".", "_", "-")')
        classes = self.STORAGE_CLASSES
        if self.storage_class is not None and self.storage_class not in classes:
            raise ValueError(f"storage_class must be one of {', '.join(sorted(classes))}, got {self.storage_class!r}")
        if self.part_size < 5 << 20:
            raise ValueError("part_size must be at least 5MiB (the smallest part S3 accepts)")
        return self

    @property
    def lock_mode(self) -> str:
        """The mode objects are locked in; never sent when ``lock`` is off."""
        return self.lock.mode if self.lock else "compliance"


class S3Target(_CloudTarget):
    STORAGE_CLASSES: ClassVar[frozenset[str]] = S3_STORAGE_CLASSES
    type: Literal["s3"]
    bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    region: str | None = None
    restore_tier: Literal["Standard", "Bulk", "Expedited"] = "Standard"


class GcsTarget(_CloudTarget):
    STORAGE_CLASSES: ClassVar[frozenset[str]] = GCS_STORAGE_CLASSES
    type: Literal["gcs"]
    bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")]
    region: str | None = None
    project: str | None = None


class AzureTarget(_CloudTarget):
    STORAGE_CLASSES: ClassVar[frozenset[str]] = AZURE_STORAGE_CLASSES
    type: Literal["azure"]
    container: Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9]|-(?:[a-z0-9])){1,61}[a-z0-9]?$")]
    rehydrate_priority: Literal["Standard", "High"] = "Standard"


CloudTarget = S3Target | GcsTarget | AzureTarget
Target = Annotated[LocalTarget | S3Target | GcsTarget | AzureTarget, Field(discriminator="type")]


class Source(_Strict):
    """Either a set of directory trees (``paths``) or the stdout of a ``command``."""

    name: Name
    paths: list[ExpandedPath] | None = None
    exclude: list[str] = []
    one_file_system: bool = False
    command: Annotated[list[str] | None, BeforeValidator(_split_command)] = None
    filename: str | None = None
    # When the daemon backs it up: five cron fields ("30 2 * * *", local time), @hourly, @daily…,
    # or "never" (only by hand).
    schedule: ScheduleText = "@daily"
    # Retention (coldvault forget): the newest N, the newest of each of the N most recent hours,
    # days, ISO weeks, months, years (UTC), and everything within a duration of the newest.
    # None set: keep everything.
    keep_last: int = Field(default=0, ge=0)
    keep_hourly: int = Field(default=0, ge=0)
    keep_daily: int = Field(default=0, ge=0)
    keep_weekly: int = Field(default=0, ge=0)
    keep_monthly: int = Field(default=0, ge=0)
    keep_yearly: int = Field(default=0, ge=0)
    keep_within: Seconds = 0

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        if (self.paths is None) == (self.command is None):
            raise ValueError("a source needs exactly one of 'paths' (directory trees) or 'command' (a dump command)")
        if self.paths is not None:
            if not self.paths:
                raise ValueError("'paths' must name at least one path")
            relative = [str(path) for path in self.paths if not path.is_absolute()]
            if relative:  # it would mean wherever coldvault was started: / for the service
                raise ValueError(f"'paths' must be absolute: {relative[0]!r} is relative; write it from / (or ~)")
            if self.filename is not None:
                raise ValueError("'filename' applies only to command sources")
        if self.command is not None:
            if not self.command:
                raise ValueError("'command' must not be empty")
            if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", self.command[0]):
                # "PGPASSWORD=secret pg_dump" is shell syntax; run as a program it would also print the secret
                raise ValueError(
                    "'command' starts with a variable assignment, which is shell syntax; put secrets in a file"
                    ' the command reads (e.g. ~/.pgpass), or wrap it: command = ["sh", "-c", "..."]'
                )
            if self.exclude or self.one_file_system:
                raise ValueError("'exclude' and 'one_file_system' apply only to path sources")
        if self.filename is not None and (
            not self.filename or "/" in self.filename or self.filename in (".", "..") or "\0" in self.filename
        ):
            raise ValueError("'filename' must be a plain file name without '/'")
        return self

    @property
    def is_stream(self) -> bool:
        return self.command is not None

    @property
    def stream_filename(self) -> str:
        return self.filename or f"{self.name}.stream"


class DrillsConfig(_Strict):
    # The Ed25519 key that signs drill reports (PEM; under systemd a credential). Default: a key
    # created on first use in the state directory. Keep a copy: reports signed by a lost key
    # still verify with its public key, but the chain cannot go on with a new one.
    signing_key_file: ExpandedPath | None = None
    # What each drill samples: files (and a byte range of each) per snapshot, and how many
    # snapshots older than each source's latest.
    # Every pack on every target is read whole by some drill within this many days; each drill
    # reads its share (the time since the previous drill, as a part of this period).
    coverage_days: int = Field(default=30, ge=1, le=3650)
    files_per_snapshot: int = Field(default=8, ge=1, le=1000)
    older_snapshots: int = Field(default=2, ge=0, le=100)
    # Run after a full-restore drill (--full) with {path} replaced by the restored dump (a stream
    # snapshot) or directory (a tree): e.g. "pg_restore --list {path}". Its exit code and the last
    # 20 lines of its output go into the report, which is stored unencrypted: keep it quiet.
    check_command: Annotated[list[str] | None, BeforeValidator(_split_command)] = None
    check_timeout: int = Field(default=3600, ge=1)
    # Where a full-restore drill restores to (removed afterwards). Default: in the state directory.
    scratch_dir: ExpandedPath | None = None


class DaemonConfig(_Strict):
    """What ``coldvault daemon`` runs besides the sources' backups, and when ("never": not at all)."""

    drill: ScheduleText = "@daily"
    scrub: ScheduleText = "@weekly"
    sync: ScheduleText = "@hourly"
    # Retention: apply the sources' keep_* rules (write-only: forgotten snapshots stay until prune),
    # then extend the locks of what retained snapshots share.  Prune is never run by the daemon:
    # it needs delete rights, which the daemon's credentials must not have.
    forget: ScheduleText = "@daily"
    maintain: ScheduleText = "@daily"
    # Each run starts at a stable random point within this much of its slot, so that many
    # hosts on one schedule do not hit the providers at the same second.
    jitter: Seconds = 0
    max_concurrent_jobs: int = Field(default=2, ge=1, le=16)
    # A job that failed, or never ended (the service stopped or crashed), runs again this long
    # after it started, instead of waiting for its next slot.
    retry_delay: Seconds = 900
    # Pinged after every job, healthchecks-style: the URL on success, URL/fail on failure.
    webhook: Annotated[str | None, Field(pattern=r"^https?://\S+$")] = None
    # Prometheus metrics at http://ADDRESS/metrics; loopback by default, "off" for none.
    metrics: Annotated[str | None, BeforeValidator(lambda v: None if v == "off" else v)] = "127.0.0.1:9464"

    @model_validator(mode="after")
    def _address(self) -> DaemonConfig:
        if self.metrics is not None:
            host, _, port = self.metrics.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f'metrics must be "HOST:PORT" (e.g. "127.0.0.1:9464") or "off", got {self.metrics!r}')
        return self


class PruneConfig(_Strict):
    """``coldvault prune``: run apart from the daemon, with credentials that may delete."""

    # Objects younger than this are never deleted, and a pack leaves the index at least this long
    # before a backup that may have read the old index starts: covers clock differences between
    # hosts and providers, and a backup between storing a pack and indexing it.
    safety_margin: Annotated[int, BeforeValidator(_parse_duration), Field(ge=60)] = 3600
    # A pack at least this share garbage has its needed chunks copied into a new pack once its
    # lock has ended, so the garbage can go; 1 turns repacking off.
    repack_unused: Annotated[float, Field(gt=0, le=1)] = 0.5
    # At most this many bytes of old packs are read (and their kept part written again) per run:
    # bounds one run's time and the provider's egress charges.
    repack_limit: Size = 4 << 30


class Config(_Strict):
    repository: RepositoryConfig = RepositoryConfig()
    drills: DrillsConfig = DrillsConfig()
    daemon: DaemonConfig = DaemonConfig()
    prune: PruneConfig = PruneConfig()
    targets: list[Target] = Field(min_length=1)
    sources: list[Source] = []

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        for kind, items in (("target", self.targets), ("source", self.sources)):
            names = [item.name for item in items]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{kind} names must be unique; {duplicates[0]!r} is used more than once")
        wanted = self.repository.min_targets
        if wanted is not None and wanted > len(self.targets):
            raise ValueError(
                f"repository.min_targets is {wanted} but only {len(self.targets)} targets are configured;"
                " lower it or add targets"
            )
        return self

    @property
    def min_targets(self) -> int:
        return self.repository.min_targets or len(self.targets)

    def target(self, name: str) -> Target:
        for target in self.targets:
            if target.name == name:
                return target
        known = ", ".join(t.name for t in self.targets)
        raise UsageError(f"no target named {name!r} in the config (configured: {known})")

    def source(self, name: str) -> Source:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none"
        raise UsageError(f"no source named {name!r} in the config (configured: {known})")
