"""idtune's cache directory, and how cache keys see a model directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """idtune's cache: `$IDTUNE_CACHE`, else `$XDG_CACHE_HOME/idtune`, else `~/.cache/idtune`."""
    if os.environ.get("IDTUNE_CACHE"):
        return Path(os.environ["IDTUNE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "idtune"


def fingerprint(directory: str | None) -> list[Any]:
    """Absolute path plus weight files' sizes and times, so a retrained model misses the cache
    (a hub id or None stays as it is)."""
    if not directory or not Path(directory).is_dir():
        return [directory]
    d = Path(directory).resolve()
    files = sorted(f for pat in ("*.safetensors", "*.bin") for f in d.glob(pat))
    return [str(d), [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]]
