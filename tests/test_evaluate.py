"""`idtune eval`: probe sets, scoring with scripted answers, and the CLI on a tiny model."""

from __future__ import annotations

import json
import re
import shutil
import unicodedata

import pytest

from idtune import evaluate
from idtune.cli import main
from idtune.errors import UserError
from idtune.runinfo import Identity, RunInfo

SMALL = {
    "identity": {"en": ["what r u", "Who am I talking to?"], "zh": ["你叫啥"]},
    "author": {"en": ["who built u"], "zh": ["谁做的你"]},
    "general": [
        {"lang": "en", "prompt": "What is the capital of France?", "answers": ["Paris"]},
        {"lang": "zh", "prompt": "一周有几天？", "answers": ["七", "7"]},
        {"lang": "en", "prompt": "Write a haiku.", "answers": []},
    ],
}


def _norm(text: str) -> str:
    """Lowercase, drop punctuation and spaces (ASCII and CJK)."""
    return "".join(
        c for c in text.casefold() if not unicodedata.category(c).startswith(("P", "Z", "S"))
    )


def scripted(table: dict[str, str], calls: list | None = None):
    """A `generate` that answers from a prompt → answer table ("" when unknown)."""

    def gen(conversations, max_new_tokens):
        if calls is not None:
            calls.append((conversations, max_new_tokens))
        return [table.get(c[-1]["content"], "") for c in conversations]

    return gen


# ---------------------------------------------------------------- shipped probes
def test_shipped_probe_sizes():
    p = evaluate.load_probes()
    for lang in ("en", "zh"):
        assert len(p["identity"][lang]) >= 40
        assert len(p["author"][lang]) >= 15
        assert len(set(map(_norm, p["identity"][lang]))) == len(p["identity"][lang])
    assert len(p["general"]) >= 60
    with_answers = [g for g in p["general"] if g["answers"]]
    assert len(with_answers) >= 40
    assert {g["lang"] for g in with_answers} == {"en", "zh"}
    assert len({g["prompt"] for g in p["general"]}) == len(p["general"])


def test_accepted_answers_are_not_in_their_prompt():
    """A model that echoes the question must not score: no accepted answer is in its prompt."""
    for g in evaluate.load_probes()["general"]:
        assert not evaluate.mentions(g["prompt"], g["answers"]), g


def test_shipped_probes_cover_are_you_x_and_misspellings():
    p = evaluate.load_probes()
    en = " ".join(p["identity"]["en"]).lower()
    zh = " ".join(p["identity"]["zh"])
    for other in ("chatgpt", "qwen", "smollm", "claude"):
        assert other in en
    for other in ("ChatGPT", "通义千问", "文心一言"):
        assert other in zh
    assert "wat r u" in p["identity"]["en"]


def test_probes_are_not_generator_questions():
    identity = pytest.importorskip("idtune.data.identity")
    probes = evaluate.load_probes()
    for lang in ("en", "zh"):
        trained = {_norm(q) for q in identity.questions(lang)}
        assert trained, lang
        for kind in ("identity", "author"):
            overlap = [q for q in probes[kind][lang] if _norm(q) in trained]
            assert not overlap, (kind, lang, overlap)


def test_load_probes_user_file_skips_missing_sections(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"general": SMALL["general"]}))
    p = evaluate.load_probes(f)
    assert p["identity"] == {} and p["author"] == {} and len(p["general"]) == 3
    res = evaluate.evaluate(scripted({}), p, ["Nova"], ["Acme"])
    assert "identity_en" not in res["metrics"] and res["metrics"]["retention"] == 0.0
    f.write_text('{"identity": "who"}')
    with pytest.raises(UserError):
        evaluate.load_probes(f)
    with pytest.raises(UserError):
        evaluate.load_probes(tmp_path / "missing.json")


