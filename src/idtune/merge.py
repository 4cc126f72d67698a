"""`idtune merge`: fold a LoRA adapter into its base model and save a self-contained model."""

from __future__ import annotations

from pathlib import Path

from . import atomic, models, runinfo
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
    import torch

    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise UserError(f"{out} exists and is not empty; pass --overwrite to replace it")
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
    info = loaded.info or runinfo.RunInfo(base_model=str(model))
    merged_info = runinfo.RunInfo(
        base_model=info.base_model,
        template=loaded.template,
        system_prompt=info.system_prompt,
        identity=info.identity,
        trust_remote_code=info.trust_remote_code,
        method="merged",
        settings=info.settings,
    )

    def write(tmp: Path) -> None:
        loaded.model.save_pretrained(tmp, max_shard_size=max_shard_size, safe_serialization=True)
        loaded.tokenizer.save_pretrained(tmp)
        merged_info.save(tmp)
        (tmp / "README.md").write_text(model_card(merged_info))

    atomic.write_dir(out, write)
    return out


def model_card(info: runinfo.RunInfo) -> str:
    """A short model card for a merged model."""
    ident = info.identity
    who = f"{ident.name}, made by {ident.author}" if ident else "a fine-tuned assistant"
    return (
        "---\n"
        "library_name: transformers\n"
        f"base_model: {info.base_model}\n"
        "pipeline_tag: text-generation\n"
        "tags: [idtune, merged, lora]\n"
        "---\n\n"
        f"# {ident.name if ident else 'idtune model'}\n\n"
        f"This is {who}: `{info.base_model}` with an idtune LoRA adapter merged in.\n\n"
        "```bash\nidtune chat .        # or: idtune serve . --port 7860\n```\n"
    )
