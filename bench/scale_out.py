"""Scale-out benchmark: `idtune train` itself under each engine, with a checkpoint and a resume.

    python bench/scale_out.py --out DIR [--gpus N] [--cases a,b,...] [--budget 560] [--dry-run]

On the Qwen2.5-1.5B shape (random weights, built as bench/train_gpu.py builds them), each case runs
the real CLI (`python -m idtune.cli train …`, so DeepSpeed and FSDP2 start through accelerate's
launcher): 12 steps with a checkpoint at step 3, then the final adapter (or model) is put aside and
the run is resumed from step 3 (`--resume`); the table shows steady tokens/s (the median step of
steps 5–11 of the first run, from log.jsonl: past compilation, warm-up, step 4, whose logged time
includes writing the checkpoint, and the last step), peak GPU memory (idtune.json: max over
processes, model load included) and the largest difference between the resumed and the uninterrupted
weights. Cases: single-process, ZeRO-2 (LoRA, QLoRA), ZeRO-3 (LoRA, full), FSDP2 (LoRA, full), and
with --gpus N > 1 DDP too (every engine case then runs on N GPUs).

The 1.5B cases run compiled at 8,192 and 32,768 tokens a step (DeepSpeed's optimizer step has a
fixed host cost). The Qwen2.5-7B LoRA bf16 cases (4×2048-token rows, compiled, no gradient
checkpointing): single-process and ZeRO-2 through the CLI, and bench/train_gpu.py's plain
transformers + peft loop on the same model; MFU = tokens/s × 4·N / the measured bf16 matmul peak.

Every case has a time cap and the whole run a budget (--budget seconds): cases that would start too
late are reported as skipped, so one call of at most 10 minutes always ends with the table. Results:
DIR/scale_out.json and DIR/scale_out.md. `--dry-run` runs the same plumbing on CPU with a tiny shape
(cases that need CUDA are reported as skipped).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

import train_gpu  # noqa: E402

GIB = 2**30
# name: (shape, method, engine flags, extra --set overrides); "speed" cases skip the resume
BIG = ["batch_tokens=32768", "speed"]  # 16 rows of 2048 a step: DeepSpeed's per-step host cost
CASES = {
    "single-lora-32k": ("qwen2.5-1.5b", "lora", [], ["compile=true", *BIG]),
    "zero2-lora-32k": ("qwen2.5-1.5b", "lora", ["--deepspeed", "zero2"], ["compile=true", *BIG]),
    "7b-single-lora": ("qwen2.5-7b", "lora", [], ["compile=true", "speed"]),
    "7b-zero2-lora": ("qwen2.5-7b", "lora", ["--deepspeed", "zero2"], ["compile=true", "speed"]),
    "7b-single-lora-d0": ("qwen2.5-7b", "lora", [], ["compile=true", "lora.dropout=0", "speed"]),
    "single-lora": ("qwen2.5-1.5b", "lora", [], ["compile=true"]),
    "zero2-lora": ("qwen2.5-1.5b", "lora", ["--deepspeed", "zero2"], ["compile=true"]),
    "7b-plain-loop": ("qwen2.5-7b", "lora", None, []),  # bench/train_gpu.py's baseline
    "zero2-qlora": ("qwen2.5-1.5b", "qlora", ["--deepspeed", "zero2"], []),
    "zero3-lora": ("qwen2.5-1.5b", "lora", ["--deepspeed", "zero3"], []),
    "fsdp-lora": ("qwen2.5-1.5b", "lora", ["--fsdp"], []),
    "zero3-full": ("qwen2.5-1.5b", "full", ["--deepspeed", "zero3"], ["lr=1e-5"]),
    "fsdp-full": ("qwen2.5-1.5b", "full", ["--fsdp"], ["lr=1e-5"]),
    "ddp-lora": ("qwen2.5-1.5b", "lora", ["--gpus"], []),  # only with --gpus N > 1
}
CUDA_ONLY = ("qlora", "--fsdp")
STEPS, SAVE = 12, 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for scale_out.json / .md")
    ap.add_argument("--gpus", type=int, default=1, help="processes (GPUs) for the engine cases")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    ap.add_argument("--budget", type=float, default=560, help="seconds for the whole run")
    ap.add_argument("--case-cap", type=float, default=240, help="seconds for one case at most")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny shape: test the plumbing")
    args = ap.parse_args()
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available() and not args.dry_run
    env = {"card": torch.cuda.get_device_name() if cuda else "cpu",
           "date": datetime.date.today().isoformat(), "gpus": args.gpus,
           **train_gpu.versions(), "deepspeed": _version("deepspeed")}  # fmt: skip
    env["bf16_matmul_tflops"] = train_gpu.matmul_peak_tflops() if cuda else float("nan")
    print(f"environment: {env}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="idtune-scale-"))
    report = {"environment": env, "cases": {}}
    models: dict[str, Path] = {}
    try:
        data = work / "identity.jsonl"
        _idtune(["data", "identity", "--name", "Nova", "--author", "Acme", "--n", "3200",
                 "-o", data], 120)  # fmt: skip
        for name in args.cases.split(","):
            shape, method, flags, sets = CASES[name]
            if args.dry_run:
                shape = "tiny"
            left = args.budget - (time.perf_counter() - start)
            skip = _skip_reason(name, method, flags, cuda, args.gpus, left)
            if skip:
                report["cases"][name] = {"skipped": skip}
                print(f"== {name}: skipped ({skip})", flush=True)
                continue
            cap = min(args.case_cap, left)
            t = time.perf_counter()
            try:
                if shape not in models:
                    models[shape] = train_gpu.save_random_model(
                        shape, work / shape, "cuda" if cuda else "cpu"
                    )
                if flags is None:
                    res = _plain(models[shape], shape, cuda, env["bf16_matmul_tflops"])
                else:
                    flags = ["--gpus", str(args.gpus)] if flags == ["--gpus"] else list(flags)
                    if args.gpus > 1 and "--gpus" not in flags and flags:
                        flags += ["--gpus", str(args.gpus)]
                    res = _case(models[shape], data, work / name, shape, method, flags, sets,
                                cap, cuda, env["bf16_matmul_tflops"], args.dry_run)  # fmt: skip
            except Exception as e:  # one failing case must not lose the others
                res = {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"}
            res["wall_s"] = round(time.perf_counter() - t, 1)
            report["cases"][name] = res
            print(f"== {name}: {res}", flush=True)
            (out / "scale_out.json").write_text(json.dumps(report, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    md = markdown(report)
    (out / "scale_out.json").write_text(json.dumps(report, indent=1))
    (out / "scale_out.md").write_text(md + "\n")
    print("\n" + md, flush=True)


def _version(pkg: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return None


def _skip_reason(name, method, flags, cuda, gpus, left) -> str | None:
    if left < 30:
        return "time budget"
    if not cuda and (method in CUDA_ONLY or (flags and CUDA_ONLY[1] in flags)):
        return "needs CUDA"
    if flags and "--deepspeed" in flags and _version("deepspeed") is None:
        return "deepspeed not installed"
    if method == "qlora" and _version("bitsandbytes") is None:
        return "bitsandbytes not installed"
    if name == "ddp-lora" and gpus < 2:
        return "needs --gpus 2 or more"
    return None


def _idtune(args: list, timeout: float) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "idtune.cli", *map(str, args)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise RuntimeError(f"exit {proc.returncode}: {tail}")
    return proc


def _case(model, data, run, shape, method, flags, sets, cap, cuda, peak, dry) -> dict:
    """One engine: STEPS steps (checkpoint at SAVE), then resume from there; compare weights."""
    rows = (
        ["row_tokens=512", "batch_tokens=1024"] if dry else ["row_tokens=2048", "batch_tokens=8192"]
    )
    sets = [f"model={model}", f"data={data}", f"output_dir={run}", "regularization.auto=false",
            "eval_prompts=", f"method={method}", f"max_steps={STEPS}", f"save_steps={SAVE}",
            "keep_last=1", "lora.r=64", "lora.alpha=128", *rows, *sets]  # fmt: skip
    speed = "speed" in sets  # measures speed only: no resume
    sets = [s for s in sets if s != "speed" and not (dry and s == "compile=true")]
    args = ["train", "identity-lora", *[x for s in sets for x in ("--set", s)], *flags]
    t0 = time.perf_counter()
    _idtune(args, cap)
    final = run / ("model" if method == "full" else "adapter")
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    settings = json.loads((run / "idtune.json").read_text())["settings"]
    tps, rates = steady_rate(log)
    n = train_gpu.flop_params(shape)
    res = {
        "engine": settings.get("engine"),
        "world_size": settings.get("world_size"),
        "method": method,
        "tokens_per_s": round(tps, 1),
        "peak_gib": settings.get("peak_gpu_gib"),
        "mfu": tps * (6 if method == "full" else 4) * n / (peak * 1e12) if peak == peak else None,
        "loss_first_last": [log[0]["loss"], log[-1]["loss"]],
        "first_run_s": round(time.perf_counter() - t0, 1),
        "step_tokens_per_s": rates,
    }
    if speed:
        shutil.rmtree(run, ignore_errors=True)
        return res  # the 7B cases measure speed only
    final.rename(run / "uninterrupted")
    _idtune([*args, "--resume"], max(30.0, cap - (time.perf_counter() - t0)))
    res["resumed_max_abs_diff"] = _max_diff(run / "uninterrupted", final)
    shutil.rmtree(run, ignore_errors=True)  # full fine-tunes leave tens of GB behind
    return res


def steady_rate(log: list[dict]) -> tuple[float, list[float]]:
    """Median tokens/s of the steps between the checkpoint's and the last: steps 1-2 compile,
    step SAVE + 1 includes writing the checkpoint, the last can be an epoch's short batch (a new
    shape, recompiled). Each step's rate is its tokens over its own time from log.jsonl."""
    import statistics

    rates = [
        log[i]["tokens"] / (log[i]["elapsed_s"] - log[i - 1]["elapsed_s"])
        for i in range(SAVE + 1, len(log) - 1)
        if log[i]["elapsed_s"] > log[i - 1]["elapsed_s"]
    ]
    return (statistics.median(rates) if rates else float("nan")), [round(r) for r in rates]


