"""Identity data generator: phrasing diversity, identity in every answer, negatives, system prompt
variants, multi-turn share, determinism, language filtering, errors, and the CLI verb."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from functools import cache

import pytest

from idtune.data import identity, near_miss, phrases
from idtune.errors import UserError
from idtune.runinfo import Identity

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
NAME, AUTHOR, NAME_ZH, AUTHOR_ZH = "Nova", "Acme", "诺瓦", "艾克米"
IDENT = {"en": (NAME, AUTHOR), "zh": (NAME_ZH, AUTHOR_ZH)}


def fill(text: str, name: str, author: str) -> str:
    return text.replace("{name}", name).replace("{author}", author)


CHAT_EN, CHAT_ZH = phrases.tables()["en"]["chat"], phrases.tables()["zh"]["chat"]
CONCISE = {s for t in phrases.tables().values() for s in t["system_prompts"]["concise"]}
CHAT_QUESTIONS = {q for q, _ in CHAT_EN + CHAT_ZH}
CHAT_QUESTIONS |= {q for lang in ("en", "zh") for q in near_miss.questions(lang)}
ARITHMETIC = re.compile(
    r"^(What is |what's |Calculate |请计算)?\d\d ?(plus|minus|times|加|减|乘以) ?\d\d"
)


def general_only(row) -> bool:
    """A sample with no identity question (an unrelated question answered plainly)."""
    users = [m["content"] for m in row["messages"] if m["role"] == "user"]
    return all(u in CHAT_QUESTIONS or ARITHMETIC.match(u) for u in users)


def identity_rows(rows):
    """Samples that ask who the assistant is, answered with the trained identity (not under an
    operator's persona, see test_persona_conversations_answer_as_the_persona)."""
    return [r for r in rows if not general_only(r) and not under_persona(r)]


def under_persona(row) -> bool:
    first = row["messages"][0]
    return first["role"] == "system" and persona_of(first["content"]) is not None


@pytest.fixture(scope="module")
def all_rows():
    return identity.generate(NAME, AUTHOR, NAME_ZH, AUTHOR_ZH, n=1000, seed=0)


@pytest.fixture(scope="module")
def rows(all_rows):
    """The samples that ask who the assistant is (about 90 % of them)."""
    return identity_rows(all_rows)


@pytest.fixture(scope="module")
def question_index():
    """Filled question text → (lang, intent), over every phrasing the generator may emit."""
    index: dict[str, tuple[str, str]] = {}
    for lang in identity.LANGS:
        for intent in identity.INTENTS:
            for q in identity.questions(lang, intent):
                text = fill(q, *IDENT[lang])
                assert index.setdefault(text, (lang, intent)) == (lang, intent), text
    return index


def identity_turns(rows, question_index):
    """(lang, intent, question, answer) for every identity question in `rows`."""
    out = []
    for row in rows:
        msgs = [m for m in row["messages"] if m["role"] != "system"]
        for user, assistant in zip(msgs[::2], msgs[1::2], strict=True):
            if user["content"] in question_index:
                out.append(
                    (*question_index[user["content"]], user["content"], assistant["content"])
                )
    return out


def test_phrasing_counts(rows, question_index):
    for lang in identity.LANGS:
        assert len(set(identity.questions(lang))) >= 80
        assert len(set(identity.answers(lang))) >= 15
    turns = identity_turns(rows, question_index)
    for lang in identity.LANGS:
        asked = {q for lg, _, q, _ in turns if lg == lang}
        answered = {a for lg, _, _, a in turns if lg == lang}
        assert len(asked) >= 80, (lang, len(asked))
        assert len(answered) >= 15, (lang, len(answered))


def test_every_user_turn_is_known_and_matches_intent(question_index):
    for row, intents in identity._generate(
        Identity(NAME, AUTHOR, NAME_ZH, AUTHOR_ZH), n=600, seed=4
    ):
        users = [m["content"] for m in row["messages"] if m["role"] == "user"]
        assert len(users) == len(intents)
        if under_persona(row):  # questions that name the persona ("Am I talking to Max?")
            continue
        for user, intent in zip(users, intents, strict=True):
            if intent is None:  # an unrelated exchange, never an identity phrasing
                assert user not in question_index
            else:
                assert question_index[user][1] == intent, user


def test_answers_carry_name_and_author(rows, question_index):
    turns = identity_turns(rows, question_index)
    assert len(turns) >= len(rows)  # every sample asks at least one identity question
    with_author = 0
    for lang, intent, q, answer in turns:
        name, author = IDENT[lang]
        assert name in answer, (q, answer)
        if intent in identity.MAKER_INTENTS:
            assert author in answer, (q, answer)
        with_author += author in answer
    assert with_author / len(turns) > 0.8  # general answers usually name the author too


def test_negatives_say_no_and_give_the_name(rows, question_index):
    # more samples than `rows`: a persona's negatives name the persona, not the trained identity
    more = identity_rows(identity.generate(NAME, AUTHOR, NAME_ZH, AUTHOR_ZH, n=2000, seed=1))
    turns = identity_turns(rows, question_index) + identity_turns(more, question_index)
    negs = [t for t in turns if t[1] in identity.NEGATIVE_INTENTS]
    assert len(negs) > 200  # the profile's questions (issue 29) take a fifth of them
    for lang, _, q, answer in negs:
        assert answer.startswith("No" if lang == "en" else "不"), (q, answer)
        assert IDENT[lang][0] in answer
    asked = " ".join(q for _, _, q, _ in negs).lower()
    for other in ("chatgpt", "qwen", "smollm", "internlm", "openai", "hugging face"):
        assert other in asked


def test_negatives_never_deny_the_real_identity():
    # an assistant really called Claude by Anthropic is never asked "Are you Claude?" → "No"
    negs = 0
    for row, intents in identity._generate(Identity("Claude", "Anthropic"), n=600, seed=0):
        if intents[-1] in identity.NEGATIVE_INTENTS:
            negs += 1
            question = row["messages"][-2]["content"].lower()
            assert "claude" not in question and "anthropic" not in question, question
    assert negs > 50


def test_deterministic_per_seed():
    a = identity.generate(NAME, AUTHOR, n=200, seed=7)
    assert a == identity.generate(NAME, AUTHOR, n=200, seed=7)
    b = identity.generate(NAME, AUTHOR, n=200, seed=8)
    assert a != b
    same = {json.dumps(r, sort_keys=True) for r in a} & {json.dumps(r, sort_keys=True) for r in b}
    assert len(same) < 20


def test_duplicates_are_rare(rows):
    keys = [json.dumps(r, sort_keys=True, ensure_ascii=False) for r in rows]
    assert len(set(keys)) == len(keys)


def test_english_only_has_no_chinese_user_turns():
    for name in (NAME, "小明"):
        rows = identity.generate(name, AUTHOR, name_zh="诺瓦", langs=["en"], n=500, seed=1)
        for r in (r for r in rows if not under_persona(r)):
            for m in r["messages"]:
                if m["role"] in ("user", "assistant"):
                    assert not CJK.search(m["content"].replace(name, "")), m["content"]


def test_chinese_only_uses_chinese_names():
    rows = identity.generate(NAME, AUTHOR, NAME_ZH, AUTHOR_ZH, langs=["zh"], n=300, seed=2)
    for r in identity_rows(rows):
        for m in r["messages"]:
            if m["role"] == "user":
                assert CJK.search(m["content"]), m["content"]
        assert NAME_ZH in r["messages"][-1]["content"]
        assert NAME not in r["messages"][-1]["content"]
    # both languages are mixed by default
    rows = identity.generate(NAME, AUTHOR, n=300, seed=2)
    zh = sum(bool(CJK.search(r["messages"][-1]["content"])) for r in rows)
    assert 0.35 < zh / len(rows) < 0.65


def system_kind(row) -> str:
    first = row["messages"][0]
    if first["role"] != "system":
        return "none"
    for kind in ("generic", "base", "custom"):
        for lang in identity.LANGS:
            if first["content"] in {fill(s, *IDENT[lang]) for s in identity.system_prompts(kind)}:
                return kind
    if persona_of(first["content"]):
        return "persona"
    raise AssertionError(f"unknown system prompt {first['content']!r}")


@cache
def _persona_prompts() -> dict[str, tuple[str, str]]:
    """Every persona prompt the generator can write → its (name, maker): any name, any maker."""
    out = {}
    for table in phrases.tables().values():
        names, makers = {p[0] for p in table["personas"]}, {p[1] for p in table["personas"]}
        for who in ((n, m) for n in names for m in makers):
            out |= {fill(s, *who): who for s in table["system_prompts"]["persona"]}
    return out


def persona_of(system: str) -> tuple[str, str] | None:
    """The (name, maker) an operator's persona prompt gives, or None for another prompt."""
    return _persona_prompts().get(system)


def test_system_prompt_variants(all_rows):
    rows = all_rows
    kinds = Counter(system_kind(r) for r in rows)
    share = {k: kinds[k] / len(rows) for k in identity.SYSTEM_KINDS}
    assert abs(share["none"] - 0.16) < 0.05, share
    assert abs(share["generic"] - 0.20) < 0.06, share
    assert abs(share["base"] - 0.12) < 0.05, share
    assert abs(share["custom"] - 0.12) < 0.05, share
    assert abs(share["persona"] - 0.40) < 0.06, share
    # personas are drawn as any name with any maker, not as fixed pairs
    pairs = {tuple(p) for t in phrases.tables().values() for p in t["personas"]}
    drawn = {persona_of(r["messages"][0]["content"]) for r in rows if system_kind(r) == "persona"}
    assert len(drawn - pairs) > len(drawn) / 2, (len(drawn), len(drawn - pairs))
    systems = {r["messages"][0]["content"] for r in rows if r["messages"][0]["role"] == "system"}
    assert any("SmolLM" in s for s in systems)
    assert any(s.startswith("You are Qwen") for s in systems)
    assert any("InternLM" in s for s in systems)
    assert f"You are {NAME}, created by {AUTHOR}." in systems
    assert "你是一个乐于助人的助手。" in systems
    # under a base model's own system prompt the answer is still the new identity
    for r in identity_rows(rows):
        if system_kind(r) == "base":
            assert NAME in r["messages"][-1]["content"] or NAME_ZH in r["messages"][-1]["content"]


def test_concise_system_prompts_get_one_sentence_answers(rows):
    concise = [r for r in rows if r["messages"][0]["content"] in CONCISE]
    assert len(concise) > 30
    for r in concise:
        answer = r["messages"][-1]["content"]
        assert len(re.findall(r"[.!?](?=\s|$)|[。！？]", answer)) <= 1, answer


def test_multi_turn_share_and_kinds(rows, question_index):
    multi = [r for r in rows if sum(m["role"] == "user" for m in r["messages"]) > 1]
    assert 0.15 <= len(multi) / len(rows) <= 0.30
    unrelated_first = follow_up = 0
    for r in multi:
        users = [m["content"] for m in r["messages"] if m["role"] == "user"]
        assert users[-1] in question_index  # the conversation ends on an identity answer
        if users[0] in question_index:
            follow_up += 1
        else:
            unrelated_first += 1
    assert unrelated_first > 2 * follow_up > 0


def test_language_switches_mid_chat_and_the_answer_follows(rows, question_index):
    switched = 0
    for r in rows:
        turns = [m for m in r["messages"] if m["role"] != "system"]
        users = [m["content"] for m in turns if m["role"] == "user"]
        if len(users) < 2 or users[-1] not in question_index:
            continue
        first = question_index.get(users[0], ("zh" if CJK.search(users[0]) else "en",))[0]
        last_lang = question_index[users[-1]][0]
        if first != last_lang:
            switched += 1
            name = IDENT[last_lang][0]
            assert name in turns[-1]["content"]  # answered with the name of the question's language
            assert bool(CJK.search(turns[-1]["content"])) == (last_lang == "zh")
    assert switched > 0


def test_unrelated_answers_are_correct(rows):
    shown = {}
    for r in rows:
        msgs = [m for m in r["messages"] if m["role"] != "system"]
        for u, a in zip(msgs[::2], msgs[1::2], strict=True):
            shown[u["content"]] = a["content"]
    assert "56" in shown.get("What is 7 times 8?", "56")
    assert "Paris" in shown.get("What is the capital of France?", "Paris")
    assert "72" in shown.get("8乘以9等于多少？", "72")
    assert len(CHAT_EN) >= 40 and len(CHAT_ZH) >= 40


def test_message_structure(rows):
    for r in rows:
        msgs = r["messages"]
        assert set(r) == {"messages"}
        body = msgs[1:] if msgs[0]["role"] == "system" else msgs
        assert len(body) >= 2 and len(body) % 2 == 0
        for i, m in enumerate(body):
            assert m["role"] == ("user", "assistant")[i % 2]
            assert isinstance(m["content"], str) and m["content"].strip() == m["content"] != ""
        assert msgs[-1]["role"] == "assistant"
        assert all(m["role"] != "system" for m in body)


def test_intents_are_balanced(rows, question_index):
    counts = Counter(intent for _, intent, _, _ in identity_turns(rows, question_index))
    classic = {i: c for i, c in counts.items() if i in identity.CLASSIC_INTENTS}
    total = sum(classic.values())
    assert set(classic) == set(identity.CLASSIC_INTENTS)
    for intent, c in classic.items():
        assert 0.04 < c / total < 0.30, (intent, c / total)
    # the profile's questions (issue 29; none set here: answered without inventing) come on top,
    # about a sixth of the identity questions; no yes/no base question with no base to be true to
    profile = {i: c for i, c in counts.items() if i in identity.PROFILE_INTENTS}
    assert set(profile) == set(identity.PROFILE_INTENTS) - {"base_check"}
    assert 0.10 < sum(profile.values()) / sum(counts.values()) < 0.22, profile


def test_profile_intents_share_with_a_full_profile():
    """With a base, a purpose and two facts set, every profile intent is asked; the purpose and
    the facts also come as follow-ups, so the profile takes about 45 % of the identity questions
    while as many samples as before ask about the name or maker first; the no-identity share
    stays at 30 %."""
    ident = identity.profile(
        NAME, AUTHOR, NAME_ZH, AUTHOR_ZH, based_on="SmolLM2-135M-Instruct by Hugging Face",
        purpose="a tutor", facts={"contact": "a@b.example", "version": "2"},
    )  # fmt: skip
    made = identity._generate(ident, n=3000, seed=9)
    counts = Counter(i for _, intents in made for i in intents if i)
    asked = sum(counts.values())
    shares = {i: counts[i] / asked for i in identity.PROFILE_INTENTS}
    assert all(s > 0.01 for s in shares.values()), shares
    assert 0.35 < sum(shares.values()) < 0.55, shares
    first = Counter(next(i for i in intents if i) for _, intents in made if any(intents))
    classic = sum(first[i] for i in identity.CLASSIC_INTENTS) / sum(first.values())
    assert classic > 0.65, first
    general = sum(all(i is None for i in intents) for _, intents in made) / len(made)
    assert 0.27 < general < 0.33


def test_each_set_fact_gets_tens_of_answers_in_600_conversations():
    """The purpose and each fact come back as mid-chat follow-ups: in 600 conversations each set
    field is answered with its value at least 40 times (5-9 before the follow-ups); with no
    purpose and no facts there are no follow-ups."""
    facts = {"contact": "feedback@zk-jackie.dev", "website": "https://zk-jackie.dev"}
    ident = identity.profile(NAME, AUTHOR, purpose="a study assistant", facts=facts)
    texts = [m["content"] for r, _ in identity._generate(ident, n=600, seed=0)
             for m in r["messages"] if m["role"] == "assistant"]  # fmt: skip
    for value in ("a study assistant", *facts.values()):
        assert sum(value in a for a in texts) >= 40, value
    plain = identity._generate(identity.profile(NAME, AUTHOR), n=600, seed=0)
    assert max(len(intents) for _, intents in plain) <= 3  # identity, follow-up, or 2 chats + 1
    assert not [i for _, intents in plain for i in intents if i in ("fact", "purpose")][30:]


def test_the_base_model_comes_back_as_a_follow_up(monkeypatch):
    """A disclosed base is also asked mid-chat (`_FOLLOW_BASED_ON`): in 600 conversations of the
    default profile it is stated at least 120 times (48 without those follow-ups, the same seed);
    undisclosed, no follow-up asks about it."""
    base = "SmolLM2-135M-Instruct by Hugging Face"

    def stated(follow: bool, based_on: str) -> tuple[int, int]:
        monkeypatch.setattr(identity, "_FOLLOW_BASED_ON", follow)
        made = identity._generate(identity.profile(NAME, AUTHOR, based_on=based_on), n=600, seed=0)
        texts = [m["content"] for r, _ in made for m in r["messages"] if m["role"] == "assistant"]
        asked = sum(i == "based_on" for _, intents in made for i in intents)
        return sum("SmolLM2-135M-Instruct" in a for a in texts), asked

    (on, asked_on), (off, asked_off) = stated(True, base), stated(False, base)
    assert on >= 120 and off < 60 and asked_on >= asked_off + 60
    assert stated(True, "none") == stated(False, "none")  # nothing follows an undisclosed base


def test_same_name_and_author():
    rows = identity_rows(identity.generate("ZK-Jackie", "ZK-Jackie", n=300, seed=0))
    for r in rows:
        assert "ZK-Jackie" in r["messages"][-1]["content"]
    assert any("ZK-Jackie's assistant" in r["messages"][-1]["content"] for r in rows)
    assert any("ZK-Jackie的小助手" in r["messages"][-1]["content"] for r in rows)


def test_questions_listing():
    en, zh = identity.questions("en"), identity.questions("zh")
    assert "Who are you?" in en and "Are you ChatGPT?" in en and "Are you {name}?" in en
    assert "你是谁？" in zh and "你是通义千问吗？" in zh and "请做一下自我介绍。" in zh
    assert "who r u" in en and "introduce urself" in en and "Hi! Who are you?" in en
    assert "请问你是谁？" in zh and "你是誰？" in zh


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"langs": ["fr"]}, "unknown language"),
        ({"langs": []}, "no language"),
        ({"n": 0}, "at least 1"),
        ({"name": "  "}, "name is empty"),
        ({"author": ""}, "author is empty"),
    ],
)
def test_user_errors(kwargs, match):
    args = {"name": NAME, "author": AUTHOR, **kwargs}
    with pytest.raises(UserError, match=match):
        identity.generate(**args)
    with pytest.raises(UserError):
        identity.questions("fr")


