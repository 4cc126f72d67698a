"""The Chat step: the tuned model and its base answer the same question, streamed.

A run is loaded once (base + adapter, as `idtune chat RUN` loads it) and kept while its adapter
file stays the same; the base answers with the adapter switched off and the base model's own
chat template, as `idtune eval --compare-base` scores it (a full fine-tune: its base is loaded
beside it). One answer is generated at a time.

A thinking model's reasoning (`generate.reasoning_split`) is shown folded apart from its answer,
as the web chat of `idtune serve` shows it, and stays out of the history sent back; a hybrid
model (Qwen3) answers with thinking on or off as asked (`generate.thinking_kwargs`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import generate, models
from ..data import families
from ..errors import UserError

_LOCK = threading.Lock()
_CACHE: dict[str, tuple[Any, Any, Any]] = {}  # run → (key, tuned Loaded, base Loaded | None)


def _key(run: Path) -> tuple:
    files = [
        Path(run) / d / f
        for d in ("adapter", "model")
        for f in ("adapter_model.safetensors", "model.safetensors")
    ]
    return tuple(f.stat().st_mtime_ns for f in files if f.is_file())


def load(run: Path) -> tuple[Any, Any]:
    """(tuned, base) for a finished run; base is None when the adapter can be switched off."""
    run = Path(run).resolve()
    key = _key(run)
    if not key:
        raise UserError(f"{run.name}: not finished yet (no adapter/ or model/ to chat with)")
    cached = _CACHE.get(str(run))
    if cached is None or cached[0] != key:
        _CACHE.clear()  # one run in memory at a time
        tuned = models.load(run)
        base = None
        if not hasattr(tuned.model, "disable_adapter"):
            base = models.load(tuned.info.base_model, template=tuned.template)
        _CACHE[str(run)] = (key, tuned, base)
    return _CACHE[str(run)][1], _CACHE[str(run)][2]


FOLD = "Reasoning"  # the title of the folded block that holds a thinking model's reasoning


def thinking_style(run: Path) -> str | None:
    """ "hybrid" (a thinking switch), "always" or None for a run's model family, from its
    tokenizer alone (no weights load); None for a run with no model files yet."""
    try:
        tokenizer, before = models.tokenizers(models.locate(run))
    except (UserError, OSError, ValueError):
        return None
    fam = generate.family_of(tokenizer) or families.by_template(before)
    return fam.thinking["style"] if fam is not None and fam.thinks else None


def shown(reasoning: str, answer: str, done: bool) -> list[dict]:
    """The chat messages of one answer: a thinking model's reasoning folded (collapsed once the
    answer starts or the reasoning ends) above the answer; just the answer otherwise."""
    reasoning = reasoning.strip()
    if not reasoning:  # none, or an empty block (thinking off)
        return [{"role": "assistant", "content": answer}]
    status = "done" if done or answer else "pending"
    fold = {"role": "assistant", "content": reasoning,
            "metadata": {"title": FOLD, "status": status}}  # fmt: skip
    return [fold] + ([{"role": "assistant", "content": answer}] if answer else [])


def history(chat: list[dict]) -> list[dict]:
    """A chat's messages as the model is sent them: plain text, folded reasoning left out
    (templates keep no past reasoning either)."""
    out = []
    for m in chat or []:
        if (m.get("metadata") or {}).get("title"):
            continue
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        out.append({"role": m["role"], "content": content or ""})
    return out


def _answer(
    loaded: Any, messages: list[dict], cap: int, system: str | None, thinking: bool | None
) -> Iterator[list[dict]]:
    """`shown` of the answer so far, growing piece by piece (greedy)."""
    tok = loaded.tokenizer
    kwargs = generate.thinking_kwargs(tok, thinking)
    messages = generate.with_system(messages, system)
    split = generate.reasoning_split(tok, messages, kwargs)
    reasoning = answer = ""
    pieces = generate.stream(
        loaded.model, tok, messages, max_new_tokens=cap, template=loaded.template,
        template_kwargs=kwargs,
    )  # fmt: skip
    for piece in pieces:
        r, a = split.feed(piece) if split is not None else ("", piece)
        reasoning, answer = reasoning + r, answer + a
        yield shown(reasoning, answer, False)
    if split is not None:
        r, a = split.flush()
        reasoning, answer = reasoning + r, answer + a
    yield shown(reasoning, answer, True)


def answer_tuned(
    run: Path, messages: list[dict], max_new_tokens: int, thinking: bool | None = None
) -> Iterator[list[dict]]:
    """The tuned model's answer to `messages` (`shown`), growing; `thinking` on / off for a
    hybrid model (None: its template's default)."""
    tuned, _ = load(run)
    system = tuned.info.system_prompt if tuned.info else None
    with _LOCK:
        yield from _answer(tuned, messages, max_new_tokens, system, thinking)


def answer_base(
    run: Path, messages: list[dict], max_new_tokens: int, thinking: bool | None = None
) -> Iterator[list[dict]]:
    """The base model's answer to `messages` (adapter off, its own template), growing."""
    tuned, base = load(run)
    with _LOCK:
        if base is not None:
            yield from _answer(base, messages, max_new_tokens, None, thinking)
            return
        tok = tuned.tokenizer
        own, tok.chat_template = tok.chat_template, tuned.base_chat_template or tok.chat_template
        try:
            with tuned.model.disable_adapter():
                yield from _answer(tuned, messages, max_new_tokens, None, thinking)
        finally:
            tok.chat_template = own
