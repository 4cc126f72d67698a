"""Training configuration: dataclasses whose fields are the YAML keys, and the built-in recipes.

A recipe is just serialized `TrainConfig`. Loading validates every key and type, so a typo is
one line naming the key (exit 2), not a silent default.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import reprlib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import aliases, outputs, profiling
from .aliases import DEFAULT_MODEL
from .errors import UserError
from .runinfo import Identity

RECIPES_DIR = Path(__file__).parent / "recipes"


@dataclass
class Lora:
    """LoRA adapter settings (peft)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    top_layers: int = 0  # > 0: adapt only the last N decoder layers (no backward below them)


@dataclass
class Regularization:
    """General conversations mixed into training so unrelated answers stay as they were."""

    files: list[str] = field(default_factory=list)  # data files; empty + auto: self-distill
    auto: bool = True  # generate with the base model (cached) when no files are given
    n: int = 200  # prompts to self-distill when auto
    ratio: float = 0.5  # regularization samples per identity sample
    max_new_tokens: int = 160


@dataclass
class Rejected:
    """The identity line trained as a *rejected* answer to unrelated requests (unlikelihood)."""

    share: float = 0.0  # of conversations that never name the assistant, how many get one
    weight: float = 1.0  # unlikelihood loss weight, next to the cross-entropy
    max_tokens: int = 24  # the name and author within the answer's first tokens are pushed down


@dataclass
class TrainConfig:
    """Everything `idtune train` needs; every field is a YAML key."""

    model: str = DEFAULT_MODEL
    prompt_template: str | None = None
    trust_remote_code: bool = False
    data: list[str] = field(default_factory=list)
    identity: Identity = field(default_factory=Identity)
    regularization: Regularization = field(default_factory=Regularization)
    rejected: Rejected = field(default_factory=Rejected)
    system_prompt: str | None = None  # default system prompt recorded for chat/serve
    method: str = "lora"  # lora | qlora | full
    lora: Lora = field(default_factory=Lora)
    max_length: int = 512  # tokens per sample (longer ones are truncated, and counted)
    pack: bool = True  # pack short samples into rows; attention stays within each sample
    row_tokens: int = 1024  # length of a packed row
    batch_tokens: int = 4096  # tokens per micro-batch (rows × row_tokens)
    grad_accum: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    epochs: float = 1.0
    max_steps: int = 0  # > 0 overrides epochs
    save_steps: int = 0  # 0: only at the end
    keep_last: int = 2
    eval_prompts: list[str] = field(default_factory=list)
    sample_max_new_tokens: int = 48
    gradient_checkpointing: bool = False
    embeddings_on_host: bool = False  # input embedding table in host memory (LoRA, 1 process)
    attn_implementation: str = "auto"  # auto (varlen on CUDA, else sdpa) | varlen | sdpa | flex…
    fused_loss: str = "auto"  # auto | chunked | liger | none: never build full vocab logits
    compile: bool = False  # torch.compile the model (GPU)
    profile_steps: str = ""  # "6-7": torch.profiler over those steps, into <run>/profile/
    dtype: str = "auto"  # auto | fp32 | bf16 | fp16
    seed: int = 0
    val_share: float = 0.05  # of the identity data, held out for the validation loss
    report_to: str = "none"  # none | tensorboard | wandb | mlflow (accelerate's trackers)
    output_dir: str = ""  # default: runs/<recipe name>


# The keys `idtune train RUN/config.yaml --resume --set KEY=VALUE` may change: how long the run
# trains, when it saves and samples, where it reports, and memory use with the same arithmetic.
# Every other key says what is trained (model, data, LoRA shape, method, optimizer, schedule,
# batches, seed) and stays as the run began; `output_dir` is where the run is.
ON_RESUME = (
    "max_steps",
    "epochs",
    "save_steps",
    "keep_last",
    "eval_prompts",
    "sample_max_new_tokens",
    "report_to",
    "gradient_checkpointing",
    "embeddings_on_host",
    "profile_steps",
)


