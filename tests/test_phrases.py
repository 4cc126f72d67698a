"""Phrase tables are data: a third language and extra phrasings come from a file, no code change."""

from __future__ import annotations

import json

import pytest
from helpers import cli, one_error

from idtune.data import formats, identity, near_miss, phrases

FRENCH = """\
lang: fr
questions:
  name: ["Qui es-tu ?", "Comment t'appelles-tu ?", "Quel est ton nom ?"]
  maker: ["Qui t'a créé ?", "Qui t'a développé ?"]
  intro: ["Présente-toi."]
  what: ["Qu'est-ce que tu es ?"]
  confirm: ["Es-tu {name} ?"]
negative_questions:
  neg_model: ["Es-tu {other} ?"]
  neg_maker: ["As-tu été créé par {other} ?"]
others:
  neg_model: [ChatGPT, Claude]
  neg_maker: [OpenAI, Google]
follow_ups:
  name: ["Et ton nom ?"]
  maker: ["Et qui t'a créé ?"]
answers:
  name: ["Je suis {name}, un assistant créé par {author}."]
  maker: ["{author} m'a créé. Je suis {name}."]
  intro: ["Je suis {name}, un assistant IA développé par {author}. Je réponds à tes questions."]
  what: ["Je suis {name}, un assistant IA de {author}."]
  confirm: ["Oui, je suis {name}, créé par {author}."]
  neg_model: ["Non, je suis {name}, créé par {author}."]
  neg_maker: ["Non, c'est {author} qui m'a créé. Je suis {name}."]
prefixes:
  any: ["Bonjour ! "]
  transition: ["Merci ! "]
styles:
  plain: {weight: 0.9}
  bare: {weight: 0.1, strip_end: " ?"}
system_prompts:
  generic: ["Tu es un assistant serviable."]
  base: ["You are a helpful assistant."]
  custom: ["Réponds en une phrase."]
  concise: ["Réponds en une phrase."]
chat:
  - ["Quelle est la capitale de l'Italie ?", "Rome."]
  - ["Combien font 2 et 3 ?", "5."]
  - ["Traduis « chat » en anglais.", "Cat."]
near_miss:
  naming:
    questions: ["Trouve un nom pour mon {x}."]
    answers: ["Pourquoi pas « {y} » ?"]
    items: [[chaton, Minou], [chiot, Rex]]
"""
# the facts section of a language that has phrasings for one key only
FACTS_FR = """\
facts: {questions: {contact: ["Comment vous contacter ?"]}, answers: {contact: ["{value}"]}}
unset: {answers: ["Je suis {name}, de {author} : je ne le sais pas."]}
"""


def test_a_third_language_from_a_file(tmp_path):
    fr = tmp_path / "fr.yaml"
    fr.write_text(FRENCH, encoding="utf-8")
    out = tmp_path / "fr.jsonl"
    args = ["data", "identity", "--name", "Nova", "--author", "Acme", "--lang", "fr"]
    assert cli(*args, "--phrases", fr, "--n", 80, "-o", out) == 0
    convs = formats.load_files([str(out)])  # valid messages, as training reads them
    assert len(convs) == 80
    table = phrases.tables([fr])["fr"]
    known = {q.replace("{name}", "Nova") for q in identity.questions("fr", phrase_files=[fr])}
    unrelated = {q for q, _ in table["chat"]} | set(near_miss.questions("fr", table))
    asked = 0
    for msgs in convs:
        body = [m for m in msgs if m["role"] != "system"]
        for user, answer in zip(body[::2], body[1::2], strict=True):
            assert user["role"] == "user" and answer["role"] == "assistant"
            if user["content"] in known:
                asked += 1
                assert "Nova" in answer["content"], (user, answer)
            else:
                assert user["content"] in unrelated, user
                assert "Nova" not in answer["content"] and "Acme" not in answer["content"]
    assert asked >= 40
    texts = " ".join(m["content"] for msgs in convs for m in msgs)
    assert "Qui t'a créé" in texts and "Minou" in texts  # questions and near misses both used


def test_a_phrase_file_adds_to_a_shipped_language(tmp_path):
    extra = tmp_path / "mine.yaml"
    extra.write_text('lang: en\nquestions:\n  name: ["Yo bot, who\'s this?"]\n', encoding="utf-8")
    assert "Yo bot, who's this?" not in identity.questions("en", "name")
    assert "Yo bot, who's this?" in identity.questions("en", "name", [extra])
    rows = identity.generate("Nova", "Acme", langs=["en"], n=1500, seed=2, phrase_files=[extra])
    users = {m["content"] for r in rows for m in r["messages"] if m["role"] == "user"}
    assert any("yo bot" in u.lower() for u in users)  # in one of the styles
    plain = identity.generate("Nova", "Acme", langs=["en"], n=50, seed=0)
    assert plain == identity.generate("Nova", "Acme", langs=["en"], n=50, seed=0, phrase_files=[])


