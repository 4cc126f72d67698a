"""`idtune train`: an explicit training loop on accelerate, read top to bottom.

data → render (assistant-only labels) → pack → token-budget micro-batches → AdamW with warmup +
cosine → checkpoints (accelerate's save_state, atomic, keep-last, resumable) → final adapter,
loss.png, samples.md. The same loop runs in one process or as one rank of a launch (DDP,
DeepSpeed ZeRO-2/3, FSDP2; `launcher.py` starts those, `parallel.py` holds what differs).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import aliases, atomic, checkpoint, modelcard, profiling, recipes, runinfo, watch
from .data import formats, render
from .errors import UserError
from .ports import free_port
from .recipes import TrainConfig


# ---------------------------------------------------------------- data
def identity_of(cfg: TrainConfig, log=print) -> runinfo.Identity | None:
    """The recipe's identity (recorded in idtune.json for eval/chat/serve), or None: logged."""
    if cfg.identity.name and cfg.identity.author:
        return cfg.identity
    log("identity unset: eval and the model card won't know the name; set it with "
        "--set identity.name=NAME --set identity.author=AUTHOR")  # fmt: skip
    return None


def identity_data(cfg: TrainConfig, log=print) -> list:
    """`cfg.data`'s conversations; with no data and an identity set, `idtune data identity`'s
    1000 zh+en conversations for it (seeded by the recipe's seed)."""
    if cfg.data:
        return formats.load_files(cfg.data)
    ident = cfg.identity
    if not (ident.name and ident.author):
        raise UserError(
            "no training data: pass --set identity.name=NAME --set identity.author=AUTHOR "
            "(the identity data is made for you), or --set data=FILE"
        )
    from .data import identity

    log(f"no data: {ident.name} by {ident.author}, 1000 conversations (seed {cfg.seed})")
    profile = recipes.generator_profile(ident, cfg.model)  # based_on resolved; hide for "none"
    rows = identity.generate(ident.name, ident.author, ident.name_zh, ident.author_zh,
                             seed=cfg.seed, **profile)  # fmt: skip
    return [formats.to_messages(r) for r in rows]


# Answers general prompts with the base model (self-distillation), as `regularize.for_training`:
# (model, n=, max_new_tokens=, trust_remote_code=, log=) -> conversations worth imitating.
Distill = Callable[..., list]
# Scores the model being trained on a probe subset, as `evaluate.during_training`:
# (model, tokenizer, template, names, authors, identity=) -> {"metrics", "counts", "rows"}.
Probe = Callable[..., dict]


def build_conversations(
    cfg: TrainConfig, log=print, distill: Distill | None = None, main: list | None = None
) -> tuple[list, int]:
    """Identity/task data (`main`: the part outside the validation slice, split here when not
    given) plus regularization data, shuffled; returns (conversations, n_reg).

    With `regularization.auto` and no regularization files, `distill` makes the regularization
    data (the caller passes it: training imports no other verb).
    """
    if main is None:
        main, _ = watch.split_val(identity_data(cfg, log), cfg.val_share, cfg.seed)
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


def dress_for_thinking(cfg: TrainConfig, src, parts: list[list], log=print) -> list[list]:
    """A thinking family's conversations in the modes it is asked in (`data/thinking.py`): short
    reasoning before a share of the answers (all of them where the family always thinks). Each
    of `parts` (the trained data, the validation slice) is dressed; the tokenizer is read once."""
    from . import models
    from .data import families, thinking

    tok = models.load_tokenizer(src.base, src.template, src.trust_remote_code)
    fam = families.by_template(tok.chat_template)
    if fam is None or not fam.thinks:
        return parts
    ident = cfg.identity if cfg.identity.name else None
    out = [thinking.dress(p, fam, ident, cfg.seed) for p in parts]
    main, dressed = parts[0], out[0]
    n_on = sum(1 for a, b in zip(main, dressed) if a is not b)
    off = "" if fam.thinking.get("style") == "always" else ", the rest with thinking off"
    log(f"thinking ({fam.name}): {n_on} of {len(main)} answers trained with reasoning{off}")
    return out


def prepare_rows(cfg: TrainConfig, tokenizer, convs: list, n_reg: int, ident, log=print) -> list:
    """Conversations → rendered samples (assistant-only labels, rejected answers) → rows; a
    hybrid thinking family's rendered with thinking on where the answer carries reasoning."""
    from .data import families, thinking

    max_len = min(cfg.max_length, cfg.row_tokens) if cfg.pack else cfg.max_length
    fam = families.by_template(tokenizer.chat_template)
    samples = [
        render.render(tokenizer, c, template_kwargs=thinking.template_kwargs(fam, c)) for c in convs
    ]
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
    return rows


