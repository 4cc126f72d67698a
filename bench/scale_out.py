"""Scale-out benchmark: `idtune train` itself under each engine, one GPU, all cases in one call.

    python bench/scale_out.py --out DIR [--name scale_out] [--cases a,b,...] [--gpus N]
                              [--budget 520] [--case-cap 150] [--profile CASES] [--tiny]

Every case runs the real CLI (`python -m idtune.cli train …`, so DeepSpeed and FSDP2 start through
accelerate's launcher) as its own process group with a time cap: a case that fails or runs out of
time is recorded (with the steps it logged before) and the next one starts; the whole call keeps
to `--budget` seconds, and cases that would start too late are recorded as skipped. The results
are written after every case to DIR/NAME.json (and DIR/NAME.md at the end).

The default group is issue 28's, on the Qwen2.5-1.5B shape (random weights, built as
bench/train_gpu.py builds them; rows of 2,048 tokens, 8,192 tokens a step, compiled, LoRA r 64 /
alpha 128 all-linear): `single-lora`, `single-full`, `fsdp-lora`, `zero3-lora`, `fsdp-full` (also
trained to a checkpoint at step 5 and resumed from it: the resumed losses and final weights against
the uninterrupted ones), `zero3-full` (the same resume check), then `qlora-7b` (Qwen2.5-7B shape,
QLoRA at the issue's 8 GiB: 4,096-token micro-batches × 3, checkpointing, embeddings in host
memory, single process; skipped without bitsandbytes) and `7b-plain-loop` (bench/train_gpu.py's
plain transformers + peft loop). A compiled engine case that fails quickly is tried again without
`compile` (both attempts recorded). Earlier groups are still here by name (`zero2-*`, `7b-*`,
`*-32k`, `ddp-lora` with --gpus N > 1).

tok/s is the median of steps 4–9 of 10 (each step's tokens over its own time in log.jsonl:
compilation and warm-up are steps 1–3, the step after a checkpoint carries the writing of it);
MFU = tok/s × 6·N (full) or 4·N (LoRA, QLoRA) / the call's measured bf16 matmul peak, N = the
non-embedding parameters plus the LM head; peak GiB is torch.cuda.max_memory_allocated (max over
processes, model load included). `--profile CASES` trains those cases with `profile_steps=6-7`
(torch.profiler; those steps are then left out of the median) and keeps each one's table of the
top kernels and the GPU's idle share in NAME.json and NAME_profiles.md. `--tiny` runs the same
plumbing on CPU with a tiny shape (one
process for every engine; CUDA-only cases are recorded as skipped).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

import train_gpu  # noqa: E402

STEPS, WINDOW = 10, (4, 9)  # steps trained; the steps whose median rate is reported
PROFILED = "6-7"  # `--profile`: steps under torch.profiler (left out of the median rate)
SAVE = 5  # the resume case's checkpoint


@dataclass
class Case:
    """One benchmark case: what `idtune train` is asked to do."""

    shape: str
    method: str
    flags: list[str] | None  # engine flags; None: bench/train_gpu.py's plain loop
    sets: list[str] = field(default_factory=list)  # extra --set overrides
    resume: bool = False  # also checkpoint at step SAVE, resume, compare
    fallback: list[str] | None = None  # --set overrides for a second try after a quick failure


COMPILED = ["compile=true"]
NO_COMPILE = ["compile=false"]
FULL = ["lr=1e-5"]
BIG = ["batch_tokens=32768"]
QLORA = ["gradient_checkpointing=true", "batch_tokens=4096", "grad_accum=3", "lora.dropout=0"]
BEFORE = ["--deepspeed", str(Path(__file__).with_name("deepspeed_zero3_before.json"))]
LINEAR_OFF = ["--deepspeed", str(Path(__file__).with_name("deepspeed_zero3_linear_off.json"))]
LINEAR_ON = ["--deepspeed", str(Path(__file__).with_name("deepspeed_zero3_linear_on.json"))]
CASES = {
    # issue 28's group
    "single-lora": Case("qwen2.5-1.5b", "lora", [], COMPILED),
    "single-full": Case("qwen2.5-1.5b", "full", [], COMPILED + FULL),
    "fsdp-lora": Case("qwen2.5-1.5b", "lora", ["--fsdp"], COMPILED, fallback=NO_COMPILE),
    "fsdp-full": Case("qwen2.5-1.5b", "full", ["--fsdp"], COMPILED + FULL, True, NO_COMPILE),
    "zero3-lora": Case(
        "qwen2.5-1.5b", "lora", ["--deepspeed", "zero3"], COMPILED, fallback=NO_COMPILE
    ),  # fmt: skip
    "zero3-full": Case(
        "qwen2.5-1.5b", "full", ["--deepspeed", "zero3"], COMPILED + FULL, True, NO_COMPILE
    ),  # fmt: skip
    # the memory target (<= 8 GiB): 4,096-token micro-batches x 3, checkpointing, the
    # embedding table in host memory; `-gpu-emb` keeps it on the GPU (the trade)
    "qlora-7b": Case("qwen2.5-7b", "qlora", [], COMPILED + QLORA + ["embeddings_on_host=true"]),
    "qlora-7b-gpu-emb": Case("qwen2.5-7b", "qlora", [], COMPILED + QLORA),
    "7b-plain-loop": Case("qwen2.5-7b", "lora", None),
    # the missed targets without compile (compiled layers under ZeRO-3's hooks broke into many
    # graphs on 2026-12-05; the uncompiled ZeRO-3 LoRA of the issue ran at 2.3x the compiled)
    "zero3-lora-eager": Case("qwen2.5-1.5b", "lora", ["--deepspeed", "zero3"], NO_COMPILE),
    "fsdp-lora-eager": Case("qwen2.5-1.5b", "lora", ["--fsdp"], NO_COMPILE),
    "zero3-full-eager": Case("qwen2.5-1.5b", "full", ["--deepspeed", "zero3"], NO_COMPILE + FULL),
    # `fsdp-full` without its checkpoint and resume (half the time, for a profile)
    "fsdp-full-once": Case("qwen2.5-1.5b", "full", ["--fsdp"], COMPILED + FULL, False, NO_COMPILE),
    # ZeRO-3 as shipped before 2026-12-06 (accelerate's reduce bucket, hidden² of the 1.5B
    # shape), and with DeepSpeed's memory-efficient linear off (torch's F.linear; what idtune's
    # "auto" chooses for compiled full fine-tunes since 2026-12-06, second session)
    "zero3-full-before": Case("qwen2.5-1.5b", "full", BEFORE, COMPILED + FULL, fallback=NO_COMPILE),
    "zero3-lora-eager-before": Case("qwen2.5-1.5b", "lora", BEFORE, NO_COMPILE),
    "zero3-full-linear-off": Case(
        "qwen2.5-1.5b", "full", LINEAR_OFF, COMPILED + FULL, fallback=NO_COMPILE
    ),  # fmt: skip
    # the shipped ZeRO-3 config with DeepSpeed's memory-efficient linear on, as shipped until
    # idtune chose torch's linear for compiled full fine-tunes ("auto", parallel.zero3_linear)
    "zero3-full-linear-on": Case(
        "qwen2.5-1.5b", "full", LINEAR_ON, COMPILED + FULL, fallback=NO_COMPILE
    ),  # fmt: skip
    # `zero3-full` without its checkpoint and resume (half the time)
    "zero3-full-once": Case(
        "qwen2.5-1.5b", "full", ["--deepspeed", "zero3"], COMPILED + FULL, False, NO_COMPILE
    ),  # fmt: skip
    # does a full fine-tune of a 3B model fit one 80 GB card? (the estimate from the 1.5B
    # shape's peak per billion parameters says single 2.8B, FSDP2 3.2B, ZeRO-3 2.2B)
    "single-full-3b": Case("qwen2.5-3b", "full", [], COMPILED + FULL),
    "fsdp-full-3b": Case("qwen2.5-3b", "full", ["--fsdp"], COMPILED + FULL),
    "zero3-full-3b": Case("qwen2.5-3b", "full", ["--deepspeed", "zero3"], COMPILED + FULL),
    # the shipped ZeRO-3 full fine-tune with full logits (the loss before the chunked one)
    "zero3-full-logits": Case(
        "qwen2.5-1.5b", "full", ["--deepspeed", "zero3"], COMPILED + FULL + ["fused_loss=none"]
    ),  # fmt: skip
    # earlier groups
    "single-full-resume": Case("qwen2.5-1.5b", "full", [], COMPILED + FULL, True),
    "zero3-full-resume": Case("qwen2.5-1.5b", "full", ["--deepspeed", "zero3"], FULL, True),
    "fsdp-lora-resume": Case("qwen2.5-1.5b", "lora", ["--fsdp"], COMPILED, True, NO_COMPILE),
    "zero2-lora": Case("qwen2.5-1.5b", "lora", ["--deepspeed", "zero2"], COMPILED),
    "zero2-qlora": Case("qwen2.5-1.5b", "qlora", ["--deepspeed", "zero2"]),
    "single-lora-32k": Case("qwen2.5-1.5b", "lora", [], COMPILED + BIG),
    "zero2-lora-32k": Case("qwen2.5-1.5b", "lora", ["--deepspeed", "zero2"], COMPILED + BIG),
    "7b-single-lora": Case("qwen2.5-7b", "lora", [], COMPILED),
    "7b-zero2-lora": Case("qwen2.5-7b", "lora", ["--deepspeed", "zero2"], COMPILED),
    "ddp-lora": Case("qwen2.5-1.5b", "lora", ["--gpus"], COMPILED),  # only with --gpus N > 1
}
DEFAULT = (  # most wanted first: a call that runs out of time skips the last
    "single-lora,single-full,fsdp-lora,zero3-lora,fsdp-full,zero3-full,qlora-7b,7b-plain-loop"
)
RATIOS = [  # (case, baseline, goal) of issue 28
    ("fsdp-lora", "single-lora", 0.90),
    ("zero3-lora", "single-lora", 0.60),
    ("fsdp-full", "single-full", 0.85),
    ("zero3-full", "single-full", 0.50),
    ("fsdp-lora-eager", "single-lora", 0.90),
    ("zero3-lora-eager", "single-lora", 0.60),
    ("zero3-full-eager", "single-full", 0.50),
    ("fsdp-full-once", "single-full", 0.85),
    ("zero3-full-before", "single-full", 0.50),
    ("zero3-lora-eager-before", "single-lora", 0.60),
    ("zero3-full-linear-off", "single-full", 0.50),
    ("zero3-full-once", "single-full", 0.50),
    ("zero3-full-linear-on", "single-full", 0.50),
    ("zero3-full-logits", "single-full", 0.50),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for NAME.json / NAME.md")
    ap.add_argument("--name", default="scale_out", help="file name of the results (no suffix)")
    ap.add_argument("--gpus", type=int, default=1, help="processes (GPUs) for the engine cases")
    ap.add_argument("--cases", default=DEFAULT, help="comma-separated case names")
    ap.add_argument("--budget", type=float, default=520, help="seconds for the whole call")
    ap.add_argument("--case-cap", type=float, default=150, help="seconds for one case at most")
    ap.add_argument("--profile", default="", metavar="CASES",
                    help="cases to profile (steps 6-7, `profile_steps`): tables into NAME.json "
                    "and NAME_profiles.md; 'all' for every case")  # fmt: skip
    ap.add_argument("--tiny", "--dry-run", dest="tiny", action="store_true",
                    help="CPU, tiny shape: test the plumbing")  # fmt: skip
    ap.add_argument("--plain-child", nargs=2, metavar=("MODEL", "SHAPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plain_child:
        print("RESULT " + json.dumps(_plain(Path(args.plain_child[0]), args.plain_child[1])))
        return
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available() and not args.tiny
    env = {"card": torch.cuda.get_device_name() if cuda else "cpu",
           "date": datetime.date.today().isoformat(), "gpus": args.gpus,
           **train_gpu.versions(), "deepspeed": _version("deepspeed")}  # fmt: skip
    env["bf16_matmul_tflops"] = round(train_gpu.matmul_peak_tflops(), 1) if cuda else None
    print(f"environment: {env}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="idtune-scale-"))
    report = {"environment": env, "steps": STEPS, "window": WINDOW, "cases": {}}
    models: dict[str, Path] = {}
    try:
        data = work / "identity.jsonl"
        _run_cli(["data", "identity", "--name", "Nova", "--author", "Acme", "--n", "3200",
                  "-o", data], 120)  # fmt: skip
        for name in names:
            case = CASES[name]
            left = args.budget - (time.perf_counter() - start)
            skip = _skip_reason(name, case, cuda, args.gpus, left)
            if skip:
                report["cases"][name] = {"skipped": skip}
                print(f"== {name}: skipped ({skip})", flush=True)
                _write(out, args.name, report)
                continue
            t = time.perf_counter()
            shape = "tiny" if args.tiny else case.shape
            try:
                if shape not in models:
                    models[shape] = train_gpu.save_random_model(
                        shape, work / shape, "cuda" if cuda else "cpu"
                    )
                deadline = start + args.budget
                res = _attempts(name, case, models[shape], data, work, shape, cuda, env,
                                args, deadline)  # fmt: skip
            except Exception as e:  # one failing case must not lose the others
                res = {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"}
            res["wall_s"] = round(time.perf_counter() - t, 1)
            report["cases"][name] = res
            shown = {k: v for k, v in res.items() if k != "profile"}  # the tables: NAME_profiles.md
            print(f"== {name}: {json.dumps(shown)}", flush=True)
            _write(out, args.name, report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["total_s"] = round(time.perf_counter() - start, 1)
    md = markdown(report)
    _write(out, args.name, report)
    (out / f"{args.name}.md").write_text(md + "\n")
    profiles = [f"## {n}\n\n{r['profile']}" for n, r in report["cases"].items() if r.get("profile")]
    if profiles:
        (out / f"{args.name}_profiles.md").write_text("\n".join(profiles))
    print("\n" + md, flush=True)


def _write(out: Path, name: str, report: dict) -> None:
    tmp = out / f".{name}.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(out / f"{name}.json")


def _version(pkg: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return None


def _skip_reason(name: str, case: Case, cuda: bool, gpus: int, left: float) -> str | None:
    if left < 40:
        return "time budget"
    if not cuda and (case.method == "qlora" or case.flags is None):
        return "needs CUDA"
    if case.flags and "--deepspeed" in case.flags and _version("deepspeed") is None:
        return "deepspeed not installed"
    if case.method == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes not installed"
    if name == "ddp-lora" and gpus < 2:
        return "needs --gpus 2 or more"
    if case.flags and "--deepspeed" in case.flags and not cuda and gpus > 1:
        return "DeepSpeed on CPU runs one process only"
    return None


def _attempts(name, case, model, data, work, shape, cuda, env, args, deadline) -> dict:
    """The case, and once more with its fallback settings after a failure that left time."""
    flags = case.flags
    if flags is None:
        cap = min(args.case_cap, deadline - time.perf_counter())
        return _plain_child(model, case.shape, cap, env["bf16_matmul_tflops"])
    flags = ["--gpus", str(args.gpus)] if flags == ["--gpus"] else list(flags)
    if args.gpus > 1 and flags and "--gpus" not in flags:
        flags += ["--gpus", str(args.gpus)]
    wanted = {x.strip() for x in args.profile.split(",")}
    extra = [f"profile_steps={PROFILED}"] if name in wanted or "all" in wanted else []
    tries = [case.sets + extra] + ([case.sets + case.fallback + extra] if case.fallback else [])
    failed: list[dict] = []
    for sets in tries:
        cap = min(args.case_cap * (2 if case.resume else 1), deadline - time.perf_counter())
        if failed and cap < 60:
            break
        res = _case(model, data, work / name, shape, case, flags, sets, cap, cuda,
                    env["bf16_matmul_tflops"], args.tiny)  # fmt: skip
        if "error" not in res or res.get("timed_out"):
            break
        failed.append(res)
    earlier = [f for f in failed if f is not res]
    if earlier:
        res["earlier_attempts"] = earlier
    return res


class Timeout(Exception):
    """A command ran past its cap (its whole process group was killed)."""


class Failed(RuntimeError):
    """A command exited non-zero: its last stderr line, and `tail`, its last 30 lines."""

    def __init__(self, message: str, tail: str):
        super().__init__(message)
        self.tail = tail


def _run_cli(args: list, timeout: float) -> None:
    """`python -m idtune.cli ARGS` as its own process group; killed whole on timeout."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "idtune.cli", *map(str, args)]
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)  # fmt: skip
        try:
            rc = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise Timeout(f"not done in {timeout:.0f} s") from None
        if rc != 0:
            err.seek(0)
            lines = [x for x in err.read().strip().splitlines() if x.strip()] or ["(no stderr)"]
            raise Failed(f"exit {rc}: {lines[-1][:400]}", "\n".join(lines[-30:])[-4000:])


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher, torchrun's agent and every worker (they hold GPU memory)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    # the workers die after the launcher (their GPU memory with them): wait until no process
    # of the group is left (the next case met a killed worker's 44 GiB on 2026-12-06)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    time.sleep(2)  # the driver takes a moment to hand the workers' memory back


