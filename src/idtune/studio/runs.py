"""What the studio shows about runs, read from their files: every studio process and browser tab
sees the same runs, whoever started them (the studio or `idtune train` in a terminal).

A run is a directory under RUNS (or one level deeper) holding the `config.yaml` that
`idtune train` writes first; its progress is `log.jsonl`, its scored samples `samples.md`,
its evaluation `eval.md`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from .. import checkpoint
from . import jobs

RECENT_S = 120  # a run whose log moved this recently, with no studio job, is running elsewhere
_LOGS: dict[str, tuple[tuple, list[dict]]] = {}  # log.jsonl → (its version, its rows)


def find(runs: Path) -> list[Path]:
    """Run directories under `runs` (and one level deeper), newest first; a run the studio has
    just started is one before `idtune train` has written anything."""
    runs = Path(runs).resolve()
    if not runs.is_dir():
        return []
    found = [p.parent for p in runs.glob("*/config.yaml")]
    found += [p.parent for p in runs.glob("*/*/config.yaml") if p.parts[-3] != jobs.STATE]
    started = [j for j in jobs.all_jobs(runs) if j.verb == "train"]
    found += [Path(j.run) for j in started if Path(j.run).is_dir() or j.state() == "running"]

    def newest(p: Path) -> float:
        return p.stat().st_mtime if p.exists() else time.time()

    return sorted(set(found), key=newest, reverse=True)


def label(runs: Path, run: Path) -> str:
    """A run's name in the run picker: its path below RUNS."""
    return str(Path(run).relative_to(runs))


def log_version(run: Path) -> tuple | None:
    """What changes whenever the run's log.jsonl does (inode, size, mtime): a stat, no read."""
    try:
        st = (Path(run) / "log.jsonl").stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def log_rows(run: Path) -> list[dict]:
    """The rows of the run's log.jsonl, read again only when it changed."""
    path = Path(run) / "log.jsonl"
    version = log_version(run)
    if version is None:
        return []
    cached = _LOGS.get(str(path))
    if cached is None or cached[0] != version:
        cached = _LOGS[str(path)] = (version, checkpoint.read_log(path))
    return cached[1]


def progress(run: Path) -> dict:
    """The latest numbers of a run's log: step, total, loss, val_loss, tokens/s, ETA (seconds)."""
    rows = log_rows(run)
    if not rows:
        return {"step": 0, "total": None, "rows": rows}
    last = rows[-1]
    total = last.get("total_steps")
    val = [r["val_loss"] for r in rows if r.get("val_loss") is not None]
    eta = None
    if total and last.get("elapsed_s"):  # wall time a step in this process, checkpoints included
        n = 1
        while n < len(rows) and 0 < rows[-n - 1].get("elapsed_s", 0) < rows[-n]["elapsed_s"]:
            n += 1  # rows of the same process (a resumed run's clock starts again)
        eta = max(0, total - last["step"]) * last["elapsed_s"] / n
    return {
        "step": last["step"],
        "total": total,
        "loss": last.get("loss"),
        "val_loss": val[-1] if val else None,
        "tokens_per_s": last.get("tokens_per_s"),
        "eta_s": eta,
        "rows": rows,
    }


def state(runs: Path, run: Path) -> tuple[str, jobs.Job | None]:
    """(what the run is doing, its latest training job): running, finished, stopped, …"""
    job = jobs.latest(runs, run, "train")
    if job is not None and job.state() == "running":
        return "running", job
    if checkpoint.finished(Path(run)) is not None:
        return "finished", job
    log = Path(run) / "log.jsonl"
    if (
        log.is_file()
        and time.time() - log.stat().st_mtime < RECENT_S
        and (job is None or job.rc is None)
    ):
        return "running (started outside the studio)", job
    ckpt = checkpoint.latest(Path(run))
    where = f"resumable from {ckpt.name}" if ckpt else "no checkpoint to resume from"
    ended = f"{job.state()}, " if job is not None else ""
    return f"not running ({ended}{where})", job


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def status_markdown(runs: Path, run: Path) -> str:
    """One short block: the state, step i of N, loss, validation loss, tokens/s, ETA."""
    what, _ = state(runs, run)
    p = progress(run)
    parts = [f"**{label(runs, run)}**: {what}"]
    if p["rows"]:
        parts.append(f"step {p['step']}" + (f" of {p['total']}" if p["total"] else ""))
        parts.append(f"loss {p['loss']:.4f}")
        if p["val_loss"] is not None:
            parts.append(f"val loss {p['val_loss']:.4f}")
        parts.append(f"{p['tokens_per_s']:.0f} tokens/s")
        if p["eta_s"] is not None and what.startswith("running"):
            parts.append(f"ETA {_duration(p['eta_s'])}")
    return " · ".join(parts)


def loss_rows(run: Path) -> list[dict]:
    """The loss curve's points: {step, loss, series} for train and, where measured, val."""
    rows = log_rows(run)
    out = [{"step": r["step"], "loss": r["loss"], "series": "train"} for r in rows if "loss" in r]
    out += [
        {"step": r["step"], "loss": r["val_loss"], "series": "val"}
        for r in rows
        if r.get("val_loss") is not None
    ]
    return out


def latest_samples(run: Path) -> str:
    """The last section of samples.md (the answers and scored probes of the latest checkpoint)."""
    path = Path(run) / "samples.md"
    if not path.is_file():
        return ""
    parts = re.split(r"(?m)^(?=## step \d+$)", path.read_text("utf-8"))
    return parts[-1].strip() if parts else ""


def eval_report(run: Path) -> tuple[str, str]:
    """eval.md split in two: the header and before/after table, and the failing answers."""
    path = Path(run) / "eval.md"
    if not path.is_file():
        return "", ""
    head, _, fails = path.read_text("utf-8").partition("## Example failures")
    return head.strip(), fails.strip()
