"""Small file helpers of the fleet loop: atomic writes and content hashes."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from upsnet_core.atomic import write_atomic


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers see the
    old or the new content, never a part."""
    return write_atomic(path, lambda stream: stream.write(text.encode()))


def write_json_atomic(path: str | Path, value: Any) -> Path:
    """``value`` as indented, key-sorted JSON (the same value gives the same bytes)."""
    return write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes; FileNotFoundError naming it when absent."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def short_hash(text: str, length: int = 10) -> str:
    """A short, stable hex digest of ``text`` (for file names)."""
    return hashlib.sha1(text.encode()).hexdigest()[:length]
