"""Secrets kept in files readable only by their owner, unless given in the environment."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from infrastructure.files import private_dir


def load_or_create(path: Path, nbytes: int = 32) -> bytes:
    """Read a secret from ``path``; create it (mode 0600) if missing. Safe when workers race."""
    private_dir(path.parent, tighten=True)  # the data directory: 0700 (E.17)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        data = path.read_bytes().strip()
        if not data:
            raise RuntimeError(f"{path} is empty; delete it to generate a new secret") from None
        return bytes.fromhex(data.decode())
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(nbytes))
    return bytes.fromhex(path.read_text().strip())


def load_existing(path: Path) -> bytes | None:
    """Read a secret from ``path`` without creating or touching anything (for read-only commands such as
    `trialaudit verify`); None when there is none."""
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        return None
    if not data:
        raise RuntimeError(f"{path} is empty; delete it to generate a new secret")
    return bytes.fromhex(data.decode())


def from_text(value: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        return value.encode()
