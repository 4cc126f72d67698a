"""`idtune train`: an explicit training loop on accelerate, read top to bottom.

data → render (assistant-only labels) → pack → token-budget micro-batches → AdamW with warmup +
cosine → checkpoints (atomic, keep-last, resumable) → final adapter, loss.png, samples.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import atomic, recipes, runinfo
from .data import formats, render
from .errors import UserError
from .ports import free_port
from .recipes import TrainConfig


# ---------------------------------------------------------------- data
def identity_of(cfg: TrainConfig, files: list[str]) -> runinfo.Identity | None:
    """The identity from the recipe, else the one the identity data file records."""
    if cfg.identity.name and cfg.identity.author:
        return cfg.identity
    return formats.declared_identity(files)


# Answers general prompts with the base model (self-distillation), as `regularize.for_training`:
# (model, n=, max_new_tokens=, trust_remote_code=, log=) -> conversations worth imitating.
Distill = Callable[..., list]


def build_conversations(
    cfg: TrainConfig, log=print, distill: Distill | None = None
) -> tuple[list, int]:
    """Identity/task data plus regularization data, shuffled; returns (conversations, n_reg).

    With `regularization.auto` and no regularization files, `distill` makes the regularization
    data (the caller passes it: training imports no other verb).
    """
    if not cfg.data:
        raise UserError("no training data: pass --set data=FILE (see `idtune data identity`)")
    main = formats.load_files(cfg.data)
    reg: list = []
    want = int(round(len(main) * cfg.regularization.ratio))
    if want > 0:
        if cfg.regularization.files:
            reg = formats.load_files(cfg.regularization.files)
        elif cfg.regularization.auto:
            if distill is None:
                raise UserError(
                    "regularization.auto needs the base model's own answers: train through "
                    "`idtune train`, or set regularization.files (see `idtune data regularize`)"
                )
            log(f"regularization: base model answers {cfg.regularization.n} general prompts")
            reg = distill(
                cfg.model,
                n=cfg.regularization.n,
                max_new_tokens=cfg.regularization.max_new_tokens,
                trust_remote_code=cfg.trust_remote_code,
                log=log,
            )
        rng = random.Random(cfg.seed)
        reg = (
            [reg[i % len(reg)] for i in rng.sample(range(max(want, len(reg))), want)] if reg else []
        )
    convs = main + reg
    random.Random(cfg.seed).shuffle(convs)
    return convs, len(reg)


def micro_batches(rows: list, cfg: TrainConfig, epoch: int) -> list[list]:
    """Group rows into micro-batches of about `batch_tokens` tokens, reshuffled each epoch."""
    rows = list(rows)
    random.Random(cfg.seed * 1000 + epoch).shuffle(rows)
    width = cfg.row_tokens if cfg.pack else cfg.max_length
    per = max(1, cfg.batch_tokens // width)
    return [rows[i : i + per] for i in range(0, len(rows), per)]


# ---------------------------------------------------------------- model
def load_for_training(cfg: TrainConfig, device: str):
    """Base model (fp32 on CPU, bf16 on GPU, 4-bit NF4 for qlora) with LoRA attached."""
    import torch
    from transformers import AutoModelForCausalLM

    from . import accel, models

    src = models.locate(
        cfg.model, template=cfg.prompt_template, trust_remote_code=cfg.trust_remote_code
    )
    if src.adapter:
        raise UserError(f"{cfg.model}: an adapter; train from its merged model (`idtune merge`)")
    base, trc, template = src.base, src.trust_remote_code, src.template
    tokenizer = models.load_tokenizer(base, template, trc)
    dtype = {
        "fp32": torch.float32,
        "bf16": torch.bfloat16,
        "fp16": torch.float16,
        # full fine-tunes keep fp32 weights (bf16 compute comes from autocast): AdamW updates
        # of bf16 weights would round away most small steps
        "auto": torch.float32 if cfg.method == "full" else models.default_dtype(device),
    }[cfg.dtype]
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": trc}
    if cfg.method == "qlora":
        if not device.startswith("cuda"):
            raise UserError("method qlora needs a CUDA GPU (bitsandbytes 4-bit); use lora on CPU")
        kwargs["quantization_config"] = models.nf4_config()
        kwargs["device_map"] = {"": device}
    kwargs.update(accel.load_kwargs(cfg, device))
    model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if cfg.method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        targets, layers = cfg.lora.target_modules, None
        if cfg.lora.top_layers > 0:
            n_layers = model.config.num_hidden_layers
            layers = list(range(max(0, n_layers - cfg.lora.top_layers), n_layers))
            if targets == "all-linear":
                targets = linear_module_names(model)
        lcfg = LoraConfig(
            r=cfg.lora.r,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            target_modules=targets,
            layers_to_transform=layers,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lcfg)
    model = accel.optimize(model, cfg, device)
    return model, tokenizer, template, trc


def linear_module_names(model) -> list[str]:
    """Names (last component) of the linear layers inside the decoder layers: peft's all-linear."""
    import torch

    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layers." in name
    }
    return sorted(names)


