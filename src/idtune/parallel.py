"""The engine a training process runs under accelerate: one process, DDP, DeepSpeed or FSDP2.

`idtune train --gpus/--deepspeed/--fsdp/--nnodes` starts the processes through accelerate's own
launcher (see `launcher.py`), which tells each of them the engine through its environment; the
`Accelerator` built here reads it. Everything the loop needs to stay engine-agnostic lives here:

- FSDP2 is idtune's own, as torchtitan applies it (`shard`): accelerate only starts the processes
  and keeps the scheduler and RNG states; `fully_shard` goes on each decoder layer (compiled
  first, when `compile` is on) and on the root (embeddings, final norm, LM head), full
  fine-tunes compute in bf16 through FSDP2's `MixedPrecisionPolicy` (fp32 sharded weights and
  optimizer state, fp32 gradient reduction), a LoRA adapter stays whole on every rank
  while its frozen base is sharded, and checkpoints are torch's distributed checkpoint
  (`save_sharded` / `load_sharded`). It runs the same on GPUs (NCCL) and on CPU (gloo).

- `LossModule`: the model and its loss in one module, so the loss (chunked cross-entropy
  included) runs inside the forward of whatever wraps the model (DDP, DeepSpeed's engine, FSDP2's
  root) and each engine's own forward/backward bookkeeping sees the whole step.
- `fill_deepspeed_config`: the DeepSpeed values that accelerate would take from a dataloader
  (idtune has none: micro-batches are token budgets) and the ones idtune relies on.
- sums across processes (token counts for the loss, logging), peak GPU memory, and the full state
  dict of sharded weights (ZeRO-3, FSDP2), gathered for rank 0 to write.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

from . import watch

SHARDED = ("deepspeed_zero3", "fsdp2")  # engines that split the weights themselves across ranks
FSDP_ENV = "IDTUNE_FSDP"  # set to 1 by the launcher: this process shards with FSDP2 (`shard`)
FSDP_DIR = "fsdp"  # a FSDP2 checkpoint's sharded weights and optimizer state (torch DCP)


class LossModule(torch.nn.Module):
    """The model to train with its loss: `forward(**batch)` returns the summed loss of a batch."""

    def __init__(self, model: Any, fused_loss: str, unlike_weight: float):
        super().__init__()
        self.model = model
        self.fused_loss, self.unlike_weight = fused_loss, unlike_weight
        self.config = model.config  # accelerate's DeepSpeed set-up reads hidden_size from it
        self._no_split_modules = getattr(model, "_no_split_modules", None)  # FSDP2's wrap policy

    def forward(self, **batch: Any) -> torch.Tensor:
        from .loss import causal_lm_loss

        loss, _ = causal_lm_loss(self.model, batch, self.fused_loss, self.unlike_weight)
        return loss


def make_accelerator(grad_accum: int, report_to: str = "none", tracker_dir: Any = None) -> Any:
    """The Accelerator of this process, with the engine its launcher chose and the tracker
    `report_to` names (see watch.py), writing under `tracker_dir`.

    The scheduler is stepped once per optimizer step whatever the number of processes
    (accelerate's default steps it once per process, for dataloaders that grow with them).
    """
    from accelerate import Accelerator

    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    return Accelerator(
        cpu=not torch.cuda.is_available() and not deepspeed,
        gradient_accumulation_steps=grad_accum,
        step_scheduler_with_optimizer=False,
        log_with=watch.log_with(report_to),
        project_dir=str(tracker_dir) if tracker_dir is not None else None,
    )


def engine_name(accelerator: Any) -> str:
    """single, ddp, deepspeed_zero{1,2,3} or fsdp2: what idtune.json and checkpoints record."""
    from accelerate.utils import DistributedType

    if os.environ.get(FSDP_ENV) == "1":
        return "fsdp2"
    kind = accelerator.distributed_type
    if kind == DistributedType.DEEPSPEED:
        return f"deepspeed_zero{accelerator.state.deepspeed_plugin.zero_stage}"
    if kind == DistributedType.FSDP:
        return "fsdp2" if accelerator.is_fsdp2 else "fsdp"
    return "ddp" if accelerator.num_processes > 1 else "single"


def loss_mode(fused_loss: str, engine: str, head: Any = None) -> str:
    """The loss mode to train with under this engine, given the model's LM head.

    The chunked and liger losses call the decoder and the head's weight directly, inside one
    custom autograd function. FSDP2 (`shard`) keeps the head in the root unit, whose weights
    are gathered for the whole of LossModule.forward. Under ZeRO-3 the chunked loss gathers a
    plain linear head's weight itself (`loss.zero3_gathered`); any other head (LoRA on
    lm_head) needs its module's own hooks, so the model's forward builds the logits there, and
    liger's loss (not run under ZeRO-3) gives way to the chunked one.
    """
    if engine != "deepspeed_zero3" or fused_loss == "none":
        return fused_loss
    if type(head) is not torch.nn.Linear:
        return "none"
    return "chunked" if fused_loss == "liger" else fused_loss


def compiles(method: str, engine: str) -> bool:
    """Whether `compile` applies under this engine: not to LoRA under ZeRO-3, whose hooks on
    every module inside a decoder layer (the frozen weights gathered one by one) split each
    compiled layer into many graphs, half the speed of the uncompiled layers on one GPU."""
    return not (engine == "deepspeed_zero3" and method != "full")


def bf16_compute(cfg: Any, device: Any, engine: str) -> bool:
    """True when FSDP2 should cast the fp32 weights of a full fine-tune to bf16 for compute
    (`MixedPrecisionPolicy`) instead of running autocast over them."""
    return (
        engine == "fsdp2"
        and cfg.method == "full"
        and cfg.dtype == "auto"
        and device.type == "cuda"
        and torch.cuda.is_bf16_supported()
    )


def shard(wrapped: LossModule, device: Any, bf16: bool, adapter: bool) -> None:
    """Apply FSDP2 in place, in torchtitan's order: each decoder layer (already compiled by
    `accel.optimize` when `compile` is on) is its own unit, the rest (embeddings, final norm,
    LM head) the root's. `bf16`: compute in bf16 from fp32 weights, reduce gradients in fp32.
    `adapter` (LoRA): the trainable weights stay whole on every rank, only the frozen ones are
    sharded.

    Call before the optimizer is built: the parameters become DTensor shards.
    """
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from .accel import decoder_layers

    if not dist.is_initialized():  # one process: accelerate started no process group
        from .ports import free_port

        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    mp = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if bf16
        else MixedPrecisionPolicy()
    )
    # an adapter (LoRA: the other weights frozen) stays whole on every rank, as DDP and
    # ZeRO-3's persistence threshold (`zero3_sizes`) keep it: FSDP2 gathers the frozen base
    # only, the optimizer and clipping see plain tensors, `reduce_replicated` averages its grads
    whole = {p for p in wrapped.parameters() if p.requires_grad} if adapter else None
    layers = decoder_layers(wrapped.model)
    for i, layer in enumerate(layers):
        # the last layer's weights are needed again right away by backward: kept gathered
        fully_shard(layer, mesh=mesh, mp_policy=mp, reshard_after_forward=i < len(layers) - 1,
                    ignored_params=whole)  # fmt: skip
    fully_shard(wrapped, mesh=mesh, mp_policy=mp, ignored_params=whole)


def reduce_replicated(parameters: Any) -> None:
    """Average over the ranks the gradients of the weights FSDP2 leaves whole on each of them
    (an adapter's, see `shard`), one all-reduce per dtype; nothing in one process. A weight
    that got a gradient on some ranks only (an expert that the tokens of the others did not
    reach) counts as zeros on the others, so every rank reduces the same tensors in the same
    order; one that got none anywhere keeps no gradient, as in one process."""
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
    from torch.distributed.tensor import DTensor

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    whole = [p for p in parameters if p.requires_grad and not isinstance(p, DTensor)]
    if not whole:
        return
    seen = torch.tensor([p.grad is not None for p in whole], dtype=torch.float32,
                        device=whole[0].device)  # fmt: skip
    dist.all_reduce(seen)
    whole = [p for p, n in zip(whole, seen.tolist(), strict=True) if n > 0]
    for p in whole:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in whole]
    for dtype in sorted({g.dtype for g in grads}, key=str):
        same = [g for g in grads if g.dtype == dtype]
        flat = _flatten_dense_tensors(same)
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        for g, reduced in zip(same, _unflatten_dense_tensors(flat, same), strict=True):
            g.copy_(reduced)


def clip_grad_norm(parameters: Any, max_norm: float) -> None:
    """Clip gradients by their global norm, as torch's clip_grad_norm_ does: a full fine-tune's
    are DTensor shards, whose norm is summed over all ranks first; an adapter's are whole."""
    from torch.distributed.tensor import DTensor

    params = [p for p in parameters if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)


def save_sharded(model: Any, optimizer: Any, directory: Any, trainable_only: bool) -> None:
    """FSDP2 weights (trainable ones only for LoRA) and optimizer state: each rank writes its
    shards with torch.distributed.checkpoint (a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    opts = StateDictOptions(ignore_frozen_params=trainable_only)
    msd, osd = get_state_dict(model, optimizer, options=opts)
    dcp.save({"model": msd, "optimizer": osd}, checkpoint_id=str(directory))


def load_sharded(model: Any, optimizer: Any, directory: Any, trainable_only: bool) -> None:
    """The counterpart of `save_sharded` (a collective): each rank reads its shards."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_state_dict,
        set_state_dict,
    )

    opts = StateDictOptions(ignore_frozen_params=trainable_only)
    msd, osd = get_state_dict(model, optimizer, options=opts)
    state = {"model": msd, "optimizer": osd}
    dcp.load(state, checkpoint_id=str(directory))  # every key asked for, or it raises
    # not strict: the frozen weights (LoRA's base) are neither saved nor asked for
    opts = StateDictOptions(ignore_frozen_params=trainable_only, strict=not trainable_only)
    set_state_dict(model, optimizer, model_state_dict=state["model"],
                   optim_state_dict=state["optimizer"], options=opts)  # fmt: skip


