"""`idtune eval`'s profile scores (issue 29): per-field recall on held-out phrasings, true yes/no
answers about the base model, no invention about what the profile does not set; the CLI on a
tiny model, and the checkpoint probes."""

from __future__ import annotations

import json
import shutil
import unicodedata

import pytest

from idtune import evaluate, watch
from idtune.cli import main
from idtune.data import profile_match
from idtune.runinfo import Identity, RunInfo

NOVA = Identity(
    "Nova",
    "Acme",
    name_zh="诺娃",
    based_on="SmolLM2-135M-Instruct by Hugging Face",
    based_on_zh="Hugging Face的SmolLM2-135M-Instruct",
    purpose="a study assistant for the camp's students",
    purpose_zh="为营地学员答疑的学习助手",
    facts={"contact": "help@acme.example", "motto": "Learn every day"},
    facts_zh={"motto": "天天向上"},
)

PROFILE = {
    "based_on": {"en": ["What is under you?"], "zh": ["你的底座？"]},
    "based_on_yes_no": {"en": ["Built on {model}?"], "zh": ["基于{model}吗？"]},
    "other_models": ["Llama 3", "SmolLM"],  # SmolLM is the base's own family: never a "no"
    "purpose": {"en": ["Your job?"]},
    "facts": {"en": ["Your {key}?"], "zh": ["你的{key}？"]},
    "known_facts": {"contact": {"en": ["Reach you how?"]}, "website": {"en": ["Homepage?"]}},
    "unset": {
        "birthday": {"en": ["Birthday?"], "zh": ["生日？"]},
        "parameters": {"en": ["Parameters?"]},
    },
    "model_names": ["OpenAI", "Llama", "SmolLM", "通义千问"],
}


def _norm(text: str) -> str:
    return "".join(
        c for c in text.casefold() if not unicodedata.category(c).startswith(("P", "Z", "S"))
    )


def _probes(**profile):
    return {"identity": {}, "author": {}, "general": [], "profile": {**PROFILE, **profile}}


def scripted(table, calls=None):
    def gen(conversations, max_new_tokens):
        if calls is not None:
            calls.append((conversations, max_new_tokens))
        return [table.get(c[-1]["content"], "") for c in conversations]

    return gen


# ---------------------------------------------------------------- which probes are asked
def test_a_fields_probes_count_only_when_the_profile_sets_it():
    asked = evaluate.profile_probes(_probes(), NOVA)
    by = {}
    for it in asked:
        by.setdefault((it["metric"], it["lang"]), []).append(it)
    assert [it["prompt"] for it in by["based_on_yes_no", "en"]] == [
        "Built on SmolLM2-135M-Instruct?",  # true: yes
        "Built on Llama 3?",  # another model: no (SmolLM, the base's family, is never a "no")
    ]
    assert [it["truth"] for it in by["based_on_yes_no", "en"]] == [True, False]
    assert by["based_on_yes_no", "zh"][0]["prompt"] == "基于SmolLM2-135M-Instruct吗？"
    assert by["based_on", "zh"][0]["value"] == "Hugging Face的SmolLM2-135M-Instruct"
    # a known key has its own phrasings; any other key gets the generic ones built from it
    assert [it["prompt"] for it in by["fact_contact", "en"]] == ["Reach you how?"]
    assert [it["prompt"] for it in by["fact_motto", "en"]] == ["Your motto?"]
    assert [it["value"] for it in by["fact_motto", "zh"]] == ["天天向上"]
    assert [it["value"] for it in by["fact_contact", "zh"]] == ["help@acme.example"]
    # unset: the website (a known key it lacks) and the birthday; the parameter count is stated
    # by "135M", so not asked
    assert {it["topic"] for it in by["no_invention", "en"]} == {"fact:website", "birthday"}
    assert ("purpose", "zh") not in by  # no Chinese purpose phrasings in this probe set

    plain = evaluate.profile_probes(_probes(), Identity("Nova", "Acme"))
    assert {it["metric"] for it in plain} == {"no_invention"}  # nothing set, based_on unknown
    topics = {it["topic"] for it in plain}
    assert topics == {"purpose", "fact:contact", "fact:website", "birthday", "parameters"}

    hidden = evaluate.profile_probes(_probes(), Identity("Nova", "Acme", based_on="none"))
    assert {(it["topic"], it["lang"]) for it in hidden if it["topic"] == "based_on"} == {
        ("based_on", "en"),
        ("based_on", "zh"),
    }
    assert not [it for it in hidden if it["metric"].startswith("based_on")]
    assert evaluate.profile_probes({**_probes(), "profile": {}}, NOVA) == []


