"""Several adapters on one base model, picked per request by `model` (issue 18)."""

from __future__ import annotations

import json
import threading

import openai
import pytest

from idtune.errors import UserError
from idtune.serve import backends, server

QUESTION = [{"role": "user", "content": "Who are you?"}]


def word_adapter(base_dir, out, word: str) -> int:
    """A LoRA adapter on the tiny model's output layer that makes it say `word` over and over.

    (A random 64-wide model does not learn a sentence in seconds of CPU; a bias on one logit is
    an adapter whose identity is unmistakable.) Returns the word's token id.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    token = tok(word, add_special_tokens=False)["input_ids"][0]
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    cfg = LoraConfig(r=1, target_modules=["lm_head"], lora_bias=True)
    model = get_peft_model(model, cfg)
    with torch.no_grad():
        b = model.base_model.model.lm_head.lora_B["default"]
        b.weight.zero_()
        b.bias.zero_()
        b.bias[token] = 50.0
    model.save_pretrained(out)
    return token


@pytest.fixture(scope="module")
def two_adapters(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    words = {"ada": "Paris", "bob": "sky"}
    tokens = {name: word_adapter(tiny_model, root / name, w) for name, w in words.items()}
    return root / "ada", root / "bob", tokens


def test_two_adapters_on_one_base_answer_as_themselves(tiny_model, two_adapters):
    ada, bob, tokens = two_adapters
    eng = server.load_engine(
        str(tiny_model), adapters={"ada": ada, "bob": bob}, served_model_name="base"
    )
    bg = server.Background(server.build_app(eng, ui=False))
    client = openai.OpenAI(base_url=f"{bg.url}/v1", api_key="x", max_retries=0)
    try:
        assert type(eng.model).__name__.startswith("Peft")  # one base, adapters unmerged
        assert [m.id for m in client.models.list().data] == ["base", "ada", "bob"]

        def ask(model: str) -> str:
            r = client.chat.completions.create(
                model=model, messages=QUESTION, max_tokens=24, temperature=0
            )
            return r.choices[0].message.content

        alone = {m: ask(m) for m in ("ada", "bob", "base")}
        assert alone["ada"] == eng.tokenizer.decode([tokens["ada"]] * 24)  # "ParisParis…"
        assert alone["bob"] == eng.tokenizer.decode([tokens["bob"]] * 24)
        assert alone["base"] not in (alone["ada"], alone["bob"])
        together: dict[str, str] = {}
        barrier = threading.Barrier(6)

        def worker(model: str, k: int) -> None:
            barrier.wait()
            together[f"{model}{k}"] = ask(model)

        threads = [
            threading.Thread(target=worker, args=(m, k))
            for m in ("ada", "bob", "base")
            for k in (0, 1)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert eng.max_batch_seen > 1  # mixed adapters shared a batch
        assert together == {f"{m}{k}": alone[m] for m in ("ada", "bob", "base") for k in (0, 1)}
        with pytest.raises(openai.NotFoundError):
            ask("carol")
    finally:
        bg.stop()
        eng.close()


def test_adapter_flags(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "adapter_config.json").write_text(json.dumps({"r": 8}))
    default, named = server.parse_adapters(["run/adapter", f"ada={tmp_path / 'a'}"])
    assert str(default) == "run/adapter" and named == {"ada": tmp_path / "a"}
    with pytest.raises(UserError, match="no adapter_config.json"):
        server.parse_adapters([f"x={tmp_path}"])
    with pytest.raises(UserError, match="twice"):
        server.parse_adapters([f"a={tmp_path / 'a'}", f"a={tmp_path / 'a'}"])


def test_adapters_hand_over_to_vllm_and_lmdeploy(tmp_path):
    for name, r in (("a", 8), ("b", 64)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text(json.dumps({"r": r}))
    mods = {"ada": str(tmp_path / "a"), "bob": str(tmp_path / "b")}
    argv = backends.server_argv("vllm", "Qwen/Qwen2.5-7B", name="base", port=8001, adapters=mods)
    assert argv == [
        "vllm", "serve", "Qwen/Qwen2.5-7B", "--host", "127.0.0.1", "--port", "8001",
        "--served-model-name", "base", "--enable-lora", "--lora-modules",
        f"ada={tmp_path / 'a'}", f"bob={tmp_path / 'b'}", "--max-lora-rank", "64",
        "--max-loras", "2",
    ]  # fmt: skip
    argv = backends.server_argv("lmdeploy", "m", name="base", port=1, adapters=mods)
    assert argv[argv.index("--adapters") + 1 :] == [
        f"ada={tmp_path / 'a'}",
        f"bob={tmp_path / 'b'}",
    ]
    assert argv[argv.index("--model-name") + 1] == "base"
    remote = backends.RemoteEngine("http://127.0.0.1:1", "base", model_id="base", adapters=["ada"])
    assert remote.served_models() == ["base", "ada"]
    assert (remote.adapter_for("ada"), remote.adapter_for("base"), remote.adapter_for("x")) == (
        "ada",
        "base",
        None,
    )
