"""Batched and streamed generation for chat, eval, serve, regularization and samples."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .data import families
from .data.formats import Messages

THINKING_BUDGET = 512  # extra new tokens for a thinking model's reasoning before its answer


def stop_token_ids(tokenizer: Any, template: str | None = None, model: Any = None) -> list[int]:
    """Token ids that end an assistant turn: the tokenizer's eos, the model's
    `generation_config.json` eos list, and the end-of-turn tokens of its family (the named
    `template`'s, else the one its chat template belongs to; else every family's that the
    vocabulary has)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if config_eos is not None:
        ids.update(int(i) for i in ([config_eos] if isinstance(config_eos, int) else config_eos))
    fams = families.all_families()
    fam = fams.get(template or "") or families.by_template(
        getattr(tokenizer, "chat_template", None)
    )
    # no known family: every family's end-of-turn token the vocabulary has
    ends = fam.end_of_turn if fam else {t for f in fams.values() for t in f.end_of_turn}
    vocab = tokenizer.get_vocab()
    for tok in ends:
        if tok in vocab:
            ids.add(int(vocab[tok]))
    return sorted(ids)


def with_system(messages: Messages, system: str | None) -> Messages:
    """Prepend a system message unless the conversation already has one or `system` is None."""
    if system is None or (messages and messages[0]["role"] == "system"):
        return list(messages)
    return [{"role": "system", "content": system}, *messages]


def encode_prompt(
    tokenizer: Any, messages: Messages, template_kwargs: dict | None = None
) -> list[int]:
    """Chat-template a conversation and add the assistant generation prompt."""
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, **(template_kwargs or {})
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def family_of(tokenizer: Any) -> families.Family | None:
    """The family a tokenizer's chat template belongs to."""
    return families.by_template(getattr(tokenizer, "chat_template", None))


def thinking_kwargs(tokenizer: Any, thinking: bool | None) -> dict:
    """Template arguments for thinking on / off (None: the template's default); {} for a
    family that has no switch (an R1 distill always thinks, most models never do)."""
    fam = family_of(tokenizer)
    if thinking is None or fam is None or fam.thinking.get("style") != "hybrid":
        return {}
    return {fam.thinking["kwarg"]: bool(thinking)}


class ReasoningSplit:
    """A thinking model's output, piece by piece, as (reasoning, answer) pieces: reasoning runs
    from its opening tag (or from the start, when the prompt opened the block) to its closing
    tag; text that does not open with the tag is all answer. A tag split across pieces is held
    back until it is whole."""

    def __init__(self, open_tag: str, close_tag: str, opened: bool):
        self.open, self.close = open_tag, close_tag
        self.state = "reasoning" if opened else "start"
        self.held = ""

    def feed(self, text: str) -> tuple[str, str]:
        """The (reasoning, answer) text that `text` completes."""
        self.held += text
        reasoning = answer = ""
        if self.state == "start":
            head = self.held.lstrip()
            if head.startswith(self.open):
                self.state, self.held = "reasoning", head[len(self.open) :]
            elif self.open.startswith(head):
                return "", ""  # maybe the tag, not whole yet
            else:
                self.state = "answer"
        if self.state == "reasoning":
            at = self.held.find(self.close)
            if at < 0:
                # hold back an end that may be the start of the closing tag
                n = len(self.held)
                keep = next(
                    (k for k in range(min(len(self.close) - 1, n), 0, -1)
                     if self.close.startswith(self.held[n - k :])),
                    0,
                )  # fmt: skip
                reasoning, self.held = self.held[: n - keep], self.held[n - keep :]
                return reasoning, ""
            reasoning, self.held = self.held[:at], self.held[at + len(self.close) :]
            self.state = "after"
        if self.state == "after":  # the newlines between the closing tag and the answer
            self.held = self.held.lstrip("\n")
            if self.held:
                self.state = "answer"
        if self.state == "answer":
            answer, self.held = self.held, ""
        return reasoning, answer

    def flush(self) -> tuple[str, str]:
        """What is held at the end: an unclosed block is reasoning (the answer was cut)."""
        held, self.held = self.held, ""
        if self.state == "reasoning":
            return held, ""
        return "", held


