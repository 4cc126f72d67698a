"""Each current family through the real CLI on a tiny random model of its real architecture with
its real chat template (tests/tiny.py, tests/data/templates): `data identity` → `train` (2 steps)
→ the trained spans → `merge` → the merged template with and without a system prompt →
generation stops at the family's end of turn."""

from __future__ import annotations

import io

import pytest
import torch
from helpers import cli
from tiny import FAMILIES, build_family_model_dir, untie
from transformers import AutoModelForCausalLM, AutoTokenizer

from idtune import generate
from idtune.data import families, render

OWN = "You are Nova, an AI assistant made by Acme."
ASK = [{"role": "user", "content": "Who are you?"}]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def trained(request, tmp_path_factory):
    """(family, base model dir, run dir, merged dir) after 2 LoRA steps through the CLI."""
    family = request.param
    d = tmp_path_factory.mktemp(family.replace(".", "_"))
    base = untie(build_family_model_dir(d / "base", family))  # answers with something in them
    data, run, merged = d / "id.jsonl", d / "run", d / "merged"
    assert cli("data", "identity", "--name", "Nova", "--author", "Acme", "--n", "12",
               "--seed", "1", "-o", data) == 0  # fmt: skip
    assert cli("train", "identity-lora", "--set", f"model={base}", "--set", f"data={data}",
               "--set", f"output_dir={run}", "--set", "regularization.auto=false",
               "--set", "identity.name=Nova", "--set", "identity.author=Acme",
               "--set", "max_steps=2", "--set", "eval_prompts=", "--set", "val_share=0",
               "--set", "row_tokens=256", "--set", "batch_tokens=512") == 0  # fmt: skip
    assert cli("merge", run, merged) == 0
    return family, base, run, merged


def test_the_trained_spans_are_the_answers_and_the_familys_end_of_turn(trained):
    family, base, run, _ = trained
    tok = AutoTokenizer.from_pretrained(base)
    fam = families.detect(tok.chat_template)
    assert fam is not None and fam.name == family.replace("qwen3_moe", "qwen3")
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    conv = [*ASK, {"role": "assistant", "content": "I am Nova, made by Acme."}]
    sample = render.render(tok, conv)
    trained_ids = [t for t, lab in zip(sample.input_ids, sample.labels) if lab != render.IGNORE]
    text = tok.decode(trained_ids)
    # a thinking family with no reasoning given: the empty block its template writes (R1's
    # prompt opens it; Qwen3's template writes it whole in thinking mode)
    opening = {"always": "\n</think>\n\n", "hybrid": "<think>\n\n</think>\n\n", "none": ""}
    assert text == opening[fam.thinking["style"]] + "I am Nova, made by Acme." + fam.end_of_turn[0]


def test_the_merged_template_names_the_identity_unless_told_otherwise(trained):
    family, _, _, merged = trained
    tok = AutoTokenizer.from_pretrained(merged)
    text = tok.apply_chat_template(ASK, tokenize=False, add_generation_prompt=True)
    assert OWN in text and "Who are you?" in text
    if families.get(family.replace("qwen3_moe", "qwen3")).system == "first_user":
        assert text.index(OWN) > text.index("user")  # folded into the first user turn
    told = [{"role": "system", "content": "You are Bob, made by Zed."}, *ASK]
    text = tok.apply_chat_template(told, tokenize=False, add_generation_prompt=True)
    assert "You are Bob, made by Zed." in text and "Nova" not in text


def test_generation_stops_at_the_familys_end_of_turn(trained):
    """A model made to say the family's end-of-turn token first stops there (Gemma 3's
    <end_of_turn> is not its eos: without the family file it ran to the cap)."""
    family, _, _, merged = trained
    tok = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged)
    end = families.get(family.replace("qwen3_moe", "qwen3")).end_of_turn[0]
    head = model.get_output_embeddings().weight
    says_end = torch.nn.Linear(head.shape[1], head.shape[0], bias=True, dtype=head.dtype)
    with torch.no_grad():  # every position's argmax is the end-of-turn token
        says_end.weight.zero_()
        says_end.bias.zero_()
        says_end.bias[tok.convert_tokens_to_ids(end)] = 1.0
    model.set_output_embeddings(says_end)
    cut: list[bool] = []
    generate.generate_batch(model, tok, [ASK], max_new_tokens=8, cut=cut)
    assert cut == [False]