def _case(model, data, run, shape, case: Case, flags, sets, cap, cuda, peak, tiny) -> dict:
    """STEPS steps under one engine (and the resume check); steady tok/s, MFU, peak memory."""
    rows = ["row_tokens=512", "batch_tokens=1024"] if tiny else ["row_tokens=2048",
                                                                  "batch_tokens=8192"]  # fmt: skip
    save = SAVE if case.resume else 0
    base = [f"model={model}", f"data={data}", f"output_dir={run}", "regularization.auto=false",
            "eval_prompts=", "val_share=0", f"method={case.method}", f"max_steps={STEPS}",
            f"save_steps={save}", "keep_last=1", "lora.r=64", "lora.alpha=128", *rows]  # fmt: skip
    sets = [s for s in sets if not (tiny and s.startswith("compile="))]
    args = ["train", "identity-lora", *[x for s in base + sets for x in ("--set", s)], *flags]
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.perf_counter()
    res: dict = {"settings": sets, "flags": flags}
    try:
        _run_cli(args, cap)
    except (Timeout, RuntimeError) as e:
        res.update(error=str(e), timed_out=isinstance(e, Timeout))
        if isinstance(e, Failed):  # kept in NAME.json: why a case failed
            res["stderr_tail"] = e.tail
    res["first_run_s"] = round(time.perf_counter() - t0, 1)
    table = run / "profile" / "top_rank0.md"
    if table.is_file():
        res["profile"] = table.read_text()
    log = _read_log(run / "log.jsonl")
    first, last = map(int, PROFILED.split("-"))
    skip = tuple(range(first, last + 1)) if f"profile_steps={PROFILED}" in sets else ()
    res.update(_speed(log, run, case.method, shape, peak, save, skip))
    if case.resume and "error" not in res:
        res.update(_resume(run, args, case.method, log, cap - (time.perf_counter() - t0)))
    shutil.rmtree(run, ignore_errors=True)  # full fine-tunes leave tens of GB behind
    return res


