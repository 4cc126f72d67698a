"""Check where a command will write before it does the work: one line naming the path.

Nothing is created here except a probe file that is removed at once, so a refused command
leaves the disk as it was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UserError


def check_file(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse an output file that is a directory, cannot be written, or exists (unless
    `overwrite`)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory; name a file to write")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise UserError(f"{path} exists; pass --overwrite to replace it")
    _writable(path.parent, path)
    return path


def check_dir(path: str | os.PathLike) -> Path:
    """Refuse an output directory that is a file or cannot be created and written in."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        raise UserError(f"{path} exists and is not a directory")
    _writable(path, path)
    return path


def _writable(directory: Path, target: Path) -> None:
    """The nearest existing ancestor of `directory` must be a directory we can create files in."""
    d = directory.absolute()
    while not d.exists() and not d.is_symlink() and d != d.parent:
        d = d.parent
    if not d.is_dir():
        raise UserError(f"{target}: {d} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".idtune-probe-", dir=d)
    except OSError as e:
        raise UserError(f"{target}: cannot write in {d} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)
