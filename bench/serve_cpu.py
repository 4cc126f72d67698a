"""Serving throughput on CPU: N requests one after another vs all at once, through the real server.

Both modes send the same greedy requests over loopback HTTP with the `openai` client to one
`idtune serve` app (continuous-batching engine); answers are identical, so the token counts are
too. Throughput counts completion tokens per second of wall time. As a reference, the same
prompts are also answered one at a time with plain `model.generate` (no server).

    .venv/bin/python bench/serve_cpu.py                      # default model, 16 requests
    .venv/bin/python bench/serve_cpu.py --n 16 --max-tokens 128 --rounds 2
    .venv/bin/python bench/serve_cpu.py --load 64 --long 4     # load: streams, latency, TTFT
    .venv/bin/python bench/serve_cpu.py --backend llamacpp     # the same, llama-server (q8_0)

Prints a table and writes bench/results/serve_cpu.json (`--load`: serve_cpu_load.json): with
`--load N`, N streamed requests at once, every status code counted, p50/p99 latency and time to
first token, once alone and once with `--long` prompts of about 7.9k tokens sent just before.
`--backend llamacpp` puts llama.cpp's `llama-server` behind the same app (`idtune serve
--backend llamacpp`: the model exported to a q8_0 GGUF first); results go to `*_llamacpp.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

NOTES = (
    "Throughput = completion tokens / wall time, greedy, over loopback HTTP with the openai "
    "client. generate reference: plain model.generate, one prompt at a time, tokens re-counted "
    "from the answer text. On a loaded 2-core machine, 2 torch threads oversubscribe the cores "
    "and stall in OpenMP barriers; compare runs with the same --threads."
)

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain gravity in two sentences.",
    "Give me three tips for learning Python.",
    "What is photosynthesis?",
    "Describe a cat to someone who has never seen one.",
    "Why is the sky blue?",
    "List four planets of the solar system.",
    "How do I boil an egg?",
    "What does a computer's CPU do?",
    "Suggest a name for a small bakery.",
    "What is the difference between weather and climate?",
    "Write a short thank-you note to a teacher.",
    "How many days are in a leap year, and why?",
    "Explain what a neural network is to a child.",
    "What should I pack for a weekend hiking trip?",
]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(load_before: tuple) -> dict:
    """CPU, threads, versions and the load average before and after a run."""
    import torch

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def ask(client, model: str, prompt: str, max_tokens: int) -> tuple[str, int, float]:
    t = time.perf_counter()
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
    )
    return r.choices[0].message.content, r.usage.completion_tokens, time.perf_counter() - t


def sequential(client, model: str, prompts: list[str], max_tokens: int) -> dict:
    t = time.perf_counter()
    out = [ask(client, model, p, max_tokens) for p in prompts]
    return summarize(out, time.perf_counter() - t)


def concurrent(client, model: str, prompts: list[str], max_tokens: int) -> dict:
    out: list = [None] * len(prompts)
    barrier = threading.Barrier(len(prompts) + 1)

    def work(i: int) -> None:
        barrier.wait()
        out[i] = ask(client, model, prompts[i], max_tokens)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(prompts))]
    for th in threads:
        th.start()
    barrier.wait()
    t = time.perf_counter()
    for th in threads:
        th.join()
    return summarize(out, time.perf_counter() - t)


def hf_generate(loaded, prompts: list[str], max_tokens: int) -> dict:
    """Plain transformers `generate`, one prompt at a time, greedy, no server."""
    from idtune.generate import generate_batch

    tok = loaded.tokenizer
    out = []
    t0 = time.perf_counter()
    for p in prompts:
        t = time.perf_counter()
        [answer] = generate_batch(
            loaded.model,
            tok,
            [[{"role": "user", "content": p}]],
            max_new_tokens=max_tokens,
            batch_size=1,
            template=loaded.template,
        )
        n = len(tok(answer, add_special_tokens=False)["input_ids"])
        out.append((answer, n, time.perf_counter() - t))
    return summarize(out, time.perf_counter() - t0)


def streamed(client, model: str, prompt: str, max_tokens: int) -> dict:
    """One streamed request: status, time to first token, total latency."""
    import openai

    t = time.perf_counter()
    first = None
    try:
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
        )
        for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - t
        status = 200
    except openai.APIStatusError as e:
        status = e.status_code
    except openai.APIError:
        status = -1  # connection dropped
    return {"status": status, "ttft_s": first, "latency_s": time.perf_counter() - t}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 2)


def load(client, model: str, n: int, n_long: int, max_tokens: int) -> dict:
    """N short streams at once (plus `n_long` long prompts started just before them)."""
    long_prompt = "Summarize this text. " + "The quick brown fox jumps over the lazy dog. " * 790
    out: list = [None] * (n + n_long)
    jobs = [(long_prompt, 16)] * n_long + [
        (PROMPTS[i % len(PROMPTS)], max_tokens) for i in range(n)
    ]

    def work(i: int) -> None:
        out[i] = streamed(client, model, *jobs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    t = time.perf_counter()
    for i, th in enumerate(threads):
        th.start()
        if i == n_long - 1:
            time.sleep(0.5)  # the long prompts are admitted first
    for th in threads:
        th.join()
    short, longs = out[n_long:], out[:n_long]
    ok = [r for r in short if r["status"] == 200]
    statuses = sorted({r["status"] for r in out})
    return {
        "wall_s": round(time.perf_counter() - t, 2),
        "short_requests": n,
        "long_prompts": n_long,
        "statuses": {str(s): sum(1 for r in out if r["status"] == s) for s in statuses},
        "server_errors": sum(1 for r in out if r["status"] >= 500 or r["status"] < 0),
        "short_completed": len(ok),
        "ttft_p50_s": pct([r["ttft_s"] for r in ok if r["ttft_s"] is not None], 0.5),
        "ttft_p99_s": pct([r["ttft_s"] for r in ok if r["ttft_s"] is not None], 0.99),
        "latency_p50_s": pct([r["latency_s"] for r in ok], 0.5),
        "latency_p99_s": pct([r["latency_s"] for r in ok], 0.99),
        "long_latency_max_s": round(max((r["latency_s"] for r in longs), default=0.0), 2),
    }


def start_engine(args, max_batch: int):
    """idtune's engine, or llama-server behind the same proxy `idtune serve --backend` uses."""
    from idtune.serve import server

    if args.backend == "transformers":
        return server.load_engine(args.model, max_batch=max_batch)
    return server.load_engine(args.model, backend=args.backend)