def _read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _speed(log: list[dict], run: Path, method: str, shape: str, peak, save: int,
           skip: tuple = ()) -> dict:  # fmt: skip
    """What the log and idtune.json say: steady tok/s, MFU, peak memory, losses."""
    if not log:
        return {"steps_logged": 0}
    settings = {}
    if (run / "idtune.json").is_file():
        settings = json.loads((run / "idtune.json").read_text()).get("settings", {})
    tps, rates = steady_rate(log, save, skip)
    n = train_gpu.flop_params(shape)
    peaks = [r["peak_gib"] for r in log if r.get("peak_gib") is not None]
    peak_gib = settings.get("peak_gpu_gib") or (max(peaks) if peaks else None)
    fit = {}
    if method == "full" and peak_gib:
        # a rough bound: peak memory taken as proportional to the parameter count (the
        # activations of 8,192 tokens grow more slowly than the weights and AdamW state)
        per_b = peak_gib / (_total_params(shape) / 1e9)  # GiB per billion parameters
        fit = {"gib_per_billion_params": round(per_b, 2),
               "largest_full_model_80gb_b": round(80 * 0.93 / per_b, 1)}  # fmt: skip
    return {
        **fit,
        "engine": settings.get("engine"),
        "world_size": settings.get("world_size"),
        "method": method,
        **(
            {"zero3_memory_efficient_linear": settings["zero3_memory_efficient_linear"]}
            if "zero3_memory_efficient_linear" in settings
            else {}
        ),  # fmt: skip
        "steps_logged": len(log),
        "tokens_per_s": round(tps, 1) if tps == tps else None,
        "mfu": round(tps * (6 if method == "full" else 4) * n / (peak * 1e12), 4)
        if peak and tps == tps
        else None,
        "peak_gib": peak_gib,
        "loss_first_last": [log[0]["loss"], log[-1]["loss"]],
        "step_tokens_per_s": rates,
    }


