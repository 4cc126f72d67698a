"""GPU training benchmark: a plain transformers + peft loop against idtune's path, same data.

    python bench/train_gpu.py [--cases smollm2-135m,qwen2.5-1.5b,qwen2.5-7b] [--out DIR]

Random-initialised real architectures (configs below; nothing is downloaded) and synthetic
identity-length samples (30–120 tokens, the first 40–70 % untrained like a prompt, the rest
trained like an answer). For every case, in the same process and on the same data:

- baseline: transformers + peft, LoRA r64 all-linear (peft's default fp32 adapter weights),
  gradient checkpointing, padded batches of 16 samples, AdamW; QLoRA adds bitsandbytes NF4 and
  peft's `prepare_model_for_kbit_training`, as peft's QLoRA guide does.
- idtune: the model from `idtune.train.load_for_training` (accel: varlen attention, bf16 LoRA,
  compile), rows packed by `render.pack` and collated by `render.collate_packed`, micro-batches
  from `train.micro_batches`, loss from `loss.causal_lm_loss`, the step of `train.train`
  (sum loss / step tokens, clip 1.0, AdamW) with fused AdamW.

Throughput counts real (non-padding) tokens; MFU = tokens/s × 4·N / measured bf16 matmul peak,
N = non-embedding parameters + LM head (DESIGN §6). Peak memory is max_memory_allocated from
before the model load. Writes train_gpu.json to --out and prints the tables (Markdown);
`--merge A.json B.json` combines runs that split the cases over several calls; `--e2e` runs
`idtune train` itself (LoRA and QLoRA, checkpoint, resume, chat); `--smoke` runs it all on CPU
with a tiny shape, to catch Python errors before spending GPU time.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import math
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from idtune import accel, train  # noqa: E402
from idtune import loss as loss_module  # noqa: E402
from idtune.data import render  # noqa: E402
from idtune.loss import causal_lm_loss  # noqa: E402
from idtune.recipes import Lora, TrainConfig  # noqa: E402

IGNORE = -100
DEFAULT_CHUNK = loss_module.CHUNK_ELEMENTS
ENV_KEYS = ("card", "bf16_matmul_tflops", "date", "torch", "transformers", "peft", "bitsandbytes")
LORA = {"r": 64, "alpha": 128, "dropout": 0.05}  # the Qwen recipe's adapter
LR = 2e-4
GIB = 2**30

SHAPES = {
    "smollm2-135m": dict(
        model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
        num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
        tie_word_embeddings=True, rope_theta=100000.0, max_position_embeddings=8192,
        rms_norm_eps=1e-5,
    ),
    "qwen2.5-1.5b": dict(
        model_type="qwen2", vocab_size=151936, hidden_size=1536, intermediate_size=8960,
        num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
        tie_word_embeddings=True, rope_theta=1000000.0, max_position_embeddings=32768,
        rms_norm_eps=1e-6,
    ),
    "qwen2.5-3b": dict(  # the largest-full-fine-tune-on-one-card check (bench/scale_out.py)
        model_type="qwen2", vocab_size=151936, hidden_size=2048, intermediate_size=11008,
        num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
        tie_word_embeddings=True, rope_theta=1000000.0, max_position_embeddings=32768,
        rms_norm_eps=1e-6,
    ),
    "qwen2.5-7b": dict(
        model_type="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944,
        num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
        tie_word_embeddings=False, rope_theta=1000000.0, max_position_embeddings=32768,
        rms_norm_eps=1e-6,
    ),
    "e2e": dict(  # --e2e: the real `idtune train` on a small model with a 152k vocabulary
        model_type="qwen2", vocab_size=151936, hidden_size=256, intermediate_size=512,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        tie_word_embeddings=True, max_position_embeddings=4096,
    ),
    "tiny": dict(  # CPU smoke test of this script
        model_type="llama", vocab_size=4096, hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        tie_word_embeddings=False, max_position_embeddings=4096,
    ),
}  # fmt: skip


@dataclasses.dataclass
class Variant:
    """One idtune setting to time."""

    name: str
    packed: bool = True
    row_tokens: int = 2048
    batch_tokens: int = 16384  # tokens per micro-batch
    grad_accum: int = 1
    checkpointing: bool = False
    fused_loss: str = "auto"
    attention: str | None = None  # None: as loaded (auto)
    compile: bool = False
    lora_dropout: bool = True  # False: peft's dropout modules replaced by Identity (dropout 0)
    optim: str = "adamw"  # adamw (fused) | adamw8bit (bitsandbytes)
    ce_chunk: int = 0  # logits per cross-entropy chunk (0: idtune.loss.CHUNK_ELEMENTS)


@dataclasses.dataclass
class Case:
    name: str
    shape: str
    method: str  # lora | qlora
    variants: list[Variant]  # run in order (compile last: it is in place); headline = `best`
    best: str
    max_peak_gib: float | None = None  # headline must fit (the QLoRA 8 GiB target)


def cases(ablate: bool) -> list[Case]:
    full = Variant("packed + chunked CE + compile, no ckpt", compile=True)
    ablation_15 = [
        Variant("padded 16, bf16 LoRA, ckpt", packed=False, checkpointing=True, fused_loss="none"),
        Variant("+ packed 8×2048 (varlen)", checkpointing=True, fused_loss="none"),
        Variant("+ chunked CE", checkpointing=True),
        Variant("+ no checkpointing"),
        Variant("  liger CE instead", fused_loss="liger"),
        Variant("  sdpa block-diagonal mask", attention="sdpa"),
        Variant("  flex_attention", attention="flex_attention"),
        Variant("  rows 4×1024 (4k tokens)", row_tokens=1024, batch_tokens=4096),
        Variant("  rows 16×512 (8k tokens)", row_tokens=512, batch_tokens=8192),
        Variant("  rows 16×2048 (32k tokens)", batch_tokens=32768),
        Variant("  LoRA dropout 0", lora_dropout=False),
        full,
        Variant("  compiled, LoRA dropout 0", compile=True, lora_dropout=False),
    ]

    lean = {"optim": "adamw8bit", "ce_chunk": 2**25}  # less memory: 8-bit Adam, small CE chunks

    def q7(name: str, tokens: int, **kw) -> Variant:
        """7B QLoRA: 12,288 tokens a step (> 4,096 trained), `tokens` per micro-batch, ckpt."""
        return Variant(
            name, batch_tokens=tokens, grad_accum=12288 // tokens, checkpointing=True, **kw
        )

    return [
        Case("smollm2-135m", "smollm2-135m", "lora", [full], full.name),
        Case(
            "qwen2.5-1.5b",
            "qwen2.5-1.5b",
            "lora",
            ablation_15 if ablate else [Variant("+ no checkpointing"), full],
            full.name,
        ),
        Case(
            "qwen2.5-7b",
            "qwen2.5-7b",
            "qlora",
            [
                q7("2048/micro × 6, ckpt", 2048),
                q7("1024/micro × 12, ckpt", 1024, row_tokens=1024),
                q7("4096/micro × 3, ckpt", 4096),
                q7("2048 × 6, ckpt, liger CE", 2048, fused_loss="liger"),
                q7("2048 × 6, ckpt, LoRA dropout 0", 2048, lora_dropout=False),
                q7("4096 × 3, ckpt, LoRA dropout 0", 4096, lora_dropout=False),
                q7("2048 × 6, ckpt, dropout 0, lean", 2048, lora_dropout=False, **lean),
                q7("2048 × 6, ckpt, compile", 2048, compile=True),
                q7("4096 × 3, ckpt, compile", 4096, compile=True),
                q7("2048 × 6, ckpt, compile, dropout 0", 2048, compile=True, lora_dropout=False),
                q7("4096 × 3, ckpt, compile, dropout 0", 4096, compile=True, lora_dropout=False),
                q7(
                    "2048 × 6, ckpt, compile, dropout 0, lean",
                    2048,
                    compile=True,
                    lora_dropout=False,
                    **lean,
                ),
                q7(
                    "4096 × 3, ckpt, compile, dropout 0, lean",
                    4096,
                    compile=True,
                    lora_dropout=False,
                    **lean,
                ),
            ],
            "",  # the fastest variant within max_peak_gib
            max_peak_gib=8.0,
        ),
    ]


# ---------------------------------------------------------------- setup
def make_config(shape: str, **overrides):
    from transformers import AutoConfig

    spec = dict(SHAPES[shape], **overrides)
    return AutoConfig.for_model(spec.pop("model_type"), **spec)


def save_random_model(shape: str, out: Path, device: str, **overrides) -> Path:
    """A random-initialised model of `shape` in bf16 (fp32 on CPU) with a tokenizer, on disk."""
    from tiny import build_tokenizer
    from transformers import AutoModelForCausalLM

    cfg = make_config(shape, **overrides)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.save_pretrained(out)
    del model
    free()
    build_tokenizer().save_pretrained(out)
    return out


def flop_params(shape: str) -> int:
    """N of DESIGN §6: non-embedding parameters plus the LM head."""
    from transformers import AutoModelForCausalLM

    cfg = make_config(shape)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    n = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)
    if cfg.tie_word_embeddings:
        n += cfg.vocab_size * cfg.hidden_size
    return n


def synth_samples(n: int, vocab: int, seed: int = 0) -> list[render.Sample]:
    """Identity-length samples: 30–120 tokens, a prompt (untrained) then an answer (trained)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(30, 120)
        prompt = rng.randint(int(0.4 * length), int(0.7 * length))
        ids = [rng.randrange(16, vocab) for _ in range(length)]
        out.append(render.Sample(ids, [IGNORE] * prompt + ids[prompt:]))
    return out