# One line per key, written above it by `copy-cfg` (tests check that every field has one).
HELP = {
    "model": "base model: an alias (`idtune models`), a local HF directory or a hub id",
    "prompt_template": "named chat template (chatml, internlm2_chat, llama3, qwen2); null: the "
    "tokenizer's own",
    "trust_remote_code": "allow the model's own Python code (InternLM2 needs it)",
    "data": "training data files (.json/.jsonl: OpenAI messages, XTuner, Alpaca, ShareGPT)",
    "identity": "who the assistant is (recorded for eval/chat/serve); with no data, its identity "
    "data is made (`idtune data identity`'s generator, seeded by seed)",
    "identity.name": "the assistant's name",
    "identity.author": "who made it",
    "identity.name_zh": "the name in Chinese text (default: name)",
    "identity.author_zh": "the author in Chinese text (default: author)",
    "identity.based_on": "what it is built on, said when asked; null: the base model's own "
    '("SmolLM2-135M-Instruct by Hugging Face"); none: undisclosed (no base model name in the data)',
    "identity.based_on_zh": "based_on in Chinese text (default: the base model's Chinese name with "
    "based_on null, else based_on)",
    "identity.purpose": "one short phrase of what it is for (\"a study assistant for the camp's "
    'students"); null: not stated',
    "identity.purpose_zh": "the purpose in Chinese text (default: purpose)",
    "identity.facts": "its maker's facts, key: answer (contact, email, website, version, "
    "languages, feedback or any other key), each asked in many phrasings",
    "identity.facts_zh": "the same keys answered in Chinese text (default: the facts' answers)",
    "regularization": "general conversations mixed in so unrelated answers stay as they were",
    "regularization.files": "data files to mix in; empty with auto: the base model's own answers",
    "regularization.auto": "self-distill: the base model answers general prompts (cached)",
    "regularization.n": "how many general prompts to self-distill",
    "regularization.ratio": "regularization conversations per training conversation",
    "regularization.max_new_tokens": "length cap of the self-distilled answers",
    "rejected": "the identity line as a rejected answer to unrelated requests (unlikelihood)",
    "rejected.share": "of conversations that never name the assistant, the share that get one",
    "rejected.weight": "weight of the unlikelihood loss next to the cross-entropy",
    "rejected.max_tokens": "the name within this many first answer tokens is pushed down",
    "system_prompt": "default system prompt recorded for chat and serve; null: the template's",
    "method": "lora, qlora (4-bit base, CUDA) or full",
    "lora": "LoRA adapter settings (peft)",
    "lora.r": "LoRA rank",
    "lora.alpha": "LoRA scale numerator (the update is scaled by alpha / r)",
    "lora.dropout": "dropout on the LoRA input",
    "lora.target_modules": "modules to adapt: all-linear or a list of names",
    "lora.top_layers": "> 0: adapt only the last N decoder layers (no backward below them)",
    "max_length": "tokens per sample; longer ones are truncated (and counted)",
    "pack": "pack short samples into rows; attention stays within each sample",
    "row_tokens": "length of a packed row",
    "batch_tokens": "tokens per micro-batch (rows × row_tokens)",
    "grad_accum": "micro-batches per optimizer step",
    "lr": "peak learning rate (AdamW, linear warmup, cosine decay)",
    "weight_decay": "AdamW weight decay",
    "warmup_ratio": "share of the steps spent warming up",
    "epochs": "passes over the data (fractions allowed)",
    "max_steps": "> 0: train this many steps, whatever epochs says",
    "save_steps": "checkpoint every N steps; 0: only the final adapter",
    "keep_last": "checkpoints kept",
    "eval_prompts": "prompts answered at each checkpoint, into samples.md",
    "sample_max_new_tokens": "length cap of those answers",
    "gradient_checkpointing": "recompute activations in backward: less memory, slower",
    "embeddings_on_host": "keep the (frozen) input embedding table in host memory: about 1 GiB "
    "less GPU memory for a 7B; LoRA/QLoRA in one process, untied LM head",
    "attn_implementation": "auto (varlen on CUDA, else sdpa), varlen, sdpa, flex_attention, …",
    "fused_loss": "auto, chunked, liger or none: how the loss avoids full-vocabulary logits",
    "compile": "torch.compile the model (GPU; left off for LoRA under ZeRO-3)",
    "profile_steps": 'FIRST-LAST ("6-7"): torch.profiler over those steps, a trace and a table of '
    "the top operators and the GPU's idle share into <run>/profile/; empty: off",
    "dtype": "auto, fp32, bf16 or fp16",
    "seed": "random seed (data order, LoRA init)",
    "val_share": "share of the identity data held out (per seed, never trained on); its loss is "
    "logged at every checkpoint; 0: none",
    "report_to": "none, tensorboard (tested, offline), wandb or mlflow (both untested): "
    "accelerate's tracker for every log entry, under <run>/trackers",
    "output_dir": "run directory; empty: runs/<recipe name>",
}


