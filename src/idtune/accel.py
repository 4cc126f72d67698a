"""Speed settings for training: attention for packed rows, LoRA dtype, torch.compile.

Packed rows hold several samples; their position ids restart at 0 for every sample and no
attention mask is passed. Attention must stay inside each sample. Without the flash-attn package
PyTorch offers three ways to do that, all reachable through `attn_implementation`:

- `sdpa`: transformers turns restarting position ids into a block-diagonal boolean mask
  (`masking_utils.find_packed_sequence_indices`); SDPA then runs its masked kernel over the whole
  row, masked blocks included.
- `flex_attention`: the same mask as a compiled block mask; fully masked blocks are skipped.
- `varlen` (idtune's own, registered below): rows are flattened into one long sequence with
  cumulative sample lengths and handed to `torch.nn.attention.varlen.varlen_attn` (FlashAttention
  inside PyTorch), which never touches another sample's keys. It needs CUDA and torch ≥ 2.9;
  `auto` picks it on CUDA when available (it measured fastest, see bench/results/train_gpu.md),
  else sdpa. Without the per-batch lengths (generation, evaluation) it falls back to sdpa.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
import torch.nn.functional as F

VARLEN = "idtune_varlen"  # the name registered with transformers' attention interfaces


# ---------------------------------------------------------------- attention
def varlen_available(device: str) -> bool:
    """True when PyTorch's varlen (FlashAttention) kernel runs on `device`, backward included.

    The first call probes the kernel once on small inputs against SDPA (causal masking, grouped
    kv heads) and records how this torch version wants to be called.
    """
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return False
    if not _varlen_how:
        _varlen_how.update(_probe_varlen(torch.device(device)) or {"unusable": True})
    return "unusable" not in _varlen_how


_varlen_how: dict = {}  # what the probe found: varlen_attn's keyword arguments, native GQA


def _probe_varlen(device: Any) -> dict | None:
    """Run varlen_attn on two segments with grouped kv heads, forward and backward, vs SDPA."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    params = inspect.signature(varlen_attn).parameters
    causal = {"is_causal": True} if "is_causal" in params else {"window_size": (-1, 0)}
    gen = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(24, h, 64, device=device, generator=gen) for h in (4, 2, 2))
    q, k, v = q.bfloat16(), k.bfloat16(), v.bfloat16()
    ref = torch.cat([_sdpa_segment(q[a:b], k[a:b], v[a:b]) for a, b in ((0, 9), (9, 24))])
    cu = torch.tensor([0, 9, 24], device=device, dtype=torch.int32)
    gqa = dict(causal, enable_gqa=True) if "enable_gqa" in params else dict(causal)
    for kwargs, native in ((gqa, True), (causal, False)):
        kk, vv = (k, v) if native else (k.repeat_interleave(2, 1), v.repeat_interleave(2, 1))
        qq = q.clone().requires_grad_()
        try:
            out = varlen_attn(qq, kk, vv, cu, cu, 15, 15, **kwargs)
            out.float().sum().backward()
        except (RuntimeError, TypeError, ValueError, NotImplementedError):
            continue
        if torch.allclose(out.float(), ref.float(), atol=2e-2) and qq.grad is not None:
            return {"kwargs": kwargs, "native_gqa": native}
    return None


