"""`idtune serve`: the OpenAI API over real loopback HTTP, the batching engine, the backends."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from idtune.errors import UserError
from idtune.serve import backends, server
from idtune.serve.engine import Delta, Done, Engine, Params

USER = [{"role": "user", "content": "Who are you?"}]
KEY = "sekret-key"


@pytest.fixture(scope="module")
def engine(tiny_model):
    """The tiny model behind a batching engine, sampling by default (visible random text)."""
    eng = server.load_engine(
        str(tiny_model),
        max_batch=8,
        max_prompt_tokens=200,
        max_tokens_limit=1000,
        default_max_tokens=16,
        temperature=1.0,
        top_p=1.0,
    )
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def url(engine):
    """A real uvicorn server with the API and the web chat, no key."""
    bg = server.Background(server.build_app(engine))
    yield bg.url
    bg.stop()


@pytest.fixture(scope="module")
def keyed_url(engine):
    """The same engine behind a server that wants a bearer key (the web chat: a login)."""
    bg = server.Background(server.build_app(engine, api_key=KEY))
    yield bg.url
    bg.stop()


@pytest.fixture
def client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def sse(url: str, body: dict) -> list[str]:
    """The `data:` payloads of a streamed completion, in order."""
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return [line[6:] for line in r.iter_lines() if line.startswith("data: ")]


def post(url: str, body, **kw) -> httpx.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers = {"content-type": "application/json", **kw.pop("headers", {})}
    return httpx.post(f"{url}/v1/chat/completions", content=data, headers=headers, timeout=60)


# ---------------------------------------------------------------- the API
def test_models_health_and_ui_share_one_port(url, client, engine):
    assert [m.id for m in client.models.list().data] == [engine.model_id] == ["model"]
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and "gradio" in page.text.lower()
    missing = httpx.get(f"{url}/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_completion_usage_matches_the_tokenizer(client, engine, tiny_tokenizer):
    from idtune.generate import encode_prompt

    r = client.chat.completions.create(
        model=engine.model_id,
        messages=USER,
        max_tokens=7,
        temperature=0,
        extra_body={"min_tokens": 7},
    )
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content
    assert r.usage.prompt_tokens == len(encode_prompt(tiny_tokenizer, USER))
    assert r.usage.completion_tokens == 7
    assert r.usage.total_tokens == r.usage.prompt_tokens + 7


def test_stream_chunks_follow_openai_shape(url, client, engine):
    body = {
        "model": engine.model_id,
        "messages": USER,
        "max_tokens": 6,
        "min_tokens": 6,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "ignored",  # unknown fields are ignored
        "logit_bias": {},
    }
    data = sse(url, body)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert len({c["id"] for c in chunks}) == 1
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    first, *middle, finish, usage = chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(set(c["choices"][0]["delta"]) == {"content"} for c in middle) and middle
    assert all(c["choices"][0]["finish_reason"] is None for c in [first, *middle])
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "length",
    }
    assert usage["choices"] == []
    assert all(c["usage"] is None for c in [first, *middle, finish])
    whole = client.chat.completions.create(
        model=engine.model_id,
        messages=USER,
        max_tokens=6,
        temperature=0,
        extra_body={"min_tokens": 6},
    )
    text = "".join(c["choices"][0]["delta"]["content"] for c in middle)
    assert text == whole.choices[0].message.content
    assert usage["usage"] == whole.usage.model_dump(exclude_none=True)

    plain = [json.loads(d) for d in sse(url, {**body, "stream_options": None})[:-1]]
    assert all("usage" not in c for c in plain) and plain[-1]["choices"][0]["finish_reason"]


def test_openai_client_streams(client, engine):
    stream = client.chat.completions.create(
        model=engine.model_id, messages=USER, max_tokens=5, stream=True, seed=1
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert pieces and "".join(pieces)


def test_seed_and_stop(client, engine):
    def ask(**kw):
        r = client.chat.completions.create(
            model=engine.model_id,
            messages=USER,
            max_tokens=12,
            temperature=1.0,
            extra_body={"min_tokens": 12},
            **kw,
        )
        return r.choices[0]

    a, b, c = ask(seed=3), ask(seed=3), ask(seed=4)
    assert a.message.content == b.message.content != c.message.content
    text = a.message.content
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    cut = ask(seed=3, stop=[stop, "never-appears"])
    assert cut.finish_reason == "stop"
    assert cut.message.content == text[: text.find(stop)]


def test_errors_use_the_openai_envelope(url, client, engine):
    m = engine.model_id

    def error(body, status, **kw):
        r = post(url, body, **kw)
        assert r.status_code == status, r.text
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}
        return err

    assert error(b"{not json", 400)["code"] == "invalid_json"
    assert error({"model": m, "messages": []}, 400)["param"] == "messages"
    assert error({"model": m, "messages": USER, "temperature": 5}, 400)["param"] == "temperature"
    assert error({"model": m, "messages": USER, "n": 17}, 400)["param"] == "n"
    tool = [{"role": "tool", "content": "x"}]
    assert error({"model": m, "messages": tool}, 400)["param"] == "messages.0.role"
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    assert error({"model": m, "messages": image}, 400)["param"] == "messages.0.content"
    big = error({"model": m, "messages": USER, "max_tokens": 1001}, 400)
    assert big["param"] == "max_tokens"
    long_prompt = [{"role": "user", "content": "Paris " * 400}]
    assert error({"model": m, "messages": long_prompt}, 413)["code"] == "context_length_exceeded"
    huge = {"model": m, "messages": [{"role": "user", "content": "x" * 3_000_000}]}
    assert error(huge, 413)["code"] == "request_too_large"
    assert error({"model": "gpt-4o", "messages": USER}, 404)["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=USER)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=m, messages=USER, max_tokens=5000)


def test_bearer_key(keyed_url, engine):
    r = httpx.get(f"{keyed_url}/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    wrong = openai.OpenAI(base_url=f"{keyed_url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model=engine.model_id, messages=USER, max_tokens=2)
    right = openai.OpenAI(base_url=f"{keyed_url}/v1", api_key=KEY, max_retries=0)
    r = right.chat.completions.create(model=engine.model_id, messages=USER, max_tokens=2)
    assert r.usage.completion_tokens >= 1
    assert httpx.get(f"{keyed_url}/health").status_code == 200  # health needs no key
    assert httpx.get(f"{keyed_url}/config").status_code == 401  # the web chat wants a login
    # the login wants the server's user name with the key, not any name (issue 14, item 2)
    anyone = httpx.post(f"{keyed_url}/login", data={"username": "me", "password": KEY})
    assert anyone.status_code != 200
    login = httpx.post(f"{keyed_url}/login", data={"username": "idtune", "password": KEY})
    assert login.status_code == 200 and login.json()["success"]
    wrong_key = httpx.post(f"{keyed_url}/login", data={"username": "idtune", "password": "x"})
    assert wrong_key.status_code != 200


def test_host_header_is_checked(url, engine):
    """DNS rebinding: a page on evil.example that resolves to 127.0.0.1 still sends its own Host;
    the API and the web chat answer loopback names, --host and --allow-host only, and every
    Host on a wildcard bind with no --allow-host (a hosted app's name is unknown)."""
    port = url.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
        for path in ("/v1/models", "/health", "/"):
            r = httpx.get(f"{url}{path}", headers={"Host": host})
            assert r.status_code == 400, (host, path, r.status_code)
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert httpx.get(f"{url}/v1/models", headers={"Host": host}).status_code == 200
    named = server.Background(server.build_app(engine, ui=False, allow_hosts=["chat.lan"]))
    wild = server.Background(server.build_app(engine, ui=False, host="0.0.0.0"))
    try:
        ok = httpx.get(f"{named.url}/v1/models", headers={"Host": "chat.lan"})
        assert ok.status_code == 200
        no = httpx.get(f"{named.url}/v1/models", headers={"Host": "evil.example"})
        assert no.status_code == 400
        anyhost = httpx.get(f"{wild.url}/v1/models", headers={"Host": "my-space.hf.space"})
        assert anyhost.status_code == 200
    finally:
        named.stop()
        wild.stop()


def test_stopped_engine_answers_503(tiny_model):
    eng = server.load_engine(str(tiny_model))
    bg = server.Background(server.build_app(eng, ui=False))
    try:
        eng.close()
        r = post(bg.url, {"model": eng.model_id, "messages": USER})
        assert r.status_code == 503 and r.json()["error"]["code"] == "engine_unavailable"
        assert httpx.get(f"{bg.url}/health").status_code == 503
    finally:
        bg.stop()


# ---------------------------------------------------------------- sharing the model
def test_disconnect_stops_generation(url, engine):
    cancelled, generated = engine.cancelled_requests, engine.generated_tokens
    body = {"model": engine.model_id, "messages": USER, "stream": True}
    body |= {"max_tokens": 950, "min_tokens": 950}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]
        assert any(line.startswith("data: ") for line in got)
    assert wait_for(lambda: engine.cancelled_requests == cancelled + 1 and engine.active == 0)
    assert engine.generated_tokens - generated < 950

    cancelled, generated = engine.cancelled_requests, engine.generated_tokens
    with pytest.raises(httpx.ReadTimeout):  # a plain request whose client gives up
        post_body = {**body, "stream": False}
        httpx.post(f"{url}/v1/chat/completions", json=post_body, timeout=0.3)
    assert wait_for(lambda: engine.cancelled_requests == cancelled + 1 and engine.active == 0)
    assert engine.generated_tokens - generated < 950


