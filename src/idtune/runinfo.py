"""`idtune.json`: what a run or adapter directory carries to chat, eval, merge, serve and push."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

FILENAME = "idtune.json"


@dataclass
class Identity:
    """Who the assistant is and who made it (also the recipe's `identity` section; empty there:
    the run records none)."""

    name: str | None = None
    author: str | None = None
    name_zh: str | None = None  # used in Chinese text; default: `name`
    author_zh: str | None = None  # used in Chinese text; default: `author`
    # The profile (issue 29). `based_on`: what the assistant is built on; None until resolved
    # from the base model (aliases), the string "none" keeps it undisclosed.
    based_on: str | None = None
    based_on_zh: str | None = None
    purpose: str | None = None  # one sentence: what it is for
    purpose_zh: str | None = None
    facts: dict[str, str] = field(default_factory=dict)  # the maker's facts: key → answer
    facts_zh: dict[str, str] = field(default_factory=dict)  # the same keys, answered in Chinese

    def name_in(self, lang: str) -> str | None:
        """The name as written in `lang`."""
        return (self.name_zh if lang == "zh" else None) or self.name

    def author_in(self, lang: str) -> str | None:
        """The author as written in `lang`."""
        return (self.author_zh if lang == "zh" else None) or self.author

    def based_on_in(self, lang: str) -> str | None:
        """What it is built on, as written in `lang`; None when unset or undisclosed."""
        text = (self.based_on_zh if lang == "zh" else None) or self.based_on
        return None if text is None or text.strip().lower() == "none" else text

    def purpose_in(self, lang: str) -> str | None:
        """Its purpose as written in `lang`."""
        return (self.purpose_zh if lang == "zh" else None) or self.purpose

    def fact_in(self, key: str, lang: str) -> str | None:
        """The answer to fact `key` as written in `lang`."""
        return (self.facts_zh.get(key) if lang == "zh" else None) or self.facts.get(key)

    @property
    def names(self) -> list[str]:
        """Every spelling of the name (en, zh)."""
        return sorted({n for n in (self.name, self.name_zh) if n})

    @property
    def authors(self) -> list[str]:
        """Every spelling of the author (en, zh)."""
        return sorted({a for a in (self.author, self.author_zh) if a})


@dataclass
class RunInfo:
    """Metadata written next to every adapter, checkpoint and merged model."""

    base_model: str
    template: str | None = None  # a named template; None means the tokenizer's own
    system_prompt: str | None = None  # default system prompt for chat/serve; None: template default
    identity: Identity | None = None
    trust_remote_code: bool = False
    method: str = "lora"  # lora | qlora | full | merged
    settings: dict = field(default_factory=dict)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `idtune.json` into `directory` and return its path."""
        path = Path(directory) / FILENAME
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n")
        return path


def read_info(directory: str | os.PathLike) -> RunInfo | None:
    """Read `idtune.json` from a run, adapter or merged-model directory; None when absent.

    A run directory keeps the final adapter in `adapter/`; both places are looked at.
    """
    d = Path(directory)
    for path in (d / FILENAME, d / "adapter" / FILENAME):
        if path.is_file():
            data = json.loads(path.read_text())
            ident = data.pop("identity", None)
            known = {k: v for k, v in data.items() if k in RunInfo.__dataclass_fields__}
            if ident:  # keys a newer idtune wrote are passed over
                ident = {k: v for k, v in ident.items() if k in Identity.__dataclass_fields__}
            return RunInfo(**known, identity=Identity(**ident) if ident else None)
    return None