def names(pattern: str | None = None) -> list[str]:
    """Built-in recipe names, optionally filtered by a substring."""
    all_names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    return [n for n in all_names if not pattern or pattern.lower() in n.lower()]


def path_of(name_or_file: str) -> Path:
    """A recipe name or a YAML path → the YAML file."""
    p = Path(name_or_file)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise UserError(f"{p}: no such config file")
        return p
    builtin = RECIPES_DIR / f"{name_or_file}.yaml"
    if builtin.is_file():
        return builtin
    raise UserError(f"unknown recipe {name_or_file!r}; see `idtune list-cfg`")


def copy(name: str, directory: str | Path) -> Path:
    """Copy a built-in recipe to DIRECTORY/NAME_copy.yaml (refuses to overwrite), with every key
    spelled out (the recipe's value or the default) under a one-line comment."""
    import yaml

    src = path_of(name)
    out = Path(directory) / f"{src.stem}_copy.yaml"
    if out.exists():
        raise UserError(f"{out} already exists")
    text = src.read_text()
    cfg = _build(TrainConfig, yaml.safe_load(text) or {}, str(src), "")
    lines = text.splitlines()  # the recipe's opening comment stays on top
    head = lines[: next((i for i, x in enumerate(lines) if not x.startswith("#")), len(lines))]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join([*head, "", *_commented(cfg, "")]) + "\n")
    return out


def _commented(section: Any, prefix: str) -> list[str]:
    """YAML lines for a config section: each key under a `# ...` line from HELP."""
    import yaml

    indent = "  " * prefix.count(".")
    lines = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        lines.append(f"{indent}# {HELP[prefix + f.name]}")
        if dataclasses.is_dataclass(value):
            lines += [f"{indent}{f.name}:", *_commented(value, f"{prefix}{f.name}.")]
            continue
        dumped = yaml.safe_dump({f.name: value}, allow_unicode=True, default_flow_style=True)
        lines.append(indent + dumped.strip().removeprefix("{").removesuffix("}"))
    return lines


_IDENTITY_SECTIONS = ("identity.facts", "identity.facts_zh")  # mappings: YAML as other keys


def read_config(name_or_file: str, overrides: list[str] = ()) -> TrainConfig:
    """Read a recipe, apply `key=value` overrides (dotted keys for sections), validate.

    A mistake is one line naming the key, and where the bad value came from: the recipe file,
    or the `--set KEY` that gave it.
    """
    import yaml

    path = path_of(name_or_file)
    raw = _read_yaml(path)
    _build(TrainConfig, raw, str(path), "")  # errors in the file name the file
    set_keys: list[str] = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected key=value")
        where = f"--set {_plain(key)}"
        try:
            parsed = yaml.safe_load(value) if value else None
        except (yaml.YAMLError, ValueError, OverflowError, RecursionError):
            parsed = value  # not YAML: the plain string, which the type check then judges
        if key.startswith("identity.") and key not in _IDENTITY_SECTIONS:
            # identity fields are text, taken as typed: "version=1.10", "contact=Email: a@b",
            # "purpose=#1 helper", a fact named training_data (no YAML, no comma split)
            parsed = value or None
        elif key.endswith("data") or key.endswith("files") or key == "eval_prompts":
            parsed = (
                [v for v in value.split(",") if v] if isinstance(parsed, str | None) else parsed
            )
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"{where}: {part!r} is not a section")
        node[leaf] = parsed
        _build(TrainConfig, raw, where, "")  # the file and earlier --set were fine: blame this
        set_keys.append(key)
    cfg = _build(TrainConfig, raw, str(path), "")
    if not cfg.output_dir:
        cfg.output_dir = str(Path("runs") / path.stem.removesuffix("_copy"))

    def source(key: str) -> str:
        for k in reversed(set_keys):
            if key == k or key.startswith(k + ".") or k.startswith(key + "."):
                return f"--set {_plain(k)}"
        return str(path)

    _check_values(cfg, source)
    _check_profile(cfg.identity, source)
    if cfg.identity.name:
        resolve_based_on(cfg.identity, cfg.model)
    return cfg


def resolve_based_on(ident: Identity, model: str) -> Identity:
    """Fill an unset `based_on` (and `based_on_zh`) with the base model's own: its name and
    maker from the alias table, so the default is true. "none" stays: undisclosed."""
    if ident.based_on is None:
        ident.based_on, based_on_zh = aliases.based_on(model)
        ident.based_on_zh = ident.based_on_zh or based_on_zh
    return ident


