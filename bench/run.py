#!/usr/bin/env python3
"""Benchmark coldvault against restic and borg on the same generated data.

For each tool and repetition: back up generation 1, apply generation 2 and
back up again (incremental), restore the latest snapshot into an empty
directory and compare it with the source, verify the whole repository, and
measure the repository's size.  Each tool has a tree of its own, and the tools
take turns step by step: every tool's first backup, then every tool's second,
and so on.  Each command's wall time, CPU time and peak
RSS come from os.wait4 on the child.  Prints one table per phase with medians
and writes everything to WORK/results.json.  Exits non-zero if any command
failed or any restore differed from its source.
"""

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import gen_tree

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
VENV_BIN = REPO_ROOT / ".venv" / "bin"
SEED = 42
PASSPHRASE = "coldvault-benchmark-passphrase"
ALL_TOOLS = ("coldvault", "restic", "borg", "copy")
PEERS_BIN = BENCH_DIR / "peers" / "bin"  # restic 0.18 and borg 1.4, from bench/install_peers.sh
PEER_INSTALL_HINT = "bench/install_peers.sh (the issue's versions), or apt-get install restic borgbackup"
STDERR_TAIL_LINES = 20
MB = 1_000_000  # throughput is in MB/s (10^6 bytes); sizes and RSS in MiB
MIB = 1024 * 1024

PHASES = {
    "backup1": "first backup (generation 1)",
    "backup2": "second backup (generation 2, incremental)",
    "restore": "full restore of the latest snapshot",
    "restore_synced": "the same restore until it is on disk (its time plus the sync right after it)",
    "check": "full verify, reading all data",
}
# coldvault's goals, shown beside the ratios for information only.
THROUGHPUT_TARGETS_VS_RESTIC = {"backup1": 2.5, "backup2": 2.0, "restore": 1.5}
REPO_SIZE_TARGET_VS_RESTIC = 1.0
COLDVAULT_RSS_LIMIT_BYTES = 300 * MB


class RunFailed(Exception):
    """A tool's sequence cannot go on: a command failed or a restore differed."""


@dataclass
class Measurement:
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    bytes: int

    @property
    def mb_per_s(self):
        return self.bytes / MB / self.wall_s if self.wall_s else 0.0


# --- running and measuring commands ------------------------------------------


def stderr_tail(path):
    lines = path.read_text(errors="replace").splitlines()
    return "\n".join(lines[-STDERR_TAIL_LINES:])


# Linux records the parent's memory high-water mark into a child's ru_maxrss at fork and exec,
# so a command started straight from this (large) process would report at least our own RSS.
# A fresh, small launcher forks the command instead and reports the command's own rusage.
_LAUNCHER = """
import json, os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
report = [os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime, usage.ru_maxrss]
print(json.dumps(report), file=sys.stderr)
"""


