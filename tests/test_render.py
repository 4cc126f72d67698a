"""Assistant-only loss masks, checked token by token on three chat-template families."""

from pathlib import Path

import pytest

from idtune.data import render, templates
from idtune.errors import UserError

CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Who are you?"},
    {"role": "assistant", "content": "I am Nova, made by Acme."},
    {"role": "user", "content": "ok"},
    {"role": "assistant", "content": "Sure!"},
]


def trained_text(tok, sample):
    """The trained tokens decoded, one string per contiguous trained span."""
    spans, cur = [], []
    for t, lab in zip(sample.input_ids, sample.labels):
        if lab != render.IGNORE:
            assert lab == t
            cur.append(t)
        elif cur:
            spans.append(tok.decode(cur))
            cur = []
    if cur:
        spans.append(tok.decode(cur))
    return spans


@pytest.mark.parametrize(
    "template, bos, eot",
    [
        (None, None, "<|im_end|>"),
        ("llama3", "<|begin_of_text|>", "<|eot_id|>"),
        ("internlm2_chat", "<s>", "<|im_end|>"),
    ],
)
def test_only_assistant_content_and_end_of_turn_are_trained(tiny_tokenizer, template, bos, eot):
    tok = tiny_tokenizer
    if template:
        tok.chat_template = templates.get(template)
        tok.bos_token = bos
    sample = render.render(tok, CONV)
    assert trained_text(tok, sample) == [f"I am Nova, made by Acme.{eot}", f"Sure!{eot}"]
    # everything else is masked: the text outside the spans is the full render minus answers
    full = tok.decode(sample.input_ids)
    assert full.count("Who are you?") == 1 and "Be brief." in full


def test_smollm2_default_system_prompt_is_not_trained(tiny_tokenizer):
    sample = render.render(tiny_tokenizer, CONV[1:3])
    text = tiny_tokenizer.decode(sample.input_ids)
    assert "named SmolLM" in text  # the template inserts its default system prompt
    assert trained_text(tiny_tokenizer, sample) == ["I am Nova, made by Acme.<|im_end|>"]


REAL = Path(__file__).parent / "data" / "templates"  # verbatim, sources in SOURCES.md
SPECIALS = {
    "qwen3": [],
    "deepseek-r1-distill-qwen": ["<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"],
    "gemma3": ["<start_of_turn>", "<end_of_turn>"],
    "llama3.1": [],
}


def real(tok, name: str):
    tok.add_special_tokens({"additional_special_tokens": SPECIALS[name]})
    tok.chat_template = (REAL / f"{name}.jinja").read_text("utf-8")
    return tok


@pytest.mark.parametrize(
    "name, eot",
    [("gemma3", "<end_of_turn>"), ("llama3.1", "<|eot_id|>")],
)
def test_real_templates_of_non_thinking_families_train_every_answer(tiny_tokenizer, name, eot):
    tok = real(tiny_tokenizer, name)
    sample = render.render(tok, CONV)
    assert trained_text(tok, sample) == [f"I am Nova, made by Acme.{eot}", f"Sure!{eot}"]


def test_an_r1_distill_trains_the_last_answer_after_its_opened_think_block(tiny_tokenizer):
    """R1 distills' history drops <think> and their generation prompt opens it: the last answer
    is trained as the model writes it there; the earlier answer, as history, is not trained."""
    tok = real(tiny_tokenizer, "deepseek-r1-distill-qwen")
    sample = render.render(tok, CONV)
    eos = "<｜end▁of▁sentence｜>"
    # no reasoning given: the empty block the family writes when it has nothing to think
    assert trained_text(tok, sample) == [f"\n</think>\n\nSure!{eos}"]
    assert tok.decode(sample.input_ids).endswith(
        f"<｜Assistant｜><think>\n\n</think>\n\nSure!{eos}"
    )
    reasoned = [
        *CONV[:-1],
        {"role": "assistant", "content": "<think>\nA short one.\n</think>\n\nSure!"},
    ]
    sample = render.render(tok, reasoned)
    assert trained_text(tok, sample) == [f"A short one.\n</think>\n\nSure!{eos}"]


def test_qwen3_trains_the_last_answer_in_the_asked_thinking_mode(tiny_tokenizer):
    tok = real(tiny_tokenizer, "qwen3")
    # thinking off: the template's empty block is part of the prompt, the answer is trained
    sample = render.render(tok, CONV, template_kwargs={"enable_thinking": False})
    assert trained_text(tok, sample) == ["Sure!<|im_end|>"]
    assert "<think>\n\n</think>\n\nSure!" in tok.decode(sample.input_ids)
    # thinking on, reasoning written with one newline: trained as the template writes it
    reasoned = [*CONV[:-1], {"role": "assistant", "content": "<think>\nBe brief.\n</think>\nSure!"}]
    sample = render.render(tok, reasoned)
    assert trained_text(tok, sample) == ["<think>\nBe brief.\n</think>\n\nSure!<|im_end|>"]


def test_a_conversation_must_end_with_an_answer(tiny_tokenizer):
    with pytest.raises(UserError, match="ends with an assistant answer"):
        render.render(tiny_tokenizer, CONV[:-1])


def test_pack_respects_length_and_keeps_every_sample():
    samples = [render.Sample(list(range(n)), list(range(n))) for n in (5, 9, 3, 7, 2, 6)]
    rows = render.pack(samples, 10)
    assert all(len(r) <= 10 for r in rows)
    assert sorted(len(s) for r in rows for s in r.samples) == [2, 3, 5, 6, 7, 9]
    assert len(rows) == 4  # 32 tokens in rows of 10: first-fit-decreasing needs 4


def test_collate_packed_restarts_positions_and_never_trains_across_samples():
    a = render.Sample([1, 2, 3], [-100, 2, 3])
    b = render.Sample([4, 5], [-100, 5])
    t = render.collate_packed([render.Row([a, b])], pad_id=0, width=7)
    assert t["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1]]
    # shifted: position 2 (last of a) must not learn to predict b's first token
    assert t["labels"].tolist() == [[2, 3, -100, 5, -100, -100, -100]]
    assert t["input_ids"].tolist() == [[1, 2, 3, 4, 5, 0, 0]]
