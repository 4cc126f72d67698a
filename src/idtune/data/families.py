"""Model families as data: one file each under `assets/families/` (fields: its README.md).

A family is found from the model's own chat template first, then from `config.json`'s
`model_type`, and only then from the model's name (`detect`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from ..errors import UserError

SYSTEM_STYLES = ("role", "first_user")
THINKING_STYLES = ("none", "hybrid", "always")


@dataclass(frozen=True)
class Family:
    """What idtune knows about one model family (assets/families/NAME.yaml)."""

    name: str
    template_markers: tuple[str, ...] = ()
    model_types: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    end_of_turn: tuple[str, ...] = ()
    default_system: str | None = None
    system: str = "role"
    thinking: dict[str, Any] = field(default_factory=lambda: {"style": "none"})
    prompt_template: str | None = None
    ollama: dict[str, Any] | None = None

    @property
    def thinks(self) -> bool:
        """Whether the family's models write reasoning before the answer."""
        return self.thinking.get("style", "none") != "none"


def _family(path: str, data: dict) -> Family:
    """A family file's contents, checked (a broken file is one line naming it)."""
    try:
        detect = data.get("detect") or {}
        fam = Family(
            name=str(data["name"]),
            template_markers=tuple(detect.get("template") or ()),
            model_types=tuple(detect.get("model_type") or ()),
            names=tuple(n.lower() for n in detect.get("names") or ()),
            end_of_turn=tuple(data.get("end_of_turn") or ()),
            default_system=data.get("default_system"),
            system=data.get("system", "role"),
            thinking=dict(data.get("thinking") or {"style": "none"}),
            prompt_template=data.get("prompt_template"),
            ollama=data.get("ollama"),
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{path}: not a family file ({e})") from None
    if fam.system not in SYSTEM_STYLES:
        raise UserError(f"{path}: system {fam.system!r}: one of {', '.join(SYSTEM_STYLES)}")
    if fam.thinking.get("style", "none") not in THINKING_STYLES:
        raise UserError(f"{path}: thinking.style: one of {', '.join(THINKING_STYLES)}")
    if fam.thinks and not (fam.thinking.get("open") and fam.thinking.get("close")):
        raise UserError(f"{path}: thinking: a thinking family needs `open` and `close` tags")
    return fam


@cache
def all_families() -> dict[str, Family]:
    """Every shipped family, by name."""
    import yaml

    out = {}
    folder = resources.files("idtune").joinpath("assets/families")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            fam = _family(f"assets/families/{entry.name}", yaml.safe_load(entry.read_text("utf-8")))
            if f"{fam.name}.yaml" != entry.name:
                raise UserError(f"assets/families/{entry.name}: name {fam.name!r} ≠ file name")
            out[fam.name] = fam
    return out


def get(name: str) -> Family:
    """The family called `name`, or one line listing them."""
    fams = all_families()
    if name not in fams:
        raise UserError(f"unknown model family {name!r}; known: {', '.join(sorted(fams))}")
    return fams[name]


def by_template(chat_template: str | None) -> Family | None:
    """The family whose template markers all occur in `chat_template` (the longest in total
    when several do), or None."""
    if not chat_template:
        return None
    scored = [
        (sum(len(m) for m in f.template_markers), f)
        for f in all_families().values()
        if f.template_markers and all(m in chat_template for m in f.template_markers)
    ]
    return max(scored, key=lambda sf: sf[0])[1] if scored else None


def detect(
    chat_template: str | None = None, model_type: str | None = None, model: str = ""
) -> Family | None:
    """A model's family: from its chat template, else its `config.json` model_type, else a
    substring of its name or path; None when nothing fits."""
    fam = by_template(chat_template)
    if fam is not None:
        return fam
    fams = all_families().values()
    if model_type:
        fam = next((f for f in fams if model_type in f.model_types), None)
        if fam is not None:
            return fam
    low = str(model).lower()
    return next((f for f in fams if any(n in low for n in f.names)), None) if low else None


def prompt_templates() -> dict[str, str]:
    """The named chat templates (`--prompt-template`): family → Jinja source."""
    return {n: f.prompt_template for n, f in all_families().items() if f.prompt_template}
