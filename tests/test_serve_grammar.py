"""`response_format` schemas llguidance compiles but no document satisfies (issue 26, item 4).

`{"$ref": "#"}` admits nothing at all: a 400 before the request is admitted, streaming or not.
A `$ref` cycle under a required key dead-ends after a few tokens: a 400 when nothing was sent
yet, an error event naming `response_format` mid-stream; never the grammar's internal state, and
never a scratch on the other requests decoded in the same batch.
"""

from __future__ import annotations

import json

import httpx
import pytest
from helpers import concurrently

from idtune.serve import server

USER = [{"role": "user", "content": "Who are you?"}]
NOTHING = {"$ref": "#"}
# `{"a": ` is forced, then no value can follow: a dead end after 6 tokens
DEAD_END = {
    "type": "object",
    "properties": {"a": {"$ref": "#/properties/b"}, "b": {"$ref": "#/properties/a"}},
    "required": ["a"],
}
INTERNALS = ("<state>", "Tokens:", "Parser", "rejected token", "NoExtension", "\n")


@pytest.fixture(scope="module")
def engine(tiny_model):
    eng = server.load_engine(str(tiny_model), max_batch=16, default_max_tokens=16)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def url(engine):
    bg = server.Background(server.build_app(engine, ui=False))
    yield bg.url
    bg.stop()


def body(engine, schema=None, **kw) -> dict:
    out = {"model": engine.model_id, "messages": USER, "max_tokens": 40, **kw}
    if schema is not None:
        fmt = {"name": "answer", "schema": schema}
        out["response_format"] = {"type": "json_schema", "json_schema": fmt}
    return out


def plain(engine) -> dict:
    """A request that runs its whole budget (greedy, the end of turn suppressed)."""
    return body(engine, temperature=0, min_tokens=40)


def assert_names_response_format(error: dict) -> None:
    assert error["param"].startswith("response_format"), error
    assert error["message"].startswith("response_format"), error
    assert error["type"] == "invalid_request_error", error
    assert not [x for x in INTERNALS if x in error["message"]], error["message"]


def sse(url: str, payload: dict) -> tuple[int, list]:
    """The status and the decoded `data:` events of a streamed request."""
    events = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=payload, timeout=120) as r:
        if r.status_code != 200:
            r.read()
            return r.status_code, [r.json()]
        for line in r.iter_lines():
            if line.startswith("data: "):
                data = line[len("data: ") :]
                events.append(data if data == "[DONE]" else json.loads(data))
    return r.status_code, events


def text_of(events: list) -> str:
    chunks = [e for e in events if isinstance(e, dict) and e.get("choices")]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)


@pytest.mark.parametrize("stream", [False, True])
def test_a_schema_with_no_document_is_refused_before_admission(url, engine, stream):
    admitted = engine.failed_requests
    r = httpx.post(
        f"{url}/v1/chat/completions", json=body(engine, NOTHING, stream=stream), timeout=120
    )
    assert r.status_code == 400, r.text
    assert_names_response_format(r.json()["error"])
    assert engine.failed_requests == admitted  # refused at the door, not failed in the batch


def test_a_dead_end_mid_generation_is_a_400_and_the_batch_goes_on(url, engine):
    solo = httpx.post(f"{url}/v1/chat/completions", json=plain(engine), timeout=120).json()
    expected = solo["choices"][0]["message"]["content"]

    def bad():
        return httpx.post(f"{url}/v1/chat/completions", json=body(engine, DEAD_END), timeout=120)

    def good():
        return httpx.post(f"{url}/v1/chat/completions", json=plain(engine), timeout=120)

    def good_stream():
        return sse(url, {**plain(engine), "stream": True})

    results = concurrently([bad, good, good, good_stream])
    assert results[0].status_code == 400, results[0].text
    assert_names_response_format(results[0].json()["error"])
    for r in results[1:3]:
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == expected
        assert r.json()["usage"]["completion_tokens"] == 40
    status, events = results[3]
    assert status == 200 and events[-1] == "[DONE]"
    assert text_of(events) == expected
    assert engine.health()["status"] == "ok"


def test_a_dead_end_mid_stream_ends_that_stream_alone(url, engine):
    expected = text_of(sse(url, {**plain(engine), "stream": True})[1])
    bad, good = concurrently(
        [
            lambda: sse(url, body(engine, DEAD_END, stream=True)),
            lambda: sse(url, {**plain(engine), "stream": True}),
        ]
    )
    status, events = bad
    assert status == 200  # the text before the dead end was already sent
    assert text_of(events) == '{"a": '
    [error] = [e["error"] for e in events if isinstance(e, dict) and "error" in e]
    assert_names_response_format(error)
    assert events[-1] == "[DONE]"
    status, events = good
    assert status == 200 and text_of(events) == expected and events[-1] == "[DONE]"
    assert not [e for e in events if isinstance(e, dict) and "error" in e]


def test_a_dead_end_before_the_first_chunk_is_a_400_not_a_stream(url, engine):
    # a stop sequence that the forced `{"a": ` begins holds that text back: nothing is sent
    # before the dead end, so the answer can still be an HTTP error
    payload = body(engine, DEAD_END, stream=True, stop=['{"a": {"zz'])
    status, [answer] = sse(url, payload)
    assert status == 400, answer
    assert_names_response_format(answer["error"])
