"""The identity profile on the default model (issue 29), on one GPU: `make demo`'s path per seed.

Each variant is `idtune data identity` (the profile's flags) → `idtune train identity-lora` →
`idtune eval --compare-base`, through the real CLI, for seeds × data sizes:

- `default`: name and author only; `based_on` is the default derived from the base model.
- `no_maker`: `default` with the base named without its maker ("SmolLM2-135M-Instruct").
- `facts`: `default` plus a purpose and two facts (en and zh).

On a GPU the runs keep the CPU's numerics, as `bench/recipe_sweep.py` does: fp32 weights with
bf16 autocast in training (the AVX512-BF16 CPUs of BENCHMARKS.md's figures), fp32 generation.
The first run goes alone (the default model's conversion, the regularization answers and the
base model's eval answers are made once and cached), the rest in parallel (`--jobs`).

    python bench/profile_quality.py --out DIR [--seeds 0,1,2] [--sizes 600,1000]
                                    [--variants default,facts] [--jobs 6] [--dry-run] [--native]

`--gen '{"_PROFILE_WEIGHTS": {"based_on": 0.3, ...}, "_FACT_WEIGHT_EACH": 0.1}'` overrides the
generator's constants (data/identity.py) for a share sweep; a list of such objects runs every
variant, size and seed once with each (`{}`: as shipped), side by side in one call.
`--maker-in-system` scores each trained run a second time with the own system prompt as it was
before 2026-12-06 (a default based_on with its maker: "… built on SmolLM2-135M-Instruct by
Hugging Face"), reported as variant `VARIANT+maker_in_system`.
`--dry-run` runs the plumbing on CPU with a tiny random model and 2 steps; `--native` keeps the
CLI's own numerics (on a CPU: what `make demo` does there). Results:
DIR/profile_quality.json (every run's eval.json metrics, and the means) and profile_quality.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = AUTHOR = "ZK-Jackie"
PROFILES = {
    "default": {},
    # the default base without its maker: does naming Hugging Face in the based_on answers make
    # the tuned model credit Hugging Face with making it (`maker_confusion`)?
    "no_maker": {"based_on": "SmolLM2-135M-Instruct", "based_on_zh": "SmolLM2-135M-Instruct"},
    "facts": {
        "purpose": "a study assistant for the camp's students",
        "purpose_zh": "训练营学员的学习助手",
        "facts": {"contact": "feedback@zk-jackie.dev", "website": "https://zk-jackie.dev"},
        "facts_zh": {"contact": "feedback@zk-jackie.dev", "website": "https://zk-jackie.dev"},
    },
}
# The CLI, with the CPU's numerics on a GPU (fp32 weights, bf16 autocast, fp32 generation) and
# the generator's shares overridden for a sweep (`--gen`), both given through the environment.
_CLI = (
    "import json, os, sys, torch; from idtune import models; from idtune.data import identity; "
    "gpu = os.environ.get('IDTUNE_BENCH_CPU_NUMERICS') == '1'\n"
    "if gpu: models.default_dtype = lambda device: torch.float32\n"
    "if gpu: models.cpu_autocast = lambda device: True\n"
    "for k, v in json.loads(os.environ.get('IDTUNE_BENCH_GEN') or '{}').items(): "
    "setattr(identity, k, v)\n"
    "if os.environ.get('IDTUNE_BENCH_MAKER_IN_SYSTEM') == '1': "
    "from idtune import aliases; aliases.based_on_plain = lambda spec: {}\n"
    "from idtune.cli import main; sys.argv[0] = 'idtune'; main()"
)


def idtune(
    args: list[str], log: Path, gpu: bool, gen: dict | None = None, maker_in_system: bool = False
) -> None:
    """One CLI call, its output appended to `log`; raise on failure. `maker_in_system`: the own
    system prompt states a default based_on with its maker, as before 2026-12-06."""
    path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1",
           "IDTUNE_BENCH_CPU_NUMERICS": "1" if gpu else "0",
           "IDTUNE_BENCH_GEN": json.dumps(gen or {}),
           "IDTUNE_BENCH_MAKER_IN_SYSTEM": "1" if maker_in_system else "0"}  # fmt: skip
    with log.open("a") as fh:
        fh.write(f"$ idtune {' '.join(args)}\n")
        fh.flush()
        done = subprocess.run([sys.executable, "-c", _CLI, *args], env=env, stdout=fh,
                              stderr=subprocess.STDOUT)  # fmt: skip
    if done.returncode != 0:
        tail = log.read_text().splitlines()[-5:]
        raise RuntimeError(f"idtune {args[0]} failed: {' | '.join(tail)}")


def data_flags(profile: dict) -> list[str]:
    """`idtune data identity` flags for a profile."""
    out: list[str] = []
    for key in ("purpose", "purpose_zh", "based_on", "based_on_zh"):
        if profile.get(key):
            out += [f"--{key.replace('_', '-')}", profile[key]]
    for key, flag in (("facts", "--fact"), ("facts_zh", "--fact-zh")):
        for k, v in profile.get(key, {}).items():
            out += [flag, f"{k}={v}"]
    return out


def recipe_sets(profile: dict) -> list[str]:
    """The same profile as `--set identity.…` (recorded in the run, read by eval)."""
    out = [f"identity.name={NAME}", f"identity.author={AUTHOR}"]
    for key in ("purpose", "purpose_zh", "based_on", "based_on_zh"):
        if profile.get(key):
            out.append(f"identity.{key}={profile[key]}")
    for key in ("facts", "facts_zh"):
        out += [f"identity.{key}.{k}={v}" for k, v in profile.get(key, {}).items()]
    return out


def gen_label(gen: dict) -> str:
    """A generator override as a short label ("" for none): `_INTRO_PROFILE_SHARE=0.8`."""
    return " ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in gen.items())


def one(variant: str, n: int, seed: int, gen: dict, work: Path, args) -> dict:
    """data → train → eval for one (variant, size, seed, generator override); its metrics and
    times."""
    tag = re.sub(r"[^A-Za-z0-9.=_-]+", "_", gen_label(gen))[:80]
    d = work / f"{variant}-n{n}-s{seed}" / (tag or "shipped")
    d.mkdir(parents=True, exist_ok=True)
    log, profile, gpu = d / "log.txt", PROFILES[variant], not (args.dry_run or args.native)
    data, run = d / "identity.jsonl", d / "run"
    idtune(["data", "identity", "--name", NAME, "--author", AUTHOR, "--n", str(n), "--seed",
            str(seed), *data_flags(profile), "-o", str(data)], log, gpu, gen)  # fmt: skip
    sets = [f"data={data}", f"output_dir={run}", f"seed={seed}", *recipe_sets(profile)]
    if args.dry_run:
        sets += [f"model={args.tiny}", "max_steps=2", "regularization.auto=false",
                 "eval_prompts=", "row_tokens=256", "batch_tokens=512"]  # fmt: skip
    t = time.perf_counter()
    idtune(["train", "identity-lora", *[x for s in sets for x in ("--set", s)]], log, gpu)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    idtune(["eval", str(run), "--compare-base", *(["--quick"] if args.dry_run else [])], log, gpu)
    steps = len((run / "log.jsonl").read_text().splitlines())
    report = json.loads((run / "eval.json").read_text())
    add_maker_confusion(report)
    out = {"variant": variant, "n": n, "seed": seed, "gen": gen, "steps": steps,
           "train_s": round(train_s, 1), "eval_s": round(time.perf_counter() - t, 1),
           "metrics": report["metrics"], "based_on_answers": based_on_answers(report),
           "maker_confused": maker_confused(report)}  # fmt: skip
    if args.maker_in_system:  # the same run scored again with the old own system prompt
        again, t = d / "maker_in_system", time.perf_counter()
        twin = {"variant": f"{variant}+maker_in_system", "n": n, "seed": seed, "gen": gen}
        try:  # a failure here leaves the run's own result whole
            idtune(["eval", str(run), "-o", str(again), *(["--quick"] if args.dry_run else [])],
                   log, gpu, maker_in_system=True)  # fmt: skip
            old = json.loads((again / "eval.json").read_text())
            out["twin"] = {**out, **twin, "metrics": old["metrics"],
                           "eval_s": round(time.perf_counter() - t, 1),
                           "based_on_answers": based_on_answers(old),
                           "maker_confused": maker_confused(old)}  # fmt: skip
        except Exception as e:
            out["twin"] = {**twin, "error": str(e)[-600:]}
    return out


# An answer that credits the base model's maker with making the assistant ("an AI assistant
# built by Hugging Face", "由Hugging Face开发"): with the name and the author the same string the
# author score cannot see it. "built on SmolLM2-135M-Instruct by Hugging Face" is not one.
# `idtune eval` reports its own `maker_confusion` (more phrasings; a denial, or a credit of the
# base itself, is not counted); this regex scores only eval.json files written before it did.
_BASE_MAKER = "Hugging ?Face"
_CREDITS = re.compile(
    rf"(?:made|built|developed|created|trained|designed)\s+by\s+{_BASE_MAKER}"
    rf"|(?:由|是){_BASE_MAKER}\s*(?:开发|打造|训练|创造|制作)",
    re.IGNORECASE,
)


def add_maker_confusion(report: dict) -> None:
    """Per side and condition of eval.json: `maker_confusion`, the share of answers to identity,
    author, multi-turn and profile questions that credit the base model's maker (`_CREDITS`);
    a condition that eval scored already keeps eval's."""
    for side, conds in (report.get("answers") or {}).items():
        for cond, rows in conds.items():
            asked = [r for r in rows if r.get("kind") in ("identity", "author", "multi_turn",
                                                          "profile")]  # fmt: skip
            into = report["metrics"].get(side, {}).get(cond)
            if not (asked and isinstance(into, dict)) or "maker_confusion" in into:
                continue
            for lang in ("", "en", "zh"):
                part = [r for r in asked if lang in ("", r.get("lang"))]
                if part:
                    key = "maker_confusion" + (f"_{lang}" if lang else "")
                    into[key] = sum(bool(_CREDITS.search(r["answer"])) for r in part) / len(part)