def test_a_phrase_file_adds_profile_phrasings(tmp_path):
    """Each profile field has its own section; a file adds phrasings to it (issue 29)."""
    extra = tmp_path / "mine.yaml"
    extra.write_text(
        "lang: en\n"
        'based_on: {questions: ["Yo, what\'s your engine?"], others: [Grok]}\n'
        "purpose: {answers: ['Built for this: {purpose}!']}\n"
        "facts: {questions: {office_hours: [When are you staffed?]}, labels: {x: y}}\n"
        "unset: {questions: {age: [How many candles on your cake?]}}\n",
        encoding="utf-8",
    )
    assert "Yo, what's your engine?" in identity.questions("en", "based_on", [extra])
    assert "Are you built on Grok?" in identity.questions("en", "base_check", [extra])
    assert "When are you staffed?" in identity.questions("en", "fact", [extra])
    assert "How many candles on your cake?" in identity.questions("en", "unset", [extra])
    rows = identity.generate(
        "Nova", "Acme", langs=["en"], n=2500, seed=7, phrase_files=[extra],
        based_on="SmolLM2-135M-Instruct by Hugging Face", purpose="a tutor",
        facts={"office_hours": "9 to 5"},
    )  # fmt: skip
    pairs = {
        (r["messages"][i]["content"], r["messages"][i + 1]["content"])
        for r in rows
        for i, m in enumerate(r["messages"])
        if m["role"] == "user"
    }
    assert any("engine" in q.lower() and "SmolLM2-135M-Instruct" in a for q, a in pairs)
    assert any(a == "Built for this: a tutor!" for _, a in pairs)
    assert any(q == "When are you staffed?" and "9 to 5" in a for q, a in pairs)


@pytest.mark.parametrize(
    "text, message",
    [
        ("lang: fr\nquestions: {name: [Qui ?]}\n", "key 'questions.maker' is missing"),
        ("lang: en\nquestion: {name: [Who?]}\n", "key 'question' is not a section"),
        ("lang: en\nquestions: {name: Who?}\n", "key 'questions.name' must be a list of strings"),
        ("lang: en\nstyles: {plain: {weight: -1}}\n", "key 'styles.plain.weight' must be a number"),
        ("questions: {}\n", "key 'lang' must name the language"),
        ("lang: en\nchat: [[only one]]\n", "key 'chat' must be a list of [text, text] pairs"),
        # the profile's sections (issue 29)
        ("lang: en\nfacts: {questions: {contact: x}}\n",
         "key 'facts.questions.contact' must be a list of strings"),
        ("lang: en\nunset: {questions: {hobby: [x]}}\n", "'unset.questions.hobby' is not known"),
        ("lang: en\nbased_on: {synonyms: x}\n", "key 'based_on.synonyms' must be a list of lists"),
        ("lang: en\nbased_on: {answer: [x]}\n", "key 'based_on.answer' is not known here"),
        ("lang: en\nfacts: {labels: {contact: [x]}}\n", "key 'facts.labels.contact' must be a str"),
        (FRENCH + "purpose: {questions: [Pourquoi ?]}\n", "key 'purpose.answers' is missing"),
        (FRENCH + "purpose: {questions: [Pourquoi ?], answers: ['{purpose}']}\n",
         "key 'unset.answers' is missing"),
        # facts asked about some keys need `any` for the others (issue 29's review)
        (FRENCH + FACTS_FR, "key 'facts.questions.any' is missing"),
        (FRENCH + FACTS_FR.replace("{contact:", "{any: [\"Ton {key} ?\"], contact:", 1),
         "key 'facts.answers.any' is missing"),
    ],
)  # fmt: skip
def test_bad_phrase_files_name_the_file_and_key(tmp_path, capsys, text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["data", "identity", "--name", "N", "--author", "A", "--lang", "en,fr"]
    assert cli(*args, "--phrases", bad, "-o", out) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}") and message in err, err
    assert not out.exists()


def test_facts_of_other_keys_need_any(tmp_path, capsys):
    """A French file with phrasings for `contact` only: `--fact office_hours=…` would be asked
    with contact's question and answered from an empty list (an IndexError)."""
    fr = tmp_path / "fr.yaml"
    fr.write_text(FRENCH + FACTS_FR, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["data", "identity", "--name", "N", "--author", "A", "--lang", "fr", "--n", 300]
    assert cli(*args, "--fact", "office_hours=9h-17h", "--phrases", fr, "-o", out) == 2
    assert "key 'facts.questions.any' is missing" in one_error(capsys) and not out.exists()


def test_a_new_language_must_be_asked_for(tmp_path, capsys):
    fr = tmp_path / "fr.yaml"
    fr.write_text(FRENCH, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert cli("data", "identity", "--name", "N", "--author", "A", "--phrases", fr, "-o", out) == 2
    assert "--lang zh,en,fr" in capsys.readouterr().err
    assert not out.exists()


def test_shipped_tables_are_complete_and_named():
    for lang in identity.LANGS:
        table = phrases.tables()[lang]
        assert table["lang"] == lang
        for intent in identity.INTENTS:
            assert identity.answers(lang, intent), (lang, intent)
        assert json.dumps(table, ensure_ascii=False)  # plain data, nothing but text and numbers
