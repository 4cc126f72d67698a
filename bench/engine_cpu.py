"""idtune's serving engine next to transformers' own continuous batching, on CPU (issue 18).

    .venv/bin/python bench/engine_cpu.py --run RUN_DIR [--repeats 3] [--max-tokens 64]

Same greedy prompts (bench/serve_cpu.py's), the default model, without and with a trained
identity adapter (RUN_DIR: an `idtune train identity-lora` run; its system prompt is used by every
engine). idtune: the real server (`idtune serve`'s app over loopback, the `openai` client, all
requests at once). transformers: `model.generate_batch` (its ContinuousBatchingManager) on the
same loaded model, in process (so it pays no HTTP). The two alternate within each repeat (the
order flips every repeat); medians and ranges over repeats. Throughput = generated tokens (the
end-of-turn token included, for both) / wall time. Correctness: every answer against plain
`model.generate` greedy, one prompt at a time; where one differs, the first diverging token and
the reference's top-2 logit gap there (a near-tie flipped by batch-shape float rounding, or not).
Writes bench/results/engine_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve_cpu  # noqa: E402

PROBE = "Who are you?"


def messages(prompt: str, system: str | None) -> list[dict]:
    from idtune.generate import with_system

    return with_system([{"role": "user", "content": prompt}], system)


def idtune_engine(model: str, prompts: list[str], max_tokens: int) -> dict:
    """All prompts at once through `idtune serve`'s app on loopback; answers in prompt order."""
    import openai

    from idtune.serve import server

    engine = server.load_engine(model, max_batch=len(prompts))
    bg = server.Background(server.build_app(engine, ui=False))
    client = openai.OpenAI(base_url=f"{bg.url}/v1", api_key="x", max_retries=0, timeout=3600)
    serve_cpu.ask(client, engine.model_id, "Hello!", 8)  # warm-up
    out: list = [None] * len(prompts)
    import threading

    def work(i: int) -> None:
        out[i] = client.chat.completions.create(
            model=engine.model_id,
            messages=[{"role": "user", "content": prompts[i]}],
            max_tokens=max_tokens,
            temperature=0,
        )

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(prompts))]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    bg.stop()
    engine.close()
    tokens = sum(r.usage.completion_tokens for r in out)
    return {
        "wall_s": round(wall, 2),
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall, 2),
        "answers": [r.choices[0].message.content.strip() for r in out],
    }


def load(model: str):
    from idtune import models

    loaded = models.load(model, device="cpu")
    system = loaded.info.system_prompt if loaded.info is not None else None
    return loaded, system


def transformers_cb(model: str, prompts: list[str], max_tokens: int) -> dict:
    """All prompts at once through `generate_batch`; answers in prompt order."""
    from transformers import GenerationConfig

    from idtune.generate import encode_prompt, stop_token_ids

    loaded, system = load(model)
    tok = loaded.tokenizer
    ids = [encode_prompt(tok, messages(p, system)) for p in prompts]
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
    tokens = sum(len(r.generated_tokens) for r in results)
    return {
        "wall_s": round(wall, 2),
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall, 2),
        "answers": [
            tok.decode(r.generated_tokens, skip_special_tokens=True).strip() for r in results
        ],
    }


def reference(model: str, prompts: list[str], max_tokens: int) -> dict:
    """Plain `model.generate`, greedy, one prompt at a time (no padding): token ids per prompt."""
    import torch

    from idtune.generate import encode_prompt, stop_token_ids

    loaded, system = load(model)
    tok = loaded.tokenizer
    stops = stop_token_ids(tok, loaded.template)
    rows = []
    for p in prompts:
        ids = encode_prompt(tok, messages(p, system))
        with torch.inference_mode():
            out = loaded.model.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=max_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=stops,
                pad_token_id=stops[0],
            )
        gen = out[0, len(ids) :].tolist()
        cut = next((i + 1 for i, t in enumerate(gen) if t in stops), len(gen))
        rows.append({"prompt_ids": ids, "tokens": gen[:cut]})
    return {"loaded": loaded, "rows": rows, "stops": stops}


