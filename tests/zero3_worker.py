"""Run by test_zero3_two_processes.py under `torch.distributed.run` (2 gloo processes, CPU).

`loss-chunked` / `loss-none`: see `losses`. The other modes:

A tiny Qwen2 full fine-tune under ZeRO-3, its decoder layers ZeRO-3 leaves as idtune makes them,
in one of three modes: `eager` and `compiled` (the layers compiled as idtune compiles them) with
torch's linear (`memory_efficient_linear` off), `deepspeed`: compiled with DeepSpeed's linear.
After each forward, rank 0 prints the bytes the autograd graph keeps for backward (each storage
once), the bytes of the decoder layers' whole weights and of the LM head's, as one JSON line.
"""

from __future__ import annotations

import json
import sys

import deepspeed
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from idtune import accel, parallel

CONFIG = {
    "zero_optimization": {
        "stage": 3,
        "memory_efficient_linear": False,
        # release every weight after use, as on a model far larger than these limits
        "stage3_param_persistence_threshold": 100,
        "stage3_max_live_parameters": 0,
        "stage3_max_reuse_distance": 0,
        "stage3_prefetch_bucket_size": 0,
    },
    "train_micro_batch_size_per_gpu": 1,
    "gradient_accumulation_steps": 1,
    "zero_allow_untested_optimizer": True,
}


def saved_bytes(loss: torch.Tensor) -> int:
    """Bytes of every storage the graph behind `loss` saves for backward, each counted once."""
    seen, total, stack, nodes = set(), 0, [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in nodes:
            continue
        nodes.add(node)
        tensors = []
        for name in dir(node):
            if name.startswith("_saved_"):
                try:
                    value = getattr(node, name)
                except RuntimeError:  # freed or not a tensor
                    continue
                values = value if isinstance(value, (list, tuple)) else [value]
                tensors += [v for v in values if isinstance(v, torch.Tensor)]
        try:  # custom and compiled functions
            tensors += [t for t in node.saved_tensors if isinstance(t, torch.Tensor)]
        except (AttributeError, RuntimeError):
            pass
        for t in tensors:
            storage = t.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
            if key not in seen:
                seen.add(key)
                total += storage.nbytes()
        stack += [fn for fn, _ in node.next_functions]
    return total


def tiny_qwen2(deepspeed_linear: bool, hidden_size: int, intermediate_size: int, tied: bool):
    """A 2-layer Qwen2 built under ZeRO-3 (gloo) with DeepSpeed's linear or torch's."""
    CONFIG["zero_optimization"]["memory_efficient_linear"] = deepspeed_linear
    deepspeed.init_distributed(dist_backend="gloo")
    torch.manual_seed(0)
    conf = Qwen2Config(vocab_size=512, hidden_size=hidden_size,
                       intermediate_size=intermediate_size, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2,
                       tie_word_embeddings=tied)  # fmt: skip
    with deepspeed.zero.Init(config_dict_or_path=CONFIG):
        return Qwen2ForCausalLM(conf)


def main(mode: str) -> None:
    model = tiny_qwen2(mode == "deepspeed", hidden_size=256, intermediate_size=1024, tied=True)
    ours = torch.nn.functional.linear.__module__.startswith("deepspeed")
    assert ours == (mode == "deepspeed"), torch.nn.functional.linear
    layers = accel.decoder_layers(model)
    weights = sum(p.ds_numel * p.element_size() for layer in layers for p in layer.parameters())
    head = model.get_output_embeddings().weight
    head = head.ds_numel * head.element_size()
    assert parallel.zero3_leaf_layers(model) == len(layers)
    if mode != "eager":
        for layer in layers:
            accel.compile_for_training(layer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=CONFIG)
    ids = torch.randint(0, 512, (1, 32))
    for step in range(2):  # the second step runs with DeepSpeed's trace of the first
        loss = engine(input_ids=ids, labels=ids).loss
        kept = saved_bytes(loss)
        if torch.distributed.get_rank() == 0:
            print(json.dumps({"mode": mode, "step": step, "saved": kept, "weights": weights,
                              "head": head}),
                  flush=True)  # fmt: skip
        engine.backward(loss)
        engine.step()


def losses(fused: str) -> None:
    """Three steps of idtune's LossModule with loss mode `fused` (chunked: the head's weight
    gathered by loss.zero3_gathered; none: the model's full logits) on a tiny Qwen2 with its
    own (untied) LM head, each rank its own tokens; rank 0 alone has tokens to unlearn (the
    unlikelihood term), rank 1's last micro-batch no trained token. Rank 0 prints the losses
    summed over ranks and a checksum of the head's gathered weight, as one JSON line."""
    model = tiny_qwen2(True, hidden_size=64, intermediate_size=128, tied=False)
    wrapped = parallel.LossModule(model, fused, 1.0)
    optimizer = torch.optim.AdamW(wrapped.parameters(), lr=1e-3)
    engine, *_ = deepspeed.initialize(model=wrapped, optimizer=optimizer, config=CONFIG)
    rank = torch.distributed.get_rank()
    gen = torch.Generator().manual_seed(rank)
    out = []
    for step in range(3):
        ids = torch.randint(0, 512, (1, 32), generator=gen)
        labels = torch.cat([ids[:, 1:], torch.full((1, 1), -100)], dim=1)
        unlike = torch.full_like(labels, -100)
        if rank == 0:
            unlike[0, 4:8] = torch.randint(0, 512, (4,), generator=gen)
        if rank == 1 and step == 2:
            labels[:] = -100
        loss = engine(input_ids=ids, labels=labels, unlike=unlike,
                      attention_mask=torch.ones_like(ids))  # fmt: skip
        total = loss.detach().clone()
        torch.distributed.all_reduce(total)
        out.append(round(float(total), 5))
        engine.backward(loss)
        engine.step()
    head = model.get_output_embeddings().weight
    with deepspeed.zero.GatheredParameters([head]):
        check = float(head.double().abs().sum())
    if rank == 0:
        print(json.dumps({"mode": fused, "losses": out, "head": check}), flush=True)


if __name__ == "__main__":
    if sys.argv[1].startswith("loss-"):
        losses(sys.argv[1].removeprefix("loss-"))
    else:
        main(sys.argv[1])
