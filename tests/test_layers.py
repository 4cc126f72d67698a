"""DESIGN §7's layers: cli → verbs → generate → models → data/, runinfo, recipes; arrows only down.

Every import in the package (function-level ones included) is read from the source and checked:
no module imports one above it, no verb imports another verb, `data/` imports no model code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import idtune

SRC = Path(idtune.__file__).parent

# Lower number = higher layer. The verb helpers serve verbs and import nothing above generate.
LAYERS = {
    "cli": 0,
    **dict.fromkeys(
        [
            "train",
            "chat",
            "evaluate",
            "merge",
            "export",
            "serve",
            "hub",
            "deploy",
            "regularize",
            "studio",
        ],
        1,
    ),
    **dict.fromkeys(
        ["modelcard", "accel", "loss", "checkpoint", "launcher", "parallel", "watch", "llamacpp"],
        1.5,
    ),  # verb helpers
    "generate": 2,
    "models": 3,
    # the ground floor: pure data and small utilities
    **dict.fromkeys(
        [
            "data",
            "runinfo",
            "recipes",
            "aliases",
            "cache",
            "errors",
            "atomic",
            "progress",
            "profiling",
            "ports",
            "outputs",
        ],
        4,
    ),
}
VERBS = {m for m, level in LAYERS.items() if level == 1}


def top(module: str) -> str:
    """`idtune.data.render` → `data`; `idtune.serve.server` → `serve`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def is_module(name: str) -> bool:
    path = SRC.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports() -> list[tuple[str, str, int]]:
    """(importing module, imported idtune module, line) for every import in the package."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")
                if node.level:
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [f"{target}.{a.name}" for a in node.names] if not node.module else []
                names = [t for t in names if is_module(t)]  # `from . import __version__`: a name
                for t in names or [target]:
                    if t.startswith("idtune"):
                        out.append((module, t, node.lineno))
            elif isinstance(node, ast.Import):
                out += [
                    (module, a.name, node.lineno) for a in node.names if a.name.startswith("idtune")
                ]
    return out


def test_every_module_has_a_layer():
    tops = {top(m) for m, _, _ in imports()} | {top(t) for _, t, _ in imports()}
    assert tops - {""} <= set(LAYERS), sorted(tops - set(LAYERS))


def test_arrows_only_point_down():
    upward = []
    for src, dst, line in imports():
        a, b = top(src), top(dst)
        if not a or not b or a == b:
            continue  # inside one package (serve/, data/) or the package root
        if LAYERS[b] < LAYERS[a]:  # sideways among verbs: the next test
            upward.append(f"{src}:{line} imports {dst}")
    assert not upward, "\n".join(upward)


def test_no_verb_imports_another_and_data_is_pure():
    bad = []
    for src, dst, line in imports():
        a, b = top(src), top(dst)
        if a in VERBS and b in VERBS and a != b:
            bad.append(f"{src}:{line} (a verb) imports the verb {dst}")
        if a == "data" and b not in ("data", "errors", "runinfo"):
            bad.append(f"{src}:{line} (data/) imports {dst}")
    assert not bad, "\n".join(bad)


def test_the_walk_sees_function_level_imports():
    """The checks above would pass vacuously if the walk missed imports inside functions."""
    found = {(s, d) for s, d, _ in imports()}
    assert ("idtune.cli", "idtune.train") in found  # `from . import recipes, regularize, train`
    assert ("idtune.models", "idtune.data") in found  # `from .data import templates`, in a function
    assert ("idtune.data.render", "idtune.data.mentions") in found
