"""Write a file or a directory under a temporary name, then rename it into place: all or nothing."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_dir(final: Path, write: Callable[[Path], None], keep_existing: bool = False) -> Path:
    """Call `write(tmp)` on a fresh sibling directory, then replace `final` with it.

    An exception (or a kill) leaves `final` as it was and no temporary directory behind
    (a kill may leave a hidden `.NAME-*` sibling, which the next write does not reuse).
    `keep_existing`: a `final` that appeared meanwhile (another process filling the same cache
    entry) is kept and this write dropped, so nobody reading it sees it vanish.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        write(tmp)
        if keep_existing:
            try:  # no check first: another process may finish between a check and the rename
                tmp.rename(final)  # refused while `final` exists (a directory with files)
            except OSError:
                if not final.exists():
                    raise
                shutil.rmtree(tmp)
            return final
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def write_text(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to a temporary sibling, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, "utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
