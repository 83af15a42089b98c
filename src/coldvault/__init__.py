"""coldvault: encrypted, deduplicated, immutable cold backups replicated to several clouds."""

__version__ = "0.1.0"
