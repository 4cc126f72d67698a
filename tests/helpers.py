"""Test helpers: drive the real CLI in-process."""

from __future__ import annotations

import pytest

from idtune.cli import main


def cli(*args: str) -> int:
    """Run `idtune ARGS`; return its exit code (typer always exits through SystemExit)."""
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    return exc.value.code or 0
