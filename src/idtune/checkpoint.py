"""Checkpoints of a run and what resuming one takes: `checkpoints/step-N/`, log.jsonl, samples.md.

A checkpoint is accelerate's `save_state` (optimizer, scheduler, RNG of every process, and under
DeepSpeed or FSDP2 the engine's own sharded files) plus the weights in the Hugging Face layout
(`adapter_model.safetensors` + `adapter_config.json`, or the full model under accelerate's own
name). Every process writes into `checkpoints/.step-N.partial`; once all are done, rank 0 writes
`state.json` (step, engine, world size) and renames the directory to `step-N`. Only directories
named `step-N` that hold `state.json` are ever resumed from, so a half-written checkpoint is never
loaded; leftover `.step-*` directories of a crash are removed on resume. A `step-N` damaged later
(an empty `state.json`, a file missing) is passed over, with a log line, for the one before it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import UserError

DONE = "state.json"  # written last: a checkpoint without it is incomplete
ADAPTER = "adapter_model.safetensors"
FINAL = ("adapter", "model")  # a finished run's weights (LoRA/QLoRA, full)


# ---------------------------------------------------------------- finding and checking
def latest(run: Path) -> Path | None:
    """The complete checkpoint with the highest step, if any."""
    return scan(run)[0]


def scan(run: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete checkpoint (None: none), and the damaged ones newer than it, each
    with what is wrong with it (newest first)."""
    found = sorted((p for p in (run / "checkpoints").glob("step-*") if _step(p) is not None),
                   key=_step, reverse=True)  # fmt: skip
    damaged = []
    for path in found:
        why = problem(path)
        if why is None:
            return path, damaged
        damaged.append((path, why))
    return None, damaged


