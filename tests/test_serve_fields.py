"""Every OpenAI request field honoured or refused by name, with the real `openai` client on
loopback (issue 18), and one request never hurting the others (issue 14, items 3-5)."""

from __future__ import annotations

import json
import logging

import httpx
import openai
import pytest
from helpers import concurrently

from idtune.serve import server
from idtune.serve.tools import parse_tool_calls

USER = [{"role": "user", "content": "Who are you?"}]
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools:{% for t in tools %} {{ t | tojson }}{% endfor %}"
    "<|im_end|>\n{% endif %}{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] or '' }}{% for c in message.get('tool_calls') or [] %}<tool_call>"
    "{{ c['function'] | tojson }}</tool_call>{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 8}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="module")
def engine(tiny_model):
    eng = server.load_engine(
        str(tiny_model), max_batch=16, default_max_tokens=16, temperature=1.0, top_p=1.0
    )
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def url(engine):
    bg = server.Background(server.build_app(engine, ui=False))
    yield bg.url
    bg.stop()


@pytest.fixture
def client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


def greedy(client, model, **kw):
    kw = {"max_tokens": 12, "temperature": 0, "extra_body": {"min_tokens": 12}, **kw}
    return client.chat.completions.create(model=model, messages=USER, **kw)


def error_of(url: str, body: dict, route: str = "chat/completions") -> tuple[int, dict]:
    r = httpx.post(f"{url}/v1/{route}", json=body, timeout=60)
    return r.status_code, r.json().get("error", {})