def fill_deepspeed_config(
    accelerator: Any, rows_per_micro_batch: int, grad_accum: int, model: Any = None
) -> None:
    """Set what DeepSpeed needs before `accelerator.prepare` (no-op for other engines).

    Micro-batches are token budgets, so `train_micro_batch_size_per_gpu` (informative for
    DeepSpeed: it never batches data itself) is the rows of one micro-batch. Gradient
    accumulation is idtune's `grad_accum`; clipping is at 1.0 as for the other engines; ZeRO-3
    gathers 16-bit weights on save so the final adapter can be written, and its "auto"
    persistence and prefetch sizes come from `zero3_sizes(model)`.
    """
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:
        return
    conf = plugin.deepspeed_config
    if conf.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        conf["train_micro_batch_size_per_gpu"] = rows_per_micro_batch
    if conf.get("gradient_accumulation_steps", "auto") == "auto":
        conf["gradient_accumulation_steps"] = grad_accum
    if conf.get("gradient_clipping", "auto") == "auto":
        conf["gradient_clipping"] = 1.0
    zero = conf.setdefault("zero_optimization", {})
    if zero.get("stage") == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        if model is not None:
            for key, value in zero3_sizes(model).items():
                if zero.get(key, "auto") == "auto":
                    zero[key] = value
            zero3_leaf_layers(model)


