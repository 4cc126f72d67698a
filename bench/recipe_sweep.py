"""Recipe sweep on one GPU: many identity-lora variants, each data → train → eval, in parallel.

Exploration, not the measurement of record: a GPU's numbers differ a little from the CPU's, so
the targets are measured on the CPU by `bench/identity_quality.py`. To stay close to it, training
keeps fp32 weights with bf16 autocast (as on a CPU with AVX512-BF16) and the default (chunked)
loss, as on the CPU, and eval generates in fp32. Rounds 1-19 ran with the plain loss, which the
CPU used until then.

    python bench/recipe_sweep.py --configs bench/sweeps/round1.json --jobs 8 --out DIR \
        [--reg FILE]

Each config is {"name", "n" (conversations, default 400), "gen" (generator shares to override,
e.g. {"_GENERAL_SHARE": 0.4}; "near_miss.X" for a near_miss module constant), "sets" (["lr=1e-3",
...], as `idtune train --set`), "adapter_scale" (lora_B × this before eval)}. `--reg`
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

    from idtune import evaluate, models, recipes, regularize, train
    from idtune.data import identity, near_miss
    from idtune.data.formats import write_jsonl

    models.default_dtype = lambda device: torch.float32  # fp32 weights and generation
    models.cpu_autocast = lambda device: True  # bf16 autocast in training, as on the CPU
    for key, value in cfg.get("gen", {}).items():  # "_GENERAL_SHARE" or "near_miss._X"
        module, _, attr = key.rpartition(".")
        setattr(near_miss if module == "near_miss" else identity, attr, value)
    work.mkdir(parents=True, exist_ok=True)
    rows = identity.generate(NAME, AUTHOR, n=int(cfg.get("n", 400)), seed=int(cfg.get("seed", 0)))
    data = work / "identity.jsonl"
    write_jsonl(data, rows)
    sets = [f"data={data}", f"output_dir={work / 'run'}"]
    sets += [f"identity.name={NAME}", f"identity.author={AUTHOR}"]
    if reg:
        sets.append(f"regularization.files=[{reg}]")
    t = time.perf_counter()
    config = recipes.read_config("identity-lora", sets + list(cfg.get("sets", [])))
    run = train.train(config, distill=regularize.for_training)
    train_s = time.perf_counter() - t
    steps = len((run / "log.jsonl").read_text().splitlines())
    if cfg.get("adapter_scale", 1.0) != 1.0:  # LoRA strength: scale every lora_B before eval
        from safetensors.torch import load_file, save_file

        path = run / "adapter" / "adapter_model.safetensors"
        state = load_file(path)
        k = float(cfg["adapter_scale"])
        save_file({n: t * k if "lora_B" in n else t for n, t in state.items()}, path)
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
    out["near_miss_leak"] = near_miss_leak(run, data)
    return out


# Requests of the near-miss families about things the generator never names: a check of how far
# "answer the request, not with the name" carries beyond the training data. None is an eval probe
# or a phrasing the generator can emit (checked when they were written, 2026-11-28).
HELD_OUT_ZH = [
    "帮我的小刺猬起个名字。",
    "给小鸭子取个好听的名字吧。",
    "我新养了一只柯基，叫什么好？",
    "《论语》的作者是谁？",
    "《背影》是谁写的？",
    "谁写了《狂人日记》？",
    "《茶馆》的作者是谁？",
    "指南针是谁发明的？",
    "谁发明了造纸术？",
    "电灯是谁发明的？",
    "华为是谁创立的？",
    "百度的创始人是谁？",
    "给外婆写一句新年祝福的话。",
    "帮我写一条发给老板的感谢短信。",
    "给同桌写一句生日祝福的话。",
    "讲一个关于猴子的笑话。",
    "说个手机的笑话听听。",
    "介绍一下西湖。",
    "简单介绍一下黄山吧。",
    "你能帮我写一份请假条吗？",
]
HELD_OUT_EN = [
    "Suggest a name for my new hedgehog.",
    "What should I name my ferret?",
    "Who wrote Moby-Dick?",
    "Who is the author of Jane Eyre?",
    "Who invented the radio?",
    "Who founded Tesla?",
    "Write a short thank-you message for my aunt.",
    "Tell me a joke about penguins.",
    "Introduce the Eiffel Tower in one sentence.",
    "Can you help me write a packing list?",
]


def near_miss_leak(run: Path, data: Path | None) -> dict:
    """Share of near-miss requests answered with the name: held-out ones, and (given the
    identity data file) up to 40 per language that the run trained on."""
    from idtune import evaluate, generate, models
    from idtune.data import near_miss

    groups = {"held_out_zh": HELD_OUT_ZH, "held_out_en": HELD_OUT_EN}
    if data is not None:
        seen = {
            m["content"]
            for line in data.read_text().splitlines()
            for m in json.loads(line)["messages"]
            if m["role"] == "user"
        }
        groups |= {
            f"seen_{lang}": [q for q in near_miss.questions(lang) if q in seen][:40]
            for lang in ("zh", "en")
        }
    loaded = models.load(str(run))
    out = {}
    for key, prompts in groups.items():
        convs = [[{"role": "user", "content": p}] for p in prompts]
        answers = generate.generate_batch(
            loaded.model,
            loaded.tokenizer,
            convs,
            max_new_tokens=32,
            batch_size=40,
            template=loaded.template,
        )
        leaks = sum(evaluate.mentions(a, [NAME]) for a in answers)  # as the leakage metric
        out[key] = round(leaks / max(len(answers), 1), 2)
    return out


def table(results: list[dict]) -> str:
    """Markdown: one row per variant, none/generic per cell."""
    head = (
        "| variant | steps | "
        + " | ".join(METRICS)
        + " | base-default identity en | zh | persona override en | zh"
        + " | near-miss leak zh/en: seen, held-out |"
    )
    lines = [head, "|" + "---|" * (len(METRICS) + 7)]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} | error: {r['error'][:80]} |")
            continue
        m = r["metrics"]
        cells = []
        for k in METRICS:
            a, b = m["no_system"].get(k), m["system"].get(k)
            cells.append(f"{a:.2f} / {b:.2f}" if a is not None and b is not None else "-")
        base, persona = m.get("base_default") or {}, m.get("persona") or {}
        for k in ("identity_en", "identity_zh"):
            cells.append(f"{base[k]:.2f}" if base.get(k) is not None else "-")
        for k in ("persona_en", "persona_zh"):
            cells.append(f"{persona[k]:.2f}" if persona.get(k) is not None else "-")
        nm = r.get("near_miss_leak")
        if nm and "seen_zh" in nm:
            cells.append(
                f"{nm['seen_zh']:.2f}/{nm['seen_en']:.2f}, "
                f"{nm['held_out_zh']:.2f}/{nm['held_out_en']:.2f}"
            )
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
