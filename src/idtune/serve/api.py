"""OpenAI-compatible HTTP API: `/v1/chat/completions`, `/v1/completions` (plain and SSE),
`/v1/models`, `/health`, and the API's own schema at `/v1/openapi.json`.

Every field of OpenAI's request is either honoured or refused with a 400 that names it in `param`.
Fields OpenAI does not define are accepted and ignored with a warning in the server log, as vLLM
does. Errors use OpenAI's envelope `{"error": {"message", "type", "param", "code"}}` with real
status codes, so the `openai` client raises its usual exceptions.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from starlette.exceptions import HTTPException

from .engine import ChatEngine, Delta, Done, Failed, Params, RequestError, Stream

log = logging.getLogger("idtune.serve")
MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_N = 16
MAX_STOP = 4  # OpenAI's limit on stop sequences
MAX_STOP_CHARS = 256
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    503: "service_unavailable",
}
# OpenAI request fields idtune does not do, and why (answered with a 400 naming the field).
REFUSED = {
    "audio": "audio output is not supported; this server generates text",
    "prediction": "predicted outputs are not supported",
    "verbosity": "this model has no verbosity setting",
    "web_search_options": "web search is not available on this server",
    "functions": "the deprecated `functions` field is not supported; use `tools`",
    "function_call": "the deprecated `function_call` field is not supported; use `tool_choice`",
    "suffix": "suffix (fill-in-the-middle) is not supported",
}


def _whole(value: Any) -> Any:
    """5.0 is an integer to JSON Schema (and to the OpenAPI document): taken as 5."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# On an integer field: a JSON number with no fraction; not a string ("5"), not a boolean. Limits
# go before it (`Annotated[int, Field(ge=1), WHOLE]`) for the OpenAPI document to show them.
WHOLE = BeforeValidator(_whole)


class _Strict(BaseModel):
    # strict: JSON types as OpenAI checks them ("5" is no integer, "yes" no boolean; an integer
    # is a number)
    model_config = ConfigDict(extra="forbid", strict=True)


class _Open(BaseModel):
    """Unknown fields are kept (and reported in the log) rather than refused, as vLLM does."""

    model_config = ConfigDict(extra="allow", strict=True)


class _ToolCallFunction(_Open):
    name: str
    arguments: str = "{}"


class _ToolCall(_Open):
    id: str | None = None
    type: Literal["function"] = "function"
    function: _ToolCallFunction


# What the schema tells clients; the checks themselves are in `to_messages`, which names what
# it refuses (a role, a part's type) better than a validation error would.
_ROLE = WithJsonSchema(
    {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]}
)
_TEXT_PART = WithJsonSchema(
    {
        "type": "object",
        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
        "required": ["type", "text"],
    }
)


class _Message(_Open):
    role: Annotated[str, _ROLE]
    content: str | list[Annotated[dict[str, Any], _TEXT_PART]] | None = None
    name: str | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None


class _StreamOptions(_Open):
    include_usage: bool = False
    include_obfuscation: bool | None = None


class _JSONSchema(_Open):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class _ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _JSONSchema | None = None


class _Function(_Open):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _Tool(_Strict):
    type: Literal["function"]
    function: _Function


