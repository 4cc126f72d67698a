"""The CLI's surface: `--version`, `copy-cfg` spelling out every key, README defaults = CLI's."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import re
from pathlib import Path

import pytest
import yaml
from helpers import cli

from idtune import recipes


def keys(cls: type, prefix: str = "") -> list[str]:
    """Every field of a config dataclass, dotted for sections: ["model", "lora.r", ...]."""
    out = []
    for f in dataclasses.fields(cls):
        out.append(prefix + f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            out += keys(type(default), f"{prefix}{f.name}.")
    return out


def test_version(capsys):
    assert cli("--version") == 0
    assert capsys.readouterr().out == f"idtune {importlib.metadata.version('idtune')}\n"


@pytest.mark.parametrize("name", recipes.names())
def test_copy_cfg_writes_every_key_with_a_comment(tmp_path, capsys, name):
    assert cli("copy-cfg", name, tmp_path) == 0
    copied = tmp_path / f"{name}_copy.yaml"
    lines = copied.read_text().splitlines()
    stack: list[str] = []
    seen = {}
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([a-z_0-9]+):", line)
        if not m:
            continue
        depth = len(m.group(1)) // 2
        stack = stack[:depth] + [m.group(2)]
        above = lines[i - 1].strip()
        seen[".".join(stack)] = above
    every = keys(recipes.TrainConfig)
    assert set(seen) == set(every), set(every) ^ set(seen)
    for key in every:
        assert seen[key].startswith("# ") and len(seen[key]) > 8, (key, seen[key])
    # the copy trains exactly as the built-in recipe does
    assert recipes.read_config(str(copied)) == recipes.read_config(name)
    assert yaml.safe_load(copied.read_text())["model"] == recipes.read_config(name).model


def readme_defaults() -> list[tuple[str, str, str]]:
    """(where, option, default) rows of the README's "## Defaults" table."""
    text = (Path(__file__).parent.parent / "README.md").read_text("utf-8")
    section = text.split("\n## Defaults\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1].startswith("`"):
            rows.append((cells[0].strip("`"), cells[1].strip("`"), cells[2]))
    return rows


def test_readme_defaults_are_the_clis():
    import typer

    from idtune.cli import app

    rows = readme_defaults()
    assert len(rows) >= 15
    group = typer.main.get_command(app)
    recipe = recipes.read_config("identity-lora")
    for where, option, stated in rows:
        if where.endswith(" recipe"):
            value = recipe
            for part in option.split("."):
                value = getattr(value, part)
            assert str(value) == stated, (where, option, value)
            continue
        command = group
        for word in where.split()[1:]:  # "idtune data identity" → data → identity
            command = command.commands[word]
        (param,) = [p for p in command.params if option in p.opts]
        assert str(param.default) == stated, (where, option, param.default)
