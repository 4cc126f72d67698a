"""Every path the studio reads or writes, inside `--runs`.

A path typed on the page (an output folder, a probe file, a model folder, a local push remote) is
taken relative to RUNS, resolved (symlinks followed) and then checked to lie inside RUNS and
outside the studio's own folder (`RUNS/.studio`: jobs, data, uploads). Uploads are accepted only
from Gradio's upload folder, `RUNS/.studio/uploads`. A model is an alias, a hub id or a folder
inside RUNS; the Python files `trust_remote_code` would run are named before it may.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .. import aliases
from ..errors import UserError
from .jobs import STATE

UPLOADS = "uploads"  # under RUNS/.studio: where Gradio keeps what the browser uploads
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")  # ORG/NAME, never a path
REMOTE = re.compile(r"(hf:|https?://|ssh://|[\w.-]+@[\w.-]+:(?!/))\S+")  # push targets not local
CODE_CONFIGS = ("config.json", "tokenizer_config.json")  # where an `auto_map` names code


def uploads_dir(runs: Path) -> Path:
    """Gradio's upload folder for the studio of `runs`."""
    return Path(runs).resolve() / STATE / UPLOADS


def inside(runs: Path, value: str | Path, what: str, shown: str | None = None) -> Path:
    """`value` (relative: to `runs`) as a resolved path inside `runs`, not the runs folder itself
    nor the studio's own files; one line naming `what` (and `shown`, else `value`) otherwise."""
    runs = Path(runs).resolve()
    text = str(value or "").strip()
    if not text:
        raise UserError(f"{what}: a path inside the runs folder {runs} is needed")
    try:
        path = (runs / text).resolve()  # an absolute `text` stands alone
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"{what} {text!r}: not a usable path ({e})") from None
    text = shown or text
    if path == runs or not path.is_relative_to(runs):
        raise UserError(
            f"{what} {text}: not inside the runs folder {runs} (the studio reads and writes "
            "only there)"
        )
    if path.is_relative_to(runs / STATE):
        raise UserError(f"{what} {text}: {runs / STATE} holds the studio's own files")
    return path


def upload(runs: Path, path: str | Path) -> Path:
    """An uploaded file's path, refused unless it lies in the studio's upload folder."""
    folder = uploads_dir(runs)
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(folder) or not resolved.is_file():
        raise UserError(f"{Path(path).name}: not a file uploaded to this studio")
    return resolved


def model(runs: Path, spec: str) -> str:
    """The model a studio run may use: an alias, a hub id, or a folder inside `runs` (returned
    as its absolute path). A folder outside (also one relative to where the studio was started,
    which `idtune train` would load) is one line."""
    spec = (spec or "").strip()
    if not spec:
        raise UserError(
            "model: an alias (`idtune models`), a hub id or a folder in the runs folder"
        )
    if Path(spec).is_absolute() or (Path(runs) / spec).exists():
        path = inside(runs, spec, "model")
    elif Path(spec).expanduser().exists():  # `idtune train` would load this folder
        path = inside(runs, Path(spec).expanduser().resolve(), "model", spec)
    elif aliases.find(spec) or HUB_ID.fullmatch(spec):
        return spec
    else:
        raise UserError(
            f"model {spec}: not an alias (`idtune models`), a hub id ORG/NAME, or a folder "
            "inside the runs folder"
        )
    if not path.is_dir():
        raise UserError(f"model {spec}: not a model folder")
    return str(path)


def remote_code(runs: Path, spec: str) -> list[str]:
    """The Python files `trust_remote_code` would run for `spec` (a value `model` returned):
    those the `auto_map` of its config.json and tokenizer_config.json names, and what they
    import relatively (transformers' own rule). Empty: the model brings no code."""
    alias = aliases.find(spec)
    if alias is not None and alias.weights:
        return []  # converted by idtune from a GGUF file: no code of its own
    if Path(spec).is_absolute():
        folder, shown = Path(spec), Path(spec).relative_to(Path(runs).resolve()).as_posix()
    else:
        repo = alias.hub_id if alias else spec
        folder, shown = _hub_folder(repo), repo
    modules = []
    for name in CODE_CONFIGS:
        path = folder / name
        if not path.is_file():
            continue
        try:
            auto_map = json.loads(path.read_text("utf-8")).get("auto_map") or {}
            refs = [r for v in auto_map.values() for r in (v if isinstance(v, list) else [v])]
        except (OSError, ValueError, AttributeError, TypeError):
            raise UserError(f"model {shown}: {name} is not a JSON mapping") from None
        for ref in refs:
            if not isinstance(ref, str):
                continue
            if "--" in ref:
                raise UserError(
                    f"model {shown}: {name} names code in another repository "
                    f"({ref.split('--')[0]}); the studio runs only a model's own files"
                )
            modules.append(ref.split(".")[0] + ".py")
    if not modules:
        return []
    from transformers.dynamic_module_utils import get_relative_import_files

    files: set[Path] = set()
    for module in dict.fromkeys(modules):
        path = folder / module
        if not path.is_file():
            raise UserError(f"model {shown}: its auto_map names {module}, which it does not hold")
        try:
            files |= {path, *map(Path, get_relative_import_files(path))}
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"model {shown}: cannot read the code it names ({e})") from None
    return sorted(f"{shown}/{f.relative_to(folder).as_posix()}" for f in files)


def _hub_folder(repo: str) -> Path:
    """A hub model's config and code (no weights): from the hub cache, else fetched."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(repo, allow_patterns=["*.json", "*.py"]))
    except Exception as e:  # network errors come in many types; the first line is what matters
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"model {repo}: cannot fetch its config to name the code it would run ({reason})"
        ) from None


def push_target(runs: Path, to: str) -> str:
    """Where a push may go: a remote URL (https, http, ssh, USER@HOST:PATH, hf:USER/REPO) as
    given, or a local repository inside `runs` (as its absolute path)."""
    to = (to or "").strip()
    if REMOTE.fullmatch(to):
        return to
    if "::" in to or (re.match(r"[A-Za-z][\w+.-]*://", to) and not to.startswith("file://")):
        raise UserError(
            f"push: to {to}: https://, http:// (with plain http allowed), ssh://, USER@HOST:PATH, "
            "hf:USER/REPO or a repository folder inside the runs folder"
        )
    if to.startswith("file://"):
        parts = urlsplit(to)
        if parts.netloc not in ("", "localhost"):
            raise UserError(f"push: to {to}: a file:// URL of this machine")
        return inside(runs, unquote(parts.path), "push to").as_uri()
    return str(inside(runs, to, "push to"))
