"""The training loss: chunked == plain, packed == unpacked, LoRA (lm_head too), varlen plumbing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from idtune import accel, loss
from idtune.data import render

CONVERSATIONS = [
    [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am Tiny."}],
    [
        {"role": "system", "content": "You are a helpful AI assistant."},
        {"role": "user", "content": "What is your name?"},
        {"role": "assistant", "content": "My name is Tiny, made by ZK."},
    ],
    [
        {"role": "user", "content": "你好，你是谁？"},
        {"role": "assistant", "content": "你好，我是你的助手。"},
        {"role": "user", "content": "Who made you?"},
        {"role": "assistant", "content": "ZK made me. The capital of France is Paris."},
    ],
    [{"role": "user", "content": "Two plus two?"}, {"role": "assistant", "content": "Four."}],
]


def _model(path, lora: str | list[str] | None = None, seed: int = 1):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if lora:
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=lora)
        model = get_peft_model(model, cfg)
        for name, p in model.named_parameters():  # LoRA B starts at zero: make it count
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.05)
    return model


def _samples(tokenizer) -> list[render.Sample]:
    return [render.render(tokenizer, c) for c in CONVERSATIONS]


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _loss_and_grads(model, batch, fused):
    model.zero_grad(set_to_none=True)
    total, n = loss.causal_lm_loss(model, batch, fused)
    (total / n).backward()
    return total.detach(), n, _grads(model)


def _close(a: dict, b: dict, tol: float) -> None:
    assert a.keys() == b.keys() and a
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=tol, atol=tol, msg=k)


@pytest.mark.parametrize("lora", [None, "all-linear", ["q_proj", "v_proj", "lm_head"]])
def test_chunked_equals_plain(tiny_model, tiny_tokenizer, monkeypatch, lora):
    """Chunked loss and every gradient match the plain full-logits loss (several chunks)."""
    monkeypatch.setattr(loss, "CHUNK_ELEMENTS", 7 * len(tiny_tokenizer))  # 7 tokens a chunk
    model = _model(tiny_model, lora)
    batch = render.collate_padded(_samples(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    plain, n_plain, g_plain = _loss_and_grads(model, batch, "none")
    chunked, n_chunked, g_chunked = _loss_and_grads(model, batch, "chunked")
    assert n_plain == n_chunked > 7
    torch.testing.assert_close(chunked, plain, rtol=1e-5, atol=1e-5)
    _close(g_chunked, g_plain, 1e-5)
    if lora and "lm_head" in lora:
        assert any("lm_head.lora_A" in k for k in g_chunked)


def test_chunked_without_grad(tiny_model, tiny_tokenizer):
    """Evaluation (no_grad) takes the chunked path too and gives the same number."""
    model = _model(tiny_model, "all-linear")
    batch = render.collate_padded(_samples(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    with torch.no_grad():
        a, _ = loss.causal_lm_loss(model, batch, "none")
        b, _ = loss.causal_lm_loss(model, batch, "chunked")
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_ce_with_grad_matches_autograd():
    torch.manual_seed(0)
    logits = torch.randn(5, 11, requires_grad=True)
    target = torch.tensor([0, 3, 10, 3, 7])
    ref = F.cross_entropy(logits, target, reduction="sum")
    ref.backward()
    got, grad = loss.ce_with_grad(logits.detach(), target)
    torch.testing.assert_close(got, ref.detach())
    torch.testing.assert_close(grad, logits.grad)


@pytest.mark.parametrize("fused", ["none", "chunked"])
@pytest.mark.parametrize("lora", [None, "all-linear"])
def test_packed_equals_unpacked(tiny_model, tiny_tokenizer, fused, lora):
    """One packed row (attention kept inside each sample) gives the per-sample losses."""
    model = _model(tiny_model, lora)
    samples = _samples(tiny_tokenizer)
    pad = tiny_tokenizer.pad_token_id
    width = sum(len(s) for s in samples) + 5  # a padding block at the end of the row
    packed = render.collate_packed([render.Row(samples)], pad, width)
    assert packed["input_ids"].shape == (1, width)
    with torch.no_grad():
        total, n = loss.causal_lm_loss(model, packed, fused)
        per_sample = [
            loss.causal_lm_loss(model, render.collate_padded([s], pad), "none") for s in samples
        ]
    assert n == sum(k for _, k in per_sample) > 0
    expected = sum(t for t, _ in per_sample) / n
    torch.testing.assert_close(total / n, expected, rtol=1e-4, atol=1e-4)
    # and attention really is restricted: without restarting positions the loss changes
    crossing = dict(packed, position_ids=torch.arange(width)[None])
    with torch.no_grad():
        leaked, _ = loss.causal_lm_loss(model, crossing, fused)
    assert abs(float(leaked / n - expected)) > 10 * 1e-4


def _segment_reference(q, k, v, cu, max_len):
    """What the varlen kernel computes, from per-segment causal SDPA (runs on CPU)."""
    out = torch.empty_like(q)
    rep = q.shape[1] // k.shape[1]
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True):
        assert b - a <= max_len
        qs, ks, vs = (t[a:b].transpose(0, 1) for t in (q, k, v))
        ks, vs = ks.repeat_interleave(rep, 0), vs.repeat_interleave(rep, 0)
        o = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True)
        out[a:b] = o.transpose(0, 1)
    return out


@pytest.mark.parametrize("fused", ["none", "chunked"])
def test_varlen_path_matches_sdpa(tiny_model, tiny_tokenizer, monkeypatch, fused):
    """The varlen attention plumbing (flattening, sample boundaries, GQA) on CPU.

    The CUDA kernel is replaced by a per-segment SDPA reference; everything around it runs.
    """
    from transformers import AutoModelForCausalLM

    accel.register_varlen()
    monkeypatch.setattr(accel, "varlen_kernel", _segment_reference)
    samples = _samples(tiny_tokenizer)
    pad = tiny_tokenizer.pad_token_id
    rows = [render.Row(samples[:2]), render.Row(samples[2:])]
    batch = render.collate_packed(rows, pad, 128)
    results = []
    for impl in ("sdpa", accel.VARLEN):
        model = AutoModelForCausalLM.from_pretrained(
            tiny_model, dtype=torch.float32, attn_implementation=impl
        )
        extra = accel.packed_kwargs(model, batch)
        assert bool(extra) == (impl == accel.VARLEN)
        if extra:  # 2 samples + padding in each row of 128
            assert len(extra["cu_seq_lens_q"]) == 7 and extra["cu_seq_lens_q"][-1] == 256
            assert extra["max_length_q"] == 128  # 69 rounded up to a multiple of 64
        results.append(_loss_and_grads(model, batch, fused))
    (a, na, ga), (b, nb, gb) = results
    assert na == nb
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    _close(gb, ga, 1e-4)


def test_cu_seqlens_from_position_ids(tiny_model):
    from transformers import AutoModelForCausalLM

    accel.register_varlen()
    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation=accel.VARLEN)
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3, 0], [0, 1, 2, 3, 4, 5, 0, 1, 0, 1]])
    extra = accel.packed_kwargs(model, {"input_ids": pos, "position_ids": pos})
    assert extra["cu_seq_lens_q"].tolist() == [0, 3, 5, 9, 10, 16, 18, 20]
    assert extra["cu_seq_lens_q"].dtype == torch.int32
    assert extra["max_length_q"] == 10  # 6 rounded up to 64, capped at the row width
    assert accel.packed_kwargs(model, {"input_ids": pos, "attention_mask": pos}) == {}


def test_attention_choice_on_cpu():
    class Cfg:
        attn_implementation = "auto"
        compile = False

    assert accel.load_kwargs(Cfg, "cpu") == {"attn_implementation": "sdpa"}
    Cfg.attn_implementation = "flex_attention"
    assert accel.load_kwargs(Cfg, "cpu")["attn_implementation"] == "flex_attention"


def test_optimize_casts_lora_to_base_dtype(tiny_model):
    """bf16 base → bf16 LoRA weights (peft makes them fp32); fp32 stays fp32."""
    from transformers import AutoModelForCausalLM

    class Cfg:
        compile = False

    for dtype in (torch.bfloat16, torch.float32):
        model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=dtype)
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
        model = accel.optimize(model, Cfg, "cpu")
        trained = {p.dtype for p in model.parameters() if p.requires_grad}
        assert trained == {dtype}
    assert len(accel.decoder_layers(model)) == 2


def test_resolve():
    assert loss.pick_mode("auto", "cpu") == "chunked"
    assert loss.pick_mode("none", "cpu") == "none"
    assert loss.pick_mode("auto", "cuda") == "chunked"
    assert loss.pick_mode("liger", "cpu") == "chunked"
    with pytest.raises(ValueError):
        loss.pick_mode("fast", "cpu")


def test_compile_only_for_training(tiny_model, tiny_tokenizer, monkeypatch):
    """Compiled layers run while gradients are on; generation (no_grad) stays eager."""
    from transformers import AutoModelForCausalLM

    calls = []

    def fake_compile(fn):
        def compiled(*args, **kwargs):
            calls.append(torch.is_grad_enabled())
            return fn(*args, **kwargs)

        return compiled

    class Cfg:
        compile = True

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model = accel.optimize(model, Cfg, "cpu")
    accel.optimize(model, Cfg, "cpu")  # a second call does not wrap twice
    batch = render.collate_padded(_samples(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    loss.causal_lm_loss(model, batch, "chunked")[0].backward()
    assert calls == [True, True]  # two layers, compiled path
    with torch.no_grad():
        model.generate(batch["input_ids"][:1, :5], max_new_tokens=3, do_sample=False)
    assert calls == [True, True]
    assert set(model.state_dict()) == set(
        AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    )


def test_batch_without_trained_tokens(tiny_model, tiny_tokenizer):
    """A micro-batch whose labels are all ignored still gives a loss that backpropagates."""
    model = _model(tiny_model, "all-linear")
    batch = render.collate_padded(_samples(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    batch["labels"][:] = render.IGNORE
    for fused in ("none", "chunked", "liger"):
        total, n = loss.causal_lm_loss(model, batch, fused)
        total.backward()
        assert n == 0 and float(total) == 0.0


# ---------------------------------------------------------------- unlikelihood (rejected answers)
def test_render_rejected_marks_only_the_name_and_author(tiny_tokenizer):
    conv = CONVERSATIONS[2][:3] + [{"role": "assistant", "content": "I am Tiny, made by ZK."}]
    s = render.render_rejected(tiny_tokenizer, conv, ["tiny", "ZK"], max_tokens=32)
    assert s.n_trained == 0  # the earlier answer is not trained either
    marked = [t for t in s.unlike if t != render.IGNORE]
    assert tiny_tokenizer.decode(marked).strip() == "Tiny"  # the first mention, any case
    assert s.unlike[-1] != render.IGNORE  # the sample ends after the last rejected token
    short = render.render_rejected(tiny_tokenizer, conv, ["ZK", "Tiny"], max_tokens=2)
    assert short.n_unlike == 0 and len(short) < len(s)  # outside the window: nothing to reject


def test_unlikelihood_value_and_direction():
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0]], requires_grad=True)
    target = torch.tensor([0, 1])
    got = loss.unlikelihood(logits, target)
    want = -torch.log1p(-torch.tensor(0.5)) - torch.log1p(-torch.sigmoid(torch.tensor(-20.0)))
    torch.testing.assert_close(got, want)
    got.backward()
    assert logits.grad[0, 0] > 0 > logits.grad[0, 1]  # gradient descent lowers the rejected logit


@pytest.mark.parametrize("fused", ["none", "chunked"])
def test_rejected_samples_add_unlikelihood_not_tokens(tiny_model, tiny_tokenizer, fused):
    model = _model(tiny_model, "all-linear")
    samples = _samples(tiny_tokenizer)
    conv = CONVERSATIONS[3][:1] + [{"role": "assistant", "content": "I am Tiny by ZK."}]
    neg = render.render_rejected(tiny_tokenizer, conv, ["Tiny", "ZK"])
    plain = render.collate_packed([render.Row(samples)], tiny_tokenizer.pad_token_id)
    mixed = render.collate_packed([render.Row([*samples, neg])], tiny_tokenizer.pad_token_id)
    base, n0 = loss.causal_lm_loss(model, plain, fused)
    total, n1 = loss.causal_lm_loss(model, mixed, fused, unlike_weight=2.0)
    assert n0 == n1  # rejected tokens are not counted as trained tokens
    # the extra term is exactly 2 × Σ -log(1 - p) of the rejected tokens, computed on their own
    alone = render.collate_packed([render.Row([neg])], tiny_tokenizer.pad_token_id)
    logits = model(input_ids=alone["input_ids"], position_ids=alone["position_ids"]).logits
    sel = alone["unlike"][0] != render.IGNORE
    extra = loss.unlikelihood(logits[0][sel], alone["unlike"][0][sel])
    torch.testing.assert_close(total - base, 2.0 * extra, rtol=1e-4, atol=1e-4)
    assert float(extra.detach()) > 0


def test_rejected_build_only_for_unrelated_conversations():
    import random

    from idtune.data import rejected
    from idtune.runinfo import Identity

    ident = Identity(name="Nova", author="Acme", name_zh="诺瓦")
    convs = [
        [
            {"role": "user", "content": "Who are you?"},
            {"role": "assistant", "content": "I'm Nova."},
        ],
        [{"role": "user", "content": "讲个笑话"}, {"role": "assistant", "content": "好的：……"}],
        [{"role": "user", "content": "Name a fruit"}, {"role": "assistant", "content": "Apple."}],
    ]
    out = rejected.build(convs, ident, share=1.0)
    assert [c[0]["content"] for c in out] == ["讲个笑话", "Name a fruit"]
    assert "诺瓦" in out[0][-1]["content"] and "Nova" in out[1][-1]["content"]
    assert all(len(c) == 2 and c[-1]["role"] == "assistant" for c in out)
    assert rejected.build(convs, ident, share=0.0) == []
    rng = random.Random(0)
    for _ in range(20):
        assert "Nova" in rejected.identity_answer("en", Identity("Nova", "Acme"), rng)