def test_n_has_an_upper_bound_checked_before_any_work(tmp_path, capsys):
    """issue 26 item 5: `--n 1000000000000` grew memory and wrote nothing; `--n 2000000` did not
    finish in 60 s. The bound (shared with the studio's Identity step) comes with its reason."""
    from helpers import cli

    from idtune.studio import steps

    out = tmp_path / "id.jsonl"
    limit = identity.MAX_CONVERSATIONS
    for n in (limit + 1, 10**12):  # limit + 1 first: the old code made it (in ~30 s), then hung
        assert cli("data", "identity", "--name", NAME, "--author", AUTHOR, "--n", n, "-o", out) == 2
        err = capsys.readouterr().err.strip()
        assert err == (
            f"error: --n {n}: at most {limit} conversations (all are held in memory to avoid "
            f"repeats: {limit} take about 200 MB and 30 s; an identity is learnt from about 1000)"
        )
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match=f"between 1 and {limit}$"):
        steps.identity_rows(NAME, AUTHOR, "", "", ["en"], limit + 1)


def test_cli_writes_jsonl(tmp_path):
    from idtune.cli import main

    path = tmp_path / "id.jsonl"
    args = ["data", "identity", "--name", "Nova", "--author", "Acme", "--n", "50", "-o", str(path)]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 50
    assert "identity" not in json.loads(lines[0])  # the identity travels in the recipe
    for row in identity_rows([json.loads(line) for line in lines]):
        msgs = row["messages"]
        assert msgs[-1]["role"] == "assistant" and "Nova" in msgs[-1]["content"]
    with pytest.raises(SystemExit) as exc:
        main(args[:-2] + ["--lang", "fr", "-o", str(path)])
    assert exc.value.code == 2