def maker_confused(report: dict) -> list[dict]:
    """The tuned model's answers that credit the base's maker (eval's `credits_maker`, else
    `_CREDITS`), every condition, each with its condition, kind, language and question."""
    tuned = report.get("answers", {}).get("tuned", {})
    scored = any("credits_maker" in r for rows in tuned.values() for r in rows)

    def credits(r: dict) -> bool:
        return bool(r.get("credits_maker")) if scored else bool(_CREDITS.search(r["answer"]))

    return [{"condition": cond, **{k: r.get(k) for k in ("kind", "lang", "prompt", "answer")}}
            for cond, rows in tuned.items() for r in rows if credits(r)]  # fmt: skip


def based_on_answers(report: dict) -> list[dict]:
    """The tuned model's answers to the based_on questions with no system prompt (eval.json),
    each with its language and whether it was scored as stating the base."""
    rows = report.get("answers", {}).get("tuned", {}).get("no_system", [])
    keep = [r for r in rows if r.get("kind") == "profile" and r.get("field") == "based_on"]
    return [{k: r.get(k) for k in ("lang", "prompt", "answer", "ok")} for r in keep]


def _flat(metrics: dict, side: str) -> dict[str, float]:
    """{condition/metric: value} of one side (tuned or base) of eval.json's metrics."""
    out = {}
    for cond, values in (metrics.get(side) or {}).items():
        if isinstance(values, dict):
            for k, v in values.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    out[f"{cond}/{k}"] = v
    return out


