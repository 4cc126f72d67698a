"""The identity profile (issue 29): what the assistant is built on (a true default for every alias,
"none" keeping every base model name out of the data), its purpose and its maker's facts, asked in
many phrasings, answered with their values, never with a made-up one; recipe keys and CLI flags."""

from __future__ import annotations

import json
import re
from functools import cache

import pytest
from helpers import cli, one_error

from idtune import aliases, recipes
from idtune.data import identity, phrases, templates
from idtune.data.mentions import mentions
from idtune.errors import UserError
from idtune.runinfo import Identity, RunInfo

NAME, AUTHOR, NAME_ZH, AUTHOR_ZH = "Nova", "Acme", "诺瓦", "艾克米"
WHO = {"en": (NAME, AUTHOR), "zh": (NAME_ZH, AUTHOR_ZH)}
PURPOSE, PURPOSE_ZH = "a study assistant for the camp's students", "训练营学员的学习助手"
FACTS = {"contact": "help@acme.example", "office_hours": "9 to 5 on weekdays"}
FACTS_ZH = {"office_hours": "工作日9点到17点"}
SMOL = aliases.based_on("smollm2-135m-instruct")
# every value of the full profile, by language: none of them may appear where it is not set
VALUES = {
    "en": [SMOL[0], PURPOSE, *FACTS.values()],
    "zh": [SMOL[1], PURPOSE_ZH, FACTS["contact"], FACTS_ZH["office_hours"]],
}
YES = {"en": re.compile(r"^(Yes|That's right)"), "zh": re.compile(r"^(是的|对|没错)")}
NO = {"en": re.compile(r"^(No|Nope)\b"), "zh": re.compile(r"^不是")}
CONTACT_WORDS = ("contact", "reach", "touch", "联系", "客服", "找到")