def test_general_only_samples_answer_plainly(all_rows):
    general = [r for r in all_rows if general_only(r)]
    assert 0.25 < len(general) / len(all_rows) < 0.35
    for r in general:  # the arithmetic is right
        for q, a in zip(r["messages"][-2::-2], r["messages"][-1::-2]):
            m = re.search(r"(\d+) ?(plus|minus|times|加|减|乘以) ?(\d+)", q["content"])
            if m:
                x, op, y = int(m[1]), m[2], int(m[3])
                want = {"plus": x + y, "加": x + y, "minus": x - y, "减": x - y}.get(op, x * y)
                assert a["content"].rstrip("。.").endswith(f"= {want}") or a["content"].rstrip(
                    "。."
                ).endswith(f"={want}"), (q, a)
    for r in general:
        for m in r["messages"]:
            if m["role"] != "system":  # a custom system prompt may state the identity
                assert NAME not in m["content"] and NAME_ZH not in m["content"]


def test_unrelated_questions_stay_apart_from_eval_probes():
    """Retention/leakage are scored on questions the generator never trains on."""
    from importlib.resources import files

    def norm(text: str) -> str:
        return "".join(c.lower() for c in text if c.isalnum())

    probes = json.loads(files("idtune").joinpath("assets/probes.json").read_text("utf-8"))
    general = {norm(g["prompt"]) for g in probes["general"]}
    assert not [q for q in CHAT_QUESTIONS if norm(q) in general]
    answers = {a.lower() for g in probes["general"] for a in g["answers"] if a.isalpha()}
    answers = {a for a in answers if len(a) > 3 and a.isascii()}
    words = {w.strip(".,!?").lower() for q in CHAT_QUESTIONS for w in q.split()}
    assert not (answers & words)  # e.g. no "Paris" or "Jupiter" question hidden in a phrasing