def reasoning_split(
    tokenizer: Any, messages: Messages, template_kwargs: dict | None = None
) -> ReasoningSplit | None:
    """A splitter for answers to `messages` when the model's family thinks, else None."""
    fam = family_of(tokenizer)
    if fam is None or not fam.thinks:
        return None
    prompt = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, **(template_kwargs or {})
    )
    opened = prompt.rstrip().endswith(fam.thinking["open"])
    return ReasoningSplit(fam.thinking["open"], fam.thinking["close"], opened)


def split_reasoning(
    tokenizer: Any, messages: Messages, text: str, **template_kwargs: Any
) -> tuple[str, str]:
    """(reasoning, answer) of a whole generated text (`reasoning_split`); a model that does not
    think: ("", text)."""
    split = reasoning_split(tokenizer, messages, template_kwargs)
    if split is None:
        return "", text.strip()
    r1, a1 = split.feed(text)
    r2, a2 = split.flush()
    return (r1 + r2).strip(), (a1 + a2).strip()


def _sampling_kwargs(temperature: float, top_p: float) -> dict[str, Any]:
    if temperature and temperature > 0:
        return {"do_sample": True, "temperature": temperature, "top_p": top_p}
    return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def generate_batch(
    model: Any,
    tokenizer: Any,
    conversations: list[Messages],
    *,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 16,
    template: str | None = None,
    on_batch: Callable[[int], None] | None = None,
    cut: list[bool] | None = None,
    template_kwargs: dict | None = None,
) -> list[str]:
    """Answer many conversations, left-padded in batches (greedy when temperature is 0).

    Conversations are sorted by length so each batch wastes little padding; answers come back
    in the input order. `on_batch(n)` is called after each batch with its size (progress bars).
    `cut`, when given, is filled with whether each answer hit `max_new_tokens` unfinished.
    """
    import torch

    prompts = [encode_prompt(tokenizer, c, template_kwargs) for c in conversations]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[str] = [""] * len(prompts)
    ended = [True] * len(prompts)
    stops = stop_token_ids(tokenizer, template, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            p = prompts[i]
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                eos_token_id=stops,
                pad_token_id=pad,
                **_sampling_kwargs(temperature, top_p),
            )
        for row, i in enumerate(idx):
            gen = out[row, width:].tolist()
            ended[i] = False
            for k, t in enumerate(gen):
                if t in stops:
                    gen, ended[i] = gen[:k], True
                    break
            answers[i] = tokenizer.decode(gen, skip_special_tokens=True).strip()
        if on_batch:
            on_batch(len(idx))
    if cut is not None:
        cut[:] = [not e for e in ended]
    return answers


def stream(
    model: Any,
    tokenizer: Any,
    messages: Messages,
    *,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    top_p: float = 1.0,
    template: str | None = None,
    seed: int | None = None,
    template_kwargs: dict | None = None,
) -> Iterator[str]:
    """Yield the answer to one conversation piece by piece as it is generated."""
    import threading

    import torch
    from transformers import TextIteratorStreamer

    if seed is not None:
        torch.manual_seed(seed)
    prompt = encode_prompt(tokenizer, messages, template_kwargs)
    device = next(model.parameters()).device
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    stops = stop_token_ids(tokenizer, template, model)
    kwargs = dict(
        input_ids=torch.tensor([prompt], device=device),
        attention_mask=torch.ones((1, len(prompt)), dtype=torch.long, device=device),
        max_new_tokens=max_new_tokens,
        eos_token_id=stops,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0],
        streamer=streamer,
        **_sampling_kwargs(temperature, top_p),
    )

    def work() -> None:
        with torch.inference_mode():
            model.generate(**kwargs)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    yield from streamer
    thread.join()