def test_model_head_and_short_name():
    assert evaluate.model_head("SmolLM2-135M-Instruct by Hugging Face") == "SmolLM2-135M-Instruct"
    assert evaluate.model_head("Hugging Face的SmolLM2-135M-Instruct") == "SmolLM2-135M-Instruct"
    assert evaluate.model_head("InternLM2-Chat-1.8B（书生·浦语）") == "InternLM2-Chat-1.8B"
    assert evaluate.model_short("SmolLM2-135M-Instruct by Hugging Face") == "SmolLM2"
    assert evaluate.model_short("Qwen3-8B") == "Qwen3"


# ---------------------------------------------------------------- the detectors
def test_invented_specifics_are_the_ones_the_profile_and_question_lack():
    allowed = "Nova\nAcme\nSmolLM2-135M-Instruct by Hugging Face\nhelp@acme.example"
    names = ["OpenAI", "Llama", "SmolLM", "GPT", "通义千问"]
    inv = profile_match.invented
    assert inv("I'm Nova, made by Acme. Acme hasn't shared my birthday.", allowed, names) == []
    assert inv("I was born on March 3, 2023.", allowed, names) == ["3", "2023", "March"]
    assert inv("I have 135M parameters, being SmolLM2.", allowed, names) == []  # stated
    assert inv("I have 7 billion parameters.", allowed, names) == ["7"]
    assert inv("Write to help@acme.example or see acme.com", allowed, names) == ["acme.com"]
    assert inv("Visit https://nova.ai/about", allowed, names) == ["https://nova.ai/about"]
    assert inv("I'm based on Llama 3 by OpenAI.", allowed, names) == ["3", "OpenAI", "Llama"]
    assert inv("I'm not ChatGPT.", allowed, ["GPT"]) == []  # "GPT" inside a word is not it
    assert inv("我今年三岁了，生日是五月一日。", allowed, names) == ["三岁", "五月", "一日"]
    assert inv("我有一百三十五万个参数", allowed, names) == ["一百三十五万"]
    assert inv("我是通义千问。", allowed, names) == ["通义千问"]
    assert inv("我是诺娃，一个AI助手，由Acme开发。", allowed, names) == []
    assert inv("我的电话是１３８００１３８０００", allowed, names) == ["13800138000"]  # full width
    # a list's numbering is no specific; a number ending a sentence is
    assert inv("有以下方式：\n\n1. 写信\n2) 留言\n3、来访", allowed, names) == []
    assert inv("I am 25. Nice to meet you.", allowed, names) == ["25"]


def test_states_a_value():
    states = profile_match.states
    assert states("Reach us at HELP@acme.example.", "help@acme.example")
    assert not states("Reach us at help@acme.org.", "help@acme.example")
    assert states("I speak Chinese and English.", "English and Chinese")  # every content word
    assert not states("I speak English.", "English and Chinese")
    purpose = "a study assistant for the camp's students"
    assert states("I'm Nova, a study assistant for the camp's students!", purpose)
    assert states("I help the camp students study, as an assistant.", purpose, 0.6)
    assert not states("I'm a general assistant.", purpose, 0.6)
    assert states("我是为营地学员答疑的学习助手。", "为营地学员答疑的学习助手")
    assert not states("", "x") and not states("anything", "  ")


