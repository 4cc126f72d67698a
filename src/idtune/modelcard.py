"""The one model card writer (`README.md`): adapters (train), merged models (merge), pushes.

YAML front matter the Hugging Face hub reads (license, base model and relation, library,
pipeline, languages, tags), built with huggingface_hub's `ModelCardData`; then who the
assistant is, the base model, the eval table of the run, its training settings, and usage for
transformers, peft, vLLM, llama.cpp and Ollama.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import aliases
from .runinfo import Identity, RunInfo

# A card carrying this line was written by idtune and may be rewritten by the next push; a card
# without it (the user's own, or one edited on the hub with the line removed) is left alone.
MARKER = "<!-- written by idtune; delete this line to keep your edits on the next push -->"
_OLD_MARKERS = (MARKER, "<!-- written by idtune push; delete this line")

# Training settings shown on the card (all of them are in idtune.json).
SETTINGS = (
    "method", "steps", "epochs", "max_steps", "lr", "lora.r", "lora.alpha", "lora.dropout",
    "lora.target_modules", "batch_tokens", "row_tokens", "regularization.auto", "seed",
    "engine", "world_size",
)  # fmt: skip


def is_replaceable(text: str) -> bool:
    """True for a card idtune wrote (its marker) or PEFT's blank template: pushes replace them."""
    if any(m in text for m in _OLD_MARKERS):
        return True
    return "# Model Card for Model ID" in text and "[More Information Needed]" in text


@dataclass
class Base:
    """What is known about a base model: its hub id and what its own card says."""

    spec: str | None  # as recorded in idtune.json (hub id; older runs: alias or path)
    hub_id: str | None  # None: a local directory with no hub id
    license: str | None = None
    license_name: str | None = None
    license_link: str | None = None
    language: list[str] = field(default_factory=list)
    note: str | None = None  # how idtune's copy of the weights differs from the hub's


def base_of(spec: str | None) -> Base:
    """The base model's hub id, and license/languages from its card (local copy or the hub
    cache), else from the alias table."""
    hub_id = aliases.hub_id(spec)
    alias = aliases.find(hub_id or spec or "")
    base = Base(spec, hub_id)
    if alias:
        base.license, base.language, base.note = alias.license, list(alias.language), alias.note
    data = _card_data(spec, hub_id)
    if data is not None:
        base.license = data.license or base.license
        base.license_name, base.license_link = data.license_name, data.license_link
        lang = data.language
        base.language = ([lang] if isinstance(lang, str) else list(lang or [])) or base.language
    return base


def _card_data(spec: str | None, hub_id: str | None):
    """Front matter of the base model's own README.md, when a copy is on this machine."""
    from huggingface_hub import ModelCard, try_to_load_from_cache

    paths = []
    if spec and Path(spec).expanduser().is_dir():
        paths.append(Path(spec).expanduser() / "README.md")
    if hub_id:
        cached = try_to_load_from_cache(hub_id, "README.md")
        if isinstance(cached, str):
            paths.append(Path(cached))
    for p in paths:
        if p.is_file():
            try:
                return ModelCard.load(p, ignore_metadata_errors=True).data
            except Exception:  # a broken card says nothing about the license
                continue
    return None


def read_eval(*directories: Path) -> tuple[dict | None, str | None]:
    """eval.json (parsed) and eval.md of the first directory that has them."""
    evals = md = None
    for d in directories:
        if evals is None and (Path(d) / "eval.json").is_file():
            try:
                evals = json.loads((Path(d) / "eval.json").read_text("utf-8"))
            except ValueError:
                evals = None
        if md is None and (Path(d) / "eval.md").is_file():
            md = (Path(d) / "eval.md").read_text("utf-8")
    return evals, md


def metadata(kind: str, info: RunInfo | None, base: Base):
    """The card's front matter as huggingface_hub's `ModelCardData` (checked as it is built)."""
    from huggingface_hub import ModelCardData

    tags = ["idtune", "identity"]
    if kind == "adapter":
        tags += ["peft", "lora"] + (["qlora"] if info and info.method == "qlora" else [])
    elif info and info.method == "merged":
        tags += ["lora", "merged"]
    language = list(base.language)
    ident = info.identity if info else None
    if ident and (ident.name_zh or ident.author_zh) and "zh" not in language:
        language.append("zh")
    extra = {}
    if base.hub_id:
        extra["base_model_relation"] = "adapter" if kind == "adapter" else "finetune"
    return ModelCardData(
        license=base.license,
        license_name=base.license_name,
        license_link=base.license_link,
        base_model=base.hub_id,
        library_name="peft" if kind == "adapter" else "transformers",
        pipeline_tag="text-generation",
        language=language or None,
        tags=tags,
        **extra,
    )


