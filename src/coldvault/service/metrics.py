"""Prometheus metrics of the daemon: what a platform team alerts on.

Fed from each job's exit code and its JSON output (`backup --json`, `sync --json`,
`drill --json`, `scrub --json`), so the figures are exactly what the commands report.
No label or value ever carries a secret: labels are job, source and target names from
the config; values are times, counts and sizes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

# The README's exit codes, as the kind of failure a metric counts.
FAILURE_KINDS = {
    2: "usage",
    3: "partial",
    10: "config",
    11: "key",
    12: "repository",
    13: "integrity",
    14: "target",
    15: "source",
    16: "destination",
    70: "internal",
    130: "interrupted",
}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()

        def gauge(name: str, text: str, labels: tuple[str, ...]) -> Gauge:
            return Gauge(name, text, labels, registry=self.registry)

        self.job_last_run = gauge("coldvault_job_last_run_timestamp_seconds", "When a job last started", ("job",))
        self.job_last_success = gauge(
            "coldvault_job_last_success_timestamp_seconds", "When a job last succeeded", ("job",)
        )
        self.job_failures = Counter(
            "coldvault_job_failures", "Failed job runs, by kind (the exit code's meaning)", ("job", "kind"),
            registry=self.registry,
        )  # fmt: skip
        self.source_last_success = gauge(
            "coldvault_source_last_backup_timestamp_seconds", "When a source's last backup committed", ("source",)
        )
        self.uploaded_bytes = Counter(
            "coldvault_uploaded_bytes", "Bytes of new sealed data stored (once; each target gets a copy)", ("source",),
            registry=self.registry,
        )  # fmt: skip
        self.uploaded_chunks = Counter(
            "coldvault_uploaded_chunks", "New chunks stored", ("source",), registry=self.registry
        )
        self.target_last_success = gauge(
            "coldvault_target_last_snapshot_timestamp_seconds",
            "When a target last received a snapshot manifest",
            ("target",),
        )
        self.target_lag_objects = gauge("coldvault_target_lag_objects", "Objects a target lacks", ("target",))
        self.target_lag_bytes = gauge("coldvault_target_lag_bytes", "Bytes a target lacks", ("target",))
        self.drill_last = gauge("coldvault_drill_last_timestamp_seconds", "When the last drill ran", ())
        self.drill_pass = gauge("coldvault_drill_pass", "1 if the last drill passed on the target, else 0", ("target",))
        self.rpo = gauge(
            "coldvault_rpo_seconds", "Age of the newest snapshot the last drill restored on min_targets targets",
            ("source",),
        )  # fmt: skip

    def job_finished(self, job: str, started: datetime, ended: datetime, exit_code: int | None, output: bytes) -> None:
        self.job_last_run.labels(job).set(started.timestamp())
        if exit_code != 0:
            self.job_failures.labels(job, FAILURE_KINDS.get(exit_code or 0, "other")).inc()
        if exit_code in (0, 3, 13) and output.strip():  # these still print their JSON
            try:
                doc = json.loads(output)
            except ValueError:
                return
            self._from_output(job.split(":")[0], doc, ended)
        if exit_code == 0:
            self.job_last_success.labels(job).set(ended.timestamp())

    def _from_output(self, kind: str, doc: Any, ended: datetime) -> None:
        if kind == "backup":
            for snapshot in doc:
                source, summary = snapshot["source"], snapshot["summary"]
                self.source_last_success.labels(source).set(ended.timestamp())
                self.uploaded_bytes.labels(source).inc(summary.get("stored_bytes", 0))
                self.uploaded_chunks.labels(source).inc(summary.get("new_chunks", 0))
                for target in snapshot.get("targets", []):
                    self.target_last_success.labels(target).set(ended.timestamp())
        elif kind in ("sync", "scrub"):
            for target in doc.get("targets", []):
                if target.get("reachable"):
                    self._lag(target)
        elif kind == "drill":
            body = doc.get("body", {})
            self.drill_last.set(ended.timestamp())
            for target in body.get("targets", []):
                self.drill_pass.labels(target["name"]).set(1 if target.get("verdict") == "pass" else 0)
            for source in body.get("sources", []):
                if source.get("rpo_s") is not None:
                    self.rpo.labels(source["source"]).set(source["rpo_s"])

    def _lag(self, target: Mapping[str, Any]) -> None:
        """What is still missing after the job copied what it could."""
        repaired = set(target.get("repaired", []))
        still = [p for p in target.get("missing", []) if p not in repaired]
        share = len(still) / len(target["missing"]) if target.get("missing") else 0.0
        self.target_lag_objects.labels(target["name"]).set(len(still))
        self.target_lag_bytes.labels(target["name"]).set(round(target.get("missing_bytes", 0) * share))
