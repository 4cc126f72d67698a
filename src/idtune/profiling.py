"""`profile_steps`: torch.profiler over a few steps of `idtune train`, into <run>/profile/.

Each process writes `trace_rank{R}.json` (open it in Perfetto or chrome://tracing) and
`top_rank{R}.md`: the window's wall time, the GPU's kernel time and the share of the wall the GPU
stood idle waiting for the host (the host gaps), then torch.profiler's table of the operators
and kernels that took the most time (by GPU time on CUDA, by CPU time otherwise).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

_STEPS = re.compile(r"\s*([1-9]\d*)\s*(?:-\s*([1-9]\d*)\s*)?")
TOP_ROWS = 25


def parse_steps(value: Any) -> tuple[int, int] | None:
    """ "6-7" (or 6, or "6") → (6, 7) / (6, 6); "" or None → None; ValueError otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    m = _STEPS.fullmatch(str(value))
    if not m:
        raise ValueError(value)
    first = int(m.group(1))
    last = int(m.group(2) or first)
    if last < first:
        raise ValueError(value)
    return first, last


def valid(value: Any) -> bool:
    """Whether `value` is a `profile_steps` setting (for the recipe's checks)."""
    try:
        parse_steps(value)
    except ValueError:
        return False
    return True


class StepProfiler:
    """Profiles optimizer steps `first`..`last` (1-based, as log.jsonl counts them)."""

    def __init__(self, steps: tuple[int, int] | None, out: Path, rank: int, cuda: bool):
        self.steps, self.out, self.rank, self.cuda = steps, out, rank, cuda
        self.prof: Any = None
        self.t0 = 0.0

    def before(self, step: int) -> None:
        """Call before optimizer step `step` (1-based) starts."""
        if self.steps is None or step != self.steps[0] or self.prof is not None:
            return
        import torch
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        if self.cuda:
            torch.cuda.synchronize()
        self.prof = profile(activities=acts)
        self.prof.__enter__()
        self.t0 = time.perf_counter()

    def after(self, step: int) -> Path | None:
        """Call after optimizer step `step` ended; at the last profiled step, write the files
        and return the table's path."""
        if self.prof is None or self.steps is None or step != self.steps[1]:
            return None
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - self.t0
        prof, self.prof = self.prof, None
        prof.__exit__(None, None, None)
        self.out.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(self.out / f"trace_rank{self.rank}.json"))
        table = self.out / f"top_rank{self.rank}.md"
        table.write_text(summary(prof, wall, self.steps, self.cuda))
        return table


def kernel_seconds(prof: Any) -> float:
    """The summed duration of every GPU kernel and copy the profiler saw."""
    from torch.autograd import DeviceType

    return (
        sum(e.time_range.elapsed_us() for e in prof.events() if e.device_type == DeviceType.CUDA)
        / 1e6
    )


def summary(prof: Any, wall: float, steps: tuple[int, int], cuda: bool) -> str:
    """The Markdown of `top_rank{R}.md` (see the module's docstring)."""
    n = steps[1] - steps[0] + 1
    lines = [f"# torch.profiler, steps {steps[0]}-{steps[1]}", "",
             f"- wall: {wall:.3f} s for {n} step(s), {wall / n:.3f} s a step"]  # fmt: skip
    if cuda:
        busy = kernel_seconds(prof)
        idle = max(0.0, 1 - busy / wall) if wall > 0 else 0.0
        share = 100 * busy / max(wall, 1e-9)
        lines += [
            f"- GPU kernels: {busy:.3f} s ({share:.1f} % of the wall)",
            f"- GPU idle (host gaps, launches, waits): {100 * idle:.1f} % of the wall",
        ]
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=TOP_ROWS, max_name_column_width=60)
    lines += ["", f"Top {TOP_ROWS} by {'GPU' if cuda else 'CPU'} self time:", "", "```",
              table.rstrip(), "```", ""]  # fmt: skip
    return "\n".join(lines)
