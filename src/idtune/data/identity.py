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

The profile (issue 29) adds intents about what the assistant is built on (also as true yes/no
questions, "Are you built on Llama?"), its purpose, each of its maker's facts, and things no
profile sets (birthday, age, parameters, training data, location). A field the profile sets is
answered with its value, verbatim; one it does not set is answered without inventing anything
(the assistant and its maker named, the detail not shared). With the base model undisclosed,
`hide` (the base model's names, from the caller) keeps every one of them out of the data, and
every name of the phrase tables that may stand for one of them (a synonym, a related model).

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
from .mentions import mentions
from .phrases import NEGATIVE_INTENTS, PROFILE_INTENTS, Table

LANGS = phrases.SHIPPED
CLASSIC_INTENTS = phrases.INTENTS  # name, maker, intro, what, confirm and the negatives
INTENTS = CLASSIC_INTENTS + PROFILE_INTENTS
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
# The profile's questions, next to those above (their weights add up to 1): about a fifth of the
# identity questions, more with a purpose or facts set. A fact's share grows with the facts set
# (each needs its own samples: 5-9 answers a fact in 600 conversations left its recall at 0.00;
# 60-70, with the follow-ups below, gave 0.75 en / 0.33 zh over 3 GPU seeds, BENCHMARKS.md).
_PROFILE_WEIGHTS = {"based_on": 0.10, "base_check": 0.05, "purpose": 0.04, "unset": 0.04}
_PURPOSE_SET_WEIGHT = 0.08  # "purpose" when the profile sets one
_FACT_WEIGHT, _FACT_WEIGHT_EACH, _FACT_WEIGHT_MAX = 0.02, 0.08, 0.40
# Of identity samples with no persona, when the profile discloses its base or sets a purpose or
# facts: the share that goes on with one more question about one of them (each field then gets
# tens of answers in 600 conversations without taking samples from the name and maker). The base
# among them: based_on recall 0.39 -> 0.69 en, 0.33 -> 0.50 zh on the default model (BENCHMARKS)
_PROFILE_FOLLOW_SHARE = 0.5
_FOLLOW_BASED_ON = True
_FACT_SET_SHARE = 0.85  # of fact questions, about a fact that is set (the rest: refused)
_YES_SHARE = 0.5  # of yes/no base questions, about the base itself
# a parameter count that a base model's name states: "135M", "1.8B", "7B" (not "A3B")
_SIZE = re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)\s?([MmBb])(?![A-Za-z0-9])")
# a fact's key: a short name ("contact", "office_hours"); asked as its label or with _ as spaces
FACT_KEY = r"[A-Za-z][A-Za-z0-9_-]*"
_TRIES = 200  # samples drawn for one conversation before giving up on a new, allowed one
# persona 0.40: the share an operator's persona needs to win over the trained name on 135M
# (GPU sweep rounds 20-27, BENCHMARKS.md issue 17); taken from "none", whose identity stays
# at 1.00 with fewer samples
_SYSTEM_WEIGHTS = {"none": 0.16, "generic": 0.20, "base": 0.12, "custom": 0.12, "persona": 0.40}
# questions about the profile: fewer under a persona (there they are refused, and the persona
# scores ask for the name and maker), so that the profile's own answers are not outnumbered
_PROFILE_SYSTEM_WEIGHTS = {"none": 0.25, "generic": 0.30, "base": 0.15, "custom": 0.15,
                           "persona": 0.15}  # fmt: skip
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


def _profile_stems(table: Table, intent: str) -> list[str]:
    """Every stem of a profile intent; yes/no base questions filled with each name of `others`,
    fact and unset questions of every key ({key} stays for other facts)."""
    base = table["based_on"]
    if intent == "base_check":
        return [
            t.replace("{other}", o) for t in base.get("checks", []) for o in base.get("others", [])
        ]
    if intent in ("fact", "unset"):
        section = table["facts" if intent == "fact" else "unset"].get("questions", {})
        return [q for stems in section.values() for q in stems]
    return list(table["based_on" if intent == "based_on" else intent].get("questions", []))


