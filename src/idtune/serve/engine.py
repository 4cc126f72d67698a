"""One model, many clients: a continuous-batching generation loop shared by the API and the UI.

A background thread owns the model. Each step spends a token budget on prefill (short prompts
first, batched; a long prompt in chunks of its own, so it never stalls the others), then runs one
decode step for every group of running sequences. Sequences of similar length share a group (one
left-padded KV cache), so one long prompt does not pad every short one to its length; the tokens
held in flight are capped. Each row samples with its own settings (temperature, top-p, penalties,
logit bias, a grammar, its adapter); an error in one row ends that request only. Clients read
their tokens from a `Stream`, from a thread or from asyncio; `Stream.cancel()` (a closed
connection) frees the row at the next step.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

Messages = list[dict[str, Any]]
GREEDY_BELOW = 1e-5  # temperatures under this are greedy (vLLM's epsilon): no 1/T overflow
BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch


@dataclass
class Params:
    """Per-request sampling settings; None means the engine's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    min_tokens: int = 0  # vLLM's extension: suppress end-of-turn before this many tokens
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = 0
    response_format: dict[str, Any] | None = None  # OpenAI's json_object / json_schema
    adapter: str | None = None  # which served adapter; None: the engine's default model


@dataclass
class Delta:
    """A piece of the answer's text (with the log-probabilities of its tokens when asked)."""

    text: str
    logprobs: list[dict[str, Any]] | None = None


@dataclass
class Done:
    """The answer ended: `stop` (end of turn or stop string), `length`, or `cancelled`."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Failed:
    """Generation failed; `status` is the HTTP code to report (400 with the OpenAI `code` and
    `param` when the request's own settings could not be followed, e.g. a grammar dead end)."""

    message: str
    status: int = 500
    code: str | None = None
    param: str | None = None


Event = Delta | Done | Failed


class RequestError(Exception):
    """A request the engine refuses; carries the HTTP status, OpenAI error code and param."""

    def __init__(self, message: str, status: int = 400, code: str | None = None, param=None):
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


class Stream:
    """The events of one request, readable from a thread (`for`) or asyncio (`async for`)."""

    def __init__(self, prompt_tokens: int = 0, on_cancel: Callable[[], None] | None = None):
        self.prompt_tokens = prompt_tokens
        self.cancelled = False
        self.on_cancel = on_cancel
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            self._aq: asyncio.Queue[Event] = asyncio.Queue()
        except RuntimeError:
            self._loop = None
            self._q: queue.SimpleQueue[Event] = queue.SimpleQueue()

    def put(self, event: Event) -> None:
        """Deliver an event (called from the engine's thread)."""
        if self._loop is None:
            self._q.put(event)
            return
        try:
            self._loop.call_soon_threadsafe(self._aq.put_nowait, event)
        except RuntimeError:  # the client's event loop is gone
            self.cancelled = True

    def cancel(self) -> None:
        """Stop generating for this request (the client went away)."""
        if not self.cancelled and self.on_cancel is not None:
            self.on_cancel()
        self.cancelled = True

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self._q.get()
            yield event
            if not isinstance(event, Delta):
                return

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            event = await self._aq.get()
            yield event
            if not isinstance(event, Delta):
                return


class ChatEngine(Protocol):
    """What the API and the UI need from an engine (local, remote, or scripted in tests)."""

    model_id: str
    title: str
    system: str | None

    def submit(
        self,
        messages: Messages,
        params: Params,
        tools: list | None = None,
        template_kwargs: dict | None = None,
    ) -> Stream: ...

    def health(self) -> dict[str, Any]: ...


@dataclass(eq=False)
class _Seq:
    """One request from admission to its last token."""

    stream: Stream
    prompt: list[int]
    budget: int
    params: Params
    temperature: float
    top_p: float
    min_tokens: int
    generator: Any
    adapter: str
    matcher: Any = None  # a grammar's token matcher (response_format)
    tokens: list[int] = field(default_factory=list)
    sent: int = 0  # characters of text already delivered
    logprobs: list[dict[str, Any]] = field(default_factory=list)  # not yet delivered
    filled: int = 0  # prompt tokens already in `cache` (chunked prefill)
    cache: Any = None  # its own KV cache while its prompt is prefilled in chunks

    @property
    def reserve(self) -> int:
        """Tokens of KV cache this request may come to hold."""
        return len(self.prompt) + self.budget


@dataclass(eq=False)
class _Group:
    """Running sequences of similar length sharing one left-padded KV cache."""

    rows: list[_Seq]
    cache: Any
    mask: Any  # (rows, width) 1 where the cache holds a real token
    pos: Any  # (rows,) position of each row's next token
    next: Any  # (rows,) the token each row feeds at the next step

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])


