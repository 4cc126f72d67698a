"""Named chat templates (XTuner's `--prompt-template`, from the family files) for models that lack
one, and the default system prompt a tuned model's template gets in place of its base model's
(`with_default`)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from ..errors import UserError
from . import families


def names() -> list[str]:
    """The named templates, sorted."""
    return sorted(families.prompt_templates())


def get(name: str) -> str:
    """Return the Jinja source of a named template, or fail with the list of names."""
    try:
        return families.prompt_templates()[name]
    except KeyError:
        raise UserError(
            f"unknown prompt template {name!r}; choose one of: {', '.join(names())}"
        ) from None


# ---------------------------------------------------------------- default system prompts
@cache
def _defaults() -> dict:
    import yaml

    text = resources.files("idtune").joinpath("assets/default_system.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def own_default(
    name: str, author: str, based_on: str | None = None, purpose: str | None = None
) -> str:
    """The default system prompt of a model tuned to be `name`, made by `author`; with what it
    is built on ("none": undisclosed, left out) and its purpose when the profile sets them."""
    d = _defaults()
    text = d["own"].replace("{name}", name).replace("{author}", author)
    if based_on and based_on.strip() and based_on.strip().lower() != "none":
        text += " " + d["based_on"].replace("{based_on}", based_on.strip())
    if purpose and purpose.strip():
        text += " " + d["purpose"].replace("{purpose}", purpose.strip().rstrip("."))
    return text


def base_default(
    chat_template: str | None, model: str = "", model_type: str | None = None
) -> str | None:
    """The base model's default system prompt: its family's (found from the template, else
    `model_type`, else the name `model`), else None."""
    fam = families.detect(chat_template, model_type, model)
    return fam.default_system if fam else None


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