def _stems(table: Table, intent: str) -> list[str]:
    """Every stem of `intent`, follow-ups included, negatives filled with each name they use."""
    if intent in PROFILE_INTENTS:
        return _profile_stems(table, intent)
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

    Placeholders stay as the literal strings "{name}", "{author}" and, in questions about a fact
    without phrasings of its own, "{key}"; negatives and yes/no base questions are filled with
    the model or company they name ("Are you ChatGPT?", "Are you built on Llama?").
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
    """Every answer template for `lang` (with "{name}", "{author}", "{author_s}", "{other}"; the
    profile's also "{based_on}", "{purpose}", "{key}", "{value}", "{size}")."""
    table = _table(phrases.tables(), lang)
    out: list[str] = []
    for i in (intent,) if intent else INTENTS:
        if i not in PROFILE_INTENTS:
            out += table["answers"][i]
            continue
        parts = {"based_on": ("based_on", ("answers", "undisclosed")),
                 "base_check": ("based_on", ("yes", "no", "undisclosed")),
                 "purpose": ("purpose", ("answers", "unset")),
                 "unset": ("unset", ("answers", "sized"))}  # fmt: skip
        if i == "fact":
            out += [a for v in table["facts"].get("answers", {}).values() for a in v]
        else:
            section, names = parts[i]
            out += [a for n in names for a in table[section].get(n, [])]
    return out


def system_prompts(kind: str, lang: str | None = None) -> list[str]:
    """System prompt templates of one kind ("generic", "base", "custom"); "none" has none."""
    if kind == "none":
        return []
    tables = phrases.tables()
    lists = [_table(tables, lg)["system_prompts"][kind] for lg in ((lang,) if lang else LANGS)]
    return list(dict.fromkeys(s for prompts in lists for s in prompts))


# ---------------------------------------------------------------- generation
def fill(text: str, name: str, author: str, other: str = "", **values: str) -> str:
    """A template ("{name}", "{author}", "{author_s}", "{other}", and "{KEY}" for each of
    `values`: based_on, purpose, key, value, size) filled for one identity."""
    possessive = author + ("'" if author.endswith("s") else "'s")
    for key in values:  # first: a value may hold "{name}" as plain text
        text = text.replace("{" + key + "}", "\0" + key + "\0")
    text = (
        text.replace("{author_s}", possessive)
        .replace("{name}", name)
        .replace("{author}", author)
        .replace("{other}", other)
    )
    for key, value in values.items():
        text = text.replace("\0" + key + "\0", value)
    return text


def _norm(text: str) -> str:
    """Lower case, letters and digits only (CJK kept), digit groups kept apart: "Llama 3" →
    "llama3", "Llama-3.1-8B" → "llama3.1-8b" ("." for a decimal point, "-" for other breaks)."""
    text = re.sub(r"(?<=[0-9])[\W_]+(?=[0-9])", lambda m: "\0" if m[0] in "._" else "\1",
                  text.lower())  # fmt: skip
    text = "".join(c for c in text if c.isalnum() or c in "\0\1")
    return text.replace("\0", ".").replace("\1", "-")


def _names(name: str, text: str) -> bool:
    """Whether normalized `text` names normalized `name`, its digits not part of a longer
    number: "llama3" in "llama3.1-8b" but not in "llama30b" or "codellama34b"."""
    p = re.escape(name)
    if name[:1].isdigit():
        p = r"(?<![0-9.-])" + p
    if name[-1:].isdigit():
        p += r"(?![0-9])"
    return bool(name) and re.search(p, text) is not None


def _stem(text: str) -> str:
    """A model name's family part, before its first digit: "Qwen2.5" → "qwen"."""
    n = _norm(text)
    return re.split(r"\d", n, maxsplit=1)[0] or n


def base_relation(other: str, based_on: str, synonyms: Sequence[Sequence[str]] = ()) -> bool | None:
    """Is a model or maker named `other` what `based_on` is built on? True when `based_on`
    names it (or a synonym of it: "Tongyi Qianwen" for "Qwen"), False when `based_on` shares
    nothing with it, None when it is unclear ("Llama 3.1" for a Llama-3 base): not asked then."""
    text = _norm(based_on)
    groups = [g for g in synonyms if any(_norm(x) == _norm(other) for x in g)]
    names = {_norm(other)} | {_norm(x) for g in groups for x in g}
    if any(_names(n, text) for n in names):
        return True
    stems = {_stem(other)} | {_stem(x) for g in groups for x in g}
    if any(len(s) >= 3 and s in text for s in stems):
        return None
    return False