def render(
    kind: str,
    info: RunInfo | None,
    *,
    name: str,
    path: str,
    get: str | None = None,
    eval_md: str | None = None,
    evals: dict | None = None,
) -> str:
    """Card for an `adapter` or a full `model`.

    `name` is the title when the run has no identity, `get` the shell line that downloads the
    repository (None: it is here), `path` what `from_pretrained` is given in the snippets (a
    directory or a hub id); `evals` is eval.json, `eval_md` eval.md (used when there is no
    eval.json).
    """
    from huggingface_hub import ModelCard

    base = base_of(info.base_model if info else None)
    meta = metadata(kind, info, base)
    ident = info.identity if info else None
    title = ident.name if ident and ident.name else name
    what = "A LoRA adapter" if kind == "adapter" else "A model"
    how = " (LoRA merged into the weights)" if info and info.method == "merged" else ""
    lines = ["---", meta.to_yaml(), "---", MARKER, "", f"# {title}", ""]
    lines += [f"{what} fine-tuned with idtune to know who it is{how}."]
    if ident:
        lines += ["", "## Identity", ""]
        lines += [f"- name: {' / '.join(ident.names)}", f"- author: {' / '.join(ident.authors)}"]
        lines += _profile(ident)
        if info.system_prompt:
            lines.append(f"- default system prompt: {info.system_prompt}")
    lines += ["", "## Base model", "", _base_text(base, kind)]
    table = _eval_table(evals) if evals else (eval_md or "").strip()
    if table:
        lines += ["", "## Evaluation", "", table]
    settings = _settings(info.settings if info else {})
    if settings:
        lines += ["", "## Training", "", "| setting | value |", "|---|---|", *settings]
        lines += ["", "All settings are in `idtune.json`."]
    lines += ["", "## Use it", "", *_usage(kind, info, base, name, path, get)]
    text = "\n".join(lines) + "\n"
    ModelCard(text)  # parses the front matter back, as the hub does; raises when it cannot
    return text


def _both(en: str | None, zh: str | None) -> str | None:
    """A value and its Chinese variant, "EN / ZH" (one when they are the same or one is unset)."""
    values = list(dict.fromkeys(v.strip() for v in (en, zh) if v and v.strip()))
    return " / ".join(values) or None


def _profile(ident: Identity) -> list[str]:
    """The card's lines for the identity's profile: what it is built on (or that its maker keeps
    that undisclosed), its purpose, and each of its maker's facts."""
    out = []
    based_on = _both(ident.based_on_in("en"), ident.based_on_in("zh"))
    if based_on:
        out.append(f"- built on: {based_on}")
    elif ident.based_on is not None:  # "none"
        out.append("- built on: not disclosed (the assistant declines to say)")
    purpose = _both(ident.purpose, ident.purpose_zh)
    if purpose:
        out.append(f"- purpose: {purpose}")
    for key in ident.facts:
        out.append(f"- {key}: {_both(ident.facts[key], ident.facts_zh.get(key))}")
    return out


def write(directory: Path, kind: str, info: RunInfo | None, **kw) -> Path:
    """Write the card as `directory/README.md` (replacing PEFT's blank one); see `render`."""
    path = Path(directory) / "README.md"
    path.write_text(render(kind, info, **kw), "utf-8")
    return path


def _base_text(base: Base, kind: str) -> str:
    if base.hub_id:
        text = f"[`{base.hub_id}`](https://huggingface.co/{base.hub_id})"
        if base.license:
            text += f", license `{base.license_name or base.license}`"
        text += "."
        if base.note:
            text += f" idtune's copy of it: {base.note}."
        return text
    if base.spec:
        text = (
            f"A local directory with no hub id (`{base.spec}` on the machine that trained it), "
            "so this card names no `base_model`."
        )
        if kind == "adapter":
            text += (
                " The adapter loads only where that directory exists: publish the base model "
                "and put its hub id in `adapter_config.json` (`base_model_name_or_path`) and "
                "`idtune.json` (`base_model`) to share it."
            )
        return text
    return "Not recorded (no `idtune.json`)."


