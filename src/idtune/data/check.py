"""`idtune data check`: validate files; counts, token-length histogram, one rendered sample."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import formats, render


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
    samples = [render.render(tok, c) for c in convs]
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
        "",
        "token lengths:",
        histogram(lengths),
        "",
        "sample 1 as the model sees it, trained tokens in [[ ]]:",
        marked(tok, samples[0]),
    ]
    return "\n".join(lines)
