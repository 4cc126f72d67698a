"""Where llama.cpp is: `llama-server`, `llama-quantize` and `convert_hf_to_gguf.py`, as built by
`scripts/ensure_llamacpp.sh` (`make llamacpp`) from llama-cpp-python's sdist."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .errors import UserError

DEFAULT_VERSION = "0.3.36"  # llama-cpp-python, whose sdist vendors llama.cpp (as in the script)
TOOLS = ("llama-server", "llama-quantize")


def home() -> Path:
    """The build: $IDTUNE_LLAMACPP_HOME/VERSION, else ~/.cache/idtune/llama.cpp/VERSION, where
    VERSION is $IDTUNE_LLAMACPP_VERSION (the script's own variable), else the default."""
    root = os.environ.get("IDTUNE_LLAMACPP_HOME") or Path.home() / ".cache/idtune/llama.cpp"
    return Path(root) / (os.environ.get("IDTUNE_LLAMACPP_VERSION") or DEFAULT_VERSION)


def _missing(what: str) -> UserError:
    return UserError(
        f"llama.cpp's {what} is not installed: run `make llamacpp` "
        f"(or `sh scripts/ensure_llamacpp.sh`; a CPU build, ~30 min) and "
        "`pip install 'idtune[llamacpp]'`"
    )


def tool(name: str) -> Path:
    """The path of `llama-server` or `llama-quantize` (the build here, else on PATH)."""
    built = home() / "bin" / name
    if built.is_file():
        return built
    found = shutil.which(name)
    if found:
        return Path(found)
    raise _missing(name)


def converter() -> Path:
    """llama.cpp's own `convert_hf_to_gguf.py`."""
    script = home() / "src" / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise _missing("convert_hf_to_gguf.py")
    return script
