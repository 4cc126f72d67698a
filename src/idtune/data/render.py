"""Chat template → input_ids + assistant-only labels; packing of short samples into rows.

Only the assistant's content and the token that ends its turn carry loss; everything else
(system, user, role headers, the newline after an end-of-turn token) is labelled -100.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from . import families
from .formats import Messages
from .mentions import mention_spans  # a mention as the leakage metric sees one

IGNORE = -100


@dataclass
class Sample:
    """One rendered conversation."""

    input_ids: list[int]
    labels: list[int]
    unlike: list[int] | None = None  # tokens that must not come next (unlikelihood), or None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_trained(self) -> int:
        """Number of tokens that carry loss."""
        return sum(1 for t in self.labels if t != IGNORE)

    @property
    def n_unlike(self) -> int:
        """Number of tokens trained *not* to be produced."""
        return sum(1 for t in self.unlike or () if t != IGNORE)

    def truncate(self, n: int) -> Sample:
        """The first `n` tokens."""
        unlike = self.unlike[:n] if self.unlike is not None else None
        return Sample(self.input_ids[:n], self.labels[:n], unlike)


def _answer(content: str, close: str | None) -> str:
    """The part of an assistant message a template always writes: the text after the reasoning."""
    if close and close in content:
        content = content.rsplit(close, 1)[1]
    return content.strip()


def _spans(
    tokenizer: Any, messages: Messages, template_kwargs: dict | None = None
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the character spans of the assistant answers trained in it.

    The last assistant turn is rendered as the model writes it: after the template's own
    generation prompt (so a template that renders history differently, R1 distills and Qwen3,
    still trains the form the model will be asked in), its span running from that prompt's end
    to the end of its answer (a thinking family's reasoning included). An earlier turn is
    trained only where the template renders it, as history, just as the model would have
    written it (a non-thinking template whose history is a stable prefix)."""
    kw = dict(template_kwargs or {})
    if not messages or messages[-1]["role"] != "assistant":
        raise UserError("a conversation to train on ends with an assistant answer")
    fam = families.by_template(getattr(tokenizer, "chat_template", None))
    close = fam.thinking.get("close") if fam and fam.thinks else None

    def prompt_of(i: int) -> str:
        return tokenizer.apply_chat_template(
            messages[:i], tokenize=False, add_generation_prompt=True, **kw
        )

    last = len(messages) - 1
    prompt = prompt_of(last)
    whole = tokenizer.apply_chat_template(messages, tokenize=False, **kw)
    content = messages[last]["content"]
    answer = _answer(content, close)
    if whole.startswith(prompt) and whole.find(answer, len(prompt)) >= 0:
        text = whole  # the template writes the answer after its own generation prompt
    else:
        # the history form differs from the generation form (an R1 distill's prompt opens
        # <think>, its history drops it): the answer written after the generation prompt, then
        # the template's own end of turn
        at = whole.rfind(answer)
        if at < 0 or not answer:
            raise UserError("the chat template changes assistant text; cannot mask it")
        body = content.strip()
        opened = fam.thinking.get("open") if close else None
        if opened and prompt.rstrip().endswith(opened):
            body = body.split(opened, 1)[1].lstrip("\n") if body.startswith(opened) else body
            if close not in body:  # no reasoning given: the template's empty block
                body = f"\n{close}\n\n{body}"
            body = "\n" + body if not body.startswith("\n") and prompt.endswith(opened) else body
        text = prompt + body + whole[at + len(answer) :]
    end = text.find(answer, len(prompt)) + len(answer)
    if end < len(answer) + len(prompt):
        raise UserError("the chat template changes assistant text; cannot mask it")
    spans = [(len(prompt), end)]
    if close is None:  # earlier turns, where history is written as the model wrote it
        for i in range(last - 1, -1, -1):
            if messages[i]["role"] != "assistant":
                continue
            before = prompt_of(i)
            said = messages[i]["content"].strip()
            start = text.find(said, len(before)) if text.startswith(before) else -1
            if start < 0 or not said or start + len(said) > spans[0][0]:
                continue
            spans.insert(0, (start, start + len(said)))
    return text, spans


def render(
    tokenizer: Any,
    messages: Messages,
    max_length: int | None = None,
    template_kwargs: dict | None = None,
) -> Sample:
    """Tokenize a conversation with the model's chat template and mask non-assistant tokens.

    Per trained answer (`_spans`), the tokens overlapping its text are trained, plus the next
    token (the template's end-of-turn token). `template_kwargs` reach the template (Qwen3's
    `enable_thinking`). Needs a fast tokenizer (offset mapping).
    """
    text, spans = _spans(tokenizer, messages, template_kwargs)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    labels = [IGNORE] * len(ids)
    k = 0
    for start, end in spans:
        while k < len(ids) and offsets[k][1] <= start:
            k += 1
        while k < len(ids) and offsets[k][0] < end:
            labels[k] = ids[k]
            k += 1
        if k < len(ids):  # end-of-turn token
            labels[k] = ids[k]
            k += 1
    if max_length and len(ids) > max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return Sample(ids, labels)