def _sdpa_segment(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention of one (tokens, heads, dim) segment, kv heads repeated."""
    rep = q.shape[1] // k.shape[1]
    q, k, v = q.transpose(0, 1), k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    out = F.scaled_dot_product_attention(q, k.transpose(0, 1), v.transpose(0, 1), is_causal=True)
    return out.transpose(0, 1)


def attention_implementation(cfg: Any, device: str) -> str:
    """The `attn_implementation` to load the model with (`auto` and `varlen` resolved)."""
    name = getattr(cfg, "attn_implementation", None) or "auto"
    if name in ("auto", "varlen"):
        if varlen_available(device):
            register_varlen()
            return VARLEN
        if name == "varlen":
            from .errors import UserError

            raise UserError("attn_implementation varlen needs a CUDA GPU and torch >= 2.9")
        return "sdpa"
    return name


@functools.cache
def register_varlen() -> None:
    """Make `attn_implementation="idtune_varlen"` known to transformers (once)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(VARLEN, varlen_attention)
    AttentionMaskInterface.register(VARLEN, sdpa_mask)  # the mask of the sdpa fallback


def varlen_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: varlen kernel for packed rows, else sdpa.

    query is (batch, heads, length, head_dim), key/value (batch, kv_heads, length, head_dim);
    the result is (batch, length, heads, head_dim) like every transformers attention function.
    """
    cu_seqlens = kwargs.get("cu_seq_lens_q")
    if cu_seqlens is None or query.shape[2] != key.shape[2] or dropout:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    b, h, n, d = query.shape
    q = query.transpose(1, 2).reshape(b * n, h, d)
    k = key.transpose(1, 2).reshape(b * n, key.shape[1], d)
    v = value.transpose(1, 2).reshape(b * n, value.shape[1], d)
    if scaling is not None and abs(scaling - d**-0.5) > 1e-6:
        q = q * (scaling * d**0.5)  # the kernel's own scale is 1/sqrt(d)
    dtype = q.dtype
    if dtype not in (torch.bfloat16, torch.float16) and q.is_cuda:
        # fp32 weights under autocast (full fine-tuning): rotary embeddings hand over fp32
        # q/k/v, and the flash kernel takes only 16-bit inputs
        q, k, v = (t.to(torch.bfloat16) for t in (q, k, v))
    out = varlen_kernel(q, k, v, cu_seqlens, int(kwargs["max_length_q"]))
    return out.view(b, n, h, d).to(dtype), None


def varlen_kernel(q, k, v, cu_seqlens, max_len: int) -> torch.Tensor:
    """Causal attention within each segment of flattened (tokens, heads, dim) tensors."""
    from torch.nn.attention.varlen import varlen_attn

    if k.shape[1] != q.shape[1] and not _varlen_how["native_gqa"]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    kwargs = _varlen_how["kwargs"]
    return varlen_attn(q, k, v, cu_seqlens, cu_seqlens, max_len, max_len, **kwargs)


def packed_kwargs(model: Any, batch: dict) -> dict:
    """Per-batch sample boundaries for the varlen kernel (empty unless the model uses it).

    Every sample (and the padding at a row's end) starts where its position id is 0. The
    lengths are computed once per forward here instead of once per layer.
    """
    pos = batch.get("position_ids")
    if pos is None or batch.get("attention_mask") is not None:
        return {}
    if getattr(_config(model), "_attn_implementation", None) != VARLEN:
        return {}
    flat = pos.reshape(-1)
    starts = (flat == 0).nonzero().squeeze(1)
    end = torch.tensor([flat.numel()], device=flat.device)
    cu = torch.cat([starts, end]).to(torch.int32)
    longest = int((cu[1:] - cu[:-1]).max())
    longest = min(-(-longest // 64) * 64, pos.shape[-1])  # round up: fewer compiled variants
    return {
        "cu_seq_lens_q": cu,
        "cu_seq_lens_k": cu,
        "max_length_q": longest,
        "max_length_k": longest,
    }


def _config(model: Any) -> Any:
    while hasattr(model, "module"):  # DDP and similar wrappers
        model = model.module
    return getattr(model, "config", None)


# ---------------------------------------------------------------- loading and optimising
def load_kwargs(cfg: Any, device: str) -> dict:
    """Extra `from_pretrained` keyword arguments: attention implementation, target device."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    kwargs: dict[str, Any] = {"attn_implementation": attention_implementation(cfg, device)}
    # load straight onto the GPU; under ZeRO-3 DeepSpeed places (and partitions) the weights
    if device.startswith("cuda") and not is_deepspeed_zero3_enabled():
        kwargs["device_map"] = {"": device}
    return kwargs


class HostEmbedding(torch.nn.Module):
    """A frozen input embedding table kept in host memory: the rows of a micro-batch are looked
    up on the CPU and copied to `device`, so the table (1 GiB for a 7B model) takes no GPU
    memory. Trains nothing: the table stays as loaded, a plain tensor attribute rather than a
    parameter, so the model's `.to(device)` (accelerate's placement) leaves it where it is and
    checkpoints, which hold the trained weights only, never see it."""

    def __init__(self, table: torch.nn.Embedding, device: str) -> None:
        super().__init__()
        weight = table.weight.detach().to("cpu")
        if device.startswith("cuda"):
            weight = weight.pin_memory()
        self.weight = weight
        self.padding_idx = table.padding_idx
        self.device = torch.device(device)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        ids = input_ids.to("cpu")
        rows = torch.empty((*ids.shape, self.weight.shape[1]), dtype=self.weight.dtype,
                           pin_memory=self.device.type == "cuda")  # fmt: skip
        torch.index_select(self.weight, 0, ids.reshape(-1), out=rows.view(-1, rows.shape[-1]))
        return rows.to(self.device, non_blocking=True)


def embeddings_to_host(model: Any, device: str) -> None:
    """Replace the model's input embedding table by a `HostEmbedding` (the caller checked that
    the table is a plain, untied `nn.Embedding`) and give its GPU memory back."""
    model.set_input_embeddings(HostEmbedding(model.get_input_embeddings(), device))
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def optimize(model: Any, cfg: Any, device: str, compile: bool | None = None) -> Any:
    """Ready a (PEFT) model for fast training; returns the model to train.

    - LoRA weights take the dtype of bf16 base weights (GPU): peft keeps them in fp32, which
      casts every LoRA input to fp32 and runs those matmuls off the tensor cores. fp16 bases
      keep fp32 adapters (fp16 weights would need loss scaling).
    - `compile`: each decoder layer's forward is compiled in place, so the model keeps its
      class, its state-dict keys and its methods (save_pretrained, generate), and the chunked
      loss, which calls the decoder directly, runs compiled code too. The compiled forward runs
      only while gradients are on (training); generation and evaluation stay eager, where the
      growing KV cache would otherwise recompile at every step. The `compile` argument, when
      given, replaces the recipe's (`parallel.compiles`).
    """
    emb = model.get_input_embeddings()
    if emb is not None and emb.weight.dtype == torch.bfloat16:
        for name, p in model.named_parameters():
            if p.requires_grad and "lora_" in name:
                p.data = p.data.to(torch.bfloat16)
    if compile is None:
        compile = getattr(cfg, "compile", False)
    if compile:
        for layer in decoder_layers(model):
            compile_for_training(layer)
    return model


def compile_for_training(layer: torch.nn.Module) -> None:
    """Route `layer.forward` to a compiled copy when gradients are enabled (once per layer)."""
    if getattr(layer, "_idtune_compiled", False):
        return
    eager, compiled = layer.forward, torch.compile(layer.forward)

    def forward(*args: Any, **kwargs: Any) -> Any:
        return (compiled if torch.is_grad_enabled() else eager)(*args, **kwargs)

    layer.forward = forward
    layer._idtune_compiled = True


def decoder_layers(model: Any) -> list:
    """The repeated transformer blocks of a (PEFT-wrapped) causal LM."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not layers:  # remote-code models: the blocks are the children of the first ModuleList
        for m in model.modules():
            if isinstance(m, torch.nn.ModuleList) and len(m) > 1:
                return list(m)
    return layers
