"""OpenAI-compatible HTTP API: `/v1/chat/completions` (plain and SSE), `/v1/models`, `/health`.

Errors use OpenAI's envelope `{"error": {"message", "type", "param", "code"}}` with real status
codes, so the `openai` client raises its usual exceptions.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from .engine import ChatEngine, Delta, Done, Failed, Params, RequestError

MAX_BODY_BYTES = 2 * 1024 * 1024
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    503: "service_unavailable",
}


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[dict[str, Any]] | None = None


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields of a chat completion request that idtune honours; others are ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[_Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: _StreamOptions | None = None
    n: int = Field(1, ge=1, le=1)
    min_tokens: int = Field(0, ge=0)  # vLLM extension

    def params(self) -> Params:
        """The engine's view of the sampling settings."""
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return Params(
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=stop,
            seed=self.seed,
            min_tokens=self.min_tokens,
        )


class APIError(Exception):
    """An error answered with OpenAI's envelope."""

    def __init__(self, status: int, message: str, code: str | None = None, param=None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


def error_body(status: int, message: str, code: str | None = None, param=None) -> dict:
    """OpenAI's error envelope."""
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def content_text(content: str | list[dict[str, Any]] | None) -> str:
    """The text of a message: a string, or the text parts of a content list."""
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise ValueError(f"content parts of type {part.get('type')!r} are not supported")
        texts.append(part["text"])
    return "".join(texts)


ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def to_messages(raw: list[_Message]) -> list[dict[str, str]]:
    """OpenAI messages → plain `{"role", "content"}` dicts; other roles or parts are refused."""
    out = []
    for i, m in enumerate(raw):
        if m.role not in ROLES:
            raise APIError(
                400, f"role {m.role!r} is not supported", "invalid_value", f"messages.{i}.role"
            )
        try:
            out.append({"role": ROLES[m.role], "content": content_text(m.content)})
        except ValueError as e:
            raise APIError(400, str(e), "invalid_value", f"messages.{i}.content") from None
    return out


def build_api(engine: ChatEngine, *, api_key: str | None = None) -> FastAPI:
    """The FastAPI app with the OpenAI routes; the web chat is mounted on it by `server`."""
    app = FastAPI(
        title=f"idtune · {engine.title}", docs_url="/v1/docs", openapi_url="/v1/openapi.json"
    )

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError) -> JSONResponse:
        body = error_body(e.status, e.message, e.code, e.param)
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return JSONResponse(body, status_code=e.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(e.status_code, str(e.detail)), status_code=e.status_code)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), api_key):
            raise APIError(
                401, "missing or wrong API key (Authorization: Bearer KEY)", "invalid_api_key"
            )

    def model_card() -> dict[str, Any]:
        return {"id": engine.model_id, "object": "model", "created": 0, "owned_by": "idtune"}

    @app.get("/health")
    async def health() -> JSONResponse:
        state = engine.health()
        return JSONResponse(state, status_code=200 if state.get("status") == "ok" else 503)

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        check_key(request)
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request) -> dict[str, Any]:
        check_key(request)
        if model_id != engine.model_id:
            raise APIError(404, f"model {model_id!r} does not exist", "model_not_found", "model")
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_key(request)
        req = await _parse(request)
        if req.model not in {engine.model_id, *getattr(engine, "aliases", ())}:
            raise APIError(
                404,
                f"model {req.model!r} does not exist; this server serves {engine.model_id!r}",
                "model_not_found",
                "model",
            )
        messages = to_messages(req.messages)
        try:
            stream = engine.submit(messages, req.params())
        except RequestError as e:
            raise APIError(e.status, str(e), e.code, e.param) from None
        meta = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": req.model,
        }
        if req.stream:
            usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(
                _sse(stream, meta, usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await _complete(request, stream, meta)

    @app.api_route("/v1/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    async def not_found(path: str, request: Request):
        check_key(request)
        raise APIError(404, f"no route /v1/{path}", "not_found")

    return app


async def _parse(request) -> ChatRequest:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise APIError(413, f"request body over {MAX_BODY_BYTES} bytes", "request_too_large")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise APIError(413, f"request body over {MAX_BODY_BYTES} bytes", "request_too_large")
    try:
        data = json.loads(body)
    except ValueError:
        raise APIError(400, "the body is not valid JSON", "invalid_json") from None
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(x) for x in err["loc"]) or None
        raise APIError(400, f"{param}: {err['msg']}", "invalid_value", param) from None


def _usage(done: Done) -> dict[str, int]:
    total = done.prompt_tokens + done.completion_tokens
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": total,
    }


async def _complete(request, stream, meta: dict[str, Any]) -> dict[str, Any]:
    """Collect a whole answer; a client that hangs up cancels the generation."""

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        stream.cancel()

    watcher = asyncio.create_task(watch())
    parts: list[str] = []
    try:
        async for event in stream:
            if isinstance(event, Delta):
                parts.append(event.text)
            elif isinstance(event, Failed):
                raise APIError(event.status, event.message, "generation_failed")
            else:
                done = event
    finally:
        watcher.cancel()
        stream.cancel()
    message = {"role": "assistant", "content": "".join(parts)}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": done.finish_reason}
    return {
        **meta,
        "object": "chat.completion",
        "system_fingerprint": None,
        "choices": [choice],
        "usage": _usage(done),
    }


async def _sse(stream, meta: dict[str, Any], include_usage: bool):
    """OpenAI's chunk sequence: role, content deltas, finish_reason, [usage], [DONE]."""

    def chunk(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> str:
        body: dict[str, Any] = {
            **meta,
            "object": "chat.completion.chunk",
            "system_fingerprint": None,
        }
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        body["choices"] = [choice] if delta is not None else []
        if include_usage:
            body["usage"] = usage
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        async for event in stream:
            if isinstance(event, Delta):
                if event.text:
                    yield chunk({"content": event.text})
            elif isinstance(event, Failed):
                err = error_body(event.status, event.message, "generation_failed")
                yield f"data: {json.dumps(err)}\n\n"
            else:
                yield chunk({}, event.finish_reason)
                if include_usage:
                    yield chunk(None, usage=_usage(event))
        yield "data: [DONE]\n\n"
    finally:
        stream.cancel()