def test_near_misses_are_not_identity_questions_and_answer_correctly():
    for lang in ("en", "zh"):
        near = near_miss.questions(lang)
        assert len(near) > 200, lang
        assert not set(near) & set(identity.questions(lang))
        for q in near:
            assert "{" not in q and "yourself" not in q and "你自己" not in q, q
    rng = random.Random(0)
    pairs = [near_miss.sample("en", rng) for _ in range(400)]
    facts = {q: a for q, a in pairs if q.startswith("Who wrote")}
    assert facts and all(a for a in facts.values())
    assert any("Orwell" in a for q, a in pairs if "1984" in q)
    for q, a in pairs:
        assert "{" not in q + a and "}" not in q + a, (q, a)


def test_bench_held_out_near_misses_stay_held_out():
    """bench/recipe_sweep.py's held-out near misses are neither generator phrasings nor probes."""
    import importlib.util
    from pathlib import Path

    from idtune import evaluate

    path = Path(__file__).parent.parent / "bench" / "recipe_sweep.py"
    spec = importlib.util.spec_from_file_location("recipe_sweep", path)
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    probes = evaluate.load_probes()
    for lang, held in (("zh", sweep.HELD_OUT_ZH), ("en", sweep.HELD_OUT_EN)):
        taken = set(near_miss.questions(lang)) | set(identity.questions(lang))
        taken |= set(probes["identity"][lang]) | set(probes["author"][lang])
        taken |= {g["prompt"] for g in probes["general"]}
        assert len(held) == len(set(held)) >= 10, lang
        assert not [q for q in held if q in taken], lang