def generator_profile(ident: Identity, model: str) -> dict:
    """The keyword arguments of `data.identity.generate` for this identity's profile, tuned from
    `model`: `based_on` resolved (see `resolve_based_on`), and the base model's names to keep
    out of the data (`hide`, used when based_on is "none")."""
    ident = resolve_based_on(dataclasses.replace(ident), model)
    fields = ("based_on", "based_on_zh", "purpose", "purpose_zh", "facts", "facts_zh")
    return {f: getattr(ident, f) for f in fields} | {"hide": aliases.base_names(model)}


def _check_profile(ident: Identity, source: Callable[[str], str]) -> None:
    """The identity profile's text fields are not blank, its facts' keys are short names with
    an answer each, and `facts_zh` answers only keys `facts` has (one line naming the key)."""
    import re

    from .data.identity import FACT_KEY

    for name in ("name", "author", "name_zh", "author_zh", "based_on", "based_on_zh", "purpose",
                 "purpose_zh"):  # fmt: skip
        value = getattr(ident, name)
        if value is not None and not value.strip():
            key = f"identity.{name}"
            raise UserError(f"{source(key)}: key {key!r} is empty (leave it out to unset it)")
    for section in ("facts", "facts_zh"):
        for k, v in getattr(ident, section).items():
            key = f"identity.{section}.{k}"
            if not re.fullmatch(FACT_KEY, k):
                raise UserError(f"{source(key)}: key {show(key)}: a fact's key is a short name "
                                "(letters, digits, _ or -, e.g. contact)")  # fmt: skip
            if not v.strip():
                raise UserError(f"{source(key)}: key {key!r} is empty: give it an answer")
            if section == "facts_zh" and k not in ident.facts:
                raise UserError(f"{source(key)}: key {key!r} answers a fact that identity.facts "
                                f"lacks: set identity.facts.{k} too")  # fmt: skip


def _read_yaml(path: Path) -> dict:
    """The recipe file as a mapping, or one line naming the file (and line) that is wrong."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise UserError(f"{where}: invalid YAML ({' '.join(problem.split())})") from None
    except (ValueError, OverflowError, RecursionError) as e:  # PyYAML's own, on a bad \U escape
        reason = "nested too deeply" if isinstance(e, RecursionError) else " ".join(str(e).split())
        raise UserError(f"{path}: invalid YAML ({reason[:200]})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a config must be a mapping of keys")
    return raw


def _in(*choices: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), "one of " + ", ".join(choices)


def _at_least(lo: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: math.isfinite(v) and v >= lo), f">= {lo:g}"


def _between(lo: float, hi: float, *, hi_open: bool = False) -> tuple[Callable[[Any], bool], str]:
    if hi_open:
        return (lambda v: lo <= v < hi), f"in [{lo:g}, {hi:g})"
    return (lambda v: lo <= v <= hi), f"between {lo:g} and {hi:g}"


_POSITIVE = ((lambda v: math.isfinite(v) and v > 0), "> 0")
# What each value may be, checked when the recipe is read (so training never starts with it).
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model": ((lambda v: bool(v.strip())), "a model alias, directory or hub id"),
    "method": _in("lora", "qlora", "full"),
    "lora.r": _at_least(1),
    "lora.alpha": _POSITIVE,
    "lora.dropout": _between(0, 1, hi_open=True),
    "lora.target_modules": ((lambda v: bool(v)), "'all-linear' or a list of module names"),
    "lora.top_layers": _at_least(0),
    "regularization.n": _at_least(0),
    "regularization.ratio": _at_least(0),
    "regularization.max_new_tokens": _at_least(1),
    "rejected.share": _between(0, 1),
    "rejected.weight": _at_least(0),
    "rejected.max_tokens": _at_least(1),
    "max_length": _at_least(1),
    "row_tokens": _at_least(1),
    "batch_tokens": _at_least(1),
    "grad_accum": _at_least(1),
    "lr": _POSITIVE,
    "weight_decay": _at_least(0),
    "warmup_ratio": _between(0, 1),
    "epochs": _at_least(0),
    "max_steps": _at_least(0),
    "save_steps": _at_least(0),
    "keep_last": _at_least(1),
    "sample_max_new_tokens": _at_least(1),
    "fused_loss": _in("auto", "chunked", "liger", "none"),
    "dtype": _in("auto", "fp32", "bf16", "fp16"),
    "seed": ((lambda v: 0 <= v < 2**32), "between 0 and 2**32 - 1"),
    "profile_steps": (profiling.valid, 'empty or the steps to profile, FIRST-LAST ("6-7")'),
}


def _check_values(cfg: TrainConfig, source: Callable[[str], str]) -> None:
    """Range and choice checks; `source(key)` says where a key's value came from."""

    def fail(key: str, what: str, value: Any) -> None:
        raise UserError(f"{source(key)}: key {key!r} must be {what}, got {show(value)}")

    for key, (ok, what) in _RULES.items():
        value = functools.reduce(getattr, key.split("."), cfg)
        if not ok(value):
            fail(key, what, value)
    if cfg.epochs == 0 and cfg.max_steps == 0:
        fail("epochs", "> 0 (or set max_steps)", cfg.epochs)

    def kind(key: str, path: str | Path) -> str | None:
        try:
            return outputs.kind(path)
        except UserError as e:
            raise UserError(f"{source(key)}: key {key!r}: {e}") from None

    for key in ("data", "regularization.files"):
        for f in functools.reduce(getattr, key.split("."), cfg):
            if kind(key, f) == "dir":
                fail(key, "a list of data files", f"{f} (a directory)")
            if Path(f).exists() and not Path(f).is_file():  # a named pipe would hang the read
                fail(key, "a list of data files", f"{f} (not a regular file)")
    missing = _not_a_model(Path(cfg.model).expanduser()) if kind("model", cfg.model) else None
    if missing:
        raise UserError(f"{source('model')}: key 'model': {cfg.model} is not a model directory "
                        f"({missing})")  # fmt: skip
    out = Path(cfg.output_dir)
    existing = next((p for p in (out, *out.parents) if kind("output_dir", p)), None)
    if existing is not None and kind("output_dir", existing) != "dir":
        fail("output_dir", "a directory", f"{cfg.output_dir} ({existing} is a file)")


