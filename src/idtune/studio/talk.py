"""The Chat step: the tuned model and its base answer the same question, streamed.

A run is loaded once (base + adapter, as `idtune chat RUN` loads it) and kept while its adapter
file stays the same; the base answers with the adapter switched off and the base model's own
chat template, as `idtune eval --compare-base` scores it (a full fine-tune: its base is loaded
beside it). One answer is generated at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import generate, models
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


def _stream(loaded: Any, messages: list[dict], max_new_tokens: int, system: str | None):
    return generate.stream(
        loaded.model,
        loaded.tokenizer,
        generate.with_system(messages, system),
        max_new_tokens=max_new_tokens,
        template=loaded.template,
    )


def answer_tuned(run: Path, messages: list[dict], max_new_tokens: int) -> Iterator[str]:
    """The tuned model's answer to `messages`, growing piece by piece (greedy)."""
    tuned, _ = load(run)
    system = tuned.info.system_prompt if tuned.info else None
    text = ""
    with _LOCK:
        for piece in _stream(tuned, messages, max_new_tokens, system):
            text += piece
            yield text


def answer_base(run: Path, messages: list[dict], max_new_tokens: int) -> Iterator[str]:
    """The base model's answer to `messages` (adapter off, its own template), growing."""
    tuned, base = load(run)
    text = ""
    with _LOCK:
        if base is not None:
            for piece in _stream(base, messages, max_new_tokens, None):
                text += piece
                yield text
            return
        tok = tuned.tokenizer
        own, tok.chat_template = tok.chat_template, tuned.base_chat_template or tok.chat_template
        try:
            with tuned.model.disable_adapter():
                for piece in _stream(tuned, messages, max_new_tokens, None):
                    text += piece
                    yield text
        finally:
            tok.chat_template = own