def test_concurrent_requests_are_batched_and_match_sequential(tiny_model):
    eng = server.load_engine(str(tiny_model), max_batch=8)
    bg = server.Background(server.build_app(eng, ui=False))
    client = openai.OpenAI(base_url=f"{bg.url}/v1", api_key="x", max_retries=0)
    questions = ["Who are you?", "What is your name?", "Who made you?", "The sky is"]

    def ask(q: str) -> str:
        r = client.chat.completions.create(
            model=eng.model_id,
            messages=[{"role": "user", "content": q}],
            max_tokens=40,
            temperature=0,
            extra_body={"min_tokens": 40},
        )
        return r.choices[0].message.content

    try:
        alone = [ask(q) for q in questions]
        assert eng.max_batch_seen == 1
        together: list[str | None] = [None] * len(questions)
        barrier = threading.Barrier(len(questions))

        def worker(i: int) -> None:
            barrier.wait()
            together[i] = ask(questions[i])

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(questions))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert eng.max_batch_seen > 1
        assert together == alone  # batching (left padding, merged caches) changes no token
    finally:
        bg.stop()
        eng.close()


def test_engine_streams_to_threads_and_joins_late_arrivals(engine, tiny_tokenizer):
    """Requests that arrive while others decode join the running batch and finish correctly."""
    prompts = [[{"role": "user", "content": q}] for q in ("Paris", "The sky is blue", "hello")]
    alone = []
    for p in prompts:
        events = list(engine.submit(p, Params(max_tokens=30, min_tokens=30, temperature=0)))
        alone.append("".join(e.text for e in events if isinstance(e, Delta)))
        assert isinstance(events[-1], Done) and events[-1].completion_tokens == 30
    streams = []
    for p in prompts:
        streams.append(engine.submit(p, Params(max_tokens=30, min_tokens=30, temperature=0)))
        time.sleep(0.01)
    late = ["".join(e.text for e in s if isinstance(e, Delta)) for s in streams]
    assert late == alone