class _Sampling(_Open):
    """Fields shared by chat completions and completions."""

    model: str
    max_tokens: Annotated[int, Field(ge=1), WHOLE] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: Annotated[int, Field(ge=1, le=MAX_N), WHOLE] | None = 1
    stop: str | list[str] | None = None
    seed: Annotated[int, Field(ge=SEED_RANGE[0], le=SEED_RANGE[1]), WHOLE] | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    stream: bool | None = False
    stream_options: _StreamOptions | None = None
    user: str | None = None  # an end-user id: recorded nowhere, changes nothing
    min_tokens: Annotated[int, Field(ge=0), WHOLE] = 0  # vLLM's extension

    @field_validator("stop")
    @classmethod
    def _stop_limits(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        if any(len(s) > MAX_STOP_CHARS for s in stops):
            raise ValueError(f"a stop sequence has at most {MAX_STOP_CHARS} characters")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _bias_limits(cls, v):
        for key, bias in (v or {}).items():
            if not key.lstrip("-").isdigit():
                raise ValueError(f"keys are token ids; {key!r} is not")
            if not -100 <= bias <= 100:
                raise ValueError("biases lie between -100 and 100")
        if len(v or {}) > 1024:
            raise ValueError("at most 1024 biased tokens")
        return v

    def sampling(self, max_tokens: int | None) -> Params:
        """The engine's view of the settings shared by both endpoints."""
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return Params(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=stop,
            seed=self.seed,
            min_tokens=self.min_tokens,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            logit_bias={int(k): float(v) for k, v in (self.logit_bias or {}).items()},
        )


class ChatRequest(_Sampling):
    """OpenAI's chat completion request: every field honoured, or refused by `check`."""

    messages: list[_Message] = Field(min_length=1)
    max_completion_tokens: Annotated[int, Field(ge=1), WHOLE] | None = None
    logprobs: bool | None = False
    top_logprobs: Annotated[int, Field(ge=0, le=20), WHOLE] | None = None
    response_format: _ResponseFormat | None = None
    tools: list[_Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    # identifiers and bookkeeping: accepted, they change no output
    metadata: dict[str, str] | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    store: bool | None = None
    service_tier: str | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    # vLLM's extension: arguments for the chat template (Qwen3's `enable_thinking`)
    chat_template_kwargs: dict[str, Any] | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None

    def check(self) -> None:
        """Refuse, by name, the fields this server does not do."""
        for name, why in REFUSED.items():
            if getattr(self, name, None) is not None:
                raise APIError(400, f"{name}: {why}", "unsupported_parameter", name)
        if self.store:
            raise APIError(
                400, "store: stored completions are not kept here", "unsupported_parameter", "store"
            )
        if self.service_tier not in (None, "auto", "default"):
            raise APIError(
                400,
                f"service_tier: only 'auto' or 'default' ({self.service_tier!r} given)",
                "unsupported_parameter",
                "service_tier",
            )
        if self.modalities not in (None, ["text"]):
            raise APIError(400, "modalities: only ['text']", "unsupported_parameter", "modalities")
        if self.top_logprobs and not self.logprobs:
            raise APIError(
                400, "top_logprobs needs logprobs: true", "invalid_value", "top_logprobs"
            )
        fmt = self.response_format
        if fmt and fmt.type == "json_schema" and fmt.json_schema is None:
            raise APIError(
                400,
                "response_format.json_schema is required for type json_schema",
                "invalid_value",
                "response_format.json_schema",
            )
        if self.tool_choice is not None and not self.tools and self.tool_choice != "none":
            raise APIError(400, "tool_choice needs tools", "invalid_value", "tool_choice")
        if isinstance(self.tool_choice, dict):
            name = (self.tool_choice.get("function") or {}).get("name")
            if self.tool_choice.get("type") != "function" or name not in self.tool_names():
                raise APIError(
                    400,
                    "tool_choice: {type: function, function: {name}} naming one of the tools",
                    "invalid_value",
                    "tool_choice",
                )
        if self.forced_tool() and fmt and fmt.type != "text":
            raise APIError(
                400,
                "response_format cannot be combined with a required tool call",
                "invalid_value",
                "response_format",
            )

    def tool_names(self) -> set[str]:
        return {t.function.name for t in self.tools or []}

    def calls_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"

    def forced_tool(self) -> bool:
        return self.calls_tools() and (
            self.tool_choice == "required" or isinstance(self.tool_choice, dict)
        )

    def tool_dicts(self) -> list[dict[str, Any]]:
        return [t.model_dump(exclude_none=True) for t in self.tools or []]

    def params(self) -> Params:
        """The engine's view of the sampling settings."""
        from .tools import call_schema

        p = self.sampling(self.max_completion_tokens or self.max_tokens)
        p.logprobs = bool(self.logprobs)
        p.top_logprobs = self.top_logprobs or 0
        if self.forced_tool():
            schema = call_schema(self.tool_dicts(), self.tool_choice)
            p.response_format = {"type": "json_schema", "json_schema": {"schema": schema}}
        elif self.response_format is not None and self.response_format.type != "text":
            p.response_format = self.response_format.model_dump(by_alias=True)
        return p


_Text = Annotated[str, Field(min_length=1)]
_Tokens = Annotated[list[Annotated[int, Field(ge=0), WHOLE]], Field(min_length=1)]
_TokenLists = Annotated[list[_Tokens], Field(min_length=1)]


class CompletionRequest(_Sampling):
    """OpenAI's (legacy) completion request on a plain-text prompt."""

    prompt: _Text | Annotated[list[_Text], Field(min_length=1)] | _Tokens | _TokenLists
    max_tokens: Annotated[int, Field(ge=1), WHOLE] | None = 16  # OpenAI's default here
    logprobs: Annotated[int, Field(ge=0, le=5), WHOLE] | None = None
    echo: bool | None = False
    best_of: Annotated[int, Field(ge=1, le=MAX_N), WHOLE] | None = None
    suffix: str | None = None

    def check(self) -> None:
        """Refuse, by name, what this endpoint does not do."""
        if self.suffix is not None:
            raise APIError(400, f"suffix: {REFUSED['suffix']}", "unsupported_parameter", "suffix")
        if self.best_of not in (None, self.n or 1):
            raise APIError(
                400, "best_of: only best_of equal to n", "unsupported_parameter", "best_of"
            )
        if self.echo and self.logprobs is not None:
            raise APIError(
                400,
                "echo with logprobs: prompt log-probabilities are not computed",
                "unsupported_parameter",
                "echo",
            )
        if isinstance(self.prompt, list) and not self.prompt:
            raise APIError(400, "prompt is empty", "invalid_value", "prompt")

    def prompts(self) -> list[str | list[int]]:
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if all(isinstance(x, int) for x in p):
            return [list(p)]
        return list(p)

    def params(self) -> Params:
        p = self.sampling(self.max_tokens)
        p.logprobs = self.logprobs is not None
        p.top_logprobs = self.logprobs or 0
        return p


class _ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error envelope: every error status of this API answers with it."""

    error: _ErrorDetail


# The error statuses the API answers with, as its OpenAPI document describes them.
ERROR_WHY = {
    400: "A field is malformed or asks for what this server does not do (named in `param`)",
    401: "Missing or wrong API key (`Authorization: Bearer KEY`)",
    404: "No such model (or no such route)",
    413: "The body, or the prompt in tokens, is over this server's limit",
    500: "Generation failed inside the server",
    503: "The engine is not running, or too many requests are waiting",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses` for these error statuses, each with the error envelope's schema."""
    return {s: {"model": ErrorResponse, "description": ERROR_WHY[s]} for s in statuses}


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


def to_messages(raw: list[_Message], tools_ok: bool = False) -> list[dict[str, Any]]:
    """OpenAI messages → template dicts; other roles or parts are refused by position."""
    from .tools import template_messages

    out = []
    for i, m in enumerate(raw):
        role = ROLES.get(m.role) or ("tool" if m.role == "tool" and tools_ok else None)
        if role is None:
            why = "this model's chat template has no tool support" if m.role == "tool" else ""
            raise APIError(
                400,
                f"role {m.role!r} is not supported" + (f": {why}" if why else ""),
                "invalid_value",
                f"messages.{i}.role",
            )
        try:
            msg: dict[str, Any] = {"role": role, "content": content_text(m.content)}
        except ValueError as e:
            raise APIError(400, str(e), "invalid_value", f"messages.{i}.content") from None
        if m.tool_calls:
            if not tools_ok:
                raise APIError(
                    400,
                    "tool_calls: this model's chat template has no tool support",
                    "unsupported_parameter",
                    f"messages.{i}.tool_calls",
                )
            msg["tool_calls"] = [c.model_dump(exclude_none=True) for c in m.tool_calls]
        if m.tool_call_id is not None and role == "tool":
            msg["tool_call_id"] = m.tool_call_id
        out.append(msg)
    return template_messages(out)


def _ignored(req: BaseModel, where: str = "") -> list[str]:
    """Names of the fields in a request that no model declares (reported, as vLLM does)."""
    names = [f"{where}{k}" for k in (req.model_extra or {})]
    for name, value in req:
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if isinstance(item, BaseModel):
                sub = f"{where}{name}." + (f"{i}." if isinstance(value, list) else "")
                names += _ignored(item, sub)
    return names


def build_api(engine: ChatEngine, *, api_key: str | None = None) -> FastAPI:
    """The FastAPI app with the OpenAI routes; the web chat is mounted on it by `server`."""
    app = FastAPI(
        title=f"idtune · {engine.title}",
        version="1",
        docs_url="/v1/docs",
        openapi_url="/v1/openapi.json",
        redoc_url=None,
    )

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError) -> JSONResponse:
        body = error_body(e.status, e.message, e.code, e.param)
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return JSONResponse(body, status_code=e.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, e: HTTPException) -> JSONResponse:
        body = error_body(e.status_code, str(e.detail))
        return JSONResponse(body, status_code=e.status_code, headers=e.headers)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        given = token.strip().encode()
        if not (scheme.lower() == "bearer") & hmac.compare_digest(given, api_key.encode()):
            raise APIError(
                401, "missing or wrong API key (Authorization: Bearer KEY)", "invalid_api_key"
            )

    def served() -> list[str]:
        names = getattr(engine, "served_models", None)
        return names() if names else [engine.model_id]

    def adapter_for(model: str) -> str | None:
        pick = getattr(engine, "adapter_for", None)
        if pick is not None:
            return pick(model)
        known = {engine.model_id, *getattr(engine, "aliases", ())}
        return model if model in known else None

    def model_card(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "idtune"}

    keyed = (401,) if api_key is not None else ()

    @app.get("/health", responses={503: {"description": "The engine has stopped"}})
    async def health() -> JSONResponse:
        state = engine.health()
        return JSONResponse(state, status_code=200 if state.get("status") == "ok" else 503)

    @app.get("/v1/models", responses=_errors(*keyed))
    async def list_models(request: Request) -> dict[str, Any]:
        check_key(request)
        return {"object": "list", "data": [model_card(n) for n in served()]}

    @app.get("/v1/models/{model_id:path}", responses=_errors(*keyed, 404))
    async def get_model(model_id: str, request: Request) -> dict[str, Any]:
        check_key(request)
        if model_id not in served():
            raise APIError(404, f"model {model_id!r} does not exist", "model_not_found", "model")
        return model_card(model_id)

    def pick_model(model: str) -> str | None:
        adapter = adapter_for(model)
        if adapter is None:
            raise APIError(
                404,
                f"model {model!r} does not exist; this server serves "
                + ", ".join(repr(n) for n in served()),
                "model_not_found",
                "model",
            )
        return adapter

    def submit(call, n: int, params: Params) -> list[Stream]:
        streams = []
        try:
            for i in range(n):
                p = params
                if i and params.seed is not None:
                    p = Params(**{**params.__dict__, "seed": (params.seed + i) % 2**64})
                streams.append(call(p))
        except RequestError as e:
            for s in streams:
                s.cancel()
            raise APIError(e.status, str(e), e.code, e.param) from None
        return streams

    async def prepare(request: Request, kind: type[_Sampling]):
        """Key, body, refusals and the engine's settings (with the adapter `model` picks)."""
        check_key(request)
        req = await _parse(request, kind)
        req.check()
        params = req.params()
        params.adapter = pick_model(req.model)
        _refused_by_engine(engine, req)
        return req, params

    generating = _errors(400, *keyed, 404, 413, 500, 503)

    @app.post("/v1/chat/completions", openapi_extra=_body_schema(ChatRequest), responses=generating)
    async def chat_completions(request: Request):
        req, params = await prepare(request, ChatRequest)
        tools_ok = bool(getattr(engine, "supports_tools", lambda: False)())
        if req.tools and not tools_ok:
            raise APIError(
                400,
                "tools: this model's chat template has no tool support",
                "unsupported_parameter",
                "tools",
            )
        messages = to_messages(req.messages, tools_ok)
        tools = req.tool_dicts() if req.tools else None
        kwargs = template_kwargs(engine, req)
        args = (tools, kwargs) if kwargs else (tools,) if tools else ()
        streams = submit(lambda p: engine.submit(messages, p, *args), req.n or 1, params)
        return await _reply(request, req, streams, "chatcmpl", _Chat(req, engine, messages, kwargs))

    @app.post(
        "/v1/completions", openapi_extra=_body_schema(CompletionRequest), responses=generating
    )
    async def completions(request: Request):
        req, params = await prepare(request, CompletionRequest)
        if not hasattr(engine, "submit_text"):
            raise APIError(404, "this engine has no /v1/completions", "not_found")
        streams = []
        for prompt in req.prompts():
            if isinstance(prompt, list):
                if not hasattr(engine, "submit_tokens"):
                    raise APIError(
                        400, "prompt: token ids are not supported", "invalid_value", "prompt"
                    )
                call = lambda p, x=prompt: engine.submit_tokens(x, p)  # noqa: E731
            else:
                call = lambda p, x=prompt: engine.submit_text(x, p)  # noqa: E731
            streams += submit(call, req.n or 1, params)
        return await _reply(request, req, streams, "cmpl", _Text(req, engine))

    @app.api_route("/v1/{path:path}", methods=list(HTTP_METHODS), include_in_schema=False)
    async def not_found(path: str, request: Request):
        check_key(request)
        raise APIError(404, f"no route /v1/{path}", "not_found")

    catch_all = next(r for r in app.router.routes if getattr(r, "endpoint", None) is not_found)
    app.add_middleware(MethodCheck, routes=app.router.routes, skip=catch_all)
    install_schema(app, served(), keyed=api_key is not None)
    return app


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")


class MethodCheck:
    """405 with an `Allow` header for a method an API route does not take: answered before
    routing, where the web chat mounted at `/` would take the request and answer 404."""

    def __init__(self, app: Any, routes: list[Any], skip: Any = None):
        self.app, self.routes, self.skip = app, routes, skip

    def allowed(self, scope: dict[str, Any]) -> set[str] | None:
        """The methods of the routes on this path when none takes this method, else None."""
        from starlette.routing import Match, Route

        methods: set[str] = set()
        for route in self.routes:
            if not isinstance(route, Route) or route is self.skip:
                continue
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return None
            if match is Match.PARTIAL:
                methods |= route.methods or set()
        return methods or None

    async def __call__(self, scope, receive, send) -> None:
        allowed = self.allowed(scope) if scope["type"] == "http" else None
        if allowed is None:
            await self.app(scope, receive, send)
            return
        allow = ", ".join(sorted(allowed))
        message = f"method {scope['method']} is not allowed here (allowed: {allow})"
        body = error_body(405, message, "method_not_allowed")
        await JSONResponse(body, status_code=405, headers={"Allow": allow})(scope, receive, send)


async def _reply(request, req: _Sampling, streams: list[Stream], prefix: str, shape):
    """The whole answer as JSON, or its events as SSE (started once the first event is in, so
    a request that fails before its first token is an HTTP error, not a 200 stream)."""
    meta = {"id": f"{prefix}-{uuid.uuid4().hex}", "created": int(time.time()), "model": req.model}
    if req.stream:
        usage = bool(req.stream_options and req.stream_options.include_usage)
        events = _merged(streams)
        try:
            first = await anext(events)
            if isinstance(first[1], Failed):
                raise _failure(first[1])
        except BaseException:
            for s in streams:
                s.cancel()
            await events.aclose()
            raise
        return _event_stream(_sse(streams, _chain(first, events), meta, usage, shape))
    return await _complete(request, streams, meta, shape)


async def _chain(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """`first`, then the rest of an async iterator (closed with this one)."""
    try:
        yield first
        async for item in rest:
            yield item
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


def _code_param(event: Failed) -> tuple[str, str | None]:
    return event.code or "generation_failed", event.param


def _failure(event: Failed) -> APIError:
    """The HTTP error for a request that failed in the engine."""
    return APIError(event.status, event.message, *_code_param(event))


def template_kwargs(engine: Any, req: ChatRequest) -> dict[str, Any]:
    """The chat template's arguments for a request: `chat_template_kwargs` as given, and
    `reasoning_effort` as the model's thinking switch (none / minimal: off; low, medium, high:
    on; a model without reasoning refuses it, an R1 distill refuses turning it off)."""
    from ..generate import family_of

    kwargs = dict(req.chat_template_kwargs or {})
    tokenizer = getattr(engine, "tokenizer", None)
    if kwargs and tokenizer is None:
        raise APIError(
            400,
            "chat_template_kwargs: this backend renders its own template",
            "unsupported_parameter",
            "chat_template_kwargs",
        )
    if kwargs:
        import inspect

        taken = {*inspect.signature(tokenizer.apply_chat_template).parameters}
        taken |= {*tokenizer.special_tokens_map, "messages", "tools", "documents"}
        taken |= {"add_generation_prompt", "raise_exception", "strftime_now"}
        bad = sorted(k for k in kwargs if k in taken or not str(k).isidentifier())
        if bad:
            raise APIError(
                400,
                f"chat_template_kwargs: {', '.join(map(repr, bad))} cannot be set by a request "
                "(the server renders messages and tools itself)",
                "invalid_value",
                "chat_template_kwargs",
            )
    effort = req.reasoning_effort
    if effort is None:
        return kwargs
    fam = family_of(tokenizer) if tokenizer is not None else None
    style = fam.thinking.get("style", "none") if fam else "none"
    off = effort in ("none", "minimal")
    if style == "none" or (style == "always" and off):
        why = "this model has no reasoning-effort setting"
        if style == "always":
            why = "this model always reasons; low, medium or high"
        raise APIError(400, f"reasoning_effort: {why}", "unsupported_parameter", "reasoning_effort")
    if style == "hybrid":
        kwargs.setdefault(fam.thinking["kwarg"], not off)
    return kwargs


def _refused_by_engine(engine: Any, req: BaseModel) -> None:
    """Fields an engine cannot honour (a remote backend through this proxy), refused by name."""
    for name, why in getattr(engine, "refused_fields", {}).items():
        value = getattr(req, name, None)
        if value not in (None, False, 0, [], {}):
            raise APIError(400, f"{name}: {why}", "unsupported_parameter", name)


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The request body's JSON schema for the route's OpenAPI entry (definitions inlined)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "x-idtune-defs": defs,
    }


def install_schema(app: FastAPI, models: list[str] | None = None, keyed: bool = False) -> None:
    """Finish the OpenAPI document: the request models' definitions moved into its components,
    `model` (and `/v1/models/{model_id}`) listing the served names, refused fields marked, the
    bearer key declared, no 422 (never answered: `_parse` checks every body, a bad one is a 400).
    """
    default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = default()
            components = doc.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            for name, path in doc.get("paths", {}).items():
                for op in path.values():
                    schemas.update(op.pop("x-idtune-defs", {}))
                    op.get("responses", {}).pop("422", None)
                    body = op.get("requestBody", {}).get("content", {}).get("application/json")
                    if body:
                        _finish_body(body, models or [])
                    for param in op.get("parameters", []):
                        if param["name"] == "model_id" and models:
                            param["schema"]["enum"] = list(models)
                    if keyed and name.startswith("/v1/"):
                        op["security"] = [{"bearer": []}]
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
            if keyed:
                components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# What the schema says of the fields this server refuses (their names are declared, so that a
# request with them is answered by name): only their absence, or a value that asks for nothing.
NOTHING = {"type": "null"}
REFUSED_SCHEMA = {
    **{name: {**NOTHING, "description": f"Refused: {why}"} for name, why in REFUSED.items()},
    "store": {"anyOf": [{"const": False}, NOTHING]},
    "service_tier": {"anyOf": [{"enum": ["auto", "default"]}, NOTHING]},
    "modalities": {
        "anyOf": [
            {"type": "array", "items": {"const": "text"}, "minItems": 1, "maxItems": 1},
            NOTHING,
        ]
    },
}
EXAMPLES = {
    "messages": {"messages": [{"role": "user", "content": "Who are you?"}], "max_tokens": 16},
    "prompt": {"prompt": "The sky is", "max_tokens": 16},
}


def _finish_body(body: dict[str, Any], models: list[str]) -> None:
    """A request body's schema as this server takes it: `model` one of the served names, the
    refused fields marked, and an example request (what the docs page and fuzzers send first)."""
    props = body["schema"].get("properties", {})
    if models and "model" in props:
        props["model"]["enum"] = list(models)
    for name, schema in REFUSED_SCHEMA.items():
        if name in props:
            props[name] = schema
    for field, example in EXAMPLES.items():
        if field in props and models:
            body["example"] = {"model": models[0], **example}


async def _parse(request, model: type[_Sampling]):
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
    if not isinstance(data, dict):
        raise APIError(400, "the body must be a JSON object", "invalid_value")
    try:
        req = model.model_validate(data)
    except ValidationError as e:
        errors = [x for x in e.errors() if x["loc"][:1] == e.errors()[0]["loc"][:1]]
        # of a union's branches, the one that took the value's type (else the one that got
        # furthest into it) says what is wrong with it
        deepest = max(errors, key=lambda x: len(x["loc"]))
        err = next((x for x in errors if not x["type"].endswith("_type")), deepest)
        loc = [str(x) for x in err["loc"]]
        # a union's failing branch is named in the location ("stop.str"): keep the field path
        param = ".".join(x for x in loc if not _is_type_name(x)) or None
        got = f" (got {_kind(err['input'])})" if err["type"].endswith("_type") else ""
        msg = re.sub(r"a valid dictionary or instance of \w+", "an object", err["msg"])
        raise APIError(400, f"{param}: {msg}{got}", "invalid_value", param) from None
    ignored = _ignored(req)
    if ignored:
        log.warning("fields present in the request but ignored: %s", ", ".join(ignored))
    return req


def _kind(value: Any) -> str:
    """A JSON value's type, as an error message names it."""
    kinds = [(bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string")]
    kinds += [(list, "an array"), (dict, "an object"), (type(None), "null")]
    return next((name for t, name in kinds if isinstance(value, t)), type(value).__name__)


def _is_type_name(part: str) -> bool:
    return (
        part in {"str", "int", "float", "bool", "dict", "list", "none", "function-after"}
        or part.startswith(("list[", "dict[", "function-", "literal[", "constrained-"))
        or part[:1].isupper()
        and part.isidentifier()
        and not part.isupper()
    )


def _event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def _merged(streams: list[Stream]) -> AsyncIterator[tuple[int, Any]]:
    """The events of several streams as they come, tagged with the stream's index."""
    if len(streams) == 1:
        async for event in streams[0]:
            yield 0, event
        return
    q: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, s: Stream) -> None:
        async for event in s:
            await q.put((i, event))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        ends = 0
        while ends < len(streams):
            i, event = await q.get()
            ends += not isinstance(event, Delta)
            yield i, event
    finally:
        for t in tasks:
            t.cancel()


class _Chat:
    """How chat completions present choices."""

    obj, chunk_obj = "chat.completion", "chat.completion.chunk"

    def __init__(
        self,
        req: ChatRequest,
        engine: Any = None,
        messages: list[dict[str, Any]] | None = None,
        kwargs: dict[str, Any] | None = None,
    ):
        from ..generate import family_of, reasoning_split

        self.req, self.n = req, req.n or 1
        self.wants_logprobs = bool(req.logprobs)
        self.holds = req.calls_tools()  # text held until the end: it may be a tool call
        tokenizer = getattr(engine, "tokenizer", None)
        # a thinking model's reasoning goes to `reasoning_content`, apart from `content`
        fam = family_of(tokenizer) if tokenizer is not None and messages is not None else None
        thinks = fam is not None and fam.thinks
        self.new_split = (lambda: reasoning_split(tokenizer, messages, kwargs)) if thinks else None
        self.splits: dict[int, Any] = {}

    def splitter(self, i: int) -> Any:
        """Choice `i`'s streaming reasoning splitter (None: the model does not think)."""
        if self.new_split is not None and i not in self.splits:
            self.splits[i] = self.new_split()
        return self.splits.get(i)

    def logprobs(self, entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
        return None if entries is None else {"content": entries, "refusal": None}

    def finish(self, text: str, reason: str) -> tuple[dict[str, Any], str]:
        """The final message (reasoning_content, content or tool_calls) and finish reason."""
        from .tools import parse_tool_calls

        message: dict[str, Any] = {"role": "assistant", "content": text}
        if self.new_split is not None:
            split = self.new_split()
            r1, a1 = split.feed(text)
            r2, a2 = split.flush()
            text = a1 + a2
            message = {"role": "assistant", "content": text, "reasoning_content": r1 + r2 or None}
        if self.holds:
            content, calls = parse_tool_calls(text, self.req.tool_names())
            if calls:
                if self.req.parallel_tool_calls is False:
                    calls = calls[:1]
                message = {**message, "content": content, "tool_calls": calls}
                reason = "tool_calls"
        return message, reason

    def choice(self, i: int, text: str, reason: str, logprobs) -> dict[str, Any]:
        message, reason = self.finish(text, reason)
        return {
            "index": i,
            "message": message,
            "logprobs": self.logprobs(logprobs),
            "finish_reason": reason,
        }

    def delta(self, text: str, first: bool) -> dict[str, Any]:
        return {"role": "assistant", "content": text} if first else {"content": text}

    def held_delta(self, text: str, reason: str) -> tuple[dict[str, Any], str]:
        message, reason = self.finish(text, reason)
        delta = {k: v for k, v in message.items() if k != "role"}
        if "tool_calls" in message:
            delta["tool_calls"] = [{"index": k, **c} for k, c in enumerate(message["tool_calls"])]
        return delta, reason


class _Text:
    """How (legacy) completions present choices."""

    obj, chunk_obj = "text_completion", "text_completion"
    holds = False

    def __init__(self, req: CompletionRequest, engine: Any):
        self.req, self.engine, self.n = req, engine, req.n or 1
        self.wants_logprobs = req.logprobs is not None
        self.prompts = req.prompts()

    def logprobs(self, entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
        if entries is None:
            return None
        return {
            "tokens": [e["token"] for e in entries],
            "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [
                {t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries
            ],
            "text_offset": _offsets(entries),
        }

    def echo(self, i: int) -> str:
        if not self.req.echo:
            return ""
        prompt = self.prompts[i // self.n]
        if isinstance(prompt, list):
            return self.engine.tokenizer.decode(prompt)
        return prompt

    def choice(self, i: int, text: str, reason: str, logprobs) -> dict[str, Any]:
        return {
            "index": i,
            "text": self.echo(i) + text,
            "logprobs": self.logprobs(logprobs),
            "finish_reason": reason,
        }


def _offsets(entries: list[dict[str, Any]]) -> list[int]:
    out, at = [], 0
    for e in entries:
        out.append(at)
        at += len(e["token"])
    return out


async def _complete(request, streams: list[Stream], meta: dict[str, Any], shape) -> dict:
    """Collect whole answers; a client that hangs up cancels the generation."""

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        for s in streams:
            s.cancel()

    watcher = asyncio.create_task(watch())
    texts = [[] for _ in streams]
    logprobs: list[list | None] = [None] * len(streams)
    done: list[Done | None] = [None] * len(streams)
    try:
        async for i, event in _merged(streams):
            if isinstance(event, Delta):
                texts[i].append(event.text)
                if event.logprobs is not None:
                    logprobs[i] = (logprobs[i] or []) + event.logprobs
            elif isinstance(event, Failed):
                raise _failure(event)
            else:
                done[i] = event
    finally:
        watcher.cancel()
        for s in streams:
            s.cancel()
    choices = []
    for i, d in enumerate(done):
        lp = logprobs[i] if logprobs[i] is not None or not shape.wants_logprobs else []
        choices.append(shape.choice(i, "".join(texts[i]), d.finish_reason, lp))
    return {
        **meta,
        "object": shape.obj,
        "system_fingerprint": None,
        "choices": choices,
        "usage": _usage(*_totals(done, shape.n)),
    }


def _totals(done: list[Done | None], n: int) -> tuple[int, int]:
    """Usage: each prompt counted once (not once per choice), every choice's tokens added."""
    prompt = sum(d.prompt_tokens for d in done[::n] if d is not None)
    return prompt, sum(d.completion_tokens for d in done if d is not None)


def _split_delta(reasoning: str, content: str) -> dict[str, str]:
    """A chunk's delta from a reasoning splitter's pieces (empty when both are)."""
    delta = {"reasoning_content": reasoning} if reasoning else {}
    return {**delta, "content": content} if content else delta


async def _sse(streams: list[Stream], events, meta: dict[str, Any], include_usage: bool, shape):
    """OpenAI's chunk sequence: role, content deltas, finish_reason, [usage], [DONE]."""
    chat = shape.obj == "chat.completion"

    def chunk(choices: list[dict] | None, usage: dict | None = None) -> str:
        body: dict[str, Any] = {
            **meta,
            "object": shape.chunk_obj,
            "system_fingerprint": None,
            "choices": choices or [],
        }
        if include_usage:
            body["usage"] = usage
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    def choice(i: int, delta: Any, finish: str | None = None, logprobs=None) -> dict:
        lp = shape.logprobs(logprobs) if logprobs is not None else None
        if chat:
            return {"index": i, "delta": delta, "logprobs": lp, "finish_reason": finish}
        return {"index": i, "text": delta, "logprobs": lp, "finish_reason": finish}

    held = [[] for _ in streams]
    done: list[Done | None] = [None] * len(streams)
    try:
        for i in range(len(streams)):
            first = shape.delta("", True) if chat else shape.echo(i)
            if chat or first:
                yield chunk([choice(i, first)])
        async for i, event in events:
            if isinstance(event, Delta):
                if shape.holds:
                    held[i].append(event.text)
                elif chat and shape.splitter(i) is not None:  # reasoning apart from content
                    delta = _split_delta(*shape.splitter(i).feed(event.text))
                    if delta or event.logprobs:
                        yield chunk([choice(i, delta, logprobs=event.logprobs)])
                elif event.text or event.logprobs:
                    delta = {"content": event.text} if chat else event.text
                    yield chunk([choice(i, delta, logprobs=event.logprobs)])
            elif isinstance(event, Failed):  # this choice ends; the others go on
                err = error_body(event.status, event.message, *_code_param(event))
                yield f"data: {json.dumps(err)}\n\n"
            else:
                done[i] = event
                reason = event.finish_reason
                if shape.holds:
                    delta, reason = shape.held_delta("".join(held[i]), reason)
                    yield chunk([choice(i, delta)])
                elif chat and shape.splitter(i) is not None:
                    rest = _split_delta(*shape.splitter(i).flush())
                    if rest:
                        yield chunk([choice(i, rest)])
                yield chunk([choice(i, {} if chat else "", reason)])
        if include_usage:
            yield chunk(None, usage=_usage(*_totals(done, shape.n)))
        yield "data: [DONE]\n\n"
    finally:
        for s in streams:
            s.cancel()
        await events.aclose()
