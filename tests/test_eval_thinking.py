"""`idtune eval` on thinking models (issue 27): a hybrid family (Qwen3) is scored with thinking
off and on, as separate columns, each pass rendered in its mode; an always-thinking family (an R1
distill) only on. Tiny random models of the families' real architectures and templates."""

from __future__ import annotations

import json
import shutil

import pytest
from tiny import build_family_model_dir

from idtune import evaluate, generate
from idtune.cli import main
from idtune.runinfo import Identity, RunInfo

PROBES = {
    "identity": {"en": ["what r u"], "zh": ["你叫啥"]},
    "author": {"en": ["who built u"]},
    "general": [{"lang": "en", "prompt": "Capital of France?", "answers": ["Paris"]}],
}


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """Every prompt eval renders (its template kwargs and text) and every generate_batch call's
    length cap and kwargs; short caps so the random models are quick."""
    import torch

    monkeypatch.setenv("IDTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(evaluate, "IDENTITY_TOKENS", 4)
    monkeypatch.setattr(evaluate, "GENERAL_TOKENS", 3)
    monkeypatch.setattr(generate, "THINKING_BUDGET", 6)
    prompts, calls = [], []
    encode, batch = generate.encode_prompt, generate.generate_batch

    def encode_prompt(tokenizer, messages, template_kwargs=None):
        ids = encode(tokenizer, messages, template_kwargs)
        prompts.append((dict(template_kwargs or {}), tokenizer.decode(ids)))
        return ids

    def generate_batch(model, tokenizer, conversations, **kw):
        calls.append((kw["max_new_tokens"], dict(kw.get("template_kwargs") or {})))
        return batch(model, tokenizer, conversations, **kw)

    monkeypatch.setattr(generate, "encode_prompt", encode_prompt)
    monkeypatch.setattr(generate, "generate_batch", generate_batch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield prompts, calls
    torch.set_num_threads(threads)


def _eval(tmp_path, family):
    base = build_family_model_dir(tmp_path / "base", family)
    run = tmp_path / "run"
    shutil.copytree(base, run)
    RunInfo(base_model=str(base), identity=Identity("Nova", "Acme")).save(run)
    probes = tmp_path / "probes.json"
    probes.write_text(json.dumps(PROBES, ensure_ascii=False))
    with pytest.raises(SystemExit) as e:
        main(["eval", str(run), "--probes", str(probes), "--compare-base"])
    assert e.value.code == 0
    return json.loads((run / "eval.json").read_text()), (run / "eval.md").read_text()


def test_a_hybrid_thinking_model_is_scored_with_thinking_off_and_on(tmp_path, recorded):
    prompts, calls = recorded
    report, md = _eval(tmp_path, "qwen3")
    assert report["thinking"] == {"style": "hybrid", "kwarg": "enable_thinking", "budget": 6}
    metrics = report["metrics"]
    assert set(metrics) == {"base", "tuned", "base_thinking", "tuned_thinking"}
    for model in ("base_thinking", "tuned_thinking"):
        assert set(metrics[model]) == {"no_system", "system"}  # identity probes, two conditions
        for cond in ("no_system", "system"):
            got = metrics[model][cond]
            assert got["identity_en"] is not None and got["identity_zh"] is not None
            assert got["author_en"] is not None
            assert "retention" not in got and "language_en" not in got  # not asked in this pass
    assert metrics["tuned"]["no_system"]["retention"] is not None  # the full pass, thinking off
    head = "| metric | condition | base, thinking off | base, thinking on | tuned, thinking off | "
    assert head + "tuned, thinking on |" in md
    assert "- thinking: off and on; the reasoning is stripped before scoring" in md
    row = next(line for line in md.splitlines() if line.startswith("| retention | no system"))
    assert row.count("| – |") == 2  # the thinking-on columns have no retention
    # each pass rendered in its mode: Qwen3's template closes an empty reasoning block when
    # thinking is off, and leaves the answer open to reasoning when it is on
    on = [text for kw, text in prompts if kw == {"enable_thinking": True}]
    off = [text for kw, text in prompts if kw == {"enable_thinking": False}]
    assert len(on) == 2 * evaluate.n_thinking(PROBES)
    assert all(t.endswith("<|im_start|>assistant\n") for t in on)
    assert all(t.endswith("<think>\n\n</think>\n\n") for t in off)
    assert len(on) + len(off) == len(prompts)  # no prompt in the template's default mode
    # room for the reasoning only where it is on
    assert {cap for cap, kw in calls if kw == {"enable_thinking": True}} == {4 + 6}
    assert {cap for cap, kw in calls if kw == {"enable_thinking": False}} == {4, 3}
    # the base model's answers are cached per mode
    assert len(list((tmp_path / "cache" / "eval").glob("base-*.json"))) == 2


def test_an_always_thinking_model_is_scored_with_thinking_on_only(tmp_path, recorded):
    prompts, calls = recorded
    report, md = _eval(tmp_path, "deepseek_r1_distill")
    assert report["thinking"] == {"style": "always", "kwarg": None, "budget": 6}
    assert set(report["metrics"]) == {"base", "tuned"}
    assert "| metric | condition | base, thinking on | tuned, thinking on |" in md
    assert {kw.get("enable_thinking") for kw, _ in prompts} == {None}  # no switch to pass
    assert {cap for cap, _ in calls} == {4 + 6, 3 + 6}