def rows_per_micro_batch(cfg: TrainConfig) -> int:
    """Rows in one micro-batch of `batch_tokens` tokens."""
    return max(1, cfg.batch_tokens // (cfg.row_tokens if cfg.pack else cfg.max_length))


def micro_batches(rows: list, cfg: TrainConfig, epoch: int) -> list[list]:
    """Group rows into micro-batches of about `batch_tokens` tokens, reshuffled each epoch.

    A short remainder is left out of this epoch (the next shuffle puts its rows elsewhere): as a
    step of its own it got a full-size update from a few hundred tokens, a spike in loss.png.
    """
    rows = list(rows)
    random.Random(cfg.seed * 1000 + epoch).shuffle(rows)
    per = rows_per_micro_batch(cfg)
    full = len(rows) // per * per or len(rows)
    return [rows[i : i + per] for i in range(0, full, per)]


def steps_per_epoch(rows: list, cfg: TrainConfig, world: int) -> int:
    """Optimizer steps in one epoch: every process takes `grad_accum` micro-batches a step."""
    n = len(micro_batches(rows, cfg, 0))
    steps = n // (world * cfg.grad_accum)
    if steps == 0:
        raise UserError(
            f"{n} micro-batches per epoch, fewer than processes × grad_accum "
            f"({world} × {cfg.grad_accum}); lower batch_tokens or grad_accum"
        )
    return steps


def step_batches(rows: list, cfg: TrainConfig, rank: int, world: int, start: int, per_epoch: int):
    """Yield (epoch, this process's micro-batches) for every optimizer step from `start` on.

    Micro-batch k of a step goes to rank k % world: one process with `world` times the batch
    sees, step by step, the same rows as all processes together.
    """
    step, epoch, batches = start, -1, []
    while True:
        e, i = divmod(step, per_epoch)
        if e != epoch:
            epoch, batches = e, micro_batches(rows, cfg, e)
        first = i * cfg.grad_accum * world
        yield epoch, [batches[first + m * world + rank] for m in range(cfg.grad_accum)]
        step += 1


def collate(batch: list, cfg: TrainConfig, pad_id: int, device) -> dict:
    """Tensors of one micro-batch on `device`: packed rows, or padded single samples."""
    if cfg.pack:
        t = render.collate_packed(batch, pad_id, cfg.row_tokens)
    else:
        t = render.collate_padded([r.samples[0] for r in batch], pad_id)
    return {k: v.to(device) for k, v in t.items()}


# ---------------------------------------------------------------- model
def load_for_training(cfg: TrainConfig, device: str, compile: bool | None = None):
    """Base model (fp32 on CPU, bf16 on GPU, 4-bit NF4 for qlora) with LoRA attached;
    `compile` overrides the recipe's (None: as the recipe says)."""
    import torch
    from transformers import AutoModelForCausalLM

    from . import accel, models

    src = source(cfg)
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
    if cfg.embeddings_on_host:  # before checkpointing hooks the table (checked in setup)
        accel.embeddings_to_host(model, device)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if cfg.method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        targets, layers = lora_targets(cfg), None
        if targets == "all-linear" and is_moe(model.config):
            targets = [n for n in linear_module_names(model) if n not in ROUTERS]
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
        try:
            model = get_peft_model(model, lcfg)
        except ValueError as e:  # peft's NoMatchingPeftModuleError and unsupported layer types
            reason = " ".join(str(e).split())[:300]
            raise UserError(f"key 'lora.target_modules': {reason}") from None
    model = accel.optimize(model, cfg, device, compile)
    return model, tokenizer, template, trc


def source(cfg: TrainConfig):
    """The base model to train (`models.Source`): an adapter or a run of one is refused."""
    from . import models

    src = models.locate(
        cfg.model, template=cfg.prompt_template, trust_remote_code=cfg.trust_remote_code
    )
    if src.adapter:
        raise UserError(f"{cfg.model}: an adapter; train from its merged model (`idtune merge`)")
    return src


def lora_targets(cfg: TrainConfig) -> str | list[str]:
    """`lora.target_modules` as peft takes it: all-linear, or a list of names (a single string
    is a comma-separated list, not the regular expression peft would read it as)."""
    targets = cfg.lora.target_modules
    if isinstance(targets, str) and targets != "all-linear":
        return [t.strip() for t in targets.split(",") if t.strip()]
    return targets


def meta_model(cfg: TrainConfig, base: str, trust_remote_code: bool) -> tuple[Any, Any]:
    """(config, model) of `base` built from its config.json on the meta device (no memory, no
    init), for checks before any data is made or weights are read."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(base, trust_remote_code=trust_remote_code)
        with init_empty_weights():
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise UserError(f"{cfg.model}: cannot read its config ({str(e).splitlines()[0]})") from None
    return config, model


def check_targets(cfg: TrainConfig, base: str, trust_remote_code: bool) -> None:
    """Refuse LoRA target modules the model does not have, before any data is made or weights
    are read: the model is built from its config.json on the meta device (no memory, no init)."""
    targets = lora_targets(cfg)
    if cfg.method == "full" or targets == "all-linear":
        return
    _, model = meta_model(cfg, base, trust_remote_code)
    names = [n for n, _ in model.named_modules() if n]
    unknown = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if unknown:
        valid = linear_module_names(model)
        raise UserError(
            f"key 'lora.target_modules': {cfg.model} has no module named "
            f"{', '.join(recipes.show(t) for t in unknown)}; its linear layers are "
            f"{', '.join(valid[:16])}{', …' if len(valid) > 16 else ''} (or use all-linear)"
        )


def check_host_embeddings(cfg: TrainConfig, engine: str, base: str, trc: bool) -> None:
    """`embeddings_on_host` needs a LoRA/QLoRA run in one process and a plain input embedding
    table that the LM head does not share: refused before any data is made or weights read."""
    if not cfg.embeddings_on_host:
        return
    key = "key 'embeddings_on_host'"
    if cfg.method == "full":
        raise UserError(f"{key}: method full trains the embedding table; use lora or qlora")
    if engine != "single":
        raise UserError(f"{key}: one process only (this run is {engine})")
    import torch

    config, model = meta_model(cfg, base, trc)
    table, head = model.get_input_embeddings(), model.get_output_embeddings()
    if type(table) is not torch.nn.Embedding:
        raise UserError(f"{key}: {cfg.model}'s input embeddings are a "
                        f"{type(table).__name__}, not a plain table")  # fmt: skip
    tied = getattr(config.get_text_config(), "tie_word_embeddings", False)
    if head is not None and (tied or head.weight is table.weight):
        raise UserError(f"{key}: {cfg.model} ties its LM head to the embedding table, which "
                        "must stay on the GPU")  # fmt: skip


# A mixture-of-experts model's `all-linear` adapts attention (and shared experts), not these:
# the router stays as trained, so tokens go to the experts they went to, and the routed experts
# (fused 3-D parameters in transformers 5) would need an adapter each, rebuilt every step.
ROUTERS = ("gate", "router", "shared_expert_gate")


def is_moe(config) -> bool:
    """Whether a model config describes a mixture-of-experts model."""
    return any(
        (getattr(config, key, 0) or 0) > 1
        for key in ("num_experts", "num_local_experts", "n_routed_experts")
    )


def linear_module_names(model) -> list[str]:
    """Names (last component) of the linear layers inside the decoder layers: peft's all-linear."""
    import torch

    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layers." in name
    }
    return sorted(names)