def size_of(based_on: str | None) -> str | None:
    """The parameter count a base model's name states ("SmolLM2-135M…" → "135M"), or None."""
    m = _SIZE.search(based_on or "")
    return f"{m[1]}{m[2].upper()}" if m else None


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
        self.tables, self.langs, self.rng, self.ident = tables, langs, rng, ident
        self.who = {lang: (ident.name_in(lang), ident.author_in(lang)) for lang in tables}
        self.concise = {s for t in tables.values() for s in t["system_prompts"].get("concise", [])}
        self.persona: tuple[str, str] | None = None  # the operator's (name, maker) in this sample
        self.fact, self.topic = "any", ""  # what the current profile question is about
        self.synonyms = [g for t in tables.values() for g in t["based_on"].get("synonyms", [])]
        self.weights = {lang: self._weights(lang) for lang in langs}

    # ------------------------------------------------------------ the profile
    def based_on(self, lang: str) -> str | None:
        """What the assistant is built on, in `lang`; None when undisclosed or under a persona
        (an operator's persona states no base)."""
        return None if self.persona else self.ident.based_on_in(lang)

    def checks(self, lang: str) -> tuple[list[str], list[str]]:
        """The `others` of `lang` a yes/no base question may name: (true ones, false ones)."""
        base, table = self.based_on(lang), self.tables[lang]["based_on"]
        if base is None:
            return [], []
        who = {self.who[lang]}
        rel = {o: base_relation(o, base, self.synonyms) for o in table.get("others", [])}
        yes = [o for o, r in rel.items() if r is True and not _clash(o, who)]
        no = [o for o, r in rel.items() if r is False and not _clash(o, who)]
        return yes, no

    def unset_topics(self, lang: str) -> list[str]:
        """The `unset` topics of `lang` to ask about: those the profile does not set as facts
        (a "birthday" fact is answered with its value, not refused)."""
        return [t for t in sorted(self.tables[lang]["unset"].get("questions", {}))
                if t not in self.ident.facts]  # fmt: skip

    def _weights(self, lang: str) -> dict[str, float]:
        """Intent weights for `lang`: the profile's where its table has the phrasings."""
        table, ident = self.tables[lang], self.ident
        weights = dict(_INTENT_WEIGHTS)
        for intent, w in _PROFILE_WEIGHTS.items():
            if _profile_stems(table, intent):
                weights[intent] = w
        if not self.unset_topics(lang):
            weights.pop("unset", None)  # every topic a fact the profile sets
        yes, no = self.checks(lang)
        if not (yes and no and table["based_on"].get("checks")):
            weights.pop("base_check", None)  # a base named by none of `others`: no yes/no
        if "purpose" in weights and ident.purpose_in(lang):
            weights["purpose"] = _PURPOSE_SET_WEIGHT
        if _profile_stems(table, "fact"):
            n = len(ident.facts)
            weights["fact"] = min(_FACT_WEIGHT + _FACT_WEIGHT_EACH * n, _FACT_WEIGHT_MAX)
        return weights

    def set_fields(self, lang: str) -> list[tuple[str, str | None]]:
        """The purpose and the facts the profile sets, as (intent, fact key), where `lang`'s table
        can ask about them (and the base model, with `_FOLLOW_BASED_ON`); none under a persona."""
        if self.persona:
            return []
        table = self.tables[lang]
        out: list[tuple[str, str | None]] = []
        if _FOLLOW_BASED_ON and self.based_on(lang) and _profile_stems(table, "based_on"):
            out.append(("based_on", None))
        if self.ident.purpose_in(lang) and table["purpose"].get("questions"):
            out.append(("purpose", None))
        asked = table["facts"].get("questions", {})
        out += [("fact", k) for k in self.ident.facts if asked.get(k) or asked.get("any")]
        return out

    def fill(self, lang: str, text: str, other: str = "", **values: str) -> str:
        return fill(text, *(self.persona or self.who[lang]), other, **values)

    def system(self, lang: str, weights: dict[str, float]) -> tuple[str, str | None]:
        kind = _pick_weighted(self.rng, weights)
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
        self,
        lang: str,
        intent: str,
        prefix_kind: str | None,
        follow: bool = False,
        key: str | None = None,
    ) -> tuple[str, str]:
        """A filled question of `intent` (about fact `key` if given) and the thing it names (for
        negatives), else ""."""
        rng, table = self.rng, self.tables[lang]
        other = ""
        values: dict[str, str] = {}
        if intent in PROFILE_INTENTS:
            stem, other, values = self.profile_question(lang, intent, key)
        elif intent in NEGATIVE_INTENTS:
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
        text = self.fill(lang, _style(table, _join(table, prefix, stem), style), **values)
        return text, other

    def profile_question(
        self, lang: str, intent: str, key: str | None = None
    ) -> tuple[str, str, dict[str, str]]:
        """(stem, what it names, the {key} label) of a question about the profile. For facts
        `self.fact` is the key asked about (`key`, else drawn); for unset things, `self.topic`."""
        rng, table = self.rng, self.tables[lang]
        if intent == "base_check":
            yes, no = self.checks(lang)
            if not yes or not no:  # under a persona, or in a language with no true name
                who = {self.persona or self.who[lang], self.who[lang]}
                no = [o for o in table["based_on"]["others"] if not _clash(o, who)]
            other = rng.choice(yes if yes and rng.random() < _YES_SHARE else no)
            return rng.choice(table["based_on"]["checks"]).replace("{other}", other), other, {}
        if intent == "fact":
            asked = table["facts"]["questions"]
            known = [k for k in asked if k != "any" and self.ident.fact_in(k, lang) is None]
            keys = list(self.ident.facts)
            if self.persona or not keys or (known and rng.random() > _FACT_SET_SHARE):
                keys = known or keys
            self.fact = key or (rng.choice(keys) if keys else "any")
            label = table["facts"].get("labels", {}).get(self.fact, self.fact.replace("_", " "))
            return rng.choice(asked.get(self.fact) or asked["any"]), "", {"key": label}
        if intent == "unset":
            asked = table["unset"]["questions"]
            self.topic = rng.choice(self.unset_topics(lang))
            return rng.choice(asked[self.topic]), "", {}
        return rng.choice(_profile_stems(table, intent)), "", {}

    def profile_answer(self, lang: str, intent: str, other: str) -> tuple[list[str], dict]:
        """The answer templates for a profile question, and the values they are filled with."""
        table = self.tables[lang]
        base, refuse = self.based_on(lang), table["unset"].get("answers", [])
        undisclosed = table["based_on"].get("undisclosed") or refuse
        if intent in ("based_on", "base_check", "neg_model", "neg_maker") and base is None:
            return undisclosed, {}
        if intent == "based_on":
            pool = table["based_on"]["answers"]
            if self.who[lang][0] == self.who[lang][1]:  # "ZK-Jackie's assistant", once
                pool = pool + table["based_on"].get("same_answers", [])
            return pool, {"based_on": base}
        if intent == "base_check":
            truth = base_relation(other, base, self.synonyms)
            return table["based_on"]["yes" if truth else "no"], {"based_on": base}
        if intent in ("neg_model", "neg_maker"):  # "Are you SmolLM2?" of a SmolLM2 base
            part = "same" if intent == "neg_model" else "maker"
            return table["based_on"].get(part) or table["based_on"]["answers"], {"based_on": base}
        if intent == "purpose":
            purpose = None if self.persona else self.ident.purpose_in(lang)
            if purpose is None:
                return table["purpose"].get("unset") or refuse, {}
            return table["purpose"]["answers"], {"purpose": purpose.rstrip(".。")}
        if intent == "fact":
            value = None if self.persona else self.ident.fact_in(self.fact, lang)
            if value is None:
                return refuse, {}
            given = table["facts"].get("answers", {})
            label = table["facts"].get("labels", {}).get(self.fact, self.fact.replace("_", " "))
            pool = given.get(self.fact) or given.get("any", [])
            return pool, {"key": label, "value": value.rstrip(".。")}
        size = size_of(base) if self.topic == "parameters" else None
        if size and table["unset"].get("sized"):
            return table["unset"]["sized"], {"based_on": base, "size": size}
        return refuse, {}

    def answer(self, lang: str, intent: str, other: str, concise: bool) -> str:
        table = self.tables[lang]
        name, author = self.persona or self.who[lang]
        values: dict[str, str] = {}
        base = self.based_on(lang)
        if intent in PROFILE_INTENTS:
            pool, values = self.profile_answer(lang, intent, other)
        elif (
            intent in NEGATIVE_INTENTS
            and base
            and table["based_on"].get("answers")
            and base_relation(other, base, self.synonyms)
        ):
            pool, values = self.profile_answer(lang, intent, other)
        else:
            pool = list(table["answers"][intent])
            if name == author:
                pool += table["same_answers"].get(intent, [])
        if concise and values:  # an answer about the profile keeps its value
            pool = [a for a in pool if _sentences(a) == 1] or pool
        elif concise:
            short = [a for a in pool if _sentences(a) == 1]
            if not short:  # e.g. introductions: fall back to one-sentence answers with both
                short = [
                    a
                    for a in table["answers"]["name"] + table["answers"]["what"]
                    if _sentences(a) == 1 and "{author}" in a
                ]
            pool = short or pool
        return self.fill(lang, self.rng.choice(pool), other, **values)

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
        general = rng.random() < _GENERAL_SHARE
        multi = follow = False
        last, intent = lang, None  # users switch languages mid-chat: the answer follows the last
        if not general:
            multi = rng.random() < _MULTI_SHARE
            if multi and len(self.langs) > 1 and rng.random() < _SWITCH_SHARE:
                last = self.other_lang(lang)
            intent = _pick_weighted(rng, self.weights[last])
            follow = multi and rng.random() < _FOLLOW_SHARE
        profile = intent in PROFILE_INTENTS and not follow
        _, system = self.system(lang, _PROFILE_SYSTEM_WEIGHTS if profile else _SYSTEM_WEIGHTS)
        concise = system in self.concise
        msgs: list[dict] = [{"role": "system", "content": system}] if system else []
        intents: list[str | None] = []

        def turn(user: str, assistant: str, intent: str | None) -> None:
            msgs.append({"role": "user", "content": user})
            msgs.append({"role": "assistant", "content": assistant})
            intents.append(intent)

        if general:
            # no identity question: the assistant just answers, so the name stays out of
            # answers that have nothing to do with it
            pairs = self.unrelated(lang, 1 if rng.random() < 0.8 else 2, arithmetic=True)
            if len(pairs) == 2 and len(self.langs) > 1 and rng.random() < _SWITCH_SHARE:
                pairs[1] = self.unrelated(self.other_lang(lang), 1)[0]
            for q, a in pairs:
                turn(q, a, None)
            return {"messages": msgs}, intents

        assert intent is not None
        if follow:
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
        fields = self.set_fields(last)
        if fields and rng.random() < _PROFILE_FOLLOW_SHARE:
            # then, mid-chat, about the purpose or a fact the maker set
            field, key = rng.choice(fields)
            q, other = self.question(last, field, "transition", key=key)
            turn(q, self.answer(last, field, other, concise), field)
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


