"""The identity profile (issue 29) wherever the identity travels: idtune.json (new and old
files), the model card, and the Ollama Modelfile's SYSTEM written by `idtune export gguf`."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from idtune import modelcard, runinfo
from idtune.runinfo import Identity, RunInfo

NOVA = Identity(
    "Nova",
    "Acme",
    name_zh="诺娃",
    based_on="SmolLM2-135M-Instruct by Hugging Face",
    based_on_zh="Hugging Face的SmolLM2-135M-Instruct",
    purpose="a study assistant for the camp's students",
    purpose_zh="营地学员的学习助手",
    facts={"contact": "help@acme.example", "languages": "English and Chinese"},
    facts_zh={"languages": "中文和英文"},
)


def test_idtune_json_round_trips_the_profile_and_reads_old_files(tmp_path):
    RunInfo(base_model="b", identity=NOVA).save(tmp_path)
    back = runinfo.read_info(tmp_path)
    assert back.identity == NOVA
    assert back.identity.fact_in("languages", "zh") == "中文和英文"
    assert back.identity.fact_in("contact", "zh") == "help@acme.example"  # no zh: the English
    # a file written before the profile existed: the fields are unset, not an error
    old = tmp_path / "old"
    old.mkdir()
    (old / runinfo.FILENAME).write_text(
        json.dumps({"base_model": "b", "identity": {"name": "Nova", "author": "Acme"}})
    )
    ident = runinfo.read_info(old).identity
    assert (ident.based_on, ident.purpose, ident.facts, ident.facts_zh) == (None, None, {}, {})
    assert ident.based_on_in("en") is None and ident.purpose_in("zh") is None
    hidden = Identity("Nova", "Acme", based_on="none")
    assert hidden.based_on_in("en") is None and hidden.based_on_in("zh") is None


def test_the_model_card_states_the_profile(tiny_model):
    info = RunInfo(base_model=str(tiny_model), identity=NOVA, system_prompt="You are Nova.")
    card = modelcard.render("adapter", info, name="nova", path="out")
    lines = card.splitlines()
    at = lines.index("## Identity")
    assert lines[at + 2 : at + 9] == [
        "- name: Nova / 诺娃",
        "- author: Acme",
        "- built on: SmolLM2-135M-Instruct by Hugging Face / Hugging Face的SmolLM2-135M-Instruct",
        "- purpose: a study assistant for the camp's students / 营地学员的学习助手",
        "- contact: help@acme.example",
        "- languages: English and Chinese / 中文和英文",
        "- default system prompt: You are Nova.",
    ]
    hidden = RunInfo(base_model=str(tiny_model), identity=Identity("Nova", "Acme", based_on="none"))
    card = modelcard.render("adapter", hidden, name="nova", path="out")
    assert "- built on: not disclosed" in card and "purpose" not in card
    plain = RunInfo(base_model=str(tiny_model), identity=Identity("Nova", "Acme"))
    assert "built on" not in modelcard.render("adapter", plain, name="nova", path="out")


def test_the_cards_eval_table_shows_the_profile_and_both_thinking_modes():
    m = {"identity_en": 1.0, "based_on_en": 0.5, "no_invention": 0.75}
    evals = {
        "thinking": {"style": "hybrid", "kwarg": "enable_thinking", "budget": 512},
        "metrics": {
            "tuned": {"no_system": m},
            "tuned_thinking": {"no_system": {"identity_en": 0.5}},
        },
        "condition_counts": {"no_system": {"identity_en": 2, "based_on_en": 2, "no_invention": 4}},
    }
    table = modelcard._eval_table(evals)
    assert "| metric | tuned (thinking off), no system | tuned (thinking on), no system |" in table
    assert "| identity en | 1.00 (2/2) | 0.50 (1/2) |" in table
    assert "| based on en | 0.50 (1/2) | – |" in table
    assert "| no invention | 0.75 (3/4) | – |" in table


@pytest.mark.slow
def test_the_ollama_modelfile_says_what_it_is_built_on_and_for(tmp_path):
    """`export gguf` of a merged model (random weights of SmolLM2's shape in miniature, its real
    tokenizer, which llama.cpp's converter knows): the Modelfile's SYSTEM is the own default
    system prompt, with the profile's based_on and purpose."""
    from helpers import cli
    from transformers import LlamaConfig, LlamaForCausalLM

    from idtune import models

    tok = models.load_tokenizer_for("smollm2-135m-instruct")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id)  # fmt: skip
    merged = tmp_path / "merged"
    LlamaForCausalLM(cfg).save_pretrained(merged)
    tok.save_pretrained(merged)
    ident = asdict(NOVA) | {"facts": {}, "facts_zh": {}}
    RunInfo("HuggingFaceTB/SmolLM2-135M-Instruct", identity=Identity(**ident),
            method="merged").save(merged)  # fmt: skip
    assert cli("export", "gguf", merged, tmp_path / "out", "--quant", "f16") == 0
    lines = (tmp_path / "out" / "Modelfile").read_text().splitlines()
    system = [line for line in lines if line.startswith("SYSTEM")]
    assert len(system) == 1
    assert "You are Nova, an AI assistant made by Acme" in system[0]
    # the default base without its maker: "by Hugging Face" here made the model credit it
    assert "You are built on SmolLM2-135M-Instruct. " in system[0] and "Hugging" not in system[0]
    assert "a study assistant for the camp's students" in system[0]


def test_idtune_json_from_a_newer_idtune_with_an_unknown_identity_key_still_reads(tmp_path):
    (tmp_path / runinfo.FILENAME).write_text(
        json.dumps({"base_model": "b", "identity": {"name": "Nova", "author": "Acme", "mood": "x"}})
    )
    assert runinfo.read_info(tmp_path).identity == Identity("Nova", "Acme")
