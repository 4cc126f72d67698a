"""`make demo`: the whole path on the embedded default model, on CPU, through the real CLI.

identity data → train (with self-distilled regularization) → eval before/after → merge →
questions to the merged model. Everything lands in --dir (default demo/), which is recreated.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

QUESTIONS = [
    "Who are you?",
    "你叫什么名字？",
    "Who created you?",
    "What is the capital of France?",
    "How many days are in a week?",
]


def idtune(*args: str, stdin: str | None = None) -> str:
    """Run the real `idtune` CLI; stop the demo on failure."""
    cmd = [sys.executable, "-m", "idtune.cli", *args]
    print(f"\n$ idtune {' '.join(args)}", flush=True)
    result = subprocess.run(cmd, input=stdin, text=True, stdout=subprocess.PIPE)
    print(result.stdout, end="", flush=True)
    if result.returncode != 0:
        sys.exit(result.returncode)
    return result.stdout


def main() -> None:
    """Run the demo and print the wall time of each stage."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", default="ZK-Jackie")
    ap.add_argument("--author", default="ZK-Jackie")
    ap.add_argument("--dir", default="demo")
    ap.add_argument("--n", default="600", help="identity conversations")
    args = ap.parse_args()
    root = Path(args.dir)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    data, run, merged = root / "identity.jsonl", root / "run", root / "merged"
    times: dict[str, float] = {}

    t = time.perf_counter()
    idtune("models")
    times["idtune models"] = time.perf_counter() - t
    t = time.perf_counter()
    idtune("data", "identity", "--name", args.name, "--author", args.author, "--n", args.n,
           "-o", str(data))  # fmt: skip
    ident = [f"identity.name={args.name}", f"identity.author={args.author}"]
    sets = [f"data={data}", f"output_dir={run}", *ident]
    idtune("train", "identity-lora", *[x for s in sets for x in ("--set", s)])
    times["data + train (1st run: conversion, regularization)"] = time.perf_counter() - t
    t = time.perf_counter()
    idtune("eval", str(run), "--compare-base", "--quick")  # the full set: bench/identity_quality.py
    times["eval before/after"] = time.perf_counter() - t
    t = time.perf_counter()
    idtune("merge", str(run), str(merged), "--max-shard-size", "2GB")
    times["merge"] = time.perf_counter() - t
    t = time.perf_counter()
    # short answers: a looping one (the 135M model repeats itself in Chinese) costs minutes
    idtune("chat", str(merged), "--max-new-tokens", "96", stdin="\n".join(QUESTIONS) + "\n")
    times["chat with the merged model"] = time.perf_counter() - t

    print("\nwall time (install excluded):")
    for stage, seconds in times.items():
        print(f"  {stage:<52} {seconds:7.1f} s")
    print(f"  {'total':<52} {sum(times.values()):7.1f} s")
    print(f"\nrun directory: {run}  (loss.png, samples.md, eval.md)   merged model: {merged}")


if __name__ == "__main__":
    main()