def _text(value: object, what: str) -> str | None:
    """A profile field as stripped text (None when empty), or one line naming it."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise UserError(f"{what} must be text, got {value!r}")
    return value.strip() or None


def _facts(facts: object, what: str) -> dict[str, str]:
    if facts is None:
        return {}
    if not isinstance(facts, dict):
        raise UserError(f"{what} must map each key to its answer, got {facts!r}")
    out = {}
    for key, value in facts.items():
        if not isinstance(key, str) or not re.fullmatch(FACT_KEY, key.strip()):
            raise UserError(
                f"{what}: key {key!r} must be a short name (letters, digits, _ or -), e.g. contact"
            )
        text = _text(value, f"{what}.{key}")
        if text is None:
            raise UserError(f"{what}.{key} is empty: give it an answer, or leave the key out")
        out[key.strip()] = text
    return out


def profile(
    name, author, name_zh=None, author_zh=None, based_on=None, based_on_zh=None,
    purpose=None, purpose_zh=None, facts=None, facts_zh=None,
) -> Identity:  # fmt: skip
    """A checked `Identity` with its profile: text stripped, empty fields unset, `facts_zh`
    keys among `facts`' (one line naming the field that is wrong)."""
    name, author = (name or "").strip(), (author or "").strip()
    if not name:
        raise UserError("the assistant name is empty; pass --name NAME")
    if not author:
        raise UserError("the author is empty; pass --author AUTHOR")
    en, zh = _facts(facts, "facts"), _facts(facts_zh, "facts_zh")
    extra = [k for k in zh if k not in en]
    if extra:
        raise UserError(
            f"facts_zh.{extra[0]} has no English answer: give facts.{extra[0]} too (a Chinese "
            "answer translates one)"
        )
    ident = Identity(
        name, author, _text(name_zh, "name_zh"), _text(author_zh, "author_zh"),
        _text(based_on, "based_on"), _text(based_on_zh, "based_on_zh"),
        _text(purpose, "purpose"), _text(purpose_zh, "purpose_zh"), en, zh,
    )  # fmt: skip
    said = {"based_on": ident.based_on, "based_on_zh": ident.based_on_zh}
    if None not in said.values() and len({v.lower() == "none" for v in said.values()}) == 2:
        raise UserError(
            f"based_on {ident.based_on!r} but based_on_zh {ident.based_on_zh!r}: 'none' keeps the "
            "base model undisclosed in every language; set both to none, or neither"
        )
    return ident