def results_path(args, stem: str) -> Path:
    """bench/results/STEM.json; STEM_BACKEND.json for another backend."""
    suffix = "" if args.backend == "transformers" else f"_{args.backend}"
    return args.out.with_name(f"{stem}{suffix}.json")


def run_load(args) -> None:
    """`--load N`: the server under N concurrent streams, alone and with long prompts."""
    import openai
    import torch

    from idtune.serve import server

    load_before = os.getloadavg()
    engine = start_engine(args, args.load + args.long)
    bg = server.Background(server.build_app(engine, ui=False))
    client = openai.OpenAI(base_url=f"{bg.url}/v1", api_key="x", max_retries=0, timeout=3600)
    ask(client, engine.model_id, "Hello!", 8)  # warm-up
    runs = {
        "alone": load(client, engine.model_id, args.load, 0, args.max_tokens),
        f"with {args.long} long prompts": load(
            client, engine.model_id, args.load, args.long, args.max_tokens
        ),
    }
    bg.stop()
    server.shutdown(engine)
    print(f"\n{args.load} streamed requests, max_tokens={args.max_tokens}, greedy, {args.model}")
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})")
    keys = ["short_completed", "server_errors", "ttft_p50_s", "ttft_p99_s", "latency_p50_s",
            "latency_p99_s", "long_latency_max_s", "wall_s"]  # fmt: skip
    print("| case | " + " | ".join(keys) + " | statuses |")
    print("|---|" + "---:|" * len(keys) + "---|")
    for name, r in runs.items():
        print(f"| {name} | " + " | ".join(str(r[k]) for k in keys) + f" | {r['statuses']} |")
    result = {
        "benchmark": "serve_cpu --load",
        "model": args.model,
        "backend": args.backend,
        "max_tokens": args.max_tokens,
        "machine": machine(load_before),
        "results": runs,
    }
    out = results_path(args, "serve_cpu_load")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def summarize(out: list, wall: float) -> dict:
    tokens = sum(n for _, n, _ in out)
    lat = [s for _, _, s in out]
    return {
        "wall_s": round(wall, 2),
        "completion_tokens": tokens,
        "tokens_per_s": round(tokens / wall, 2),
        "mean_latency_s": round(statistics.mean(lat), 2),
        "max_latency_s": round(max(lat), 2),
        "answers": [a for a, _, _ in out],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=16, help="number of requests")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=1, help="alternate sequential/concurrent")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--no-hf", action="store_true", help="skip the plain generate reference")
    ap.add_argument("--out", type=Path, default=Path("bench/results/serve_cpu.json"))
    ap.add_argument("--load", type=int, default=0, help="N concurrent streams (load mode)")
    ap.add_argument("--long", type=int, default=4, help="long prompts in load mode's second case")
    ap.add_argument("--backend", default="transformers", choices=("transformers", "llamacpp"))
    args = ap.parse_args()
    if args.load:
        return run_load(args)

    import openai
    import torch

    from idtune.serve import server

    if args.threads:
        torch.set_num_threads(args.threads)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.n)]
    load_before = os.getloadavg()
    engine = start_engine(args, args.n)
    bg = server.Background(server.build_app(engine, ui=False))
    client = openai.OpenAI(base_url=f"{bg.url}/v1", api_key="x", max_retries=0, timeout=3600)
    ask(client, engine.model_id, "Hello!", 8)  # warm-up

    runs: dict[str, list[dict]] = {"sequential": [], "concurrent": []}
    for r in range(args.rounds):
        for mode, fn in (("sequential", sequential), ("concurrent", concurrent)):
            res = fn(client, engine.model_id, prompts, args.max_tokens)
            runs[mode].append(res)
            print(f"round {r + 1} {mode:>10}: {res['tokens_per_s']:7.1f} tok/s", file=sys.stderr)
    bg.stop()
    if not args.no_hf and args.backend == "transformers":
        from idtune import models

        loaded = models.load(args.model)
        runs["hf_generate_sequential"] = [hf_generate(loaded, prompts, args.max_tokens)]
    engine_stats = {"max_batch_seen": getattr(engine, "max_batch_seen", None),
                    "decode_steps": getattr(engine, "steps", None)}  # fmt: skip
    server.shutdown(engine)

    def best(mode: str) -> dict:
        return max(runs[mode], key=lambda x: x["tokens_per_s"])

    seq, conc = best("sequential"), best("concurrent")
    same = all(a == b for a, b in zip(seq["answers"], conc["answers"], strict=True))
    ratio = conc["tokens_per_s"] / seq["tokens_per_s"]
    rows = [("sequential (server)", seq), ("concurrent (server)", conc)]
    if "hf_generate_sequential" in runs:
        rows.append(("generate, one at a time", runs["hf_generate_sequential"][0]))
    print(f"\n{args.n} requests, max_tokens={args.max_tokens}, greedy, {args.model}")
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})")
    print(f"{'mode':<26}{'wall s':>8}{'tokens':>8}{'tok/s':>8}{'mean lat s':>11}{'max lat s':>10}")
    for name, r in rows:
        print(
            f"{name:<26}{r['wall_s']:>8}{r['completion_tokens']:>8}{r['tokens_per_s']:>8}"
            f"{r['mean_latency_s']:>11}{r['max_latency_s']:>10}"
        )
    print(f"concurrent / sequential throughput: {ratio:.2f}x (target >= 3x)")
    print(f"answers identical in both modes: {same}; engine max batch {engine_stats}")

    result = {
        "benchmark": "serve_cpu",
        "model": args.model,
        "backend": args.backend,
        "requests": args.n,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "machine": machine(load_before),
        "ratio_concurrent_over_sequential": round(ratio, 2),
        "answers_identical": same,
        "engine": engine_stats,
        "notes": NOTES,
        "results": {
            mode: [{k: v for k, v in r.items() if k != "answers"} for r in rs]
            for mode, rs in runs.items()
        },
    }
    out = results_path(args, args.out.stem)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
