"""Atomic file writes: readers see the old or the new content, never a part."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(stream)`` on a temporary file beside ``path`` (binary), flush it to
    disk and rename it onto ``path``; on any failure the temporary file is removed and
    ``path`` keeps its old content. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def remove_interrupted_writes(folder: str | Path) -> list[Path]:
    """Delete the temporary files that :func:`write_atomic` left in ``folder`` when its
    process was killed before the rename (SIGKILL, power loss); the paths deleted. Call
    it only where no other process is writing."""
    removed = sorted(Path(folder).glob(".*.tmp"))
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
