"""Speed settings for training: attention implementation for packed rows, torch.compile."""

from __future__ import annotations

from typing import Any


def load_kwargs(cfg: Any, device: str) -> dict:
    """Extra `from_pretrained` keyword arguments (attention implementation)."""
    return {"attn_implementation": cfg.attn_implementation}


def optimize(model: Any, cfg: Any, device: str) -> Any:
    """Apply optional compilation; returns the model to train."""
    if cfg.compile:
        import torch

        model = torch.compile(model)
    return model