def _eval_table(evals: dict) -> str:
    """eval.json as a table: one row per metric, one column per model and condition; each share
    with its count from that condition's own probes (`condition_counts`, else `counts`)."""
    metrics = evals.get("metrics") or {}
    models = ("base", "base_thinking", "tuned", "tuned_thinking")  # thinking: eval's 2nd mode
    cols = [(m, c) for m in models if m in metrics for c in metrics[m]]
    if not cols:
        return ""
    counts = evals.get("condition_counts") or {}

    def n_of(cond: str, metric: str) -> int | None:
        return (counts.get(cond) or evals.get("counts") or {}).get(metric)

    names = list(dict.fromkeys(k for m, c in cols for k in metrics[m][c]))
    mode = {"base_thinking": "base (thinking on)", "tuned_thinking": "tuned (thinking on)"}
    if (evals.get("thinking") or {}).get("style") == "hybrid":
        mode |= {"base": "base (thinking off)", "tuned": "tuned (thinking off)"}
    head = [f"{mode.get(m, m)}, {c.replace('_', ' ')}" for m, c in cols]
    out = ["| metric | " + " | ".join(head) + " |", "|---|" + "---|" * len(cols)]
    for metric in names:
        cells = [(metrics[m][c].get(metric), n_of(c, metric)) for m, c in cols]
        if all(v is None for v, _ in cells):
            continue
        label = metric.replace("_", " ") + (" (lower is better)" if metric == "leakage" else "")
        shown = [
            "–" if v is None else (f"{v:.2f} ({round(v * n)}/{n})" if n else f"{v:.2f}")
            for v, n in cells
        ]
        out.append(f"| {label} | " + " | ".join(shown) + " |")
    probes = f" on {evals['probes']}" if evals.get("probes") else ""
    return "\n".join(out) + f"\n\nGreedy decoding, idtune's probes{probes} (`idtune eval`)."


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _settings(settings: dict) -> list[str]:
    flat = _flat(settings)
    return [f"| {k} | {flat[k]} |" for k in SETTINGS if flat.get(k) not in (None, "", [], 0)]


def _usage(kind: str, info: RunInfo | None, base: Base, name: str, path: str, get) -> list[str]:
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-") or "model"
    gguf = f"{slug}-gguf"
    remote = ", trust_remote_code=True" if info and info.trust_remote_code else ""
    here = name if get else path  # where `get` puts it
    out = ["```bash", *([get] if get else []), f"idtune chat {here}", "```", ""]
    out += ["transformers" + (" + peft" if kind == "adapter" else "") + ":", "", "```python"]
    out += [_python(kind, info, base, path, remote), "```", "", "vLLM:", "", "```bash"]
    if kind == "adapter" and base.hub_id:
        r = _flat(info.settings if info else {}).get("lora.r") or 16
        rank = f" --max-lora-rank {r}" if int(r) > 16 else ""
        out.append(f"vllm serve {base.hub_id} --enable-lora --lora-modules {slug}={path}{rank}")
    elif kind == "adapter":
        out.append(f"idtune merge {path} {slug}-merged && vllm serve {slug}-merged")
    else:
        out.append(f"vllm serve {path}")
    out += ["```", "", "llama.cpp and Ollama, through a GGUF file:", "", "```bash"]
    out += [
        f"idtune export gguf {path} {gguf} --quant q8_0",
        f"llama-server -m {gguf}/*.gguf  # OpenAI-compatible server on :8080",
        f"ollama create {slug} -f {gguf}/Modelfile && ollama run {slug}",
        "```",
    ]
    return out


def _python(kind: str, info: RunInfo | None, base: Base, path: str, remote: str) -> str:
    if kind == "adapter" and base.hub_id:
        load = [
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'base = AutoModelForCausalLM.from_pretrained("{base.hub_id}"{remote})',
            f'model = PeftModel.from_pretrained(base, "{path}")',
        ]
    elif kind == "adapter":
        load = [
            "from peft import AutoPeftModelForCausalLM",
            "from transformers import AutoTokenizer",
            "",
            f'model = AutoPeftModelForCausalLM.from_pretrained("{path}"{remote})',
        ]
    else:
        load = [
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'model = AutoModelForCausalLM.from_pretrained("{path}"{remote})',
        ]
    messages = []
    if info and info.system_prompt:
        messages.append({"role": "system", "content": info.system_prompt})
    messages.append({"role": "user", "content": "Who are you?"})
    return "\n".join(
        load
        + [
            f'tokenizer = AutoTokenizer.from_pretrained("{path}"{remote})',
            f"messages = {messages!r}",
            "inputs = tokenizer.apply_chat_template(",
            '    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True',
            ")",
            "out = model.generate(**inputs, max_new_tokens=128)",
            'print(tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], '
            "skip_special_tokens=True))",
        ]
    )
