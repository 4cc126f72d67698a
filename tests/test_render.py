"""Assistant-only loss masks, checked token by token on three chat-template families."""

import pytest

from idtune.data import render, templates

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
