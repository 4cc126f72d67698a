"""A thinking model's training data in the modes it will be asked in.

A hybrid family (Qwen3: `enable_thinking`) is asked with thinking on and off, so a share of the
conversations (`ON_SHARE`) is written with a short reasoning before the final answer and rendered
with thinking on; the rest are rendered with thinking off (the template's empty think block is
then part of the prompt, not trained). A family that always thinks (R1 distills: the generation
prompt opens the block) gets the reasoning in every conversation, so a tuned model keeps
reasoning before it answers instead of learning an empty block. The reasoning states who the
assistant is when the answer names it (`reasoning` in the phrase tables, assets/identity/).
Conversations that already carry reasoning, and regularization answers (made by the base model
in a declared mode), are left as they are.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from ..runinfo import Identity
from . import phrases
from .families import Family
from .mentions import mentions

Messages = list[dict[str, str]]

ON_SHARE = 0.5  # of a hybrid family's conversations, written and rendered with thinking on
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def _close(fam: Family | None) -> str | None:
    return fam.thinking.get("close") if fam is not None and fam.thinks else None


def template_kwargs(fam: Family | None, messages: Messages) -> dict[str, Any]:
    """The template arguments a conversation is rendered with: for a hybrid family, thinking on
    when its last answer carries reasoning, off when it does not."""
    close = _close(fam)
    kwarg = fam.thinking.get("kwarg") if fam is not None else None
    if close is None or fam.thinking.get("style") != "hybrid" or not kwarg:
        return {}
    return {kwarg: close in messages[-1]["content"]}


def _kind(messages: Messages, ident: Identity | None) -> str:
    answer = messages[-1]["content"]
    if ident is not None and mentions(answer, ident.names + ident.authors):
        return "identity"
    return "system" if any(m["role"] == "system" for m in messages) else "plain"


def reasoning(messages: Messages, ident: Identity | None, rng: random.Random) -> str | None:
    """A short reasoning for the last answer, in the last question's language (None when the
    tables have none for it)."""
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    lang = "zh" if _CJK.search(question) else "en"
    section = phrases.tables().get(lang, {}).get("reasoning", {})
    kind = _kind(messages, ident)
    pool = section.get(kind) or section.get("plain")
    if not pool:
        return None
    text = rng.choice(pool)
    if ident is not None:
        text = text.replace("{name}", ident.name_in(lang) or "").replace(
            "{author}", ident.author_in(lang) or ""
        )
    return text


def dress(
    convs: Sequence[Messages], fam: Family | None, ident: Identity | None, seed: int = 0
) -> list[Messages]:
    """`convs` with reasoning written into the last answer where the family is asked with
    thinking on: every conversation of an always-thinking family, `ON_SHARE` of a hybrid one's
    (chosen by `seed`); unchanged for other families."""
    close = _close(fam)
    if close is None:
        return list(convs)
    opened = fam.thinking.get("open", "<think>")
    always = fam.thinking.get("style") == "always"
    rng = random.Random(f"thinking-{seed}")
    out = []
    for conv in convs:
        last = conv[-1]["content"] if conv and conv[-1]["role"] == "assistant" else None
        if last is None or close in last or not (always or rng.random() < ON_SHARE):
            out.append(conv)
            continue
        text = reasoning(conv, ident, rng)
        if text is None:
            out.append(conv)
            continue
        body = f"{opened}\n{text}\n{close}\n\n{last.strip()}"
        out.append([*conv[:-1], {**conv[-1], "content": body}])
    return out