def problem(ckpt: Path) -> str | None:
    """What keeps `checkpoints/step-N` from being resumed (None: nothing): its `state.json`
    missing, empty or unreadable, or a file accelerate, the adapter or FSDP2 (every rank's
    shards) needs missing or empty."""
    try:
        text = (ckpt / DONE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"no {DONE}"
    except (OSError, UnicodeDecodeError) as e:
        return f"{DONE} cannot be read ({getattr(e, 'strerror', None) or e})"
    if not text.strip():
        return f"{DONE} is empty"
    try:
        state = json.loads(text)
    except ValueError:
        return f"{DONE} is not valid JSON"
    if not isinstance(state, dict) or type(state.get("step")) is not int:
        return f"{DONE} has no step"
    if state["step"] != _step(ckpt):
        return f"{DONE} says step {state['step']}"
    if "engine" not in state:
        return None  # an older idtune's layout: check_run says so
    world = state.get("world_size", 1)
    ranks = range(world if type(world) is int else 1)
    needed = [f"random_states_{i}.pkl" for i in ranks]
    if state.get("engine") in ("single", "ddp"):  # sharded engines keep their own layout
        needed += ["optimizer.bin", "scheduler.bin"]
        if state.get("method") == "full":
            needed.append("model.safetensors")
    if state.get("engine") == "fsdp2":  # torch's distributed checkpoint (parallel.save_sharded):
        # its metadata and one file of shards from each rank (torch's FileSystemWriter, one
        # file per rank as its defaults have it: `__{rank}_0.distcp`)
        needed += ["scheduler.bin", "fsdp/.metadata", *(f"fsdp/__{r}_0.distcp" for r in ranks)]
    if state.get("method", "lora") != "full":
        needed += [ADAPTER, "adapter_config.json"]
    for name in needed:
        f = ckpt / name
        if not f.is_file() or f.stat().st_size == 0:
            return f"{name} is {'empty' if f.is_file() else 'missing'}"
    return None


def _step(path: Path) -> int | None:
    m = re.fullmatch(r"step-(\d+)", path.name)
    return int(m.group(1)) if m and path.is_dir() else None


def finished(run: Path) -> Path | None:
    """The final weights directory of a finished run (`adapter/` or `model/`), if any."""
    return next((run / n for n in FINAL if (run / n).is_dir()), None)


def check_run(
    run: Path,
    resume: bool,
    engine: str,
    world_size: int,
    max_steps: int = 0,
    resume_finished: bool = False,
    log: Callable[[str], Any] = print,
) -> Path | None:
    """Refuse what would lose work; returns the checkpoint to resume from (None: a new run).

    Called before any process starts and again in every process before anything is written.
    """
    if not resume:
        if run.exists() and any(run.iterdir()):
            raise UserError(f"{run} exists and is not empty; use --resume or --set output_dir=NEW")
        return None
    ckpt, damaged = scan(run)
    if ckpt is None and damaged:
        path, why = damaged[0]
        more = f" (and {len(damaged) - 1} older, damaged too)" if len(damaged) > 1 else ""
        raise UserError(f"{run}: no complete checkpoint to resume from: {path.name}: {why}{more}")
    if ckpt is None:
        raise UserError(f"{run}: no checkpoint to resume from")
    for path, why in damaged:
        log(f"{path}: damaged ({why}); resuming from {ckpt.name}, the newest complete checkpoint")
    state = json.loads((ckpt / DONE).read_text())
    if "engine" not in state:
        raise UserError(f"{ckpt}: written by an older idtune (before accelerate checkpoints)")
    final = finished(run)
    if final is not None and not resume_finished:
        raise UserError(
            f"{run} is finished ({final.name}/ is written); --resume would replace it with a "
            f"continuation of {ckpt.name}: train into a new --set output_dir, or pass "
            "--resume-finished to do exactly that"
        )
    if (state["engine"], state["world_size"]) != (engine, world_size):
        raise UserError(
            f"{ckpt} was written by {state['world_size']} process(es) under {state['engine']}; "
            f"resume it the same way (this launch: {world_size} under {engine})"
        )
    if max_steps and state["step"] >= max_steps:
        raise UserError(f"{ckpt} is at step {state['step']}, max_steps is {max_steps}")
    return ckpt


def step_of(ckpt: Path) -> int:
    """The optimizer step a checkpoint was taken after."""
    return int(json.loads((ckpt / DONE).read_text())["step"])


def clean_orphans(run: Path) -> list[Path]:
    """Remove temporary checkpoint directories (`.step-*`) that a crash left behind."""
    orphans = sorted(p for p in (run / "checkpoints").glob(".step-*") if p.is_dir())
    for p in orphans:
        shutil.rmtree(p, ignore_errors=True)
    return orphans


# ---------------------------------------------------------------- saving and loading
def register_hooks(accelerator: Any, inner: Any, method: str) -> None:
    """Keep LoRA checkpoints small: the adapter (PEFT layout) instead of the whole model.

    accelerate writes a one-process or DDP model's full state dict; for LoRA the hooks drop it
    (the adapter is written beside it) and load the adapter back instead. DeepSpeed and FSDP2
    save and load their own files and never reach these lists.
    """
    if method == "full":
        return

    def on_save(models: list, weights: list, output_dir: str) -> None:
        weights.clear()

    def on_load(models: list, input_dir: str) -> None:
        if models:
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            set_peft_model_state_dict(inner, load_file(Path(input_dir) / ADAPTER))
            models.clear()

    accelerator.register_save_state_pre_hook(on_save)
    accelerator.register_load_state_pre_hook(on_load)


def save(
    accelerator: Any,
    run: Path,
    step: int,
    keep_last: int,
    meta: dict,
    write_weights: Callable[[Path], None],
    save_kwargs: dict,
) -> Path:
    """checkpoints/step-N from every process, committed by rank 0; keeps the last `keep_last`.

    `write_weights(dir)` is called on every process (a collective under sharded engines).
    """
    ckdir = run / "checkpoints"
    tmp, final = ckdir / f".step-{step}.partial", ckdir / f"step-{step}"
    main = accelerator.is_main_process
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), **save_kwargs)
    write_weights(tmp)
    accelerator.wait_for_everyone()
    if main:
        (tmp / DONE).write_text(json.dumps({"step": step, **meta}) + "\n")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        done = sorted((p for p in ckdir.glob("step-*") if _step(p) is not None), key=_step)
        for old in done[: max(0, len(done) - keep_last)]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load(
    accelerator: Any,
    ckpt: Path,
    load_kwargs: dict,
    load_more: Callable[[Path], None] | None = None,
) -> int:
    """Restore weights, optimizer, scheduler and every process's RNG; returns the step.
    `load_more(dir)`: what the engine keeps outside accelerate's state (FSDP2's shards).

    A file that is there but cannot be read back (truncated, overwritten) is one line naming
    the checkpoint."""
    try:
        accelerator.load_state(str(ckpt), **load_kwargs)
        if load_more is not None:
            load_more(ckpt)
    except Exception as e:  # pickle, safetensors and torch each raise their own types
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise UserError(
            f"{ckpt}: cannot be loaded ({reason}); move it out of checkpoints/ to resume from "
            "the one before it"
        ) from None
    return step_of(ckpt)


# ---------------------------------------------------------------- log.jsonl and samples.md
def read_log(path: Path) -> list[dict]:
    """The rows of log.jsonl; a torn last line (a crash in the middle of writing it) is skipped."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise UserError(f"{path}:{i + 1}: not a JSON line") from None
    return rows


def rewind_log(path: Path, step: int) -> None:
    """Forget the log rows of steps after `step` (they are about to be trained again)."""
    if path.is_file():
        rows = [r for r in read_log(path) if r.get("step", 0) <= step]
        _replace(path, "".join(json.dumps(r) + "\n" for r in rows))


def rewind_samples(path: Path, step: int) -> bool:
    """Forget samples.md sections after `step`; True when the section of `step` is there."""
    if not path.is_file():
        return False
    parts = re.split(r"(?m)^(?=## step \d+$)", path.read_text(encoding="utf-8"))
    kept = [p for p in parts if _section_step(p) is None or _section_step(p) <= step]
    _replace(path, "".join(kept))
    return any(_section_step(p) == step for p in kept)


def _section_step(part: str) -> int | None:
    m = re.match(r"## step (\d+)\n", part)
    return int(m.group(1)) if m else None


def append_section(path: Path, text: str) -> None:
    """Add a section to a Markdown file all at once (a crash leaves it as it was or complete)."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    _replace(path, old + text)


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