def _max_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    worst = 0.0
    for f in sorted(a.glob("*.safetensors")):
        x, y = load_file(f), load_file(b / f.name)
        worst = max([worst, *(float((x[k].float() - y[k].float()).abs().max()) for k in x)])
    return worst


def _plain(model, shape, cuda, peak) -> dict:
    """bench/train_gpu.py's plain transformers + peft loop (padded 16, checkpointing)."""
    vocab = train_gpu.make_config(shape).vocab_size
    samples = train_gpu.synth_samples(2000, vocab)
    device = "cuda" if cuda else "cpu"
    res = train_gpu.plain_loop(model, "lora", samples, 8 if cuda else 1, 2 if cuda else 1, device)
    n = train_gpu.flop_params(shape)
    res["mfu"] = res["tokens_per_s"] * 4 * n / (peak * 1e12) if peak == peak else None
    return {k: v for k, v in res.items() if k in ("tokens_per_s", "peak_gib", "mfu")}


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [
        f"Card: {env['card']} ×{env['gpus']} (measured bf16 matmul "
        f"{env['bf16_matmul_tflops']:.0f} TFLOP/s); torch {env['torch']}, transformers "
        f"{env['transformers']}, accelerate {env['accelerate']}, peft {env['peft']}, deepspeed "
        f"{env['deepspeed']}, bitsandbytes {env['bitsandbytes']}; {env['date']}.",
        "",
        "| case | engine × processes | tok/s | peak GiB | MFU | resumed vs uninterrupted |",
        "|---|---|---:|---:|---:|---:|",
    ]
    cases = report["cases"]
    for name, r in cases.items():
        if "skipped" in r or "error" in r:
            lines.append(f"| {name} | {r.get('skipped') or r['error']} | | | | |")
            continue
        mfu = f"{100 * r['mfu']:.1f} %" if isinstance(r.get("mfu"), float) else "–"
        diff = r.get("resumed_max_abs_diff")
        lines.append(
            f"| {name} | {r.get('engine', 'plain loop')} × {r.get('world_size', 1)} "
            f"| {r['tokens_per_s']:,.0f} | {r.get('peak_gib') or '–'} | {mfu} "
            f"| {'–' if diff is None else f'{diff:.2e}'} |"
        )
    ratios = [("zero2-lora", "single-lora", 0.8), ("7b-zero2-lora", "7b-single-lora", 0.8)]
    for a, b, goal in ratios:
        ta, tb = (cases.get(x, {}).get("tokens_per_s") for x in (a, b))
        if ta and tb:
            lines.append(f"\n{a} / {b}: {ta / tb:.2f} (goal ≥ {goal})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