# ---------------------------------------------------------------- runs, clients, backends
def test_run_directory_served_with_its_identity(tmp_path, tiny_model, tiny_tokenizer):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from idtune.generate import encode_prompt
    from idtune.runinfo import Identity, RunInfo

    run = tmp_path / "runs" / "identity-lora"
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(run / "adapter")
    system = "You are Ada, made by Lab."
    info = RunInfo(base_model=str(tiny_model), system_prompt=system)
    info.identity = Identity(name="Ada Bot", author="Lab")
    info.save(run / "adapter")

    eng = server.load_engine(str(run))
    try:
        assert (eng.title, eng.model_id, eng.system) == ("Ada Bot", "ada-bot", system)
        assert type(eng.model).__name__.startswith("Peft")  # served without merging
        events = list(eng.submit(USER, Params(max_tokens=3, temperature=0)))
        expected = encode_prompt(tiny_tokenizer, [{"role": "system", "content": system}, *USER])
        assert events[-1].prompt_tokens == len(expected)
    finally:
        eng.close()


def test_gradio_load_chat_works_unchanged(url, engine):
    import gradio as gr

    chat = gr.load_chat(f"{url}/v1/", model=engine.model_id, token="unused", file_types=None)
    first = list(chat.fn("Hello", []))
    assert first and first[-1].strip()
    history = [
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
        {"role": "assistant", "content": [{"type": "text", "text": first[-1]}]},
    ]
    assert list(chat.fn("And who made you?", history))[-1].strip()