def zero3_linear(accelerator: Any, method: str, compiled: bool) -> None:
    """Choose ZeRO-3's `memory_efficient_linear` where the JSON leaves it "auto" (or unset),
    before any model is built: DeepSpeed's first `zero.Init` replaces torch's linear for the
    whole process, for good (`deepspeed_linear` tells which one ran).

    Off (torch's linear) for a compiled full fine-tune: its decoder layers are ZeRO-3 leaves
    compiled whole, and a compiled layer saves the weight parameters themselves for backward,
    which ZeRO-3 frees after forward as it would with DeepSpeed's linear (measured on 2 CPU
    processes: tests/test_zero3_two_processes.py), while DeepSpeed's linear, a Python autograd
    function, cost 25 % of the speed and 6.5 GiB of peak memory on one H100 (BENCHMARKS.md). On
    otherwise: an eager torch linear saves a view of the gathered weight, which would keep every
    layer's whole weights alive from forward to backward on each GPU.
    """
    from transformers.integrations.deepspeed import deepspeed_config

    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:
        return
    # accelerate keeps two copies: the engine's, and the one transformers' zero.Init reads
    for conf in (plugin.deepspeed_config, deepspeed_config()):
        zero = (conf or {}).get("zero_optimization") or {}
        if zero.get("stage") == 3 and zero.get("memory_efficient_linear", "auto") == "auto":
            zero["memory_efficient_linear"] = not (method == "full" and compiled)