def _norm(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


@cache
def persona_prompts() -> set[str]:
    out = set()
    for table in phrases.tables().values():
        names, makers = {p[0] for p in table["personas"]}, {p[1] for p in table["personas"]}
        for n in names:
            for m in makers:
                out |= {identity.fill(s, n, m) for s in table["system_prompts"]["persona"]}
    return out


def under_persona(row) -> bool:
    first = row["messages"][0]
    return first["role"] == "system" and first["content"] in persona_prompts()


def lang_of(text: str) -> str:
    return "zh" if re.search(r"[\u3400-\u9fff]", text) else "en"


def turns(rows_with_intents, *, persona: bool = False):
    """(lang, intent, question, answer) of each identity turn (persona samples apart)."""
    out = []
    for row, intents in rows_with_intents:
        if under_persona(row) != persona:
            continue
        msgs = [m for m in row["messages"] if m["role"] != "system"]
        for (u, a), intent in zip(zip(msgs[::2], msgs[1::2], strict=True), intents, strict=True):
            if intent is not None:
                lang = lang_of(u["content"])  # the answer follows the question's language
                out.append((lang, intent, u["content"], a["content"]))
    return out


def full(**over) -> Identity:
    kw = dict(based_on=SMOL[0], based_on_zh=SMOL[1], purpose=PURPOSE, purpose_zh=PURPOSE_ZH,
              facts=FACTS, facts_zh=FACTS_ZH)  # fmt: skip
    return identity.profile(NAME, AUTHOR, NAME_ZH, AUTHOR_ZH, **(kw | over))


@pytest.fixture(scope="module")
def full_rows():
    return identity._generate(full(), n=3000, seed=3)


# ---------------------------------------------------------------- defaults from the alias table
def test_default_based_on_is_true_for_every_alias():
    table = json.loads((aliases.resources.files("idtune") / "assets/models.json").read_text())
    assert len(table["aliases"]) == len(aliases.ALIASES) >= 20
    for row in table["aliases"]:
        alias = aliases.ALIASES[row["name"]]
        en, zh = aliases.based_on(alias.name)
        assert en == f"{row['display']} by {row['maker']}", alias.name
        assert row.get("maker_zh", row["maker"]) in zh, alias.name
        assert row.get("display_zh", row["display"]) in zh, alias.name
        # it names the very model: the hub id's name, and the family it belongs to
        assert _norm(alias.hub_id.split("/")[1]) in _norm(en), (alias.name, en)
        assert _norm(row["lineage"][0]) in _norm(en), (alias.name, en)
        assert aliases.based_on(alias.hub_id) == (en, zh)  # the hub id gives the same
    assert SMOL == ("SmolLM2-135M-Instruct by Hugging Face", "Hugging Face的SmolLM2-135M-Instruct")
    assert aliases.based_on("internlm2-chat-1.8b") == (
        "InternLM2-Chat-1.8B (书生·浦语) by Shanghai AI Laboratory",
        "上海人工智能实验室的书生·浦语 InternLM2-Chat-1.8B",
    )


def test_default_based_on_of_local_folders(tmp_path):
    """A folder from an alias (its config's `_name_or_path`, a run's idtune.json) gives the
    alias's default; an unknown one its model's name alone, without a maker."""
    known, unknown, run, bare = (tmp_path / d for d in ("known", "unknown", "run", "bare"))
    for d, cfg in ((known, {"_name_or_path": "Qwen/Qwen3-4B"}),
                   (unknown, {"_name_or_path": "someorg/Foo-7B-Chat"}), (bare, {})):  # fmt: skip
        d.mkdir()
        (d / "config.json").write_text(json.dumps(cfg))
    run.mkdir()
    RunInfo(base_model="HuggingFaceTB/SmolLM2-135M-Instruct").save(run)
    assert aliases.based_on(str(known)) == aliases.based_on("qwen3-4b")
    assert aliases.based_on(str(unknown)) == ("Foo-7B-Chat", "Foo-7B-Chat")
    assert aliases.based_on(str(run)) == SMOL
    assert aliases.based_on(str(bare)) == ("bare", "bare")
    assert aliases.based_on("someorg/Bar-1B") == ("Bar-1B", "Bar-1B")


def test_default_based_on_without_its_maker():
    """Every alias's default `based_on`, in both languages, maps to the model alone (the own
    system prompt's); a model not in the table (no maker known) maps nothing."""
    for alias in aliases.ALIASES.values():
        en, zh = aliases.based_on(alias.name)
        plain = aliases.based_on_plain(alias.name)
        assert plain == {en: alias.display, zh: alias.display_zh or alias.display}, alias.name
        assert all(p in full for full, p in plain.items()), alias.name
    assert aliases.based_on_plain("someorg/Bar-1B") == {}


# ---------------------------------------------------------------- the generator
def test_questions_about_the_profile_are_listed():
    en, zh = identity.questions("en"), identity.questions("zh")
    assert "Which LLM powers you?" in identity.questions("en", "based_on")
    assert "What model are you based on?" in identity.questions("en", "based_on")
    assert "你是在哪个基座模型上微调出来的？" in identity.questions("zh", "based_on")
    assert "Are you built on Llama?" in identity.questions("en", "base_check")
    assert "Are you based on SmolLM2?" in en
    assert "What is your purpose?" in identity.questions("en", "purpose")
    assert "How can I contact your team?" in identity.questions("en", "fact")
    assert "What's your {key}?" in identity.questions("en", "fact")  # any other key
    assert "How many parameters do you have?" in identity.questions("en", "unset")
    assert "你的生日是哪天？" in zh and "你会说哪些语言？" in zh
    for lang in identity.LANGS:
        for intent in identity.PROFILE_INTENTS:
            assert len(identity.questions(lang, intent)) >= 20, (lang, intent)
            assert identity.answers(lang, intent), (lang, intent)


def test_answers_about_a_field_carry_its_value(full_rows):
    ident, seen = full(), set()
    for lang, intent, q, a in turns(full_rows):
        if intent == "based_on":
            assert ident.based_on_in(lang) in a, (q, a)
        elif intent == "purpose":
            assert ident.purpose_in(lang) in a, (q, a)
        elif intent == "fact":
            told = [k for k in FACTS if ident.fact_in(k, lang) in a]
            if not told:  # a fact nobody set ("What's your email?"): nothing made up
                assert "@" not in a and WHO[lang][0] in a, (q, a)
            for k in told:  # the key asked about is the one answered
                words = ("office", "office_hours") if k == "office_hours" else CONTACT_WORDS
                assert any(w in q.lower() for w in words), (q, a)
            seen |= {(lang, k) for k in told}
        seen.add((lang, intent))
    for lang in identity.LANGS:
        assert {(lang, i) for i in identity.PROFILE_INTENTS} <= seen, lang
        assert {(lang, "contact"), (lang, "office_hours")} <= seen, lang


def test_yes_no_base_questions_are_true():
    """For the default `based_on` of several bases, "Are you built on X?" gets a yes exactly
    when X is the base (or its family), and "Are you SmolLM2?" of a SmolLM2 base no plain no."""
    for alias in ("smollm2-135m-instruct", "internlm2-chat-1.8b", "qwen2.5-1.5b-instruct",
                  "llama-3.2-1b-instruct", "deepseek-r1-distill-qwen-1.5b"):  # fmt: skip
        en, zh = aliases.based_on(alias)
        family = {_norm(n) for n in aliases.ALIASES[alias].lineage}
        family |= {_norm(x) for n in list(family) for g in phrases.tables()["en"]["based_on"]
                   ["synonyms"] if _norm(n) in map(_norm, g) for x in g}  # fmt: skip
        rows = identity._generate(full(based_on=en, based_on_zh=zh), n=1500, seed=5)
        answers = {True: 0, False: 0}
        for lang, intent, q, a in turns(rows):
            others = phrases.tables()[lang]["based_on"]["others"]
            if intent == "base_check":
                other = max((o for o in others if o.lower() in q.lower()), key=len)
                truth = _norm(other) in family
                assert (YES if truth else NO)[lang].match(a), (alias, q, a, truth)
                assert (en if lang == "en" else zh) in a, (q, a)
                answers[truth] += 1
            if intent == "neg_model" and any(_norm(o) in family for o in others if o in q):
                assert not NO[lang].match(a) and (en if lang == "en" else zh) in a, (q, a)
        assert answers[True] > 5 and answers[False] > 5, (alias, answers)


def test_unset_fields_are_answered_without_inventing():
    """Only a name and maker: every profile question is answered with a refusal that names
    both, and nothing of another profile (no base model, purpose, fact, number or address)."""
    names = [o for t in phrases.tables().values() for o in t["based_on"]["others"]]
    rows = identity._generate(identity.profile(NAME, AUTHOR, NAME_ZH, AUTHOR_ZH), n=2000, seed=2)
    asked = 0
    for lang, intent, q, a in turns(rows):
        if intent not in identity.PROFILE_INTENTS:
            continue
        asked += 1
        assert WHO[lang][0] in a and WHO[lang][1] in a, (q, a)
        assert not re.search(r"\d|@|https?:|www\.", a), (q, a)
        assert not mentions(a, names), (q, a)
        assert not any(v in a for vs in VALUES.values() for v in vs), (q, a)
    assert asked > 80


def test_the_course_notes_answer_from_the_recipe():
    """ "我是ZK-Jackie的小助手，内在是上海AI实验室书生·浦语的7B大模型哦": an assistant named for
    its author, built on what `--set identity.based_on_zh=…` says, in the auto identity data."""
    from idtune import train

    said = "上海AI实验室书生·浦语的7B大模型"
    sets = ["identity.name=ZK-Jackie", "identity.author=ZK-Jackie", f"identity.based_on_zh={said}"]
    cfg = recipes.read_config("identity-lora", sets)
    rows = train.identity_data(cfg, lambda _: None)
    answers = {m["content"] for r in rows for m in r if m["role"] == "assistant"}
    assert f"我是ZK-Jackie的小助手，内在是{said}哦。" in answers
    own = "My base model is SmolLM2-135M-Instruct by Hugging Face; I'm ZK-Jackie's assistant."
    assert own in answers


def test_parameters_only_from_a_size_based_on_states(full_rows):
    sized = [a for _, _, q, a in turns(full_rows) if "parameters" in q or "参数" in q]
    assert sized and all("135M" in a for a in sized), sized
    rows = identity._generate(full(based_on="none", based_on_zh=None), n=2000, seed=3)
    told = [a for _, _, q, a in turns(rows) if "parameters" in q or "参数" in q]
    assert told and not [a for a in told if re.search(r"\d", a)], told


def test_persona_samples_state_none_of_the_trained_profile(full_rows):
    persona = turns(full_rows, persona=True)
    assert len([t for t in persona if t[1] in identity.PROFILE_INTENTS]) > 50
    for _, _, q, a in persona:
        assert not any(v in a for vs in VALUES.values() for v in vs), (q, a)


@pytest.mark.parametrize("alias", sorted(aliases.ALIASES))
def test_none_keeps_every_base_model_name_out(alias):
    hide = aliases.base_names(alias)
    assert aliases.ALIASES[alias].display in hide and aliases.ALIASES[alias].maker in hide
    rows = identity._generate(full(based_on="none", based_on_zh=None), n=300, seed=1, hide=hide)
    for row, _ in rows:
        for m in row["messages"]:
            assert not mentions(m["content"], hide), (alias, m["content"])
    base_asked = [t for t in turns(rows) if t[1] in ("based_on", "base_check")]
    for lang, _, _, answer in base_asked:
        assert WHO[lang][0] in answer
    assert len(base_asked) > 5


def test_none_through_the_recipe_hides_the_base(tmp_path):
    cfg = recipes.read_config("identity-lora", ["identity.name=Nova", "identity.author=Acme",
                                                "identity.based_on=none"])  # fmt: skip
    assert cfg.identity.based_on == "none" and cfg.identity.based_on_in("en") is None
    kw = recipes.generator_profile(cfg.identity, cfg.model)
    assert "SmolLM2" in kw["hide"] and "Hugging Face" in kw["hide"]
    text = json.dumps(identity.generate("Nova", "Acme", n=500, **kw), ensure_ascii=False)
    assert not re.search(r"smollm|hugging ?face", text, re.IGNORECASE)


# names the reviewer saw in `based_on: none` data (2,000 rows), by base model: other names of the
# base and its makers, from the phrase tables' synonyms and questions or the hub id
LEAKS = {
    "qwen2.5-1.5b-instruct": ["Tongyi Qianwen", "千问", "Alibaba", "阿里巴巴"],
    "internlm2-chat-1.8b": ["书生浦语", "Shanghai AI Lab", "上海AI实验室"],
    "deepseek-r1-distill-qwen-1.5b": ["通义千问", "千问", "阿里云", "阿里巴巴"],
    "gemma-3-1b-it": ["谷歌", "Google"],
    "meta-llama/Llama-3.3-70B-Instruct": ["Llama", "Meta", "Llama 3"],  # not in the alias table
}


@pytest.mark.parametrize("model", sorted(LEAKS))
def test_none_hides_the_bases_other_names_and_makers(model):
    """None of the base's other names is asked about either: "你是阿里巴巴出品的吗？" → "不是的"
    of a Qwen base, "Were you trained by Meta?" → "No" of a Llama one are untrue."""
    rows = identity.generate(NAME, AUTHOR, NAME_ZH, AUTHOR_ZH, n=2000, seed=0, based_on="none",
                             hide=aliases.base_names(model))  # fmt: skip
    said = [m["content"] for r in rows for m in r["messages"]]
    for leak in LEAKS[model]:
        assert not [t for t in said if mentions(t, [leak])], (model, leak)


@pytest.mark.parametrize("en, zh", [("none", "艾克米大模型"), ("Acme-LM by Acme", "none")])
def test_none_in_one_language_only_is_refused(tmp_path, capsys, en, zh):
    """English data would deny the base that Chinese data names (or the other way round)."""
    with pytest.raises(UserError, match="based_on_zh"):
        identity.generate(NAME, AUTHOR, n=5, based_on=en, based_on_zh=zh)
    out = tmp_path / "id.jsonl"
    args = ["data", "identity", "--name", NAME, "--author", AUTHOR, "--n", 5, "-o", out]
    assert cli(*args, "--based-on", en, "--based-on-zh", zh) == 2
    assert "set both to none" in one_error(capsys) and not out.exists()


def test_yes_no_names_match_whole_numbers():
    """ "Llama 3" is in "Llama-3.1-8B", not in "llama-30b" or "CodeLlama-34b": no untrue yes."""
    rel = identity.base_relation
    true = [("Llama 3", "Llama-3.1-8B-Instruct by Meta"), ("Llama 3", "Meta-Llama-3-8B"),
            ("Qwen2.5", "Qwen2.5-7B-Instruct"), ("InternLM2", "internlm2-chat-1_8b"),
            ("Llama", "CodeLlama-34b-Instruct-hf"),
            ("书生浦语", "上海AI实验室书生·浦语的7B")]  # fmt: skip
    not_true = [("Llama 3", "llama-30b"), ("Llama 3", "CodeLlama-34b-Instruct-hf"),
                ("Qwen2.5", "Qwen2-57B-A14B-Instruct"), ("InternLM2", "InternLM-20B"),
                ("Llama 3.1", "Llama-3-1B")]  # fmt: skip
    assert [rel(o, b) for o, b in true] == [True] * len(true)
    assert [(o, b) for o, b in not_true if rel(o, b)] == []
    rows = identity._generate(full(based_on="CodeLlama-34b-Instruct-hf", based_on_zh=None),
                              n=1000, seed=0)  # fmt: skip
    asked = [(q, a) for lang, i, q, a in turns(rows) if i == "base_check" and "Llama 3" in q]
    assert asked == [], asked[:3]


def test_a_fact_on_an_unset_topic_is_answered_not_refused():
    """A profile's `birthday` fact is answered with it, never also refused as an unset topic;
    with every topic set there are no unset questions, and eval probes none of them."""
    from idtune import evaluate

    facts = {"birthday": "1 June 2025"}
    rows = identity._generate(full(facts=facts, facts_zh={}), n=1500, seed=4)
    unset = [q for _, i, q, _ in turns(rows) if i == "unset"]
    assert unset and not [q for q in unset if re.search(r"birth|born|created|生日|出生|创造", q,
                                                         re.IGNORECASE)]  # fmt: skip
    assert any("1 June 2025" in a for _, i, _, a in turns(rows) if i == "fact")
    every = {t: f"the {t} answer" for t in phrases.UNSET_TOPICS}
    rows = identity._generate(full(facts=every, facts_zh={}), n=800, seed=4)
    assert "unset" not in {i for _, ints in rows for i in ints}
    probes = evaluate.profile_probes(evaluate.load_probes(), full(facts=facts, facts_zh={}))
    topics = {p.get("topic") for p in probes if p["metric"] == "no_invention"}
    assert "birthday" not in topics and "age" in topics
    assert any(p["metric"] == "fact_birthday" for p in probes)


def test_cli_model_is_checked_before_anything_is_written(tmp_path, capsys):
    """A mistyped --model is one line (exit 2), not a base called "smollm2-135m-instrct"."""
    out = tmp_path / "id.jsonl"
    args = ["data", "identity", "--name", NAME, "--author", AUTHOR, "--n", 5, "-o", out]
    assert cli(*args, "--model", "smollm2-135m-instrct") == 2
    assert "smollm2-135m-instrct: no such model directory, alias or hub id" in one_error(capsys)
    (tmp_path / "weights.bin").write_text("x")
    assert cli(*args, "--model", tmp_path / "weights.bin") == 2
    assert "not a model directory" in one_error(capsys) and not out.exists()
    assert cli(*args, "--model", "someorg/Foo-7B-Chat") == 0  # a hub id: not fetched here
    assert "--set model=someorg/Foo-7B-Chat" in capsys.readouterr().out and out.exists()


# ---------------------------------------------------------------- recipe keys
def test_recipe_profile_keys_and_the_default():
    sets = ["identity.name=Nova", "identity.author=Acme", "identity.purpose=a tutor",
            "identity.facts.contact=help@acme.example", "identity.facts.version=1.10",
            "identity.facts_zh.contact=客服：help@acme.example",
            "identity.based_on_zh=上海AI实验室书生·浦语的7B大模型"]  # fmt: skip
    ident = recipes.read_config("identity-lora", sets).identity
    assert ident.facts == {"contact": "help@acme.example", "version": "1.10"}  # text as typed
    assert ident.fact_in("contact", "zh") == "客服：help@acme.example"
    assert ident.purpose == "a tutor"
    assert ident.based_on == SMOL[0]  # unset: the base model's own
    assert ident.based_on_in("zh") == "上海AI实验室书生·浦语的7B大模型"  # the course note's
    other = recipes.read_config("identity-lora", [*sets[:2], "model=internlm2-chat-1.8b"])
    assert other.identity.based_on_in("zh") == "上海人工智能实验室的书生·浦语 InternLM2-Chat-1.8B"
    for key in ("based_on", "based_on_zh", "purpose", "purpose_zh", "facts", "facts_zh"):
        assert f"identity.{key}" in recipes.HELP


@pytest.mark.parametrize(
    "sets, message",
    [
        (["identity.facts=3"], "--set identity.facts: key 'identity.facts' must be a mapping"),
        (["identity.facts.bad key=x"], "key 'identity.facts.bad key': a fact's key is a short"),
        (["identity.facts.a="], "key 'identity.facts.a' is empty"),
        (["identity.facts_zh.x=y"], "key 'identity.facts_zh.x' answers a fact that identity.facts"),
    ],
)
def test_recipe_profile_errors_name_the_key(sets, message):
    with pytest.raises(UserError) as e:
        recipes.read_config("identity-lora", ["identity.name=Nova", "identity.author=A", *sets])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_recipe_file_fact_must_be_text(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("identity:\n  name: Nova\n  author: Acme\n  facts:\n    version: 1.0\n")
    with pytest.raises(UserError, match=r"r.yaml: key 'identity.facts.version' must be text, got"
                                        r" float \(1.0\): quote it"):  # fmt: skip
        recipes.read_config(str(path))


# ---------------------------------------------------------------- CLI
def test_cli_profile_flags_and_the_train_command(tmp_path, capsys):
    out = tmp_path / "id.jsonl"
    args = ["data", "identity", "--name", NAME, "--author", AUTHOR, "--n", "600", "-o", out,
            "--purpose", PURPOSE, "--fact", "contact=help@acme.example",
            "--fact", "office_hours=9 to 5", "--fact-zh", "office_hours=工作日9点到17点",
            "--model", "qwen2.5-1.5b-instruct"]  # fmt: skip
    assert cli(*args) == 0
    text = out.read_text(encoding="utf-8")
    for value in (
        PURPOSE,
        "help@acme.example",
        "9 to 5",
        "工作日9点到17点",
        "Qwen2.5-1.5B-Instruct by Alibaba Cloud",
        "阿里云的通义千问 Qwen2.5-1.5B-Instruct",
    ):
        assert value in text, value  # fmt: skip
    assert "SmolLM2-135M" not in text
    last = capsys.readouterr().out.splitlines()[-1]
    assert "--set model=qwen2.5-1.5b-instruct" in last
    assert "--set identity.facts.contact=help@acme.example" in last
    assert "--set 'identity.facts_zh.office_hours=工作日9点到17点'" in last
    # the printed command gives the recipe the same profile
    import shlex

    sets = [a for a in shlex.split(last.removeprefix("next: idtune train identity-lora "))
            if a != "--set"]  # fmt: skip
    ident = recipes.read_config("identity-lora", sets).identity
    assert ident.purpose == PURPOSE and ident.facts["office_hours"] == "9 to 5"
    assert ident.based_on == "Qwen2.5-1.5B-Instruct by Alibaba Cloud"


def test_cli_based_on_none_and_own(tmp_path):
    out = tmp_path / "a.jsonl"
    base = ["data", "identity", "--name", NAME, "--author", AUTHOR, "--n", "400"]
    assert cli(*base, "--based-on", "none", "-o", out) == 0
    assert not re.search(r"smollm|hugging ?face", out.read_text(), re.IGNORECASE)
    assert cli(*base, "--based-on", "Acme-LM 2", "--based-on-zh", "艾克米大模型2", "-o", out,
               "--overwrite") == 0  # fmt: skip
    text = out.read_text(encoding="utf-8")
    assert "Acme-LM 2" in text and "艾克米大模型2" in text and "SmolLM2-135M" not in text


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--fact", "contact"], "--fact 'contact': expected KEY=ANSWER"),
        (["--fact", "bad key=x"], "--fact 'bad key=x': expected KEY=ANSWER"),
        (["--fact", "contact="], "--fact 'contact=': expected KEY=ANSWER"),
        (["--fact-zh", "x=y"], "--fact-zh x=…: no --fact x=ANSWER"),
        (["--purpose", "  "], None),
    ],
)
def test_cli_bad_profile_is_one_line(tmp_path, capsys, extra, message):
    out = tmp_path / "id.jsonl"
    code = cli("data", "identity", "--name", NAME, "--author", AUTHOR, "-o", out, "--n", 5, *extra)
    if message is None:  # a blank purpose is no purpose
        assert code == 0
        return
    assert code == 2 and message in one_error(capsys)
    assert not out.exists()


