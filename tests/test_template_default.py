"""A tuned model's chat template names its own identity where the base template named the base
model: rendered with SmolLM2's, Qwen2.5's and InternLM2's real templates (tests/data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from idtune import models
from idtune.data import templates
from idtune.runinfo import Identity, RunInfo

REAL = json.loads((Path(__file__).parent / "data" / "chat_templates.json").read_text("utf-8"))
MODELS = {
    "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "qwen2.5": "Qwen/Qwen2.5-1.5B-Instruct",
    "internlm2": "internlm/internlm2-chat-1_8b",
}
BASE_NAMES = {"smollm2": "SmolLM", "qwen2.5": "Qwen", "internlm2": "InternLM"}


def render(template: str, messages: list[dict], **kw) -> str:
    # the environment transformers renders chat templates in
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=True, bos_token="<s>", **kw
    )


@pytest.mark.parametrize("family", sorted(MODELS))
def test_own_default_replaces_the_base_default(family):
    real, model = REAL[family], MODELS[family]
    base = templates.base_default(real, model)
    assert base is not None and BASE_NAMES[family] in base
    prompt = templates.own_default("Nova", "ZK-Jackie")
    assert prompt == "You are Nova, an AI assistant made by ZK-Jackie."
    own = templates.with_default(real, prompt, model)
    assert templates.with_default(own, prompt, model) == own  # applying it twice changes nothing
    assert base not in own and BASE_NAMES[family] not in own

    ask = [{"role": "user", "content": "Who are you?"}]
    text = render(own, ask)
    assert f"<|im_start|>system\n{prompt}<|im_end|>\n<|im_start|>user\nWho are you?" in text
    assert text.endswith("<|im_start|>assistant\n") and BASE_NAMES[family] not in text
    # an explicit system prompt (an operator's persona) is rendered as given, nothing added
    told = [{"role": "system", "content": "You are Bob, made by Acme."}, *ask]
    assert render(own, told) == render(real, told)
    assert "Nova" not in render(own, told)
    # the rest of the conversation renders exactly as the base template renders it
    assert render(own, ask) == render(real, [{"role": "system", "content": prompt}, *ask])


def test_qwen_tool_branch_gets_the_own_default_too():
    own = templates.with_default(REAL["qwen2.5"], "You are Nova.", MODELS["qwen2.5"])
    tool = {"type": "function", "function": {"name": "f", "parameters": {}}}
    text = render(own, [{"role": "user", "content": "hi"}], tools=[tool])
    assert text.startswith("<|im_start|>system\nYou are Nova.\n\n# Tools") and "Qwen" not in text


def test_quotes_and_newlines_in_the_prompt_survive():
    prompt = 'You are "O\'Neil",\nmade by A\\B.'
    for family, model in MODELS.items():
        own = templates.with_default(REAL[family], prompt, model)
        assert f"system\n{prompt}<|im_end|>" in render(own, [{"role": "user", "content": "x"}])
        assert templates.with_default(own, prompt, model) == own


def test_run_and_merged_model_carry_the_own_default(tiny_model, tmp_path):
    """A run's tokenizer (used by chat, serve and eval) and a merged model's saved template and
    idtune.json name the new identity; the base's stays with `base_chat_template`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from idtune import merge

    run = tmp_path / "run"
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        LoraConfig(r=2, target_modules=["q_proj"]),
    )
    model.save_pretrained(run / "adapter")
    RunInfo(base_model=str(tiny_model), identity=Identity("Nova", "Acme")).save(run / "adapter")
    loaded = models.load(str(run / "adapter"), dtype=torch.float32)
    ask = [{"role": "user", "content": "hi"}]
    text = loaded.tokenizer.apply_chat_template(ask, tokenize=False, add_generation_prompt=True)
    assert "You are Nova, an AI assistant made by Acme." in text and "SmolLM" not in text
    assert "SmolLM" in loaded.base_chat_template

    out = merge.merge(str(run / "adapter"), tmp_path / "merged", dtype="fp32")
    saved = (out / "chat_template.jinja").read_text() if (out / "chat_template.jinja").is_file() \
        else json.loads((out / "tokenizer_config.json").read_text())["chat_template"]  # fmt: skip
    assert "You are Nova, an AI assistant made by Acme." in saved and "SmolLM" not in saved
    info = json.loads((out / "idtune.json").read_text())
    assert info["system_prompt"] == "You are Nova, an AI assistant made by Acme."