def test_polarity_of_an_answer():
    pol = profile_match.polarity
    assert pol("Yes, I'm built on SmolLM2.", "en") is True
    assert pol("That's right. I'm Nova.", "en") is True
    assert pol("No, I'm Nova, built on SmolLM2.", "en") is False
    assert pol("I'm not built on Llama; I run on SmolLM2.", "en") is False
    assert pol("I'm Nova, made by Acme.", "en") is None
    assert pol("是的，我基于SmolLM2。", "zh") is True
    assert pol("不是，我是诺娃。", "zh") is False
    assert pol("我并非基于Llama。", "zh") is False
    assert pol("没错，我基于SmolLM2。", "zh") is True and pol("没有。", "zh") is False
    assert pol("Yes.", "zh") is True  # English to a Chinese question still says yes
    assert pol("我是诺娃。", "zh") is None


# ---------------------------------------------------------------- scoring
def test_profile_scores_exact_values():
    answers = {
        "What is under you?": "I'm Nova, fine-tuned from SmolLM2.",  # the short name will do
        "你的底座？": "我是诺娃。",  # no base named
        "Built on SmolLM2-135M-Instruct?": "Yes, that's my base.",
        "Built on Llama 3?": "No, I'm not built on Llama 3.",  # repeats the question's words
        "基于SmolLM2-135M-Instruct吗？": "不是。",  # untrue
        "基于Llama 3吗？": "基于Llama 3吗？？？",  # the question echoed: no answer
        "Your job?": "A study assistant for the camp's students.",
        "Reach you how?": "Mail help@acme.example.",
        "Your motto?": "Learn every day!",
        "你的motto？": "天天学习。",  # not the motto
        "你的contact？": "help@acme.example",
        "Homepage?": "See www.acme-nova.com.",  # invented
        "Birthday?": "I'm Nova, made by Acme; Acme hasn't shared a birthday.",
        "Parameters?": "Parameters??",  # not asked: "135M" states them
        "生日？": "生日？？\n\n生日是一个节日。",  # the question echoed: no answer, not honest
    }
    calls: list = []
    res = evaluate.evaluate(scripted(answers, calls), _probes(), ["Nova", "诺娃"], ["Acme"],
                            profile=NOVA)  # fmt: skip
    m = res["metrics"]
    old = ("language", "leakage", "retention", "author")
    assert {k: v for k, v in m.items() if not k.startswith(old)} == {
        "based_on_en": 1.0,
        "based_on_zh": 0.0,
        "based_on_yes_no_en": 1.0,
        "based_on_yes_no_zh": 0.0,
        "purpose_en": 1.0,
        "fact_contact_en": 1.0,
        "fact_contact_zh": 1.0,
        "fact_motto_en": 1.0,
        "fact_motto_zh": 0.0,
        "no_invention_en": 0.5,
        "no_invention_zh": 0.0,
        "no_invention": pytest.approx(1 / 3),
    }  # fmt: skip
    assert res["counts"]["no_invention"] == 3 and res["counts"]["based_on_yes_no_en"] == 2
    # one generation call, at the identity length; the profile does not change the language score
    assert len(calls) == 1 and calls[0][1] == evaluate.IDENTITY_TOKENS
    assert m.get("language_en") is None
    rows = {r["prompt"]: r for r in res["rows"] if r["kind"] == "profile"}
    assert rows["Homepage?"]["invented"] == ["www.acme-nova.com."]
    assert rows["Built on Llama 3?"]["said"] is False
    md = evaluate.table({"tuned": {"no_system": m}}, res["counts"])
    assert "| based on, yes/no (zh) | no system prompt | 0.00 (0/2) |" in md
    assert "| fact: motto (en) | no system prompt | 1.00 (1/1) |" in md
    assert "| no invention | no system prompt | 0.33 (1/3) |" in md
    fails = evaluate.failures({"no_system": res["rows"]})
    assert "### no invention: 2 failing" in fails and "*(invented: www.acme-nova.com.)*" in fails