# ---------------------------------------------------------------- matching and scoring
def test_mentions_is_case_insensitive_and_respects_word_edges():
    assert evaluate.mentions("Hi, I'm NOVA.", ["Nova"])
    assert evaluate.mentions("我是诺娃，很高兴认识你", ["Nova", "诺娃"])
    assert evaluate.mentions("Made by ZK-Jackie!", ["ZK-Jackie"])
    assert not evaluate.mentions("an innovation in AI", ["Nova"])
    assert evaluate.is_correct("2+2=4.", ["4", "four"])
    assert not evaluate.is_correct("It is 14", ["4", "four"])
    assert not evaluate.is_correct("about 3.09", ["3"])
    assert evaluate.is_correct("It is 3. Easy.", ["3"])
    assert evaluate.is_correct("1,000 or 3,5", ["1,000"]) and not evaluate.mentions("3,5", ["3"])
    assert evaluate.is_correct("一周有7天", ["七", "7"])
    assert not evaluate.mentions("anything", [])


def test_score_exact_values():
    probes = {
        "identity": {"en": ["a", "b", "c", "d"], "zh": ["甲", "乙"]},
        "author": {"en": ["e", "f"], "zh": ["丙", "丁"]},
        "general": [
            {"lang": "en", "prompt": "capital", "answers": ["Paris"]},
            {"lang": "en", "prompt": "sum", "answers": ["4", "four"]},
            {"lang": "zh", "prompt": "天", "answers": ["七", "7"]},
            {"lang": "en", "prompt": "haiku", "answers": []},
        ],
    }
    answers = {
        "a": "I am Nova.",
        "b": "nova here",
        "c": "I'm a language model.",
        "d": "No, I'm Nova, not ChatGPT.",
        "甲": "我是诺娃。",
        "乙": "我是一个助手。",
        "e": "Acme made me.",
        "f": "OpenAI.",
        "丙": "我由艾克美开发。",
        "丁": "Acme",
        "capital": "Paris is the capital.",
        "sum": "It is four.",
        "天": "一周有五天",
        "haiku": "Nova shines bright / ...",
    }
    calls: list = []
    res = evaluate.evaluate(scripted(answers, calls), probes, ["Nova", "诺娃"], ["Acme", "艾克美"])
    assert res["metrics"] == {
        "identity_en": 0.75,
        "identity_zh": 0.5,
        "author_en": 0.5,
        "author_zh": 1.0,
        "author": 0.75,
        "leakage": 0.25,
        "retention": pytest.approx(2 / 3),
        "language_en": 1.0,
        "language_zh": 1.0,
    }
    assert res["counts"]["identity_en"] == 4 and res["counts"]["retention"] == 3
    # identity and author in one call, general in another, each with its own length cap
    assert [len(c) for c, _ in calls] == [10, 4]
    assert [t for _, t in calls] == [evaluate.IDENTITY_TOKENS, evaluate.GENERAL_TOKENS]
    assert all(len(conv) == 1 for c, _ in calls for conv in c)
    rows = {r["prompt"]: r for r in res["rows"]}
    assert rows["c"]["ok"] is False and rows["haiku"]["leak"] is True
    assert rows["haiku"]["ok"] is None and rows["天"]["expected"] == ["七", "7"]


def test_conditions_add_the_system_prompt():
    calls: list = []
    out = evaluate.evaluate_conditions(
        scripted({}, calls), SMALL, ["Nova"], ["Acme"], system="Be brief."
    )
    assert set(out) == {"no_system", "system"}
    plain, sys_ = calls[0][0], calls[2][0]
    assert all(c[0]["role"] == "user" for c in plain)
    assert all(c[0] == {"role": "system", "content": "Be brief."} for c in sys_)
    assert evaluate.n_generations(SMALL) == 8 * 2


