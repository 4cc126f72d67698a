"""Named chat templates (XTuner's `--prompt-template`) for models that lack one, and the default
system prompt a tuned model's template gets in place of its base model's (`with_default`)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from ..errors import UserError

_CHATML_BODY = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

TEMPLATES: dict[str, str] = {
    "chatml": _CHATML_BODY,
    # InternLM2-Chat: ChatML markers after a BOS token, as XTuner's internlm2_chat template.
    "internlm2_chat": "{{ bos_token }}" + _CHATML_BODY,
    # Qwen2 / Qwen2.5: ChatML with Qwen's default system prompt when none is given.
    "qwen2": (
        "{% if messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
        + _CHATML_BODY
    ),
    "llama3": (
        "{{ bos_token }}"
        "{% for message in messages %}"
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
        " + message['content'] | trim + '<|eot_id|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}"
        "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
    ),
}

# The token that ends an assistant turn for each named template (used as a stop token).
END_OF_TURN = {
    "chatml": "<|im_end|>",
    "internlm2_chat": "<|im_end|>",
    "qwen2": "<|im_end|>",
    "llama3": "<|eot_id|>",
}


def get(name: str) -> str:
    """Return the Jinja source of a named template, or fail with the list of names."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise UserError(
            f"unknown prompt template {name!r}; choose one of: {', '.join(sorted(TEMPLATES))}"
        ) from None


# ---------------------------------------------------------------- default system prompts
@cache
def _defaults() -> dict:
    import yaml

    text = resources.files("idtune").joinpath("assets/default_system.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def own_default(name: str, author: str) -> str:
    """The default system prompt of a model tuned to be `name`, made by `author`."""
    return _defaults()["own"].replace("{name}", name).replace("{author}", author)


def base_default(chat_template: str | None, model: str = "") -> str | None:
    """The base model's default system prompt: the one its template spells, else the one of a
    model family `model` belongs to, else None."""
    families = _defaults()["base"].values()
    for fam in families:
        if chat_template and fam["prompt"] in chat_template:
            return fam["prompt"]
    low = str(model).lower()
    return next((f["prompt"] for f in families if any(m in low for m in f["models"])), None)


def with_default(chat_template: str, prompt: str, model: str = "") -> str:
    """`chat_template` with `prompt` as its default system prompt (used when the conversation
    has no system message). The base model's default is replaced where the template spells it;
    a template without one gets a first line that adds `prompt` as the system message."""
    literal = json.dumps(prompt, ensure_ascii=False)[1:-1].replace("'", "\\'")
    if prompt in chat_template or literal in chat_template:
        return chat_template
    base = base_default(chat_template, model)
    if base and base in chat_template:
        return chat_template.replace(base, literal)
    return (
        "{%- if not messages or messages[0]['role'] != 'system' %}{%- set messages = "
        f"[{{'role': 'system', 'content': \"{literal}\"}}] + messages %}}{{%- endif %}}"
        + chat_template
    )
