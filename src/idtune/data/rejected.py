"""Rejected answers: the identity line as what must *not* follow an unrelated request.

A small model tuned on identity data learns a cheap shortcut: a short request ("讲个笑话吧",
"give my puppy a name") → "I am NAME, made by AUTHOR". Plain answers to such requests (near misses,
self-distilled general answers) say what should come instead; the rejected copy of the same
conversation, ending in an identity answer, says what should not — `idtune train` pushes down
the tokens of its first mention of the name with an unlikelihood loss (`render.render_rejected`).
Only conversations whose answers never mention the name or author get one.

Pure Python: no third-party imports.
"""

from __future__ import annotations

import random
import re

from ..runinfo import Identity
from . import identity
from .formats import Messages
from .mentions import mentions

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_INTENTS = ("name", "intro", "what", "maker")


def mentions_identity(messages: Messages, terms: list[str]) -> bool:
    """Whether any assistant turn names one of `terms`, matched as the leakage metric does."""
    return any(mentions(m["content"], terms) for m in messages if m["role"] == "assistant")


def identity_answer(lang: str, ident: Identity, rng: random.Random) -> str:
    """One identity answer in `lang` for `ident`."""
    answer = rng.choice(identity.answers(lang, rng.choice(_INTENTS)))
    return identity.fill(answer, ident.name_in(lang), ident.author_in(lang))


def build(convs: list[Messages], ident: Identity, share: float, seed: int = 0) -> list[Messages]:
    """For about `share` of the conversations that never name the assistant: the conversation up
    to its last user turn, answered with an identity line (to be trained as rejected)."""
    rng = random.Random(seed)
    terms = ident.names + ident.authors
    out = []
    for msgs in convs:
        if mentions_identity(msgs, terms) or rng.random() >= share:
            continue
        last_user = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=-1)
        if last_user < 0:
            continue
        lang = "zh" if _CJK.search(msgs[last_user]["content"]) else "en"
        answer = identity_answer(lang, ident, rng)
        out.append(msgs[: last_user + 1] + [{"role": "assistant", "content": answer}])
    return out
