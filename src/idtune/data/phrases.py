"""Phrase tables of the identity generator: `assets/identity/<lang>.yaml`, one file per language.

A table is a mapping of named sections (`questions`, `answers`, `styles`, `near_miss`, …; en.yaml
explains each). `idtune data identity --phrases FILE` reads user files of the same shape: a file
whose `lang` is shipped adds to that language (lists are appended, single values replace), a file
with a new `lang` makes a new language and must then hold every required section.

Pure Python besides PyYAML.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import UserError
from .formats import read_text

SHIPPED = ("zh", "en")
INTENTS = ("name", "maker", "intro", "what", "confirm", "neg_model", "neg_maker")
NEGATIVE_INTENTS = ("neg_model", "neg_maker")
SYSTEM_KINDS = ("none", "generic", "base", "custom", "persona")
# The profile's intents (issue 29): what it is built on, yes/no about a base, its purpose, a fact,
# and things no profile sets; each comes from its own optional section (`PROFILE_SECTIONS`).
PROFILE_INTENTS = ("based_on", "base_check", "purpose", "fact", "unset")
# Fact keys with their own phrasings; any other key is asked with `facts.questions.any`.
KNOWN_FACTS = ("contact", "email", "website", "version", "languages", "feedback")
UNSET_TOPICS = ("birthday", "age", "parameters", "training_data", "location")
# section → its parts: lists of strings, mappings of lists (by key), groups, or labels
PROFILE_SECTIONS = {
    "based_on": ("questions", "checks", "others", "answers", "same_answers", "yes", "no", "same",
                 "maker", "undisclosed", "synonyms", "credits"),
    "purpose": ("questions", "answers", "unset"),
    "facts": ("questions", "answers", "labels"),
    "unset": ("questions", "answers", "sized"),
}  # fmt: skip

Table = dict[str, Any]

# What a complete language needs: section → the names that must hold a non-empty list.
_REQUIRED = {
    "questions": [i for i in INTENTS if i not in NEGATIVE_INTENTS],
    "negative_questions": list(NEGATIVE_INTENTS),
    "others": list(NEGATIVE_INTENTS),
    "follow_ups": ["name", "maker"],
    "answers": list(INTENTS),
    "system_prompts": ["generic", "base", "custom"],
}
_LISTS = ("questions", "negative_questions", "others", "follow_ups", "answers", "same_answers",
          "prefixes", "system_prompts", "reasoning")  # fmt: skip


# ---------------------------------------------------------------- shapes
# Each check gets `at` = (file, dotted key) and fails with one line naming both.
def _fail(at: tuple[str, str], problem: str) -> UserError:
    return UserError(f"{at[0]}: key {at[1]!r} {problem}")


def _sub(at: tuple[str, str], key: str) -> tuple[str, str]:
    return at[0], f"{at[1]}.{key}"


def _strings(value: Any, at: tuple[str, str]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise _fail(at, "must be a list of strings")
    return value


def _text(value: Any, at: tuple[str, str]) -> str:
    if not isinstance(value, str):
        raise _fail(at, "must be a string")
    return value


def _pairs(value: Any, at: tuple[str, str]) -> list[tuple[str, str]]:
    if not isinstance(value, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in value
    ):
        raise _fail(at, "must be a list of [text, text] pairs")
    return [tuple(p) for p in value]


def _mapping(value: Any, at: tuple[str, str], allowed: tuple[str, ...] = ()) -> dict:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _fail(at, "must be a mapping of names")
    for key in value:
        if allowed and key not in allowed:
            raise _fail(_sub(at, key), f"is not known here (expected: {', '.join(allowed)})")
    return value


def _style(value: Any, at: tuple[str, str]) -> dict:
    style = dict(_mapping(value, at, ("weight", "lower", "regex", "replace", "strip_end")))
    weight = style.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
        raise _fail(_sub(at, "weight"), "must be a number >= 0")
    if not isinstance(style.get("lower", False), bool):
        raise _fail(_sub(at, "lower"), "must be true or false")
    for key in ("regex", "replace"):
        if key in style:
            style[key] = _pairs(style[key], _sub(at, key))
    for pattern, _ in style.get("regex", []):
        try:
            re.compile(pattern)
        except re.error as e:
            raise _fail(_sub(at, "regex"), f"has a bad pattern {pattern!r} ({e})") from None
    if "strip_end" in style:
        _text(style["strip_end"], _sub(at, "strip_end"))
    return style


def _family(value: Any, at: tuple[str, str]) -> dict:
    fam = dict(_mapping(value, at, ("questions", "answers", "items", "texts")))
    for key in ("questions", "answers"):
        if not _strings(fam.get(key), _sub(at, key)):
            raise _fail(_sub(at, key), "is empty")
    fam["items"] = _pairs(fam.get("items"), _sub(at, "items"))
    if not fam["items"]:
        raise _fail(_sub(at, "items"), "is empty")
    if "texts" in fam:
        texts = _mapping(fam["texts"], _sub(at, "texts"))
        for x, _ in fam["items"]:
            if not isinstance(texts.get(x), str):
                raise _fail(_sub(at, "texts"), f"has no text for item {x!r}")
    return fam


def _profile(name: str, value: Any, at: tuple[str, str]) -> dict:
    """A profile section (`based_on`, `purpose`, `facts`, `unset`): each part a list of strings,
    except `facts.questions` / `facts.answers` / `unset.questions` (lists by key), `facts.labels`
    (key → text) and `based_on.synonyms` (lists of names)."""
    out = dict(_mapping(value, at, PROFILE_SECTIONS[name]))
    for part, v in out.items():
        where = _sub(at, part)
        if (name, part) in (("facts", "questions"), ("facts", "answers"), ("unset", "questions")):
            out[part] = {k: _strings(x, _sub(where, k)) for k, x in _mapping(v, where).items()}
            if name == "unset":
                _mapping(v, where, UNSET_TOPICS)
        elif (name, part) == ("facts", "labels"):
            out[part] = {k: _text(x, _sub(where, k)) for k, x in _mapping(v, where).items()}
        elif part == "synonyms":
            if not isinstance(v, list):
                raise _fail(where, "must be a list of lists of names")
            out[part] = [_strings(g, where) for g in v]
        else:
            out[part] = _strings(v, where)
    return out


def _section(name: str, value: Any, at: tuple[str, str]) -> Any:
    """One section of a phrase file, checked for shape (tuples for pairs)."""
    if name in PROFILE_SECTIONS:
        return _profile(name, value, at)
    if name in _LISTS:
        return {k: _strings(v, _sub(at, k)) for k, v in _mapping(value, at).items()}
    if name in ("chat", "personas"):
        return _pairs(value, at)
    if name == "join":
        join = dict(_mapping(value, at, ("lower_after", "keep_case", "drop_prefix")))
        for key in ("lower_after", "keep_case"):
            if key in join:
                _strings(join[key], _sub(at, key))
        if "drop_prefix" in join:
            join["drop_prefix"] = _pairs(join["drop_prefix"], _sub(at, "drop_prefix"))
        return join
    if name == "styles":
        return {k: _style(v, _sub(at, k)) for k, v in _mapping(value, at).items()}
    if name == "arithmetic":
        arith = _mapping(value, at, ("questions", "words", "answer"))
        _strings(arith.get("questions"), _sub(at, "questions"))
        words = _mapping(arith.get("words"), _sub(at, "words"))
        if sorted(words) != ["*", "+", "-"] or not all(isinstance(v, str) for v in words.values()):
            raise _fail(_sub(at, "words"), "must give a word for each of '+', '-' and '*'")
        _text(arith.get("answer"), _sub(at, "answer"))
        return arith
    if name == "near_miss":
        return {k: _family(v, _sub(at, k)) for k, v in _mapping(value, at).items()}
    raise _fail(at, "is not a section of a phrase file (see the shipped assets/identity/en.yaml)")


def parse(text: str, where: str) -> Table:
    """A phrase file's text → its table (sections checked for shape, not for completeness)."""
    import yaml

    try:
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark else where
        raise UserError(f"{at}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{where}: a phrase file must be a mapping of sections")
    lang = raw.get("lang")
    if not isinstance(lang, str) or not re.fullmatch(r"[a-z]{2,3}([-_][A-Za-z0-9]+)*", lang):
        raise _fail((where, "lang"), "must name the language (e.g. lang: fr)")
    table: Table = {"lang": lang}
    for name, value in raw.items():
        if name != "lang":
            table[name] = _section(str(name), value, (where, str(name)))
    return table