class Engine:
    """Continuous batching over a transformers (optionally PEFT-wrapped) causal LM."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_id: str,
        title: str | None = None,
        description: str | None = None,
        aliases: set[str] | None = None,
        system: str | None = None,
        systems: dict[str, str | None] | None = None,
        template: str | None = None,
        adapters: dict[str, str] | None = None,
        default_adapter: str | None = None,
        max_batch: int = 64,
        max_waiting: int = 256,
        max_prompt_tokens: int | None = None,
        max_tokens_limit: int = 4096,
        default_max_tokens: int = 512,
        step_tokens: int = 256,
        max_tokens_in_flight: int = 65536,
        temperature: float = 0.7,
        top_p: float = 0.9,
        min_tokens: int = 0,
    ):
        from ..generate import stop_token_ids

        self.model, self.tokenizer = model, tokenizer
        self.model_id, self.title, self.system = model_id, title or model_id, system
        self.description, self.aliases = description, aliases or set()
        self.adapters = dict(adapters or {})  # served model name → PEFT adapter name
        self.systems = dict(systems or {})  # PEFT adapter name → its run's system prompt
        self.default_adapter = default_adapter or BASE
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.context = int(getattr(model.config, "max_position_embeddings", 0) or 4096)
        self.max_prompt_tokens = min(max_prompt_tokens or self.context - 1, self.context - 1)
        self.max_tokens_limit, self.default_max_tokens = max_tokens_limit, default_max_tokens
        self.step_tokens = max(16, step_tokens)
        self.max_tokens_in_flight = max(max_tokens_in_flight, self.context)
        self.defaults = Params(temperature=temperature, top_p=top_p, min_tokens=min_tokens)
        self.stop_ids = stop_token_ids(tokenizer, template, model)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.stop_ids[0])
        self.device = next(model.parameters()).device
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.peft = hasattr(model, "get_base_model")
        self._active = model.active_adapter if self.peft else BASE
        base = model.get_base_model() if self.peft else model
        params = inspect.signature(base.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._grammars: Any = None
        self._lock = threading.Condition()
        self._waiting: deque[_Seq] = deque()
        self._prefilling: list[_Seq] = []
        self._groups: list[_Group] = []
        self._closed = False
        self.max_batch_seen = 0
        self.steps = 0
        self.generated_tokens = 0
        self.cancelled_requests = 0
        self.failed_requests = 0
        self._thread = threading.Thread(target=self._run, name="idtune-engine", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ client side
    @property
    def active(self) -> int:
        """Requests waiting or generating."""
        with self._lock:
            return len(self._waiting) + len(self._prefilling) + self._running()

    def _running(self) -> int:
        return sum(len(g.rows) for g in self._groups)

    def in_flight(self) -> int:
        """Tokens of KV cache reserved by the requests being prefilled or decoded."""
        seqs = [*self._prefilling, *(s for g in self._groups for s in g.rows)]
        return sum(s.reserve for s in seqs)

    def health(self) -> dict[str, Any]:
        """Liveness and load, for `/health`."""
        ok = self._thread.is_alive() and not self._closed
        return {
            "status": "ok" if ok else "stopped",
            "model": self.model_id,
            "active": self.active,
            "max_batch_seen": self.max_batch_seen,
        }

    def served_models(self) -> list[str]:
        """The names a client may send as `model`: the default one, then each adapter's."""
        return [self.model_id, *(n for n in self.adapters if n != self.model_id)]

    def adapter_for(self, model: str) -> str | None:
        """The adapter a request's `model` selects; None when this engine does not serve it."""
        if model in self.adapters:
            return self.adapters[model]
        if model == self.model_id or model in self.aliases:
            return self.default_adapter
        return None

    def supports_tools(self) -> bool:
        """Whether the chat template renders a `tools` list (a probe tool's name shows up)."""
        from .tools import template_renders_tools

        return template_renders_tools(self.tokenizer)

    def conversation(self, messages: Messages, adapter: str | None = None) -> Messages:
        """The conversation as the model sees it: the default system prompt (the adapter's
        run's, else the engine's) first when it has none."""
        from ..generate import with_system

        return with_system(messages, self.systems.get(adapter or "") or self.system)

    def encode(
        self,
        messages: Messages,
        tools: list | None = None,
        adapter: str | None = None,
        template_kwargs: dict | None = None,
    ) -> list[int]:
        """The prompt's token ids (`conversation`, chat-templated)."""
        from .tools import encode_chat

        convo = self.conversation(messages, adapter)
        return encode_chat(self.tokenizer, convo, tools, template_kwargs)

    def submit(
        self,
        messages: Messages,
        params: Params,
        tools: list | None = None,
        template_kwargs: dict | None = None,
    ) -> Stream:
        """Queue a conversation; raise `RequestError` for one that breaks the limits."""
        ids = self.encode(messages, tools, params.adapter, template_kwargs)
        return self.submit_tokens(ids, params)

    def submit_text(self, prompt: str, params: Params) -> Stream:
        """Queue a plain-text prompt (`/v1/completions`): no chat template."""
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if not ids:
            raise RequestError("the prompt is empty", 400, "invalid_value", "prompt")
        return self.submit_tokens(ids, params)

    def submit_tokens(self, prompt: list[int], params: Params) -> Stream:
        """Queue prompt token ids with their sampling settings."""
        import torch

        if self._closed or not self._thread.is_alive():
            raise RequestError("the engine is not running", 503, "engine_unavailable")
        # an empty prompt or an unknown token id would fail the whole batch's forward
        if not prompt:
            raise RequestError("the prompt is empty", 400, "invalid_value", "prompt")
        bad = [t for t in prompt if not 0 <= t < self.vocab_size]
        if bad:
            raise RequestError(
                f"prompt: token id {bad[0]} is outside this model's vocabulary "
                f"(0..{self.vocab_size - 1})",
                400,
                "invalid_value",
                "prompt",
            )
        if len(prompt) > self.max_prompt_tokens:
            raise RequestError(
                f"the prompt is {len(prompt)} tokens; this server accepts at most "
                f"{self.max_prompt_tokens}",
                413,
                "context_length_exceeded",
                "messages",
            )
        if params.max_tokens is not None and not 1 <= params.max_tokens <= self.max_tokens_limit:
            raise RequestError(
                f"max_tokens must be between 1 and {self.max_tokens_limit}",
                400,
                "invalid_value",
                "max_tokens",
            )
        bad = [t for t in params.logit_bias if not 0 <= t < self.vocab_size]
        if bad:
            raise RequestError(
                f"logit_bias: token id {bad[0]} is outside this model's vocabulary "
                f"(0..{self.vocab_size - 1})",
                400,
                "invalid_value",
                "logit_bias",
            )
        matcher = self._matcher(params.response_format)
        budget = min(params.max_tokens or self.default_max_tokens, self.context - len(prompt))
        gen = torch.Generator(device="cpu")
        if params.seed is not None:
            gen.manual_seed(params.seed % 2**64)
        else:
            gen.seed()
        temperature = (
            self.defaults.temperature if params.temperature is None else params.temperature
        )
        seq = _Seq(
            stream=Stream(len(prompt)),
            prompt=prompt,
            budget=budget,
            params=params,
            temperature=float(temperature or 0.0),
            top_p=float(self.defaults.top_p if params.top_p is None else params.top_p),
            min_tokens=min(max(params.min_tokens, self.defaults.min_tokens), budget),
            generator=gen,
            adapter=self.default_adapter if params.adapter is None else params.adapter,
            matcher=matcher,
        )
        with self._lock:
            if len(self._waiting) >= self.max_waiting:
                raise RequestError("the server is busy; retry later", 503, "server_busy")
            self._waiting.append(seq)
            self._lock.notify()
        return seq.stream

    def _matcher(self, response_format: dict[str, Any] | None) -> Any:
        if not response_format or response_format.get("type", "text") == "text":
            return None
        from .grammar import Grammars

        if self._grammars is None:
            self._grammars = Grammars(self.tokenizer, self.vocab_size, self.stop_ids)
        return self._grammars.matcher(response_format)

    def close(self) -> None:
        """Stop the loop; requests in flight end with an error."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(timeout=10)

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        import torch

        while True:
            with self._lock:
                while not self._closed and not self._waiting and not self._busy():
                    self._lock.wait()
                if self._closed:
                    break
                self._admit()
            try:
                with torch.inference_mode():
                    self._step()
            except Exception as e:  # a failed forward fails the requests it carried
                self._fail_all(f"generation failed: {type(e).__name__}: {e}")
        with self._lock:
            for s in [*self._all_seqs(), *self._waiting]:
                s.stream.put(Failed("the server is shutting down", 503))
            self._groups, self._prefilling, self._waiting = [], [], deque()

    def _busy(self) -> bool:
        return bool(self._prefilling or self._groups)

    def _all_seqs(self) -> list[_Seq]:
        return [*self._prefilling, *(s for g in self._groups for s in g.rows)]

    def _admit(self) -> None:
        """Move waiting requests to prefill while rows and tokens in flight allow (FIFO)."""
        rows = len(self._prefilling) + self._running()
        flight = self.in_flight()
        while self._waiting and rows < self.max_batch:
            s = self._waiting[0]
            if rows and flight + s.reserve > self.max_tokens_in_flight:
                break
            self._prefilling.append(self._waiting.popleft())
            rows, flight = rows + 1, flight + s.reserve

    def _fail_all(self, message: str) -> None:
        for s in self._all_seqs():
            self.failed_requests += 1
            s.stream.put(Failed(message))
        with self._lock:
            self._groups, self._prefilling = [], []

    def _step(self) -> None:
        self._prefilling = [s for s in self._prefilling if not self._drop_if_cancelled(s)]
        for g in self._groups:
            self._keep(g, [s for s in g.rows if not self._drop_if_cancelled(s)])
        self._prefill()
        for g in list(self._groups):
            self._decode(g)
        self._groups = [g for g in self._groups if g.rows]
        self.max_batch_seen = max(self.max_batch_seen, self._running())

    def _drop_if_cancelled(self, seq: _Seq) -> bool:
        cancelled = seq.stream.cancelled
        if cancelled:
            self.cancelled_requests += 1
            seq.stream.put(Done("cancelled", len(seq.prompt), len(seq.tokens)))
        return cancelled

    def _forward(self, ids, mask, positions, cache, adapters: list[str], last_only: bool):
        kwargs: dict[str, Any] = {self._cache_kw: cache}
        if last_only:
            kwargs["logits_to_keep"] = 1
        if set(adapters) != {self._active}:  # rows on different adapters: PEFT's mixed batch
            kwargs["adapter_names"] = adapters
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **kwargs
        )
        return out.logits[:, -1, :].float()

    # ------------------------------------------------------------------ prefill
    def _prefill(self) -> None:
        """Spend this step's token budget: whole short prompts first, then chunks of long ones."""
        budget = self.step_tokens
        fresh = sorted(
            (s for s in self._prefilling if s.cache is None), key=lambda s: len(s.prompt)
        )
        batch: list[_Seq] = []
        for s in fresh:
            if (len(batch) + 1) * len(s.prompt) > budget:
                break
            batch.append(s)
        if batch:
            budget -= len(batch) * len(batch[-1].prompt)
            self._prefill_whole(batch)
        chunked = [s for s in self._prefilling if s not in batch]
        if chunked and (budget >= self.step_tokens // 4 or not batch):
            self._prefill_chunk(chunked[0], max(budget, self.step_tokens // 4))

    def _prefill_whole(self, new: list[_Seq]) -> None:
        """One left-padded forward for several whole prompts; they become a new group."""
        import torch
        from transformers import DynamicCache

        width = max(len(s.prompt) for s in new)
        ids = torch.full((len(new), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(new), width), dtype=torch.long)
        for row, s in enumerate(new):
            ids[row, width - len(s.prompt) :] = torch.tensor(s.prompt)
            mask[row, width - len(s.prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache, dev = DynamicCache(), self.device
        adapters = [s.adapter for s in new]
        logits = self._forward(ids.to(dev), mask.to(dev), positions.to(dev), cache, adapters, True)
        pos = torch.tensor([len(s.prompt) for s in new], device=dev)
        self._prefilling = [s for s in self._prefilling if s not in new]
        self._join(_Group(list(new), cache, mask.to(dev), pos, None), logits)

    def _prefill_chunk(self, s: _Seq, n: int) -> None:
        """The next `n` tokens of one long prompt into its own cache; joins a group when done."""
        import torch
        from transformers import DynamicCache

        if s.cache is None:
            s.cache = DynamicCache()
        end = min(len(s.prompt), s.filled + n)
        dev = self.device
        ids = torch.tensor([s.prompt[s.filled : end]], device=dev)
        mask = torch.ones((1, end), dtype=torch.long, device=dev)
        positions = torch.arange(s.filled, end, device=dev).unsqueeze(0)
        logits = self._forward(ids, mask, positions, s.cache, [s.adapter], True)
        s.filled = end
        if end < len(s.prompt):
            return
        cache, s.cache = s.cache, None
        self._prefilling.remove(s)
        pos = torch.tensor([len(s.prompt)], device=dev)
        self._join(_Group([s], cache, mask, pos, None), logits)

    def _join(self, new: _Group, logits) -> None:
        """Sample the first tokens of a prefilled group, then merge it into a group of its size."""
        new.next = self._advance(new, logits)
        if not new.rows:
            return
        for g in self._groups:
            lo, hi = sorted((g.width, new.width))
            if hi <= 2 * lo + 64 and len(g.rows) + len(new.rows) <= self.max_batch:
                self._merge(g, new)
                return
        self._groups.append(new)

    # ------------------------------------------------------------------ decode
    def _decode(self, g: _Group) -> None:
        import torch

        ones = torch.ones((len(g.rows), 1), dtype=g.mask.dtype, device=self.device)
        g.mask = torch.cat([g.mask, ones], dim=1)
        adapters = [s.adapter for s in g.rows]
        logits = self._forward(
            g.next.unsqueeze(1), g.mask, g.pos.unsqueeze(1), g.cache, adapters, False
        )
        g.pos = g.pos + 1
        self.steps += 1
        g.next = self._advance(g, logits)

    def _advance(self, g: _Group, logits):
        """Sample a token for every row of `g`; retire finished rows; the tokens fed next."""
        import torch

        picks, done = [], set()
        for i, s in enumerate(g.rows):
            try:
                token = self._sample(s, logits[i])
            except Exception as e:  # this request's settings broke: end it, keep the rest
                self.failed_requests += 1
                if isinstance(e, RequestError):  # its own fault (a schema that dead-ends)
                    s.stream.put(Failed(str(e), e.status, e.code, e.param))
                else:
                    s.stream.put(Failed(f"generation failed: {type(e).__name__}: {e}"))
                picks.append(self.pad_id)
                done.add(id(s))
                continue
            picks.append(token)
            if self._push(s, token):
                done.add(id(s))
        self.generated_tokens += len(picks)
        g.next = torch.tensor(picks, device=self.device)
        if done:
            self._keep(g, [s for s in g.rows if id(s) not in done])
        return g.next

    def _sample(self, s: _Seq, row) -> int:
        """One token for one request: logprobs from the model, then its processors, then a draw."""
        import torch

        p = s.params
        if p.logprobs:
            raw = row.log_softmax(-1)
        if len(s.tokens) < s.min_tokens:
            row = row.clone()
            row[self.stop_ids] = float("-inf")
        if p.logit_bias:
            row = row.clone()
            ids = torch.tensor(list(p.logit_bias), device=row.device)
            row[ids] += torch.tensor(list(p.logit_bias.values()), device=row.device)
        if (p.presence_penalty or p.frequency_penalty) and s.tokens:
            counts = torch.bincount(torch.tensor(s.tokens), minlength=row.shape[-1])
            counts = counts[: row.shape[-1]].to(row.device, row.dtype)
            row = row - p.frequency_penalty * counts - p.presence_penalty * (counts > 0)
        if s.matcher is not None:
            row = s.matcher.mask(row)
        if s.temperature < GREEDY_BELOW:
            token = int(row.argmax())
        else:
            row = row / s.temperature
            if s.top_p < 1.0:
                sorted_logits, order = torch.sort(row, descending=True)
                probs = sorted_logits.softmax(-1)
                drop = probs.cumsum(-1) - probs > s.top_p
                row = row.clone()
                row[order[drop]] = float("-inf")
            probs = row.softmax(-1).cpu()
            token = int(torch.multinomial(probs, 1, generator=s.generator))
        if s.matcher is not None:
            s.matcher.accept(token)
        if p.logprobs:
            s.logprobs.append(self._logprob_entry(raw, token, p.top_logprobs))
        return token

    def _logprob_entry(self, raw, token: int, top: int) -> dict[str, Any]:
        def entry(t: int, lp: float) -> dict[str, Any]:
            text = self.tokenizer.decode([t])
            return {"token": text, "logprob": lp, "bytes": list(text.encode())}

        out = entry(token, float(raw[token]))
        out["top_logprobs"] = []
        if top:
            values, ids = raw.topk(top)
            out["top_logprobs"] = [
                entry(int(t), float(v)) for t, v in zip(ids.tolist(), values.tolist())
            ]
        return out

    def _push(self, s: _Seq, token: int) -> bool:
        """Record a sampled token, deliver new text; True when the sequence has finished."""
        if self._drop_if_cancelled(s):
            return True
        if token in self.stop_ids or (s.matcher is not None and s.matcher.done()):
            if token not in self.stop_ids:
                s.tokens.append(token)
            return self._finish(s, "stop", len(s.tokens) + (token in self.stop_ids))
        s.tokens.append(token)
        text = self.tokenizer.decode(s.tokens, skip_special_tokens=True)
        hits = [
            i for i in (text.find(x, max(0, s.sent - len(x))) for x in s.params.stop if x) if i >= 0
        ]
        if hits:
            return self._finish(s, "stop", len(s.tokens), text[: min(hits)])
        if len(s.tokens) >= s.budget:
            return self._finish(s, "length", len(s.tokens), text)
        safe = len(text) - _held_back(text, s.params.stop)
        if safe > s.sent:
            s.stream.put(Delta(text[s.sent : safe], self._take_logprobs(s)))
            s.sent = safe
        return False

    def _take_logprobs(self, s: _Seq) -> list[dict[str, Any]] | None:
        if not s.params.logprobs:
            return None
        out, s.logprobs = s.logprobs, []
        return out

    def _finish(self, s: _Seq, reason: str, count: int, text: str | None = None) -> bool:
        if text is None:
            text = self.tokenizer.decode(s.tokens, skip_special_tokens=True)
        if len(text) > s.sent or s.logprobs:
            s.stream.put(Delta(text[s.sent :], self._take_logprobs(s)))
        s.stream.put(Done(reason, len(s.prompt), count))
        return True

    # ------------------------------------------------------------------ batch surgery
    def _merge(self, g: _Group, new: _Group) -> None:
        """Append a prefilled group to a running one, left-padding the shorter KV cache."""
        import torch

        width = max(g.width, new.width)
        merged = [
            (
                torch.cat([_pad_left(k1, width, -2), _pad_left(k2, width, -2)]),
                torch.cat([_pad_left(v1, width, -2), _pad_left(v2, width, -2)]),
            )
            for (k1, v1), (k2, v2) in zip(
                cache_tensors(g.cache), cache_tensors(new.cache), strict=True
            )
        ]
        set_cache_tensors(g.cache, merged)
        g.mask = torch.cat([_pad_left(g.mask, width, 1), _pad_left(new.mask, width, 1)])
        g.pos = torch.cat([g.pos, new.pos])
        g.next = torch.cat([g.next, new.next])
        g.rows = g.rows + new.rows

    def _keep(self, g: _Group, keep: list[_Seq]) -> None:
        """Shrink a group to `keep` and drop cache columns that are padding in every row."""
        import torch

        if len(keep) == len(g.rows):
            return
        if not keep:
            with self._lock:
                g.rows = []
            return
        index = {id(s): i for i, s in enumerate(g.rows)}
        idx = torch.tensor([index[id(s)] for s in keep], device=self.device)
        mask = g.mask[idx]
        first = int(mask.any(0).nonzero()[0])
        kept = [(k[idx, :, first:], v[idx, :, first:]) for k, v in cache_tensors(g.cache)]
        set_cache_tensors(g.cache, kept)
        g.mask, g.pos = mask[:, first:], g.pos[idx]
        if g.next is not None:
            g.next = g.next[idx]
        with self._lock:
            g.rows = keep


# transformers' DynamicCache keeps one (keys, values) pair per layer in `cache.layers`; the two
# functions below are the only places that read or write them. transformers has no public API
# for splicing caches of different widths, so tests/test_serve_engine.py pins the transformers
# versions they are tested with to the range pyproject.toml declares.
def cache_tensors(cache) -> list[tuple[Any, Any]]:
    """Each layer's (keys, values), shaped (batch, kv_heads, width, head_dim)."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def set_cache_tensors(cache, tensors: list[tuple[Any, Any]]) -> None:
    """Replace each layer's keys and values (after a batch merge or shrink)."""
    for layer, (k, v) in zip(cache.layers, tensors, strict=True):
        layer.keys, layer.values = k, v


def _pad_left(t, width: int, dim: int):
    """Zero-pad tensor `t` on the left along `dim` to `width`."""
    import torch

    missing = width - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def _held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters to hold: a partial stop string or an incomplete character."""
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    if text.endswith("\ufffd"):
        hold = max(hold, 1)
    return hold