def run_command(command, *, env, log_base, cwd=None):
    """Run one command to completion; return (wall s, CPU s, peak RSS MiB).

    Output goes to files, not pipes, so a chatty tool never stalls on a full pipe.
    The launcher's report is the last line of the command's stderr file.
    """
    out_path, err_path = log_base.with_suffix(".out"), log_base.with_suffix(".err")
    printable = " ".join(map(str, command))
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        try:
            launched = subprocess.run(
                [sys.executable, "-c", _LAUNCHER, *map(str, command)],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        except OSError as error:
            raise RunFailed(f"could not start `{printable}`: {error}") from None
        wall = time.perf_counter() - started
    lines = err_path.read_text(errors="replace").splitlines()
    try:
        returncode, cpu, maxrss_kib = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise RunFailed(
            f"could not start `{printable}` (launcher exit {launched.returncode}); see {err_path}"
        ) from None
    err_path.write_text("\n".join(lines[:-1]) + ("\n" if len(lines) > 1 else ""))
    if returncode != 0:
        raise RunFailed(
            f"`{printable}` exited with {returncode}"
            + (f" (in {cwd})" if cwd else "")
            + f"; last lines of {err_path}:\n{stderr_tail(err_path)}"
        )
    return wall, cpu, maxrss_kib / 1024  # ru_maxrss is in KiB on Linux


def measure(command, *, env, log_base, size_bytes, cwd=None):
    # Flush dirty pages left by the previous step so their writeback is not
    # charged to this one.  The page cache itself stays warm.
    os.sync()
    wall, cpu, rss = run_command(command, env=env, log_base=log_base, cwd=cwd)
    return Measurement(wall, cpu, rss, size_bytes)


def command_output(command, env=None):
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


# --- the tools -----------------------------------------------------------------


class Tool:
    """A backup tool's commands for one working directory; subclasses fill them in."""

    name = ""
    # Archive name used for each backup, for tools that need names.
    labels = ("gen1", "gen2")

    def __init__(self, work, data_dir):
        self.work = work
        self.data_dir = data_dir
        self.repo = work / f"{self.name}-repo"

    def unavailable_reason(self):
        """None if the tool can run here, else why not."""
        if shutil.which(self.name) is None:
            return f"`{self.name}` not found on PATH (install with: {PEER_INSTALL_HINT})"
        return None

    def private_dirs(self):
        """Directories besides the repository that a fresh repetition must not inherit."""
        return []

    def prepare(self):
        for directory in [self.repo, *self.private_dirs()]:
            set_aside(directory)

    def env(self):
        return dict(os.environ)

    def restore_cwd(self, dest):
        return None


class Coldvault(Tool):
    name = "coldvault"

    compression_level = None  # coldvault's default unless --coldvault-level is given
    chunk_avg_kib = None  # coldvault's default chunk sizes unless --coldvault-chunk-avg-kib is given

    def __init__(self, work, data_dir):
        super().__init__(work, data_dir)
        self.state_dir = work / "coldvault-state"
        self.config = work / "coldvault.toml"

    def unavailable_reason(self):
        return None  # always benchmarked; a broken install shows up as a failed command

    def version(self):
        version = command_output(
            [str(VENV_BIN / "python"), "-c", "import importlib.metadata as m; print(m.version('coldvault'))"]
        )
        commit = command_output(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
        return f"coldvault {version or '(not installed)'}" + (f" (git {commit})" if commit else "")

    def private_dirs(self):
        return [self.state_dir]

    def prepare(self):
        super().prepare()
        self.config.write_text(self._config_text())
        # A wheel install byte-compiles the package; the editable one here does not, and where
        # PYTHONDONTWRITEBYTECODE is set every command would compile ~75 modules (~0.1 s) first.
        run_command(
            [str(VENV_BIN / "python"), "-m", "compileall", "-q", str(REPO_ROOT / "src" / "coldvault")],
            env=dict(os.environ),
            log_base=self.work / "logs" / "compileall",
        )

    def _config_text(self):
        # A JSON string is also a valid TOML basic string, escapes included.
        quote = json.dumps
        return (
            f"[repository]\nstate_dir = {quote(str(self.state_dir))}\n"
            + (f"compression_level = {self.compression_level}\n" if self.compression_level else "")
            + self._format_text()
            + "\n"
            f'[[targets]]\nname = "bench"\ntype = "local"\npath = {quote(str(self.repo))}\n\n'
            f'[[sources]]\nname = "bench"\npaths = [{quote(str(self.data_dir))}]\n'
        )

    def _format_text(self):
        """Chunk sizes in the defaults' proportions: the minimum a quarter of the average, the maximum eight times."""
        if not self.chunk_avg_kib:
            return ""
        avg = self.chunk_avg_kib
        return (
            f'\n[repository.format]\nchunk_min_size = "{avg // 4}KiB"\n'
            f'chunk_avg_size = "{avg}KiB"\nchunk_max_size = "{avg * 8}KiB"\n'
        )

    def _base(self):
        script = VENV_BIN / "coldvault"
        launcher = [str(script)] if script.exists() else [str(VENV_BIN / "python"), "-m", "coldvault"]
        return launcher + ["--config", str(self.config)]

    def env(self):
        return {**os.environ, "COLDVAULT_PASSPHRASE": PASSPHRASE}

    def init_command(self):
        return self._base() + ["init"]

    def backup_command(self, label):
        return self._base() + ["backup"]

    def restore_command(self, dest):
        return self._base() + ["restore", "latest", str(dest)]

    def check_command(self):
        return self._base() + ["check", "--read-data"]


class Restic(Tool):
    name = "restic"

    def __init__(self, work, data_dir):
        super().__init__(work, data_dir)
        self.cache_dir = work / "restic-cache"

    def version(self):
        return (command_output(["restic", "version"]) or "restic (unknown version)").split(" compiled")[0]

    def private_dirs(self):
        return [self.cache_dir]

    def env(self):
        return {**os.environ, "RESTIC_PASSWORD": PASSPHRASE, "RESTIC_CACHE_DIR": str(self.cache_dir)}

    def _base(self):
        return ["restic", "--repo", str(self.repo)]

    def init_command(self):
        # Format 2 is the one with compression (the default since restic 0.14).
        return self._base() + ["init", "--repository-version", "2"]

    def backup_command(self, label):
        # restic finds the previous snapshot of the same paths itself.
        return self._base() + ["backup", "--compression", "auto", str(self.data_dir)]

    def restore_command(self, dest):
        return self._base() + ["restore", "latest", "--target", str(dest)]

    def check_command(self):
        return self._base() + ["check", "--read-data"]


class Borg(Tool):
    name = "borg"

    def __init__(self, work, data_dir):
        super().__init__(work, data_dir)
        self.base_dir = work / "borg-base"

    def _version_text(self):
        return command_output(["borg", "--version"]) or "borg (unknown version)"

    def unavailable_reason(self):
        reason = super().unavailable_reason()
        if reason:
            return reason
        match = re.search(r"(\d+)\.", self._version_text())
        if match and int(match.group(1)) >= 2:
            # Borg 2 is still in beta and renames commands and encryption modes
            # between betas; only the stable 1.x command line is scripted here.
            return f"{self._version_text()} found; only borg 1.x is supported (install with: {PEER_INSTALL_HINT})"
        return None

    def version(self):
        return self._version_text()

    def private_dirs(self):
        return [self.base_dir]

    def env(self):
        return {
            **os.environ,
            "BORG_PASSPHRASE": PASSPHRASE,
            # Keys, security records and the files cache live here, not in ~.
            "BORG_BASE_DIR": str(self.base_dir),
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        }

    def init_command(self):
        return ["borg", "init", "--encryption=repokey-blake2", str(self.repo)]

    def backup_command(self, label):
        return ["borg", "create", "--compression", "zstd,3", f"{self.repo}::{label}", str(self.data_dir)]

    def restore_command(self, dest):
        return ["borg", "extract", f"{self.repo}::{self.labels[-1]}"]

    def restore_cwd(self, dest):
        return dest  # borg extract writes into the current directory

    def check_command(self):
        return ["borg", "check", "--verify-data", str(self.repo)]


class Copy(Tool):
    """Not a backup tool: a plain `cp -a` of the tree, as the floor of what a restore can cost here.

    Its "restore" copies the second generation's tree, warm in the page cache, into the empty
    destination: creating the same files and writing the same bytes, with no reading of a repository,
    no decryption and no decompression.  Its backup and repository figures are two full copies and
    mean nothing beside a deduplicating tool's."""

    name = "copy"

    def unavailable_reason(self):
        return None if shutil.which("cp") else "`cp` not found on PATH"

    def version(self):
        return (command_output(["cp", "--version"]) or "cp").splitlines()[0] + " (reference)"

    def init_command(self):
        return ["mkdir", "-p", str(self.repo)]

    def backup_command(self, label):
        return ["cp", "-a", str(self.data_dir), str(self.repo / label)]

    def restore_command(self, dest):
        return ["cp", "-a", f"{self.repo / self.labels[-1]}/.", str(dest)]

    def check_command(self):
        return ["sh", "-c", 'find "$0" -type f -exec cat {} + > /dev/null', str(self.repo)]


TOOL_CLASSES = {cls.name: cls for cls in (Coldvault, Restic, Borg, Copy)}


# --- comparing trees -------------------------------------------------------------


def tree_bytes(root):
    return sum(entry.stat().st_size for entry in Path(root).rglob("*") if entry.is_file())


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while piece := source.read(MIB):
            digest.update(piece)
    return digest.hexdigest()


def manifest(root):
    """{relative path: (size, sha256)} for every regular file under root."""
    root = Path(root)
    return {
        str(path.relative_to(root)): (path.stat().st_size, sha256_of(path))
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def locate_restored_root(dest, source):
    """Where the source's contents landed under dest.

    restic keeps the absolute path, borg the path without its leading slash,
    and coldvault may put the contents right in dest or under the source's
    name.  Prefer the place whose top level matches the source's; failing
    that, the likeliest one, so that compare_trees reports what differs.
    """
    candidates = [
        candidate
        for candidate in (dest / source.relative_to(source.anchor), dest / source.name, dest)
        if candidate.is_dir()
    ]
    expected = sorted(os.listdir(source))
    for candidate in candidates:
        if sorted(os.listdir(candidate)) == expected:
            return candidate
    return candidates[0]


def compare_trees(source_manifest, restored_manifest, restored_root):
    missing = sorted(source_manifest.keys() - restored_manifest.keys())
    extra = sorted(restored_manifest.keys() - source_manifest.keys())
    differing = sorted(
        path
        for path in source_manifest.keys() & restored_manifest.keys()
        if source_manifest[path] != restored_manifest[path]
    )
    if missing or extra or differing:
        raise RunFailed(
            f"RESTORE MISMATCH in {restored_root}: {len(missing)} missing, {len(extra)} extra, "
            f"{len(differing)} with other size or content; first ones: "
            f"missing {missing[:5]}, extra {extra[:5]}, differing {differing[:5]}"
        )


# --- one repetition -----------------------------------------------------------


TRASH = "trash"
# What one tool's repetition leaves in WORK until the run ends, per GiB of generation-1 data: the
# tree, its repository (for `copy`, two plain copies) and the restored tree.  Measured: 2.8 GiB for
# coldvault and restic, 4.4 for copy.
SPACE_PER_RUN_GIB = 3.5


def set_aside(path):
    """Move a directory out of the way into WORK/trash, which is emptied only when the run is over.

    Why: deleting thousands of files makes ext4 without a journal skip their inode numbers for the next
    one to six minutes, with a scan of them for every file created (recently_deleted() in
    fs/ext4/ialloc.c).  Deleting a tree just before a restore measured that scan: over half of both
    tools' restore CPU on the machine of docs/BENCHMARKS.md, and more with every repetition.
    """
    if path.exists():
        trash = path.parent / TRASH
        trash.mkdir(exist_ok=True)
        path.rename(trash / f"{time.monotonic_ns()}-{path.name}")


def fresh_dir(path):
    set_aside(path)
    path.mkdir(parents=True)
    return path


@dataclass
class ToolRun:
    """One tool's figures in one repetition; kept even if the sequence stops early."""

    repetition: int
    tool: str
    phases: dict = field(default_factory=dict)
    repo_bytes: int | None = None
    error: str | None = None

    def record(self, phase, measurement):
        self.phases[phase] = measurement
        print(
            f"  {self.tool:<10} {phase:<14} {measurement.wall_s:8.2f} s {measurement.mb_per_s:8.1f} MB/s "
            f"{measurement.cpu_s:8.2f} CPU s {measurement.peak_rss_mib:8.1f} MiB peak RSS",
            flush=True,
        )

    def as_json(self):
        return {
            "repetition": self.repetition,
            "tool": self.tool,
            "phases": {phase: asdict(m) | {"mb_per_s": m.mb_per_s} for phase, m in self.phases.items()},
            "repo_bytes": self.repo_bytes,
            "error": self.error,
        }


class Sequence:
    """One tool's phases in one repetition, a step at a time: main() runs each step for every tool
    before the next step begins, so that the figures compared were taken seconds apart, not minutes."""

    def __init__(self, tool, run, size_mib, logs):
        self.tool = tool
        self.run = run
        self.size_mib = size_mib
        self.logs = logs
        self.env = tool.env()
        self.generation1 = None  # the tree's first generation, once start() made it
        self.steps = (self.start, self.backup1, self.backup2, self.restore, self.check)

    def _log_base(self, step):
        return self.logs / f"rep{self.run.repetition}-{self.tool.name}-{step}"

    def start(self):
        set_aside(self.tool.data_dir)
        # Regenerating (not copying) gives every tool the same bytes and fresh inodes.
        self.generation1 = gen_tree.generate(self.tool.data_dir, self.size_mib, SEED)
        self.tool.prepare()
        run_command(self.tool.init_command(), env=self.env, log_base=self._log_base("init"))

    def backup1(self):
        self._backup("backup1", self.tool.labels[0], self.generation1.bytes)

    def backup2(self):
        _, _, generation2 = gen_tree.apply_generation2(self.tool.data_dir, SEED)
        self._backup("backup2", self.tool.labels[1], generation2.bytes)
        self.run.repo_bytes = tree_bytes(self.tool.repo)

    def _backup(self, phase, label, size_bytes):
        command = self.tool.backup_command(label)
        self.run.record(phase, measure(command, env=self.env, log_base=self._log_base(phase), size_bytes=size_bytes))

    def restore(self):
        tool, data_dir = self.tool, self.tool.data_dir
        dest = fresh_dir(tool.work / f"restore-{tool.name}")
        restore = measure(
            tool.restore_command(dest),
            env=self.env,
            log_base=self._log_base("restore"),
            size_bytes=0,
            cwd=tool.restore_cwd(dest),
        )
        # A restore is not done for disaster recovery until it is on disk: a tool writing through the page cache
        # leaves that to the kernel, one writing around it (coldvault's large files) has done it already.
        started = time.perf_counter()
        os.sync()
        synced = replace(restore, wall_s=restore.wall_s + time.perf_counter() - started)
        restored_root = locate_restored_root(dest, data_dir)
        restored = manifest(restored_root)
        compare_trees(manifest(data_dir), restored, restored_root)
        restore.bytes = synced.bytes = sum(size for size, _ in restored.values())  # known only now
        self.run.record("restore", restore)
        self.run.record("restore_synced", synced)
        set_aside(dest)

    def check(self):
        command = self.tool.check_command()
        measurement = measure(command, env=self.env, log_base=self._log_base("check"), size_bytes=self.run.repo_bytes)
        self.run.record("check", measurement)


def run_repetition(tools, repetition, size_mib, logs):
    """Every tool's sequence, step by step, the tools taking turns in each step; the order of the tools
    moves on by one each repetition, so that none is always first after a step of its own.  A tool
    that fails leaves the rest of the repetition to the others.  Returns (runs, failures)."""
    shift = (repetition - 1) % len(tools)
    order = tools[shift:] + tools[:shift]
    sequences = [Sequence(tool, ToolRun(repetition, tool.name), size_mib, logs) for tool in order]
    failures = []
    for step in range(len(sequences[0].steps)):
        for sequence in sequences:
            if sequence.run.error is not None:
                continue
            try:
                sequence.steps[step]()
            except RunFailed as failure:
                name = sequence.tool.name
                sequence.run.error = str(failure)
                failures.append(f"repetition {repetition}, {name}: {failure}")
                print(f"\n!!! {name} FAILED (repetition {repetition}):\n{failure}\n", file=sys.stderr, flush=True)
    runs = {sequence.tool.name: sequence.run.as_json() for sequence in sequences}
    return [runs[tool.name] for tool in tools], failures


# --- machine description -------------------------------------------------------


def cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_gib():
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return None


def describe_machine(tools):
    memory = memory_gib()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu_model(),
        "memory_gib": round(memory, 1) if memory else None,
        "python": platform.python_version(),
        "tools": {tool.name: tool.version() for tool in tools},
    }


# --- summarising and printing ----------------------------------------------------


def medians(runs, tool_names):
    """Median of every figure, per tool and phase, over the runs that have it."""
    summary = {}
    for name in tool_names:
        tool_runs = [run for run in runs if run["tool"] == name]
        per_phase = {}
        for phase in PHASES:
            samples = [run["phases"][phase] for run in tool_runs if phase in run["phases"]]
            if samples:
                per_phase[phase] = {
                    figure: statistics.median(sample[figure] for sample in samples)
                    for figure in ("wall_s", "mb_per_s", "cpu_s", "peak_rss_mib", "bytes")
                } | {"samples": len(samples)}
        repo_sizes = [run["repo_bytes"] for run in tool_runs if run["repo_bytes"] is not None]
        summary[name] = {"phases": per_phase, "repo_bytes": statistics.median(repo_sizes) if repo_sizes else None}
    return summary


def verdict(passed):
    """PASS/FAIL, or n/a when a figure is missing (e.g. coldvault failed)."""
    if passed is None:
        return "n/a"
    return "PASS" if passed else "FAIL"


def at_least(ratio, goal):
    return None if ratio is None else ratio >= goal


def at_most(ratio, goal):
    return None if ratio is None else ratio <= goal


def ratio_text(ratio):
    return f"{ratio:.2f}x" if ratio is not None else "n/a"


def throughput_ratio(summary, phase, peer):
    ours = summary.get("coldvault", {}).get("phases", {}).get(phase)
    theirs = summary[peer]["phases"].get(phase)
    if not ours or not theirs or not theirs["mb_per_s"]:
        return None
    return ours["mb_per_s"] / theirs["mb_per_s"]


def ratios_by_repetition(runs, phase, peer):
    """coldvault's throughput over the peer's in each repetition where both have the phase: the tools
    take turns phase by phase, so each pair ran seconds apart, under much the same conditions."""
    figures = {(run["repetition"], run["tool"]): run["phases"].get(phase) for run in runs}
    ratios = []
    for repetition in sorted({run["repetition"] for run in runs}):
        ours, theirs = figures.get((repetition, "coldvault")), figures.get((repetition, peer))
        if ours and theirs and theirs["mb_per_s"]:
            ratios.append(ours["mb_per_s"] / theirs["mb_per_s"])
    return ratios


def phase_row_target(summary, phase, name, ratio):
    if name == "coldvault":
        figures = summary[name]["phases"].get(phase)
        if not figures:
            return ""
        within = figures["peak_rss_mib"] * MIB <= COLDVAULT_RSS_LIMIT_BYTES
        return f"peak RSS <= 300 MB (286 MiB): {verdict(within)}"
    goal = THROUGHPUT_TARGETS_VS_RESTIC.get(phase)
    if name != "restic" or goal is None:
        return ""
    return f">= {goal:.2f}x: {verdict(at_least(ratio, goal))}"


def print_phase_table(summary, runs, phase):
    print(f"\n== {PHASES[phase]} ==")
    print(f"{'tool':<10} {'wall s':>9} {'MB/s':>9} {'CPU s':>9} {'peak RSS MiB':>13} {'coldvault/peer':>15}  target")
    for name, tool_summary in summary.items():
        figures = tool_summary["phases"].get(phase)
        if not figures:
            print(f"{name:<10} {'(no result)':>9}")
            continue
        ratio = None if name == "coldvault" else throughput_ratio(summary, phase, name)
        ratio_cell = "-" if name == "coldvault" else ratio_text(ratio)
        print(
            f"{name:<10} {figures['wall_s']:>9.2f} {figures['mb_per_s']:>9.1f} {figures['cpu_s']:>9.2f} "
            f"{figures['peak_rss_mib']:>13.1f} {ratio_cell:>15}  {phase_row_target(summary, phase, name, ratio)}"
        )
        each = ratios_by_repetition(runs, phase, name) if name != "coldvault" else []
        if len(each) > 1:
            print(f"{'':<10} {'per repetition:':>42} {', '.join(ratio_text(r) for r in each)}")


def print_repo_size_table(summary):
    print("\n== repository size on disk after both backups (lower is better) ==")
    print(f"{'tool':<10} {'MiB':>9} {'coldvault/peer':>15}  target")
    ours = summary.get("coldvault", {}).get("repo_bytes")
    for name, tool_summary in summary.items():
        size = tool_summary["repo_bytes"]
        if size is None:
            print(f"{name:<10} {'(no result)':>9}")
            continue
        ratio = ours / size if ours is not None and name != "coldvault" else None
        ratio_cell = "-" if name == "coldvault" else ratio_text(ratio)
        target = ""
        if name == "restic":
            target = f"<= {REPO_SIZE_TARGET_VS_RESTIC:.2f}x: {verdict(at_most(ratio, REPO_SIZE_TARGET_VS_RESTIC))}"
        print(f"{name:<10} {size / MIB:>9.1f} {ratio_cell:>15}  {target}")


def print_header(machine, size_mib, repeat):
    memory = f"{machine['memory_gib']} GiB RAM" if machine["memory_gib"] else "unknown RAM"
    print(f"machine: nproc {machine['nproc']}, {machine['cpu']}, {memory}, Python {machine['python']}")
    print("tools: " + ", ".join(machine["tools"].values()))
    print(
        f"data: generation 1 of {size_mib} MiB (seed {SEED}), then generation 2 (~5% changed); "
        f"median of {repeat} repetition(s); warm page cache (caches are not dropped); "
        "MB/s counts 10^6 bytes of source (backup), restored files (restore) or repository (check)"
    )


# --- main ----------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="generation-1 data size (default 1024)")
    parser.add_argument("--work", type=Path, default=BENCH_DIR / "out", help="working directory (default bench/out)")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions; medians are reported (default 1)")
    parser.add_argument("--tools", default=",".join(ALL_TOOLS), help="comma-separated subset of " + ",".join(ALL_TOOLS))
    parser.add_argument("--coldvault-level", type=int, help="coldvault's zstd level (default: its own default, 1)")
    parser.add_argument(
        "--coldvault-chunk-avg-kib",
        type=int,
        help="coldvault's average chunk size in KiB, a power of two, minimum and maximum scaled with it"
        " (default: its own, 512)",
    )
    args = parser.parse_args(argv)
    args.tools = [name.strip() for name in args.tools.split(",") if name.strip()]
    unknown = sorted(set(args.tools) - set(ALL_TOOLS))
    if unknown or not args.tools:
        parser.error(f"--tools takes names from {','.join(ALL_TOOLS)}; got {args.tools}")
    if args.repeat < 1 or args.size_mib < 1:
        parser.error("--repeat and --size-mib must be at least 1")
    return args


def enough_space(work, size_mib, runs):
    """Whether WORK has room for every run's trees, which are kept until the end; says why not."""
    needed = SPACE_PER_RUN_GIB * size_mib / 1024 * runs
    free = shutil.disk_usage(work).free / 2**30
    if free < needed:
        print(
            f"{work} has {free:.1f} GiB free and this run needs about {needed:.1f} GiB"
            " (trees are kept until the end); free some space, choose another --work, or lower --repeat",
            file=sys.stderr,
        )
        return False
    return True


def available_tools(names, work):
    """Each tool backs up a tree of its own, so that all of them can stand at the same step at once."""
    tools = []
    for name in names:
        tool = TOOL_CLASSES[name](work, work / f"data-{name}")
        reason = tool.unavailable_reason()
        if reason:
            print(f"skipping {name}: {reason}")
        else:
            tools.append(tool)
    return tools


def main(argv=None):
    args = parse_args(argv)
    if PEERS_BIN.is_dir():  # the peers install_peers.sh installed come before the system's
        os.environ["PATH"] = f"{PEERS_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    work = args.work.resolve()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    Coldvault.compression_level = args.coldvault_level
    Coldvault.chunk_avg_kib = args.coldvault_chunk_avg_kib
    shutil.rmtree(work / TRASH, ignore_errors=True)  # a previous run's, if it was interrupted
    tools = available_tools(args.tools, work)
    if not tools:
        print("no tool to benchmark")
        return 1
    if not enough_space(work, args.size_mib, len(tools) * args.repeat):
        return 2
    machine = describe_machine(tools)
    print_header(machine, args.size_mib, args.repeat)

    runs, failures = [], []
    for rep in range(1, args.repeat + 1):
        print(f"\n[repetition {rep}/{args.repeat}] (logs in {logs})", flush=True)
        repetition_runs, repetition_failures = run_repetition(tools, rep, args.size_mib, logs)
        runs += repetition_runs
        failures += repetition_failures

    summary = medians(runs, [tool.name for tool in tools])
    for phase in PHASES:
        print_phase_table(summary, runs, phase)
    print_repo_size_table(summary)

    results_path = work / "results.json"
    results_path.write_text(
        json.dumps(
            {
                "machine": machine,
                "settings": {
                    "size_mib": args.size_mib,
                    "repeat": args.repeat,
                    "seed": SEED,
                    "warm_cache": True,
                    "coldvault_level": args.coldvault_level,
                    "coldvault_chunk_avg_kib": args.coldvault_chunk_avg_kib,
                },
                "medians": summary,
                "runs": runs,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nresults written to {results_path}")
    shutil.rmtree(work / TRASH, ignore_errors=True)

    if failures:
        print(f"\n{len(failures)} run(s) FAILED:", file=sys.stderr)
        for failure in failures:
            print(f"  - {failure.splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
