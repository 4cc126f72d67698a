"""One model, many clients: a continuous-batching generation loop shared by the API and the UI.

A background thread owns the model. Each step it admits waiting requests (one left-padded prefill
for all of them, whose KV cache is then left-padded and concatenated onto the running batch's),
runs one decode step for every active sequence, samples each row with its own settings, and drops
finished or cancelled rows from the batch. Clients read their tokens from a `Stream`, from a thread
or from asyncio; `Stream.cancel()` (a closed connection) frees the row at the next step.
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

Messages = list[dict[str, str]]


@dataclass
class Params:
    """Per-request sampling settings; None means the engine's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    min_tokens: int = 0  # vLLM's extension: suppress end-of-turn before this many tokens


@dataclass
class Delta:
    """A piece of the answer's text."""

    text: str


@dataclass
class Done:
    """The answer ended: `stop` (end of turn or stop string), `length`, or `cancelled`."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Failed:
    """Generation failed; `status` is the HTTP code to report."""

    message: str
    status: int = 500


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

    def submit(self, messages: Messages, params: Params) -> Stream: ...

    def health(self) -> dict[str, Any]: ...


@dataclass
class _Seq:
    """One request while it is in the batch."""

    stream: Stream
    prompt: list[int]
    budget: int
    temperature: float
    top_p: float
    min_tokens: int
    stop: list[str]
    generator: Any
    tokens: list[int] = field(default_factory=list)
    sent: int = 0  # characters of text already delivered


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
        template: str | None = None,
        max_batch: int = 16,
        max_waiting: int = 256,
        max_prompt_tokens: int | None = None,
        max_tokens_limit: int = 4096,
        default_max_tokens: int = 512,
        temperature: float = 0.7,
        top_p: float = 0.9,
        min_tokens: int = 0,
    ):
        from ..generate import stop_token_ids

        self.model, self.tokenizer = model, tokenizer
        self.model_id, self.title, self.system = model_id, title or model_id, system
        self.description, self.aliases = description, aliases or set()
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.context = int(getattr(model.config, "max_position_embeddings", 0) or 4096)
        self.max_prompt_tokens = min(max_prompt_tokens or self.context - 1, self.context - 1)
        self.max_tokens_limit, self.default_max_tokens = max_tokens_limit, default_max_tokens
        self.defaults = Params(temperature=temperature, top_p=top_p, min_tokens=min_tokens)
        self.stop_ids = stop_token_ids(tokenizer, template)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.stop_ids[0])
        self.device = next(model.parameters()).device
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        params = inspect.signature(base.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._lock = threading.Condition()
        self._waiting: deque[_Seq] = deque()
        self._rows: list[_Seq] = []
        self._admitting = 0  # taken from the queue, not yet in the batch
        self._state: dict[str, Any] = {}
        self._closed = False
        self.max_batch_seen = 0
        self.steps = 0
        self.generated_tokens = 0
        self.cancelled_requests = 0
        self._thread = threading.Thread(target=self._run, name="idtune-engine", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ client side
    @property
    def active(self) -> int:
        """Requests waiting or generating."""
        with self._lock:
            return len(self._waiting) + self._admitting + len(self._rows)

    def health(self) -> dict[str, Any]:
        """Liveness and load, for `/health`."""
        ok = self._thread.is_alive() and not self._closed
        return {
            "status": "ok" if ok else "stopped",
            "model": self.model_id,
            "active": self.active,
            "max_batch_seen": self.max_batch_seen,
        }

    def encode(self, messages: Messages) -> list[int]:
        """The prompt's token ids, with the engine's default system prompt when none is given."""
        from ..generate import encode_prompt, with_system

        return encode_prompt(self.tokenizer, with_system(messages, self.system))

    def submit(self, messages: Messages, params: Params) -> Stream:
        """Queue a conversation; raise `RequestError` for one that breaks the limits."""
        import torch

        if self._closed or not self._thread.is_alive():
            raise RequestError("the engine is not running", 503, "engine_unavailable")
        prompt = self.encode(messages)
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
        budget = min(params.max_tokens or self.default_max_tokens, self.context - len(prompt))
        gen = torch.Generator(device="cpu")
        if params.seed is not None:
            gen.manual_seed(params.seed)
        else:
            gen.seed()
        temperature = (
            self.defaults.temperature if params.temperature is None else params.temperature
        )
        seq = _Seq(
            stream=Stream(len(prompt)),
            prompt=prompt,
            budget=budget,
            temperature=float(temperature or 0.0),
            top_p=float(self.defaults.top_p if params.top_p is None else params.top_p),
            min_tokens=min(max(params.min_tokens, self.defaults.min_tokens), budget),
            stop=[s for s in params.stop if s],
            generator=gen,
        )
        with self._lock:
            if len(self._waiting) >= self.max_waiting:
                raise RequestError("the server is busy; retry later", 503, "server_busy")
            self._waiting.append(seq)
            self._lock.notify()
        return seq.stream

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
                while not self._closed and not self._waiting and not self._rows:
                    self._lock.wait()
                if self._closed:
                    break
                room = self.max_batch - len(self._rows)
                new = [self._waiting.popleft() for _ in range(min(room, len(self._waiting)))]
                self._admitting = len(new)
            new = [s for s in new if not self._drop_if_cancelled(s)]
            try:
                with torch.inference_mode():
                    self._keep([s for s in self._rows if not self._drop_if_cancelled(s)])
                    if new:
                        self._prefill(new)
                    self._admitting = 0
                    if self._rows:
                        self._decode()
            except Exception as e:  # a failed step fails its batch, not the server
                failed = {id(s): s for s in [*self._rows, *new]}
                for s in failed.values():
                    s.stream.put(Failed(f"generation failed: {type(e).__name__}: {e}"))
                with self._lock:
                    self._rows, self._state, self._admitting = [], {}, 0
        with self._lock:
            for s in [*self._rows, *self._waiting]:
                s.stream.put(Failed("the server is shutting down", 503))
            self._rows, self._waiting = [], deque()

    def _drop_if_cancelled(self, seq: _Seq) -> bool:
        cancelled = seq.stream.cancelled
        if cancelled:
            self.cancelled_requests += 1
            seq.stream.put(Done("cancelled", len(seq.prompt), len(seq.tokens)))
        return cancelled

    def _forward(self, ids, mask, positions, cache, last_only: bool):
        kwargs = (
            {self._cache_kw: cache, "logits_to_keep": 1} if last_only else {self._cache_kw: cache}
        )
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **kwargs
        )
        return out.logits[:, -1, :].float()

    def _prefill(self, new: list[_Seq]) -> None:
        import torch
        from transformers import DynamicCache

        width = max(len(s.prompt) for s in new)
        ids = torch.full((len(new), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(new), width), dtype=torch.long)
        for row, s in enumerate(new):
            ids[row, width - len(s.prompt) :] = torch.tensor(s.prompt)
            mask[row, width - len(s.prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        dev = self.device
        logits = self._forward(ids.to(dev), mask.to(dev), positions.to(dev), cache, True)
        state = {
            "cache": cache,
            "mask": mask.to(dev),
            "pos": torch.tensor([len(s.prompt) for s in new], device=dev),
        }
        self._merge(new, state)
        self._advance(new, logits, offset=len(self._rows) - len(new))

    def _decode(self) -> None:
        import torch

        st = self._state
        ones = torch.ones((len(self._rows), 1), dtype=st["mask"].dtype, device=self.device)
        st["mask"] = torch.cat([st["mask"], ones], dim=1)
        ids = st["next"].unsqueeze(1)
        logits = self._forward(ids, st["mask"], st["pos"].unsqueeze(1), st["cache"], False)
        st["pos"] = st["pos"] + 1
        self.steps += 1
        self.max_batch_seen = max(self.max_batch_seen, len(self._rows))
        self._advance(list(self._rows), logits, offset=0)

    def _advance(self, seqs: list[_Seq], logits, offset: int) -> None:
        """Sample a token for each of `seqs` (batch rows offset..); retire finished rows."""
        import torch

        tokens = self._sample(seqs, logits)
        nxt = self._state.get("next")
        fresh = torch.tensor(tokens, device=self.device)
        if offset == 0 and (nxt is None or len(nxt) == len(seqs)):
            self._state["next"] = fresh
        else:
            self._state["next"] = torch.cat([nxt[:offset], fresh])
        self.generated_tokens += len(tokens)
        done = {id(s) for s, t in zip(seqs, tokens, strict=True) if self._push(s, t)}
        if done:
            self._keep([s for s in self._rows if id(s) not in done])

    def _sample(self, seqs: list[_Seq], logits) -> list[int]:
        import torch

        for i, s in enumerate(seqs):
            if len(s.tokens) < s.min_tokens:
                logits[i, self.stop_ids] = float("-inf")
        picks = logits.argmax(-1).tolist()
        for i, s in enumerate(seqs):
            if s.temperature <= 0:
                continue
            row = logits[i] / s.temperature
            if s.top_p < 1.0:
                sorted_logits, order = torch.sort(row, descending=True)
                probs = sorted_logits.softmax(-1)
                drop = probs.cumsum(-1) - probs > s.top_p
                row = row.clone()
                row[order[drop]] = float("-inf")
            probs = row.softmax(-1).cpu()
            picks[i] = int(torch.multinomial(probs, 1, generator=s.generator))
        return picks

    def _push(self, s: _Seq, token: int) -> bool:
        """Record a sampled token, deliver new text; True when the sequence has finished."""
        if self._drop_if_cancelled(s):
            return True
        if token in self.stop_ids:
            return self._finish(s, "stop", len(s.tokens) + 1)
        s.tokens.append(token)
        text = self.tokenizer.decode(s.tokens, skip_special_tokens=True)
        hits = [i for i in (text.find(x, max(0, s.sent - len(x))) for x in s.stop) if i >= 0]
        if hits:
            return self._finish(s, "stop", len(s.tokens), text[: min(hits)])
        if len(s.tokens) >= s.budget:
            return self._finish(s, "length", len(s.tokens), text)
        safe = len(text) - _held_back(text, s.stop)
        if safe > s.sent:
            s.stream.put(Delta(text[s.sent : safe]))
            s.sent = safe
        return False

    def _finish(self, s: _Seq, reason: str, count: int, text: str | None = None) -> bool:
        if text is None:
            text = self.tokenizer.decode(s.tokens, skip_special_tokens=True)
        if len(text) > s.sent:
            s.stream.put(Delta(text[s.sent :]))
        s.stream.put(Done(reason, len(s.prompt), count))
        return True

    # ------------------------------------------------------------------ batch surgery
    def _merge(self, new: list[_Seq], st: dict[str, Any]) -> None:
        """Append a prefilled group to the running batch, left-padding the shorter KV cache."""
        import torch

        if not self._rows:
            self._rows, self._state = list(new), st
            return
        old = self._state
        width = max(old["mask"].shape[1], st["mask"].shape[1])
        for a, b in zip(old["cache"].layers, st["cache"].layers, strict=True):
            a.keys = torch.cat([_pad_left(a.keys, width, -2), _pad_left(b.keys, width, -2)])
            a.values = torch.cat([_pad_left(a.values, width, -2), _pad_left(b.values, width, -2)])
        old["mask"] = torch.cat([_pad_left(old["mask"], width, 1), _pad_left(st["mask"], width, 1)])
        old["pos"] = torch.cat([old["pos"], st["pos"]])
        self._rows = self._rows + list(new)

    def _keep(self, keep: list[_Seq]) -> None:
        """Shrink the batch to `keep` and drop cache columns that are padding in every row."""
        import torch

        if len(keep) == len(self._rows):
            return
        if not keep:
            with self._lock:
                self._rows, self._state = [], {}
            return
        index = {id(s): i for i, s in enumerate(self._rows)}
        idx = torch.tensor([index[id(s)] for s in keep], device=self.device)
        st = self._state
        mask = st["mask"][idx]
        first = int(mask.any(0).nonzero()[0])
        for layer in st["cache"].layers:
            layer.keys = layer.keys[idx, :, first:]
            layer.values = layer.values[idx, :, first:]
        st["mask"], st["pos"] = mask[:, first:], st["pos"][idx]
        if "next" in st:
            st["next"] = st["next"][idx]
        with self._lock:
            self._rows = keep


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
