"""Current families on the GPU: `idtune train` on a random-init Qwen3-8B and Qwen3-30B-A3B shape.

    python bench/families_gpu.py --out DIR [--cases qwen3-8b,qwen3-30b-a3b] [--steps 12]
                                 [--dry-run]

Each case writes a random-initialised model of the real architecture (transformers' Qwen3 /
Qwen3-MoE classes, bf16) with Qwen3's real chat template (tests/data/templates/qwen3.jinja) and
the tests' small tokenizer, makes identity data with `idtune data identity`, then, in the same
call:

- idtune: the real CLI, `python -m idtune.cli train identity-lora-qwen3-8b --set model=DIR …`
  (the recipe's settings: 8 rows of 2048 tokens a step, compiled), `--steps` steps; tokens/s is
  the median step after the first three (compilation and warm-up), from log.jsonl; peak memory
  from the run's idtune.json (model load included).
- baseline: bench/train_gpu.py's plain transformers + peft loop on the same model and the same
  conversations rendered by the same template (padded batches of 16, gradient checkpointing),
  with the LoRA targets idtune chose (attention only for the MoE: the router and experts stay).

The Qwen3-30B-A3B shape keeps the real layer (2048 wide, 128 experts, 8 active, 768 wide each)
but 12 of its 48 layers, so that it is written to and read from this machine's disk in minutes;
its MFU counts active parameters (attention, the router, 8 of 128 experts, the LM head).
MFU = tokens/s × 4·N / the measured bf16 matmul peak (DESIGN §6). `--dry-run` runs the same
plumbing on CPU with tiny shapes. Results: DIR/families_gpu.json and DIR/families_gpu.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import train_gpu  # noqa: E402

GIB = 2**30
QWEN3 = dict(
    vocab_size=151936, num_attention_heads=32, head_dim=128, rope_theta=1000000.0,
    max_position_embeddings=40960, rms_norm_eps=1e-6, tie_word_embeddings=False,
)  # fmt: skip
SHAPES = {
    "qwen3-8b": dict(
        model_type="qwen3", **QWEN3, hidden_size=4096, intermediate_size=12288,
        num_hidden_layers=36, num_key_value_heads=8,
    ),
    "qwen3-30b-a3b": dict(  # 12 of the 48 layers
        model_type="qwen3_moe", **QWEN3, hidden_size=2048, intermediate_size=6144,
        moe_intermediate_size=768, num_experts=128, num_experts_per_tok=8, norm_topk_prob=True,
        num_hidden_layers=12, num_key_value_heads=4,
    ),
    "tiny": dict(model_type="qwen3", vocab_size=4096, hidden_size=64, intermediate_size=128,
                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16),
    "tiny-moe": dict(model_type="qwen3_moe", vocab_size=4096, hidden_size=64,
                     intermediate_size=128, moe_intermediate_size=32, num_experts=8,
                     num_experts_per_tok=2, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16),
}  # fmt: skip
TINY = {"qwen3-8b": "tiny", "qwen3-30b-a3b": "tiny-moe"}
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


def config(shape: str):
    from transformers import AutoConfig

    spec = dict(SHAPES[shape])
    return AutoConfig.for_model(spec.pop("model_type"), **spec)


def save_model(shape: str, out: Path, device: str) -> Path:
    """Random weights of `shape` (bf16 on the GPU) + the small tokenizer with Qwen3's template."""
    from tiny import build_tokenizer
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config(shape), dtype=dtype)
    model.save_pretrained(out)
    del model
    train_gpu.free()
    tok = build_tokenizer()
    tok.chat_template = (ROOT / "tests" / "data" / "templates" / "qwen3.jinja").read_text("utf-8")
    tok.save_pretrained(out)
    return out


def active_params(shape: str) -> tuple[int, int]:
    """(N, N active): non-embedding parameters + LM head; active counts top-k of the experts."""
    from transformers import AutoModelForCausalLM

    cfg = config(shape)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    n = active = 0
    share = getattr(cfg, "num_experts_per_tok", 1) / max(getattr(cfg, "num_experts", 1), 1)
    for name, p in model.named_parameters():
        if "embed_tokens" in name:
            continue
        n += p.numel()
        active += p.numel() * (share if ".experts." in name else 1)
    return n, int(active)


def idtune(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1",
           "TORCH_LOGS": "recompiles"}  # fmt: skip
    cmd = [sys.executable, "-m", "idtune.cli", *args]
    print("$ idtune " + " ".join(args), flush=True)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", flush=True)
    return done


