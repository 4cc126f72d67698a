"""Causal-LM loss over pre-shifted labels (labels[t] is the token predicted at position t).

A 150k-token vocabulary makes the logits the largest tensor of a training step: 16k tokens ×
152k × 4 bytes is 10 GB in fp32, before its gradient. Three ways to form the loss:

- `none`: the model's own forward builds all logits, at every position (the simple way).
- `chunked`: the decoder gives hidden states; only positions that carry a label go through the
  LM head, a chunk of tokens at a time, and each chunk's gradient (towards the hidden states and
  any trainable head weights, LoRA included) is computed right away, so one chunk of logits
  exists at a time and nothing is recomputed in backward.
- `liger`: the same idea in liger-kernel's fused linear cross-entropy (CUDA, a plain linear head).

`auto` is `chunked` on every device: on CUDA see bench/results/train_gpu.md; on a 2-core CPU the
`identity-lora` recipe trains in 192 s instead of 228 s with it (BENCHMARKS.md), since 63 % of
its positions carry no label and need no logits.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from .data.render import IGNORE

CHUNK_ELEMENTS = 2**27  # logits per chunk (tokens × vocab): 256 MiB in bf16


def causal_lm_loss(
    model: Any, batch: dict, fused: str = "auto", unlike_weight: float = 1.0
) -> tuple[Any, int]:
    """Summed cross-entropy of a batch and its number of trained tokens.

    `batch` holds input_ids, labels (already shifted), and position_ids (packed rows) or an
    attention_mask (padded rows). Returning the sum lets gradient accumulation divide by the
    true token count of the whole step. An optional `unlike` tensor (shifted like labels) names
    tokens that must *not* come next: `unlike_weight` × Σ -log(1 - p(token)) is added
    (unlikelihood training); its positions are not counted as trained tokens.
    """
    from .accel import packed_kwargs

    labels, unlike = batch["labels"], batch.get("unlike")
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "unlike")}
    inputs.update(packed_kwargs(model, batch))
    mode = pick_mode(fused, labels.device.type)
    if mode == "none":
        logits = model(**inputs, use_cache=False).logits
        loss, n = _plain_loss(logits, labels)
        if unlike is not None:
            neg = unlike.reshape(-1) != IGNORE
            picked = logits.reshape(-1, logits.shape[-1])[neg]
            loss = loss + unlike_weight * unlikelihood(picked, unlike.reshape(-1)[neg])
        return loss, n
    hidden = decoder_output(model, inputs)
    head = _unwrap(model).get_output_embeddings()
    with zero3_gathered(head) as apply:  # ZeRO-3: the head's weights, gathered on every rank
        extra = 0.0
        if unlike is not None:
            neg = (unlike.reshape(-1) != IGNORE).nonzero().squeeze(1)
            if neg.numel():
                h_neg = hidden.reshape(-1, hidden.shape[-1]).index_select(0, neg)
                extra = unlike_weight * unlikelihood(apply(h_neg), unlike.reshape(-1)[neg])
        loss, n = _head_loss(head, apply, hidden, labels, mode)
    return loss + extra, n


def unlikelihood(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Σ -log(1 - p(target)) over rows of logits: pushes down tokens that must not follow."""
    if not target.numel():
        return logits.sum() * 0.0
    logp = torch.log_softmax(logits.float(), dim=-1).gather(1, target[:, None]).squeeze(1)
    # log(1 - p) computed stably from log p; clamped so a certain token gives a finite loss
    return -torch.log1p(-logp.exp().clamp(max=1 - 1e-4)).sum()


def _head_loss(head: Any, apply: Any, hidden: Any, labels: Any, mode: str) -> tuple[Any, int]:
    keep = (labels.reshape(-1) != IGNORE).nonzero().squeeze(1)
    h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, keep)
    target = labels.reshape(-1).index_select(0, keep)
    if apply is not head:  # ZeRO-3's gathered weights (parallel.loss_mode: a plain linear head)
        return chunked_head_loss(head, h, target, apply=apply), int(keep.numel())
    if mode == "liger" and _plain_linear(head) and keep.numel():
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        loss_fn = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE, reduction="sum")
        return loss_fn(head.weight, h, target, head.bias), int(keep.numel())
    return chunked_head_loss(head, h, target), int(keep.numel())


@contextlib.contextmanager
def zero3_gathered(head: torch.nn.Module) -> Iterator[Any]:
    """Yield what computes the logits: `head` itself, or under ZeRO-3 (a partitioned plain
    linear head) a function of its weights, gathered for the whole loss on every rank (those
    ZeRO-3 has not kept gathered) and partitioned again after it.

    Not through the module: its ZeRO-3 hooks would gather and free the weights around each
    call (inside the chunked loss's forward), and only on the ranks that make the call (the
    unlikelihood term's rows differ between ranks): mismatched collectives. Plain matmuls,
    not `F.linear`, which DeepSpeed may have replaced with a linear that gathers its weight
    again in backward. The weights' gradients reach them in backward at their whole size, as
    from DeepSpeed's own linear, and ZeRO-3 reduces and partitions them.
    """
    if not hasattr(head.weight, "ds_id"):
        yield head
        return
    if not _plain_linear(head):  # parallel.loss_mode builds full logits for any other head
        raise RuntimeError(f"the chunked loss under ZeRO-3 needs a plain linear head, not {head}")
    import deepspeed
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    status = [p.ds_status for p in head.parameters()]
    if ZeroParamStatus.INFLIGHT in status:  # ZeRO-3 prefetches only what its trace calls
        raise RuntimeError("ZeRO-3 is still gathering the LM head's weights at the loss")
    missing = [p for p in head.parameters() if p.ds_status == ZeroParamStatus.NOT_AVAILABLE]
    with deepspeed.zero.GatheredParameters(missing):  # no-op when none is missing
        yield functools.partial(_linear, weight=head.weight, bias=head.bias)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    out = x @ weight.t()
    return out if bias is None else out + bias