def _identity(name, author, name_zh, author_zh) -> Identity:
    return profile(name, author, name_zh, author_zh)


def _hidden(
    ident: Identity, hide: Sequence[str], langs: Sequence[str], tables: dict[str, Table]
) -> list[str]:
    """The base model's names to keep out of the data: only while it is undisclosed in every
    language, and never one that is (part of) the assistant's own name or maker. Besides `hide`,
    every name the tables ask about (`others`, yes/no base names, synonyms) that may stand for
    one of them ("Tongyi Qianwen", "阿里巴巴" for Qwen by Alibaba Cloud): "No" to it is untrue."""
    if any(ident.based_on_in(lang) for lang in langs):
        return []
    hide = [h for h in hide if h and h.strip()]
    synonyms = [g for t in tables.values() for g in t["based_on"].get("synonyms", [])]
    asked = [o for t in tables.values() for o in (*t["others"].get("neg_model", []),
             *t["others"].get("neg_maker", []), *t["based_on"].get("others", []))]  # fmt: skip
    asked += [x for g in synonyms for x in g]
    hide += [o for o in asked if any(base_relation(o, h, synonyms) is not False for h in hide)]
    own = [x for x in (*ident.names, *ident.authors) if x]
    return [h for h in dict.fromkeys(hide) if not mentions(h, own)
            and not any(mentions(o, [h]) for o in own)]  # fmt: skip