def deepspeed_linear() -> bool:
    """Whether DeepSpeed's memory-efficient linear has replaced torch's in this process."""
    return getattr(torch.nn.functional.linear, "__module__", "").startswith("deepspeed")


@contextlib.contextmanager
def whole_weights(accelerator: Any) -> Iterator[None]:
    """A context where models load whole even under ZeRO-3: the base model that answers the
    regularization prompts generates text, which partitioned weights cannot do. transformers
    builds a model under DeepSpeed's `zero.Init` while accelerate's DeepSpeed config is
    registered with it (accelerate's own `zero3_init_context_manager(enable=False)` registers
    it again), so it is unregistered meanwhile."""
    from transformers.integrations.deepspeed import (
        set_hf_deepspeed_config,
        unset_hf_deepspeed_config,
    )

    registered = getattr(accelerator.state.deepspeed_plugin, "dschf", None)
    if registered is None:
        yield
        return
    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        set_hf_deepspeed_config(registered)


def zero3_leaf_layers(model: Any) -> int:
    """Make each decoder layer of a full fine-tune a ZeRO-3 leaf: its weights are gathered at
    once when it starts (and again for its backward) and no hooks run on the modules inside
    it, where ZeRO-3 would otherwise fetch and release every linear layer one by one: FSDP2's
    per-layer unit, and nothing of DeepSpeed's inside a compiled layer. Returns the count.

    Not with frozen weights (LoRA): DeepSpeed 0.19.8 then leaves a leaf's frozen weights
    partitioned in its backward (a size-0 weight; seen on CPU), so LoRA keeps per-module hooks.
    """
    from deepspeed.utils import set_z3_leaf_module

    from .accel import decoder_layers

    if not all(p.requires_grad for p in model.parameters()):
        return 0
    layers = decoder_layers(model)
    for layer in layers:
        set_z3_leaf_module(layer, True)
    return len(layers)


REDUCE_BUCKET_MAX = 500_000_000  # DeepSpeed's default reduce_bucket_size (elements)


def zero3_sizes(model: Any) -> dict:
    """ZeRO-3's size settings for this model, in parameters (elements).

    - `stage3_prefetch_bucket_size`: one decoder layer, so the next layer's weights are
      gathered while this one computes (accelerate's "auto", 0.9·hidden², is a few matrices).
    - `stage3_param_persistence_threshold`: with frozen weights (LoRA), every trainable weight
      is under it and so never partitioned: the adapters (a few MB) stay whole on each rank and
      are not gathered before each use nor released after; the large frozen matrices stay above
      it and partitioned. Without frozen weights, accelerate's 10·hidden (norms, biases).
    - `reduce_bucket_size`: the gradients of one decoder layer, so they are reduced once a layer
      (at most DeepSpeed's own default, 5e8; a buffer of that size on each process). accelerate's
      "auto", hidden², holds a few matrices and is smaller than one MLP weight, which ZeRO-3
      then reduces on its own through a slower path: per-bucket Python work (a quarter of a
      full fine-tune's Python calls a step, BENCHMARKS.md).
    """
    from .accel import decoder_layers

    hidden = getattr(getattr(model, "config", None), "hidden_size", None) or 1024
    layers = decoder_layers(model)
    # the largest layer: MoE models may open with dense layers (DeepSeek) or alternate them
    per_layer = max((sum(_numel(p) for p in x.parameters()) for x in layers), default=0)
    grads = max((sum(_numel(p) for p in x.parameters() if p.requires_grad) for x in layers),
                default=0)  # fmt: skip
    out = {
        "stage3_prefetch_bucket_size": max(int(0.9 * hidden * hidden), per_layer),
        "reduce_bucket_size": min(max(hidden * hidden, grads), REDUCE_BUCKET_MAX),
    }
    params = list(model.parameters())
    trainable = [_numel(p) for p in params if p.requires_grad]
    threshold = 10 * hidden
    if trainable and len(trainable) < len(params):
        threshold = max(threshold, max(trainable))
    out["stage3_param_persistence_threshold"] = threshold
    return out