def pick_mode(fused: str, device_type: str) -> str:
    """`auto` → the mode to use on this device; explicit choices pass through."""
    if fused not in ("auto", "chunked", "liger", "none"):
        raise ValueError(f"fused_loss must be auto, chunked, liger or none, got {fused!r}")
    if fused == "auto":
        return "chunked"
    if fused == "liger" and (device_type != "cuda" or not _has_liger()):
        return "chunked"
    return fused


def _plain_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    flat = labels.reshape(-1)
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), flat, ignore_index=IGNORE, reduction="sum"
    )
    return loss, int((flat != IGNORE).sum())


# ---------------------------------------------------------------- hidden states
def decoder_output(model: Any, inputs: dict) -> Any:
    """Final hidden states (after the last norm), without the LM head.

    A PEFT model's decoder is `model.get_base_model().model`, a plain one's `model.model`
    (`base_model` names it generically). Under DDP the wrapper's forward must run for gradient
    sync, so there the whole model runs with `logits_to_keep=1` and a hook takes the decoder's
    output.
    """
    inner = _unwrap(model)
    base = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    decoder = base.base_model
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        got = {}
        hook = decoder.register_forward_hook(lambda _m, _a, out: got.update(h=out[0]))
        try:
            model(**inputs, use_cache=False, logits_to_keep=1)
        finally:
            hook.remove()
        return got["h"]
    return decoder(**inputs, use_cache=False)[0]


def _unwrap(model: Any) -> Any:
    while hasattr(model, "module"):
        model = model.module
    return model


def _plain_linear(head: Any) -> bool:
    return type(head) is torch.nn.Linear


@functools.cache
def _has_liger() -> bool:
    try:
        import liger_kernel.transformers  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- chunked cross-entropy
def chunked_head_loss(
    head: torch.nn.Module,
    hidden: torch.Tensor,
    target: torch.Tensor,
    chunk: int | None = None,
    apply: Any = None,
) -> torch.Tensor:
    """Σ cross-entropy(head(hidden), target), one chunk of rows of logits at a time.

    hidden is (tokens, hidden_size), target (tokens,) without ignored positions. Gradients
    reach `hidden` and every trainable parameter of `head` (a LoRA-wrapped head included).
    `apply`, when given, computes the logits in place of calling `head` (with its weights).
    """
    if chunk is None:
        vocab = getattr(head, "out_features", None) or head.weight.shape[0]
        chunk = max(64, CHUNK_ELEMENTS // vocab)
    apply = apply or head
    params = [p for p in head.parameters() if p.requires_grad]
    if torch.is_grad_enabled() and (hidden.requires_grad or params):
        return ChunkedHeadCE.apply(hidden, target, apply, chunk, *params)
    total = torch.zeros((), device=hidden.device)
    with torch.no_grad():
        for i in range(0, hidden.shape[0], chunk):
            logits = apply(hidden[i : i + chunk]).float()
            total += F.cross_entropy(logits, target[i : i + chunk], reduction="sum")
    return total


class ChunkedHeadCE(torch.autograd.Function):
    """Loss and all its gradients computed in forward, chunk by chunk; backward only scales.

    Forward already knows everything backward needs (the loss is the end of the graph), so
    computing each chunk's gradients while its logits exist avoids keeping or recomputing them.
    """

    @staticmethod
    def forward(ctx, hidden, target, head, chunk, *params):  # head: a module or a function
        grad_hidden = torch.empty_like(hidden) if hidden.requires_grad else None
        grad_params = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        total = torch.zeros((), device=hidden.device, dtype=torch.float32)
        ce = _ce_with_grad_fn(hidden.device.type)
        for i in range(0, hidden.shape[0], chunk):
            h = hidden[i : i + chunk].detach().requires_grad_(grad_hidden is not None)
            with torch.enable_grad():
                logits = head(h)
                loss, dlogits = ce(logits.detach(), target[i : i + chunk])
                wrt = ([h] if grad_hidden is not None else []) + list(params)
                grads = list(torch.autograd.grad(logits, wrt, dlogits))
            total += loss
            if grad_hidden is not None:
                grad_hidden[i : i + chunk] = grads.pop(0)
            for acc, g in zip(grad_params, grads, strict=True):
                acc += g
        ctx.save_for_backward(grad_hidden, *grad_params)
        ctx.param_dtypes = [p.dtype for p in params]
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_hidden, *grad_params = ctx.saved_tensors
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_out.to(grad_hidden.dtype)
        scaled = [
            (g * grad_out).to(dt) for g, dt in zip(grad_params, ctx.param_dtypes, strict=True)
        ]
        return grad_hidden, None, None, None, *scaled


def ce_with_grad(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ cross-entropy of a chunk of logits and its gradient towards them (fp32 math)."""
    x = logits.float()
    lse = torch.logsumexp(x, dim=-1)
    loss = (lse - x.gather(1, target[:, None]).squeeze(1)).sum()
    grad = torch.exp(x - lse[:, None])
    grad.scatter_add_(1, target[:, None], torch.full_like(grad[:, :1], -1.0))
    return loss, grad.to(logits.dtype)


@functools.cache
def _ce_with_grad_fn(device_type: str):
    """`ce_with_grad`, compiled into fused kernels on CUDA (eager elsewhere)."""
    return torch.compile(ce_with_grad, dynamic=True) if device_type == "cuda" else ce_with_grad