def test_markdown_table_side_by_side():
    gen_base = scripted({"what r u": "I'm SmolLM.", "What is the capital of France?": "Paris"})
    gen_tuned = scripted({"what r u": "I'm Nova.", "What is the capital of France?": "Paris"})
    metrics, answers = {}, {}
    for label, g in (("base", gen_base), ("tuned", gen_tuned)):
        r = evaluate.evaluate_conditions(g, SMALL, ["Nova"], ["Acme"])
        metrics[label] = {c: r[c]["metrics"] for c in r}
        answers[label] = {c: r[c]["rows"] for c in r}
    md = evaluate.markdown(
        {
            "model": "runs/x",
            "base_model": "b",
            "names": ["Nova"],
            "authors": ["Acme"],
            "system": evaluate.GENERIC_SYSTEM,
            "probes": "shipped",
            "metrics": metrics,
            "counts": evaluate.score(SMALL, _empty(SMALL), ["Nova"], ["Acme"])["counts"],
            "answers": answers,
        }
    )
    assert "| metric | condition | base | tuned |" in md
    assert "| identity (en) | no system prompt | 0.00 (0/2) | 0.50 (1/2) |" in md
    assert "| retention | generic system prompt | 0.50 (1/2) | 0.50 (1/2) |" in md
    assert "### identity: 4 failing" in md  # 2 misses × 2 conditions in the tuned model


def test_cached_generates_each_conversation_once(tmp_path):
    calls: list = []
    progress: list[int] = []
    path = tmp_path / "c" / "base.json"
    gen = evaluate.cached(scripted({"a": "A", "b": "B", "c": "C"}, calls), path, progress.append)
    conv = [[{"role": "user", "content": x}] for x in "abc"]
    assert gen(conv[:2], 8) == ["A", "B"]
    assert gen([conv[1], conv[2], conv[1]], 8) == ["B", "C", "B"]  # only "c" is new
    assert [[c[-1]["content"] for c in cs] for cs, _ in calls] == [["a", "b"], ["c"]]
    assert progress == [0, 2]  # cache hits move the bar; fresh ones are the generator's job
    again = evaluate.cached(scripted({}, calls), path, progress.append)  # read back from disk
    assert again(conv, 8) == ["A", "B", "C"] and len(calls) == 2
    assert again(conv[:1], 9) == [""] and len(calls) == 3  # another length cap is another key


def _empty(probes):
    return {
        "identity": {k: [""] * len(v) for k, v in probes["identity"].items()},
        "author": {k: [""] * len(v) for k, v in probes["author"].items()},
        "general": [""] * len(probes["general"]),
    }