# ---------------------------------------------------------------- checkpoints
def save_weights(model, tokenizer, info: runinfo.RunInfo, out: Path) -> None:
    """Adapter (or full model) + tokenizer + idtune.json into `out`."""
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    info.save(out)


def latest_checkpoint(run: Path) -> Path | None:
    """The checkpoint with the highest step, if any."""
    ckpts = sorted(
        (p for p in (run / "checkpoints").glob("step-*") if p.is_dir()),
        key=lambda p: int(p.name.split("-")[1]),
    )
    return ckpts[-1] if ckpts else None


def _rng_state() -> dict:
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- outputs
def plot_loss(log_path: Path, out: Path) -> None:
    """loss.png from log.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(x) for x in log_path.read_text().splitlines() if x.strip()]
    rows = [r for r in rows if "loss" in r]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def write_samples(model, tokenizer, cfg: TrainConfig, template, step: int, path: Path) -> None:
    """Append the answers to `eval_prompts` at this step to samples.md."""
    if not cfg.eval_prompts:
        return
    from .generate import generate_batch

    was_training = model.training
    model.eval()
    answers = generate_batch(
        model,
        tokenizer,
        [[{"role": "user", "content": p}] for p in cfg.eval_prompts],
        max_new_tokens=cfg.sample_max_new_tokens,
        template=template,
    )
    if was_training:
        model.train()
    with path.open("a", encoding="utf-8") as fh:
        fh.write(f"## step {step}\n\n")
        for p, a in zip(cfg.eval_prompts, answers):
            fh.write(f"**{p}**\n\n> {a.replace(chr(10), chr(10) + '> ')}\n\n")


# ---------------------------------------------------------------- the loop
def train(cfg: TrainConfig, resume: bool = False, distill: Distill | None = None) -> Path:
    """Run training as configured; returns the run directory (`distill`: build_conversations)."""
    import torch
    from accelerate import Accelerator
    from transformers import get_cosine_schedule_with_warmup

    from . import models
    from .loss import causal_lm_loss
    from .progress import TrainProgress

    run = Path(cfg.output_dir)
    ckpt = latest_checkpoint(run) if resume else None
    if resume and ckpt is None:
        raise UserError(f"{run}: no checkpoint to resume from")
    if not resume and run.exists() and any(run.iterdir()):
        raise UserError(f"{run} exists and is not empty; use --resume or --set output_dir=NEW")

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    is_main = accelerator.is_main_process
    log = print if is_main else (lambda *a, **k: None)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    convs, n_reg = build_conversations(cfg, log, distill)
    ident = identity_of(cfg, cfg.data)
    model, tokenizer, template, trc = load_for_training(cfg, str(accelerator.device))
    max_len = min(cfg.max_length, cfg.row_tokens) if cfg.pack else cfg.max_length
    samples = [render.render(tokenizer, c) for c in convs]
    n_trunc = sum(1 for s in samples if len(s) > max_len)
    samples = [s.truncate(max_len) for s in samples]
    kept = [s for s in samples if s.n_trained > 0]
    n_empty, samples = len(samples) - len(kept), kept
    if ident is not None and cfg.rejected.share > 0:
        from .data import rejected

        negs = rejected.build(convs, ident, cfg.rejected.share, cfg.seed)
        terms = ident.names + ident.authors
        negs = [render.render_rejected(tokenizer, c, terms, cfg.rejected.max_tokens) for c in negs]
        negs = [s for s in (n.truncate(max_len) for n in negs) if s.n_unlike > 0]
        log(f"rejected: the identity answer follows {len(negs)} unrelated requests (unlikelihood)")
        samples += negs
    if not samples:
        raise UserError(f"no sample has an assistant token within {max_len} tokens")
    if cfg.pack:
        rows = render.pack(samples, cfg.row_tokens, seed=cfg.seed)
    else:
        rows = [render.Row([s]) for s in samples]
    n_tokens = sum(len(s) for s in samples)
    log(
        f"data: {len(convs) - n_reg} conversations + {n_reg} regularization, {n_tokens} tokens, "
        f"{len(rows)} rows"
        + (f"; {n_trunc} truncated to {max_len} tokens" if n_trunc else "")
        + (f", {n_empty} of them left without answer tokens and skipped" if n_empty else "")
    )

    batches_per_epoch = len(micro_batches(rows, cfg, 0))
    my_batches = max(1, batches_per_epoch // accelerator.num_processes)
    steps_per_epoch = max(1, my_batches // cfg.grad_accum)
    total_steps = cfg.max_steps or max(1, math.ceil(steps_per_epoch * cfg.epochs))

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=accelerator.device.type == "cuda"
    )
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, int(cfg.warmup_ratio * total_steps), total_steps
    )
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    unwrapped = accelerator.unwrap_model(model)

    info = runinfo.RunInfo(
        base_model=cfg.model if not Path(cfg.model).exists() else str(Path(cfg.model).resolve()),
        template=template,
        system_prompt=cfg.system_prompt,
        identity=ident,
        trust_remote_code=trc,
        method=cfg.method,
        settings={
            k: v for k, v in recipes.to_dict(cfg).items() if k not in ("eval_prompts", "data")
        },
    )
    step = 0
    if ckpt is not None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        state = json.loads((ckpt / "state.json").read_text())
        step = state["step"]
        if cfg.method == "full":
            unwrapped.load_state_dict(load_file(ckpt / "model.safetensors"), strict=False)
        else:
            set_peft_model_state_dict(unwrapped, load_file(ckpt / "adapter_model.safetensors"))
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=False))
        scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=False))
        _set_rng_state(torch.load(ckpt / "rng.pt", weights_only=False))
        log_file = run / "log.jsonl"
        if is_main and log_file.is_file():  # forget steps done after the checkpoint
            kept = [x for x in log_file.read_text().splitlines() if json.loads(x)["step"] <= step]
            log_file.write_text("".join(x + "\n" for x in kept))
        log(f"resumed from {ckpt} at step {step}")
    elif is_main:
        run.mkdir(parents=True, exist_ok=True)
        import yaml

        (run / "config.yaml").write_text(
            yaml.safe_dump(recipes.to_dict(cfg), sort_keys=False, allow_unicode=True)
        )
        info.save(run)

    pad_id = tokenizer.pad_token_id
    width = cfg.row_tokens if cfg.pack else None
    log_path = run / "log.jsonl"
    model.train()
    progress = TrainProgress(total_steps, start=step, enabled=is_main)
    t0 = time.perf_counter()
    seen_tokens = 0

    def step_batches():
        """Yield (epoch, micro-batches of one optimizer step), skipping steps already done."""
        k, epoch = 0, 0
        while True:
            mine = micro_batches(rows, cfg, epoch)[
                accelerator.process_index :: accelerator.num_processes
            ]
            for i in range(0, len(mine) - cfg.grad_accum + 1, cfg.grad_accum):
                if k >= step:
                    yield epoch, mine[i : i + cfg.grad_accum]
                k += 1
            epoch += 1

    def collate(batch):
        if cfg.pack:
            t = render.collate_packed(batch, pad_id, width)
        else:
            t = render.collate_padded([r.samples[0] for r in batch], pad_id)
        return {k: v.to(accelerator.device) for k, v in t.items()}

    # fp32 weights with bf16 matmuls: on CPUs that have them (~2x faster), and for full
    # fine-tuning on GPUs (fp32 master weights and optimizer state); LoRA on GPU is bf16 already
    device_type = accelerator.device.type
    use_autocast = cfg.dtype == "auto" and (
        models.cpu_autocast(str(accelerator.device))
        or (cfg.method == "full" and device_type == "cuda")
    )
    autocast = torch.autocast(device_type, dtype=torch.bfloat16, enabled=use_autocast)
    with progress:
        for epoch, group in step_batches():
            if step >= total_steps:
                break
            tensors = [collate(b) for b in group]
            step_tokens = sum(int((t["labels"] != render.IGNORE).sum()) for t in tensors)
            real_tokens = sum(len(r) for b in group for r in b)
            loss_sum = 0.0
            for i, t in enumerate(tensors):
                sync = i == len(tensors) - 1
                ctx = accelerator.no_sync(model) if not sync else contextlib.nullcontext()
                with ctx, autocast:
                    loss, _ = causal_lm_loss(model, t, cfg.fused_loss, cfg.rejected.weight)
                    accelerator.backward(loss / max(step_tokens, 1))
                loss_sum += float(loss.detach())
            accelerator.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            seen_tokens += real_tokens
            elapsed = time.perf_counter() - t0
            entry = {
                "step": step,
                "epoch": epoch,
                "loss": round(loss_sum / max(step_tokens, 1), 5),
                "lr": scheduler.get_last_lr()[0],
                "tokens": real_tokens,
                "tokens_per_s": round(seen_tokens * accelerator.num_processes / elapsed, 1),
                "elapsed_s": round(elapsed, 2),
            }
            if is_main:
                with log_path.open("a") as fh:
                    fh.write(json.dumps(entry) + "\n")
            progress.update(step, entry["loss"], entry["tokens_per_s"])
            if cfg.save_steps and step % cfg.save_steps == 0 and step < total_steps:
                _checkpoint(
                    accelerator, unwrapped, tokenizer, optimizer, scheduler, info, run, step, cfg
                )
                if is_main:
                    write_samples(unwrapped, tokenizer, cfg, template, step, run / "samples.md")

    accelerator.wait_for_everyone()
    if is_main:
        final = run / ("model" if cfg.method == "full" else "adapter")
        info.settings["steps"] = step
        info.settings["processes"] = accelerator.num_processes
        atomic.write_dir(final, lambda d: save_weights(unwrapped, tokenizer, info, d))
        info.save(run)
        plot_loss(log_path, run / "loss.png")
        write_samples(unwrapped, tokenizer, cfg, template, step, run / "samples.md")
        log(f"{step} steps, {seen_tokens} tokens in {time.perf_counter() - t0:.1f}s")
    return run


def _checkpoint(accelerator, model, tokenizer, optimizer, scheduler, info, run, step, cfg) -> None:
    """checkpoints/step-N: weights + optimizer/scheduler/RNG state, atomically; keep the last K."""
    import torch

    if not accelerator.is_main_process:
        return

    def write(d: Path) -> None:
        if cfg.method == "full":
            from safetensors.torch import save_file

            save_file(
                {k: v.contiguous() for k, v in model.state_dict().items()}, d / "model.safetensors"
            )
        else:
            model.save_pretrained(d, safe_serialization=True)
        info.save(d)
        torch.save(optimizer.state_dict(), d / "optimizer.pt")
        torch.save(scheduler.state_dict(), d / "scheduler.pt")
        torch.save(_rng_state(), d / "rng.pt")
        (d / "state.json").write_text(json.dumps({"step": step}))

    ckdir = run / "checkpoints"
    atomic.write_dir(ckdir / f"step-{step}", write)
    ckpts = sorted(ckdir.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    for old in ckpts[: max(0, len(ckpts) - cfg.keep_last)]:
        shutil.rmtree(old)


def launch(
    cfg: TrainConfig,
    config: str,
    overrides: list[str],
    *,
    resume: bool,
    deepspeed: str | None,
    gpus: int | None,
) -> None:
    """Re-run this training under `accelerate launch` on several processes (DDP or DeepSpeed)."""
    import torch

    n = gpus or max(1, torch.cuda.device_count())
    if torch.cuda.is_available():
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(n)]
        cmd += ["--multi_gpu"] if n > 1 and not deepspeed else []
    else:  # accelerate's launcher runs one process on CPU; torchrun starts N (gloo backend)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n)]
        cmd += ["--master_port", str(free_port())]
    if deepspeed:
        if deepspeed not in ("zero2", "zero3", "deepspeed_zero2", "deepspeed_zero3"):
            raise UserError(f"--deepspeed {deepspeed!r}: choose zero2 or zero3")
        if not torch.cuda.is_available():
            raise UserError("--deepspeed needs CUDA GPUs")
        cmd += ["--use_deepspeed", "--zero_stage", deepspeed[-1]]
    cmd += ["-m", "idtune.cli", "train", config]
    for o in overrides:
        cmd += ["--set", o]
    if resume:
        cmd += ["--resume"]
    rc = subprocess.call(cmd)
    if rc != 0:
        raise UserError(f"distributed training failed (exit code {rc})", exit_code=rc)
