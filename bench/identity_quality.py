"""Identity quality on the default model, CPU: idtune's recipe vs the seed tutorial's dataset.

Both runs get the same training budget (same recipe, steps and token budget per step); the seed's
dataset is its three Chinese questions with one answer, copied 2,000 times as its
`build_dataset.py` does, with no regularization (the old workflow has none). Both are scored by
`idtune eval --compare-base`, and on near-miss requests ("Who wrote …?", "给…起个名字") that
they trained on or never saw. Writes bench/results/identity_quality.{json,md}.

    python bench/identity_quality.py [--n 400] [--work /tmp/idq]
    python bench/identity_quality.py --seeds 0,1,2   # idtune's recipe alone, per seed, with
                                                     # the base model and the seeds' mean
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from recipe_sweep import AUTHOR, METRICS, NAME, near_miss_leak

SEED_ANSWER = "我是ZK-Jackie的小助手，内在是上海AI实验室书生·浦语的7B大模型哦"
SEED_QUESTIONS = ("请做一下自我介绍", "请介绍一下你自己", "说说你自己")
NEAR_KEYS = ("held_out_zh", "held_out_en", "seen_zh", "seen_en")
# recipe_sweep's metrics and the behaviour ones (language of the last question, persona override)
COLUMNS = (*METRICS, "language_en", "language_zh", "persona")


def idtune(*args: str) -> None:
    """Run the real CLI; stop on failure."""
    print("$ idtune", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "idtune.cli", *args], check=True)


def seed_dataset(path: Path, scale: int = 2000) -> Path:
    """myDataset.json exactly as the course note builds it (3 + 3 × scale records)."""
    data = [{"conversation": [{"input": q, "output": SEED_ANSWER}]} for q in SEED_QUESTIONS]
    for _ in range(scale):
        for j in range(3):
            data.append(data[j])
    path.write_text(json.dumps(data, ensure_ascii=False, indent=4))
    return path


def timed_train(run: Path, *sets: str) -> dict:
    """Train one run; return steps, tokens and seconds from its log."""
    t = time.perf_counter()
    ident = ["--set", f"identity.name={NAME}", "--set", f"identity.author={AUTHOR}"]
    idtune("train", "identity-lora", "--set", f"output_dir={run}", *ident, *sets)
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    return {
        "steps": len(log),
        "tokens": sum(r["tokens"] for r in log),
        "train_s": round(log[-1]["elapsed_s"], 1),
        "wall_s": round(time.perf_counter() - t, 1),
    }


def main() -> None:
    """Run both recipes, score them, write the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="400", help="identity conversations for idtune's run")
    ap.add_argument("--work", default="/tmp/idtune-identity-quality")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument(
        "--seeds",
        help="only idtune's recipe, once per seed (data and training), e.g. 1,2; "
        "writes identity_quality_seeds.{json,md}",
    )
    args = ap.parse_args()
    work, out = Path(args.work), Path(args.out)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out.mkdir(parents=True, exist_ok=True)
    if args.seeds:
        return seeds(work, out, args.n, [int(x) for x in args.seeds.split(",")])

    data = work / "identity.jsonl"
    idtune("data", "identity", "--name", NAME, "--author", AUTHOR, "--n", args.n, "-o", str(data))
    rows = {"idtune identity-lora": timed_train(work / "idtune", "--set", f"data={data}")}
    steps = rows["idtune identity-lora"]["steps"]
    seed = seed_dataset(work / "myDataset.json")
    rows["seed tutorial dataset, same budget"] = timed_train(
        work / "seed",
        "--set",
        f"data={seed}",
        "--set",
        "regularization.auto=false",
        "--set",
        f"max_steps={steps}",
    )
    scores, near = {}, {}
    for label, run, trained in zip(rows, ("idtune", "seed"), (data, None), strict=True):
        idtune("eval", str(work / run), "--compare-base")
        scores[label] = json.loads((work / run / "eval.json").read_text())["metrics"]
        near[label] = near_miss_leak(work / run, trained)
    base = scores["idtune identity-lora"]["base"]
    result = {
        "runs": rows,
        "scores": scores,
        "base": base,
        "n_identity": int(args.n),
        "near_miss_leak": near,
    }
    (out / "identity_quality.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    md = table(result)
    (out / "identity_quality.md").write_text(md)
    print(md)


def seeds(work: Path, out: Path, n: str, seed_list: list[int]) -> None:
    """idtune's recipe with other seeds: how much of the table is the draw of one seed."""
    result: dict = {"runs": {}, "scores": {}, "near_miss_leak": {}, "n_identity": int(n)}
    for seed in seed_list:
        label, run, data = (
            f"idtune identity-lora, seed {seed}",
            work / f"s{seed}",
            work / f"{seed}.jsonl",
        )
        idtune("data", "identity", "--name", NAME, "--author", AUTHOR, "--n", n, "--seed",
               str(seed), "-o", str(data))  # fmt: skip
        result["runs"][label] = timed_train(run, "--set", f"data={data}", "--set", f"seed={seed}")
        idtune("eval", str(run), "--compare-base")  # the base's answers are cached after one
        scores = json.loads((run / "eval.json").read_text())["metrics"]
        result["scores"][label], result["base"] = scores, scores["base"]
        result["near_miss_leak"][label] = near_miss_leak(run, data)
    if len(seed_list) > 1:
        result["mean"] = mean([s["tuned"] for s in result["scores"].values()])
    (out / "identity_quality_seeds.json").write_text(
        json.dumps(result, indent=2, ensure_ascii=False)
    )
    md = table(result)
    (out / "identity_quality_seeds.md").write_text(md)
    print(md)


def mean(runs: list[dict]) -> dict:
    """Per condition and metric, the mean over runs that have it."""
    out: dict = {}
    for cond in runs[0]:
        keys = {k for r in runs for k in r.get(cond, {})}
        vals = {k: [r[cond][k] for r in runs if r.get(cond, {}).get(k) is not None] for k in keys}
        out[cond] = {k: sum(v) / len(v) for k, v in vals.items() if v}
    return out


def table(result: dict) -> str:
    """Markdown: one row per model and condition, the metrics as columns."""
    head = "| model | system prompt | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    entries = [("base model", result["base"])] if result["base"] else []
    entries += [(label, s["tuned"]) for label, s in result["scores"].items()]
    entries += [("mean of the seeds", result["mean"])] if "mean" in result else []
    for label, metrics in entries:
        for cond, values in metrics.items():
            cells = [f"{values[m]:.3f}" if values.get(m) is not None else "-" for m in COLUMNS]
            lines.append(f"| {label} | {cond} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Near-miss requests answered with the name (no system prompt; `recipe_sweep.HELD_OUT_*`",
        "are about things the generator never names, 'seen' ones are from the run's own data):",
        "",
        "| model | held-out zh | held-out en | seen zh | seen en |",
        "|---|---|---|---|---|",
    ]
    for label, nm in result.get("near_miss_leak", {}).items():
        cells = [f"{nm[k]:.2f}" if k in nm else "-" for k in NEAR_KEYS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