def test_remote_engine_proxies_an_openai_server(url, engine):
    """The engine the web chat uses in front of vLLM / LMDeploy, tried on idtune's own server."""
    remote = backends.RemoteEngine(url, engine.model_id, model_id="proxied", title="Proxy")
    bg = server.Background(server.build_app(remote, ui=False))
    try:
        proxied = openai.OpenAI(base_url=f"{bg.url}/v1", api_key="x", max_retries=0)
        direct = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        kw = dict(messages=USER, max_tokens=8, temperature=0, extra_body={"min_tokens": 8})
        a = proxied.chat.completions.create(model="proxied", **kw)
        b = direct.chat.completions.create(model=engine.model_id, **kw)
        assert a.choices[0].message.content == b.choices[0].message.content
        assert a.usage.model_dump() == b.usage.model_dump()
        assert a.choices[0].finish_reason == "length"
    finally:
        bg.stop()


def test_backend_command_lines(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 12, "rank_pattern": {}}))
    argv = backends.server_argv(
        "vllm", "Qwen/Qwen2.5-7B", name="ada", port=8001, adapter=str(adapter)
    )
    assert argv == [
        "vllm", "serve", "Qwen/Qwen2.5-7B", "--host", "127.0.0.1", "--port", "8001",
        "--enable-lora", "--lora-modules", f"ada={adapter}", "--max-lora-rank", "16",
    ]  # fmt: skip
    assert backends.server_argv("vllm", "m", name="ada", port=1)[-2:] == [
        "--served-model-name",
        "ada",
    ]
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8, "rank_pattern": {"q": 300}}))
    assert backends.adapter_rank(adapter) == 300
    assert backends.vllm_max_lora_rank(300) == 320
    assert backends.vllm_max_lora_rank(8) == 8
    with pytest.raises(UserError, match="512"):
        backends.vllm_max_lora_rank(513)
    argv = backends.server_argv("lmdeploy",
        "internlm/internlm2-chat-1_8b", name="ada", port=23333, adapter=str(adapter),
        template="internlm2_chat",
    )  # fmt: skip
    assert argv == [
        "lmdeploy", "serve", "api_server", "internlm/internlm2-chat-1_8b", "--backend", "pytorch",
        "--server-name", "127.0.0.1", "--server-port", "23333", "--adapters", f"ada={adapter}",
        "--chat-template", "internlm2",
    ]  # fmt: skip


@pytest.mark.parametrize("backend", ["vllm", "lmdeploy"])
def test_missing_backend_is_one_clear_line(backend, capsys):
    from idtune.cli import main

    with pytest.raises(SystemExit) as e:
        main(["serve", "--backend", backend])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{backend} is not installed" in err


def test_model_ids():
    from idtune.runinfo import Identity, RunInfo

    assert server.model_id_for("smollm2-135m-instruct") == "smollm2-135m-instruct"
    assert server.model_id_for(Path("out/merged/")) == "merged"
    info = RunInfo(base_model="x", identity=Identity(name="ZK Jackie!", author="me"))
    assert server.model_id_for("runs/a", info) == "zk-jackie"


def test_engine_refuses_without_loading(engine):
    with pytest.raises(Exception) as e:
        engine.submit(USER, Params(max_tokens=0))
    assert getattr(e.value, "status", None) == 400
    assert isinstance(engine, Engine)
