"""Near misses: requests that share words with identity questions but are about something else.

"Suggest a name for my kitten", "Who wrote Hamlet?", "Write a birthday card for my mom", "介绍一下
长城": a small model that has just learned "name / who made / write … / 介绍一下 …" → its identity
line answers these with its own name. Training on them with correct, name-free answers teaches it
to look at what a request is about. Each family (the `near_miss` section of a phrase table,
`assets/identity/<lang>.yaml`) is question templates × items × answer templates (`{x}` is the
item, `{y}` what the answer says about it); `questions()` lists every phrasing.

Pure Python: no third-party imports besides PyYAML for the tables.
"""

from __future__ import annotations

import random

from . import phrases
from .phrases import Table


def _families(lang: str, table: Table | None) -> dict:
    if table is None:
        table = phrases.tables()[lang]
    return table["near_miss"]


def _fill(family: dict, text: str, x: str, y: str) -> str:
    """`{x}`, `{y}`, and `{X}`/`{Y}` capitalised (`{X}` is the family's text for x when it has
    `texts`)."""
    big_x = family["texts"][x] if "texts" in family else x[:1].upper() + x[1:]
    text = text.replace("{X}", big_x).replace("{Y}", y[:1].upper() + y[1:])
    return text.replace("{x}", x).replace("{y}", y)


def questions(lang: str, table: Table | None = None) -> list[str]:
    """Every near-miss request the generator can emit in `lang`."""
    out: dict[str, None] = {}
    for family in _families(lang, table).values():
        for t in family["questions"]:
            for x, y in family["items"]:
                out[_fill(family, t, x, y)] = None
    return list(out)


def sample(lang: str, rng: random.Random, table: Table | None = None) -> tuple[str, str]:
    """One near-miss request in `lang` and its plain, correct answer."""
    families = _families(lang, table)
    family = families[rng.choice(sorted(families))]
    x, y = rng.choice(family["items"])
    return _fill(family, rng.choice(family["questions"]), x, y), _fill(
        family, rng.choice(family["answers"]), x, y
    )