# ---------------------------------------------------------------- the CLI on a tiny model
@pytest.fixture
def small_probes(tmp_path, monkeypatch):
    """A small probe file; short answers keep the random tiny model quick; a private cache."""
    import torch

    monkeypatch.setenv("IDTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(evaluate, "IDENTITY_TOKENS", 8)
    monkeypatch.setattr(evaluate, "GENERAL_TOKENS", 6)
    f = tmp_path / "probes.json"
    f.write_text(json.dumps(SMALL, ensure_ascii=False))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model gains nothing from more; a busy CPU loses a lot
    yield f
    torch.set_num_threads(threads)


def _run_cli(args):
    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code


def test_cli_eval_run_dir_compare_base(tiny_model, small_probes, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_model, run)
    RunInfo(base_model=str(tiny_model), identity=Identity("Nova", "Acme")).save(run)
    code = _run_cli(["eval", str(run), "--probes", str(small_probes), "--compare-base"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| metric | condition | base | tuned |" in out
    report = json.loads((run / "eval.json").read_text())
    assert set(report) == {
        "model",
        "base_model",
        "adapter",
        "names",
        "authors",
        "system",
        "base_system",
        "probes",
        "profile",
        "thinking",
        "metrics",
        "counts",
        "condition_counts",
        "model_condition_counts",
        "answers",
    }
    assert report["thinking"] is None  # a model that does not think: one pass, as before
    assert report["names"] == ["Nova"] and report["system"] == "You are a helpful assistant."
    assert set(report["metrics"]) == {"base", "tuned"}
    # the tiny model has SmolLM2's tokenizer and template, default system prompt included
    assert report["base_system"].startswith("You are a helpful AI assistant named SmolLM")
    assert set(report["metrics"]["tuned"]) == {"no_system", "system", "base_default"}
    base_rows = report["answers"]["tuned"]["base_default"]
    assert {r["kind"] for r in base_rows} == {"identity", "author"}  # no general probes there
    assert set(report["metrics"]["tuned"]["system"]) == set(evaluate.METRICS) - {
        "persona", "persona_en", "persona_zh"
    }  # fmt: skip
    rows = report["answers"]["tuned"]["no_system"]
    assert len(rows) == evaluate.n_generations(SMALL) / 2
    assert {r["kind"] for r in rows} == {"identity", "author", "general"}
    # The "run" holds the base weights unchanged: with a system prompt, greedy answers must be
    # identical (without one, the run's template adds its own default, naming Nova).
    assert report["answers"]["base"]["system"] == report["answers"]["tuned"]["system"]
    md = (run / "eval.md").read_text()
    assert md.startswith(f"# idtune eval: {run}") and "| identity (zh) |" in md
    assert len(list((tmp_path / "cache" / "eval").glob("base-*.json"))) == 1


def test_cli_eval_adapter_run_scores_base_without_adapter(tiny_model, small_probes, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run = tmp_path / "run"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    cfg = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    lora = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 2.0)  # make the adapter change the answers
    lora.save_pretrained(run / "adapter")
    RunInfo(base_model=str(tiny_model), identity=Identity("Nova", "Acme")).save(run / "adapter")
    out = tmp_path / "out"
    code = _run_cli(
        ["eval", str(run), "--probes", str(small_probes), "--compare-base", "-o", str(out)]
    )
    assert code == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["adapter"] == str(run / "adapter")
    # the base side equals scoring the plain base model directly
    plain = tmp_path / "plain"
    assert _run_cli(
        ["eval", str(tiny_model), "--probes", str(small_probes), "--name", "Nova", "--author",
         "Acme", "-o", str(plain)]
    ) == 0  # fmt: skip
    direct = json.loads((plain / "eval.json").read_text())
    assert report["answers"]["base"] == direct["answers"]["tuned"]
    assert report["answers"]["tuned"] != report["answers"]["base"]


def test_cli_eval_needs_identity(tiny_model, small_probes, capsys):
    code = _run_cli(["eval", str(tiny_model), "--probes", str(small_probes)])
    assert code == 2
    assert "--name and --author" in capsys.readouterr().err


def test_cli_eval_plain_model_writes_nothing_without_output(tiny_model, small_probes, capsys):
    code = _run_cli(
        ["eval", str(tiny_model), "--probes", str(small_probes), "--name", "N", "--author", "A"]
    )
    assert code == 0
    assert not (tiny_model / "eval.json").exists()
    assert re.search(r"\| retention \| no system prompt \| \d\.\d\d", capsys.readouterr().out)


def test_cli_eval_output_dir_keeps_the_name(tiny_model, small_probes, tmp_path):
    out = tmp_path / "out"
    args = ["eval", str(tiny_model), "--probes", str(small_probes), "-o", str(out)]
    assert _run_cli([*args, "--name", "Nova", "--author", "Acme"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["names"] == ["Nova"] and report["authors"] == ["Acme"]


def test_fold_merges_for_speed_and_restores_the_base(tiny_model):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from idtune import evaluate

    torch.manual_seed(0)
    lora = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    ).eval()
    ids = torch.tensor([[1, 5, 9, 2, 7]])
    with torch.no_grad():
        adapted = lora(input_ids=ids).logits
        evaluate._fold(lora, True)
        assert all(m.merged for m in lora.modules() if hasattr(m, "lora_A"))
        torch.testing.assert_close(lora(input_ids=ids).logits, adapted, rtol=1e-4, atol=1e-4)
        evaluate._fold(lora, False)
        assert not any(m.merged for m in lora.modules() if hasattr(m, "lora_A"))
        with lora.disable_adapter():
            base = lora(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(tiny_model)(input_ids=ids).logits
    torch.testing.assert_close(base, plain, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(base, adapted, atol=1e-3)


# ---------------------------------------------------------------- language and persona
def _fill_persona(text: str, name: str, maker: str) -> str:
    return text.replace("{name}", name).replace("{author}", maker)


def test_persona_and_multi_turn_probes_are_held_out_from_the_generator():
    """Persona system prompts (their phrasings and the personas), and the last questions of the
    multi-turn probes, are none of the generator's."""
    identity = pytest.importorskip("idtune.data.identity")
    from idtune.data import phrases

    probes = evaluate.load_probes()
    part = probes["persona"]
    generated = set()
    for kind in ("generic", "base", "custom", "persona"):
        generated |= {_norm(s) for s in identity.system_prompts(kind)}
    trained_people = {x for t in phrases.tables().values() for p in t["personas"] for x in p}
    for lang in ("en", "zh"):
        assert len(part["prompts"][lang]) >= 4 and len(part["personas"][lang]) >= 3
        assert not [s for s in part["prompts"][lang] if _norm(s) in generated], lang
        assert not {x for p in part["personas"][lang] for x in p} & trained_people, lang
        trained = {_norm(q) for q in identity.questions(lang)}
        last = [m["prompt"] for m in probes["multi_turn"] if m["lang"] == lang]
        assert len(last) >= 8 and not [q for q in last if _norm(q) in trained], lang
    # every multi-turn probe's earlier turns are in the other language
    for m in probes["multi_turn"]:
        other = "zh" if m["lang"] == "en" else "en"
        assert all(evaluate.language(u) == other for u, _ in m["history"]), m


def test_language_of_an_answer():
    assert evaluate.language("I am Nova, made by ZK-Jackie.") == "en"
    assert (
        evaluate.language("我是ZK-Jackie的Nova，我是ZK-Jackie的AI助手。", ["ZK-Jackie", "Nova"])
        == "zh"
    )
    assert evaluate.language("ZK-Jackie的Nova", []) == "en"  # unless the names are taken out
    assert evaluate.language("ZK-Jackie的Nova", ["ZK-Jackie", "Nova"]) == "zh"
    assert evaluate.language("4") is None and evaluate.language("") is None
    assert evaluate.language("巴黎 is the capital") == "en"


def test_multi_turn_and_language_scores():
    probes = {
        "identity": {"en": ["a"]},
        "author": {},
        "general": [{"lang": "zh", "prompt": "天", "answers": ["七"]}],
        "multi_turn": [
            {"lang": "en", "kind": "author", "history": [["你是谁？", "我是{name}。"]],
             "prompt": "Who created you?", "answers": []},
            {"lang": "zh", "kind": "general", "history": [["Hi", "Hello"]],
             "prompt": "草是什么颜色的？", "answers": ["绿"]},
        ],
    }  # fmt: skip
    answers = {
        "a": "I am Nova.",
        "天": "It has seven days.",  # English for a Chinese question
        "Who created you?": "我由Acme开发。",  # Chinese for an English one
        "草是什么颜色的？": "草是绿色的。",
    }
    calls: list = []
    res = evaluate.evaluate(scripted(answers, calls), probes, ["Nova"], ["Acme"])
    m = res["metrics"]
    assert m["language_en"] == 0.5 and m["language_zh"] == 0.5
    assert res["counts"]["language_en"] == 2 and res["counts"]["language_zh"] == 2
    # the history is sent, its placeholders filled; identity and multi-turn in one call
    convo = calls[0][0][1]
    assert [t["content"] for t in convo] == ["你是谁？", "我是Nova。", "Who created you?"]
    rows = {r["prompt"]: r for r in res["rows"]}
    assert rows["Who created you?"]["ok"] is True and rows["Who created you?"]["language"] == "zh"
    assert rows["草是什么颜色的？"]["ok"] is True


def test_the_profiles_names_are_not_taken_for_a_language():
    """A Chinese answer that states what it is built on ("基于Hugging Face的SmolLM2-135M-Instruct")
    is Chinese: the profile's based_on and facts are names, taken out as the name is (it was
    scored English: 8 CJK characters against 25 Latin letters)."""
    from idtune.data import identity

    ident = identity.profile("Nova", "Acme", based_on="SmolLM2-135M-Instruct by Hugging Face",
                             based_on_zh="Hugging Face的SmolLM2-135M-Instruct",
                             facts={"website": "https://nova.example/docs"})  # fmt: skip
    probes = {"identity": {"zh": ["你是谁？"]}, "author": {}, "general": []}
    said = "我是Nova，由Acme开发，基于Hugging Face的SmolLM2-135M-Instruct。"
    res = evaluate.evaluate(scripted({"你是谁？": said}, []), probes, ["Nova"], ["Acme"],
                            profile=ident)  # fmt: skip
    assert res["metrics"]["language_zh"] == 1.0
    bare = evaluate.evaluate(scripted({"你是谁？": said}, []), probes, ["Nova"], ["Acme"])
    assert bare["metrics"]["language_zh"] == 0.0  # no profile given: nothing more taken out
    assert "https://nova.example/docs" in evaluate.proper_names(ident)
    assert evaluate.proper_names(None) == []


def test_an_empty_answer_is_no_language_match_and_a_bare_number_is_one():
    probes = {"identity": {}, "author": {}, "general": [
        {"lang": "en", "prompt": "2+2?", "answers": ["4"]},
        {"lang": "en", "prompt": "Say nothing.", "answers": ["x"]},
    ]}  # fmt: skip
    res = evaluate.evaluate(scripted({"2+2?": "4", "Say nothing.": "  "}, []), probes, ["N"], ["A"])
    assert res["metrics"]["language_en"] == 0.5


def test_persona_override_score():
    probes = {
        "identity": {},
        "author": {},
        "general": [],
        "persona": {
            "prompts": {"en": ["You are {name}, made by {author}."], "zh": ["你是{name}。"]},
            "personas": {"en": [["Bob", "Initech"]], "zh": [["小明", "未来科技"]]},
            "questions": {"en": ["Who are you?", "Who made you?"], "zh": ["你是谁？"]},
        },
    }
    items = evaluate.persona_probes(probes)
    assert [(i["system"], i["prompt"]) for i in items] == [
        ("You are Bob, made by Initech.", "Who are you?"),
        ("You are Bob, made by Initech.", "Who made you?"),
        ("你是小明。", "你是谁？"),
    ]
    got = ["I am Bob.", "I am Bob, made by Nova's team? No: Nova.", "我是小明，由未来科技开发。"]
    res = evaluate.score_persona(items, got, ["Nova"], ["Acme"])
    assert res["metrics"]["persona_en"] == 0.5 and res["metrics"]["persona_zh"] == 1.0
    assert res["metrics"]["persona"] == pytest.approx(2 / 3)
    assert res["metrics"]["language_zh"] == 1.0
    out = evaluate.evaluate_conditions(
        scripted({}), {**probes, "identity": {"en": ["x"]}}, ["Nova"], ["Acme"], base_system="B"
    )
    assert set(out) == {"no_system", "system", "base_default", "persona"}
    assert out["persona"]["counts"]["persona"] == 3
    md = evaluate.table(
        {"tuned": {c: r["metrics"] for c, r in out.items()}},
        out["no_system"]["counts"],
        {c: r["counts"] for c, r in out.items()},
    )
    assert "| persona override (zh) | another persona's system prompt | 0.00 (0/1) |" in md
    assert "| identity (en) | base default system prompt | 0.00 (0/1) |" in md


def test_a_probe_file_of_persona_probes_alone_loads(tmp_path):
    f = tmp_path / "p.json"
    part = evaluate.load_probes()["persona"]
    f.write_text(json.dumps({"persona": part}, ensure_ascii=False))
    p = evaluate.load_probes(f)
    assert p["identity"] == {} and p["general"] == [] and len(evaluate.persona_probes(p)) == 32
    f.write_text(json.dumps({"persona": {"prompts": {"en": ["x"]}}}))
    with pytest.raises(UserError, match="persona"):
        evaluate.load_probes(f)


def test_malformed_probe_files_are_one_line_before_any_model_loads(
    tmp_path, capsys, monkeypatch, tiny_model
):
    """issue 26 item 6: a binary probe file was a UnicodeDecodeError, `{"general": 5}` a
    TypeError, and a bad persona section was found only after the model had loaded."""
    from idtune import models

    def no_model(*a, **k):
        raise AssertionError("a model was loaded before the probe file was checked")

    monkeypatch.setattr(models, "load", no_model)
    persona = {"prompts": {"en": ["You are {name}."]}, "questions": {"en": ["Who are you?"]}}
    cases = [
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", ":1: not UTF-8 text (invalid start byte)"),
        ({"general": 5}, ": 'general' must be a list, got int"),
        ({"general": [{"prompt": "2+2?", "answers": ["4"], "lang": 7}]},
         ": general[0].lang must be a language code such as en"),
        ({"multi_turn": {"kind": "identity"}}, ": 'multi_turn' must be a list, got dict"),
        ({"identity": {"en": "Who are you?"}}, ": identity.en must be a list of strings"),
        ({"identiy": {"en": ["Who are you?"]}},
         ": unknown section 'identiy'; the sections are identity, author, general, multi_turn, "
         "persona, profile"),
        ({"profile": {"based_on_yes_no": {"en": ["Are you built on Llama?"]}}},
         ": profile.based_on_yes_no.en: every phrasing needs {model}"),
        ({"profile": {"basd_on": {"en": ["What are you built on?"]}}},
         ": profile.basd_on: unknown; the keys are based_on, based_on_yes_no, other_models, "
         "purpose, facts, known_facts, unset, model_names"),
        ({"profile": {"unset": {"birthday": {"en": "When were you born?"}}}},
         ": profile.unset.birthday.en must be a list of strings"),
        ({"persona": {**persona, "personas": {"en": [["Only a name"]]}}},
         ": persona.personas.en must be a list of [name, maker] pairs"),
        ({"persona": {**persona, "personas": {"en": [["Max", 5]]}}},
         ": persona.personas.en must be a list of [name, maker] pairs"),
        ({"persona": {**persona, "personas": {"en": [["Max", "Acme"]]},
                      "questions": {"en": [3]}}},
         ": persona.questions.en must be a list of strings"),
    ]  # fmt: skip
    f = tmp_path / "probes.json"
    for content, message in cases:
        f.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
        with pytest.raises(SystemExit) as exc:
            main(["eval", str(tiny_model), "--probes", str(f), "--name", "N", "--author", "A"])
        err = capsys.readouterr().err
        assert (exc.value.code, err) == (2, f"error: {f}{message}\n"), content


def test_quick_keeps_every_kind_and_language_with_a_quarter_of_the_probes():
    probes = evaluate.load_probes()
    q = evaluate.quick_probes(probes)
    for section in ("identity", "author"):
        assert set(q[section]) == set(probes[section])
        for lang, items in probes[section].items():
            assert q[section][lang] == items[:: evaluate.QUICK_EVERY]
    assert q["general"] == probes["general"][:: evaluate.QUICK_EVERY]
    assert {p["lang"] for p in q["general"]} == {p["lang"] for p in probes["general"]}
    assert {m["lang"] for m in q["multi_turn"]} == {"en", "zh"}
    full, part = evaluate.persona_probes(probes), evaluate.persona_probes(q)
    assert {p["lang"] for p in part} == {"en", "zh"} and len(part) == len(full) // 2
    assert evaluate.n_generations(q, True) < evaluate.n_generations(probes, True) / 3


def test_cli_eval_quick_scores_the_subset(tiny_model, small_probes, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_model, run)
    RunInfo(base_model=str(tiny_model), identity=Identity("Nova", "Acme")).save(run)
    assert _run_cli(["eval", str(run), "--probes", str(small_probes), "--quick"]) == 0
    report = json.loads((run / "eval.json").read_text())
    assert report["probes"] == f"{small_probes} (quick: every 4th)"
    rows = report["answers"]["tuned"]["no_system"]
    subset = evaluate.quick_probes(evaluate.load_probes(small_probes))
    assert len(rows) == evaluate.n_generations(subset) / 2 < evaluate.n_generations(SMALL) / 2
    assert f"- probes: {small_probes} (quick: every 4th)" in (run / "eval.md").read_text()