def test_moe_lora_adapts_attention_not_the_router_or_the_experts(trained, monkeypatch, capsys):
    family, _, run, merged = trained
    if family != "qwen3_moe":
        pytest.skip("mixture-of-experts only")
    from safetensors import safe_open

    with safe_open(run / "adapter" / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    adapted = {k.split(".self_attn.")[1].split(".")[0] for k in keys if ".self_attn." in k}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert not [k for k in keys if ".mlp." in k]  # neither the router nor the experts
    # the merged MoE model answers in the terminal chat
    monkeypatch.setattr("sys.stdin", _Script("Who are you?\n"))
    assert cli("chat", merged, "--max-new-tokens", "4") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ">>> Who are you?" and len(out) >= 2


class _Script(io.StringIO):
    def isatty(self):
        return False


def test_eval_scores_a_thinking_models_answer_not_its_reasoning(trained, monkeypatch):
    """An R1 distill's prompt opens the reasoning: eval gives it room (THINKING_BUDGET more
    tokens) and scores what follows the closing tag; a reasoning never closed is no answer.
    The model's generation is replaced by known texts; its tokenizer and template are real."""
    family, _, _, merged = trained
    if family != "deepseek_r1_distill":
        pytest.skip("one thinking family is enough here")
    from idtune import evaluate, models

    asked = []

    def fake(model, tokenizer, conversations, max_new_tokens, **kw):
        asked.append(max_new_tokens)
        return ["Who am I?\n</think>\n\nI am Nova.", "Let me think about"]

    loaded = models.load(str(merged))
    monkeypatch.setattr(generate, "generate_batch", fake)
    run_batch = evaluate._model_generate(evaluate._Target("tuned", loaded), lambda n: None)
    assert run_batch([ASK, ASK], 48) == ["I am Nova.", ""]
    assert asked == [48 + generate.THINKING_BUDGET]


def test_regularization_answers_in_a_declared_mode_and_drops_cut_reasoning(
    trained, monkeypatch, tmp_path
):
    """Qwen3 answers general prompts with thinking off; an R1 distill with room for its
    reasoning, kept as it wrote it, and an answer cut inside its reasoning is dropped. The
    generation is replaced by known texts; tokenizer, template and the cache are real."""
    family, base, _, _ = trained
    if family not in ("qwen3", "deepseek_r1_distill"):
        pytest.skip("thinking families only")
    from idtune import regularize

    monkeypatch.setenv("IDTUNE_CACHE", str(tmp_path / "cache"))
    asked = []

    def fake(model, tokenizer, conversations, max_new_tokens, template_kwargs=None, **kw):
        asked.append((max_new_tokens, template_kwargs))
        if family == "qwen3":
            return ["Paris.", "蓝色。"]
        return ["The capital.\n</think>\n\nParis.", "Blue, because of"]

    monkeypatch.setattr(generate, "generate_batch", fake)
    rows = regularize.generate(str(base), n=2, max_new_tokens=16)
    answers = [r["messages"][1]["content"] for r in rows]
    if family == "qwen3":
        assert asked == [(16, {"enable_thinking": False})] and answers == ["Paris.", "蓝色。"]
    else:
        assert asked == [(16 + generate.THINKING_BUDGET, {})]
        assert answers == ["<think>\nThe capital.\n</think>\n\nParis."]  # the cut one dropped


PROBES = {  # identity and author only: one generation per condition (a thinking family's has
    # THINKING_BUDGET more tokens), the CLI's whole eval path at a fraction of the shipped cost
    "identity": {"en": ["Who are you?"], "zh": ["你是谁？"]},
    "author": {"en": ["Who made you?"]},
}


def test_eval_through_the_cli_scores_the_answer_not_the_reasoning(trained, tmp_path, monkeypatch):
    """`idtune eval RUN --probes` for every family: eval.json names the identity and holds
    each answer with no reasoning tag in it; an R1 distill's prompt opens its reasoning, which a
    random model never closes, so every scored answer is empty and none is a language match.
    The reasoning budget is cut to 16 tokens here (a random model writes to the cap: 512 more
    tokens per call took 80-110 s for Qwen3 on a loaded 2-core box); the budget itself is
    test_eval_scores_a_thinking_models_answer_not_its_reasoning's."""
    import json

    family, _, run, _ = trained
    monkeypatch.setattr(generate, "THINKING_BUDGET", 16, raising=False)
    probes = tmp_path / "probes.json"
    probes.write_text(json.dumps(PROBES, ensure_ascii=False), "utf-8")
    assert cli("eval", run, "--probes", probes, "-o", tmp_path / "eval") == 0
    report = json.loads((tmp_path / "eval" / "eval.json").read_text("utf-8"))
    assert report["names"] == ["Nova"] and report["authors"] == ["Acme"]
    rows = [r for cond in report["answers"]["tuned"].values() for r in cond]
    answers = [r["answer"] for r in rows]
    assert len(answers) >= 3 and not [a for a in answers if "<think>" in a or "</think>" in a]
    if family != "deepseek_r1_distill":
        assert [a for a in answers if a.strip()]  # the model says something
    else:  # it does, inside the reasoning its prompt opened
        from idtune import models

        loaded = models.load(str(run))
        (raw,) = generate.generate_batch(loaded.model, loaded.tokenizer, [ASK], max_new_tokens=8)
        assert raw.strip() and "</think>" not in raw
        assert set(answers) == {""}
        no_system = report["metrics"]["tuned"]["no_system"]
        assert no_system["language_en"] == 0.0 and no_system["language_zh"] == 0.0


def test_serve_on_loopback_splits_reasoning_and_honours_template_kwargs(trained):
    """The merged model behind the server `idtune serve` runs (its engine and app, uvicorn on
    loopback): a thinking family's reasoning comes back as `reasoning_content` apart from
    `content` (an R1 distill's prompt opens the block: a random model's whole answer is
    reasoning), another family's has no such field; the prompt the server renders is the merged
    template's, with `chat_template_kwargs` reaching it (Qwen3's switch off writes the empty
    think block: more prompt tokens)."""
    import httpx

    from idtune.serve import server

    family, _, _, merged = trained
    fam = families.get(family.replace("qwen3_moe", "qwen3"))
    tok = AutoTokenizer.from_pretrained(merged)
    engine = server.load_engine(str(merged), max_batch=4, default_max_tokens=12)
    bg = server.Background(server.build_app(engine, ui=False))
    try:

        def ask(**kw) -> dict:
            body = {"model": engine.model_id, "messages": ASK, "max_tokens": 12,
                    "temperature": 0, **kw}  # fmt: skip
            r = httpx.post(f"{bg.url}/v1/chat/completions", json=body, timeout=None)
            assert r.status_code == 200, r.text
            return r.json()

        def rendered(**kw) -> int:
            return len(generate.encode_prompt(tok, ASK, kw))

        plain = ask()
        message = plain["choices"][0]["message"]
        assert plain["usage"]["prompt_tokens"] == rendered()
        off = ask(chat_template_kwargs={"enable_thinking": False})
        assert off["usage"]["prompt_tokens"] == rendered(enable_thinking=False)
        if fam.thinking["style"] == "hybrid":
            assert rendered(enable_thinking=False) > rendered()  # the empty block written
            assert "reasoning_content" in message
        elif fam.thinking["style"] == "always":
            assert message["content"] == "" and message["reasoning_content"].strip()
        else:
            assert "reasoning_content" not in message and message["content"] is not None
            assert off["usage"]["prompt_tokens"] == plain["usage"]["prompt_tokens"]
    finally:
        bg.stop()
        engine.close()
