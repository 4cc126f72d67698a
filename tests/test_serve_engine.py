"""The engine's admission: chunked prefill, length groups, the cap on tokens in flight, and the
transformers cache internals it relies on (pinned here)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from idtune.serve import server
from idtune.serve.engine import Delta, Done, Params, cache_tensors, set_cache_tensors

LONG = [{"role": "user", "content": "The capital of France is Paris. " * 30}]
SHORT = [{"role": "user", "content": "hello"}]


def answer(engine, messages, n=20):
    events = list(engine.submit(messages, Params(max_tokens=n, min_tokens=n, temperature=0)))
    assert isinstance(events[-1], Done), events[-1]
    return "".join(e.text for e in events if isinstance(e, Delta))


def test_transformers_cache_layout_is_what_the_engine_edits(tiny_model):
    """The engine merges and shrinks DynamicCache layers (keys/values), which transformers has no
    public API for: the versions it is tested with are pinned here and in pyproject.toml, so
    widening the range there fails this test until the layout is checked again."""
    from pathlib import Path

    import tomllib
    import torch
    import transformers
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from transformers import AutoModelForCausalLM, DynamicCache

    tested = SpecifierSet(">=5.0,<6")
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    [declared] = [
        Requirement(d).specifier
        for d in pyproject["project"]["dependencies"]
        if Requirement(d).name == "transformers"
    ]
    assert declared == tested, f"pyproject.toml allows transformers {declared}; tested: {tested}"
    assert transformers.__version__ in tested, transformers.__version__
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    cache = DynamicCache()
    with torch.inference_mode():
        model(input_ids=torch.tensor([[5, 6, 7]]), past_key_values=cache, use_cache=True)
        [(k, v), *_] = cache_tensors(cache)
        assert k.shape[0] == 1 and k.shape[2] == 3 and v.shape == k.shape
        doubled = [(torch.cat([a, a]), torch.cat([b, b])) for a, b in cache_tensors(cache)]
        set_cache_tensors(cache, doubled)
        out = model(
            input_ids=torch.tensor([[8], [8]]),
            attention_mask=torch.ones(2, 4, dtype=torch.long),
            position_ids=torch.tensor([[3], [3]]),
            past_key_values=cache,
            use_cache=True,
        )
    assert cache_tensors(cache)[0][0].shape[:3] == (2, k.shape[1], 4)
    assert torch.allclose(out.logits[0], out.logits[1], atol=1e-5)


def test_chunked_prefill_and_groups_change_no_token(tiny_model):
    whole = server.load_engine(str(tiny_model), step_tokens=4096)
    chunked = server.load_engine(str(tiny_model), step_tokens=32, max_batch=8)
    try:
        expected = [answer(whole, m) for m in (LONG, SHORT)]
        assert [answer(chunked, m) for m in (LONG, SHORT)] == expected
        out: dict[int, str] = {}
        barrier = threading.Barrier(4)

        def worker(i: int) -> None:
            barrier.wait()
            out[i] = answer(chunked, (LONG, SHORT)[i % 2])

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert [out[i] for i in range(4)] == expected * 2
    finally:
        whole.close()
        chunked.close()


def test_tokens_in_flight_are_capped(tiny_model):
    eng = server.load_engine(str(tiny_model), max_tokens_in_flight=1, max_batch=8)
    try:
        assert eng.max_tokens_in_flight == eng.context  # never below one full request
        streams = [
            eng.submit(LONG, Params(max_tokens=eng.context - 400, min_tokens=20, temperature=0))
            for _ in range(3)
        ]
        peak = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and eng.active:
            peak = max(peak, eng.in_flight())
            time.sleep(0.01)
        assert peak <= eng.max_tokens_in_flight
        for s in streams:
            s.cancel()
    finally:
        eng.close()


@pytest.mark.slow
def test_short_request_first_token_under_long_prompts():
    """Issue 14 item 4: four ~7.9k-token prompts used to make a short request wait 279 s."""
    eng = server.load_engine("smollm2-135m-instruct", max_prompt_tokens=8100)
    bg = server.Background(server.build_app(eng, ui=False))
    long = [{"role": "user", "content": "Paris is the capital of France. " * 1100}]
    assert 7500 < len(eng.encode(long)) < 8100
    body = {"model": eng.model_id, "max_tokens": 32, "stream": True, "temperature": 0}
    stop = threading.Event()

    def hog() -> None:
        with httpx.stream(
            "POST", f"{bg.url}/v1/chat/completions", json={**body, "messages": long}, timeout=600
        ) as r:
            for _ in r.iter_lines():
                if stop.is_set():
                    return

    hogs = [threading.Thread(target=hog, daemon=True) for _ in range(4)]
    try:
        for t in hogs:
            t.start()
        deadline = time.monotonic() + 30
        while eng.active < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # the long prefills are under way
        t0 = time.monotonic()
        with httpx.stream(
            "POST", f"{bg.url}/v1/chat/completions", json={**body, "messages": SHORT}, timeout=600
        ) as r:
            for line in r.iter_lines():
                if '"content"' in line and '"content": ""' not in line:
                    break
        ttft = time.monotonic() - t0
        assert ttft <= 5.0, f"time to first token {ttft:.1f} s under 4 long prompts"
    finally:
        stop.set()
        bg.stop()
        eng.close()
