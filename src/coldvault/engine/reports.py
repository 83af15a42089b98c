"""The drill signing key and the local chain of signed reports (see repo.report for the format).

The signing key is separate from the repository key: an auditor holding its public key can
verify every report offline and learns nothing that opens a backup.  Reports are kept in the
state directory as ``<sequence>-<id prefix>.json``, exactly as signed, and on every target
under ``reports/`` (named, like every object, by the BLAKE3 hash of their bytes).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from coldvault.config.secret import read_secret_file, write_secret_file
from coldvault.errors import AlreadyExists, ConfigError, UsageError
from coldvault.repo.report import Report, sign_report, verify_report
from coldvault.storage.handle import Handle, Kind, object_name
from coldvault.storage.private_file import write_private_file
from coldvault.storage.protocol import Store


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    pem = read_secret_file(path, what="drill signing key").reveal()
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{path} does not hold an unencrypted PEM private key; point drills.signing_key_file at one"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def create_signing_key(path: Path) -> Ed25519PrivateKey:
    """A new key in a new file (mode 0600); never replaces one, whose reports would no longer verify."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_secret_file(path, pem, what="drill signing key")
    return key


def public_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read the public key {path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise UsageError(f"{path} is not a PEM public key; export one with 'coldvault report pubkey'") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{path} holds a {type(key).__name__}, not an Ed25519 public key")
    return key


class ReportLog:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def files(self) -> list[tuple[str, bytes]]:
        if not self.folder.is_dir():
            return []
        return [(p.name, p.read_bytes()) for p in sorted(self.folder.glob("*.json"))]

    def reports(self, public_key: Ed25519PublicKey) -> list[Report]:
        reports = [verify_report(data, public_key, what=name) for name, data in self.files()]
        return sorted(reports, key=lambda r: r.sequence)

    def append(self, key: Ed25519PrivateKey, body: dict[str, object]) -> Report:
        """Sign ``body`` as the report after the last one here, and keep it."""
        reports = self.reports(key.public_key())
        report = sign_report(key, body, previous=reports[-1] if reports else None)
        write_private_file(self.folder / f"{report.sequence:06d}-{report.id[:12]}.json", report.data)
        return report

    def save_page(self, report: Report, page: str) -> Path:
        """The report's HTML page beside it (derived from the signed file, so not signed itself)."""
        path = self.folder / f"{report.sequence:06d}-{report.id[:12]}.html"
        write_private_file(path, page.encode())
        return path

    def find(self, public_key: Ed25519PublicKey, prefix: str) -> Report:
        """A report by sequence number or, failing that, by id prefix."""
        reports = self.reports(public_key)
        by_sequence = [r for r in reports if prefix.isdigit() and r.sequence == int(prefix)]
        matches = by_sequence or [r for r in reports if len(prefix) >= 4 and r.id.startswith(prefix.lower())]
        if len(matches) != 1:
            raise UsageError(
                f"{prefix!r} matches {len(matches)} reports; give a sequence number or at least 4 characters"
                " of an id from 'coldvault report list'"
            )
        return matches[0]


def upload_reports(log: ReportLog, store: Store) -> int:
    """Put every local report the target lacks on it (under lock, by the target's policy); how many.
    Run after each drill, so that reports a target missed while down reach it later."""
    present = {info.handle.name for info in store.list(Kind.REPORT)}
    uploaded = 0
    for _, data in log.files():
        handle = Handle(Kind.REPORT, object_name(data))
        if handle.name not in present:
            try:
                store.put(handle, data)
            except AlreadyExists:
                continue
            uploaded += 1
    return uploaded