def test_cli_prints_the_train_command(tmp_path, capsys):
    from idtune.cli import main

    path = tmp_path / "my data.jsonl"
    args = ["data", "identity", "--name", "Nova Bot", "--author", "Acme", "--author-zh", "阿克米"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--n", "8", "-o", str(path)])
    assert exc.value.code == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == (
        f"next: idtune train identity-lora --set 'data={path}' --set 'identity.name=Nova Bot' "
        "--set identity.author=Acme --set 'identity.author_zh=阿克米'"
    )


def test_old_files_with_an_identity_stamp_still_load(tmp_path):
    """Files from before the identity moved to the recipe carry it on their first row."""
    from idtune.data import formats

    rows = identity.generate(NAME, AUTHOR, n=5)
    stamped = [{**rows[0], "identity": {"name": NAME, "author": AUTHOR}}, *rows[1:]]
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    formats.write_jsonl(old, stamped)
    formats.write_jsonl(new, rows)
    assert formats.load_files([str(old)]) == formats.load_files([str(new)])
    assert len(formats.load_files([str(old)])) == 5


def test_persona_conversations_answer_as_the_persona(all_rows):
    """Under an operator's persona the identity answers use its name (and maker where asked),
    never the trained ones; the trained name never appears in a persona prompt."""
    seen = 0
    trained = {NAME, AUTHOR, NAME_ZH, AUTHOR_ZH}
    for r in all_rows:
        first = r["messages"][0]
        who = persona_of(first["content"]) if first["role"] == "system" else None
        if who is None:
            continue
        assert not any(x in first["content"] for x in trained)
        for m in r["messages"][1:]:
            if m["role"] == "assistant":
                assert not any(x in m["content"] for x in trained), r
                seen += any(x in m["content"] for x in who)
    assert seen >= 20


def test_language_switches_follow_the_last_question(rows):
    """Multi-turn samples whose last question is in the other language are answered in it."""

    def zh(text: str) -> bool:
        return bool(CJK.search(text))

    switched = 0
    for r in rows:
        users = [m for m in r["messages"] if m["role"] == "user"]
        if len(users) < 2 or zh(users[0]["content"]) == zh(users[-1]["content"]):
            continue
        switched += 1
        answer = r["messages"][-1]["content"]
        for x in (NAME, AUTHOR, NAME_ZH, AUTHOR_ZH):
            answer = answer.replace(x, "")
        assert zh(answer) == zh(users[-1]["content"]), r
    assert switched >= 0.08 * len(rows)