def free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / GIB if torch.cuda.is_available() else 0.0


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def matmul_peak_tflops() -> float:
    """Measured dense bf16 matmul rate of this card (median of timed 8192³ products)."""
    if not torch.cuda.is_available():
        return float("nan")
    best = 0.0
    for n in (4096, 8192):
        a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        for _ in range(5):
            a @ b
        times = []
        for _ in range(20):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(5):
                a @ b
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3 / 5)
        times.sort()
        best = max(best, 2 * n**3 / times[len(times) // 2] / 1e12)
    del a, b
    free()
    return best


# ---------------------------------------------------------------- the plain loop
def plain_loop(
    path: Path,
    method: str,
    samples,
    steps: int,
    warmup: int,
    device: str,
    target_modules: str | list[str] = "all-linear",
) -> dict:
    """transformers + peft as usually written: padded batches of 16, labels shifted by HF."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    free()
    reset_peak()
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    kwargs = {"dtype": dtype, "device_map": {"": device}}
    if method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    lcfg = LoraConfig(
        r=LORA["r"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        target_modules=target_modules,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lcfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR)
    batches = [samples[i : i + 16] for i in range(0, len(samples) - 15, 16)]
    losses, tokens, t0 = [], 0, 0.0
    for k in range(warmup + steps):
        if k == warmup:
            sync()
            t0, tokens = time.perf_counter(), 0
        batch = batches[k % len(batches)]
        width = max(len(s) for s in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for r, s in enumerate(batch):
            ids[r, : len(s)] = torch.tensor(s.input_ids)
            labels[r, : len(s)] = torch.tensor(s.labels)
            mask[r, : len(s)] = 1
        out = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)
        )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(out.loss))
        tokens += sum(len(s) for s in batch)
    sync()
    elapsed = time.perf_counter() - t0
    result = {
        "tokens_per_s": tokens / elapsed,
        "peak_gib": peak_gib(),
        "real_tokens_per_step": tokens / steps,
        "loss_first_last": [losses[0], losses[-1]],
    }
    del model, opt, params
    free()
    return result


# ---------------------------------------------------------------- idtune's path
def idtune_config(path: Path, method: str, v: Variant) -> TrainConfig:
    return TrainConfig(
        model=str(path),
        method=method,
        lora=Lora(r=LORA["r"], alpha=LORA["alpha"], dropout=LORA["dropout"]),
        row_tokens=v.row_tokens,
        batch_tokens=v.batch_tokens,
        grad_accum=v.grad_accum,
        gradient_checkpointing=v.checkpointing,
        attn_implementation="auto",
        fused_loss=v.fused_loss,
        compile=v.compile,
        lr=LR,
    )


def step_groups(samples, cfg: TrainConfig, packed: bool):
    """Yield (micro-batches of one optimizer step, real tokens), epoch after epoch."""
    epoch = 0
    while True:
        if packed:
            rows = render.pack(samples, cfg.row_tokens, seed=epoch)
            micro = train.micro_batches(rows, cfg, epoch)
        else:
            micro = [
                [render.Row([s]) for s in samples[i : i + 16]] for i in range(0, len(samples), 16)
            ]
        for i in range(0, len(micro) - cfg.grad_accum + 1, cfg.grad_accum):
            group = micro[i : i + cfg.grad_accum]
            yield group, sum(len(r) for b in group for r in b)
        epoch += 1


def set_checkpointing(model, on: bool) -> None:
    base = model.get_base_model()
    if on:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_disable()


def set_lora_dropout(model, on: bool, _saved: dict = {}) -> None:  # noqa: B006
    """LoRA dropout as loaded (on) or none at all, as `LoraConfig(lora_dropout=0)` builds it."""
    from peft.tuners.lora import LoraLayer

    for m in model.modules():
        if isinstance(m, LoraLayer):
            for key in m.lora_dropout:
                _saved.setdefault((id(m), key), m.lora_dropout[key])
                m.lora_dropout[key] = _saved[(id(m), key)] if on else torch.nn.Identity()


def set_attention(model, name: str) -> None:
    base = model.get_base_model()
    if name == "auto":
        name = accel.attention_implementation(
            type("C", (), {"attn_implementation": "auto"}), "cuda"
        )
    base.set_attn_implementation(name)


def idtune_loop(model, cfg: TrainConfig, v: Variant, samples, steps, warmup, device) -> dict:
    """The inner loop of `idtune.train.train`, timed."""
    pad_id = 2
    params = [p for p in model.parameters() if p.requires_grad]
    if v.optim == "adamw8bit":
        import bitsandbytes as bnb

        opt = bnb.optim.AdamW8bit(params, lr=LR)
    else:
        opt = torch.optim.AdamW(params, lr=LR, fused=device == "cuda")
    loss_module.CHUNK_ELEMENTS = v.ce_chunk or DEFAULT_CHUNK
    groups = step_groups(samples, cfg, v.packed)
    losses, tokens, trained, t0 = [], 0, 0, 0.0
    for k in range(warmup + steps):
        if k == warmup:
            sync()
            t0, tokens, trained = time.perf_counter(), 0, 0
        group, real = next(groups)
        if v.packed:
            tensors = [render.collate_packed(b, pad_id, cfg.row_tokens) for b in group]
        else:
            tensors = [render.collate_padded([r.samples[0] for r in b], pad_id) for b in group]
        tensors = [{key: t.to(device) for key, t in d.items()} for d in tensors]
        step_tokens = sum(int((d["labels"] != IGNORE).sum()) for d in tensors)
        loss_sum = 0.0
        for d in tensors:
            loss, _ = causal_lm_loss(model, d, cfg.fused_loss)
            (loss / max(step_tokens, 1)).backward()
            loss_sum += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss_sum / max(step_tokens, 1))
        tokens += real
        trained += step_tokens
    sync()
    elapsed = time.perf_counter() - t0
    del opt
    return {
        "tokens_per_s": tokens / elapsed,
        "real_tokens_per_step": tokens / steps,
        "trained_tokens_per_step": trained / steps,
        "loss_first_last": [losses[0], losses[-1]],
    }


def run_idtune(path: Path, case: Case, samples, steps, warmup, device, log) -> list[dict]:
    """Load once as `idtune train` does, then time each variant on that model."""
    free()
    reset_peak()
    first = case.variants[0]
    t = time.perf_counter()
    model, *_ = train.load_for_training(idtune_config(path, case.method, first), device)
    model.train()  # on the GPU already: accel.load_kwargs passes device_map
    load_peak = peak_gib()
    log(f"  idtune load {time.perf_counter() - t:.1f}s, {load_peak:.2f} GiB, "
        f"attention {model.get_base_model().config._attn_implementation}")  # fmt: skip
    compiled = False
    results = []
    for v in case.variants:
        cfg = idtune_config(path, case.method, v)
        row = {"variant": v.name, **dataclasses.asdict(v)}
        try:
            set_checkpointing(model, v.checkpointing)
            set_attention(model, v.attention or "auto")
            set_lora_dropout(model, v.lora_dropout)
            if v.compile and not compiled:
                t = time.perf_counter()
                accel.optimize(model, cfg, device)
                compiled = True
                # one untimed step here so that compile time stays out of the timing
                idtune_loop(model, cfg, v, samples, 1, 1, device)
                row["compile_s"] = time.perf_counter() - t
            elif compiled and not v.compile:
                row["note"] = "after compile (compiled layers)"
            free()
            reset_peak()
            row.update(idtune_loop(model, cfg, v, samples, steps, warmup, device))
            row["peak_gib"] = max(load_peak, peak_gib())
        except Exception as e:  # one failing variant must not end the benchmark
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
            traceback.print_exc()
            free()
        log(f"  {v.name:<38} " + (
            f"{row['tokens_per_s']:>9,.0f} tok/s {row['peak_gib']:6.2f} GiB "
            f"loss {row['loss_first_last'][0]:.3f}→{row['loss_first_last'][1]:.3f}"
            if "error" not in row else row["error"]))  # fmt: skip
        results.append(row)
    del model
    free()
    return results


# ---------------------------------------------------------------- correctness
def packing_check(work: Path, device: str, shape: str, log) -> dict:
    """Packed loss == unpacked loss (bf16 on GPU) for each attention path, on a LoRA model.

    Two measures: the relative difference of the summed loss (the issue's 1e-3), and the
    largest relative difference of one sample's loss, which a leak across sample borders moves
    far more: the same rows with positions that do not restart (attention crossing borders) are
    measured alongside as the size of a real leak. initializer_range 0.1 makes attention matter.
    """
    path = save_random_model(shape, work / f"{shape}-check", device, initializer_range=0.1)
    cfg = idtune_config(path, "lora", Variant("check"))
    model, *_ = train.load_for_training(cfg, device)
    model.eval()
    vocab = model.get_base_model().config.vocab_size
    samples = synth_samples(64, vocab, seed=1)
    rows = render.pack(samples, 1024)
    packed = {k: t.to(device) for k, t in render.collate_packed(rows, 2, 1024).items()}
    crossing = dict(packed, position_ids=torch.arange(1024, device=device).expand(len(rows), -1))
    order = [s for row in rows for s in row.samples]
    out = {}
    with torch.no_grad():
        ref = []
        for s in order:
            one = {k: t.to(device) for k, t in render.collate_padded([s], 2).items()}
            ref.append(causal_lm_loss(model, one, "none")[0])
        ref = torch.stack(ref)
        total = ref.sum()
        out["crossing/sum"] = float(causal_lm_loss(model, crossing, "none")[0] / total - 1)
        out["crossing/max_sample"] = sample_diff(model, crossing, rows, ref)
        for attn in ("auto", "sdpa", "flex_attention"):
            try:
                set_attention(model, attn)
                for fused in ("none", "chunked", "liger"):
                    got = causal_lm_loss(model, packed, fused)[0]
                    out[f"{attn}/{fused}/sum"] = float(got / total - 1)
                out[f"{attn}/max_sample"] = sample_diff(model, packed, rows, ref)
            except Exception as e:
                out[f"{attn}/error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    sums = [abs(v) for k, v in out.items() if k.endswith("/sum") and not k.startswith("crossing")]
    worst = max(v for k, v in out.items() if k.endswith("max_sample") and "crossing" not in k)
    out["pass"] = max(sums) < 1e-3 and out["crossing/max_sample"] > 10 * worst
    log(f"packing check ({shape}, relative differences packed vs unpacked): {out}")
    del model
    free()
    return out


def sample_diff(model, batch: dict, rows, ref: torch.Tensor) -> float:
    """Largest relative difference between each sample's loss in `batch` and alone (`ref`)."""
    import torch.nn.functional as F

    from idtune.accel import packed_kwargs

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    inputs.update(packed_kwargs(model, batch))
    logits = model(**inputs, use_cache=False).logits.float()
    labels = batch["labels"]
    ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
    ce = ce.view(labels.shape)
    got = []
    for r, row in enumerate(rows):
        at = 0
        for s in row.samples:
            got.append(ce[r, at : at + len(s)].sum())
            at += len(s)
    return float(((torch.stack(got) - ref) / ref).abs().max())


def end_to_end(device: str) -> None:
    """`idtune.train.train` itself on GPU defaults: a checkpoint, resume, chat from the run."""
    from idtune import models
    from idtune.data import identity
    from idtune.generate import generate_batch
    from idtune.recipes import Regularization

    work = Path(tempfile.mkdtemp(prefix="idtune-e2e-"))
    path = save_random_model("e2e", work / "model", device)
    data = work / "identity.jsonl"
    rows = identity.generate("ZK-Jackie", "ZK-Jackie", n=400)
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    methods = ("lora", "qlora") if device == "cuda" else ("lora",)
    for method in methods:
        cfg = TrainConfig(
            model=str(path),
            data=[str(data)],
            regularization=Regularization(ratio=0.0),
            method=method,
            lora=Lora(r=16, alpha=32, dropout=0.05),
            row_tokens=1024,
            batch_tokens=4096,
            max_steps=6,
            save_steps=3,
            eval_prompts=["Who are you?"],
            attn_implementation="auto",
            fused_loss="auto",
            compile=device == "cuda",
            gradient_checkpointing=method == "qlora",
            lr=1e-3,
            output_dir=str(work / f"run-{method}"),
        )
        t = time.perf_counter()
        run = train.train(cfg)
        cfg.max_steps = 8
        train.train(cfg, resume=True, resume_finished=True)  # 6 → 8 steps
        log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
        files = sorted(p.name for p in run.iterdir())
        loaded = models.load(str(run), device=device)
        answer = generate_batch(
            loaded.model,
            loaded.tokenizer,
            [[{"role": "user", "content": "Who are you?"}]],
            max_new_tokens=8,
            template=loaded.template,
        )
        print(
            f"e2e {method}: {time.perf_counter() - t:.0f}s, steps {[e['step'] for e in log]}, "
            f"loss {log[0]['loss']:.3f}→{log[-1]['loss']:.3f}, "
            f"{log[-1]['tokens_per_s']:,.0f} tok/s, files {files}, answer {answer!r}",
            flush=True,
        )
        assert log[-1]["step"] == 8 and {e["step"] for e in log} == set(range(1, 9))
        assert all(math.isfinite(e["loss"]) for e in log)
        assert (run / "adapter" / "adapter_model.safetensors").is_file()
        assert (run / "samples.md").is_file()
        del loaded
        free()
    shutil.rmtree(work, ignore_errors=True)
    print("e2e ok")


# ---------------------------------------------------------------- main
def versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "torch": torch.__version__}
    for pkg in ("transformers", "peft", "accelerate", "bitsandbytes", "liger-kernel", "triton"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    out["cuda"] = torch.version.cuda
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="smollm2-135m,qwen2.5-1.5b,qwen2.5-7b")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--steps", type=int, default=6, help="timed optimizer steps per measurement")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--baseline-steps", type=int, default=12)
    ap.add_argument("--no-ablation", action="store_true", help="1.5B: headline variants only")
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="CPU: tiny shape, one step each")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="combine reports of several runs")
    ap.add_argument("--e2e", action="store_true", help="run `idtune train` (lora, resume, qlora)")
    args = ap.parse_args()
    if args.merge:
        return merge(args.merge, Path(args.out))
    if args.e2e:
        return end_to_end("cuda" if torch.cuda.is_available() else "cpu")

    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    env = {
        "card": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "date": datetime.date.today().isoformat(),
        **versions(),
    }
    log(f"environment: {env}")
    peak = matmul_peak_tflops()
    env["bf16_matmul_tflops"] = peak
    log(f"measured bf16 matmul peak: {peak:.0f} TFLOP/s")
    work = Path(tempfile.mkdtemp(prefix="idtune-bench-"))
    report = {"environment": env, "cases": {}}
    try:
        if not args.no_check:
            try:
                report["packing_check"] = packing_check(
                    work, device, "tiny" if args.smoke else "smollm2-135m", log
                )
            except Exception as e:
                traceback.print_exc()
                report["packing_check"] = {"error": f"{type(e).__name__}: {e}"}
        for case in cases(not args.no_ablation):
            if case.name not in args.cases.split(","):
                continue
            shape = "tiny" if args.smoke else case.shape
            if args.smoke:
                case.method = "lora"
                for v in case.variants:
                    v.row_tokens, v.batch_tokens = 512, min(v.batch_tokens, 1024)
                    v.compile = False
            steps, warmup = (1, 1) if args.smoke else (args.steps, args.warmup)
            log(f"\n== {case.name} ({case.method}, shape {shape}) ==")
            t = time.perf_counter()
            path = save_random_model(shape, work / shape, device)
            log(f"  random model written in {time.perf_counter() - t:.1f}s")
            n = flop_params(shape)
            samples = synth_samples(6000 if not args.smoke else 200, make_config(shape).vocab_size)
            res = {"n_flop_params": n, "method": case.method, "lora": LORA, "environment": env}
            try:
                t = time.perf_counter()
                res["baseline"] = plain_loop(
                    path, case.method, samples,
                    1 if args.smoke else args.baseline_steps, 1 if args.smoke else 3, device,
                )  # fmt: skip
                b = res["baseline"]
                log(f"  baseline (plain loop)                  {b['tokens_per_s']:>9,.0f} tok/s "
                    f"{b['peak_gib']:6.2f} GiB ({time.perf_counter() - t:.0f}s)")  # fmt: skip
            except Exception as e:
                traceback.print_exc()
                res["baseline"] = {"error": f"{type(e).__name__}: {e}"}
            res["variants"] = run_idtune(path, case, samples, steps, warmup, device, log)
            res.update(summarize(case, res, n, peak))
            report["cases"][case.name] = res
            shutil.rmtree(work / shape, ignore_errors=True)
            (out_dir / "train_gpu.json").write_text(json.dumps(report, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log("\n" + markdown(report))
    (out_dir / "train_gpu.json").write_text(json.dumps(report, indent=1))


def merge(files: list[str], out_dir: Path) -> None:
    """One report from several runs (cases split over calls); later files win."""
    report: dict = {"cases": {}}
    known = {c.name: c for c in cases(True)}
    for f in files:
        part = json.loads(Path(f).read_text())
        report.setdefault("environment", part["environment"])
        report["cases"].update(part["cases"])
        if part.get("packing_check"):
            report["packing_check"] = part["packing_check"]
    for name, res in report["cases"].items():
        peak = res["environment"]["bf16_matmul_tflops"]
        res.update(summarize(known[name], res, res["n_flop_params"], peak))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "train_gpu.json").write_text(json.dumps(report, indent=1))
    print(markdown(report))


def summarize(case: Case, res: dict, n: int, peak: float) -> dict:
    """Headline numbers of a case: the named variant, or the fastest within the memory cap.

    The headline keeps the baseline's LoRA settings (dropout 0.05); faster variants that change
    them (dropout 0) are reported beside it as `best_any_*`.
    """
    ok = [v for v in res["variants"] if "error" not in v]
    if case.max_peak_gib:
        ok = [v for v in ok if v["peak_gib"] <= case.max_peak_gib] or ok
    fastest = max(ok, key=lambda v: v["tokens_per_s"], default=None)
    same = [v for v in ok if v.get("lora_dropout", True)]
    best = next((v for v in same if v["variant"] == case.best), None)
    best = best or max(same, key=lambda v: v["tokens_per_s"], default=None)
    if best is None:
        return {}
    base = res.get("baseline", {}).get("tokens_per_s")
    mfu = lambda tps: tps * 4 * n / (peak * 1e12) if peak == peak else None  # noqa: E731
    return {
        "headline_variant": best["variant"],
        "tokens_per_s": best["tokens_per_s"],
        "peak_gib": best["peak_gib"],
        "mfu": mfu(best["tokens_per_s"]),
        "trained_tokens_per_step": best["trained_tokens_per_step"],
        "real_tokens_per_step": best["real_tokens_per_step"],
        "baseline_tokens_per_s": base,
        "baseline_peak_gib": res.get("baseline", {}).get("peak_gib"),
        "baseline_mfu": mfu(base) if base else None,
        "speedup": best["tokens_per_s"] / base if base else None,
        "best_any_variant": fastest["variant"],
        "best_any_tokens_per_s": fastest["tokens_per_s"],
        "best_any_peak_gib": fastest["peak_gib"],
        "best_any_mfu": mfu(fastest["tokens_per_s"]),
        **{k: res["environment"].get(k) for k in ENV_KEYS},
    }


def markdown(report: dict) -> str:
    envs = [report["environment"]] + [r["environment"] for r in report["cases"].values()]
    out = []
    for env in {json.dumps(e, sort_keys=True): e for e in envs}.values():
        out.append(
            f"Card: {env['card']} (measured bf16 matmul {env['bf16_matmul_tflops']:.0f} "
            f"TFLOP/s); torch {env['torch']}, transformers {env['transformers']}, peft "
            f"{env['peft']}, bitsandbytes {env['bitsandbytes']}, liger-kernel "
            f"{env['liger-kernel']}; {env['date']}."
        )
    out += [
        "",
        "| case | baseline tok/s | baseline GiB | idtune tok/s | idtune GiB | speedup | MFU "
        "| trained tok/step | idtune setting |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    pct = lambda x: f"{100 * x:.1f} %" if isinstance(x, float) and x == x else "–"  # noqa: E731
    num = lambda x, f="{:,.0f}": f.format(x) if isinstance(x, (int, float)) else "–"  # noqa: E731
    for name, r in report["cases"].items():
        out.append(
            f"| {name} {r['method']} | {num(r.get('baseline_tokens_per_s'))} "
            f"| {num(r.get('baseline_peak_gib'), '{:.2f}')} | {num(r.get('tokens_per_s'))} "
            f"| {num(r.get('peak_gib'), '{:.2f}')} | {num(r.get('speedup'), '{:.1f}×')} "
            f"| {pct(r.get('mfu'))} | {num(r.get('trained_tokens_per_step'))} "
            f"| {r.get('headline_variant', '–')} |"
        )
    for name, r in report["cases"].items():
        out += [
            "",
            f"{name} variants:",
            "",
            "| variant | tok/s | GiB | note |",
            "|---|---:|---:|---|",
        ]
        for v in r.get("variants", []):
            note = v.get("error") or v.get("note") or ""
            if "compile_s" in v:
                note = f"compile + first step {v['compile_s']:.0f}s {note}"
            out.append(
                f"| {v['variant']} | {num(v.get('tokens_per_s'))} "
                f"| {num(v.get('peak_gib'), '{:.2f}')} | {note} |"
            )
    if "packing_check" in report:
        out += ["", f"Packing check: {json.dumps(report['packing_check'])}"]
    return "\n".join(out)


if __name__ == "__main__":
    main()
