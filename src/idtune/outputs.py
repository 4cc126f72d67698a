"""Check where a command will write before it does the work: one line naming the path.

Nothing is created here except a probe file that is removed at once, so a refused command
leaves the disk as it was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UserError


def kind(path: str | os.PathLike) -> str | None:
    """What is at `path`: "dir", "file" (anything else, a dangling link too) or None (absent);
    a path the system refuses to look at (a name too long, a NUL in it) is one line."""
    p = Path(path)
    try:
        if p.is_dir():
            return "dir"
        return "file" if p.exists() or p.is_symlink() else None
    except (OSError, ValueError) as e:
        raise UserError(f"{_short(p)}: {getattr(e, 'strerror', None) or e}") from None


def check_file(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse an output file that is a directory, cannot be written, or exists (unless
    `overwrite`)."""
    path = Path(path)
    if kind(path) == "dir":
        raise UserError(f"{path} is a directory; name a file to write")
    if kind(path) and not overwrite:
        raise UserError(f"{path} exists; pass --overwrite to replace it")
    _writable(path.parent, path)
    return path


def check_dir(path: str | os.PathLike) -> Path:
    """Refuse an output directory that is a file or cannot be created and written in."""
    path = Path(path)
    if kind(path) == "file":
        raise UserError(f"{path} exists and is not a directory")
    _writable(path, path)
    return path


def check_new_dir(path: str | os.PathLike, *, overwrite: bool | None = None) -> Path:
    """`check_dir`, and refuse a directory that already holds files unless `overwrite` (None:
    the command has no --overwrite flag)."""
    path = check_dir(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        hint = "pass --overwrite to replace it" if overwrite is not None else "name a new directory"
        raise UserError(f"{path} exists and is not empty; {hint}")
    return path


def check_choice(flag: str, value: str, choices) -> str:
    """Refuse `value` for `flag` unless it is one of `choices`, naming them."""
    if value not in choices:
        raise UserError(f"{flag} {value!r}: choose one of {', '.join(choices)}")
    return value


def _short(p: Path) -> str:
    text = str(p)
    return text if len(text) <= 120 else text[:60] + "…" + text[-40:]


def _writable(directory: Path, target: Path) -> None:
    """The nearest existing ancestor of `directory` must be a directory we can create files in."""
    d = directory.absolute()
    while kind(d) is None and d != d.parent:
        d = d.parent
    if kind(d) != "dir":
        raise UserError(f"{target}: {d} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".idtune-probe-", dir=d)
    except OSError as e:
        raise UserError(f"{target}: cannot write in {d} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)
