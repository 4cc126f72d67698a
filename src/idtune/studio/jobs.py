"""The studio's jobs: `idtune VERB …` processes that outlive the studio and the browser.

A job is `RUNS/.studio/jobs/ID.json` (verb, run, idtune arguments, pid, exit code once known)
and `ID.log` (its stdout and stderr). It runs under a small wrapper (`python -m
idtune.studio.jobs ID.json`) in a session of its own: closing the browser, or killing the
studio, leaves it running, and the wrapper records the exit code, so any studio process later
knows how it ended. Stopping a job sends the wrapper SIGINT, which it passes on (the child
stops as Ctrl-C stops it; checkpoints are written under a temporary name, so none is left half
written), killing the child only if it has not ended after a grace period. Secrets (a push
token) reach the child only through its environment, never a file or its command line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..atomic import write_text

STATE = ".studio"  # the studio's own files inside RUNS (jobs, identity data)
GRACE_S = 20.0  # after a stop, the child gets this long to end before it is killed
_CHILDREN: dict[int, subprocess.Popen] = {}  # wrappers this process started (to reap them)


@dataclass
class Job:
    """One `idtune` command the studio started, as recorded on disk."""

    id: str
    verb: str  # train, eval, merge, export, push, deploy
    run: str  # the run directory it belongs to
    argv: list[str]  # the arguments after `idtune`
    started: float = field(default_factory=time.time)
    pid: int | None = None  # the wrapper's, once it runs
    rc: int | None = None  # the child's exit code, once it ended
    ended: float | None = None
    stopped: bool = False  # a stop was asked for
    path: str = ""  # where this record lives (not itself written)

    @property
    def log(self) -> str:
        """The job's output so far."""
        path = Path(self.path).with_suffix(".log")
        return path.read_text("utf-8", errors="replace") if path.is_file() else ""

    def state(self) -> str:
        """running, done, failed (exit code N), stopped, or lost (ended without a record)."""
        if self.rc is None:
            if alive(self.pid):
                return "running"
            if self.pid is None and time.time() - self.started < 60:
                return "running"  # the wrapper is starting
            return "lost"
        if self.rc == 0:
            return "done"
        return "stopped" if self.stopped else f"failed (exit code {self.rc})"


def jobs_dir(runs: Path) -> Path:
    """Where the job records of the runs under `runs` are kept."""
    return Path(runs) / STATE / "jobs"


def _save(job: Job) -> None:
    data = {k: v for k, v in asdict(job).items() if k != "path"}
    write_text(Path(job.path), json.dumps(data, indent=1) + "\n")


def read(path: Path) -> Job | None:
    """The job recorded at `path` (None: unreadable, e.g. a record from another version)."""
    try:
        data = json.loads(Path(path).read_text("utf-8"))
        return Job(
            **{k: v for k, v in data.items() if k in Job.__dataclass_fields__}, path=str(path)
        )
    except (OSError, ValueError, TypeError):
        return None


def start(runs: Path, verb: str, run: Path, argv: list[str], env: dict | None = None) -> Job:
    """Start `idtune ARGV` as a job of `run`; `env` is added to the child's environment only."""
    d = jobs_dir(runs)
    d.mkdir(parents=True, exist_ok=True)
    jid = f"{time.strftime('%Y%m%d-%H%M%S')}-{verb}-{uuid.uuid4().hex[:6]}"
    job = Job(jid, verb, str(Path(run).resolve()), list(argv), path=str(d / f"{jid}.json"))
    _save(job)
    with open(d / f"{jid}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "idtune.studio.jobs", job.path],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not in the studio's process group: Ctrl-C there spares it
            env={**_inherited(), **(env or {}), "PYTHONUNBUFFERED": "1"},
        )
    _CHILDREN[proc.pid] = proc
    return job


def _inherited() -> dict:
    """The studio's environment for a job, less the studio's own password."""
    from .guard import PASSWORD_ENV

    return {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}


def all_jobs(runs: Path) -> list[Job]:
    """Every job recorded under `runs`, oldest first."""
    _reap()
    d = jobs_dir(runs)
    found = [read(p) for p in d.glob("*.json")] if d.is_dir() else []
    return sorted((j for j in found if j), key=lambda j: j.started)


def for_run(runs: Path, run: Path, verb: str | None = None) -> list[Job]:
    """The jobs of `run` (of one `verb`), oldest first."""
    run_s = str(Path(run).resolve())
    return [j for j in all_jobs(runs) if j.run == run_s and (verb is None or j.verb == verb)]


def latest(runs: Path, run: Path, verb: str) -> Job | None:
    """The newest job of `verb` on `run`, if any."""
    jobs = for_run(runs, run, verb)
    return jobs[-1] if jobs else None


def stop(job: Job) -> bool:
    """Ask a running job to stop (SIGINT to its wrapper); False when it is not running."""
    fresh = read(Path(job.path)) or job
    if fresh.rc is not None or not alive(fresh.pid):
        return False
    fresh.stopped = True
    _save(fresh)
    os.kill(fresh.pid, signal.SIGINT)
    return True


def alive(pid: int | None) -> bool:
    """Whether `pid` is a running job wrapper (not a zombie, not a reused pid)."""
    if not pid:
        return False
    _reap()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z" and b"idtune.studio.jobs" in cmdline


def _reap() -> None:
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[pid]


def main(path: str) -> int:
    """The wrapper: run the job's `idtune` command, pass a stop on, record the exit code."""
    deadline: list[float] = []  # set by a stop, which may come before the child exists
    signal.signal(signal.SIGINT, lambda *_: deadline.append(time.monotonic() + GRACE_S))
    signal.signal(signal.SIGTERM, lambda *_: deadline.append(time.monotonic() + GRACE_S))
    job = read(Path(path))
    if job is None:
        print(f"{path}: not a job record", file=sys.stderr)
        return 2
    job.pid = os.getpid()
    _save(job)
    print(f"$ idtune {' '.join(job.argv)}", flush=True)
    child = subprocess.Popen([sys.executable, "-m", "idtune.cli", *job.argv])
    passed = 0  # stops passed on to the child (as SIGINT, what Ctrl-C sends)
    while (rc := child.poll()) is None:
        if len(deadline) > passed:
            child.send_signal(signal.SIGINT)
            passed = len(deadline)
        if deadline and time.monotonic() > deadline[0]:
            child.kill()
        time.sleep(0.2)
    job = read(Path(path)) or job
    job.rc, job.ended = rc, time.time()
    _save(job)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