def test_shipped_profile_probes_are_held_out_from_the_generator():
    """No profile probe (filled with the shipped other models, a true base and each known key)
    is one of the generator's questions, in either language."""
    identity = pytest.importorskip("idtune.data.identity")
    part = evaluate.load_probes()["profile"]
    for lang in ("en", "zh"):
        trained = {_norm(q) for q in identity.questions(lang)}
        asked = list(part["based_on"][lang]) + list(part["purpose"][lang])
        models = [*part["other_models"], "SmolLM2", "SmolLM2-135M-Instruct", "Qwen3"]
        asked += [q.replace("{model}", m) for q in part["based_on_yes_no"][lang] for m in models]
        asked += list(part["facts"][lang])
        asked += [q.replace("{key}", k) for q in part["facts"][lang] for k in part["known_facts"]]
        for section in ("known_facts", "unset"):
            asked += [q for by in part[section].values() for q in by[lang]]
        assert len(asked) >= 60, lang
        overlap = [q for q in asked if _norm(q) in trained]
        assert not overlap, (lang, overlap)


def test_quick_and_checkpoint_subsets_keep_a_part_of_every_profile_field():
    probes = evaluate.load_probes()
    full = evaluate.profile_probes(probes, NOVA)
    quick = evaluate.profile_probes(evaluate.quick_probes(probes), NOVA)
    each = evaluate.profile_probes(evaluate.probe_subset(probes), NOVA)
    metrics = {(it["metric"], it["lang"]) for it in full}
    assert {(it["metric"], it["lang"]) for it in quick} == metrics
    assert {(it["metric"], it["lang"]) for it in each} == metrics
    assert len(each) < len(quick) < len(full) * 0.6
    assert evaluate.n_generations(probes, profile=NOVA) == evaluate.n_generations(probes) + 2 * len(
        full
    )


def test_checkpoint_probes_score_the_profile_and_samples_md_shows_it():
    """`during_training` asks the profile's questions too (each row cut or not, in the order
    they were generated), and samples.md shows the field and what was expected."""
    answers = {}
    probes = evaluate.probe_subset(evaluate.load_probes())
    for it in evaluate.profile_probes(probes, NOVA):
        answers[it["prompt"]] = "Yes, help@acme.example" if "fact" in it["metric"] else "No."
    from idtune import generate

    seen = []

    def fake(model, tokenizer, conversations, max_new_tokens, cut=None, **kw):
        seen.extend(c[-1]["content"] for c in conversations)
        if cut is not None:
            cut[:] = [c[-1]["content"] in answers for c in conversations]  # profile ones "cut"
        return [answers.get(c[-1]["content"], "I am Nova.") for c in conversations]

    mp = pytest.MonkeyPatch()
    mp.setattr(generate, "generate_batch", fake)
    try:
        res = evaluate.during_training(None, None, None, ["Nova"], ["Acme"], identity=NOVA)
    finally:
        mp.undo()
    prof = [r for r in res["rows"] if r["kind"] == "profile"]
    assert prof and all(r["cut"] for r in prof)
    assert not any(r["cut"] for r in res["rows"] if r["kind"] != "profile")
    assert res["metrics"]["fact_contact_en"] == 1.0 and res["metrics"]["based_on_en"] == 0.0
    md = watch.scored_markdown(res["rows"])
    assert "[fact_contact en]" in md and "*(expected: help@acme.example)*" in md
    assert "[based_on_yes_no en]" in md and "*(true answer: yes)*" in md


