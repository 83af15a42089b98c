"""Signed, hash-chained reports: the codec.  Pure: bytes in, bytes out, keys passed in.

A report file is canonical JSON (UTF-8, keys sorted, no spaces, no trailing newline):

    {"body": {...}, "format": "coldvault-report", "key_id": "<16 hex>", "previous": "<64 hex>" | null,
     "sequence": n, "signature": "<base64>", "version": 1}

``signature`` is Ed25519 over the canonical JSON of every other field; ``key_id`` names the
signing key (the first 16 hex digits of SHA-256 of its raw 32-byte public key); ``previous``
is the id of the report before it in the chain, ``sequence`` its place (the first is 1).
A report's id is the SHA-256 of its file's bytes, so anyone can compute it with standard
tools.  Only the canonical encoding is accepted: one report has exactly one byte string,
hence one id.  See docs/REPORTS.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from coldvault.errors import IntegrityError

FORMAT = "coldvault-report"
VERSION = 1
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = {"body", "format", "key_id", "previous", "sequence", "signature", "version"}


@dataclass(frozen=True)
class Report:
    sequence: int
    previous: str | None
    key_id: str
    body: dict[str, Any]
    data: bytes  # the signed file, exactly

    @property
    def id(self) -> str:
        return report_id(self.data)


def report_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sign_report(key: Ed25519PrivateKey, body: dict[str, Any], *, previous: Report | None) -> Report:
    """The next report of a chain whose last one is ``previous`` (None for the first)."""
    unsigned = {
        "body": body,
        "format": FORMAT,
        "key_id": key_id(key.public_key()),
        "previous": previous.id if previous else None,
        "sequence": previous.sequence + 1 if previous else 1,
        "version": VERSION,
    }
    signature = base64.b64encode(key.sign(canonical(unsigned))).decode()
    data = canonical({**unsigned, "signature": signature})
    return Report(unsigned["sequence"], unsigned["previous"], unsigned["key_id"], body, data)  # type: ignore[arg-type]


def verify_report(data: bytes, public_key: Ed25519PublicKey, *, what: str = "the report") -> Report:
    """Parse and check one report: its encoding, its fields, and its signature under ``public_key``."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise IntegrityError(f"{what} is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise IntegrityError(f"{what} is not a coldvault report")
    if doc.get("version") != VERSION:
        raise IntegrityError(f"{what} has report format version {doc.get('version')!r}; this coldvault reads {VERSION}")
    if set(doc) != _FIELDS:
        raise IntegrityError(f"{what} has the wrong fields: {', '.join(sorted(set(doc) ^ _FIELDS))}")
    sequence, previous, body = doc["sequence"], doc["previous"], doc["body"]
    if type(sequence) is not int or sequence < 1 or not isinstance(body, dict):
        raise IntegrityError(f"{what} has a malformed sequence or body")
    if (previous is None) != (sequence == 1) or (previous is not None and not _HEX64.match(str(previous))):
        raise IntegrityError(f"{what} has a malformed link to the previous report")
    if canonical(doc) != data:
        raise IntegrityError(f"{what} is not in canonical form: it was re-encoded or edited")
    if doc["key_id"] != key_id(public_key):
        raise IntegrityError(f"{what} was signed by key {doc['key_id']!r}, not by the public key given")
    try:
        signature = base64.b64decode(doc["signature"], validate=True)
        public_key.verify(signature, canonical({k: v for k, v in doc.items() if k != "signature"}))
    except (InvalidSignature, binascii.Error, TypeError, ValueError):
        raise IntegrityError(f"{what} has a bad signature: it was edited after signing") from None
    return Report(sequence, previous, doc["key_id"], body, data)


@dataclass(frozen=True)
class ChainResult:
    reports: list[Report]
    errors: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def head(self) -> Report | None:
        return self.reports[-1] if self.reports else None


def verify_chain(files: Iterable[tuple[str, bytes]], public_key: Ed25519PublicKey) -> ChainResult:
    """Check every report, then the chain: sequences 1, 2, 3… without gaps or repeats, each linking to
    the id of the one before.  Detects an edited, removed, inserted or reordered report; a chain cut
    short at its end is only visible against its expected head (say so to the person verifying)."""
    errors: list[str] = []
    reports: list[Report] = []
    for name, data in files:
        try:
            reports.append(verify_report(data, public_key, what=name))
        except IntegrityError as exc:
            errors.append(str(exc))
    reports.sort(key=lambda r: r.sequence)
    expected_previous: str | None = None
    for position, report in enumerate(reports, start=1):
        if report.sequence != position:
            if report.sequence < position:
                problem = "appears twice"
            elif position == 1:
                problem = "starts the chain: the reports before it are missing"
            else:
                problem = f"follows report {position - 1}: the reports between them are missing"
            errors.append(f"report {report.sequence} ({report.id[:12]}) {problem}")
            break
        if report.previous != expected_previous:
            errors.append(
                f"report {report.sequence} ({report.id[:12]}) does not link to report {position - 1}"
                f" ({(expected_previous or '')[:12]}): a report before it was replaced or reordered"
            )
            break
        expected_previous = report.id
    return ChainResult(reports, errors)


def figures(body: dict[str, Any]) -> dict[str, Any]:
    """A drill report's trend figures: throughput and restore estimate per target, recovery point per source."""
    targets, sources = body.get("targets") or [], body.get("sources") or []
    return {
        "created": body.get("created"),
        "verdict": body.get("verdict"),
        "throughput_bytes_per_s": {t.get("name"): t.get("throughput_bytes_per_s") for t in targets},
        "rto_estimate_s": {t.get("name"): t.get("rto_estimate_s") for t in targets},
        "rpo_s": {s.get("source"): s.get("rpo_s") for s in sources},
    }
