"""Chat template → input_ids + assistant-only labels; packing of short samples into rows.

Only the assistant's content and the token that ends its turn carry loss; everything else
(system, user, role headers, the newline after an end-of-turn token) is labelled -100.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError

IGNORE = -100
Messages = list[dict[str, str]]


@dataclass
class Sample:
    """One rendered conversation."""

    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_trained(self) -> int:
        """Number of tokens that carry loss."""
        return sum(1 for t in self.labels if t != IGNORE)


def _spans(tokenizer: Any, messages: Messages) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the character spans of every assistant answer in it."""
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = tokenizer.apply_chat_template(
            messages[:i], tokenize=False, add_generation_prompt=True
        )
        if not full.startswith(prefix):
            raise UserError(
                "the chat template renders earlier turns differently once later turns are "
                "added; cannot locate assistant answers (use --prompt-template)"
            )
        start = full.find(m["content"].strip(), len(prefix))
        if start < 0:
            raise UserError("the chat template changes assistant text; cannot mask it")
        spans.append((start, start + len(m["content"].strip())))
    return full, spans


def render(tokenizer: Any, messages: Messages, max_length: int | None = None) -> Sample:
    """Tokenize a conversation with the model's chat template and mask non-assistant tokens.

    Per assistant answer, the tokens overlapping its text are trained, plus the next token
    (the template's end-of-turn token). Needs a fast tokenizer (offset mapping).
    """
    text, spans = _spans(tokenizer, messages)
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
    for r, row in enumerate(rows):
        at = 0
        for s in row.samples:
            n = min(len(s), width - at)
            ids[r, at : at + n] = torch.tensor(s.input_ids[:n])
            labels[r, at : at + n] = torch.tensor(shift_labels(s.labels)[:n])
            pos[r, at : at + n] = torch.arange(n)
            at += n
        pos[r, at:] = torch.arange(width - at)
    return {"input_ids": ids, "labels": labels, "position_ids": pos}


def collate_padded(samples: list[Sample], pad_id: int) -> dict:
    """Tensors for one sample per row, right-padded, with an attention mask (the plain way)."""
    import torch

    width = max(len(s) for s in samples)
    ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    for r, s in enumerate(samples):
        n = len(s)
        ids[r, :n] = torch.tensor(s.input_ids)
        labels[r, :n] = torch.tensor(shift_labels(s.labels))
        mask[r, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def shift_labels(labels: list[int]) -> list[int]:
    """Labels aligned with the position that predicts them: label[t] = token[t+1] or -100.

    Shifting per sample before packing keeps a row's last token of one sample from being
    trained to predict the first token of the next.
    """
    return labels[1:] + [IGNORE]