def run_case(case: str, shape: str, work: Path, data: Path, args, device: str) -> dict:
    t0 = time.perf_counter()
    path = save_model(shape, work / shape, device)
    res: dict = {"shape": shape, "model_written_s": round(time.perf_counter() - t0, 1)}
    n, active = active_params(shape)
    res.update(n_flop_params=n, n_active_params=active)
    moe = "moe" in SHAPES[shape]["model_type"]
    # ---- idtune, through the CLI
    run = work / f"run-{shape}"
    sets = [
        f"model={path}", f"data={data}", f"output_dir={run}", "regularization.auto=false",
        f"max_steps={args.steps}", "save_steps=0", "eval_prompts=", "val_share=0",
        "identity.name=Nova", "identity.author=Acme",
    ]  # fmt: skip
    if device != "cuda":
        sets += ["compile=false", "row_tokens=256", "batch_tokens=1024"]
    sets += args.set
    res["extra_sets"] = args.set
    t = time.perf_counter()
    done = idtune(
        "train", "identity-lora-qwen3-8b", *[x for s in sets for x in ("--set", s)],
        timeout=args.case_timeout,
    )  # fmt: skip
    res["idtune_wall_s"] = round(time.perf_counter() - t, 1)
    if done.returncode == 0:
        log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
        steps = [e for e in log if "tokens_per_s" in e and "step" in e]
        # each step's own rate (its tokens over its own time): log.jsonl's tokens_per_s is the
        # run's mean so far, compilation included; steps 1-3 compile, the last may be short
        rates = [
            steps[i]["tokens"] / (steps[i]["elapsed_s"] - steps[i - 1]["elapsed_s"])
            for i in range(1, len(steps))
            if steps[i]["elapsed_s"] > steps[i - 1]["elapsed_s"]
        ]
        steady = rates[3:-1] or rates or [steps[-1]["tokens_per_s"]]
        info = json.loads((run / "idtune.json").read_text())
        res["idtune"] = {
            "tokens_per_s": statistics.median(steady),
            "peak_gib": info.get("settings", {}).get("peak_gpu_gib"),
            "steps": len(steps),
            "loss_first_last": [steps[0]["loss"], steps[-1]["loss"]],
            "step_tokens_per_s": [round(r) for r in rates],
            "recompiles": done.stderr.count("Recompiling function"),
        }
        from safetensors import safe_open

        with safe_open(run / "adapter" / "adapter_model.safetensors", "pt") as f:
            res["lora_modules"] = sorted(
                {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in f.keys()}
            )
    else:
        res["idtune"] = {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    if args.no_baseline:
        shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)
        return res
    # ---- the plain transformers + peft loop, same model, same conversations
    from transformers import AutoTokenizer

    from idtune.data import formats, render

    tok = AutoTokenizer.from_pretrained(path)
    convs = formats.load_files([str(data)])
    samples = [render.render(tok, c, max_length=2048) for c in convs]
    targets = ATTENTION if moe else "all-linear"
    t = time.perf_counter()
    try:
        res["baseline"] = train_gpu.plain_loop(
            path, "lora", samples, args.steps if device == "cuda" else 1, 3 if device == "cuda"
            else 1, device, target_modules=targets,
        )  # fmt: skip
    except Exception as e:  # an OOM in the plain loop is a result too
        res["baseline"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    res["baseline_wall_s"] = round(time.perf_counter() - t, 1)
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(run, ignore_errors=True)
    return res


def markdown(report: dict) -> str:
    env = report["environment"]
    peak = env["bf16_matmul_tflops"]
    lines = [
        f"{env['card']}, torch {env['torch']}, transformers {env['transformers']}, "
        f"peft {env['peft']}, {env['date']}; bf16 matmul peak {peak:.0f} TFLOP/s",
        "",
        "| case | N (active) | idtune tok/s | MFU | peak GiB | plain loop tok/s | MFU | peak GiB "
        "| × | LoRA on |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in report["cases"].items():
        a, b = r.get("idtune", {}), r.get("baseline", {})

        def mfu(x: dict, active: int = r["n_active_params"]) -> str:
            tps = x.get("tokens_per_s")
            return f"{tps * 4 * active / (peak * 1e12) * 100:.1f} %" if tps else "–"

        def num(x: dict, k: str, f: str) -> str:
            return format(x[k], f) if isinstance(x.get(k), (int, float)) else x.get("error", "–")

        ratio = (
            f"{a['tokens_per_s'] / b['tokens_per_s']:.2f}"
            if a.get("tokens_per_s") and b.get("tokens_per_s")
            else "–"
        )
        lines.append(
            f"| {name} | {r['n_flop_params'] / 1e9:.2f}B ({r['n_active_params'] / 1e9:.2f}B) "
            f"| {num(a, 'tokens_per_s', ',.0f')} | {mfu(a)} | {num(a, 'peak_gib', '.1f')} "
            f"| {num(b, 'tokens_per_s', ',.0f')} | {mfu(b)} | {num(b, 'peak_gib', '.1f')} "
            f"| {ratio} | {', '.join(r.get('lora_modules', []))} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="qwen3-8b,qwen3-30b-a3b")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--case-timeout", type=float, default=400.0)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes")
    ap.add_argument("--set", action="append", default=[], help="extra idtune --set KEY=VALUE")
    ap.add_argument("--no-baseline", action="store_true", help="idtune only")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    env = {
        "card": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "date": datetime.date.today().isoformat(),
        **train_gpu.versions(),
        "bf16_matmul_tflops": train_gpu.matmul_peak_tflops() if device == "cuda" else 1.0,
    }
    print(f"environment: {env}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="idtune-families-"))
    report: dict = {"environment": env, "cases": {}}
    try:
        data = work / "identity.jsonl"
        n = "3000" if device == "cuda" else "60"
        assert idtune("data", "identity", "--name", "Nova", "--author", "Acme", "--n", n,
                      "-o", str(data), timeout=600).returncode == 0  # fmt: skip
        for case in args.cases.split(","):
            shape = case if device == "cuda" else TINY[case]
            print(f"\n== {case} (shape {shape}) ==", flush=True)
            report["cases"][case] = run_case(case, shape, work, data, args, device)
            print(json.dumps(report["cases"][case]), flush=True)
            (out / f"families_gpu{args.tag}.json").write_text(json.dumps(report, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = markdown(report)
    (out / f"families_gpu{args.tag}.md").write_text(text)
    (out / f"families_gpu{args.tag}.json").write_text(json.dumps(report, indent=1))
    print("\n" + text, flush=True)


if __name__ == "__main__":
    main()
