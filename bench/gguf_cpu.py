"""The GGUF export next to the merged model it came from, on CPU (issue 16).

    .venv/bin/python bench/gguf_cpu.py RUN [--quants q8_0,q4_k_m] [--max-tokens 64]

RUN: a run trained on the default model (`make demo`'s demo/run, or `idtune train identity-lora`).
It is merged (`idtune merge`), scored in process (`idtune eval MERGED`), exported per quant
(`idtune export gguf`), and each GGUF is served by llama.cpp's llama-server on loopback and scored
with `idtune eval RUN --endpoint URL --model m` (the same probes, greedy). Single-stream speed:
the same greedy prompts (bench/serve_cpu.py's), one at a time, to llama-server and to idtune's own
engine (`idtune serve`'s app on the merged model) through the `openai` client; tokens/s =
completion tokens / wall time. Writes bench/results/gguf_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve_cpu  # noqa: E402

METRICS = ("identity_en", "identity_zh", "author", "leakage", "retention")


def idtune(*args: str) -> None:
    """Run the real CLI in a subprocess (as a user would)."""
    cmd = [sys.executable, "-m", "idtune.cli", *map(str, args)]
    print("$ idtune", " ".join(map(str, args)), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def scores(eval_dir: Path) -> dict:
    """eval.json's tuned metrics per condition, the metrics this bench reports."""
    metrics = json.loads((eval_dir / "eval.json").read_text())["metrics"]["tuned"]
    return {c: {m: v.get(m) for m in METRICS} for c, v in metrics.items()}


def single_stream(base_url: str, model: str, prompts: list[str], max_tokens: int) -> dict:
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0, timeout=600)
    serve_cpu.ask(client, model, "Hello", 8)  # warm-up
    out = serve_cpu.sequential(client, model, prompts, max_tokens)
    out.pop("answers")
    return out


def main() -> None:
    """Merge, export, serve, score and time; write bench/results/gguf_cpu.json."""
    from idtune import llamacpp
    from idtune.ports import free_port
    from idtune.serve import backends, server

    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--quants", default="q8_0,q4_k_m")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("bench/results/gguf_cpu.json"))
    args = ap.parse_args()
    prompts = serve_cpu.PROMPTS[: args.prompts]
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="gguf-bench-"))
    merged = work / "merged"
    t = time.perf_counter()
    idtune("merge", args.run, merged)
    results: dict = {"run": str(args.run), "merge_s": round(time.perf_counter() - t, 1)}
    idtune("eval", merged, "-o", work / "ev-merged")
    results["merged"] = {"scores": scores(work / "ev-merged")}

    engine = server.load_engine(str(merged), max_batch=8)
    bg = server.Background(server.build_app(engine, ui=False))
    try:
        results["merged"]["single_stream"] = single_stream(
            bg.url, engine.model_id, prompts, args.max_tokens
        )
    finally:
        bg.stop()
        engine.close()

    for quant in args.quants.split(","):
        out = work / f"gguf-{quant}"
        t = time.perf_counter()
        idtune("export", "gguf", merged, out, "--quant", quant)
        row: dict = {"export_s": round(time.perf_counter() - t, 1)}
        gguf = out / f"model-{quant}.gguf"
        row["size_mb"] = round(gguf.stat().st_size / 1e6, 1)
        port = free_port()
        argv = backends.llamacpp_argv(gguf, name="m", port=port)
        proc = backends.start("llamacpp", argv, port, work / f"llama-{quant}.log", timeout=600)
        try:
            url = f"http://127.0.0.1:{port}"
            idtune("eval", args.run, "--endpoint", url, "--model", "m", "-o", work / f"ev-{quant}")
            row["scores"] = scores(work / f"ev-{quant}")
            row["single_stream"] = single_stream(url, "m", prompts, args.max_tokens)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        results[quant] = row

    results["machine"] = serve_cpu.machine(load_before) | {
        "llama_cpp_python_sdist": llamacpp.home().name,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "max_tokens": args.max_tokens,
        "prompts": len(prompts),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