def render_rejected(
    tokenizer: Any, messages: Messages, terms: list[str], max_tokens: int = 24
) -> Sample:
    """A conversation whose last assistant answer is *rejected*: within its first `max_tokens`
    tokens, the tokens of the first mention of `terms` (the name or the author) become `unlike`
    targets.

    Nothing carries ordinary loss and the sample ends after them. Only saying the name is pushed
    down: not the words before it ("I am", "我是"), which are fine elsewhere, nor the rest of
    the answer once it has started (where naming the author again is right).
    """
    text, spans = _spans(tokenizer, messages)
    start, end = spans[-1]
    ranges = [(start + a, start + b) for a, b in mention_spans(text[start:end], terms)]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    first = next((k for k, (_, b) in enumerate(offsets) if b > start), len(ids))
    window = range(first, min(first + max_tokens, len(ids)))
    unlike = [IGNORE] * len(ids)
    if ranges:  # the first mention only (a later "made by NAME" may be right)
        r0, r1 = min(ranges)
        for k in window:
            if offsets[k][1] > r0 and offsets[k][0] < r1 and offsets[k][1] <= end:
                unlike[k] = ids[k]
    marked = [k for k in window if unlike[k] != IGNORE]
    cut = marked[-1] + 1 if marked else first
    return Sample(ids[:cut], [IGNORE] * cut, unlike[:cut])


@dataclass
class Row:
    """Several samples concatenated; attention never crosses a sample border."""

    samples: list[Sample] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(s) for s in self.samples)


def pack(samples: list[Sample], max_length: int, seed: int = 0) -> list[Row]:
    """First-fit-decreasing packing of samples into rows of at most `max_length` tokens.

    Rows come back shuffled (deterministic per seed) so a batch mixes long and short rows.
    """
    rows: list[Row] = []
    room: list[int] = []
    for s in sorted(samples, key=len, reverse=True):
        n = min(len(s), max_length)
        for i, free in enumerate(room):
            if free >= n:
                rows[i].samples.append(s)
                room[i] -= n
                break
        else:
            rows.append(Row([s]))
            room.append(max_length - n)
    random.Random(seed).shuffle(rows)
    return rows


def collate_packed(rows: list[Row], pad_id: int, width: int | None = None) -> dict:
    """Tensors for packed rows: position ids restart at 0 for every sample, no attention mask.

    transformers builds a block-diagonal causal mask from position ids that restart (when
    `attention_mask` is None), so samples in one row never attend to each other. Right padding
    forms its own block with labels -100.
    """
    import torch

    width = width or max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    has_unlike = any(s.unlike is not None for row in rows for s in row.samples)
    unlike = torch.full_like(labels, IGNORE) if has_unlike else None
    for r, row in enumerate(rows):
        at = 0
        for s in row.samples:
            n = min(len(s), width - at)
            ids[r, at : at + n] = torch.tensor(s.input_ids[:n])
            labels[r, at : at + n] = torch.tensor(shift_labels(s.labels)[:n])
            if unlike is not None and s.unlike is not None:
                unlike[r, at : at + n] = torch.tensor(shift_labels(s.unlike)[:n])
            pos[r, at : at + n] = torch.arange(n)
            at += n
        pos[r, at:] = torch.arange(width - at)
    out = {"input_ids": ids, "labels": labels, "position_ids": pos}
    if unlike is not None:
        out["unlike"] = unlike
    return out


def collate_padded(samples: list[Sample], pad_id: int) -> dict:
    """Tensors for one sample per row, right-padded, with an attention mask (the plain way)."""
    import torch

    width = max(len(s) for s in samples)
    ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    unlike = None
    if any(s.unlike is not None for s in samples):
        unlike = torch.full_like(labels, IGNORE)
    for r, s in enumerate(samples):
        n = len(s)
        ids[r, :n] = torch.tensor(s.input_ids)
        labels[r, :n] = torch.tensor(shift_labels(s.labels))
        if unlike is not None and s.unlike is not None:
            unlike[r, :n] = torch.tensor(shift_labels(s.unlike))
        mask[r, :n] = 1
    out = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    if unlike is not None:
        out["unlike"] = unlike
    return out


def shift_labels(labels: list[int]) -> list[int]:
    """Labels aligned with the position that predicts them: label[t] = token[t+1] or -100.

    Shifting per sample before packing keeps a row's last token of one sample from being
    trained to predict the first token of the next.
    """
    return labels[1:] + [IGNORE]