def _deepspeed_fp32(accelerator: Any, model: Any) -> dict | None:
    """The fp32 master weights DeepSpeed's bf16 mode keeps in its optimizer, whole, on rank 0
    (a collective under ZeRO-3); None where DeepSpeed keeps none (its fp32 mode)."""
    from deepspeed.utils import safe_get_full_fp32_param

    out = {}
    for name, p in accelerator.unwrap_model(model).named_parameters():
        full = safe_get_full_fp32_param(p)
        if full is None:
            return None
        if accelerator.is_main_process:
            out[name.removeprefix("model.")] = full.detach().float().cpu()
    return out


def _numel(p: Any) -> int:
    """Elements of a parameter, also when ZeRO-3 partitioned it at load (`ds_numel`)."""
    return int(getattr(p, "ds_numel", p.numel()))


def save_kwargs(accelerator: Any) -> dict:
    """Extra `save_state` arguments: DeepSpeed keeps frozen (base) weights out of checkpoints."""
    return {"exclude_frozen_parameters": True} if _deepspeed(accelerator) else {}


def load_kwargs(accelerator: Any) -> dict:
    """Extra `load_state` arguments, the counterpart of `save_kwargs`."""
    return {"load_module_strict": False} if _deepspeed(accelerator) else {}


def _deepspeed(accelerator: Any) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.DEEPSPEED


def global_sum(accelerator: Any, values: list[float]) -> list[float]:
    """Element-wise sums over all processes (every process must call it)."""
    t = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    if accelerator.num_processes > 1:
        t = accelerator.reduce(t, reduction="sum")
    return t.tolist()


def peak_gib(accelerator: Any, everywhere: bool = False) -> float | None:
    """torch.cuda.max_memory_allocated in GiB (model load included): this process, or the
    largest over all processes (a collective); None without CUDA."""
    if not torch.cuda.is_available():
        return None
    t = torch.tensor([torch.cuda.max_memory_allocated() / 2**30], device=accelerator.device)
    if everywhere and accelerator.num_processes > 1:
        t = accelerator.gather(t)
    return round(float(t.max()), 2)


def full_state_dict(
    accelerator: Any, model: Any, engine: str, trainable_only: bool = False
) -> dict | None:
    """The inner model's state dict when weights are sharded, else None (the model has it);
    under FSDP2 only the trainable weights with `trainable_only` (all an adapter needs); a
    full fine-tune under DeepSpeed's bf16 mode gives its fp32 master weights.

    A collective under ZeRO-3 and FSDP2: every process calls it; rank 0 gets the tensors.
    """
    if (
        engine.startswith("deepspeed")
        and not trainable_only
        and accelerator.mixed_precision != "no"
    ):
        state = _deepspeed_fp32(accelerator, model)  # a full fine-tune: its fp32 master weights
        if state is not None:
            return state
    if engine not in SHARDED:
        return None
    if engine == "fsdp2":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        opts = StateDictOptions(
            full_state_dict=True, cpu_offload=True, ignore_frozen_params=trainable_only
        )
        state = get_model_state_dict(model, options=opts)
        # tied weights (an LM head sharing the embeddings) once, under the name that
        # save_pretrained keeps for them (the first registered)
        every = {n for n, _ in model.named_parameters(remove_duplicate=False)}
        aliases = every - {n for n, _ in model.named_parameters()}
        state = {k: v for k, v in state.items() if k not in aliases}
    else:
        state = accelerator.get_state_dict(model) or {}
    return {k.removeprefix("model."): v for k, v in state.items()}
