"""Write a file only its owner can read, atomically: readers see the old content or the new, never part."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from coldvault.storage.protocol import BytesLike


def write_private_file(path: Path, data: BytesLike) -> None:
    """Create folders (0700) as needed and replace ``path`` with ``data`` (0600); raises OSError."""
    tmp = path.parent / f".tmp-{secrets.token_hex(8)}"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