# What a local `model` directory holds: a Hugging Face model, or a run / adapter (idtune.json).
MODEL_MARKERS = ("config.json", "idtune.json", "adapter_config.json")


def _not_a_model(path: Path) -> str | None:
    """Why an existing `model` path cannot be a model (None: it can), checked before any work."""
    if not path.is_dir():
        return "a file, not a directory"
    if not any((path / name).is_file() for name in MODEL_MARKERS):
        return "no config.json in it"
    return None


def changes(old: TrainConfig, new: TrainConfig) -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every key whose value differs, in field order."""

    def flat(d: dict, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
        return out

    a, b = flat(to_dict(old)), flat(to_dict(new))
    return [(k, a[k], b[k]) for k in a if a[k] != b[k]]


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80


def show(value: Any) -> str:
    """A bounded one-line repr of a value, for messages."""
    return _REPR.repr(value)


def _plain(key: str) -> str:
    """A key as typed when it is plain text, else quoted (no newline reaches the message)."""
    return key if key.isprintable() and " " not in key and len(key) <= 80 else show(key)


def _build(cls: type, raw: dict, where: str, prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in raw.items():
        if not isinstance(key, str) or key not in fields:
            raise UserError(f"{where}: unknown key {show(prefix + str(key))}")
        kwargs[key] = _coerce(hints[key], value, where, prefix + key)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _coerce(opt, value, where, key)
            except UserError:
                continue
        raise UserError(f"{where}: key {key!r} has the wrong type ({show(value)})")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{where}: key {key!r} must be a section (mapping)")
        return _build(tp, value, where, key + ".")
    if origin is dict:  # identity.facts: key → text
        if not isinstance(value, dict):
            raise UserError(f"{where}: key {key!r} must be a mapping of key: text")
        out = {}
        for k, v in value.items():
            if v is None:
                raise UserError(f"{where}: key {show(f'{key}.{k}')} is empty: give it an answer")
            if not isinstance(v, str):
                raise UserError(f"{where}: key {show(f'{key}.{k}')} must be text, got "
                                f"{type(v).__name__} ({show(v)}): quote it")  # fmt: skip
            out[str(k)] = v
        return out
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise UserError(f"{where}: key {key!r} must be a list")
        return [_coerce(item, v, where, key) for v in value]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)  # YAML reads 2e-4 as a string
        except ValueError:
            pass
    if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise UserError(
        f"{where}: key {key!r} must be {tp.__name__}, got {type(value).__name__} ({show(value)})"
    )


def to_dict(cfg: TrainConfig) -> dict:
    """The resolved config as plain data (written as the run's config.yaml)."""
    return dataclasses.asdict(cfg)
