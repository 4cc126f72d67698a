"""`idtune merge`: fold a LoRA adapter into its base model and save a self-contained model."""

from __future__ import annotations

from pathlib import Path

from . import aliases, atomic, modelcard, models, outputs, runinfo
from .errors import UserError

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def merge(
    model: str,
    out: Path,
    *,
    adapter: str | None = None,
    max_shard_size: str = "2GB",
    dtype: str = "bf16",
    overwrite: bool = False,
    trust_remote_code: bool = False,
) -> Path:
    """Merge on CPU and write safetensors shards (+ index), tokenizer, chat template, card."""
    outputs.check_choice("--dtype", dtype, DTYPES)
    out = Path(out)
    outputs.check_dir(out)
    check_apart(out, model, models.locate(model, adapter))
    outputs.check_new_dir(out, overwrite=overwrite)
    import torch

    loaded = models.load(
        model,
        adapter,
        device="cpu",
        dtype=getattr(torch, DTYPES[dtype]),
        trust_remote_code=trust_remote_code,
        merge=True,
    )
    if loaded.source.adapter is None:
        raise UserError(f"{model}: no adapter found to merge (pass a run directory or --adapter)")
    info = loaded.info or runinfo.RunInfo(base_model=loaded.source.base)
    merged_info = runinfo.RunInfo(
        base_model=aliases.portable(info.base_model),
        template=loaded.template,
        system_prompt=info.system_prompt or models.own_system_prompt(info),
        identity=info.identity,
        trust_remote_code=info.trust_remote_code,
        method="merged",
        settings=info.settings,
    )

    runs = [Path(p) for p in (model, loaded.source.adapter) if p and Path(p).is_dir()]
    evals, md = modelcard.read_eval(*runs)  # measured on the adapter, before merging

    def write(tmp: Path) -> None:
        loaded.model.save_pretrained(tmp, max_shard_size=max_shard_size, safe_serialization=True)
        loaded.tokenizer.save_pretrained(tmp)
        merged_info.save(tmp)
        modelcard.write(
            tmp, "model", merged_info, name=out.name, path=str(out), evals=evals, eval_md=md
        )

    atomic.write_dir(out, write)
    return out


def check_apart(out: Path, model: str, source: models.Source) -> None:
    """Refuse an OUT that is, contains or is inside what is merged (even with --overwrite):
    replacing it would delete the run, adapter or base model being read."""
    sources = [("base model", source.base), ("adapter", source.adapter), ("run", model)]
    if source.adapter and Path(source.adapter).name == "adapter":
        sources.append(("run", str(Path(source.adapter).parent)))
    where = out.resolve()
    found = []  # (0 is, 1 is inside, 2 contains; what; its path)
    for name, p in sources:
        if p is None or not Path(p).exists():
            continue  # a hub id, not a directory here
        src = Path(p).resolve()
        if where == src or src in where.parents or where in src.parents:
            found.append((0 if where == src else 1 if src in where.parents else 2, name, src))
    if found:
        how, name, src = min(found, key=lambda f: f[0])
        relation = ("is", "is inside", "contains")[how]
        raise UserError(
            f"{out} {relation} the {name} being merged ({src}); merge into a new directory"
        )
