"""Named chat templates (XTuner's `--prompt-template`) for models that lack one."""

from __future__ import annotations

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