def divergence(ref: dict, i: int, answer: str) -> dict | None:
    """Where `answer` leaves the reference's greedy path for prompt i: the token index, the
    reference's top-2 candidates there and their logit gap, and which one the engine took."""
    import torch

    loaded, row = ref["loaded"], ref["rows"][i]
    tok, toks = loaded.tokenizer, row["tokens"]

    def text(n: int) -> str:
        return tok.decode(toks[:n], skip_special_tokens=True).strip()

    if text(len(toks)) == answer:
        return None
    k = next(n for n in range(len(toks)) if not answer.startswith(text(n + 1)))
    with torch.inference_mode():
        logits = loaded.model(input_ids=torch.tensor([row["prompt_ids"] + toks[:k]])).logits
    top = logits[0, -1].float().topk(2)
    (a, b), (va, vb) = top.indices.tolist(), top.values.tolist()
    rest = answer[len(text(k)) :]
    took = next(
        (t for t in (a, b) if rest.startswith(tok.decode([t], skip_special_tokens=True).strip())),
        None,
    )
    return {
        "prompt": i,
        "token_index": k,
        "reference_token": tok.decode([a]),
        "second_token": tok.decode([b]),
        "top2_logit_gap": round(va - vb, 5),
        "engine_took_second": took == b,
    }


def versions() -> dict:
    import peft
    import transformers

    return {"transformers": transformers.__version__, "peft": peft.__version__}


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--run", help="an identity-lora run directory (the adapter); none: base only")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--streams", default="1,16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/results/engine_cpu.json"))
    ap.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="check every answer against plain model.generate (slow on a loaded machine)",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    engines = {"idtune": idtune_engine, "transformers_cb": transformers_cb}
    counts = [int(x) for x in args.streams.split(",")]
    cases, identity = [], {}
    pairs = [("base", args.model), *([("adapter", str(args.run))] if args.run else [])]
    for case, model in pairs:
        prompts = [serve_cpu.PROMPTS[i % len(serve_cpu.PROMPTS)] for i in range(max(counts))]
        ref, ref_text = None, None
        if args.reference:
            ref = reference(model, [*prompts, PROBE], args.max_tokens)
            tok = ref["loaded"].tokenizer
            ref_text = [
                tok.decode(r["tokens"], skip_special_tokens=True).strip() for r in ref["rows"]
            ]
            identity[case] = {"reference": ref_text[-1]}
            for name, run in engines.items():
                identity[case][name] = run(model, [PROBE], args.max_tokens)["answers"][0]
        runs: dict = {(e, n): [] for e in engines for n in counts}
        for r in range(args.repeats):
            order = list(engines) if r % 2 == 0 else list(engines)[::-1]
            for n in counts:
                for e in order:
                    res = engines[e](model, prompts[:n], args.max_tokens)
                    res["load_average"] = round(os.getloadavg()[0], 2)
                    runs[e, n].append(res)
                    print(
                        f"{case} repeat {r} {e:15} streams={n:>2} "
                        f"{res.get('tokens_per_s', res.get('error'))} tok/s",
                        flush=True,
                    )
        for (e, n), results in runs.items():
            ok = [x for x in results if "answers" in x]
            answers = [x["answers"] for x in ok]
            other = [
                x["answers"] for x in runs[next(o for o in engines if o != e), n] if "answers" in x
            ]
            same_other = sum(a == b for a, b in zip(answers[0], other[0])) if ok and other else 0
            differ = [i for i in range(n) if ok and ref_text and answers[0][i] != ref_text[i]]
            cases.append(
                {
                    "case": case,
                    "engine": e,
                    "streams": n,
                    "tokens_per_s": spread([x["tokens_per_s"] for x in ok]) if ok else None,
                    "errors": [x["error"] for x in results if "error" in x],
                    "runs": [{k: v for k, v in x.items() if k != "answers"} for x in results],
                    "answers_stable_over_repeats": all(a == answers[0] for a in answers),
                    "same_as_other_engine": f"{same_other}/{n}",
                    "same_as_reference": f"{n - len(differ)}/{n}" if ref else None,
                    "divergences": [divergence(ref, i, answers[0][i]) for i in differ],
                }
            )
            print(json.dumps(cases[-1]["divergences"]), flush=True)
    result = {
        "benchmark": "engine_cpu",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "model": args.model,
        "max_tokens": args.max_tokens,
        "repeats": args.repeats,
        "machine": serve_cpu.machine(load_before),
        "versions": versions(),
        "identity_probe": identity,
        "cases": cases,
    }
    from idtune import atomic

    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"wrote {atomic.write_text(args.out, json.dumps(result, indent=2, ensure_ascii=False))}")


if __name__ == "__main__":
    main()