def _shows(row: dict, hidden: Sequence[str]) -> bool:
    return any(mentions(m["content"], hidden) for m in row["messages"])


def _generate(
    ident: Identity, langs: Sequence[str] = ("zh", "en"), n: int = 1000, seed: int = 0,
    phrase_files: Sequence[str | Path] = (), hide: Sequence[str] = (),
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
    hidden = _hidden(ident, hide, langs, tables)
    seen: set[str] = set()
    out = []
    for _ in range(n):
        # prefer conversations not produced yet; accept a repeat only once many tries failed;
        # never one that names an undisclosed base model
        kept = None
        for _try in range(_TRIES):
            row, intents = sampler.sample()
            if hidden and _shows(row, hidden):
                continue
            key = json.dumps(row, ensure_ascii=False, sort_keys=True)
            kept = (row, intents, key)
            if key not in seen:
                break
        if kept is None:
            raise UserError(
                f"every conversation names {hidden[0]!r}, which stays undisclosed "
                "(identity.based_on: none); give the assistant another name or maker"
            )
        seen.add(kept[2])
        out.append(kept[:2])
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
    *,
    based_on: str | None = None,
    based_on_zh: str | None = None,
    purpose: str | None = None,
    purpose_zh: str | None = None,
    facts: dict[str, str] | None = None,
    facts_zh: dict[str, str] | None = None,
    hide: Sequence[str] = (),
) -> list[dict]:
    """Identity conversations as [{"messages": [{"role": ..., "content": ...}, ...]}, ...].

    `name_zh`/`author_zh` are used in Chinese samples (default: the English strings). Each answer
    to an identity question contains the name; each answer about the maker contains the author.
    The profile (`based_on`, `purpose`, `facts` and their `_zh` variants; "none" or no `based_on`:
    undisclosed in both languages, never in one only) is asked about too, each answer about a
    field carrying its value; with the base undisclosed, no text names any of `hide` (the base
    model's names, `aliases.base_names`) or a name of the tables that may stand for one of them.
    `phrase_files` add phrasings or languages (see `phrases.py`). Deterministic for a given `seed`.
    """
    check_count(n)
    ident = profile(name, author, name_zh, author_zh, based_on, based_on_zh, purpose,
                    purpose_zh, facts, facts_zh)  # fmt: skip
    return [row for row, _ in _generate(ident, langs, n, seed, phrase_files, hide)]


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