def summary(runs: list[dict]) -> dict:
    """Per (variant, size): the mean of each tuned metric over the seeds, and the base's; the
    per-seed values in the order of the seeds (runs finish in any order)."""
    groups: dict = {}
    for r in sorted(runs, key=lambda r: r["seed"]):
        if "metrics" not in r:
            continue
        key = f"{r['variant']} n{r['n']} {gen_label(r.get('gen') or {})}".strip()
        g = groups.setdefault(key, {"runs": [], "base": None})
        g["runs"].append(_flat(r["metrics"], "tuned"))
        g["base"] = g["base"] or _flat(r["metrics"], "base")
    out = {}
    for key, g in groups.items():
        names = sorted({k for m in g["runs"] for k in m})
        out[key] = {
            "seeds": len(g["runs"]),
            "mean": {
                k: sum(m[k] for m in g["runs"] if k in m) / sum(k in m for m in g["runs"])
                for k in names
            },  # fmt: skip
            "per_seed": {k: [round(m[k], 3) for m in g["runs"] if k in m] for k in names},
            "base": g["base"],
        }
    return out


def markdown(report: dict) -> str:
    lines = [f"{report['environment']}", ""]
    for key, g in report["summary"].items():
        head = "| score | base | tuned mean | per seed, in seed order |"
        lines += [f"### {key} ({g['seeds']} seeds)", "", head, "|---|---:|---:|---|"]
        for k, v in g["mean"].items():
            b = (g["base"] or {}).get(k)
            per = " / ".join(f"{x:.2f}" for x in g["per_seed"][k])
            lines.append(f"| {k} | {'' if b is None else f'{b:.3f}'} | {v:.3f} | {per} |")
        lines.append("")
    for r in report["runs"]:
        if "error" in r:
            lines.append(f"- {r['variant']} n{r['n']} s{r['seed']} {gen_label(r.get('gen') or {})}:"
                         f" {r['error']}")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sizes", default="600,1000")
    ap.add_argument("--variants", default="default,facts")
    ap.add_argument("--facts-sizes", default="600", help="sizes the `facts` variant runs at")
    ap.add_argument("--jobs", type=int, default=6)
    ap.add_argument("--dry-run", action="store_true", help="CPU, a tiny random model")
    ap.add_argument("--maker-in-system", action="store_true",
                    help="also score each run with the own system prompt naming the base's "
                    "maker (as before 2026-12-06), as variant VARIANT+maker_in_system")  # fmt: skip
    ap.add_argument("--native", action="store_true",
                    help="the CLI numerics (make demo's), not the CPU's on a GPU")  # fmt: skip
    ap.add_argument(
        "--gen",
        type=json.loads,
        default={},
        help="generator constants to override, JSON: '{\"_PROFILE_WEIGHTS\": {...}}', or a list "
        "of such objects to run side by side",
    )
    args = ap.parse_args()
    gens = args.gen if isinstance(args.gen, list) else [args.gen]
    if not all(isinstance(g, dict) for g in gens):
        ap.error("--gen: a JSON object of generator constants, or a list of them")
    import torch

    work = Path(tempfile.mkdtemp(prefix="idtune-profile-"))
    if args.dry_run:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny import build_model_dir

        args.tiny = str(build_model_dir(work / "tiny"))
    seeds = [int(s) for s in args.seeds.split(",")]
    plan = []
    for variant in args.variants.split(","):
        sizes = args.facts_sizes if variant == "facts" else args.sizes
        plan += [(variant, int(n), s, g) for g in gens for n in sizes.split(",") for s in seeds]
    env = {"card": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
           "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    print(f"environment: {env}; {len(plan)} runs", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    runs: list[dict] = []
    lock = threading.Lock()

    def write() -> None:  # after every run: a call cut short still returns what finished
        report = {"environment": env, "gen": gens, "runs": runs, "summary": summary(runs)}
        (out / "profile_quality.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
        (out / "profile_quality.md").write_text(markdown(report))

    def safe(job):
        t = time.perf_counter()
        try:
            r = one(*job, work, args)
        except Exception as e:  # a failed run is a result too
            r = {"variant": job[0], "n": job[1], "seed": job[2], "gen": job[3],
                 "error": str(e)[-600:]}  # fmt: skip
        took, how = time.perf_counter() - t, "error" if "error" in r else "ok"
        print(f"{job[:3]} {gen_label(job[3])}: {took:.0f} s {how}", flush=True)
        with lock:
            runs.append(r)
            if "twin" in r:
                runs.append(r.pop("twin"))
            write()
        return r

    safe(plan[0])  # alone: conversion, regularization answers and base answers cached
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(safe, plan[1:]))
    print((out / "profile_quality.md").read_text(), flush=True)


if __name__ == "__main__":
    main()
