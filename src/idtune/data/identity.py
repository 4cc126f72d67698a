"""Identity conversations: many ways to ask "who are you?", answered with the new name and author.

`generate()` returns OpenAI `messages` records. Every sample asks one identity question (in one of
several *intents*: name, maker, intro, what-are-you, confirm, and negatives such as "Are you
ChatGPT?"), sometimes after one or two unrelated exchanges (in either language: the answer follows
the last question's) or followed by a second identity question, under one of five kinds of system
prompt: none, generic, a base model's default, a custom one, or an operator's persona (another
name and maker, from `personas`), then answered as that persona. Question phrasings are stems
combined with prefixes ("Hi! ", "请问") and light styles (lower case, half-width punctuation,
chat-speak and homophone typos); `questions()` lists every phrasing the generator can emit, so
evaluation probes can be checked against it. About 30 % of samples ask no identity question:
facts, sums and near misses (`near_miss.py`), answered without the name.

The phrasings are data: `assets/identity/<lang>.yaml` (see `phrases.py`); this module only
composes them. Pure Python: no third-party imports besides PyYAML for the tables.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from ..errors import UserError
from ..runinfo import Identity
from . import near_miss, phrases
from .phrases import INTENTS, NEGATIVE_INTENTS, Table

LANGS = phrases.SHIPPED
SYSTEM_KINDS = phrases.SYSTEM_KINDS
# Intents whose answers must carry the author (the others carry the name, usually the author too).
MAKER_INTENTS = ("maker", "intro", "confirm", "neg_maker")
# The most conversations one call makes (`data identity --n`, the studio's Identity step). Each is
# kept in memory to avoid repeats: 100,000 took 27 s and 200 MB on one CPU core, and an identity
# is learnt from about 1,000; --n 2,000,000 ran past a minute with nothing written.
MAX_CONVERSATIONS = 100_000

_INTENT_WEIGHTS = {
    "name": 0.22,
    "maker": 0.20,
    "intro": 0.14,
    "what": 0.14,
    "confirm": 0.07,
    "neg_model": 0.14,
    "neg_maker": 0.09,
}
# persona 0.40: the share an operator's persona needs to win over the trained name on 135M
# (GPU sweep rounds 20-27, BENCHMARKS.md issue 17); taken from "none", whose identity stays
# at 1.00 with fewer samples
_SYSTEM_WEIGHTS = {"none": 0.16, "generic": 0.20, "base": 0.12, "custom": 0.12, "persona": 0.40}
_MULTI_SHARE = 0.22  # samples with more than one user turn
_GENERAL_SHARE = 0.30  # samples with no identity question at all: answered plainly (no name)
_NEAR_MISS_SHARE = 0.6  # of unrelated exchanges, near misses ("Who wrote Hamlet?", 起个名字)
_FOLLOW_SHARE = 0.25  # of those, identity first and then a follow-up identity question
_SWITCH_SHARE = 0.5  # of multi-turn samples, the last question in the other language
_PREFIX_SHARE = 0.30  # single-turn questions with a prefix
_TRANSITION_SHARE = 0.5  # identity questions after an unrelated exchange that open with "Thanks!"

_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|[。！？]")
_SIGNS = {"+": "+", "-": "-", "*": "×"}


# ---------------------------------------------------------------- composing phrasings
def _is_question(stem: str) -> bool:
    return stem.rstrip().endswith(("?", "？"))


def _prefix_pool(table: Table, stem: str, transition: bool) -> list[str]:
    pre = table["prefixes"]
    if transition:
        return pre.get("transition", [])
    return pre.get("any", []) + (pre.get("question", []) if _is_question(stem) else [])


def _join(table: Table, prefix: str, stem: str) -> str:
    if not prefix:
        return stem
    join = table["join"]
    if prefix.endswith(tuple(join.get("lower_after", ()))):
        first = stem.split(" ", 1)[0]
        keep = first in join.get("keep_case", ()) or first.startswith("{")
        if not keep and stem[:1].isupper():
            stem = stem[0].lower() + stem[1:]
    for dropped, start in join.get("drop_prefix", ()):
        if prefix == dropped and stem.startswith(start):
            return stem
    return prefix + stem


def _style(table: Table, text: str, style: str) -> str:
    rule = table["styles"][style]
    if rule.get("lower"):
        text = text.lower()
    for pattern, repl in rule.get("regex", ()):
        text = re.sub(pattern, repl, text)
    for old, new in rule.get("replace", ()):
        text = text.replace(old, new)
    return text.rstrip(rule["strip_end"]) if "strip_end" in rule else text


def _stems(table: Table, intent: str) -> list[str]:
    """Every stem of `intent`, follow-ups included, negatives filled with each name they use."""
    if intent in NEGATIVE_INTENTS:
        stems, others = table["negative_questions"][intent], table["others"][intent]
        return [t.replace("{other}", o) for t in stems for o in others]
    return list(table["questions"][intent]) + list(table["follow_ups"].get(intent, []))


def _table(tables: dict[str, Table], lang: str) -> Table:
    if lang not in tables:
        raise UserError(
            f"unknown language {lang!r}; choose from: {', '.join(tables)} "
            "(or add one with --phrases FILE)"
        )
    return tables[lang]


def _phrasings(table: Table, intent: str) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for stem in _stems(table, intent):
        prefixes = [""] + _prefix_pool(table, stem, False) + _prefix_pool(table, stem, True)
        for prefix in prefixes:
            for style in table["styles"]:
                out[_style(table, _join(table, prefix, stem), style)] = None
    return tuple(out)


@cache
def _shipped_phrasings(lang: str, intent: str) -> tuple[str, ...]:
    return _phrasings(phrases.tables()[lang], intent)


def questions(
    lang: str, intent: str | None = None, phrase_files: Sequence[str | Path] = ()
) -> list[str]:
    """Every question phrasing the generator can emit for `lang` (optionally for one intent).

    Placeholders stay as the literal strings "{name}" and "{author}"; negatives are filled with the
    model or company they name ("Are you ChatGPT?").
    """
    tables = phrases.tables(phrase_files)
    table = _table(tables, lang)
    if intent is not None and intent not in INTENTS:
        raise UserError(f"unknown intent {intent!r}; choose from: {', '.join(INTENTS)}")
    out: dict[str, None] = {}
    for i in (intent,) if intent else INTENTS:
        shipped = not phrase_files and lang in LANGS
        out.update(dict.fromkeys(_shipped_phrasings(lang, i) if shipped else _phrasings(table, i)))
    return list(out)


def answers(lang: str, intent: str | None = None) -> list[str]:
    """Every answer template for `lang` (with "{name}", "{author}", "{author_s}", "{other}")."""
    table = _table(phrases.tables(), lang)["answers"]
    return [a for i in ((intent,) if intent else INTENTS) for a in table[i]]


def system_prompts(kind: str, lang: str | None = None) -> list[str]:
    """System prompt templates of one kind ("generic", "base", "custom"); "none" has none."""
    if kind == "none":
        return []
    tables = phrases.tables()
    lists = [_table(tables, lg)["system_prompts"][kind] for lg in ((lang,) if lang else LANGS)]
    return list(dict.fromkeys(s for prompts in lists for s in prompts))


# ---------------------------------------------------------------- generation
def fill(text: str, name: str, author: str, other: str = "") -> str:
    """A template ("{name}", "{author}", "{author_s}", "{other}") filled for one identity."""
    possessive = author + ("'" if author.endswith("s") else "'s")
    return (
        text.replace("{author_s}", possessive)
        .replace("{name}", name)
        .replace("{author}", author)
        .replace("{other}", other)
    )


def _conflicts(other: str, name: str, author: str) -> bool:
    """Whether "Are you OTHER?" could be true for this identity (then it is not asked)."""
    o, n, a = other.lower(), name.lower(), author.lower()
    return o in n or n in o or o in a or a in o


def _clash(other: str, identities: set[tuple[str, str]]) -> bool:
    return any(_conflicts(other, *w) for w in identities)


def _sentences(text: str) -> int:
    return max(1, len(_SENTENCE_END.findall(text)))


def _pick_weighted(rng: random.Random, weights: dict[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


class _Sampler:
    def __init__(
        self, tables: dict[str, Table], ident: Identity, langs: list[str], rng: random.Random
    ):
        self.tables, self.langs, self.rng = tables, langs, rng
        self.who = {lang: (ident.name_in(lang), ident.author_in(lang)) for lang in tables}
        self.concise = {s for t in tables.values() for s in t["system_prompts"].get("concise", [])}
        self.persona: tuple[str, str] | None = None  # the operator's (name, maker) in this sample

    def fill(self, lang: str, text: str, other: str = "") -> str:
        return fill(text, *(self.persona or self.who[lang]), other)

    def system(self, lang: str) -> tuple[str, str | None]:
        kind = _pick_weighted(self.rng, _SYSTEM_WEIGHTS)
        if kind == "none":
            return kind, None
        if kind == "base":
            return kind, self.rng.choice(self.tables[lang]["system_prompts"]["base"])
        slang = lang
        if len(self.langs) > 1 and self.rng.random() < 0.25:
            slang = self.other_lang(lang)
        table = self.tables[slang]
        if kind == "persona":
            who = set(self.who.values())
            ok = [p for p in table["personas"] if not any(_clash(x, who) for x in p)]
            if not ok or not table["system_prompts"].get("persona"):
                return "none", None
            # any name with any maker: read from the prompt, not recalled as a fixed pair
            self.persona = (self.rng.choice(ok)[0], self.rng.choice(ok)[1])
        return kind, self.fill(slang, self.rng.choice(table["system_prompts"][kind]))

    def other_lang(self, lang: str) -> str:
        """One of the generated languages other than `lang` (needs two or more)."""
        return self.rng.choice([x for x in self.langs if x != lang])

    def question(
        self, lang: str, intent: str, prefix_kind: str | None, follow: bool = False
    ) -> tuple[str, str]:
        """A filled question of `intent` and the thing it names (for negatives), else ""."""
        rng, table = self.rng, self.tables[lang]
        other = ""
        if intent in NEGATIVE_INTENTS:
            who = {self.persona or self.who[lang], self.who[lang]}
            other = rng.choice([o for o in table["others"][intent] if not _clash(o, who)])
            stem = rng.choice(table["negative_questions"][intent]).replace("{other}", other)
        elif follow:
            stem = rng.choice(table["follow_ups"][intent])
        else:
            stem = rng.choice(table["questions"][intent])
        prefix = ""
        if prefix_kind == "transition" and rng.random() < _TRANSITION_SHARE:
            prefix = rng.choice(_prefix_pool(table, stem, True) or [""])
        elif prefix_kind and rng.random() < _PREFIX_SHARE:
            prefix = rng.choice(_prefix_pool(table, stem, False) or [""])
        styles = table["styles"]
        style = rng.choices(list(styles), weights=[s["weight"] for s in styles.values()])[0]
        return self.fill(lang, _style(table, _join(table, prefix, stem), style)), other

    def answer(self, lang: str, intent: str, other: str, concise: bool) -> str:
        table = self.tables[lang]
        name, author = self.persona or self.who[lang]
        pool = list(table["answers"][intent])
        if name == author:
            pool += table["same_answers"].get(intent, [])
        if concise:
            short = [a for a in pool if _sentences(a) == 1]
            if not short:  # e.g. introductions: fall back to one-sentence answers with both
                short = [
                    a
                    for a in table["answers"]["name"] + table["answers"]["what"]
                    if _sentences(a) == 1 and "{author}" in a
                ]
            pool = short or pool
        return self.fill(lang, self.rng.choice(pool), other)

    def unrelated(self, lang: str, k: int, arithmetic: bool = False) -> list[tuple[str, str]]:
        """`k` distinct unrelated exchanges: facts, requests, near misses, sums."""
        rng, table = self.rng, self.tables[lang]
        pairs = rng.sample(table["chat"], k)
        for i in range(k):
            if rng.random() < _NEAR_MISS_SHARE and table["near_miss"]:
                pairs[i] = near_miss.sample(lang, rng, table)
        if arithmetic and rng.random() < 0.2 and "arithmetic" in table:
            pairs[0] = _arithmetic(table["arithmetic"], rng)
        return pairs

    def sample(self) -> tuple[dict, list[str | None]]:
        rng = self.rng
        lang = rng.choice(self.langs)
        self.persona = None
        _, system = self.system(lang)
        concise = system in self.concise
        msgs: list[dict] = [{"role": "system", "content": system}] if system else []
        intents: list[str | None] = []

        def turn(user: str, assistant: str, intent: str | None) -> None:
            msgs.append({"role": "user", "content": user})
            msgs.append({"role": "assistant", "content": assistant})
            intents.append(intent)

        if rng.random() < _GENERAL_SHARE:
            # no identity question: the assistant just answers, so the name stays out of
            # answers that have nothing to do with it
            pairs = self.unrelated(lang, 1 if rng.random() < 0.8 else 2, arithmetic=True)
            if len(pairs) == 2 and len(self.langs) > 1 and rng.random() < _SWITCH_SHARE:
                pairs[1] = self.unrelated(self.other_lang(lang), 1)[0]
            for q, a in pairs:
                turn(q, a, None)
            return {"messages": msgs}, intents

        intent = _pick_weighted(rng, _INTENT_WEIGHTS)
        multi = rng.random() < _MULTI_SHARE
        last = lang  # users switch languages mid-chat: the answer follows the last question
        if multi and len(self.langs) > 1 and rng.random() < _SWITCH_SHARE:
            last = self.other_lang(lang)
        if multi and rng.random() < _FOLLOW_SHARE:
            # identity first, then a follow-up about the other half of the identity
            first = rng.choice(["name", "intro", "what"] if rng.random() < 0.7 else ["maker"])
            q, other = self.question(lang, first, "any")
            turn(q, self.answer(lang, first, other, concise), first)
            second = "name" if first == "maker" else "maker"
            q, other = self.question(last, second, None, follow=True)
            turn(q, self.answer(last, second, other, concise), second)
        else:
            if multi:
                for q, a in self.unrelated(lang, 1 if rng.random() < 0.7 else 2):
                    turn(q, a, None)
            q, other = self.question(last, intent, "transition" if multi else "any")
            turn(q, self.answer(last, intent, other, concise), intent)
        return {"messages": msgs}, intents


def _arithmetic(table: dict, rng: random.Random) -> tuple[str, str]:
    """A two-digit sum, difference or product, phrased from `table`, with its correct answer."""
    a, b = rng.randint(11, 99), rng.randint(11, 99)
    op = rng.choice("+-*")
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    q = rng.choice(table["questions"])
    q = q.replace("{a}", str(a)).replace("{w}", table["words"][op]).replace("{b}", str(b))
    answer = table["answer"].replace("{a}", str(a)).replace("{sign}", _SIGNS[op])
    return q, answer.replace("{b}", str(b)).replace("{value}", str(value))


def _identity(name, author, name_zh, author_zh) -> Identity:
    name, author = (name or "").strip(), (author or "").strip()
    if not name:
        raise UserError("the assistant name is empty; pass --name NAME")
    if not author:
        raise UserError("the author is empty; pass --author AUTHOR")
    return Identity(
        name, author, (name_zh or "").strip() or None, (author_zh or "").strip() or None
    )


def _generate(
    ident: Identity, langs: Sequence[str] = ("zh", "en"), n: int = 1000, seed: int = 0,
    phrase_files: Sequence[str | Path] = (),
) -> list[tuple[dict, list[str | None]]]:  # fmt: skip
    """`generate` for a checked identity, with each assistant turn's intent (None: unrelated)."""
    if isinstance(langs, str):
        langs = [x.strip() for x in langs.split(",")]
    langs = list(dict.fromkeys(x.strip().lower() for x in langs if x and x.strip()))
    if not langs:
        raise UserError(f"no language given; choose from: {', '.join(LANGS)}")
    tables = phrases.tables(phrase_files)
    for lang in langs:
        _table(tables, lang)
    left_out = [lang for lang in tables if lang not in LANGS and lang not in langs]
    if left_out:
        raise UserError(
            f"a phrase file adds language {left_out[0]!r}, which is not asked for: pass "
            f"--lang {','.join([*langs, left_out[0]])}"
        )
    check_count(n)
    sampler = _Sampler(tables, ident, langs, random.Random(seed))
    seen: set[str] = set()
    out = []
    for _ in range(n):
        # prefer conversations not produced yet; accept a repeat only once many tries failed
        for _try in range(50):
            row, intents = sampler.sample()
            key = json.dumps(row, ensure_ascii=False, sort_keys=True)
            if key not in seen:
                break
        seen.add(key)
        out.append((row, intents))
    return out


def generate(
    name: str,
    author: str,
    name_zh: str | None = None,
    author_zh: str | None = None,
    langs: Sequence[str] = ("zh", "en"),
    n: int = 1000,
    seed: int = 0,
    phrase_files: Sequence[str | Path] = (),
) -> list[dict]:
    """Identity conversations as [{"messages": [{"role": ..., "content": ...}, ...]}, ...].

    `name_zh`/`author_zh` are used in Chinese samples (default: the English strings). Each answer
    to an identity question contains the name; each answer about the maker contains the author.
    `phrase_files` add phrasings or languages (see `phrases.py`). Deterministic for a given `seed`.
    """
    check_count(n)
    ident = _identity(name, author, name_zh, author_zh)
    return [row for row, _ in _generate(ident, langs, n, seed, phrase_files)]


def check_count(n: object) -> int:
    """`n` as a number of conversations to make, or one line saying why not (before any work)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    if n > MAX_CONVERSATIONS:
        raise UserError(
            f"--n {n}: at most {MAX_CONVERSATIONS} conversations (all are held in memory to "
            f"avoid repeats: {MAX_CONVERSATIONS} take about 200 MB and 30 s; an identity is "
            "learnt from about 1000)"
        )
    return n
