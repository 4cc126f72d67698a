"""`idtune data regularize`: shipped general prompts, balanced selection, generation and cache."""

from __future__ import annotations

import json
import unicodedata

import pytest
from tiny import build_model_dir, untie

from idtune import evaluate, regularize
from idtune.cli import main

IDENTITY_WORDS = [
    "who are you",
    "who made you",
    "who created you",
    "your name",
    "yourself",
    "what are you",
    "你是谁",
    "你叫什么",
    "你的名字",
    "你自己",
    "谁开发了你",
    "谁创造了你",
    "谁训练",
    "chatgpt",
    "smollm",
]


def _norm(text: str) -> str:
    return "".join(
        c for c in text.casefold() if not unicodedata.category(c).startswith(("P", "Z", "S"))
    )


# ---------------------------------------------------------------- the shipped prompts
def test_shipped_general_prompts():
    rows = regularize.prompts()
    prompts = [r["prompt"] for r in rows]
    assert len(prompts) >= 200
    assert len(set(map(_norm, prompts))) == len(prompts)  # unique, even ignoring punctuation
    langs = [r["lang"] for r in rows]
    assert set(langs) == {"en", "zh"}
    assert 0.4 <= langs.count("zh") / len(langs) <= 0.6
    for p in prompts:
        low = p.lower()
        assert not [w for w in IDENTITY_WORDS if w in low], p


def test_general_prompts_disjoint_from_eval_probes():
    probes = evaluate.load_probes()
    held_out = {_norm(g["prompt"]) for g in probes["general"]}
    held_out |= {_norm(q) for k in ("identity", "author") for v in probes[k].values() for q in v}
    assert not [p["prompt"] for p in regularize.prompts() if _norm(p["prompt"]) in held_out]


def test_balanced_alternates_languages():
    six = regularize.balanced(6)
    assert [p["lang"] for p in six] == ["en", "zh"] * 3
    assert regularize.balanced(4) == six[:4]  # the first n: a prefix of any larger selection
    assert len(regularize.balanced(10_000)) == len(regularize.prompts())


# ---------------------------------------------------------------- generation and cache
@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private idtune cache; one torch thread (a tiny model gains nothing from more)."""
    import torch

    monkeypatch.setenv("IDTUNE_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "cache"
    torch.set_num_threads(threads)


def _cli(args):
    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code


def _read(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_cli_regularize_writes_rows_then_hits_cache(tmp_path, cache, monkeypatch):
    tiny_model = untie(build_model_dir(tmp_path / "model"))  # answers with something in them
    out = tmp_path / "reg.jsonl"
    args = ["data", "regularize", "--model", str(tiny_model), "--n", "6", "-o", str(out)]
    assert _cli([*args, "--max-new-tokens", "8"]) == 0
    rows = _read(out)
    assert len(rows) == 6
    assert [r["messages"][0] for r in rows] == [
        {"role": "user", "content": p["prompt"]} for p in regularize.balanced(6)
    ]
    for r in rows:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
        assert r["messages"][1]["content"] == r["messages"][1]["content"].strip()
    cached = list((cache / "regularize").glob("*.jsonl"))
    assert len(cached) == 1 and cached[0].name.startswith(f"{tiny_model.name}-n6-t8-")

    # Second call: served from the cache, the model is never run.
    import idtune.generate

    def boom(*a, **k):
        raise AssertionError("generate_batch called despite the cache")

    monkeypatch.setattr(idtune.generate, "generate_batch", boom)
    out2 = tmp_path / "again.jsonl"
    assert _cli([*args[:-1], str(out2), "--max-new-tokens", "8"]) == 0
    assert _read(out2) == rows

    # A different n or length cap is a different key, so it does generate.
    with pytest.raises(AssertionError, match="despite the cache"):
        regularize.generate(str(tiny_model), n=5, max_new_tokens=8)
    with pytest.raises(AssertionError, match="despite the cache"):
        regularize.generate(str(tiny_model), n=6, max_new_tokens=9)


def test_an_empty_answer_is_left_out(tiny_model, cache):
    """The tied tiny model answers a generation prompt ending in a newline with newlines only:
    such rows have nothing to imitate (and fail a record check), so they are not kept."""
    rows = regularize.generate(str(tiny_model), n=4, max_new_tokens=4)
    assert all(r["messages"][1]["content"].strip() for r in rows)
    assert len(rows) < 4


def test_generate_is_deterministic_and_batched(tiny_model, cache, monkeypatch):
    import idtune.generate

    seen = []
    real = idtune.generate.generate_batch

    def spy(model, tok, conversations, **kw):
        seen.append((len(conversations), kw["max_new_tokens"], kw["batch_size"]))
        return real(model, tok, conversations, **kw)

    monkeypatch.setattr(idtune.generate, "generate_batch", spy)
    a = regularize.generate(str(tiny_model), n=4, max_new_tokens=6)
    (cache / "regularize").rename(cache / "old")
    b = regularize.generate(str(tiny_model), n=4, max_new_tokens=6)
    assert a == b  # greedy: the same answers when generated again
    assert seen == [(4, 6, regularize.BATCH_SIZE)] * 2


def test_bad_n(tiny_model, cache):
    from idtune.errors import UserError

    with pytest.raises(UserError):
        regularize.generate(str(tiny_model), n=0)