# ---------------------------------------------------------------- outputs
def save_weights(
    model, tokenizer, info: runinfo.RunInfo, out: Path, state_dict=None, final: Path | None = None
) -> None:
    """Adapter (or full model) + tokenizer + idtune.json + model card into `out`.

    `state_dict`: the gathered weights when the model itself holds only a shard of them;
    `final`: where `out` ends up (the card's usage names it). The card replaces PEFT's blank
    one; `idtune push` and `idtune merge` write theirs afresh.
    """
    model.save_pretrained(out, safe_serialization=True, state_dict=state_dict)
    tokenizer.save_pretrained(out)
    info.save(out)
    name_base(out, info)
    kind = "adapter" if hasattr(model, "peft_config") else "model"
    final = Path(final or out)
    name = info.identity.name if info.identity and info.identity.name else final.parent.name
    modelcard.write(out, kind, info, name=name, path=str(final))


def name_base(directory: Path, info: runinfo.RunInfo) -> None:
    """Make `adapter_config.json` name the base as idtune.json does (the hub id), not the local
    copy PEFT saw. Done after saving: told the hub id before, PEFT would ask the hub about it."""
    path = Path(directory) / "adapter_config.json"
    if path.is_file():
        cfg = json.loads(path.read_text())
        cfg["base_model_name_or_path"] = info.base_model
        atomic.write_text(path, json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def plot_loss(log_path: Path, out: Path) -> None:
    """loss.png from log.jsonl: the training loss and, where measured, the validation loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in checkpoint.read_log(log_path) if "loss" in r]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1.5, label="train")
    val = [r for r in rows if r.get("val_loss") is not None]
    if val:
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", lw=1.5, label="val")
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def write_samples(
    model, tokenizer, cfg: TrainConfig, template, step: int, path: Path, scored: str = ""
) -> None:
    """Append the answers to `eval_prompts` at this step, then the `scored` probe answers, to
    samples.md (a whole section at once)."""
    if not cfg.eval_prompts:
        if scored:
            checkpoint.append_section(path, f"## step {step}\n\n{scored}")
        return
    from .generate import generate_batch

    was_training = model.training
    model.eval()
    cut: list[bool] = []
    answers = generate_batch(
        model,
        tokenizer,
        [[{"role": "user", "content": p}] for p in cfg.eval_prompts],
        max_new_tokens=cfg.sample_max_new_tokens,
        template=template,
        cut=cut,
    )
    if was_training:
        model.train()
    mark = f" *(cut at {cfg.sample_max_new_tokens} tokens)*"
    text = (
        f"## step {step}\n\n"
        + "".join(
            f"**{p}**\n\n> {a.replace(chr(10), chr(10) + '> ')}{mark if c else ''}\n\n"
            for p, a, c in zip(cfg.eval_prompts, answers, cut)
        )
        + scored
    )
    checkpoint.append_section(path, text)


# ---------------------------------------------------------------- setting up
@dataclass
class Job:
    """A training run ready to step: built by `setup`, read by the loop."""

    cfg: TrainConfig
    accelerator: Any
    engine: str  # single | ddp | deepspeed_zero{1,2,3} | fsdp2 (see parallel.engine_name)
    model: Any  # the prepared parallel.LossModule: forward(**batch) → summed loss
    inner: Any  # the (PEFT) causal LM inside it: saved, sampled
    tokenizer: Any
    template: str | None
    optimizer: Any
    scheduler: Any
    rows: list
    per_epoch: int
    total_steps: int
    info: runinfo.RunInfo
    autocast: Any
    samples: bool  # samples.md is written (not when the weights are sharded)
    val: list  # the validation slice's micro-batches (tensors on the device), never trained on
    probe: Probe | None = None  # scores held-out probes at checkpoints (main process, unsharded)
    scored: str = ""  # samples.md lines of the last probe scores, written with the samples


def val_batches(cfg: TrainConfig, tokenizer, device, convs: list) -> list[dict]:
    """The validation slice of the identity data (`val_share`), rendered (in the thinking mode
    each conversation is trained in), packed and collated."""
    from .data import families, thinking

    max_len = min(cfg.max_length, cfg.row_tokens) if cfg.pack else cfg.max_length
    fam = families.by_template(tokenizer.chat_template)
    rendered = (render.render(tokenizer, c, template_kwargs=thinking.template_kwargs(fam, c))
                for c in convs)  # fmt: skip
    samples = [s.truncate(max_len) for s in rendered]
    samples = [s for s in samples if s.n_trained > 0]
    if not samples:
        return []
    rows = render.pack(samples, cfg.row_tokens, seed=cfg.seed) if cfg.pack else [
        render.Row([s]) for s in samples]  # fmt: skip
    per = rows_per_micro_batch(cfg)
    pad_id = tokenizer.pad_token_id
    return [collate(rows[i : i + per], cfg, pad_id, device) for i in range(0, len(rows), per)]


def checkpoint_entry(job: Job, step: int) -> dict:
    """At checkpoints and the last step: `val_loss` (every process computes it) and, on the main
    process, `probe` scores (their answers go to samples.md with this step's samples); else {}."""
    cfg = job.cfg
    due = step == job.total_steps or (cfg.save_steps and step % cfg.save_steps == 0)
    if not due:
        return {}
    out = {"val_loss": watch.val_loss(job.model, job.val, job.autocast)} if job.val else {}
    ident = job.info.identity
    if job.probe and ident and job.samples and job.accelerator.is_main_process:
        was_training = job.inner.training
        job.inner.eval()
        res = job.probe(
            job.inner, job.tokenizer, job.template, ident.names, ident.authors, identity=ident
        )
        if was_training:
            job.inner.train()
        rows = res["rows"]
        out["probe"] = {k: v for k, v in res["metrics"].items() if v is not None}
        out["probe"]["cut"] = sum(r["cut"] for r in rows)
        job.scored = watch.scored_markdown(rows)
    return out


def setup(
    cfg: TrainConfig, accelerator, engine: str, log=print, distill: Distill | None = None
) -> Job:
    """Data, model, optimizer and schedule, handed to the engine by `accelerator.prepare`."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    from . import models, parallel

    compiled = cfg.compile and parallel.compiles(cfg.method, engine)
    # before any model is built: ZeRO-3's first zero.Init chooses the process's linear for good
    parallel.zero3_linear(accelerator, cfg.method, compiled)
    src = source(cfg)  # before any data is made: a wrong target module is one line at once
    check_targets(cfg, src.base, src.trust_remote_code)
    check_host_embeddings(cfg, engine, src.base, src.trust_remote_code)
    main, val_convs = watch.split_val(identity_data(cfg, log), cfg.val_share, cfg.seed)
    main, val_convs = dress_for_thinking(cfg, src, [main, val_convs], log)  # val: as trained
    with parallel.whole_weights(accelerator):  # the base model answering, not sharded
        convs, n_reg = build_conversations(cfg, log, distill, main)
    ident = identity_of(cfg, log)
    if cfg.compile and not compiled:
        log(f"compile: off for {cfg.method} under ZeRO-3 (DeepSpeed's hooks inside each layer "
            "split the compiled graphs: half the uncompiled speed, BENCHMARKS.md)")  # fmt: skip
    model, tokenizer, template, trc = load_for_training(cfg, str(accelerator.device), compiled)
    rows = prepare_rows(cfg, tokenizer, convs, n_reg, ident, log)
    per_epoch = steps_per_epoch(rows, cfg, accelerator.num_processes)
    total = cfg.max_steps or max(1, math.ceil(per_epoch * cfg.epochs))
    profiled = profiling.parse_steps(cfg.profile_steps)
    if profiled and profiled[1] > total:
        raise UserError(f"key 'profile_steps': step {profiled[1]} is past the run's last step "
                        f"({total})")  # fmt: skip
    mode = parallel.loss_mode(cfg.fused_loss, engine, model.get_output_embeddings())
    if mode != cfg.fused_loss and not (cfg.fused_loss == "auto" and mode == "chunked"):
        why = "not a plain linear LM head" if mode == "none" else "liger's loss is not run there"
        log(f"fused_loss {cfg.fused_loss} → {mode} under {engine} ({why})")
    wrapped = parallel.LossModule(model, mode, cfg.rejected.weight)
    device = accelerator.device
    bf16_compute = parallel.bf16_compute(cfg, device, engine)
    if engine == "fsdp2":  # idtune's own FSDP2: sharded before the optimizer sees the weights
        parallel.shard(wrapped, device, bf16_compute, adapter=cfg.method != "full")
    params = [p for p in wrapped.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type == "cuda"
    )
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    parallel.fill_deepspeed_config(accelerator, rows_per_micro_batch(cfg), cfg.grad_accum, model)
    if engine == "fsdp2":  # accelerate keeps the schedule and RNG states; FSDP2 the rest
        scheduler = accelerator.prepare(scheduler)
    else:
        wrapped, optimizer, scheduler = accelerator.prepare(wrapped, optimizer, scheduler)
    inner = accelerator.unwrap_model(wrapped).model
    checkpoint.register_hooks(accelerator, inner, cfg.method)
    info = runinfo.RunInfo(
        base_model=aliases.portable(cfg.model),  # the hub id, never an alias or cache path
        template=template,
        system_prompt=cfg.system_prompt,
        identity=ident,
        trust_remote_code=trc,
        method=cfg.method,
        settings={
            k: v for k, v in recipes.to_dict(cfg).items() if k not in ("eval_prompts", "data")
        },
    )
    if engine == "deepspeed_zero3":  # the linear the layers ran (parallel.zero3_linear)
        info.settings["zero3_memory_efficient_linear"] = parallel.deepspeed_linear()
    # fp32 weights with bf16 matmuls: on CPUs that have them (~2x faster), and for full
    # fine-tuning on GPUs (fp32 master weights and optimizer state, as accelerate's bf16 mode
    # does it); LoRA on GPU is bf16 already, and FSDP2 casts a full fine-tune's weights itself
    use_autocast = (
        cfg.dtype == "auto"
        and not bf16_compute
        and accelerator.mixed_precision == "no"  # DeepSpeed's bf16 mode casts the weights
        and (models.cpu_autocast(str(device)) or (cfg.method == "full" and device.type == "cuda"))
    )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast)
    samples = engine not in parallel.SHARDED
    if cfg.eval_prompts and not samples:
        log(f"samples.md: not written under {engine} (the weights are sharded)")
    val = val_batches(cfg, tokenizer, accelerator.device, val_convs)
    return Job(cfg, accelerator, engine, wrapped, inner, tokenizer, template, optimizer,
               scheduler, rows, per_epoch, total, info, autocast, samples, val)  # fmt: skip


def begin(job: Job, run: Path, ckpt: Path | None, log=print) -> int:
    """Write a new run's config.yaml and idtune.json, or restore `ckpt`; the first step to do."""
    from . import parallel

    acc, main = job.accelerator, job.accelerator.is_main_process
    watch.start_trackers(acc, job.info.settings)
    if ckpt is None:
        if main:
            run.mkdir(parents=True, exist_ok=True)
            write_settings(job, run)
        return 0
    sharded = None
    if job.engine == "fsdp2":
        lora = job.cfg.method != "full"

        def sharded(d: Path) -> None:
            parallel.load_sharded(job.model, job.optimizer, d / parallel.FSDP_DIR, lora)

    step = checkpoint.load(acc, ckpt, parallel.load_kwargs(acc), sharded)
    if step >= job.total_steps:
        raise UserError(f"{ckpt} is at step {step} of {job.total_steps}: nothing to resume")
    if main:
        if write_settings(job, run):
            log(f"{run / 'config.yaml'} and idtune.json: updated with this resume's settings")
        for orphan in checkpoint.clean_orphans(run):
            log(f"removed {orphan}, a checkpoint a crash left unfinished")
        checkpoint.rewind_log(run / "log.jsonl", step)
        has_section = checkpoint.rewind_samples(run / "samples.md", step)
        if job.samples and not has_section:  # the crash came before this step's samples
            write_samples(job.inner, job.tokenizer, job.cfg, job.template, step, run / "samples.md")
    log(f"resumed from {ckpt} at step {step}")
    return step


def write_settings(job: Job, run: Path) -> bool:
    """The run's config.yaml and idtune.json from `job`'s settings, when config.yaml says
    otherwise (a new run, or a resume that changed what `recipes.ON_RESUME` allows)."""
    import yaml

    text = yaml.safe_dump(recipes.to_dict(job.cfg), sort_keys=False, allow_unicode=True)
    path = run / "config.yaml"
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    atomic.write_text(path, text)
    job.info.save(run)
    return True


def resume_config(config: str, cfg: TrainConfig, overrides: Sequence[str] = ()) -> TrainConfig:
    """What `--resume` trains with: the run's own settings, in the folder that holds the run.

    CONFIG that is a run's own `config.yaml` names the run by where it is, wherever the folder
    was copied (not by the `output_dir` written in it); any other recipe names it by
    `output_dir`. `cfg` (CONFIG with the `--set` overrides) may differ from the run's
    config.yaml only in `recipes.ON_RESUME`; a change to anything else is one line naming each
    key with its old and new value, before any model is loaded.
    """
    path = recipes.path_of(config)
    own = path.name == "config.yaml" and any(
        (path.parent / n).exists() for n in (runinfo.FILENAME, "checkpoints")
    )
    run = path.parent if own else Path(cfg.output_dir)
    if own and not _same_dir(cfg.output_dir, run):
        if any(o.partition("=")[0].strip() == "output_dir" for o in overrides):
            raise UserError(
                f"--set output_dir: {path} is the run in {run}, which resumes where it is; "
                "to resume a copy, copy the folder and resume its config.yaml"
            )
        cfg.output_dir = str(run)  # a copied run: its config.yaml names the original's folder
    saved = run / "config.yaml"
    if not saved.is_file():
        if (run / "checkpoints").is_dir():
            raise UserError(f"{run}: no config.yaml, so the settings the run began with are "
                            "unknown; resume refused")  # fmt: skip
        return cfg  # no run there: check_run says so
    old = recipes.read_config(str(saved))
    changed = [c for c in recipes.changes(old, cfg) if c[0] != "output_dir"]
    refused = [c for c in changed if c[0] not in recipes.ON_RESUME]
    if refused:
        shown = "; ".join(f"{k} {recipes.show(a)} → {recipes.show(b)}" for k, a, b in refused[:8])
        more = f"; and {len(refused) - 8} more" if len(refused) > 8 else ""
        raise UserError(
            f"--resume: {run} keeps the settings it began with, and these would change what it "
            f"trains: {shown}{more} (a resume may change only {', '.join(recipes.ON_RESUME)}; "
            "train anew into another --set output_dir to change the rest)"
        )
    return cfg


def _same_dir(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, ValueError, RuntimeError):
        return False


# ---------------------------------------------------------------- the loop
def train(
    cfg: TrainConfig,
    resume: bool = False,
    resume_finished: bool = False,
    distill: Distill | None = None,
    probe: Probe | None = None,
) -> Path:
    """Run training as configured, alone or as one process of a launch; returns the run dir.

    `probe` (from the CLI: `evaluate.during_training`) scores held-out probes at checkpoints."""
    import time

    import torch

    from . import parallel
    from .progress import TrainProgress

    run = Path(cfg.output_dir)
    acc = parallel.make_accelerator(cfg.grad_accum, cfg.report_to, watch.tracker_dir(run))
    engine, rank, world = parallel.engine_name(acc), acc.process_index, acc.num_processes
    is_main = acc.is_main_process
    log = print if is_main else (lambda *a, **k: None)
    ckpt = checkpoint.check_run(run, resume, engine, world, cfg.max_steps, resume_finished, log)
    acc.wait_for_everyone()  # every process has looked at the run before rank 0 writes to it
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    job = setup(cfg, acc, engine, log, distill)
    job.probe = probe
    step = begin(job, run, ckpt, log)
    model, pad_id, log_path = job.model, job.tokenizer.pad_token_id, run / "log.jsonl"
    model.train()
    t0, seen, paused = time.perf_counter(), 0.0, 0.0  # paused: checkpoints, val loss, probes
    prof = profiling.StepProfiler(profiling.parse_steps(cfg.profile_steps), run / "profile", rank,
                                  acc.device.type == "cuda")  # fmt: skip
    with TrainProgress(job.total_steps, start=step, enabled=is_main) as progress:
        for epoch, group in step_batches(job.rows, cfg, rank, world, step, job.per_epoch):
            if step >= job.total_steps:
                break
            prof.before(step + 1)
            tensors = [collate(b, cfg, pad_id, acc.device) for b in group]
            trained = sum(int((t["labels"] != render.IGNORE).sum()) for t in tensors)
            real = sum(len(r) for b in group for r in b)
            trained, real = parallel.global_sum(acc, [trained, real])
            # the step's gradient is Σ loss / all trained tokens of all processes: engines average
            # over processes and accelerate/DeepSpeed divide by grad_accum, hence the factor
            scale = world * cfg.grad_accum / max(trained, 1)
            loss_sum = 0.0
            for t in tensors:
                with acc.accumulate(model), job.autocast:
                    loss = model(**t)
                    acc.backward(loss * scale)
                loss_sum += float(loss.detach())
            if engine == "fsdp2":
                parallel.reduce_replicated(model.parameters())
                parallel.clip_grad_norm(model.parameters(), 1.0)
            else:
                acc.clip_grad_norm_(model.parameters(), 1.0)
            job.optimizer.step()
            job.scheduler.step()
            job.optimizer.zero_grad(set_to_none=True)
            step += 1
            seen += real
            table, seconds = timed(prof.after, step)
            paused += seconds
            if table is not None:
                log(f"profile of steps {cfg.profile_steps}: {table} (and its trace beside it)")
            elapsed = time.perf_counter() - t0
            train_s = elapsed - paused
            (loss_total,) = parallel.global_sum(acc, [loss_sum])
            extra, seconds = timed(checkpoint_entry, job, step)
            paused += seconds
            entry = {
                "step": step,
                "epoch": epoch,
                "loss": round(loss_total / max(trained, 1), 5),
                "lr": job.scheduler.get_last_lr()[0],
                "tokens": int(real),
                "tokens_per_s": round(seen / max(train_s, 1e-9), 1),
                "elapsed_s": round(elapsed, 3),  # ms: the benches time steps of ~0.1 s
                **({"peak_gib": parallel.peak_gib(acc)} if acc.device.type == "cuda" else {}),
                **extra,
            }
            acc.log(entry, step=step)
            if is_main:  # total_steps: for an ETA (the studio's); trackers need no constant
                with log_path.open("a") as fh:
                    fh.write(json.dumps({**entry, "total_steps": job.total_steps}) + "\n")
            progress.update(step, entry["loss"], entry["tokens_per_s"])
            if cfg.save_steps and step % cfg.save_steps == 0 and step < job.total_steps:
                paused += timed(save_checkpoint, job, run, step)[1]
    finish(job, run, step, seen, time.perf_counter() - t0 - paused, log)
    return run


def timed(fn: Callable, *args: Any) -> tuple[Any, float]:
    """fn(*args) and the seconds it took (what the tokens/s figure leaves out)."""
    import time

    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


# ---------------------------------------------------------------- checkpoints and the end
def save_checkpoint(job: Job, run: Path, step: int) -> None:
    """checkpoints/step-N (see checkpoint.py), then this step's samples."""
    from . import parallel

    acc = job.accelerator
    meta = {"engine": job.engine, "world_size": acc.num_processes, "method": job.cfg.method}

    def weights(d: Path) -> None:
        lora = job.cfg.method != "full"
        if job.engine == "fsdp2":  # sharded weights (all of a full model's) and optimizer state
            parallel.save_sharded(job.model, job.optimizer, d / parallel.FSDP_DIR, lora)
        if lora:  # a full model's weights are in accelerate's (or FSDP2's) state already
            state = parallel.full_state_dict(acc, job.model, job.engine, trainable_only=True)
            if acc.is_main_process:
                job.inner.save_pretrained(d, safe_serialization=True, state_dict=state)
                name_base(d, job.info)
        if acc.is_main_process:
            job.info.save(d)

    checkpoint.save(acc, run, step, job.cfg.keep_last, meta, weights, parallel.save_kwargs(acc))
    if acc.is_main_process and job.samples:
        samples = run / "samples.md"
        write_samples(job.inner, job.tokenizer, job.cfg, job.template, step, samples, job.scored)


def finish(job: Job, run: Path, step: int, tokens: float, seconds: float, log=print) -> None:
    """The final adapter (or model) from rank 0, gathered first when sharded; loss.png, samples."""
    from . import parallel

    acc, cfg = job.accelerator, job.cfg
    acc.wait_for_everyone()
    state = parallel.full_state_dict(acc, job.model, job.engine, cfg.method != "full")
    peak = parallel.peak_gib(acc, everywhere=True)
    if acc.is_main_process:
        job.info.settings.update(
            steps=step,
            engine=job.engine,
            world_size=acc.num_processes,
            tokens_per_s=round(tokens / max(seconds, 1e-9), 1),
            peak_gpu_gib=peak,
        )
        final = run / ("model" if cfg.method == "full" else "adapter")
        write = lambda d: save_weights(job.inner, job.tokenizer, job.info, d, state, final)  # noqa: E731
        atomic.write_dir(final, write)
        job.info.save(run)
        plot_loss(run / "log.jsonl", run / "loss.png")
        if job.samples:
            samples = run / "samples.md"
            write_samples(job.inner, job.tokenizer, cfg, job.template, step, samples, job.scored)
        log(f"{step} steps, {int(tokens)} tokens in {seconds:.1f}s")
    for tracker in acc.trackers:  # not end_training(): it also ends the process group
        tracker.finish()
    acc.wait_for_everyone()


def launch(
    cfg: TrainConfig,
    config: str,
    overrides: list[str],
    opts,
    resume: bool = False,
    resume_finished: bool = False,
) -> None:
    """Re-run this training under `accelerate launch` (`opts`: launcher.Options)."""
    from . import launcher

    port = opts.master_port or (free_port() if opts.nnodes == 1 else 29500)
    plan = launcher.plan(cfg, opts, port)
    if opts.node_rank == 0:  # the main node's run directory; checked again by every process
        run = Path(cfg.output_dir)
        checkpoint.check_run(run, resume, plan.engine, plan.world_size, cfg.max_steps,
                             resume_finished, log=lambda _: None)  # rank 0 logs it  # fmt: skip
    worker = ["train", config, *[x for o in overrides for x in ("--set", o)]]
    worker += ["--resume"] * resume + ["--resume-finished"] * resume_finished
    launcher.run(plan, worker)
