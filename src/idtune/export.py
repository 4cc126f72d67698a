"""`idtune export gguf`: a model or run as one GGUF file (llama.cpp, Ollama) and a Modelfile.

llama.cpp does the work: its own `convert_hf_to_gguf.py` writes f16, its `llama-quantize` makes
q8_0 / q4_k_m. A run or adapter is merged first by `idtune merge` in a subprocess (one verb does
not import another), into a temporary directory. The Modelfile's TEMPLATE and stops come from
the model's family file (`assets/families/`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import atomic, llamacpp, models, outputs
from .data import families
from .errors import UserError

QUANTS = ("f16", "q8_0", "q4_k_m")


def ollama_families() -> dict[str, dict[str, Any]]:
    """The families with an Ollama template: family → {template, stop, bos}."""
    return {n: f.ollama for n, f in families.all_families().items() if f.ollama}


def family_for(chat_template: str, named: str | None = None) -> str:
    """The Ollama family of a model: its named template, else the family its HF chat template
    belongs to."""
    known = ollama_families()
    if named:
        if named not in known:
            raise UserError(f"template {named!r}: its family file has no Ollama template")
        return named
    fam = families.by_template(chat_template)
    if fam is None or fam.name not in known:
        raise UserError(
            "the model's chat template is none of the families with an Ollama template "
            f"({', '.join(known)}); add one to assets/families/ (see its README.md)"
        )
    return fam.name


def _quoted(text: str) -> str:
    if '"""' in text:
        raise UserError('the system prompt holds """, which a Modelfile cannot quote')
    return f'"""{text}"""'


def modelfile(gguf_name: str, family: str, system: str | None = None) -> str:
    """An Ollama Modelfile: FROM the GGUF beside it, TEMPLATE, SYSTEM (when set), stop lines."""
    spec = ollama_families()[family]
    lines = [f"FROM ./{gguf_name}", f"TEMPLATE {_quoted(spec['template'])}"]
    if system:
        lines.append(f"SYSTEM {_quoted(system)}")
    lines += [f'PARAMETER stop "{s}"' for s in spec["stop"]]
    return "\n".join(lines) + "\n"


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    print(f"{what}: {' '.join(cmd)}", file=sys.stderr)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        raise UserError(f"{what} failed (exit {done.returncode}): {tail}")


def convert(hf_dir: Path, out_file: Path, quant: str) -> Path:
    """HF directory → f16 GGUF (llama.cpp's converter) → `quant` (llama-quantize)."""
    script = llamacpp.converter()
    quantize = llamacpp.tool("llama-quantize") if quant != "f16" else None
    env = dict(os.environ)
    vendored = script.parent / "gguf-py"  # the gguf package the converter was released with
    if vendored.is_dir():
        env["PYTHONPATH"] = os.pathsep.join([str(vendored), env.get("PYTHONPATH", "")])
    f16 = out_file if quant == "f16" else out_file.with_name(out_file.stem + ".f16.tmp.gguf")
    cmd = [sys.executable, str(script), str(hf_dir), "--outfile", str(f16), "--outtype", "f16"]
    _run(cmd, "convert_hf_to_gguf", env)
    if quantize is not None:
        try:
            _run([str(quantize), str(f16), str(out_file), quant.upper()], "llama-quantize")
        finally:
            f16.unlink(missing_ok=True)
    return out_file


def export_gguf(
    model: str,
    out: Path,
    *,
    quant: str = "q8_0",
    trust_remote_code: bool = False,
) -> Path:
    """Write OUT/model-QUANT.gguf and OUT/Modelfile for MODEL_OR_RUN; return the .gguf path."""
    outputs.check_choice("--quant", quant, QUANTS)
    out = outputs.check_new_dir(out)
    llamacpp.converter()  # one clear line before minutes of merging
    if quant != "f16":
        llamacpp.tool("llama-quantize")
    src = models.locate(model, trust_remote_code=trust_remote_code)
    before = models.tokenizers(src)[1]  # the family shows in the template before `own_template`
    family = family_for(before or "", src.template)
    # the default system prompt naming the identity, as the GGUF's own template has it
    info = src.info
    system = (info.system_prompt if info else None) or models.own_system_prompt(info)
    name = f"model-{quant}.gguf"

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(prefix=".merge-", dir=tmp.parent) as work:
            hf_dir = Path(src.base)
            if src.adapter is not None:
                hf_dir = Path(work) / "merged"
                cmd = [sys.executable, "-m", "idtune.cli", "merge", str(model), str(hf_dir)]
                _run(cmd + (["--trust-remote-code"] if trust_remote_code else []), "idtune merge")
            elif not hf_dir.is_dir():
                raise UserError(f"{model}: not a local model directory ({src.base})")
            convert(hf_dir, tmp / name, quant)
        (tmp / "Modelfile").write_text(modelfile(name, family, system), "utf-8")

    atomic.write_dir(out, write)
    return out / name