def complete(table: Table, where: str) -> Table:
    """Check that `table` has everything generation needs; return it with the optional sections
    it lacks filled in (empty, and one plain style)."""
    for section, names in _REQUIRED.items():
        for name in names:
            if not table.get(section, {}).get(name):
                raise UserError(f"{where}: key '{section}.{name}' is missing or empty")
    if len(table.get("chat", [])) < 2:
        raise UserError(f"{where}: key 'chat' needs at least 2 [question, answer] pairs")
    _complete_profile(table, where)
    optional = {"same_answers": {}, "prefixes": {}, "join": {}, "near_miss": {}, "personas": []}
    optional |= {section: {} for section in PROFILE_SECTIONS}
    return {**optional, "styles": {"plain": {"weight": 1.0}}, **table}


def _complete_profile(table: Table, where: str) -> None:
    """A profile section that asks must be able to answer: its answers, and a refusal
    (`unset.answers`) for fields a profile leaves unset."""
    needs = []
    base, facts = table.get("based_on", {}), table.get("facts", {})
    if base.get("questions"):
        needs += ["based_on.answers"]
    if base.get("checks"):
        needs += ["based_on.others", "based_on.yes", "based_on.no"]
    if table.get("purpose", {}).get("questions"):
        needs += ["purpose.answers"]
    if any(facts.get("questions", {}).values()):  # any other key is asked and answered so
        needs += ["facts.questions.any", "facts.answers.any"]
    if any(table.get(s, {}).get("questions") for s in PROFILE_SECTIONS) or base.get("checks"):
        needs += ["unset.answers"]
    for dotted in needs:
        node: Any = table
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if not node:
            raise UserError(f"{where}: key {dotted!r} is missing or empty")


def _merge(base: Any, extra: Any) -> Any:
    """Mappings merge key by key, lists are appended to, single values replace."""
    if isinstance(base, dict) and isinstance(extra, dict):
        out = dict(base)
        for k, v in extra.items():
            out[k] = _merge(base[k], v) if k in base else v
        return out
    if isinstance(base, list) and isinstance(extra, list):
        return base + extra
    return extra


@cache
def _shipped(lang: str) -> Table:
    path = resources.files("idtune").joinpath(f"assets/identity/{lang}.yaml")
    return complete(parse(path.read_text("utf-8"), f"shipped {lang}.yaml"), f"shipped {lang}.yaml")


def tables(files: Sequence[str | Path] = ()) -> dict[str, Table]:
    """The shipped tables, with the phrase files in `files` added (in order), by language.

    The shipped tables are read once and shared: treat what comes back as read-only.
    """
    out = {lang: _shipped(lang) for lang in SHIPPED}
    for f in files:
        path = Path(f)
        if not path.exists():
            raise UserError(f"{path}: no such phrase file")
        table = parse(read_text(path, "phrase file"), str(path))
        lang = table["lang"]
        out[lang] = complete(_merge(out[lang], table) if lang in out else table, str(path))
    return out