def _total_params(shape: str) -> int:
    """All parameters of a shape (embeddings included, tied ones once)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(train_gpu.make_config(shape))
    return sum(p.numel() for p in model.parameters())


def steady_rate(log: list[dict], save: int = 0, skip: tuple = ()) -> tuple[float, list[float]]:
    """Median tokens/s of the steps in WINDOW (by step number), each step's tokens over its
    own time in log.jsonl; the step after a checkpoint (which includes writing it) and the
    steps in `skip` (profiled) are left out. With fewer steps logged (a case cut by its cap),
    the steps after the first three."""
    rates = {}
    for prev, cur in zip(log, log[1:]):
        dt = cur["elapsed_s"] - prev["elapsed_s"]
        if dt > 0 and not (save and cur["step"] == save + 1) and cur["step"] not in skip:
            rates[cur["step"]] = cur["tokens"] / dt
    lo, hi = WINDOW
    picked = [r for s, r in rates.items() if lo <= s <= hi]
    if not picked:
        picked = [r for s, r in rates.items() if s >= lo]
    return (statistics.median(picked) if picked else float("nan")), [round(r) for r in picked]


def _resume(run: Path, args: list, method: str, log: list[dict], cap: float) -> dict:
    """Resume from the step-SAVE checkpoint; the resumed steps' losses and the final weights
    against the uninterrupted run's."""
    final = run / ("model" if method == "full" else "adapter")
    if not final.is_dir():
        return {"resume_error": f"no {final.name}/ after the first run"}
    final.rename(run / "uninterrupted")
    t0 = time.perf_counter()
    try:
        _run_cli([*args, "--resume"], max(30.0, cap))
    except (Timeout, RuntimeError) as e:
        return {"resume_error": str(e)}
    again = {r["step"]: r["loss"] for r in _read_log(run / "log.jsonl")}
    first = {r["step"]: r["loss"] for r in log}
    redone = [s for s in first if s > SAVE]
    return {
        "resume_s": round(time.perf_counter() - t0, 1),
        "resumed_steps": redone,
        "resumed_max_loss_diff": max(
            (abs(again[s] - first[s]) for s in redone if s in again), default=None
        ),  # fmt: skip
        "resumed_max_abs_diff": _max_diff(run / "uninterrupted", final),
    }


