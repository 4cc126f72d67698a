"""Regularization data: the base model's own answers to general prompts (self-distillation).

Mixed into identity training so that unrelated questions keep being answered as before. The
answers are greedy and batched, and cached per model, count and length cap under
`<idtune cache>/regularize/`, so a second call (or a training recipe) gets them instantly.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from . import atomic
from .cache import cache_dir, fingerprint
from .data import formats
from .errors import UserError

BATCH_SIZE = 32  # 224 answers on 2 cores: 84 s (16: 112 s), the same answers


def prompts() -> list[dict[str, str]]:
    """The shipped general prompts, `{"lang", "prompt"}` each, in file order."""
    text = resources.files("idtune").joinpath("assets/general_prompts.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def balanced(n: int) -> list[dict[str, str]]:
    """The first `n` shipped prompts, alternating languages (en, zh, en, …) while both last."""
    by_lang: dict[str, list[dict[str, str]]] = {}
    for p in prompts():
        by_lang.setdefault(p["lang"], []).append(p)
    queues = [list(v) for _, v in sorted(by_lang.items())]
    out: list[dict[str, str]] = []
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


def cache_path(resolved: str, adapter: str | None, n: int, max_new_tokens: int) -> Path:
    """Where the answers of one model (resolved path or hub id, plus adapter) are cached."""
    chosen = [p["prompt"] for p in balanced(n)]
    key = json.dumps(
        [fingerprint(resolved), fingerprint(adapter), n, max_new_tokens, chosen],
        ensure_ascii=False,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(resolved.rstrip("/")).name or "model")
    return cache_dir() / "regularize" / f"{slug}-n{n}-t{max_new_tokens}-{digest}.jsonl"


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text("utf-8").splitlines() if x.strip()]


def generate(
    model: str,
    n: int = 200,
    max_new_tokens: int = 160,
    trust_remote_code: bool = False,
) -> list[dict[str, Any]]:
    """Answer the first `n` shipped general prompts (balanced zh/en) with `model`, greedily.

    Returns messages rows `{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}`.
    `n` above the shipped set's size is capped at it. Cached; see the module docstring.
    """
    from . import models

    if n <= 0:
        raise UserError("--n must be positive")
    if max_new_tokens <= 0:
        raise UserError("--max-new-tokens must be positive")
    n = min(n, len(prompts()))
    src = models.locate(model)
    path = cache_path(str(src.base), src.adapter, n, max_new_tokens)
    if path.is_file():
        return _read(path)

    from . import generate as gen
    from .progress import Counting

    chosen = balanced(n)
    loaded = models.load(model, trust_remote_code=trust_remote_code)
    tok = loaded.tokenizer
    conversations = [[{"role": "user", "content": p["prompt"]}] for p in chosen]
    # a thinking model answers in a declared mode: a hybrid one (Qwen3) with thinking off, one
    # that always reasons (R1 distills) with room for its reasoning, kept as it wrote it
    fam = gen.family_of(tok)
    always = fam is not None and fam.thinking.get("style") == "always"
    kwargs = gen.thinking_kwargs(tok, False)
    with Counting("regularize", len(conversations)) as bar:
        answers = gen.generate_batch(
            loaded.model,
            tok,
            conversations,
            max_new_tokens=max_new_tokens + (gen.THINKING_BUDGET if always else 0),
            batch_size=BATCH_SIZE,
            template=loaded.template,
            on_batch=bar.advance,
            template_kwargs=kwargs,
        )
    rows = []
    for c, a in zip(conversations, answers, strict=True):
        reasoning, answer = gen.split_reasoning(tok, c, a, **kwargs)
        if not answer.strip():
            continue  # cut inside its reasoning, or no answer at all: nothing to imitate
        if reasoning:
            answer = f"{fam.thinking['open']}\n{reasoning}\n{fam.thinking['close']}\n\n{answer}"
        rows.append({"messages": [c[0], {"role": "assistant", "content": answer}]})
    atomic.write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return rows


def for_training(
    model: str, *, n: int, max_new_tokens: int, trust_remote_code: bool = False, log=print
) -> list[list[dict[str, str]]]:
    """`generate` as conversations, without the degenerate answers: what training mixes in."""
    rows = generate(model, n=n, max_new_tokens=max_new_tokens, trust_remote_code=trust_remote_code)
    reg = [formats.to_messages(r) for r in rows]
    kept = [m for m in reg if not degenerate(m[0]["content"], m[1]["content"])]
    log(f"regularization: {len(kept)} answers kept, {len(reg) - len(kept)} degenerate")
    return kept


def degenerate(prompt: str, answer: str) -> bool:
    """True for base answers not worth imitating: empty, an echo of the question, or a loop.

    A small base model often repeats a question it cannot answer (many Chinese prompts for
    SmolLM2-135M); trained on, those echoes teach the tuned model to echo identity questions too.
    """

    def norm(text: str) -> str:
        return "".join(c for c in text.lower() if c.isalnum())

    a, p = norm(answer), norm(prompt)
    if len(a) < 2 or (len(p) >= 4 and p in a):
        return True
    chunks = [a[i : i + 8] for i in range(0, max(len(a) - 8, 0), 4)]
    return len(chunks) >= 6 and len(set(chunks)) < len(chunks) * 0.5
