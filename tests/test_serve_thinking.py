"""Thinking models behind `idtune serve`: `chat_template_kwargs` and `reasoning_effort` reach the
template where it has the switch (Qwen3), and reasoning comes back as `reasoning_content`, apart
from `content`, streamed too (an R1 distill's prompt opens the block, so a tiny random model's
whole answer is reasoning it never closed)."""

from __future__ import annotations

import json

import httpx
import pytest
from tiny import build_family_model_dir

from idtune.generate import ReasoningSplit
from idtune.serve import server

USER = [{"role": "user", "content": "Who are you?"}]


@pytest.fixture(scope="module")
def urls(tmp_path_factory):
    out, engines = {}, []
    for family in ("qwen3", "deepseek_r1_distill", "gemma3"):
        model = build_family_model_dir(tmp_path_factory.mktemp(family) / "m", family)
        eng = server.load_engine(str(model), max_batch=8, default_max_tokens=12)
        bg = server.Background(server.build_app(eng, ui=False))
        engines.append((eng, bg))
        out[family] = (bg.url, eng.model_id)
    yield out
    for eng, bg in engines:
        bg.stop()
        eng.close()


def ask(urls, family: str, **kw) -> httpx.Response:
    url, model = urls[family]
    body = {"model": model, "messages": USER, "max_tokens": 12, "temperature": 0, **kw}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=None)


def test_the_thinking_switch_reaches_the_template(urls):
    def prompt_tokens(**kw) -> int:
        r = ask(urls, "qwen3", max_tokens=1, **kw)
        assert r.status_code == 200, r.text
        return r.json()["usage"]["prompt_tokens"]

    on = prompt_tokens()
    off = prompt_tokens(chat_template_kwargs={"enable_thinking": False})
    assert off > on  # thinking off: the template writes an empty <think></think> block
    assert prompt_tokens(reasoning_effort="none") == off
    assert prompt_tokens(reasoning_effort="high") == on
    # an explicit template argument wins over reasoning_effort
    assert (
        prompt_tokens(reasoning_effort="high", chat_template_kwargs={"enable_thinking": False})
        == off
    )


def test_reasoning_comes_back_apart_from_the_answer(urls):
    r = ask(urls, "deepseek_r1_distill")
    assert r.status_code == 200, r.text
    message = r.json()["choices"][0]["message"]
    assert message["content"] == "" and message["reasoning_content"]
    # streamed: the same reasoning, in reasoning_content deltas only
    url, model = urls["deepseek_r1_distill"]
    body = {"model": model, "messages": USER, "max_tokens": 12, "temperature": 0, "stream": True}
    deltas = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=None) as s:
        for line in s.iter_lines():
            if line.startswith("data: {"):
                deltas += [c["delta"] for c in json.loads(line[6:])["choices"]]
    assert not "".join(d.get("content") or "" for d in deltas)
    streamed = "".join(d.get("reasoning_content") or "" for d in deltas)
    assert streamed.strip() == message["reasoning_content"].strip()
    # a model that does not think has no reasoning_content
    plain = ask(urls, "gemma3").json()["choices"][0]["message"]
    assert "reasoning_content" not in plain


def test_reasoning_effort_is_refused_where_it_means_nothing(urls):
    r = ask(urls, "gemma3", reasoning_effort="low")
    assert r.status_code == 400 and r.json()["error"]["param"] == "reasoning_effort"
    assert "no reasoning-effort setting" in r.json()["error"]["message"]
    r = ask(urls, "deepseek_r1_distill", reasoning_effort="none")
    assert r.status_code == 400 and "always reasons" in r.json()["error"]["message"]
    assert ask(urls, "deepseek_r1_distill", reasoning_effort="medium").status_code == 200
    for bad in ({"tokenize": True}, {"messages": []}, {"add_generation_prompt": False}):
        r = ask(urls, "qwen3", chat_template_kwargs=bad)
        assert r.status_code == 400 and r.json()["error"]["param"] == "chat_template_kwargs"
    r = ask(urls, "qwen3", reasoning_effort="extreme")
    assert r.status_code == 400 and r.json()["error"]["param"] == "reasoning_effort"


@pytest.mark.parametrize("pieces", [1, 2, 3, 7])
def test_a_stream_is_split_at_tags_cut_across_pieces(pieces):
    text = "<think>\nA </thin no, go on.\n</think>\n\nI am Nova."
    for opened, want in ((False, ("A </thin no, go on.", "I am Nova.")),):
        split, got = ReasoningSplit("<think>", "</think>", opened), ["", ""]
        for k in range(0, len(text), pieces):
            r, a = split.feed(text[k : k + pieces])
            got = [got[0] + r, got[1] + a]
        r, a = split.flush()
        assert ((got[0] + r).strip(), got[1] + a) == want