def ids_of(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


# ---------------------------------------------------------------- honoured
def test_n_gives_n_choices(client, engine):
    r = client.chat.completions.create(
        model=engine.model_id, messages=USER, n=3, max_tokens=8, seed=5, temperature=1.0
    )
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert len({c.message.content for c in r.choices}) == 3
    again = client.chat.completions.create(
        model=engine.model_id, messages=USER, n=3, max_tokens=8, seed=5, temperature=1.0
    )
    assert [c.message.content for c in again.choices] == [c.message.content for c in r.choices]
    assert r.usage.prompt_tokens == len(engine.encode(USER))  # the prompt counted once
    streamed = client.chat.completions.create(
        model=engine.model_id, messages=USER, n=2, max_tokens=5, stream=True, seed=1
    )
    finished = {c.choices[0].index for c in streamed if c.choices and c.choices[0].finish_reason}
    assert finished == {0, 1}


def test_logprobs_match_a_recomputation(client, engine):
    import torch

    r = greedy(client, engine.model_id, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens == 12
    assert all(len(t.top_logprobs) == 3 for t in content)
    assert all(t.top_logprobs[0].logprob >= t.logprob - 1e-6 for t in content)
    # the same greedy path, one token at a time, straight from the model
    ids = engine.encode(USER)
    total = 0.0
    with torch.inference_mode():
        for _ in range(12):
            logits = engine.model(torch.tensor([ids])).logits[0, -1].float()
            lp = logits.log_softmax(-1)
            logits[engine.stop_ids] = float("-inf")  # min_tokens holds the end of turn back
            t = int(logits.argmax())
            total += float(lp[t])
            ids.append(t)
    assert abs(sum(t.logprob for t in content) - total) < 1e-3


def test_penalties_change_greedy_output(client, engine):
    plain = greedy(client, engine.model_id, max_tokens=30, extra_body={"min_tokens": 30})
    tok = engine.tokenizer
    base_ids = ids_of(tok, plain.choices[0].message.content)
    for field in ("frequency_penalty", "presence_penalty"):
        pen = greedy(
            client, engine.model_id, max_tokens=30, extra_body={"min_tokens": 30}, **{field: 2.0}
        )
        assert pen.choices[0].message.content != plain.choices[0].message.content, field
        pen_ids = ids_of(tok, pen.choices[0].message.content)
        assert len(set(pen_ids)) / len(pen_ids) > len(set(base_ids)) / len(base_ids), field


def test_logit_bias_forces_and_forbids_a_token(client, engine):
    tok = engine.tokenizer
    token = ids_of(tok, "Paris")[0]
    forced = greedy(client, engine.model_id, logit_bias={str(token): 100})
    assert forced.choices[0].message.content == tok.decode([token] * 12)
    plain = greedy(client, engine.model_id, logprobs=True)
    first = ids_of(tok, plain.choices[0].logprobs.content[0].token)[0]
    banned = greedy(client, engine.model_id, logit_bias={str(first): -100}, logprobs=True)
    assert banned.choices[0].logprobs.content[0].token != plain.choices[0].logprobs.content[0].token


def test_json_schema_output_validates(client, engine):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 6},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "role": {"enum": ["assistant", "tutor"]},
        },
        "required": ["name", "age", "role"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    for seed in (1, 2, 3):
        r = client.chat.completions.create(
            model=engine.model_id,
            messages=USER,
            max_tokens=200,
            seed=seed,
            response_format=fmt,
        )
        assert r.choices[0].finish_reason == "stop"
        obj = json.loads(r.choices[0].message.content)
        assert set(obj) == {"name", "age", "role"}
        assert isinstance(obj["name"], str) and len(obj["name"]) <= 6
        assert isinstance(obj["age"], int) and 0 <= obj["age"] <= 120
        assert obj["role"] in ("assistant", "tutor")


def test_json_object_output_parses(client, engine):
    brace = ids_of(engine.tokenizer, "}")[0]
    r = client.chat.completions.create(
        model=engine.model_id,
        messages=USER,
        max_tokens=100,
        temperature=0,
        response_format={"type": "json_object"},
        logit_bias={str(brace): 30},  # a random model closes the object when it may
    )
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_tools_rendered_and_calls_parsed(url, tiny_model):
    eng = server.load_engine(str(tiny_model), default_max_tokens=64)
    eng.tokenizer.chat_template = TOOL_TEMPLATE
    bg = server.Background(server.build_app(eng, ui=False))
    try:
        client = openai.OpenAI(base_url=f"{bg.url}/v1", api_key="x", max_retries=0)
        assert "get_weather" in eng.tokenizer.decode(eng.encode(USER, [WEATHER]))
        r = client.chat.completions.create(
            model=eng.model_id, messages=USER, tools=[WEATHER], tool_choice="required", seed=3
        )
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls"
        [call] = choice.message.tool_calls
        assert call.function.name == "get_weather" and call.id.startswith("call_")
        args = json.loads(call.function.arguments)
        assert set(args) == {"city"} and len(args["city"]) <= 8
        follow = client.chat.completions.create(
            model=eng.model_id,
            max_tokens=4,
            messages=[
                *USER,
                {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
            ],
            tools=[WEATHER],
        )
        assert follow.choices[0].finish_reason in ("stop", "length", "tool_calls")
    finally:
        bg.stop()
        eng.close()


def test_tool_call_forms_parse():
    names = {"get_weather"}
    text, calls = parse_tool_calls(
        'ok <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>', names
    )
    assert text == "ok" and json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    text, calls = parse_tool_calls('{"name": "get_weather", "parameters": {"city": "Rome"}}', names)
    assert text is None and calls[0]["function"]["name"] == "get_weather"
    assert parse_tool_calls('{"name": "other", "arguments": {}}', names)[1] == []
    assert parse_tool_calls("plain words", names) == ("plain words", [])


def test_completions_endpoint(url, client, engine):
    tok = engine.tokenizer
    r = client.completions.create(
        model=engine.model_id,
        prompt="The sky is",
        max_tokens=5,
        temperature=0,
        logprobs=2,
        extra_body={"min_tokens": 5},
    )
    assert r.object == "text_completion" and r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(ids_of(tok, "The sky is"))
    assert len(r.choices[0].logprobs.token_logprobs) == r.usage.completion_tokens == 5
    assert all(len(t) <= 2 for t in r.choices[0].logprobs.top_logprobs)
    echo = client.completions.create(
        model=engine.model_id, prompt="The sky is", max_tokens=5, temperature=0, echo=True,
        extra_body={"min_tokens": 5},
    )  # fmt: skip
    assert echo.choices[0].text == "The sky is" + r.choices[0].text
    two = client.completions.create(
        model=engine.model_id, prompt=["Hello", "The sky is"], max_tokens=3, temperature=0
    )
    assert [c.index for c in two.choices] == [0, 1]
    chunks = list(
        client.completions.create(
            model=engine.model_id, prompt="The sky is", max_tokens=5, temperature=0,
            stream=True, extra_body={"min_tokens": 5},
        )
    )  # fmt: skip
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    body = {"model": engine.model_id, "prompt": "x", "suffix": "y"}
    status, err = error_of(url, body, "completions")
    assert status == 400 and err["param"] == "suffix"


def test_openapi_schema_is_the_apis(url):
    doc = httpx.get(f"{url}/v1/openapi.json").json()
    body = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    for field in ("messages", "tools", "response_format", "logprobs", "n", "logit_bias"):
        assert field in schema["properties"], field
    assert "/v1/completions" in doc["paths"]
    assert all(ref in doc["components"]["schemas"] for ref in ("_Message", "_Tool"))


# ---------------------------------------------------------------- refused, by name
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("prediction", {"type": "content", "content": "x"}),
        ("reasoning_effort", "low"),
        ("verbosity", "low"),
        ("web_search_options", {}),
        ("functions", [{"name": "f"}]),
        ("function_call", "auto"),
        ("store", True),
        ("service_tier", "flex"),
        ("modalities", ["text", "audio"]),
        ("tools", [WEATHER]),  # the tiny model's template has no tool support
        ("seed", 2**70),  # issue 14 item 5: a 400, not a 500
        ("stop", ["a", "b", "c", "d", "e"]),  # OpenAI allows 4
        ("stop", ["x" * 300]),
        ("n", 17),
        ("logit_bias", {"999999": 5}),
        ("logit_bias", {"word": 5}),
        ("top_logprobs", 2),  # without logprobs
        ("response_format", {"type": "json_schema"}),
        ("response_format", {"type": "xml"}),
        ("tool_choice", "required"),  # without tools
    ],
)
def test_refused_fields_name_themselves(url, engine, field, value):
    status, err = error_of(url, {"model": engine.model_id, "messages": USER, field: value})
    assert status == 400, err
    assert err["param"].split(".")[0] == field and err["type"] == "invalid_request_error"
    assert field in err["message"]