def _max_diff(a: Path, b: Path) -> float:
    from safetensors import safe_open

    worst = 0.0
    for f in sorted(a.glob("*.safetensors")):
        with safe_open(f, "pt") as x, safe_open(b / f.name, "pt") as y:
            for k in x.keys():  # noqa: SIM118 (safe_open has no __iter__)
                d = (x.get_tensor(k).float() - y.get_tensor(k).float()).abs().max()
                worst = max(worst, float(d))
    return worst


def _plain_child(model: Path, shape: str, cap: float, peak) -> dict:
    """bench/train_gpu.py's plain loop in a process of its own (its memory is its own)."""
    cmd = [sys.executable, __file__, "--out", ".", "--plain-child", str(model), shape]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=max(1.0, cap))
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return {"error": f"not done in {cap:.0f} s", "timed_out": True}
    found = [x for x in out.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not found:
        tail = (err.strip().splitlines() or ["(no stderr)"])[-1]
        return {"error": f"exit {proc.returncode}: {tail[:400]}"}
    res = json.loads(found[-1].removeprefix("RESULT "))
    n = train_gpu.flop_params(shape)
    res["mfu"] = round(res["tokens_per_s"] * 4 * n / (peak * 1e12), 4) if peak else None
    return res


def _plain(model: Path, shape: str) -> dict:
    """The plain transformers + peft loop (padded 16, checkpointing) on `model`."""
    vocab = train_gpu.make_config(shape).vocab_size
    samples = train_gpu.synth_samples(2000, vocab)
    res = train_gpu.plain_loop(model, "lora", samples, 8, 2, "cuda")
    return {k: v for k, v in res.items() if k in ("tokens_per_s", "peak_gib")}


def markdown(report: dict) -> str:
    env = report["environment"]
    peak = env.get("bf16_matmul_tflops")
    lines = [
        f"Card: {env['card']} ×{env['gpus']} (measured bf16 matmul "
        f"{f'{peak:.0f}' if peak else '–'} TFLOP/s); torch {env['torch']}, transformers "
        f"{env['transformers']}, accelerate {env['accelerate']}, peft {env['peft']}, deepspeed "
        f"{env['deepspeed']}, bitsandbytes {env['bitsandbytes']}; {env['date']}.",
        "",
        "| case | engine × processes | tok/s | peak GiB | MFU | resumed: max weight diff, "
        "max loss diff | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    cases = report["cases"]
    for name, r in cases.items():
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} | | | | | |")
            continue
        tps = r.get("tokens_per_s")
        mfu = f"{100 * r['mfu']:.1f} %" if isinstance(r.get("mfu"), float) else "–"
        diff = r.get("resumed_max_abs_diff")
        ldiff = r.get("resumed_max_loss_diff")
        resumed = "–" if diff is None else f"{diff:.2e}, {ldiff if ldiff is not None else '–'}"
        note = r.get("error") or r.get("resume_error") or ""
        if r.get("earlier_attempts"):
            note = f"{note} (first try: {r['earlier_attempts'][0].get('error')})".strip()
        if r.get("error") and r.get("steps_logged"):
            note += f" — {r['steps_logged']} steps logged"
        lines.append(
            f"| {name} | {r.get('engine') or 'plain loop'} × {r.get('world_size') or 1} "
            f"| {f'{tps:,.0f}' if tps else '–'} | {r.get('peak_gib') or '–'} | {mfu} "
            f"| {resumed} | {note.replace('|', '/')} |"
        )
    for a, b, goal in RATIOS:
        ta, tb = (cases.get(x, {}).get("tokens_per_s") for x in (a, b))
        if ta and tb:
            lines.append(f"\n{a} / {b}: {ta / tb:.2f} (goal ≥ {goal})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
