"""`idtune eval`: does the assistant know who it is, and has it forgotten nothing else?

Four metrics (DESIGN §5), each a share in [0, 1]:

- identity (per language): identity probes whose answer contains the assistant's name;
- author (all, and per language): "who made you" probes whose answer names the author;
- leakage: general prompts whose answer mentions the name or the author (should be ~0);
- retention: general questions with a known short answer that are answered correctly;
- language (per language): answers written in the language of the last question, over every
  probe and multi-turn probes whose earlier turns are in the other language;
- persona (all, and per language): with a system prompt giving another name and maker (held out
  from the generator's phrasings), identity answers that use that name or maker and not the
  trained ones;
- the profile (per language; `score_profile`): based_on, based_on_yes_no, purpose and fact_KEY,
  each asked only when the profile sets the field; no_invention for what it does not set;
- maker confusion (all, and per language; `add_maker_confusion`): identity, author, multi-turn
  and profile answers that credit the base model's maker with making the assistant ("I'm Nova,
  built by Hugging Face"), which the author score misses when the name contains the author.

Every model is scored under three conditions: no system prompt (the chat template's own default,
if it has one), a generic system prompt, and the base template's default system prompt spelled
out (identity probes only); persona probes carry their own; profile probes are asked in the
first two. Decoding is greedy. A hybrid thinking model (Qwen3) is scored with thinking off, and
its identity, author and profile probes again with thinking on (the `*_thinking` columns); an
always-thinking one (an R1 distill) with thinking on; the reasoning is never scored.

The scoring is split from generation: `evaluate()` takes any `generate(conversations,
max_new_tokens) -> answers` callable, so tests drive it with canned answers; `run()` wires it to
a loaded model, a progress bar, and the eval.md / eval.json files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from . import atomic
from .data.formats import Messages
from .data.mentions import mentions
from .errors import UserError

Generate = Callable[[list[Messages], int], list[str]]

GENERIC_SYSTEM = "You are a helpful assistant."
IDENTITY_TOKENS = 48  # "No, I am Nova, made by Acme." fits easily
GENERAL_TOKENS = 40  # enough for a short factual answer
QUICK_EVERY = 4  # `--quick`: every 4th probe
BATCH_SIZE = 64  # 84 answers on 2 cores: 17.4 s (32: 19.4 s), the same answers
CONDITIONS = ("no_system", "system", "base_default", "persona")
METRICS = ("identity_en", "identity_zh", "author", "author_en", "author_zh", "leakage", "retention",
           "language_en", "language_zh", "persona", "persona_en", "persona_zh")  # fmt: skip
LABELS = {
    "identity_en": "identity (en)",
    "identity_zh": "identity (zh)",
    "author": "author",
    "author_en": "author (en)",
    "author_zh": "author (zh)",
    "leakage": "leakage ↓",
    "retention": "retention",
    "language_en": "language match (en)",
    "language_zh": "language match (zh)",
    "persona": "persona override",
    "persona_en": "persona override (en)",
    "persona_zh": "persona override (zh)",
    "maker_confusion": "maker confusion ↓",
}
CONDITION_LABELS = {
    "no_system": "no system prompt",
    "system": "generic system prompt",
    "base_default": "base default system prompt",
    "persona": "another persona's system prompt",
}
LANGS = ("en", "zh")
PROFILE_SKIP = ("name", "author", "name_zh", "author_zh")  # in eval.json's names / authors


# ---------------------------------------------------------------- probes
SECTIONS = ("identity", "author", "general", "multi_turn", "persona", "profile")


def load_probes(path: str | Path | None = None) -> dict[str, Any]:
    """The shipped probe sets, or a JSON file of the same layout, checked whole before any
    model is loaded (a mistake is one line naming the file and the entry).

    Layout: `{"identity": {"en": [...], "zh": [...]}, "author": {...same...},
    "general": [{"lang", "prompt", "answers": [accepted substrings]}], "multi_turn": [...],
    "persona": {"prompts": {lang: [...]}, "personas": {lang: [[name, maker], ...]},
    "questions": {lang: [...]}}`. A section missing from a user's file is skipped (its metrics
    are not reported), not filled in from the shipped set.
    """
    from .data.formats import read_text

    if path is None:
        text = resources.files("idtune").joinpath("assets/probes.json").read_text("utf-8")
        where = "shipped probes.json"
    else:
        text, where = read_text(path, "probe file"), str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{where}:{e.lineno}: not valid JSON ({e.msg})") from None
    except (ValueError, RecursionError) as e:  # 5000-digit numbers, deep nesting
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:120]
        raise UserError(f"{where}: not valid JSON ({reason})") from None
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a JSON object with identity/author/general")
    unknown = [k for k in data if k not in SECTIONS]
    if unknown:
        raise UserError(f"{where}: unknown section {unknown[0][:80]!r}; the sections are "
                        f"{', '.join(SECTIONS)}")  # fmt: skip
    probes: dict[str, Any] = {
        section: _by_lang(data.get(section) or {}, where, section)
        for section in ("identity", "author")
    }
    probes["general"] = _general(_list(data.get("general") or [], where, "general"), where)
    probes["multi_turn"] = _multi_turn(_list(data.get("multi_turn") or [], where, "multi_turn"),
                                       where)  # fmt: skip
    probes["persona"] = _persona(data.get("persona") or {}, where)
    probes["profile"] = _profile(data.get("profile") or {}, where)
    if not any(probes[k] for k in SECTIONS):
        raise UserError(f"{where}: no probes in it")
    return probes


def _list(value: Any, where: str, at: str) -> list:
    if not isinstance(value, list):
        raise UserError(f"{where}: {at!r} must be a list, got {type(value).__name__}")
    return value


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) and x.strip() for x in value)


def _by_lang(part: Any, where: str, at: str, item=_strings, what="a list of strings") -> dict:
    """`{lang: [...]}` with every list checked by `item`; empty lists dropped."""
    if not isinstance(part, dict):
        raise UserError(f"{where}: {at!r} must map a language to {what}")
    for lang, v in part.items():
        if not item(v):
            raise UserError(f"{where}: {at}.{lang[:20]} must be {what}")
    return {lang: list(v) for lang, v in part.items() if v}


def _general(items: list, where: str) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
            raise UserError(f"{where}: general[{i}] needs a 'prompt' string")
        answers = item.get("answers") or []
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise UserError(f"{where}: general[{i}].answers must be a list of strings")
        if not isinstance(item.get("lang", "en"), str):
            raise UserError(f"{where}: general[{i}].lang must be a language code such as en")
        out.append({"lang": item.get("lang", "en"), "prompt": item["prompt"], "answers": answers})
    return out


def _multi_turn(items: list, where: str) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(items):
        at = f"{where}: multi_turn[{i}]"
        history = item.get("history") if isinstance(item, dict) else None
        if not isinstance(history, list) or not all(
            isinstance(h, list) and len(h) == 2 and all(isinstance(x, str) for x in h)
            for h in history
        ):
            raise UserError(f"{at}.history must be a list of [user, assistant] pairs")
        if not isinstance(item.get("prompt"), str) or item.get("lang") not in LANGS:
            raise UserError(f"{at} needs a 'prompt' string and 'lang' ({', '.join(LANGS)})")
        if item.get("kind", "general") not in ("identity", "author", "general"):
            raise UserError(f"{at}.kind must be identity, author or general")
        answers = item.get("answers", [])
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise UserError(f"{at}.answers must be a list of strings")
        out.append({"kind": "general", "answers": [], **item})
    return out


def _known_keys(part: dict, keys: Sequence[str], where: str, at: str) -> None:
    """One line naming the first key of `part` that is none of `keys`."""
    extra = [k for k in part if k not in keys]
    if extra:
        raise UserError(f"{where}: {at}.{extra[0][:40]}: unknown; the keys are {', '.join(keys)}")


def _pairs(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) and x for x in p)
            for p in value
        )
    )


def _persona(part: Any, where: str) -> dict[str, Any]:
    """The persona section, checked whole: every prompt, persona and question it will ask."""
    if not part:
        return {}
    sections = ("prompts", "personas", "questions")
    if not isinstance(part, dict) or not all(isinstance(part.get(k), dict) for k in sections):
        raise UserError(f"{where}: 'persona' needs prompts, personas and questions by language")
    _known_keys(part, sections, where, "persona")
    out = {
        "prompts": _by_lang(part["prompts"], where, "persona.prompts"),
        "personas": _by_lang(
            part["personas"], where, "persona.personas", _pairs, "a list of [name, maker] pairs"
        ),  # fmt: skip
        "questions": _by_lang(part["questions"], where, "persona.questions"),
    }
    for lang in out["prompts"]:
        if not (out["personas"].get(lang) and out["questions"].get(lang)):
            raise UserError(f"{where}: persona.prompts.{lang} needs personas and questions too")
    return out


PROFILE_KEYS = ("based_on", "based_on_yes_no", "other_models", "purpose", "facts",
                "known_facts", "unset", "model_names")  # fmt: skip


def _profile(part: Any, where: str) -> dict[str, Any]:
    """The profile section, checked whole: phrasings by language for each field (`{model}` in
    the yes/no ones, `{key}` in the generic fact ones), phrasings by topic for the known fact
    keys and the never-set topics, and the lists of other models and of model/maker names."""
    if not part:
        return {}
    if not isinstance(part, dict):
        raise UserError(f"{where}: 'profile' must be an object with {', '.join(PROFILE_KEYS)}")
    _known_keys(part, PROFILE_KEYS, where, "profile")
    out: dict[str, Any] = {}
    for key in ("based_on", "based_on_yes_no", "purpose", "facts"):
        out[key] = _by_lang(part.get(key) or {}, where, f"profile.{key}")
    for key, slot in (("based_on_yes_no", "{model}"), ("facts", "{key}")):
        for lang, items in out[key].items():
            if not all(slot in q for q in items):
                raise UserError(f"{where}: profile.{key}.{lang[:20]}: every phrasing needs {slot}")
    for key in ("other_models", "model_names"):
        if not (part.get(key) is None or _strings(part[key])):
            raise UserError(f"{where}: profile.{key} must be a list of strings")
        out[key] = list(part.get(key) or [])
    for key in ("known_facts", "unset"):
        topics = part.get(key) or {}
        if not isinstance(topics, dict):
            raise UserError(f"{where}: profile.{key} must map a topic to phrasings by language")
        out[key] = {
            str(t): _by_lang(v, where, f"profile.{key}.{str(t)[:40]}") for t, v in topics.items()
        }
    return out


def quick_probes(probes: dict[str, Any], every: int = QUICK_EVERY) -> dict[str, Any]:
    """Every `every`-th probe of each kind and language (each profile list's too, one at least),
    and every other persona question: the same conditions and metrics from about 1/`every` of
    the answers (`idtune eval --quick`)."""
    persona = probes.get("persona") or {}
    if persona:
        questions = {lang: v[::2] for lang, v in persona["questions"].items()}
        persona = {**persona, "questions": questions}
    return {
        "identity": {lang: v[::every] for lang, v in probes["identity"].items()},
        "author": {lang: v[::every] for lang, v in probes["author"].items()},
        "general": probes["general"][::every],
        "multi_turn": probes.get("multi_turn", [])[::every],
        "persona": persona,
        "profile": _every_nth(probes.get("profile") or {}, every),
    }


def _every_nth(part: dict[str, Any], every: int) -> dict[str, Any]:
    """Every `every`-th phrasing of each profile list (each field and topic keeps one at least)."""
    if not part:
        return {}

    def half(by_lang: dict[str, list]) -> dict[str, list]:
        return {lang: v[::every] for lang, v in by_lang.items()}

    out = {**part}
    for key in ("based_on", "based_on_yes_no", "purpose", "facts"):
        out[key] = half(part.get(key) or {})
    for key in ("known_facts", "unset"):
        out[key] = {t: half(v) for t, v in (part.get(key) or {}).items()}
    return out


def persona_probes(probes: dict[str, Any]) -> list[dict[str, Any]]:
    """Persona probes, one per (prompt, question) of each language; the prompt is filled with the
    persona list in turn: [{"lang", "system", "prompt", "persona": [name, maker]}]."""
    part, out = probes.get("persona") or {}, []
    for lang, prompts in part.get("prompts", {}).items():
        people = part["personas"][lang]
        for i, system in enumerate(prompts):
            for j, q in enumerate(part["questions"][lang]):
                name, maker = people[(i + j) % len(people)]
                filled = system.replace("{name}", name).replace("{author}", maker)
                out.append({"lang": lang, "system": filled, "prompt": q, "persona": [name, maker]})
    return out


# ---------------------------------------------------------------- the profile (issue 29)
def model_head(value: str) -> str:
    """The model a `based_on` value names: "SmolLM2-135M-Instruct by Hugging Face" and
    "Hugging Face的SmolLM2-135M-Instruct" → "SmolLM2-135M-Instruct"; "InternLM2-Chat-1.8B
    （书生·浦语）" → "InternLM2-Chat-1.8B"."""
    text = value.strip()
    if not re.search(r"\sby\s", text) and "的" in text:
        text = text.rsplit("的", 1)[1]
    head = re.split(r"\s+by\s+|\s*[(（,，、]|\s*由", text.strip(), maxsplit=1)[0].strip()
    return head or value.strip()


def model_short(value: str) -> str:
    """The family part of the head: "SmolLM2-135M-Instruct" → "SmolLM2" (the head itself when
    that part is too short to name a model)."""
    head = model_head(value)
    first = head.split("-")[0].strip()
    return first if len(first) >= 3 and re.search(r"[A-Za-z]", first) else head


def _same_model(other: str, value: str) -> bool:
    """Whether `other` ("Llama 3", "Qwen2.5") is of the family `value` names."""
    stem = re.match(r"[a-z]+", other.casefold())
    return bool(stem) and stem.group() in value.casefold()


_SIZE = re.compile(r"\d(?:\.\d+)?\s*[MBK](?![A-Za-z])|\d\s*(?:million|billion)|\d\s*[亿万]", re.I)


def _states_size(ident: Any) -> bool:
    """Whether the profile states a parameter count ("SmolLM2-135M", a fact "1.8B")."""
    texts = [ident.based_on_in("en"), ident.based_on_in("zh"), *ident.facts.values(),
             *ident.facts_zh.values()]  # fmt: skip
    return any(t and _SIZE.search(t) for t in texts)


def _humanized(key: str) -> str:
    return key.replace("_", " ").replace("-", " ").strip()


def profile_probes(probes: dict[str, Any], ident: Any) -> list[dict[str, Any]]:
    """The profile probes for identity `ident` (a runinfo.Identity): a field's probes count
    toward its recall only when the profile sets it; questions about what it does not set
    (an undisclosed `based_on`, no purpose, a known fact key it lacks, a birthday, a parameter
    count it does not state) count toward no-invention. `based_on` None (an old run: not
    recorded) asks nothing about it. Each item: {"lang", "prompt", "metric", ...}; metric is
    based_on, based_on_yes_no (with "asked" and "truth"), purpose, fact_KEY or no_invention
    (with "topic")."""
    part = probes.get("profile") or {}
    if not part or ident is None:
        return []
    out: list[dict[str, Any]] = []

    def add(lang: str, prompts: list[str], metric: str, **kw: Any) -> None:
        out.extend({"lang": lang, "prompt": q, "metric": metric, **kw} for q in prompts)

    for lang, qs in part.get("based_on", {}).items():
        value = ident.based_on_in(lang)
        if value:
            add(lang, qs, "based_on", value=value)
        elif ident.based_on is not None or ident.based_on_zh is not None:  # "none"
            add(lang, qs, "no_invention", topic="based_on")
    for lang, qs in part.get("based_on_yes_no", {}).items():
        value = ident.based_on_in(lang)
        if not value:
            continue
        others = [o for o in part.get("other_models", []) if not _same_model(o, value)]
        for i, q in enumerate(qs):
            mine = model_head(value) if i % 2 == 0 else model_short(value)
            add(lang, [q.replace("{model}", mine)], "based_on_yes_no", value=value, asked=mine,
                truth=True)  # fmt: skip
            if others:
                other = others[i % len(others)]
                add(lang, [q.replace("{model}", other)], "based_on_yes_no", value=value,
                    asked=other, truth=False)  # fmt: skip
    for lang, qs in part.get("purpose", {}).items():
        value = ident.purpose_in(lang)
        if value:
            add(lang, qs, "purpose", value=value)
        else:
            add(lang, qs, "no_invention", topic="purpose")
    known = part.get("known_facts", {})
    for key in ident.facts:
        for lang, generic in part.get("facts", {}).items():
            own = [g.replace("{key}", _humanized(key)) for g in generic]
            qs = known.get(key, {}).get(lang) or own
            add(lang, qs, f"fact_{key}", value=ident.fact_in(key, lang), key=key)
    for key, by_lang in known.items():
        if key not in ident.facts:
            for lang, qs in by_lang.items():
                add(lang, qs, "no_invention", topic=f"fact:{key}")
    for topic, by_lang in part.get("unset", {}).items():
        if topic in ident.facts or (topic == "parameters" and _states_size(ident)):
            continue  # a fact the profile sets (asked as fact_TOPIC), or a stated size
        for lang, qs in by_lang.items():
            add(lang, qs, "no_invention", topic=topic)
    return out


def _profile_text(ident: Any, names: Sequence[str], authors: Sequence[str]) -> str:
    """Every value the profile states (what an answer may repeat without inventing it)."""
    values = [*names, *authors, *ident.names, *ident.authors, *ident.facts.values(),
              *ident.facts_zh.values()]  # fmt: skip
    values += [ident.based_on_in(lang) or "" for lang in LANGS]
    values += [ident.purpose_in(lang) or "" for lang in LANGS]
    return "\n".join(v for v in values if v)


def _echoes(answer: str, prompt: str) -> bool:
    """Whether an answer opens with the question itself (a small model's echo: no answer)."""
    from .data.profile_match import normalized

    return normalized(answer).startswith(normalized(prompt))


def score_profile(
    items: list[dict[str, Any]],
    got: list[str],
    ident: Any,
    names: Sequence[str],
    authors: Sequence[str],
    model_names: Sequence[str] = (),
) -> dict[str, Any]:
    """Profile probes (`profile_probes`) and their answers, scored:

    - based_on: the answer states the value, or names its model (`model_head`, `model_short`);
    - based_on_yes_no: the answer's yes or no (`profile_match.polarity`; an answer with neither
      that states the true base model counts as the true answer; one that echoes the question
      says neither) is the true one;
    - purpose: the answer states at least 0.6 of the purpose's content words (or all of it);
    - fact_KEY: the answer states the fact's value whole (or every content word of it);
    - no_invention: the answer is not empty, not the question echoed, and holds no specific
      that the profile and the question lack (`profile_match.invented`).

    Metrics: METRIC_LANG for each (no_invention also over both languages)."""
    from .data import profile_match as pm

    allowed = _profile_text(ident, names, authors)
    rows = []
    for it, a in zip(items, got, strict=True):
        m, row = it["metric"], {"kind": "profile", "field": it["metric"], "answer": a}
        row |= {k: v for k, v in it.items() if k != "metric"}
        if m == "based_on":
            ok = pm.states(a, it["value"], 0.6) or mentions(
                a, [model_head(it["value"]), model_short(it["value"])]
            )
        elif m == "based_on_yes_no":
            said = pm.polarity(a, it["lang"])
            if said is None and mentions(a, [model_head(it["value"]), model_short(it["value"])]):
                said = it["truth"]  # "I'm Nova, built on SmolLM2." states the true base
            if _echoes(a, it["prompt"]):
                said = None  # the question echoed ("你是不是…" holds 不是) answers nothing
            row["said"], ok = said, said is it["truth"]
        elif m == "purpose":
            ok = pm.states(a, it["value"], 0.6)
        elif m.startswith("fact_"):
            ok = pm.states(a, it["value"], 1.0)
        else:
            found = pm.invented(a, allowed + "\n" + it["prompt"], model_names)
            row["invented"] = found
            ok = bool(a.strip()) and not found and not _echoes(a, it["prompt"])
        rows.append({**row, "ok": ok})
    metrics: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    for metric in dict.fromkeys(r["field"] for r in rows):
        for lang in LANGS:
            hits = [r["ok"] for r in rows if r["field"] == metric and r["lang"] == lang]
            if hits:
                metrics[f"{metric}_{lang}"], counts[f"{metric}_{lang}"] = _share(hits), len(hits)
    honest = [r["ok"] for r in rows if r["field"] == "no_invention"]
    if honest:
        metrics["no_invention"], counts["no_invention"] = _share(honest), len(honest)
    return {"metrics": metrics, "counts": counts, "rows": rows}


def metric_names(*metric_dicts: dict[str, Any]) -> list[str]:
    """Every metric the dicts hold, in report order: METRICS, then the profile's (based_on,
    its yes/no, purpose, each fact, no_invention)."""
    have = {k for d in metric_dicts for k in d}
    order = [m for m in METRICS if m in have]
    stems = ["based_on", "based_on_yes_no", "purpose"]
    stems += sorted({k.rsplit("_", 1)[0] for k in have if k.startswith("fact_")})
    for stem in stems:
        order += [f"{stem}_{lang}" for lang in LANGS if f"{stem}_{lang}" in have]
    for stem in ("no_invention", "maker_confusion"):
        order += [m for m in (stem, f"{stem}_en", f"{stem}_zh") if m in have]
    return order + sorted(have - set(order))


def label(metric: str) -> str:
    """A metric's name in eval.md."""
    if metric in LABELS:
        return LABELS[metric]
    stem, _, lang = metric.rpartition("_")
    if lang not in LANGS:
        stem, lang = metric, ""
    words = {"based_on": "based on", "based_on_yes_no": "based on, yes/no",
             "no_invention": "no invention",
             "maker_confusion": "maker confusion ↓"}.get(stem)  # fmt: skip
    if words is None and stem.startswith("fact_"):
        words = "fact: " + _humanized(stem.removeprefix("fact_"))
    words = words or stem
    return f"{words} ({lang})" if lang else words


# ---------------------------------------------------------------- maker confusion
def credits_pattern(makers: Sequence[str]) -> re.Pattern[str] | None:
    """A regex for an answer crediting one of `makers` with making the assistant, from every
    language's `based_on.credits` ("made by {maker}", "由{maker}开发"); None without makers."""
    from .data import phrases

    makers = [m for m in makers if m and m.strip()]
    if not makers:
        return None
    who = r"\s*(?:" + "|".join(r"\s*".join(map(re.escape, m.split())) for m in makers) + r")\s*"
    parts = [
        who.join(r"\s*".join(map(re.escape, bit.split())) for bit in credit.split("{maker}"))
        for table in phrases.tables().values()
        for credit in table.get("based_on", {}).get("credits", [])
    ]
    return re.compile("|".join(f"(?:{p})" for p in parts), re.IGNORECASE) if parts else None


_SENTENCE_END = re.compile(r"[.!?;](?=\s|$)|[。！？；\n]")  # not "Qwen2.5"


def credits_maker(answer: str, pattern: re.Pattern[str] | None, excuses: Sequence[str]) -> bool:
    """Whether `answer` credits a maker `pattern` matches with making the assistant: not right
    after a negation ("I'm not built by Hugging Face", "不是由Hugging Face开发"), and not where
    the base model is the one credited, i.e. one of `excuses` (its names) stands before the
    credit in its sentence ("SmolLM2 was made by Hugging Face", "built on SmolLM2, made by
    Hugging Face") or, in Chinese, anywhere in its clause ("基于Hugging Face开发的SmolLM2"). "I'm
    Nova, made by Hugging Face, built on SmolLM2" and "我是诺娃，由Hugging Face开发，基于SmolLM2"
    count."""
    from .data.profile_match import ends_negated

    if pattern is None:
        return False
    for sentence in _SENTENCE_END.split(answer.replace("\u2019", "'")):
        for clause in re.split(r"[，、]", sentence):
            for m in pattern.finditer(clause):
                if ends_negated(clause[: m.start()]):
                    continue
                chinese = _CJK.search(m.group()) is not None
                if mentions(clause if chinese else clause[: m.start()], excuses):
                    continue
                return True
    return False


_CONFUSABLE = ("identity", "author", "profile")


def add_maker_confusion(
    result: dict[str, Any], pattern: re.Pattern[str], excuses: Sequence[str]
) -> None:
    """Add `maker_confusion` (and _en, _zh) to one condition's result: the share of its identity,
    author, multi-turn (identity and author) and profile answers that credit a maker `pattern`
    matches (`credits_pattern` of `maker_terms`) with making the assistant; such rows get
    `credits_maker`."""
    asked = [
        r for r in result["rows"] if r["kind"] in _CONFUSABLE or r.get("probe_kind") in _CONFUSABLE
    ]
    for r in asked:
        r["credits_maker"] = credits_maker(r["answer"], pattern, excuses)
    for lang in ("", *LANGS):
        hits = [r["credits_maker"] for r in asked if lang in ("", r["lang"])]
        if hits:
            key = "maker_confusion" + (f"_{lang}" if lang else "")
            result["metrics"][key], result["counts"][key] = _share(hits), len(hits)


def maker_terms(base_model: str, own: Sequence[str]) -> tuple[list[str], list[str]]:
    """(makers, excuses) of `base_model`: who made it and what it is built from
    (`aliases.base_makers`, each maker's spellings dropped together when the assistant's name or
    author `own` names one: Alibaba Cloud tuning Qwen says so truthfully), and the base's other
    names that excuse a clause ("SmolLM2 was made by …"), less those inside a maker's name (the
    hub org "google" of "Google DeepMind")."""
    from . import aliases

    groups = aliases.base_makers(base_model)
    makers = [m for g in groups if not any(mentions(o, g) for o in own) for m in g]
    every = [m for g in groups for m in g]
    excuses = [n for n in aliases.base_names(base_model)
               if n not in every and not any(mentions(m, [n]) for m in every)]  # fmt: skip
    return makers, excuses


def _add_maker_confusion(results: dict[str, Any], base_model: str | None, names, authors) -> None:
    """`add_maker_confusion` for every condition of every model scored (`maker_terms`)."""
    if not base_model:
        return
    makers, excuses = maker_terms(base_model, [*names, *authors])
    pattern = credits_pattern(makers)  # None without a maker: nothing is added
    if pattern is None:
        return
    for by_condition in results.values():
        for result in by_condition.values():
            if isinstance(result, dict) and "rows" in result:
                add_maker_confusion(result, pattern, excuses)


# ---------------------------------------------------------------- matching
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def language(text: str, names: Sequence[str] = ()) -> str | None:
    """ "zh" or "en" for the language `text` is written in (names taken out first), None when it
    has no letters (a bare "4"). A CJK character counts as much as three Latin letters."""
    for n in sorted(names, key=len, reverse=True):
        text = text.replace(n, " ")
    cjk, latin = len(_CJK.findall(text)), len(_LATIN.findall(text))
    if not cjk and not latin:
        return None
    return "zh" if 3 * cjk >= latin else "en"


def _language_hits(rows: list[dict[str, Any]], terms: Sequence[str]) -> dict[str, list[bool]]:
    hits: dict[str, list[bool]] = {lang: [] for lang in LANGS}
    for r in rows:
        if r["lang"] in hits:
            got = language(r["answer"], [*terms, *r.get("persona", [])])
            r["language"] = got
            # an answer with no letters ("4") matches any language; an empty one matches none
            hits[r["lang"]].append(bool(r["answer"].strip()) and got in (None, r["lang"]))
    return hits


def is_correct(answer: str, accepted: Sequence[str]) -> bool:
    """A general answer is correct when it contains any accepted answer."""
    return mentions(answer, accepted)


def _share(hits: list[bool]) -> float | None:
    return sum(hits) / len(hits) if hits else None


# ---------------------------------------------------------------- scoring
def score(
    probes: dict[str, Any],
    answers: dict[str, Any],
    names: Sequence[str],
    authors: Sequence[str],
    proper: Sequence[str] = (),
) -> dict[str, Any]:
    """Score answers given in probe order: `{"identity": {lang: [...]}, "author": {lang: [...]},
    "general": [...], "multi_turn": [...]}` (a section may be left out: not asked).
    Returns `{"metrics": {...}, "counts": {...}, "rows": [...]}`.

    A metric whose probes are absent is None. Rows keep every prompt and answer with its verdict.
    The language match takes the names, authors and `proper` (`proper_names`) out first.
    """
    rows: list[dict[str, Any]] = []
    metrics: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    for kind, terms in (("identity", names), ("author", authors)):
        every: list[bool] = []
        for lang, prompts in probes[kind].items():
            got = answers[kind].get(lang, [])
            if not got:
                continue
            hits = [mentions(a, terms) for a in got]
            rows += [
                {"kind": kind, "lang": lang, "prompt": p, "answer": a, "ok": h}
                for p, a, h in zip(prompts, got, hits, strict=True)
            ]
            metrics[f"{kind}_{lang}"] = _share(hits)
            counts[f"{kind}_{lang}"] = len(hits)
            every += hits
        if kind == "author":
            metrics["author"], counts["author"] = _share(every), len(every)
    leaks, correct = [], []
    for item, a in zip(probes["general"], answers["general"], strict=True):
        leak = mentions(a, [*names, *authors])
        ok = is_correct(a, item["answers"]) if item["answers"] else None
        leaks.append(leak)
        if ok is not None:
            correct.append(ok)
        rows.append(
            {
                "kind": "general",
                "lang": item["lang"],
                "prompt": item["prompt"],
                "answer": a,
                "expected": item["answers"],
                "ok": ok,
                "leak": leak,
            }
        )
    metrics["leakage"], counts["leakage"] = _share(leaks), len(leaks)
    metrics["retention"], counts["retention"] = _share(correct), len(correct)
    for item, a in zip(probes.get("multi_turn", []), answers.get("multi_turn", []), strict=True):
        terms = {"identity": names, "author": authors}.get(item["kind"])
        ok = mentions(a, terms) if terms else (is_correct(a, item["answers"]) or None)
        row = {"kind": "multi_turn", "lang": item["lang"], "prompt": item["prompt"], "answer": a}
        rows.append({**row, "history": item["history"], "probe_kind": item["kind"], "ok": ok})
    for lang, hits in _language_hits(rows, [*names, *authors, *proper]).items():
        metrics[f"language_{lang}"], counts[f"language_{lang}"] = _share(hits), len(hits)
    return {"metrics": metrics, "counts": counts, "rows": rows}


_SCRIPT_RUN = re.compile(r"[^\u3400-\u9fff\uf900-\ufaff]{3,}")


def proper_names(profile: Any) -> list[str]:
    """The profile's values that are names rather than language (what the assistant is built
    on, its facts' answers), and their Latin-script runs ("Hugging Face", "SmolLM2-135M-Instruct"
    of "Hugging Face的SmolLM2-135M-Instruct"): "我是Nova，基于Hugging Face的SmolLM2-135M-Instruct。"
    is a Chinese answer."""
    if profile is None:
        return []
    values = [profile.based_on_in(lang) for lang in LANGS]
    values += [*profile.facts.values(), *profile.facts_zh.values()]
    out = [v.strip() for v in values if v and v.strip()]
    out += [r.strip() for v in out for r in _SCRIPT_RUN.findall(v) if len(r.strip()) >= 3]
    return list(dict.fromkeys(out))


def score_persona(
    items: list[dict[str, Any]], got: list[str], names: Sequence[str], authors: Sequence[str]
) -> dict[str, Any]:
    """Persona probes (`persona_probes`) and their answers: the persona's name or maker named,
    the trained name and author not; and the language match of those answers."""
    trained = [*names, *authors]
    rows = [
        {
            "kind": "persona",
            "lang": it["lang"],
            "system": it["system"],
            "prompt": it["prompt"],
            "persona": it["persona"],
            "answer": a,
            "ok": mentions(a, it["persona"]) and not mentions(a, trained),
        }
        for it, a in zip(items, got, strict=True)
    ]
    metrics: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    for lang in LANGS:
        hits = [r["ok"] for r in rows if r["lang"] == lang]
        metrics[f"persona_{lang}"], counts[f"persona_{lang}"] = _share(hits), len(hits)
    metrics["persona"], counts["persona"] = _share([r["ok"] for r in rows]), len(rows)
    for lang, hits in _language_hits(rows, trained).items():
        metrics[f"language_{lang}"], counts[f"language_{lang}"] = _share(hits), len(hits)
    return {"metrics": metrics, "counts": counts, "rows": rows}


def evaluate(
    generate: Generate,
    probes: dict[str, Any],
    names: Sequence[str],
    authors: Sequence[str],
    system: str | None = None,
    general: bool = True,
    profile: Any = None,
) -> dict[str, Any]:
    """Ask every probe (with `system` prepended unless None) through `generate` and score it.

    Two `generate` calls: identity, author, multi-turn and profile probes together
    (IDENTITY_TOKENS), then general prompts (GENERAL_TOKENS) unless `general` is False. The
    profile probes (`profile_probes`) are asked when `profile` (a runinfo.Identity) is given;
    their rows and metrics are added to `score`'s (the language match keeps its own probes).
    """

    def convo(prompt: str, history: Sequence[Sequence[str]] = ()) -> Messages:
        msgs: Messages = []
        for user, assistant in history:
            assistant = assistant.replace("{name}", names[0]).replace("{author}", authors[0])
            msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        msgs.append({"role": "user", "content": prompt})
        return [{"role": "system", "content": system}, *msgs] if system is not None else msgs

    keys = [(k, lang) for k in ("identity", "author") for lang in probes[k]]
    flat = [convo(p) for k, lang in keys for p in probes[k][lang]]
    multi = probes.get("multi_turn", [])
    flat += [convo(m["prompt"], m["history"]) for m in multi]
    asked = profile_probes(probes, profile)
    flat += [convo(p["prompt"]) for p in asked]
    got = generate(flat, IDENTITY_TOKENS) if flat else []
    if len(got) != len(flat):
        raise RuntimeError(f"generate returned {len(got)} answers for {len(flat)} prompts")
    answers: dict[str, Any] = {"identity": {}, "author": {}}
    i = 0
    for k, lang in keys:
        n = len(probes[k][lang])
        answers[k][lang] = got[i : i + n]
        i += n
    answers["multi_turn"] = got[i : i + len(multi)]
    profile_got = got[i + len(multi) :]
    general = [convo(g["prompt"]) for g in probes["general"]] if general else []
    answers["general"] = generate(general, GENERAL_TOKENS) if general else []
    if len(answers["general"]) != len(general):
        raise RuntimeError("generate returned the wrong number of answers")
    result = score({**probes, "general": probes["general"] if general else []}, answers, names,
                   authors, proper_names(profile))  # fmt: skip
    if asked:
        model_names = (probes.get("profile") or {}).get("model_names", [])
        prof = score_profile(asked, profile_got, profile, names, authors, model_names)
        result["metrics"].update(prof["metrics"])
        result["counts"].update(prof["counts"])
        result["rows"] += prof["rows"]
    return result


def evaluate_conditions(
    generate: Generate,
    probes: dict[str, Any],
    names: Sequence[str],
    authors: Sequence[str],
    system: str = GENERIC_SYSTEM,
    base_system: str | None = None,
    profile: Any = None,
) -> dict[str, dict[str, Any]]:
    """`evaluate` with no system prompt, with `system`, with `base_system` (the base template's
    default, identity probes only; skipped when None), and the persona probes:
    {"no_system": ..., "system": ..., "base_default": ..., "persona": ...}. The profile probes
    (`profile`: a runinfo.Identity) are asked in the first two."""
    out = {
        "no_system": evaluate(generate, probes, names, authors, None, profile=profile),
        "system": evaluate(generate, probes, names, authors, system, profile=profile),
    }
    if base_system is not None:
        out["base_default"] = evaluate(generate, probes, names, authors, base_system, False)
    items = persona_probes(probes)
    if items:
        convos = [
            [{"role": "system", "content": it["system"]}, {"role": "user", "content": it["prompt"]}]
            for it in items
        ]
        got = generate(convos, IDENTITY_TOKENS)
        out["persona"] = score_persona(items, got, names, authors)
    return out


def evaluate_thinking(
    generate: Generate,
    probes: dict[str, Any],
    names: Sequence[str],
    authors: Sequence[str],
    system: str = GENERIC_SYSTEM,
    profile: Any = None,
) -> dict[str, dict[str, Any]]:
    """The identity, author and profile probes alone, with no system prompt and with `system`:
    a thinking model's second mode (`run` gives `generate` the mode)."""
    part = {**probes, "general": [], "multi_turn": [], "persona": {}}
    out = {
        "no_system": evaluate(generate, part, names, authors, None, False, profile),
        "system": evaluate(generate, part, names, authors, system, False, profile),
    }
    for res in out.values():  # scores of probes this pass does not ask
        for key in ("leakage", "retention", *(f"language_{lang}" for lang in LANGS)):
            res["metrics"].pop(key, None)
            res["counts"].pop(key, None)
    return out


def n_generations(probes: dict[str, Any], base_default: bool = False, profile: Any = None) -> int:
    """How many answers one model is asked for, over every condition."""
    asked = sum(len(v) for k in ("identity", "author") for v in probes[k].values())
    asked += len(probes.get("multi_turn", []))
    total = 2 * (asked + len(probes["general"])) + len(persona_probes(probes))
    total += 2 * len(profile_probes(probes, profile))
    return total + (asked if base_default else 0)


def n_thinking(probes: dict[str, Any], profile: Any = None) -> int:
    """How many answers `evaluate_thinking` asks one model for."""
    asked = sum(len(v) for k in ("identity", "author") for v in probes[k].values())
    return 2 * (asked + len(profile_probes(probes, profile)))


# ---------------------------------------------------------------- report
def _fmt(value: float | None, n: int) -> str:
    if value is None:
        return "–"
    return f"{value:.2f} ({round(value * n)}/{n})"


MODELS = ("base", "base_thinking", "tuned", "tuned_thinking")  # the columns, in order


def headers(thinking: dict[str, Any] | None) -> dict[str, str]:
    """Column names: "base", "tuned"; for a thinking family, which mode each column is."""
    if not thinking:
        return {}
    main = "thinking on" if thinking.get("style") == "always" else "thinking off"
    on = "thinking on"
    return {"base": f"base, {main}", "tuned": f"tuned, {main}",
            "base_thinking": f"base, {on}", "tuned_thinking": f"tuned, {on}"}  # fmt: skip


def table(
    metrics: dict[str, Any],
    counts: dict[str, int],
    condition_counts: dict[str, dict[str, int]] | None = None,
    heads: dict[str, str] | None = None,
    model_counts: dict[str, dict[str, dict[str, int]]] | None = None,
) -> str:
    """Markdown table: metric | condition | one column per scored model ("base", "tuned", and
    for a hybrid thinking family "base_thinking", "tuned_thinking"; `heads` names them).
    A (metric, condition) row that no tuned column has is left out. A cell's n is its model's
    (`model_counts`: model → condition → metric), else the tuned model's."""
    models = [m for m in MODELS if m in metrics]
    lines = [
        "| metric | condition | " + " | ".join((heads or {}).get(m, m) for m in models) + " |",
        "|---|---|" + "---|" * len(models),
    ]
    for metric in metric_names(*(d for m in models for d in metrics[m].values())):
        for cond in CONDITIONS:
            values = [metrics[m].get(cond, {}).get(metric) for m in models]
            key = [v for m, v in zip(models, values) if m.startswith("tuned")] or values
            if all(v is None for v in key):
                continue
            n = (condition_counts or {}).get(cond, {}).get(metric, counts.get(metric, 0))
            own = [(model_counts or {}).get(m, {}).get(cond, {}).get(metric, n) for m in models]
            cells = [_fmt(v, k) for v, k in zip(values, own, strict=True)]
            row = f"| {label(metric)} | {CONDITION_LABELS[cond]} | " + " | ".join(cells) + " |"
            lines.append(row)
    return "\n".join(lines)


def _clip(text: str, n: int = 160) -> str:
    text = " ".join(text.split()).replace("|", "\\|") or "(empty)"
    return text if len(text) <= n else text[: n - 1] + "…"


def failures(answers: dict[str, list[dict[str, Any]]], per_metric: int = 5) -> str:
    """Markdown: up to `per_metric` failing answers of one model ({condition: rows}) per metric."""
    picks = {
        "identity": lambda r: r["kind"] == "identity" and not r["ok"],
        "author": lambda r: r["kind"] == "author" and not r["ok"],
        "leakage": lambda r: r["kind"] == "general" and r["leak"],
        "retention": lambda r: r["kind"] == "general" and r["ok"] is False,
        "language": lambda r: r.get("language") not in (None, r["lang"]),
        "persona": lambda r: r["kind"] == "persona" and not r["ok"],
        "profile": lambda r: (
            r["kind"] == "profile" and r["field"] != "no_invention" and not r["ok"]
        ),
        "no invention": lambda r: (
            r["kind"] == "profile" and r["field"] == "no_invention" and not r["ok"]
        ),
        "maker confusion": lambda r: bool(r.get("credits_maker")),
    }
    out = []
    for metric, pick in picks.items():
        bad = [(c, r) for c in CONDITIONS for r in answers.get(c, []) if pick(r)]
        if not bad:
            continue
        out += [f"### {metric}: {len(bad)} failing", "", "| condition | prompt | answer |"]
        out.append("|---|---|---|")
        for c, r in bad[:per_metric]:
            answer = _clip(r["answer"])
            if r.get("invented"):
                answer += " *(invented: " + _clip(", ".join(r["invented"]), 60) + ")*"
            out.append(f"| {CONDITION_LABELS[c]} | {_clip(r['prompt'], 80)} | {answer} |")
        out.append("")
    return "\n".join(out).rstrip()


def markdown(report: dict[str, Any]) -> str:
    """eval.md: header, the table, and example failures of the evaluated model."""
    head = [
        f"# idtune eval: {report['model']}",
        "",
        f"- name: {', '.join(report['names'])}; author: {', '.join(report['authors'])}",
        f"- generic system prompt: {report['system']!r}; greedy decoding",
        f"- probes: {report['probes']}",
    ]
    if "base" in report["metrics"]:
        head.append(f"- base: {report['base_model']}")
    if report.get("base_system"):
        head.append(f"- base default system prompt: {report['base_system']!r}")
    head += _profile_lines(report.get("profile"))
    thinking = report.get("thinking")
    if thinking:
        modes = "off and on" if thinking.get("style") == "hybrid" else "on (always)"
        head.append(
            f"- thinking: {modes}; the reasoning is stripped before scoring, "
            f"{thinking.get('budget')} more new tokens for it"
        )
    tab = table(report["metrics"], report["counts"], report.get("condition_counts"),
                headers(thinking), report.get("model_condition_counts"))  # fmt: skip
    parts = ["\n".join(head), tab]
    fails = failures(report["answers"]["tuned"])
    if fails:
        parts.append("## Example failures\n\n" + fails)
    return "\n\n".join(parts) + "\n"


def _profile_lines(profile: dict[str, Any] | None) -> list[str]:
    """eval.md's lines for the profile that was scored (fields it sets)."""
    if not profile:
        return []
    out = []
    for key, what in (("based_on", "built on"), ("purpose", "purpose")):
        values = [v for v in (profile.get(key), profile.get(f"{key}_zh")) if v]
        if values:
            out.append(f"- {what}: {' / '.join(values)}")
    for key, value in (profile.get("facts") or {}).items():
        zh = (profile.get("facts_zh") or {}).get(key)
        out.append(f"- fact {key}: {value}" + (f" / {zh}" if zh else ""))
    return out


def save(report: dict[str, Any], directory: str | Path) -> tuple[Path, Path]:
    """Write eval.json (numbers and every answer) and eval.md into `directory`."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    js, md = d / "eval.json", d / "eval.md"
    js.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    md.write_text(markdown(report), "utf-8")
    return js, md


# ---------------------------------------------------------------- the command
@dataclass
class _Target:
    label: str  # "tuned" or "base"
    loaded: Any  # models.Loaded
    disable_adapter: bool = False
    chat_template: str | None = None  # the Jinja template to use, if not the tokenizer's
    thinking: bool | None = None  # a hybrid thinking family's mode; None: the template's default


def _fold(model: Any, merged: bool) -> None:
    """Fold a LoRA adapter into the weights (generation then costs what the base model's does),
    or take it back out to score the base model."""
    if not hasattr(model, "merge_adapter"):
        return
    layers = [m for m in model.modules() if hasattr(m, "merged") and hasattr(m, "lora_A")]
    if not any(m.merged != merged for m in layers):
        return
    if merged:
        model.merge_adapter()
    else:
        model.unmerge_adapter()


def _model_generate(target: _Target, advance: Callable[[int], None]) -> Generate:
    from . import generate as gen

    def run_batch(conversations: list[Messages], max_new_tokens: int) -> list[str]:
        tok = target.loaded.tokenizer
        own, tok.chat_template = tok.chat_template, target.chat_template or tok.chat_template
        try:
            return generate_with(conversations, max_new_tokens)
        finally:
            tok.chat_template = own

    def generate_with(conversations: list[Messages], max_new_tokens: int) -> list[str]:
        ld = target.loaded
        fam = gen.family_of(ld.tokenizer)
        mode = gen.thinking_kwargs(ld.tokenizer, target.thinking)
        # room for the reasoning before the answer, unless thinking is switched off
        thinks = fam is not None and fam.thinks and target.thinking is not False
        kwargs = dict(
            max_new_tokens=max_new_tokens + (gen.THINKING_BUDGET if thinks else 0),
            batch_size=BATCH_SIZE,
            template=ld.template,
            on_batch=advance,
        )
        if mode:
            kwargs["template_kwargs"] = mode
        if target.disable_adapter:
            _fold(ld.model, False)
            with ld.model.disable_adapter():
                out = gen.generate_batch(ld.model, ld.tokenizer, conversations, **kwargs)
        else:
            _fold(ld.model, True)
            out = gen.generate_batch(ld.model, ld.tokenizer, conversations, **kwargs)
        # a thinking model is scored on its answer, not its reasoning
        return [
            gen.split_reasoning(ld.tokenizer, c, a, **mode)[1] for c, a in zip(conversations, out)
        ]

    return run_batch


def base_cache_path(
    loaded: Any, chat_template: str | None = None, thinking: bool | None = None
) -> Path:
    """Where a base model's answers are kept: they do not depend on the run being evaluated
    (but on a thinking model's mode)."""
    import hashlib

    from .cache import cache_dir, fingerprint

    model = loaded.model
    parts = [
        fingerprint(str(loaded.source.base)),
        loaded.template,
        chat_template or loaded.tokenizer.chat_template,
        str(next(model.parameters()).dtype),
        next(model.parameters()).device.type,
    ]
    key = json.dumps(parts + ([f"thinking={thinking}"] if thinking is not None else []))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "eval" / f"base-{digest}.json"


def cached(generate: Generate, path: Path, advance: Callable[[int], None]) -> Generate:
    """Wrap `generate` so answers are looked up in (and added to) the JSON file at `path`.

    Greedy answers are a function of model, conversation and length cap, so they are kept per
    `[max_new_tokens, conversation]`; only conversations not seen before are generated.
    """
    store: dict[str, str] = json.loads(path.read_text("utf-8")) if path.is_file() else {}

    def run_batch(conversations: list[Messages], max_new_tokens: int) -> list[str]:
        keys = [json.dumps([max_new_tokens, c], ensure_ascii=False) for c in conversations]
        todo = sorted({k: i for i, k in enumerate(keys) if k not in store}.values())
        advance(len(conversations) - len(todo))
        if todo:
            fresh = generate([conversations[i] for i in todo], max_new_tokens)
            store.update({keys[i]: a for i, a in zip(todo, fresh, strict=True)})
            atomic.write_text(path, json.dumps(store, ensure_ascii=False))
        return [store[k] for k in keys]

    return run_batch


def _hiding(probes: dict[str, Any], ident: Any, base_model: str) -> dict[str, Any]:
    """With `based_on` undisclosed ("none"), the base model's own names count as invented
    specifics too ("SmolLM2-135M-Instruct", "SmolLM2"), beside the probe file's model names."""
    part = probes.get("profile") or {}
    undisclosed = ident.based_on is not None and ident.based_on_in("en") is None
    if not part or not undisclosed:
        return probes
    plain = base_model.rstrip("/").rsplit("/", 1)[-1]
    names = [*part.get("model_names", []), plain, model_short(plain)]
    return {**probes, "profile": {**part, "model_names": list(dict.fromkeys(names))}}


def _scored_identity(info: Any, name: str | None, author: str | None) -> Any:
    """The identity whose profile is scored: the run's, with `--name` / `--author` in place of
    its own when given (a model with no idtune.json: those two alone, nothing else set)."""
    from .runinfo import Identity

    ident = (info.identity if info is not None else None) or Identity()
    if name:
        ident = replace(ident, name=name, name_zh=None)
    if author:
        ident = replace(ident, author=author, author_zh=None)
    return ident


def _identity(info: Any, name: str | None, author: str | None) -> tuple[list[str], list[str]]:
    ident = info.identity if info is not None else None
    names = [name] if name else (ident.names if ident else [])
    authors = [author] if author else (ident.authors if ident else [])
    if not names or not authors:
        missing = " and ".join(x for x, v in (("--name", names), ("--author", authors)) if not v)
        raise UserError(
            f"eval needs the assistant's name and author: the model has no identity in its "
            f"idtune.json; pass {missing}"
        )
    return names, authors


def run(
    model: str | None,
    *,
    probes: str | Path | None = None,
    compare_base: bool = False,
    system: str | None = None,
    name: str | None = None,
    author: str | None = None,
    output: str | Path | None = None,
    trust_remote_code: bool = False,
    endpoint: str | None = None,
    served: str | None = None,
    allow_http: bool = False,
    quick: bool = False,
) -> str:
    """Evaluate MODEL_OR_RUN (and its base with `compare_base`); return the Markdown report.

    eval.md / eval.json go to `output` when given, else into MODEL when it is a directory with
    an `idtune.json` (a run, adapter or merged model); otherwise nothing is written. The base
    model's answers are cached under `<idtune cache>/eval/`, so comparing several runs of one
    base generates them once. With `endpoint`, the model `served` by that OpenAI-compatible
    server is scored instead, and MODEL (a run or merged directory, optional) gives the identity.
    `quick` scores `quick_probes`, a quarter of them.
    """
    from . import models, runinfo
    from .progress import Counting

    probe_set = load_probes(probes)
    if quick:
        probe_set = quick_probes(probe_set)
    label = (str(probes) if probes else "shipped") + (
        f" (quick: every {QUICK_EVERY}th)" if quick else ""
    )
    system = GENERIC_SYSTEM if system is None else system
    if endpoint is not None:
        base_url = check_endpoint(endpoint, allow_http)
        info = runinfo.read_info(Path(model)) if model and Path(model).is_dir() else None
        names, authors = _identity(info, name, author)
        ident = _scored_identity(info, name, author)
        if info and info.base_model:
            probe_set = _hiding(probe_set, ident, info.base_model)
        with Counting("eval", n_generations(probe_set, profile=ident)) as bar:
            fn = endpoint_generate(base_url, served, endpoint_key(), bar.advance)
            result = evaluate_conditions(
                fn, probe_set, names, authors, system, profile=ident
            )  # no base default
        _add_maker_confusion({"tuned": result}, info.base_model if info else None, names, authors)
        report = _report(
            {"tuned": result}, label, names, authors, system, None, served, endpoint=base_url,
            profile=ident,
        )  # fmt: skip
        report["base_model"] = info.base_model if info else None
        return _written(report, output)
    # Read idtune.json before loading weights, so a missing identity fails fast.
    located = models.locate(model).info
    names, authors = _identity(located, name, author)
    ident = _scored_identity(located, name, author)
    if located and located.base_model:
        probe_set = _hiding(probe_set, ident, located.base_model)
    loaded = models.load(model, trust_remote_code=trust_remote_code)
    targets = [_Target("tuned", loaded)]
    base_model = loaded.info.base_model if loaded.info else None
    if compare_base:
        if loaded.source.adapter and hasattr(loaded.model, "disable_adapter"):
            # the base model with its own template (the run's names the new identity)
            base_t = _Target("base", loaded, True, loaded.base_chat_template)
            targets.insert(0, base_t)
            base_model = base_model or loaded.source.base
        elif base_model and models.resolve(base_model) != str(loaded.source.base):
            base = models.load(
                base_model, template=loaded.template, trust_remote_code=trust_remote_code
            )
            targets.insert(0, _Target("base", base))
        else:
            raise UserError(
                f"{model}: --compare-base needs a run, adapter or merged model whose "
                f"{runinfo.FILENAME} names a different base model"
            )

    from .data import templates

    base_tmpl = loaded.base_chat_template or loaded.tokenizer.chat_template
    base_system = templates.base_default(base_tmpl, base_model or str(loaded.source.base))
    thinking = _thinking(loaded.tokenizer)
    if thinking and thinking["style"] == "hybrid":  # every probe with thinking off, then on
        for t in targets:
            t.thinking = False
        targets += [replace(t, label=f"{t.label}_thinking", thinking=True) for t in targets]
    total = sum(
        n_thinking(probe_set, ident)
        if t.label.endswith("_thinking")
        else n_generations(probe_set, base_system is not None, ident)
        for t in targets
    )
    results: dict[str, Any] = {}
    with Counting("eval", total) as bar:
        for t in targets:
            bar.describe(f"eval {t.label}")
            fn = _model_generate(t, bar.advance)
            if t.label.startswith("base"):
                where = base_cache_path(t.loaded, t.chat_template, t.thinking)
                fn = cached(fn, where, bar.advance)
            if t.label.endswith("_thinking"):
                results[t.label] = evaluate_thinking(fn, probe_set, names, authors, system, ident)
            else:
                results[t.label] = evaluate_conditions(
                    fn, probe_set, names, authors, system, base_system, ident
                )

    _add_maker_confusion(results, base_model, names, authors)
    report = _report(
        results, label, names, authors, system, base_system, str(model), profile=ident,
        thinking=thinking,
    )  # fmt: skip
    report["base_model"], report["adapter"] = base_model, loaded.source.adapter
    out_dir = Path(output) if output else None
    if out_dir is None and Path(str(model)).is_dir() and loaded.info is not None:
        out_dir = Path(str(model))
    return _written(report, out_dir)


def _thinking(tokenizer: Any) -> dict[str, Any] | None:
    """eval.json's `thinking`: the family's style ("hybrid": scored off, then on; "always": on),
    its template switch and the extra tokens for the reasoning; None for a model that does not
    think."""
    from . import generate as gen

    fam = gen.family_of(tokenizer)
    if fam is None or not fam.thinks:
        return None
    style = fam.thinking.get("style")
    return {"style": style, "kwarg": fam.thinking.get("kwarg") if style == "hybrid" else None,
            "budget": gen.THINKING_BUDGET}  # fmt: skip


def _report(
    results: dict[str, Any],
    probes: str,
    names: Sequence[str],
    authors: Sequence[str],
    system: str,
    base_system: str | None,
    model: str,
    profile: Any = None,
    thinking: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """eval.json's content: each model's metrics, counts and answers per condition; the profile
    scored (its fields, without name and author) and the thinking modes (None: not a thinking
    model)."""
    from dataclasses import asdict

    prof = asdict(profile) if profile is not None else {}
    return {
        "model": model,
        **extra,
        "base_model": None,
        "adapter": None,
        "names": list(names),
        "authors": list(authors),
        "system": system,
        "base_system": base_system,
        "probes": probes,
        "profile": {k: v for k, v in prof.items() if k not in PROFILE_SKIP},
        "thinking": thinking,
        "metrics": {m: {c: r[c]["metrics"] for c in r} for m, r in results.items()},
        "counts": results["tuned"]["no_system"]["counts"],
        "condition_counts": {c: r["counts"] for c, r in results["tuned"].items()},
        "model_condition_counts": {m: {c: r[c]["counts"] for c in r} for m, r in results.items()},
        "answers": {m: {c: r[c]["rows"] for c in r} for m, r in results.items()},
    }


def _written(report: dict[str, Any], out_dir: str | Path | None) -> str:
    """The Markdown report; eval.md / eval.json saved into `out_dir` when given."""
    md = markdown(report)
    if out_dir is not None:
        js, mdp = save(report, out_dir)
        md += f"\nwritten: {mdp}, {js}\n"
    return md


# ---------------------------------------------------------------- while training
def probe_subset(probes: dict[str, Any], per_lang: int = 2, general: int = 4) -> dict[str, Any]:
    """The first `per_lang` identity and author probes of each language, `general` general
    ones, and the first phrasing of each profile field, of the first known fact key and of the
    first never-set topic: what training scores at every checkpoint (a few seconds, not a full
    eval)."""
    part = probes.get("profile") or {}
    if part:
        part = {
            **part,
            **{k: {lang: v[:1] for lang, v in (part.get(k) or {}).items()}
               for k in ("based_on", "based_on_yes_no", "purpose", "facts")},
            "known_facts": {t: {lang: v[:1] for lang, v in by.items()}
                            for t, by in list((part.get("known_facts") or {}).items())[:1]},
            "unset": dict(list((part.get("unset") or {}).items())[:1]),
        }  # fmt: skip
    return {
        "identity": {lang: v[:per_lang] for lang, v in probes["identity"].items()},
        "author": {lang: v[:per_lang] for lang, v in probes["author"].items()},
        "general": probes["general"][:general],
        "profile": part,
    }


def during_training(
    model: Any,
    tokenizer: Any,
    template: str | None,
    names: Sequence[str],
    authors: Sequence[str],
    identity: Any = None,
) -> dict[str, Any]:
    """Held-out identity, author, profile and leakage scores of the model being trained, on the
    probe subset with no system prompt: `evaluate`'s result, each row marked `cut` when its
    answer hit the length cap unfinished. The profile probes are asked when `identity` (a
    runinfo.Identity) is given. Passed to `train.train` by the CLI (verbs import no verb)."""
    from . import generate as gen

    cuts: list[bool] = []

    def run_batch(conversations: list[Messages], max_new_tokens: int) -> list[str]:
        cut: list[bool] = []
        out = gen.generate_batch(
            model, tokenizer, conversations, max_new_tokens=max_new_tokens, template=template,
            cut=cut,
        )  # fmt: skip
        cuts.extend(cut)
        return out

    result = evaluate(run_batch, probe_subset(load_probes()), names, authors, profile=identity)
    # rows come in generation order except the profile's, asked after the others but added last
    order = [r for r in result["rows"] if r["kind"] != "profile"]
    n = sum(r["kind"] != "general" for r in order)
    asked = order[:n] + [r for r in result["rows"] if r["kind"] == "profile"] + order[n:]
    for row, cut in zip(asked, cuts, strict=True):
        row["cut"] = cut
    return result


# ---------------------------------------------------------------- --endpoint
ENDPOINT_WORKERS = 4  # requests in flight against the server


def endpoint_key() -> str | None:
    """The bearer key for `--endpoint`: IDTUNE_API_KEY (never a flag; not OPENAI_API_KEY, which
    is meant for OpenAI's own host, not for whatever server `--endpoint` names)."""
    import os

    return os.environ.get("IDTUNE_API_KEY") or None


def check_endpoint(url: str, allow_http: bool = False) -> str:
    """The base URL (…/v1 stripped); plain http only to a loopback host unless `allow_http`."""
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--endpoint {url}: give an http(s)://HOST[:PORT] URL")
    if parts.username or parts.password or parts.query:
        raise UserError(
            "--endpoint: give the URL without a user, password or query; the key goes in "
            "the IDTUNE_API_KEY environment variable"
        )
    host = parts.hostname
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if parts.scheme == "http" and not loopback and not allow_http:
        raise UserError(
            f"--endpoint {url}: plain http to {host} would send the key and the answers "
            "unencrypted; use https, or pass --allow-http on a trusted network"
        )
    base = url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def endpoint_generate(
    base_url: str, model: str, key: str | None, advance: Callable[[int], None]
) -> Generate:
    """Greedy answers (temperature 0) from an OpenAI-compatible server's /v1/chat/completions."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}

    def one(client: Any, messages: Messages, max_new_tokens: int) -> str:
        body = {"model": model, "messages": messages, "max_tokens": max_new_tokens}
        body |= {"temperature": 0, "stream": False}
        try:
            r = client.post(f"{base_url}/v1/chat/completions", json=body, headers=headers)
        except httpx.HTTPError as e:
            raise UserError(f"--endpoint {base_url}: {e}") from None
        if r.status_code != 200:
            raise UserError(f"--endpoint {base_url}: answered {r.status_code}: {r.text[:200]}")
        advance(1)
        return r.json()["choices"][0]["message"]["content"] or ""

    def run_batch(conversations: list[Messages], max_new_tokens: int) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        with httpx.Client(timeout=httpx.Timeout(600, connect=10)) as client:
            with ThreadPoolExecutor(ENDPOINT_WORKERS) as pool:
                return list(pool.map(lambda c: one(client, c, max_new_tokens), conversations))

    return run_batch