def test_unknown_fields_are_ignored_with_a_warning(url, engine, caplog):
    with caplog.at_level(logging.WARNING, logger="idtune.serve"):
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": engine.model_id, "messages": USER, "max_tokens": 2, "frobnicate": 1},
            timeout=60,
        )
    assert r.status_code == 200
    assert any("frobnicate" in rec.getMessage() for rec in caplog.records)


def test_identifiers_are_accepted(client, engine):
    r = client.chat.completions.create(
        model=engine.model_id,
        messages=USER,
        max_tokens=2,
        user="u1",
        metadata={"k": "v"},
        store=False,
        service_tier="auto",
        extra_body={"safety_identifier": "s", "prompt_cache_key": "c"},
    )
    assert r.choices[0].message.content is not None


# ---------------------------------------------------------------- one request, not the others
def test_tiny_temperature_is_greedy_and_harms_no_one(client, engine):
    """Issue 14 item 3: temperature=1e-40 used to turn into NaN and end all 8 streams."""
    expected = greedy(client, engine.model_id).choices[0].message.content

    def tiny():
        return greedy(client, engine.model_id, temperature=1e-40).choices[0].message.content

    def other():
        return client.chat.completions.create(
            model=engine.model_id, messages=USER, max_tokens=12, extra_body={"min_tokens": 12}
        )

    results = concurrently([tiny] + [other] * 7)
    assert results[0] == expected
    assert all(r.choices[0].finish_reason == "length" for r in results[1:]), results


def test_a_failing_request_ends_alone(client, engine, monkeypatch):
    """A request whose own processing raises fails; the rest of its batch finishes."""

    def boom(*a, **k):
        raise ValueError("this row's processor broke")

    monkeypatch.setattr(engine, "_logprob_entry", boom)

    def bad():
        return greedy(client, engine.model_id, logprobs=True)

    def good():
        return greedy(client, engine.model_id, max_tokens=20, extra_body={"min_tokens": 20})

    results = concurrently([bad, good, good, good])
    assert isinstance(results[0], openai.InternalServerError)
    assert "processor broke" in str(results[0])
    assert all(r.usage.completion_tokens == 20 for r in results[1:]), results
    assert engine.health()["status"] == "ok"


def test_web_chat_shows_a_working_api_snippet(engine, capsys):
    import re

    from idtune.serve.ui import api_snippet

    bg = server.Background(server.build_app(engine))
    try:
        config = httpx.get(f"{bg.url}/config").text
        assert "api-snippet" in config and "/v1/chat/completions" in config
        text = api_snippet(bg.url, engine.model_id, keyed=False)
        [code] = re.findall(r"```python\n(.*?)```", text, re.S)
        exec(compile(code, "snippet", "exec"), {})  # the openai snippet, as a user would paste it
        assert capsys.readouterr().out.strip()
        [curl] = re.findall(r"```bash\n(.*?)\n```", text, re.S)
        out = __import__("subprocess").run(curl, shell=True, capture_output=True, text=True)
        assert json.loads(out.stdout)["choices"][0]["message"]["content"] is not None
    finally:
        bg.stop()
