"""`idtune deploy openxlab|hf-space OUT --model REPO`: a ready folder for a hosted Gradio app.

The folder holds `app.py` (fetches the model at start, serves idtune's web chat and API on
0.0.0.0:7860), `requirements.txt` (idtune's dependencies pinned at the versions installed here),
`packages.txt` (git, git-lfs), a README (with the Space front matter for hf-space) and a copy of
the `idtune` package itself: idtune has no PyPI release, and the copy is exactly the code that
wrote the app. Tokens are read from the environment at start (`IDTUNE_GIT_TOKEN`, `HF_TOKEN`),
never written into the folder.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import re
import shutil
from pathlib import Path

from .errors import UserError

TARGETS = ("openxlab", "hf-space")
OPENXLAB_GIT = "https://code.openxlab.org.cn"
PACKAGES_TXT = "git\ngit-lfs\n"
EXTRA_PINS = ("tokenizers", "sentencepiece", "httpx")  # needed at runtime, not declared by idtune

APP_PY = '''\
"""Hosted idtune app: fetch the model, then serve the web chat at / and an OpenAI-compatible
API at /v1 on port 7860. Written by `idtune deploy`.

Environment (set secrets in the hosting platform's settings, never in this file):
  IDTUNE_GIT_TOKEN   token for a private git model repository (OpenXLab, ModelScope, ...)
  HF_TOKEN           token for a private Hugging Face model repository
  IDTUNE_MODEL       serve this instead (git URL, hf:USER/REPO, or a local directory)
  IDTUNE_MODEL_DIR   where the model is downloaded (default: ./model)
  IDTUNE_API_KEY     require this bearer key on /v1 (the web chat then asks for it)
  GRADIO_SERVER_NAME / GRADIO_SERVER_PORT   bind address and port (default 0.0.0.0:7860)
"""

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the copy of idtune shipped next to this file

MODEL = {model!r}


def fetch(model: str) -> str:
    """A local directory as is; else clone it once (git + LFS, or hf:) into IDTUNE_MODEL_DIR."""
    local = Path(model).expanduser()
    if local.is_dir():
        return str(local)
    from idtune.hub import pull  # reads IDTUNE_GIT_TOKEN / HF_TOKEN from the environment

    target = Path(os.environ.get("IDTUNE_MODEL_DIR", HERE / "model"))
    done = target.with_name(target.name + ".complete")
    if not done.is_file():
        shutil.rmtree(target, ignore_errors=True)
        pull(model, target)
        done.touch()
    return str(target)


def main() -> None:
    from idtune.serve import server

    server.serve(
        fetch(os.environ.get("IDTUNE_MODEL") or MODEL),
        adapter=None,
        host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        api_key=os.environ.get("IDTUNE_API_KEY") or None,
        backend="transformers",
        system=None,
        template=None,
        trust_remote_code=os.environ.get("IDTUNE_TRUST_REMOTE_CODE") == "1",
    )


if __name__ == "__main__":
    main()
'''

SPACE_README = """\
---
title: {title_yaml}
emoji: 💬
colorFrom: indigo
colorTo: blue
sdk: gradio
sdk_version: {gradio}
python_version: "3.11"
app_file: app.py
pinned: false
---

# {title}

A chat assistant served by idtune from `{model}`: web chat at `/`,
OpenAI-compatible API at `/v1`. {notes}
"""

PLAIN_README = """\
# {title}

An OpenXLab Gradio app written by `idtune deploy`: it serves `{model}` with a web chat at `/`
and an OpenAI-compatible API at `/v1` on port 7860. {notes}
"""

NOTES = (
    "For a private model repository set the secret `IDTUNE_GIT_TOKEN` (git hosts) or "
    "`HF_TOKEN` (Hugging Face); set `IDTUNE_API_KEY` to require a key on the API."
)


def model_url(target: str, model: str) -> str:
    """REPO as the app fetches it: git URLs and `hf:` ids as given, USER/REPO per target."""
    if model.startswith("hf:") or "://" in model or model.startswith("git@"):
        return model
    if re.fullmatch(r"[\w.-]+/[\w.-]+", model):
        if target == "hf-space":
            return f"hf:{model}"
        return f"{OPENXLAB_GIT}/{model.removesuffix('.git')}.git"
    raise UserError(f"--model {model!r}: give USER/REPO, a git URL or hf:USER/REPO")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name).split("+")[0]  # torch 2.13.0+cpu → 2.13.0
    except metadata.PackageNotFoundError:
        return None


def requirements() -> str:
    """idtune's runtime dependencies pinned at the installed versions (`==`)."""
    lines = ["# idtune's dependencies, pinned at the versions the app was written with."]
    lines.append("# idtune itself is the copy in ./idtune (no PyPI release).")
    try:
        declared = [r for r in metadata.requires("idtune") or [] if "extra ==" not in r]
    except metadata.PackageNotFoundError:
        declared = []
    names = [re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0] for r in declared]
    for name in dict.fromkeys([*names, *EXTRA_PINS]):
        version = _version(name)
        if version:
            lines.append(f"{name}=={version}")
        elif name not in EXTRA_PINS:
            lines.append(next(r for r in declared if r.startswith(name)))
    return "\n".join(lines) + "\n"


def _vendor(out: Path) -> None:
    src = Path(__file__).resolve().parent
    dest = out / "idtune"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def deploy(target: str, out: Path, model: str, *, overwrite: bool = False) -> Path:
    """Write the app folder for `target` into `out` and return `out`."""
    if target not in TARGETS:
        raise UserError(f"unknown deploy target {target!r}: {' or '.join(TARGETS)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} is not empty; choose a new directory or pass --overwrite")
    url = model_url(target, model)
    title = url.rstrip("/").removesuffix(".git").rsplit("/", 1)[-1].removeprefix("hf:")
    out.mkdir(parents=True, exist_ok=True)
    (out / "app.py").write_text(APP_PY.format(model=url))
    (out / "requirements.txt").write_text(requirements())
    (out / "packages.txt").write_text(PACKAGES_TXT)
    readme = SPACE_README if target == "hf-space" else PLAIN_README
    gradio = _version("gradio") or "5.0.0"
    text = readme.format(
        title=title, title_yaml=json.dumps(title), model=url, gradio=gradio, notes=NOTES
    )
    (out / "README.md").write_text(text)
    _vendor(out)
    return out