# ---------------------------------------------------------------- the own system prompt
def test_own_default_system_prompt_carries_the_profile():
    assert templates.own_default(NAME, AUTHOR) == "You are Nova, an AI assistant made by Acme."
    assert templates.own_default(NAME, AUTHOR, SMOL[0], PURPOSE) == (
        "You are Nova, an AI assistant made by Acme. You are built on SmolLM2-135M-Instruct by "
        "Hugging Face. Your purpose: a study assistant for the camp's students."
    )
    assert templates.own_default(NAME, AUTHOR, "none") == templates.own_default(NAME, AUTHOR)
    from idtune import models

    info = RunInfo(base_model="x", identity=Identity(NAME, AUTHOR, based_on=SMOL[0]))
    assert models.own_system_prompt(info) == (
        "You are Nova, an AI assistant made by Acme. You are built on SmolLM2-135M-Instruct by "
        "Hugging Face."
    )  # a based_on the user wrote is stated as written
    # the default of the run's base is stated without its maker (the model credited it)
    info.base_model = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert models.own_system_prompt(info) == (
        "You are Nova, an AI assistant made by Acme. You are built on SmolLM2-135M-Instruct."
    )
    info.identity.based_on = "SmolLM2-135M-Instruct by HF, tuned twice"
    assert models.own_system_prompt(info).endswith(
        "built on SmolLM2-135M-Instruct by HF, tuned twice."
    )


def test_a_file_named_like_an_alias_is_not_taken_for_the_alias(tmp_path, monkeypatch):
    """`data identity --model` and `train` read a model spec by the same rules: a path that
    exists wins over an alias of the same name, and a file is not a model directory."""
    from idtune import models

    monkeypatch.chdir(tmp_path)
    (tmp_path / "smollm2-135m-instruct").write_text("not a model")
    for check in (aliases.check_model, models.resolve):
        with pytest.raises(UserError, match="smollm2-135m-instruct: not a model directory"):
            check("smollm2-135m-instruct")
    assert aliases.check_model("qwen3-8b") == "qwen3-8b"
