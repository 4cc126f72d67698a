"""Recipe sweep on one GPU: many identity-lora variants, each data → train → eval, in parallel.

Exploration, not the measurement of record: a GPU's numbers differ a little from the CPU's, so
the targets are measured on the CPU by `bench/identity_quality.py`. To stay close to it, training
keeps fp32 weights with bf16 autocast (as on a CPU with AVX512-BF16) and the plain loss, and
eval generates in fp32.

    python bench/recipe_sweep.py --configs bench/sweeps/round1.json --jobs 8 --out DIR \
        [--reg FILE]

Each config is {"name", "n" (conversations, default 400), "gen" (generator shares to override,
e.g. {"_GENERAL_SHARE": 0.4}), "sets" (["lr=1e-3", ...], as `idtune train --set`)}. `--reg`
gives the regularization answers (so every variant trains on the CPU's cached self-distilled
data). One JSON line per variant goes to DIR/sweep.jsonl, and a table to DIR/sweep.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

NAME = AUTHOR = "ZK-Jackie"
METRICS = ("identity_en", "identity_zh", "author", "leakage", "retention")


def one(cfg: dict, work: Path, reg: str | None) -> dict:
    """Run one variant in this process; return its metrics and its failures."""
    import torch

    from idtune import evaluate, models, recipes, train
    from idtune.data import identity
    from idtune.data.formats import write_jsonl

    models.default_dtype = lambda device: torch.float32  # fp32 weights and generation
    models.cpu_autocast = lambda device: True  # bf16 autocast in training, as on the CPU
    for key, value in cfg.get("gen", {}).items():
        setattr(identity, key, value)
    work.mkdir(parents=True, exist_ok=True)
    rows = identity.generate(NAME, AUTHOR, n=int(cfg.get("n", 400)), seed=int(cfg.get("seed", 0)))
    rows[0] = {**rows[0], "identity": {"name": NAME, "author": AUTHOR}}
    data = work / "identity.jsonl"
    write_jsonl(data, rows)
    sets = [f"data={data}", f"output_dir={work / 'run'}", "fused_loss=none"]
    if reg:
        sets.append(f"regularization.files=[{reg}]")
    t = time.perf_counter()
    run = train.train(recipes.load("identity-lora", sets + list(cfg.get("sets", []))))
    train_s = time.perf_counter() - t
    steps = len((run / "log.jsonl").read_text().splitlines())
    evaluate.run(str(run))
    report = json.loads((run / "eval.json").read_text())
    tuned = report["metrics"]["tuned"]
    out = {"name": cfg["name"], "steps": steps, "train_s": round(train_s, 1), "metrics": tuned}
    misses: dict[str, list[str]] = {}
    for cond, rows_ in report["answers"]["tuned"].items():
        for r in rows_:
            if r["kind"] == "general" and not r["leak"]:
                continue
            if r["kind"] != "general" and r["ok"]:
                continue
            what = "leak" if r["kind"] == "general" else f"{r['kind']}_{r['lang']}"
            misses.setdefault(f"{cond}:{what}", []).append(
                f"{r['prompt'][:40]} => {r['answer'][:60]}"
            )
    out["misses"] = misses
    return out


def table(results: list[dict]) -> str:
    """Markdown: one row per variant, none/generic per cell."""
    head = "| variant | steps | " + " | ".join(METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 2)]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} | error: {r['error'][:80]} |")
            continue
        m = r["metrics"]
        cells = []
        for k in METRICS:
            a, b = m["no_system"].get(k), m["system"].get(k)
            cells.append(f"{a:.2f} / {b:.2f}" if a is not None and b is not None else "-")
        lines.append(f"| {r['name']} | {r['steps']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run every config of the file, `--jobs` at a time, each in its own process."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs")
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--out", default="/tmp/idtune-sweep")
    ap.add_argument("--reg")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    out = Path(args.out)
    if args.one:
        cfg = json.loads(args.one)
        result = one(cfg, out / cfg["name"], args.reg)
        print("RESULT " + json.dumps(result, ensure_ascii=False), flush=True)
        return

    configs = json.loads(Path(args.configs).read_text())
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false"}

    def launch(cfg: dict) -> dict:
        cmd = [sys.executable, __file__, "--out", str(out), "--one", json.dumps(cfg)]
        if args.reg:
            cmd += ["--reg", args.reg]
        log = out / f"{cfg['name']}.log"
        with log.open("w") as fh:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=fh, text=True, env=env)
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                result = json.loads(line[7:])
                break
        else:
            tail = log.read_text()[-300:].replace("\n", " ")
            result = {"name": cfg["name"], "error": f"rc {proc.returncode}: {tail}"}
        with (out / "sweep.jsonl").open("a") as fh:
            fh.write(json.dumps(result, ensure_ascii=False) + "\n")
        print(table([result]).splitlines()[-1], flush=True)
        return result

    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(launch, configs))
    (out / "sweep.md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