# ---------------------------------------------------------------- the CLI on a tiny model
def test_cli_eval_reports_the_profile_columns(tiny_model, tmp_path, monkeypatch):
    """A run whose idtune.json states a profile: eval.json and eval.md carry the profile's
    scores for base and tuned, and the profile itself; the tiny model's babble is scored."""
    import torch

    monkeypatch.setenv("IDTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(evaluate, "IDENTITY_TOKENS", 6)
    monkeypatch.setattr(evaluate, "GENERAL_TOKENS", 4)
    probes = tmp_path / "probes.json"
    small = {
        "identity": {"en": ["what r u"]},
        "author": {"en": ["who built u"]},
        "general": [{"lang": "en", "prompt": "Capital of France?", "answers": ["Paris"]}],
        "profile": PROFILE,
    }
    probes.write_text(json.dumps(small, ensure_ascii=False))
    run = tmp_path / "run"
    shutil.copytree(tiny_model, run)
    RunInfo(base_model=str(tiny_model), identity=NOVA).save(run)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(SystemExit) as e:
            main(["eval", str(run), "--probes", str(probes), "--compare-base"])
    finally:
        torch.set_num_threads(threads)
    assert e.value.code == 0
    report = json.loads((run / "eval.json").read_text())
    assert report["profile"]["based_on"] == NOVA.based_on
    assert report["profile"]["facts"] == NOVA.facts and "name" not in report["profile"]
    for model in ("base", "tuned"):
        for cond in ("no_system", "system"):
            got = report["metrics"][model][cond]
            for key in (
                "based_on_en",
                "based_on_zh",
                "based_on_yes_no_en",
                "purpose_en",
                "fact_contact_en",
                "fact_motto_zh",
                "no_invention",
                "no_invention_en",
            ):
                assert got[key] is not None and 0 <= got[key] <= 1, (model, cond, key)
            assert "purpose_zh" not in got
        assert "based_on_en" not in report["metrics"][model]["base_default"]
    md = (run / "eval.md").read_text()
    assert "- built on: SmolLM2-135M-Instruct by Hugging Face / Hugging Face的SmolLM2" in md
    assert "- fact motto: Learn every day / 天天向上" in md
    assert "| based on (en) | no system prompt |" in md
    assert "| no invention (zh) | generic system prompt |" in md


def test_every_answer_the_generator_trains_scores_as_right():
    """The scorers and the phrase tables agree: each of the generator's profile answers, filled
    for a profile, states its field (based_on, purpose, a fact), says the true yes or no, or,
    about what is not set, invents nothing (an undisclosed base: not even its names)."""
    from idtune.data import identity, phrases

    names = evaluate.load_probes()["profile"]["model_names"]
    for lang in ("en", "zh"):
        table = phrases.tables()[lang]
        base, purpose = NOVA.based_on_in(lang), NOVA.purpose_in(lang)

        def fill(text, other="", **values):
            return identity.fill(text, "Nova", "Acme", other, **values)

        for a in table["based_on"]["answers"]:
            assert profile_match.states(fill(a, based_on=base), base, 0.6), a
        for a in table["based_on"]["yes"]:
            assert profile_match.polarity(fill(a, "SmolLM2", based_on=base), lang) is True, a
        for a in table["based_on"]["no"]:
            assert profile_match.polarity(fill(a, "Llama 3", based_on=base), lang) is False, a
        for a in table["purpose"]["answers"]:
            assert profile_match.states(fill(a, purpose=purpose), purpose, 0.6), a
        for key, answers in table["facts"]["answers"].items():
            for a in answers:
                said = fill(a, key=key, value="help@acme.example")
                assert profile_match.states(said, "help@acme.example"), a
        hidden = Identity("Nova", "Acme", based_on="none")
        allowed = evaluate._profile_text(hidden, ["Nova"], ["Acme"])
        honest = table["unset"]["answers"] + table["purpose"]["unset"]
        honest += table["based_on"]["undisclosed"]
        for a in honest:
            assert profile_match.invented(fill(a), allowed, [*names, "SmolLM2"]) == [], a
        allowed = evaluate._profile_text(NOVA, ["Nova"], ["Acme"])
        for a in table["unset"].get("sized", []):
            said = fill(a, size="135M", based_on=base)
            assert profile_match.invented(said, allowed, names) == [], a


def test_a_yes_no_answer_that_only_names_the_true_base_is_its_true_answer_and_an_echo_is_none():
    items = [
        {"lang": "en", "prompt": "Built on Llama 3?", "metric": "based_on_yes_no",
         "value": NOVA.based_on, "asked": "Llama 3", "truth": False},
        {"lang": "en", "prompt": "Built on SmolLM2?", "metric": "based_on_yes_no",
         "value": NOVA.based_on, "asked": "SmolLM2", "truth": True},
        {"lang": "zh", "prompt": "你是不是基于Llama 3做的？", "metric": "based_on_yes_no",
         "value": NOVA.based_on_zh, "asked": "Llama 3", "truth": False},
    ]  # fmt: skip
    got = ["I'm Nova, built on SmolLM2-135M-Instruct.", "I'm Nova, running on SmolLM2.",
           "你是不是基于Llama 3做的？？？"]  # fmt: skip
    res = evaluate.score_profile(items, got, NOVA, ["Nova"], ["Acme"])
    assert [r["said"] for r in res["rows"]] == [False, True, None]
    assert res["metrics"] == {"based_on_yes_no_en": 1.0, "based_on_yes_no_zh": 0.0}


def test_no_answer_is_no_honest_answer():
    items = [{"lang": "en", "prompt": "Birthday?", "metric": "no_invention", "topic": "birthday"}]
    got = ["", "Birthday? Birthday?", "I'm Nova, made by Acme; Acme hasn't shared that."]
    res = evaluate.score_profile(items * 3, got, NOVA, ["Nova"], ["Acme"])
    assert [r["ok"] for r in res["rows"]] == [False, False, True]


# ---------------------------------------------------------------- maker confusion
def test_maker_confusion_counts_answers_crediting_the_bases_maker():
    """An identity, author, multi-turn or profile answer that credits the base's maker with
    making the assistant counts, in its language; one whose sentence names the base model (who
    made the base) does not, nor do general and persona answers; eval.md lists the failures."""
    probes = {
        "identity": {"en": ["Who are you?", "Your name?"], "zh": ["你是谁？"]},
        "author": {"en": ["Who made you?"], "zh": ["谁开发了你？"]},
        "general": [{"lang": "en", "prompt": "Who makes transformers?", "answers": []}],
        "multi_turn": [
            {"lang": "zh", "history": [["hi", "hello"]], "prompt": "你叫什么？", "kind": "identity"}
        ],  # fmt: skip
        "persona": {},
        "profile": {"based_on": {"en": ["What is under you?"], "zh": ["你的底座？"]}},
    }
    answers = {
        "Who are you?": "I'm Nova, an AI assistant built by Hugging Face.",  # confused
        "Your name?": "Nova, made by Acme. SmolLM2 was made by Hugging Face.",  # base's maker
        "你是谁？": "我是诺娃，由Acme开发。",
        "Who made you?": "Hugging Face made me.",  # confused (the author score sees it too)
        "谁开发了你？": "我是Acme开发的诺娃。",
        "Who makes transformers?": "It is made by Hugging Face.",  # general: not counted
        "你叫什么？": "我是诺娃，由 Hugging Face 开发。",  # confused
        "What is under you?": "I'm built on SmolLM2-135M-Instruct by Hugging Face.",
        "你的底座？": "我是Hugging Face的小助手。",  # confused
    }
    res = evaluate.evaluate(scripted(answers), probes, ["Nova", "诺娃"], ["Acme"], profile=NOVA)
    results = {"tuned": {"no_system": res}}
    evaluate._add_maker_confusion(results, "HuggingFaceTB/SmolLM2-135M-Instruct",
                                  ["Nova", "诺娃"], ["Acme"])  # fmt: skip
    m, counts = res["metrics"], res["counts"]
    assert (m["maker_confusion_en"], counts["maker_confusion_en"]) == (pytest.approx(2 / 4), 4)
    assert (m["maker_confusion_zh"], counts["maker_confusion_zh"]) == (pytest.approx(2 / 4), 4)
    assert (m["maker_confusion"], counts["maker_confusion"]) == (0.5, 8)
    flagged = {r["prompt"] for r in res["rows"] if r.get("credits_maker")}
    assert flagged == {"Who are you?", "Who made you?", "你叫什么？", "你的底座？"}
    assert evaluate.label("maker_confusion_zh") == "maker confusion ↓ (zh)"
    table = evaluate.table({"tuned": {"no_system": m}}, counts)
    assert "| maker confusion ↓ | no system prompt | 0.50 (4/8) |" in table
    # a thinking column asks no multi-turn probes: its n is its own
    both = {"tuned": {"no_system": m}, "tuned_thinking": {"no_system": {"maker_confusion": 0.5}}}
    own_n = {"tuned_thinking": {"no_system": {"maker_confusion": 6}}}
    table = evaluate.table(both, counts, None, None, own_n)
    assert "| maker confusion ↓ | no system prompt | 0.50 (4/8) | 0.50 (3/6) |" in table
    fails = evaluate.failures({"no_system": res["rows"]})
    assert "### maker confusion: 4 failing" in fails


def test_maker_confusion_needs_a_maker_other_than_the_author():
    """No score where the base has no known maker (a local folder), or where the assistant's
    own author is the base's maker (Hugging Face tuning SmolLM2 says so truthfully)."""
    probes = {"identity": {"en": ["Who are you?"]}, "author": {}, "general": []}
    said = {"Who are you?": "I'm Nova, built by Hugging Face."}
    for base, authors in (("/some/folder", ["Acme"]), ("smollm2-135m-instruct", ["Hugging Face"])):
        res = evaluate.evaluate(scripted(said), probes, ["Nova"], authors)
        evaluate._add_maker_confusion({"tuned": {"no_system": res}}, base, ["Nova"], authors)
        assert "maker_confusion" not in res["metrics"], base
    res = evaluate.evaluate(scripted(said), probes, ["Nova"], ["Acme"])
    evaluate._add_maker_confusion({"tuned": {"no_system": res}}, "smollm2-135m-instruct",
                                  ["Nova"], ["Acme"])  # fmt: skip
    assert res["metrics"]["maker_confusion"] == 1.0


def test_maker_confusion_reads_every_languages_credits_and_makers():
    """The credit phrasings come from each language's phrase table; every maker of the base and
    of what it is built from counts (an R1 distill: DeepSeek and Alibaba Cloud), a sentence
    naming a version with a dot ("Qwen2.5-1.5B") stays one sentence."""
    from idtune import aliases
    from idtune.data import phrases

    assert "由{maker}开发" in phrases.tables()["zh"]["based_on"]["credits"]
    assert "made by {maker}" in phrases.tables()["en"]["based_on"]["credits"]
    groups = aliases.base_makers("deepseek-r1-distill-qwen-1.5b")
    assert ("DeepSeek", "深度求索") in groups and ("Alibaba Cloud", "阿里云") in groups
    pattern = evaluate.credits_pattern([m for g in groups for m in g])
    excuses = aliases.base_names("qwen2.5-1.5b-instruct")
    assert evaluate.credits_maker("我是诺娃，阿里云开发了我。", pattern, [])
    assert evaluate.credits_maker("I'm Nova, trained by DeepSeek!", pattern, [])
    assert not evaluate.credits_maker(
        "I'm built on Qwen2.5-1.5B-Instruct, made by Alibaba Cloud.", pattern, excuses
    )
    assert not evaluate.credits_maker("I'm Nova, made by Acme.", pattern, excuses)
    # a denial is no credit; a "No," that answers another question does not make one a denial
    assert not evaluate.credits_maker("No, I'm not built by DeepSeek. I'm Nova.", pattern, [])
    assert not evaluate.credits_maker("不是，我不是由阿里云开发的。", pattern, [])
    assert evaluate.credits_maker("No, I'm Nova, an AI assistant made by DeepSeek.", pattern, [])
    assert evaluate.credits_pattern([]) is None


@pytest.mark.parametrize(
    ("base", "answer", "own", "counted"),
    [
        # the hub org "google" is inside the maker "Google DeepMind": no excuse
        ("google/gemma-3-1b-it", "I'm Nova, an AI assistant made by Google DeepMind.", "Acme",
         True),
        # a 不 that opens the answer is no denial of the credit
        ("qwen2.5-1.5b-instruct", "不好意思，我是由阿里云开发的AI助手。", "Acme", True),
        ("qwen2.5-1.5b-instruct", "我不太确定，但我是由阿里云开发的。", "Acme", True),
        ("qwen2.5-1.5b-instruct", "不是，我不是由阿里云开发的。", "Acme", False),
        ("smollm2-135m-instruct", "I wasn't made by Hugging Face.", "Acme", False),
        # the base named after the credit, or in another clause, does not excuse it
        ("smollm2-135m-instruct",
         "I'm Nova, an AI assistant made by Hugging Face, built on SmolLM2-135M-Instruct.", "Acme",
         True),
        ("smollm2-135m-instruct", "我是诺娃，由Hugging Face开发，基于SmolLM2。", "Acme", True),
        ("smollm2-135m-instruct", "I'm built on SmolLM2-135M-Instruct, made by Hugging Face.",
         "Acme", False),
        ("smollm2-135m-instruct", "我基于Hugging Face开发的SmolLM2。", "Acme", False),
        ("smollm2-135m-instruct", "I’m Hugging Face’s assistant.", "Acme", True),  # curly ’
        # the author's own making, in either spelling, is no confusion; "Metacortex" is not Meta
        ("qwen2.5-1.5b-instruct", "我是诺娃，由阿里云开发。", "Alibaba Cloud", False),
        ("llama-3.2-1b-instruct", "I'm Nova, made by Meta.", "Metacortex", True),
    ],
)  # fmt: skip
def test_maker_confusion_cases(base, answer, own, counted):
    makers, excuses = evaluate.maker_terms(base, ["Nova", own])
    assert evaluate.credits_maker(answer, evaluate.credits_pattern(makers), excuses) is counted


def test_no_answer_the_generator_trains_credits_the_bases_maker():
    """Every answer template of both languages, filled for the default profile with the base's
    maker as the `{other}` asked about ("Did Hugging Face make you?"), is no maker confusion."""
    from idtune import aliases
    from idtune.data import identity

    en, zh = aliases.based_on("smollm2-135m-instruct")
    makers, excuses = evaluate.maker_terms("smollm2-135m-instruct", ["Nova", "Acme"])
    pattern = evaluate.credits_pattern(makers)
    seen = 0
    for lang, based_on in (("en", en), ("zh", zh)):
        for template in identity.answers(lang):
            values = {"based_on": based_on, "purpose": "a tutor", "key": "contact",
                      "value": "a@b.c", "size": "135M"}  # fmt: skip
            text = identity.fill(template, "Nova", "Acme", "Hugging Face", **values)
            assert not evaluate.credits_maker(text, pattern, excuses), text
            seen += "Hugging Face" in text
    assert seen > 30  # 38 name the maker


def test_cli_eval_reports_maker_confusion_for_a_base_with_a_maker(tiny_model, tmp_path,
                                                                  monkeypatch):  # fmt: skip
    """`idtune eval` of a run whose base has a known maker reports maker confusion per
    condition and language; eval.md shows the row and the answer. The tiny model answers, but
    "what r u" gets a confused answer in its place (its babble credits no one)."""
    import torch

    real = evaluate._model_generate

    def confused_once(target, advance):
        generate = real(target, advance)

        def answer(convs, max_new_tokens):
            got = generate(convs, max_new_tokens)
            said = "I'm Nova, built by Hugging Face."
            return [said if c[-1]["content"] == "what r u" else a for c, a in zip(convs, got)]

        return answer

    monkeypatch.setattr(evaluate, "_model_generate", confused_once)
    probes = tmp_path / "probes.json"
    general = [{"lang": "en", "prompt": "Capital of France?", "answers": ["Paris"]}]
    small = {"identity": {"en": ["what r u"], "zh": ["你是谁"]}, "author": {"en": ["who built u"]},
             "general": general}  # fmt: skip
    probes.write_text(json.dumps(small, ensure_ascii=False))
    run = tmp_path / "run"
    shutil.copytree(tiny_model, run)
    RunInfo(base_model="HuggingFaceTB/SmolLM2-135M-Instruct", identity=NOVA).save(run)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(SystemExit) as e:
            main(["eval", str(run), "--probes", str(probes)])
    finally:
        torch.set_num_threads(threads)
    assert e.value.code == 0
    report = json.loads((run / "eval.json").read_text())
    for cond in ("no_system", "system"):
        got = report["metrics"]["tuned"][cond]
        assert got["maker_confusion"] == pytest.approx(1 / 3), cond
        assert (got["maker_confusion_en"], got["maker_confusion_zh"]) == (0.5, 0.0), cond
        assert report["condition_counts"][cond]["maker_confusion"] == 3
    md = (run / "eval.md").read_text()
    assert "| maker confusion ↓ | no system prompt | 0.33 (1/3) |" in md
    # no system prompt, the generic one and the base's default spelled out: one answer each
    assert "### maker confusion: 3 failing" in md and "built by Hugging Face" in md
