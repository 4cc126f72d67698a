"""Test helpers: drive the real CLI in-process."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from idtune.cli import main


def cli(*args: str) -> int:
    """Run `idtune ARGS`; return its exit code (typer always exits through SystemExit)."""
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    return exc.value.code or 0


def one_error(capsys) -> str:
    """The one line the CLI printed on stderr (asserted to be one `error:` line)."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err.removeprefix("error: ")


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes, to show nothing changed."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def concurrently(calls: list) -> list:
    """Run the calls in threads released at the same moment; their results (or exceptions)."""
    import threading

    out: list = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = calls[i]()
        except Exception as e:  # noqa: BLE001 - kept for the test to assert on
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)  # a last-resort bound; the calls carry their own HTTP timeouts
    return out


def finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[str, str]:
    """`proc`'s (stdout, stderr) once it has exited, asserted to exit 0. Started with
    `start_new_session`, its whole process group is killed if it outlives `timeout`: a bound
    for a hang, not a guess at how long the work takes."""
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    return out, err
