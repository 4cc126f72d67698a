"""Request field types checked as OpenAI's API checks them (issue 26, item 8): no string for an
integer, a number or a boolean, no boolean for an integer; one line naming the field."""

from __future__ import annotations

import httpx
import pytest

from idtune.serve import server

USER = [{"role": "user", "content": "Who are you?"}]


@pytest.fixture(scope="module")
def served(tiny_model):
    eng = server.load_engine(str(tiny_model), default_max_tokens=4)
    bg = server.Background(server.build_app(eng, ui=False))
    yield bg.url, eng.model_id
    bg.stop()
    eng.close()


def post(served, route: str, payload: dict) -> httpx.Response:
    url, model = served
    base = {"model": model, "max_tokens": 2}
    base.update({"messages": USER} if route == "chat/completions" else {"prompt": "Hi"})
    return httpx.post(f"{url}/v1/{route}", json={**base, **payload}, timeout=120)


CHAT = "chat/completions"
TEXT = "completions"


@pytest.mark.parametrize(
    ("route", "payload", "param"),
    [
        (CHAT, {"max_tokens": "5"}, "max_tokens"),
        (CHAT, {"stream": "yes"}, "stream"),
        (CHAT, {"stream": 1}, "stream"),
        (CHAT, {"max_tokens": True}, "max_tokens"),
        (CHAT, {"max_tokens": 2.5}, "max_tokens"),
        (CHAT, {"max_completion_tokens": "5"}, "max_completion_tokens"),
        (CHAT, {"temperature": "0.5"}, "temperature"),
        (CHAT, {"top_p": "1"}, "top_p"),
        (CHAT, {"n": "2"}, "n"),
        (CHAT, {"seed": "7"}, "seed"),
        (CHAT, {"presence_penalty": "0"}, "presence_penalty"),
        (CHAT, {"frequency_penalty": "0"}, "frequency_penalty"),
        (CHAT, {"logit_bias": {"5": "1"}}, "logit_bias.5"),
        (CHAT, {"logprobs": "true"}, "logprobs"),
        (CHAT, {"logprobs": True, "top_logprobs": "2"}, "top_logprobs"),
        (CHAT, {"min_tokens": "1"}, "min_tokens"),
        (CHAT, {"parallel_tool_calls": "no"}, "parallel_tool_calls"),
        (CHAT, {"store": "false"}, "store"),
        (CHAT, {"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options"),
        (TEXT, {"max_tokens": "5"}, "max_tokens"),
        (TEXT, {"echo": "yes"}, "echo"),
        (TEXT, {"logprobs": "1"}, "logprobs"),
        (TEXT, {"logprobs": True}, "logprobs"),
        (TEXT, {"best_of": "1"}, "best_of"),
        (TEXT, {"prompt": [1, "2"]}, "prompt"),
    ],
)
def test_a_field_of_the_wrong_type_is_one_line_naming_it(served, route, payload, param):
    r = post(served, route, payload)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"].startswith(param) and error["type"] == "invalid_request_error", error
    assert error["message"].startswith(param) and "\n" not in error["message"], error
    assert "_StreamOptions" not in error["message"]  # no internal class names


@pytest.mark.parametrize(
    ("route", "payload"),
    [
        (CHAT, {"temperature": 1}),  # an integer is a number, as in OpenAI's API
        (CHAT, {"max_tokens": 2.0}),  # a whole number is an integer to JSON Schema
        (CHAT, {"stream": False, "logprobs": False, "top_p": 1}),
        (TEXT, {"prompt": [1, 2, 3], "logprobs": 0}),
    ],
)
def test_numbers_json_schema_allows_are_taken(served, route, payload):
    r = post(served, route, payload)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("prompt", "param"), [([[]], "prompt.0"), ([100000], "prompt"), ([-5], "prompt.0")]
)
def test_token_prompts_no_model_could_run_are_400(served, prompt, param):
    """Found by schemathesis: these were 500s, failing the forward of the whole batch."""
    r = post(served, TEXT, {"prompt": prompt})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
