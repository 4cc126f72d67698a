"""A thinking family's identity data in both modes (data/thinking.py) with each family's real
template (tests/data/templates): what is trained in each mode, decoded."""

from __future__ import annotations

import pytest
from tiny import FAMILIES, TEMPLATES, build_tokenizer

from idtune.data import families, identity, render, thinking
from idtune.runinfo import Identity

NOVA = Identity("Nova", "Acme", name_zh="诺娃", author_zh="极光")


def _tokenizer(family: str):
    template, specials, eos, _ = FAMILIES[family]
    tok = build_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": specials})
    tok.eos_token = eos
    tok.chat_template = (TEMPLATES / f"{template}.jinja").read_text("utf-8")
    return tok


def _convs(n: int = 200) -> list:
    rows = identity.generate("Nova", "Acme", name_zh="诺娃", author_zh="极光", n=n, seed=3)
    return [r["messages"] for r in rows]


def _trained(tok, sample) -> str:
    return tok.decode([t for t, lab in zip(sample.input_ids, sample.labels) if lab >= 0])


def _untrained_text(tok, sample) -> str:
    first = next(i for i, lab in enumerate(sample.labels) if lab >= 0)
    return tok.decode(sample.input_ids[:first])


def test_a_hybrid_family_trains_both_modes_with_reasoning_that_names_the_assistant():
    tok = _tokenizer("qwen3")
    fam = families.by_template(tok.chat_template)
    convs = _convs()
    dressed = thinking.dress(convs, fam, NOVA, seed=0)
    on = [c for c, d in zip(convs, dressed) if c is not d]
    assert 0.35 < len(on) / len(convs) < 0.65  # ON_SHARE of them, the rest left for thinking off
    named = 0
    for before, conv in zip(convs, dressed):
        kw = thinking.template_kwargs(fam, conv)
        sample = render.render(tok, conv, template_kwargs=kw)
        trained = _trained(tok, sample)
        answer = before[-1]["content"].strip()
        if conv is before:  # thinking off: the empty block is the prompt's, only the answer trains
            assert kw == {"enable_thinking": False}
            assert _untrained_text(tok, sample).endswith("<think>\n\n</think>\n\n")
            assert trained == answer + "<|im_end|>"
        else:  # thinking on: the reasoning, then the answer
            assert kw == {"enable_thinking": True}
            assert trained.startswith("<think>\n") and trained.endswith(answer + "<|im_end|>")
            reasoning = trained.split("</think>")[0]
            if "Nova" in answer or "诺娃" in answer:
                assert "Nova" in reasoning or "诺娃" in reasoning
                named += 1
    assert named > 20  # the identity answers' reasoning states who the assistant is


def test_an_always_thinking_family_reasons_before_every_answer():
    tok = _tokenizer("deepseek_r1_distill")
    fam = families.by_template(tok.chat_template)
    convs = _convs(60)
    dressed = thinking.dress(convs, fam, NOVA, seed=0)
    assert all(c is not d for c, d in zip(convs, dressed))
    for before, conv in zip(convs, dressed):
        assert thinking.template_kwargs(fam, conv) == {}
        trained = _trained(tok, render.render(tok, conv))
        reasoning, _, rest = trained.partition("</think>")
        assert reasoning.strip()  # not the empty block the template writes for an answer alone
        assert rest.strip().startswith(before[-1]["content"].strip()[:20])
        zh = any("\u4e00" <= ch <= "\u9fff" for ch in conv[-2]["content"])
        assert any("\u4e00" <= ch <= "\u9fff" for ch in reasoning) == zh  # the question's language


@pytest.mark.parametrize("family", ["gemma3", "llama3.1"])
def test_a_family_that_does_not_think_is_left_alone(family):
    tok = _tokenizer(family)
    fam = families.by_template(tok.chat_template)
    convs = _convs(20)
    assert all(a is b for a, b in zip(convs, thinking.dress(convs, fam, NOVA)))
    assert thinking.template_kwargs(fam, convs[0]) == {}


def test_answers_that_already_reason_and_unnamed_runs_are_handled():
    tok = _tokenizer("deepseek_r1_distill")
    fam = families.by_template(tok.chat_template)
    given = [{"role": "user", "content": "Who are you?"},
             {"role": "assistant", "content": "<think>\nmine\n</think>\n\nI am Nova."}]  # fmt: skip
    assert thinking.dress([given], fam, NOVA)[0] is given
    plain = [{"role": "user", "content": "Who are you?"},
             {"role": "assistant", "content": "I am Nova."}]  # fmt: skip
    (out,) = thinking.dress([plain], fam, None)  # no identity recorded: plain reasoning
    assert "Nova" not in out[-1]["content"].split("</think>")[0]


def test_the_validation_slice_is_scored_in_the_mode_it_is_trained_in():
    from idtune import recipes, train

    tok = _tokenizer("qwen3")
    cfg = recipes.read_config("identity-lora", ["pack=false"])
    ask = [{"role": "user", "content": "Who are you?"}]
    off = [*ask, {"role": "assistant", "content": "I am Nova."}]
    on = [*ask, {"role": "assistant", "content": "<think>\nAbout me.\n</think>\n\nI am Nova."}]
    batches = train.val_batches(cfg, tok, "cpu", [off, on])
    texts = []
    for b in batches:
        for ids, labels in zip(b["input_ids"].tolist(), b["labels"].tolist()):
            texts.append(tok.decode([t for t, lab in zip(ids, labels) if lab >= 0]))
    # labels are shifted by one in collation: compare what is trained, not where
    assert any("I am Nova" in t and "<think>" not in t for t in texts)  # thinking off
    assert any("About me." in t for t in texts)  # thinking on: the reasoning is scored
