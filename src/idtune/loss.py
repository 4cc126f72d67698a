"""Causal-LM loss over pre-shifted labels (labels[t] is the token predicted at position t)."""

from __future__ import annotations

from typing import Any

IGNORE = -100


def causal_lm_loss(model: Any, batch: dict, fused: str = "none") -> tuple[Any, int]:
    """Summed cross-entropy of a batch and its number of trained tokens.

    `batch` holds input_ids, labels (already shifted), and position_ids (packed rows) or an
    attention_mask (padded rows). `fused` selects how logits are formed (auto, chunked, liger,
    none); this version always builds them in full. Returning the sum lets gradient accumulation divide by the
    true token count of the whole step.
    """
    import torch.nn.functional as F

    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits
    flat = labels.reshape(-1)
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), flat, ignore_index=IGNORE, reduction="sum"
    )
    return loss, int((flat != IGNORE).sum())
