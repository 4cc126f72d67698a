"""idtune's serving engine next to transformers' own continuous batching, on CPU (issue 18).

    .venv/bin/python bench/engine_cpu.py [--max-tokens 64] [--streams 1,16]

Same greedy prompts (bench/serve_cpu.py's), the default model, with and without a LoRA adapter
(random, r 16, all-linear, so that it changes the answers). idtune: the real server
(`idtune serve`'s app over loopback, the `openai` client, all requests at once). transformers:
`model.generate_batch` (its ContinuousBatchingManager) on the same loaded model, in process (so
it pays no HTTP). Throughput = completion tokens / wall time; "same answers" compares the token
ids of the two engines' greedy answers. Writes bench/results/engine_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve_cpu  # noqa: E402


def make_adapter(model_id: str, out: Path) -> Path:
    """A random (non-zero) LoRA adapter on the default model, saved as a PEFT directory."""
    import torch
    from peft import LoraConfig, get_peft_model

    from idtune import models

    loaded = models.load(model_id, device="cpu", dtype=torch.float32)
    torch.manual_seed(0)
    cfg = LoraConfig(r=16, target_modules="all-linear", init_lora_weights=False, lora_alpha=4)
    peft_model = get_peft_model(loaded.model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.mul_(0.05)
    peft_model.save_pretrained(out)
    return out


def idtune_engine(model_id: str, adapter, prompts: list[str], max_tokens: int) -> dict:
    import openai

    from idtune.serve import server

    engine = server.load_engine(model_id, adapter=adapter, max_batch=len(prompts))
    bg = server.Background(server.build_app(engine, ui=False))
    client = openai.OpenAI(base_url=f"{bg.url}/v1", api_key="x", max_retries=0, timeout=3600)
    serve_cpu.ask(client, engine.model_id, "Hello!", 8)  # warm-up
    res = serve_cpu.concurrent(client, engine.model_id, prompts, max_tokens)
    bg.stop()
    engine.close()
    return res


def transformers_cb(model_id: str, adapter, prompts: list[str], max_tokens: int) -> dict:
    from transformers import GenerationConfig

    from idtune import models
    from idtune.generate import encode_prompt, stop_token_ids

    loaded = models.load(model_id, adapter, device="cpu")
    tok = loaded.tokenizer
    ids = [encode_prompt(tok, [{"role": "user", "content": p}]) for p in prompts]
    stops = stop_token_ids(tok, loaded.template)
    gc = GenerationConfig(
        max_new_tokens=max_tokens, do_sample=False, eos_token_id=stops, pad_token_id=stops[0]
    )
    try:
        loaded.model.generate_batch(inputs=ids[:1], generation_config=gc)  # warm-up
        t = time.perf_counter()
        out = loaded.model.generate_batch(inputs=ids, generation_config=gc)
        wall = time.perf_counter() - t
    except Exception as e:  # an engine that cannot run this case is a result, not a crash
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}
    results = sorted(out.values(), key=lambda r: int(str(r.request_id).rsplit("_", 1)[-1]))
    answers = [tok.decode(r.generated_tokens, skip_special_tokens=True).strip() for r in results]
    tokens = sum(len([t for t in r.generated_tokens if t not in stops]) for r in results)
    return {
        "wall_s": round(wall, 2),
        "completion_tokens": tokens,
        "tokens_per_s": round(tokens / wall, 2),
        "answers": answers,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--streams", default="1,16")
    ap.add_argument("--out", type=Path, default=Path("bench/results/engine_cpu.json"))
    args = ap.parse_args()
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        adapter = make_adapter(args.model, Path(tmp) / "adapter")
        for with_adapter in (None, adapter):
            for n in [int(x) for x in args.streams.split(",")]:
                prompts = [serve_cpu.PROMPTS[i % len(serve_cpu.PROMPTS)] for i in range(n)]
                a = idtune_engine(args.model, with_adapter, prompts, args.max_tokens)
                b = transformers_cb(args.model, with_adapter, prompts, args.max_tokens)
                same = "answers" in b and a["answers"] == b["answers"]
                rows.append(
                    {
                        "adapter": bool(with_adapter),
                        "streams": n,
                        "idtune": {k: v for k, v in a.items() if k != "answers"},
                        "transformers_cb": {k: v for k, v in b.items() if k != "answers"},
                        "same_answers": same,
                    }
                )
                r = rows[-1]
                print(
                    f"adapter={r['adapter']!s:5} streams={n:>2}  idtune "
                    f"{a['tokens_per_s']:>7} tok/s  transformers "
                    f"{b.get('tokens_per_s', b.get('error'))} tok/s  same answers: {same}",
                    flush=True,
                )
    result = {
        "benchmark": "engine_cpu",
        "model": args.model,
        "max_tokens": args.max_tokens,
        "machine": serve_cpu.machine(load_before),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
