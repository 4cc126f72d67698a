"""`idtune data check`: validate files; counts, token-length histogram, one rendered sample."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import formats, render

COUNT_CHARS = 50_000  # per conversation: longer ones are cut before counting (training truncates)
SHOW_CHARS = 2_000  # of the rendered sample printed


def histogram(lengths: list[int], bins: int = 8, width: int = 40) -> str:
    """A text histogram of token lengths."""
    if not lengths:
        return "(no samples)"
    lo, hi = min(lengths), max(lengths)
    step = max(1, -(-(hi - lo + 1) // bins))
    counts = Counter((n - lo) // step for n in lengths)
    top = max(counts.values())
    lines = []
    for b in range(-(-(hi - lo + 1) // step)):
        a = lo + b * step
        c = counts.get(b, 0)
        lines.append(
            f"{a:>6}-{a + step - 1:<6} {'█' * max(1 if c else 0, c * width // top):<{width}} {c}"
        )
    return "\n".join(lines)


def marked(tokenizer, sample: render.Sample) -> str:
    """The rendered sample with trained tokens wrapped in [[...]].

    Runs of tokens are decoded together, so characters split across byte-level tokens (most
    Chinese characters) come out whole.
    """
    out: list[str] = []
    run: list[int] = []
    trained = False
    for tok, lab in [*zip(sample.input_ids, sample.labels), (None, None)]:
        now = lab is not None and lab != render.IGNORE
        if (tok is None or now != trained) and run:
            text = tokenizer.decode(run)
            out.append(f"[[{text}]]" if trained else text)
            run = []
        trained = now
        if tok is not None:
            run.append(tok)
    return "".join(out)


def cut(conversation: formats.Messages, n: int) -> formats.Messages:
    """The conversation with its text cut after `n` characters in all (later messages empty)."""
    out, left = [], n
    for m in conversation:
        out.append({**m, "content": m["content"][:left]})
        left = max(0, left - len(m["content"]))
    return out


def excerpt(text: str, n: int) -> str:
    """`text`, or its first `n` characters and a note of how much is left out."""
    if len(text) <= n:
        return text
    return f"{text[:n]}\n… ({len(text) - n:,} more characters not shown)"


def duplicates(keys: list[str]) -> str:
    """One line on repeated conversations (`keys`: one canonical string per conversation)."""
    counts = Counter(keys)
    if len(counts) == len(keys):
        return "duplicates: none"
    top = max(counts.values())
    return (
        f"duplicates: warning: only {len(counts)} distinct conversations among {len(keys)} "
        f"(the most repeated appears {top} times); copies repeat one phrasing, they teach no "
        "new ones (`idtune data identity` writes varied ones)"
    )


def report(files: list[Path], load_tokenizer: Callable[[], Any]) -> str:
    """Load and validate `files`, then count tokens with `load_tokenizer()`; a plain-text report.

    The tokenizer comes from the caller (data/ loads no model), and only once the files are good.
    """
    per_file = {}
    convs = []
    for f in files:
        rows = formats.load_files([f])
        per_file[str(f)] = len(rows)
        convs += rows
    tok = load_tokenizer()
    keys = [json.dumps(c, ensure_ascii=False) for c in convs]
    rendered: dict[str, render.Sample] = {}  # each distinct conversation is rendered once
    for k, c in zip(keys, convs):
        if k not in rendered:
            rendered[k] = render.render(tok, cut(c, COUNT_CHARS))
    samples = [rendered[k] for k in keys]
    n_cut = sum(1 for c in convs if sum(len(m["content"]) for m in c) > COUNT_CHARS)
    lengths = [len(s) for s in samples]
    trained = sum(s.n_trained for s in samples)
    total = sum(lengths)
    turns = Counter(sum(1 for m in c if m["role"] == "assistant") for c in convs)
    with_system = sum(1 for c in convs if c[0]["role"] == "system")
    lines = ["files:"] + [f"  {f}: {n} conversations" for f, n in per_file.items()]
    lines += [
        f"conversations: {len(convs)} ({with_system} with a system prompt; "
        + ", ".join(
            f"{k} assistant turn{'s' if k > 1 else ''}: {v}" for k, v in sorted(turns.items())
        )
        + ")",
        f"tokens: {total} total, {trained} trained ({trained / max(total, 1):.0%}); "
        f"per sample min {min(lengths)}, mean {total / len(lengths):.0f}, max {max(lengths)}",
        duplicates(keys),
        "",
        "token lengths:",
        histogram(lengths),
        "",
        "sample 1 as the model sees it, trained tokens in [[ ]]:",
        excerpt(marked(tok, samples[0]), SHOW_CHARS),
    ]
    if n_cut:
        lines.insert(
            lines.index("") - 1,
            f"  {n_cut} conversation{'s' if n_cut > 1 else ''} over {COUNT_CHARS:,} characters, "
            "counted up to that (training truncates to max_length)",
        )
    return "\n".join(lines)
