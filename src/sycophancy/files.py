"""Atomic file writes: a temporary file in the same folder, then a rename."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

ERROR_FILE = "error.txt"  # written into a job's folder when the job fails


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file; mkstemp alone gives 0600


def _clean(value):
    """JSON-safe values: NaN and infinities become null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_text(path: str | Path, text: str) -> Path:
    """Write text atomically and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def ordinary_mode(path: str | Path) -> Path:
    """Give a file another library wrote (or every file in a folder) the mode an ordinary new
    file gets under the umask: safetensors writes its files 0600, unreadable to collaborators."""
    path = Path(path)
    for file in [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]:
        os.chmod(file, FILE_MODE)
    return path


def write_json(path: str | Path, data) -> Path:
    """Write a JSON document atomically (NaN written as null)."""
    return write_text(path, json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write one JSON object per line atomically."""
    return write_text(path, "".join(json.dumps(_clean(r)) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSON-lines file."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
