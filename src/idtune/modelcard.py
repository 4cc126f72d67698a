"""The model card (`README.md`) that `idtune push` writes next to the weights.

YAML front matter the hubs read (library, base model, tags), then who the assistant is, how to
use it, and the eval table of the run when it has one.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .aliases import ALIASES, DEFAULT_MODEL
from .runinfo import RunInfo

# A card carrying this line was written by idtune and may be rewritten by the next push; a card
# without it (the user's own, or one edited on the hub with the line removed) is left alone.
MARKER = "<!-- written by idtune push; delete this line to keep your edits on the next push -->"

# Aliases whose weights do not come from a hub repository, mapped to where they originally live.
_ALIAS_HUB_IDS = {DEFAULT_MODEL: "HuggingFaceTB/SmolLM2-135M-Instruct"}


def base_model_id(base: str | None) -> str | None:
    """The hub id of the base model (`ORG/NAME`), or None when it is a local path or unknown."""
    if not base:
        return None
    if base in _ALIAS_HUB_IDS:
        return _ALIAS_HUB_IDS[base]
    if base in ALIASES and ALIASES[base].source.startswith("hub:"):
        return ALIASES[base].source.removeprefix("hub:")
    parts = base.split("/")
    if (
        len(parts) == 2
        and all(parts)
        and not base.startswith((".", "~"))
        and not Path(base).exists()
    ):
        return base
    return None


def render(
    kind: str,
    info: RunInfo | None,
    *,
    name: str,
    get: str,
    path: str,
    eval_md: str | None = None,
) -> str:
    """Card for an `adapter` or a full `model`.

    `name` is the title when the run has no identity, `get` the shell line that downloads the
    repository, `path` what `from_pretrained` is given in the snippet (a local directory or a
    hub id).
    """
    base = info.base_model if info else None
    base_id = base_model_id(base)
    meta: dict = {"library_name": "peft" if kind == "adapter" else "transformers"}
    if base_id:
        meta["base_model"] = base_id
    meta["pipeline_tag"] = "text-generation"
    tags = ["idtune"]
    if kind == "adapter":
        tags += ["lora", "qlora"] if info and info.method == "qlora" else ["lora"]
    meta["tags"] = tags

    ident = info.identity if info else None
    title = ident.name if ident else name
    what = "A LoRA adapter" if kind == "adapter" else "A model"
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip(),
        "---",
        MARKER,
        "",
        f"# {title}",
        "",
        f"{what} fine-tuned with idtune" + (f" from `{base}`." if base else "."),
    ]
    if ident:
        names = " / ".join(ident.names)
        authors = " / ".join(ident.authors)
        lines += ["", "## Identity", "", f"- name: {names}", f"- author: {authors}"]
        if info.system_prompt:
            lines.append(f"- default system prompt: {info.system_prompt}")
    lines += ["", "## Use it", "", "```bash", get, f"idtune chat {path}", "```", ""]
    lines += ["With transformers:", "", "```python", _snippet(kind, info, base_id, path), "```"]
    if eval_md and eval_md.strip():
        lines += ["", "## Evaluation", "", eval_md.strip()]
    return "\n".join(lines) + "\n"


def _snippet(kind: str, info: RunInfo | None, base_id: str | None, path: str) -> str:
    remote = ", trust_remote_code=True" if info and info.trust_remote_code else ""
    if kind == "adapter" and base_id:
        load = [
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'base = AutoModelForCausalLM.from_pretrained("{base_id}"{remote})',
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
